/* fuzz_detokenize.c — arbitrary id arrays through gpt2_detokenize and gpt2_token_bytes, on
 * the fixture's real GPT-2 vocabulary.
 *
 * Input: 2 bytes choosing the output cap, then 4 bytes per id (little-endian u32 u). The low
 * two bits of u pick how u becomes an id, so that the fuzzer meets valid ids, the edges of
 * the vocabulary and wild values alike:
 *   0, 1, 2: (u >> 2) mod (n_vocab + 16) - 8    mostly valid; -8..-1 and n_vocab..+7 too
 *   3:       u itself, as an int32              any value: INT32_MAX, -1, huge ...
 * Properties:
 *   - gpt2_token_bytes: GPT2_OK exactly for 0 <= id < n_vocab, its bytes readable;
 *   - gpt2_detokenize: GPT2_E_ARG when any id is invalid; else *len is the sum of the
 *     tokens' lengths, GPT2_OK iff it fits in cap, the first min(cap, len) bytes are the
 *     tokens' bytes, and nothing is written past cap (a guard follows the buffer).
 */
#include "fuzz_common.h"

static gpt2_model *model;
static int32_t n_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    model = fuzz_load_fixture();
    n_vocab = gpt2_get_config(model).n_vocab;
    return 0;
}

static int32_t to_id(uint32_t u) {
    if ((u & 3) == 3) {
        int32_t v;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    return (int32_t)((u >> 2) % (uint32_t)(n_vocab + 16)) - 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const unsigned cap_sel = (unsigned)data[0] | (unsigned)data[1] << 8;
    const size_t n = (size - 2) / 4;
    /* the ids in a buffer of exactly n (ASan sees a read past it) */
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL, "out of memory");
    size_t total = 0;
    int valid = 1;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = data + 2 + 4 * i;
        ids[i] = to_id((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        const char *b = NULL;
        size_t bl = 0;
        gpt2_status s = gpt2_token_bytes(model, ids[i], &b, &bl);
        if (ids[i] < 0 || ids[i] >= n_vocab) {
            FUZZ_CHECK(s == GPT2_E_ARG, "token_bytes(%d): status %d", ids[i], s);
            valid = 0;
            continue;
        }
        FUZZ_CHECK(s == GPT2_OK && b != NULL && bl > 0, "token_bytes(%d): status %d, %zu bytes", ids[i], s, bl);
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < bl; k++) sink ^= (uint8_t)b[k]; /* ASan checks every byte */
        (void)sink;
        total += bl;
    }

    /* the size query */
    size_t len = 12345;
    gpt2_status s = gpt2_detokenize(model, ids, n, NULL, 0, &len);
    if (!valid) {
        FUZZ_CHECK(s == GPT2_E_ARG, "an invalid id, yet status %d", s);
    } else {
        FUZZ_CHECK(s == (total ? GPT2_E_BUFFER : GPT2_OK) && len == total,
                   "size query: status %d, %zu bytes of %zu", s, len, total);
    }

    /* a buffer of cap bytes (up to a little more than needed), then the guard */
    const size_t cap = cap_sel % (total + 9);
    char *buf = malloc(cap + FUZZ_GUARD);
    FUZZ_CHECK(buf != NULL, "out of memory");
    fuzz_guard_set(buf, cap + FUZZ_GUARD);
    len = 12345;
    s = gpt2_detokenize(model, ids, n, buf, cap, &len);
    FUZZ_CHECK(fuzz_guard_ok(buf + cap, FUZZ_GUARD), "cap %zu: written past cap", cap);
    if (!valid) {
        FUZZ_CHECK(s == GPT2_E_ARG, "an invalid id, yet status %d", s);
    } else {
        FUZZ_CHECK(len == total, "cap %zu: %zu bytes of %zu", cap, len, total);
        FUZZ_CHECK(s == (total <= cap ? GPT2_OK : GPT2_E_BUFFER), "cap %zu of %zu: status %d", cap, total, s);
        size_t at = 0;
        for (size_t i = 0; i < n && at < cap; i++) {
            const char *b;
            size_t bl;
            gpt2_token_bytes(model, ids[i], &b, &bl);
            size_t k = bl < cap - at ? bl : cap - at;
            FUZZ_CHECK(memcmp(buf + at, b, k) == 0, "cap %zu: token %zu's bytes differ", cap, i);
            at += k;
        }
    }
    free(buf);

    /* the argument checks around it */
    FUZZ_CHECK(gpt2_detokenize(model, ids, n, NULL, 1, &len) == GPT2_E_ARG, "NULL buffer, cap 1");
    FUZZ_CHECK(gpt2_detokenize(model, ids, n, NULL, 0, NULL) == GPT2_E_ARG, "NULL length");
    free(ids);
    return 0;
}
