/* stream.c — streaming text as it is generated, cut at stop strings.
 *
 *   usage: stream MODEL.gguf PROMPT [STOP...]
 *
 * The library hands on text only once it is whole UTF-8 characters (a token may end in the
 * middle of one) and cannot be the start of a stop string; the stop string itself is not
 * printed. Sampling with a fixed seed: the same text on every run and any thread count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"

static int print_text(void *user, const char *text, size_t len) {
    (void)user;
    if (fwrite(text, 1, len, stdout) != len) return 1; /* cannot write: stop generating */
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [STOP...]\n", argv[0]);
        return 2;
    }
    gpt2_model *model;
    char err[256];
    if (gpt2_load(argv[1], &model, err, sizeof err) != GPT2_OK) {
        fprintf(stderr, "cannot load the model: %s\n", err);
        return 1;
    }
    gpt2_context *ctx;
    if (gpt2_context_new(model, NULL, &ctx) != GPT2_OK) return 1;

    size_t len = strlen(argv[2]), n_ids;
    int32_t *ids = malloc((len + 1) * sizeof *ids), out[64];
    if (!ids || gpt2_tokenize(model, argv[2], len, 0, ids, len + 1, &n_ids) != GPT2_OK || !n_ids) return 1;

    gpt2_generate_params p = gpt2_generate_default_params(model);
    p.sampling.temperature = 0.8f;
    p.sampling.top_k = 40;
    p.sampling.top_p = 0.95f;
    p.sampling.seed = 42;
    p.max_new_tokens = 64;
    p.stop = (const char *const *)(argv + 3); /* the stop strings, if any */
    p.n_stop = argc - 3;
    p.on_text = print_text;

    fputs(argv[2], stdout);
    gpt2_generate_info info;
    memset(&info, 0, sizeof info);
    size_t n_out;
    gpt2_status s = gpt2_generate_ex(ctx, ids, n_ids, &p, out, 64, &n_out, NULL, NULL, &info);
    putchar('\n');
    if (s != GPT2_OK && s != GPT2_E_CONTEXT_FULL) {
        fprintf(stderr, "generation failed: %s\n", gpt2_strerror(s));
        return 1;
    }
    const char *why = info.stop == GPT2_STOP_STRING ? "a stop string"
                    : info.stop == GPT2_STOP_EOS ? "the end-of-text token"
                    : info.stop == GPT2_STOP_LENGTH ? "the token limit" : "something else";
    fprintf(stderr, "[%zu tokens, stopped by %s]\n", n_out, why);
    free(ids);
    gpt2_context_free(ctx);
    gpt2_free(model);
    return 0;
}
