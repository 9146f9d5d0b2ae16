/* test_cli.c — the gpt2 command-line tool end to end, on the fixture model.
 *
 * Runs $GPT2_BIN (default build/gpt2) through the shell and checks stdout, stderr and the exit
 * status. Errors must be exactly one line on stderr, starting "gpt2: error:".
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "gpt2.h"

static const char *bin;
static char *out_text, *err_text;

static int setup(void **state) {
    (void)state;
    bin = getenv("GPT2_BIN");
    if (!bin) bin = "build/gpt2";
    return 0;
}

/* Runs `gpt2 ARGS` (a shell fragment); captures stdout and stderr; returns the exit status. */
static int run(const char *fmt, ...) {
    char args[8192], cmd[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    /* stdin is empty unless the arguments redirect it; arguments ending in ">/dev/full"
       send stdout there (a device whose writes fail) instead of capturing it */
    const char *full = strstr(args, ">/dev/full");
    if (full) args[full - args] = '\0';
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>" SCRATCH "cli.err%s", bin, args,
             full ? "/dev/full" : SCRATCH "cli.out", strchr(args, '<') ? "" : " </dev/null");
    if (full) remove(SCRATCH "cli.out");
    int st = system(cmd);
    free(out_text);
    free(err_text);
    out_text = full ? strdup("") : read_all(SCRATCH "cli.out", NULL);
    err_text = read_all(SCRATCH "cli.err", NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* the failure report: one line, naming the problem */
static void expect_error(int status, int want_status, const char *needle) {
    if (status != want_status || strncmp(err_text, "gpt2: error: ", 13) != 0 ||
        strchr(err_text, '\n') != err_text + strlen(err_text) - 1 || !strstr(err_text, needle)) {
        fprintf(stderr, "status %d (want %d), stderr: [%s], want it to mention [%s]\n", status,
                want_status, err_text, needle);
        fail();
    }
    assert_string_equal(out_text, "");
}

#define M "-m " FIXTURE_GGUF

static void test_tokenize_detokenize(void **state) {
    (void)state;
    assert_int_equal(run("tokenize " M " 'Hello world'"), 0);
    assert_string_equal(out_text, "15496 995\n");
    assert_int_equal(run("detokenize " M " 15496 995"), 0);
    assert_string_equal(out_text, "Hello world");
    assert_int_equal(system("printf 'Hello world' > " SCRATCH "cli.in"), 0);
    assert_int_equal(run("tokenize " M " -f " SCRATCH "cli.in"), 0);
    assert_string_equal(out_text, "15496 995\n");
    assert_int_equal(run("tokenize " M " < " SCRATCH "cli.in"), 0);
    assert_string_equal(out_text, "15496 995\n");
    assert_int_equal(run("tokenize " M " --special '<|endoftext|>'"), 0);
    assert_string_equal(out_text, "50256\n");
    expect_error(run("detokenize " M " 50257"), 1, "outside the vocabulary");
    expect_error(run("detokenize " M " 15496 50257"), 1, "outside the vocabulary"); /* nothing printed first */
    expect_error(run("detokenize " M " abc"), 2, "token id");
    assert_int_equal(run("tokenize --help"), 0);
    assert_non_null(strstr(out_text, "usage: gpt2 tokenize"));
}

/* the CLI's greedy completion equals gpt2_generate's tokens */
static void test_complete_greedy(void **state) {
    (void)state;
    gpt2_model *m;
    assert_int_equal(gpt2_load(FIXTURE_GGUF, &m, NULL, 0), GPT2_OK);
    gpt2_context *c;
    assert_int_equal(gpt2_context_new(m, NULL, &c), GPT2_OK);
    int32_t prompt[2] = {15496, 995}, out[16];
    size_t n;
    gpt2_generate_params p = gpt2_generate_default_params(m);
    p.sampling.temperature = 0;
    p.max_new_tokens = 12;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 16, &n, NULL, NULL), GPT2_OK);
    char want[512];
    size_t len;
    if (n && out[n - 1] == gpt2_get_config(m).eot_id) n--; /* the eos token is not printed */
    assert_int_equal(gpt2_detokenize(m, out, n, want, sizeof want - 2, &len), GPT2_OK);
    want[len] = '\n';
    want[len + 1] = '\0';
    assert_int_equal(run(M " -p 'Hello world' -n 12 --greedy --no-prompt"), 0);
    assert_string_equal(out_text, want);
    assert_string_equal(err_text, "");
    /* the prompt is echoed by default */
    assert_int_equal(run(M " -p 'Hello world' -n 12 --greedy"), 0);
    assert_int_equal(strncmp(out_text, "Hello world", 11), 0);
    assert_string_equal(out_text + 11, want);
    /* --stats: one report on stderr */
    assert_int_equal(run(M " -p 'Hello world' -n 12 --greedy --stats"), 0);
    assert_non_null(strstr(err_text, "tokens/s"));
    assert_non_null(strstr(err_text, "load"));
    /* a stop string across the boundary of tokens 2 and 3 ends the text before it */
    size_t b = 0, bl;
    const char *tb;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(gpt2_token_bytes(m, out[i], &tb, &bl), GPT2_OK);
        b += bl;
    }
    assert_true(b >= 1 && len >= b + 1);
    char stop[3] = {want[b - 1], want[b], '\0'}, quoted[32];
    /* shell-quote it (backslashes doubled for the CLI's own unescaping) */
    size_t q = 0;
    quoted[q++] = '\'';
    for (int i = 0; i < 2; i++) {
        if (stop[i] == '\'') { memcpy(quoted + q, "'\\''", 4); q += 4; }
        else if (stop[i] == '\\') { quoted[q++] = '\\'; quoted[q++] = '\\'; }
        else quoted[q++] = stop[i];
    }
    quoted[q++] = '\'';
    quoted[q] = '\0';
    assert_int_equal(run(M " -p 'Hello world' -n 12 --greedy --no-prompt --stop %s", quoted), 0);
    char *first = strstr(want, stop);
    assert_non_null(first);
    assert_int_equal(strlen(out_text), (size_t)(first - want) + 1);
    assert_memory_equal(out_text, want, (size_t)(first - want));
    gpt2_context_free(c);
    gpt2_free(m);
}

