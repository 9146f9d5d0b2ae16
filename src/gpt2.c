/* gpt2.c — GPT-2 inference on the CPU in one file of C11 (libc, libm, POSIX threads).
 *
 * Read top to bottom, this file follows the data through the model:
 *
 *   1. model file    GGUF parsing and validation, mmap; the weights as typed matrices
 *   2. tokenizer     text -> ids -> text: byte alphabet, pre-tokenizer, BPE merges
 *   3. kernels       dot products per weight type (SIMD + scalar reference), matmul,
 *                    layernorm, GELU, softmax; the thread pool that runs them
 *   4. transformer   embeddings, blocks (masked self-attention + MLP), KV cache,
 *                    forward() returning logits
 *   5. decoding      logits processors, greedy, sampling, beam search
 *   6. generation    the autoregressive loop, stop conditions, streaming
 *   appendix         gpt2_quantize: rewriting a model file with other weight types
 *
 * Shape legend. A comment like `// (T, C)` gives a buffer's shape, row-major:
 *   V   vocabulary size (50257)          T   tokens processed in one forward pass
 *   P   positions in the context (n_ctx)  C   channels of the residual stream (n_embd)
 *   NH  attention heads                   HS  head size, C / NH
 *   F   MLP hidden width (n_ff = 4C)      L   transformer blocks (n_layer)
 *   B   beams
 *
 * Build: cc -O2 -Iinclude -Isrc -c src/gpt2.c  (no flags needed; SIMD kernels are compiled
 * with per-function target attributes and chosen at run time).
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "gpt2.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define GPT2_HAVE_MMAP 1
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define GPT2_X86 1
#endif

/* ==========================================================================================
 * 0. Basics: status strings, error messages, checked arithmetic
 * ======================================================================================== */

const char *gpt2_strerror(gpt2_status s) {
    switch (s) {
    case GPT2_OK: return "ok";
    case GPT2_E_IO: return "input/output error";
    case GPT2_E_FORMAT: return "malformed model file";
    case GPT2_E_UNSUPPORTED: return "unsupported model";
    case GPT2_E_NOMEM: return "out of memory";
    case GPT2_E_ARG: return "invalid argument";
    case GPT2_E_CONTEXT_FULL: return "context is full";
    case GPT2_E_BUFFER: return "buffer too small";
    }
    return "unknown status";
}

/* Writes a formatted reason into the caller's buffer (if any) and returns the status. */
static gpt2_status fail_with(gpt2_status s, char *err, size_t err_len, const char *fmt, ...) {
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return s;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* a * b, or false if it overflows */
static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}

/* IEEE half and bfloat16 <-> float, exactly (round to nearest even on the way down). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);                  /* inf / nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);          /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;                                              /* zero */
    } else {                                                      /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0)); /* inf, nan */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);    /* rounds above 65504: inf */
    if (ax < 0x38800000u) {                                     /* below 2^-14: subnormal or 0 */
        if (ax < 0x33000000u) return (uint16_t)sign;            /* below half the smallest */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                               /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u;                              /* rebias 127 -> 15, in place */
    uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;        /* may carry into the exponent */
    return (uint16_t)(sign | r);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);                                          /* nearest even */
    return (uint16_t)(x >> 16);
}

/* ==========================================================================================
 * 1. Model file: GGUF
 * ==========================================================================================
 * A GGUF (v3) file is: a header, key/value metadata, a table of tensor descriptions, padding
 * to the alignment, then the tensor data. All integers are little-endian.
 *
 *   "GGUF" u32 version  u64 n_tensors  u64 n_kv
 *   n_kv times:       string key, u32 value_type, value
 *   n_tensors times:  string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset
 *   (pad to general.alignment, default 32)  tensor data; offsets are relative to its start
 *
 * A string is u64 length + bytes (no NUL). An array value is u32 element_type, u64 count,
 * then the elements. ne[0] is the fastest-varying dimension: a matrix of `rows` rows of
 * `cols` numbers has ne = [cols, rows].
 *
 * The file comes from outside, so nothing in it is trusted: every read goes through a
 * bounded cursor, every count is checked against the bytes that remain before anything is
 * allocated from it, and every tensor must lie inside the file.
 * ---------------------------------------------------------------------------------------- */

enum {
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_NTYPES
};
static const uint8_t gguf_scalar_size[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define QK8_0 32               /* values per Q8_0 block */
#define Q8_0_BLOCK_BYTES 34    /* f16 scale + 32 int8 */

/* A bounded cursor over bytes of the file. */
typedef struct {
    const uint8_t *p, *end;
} cursor;

static bool cur_take(cursor *c, void *dst, size_t n) {
    if ((size_t)(c->end - c->p) < n) return false;
    if (dst) memcpy(dst, c->p, n);
    c->p += n;
    return true;
}
static bool cur_u32(cursor *c, uint32_t *v) {
    uint8_t b[4];
    if (!cur_take(c, b, 4)) return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}
static bool cur_u64(cursor *c, uint64_t *v) {
    uint32_t lo, hi;
    if (!cur_u32(c, &lo) || !cur_u32(c, &hi)) return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
}
/* A string in place: *s points into the file, not NUL-terminated. */
static bool cur_str(cursor *c, const char **s, uint64_t *len) {
    if (!cur_u64(c, len) || *len > (uint64_t)(c->end - c->p)) return false;
    *s = (const char *)c->p;
    c->p += *len;
    return true;
}

/* One metadata entry; the value stays in the file and is decoded on demand. */
typedef struct {
    const char *key;
    uint64_t key_len;
    uint32_t type;       /* GGUF_* */
    uint32_t elem_type;  /* arrays: element type */
    uint64_t count;      /* arrays: element count */
    const uint8_t *val;  /* first byte of the value (arrays: of the first element) */
    const uint8_t *raw;  /* the whole entry as stored (key length .. end of value) */
    uint64_t raw_len;
} gguf_kv;

/* One tensor description, checked against the file. */
typedef struct {
    const char *name;
    uint64_t name_len;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;        /* ggml type */
    uint64_t offset;      /* from the start of the data section */
    uint64_t nbytes;
    const uint8_t *data;  /* in the mapped file */
} gguf_tensor;

typedef struct {
    const uint8_t *base;  /* the whole file */
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    gguf_kv *kv;
    uint64_t n_kv;
    gguf_tensor *tensors;
    uint64_t n_tensors;
    uint64_t data_offset; /* start of the tensor data section in the file */
} gguf_file;

/* Bytes of tensor data for a ggml type; 0 if the type is not one we read. */
static bool ggml_type_nbytes(uint32_t type, uint64_t n_elems, uint64_t row_len, uint64_t *out) {
    switch (type) {
    case GPT2_TYPE_F32: return mul_ok(n_elems, 4, out);
    case GPT2_TYPE_F16:
    case GPT2_TYPE_BF16: return mul_ok(n_elems, 2, out);
    case GPT2_TYPE_Q8_0:
        if (row_len % QK8_0) return false;
        return mul_ok(n_elems / QK8_0, Q8_0_BLOCK_BYTES, out);
    default: return false;
    }
}

const char *gpt2_type_name(gpt2_type t) {
    switch (t) {
    case GPT2_TYPE_F32: return "f32";
    case GPT2_TYPE_F16: return "f16";
    case GPT2_TYPE_BF16: return "bf16";
    case GPT2_TYPE_Q8_0: return "q8_0";
    }
    return "?";
}

/* Skips (and validates) one value of the given type; arrays may nest a few levels. */
static bool gguf_skip_value(cursor *c, uint32_t type, int depth) {
    if (type >= GGUF_NTYPES) return false;
    if (type == GGUF_STRING) {
        const char *s;
        uint64_t len;
        return cur_str(c, &s, &len);
    }
    if (type == GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (depth > 3 || !cur_u32(c, &et) || !cur_u64(c, &n) || et >= GGUF_NTYPES) return false;
        if (et == GGUF_STRING || et == GGUF_ARRAY) {
            /* each element takes at least 8 bytes: a count past that is a lie */
            if (n > (uint64_t)(c->end - c->p) / (et == GGUF_STRING ? 8 : 12)) return false;
            for (uint64_t i = 0; i < n; i++)
                if (!gguf_skip_value(c, et, depth + 1)) return false;
            return true;
        }
        uint64_t nbytes;
        if (!mul_ok(n, gguf_scalar_size[et], &nbytes)) return false;
        return cur_take(c, NULL, nbytes);
    }
    return cur_take(c, NULL, gguf_scalar_size[type]);
}

static const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    size_t len = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == len && memcmp(g->kv[i].key, key, len) == 0) return &g->kv[i];
    return NULL;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* An integer-valued key of any integer type; false if absent, not an integer or negative. */
static bool gguf_get_uint(const gguf_file *g, const char *key, uint64_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    switch (kv->type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        *out = rd_le(kv->val, gguf_scalar_size[kv->type]);
        return true;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: {
        int n = gguf_scalar_size[kv->type];
        uint64_t v = rd_le(kv->val, n);
        if (v >> (8 * n - 1) & 1) return false; /* negative */
        *out = v;
        return true;
    }
    default: return false;
    }
}

static bool gguf_get_float(const gguf_file *g, const char *key, double *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    if (kv->type == GGUF_F32) {
        uint32_t b = (uint32_t)rd_le(kv->val, 4);
        float f;
        memcpy(&f, &b, 4);
        *out = f;
        return true;
    }
    if (kv->type == GGUF_F64) {
        uint64_t b = rd_le(kv->val, 8);
        memcpy(out, &b, 8);
        return true;
    }
    return false;
}

/* A string-valued key, in place in the file. */
static bool gguf_get_str(const gguf_file *g, const char *key, const char **s, uint64_t *len) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_STRING) return false;
    *len = rd_le(kv->val, 8);
    *s = (const char *)kv->val + 8;
    return true;
}

/* Parses the header, metadata and tensor table of the file in g->base[0..g->size). */
static gpt2_status gguf_parse(gguf_file *g, char *err, size_t err_len) {
    cursor c = {g->base, g->base + g->size};
    uint32_t magic;
    if (!cur_u32(&c, &magic) || magic != GGUF_MAGIC)
        return fail_with(GPT2_E_FORMAT, err, err_len, "not a GGUF file (bad magic)");
    if (!cur_u32(&c, &g->version))
        return fail_with(GPT2_E_FORMAT, err, err_len, "truncated GGUF header");
    if (g->version < 2 || g->version > 3)
        return fail_with(GPT2_E_UNSUPPORTED, err, err_len, "GGUF version %u is not supported (2 or 3)",
                    g->version);
    if (!cur_u64(&c, &g->n_tensors) || !cur_u64(&c, &g->n_kv))
        return fail_with(GPT2_E_FORMAT, err, err_len, "truncated GGUF header");
    /* The smallest key/value takes 13 bytes and the smallest tensor description 28: counts
       beyond what the file could hold are rejected before anything is allocated. */
    uint64_t left = (uint64_t)(c.end - c.p);
    if (g->n_kv > left / 13)
        return fail_with(GPT2_E_FORMAT, err, err_len, "metadata count %llu exceeds the file",
                    (unsigned long long)g->n_kv);
    if (g->n_tensors > left / 28)
        return fail_with(GPT2_E_FORMAT, err, err_len, "tensor count %llu exceeds the file",
                    (unsigned long long)g->n_tensors);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");

    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        kv->raw = c.p;
        if (!cur_str(&c, &kv->key, &kv->key_len) || !cur_u32(&c, &kv->type))
            return fail_with(GPT2_E_FORMAT, err, err_len, "truncated metadata entry %llu",
                        (unsigned long long)i);
        if (kv->type >= GGUF_NTYPES)
            return fail_with(GPT2_E_FORMAT, err, err_len, "metadata '%.*s' has unknown type %u",
                        (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key, kv->type);
        const uint8_t *start = c.p;
        if (kv->type == GGUF_ARRAY) {
            cursor peek = c;
            if (!cur_u32(&peek, &kv->elem_type) || !cur_u64(&peek, &kv->count))
                return fail_with(GPT2_E_FORMAT, err, err_len, "truncated metadata '%.*s'",
                            (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key);
            kv->val = peek.p;
        } else {
            kv->val = start;
        }
        if (!gguf_skip_value(&c, kv->type, 0))
            return fail_with(GPT2_E_FORMAT, err, err_len, "metadata '%.*s' is truncated or malformed",
                        (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key);
        kv->raw_len = (uint64_t)(c.p - kv->raw);
    }

    uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    if (gguf_find(g, "general.alignment") && !gguf_get_uint(g, "general.alignment", &align))
        return fail_with(GPT2_E_FORMAT, err, err_len, "general.alignment is not an integer");
    /* GGUF requires a multiple of 8: that keeps every tensor aligned for its element type. */
    if (align == 0 || align % 8 || (align & (align - 1)) || align > (1u << 16))
        return fail_with(GPT2_E_FORMAT, err, err_len, "general.alignment %llu is not a power of two "
                    "between 8 and 65536", (unsigned long long)align);
    g->alignment = (uint32_t)align;

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (!cur_str(&c, &t->name, &t->name_len) || !cur_u32(&c, &t->n_dims))
            return fail_with(GPT2_E_FORMAT, err, err_len, "truncated tensor description %llu",
                        (unsigned long long)i);
        int nl = (int)(t->name_len > 64 ? 64 : t->name_len);
        if (t->n_dims < 1 || t->n_dims > 4)
            return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s' has %u dimensions", nl,
                        t->name, t->n_dims);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (!cur_u64(&c, &t->ne[d]))
                return fail_with(GPT2_E_FORMAT, err, err_len, "truncated tensor description '%.*s'",
                            nl, t->name);
            if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40) || !mul_ok(n, t->ne[d], &n))
                return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s' has a bad dimension",
                            nl, t->name);
        }
        for (uint32_t d = t->n_dims; d < 4; d++) t->ne[d] = 1;
        if (!cur_u32(&c, &t->type) || !cur_u64(&c, &t->offset))
            return fail_with(GPT2_E_FORMAT, err, err_len, "truncated tensor description '%.*s'", nl,
                        t->name);
        if (t->type != GPT2_TYPE_F32 && t->type != GPT2_TYPE_F16 && t->type != GPT2_TYPE_BF16 &&
            t->type != GPT2_TYPE_Q8_0)
            return fail_with(GPT2_E_UNSUPPORTED, err, err_len,
                        "tensor '%.*s' has type %u; supported: f32, f16, bf16, q8_0", nl,
                        t->name, t->type);
        if (!ggml_type_nbytes(t->type, n, t->ne[0], &t->nbytes))
            return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s': rows of %llu do not fit "
                        "its type", nl, t->name, (unsigned long long)t->ne[0]);
        if (t->offset % g->alignment)
            return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s' is not aligned", nl, t->name);
    }
    uint64_t header_end = (uint64_t)(c.p - g->base);
    g->data_offset = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    if (g->data_offset > g->size)
        return fail_with(GPT2_E_FORMAT, err, err_len, "file ends before its tensor data");
    uint64_t data_size = g->size - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return fail_with(GPT2_E_FORMAT, err, err_len,
                        "tensor '%.*s' lies past the end of the file (truncated?)",
                        (int)(t->name_len > 64 ? 64 : t->name_len), t->name);
        t->data = g->base + g->data_offset + t->offset;
    }
    return GPT2_OK;
}

static const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    size_t len = strlen(name);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name_len == len && memcmp(g->tensors[i].name, name, len) == 0)
            return &g->tensors[i];
    return NULL;
}

/* ---- the model's weights ---------------------------------------------------------------- */

/* A weight matrix (rows, cols) row-major: row r holds the cols input weights of output r.
   Its data stays in the mapped file, in its stored type. */
typedef struct {
    const void *data;
    gpt2_type type;
    int64_t rows, cols;
    size_t row_bytes;
} matrix;

typedef struct {
    const float *ln1_w, *ln1_b;   // (C)      attn_norm
    matrix qkv;                   // (3C, C)  attn_qkv: rows are q | k | v, heads contiguous
    const float *qkv_b;           // (3C)
    matrix attn_out;              // (C, C)   attn_output
    const float *attn_out_b;      // (C)
    const float *ln2_w, *ln2_b;   // (C)      ffn_norm
    matrix fc;                    // (F, C)   ffn_up
    const float *fc_b;            // (F)
    matrix proj;                  // (C, F)   ffn_down
    const float *proj_b;          // (C)
} block_weights;

/* The tokenizer's tables (section 2). */
typedef struct {
    uint32_t *tok_off;            // (V + 1)  token i's bytes are bytes[tok_off[i] .. tok_off[i+1])
    uint8_t *bytes;               //          all token bytes, concatenated
    int32_t byte_id[256];         //          the single-byte token of each byte value
    uint64_t *merge_keys;         //          hash table: (left id << 32 | right id) + 1, 0 = empty
    uint32_t *merge_rank;         //          ... rank of that merge
    int32_t *merge_id;            //          ... id of the merged token
    uint32_t merge_mask;          //          table size - 1 (a power of two)
    int32_t *special;             //          ids of control tokens ("<|endoftext|>")
    int32_t n_special;
} tokenizer;

typedef struct kernels kernels;

struct gpt2_model {
    gpt2_config cfg;
    int32_t n_ff;
    float eps;
    matrix wte;                   // (V, C)  token embedding
    matrix wpe;                   // (P, C)  position embedding
    matrix lm_head;               // (V, C)  output matrix: wte itself when tied
    const float *lnf_w, *lnf_b;   // (C)     output_norm
    block_weights *blocks;        // (L)
    float *owned_f32;             //         1-D tensors that had to be converted to f32
    tokenizer tok;
    const kernels *k;             //         dot-product kernels chosen for this CPU
    gguf_file gguf;
    void *map;                    //         the mapped file, or NULL
    uint8_t *file_buf;            //         the file read into memory when mmap is unavailable
    uint64_t file_size;
    char name[128];
    gpt2_type matrix_type;
    uint64_t n_params, weight_bytes;
};

static gpt2_status tokenizer_init(gpt2_model *m, char *err, size_t err_len);
static void tokenizer_free(tokenizer *t);
static gpt2_status kernels_select(const char *name, const kernels **out, char *why, size_t why_len);
static const char *kernels_name(const kernels *k);

/* Reads the whole file into memory (when mmap is unavailable, fails or is not wanted). */
static gpt2_status read_whole_file(int fd, uint64_t size, uint8_t **out, const char *path,
                                   char *err, size_t err_len) {
    if (size > SIZE_MAX - 64) return fail_with(GPT2_E_NOMEM, err, err_len, "%s: too large", path);
    /* 64-byte aligned, as a mapping is, so that tensors sit the same way in cache lines */
    uint8_t *buf = aligned_alloc(64, ((size_t)size + 63) / 64 * 64 + (size ? 0 : 64));
    if (!buf) return fail_with(GPT2_E_NOMEM, err, err_len, "%s: out of memory reading the file", path);
    for (size_t got = 0; got < size;) {
        ssize_t r = read(fd, buf + got, (size_t)size - got > (1u << 30) ? (1u << 30) : (size_t)size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            return fail_with(GPT2_E_IO, err, err_len, "%s: %s", path,
                             r < 0 ? strerror(errno) : "the file shrank while it was read");
        }
        got += (size_t)r;
    }
    *out = buf;
    return GPT2_OK;
}

static gpt2_status map_file(gpt2_model *m, const char *path, bool use_mmap, char *err, size_t err_len) {
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fail_with(GPT2_E_IO, err, err_len, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail_with(GPT2_E_IO, err, err_len, "%s: not a regular file", path);
    }
    m->file_size = (uint64_t)st.st_size;
    if (m->file_size < 24) {
        close(fd);
        return fail_with(GPT2_E_FORMAT, err, err_len, "%s: too small to be a model file (%llu bytes)",
                    path, (unsigned long long)m->file_size);
    }
    gpt2_status s = GPT2_OK;
#ifdef GPT2_HAVE_MMAP
    if (use_mmap && m->file_size <= SIZE_MAX) {
        void *p = mmap(NULL, (size_t)m->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) m->map = p;
    }
#else
    (void)use_mmap;
#endif
    if (!m->map) s = read_whole_file(fd, m->file_size, &m->file_buf, path, err, err_len);
    close(fd);
    return s;
}

/* Resolves a 2-D weight: must exist with ne = [cols, rows]. */
static gpt2_status get_matrix(gpt2_model *m, const char *name, int64_t rows, int64_t cols,
                              matrix *out, char *err, size_t err_len) {
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
    if (!t) return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%s' is missing", name);
    if (t->n_dims != 2 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows)
        return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%s' has shape [%llu, %llu], expected "
                    "[%lld, %lld]", name, (unsigned long long)t->ne[0],
                    (unsigned long long)t->ne[1], (long long)cols, (long long)rows);
    out->data = t->data;
    out->type = (gpt2_type)t->type;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = (size_t)(t->nbytes / (uint64_t)rows);
    return GPT2_OK;
}

static void dequantize_row(const matrix *w, int64_t r, float *out);

