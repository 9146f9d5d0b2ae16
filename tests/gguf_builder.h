/* gguf_builder.h — writes small synthetic GPT-2 GGUF images for the tests, and records where
 * each header field lives so a test can overwrite it with a hostile value.
 *
 * The model: vocabulary of the 256 single bytes (in GPT-2's byte alphabet) plus a few merged
 * tokens, random weights of any shape and type.
 */
#ifndef GPT2_TESTS_GGUF_BUILDER_H
#define GPT2_TESTS_GGUF_BUILDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} wbuf;

static void wb_bytes(wbuf *w, const void *p, size_t n) {
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 1024;
        w->buf = realloc(w->buf, w->cap);
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}
static void wb_u32(wbuf *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wb_bytes(w, b, 4);
}
static void wb_u64(wbuf *w, uint64_t v) {
    wb_u32(w, (uint32_t)v);
    wb_u32(w, (uint32_t)(v >> 32));
}
static void wb_str(wbuf *w, const char *s) {
    wb_u64(w, strlen(s));
    wb_bytes(w, s, strlen(s));
}
static void wb_put_u64(wbuf *w, size_t at, uint64_t v) {
    for (int i = 0; i < 8; i++) w->buf[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}
static void wb_put_u32(wbuf *w, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) w->buf[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

#define GB_MAX_T 64
#define GB_MAX_KV 32

typedef struct {
    int C, NH, L, P, F, extra_tokens; /* shape; extra_tokens merged tokens after the 256 bytes */
    uint32_t type;                    /* 2-D weight type (ggml numbering) */
    uint64_t seed;
} gb_config;

typedef struct {
    size_t n_tensors, n_kv;                 /* offsets of the header counts */
    size_t kv_keylen[GB_MAX_KV], kv_type[GB_MAX_KV], kv_count[GB_MAX_KV]; /* count: arrays only */
    int nkv;
    size_t t_namelen[GB_MAX_T], t_ndims[GB_MAX_T], t_ne0[GB_MAX_T], t_ne1[GB_MAX_T],
        t_type[GB_MAX_T], t_offset[GB_MAX_T];
    int nt;
    size_t data_start, alignment_value;
} gb_layout;

/* the UTF-8 spelling of byte b in GPT-2's byte alphabet */
static size_t gb_alphabet(int b, char *out) {
    unsigned cp;
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (printable) {
        cp = (unsigned)b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) n++;
        cp = 0x100u + (unsigned)n;
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 63));
    return 2;
}

