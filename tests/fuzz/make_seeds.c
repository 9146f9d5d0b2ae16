/* make_seeds.c — writes the seed corpora of the fuzz targets (`make fuzz-seeds`):
 *
 *   corpus/fuzz_gguf/        small synthetic GPT-2 models (tests/gguf_builder.h) in each
 *                            weight type, one with a token_type array, and the first 4 KB of
 *                            the fixture (the converter's own header, cut short)
 *   corpus/fuzz_tokenizer/   texts from tests/data (public corpus lines, the Unicode cases
 *                            the tokenizers dispute) and hand-made edge cases
 *   corpus/fuzz_detokenize/  id arrays from tests/data/decode_cases.jsonl and edge ids,
 *                            in the input format fuzz_detokenize.c describes
 *
 * Usage: make_seeds OUT_DIR FIXTURE_GGUF. Deterministic: the same files every time.
 */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <sys/stat.h>

#include "../common.h"
#include "../gguf_builder.h"

static const char *out_dir;

static void put(const char *target, const char *name, const void *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    mkdir(out_dir, 0755);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) test_die("cannot write %s", path);
}

/* ---- GGUF images ------------------------------------------------------------------------- */

/* Inserts one more key/value entry (its bytes, key included) after the others: the tensor
   table moves, so the data section is padded to the alignment again (offsets are relative
   to it and stay valid). */
static void add_kv(wbuf *w, const gb_layout *lay, const uint8_t *kv, size_t kv_len) {
    const size_t table = lay->t_namelen[0], table_end = lay->t_offset[lay->nt - 1] + 8;
    wbuf o = {0, 0, 0};
    wb_bytes(&o, w->buf, table);
    wb_bytes(&o, kv, kv_len);
    wb_bytes(&o, w->buf + table, table_end - table);
    while (o.len % 32) wb_bytes(&o, "", 1);
    wb_bytes(&o, w->buf + lay->data_start, w->len - lay->data_start);
    wb_put_u64(&o, lay->n_kv, (uint64_t)lay->nkv + 1);
    free(w->buf);
    *w = o;
}

static void gguf_seeds(const char *fixture) {
    static const struct { const char *name; gb_config cf; } models[] = {
        /* C, NH, L, P, F, extra_tokens (merges), type, seed */
        {"f32-c4-merges", {4, 2, 1, 4, 8, 3, GPT2_TYPE_F32, 1}},
        {"f16-c4-l2", {4, 2, 2, 3, 8, 2, GPT2_TYPE_F16, 2}},
        {"bf16-c4-nomerges", {4, 1, 1, 2, 4, 0, GPT2_TYPE_BF16, 3}},
        {"q8_0-c32", {32, 2, 1, 2, 32, 1, GPT2_TYPE_Q8_0, 4}},
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        gb_layout lay;
        wbuf w = gb_build(&models[i].cf, &lay);
        put("fuzz_gguf", models[i].name, w.buf, w.len);
        if (i == 0) {
            /* tokenizer.ggml.token_type: token 256 ("ab") a control token (type 3) */
            const int V = 256 + models[i].cf.extra_tokens;
            wbuf kv = {0, 0, 0};
            wb_str(&kv, "tokenizer.ggml.token_type");
            wb_u32(&kv, 9);  /* array */
            wb_u32(&kv, 5);  /* of i32 */
            wb_u64(&kv, (uint64_t)V);
            for (int t = 0; t < V; t++) wb_u32(&kv, t == 256 ? 3 : 1);
            add_kv(&w, &lay, kv.buf, kv.len);
            put("fuzz_gguf", "f32-c4-token-type", w.buf, w.len);
            free(kv.buf);
        }
        free(w.buf);
    }
    size_t len;
    char *img = read_all(fixture, &len);
    put("fuzz_gguf", "fixture-first-4k", img, len < 4096 ? len : 4096);
    free(img);
}

/* ---- texts ------------------------------------------------------------------------------ */

