/* gpt2.c — GPT-2 inference on the CPU in one file of C11 (libc, libm, POSIX threads).
 *
 * Text goes in, is split into tokens, each token becomes a vector, the vectors flow through
 * a stack of transformer blocks, and the last vector scores every token of the vocabulary as
 * the next one; one is chosen and the loop repeats. This file follows that data, top to
 * bottom. Search for a tag (e.g. "§4") to jump to a section:
 *
 *   §0 Basics        status strings, checked arithmetic, half floats, what the appendices offer
 *   §1 Model file    GGUF parsing and validation, mmap; the weights as typed matrices
 *   §2 Tokenizer     text <-> ids: byte alphabet, pre-tokenizer, BPE merges
 *   §3 The math      weight types, the kernel table, the plain scalar kernels every fast path
 *                    must equal, layernorm, GELU, softmax, the matrix multiplication driver
 *   §4 Transformer   embeddings, blocks (masked self-attention + MLP), KV cache, forward()
 *   §5 Decoding      logits processors, greedy, sampling
 *   §6 Generation    the autoregressive loop, stop conditions, streaming, beam search
 *   §A SIMD kernels  the fast versions of §3's kernels per instruction set (x86: AVX2,
 *                    AVX-512), and the choice of one at run time
 *   §B Thread pool   the workers that split each matrix multiplication by rows
 *   §C Tools         rewriting a model with other weight types; a memory bandwidth probe
 *   §D Quantized     ggml's 4-, 5- and 6-bit block formats (q4_0 ... q6_K): layouts, exact
 *      formats       dequantization, quantizers, llama.cpp's recipes, their dot products
 *
 * A first reading: forward() in §4 (the whole model on one screen), then what it calls —
 * matmul_reference() and attention_head_reference() in §3 and §4 are the plain versions of
 * the two operations that do the work — then gpt2_generate_ex() in §6 and the decoding
 * strategies of §5; §2 for how text becomes ids. The appendices are for speed only: nothing
 * in §0-§6 depends on how they do their work, and the tests hold every fast kernel to the
 * plain one it replaces.
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
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE /* with _POSIX_C_SOURCE alone, macOS hides sysctlbyname */
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

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#define GPT2_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>  /* getauxval(AT_HWCAP): what the kernel reports of the CPU */
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h> /* sysctlbyname("hw.optional.arm.FEAT_DotProd") */
#endif
#endif

/* ==========================================================================================
 * §0 Basics: status strings, error messages, checked arithmetic, half floats
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

/* Buffers that kernels stream through start on a cache line (64 bytes): a vector load that
   straddles two lines costs two. */
static void *alloc64(size_t bytes) {
    if (bytes > SIZE_MAX - 64) return NULL;
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* ---- what the appendices provide ---------------------------------------------------------
 * The story below calls these; how they do it is in the appendices at the end of the file. */

/* §B: a pool of n threads (the caller is thread 0). pool_run(fn, arg) runs fn(arg, i, n) on
   every thread i and returns when all are done. */
typedef struct pool pool;
typedef void (*task_fn)(void *arg, int ith, int nth);
static pool *pool_new(int n);
static void pool_free(pool *p);
static void pool_run(pool *p, task_fn fn, void *arg);
static int pool_threads(const pool *p);
/* the share [*lo, *hi) of n items for thread ith of nth, in multiples of `grain` */
static void split_range(int64_t n, int64_t grain, int ith, int nth, int64_t *lo, int64_t *hi);

/* §A: the kernel table for a path name (NULL: $GPT2_KERNELS, else the best this CPU runs) */
typedef struct kernel_table kernel_table;
static gpt2_status kernels_select(const char *name, const kernel_table **out, char *why, size_t why_len);
static const char *kernels_name(const kernel_table *kt); /* §3 */

/* The plain reference versions of the fast code are called by the tests, not the engine. */
#if defined(__GNUC__) || defined(__clang__)
#define REFERENCE __attribute__((unused))
#else
#define REFERENCE
#endif

/* ==========================================================================================
 * §1 Model file: GGUF
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

static bool cur_take(cursor *cur, void *dst, size_t n) {
    if ((size_t)(cur->end - cur->p) < n) return false;
    if (dst) memcpy(dst, cur->p, n);
    cur->p += n;
    return true;
}
static bool cur_u32(cursor *cur, uint32_t *v) {
    uint8_t b[4];
    if (!cur_take(cur, b, 4)) return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}
static bool cur_u64(cursor *cur, uint64_t *v) {
    uint32_t lo, hi;
    if (!cur_u32(cur, &lo) || !cur_u32(cur, &hi)) return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
}
/* A string in place: *s points into the file, not NUL-terminated. */
static bool cur_str(cursor *cur, const char **s, uint64_t *len) {
    if (!cur_u64(cur, len) || *len > (uint64_t)(cur->end - cur->p)) return false;
    *s = (const char *)cur->p;
    cur->p += *len;
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

/* Bytes of tensor data of a ggml type, n_elems numbers in rows of row_len; false if the type
   is not one we read, the rows do not fill whole blocks of it, or the size overflows. */
static int kq_block_size(int type);
static int kq_block_bytes(int type);
static bool ggml_type_nbytes(uint32_t type, uint64_t n_elems, uint64_t row_len, uint64_t *out) {
    if (type > 31) return false;
    int bs = kq_block_size((int)type), bb = kq_block_bytes((int)type);
    if (!bs || row_len % (uint64_t)bs) return false;
    return mul_ok(n_elems / (uint64_t)bs, (uint64_t)bb, out);
}

const char *gpt2_type_name(gpt2_type t) {
    switch (t) {
    case GPT2_TYPE_F32: return "f32";
    case GPT2_TYPE_F16: return "f16";
    case GPT2_TYPE_BF16: return "bf16";
    case GPT2_TYPE_Q8_0: return "q8_0";
    case GPT2_TYPE_Q4_0: return "q4_0";
    case GPT2_TYPE_Q4_1: return "q4_1";
    case GPT2_TYPE_Q5_0: return "q5_0";
    case GPT2_TYPE_Q5_1: return "q5_1";
    case GPT2_TYPE_Q2_K: return "q2_K";
    case GPT2_TYPE_Q3_K: return "q3_K";
    case GPT2_TYPE_Q4_K: return "q4_K";
    case GPT2_TYPE_Q5_K: return "q5_K";
    case GPT2_TYPE_Q6_K: return "q6_K";
    }
    return "?";
}

/* Skips (and validates) one value of the given type; arrays may nest a few levels. */
static bool gguf_skip_value(cursor *cur, uint32_t type, int depth) {
    if (type >= GGUF_NTYPES) return false;
    if (type == GGUF_STRING) {
        const char *s;
        uint64_t len;
        return cur_str(cur, &s, &len);
    }
    if (type == GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (depth > 3 || !cur_u32(cur, &et) || !cur_u64(cur, &n) || et >= GGUF_NTYPES) return false;
        if (et == GGUF_STRING || et == GGUF_ARRAY) {
            /* each element takes at least 8 bytes: a count past that is a lie */
            if (n > (uint64_t)(cur->end - cur->p) / (et == GGUF_STRING ? 8 : 12)) return false;
            for (uint64_t i = 0; i < n; i++)
                if (!gguf_skip_value(cur, et, depth + 1)) return false;
            return true;
        }
        uint64_t nbytes;
        if (!mul_ok(n, gguf_scalar_size[et], &nbytes)) return false;
        return cur_take(cur, NULL, nbytes);
    }
    return cur_take(cur, NULL, gguf_scalar_size[type]);
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
    cursor cur = {g->base, g->base + g->size};
    uint32_t magic;
    if (!cur_u32(&cur, &magic) || magic != GGUF_MAGIC)
        return fail_with(GPT2_E_FORMAT, err, err_len, "not a GGUF file (bad magic)");
    if (!cur_u32(&cur, &g->version))
        return fail_with(GPT2_E_FORMAT, err, err_len, "truncated GGUF header");
    if (g->version < 2 || g->version > 3)
        return fail_with(GPT2_E_UNSUPPORTED, err, err_len, "GGUF version %u is not supported (2 or 3)",
                    g->version);
    if (!cur_u64(&cur, &g->n_tensors) || !cur_u64(&cur, &g->n_kv))
        return fail_with(GPT2_E_FORMAT, err, err_len, "truncated GGUF header");
    /* The smallest key/value takes 13 bytes and the smallest tensor description 28: counts
       beyond what the file could hold are rejected before anything is allocated. */
    uint64_t left = (uint64_t)(cur.end - cur.p);
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
        kv->raw = cur.p;
        if (!cur_str(&cur, &kv->key, &kv->key_len) || !cur_u32(&cur, &kv->type))
            return fail_with(GPT2_E_FORMAT, err, err_len, "truncated metadata entry %llu",
                        (unsigned long long)i);
        if (kv->type >= GGUF_NTYPES)
            return fail_with(GPT2_E_FORMAT, err, err_len, "metadata '%.*s' has unknown type %u",
                        (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key, kv->type);
        const uint8_t *start = cur.p;
        if (kv->type == GGUF_ARRAY) {
            cursor peek = cur;
            if (!cur_u32(&peek, &kv->elem_type) || !cur_u64(&peek, &kv->count))
                return fail_with(GPT2_E_FORMAT, err, err_len, "truncated metadata '%.*s'",
                            (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key);
            kv->val = peek.p;
        } else {
            kv->val = start;
        }
        if (!gguf_skip_value(&cur, kv->type, 0))
            return fail_with(GPT2_E_FORMAT, err, err_len, "metadata '%.*s' is truncated or malformed",
                        (int)(kv->key_len > 64 ? 64 : kv->key_len), kv->key);
        kv->raw_len = (uint64_t)(cur.p - kv->raw);
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
        if (!cur_str(&cur, &t->name, &t->name_len) || !cur_u32(&cur, &t->n_dims))
            return fail_with(GPT2_E_FORMAT, err, err_len, "truncated tensor description %llu",
                        (unsigned long long)i);
        int nl = (int)(t->name_len > 64 ? 64 : t->name_len);
        if (t->n_dims < 1 || t->n_dims > 4)
            return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s' has %u dimensions", nl,
                        t->name, t->n_dims);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (!cur_u64(&cur, &t->ne[d]))
                return fail_with(GPT2_E_FORMAT, err, err_len, "truncated tensor description '%.*s'",
                            nl, t->name);
            if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40) || !mul_ok(n, t->ne[d], &n))
                return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s' has a bad dimension",
                            nl, t->name);
        }
        for (uint32_t d = t->n_dims; d < 4; d++) t->ne[d] = 1;
        if (!cur_u32(&cur, &t->type) || !cur_u64(&cur, &t->offset))
            return fail_with(GPT2_E_FORMAT, err, err_len, "truncated tensor description '%.*s'", nl,
                        t->name);
        if (t->type > 31 || !kq_block_size((int)t->type))
            return fail_with(GPT2_E_UNSUPPORTED, err, err_len,
                        "tensor '%.*s' has type %u; supported: f32, f16, bf16, q8_0, q4_0, q4_1, "
                        "q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K", nl, t->name, t->type);
        if (!ggml_type_nbytes(t->type, n, t->ne[0], &t->nbytes))
            return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s': rows of %llu do not fit "
                        "its type", nl, t->name, (unsigned long long)t->ne[0]);
        if (t->offset % g->alignment)
            return fail_with(GPT2_E_FORMAT, err, err_len, "tensor '%.*s' is not aligned", nl, t->name);
    }
    uint64_t header_end = (uint64_t)(cur.p - g->base);
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

/* One transformer block's weights: the GGUF tensor names, and Hugging Face's (h.N.*) */
typedef struct {
    const float *ln1_w, *ln1_b;   // (C)      attn_norm         ln_1
    matrix qkv;                   // (3C, C)  attn_qkv          attn.c_attn: rows q | k | v, heads contiguous
    const float *qkv_b;           // (3C)
    matrix attn_out;              // (C, C)   attn_output       attn.c_proj
    const float *attn_out_b;      // (C)
    const float *ln2_w, *ln2_b;   // (C)      ffn_norm          ln_2
    matrix fc;                    // (F, C)   ffn_up            mlp.c_fc
    const float *fc_b;            // (F)
    matrix proj;                  // (C, F)   ffn_down          mlp.c_proj
    const float *proj_b;          // (C)
} block_weights;

/* The tokenizer's tables (§2). */
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
    const kernel_table *kt;       //         the kernels chosen for this CPU (§3, §A)
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
    const gpt2_config *cf = &m->cfg;
    int64_t C = cf->n_embd, F = m->n_ff, V = cf->n_vocab, P = cf->n_ctx, L = cf->n_layer;
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
    gpt2_status s = kernels_select(path_name, &m->kt, why, why_len);
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
    gpt2_config none = {0, 0, 0, 0, 0, -1};
    return m ? m->cfg : none;
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
    i.kernels = kernels_name(m->kt);
    return i;
}

/* ---- what the file holds (gpt2 info) ------------------------------------------------------ */

size_t gpt2_tensor_count(const gpt2_model *m) { return m ? (size_t)m->gguf.n_tensors : 0; }

gpt2_status gpt2_tensor_get(const gpt2_model *m, size_t i, gpt2_tensor_info *out) {
    if (!m || !out || i >= m->gguf.n_tensors) return GPT2_E_ARG;
    const gguf_tensor *t = &m->gguf.tensors[i];
    out->name = t->name;
    out->name_len = (size_t)t->name_len;
    out->type = (gpt2_type)t->type;
    out->n_dims = (int32_t)t->n_dims;
    for (int d = 0; d < 4; d++) out->ne[d] = (int64_t)t->ne[d];
    out->bytes = t->nbytes;
    out->offset = m->gguf.data_offset + t->offset;
    return GPT2_OK;
}

size_t gpt2_metadata_count(const gpt2_model *m) { return m ? (size_t)m->gguf.n_kv : 0; }

/* one scalar of GGUF type `type` at p, as text */
static int format_scalar(char *buf, size_t cap, uint32_t type, const uint8_t *p) {
    switch (type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        return snprintf(buf, cap, "%llu", (unsigned long long)rd_le(p, gguf_scalar_size[type]));
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: {
        int n = gguf_scalar_size[type];
        uint64_t v = rd_le(p, n);
        if (n < 8 && (v >> (8 * n - 1) & 1)) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        return snprintf(buf, cap, "%lld", (long long)v);
    }
    case GGUF_F32: {
        uint32_t b = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &b, 4);
        return snprintf(buf, cap, "%g", (double)f);
    }
    case GGUF_F64: {
        uint64_t b = rd_le(p, 8);
        double f;
        memcpy(&f, &b, 8);
        return snprintf(buf, cap, "%g", f);
    }
    case GGUF_BOOL: return snprintf(buf, cap, "%s", p[0] ? "true" : "false");
    case GGUF_STRING: {
        uint64_t len = rd_le(p, 8);
        return snprintf(buf, cap, "%.*s", (int)(len > 200 ? 200 : len), (const char *)p + 8);
    }
    default: return snprintf(buf, cap, "?");
    }
}

static const char *gguf_type_label(uint32_t t) {
    static const char *const names[GGUF_NTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                   "bool", "string", "array", "u64", "i64", "f64"};
    return t < GGUF_NTYPES ? names[t] : "?";
}

gpt2_status gpt2_metadata_get(const gpt2_model *m, size_t i, const char **key, size_t *key_len,
                              char *value, size_t cap) {
    if (cap && value) value[0] = '\0';
    if (!m || !key || !key_len || (!value && cap) || i >= m->gguf.n_kv) return GPT2_E_ARG;
    const gguf_kv *kv = &m->gguf.kv[i];
    *key = kv->key;
    *key_len = (size_t)kv->key_len;
    if (!cap) return GPT2_OK;
    if (kv->type != GGUF_ARRAY) {
        format_scalar(value, cap, kv->type, kv->val);
        return GPT2_OK;
    }
    /* an array: its length and type, then the first few elements (validated at load) */
    size_t used = (size_t)snprintf(value, cap, "[%llu %s]", (unsigned long long)kv->count,
                                   gguf_type_label(kv->elem_type));
    if (kv->elem_type == GGUF_ARRAY) return GPT2_OK;
    cursor cur = {kv->val, m->gguf.base + m->gguf.size};
    for (uint64_t e = 0; e < kv->count && e < 4 && used + 1 < cap; e++) {
        const uint8_t *at = cur.p;
        if (!gguf_skip_value(&cur, kv->elem_type, 1)) break;
        used += (size_t)snprintf(value + used, cap - used, " ");
        if (used + 1 >= cap) break;
        used += (size_t)format_scalar(value + used, cap - used, kv->elem_type, at);
    }
    if (kv->count > 4 && used + 5 < cap) snprintf(value + used, cap - used, " ...");
    return GPT2_OK;
}

/* ==========================================================================================
 * §2 Tokenizer: GPT-2's byte-level BPE
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
    uint32_t v, min;
    if (b >= 0xC2 && b <= 0xDF) { len = 2; v = b & 0x1F; min = 0x80; }
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; v = b & 0x0F; min = 0x800; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; v = b & 0x07; min = 0x10000; }
    else { *cp = -1; return 1; }
    if (len > n) { *cp = -1; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = -1; return 1; }
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { *cp = -1; return 1; }
    *cp = (int32_t)v;
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
    tchar ch = {pos, 0, CH_O, -1};
    if (pos >= t.n) return ch;
    ch.len = utf8_next(t.s + pos, t.n - pos, &ch.cp);
    ch.cls = char_class(ch.cp);
    return ch;
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
    tchar ch = char_at(t, pos);
    /* ` ?X+` for X = letters, numbers, other: an optional single space, then a run of one class */
    tchar first = ch;
    if (ch.cp == ' ' && pos + 1 < t.n) {
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
    size_t end = pos + ch.len, last = pos;
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

/* A beam_cand merge, ordered by (rank, position). Entries go stale when a neighbour merges;
   they are checked when popped. */
typedef struct {
    uint32_t rank;
    int32_t pos;             /* index of the left symbol */
    int32_t left, right;     /* the ids it was made for */
} bpe_cand;

static bool bpe_cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void bpe_heap_push(bpe_cand *h, size_t *n, bpe_cand cand) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bpe_cand_less(&cand, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = cand;
}

static bpe_cand bpe_heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    if (*n == 0) return top;
    for (;;) { /* sift `last` down from the root */
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bpe_cand *best = &last;
        if (l < *n && bpe_cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && bpe_cand_less(&h[r], best)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = last;
    return top;
}

/* Scratch for BPE, grown as pieces need it; and, for gpt2_tokenize_trace, where to show
   each step (trace NULL: nothing is shown and nothing costs). */
typedef struct {
    bpe_sym *sym;
    bpe_cand *heap;
    size_t cap;
    gpt2_bpe_observer trace;
    void *trace_user;
    const uint8_t *text;     /* the whole text, for the pieces' offsets */
    int32_t *trace_ids;      /* (cap) the piece's current symbols */
} bpe_scratch;

/* shows the piece s[0..n) as its current symbols: step 0 is the bytes, step k follows the
   k-th merge (of rank `rank`) */
static void trace_step(bpe_scratch *w, const uint8_t *s, size_t n, const bpe_sym *sym,
                       int32_t step, int32_t rank, int special) {
    size_t k = 0;
    if (sym)
        for (int32_t i = 0; i >= 0; i = sym[i].next) w->trace_ids[k++] = sym[i].id;
    gpt2_bpe_event e = {(size_t)(s - w->text), n, step, rank, special, w->trace_ids, k};
    w->trace(w->trace_user, &e);
}

static void push_pair(const tokenizer *t, bpe_sym *sym, bpe_cand *heap, size_t *nh, int32_t i) {
    int32_t j = sym[i].next;
    uint32_t rank;
    int32_t id;
    if (j >= 0 && merge_lookup(t, sym[i].id, sym[j].id, &rank, &id)) {
        bpe_cand cand = {rank, i, sym[i].id, sym[j].id};
        bpe_heap_push(heap, nh, cand);
    }
}

/* Emits the ids of one piece. Popping candidates in (rank, position) order merges the lowest
   ranked pair everywhere, left to right, before any higher one, as GPT-2's encoder.py does
   (a merge that builds on token AB always ranks after the merge that made AB). Each pass
   costs O(log n), so a megabyte-long word is no problem. */
static gpt2_status bpe_piece(const tokenizer *t, const uint8_t *s, size_t n, bpe_scratch *w,
                             int32_t *ids, size_t cap, size_t *n_ids) {
    if (n == 1 && !w->trace) {
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
        int32_t *tids = w->trace ? realloc(w->trace_ids, cap2 * sizeof *tids) : w->trace_ids;
        if (tids) w->trace_ids = tids;
        if (!sym || !heap || (w->trace && !tids)) return GPT2_E_NOMEM;
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
    int32_t step = 0;
    if (w->trace) trace_step(w, s, n, sym, step, -1, 0);
    while (nh > 0) {
        bpe_cand cand = bpe_heap_pop(heap, &nh);
        int32_t i = cand.pos, j = sym[i].next;
        /* stale if the left symbol was absorbed or either side changed since the push */
        if (sym[i].id != cand.left || j < 0 || sym[j].id != cand.right) continue;
        uint32_t rank;
        int32_t merged;
        merge_lookup(t, cand.left, cand.right, &rank, &merged);
        sym[i].id = merged;
        sym[i].next = sym[j].next;
        if (sym[j].next >= 0) sym[sym[j].next].prev = i;
        sym[j].id = -1; /* absorbed */
        if (sym[i].prev >= 0) push_pair(t, sym, heap, &nh, sym[i].prev);
        push_pair(t, sym, heap, &nh, i); /* each merge pops one entry and pushes at most two:
                                             the heap never holds more than 2n entries */
        if (w->trace) trace_step(w, s, n, sym, ++step, (int32_t)rank, 0);
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

static gpt2_status tokenize_text(const gpt2_model *m, const char *text, size_t len, int allow_special,
                            int32_t *ids, size_t cap, size_t *n_ids, gpt2_bpe_observer trace,
                            void *trace_user) {
    if (n_ids) *n_ids = 0;
    if (!m || !n_ids || (!text && len) || (!ids && cap)) return GPT2_E_ARG;
    const tokenizer *t = &m->tok;
    const uint8_t *s = (const uint8_t *)text;
    bpe_scratch w = {NULL, NULL, 0, trace, trace_user, s, NULL};
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
            if (trace) {
                gpt2_bpe_event e = {seg_end, sp_len, 0, -1, 1, &sp_id, 1};
                trace(trace_user, &e);
            }
        }
        pos = seg_end + sp_len;
    }
    free(w.sym);
    free(w.heap);
    free(w.trace_ids);
    if (st) return st;
    *n_ids = count;
    return count > cap ? GPT2_E_BUFFER : GPT2_OK;
}

gpt2_status gpt2_tokenize(const gpt2_model *m, const char *text, size_t len, int allow_special,
                          int32_t *ids, size_t cap, size_t *n_ids) {
    return tokenize_text(m, text, len, allow_special, ids, cap, n_ids, NULL, NULL);
}

gpt2_status gpt2_tokenize_trace(const gpt2_model *m, const char *text, size_t len,
                                int allow_special, gpt2_bpe_observer fn, void *user) {
    if (!fn) return GPT2_E_ARG;
    size_t n;
    gpt2_status st = tokenize_text(m, text, len, allow_special, NULL, 0, &n, fn, user);
    return st == GPT2_E_BUFFER ? GPT2_OK : st; /* no ids were asked for */
}

gpt2_status gpt2_token_bytes(const gpt2_model *m, int32_t id, const char **bytes, size_t *len) {
    if (bytes) *bytes = NULL;
    if (len) *len = 0;
    if (!m || !bytes || !len || id < 0 || id >= m->cfg.n_vocab) return GPT2_E_ARG;
    *bytes = (const char *)m->tok.bytes + m->tok.tok_off[id];
    *len = m->tok.tok_off[id + 1] - m->tok.tok_off[id];
    return GPT2_OK;
}

gpt2_status gpt2_detokenize(const gpt2_model *m, const int32_t *ids, size_t n, char *buf,
                            size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!m || !len || (!ids && n) || (!buf && cap)) return GPT2_E_ARG;
    for (size_t i = 0; i < n; i++) /* every id first: nothing is written for a bad one */
        if (ids[i] < 0 || ids[i] >= m->cfg.n_vocab) return GPT2_E_ARG;
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
    cursor cur = {tokens->val, g->base + g->size};
    for (int32_t i = 0; i < V; i++) {
        const char *s = NULL;
        uint64_t len = 0;
        if (!cur_str(&cur, &s, &len)) return fail_with(GPT2_E_FORMAT, err, err_len, "bad token %d", i);
        total += len;
    }
    if (total > UINT32_MAX) return fail_with(GPT2_E_FORMAT, err, err_len, "vocabulary too large");
    t->tok_off = malloc(((size_t)V + 1) * sizeof *t->tok_off);
    t->bytes = malloc(total ? (size_t)total : 1);
    if (!t->tok_off || !t->bytes) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    cur.p = tokens->val;
    uint32_t off = 0;
    for (int32_t i = 0; i < V; i++) {
        const char *s = NULL;
        uint64_t len = 0;
        size_t bl;
        if (!cur_str(&cur, &s, &len)) return fail_with(GPT2_E_FORMAT, err, err_len, "bad token %d", i);
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
    cur.p = merges->val;
    for (uint64_t r = 0; r < merges->count; r++) {
        const char *s = NULL;
        uint64_t len = 0;
        if (!cur_str(&cur, &s, &len)) break; /* validated by the parser: cannot happen */
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
 * §3 The math: weight types, the kernel table, the plain kernels, the matrix multiplication
 * ==========================================================================================
 * Nearly all of the work is one operation: the dot product of a weight row w (cols numbers,
 * stored as f32, f16, bf16 or q8_0) with an activation row x (cols floats). A matrix-vector
 * product is `rows` of them; a matrix-matrix product (a batch of T tokens) is T * rows.
 * matmul_reference() below is that operation in three loops; everything after it in this
 * section computes the same thing faster.
 *
 * Weight types, per row of n numbers:
 *   f32   n floats                       f16   n IEEE half floats (1+5+10 bits)
 *   bf16  n bfloat16 (the top 16 bits of a float32)
 *   q8_0  n/32 blocks of { f16 scale d; int8 q[32] }: value i of a block is d * q[i]
 * q8_0 rows meet x quantized the same way, so that the products are int8 x int8 (below).
 *
 * The driver. matmul_rows (the end of this section) runs the tiles over a share of a
 * matrix's rows; §4's matmul() gives each of a context's threads its share.
 *
 * The kernel table. The few operations that take the time (dot products in tiles of up to 4
 * weight rows x 4 tokens, GELU, the exponentials of a softmax, attention's weighted sum of
 * value vectors) are reached through a table of function pointers. This section defines
 * the table and fills it with plain, portable C (the "scalar" path): the definition every
 * fast path must equal up to rounding. The SIMD paths (§A) fill the same table; one is
 * chosen per model from what the CPU runs, and the tests compare each with this one.
 *
 * Determinism. Each dot product is computed by one thread, with one fixed sequence of
 * operations: a vector of partial sums (the "lanes") over the row in order, then a fixed
 * reduction of the lanes. Computing 1 or 4 rows at once, 1 or 512 tokens at once, on 1 or
 * 8 threads, every output element gets exactly the same bits. (The scalar, AVX2 and AVX-512
 * paths have different lane counts, so they agree with each other only to rounding.)
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


struct kernel_table {
    const char *name;            /* as gpt2_model_info.kernels reports it */
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
    int kq_isa;          /* KQ_ISA_*: the tiles of the formats of §D on this path */
    int q8_rows;         /* weight rows dot_q8 takes at once (4; 8 where it packs them), with
                            up to MATMUL_WIDE_TOKENS tokens where it takes 8 */
};

static const char *kernels_name(const kernel_table *kt) { return kt->name; }

static int wt_index(gpt2_type t) {
    switch (t) {
    case GPT2_TYPE_F16: return WT_F16;
    case GPT2_TYPE_BF16: return WT_BF16;
    default: return WT_F32;
    }
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* ---- the reference: matrix multiplication, the plain way ----------------------------------
 * out (T, rows) = x (T, cols) @ W^T + bias, W being the matrix of (rows, cols) weights: three
 * loops, one weight row at a time decoded to floats (dequantize_row, below). Nothing in the
 * forward pass calls this; it is the definition the tiled driver (matmul_rows, at the end of
 * this section) is tested against, on every kernel path and weight type. */
REFERENCE static void matmul_reference(float *out, const float *x, const matrix *w, const float *bias, int T) {
    float *row = malloc((size_t)w->cols * sizeof *row);   // (cols) one row of W as floats
    if (!row) return;
    for (int64_t r = 0; r < w->rows; r++) {               // each output: a row of W
        dequantize_row(w, r, row);
        for (int t = 0; t < T; t++) {                     // each token
            float sum = bias ? bias[r] : 0.0f;
            for (int64_t i = 0; i < w->cols; i++)         // dot(x[t], W[r])
                sum += x[(size_t)t * (size_t)w->cols + (size_t)i] * row[i];
            out[(size_t)t * (size_t)w->rows + (size_t)r] = sum;
        }
    }
    free(row);
}

/* ---- the scalar path: dot-product tiles with 8 lanes, reduced pairwise --------------------
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
 * as q8_0's rounding of the weights, so accuracy drops a little (README: "The converter").
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
   versions produce the same bytes. This is not the weights' quantizer (quantize_row, §C):
   activations are rounded as ggml's vectorised quantizer rounds them (x * (127 / max),
   halves to even), weights as ggml's reference quantizer does (x * (1 / d), halves away from
   zero), each to stay interchangeable with llama.cpp where it matters: file bytes for the
   weights, the same integer sums for the activations. */
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
                /* two statements: no compiler may fuse the multiply into the add (the AVX2
                   path rounds both, as here) */
                float p = f16_to_f32(rd16(blk)) * gr->d[8 * half] * (float)s;
                acc[half] += p;
            }
            out[(size_t)t * ldo + r] = acc[0] + acc[1];
        }
}

/* ---- vector math: GELU, softmax exponentials, attention's weighted sum ------------------- */

/* GPT-2's GELU ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). The SIMD paths
   compute it as x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3), the same function. */
#define GELU_SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_CUBIC 0.044715f
static float gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)));
}

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

/* ---- the other quantized formats (§D) ------------------------------------------------------
 * Files on the Hub also hold ggml's 4-, 5- and 6-bit formats, in any mix per tensor: blocks
 * of 32 numbers (q4_0, q4_1, q5_0, q5_1: a scale, maybe a minimum, small integers) and
 * "K" super-blocks of 256 (q2_K ... q6_K: 8 or 16 sub-blocks with their own quantized scales).
 * §D holds their layouts, their dequantization (bit for bit ggml's), quantizers, and dot
 * products that, like q8_0's, meet activations quantized to int8: the 32-number formats
 * read the q8_group rows of q8_0 (below), the K formats one q8k_record per 256 numbers. The
 * kernel table names the instruction set their tiles use (kq_isa). */
enum kq_isa {
    KQ_ISA_SCALAR = 0,
    KQ_ISA_AVX2,        /* AVX2 + FMA + F16C */
    KQ_ISA_AVXVNNI,     /* the same + AVX-VNNI (VEX vpdpbusd / vpdpwssd on 256 bits) */
    KQ_ISA_AVX512,      /* AVX-512 F/BW/VL (+ AVX2, FMA, F16C) */
    KQ_ISA_AVX512VNNI,  /* the same + AVX512_VNNI */
    KQ_ISA_COUNT
};

/* activations for the K formats: per 256 numbers (as ggml's Q8_K) */
typedef struct q8k_record {
    int8_t q[256];      /* nearest(x * (-127 / m)), m the number of largest magnitude */
    int16_t bsum[16];   /* the sums of q over each 16 numbers */
    float d;            /* m / -127 (0 for an all-zero block) */
    uint8_t pad[28];    /* to 320 bytes */
} q8k_record;

/* a tile as dot_tile_fn, over quantized activation rows ldx_bytes apart */
typedef void (*kq_dot_fn)(const uint8_t *w, size_t row_bytes, int nr, const void *xq,
                          size_t ldx_bytes, int nt, int64_t n, float *out, size_t ldo);

/* file types, numbered as llama.cpp's llama_ftype (general.file_type), for the recipes */
enum kq_ftype {
    KQ_FT_F32 = 0, KQ_FT_F16 = 1, KQ_FT_Q4_0 = 2, KQ_FT_Q4_1 = 3, KQ_FT_Q8_0 = 7,
    KQ_FT_Q5_0 = 8, KQ_FT_Q5_1 = 9, KQ_FT_Q2_K = 10, KQ_FT_Q3_K_M = 12, KQ_FT_Q4_K_M = 15,
    KQ_FT_Q5_K_M = 17, KQ_FT_Q6_K = 18, KQ_FT_BF16 = 32
};
#define KQ_KEEP (-1) /* kq_recipe: leave the tensor as it is */

static int kq_row_bytes(int type, int64_t n, size_t *out);
static int kq_dequantize_row(int type, const uint8_t *src, int64_t n, float *out);
static int kq_quantize_row(int type, const float *x, int64_t n, uint8_t *out);
static bool kq_is_k(int type);
REFERENCE static int kq_quantize_act(int type, const float *x, int64_t n, void *out); /* scalar; tests */
static void kq_quantize_k8_on(int isa, const float *x, int64_t n, q8k_record *y); /* a path's code */
static void kq_residual_k8_on(int isa, const float *x, const q8k_record *y, int64_t n, float *r);
static kq_dot_fn kq_dot_for(int type, int isa);  /* the tile of a type on a path, or a lesser one */
static int kq_recipe(int ftype, const char *tensor_name, int layer, int n_layer, int64_t rows,
                     int64_t cols);