/* Resolves a 1-D weight of n floats; other types are converted once into owned storage. */
static gpt2_status get_vector(gpt2_model *m, const char *name, int64_t n, const float **out,
                              float **owned, char *err, size_t err_len) {
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
    if (!t) return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%s' is missing", name);
    if (t->n_dims != 1 || (int64_t)t->ne[0] != n)
        return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%s' has %llu elements, expected %lld",
                    name, (unsigned long long)t->ne[0], (long long)n);
    if (t->type == GPT2_TYPE_F32) {
        *out = (const float *)(const void *)t->data;
        return GPT2_OK;
    }
    matrix row = {t->data, (gpt2_type)t->type, 1, n, (size_t)t->nbytes};
    dequantize_row(&row, 0, *owned);
    *out = *owned;
    *owned += n;
    return GPT2_OK;
}

static gpt2_status load_weights(gpt2_model *m, char *err, size_t err_len) {
    const gpt2_config *c = &m->cfg;
    int64_t C = c->n_embd, F = m->n_ff, V = c->n_vocab, P = c->n_ctx, L = c->n_layer;
    gpt2_status s;
    /* 1-D tensors: 4 per block of C, one of 3C, one of F, plus the final norm */
    size_t n_vec = (size_t)L * (size_t)(7 * C + 3 * C + F) + 2 * (size_t)C;
    /* each of those numbers takes at least a byte of the file: a config that needs more is
       refused before anything is allocated for it (a few header bytes could ask for GBs) */
    if ((uint64_t)n_vec > m->file_size)
        return fail_with(GPT2_E_FORMAT, err, err_len, "%lld blocks of width %lld (feed-forward %lld) "
                         "do not fit in the file", (long long)L, (long long)C, (long long)F);
    m->owned_f32 = malloc(n_vec * sizeof(float));
    m->blocks = calloc((size_t)L, sizeof *m->blocks);
    if (!m->owned_f32 || !m->blocks) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    float *own = m->owned_f32;
    if ((s = get_matrix(m, "token_embd.weight", V, C, &m->wte, err, err_len))) return s;
    if ((s = get_matrix(m, "position_embd.weight", P, C, &m->wpe, err, err_len))) return s;
    if (gguf_find_tensor(&m->gguf, "output.weight")) {
        if ((s = get_matrix(m, "output.weight", V, C, &m->lm_head, err, err_len))) return s;
    } else {
        m->lm_head = m->wte; /* tied: GPT-2 reuses the token embedding as its output matrix */
    }
    if ((s = get_vector(m, "output_norm.weight", C, &m->lnf_w, &own, err, err_len))) return s;
    if ((s = get_vector(m, "output_norm.bias", C, &m->lnf_b, &own, err, err_len))) return s;
    for (int64_t l = 0; l < L; l++) {
        block_weights *b = &m->blocks[l];
        char nm[96];
#define BLK(suffix) (snprintf(nm, sizeof nm, "blk.%lld." suffix, (long long)l), nm)
        if ((s = get_vector(m, BLK("attn_norm.weight"), C, &b->ln1_w, &own, err, err_len))) return s;
        if ((s = get_vector(m, BLK("attn_norm.bias"), C, &b->ln1_b, &own, err, err_len))) return s;
        if ((s = get_matrix(m, BLK("attn_qkv.weight"), 3 * C, C, &b->qkv, err, err_len))) return s;
        if ((s = get_vector(m, BLK("attn_qkv.bias"), 3 * C, &b->qkv_b, &own, err, err_len))) return s;
        if ((s = get_matrix(m, BLK("attn_output.weight"), C, C, &b->attn_out, err, err_len))) return s;
        if ((s = get_vector(m, BLK("attn_output.bias"), C, &b->attn_out_b, &own, err, err_len))) return s;
        if ((s = get_vector(m, BLK("ffn_norm.weight"), C, &b->ln2_w, &own, err, err_len))) return s;
        if ((s = get_vector(m, BLK("ffn_norm.bias"), C, &b->ln2_b, &own, err, err_len))) return s;
        if ((s = get_matrix(m, BLK("ffn_up.weight"), F, C, &b->fc, err, err_len))) return s;
        if ((s = get_vector(m, BLK("ffn_up.bias"), F, &b->fc_b, &own, err, err_len))) return s;
        if ((s = get_matrix(m, BLK("ffn_down.weight"), C, F, &b->proj, err, err_len))) return s;
        if ((s = get_vector(m, BLK("ffn_down.bias"), C, &b->proj_b, &own, err, err_len))) return s;
#undef BLK
    }
    m->matrix_type = L > 0 ? m->blocks[0].qkv.type : m->wte.type;
    /* what one token reads: every block matrix, the output matrix, one row of each embedding */
    uint64_t per_block = (uint64_t)(4 * C + 3 * C) * 4 + (uint64_t)F * 4 * 2;
    uint64_t wb = 0;
    for (int64_t l = 0; l < L; l++) {
        const block_weights *b = &m->blocks[l];
        wb += b->qkv.row_bytes * (uint64_t)b->qkv.rows + b->attn_out.row_bytes * (uint64_t)C +
              b->fc.row_bytes * (uint64_t)F + b->proj.row_bytes * (uint64_t)C + per_block;
    }
    wb += m->lm_head.row_bytes * (uint64_t)V + m->wte.row_bytes + m->wpe.row_bytes;
    m->weight_bytes = wb;
    m->n_params = (uint64_t)V * C + (uint64_t)P * C + 2 * (uint64_t)C +
                  (uint64_t)L * (uint64_t)(4 * C + 3 * C * C + 3 * C + C * C + C + 2 * C * F + F + C);
    if (m->lm_head.data != m->wte.data) m->n_params += (uint64_t)V * C;
    return GPT2_OK;
}

/* Reads the configuration keys and checks them for sense. */
static gpt2_status load_config(gpt2_model *m, char *err, size_t err_len) {
    const gguf_file *g = &m->gguf;
    const char *s;
    uint64_t len;
    if (!gguf_get_str(g, "general.architecture", &s, &len))
        return fail_with(GPT2_E_FORMAT, err, err_len, "general.architecture is missing");
    if (len != 4 || memcmp(s, "gpt2", 4) != 0)
        return fail_with(GPT2_E_UNSUPPORTED, err, err_len, "architecture '%.*s' is not gpt2",
                    (int)(len > 32 ? 32 : len), s);
    static const struct { const char *key; uint64_t max; } keys[] = {
        {"gpt2.context_length", 1 << 20}, {"gpt2.embedding_length", 1 << 16},
        {"gpt2.feed_forward_length", 1 << 18}, {"gpt2.block_count", 1 << 10},
        {"gpt2.attention.head_count", 1 << 10},
    };
    uint64_t v[5];
    for (int i = 0; i < 5; i++) {
        if (!gguf_get_uint(g, keys[i].key, &v[i]))
            return fail_with(GPT2_E_FORMAT, err, err_len, "%s is missing or not an integer", keys[i].key);
        if (v[i] == 0 || v[i] > keys[i].max)
            return fail_with(GPT2_E_FORMAT, err, err_len, "%s = %llu is out of range", keys[i].key,
                        (unsigned long long)v[i]);
    }
    m->cfg.n_ctx = (int32_t)v[0];
    m->cfg.n_embd = (int32_t)v[1];
    m->n_ff = (int32_t)v[2];
    m->cfg.n_layer = (int32_t)v[3];
    m->cfg.n_head = (int32_t)v[4];
    if (m->cfg.n_embd % m->cfg.n_head)
        return fail_with(GPT2_E_FORMAT, err, err_len, "embedding length %d is not a multiple of the "
                    "head count %d", m->cfg.n_embd, m->cfg.n_head);
    double eps = 1e-5;
    if (gguf_find(g, "gpt2.attention.layer_norm_epsilon") &&
        (!gguf_get_float(g, "gpt2.attention.layer_norm_epsilon", &eps) || !(eps > 0 && eps < 1)))
        return fail_with(GPT2_E_FORMAT, err, err_len, "gpt2.attention.layer_norm_epsilon is invalid");
    m->eps = (float)eps;
    const gguf_kv *tokens = gguf_find(g, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_ARRAY || tokens->elem_type != GGUF_STRING)
        return fail_with(GPT2_E_FORMAT, err, err_len, "tokenizer.ggml.tokens is missing");
    if (tokens->count < 256 || tokens->count > (1 << 24))
        return fail_with(GPT2_E_FORMAT, err, err_len, "vocabulary of %llu tokens is out of range",
                    (unsigned long long)tokens->count);
    m->cfg.n_vocab = (int32_t)tokens->count;
    if (gguf_get_str(g, "tokenizer.ggml.model", &s, &len) && !(len == 4 && !memcmp(s, "gpt2", 4)))
        return fail_with(GPT2_E_UNSUPPORTED, err, err_len, "tokenizer '%.*s' is not gpt2",
                    (int)(len > 32 ? 32 : len), s);
    if (gguf_get_str(g, "general.name", &s, &len))
        snprintf(m->name, sizeof m->name, "%.*s", (int)(len > 127 ? 127 : len), s);
    return GPT2_OK;
}

/* Parses and checks the file image in m->gguf and builds everything that depends on it. */
static gpt2_status load_image(gpt2_model *m, const char *path_name, char *why, size_t why_len) {
    gpt2_status s = kernels_select(path_name, &m->k, why, why_len);
    if (s == GPT2_OK) s = gguf_parse(&m->gguf, why, why_len);
    if (s == GPT2_OK) s = load_config(m, why, why_len);
    if (s == GPT2_OK) s = load_weights(m, why, why_len);
    if (s == GPT2_OK) s = tokenizer_init(m, why, why_len);
    return s;
}

gpt2_model_params gpt2_model_default_params(void) {
    gpt2_model_params p = {1, NULL};
    return p;
}

gpt2_status gpt2_load_ex(const char *path, const gpt2_model_params *p, gpt2_model **out,
                         char *err, size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!out) return fail_with(GPT2_E_ARG, err, err_len, "out is NULL");
    *out = NULL;
    if (!path) return fail_with(GPT2_E_ARG, err, err_len, "path is NULL");
    gpt2_model_params d = gpt2_model_default_params();
    if (!p) p = &d;
    /* GPT2_NO_MMAP=1 reads the file instead, as on systems without mmap */
    const char *no_mmap = getenv("GPT2_NO_MMAP");
    bool use_mmap = p->use_mmap && !(no_mmap && *no_mmap && strcmp(no_mmap, "0") != 0);
    gpt2_model *m = calloc(1, sizeof *m);
    if (!m) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    gpt2_status s = map_file(m, path, use_mmap, err, err_len);
    if (s == GPT2_OK) {
        char why[256] = "";
        m->gguf.base = m->map ? (const uint8_t *)m->map : m->file_buf;
        m->gguf.size = m->file_size;
        s = load_image(m, p->kernels, why, sizeof why);
        if (s != GPT2_OK) fail_with(s, err, err_len, "%s: %s", path, why);
    }
    if (s != GPT2_OK) {
        gpt2_free(m);
        return s;
    }
    *out = m;
    return GPT2_OK;
}

gpt2_status gpt2_load(const char *path, gpt2_model **out, char *err, size_t err_len) {
    return gpt2_load_ex(path, NULL, out, err, err_len);
}

gpt2_status gpt2_load_from_buffer(const void *data, size_t size, gpt2_model **out, char *err,
                                  size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!out) return fail_with(GPT2_E_ARG, err, err_len, "out is NULL");
    *out = NULL;
    if (!data || ((uintptr_t)data & 7))
        return fail_with(GPT2_E_ARG, err, err_len, "the buffer is NULL or not aligned to 8 bytes");
    gpt2_model *m = calloc(1, sizeof *m);
    if (!m) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    m->gguf.base = data;
    m->gguf.size = m->file_size = size;
    gpt2_status s = size < 24 ? fail_with(GPT2_E_FORMAT, err, err_len, "too small to be a model file")
                              : load_image(m, NULL, err, err_len);
    if (s != GPT2_OK) {
        gpt2_free(m);
        return s;
    }
    *out = m;
    return GPT2_OK;
}

void gpt2_free(gpt2_model *m) {
    if (!m) return;
#ifdef GPT2_HAVE_MMAP
    if (m->map) munmap(m->map, (size_t)m->file_size);
#endif
    free(m->file_buf);
    free(m->gguf.kv);
    free(m->gguf.tensors);
    free(m->blocks);
    free(m->owned_f32);
    tokenizer_free(&m->tok);
    free(m);
}

gpt2_config gpt2_get_config(const gpt2_model *m) {
    gpt2_config c = {0, 0, 0, 0, 0, -1};
    return m ? m->cfg : c;
}

gpt2_model_info gpt2_get_model_info(const gpt2_model *m) {
    gpt2_model_info i;
    memset(&i, 0, sizeof i);
    i.name = i.kernels = "";
    if (!m) return i;
    i.config = m->cfg;
    i.n_ff = m->n_ff;
    i.norm_eps = m->eps;
    i.matrix_type = m->matrix_type;
    i.n_params = m->n_params;
    i.weight_bytes = m->weight_bytes;
    i.file_bytes = m->file_size;
    i.mapped = m->map != NULL;
    i.name = m->name;
    i.kernels = kernels_name(m->k);
    return i;
}

/* ==========================================================================================
 * 2. Tokenizer: GPT-2's byte-level BPE
 * ==========================================================================================
 * encode(text):
 *   a. split the text into pieces with GPT-2's pattern (below), without a regex engine;
 *   b. start each piece as its UTF-8 bytes, one single-byte token each;
 *   c. repeatedly merge the adjacent pair with the lowest merge rank (every occurrence, left
 *      to right) until no adjacent pair has a rank; the resulting tokens are the ids.
 * decode(ids) is the concatenation of each token's bytes.
 *
 * GPT-2's vocabulary files spell bytes as printable characters ("byte alphabet"): bytes
 * 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves, the other 68 (controls, space,
 * 0x7F-0xA0, 0xAD) are shifted to U+0100..U+0143 in increasing order ('Ġ' U+0120 is the
 * space). At load we translate every token back to raw bytes and run BPE on bytes.
 * ---------------------------------------------------------------------------------------- */

/* Character classes of the pre-tokenizer (see scripts/gen_unicode.py). */
enum { CH_O = 0, CH_L = 1, CH_N = 2, CH_S = 3 };
#include "unicode_tables.h"

/* The byte that a code point of the byte alphabet stands for, or -1. */
static int alphabet_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp >= 0x100 && cp <= 0x143) {
        int n = (int)(cp - 0x100); /* the n-th byte (in increasing order) that is not printable */
        for (int b = 0; b < 256; b++) {
            bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            if (!printable && n-- == 0) return b;
        }
    }
    return -1;
}

/* Decodes one UTF-8 character at s[0..n). A byte that does not start a valid, shortest-form
   sequence of a Unicode scalar value counts as a character of one byte; *cp is then -1. */
static size_t utf8_next(const uint8_t *s, size_t n, int32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    size_t len;
    uint32_t c, min;
    if (b >= 0xC2 && b <= 0xDF) { len = 2; c = b & 0x1F; min = 0x80; }
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; c = b & 0x0F; min = 0x800; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; c = b & 0x07; min = 0x10000; }
    else { *cp = -1; return 1; }
    if (len > n) { *cp = -1; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = -1; return 1; }
        c = c << 6 | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) { *cp = -1; return 1; }
    *cp = (int32_t)c;
    return len;
}

static int char_class(int32_t cp) {
    if (cp < 0) return CH_O; /* a stray byte */
    size_t lo = 0, hi = GPT2_UNICODE_N_RANGES;
    while (lo < hi) { /* binary search over the sorted ranges */
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)cp > unicode_ranges[mid].last) lo = mid + 1;
        else if ((uint32_t)cp < unicode_ranges[mid].first) hi = mid;
        else return unicode_ranges[mid].cls;
    }
    return CH_O;
}

/* The text decoded into characters: start offset and class of each. */
typedef struct {
    const uint8_t *s;
    size_t n;
} text_view;

typedef struct {
    size_t pos;   /* byte offset */
    size_t len;   /* bytes */
    int cls;
    int32_t cp;
} tchar;

static tchar char_at(text_view t, size_t pos) {
    tchar c = {pos, 0, CH_O, -1};
    if (pos >= t.n) return c;
    c.len = utf8_next(t.s + pos, t.n - pos, &c.cp);
    c.cls = char_class(c.cp);
    return c;
}

/* Length in bytes of the next piece of the pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * starting at pos (pos < t.n), matched as Python's `regex` does: the first alternative that
 * matches wins, each greedy. */
static size_t next_piece(text_view t, size_t pos) {
    const uint8_t *s = t.s + pos;
    size_t left = t.n - pos;
    /* contractions: an ASCII apostrophe and a lowercase suffix, only where a piece starts */
    if (s[0] == '\'' && left >= 2) {
        uint8_t a = s[1], b = left >= 3 ? s[2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    tchar c = char_at(t, pos);
    /* ` ?X+` for X = letters, numbers, other: an optional single space, then a run of one class */
    tchar first = c;
    if (c.cp == ' ' && pos + 1 < t.n) {
        tchar nx = char_at(t, pos + 1);
        if (nx.cls != CH_S) first = nx; /* the space attaches to the run after it */
    }
    if (first.cls != CH_S) {
        size_t end = first.pos + first.len;
        while (end < t.n) {
            tchar nx = char_at(t, end);
            if (nx.cls != first.cls) break;
            end += nx.len;
        }
        return end - pos;
    }
    /* whitespace: a maximal run w1..wn. At the end of the text it is one piece. Followed by a
       non-space character, `\s+(?!\S)` gives back the last one (n >= 2): w1..w(n-1) is the
       piece, and wn then starts the next piece (a ' ' joins the next word; anything else
       becomes a piece of its own through the final `\s+`). */
    size_t end = pos + c.len, last = pos;
    while (end < t.n) {
        tchar nx = char_at(t, end);
        if (nx.cls != CH_S) break;
        last = end;
        end += nx.len;
    }
    if (end == t.n || last == pos) return end - pos; /* at the end, or a single character */
    return last - pos;
}

/* ---- BPE --------------------------------------------------------------------------------- */

static uint32_t hash64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

/* The merge of (left, right): its rank and the merged id; false if the pair never merges. */
static bool merge_lookup(const tokenizer *t, int32_t left, int32_t right, uint32_t *rank,
                         int32_t *id) {
    if (!t->merge_keys) return false;
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    for (uint32_t h = hash64(key) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        if (t->merge_keys[h] == 0) return false;
        if (t->merge_keys[h] == key) {
            *rank = t->merge_rank[h];
            *id = t->merge_id[h];
            return true;
        }
    }
}

/* A symbol of the piece being merged: a doubly linked list over the piece's bytes. */
typedef struct {
    int32_t id;
    int32_t prev, next; /* indices, -1 at the ends */
} bpe_sym;

/* A candidate merge, ordered by (rank, position). Entries go stale when a neighbour merges;
   they are checked when popped. */
typedef struct {
    uint32_t rank;
    int32_t pos;             /* index of the left symbol */
    int32_t left, right;     /* the ids it was made for */
} bpe_cand;

static bool cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    if (*n == 0) return top;
    for (;;) { /* sift `last` down from the root */
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bpe_cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && cand_less(&h[r], best)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = last;
    return top;
}

/* Scratch for BPE, grown as pieces need it. */
typedef struct {
    bpe_sym *sym;
    bpe_cand *heap;
    size_t cap;
} bpe_scratch;

static void push_pair(const tokenizer *t, bpe_sym *sym, bpe_cand *heap, size_t *nh, int32_t i) {
    int32_t j = sym[i].next;
    uint32_t rank;
    int32_t id;
    if (j >= 0 && merge_lookup(t, sym[i].id, sym[j].id, &rank, &id)) {
        bpe_cand c = {rank, i, sym[i].id, sym[j].id};
        heap_push(heap, nh, c);
    }
}

/* Emits the ids of one piece. Popping candidates in (rank, position) order merges the lowest
   ranked pair everywhere, left to right, before any higher one, as GPT-2's encoder.py does
   (a merge that builds on token AB always ranks after the merge that made AB). Each pass
   costs O(log n), so a megabyte-long word is no problem. */
static gpt2_status bpe_piece(const tokenizer *t, const uint8_t *s, size_t n, bpe_scratch *w,
                             int32_t *ids, size_t cap, size_t *n_ids) {
    if (n == 1) {
        if (*n_ids < cap) ids[*n_ids] = t->byte_id[s[0]];
        (*n_ids)++;
        return GPT2_OK;
    }
    if (n > w->cap) {
        size_t cap2 = n < 64 ? 64 : n;
        bpe_sym *sym = realloc(w->sym, cap2 * sizeof *sym);
        if (sym) w->sym = sym;
        bpe_cand *heap = realloc(w->heap, 2 * cap2 * sizeof *heap);
        if (heap) w->heap = heap;
        if (!sym || !heap) return GPT2_E_NOMEM;
        w->cap = cap2;
    }
    bpe_sym *sym = w->sym;
    bpe_cand *heap = w->heap;
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i].id = t->byte_id[s[i]];
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, sym, heap, &nh, (int32_t)i);
    while (nh > 0) {
        bpe_cand c = heap_pop(heap, &nh);
        int32_t i = c.pos, j = sym[i].next;
        /* stale if the left symbol was absorbed or either side changed since the push */
        if (sym[i].id != c.left || j < 0 || sym[j].id != c.right) continue;
        uint32_t rank;
        int32_t merged;
        merge_lookup(t, c.left, c.right, &rank, &merged);
        sym[i].id = merged;
        sym[i].next = sym[j].next;
        if (sym[j].next >= 0) sym[sym[j].next].prev = i;
        sym[j].id = -1; /* absorbed */
        if (sym[i].prev >= 0) push_pair(t, sym, heap, &nh, sym[i].prev);
        push_pair(t, sym, heap, &nh, i); /* each merge pops one entry and pushes at most two:
                                             the heap never holds more than 2n entries */
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (*n_ids < cap) ids[*n_ids] = sym[i].id;
        (*n_ids)++;
    }
    return GPT2_OK;
}

