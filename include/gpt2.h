/* gpt2.h — the public interface of gpt2c, a GPT-2 inference engine for the CPU in C11.
 *
 * Everything a program needs: load a model (one GGUF file), turn text into token ids and
 * back, run the transformer over tokens with a KV cache, and generate text greedily, by
 * sampling or by beam search, streamed as UTF-8 text with stop strings.
 *
 * Conventions
 *   - Every function that can fail returns a gpt2_status; GPT2_OK (0) is success.
 *     gpt2_strerror() names a status. Functions that load or write files also fill an
 *     optional caller-provided message buffer (err, err_len) with the precise reason; it is
 *     always NUL-terminated when err_len > 0, and may be NULL.
 *   - Handles are opaque. A gpt2_model is immutable once loaded and may be used by any
 *     number of threads at once; it must outlive every context made from it. A gpt2_context
 *     (KV cache + scratch) is used by one thread at a time; two contexts on one model may
 *     run in two threads. The same holds for gpt2_text_stream.
 *   - Buffers are owned by the caller: the library writes at most `cap` elements and says
 *     how many it needed. Pointers the library returns (token bytes, names) stay valid
 *     while the object they came from lives.
 *   - Out-parameters are set on failure too (to NULL or 0) unless said otherwise.
 *   - The library never prints, never exits, never aborts, and keeps no global mutable
 *     state. It reads two environment variables, documented where they apply:
 *     GPT2_KERNELS and GPT2_NO_MMAP (gpt2_model_params).
 *
 * A complete program (examples/simple.c is the same with every status checked):
 *
 *     #include <stdio.h>
 *     #include "gpt2.h"
 *     int main(void) {
 *         gpt2_model *m; char err[256];
 *         if (gpt2_load("models/gpt2-124M.gguf", &m, err, sizeof err)) { puts(err); return 1; }
 *         gpt2_context *c; gpt2_context_new(m, NULL, &c);
 *         int32_t ids[64], out[32]; size_t n, n_out;
 *         gpt2_tokenize(m, "Hello, my name is", 17, 0, ids, 64, &n);
 *         gpt2_generate_params p = gpt2_generate_default_params(m);
 *         p.max_new_tokens = 32;
 *         gpt2_generate(c, ids, n, &p, out, 32, &n_out, NULL, NULL);
 *         char text[1024]; size_t len;
 *         gpt2_detokenize(m, out, n_out, text, sizeof text, &len);
 *         printf("%.*s\n", (int)len, text);
 *         gpt2_context_free(c); gpt2_free(m);
 *         return 0;
 *     }
 *
 * Build: cc prog.c $(pkg-config --cflags --libs gpt2), or cc prog.c -Iinclude
 * build/libgpt2.a -lm -lpthread from a build tree.
 */
#ifndef GPT2_H
#define GPT2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPT2_VERSION "0.2.0"
#define GPT2_VERSION_MAJOR 0
#define GPT2_VERSION_MINOR 2
#define GPT2_VERSION_PATCH 0

/* ==========================================================================================
 * Status codes
 * ======================================================================================== */
typedef enum gpt2_status {
    GPT2_OK = 0,
    GPT2_E_IO,            /* a file could not be opened, read or written */
    GPT2_E_FORMAT,        /* a model file is malformed, truncated or inconsistent */
    GPT2_E_UNSUPPORTED,   /* well-formed, but uses something this engine (or CPU) cannot do */
    GPT2_E_NOMEM,         /* an allocation failed */
    GPT2_E_ARG,           /* an argument is out of range, or NULL where it must not be */
    GPT2_E_CONTEXT_FULL,  /* the tokens would not fit in the context (nothing was changed) */
    GPT2_E_BUFFER         /* a caller-provided buffer is too small (see the *_n / *_len out) */
} gpt2_status;

/* A short, static, English description of s ("ok", "out of memory", ...); "unknown status"
   for a value that is not a gpt2_status. Never NULL. */