static const kernel_table kernels_scalar = {
    "scalar", {dot_f32_scalar, dot_f16_scalar, dot_bf16_scalar}, dot_q8_0_scalar, quantize_q8_scalar,
    gelu_scalar, exp_sum_scalar, weighted_sum_scalar, weighted_sum4_scalar, KQ_ISA_SCALAR, 4};

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
    default: /* the formats of §D, exactly as ggml decodes them */
        kq_dequantize_row((int)w->type, p, w->cols, out);
        break;
    }
}

/* ---- the other operations of the forward pass: layernorm, softmax ------------------------ */

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

/* x = exp(x - max x) in place; returns their sum. The softmax of attention, of sampling and
   of beam search's log-probabilities all divide by (or take the log of) this sum. top-p
   (§5) and perplexity (§4) compute theirs as Hugging Face and the definition of the loss do,
   in the order and precision those fix. */
static float exps_and_sum(const kernel_table *kt, float *x, int32_t n) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return kt->exp_sum(x, n, mx);
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
#define MATMUL_WIDE_TOKENS 64 /* activation rows per call to a tile of 8 or 16 rows (tile_rows) */

/* The weight rows a quantized tile takes at once: 4, or 8 or 16 where it packs them (q8_0 on
   paths whose kernel_table.q8_rows says so; q4_0 and the K formats on AVX2's tiles of §D, the
   K formats 16 at a time on AVX-512's) */
#define MATMUL_MAX_TILE_ROWS 16
static int tile_rows(const kernel_table *kt, gpt2_type t) {
    const bool ymm = kt->kq_isa == KQ_ISA_AVX2 || kt->kq_isa == KQ_ISA_AVXVNNI;
    const bool zmm = kt->kq_isa == KQ_ISA_AVX512 || kt->kq_isa == KQ_ISA_AVX512VNNI;
    if (t == GPT2_TYPE_Q8_0) return kt->q8_rows;
    if (kq_is_k((int)t) && zmm) return 16;
    if ((t == GPT2_TYPE_Q4_0 || kq_is_k((int)t)) && ymm) return 8;
    return 4;
}
/* out[t][r] for t < T and r in [r0, r1): x is (T, w->cols), out is (T, ldo); for quantized
   weights xq holds x quantized, one row per token ldq bytes apart, or two with two_pass
   (token t's rows 2t and 2t+1, whose products are added).
   Tokens go in chunks whose activations fit in L2 (reused for every weight row); within a
   chunk, tiles of 4 weight rows x 4 activation rows, or where the tiles pack their rows
   (tile_rows) 8 or 16 rows x up to 64 tokens, so the packing is paid once for many. */
static void matmul_rows(const kernel_table *kt, const matrix *w, const float *bias, const float *x,
                        const uint8_t *xq, size_t ldq, bool two_pass, int T, float *out, int64_t ldo,
                        int64_t r0, int64_t r1, epilogue e) {
    dot_tile_fn dot = kt->dot[wt_index(w->type)];
    kq_dot_fn qdot = w->type != GPT2_TYPE_Q8_0 && xq ? kq_dot_for((int)w->type, kt->kq_isa) : NULL;
    const int rows = xq ? tile_rows(kt, w->type) : 4;
    const bool wide = rows > 4; /* 8 or 16 rows x many tokens */
    const uint8_t *base = (const uint8_t *)w->data;
    const size_t cols = (size_t)w->cols;
    const int per = two_pass ? 2 : 1;        /* activation rows per token */
    const int tstep = (wide ? MATMUL_WIDE_TOKENS : 4) / per; /* tokens per tile */
    const int ldd = wide ? rows : 4;         /* floats between two tokens' rows in d */
    size_t token_bytes = xq ? (size_t)per * ldq : cols * sizeof(float);
    int chunk = (int)((MATMUL_X_BUDGET) / token_bytes);
    chunk = chunk < 4 ? 4 : chunk / 4 * 4;
    for (int t0 = 0; t0 < T; t0 += chunk) {
        int t1 = T - t0 < chunk ? T : t0 + chunk;
        /* With a few tokens (beams), float weights leave memory traffic as the limit: then
           tiles of one row and up to 4 tokens read each row in one sequential stream, which
           runs faster than 4 interleaved ones. Quantized tiles do more work per weight row,
           so sharing the activations' loads over 4 rows matters more there (README). */
        const int step = wide ? rows : !xq && t1 - t0 > 1 && t1 - t0 <= 4 ? 1 : 4;
        for (int64_t r = r0; r < r1; r += step) {
            int nr = r1 - r < step ? (int)(r1 - r) : step;
            for (int t = t0; t < t1; t += tstep) {
                int nt = t1 - t < tstep ? t1 - t : tstep;
                const uint8_t *wr = base + (size_t)r * w->row_bytes;
                const uint8_t *xr = xq ? xq + (size_t)(t * per) * ldq : NULL; /* float weights: none */
                float d[MATMUL_WIDE_TOKENS * MATMUL_MAX_TILE_ROWS]; /* (per * nt, ldd) */
                /* plain and GELU outputs go straight into out (the bias follows below) */
                const bool direct = e != EPI_ADD && !two_pass;
                float *dst = direct ? out + (size_t)t * (size_t)ldo + r : d;
                size_t ld = direct ? (size_t)ldo : (size_t)ldd;
                if (qdot) qdot(wr, w->row_bytes, nr, xr, ldq, per * nt, w->cols, dst, ld);
                else if (xq) kt->dot_q8(wr, w->row_bytes, nr, (const q8_group *)(const void *)xr,
                                        ldq / sizeof(q8_group), per * nt, w->cols, dst, ld);
                else dot(wr, w->row_bytes, nr, x + (size_t)t * cols, cols, nt, w->cols, dst, ld);
                if (direct) continue;
                for (int j = 0; j < nt; j++) {
                    float *o = out + (size_t)(t + j) * (size_t)ldo + r;
                    for (int i = 0; i < nr; i++) {
                        float v = two_pass ? d[2 * j * ldd + i] + d[(2 * j + 1) * ldd + i] : d[j * ldd + i];
                        if (e == EPI_ADD) o[i] += v + (bias ? bias[r + i] : 0.0f);
                        else o[i] = v;
                    }
                }
            }
        }
        if (e != EPI_ADD && bias) /* this thread's share of each token's row, contiguous */
            for (int t = t0; t < t1; t++) {
                float *o = out + (size_t)t * (size_t)ldo;
                for (int64_t i = r0; i < r1; i++) o[i] += bias[i];
            }
        if (e == EPI_GELU) /* vectorised, on this thread's share of each token's row */
            for (int t = t0; t < t1; t++) kt->gelu(out + (size_t)t * (size_t)ldo + r0, r1 - r0);
    }
}

typedef struct {
    const kernel_table *kt;
    const matrix *w;
    const float *bias, *x;
    const uint8_t *xq;      /* NULL for float weights */
    size_t ldq;             /* bytes between two quantized rows */
    bool two_pass;          /* two quantized rows per token */
    int T;
    float *out;
    int64_t ldo;
    epilogue e;
    atomic_llong next;      /* the first row no thread has taken yet */
    int64_t chunk;          /* rows a thread takes at a time */
} matmul_task;

/* The split of a matrix multiplication over threads, and the rule that keeps the results the
   same whatever the split: each thread takes a contiguous share of the weight rows (in
   groups of 8) for every token, and every output element is computed by one fixed sequence
   of operations that depends neither on the share its row falls in nor on the tile shape it
   lands in. The dot-product tiles give each (row, token) the bits a 1 x 1 tile gives, the bias
   is one addition per element, and GELU is elementwise with the same vector code for every
   number, so ragged shares at the ends cannot change a bit (a scalar tail in the AVX2 GELU
   once did, with 3, 5, 6 and 7 threads). */
/* Threads take chunks of rows as they come free, not a fixed share each: a thread the
   machine holds back (a busy host core) then costs only its last chunk. Which thread
   computes a row never changes the row's result. */
static void matmul_worker(void *arg, int ith, int nth) {
    matmul_task *a = arg;
    (void)ith;
    (void)nth;
    for (;;) {
        int64_t lo = atomic_fetch_add(&a->next, a->chunk);
        if (lo >= a->w->rows) return;
        int64_t hi = a->w->rows - lo < a->chunk ? a->w->rows : lo + a->chunk;
        matmul_rows(a->kt, a->w, a->bias, a->x, a->xq, a->ldq, a->two_pass, a->T, a->out, a->ldo, lo, hi, a->e);
    }
}

/* Quantized weights meet activations quantized per block: q8_0 and the 32-number formats
   read q8_group rows, the K formats q8k_record rows (§D); one row per token, ldq apart.
   With two_pass (K formats) a token takes two rows: x quantized, then what that left over, r = x - x~
   (each number's rounding, at most half a step of its block), quantized with its own
   scales. x W^T is then the sum of the two rows' products: an error 127 times smaller than
   one row's, for twice the integer work on the same weight loads. */
typedef struct {
    const kernel_table *kt;
    int type;               /* the weights' type */
    const float *x;
    int64_t n;
    int T;
    uint8_t *xq;
    size_t ldq;
    float *resid;           /* (T, n) scratch for two_pass; NULL without */
} quantize_task;

static void quantize_row_act(const quantize_task *a, const float *x, uint8_t *row) {
    if (kq_is_k(a->type)) kq_quantize_k8_on(a->kt->kq_isa, x, a->n, (q8k_record *)(void *)row);
    else a->kt->quantize_q8(x, a->n, (q8_group *)(void *)row);
}

static void quantize_worker(void *arg, int ith, int nth) {
    quantize_task *a = arg;
    int64_t lo, hi;
    split_range(a->T, 1, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const float *x = a->x + t * a->n;
        if (!a->resid) {
            quantize_row_act(a, x, a->xq + (size_t)t * a->ldq);
            continue;
        }
        uint8_t *row = a->xq + (size_t)(2 * t) * a->ldq;
        float *r = a->resid + t * a->n;
        quantize_row_act(a, x, row);
        kq_residual_k8_on(a->kt->kq_isa, x, (const q8k_record *)(const void *)row, a->n, r); /* K formats only */
        quantize_row_act(a, r, row + a->ldq);
    }
}

/* ==========================================================================================
 * §4 Transformer
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
 * KV cells. The cache is a set of numbered cells, each holding one token's keys and values;
 * token at position p lives in cell p of the main cache, and a row attends to the cells
 * [0, n_main) (n_main = p + 1: that bound is the causal mask). An extension, for beam search
 * only (§6), which a first reading can skip: an arena: each beam's generated tokens live in arena cells, and a beam attends to the
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
    float *mlp;             // (n_batch, F)  MLP hidden layer
    q8_group *xq;           // (n_batch, q8_groups(F)) a quantized matmul's input, quantized
    float *xr;              // (n_batch, C)  what quantizing ln1's output left over (two_pass)
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
    /* inspection (gpt2_context_set_observer): NULL and false when off */
    gpt2_observer observer;
    void *observer_user;
    bool observing;         /*               set while gpt2_eval runs with an observer */
    int32_t obs_n;          /*               N of the current pass: pos0 + T */
    float *obs_emb;         // (2, n_batch, C) token and position embedding rows
    float *obs_attn;        // (NH, n_batch, P) one block's attention weights, rows obs_n apart
};