/* Tokenizes plain text (no special tokens) piece by piece. */
static gpt2_status encode_ordinary(const tokenizer *t, const uint8_t *s, size_t n, bpe_scratch *w,
                                   int32_t *ids, size_t cap, size_t *n_ids) {
    text_view tv = {s, n};
    size_t pos = 0;
    while (pos < n) {
        size_t len = next_piece(tv, pos);
        gpt2_status st = bpe_piece(t, s + pos, len, w, ids, cap, n_ids);
        if (st) return st;
        pos += len;
    }
    return GPT2_OK;
}

gpt2_status gpt2_tokenize(const gpt2_model *m, const char *text, size_t len, int allow_special,
                          int32_t *ids, size_t cap, size_t *n_ids) {
    if (n_ids) *n_ids = 0;
    if (!m || !n_ids || (!text && len) || (!ids && cap)) return GPT2_E_ARG;
    const tokenizer *t = &m->tok;
    const uint8_t *s = (const uint8_t *)text;
    bpe_scratch w = {NULL, NULL, 0};
    size_t count = 0, pos = 0;
    gpt2_status st = GPT2_OK;
    while (pos < len && st == GPT2_OK) {
        /* with allow_special, split at the earliest control token ("<|endoftext|>") */
        size_t seg_end = len, sp_len = 0;
        int32_t sp_id = -1;
        for (int32_t k = 0; allow_special && k < t->n_special; k++) {
            int32_t id = t->special[k];
            const uint8_t *tb = t->bytes + t->tok_off[id];
            size_t tl = t->tok_off[id + 1] - t->tok_off[id];
            for (size_t p = pos; tl && p <= seg_end && p + tl <= len; p++) {
                if (memcmp(s + p, tb, tl) == 0) {
                    if (p < seg_end || tl > sp_len) { seg_end = p; sp_len = tl; sp_id = id; }
                    break;
                }
            }
        }
        st = encode_ordinary(t, s + pos, seg_end - pos, &w, ids, cap, &count);
        if (sp_id >= 0) {
            if (count < cap) ids[count] = sp_id;
            count++;
        }
        pos = seg_end + sp_len;
    }
    free(w.sym);
    free(w.heap);
    if (st) return st;
    *n_ids = count;
    return count > cap ? GPT2_E_BUFFER : GPT2_OK;
}

gpt2_status gpt2_token_bytes(const gpt2_model *m, int32_t id, const char **bytes, size_t *len) {
    if (!m || !bytes || !len || id < 0 || id >= m->cfg.n_vocab) return GPT2_E_ARG;
    *bytes = (const char *)m->tok.bytes + m->tok.tok_off[id];
    *len = m->tok.tok_off[id + 1] - m->tok.tok_off[id];
    return GPT2_OK;
}

gpt2_status gpt2_detokenize(const gpt2_model *m, const int32_t *ids, size_t n, char *buf,
                            size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!m || !len || (!ids && n) || (!buf && cap)) return GPT2_E_ARG;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *b;
        size_t bl;
        if (gpt2_token_bytes(m, ids[i], &b, &bl)) return GPT2_E_ARG;
        if (total + bl <= cap) memcpy(buf + total, b, bl);
        else if (total < cap) memcpy(buf + total, b, cap - total);
        total += bl;
    }
    *len = total;
    return total > cap ? GPT2_E_BUFFER : GPT2_OK;
}

/* ---- building the tables at load time ---------------------------------------------------- */

/* Translates a byte-alphabet string (UTF-8 in the file) to raw bytes; false if a character
   is not in the alphabet. out needs len bytes. */
static bool alphabet_decode(const uint8_t *s, size_t len, uint8_t *out, size_t *out_len) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        i += utf8_next(s + i, len - i, &cp);
        int b = cp < 0 ? -1 : alphabet_to_byte((uint32_t)cp);
        if (b < 0) return false;
        out[o++] = (uint8_t)b;
    }
    *out_len = o;
    return true;
}

/* A hash table from token bytes to id, used only while building the merge table. */
typedef struct {
    int32_t *slot;
    uint32_t mask;
} bytes_index;

static uint32_t hash_bytes(const uint8_t *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

static int32_t bytes_index_find(const bytes_index *ix, const tokenizer *t, const uint8_t *s,
                                size_t n) {
    for (uint32_t h = hash_bytes(s, n) & ix->mask;; h = (h + 1) & ix->mask) {
        int32_t id = ix->slot[h];
        if (id < 0) return -1;
        size_t len = t->tok_off[id + 1] - t->tok_off[id];
        if (len == n && memcmp(t->bytes + t->tok_off[id], s, n) == 0) return id;
    }
}

static gpt2_status tokenizer_init(gpt2_model *m, char *err, size_t err_len) {
    tokenizer *t = &m->tok;
    const gguf_file *g = &m->gguf;
    const int32_t V = m->cfg.n_vocab;
    const gguf_kv *tokens = gguf_find(g, "tokenizer.ggml.tokens");
    /* the strings were validated by the parser; their bytes never grow when decoded */
    uint64_t total = 0;
    cursor c = {tokens->val, g->base + g->size};
    for (int32_t i = 0; i < V; i++) {
        const char *s = NULL;
        uint64_t len = 0;
        if (!cur_str(&c, &s, &len)) return fail_with(GPT2_E_FORMAT, err, err_len, "bad token %d", i);
        total += len;
    }
    if (total > UINT32_MAX) return fail_with(GPT2_E_FORMAT, err, err_len, "vocabulary too large");
    t->tok_off = malloc(((size_t)V + 1) * sizeof *t->tok_off);
    t->bytes = malloc(total ? (size_t)total : 1);
    if (!t->tok_off || !t->bytes) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    c.p = tokens->val;
    uint32_t off = 0;
    for (int32_t i = 0; i < V; i++) {
        const char *s = NULL;
        uint64_t len = 0;
        size_t bl;
        if (!cur_str(&c, &s, &len)) return fail_with(GPT2_E_FORMAT, err, err_len, "bad token %d", i);
        t->tok_off[i] = off;
        if (!alphabet_decode((const uint8_t *)s, (size_t)len, t->bytes + off, &bl)) {
            /* a token outside the byte alphabet (only control tokens should be): raw bytes */
            memcpy(t->bytes + off, s, (size_t)len);
            bl = (size_t)len;
        }
        if (bl == 1 && t->byte_id[t->bytes[off]] < 0) t->byte_id[t->bytes[off]] = i;
        off += (uint32_t)bl;
    }
    t->tok_off[V] = off;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return fail_with(GPT2_E_FORMAT, err, err_len, "the vocabulary has no token for byte 0x%02x", b);

    /* control tokens (token_type 3), else "<|endoftext|>" */
    const gguf_kv *types = gguf_find(g, "tokenizer.ggml.token_type");
    int32_t eot = -1;
    t->special = malloc(sizeof(int32_t) * 16);
    if (!t->special) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    if (types && types->type == GGUF_ARRAY && types->elem_type == GGUF_I32 &&
        types->count == (uint64_t)V) {
        for (int32_t i = 0; i < V && t->n_special < 16; i++)
            if ((int32_t)rd_le(types->val + 4 * (size_t)i, 4) == 3 &&
                t->tok_off[i + 1] > t->tok_off[i])
                t->special[t->n_special++] = i;
    }
    for (int32_t i = V - 1; i >= 0 && eot < 0; i--)
        if (t->tok_off[i + 1] - t->tok_off[i] == 13 &&
            memcmp(t->bytes + t->tok_off[i], "<|endoftext|>", 13) == 0)
            eot = i;
    uint64_t eos;
    if (gguf_get_uint(g, "tokenizer.ggml.eos_token_id", &eos)) {
        if (eos >= (uint64_t)V)
            return fail_with(GPT2_E_FORMAT, err, err_len, "eos token id %llu is outside the vocabulary",
                        (unsigned long long)eos);
        eot = (int32_t)eos;
    }
    if (eot < 0) eot = V - 1;
    m->cfg.eot_id = eot;
    if (t->n_special == 0) t->special[t->n_special++] = eot;

    /* merges: "left right" in the byte alphabet, rank = position in the list */
    const gguf_kv *merges = gguf_find(g, "tokenizer.ggml.merges");
    if (!merges) return GPT2_OK; /* no merges: every byte is its own token */
    if (merges->type != GGUF_ARRAY || merges->elem_type != GGUF_STRING)
        return fail_with(GPT2_E_FORMAT, err, err_len, "tokenizer.ggml.merges is not a string array");
    if (merges->count > (1u << 24))
        return fail_with(GPT2_E_FORMAT, err, err_len, "too many merges");
    bytes_index ix;
    uint32_t size = 1;
    while (size < 2u * (uint32_t)V) size <<= 1;
    ix.mask = size - 1;
    ix.slot = malloc(size * sizeof *ix.slot);
    uint32_t msize = 1;
    while (msize < 2 * (uint32_t)merges->count + 2) msize <<= 1;
    t->merge_mask = msize - 1;
    t->merge_keys = calloc(msize, sizeof *t->merge_keys);
    t->merge_rank = malloc(msize * sizeof *t->merge_rank);
    t->merge_id = malloc(msize * sizeof *t->merge_id);
    uint8_t *tmp = malloc(1024);
    if (!ix.slot || !t->merge_keys || !t->merge_rank || !t->merge_id || !tmp) {
        free(ix.slot);
        free(tmp);
        return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    }
    memset(ix.slot, 0xff, size * sizeof *ix.slot);
    for (int32_t i = 0; i < V; i++) { /* the first id wins for duplicate strings */
        const uint8_t *s = t->bytes + t->tok_off[i];
        size_t n = t->tok_off[i + 1] - t->tok_off[i];
        if (bytes_index_find(&ix, t, s, n) >= 0) continue;
        uint32_t h = hash_bytes(s, n) & ix.mask;
        while (ix.slot[h] >= 0) h = (h + 1) & ix.mask;
        ix.slot[h] = i;
    }
    c.p = merges->val;
    for (uint64_t r = 0; r < merges->count; r++) {
        const char *s = NULL;
        uint64_t len = 0;
        if (!cur_str(&c, &s, &len)) break; /* validated by the parser: cannot happen */
        const char *sp = len ? memchr(s + 1, ' ', (size_t)len - 1) : NULL;
        size_t la, lb;
        if (!sp || len > 1000 ||
            !alphabet_decode((const uint8_t *)s, (size_t)(sp - s), tmp, &la) ||
            !alphabet_decode((const uint8_t *)sp + 1, (size_t)(s + len - sp - 1), tmp + la, &lb))
            continue; /* not a merge of two byte-alphabet strings: never applies */
        int32_t a = bytes_index_find(&ix, t, tmp, la);
        int32_t b = bytes_index_find(&ix, t, tmp + la, lb);
        int32_t ab = bytes_index_find(&ix, t, tmp, la + lb);
        if (a < 0 || b < 0 || ab < 0) continue; /* refers to unknown tokens: never applies */
        uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
        uint32_t h = hash64(key) & t->merge_mask;
        while (t->merge_keys[h] != 0 && t->merge_keys[h] != key) h = (h + 1) & t->merge_mask;
        if (t->merge_keys[h] == key) continue; /* a duplicate pair keeps its first rank */
        t->merge_keys[h] = key;
        t->merge_rank[h] = (uint32_t)r;
        t->merge_id[h] = ab;
    }
    free(ix.slot);
    free(tmp);
    return GPT2_OK;
}

static void tokenizer_free(tokenizer *t) {
    free(t->tok_off);
    free(t->bytes);
    free(t->merge_keys);
    free(t->merge_rank);
    free(t->merge_id);
    free(t->special);
}

/* ==========================================================================================
 * 3. Kernels
 * ==========================================================================================
 * Nearly all of the work is one operation: the dot product of a weight row w (cols numbers,
 * stored as f32, f16, bf16 or q8_0) with an activation row x (cols floats). A matrix-vector
 * product is `rows` of them; a matrix-matrix product (a batch of T tokens) is T * rows.
 *
 * Weight types, per row of n numbers:
 *   f32   n floats                       f16   n IEEE half floats (1+5+10 bits)
 *   bf16  n bfloat16 (the top 16 bits of a float32)
 *   q8_0  n/32 blocks of { f16 scale d; int8 q[32] }: value i of a block is d * q[i]
 * q8_0 rows meet x quantized the same way, so that the products are int8 x int8 (below).
 *
 * Determinism. Each dot product is computed by one thread, with one fixed sequence of
 * operations: a vector of partial sums (the "lanes") over the row in order, then a fixed
 * reduction of the lanes. Computing 1 or 4 rows at once, 1 or 512 tokens at once, on 1 or
 * 8 threads, every output element gets exactly the same bits. (The scalar, AVX2 and AVX-512
 * paths have different lane counts, so they agree only to rounding.)
 *
 * Besides the dot products, three vector operations: GELU, the exponentials of a softmax,
 * and attention's weighted sum of value vectors.
 *
 * Every SIMD kernel sits next to its scalar reference; the tests compare them. The path is
 * chosen once per model from what the CPU supports (kernels_select, below).
 * ---------------------------------------------------------------------------------------- */

/* dot_tile: out[t * ldo + r] = dot(row r of w, row t of x) for r < nr and t < nt (each at most
   4): a tile of up to 4 weight rows (row_bytes apart) times up to 4 activation rows (ldx
   floats apart), n numbers each. A tile loads each weight vector once for all its tokens
   and each activation vector once for all its rows, and keeps its 16 sums in registers. */
typedef void (*dot_tile_fn)(const uint8_t *w, size_t row_bytes, int nr, const float *x,
                            size_t ldx, int nt, int64_t n, float *out, size_t ldo);

/* q8_0 weights meet activations quantized the same way (see "q8_0 activations" below): the
   same tile, with x as ldx groups apart */
typedef struct q8_group q8_group;
typedef void (*dot_q8_tile_fn)(const uint8_t *w, size_t row_bytes, int nr, const q8_group *x,
                               size_t ldx, int nt, int64_t n, float *out, size_t ldo);

enum { WT_F32, WT_F16, WT_BF16, WT_COUNT }; /* the types that meet float activations */

struct kernels {
    const char *name;
    dot_tile_fn dot[WT_COUNT];
    dot_q8_tile_fn dot_q8;
    void (*quantize_q8)(const float *x, int64_t n, q8_group *g); /* activations for dot_q8 */
    void (*gelu)(float *x, int64_t n);                       /* in place */
    float (*exp_sum)(float *x, int64_t n, float max);        /* x = exp(x - max); the sum */
    void (*weighted_sum)(const float *v, size_t ldv, const float *p, int64_t n, int64_t hs,
                         float *y);                          /* y += sum_j p[j] v[j] */
    /* the same for nq <= 4 queries at once: y[q] += sum_{j < n[q]} p[q][j] v[j], with p rows
       ldp apart and y rows ldy apart; each y[q] gets the one-query result, bit for bit */
    void (*weighted_sum4)(const float *v, size_t ldv, const float *p, size_t ldp,
                          const int32_t *n, int nq, int64_t hs, float *y, size_t ldy);
};

static int wt_index(gpt2_type t) {
    switch (t) {
    case GPT2_TYPE_F16: return WT_F16;
    case GPT2_TYPE_BF16: return WT_BF16;
    default: return WT_F32;
    }
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* ---- scalar reference: 8 lanes, reduced pairwise -----------------------------------------
 * One (row, token) pair at a time: lane l sums w[k] * x[k] for k = l (mod 8), then the lanes
 * are added in a fixed tree. Written so that compilers can vectorise it. */

static float reduce8(const float a[8]) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline float wval_f32(const uint8_t *row, int64_t i) {
    float f;
    memcpy(&f, row + 4 * i, 4);
    return f;
}
static inline float wval_f16(const uint8_t *row, int64_t i) { return f16_to_f32(rd16(row + 2 * i)); }
static inline float wval_bf16(const uint8_t *row, int64_t i) { return bf16_to_f32(rd16(row + 2 * i)); }

#define DEFINE_DOT_SCALAR(NAME, WVAL)                                                          \
    static void NAME(const uint8_t *w, size_t row_bytes, int nr, const float *x, size_t ldx,  \
                     int nt, int64_t n, float *out, size_t ldo) {                             \
        for (int r = 0; r < nr; r++)                                                          \
            for (int t = 0; t < nt; t++) {                                                    \
                const uint8_t *wr = w + (size_t)r * row_bytes;                                \
                const float *xt = x + (size_t)t * ldx;                                        \
                float acc[8] = {0};                                                           \
                int64_t k = 0;                                                                \
                for (; k + 8 <= n; k += 8)                                                    \
                    for (int l = 0; l < 8; l++) acc[l] += WVAL(wr, k + l) * xt[k + l];        \
                for (int l = 0; k < n; k++, l++) acc[l] += WVAL(wr, k) * xt[k];               \
                out[(size_t)t * ldo + r] = reduce8(acc);                                      \
            }                                                                                 \
    }

DEFINE_DOT_SCALAR(dot_f32_scalar, wval_f32)
DEFINE_DOT_SCALAR(dot_f16_scalar, wval_f16)
DEFINE_DOT_SCALAR(dot_bf16_scalar, wval_bf16)

/* ---- q8_0 activations ---------------------------------------------------------------------
 * A q8_0 weight row is int8 numbers with one scale per block of 32. Its dot product with an
 * activation row runs on integers when the activations are quantized the same way, block by
 * block (d = max|x| / 127, q = round(x / d), as llama.cpp does): each block's sum of 32
 * products is then exact in int32, and SIMD multiplies 4 int8 pairs per 32-bit lane in one
 * instruction (VNNI's vpdpbusd) instead of converting every weight to float first. Then
 *     dot = sum over blocks b of (d_w[b] * d_x[b]) * sum_i q_w[i] q_x[i].
 * Quantizing x rounds each number by up to 1/254 of its block's largest one: the same order
 * as q8_0's rounding of the weights. On the test fixture the largest logit difference from
 * Hugging Face went from 0.076 to 0.10 (the tests bound it by 0.22); decode became 1.2x and
 * prompt processing 1.4x faster.
 *
 * The activations are laid out for the kernels, in groups of 64 numbers (two blocks A, B):
 *   q[64]      the int8 numbers of A then B
 *   d[16]      d_A eight times, then d_B eight times: one scale per 32-bit lane of q
 *   corr[16]   -128 * (q[4j] + ... + q[4j+3]) for lane j. vpdpbusd multiplies unsigned by
 *              signed bytes, so the kernel reads the weights as q_w + 128 (flipping their
 *              top bits) and starts each lane's sum at corr, which takes the 128s back out.
 * A row of n numbers takes ceil(n / 64) groups; an odd last block leaves B all zero.
 * ---------------------------------------------------------------------------------------- */

#define Q8_GROUP 64 /* numbers per group */
struct q8_group {
    int8_t q[64];
    float d[16];
    int32_t corr[16];
};

static int64_t q8_groups(int64_t n) { return (n + Q8_GROUP - 1) / Q8_GROUP; }

/* x (n floats, n a multiple of 32) -> q8_group[q8_groups(n)]. The scalar reference; the SIMD
   versions produce the same bytes. */
static void quantize_q8_scalar(const float *x, int64_t n, q8_group *g) {
    for (int64_t b = 0; b < q8_groups(n) * 2; b++) {
        q8_group *gr = g + b / 2;
        int half = (int)(b % 2);
        int8_t *q = gr->q + 32 * half;
        float d = 0.0f;
        if (b * QK8_0 < n) {
            const float *v = x + b * QK8_0;
            float amax = 0.0f;
            for (int i = 0; i < QK8_0; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
            d = amax / 127.0f;
            float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (int i = 0; i < QK8_0; i++) {
                /* clamped (NaN goes to 127), then rounded half to even by adding and taking
                   away 1.5 * 2^23, which leaves no fraction bits (and needs no libm call) */
                float r = v[i] * id;
                r = r < 127.0f ? r : 127.0f;
                r = r > -127.0f ? r : -127.0f;
                q[i] = (int8_t)(int32_t)((r + 12582912.0f) - 12582912.0f);
            }
        } else {
            memset(q, 0, QK8_0);
        }
        for (int j = 0; j < 8; j++) {
            gr->d[8 * half + j] = d;
            gr->corr[8 * half + j] = -128 * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
        }
    }
}

/* scalar reference: per block the exact integer sum, then acc += (d_w * d_x) * sum */
static void dot_q8_0_scalar(const uint8_t *w, size_t row_bytes, int nr, const q8_group *x,
                            size_t ldx, int nt, int64_t n, float *out, size_t ldo) {
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) {
            const uint8_t *blk = w + (size_t)r * row_bytes;
            const q8_group *g = x + (size_t)t * ldx;
            float acc[2] = {0}; /* blocks A and B, as the SIMD paths pair them */
            for (int64_t b = 0; b < n / QK8_0; b++, blk += Q8_0_BLOCK_BYTES) {
                const q8_group *gr = g + b / 2;
                int half = (int)(b % 2);
                const int8_t *qw = (const int8_t *)(blk + 2), *qx = gr->q + 32 * half;
                int32_t s = 0;
                for (int i = 0; i < QK8_0; i++) s += qw[i] * qx[i];
                acc[half] += f16_to_f32(rd16(blk)) * gr->d[8 * half] * (float)s;
            }
            out[(size_t)t * ldo + r] = acc[0] + acc[1];
        }
}

/* GPT-2's GELU ("gelu_new"), 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): its constants */
#define GELU_SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_CUBIC 0.044715f
static float gelu(float x);
/* ---- vector math: GELU, softmax exponentials, attention's weighted sum ------------------- */

/* scalar references */
static void gelu_scalar(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = gelu(x[i]);
}

/* x[i] = exp(x[i] - max); returns the sum (8 lanes, fixed order) */
static float exp_sum_scalar(float *x, int64_t n, float max) {
    float acc[8] = {0};
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        acc[i & 7] += x[i];
    }
    return reduce8(acc);
}

/* y[0..hs) += sum_j p[j] * v[j * ldv + 0..hs) */
static void weighted_sum_scalar(const float *v, size_t ldv, const float *p, int64_t n, int64_t hs,
                                float *y) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < hs; i++) y[i] += p[j] * v[(size_t)j * ldv + (size_t)i];
}