const char *gpt2_strerror(gpt2_status s);

/* ==========================================================================================
 * Model
 * ======================================================================================== */
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

/* Weight types (the values are GGUF's ggml_type numbers). A model may mix them: each
   tensor's own type decides (general.file_type is never trusted). */
typedef enum gpt2_type {
    GPT2_TYPE_F32 = 0,
    GPT2_TYPE_F16 = 1,
    GPT2_TYPE_Q4_0 = 2,
    GPT2_TYPE_Q4_1 = 3,
    GPT2_TYPE_Q5_0 = 6,
    GPT2_TYPE_Q5_1 = 7,
    GPT2_TYPE_Q8_0 = 8,
    GPT2_TYPE_Q2_K = 10,
    GPT2_TYPE_Q3_K = 11,
    GPT2_TYPE_Q4_K = 12,
    GPT2_TYPE_Q5_K = 13,
    GPT2_TYPE_Q6_K = 14,
    GPT2_TYPE_BF16 = 30
} gpt2_type;

/* How a model is loaded; start from gpt2_model_default_params(). */
typedef struct gpt2_model_params {
    int32_t     use_mmap;  /* 1 (default): map the file; 0: read it into memory. The
                              environment variable GPT2_NO_MMAP=1 also turns mapping off. */
    const char *kernels;   /* the kernel path; NULL (default): $GPT2_KERNELS if set, else the
                              best path this CPU runs. A name: "scalar", "avx2", "avx512",
                              "neon" (each the best of its family, e.g. avx512 with VNNI
                              where the CPU has it); an exact path as gpt2_model_info.kernels
                              reports it ("avx512-vnni"); or a family without a feature
                              ("avx2-novnni", "avx512-novnni", "neon-nodotprod"). A path this
                              CPU cannot run is GPT2_E_UNSUPPORTED, an unknown name GPT2_E_ARG
                              (also when it comes from GPT2_KERNELS): never a silent fallback.
                              Results are bit-identical for any thread count and batching on
                              every path; paths differ from each other by rounding. */
} gpt2_model_params;

/* The defaults: mapped, best kernels (or $GPT2_KERNELS). */
gpt2_model_params gpt2_model_default_params(void);

/* Loads the GGUF model file at path into *out. Every size, offset, count and shape is
   checked against the file before use; a truncated, corrupt or hostile file gives
   GPT2_E_FORMAT (or GPT2_E_UNSUPPORTED for a well-formed file of something else), never a
   crash. path must be a regular file (a FIFO or a device is refused without reading it).
   p may be NULL for the defaults. On failure *out is NULL and err says why. Thread-safe. */
gpt2_status gpt2_load_ex(const char *path, const gpt2_model_params *p, gpt2_model **out,
                         char *err, size_t err_len);

/* gpt2_load_ex(path, NULL, out, err, err_len). */
gpt2_status gpt2_load(const char *path, gpt2_model **out, char *err, size_t err_len);

/* The same from a GGUF image in memory (kernels as with default parameters). The buffer is
   borrowed, not copied: it must stay valid and unchanged until gpt2_free, and be aligned to
   8 bytes (malloc's memory is). */
gpt2_status gpt2_load_from_buffer(const void *data, size_t size, gpt2_model **out, char *err,
                                  size_t err_len);

/* Frees a model and unmaps its file. Free its contexts first. NULL is a no-op. */
void gpt2_free(gpt2_model *m);

/* The model's shape; all zero (eot_id -1) for NULL. */
gpt2_config gpt2_get_config(const gpt2_model *m);

