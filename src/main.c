/* main.c — the `gpt2` command-line tool: parses flags, calls the public API (gpt2.h).
 *
 *   gpt2 [complete] [-m MODEL] [-p TEXT | -f FILE] [options]   text completion, streamed
 *   gpt2 tokenize   [-m MODEL] [TEXT | -f FILE | stdin]        ids, space-separated
 *   gpt2 detokenize [-m MODEL] ID...                           the text, raw bytes
 *   gpt2 perplexity -m MODEL -f FILE                           perplexity as HF computes it
 *   gpt2 bench      -m MODEL [-p N] [-n N] [-t N]              prompt and generation speed
 *   gpt2 quantize   IN.gguf OUT.gguf TYPE                      f32, f16, bf16, q8_0
 *   gpt2 explain    [-m MODEL] -p TEXT [--json] [--html FILE]  every stage, for a learner
 *                   (src/explain.c)
 *
 * Generated text goes to stdout; progress, statistics and errors to stderr. Every error is
 * one line and a non-zero exit status (1 for failures, 2 for bad usage).
 *
 * The command line is parsed by cli_parse() into a cli_opts, without side effects (no
 * output, no exit, nothing read), so that the fuzz tests can drive it with any argv; the
 * commands then do the work. Building with -DGPT2_CLI_NO_MAIN leaves main() out.
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
#define MAX_STOPS 64

/* ==========================================================================================
 * Parsing the command line
 * ======================================================================================== */

typedef enum {
    CMD_COMPLETE, CMD_TOKENIZE, CMD_DETOKENIZE, CMD_PERPLEXITY, CMD_BENCH, CMD_QUANTIZE, CMD_INFO,
    CMD_EXPLAIN,
    CMD_HELP,     /* print opts.help to stdout, exit 0 */
    CMD_VERSION
} cli_command;

typedef struct {
    cli_command cmd;
    const char *help;             /* CMD_HELP */
    /* shared */
    const char *model;            /* NULL: $GPT2_MODEL, else DEFAULT_MODEL */
    const char *kernels;          /* NULL: automatic (or $GPT2_KERNELS) */
    const char *file, *text;      /* -f, -p (complete), TEXT (tokenize) */
    int n_threads;                /* 0: all cores */
    int n_ctx;                    /* 0: the model's (perplexity: its window) */
    bool special, stats;
    /* complete */
    gpt2_generate_params gp;      /* the library's defaults with the tool's sampling on top */
    bool seed_set, echo, ignore_eos;
    char *stops[MAX_STOPS];       /* unescaped copies (cli_free frees them) */
    int n_stop;
    /* detokenize */
    int32_t *ids;                 /* (n_ids) */
    size_t n_ids;
    /* perplexity */
    int stride;
    /* bench */
    int n_prompt, n_gen, reps;
    bool roofline, tokenizer;
    /* quantize */
    const char *quant_in, *quant_out, *quant_type;
    /* explain */
    const char *html, *lang;      /* --html FILE; --lang (NULL: English) */
    bool json;
    int top_n;                    /* --top N rows (default 10) */
} cli_opts;

typedef struct {
    int argc;
    char **argv;
    int i;
    char *err;
    size_t err_len;
    bool failed;
} parser;

/* An error is one line: control characters that came from the arguments (a newline in a
   file name, say) are shown as '?'. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

/* the first error wins; everything after it is skipped by the callers' checks */
static void fail(parser *p, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->err_len, fmt, ap);
    va_end(ap);
    if (p->err_len) one_line(p->err);
}

/* the value after a flag ("" after an error) */
static const char *need_value(parser *p, const char *flag) {
    if (p->i + 1 >= p->argc) {
        fail(p, "%s needs a value (see --help)", flag);
        return "";
    }
    return p->argv[++p->i];
}

static long long parse_int(parser *p, const char *flag, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fail(p, "invalid value for %s: '%.64s' (expected an integer from %lld to %lld)", flag, s, lo, hi);
        return lo;
    }
    return v;
}

static unsigned long long parse_u64(parser *p, const char *flag, const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = *s == '-' ? 0 : strtoull(s, &end, 10);
    if (*s == '-' || errno || end == s || *end) {
        fail(p, "invalid value for %s: '%.64s' (expected a non-negative integer)", flag, s);
        return 0;
    }
    return v;
}

/* a finite float in [lo, hi]; lo_open excludes lo */
static float parse_float(parser *p, const char *flag, const char *s, double lo, bool lo_open, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || (lo_open && v == lo) || v > hi) {
        fail(p, "invalid value for %s: '%.64s' (expected a number %s %g%s%g)", flag, s,
             lo_open ? ">" : ">=", lo, isinf(hi) ? "" : " and <= ", isinf(hi) ? 0.0 : hi);
        return (float)lo;
    }
    return (float)v;
}