gpt2_context_params gpt2_context_default_params(void) {
    gpt2_context_params p = {1, 0};
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    p.n_threads = n > 0 ? (int32_t)(n > 64 ? 64 : n) : 1;
    return p;
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
static float *kv_row(const kv_store *s, float *base, const gpt2_config *cf, int l, int h, int32_t cell) {
    int HS = cf->n_embd / cf->n_head;
    return base + (((size_t)l * (size_t)cf->n_head + (size_t)h) * (size_t)s->cells + (size_t)cell) * (size_t)HS;
}

void gpt2_context_free(gpt2_context *c) {
    if (!c) return;
    pool_free(c->pool);
    kv_free(&c->cache);
    kv_free(&c->arena);
    free(c->x); free(c->xn); free(c->qkv); free(c->y); free(c->mlp); free(c->xq); free(c->xr); free(c->scores);
    free(c->emb); free(c->views); free(c->logits); free(c->work); free(c->order);
    free(c->seen); free(c->seq); free(c->obs_emb); free(c->obs_attn);
    free(c);
}

gpt2_status gpt2_context_new(const gpt2_model *m, const gpt2_context_params *p, gpt2_context **out) {
    if (!out) return GPT2_E_ARG;
    *out = NULL;
    if (!m) return GPT2_E_ARG;
    gpt2_context_params d = gpt2_context_default_params();
    if (!p) p = &d;
    /* more positions than the model has position embeddings cannot be computed */
    if (p->n_threads < 1 || p->n_threads > 256 || p->n_ctx < 0 || p->n_ctx > m->cfg.n_ctx)
        return GPT2_E_ARG;
    gpt2_context *c = calloc(1, sizeof *c);
    if (!c) return GPT2_E_NOMEM;
    const gpt2_config *cf = &m->cfg;
    c->m = m;
    c->n_ctx = p->n_ctx == 0 ? cf->n_ctx : p->n_ctx;
    c->n_batch = c->n_ctx < GPT2_MAX_BATCH ? c->n_ctx : GPT2_MAX_BATCH;
    c->n_threads = p->n_threads;
    size_t rows = (size_t)c->n_batch, C = (size_t)cf->n_embd, V = (size_t)cf->n_vocab;
    c->x = alloc64(rows * C * sizeof(float));
    c->xn = alloc64(rows * C * sizeof(float));
    c->qkv = alloc64(rows * 3 * C * sizeof(float));
    c->y = alloc64(rows * C * sizeof(float));
    c->mlp = alloc64(rows * (size_t)m->n_ff * sizeof(float));
    /* the widest quantized input; two_pass's two K rows of C numbers (2 x 320 bytes per
       256) take less than one q8_group row of C (192 bytes per 64) */
    size_t ldq = (size_t)q8_groups(m->n_ff > cf->n_embd ? m->n_ff : cf->n_embd);
    c->xq = alloc64(rows * ldq * sizeof(q8_group));
    c->xr = malloc(rows * C * sizeof(float));
    c->scores = malloc((size_t)c->n_threads * 4 * (size_t)c->n_ctx * sizeof(float));
    c->emb = malloc(2 * C * sizeof(float));
    c->views = malloc(rows * sizeof *c->views);
    c->logits = alloc64((size_t)LOGIT_ROWS * V * sizeof(float));
    c->work = malloc(V * sizeof(float));
    c->order = malloc(2 * V * sizeof(uint32_t));
    c->logits_rows = LOGIT_ROWS;
    c->seen = calloc(V, 1);
    c->seq = malloc(((size_t)c->n_ctx + 1) * sizeof(int32_t));
    c->pool = pool_new(c->n_threads);
    if (!c->x || !c->xn || !c->qkv || !c->y || !c->mlp || !c->xq || !c->xr || !c->scores || !c->emb || !c->views ||
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
   For quantized weights x is first quantized into c->xq, one row per token (two with
   two_pass, which only the K formats take: see forward()). */
static void matmul_pass(gpt2_context *c, const matrix *w, const float *bias, const float *x, int T,
                        float *out, epilogue e, bool two_pass) {
    /* about 8 chunks per thread, whole tiles of up to 16 rows */
    const int nth = pool_threads(c->pool);
    int64_t chunk = nth == 1 ? w->rows : (w->rows / (8 * nth) + 15) / 16 * 16;
    matmul_task a = {c->m->kt, w, bias, x, NULL, 0, false, T, out, w->rows, e, 0, chunk < 16 ? 16 : chunk};
    if (w->type != GPT2_TYPE_F32 && w->type != GPT2_TYPE_F16 && w->type != GPT2_TYPE_BF16) {
        size_t ldq = kq_is_k((int)w->type) ? (size_t)(w->cols / 256) * sizeof(q8k_record)
                                            : (size_t)q8_groups(w->cols) * sizeof(q8_group);
        /* the residual scratch c->xr holds C numbers per token (qkv's input always is) */
        a.two_pass = two_pass && kq_is_k((int)w->type) && w->cols == c->m->cfg.n_embd;
        quantize_task q = {c->m->kt, (int)w->type, x, w->cols, T, (uint8_t *)c->xq, ldq,
                           a.two_pass ? c->xr : NULL};
        if (T >= 8) pool_run(c->pool, quantize_worker, &q);
        else quantize_worker(&q, 0, 1);
        a.xq = (const uint8_t *)c->xq;
        a.ldq = ldq;
    }
    pool_run(c->pool, matmul_worker, &a);
}

static void matmul(gpt2_context *c, const matrix *w, const float *bias, const float *x, int T,
                   float *out, epilogue e) {
    matmul_pass(c, w, bias, x, T, out, e, false);
}

/* ---- attention ------------------------------------------------------------------------- */

/* One head of causal self-attention for one query, the plain way: q (HS) is compared with the
   n keys (n, HS) of the cells it may see (its own and every earlier one: never a later one,
   which is the causal mask), the scores q.k / sqrt(HS) go through a softmax, and y (HS) is
   the sum of the n values (n, HS) weighted by them. scores holds n floats. The tiled
   attention below computes the same for many queries and heads at once; the tests compare
   the two on every kernel path. */
REFERENCE static void attention_head_reference(float *y, const float *q, const float *keys, const float *values,
                                     int32_t n, int HS, float *scores) {
    float mx = -INFINITY;
    for (int32_t j = 0; j < n; j++) {                       // a score for every visible key
        float s = 0.0f;
        for (int i = 0; i < HS; i++) s += q[i] * keys[(size_t)j * (size_t)HS + (size_t)i];
        scores[j] = s / sqrtf((float)HS);
        mx = scores[j] > mx ? scores[j] : mx;
    }
    float sum = 0.0f;
    for (int32_t j = 0; j < n; j++) {                       // softmax
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    for (int i = 0; i < HS; i++) y[i] = 0.0f;
    for (int32_t j = 0; j < n; j++)                         // the weighted sum of the values
        for (int i = 0; i < HS; i++) y[i] += scores[j] / sum * values[(size_t)j * (size_t)HS + (size_t)i];
}

typedef struct {
    gpt2_context *c;
    int l;          /* block */
    int T;
} attn_task;

/* softmax(scores / sqrt(HS)) over n entries, in place (divided by sqrt(HS), as Hugging Face
   does it: multiplying by 1 / sqrt(HS) would round differently) */
static void attention_softmax(const kernel_table *kt, float *scores, int32_t n, float sqrt_hs) {
    for (int32_t j = 0; j < n; j++) scores[j] = scores[j] / sqrt_hs;
    float sum = exps_and_sum(kt, scores, n);
    for (int32_t j = 0; j < n; j++) scores[j] = scores[j] / sum;
}

/* Beam search (§6) keeps each beam's generated tokens in arena cells: a row whose view has
   n_extra > 0 attends to the main cells [0, n_main) as every row does, then to its arena
   cells. These two add those cells to the plain path's scores and values; without beams
   they do nothing. q is the row's query (HS), scores its row of scores (n_main + n_extra),
   y its output (HS). */
static void arena_scores(const gpt2_context *c, int l, int h, const row_view *rv, const float *q,
                         float *scores) {
    const gpt2_config *cf = &c->m->cfg;
    const size_t HS = (size_t)(cf->n_embd / cf->n_head);
    for (int32_t e = 0; e < rv->n_extra; e++)
        c->m->kt->dot[WT_F32]((const uint8_t *)kv_row(&c->arena, c->arena.k, cf, l, h, rv->extra[e]),
                              HS * sizeof(float), 1, q, HS, 1, (int64_t)HS, scores + rv->n_main + e, 1);
}

static void arena_values(const gpt2_context *c, int l, int h, const row_view *rv,
                         const float *scores, float *y) {
    const gpt2_config *cf = &c->m->cfg;
    const int64_t HS = cf->n_embd / cf->n_head;
    for (int32_t e = 0; e < rv->n_extra; e++)
        c->m->kt->weighted_sum(kv_row(&c->arena, c->arena.v, cf, l, h, rv->extra[e]), (size_t)HS,
                               scores + rv->n_main + e, 1, HS, y);
}

/* y[t, head h] = softmax(q . K^T / sqrt(HS)) V over the cells row t may see.
   Work items are (head, block of up to 4 rows): the block's queries meet each key together
   in one tile (a score has the same bits whichever tile computes it), and each value row is
   read once for the block's queries. */
static void attention_worker(void *arg, int ith, int nth) {
    attn_task *a = arg;
    gpt2_context *c = a->c;
    const kernel_table *kt = c->m->kt;
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
        const float *Q = c->qkv + (size_t)t0 * 3 * C + (size_t)h * HS;      // (nq, HS), 3C apart
        float *Y = c->y + (size_t)t0 * C + (size_t)h * HS;                  // (nq, HS), C apart
        /* scores against the main cache's keys (contiguous rows), up to the longest view */
        int32_t n_main[4], n_max = 0;
        for (int q = 0; q < nq; q++) {
            n_main[q] = c->views[t0 + q].n_main;
            n_max = n_main[q] > n_max ? n_main[q] : n_max;
        }
        const float *K = kv_row(&c->cache, c->cache.k, cf, a->l, h, 0);   // (n_max, HS)
        for (int32_t j = 0; j < n_max; j += 4) {
            int nr = n_max - j < 4 ? n_max - j : 4;
            kt->dot[WT_F32]((const uint8_t *)(K + (size_t)j * HS), row_bytes, nr, Q, (size_t)3 * C,
                            nq, HS, scores + j, P);
        }
        for (int q = 0; q < nq; q++) {
            const row_view *rv = &c->views[t0 + q];
            float *sq = scores + (size_t)q * P;   // (n_main + n_extra) this row's scores
            arena_scores(c, a->l, h, rv, Q + (size_t)q * 3 * C, sq);
            attention_softmax(kt, sq, rv->n_main + rv->n_extra, scale);
            memset(Y + (size_t)q * C, 0, row_bytes);
            if (c->observing) { /* this row's weights, 0 for the cells after it */
                float *w = c->obs_attn + ((size_t)h * (size_t)a->T + (size_t)(t0 + q)) * (size_t)c->obs_n;
                memcpy(w, sq, (size_t)rv->n_main * sizeof *w);
                for (int32_t j = rv->n_main; j < c->obs_n; j++) w[j] = 0.0f;
            }
        }
        /* y = sum_j p_j v_j over the main cache's values, for the block's rows together */
        kt->weighted_sum4(kv_row(&c->cache, c->cache.v, cf, a->l, h, 0), (size_t)HS, scores, P,
                          n_main, nq, HS, Y, (size_t)C);
        for (int q = 0; q < nq; q++)
            arena_values(c, a->l, h, &c->views[t0 + q], scores + (size_t)q * P, Y + (size_t)q * C);
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

/* ---- inspection --------------------------------------------------------------------------
 * With an observer set, gpt2_eval shows it each stage as the data flows (gpt2.h,
 * "Inspection"). Without one, forward() tests one flag per stage and does nothing more. */

static void report(gpt2_context *c, gpt2_stage stage, int layer, int32_t pos0, int d0, int d1,
                   int d2, const float *data) {
    gpt2_activation a;
    a.stage = stage;
    a.layer = layer;
    a.pos0 = pos0;
    a.n_dims = d2 ? 3 : 2;
    a.dims[0] = d0;
    a.dims[1] = d1;
    a.dims[2] = d2;
    a.data = data;
    c->observer(c->observer_user, &a);
}

/* the rows of wte and wpe the pass added, then their sum (already in c->x) */
static void report_embeddings(gpt2_context *c, const int32_t *ids, int T, int32_t pos0) {
    const gpt2_model *m = c->m;
    const size_t C = (size_t)m->cfg.n_embd;
    for (int t = 0; t < T; t++) {
        dequantize_row(&m->wte, ids[t], c->obs_emb + (size_t)t * C);                   // (T, C)
        dequantize_row(&m->wpe, c->views[t].pos, c->obs_emb + ((size_t)T + t) * C);   // (T, C)
    }
    report(c, GPT2_STAGE_TOKEN_EMBEDDING, -1, pos0, T, (int)C, 0, c->obs_emb);
    report(c, GPT2_STAGE_POSITION_EMBEDDING, -1, pos0, T, (int)C, 0, c->obs_emb + (size_t)T * C);
    report(c, GPT2_STAGE_EMBEDDING, -1, pos0, T, (int)C, 0, c->x);
}

gpt2_status gpt2_context_set_observer(gpt2_context *c, gpt2_observer fn, void *user) {
    if (!c) return GPT2_E_ARG;
    if (fn && (!c->obs_emb || !c->obs_attn)) {
        const gpt2_config *cf = &c->m->cfg;
        size_t rows = (size_t)c->n_batch;
        float *emb = c->obs_emb ? c->obs_emb : malloc(2 * rows * (size_t)cf->n_embd * sizeof(float));
        float *attn = c->obs_attn ? c->obs_attn
                                  : malloc((size_t)cf->n_head * rows * (size_t)c->n_ctx * sizeof(float));
        c->obs_emb = emb;
        c->obs_attn = attn;
        if (!emb || !attn) {
            c->observer = NULL;
            return GPT2_E_NOMEM;
        }
    }
    c->observer = fn;
    c->observer_user = user;
    return GPT2_OK;
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
    float *x = c->x, *xn = c->xn, *qkv = c->qkv, *y = c->y, *mlp = c->mlp;

    const bool obs = c->observing;   /* gpt2_eval with an observer: show each stage */
    const int32_t pos0 = views[0].pos;
    c->obs_n = pos0 + T;

    /* token embedding + position embedding */
    for (int t = 0; t < T; t++) {
        float *te = c->emb, *pe = c->emb + C;
        dequantize_row(&m->wte, ids[t], te);
        dequantize_row(&m->wpe, views[t].pos, pe);
        for (int i = 0; i < C; i++) x[(size_t)t * C + i] = te[i] + pe[i];   // (T, C)
    }
    if (obs) report_embeddings(c, ids, T, pos0);

    for (int l = 0; l < cf->n_layer; l++) {
        const block_weights *b = &m->blocks[l];
        /* attention: ln1 -> q, k, v -> cache -> softmax(q k^T / sqrt(HS)) v -> projection */
        layernorm_rows(c, xn, x, b->ln1_w, b->ln1_b, 0, T);                         // (T, C)
        /* q, k and v are where int8 activations cost the most: in the q4_K_M golden file,
           float inputs to this one product take the worst logit error from 0.50 to 0.18 (to
           0.46-0.51 for any other matrix). The K formats' activations share one scale per
           256 numbers, so one large channel coarsens the other 255: a K-format qkv gets
           two quantized rows per token (q8_0 and the 32-number formats, a scale per 32,
           keep one: their prompts would be 25% slower for 0.23 -> 0.15 on the mix file) */
        matmul_pass(c, &b->qkv, b->qkv_b, xn, T, qkv, EPI_STORE, true);             // (T, 3C)
        /* each token's keys and values (per head) go to its cache cell */
        for (int t = 0; t < T; t++) {
            const row_view *rv = &views[t];
            const kv_store *s = rv->dst_arena >= 0 ? &c->arena : &c->cache;
            int32_t cell = rv->dst_arena >= 0 ? rv->dst_arena : rv->pos;
            for (int h = 0; h < NH; h++) {
                memcpy(kv_row(s, s->k, cf, l, h, cell), qkv + (size_t)t * 3 * C + C + (size_t)h * HS,
                       (size_t)HS * sizeof(float));
                memcpy(kv_row(s, s->v, cf, l, h, cell), qkv + (size_t)t * 3 * C + 2 * C + (size_t)h * HS,
                       (size_t)HS * sizeof(float));
            }
        }
        attn_task at = {c, l, T};
        pool_run(c->pool, attention_worker, &at);                                   // y (T, C)
        matmul(c, &b->attn_out, b->attn_out_b, y, T, x, EPI_ADD);                   // x += (T, C)

        /* MLP: ln2 -> fc -> gelu -> proj */
        layernorm_rows(c, xn, x, b->ln2_w, b->ln2_b, 0, T);                         // (T, C)
        matmul(c, &b->fc, b->fc_b, xn, T, mlp, EPI_GELU);                             // (T, F)
        matmul(c, &b->proj, b->proj_b, mlp, T, x, EPI_ADD);                           // x += (T, C)
        if (obs) {
            report(c, GPT2_STAGE_ATTENTION, l, pos0, NH, T, pos0 + T, c->obs_attn);
            report(c, GPT2_STAGE_BLOCK_OUTPUT, l, pos0, T, C, 0, x);
        }
    }

    /* final layernorm and the output matrix, only for the rows whose logits are wanted */
    if (lm == LOGITS_NONE && !obs) return;
    int first = lm == LOGITS_LAST ? T - 1 : 0;
    layernorm_rows(c, xn, x, m->lnf_w, m->lnf_b, first, T);                         // (T, C)
    if (obs) report(c, GPT2_STAGE_FINAL_NORM, -1, pos0, T, C, 0, xn);
    if (lm != LOGITS_NONE && logits) {
        matmul(c, &m->lm_head, NULL, xn + (size_t)first * C, T - first, logits, EPI_STORE); // (T, V)
        if (obs) report(c, GPT2_STAGE_LOGITS, -1, pos0, T, cf->n_vocab, 0, logits);
    }
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

/* Runs n tokens through the model after the main cache's n_past, in forward passes of at most
   n_batch rows, appending their keys and values. With LOGITS_ALL, logits receives (n, V) (or,
   if logits is NULL, each pass leaves lnf(x) of its rows in c->xn); with LOGITS_LAST, (V)
   for the last token. After each pass, `then` (if not NULL) sees where the pass started in
   ids and its row count. This is the one loop over batches: gpt2_eval, generation and
   perplexity all feed tokens through it. */
typedef void (*pass_fn)(gpt2_context *c, size_t first, int T, void *arg);

static void forward_passes(gpt2_context *c, const int32_t *ids, size_t n, logits_mode lm,
                           float *logits, pass_fn then, void *arg) {
    const size_t V = (size_t)c->m->cfg.n_vocab;
    for (size_t i = 0; i < n;) {
        int T = n - i < (size_t)c->n_batch ? (int)(n - i) : c->n_batch;
        seq_views(c, T);
        bool last_pass = i + (size_t)T == n;
        logits_mode mode = lm == LOGITS_ALL ? LOGITS_ALL
                         : lm == LOGITS_LAST && last_pass ? LOGITS_LAST : LOGITS_NONE;
        forward(c, ids + i, T, mode, mode == LOGITS_ALL && logits ? logits + i * V : logits);
        c->n_past += T;
        if (then) then(c, i, T, arg);
        i += (size_t)T;
    }
}

/* forward_passes after checking that the tokens fit and are in the vocabulary */
static gpt2_status eval_tokens(gpt2_context *c, const int32_t *ids, size_t n, logits_mode lm,
                               float *logits) {
    const int32_t V = c->m->cfg.n_vocab;
    if (n > (size_t)(c->n_ctx - c->n_past)) return GPT2_E_CONTEXT_FULL;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) return GPT2_E_ARG;
    forward_passes(c, ids, n, lm, logits, NULL, NULL);
    return GPT2_OK;
}

gpt2_status gpt2_eval(gpt2_context *c, const int32_t *ids, size_t n, float *logits) {
    if (!c || (!ids && n)) return GPT2_E_ARG;
    if (n == 0) return GPT2_OK;
    c->observing = c->observer != NULL;
    gpt2_status s = eval_tokens(c, ids, n, logits ? LOGITS_ALL : LOGITS_NONE, logits);
    c->observing = false;
    return s;
}

gpt2_status gpt2_logit_lens(gpt2_context *c, const float *x, size_t n, float *logits) {
    if (!c || (!x && n) || (!logits && n)) return GPT2_E_ARG;
    const gpt2_model *m = c->m;
    const size_t C = (size_t)m->cfg.n_embd, V = (size_t)m->cfg.n_vocab;
    for (size_t i = 0; i < n;) {
        int T = n - i < (size_t)c->n_batch ? (int)(n - i) : c->n_batch;
        memcpy(c->x, x + i * C, (size_t)T * C * sizeof(float));
        layernorm_rows(c, c->xn, c->x, m->lnf_w, m->lnf_b, 0, T);                      // (T, C)
        matmul(c, &m->lm_head, NULL, c->xn, T, logits + i * V, EPI_STORE);            // (T, V)
        i += (size_t)T;
    }
    return GPT2_OK;
}

/* log-sum-exp of a row, in double: the loss is a difference of two large numbers, so it is
   summed in double rather than through exps_and_sum' float lanes */
static double logsumexp(const float *x, int32_t n) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) return -INFINITY;
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

/* The scoring of one window: ids is the window (its tokens from `begin` of the text), and a
   token is scored when its index in the text is at least `first`. */
typedef struct {
    const int32_t *ids;
    size_t begin, first;
    double nll_sum;
    size_t scored;
} ppl_window;

/* after a forward pass of T rows starting at window index i: c->xn holds lnf(x); the row of
   token a predicts token a + 1. Logits are made LOGIT_ROWS rows at a time, and only for
   rows that are scored. */
static void score_pass(gpt2_context *c, size_t i, int T, void *arg) {
    ppl_window *w = arg;
    const gpt2_model *m = c->m;
    const int32_t V = m->cfg.n_vocab, C = m->cfg.n_embd;
    for (int r0 = 0; r0 < T; r0 += LOGIT_ROWS) {
        int nr = T - r0 < LOGIT_ROWS ? T - r0 : LOGIT_ROWS;
        if (w->begin + i + (size_t)(r0 + nr) < w->first) continue; /* no scored row here */
        matmul(c, &m->lm_head, NULL, c->xn + (size_t)r0 * C, nr, c->logits, EPI_STORE); // (nr, V)
        for (int r = 0; r < nr; r++) {
            size_t a = w->begin + i + (size_t)(r0 + r); /* index in the text */
            if (a + 1 < w->first) continue;
            const float *row = c->logits + (size_t)r * V;
            w->nll_sum += logsumexp(row, V) - row[w->ids[i + (size_t)(r0 + r) + 1]];
            w->scored++;
        }
    }
}

gpt2_status gpt2_perplexity(gpt2_context *c, const int32_t *ids, size_t n, int32_t max_len,
                            int32_t stride, double *ppl, double *nll_mean) {
    if (!c || !ids || !ppl || max_len < 0 || stride < 0) return GPT2_E_ARG;
    if (max_len == 0 || max_len > c->n_ctx) max_len = c->n_ctx;
    if (stride == 0) stride = max_len;
    if (stride > max_len || n < 2) return GPT2_E_ARG;
    const int32_t V = c->m->cfg.n_vocab;
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
        ppl_window w = {ids + begin, begin, prev_end > begin + 1 ? prev_end : begin + 1, nll_sum, scored};
        gpt2_context_reset(c);
        /* feed ids[begin, end - 1): the last token predicts nothing inside the window */
        forward_passes(c, ids + begin, end - 1 - begin, LOGITS_ALL, NULL, score_pass, &w);
        nll_sum = w.nll_sum;
        scored = w.scored;
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
 * §5 Decoding: from logits to the next token
 * ==========================================================================================
 * The model gives a score (logit) for every token of the vocabulary. Decoding strategies:
 *   greedy        take the highest score (the first one on ties)
 *   sampling      turn scores into probabilities (softmax) and draw one at random; before that,
 *                 reshape the distribution with the "logits processors", in Hugging Face's order:
 *                   repetition penalty  make tokens already in the text less likely
 *                   temperature         divide by T: T < 1 sharpens, T > 1 flattens
 *                   top-k               keep the k highest scores (and ties with the k-th)
 *                   top-p (nucleus)     keep the smallest top set whose probability is >= p
 *   beam search   keep the B best partial sequences by total log-probability (§6)
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
static int32_t sample(const kernel_table *kt, const float *logits, int32_t V, rng *r, float *probs) {
    if (logits[argmax(logits, V)] == -INFINITY) return 0; /* nothing survived: cannot happen */
    memcpy(probs, logits, (size_t)V * sizeof *probs);
    double total = exps_and_sum(kt, probs, V); /* removed tokens: exp(-inf) = 0 */
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
static void log_softmax(const kernel_table *kt, float *x, int32_t n, float *scratch) {
    float mx = x[argmax(x, n)];
    memcpy(scratch, x, (size_t)n * sizeof *x);
    float log_sum = logf(exps_and_sum(kt, scratch, n));
    for (int32_t i = 0; i < n; i++) x[i] = (x[i] - mx) - log_sum;
}

/* ==========================================================================================
 * §6 Generation: the autoregressive loop
 * ==========================================================================================
 * Evaluate the prompt once (filling the KV cache), then repeat: choose a token from the last
 * logits, hand it to the caller, feed it back through the model. Stop at eos, after
 * max_new_tokens, when the text contains a stop string, when a callback asks to, or when
 * the context is full.
 * ---------------------------------------------------------------------------------------- */

/* ---- streaming text: whole UTF-8 characters, stop strings --------------------------------
 * A token is a few bytes, and those bytes may end in the middle of a UTF-8 character (a
 * Korean syllable is often 3 tokens), while a stop string may span several tokens. So the
 * bytes are held back until they can no longer be part of either: a character goes out
 * whole, and the text before a stop string goes out without it. */

struct gpt2_text_stream {
    char **stop;            /* copies of the stop strings */
    size_t *stop_len;
    size_t n_stop;
    char *buf;              /* bytes held back */
    size_t len, cap;
    bool stopped;
};

void gpt2_text_stream_free(gpt2_text_stream *ts) {
    if (!ts) return;
    for (size_t i = 0; i < ts->n_stop; i++) free(ts->stop[i]);
    free(ts->stop);
    free(ts->stop_len);
    free(ts->buf);
    free(ts);
}

gpt2_status gpt2_text_stream_new(const char *const *stop, size_t n_stop, gpt2_text_stream **out) {
    if (!out) return GPT2_E_ARG;
    *out = NULL;
    if ((!stop && n_stop) || n_stop > 1024) return GPT2_E_ARG;
    for (size_t i = 0; i < n_stop; i++)
        if (!stop[i] || !stop[i][0]) return GPT2_E_ARG; /* an empty stop string would match at once */
    gpt2_text_stream *ts = calloc(1, sizeof *ts);
    if (!ts) return GPT2_E_NOMEM;
    ts->stop = calloc(n_stop ? n_stop : 1, sizeof *ts->stop);
    ts->stop_len = calloc(n_stop ? n_stop : 1, sizeof *ts->stop_len);
    if (!ts->stop || !ts->stop_len) {
        gpt2_text_stream_free(ts);
        return GPT2_E_NOMEM;
    }
    for (; ts->n_stop < n_stop; ts->n_stop++) {
        size_t n = strlen(stop[ts->n_stop]);
        char *copy = malloc(n + 1);
        if (!copy) {
            gpt2_text_stream_free(ts);
            return GPT2_E_NOMEM;
        }
        memcpy(copy, stop[ts->n_stop], n + 1);
        ts->stop[ts->n_stop] = copy;
        ts->stop_len[ts->n_stop] = n;
    }
    *out = ts;
    return GPT2_OK;
}

void gpt2_text_stream_reset(gpt2_text_stream *ts) {
    if (!ts) return;
    ts->len = 0;
    ts->stopped = false;
}

int gpt2_text_stream_stopped(const gpt2_text_stream *ts) { return ts && ts->stopped; }

/* the bytes at the end of s[0..n) that begin a UTF-8 character not yet complete: a lead byte
   and fewer continuation bytes than it announces */
static size_t utf8_unfinished_tail(const uint8_t *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t b = s[n - back];
        if ((b & 0xC0) == 0x80) continue; /* a continuation byte: look further back */
        size_t need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

/* hands the first n held bytes to emit and drops them; emit's nonzero answer is returned */
static int stream_emit(gpt2_text_stream *ts, size_t n, gpt2_on_text emit, void *user) {
    if (n == 0) return 0;
    int r = emit ? emit(user, ts->buf, n) : 0;
    memmove(ts->buf, ts->buf + n, ts->len - n);
    ts->len -= n;
    return r;
}

int gpt2_text_stream_push(gpt2_text_stream *ts, const char *bytes, size_t len, gpt2_on_text emit,
                          void *user) {
    if (!ts || ts->stopped) return 1;
    if (!bytes || !len) return 0; /* nothing new: nothing can complete */
    if (ts->len + len > ts->cap) {
        size_t cap = (ts->len + len) * 2 + 64;
        char *b = realloc(ts->buf, cap);
        if (!b) { /* no room to hold text back: let it all out, unchecked */
            int r = stream_emit(ts, ts->len, emit, user);
            return r || (len && emit ? emit(user, bytes, len) : 0) ? -1 : 0;
        }
        ts->buf = b;
        ts->cap = cap;
    }
    memcpy(ts->buf + ts->len, bytes, len);
    size_t old_len = ts->len;
    ts->len += len;
    /* a complete stop string: the text before the earliest one goes out, the rest is dropped.
       Only a match that ends in the new bytes is new: earlier ones were looked for before. */
    size_t cut = SIZE_MAX;
    for (size_t i = 0; i < ts->n_stop; i++) {
        size_t sl = ts->stop_len[i];
        size_t p0 = old_len + 1 > sl ? old_len + 1 - sl : 0;
        for (size_t p = p0; p + sl <= ts->len && p < cut; p++)
            if (memcmp(ts->buf + p, ts->stop[i], sl) == 0) {
                cut = p;
                break;
            }
    }
    if (cut != SIZE_MAX) {
        ts->len = cut;
        ts->stopped = true;
        stream_emit(ts, cut, emit, user);
        return 1;
    }
    /* hold back the longest tail that could still begin a stop string, and an unfinished
       character */
    size_t hold = 0;
    for (size_t i = 0; i < ts->n_stop; i++) {
        size_t sl = ts->stop_len[i];
        for (size_t k = sl - 1 < ts->len ? sl - 1 : ts->len; k > hold; k--)
            if (memcmp(ts->buf + ts->len - k, ts->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    size_t ready = ts->len - hold;
    ready -= utf8_unfinished_tail((const uint8_t *)ts->buf, ready);
    return stream_emit(ts, ready, emit, user) ? -1 : 0;
}

int gpt2_text_stream_flush(gpt2_text_stream *ts, gpt2_on_text emit, void *user) {
    if (!ts) return 0;
    /* what is left could not become a stop string any more; an unfinished character's bytes
       go out as they are */
    return stream_emit(ts, ts->len, emit, user) ? -1 : 0;
}

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
        s->min_tokens_to_keep < 0 || p->n_stop < 0 || p->n_stop > 1024 || (p->n_stop && !p->stop))
        return GPT2_E_ARG;
    for (int32_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return GPT2_E_ARG;
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
    /* the generated text, for stop strings and the text callback */
    gpt2_text_stream *text = NULL;
    bool text_done = false; /* a stop string, or on_text asked to stop */
    if (p->n_stop > 0 || p->on_text) {
        st = gpt2_text_stream_new(p->stop, (size_t)p->n_stop, &text);
        if (st) return st;
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
        int32_t id = greedy ? argmax(c->logits, V) : sample(m->kt, c->logits, V, &r, c->work);
        out[(*n_out)++] = id;
        c->seq[n_seq++] = id;
        info->n_generated++;
        const char *bytes;
        size_t len;
        gpt2_token_bytes(m, id, &bytes, &len);
        if (cb && cb(user, id, bytes, len)) {
            info->stop = GPT2_STOP_CALLBACK;
            break;
        }
        if (id == p->eos_id) { /* a control token, not text: it goes to cb only */
            info->stop = GPT2_STOP_EOS;
            break;
        }
        if (text) {
            int r2 = gpt2_text_stream_push(text, bytes, len, p->on_text, p->on_text_user);
            if (r2) {
                info->stop = r2 > 0 ? GPT2_STOP_STRING : GPT2_STOP_CALLBACK;
                text_done = true;
                break;
            }
        }
    }
    /* the text held back at the end: nothing can complete it now */
    if (text && !text_done) gpt2_text_stream_flush(text, p->on_text, p->on_text_user);
    gpt2_text_stream_free(text);
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
} beam_cand;

/* better beam_cand: higher score; ties: lower flat index (beam * V + token) */
static bool beam_cand_better(const beam_cand *a, const beam_cand *b, int32_t V) {
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
    beam_cand *cands = malloc(2 * (size_t)B * sizeof *cands);
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
    /* what on_beam_step sees, if the caller watches */
    struct {
        const int32_t **tokens;
        float *scores;
        int32_t *parent, *fin_parent;
        double *fin_score;
    } watch_buf = {NULL, NULL, NULL, NULL, NULL}, *watch = NULL;
    if (ok && p->on_beam_step) {
        watch_buf.tokens = malloc((size_t)B * sizeof *watch_buf.tokens);
        watch_buf.scores = malloc((size_t)B * sizeof *watch_buf.scores);
        watch_buf.parent = malloc((size_t)B * sizeof *watch_buf.parent);
        watch_buf.fin_parent = malloc((size_t)B * sizeof *watch_buf.fin_parent);
        watch_buf.fin_score = malloc((size_t)B * sizeof *watch_buf.fin_score);
        watch = &watch_buf;
        if (!watch_buf.tokens || !watch_buf.scores || !watch_buf.parent || !watch_buf.fin_parent ||
            !watch_buf.fin_score) {
            st = GPT2_E_NOMEM;
            N = 0;
            ok = false;
        }
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
            log_softmax(m->kt, row, V, c->work);
            if (p->sampling.repetition_penalty != 1.0f) {
                memcpy(seq + P, cur[b].tokens, (size_t)(step - 1) * sizeof *seq);
                repetition_penalty(row, V, seq, (size_t)(P + step - 1), p->sampling.repetition_penalty,
                                   ps.seen);
            }
            for (int32_t v = 0; v < V; v++) {
                beam_cand cd = {row[v] + cur[b].score, b, v};
                if (n_c == 2 * B && !beam_cand_better(&cd, &cands[n_c - 1], V)) continue;
                int i = n_c < 2 * B ? n_c++ : n_c - 1; /* insertion into the sorted top 2B */
                while (i > 0 && beam_cand_better(&cd, &cands[i - 1], V)) {
                    cands[i] = cands[i - 1];
                    i--;
                }
                cands[i] = cd;
            }
        }
        /* walk the candidates: eos finishes a hypothesis, the rest become beams */
        int32_t nb = 0, n_fin = 0;
        for (int rank = 0; rank < n_c && nb < B; rank++) {
            const beam_cand *cd = &cands[rank];
            const beam *src = &cur[cd->beam];
            if (p->eos_id >= 0 && cd->token == p->eos_id) {
                if (rank >= B) continue;
                if (!hyp_add(&fin, src->tokens, step - 1, (double)cd->score, lp, true)) {
                    st = GPT2_E_NOMEM;
                    break;
                }
                if (watch) {
                    watch->fin_parent[n_fin] = cd->beam;
                    watch->fin_score[n_fin] = (double)cd->score / pow((double)step, lp);
                }
                n_fin++;
            } else {
                if (watch) watch->parent[nb] = cd->beam;
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
        if (watch) { /* show the caller this step's beams and finished hypotheses */
            for (int32_t b = 0; b < B; b++) {
                watch->tokens[b] = cur[b].tokens;
                watch->scores[b] = cur[b].score;
            }
            gpt2_beam_step bs = {step, nb, watch->tokens, watch->scores, watch->parent, n_fin,
                                 watch->fin_parent, watch->fin_score, done || step == N};
            p->on_beam_step(p->on_beam_user, &bs);
        }
        if (done || step == N) break;
        /* feed the B new tokens through the model together: one B-row forward pass (or a
           few, when B exceeds the context's rows; rows do not depend on each other) */
        for (int32_t b = 0; b < B; b++) {
            cur[b].cells[step - 1] = (step - 1) * B + b;
            ids[b] = cur[b].tokens[step - 1];
        }
        for (int32_t b0 = 0; b0 < B; b0 += c->n_batch) {
            int32_t rows = B - b0 < c->n_batch ? B - b0 : c->n_batch;
            for (int32_t j = 0; j < rows; j++) {
                row_view *rv = &c->views[j];
                rv->pos = P + step - 1;
                rv->n_main = P;
                rv->extra = cur[b0 + j].cells;
                rv->n_extra = step;
                rv->dst_arena = (step - 1) * B + b0 + j;
            }
            forward(c, ids + b0, rows, LOGITS_ALL, c->logits + (size_t)b0 * V);
        }
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
    free(watch_buf.tokens); free(watch_buf.scores); free(watch_buf.parent);
    free(watch_buf.fin_parent); free(watch_buf.fin_score);
    return st;
}

/* ==========================================================================================
 * §A SIMD kernels: the fast paths of §3's kernel table, and the choice of one at run time
 * ==========================================================================================
 * Each path fills a kernel_table with the operations of §3's scalar path, computed with the
 * CPU's vector instructions. They follow the same rule: per output element, one fixed
 * sequence of operations whatever the tile shape (so the thread split and the batching never
 * change a bit); against the scalar path they differ by rounding only, and the tests hold
 * them to it. Each function carries its own target attribute, so the file builds without
 * flags and one binary runs on any CPU of its architecture: kernels_select (at the end of
 * this appendix) picks what cpuid reports.
 * ---------------------------------------------------------------------------------------- */

#ifdef GPT2_X86
/* ---- SIMD tiles ---------------------------------------------------------------------------
 * Each path defines tile(NR, NT) bodies for constant shapes (always inlined, so the sums
 * stay in registers) and a dispatcher over the 16 shapes. Per output the operations are the
 * same in every shape: one vector of partial sums over k in order, then one reduction. */
/* Decode streams each weight row once. Hardware prefetchers stop at 4 KB page boundaries
   (the model file is mapped in 4 KB pages), so the one-token paths prefetch a page ahead
   (measured against 1, 2, 8 and 16 KB: README, "Performance"). */
#ifndef F_PREFETCH
#define F_PREFETCH 4096
#endif
#ifndef Q8_PREFETCH
#define Q8_PREFETCH 4096
#endif

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

/* One weight row against one token, for decode: the operations of a tile's output (one
   vector of sums over k in order, the zero-padded tail, one reduction), reading the row as
   one stream a page ahead of the hardware prefetchers (see F_PREFETCH). */
#ifndef AVX2_DECODE_ROWWISE
#define AVX2_DECODE_ROWWISE 1
#endif
#define DEFINE_AVX2_ROW_DOT(LOAD, ESIZE)                                                       \
    AVX2_TARGET static ALWAYS_INLINE float avx2_row_dot_##LOAD(const uint8_t *wr, const float *x, int64_t n) { \
        __m256 a = _mm256_setzero_ps();                                                       \
        int64_t k = 0;                                                                        \
        for (; k + 8 <= n; k += 8) {                                                          \
            _mm_prefetch((const char *)(wr + (size_t)k * ESIZE) + F_PREFETCH, _MM_HINT_T0);   \
            a = _mm256_fmadd_ps(LOAD(wr + (size_t)k * ESIZE), _mm256_loadu_ps(x + k), a);     \
        }                                                                                     \
        if (k < n) {                                                                          \
            float xt[8] = {0};                                                                \
            uint8_t wt[8 * 4] = {0};                                                          \
            memcpy(xt, x + k, (size_t)(n - k) * sizeof(float));                               \
            memcpy(wt, wr + (size_t)k * ESIZE, (size_t)(n - k) * ESIZE);                      \
            a = _mm256_fmadd_ps(LOAD(wt), _mm256_loadu_ps(xt), a);                            \
        }                                                                                     \
        return hsum256(a);                                                                    \
    }
DEFINE_AVX2_ROW_DOT(load8_f32, 4)
DEFINE_AVX2_ROW_DOT(load8_f16, 2)
DEFINE_AVX2_ROW_DOT(load8_bf16, 2)

/* the last n % 8 numbers go through zero-padded copies */
#define AVX2_TILE(LOAD, ESIZE, NR, NT)                                                         \
    do {                                                                                      \
        if (NT == 1 && AVX2_DECODE_ROWWISE) { /* one token: rows one after another (below) */ \
            UNROLL for (int r = 0; r < NR; r++)                                               \
                out[r] = avx2_row_dot_##LOAD(w + (size_t)r * row_bytes, x, n);                \
            break;                                                                            \
        }                                                                                     \
        __m256 acc[NR][NT];                                                                   \
        UNROLL for (int r = 0; r < NR; r++)                                                          \
            UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();                     \
        int64_t k = 0;                                                                        \
        for (; k + 8 <= n; k += 8) {                                                          \
            __m256 xv[NT];                                                                    \
            UNROLL for (int t = 0; t < NT; t++) xv[t] = _mm256_loadu_ps(x + (size_t)t * ldx + k);    \
            UNROLL for (int r = 0; r < NR; r++) {                                                    \
                if (NT == 1) _mm_prefetch((const char *)(w + (size_t)r * row_bytes + (size_t)k * ESIZE) + F_PREFETCH, _MM_HINT_T0); \
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

/* q8_0 x q8_0 activations. Each block's 32 products first become 8 int32 lanes of 4
   products, two ways:
   - AVX2: vpmaddubsw multiplies unsigned by signed bytes, so |q_w| meets q_x with q_w's sign
     (sign_epi8); pairs of products stay within int16 (128 * 127 * 2 < 2^15), and vpmaddwd
     adds them up.
   - AVX-VNNI (the VEX vpdpbusd: Alder Lake and later, Zen 5 client parts): the weights read
     as unsigned bytes (q + 128: the top bit flipped) and each lane's sum starts at the
     activations' correction, -128 times the sum of its 4 q_x, which takes the 128s back out.
   Then, unlike the float tiles, each block's 8 lanes are added up at once (horizontal adds,
   on the shuffle port the multiplies leave idle): a tile's 8 dots (4 rows x 2 tokens) sit
   side by side in one vector, lane 4t + r, and take their scales and the float sums with one
   multiply and one add per block instead of one multiply-add per dot. The integer sums are
   exact and the float steps are the scalar reference's, in its order ((d_w d_x) s, even and
   odd blocks apart): both give the scalar's bits. */
#define AVXVNNI_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))
#define Q8_LD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))

/* the weights of a block as the lane sums take them: |q| (AVX2), q + 128 (VNNI) */
AVX2_TARGET static ALWAYS_INLINE __m256i q8_prep_avx2(const uint8_t *qw) { return _mm256_abs_epi8(Q8_LD(qw)); }
AVXVNNI_TARGET static ALWAYS_INLINE __m256i q8_prep_avxvnni(const uint8_t *qw) {
    return _mm256_xor_si256(Q8_LD(qw), _mm256_set1_epi8((char)0x80));
}
/* 8 x int32, each the sum of 4 products q_w q_x; g's half h holds the activations */
AVX2_TARGET static ALWAYS_INLINE __m256i q8_lanes_avx2(__m256i pw, const uint8_t *qw, const q8_group *g, int h) {
    __m256i p = _mm256_maddubs_epi16(pw, _mm256_sign_epi8(Q8_LD(g->q + 32 * h), Q8_LD(qw)));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
AVXVNNI_TARGET static ALWAYS_INLINE __m256i q8_lanes_avxvnni(__m256i pw, const uint8_t *qw, const q8_group *g, int h) {
    (void)qw;
    return _mm256_dpbusd_avx_epi32(Q8_LD(g->corr + 8 * h), pw, Q8_LD(g->q + 32 * h));
}

/* the 4 rows' scales of a block (the f16 at off), as floats */
AVX2_TARGET static ALWAYS_INLINE __m128 q8_scales4(const uint8_t *const row[4], size_t off) {
    return _mm_cvtph_ps(_mm_setr_epi16((short)rd16(row[0] + off), (short)rd16(row[1] + off),
                                       (short)rd16(row[2] + off), (short)rd16(row[3] + off), 0, 0, 0, 0));
}

/* A block's 8 lane vectors v (lane sums of dot 4t + r) -> the 8 dots' (d_w d_x) s, lane 4t + r.
   hadd adds neighbouring lanes within each 128-bit half: after two rounds, half k of a0123
   holds v0..v3's sums over their half k; the permutes line the halves up. */
AVX2_TARGET static ALWAYS_INLINE __m256 avx2_block_products_4x2(const __m256i v[8], __m128 dw, const q8_group *g0,
                                                                const q8_group *g1, int h) {
    __m256i a0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i a4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(a0123, a4567, 0x20),
                                 _mm256_permute2x128_si256(a0123, a4567, 0x31));
    __m256 dx = _mm256_set_m128(_mm_loadu_ps(g1->d + 8 * h), _mm_loadu_ps(g0->d + 8 * h));
    /* exact: |s| <= 32 * 255 * 127 < 2^24 */
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set_m128(dw, dw), dx), _mm256_cvtepi32_ps(s));
}
/* the same for 4 rows x 1 token: lane r */
AVX2_TARGET static ALWAYS_INLINE __m128 avx2_block_products_4x1(const __m256i v[4], __m128 dw, const q8_group *g0, int h) {
    __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    return _mm_mul_ps(_mm_mul_ps(dw, _mm_loadu_ps(g0->d + 8 * h)), _mm_cvtepi32_ps(s));
}

/* The driver of the whole-block tiles: BLOCK##_4x2 / _4x1 (TYPE, row, b, x0[, x1]) give block
   b's products. Rows past nr repeat row nr - 1 and a missing second token repeats the first:
   their lanes are computed and dropped, so every tile runs the same code. Even and odd blocks
   have sums of their own, added at the end, as in the scalar reference. x is ldx groups a
   token. */
#define AVX2_DOT_BY_BLOCKS(BLOCK, TYPE)                                                        \
    do {                                                                                      \
        const int64_t nb = n / 32;                                                            \
        const uint8_t *row[4];                                                                \
        for (int r = 0; r < 4; r++) row[r] = w + (size_t)(r < nr ? r : nr - 1) * row_bytes;  \
        for (int t0 = 0; t0 < nt; t0 += 2, x += 2 * ldx, out += 2 * ldo) {                    \
            float sums[8];                                                                    \
            int64_t b = 0;                                                                    \
            if (nt - t0 >= 2) {                                                               \
                __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();                 \
                for (; b + 2 <= nb; b += 2) {                                                 \
                    even = _mm256_add_ps(even, BLOCK##_4x2(TYPE, row, b, x, x + ldx));        \
                    odd = _mm256_add_ps(odd, BLOCK##_4x2(TYPE, row, b + 1, x, x + ldx));      \
                }                                                                             \
                if (b < nb) even = _mm256_add_ps(even, BLOCK##_4x2(TYPE, row, b, x, x + ldx)); \
                _mm256_storeu_ps(sums, _mm256_add_ps(even, odd));                             \
                for (int r = 0; r < nr; r++) out[ldo + r] = sums[4 + r];                      \
            } else {                                                                          \
                __m128 even = _mm_setzero_ps(), odd = _mm_setzero_ps();                       \
                for (; b + 2 <= nb; b += 2) {                                                 \
                    even = _mm_add_ps(even, BLOCK##_4x1(TYPE, row, b, x));                    \
                    odd = _mm_add_ps(odd, BLOCK##_4x1(TYPE, row, b + 1, x));                  \
                }                                                                             \
                if (b < nb) even = _mm_add_ps(even, BLOCK##_4x1(TYPE, row, b, x));            \
                _mm_storeu_ps(sums, _mm_add_ps(even, odd));                                   \
            }                                                                                 \
            for (int r = 0; r < nr; r++) out[r] = sums[r];                                    \
        }                                                                                     \
    } while (0)

#define DEFINE_AVX2_Q8(V, TARGET)                                                              \
    /* block b of 4 rows x 2 tokens -> the 8 dots' (d_w d_x) s, lane 4t + r */               \
    TARGET static ALWAYS_INLINE __m256 q8_block_##V##_4x2(int type, const uint8_t *const row[4], int64_t b, \
                                                         const q8_group *x0, const q8_group *x1) { \
        (void)type;                                                                           \
        const size_t off = (size_t)b * Q8_0_BLOCK_BYTES;                                      \
        const int h = (int)(b & 1);                                                           \
        const q8_group *g0 = x0 + b / 2, *g1 = x1 + b / 2;                                    \
        __m256i v[8];                                                                         \
        UNROLL for (int r = 0; r < 4; r++) {                                                  \
            const uint8_t *qw = row[r] + off + 2;                                             \
            __m256i pw = q8_prep_##V(qw);                                                     \
            v[r] = q8_lanes_##V(pw, qw, g0, h);                                               \
            v[4 + r] = q8_lanes_##V(pw, qw, g1, h);                                           \
        }                                                                                     \
        return avx2_block_products_4x2(v, q8_scales4(row, off), g0, g1, h);                  \
    }                                                                                         \
    /* block b of 4 rows x 1 token -> the 4 dots' (d_w d_x) s */                              \
    TARGET static ALWAYS_INLINE __m128 q8_block_##V##_4x1(int type, const uint8_t *const row[4], int64_t b, \
                                                         const q8_group *x0) {               \
        (void)type;                                                                           \
        const size_t off = (size_t)b * Q8_0_BLOCK_BYTES;                                      \
        const int h = (int)(b & 1);                                                           \
        const q8_group *g0 = x0 + b / 2;                                                      \
        __m256i v[4];                                                                         \
        UNROLL for (int r = 0; r < 4; r++) {                                                  \
            const uint8_t *qw = row[r] + off + 2;                                             \
            if (h == 0) _mm_prefetch((const char *)qw + Q8_PREFETCH, _MM_HINT_T0); /* decode streams rows */ \
            v[r] = q8_lanes_##V(q8_prep_##V(qw), qw, g0, h);                                  \
        }                                                                                     \
        return avx2_block_products_4x1(v, q8_scales4(row, off), g0, h);                      \
    }                                                                                         \
    TARGET static void dot_q8_0_##V##_tiles(const uint8_t *w, size_t row_bytes, int nr, const q8_group *x, \
                                            size_t ldx, int nt, int64_t n, float *out, size_t ldo) { \
        AVX2_DOT_BY_BLOCKS(q8_block_##V, GPT2_TYPE_Q8_0);                                     \
    }

DEFINE_AVX2_Q8(avx2, AVX2_TARGET)
DEFINE_AVX2_Q8(avxvnni, AVXVNNI_TARGET)

/* Many tokens through the same rows (a prompt): then the rows' blocks are worth rearranging
   first. Vector k of a packed block holds numbers 4k..4k+3 of each of 8 rows (lane r: row r),
   so one token's 4 numbers, broadcast to every lane, meet 8 rows in one multiply, and a
   block's 8 dots come out one per lane: no horizontal adds, and the packing is paid once for
   all the tokens. The same integer sums and float steps per dot: the scalar's bits again.
   q4_0 (§D) packs the same way, its numbers q - 8 as signed bytes. */
#define Q8_PACK_ROWS 8
#define Q8_PACK_BLOCKS 32  /* blocks packed at a time: 32 x 544 bytes, in L1 beside the activations */
#define Q8_PACK_TOKENS 32  /* tokens whose sums stay on the stack while the blocks go by */
#define Q8_PACK_MIN 4      /* fewer tokens take the 4 x 2 tiles */
typedef struct {
    __m256i q[8];  /* numbers 4k..4k+3 of rows 0..7, as they are: their signs */
    __m256i a[8];  /* the same, |q| */
    __m256 d;      /* the 8 rows' scales */
} q8_packed;

/* a block's 32 numbers as signed bytes in element order: q8_0's as they are; q4_0's 16 bytes
   hold elements i (low nibble) and i + 16 (high), each q + 8 */
AVX2_TARGET static ALWAYS_INLINE __m256i packed_numbers(int type, const uint8_t *blk) {
    if (type == GPT2_TYPE_Q8_0) return Q8_LD(blk + 2);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
    __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));
    return _mm256_sub_epi8(u, _mm256_set1_epi8(8));
}

/* 8 rows of 32 bytes (8 four-byte groups each) -> 8 vectors, vector k holding group k of
   rows 0..7: a transpose of 8 x 8 four-byte groups */
AVX2_TARGET static ALWAYS_INLINE void transpose_groups8(const __m256i in[8], __m256i out[8]) {
    __m256i t[8], u[8];
    for (int r = 0; r < 8; r += 2) { /* rows r, r+1 interleaved by 4-byte groups */
        t[r] = _mm256_unpacklo_epi32(in[r], in[r + 1]);     /* groups 0, 1 | 4, 5 */
        t[r + 1] = _mm256_unpackhi_epi32(in[r], in[r + 1]); /* groups 2, 3 | 6, 7 */
    }
    for (int r = 0; r < 8; r += 4) { /* 4 rows of one group side by side */
        u[r] = _mm256_unpacklo_epi64(t[r], t[r + 2]);         /* group 0 | 4 */
        u[r + 1] = _mm256_unpackhi_epi64(t[r], t[r + 2]);     /* group 1 | 5 */
        u[r + 2] = _mm256_unpacklo_epi64(t[r + 1], t[r + 3]); /* group 2 | 6 */
        u[r + 3] = _mm256_unpackhi_epi64(t[r + 1], t[r + 3]); /* group 3 | 7 */
    }
    for (int k = 0; k < 4; k++) {
        out[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
        out[k + 4] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
    }
}

/* blocks b0 .. b0 + nbk - 1 of 8 rows of q8_0 or q4_0 (their scale first, as f16) */
AVX2_TARGET static void q8_pack_rows(int type, const uint8_t *const row[8], int64_t b0, int nbk, q8_packed *p) {
    const size_t bb = (size_t)kq_block_bytes(type);
    for (int i = 0; i < nbk; i++) {
        const size_t off = (size_t)(b0 + i) * bb;
        __m256i v[8];
        for (int r = 0; r < 8; r++) v[r] = packed_numbers(type, row[r] + off);
        transpose_groups8(v, p[i].q);
        for (int k = 0; k < 8; k++) p[i].a[k] = _mm256_abs_epi8(p[i].q[k]);
        p[i].d = _mm256_cvtph_ps(_mm_setr_epi16((short)rd16(row[0] + off), (short)rd16(row[1] + off),
                                                (short)rd16(row[2] + off), (short)rd16(row[3] + off),
                                                (short)rd16(row[4] + off), (short)rd16(row[5] + off),
                                                (short)rd16(row[6] + off), (short)rd16(row[7] + off)));
    }
}

/* one block of 8 rows against two tokens' 32 numbers q0, q1: the 16 dots' integer sums */
#define Q8_UNROLL8 _Pragma("GCC unroll 8")
AVX2_TARGET static ALWAYS_INLINE void q8_packed_sums_avx2(const q8_packed *p, const int8_t *q0, const int8_t *q1,
                                                          __m256i *s0, __m256i *s1) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    Q8_UNROLL8 for (int k = 0; k < 8; k++) {
        int32_t x0, x1;
        memcpy(&x0, q0 + 4 * k, 4);
        memcpy(&x1, q1 + 4 * k, 4);
        const __m256i a = p->a[k], q = p->q[k];
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(_mm256_set1_epi32(x0), q)), ones));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(_mm256_set1_epi32(x1), q)), ones));
    }
    *s0 = a0, *s1 = a1;
}
AVXVNNI_TARGET static ALWAYS_INLINE void q8_packed_sums_avxvnni(const q8_packed *p, const int8_t *q0, const int8_t *q1,
                                                                __m256i *s0, __m256i *s1) {
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    Q8_UNROLL8 for (int k = 0; k < 8; k++) {
        int32_t x0, x1;
        memcpy(&x0, q0 + 4 * k, 4);
        memcpy(&x1, q1 + 4 * k, 4);
        const __m256i a = p->a[k], q = p->q[k];
        a0 = _mm256_dpbusd_avx_epi32(a0, a, _mm256_sign_epi8(_mm256_set1_epi32(x0), q));
        a1 = _mm256_dpbusd_avx_epi32(a1, a, _mm256_sign_epi8(_mm256_set1_epi32(x1), q));
    }
    *s0 = a0, *s1 = a1;
}

#define DEFINE_AVX2_Q8_PACKED(V, TARGET)                                                       \
    TARGET static void dot_packed_##V(int type, const uint8_t *w, size_t row_bytes, int nr, const q8_group *x, \
                                      size_t ldx, int nt, int64_t n, float *out, size_t ldo) { \
        const int64_t nb = n / 32;                                                            \
        const uint8_t *row[Q8_PACK_ROWS];                                                     \
        for (int r = 0; r < Q8_PACK_ROWS; r++) row[r] = w + (size_t)(r < nr ? r : nr - 1) * row_bytes; \
        q8_packed pk[Q8_PACK_BLOCKS];                                                         \
        for (int t0 = 0; t0 < nt; t0 += Q8_PACK_TOKENS) {                                     \
            const int tn = nt - t0 < Q8_PACK_TOKENS ? nt - t0 : Q8_PACK_TOKENS;               \
            __m256 acc[Q8_PACK_TOKENS + 1][2]; /* per token: even and odd blocks */            \
            for (int t = 0; t <= tn; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();        \
            for (int64_t b0 = 0; b0 < nb; b0 += Q8_PACK_BLOCKS) {                             \
                const int nbk = nb - b0 < Q8_PACK_BLOCKS ? (int)(nb - b0) : Q8_PACK_BLOCKS;   \
                q8_pack_rows(type, row, b0, nbk, pk);                                         \
                for (int t = 0; t < tn; t += 2) { /* pairs of tokens; a lone last one twice */ \
                    const q8_group *x0 = x + (size_t)(t0 + t) * ldx;                          \
                    const q8_group *x1 = t + 1 < tn ? x0 + ldx : x0;                          \
                    __m256 e0 = acc[t][0], o0 = acc[t][1], e1 = acc[t + 1][0], o1 = acc[t + 1][1]; \
                    for (int i = 0; i < nbk; i++) { /* b0 is even: i and b have one parity */ \
                        const int64_t b = b0 + i;                                             \
                        const int h = (int)(b & 1);                                           \
                        const q8_group *g0 = x0 + b / 2, *g1 = x1 + b / 2;                    \
                        __m256i s0, s1;                                                       \
                        q8_packed_sums_##V(&pk[i], g0->q + 32 * h, g1->q + 32 * h, &s0, &s1);  \
                        __m256 p0 = _mm256_mul_ps(_mm256_mul_ps(pk[i].d, _mm256_loadu_ps(g0->d + 8 * h)), \
                                                  _mm256_cvtepi32_ps(s0));                    \
                        __m256 p1 = _mm256_mul_ps(_mm256_mul_ps(pk[i].d, _mm256_loadu_ps(g1->d + 8 * h)), \
                                                  _mm256_cvtepi32_ps(s1));                    \
                        if (h) {                                                              \
                            o0 = _mm256_add_ps(o0, p0);                                       \
                            o1 = _mm256_add_ps(o1, p1);                                       \
                        } else {                                                              \
                            e0 = _mm256_add_ps(e0, p0);                                       \
                            e1 = _mm256_add_ps(e1, p1);                                       \
                        }                                                                     \
                    }                                                                         \
                    acc[t][0] = e0, acc[t][1] = o0, acc[t + 1][0] = e1, acc[t + 1][1] = o1;   \
                }                                                                             \
            }                                                                                 \
            for (int t = 0; t < tn; t++) {                                                    \
                float s[8];                                                                   \
                _mm256_storeu_ps(s, _mm256_add_ps(acc[t][0], acc[t][1]));                     \
                for (int r = 0; r < nr; r++) out[(size_t)(t0 + t) * ldo + (size_t)r] = s[r];  \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* up to 8 rows: packed with enough tokens, else tiles of 4 rows */                       \
    TARGET static void dot_q8_0_##V(const uint8_t *w, size_t row_bytes, int nr, const q8_group *x, \
                                    size_t ldx, int nt, int64_t n, float *out, size_t ldo) {  \
        if (nt >= Q8_PACK_MIN) {                                                              \
            dot_packed_##V(GPT2_TYPE_Q8_0, w, row_bytes, nr, x, ldx, nt, n, out, ldo);         \
            return;                                                                           \
        }                                                                                     \
        for (int r = 0; r < nr; r += 4)                                                       \
            dot_q8_0_##V##_tiles(w + (size_t)r * row_bytes, row_bytes, nr - r < 4 ? nr - r : 4, x, ldx, nt, n, \
                                 out + r, ldo);                                               \
    }

DEFINE_AVX2_Q8_PACKED(avx2, AVX2_TARGET)
DEFINE_AVX2_Q8_PACKED(avxvnni, AVXVNNI_TARGET)

/* the rest of a quantized half-group once its 32 q are written: the scale, 8 times, and the
   lane corrections -128 * (sum of 4 q) (maddubs with ones: pairs; madd with ones: pairs of
   pairs). AVX2 and AVX-512 share it. */
AVX2_TARGET static ALWAYS_INLINE void q8_finish_half(q8_group *gr, int half, float d) {
    __m256i qv = _mm256_loadu_si256((const __m256i *)(const void *)(gr->q + 32 * half));
    __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qv), _mm256_set1_epi16(1));
    _mm256_storeu_si256((__m256i *)(void *)(gr->corr + 8 * half), _mm256_mullo_epi32(s4, _mm256_set1_epi32(-128)));
    _mm256_storeu_ps(gr->d + 8 * half, _mm256_set1_ps(d));
}

/* activations -> q8_0, as quantize_q8_scalar, 8 lanes at a time: the same bytes (min and max
   take their second operand when the first is NaN, which is how the scalar code clamps) */
AVX2_TARGET static void quantize_q8_avx2(const float *x, int64_t n, q8_group *g) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < q8_groups(n) * 2; b++) {
        q8_group *gr = g + b / 2;
        int half = (int)(b % 2);
        int8_t *q = gr->q + 32 * half;
        float d = 0.0f;
        if (b * QK8_0 < n) {
            __m256 v[4], a = _mm256_setzero_ps();
            for (int i = 0; i < 4; i++) {
                v[i] = _mm256_loadu_ps(x + b * QK8_0 + 8 * i);
                a = _mm256_max_ps(_mm256_and_ps(v[i], absmask), a);
            }
            __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            float amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
            d = amax / 127.0f;
            __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            __m256i i32[4];
            for (int i = 0; i < 4; i++) /* cvtps rounds half to even, as the scalar code does */
                i32[i] = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(_mm256_mul_ps(v[i], id), _mm256_set1_ps(127.0f)),
                                                          _mm256_set1_ps(-127.0f)));
            /* the packs work within 128-bit halves: 4-byte groups come out in the order
               0 2 4 6 1 3 5 7 of the 8 the numbers' order needs */
            __m256i q8 = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
            q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(void *)q, q8);
        } else {
            memset(q, 0, QK8_0);
        }
        q8_finish_half(gr, half, d);
    }
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
    int64_t ch = 0;
    for (; ch + 32 <= hs; ch += 32) {
        __m256 a0 = _mm256_loadu_ps(y + ch), a1 = _mm256_loadu_ps(y + ch + 8);
        __m256 a2 = _mm256_loadu_ps(y + ch + 16), a3 = _mm256_loadu_ps(y + ch + 24);
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv + ch;
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj), a0);
            a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8), a1);
            a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 16), a2);
            a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 24), a3);
        }
        _mm256_storeu_ps(y + ch, a0);
        _mm256_storeu_ps(y + ch + 8, a1);
        _mm256_storeu_ps(y + ch + 16, a2);
        _mm256_storeu_ps(y + ch + 24, a3);
    }
    if (ch < hs) weighted_sum_scalar(v + ch, ldv, p, n, hs - ch, y + ch);
}