typedef struct gpt2_model_info {
    gpt2_config config;
    int32_t     n_ff;            /* MLP hidden width (4 * n_embd for GPT-2) */
    float       norm_eps;        /* layernorm epsilon */
    gpt2_type   matrix_type;     /* type of the first block's weight matrices */
    uint64_t    n_params;        /* parameters, the tied output matrix counted once */
    uint64_t    weight_bytes;    /* bytes of tensor data read to produce one token */
    uint64_t    file_bytes;      /* size of the model file */
    int         mapped;          /* 1 if the file is memory-mapped, 0 if it was read */
    const char *name;            /* general.name, or "" (valid while the model lives) */
    const char *kernels;         /* the kernel path in use: "avx512-vnni", "avx512", "avx2",
                                    "neon-dotprod", "neon" or "scalar" (static string) */
} gpt2_model_info;

/* What a model is and how it runs; zeros and "" for NULL. */
gpt2_model_info gpt2_get_model_info(const gpt2_model *m);

/* A static name for a weight type: "f32", "f16", "bf16", "q8_0", "q4_0", ..., "q4_K",
   ... as ggml spells them; "?" if unknown. */
const char *gpt2_type_name(gpt2_type t);

/* Whether this CPU runs the kernel path `name` (any name gpt2_model_params.kernels takes):
   GPT2_OK, GPT2_E_UNSUPPORTED (a path of another CPU, or one needing features this CPU
   lacks), or GPT2_E_ARG (no path has that name, or name is NULL). */
gpt2_status gpt2_kernels_supported(const char *name);

/* ==========================================================================================
 * Tokenizer (GPT-2's byte-level BPE, identical to OpenAI's encoder.py)
 * ======================================================================================== */

/* Encodes len bytes of text (need not be NUL-terminated; NULL only when len is 0). *n_ids
   receives the number of ids the text needs; GPT2_E_BUFFER when cap is smaller (the first
   cap ids are written, nothing past cap). ids may be NULL when cap is 0, to ask the size.
   allow_special = 0: "<|endoftext|>" is plain text, as in GPT-2's own encoder; 1: it
   becomes eot_id. Any byte string is accepted: a byte that is not part of valid UTF-8 is a
   character of its own, so decoding the ids always gives back the same bytes. A text never
   needs more ids than it has bytes. */
gpt2_status gpt2_tokenize(const gpt2_model *m, const char *text, size_t len, int allow_special,
                          int32_t *ids, size_t cap, size_t *n_ids);

/* The bytes of one token: *bytes (not NUL-terminated; it may be part of a UTF-8
   character) and *len. The pointer stays valid while the model lives. GPT2_E_ARG for an id
   outside the vocabulary. */
gpt2_status gpt2_token_bytes(const gpt2_model *m, int32_t id, const char **bytes, size_t *len);

/* The concatenated bytes of n ids into buf. *len receives the number of bytes needed;
   GPT2_E_BUFFER when cap is smaller (the first cap bytes are written). Not NUL-terminated.
   Every id is checked first: GPT2_E_ARG (and nothing written) if one is outside the
   vocabulary. */
gpt2_status gpt2_detokenize(const gpt2_model *m, const int32_t *ids, size_t n,
                            char *buf, size_t cap, size_t *len);

/* ==========================================================================================
 * Context: the KV cache of one sequence, and the transformer forward pass
 * ======================================================================================== */
typedef struct gpt2_context_params {
    int32_t n_threads;  /* worker threads for the matrix work, 1..256 (default: the CPUs
                           online); results do not depend on it */
    int32_t n_ctx;      /* positions to hold: 0 = the model's (default); 1..the model's
                           n_ctx saves memory; more is GPT2_E_ARG */
} gpt2_context_params;
gpt2_context_params gpt2_context_default_params(void);

/* A context for m (p NULL: the defaults), with its own threads and cache. m must outlive
   it. GPT2_E_ARG for parameters out of range, GPT2_E_NOMEM if the cache does not fit. */
gpt2_status gpt2_context_new(const gpt2_model *m, const gpt2_context_params *p, gpt2_context **out);
void        gpt2_context_free(gpt2_context *c);            /* stops its threads; NULL: no-op */
void        gpt2_context_reset(gpt2_context *c);           /* empty the KV cache */
int32_t     gpt2_context_length(const gpt2_context *c);    /* tokens in the KV cache */
int32_t     gpt2_context_size(const gpt2_context *c);      /* capacity in tokens */