/* "\n" -> newline etc., into a new string */
static char *unescape(const char *s) {
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (const char *q = s; *q; q++) {
        if (*q == '\\' && q[1]) {
            q++;
            *o++ = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q == 'r' ? '\r' : *q;
        } else {
            *o++ = *q;
        }
    }
    *o = '\0';
    return out;
}

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
    "      --beams B           beam search with B beams, 1..512 (deterministic; default 1: off)\n"
    "      --length-penalty L  beam search: score = log-prob / length^L (default 1.0)\n"
    "      --early-stopping    beam search: stop once B hypotheses are finished (default: off)\n"
    "      --early-stopping-never  beam search: Hugging Face's early_stopping=\"never\"\n"
    "      --num-return N      beam search: print the N best hypotheses (default 1)\n"
    "      --stop STR          stop when the generated text contains STR (not printed;\n"
    "                          repeatable, up to 64; \\n, \\t, \\\\ are unescaped)\n"
    "      --ignore-eos        do not stop at <|endoftext|>\n"
    "      --special           \"<|endoftext|>\" in the prompt is the special token\n"
    "      --no-prompt         print only the completion, not the prompt before it\n"
    "  -c, --ctx N             context size in tokens (default: the model's, also the maximum)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "      --kernels NAME      kernel path: scalar, avx2, avx512, neon, ... (default: the best\n"
    "                          this CPU runs, or $GPT2_KERNELS)\n"
    "      --stats             print load time and tokens/s to stderr\n"
    "  -h, --help              this help\n";

static const char *tokenize_help =
    "usage: gpt2 tokenize [-m MODEL] [--special] [TEXT | -f FILE]\n\n"
    "Prints the token ids of TEXT (or of the file, or of stdin when neither is given),\n"
    "space-separated, on one line. --special turns \"<|endoftext|>\" into its token\n"
    "(default: plain text, as GPT-2's own encoder does). The model defaults to $GPT2_MODEL,\n"
    "else " DEFAULT_MODEL ".\n";

static const char *detokenize_help =
    "usage: gpt2 detokenize [-m MODEL] ID...\n\n"
    "Writes the bytes of the tokens to stdout, as they are (no newline). Every id is checked\n"
    "before anything is written. The model defaults to $GPT2_MODEL, else " DEFAULT_MODEL ".\n";

static const char *perplexity_help =
    "usage: gpt2 perplexity [-m MODEL] -f FILE [-c N] [--stride S] [-t N] [--kernels NAME]\n\n"
    "Perplexity of the file's text ('-' for stdin) as Hugging Face documents it (\"Perplexity\n"
    "of fixed-length models\"): windows of N tokens (default: the model's context) moved by\n"
    "S tokens (default N); each token is scored once, with as much context as its window\n"
    "gives. Prints the perplexity to stdout. Threads default to all cores.\n";

static const char *bench_help =
    "usage: gpt2 bench [-m MODEL] [-p N] [-n N] [-t N] [-r REPS] [--roofline] [--kernels NAME]\n"
    "       gpt2 bench --tokenizer [-m MODEL] [-f FILE]\n\n"
    "Measures prompt processing (N prompt tokens in one call; default 512) and generation\n"
    "(N tokens one at a time; default 128) and prints the medians and ranges over REPS runs\n"
    "(default 3, after one untimed warm-up), with the weight bytes read per generated token\n"
    "and the bandwidth that implies. Threads default to all cores.\n"
    "--roofline also measures the machine's read bandwidth with the same threads and prints\n"
    "the fraction of it that generation reaches. --tokenizer measures tokenizer throughput\n"
    "instead (on built-in texts, and FILE if given).\n";

static const char *quantize_help =
    "usage: gpt2 quantize IN.gguf OUT.gguf TYPE\n\n"
    "Writes a copy of IN with its weight matrices converted as llama.cpp's llama-quantize\n"
    "converts a GPT-2 for TYPE (no importance matrix): f32, f16, bf16, q8_0, q4_0, q4_1,\n"
    "q5_0, q5_1, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k. The K mixes give some tensors more bits\n"
    "(q4_k_m: q6_K for the embedding and in some layers, q4_K elsewhere); position_embd,\n"
    "biases and norms are kept. `gpt2 info OUT.gguf` lists what each tensor got. OUT is\n"
    "written under a temporary name beside it and renamed at the end; an OUT that exists\n"
    "and is not a regular file is refused.\n";

static const char *info_help =
    "usage: gpt2 info [-m] MODEL.gguf\n\n"
    "Prints what the file holds: the model's shape, its metadata, a table of its tensors\n"
    "(name, shape, type, bytes) and the totals per type.\n";

static const char *explain_help =
    "usage: gpt2 explain [-m MODEL] (-p TEXT | -f FILE) [--json] [--html FILE] [--lang en|ko]\n"
    "                    [--top N] [--temp T] [--top-k K] [--top-p P] [--repeat-penalty R]\n"
    "                    [--seed S] [--beams B] [-n N] [--length-penalty L]\n\n"
    "Shows every stage of GPT-2 for one prompt: the tokenizer's pieces and BPE merges, the\n"
    "embeddings, each block's attention and residual stream with the logit lens, the\n"
    "next-token table, and that table after each decoding filter in Hugging Face's order\n"
    "(repetition penalty, temperature, top-k, top-p), what greedy decoding and sampling with\n"
    "the seed pick, and with --beams the beam-search tree over -n steps (default 4).\n\n"
    "      --json              the same content as JSON on stdout\n"
    "      --html FILE         one self-contained web page (nothing on stdout unless --json)\n"
    "      --lang ko           headings and explanations in Korean (default en)\n"
    "      --top N             rows of the next-token tables (default 10)\n"
    "      --special           \"<|endoftext|>\" in the prompt is the special token\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "The decoding flags mean what they mean for completion (gpt2 --help); defaults: --temp\n"
    "0.8 --top-k 40 --top-p 0.95 --repeat-penalty 1 --seed 0. The prompt may have at most\n"
    "256 tokens.\n";

static const char *main_help =
    "gpt2 " GPT2_VERSION " — GPT-2 inference on the CPU\n"
    "\n"
    "usage:\n"
    "  gpt2 [complete] [-m MODEL] [-p TEXT | -f FILE] [options]   text completion, streamed\n"
    "  gpt2 tokenize   [-m MODEL] [TEXT | -f FILE | stdin]        token ids, space-separated\n"
    "  gpt2 detokenize [-m MODEL] ID...                           the text, raw bytes\n"
    "  gpt2 perplexity [-m MODEL] -f FILE                         perplexity, as Hugging Face computes it\n"
    "  gpt2 bench      [-m MODEL] [-p N] [-n N] [-t N]            prompt and generation tokens/s\n"
    "  gpt2 quantize   IN.gguf OUT.gguf TYPE                      q8_0, q4_k_m, ... (llama.cpp's recipes)\n"
    "  gpt2 info       MODEL.gguf                                 metadata, tensors and their types\n"
    "  gpt2 explain    [-m MODEL] -p TEXT [--html FILE] [--json]  every stage of the model, for a learner\n"
    "  gpt2 --version                                             the version\n"
    "  gpt2 --help                                                this help\n"
    "\n"
    "The model defaults to $GPT2_MODEL, else " DEFAULT_MODEL ".\n"
    "`gpt2 COMMAND --help` describes each command; completion options:\n\n";

static bool is_command(const char *s) {
    return !strcmp(s, "complete") || !strcmp(s, "tokenize") || !strcmp(s, "detokenize") ||
           !strcmp(s, "perplexity") || !strcmp(s, "bench") || !strcmp(s, "quantize") ||
           !strcmp(s, "info") || !strcmp(s, "explain");
}

/* -m, -t, --kernels: taken by several commands; true if f was one of them */
static bool shared_flag(parser *p, cli_opts *o, const char *f, bool threads) {
    if (!strcmp(f, "-m") || !strcmp(f, "--model")) o->model = need_value(p, f);
    else if (!strcmp(f, "--kernels")) o->kernels = need_value(p, f);
    else if (threads && (!strcmp(f, "-t") || !strcmp(f, "--threads")))
        o->n_threads = (int)parse_int(p, f, need_value(p, f), 1, 256);
    else return false;
    return true;
}

/* the sampling flags completion and explain share; whether f was one of them */
static bool sampling_flag(parser *p, cli_opts *o, const char *f) {
    gpt2_sampling *sp = &o->gp.sampling;
    if (!strcmp(f, "--temp")) sp->temperature = parse_float(p, f, need_value(p, f), 0, false, 1e6);
    else if (!strcmp(f, "--top-k")) sp->top_k = (int32_t)parse_int(p, f, need_value(p, f), 0, INT32_MAX);
    else if (!strcmp(f, "--top-p")) sp->top_p = parse_float(p, f, need_value(p, f), 0, true, 1);
    else if (!strcmp(f, "--repeat-penalty"))
        sp->repetition_penalty = parse_float(p, f, need_value(p, f), 0, true, 1e6);
    else if (!strcmp(f, "--seed")) { sp->seed = parse_u64(p, f, need_value(p, f)); o->seed_set = true; }
    else if (!strcmp(f, "--greedy")) sp->temperature = 0;
    else return false;
    return true;
}

static void parse_complete(parser *p, cli_opts *o) {
    bool early = false, early_never = false;
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        gpt2_generate_params *gp = &o->gp;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = complete_help; return; }
        else if (shared_flag(p, o, f, true)) {}
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) o->text = need_value(p, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) o->file = need_value(p, f);
        else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict"))
            gp->max_new_tokens = (int32_t)parse_int(p, f, need_value(p, f), 0, 1 << 20);
        else if (sampling_flag(p, o, f)) {}
        else if (!strcmp(f, "--beams")) gp->num_beams = (int32_t)parse_int(p, f, need_value(p, f), 1, 512);
        else if (!strcmp(f, "--length-penalty"))
            gp->length_penalty = parse_float(p, f, need_value(p, f), -1e6, false, 1e6);
        else if (!strcmp(f, "--early-stopping")) early = true;
        else if (!strcmp(f, "--early-stopping-never")) early_never = true;
        else if (!strcmp(f, "--num-return"))
            gp->num_return_sequences = (int32_t)parse_int(p, f, need_value(p, f), 1, 512);
        else if (!strcmp(f, "--stop")) {
            const char *v = need_value(p, f);
            if (p->failed) return;
            if (o->n_stop == MAX_STOPS) { fail(p, "too many --stop strings (%d at most)", MAX_STOPS); return; }
            char *s = unescape(v);
            if (!s) { fail(p, "out of memory"); return; }
            o->stops[o->n_stop++] = s;
            if (!*s) fail(p, "--stop needs a non-empty string");
        }
        else if (!strcmp(f, "--ignore-eos")) o->ignore_eos = true;
        else if (!strcmp(f, "--special")) o->special = true;
        else if (!strcmp(f, "--no-prompt")) o->echo = false;
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx")) o->n_ctx = (int)parse_int(p, f, need_value(p, f), 1, 1 << 20);
        else if (!strcmp(f, "--stats")) o->stats = true;
        else if (is_command(f)) fail(p, "the command comes first: gpt2 %s [options]", f);
        else fail(p, "unknown option '%.64s' (see gpt2 --help)", f);
    }
    if (p->failed) return;
    if (o->text && o->file) fail(p, "give the prompt with -p or -f, not both");
    else if (!o->text && !o->file) fail(p, "no prompt: give one with -p TEXT or -f FILE (see gpt2 --help)");
    else if (early && early_never) fail(p, "--early-stopping and --early-stopping-never exclude each other");
    else if (o->gp.num_return_sequences > o->gp.num_beams)
        fail(p, "--num-return %d is more than --beams %d", o->gp.num_return_sequences, o->gp.num_beams);
    o->gp.early_stopping = early ? 1 : early_never ? 2 : 0;
}

