/* logits.c — what the model thinks comes next: the most likely next tokens for a prompt,
 * with their probabilities.
 *
 *   usage: logits MODEL.gguf [PROMPT] [N]
 *
 * gpt2_eval returns one row of logits (a score per vocabulary entry) per token; the last row
 * scores the next token. A softmax turns the scores into probabilities.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT] [N]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    int top = argc > 3 ? atoi(argv[3]) : 10;
    gpt2_model *model;
    char err[256];
    if (gpt2_load(argv[1], &model, err, sizeof err) != GPT2_OK) {
        fprintf(stderr, "cannot load the model: %s\n", err);
        return 1;
    }
    gpt2_config cfg = gpt2_get_config(model);
    if (top < 1 || top > cfg.n_vocab) top = 10;
    gpt2_context *ctx;
    if (gpt2_context_new(model, NULL, &ctx) != GPT2_OK) return 1;

    size_t len = strlen(prompt), n;
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    if (!ids || gpt2_tokenize(model, prompt, len, 0, ids, len + 1, &n) != GPT2_OK || n == 0) return 1;
    if (n > (size_t)gpt2_context_size(ctx)) {
        fprintf(stderr, "the prompt is longer than the context\n");
        return 1;
    }
    float *logits = malloc(n * (size_t)cfg.n_vocab * sizeof *logits); /* (n, V) */
    if (!logits) return 1;
    gpt2_status s = gpt2_eval(ctx, ids, n, logits);
    if (s != GPT2_OK) {
        fprintf(stderr, "eval failed: %s\n", gpt2_strerror(s));
        return 1;
    }
    const float *last = logits + (n - 1) * (size_t)cfg.n_vocab; /* the next token's scores */

    /* softmax, in double: p_i = exp(l_i - max) / sum_j exp(l_j - max) */
    float mx = last[0];
    for (int32_t i = 1; i < cfg.n_vocab; i++) mx = last[i] > mx ? last[i] : mx;
    double z = 0;
    for (int32_t i = 0; i < cfg.n_vocab; i++) z += exp((double)last[i] - mx);

    printf("after \"%s\" (%zu tokens):\n", prompt, n);
    int32_t *chosen = malloc((size_t)top * sizeof *chosen);
    if (!chosen) return 1;
    for (int k = 0; k < top; k++) { /* the k-th best by selection: enough for a few */
        int32_t best = -1;
        for (int32_t i = 0; i < cfg.n_vocab; i++) {
            int taken = 0;
            for (int j = 0; j < k && !taken; j++) taken = chosen[j] == i;
            if (!taken && (best < 0 || last[i] > last[best])) best = i;
        }
        chosen[k] = best;
        const char *bytes;
        size_t bl;
        gpt2_token_bytes(model, best, &bytes, &bl);
        printf("  %2d. %6d  %-20.*s  logit %8.3f  p %.4f\n", k + 1, best, (int)bl, bytes,
               last[best], exp((double)last[best] - mx) / z);
    }
    free(chosen);
    free(logits);
    free(ids);
    gpt2_context_free(ctx);
    gpt2_free(model);
    return 0;
}
