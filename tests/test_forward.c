/* test_forward.c — the transformer against Hugging Face's GPT2LMHeadModel.
 *
 * tests/data/golden/logits.{json,bin}: for 6 prompts of the fixture model, HF's logits rows
 * (some positions), per-position summaries (top-5, logsumexp) and HF's loss.
 * White-box for the kernel comparisons: the engine is included.
 */
/* (built inside tests/test_internals.c, after the engine) */

#include <setjmp.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "gguf_builder.h"

static jv golden;
static float *golden_rows;
static const int32_t V = 50257;

static int forward_setup(void **state) {
    (void)state;
    golden = json_file(DATA "golden/logits.json");
    golden_rows = (float *)(void *)read_all(DATA "golden/logits.bin", NULL);
    return 0;
}

static int forward_teardown(void **state) {
    (void)state;
    json_free(&golden);
    free(golden_rows);
    return 0;
}

static const char *kt_name_of(const gpt2_model *m) { return m->kt->name; }

static gpt2_model *load(const char *path) {
    gpt2_model *m = load_or_report(path);
    assert_non_null(m);
    return m;
}

static gpt2_context *context(const gpt2_model *m, int threads) {
    gpt2_context *c;
    gpt2_context_params p = {threads, 0};
    assert_int_equal(gpt2_context_new(m, &p, &c), GPT2_OK);
    return c;
}

/* logits (n, V) of all tokens of prompt i, evaluated in chunks of `chunk` tokens */
static float *prompt_logits(const gpt2_model *m, int threads, size_t i, size_t chunk, size_t *n) {
    const jv *p = &jreq(&golden, "prompts")->items[i];
    int32_t *ids = jints(jreq(p, "tokens"), n);
    float *out = malloc(*n * (size_t)V * sizeof *out);
    gpt2_context *c = context(m, threads);
    for (size_t k = 0; k < *n; k += chunk) {
        size_t len = *n - k < chunk ? *n - k : chunk;
        assert_int_equal(gpt2_eval(c, ids + k, len, out + k * V), GPT2_OK);
    }
    assert_int_equal(gpt2_context_length(c), (int32_t)*n);
    gpt2_context_free(c);
    free(ids);
    return out;
}

typedef struct {
    double max_diff;     /* against HF's stored rows */
    double summary_diff; /* top-5 logits and logsumexp, every position */
    double loss_diff;
    int top1_same, positions;
} golden_report;

/* Compares a model's logits on every golden prompt. */
static golden_report compare_golden(const gpt2_model *m) {
    golden_report r = {0, 0, 0, 0, 0};
    const jv *prompts = jreq(&golden, "prompts");
    for (size_t i = 0; i < prompts->len; i++) {
        const jv *p = &prompts->items[i];
        size_t n;
        float *lg = prompt_logits(m, 2, i, 1000, &n);
        const jv *rows = jreq(p, "rows");
        for (size_t k = 0; k < rows->len; k++) {
            size_t pos = (size_t)jreq(&rows->items[k], "position")->num;
            const float *want = golden_rows + (size_t)jreq(&rows->items[k], "offset")->num;
            for (int32_t v = 0; v < V; v++) {
                double d = fabs((double)lg[pos * V + v] - want[v]);
                if (d > r.max_diff) r.max_diff = d;
            }
        }
        const jv *sum = jreq(p, "summary");
        double nll = 0;
        for (size_t pos = 0; pos < n; pos++) {
            const float *row = lg + pos * V;
            const jv *s = &sum->items[pos];
            const jv *ids5 = jreq(s, "top5_ids"), *lg5 = jreq(s, "top5_logits");
            for (size_t k = 0; k < 5; k++) {
                double d = fabs(row[(int)ids5->items[k].num] - lg5->items[k].num);
                if (d > r.summary_diff) r.summary_diff = d;
            }
            double lse = logsumexp(row, V);
            if (fabs(lse - jreq(s, "logsumexp")->num) > r.summary_diff)
                r.summary_diff = fabs(lse - jreq(s, "logsumexp")->num);
            r.top1_same += argmax(row, V) == (int32_t)jreq(s, "argmax")->num;
            r.positions++;
            if (pos + 1 < n) nll += lse - row[(int)jreq(p, "tokens")->items[pos + 1].num];
        }
        const jv *loss = jreq(p, "hf_loss");
        if (loss->t == J_NUM) {
            double d = fabs(nll / (double)(n - 1) - loss->num);
            if (d > r.loss_diff) r.loss_diff = d;
        }
        free(lg);
    }
    return r;
}

/* Every kernel path this CPU has gives HF's logits */
static void test_golden_logits_every_path(void **state) {
    (void)state;
    FOR_EACH_KERNEL_PATH("golden logits f32", path, {
        gpt2_model *m = load_on_path(FIXTURE_GGUF, path);
        assert_non_null(m);
        assert_string_equal(m->kt->name, gpt2_get_model_info(m).kernels);
        golden_report r = compare_golden(m);
        fprintf(stderr, "  %s (%s): max |logit - HF| = %.3g, summaries %.3g, loss %.3g, top-1 %d/%d\n",
                path, m->kt->name, r.max_diff, r.summary_diff, r.loss_diff, r.top1_same, r.positions);
        assert_true(r.max_diff < 1e-4);
        assert_true(r.summary_diff < 1e-4);
        assert_true(r.loss_diff < 1e-4);
        assert_int_equal(r.top1_same, r.positions);
        gpt2_free(m);
    });
    /* q8_0: every path quantizes the activations identically and sums integers exactly, so
       the paths differ only in the order of the float sums of blocks. Such a difference of
       an ulp can still move an activation across a rounding boundary of the next matmul's
       quantization, which moves every logit of that position by up to d_x * |w| (0.05 was
       seen at one position, and then at most later ones, whose attention reads the moved
       keys and values, on a path whose dot products agree with the scalar ones to 1e-6). So
       each path is held to HF as test_weight_types holds q8_0, and to the scalar path within
       a few such moves; test_kernels_against_scalar holds the q8_0 tiles to the scalar ones
       exactly, on the same quantized input. */
    char err[256];
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF, SCRATCH "paths-q8_0.gguf", GPT2_TYPE_Q8_0,
                                   err, sizeof err), GPT2_OK);
    float *ref = NULL;
    FOR_EACH_KERNEL_PATH("golden logits q8_0", path, {
        gpt2_model *m = load_on_path(SCRATCH "paths-q8_0.gguf", path);
        assert_non_null(m);
        golden_report r = compare_golden(m);
        size_t n;
        float *lg = prompt_logits(m, 2, 4, 1000, &n);
        double d = 0;
        for (size_t j = 0; ref && j < n * V; j++) d = fmax(d, fabs((double)lg[j] - ref[j]));
        fprintf(stderr, "  q8_0 %s: max |logit - HF| = %.3g, top-1 %d/%d; max |logit - scalar's| %.3g\n",
                m->kt->name, r.max_diff, r.top1_same, r.positions, d);
        assert_true(r.max_diff < 0.22);
        assert_true(r.top1_same >= 120);
        assert_true(d < 0.2);
        if (!ref) ref = lg; /* the scalar path comes first */
        else free(lg);
        gpt2_free(m);
    });
    free(ref);
}