static void parse_tokenize(parser *p, cli_opts *o) {
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = tokenize_help; return; }
        else if (shared_flag(p, o, f, false)) {}
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) o->file = need_value(p, f);
        else if (!strcmp(f, "--special")) o->special = true;
        else if (f[0] == '-' && f[1]) fail(p, "unknown option '%.64s' (see gpt2 tokenize --help)", f);
        else if (o->text) fail(p, "give one text (quote it), or use -f FILE");
        else o->text = f;
    }
    if (!p->failed && o->text && o->file) fail(p, "give a text or -f FILE, not both");
}

static void parse_detokenize(parser *p, cli_opts *o) {
    o->ids = malloc(((size_t)p->argc + 1) * sizeof *o->ids);
    if (!o->ids) { fail(p, "out of memory"); return; }
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = detokenize_help; return; }
        else if (shared_flag(p, o, f, false)) {}
        else if (f[0] == '-' && !(f[1] >= '0' && f[1] <= '9'))
            fail(p, "unknown option '%.64s' (see gpt2 detokenize --help)", f);
        else o->ids[o->n_ids++] = (int32_t)parse_int(p, "token id", f, 0, INT32_MAX);
    }
}

static void parse_perplexity(parser *p, cli_opts *o) {
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = perplexity_help; return; }
        else if (shared_flag(p, o, f, true)) {}
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) o->file = need_value(p, f);
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx")) o->n_ctx = (int)parse_int(p, f, need_value(p, f), 2, 1 << 20);
        else if (!strcmp(f, "--stride")) o->stride = (int)parse_int(p, f, need_value(p, f), 1, 1 << 20);
        else fail(p, "unknown option '%.64s' (see gpt2 perplexity --help)", f);
    }
    if (!p->failed && !o->file) fail(p, "perplexity needs -f FILE");
}