static void test_sampling_and_beams(void **state) {
    (void)state;
    assert_int_equal(run(M " -p 'Hello' -n 10 --seed 5 -t 1 --no-prompt"), 0);
    char *a = strdup(out_text);
    assert_int_equal(run(M " -p 'Hello' -n 10 --seed 5 -t 2 --no-prompt"), 0);
    assert_string_equal(out_text, a);
    free(a);
    assert_int_equal(run(M " -p 'Hello' -n 6 --beams 3 --num-return 2 --no-prompt"), 0);
    assert_non_null(strstr(out_text, "[hypothesis 1, score "));
    assert_non_null(strstr(out_text, "[hypothesis 2, score "));
    expect_error(run(M " -p 'Hello' --beams 2 --num-return 3"), 2, "--num-return");
    /* a stop string that occurs in the prompt does not cut it, with or without beams */
    assert_int_equal(run(M " -p 'The meaning of life is' --beams 3 --stop life -n 6"), 0);
    assert_int_equal(strncmp(out_text, "The meaning of life is", 22), 0);
    assert_int_equal(run(M " -p 'The meaning of life is' --greedy --stop life -n 6"), 0);
    assert_int_equal(strncmp(out_text, "The meaning of life is", 22), 0);
    /* a stop string in the generated text of a hypothesis ends it there */
    assert_int_equal(run(M " -p 'Hello' --beams 3 -n 8 --no-prompt"), 0);
    char *whole = strdup(out_text);
    assert_true(strlen(whole) > 3);
    char stop[3] = {whole[1], whole[2], '\0'};
    if (stop[0] != '\'' && stop[1] != '\'' && stop[0] != '\\' && stop[1] != '\\') {
        assert_int_equal(run(M " -p 'Hello' --beams 3 -n 8 --no-prompt --stop '%s'", stop), 0);
        char *at = strstr(whole, stop);
        assert_int_equal(strlen(out_text), (size_t)(at - whole) + 1);
    }
    free(whole);
}