/* an unknown path, or one this CPU cannot run, is an error and never a silent fallback */
static void test_kernel_path_names(void **state) {
    (void)state;
    gpt2_model *m = NULL;
    char err[256];
    gpt2_model_params p = gpt2_model_default_params();
    p.kernels = "avx3";
    assert_int_equal(gpt2_load_ex(FIXTURE_GGUF, &p, &m, err, sizeof err), GPT2_E_ARG);
    assert_null(m);
    assert_non_null(strstr(err, "no such kernel path"));
    assert_int_equal(gpt2_kernels_supported("avx3"), GPT2_E_ARG);
    assert_int_equal(gpt2_kernels_supported(NULL), GPT2_E_ARG);
    assert_int_equal(gpt2_kernels_supported("scalar"), GPT2_OK);
    assert_int_equal(gpt2_kernels_supported("auto"), GPT2_OK);
#ifdef GPT2_X86
    const char *foreign = "neon";
#else
    const char *foreign = "avx2";
#endif
    assert_int_equal(gpt2_kernels_supported(foreign), GPT2_E_UNSUPPORTED);
    p.kernels = foreign;
    assert_int_equal(gpt2_load_ex(FIXTURE_GGUF, &p, &m, err, sizeof err), GPT2_E_UNSUPPORTED);
    assert_non_null(strstr(err, "cannot run"));
    /* the environment variable is checked the same way; an explicit parameter wins over it */
    setenv("GPT2_KERNELS", "avx3", 1);
    assert_int_equal(gpt2_load(FIXTURE_GGUF, &m, err, sizeof err), GPT2_E_ARG);
    assert_non_null(strstr(err, "GPT2_KERNELS=avx3"));
    p.kernels = "scalar";
    assert_int_equal(gpt2_load_ex(FIXTURE_GGUF, &p, &m, err, sizeof err), GPT2_OK);
    assert_string_equal(gpt2_get_model_info(m).kernels, "scalar");
    gpt2_free(m);
    unsetenv("GPT2_KERNELS");
    /* each name the tests force selects exactly the path of that name */
    const char *paths[N_ALL_KERNEL_PATHS];
    int n = kernel_paths_here(paths);
    for (int i = 0; i < n; i++) {
        const kernel_table *kt;
        assert_int_equal(kernels_by_name(paths[i], &kt), GPT2_OK);
        assert_string_equal(kt->name, kernel_path_label(paths[i]));
    }
    /* no name: the best path */
    const kernel_table *best = kernels_best(), *chosen;
    assert_int_equal(kernels_by_name(NULL, &chosen), GPT2_OK);
    assert_ptr_equal(chosen, best);
    assert_true(!strncmp(best->name, "scalar", 6) || !strncmp(best->name, "avx", 3) || !strncmp(best->name, "neon", 4));
}

/* A model read into memory (no mmap) computes the same logits as a mapped one. */
static void test_read_instead_of_mmap(void **state) {
    (void)state;
    gpt2_model *mapped = load(FIXTURE_GGUF);
    setenv("GPT2_NO_MMAP", "1", 1);
    gpt2_model *read = load(FIXTURE_GGUF);
    unsetenv("GPT2_NO_MMAP");
    assert_true(gpt2_get_model_info(mapped).mapped);
    assert_false(gpt2_get_model_info(read).mapped);
    size_t n1, n2;
    float *a = prompt_logits(mapped, 2, 3, 1000, &n1), *b = prompt_logits(read, 2, 3, 1000, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * V * sizeof *a);
    free(a);
    free(b);
    gpt2_free(mapped);
    gpt2_free(read);
}

/* Appending tokens all at once, one by one, or in chunks gives the same bits; so does any
   thread count from 1 to 8 (more threads than this machine has cores). */
typedef struct { int threads; size_t chunk; } split;

static void check_bit_identical(const char *path, const char *kernel_path_name, const int32_t *ids,
                                size_t n, const split *runs, size_t n_runs) {
    gpt2_model *m = load_on_path(path, kernel_path_name);
    assert_non_null(m);
    const size_t nv = (size_t)gpt2_get_config(m).n_vocab;
    float *ref = malloc(n * nv * sizeof *ref), *lg = malloc(n * nv * sizeof *lg);
    for (size_t r = 0; r <= n_runs; r++) {
        int threads = r == 0 ? 1 : runs[r - 1].threads;
        size_t chunk = r == 0 ? n : runs[r - 1].chunk;
        gpt2_context *c = context(m, threads);
        for (size_t k = 0; k < n; k += chunk)
            assert_int_equal(gpt2_eval(c, ids + k, n - k < chunk ? n - k : chunk, (r ? lg : ref) + k * nv), GPT2_OK);
        gpt2_context_free(c);
        if (r && memcmp(lg, ref, n * nv * sizeof *lg) != 0) {
            fprintf(stderr, "%s on %s: %d threads, chunks of %zu differ from 1 thread\n", path,
                    m->kt->name, threads, chunk);
            fail();
        }
    }
    free(ref);
    free(lg);
    gpt2_free(m);
}

/* A synthetic model whose widths leave ragged shares of rows to the threads: C = 96 (3 heads
   of 32), F = 224 (56 row groups of 4 for 1..8 threads), V = 301, 3 blocks. */
static const char *synthetic_model(uint32_t type, const char *file) {
    gb_config cf = {96, 3, 3, 160, 224, 45, type, 11};
    gb_layout lay;
    wbuf w = gb_build(&cf, &lay);
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(w.buf, 1, w.len, f), w.len);
    fclose(f);
    free(w.buf);
    return file;
}

static void test_batching_and_threads_bit_identical(void **state) {
    (void)state;
    const split every[] = {
        {1, 1}, {1, 7}, {2, 1000}, {2, 13}, {3, 1000}, {3, 1}, {4, 33}, {5, 1000}, {6, 7}, {7, 1000}, {8, 5}, {8, 64},
    };
    const split few[] = {{3, 1000}, {5, 7}, {8, 33}};
    const char *synth[] = {
        synthetic_model(GPT2_TYPE_F32, SCRATCH "bits-f32.gguf"),
        synthetic_model(GPT2_TYPE_F16, SCRATCH "bits-f16.gguf"),
        synthetic_model(GPT2_TYPE_BF16, SCRATCH "bits-bf16.gguf"),
        synthetic_model(GPT2_TYPE_Q8_0, SCRATCH "bits-q8_0.gguf"),
    };
    int32_t ids[150];
    for (int i = 0; i < 150; i++) ids[i] = (i * 7919 + 13) % 301;
    char err[256];
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF, SCRATCH "bits-fixture-q8_0.gguf", GPT2_TYPE_Q8_0,
                                   err, sizeof err), GPT2_OK);
    const jv *p4 = &jreq(&golden, "prompts")->items[4]; /* 100 tokens of the real vocabulary */
    size_t n4;
    int32_t *ids4 = jints(jreq(p4, "tokens"), &n4);
    /* GPT2_TEST_STRIDE (emulated runs): every N-th split, the first (1 thread) included */
    split picked[sizeof every / sizeof *every];
    size_t n_picked = 0, stride = test_stride("bit identity splits");
    for (size_t i = 0; i < sizeof every / sizeof *every; i += stride) picked[n_picked++] = every[i];
    FOR_EACH_KERNEL_PATH("bit identity, threads 1-8 and chunkings", path, {
        for (int i = 0; i < 4; i++) check_bit_identical(synth[i], path, ids, 150, picked, n_picked);
        /* and the fixture model, the real vocabulary's lm_head, with fewer splits */
        check_bit_identical(FIXTURE_GGUF, path, ids4, n4, few, 3);
        check_bit_identical(SCRATCH "bits-fixture-q8_0.gguf", path, ids4, n4, few, 3);
    });
    free(ids4);
}