static void parse_bench(parser *p, cli_opts *o) {
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = bench_help; return; }
        else if (shared_flag(p, o, f, true)) {}
        else if (!strcmp(f, "-p")) o->n_prompt = (int)parse_int(p, f, need_value(p, f), 0, 1 << 20);
        else if (!strcmp(f, "-n")) o->n_gen = (int)parse_int(p, f, need_value(p, f), 0, 1 << 20);
        else if (!strcmp(f, "-r") || !strcmp(f, "--reps")) o->reps = (int)parse_int(p, f, need_value(p, f), 1, 1000);
        else if (!strcmp(f, "--roofline")) o->roofline = true;
        else if (!strcmp(f, "--tokenizer")) o->tokenizer = true;
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) o->file = need_value(p, f);
        else fail(p, "unknown option '%.64s' (see gpt2 bench --help)", f);
    }
}

static void parse_quantize(parser *p, cli_opts *o) {
    const char *pos[3];
    int n = 0;
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = quantize_help; return; }
        if (f[0] == '-' && f[1]) fail(p, "unknown option '%.64s' (see gpt2 quantize --help)", f);
        else if (n == 3) fail(p, "quantize takes IN OUT TYPE");
        else pos[n++] = f;
    }
    if (p->failed) return;
    if (n != 3) { fail(p, "quantize takes IN OUT TYPE (see gpt2 quantize --help)"); return; }
    o->quant_in = pos[0];
    o->quant_out = pos[1];
    o->quant_type = pos[2];
    static const char *const types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                        "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k"};
    bool known = false;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) known |= !strcmp(pos[2], types[i]);
    if (!known)
        fail(p, "unknown type '%.32s' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_m, "
             "q4_k_m, q5_k_m, q6_k)", pos[2]);
}

static void parse_info(parser *p, cli_opts *o) {
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = info_help; return; }
        else if (!strcmp(f, "-m") || !strcmp(f, "--model")) o->model = need_value(p, f);
        else if (f[0] == '-' && f[1]) fail(p, "unknown option '%.64s' (see gpt2 info --help)", f);
        else if (o->model) fail(p, "info takes one model file");
        else o->model = f;
    }
}

static void parse_explain(parser *p, cli_opts *o) {
    bool n_set = false;
    gpt2_generate_params *gp = &o->gp;
    for (; p->i < p->argc && !p->failed; p->i++) {
        const char *f = p->argv[p->i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) { o->cmd = CMD_HELP; o->help = explain_help; return; }
        else if (shared_flag(p, o, f, true)) {}
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) o->text = need_value(p, f);
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) o->file = need_value(p, f);
        else if (!strcmp(f, "--json")) o->json = true;
        else if (!strcmp(f, "--html")) {
            o->html = need_value(p, f);
            if (!p->failed && !*o->html) fail(p, "--html needs a file name");
        }
        else if (!strcmp(f, "--lang")) o->lang = need_value(p, f);
        else if (!strcmp(f, "--top")) o->top_n = (int)parse_int(p, f, need_value(p, f), 1, 1000);
        else if (!strcmp(f, "--special")) o->special = true;
        else if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) {
            gp->max_new_tokens = (int32_t)parse_int(p, f, need_value(p, f), 1, 256);
            n_set = true;
        }
        else if (sampling_flag(p, o, f)) {}
        else if (!strcmp(f, "--beams")) gp->num_beams = (int32_t)parse_int(p, f, need_value(p, f), 1, 64);
        else if (!strcmp(f, "--length-penalty"))
            gp->length_penalty = parse_float(p, f, need_value(p, f), -1e6, false, 1e6);
        else if (is_command(f)) fail(p, "the command comes first: gpt2 %s [options]", f);
        else fail(p, "unknown option '%.64s' (see gpt2 explain --help)", f);
    }
    if (p->failed) return;
    if (o->text && o->file) fail(p, "give the prompt with -p or -f, not both");
    else if (!o->text && !o->file) fail(p, "no prompt: give one with -p TEXT (see gpt2 explain --help)");
    if (!n_set) gp->max_new_tokens = 4;
    if (!o->seed_set) gp->sampling.seed = 0;
    if (!o->top_n) o->top_n = 10;
}

static void cli_free(cli_opts *o) {
    for (int i = 0; i < o->n_stop; i++) free(o->stops[i]);
    o->n_stop = 0;
    free(o->ids);
    o->ids = NULL;
}

/* Parses argv into *o. 0: run o->cmd; 2: a usage error, described in err. Nothing is
   printed, read or exited; cli_free releases what *o holds, whatever the result. */