/* Appends n tokens at the current position and runs them through the model. If logits is
   not NULL it receives n * n_vocab floats, the next-token logits after each of the n
   tokens. GPT2_E_CONTEXT_FULL if they would not fit, GPT2_E_ARG for an id outside the
   vocabulary: then nothing is appended. The result is the same, bit for bit, whether the
   tokens come in one call or many, and whatever n_threads. */
gpt2_status gpt2_eval(gpt2_context *c, const int32_t *ids, size_t n, float *logits);

/* Perplexity of a token sequence exactly as Hugging Face documents it ("Perplexity of
   fixed-length models"): windows of at most max_len tokens (0 = the context size) advanced
   by stride tokens (0 = max_len; at most max_len); each window scores only the tokens not
   scored by the previous one; ppl = exp(sum of negative log-likelihoods / tokens scored).
   Needs n >= 2. The context is reset. *nll_mean (may be NULL) receives the mean negative
   log-likelihood. */
gpt2_status gpt2_perplexity(gpt2_context *c, const int32_t *ids, size_t n, int32_t max_len,
                            int32_t stride, double *ppl, double *nll_mean);

/* ==========================================================================================
 * Decoding
 * ======================================================================================== */
typedef struct gpt2_sampling {
    float    temperature;         /* 1.0; 0 means greedy */
    int32_t  top_k;               /* 0 = off */
    float    top_p;               /* 1.0 = off */
    float    repetition_penalty;  /* 1.0 = off */
    uint64_t seed;
    int32_t  min_tokens_to_keep;  /* top-k / top-p never keep fewer; 0 means 1 (HF's default) */
} gpt2_sampling;

/* Applies, in place and in Hugging Face's order, repetition penalty (over the n_prev ids of
   prev), temperature, top-k, top-p to one row of n_vocab logits; removed entries become
   -INFINITY. Each step is skipped when it is off: repetition_penalty 1, temperature 0 or
   1, top_k 0, top_p 1. Invalid arguments leave the row unchanged. */
void gpt2_process_logits(const gpt2_sampling *s, float *logits, int32_t n_vocab,
                         const int32_t *prev, size_t n_prev);

/* ==========================================================================================
 * Streaming text
 * ==========================================================================================
 * A token's bytes may end in the middle of a UTF-8 character, and a stop string may span
 * tokens. A gpt2_text_stream takes token bytes as they come and hands on text that is safe
 * to show: whole characters, and never a stop string or what follows it. gpt2_generate does
 * this itself when its parameters have stop strings or an on_text callback; callers that
 * drive their own loop with gpt2_eval use it directly (examples/chat.c). */

/* Receives text (len > 0 bytes, not NUL-terminated, valid only during the call). Return
   nonzero to stop. */
typedef int (*gpt2_on_text)(void *user, const char *text, size_t len);

typedef struct gpt2_text_stream gpt2_text_stream;

/* A stream that stops at any of the n_stop stop strings (copied; none may be empty; n_stop
   0 for none, at most 1024). */
gpt2_status gpt2_text_stream_new(const char *const *stop, size_t n_stop, gpt2_text_stream **out);
void gpt2_text_stream_free(gpt2_text_stream *ts);   /* NULL: no-op */
void gpt2_text_stream_reset(gpt2_text_stream *ts);  /* forget held text and a stop */

/* Appends len bytes and calls emit (may be NULL) zero or more times with the text that is
   now certain. Returns 1 when a stop string is complete: the text before it has been
   emitted, the stop string and what follows are dropped, and later pushes do nothing but
   return 1. Returns -1 when emit returned nonzero, else 0. */
int gpt2_text_stream_push(gpt2_text_stream *ts, const char *bytes, size_t len, gpt2_on_text emit,
                          void *user);

