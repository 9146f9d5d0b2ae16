/* gpt2.h — the public interface of gpt2c, a GPT-2 inference engine in C11.
 *
 * Everything a program needs: load a model (one GGUF file), turn text into token ids and
 * back, run the transformer over tokens with a KV cache, and generate text greedily, by
 * sampling or by beam search.
 *
 * Conventions
 *   - Every function that can fail returns a gpt2_status; GPT2_OK (0) is success.
 *     gpt2_strerror() names a status. Functions that load files also fill an optional
 *     caller-provided message buffer with the precise reason.
 *   - Handles are opaque. A gpt2_model is immutable once loaded and may be shared by any
 *     number of threads; a gpt2_context (KV cache + scratch) belongs to one thread at a time.
 *   - Buffers are owned by the caller: the library writes at most `cap` elements and says
 *     how many it needed.
 *   - The library never prints, never exits, never aborts, and keeps no global mutable state.
 *
 * Minimal use:
 *
 *     gpt2_model *m; char err[256];
 *     if (gpt2_load("models/gpt2-124M.gguf", &m, err, sizeof err) != GPT2_OK) { puts(err); ... }
 *     gpt2_context *c; gpt2_context_new(m, NULL, &c);
 *     int32_t ids[64]; size_t n;
 *     gpt2_tokenize(m, "Hello", 5, 0, ids, 64, &n);
 *     gpt2_generate_params p = gpt2_generate_default_params(m);
 *     int32_t out[32]; size_t n_out;
 *     gpt2_generate(c, ids, n, &p, out, 32, &n_out, NULL, NULL);
 *     gpt2_context_free(c); gpt2_free(m);
 */
#ifndef GPT2_H
#define GPT2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPT2_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------
 * Status codes
 * ---------------------------------------------------------------------------------------- */
typedef enum gpt2_status {
    GPT2_OK = 0,
    GPT2_E_IO,            /* a file could not be opened, read or written */
    GPT2_E_FORMAT,        /* a model file is malformed, truncated or inconsistent */
    GPT2_E_UNSUPPORTED,   /* well-formed, but uses something this engine does not support */
    GPT2_E_NOMEM,         /* an allocation failed */
    GPT2_E_ARG,           /* an argument is out of range or NULL where it must not be */
    GPT2_E_CONTEXT_FULL,  /* the tokens would not fit in the context (nothing was changed) */
    GPT2_E_BUFFER         /* a caller-provided buffer is too small (see the *_n / *_len out) */
} gpt2_status;

/* A short, static, English description of s ("ok", "out of memory", ...). */
const char *gpt2_strerror(gpt2_status s);

/* ------------------------------------------------------------------------------------------
 * Model
 * ---------------------------------------------------------------------------------------- */
typedef struct gpt2_model gpt2_model;       /* immutable after load; shareable across threads */
typedef struct gpt2_context gpt2_context;   /* KV cache + scratch for one sequence */

typedef struct gpt2_config {
    int32_t n_vocab;  /* tokens in the vocabulary (50257 for GPT-2) */
    int32_t n_ctx;    /* maximum positions (1024 for GPT-2) */
    int32_t n_embd;   /* channels of the residual stream (768 for 124M) */
    int32_t n_head;   /* attention heads per block */
    int32_t n_layer;  /* transformer blocks */
    int32_t eot_id;   /* id of "<|endoftext|>" (50256) */
} gpt2_config;

/* Weight types (the values are GGUF's ggml_type numbers). */
typedef enum gpt2_type {
    GPT2_TYPE_F32 = 0,
    GPT2_TYPE_F16 = 1,
    GPT2_TYPE_Q8_0 = 8,
    GPT2_TYPE_BF16 = 30
} gpt2_type;

/* Loads a GGUF model file (memory-mapped where possible). Every size, offset, count and
   shape is checked against the file before use. err (may be NULL) receives a
   human-readable reason on failure. The same as gpt2_load_ex(path, NULL, ...). */
gpt2_status gpt2_load(const char *path, gpt2_model **out, char *err, size_t err_len);

/* How a model is loaded. */
typedef struct gpt2_model_params {
    int32_t     use_mmap;  /* 1: map the file (default); 0: read it into memory. The
                              environment variable GPT2_NO_MMAP=1 also turns mapping off. */
    const char *kernels;   /* the kernel path: NULL (default) takes $GPT2_KERNELS if set, else
                              the best path this CPU runs. A name: "scalar", "avx2", "avx512",
                              "neon" (each the best of its family, e.g. avx512 with VNNI where
                              present), an exact path as gpt2_model_info.kernels reports it
                              ("avx512-vnni"), or a family without a feature ("avx512-novnni",
                              "neon-nodotprod"). A path this CPU cannot run is
                              GPT2_E_UNSUPPORTED, an unknown name GPT2_E_ARG: never a
                              silent fallback. Results are bit-identical across threads and
                              batching on every path; paths differ from each other by rounding. */
} gpt2_model_params;
gpt2_model_params gpt2_model_default_params(void);

/* gpt2_load with parameters; p may be NULL for the defaults. */
gpt2_status gpt2_load_ex(const char *path, const gpt2_model_params *p, gpt2_model **out,
                         char *err, size_t err_len);

