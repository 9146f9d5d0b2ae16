/* fuzz_gguf.c — the GGUF loader on hostile images, through gpt2_load_from_buffer.
 *
 * The input is copied into a buffer of exactly its size (malloc's memory is aligned to 8
 * bytes, as the API requires), so ASan sees any read past the image. An image that is
 * rejected must say why and leave no model. An image that loads is used a little: model
 * info, tokenizing and decoding a short text, evaluating two tokens in a small context and
 * generating two tokens, so that a loader which accepts an inconsistent file shows up as a
 * sanitizer report further down the pipeline.
 *
 * An image that loads is loaded and used once on each kernel path this CPU runs
 * (GPT2_KERNELS), so that the SIMD kernels and their scalar reference all meet its odd
 * shapes; GPT2_FUZZ_KERNELS=name keeps one path.
 */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *paths[8];
static size_t n_paths;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* GPT2_FUZZ_KERNELS=name keeps one path; otherwise every one this CPU has */
    const char *only = getenv("GPT2_FUZZ_KERNELS");
    static const char *const all[] = {"scalar", "avx2-novnni", "avx512-novnni", "avx512-vnni",
                                      "neon-nodotprod", "neon-dotprod"};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if ((!only || !strcmp(only, all[i])) && gpt2_kernels_supported(all[i]) == GPT2_OK)
            paths[n_paths++] = all[i];
    if (n_paths == 0) paths[n_paths++] = "scalar";
    return 0;
}

static void check_ids(const int32_t *ids, size_t n, int32_t n_vocab) {
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab, "id %d outside a vocabulary of %d", ids[i], n_vocab);
}