static void test_context_full_and_bad_ids(void **state) {
    (void)state;
    gpt2_model *m = load(FIXTURE_GGUF);
    gpt2_context *c = context(m, 2);
    int32_t ids[130];
    for (int i = 0; i < 130; i++) ids[i] = i * 37 % V;
    assert_int_equal(gpt2_context_size(c), 128);
    assert_int_equal(gpt2_eval(c, ids, 129, NULL), GPT2_E_CONTEXT_FULL);
    assert_int_equal(gpt2_context_length(c), 0); /* nothing appended */
    assert_int_equal(gpt2_eval(c, ids, 100, NULL), GPT2_OK);
    assert_int_equal(gpt2_eval(c, ids, 29, NULL), GPT2_E_CONTEXT_FULL);
    assert_int_equal(gpt2_context_length(c), 100);
    assert_int_equal(gpt2_eval(c, ids, 28, NULL), GPT2_OK);
    assert_int_equal(gpt2_context_length(c), 128);
    assert_int_equal(gpt2_eval(c, ids, 1, NULL), GPT2_E_CONTEXT_FULL);
    gpt2_context_reset(c);
    assert_int_equal(gpt2_context_length(c), 0);
    int32_t bad[3] = {5, V, 6};
    assert_int_equal(gpt2_eval(c, bad, 3, NULL), GPT2_E_ARG);
    bad[1] = -1;
    assert_int_equal(gpt2_eval(c, bad, 3, NULL), GPT2_E_ARG);
    assert_int_equal(gpt2_context_length(c), 0);
    assert_int_equal(gpt2_eval(c, NULL, 0, NULL), GPT2_OK);
    assert_int_equal(gpt2_eval(NULL, ids, 1, NULL), GPT2_E_ARG);
    /* a smaller context on request */
    gpt2_context *small;
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){1, 16}, &small), GPT2_OK);
    assert_int_equal(gpt2_context_size(small), 16);
    assert_int_equal(gpt2_eval(small, ids, 17, NULL), GPT2_E_CONTEXT_FULL);
    gpt2_context_free(small);
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){0, 0}, &small), GPT2_E_ARG);
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){1, -1}, &small), GPT2_E_ARG);
    /* more positions than the model has: refused, not silently capped */
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){1, 129}, &small), GPT2_E_ARG);
    assert_null(small);
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){1, 128}, &small), GPT2_OK);
    gpt2_context_free(small);
    gpt2_context_free(c);
    gpt2_free(m);
}

/* Quantized weights: each type stays near the f32 logits (and HF's). The bounds are a few
   times what was measured (see the printed figures). */
static void test_weight_types(void **state) {
    (void)state;
    const struct { gpt2_type t; const char *path; double bound; int min_top1; } types[] = {
        {GPT2_TYPE_F16, SCRATCH "q-f16.gguf", 1.2e-2, 150},   /* measured 4.1e-3, 153/153 */
        {GPT2_TYPE_BF16, SCRATCH "q-bf16.gguf", 7.5e-2, 140}, /* measured 2.4e-2, 150/153 */
        {GPT2_TYPE_Q8_0, SCRATCH "q-q8_0.gguf", 0.22, 120},   /* measured 0.10, 135/153 */
    };
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char err[256];
        assert_int_equal(gpt2_quantize(FIXTURE_GGUF, types[i].path, types[i].t, err, sizeof err),
                         GPT2_OK);
        gpt2_model *m = load(types[i].path);
        assert_int_equal(gpt2_get_model_info(m).matrix_type, types[i].t);
        golden_report r = compare_golden(m);
        fprintf(stderr, "  %s: max |logit - HF| = %.3g, top-1 agreement %d/%d\n",
                gpt2_type_name(types[i].t), r.max_diff, r.top1_same, r.positions);
        assert_true(r.max_diff < types[i].bound);
        assert_true(r.top1_same >= types[i].min_top1);
        gpt2_free(m);
    }
    /* gpt2 quantize f16 rounds exactly as the converter's --type f16 does */
    gpt2_model *a = load(SCRATCH "q-f16.gguf"), *b = load(FIXTURE_GGUF_F16);
    assert_int_equal(a->gguf.n_tensors, b->gguf.n_tensors);
    for (uint64_t i = 0; i < a->gguf.n_tensors; i++) {
        const gguf_tensor *ta = &a->gguf.tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)ta->name_len, ta->name);
        const gguf_tensor *tb = gguf_find_tensor(&b->gguf, name);
        assert_non_null(tb);
        assert_int_equal(ta->type, tb->type);
        assert_int_equal(ta->nbytes, tb->nbytes);
        assert_memory_equal(ta->data, tb->data, ta->nbytes);
    }
    gpt2_free(a);
    gpt2_free(b);
    /* f32 from f16 restores the f16 values exactly */
    char err[256];
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF_F16, SCRATCH "q-f32.gguf", GPT2_TYPE_F32, err, sizeof err), GPT2_OK);
    gpt2_model *m16 = load(FIXTURE_GGUF_F16), *m32 = load(SCRATCH "q-f32.gguf");
    golden_report r16 = compare_golden(m16), r32 = compare_golden(m32);
    assert_true(r16.max_diff == r32.max_diff);
    gpt2_free(m16);
    gpt2_free(m32);
    assert_int_equal(gpt2_quantize("no/such.gguf", SCRATCH "x.gguf", GPT2_TYPE_F16, err, sizeof err), GPT2_E_IO);
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF, SCRATCH "x.gguf", (gpt2_type)9, err, sizeof err), GPT2_E_ARG);
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF, "no/such/dir/x.gguf", GPT2_TYPE_F16, err, sizeof err), GPT2_E_IO);
}

/* gpt2_quantize writes beside its output under a name of its own: a link planted where a
   fixed temporary name would be is never followed, an output that is not a regular file is
   refused, and the result has a new file's permissions */