static int cli_parse(int argc, char **argv, cli_opts *o, char *err, size_t err_len) {
    memset(o, 0, sizeof *o);
    /* the library's defaults (no model yet: eos is set after loading), with the tool's
       sampling defaults on top */
    o->gp = gpt2_generate_default_params(NULL);
    o->gp.sampling.temperature = 0.8f;
    o->gp.sampling.top_k = 40;
    o->gp.sampling.top_p = 0.95f;
    o->echo = true;
    o->n_prompt = 512;
    o->n_gen = 128;
    o->reps = 3;
    if (err_len) err[0] = '\0';
    parser p = {argc, argv, 2, err, err_len, false};
    if (argc < 2) {
        fail(&p, "no prompt: give one with -p TEXT (see gpt2 --help)");
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        o->cmd = CMD_HELP;
        o->help = main_help;
        return 0;
    }
    if (!strcmp(cmd, "--version")) { o->cmd = CMD_VERSION; return 0; }
    if (!strcmp(cmd, "tokenize")) { o->cmd = CMD_TOKENIZE; parse_tokenize(&p, o); }
    else if (!strcmp(cmd, "detokenize")) { o->cmd = CMD_DETOKENIZE; parse_detokenize(&p, o); }
    else if (!strcmp(cmd, "perplexity")) { o->cmd = CMD_PERPLEXITY; parse_perplexity(&p, o); }
    else if (!strcmp(cmd, "bench")) { o->cmd = CMD_BENCH; parse_bench(&p, o); }
    else if (!strcmp(cmd, "quantize")) { o->cmd = CMD_QUANTIZE; parse_quantize(&p, o); }
    else if (!strcmp(cmd, "info")) { o->cmd = CMD_INFO; parse_info(&p, o); }
    else if (!strcmp(cmd, "explain")) { o->cmd = CMD_EXPLAIN; parse_explain(&p, o); }
    else if (!strcmp(cmd, "complete")) { o->cmd = CMD_COMPLETE; parse_complete(&p, o); }
    else if (cmd[0] != '-') fail(&p, "unknown command '%.64s' (see gpt2 --help)", cmd);
    else { p.i = 1; o->cmd = CMD_COMPLETE; parse_complete(&p, o); }
    return p.failed ? 2 : 0;
}

/* ==========================================================================================
 * Running the commands
 * ======================================================================================== */

