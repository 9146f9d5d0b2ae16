/* fuzz_tokenizer.c — any bytes through gpt2_tokenize on the fixture's real GPT-2 vocabulary.
 *
 * Properties, for allow_special 0 and 1:
 *   - the status is GPT2_OK with a big enough buffer; every id is inside the vocabulary;
 *   - decode(encode(x)) == x byte for byte (with allow_special 1 too: "<|endoftext|>"
 *     becomes eot_id, whose bytes are that same text);
 *   - without "<|endoftext|>" in x, both settings give the same ids;
 *   - with a smaller cap: GPT2_E_BUFFER, the same count, the same first cap ids, and nothing
 *     written past cap (a guard follows the buffer; ASan watches past the allocation).
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

/* ids of text with a buffer of exactly the size needed; *n receives their count */
static int32_t *encode(const char *text, size_t len, int special, size_t *n) {
    gpt2_status s = gpt2_tokenize(model, text, len, special, NULL, 0, n);
    FUZZ_CHECK(s == (*n ? GPT2_E_BUFFER : GPT2_OK), "size query: status %d for %zu ids", s, *n);
    FUZZ_CHECK(*n <= len, "%zu ids for %zu bytes", *n, len);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL, "out of memory");
    size_t n2 = 0;
    s = gpt2_tokenize(model, text, len, special, ids, *n, &n2);
    FUZZ_CHECK(s == GPT2_OK && n2 == *n, "status %d, %zu ids after a query said %zu", s, n2, *n);
    for (size_t i = 0; i < *n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab, "id %d at %zu is outside the vocabulary", ids[i], i);
    return ids;
}

static void check_roundtrip(const char *text, size_t len, const int32_t *ids, size_t n, int special) {
    size_t need = 0;
    gpt2_status s = gpt2_detokenize(model, ids, n, NULL, 0, &need);
    FUZZ_CHECK(s == (need ? GPT2_E_BUFFER : GPT2_OK), "detokenize size query: status %d", s);
    FUZZ_CHECK(need == len, "allow_special %d: %zu bytes in, %zu bytes back", special, len, need);
    char *back = malloc(len ? len : 1);
    FUZZ_CHECK(back != NULL, "out of memory");
    size_t got = 0;
    s = gpt2_detokenize(model, ids, n, back, len, &got);
    FUZZ_CHECK(s == GPT2_OK && got == len, "detokenize: status %d, %zu bytes", s, got);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(back[i] == text[i], "allow_special %d: byte %zu of %zu comes back as 0x%02x, not "
                   "0x%02x", special, i, len, (unsigned)(uint8_t)back[i], (unsigned)(uint8_t)text[i]);
    free(back);
}

/* a smaller cap: E_BUFFER, the same count, the same prefix, nothing past cap */
static void check_small_cap(const char *text, size_t len, const int32_t *ids, size_t n, int special,
                            size_t cap) {
    const size_t guard_ids = FUZZ_GUARD / sizeof(int32_t);
    int32_t *buf = malloc((cap + guard_ids) * sizeof *buf);
    FUZZ_CHECK(buf != NULL, "out of memory");
    fuzz_guard_set(buf, (cap + guard_ids) * sizeof *buf);
    size_t got = 0;
    gpt2_status s = gpt2_tokenize(model, text, len, special, buf, cap, &got);
    FUZZ_CHECK(s == GPT2_E_BUFFER, "cap %zu of %zu: status %d", cap, n, s);
    FUZZ_CHECK(got == n, "cap %zu: %zu ids needed, %zu before", cap, got, n);
    FUZZ_CHECK(memcmp(buf, ids, cap * sizeof *ids) == 0, "cap %zu: a different prefix", cap);
    FUZZ_CHECK(fuzz_guard_ok(buf + cap, guard_ids * sizeof *buf), "cap %zu: written past cap", cap);
    free(buf);
}

static int has_endoftext(const uint8_t *s, size_t n) {
    static const char eot[] = "<|endoftext|>";
    for (size_t i = 0; i + 13 <= n; i++)
        if (s[i] == '<' && memcmp(s + i, eot, 13) == 0) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    size_t n0, n1;
    int32_t *ids0 = encode(text, size, 0, &n0);
    check_roundtrip(text, size, ids0, n0, 0);
    int32_t *ids1 = encode(text, size, 1, &n1);
    check_roundtrip(text, size, ids1, n1, 1);
    if (!has_endoftext(data, size))
        FUZZ_CHECK(n0 == n1 && memcmp(ids0, ids1, n0 * sizeof *ids0) == 0,
                   "no <|endoftext|> in the text, yet allow_special changes its ids");
    /* a cap below the count, chosen by the input so that the fuzzer explores it */
    if (n0 > 0) check_small_cap(text, size, ids0, n0, 0, size ? data[size - 1] % n0 : 0);
    if (n1 > 0) check_small_cap(text, size, ids1, n1, 1, size ? data[0] % n1 : 0);
    free(ids0);
    free(ids1);
    return 0;
}