static void text_seeds(void) {
    static const struct { const char *name, *text; size_t len; } hand[] = {
#define S(name, lit) {name, lit, sizeof lit - 1}
        S("endoftext", "<|endoftext|>"),
        S("endoftext-between", "a<|endoftext|>b<|endoftext|><|endoftext|> c"),
        S("endoftext-cut", "<|endoftext|<|endoftext<|endoftext|>>"),
        S("spaces", "a   b\t\t c\n\n\n  d \r\n  \xC2\xA0\xE3\x80\x80x  "),
        S("contractions", "don't we'll they've I'M it's 'd 're ''ll 'S"),
        S("numbers", "12345 3.14159 \xD9\xA3\xD9\xA4 \xEF\xBC\x91\xEF\xBC\x92 \xF0\x9D\x9F\x98x2"),
        S("invalid-utf8", "\xC0\x80 \xED\xA0\x80 \xF4\x90\x80\x80 \xFF\xFE \x80\xBF \xE2\x82 \xF0\x9F\x98"),
        S("emoji", "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD Hi! \xE2\x80\x99s \xE2\x80\x94 ok"),
        S("controls", "\x00\x01\x1F\x7F x\x00y \xC2\x85 \xC2\xAD"),
        S("punct-runs", "!!!??? ...,,, ;;: (a) [b] {c} <d> \"e\" #f $g %h"),
#undef S
    };
    for (size_t i = 0; i < sizeof hand / sizeof *hand; i++)
        put("fuzz_tokenizer", hand[i].name, hand[i].text, hand[i].len);

    /* lines of the public corpus (cut at 400 bytes, mid-character or not) */
    FILE *f = fopen(DATA "public.jsonl", "rb");
    if (!f) test_die("cannot open " DATA "public.jsonl");
    char *line = NULL;
    size_t line_cap = 0;
    for (int i = 0; getline(&line, &line_cap, f) > 0; i++) {
        if (i % 900 != 0 && i != 3) continue;
        jv v = json_parse(line, strlen(line));
        const jv *t = jreq(&v, "text");
        char name[32];
        snprintf(name, sizeof name, "public-%04d", i);
        put("fuzz_tokenizer", name, t->str, t->len < 400 ? t->len : 400);
        json_free(&v);
    }
    fclose(f);

    /* the disputed characters, a few dozen of them, each between letters and digits */
    f = fopen(DATA "disputed.jsonl", "rb");
    if (!f) test_die("cannot open " DATA "disputed.jsonl");
    wbuf w = {0, 0, 0};
    for (int i = 0; getline(&line, &line_cap, f) > 0; i++) {
        if (i % 9 != 0) continue;
        jv v = json_parse(line, strlen(line));
        const jv *t = jreq(&v, "text");
        wb_bytes(&w, "a", 1);
        wb_bytes(&w, t->str, t->len);
        wb_bytes(&w, i % 2 ? "1 " : " ", i % 2 ? 2 : 1);
        json_free(&v);
    }
    fclose(f);
    put("fuzz_tokenizer", "disputed", w.buf, w.len);
    free(w.buf);
    free(line);
}

/* ---- id arrays -------------------------------------------------------------------------- */

/* an id in the target's encoding: selector 0 maps (u >> 2) - 8 to an id */
static void put_id(wbuf *w, int32_t id) { wb_u32(w, (uint32_t)(id + 8) << 2); }
static void put_raw(wbuf *w, uint32_t u) { wb_u32(w, u | 3); }

static void id_seeds(void) {
    FILE *f = fopen(DATA "decode_cases.jsonl", "rb");
    if (!f) test_die("cannot open " DATA "decode_cases.jsonl");
    char *line = NULL;
    size_t line_cap = 0;
    wbuf w = {0, 0, 0};
    int n_seeds = 0;
    for (int i = 0; getline(&line, &line_cap, f) > 0; i++) {
        if (i % 7 != 0) continue;
        if (w.len == 0) { /* a cap selector first */
            uint16_t cap = (uint16_t)(n_seeds * 37 + 5);
            wb_bytes(&w, &cap, 2);
        }
        jv v = json_parse(line, strlen(line));
        const jv *ids = jreq(&v, "ids");
        for (size_t k = 0; k < ids->len; k++) put_id(&w, (int32_t)ids->items[k].num);
        json_free(&v);
        if (w.len > 200) {
            char name[32];
            snprintf(name, sizeof name, "decode-cases-%02d", n_seeds++);
            put("fuzz_detokenize", name, w.buf, w.len);
            w.len = 0;
        }
    }
    fclose(f);
    free(w.buf);
    free(line);
    /* the edges: first, last, eot, just outside, and raw values */
    wbuf e = {0, 0, 0};
    wb_bytes(&e, "\xff\xff", 2);
    const int32_t edge[] = {0, 1, 255, 50255, 50256, 50257, 50258, -1, -8, 50264, 198, 220, 0};
    for (size_t k = 0; k < sizeof edge / sizeof *edge; k++) put_id(&e, edge[k]);
    const uint32_t raw[] = {0x7FFFFFFFu, 0xFFFFFFFFu, 0x80000000u, 0x0000C453u, 0x00010000u};
    for (size_t k = 0; k < sizeof raw / sizeof *raw; k++) put_raw(&e, raw[k]);
    put("fuzz_detokenize", "edges", e.buf, e.len);
    e.len = 0;
    wb_bytes(&e, "\x03\x00", 2); /* cap 3 of "Hello world" */
    put_id(&e, 15496);
    put_id(&e, 995);
    put("fuzz_detokenize", "hello-world-cap3", e.buf, e.len);
    free(e.buf);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s OUT_DIR FIXTURE_GGUF\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    gguf_seeds(argv[2]);
    text_seeds();
    id_seeds();
    return 0;
}
