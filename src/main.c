/* main.c — the `gpt2` command-line tool: parses flags, calls the public API (gpt2.h).
 *
 *   gpt2 [complete] [-m MODEL] [-p TEXT | -f FILE] [options]   text completion, streamed
 *   gpt2 tokenize   [-m MODEL] [TEXT | -f FILE | stdin]        ids, space-separated
 *   gpt2 detokenize [-m MODEL] ID...                           the text, raw bytes
 *   gpt2 perplexity -m MODEL -f FILE                           perplexity as HF computes it
 *   gpt2 bench      -m MODEL [-p N] [-n N] [-t N]              prompt and generation speed
 *   gpt2 quantize   IN.gguf OUT.gguf TYPE                      f32, f16, bf16, q8_0
 *
 * Generated text goes to stdout; progress, statistics and errors to stderr. Every error is
 * one line and a non-zero exit status (1 for failures, 2 for bad usage).
 */
#define _POSIX_C_SOURCE 200809L
#include "gpt2.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "models/gpt2-124M.gguf"
#define MAX_INPUT_BYTES ((size_t)256 << 20)

/* ---- errors ------------------------------------------------------------------------------ */

_Noreturn static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("gpt2: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

#define die_usage(...) die(2, __VA_ARGS__)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- flag parsing -------------------------------------------------------------------------- */

typedef struct {
    int argc;
    char **argv;
    int i;
} args;

/* the value after a flag */
static const char *need_value(args *a, const char *flag) {
    if (a->i + 1 >= a->argc) die_usage("%s needs a value (see --help)", flag);
    return a->argv[++a->i];
}

static long long parse_int(const char *flag, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die_usage("invalid value for %s: '%s' (expected an integer from %lld to %lld)", flag, s, lo, hi);
    return v;
}

static unsigned long long parse_u64(const char *flag, const char *s) {
    char *end;
    errno = 0;
    if (*s == '-') die_usage("invalid value for %s: '%s' (expected a non-negative integer)", flag, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        die_usage("invalid value for %s: '%s' (expected a non-negative integer)", flag, s);
    return v;
}

/* a finite float in [lo, hi]; lo_open excludes lo */
static float parse_float(const char *flag, const char *s, double lo, bool lo_open, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || (lo_open && v == lo) || v > hi)
        die_usage("invalid value for %s: '%s' (expected a number %s %g%s%g)", flag, s,
                  lo_open ? ">" : ">=", lo, isinf(hi) ? "" : " and <= ", isinf(hi) ? 0.0 : hi);
    return (float)v;
}

/* ---- input ------------------------------------------------------------------------------- */

static char *read_stream(FILE *f, const char *what, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) die(1, "out of memory");
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_INPUT_BYTES) die(1, "%s: larger than %zu MB", what, MAX_INPUT_BYTES >> 20);
            cap *= 2;
            char *b = realloc(buf, cap);
            if (!b) die(1, "out of memory");
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) die(1, "%s: read error", what);
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(1, "%s: %s", path, strerror(errno));
    char *buf = read_stream(f, path, len);
    fclose(f);
    return buf;
}

/* The offset of the first byte that is not part of valid UTF-8, or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t n;
        unsigned cp;
        if (b < 0x80) { i++; continue; }
        else if (b >= 0xC2 && b <= 0xDF) { n = 2; cp = b & 0x1F; }
        else if (b >= 0xE0 && b <= 0xEF) { n = 3; cp = b & 0x0F; }
        else if (b >= 0xF0 && b <= 0xF4) { n = 4; cp = b & 0x07; }
        else return i;
        if (i + n > len) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n;
    }
    return len;
}

static void require_utf8(const char *text, size_t len, const char *what) {
    size_t bad = utf8_invalid_at((const unsigned char *)text, len);
    if (bad < len)
        die(1, "%s is not valid UTF-8 (byte 0x%02x at offset %zu)", what,
            (unsigned char)text[bad], bad);
}

static const char *default_model(void) {
    const char *env = getenv("GPT2_MODEL");
    return env && *env ? env : DEFAULT_MODEL;
}

static gpt2_model *load_model(const char *path, bool stats, double *seconds) {
    char err[512];
    gpt2_model *m;
    double t0 = now();
    gpt2_status s = gpt2_load(path, &m, err, sizeof err);
    if (s != GPT2_OK) {
        if (s == GPT2_E_IO && access(path, F_OK) != 0)
            die(1, "%s (convert a model first: python3 scripts/convert.py gpt2 -o %s)", err, path);
        die(1, "%s", err);
    }
    if (seconds) *seconds = now() - t0;
    if (stats) {
        gpt2_model_info in = gpt2_get_model_info(m);
        fprintf(stderr, "gpt2: loaded %s: %d layers, %d heads, %d wide, context %d, %.1fM params, %s, "
                "%.1f MB in %.1f ms\n", path, in.config.n_layer, in.config.n_head,
                in.config.n_embd, in.config.n_ctx, (double)in.n_params / 1e6,
                gpt2_type_name(in.matrix_type), (double)in.file_bytes / 1e6, (now() - t0) * 1e3);
    }
    return m;
}

static int32_t *tokenize_all(const gpt2_model *m, const char *text, size_t len, bool special,
                             size_t *n) {
    size_t cap = len + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) die(1, "out of memory");
    gpt2_status s = gpt2_tokenize(m, text, len, special, ids, cap, n);
    if (s == GPT2_E_BUFFER) { /* cannot happen: a byte never makes more than one id */
        ids = realloc(ids, *n * sizeof *ids);
        if (!ids) die(1, "out of memory");
        s = gpt2_tokenize(m, text, len, special, ids, *n, n);
    }
    if (s != GPT2_OK) die(1, "tokenizing failed: %s", gpt2_strerror(s));
    return ids;
}