static void test_quantize_output_safety(void **state) {
    (void)state;
    char err[256];
    const char *dir = SCRATCH "qsafe";
    if (system("rm -rf " SCRATCH "qsafe && mkdir -p " SCRATCH "qsafe") != 0) fail();
    FILE *v = fopen(SCRATCH "qsafe/victim", "w");
    assert_non_null(v);
    fputs("precious", v);
    fclose(v);
    assert_int_equal(symlink("victim", SCRATCH "qsafe/out.gguf.tmp"), 0);
    mode_t old = umask(022);
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF, SCRATCH "qsafe/out.gguf", GPT2_TYPE_Q8_0, err, sizeof err), GPT2_OK);
    umask(old);
    size_t n;
    char *victim = read_all(SCRATCH "qsafe/victim", &n);
    assert_string_equal(victim, "precious");
    free(victim);
    struct stat st;
    assert_int_equal(lstat(SCRATCH "qsafe/out.gguf", &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0644);
    gpt2_model *m = load(SCRATCH "qsafe/out.gguf");
    assert_int_equal(gpt2_get_model_info(m).matrix_type, GPT2_TYPE_Q8_0);
    gpt2_free(m);
    /* an output that is a FIFO or a directory is refused and left alone */
    assert_int_equal(mkfifo(SCRATCH "qsafe/fifo", 0600), 0);
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF, SCRATCH "qsafe/fifo", GPT2_TYPE_F16, err, sizeof err), GPT2_E_IO);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(lstat(SCRATCH "qsafe/fifo", &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(gpt2_quantize(FIXTURE_GGUF, dir, GPT2_TYPE_F16, err, sizeof err), GPT2_E_IO);
    /* nothing left behind but what was there and the one output */
    assert_int_equal(system("test $(ls -A " SCRATCH "qsafe | wc -l) -eq 4"), 0);
    if (system("rm -rf " SCRATCH "qsafe") != 0) fail();
}

/* ---- kernels: each SIMD path against the scalar reference --------------------------------- */

/* the kernel tables of every path this CPU runs, scalar first, with the names that force them */
static int kernel_tables(const kernel_table **tables, const char **names) {
    int n = kernel_paths_here(names);
    for (int i = 0; i < n; i++) assert_int_equal(kernels_by_name(names[i], &tables[i]), GPT2_OK);
    assert_ptr_equal(tables[0], &kernels_scalar);
    return n;
}

static void fill_row(uint8_t *dst, gpt2_type t, const float *v, int64_t n) {
    quantize_row(v, n, t, dst);
}

/* One tile through a path. q8_0 weights take their activations quantized, as matmul does. */
static void run_tile(const kernel_table *kt, size_t ti, const uint8_t *w, size_t row_bytes, int nr,
                     const float *x, size_t ldx, int nt, int64_t n, float *out, size_t ldo) {
    if (ti < WT_COUNT) {
        kt->dot[ti](w, row_bytes, nr, x, ldx, nt, n, out, ldo);
        return;
    }
    size_t ldq = (size_t)q8_groups(n);
    q8_group *q = alloc64((size_t)nt * ldq * sizeof *q);
    assert_non_null(q);
    for (int t = 0; t < nt; t++) kt->quantize_q8(x + (size_t)t * ldx, n, q + (size_t)t * ldq);
    kt->dot_q8(w, row_bytes, nr, q, ldq, nt, n, out, ldo);
    free(q);
}

static void test_kernels_against_scalar(void **state) {
    (void)state;
    const kernel_table *paths[N_ALL_KERNEL_PATHS];
    const char *names[N_ALL_KERNEL_PATHS];
    int n_paths = kernel_tables(paths, names);
    const gpt2_type types[] = {GPT2_TYPE_F32, GPT2_TYPE_F16, GPT2_TYPE_BF16, GPT2_TYPE_Q8_0};
    const int64_t sizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 777, 3072};
    uint64_t seed = 99;
    int compared = 0;
    for (size_t ti = 0; ti < 4; ti++) {
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            int64_t n = sizes[si];
            if (types[ti] == GPT2_TYPE_Q8_0) n = (n + 31) / 32 * 32;
            size_t row_bytes = (size_t)n * 4 + 64;
            uint8_t *w = malloc(4 * row_bytes);
            float *x = malloc((size_t)n * sizeof *x), *v = malloc((size_t)n * sizeof *v);
            for (int64_t i = 0; i < n; i++) x[i] = gb_randf(&seed) * 5;
            for (int r = 0; r < 4; r++) {
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed);
                fill_row(w + (size_t)r * row_bytes, types[ti], v, n);
            }
            if (types[ti] == GPT2_TYPE_Q8_0) /* -128, which other writers may produce */
                for (int64_t b = 0; b < n / 32; b += 3) w[(size_t)b * 34 + 2 + (size_t)b % 32] = 0x80;
            /* 4 activation rows, ldx apart */
            size_t ldx = (size_t)n + 3;
            float *xs = malloc(4 * ldx * sizeof *xs);
            for (int t = 0; t < 4; t++)
                for (int64_t i = 0; i < n; i++) xs[(size_t)t * ldx + (size_t)i] = x[i] * (float)(t + 1) - (float)t;
            float ref1[4][4]; /* [t][r]: each dot alone on the scalar path */
            for (int t = 0; t < 4; t++)
                for (int r = 0; r < 4; r++)
                    run_tile(paths[0], ti, w + (size_t)r * row_bytes, row_bytes, 1, xs + (size_t)t * ldx, ldx, 1, n, &ref1[t][r], 1);
            for (int p = 0; p < n_paths; p++) {
                float one[4][4]; /* the same path, one dot at a time */
                for (int t = 0; t < 4; t++)
                    for (int r = 0; r < 4; r++)
                        run_tile(paths[p], ti, w + (size_t)r * row_bytes, row_bytes, 1, xs + (size_t)t * ldx, ldx, 1, n, &one[t][r], 1);
                for (int nr = 1; nr <= 4; nr++)
                    for (int nt = 1; nt <= 4; nt++) {
                        float got[4][5];
                        run_tile(paths[p], ti, w, row_bytes, nr, xs, ldx, nt, n, &got[0][0], 5);
                        for (int t = 0; t < nt; t++)
                            for (int r = 0; r < nr; r++) {
                                /* bit for bit the same as the dot alone: tiling never changes a result */
                                assert_memory_equal(&got[t][r], &one[t][r], sizeof(float));
#ifdef GPT2_X86
                                /* AVX2's q8_0 tiles take the scalar reference's steps */
                                if (types[ti] == GPT2_TYPE_Q8_0 &&
                                    (paths[p]->dot_q8 == dot_q8_0_avx2 || paths[p]->dot_q8 == dot_q8_0_avxvnni))
                                    assert_memory_equal(&got[t][r], &ref1[t][r], sizeof(float));
#endif
                                double tol = 1e-5 * (1 + fabs(ref1[t][r])) * sqrt((double)n);
                                if (fabs(got[t][r] - ref1[t][r]) > tol) {
                                    fprintf(stderr, "%s %s n=%lld: %g vs scalar %g\n", paths[p]->name,
                                            gpt2_type_name(types[ti]), (long long)n, got[t][r], ref1[t][r]);
                                    fail();
                                }
                            }
                        compared++;
                    }
            }
            free(xs);
            free(w);
            free(x);
            free(v);
        }
    }
    fprintf(stderr, "  %d tiles compared\n", compared);
    report_paths("tiles against the scalar reference", names, n_paths);
}

/* One tile of quantized weights (q8_0, or q4_0 of §D) on a path, q being ldq groups a token. */
static void wide_dot(const kernel_table *kt, gpt2_type type, const uint8_t *w, size_t row_bytes, int nr,
                     const q8_group *q, size_t ldq, int nt, int64_t n, float *out, size_t ldo) {
    if (type == GPT2_TYPE_Q8_0) kt->dot_q8(w, row_bytes, nr, q, ldq, nt, n, out, ldo);
    else kq_dot_for((int)type, kt->kq_isa)(w, row_bytes, nr, q, ldq * sizeof *q, nt, n, out, ldo);
}

/* q8_0 and q4_0 tiles as wide as the driver calls them (tile_rows): 8 rows and up to 64
   tokens where the path packs its rows. Every dot equals the same path's dot alone (and for
   q8_0 on the packing paths the scalar reference's), across the slabs of 32 blocks and 32
   tokens the packed kernels go in, with rows off any alignment. */
