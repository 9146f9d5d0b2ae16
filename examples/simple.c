/* simple.c — the shortest complete use of gpt2c: a prompt in, a greedy completion out.
 *
 *   usage: simple MODEL.gguf [PROMPT]
 *
 * Every call's status is checked; the new token ids are turned back into text at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"

#define MAX_NEW 32

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "The meaning of life is";

    gpt2_model *model;
    char err[256];
    gpt2_status s = gpt2_load(argv[1], &model, err, sizeof err);
    if (s != GPT2_OK) {
        fprintf(stderr, "cannot load the model: %s\n", err);
        return 1;
    }
    gpt2_context *ctx;
    s = gpt2_context_new(model, NULL, &ctx); /* NULL: all cores, the model's context */
    if (s != GPT2_OK) {
        fprintf(stderr, "cannot create a context: %s\n", gpt2_strerror(s));
        gpt2_free(model);
        return 1;
    }

    /* text -> ids: a text never needs more ids than it has bytes */
    size_t len = strlen(prompt), n_ids;
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    if (!ids) return 1;
    s = gpt2_tokenize(model, prompt, len, 0, ids, len + 1, &n_ids);
    if (s != GPT2_OK || n_ids == 0) {
        fprintf(stderr, "cannot tokenize the prompt: %s\n", s ? gpt2_strerror(s) : "it is empty");
        return 1;
    }

    /* greedy decoding: temperature 0 */
    gpt2_generate_params params = gpt2_generate_default_params(model);
    params.sampling.temperature = 0.0f;
    params.max_new_tokens = MAX_NEW;
    int32_t out[MAX_NEW];
    size_t n_out;
    s = gpt2_generate(ctx, ids, n_ids, &params, out, MAX_NEW, &n_out, NULL, NULL);
    if (s != GPT2_OK && s != GPT2_E_CONTEXT_FULL) { /* a full context still gives tokens */
        fprintf(stderr, "generation failed: %s\n", gpt2_strerror(s));
        return 1;
    }

    /* ids -> text: ask for the size first, then fill */
    size_t n_bytes;
    s = gpt2_detokenize(model, out, n_out, NULL, 0, &n_bytes);
    if (s != GPT2_OK && s != GPT2_E_BUFFER) return 1;
    char *text = malloc(n_bytes + 1);
    if (!text || gpt2_detokenize(model, out, n_out, text, n_bytes, &n_bytes) != GPT2_OK) return 1;
    printf("%s%.*s\n", prompt, (int)n_bytes, text);

    free(text);
    free(ids);
    gpt2_context_free(ctx);
    gpt2_free(model);
    return 0;
}