_Noreturn static void die(int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    one_line(msg);
    fflush(stdout);
    fprintf(stderr, "gpt2: error: %s\n", msg);
    exit(code);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* stdout is where the results go: a write that fails (a full disk, a closed pipe) is an
   error, not a silent truncation */
static bool out_failed;
static int out_errno;
static void out_write(const void *p, size_t n) {
    if (n && !out_failed && fwrite(p, 1, n, stdout) != n) { out_failed = true; out_errno = errno; }
}
static void out_flush(void) {
    if (!out_failed && fflush(stdout) != 0) { out_failed = true; out_errno = errno; }
}
/* before exit 0: everything written, or one line saying why not */
static int finish_output(void) {
    out_flush();
    if (!out_failed && (ferror(stdout) || fclose(stdout) != 0)) { out_failed = true; out_errno = errno; }
    if (out_failed) {
        fprintf(stderr, "gpt2: error: writing the output failed: %s\n",
                out_errno ? strerror(out_errno) : "write error");
        exit(1);
    }
    return 0;
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

/* the text of -p, or of the file given (stdin for "-") */
static char *input_text(const cli_opts *o, size_t *len) {
    if (o->file) return strcmp(o->file, "-") ? read_file(o->file, len) : read_stream(stdin, "stdin", len);
    if (o->text) {
        *len = strlen(o->text);
        char *t = malloc(*len + 1);
        if (!t) die(1, "out of memory");
        memcpy(t, o->text, *len + 1);
        return t;
    }
    return read_stream(stdin, "stdin", len);
}

static const char *model_path(const cli_opts *o) {
    if (o->model) return o->model;
    const char *env = getenv("GPT2_MODEL");
    return env && *env ? env : DEFAULT_MODEL;
}

static gpt2_model *load_model(const cli_opts *o, double *seconds) {
    const char *path = model_path(o);
    char err[512];
    gpt2_model *m;
    gpt2_model_params mp = gpt2_model_default_params();
    mp.kernels = o->kernels;
    double t0 = now();
    gpt2_status s = gpt2_load_ex(path, &mp, &m, err, sizeof err);
    if (s != GPT2_OK) {
        if (s == GPT2_E_IO && access(path, F_OK) != 0)
            die(1, "%s (convert a model first: python3 scripts/convert.py gpt2 -o %s)", err, path);
        die(1, "%s", err);
    }
    if (seconds) *seconds = now() - t0;
    if (o->stats) {
        gpt2_model_info in = gpt2_get_model_info(m);
        fprintf(stderr, "gpt2: loaded %s: %d layers, %d heads, %d wide, context %d, %.1fM params, %s, "
                "%.1f MB in %.1f ms, %s kernels\n", path, in.config.n_layer, in.config.n_head,
                in.config.n_embd, in.config.n_ctx, (double)in.n_params / 1e6,
                gpt2_type_name(in.matrix_type), (double)in.file_bytes / 1e6, (now() - t0) * 1e3,
                in.kernels);
    }
    return m;
}

static int32_t *tokenize_all(const gpt2_model *m, const char *text, size_t len, bool special,
                             size_t *n) {
    size_t cap = len + 16; /* a byte never makes more than one id */
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) die(1, "out of memory");
    gpt2_status s = gpt2_tokenize(m, text, len, special, ids, cap, n);
    if (s != GPT2_OK) die(1, "tokenizing failed: %s", gpt2_strerror(s));
    return ids;
}

static gpt2_context *new_context(const gpt2_model *m, const cli_opts *o, int n_ctx,
                                 gpt2_context_params *used) {
    gpt2_context_params cp = gpt2_context_default_params();
    if (o->n_threads) cp.n_threads = o->n_threads;
    int32_t model_ctx = gpt2_get_config(m).n_ctx;
    if (n_ctx > model_ctx)
        die(1, "-c %d is more than the model's context (%d positions)", n_ctx, model_ctx);
    cp.n_ctx = n_ctx;
    gpt2_context *c;
    gpt2_status s = gpt2_context_new(m, &cp, &c);
    if (s) die(1, "cannot create a context: %s", gpt2_strerror(s));
    if (used) *used = cp;
    return c;
}

/* ---- gpt2 complete ------------------------------------------------------------------------- */

/* the library's streamed text, to stdout as it comes */
static int print_text(void *user, const char *text, size_t len) {
    (void)user;
    out_write(text, len);
    out_flush();
    return out_failed; /* nowhere to write: stop generating */
}

static int cmd_complete(cli_opts *o) {
    size_t len;
    char *text = input_text(o, &len);
    require_utf8(text, len, "the prompt");
    if (len == 0)
        die(1, "the prompt is empty (for text from nothing, use --special -p '<|endoftext|>')");

    double load_s;
    gpt2_model *m = load_model(o, &load_s);
    gpt2_config cfg = gpt2_get_config(m);
    gpt2_generate_params gp = o->gp;
    gp.eos_id = o->ignore_eos ? -1 : cfg.eot_id;
    if (!o->seed_set) gp.sampling.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const bool beams = gp.num_beams > 1;
    if (!beams) { /* the library streams the text and stops at the stop strings */
        gp.stop = (const char *const *)o->stops;
        gp.n_stop = o->n_stop;
        gp.on_text = print_text;
    }

    size_t n_prompt;
    int32_t *ids = tokenize_all(m, text, len, o->special, &n_prompt);
    gpt2_context_params cp;
    gpt2_context *c = new_context(m, o, o->n_ctx, &cp);
    int32_t ctx = gpt2_context_size(c);
    if (n_prompt > (size_t)ctx)
        die(1, "the prompt is %zu tokens but the context holds %d", n_prompt, ctx);

    if (o->echo && !beams) { out_write(text, len); out_flush(); }
    size_t cap = (size_t)(gp.max_new_tokens + 1) * (size_t)gp.num_return_sequences + 1;
    int32_t *out = malloc(cap * sizeof *out);
    double *scores = malloc((size_t)gp.num_return_sequences * sizeof *scores);
    if (!out || !scores) die(1, "out of memory");
    size_t n_out = 0;
    gpt2_generate_info info;
    memset(&info, 0, sizeof info);
    info.scores = scores;
    gpt2_status s = gpt2_generate_ex(c, ids, n_prompt, &gp, out, cap, &n_out, NULL, NULL, &info);
    if (s != GPT2_OK && s != GPT2_E_CONTEXT_FULL) die(1, "generation failed: %s", gpt2_strerror(s));
    if (beams) {
        /* the hypotheses, best first (ids separated by -1), each cut at a stop string in its
           generated text; the prompt is printed as it is, never searched */
        gpt2_text_stream *ts;
        if (gpt2_text_stream_new((const char *const *)o->stops, (size_t)o->n_stop, &ts))
            die(1, "out of memory");
        size_t i = 0;
        for (int h = 0; h < info.n_hypotheses; h++) {
            if (gp.num_return_sequences > 1) {
                char head[96];
                int hl = snprintf(head, sizeof head, "%s[hypothesis %d, score %.6f]\n", h ? "\n" : "",
                                  h + 1, scores[h]);
                out_write(head, (size_t)hl);
            }
            if (o->echo) out_write(text, len);
            gpt2_text_stream_reset(ts);
            for (; i < n_out && out[i] != -1; i++) {
                const char *b;
                size_t bl;
                if (out[i] == gp.eos_id) continue; /* the eos token is not text */
                gpt2_token_bytes(m, out[i], &b, &bl);
                if (gpt2_text_stream_push(ts, b, bl, print_text, NULL) == 1) break;
            }
            while (i < n_out && out[i] != -1) i++;
            i++;
            if (!gpt2_text_stream_stopped(ts)) gpt2_text_stream_flush(ts, print_text, NULL);
        }
        gpt2_text_stream_free(ts);
        if (gp.num_return_sequences == 1 && info.n_hypotheses == 1 && o->stats)
            fprintf(stderr, "gpt2: beam score %.6f\n", scores[0]);
    }
    out_write("\n", 1);
    out_flush();
    if (info.stop == GPT2_STOP_CONTEXT)
        fprintf(stderr, "gpt2: stopped: the context (%d tokens) is full\n", ctx);
    if (o->stats) {
        fprintf(stderr, "gpt2: load %.1f ms | prompt %d tokens, %.1f ms, %.1f tokens/s | "
                "generated %d tokens, %.1f ms, %.1f tokens/s | %d threads, seed %llu\n",
                load_s * 1e3, info.n_prompt, info.prompt_seconds * 1e3,
                info.prompt_seconds > 0 ? info.n_prompt / info.prompt_seconds : 0.0,
                info.n_generated, info.gen_seconds * 1e3,
                info.gen_seconds > 0 ? info.n_generated / info.gen_seconds : 0.0,
                cp.n_threads, (unsigned long long)gp.sampling.seed);
    }
    free(out);
    free(scores);
    free(ids);
    free(text);
    gpt2_context_free(c);
    gpt2_free(m);
    return finish_output();
}

/* ---- gpt2 tokenize / detokenize ---------------------------------------------------------- */

static int cmd_tokenize(cli_opts *o) {
    size_t len;
    char *buf = input_text(o, &len);
    require_utf8(buf, len, "the text");
    gpt2_model *m = load_model(o, NULL);
    size_t n;
    int32_t *ids = tokenize_all(m, buf, len, o->special, &n);
    for (size_t i = 0; i < n; i++) {
        char num[16];
        int k = snprintf(num, sizeof num, i ? " %d" : "%d", ids[i]);
        out_write(num, (size_t)k);
    }
    out_write("\n", 1);
    free(ids);
    free(buf);
    gpt2_free(m);
    return finish_output();
}

static int cmd_detokenize(cli_opts *o) {
    gpt2_model *m = load_model(o, NULL);
    gpt2_config cfg = gpt2_get_config(m);
    for (size_t i = 0; i < o->n_ids; i++) /* all of them first: nothing is written for a bad one */
        if (o->ids[i] >= cfg.n_vocab)
            die(1, "token id %d is outside the vocabulary (0..%d)", o->ids[i], cfg.n_vocab - 1);
    for (size_t i = 0; i < o->n_ids; i++) {
        const char *b;
        size_t bl;
        gpt2_token_bytes(m, o->ids[i], &b, &bl);
        out_write(b, bl);
    }
    gpt2_free(m);
    return finish_output();
}

/* ---- gpt2 perplexity ---------------------------------------------------------------------- */

static int cmd_perplexity(cli_opts *o) {
    size_t len;
    char *text = input_text(o, &len);
    require_utf8(text, len, "the text");
    gpt2_model *m = load_model(o, NULL);
    size_t n;
    int32_t *ids = tokenize_all(m, text, len, false, &n);
    if (n < 2) die(1, "the text has %zu token%s: perplexity needs at least 2", n, n == 1 ? "" : "s");
    gpt2_context *c = new_context(m, o, 0, NULL);
    int max_len = o->n_ctx, stride = o->stride;
    if (max_len > gpt2_context_size(c))
        die(1, "-c %d is more than the model's context (%d positions)", max_len, gpt2_context_size(c));
    if (max_len == 0) max_len = gpt2_context_size(c);
    if (stride == 0) stride = max_len;
    if (stride > max_len) die(2, "--stride %d is larger than the window (%d)", stride, max_len);
    double ppl, nll, t0 = now();
    gpt2_status s = gpt2_perplexity(c, ids, n, max_len, stride, &ppl, &nll);
    if (s) die(1, "perplexity failed: %s", gpt2_strerror(s));
    fprintf(stderr, "gpt2: %zu tokens, windows of %d, stride %d, mean NLL %.6f, %.1f s\n", n,
            max_len, stride, nll, now() - t0);
    char line[64];
    out_write(line, (size_t)snprintf(line, sizeof line, "%.4f\n", ppl));
    free(ids);
    free(text);
    gpt2_context_free(c);
    gpt2_free(m);
    return finish_output();
}

/* ---- gpt2 bench ----------------------------------------------------------------------------- */

/* printf to stdout through out_write */
static void outf(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0) out_write(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

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
        outf("tokenize   %-28s %8.2f MB/s  (%zu tokens, %.1f ms)\n", cases[i].name,
             (double)cases[i].len / best / 1e6, n_ids, best * 1e3);
    }
    for (int i = 0; i < n; i++) free(cases[i].text);
}