DEFINE_WEIGHTED_SUM4(weighted_sum4_avx2, weighted_sum_avx2)

static const kernel_table kernels_avx2 = {
    "avx2", {dot_f32_avx2, dot_f16_avx2, dot_bf16_avx2}, dot_q8_0_avx2, quantize_q8_avx2,
    gelu_avx2, exp_sum_avx2, weighted_sum_avx2, weighted_sum4_avx2, KQ_ISA_AVX2, Q8_PACK_ROWS};

/* AVX-VNNI: AVX2 with the VEX vpdpbusd for q8_0 (above) and for §D's formats */
static const kernel_table kernels_avx2_vnni = {
    "avx2-vnni", {dot_f32_avx2, dot_f16_avx2, dot_bf16_avx2}, dot_q8_0_avxvnni, quantize_q8_avx2,
    gelu_avx2, exp_sum_avx2, weighted_sum_avx2, weighted_sum4_avx2, KQ_ISA_AVXVNNI, Q8_PACK_ROWS};

/* ---- AVX-512: 16 lanes, masked tails, up to 4 x 4 tiles (32 registers) ------------------ */
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

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
/* the masked tail loads the same way in both. (A function, not a macro: as a macro the
   name was expanded before AVX512_TILE pasted LOAD##N, so the halves variant ran the
   aligned loads and load16_f32hN went unused, which clang reports.) */
AVX512_TARGET static ALWAYS_INLINE __m512 load16_f32(const uint8_t *p, __mmask16 m);
AVX512_TARGET static ALWAYS_INLINE __m512 load16_f32h(const uint8_t *p, __mmask16 m) { return load16_f32(p, m); }
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
        q8_finish_half(gr, half, d);
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
    for (int64_t ch = 0; ch < hs; ch += 64) {
        int64_t w = hs - ch < 64 ? hs - ch : 64;
        __mmask16 m[4];
        for (int q = 0; q < 4; q++) {
            int64_t left = w - 16 * q;
            m[q] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        }
        __m512 a0 = _mm512_maskz_loadu_ps(m[0], y + ch), a1 = _mm512_maskz_loadu_ps(m[1], y + ch + 16);
        __m512 a2 = _mm512_maskz_loadu_ps(m[2], y + ch + 32), a3 = _mm512_maskz_loadu_ps(m[3], y + ch + 48);
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv + ch;
            __m512 pj = _mm512_set1_ps(p[j]);
            a0 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[0], vj), a0);
            a1 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[1], vj + 16), a1);
            a2 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[2], vj + 32), a2);
            a3 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[3], vj + 48), a3);
        }
        _mm512_mask_storeu_ps(y + ch, m[0], a0);
        _mm512_mask_storeu_ps(y + ch + 16, m[1], a1);
        _mm512_mask_storeu_ps(y + ch + 32, m[2], a2);
        _mm512_mask_storeu_ps(y + ch + 48, m[3], a3);
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
    for (int64_t ch = 0; ch < hs; ch += 64) {
        int nv = hs - ch >= 64 ? 4 : (int)((hs - ch) / 16); /* vectors of 16 in this chunk */
        __m512 acc[4][4];
        for (int q = 0; q < 4; q++)
            for (int i = 0; i < 4; i++)
                acc[q][i] = i < nv ? _mm512_loadu_ps(y + (size_t)q * ldy + ch + 16 * i) : _mm512_setzero_ps();
        int64_t j = 0;
        if (nv == 4) {
            for (; j < n_min; j++) {
                const float *vj = v + (size_t)j * ldv + ch;
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
                const float *vj = v + (size_t)jj * ldv + ch;
                __m512 pj = _mm512_set1_ps(p[(size_t)q * ldp + (size_t)jj]);
                for (int i = 0; i < nv; i++)
                    acc[q][i] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * i), acc[q][i]);
            }
        for (int q = 0; q < 4; q++)
            for (int i = 0; i < nv; i++) _mm512_storeu_ps(y + (size_t)q * ldy + ch + 16 * i, acc[q][i]);
    }
}

static const kernel_table kernels_avx512 = {
    "avx512-vnni", {dot_f32_avx512, dot_f16_avx512, dot_bf16_avx512}, dot_q8_0_avx512, quantize_q8_avx512,
    gelu_avx512, exp_sum_avx512, weighted_sum_avx512, weighted_sum4_avx512, KQ_ISA_AVX512VNNI, 4};
/* the first AVX-512 CPUs (Skylake-X) lack VNNI: their q8_0 tiles are AVX2's */
static const kernel_table kernels_avx512_no_vnni = {
    "avx512", {dot_f32_avx512, dot_f16_avx512, dot_bf16_avx512}, dot_q8_0_avx2, quantize_q8_avx512,
    gelu_avx512, exp_sum_avx512, weighted_sum_avx512, weighted_sum4_avx512, KQ_ISA_AVX512, Q8_PACK_ROWS};
#endif /* GPT2_X86 */

#ifdef GPT2_ARM64
/* ---- arm64 NEON: 4-lane vectors, 32 registers ------------------------------------------
 * Advanced SIMD is part of every arm64 CPU, so these kernels need no target attribute; only
 * the int8 dot product (sdot, FEAT_DotProd: Cortex-A55/A75 and later, Apple M1, Graviton 2)
 * does, and cpu_level asks the OS for it. The float dot products use 16 lanes, four vectors
 * of 4 (four independent FMA chains, one 64-byte load of f32 weights per row step): number k
 * of a row goes to lane k % 16, in order of k; the last n % 16 go through zero-padded copies
 * in the same vector code; then the fixed reduction ((a0 + a1) + (a2 + a3)) and a pairwise
 * sum across the 4 lanes. Every tile shape does exactly that for each of its outputs, so the
 * tile a (row, token) pair lands in, and hence the thread split, changes no bit. Arm64 speed
 * is unmeasured: these are written as arm64 wants (several accumulators, no gathers), not
 * tuned (README, "arm64"). */
#ifndef ALWAYS_INLINE
#define ALWAYS_INLINE inline __attribute__((always_inline))
#endif
#ifndef UNROLL
#define UNROLL _Pragma("GCC unroll 4") /* keeps a tile's sums in registers */
#endif
#if defined(__clang__)
#define NEON_DOTPROD_TARGET __attribute__((target("dotprod")))
#else /* GCC's arm_neon.h declares vdotq_s32 for armv8.2-a+dotprod: FEAT_DotProd exists from
         Armv8.2 on, so a CPU that has it has the rest of 8.2 as well */
#define NEON_DOTPROD_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

static ALWAYS_INLINE float neon_reduce16(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
    return vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
}

/* 16 weights as 4 vectors of floats */
static ALWAYS_INLINE void neon_w16_f32(const uint8_t *p, float32x4_t w[4]) {
    float32x4x4_t v = vld1q_f32_x4((const float *)(const void *)p);
    w[0] = v.val[0], w[1] = v.val[1], w[2] = v.val[2], w[3] = v.val[3];
}
/* f16: the hardware conversion (fcvtl, part of every arm64 CPU) */
static ALWAYS_INLINE void neon_w16_f16(const uint8_t *p, float32x4_t w[4]) {
    uint16x8x2_t h = vld1q_u16_x2((const uint16_t *)(const void *)p);
    w[0] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h.val[0])));
    w[1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(h.val[0]));
    w[2] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h.val[1])));
    w[3] = vcvt_high_f32_f16(vreinterpretq_f16_u16(h.val[1]));
}
/* bf16: the top half of a float, shifted into place */
static ALWAYS_INLINE void neon_w16_bf16(const uint8_t *p, float32x4_t w[4]) {
    uint16x8x2_t h = vld1q_u16_x2((const uint16_t *)(const void *)p);
    w[0] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h.val[0]), 16));
    w[1] = vreinterpretq_f32_u32(vshll_high_n_u16(h.val[0], 16));
    w[2] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h.val[1]), 16));
    w[3] = vreinterpretq_f32_u32(vshll_high_n_u16(h.val[1], 16));
}
static ALWAYS_INLINE void neon_x16(const float *x, float32x4_t v[4]) {
    float32x4x4_t a = vld1q_f32_x4(x);
    v[0] = a.val[0], v[1] = a.val[1], v[2] = a.val[2], v[3] = a.val[3];
}

/* numbers k0 .. k0 + 15 of each row and token into the tile's sums */
#define NEON_STEP(LOAD, ESIZE, NR, NT, k0)                                                     \
    do {                                                                                      \
        float32x4_t xv[NT][4], wv[4];                                                         \
        UNROLL for (int t = 0; t < NT; t++) neon_x16(x + (size_t)t * ldx + (k0), xv[t]);      \
        UNROLL for (int r = 0; r < NR; r++) {                                                 \
            LOAD(w + (size_t)r * row_bytes + (size_t)(k0) * ESIZE, wv);                       \
            UNROLL for (int t = 0; t < NT; t++)                                               \
                UNROLL for (int j = 0; j < 4; j++) acc[r][t][j] = vfmaq_f32(acc[r][t][j], wv[j], xv[t][j]); \
        }                                                                                     \
    } while (0)

/* A tile of NR rows x NT tokens, 4 sums of 4 lanes per output (NR * NT <= 4: 16 sums, the
   tokens' 16 and one row's 4 inputs fit the 32 registers). */
#define NEON_TILE(LOAD, ESIZE, NR, NT)                                                         \
    do {                                                                                      \
        float32x4_t acc[NR][NT][4];                                                           \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++)                                               \
                UNROLL for (int j = 0; j < 4; j++) acc[r][t][j] = vdupq_n_f32(0.0f);          \
        int64_t k = 0;                                                                        \
        /* two steps of 16 per turn: 64 bytes of each f16 / bf16 row, 128 of f32 */           \
        for (; k + 32 <= n; k += 32) {                                                        \
            NEON_STEP(LOAD, ESIZE, NR, NT, k);                                                \
            NEON_STEP(LOAD, ESIZE, NR, NT, k + 16);                                           \
        }                                                                                     \
        if (k + 16 <= n) {                                                                    \
            NEON_STEP(LOAD, ESIZE, NR, NT, k);                                                \
            k += 16;                                                                          \
        }                                                                                     \
        if (k < n) { /* zero-padded copies, through the same vector code */                   \
            float xt[NT][16];                                                                 \
            uint8_t wt[16 * 4];                                                               \
            float32x4_t xv[NT][4], wv[4];                                                     \
            UNROLL for (int t = 0; t < NT; t++) {                                             \
                memset(xt[t], 0, sizeof xt[t]);                                               \
                memcpy(xt[t], x + (size_t)t * ldx + k, (size_t)(n - k) * sizeof(float));      \
                neon_x16(xt[t], xv[t]);                                                       \
            }                                                                                 \
            UNROLL for (int r = 0; r < NR; r++) {                                             \
                memset(wt, 0, sizeof wt);                                                     \
                memcpy(wt, w + (size_t)r * row_bytes + (size_t)k * ESIZE, (size_t)(n - k) * ESIZE); \
                LOAD(wt, wv);                                                                 \
                UNROLL for (int t = 0; t < NT; t++)                                           \
                    UNROLL for (int j = 0; j < 4; j++) acc[r][t][j] = vfmaq_f32(acc[r][t][j], wv[j], xv[t][j]); \
            }                                                                                 \
        }                                                                                     \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++)                                               \
                out[(size_t)t * ldo + r] = neon_reduce16(acc[r][t][0], acc[r][t][1], acc[r][t][2], acc[r][t][3]); \
    } while (0)

/* Pairs of tokens in tiles of 2 rows x 2 tokens (a last row alone); a lone token row by row,
   each row read as one stream (decode). */
#define DEFINE_DOT_NEON(NAME, LOAD, ESIZE)                                                     \
    static void NAME(const uint8_t *w, size_t row_bytes, int nr, const float *x, size_t ldx,  \
                     int nt, int64_t n, float *out, size_t ldo) {                             \
        for (int t0 = 0; t0 < nt; t0 += 2, x += 2 * ldx, out += 2 * ldo) {                    \
            if (nt - t0 < 2) {                                                                \
                const uint8_t *w0 = w;                                                        \
                float *o0 = out;                                                              \
                for (int r0 = 0; r0 < nr; r0++, w += row_bytes, out++) NEON_TILE(LOAD, ESIZE, 1, 1); \
                w = w0, out = o0;                                                             \
                continue;                                                                     \
            }                                                                                 \
            const uint8_t *w0 = w;                                                            \
            float *o0 = out;                                                                  \
            for (int r0 = 0; r0 < nr; r0 += 2, w += 2 * row_bytes, out += 2) {                \
                if (nr - r0 >= 2) NEON_TILE(LOAD, ESIZE, 2, 2);                               \
                else NEON_TILE(LOAD, ESIZE, 1, 2);                                            \
            }                                                                                 \
            w = w0, out = o0;                                                                 \
        }                                                                                     \
    }

DEFINE_DOT_NEON(dot_f32_neon, neon_w16_f32, 4)
DEFINE_DOT_NEON(dot_f16_neon, neon_w16_f16, 2)
DEFINE_DOT_NEON(dot_bf16_neon, neon_w16_bf16, 2)

/* q8_0 x q8_0 activations, per block of 32: the 32 int8 products summed exactly into 4 int32
   lanes (by sdot where the CPU has it, by widening multiplies where not: the two paths put
   different partial sums in the lanes, so they agree with each other to rounding only),
   the lanes converted to float (exact: |lane| <= 32 * 128 * 127 < 2^24) and added into one
   of two vectors of sums, block A's or block B's (even or odd block), times d_w * d_x. The
   pair is reduced at the end. Every tile shape does exactly that per output. */
static ALWAYS_INLINE float neon_f16_scalar(const uint8_t *p) { /* a block's scale, by fcvtl */
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(rd16(p)))), 0);
}

/* without dotprod: pairs of products in int16 (|q_w q_x| <= 128 * 127, as the activations'
   quantizer clamps to +-127, so two fit), then pairs of those into the int32 lanes */
static ALWAYS_INLINE int32x4_t neon_block_widen(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    int16x8_t lo = vmlal_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), vget_low_s8(w1), vget_low_s8(x1));
    int16x8_t hi = vmlal_high_s8(vmull_high_s8(w0, x0), w1, x1);
    return vpadalq_s16(vpaddlq_s16(lo), hi);
}

/* with dotprod: each lane adds 4 products per sdot. Older clang (before 17) declares
   vdotq_s32 only when the whole file is built for dotprod, so it gets the instruction as
   inline assembly, in the same function with the same target. */
NEON_DOTPROD_TARGET static ALWAYS_INLINE int32x4_t neon_sdot(int32x4_t a, int8x16_t b, int8x16_t c) {
#if defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(a) : "w"(b), "w"(c));
    return a;
#else
    return vdotq_s32(a, b, c);
#endif
}
NEON_DOTPROD_TARGET static ALWAYS_INLINE int32x4_t neon_block_sdot(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    return neon_sdot(neon_sdot(vdupq_n_s32(0), w0, x0), w1, x1);
}

/* block b (half = b % 2 of group b / 2) of NR rows x NT tokens */
#define NEON_Q8_BLOCK(BLOCKDOT, NR, NT, b)                                                     \
    do {                                                                                      \
        const int half_ = (int)((b) % 2);                                                     \
        int8x16_t x0[NT], x1[NT];                                                             \
        float dx[NT];                                                                         \
        UNROLL for (int t = 0; t < NT; t++) {                                                 \
            const q8_group *g_ = &x[(size_t)t * ldx + (size_t)((b) / 2)];                     \
            x0[t] = vld1q_s8(g_->q + 32 * half_);                                             \
            x1[t] = vld1q_s8(g_->q + 32 * half_ + 16);                                        \
            dx[t] = g_->d[8 * half_];                                                         \
        }                                                                                     \
        UNROLL for (int r = 0; r < NR; r++) {                                                 \
            const uint8_t *blk = w + (size_t)r * row_bytes + (size_t)(b) * Q8_0_BLOCK_BYTES;  \
            int8x16_t wa = vld1q_s8((const int8_t *)(blk + 2)), wb = vld1q_s8((const int8_t *)(blk + 18)); \
            float dw = neon_f16_scalar(blk);                                                  \
            UNROLL for (int t = 0; t < NT; t++)                                               \
                acc[r][t][half_] = vfmaq_n_f32(acc[r][t][half_], vcvtq_f32_s32(BLOCKDOT(wa, wb, x0[t], x1[t])), dw * dx[t]); \
        }                                                                                     \
    } while (0)

/* blocks in pairs (a group of activations, 68 bytes of each weight row per step) */
#define NEON_Q8_TILE(BLOCKDOT, NR, NT)                                                         \
    do {                                                                                      \
        float32x4_t acc[NR][NT][2];                                                           \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++) acc[r][t][0] = acc[r][t][1] = vdupq_n_f32(0.0f); \
        const int64_t nb = n / QK8_0;                                                         \
        int64_t b = 0;                                                                        \
        for (; b + 2 <= nb; b += 2) {                                                         \
            NEON_Q8_BLOCK(BLOCKDOT, NR, NT, b);                                               \
            NEON_Q8_BLOCK(BLOCKDOT, NR, NT, b + 1);                                           \
        }                                                                                     \
        if (b < nb) NEON_Q8_BLOCK(BLOCKDOT, NR, NT, b);                                       \
        UNROLL for (int r = 0; r < NR; r++)                                                   \
            UNROLL for (int t = 0; t < NT; t++)                                               \
                out[(size_t)t * ldo + r] = vaddvq_f32(vaddq_f32(acc[r][t][0], acc[r][t][1])); \
    } while (0)

/* Pairs of tokens in tiles of up to 2 rows x 2 tokens; a lone token in one tile of all the
   rows (up to 4: the activations are loaded once for them all). */
#define DEFINE_DOT_Q8_NEON(NAME, TARGET, BLOCKDOT)                                             \
    TARGET static void NAME(const uint8_t *w, size_t row_bytes, int nr, const q8_group *x,    \
                            size_t ldx, int nt, int64_t n, float *out, size_t ldo) {          \
        for (int t0 = 0; t0 < nt; t0 += 2, x += 2 * ldx, out += 2 * ldo) {                    \
            if (nt - t0 < 2) {                                                                \
                switch (nr) {                                                                 \
                case 1: NEON_Q8_TILE(BLOCKDOT, 1, 1); break;                                  \
                case 2: NEON_Q8_TILE(BLOCKDOT, 2, 1); break;                                  \
                case 3: NEON_Q8_TILE(BLOCKDOT, 3, 1); break;                                  \
                default: NEON_Q8_TILE(BLOCKDOT, 4, 1); break;                                 \
                }                                                                             \
                continue;                                                                     \
            }                                                                                 \
            const uint8_t *w0 = w;                                                            \
            float *o0 = out;                                                                  \
            for (int r0 = 0; r0 < nr; r0 += 2, w += 2 * row_bytes, out += 2) {                \
                if (nr - r0 >= 2) NEON_Q8_TILE(BLOCKDOT, 2, 2);                               \
                else NEON_Q8_TILE(BLOCKDOT, 1, 2);                                            \
            }                                                                                 \
            w = w0, out = o0;                                                                 \
        }                                                                                     \
    }

#define NEON_NO_TARGET
DEFINE_DOT_Q8_NEON(dot_q8_0_neon, NEON_NO_TARGET, neon_block_widen)
DEFINE_DOT_Q8_NEON(dot_q8_0_neon_dotprod, NEON_DOTPROD_TARGET, neon_block_sdot)

/* exp(x) for 4 floats, as exp8 / exp16 on x86: x = n ln2 + r, |r| <= ln2/2, exp(r) by its
   Taylor polynomial of degree 6, times 2^n built in the exponent bits in two factors (so
   that n = 128 stays representable); exp(-inf) = 0 */
static ALWAYS_INLINE float32x4_t neon_exp4(float32x4_t x) {
    uint32x4_t live = vmvnq_u32(vceqq_f32(x, vdupq_n_f32(-INFINITY)));
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.37f)), vdupq_n_f32(-87.33f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f))); /* nearest, ties even */
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));           /* ln2 high */
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187e-06f));                    /* ln2 low */
    float32x4_t p = vdupq_n_f32(1.0f / 720);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t ni = vcvtq_s32_f32(n); /* exact: n is a whole number */
    int32x4_t h = vshrq_n_s32(ni, 1);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(h, vdupq_n_s32(127)), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, h), vdupq_n_s32(127)), 23));
    float32x4_t e = vmulq_f32(vmulq_f32(p, s1), s2);
    return vreinterpretq_f32_u32(vandq_u32(live, vreinterpretq_u32_f32(e)));
}

/* gelu_new(x) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3), as gelu8 on AVX2 */
static ALWAYS_INLINE float32x4_t neon_gelu4(float32x4_t v) {
    float32x4_t u = vmulq_f32(vdupq_n_f32(-2.0f * GELU_SQRT_2_OVER_PI),
                              vfmaq_f32(v, vmulq_f32(vdupq_n_f32(GELU_CUBIC), v), vmulq_f32(v, v)));
    return vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), neon_exp4(u)));
}

/* Elementwise, so any grouping gives the same bits; the last n % 4 numbers go through the
   same vector code in a zero-padded copy: a number's GELU must not depend on where the
   thread's share of a row ends. */
static void gelu_neon(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* 4 independent vectors per turn */
        float32x4x4_t v = vld1q_f32_x4(x + i);
        v.val[0] = neon_gelu4(v.val[0]), v.val[1] = neon_gelu4(v.val[1]);
        v.val[2] = neon_gelu4(v.val[2]), v.val[3] = neon_gelu4(v.val[3]);
        vst1q_f32_x4(x + i, v);
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, neon_gelu4(vld1q_f32(x + i)));
    if (i < n) {
        float tail[4] = {0};
        memcpy(tail, x + i, (size_t)(n - i) * sizeof(float));
        vst1q_f32(tail, neon_gelu4(vld1q_f32(tail)));
        memcpy(x + i, tail, (size_t)(n - i) * sizeof(float));
    }
}

/* 16 lanes (4 vectors, number i in lane i % 16); the tail is padded with -inf, whose
   exponential is 0, so every number takes the vector exponential and lands in its lane */
static float exp_sum_neon(float *x, int64_t n, float max) {
    float32x4_t acc[4], mx = vdupq_n_f32(max);
    for (int j = 0; j < 4; j++) acc[j] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4x4_t v = vld1q_f32_x4(x + i);
        UNROLL for (int j = 0; j < 4; j++) {
            v.val[j] = neon_exp4(vsubq_f32(v.val[j], mx));
            acc[j] = vaddq_f32(acc[j], v.val[j]);
        }
        vst1q_f32_x4(x + i, v);
    }
    if (i < n) {
        float tail[16];
        for (int j = 0; j < 16; j++) tail[j] = i + j < n ? x[i + j] : -INFINITY;
        float32x4x4_t v = vld1q_f32_x4(tail);
        UNROLL for (int j = 0; j < 4; j++) {
            v.val[j] = neon_exp4(vsubq_f32(v.val[j], mx));
            acc[j] = vaddq_f32(acc[j], v.val[j]);
        }
        vst1q_f32_x4(tail, v);
        memcpy(x + i, tail, (size_t)(n - i) * sizeof(float));
    }
    return neon_reduce16(acc[0], acc[1], acc[2], acc[3]);
}

/* y[0..hs) += sum_j p[j] v[j]: per channel, y = fma(p[j], v[j][ch], y) for j in order, in
   chunks of 32 channels (8 independent sums), then 4, then the scalar path for the rest */
static void weighted_sum_neon(const float *v, size_t ldv, const float *p, int64_t n, int64_t hs,
                              float *y) {
    int64_t ch = 0;
    for (; ch + 32 <= hs; ch += 32) {
        float32x4x4_t a = vld1q_f32_x4(y + ch), b = vld1q_f32_x4(y + ch + 16);
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv + ch;
            float32x4x4_t va = vld1q_f32_x4(vj), vb = vld1q_f32_x4(vj + 16);
            UNROLL for (int i = 0; i < 4; i++) {
                a.val[i] = vfmaq_n_f32(a.val[i], va.val[i], p[j]);
                b.val[i] = vfmaq_n_f32(b.val[i], vb.val[i], p[j]);
            }
        }
        vst1q_f32_x4(y + ch, a);
        vst1q_f32_x4(y + ch + 16, b);
    }
    for (; ch + 4 <= hs; ch += 4) {
        float32x4_t a = vld1q_f32(y + ch);
        for (int64_t j = 0; j < n; j++) a = vfmaq_n_f32(a, vld1q_f32(v + (size_t)j * ldv + ch), p[j]);
        vst1q_f32(y + ch, a);
    }
    if (ch < hs) weighted_sum_scalar(v + ch, ldv, p, n, hs - ch, y + ch);
}