/* one query at a time (the paths without enough registers for 4) */
#define DEFINE_WEIGHTED_SUM4(NAME, ONE)                                                        \
    static void NAME(const float *v, size_t ldv, const float *p, size_t ldp, const int32_t *n, \
                     int nq, int64_t hs, float *y, size_t ldy) {                              \
        for (int q = 0; q < nq; q++) ONE(v, ldv, p + (size_t)q * ldp, n[q], hs, y + (size_t)q * ldy); \
    }
DEFINE_WEIGHTED_SUM4(weighted_sum4_scalar, weighted_sum_scalar)

static const kernels kernels_scalar = {
    "scalar", {dot_f32_scalar, dot_f16_scalar, dot_bf16_scalar}, dot_q8_0_scalar, quantize_q8_scalar,
    gelu_scalar, exp_sum_scalar, weighted_sum_scalar, weighted_sum4_scalar};

#ifdef GPT2_X86
/* ---- SIMD tiles ---------------------------------------------------------------------------
 * Each path defines tile(NR, NT) bodies for constant shapes (always inlined, so the sums
 * stay in registers) and a dispatcher over the 16 shapes. Per output the operations are the
 * same in every shape: one vector of partial sums over k in order, then one reduction. */
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4") /* keeps a tile's sums in registers */

#define TILE_SWITCH(TILE, ...)                                                                 \
    switch ((nr - 1) * 4 + (nt - 1)) {                                                        \
    case 0: TILE(__VA_ARGS__, 1, 1); break;  case 1: TILE(__VA_ARGS__, 1, 2); break;         \
    case 2: TILE(__VA_ARGS__, 1, 3); break;  case 3: TILE(__VA_ARGS__, 1, 4); break;         \
    case 4: TILE(__VA_ARGS__, 2, 1); break;  case 5: TILE(__VA_ARGS__, 2, 2); break;         \
    case 6: TILE(__VA_ARGS__, 2, 3); break;  case 7: TILE(__VA_ARGS__, 2, 4); break;         \
    case 8: TILE(__VA_ARGS__, 3, 1); break;  case 9: TILE(__VA_ARGS__, 3, 2); break;         \
    case 10: TILE(__VA_ARGS__, 3, 3); break; case 11: TILE(__VA_ARGS__, 3, 4); break;        \
    case 12: TILE(__VA_ARGS__, 4, 1); break; case 13: TILE(__VA_ARGS__, 4, 2); break;        \
    case 14: TILE(__VA_ARGS__, 4, 3); break; default: TILE(__VA_ARGS__, 4, 4); break;        \
    }

/* ---- AVX2 + FMA + F16C: 8 lanes, up to 4 rows x 2 tokens per tile (16 registers) ------- */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static ALWAYS_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_TARGET static ALWAYS_INLINE __m256 load8_f32(const uint8_t *p) { return _mm256_loadu_ps((const float *)(const void *)p); }
AVX2_TARGET static ALWAYS_INLINE __m256 load8_f16(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}
AVX2_TARGET static ALWAYS_INLINE __m256 load8_bf16(const uint8_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* the last n % 8 numbers go through zero-padded copies */
#define AVX2_TILE(LOAD, ESIZE, NR, NT)                                                         \
    do {                                                                                      \
        __m256 acc[NR][NT];                                                                   \
        UNROLL for (int r = 0; r < NR; r++)                                                          \
            UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();                     \
        int64_t k = 0;                                                                        \
        for (; k + 8 <= n; k += 8) {                                                          \
            __m256 xv[NT];                                                                    \
            UNROLL for (int t = 0; t < NT; t++) xv[t] = _mm256_loadu_ps(x + (size_t)t * ldx + k);    \
            UNROLL for (int r = 0; r < NR; r++) {                                                    \
                __m256 wv = LOAD(w + (size_t)r * row_bytes + (size_t)k * ESIZE);              \
                UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]); \
            }                                                                                 \
        }                                                                                     \
        if (k < n) {                                                                          \
            float xt[NT][8];                                                                  \
            uint8_t wt[8 * 4];                                                                \
            UNROLL for (int t = 0; t < NT; t++) {                                                    \
                memset(xt[t], 0, sizeof xt[t]);                                               \
                memcpy(xt[t], x + (size_t)t * ldx + k, (size_t)(n - k) * sizeof(float));      \
            }                                                                                 \
            UNROLL for (int r = 0; r < NR; r++) {                                                    \
                memset(wt, 0, sizeof wt);                                                     \
                memcpy(wt, w + (size_t)r * row_bytes + (size_t)k * ESIZE, (size_t)(n - k) * ESIZE); \
                __m256 wv = LOAD(wt);                                                         \
                UNROLL for (int t = 0; t < NT; t++)                                                  \
                    acc[r][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xt[t]), acc[r][t]);       \
            }                                                                                 \
        }                                                                                     \
        UNROLL for (int r = 0; r < NR; r++)                                                          \
            UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = hsum256(acc[r][t]);       \
    } while (0)

/* AVX2's dispatcher: pairs of tokens, then the row count (8 tiles of up to 4 x 2) */
#define AVX2_TILE_SWITCH(TILE, ...)                                                            \
    for (int t0 = 0; t0 < nt; t0 += 2, x += 2 * ldx, out += 2 * ldo) {                        \
        if (nt - t0 < 2) {                                                                    \
            switch (nr) {                                                                     \
            case 1: TILE(__VA_ARGS__, 1, 1); break;                                           \
            case 2: TILE(__VA_ARGS__, 2, 1); break;                                           \
            case 3: TILE(__VA_ARGS__, 3, 1); break;                                           \
            default: TILE(__VA_ARGS__, 4, 1); break;                                          \
            }                                                                                 \
        } else {                                                                              \
            switch (nr) {                                                                     \
            case 1: TILE(__VA_ARGS__, 1, 2); break;                                           \
            case 2: TILE(__VA_ARGS__, 2, 2); break;                                           \
            case 3: TILE(__VA_ARGS__, 3, 2); break;                                           \
            default: TILE(__VA_ARGS__, 4, 2); break;                                          \
            }                                                                                 \
        }                                                                                     \
    }

#define DEFINE_DOT_AVX2(NAME, LOAD, ESIZE)                                                     \
    AVX2_TARGET static void NAME(const uint8_t *w, size_t row_bytes, int nr, const float *x,  \
                                 size_t ldx, int nt, int64_t n, float *out, size_t ldo) {     \
        AVX2_TILE_SWITCH(AVX2_TILE, LOAD, ESIZE)                                              \
    }

DEFINE_DOT_AVX2(dot_f32_avx2, load8_f32, 4)
DEFINE_DOT_AVX2(dot_f16_avx2, load8_f16, 2)
DEFINE_DOT_AVX2(dot_bf16_avx2, load8_bf16, 2)

/* q8_0 x q8_0 activations: per block, 8 lanes of 4 int8 products each. vpmaddubsw multiplies
   unsigned by signed bytes, so |q_w| meets q_x with q_w's sign (sign_epi8); pairs of
   products stay within int16 (128 * 127 * 2 < 2^15), and vpmaddwd adds them up to int32. */
#define AVX2_Q8_TILE(UNUSED, NR, NT)                                                           \
    do {                                                                                      \
        __m256 acc[NR][NT];                                                                   \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();              \
        for (int64_t b = 0; b < n / QK8_0; b++) {                                             \
            const int half = (int)(b % 2);                                                    \
            __m256i qx[NT];                                                                   \
            UNROLL for (int t = 0; t < NT; t++)                                               \
                qx[t] = _mm256_loadu_si256((const __m256i *)(const void *)(x[t * ldx + b / 2].q + 32 * half)); \
            UNROLL for (int r = 0; r < NR; r++) {                                             \
                const uint8_t *blk = w + (size_t)r * row_bytes + (size_t)b * Q8_0_BLOCK_BYTES; \
                __m256i qw = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));    \
                __m256i aw = _mm256_abs_epi8(qw);                                             \
                __m256 dw = _mm256_set1_ps(_cvtsh_ss(rd16(blk)));                             \
                UNROLL for (int t = 0; t < NT; t++) {                                         \
                    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(qx[t], qw));        \
                    __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1))); \
                    __m256 d = _mm256_mul_ps(dw, _mm256_loadu_ps(x[t * ldx + b / 2].d + 8 * half)); \
                    acc[r][t] = _mm256_fmadd_ps(s, d, acc[r][t]);                             \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = hsum256(acc[r][t]); \
    } while (0)

AVX2_TARGET static void dot_q8_0_avx2(const uint8_t *w, size_t row_bytes, int nr,
                                      const q8_group *x, size_t ldx, int nt, int64_t n,
                                      float *out, size_t ldo) {
    AVX2_TILE_SWITCH(AVX2_Q8_TILE, 0)
}

/* exp(x) for 8 floats, as exp16 below; 2^n is built in the exponent bits */
AVX2_TARGET static ALWAYS_INLINE __m256 exp8(__m256 x) {
    __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-INFINITY), _CMP_NEQ_UQ); /* exp(-inf) = 0 */
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.37f)), _mm256_set1_ps(-87.33f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n, split in two factors so that n = 128 (x near 88.37) stays representable */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    return _mm256_and_ps(live, _mm256_mul_ps(_mm256_mul_ps(p, s1), s2));
}

AVX2_TARGET static ALWAYS_INLINE __m256 gelu8(__m256 v) {
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(-2.0f * GELU_SQRT_2_OVER_PI),
                             _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(GELU_CUBIC), v),
                                             _mm256_mul_ps(v, v), v));
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(u)));
}

/* The last n % 8 numbers go through the same vector code as the others, in a zero-padded
   copy: a number's GELU must not depend on where the thread's share of a row ends. */
AVX2_TARGET static void gelu_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float tail[8] = {0};
        memcpy(tail, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(tail, gelu8(_mm256_loadu_ps(tail)));
        memcpy(x + i, tail, (size_t)(n - i) * sizeof(float));
    }
}

/* the tail is padded with -inf, whose exponential is 0, so every number takes the vector
   exponential and lands in its lane */
AVX2_TARGET static float exp_sum_avx2(float *x, int64_t n, float max) {
    __m256 acc = _mm256_setzero_ps(), mx = _mm256_set1_ps(max);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mx));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        float tail[8];
        for (int j = 0; j < 8; j++) tail[j] = i + j < n ? x[i + j] : -INFINITY;
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(tail), mx));
        _mm256_storeu_ps(tail, e);
        memcpy(x + i, tail, (size_t)(n - i) * sizeof(float));
        acc = _mm256_add_ps(acc, e);
    }
    return hsum256(acc);
}

AVX2_TARGET static void weighted_sum_avx2(const float *v, size_t ldv, const float *p, int64_t n,
                                          int64_t hs, float *y) {
    int64_t c = 0;
    for (; c + 32 <= hs; c += 32) {
        __m256 a0 = _mm256_loadu_ps(y + c), a1 = _mm256_loadu_ps(y + c + 8);
        __m256 a2 = _mm256_loadu_ps(y + c + 16), a3 = _mm256_loadu_ps(y + c + 24);
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv + c;
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj), a0);
            a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8), a1);
            a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 16), a2);
            a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 24), a3);
        }
        _mm256_storeu_ps(y + c, a0);
        _mm256_storeu_ps(y + c + 8, a1);
        _mm256_storeu_ps(y + c + 16, a2);
        _mm256_storeu_ps(y + c + 24, a3);
    }
    if (c < hs) weighted_sum_scalar(v + c, ldv, p, n, hs - c, y + c);
}

DEFINE_WEIGHTED_SUM4(weighted_sum4_avx2, weighted_sum_avx2)

static const kernels kernels_avx2 = {
    "avx2", {dot_f32_avx2, dot_f16_avx2, dot_bf16_avx2}, dot_q8_0_avx2, quantize_q8_scalar,
    gelu_avx2, exp_sum_avx2, weighted_sum_avx2, weighted_sum4_avx2};

/* ---- AVX-512: 16 lanes, masked tails, up to 4 x 4 tiles (32 registers) ------------------ */
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
/* Decode streams each weight row once. Hardware prefetchers stop at 4 KB page boundaries
   (the model file is mapped in 4 KB pages), so the one-token paths prefetch a page ahead:
   measured on 124M, 1 thread: f32 38 -> 53, q8_0 86 -> 182 tok/s (1, 2, 8 and 16 KB tried). */
#ifndef F_PREFETCH
#define F_PREFETCH 4096
#endif
#ifndef Q8_PREFETCH
#define Q8_PREFETCH 4096
#endif

/* 16 weights as floats: load16_*N for whole vectors, load16_* masked for the tail */
AVX512_TARGET static ALWAYS_INLINE __m512 load16_f32N(const uint8_t *p) { return _mm512_loadu_ps(p); }
/* the same 16 floats as two 32-byte halves, for rows that do not start on a cache line:
   GGUF aligns tensors to 32 bytes, and a 64-byte load across two lines costs two loads
   and halves the speed of streaming memory */
AVX512_TARGET static ALWAYS_INLINE __m512 load16_f32hN(const uint8_t *p) {
    __m256d lo = _mm256_loadu_pd((const double *)(const void *)p);
    __m256d hi = _mm256_loadu_pd((const double *)(const void *)(p + 32));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(lo), hi, 1));
}
#define load16_f32h load16_f32 /* the masked tail loads the same way in both */
AVX512_TARGET static ALWAYS_INLINE __m512 load16_f16N(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
AVX512_TARGET static ALWAYS_INLINE __m512 load16_bf16N(const uint8_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
AVX512_TARGET static ALWAYS_INLINE __m512 load16_f32(const uint8_t *p, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, p);
}
AVX512_TARGET static ALWAYS_INLINE __m512 load16_f16(const uint8_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
AVX512_TARGET static ALWAYS_INLINE __m512 load16_bf16(const uint8_t *p, __mmask16 m) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/* Whole vectors use plain loads, the last n % 16 numbers a masked one (masked loads in
   the main loop halve the memory speed). */
#define AVX512_TILE(LOAD, ESIZE, NR, NT)                                                       \
    do {                                                                                      \
        const int64_t n16 = n / 16 * 16;                                                      \
        const __mmask16 tail = (__mmask16)((1u << (n - n16)) - 1);                            \
        if (NT == 1) { /* one token (decode): read the rows one after another, which streams \
                          memory at full speed (interleaved rows reach ~2/3 of it) */        \
            UNROLL for (int r = 0; r < NR; r++) {                                             \
                const uint8_t *wr = w + (size_t)r * row_bytes;                                \
                __m512 a = _mm512_setzero_ps();                                               \
                for (int64_t k = 0; k < n16; k += 16) {                                       \
                    _mm_prefetch((const char *)(wr + (size_t)k * ESIZE) + F_PREFETCH, _MM_HINT_T0); \
                    a = _mm512_fmadd_ps(LOAD##N(wr + (size_t)k * ESIZE), _mm512_loadu_ps(x + k), a); \
                }                                                                             \
                if (tail)                                                                     \
                    a = _mm512_fmadd_ps(LOAD(wr + (size_t)n16 * ESIZE, tail),                 \
                                        _mm512_maskz_loadu_ps(tail, x + n16), a);             \
                out[r] = _mm512_reduce_add_ps(a);                                             \
            }                                                                                 \
            break;                                                                            \
        }                                                                                     \
        __m512 acc[NR][NT];                                                                   \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();              \
        for (int64_t k = 0; k < n16; k += 16) {                                               \
            __m512 xv[NT];                                                                    \
            UNROLL for (int t = 0; t < NT; t++) xv[t] = _mm512_loadu_ps(x + (size_t)t * ldx + k); \
            UNROLL for (int r = 0; r < NR; r++) {                                             \
                _mm_prefetch((const char *)(w + (size_t)r * row_bytes + (size_t)k * ESIZE) + F_PREFETCH, _MM_HINT_T0); \
                __m512 wv = LOAD##N(w + (size_t)r * row_bytes + (size_t)k * ESIZE);           \
                UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]); \
            }                                                                                 \
        }                                                                                     \
        if (tail) {                                                                           \
            __m512 xv[NT];                                                                    \
            UNROLL for (int t = 0; t < NT; t++) xv[t] = _mm512_maskz_loadu_ps(tail, x + (size_t)t * ldx + n16); \
            UNROLL for (int r = 0; r < NR; r++) {                                             \
                __m512 wv = LOAD(w + (size_t)r * row_bytes + (size_t)n16 * ESIZE, tail);      \
                UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]); \
            }                                                                                 \
        }                                                                                     \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = _mm512_reduce_add_ps(acc[r][t]); \
    } while (0)

#define DEFINE_DOT_AVX512(NAME, LOAD, ESIZE)                                                   \
    AVX512_TARGET static void NAME(const uint8_t *w, size_t row_bytes, int nr, const float *x, \
                                   size_t ldx, int nt, int64_t n, float *out, size_t ldo) {   \
        TILE_SWITCH(AVX512_TILE, LOAD, ESIZE)                                                 \
    }

DEFINE_DOT_AVX512(dot_f32_aligned_avx512, load16_f32, 4)
DEFINE_DOT_AVX512(dot_f32_halves_avx512, load16_f32h, 4)
/* both load the same numbers into the same lanes, so the results are the same bits */
AVX512_TARGET static void dot_f32_avx512(const uint8_t *w, size_t row_bytes, int nr,
                                         const float *x, size_t ldx, int nt, int64_t n,
                                         float *out, size_t ldo) {
    if ((((uintptr_t)w | row_bytes) & 63) == 0)
        dot_f32_aligned_avx512(w, row_bytes, nr, x, ldx, nt, n, out, ldo);
    else
        dot_f32_halves_avx512(w, row_bytes, nr, x, ldx, nt, n, out, ldo);
}
DEFINE_DOT_AVX512(dot_f16_avx512, load16_f16, 2)
DEFINE_DOT_AVX512(dot_bf16_avx512, load16_bf16, 2)

/* q8_0 x q8_0 activations, one group (two blocks, 64 numbers) per step: the weights' int8 of
   blocks A and B in one register, read as unsigned by flipping the top bits (q + 128);
   vpdpbusd adds 4 products per lane onto the lane's correction (-128 * sum of its q_x), so
   lanes 0-7 hold block A's exact partial sums and lanes 8-15 block B's. Then per lane
   acc += float(sum) * (d_w * d_x). An odd last block runs with B's weights and scales zero. */