/* At the end of the text: emits what is still held back (the start of a stop string that
   never completed, the bytes of an unfinished character as they are). Returns -1 when emit
   returned nonzero, else 0. */
int gpt2_text_stream_flush(gpt2_text_stream *ts, gpt2_on_text emit, void *user);

/* 1 once a stop string was found (until reset), else 0. */
int gpt2_text_stream_stopped(const gpt2_text_stream *ts);

/* ==========================================================================================
 * Generation
 * ======================================================================================== */
/* One step of beam search, for gpt2_generate_params.on_beam_step (valid during the call). */
typedef struct gpt2_beam_step {
    int32_t step;                    /* 1, 2, ...: the tokens each beam has generated */
    int32_t n_beams;                 /* the beams kept after this step, best first */
    const int32_t *const *tokens;    /* (n_beams) each beam's `step` tokens */
    const float *scores;             /* (n_beams) each beam's sum of log-probabilities */
    const int32_t *parent;           /* (n_beams) the beam of the previous step it extends */
    int32_t n_finished;              /* hypotheses that ended (with eos) at this step */
    const int32_t *finished_parent;  /* (n_finished) the beam of the previous step each ended */
    const double *finished_score;    /* (n_finished) its score: log-prob sum / length^length_penalty */
    int32_t done;                    /* 1: the search ends after this step */
} gpt2_beam_step;

typedef struct gpt2_generate_params {
    gpt2_sampling sampling;
    int32_t max_new_tokens;        /* 64 */
    int32_t num_beams;             /* 1 = greedy/sampling; 2..512 = beam search (deterministic) */
    float   length_penalty;        /* beam search, Hugging Face semantics (1.0) */
    int32_t early_stopping;        /* beam search, Hugging Face semantics: 0 False, 1 True, 2 "never" */
    int32_t num_return_sequences;  /* beam search: how many hypotheses to return (1..num_beams) */
    int32_t eos_id;                /* -1 = never stop on a token; default eot_id */
    /* greedy and sampling only (beam search returns whole hypotheses: cut their text with a
       gpt2_text_stream, as the gpt2 tool does): */
    const char *const *stop;       /* n_stop stop strings (NULL when n_stop is 0): generation
                                      ends once the generated text contains one (the prompt
                                      is not searched). The ids returned include the token
                                      that completed it; the text given to on_text ends
                                      before it. */
    int32_t n_stop;
    gpt2_on_text on_text;          /* NULL, or receives the generated text as it becomes
                                      safe to show (see "Streaming text"); the eos token is
                                      not text and is not given to it */
    void *on_text_user;
    /* beam search only: NULL, or shown every step's beams (gpt2_beam_step below) */
    void (*on_beam_step)(void *user, const gpt2_beam_step *s);
    void *on_beam_user;
} gpt2_generate_params;

/* The defaults above for m (m may be NULL: eos_id is then -1). */
gpt2_generate_params gpt2_generate_default_params(const gpt2_model *m);

/* Streaming callback: called once per generated token, eos included (not for beam search),
   with the token's bytes; return nonzero to stop. */
typedef int (*gpt2_on_token)(void *user, int32_t id, const char *bytes, size_t len);

/* Generates after the prompt (n_prompt >= 1 ids). out receives the new ids (prompt
   excluded; an eos that ended a sequence is included, as Hugging Face returns it). For beam
   search out holds the num_return_sequences hypotheses best-first, each followed by -1
   (cap ids in total). temperature 0 (or num_beams > 1) is deterministic; otherwise sampling
   from seed, the same tokens for the same seed whatever n_threads. The context is reset
   first. Generation stops at eos, after max_new_tokens, at a stop string, when a callback
   returns nonzero, when out is full (GPT2_E_BUFFER), or at the end of the context
   (GPT2_E_CONTEXT_FULL); in the last two cases out / *n_out hold what was generated. cb
   and user may be NULL. */