static uint64_t gb_rand(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

static float gb_randf(uint64_t *s) { return ((float)(gb_rand(s) >> 40) / (float)(1 << 24) - 0.5f) * 0.4f; }

static uint16_t gb_f16(float f) { /* round to nearest (test data only: no subnormals needed) */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
    if (ax < 0x38800000) return (uint16_t)sign;
    uint32_t r = ax - 0x38000000;
    uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

/* random values of a (rows, cols) tensor in the given type */
static void gb_tensor_data(wbuf *w, uint32_t type, uint64_t rows, uint64_t cols, uint64_t *seed,
                           int ones) {
    for (uint64_t r = 0; r < rows; r++) {
        if (type == 8) { /* q8_0 */
            for (uint64_t b = 0; b < cols / 32; b++) {
                uint16_t d = gb_f16(0.003f);
                wb_bytes(w, &d, 2);
                for (int i = 0; i < 32; i++) {
                    int8_t q = (int8_t)((int)(gb_rand(seed) % 255) - 127);
                    wb_bytes(w, &q, 1);
                }
            }
            continue;
        }
        for (uint64_t c = 0; c < cols; c++) {
            float v = ones ? 1.0f + gb_randf(seed) * 0.1f : gb_randf(seed);
            if (type == 0) wb_bytes(w, &v, 4);
            else if (type == 1) { uint16_t h = gb_f16(v); wb_bytes(w, &h, 2); }
            else { uint32_t x; memcpy(&x, &v, 4); uint16_t h = (uint16_t)(x >> 16); wb_bytes(w, &h, 2); }
        }
    }
}

static uint64_t gb_nbytes(uint32_t type, uint64_t rows, uint64_t cols) {
    if (type == 0) return rows * cols * 4;
    if (type == 8) return rows * cols / 32 * 34;
    return rows * cols * 2;
}

/* Builds the image; *lay receives the field offsets. The caller frees w.buf. */
static wbuf gb_build(const gb_config *cf, gb_layout *lay) {
    wbuf w = {0, 0, 0};
    memset(lay, 0, sizeof *lay);
    const int V = 256 + cf->extra_tokens;
    wb_u32(&w, 0x46554747u);
    wb_u32(&w, 3);
    lay->n_tensors = w.len;
    wb_u64(&w, 0); /* patched below */
    lay->n_kv = w.len;
    wb_u64(&w, 0);
    uint64_t nkv = 0;
#define KV_BEGIN(key, t) (lay->kv_keylen[nkv] = w.len, wb_str(&w, key), lay->kv_type[nkv] = w.len, wb_u32(&w, t))
    KV_BEGIN("general.architecture", 8); wb_str(&w, "gpt2"); nkv++;
    KV_BEGIN("general.name", 8); wb_str(&w, "synthetic"); nkv++;
    KV_BEGIN("general.alignment", 4); lay->alignment_value = w.len; wb_u32(&w, 32); nkv++;
    KV_BEGIN("gpt2.context_length", 4); wb_u32(&w, (uint32_t)cf->P); nkv++;
    KV_BEGIN("gpt2.embedding_length", 4); wb_u32(&w, (uint32_t)cf->C); nkv++;
    KV_BEGIN("gpt2.feed_forward_length", 4); wb_u32(&w, (uint32_t)cf->F); nkv++;
    KV_BEGIN("gpt2.block_count", 4); wb_u32(&w, (uint32_t)cf->L); nkv++;
    KV_BEGIN("gpt2.attention.head_count", 4); wb_u32(&w, (uint32_t)cf->NH); nkv++;
    KV_BEGIN("gpt2.attention.layer_norm_epsilon", 6); { float e = 1e-5f; wb_bytes(&w, &e, 4); } nkv++;
    KV_BEGIN("tokenizer.ggml.model", 8); wb_str(&w, "gpt2"); nkv++;
    KV_BEGIN("tokenizer.ggml.tokens", 9);
    wb_u32(&w, 8);
    lay->kv_count[nkv] = w.len;
    wb_u64(&w, (uint64_t)V);
    char tok[64];
    for (int b = 0; b < 256; b++) {
        size_t n = gb_alphabet(b, tok);
        wb_u64(&w, n);
        wb_bytes(&w, tok, n);
    }
    /* merged tokens: "ab", "abab", ... made of the first letters */
    for (int i = 0; i < cf->extra_tokens; i++) {
        int n = 0;
        for (int k = 0; k <= i + 1 && n < 60; k++) tok[n++] = (char)('a' + (k % 2));
        wb_u64(&w, (uint64_t)n);
        wb_bytes(&w, tok, (size_t)n);
    }
    nkv++;
    KV_BEGIN("tokenizer.ggml.merges", 9);
    wb_u32(&w, 8);
    lay->kv_count[nkv] = w.len;
    wb_u64(&w, (uint64_t)cf->extra_tokens);
    for (int i = 0; i < cf->extra_tokens; i++) {
        /* token i+256 is (token i+255 or "a") + "a"/"b" */
        char m[80];
        int n = 0;
        if (i == 0) { m[n++] = 'a'; }
        else for (int k = 0; k <= i; k++) m[n++] = (char)('a' + (k % 2));
        m[n++] = ' ';
        m[n++] = (char)('a' + ((i + 1) % 2));
        wb_u64(&w, (uint64_t)n);
        wb_bytes(&w, m, (size_t)n);
    }
    nkv++;
    KV_BEGIN("tokenizer.ggml.eos_token_id", 4); wb_u32(&w, 0); nkv++;
#undef KV_BEGIN
    lay->nkv = (int)nkv;
    wb_put_u64(&w, lay->n_kv, nkv);

    /* tensors */
    struct { char name[64]; uint64_t rows, cols; uint32_t type; int ones; } t[GB_MAX_T];
    int nt = 0;
#define T(nm, r, c, ty, on) (snprintf(t[nt].name, 64, "%s", nm), t[nt].rows = (r), t[nt].cols = (c), t[nt].type = (ty), t[nt].ones = (on), nt++)
    uint64_t C = (uint64_t)cf->C, F = (uint64_t)cf->F;
    T("token_embd.weight", (uint64_t)V, C, cf->type, 0);
    T("position_embd.weight", (uint64_t)cf->P, C, cf->type, 0);
    for (int l = 0; l < cf->L; l++) {
        char nm[64];
#define B(suffix, r, c, ty, on) (snprintf(nm, 64, "blk.%d." suffix, l), T(nm, r, c, ty, on))
        B("attn_norm.weight", 1, C, 0, 1); B("attn_norm.bias", 1, C, 0, 0);
        B("attn_qkv.weight", 3 * C, C, cf->type, 0); B("attn_qkv.bias", 1, 3 * C, 0, 0);
        B("attn_output.weight", C, C, cf->type, 0); B("attn_output.bias", 1, C, 0, 0);
        B("ffn_norm.weight", 1, C, 0, 1); B("ffn_norm.bias", 1, C, 0, 0);
        B("ffn_up.weight", F, C, cf->type, 0); B("ffn_up.bias", 1, F, 0, 0);
        B("ffn_down.weight", C, F, cf->type, 0); B("ffn_down.bias", 1, C, 0, 0);
#undef B
    }
    T("output_norm.weight", 1, C, 0, 1);
    T("output_norm.bias", 1, C, 0, 0);
#undef T
    wb_put_u64(&w, lay->n_tensors, (uint64_t)nt);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        int one_d = t[i].rows == 1 && strstr(t[i].name, "embd") == NULL;
        lay->t_namelen[i] = w.len;
        wb_str(&w, t[i].name);
        lay->t_ndims[i] = w.len;
        wb_u32(&w, one_d ? 1 : 2);
        lay->t_ne0[i] = w.len;
        wb_u64(&w, t[i].cols);
        lay->t_ne1[i] = one_d ? 0 : w.len;
        if (!one_d) wb_u64(&w, t[i].rows);
        lay->t_type[i] = w.len;
        wb_u32(&w, t[i].type);
        lay->t_offset[i] = w.len;
        wb_u64(&w, off);
        uint64_t nb = gb_nbytes(t[i].type, t[i].rows, t[i].cols);
        off += (nb + 31) / 32 * 32;
    }
    lay->nt = nt;
    while (w.len % 32) wb_bytes(&w, "", 1);
    lay->data_start = w.len;
    uint64_t seed = cf->seed | 1;
    for (int i = 0; i < nt; i++) {
        gb_tensor_data(&w, t[i].type, t[i].rows, t[i].cols, &seed, t[i].ones);
        while (w.len % 32) wb_bytes(&w, "", 1);
    }
    return w;
}

#endif