AVX512_TARGET static ALWAYS_INLINE __m512i q8_weights(const uint8_t *blk, bool pair) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
    __m512i v = pair ? _mm512_inserti64x4(_mm512_castsi256_si512(a),
                                          _mm256_loadu_si256((const __m256i *)(const void *)(blk + Q8_0_BLOCK_BYTES + 2)), 1)
                     : _mm512_zextsi256_si512(a);
    return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
}
AVX512_TARGET static ALWAYS_INLINE __m512 q8_scales(const uint8_t *blk, bool pair) {
    __m128i a = _mm_set1_epi16((short)rd16(blk));
    __m128i b = pair ? _mm_set1_epi16((short)rd16(blk + Q8_0_BLOCK_BYTES)) : _mm_setzero_si128();
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}
/* one (row, token) step: the same operations in every tile shape */
#define Q8_STEP(ACC, WQ, DW, G)                                                                \
    ACC = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_loadu_si512((G)->corr), \
                                                                 WQ, _mm512_loadu_si512((G)->q))), \
                          _mm512_mul_ps(DW, _mm512_loadu_ps((G)->d)), ACC)

#define AVX512_Q8_TILE(UNUSED, NR, NT)                                                         \
    do {                                                                                      \
        const int64_t np = n / QK8_0 / 2; /* whole groups; then maybe one lone block */      \
        const bool odd = (n / QK8_0) % 2;                                                     \
        if (NT == 1) { /* one token: rows one after another (see AVX512_TILE) */             \
            UNROLL for (int r = 0; r < NR; r++) {                                             \
                __m512 a = _mm512_setzero_ps();                                               \
                const uint8_t *blk = w + (size_t)r * row_bytes;                               \
                for (int64_t g = 0; g < np; g++, blk += 2 * Q8_0_BLOCK_BYTES) {               \
                    _mm_prefetch((const char *)blk + Q8_PREFETCH, _MM_HINT_T0);               \
                    Q8_STEP(a, q8_weights(blk, true), q8_scales(blk, true), x + g);           \
                }                                                                             \
                if (odd) Q8_STEP(a, q8_weights(blk, false), q8_scales(blk, false), x + np);  \
                out[r] = _mm512_reduce_add_ps(a);                                             \
            }                                                                                 \
            break;                                                                            \
        }                                                                                     \
        __m512 acc[NR][NT];                                                                   \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();              \
        for (int64_t g = 0; g < np + odd; g++) {                                              \
            const bool pair = g < np;                                                         \
            UNROLL for (int r = 0; r < NR; r++) {                                             \
                const uint8_t *blk = w + (size_t)r * row_bytes + (size_t)(2 * g) * Q8_0_BLOCK_BYTES; \
                _mm_prefetch((const char *)blk + Q8_PREFETCH, _MM_HINT_T0);                   \
                /* constant arguments: each call inlines without a branch inside */         \
                __m512i wq = pair ? q8_weights(blk, true) : q8_weights(blk, false);           \
                __m512 dw = pair ? q8_scales(blk, true) : q8_scales(blk, false);              \
                UNROLL for (int t = 0; t < NT; t++) Q8_STEP(acc[r][t], wq, dw, x + (size_t)t * ldx + g); \
            }                                                                                 \
        }                                                                                     \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = _mm512_reduce_add_ps(acc[r][t]); \
    } while (0)

#define AVX512_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
AVX512_VNNI_TARGET static void dot_q8_0_avx512(const uint8_t *w, size_t row_bytes, int nr,
                                               const q8_group *x, size_t ldx, int nt, int64_t n,
                                               float *out, size_t ldo) {
    TILE_SWITCH(AVX512_Q8_TILE, 0)
}

/* quantize_q8_scalar with vectors, byte for byte: max|x| ignores NaN the same way (vmaxps
   returns its second operand when the first is NaN), the clamp sends NaN to 127 as the
   scalar comparisons do, and vcvtps2dq rounds half to even as the 1.5 * 2^23 trick does. */
AVX512_TARGET static void quantize_q8_avx512(const float *x, int64_t n, q8_group *g) {
    for (int64_t b = 0; b < q8_groups(n) * 2; b++) {
        q8_group *gr = g + b / 2;
        int half = (int)(b % 2);
        int8_t *q = gr->q + 32 * half;
        float d = 0.0f;
        if (b * QK8_0 < n) {
            __m512 v0 = _mm512_loadu_ps(x + b * QK8_0), v1 = _mm512_loadu_ps(x + b * QK8_0 + 16);
            __m512 a = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
            a = _mm512_max_ps(_mm512_abs_ps(v1), a);
            float amax = _mm512_reduce_max_ps(a);
            d = amax / 127.0f;
            __m512 id = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
            __m512 r0 = _mm512_max_ps(_mm512_min_ps(_mm512_mul_ps(v0, id), hi), lo);
            __m512 r1 = _mm512_max_ps(_mm512_min_ps(_mm512_mul_ps(v1, id), hi), lo);
            _mm_storeu_si128((__m128i *)(void *)q, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r0)));
            _mm_storeu_si128((__m128i *)(void *)(q + 16), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r1)));
        } else {
            memset(q, 0, QK8_0);
        }
        /* lane sums of 4 q's: maddubs with ones (pairs), then madd with ones (pairs of pairs) */
        __m256i qv = _mm256_loadu_si256((const __m256i *)(const void *)q);
        __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qv), _mm256_set1_epi16(1));
        _mm256_storeu_si256((__m256i *)(void *)(gr->corr + 8 * half), _mm256_mullo_epi32(s4, _mm256_set1_epi32(-128)));
        _mm256_storeu_ps(gr->d + 8 * half, _mm256_set1_ps(d));
    }
}

/* exp(x) for 16 floats: x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial of
   degree 6 (relative error < 2e-7), times 2^n. Inputs are clamped to +-88.37 (exp = 0 or
   FLT_MAX territory), which GELU and softmax tolerate. */
AVX512_TARGET static ALWAYS_INLINE __m512 exp16(__m512 x) {
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ); /* exp(-inf) = 0 */
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.37f)), _mm512_set1_ps(-88.37f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);     /* ln2 high */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);         /* ln2 low */
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

/* gelu_new(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
AVX512_TARGET static void gelu_avx512(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m512 u = _mm512_mul_ps(_mm512_set1_ps(-2.0f * GELU_SQRT_2_OVER_PI),
                                 _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(GELU_CUBIC), v),
                                                 _mm512_mul_ps(v, v), v));
        __m512 y = _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(u)));
        _mm512_mask_storeu_ps(x + i, m, y);
    }
}

AVX512_TARGET static float exp_sum_avx512(float *x, int64_t n, float max) {
    __m512 acc = _mm512_setzero_ps(), mx = _mm512_set1_ps(max);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(x + i, m, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

/* the sums for 64 channels stay in 4 registers while the values stream by */
AVX512_TARGET static void weighted_sum_avx512(const float *v, size_t ldv, const float *p, int64_t n,
                                              int64_t hs, float *y) {
    for (int64_t c = 0; c < hs; c += 64) {
        int64_t w = hs - c < 64 ? hs - c : 64;
        __mmask16 m[4];
        for (int q = 0; q < 4; q++) {
            int64_t left = w - 16 * q;
            m[q] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        }
        __m512 a0 = _mm512_maskz_loadu_ps(m[0], y + c), a1 = _mm512_maskz_loadu_ps(m[1], y + c + 16);
        __m512 a2 = _mm512_maskz_loadu_ps(m[2], y + c + 32), a3 = _mm512_maskz_loadu_ps(m[3], y + c + 48);
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv + c;
            __m512 pj = _mm512_set1_ps(p[j]);
            a0 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[0], vj), a0);
            a1 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[1], vj + 16), a1);
            a2 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[2], vj + 32), a2);
            a3 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[3], vj + 48), a3);
        }
        _mm512_mask_storeu_ps(y + c, m[0], a0);
        _mm512_mask_storeu_ps(y + c + 16, m[1], a1);
        _mm512_mask_storeu_ps(y + c + 32, m[2], a2);
        _mm512_mask_storeu_ps(y + c + 48, m[3], a3);
    }
}

/* 4 queries x 64 channels = 16 sums in registers; each value row is loaded once for all
   the queries that see it. Per query the operations are those of weighted_sum_avx512. */
AVX512_TARGET static void weighted_sum4_avx512(const float *v, size_t ldv, const float *p,
                                               size_t ldp, const int32_t *n, int nq, int64_t hs,
                                               float *y, size_t ldy) {
    if (nq != 4 || hs % 16) {
        for (int q = 0; q < nq; q++)
            weighted_sum_avx512(v, ldv, p + (size_t)q * ldp, n[q], hs, y + (size_t)q * ldy);
        return;
    }
    int32_t n_min = n[0];
    for (int q = 1; q < 4; q++) n_min = n[q] < n_min ? n[q] : n_min;
    for (int64_t c = 0; c < hs; c += 64) {
        int nv = hs - c >= 64 ? 4 : (int)((hs - c) / 16); /* vectors of 16 in this chunk */
        __m512 acc[4][4];
        for (int q = 0; q < 4; q++)
            for (int i = 0; i < 4; i++)
                acc[q][i] = i < nv ? _mm512_loadu_ps(y + (size_t)q * ldy + c + 16 * i) : _mm512_setzero_ps();
        int64_t j = 0;
        if (nv == 4) {
            for (; j < n_min; j++) {
                const float *vj = v + (size_t)j * ldv + c;
                __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16);
                __m512 v2 = _mm512_loadu_ps(vj + 32), v3 = _mm512_loadu_ps(vj + 48);
                UNROLL for (int q = 0; q < 4; q++) {
                    __m512 pj = _mm512_set1_ps(p[(size_t)q * ldp + (size_t)j]);
                    acc[q][0] = _mm512_fmadd_ps(pj, v0, acc[q][0]);
                    acc[q][1] = _mm512_fmadd_ps(pj, v1, acc[q][1]);
                    acc[q][2] = _mm512_fmadd_ps(pj, v2, acc[q][2]);
                    acc[q][3] = _mm512_fmadd_ps(pj, v3, acc[q][3]);
                }
            }
        }
        for (int q = 0; q < 4; q++) /* each query's remaining rows (causal: they differ) */
            for (int64_t jj = j; jj < n[q]; jj++) {
                const float *vj = v + (size_t)jj * ldv + c;
                __m512 pj = _mm512_set1_ps(p[(size_t)q * ldp + (size_t)jj]);
                for (int i = 0; i < nv; i++)
                    acc[q][i] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * i), acc[q][i]);
            }
        for (int q = 0; q < 4; q++)
            for (int i = 0; i < nv; i++) _mm512_storeu_ps(y + (size_t)q * ldy + c + 16 * i, acc[q][i]);
    }
}

static const kernels kernels_avx512 = {
    "avx512-vnni", {dot_f32_avx512, dot_f16_avx512, dot_bf16_avx512}, dot_q8_0_avx512, quantize_q8_avx512,
    gelu_avx512, exp_sum_avx512, weighted_sum_avx512, weighted_sum4_avx512};
/* the first AVX-512 CPUs (Skylake-X) lack VNNI: their q8_0 tiles are AVX2's */
static const kernels kernels_avx512_no_vnni = {
    "avx512", {dot_f32_avx512, dot_f16_avx512, dot_bf16_avx512}, dot_q8_0_avx2, quantize_q8_avx512,
    gelu_avx512, exp_sum_avx512, weighted_sum_avx512, weighted_sum4_avx512};
#endif /* GPT2_X86 */

/* What the CPU (and the OS, which must save the wider registers) supports, from cpuid. */
enum { CPU_AVX2 = 1, CPU_AVX512 = 2, CPU_VNNI = 4 };

static int cpu_level(void) {
#ifdef GPT2_X86
    unsigned a, b, c, d;
    __cpuid(0, a, b, c, d);
    unsigned max_leaf = a;
    __cpuid(1, a, b, c, d);
    bool fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1, f16c = c >> 29 & 1;
    if (!osxsave || !avx || max_leaf < 7) return 0;
    unsigned xlo, xhi;
    __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0)); /* XCR0: which register states the OS saves */
    bool ymm = (xlo & 0x6) == 0x6, zmm = (xlo & 0xe6) == 0xe6;
    __cpuid_count(7, 0, a, b, c, d);
    bool avx2 = b >> 5 & 1, avx512f = b >> 16 & 1, avx512bw = b >> 30 & 1, avx512vl = b >> 31 & 1;
    if (!(ymm && avx2 && fma && f16c)) return 0;
    bool vnni = c >> 11 & 1; /* AVX512_VNNI */
    if (zmm && avx512f && avx512bw && avx512vl) return CPU_AVX2 | CPU_AVX512 | (vnni ? CPU_VNNI : 0);
    return CPU_AVX2;
#else
    return 0;
#endif
}

/* The kernel paths, best first. A path's name is what gpt2_model_info.kernels reports; its
   family is the name that forces the best path of that family the CPU runs ("avx512" picks
   avx512-vnni where the CPU has VNNI), and "<family>-no<feature>" forces the one without. */
typedef struct {
    const char *family;
    const char *without;       /* the name that forces this path and no better one, or NULL */
    int needs;                 /* CPU_* bits */
    const kernels *k;
} kernel_choice;

static const kernel_choice kernel_paths[] = {
#ifdef GPT2_X86
    {"avx512", NULL, CPU_AVX2 | CPU_AVX512 | CPU_VNNI, &kernels_avx512},
    {"avx512", "avx512-novnni", CPU_AVX2 | CPU_AVX512, &kernels_avx512_no_vnni},
    {"avx2", "avx2-novnni", CPU_AVX2, &kernels_avx2},
#endif
    {"scalar", NULL, 0, &kernels_scalar},
};
#define N_KERNEL_PATHS (sizeof kernel_paths / sizeof kernel_paths[0])

/* Every name GPT2_KERNELS knows, on any CPU (so that a name for another architecture is
   "not on this CPU" rather than "unknown"). */
static const char *const kernel_names[] = {"scalar", "avx2", "avx2-novnni", "avx512", "avx512-novnni",
                                           "avx512-vnni", "neon", "neon-nodotprod",
                                           "neon-dotprod"};

static const kernels *kernels_best(void) {
    int cpu = cpu_level();
    for (size_t i = 0; i < N_KERNEL_PATHS; i++)
        if ((kernel_paths[i].needs & cpu) == kernel_paths[i].needs) return kernel_paths[i].k;
    return &kernels_scalar;
}

/* The path a name asks for: GPT2_OK and *out, GPT2_E_UNSUPPORTED if this CPU cannot run it,
   GPT2_E_ARG if no path has that name. NULL, "" and "auto" mean the best path. */
static gpt2_status kernels_by_name(const char *name, const kernels **out) {
    if (!name || !*name || !strcmp(name, "auto")) {
        *out = kernels_best();
        return GPT2_OK;
    }
    int cpu = cpu_level();
    bool known = false;
    for (size_t i = 0; i < sizeof kernel_names / sizeof *kernel_names; i++)
        known |= !strcmp(name, kernel_names[i]);
    for (size_t i = 0; i < N_KERNEL_PATHS; i++) {
        const kernel_choice *kp = &kernel_paths[i];
        bool named = !strcmp(name, kp->family) || !strcmp(name, kp->k->name) ||
                     (kp->without && !strcmp(name, kp->without));
        /* in best-first order, so a family name takes the best member this CPU runs */
        if (named && (kp->needs & cpu) == kp->needs) {
            *out = kp->k;
            return GPT2_OK;
        }
        known |= named;
    }
    return known ? GPT2_E_UNSUPPORTED : GPT2_E_ARG;
}

static const char *kernels_name(const kernels *k) { return k->name; }

/* The path for a model: the one asked for, else GPT2_KERNELS, else the best this CPU runs. */
static gpt2_status kernels_select(const char *name, const kernels **out, char *why, size_t why_len) {
    const char *from = "kernels";
    if (!name || !*name) {
        name = getenv("GPT2_KERNELS");
        from = "GPT2_KERNELS";
    }
    gpt2_status s = kernels_by_name(name, out);
    if (s == GPT2_E_ARG) {
        char names[160] = "";
        for (size_t i = 0; i < sizeof kernel_names / sizeof *kernel_names; i++) {
            strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
            strncat(names, kernel_names[i], sizeof names - strlen(names) - 1);
        }
        return fail_with(s, why, why_len, "%s=%.40s: no such kernel path (known: %s)", from, name, names);
    }
    if (s == GPT2_E_UNSUPPORTED) {
        char have[160] = "";
        for (size_t i = N_KERNEL_PATHS; i-- > 0;)
            if ((kernel_paths[i].needs & cpu_level()) == kernel_paths[i].needs) {
                strncat(have, " ", sizeof have - strlen(have) - 1);
                strncat(have, kernel_paths[i].k->name, sizeof have - strlen(have) - 1);
            }
        return fail_with(s, why, why_len, "%s=%s: this CPU cannot run that kernel path (it runs:%s)",
                         from, name, have);
    }
    return GPT2_OK;
}

gpt2_status gpt2_kernels_supported(const char *name) {
    const kernels *k;
    if (!name) return GPT2_E_ARG;
    return kernels_by_name(name, &k);
}

/* One row of a matrix as floats (embedding lookups, and converting 1-D tensors). */
static void dequantize_row(const matrix *w, int64_t r, float *out) {
    const uint8_t *p = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
    switch (w->type) {
    case GPT2_TYPE_F32: memcpy(out, p, (size_t)w->cols * sizeof(float)); break;
    case GPT2_TYPE_F16:
        for (int64_t i = 0; i < w->cols; i++) out[i] = wval_f16(p, i);
        break;
    case GPT2_TYPE_BF16:
        for (int64_t i = 0; i < w->cols; i++) out[i] = wval_bf16(p, i);
        break;
    case GPT2_TYPE_Q8_0:
        for (int64_t b = 0; b < w->cols / QK8_0; b++, p += Q8_0_BLOCK_BYTES) {
            float d = f16_to_f32(rd16(p));
            for (int i = 0; i < QK8_0; i++) out[b * QK8_0 + i] = d * (float)(int8_t)p[2 + i];
        }
        break;
    }
}

/* ---- the other operations of the forward pass ------------------------------------------ */

/* LayerNorm over C channels: (x - mean) / sqrt(var + eps) * w + b, biased variance.
   Statistics in double: nearer to the exact value than any float32 summation order. */