DEFINE_WEIGHTED_SUM4(weighted_sum4_neon, weighted_sum_neon)

/* neon-dotprod: q8_0 by sdot. The formats of §D take their scalar tiles (kq_isa). Both
   quantize activations with the scalar quantizer (the reference, byte for byte). */
static const kernel_table kernels_neon_dotprod = {
    "neon-dotprod", {dot_f32_neon, dot_f16_neon, dot_bf16_neon}, dot_q8_0_neon_dotprod, quantize_q8_scalar,
    gelu_neon, exp_sum_neon, weighted_sum_neon, weighted_sum4_neon, KQ_ISA_SCALAR, 4};
/* the first arm64 CPUs (Cortex-A53/A57/A72: Raspberry Pi 3 and 4) lack sdot */
static const kernel_table kernels_neon = {
    "neon", {dot_f32_neon, dot_f16_neon, dot_bf16_neon}, dot_q8_0_neon, quantize_q8_scalar,
    gelu_neon, exp_sum_neon, weighted_sum_neon, weighted_sum4_neon, KQ_ISA_SCALAR, 4};
#endif /* GPT2_ARM64 */

/* What the CPU (and the OS, which must save the wider registers) supports: from cpuid on
   x86; on arm64 from the OS (NEON is part of every arm64 CPU; dotprod is not). */
enum { CPU_AVX2 = 1, CPU_AVX512 = 2, CPU_VNNI = 4, CPU_AVXVNNI = 8, CPU_NEON = 16, CPU_DOTPROD = 32 };

#ifdef GPT2_ARM64
static int cpu_level_arm64(void) {
    int level = CPU_NEON;
#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* the kernel's bit for FEAT_DotProd (asm/hwcap.h) */
#endif
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) level |= CPU_DOTPROD;
#elif defined(__APPLE__)
    int on = 0;
    size_t len = sizeof on;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &on, &len, NULL, 0) == 0 && on) level |= CPU_DOTPROD;
#endif
    return level; /* other systems: sdot is not assumed */
}
#endif

static int cpu_level(void) {
#ifdef GPT2_X86
    unsigned a, b, ecx, d;
    __cpuid(0, a, b, ecx, d);
    unsigned max_leaf = a;
    __cpuid(1, a, b, ecx, d);
    bool fma = ecx >> 12 & 1, osxsave = ecx >> 27 & 1, avx = ecx >> 28 & 1, f16c = ecx >> 29 & 1;
    if (!osxsave || !avx || max_leaf < 7) return 0;
    unsigned xlo, xhi;
    __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0)); /* XCR0: which register states the OS saves */
    bool ymm = (xlo & 0x6) == 0x6, zmm = (xlo & 0xe6) == 0xe6;
    __cpuid_count(7, 0, a, b, ecx, d);
    bool avx2 = b >> 5 & 1, avx512f = b >> 16 & 1, avx512bw = b >> 30 & 1, avx512vl = b >> 31 & 1;
    if (!(ymm && avx2 && fma && f16c)) return 0;
    bool vnni = ecx >> 11 & 1; /* AVX512_VNNI */
    __cpuid_count(7, 1, a, b, ecx, d);
    int level = CPU_AVX2 | (a >> 4 & 1 ? CPU_AVXVNNI : 0); /* AVX-VNNI: the VEX vpdpbusd */
    if (zmm && avx512f && avx512bw && avx512vl) return level | CPU_AVX512 | (vnni ? CPU_VNNI : 0);
    return level;
#elif defined(GPT2_ARM64)
    return cpu_level_arm64();
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
    const kernel_table *kt;
} kernel_choice;

static const kernel_choice kernel_paths[] = {
#ifdef GPT2_X86
    {"avx512", NULL, CPU_AVX2 | CPU_AVX512 | CPU_VNNI, &kernels_avx512},
    {"avx512", "avx512-novnni", CPU_AVX2 | CPU_AVX512, &kernels_avx512_no_vnni},
    {"avx2", NULL, CPU_AVX2 | CPU_AVXVNNI, &kernels_avx2_vnni},
    {"avx2", "avx2-novnni", CPU_AVX2, &kernels_avx2},
#endif
#ifdef GPT2_ARM64
    {"neon", NULL, CPU_NEON | CPU_DOTPROD, &kernels_neon_dotprod},
    {"neon", "neon-nodotprod", CPU_NEON, &kernels_neon},
#endif
    {"scalar", NULL, 0, &kernels_scalar},
};
#define N_KERNEL_PATHS (sizeof kernel_paths / sizeof kernel_paths[0])

/* Every name GPT2_KERNELS knows, on any CPU (so that a name for another architecture is
   "not on this CPU" rather than "unknown"). */
static const char *const kernel_names[] = {"scalar", "avx2", "avx2-novnni", "avx2-vnni", "avx512", "avx512-novnni",
                                           "avx512-vnni", "neon", "neon-nodotprod",
                                           "neon-dotprod"};

static const kernel_table *kernels_best(void) {
    int cpu = cpu_level();
    for (size_t i = 0; i < N_KERNEL_PATHS; i++)
        if ((kernel_paths[i].needs & cpu) == kernel_paths[i].needs) return kernel_paths[i].kt;
    return &kernels_scalar;
}

/* The path a name asks for: GPT2_OK and *out, GPT2_E_UNSUPPORTED if this CPU cannot run it,
   GPT2_E_ARG if no path has that name. NULL, "" and "auto" mean the best path. */
static gpt2_status kernels_by_name(const char *name, const kernel_table **out) {
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
        bool named = !strcmp(name, kp->family) || !strcmp(name, kp->kt->name) ||
                     (kp->without && !strcmp(name, kp->without));
        /* in best-first order, so a family name takes the best member this CPU runs */
        if (named && (kp->needs & cpu) == kp->needs) {
            *out = kp->kt;
            return GPT2_OK;
        }
        known |= named;
    }
    return known ? GPT2_E_UNSUPPORTED : GPT2_E_ARG;
}

/* The path for a model: the one asked for, else GPT2_KERNELS, else the best this CPU runs. */
static gpt2_status kernels_select(const char *name, const kernel_table **out, char *why, size_t why_len) {
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
                strncat(have, kernel_paths[i].kt->name, sizeof have - strlen(have) - 1);
            }
        return fail_with(s, why, why_len, "%s=%s: this CPU cannot run that kernel path (it runs:%s)",
                         from, name, have);
    }
    return GPT2_OK;
}

gpt2_status gpt2_kernels_supported(const char *name) {
    const kernel_table *kt;
    if (!name) return GPT2_E_ARG;
    return kernels_by_name(name, &kt);
}

/* ==========================================================================================
 * §B Thread pool
 * ==========================================================================================
 * Created once per context. pool_run(fn, arg) runs fn(arg, i, n) on all n threads (the caller
 * is thread 0) and returns when all are done. Waiting threads spin briefly (a step of the
 * forward pass takes microseconds), then sleep on a condition variable.
 * ---------------------------------------------------------------------------------------- */

struct pool {
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
};

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
        /* The flag, then busy; a worker does busy, then the flag: one of the two sees the
           other's write, so the last worker signals or the caller does not wait. That takes
           the store and the load in order. An exchange, not a store: qemu-user on x86 runs
           arm64's store-release + load-acquire pair out of order (a store-buffering test
           saw both loads miss 31,576 times in 200,000; with exchanges never), and the
           wake-up was lost: `make test-arm` hung with every thread asleep. */
        atomic_exchange(&p->caller_sleeping, 1);
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

/* The share [*lo, *hi) of n items for thread ith of nth, in multiples of `grain`. */
static int pool_threads(const pool *p) { return p->n; }

static void split_range(int64_t n, int64_t grain, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t units = (n + grain - 1) / grain;
    *lo = units * ith / nth * grain;
    *hi = units * (ith + 1) / nth * grain;
    if (*lo > n) *lo = n;
    if (*hi > n) *hi = n;
}

/* ==========================================================================================
 * §C Tools: rewriting a model file with other weight types; the memory bandwidth probe
 * ==========================================================================================
 * gpt2_quantize: every 2-D matrix is converted row by row: decode to float, encode to the new
 * type. q8_0 encodes each block of 32 as d = max|x| / 127 and q = round(x * (1 / d)), halves
 * away from zero, as ggml's reference quantizer does, so that a file we write has the bytes
 * llama.cpp's would (the activations' quantizer in §3 rounds the other way, as ggml's SIMD
 * one does). Metadata is copied as it is, except general.file_type.
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
    default: /* the formats of §D */
        kq_quantize_row((int)type, x, n, out);
        break;
    }
}

/* Creates a new temporary file beside path (same directory, so that rename() onto path is
   atomic), for writing: a name no one else has (it fails rather than opening a file or
   following a link someone planted there: O_CREAT | O_EXCL), with the permissions of any
   new file (0666 less the umask). path itself must be a regular file or not exist: a
   device, a FIFO or a directory is refused rather than replaced. *tmp receives the name
   (the caller frees it). */
static gpt2_status create_beside(const char *path, FILE **out, char **tmp, char *err, size_t err_len) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return fail_with(GPT2_E_IO, err, err_len, "%s exists and is not a regular file", path);
    size_t n = strlen(path) + 48;
    char *name = malloc(n);
    if (!name) return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
    /* unique enough to rarely collide (pid, clock, an address on this stack), and O_EXCL
       makes a collision a retry, never a shared file */
    uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&st;
    for (int attempt = 0; attempt < 100; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (seed ^ (uint64_t)ts.tv_nsec) * 0xbf58476d1ce4e5b9ULL + (uint64_t)attempt;
        snprintf(name, n, "%s.%08llx.tmp", path, (unsigned long long)(seed >> 32));
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            int e = errno;
            free(name);
            return fail_with(GPT2_E_IO, err, err_len, "%s: %s", path, strerror(e));
        }
        FILE *f = fdopen(fd, "wb");
        if (!f) {
            close(fd);
            remove(name);
            free(name);
            return fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
        }
        *out = f;
        *tmp = name;
        return GPT2_OK;
    }
    free(name);
    return fail_with(GPT2_E_IO, err, err_len, "%s: cannot create a temporary file beside it", path);
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

/* llama-quantize's names for its file types, and the type that names each one's bulk */
static const struct { const char *name; int ftype; gpt2_type bulk; } recipes[] = {
    {"f32", KQ_FT_F32, GPT2_TYPE_F32},       {"f16", KQ_FT_F16, GPT2_TYPE_F16},
    {"bf16", KQ_FT_BF16, GPT2_TYPE_BF16},    {"q8_0", KQ_FT_Q8_0, GPT2_TYPE_Q8_0},
    {"q4_0", KQ_FT_Q4_0, GPT2_TYPE_Q4_0},    {"q4_1", KQ_FT_Q4_1, GPT2_TYPE_Q4_1},
    {"q5_0", KQ_FT_Q5_0, GPT2_TYPE_Q5_0},    {"q5_1", KQ_FT_Q5_1, GPT2_TYPE_Q5_1},
    {"q2_k", KQ_FT_Q2_K, GPT2_TYPE_Q2_K},    {"q3_k_m", KQ_FT_Q3_K_M, GPT2_TYPE_Q3_K},
    {"q4_k_m", KQ_FT_Q4_K_M, GPT2_TYPE_Q4_K}, {"q5_k_m", KQ_FT_Q5_K_M, GPT2_TYPE_Q5_K},
    {"q6_k", KQ_FT_Q6_K, GPT2_TYPE_Q6_K},
};

/* The block index of a tensor named "blk.N. ...", else -1. */
static int tensor_layer(const gguf_tensor *t) {
    if (t->name_len < 5 || memcmp(t->name, "blk.", 4) != 0) return -1;
    int l = 0;
    for (uint64_t i = 4; i < t->name_len && t->name[i] != '.'; i++) {
        if (t->name[i] < '0' || t->name[i] > '9' || l > 100000) return -1;
        l = l * 10 + (t->name[i] - '0');
    }
    return l;
}

/* rows [r0, r0 + n) of w, decoded and encoded as `type` into out (out_row bytes each);
   thread ith decodes into its own row of work */
#define QUANT_ROWS 256
typedef struct {
    const matrix *w;
    int64_t r0, n;
    gpt2_type type;
    size_t out_row;
    uint8_t *out;
    float *work;
} requant_task;

static void requant_worker(void *arg, int ith, int nth) {
    requant_task *a = arg;
    float *row = a->work + (size_t)ith * ((size_t)a->w->cols + 1);
    int64_t lo, hi;
    split_range(a->n, 1, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        dequantize_row(a->w, a->r0 + r, row);
        quantize_row(row, a->w->cols, a->type, a->out + (size_t)r * a->out_row);
    }
}

/* Rewrites in_path as out_path. With recipe >= 0 (an index in recipes[]) each tensor gets
   llama.cpp's type for it; otherwise every 2-D tensor becomes `type`. */
static gpt2_status quantize_file(const char *in_path, const char *out_path, int recipe,
                                 gpt2_type type, char *err, size_t err_len) {
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
        int want = (int)type;
        if (recipe >= 0) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(t->name_len < 255 ? t->name_len : 255), t->name);
            want = kq_recipe(recipes[recipe].ftype, name, tensor_layer(t), m->cfg.n_layer,
                             (int64_t)t->ne[1], (int64_t)t->ne[0]);
            if (want == KQ_KEEP) continue;
        }
        if (!ggml_type_nbytes((uint32_t)want, t->ne[0] * t->ne[1], t->ne[0], &sizes[i])) {
            s = fail_with(GPT2_E_UNSUPPORTED, err, err_len, "tensor '%.*s': rows of %llu cannot be %s",
                     (int)t->name_len, t->name, (unsigned long long)t->ne[0], gpt2_type_name((gpt2_type)want));
            goto done;
        }
        types[i] = (uint32_t)want;
        if ((int64_t)t->ne[0] > max_cols) max_cols = (int64_t)t->ne[0];
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n_workers = cpus > 1 ? (int)(cpus > 64 ? 64 : cpus) : 1;
    pool *workers = n_workers > 1 ? pool_new(n_workers) : NULL;
    uint8_t *batch = malloc((size_t)QUANT_ROWS * ((size_t)max_cols + 1) * sizeof(float)); /* out rows */
    row = malloc((size_t)n_workers * ((size_t)max_cols + 1) * sizeof(float)); /* one float row a thread */
    float *work = row;
    uint8_t *qrow = batch;
    char *tmp = NULL;
    if (!row || !batch) {
        free(batch);
        pool_free(workers);
        s = fail_with(GPT2_E_NOMEM, err, err_len, "out of memory");
        goto done;
    }
    FILE *f = NULL;
    s = create_beside(out_path, &f, &tmp, err, err_len);
    if (s) {
        free(qrow);
        pool_free(workers);
        goto done;
    }
    /* llama.cpp's general.file_type numbering */
    uint32_t ftype = 0;
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; i++)
        if (recipe >= 0 ? (int)i == recipe : recipes[i].bulk == type) ftype = (uint32_t)recipes[i].ftype;
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
            /* QUANT_ROWS rows at a time, split over the threads (each row on its own, so
               the bytes do not depend on the split), then written in order */
            for (int64_t r = 0; ok && r < w.rows; r += QUANT_ROWS) {
                int64_t nr = w.rows - r < QUANT_ROWS ? w.rows - r : QUANT_ROWS;
                requant_task rq = {&w, r, nr, (gpt2_type)types[i], out_row, batch, work};
                if (workers) pool_run(workers, requant_worker, &rq);
                else requant_worker(&rq, 0, 1);
                ok = write_all(f, batch, (size_t)nr * out_row);
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
    pool_free(workers);
done:
    free(types);
    free(sizes);
    free(row);
    gpt2_free(m);
    return s;
}

gpt2_status gpt2_quantize(const char *in_path, const char *out_path, gpt2_type type, char *err,
                          size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!in_path || !out_path) return fail_with(GPT2_E_ARG, err, err_len, "path is NULL");
    if ((unsigned)type > 31 || !kq_block_size((int)type))
        return fail_with(GPT2_E_ARG, err, err_len, "unsupported target type %d", (int)type);
    return quantize_file(in_path, out_path, -1, type, err, err_len);
}

gpt2_status gpt2_quantize_recipe(const char *in_path, const char *out_path, const char *recipe,
                                 char *err, size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!in_path || !out_path || !recipe) return fail_with(GPT2_E_ARG, err, err_len, "argument is NULL");
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; i++)
        if (!strcmp(recipe, recipes[i].name)) return quantize_file(in_path, out_path, (int)i, recipes[i].bulk, err, err_len);
    return fail_with(GPT2_E_ARG, err, err_len, "unknown recipe '%.32s' (f32, f16, bf16, q8_0, q4_0, "
                     "q4_1, q5_0, q5_1, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k)", recipe);
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
    float *buf = alloc64(n * sizeof(float));
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
 * §D Quantized block formats: q4_0 ... q6_K, plain and fast
 * ==========================================================================================
 * The formats that §3 introduces in "the other quantized formats": their layouts, exact
 * dequantization, int8 activations, the scalar reference dot products and the SIMD tiles
 * that must equal them (to rounding, and bit for bit across tile shapes), the quantizers
 * gpt2 quantize uses, and llama.cpp's choice of type per tensor.
 *
 * Block layouts.
 * Byte offsets within one block; every multi-byte field is little-endian; "f16" is an IEEE
 * half. A row is its blocks back to back (no padding). Values are listed as ggml's to_float
 * computes them, operation by operation (the order matters for bit-exactness).
 *
 * 32 numbers per block:
 *   q4_0  18 B  d f16 @0, qs[16] @2         x[j] = (lo(qs[j]) - 8) * d, x[j+16] = (hi(qs[j]) - 8) * d
 *   q4_1  20 B  d @0, m @2, qs[16] @4       x[j] = lo(qs[j]) * d + m,   x[j+16] = hi(qs[j]) * d + m
 *   q5_0  22 B  d @0, qh u32 @2, qs @6      x[j] = ((lo | bit j of qh << 4) - 16) * d,
 *                                           x[j+16] = ((hi | bit j+16 of qh << 4) - 16) * d
 *   q5_1  24 B  d @0, m @2, qh @4, qs @8    as q5_0 without the -16, then * d + m
 *   q8_0  34 B  d @0, qs int8[32] @2        x[j] = qs[j] * d
 * 256 numbers per block ("super-block"); l runs over 0..31:
 *   q2_K  84 B  scales[16] @0 (lo 4 bits: scale, hi 4 bits: min), qs[64] @16, d @80, dmin @82
 *               half h (0,1), pass p (0..3): x[128h + 32p + l] = (d * sc) * q - (dmin * mn)
 *               with q = (qs[32h + l] >> 2p) & 3 and sc, mn from scales[8h + 2p + (l >= 16)]
 *   q3_K  110 B hmask[32] @0, qs[64] @32, scales[12] @96 (16 six-bit scales), d @108
 *               x[128h + 32p + l] = (d * (sc - 32)) * (q - 4), q = ((qs[32h + l] >> 2p) & 3)
 *               | 4 if bit 4h + p of hmask[l]; sc number 8h + 2p + (l >= 16), unpacked as
 *               sc_j = (j < 8 ? scales[j] & 15 : scales[j - 8] >> 4) | ((scales[8 + j % 4] >> 2(j / 4)) & 3) << 4
 *   q4_K  144 B d @0, dmin @2, scales[12] @4 (8 six-bit scales and mins), qs[128] @16
 *               chunk c (0..3): x[64c + l] = (d * sc_2c) * lo(qs[32c + l]) - (dmin * mn_2c),
 *               x[64c + 32 + l] the same with hi() and sub-block 2c + 1; for sub-block j:
 *               j < 4: sc = s[j] & 63, mn = s[j + 4] & 63;
 *               else   sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4, mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4
 *   q5_K  176 B as q4_K with qh[32] @16 and qs[128] @48: the fifth bit (16) of x[64c + l] is
 *               bit 2c of qh[l], of x[64c + 32 + l] bit 2c + 1
 *   q6_K  210 B ql[128] @0, qh[64] @128, scales int8[16] @192, d @208; half h:
 *               x[128h + 32k + l] = (d * sc[8h + 2k + l / 16]) * (q - 32), q = 4 bits of ql | 2 of qh:
 *               k=0: lo(ql[64h + l]),      (qh[32h + l] >> 0) & 3    k=1: lo(ql[64h + 32 + l]), >> 2
 *               k=2: hi(ql[64h + l]),      >> 4                      k=3: hi(ql[64h + 32 + l]), >> 6
 * ---------------------------------------------------------------------------------------- */

#define KQ_QK 32   /* numbers per block of the small types */
#define KQ_QKK 256 /* numbers per super-block */

enum {
    KQ_Q4_0_BYTES = 18, KQ_Q4_1_BYTES = 20, KQ_Q5_0_BYTES = 22, KQ_Q5_1_BYTES = 24, KQ_Q8_0_BYTES = 34,
    KQ_Q2_K_BYTES = 84, KQ_Q3_K_BYTES = 110, KQ_Q4_K_BYTES = 144, KQ_Q5_K_BYTES = 176, KQ_Q6_K_BYTES = 210
};

static int kq_block_size(int type) {
    switch (type) {
    case GPT2_TYPE_F32: case GPT2_TYPE_F16: case GPT2_TYPE_BF16: return 1;
    case GPT2_TYPE_Q4_0: case GPT2_TYPE_Q4_1: case GPT2_TYPE_Q5_0: case GPT2_TYPE_Q5_1: case GPT2_TYPE_Q8_0: return KQ_QK;
    case GPT2_TYPE_Q2_K: case GPT2_TYPE_Q3_K: case GPT2_TYPE_Q4_K: case GPT2_TYPE_Q5_K: case GPT2_TYPE_Q6_K: return KQ_QKK;
    default: return 0;
    }
}

static int kq_block_bytes(int type) {
    switch (type) {
    case GPT2_TYPE_F32: return 4;
    case GPT2_TYPE_F16: case GPT2_TYPE_BF16: return 2;
    case GPT2_TYPE_Q4_0: return KQ_Q4_0_BYTES;
    case GPT2_TYPE_Q4_1: return KQ_Q4_1_BYTES;
    case GPT2_TYPE_Q5_0: return KQ_Q5_0_BYTES;
    case GPT2_TYPE_Q5_1: return KQ_Q5_1_BYTES;
    case GPT2_TYPE_Q8_0: return KQ_Q8_0_BYTES;
    case GPT2_TYPE_Q2_K: return KQ_Q2_K_BYTES;
    case GPT2_TYPE_Q3_K: return KQ_Q3_K_BYTES;
    case GPT2_TYPE_Q4_K: return KQ_Q4_K_BYTES;
    case GPT2_TYPE_Q5_K: return KQ_Q5_K_BYTES;
    case GPT2_TYPE_Q6_K: return KQ_Q6_K_BYTES;
    default: return 0;
    }
}

static int kq_row_bytes(int type, int64_t n, size_t *out) {
    int bs = kq_block_size(type), bb = kq_block_bytes(type);
    if (!bs || n <= 0 || n % bs) return -1;
    uint64_t nb = (uint64_t)(n / bs);
    if (nb > SIZE_MAX / (uint64_t)bb) return -1;
    if (out) *out = (size_t)(nb * (uint64_t)bb);
    return 0;
}

/* ---- halves and little-endian fields ----------------------------------------------------- */

static inline uint32_t kq_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void kq_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static float kq_bits_f32(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static uint32_t kq_f32_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static inline float kq_rdh(const uint8_t *p) { return f16_to_f32(rd16(p)); }
/* a float as it reads back after storing it as a half */
static inline float kq_via_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

/* round half to even without libm: adding 1.5 * 2^23 leaves no fraction bits; clamped to
   |v| <= 2^22 first (NaN gives 0), so that no input converts out of range */
static inline int kq_nearest(float v) {
    if (!(v > -4194304.0f && v < 4194304.0f)) v = v > 0.0f ? 4194304.0f : v < 0.0f ? -4194304.0f : 0.0f; /* NaN: 0 */
    return (int)((v + 12582912.0f) - 12582912.0f);
}

/* the 6-bit scale and min of sub-block j of a q4_K / q5_K block's 12 scale bytes */
static inline void kq_scale_min_k4(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* the 16 six-bit scales of a q3_K block, minus 32 */
static inline void kq_scales_q3k(const uint8_t *s, int sc[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
}

/* ==========================================================================================
 * Dequantization
 * ==========================================================================================
 * Each value is computed with ggml's operations in ggml's order: a product of two floats
 * (an integer converts exactly), then at most one addition or subtraction, each rounded to
 * float. Kept as separate statements so that a compiler that contracts only within one
 * expression (clang's default) cannot fuse them into an FMA; GCC does not contract in ISO C
 * mode or without an FMA target. See NOTES.md.
 * ---------------------------------------------------------------------------------------- */

static void kq_deq_q4_0(const uint8_t *b, float *y) {
    float d = kq_rdh(b);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 15) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

static void kq_deq_q4_1(const uint8_t *b, float *y) {
    float d = kq_rdh(b), m = kq_rdh(b + 2);
    for (int j = 0; j < 16; j++) {
        float p0 = (float)(b[4 + j] & 15) * d, p1 = (float)(b[4 + j] >> 4) * d;
        y[j] = p0 + m;
        y[j + 16] = p1 + m;
    }
}

static void kq_deq_q5_0(const uint8_t *b, float *y) {
    float d = kq_rdh(b);
    uint32_t qh = kq_rd32(b + 2);
    for (int j = 0; j < 16; j++) {
        int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)(((b[6 + j] & 15) | h0) - 16) * d;
        y[j + 16] = (float)(((b[6 + j] >> 4) | h1) - 16) * d;
    }
}

static void kq_deq_q5_1(const uint8_t *b, float *y) {
    float d = kq_rdh(b), m = kq_rdh(b + 2);
    uint32_t qh = kq_rd32(b + 4);
    for (int j = 0; j < 16; j++) {
        int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
        float p0 = (float)((b[8 + j] & 15) | h0) * d, p1 = (float)((b[8 + j] >> 4) | h1) * d;
        y[j] = p0 + m;
        y[j + 16] = p1 + m;
    }
}

static void kq_deq_q8_0(const uint8_t *b, float *y) {
    float d = kq_rdh(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void kq_deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = kq_rdh(b + 80), dmin = kq_rdh(b + 82);
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                int s = sc[8 * h + 2 * p + l / 16];
                float dl = d * (float)(s & 15), ml = dmin * (float)(s >> 4);
                float v = dl * (float)((qs[32 * h + l] >> (2 * p)) & 3);
                y[128 * h + 32 * p + l] = v - ml;
            }
}

static void kq_deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32;
    float d = kq_rdh(b + 108);
    int sc[16];
    kq_scales_q3k(b + 96, sc);
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                int q = ((qs[32 * h + l] >> (2 * p)) & 3) - ((hm[l] >> (4 * h + p)) & 1 ? 0 : 4);
                float dl = d * (float)sc[8 * h + 2 * p + l / 16];
                y[128 * h + 32 * p + l] = dl * (float)q;
            }
}

static void kq_deq_q4_k(const uint8_t *b, float *y) {
    float d = kq_rdh(b), dmin = kq_rdh(b + 2);
    const uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        kq_scale_min_k4(b + 4, 2 * c, &sc0, &mn0);
        kq_scale_min_k4(b + 4, 2 * c + 1, &sc1, &mn1);
        float d0 = d * (float)sc0, m0 = dmin * (float)mn0;
        float d1 = d * (float)sc1, m1 = dmin * (float)mn1;
        for (int l = 0; l < 32; l++) {
            float v0 = d0 * (float)(qs[32 * c + l] & 15), v1 = d1 * (float)(qs[32 * c + l] >> 4);
            y[64 * c + l] = v0 - m0;
            y[64 * c + 32 + l] = v1 - m1;
        }
    }
}

static void kq_deq_q5_k(const uint8_t *b, float *y) {
    float d = kq_rdh(b), dmin = kq_rdh(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int c = 0; c < 4; c++) {
        int sc0, mn0, sc1, mn1;
        kq_scale_min_k4(b + 4, 2 * c, &sc0, &mn0);
        kq_scale_min_k4(b + 4, 2 * c + 1, &sc1, &mn1);
        float d0 = d * (float)sc0, m0 = dmin * (float)mn0;
        float d1 = d * (float)sc1, m1 = dmin * (float)mn1;
        for (int l = 0; l < 32; l++) {
            int q0 = (qs[32 * c + l] & 15) | ((qh[l] >> (2 * c)) & 1) << 4;
            int q1 = (qs[32 * c + l] >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4;
            float v0 = d0 * (float)q0, v1 = d1 * (float)q1;
            y[64 * c + l] = v0 - m0;
            y[64 * c + 32 + l] = v1 - m1;
        }
    }
}

/* the four 6-bit numbers of q6_K at positions 128h + 32k + l, minus 32 */
static inline int kq_q6k_q(const uint8_t *b, int h, int k, int l) {
    const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
    int lo = k & 1 ? ql[32 + l] : ql[l];
    lo = k & 2 ? lo >> 4 : lo & 15;
    return (lo | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
}

static void kq_deq_q6_k(const uint8_t *b, float *y) {
    float d = kq_rdh(b + 208);
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                float dl = d * (float)sc[8 * h + 2 * k + l / 16];
                y[128 * h + 32 * k + l] = dl * (float)kq_q6k_q(b, h, k, l);
            }
}

static int kq_dequantize_row(int type, const uint8_t *src, int64_t n, float *out) {
    size_t rb;
    if (!src || !out || kq_row_bytes(type, n, &rb)) return -1;
    void (*blk)(const uint8_t *, float *) = NULL;
    switch (type) {
    case GPT2_TYPE_F32: memcpy(out, src, (size_t)n * 4); return 0;
    case GPT2_TYPE_F16:
        for (int64_t i = 0; i < n; i++) out[i] = kq_rdh(src + 2 * i);
        return 0;
    case GPT2_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) out[i] = kq_bits_f32((uint32_t)rd16(src + 2 * i) << 16);
        return 0;
    case GPT2_TYPE_Q4_0: blk = kq_deq_q4_0; break;
    case GPT2_TYPE_Q4_1: blk = kq_deq_q4_1; break;
    case GPT2_TYPE_Q5_0: blk = kq_deq_q5_0; break;
    case GPT2_TYPE_Q5_1: blk = kq_deq_q5_1; break;
    case GPT2_TYPE_Q8_0: blk = kq_deq_q8_0; break;
    case GPT2_TYPE_Q2_K: blk = kq_deq_q2_k; break;
    case GPT2_TYPE_Q3_K: blk = kq_deq_q3_k; break;
    case GPT2_TYPE_Q4_K: blk = kq_deq_q4_k; break;
    case GPT2_TYPE_Q5_K: blk = kq_deq_q5_k; break;
    case GPT2_TYPE_Q6_K: blk = kq_deq_q6_k; break;
    default: return -1;
    }
    int bs = kq_block_size(type), bb = kq_block_bytes(type);
    for (int64_t i = 0; i < n / bs; i++) blk(src + (size_t)i * (size_t)bb, out + i * bs);
    return 0;
}

/* ==========================================================================================
 * Activations (see kq.h for the two layouts)
 * ==========================================================================================
 * B8 follows the engine's q8_group rule (d = max|x| / 127 kept as a float, round half to
 * even), so one quantized row serves q8_0 and every 32-block type. K8 follows ggml's Q8_K:
 * the element of largest magnitude m maps to -127 exactly. In both, NaN goes to 127 (the
 * clamps compare before rounding) and infinities saturate, so no input is undefined.
 * ---------------------------------------------------------------------------------------- */

static inline int8_t kq_round127(float r) {
    r = r < 127.0f ? r : 127.0f;
    r = r > -127.0f ? r : -127.0f;
    return (int8_t)kq_nearest(r);
}

_Static_assert(sizeof(q8_group) == 192 && sizeof(q8k_record) == 320, "activation layouts");

static bool kq_is_b8(int type) {
    return type == GPT2_TYPE_Q4_0 || type == GPT2_TYPE_Q4_1 || type == GPT2_TYPE_Q5_0 || type == GPT2_TYPE_Q5_1 ||
           type == GPT2_TYPE_Q8_0;
}
static bool kq_is_k(int type) {
    return type == GPT2_TYPE_Q2_K || type == GPT2_TYPE_Q3_K || type == GPT2_TYPE_Q4_K || type == GPT2_TYPE_Q5_K ||
           type == GPT2_TYPE_Q6_K;
}

static size_t kq_act_bytes(int type, int64_t n) {
    if (kq_row_bytes(type, n, NULL)) return 0;
    if (kq_is_b8(type)) return (size_t)((n + 63) / 64) * sizeof(q8_group);
    if (kq_is_k(type)) return (size_t)(n / KQ_QKK) * sizeof(q8k_record);
    return 0;
}

