/* test_tokenizer.c — GPT-2's byte-level BPE, against OpenAI's own encoder.
 *
 * Reference data (tests/data, copied from the golden set): public.jsonl holds 6,311 texts with
 * the ids encoder.py gives them; decode_cases.jsonl maps ids to bytes; disputed.jsonl holds
 * texts whose pieces depend on the Unicode version (ours is 15.0, as the reference's).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "gpt2.h"

FIXTURE_MODEL_GROUP

/* tokenize into a fresh buffer */
static int32_t *encode(const char *text, size_t len, int special, size_t *n) {
    size_t cap = len + 1;
    int32_t *ids = malloc(cap * sizeof *ids);
    assert_int_equal(gpt2_tokenize(model, text, len, special, ids, cap, n), GPT2_OK);
    return ids;
}

static char *decode(const int32_t *ids, size_t n, size_t *len) {
    size_t need;
    gpt2_status s = gpt2_detokenize(model, ids, n, NULL, 0, &need);
    assert_true(s == GPT2_OK || s == GPT2_E_BUFFER);
    char *buf = malloc(need + 1);
    assert_int_equal(gpt2_detokenize(model, ids, n, buf, need, len), GPT2_OK);
    assert_int_equal(*len, need);
    return buf;
}

/* Runs every {"text", "ids"} line of a JSONL file; returns the number of mismatches. */
static int run_jsonl(const char *path, const char *ids_key, int *n_cases) {
    size_t len;
    char *all = read_all(path, &len);
    int bad = 0, n = 0;
    for (char *line = all; line < all + len;) {
        char *nl = memchr(line, '\n', (size_t)(all + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(all + len - line);
        if (ll > 0) {
            jv rec = json_parse(line, ll);
            const jv *text = jreq(&rec, "text"), *want = jreq(&rec, ids_key);
            size_t n_ids, n_want;
            int32_t *ids = encode(text->str, text->len, 0, &n_ids);
            int32_t *w = jints(want, &n_want);
            if (n_ids != n_want || memcmp(ids, w, n_ids * sizeof *ids) != 0) {
                if (bad < 5)
                    fprintf(stderr, "mismatch in %s line %d (%zu ids, want %zu)\n", path, n + 1,
                            n_ids, n_want);
                bad++;
            }
            /* and back: the ids decode to the very same bytes */
            size_t dl;
            char *d = decode(ids, n_ids, &dl);
            if (dl != text->len || memcmp(d, text->str, dl) != 0) bad++;
            free(d);
            free(ids);
            free(w);
            json_free(&rec);
            n++;
        }
        line += ll + 1;
    }
    free(all);
    *n_cases = n;
    return bad;
}

static void test_public_corpus(void **state) {
    (void)state;
    int n;
    int bad = run_jsonl(DATA "public.jsonl", "ids", &n);
    assert_int_equal(n, 6311);
    assert_int_equal(bad, 0);
}

/* Texts whose pieces depend on the Unicode tables: with Unicode 15.0 we must give the
   reference encoder's ids (oracle #1: Python regex with Unicode 15.0). */
static void test_disputed_unicode15(void **state) {
    (void)state;
    int n;
    int bad = run_jsonl(DATA "disputed.jsonl", "ids", &n);
    assert_int_equal(n, 438);
    assert_int_equal(bad, 0);
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void test_decode_cases(void **state) {
    (void)state;
    size_t len;
    char *all = read_all(DATA "decode_cases.jsonl", &len);
    int n = 0;
    for (char *line = all; line < all + len;) {
        char *nl = memchr(line, '\n', (size_t)(all + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(all + len - line);
        if (ll > 0) {
            jv rec = json_parse(line, ll);
            size_t n_ids;
            int32_t *ids = jints(jreq(&rec, "ids"), &n_ids);
            const jv *hex = jreq(&rec, "hex");
            size_t dl;
            char *d = decode(ids, n_ids, &dl);
            assert_int_equal(dl, hex->len / 2);
            for (size_t i = 0; i < dl; i++)
                assert_int_equal((unsigned char)d[i], hexval(hex->str[2 * i]) * 16 + hexval(hex->str[2 * i + 1]));
            /* token by token too */
            const jv *th = jreq(&rec, "token_hex");
            assert_int_equal(th->len, n_ids);
            for (size_t i = 0; i < n_ids; i++) {
                const char *b;
                size_t bl;
                assert_int_equal(gpt2_token_bytes(model, ids[i], &b, &bl), GPT2_OK);
                assert_int_equal(bl, th->items[i].len / 2);
            }
            free(d);
            free(ids);
            json_free(&rec);
            n++;
        }
        line += ll + 1;
    }
    assert_int_equal(n, 874);
    free(all);
}

static void expect_ids(const char *text, int special, const int32_t *want, size_t n_want) {
    size_t n;
    int32_t *ids = encode(text, strlen(text), special, &n);
    assert_int_equal(n, n_want);
    assert_memory_equal(ids, want, n * sizeof *ids);
    free(ids);
}

static void test_known_examples(void **state) {
    (void)state;
    expect_ids("Hello world", 0, (const int32_t[]){15496, 995}, 2);
    /* "<|endoftext|>" is plain text for GPT-2's encoder, the special token when allowed */
    expect_ids("<|endoftext|>", 0, (const int32_t[]){27, 91, 437, 1659, 5239, 91, 29}, 7);
    expect_ids("<|endoftext|>", 1, (const int32_t[]){50256}, 1);
    expect_ids("a<|endoftext|>b<|endoftext|>", 1, (const int32_t[]){64, 50256, 65, 50256}, 4);
    expect_ids("", 0, NULL, 0);
    /* space runs: GPT-2 has no multi-space tokens, so a run is id 220 repeated, the last
       space joining the next word */
    expect_ids("a   b", 0, (const int32_t[]){64, 220, 220, 275}, 4);
    expect_ids("don't", 0, (const int32_t[]){9099, 470}, 2);
}

static void test_buffer_too_small(void **state) {
    (void)state;
    int32_t ids[4] = {-7, -7, -7, -7};
    size_t n = 99;
    /* "Hello world how are you" needs 5 ids */
    assert_int_equal(gpt2_tokenize(model, "Hello world how are you", 23, 0, ids, 3, &n), GPT2_E_BUFFER);
    assert_int_equal(n, 5);
    assert_int_equal(ids[0], 15496);
    assert_int_equal(ids[3], -7); /* nothing past cap */
    assert_int_equal(gpt2_tokenize(model, "Hello", 5, 0, NULL, 0, &n), GPT2_E_BUFFER);
    assert_int_equal(n, 1);
    char buf[4] = {'x', 'x', 'x', 'x'};
    size_t len;
    assert_int_equal(gpt2_detokenize(model, (const int32_t[]){15496, 995}, 2, buf, 3, &len), GPT2_E_BUFFER);
    assert_int_equal(len, 11);
    assert_memory_equal(buf, "Helx", 4);
}

static void test_bad_arguments(void **state) {
    (void)state;
    size_t n;
    int32_t ids[4];
    assert_int_equal(gpt2_tokenize(NULL, "a", 1, 0, ids, 4, &n), GPT2_E_ARG);
    assert_int_equal(gpt2_tokenize(model, NULL, 1, 0, ids, 4, &n), GPT2_E_ARG);
    assert_int_equal(gpt2_tokenize(model, "a", 1, 0, ids, 4, NULL), GPT2_E_ARG);
    const char *b;
    size_t bl;
    assert_int_equal(gpt2_token_bytes(model, -1, &b, &bl), GPT2_E_ARG);
    assert_int_equal(gpt2_token_bytes(model, 50257, &b, &bl), GPT2_E_ARG);
    assert_int_equal(gpt2_detokenize(model, (const int32_t[]){50257}, 1, NULL, 0, &bl), GPT2_E_ARG);
}

/* Any byte string round-trips: bytes that are not UTF-8 are characters of their own. */
static void test_random_bytes_roundtrip(void **state) {
    (void)state;
    static const unsigned char alphabet[] = {
        ' ', ' ', ' ', 'a', 'b', 'Z', '0', '7', '\'', 's', 't', '\n', '\t', '.', '!', 0x00,
        0x80, 0xBF, 0xC2, 0xC3, 0xA9, 0xE2, 0x80, 0x99, 0xE3, 0x81, 0x82, 0xF0, 0x9F, 0x98,
        0x80, 0xED, 0xA0, 0x80, 0xFF, 0xFE, 0xC0, 0xF5, 0xF4, 0x90};
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int iter = 0; iter < 3000; iter++) {
        unsigned char buf[300];
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t len = x % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            buf[i] = (x >> 40) % 4 == 0 ? (unsigned char)(x >> 8) : alphabet[(x >> 16) % sizeof alphabet];
        }
        size_t n, dl;
        int32_t *ids = encode((const char *)buf, len, iter & 1, &n);
        char *d = decode(ids, n, &dl);
        assert_int_equal(dl, len);
        assert_memory_equal(d, buf, len);
        free(ids);
        free(d);
    }
}

/* BPE must not be quadratic: a 1 MB word and 100 KB without a space are tokenized (and
   round-trip); `make bench` reports the throughput. */
static void test_long_inputs(void **state) {
    (void)state;
    size_t len = 1 << 20;
    char *s = malloc(len);
    memset(s, 'a', len);
    size_t n, dl;
    int32_t *ids = encode(s, len, 0, &n);
    assert_int_equal(n, len / 4); /* "a a" -> "aa" everywhere, then "aa aa" -> "aaaa" (24794) */
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], 24794);
    char *d = decode(ids, n, &dl);
    assert_int_equal(dl, len);
    assert_memory_equal(d, s, len);
    free(ids);
    free(d);
    for (size_t i = 0; i < 100000; i++) s[i] = "abcdefghijklmnopqrstuvwxyz0123456789.,;"[(i * 7 + i / 13) % 39];
    ids = encode(s, 100000, 0, &n);
    d = decode(ids, n, &dl);
    assert_int_equal(dl, 100000);
    assert_memory_equal(d, s, dl);
    free(ids);
    free(d);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_examples),
        cmocka_unit_test(test_public_corpus),
        cmocka_unit_test(test_disputed_unicode15),
        cmocka_unit_test(test_decode_cases),
        cmocka_unit_test(test_buffer_too_small),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_random_bytes_roundtrip),
        cmocka_unit_test(test_long_inputs),
    };
    return cmocka_run_group_tests_name("tokenizer", tests, setup, teardown);
}