/* ---- streaming output -------------------------------------------------------------------
 * Tokens end in the middle of UTF-8 characters, and a stop string can span several tokens,
 * so bytes are held back until they can no longer be part of either: a character is printed
 * whole, and the text before a stop string is printed without it. */

typedef struct {
    char *buf;
    size_t len, cap;
    const char **stop;
    int n_stop;
    bool stopped;
} streamer;

/* bytes at the end of s[0..n) that begin an unfinished UTF-8 character */
static size_t utf8_incomplete_tail(const unsigned char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char b = s[n - back];
        if ((b & 0xC0) == 0x80) continue; /* continuation byte: look further back */
        size_t need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

static void stream_emit(streamer *st, size_t n) {
    fwrite(st->buf, 1, n, stdout);
    fflush(stdout);
    memmove(st->buf, st->buf + n, st->len - n);
    st->len -= n;
}

/* Appends bytes; returns true when a stop string was completed. */
static bool stream_push(streamer *st, const char *bytes, size_t len) {
    if (st->stopped) return true;
    if (st->len + len > st->cap) {
        st->cap = (st->len + len) * 2 + 64;
        st->buf = realloc(st->buf, st->cap);
        if (!st->buf) die(1, "out of memory");
    }
    memcpy(st->buf + st->len, bytes, len);
    st->len += len;
    /* a complete stop string: print what precedes the earliest one and stop */
    size_t cut = SIZE_MAX;
    for (int i = 0; i < st->n_stop; i++) {
        size_t sl = strlen(st->stop[i]);
        for (size_t p = 0; sl && p + sl <= st->len && p < cut; p++)
            if (memcmp(st->buf + p, st->stop[i], sl) == 0) {
                cut = p;
                break;
            }
    }
    if (cut != SIZE_MAX) {
        st->len = cut;
        stream_emit(st, cut);
        st->stopped = true;
        return true;
    }
    /* hold back the longest tail that could still begin a stop string */
    size_t hold = 0;
    for (int i = 0; i < st->n_stop; i++) {
        size_t sl = strlen(st->stop[i]);
        for (size_t k = sl - 1 < st->len ? sl - 1 : st->len; k > hold; k--)
            if (memcmp(st->buf + st->len - k, st->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    size_t ready = st->len - hold;
    ready -= utf8_incomplete_tail((const unsigned char *)st->buf, ready);
    if (ready) stream_emit(st, ready);
    return false;
}

static void stream_finish(streamer *st) {
    if (!st->stopped && st->len) stream_emit(st, st->len); /* invalid bytes go out as they are */
}

static int on_token(void *user, int32_t id, const char *bytes, size_t len) {
    (void)id;
    return stream_push((streamer *)user, bytes, len) ? 1 : 0;
}

/* ---- gpt2 complete ------------------------------------------------------------------------- */

static const char *complete_help =
    "usage: gpt2 [complete] [-m MODEL] (-p TEXT | -f FILE) [options]\n"
    "\n"
    "Continues the text and streams the completion to stdout.\n"
    "\n"
    "  -m, --model PATH        GGUF model (default $GPT2_MODEL, else " DEFAULT_MODEL ")\n"
    "  -p, --prompt TEXT       the prompt\n"
    "  -f, --file PATH         read the prompt from a file ('-' for stdin)\n"
    "  -n, --n-predict N       tokens to generate (default 64)\n"
    "      --temp T            sampling temperature, 0 = greedy (default 0.8)\n"
    "      --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
    "      --top-p P           keep the smallest set with probability >= P, 1 = off (default 0.95)\n"
    "      --repeat-penalty R  penalise tokens already in the text, 1 = off (default 1.0)\n"
    "      --seed S            random seed (default: from the clock; printed with --stats)\n"
    "      --greedy            always take the most likely token (same as --temp 0)\n"
    "      --beams B           beam search with B beams (deterministic)\n"
    "      --length-penalty L  beam search: score = log-prob / length^L (default 1.0)\n"
    "      --early-stopping    beam search: stop once B hypotheses are finished\n"
    "      --early-stopping-never  beam search: Hugging Face's early_stopping=\"never\"\n"
    "      --num-return N      beam search: print the N best hypotheses (default 1)\n"
    "      --stop STR          stop when the text contains STR (not printed; repeatable;\n"
    "                          \\n, \\t, \\\\ are unescaped)\n"
    "      --ignore-eos        do not stop at <|endoftext|>\n"
    "      --special           \"<|endoftext|>\" in the prompt is the special token\n"
    "      --no-prompt         print only the completion, not the prompt before it\n"
    "  -c, --ctx N             context size in tokens (default: the model's)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "      --stats             print load time and tokens/s to stderr\n"
    "  -h, --help              this help\n";

/* "\n" -> newline etc., in place */
static char *unescape(char *s) {
    char *o = s;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            *o++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return s;
}

static int cmd_complete(args *a) {
    const char *model = default_model(), *prompt = NULL, *file = NULL;
    const char *stops[64];
    int n_stop = 0, n_threads = 0, n_ctx = 0;
    bool stats = false, special = false, echo = true, ignore_eos = false, seed_set = false;
    bool early = false, early_never = false;
    /* the library's defaults (no model yet: eos is set after loading), with the CLI's
       sampling defaults on top */
    gpt2_generate_params gp = gpt2_generate_default_params(NULL);
    gp.sampling.temperature = 0.8f;
    gp.sampling.top_k = 40;
    gp.sampling.top_p = 0.95f;
    for (; a->i < a->argc; a->i++) {
        const char *f = a->argv[a->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { fputs(complete_help, stdout); return 0; }
        else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model = need_value(a, f);
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) prompt = need_value(a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) file = need_value(a, f);
        else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict"))
            gp.max_new_tokens = (int32_t)parse_int(f, need_value(a, f), 0, 1 << 20);
        else if (!strcmp(f, "--temp"))
            gp.sampling.temperature = parse_float(f, need_value(a, f), 0, false, 1e6);
        else if (!strcmp(f, "--top-k"))
            gp.sampling.top_k = (int32_t)parse_int(f, need_value(a, f), 0, INT32_MAX);
        else if (!strcmp(f, "--top-p"))
            gp.sampling.top_p = parse_float(f, need_value(a, f), 0, true, 1);
        else if (!strcmp(f, "--repeat-penalty"))
            gp.sampling.repetition_penalty = parse_float(f, need_value(a, f), 0, true, 1e6);
        else if (!strcmp(f, "--seed")) { gp.sampling.seed = parse_u64(f, need_value(a, f)); seed_set = true; }
        else if (!strcmp(f, "--greedy")) gp.sampling.temperature = 0;
        else if (!strcmp(f, "--beams"))
            gp.num_beams = (int32_t)parse_int(f, need_value(a, f), 1, 512);
        else if (!strcmp(f, "--length-penalty"))
            gp.length_penalty = parse_float(f, need_value(a, f), -1e6, false, 1e6);
        else if (!strcmp(f, "--early-stopping")) early = true;
        else if (!strcmp(f, "--early-stopping-never")) early_never = true;
        else if (!strcmp(f, "--num-return"))
            gp.num_return_sequences = (int32_t)parse_int(f, need_value(a, f), 1, 512);
        else if (!strcmp(f, "--stop")) {
            if (n_stop == 64) die_usage("too many --stop strings (64 at most)");
            char *s = unescape(strdup(need_value(a, f)));
            if (!*s) die_usage("--stop needs a non-empty string");
            stops[n_stop++] = s;
        }
        else if (!strcmp(f, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(f, "--special")) special = true;
        else if (!strcmp(f, "--no-prompt")) echo = false;
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx"))
            n_ctx = (int)parse_int(f, need_value(a, f), 1, 1 << 20);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads"))
            n_threads = (int)parse_int(f, need_value(a, f), 1, 256);
        else if (!strcmp(f, "--stats")) stats = true;
        else if (!strcmp(f, "tokenize") || !strcmp(f, "detokenize") || !strcmp(f, "perplexity") ||
                 !strcmp(f, "bench") || !strcmp(f, "quantize") || !strcmp(f, "complete"))
            die_usage("the command comes first: gpt2 %s [options]", f);
        else die_usage("unknown option '%s' (see gpt2 --help)", f);
    }
    if (prompt && file) die_usage("give the prompt with -p or -f, not both");
    if (!prompt && !file) die_usage("no prompt: give one with -p TEXT or -f FILE (see gpt2 --help)");
    if (early && early_never) die_usage("--early-stopping and --early-stopping-never exclude each other");
    if (gp.num_return_sequences > gp.num_beams)
        die_usage("--num-return %d is more than --beams %d", gp.num_return_sequences, gp.num_beams);
    gp.early_stopping = early ? 1 : early_never ? 2 : 0;

    size_t len;
    char *text;
    if (file) text = !strcmp(file, "-") ? read_stream(stdin, "stdin", &len) : read_file(file, &len);
    else { len = strlen(prompt); text = strdup(prompt); }
    require_utf8(text, len, "the prompt");
    if (len == 0)
        die(1, "the prompt is empty (for text from nothing, use --special -p '<|endoftext|>')");

    double load_s;
    gpt2_model *m = load_model(model, stats, &load_s);
    gpt2_config cfg = gpt2_get_config(m);
    gp.eos_id = ignore_eos ? -1 : cfg.eot_id;
    if (!seed_set) gp.sampling.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    size_t n_prompt;
    int32_t *ids = tokenize_all(m, text, len, special, &n_prompt);
    gpt2_context_params cp = gpt2_context_default_params();
    if (n_threads) cp.n_threads = n_threads;
    cp.n_ctx = n_ctx;
    gpt2_context *c;
    gpt2_status s = gpt2_context_new(m, &cp, &c);
    if (s) die(1, "cannot create a context: %s", gpt2_strerror(s));
    int32_t ctx = gpt2_context_size(c);
    if (n_prompt > (size_t)ctx)
        die(1, "the prompt is %zu tokens but the context holds %d", n_prompt, ctx);

    streamer st = {NULL, 0, 0, stops, n_stop, false};
    if (echo && gp.num_beams == 1) { fwrite(text, 1, len, stdout); fflush(stdout); }
    size_t cap = (size_t)(gp.max_new_tokens + 1) * (size_t)gp.num_return_sequences + 1;
    int32_t *out = malloc(cap * sizeof *out);
    double *scores = malloc((size_t)gp.num_return_sequences * sizeof *scores);
    if (!out || !scores) die(1, "out of memory");
    size_t n_out = 0;
    gpt2_generate_info info;
    memset(&info, 0, sizeof info);
    info.scores = scores;
    s = gpt2_generate_ex(c, ids, n_prompt, &gp, out, cap, &n_out,
                         gp.num_beams == 1 ? on_token : NULL, &st, &info);
    if (s != GPT2_OK && s != GPT2_E_CONTEXT_FULL) die(1, "generation failed: %s", gpt2_strerror(s));
    if (gp.num_beams == 1) {
        stream_finish(&st);
    } else {
        /* the hypotheses, best first: ids separated by -1 */
        size_t i = 0;
        for (int h = 0; h < info.n_hypotheses; h++) {
            if (gp.num_return_sequences > 1)
                printf("%s[hypothesis %d, score %.6f]\n", h ? "\n" : "", h + 1, scores[h]);
            streamer hs = {NULL, 0, 0, stops, n_stop, false};
            if (echo) stream_push(&hs, text, len);
            for (; i < n_out && out[i] != -1; i++) {
                const char *b;
                size_t bl;
                gpt2_token_bytes(m, out[i], &b, &bl);
                if (stream_push(&hs, b, bl)) break;
            }
            while (i < n_out && out[i] != -1) i++;
            i++;
            stream_finish(&hs);
            free(hs.buf);
        }
        if (gp.num_return_sequences == 1 && info.n_hypotheses == 1 && stats)
            fprintf(stderr, "gpt2: beam score %.6f\n", scores[0]);
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (info.stop == GPT2_STOP_CONTEXT)
        fprintf(stderr, "gpt2: stopped: the context (%d tokens) is full\n", ctx);
    if (stats) {
        fprintf(stderr, "gpt2: load %.1f ms | prompt %d tokens, %.1f ms, %.1f tokens/s | "
                "generated %d tokens, %.1f ms, %.1f tokens/s | %d threads, seed %llu\n",
                load_s * 1e3, info.n_prompt, info.prompt_seconds * 1e3,
                info.prompt_seconds > 0 ? info.n_prompt / info.prompt_seconds : 0.0,
                info.n_generated, info.gen_seconds * 1e3,
                info.gen_seconds > 0 ? info.n_generated / info.gen_seconds : 0.0,
                cp.n_threads, (unsigned long long)gp.sampling.seed);
    }
    free(st.buf);
    free(out);
    free(scores);
    free(ids);
    free(text);
    for (int i = 0; i < n_stop; i++) free((char *)stops[i]);
    gpt2_context_free(c);
    gpt2_free(m);
    return 0;
}

/* ---- gpt2 tokenize / detokenize ---------------------------------------------------------- */

static int cmd_tokenize(args *a) {
    const char *model = default_model(), *file = NULL, *text = NULL;
    bool special = false;
    for (; a->i < a->argc; a->i++) {
        const char *f = a->argv[a->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: gpt2 tokenize [-m MODEL] [--special] [TEXT | -f FILE]\n\n"
                   "Prints the token ids of TEXT (or of the file, or of stdin), space-separated,\n"
                   "on one line. --special turns \"<|endoftext|>\" into its token.\n");
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model = need_value(a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) file = need_value(a, f);
        else if (!strcmp(f, "--special")) special = true;
        else if (f[0] == '-' && f[1]) die_usage("unknown option '%s' (see gpt2 tokenize --help)", f);
        else if (text) die_usage("give one text (quote it), or use -f FILE");
        else text = f;
    }
    if (text && file) die_usage("give a text or -f FILE, not both");
    size_t len;
    char *buf;
    if (file && strcmp(file, "-")) buf = read_file(file, &len);
    else if (text) { len = strlen(text); buf = strdup(text); }
    else buf = read_stream(stdin, "stdin", &len);
    require_utf8(buf, len, "the text");
    gpt2_model *m = load_model(model, false, NULL);
    size_t n;
    int32_t *ids = tokenize_all(m, buf, len, special, &n);
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    free(buf);
    gpt2_free(m);
    return 0;
}

static int cmd_detokenize(args *a) {
    const char *model = default_model();
    int32_t *ids = malloc((size_t)a->argc * sizeof *ids);
    size_t n = 0;
    if (!ids) die(1, "out of memory");
    for (; a->i < a->argc; a->i++) {
        const char *f = a->argv[a->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: gpt2 detokenize [-m MODEL] ID...\n\nWrites the bytes of the tokens to stdout.\n");
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model = need_value(a, f);
        else if (f[0] == '-' && !(f[1] >= '0' && f[1] <= '9'))
            die_usage("unknown option '%s' (see gpt2 detokenize --help)", f);
        else ids[n++] = (int32_t)parse_int("token id", f, 0, INT32_MAX);
    }
    gpt2_model *m = load_model(model, false, NULL);
    gpt2_config cfg = gpt2_get_config(m);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= cfg.n_vocab)
            die(1, "token id %d is outside the vocabulary (0..%d)", ids[i], cfg.n_vocab - 1);
        const char *b;
        size_t bl;
        gpt2_token_bytes(m, ids[i], &b, &bl);
        fwrite(b, 1, bl, stdout);
    }
    fflush(stdout);
    free(ids);
    gpt2_free(m);
    return 0;
}

/* ---- gpt2 perplexity ---------------------------------------------------------------------- */

static int cmd_perplexity(args *a) {
    const char *model = default_model(), *file = NULL;
    int n_threads = 0, max_len = 0, stride = 0;
    for (; a->i < a->argc; a->i++) {
        const char *f = a->argv[a->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: gpt2 perplexity [-m MODEL] -f FILE [--ctx N] [--stride S] [-t N]\n\n"
                   "Perplexity of the file's text as Hugging Face documents it (\"Perplexity of\n"
                   "fixed-length models\"): windows of N tokens (default: the model's context)\n"
                   "moved by S tokens (default N); each token is scored once, with as much\n"
                   "context as its window gives. Prints the perplexity to stdout.\n");
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model = need_value(a, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) file = need_value(a, f);
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx")) max_len = (int)parse_int(f, need_value(a, f), 2, 1 << 20);
        else if (!strcmp(f, "--stride")) stride = (int)parse_int(f, need_value(a, f), 1, 1 << 20);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) n_threads = (int)parse_int(f, need_value(a, f), 1, 256);
        else die_usage("unknown option '%s' (see gpt2 perplexity --help)", f);
    }
    if (!file) die_usage("perplexity needs -f FILE");
    size_t len;
    char *text = strcmp(file, "-") ? read_file(file, &len) : read_stream(stdin, "stdin", &len);
    require_utf8(text, len, "the text");
    gpt2_model *m = load_model(model, false, NULL);
    size_t n;
    int32_t *ids = tokenize_all(m, text, len, false, &n);
    if (n < 2) die(1, "the text has %zu token%s: perplexity needs at least 2", n, n == 1 ? "" : "s");
    gpt2_context_params cp = gpt2_context_default_params();
    if (n_threads) cp.n_threads = n_threads;
    gpt2_context *c;
    if (gpt2_context_new(m, &cp, &c)) die(1, "cannot create a context");
    if (max_len == 0 || max_len > gpt2_context_size(c)) max_len = gpt2_context_size(c);
    if (stride == 0) stride = max_len;
    if (stride > max_len) die_usage("--stride %d is larger than the window (%d)", stride, max_len);
    double ppl, nll, t0 = now();
    gpt2_status s = gpt2_perplexity(c, ids, n, max_len, stride, &ppl, &nll);
    if (s) die(1, "perplexity failed: %s", gpt2_strerror(s));
    fprintf(stderr, "gpt2: %zu tokens, windows of %d, stride %d, mean NLL %.6f, %.1f s\n", n,
            max_len, stride, nll, now() - t0);
    printf("%.4f\n", ppl);
    free(ids);
    free(text);
    gpt2_context_free(c);
    gpt2_free(m);
    return 0;
}

/* ---- gpt2 bench ----------------------------------------------------------------------------- */

/* tokenizer throughput on a few kinds of text, in MB/s */
static void bench_tokenizer(const gpt2_model *m, const char *file) {
    static const char *para =
        "The old lighthouse keeper climbed the spiral stairs every evening at dusk, counting "
        "the steps as his father had taught him. There were 214 of them, worn smooth in the "
        "middle; he'd replaced the lamp's wick 3,650 times. \"It's not the light that matters,\" "
        "he'd say, \"it's that someone keeps it.\"\n";
    struct { const char *name; char *text; size_t len; } cases[4];
    int n = 0;
    size_t big = (size_t)1 << 20;
    char *prose = malloc(big), *same = malloc(big), *nospace = malloc(100000);
    if (!prose || !same || !nospace) die(1, "out of memory");
    size_t pl = strlen(para);
    for (size_t i = 0; i < big; i++) prose[i] = para[i % pl];
    memset(same, 'a', big);
    for (size_t i = 0; i < 100000; i++) nospace[i] = "abcdefghijklmnopqrstuvwxyz0123456789.,;"[(i * 7 + i / 13) % 39];
    cases[n].name = "English prose, 1 MB"; cases[n].text = prose; cases[n++].len = big;
    cases[n].name = "one letter repeated, 1 MB"; cases[n].text = same; cases[n++].len = big;
    cases[n].name = "100 KB without a space"; cases[n].text = nospace; cases[n++].len = 100000;
    if (file) {
        size_t len;
        cases[n].text = read_file(file, &len);
        cases[n].len = len;
        cases[n++].name = file;
    }
    for (int i = 0; i < n; i++) {
        double best = 1e9;
        size_t n_ids = 0;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            int32_t *ids = tokenize_all(m, cases[i].text, cases[i].len, false, &n_ids);
            double t = now() - t0;
            free(ids);
            if (t < best) best = t;
        }
        printf("tokenize   %-28s %8.2f MB/s  (%zu tokens, %.1f ms)\n", cases[i].name,
               (double)cases[i].len / best / 1e6, n_ids, best * 1e3);
    }
    for (int i = 0; i < n; i++) free(cases[i].text);
}

static int cmd_bench(args *a) {
    const char *model = default_model(), *tok_file = NULL;
    int n_prompt = 512, n_gen = 128, n_threads = 0, reps = 3;
    bool roofline = false, tokenizer = false;
    for (; a->i < a->argc; a->i++) {
        const char *f = a->argv[a->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: gpt2 bench [-m MODEL] [-p N] [-n N] [-t N] [-r REPS] [--roofline]\n"
                   "       gpt2 bench --tokenizer [-m MODEL] [-f FILE]\n\n"
                   "Measures prompt processing (N prompt tokens in one call) and generation\n"
                   "(N tokens one at a time) and prints the medians and ranges over REPS runs\n"
                   "(after one untimed warm-up), with the weight bytes read per generated token\n"
                   "and the bandwidth that implies.\n"
                   "--roofline also measures the machine's read bandwidth with the same threads\n"
                   "and prints the fraction of it that generation reaches. --tokenizer measures\n"
                   "tokenizer throughput instead (on built-in texts, and FILE if given).\n");
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model = need_value(a, f);
        else if (!strcmp(f, "-p")) n_prompt = (int)parse_int(f, need_value(a, f), 0, 1 << 20);
        else if (!strcmp(f, "-n")) n_gen = (int)parse_int(f, need_value(a, f), 0, 1 << 20);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) n_threads = (int)parse_int(f, need_value(a, f), 1, 256);
        else if (!strcmp(f, "-r") || !strcmp(f, "--reps")) reps = (int)parse_int(f, need_value(a, f), 1, 1000);
        else if (!strcmp(f, "--roofline")) roofline = true;
        else if (!strcmp(f, "--tokenizer")) tokenizer = true;
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) tok_file = need_value(a, f);
        else die_usage("unknown option '%s' (see gpt2 bench --help)", f);
    }
    double load_s;
    gpt2_model *m = load_model(model, false, &load_s);
    if (tokenizer) {
        bench_tokenizer(m, tok_file);
        gpt2_free(m);
        return 0;
    }
    gpt2_model_info in = gpt2_get_model_info(m);
    gpt2_context_params cp = gpt2_context_default_params();
    if (n_threads) cp.n_threads = n_threads;
    gpt2_context *c;
    if (gpt2_context_new(m, &cp, &c)) die(1, "cannot create a context");
    int32_t ctx = gpt2_context_size(c);
    if (n_prompt > ctx || n_gen > ctx) die(1, "-p and -n must each fit the context (%d)", ctx);
    int32_t *ids = malloc(((size_t)(n_prompt > n_gen ? n_prompt : n_gen) + 1) * sizeof *ids);
    if (!ids) die(1, "out of memory");
    uint64_t x = 12345;
    for (int i = 0; i <= (n_prompt > n_gen ? n_prompt : n_gen); i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)in.config.n_vocab);
    }
    float *logits = malloc((size_t)in.config.n_vocab * sizeof *logits);
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    if (!logits || !pp || !tg) die(1, "out of memory");
    /* a warm-up, not timed, as llama-bench does: the first touch of every mapped page and
       buffer is slow */
    if (gpt2_eval(c, ids, n_prompt > 1 ? (size_t)n_prompt : 1, NULL)) die(1, "eval failed");
    gpt2_context_reset(c);
    for (int r = 0; r < reps; r++) {
        if (n_prompt) {
            gpt2_context_reset(c);
            double t0 = now();
            if (gpt2_eval(c, ids, (size_t)n_prompt, NULL)) die(1, "eval failed");
            pp[r] = n_prompt / (now() - t0);
        }
        if (n_gen) {
            gpt2_context_reset(c);
            double t0 = now();
            for (int i = 0; i < n_gen; i++)
                if (gpt2_eval(c, &ids[i], 1, logits)) die(1, "eval failed");
            tg[r] = n_gen / (now() - t0);
        }
    }
    /* medians */
    for (int i = 0; i < reps; i++)
        for (int j = i + 1; j < reps; j++) {
            if (pp[j] < pp[i]) { double t = pp[i]; pp[i] = pp[j]; pp[j] = t; }
            if (tg[j] < tg[i]) { double t = tg[i]; tg[i] = tg[j]; tg[j] = t; }
        }
    double pp_med = pp[reps / 2], tg_med = tg[reps / 2];
    printf("model      %s (%s, %.1fM params, %.1f MB)\n", model, gpt2_type_name(in.matrix_type),
           (double)in.n_params / 1e6, (double)in.file_bytes / 1e6);
    printf("threads    %d (%s kernels)\n", cp.n_threads, in.kernels);
    printf("load       %.2f ms (%s)\n", load_s * 1e3, in.mapped ? "mmap" : "read");
    /* the median, and the range when there are several runs (shared machines are noisy) */
    if (n_prompt) {
        printf("pp%-7d  %.1f tokens/s", n_prompt, pp_med);
        if (reps > 1) printf("  (median of %d, range %.1f-%.1f)", reps, pp[0], pp[reps - 1]);
        printf("\n");
    }
    if (n_gen) {
        printf("tg%-7d  %.1f tokens/s", n_gen, tg_med);
        if (reps > 1) printf("  (median of %d, range %.1f-%.1f)", reps, tg[0], tg[reps - 1]);
        printf("\n");
        printf("bytes/tok  %.1f MB of weights\n", (double)in.weight_bytes / 1e6);
        printf("achieved   %.2f GB/s\n", tg_med * (double)in.weight_bytes / 1e9);
        if (roofline) {
            double bw;
            if (gpt2_read_bandwidth(cp.n_threads, &bw) == GPT2_OK) {
                printf("bandwidth  %.2f GB/s (read, %d threads)\n", bw, cp.n_threads);
                printf("roofline   %.2f (of the measured bandwidth)\n",
                       tg_med * (double)in.weight_bytes / 1e9 / bw);
            }
        }
    }
    free(ids);
    free(logits);
    free(pp);
    free(tg);
    gpt2_context_free(c);
    gpt2_free(m);
    return 0;
}