static void exercise(const gpt2_model *m) {
    gpt2_model_info info = gpt2_get_model_info(m);
    const gpt2_config cf = info.config;
    FUZZ_CHECK(cf.n_vocab >= 256 && cf.n_ctx > 0 && cf.n_embd > 0 && cf.n_head > 0 && cf.n_layer > 0 &&
               cf.n_embd % cf.n_head == 0 && info.n_ff > 0,
               "a nonsensical config loaded: V %d, P %d, C %d, NH %d, L %d, F %d", cf.n_vocab, cf.n_ctx,
               cf.n_embd, cf.n_head, cf.n_layer, info.n_ff);
    FUZZ_CHECK(cf.eot_id >= 0 && cf.eot_id < cf.n_vocab, "eot id %d outside the vocabulary", cf.eot_id);
    FUZZ_CHECK(info.name && strlen(info.name) < 128 && info.kernels && *info.kernels, "bad model info");
    FUZZ_CHECK(strcmp(gpt2_type_name(info.matrix_type), "?") != 0, "matrix type %d", info.matrix_type);

    /* every token's bytes are readable */
    for (int32_t id = 0; id < cf.n_vocab; id++) {
        const char *b;
        size_t bl;
        FUZZ_CHECK(gpt2_token_bytes(m, id, &b, &bl) == GPT2_OK, "token_bytes(%d)", id);
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < bl; k++) sink ^= (uint8_t)b[k];
        (void)sink;
    }

    /* tokenize a short text both ways; it must decode to itself */
    static const char text[] = "ab aba\xE2\x80\x99s <|endoftext|> \xFF\x80  x";
    const size_t len = sizeof text - 1;
    int32_t ids[64];
    for (int special = 0; special <= 1; special++) {
        size_t n = 0;
        gpt2_status s = gpt2_tokenize(m, text, len, special, ids, 64, &n);
        FUZZ_CHECK(s == GPT2_OK && n > 0 && n <= len, "tokenize: status %d, %zu ids", s, n);
        check_ids(ids, n, cf.n_vocab);
        char back[sizeof text];
        size_t bl = 0;
        s = gpt2_detokenize(m, ids, n, back, sizeof back, &bl);
        FUZZ_CHECK(s == GPT2_OK, "detokenize: status %d", s);
        /* the special token's own bytes may not be "<|endoftext|>" in a strange file */
        if (!special) FUZZ_CHECK(bl == len && memcmp(back, text, len) == 0, "decode(encode(x)) != x");
    }

    /* two tokens through a context of at most 4 */
    gpt2_context_params cp = gpt2_context_default_params();
    cp.n_threads = 1;
    cp.n_ctx = cf.n_ctx < 4 ? cf.n_ctx : 4; /* more than the model has is refused */
    gpt2_context *c = NULL;
    gpt2_status s = gpt2_context_new(m, &cp, &c);
    if (s == GPT2_E_NOMEM) return;
    FUZZ_CHECK(s == GPT2_OK && c, "context_new: status %d", s);
    const int32_t size = gpt2_context_size(c);
    FUZZ_CHECK(size >= 1 && size <= 4 && size <= cf.n_ctx, "context of %d", size);
    const int32_t four[4] = {ids[0], cf.eot_id, ids[0], cf.eot_id};
    const size_t n_eval = size >= 2 ? 2 : 1;
    float *logits = malloc(n_eval * (size_t)cf.n_vocab * sizeof *logits);
    FUZZ_CHECK(logits != NULL, "out of memory");
    s = gpt2_eval(c, four, n_eval, logits);
    FUZZ_CHECK(s == GPT2_OK && gpt2_context_length(c) == (int32_t)n_eval, "eval: status %d", s);
    volatile float sum = 0;
    for (size_t i = 0; i < n_eval * (size_t)cf.n_vocab; i++) sum += logits[i]; /* all written */
    (void)sum;
    free(logits);
    FUZZ_CHECK(gpt2_eval(c, four, (size_t)size - n_eval + 1, NULL) == GPT2_E_CONTEXT_FULL &&
               gpt2_context_length(c) == (int32_t)n_eval, "an overflow is refused, changing nothing");
    const int32_t bad = cf.n_vocab;
    FUZZ_CHECK(gpt2_eval(c, &bad, 1, NULL) != GPT2_OK, "an id outside the vocabulary is refused");

    /* sampling on whatever logits the weights give (NaN, infinities ...), then greedy */
    gpt2_generate_params gp = gpt2_generate_default_params(m);
    gp.max_new_tokens = 2;
    gp.sampling.top_k = 5;
    gp.sampling.top_p = 0.9f;
    gp.sampling.repetition_penalty = 1.3f;
    gp.sampling.seed = 1;
    int32_t out[4];
    size_t n_out = 0;
    s = gpt2_generate(c, four, 1, &gp, out, 4, &n_out, NULL, NULL);
    FUZZ_CHECK((s == GPT2_OK || s == GPT2_E_CONTEXT_FULL) && n_out <= 2, "generate: status %d", s);
    check_ids(out, n_out, cf.n_vocab);
    gp.sampling.temperature = 0;
    s = gpt2_generate(c, four, 1, &gp, out, 4, &n_out, NULL, NULL);
    FUZZ_CHECK((s == GPT2_OK || s == GPT2_E_CONTEXT_FULL) && n_out <= 2, "greedy: status %d", s);
    check_ids(out, n_out, cf.n_vocab);
    /* beam search: 2 beams, both hypotheses back, each followed by -1 */
    gp.num_beams = 2;
    gp.num_return_sequences = 2;
    int32_t hyp[8];
    s = gpt2_generate(c, four, 1, &gp, hyp, 8, &n_out, NULL, NULL);
    FUZZ_CHECK(s == GPT2_OK || s == GPT2_E_CONTEXT_FULL || s == GPT2_E_NOMEM, "beams: status %d", s);
    if (s == GPT2_OK) {
        FUZZ_CHECK(n_out <= 8, "beams: %zu ids", n_out);
        for (size_t i = 0; i < n_out; i++)
            FUZZ_CHECK(hyp[i] == -1 || (hyp[i] >= 0 && hyp[i] < cf.n_vocab), "beam id %d", hyp[i]);
    }
    gpt2_context_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *img = malloc(size ? size : 1);
    FUZZ_CHECK(img != NULL && ((uintptr_t)img & 7) == 0, "an aligned copy");
    if (size) memcpy(img, data, size);
    /* the first path decides whether it loads (parsing does not depend on the path) */
    for (size_t p = 0; p < n_paths; p++) {
        setenv("GPT2_KERNELS", paths[p], 1);
        gpt2_model *m = NULL;
        char err[256];
        memset(err, 'x', sizeof err);
        gpt2_status s = gpt2_load_from_buffer(img, size, &m, err, sizeof err);
        if (s != GPT2_OK) {
            FUZZ_CHECK(p == 0, "loads on %s, not on %s: %s", paths[0], paths[p], err);
            FUZZ_CHECK(m == NULL, "status %d, yet a model", s);
            FUZZ_CHECK(s == GPT2_E_FORMAT || s == GPT2_E_UNSUPPORTED || s == GPT2_E_NOMEM,
                       "a bad image gives status %d", s);
            FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0', "no reason given");
            break;
        }
        FUZZ_CHECK(m != NULL, "GPT2_OK without a model");
        exercise(m);
        gpt2_free(m);
    }
    free(img);
    return 0;
}