static void kq_quantize_b8(const float *x, int64_t n, q8_group *g) {
    for (int64_t b = 0; b < (n + 63) / 64 * 2; b++) {
        q8_group *gr = g + b / 2;
        int half = (int)(b % 2);
        int8_t *q = gr->q + 32 * half;
        float d = 0.0f;
        if (b * KQ_QK < n) {
            const float *v = x + b * KQ_QK;
            float amax = 0.0f;
            for (int i = 0; i < KQ_QK; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
            d = amax / 127.0f;
            float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (int i = 0; i < KQ_QK; i++) q[i] = kq_round127(v[i] * id);
        } else {
            memset(q, 0, KQ_QK);
        }
        for (int j = 0; j < 8; j++) {
            gr->d[8 * half + j] = d;
            gr->corr[8 * half + j] = -128 * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
        }
    }
}

static void kq_quantize_k8(const float *x, int64_t n, q8k_record *y) {
    for (int64_t b = 0; b < n / KQ_QKK; b++, x += KQ_QKK, y++) {
        memset(y, 0, sizeof *y);
        float amax = 0.0f, m = 0.0f;
        for (int i = 0; i < KQ_QKK; i++)
            if (fabsf(x[i]) > amax) {
                amax = fabsf(x[i]);
                m = x[i];
            }
        if (amax > 0.0f && amax <= FLT_MAX) {
            float iscale = -127.0f / m;
            for (int i = 0; i < KQ_QKK; i++) y->q[i] = kq_round127(iscale * x[i]);
            y->d = 1.0f / iscale;
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += y->q[16 * j + i];
            y->bsum[j] = (int16_t)s;
        }
    }
}

/* what rounding to y left over: x - d * q per number (two_pass's second row) */
static void kq_residual_k8(const float *x, const q8k_record *y, int64_t n, float *r) {
    for (int64_t i = 0; i < n; i++) r[i] = x[i] - y[i / KQ_QKK].d * (float)y[i / KQ_QKK].q[i % KQ_QKK];
}

REFERENCE static int kq_quantize_act(int type, const float *x, int64_t n, void *out) {
    if (!x || !out || !kq_act_bytes(type, n)) return -1;
    if (kq_is_b8(type)) kq_quantize_b8(x, n, (q8_group *)out);
    else kq_quantize_k8(x, n, (q8k_record *)out);
    return 0;
}

/* ==========================================================================================
 * Scalar reference dot products
 * ==========================================================================================
 * One (row, token) pair at a time, blocks in order, one float accumulator:
 *   q4_0 q5_0 q8_0   acc += (d_w * d_x) * isum              isum = sum of w_int * q_x
 *   q4_1 q5_1        acc += (d_w * d_x) * isum; acc += (m_w * d_x) * xsum     (w_int >= 0)
 *   q2_K q4_K q5_K   per 256: S = sum_j sc_j * isum_j, M = sum_j mn_j * xsum_j (int32, exact);
 *                    acc += (d_x * d_w) * S; acc -= (d_x * dmin_w) * M
 *   q3_K q6_K        per 256: S = sum_j sc_j * isum_j (signed scales and numbers);
 *                    acc += (d_x * d_w) * S
 * where w_int is the block's integer (offset included) and xsum the sum of the activation
 * integers it meets. Every integer sum is exact (|S| < 2^31 for any input).
 * ---------------------------------------------------------------------------------------- */

/* the integer weights of one block, offset included, in element order */
static void kq_ints_q4_0(const uint8_t *b, int *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = (b[2 + j] & 15) - 8;
        q[j + 16] = (b[2 + j] >> 4) - 8;
    }
}
static void kq_ints_q4_1(const uint8_t *b, int *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = b[4 + j] & 15;
        q[j + 16] = b[4 + j] >> 4;
    }
}
static void kq_ints_q5(const uint8_t *qs, uint32_t qh, int off, int *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = ((qs[j] & 15) | (int)((qh >> j) & 1) << 4) - off;
        q[j + 16] = ((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - off;
    }
}
static void kq_ints_q5_0(const uint8_t *b, int *q) { kq_ints_q5(b + 6, kq_rd32(b + 2), 16, q); }
static void kq_ints_q5_1(const uint8_t *b, int *q) { kq_ints_q5(b + 8, kq_rd32(b + 4), 0, q); }
static void kq_ints_q8_0(const uint8_t *b, int *q) {
    for (int j = 0; j < 32; j++) q[j] = (int8_t)b[2 + j];
}

static float kq_dot1_b8(int type, const uint8_t *w, const q8_group *x, int64_t n) {
    float acc = 0.0f;
    int q[32];
    const int bb = kq_block_bytes(type);
    const bool has_min = type == GPT2_TYPE_Q4_1 || type == GPT2_TYPE_Q5_1;
    for (int64_t b = 0; b < n / KQ_QK; b++, w += bb) {
        const q8_group *g = x + b / 2;
        const int8_t *qx = g->q + 32 * (b % 2);
        const float dx = g->d[8 * (b % 2)];
        switch (type) {
        case GPT2_TYPE_Q4_0: kq_ints_q4_0(w, q); break;
        case GPT2_TYPE_Q4_1: kq_ints_q4_1(w, q); break;
        case GPT2_TYPE_Q5_0: kq_ints_q5_0(w, q); break;
        case GPT2_TYPE_Q5_1: kq_ints_q5_1(w, q); break;
        default: kq_ints_q8_0(w, q); break;
        }
        int32_t isum = 0, xsum = 0;
        for (int i = 0; i < 32; i++) {
            isum += q[i] * qx[i];
            xsum += qx[i];
        }
        acc += (kq_rdh(w) * dx) * (float)isum;
        if (has_min) acc += (kq_rdh(w + 2) * dx) * (float)xsum;
    }
    return acc;
}

/* the integers of a super-block in element order, with their scales per 16 numbers and
   (for the types with mins) mins per 16; returns whether the type has mins */
static bool kq_ints_k(int type, const uint8_t *b, int *q, int *sc16, int *mn16, float *d, float *dmin) {
    switch (type) {
    case GPT2_TYPE_Q2_K:
        for (int h = 0; h < 2; h++)
            for (int p = 0; p < 4; p++)
                for (int l = 0; l < 32; l++) q[128 * h + 32 * p + l] = (b[16 + 32 * h + l] >> (2 * p)) & 3;
        for (int j = 0; j < 16; j++) {
            sc16[j] = b[j] & 15;
            mn16[j] = b[j] >> 4;
        }
        *d = kq_rdh(b + 80);
        *dmin = kq_rdh(b + 82);
        return true;
    case GPT2_TYPE_Q3_K:
        for (int h = 0; h < 2; h++)
            for (int p = 0; p < 4; p++)
                for (int l = 0; l < 32; l++)
                    q[128 * h + 32 * p + l] = ((b[32 + 32 * h + l] >> (2 * p)) & 3) - ((b[l] >> (4 * h + p)) & 1 ? 0 : 4);
        kq_scales_q3k(b + 96, sc16);
        *d = kq_rdh(b + 108);
        return false;
    case GPT2_TYPE_Q4_K:
    case GPT2_TYPE_Q5_K: {
        const uint8_t *qs = b + (type == GPT2_TYPE_Q4_K ? 16 : 48), *qh = b + 16;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = qs[32 * c + l] & 15;
                q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
                if (type == GPT2_TYPE_Q5_K) {
                    q[64 * c + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
                    q[64 * c + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                }
            }
        for (int j = 0; j < 8; j++) {
            int s, m;
            kq_scale_min_k4(b + 4, j, &s, &m);
            sc16[2 * j] = sc16[2 * j + 1] = s;
            mn16[2 * j] = mn16[2 * j + 1] = m;
        }
        *d = kq_rdh(b);
        *dmin = kq_rdh(b + 2);
        return true;
    }
    default: /* GPT2_TYPE_Q6_K */
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++) q[128 * h + 32 * k + l] = kq_q6k_q(b, h, k, l);
        for (int j = 0; j < 16; j++) sc16[j] = (int8_t)b[192 + j];
        *d = kq_rdh(b + 208);
        return false;
    }
}

static float kq_dot1_k(int type, const uint8_t *w, const q8k_record *x, int64_t n) {
    float acc = 0.0f;
    int q[256], sc[16], mn[16];
    const int bb = kq_block_bytes(type);
    for (int64_t b = 0; b < n / KQ_QKK; b++, w += bb, x++) {
        float d, dmin = 0.0f;
        bool has_min = kq_ints_k(type, w, q, sc, mn, &d, &dmin);
        int32_t S = 0, M = 0;
        for (int j = 0; j < 16; j++) {
            int32_t s = 0;
            for (int i = 0; i < 16; i++) s += q[16 * j + i] * x->q[16 * j + i];
            S += sc[j] * s;
            if (has_min) M += mn[j] * x->bsum[j];
        }
        /* a product, then a sum, never fused: AVX2's K tiles take the same two steps */
        const float p = (x->d * d) * (float)S;
        acc += p;
        if (has_min) {
            const float pm = (x->d * dmin) * (float)M;
            acc -= pm;
        }
    }
    return acc;
}

#define KQ_DEFINE_DOT_SCALAR(NAME, TYPE, ONE, XT)                                                 \
    static void NAME(const uint8_t *w, size_t row_bytes, int nr, const void *xq, size_t ldx,  \
                     int nt, int64_t n, float *out, size_t ldo) {                             \
        for (int t = 0; t < nt; t++)                                                          \
            for (int r = 0; r < nr; r++)                                                      \
                out[(size_t)t * ldo + r] = ONE(TYPE, w + (size_t)r * row_bytes,               \
                                               (const XT *)((const uint8_t *)xq + (size_t)t * ldx), n); \
    }
KQ_DEFINE_DOT_SCALAR(kq_dot_q4_0_scalar, GPT2_TYPE_Q4_0, kq_dot1_b8, q8_group)
KQ_DEFINE_DOT_SCALAR(kq_dot_q4_1_scalar, GPT2_TYPE_Q4_1, kq_dot1_b8, q8_group)
KQ_DEFINE_DOT_SCALAR(kq_dot_q5_0_scalar, GPT2_TYPE_Q5_0, kq_dot1_b8, q8_group)
KQ_DEFINE_DOT_SCALAR(kq_dot_q5_1_scalar, GPT2_TYPE_Q5_1, kq_dot1_b8, q8_group)
KQ_DEFINE_DOT_SCALAR(kq_dot_q8_0_scalar, GPT2_TYPE_Q8_0, kq_dot1_b8, q8_group)
KQ_DEFINE_DOT_SCALAR(kq_dot_q2_k_scalar, GPT2_TYPE_Q2_K, kq_dot1_k, q8k_record)
KQ_DEFINE_DOT_SCALAR(kq_dot_q3_k_scalar, GPT2_TYPE_Q3_K, kq_dot1_k, q8k_record)
KQ_DEFINE_DOT_SCALAR(kq_dot_q4_k_scalar, GPT2_TYPE_Q4_K, kq_dot1_k, q8k_record)
KQ_DEFINE_DOT_SCALAR(kq_dot_q5_k_scalar, GPT2_TYPE_Q5_K, kq_dot1_k, q8k_record)
KQ_DEFINE_DOT_SCALAR(kq_dot_q6_k_scalar, GPT2_TYPE_Q6_K, kq_dot1_k, q8k_record)

/* ==========================================================================================
 * Quantization: float rows -> blocks
 * ==========================================================================================
 * Every type minimises the plain squared error of its block (the measure the RMSE is taken
 * in). Per group of numbers that share a scale:
 *   - a grid of beam_cand scales (the largest number mapped near each end of the integer
 *     range), each rounded to integers and refitted by least squares, the best kept, then a
 *     few rounds of re-rounding and refitting (Lloyd iterations);
 * then, for the K-quants, the per-group scales are quantized against a super-block scale,
 * and each group tries its neighbouring integer scales (and mins) with its numbers
 * re-rounded, keeping the pair whose dequantized values (computed as dequantization
 * computes them) are kq_nearest. Stored f16 scales are rounded first and the integers chosen
 * against the rounded value.
 * ---------------------------------------------------------------------------------------- */

static inline int kq_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* x ~ s * L, L in [lo, hi]: returns s, fills L. lo < 0 < hi. */
static float kq_fit_sym(const float *x, int n, int lo, int hi, int *L) {
    float amax = 0.0f, mx = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            mx = x[i];
        }
    if (!(amax > 1e-30f) || amax > FLT_MAX) { /* zero (or not finite): nothing to fit */
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float best = -1.0f, best_s = 0.0f;
    int tmp[256];
    for (int side = 0; side < 2; side++)
        for (int k = -6; k <= 9; k++) {
            float target = (side ? (float)hi : (float)lo) + 0.1f * (float)k;
            float is = target / mx;
            double sxl = 0, sll = 0;
            for (int i = 0; i < n; i++) {
                int l = kq_clampi(kq_nearest(x[i] * is), lo, hi);
                sxl += (double)x[i] * l;
                sll += (double)l * l;
            }
            if (sll > 0 && sxl * sxl / sll > best) {
                best = (float)(sxl * sxl / sll);
                best_s = (float)(sxl / sll);
            }
        }
    /* Lloyd: re-round against the fitted scale, refit, while the error falls */
    float s = best_s;
    double err_best = INFINITY;
    for (int it = 0; it < 4 && s != 0.0f; it++) {
        double sxl = 0, sll = 0, err = 0;
        for (int i = 0; i < n; i++) {
            tmp[i] = kq_clampi(kq_nearest(x[i] / s), lo, hi);
            double e = x[i] - (double)s * tmp[i];
            err += e * e;
        }
        if (err >= err_best) break;
        err_best = err;
        memcpy(L, tmp, (size_t)n * sizeof *L);
        best_s = s;
        for (int i = 0; i < n; i++) {
            sxl += (double)x[i] * tmp[i];
            sll += (double)tmp[i] * tmp[i];
        }
        if (sll <= 0) break;
        s = (float)(sxl / sll);
    }
    if (err_best == INFINITY)
        for (int i = 0; i < n; i++) L[i] = 0;
    return best_s;
}

/* x ~ s * L + m, L in [0, nmax], s >= 0; with min_le0, m <= 0. Returns s, fills *m and L. */
static float kq_fit_asym(const float *x, int n, int nmax, bool min_le0, float *m, int *L) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (min_le0 && lo > 0.0f) lo = 0.0f;
    if (!(hi - lo > 1e-30f) || !(hi - lo <= FLT_MAX)) { /* flat (or not finite) */
        for (int i = 0; i < n; i++) L[i] = 0;
        *m = isfinite(lo) ? lo : 0.0f;
        return 0.0f;
    }
    double sx = 0;
    for (int i = 0; i < n; i++) sx += x[i];
    float best_s = 0.0f, best_m = lo;
    double best_err = INFINITY;
    int tmp[256];
    /* candidates from the range, then Lloyd rounds from the best one */
    for (int k = -10; k <= 10 + 4; k++) {
        float s, mm;
        if (k <= 10) {
            float is = ((float)nmax + 0.1f * (float)k) / (hi - lo);
            for (int i = 0; i < n; i++) tmp[i] = kq_clampi(kq_nearest((x[i] - lo) * is), 0, nmax);
        } else {
            if (best_s <= 0.0f) break;
            for (int i = 0; i < n; i++) tmp[i] = kq_clampi(kq_nearest((x[i] - best_m) / best_s), 0, nmax);
        }
        double sl = 0, sll = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            sl += tmp[i];
            sll += (double)tmp[i] * tmp[i];
            sxl += (double)x[i] * tmp[i];
        }
        double D = n * sll - sl * sl;
        if (D > 0) {
            s = (float)((n * sxl - sl * sx) / D);
            mm = (float)((sll * sx - sl * sxl) / D);
        } else if (sl > 0) { /* all the integers equal, not 0: the scale alone */
            s = (float)(sxl / sll);
            mm = 0.0f;
        } else { /* all 0: the offset alone */
            s = 0.0f;
            mm = (float)(sx / n);
        }
        if (min_le0 && mm > 0.0f) {
            mm = 0.0f;
            s = sll > 0 ? (float)(sxl / sll) : 0.0f;
        }
        if (s < 0.0f) continue;
        double err = 0;
        for (int i = 0; i < n; i++) {
            double e = x[i] - ((double)s * tmp[i] + mm);
            err += e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_m = mm;
            memcpy(L, tmp, (size_t)n * sizeof *L);
        } else if (k > 10) {
            break;
        }
    }
    if (best_err == INFINITY) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *m = lo;
        return 0.0f;
    }
    *m = best_m;
    return best_s;
}

/* ---- 32-number blocks ---- */

static void kq_quant_q4_0(const float *x, uint8_t *b) {
    int L[32];
    float d = kq_via_f16(kq_fit_sym(x, 32, -8, 7, L));
    kq_wr16(b, f32_to_f16(d));
    for (int i = 0; i < 32; i++) L[i] = d != 0.0f ? kq_clampi(kq_nearest(x[i] / d), -8, 7) + 8 : 8;
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(L[j] | L[j + 16] << 4);
}

static void kq_quant_q5_0(const float *x, uint8_t *b) {
    int L[32];
    float d = kq_via_f16(kq_fit_sym(x, 32, -16, 15, L));
    kq_wr16(b, f32_to_f16(d));
    uint32_t qh = 0;
    for (int i = 0; i < 32; i++) {
        L[i] = d != 0.0f ? kq_clampi(kq_nearest(x[i] / d), -16, 15) + 16 : 16;
        qh |= (uint32_t)(L[i] >> 4) << i;
    }
    for (int j = 0; j < 4; j++) b[2 + j] = (uint8_t)(qh >> (8 * j));
    for (int j = 0; j < 16; j++) b[6 + j] = (uint8_t)((L[j] & 15) | (L[j + 16] & 15) << 4);
}

/* q4_1 (nmax 15) and q5_1 (nmax 31): d, m as halves, then the integers against them */
static void kq_quant_q_1(const float *x, uint8_t *b, int nmax) {
    int L[32];
    float m, s = kq_fit_asym(x, 32, nmax, false, &m, L);
    float d = kq_via_f16(s), mh = kq_via_f16(m);
    kq_wr16(b, f32_to_f16(d));
    kq_wr16(b + 2, f32_to_f16(mh));
    for (int i = 0; i < 32; i++) L[i] = d != 0.0f ? kq_clampi(kq_nearest((x[i] - mh) / d), 0, nmax) : 0;
    if (nmax == 15) {
        for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(L[j] | L[j + 16] << 4);
        return;
    }
    uint32_t qh = 0;
    for (int i = 0; i < 32; i++) qh |= (uint32_t)(L[i] >> 4) << i;
    for (int j = 0; j < 4; j++) b[4 + j] = (uint8_t)(qh >> (8 * j));
    for (int j = 0; j < 16; j++) b[8 + j] = (uint8_t)((L[j] & 15) | (L[j + 16] & 15) << 4);
}

static void kq_quant_q8_0(const float *x, uint8_t *b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    float d = amax <= FLT_MAX ? kq_via_f16(amax / 127.0f) : 0.0f;
    kq_wr16(b, f32_to_f16(d));
    for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)(d != 0.0f ? kq_clampi(kq_nearest(x[i] / d), -128, 127) : 0);
}

/* ---- super-blocks with scales and mins: q2_K (16 x 16, 4-bit), q4_K / q5_K (8 x 32, 6-bit) ----
 * value = (d * sc) * L - (dmin * mn). Fills sc[], mn[], L[256]; returns d and *dmin (halves). */

/* the integers of a group against fixed scales, and their squared error */
static double kq_group_err_min(const float *x, int n, int nmax, float ds, float dm, int *L) {
    double err = 0;
    for (int i = 0; i < n; i++) {
        int l = ds != 0.0f ? kq_clampi(kq_nearest((x[i] + dm) / ds), 0, nmax) : 0;
        float v = ds * (float)l;
        v = v - dm;
        double e = (double)x[i] - v;
        err += e * e;
        L[i] = l;
    }
    return err;
}

static float kq_encode_kmin(const float *x, int ngroup, int glen, int nmax, int smax, int *sc,
                         int *mn, int *L, float *dmin_out) {
    float s[16], off[16], max_s = 0.0f, max_o = 0.0f;
    for (int j = 0; j < ngroup; j++) {
        float m;
        s[j] = kq_fit_asym(x + glen * j, glen, nmax, true, &m, L + glen * j);
        off[j] = -m;
        max_s = s[j] > max_s ? s[j] : max_s;
        max_o = off[j] > max_o ? off[j] : max_o;
    }
    double best_total = INFINITY;
    float best_d = 0.0f, best_dmin = 0.0f;
    int tl[256], bsc[16], bmn[16], bl[256];
    static const float tries[3] = {1.0f, 0.985f, 1.015f};
    for (int c = 0; c < 3; c++) {
        float d = kq_via_f16(max_s / (float)smax * tries[c]);
        float dmin = kq_via_f16(max_o / (float)smax);
        if (!isfinite(d) || !isfinite(dmin)) continue;
        double total = 0;
        for (int j = 0; j < ngroup; j++) {
            const float *xg = x + glen * j;
            int s0 = d > 0.0f ? kq_clampi(kq_nearest(s[j] / d), 0, smax) : 0;
            int m0 = dmin > 0.0f ? kq_clampi(kq_nearest(off[j] / dmin), 0, smax) : 0;
            double gbest = INFINITY;
            for (int a = s0 - 1; a <= s0 + 1; a++) {
                if (a < 0 || a > smax || (a != s0 && d == 0.0f)) continue;
                for (int m = m0 - 1; m <= m0 + 1; m++) {
                    if (m < 0 || m > smax || (m != m0 && dmin == 0.0f)) continue;
                    double e = kq_group_err_min(xg, glen, nmax, d * (float)a, dmin * (float)m, tl);
                    if (e < gbest) {
                        gbest = e;
                        bsc[j] = a;
                        bmn[j] = m;
                        memcpy(bl + glen * j, tl, (size_t)glen * sizeof *tl);
                    }
                }
            }
            total += gbest;
        }
        if (total < best_total) {
            best_total = total;
            best_d = d;
            best_dmin = dmin;
            memcpy(sc, bsc, (size_t)ngroup * sizeof *sc);
            memcpy(mn, bmn, (size_t)ngroup * sizeof *mn);
            memcpy(L, bl, 256 * sizeof *L);
        }
        if (max_s == 0.0f) break; /* the tries differ only in d */
    }
    if (best_total == INFINITY) { /* not finite input: an all-zero block */
        memset(sc, 0, (size_t)ngroup * sizeof *sc);
        memset(mn, 0, (size_t)ngroup * sizeof *mn);
        memset(L, 0, 256 * sizeof *L);
    }
    *dmin_out = best_dmin;
    return best_d;
}

static void kq_quant_q2_k(const float *x, uint8_t *b) {
    int sc[16], mn[16], L[256];
    float dmin, d = kq_encode_kmin(x, 16, 16, 3, 15, sc, mn, L, &dmin);
    for (int j = 0; j < 16; j++) b[j] = (uint8_t)(sc[j] | mn[j] << 4);
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            int v = 0;
            for (int p = 0; p < 4; p++) v |= L[128 * h + 32 * p + l] << (2 * p);
            b[16 + 32 * h + l] = (uint8_t)v;
        }
    kq_wr16(b + 80, f32_to_f16(d));
    kq_wr16(b + 82, f32_to_f16(dmin));
}

/* the 12 scale bytes of q4_K / q5_K from 8 six-bit scales and mins */
static void kq_pack_scales_k4(uint8_t *s, const int *sc, const int *mn) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

static void kq_quant_q4_k(const float *x, uint8_t *b) {
    int sc[8], mn[8], L[256];
    float dmin, d = kq_encode_kmin(x, 8, 32, 15, 63, sc, mn, L, &dmin);
    kq_wr16(b, f32_to_f16(d));
    kq_wr16(b + 2, f32_to_f16(dmin));
    kq_pack_scales_k4(b + 4, sc, mn);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) b[16 + 32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
}

static void kq_quant_q5_k(const float *x, uint8_t *b) {
    int sc[8], mn[8], L[256];
    float dmin, d = kq_encode_kmin(x, 8, 32, 31, 63, sc, mn, L, &dmin);
    kq_wr16(b, f32_to_f16(d));
    kq_wr16(b + 2, f32_to_f16(dmin));
    kq_pack_scales_k4(b + 4, sc, mn);
    memset(b + 16, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int a = L[64 * c + l], z = L[64 * c + 32 + l];
            b[48 + 32 * c + l] = (uint8_t)((a & 15) | (z & 15) << 4);
            b[16 + l] |= (uint8_t)((a >> 4) << (2 * c) | (z >> 4) << (2 * c + 1));
        }
}

/* ---- super-blocks with signed scales: q3_K (6-bit, -32..31; numbers -4..3) and q6_K
 * (8-bit, -128..127; numbers -32..31), 16 groups of 16: value = (d * sc) * L ---- */
static float kq_encode_ksym(const float *x, int lo, int hi, int slo, int shi, int *sc, int *L) {
    float s[16], big = 0.0f;
    for (int j = 0; j < 16; j++) {
        s[j] = kq_fit_sym(x + 16 * j, 16, lo, hi, L + 16 * j);
        if (fabsf(s[j]) > fabsf(big)) big = s[j];
    }
    double best_total = INFINITY;
    float best_d = 0.0f;
    int tl[16], bsc[16], bl[256];
    static const float tries[3] = {1.0f, 0.99f, 1.01f};
    for (int c = 0; c < 3 && big != 0.0f; c++) {
        float d = kq_via_f16(big / (float)slo * tries[c]);
        if (!isfinite(d) || d == 0.0f) continue;
        double total = 0;
        for (int j = 0; j < 16; j++) {
            const float *xg = x + 16 * j;
            int s0 = kq_clampi(kq_nearest(s[j] / d), slo, shi);
            double gbest = INFINITY;
            for (int a = s0 - 1; a <= s0 + 1; a++) {
                if (a < slo || a > shi) continue;
                float ds = d * (float)a;
                double e = 0;
                for (int i = 0; i < 16; i++) {
                    tl[i] = ds != 0.0f ? kq_clampi(kq_nearest(xg[i] / ds), lo, hi) : 0;
                    double r = (double)xg[i] - ds * (float)tl[i];
                    e += r * r;
                }
                if (e < gbest) {
                    gbest = e;
                    bsc[j] = a;
                    memcpy(bl + 16 * j, tl, sizeof tl);
                }
            }
            total += gbest;
        }
        if (total < best_total) {
            best_total = total;
            best_d = d;
            memcpy(sc, bsc, sizeof bsc);
            memcpy(L, bl, sizeof bl);
        }
    }
    if (best_total == INFINITY) {
        memset(sc, 0, 16 * sizeof *sc);
        memset(L, 0, 256 * sizeof *L);
        return 0.0f;
    }
    return best_d;
}

static void kq_quant_q3_k(const float *x, uint8_t *b) {
    int sc[16], L[256];
    float d = kq_encode_ksym(x, -4, 3, -32, 31, sc, L);
    memset(b, 0, KQ_Q3_K_BYTES);
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                int u = L[128 * h + 32 * p + l] + 4;
                b[32 + 32 * h + l] |= (uint8_t)((u & 3) << (2 * p));
                b[l] |= (uint8_t)((u >> 2) << (4 * h + p));
            }
    for (int j = 0; j < 16; j++) {
        int u = sc[j] + 32;
        b[96 + (j % 8)] |= (uint8_t)((u & 15) << (j < 8 ? 0 : 4));
        b[96 + 8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
    }
    kq_wr16(b + 108, f32_to_f16(d));
}

static void kq_quant_q6_k(const float *x, uint8_t *b) {
    int sc[16], L[256];
    float d = kq_encode_ksym(x, -32, 31, -128, 127, sc, L);
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const int *u = L + 128 * h;
            int u0 = u[l] + 32, u1 = u[32 + l] + 32, u2 = u[64 + l] + 32, u3 = u[96 + l] + 32;
            b[64 * h + l] = (uint8_t)((u0 & 15) | (u2 & 15) << 4);
            b[64 * h + 32 + l] = (uint8_t)((u1 & 15) | (u3 & 15) << 4);
            b[128 + 32 * h + l] = (uint8_t)(u0 >> 4 | (u1 >> 4) << 2 | (u2 >> 4) << 4 | (u3 >> 4) << 6);
        }
    for (int j = 0; j < 16; j++) b[192 + j] = (uint8_t)(int8_t)sc[j];
    kq_wr16(b + 208, f32_to_f16(d));
}

static int kq_quantize_row(int type, const float *x, int64_t n, uint8_t *out) {
    size_t rb;
    if (!x || !out || kq_row_bytes(type, n, &rb)) return -1;
    switch (type) {
    case GPT2_TYPE_F32: memcpy(out, x, (size_t)n * 4); return 0;
    case GPT2_TYPE_F16:
        for (int64_t i = 0; i < n; i++) kq_wr16(out + 2 * i, f32_to_f16(x[i]));
        return 0;
    case GPT2_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = kq_f32_bits(x[i]);
            uint16_t h = (v & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((v >> 16) | 0x40)
                                                         : (uint16_t)((v + 0x7fff + ((v >> 16) & 1)) >> 16);
            kq_wr16(out + 2 * i, h);
        }
        return 0;
    default: break;
    }
    int bs = kq_block_size(type), bb = kq_block_bytes(type);
    for (int64_t i = 0; i < n / bs; i++) {
        const float *xb = x + i * bs;
        uint8_t *o = out + (size_t)i * (size_t)bb;
        switch (type) {
        case GPT2_TYPE_Q4_0: kq_quant_q4_0(xb, o); break;
        case GPT2_TYPE_Q4_1: kq_quant_q_1(xb, o, 15); break;
        case GPT2_TYPE_Q5_0: kq_quant_q5_0(xb, o); break;
        case GPT2_TYPE_Q5_1: kq_quant_q_1(xb, o, 31); break;
        case GPT2_TYPE_Q8_0: kq_quant_q8_0(xb, o); break;
        case GPT2_TYPE_Q2_K: kq_quant_q2_k(xb, o); break;
        case GPT2_TYPE_Q3_K: kq_quant_q3_k(xb, o); break;
        case GPT2_TYPE_Q4_K: kq_quant_q4_k(xb, o); break;
        case GPT2_TYPE_Q5_K: kq_quant_q5_k(xb, o); break;
        default: kq_quant_q6_k(xb, o); break;
        }
    }
    return 0;
}

/* ==========================================================================================
 * llama.cpp's recipe: the type of each GPT-2 tensor per file type
 * ==========================================================================================
 * From llama.cpp's src/llama-quant.cpp (checked at de3ff81, 2026; the rules for these file
 * types have been stable for a long time, except where noted):
 *  [Q]  tensor_allows_quantization: only 2-D tensors whose name ends in "weight", not
 *       "*_norm.weight", not position_embd.weight -> everything else is kept as it is.
 *  [T]  GPT-2 has no output.weight (tied), so token_embd.weight takes the output tensor's
 *       rule: Q8_0 if its row length is not a multiple of the file's default block, else Q6_K
 *       unless the default type is Q8_0 (then Q8_0).
 *  [V]  attn_qkv counts as attn_v (category_is_attn_v includes ATTENTION_QKV, and that branch
 *       comes first, so the separate attn_qkv branch is never reached); i_attention_wv counts
 *       the qkv tensors seen, i.e. the layer:
 *         Q2_K: Q3_K (n_gqa 1 < 4)      Q3_K_M: Q5_K for the first 2, else Q4_K
 *         Q4_K_M / Q5_K_M: Q6_K where kq_use_more_bits(layer, n_layer), else the default
 *       (older llama.cpp, before the tensor categories, gave attn_qkv its own rule: Q4_K for
 *       Q3_K_M, Q5_K for Q4_K_M, Q6_K for Q5_K_M — what many files on the Hub carry.)
 *  [D]  ffn_down: Q2_K: Q3_K; Q3_K_M: Q5_K if layer < n_layer/16, else Q4_K (not Falcon);
 *       Q4_K_M / Q5_K_M: Q6_K where kq_use_more_bits, else the default.
 *  [O]  attn_output: Q2_K: Q3_K; Q3_K_M: Q4_K.
 *  [U]  ffn_up: the default.
 *  [F]  tensor_type_fallback, last: a row length not a multiple of the type's block demotes
 *       Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 (then F16 if even that
 *       does not fit). GPT-2's widths: 768, 1024, 1280 are multiples of 256, 1600 (XL) is
 *       not; the 4C rows of ffn_down (3072, 4096, 5120, 6400) all are.
 *  kq_use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2.
 * ---------------------------------------------------------------------------------------- */