static void test_errors_are_one_line(void **state) {
    (void)state;
    expect_error(run("-m no/such/model.gguf -p hi"), 1, "no/such/model.gguf");
    expect_error(run(M " -p hi --bogus"), 2, "--bogus");
    expect_error(run(M " -p hi --temp -1"), 2, "--temp");
    expect_error(run(M " -p hi --temp abc"), 2, "--temp");
    expect_error(run(M " -p hi --top-p 0"), 2, "--top-p");
    expect_error(run(M " -p hi --top-p 1.5"), 2, "--top-p");
    expect_error(run(M " -p hi --top-k -3"), 2, "--top-k");
    expect_error(run(M " -p hi --beams 0"), 2, "--beams");
    expect_error(run(M " -p hi -n 99999999999"), 2, "-n");
    expect_error(run(M " -p hi --repeat-penalty 0"), 2, "--repeat-penalty");
    expect_error(run(M " -p hi -t 0"), 2, "-t");
    expect_error(run(M " -p hi -n"), 2, "-n needs a value");
    expect_error(run(M " -p ''"), 1, "empty");
    expect_error(run(M), 2, "no prompt");
    expect_error(run("frobnicate"), 2, "frobnicate");
    /* a newline in an argument does not make the error two lines */
    expect_error(run("\"$(printf 'frob\\nnicate')\""), 2, "frob?nicate");
    expect_error(run("-m \"$(printf 'no/such\\nmodel.gguf')\" -p hi"), 1, "no/such?model.gguf");
    expect_error(run(M " tokenize hello"), 2, "the command comes first: gpt2 tokenize");
    assert_int_equal(system("printf 'abc\\377def' > " SCRATCH "cli.bad"), 0);
    expect_error(run(M " -f " SCRATCH "cli.bad"), 1, "UTF-8");
    expect_error(run(M " -f no/such/prompt.txt"), 1, "no/such/prompt.txt");
    /* a truncated model file */
    assert_int_equal(system("head -c 5000 " FIXTURE_GGUF " > " SCRATCH "cli.gguf"), 0);
    expect_error(run("-m " SCRATCH "cli.gguf -p hi"), 1, SCRATCH "cli.gguf");
    /* a prompt longer than the context (128) */
    assert_int_equal(system("for i in $(seq 200); do printf 'word '; done > " SCRATCH "cli.long"), 0);
    expect_error(run(M " -f " SCRATCH "cli.long"), 1, "context");
    /* a smaller context asked for: the same check */
    expect_error(run(M " -p 'one two three four five' -c 3"), 1, "context holds 3");
    expect_error(run("quantize " FIXTURE_GGUF " " SCRATCH "x.gguf q4_k"), 2, "q4_k");
    expect_error(run("perplexity " M), 2, "-f");
    /* a kernel path that does not exist, or that this CPU cannot run */
    setenv("GPT2_KERNELS", "avx3", 1);
    expect_error(run(M " -p hi"), 1, "GPT2_KERNELS=avx3: no such kernel path");
#if defined(__x86_64__) || defined(__i386__)
    setenv("GPT2_KERNELS", "neon", 1);
#else
    setenv("GPT2_KERNELS", "avx2", 1);
#endif
    expect_error(run(M " -p hi"), 1, "cannot run");
    unsetenv("GPT2_KERNELS");
    /* more context than the model has positions */
    expect_error(run(M " -p hi -c 129"), 1, "more than the model's context");
    expect_error(run("--kernels avx3 " M " -p hi"), 1, "no such kernel path");
    /* output that cannot be written is an error, for every command */
    expect_error(run("tokenize " M " hi >/dev/full"), 1, "writing the output failed");
    expect_error(run("detokenize " M " 15496 >/dev/full"), 1, "writing the output failed");
    expect_error(run(M " -p hi -n 3 --greedy >/dev/full"), 1, "writing the output failed");
    expect_error(run("--help >/dev/full"), 1, "writing the output failed");
    /* a FIFO as the model is refused at once, not waited on */
    unlink(SCRATCH "cli.fifo");
    assert_int_equal(mkfifo(SCRATCH "cli.fifo", 0600), 0);
    expect_error(run("-m " SCRATCH "cli.fifo -p hi"), 1, "not a regular file");
    unlink(SCRATCH "cli.fifo");
}

/* generation that reaches the end of the context stops and says so */
static void test_context_end(void **state) {
    (void)state;
    assert_int_equal(system("for i in $(seq 120); do printf ' a'; done > " SCRATCH "cli.ctx"), 0);
    assert_int_equal(run(M " -f " SCRATCH "cli.ctx -n 50 --greedy --ignore-eos --no-prompt"), 0);
    assert_non_null(strstr(err_text, "context"));
    assert_non_null(strstr(err_text, "full"));
}