static void sort_doubles(double *x, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (x[j] < x[i]) { double t = x[i]; x[i] = x[j]; x[j] = t; }
}

static int cmd_bench(cli_opts *o) {
    double load_s;
    gpt2_model *m = load_model(o, &load_s);
    if (o->tokenizer) {
        bench_tokenizer(m, o->file);
        gpt2_free(m);
        return finish_output();
    }
    const int n_prompt = o->n_prompt, n_gen = o->n_gen, reps = o->reps;
    gpt2_model_info in = gpt2_get_model_info(m);
    gpt2_context_params cp;
    gpt2_context *c = new_context(m, o, 0, &cp);
    int32_t ctx = gpt2_context_size(c);
    if (n_prompt > ctx || n_gen > ctx) die(1, "-p and -n must each fit the context (%d)", ctx);
    int n_ids = n_prompt > n_gen ? n_prompt : n_gen;
    int32_t *ids = malloc(((size_t)n_ids + 1) * sizeof *ids);
    if (!ids) die(1, "out of memory");
    uint64_t x = 12345;
    for (int i = 0; i <= n_ids; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)in.config.n_vocab);
    }
    float *logits = malloc((size_t)in.config.n_vocab * sizeof *logits);
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    if (!logits || !pp || !tg) die(1, "out of memory");
    /* a warm-up, not timed, as llama-bench does: the first touch of every mapped page and
       buffer is slow */
    if (gpt2_eval(c, ids, n_prompt > 1 ? (size_t)n_prompt : 1, NULL)) die(1, "eval failed");
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
    sort_doubles(pp, reps);
    sort_doubles(tg, reps);
    double pp_med = pp[reps / 2], tg_med = tg[reps / 2];
    outf("model      %s (%s, %.1fM params, %.1f MB)\n", model_path(o), gpt2_type_name(in.matrix_type),
         (double)in.n_params / 1e6, (double)in.file_bytes / 1e6);
    outf("threads    %d (%s kernels)\n", cp.n_threads, in.kernels);
    outf("load       %.2f ms (%s)\n", load_s * 1e3, in.mapped ? "mmap" : "read");
    /* the median, and the range when there are several runs (shared machines are noisy) */
    if (n_prompt) {
        outf("pp%-7d  %.1f tokens/s", n_prompt, pp_med);
        if (reps > 1) outf("  (median of %d, range %.1f-%.1f)", reps, pp[0], pp[reps - 1]);
        outf("\n");
    }
    if (n_gen) {
        outf("tg%-7d  %.1f tokens/s", n_gen, tg_med);
        if (reps > 1) outf("  (median of %d, range %.1f-%.1f)", reps, tg[0], tg[reps - 1]);
        outf("\n");
        outf("bytes/tok  %.1f MB of weights\n", (double)in.weight_bytes / 1e6);
        outf("achieved   %.2f GB/s\n", tg_med * (double)in.weight_bytes / 1e9);
        if (o->roofline) {
            double bw;
            if (gpt2_read_bandwidth(cp.n_threads, &bw) == GPT2_OK) {
                outf("bandwidth  %.2f GB/s (read, %d threads)\n", bw, cp.n_threads);
                outf("roofline   %.2f (of the measured bandwidth)\n",
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
    return finish_output();
}

/* ---- gpt2 quantize -------------------------------------------------------------------------- */

static int cmd_quantize(cli_opts *o) {
    char err[512];
    double t0 = now();
    gpt2_status s = gpt2_quantize_recipe(o->quant_in, o->quant_out, o->quant_type, err, sizeof err);
    if (s) die(1, "%s", err[0] ? err : gpt2_strerror(s));
    fprintf(stderr, "gpt2: wrote %s (%s) in %.1f s\n", o->quant_out, o->quant_type, now() - t0);
    return finish_output();
}

/* ---- gpt2 info ------------------------------------------------------------------------------ */

static int cmd_info(cli_opts *o) {
    gpt2_model *m = load_model(o, NULL);
    gpt2_model_info in = gpt2_get_model_info(m);
    outf("model      %s: %s\n", model_path(o), in.name[0] ? in.name : "(no general.name)");
    outf("shape      %d layers, %d heads, %d wide, MLP %d, context %d, vocabulary %d, eos %d\n",
         in.config.n_layer, in.config.n_head, in.config.n_embd, in.n_ff, in.config.n_ctx,
         in.config.n_vocab, in.config.eot_id);
    outf("size       %.1fM parameters, %.1f MB file, %.1f MB read per token, %s kernels\n",
         (double)in.n_params / 1e6, (double)in.file_bytes / 1e6, (double)in.weight_bytes / 1e6,
         in.kernels);
    outf("\nmetadata (%zu keys)\n", gpt2_metadata_count(m));
    for (size_t i = 0; i < gpt2_metadata_count(m); i++) {
        const char *key;
        size_t kl;
        char value[256];
        if (gpt2_metadata_get(m, i, &key, &kl, value, sizeof value) != GPT2_OK) continue;
        /* control characters of the file stay out of the terminal */
        for (char *c = value; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        outf("  %-40.*s %s\n", (int)(kl > 60 ? 60 : kl), key, value);
    }
    size_t n = gpt2_tensor_count(m);
    outf("\ntensors (%zu)\n  %-32s %-14s %-6s %12s\n", n, "name", "shape", "type", "bytes");
    struct { gpt2_type t; size_t count; uint64_t bytes, numbers; } per[32];
    int n_per = 0;
    for (size_t i = 0; i < n; i++) {
        gpt2_tensor_info t;
        if (gpt2_tensor_get(m, i, &t) != GPT2_OK) continue;
        char shape[48];
        if (t.n_dims == 1) snprintf(shape, sizeof shape, "%lld", (long long)t.ne[0]);
        else snprintf(shape, sizeof shape, "%lld x %lld", (long long)t.ne[1], (long long)t.ne[0]);
        outf("  %-32.*s %-14s %-6s %12llu\n", (int)(t.name_len > 64 ? 64 : t.name_len), t.name, shape,
             gpt2_type_name(t.type), (unsigned long long)t.bytes);
        int k = 0;
        while (k < n_per && per[k].t != t.type) k++;
        if (k == n_per && n_per < 32) {
            per[n_per].t = t.type;
            per[n_per].count = 0;
            per[n_per].bytes = per[n_per].numbers = 0;
            n_per++;
        }
        if (k < n_per) {
            uint64_t numbers = 1;
            for (int d = 0; d < t.n_dims; d++) numbers *= (uint64_t)t.ne[d];
            per[k].count++;
            per[k].bytes += t.bytes;
            per[k].numbers += numbers;
        }
    }
    outf("\ntotals per type\n");
    uint64_t all = 0;
    for (int k = 0; k < n_per; k++) all += per[k].bytes;
    for (int k = 0; k < n_per; k++)
        outf("  %-6s %4zu tensors %12llu bytes (%5.1f%%) %6.2f bits per weight\n", gpt2_type_name(per[k].t),
             per[k].count, (unsigned long long)per[k].bytes, all ? 100.0 * (double)per[k].bytes / (double)all : 0.0,
             per[k].numbers ? 8.0 * (double)per[k].bytes / (double)per[k].numbers : 0.0);
    outf("  all    %4zu tensors %12llu bytes\n", n, (unsigned long long)all);
    gpt2_free(m);
    return finish_output();
}

/* ==========================================================================================
 * main
 * ======================================================================================== */

#ifndef GPT2_CLI_NO_MAIN
/* ---- gpt2 explain (the work is in src/explain.c) ------------------------------------------- */

int explain_lang_ok(const char *lang);
int explain_run(const gpt2_model *m, gpt2_context *c, const char *text, size_t len, int special,
                const gpt2_generate_params *gp, int top_n, int json, const char *html_path,
                const char *lang, char *err, size_t err_len);

static int cmd_explain(cli_opts *o) {
    if (!explain_lang_ok(o->lang)) die(1, "unknown language for --lang: '%.32s' (en or ko)", o->lang);
    size_t len;
    char *text = input_text(o, &len);
    require_utf8(text, len, "the prompt");
    if (len == 0) die(1, "the prompt is empty");
    gpt2_model *m = load_model(o, NULL);
    gpt2_context *c = new_context(m, o, 0, NULL);
    gpt2_generate_params gp = o->gp;
    gp.eos_id = gpt2_get_config(m).eot_id;
    char err[512];
    if (explain_run(m, c, text, len, o->special, &gp, o->top_n, o->json, o->html, o->lang, err, sizeof err))
        die(1, "%s", err[0] ? err : "explain failed");
    free(text);
    gpt2_context_free(c);
    gpt2_free(m);
    return finish_output();
}

int main(int argc, char **argv) {
    cli_opts o;
    char err[256];
    if (cli_parse(argc, argv, &o, err, sizeof err) != 0) {
        cli_free(&o);
        if (argc < 2) { /* no arguments at all: the overview, as a usage error */
            fputs(main_help, stderr);
            fputs(complete_help, stderr);
            return 2;
        }
        die(2, "%s", err);
    }
    int r = 0;
    switch (o.cmd) {
    case CMD_HELP:
        out_write(o.help, strlen(o.help));
        if (o.help == main_help) out_write(complete_help, strlen(complete_help));
        r = finish_output();
        break;
    case CMD_VERSION:
        out_write("gpt2 " GPT2_VERSION "\n", strlen("gpt2 " GPT2_VERSION "\n"));
        r = finish_output();
        break;
    case CMD_COMPLETE: r = cmd_complete(&o); break;
    case CMD_TOKENIZE: r = cmd_tokenize(&o); break;
    case CMD_DETOKENIZE: r = cmd_detokenize(&o); break;
    case CMD_PERPLEXITY: r = cmd_perplexity(&o); break;
    case CMD_BENCH: r = cmd_bench(&o); break;
    case CMD_QUANTIZE: r = cmd_quantize(&o); break;
    case CMD_INFO: r = cmd_info(&o); break;
    case CMD_EXPLAIN: r = cmd_explain(&o); break;
    }
    cli_free(&o);
    return r;
}
#endif
