/* chat.c — a conversation that keeps its KV cache between turns, with the caller driving
 * the generation loop itself: gpt2_eval for the model, gpt2_process_logits for the decoding
 * rules, a gpt2_text_stream for UTF-8-safe output that stops at "\nUser:".
 *
 *   usage: chat MODEL.gguf < lines      (each line of stdin is one user turn)
 *
 * GPT-2 is not a chat model: this shows the pattern (append each turn to the context, never
 * re-evaluate what is already there), not good answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"

#define MAX_REPLY 48

static int print_text(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* appends text to the context; the logits after its last token land in last_logits */
static int feed(gpt2_model *m, gpt2_context *c, const char *text, float *all_logits,
                float *last_logits, int32_t *history, size_t *n_history) {
    size_t len = strlen(text), n;
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    if (!ids || gpt2_tokenize(m, text, len, 0, ids, len + 1, &n) != GPT2_OK) return -1;
    gpt2_config cfg = gpt2_get_config(m);
    for (size_t i = 0; i < n; i++) { /* one at a time keeps the logits buffer small */
        if (gpt2_eval(c, &ids[i], 1, all_logits) != GPT2_OK) {
            free(ids);
            return -1; /* most likely the context is full */
        }
        history[(*n_history)++] = ids[i];
    }
    memcpy(last_logits, all_logits, (size_t)cfg.n_vocab * sizeof(float));
    free(ids);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf < lines\n", argv[0]);
        return 2;
    }
    gpt2_model *m;
    char err[256];
    if (gpt2_load(argv[1], &m, err, sizeof err) != GPT2_OK) {
        fprintf(stderr, "cannot load the model: %s\n", err);
        return 1;
    }
    gpt2_config cfg = gpt2_get_config(m);
    gpt2_context *c;
    if (gpt2_context_new(m, NULL, &c) != GPT2_OK) return 1;
    float *logits = malloc((size_t)cfg.n_vocab * sizeof *logits);
    float *next = malloc((size_t)cfg.n_vocab * sizeof *next);
    int32_t *history = malloc(((size_t)gpt2_context_size(c) + 1) * sizeof *history);
    size_t n_history = 0;
    const char *stops[1] = {"\nUser:"};
    gpt2_text_stream *ts;
    if (!logits || !next || !history || gpt2_text_stream_new(stops, 1, &ts) != GPT2_OK) return 1;
    /* greedy, with a repetition penalty over the whole conversation */
    gpt2_sampling rules = {1.0f, 0, 1.0f, 1.3f, 0, 0};

    char line[1024];
    if (feed(m, c, "A conversation.\n", logits, next, history, &n_history)) return 1;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        char turn[1100];
        snprintf(turn, sizeof turn, "User: %s\nBot:", line);
        printf("User: %s\nBot:", line);
        if (feed(m, c, turn, logits, next, history, &n_history)) break;
        gpt2_text_stream_reset(ts);
        for (int i = 0; i < MAX_REPLY; i++) {
            gpt2_process_logits(&rules, next, cfg.n_vocab, history, n_history);
            int32_t best = 0;
            for (int32_t v = 1; v < cfg.n_vocab; v++) best = next[v] > next[best] ? v : best;
            if (best == cfg.eot_id) break;
            const char *bytes;
            size_t bl;
            gpt2_token_bytes(m, best, &bytes, &bl);
            if (gpt2_text_stream_push(ts, bytes, bl, print_text, NULL) == 1) break; /* "\nUser:" */
            if (gpt2_context_length(c) >= gpt2_context_size(c)) break;
            if (gpt2_eval(c, &best, 1, next) != GPT2_OK) break;
            history[n_history++] = best;
        }
        if (!gpt2_text_stream_stopped(ts)) gpt2_text_stream_flush(ts, print_text, NULL);
        printf("\n");
        if (gpt2_context_length(c) >= gpt2_context_size(c)) {
            printf("[the context is full]\n");
            break;
        }
        /* what the model said is in the cache; the next turn starts on a new line */
        if (feed(m, c, "\n", logits, next, history, &n_history)) break;
    }
    fprintf(stderr, "[%d of %d positions used]\n", gpt2_context_length(c), gpt2_context_size(c));
    gpt2_text_stream_free(ts);
    free(logits);
    free(next);
    free(history);
    gpt2_context_free(c);
    gpt2_free(m);
    return 0;
}