static void test_perplexity_and_quantize(void **state) {
    (void)state;
    assert_int_equal(system("printf 'The quick brown fox jumps over the lazy dog. ' > " SCRATCH "cli.txt"), 0);
    assert_int_equal(run("perplexity " M " -f " SCRATCH "cli.txt"), 0);
    double ppl = atof(out_text);
    assert_true(ppl > 1 && ppl < 1e7);
    assert_int_equal(run("quantize " FIXTURE_GGUF " " SCRATCH "cli-q8.gguf q8_0"), 0);
    assert_int_equal(run("-m " SCRATCH "cli-q8.gguf -p 'Hello' -n 4 --greedy"), 0);
    assert_int_equal(run("bench " M " -p 8 -n 4 -r 1"), 0);
    assert_non_null(strstr(out_text, "tokens/s"));
    assert_null(strstr(out_text, "range")); /* one run: no range */
    assert_int_equal(run("bench -m " SCRATCH "cli-q8.gguf -p 8 -n 4 -r 3 -t 2"), 0);
    assert_non_null(strstr(out_text, "(median of 3, range "));
    assert_non_null(strstr(out_text, " kernels)"));
    remove(SCRATCH "cli-q8.gguf");
    /* llama.cpp's recipes, and info listing what each tensor got */
    assert_int_equal(run("quantize " DATA "quant/public-mix.gguf " SCRATCH "cli-f32.gguf f32"), 0);
    assert_int_equal(run("quantize " SCRATCH "cli-f32.gguf " SCRATCH "cli-q4km.gguf q4_k_m"), 0);
    assert_int_equal(run("info " SCRATCH "cli-q4km.gguf"), 0);
    assert_non_null(strstr(out_text, "token_embd.weight                50257 x 256    q6_K"));
    assert_non_null(strstr(out_text, "blk.1.attn_qkv.weight            768 x 256      q4_K"));
    assert_non_null(strstr(out_text, "position_embd.weight             128 x 256      q8_0")); /* kept */
    assert_non_null(strstr(out_text, "general.file_type                        15"));
    assert_non_null(strstr(out_text, "totals per type"));
    assert_non_null(strstr(out_text, "  q6_K "));
    assert_int_equal(run("-m " SCRATCH "cli-q4km.gguf -p 'Hello' -n 4 --greedy"), 0);
    expect_error(run("info no/such.gguf"), 1, "no/such.gguf");
    expect_error(run("info"), 1, ""); /* no model: the default path, which is missing here */
    remove(SCRATCH "cli-f32.gguf");
    remove(SCRATCH "cli-q4km.gguf");
}

/* the widest line of a text, in terminal columns (Hangul counts 2) */
static int widest_line(const char *s) {
    int w = 0, best = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') { w = 0; continue; }
        if ((*p & 0xC0) == 0x80) continue;
        w += *p == 0xEA || *p == 0xEB || *p == 0xEC || *p == 0xED ? 2 : 1; /* U+A000..U+DFFF */
        if (w > best) best = w;
    }
    return best;
}

/* gpt2 explain: every section, the same ids as tokenize, the library's own sampled pick,
   JSON that parses, Korean, and errors */