static bool kq_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static bool kq_use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int kq_recipe(int ftype, const char *name, int layer, int n_layer, int64_t rows, int64_t cols) {
    int def;
    switch (ftype) {
    case KQ_FT_F32: def = GPT2_TYPE_F32; break;
    case KQ_FT_F16: def = GPT2_TYPE_F16; break;
    case KQ_FT_BF16: def = GPT2_TYPE_BF16; break;
    case KQ_FT_Q4_0: def = GPT2_TYPE_Q4_0; break;
    case KQ_FT_Q4_1: def = GPT2_TYPE_Q4_1; break;
    case KQ_FT_Q5_0: def = GPT2_TYPE_Q5_0; break;
    case KQ_FT_Q5_1: def = GPT2_TYPE_Q5_1; break;
    case KQ_FT_Q8_0: def = GPT2_TYPE_Q8_0; break;
    case KQ_FT_Q2_K: def = GPT2_TYPE_Q2_K; break;
    case KQ_FT_Q3_K_M: def = GPT2_TYPE_Q3_K; break;
    case KQ_FT_Q4_K_M: def = GPT2_TYPE_Q4_K; break;
    case KQ_FT_Q5_K_M: def = GPT2_TYPE_Q5_K; break;
    case KQ_FT_Q6_K: def = GPT2_TYPE_Q6_K; break;
    default: return -1;
    }
    if (!name) return -1;
    /* [Q] */
    if (rows < 1 || cols < 1 || !kq_ends_with(name, "weight") || kq_ends_with(name, "_norm.weight") ||
        !strcmp(name, "position_embd.weight"))
        return KQ_KEEP;
    if (kq_block_size(def) == 1) return def; /* f32 / f16 / bf16 files: no mix, no fallback */
    int t = def;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight")) { /* [T] */
        t = cols % kq_block_size(def) ? GPT2_TYPE_Q8_0 : def != GPT2_TYPE_Q8_0 ? GPT2_TYPE_Q6_K : GPT2_TYPE_Q8_0;
    } else if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_v.weight")) { /* [V] */
        if (ftype == KQ_FT_Q2_K) t = GPT2_TYPE_Q3_K;
        else if (ftype == KQ_FT_Q3_K_M) t = layer < 2 ? GPT2_TYPE_Q5_K : GPT2_TYPE_Q4_K;
        else if ((ftype == KQ_FT_Q4_K_M || ftype == KQ_FT_Q5_K_M) && kq_use_more_bits(layer, n_layer)) t = GPT2_TYPE_Q6_K;
    } else if (strstr(name, "ffn_down")) { /* [D] */
        if (ftype == KQ_FT_Q2_K) t = GPT2_TYPE_Q3_K;
        else if (ftype == KQ_FT_Q3_K_M) t = layer < n_layer / 16 ? GPT2_TYPE_Q5_K : GPT2_TYPE_Q4_K;
        else if ((ftype == KQ_FT_Q4_K_M || ftype == KQ_FT_Q5_K_M) && kq_use_more_bits(layer, n_layer)) t = GPT2_TYPE_Q6_K;
    } else if (strstr(name, "attn_output.weight")) { /* [O] */
        if (ftype == KQ_FT_Q2_K) t = GPT2_TYPE_Q3_K;
        else if (ftype == KQ_FT_Q3_K_M) t = GPT2_TYPE_Q4_K;
    } /* [U] and anything else: the default */
    if (cols % kq_block_size(t)) { /* [F] */
        switch (t) {
        case GPT2_TYPE_Q2_K: case GPT2_TYPE_Q3_K: t = GPT2_TYPE_Q4_0; break;
        case GPT2_TYPE_Q4_K: t = GPT2_TYPE_Q5_0; break;
        case GPT2_TYPE_Q5_K: t = GPT2_TYPE_Q5_1; break;
        case GPT2_TYPE_Q6_K: t = GPT2_TYPE_Q8_0; break;
        default: break;
        }
        if (cols % kq_block_size(t)) t = GPT2_TYPE_F16;
    }
    return t;
}

/* ==========================================================================================
 * Kernel tables and CPU features
 * ========================================================================================== */

static kq_dot_fn kq_dot_scalar_of(int type) {
    switch (type) {
    case GPT2_TYPE_Q4_0: return kq_dot_q4_0_scalar;
    case GPT2_TYPE_Q4_1: return kq_dot_q4_1_scalar;
    case GPT2_TYPE_Q5_0: return kq_dot_q5_0_scalar;
    case GPT2_TYPE_Q5_1: return kq_dot_q5_1_scalar;
    case GPT2_TYPE_Q8_0: return kq_dot_q8_0_scalar;
    case GPT2_TYPE_Q2_K: return kq_dot_q2_k_scalar;
    case GPT2_TYPE_Q3_K: return kq_dot_q3_k_scalar;
    case GPT2_TYPE_Q4_K: return kq_dot_q4_k_scalar;
    case GPT2_TYPE_Q5_K: return kq_dot_q5_k_scalar;
    case GPT2_TYPE_Q6_K: return kq_dot_q6_k_scalar;
    default: return NULL;
    }
}

static kq_dot_fn kq_dot_simd_of(int type, int isa);

static kq_dot_fn kq_get_dot(int type, int isa) {
    if (isa == KQ_ISA_SCALAR) return kq_dot_scalar_of(type);
    if (isa <= KQ_ISA_SCALAR || isa >= KQ_ISA_COUNT) return NULL;
    return kq_dot_simd_of(type, isa);
}

/* the tile of a type on a path; where a path has none, the next lesser one's */
static kq_dot_fn kq_dot_for(int type, int isa) {
    static const int lesser[KQ_ISA_COUNT] = {KQ_ISA_SCALAR, KQ_ISA_SCALAR, KQ_ISA_AVX2, KQ_ISA_AVX2,
                                             KQ_ISA_AVX512};
    for (;;) {
        kq_dot_fn f = isa >= 0 && isa < KQ_ISA_COUNT ? kq_get_dot(type, isa) : NULL;
        if (f || isa <= KQ_ISA_SCALAR || isa >= KQ_ISA_COUNT) return f;
        isa = lesser[isa];
    }
}

#ifdef GPT2_X86
/* ==========================================================================================
 * x86 SIMD tiles
 * ==========================================================================================
 * Two kernel shapes, each written once as a macro over an instruction set variant:
 *   ymm (AVX2, AVX-VNNI): 8 int32 / float lanes, one 32-number block or run per vector
 *   zmm (AVX-512, AVX-512 VNNI): 16 lanes, two blocks (one q8_group group) or 64 numbers
 * The weights are turned into unsigned bytes in element order (offsets such as q4_0's -8
 * are taken out through the activation sums), multiplied by the signed activation bytes:
 *   u8 x s8 -> 4 products per int32 lane: vpdpbusd, or vpmaddubsw + vpmaddwd(1) without VNNI
 *   K-quants: vpmaddubsw (pairs, exact in int16: 2 * 63 * 127 < 2^15), then the per-16 scales
 *             as int16 words: vpdpwssd, or vpmaddwd + vpaddd without VNNI
 * so every integer sum is exact and the same on every path. Floats, per output:
 *   B8:  acc (lanes) = fma(float(lane sum), d_w * d_x, acc) per block [q4_1/q5_1: then
 *        acc = fma(float(corr), (m_w * -1/128) * d_x, acc)]; the lanes reduced at the end.
 *        ymm q4_0 / q5_0 / q8_0 instead add each block's lanes up first (exact), then
 *        acc_even|odd += (d_w * d_x) * float(sum), as q8_0's AVX2 tile (§B)
 *   K8:  per super-block, the lanes' int32 sums added up (exact) to S (and M for the mins),
 *        then the scalar reference's steps, acc += (d_x * d) * float(S) [acc -= (d_x * dmin)
 *        * float(M)]: its bits, on every path and in every tile shape
 * The same steps in the same order for every (row, token) whatever the tile shape.
 * ---------------------------------------------------------------------------------------- */
#define KQ_INLINE inline __attribute__((always_inline))
#define KQ_UNROLL _Pragma("GCC unroll 8")
#define KQ_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define KQ_AVXVNNI_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))
#define KQ_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define KQ_AVX512VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/* Decode streams every weight byte once; hardware prefetchers stop at 4 KB pages, so the
   one-token tiles prefetch a page ahead, as the engine's q8_0 tiles do. */
#ifndef KQ_PREFETCH
#define KQ_PREFETCH 4096
#endif

/* ---- instruction variants: u8 x s8 -> int32 lanes, int16 x int16 -> int32 lanes ---- */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_avx2_dpbusd(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_avx2_dpwssd(__m256i acc, __m256i a, __m256i b) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
}
KQ_AVXVNNI_TARGET static KQ_INLINE __m256i kq_avxvnni_dpbusd(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_avx_epi32(acc, u, s);
}
KQ_AVXVNNI_TARGET static KQ_INLINE __m256i kq_avxvnni_dpwssd(__m256i acc, __m256i a, __m256i b) {
    return _mm256_dpwssd_avx_epi32(acc, a, b);
}
/* q8_0's signed weights: with VNNI read as unsigned q + 128 (top bit flipped) onto the lane's
   correction -128 * sum(q_x); without, |q_w| times q_x with q_w's sign (vpmaddubsw pairs stay
   within int16: 2 * 128 * 127 < 2^15), which needs no correction */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_avx2_q8(__m256i corr, __m256i w, __m256i x) {
    (void)corr;
    return kq_avx2_dpbusd(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}
KQ_AVXVNNI_TARGET static KQ_INLINE __m256i kq_avxvnni_q8(__m256i corr, __m256i w, __m256i x) {
    return _mm256_dpbusd_avx_epi32(corr, _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), x);
}
KQ_AVX512_TARGET static KQ_INLINE __m512i kq_avx512_dpbusd(__m512i acc, __m512i u, __m512i s) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}
KQ_AVX512_TARGET static KQ_INLINE __m512i kq_avx512_dpwssd(__m512i acc, __m512i a, __m512i b) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
}
KQ_AVX512VNNI_TARGET static KQ_INLINE __m512i kq_avx512vnni_dpbusd(__m512i acc, __m512i u, __m512i s) {
    return _mm512_dpbusd_epi32(acc, u, s);
}
KQ_AVX512VNNI_TARGET static KQ_INLINE __m512i kq_avx512vnni_dpwssd(__m512i acc, __m512i a, __m512i b) {
    return _mm512_dpwssd_epi32(acc, a, b);
}

KQ_AVX512_TARGET static KQ_INLINE __m512i kq_avx512_q8(__m512i corr, __m512i w, __m512i x) {
    (void)corr;
    __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return kq_avx512_dpbusd(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx);
}
KQ_AVX512VNNI_TARGET static KQ_INLINE __m512i kq_avx512vnni_q8(__m512i corr, __m512i w, __m512i x) {
    return _mm512_dpbusd_epi32(corr, _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)), x);
}

KQ_AVX2_TARGET static KQ_INLINE __m256i kq_ld256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
KQ_AVX2_TARGET static KQ_INLINE __m128i kq_ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
KQ_AVX2_TARGET static KQ_INLINE float kq_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
KQ_AVX2_TARGET static KQ_INLINE float kq_h2f(const uint8_t *p) { return _cvtsh_ss(rd16(p)); }
/* the scalar reference's float steps of one super-block in lane 0 of acc: acc + (dx * d) *
   float(S) [then - (dx * dmin) * float(M)], S and M the sums of the lanes of s and m (exact),
   kept in vector registers (the products of d and dmin by dx taken side by side) */
KQ_AVX2_TARGET static KQ_INLINE __m128 kq_k_tail(bool has_min, __m256i s, __m256i m, float dx, float d, float dmin,
                                                 __m128 acc) {
    __m128i h;
    if (has_min) {
        const __m256i sm = _mm256_hadd_epi32(s, m); /* s01 s23 m01 m23 | s45 s67 m45 m67 */
        h = _mm_add_epi32(_mm256_castsi256_si128(sm), _mm256_extracti128_si256(sm, 1));
        h = _mm_hadd_epi32(h, h);                   /* S M S M */
    } else {
        h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 1)); /* S in lane 0 */
    }
    const __m128 p = _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(dx), _mm_setr_ps(d, dmin, 0.0f, 0.0f)), _mm_cvtepi32_ps(h));
    acc = _mm_add_ss(acc, p);
    if (has_min) acc = _mm_sub_ss(acc, _mm_movehdup_ps(p));
    return acc;
}

/* ---- B8 weights: one block of 32 -> 32 unsigned bytes in element order ---- */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_nibbles32(const uint8_t *qs) {
    __m128i v = kq_ld128(qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(15));
}
/* bit i of qh -> 16 in byte i */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_bits32(uint32_t qh) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                             0x0101010101010101LL, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(16));
}
/* the unsigned weights of a block in element order (q8_0: its signed bytes as they are) */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_b8_weights(int type, const uint8_t *b) {
    switch (type) {
    case GPT2_TYPE_Q4_0: return kq_nibbles32(b + 2);
    case GPT2_TYPE_Q4_1: return kq_nibbles32(b + 4);
    case GPT2_TYPE_Q5_0: return _mm256_or_si256(kq_nibbles32(b + 6), kq_bits32(kq_rd32(b + 2)));
    case GPT2_TYPE_Q5_1: return _mm256_or_si256(kq_nibbles32(b + 8), kq_bits32(kq_rd32(b + 4)));
    default: return kq_ld256(b + 2); /* q8_0: signed, see V##_q8 */
    }
}
/* corr holds -128 * (the lane's 4 activation integers); the offset of each type in
   multiples of it: q4_0 -8 (>> 4), q5_0 -16 (>> 3), q8_0 -128 (as is) */
static inline int kq_b8_shift(int type) { return type == GPT2_TYPE_Q4_0 ? 4 : type == GPT2_TYPE_Q5_0 ? 3 : 0; }
static inline bool kq_b8_min(int type) { return type == GPT2_TYPE_Q4_1 || type == GPT2_TYPE_Q5_1; }

/* ---- K weights: run r (0..7) of 32 numbers -> unsigned bytes in element order, and the
   per-16 scales (int8) and mins (uint8) of the super-block ---- */
typedef struct {
    __m128i sc, mn; /* per 16 numbers */
    float d, dmin;
} kq_kscales;

KQ_AVX2_TARGET static KQ_INLINE void kq_k4_scales(const uint8_t *s, __m128i *sc, __m128i *mn) {
    uint32_t a = kq_rd32(s), b = kq_rd32(s + 4), c = kq_rd32(s + 8);
    uint32_t sc0 = a & 0x3f3f3f3fu, mn0 = b & 0x3f3f3f3fu;
    uint32_t sc1 = (c & 0x0f0f0f0fu) | ((a >> 6) & 0x03030303u) << 4;
    uint32_t mn1 = ((c >> 4) & 0x0f0f0f0fu) | ((b >> 6) & 0x03030303u) << 4;
    __m128i vs = _mm_set_epi32(0, 0, (int)sc1, (int)sc0), vm = _mm_set_epi32(0, 0, (int)mn1, (int)mn0);
    *sc = _mm_unpacklo_epi8(vs, vs); /* each scale covers 32 numbers: two per-16 copies */
    *mn = _mm_unpacklo_epi8(vm, vm);
}

KQ_AVX2_TARGET static KQ_INLINE void kq_k_scales(int type, const uint8_t *b, kq_kscales *k) {
    switch (type) {
    case GPT2_TYPE_Q2_K: {
        __m128i v = kq_ld128(b);
        k->sc = _mm_and_si128(v, _mm_set1_epi8(15));
        k->mn = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15));
        k->d = kq_h2f(b + 80);
        k->dmin = kq_h2f(b + 82);
        break;
    }
    case GPT2_TYPE_Q3_K: {
        uint32_t a = kq_rd32(b + 96), c4 = kq_rd32(b + 100), c = kq_rd32(b + 104);
        const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
        uint32_t s0 = (a & m4) | (c & m2) << 4, s1 = (c4 & m4) | ((c >> 2) & m2) << 4;
        uint32_t s2 = ((a >> 4) & m4) | ((c >> 4) & m2) << 4, s3 = ((c4 >> 4) & m4) | ((c >> 6) & m2) << 4;
        k->sc = _mm_sub_epi8(_mm_set_epi32((int)s3, (int)s2, (int)s1, (int)s0), _mm_set1_epi8(32));
        k->mn = _mm_setzero_si128();
        k->d = kq_h2f(b + 108);
        k->dmin = 0.0f;
        break;
    }
    case GPT2_TYPE_Q4_K:
    case GPT2_TYPE_Q5_K:
        kq_k4_scales(b + 4, &k->sc, &k->mn);
        k->d = kq_h2f(b);
        k->dmin = kq_h2f(b + 2);
        break;
    default: /* GPT2_TYPE_Q6_K */
        k->sc = kq_ld128(b + 192);
        k->mn = _mm_setzero_si128();
        k->d = kq_h2f(b + 208);
        k->dmin = 0.0f;
        break;
    }
}

/* bit k of every byte of h -> bit `to` (a 16-bit shift; what crosses bytes is masked off) */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_bit_to(__m256i h, int k, int to) {
    __m256i v = k < to ? _mm256_slli_epi16(h, to - k) : k > to ? _mm256_srli_epi16(h, k - to) : h;
    return _mm256_and_si256(v, _mm256_set1_epi8((char)(1 << to)));
}

KQ_AVX2_TARGET static KQ_INLINE __m256i kq_k_run(int type, const uint8_t *b, int r) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    switch (type) {
    case GPT2_TYPE_Q2_K: { /* run r: half r/4, pass r%4 */
        __m256i q = kq_ld256(b + 16 + 32 * (r / 4));
        return _mm256_and_si256(_mm256_srli_epi16(q, 2 * (r % 4)), m2);
    }
    case GPT2_TYPE_Q3_K: {
        __m256i q = kq_ld256(b + 32 + 32 * (r / 4));
        __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * (r % 4)), m2);
        return _mm256_or_si256(lo, kq_bit_to(kq_ld256(b), r, 2)); /* hmask bit 4h + p = r */
    }
    case GPT2_TYPE_Q4_K:
    case GPT2_TYPE_Q5_K: { /* run r: chunk r/2, low nibbles (even) or high (odd) */
        __m256i q = kq_ld256(b + (type == GPT2_TYPE_Q4_K ? 16 : 48) + 32 * (r / 2));
        __m256i v = _mm256_and_si256(r % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
        if (type == GPT2_TYPE_Q5_K) v = _mm256_or_si256(v, kq_bit_to(kq_ld256(b + 16), r, 4)); /* qh bit r */
        return v;
    }
    default: { /* GPT2_TYPE_Q6_K: half r/4, k = r%4 */
        int h = r / 4, k = r % 4;
        __m256i l = kq_ld256(b + 64 * h + 32 * (k & 1));
        l = _mm256_and_si256(k & 2 ? _mm256_srli_epi16(l, 4) : l, m4);
        __m256i hb = kq_ld256(b + 128 + 32 * h); /* bits 2k, 2k+1 -> 4, 5 */
        __m256i v = 2 * k < 4 ? _mm256_slli_epi16(hb, 4 - 2 * k) : 2 * k > 4 ? _mm256_srli_epi16(hb, 2 * k - 4) : hb;
        return _mm256_or_si256(l, _mm256_and_si256(v, _mm256_set1_epi8(0x30)));
    }
    }
}
/* the offset of the numbers per type, in the int sums: -(32 or 4) * sum sc * bsum */
static inline int kq_k_offset_shift(int type) { return type == GPT2_TYPE_Q6_K ? 5 : type == GPT2_TYPE_Q3_K ? 2 : 0; }
static inline bool kq_k_min(int type) { return type == GPT2_TYPE_Q2_K || type == GPT2_TYPE_Q4_K || type == GPT2_TYPE_Q5_K; }

/* the scale words of run r: numbers 0-15 get sc[2r], 16-31 sc[2r+1] */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_k_scale_words(__m128i sc, int r) {
    const __m128i ctl = _mm_set_epi64x((long long)(0x0101010101010101ULL * (uint64_t)(2 * r + 1)),
                                       (long long)(0x0101010101010101ULL * (uint64_t)(2 * r)));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, ctl));
}

/* ---- K activations (q8k_record) with AVX2: the scalar kq_quantize_k8's bits ----
   The same largest magnitude (NaN ignored: vmaxps returns its second operand) and the first
   number that has it, the same multiply, clamps and rounding per number; the sums are exact. */
KQ_AVX2_TARGET static void kq_quantize_k8_avx2(const float *x, int64_t n, q8k_record *y) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / KQ_QKK; b++, x += KQ_QKK, y++) {
        memset(y, 0, sizeof *y);
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < KQ_QKK; i += 8) mx = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), mx);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax > 0.0f && amax <= FLT_MAX) {
            float m = 0.0f;
            const __m256 va = _mm256_set1_ps(amax);
            for (int i = 0; i < KQ_QKK; i += 8) {
                int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), va, _CMP_EQ_OQ));
                if (hit) {
                    m = x[i + __builtin_ctz((unsigned)hit)];
                    break;
                }
            }
            const float iscale = -127.0f / m;
            const __m256 vs = _mm256_set1_ps(iscale), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
            const __m256 magic = _mm256_set1_ps(12582912.0f);
            for (int i = 0; i < KQ_QKK; i += 32) {
                __m256i q[4];
                for (int k = 0; k < 4; k++) {
                    __m256 r = _mm256_mul_ps(vs, _mm256_loadu_ps(x + i + 8 * k));
                    r = _mm256_max_ps(_mm256_min_ps(r, hi), lo); /* r < 127 ? r : 127, then > -127 */
                    r = _mm256_sub_ps(_mm256_add_ps(r, magic), magic); /* to nearest, ties to even */
                    q[k] = _mm256_cvttps_epi32(r);
                }
                __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256((__m256i *)(void *)(y->q + i), p);
            }
            y->d = 1.0f / iscale;
        }
        for (int j = 0; j < 16; j += 2) { /* 4-number sums, then 16 */
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(y->q + 16 * j));
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            y->bsum[j] = (int16_t)_mm256_cvtsi256_si32(s);
            y->bsum[j + 1] = (int16_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1));
        }
    }
}

/* two_pass's leftover x - d * q of each number, as kq_residual_k8 computes it */
KQ_AVX2_TARGET static void kq_residual_k8_avx2(const float *x, const q8k_record *k, int64_t n, float *r) {
    for (int64_t b = 0; b < n / KQ_QKK; b++, k++, x += KQ_QKK, r += KQ_QKK) {
        const __m256 d = _mm256_set1_ps(k->d);
        for (int i = 0; i < KQ_QKK; i += 8) {
            const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(k->q + i))));
            _mm256_storeu_ps(r + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_mul_ps(d, q)));
        }
    }
}

/* ==== ymm tiles: rows one after another for one token; a 4 x 2 tile of (row, token) pairs
   sharing each weight vector otherwise. The B8 tile serves the types with a min (q4_1,
   q5_1): the others take the whole-block tiles below. ==== */
#define KQ_YMM_B8_TILE(V, TYPE, NR, NT)                                                           \
    do {                                                                                      \
        const int bb = kq_block_bytes(TYPE);                                                  \
        const int64_t nb = n / KQ_QK;                                                            \
        __m256 acc[NR][NT];                                                                   \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps(); \
        for (int64_t blk = 0; blk < nb; blk++) {                                              \
            const int half = (int)(blk & 1);                                                  \
            KQ_UNROLL for (int r = 0; r < NR; r++) {                                             \
                const uint8_t *b = w + (size_t)r * row_bytes + (size_t)blk * (size_t)bb;      \
                _mm_prefetch((const char *)b + KQ_PREFETCH, _MM_HINT_T0);                     \
                const __m256i wq = kq_b8_weights(TYPE, b);                                       \
                const __m256 dw = _mm256_set1_ps(kq_h2f(b));                                     \
                const __m256 mw = _mm256_set1_ps(kq_h2f(b + 2) * -0.0078125f);             \
                KQ_UNROLL for (int t = 0; t < NT; t++) {                                         \
                    const q8_group *g = (const q8_group *)((const uint8_t *)xq + (size_t)t * ldx) + blk / 2; \
                    const __m256i xv = kq_ld256(g->q + 32 * half);                               \
                    const __m256i cr = kq_ld256(g->corr + 8 * half);                             \
                    const __m256 dx = _mm256_loadu_ps(g->d + 8 * half);                       \
                    const __m256i s = kq_##V##_dpbusd(_mm256_setzero_si256(), wq, xv);        \
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, dx), acc[r][t]); \
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(cr), _mm256_mul_ps(mw, dx), acc[r][t]); \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = kq_hsum8(acc[r][t]); \
    } while (0)

#define KQ_YMM_K_TILE(V, TYPE, NR, NT)                                                            \
    do {                                                                                      \
        const int bb = kq_block_bytes(TYPE);                                                  \
        const int64_t nb = n / KQ_QKK;                                                           \
        __m128 acc[NR][NT]; /* in lane 0 */                                                   \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm_setzero_ps(); \
        for (int64_t blk = 0; blk < nb; blk++) {                                              \
            KQ_UNROLL for (int r = 0; r < NR; r++) {                                             \
                const uint8_t *b = w + (size_t)r * row_bytes + (size_t)blk * (size_t)bb;      \
                for (int o = 0; o < bb; o += 64) _mm_prefetch((const char *)b + KQ_PREFETCH + o, _MM_HINT_T0); \
                kq_kscales ks;                                                                   \
                kq_k_scales(TYPE, b, &ks);                                                       \
                __m256i si[NT];                                                               \
                KQ_UNROLL for (int t = 0; t < NT; t++) si[t] = _mm256_setzero_si256();           \
                KQ_UNROLL for (int q = 0; q < 8; q++) {                                          \
                    const __m256i wq = kq_k_run(TYPE, b, q), sw = kq_k_scale_words(ks.sc, q);       \
                    KQ_UNROLL for (int t = 0; t < NT; t++) {                                     \
                        const q8k_record *x = (const q8k_record *)((const uint8_t *)xq + (size_t)t * ldx) + blk; \
                        si[t] = kq_##V##_dpwssd(si[t], _mm256_maddubs_epi16(wq, kq_ld256(x->q + 32 * q)), sw); \
                    }                                                                         \
                }                                                                             \
                KQ_UNROLL for (int t = 0; t < NT; t++) {                                         \
                    const q8k_record *x = (const q8k_record *)((const uint8_t *)xq + (size_t)t * ldx) + blk; \
                    const __m256i bs = kq_ld256(x->bsum);                                        \
                    if (kq_k_offset_shift(TYPE))                                                 \
                        si[t] = _mm256_sub_epi32(si[t], _mm256_slli_epi32(_mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(ks.sc)), kq_k_offset_shift(TYPE))); \
                    const __m256i mi = kq_k_min(TYPE) ? _mm256_madd_epi16(bs, _mm256_cvtepu8_epi16(ks.mn)) : bs; \
                    acc[r][t] = kq_k_tail(kq_k_min(TYPE), si[t], mi, x->d, ks.d, ks.dmin, acc[r][t]); \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = _mm_cvtss_f32(acc[r][t]); \
    } while (0)

/* nt = 1: each row alone (one stream of weights at a time reads memory fastest); else
   tiles of up to 4 rows x 2 tokens */
#define KQ_YMM_DISPATCH(TILE, V, TYPE)                                                            \
    if (nt == 1) {                                                                            \
        for (int rr = 0; rr < nr; rr++, w += row_bytes, out++) TILE(V, TYPE, 1, 1);              \
        return;                                                                               \
    }                                                                                         \
    for (int t0 = 0; t0 < nt; t0 += 2, xq = (const uint8_t *)xq + 2 * ldx, out += 2 * ldo) { \
        if (nt - t0 == 1) {                                                                   \
            switch (nr) {                                                                     \
            case 1: TILE(V, TYPE, 1, 1); break;                                               \
            case 2: TILE(V, TYPE, 2, 1); break;                                               \
            case 3: TILE(V, TYPE, 3, 1); break;                                               \
            default: TILE(V, TYPE, 4, 1); break;                                              \
            }                                                                                 \
        } else {                                                                              \
            switch (nr) {                                                                     \
            case 1: TILE(V, TYPE, 1, 2); break;                                               \
            case 2: TILE(V, TYPE, 2, 2); break;                                               \
            case 3: TILE(V, TYPE, 3, 2); break;                                               \
            default: TILE(V, TYPE, 4, 2); break;                                              \
            }                                                                                 \
        }                                                                                     \
    }

/* q4_0, q5_0 and q8_0 take q8_0's whole-block tiles (§B, "AVX2"), their driver and their
   reduction: each lane sum starts at the activations' correction times the type's offset,
   so a block's 8 lanes add up to the exact dot of its integers, and the 8 dots of a 4 x 2
   tile take their scales with one multiply per block */
#define KQ_DEFINE_YMM_B8R(V, TARGET)                                                              \
    TARGET static KQ_INLINE __m256i kq_##V##_b8_lanes(int type, __m256i wq, const q8_group *g, int h) { \
        const __m256i xv = kq_ld256(g->q + 32 * h), cr = kq_ld256(g->corr + 8 * h);              \
        if (type == GPT2_TYPE_Q8_0) return kq_##V##_q8(cr, wq, xv);                             \
        return kq_##V##_dpbusd(_mm256_srai_epi32(cr, kq_b8_shift(type)), wq, xv);               \
    }                                                                                         \
    TARGET static KQ_INLINE __m256 kq_##V##_b8_4x2(int type, const uint8_t *const row[4], int64_t b, \
                                                  const q8_group *x0, const q8_group *x1) {   \
        const size_t off = (size_t)b * (size_t)kq_block_bytes(type);                          \
        const int h = (int)(b & 1);                                                           \
        const q8_group *g0 = x0 + b / 2, *g1 = x1 + b / 2;                                    \
        __m256i v[8];                                                                         \
        KQ_UNROLL for (int r = 0; r < 4; r++) {                                               \
            const __m256i wq = kq_b8_weights(type, row[r] + off);                             \
            v[r] = kq_##V##_b8_lanes(type, wq, g0, h);                                        \
            v[4 + r] = kq_##V##_b8_lanes(type, wq, g1, h);                                    \
        }                                                                                     \
        return avx2_block_products_4x2(v, q8_scales4(row, off), g0, g1, h);                  \
    }                                                                                         \
    TARGET static KQ_INLINE __m128 kq_##V##_b8_4x1(int type, const uint8_t *const row[4], int64_t b, \
                                                  const q8_group *x0) {                       \
        const size_t off = (size_t)b * (size_t)kq_block_bytes(type);                          \
        const int h = (int)(b & 1);                                                           \
        const q8_group *g0 = x0 + b / 2;                                                      \
        __m256i v[4];                                                                         \
        KQ_UNROLL for (int r = 0; r < 4; r++) {                                               \
            _mm_prefetch((const char *)row[r] + off + KQ_PREFETCH, _MM_HINT_T0);              \
            v[r] = kq_##V##_b8_lanes(type, kq_b8_weights(type, row[r] + off), g0, h);         \
        }                                                                                     \
        return avx2_block_products_4x1(v, q8_scales4(row, off), g0, h);                      \
    }
/* (q4_0 with enough tokens: up to 8 rows, packed as q8_0's, §B "AVX2") */
#define KQ_DEFINE_YMM_BLOCKS(V, TARGET, NAME, TYPE)                                               \
    TARGET static void kq_##V##_dot_##NAME(const uint8_t *w, size_t row_bytes, int nr, const void *xq, \
                                          size_t ldq, int nt, int64_t n, float *out, size_t ldo) { \
        const q8_group *x = (const q8_group *)xq;                                             \
        const size_t ldx = ldq / sizeof(q8_group);                                            \
        if (TYPE == GPT2_TYPE_Q4_0 && nt >= Q8_PACK_MIN) {                                    \
            dot_packed_##V(TYPE, w, row_bytes, nr, x, ldx, nt, n, out, ldo);                  \
            return;                                                                           \
        }                                                                                     \
        for (; nr > 4; nr -= 4, w += 4 * row_bytes, out += 4)                                 \
            kq_##V##_dot_##NAME(w, row_bytes, 4, xq, ldq, nt, n, out, ldo);                   \
        AVX2_DOT_BY_BLOCKS(kq_##V##_b8, TYPE);                                                \
    }

/* ==== packed K tiles: 8 rows x many tokens (a prompt), as q8_0's packed blocks (§B) ====
   Vector 8q + g of a packed super-block holds numbers 4g..4g+3 of run q of each of 8 rows
   (lane r: row r), so one token's 4 activations, broadcast, meet 8 rows in one vpmaddubsw.
   The int16 pair sums of a few groups add up in int16 (kq_k_g16 says how many stay below
   2^15), then take their per-16 scale (vpmaddwd) into each row's int32 sum S: the whole
   super-block's integer dot, the one the tiles above reduce their lanes to, followed by the
   same float steps. The packing is paid once per 8 rows for all the tokens. */
#define KQ_KPACK_BLOCKS 4  /* super-blocks packed at a time: 4 x 2880 bytes, in L1 */
#define KQ_KPACK_TOKENS 32 /* tokens whose sums stay on the stack while the blocks go by */
typedef struct {
    __m256i w[64];  /* (run q, group g) -> numbers 4g..4g+3 of run q of rows 0..7, unsigned */
    __m256i sc[16]; /* per-16 scale j of rows 0..7, the same in both int16 words of a lane */
    __m256i fix[8]; /* per-16 values v[2l], v[2l+1] of rows 0..7 that meet bsum[2l], bsum[2l+1]:
                       the scales (q3_K, q6_K: the offset) or the mins (q2_K, q4_K, q5_K) */
    __m256 d, dmin; /* the rows' super-block scales */
} kq_kpacked;

/* groups whose int16 pair sums may be added before their scale: 8 * 2 * nmax * 127 < 2^15
   where 8 is the number of groups (q4_K: 15, and its two per-16 scales of a run are one) */
static inline int kq_k_g16(int type) { return type == GPT2_TYPE_Q6_K ? 2 : type == GPT2_TYPE_Q4_K ? 8 : 4; }

/* dwords j of rows 0..7 (their per-16 scales j, widened) -> for each j, lane r: row r's,
   as two equal int16 words */
KQ_AVX2_TARGET static KQ_INLINE __m256i kq_k_dup_words(__m128i sc8) {
    const __m256i v = _mm256_cvtepi8_epi32(sc8);
    return _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(v, 16));
}