/* ---- gpt2 quantize -------------------------------------------------------------------------- */

static int cmd_quantize(args *a) {
    const char *pos[3];
    int n = 0;
    for (; a->i < a->argc; a->i++) {
        const char *f = a->argv[a->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            printf("usage: gpt2 quantize IN.gguf OUT.gguf TYPE\n\n"
                   "Writes a copy of IN with every 2-D weight matrix converted to TYPE:\n"
                   "f32, f16, bf16 or q8_0. Biases and norms stay f32.\n");
            return 0;
        }
        if (f[0] == '-' && f[1]) die_usage("unknown option '%s' (see gpt2 quantize --help)", f);
        if (n == 3) die_usage("quantize takes IN OUT TYPE");
        pos[n++] = f;
    }
    if (n != 3) die_usage("quantize takes IN OUT TYPE (see gpt2 quantize --help)");
    gpt2_type t;
    if (!strcmp(pos[2], "f32")) t = GPT2_TYPE_F32;
    else if (!strcmp(pos[2], "f16")) t = GPT2_TYPE_F16;
    else if (!strcmp(pos[2], "bf16")) t = GPT2_TYPE_BF16;
    else if (!strcmp(pos[2], "q8_0")) t = GPT2_TYPE_Q8_0;
    else die_usage("unknown type '%s' (f32, f16, bf16 or q8_0)", pos[2]);
    char err[512];
    double t0 = now();
    gpt2_status s = gpt2_quantize(pos[0], pos[1], t, err, sizeof err);
    if (s) die(1, "%s", err[0] ? err : gpt2_strerror(s));
    fprintf(stderr, "gpt2: wrote %s (%s) in %.1f s\n", pos[1], pos[2], now() - t0);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const char *main_help =
    "gpt2 " GPT2_VERSION " — GPT-2 inference on the CPU\n"
    "\n"
    "usage:\n"
    "  gpt2 [complete] [-m MODEL] [-p TEXT | -f FILE] [options]   text completion, streamed\n"
    "  gpt2 tokenize   [-m MODEL] [TEXT | -f FILE | stdin]        token ids, space-separated\n"
    "  gpt2 detokenize [-m MODEL] ID...                           the text, raw bytes\n"
    "  gpt2 perplexity [-m MODEL] -f FILE                         perplexity, as Hugging Face computes it\n"
    "  gpt2 bench      [-m MODEL] [-p N] [-n N] [-t N]            prompt and generation tokens/s\n"
    "  gpt2 quantize   IN.gguf OUT.gguf TYPE                      f16, bf16, q8_0 (or f32)\n"
    "\n"
    "The model defaults to $GPT2_MODEL, else " DEFAULT_MODEL ".\n"
    "`gpt2 COMMAND --help` describes each command; completion options:\n\n";

int main(int argc, char **argv) {
    args a = {argc, argv, 1};
    if (argc < 2) {
        fputs(main_help, stderr);
        fputs(complete_help, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(main_help, stdout);
        fputs(complete_help, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) { puts("gpt2 " GPT2_VERSION); return 0; }
    if (!strcmp(cmd, "tokenize")) { a.i = 2; return cmd_tokenize(&a); }
    if (!strcmp(cmd, "detokenize")) { a.i = 2; return cmd_detokenize(&a); }
    if (!strcmp(cmd, "perplexity")) { a.i = 2; return cmd_perplexity(&a); }
    if (!strcmp(cmd, "bench")) { a.i = 2; return cmd_bench(&a); }
    if (!strcmp(cmd, "quantize")) { a.i = 2; return cmd_quantize(&a); }
    if (!strcmp(cmd, "complete")) a.i = 2;
    else if (cmd[0] != '-') die_usage("unknown command '%s' (see gpt2 --help)", cmd);
    return cmd_complete(&a);
}