static void test_wide_tiles(void **state) {
    (void)state;
    const kernel_table *paths[N_ALL_KERNEL_PATHS];
    const char *names[N_ALL_KERNEL_PATHS];
    int n_paths = kernel_tables(paths, names);
    const gpt2_type types[] = {GPT2_TYPE_Q8_0, GPT2_TYPE_Q4_0};
    const int64_t sizes[] = {32, 96, 1056, 2080}; /* 1, 3, 33 and 65 blocks */
    const int nts[] = {1, 3, 4, 5, 32, 33, 64, 65};
    enum { MAXT = 65, MAXR = 8 };
    uint64_t seed = 31;
    int compared = 0;
    for (size_t ty = 0; ty < 2; ty++)
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            const gpt2_type type = types[ty];
            const int64_t n = sizes[si];
            const size_t row_bytes = (size_t)(n / 32) * (type == GPT2_TYPE_Q8_0 ? Q8_0_BLOCK_BYTES : 18) + 6;
            const size_t ldq = (size_t)q8_groups(n) + 1;
            uint8_t *w = malloc(MAXR * row_bytes + 1);
            float *v = malloc((size_t)n * sizeof *v);
            q8_group *q = alloc64(MAXT * ldq * sizeof *q);
            assert_true(w && v && q);
            for (int r = 0; r < MAXR; r++) {
                uint8_t *row = w + 1 + (size_t)r * row_bytes; /* rows off 2-byte steps */
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed) * (float)(r + 1);
                if (type == GPT2_TYPE_Q8_0) {
                    quantize_row(v, n, type, row);
                    row[2 + r] = 0x80; /* -128 */
                } else {
                    assert_int_equal(kq_quantize_row((int)type, v, n, row), 0);
                }
            }
            for (int t = 0; t < MAXT; t++) {
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed) * 3 - (float)(t % 3);
                quantize_q8_scalar(v, n, q + (size_t)t * ldq);
            }
            float ref[MAXT][MAXR];
            for (int t = 0; t < MAXT; t++)
                for (int r = 0; r < MAXR; r++)
                    wide_dot(paths[0], type, w + 1 + (size_t)r * row_bytes, row_bytes, 1, q + (size_t)t * ldq, ldq, 1,
                             n, &ref[t][r], 1);
            for (int p = 0; p < n_paths; p++) {
                const kernel_table *kt = paths[p];
                const int rows = tile_rows(kt, type);
                float one[MAXT][MAXR];
                for (int t = 0; t < MAXT; t++)
                    for (int r = 0; r < MAXR; r++)
                        wide_dot(kt, type, w + 1 + (size_t)r * row_bytes, row_bytes, 1, q + (size_t)t * ldq, ldq, 1, n,
                                 &one[t][r], 1);
                for (int nr = 1; nr <= rows; nr++)
                    for (size_t ti = 0; ti < sizeof nts / sizeof *nts; ti++) {
                        const int nt = nts[ti];
                        if (nt > (rows == 8 ? MATMUL_WIDE_TOKENS + 1 : 4)) continue;
                        float got[MAXT][MAXR + 1];
                        wide_dot(kt, type, w + 1, row_bytes, nr, q, ldq, nt, n, &got[0][0], MAXR + 1);
                        for (int t = 0; t < nt; t++)
                            for (int r = 0; r < nr; r++) {
                                assert_memory_equal(&got[t][r], &one[t][r], sizeof(float));
                                if (type == GPT2_TYPE_Q8_0 && rows == 8)
                                    assert_memory_equal(&got[t][r], &ref[t][r], sizeof(float));
                                assert_true(fabs(got[t][r] - ref[t][r]) <= 1e-5 * (1 + fabs(ref[t][r])) * sqrt((double)n));
                            }
                        compared++;
                    }
            }
            free(w);
            free(v);
            free(q);
        }
    fprintf(stderr, "  %d tiles compared\n", compared);
    report_paths("q8_0 and q4_0 tiles as wide as the driver calls them", names, n_paths);
}

/* The K formats' tiles as wide as the driver calls them: 8 rows (AVX2) or 16 (AVX-512) and up
   to 64 activation rows, where they pack super-blocks 4 or 2 at a time and tokens 32 at a
   time. Every dot equals the same path's dot alone and the scalar reference's, on every
   path. (The shape sweep is test_wide_tiles', over K activations and 16 rows.) */
static void test_wide_k_tiles(void **state) {
    (void)state;
    const kernel_table *paths[N_ALL_KERNEL_PATHS];
    const char *names[N_ALL_KERNEL_PATHS];
    int n_paths = kernel_tables(paths, names);
    const gpt2_type types[] = {GPT2_TYPE_Q2_K, GPT2_TYPE_Q3_K, GPT2_TYPE_Q4_K, GPT2_TYPE_Q5_K, GPT2_TYPE_Q6_K};
    const int64_t sizes[] = {256, 1280, 2304}; /* 1, 5 and 9 super-blocks */
    const int nts[] = {1, 3, 4, 5, 32, 33, 64, 65};
    enum { MAXT = 65, MAXR = 16 };
    uint64_t seed = 47;
    int compared = 0;
    for (size_t ty = 0; ty < sizeof types / sizeof *types; ty++)
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            const int type = (int)types[ty];
            const int64_t n = sizes[si];
            size_t row_bytes;
            assert_int_equal(kq_row_bytes(type, n, &row_bytes), 0);
            row_bytes += 3;
            const size_t ldq = (size_t)(n / 256) * sizeof(q8k_record) + 64;
            uint8_t *w = malloc(MAXR * row_bytes + 1);
            float *v = malloc((size_t)n * sizeof *v);
            uint8_t *q = alloc64(MAXT * ldq);
            assert_true(w && v && q);
            for (int r = 0; r < MAXR; r++) {
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed) * (float)(r + 1) - (float)(r % 3) * 0.2f;
                assert_int_equal(kq_quantize_row(type, v, n, w + 1 + (size_t)r * row_bytes), 0);
            }
            for (int t = 0; t < MAXT; t++) {
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed) * 3 - (float)(t % 3);
                if (t == 7) v[5] = 40.0f; /* one large channel: the rest of its block rounds coarsely */
                assert_int_equal(kq_quantize_act(type, v, n, q + (size_t)t * ldq), 0);
            }
            float ref[MAXT][MAXR];
            kq_dot_fn scalar = kq_dot_for(type, KQ_ISA_SCALAR);
            for (int t = 0; t < MAXT; t++)
                for (int r = 0; r < MAXR; r++)
                    scalar(w + 1 + (size_t)r * row_bytes, row_bytes, 1, q + (size_t)t * ldq, ldq, 1, n, &ref[t][r], 1);
            for (int p = 0; p < n_paths; p++) {
                const kernel_table *kt = paths[p];
                const int rows = tile_rows(kt, (gpt2_type)type);
                kq_dot_fn dot = kq_dot_for(type, kt->kq_isa);
                float one[MAXT][MAXR];
                for (int t = 0; t < MAXT; t++)
                    for (int r = 0; r < MAXR; r++)
                        dot(w + 1 + (size_t)r * row_bytes, row_bytes, 1, q + (size_t)t * ldq, ldq, 1, n, &one[t][r], 1);
                for (int nr = 1; nr <= rows; nr++)
                    for (size_t ti = 0; ti < sizeof nts / sizeof *nts; ti++) {
                        const int nt = nts[ti];
                        if (nt > (rows > 4 ? MATMUL_WIDE_TOKENS + 1 : 4)) continue;
                        float got[MAXT][MAXR + 1];
                        dot(w + 1, row_bytes, nr, q, ldq, nt, n, &got[0][0], MAXR + 1);
                        for (int t = 0; t < nt; t++)
                            for (int r = 0; r < nr; r++) {
                                assert_memory_equal(&got[t][r], &one[t][r], sizeof(float));
                                assert_memory_equal(&got[t][r], &ref[t][r], sizeof(float));
                                assert_true(fabs(got[t][r] - ref[t][r]) <= 1e-5 * (1 + fabs(ref[t][r])) * sqrt((double)n));
                            }
                        compared++;
                    }
            }
            free(w);
            free(v);
            free(q);
        }
    fprintf(stderr, "  %d tiles compared\n", compared);
    report_paths("K-format tiles as wide as the driver calls them", names, n_paths);
}