/* Whether this CPU runs the kernel path `name` (any name gpt2_model_params.kernels takes):
   GPT2_OK, GPT2_E_UNSUPPORTED (a path of another CPU, or one needing features this CPU
   lacks), or GPT2_E_ARG (no path has that name, or name is NULL). */
gpt2_status gpt2_kernels_supported(const char *name);
/* The same from a GGUF image in memory. The buffer is borrowed: it must stay valid and
   unchanged until gpt2_free (it must be aligned to 8 bytes, as malloc's memory is). */
gpt2_status gpt2_load_from_buffer(const void *data, size_t size, gpt2_model **out, char *err,
                                  size_t err_len);
void        gpt2_free(gpt2_model *m);                      /* NULL is a no-op */
gpt2_config gpt2_get_config(const gpt2_model *m);

typedef struct gpt2_model_info {
    gpt2_config config;
    int32_t     n_ff;            /* MLP hidden width (4 * n_embd for GPT-2) */
    float       norm_eps;        /* layernorm epsilon */
    gpt2_type   matrix_type;     /* type of the block weight matrices */
    uint64_t    n_params;        /* parameters, the tied output matrix counted once */
    uint64_t    weight_bytes;    /* bytes of tensor data read to produce one token */
    uint64_t    file_bytes;      /* size of the model file */
    int         mapped;          /* 1 if the file is memory-mapped, 0 if it was read */
    const char *name;            /* general.name, or "" (valid while the model lives) */
    const char *kernels;         /* the kernel path in use: "avx512-vnni", "avx512", "avx2",
                                    "neon-dotprod", "neon" or "scalar" (see gpt2_model_params) */
} gpt2_model_info;
gpt2_model_info gpt2_get_model_info(const gpt2_model *m);

/* A static name for a weight type: "f32", "f16", "bf16", "q8_0"; "?" if unknown. */
const char *gpt2_type_name(gpt2_type t);

/* ------------------------------------------------------------------------------------------
 * Tokenizer (GPT-2's byte-level BPE, identical to OpenAI's encoder.py)
 * ---------------------------------------------------------------------------------------- */

/* Encode len bytes. *n_ids receives the number of ids the text needs; GPT2_E_BUFFER when
   cap is smaller (nothing past cap is written). allow_special = 0: "<|endoftext|>" is plain
   text, as in GPT-2's own encoder; 1: it becomes eot_id. Any byte string is accepted: a byte
   that is not part of valid UTF-8 is treated as a character of its own ("other" class), so
   decoding the ids always gives back the same bytes. */
gpt2_status gpt2_tokenize(const gpt2_model *m, const char *text, size_t len, int allow_special,
                          int32_t *ids, size_t cap, size_t *n_ids);

/* The bytes of one token (not NUL-terminated; may be part of a UTF-8 character). The
   pointer stays valid while the model lives. */
gpt2_status gpt2_token_bytes(const gpt2_model *m, int32_t id, const char **bytes, size_t *len);

/* The concatenated bytes of n ids. *len receives the number of bytes needed; GPT2_E_BUFFER
   when cap is smaller (nothing past cap is written). Not NUL-terminated. */
gpt2_status gpt2_detokenize(const gpt2_model *m, const int32_t *ids, size_t n,
                            char *buf, size_t cap, size_t *len);

/* ------------------------------------------------------------------------------------------
 * Context: the KV cache of one sequence, and the transformer forward pass
 * ---------------------------------------------------------------------------------------- */
typedef struct gpt2_context_params {
    int32_t n_threads;  /* worker threads for the matrix work (>= 1); results do not depend on it */
    int32_t n_ctx;      /* 0 = the model's; smaller values save memory */
} gpt2_context_params;
gpt2_context_params gpt2_context_default_params(void);

/* p may be NULL for the defaults. */
gpt2_status gpt2_context_new(const gpt2_model *m, const gpt2_context_params *p, gpt2_context **out);
void        gpt2_context_free(gpt2_context *c);            /* NULL is a no-op */
void        gpt2_context_reset(gpt2_context *c);           /* empty the KV cache */
int32_t     gpt2_context_length(const gpt2_context *c);    /* tokens in the KV cache */
int32_t     gpt2_context_size(const gpt2_context *c);      /* capacity in tokens */

/* Append n tokens at the current position. If logits != NULL it receives n * n_vocab floats,
   the next-token logits after each of the n tokens. GPT2_E_CONTEXT_FULL if it would
   overflow; GPT2_E_ARG for an id outside the vocabulary. On error nothing is appended. */
gpt2_status gpt2_eval(gpt2_context *c, const int32_t *ids, size_t n, float *logits);

/* Perplexity of a token sequence exactly as Hugging Face documents it ("Perplexity of
   fixed-length models"): windows of at most max_len tokens (0 = the context size) advanced
   by stride tokens (0 = max_len); each window scores only the tokens not scored by the
   previous one; ppl = exp(sum of negative log-likelihoods / tokens scored). The context is
   reset. *nll_mean (may be NULL) receives the mean negative log-likelihood. */