gpt2_status gpt2_generate(gpt2_context *c, const int32_t *prompt, size_t n_prompt,
                          const gpt2_generate_params *p, int32_t *out, size_t cap, size_t *n_out,
                          gpt2_on_token cb, void *user);

/* Why generation ended. */
typedef enum gpt2_stop {
    GPT2_STOP_NONE = 0,
    GPT2_STOP_EOS,        /* the eos token was generated (beam search: the search was done) */
    GPT2_STOP_LENGTH,     /* max_new_tokens were generated */
    GPT2_STOP_CALLBACK,   /* a callback returned nonzero */
    GPT2_STOP_CONTEXT,    /* the context is full */
    GPT2_STOP_BUFFER,     /* out is full */
    GPT2_STOP_STRING      /* the text contains a stop string */
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

/* ==========================================================================================
 * Inspection: every stage of the pipeline, for `gpt2 explain` and anyone who wants to look
 * ==========================================================================================
 * An observer set on a context sees every stage of every gpt2_eval on it, as read-only float
 * views, in the order the data flows. With no observer nothing is reported and nothing
 * costs extra; with one, the logits are the same bits. Generation (gpt2_generate) does not
 * report. */

typedef enum gpt2_stage {
    GPT2_STAGE_TOKEN_EMBEDDING,     /* (T, C)      wte row of each token */
    GPT2_STAGE_POSITION_EMBEDDING,  /* (T, C)      wpe row of each position */
    GPT2_STAGE_EMBEDDING,           /* (T, C)      their sum: the residual stream entering block 0 */
    GPT2_STAGE_ATTENTION,           /* (NH, T, N)  block `layer`'s attention weights; N = pos0 + T:
                                       row t covers every cell before it and itself, 0 after */
    GPT2_STAGE_BLOCK_OUTPUT,        /* (T, C)      the residual stream after block `layer` */
    GPT2_STAGE_FINAL_NORM,          /* (T, C)      ln_f of the last block's output */
    GPT2_STAGE_LOGITS               /* (T, V)      when the caller asked for logits */
} gpt2_stage;                       /* more stages may be added after these */

typedef struct gpt2_activation {
    gpt2_stage stage;
    int32_t layer;                  /* block index for ATTENTION and BLOCK_OUTPUT, else -1 */
    int32_t pos0;                   /* position of the first of the T tokens of this call */
    int32_t n_dims;                 /* 2 or 3 */
    int32_t dims[3];                /* row-major shape, as in the comments above */
    const float *data;              /* valid during the call only */
} gpt2_activation;

typedef void (*gpt2_observer)(void *user, const gpt2_activation *a);

/* Sets (fn NULL: removes) the observer of c. A call of gpt2_eval that the context splits
   into several passes (more tokens than fit one pass) reports each pass, with its pos0.
   The first observer set allocates the buffers it needs (GPT2_E_NOMEM if it cannot: then
   no observer is set). Hugging Face's output_hidden_states are EMBEDDING, then BLOCK_OUTPUT
   of blocks 0..L-2, then FINAL_NORM; output_attentions are the ATTENTION stages. */
gpt2_status gpt2_context_set_observer(gpt2_context *c, gpt2_observer fn, void *user);

/* The "logit lens": the output layer (ln_f, then the output matrix) applied to n rows x (n,
   C) of the residual stream, e.g. a BLOCK_OUTPUT: what the model would predict if it
   stopped after that block. logits receives (n, V). Uses c's threads and scratch, not its
   cache. */
gpt2_status gpt2_logit_lens(gpt2_context *c, const float *x, size_t n, float *logits);

/* One step of the tokenizer on one piece of text, for gpt2_tokenize_trace. */
typedef struct gpt2_bpe_event {
    size_t piece_start;     /* the piece: text[piece_start .. piece_start + piece_len) */
    size_t piece_len;
    int32_t step;           /* 0: the piece as one token per byte; k > 0: after the k-th merge */
    int32_t rank;           /* the rank of the merge made at this step (-1 at step 0) */
    int32_t special;        /* 1: the piece is a special token ("<|endoftext|>", allow_special) */
    const int32_t *ids;     /* the piece's tokens after this step (valid during the call) */
    size_t n_ids;
} gpt2_bpe_event;
typedef void (*gpt2_bpe_observer)(void *user, const gpt2_bpe_event *e);

/* Tokenizes as gpt2_tokenize does and shows fn every step: each piece of the pre-tokenizer
   in order, as its bytes and then after each merge, lowest rank first. The last step of
   each piece holds its final tokens. */
gpt2_status gpt2_tokenize_trace(const gpt2_model *m, const char *text, size_t len,
                                int allow_special, gpt2_bpe_observer fn, void *user);

/* ==========================================================================================
 * Tools (not needed for inference)
 * ======================================================================================== */

/* Writes a copy of the GGUF model at in_path to out_path with every 2-D weight matrix
   converted to type (any gpt2_type; F32 re-expands; GPT2_E_UNSUPPORTED if a matrix's rows
   are not whole blocks of it). 1-D tensors stay as they are. The file is written under a
   new unique name beside out_path and renamed onto it at the end, so out_path is never
   half-written; an out_path that exists and is not a regular file is refused. */
gpt2_status gpt2_quantize(const char *in_path, const char *out_path, gpt2_type type,
                          char *err, size_t err_len);

/* The same with the type of each tensor chosen as llama.cpp's llama-quantize chooses it for
   a GPT-2 (no importance matrix), by its names: "f32", "f16", "bf16", "q8_0", "q4_0",
   "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k". E.g. q4_k_m: q6_K
   for the tied embedding, q6_K for attn_qkv and ffn_down in some layers, q4_K for the rest;
   a matrix whose rows are not whole 256-number blocks falls back as llama.cpp does
   (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, q2_K/q3_K -> q4_0). position_embd, norms and
   biases are kept. GPT2_E_ARG for an unknown name. */
gpt2_status gpt2_quantize_recipe(const char *in_path, const char *out_path, const char *recipe,
                                 char *err, size_t err_len);

/* What a model file holds, for `gpt2 info`: its tensors and its metadata. */
typedef struct gpt2_tensor_info {
    const char *name;        /* not NUL-terminated: name_len bytes (valid while the model lives) */
    size_t      name_len;
    gpt2_type   type;
    int32_t     n_dims;
    int64_t     ne[4];       /* ne[0] is the row length, as GGUF stores it */
    uint64_t    bytes;
    uint64_t    offset;      /* in the file */
} gpt2_tensor_info;

size_t gpt2_tensor_count(const gpt2_model *m);  /* 0 for NULL */
/* tensor i (< gpt2_tensor_count) into *out; GPT2_E_ARG otherwise */
gpt2_status gpt2_tensor_get(const gpt2_model *m, size_t i, gpt2_tensor_info *out);

size_t gpt2_metadata_count(const gpt2_model *m); /* 0 for NULL */
/* Metadata entry i: *key (not NUL-terminated, *key_len bytes, valid while the model lives)
   and its value written as text into value (cap bytes, always NUL-terminated when cap > 0,
   cut if longer): numbers as numbers, strings as they are, arrays as "[N T]" with the
   first few elements. GPT2_E_ARG for i out of range. */
gpt2_status gpt2_metadata_get(const gpt2_model *m, size_t i, const char **key, size_t *key_len,
                              char *value, size_t cap);

/* The machine's memory read bandwidth in GB/s with n_threads (1..256) threads: the median
   of a few passes over a 256 MB buffer (for roofline figures in benchmarks). */
gpt2_status gpt2_read_bandwidth(int32_t n_threads, double *gb_per_s);

#ifdef __cplusplus
}
#endif
#endif /* GPT2_H */