/* f32 rows off a cache line take the two-halves loads: the same bits as rows on one */
static void test_f32_rows_off_cache_lines(void **state) {
    (void)state;
#ifdef GPT2_X86
    if (!(cpu_level() & CPU_AVX512)) {
        fprintf(stderr, "  not run: avx512 (this CPU has no AVX-512)\n");
        return;
    }
    const int64_t n = 777;
    const size_t row_bytes = 3200; /* 777 floats and padding, a multiple of 64 */
    uint8_t *rows = malloc(4 * row_bytes), *buf = alloc64(4 * row_bytes + 64);
    float *x = alloc64(4 * 784 * sizeof(float));
    uint64_t seed = 17;
    for (size_t i = 0; i < 4 * 784; i++) x[i] = gb_randf(&seed);
    for (size_t i = 0; i < 4 * row_bytes / 4; i++) {
        float v = gb_randf(&seed);
        memcpy(rows + 4 * i, &v, 4);
    }
    for (int nr = 1; nr <= 4; nr++)
        for (int nt = 1; nt <= 4; nt++) {
            float a[16], b[16], c[16];
            memcpy(buf, rows, 4 * row_bytes);      /* rows on cache lines */
            dot_f32_avx512(buf, row_bytes, nr, x, 784, nt, n, a, 4);
            dot_f32_halves_avx512(buf, row_bytes, nr, x, 784, nt, n, b, 4);
            memcpy(buf + 32, rows, 4 * row_bytes); /* rows at 32 mod 64, as in GGUF files */
            dot_f32_avx512(buf + 32, row_bytes, nr, x, 784, nt, n, c, 4);
            for (int t = 0; t < nt; t++)
                for (int r = 0; r < nr; r++) {
                    assert_memory_equal(&a[t * 4 + r], &b[t * 4 + r], sizeof(float));
                    assert_memory_equal(&a[t * 4 + r], &c[t * 4 + r], sizeof(float));
                }
        }
    free(rows);
    free(buf);
    free(x);
#else
    fprintf(stderr, "  not run: avx512 (not an x86 build)\n");
#endif
}

/* q8_0 activations: blocks of 32 with d = max|x| / 127, q rounded half to even, the lane
   scales and corrections the kernels expect, a zero lone block B, and no trouble with
   non-finite input */
/* the K formats' activations (q8k_record) and two_pass's leftover on every path: the
   scalar code's bytes, whatever the input (ties in magnitude of either sign, NaN, infinities,
   zeros, subnormals, rounding ties) */
static void test_k8_activations(void **state) {
    (void)state;
    const kernel_table *paths[N_ALL_KERNEL_PATHS];
    const char *names[N_ALL_KERNEL_PATHS];
    int n_paths = kernel_tables(paths, names);
    enum { NB = 12, N = NB * 256 };
    static float x[N], r_ref[N], r_got[N];
    static q8k_record ref[NB], got[NB];
    uint64_t seed = 5;
    for (int i = 0; i < N; i++) x[i] = gb_randf(&seed) * 15.0f; /* -3 .. 3 */
    x[3] = -3.5f; x[200] = 3.5f;                  /* block 0: -3.5 first, so d > 0 */
    x[256 + 10] = 2.5f; x[256 + 20] = -2.5f;      /* block 1 */
    for (int i = 512; i < 768; i++) x[i] = 0.0f;  /* block 2: all zero */
    x[768 + 7] = NAN;                             /* block 3: NaN among numbers */
    x[1024 + 9] = INFINITY;                       /* block 4: an infinity: all zero */
    for (int i = 1280; i < 1536; i++) x[i] = 1e-40f * (float)(i % 5); /* block 5: subnormals */
    for (int i = 1536; i < 1792; i++) x[i] = (float)(i % 255) - 127.0f; /* block 6: d = 1 */
    x[1536] = -127.0f;                                                  /* first: d = 1 */
    x[1536 + 1] = 0.5f; x[1536 + 2] = 1.5f; x[1536 + 3] = -2.5f;        /* ties to even */
    for (int i = 1792; i < 2048; i++) x[i] = -0.0f; /* block 7: negative zeros */
    x[2048 + 100] = 1e30f;                        /* block 8: one huge number */
    kq_quantize_act(GPT2_TYPE_Q4_K, x, N, ref);
    /* scalar two_pass leftover, then its quantization */
    kq_residual_k8_on(KQ_ISA_SCALAR, x, ref, N, r_ref);
    for (int p = 0; p < n_paths; p++) {
        memset(got, 0x55, sizeof got);
        kq_quantize_k8_on(paths[p]->kq_isa, x, N, got);
        for (int b = 0; b < NB; b++) assert_memory_equal(&got[b], &ref[b], sizeof ref[b]);
        memset(r_got, 0x55, sizeof r_got);
        kq_residual_k8_on(paths[p]->kq_isa, x, got, N, r_got);
        assert_memory_equal(r_got, r_ref, sizeof r_ref);
    }
    /* and what the scalar code gives is what it should */
    assert_true(ref[0].d > 0.0f && ref[0].q[3] == -127 && ref[0].q[200] == 127);
    for (int b = 2; b <= 4; b += 2) {
        assert_true(ref[b].d == 0.0f);
        for (int i = 0; i < 256; i++) assert_int_equal(ref[b].q[i], 0);
    }
    assert_true(ref[6].d == 1.0f && ref[6].q[1] == 0 && ref[6].q[2] == 2 && ref[6].q[3] == -2);
    for (int b = 0; b < NB; b++)
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += ref[b].q[16 * j + i];
            assert_int_equal(ref[b].bsum[j], sum);
        }
    report_paths("K activations against the scalar code", names, n_paths);
}

static void test_q8_activations(void **state) {
    (void)state;
    float x[96];
    for (int i = 0; i < 96; i++) x[i] = (float)(i % 7) - 3.0f;
    x[0] = 127.0f;                    /* block 0: d = 1, so q = round(x) */
    x[1] = 0.5f; x[2] = 1.5f; x[3] = 2.5f; x[4] = -2.5f; x[5] = 126.5f; x[6] = -127.0f;
    for (int i = 32; i < 64; i++) x[i] = 0.0f;  /* block 1: all zero */
    x[64] = -254.0f;                  /* block 2: d = 2 */
    x[65] = 3.0f;                     /* 1.5 -> 2 */
    x[66] = 5.0f;                     /* 2.5 -> 2 */
    q8_group g[2];
    memset(g, 0x55, sizeof g);
    quantize_q8_scalar(x, 96, g);
    const int8_t want0[7] = {127, 0, 2, 2, -2, 126, -127};
    for (int i = 0; i < 7; i++) assert_int_equal(g[0].q[i], want0[i]);
    for (int i = 7; i < 32; i++) assert_int_equal(g[0].q[i], (int)x[i]);
    for (int i = 32; i < 64; i++) assert_int_equal(g[0].q[i], 0);
    assert_int_equal(g[1].q[0], -127);
    assert_int_equal(g[1].q[1], 2);
    assert_int_equal(g[1].q[2], 2);
    for (int j = 0; j < 16; j++) {
        assert_true(g[0].d[j] == (j < 8 ? 1.0f : 0.0f));
        assert_true(g[1].d[j] == (j < 8 ? 2.0f : 0.0f)); /* the lone block's B is empty */
        for (int k = 0; k < 2; k++) {
            int sum = 0;
            for (int i = 0; i < 4; i++) sum += g[k].q[4 * j + i];
            assert_int_equal(g[k].corr[j], -128 * sum);
        }
    }
    for (int i = 32; i < 64; i++) assert_int_equal(g[1].q[i], 0);
    /* every value within half a step of the original */
    uint64_t seed = 3;
    float y[64];
    for (int i = 0; i < 64; i++) y[i] = gb_randf(&seed) * 9.0f;
    quantize_q8_scalar(y, 64, g);
    for (int i = 0; i < 64; i++)
        assert_true(fabsf(g[0].d[i / 32 * 8] * g[0].q[i] - y[i]) <= g[0].d[i / 32 * 8] * 0.5f * 1.0001f);
    /* NaN and infinities give numbers, not undefined behaviour */
    y[0] = NAN; y[40] = INFINITY; y[41] = -INFINITY;
    quantize_q8_scalar(y, 64, g);
    for (int i = 0; i < 64; i++) assert_true(g[0].q[i] >= -127 && g[0].q[i] <= 127);
    /* the SIMD versions give the same bytes: random rows of odd and even block counts, exact
       halves (ties), zero blocks, NaN and infinities */
    const kernel_table *paths[N_ALL_KERNEL_PATHS];
    const char *names[N_ALL_KERNEL_PATHS];
    int n_paths = kernel_tables(paths, names);
    int compared = 0;
    for (int p = 0; p < n_paths; p++) {
        for (int64_t n = 32; n <= 320; n += 32) {
            float *v = malloc((size_t)n * sizeof *v);
            size_t ng = (size_t)q8_groups(n);
            q8_group *a = malloc(ng * sizeof *a), *b = malloc(ng * sizeof *b);
            for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed) * (float)(1 + i % 5);
            if (n >= 96) {
                for (int i = 32; i < 64; i++) v[i] = 0.0f;                    /* a zero block */
                v[64] = 127.0f;                                               /* ties: d = 1 */
                for (int i = 65; i < 96; i++) v[i] = (float)(i - 80) + 0.5f;
            }
            if (n >= 160) { v[100] = NAN; v[130] = INFINITY; v[131] = -INFINITY; v[150] = -0.0f; }
            memset(a, 0x11, ng * sizeof *a);
            memset(b, 0x22, ng * sizeof *b);
            quantize_q8_scalar(v, n, a);
            paths[p]->quantize_q8(v, n, b);
            assert_memory_equal(a, b, ng * sizeof *a);
            compared++;
            free(v);
            free(a);
            free(b);
        }
    }
    fprintf(stderr, "  %d quantized rows compared with the scalar reference\n", compared);
    report_paths("q8_0 activations against the scalar reference", names, n_paths);
}