gpt2_status gpt2_perplexity(gpt2_context *c, const int32_t *ids, size_t n, int32_t max_len,
                            int32_t stride, double *ppl, double *nll_mean);

/* ------------------------------------------------------------------------------------------
 * Decoding
 * ---------------------------------------------------------------------------------------- */
typedef struct gpt2_sampling {
    float    temperature;         /* 1.0; 0 means greedy */
    int32_t  top_k;               /* 0 = off */
    float    top_p;               /* 1.0 = off */
    float    repetition_penalty;  /* 1.0 = off */
    uint64_t seed;
    int32_t  min_tokens_to_keep;  /* top-k / top-p never keep fewer; 0 means 1 (HF's default) */
} gpt2_sampling;

/* Applies, in place and in Hugging Face's order, repetition penalty (over prev), temperature,
   top-k, top-p to one row of logits; removed entries become -INFINITY. Each step is skipped
   when it is off: repetition_penalty 1, temperature 0 or 1, top_k 0, top_p 1. */
void gpt2_process_logits(const gpt2_sampling *s, float *logits, int32_t n_vocab,
                         const int32_t *prev, size_t n_prev);

typedef struct gpt2_generate_params {
    gpt2_sampling sampling;
    int32_t max_new_tokens;
    int32_t num_beams;             /* 1 = greedy/sampling; > 1 = beam search (deterministic) */
    float   length_penalty;        /* beam search, Hugging Face semantics */
    int32_t early_stopping;        /* beam search, Hugging Face semantics: 0 False, 1 True, 2 "never" */
    int32_t num_return_sequences;  /* beam search: how many hypotheses to return */
    int32_t eos_id;                /* -1 = never stop on a token; default eot_id */
} gpt2_generate_params;
gpt2_generate_params gpt2_generate_default_params(const gpt2_model *m);

/* Streaming callback: called once per generated token (not for beam search); return nonzero to stop. */
typedef int (*gpt2_on_token)(void *user, int32_t id, const char *bytes, size_t len);

/* Generates after the prompt. out receives the new ids (prompt excluded; an eos that ended a
   sequence is included, as Hugging Face returns it). For beam search out holds the
   num_return_sequences hypotheses best-first, each followed by -1 (cap ids in total).
   temperature 0 (or num_beams > 1) is deterministic; otherwise sampling from seed.
   The context is reset first. Generation stops at eos, after max_new_tokens, when cb returns
   nonzero, or at the end of the context (then GPT2_E_CONTEXT_FULL is returned together with
   the tokens generated so far in out / *n_out). */
gpt2_status gpt2_generate(gpt2_context *c, const int32_t *prompt, size_t n_prompt,
                          const gpt2_generate_params *p, int32_t *out, size_t cap, size_t *n_out,
                          gpt2_on_token cb, void *user);

/* Why generation ended. */
typedef enum gpt2_stop {
    GPT2_STOP_NONE = 0,
    GPT2_STOP_EOS,        /* the eos token was generated (beam search: the search was done) */
    GPT2_STOP_LENGTH,     /* max_new_tokens were generated */
    GPT2_STOP_CALLBACK,   /* the callback returned nonzero */
    GPT2_STOP_CONTEXT,    /* the context is full */
    GPT2_STOP_BUFFER      /* out is full */
} gpt2_stop;

/* What gpt2_generate_ex reports besides the tokens. */
typedef struct gpt2_generate_info {
    int32_t n_prompt;        /* prompt tokens evaluated */
    int32_t n_generated;     /* tokens generated (beam search: decoding steps run) */
    double  prompt_seconds;  /* wall time of the prompt's forward pass */
    double  gen_seconds;     /* wall time of the generation after it */
    gpt2_stop stop;
    int32_t n_hypotheses;    /* beam search: hypotheses returned */
    double *scores;          /* in: NULL, or room for num_return_sequences doubles; beam search
                                writes each hypothesis' score (Hugging Face's sequences_scores) */
} gpt2_generate_info;

/* gpt2_generate, and info (may be NULL) receives timings, the stop reason and beam scores. */
gpt2_status gpt2_generate_ex(gpt2_context *c, const int32_t *prompt, size_t n_prompt,
                             const gpt2_generate_params *p, int32_t *out, size_t cap,
                             size_t *n_out, gpt2_on_token cb, void *user,
                             gpt2_generate_info *info);

/* ------------------------------------------------------------------------------------------
 * Tools
 * ---------------------------------------------------------------------------------------- */

/* Writes a copy of the GGUF model at in_path to out_path with every 2-D weight matrix
   converted to type (F16, BF16 or Q8_0; F32 re-expands). 1-D tensors stay F32. */
gpt2_status gpt2_quantize(const char *in_path, const char *out_path, gpt2_type type,
                          char *err, size_t err_len);

/* The machine's memory read bandwidth in GB/s with n_threads threads: the median of a few
   passes over a buffer much larger than the caches (for roofline figures in benchmarks). */
gpt2_status gpt2_read_bandwidth(int32_t n_threads, double *gb_per_s);

#ifdef __cplusplus
}
#endif
#endif /* GPT2_H */