static void test_explain(void **state) {
    (void)state;
    const char *sections[] = {"1. Tokenization", "2. Embeddings", "3. Transformer blocks", "logit lens",
                              "4. Next token", "5. Decoding", "greedy", "sampling", "tokens kept"};
    assert_int_equal(run("explain " M " -p 'Hello world' --seed 7"), 0);
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++) {
        if (!strstr(out_text, sections[i])) fprintf(stderr, "missing section: %s\n", sections[i]);
        assert_non_null(strstr(out_text, sections[i]));
    }
    assert_non_null(strstr(out_text, "15496   Hello"));
    assert_non_null(strstr(out_text, "995     \xe2\x90\xa3world")); /* the leading space made visible */
    assert_non_null(strstr(out_text, "(rank ")); /* merges */
    assert_null(strchr(out_text, '\033'));          /* no colour in a pipe */
    assert_true(widest_line(out_text) <= 80);
    /* the sampled token is the one gpt2_generate picks with the same parameters and seed */
    gpt2_model *m;
    assert_int_equal(gpt2_load(FIXTURE_GGUF, &m, NULL, 0), GPT2_OK);
    gpt2_context *c;
    assert_int_equal(gpt2_context_new(m, NULL, &c), GPT2_OK);
    int32_t prompt[2] = {15496, 995}, out[4];
    size_t n;
    gpt2_generate_params p = gpt2_generate_default_params(m);
    p.sampling.temperature = 0.8f;
    p.sampling.top_k = 40;
    p.sampling.top_p = 0.95f;
    p.sampling.seed = 7;
    p.max_new_tokens = 1;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 4, &n, NULL, NULL), GPT2_OK);
    char want[64];
    snprintf(want, sizeof want, "(id %d, rank ", out[0]);
    const char *at = strstr(out_text, "seed 7 -> ");
    assert_non_null(at);
    assert_non_null(strstr(at, want));
    gpt2_context_free(c);
    gpt2_free(m);

    /* JSON: parses, and holds the ids gpt2 tokenize gives (Korean text included) */
    const char *text = "'Hello world, \xec\x95\x88\xeb\x85\x95 <&> \"q\"'";
    assert_int_equal(run("tokenize " M " %s", text), 0);
    char *ids = strdup(out_text);
    assert_int_equal(run("explain " M " -p %s --json --beams 2 -n 2", text), 0);
    assert_int_equal(system("python3 -c 'import json,sys; d=json.load(open(\"" SCRATCH "cli.out\")); "
                            "print(\" \".join(str(t[\"id\"]) for t in d[\"tokenization\"][\"tokens\"])); "
                            "assert d[\"decoding\"][\"beam_search\"][\"winner\"][\"tokens\"]; "
                            "assert len(d[\"blocks\"][\"layers\"]) == 2 and d[\"next_token\"][\"top\"]' "
                            "> " SCRATCH "explain.ids"), 0);
    char *got = read_all(SCRATCH "explain.ids", NULL);
    assert_string_equal(got, ids);
    free(got);
    free(ids);
    /* beams in the terminal */
    assert_int_equal(run("explain " M " -p 'Hello' --beams 3 -n 3"), 0);
    assert_non_null(strstr(out_text, "beam search (--beams 3, -n 3)"));
    assert_non_null(strstr(out_text, "winner (score "));
    assert_true(widest_line(out_text) <= 80);
    /* filters given on the command line, and greedy: no warpers */
    assert_int_equal(run("explain " M " -p 'Hello' --repeat-penalty 1.5 --top-k 5 --top-p 0.5 --temp 1.3"), 0);
    assert_non_null(strstr(out_text, "rep"));
    assert_non_null(strstr(out_text, "top-k"));
    assert_int_equal(run("explain " M " -p 'Hello' --greedy"), 0);
    assert_non_null(strstr(out_text, "Sampling is off"));
    /* Korean */
    assert_int_equal(run("explain " M " -p 'Hello world' --lang ko --beams 2 -n 2"), 0);
    assert_non_null(strstr(out_text, "1. \xed\x86\xa0\xed\x81\xb0\xed\x99\x94"));       /* 토큰화 */
    assert_non_null(strstr(out_text, "2. \xec\x9e\x84\xeb\xb2\xa0\xeb\x94\xa9"));       /* 임베딩 */
    assert_non_null(strstr(out_text, "5. \xeb\x94\x94\xec\xbd\x94\xeb\x94\xa9"));       /* 디코딩 */
    assert_null(strstr(out_text, "Tokenization"));
    assert_true(widest_line(out_text) <= 80);
    assert_int_equal(run("explain --help"), 0);
    assert_non_null(strstr(out_text, "usage: gpt2 explain"));
    /* errors */
    expect_error(run("explain " M " -p hi --lang fr"), 1, "--lang");
    expect_error(run("explain " M), 2, "no prompt");
    expect_error(run("explain " M " -p hi --bogus"), 2, "--bogus");
    expect_error(run("explain " M " -p hi --top 0"), 2, "--top");
    expect_error(run("explain " M " -p hi --html"), 2, "--html needs a value");
    expect_error(run("explain " M " -p hi --beams 0"), 2, "--beams");
    expect_error(run("explain " M " -p ''"), 1, "empty");
    expect_error(run("explain " M " -p hi --html /dev/null"), 1, "not a regular file");
    expect_error(run("explain " M " -p hi --html build/tests"), 1, "not a regular file");
    expect_error(run("explain " M " -p hi --html no/such/dir/page.html"), 1, "no/such/dir/page.html");
    expect_error(run("explain -m no/such/model.gguf -p hi"), 1, "no/such/model.gguf");
    expect_error(run("explain " M " -f " SCRATCH "cli.long"), 1, "tokens");
    expect_error(run("explain " M " -p hi >/dev/full"), 1, "writing the output failed");
    expect_error(run("explain " M " -p hi --json >/dev/full"), 1, "writing the output failed");
    /* --html alone writes the page and nothing on stdout */
    remove(SCRATCH "explain.html");
    assert_int_equal(run("explain " M " -p hi --html " SCRATCH "explain.html"), 0);
    assert_string_equal(out_text, "");
    char *page = read_all(SCRATCH "explain.html", NULL);
    assert_non_null(strstr(page, "<!DOCTYPE html>"));
    assert_non_null(strstr(page, "</html>"));
    free(page);
    remove(SCRATCH "explain.html");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_detokenize),
        cmocka_unit_test(test_complete_greedy),
        cmocka_unit_test(test_sampling_and_beams),
        cmocka_unit_test(test_errors_are_one_line),
        cmocka_unit_test(test_context_end),
        cmocka_unit_test(test_perplexity_and_quantize),
        cmocka_unit_test(test_explain),
    };
    int r = cmocka_run_group_tests_name("cli", tests, setup, NULL);
    free(out_text);
    free(err_text);
    return r;
}