/* GELU, softmax exponentials and attention's weighted sum: SIMD against scalar */
static void test_vector_math_against_scalar(void **state) {
    (void)state;
    const kernel_table *paths[N_ALL_KERNEL_PATHS];
    const char *names[N_ALL_KERNEL_PATHS];
    int n_paths = kernel_tables(paths, names);
    const int64_t sizes[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 100, 1023};
    uint64_t seed = 5;
    int checked = 0;
    for (int p = 0; p < n_paths; p++) {
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            int64_t n = sizes[si];
            float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
            /* GELU over a wide range, including large magnitudes */
            for (int64_t i = 0; i < n; i++) a[i] = b[i] = gb_randf(&seed) * 40.0f;
            if (n > 2) { a[0] = b[0] = -100.0f; a[1] = b[1] = 100.0f; }
            kernels_scalar.gelu(a, n);
            paths[p]->gelu(b, n);
            for (int64_t i = 0; i < n; i++) assert_true(fabsf(a[i] - b[i]) <= 2e-6f * (1.0f + fabsf(a[i])));
            /* a number's GELU does not depend on where a call's range starts or ends: the
               threads of a matmul apply it to their own shares of a row (this once broke
               bit identity across thread counts on AVX2) */
            for (int64_t cut = 1; cut < n; cut += 3) {
                float *c = malloc((size_t)n * sizeof *c);
                for (int64_t i = 0; i < n; i++) a[i] = c[i] = gb_randf(&seed) * 8.0f;
                paths[p]->gelu(a, n);
                paths[p]->gelu(c, cut);
                paths[p]->gelu(c + cut, n - cut);
                assert_memory_equal(a, c, (size_t)n * sizeof *c);
                free(c);
            }
            /* exp(x - max) and their sum */
            for (int64_t i = 0; i < n; i++) a[i] = b[i] = gb_randf(&seed) * 60.0f;
            a[0] = b[0] = -INFINITY; /* a removed entry: exactly 0 */
            float sa = kernels_scalar.exp_sum(a, n, 10.0f), sb = paths[p]->exp_sum(b, n, 10.0f);
            assert_true(a[0] == 0.0f && b[0] == 0.0f);
            assert_true(fabsf(sa - sb) <= 1e-6f * sa);
            for (int64_t i = 0; i < n; i++) assert_true(fabsf(a[i] - b[i]) <= 1e-6f * a[i] + 1e-30f);
            /* y += sum_j p_j v_j over n rows of 64 (and of 40) channels */
            for (int hs = 40; hs <= 64; hs += 24) {
                float *v = malloc((size_t)n * 64 * sizeof *v), ya[64], yb[64];
                for (int64_t i = 0; i < n * 64; i++) v[i] = gb_randf(&seed);
                for (int i = 0; i < 64; i++) ya[i] = yb[i] = 0.5f;
                for (int64_t i = 0; i < n; i++) a[i] = gb_randf(&seed) + 0.5f;
                kernels_scalar.weighted_sum(v, 64, a, n, hs, ya);
                paths[p]->weighted_sum(v, 64, a, n, hs, yb);
                for (int i = 0; i < hs; i++) assert_true(fabsf(ya[i] - yb[i]) <= 1e-5f * (1.0f + (float)n));
                for (int i = hs; i < 64; i++) assert_true(yb[i] == 0.5f); /* nothing past hs */
                free(v);
            }
            /* 4 queries at once, each with its own length: the one-query bits */
            {
                float *v = malloc((size_t)(n + 3) * 64 * sizeof *v), *pr = malloc(4 * (size_t)(n + 3) * sizeof *pr);
                float y4[4][64], y1[4][64];
                int32_t lens[4] = {(int32_t)n, (int32_t)n + 1, (int32_t)n + 3, (int32_t)n + 2};
                for (int64_t i = 0; i < (n + 3) * 64; i++) v[i] = gb_randf(&seed);
                for (int64_t i = 0; i < 4 * (n + 3); i++) pr[i] = gb_randf(&seed) + 0.5f;
                for (int q = 0; q < 4; q++)
                    for (int i = 0; i < 64; i++) y4[q][i] = y1[q][i] = 0.25f * (float)q;
                paths[p]->weighted_sum4(v, 64, pr, (size_t)(n + 3), lens, 4, 64, &y4[0][0], 64);
                for (int q = 0; q < 4; q++)
                    paths[p]->weighted_sum(v, 64, pr + (size_t)q * (size_t)(n + 3), lens[q], 64, y1[q]);
                assert_memory_equal(y4, y1, sizeof y4);
                free(v);
                free(pr);
            }
            free(a);
            free(b);
            checked++;
        }
    }
    fprintf(stderr, "  %d vector-math shapes compared\n", checked);
    report_paths("vector math against the scalar reference", names, n_paths);
}

/* ---- the fast code against the plain reference code -------------------------------------- */

/* matmul() (tiles, threads, epilogues) against matmul_reference() (three loops), every path,
   every weight type, token counts that leave partial tiles */