KQ_AVX2_TARGET static KQ_INLINE void kq_k_pack(int type, const uint8_t *const row[8], int64_t b0, int nbk,
                                               kq_kpacked *p) {
    const size_t bb = (size_t)kq_block_bytes(type);
    for (int i = 0; i < nbk; i++) {
        const size_t off = (size_t)(b0 + i) * bb;
        __m256i lo[8], hi[8], fx[8];
        float d[8], dmin[8];
        for (int r = 0; r < 8; r++) {
            kq_kscales ks;
            kq_k_scales(type, row[r] + off, &ks);
            lo[r] = kq_k_dup_words(ks.sc);                        /* scales 0..7 */
            hi[r] = kq_k_dup_words(_mm_unpackhi_epi64(ks.sc, ks.sc)); /* 8..15 */
            fx[r] = kq_k_min(type) ? _mm256_cvtepu8_epi16(ks.mn) : _mm256_cvtepi8_epi16(ks.sc);
            d[r] = ks.d;
            dmin[r] = ks.dmin;
        }
        transpose_groups8(lo, p[i].sc);
        transpose_groups8(hi, p[i].sc + 8);
        transpose_groups8(fx, p[i].fix); /* dword l of a row: its values 2l, 2l+1 */
        for (int q = 0; q < 8; q++) {
            __m256i v[8];
            for (int r = 0; r < 8; r++) v[r] = kq_k_run(type, row[r] + off, q);
            transpose_groups8(v, p[i].w + 8 * q);
        }
        p[i].d = _mm256_loadu_ps(d);
        p[i].dmin = _mm256_loadu_ps(dmin);
    }
}

/* the float steps of the scalar reference on 8 rows: acc += (d_x * d) * S [-= (d_x * dmin) * M] */
KQ_AVX2_TARGET static KQ_INLINE __m256 kq_k_acc8(int type, const kq_kpacked *p, float dx, __m256i S, __m256i F,
                                                 __m256 acc) {
    if (kq_k_offset_shift(type)) S = _mm256_sub_epi32(S, _mm256_slli_epi32(F, kq_k_offset_shift(type)));
    const __m256 vx = _mm256_set1_ps(dx);
    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(vx, p->d), _mm256_cvtepi32_ps(S)));
    if (kq_k_min(type)) acc = _mm256_sub_ps(acc, _mm256_mul_ps(_mm256_mul_ps(vx, p->dmin), _mm256_cvtepi32_ps(F)));
    return acc;
}

KQ_AVX2_TARGET static KQ_INLINE __m256i kq_bcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* 8 rows' outputs for one token: a whole vector when all 8 are wanted */
KQ_AVX2_TARGET static KQ_INLINE void kq_store_rows(float *out, int nr, __m256 v) {
    if (nr == 8) {
        _mm256_storeu_ps(out, v);
        return;
    }
    float s[8];
    _mm256_storeu_ps(s, v);
    for (int r = 0; r < nr; r++) out[r] = s[r];
}

/* what both packed K tiles (ymm: 8 rows, zmm: 16) run, inside a function of the arguments of
   kq_dot_fn and the type: ROWS rows' super-blocks packed BLOCKS at a time, and the tokens,
   KQ_KPACK_TOKENS at a time, through them in pairs (a lone last one twice) */
#define KQ_KPACKED_RUN(ROWS, BLOCKS, PACKED, VEC, ZERO, PACK, DOT2, STORE)                      \
    do {                                                                                      \
        const int64_t nb = n / KQ_QKK;                                                        \
        const uint8_t *row[ROWS];                                                             \
        for (int r = 0; r < ROWS; r++) row[r] = w + (size_t)(r < nr ? r : nr - 1) * row_bytes; \
        PACKED pk[BLOCKS];                                                                    \
        for (int t0 = 0; t0 < nt; t0 += KQ_KPACK_TOKENS) {                                    \
            const int tn = nt - t0 < KQ_KPACK_TOKENS ? nt - t0 : KQ_KPACK_TOKENS;             \
            VEC acc[KQ_KPACK_TOKENS + 1];                                                     \
            for (int t = 0; t <= tn; t++) acc[t] = ZERO();                                    \
            for (int64_t b0 = 0; b0 < nb; b0 += BLOCKS) {                                     \
                const int nbk = nb - b0 < BLOCKS ? (int)(nb - b0) : BLOCKS;                   \
                PACK(type, row, b0, nbk, pk);                                                 \
                for (int t = 0; t < tn; t += 2) {                                             \
                    const q8k_record *x0 = (const q8k_record *)((const uint8_t *)xq + (size_t)(t0 + t) * ldx) + b0; \
                    const q8k_record *x1 = t + 1 < tn ? (const q8k_record *)((const uint8_t *)x0 + ldx) : x0; \
                    VEC a0 = acc[t], a1 = acc[t + 1];                                         \
                    for (int i = 0; i < nbk; i++) DOT2(type, &pk[i], x0 + i, x1 + i, &a0, &a1); \
                    acc[t] = a0, acc[t + 1] = a1;                                             \
                }                                                                             \
            }                                                                                 \
            for (int t = 0; t < tn; t++) STORE(out + (size_t)(t0 + t) * ldo, nr, acc[t]);    \
        }                                                                                     \
    } while (0)

#define KQ_DEFINE_YMM_KPACKED(V, TARGET)                                                          \
    /* one packed super-block against two tokens (each weight vector loaded once for both):   \
       acc0, acc1 (rows 0..7) += their dots */                                                \
    TARGET static KQ_INLINE void kq_##V##_kpacked_dot2(int type, const kq_kpacked *p, const q8k_record *x0, \
                                                    const q8k_record *x1, __m256 *acc0, __m256 *acc1) { \
        const int g16 = kq_k_g16(type);                                                       \
        __m256i S0 = _mm256_setzero_si256(), S1 = S0, F0 = S0, F1 = S0;                       \
        KQ_UNROLL for (int q = 0; q < 8; q++)                                                 \
            KQ_UNROLL for (int g0 = 0; g0 < 8; g0 += g16) {                                   \
                __m256i s0 = _mm256_setzero_si256(), s1 = s0;                                 \
                KQ_UNROLL for (int g = g0; g < g0 + g16; g++) {                               \
                    const __m256i w = p->w[8 * q + g];                                        \
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(w, kq_bcast4(x0->q + 32 * q + 4 * g))); \
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(w, kq_bcast4(x1->q + 32 * q + 4 * g))); \
                }                                                                             \
                const __m256i sc = p->sc[2 * q + g0 / 4];                                     \
                S0 = kq_##V##_dpwssd(S0, s0, sc);                                             \
                S1 = kq_##V##_dpwssd(S1, s1, sc);                                             \
            }                                                                                 \
        KQ_UNROLL for (int l = 0; l < 8; l++) {                                               \
            F0 = kq_##V##_dpwssd(F0, p->fix[l], kq_bcast4(x0->bsum + 2 * l));                  \
            F1 = kq_##V##_dpwssd(F1, p->fix[l], kq_bcast4(x1->bsum + 2 * l));                  \
        }                                                                                     \
        *acc0 = kq_k_acc8(type, p, x0->d, S0, F0, *acc0);                                     \
        *acc1 = kq_k_acc8(type, p, x1->d, S1, F1, *acc1);                                     \
    }                                                                                         \
    TARGET static KQ_INLINE void kq_##V##_kpacked(int type, const uint8_t *w, size_t row_bytes, int nr, const void *xq, \
                                        size_t ldx, int nt, int64_t n, float *out, size_t ldo) { \
        KQ_KPACKED_RUN(8, KQ_KPACK_BLOCKS, kq_kpacked, __m256, _mm256_setzero_ps, kq_k_pack,  \
                       kq_##V##_kpacked_dot2, kq_store_rows);                                 \
    }

/* the K formats: up to 8 rows, packed with enough tokens, else tiles of up to 4 rows */
#define KQ_DEFINE_YMM_K(V, TARGET, NAME, TYPE)                                                    \
    TARGET static void kq_##V##_dot_##NAME(const uint8_t *w, size_t row_bytes, int nr, const void *xq, \
                                          size_t ldx, int nt, int64_t n, float *out, size_t ldo) { \
        if (nt >= Q8_PACK_MIN) {                                                              \
            kq_##V##_kpacked(TYPE, w, row_bytes, nr, xq, ldx, nt, n, out, ldo);               \
            return;                                                                           \
        }                                                                                     \
        for (; nr > 4; nr -= 4, w += 4 * row_bytes, out += 4)                                 \
            kq_##V##_dot_##NAME(w, row_bytes, 4, xq, ldx, nt, n, out, ldo);                   \
        KQ_YMM_DISPATCH(KQ_YMM_K_TILE, V, TYPE)                                                  \
    }

#define KQ_DEFINE_YMM(V, TARGET, NAME, TILE, TYPE)                                                \
    TARGET static void kq_##V##_dot_##NAME(const uint8_t *w, size_t row_bytes, int nr, const void *xq, \
                                      size_t ldx, int nt, int64_t n, float *out, size_t ldo) { \
        KQ_YMM_DISPATCH(TILE, V, TYPE)                                                           \
    }

#define KQ_DEFINE_YMM_ALL(V, TARGET)                                                              \
    KQ_DEFINE_YMM_B8R(V, TARGET)                                                              \
    KQ_DEFINE_YMM_BLOCKS(V, TARGET, q4_0, GPT2_TYPE_Q4_0)                                     \
    KQ_DEFINE_YMM(V, TARGET, q4_1, KQ_YMM_B8_TILE, GPT2_TYPE_Q4_1)                                          \
    KQ_DEFINE_YMM_BLOCKS(V, TARGET, q5_0, GPT2_TYPE_Q5_0)                                     \
    KQ_DEFINE_YMM(V, TARGET, q5_1, KQ_YMM_B8_TILE, GPT2_TYPE_Q5_1)                                          \
    KQ_DEFINE_YMM_BLOCKS(V, TARGET, q8_0, GPT2_TYPE_Q8_0)                                     \
    KQ_DEFINE_YMM_KPACKED(V, TARGET)                                                          \
    KQ_DEFINE_YMM_K(V, TARGET, q2_k, GPT2_TYPE_Q2_K)                                          \
    KQ_DEFINE_YMM_K(V, TARGET, q3_k, GPT2_TYPE_Q3_K)                                          \
    KQ_DEFINE_YMM_K(V, TARGET, q4_k, GPT2_TYPE_Q4_K)                                          \
    KQ_DEFINE_YMM_K(V, TARGET, q5_k, GPT2_TYPE_Q5_K)                                          \
    KQ_DEFINE_YMM_K(V, TARGET, q6_k, GPT2_TYPE_Q6_K)

KQ_DEFINE_YMM_ALL(avx2, KQ_AVX2_TARGET)
KQ_DEFINE_YMM_ALL(avxvnni, KQ_AVXVNNI_TARGET)

/* ==== zmm tiles: up to 4 rows x 4 tokens (32 registers) ==== */
/* 4 tokens at a time in tiles of up to 4 rows x 4 tokens; fewer tokens (the end of a batch)
   one at a time: each (row, token) gets the same operations either way, and half the tile
   shapes are enough (each shape costs compile time in every type and instruction set) */
#define KQ_TILE_SWITCH(TILE, V, TYPE)                                                             \
    if (nt == 4) {                                                                            \
        switch (nr) {                                                                         \
        case 1: TILE(V, TYPE, 1, 4); break;  case 2: TILE(V, TYPE, 2, 4); break;              \
        case 3: TILE(V, TYPE, 3, 4); break;  default: TILE(V, TYPE, 4, 4); break;             \
        }                                                                                     \
    } else {                                                                                  \
        for (int t1 = 0; t1 < nt; t1++, xq = (const uint8_t *)xq + ldx, out += ldo) {        \
            switch (nr) {                                                                     \
            case 1: TILE(V, TYPE, 1, 1); break;  case 2: TILE(V, TYPE, 2, 1); break;          \
            case 3: TILE(V, TYPE, 3, 1); break;  default: TILE(V, TYPE, 4, 1); break;         \
            }                                                                                 \
        }                                                                                     \
    }

/* blocks A and B (B absent: zero) as 64 unsigned bytes in element order: the 16 nibble
   bytes of each block go to two 128-bit lanes (shuffle), shifted by 0 and 4 there; q5's
   fifth bits are one 64-bit mask (bit i: byte i) that adds 16 */
KQ_AVX512_TARGET static KQ_INLINE __m512i kq_b8_weights64(int type, const uint8_t *b, int bb, bool pair) {
    if (type == GPT2_TYPE_Q8_0)
        return _mm512_inserti64x4(_mm512_castsi256_si512(kq_ld256(b + 2)), pair ? kq_ld256(b + bb + 2) : _mm256_setzero_si256(), 1);
    const int qs = type == GPT2_TYPE_Q4_0 ? 2 : type == GPT2_TYPE_Q4_1 ? 4 : type == GPT2_TYPE_Q5_0 ? 6 : 8;
    __m128i a = kq_ld128(b + qs);
    __m256i y = pair ? _mm256_inserti128_si256(_mm256_castsi128_si256(a), kq_ld128(b + bb + qs), 1) : _mm256_zextsi128_si256(a);
    __m512i z = _mm512_shuffle_i64x2(_mm512_castsi256_si512(y), _mm512_castsi256_si512(y), 0x50);
    const __m512i cnt = _mm512_set_epi64(0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                         0x0004000400040004LL, 0x0004000400040004LL, 0, 0);
    z = _mm512_and_si512(_mm512_srlv_epi16(z, cnt), _mm512_set1_epi8(15));
    if (type == GPT2_TYPE_Q5_0 || type == GPT2_TYPE_Q5_1) {
        const int qh = type == GPT2_TYPE_Q5_0 ? 2 : 4;
        uint64_t k = kq_rd32(b + qh) | (pair ? (uint64_t)kq_rd32(b + bb + qh) << 32 : 0);
        z = _mm512_mask_add_epi8(z, (__mmask64)k, z, _mm512_set1_epi8(16));
    }
    return z;
}
/* the halves at p (block A) and p + bb (block B) as floats: A in lanes 0-7, B in 8-15 */
KQ_AVX512_TARGET static KQ_INLINE __m512 kq_b8_halves64(const uint8_t *p, int bb, bool pair) {
    uint32_t hh = rd16(p) | (pair ? (uint32_t)rd16(p + bb) << 16 : 0);
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)hh));
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* one group (blocks A, B of a q8_group) for rows r < NR, tokens t < NT; PAIR constant */
#define KQ_ZMM_B8_STEP(V, TYPE, NR, NT, G, PAIR)                                                  \
    KQ_UNROLL for (int r = 0; r < NR; r++) {                                                     \
        const uint8_t *b = w + (size_t)r * row_bytes + (size_t)(2 * (G)) * (size_t)bb;        \
        _mm_prefetch((const char *)b + KQ_PREFETCH, _MM_HINT_T0);                             \
        const __m512i wq = kq_b8_weights64(TYPE, b, bb, PAIR);                                   \
        const __m512 dw = kq_b8_halves64(b, bb, PAIR);                                           \
        __m512 mw = _mm512_setzero_ps();                                                      \
        if (kq_b8_min(TYPE)) mw = _mm512_mul_ps(kq_b8_halves64(b + 2, bb, PAIR), _mm512_set1_ps(-0.0078125f)); \
        KQ_UNROLL for (int t = 0; t < NT; t++) {                                                 \
            const q8_group *gx = (const q8_group *)((const uint8_t *)xq + (size_t)t * ldx) + (G);  \
            const __m512i xv = _mm512_loadu_si512(gx->q), cr = _mm512_loadu_si512(gx->corr);  \
            const __m512 dx = _mm512_loadu_ps(gx->d);                                         \
            __m512i s;                                                                        \
            if (TYPE == GPT2_TYPE_Q8_0) s = kq_##V##_q8(cr, wq, xv);                                      \
            else if (kq_b8_min(TYPE)) s = kq_##V##_dpbusd(_mm512_setzero_si512(), wq, xv);            \
            else s = kq_##V##_dpbusd(_mm512_srai_epi32(cr, kq_b8_shift(TYPE)), wq, xv);               \
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[r][t]); \
            if (kq_b8_min(TYPE))                                                                 \
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(cr), _mm512_mul_ps(mw, dx), acc[r][t]); \
        }                                                                                     \
    }

#define KQ_ZMM_B8_TILE(V, TYPE, NR, NT)                                                           \
    do {                                                                                      \
        const int bb = kq_block_bytes(TYPE);                                                  \
        const int64_t np = n / KQ_QK / 2;                                                        \
        __m512 acc[NR][NT];                                                                   \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps(); \
        for (int64_t gi = 0; gi < np; gi++) { KQ_ZMM_B8_STEP(V, TYPE, NR, NT, gi, true) }            \
        if ((n / KQ_QK) % 2) { KQ_ZMM_B8_STEP(V, TYPE, NR, NT, np, false) }                         \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = _mm512_reduce_add_ps(acc[r][t]); \
    } while (0)

/* the scale words of 64-number run R: sc[4R] x 8, sc[4R+1] x 8, sc[4R+2] x 8, sc[4R+3] x 8,
   picked (vpermw) from the 16 scales widened once per super-block */
KQ_AVX512_TARGET static KQ_INLINE __m512i kq_k_scale_words64(__m512i sc16, int R) {
    const __m512i idx = _mm512_set_epi64(0x0001000100010001LL * (4 * R + 3), 0x0001000100010001LL * (4 * R + 3),
                                         0x0001000100010001LL * (4 * R + 2), 0x0001000100010001LL * (4 * R + 2),
                                         0x0001000100010001LL * (4 * R + 1), 0x0001000100010001LL * (4 * R + 1),
                                         0x0001000100010001LL * (4 * R), 0x0001000100010001LL * (4 * R));
    return _mm512_permutexvar_epi16(idx, sc16);
}

/* 32 bytes into both halves of a zmm (a load-port broadcast) */
KQ_AVX512_TARGET static KQ_INLINE __m512i kq_bcast256(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
/* per-half 16-bit shift counts: lo for the lower 32 bytes, hi for the upper */
KQ_AVX512_TARGET static KQ_INLINE __m512i kq_halves16(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

/* numbers 64R .. 64R+63 of a super-block as unsigned bytes in element order */
KQ_AVX512_TARGET static KQ_INLINE __m512i kq_k_run64(int type, const uint8_t *b, int R) {
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    switch (type) {
    case GPT2_TYPE_Q2_K: { /* half R/2, passes 2(R%2) and 2(R%2)+1 */
        const int p = 2 * (R % 2);
        __m512i q = _mm512_srlv_epi16(kq_bcast256(b + 16 + 32 * (R / 2)), kq_halves16(2 * p, 2 * p + 2));
        return _mm512_and_si512(q, m2);
    }
    case GPT2_TYPE_Q3_K: {
        const int p = 2 * (R % 2);
        __m512i q = _mm512_and_si512(_mm512_srlv_epi16(kq_bcast256(b + 32 + 32 * (R / 2)), kq_halves16(2 * p, 2 * p + 2)), m2);
        /* hmask bits 2R (lower half) and 2R+1 (upper) add 4 */
        const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * R))), _mm256_set1_epi8((char)(1 << (2 * R + 1))), 1);
        __mmask64 k = _mm512_test_epi8_mask(kq_bcast256(b), bit);
        return _mm512_mask_add_epi8(q, k, q, _mm512_set1_epi8(4));
    }
    case GPT2_TYPE_Q4_K:
    case GPT2_TYPE_Q5_K: { /* chunk R: low nibbles, then high */
        __m512i q = _mm512_and_si512(_mm512_srlv_epi16(kq_bcast256(b + (type == GPT2_TYPE_Q4_K ? 16 : 48) + 32 * R), kq_halves16(0, 4)), m4);
        if (type == GPT2_TYPE_Q5_K) {
            const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * R))), _mm256_set1_epi8((char)(1 << (2 * R + 1))), 1);
            q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(kq_bcast256(b + 16), bit), q, _mm512_set1_epi8(16));
        }
        return q;
    }
    default: { /* GPT2_TYPE_Q6_K: half R/2; R even: k = 0, 1 (low nibbles), R odd: k = 2, 3 (high) */
        const int h = R / 2;
        __m512i l = _mm512_loadu_si512(b + 64 * h);
        l = _mm512_and_si512(R % 2 ? _mm512_srli_epi16(l, 4) : l, m4);
        __m512i hb = kq_bcast256(b + 128 + 32 * h); /* bits 2k, 2k+1 -> 4, 5 */
        hb = R % 2 ? _mm512_srlv_epi16(hb, kq_halves16(0, 2)) : _mm512_sllv_epi16(hb, kq_halves16(4, 2));
        return _mm512_ternarylogic_epi32(l, hb, _mm512_set1_epi8(0x30), 0xf8); /* l | (hb & 0x30) */
    }
    }
}

#define KQ_ZMM_K_TILE(V, TYPE, NR, NT)                                                            \
    do {                                                                                      \
        const int bb = kq_block_bytes(TYPE);                                                  \
        const int64_t nb = n / KQ_QKK;                                                           \
        __m128 acc[NR][NT]; /* in lane 0 */                                                   \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm_setzero_ps(); \
        for (int64_t blk = 0; blk < nb; blk++) {                                              \
            KQ_UNROLL for (int r = 0; r < NR; r++) {                                             \
                const uint8_t *b = w + (size_t)r * row_bytes + (size_t)blk * (size_t)bb;      \
                for (int o = 0; o < bb; o += 64) _mm_prefetch((const char *)b + KQ_PREFETCH + o, _MM_HINT_T0); \
                kq_kscales ks;                                                                   \
                kq_k_scales(TYPE, b, &ks);                                                       \
                const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(ks.sc));     \
                __m512i si[NT];                                                               \
                KQ_UNROLL for (int t = 0; t < NT; t++) si[t] = _mm512_setzero_si512();           \
                KQ_UNROLL for (int q = 0; q < 4; q++) {                                          \
                    const __m512i wq = kq_k_run64(TYPE, b, q);                                   \
                    const __m512i sw = kq_k_scale_words64(sc16, q);                              \
                    KQ_UNROLL for (int t = 0; t < NT; t++) {                                     \
                        const q8k_record *x = (const q8k_record *)((const uint8_t *)xq + (size_t)t * ldx) + blk; \
                        si[t] = kq_##V##_dpwssd(si[t], _mm512_maddubs_epi16(wq, _mm512_loadu_si512(x->q + 64 * q)), sw); \
                    }                                                                         \
                }                                                                             \
                KQ_UNROLL for (int t = 0; t < NT; t++) {                                         \
                    const q8k_record *x = (const q8k_record *)((const uint8_t *)xq + (size_t)t * ldx) + blk; \
                    const __m256i bs = kq_ld256(x->bsum);                                        \
                    if (kq_k_offset_shift(TYPE))                                                 \
                        si[t] = _mm512_sub_epi32(si[t], _mm512_zextsi256_si512(_mm256_slli_epi32(   \
                                    _mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(ks.sc)), kq_k_offset_shift(TYPE)))); \
                    const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(si[t]), _mm512_extracti64x4_epi64(si[t], 1)); \
                    const __m256i mi = kq_k_min(TYPE) ? _mm256_madd_epi16(bs, _mm256_cvtepu8_epi16(ks.mn)) : bs; \
                    acc[r][t] = kq_k_tail(kq_k_min(TYPE), s8, mi, x->d, ks.d, ks.dmin, acc[r][t]); \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        KQ_UNROLL for (int r = 0; r < NR; r++) KQ_UNROLL for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = _mm_cvtss_f32(acc[r][t]); \
    } while (0)

#define KQ_DEFINE_ZMM(V, TARGET, NAME, TILE, TYPE)                                                \
    TARGET static void kq_##V##_dot_##NAME(const uint8_t *w, size_t row_bytes, int nr, const void *xq, \
                                      size_t ldx, int nt, int64_t n, float *out, size_t ldo) { \
        if (nt == 1) {                                                                        \
            for (int rr = 0; rr < nr; rr++, w += row_bytes, out++) TILE(V, TYPE, 1, 1);          \
            return;                                                                           \
        }                                                                                     \
        KQ_TILE_SWITCH(TILE, V, TYPE)                                                            \
    }

/* ==== packed K tiles on zmm: 16 rows x many tokens ====
   The ymm packing of §D twice (rows 0-7, 8-15) side by side: lane r of every vector is row
   r, and the same integer sums and float steps per row as everywhere (the scalar's bits). */
#define KQ_KPACK16_BLOCKS 2 /* super-blocks packed at a time: 2 x 5760 bytes, in L1 */
typedef struct {
    __m512i w[64], sc[16], fix[8]; /* as kq_kpacked's, 16 rows */
    __m512 d, dmin;
} kq_kpacked16;

KQ_AVX512_TARGET static KQ_INLINE __m512i kq_join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

KQ_AVX512_TARGET static KQ_INLINE void kq_k_pack16(int type, const uint8_t *const row[16], int64_t b0, int nbk,
                                                   kq_kpacked16 *p) {
    for (int i = 0; i < nbk; i++) {
        kq_kpacked h[2];
        kq_k_pack(type, row, b0 + i, 1, &h[0]);
        kq_k_pack(type, row + 8, b0 + i, 1, &h[1]);
        for (int k = 0; k < 64; k++) p[i].w[k] = kq_join(h[0].w[k], h[1].w[k]);
        for (int k = 0; k < 16; k++) p[i].sc[k] = kq_join(h[0].sc[k], h[1].sc[k]);
        for (int k = 0; k < 8; k++) p[i].fix[k] = kq_join(h[0].fix[k], h[1].fix[k]);
        p[i].d = _mm512_castsi512_ps(kq_join(_mm256_castps_si256(h[0].d), _mm256_castps_si256(h[1].d)));
        p[i].dmin = _mm512_castsi512_ps(kq_join(_mm256_castps_si256(h[0].dmin), _mm256_castps_si256(h[1].dmin)));
    }
}

KQ_AVX512_TARGET static KQ_INLINE __m512 kq_k_acc16(int type, const kq_kpacked16 *p, float dx, __m512i S, __m512i F,
                                                    __m512 acc) {
    if (kq_k_offset_shift(type)) S = _mm512_sub_epi32(S, _mm512_slli_epi32(F, kq_k_offset_shift(type)));
    const __m512 vx = _mm512_set1_ps(dx);
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(vx, p->d), _mm512_cvtepi32_ps(S)));
    if (kq_k_min(type)) acc = _mm512_sub_ps(acc, _mm512_mul_ps(_mm512_mul_ps(vx, p->dmin), _mm512_cvtepi32_ps(F)));
    return acc;
}

KQ_AVX512_TARGET static KQ_INLINE __m512i kq_bcast4z(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

KQ_AVX512_TARGET static KQ_INLINE void kq_store_rows16(float *out, int nr, __m512 v) {
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << nr) - 1), v);
}

#define KQ_DEFINE_ZMM_KPACKED(V, TARGET)                                                          \
    TARGET static KQ_INLINE void kq_##V##_kpacked16_dot2(int type, const kq_kpacked16 *p, const q8k_record *x0, \
                                                      const q8k_record *x1, __m512 *acc0, __m512 *acc1) { \
        const int g16 = kq_k_g16(type);                                                       \
        __m512i S0 = _mm512_setzero_si512(), S1 = S0, F0 = S0, F1 = S0;                       \
        KQ_UNROLL for (int q = 0; q < 8; q++)                                                 \
            KQ_UNROLL for (int g0 = 0; g0 < 8; g0 += g16) {                                   \
                __m512i s0 = _mm512_setzero_si512(), s1 = s0;                                 \
                KQ_UNROLL for (int g = g0; g < g0 + g16; g++) {                               \
                    const __m512i w = p->w[8 * q + g];                                        \
                    s0 = _mm512_add_epi16(s0, _mm512_maddubs_epi16(w, kq_bcast4z(x0->q + 32 * q + 4 * g))); \
                    s1 = _mm512_add_epi16(s1, _mm512_maddubs_epi16(w, kq_bcast4z(x1->q + 32 * q + 4 * g))); \
                }                                                                             \
                const __m512i sc = p->sc[2 * q + g0 / 4];                                     \
                S0 = kq_##V##_dpwssd(S0, s0, sc);                                             \
                S1 = kq_##V##_dpwssd(S1, s1, sc);                                             \
            }                                                                                 \
        KQ_UNROLL for (int l = 0; l < 8; l++) {                                               \
            F0 = kq_##V##_dpwssd(F0, p->fix[l], kq_bcast4z(x0->bsum + 2 * l));                 \
            F1 = kq_##V##_dpwssd(F1, p->fix[l], kq_bcast4z(x1->bsum + 2 * l));                 \
        }                                                                                     \
        *acc0 = kq_k_acc16(type, p, x0->d, S0, F0, *acc0);                                    \
        *acc1 = kq_k_acc16(type, p, x1->d, S1, F1, *acc1);                                    \
    }                                                                                         \
    TARGET static KQ_INLINE void kq_##V##_kpacked16(int type, const uint8_t *w, size_t row_bytes, int nr,   \
                                                   const void *xq, size_t ldx, int nt, int64_t n, float *out, \
                                                   size_t ldo) {                              \
        KQ_KPACKED_RUN(16, KQ_KPACK16_BLOCKS, kq_kpacked16, __m512, _mm512_setzero_ps, kq_k_pack16, \
                       kq_##V##_kpacked16_dot2, kq_store_rows16);                             \
    }

/* the K formats on zmm: up to 16 rows, packed with enough tokens, else tiles of up to 4 */
#define KQ_DEFINE_ZMM_K(V, TARGET, NAME, TYPE)                                                    \
    TARGET static void kq_##V##_dot_##NAME(const uint8_t *w, size_t row_bytes, int nr, const void *xq, \
                                          size_t ldx, int nt, int64_t n, float *out, size_t ldo) { \
        if (nt >= Q8_PACK_MIN) {                                                              \
            kq_##V##_kpacked16(TYPE, w, row_bytes, nr, xq, ldx, nt, n, out, ldo);             \
            return;                                                                           \
        }                                                                                     \
        for (; nr > 4; nr -= 4, w += 4 * row_bytes, out += 4)                                 \
            kq_##V##_dot_##NAME(w, row_bytes, 4, xq, ldx, nt, n, out, ldo);                   \
        if (nt == 1) {                                                                        \
            for (int rr = 0; rr < nr; rr++, w += row_bytes, out++) KQ_ZMM_K_TILE(V, TYPE, 1, 1); \
            return;                                                                           \
        }                                                                                     \
        KQ_TILE_SWITCH(KQ_ZMM_K_TILE, V, TYPE)                                                   \
    }

#define KQ_DEFINE_ZMM_ALL(V, TARGET)                                                              \
    KQ_DEFINE_ZMM(V, TARGET, q4_0, KQ_ZMM_B8_TILE, GPT2_TYPE_Q4_0)                                          \
    KQ_DEFINE_ZMM(V, TARGET, q4_1, KQ_ZMM_B8_TILE, GPT2_TYPE_Q4_1)                                          \
    KQ_DEFINE_ZMM(V, TARGET, q5_0, KQ_ZMM_B8_TILE, GPT2_TYPE_Q5_0)                                          \
    KQ_DEFINE_ZMM(V, TARGET, q5_1, KQ_ZMM_B8_TILE, GPT2_TYPE_Q5_1)                                          \
    KQ_DEFINE_ZMM(V, TARGET, q8_0, KQ_ZMM_B8_TILE, GPT2_TYPE_Q8_0)                                          \
    KQ_DEFINE_ZMM_KPACKED(V, TARGET)                                                          \
    KQ_DEFINE_ZMM_K(V, TARGET, q2_k, GPT2_TYPE_Q2_K)                                           \
    KQ_DEFINE_ZMM_K(V, TARGET, q3_k, GPT2_TYPE_Q3_K)                                           \
    KQ_DEFINE_ZMM_K(V, TARGET, q4_k, GPT2_TYPE_Q4_K)                                           \
    KQ_DEFINE_ZMM_K(V, TARGET, q5_k, GPT2_TYPE_Q5_K)                                           \
    KQ_DEFINE_ZMM_K(V, TARGET, q6_k, GPT2_TYPE_Q6_K)

KQ_DEFINE_ZMM_ALL(avx512, KQ_AVX512_TARGET)
KQ_DEFINE_ZMM_ALL(avx512vnni, KQ_AVX512VNNI_TARGET)

#define KQ_TABLE(V)                                                                            \
    {NULL, NULL, kq_##V##_dot_q4_0, kq_##V##_dot_q4_1, NULL, NULL, kq_##V##_dot_q5_0, kq_##V##_dot_q5_1, kq_##V##_dot_q8_0, \
     NULL, kq_##V##_dot_q2_k, kq_##V##_dot_q3_k, kq_##V##_dot_q4_k, kq_##V##_dot_q5_k, kq_##V##_dot_q6_k}

static kq_dot_fn kq_dot_simd_of(int type, int isa) {
    static const kq_dot_fn table[KQ_ISA_COUNT][15] = {
        {NULL}, KQ_TABLE(avx2), KQ_TABLE(avxvnni), KQ_TABLE(avx512), KQ_TABLE(avx512vnni)};
    return type >= 0 && type < 15 ? table[isa][type] : NULL;
}

#else
static kq_dot_fn kq_dot_simd_of(int type, int isa) {
    (void)type;
    (void)isa;
    return NULL;
}
#endif

/* the K formats' activations on a path (x86: AVX2 code on every SIMD path, with the scalar
   code's bits), and two_pass's leftover */
static void kq_quantize_k8_on(int isa, const float *x, int64_t n, q8k_record *y) {
#ifdef GPT2_X86
    if (isa != KQ_ISA_SCALAR) {
        kq_quantize_k8_avx2(x, n, y);
        return;
    }
#endif
    (void)isa;
    kq_quantize_k8(x, n, y);
}
static void kq_residual_k8_on(int isa, const float *x, const q8k_record *y, int64_t n, float *r) {
#ifdef GPT2_X86
    if (isa != KQ_ISA_SCALAR) {
        kq_residual_k8_avx2(x, y, n, r);
        return;
    }
#endif
    (void)isa;
    kq_residual_k8(x, y, n, r);
}