static void layernorm(float *out, const float *x, const float *w, const float *b, int C, float eps) {
    double mean = 0, var = 0;
    for (int i = 0; i < C; i++) mean += x[i];
    mean /= C;
    for (int i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= C;
    double rstd = 1.0 / sqrt(var + eps);
    for (int i = 0; i < C; i++) out[i] = (float)((x[i] - mean) * rstd) * w[i] + b[i];
}

/* GPT-2's GELU ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static float gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)));
}

/* ---- matrix multiplication: the driver over rows and tokens ---------------------------- */

typedef enum {
    EPI_STORE,  /* out = x W^T + b */
    EPI_GELU,   /* out = gelu(x W^T + b) */
    EPI_ADD     /* out += x W^T + b   (the residual connection) */
} epilogue;

#ifndef MATMUL_X_BUDGET
#define MATMUL_X_BUDGET (512 * 1024) /* bytes of activations kept in L2 per token chunk */
#endif
/* out[t][r] for t < T and r in [r0, r1): x is (T, w->cols), out is (T, ldo); for q8_0
   weights xq holds x quantized, (T, q8_groups(cols)).
   Tokens go in chunks whose activations fit in L2 (reused for every weight row); within a
   chunk, tiles of 4 weight rows x 4 tokens. */
static void matmul_rows(const kernels *k, const matrix *w, const float *bias, const float *x,
                        const q8_group *xq, int T, float *out, int64_t ldo, int64_t r0,
                        int64_t r1, epilogue e) {
    dot_tile_fn dot = k->dot[wt_index(w->type)];
    const uint8_t *base = (const uint8_t *)w->data;
    const size_t cols = (size_t)w->cols, ldq = (size_t)q8_groups(w->cols);
    size_t token_bytes = xq ? ldq * sizeof(q8_group) : cols * sizeof(float);
    int chunk = (int)((MATMUL_X_BUDGET) / token_bytes);
    chunk = chunk < 4 ? 4 : chunk / 4 * 4;
    for (int t0 = 0; t0 < T; t0 += chunk) {
        int t1 = T - t0 < chunk ? T : t0 + chunk;
        /* With a few tokens (beams), float weights leave memory traffic as the limit: then
           tiles of one row and up to 4 tokens read each row in one sequential stream, which
           runs faster than 4 interleaved ones (4 beams, f16: 15.8 -> 14.3 ms a step). q8_0
           tiles do more work per weight row, so sharing the activations' loads over 4 rows
           matters more there (4 rows: 9.4 ms, 1 row: 10.1 ms). */
        const int step = !xq && t1 - t0 > 1 && t1 - t0 <= 4 ? 1 : 4;
        for (int64_t r = r0; r < r1; r += step) {
            int nr = r1 - r < step ? (int)(r1 - r) : step;
            for (int t = t0; t < t1; t += 4) {
                int nt = t1 - t < 4 ? t1 - t : 4;
                const uint8_t *wr = base + (size_t)r * w->row_bytes;
                float d[16]; /* (nt, 4) */
                /* plain and GELU outputs go straight into out (the bias follows below) */
                float *dst = e != EPI_ADD ? out + (size_t)t * (size_t)ldo + r : d;
                size_t ldd = e != EPI_ADD ? (size_t)ldo : 4;
                if (xq) k->dot_q8(wr, w->row_bytes, nr, xq + (size_t)t * ldq, ldq, nt, w->cols, dst, ldd);
                else dot(wr, w->row_bytes, nr, x + (size_t)t * cols, cols, nt, w->cols, dst, ldd);
                if (e != EPI_ADD) continue;
                for (int j = 0; j < nt; j++) {
                    float *o = out + (size_t)(t + j) * (size_t)ldo + r;
                    for (int i = 0; i < nr; i++) o[i] += d[j * 4 + i] + (bias ? bias[r + i] : 0.0f);
                }
            }
        }
        if (e != EPI_ADD && bias) /* this thread's share of each token's row, contiguous */
            for (int t = t0; t < t1; t++) {
                float *o = out + (size_t)t * (size_t)ldo;
                for (int64_t i = r0; i < r1; i++) o[i] += bias[i];
            }
        if (e == EPI_GELU) /* vectorised, on this thread's share of each token's row */
            for (int t = t0; t < t1; t++) k->gelu(out + (size_t)t * (size_t)ldo + r0, r1 - r0);
    }
}

/* ---- thread pool -------------------------------------------------------------------------
 * Created once per context. pool_run(fn, arg) runs fn(arg, i, n) on all n threads (the caller
 * is thread 0) and returns when all are done. Waiting threads spin briefly (a step of the
 * forward pass takes microseconds), then sleep on a condition variable.
 * ---------------------------------------------------------------------------------------- */

typedef void (*task_fn)(void *arg, int ith, int nth);

typedef struct {
    int n;                         /* threads, the caller included */
    int spin;                      /* pause loops before sleeping */
    bool yield;                    /* more threads than cores: yield the core while waiting */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    task_fn fn;
    void *arg;
    atomic_uint gen;               /* incremented for each task */
    atomic_int busy;               /* workers still running the current task */
    atomic_int sleepers;           /* workers blocked on `wake` */
    atomic_int caller_sleeping;
    atomic_bool quit;
} pool;

typedef struct {
    pool *p;
    int ith;
} worker_arg;

#define POOL_SPIN 20000
#define POOL_YIELDS 50

static inline void cpu_relax(const pool *p) {
    if (p->yield) {
        sched_yield();
        return;
    }
#ifdef GPT2_X86
    __builtin_ia32_pause();
#endif
}

static void *pool_worker(void *a) {
    pool *p = ((worker_arg *)a)->p;
    int ith = ((worker_arg *)a)->ith;
    free(a);
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load(&p->gen);
        for (int i = 0; g == seen && i < p->spin && !atomic_load(&p->quit); i++) {
            cpu_relax(p);
            g = atomic_load(&p->gen);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        p->fn(p->arg, ith, p->n);
        if (atomic_fetch_sub(&p->busy, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

static pool *pool_new(int n) {
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads || pthread_mutex_init(&p->mu, NULL)) {
        free(p->threads);
        free(p);
        return NULL;
    }
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    /* A spinning thread holds its core. With more threads than cores it may hold the core
       that the thread it waits for needs, and every step waits for the scheduler (3 threads
       on 2 cores ran 200x slower): then a waiting thread yields its core instead of pausing,
       a few times, before it sleeps. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->yield = cores > 0 && n > cores;
    p->spin = p->yield ? POOL_YIELDS : POOL_SPIN;
    p->n = 1;
    for (int i = 1; i < n; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) break;
        a->p = p;
        a->ith = i;
        if (pthread_create(&p->threads[i], NULL, pool_worker, a)) {
            free(a);
            break;
        }
        p->n++;
    }
    if (p->n != n) { /* could not start them all: stop those that did */
        pool_free(p);
        return NULL;
    }
    return p;
}

static void pool_run(pool *p, task_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->busy, p->n - 1);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    for (int i = 0; atomic_load(&p->busy) > 0 && i < p->spin; i++) cpu_relax(p);
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

/* The share [*lo, *hi) of n items for thread ith of nth, in multiples of `grain`. */
static void split_range(int64_t n, int64_t grain, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t units = (n + grain - 1) / grain;
    *lo = units * ith / nth * grain;
    *hi = units * (ith + 1) / nth * grain;
    if (*lo > n) *lo = n;
    if (*hi > n) *hi = n;
}

typedef struct {
    const kernels *k;
    const matrix *w;
    const float *bias, *x;
    const q8_group *xq;
    int T;
    float *out;
    int64_t ldo;
    epilogue e;
} matmul_task;

static void matmul_worker(void *arg, int ith, int nth) {
    matmul_task *a = arg;
    int64_t lo, hi;
    split_range(a->w->rows, 4, ith, nth, &lo, &hi);
    matmul_rows(a->k, a->w, a->bias, a->x, a->xq, a->T, a->out, a->ldo, lo, hi, a->e);
}

typedef struct {
    const kernels *k;
    const float *x;
    int64_t n;
    int T;
    q8_group *xq;
} quantize_task;

static void quantize_worker(void *arg, int ith, int nth) {
    quantize_task *a = arg;
    int64_t lo, hi, ldq = q8_groups(a->n);
    split_range(a->T, 1, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) a->k->quantize_q8(a->x + t * a->n, a->n, a->xq + t * ldq);
}

/* ---- memory bandwidth probe (for benchmarks) --------------------------------------------- */

typedef struct {
    const float *buf;
    size_t n;
    float sums[256];
} bw_task;

#ifdef GPT2_X86
AVX512_TARGET static float sum_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#endif

static void bw_worker(void *arg, int ith, int nth) {
    bw_task *a = arg;
    int64_t lo, hi;
    split_range((int64_t)a->n, 1024, ith, nth, &lo, &hi);
    float s = 0;
#ifdef GPT2_X86
    if (cpu_level() & CPU_AVX512) {
        s = sum_avx512(a->buf + lo, (size_t)(hi - lo));
        a->sums[ith] = s;
        return;
    }
#endif
    float acc[8] = {0};
    for (int64_t i = lo; i + 8 <= hi; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a->buf[i + l];
    a->sums[ith] = reduce8(acc) + s;
}

gpt2_status gpt2_read_bandwidth(int32_t n_threads, double *gb_per_s) {
    if (n_threads < 1 || n_threads > 256 || !gb_per_s) return GPT2_E_ARG;
    size_t n = (size_t)64 << 20; /* 256 MB of floats, cache-line aligned (a straddling load
                                      reads two lines and halves the figure) */
    float *buf = aligned_alloc(64, n * sizeof(float));
    pool *p = pool_new(n_threads);
    if (!buf || !p) {
        free(buf);
        pool_free(p);
        return GPT2_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f;
    bw_task a;
    a.buf = buf;
    a.n = n;
    double rate[7]; /* the median of 7 passes: this figure is noisy on shared machines */
    for (int rep = 0; rep < 7; rep++) {
        double t0 = now_seconds();
        pool_run(p, bw_worker, &a);
        double t = now_seconds() - t0;
        rate[rep] = t > 0 ? (double)n * sizeof(float) / t : 0;
        for (int i = rep; i > 0 && rate[i] < rate[i - 1]; i--) {
            double tmp = rate[i];
            rate[i] = rate[i - 1];
            rate[i - 1] = tmp;
        }
    }
    pool_free(p);
    free(buf);
    *gb_per_s = rate[3] / 1e9;
    return GPT2_OK;
}

/* ==========================================================================================
 * 4. Transformer
 * ==========================================================================================
 * forward(): T new tokens in, logits out.
 *
 *   x = wte[id] + wpe[pos]                          // (T, C) the residual stream
 *   for each of the L blocks:
 *       x += attn_out(attention(ln1(x)))             masked multi-head self-attention
 *       x += proj(gelu(fc(ln2(x))))                  MLP
 *   logits = lnf(x) @ wte^T                          // (T, V) (GPT-2 ties the output to wte)
 *
 * Attention. For each head, a token's query is compared with the keys of itself and of every
 * earlier token (never a later one: that is the causal mask), the scores q.k / sqrt(HS) go
 * through a softmax, and the result is the weighted sum of the values. The KV cache keeps the
 * keys and values of every token already processed, per block and head, so each new token
 * costs one pass over the weights plus a pass over the cache.
 *
 * KV cells. The cache is a set of numbered cells, each holding one token's keys and values.
 * In the usual case token at position p lives in cell p of the main cache. Beam search adds
 * an arena: each beam's generated tokens live in arena cells, and a beam attends to the
 * prompt's cells plus the list of arena cells on its own history. Beams that share history
 * share cells, so reordering beams copies a few indices, never keys or values.
 * ---------------------------------------------------------------------------------------- */

/* What one row of a batch attends to and where its keys and values go. */
typedef struct {
    int32_t pos;            /* position of the token: row of wpe */
    int32_t n_main;         /* attends to main cells [0, n_main) ... */
    const int32_t *extra;   /* ... then to these arena cells, in order */
    int32_t n_extra;
    int32_t dst_arena;      /* its keys/values go to this arena cell, or -1: main cell `pos` */
} row_view;

typedef struct {
    float *k, *v;           // (L, NH, cells, HS) keys and values
    int32_t cells;
} kv_store;

#define GPT2_MAX_BATCH 512
#define LOGIT_ROWS 16 /* rows of logits computed at a time when only their loss is needed */

struct gpt2_context {
    const gpt2_model *m;
    int32_t n_ctx;          /* P: cells in the main cache */
    int32_t n_past;         /* tokens in the main cache */
    int32_t n_batch;        /* most rows in one forward pass */
    int32_t n_threads;
    pool *pool;
    kv_store cache;         /* main cache, (L, NH, P, HS) */
    kv_store arena;         /* beam search's cells, (L, NH, cells, HS); empty otherwise */
    /* activations of one forward pass, for up to n_batch rows */
    float *x;               // (n_batch, C)  residual stream
    float *xn;              // (n_batch, C)  layernormed x
    float *qkv;             // (n_batch, 3C) queries | keys | values
    float *y;               // (n_batch, C)  attention output, heads concatenated
    float *h;               // (n_batch, F)  MLP hidden layer
    q8_group *xq;           // (n_batch, q8_groups(F)) the input of a q8_0 matmul, quantized
    float *scores;          // (n_threads, 4, P) attention scores: 4 rows per thread
    float *emb;             // (2, C)        dequantized embedding rows
    row_view *views;        // (n_batch)
    /* decoding scratch */
    float *logits;          // (rows, V)     logits being decoded (LOGIT_ROWS rows, or B)
    int32_t logits_rows;
    float *work;            // (V)           sort keys, probabilities
    uint32_t *order;        // (2, V)        radix sort of the vocabulary
    uint8_t *seen;          // (V)           ids already penalised
    int32_t *seq;           // (P + 1)       prompt + generated ids
};

gpt2_context_params gpt2_context_default_params(void) {
    gpt2_context_params p = {1, 0};
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    p.n_threads = n > 0 ? (int32_t)(n > 64 ? 64 : n) : 1;
    return p;
}

/* Buffers that kernels stream through start on a cache line (64 bytes): a vector load that
   straddles two lines costs two. */
static void *alloc64(size_t bytes) {
    if (bytes > SIZE_MAX - 64) return NULL;
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

static void kv_free(kv_store *s) {
    free(s->k);
    free(s->v);
    s->k = s->v = NULL;
    s->cells = 0;
}

static bool kv_alloc(kv_store *s, const gpt2_model *m, int32_t cells) {
    size_t n = (size_t)m->cfg.n_layer * (size_t)m->cfg.n_embd * (size_t)cells;
    kv_free(s);
    /* cache-line aligned, and not cleared: a cell is always written before it is read, and
       pages never touched cost no memory */
    s->k = alloc64(n * sizeof(float));
    s->v = alloc64(n * sizeof(float));
    if (!s->k || !s->v) {
        kv_free(s);
        return false;
    }
    s->cells = cells;
    return true;
}

/* The key (or value) vector of a cell for block l, head h: HS floats. */
static float *kv_row(const kv_store *s, float *base, const gpt2_config *c, int l, int h, int32_t cell) {
    int HS = c->n_embd / c->n_head;
    return base + (((size_t)l * (size_t)c->n_head + (size_t)h) * (size_t)s->cells + (size_t)cell) * (size_t)HS;
}

void gpt2_context_free(gpt2_context *c) {
    if (!c) return;
    pool_free(c->pool);
    kv_free(&c->cache);
    kv_free(&c->arena);
    free(c->x); free(c->xn); free(c->qkv); free(c->y); free(c->h); free(c->xq); free(c->scores);
    free(c->emb); free(c->views); free(c->logits); free(c->work); free(c->order);
    free(c->seen); free(c->seq);
    free(c);
}

gpt2_status gpt2_context_new(const gpt2_model *m, const gpt2_context_params *p, gpt2_context **out) {
    if (!out) return GPT2_E_ARG;
    *out = NULL;
    if (!m) return GPT2_E_ARG;
    gpt2_context_params d = gpt2_context_default_params();
    if (!p) p = &d;
    if (p->n_threads < 1 || p->n_threads > 256 || p->n_ctx < 0) return GPT2_E_ARG;
    gpt2_context *c = calloc(1, sizeof *c);
    if (!c) return GPT2_E_NOMEM;
    const gpt2_config *cf = &m->cfg;
    c->m = m;
    c->n_ctx = p->n_ctx == 0 || p->n_ctx > cf->n_ctx ? cf->n_ctx : p->n_ctx;
    c->n_batch = c->n_ctx < GPT2_MAX_BATCH ? c->n_ctx : GPT2_MAX_BATCH;
    c->n_threads = p->n_threads;
    size_t B = (size_t)c->n_batch, C = (size_t)cf->n_embd, V = (size_t)cf->n_vocab;
    c->x = alloc64(B * C * sizeof(float));
    c->xn = alloc64(B * C * sizeof(float));
    c->qkv = alloc64(B * 3 * C * sizeof(float));
    c->y = alloc64(B * C * sizeof(float));
    c->h = alloc64(B * (size_t)m->n_ff * sizeof(float));
    size_t ldq = (size_t)q8_groups(m->n_ff > cf->n_embd ? m->n_ff : cf->n_embd);
    c->xq = alloc64(B * ldq * sizeof(q8_group));
    c->scores = malloc((size_t)c->n_threads * 4 * (size_t)c->n_ctx * sizeof(float));
    c->emb = malloc(2 * C * sizeof(float));
    c->views = malloc(B * sizeof *c->views);
    c->logits = alloc64((size_t)LOGIT_ROWS * V * sizeof(float));
    c->work = malloc(V * sizeof(float));
    c->order = malloc(2 * V * sizeof(uint32_t));
    c->logits_rows = LOGIT_ROWS;
    c->seen = calloc(V, 1);
    c->seq = malloc(((size_t)c->n_ctx + 1) * sizeof(int32_t));
    c->pool = pool_new(c->n_threads);
    if (!c->x || !c->xn || !c->qkv || !c->y || !c->h || !c->xq || !c->scores || !c->emb || !c->views ||
        !c->logits || !c->work || !c->order || !c->seen || !c->seq || !c->pool ||
        !kv_alloc(&c->cache, m, c->n_ctx)) {
        gpt2_context_free(c);
        return GPT2_E_NOMEM;
    }
    *out = c;
    return GPT2_OK;
}

void gpt2_context_reset(gpt2_context *c) {
    if (c) c->n_past = 0;
}
int32_t gpt2_context_length(const gpt2_context *c) { return c ? c->n_past : 0; }
int32_t gpt2_context_size(const gpt2_context *c) { return c ? c->n_ctx : 0; }

/* out (T, rows) = epilogue(x (T, cols) @ w^T + bias), split by weight rows over the threads.
   For q8_0 weights x is first quantized into c->xq, (T, q8_groups(cols)). */
static void matmul(gpt2_context *c, const matrix *w, const float *bias, const float *x, int T,
                   float *out, epilogue e) {
    matmul_task a = {c->m->k, w, bias, x, NULL, T, out, w->rows, e};
    if (w->type == GPT2_TYPE_Q8_0) {
        quantize_task q = {c->m->k, x, w->cols, T, c->xq};
        if (T >= 8) pool_run(c->pool, quantize_worker, &q);
        else quantize_worker(&q, 0, 1);
        a.xq = c->xq;
    }
    pool_run(c->pool, matmul_worker, &a);
}

/* ---- attention ------------------------------------------------------------------------- */

typedef struct {
    gpt2_context *c;
    int l;          /* block */
    int T;
} attn_task;

/* softmax(scores / sqrt(HS)) over n entries, in place */
static void attention_softmax(const kernels *k, float *scores, int32_t n, float scale) {
    float mx = -INFINITY;
    for (int32_t j = 0; j < n; j++) {
        scores[j] = scores[j] / scale;
        mx = scores[j] > mx ? scores[j] : mx;
    }
    float sum = k->exp_sum(scores, n, mx);
    for (int32_t j = 0; j < n; j++) scores[j] = scores[j] / sum;
}

/* y[t, head h] = softmax(q . K^T / sqrt(HS)) V over the cells row t may see.
   Work items are (head, block of up to 4 rows): the block's queries meet each key together
   in one tile (a score has the same bits whichever tile computes it). */
static void attention_worker(void *arg, int ith, int nth) {
    attn_task *a = arg;
    gpt2_context *c = a->c;
    const kernels *k = c->m->k;
    const gpt2_config *cf = &c->m->cfg;
    const int C = cf->n_embd, NH = cf->n_head, HS = C / NH;
    const float scale = sqrtf((float)HS);
    const size_t row_bytes = (size_t)HS * sizeof(float), P = (size_t)c->n_ctx;
    float *scores = c->scores + (size_t)ith * 4 * P;   // (4, P)
    const int n_blocks = (a->T + 3) / 4;
    int64_t lo, hi;
    split_range((int64_t)n_blocks * NH, 1, ith, nth, &lo, &hi);
    for (int64_t item = lo; item < hi; item++) {
        int t0 = (int)(item / NH) * 4, h = (int)(item % NH);
        int nq = a->T - t0 < 4 ? a->T - t0 : 4;
        /* scores against the main cache's keys (contiguous rows), up to the longest view */
        int32_t n_max = 0;
        for (int q = 0; q < nq; q++)
            if (c->views[t0 + q].n_main > n_max) n_max = c->views[t0 + q].n_main;
        const float *K = kv_row(&c->cache, c->cache.k, cf, a->l, h, 0);   // (n_main, HS)
        const float *Q = c->qkv + (size_t)t0 * 3 * C + (size_t)h * HS;      // (nq, HS), 3C apart
        for (int32_t j = 0; j < n_max; j += 4) {
            int nr = n_max - j < 4 ? n_max - j : 4;
            k->dot[WT_F32]((const uint8_t *)(K + (size_t)j * HS), row_bytes, nr, Q, (size_t)3 * C,
                           nq, HS, scores + j, P);
        }
        int32_t n_main[4];
        for (int q = 0; q < nq; q++) {
            const row_view *rv = &c->views[t0 + q];
            float *sq = scores + (size_t)q * P;   // (n) this row's scores
            /* beam search: then the arena cells on this row's history */
            for (int32_t e = 0; e < rv->n_extra; e++)
                k->dot[WT_F32]((const uint8_t *)kv_row(&c->arena, c->arena.k, cf, a->l, h, rv->extra[e]),
                               row_bytes, 1, Q + (size_t)q * 3 * C, (size_t)HS, 1, HS,
                               sq + rv->n_main + e, 1);
            attention_softmax(k, sq, rv->n_main + rv->n_extra, scale);
            n_main[q] = rv->n_main;
            memset(c->y + (size_t)(t0 + q) * C + (size_t)h * HS, 0, row_bytes);
        }
        /* y = sum_j p_j v_j: the main cache's values for the block, then the arena's */
        float *Y = c->y + (size_t)t0 * C + (size_t)h * HS;   // (nq, HS), C apart
        k->weighted_sum4(kv_row(&c->cache, c->cache.v, cf, a->l, h, 0), (size_t)HS, scores, P,
                         n_main, nq, HS, Y, (size_t)C);
        for (int q = 0; q < nq; q++) {
            const row_view *rv = &c->views[t0 + q];
            for (int32_t e = 0; e < rv->n_extra; e++)
                k->weighted_sum(kv_row(&c->arena, c->arena.v, cf, a->l, h, rv->extra[e]),
                                (size_t)HS, scores + (size_t)q * P + rv->n_main + e, 1, HS,
                                Y + (size_t)q * C);
        }
    }
}

typedef struct {
    float *out;
    const float *x, *w, *b;
    int C, first, T;
    float eps;
} norm_task;

static void layernorm_worker(void *arg, int ith, int nth) {
    norm_task *a = arg;
    int64_t lo, hi;
    split_range(a->T - a->first, 1, ith, nth, &lo, &hi);
    for (int64_t t = a->first + lo; t < a->first + hi; t++)
        layernorm(a->out + (size_t)t * a->C, a->x + (size_t)t * a->C, a->w, a->b, a->C, a->eps);
}

/* out[t] = layernorm(x[t]) for t in [first, T): split over the threads when there are many */
static void layernorm_rows(gpt2_context *c, float *out, const float *x, const float *w,
                           const float *b, int first, int T) {
    const gpt2_model *m = c->m;
    norm_task a = {out, x, w, b, m->cfg.n_embd, first, T, m->eps};
    if (T - first < 8) layernorm_worker(&a, 0, 1);
    else pool_run(c->pool, layernorm_worker, &a);
}

/* ---- the forward pass ------------------------------------------------------------------ */

typedef enum { LOGITS_NONE, LOGITS_LAST, LOGITS_ALL } logits_mode;

/* Runs T tokens (T <= n_batch) through the model. views[t] says where token t sits and what it
   sees; its keys and values are written to the cell the view names. logits receives (T, V)
   for LOGITS_ALL, (V) for LOGITS_LAST. */
static void forward(gpt2_context *c, const int32_t *ids, int T, logits_mode lm, float *logits) {
    const gpt2_model *m = c->m;
    const gpt2_config *cf = &m->cfg;
    const int C = cf->n_embd, NH = cf->n_head, HS = C / NH;
    const row_view *views = c->views;
    float *x = c->x, *xn = c->xn, *qkv = c->qkv, *y = c->y, *h = c->h;

    /* token embedding + position embedding */
    for (int t = 0; t < T; t++) {
        float *te = c->emb, *pe = c->emb + C;
        dequantize_row(&m->wte, ids[t], te);
        dequantize_row(&m->wpe, views[t].pos, pe);
        for (int i = 0; i < C; i++) x[(size_t)t * C + i] = te[i] + pe[i];   // (T, C)
    }

    for (int l = 0; l < cf->n_layer; l++) {
        const block_weights *b = &m->blocks[l];
        /* attention: ln1 -> q, k, v -> cache -> softmax(q k^T / sqrt(HS)) v -> projection */
        layernorm_rows(c, xn, x, b->ln1_w, b->ln1_b, 0, T);                         // (T, C)
        matmul(c, &b->qkv, b->qkv_b, xn, T, qkv, EPI_STORE);                        // (T, 3C)
        /* each token's keys and values (per head) go to its cache cell */
        for (int t = 0; t < T; t++) {
            const row_view *rv = &views[t];
            const kv_store *s = rv->dst_arena >= 0 ? &c->arena : &c->cache;
            int32_t cell = rv->dst_arena >= 0 ? rv->dst_arena : rv->pos;
            for (int hd = 0; hd < NH; hd++) {
                memcpy(kv_row(s, s->k, cf, l, hd, cell), qkv + (size_t)t * 3 * C + C + (size_t)hd * HS,
                       (size_t)HS * sizeof(float));
                memcpy(kv_row(s, s->v, cf, l, hd, cell), qkv + (size_t)t * 3 * C + 2 * C + (size_t)hd * HS,
                       (size_t)HS * sizeof(float));
            }
        }
        attn_task at = {c, l, T};
        pool_run(c->pool, attention_worker, &at);                                   // y (T, C)
        matmul(c, &b->attn_out, b->attn_out_b, y, T, x, EPI_ADD);                   // x += (T, C)

        /* MLP: ln2 -> fc -> gelu -> proj */
        layernorm_rows(c, xn, x, b->ln2_w, b->ln2_b, 0, T);                         // (T, C)
        matmul(c, &b->fc, b->fc_b, xn, T, h, EPI_GELU);                             // (T, F)
        matmul(c, &b->proj, b->proj_b, h, T, x, EPI_ADD);                           // x += (T, C)
    }

    /* final layernorm and the output matrix, only for the rows whose logits are wanted */
    if (lm == LOGITS_NONE) return;
    int first = lm == LOGITS_LAST ? T - 1 : 0;
    layernorm_rows(c, xn, x, m->lnf_w, m->lnf_b, first, T);                         // (T, C)
    if (logits)
        matmul(c, &m->lm_head, NULL, xn + (size_t)first * C, T - first, logits, EPI_STORE); // (T, V)
}

/* Sets views for T rows that follow the main cache sequentially (the usual case). */
static void seq_views(gpt2_context *c, int T) {
    for (int t = 0; t < T; t++) {
        row_view *rv = &c->views[t];
        rv->pos = c->n_past + t;
        rv->n_main = rv->pos + 1;
        rv->extra = NULL;
        rv->n_extra = 0;
        rv->dst_arena = -1;
    }
}

/* Appends n tokens to the main cache, in forward passes of at most n_batch rows. With
   LOGITS_ALL, logits receives (n, V); with LOGITS_LAST, (V) for the last token. */
static gpt2_status eval_tokens(gpt2_context *c, const int32_t *ids, size_t n, logits_mode lm,
                               float *logits) {
    const int32_t V = c->m->cfg.n_vocab;
    if (n > (size_t)(c->n_ctx - c->n_past)) return GPT2_E_CONTEXT_FULL;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) return GPT2_E_ARG;
    for (size_t i = 0; i < n;) {
        int T = n - i < (size_t)c->n_batch ? (int)(n - i) : c->n_batch;
        seq_views(c, T);
        bool last_chunk = i + (size_t)T == n;
        logits_mode mode = lm == LOGITS_ALL ? LOGITS_ALL
                         : lm == LOGITS_LAST && last_chunk ? LOGITS_LAST : LOGITS_NONE;
        forward(c, ids + i, T, mode, mode == LOGITS_ALL ? logits + i * (size_t)V : logits);
        c->n_past += T;
        i += (size_t)T;
    }
    return GPT2_OK;
}

gpt2_status gpt2_eval(gpt2_context *c, const int32_t *ids, size_t n, float *logits) {
    if (!c || (!ids && n)) return GPT2_E_ARG;
    if (n == 0) return GPT2_OK;
    return eval_tokens(c, ids, n, logits ? LOGITS_ALL : LOGITS_NONE, logits);
}

/* log-sum-exp of a row, in double */
static double logsumexp(const float *x, int32_t n) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) return -INFINITY;
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

gpt2_status gpt2_perplexity(gpt2_context *c, const int32_t *ids, size_t n, int32_t max_len,
                            int32_t stride, double *ppl, double *nll_mean) {
    if (!c || !ids || !ppl || max_len < 0 || stride < 0) return GPT2_E_ARG;
    if (max_len == 0 || max_len > c->n_ctx) max_len = c->n_ctx;
    if (stride == 0) stride = max_len;
    if (stride > max_len || n < 2) return GPT2_E_ARG;
    const gpt2_model *m = c->m;
    const int32_t V = m->cfg.n_vocab, C = m->cfg.n_embd;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) return GPT2_E_ARG;
    /* Hugging Face's recipe ("Perplexity of fixed-length models"): windows [begin, end) of at
       most max_len tokens, begin advancing by stride; each window scores the tokens in
       [prev_end, end) that have a token before them in the window (labels before them are
       -100); ppl = exp(total NLL / tokens scored). */
    double nll_sum = 0;
    size_t scored = 0, prev_end = 0;
    for (size_t begin = 0; begin < n; begin += (size_t)stride) {
        size_t end = begin + (size_t)max_len < n ? begin + (size_t)max_len : n;
        size_t first = prev_end > begin + 1 ? prev_end : begin + 1; /* first scored token */
        gpt2_context_reset(c);
        /* feed ids[begin, end-1): the row of token a predicts token a+1 */
        for (size_t i = begin; i + 1 < end;) {
            int T = end - 1 - i < (size_t)c->n_batch ? (int)(end - 1 - i) : c->n_batch;
            seq_views(c, T);
            forward(c, ids + i, T, LOGITS_ALL, NULL); /* leaves lnf(x) in c->xn */
            c->n_past += T;
            for (int r0 = 0; r0 < T; r0 += LOGIT_ROWS) {
                int nr = T - r0 < LOGIT_ROWS ? T - r0 : LOGIT_ROWS;
                if (i + (size_t)(r0 + nr) < first) continue; /* no scored row in this group */
                matmul(c, &m->lm_head, NULL, c->xn + (size_t)r0 * C, nr, c->logits, EPI_STORE); // (nr, V)
                for (int r = 0; r < nr; r++) {
                    size_t a = i + (size_t)(r0 + r);
                    if (a + 1 < first) continue;
                    const float *row = c->logits + (size_t)r * V;
                    nll_sum += logsumexp(row, V) - row[ids[a + 1]];
                    scored++;
                }
            }
            i += (size_t)T;
        }
        prev_end = end;
        if (end == n) break;
    }
    gpt2_context_reset(c);
    double mean = nll_sum / (double)scored;
    if (nll_mean) *nll_mean = mean;
    *ppl = exp(mean);
    return GPT2_OK;
}

/* ==========================================================================================
 * 5. Decoding: from logits to the next token
 * ==========================================================================================
 * The model gives a score (logit) for every token of the vocabulary. Decoding strategies:
 *   greedy        take the highest score (the first one on ties)
 *   sampling      turn scores into probabilities (softmax) and draw one at random; before that,
 *                 reshape the distribution with the "logits processors", in Hugging Face's order:
 *                   repetition penalty  make tokens already in the text less likely
 *                   temperature         divide by T: T < 1 sharpens, T > 1 flattens
 *                   top-k               keep the k highest scores (and ties with the k-th)
 *                   top-p (nucleus)     keep the smallest top set whose probability is >= p
 *   beam search   keep the B best partial sequences by total log-probability (section 6)
 * Removed tokens get a score of -infinity, i.e. probability 0.
 * ---------------------------------------------------------------------------------------- */

/* Repetition penalty over the DISTINCT ids of prev: s / r if s > 0, else s * r. seen (V bytes,
   all zero) marks ids already done; NULL: check earlier entries of prev instead. */
static void repetition_penalty(float *logits, int32_t V, const int32_t *prev, size_t n_prev,
                               float r, uint8_t *seen) {
    for (size_t i = 0; i < n_prev; i++) {
        int32_t id = prev[i];
        if (id < 0 || id >= V) continue;
        if (seen) {
            if (seen[id]) continue;
            seen[id] = 1;
        } else {
            size_t j = 0;
            while (j < i && prev[j] != id) j++;
            if (j < i) continue;
        }
        float s = logits[id];
        logits[id] = s < 0 ? s * r : s / r;
    }
    if (seen)
        for (size_t i = 0; i < n_prev; i++)
            if (prev[i] >= 0 && prev[i] < V) seen[prev[i]] = 0;
}

/* A float's bits mapped to an unsigned integer of the same order (-inf lowest). */
static uint32_t float_key(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/* Sorts the n ids in ids[] by their logits ascending, stably (equal values keep their
   order), with a three-pass radix sort on 11-bit digits: linear time, ~0.3 ms for all of
   GPT-2's vocabulary. tmp (n) and keybuf (one float per vocabulary entry) are scratch. */
static void sort_ascending(const float *logits, uint32_t *ids, int32_t n, uint32_t *tmp,
                           float *keybuf) {
    uint32_t *keys = (uint32_t *)(void *)keybuf; /* keys[id]: an order-preserving integer */
    for (int32_t i = 0; i < n; i++) keys[ids[i]] = float_key(logits[ids[i]]);
    uint32_t *src = ids, *dst = tmp;
    for (int pass = 0; pass < 3; pass++) {
        int shift = 11 * pass;
        uint32_t count[2048] = {0};
        for (int32_t i = 0; i < n; i++) count[(keys[src[i]] >> shift) & 2047]++;
        uint32_t sum = 0;
        for (int d = 0; d < 2048; d++) {
            uint32_t cnt = count[d];
            count[d] = sum;
            sum += cnt;
        }
        for (int32_t i = 0; i < n; i++) dst[count[(keys[src[i]] >> shift) & 2047]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != ids) memcpy(ids, src, (size_t)n * sizeof *ids); /* odd pass count: copy back */
}

/* scratch for the processors: work (V floats), order (2V) */
typedef struct {
    float *work;
    uint32_t *order;
    uint8_t *seen;
} proc_scratch;

/* top-k: remove every score strictly below the k-th highest (ties with it all stay). */
static void top_k_filter(float *logits, int32_t V, int32_t k, int32_t min_keep, proc_scratch *ps) {
    if (k < min_keep) k = min_keep;
    if (k <= 0 || k >= V) return;
    for (int32_t i = 0; i < V; i++) ps->order[i] = (uint32_t)i;
    sort_ascending(logits, ps->order, V, ps->order + V, ps->work);
    float kth = logits[ps->order[V - k]];
    for (int32_t i = 0; i < V; i++)
        if (logits[i] < kth) logits[i] = -INFINITY;
}

/* The value a user most likely typed for a float parameter (0.9f -> 0.9), so that 1 - p is
   computed as Python computes it from the same text. */
static double typed_value(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return strtod(buf, NULL);
}

/* top-p as Hugging Face computes it: sort ascending, float32 softmax, running sum (each
   partial sum rounded to float32), remove entries whose running sum is <= 1 - p, but never
   the highest. In words: keep a token iff the probability mass above it is < p. */
static void top_p_filter(float *logits, int32_t V, float top_p, int32_t min_keep, proc_scratch *ps) {
    if (!(top_p < 1.0f)) return;
    /* only the surviving entries: one removed earlier (by top-k) has probability 0, adds
       nothing to the running sum and stays removed, so sorting it changes nothing */
    uint32_t *order = ps->order;
    int32_t m = 0;
    for (int32_t i = 0; i < V; i++)
        if (logits[i] != -INFINITY) order[m++] = (uint32_t)i;
    if (m == 0) return;
    sort_ascending(logits, order, m, order + V, ps->work);
    float mx = logits[order[m - 1]];
    float *e = ps->work; /* (m) exp(x - max) in sorted order (the sort is done with work) */
    double sum = 0;
    for (int32_t i = 0; i < m; i++) {
        e[i] = expf(logits[order[i]] - mx);
        sum += e[i];
    }
    float inv = 1.0f / (float)sum;
    float threshold = (float)(1.0 - typed_value(top_p));
    float cum = 0.0f;
    for (int32_t i = 0; i < m - min_keep; i++) { /* the min_keep highest always stay */
        cum = (float)((double)cum + (double)(e[i] * inv));
        if (cum > threshold) break;
        logits[order[i]] = -INFINITY;
    }
}

static void process_logits(const gpt2_sampling *s, float *logits, int32_t V, const int32_t *prev,
                           size_t n_prev, proc_scratch *ps) {
    if (s->repetition_penalty != 1.0f && s->repetition_penalty > 0)
        repetition_penalty(logits, V, prev, n_prev, s->repetition_penalty, ps->seen);
    if (s->temperature > 0 && s->temperature != 1.0f)
        for (int32_t i = 0; i < V; i++) logits[i] = logits[i] / s->temperature;
    int32_t min_keep = s->min_tokens_to_keep > 1 ? s->min_tokens_to_keep : 1;
    if (s->top_k > 0) top_k_filter(logits, V, s->top_k, min_keep, ps);
    if (s->top_p < 1.0f && s->top_p >= 0) top_p_filter(logits, V, s->top_p, min_keep, ps);
}

void gpt2_process_logits(const gpt2_sampling *s, float *logits, int32_t n_vocab,
                         const int32_t *prev, size_t n_prev) {
    if (!s || !logits || n_vocab <= 0 || (!prev && n_prev)) return;
    proc_scratch ps = {NULL, NULL, NULL};
    bool sorts = (s->top_k > 0 && s->top_k < n_vocab) || (s->top_p < 1.0f && s->top_p >= 0);
    if (sorts) {
        ps.work = malloc((size_t)n_vocab * sizeof(float));
        ps.order = malloc(2 * (size_t)n_vocab * sizeof(uint32_t));
        if (!ps.work || !ps.order) { /* no memory: leave the row unfiltered rather than crash */
            free(ps.work);
            free(ps.order);
            ps.work = NULL;
            ps.order = NULL;
            sorts = false;
        }
    }
    ps.seen = n_prev > 64 ? calloc((size_t)n_vocab, 1) : NULL;
    gpt2_sampling s2 = *s;
    if (!sorts) {
        s2.top_k = 0;
        s2.top_p = 1.0f;
    }
    process_logits(&s2, logits, n_vocab, prev, n_prev, &ps);
    free(ps.work);
    free(ps.order);
    free(ps.seen);
}

/* Greedy: the highest score, the first index on ties. */
static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The PRNG: xoshiro256** (Blackman & Vigna), seeded through splitmix64. One generator per
   generate() call, so the same seed gives the same draws whatever the thread count. */
typedef struct {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* uniform in [0, 1) with 53 random bits */
static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* Sampling: softmax over the surviving scores, then the first id whose cumulative probability
   exceeds a uniform draw (ids in increasing order). probs (V floats) is scratch. */
static int32_t sample(const kernels *k, const float *logits, int32_t V, rng *r, float *probs) {
    float mx = logits[argmax(logits, V)];
    if (mx == -INFINITY) return argmax(logits, V);
    memcpy(probs, logits, (size_t)V * sizeof *probs);
    double total = k->exp_sum(probs, V, mx); /* removed tokens: exp(-inf) = 0 */
    double u = rng_uniform(r) * total, cum = 0;
    int32_t last = 0;
    for (int32_t i = 0; i < V; i++) {
        if (probs[i] == 0.0f) continue;
        cum += probs[i];
        last = i;
        if (cum > u) return i;
    }
    return last; /* u within rounding of the total */
}

/* log_softmax of a row in place, as torch computes it: (x - max) - log(sum(exp(x - max))).
   scratch holds V floats. */
static void log_softmax(const kernels *k, float *x, int32_t n, float *scratch) {
    float mx = x[argmax(x, n)];
    memcpy(scratch, x, (size_t)n * sizeof *x);
    float log_sum = logf(k->exp_sum(scratch, n, mx));
    for (int32_t i = 0; i < n; i++) x[i] = (x[i] - mx) - log_sum;
}

/* ==========================================================================================
 * 6. Generation: the autoregressive loop
 * ==========================================================================================
 * Evaluate the prompt once (filling the KV cache), then repeat: choose a token from the last
 * logits, hand it to the caller, feed it back through the model. Stop at eos, after
 * max_new_tokens, when the callback asks to, or when the context is full.
 * ---------------------------------------------------------------------------------------- */

gpt2_generate_params gpt2_generate_default_params(const gpt2_model *m) {
    gpt2_generate_params p;
    memset(&p, 0, sizeof p);
    p.sampling.temperature = 1.0f;
    p.sampling.top_k = 0;
    p.sampling.top_p = 1.0f;
    p.sampling.repetition_penalty = 1.0f;
    p.sampling.seed = 0;
    p.max_new_tokens = 64;
    p.num_beams = 1;
    p.length_penalty = 1.0f;
    p.early_stopping = 0;
    p.num_return_sequences = 1;
    p.eos_id = m ? m->cfg.eot_id : -1;
    return p;
}

static gpt2_status check_params(const gpt2_context *c, const int32_t *prompt, size_t n_prompt,
                                const gpt2_generate_params *p) {
    const gpt2_sampling *s = &p->sampling;
    const int32_t V = c->m->cfg.n_vocab;
    if (!(s->temperature >= 0) || isinf(s->temperature) || s->top_k < 0 ||
        !(s->top_p >= 0 && s->top_p <= 1) || !(s->repetition_penalty > 0) ||
        isinf(s->repetition_penalty) || p->max_new_tokens < 0 || p->num_beams < 1 ||
        p->num_beams > GPT2_MAX_BATCH || !isfinite(p->length_penalty) ||
        p->early_stopping < 0 || p->early_stopping > 2 || p->num_return_sequences < 1 ||
        p->num_return_sequences > p->num_beams || p->eos_id < -1 || p->eos_id >= V ||
        s->min_tokens_to_keep < 0)
        return GPT2_E_ARG;
    if (n_prompt == 0 || !prompt) return GPT2_E_ARG; /* the model needs at least one token */
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) return GPT2_E_ARG;
    if (n_prompt > (size_t)c->n_ctx) return GPT2_E_CONTEXT_FULL;
    return GPT2_OK;
}

static gpt2_status beam_search(gpt2_context *c, size_t n_prompt, const gpt2_generate_params *p,
                               int32_t *out, size_t cap, size_t *n_out, gpt2_generate_info *info);

gpt2_status gpt2_generate_ex(gpt2_context *c, const int32_t *prompt, size_t n_prompt,
                             const gpt2_generate_params *p, int32_t *out, size_t cap,
                             size_t *n_out, gpt2_on_token cb, void *user,
                             gpt2_generate_info *info) {
    if (n_out) *n_out = 0;
    if (!c || !p || !n_out || (!out && cap)) return GPT2_E_ARG;
    gpt2_generate_info dummy;
    memset(&dummy, 0, sizeof dummy);
    if (!info) info = &dummy;
    double *scores = info->scores;
    memset(info, 0, sizeof *info);
    info->scores = scores;
    gpt2_status st = check_params(c, prompt, n_prompt, p);
    if (st) return st;
    const gpt2_model *m = c->m;
    const int32_t V = m->cfg.n_vocab;

    double t0 = now_seconds();
    gpt2_context_reset(c);
    memcpy(c->seq, prompt, n_prompt * sizeof *prompt);
    st = eval_tokens(c, prompt, n_prompt, LOGITS_LAST, c->logits);   /* logits (V) */
    if (st) return st;
    info->n_prompt = (int32_t)n_prompt;
    info->prompt_seconds = now_seconds() - t0;
    double t1 = now_seconds();
    if (p->num_beams > 1) {
        st = beam_search(c, n_prompt, p, out, cap, n_out, info);
        info->gen_seconds = now_seconds() - t1;
        return st;
    }

    bool greedy = p->sampling.temperature == 0.0f;
    gpt2_sampling s = p->sampling;
    if (greedy) { /* Hugging Face applies no warpers when not sampling */
        s.temperature = 1.0f;
        s.top_k = 0;
        s.top_p = 1.0f;
    }
    proc_scratch ps = {c->work, c->order, c->seen};
    rng r;
    rng_seed(&r, p->sampling.seed);
    size_t n_seq = n_prompt;
    info->stop = GPT2_STOP_LENGTH;
    for (int32_t i = 0; i < p->max_new_tokens; i++) {
        if (i > 0) { /* feed the previous token back */
            if (c->n_past >= c->n_ctx) {
                info->stop = GPT2_STOP_CONTEXT;
                st = GPT2_E_CONTEXT_FULL;
                break;
            }
            eval_tokens(c, &c->seq[n_seq - 1], 1, LOGITS_LAST, c->logits);
        }
        if (*n_out >= cap) {
            info->stop = GPT2_STOP_BUFFER;
            st = GPT2_E_BUFFER;
            break;
        }
        process_logits(&s, c->logits, V, c->seq, n_seq, &ps);
        int32_t id = greedy ? argmax(c->logits, V) : sample(m->k, c->logits, V, &r, c->work);
        out[(*n_out)++] = id;
        c->seq[n_seq++] = id;
        info->n_generated++;
        if (cb) {
            const char *bytes;
            size_t len;
            gpt2_token_bytes(m, id, &bytes, &len);
            if (cb(user, id, bytes, len)) {
                info->stop = GPT2_STOP_CALLBACK;
                break;
            }
        }
        if (id == p->eos_id) {
            info->stop = GPT2_STOP_EOS;
            break;
        }
    }
    info->gen_seconds = now_seconds() - t1;
    return st;
}

gpt2_status gpt2_generate(gpt2_context *c, const int32_t *prompt, size_t n_prompt,
                          const gpt2_generate_params *p, int32_t *out, size_t cap, size_t *n_out,
                          gpt2_on_token cb, void *user) {
    return gpt2_generate_ex(c, prompt, n_prompt, p, out, cap, n_out, cb, user, NULL);
}

/* ---- beam search -------------------------------------------------------------------------
 * Hugging Face transformers 4.40 (`_beam_search` + BeamSearchScorer), step by step:
 *  - B beams start as the prompt with scores [0, -1e9, ...] (the first step expands beam 0).
 *  - Each step: per beam, log_softmax of its logits (then processors), plus the beam's score;
 *    the top 2B of all B*V candidates, best first.
 *  - Walk them: an eos among the first B ranks finishes a hypothesis (its score is the sum of
 *    log-probs / generated_length ** length_penalty); other candidates become the next beams,
 *    until B are found.
 *  - The finished list keeps the best B. Once it is full, the search is done when
 *    early_stopping is True, or when no running beam can beat its worst (False / "never").
 *  - At max_new_tokens the running beams join the finished list; the best are returned.
 * Scores are float32 sums as in torch; normalised scores and comparisons are in double as in
 * Python.
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    double score;       /* normalised */
    double sum_logprobs;
    int32_t *tokens;    /* generated ids, without eos */
    int32_t n;
    bool eos;
} hypothesis;

typedef struct {
    hypothesis *h;      /* in insertion order, as Hugging Face keeps them */
    int n, cap;
    double worst;
} hyp_list;

/* BeamHypotheses.add: keep the best `cap`; ties drop the earliest added. */
static bool hyp_add(hyp_list *L, const int32_t *tokens, int32_t n, double sum_logprobs,
                    double lp, bool eos) {
    double score = sum_logprobs / pow((double)(n + (eos ? 1 : 0)), lp);
    if (L->n >= L->cap && !(score > L->worst)) return true;
    int32_t *copy = malloc(((size_t)n + 1) * sizeof *copy);
    if (!copy) return false;
    memcpy(copy, tokens, (size_t)n * sizeof *copy);
    hypothesis hy = {score, sum_logprobs, copy, n, eos};
    L->h[L->n++] = hy;
    if (L->n > L->cap) {
        int worst = 0, second = -1;
        for (int i = 1; i < L->n; i++)
            if (L->h[i].score < L->h[worst].score) worst = i;
        free(L->h[worst].tokens);
        memmove(&L->h[worst], &L->h[worst + 1], (size_t)(L->n - worst - 1) * sizeof *L->h);
        L->n--;
        for (int i = 0; i < L->n; i++)
            if (second < 0 || L->h[i].score < L->h[second].score) second = i;
        L->worst = L->h[second].score;
    } else {
        L->worst = score < L->worst ? score : L->worst;
    }
    return true;
}

/* BeamHypotheses.is_done */
static bool hyp_done(const hyp_list *L, double best_sum, int32_t gen_len, int32_t max_new,
                     double lp, int early_stopping) {
    if (L->n < L->cap) return false;
    if (early_stopping == 1) return true;
    double denom = (early_stopping == 2 && lp > 0) ? pow((double)max_new, lp)
                                                   : pow((double)gen_len, lp);
    return L->worst >= best_sum / denom;
}

typedef struct {
    float score;        /* running sum of log-probs (float32, as torch keeps beam scores) */
    int32_t *tokens;    /* (max_new) generated ids */
    int32_t *cells;     /* (max_new) arena cells of those tokens' keys/values */
} beam;

typedef struct {
    float score;
    int32_t beam, token;
} candidate;

/* better candidate: higher score; ties: lower flat index (beam * V + token) */
static bool cand_better(const candidate *a, const candidate *b, int32_t V) {
    if (a->score != b->score) return a->score > b->score;
    return (int64_t)a->beam * V + a->token < (int64_t)b->beam * V + b->token;
}

static gpt2_status beam_search(gpt2_context *c, size_t n_prompt, const gpt2_generate_params *p,
                               int32_t *out, size_t cap, size_t *n_out, gpt2_generate_info *info) {
    const gpt2_model *m = c->m;
    const int32_t V = m->cfg.n_vocab, B = p->num_beams, P = (int32_t)n_prompt;
    const double lp = p->length_penalty;
    int32_t N = p->max_new_tokens;
    gpt2_status st = GPT2_OK;
    info->stop = GPT2_STOP_LENGTH;
    if (N > c->n_ctx - P + 1) { /* positions run out before max_new_tokens */
        N = c->n_ctx - P + 1;
        info->stop = GPT2_STOP_CONTEXT;
        st = GPT2_E_CONTEXT_FULL;
    }
    /* memory: B beams (two generations), the arena, logits for B rows, the finished list */
    beam *cur = calloc((size_t)B, sizeof *cur), *nxt = calloc((size_t)B, sizeof *nxt);
    candidate *cands = malloc(2 * (size_t)B * sizeof *cands);
    int32_t *seq = malloc(((size_t)P + (size_t)N + 1) * sizeof *seq);
    int32_t *ids = malloc((size_t)B * sizeof *ids);
    hyp_list fin = {calloc((size_t)B + 1, sizeof(hypothesis)), 0, B, 1e9};
    bool ok = cur && nxt && cands && seq && ids && fin.h;
    for (int32_t b = 0; ok && b < B; b++) {
        size_t n = (size_t)N + 1;
        cur[b].tokens = malloc(n * sizeof(int32_t));
        cur[b].cells = malloc(n * sizeof(int32_t));
        nxt[b].tokens = malloc(n * sizeof(int32_t));
        nxt[b].cells = malloc(n * sizeof(int32_t));
        ok = cur[b].tokens && cur[b].cells && nxt[b].tokens && nxt[b].cells;
    }
    if (ok && c->logits_rows < B) {
        float *l = alloc64((size_t)B * (size_t)V * sizeof(float)); /* nothing to keep */
        if (l) {
            free(c->logits);
            c->logits = l;
            c->logits_rows = B;
        }
        ok = l != NULL;
    }
    if (ok && N > 1 && c->arena.cells < (N - 1) * B) ok = kv_alloc(&c->arena, m, (N - 1) * B);
    if (!ok) {
        st = GPT2_E_NOMEM;
        N = 0;
    }
    proc_scratch ps = {c->work, c->order, c->seen};
    memcpy(seq, c->seq, (size_t)P * sizeof *seq);
    for (int32_t b = 0; ok && b < B; b++) cur[b].score = b == 0 ? 0.0f : -1e9f;
    /* step 1 scores every beam against the prompt's logits: copy them to each row */
    for (int32_t b = 1; ok && b < B; b++)
        memcpy(c->logits + (size_t)b * V, c->logits, (size_t)V * sizeof(float));
    bool done = false;
    int32_t steps = 0;
    for (int32_t step = 1; step <= N; step++) {
        /* candidates: log_softmax + processors + beam score; keep the best 2B */
        int n_c = 0;
        for (int32_t b = 0; b < B; b++) {
            float *row = c->logits + (size_t)b * V;
            log_softmax(m->k, row, V, c->work);
            if (p->sampling.repetition_penalty != 1.0f) {
                memcpy(seq + P, cur[b].tokens, (size_t)(step - 1) * sizeof *seq);
                repetition_penalty(row, V, seq, (size_t)(P + step - 1), p->sampling.repetition_penalty,
                                   ps.seen);
            }
            for (int32_t v = 0; v < V; v++) {
                candidate cd = {row[v] + cur[b].score, b, v};
                if (n_c == 2 * B && !cand_better(&cd, &cands[n_c - 1], V)) continue;
                int i = n_c < 2 * B ? n_c++ : n_c - 1; /* insertion into the sorted top 2B */
                while (i > 0 && cand_better(&cd, &cands[i - 1], V)) {
                    cands[i] = cands[i - 1];
                    i--;
                }
                cands[i] = cd;
            }
        }
        /* walk the candidates: eos finishes a hypothesis, the rest become beams */
        int32_t nb = 0;
        for (int rank = 0; rank < n_c && nb < B; rank++) {
            const candidate *cd = &cands[rank];
            const beam *src = &cur[cd->beam];
            if (p->eos_id >= 0 && cd->token == p->eos_id) {
                if (rank >= B) continue;
                if (!hyp_add(&fin, src->tokens, step - 1, (double)cd->score, lp, true)) {
                    st = GPT2_E_NOMEM;
                    break;
                }
            } else {
                beam *dst = &nxt[nb++];
                dst->score = cd->score;
                memcpy(dst->tokens, src->tokens, (size_t)(step - 1) * sizeof(int32_t));
                memcpy(dst->cells, src->cells, (size_t)(step - 1) * sizeof(int32_t));
                dst->tokens[step - 1] = cd->token;
            }
        }
        if (st == GPT2_E_NOMEM) break;
        beam *t = cur;
        cur = nxt;
        nxt = t;
        steps = step;
        done = done || hyp_done(&fin, (double)cands[0].score, step, N, lp, p->early_stopping);
        if (done || step == N) break;
        /* feed the B new tokens through the model together: one B-row forward pass */
        for (int32_t b = 0; b < B; b++) {
            row_view *rv = &c->views[b];
            cur[b].cells[step - 1] = (step - 1) * B + b;
            ids[b] = cur[b].tokens[step - 1];
            rv->pos = P + step - 1;
            rv->n_main = P;
            rv->extra = cur[b].cells;
            rv->n_extra = step;
            rv->dst_arena = (step - 1) * B + b;
        }
        forward(c, ids, B, LOGITS_ALL, c->logits);
    }
    info->n_generated = steps;
    if (st != GPT2_E_NOMEM) {
        if (done) info->stop = GPT2_STOP_EOS;
        else /* the running beams join the finished list, normalised by the full length */
            for (int32_t b = 0; b < B && st != GPT2_E_NOMEM; b++)
                if (!hyp_add(&fin, cur[b].tokens, steps, (double)cur[b].score, lp, false))
                    st = GPT2_E_NOMEM;
    }
    if (st != GPT2_E_NOMEM) {
        /* best first; among equal scores the later added first (Python's sorted + pop) */
        size_t n = 0;
        int32_t returned = 0;
        for (int32_t r = 0; r < p->num_return_sequences && fin.n > 0; r++) {
            int best = fin.n - 1;
            for (int i = fin.n - 1; i >= 0; i--)
                if (fin.h[i].score > fin.h[best].score) best = i;
            hypothesis *hy = &fin.h[best];
            for (int32_t i = 0; i <= hy->n; i++) {
                int32_t id = i < hy->n ? hy->tokens[i] : (hy->eos ? p->eos_id : -2);
                if (id == -2) continue;
                if (n < cap) out[n] = id;
                n++;
            }
            if (n < cap) out[n] = -1;
            n++;
            if (info->scores) info->scores[r] = hy->score;
            returned++;
            free(hy->tokens);
            memmove(hy, hy + 1, (size_t)(fin.n - best - 1) * sizeof *hy);
            fin.n--;
        }
        info->n_hypotheses = returned;
        *n_out = n < cap ? n : cap;
        if (n > cap && st == GPT2_OK) st = GPT2_E_BUFFER;
    }
    for (int i = 0; i < fin.n; i++) free(fin.h[i].tokens);
    free(fin.h);
    for (int32_t b = 0; cur && nxt && b < B; b++) {
        free(cur[b].tokens); free(cur[b].cells); free(nxt[b].tokens); free(nxt[b].cells);
    }
    free(cur); free(nxt); free(cands); free(seq); free(ids);
    return st;
}

/* ==========================================================================================
 * Appendix: gpt2_quantize — rewrite a model file with other weight types
 * ==========================================================================================
 * Every 2-D matrix is converted row by row: decode to float, encode to the new type. q8_0
 * encodes each block of 32 as d = max|x| / 127 and q = round(x / d), as GGUF defines it, so
 * llama.cpp reads the result. Metadata is copied as it is, except general.file_type.
 * ---------------------------------------------------------------------------------------- */

static void quantize_row(const float *x, int64_t n, gpt2_type type, uint8_t *out) {
    switch (type) {
    case GPT2_TYPE_F32: memcpy(out, x, (size_t)n * sizeof(float)); break;
    case GPT2_TYPE_F16:
    case GPT2_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = type == GPT2_TYPE_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
            out[2 * i] = (uint8_t)h;
            out[2 * i + 1] = (uint8_t)(h >> 8);
        }
        break;
    case GPT2_TYPE_Q8_0:
        for (int64_t b = 0; b < n / QK8_0; b++, out += Q8_0_BLOCK_BYTES) {
            const float *v = x + b * QK8_0;
            float amax = 0.0f;
            for (int i = 0; i < QK8_0; i++) amax = fmaxf(amax, fabsf(v[i]));
            float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            uint16_t dh = f32_to_f16(d);
            out[0] = (uint8_t)dh;
            out[1] = (uint8_t)(dh >> 8);
            for (int i = 0; i < QK8_0; i++) out[2 + i] = (uint8_t)(int8_t)roundf(v[i] * id);
        }
        break;
    }
}

static bool write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n; }

static bool write_u32(FILE *f, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return write_all(f, b, 4);
}

static bool write_u64(FILE *f, uint64_t v) {
    return write_u32(f, (uint32_t)v) && write_u32(f, (uint32_t)(v >> 32));
}

static bool write_pad(FILE *f, uint64_t n, uint32_t align) {
    static const uint8_t zeros[64] = {0};
    uint64_t pad = (align - n % align) % align;
    while (pad > 0) {
        size_t k = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        if (!write_all(f, zeros, k)) return false;
        pad -= k;
    }
    return true;
}

gpt2_status gpt2_quantize(const char *in_path, const char *out_path, gpt2_type type, char *err,
                          size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!in_path || !out_path) return fail_with(GPT2_E_ARG, err, err_len, "path is NULL");
    if (type != GPT2_TYPE_F32 && type != GPT2_TYPE_F16 && type != GPT2_TYPE_BF16 &&
        type != GPT2_TYPE_Q8_0)
        return fail_with(GPT2_E_ARG, err, err_len, "unsupported target type %d", (int)type);
    gpt2_model *m;
    gpt2_status s = gpt2_load(in_path, &m, err, err_len);
    if (s) return s;
    const gguf_file *g = &m->gguf;
    /* the new type of each tensor and its new size/offset */
    uint32_t *types = malloc((size_t)g->n_tensors * sizeof *types);
    uint64_t *sizes = malloc((size_t)g->n_tensors * sizeof *sizes);
    float *row = NULL;
    int64_t max_cols = 0;
    if (!types || !sizes) {
        s = fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        types[i] = t->type;
        sizes[i] = t->nbytes;
        if (t->n_dims != 2) continue;
        if (type == GPT2_TYPE_Q8_0 && t->ne[0] % QK8_0) {
            s = fail_with(GPT2_E_UNSUPPORTED, err, err_len, "tensor '%.*s': rows of %llu cannot be q8_0",
                     (int)t->name_len, t->name, (unsigned long long)t->ne[0]);
            goto done;
        }
        types[i] = (uint32_t)type;
        ggml_type_nbytes(type, t->ne[0] * t->ne[1], t->ne[0], &sizes[i]);
        if ((int64_t)t->ne[0] > max_cols) max_cols = (int64_t)t->ne[0];
    }
    row = malloc(((size_t)max_cols + 1) * sizeof(float));
    uint8_t *qrow = malloc(((size_t)max_cols + 1) * sizeof(float));
    char *tmp = malloc(strlen(out_path) + 8);
    if (!row || !qrow || !tmp) {
        free(qrow);
        free(tmp);
        s = fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
        goto done;
    }
    sprintf(tmp, "%s.tmp", out_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = fail_with(GPT2_E_IO, err, err_len, "%s: %s", out_path, strerror(errno));
        free(qrow);
        free(tmp);
        goto done;
    }
    /* llama.cpp's general.file_type numbering */
    uint32_t ftype = type == GPT2_TYPE_F32 ? 0 : type == GPT2_TYPE_F16 ? 1
                   : type == GPT2_TYPE_Q8_0 ? 7 : 32;
    bool ok = write_u32(f, GGUF_MAGIC) && write_u32(f, 3) && write_u64(f, g->n_tensors);
    bool has_ftype = gguf_find(g, "general.file_type") != NULL;
    ok = ok && write_u64(f, g->n_kv + (has_ftype ? 0 : 1));
    uint64_t pos = 24;
    for (uint64_t i = 0; ok && i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (kv->key_len == 17 && memcmp(kv->key, "general.file_type", 17) == 0) continue;
        ok = write_all(f, kv->raw, (size_t)kv->raw_len);
        pos += kv->raw_len;
    }
    ok = ok && write_u64(f, 17) && write_all(f, "general.file_type", 17) &&
         write_u32(f, GGUF_U32) && write_u32(f, ftype);
    pos += 8 + 17 + 4 + 4;
    uint64_t off = 0;
    for (uint64_t i = 0; ok && i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        ok = write_u64(f, t->name_len) && write_all(f, t->name, (size_t)t->name_len) &&
             write_u32(f, t->n_dims);
        for (uint32_t d = 0; ok && d < t->n_dims; d++) ok = write_u64(f, t->ne[d]);
        ok = ok && write_u32(f, types[i]) && write_u64(f, off);
        pos += 8 + t->name_len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += sizes[i] + (g->alignment - sizes[i] % g->alignment) % g->alignment;
    }
    ok = ok && write_pad(f, pos, g->alignment);
    for (uint64_t i = 0; ok && i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (types[i] == t->type) {
            ok = write_all(f, t->data, (size_t)t->nbytes);
        } else {
            matrix w = {t->data, (gpt2_type)t->type, (int64_t)t->ne[1], (int64_t)t->ne[0],
                        (size_t)(t->nbytes / t->ne[1])};
            size_t out_row = (size_t)(sizes[i] / t->ne[1]);
            for (int64_t r = 0; ok && r < w.rows; r++) {
                dequantize_row(&w, r, row);
                quantize_row(row, w.cols, type, qrow);
                ok = write_all(f, qrow, out_row);
            }
        }
        ok = ok && write_pad(f, sizes[i], g->alignment);
    }
    if (fclose(f) != 0) ok = false;
    if (ok && rename(tmp, out_path) != 0) ok = false;
    if (!ok) {
        s = fail_with(GPT2_E_IO, err, err_len, "%s: write failed: %s", out_path, strerror(errno));
        remove(tmp);
    }
    free(qrow);
    free(tmp);
done:
    free(types);
    free(sizes);
    free(row);
    gpt2_free(m);
    return s;
}