static void test_matmul_against_reference(void **state) {
    (void)state;
    const gpt2_type types[] = {GPT2_TYPE_F32, GPT2_TYPE_F16, GPT2_TYPE_BF16, GPT2_TYPE_Q8_0};
    const int64_t R = 37, n = 96;
    const int Ts[] = {1, 3, 4, 9};
    uint64_t seed = 21;
    FOR_EACH_KERNEL_PATH("matmul against the three-loop reference", path, {
        gpt2_model *m = load_on_path(FIXTURE_GGUF, path);
        assert_non_null(m);
        gpt2_context *c = context(m, 3);
        for (size_t ti = 0; ti < 4; ti++) {
            size_t row_bytes = (size_t)n * 4;
            uint8_t *data = malloc((size_t)R * row_bytes);
            float *v = malloc((size_t)n * sizeof *v), bias[37];
            for (int64_t r = 0; r < R; r++) {
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed);
                quantize_row(v, n, types[ti], data + (size_t)r * row_bytes);
                bias[r] = gb_randf(&seed);
            }
            matrix w = {data, types[ti], R, n, row_bytes};
            for (size_t k = 0; k < sizeof Ts / sizeof *Ts; k++) {
                int T = Ts[k];
                float *x = malloc((size_t)T * n * sizeof *x), *xr = malloc((size_t)T * n * sizeof *xr);
                float *got = malloc((size_t)T * R * sizeof *got), *want = malloc((size_t)T * R * sizeof *want);
                for (int64_t i = 0; i < T * n; i++) x[i] = xr[i] = gb_randf(&seed) * 4;
                if (types[ti] == GPT2_TYPE_Q8_0) { /* the reference sees x as the kernels do */
                    q8_group g[2];
                    for (int t = 0; t < T; t++) {
                        quantize_q8_scalar(x + (size_t)t * n, n, g);
                        for (int64_t i = 0; i < n; i++)
                            xr[(size_t)t * n + i] = g[i / 64].d[(i % 64) / 32 * 8] * g[i / 64].q[i % 64];
                    }
                }
                const epilogue eps[3] = {EPI_STORE, EPI_GELU, EPI_ADD};
                for (int e = 0; e < 3; e++) {
                    for (int64_t i = 0; i < T * R; i++) got[i] = 0.5f;
                    matmul(c, &w, bias, x, T, got, eps[e]);
                    matmul_reference(want, xr, &w, bias, T);
                    for (int64_t i = 0; i < T * R; i++) {
                        float ref = eps[e] == EPI_GELU ? gelu(want[i]) : eps[e] == EPI_ADD ? want[i] + 0.5f : want[i];
                        if (!(fabsf(got[i] - ref) <= 1e-5f * (1.0f + fabsf(ref)))) {
                            fprintf(stderr, "%s %s T=%d epilogue %d: %g vs reference %g\n", kt_name_of(m),
                                    gpt2_type_name(types[ti]), T, e, got[i], ref);
                            fail();
                        }
                    }
                }
                free(x); free(xr); free(got); free(want);
            }
            free(data);
            free(v);
        }
        gpt2_context_free(c);
        gpt2_free(m);
    });
}

/* the tiled attention of forward() against attention_head_reference(): after one pass over 40
   tokens the context holds the last block's queries (qkv), its cache, and its attention
   output (y), which must be what the plain one-head loop computes from them */
static void test_attention_against_reference(void **state) {
    (void)state;
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 4099 + 7) % V;
    FOR_EACH_KERNEL_PATH("attention against the one-head reference", path, {
        gpt2_model *m = load_on_path(FIXTURE_GGUF, path);
        assert_non_null(m);
        gpt2_context *c = context(m, 2);
        assert_int_equal(gpt2_eval(c, ids, 40, NULL), GPT2_OK);
        const gpt2_config *cf = &m->cfg;
        const int C = cf->n_embd, NH = cf->n_head, HS = C / NH, l = cf->n_layer - 1;
        float y[64], scores[40];
        double worst = 0;
        for (int t = 0; t < 40; t++)
            for (int h = 0; h < NH; h++) {
                attention_head_reference(y, c->qkv + (size_t)t * 3 * C + (size_t)h * HS,
                                         kv_row(&c->cache, c->cache.k, cf, l, h, 0),
                                         kv_row(&c->cache, c->cache.v, cf, l, h, 0), t + 1, HS, scores);
                for (int i = 0; i < HS; i++) {
                    double d = fabs((double)y[i] - c->y[(size_t)t * C + (size_t)h * HS + (size_t)i]);
                    worst = d > worst ? d : worst;
                }
            }
        fprintf(stderr, "  %s: max |attention - reference| = %.3g\n", kt_name_of(m), worst);
        assert_true(worst < 1e-5);
        gpt2_context_free(c);
        gpt2_free(m);
    });
}

/* f16 and bf16 conversions against their definitions, on every 16-bit pattern */
static void test_half_conversions(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        uint32_t e = (h >> 10) & 31, man = h & 1023;
        if (e == 31 && man) {
            assert_true(isnan(f));
            continue;
        }
        double want = e == 0 ? ldexp((double)man, -24) : e == 31 ? INFINITY : ldexp(1024.0 + man, (int)e - 25);
        if (h & 0x8000) want = -want;
        assert_true((double)f == want);
        assert_int_equal(f32_to_f16(f), h); /* exact round trip */
        float b = bf16_to_f32((uint16_t)h);
        if (!isnan(b)) assert_int_equal(f32_to_bf16(b), h);
    }
    /* rounding: halfway cases go to even */
    assert_int_equal(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(f32_to_f16(0x1p-25f), 0);
    assert_int_equal(f32_to_f16(0x1.8p-25f), 1);
}

/* perplexity with one window equals exp(HF's loss) */
static void test_perplexity(void **state) {
    (void)state;
    const jv *p = &jreq(&golden, "prompts")->items[4]; /* p4, 100 tokens */
    size_t n;
    int32_t *ids = jints(jreq(p, "tokens"), &n);
    FOR_EACH_KERNEL_PATH("perplexity against HF's loss", path, {
        gpt2_model *m = load_on_path(FIXTURE_GGUF, path);
        assert_non_null(m);
        gpt2_context *c = context(m, 2);
        double ppl, nll;
        assert_int_equal(gpt2_perplexity(c, ids, n, 0, 0, &ppl, &nll), GPT2_OK);
        assert_true(fabs(nll - jreq(p, "hf_loss")->num) < 1e-4);
        assert_true(fabs(ppl - exp(jreq(p, "hf_loss")->num)) / ppl < 1e-4);
        /* sliding windows of 40 with stride 16: every token after the first is scored once */
        double ppl2 = 0, nll2 = 0;
        assert_int_equal(gpt2_perplexity(c, ids, n, 40, 16, &ppl2, &nll2), GPT2_OK);
        assert_true(nll2 > 0 && fabs(nll2 - nll) < 1.0);
        /* windows of the whole text give the single-window figure whatever the stride */
        assert_int_equal(gpt2_perplexity(c, ids, n, 100, 30, &ppl2, &nll2), GPT2_OK);
        assert_true(fabs(nll2 - nll) < 1e-9);
        assert_int_equal(gpt2_perplexity(c, ids, 1, 0, 0, &ppl2, NULL), GPT2_E_ARG);
        assert_int_equal(gpt2_perplexity(c, ids, n, 10, 20, &ppl2, NULL), GPT2_E_ARG);
        gpt2_context_free(c);
        gpt2_free(m);
    });
    free(ids);
}

static int suite_forward(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_logits_every_path),
        cmocka_unit_test(test_kernel_path_names),
        cmocka_unit_test(test_batching_and_threads_bit_identical),
        cmocka_unit_test(test_read_instead_of_mmap),
        cmocka_unit_test(test_context_full_and_bad_ids),
        cmocka_unit_test(test_weight_types),
        cmocka_unit_test(test_quantize_output_safety),
        cmocka_unit_test(test_kernels_against_scalar),
        cmocka_unit_test(test_wide_tiles),
        cmocka_unit_test(test_wide_k_tiles),
        cmocka_unit_test(test_k8_activations),
        cmocka_unit_test(test_q8_activations),
        cmocka_unit_test(test_f32_rows_off_cache_lines),
        cmocka_unit_test(test_vector_math_against_scalar),
        cmocka_unit_test(test_matmul_against_reference),
        cmocka_unit_test(test_attention_against_reference),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_perplexity),
    };
    return cmocka_run_group_tests_name("forward", tests, forward_setup, forward_teardown);
}
