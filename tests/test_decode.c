/* test_decode.c — decoding against Hugging Face transformers 4.40: the logits processors,
 * greedy decoding, beam search; and our own sampling (seeded, thread-independent, unbiased).
 *
 * White-box: the engine is included so single processors can be called with HF's
 * min_tokens_to_keep and the sampler can be driven directly.
 */
/* (built inside tests/test_internals.c, after the engine) */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"

FIXTURE_MODEL_GROUP

/* ---- logits processors ----------------------------------------------------------------- */

static const float *bin;

/* a row: a JSON list, or {"offset", "length"} into processors.bin */
static float *row_of(const jv *v, int32_t *n) {
    if (v->t == J_ARR) {
        float *r = malloc(v->len * sizeof *r);
        for (size_t i = 0; i < v->len; i++) r[i] = (float)jnum(&v->items[i]);
        *n = (int32_t)v->len;
        return r;
    }
    *n = (int32_t)jreq(v, "length")->num;
    float *r = malloc((size_t)*n * sizeof *r);
    memcpy(r, bin + (size_t)jreq(v, "offset")->num, (size_t)*n * sizeof *r);
    return r;
}

static double num_or(const jv *o, const char *key, double dflt) {
    const jv *v = jget(o, key);
    return v && v->t == J_NUM ? v->num : dflt;
}

/* the same kept set; finite values to 1e-6 relative */
static void expect_row(const float *got, const float *want, int32_t n, bool same_set, int kept) {
    int k = 0;
    for (int32_t i = 0; i < n; i++) {
        k += isfinite(got[i]);
        if (!same_set) continue;
        if (isinf(want[i])) {
            if (!isinf(got[i])) {
                fprintf(stderr, "entry %d kept, HF removed it\n", i);
                fail();
            }
        } else if (!(fabs(got[i] - want[i]) <= 1e-6 * (1 + fabs(want[i])))) {
            fprintf(stderr, "entry %d: %.9g, HF %.9g\n", i, got[i], want[i]);
            fail();
        }
    }
    assert_int_equal(k, kept);
}

static void run_processor_test(const jv *row, const jv *t, int *n_tests) {
    int32_t n;
    float *x = row_of(jreq(row, "input"), &n);
    size_t n_prev;
    int32_t *prev = jints(jreq(row, "input_ids"), &n_prev);
    const char *op = jreq(t, "op")->str;
    const jv *params = jreq(t, "params");
    uint8_t *seen = calloc((size_t)n, 1);
    float *work = malloc((size_t)n * sizeof *work);
    uint32_t *order = malloc(2 * (size_t)n * sizeof *order);
    proc_scratch ps = {work, order, seen};
    int min_keep = (int)num_or(params, "min_tokens_to_keep", 1);
    const jv *tie = jget(t, "tie_across_boundary");
    bool same_set = !(tie && tie->t == J_BOOL && tie->num);
    if (!strcmp(op, "chain")) {
        gpt2_sampling s = {1.0f, 0, 1.0f, 1.0f, 0, min_keep};
        if (jget(params, "hf_sampling_defaults")) s.top_k = 50; /* GenerationConfig(do_sample=True) */
        s.temperature = (float)num_or(params, "temperature", 1.0);
        s.top_k = (int32_t)num_or(params, "top_k", s.top_k);
        s.top_p = (float)num_or(params, "top_p", 1.0);
        s.repetition_penalty = (float)num_or(params, "repetition_penalty", 1.0);
        process_logits(&s, x, n, prev, n_prev, &ps);
        const jv *stages = jreq(t, "stages");
        const jv *last = &stages->items[stages->len - 1];
        const jv *lt = jget(last, "tie_across_boundary");
        same_set = !(lt && lt->t == J_BOOL && lt->num);
        int32_t nw;
        float *want = row_of(jreq(last, "output"), &nw);
        expect_row(x, want, n, same_set, (int)jreq(t, "kept")->num);
        /* the sampling distribution: softmax of what survives */
        float *probs = row_of(jreq(t, "probs"), &nw);
        float mx = x[argmax(x, n)];
        double z = 0;
        for (int32_t i = 0; i < n; i++) z += exp((double)x[i] - mx);
        for (int32_t i = 0; same_set && i < n; i++)
            assert_true(fabs(exp((double)x[i] - mx) / z - probs[i]) < 1e-6);
        free(want);
        free(probs);
    } else {
        if (!strcmp(op, "temperature")) {
            gpt2_sampling s = {(float)jreq(params, "temperature")->num, 0, 1.0f, 1.0f, 0, 1};
            process_logits(&s, x, n, prev, n_prev, &ps);
        } else if (!strcmp(op, "top_k")) {
            top_k_filter(x, n, (int32_t)jreq(params, "top_k")->num, min_keep, &ps);
        } else if (!strcmp(op, "top_p")) {
            top_p_filter(x, n, (float)jreq(params, "top_p")->num, min_keep, &ps);
        } else if (!strcmp(op, "repetition_penalty")) {
            repetition_penalty(x, n, prev, n_prev, (float)jreq(params, "penalty")->num, seen);
            /* the public entry point gives the same */
        } else {
            test_die("unknown op %s", op);
        }
        int32_t nw;
        float *want = row_of(jreq(t, "output"), &nw);
        assert_int_equal(nw, n);
        expect_row(x, want, n, same_set, (int)jreq(t, "kept")->num);
        free(want);
    }
    for (int32_t i = 0; i < n; i++) assert_int_equal(seen[i], 0); /* scratch left clean */
    (*n_tests)++;
    free(x);
    free(prev);
    free(seen);
    free(work);
    free(order);
}

static void test_processors_golden(void **state) {
    (void)state;
    jv p = json_file(DATA "golden/processors.json");
    bin = (const float *)(const void *)read_all(DATA "golden/processors.bin", NULL);
    int n_tests = 0;
    const char *sets[] = {"small", "full"};
    for (int s = 0; s < 2; s++) {
        const jv *rows = jreq(&p, sets[s]);
        for (size_t r = 0; r < rows->len; r++) {
            const jv *tests = jreq(&rows->items[r], "tests");
            for (size_t t = 0; t < tests->len; t++) run_processor_test(&rows->items[r], &tests->items[t], &n_tests);
        }
    }
    fprintf(stderr, "  %d processor outputs reproduced\n", n_tests);
    assert_true(n_tests >= 100);
    free((void *)bin);
    json_free(&p);
}

/* the public gpt2_process_logits equals the chain (repetition, temperature, top-k, top-p) */
static void test_process_logits_public(void **state) {
    (void)state;
    float a[8] = {2.0f, 1.0f, 0.5f, 0.5f, -1.0f, -3.0f, 0.0f, 4.0f};
    int32_t prev[4] = {2, 4, 4, 7};
    gpt2_sampling s = {0.7f, 3, 0.9f, 1.3f, 0, 0};
    gpt2_process_logits(&s, a, 8, prev, 4);
    /* HF: [2/.7, -inf, -inf, -inf, -inf, -inf, -inf, (4/1.3)/.7] */
    assert_true(fabsf(a[0] - 2.0f / 0.7f) < 1e-6f);
    assert_true(fabsf(a[7] - (4.0f / 1.3f) / 0.7f) < 1e-6f);
    for (int i = 1; i < 7; i++) assert_true(isinf(a[i]) && a[i] < 0);
    /* edge cases: k >= V and p = 1 change nothing; one survivor; all equal */
    float b[5] = {1, 2, 3, 4, 5}, c[5];
    memcpy(c, b, sizeof b);
    gpt2_sampling off = {1.0f, 5, 1.0f, 1.0f, 0, 0};
    gpt2_process_logits(&off, c, 5, NULL, 0);
    assert_memory_equal(b, c, sizeof b);
    off.top_k = 1000;
    gpt2_process_logits(&off, c, 5, NULL, 0);
    assert_memory_equal(b, c, sizeof b);
    gpt2_sampling one = {1.0f, 1, 1.0f, 1.0f, 0, 0};
    gpt2_process_logits(&one, c, 5, NULL, 0);
    for (int i = 0; i < 4; i++) assert_true(isinf(c[i]));
    assert_true(c[4] == 5.0f);
    float e[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    gpt2_sampling k2 = {1.0f, 2, 1.0f, 1.0f, 0, 0};
    gpt2_process_logits(&k2, e, 6, NULL, 0);
    for (int i = 0; i < 6; i++) assert_true(e[i] == 0.5f); /* ties with the k-th all survive */
    gpt2_sampling p5 = {1.0f, 0, 0.5f, 1.0f, 0, 0};
    gpt2_process_logits(&p5, e, 6, NULL, 0);
    int kept = 0;
    for (int i = 0; i < 6; i++) kept += isfinite(e[i]);
    assert_int_equal(kept, 3); /* mass above must stay < 0.5: three of six */
    assert_true(isinf(e[0]) && isfinite(e[5])); /* equal values: the lower ids go first */
    /* repetition penalty counts an id once, however often it occurs */
    float r[3] = {2.0f, -2.0f, 1.0f};
    int32_t rp[5] = {0, 0, 1, 0, 1};
    gpt2_sampling pen = {1.0f, 0, 1.0f, 2.0f, 0, 0};
    gpt2_process_logits(&pen, r, 3, rp, 5);
    assert_true(r[0] == 1.0f && r[1] == -4.0f && r[2] == 1.0f);
    int32_t many[100];
    for (int i = 0; i < 100; i++) many[i] = i % 2; /* > 64: the allocated-scratch path */
    float r2[3] = {2.0f, -2.0f, 1.0f};
    gpt2_process_logits(&pen, r2, 3, many, 100);
    assert_true(r2[0] == 1.0f && r2[1] == -4.0f && r2[2] == 1.0f);
}

/* ---- greedy ------------------------------------------------------------------------------- */

static gpt2_context *ctx_on(const gpt2_model *m, int threads) {
    gpt2_context *c;
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){threads, 0}, &c), GPT2_OK);
    return c;
}
static gpt2_context *ctx(int threads) { return ctx_on(model, threads); }

/* the fixture model on one kernel path */
static gpt2_model *model_on(const char *path) {
    gpt2_model *m = load_on_path(FIXTURE_GGUF, path);
    assert_non_null(m);
    return m;
}

static void greedy_golden(const gpt2_model *model_) {
    jv g = json_file(DATA "golden/greedy.json");
    const jv *cases = jreq(&g, "cases");
    gpt2_context *c = ctx_on(model_, 2);
    for (size_t i = 0; i < cases->len; i++) {
        const jv *cs = &cases->items[i];
        size_t n_prompt, n_want;
        int32_t *prompt = jints(jreq(cs, "prompt_tokens"), &n_prompt);
        int32_t *want = jints(jreq(cs, "new_tokens"), &n_want);
        gpt2_generate_params p = gpt2_generate_default_params(model_);
        p.sampling.temperature = 0;
        p.max_new_tokens = (int32_t)jreq(cs, "max_new_tokens")->num;
        p.eos_id = (int32_t)jreq(cs, "eos_token_id")->num;
        p.sampling.repetition_penalty = (float)num_or(cs, "repetition_penalty", 1.0);
        int32_t out[64];
        size_t n_out;
        gpt2_generate_info info;
        memset(&info, 0, sizeof info);
        assert_int_equal(gpt2_generate_ex(c, prompt, n_prompt, &p, out, 64, &n_out, NULL, NULL, &info), GPT2_OK);
        assert_int_equal(n_out, n_want);
        assert_memory_equal(out, want, n_out * sizeof *out);
        bool eos = jreq(cs, "stopped_by_eos")->num != 0;
        assert_int_equal(info.stop, eos ? GPT2_STOP_EOS : GPT2_STOP_LENGTH);
        free(prompt);
        free(want);
    }
    fprintf(stderr, "  %zu greedy cases reproduced token for token\n", cases->len);
    gpt2_context_free(c);
    json_free(&g);
}

static void test_greedy_golden(void **state) {
    (void)state;
    FOR_EACH_KERNEL_PATH("greedy replay", path, {
        gpt2_model *m = model_on(path);
        greedy_golden(m);
        gpt2_free(m);
    });
}

/* ---- beam search -------------------------------------------------------------------------- */

static void beam_golden(const gpt2_model *model_) {
    jv b = json_file(DATA "golden/beam.json");
    const jv *cases = jreq(&b, "cases");
    gpt2_context *c = ctx_on(model_, 2);
    int runs = 0, all_runs = 0;
    double worst = 0;
    const size_t stride = test_stride("beam-search replay");
    for (size_t i = 0; i < cases->len; i++) {
        const jv *cs = &cases->items[i];
        size_t n_prompt;
        int32_t *prompt = jints(jreq(cs, "prompt_tokens"), &n_prompt);
        const jv *rl = jreq(cs, "runs");
        for (size_t r = 0; r < rl->len; r++) {
            const jv *run = &rl->items[r];
            if (all_runs++ % (int)stride) continue;
            gpt2_generate_params p = gpt2_generate_default_params(model_);
            p.max_new_tokens = (int32_t)jreq(cs, "max_new_tokens")->num;
            p.eos_id = (int32_t)jreq(cs, "eos_token_id")->num;
            p.sampling.repetition_penalty = (float)num_or(cs, "repetition_penalty", 1.0);
            p.num_beams = (int32_t)jreq(run, "num_beams")->num;
            p.length_penalty = (float)jreq(run, "length_penalty")->num;
            p.early_stopping = jreq(run, "early_stopping")->num != 0;
            p.num_return_sequences = (int32_t)jreq(run, "num_return_sequences")->num;
            int32_t out[256];
            double scores[8];
            size_t n_out;
            gpt2_generate_info info;
            memset(&info, 0, sizeof info);
            info.scores = scores;
            assert_int_equal(gpt2_generate_ex(c, prompt, n_prompt, &p, out, 256, &n_out, NULL, NULL, &info), GPT2_OK);
            const jv *hyps = jreq(run, "hypotheses");
            assert_int_equal(info.n_hypotheses, (int)hyps->len);
            size_t k = 0;
            for (size_t h = 0; h < hyps->len; h++) {
                size_t nt;
                int32_t *want = jints(jreq(&hyps->items[h], "tokens"), &nt);
                for (size_t j = 0; j < nt; j++, k++) {
                    if (k >= n_out || out[k] != want[j]) {
                        fprintf(stderr, "case %zu run %zu hypothesis %zu token %zu differs\n", i, r, h, j);
                        fail();
                    }
                }
                assert_int_equal(out[k++], -1);
                double d = fabs(scores[h] - jreq(&hyps->items[h], "score")->num);
                if (d > worst) worst = d;
                assert_true(d < 1e-4);
                free(want);
            }
            assert_int_equal(k, n_out);
            runs++;
        }
        free(prompt);
    }
    fprintf(stderr, "  %d of %d beam-search runs reproduced, scores within %.2g\n", runs, all_runs, worst);
    assert_int_equal(all_runs, 77);
    assert_int_equal(runs, (77 + (int)stride - 1) / (int)stride);
    gpt2_context_free(c);
    json_free(&b);
}

static void test_beam_golden(void **state) {
    (void)state;
    FOR_EACH_KERNEL_PATH("beam search replay", path, {
        gpt2_model *m = model_on(path);
        beam_golden(m);
        gpt2_free(m);
    });
}

/* 4 beams with 1 to 8 threads give the same hypotheses and the same scores, bit for bit */
static void test_beam_threads(void **state) {
    (void)state;
    int32_t prompt[3] = {464, 3290, 318};
    const size_t stride = test_stride("beam search thread counts");
    FOR_EACH_KERNEL_PATH("beam search, threads 1-8", path, {
        gpt2_model *m = model_on(path);
        int32_t ref[64];
        double ref_scores[3];
        size_t n_ref = 0;
        for (int threads = 1; threads <= 8; threads += (int)stride) {
            gpt2_context *c = ctx_on(m, threads);
            gpt2_generate_params p = gpt2_generate_default_params(m);
            p.num_beams = 4;
            p.num_return_sequences = 3;
            p.max_new_tokens = 12;
            int32_t out[64];
            double scores[3];
            size_t n;
            gpt2_generate_info info;
            memset(&info, 0, sizeof info);
            info.scores = scores;
            assert_int_equal(gpt2_generate_ex(c, prompt, 3, &p, out, 64, &n, NULL, NULL, &info), GPT2_OK);
            if (threads == 1) {
                memcpy(ref, out, n * sizeof *out);
                memcpy(ref_scores, scores, sizeof scores);
                n_ref = n;
            } else {
                assert_int_equal(n, n_ref);
                assert_memory_equal(out, ref, n * sizeof *out);
                assert_memory_equal(scores, ref_scores, sizeof scores);
            }
            gpt2_context_free(c);
        }
        gpt2_free(m);
    });
}

/* ---- sampling ----------------------------------------------------------------------------- */

static size_t sample_run(const gpt2_model *m, int threads, uint64_t seed, int32_t *out) {
    gpt2_context *c = ctx_on(m, threads);
    gpt2_generate_params p = gpt2_generate_default_params(m);
    p.sampling.temperature = 0.8f;
    p.sampling.top_k = 40;
    p.sampling.top_p = 0.95f;
    p.sampling.seed = seed;
    p.max_new_tokens = 24;
    int32_t prompt[2] = {15496, 995};
    size_t n;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 64, &n, NULL, NULL), GPT2_OK);
    gpt2_context_free(c);
    return n;
}

static void test_sampling_seeded(void **state) {
    (void)state;
    /* a regression vector: this seed gave these tokens when the sampler was written */
    static const int32_t expect[24] = {
#include "data/sampling_seed7.inc"
    };
    FOR_EACH_KERNEL_PATH("seeded sampling, threads 1-8", path, {
        gpt2_model *m = model_on(path);
        int32_t a[64], b[64], d[64];
        size_t na = sample_run(m, 1, 7, a), nd = sample_run(m, 2, 8, d);
        assert_int_equal(na, 24);
        for (int threads = 2; threads <= 8; threads += 3) { /* same seed, any thread count */
            size_t nb = sample_run(m, threads, 7, b);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, na * sizeof *a);
        }
        assert_true(nd != na || memcmp(a, d, na * sizeof *a) != 0); /* another seed, another text */
        if (memcmp(a, expect, sizeof expect) != 0) {
            for (size_t i = 0; i < na; i++) fprintf(stderr, "%d,%s", a[i], i + 1 == na ? "\n" : " ");
            fail();
        }
        gpt2_free(m);
    });
}

/* The draws follow softmax: a chi-square test over 200,000 seeded draws (deterministic, so
   it cannot flake; the bound is the 99.99% quantile for 7 degrees of freedom). */
static void test_sampling_distribution(void **state) {
    (void)state;
    float logits[8] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 2.5f, -INFINITY};
    double z = 0, p[8];
    for (int i = 0; i < 8; i++) z += exp(logits[i]);
    for (int i = 0; i < 8; i++) p[i] = exp(logits[i]) / z;
    rng r;
    rng_seed(&r, 12345);
    int counts[8] = {0};
    const int N = 200000;
    float probs[8];
    const kernel_table *kt = kernels_best();
    for (int i = 0; i < N; i++) counts[sample(kt, logits, 8, &r, probs)]++;
    assert_int_equal(counts[7], 0); /* a removed token is never drawn */
    double chi2 = 0;
    for (int i = 0; i < 7; i++) chi2 += (counts[i] - N * p[i]) * (counts[i] - N * p[i]) / (N * p[i]);
    fprintf(stderr, "  chi-square over 7 classes: %.2f (bound 27.9)\n", chi2);
    assert_true(chi2 < 27.88);
    /* uniform draws cover [0, 1) */
    double lo = 1, hi = 0;
    for (int i = 0; i < 10000; i++) {
        double u = rng_uniform(&r);
        assert_true(u >= 0 && u < 1);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    assert_true(lo < 0.001 && hi > 0.999);
}

/* ---- two contexts on one model, in two threads ------------------------------------------- */

typedef struct {
    int32_t prompt[3];
    int beams;
    int32_t out[64];
    size_t n;
    gpt2_status st;
} gen_job;

static void *gen_thread(void *arg) {
    gen_job *j = arg;
    gpt2_context *c;
    j->st = gpt2_context_new(model, &(gpt2_context_params){2, 0}, &c);
    if (j->st) return NULL;
    gpt2_generate_params p = gpt2_generate_default_params(model);
    p.sampling.temperature = 0;
    p.max_new_tokens = 16;
    p.num_beams = j->beams;
    j->st = gpt2_generate(c, j->prompt, 3, &p, j->out, 64, &j->n, NULL, NULL);
    gpt2_context_free(c);
    return NULL;
}

/* The model is shared read-only: two threads generating at once get what each gets alone. */
static void test_two_contexts_in_two_threads(void **state) {
    (void)state;
    gen_job alone[2] = {{{464, 3290, 318}, 1, {0}, 0, GPT2_OK}, {{15496, 995, 11}, 3, {0}, 0, GPT2_OK}};
    gen_job both[2];
    memcpy(both, alone, sizeof both);
    for (int i = 0; i < 2; i++) gen_thread(&alone[i]);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, gen_thread, &both[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(alone[i].st, GPT2_OK);
        assert_int_equal(both[i].st, GPT2_OK);
        assert_int_equal(both[i].n, alone[i].n);
        assert_memory_equal(both[i].out, alone[i].out, alone[i].n * sizeof(int32_t));
    }
}

/* ---- streaming text and stop strings --------------------------------------------------- */

typedef struct {
    char buf[4096];
    size_t len;
    int calls;
    int stop_after; /* answer nonzero on this call (0: never) */
} sink;

static int sink_text(void *user, const char *text, size_t len) {
    sink *k = user;
    assert_true(len > 0 && k->len + len < sizeof k->buf);
    memcpy(k->buf + k->len, text, len);
    k->len += len;
    k->calls++;
    return k->stop_after && k->calls >= k->stop_after;
}

/* bytes that end in the middle of a character, or that may begin a stop string, are held */
static void test_text_stream(void **state) {
    (void)state;
    gpt2_text_stream *ts;
    sink k;
    /* "한국" is 6 bytes; fed one byte at a time, it comes out as two whole characters */
    assert_int_equal(gpt2_text_stream_new(NULL, 0, &ts), GPT2_OK);
    memset(&k, 0, sizeof k);
    /* an empty push on a new stream (its buffer not yet allocated): nothing, and no UB
       (a fuzzer found memcpy from a null buffer here) */
    assert_int_equal(gpt2_text_stream_push(ts, "", 0, sink_text, &k), 0);
    assert_int_equal(gpt2_text_stream_flush(ts, sink_text, &k), 0);
    assert_int_equal(k.calls, 0);
    const char *ko = "\xed\x95\x9c\xea\xb5\xad";
    for (int i = 0; i < 6; i++) {
        assert_int_equal(gpt2_text_stream_push(ts, ko + i, 1, sink_text, &k), 0);
        assert_int_equal(k.len, (size_t)(i < 2 ? 0 : i < 5 ? 3 : 6));
    }
    assert_int_equal(k.calls, 2);
    /* an unfinished character at the end goes out as it is when flushed */
    assert_int_equal(gpt2_text_stream_push(ts, "a\xe2\x82", 3, sink_text, &k), 0);
    assert_int_equal(k.len, 7);
    assert_int_equal(gpt2_text_stream_flush(ts, sink_text, &k), 0);
    assert_int_equal(k.len, 9);
    assert_memory_equal(k.buf + 6, "a\xe2\x82", 3);
    gpt2_text_stream_free(ts);
    /* a stop string across pushes: the text before it, and nothing after */
    const char *stops[2] = {"END", "xyz"};
    assert_int_equal(gpt2_text_stream_new(stops, 2, &ts), GPT2_OK);
    memset(&k, 0, sizeof k);
    assert_int_equal(gpt2_text_stream_push(ts, "abcE", 4, sink_text, &k), 0);
    assert_int_equal(k.len, 3); /* "E" may begin "END" */
    assert_int_equal(gpt2_text_stream_push(ts, "N", 1, sink_text, &k), 0);
    assert_int_equal(k.len, 3);
    assert_int_equal(gpt2_text_stream_push(ts, "Dmore", 5, sink_text, &k), 1);
    assert_int_equal(k.len, 3);
    assert_memory_equal(k.buf, "abc", 3);
    assert_true(gpt2_text_stream_stopped(ts));
    assert_int_equal(gpt2_text_stream_push(ts, "zz", 2, sink_text, &k), 1);
    assert_int_equal(k.len, 3);
    /* a held prefix that does not complete goes out once it cannot any more */
    gpt2_text_stream_reset(ts);
    memset(&k, 0, sizeof k);
    assert_int_equal(gpt2_text_stream_push(ts, "xy", 2, sink_text, &k), 0);
    assert_int_equal(k.len, 0);
    assert_int_equal(gpt2_text_stream_push(ts, "!", 1, sink_text, &k), 0);
    assert_int_equal(k.len, 3);
    /* the earliest of two stop strings wins; one within a push too */
    assert_int_equal(gpt2_text_stream_push(ts, "..xyz..END", 10, sink_text, &k), 1);
    assert_memory_equal(k.buf, "xy!..", 5);
    assert_int_equal(k.len, 5);
    /* emit asking to stop */
    gpt2_text_stream_reset(ts);
    memset(&k, 0, sizeof k);
    k.stop_after = 1;
    assert_int_equal(gpt2_text_stream_push(ts, "hello", 5, sink_text, &k), -1);
    gpt2_text_stream_free(ts);
    /* bad arguments */
    const char *empty[1] = {""};
    assert_int_equal(gpt2_text_stream_new(empty, 1, &ts), GPT2_E_ARG);
    assert_null(ts);
    assert_int_equal(gpt2_text_stream_new(NULL, 1, &ts), GPT2_E_ARG);
    assert_int_equal(gpt2_text_stream_new(NULL, 0, NULL), GPT2_E_ARG);
    assert_int_equal(gpt2_text_stream_push(NULL, "a", 1, NULL, NULL), 1);
    gpt2_text_stream_free(NULL);
}

/* generate with stop strings: the text before the stop string reaches on_text, the ids run
   to the token that completed it, and the prompt is never searched */
static void test_generate_stop_strings(void **state) {
    (void)state;
    gpt2_context *c = ctx(2);
    int32_t prompt[2] = {15496, 995}, out[64], ref[64];
    size_t n, n_ref;
    gpt2_generate_params p = gpt2_generate_default_params(model);
    p.sampling.temperature = 0;
    p.max_new_tokens = 24;
    p.eos_id = -1;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, ref, 64, &n_ref, NULL, NULL), GPT2_OK);
    char text[2048];
    size_t tl;
    assert_int_equal(gpt2_detokenize(model, ref, n_ref, text, sizeof text, &tl), GPT2_OK);
    /* all of it through on_text */
    sink k;
    memset(&k, 0, sizeof k);
    p.on_text = sink_text;
    p.on_text_user = &k;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 64, &n, NULL, NULL), GPT2_OK);
    assert_int_equal(n, n_ref);
    assert_int_equal(k.len, tl);
    assert_memory_equal(k.buf, text, tl);
    /* a stop string made of the 2 bytes around the boundary of generated tokens 4 and 5 */
    size_t b = 0;
    for (int i = 0; i < 5; i++) {
        const char *tb;
        size_t bl;
        gpt2_token_bytes(model, ref[i], &tb, &bl);
        b += bl;
    }
    char stop[3] = {text[b - 1], text[b], 0};
    const char *stops[2] = {"never appears \x01", stop};
    char *first = NULL;
    for (size_t i = 0; i + 1 < tl && !first; i++)
        if (text[i] == stop[0] && text[i + 1] == stop[1]) first = text + i;
    memset(&k, 0, sizeof k);
    p.stop = stops;
    p.n_stop = 2;
    gpt2_generate_info info;
    memset(&info, 0, sizeof info);
    assert_int_equal(gpt2_generate_ex(c, prompt, 2, &p, out, 64, &n, NULL, NULL, &info), GPT2_OK);
    assert_int_equal(info.stop, GPT2_STOP_STRING);
    assert_int_equal(k.len, (size_t)(first - text));
    assert_memory_equal(k.buf, text, k.len);
    assert_memory_equal(out, ref, n * sizeof *out);
    size_t upto;
    assert_int_equal(gpt2_detokenize(model, out, n, NULL, 0, &upto), GPT2_E_BUFFER);
    assert_true(upto >= (size_t)(first - text) + 2 && upto - ((size_t)(first - text) + 2) < 64);
    /* a stop string only the prompt contains ("Hello") changes nothing */
    const char *in_prompt[1] = {"Hello"};
    p.stop = in_prompt;
    p.n_stop = 1;
    memset(&k, 0, sizeof k);
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 64, &n, NULL, NULL), GPT2_OK);
    if (!strstr(text, "Hello")) assert_int_equal(n, n_ref);
    /* on_text asking to stop */
    p.stop = NULL;
    p.n_stop = 0;
    memset(&k, 0, sizeof k);
    k.stop_after = 2;
    memset(&info, 0, sizeof info);
    assert_int_equal(gpt2_generate_ex(c, prompt, 2, &p, out, 64, &n, NULL, NULL, &info), GPT2_OK);
    assert_int_equal(info.stop, GPT2_STOP_CALLBACK);
    assert_int_equal(k.calls, 2);
    /* bad stop lists */
    const char *bad[1] = {""};
    p.stop = bad;
    p.n_stop = 1;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 64, &n, NULL, NULL), GPT2_E_ARG);
    p.stop = NULL;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 64, &n, NULL, NULL), GPT2_E_ARG);
    p.n_stop = -1;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 64, &n, NULL, NULL), GPT2_E_ARG);
    gpt2_context_free(c);
}

/* more beams than a context has rows for one forward pass (its n_ctx): they are run in
   several passes, with the hypotheses of a large context, bit for bit */
static void test_beams_beyond_rows(void **state) {
    (void)state;
    int32_t prompt[1] = {464};
    const int counts[4] = {3, 4, 5, 9}; /* below, at and past the 4 rows of a 4-position context */
    for (int bi = 0; bi < 4; bi++) {
        int beams = counts[bi];
        int32_t ref[64], out[64];
        double rs[9], sc[9];
        size_t n_ref, n;
        for (int small = 0; small < 2; small++) {
            gpt2_context *c;
            assert_int_equal(gpt2_context_new(model, &(gpt2_context_params){2, small ? 4 : 0}, &c), GPT2_OK);
            gpt2_generate_params p = gpt2_generate_default_params(model);
            p.num_beams = beams;
            p.num_return_sequences = beams;
            p.max_new_tokens = 3;
            gpt2_generate_info info;
            memset(&info, 0, sizeof info);
            info.scores = small ? sc : rs;
            assert_int_equal(gpt2_generate_ex(c, prompt, 1, &p, small ? out : ref, 64, small ? &n : &n_ref,
                                              NULL, NULL, &info), GPT2_OK);
            gpt2_context_free(c);
        }
        assert_int_equal(n, n_ref);
        assert_memory_equal(out, ref, n * sizeof *out);
        assert_memory_equal(sc, rs, (size_t)beams * sizeof *sc);
    }
}

/* beam search shows every step: B beams best first, each extending a beam of the step
   before, and the same result as without the observer */
typedef struct {
    int32_t prev[8][64];
    int steps, bad, done_seen, n_beams;
    double best_finished;
} beam_watch;

static void watch_beams(void *user, const gpt2_beam_step *st) {
    beam_watch *w = user;
    if (st->step != w->steps + 1 || st->n_beams != w->n_beams || w->done_seen) w->bad++;
    for (int b = 0; b < st->n_beams; b++) {
        if (b > 0 && st->scores[b] > st->scores[b - 1]) w->bad++;
        if (st->step > 1 && memcmp(st->tokens[b], w->prev[st->parent[b]], (size_t)(st->step - 1) * sizeof(int32_t)))
            w->bad++;
    }
    for (int f = 0; f < st->n_finished; f++)
        if (st->finished_score[f] > w->best_finished) w->best_finished = st->finished_score[f];
    for (int b = 0; b < st->n_beams; b++) memcpy(w->prev[b], st->tokens[b], (size_t)st->step * sizeof(int32_t));
    w->steps = st->step;
    w->done_seen = st->done;
}

static void test_beam_steps_observed(void **state) {
    (void)state;
    gpt2_context *c = ctx(2);
    int32_t prompt[3] = {464, 3290, 318}, a[64], b[64];
    size_t na, nb;
    gpt2_generate_params p = gpt2_generate_default_params(model);
    p.num_beams = 4;
    p.max_new_tokens = 10;
    p.eos_id = 13; /* "." ends hypotheses now and then on this model */
    double sa[1], sb[1];
    gpt2_generate_info info;
    memset(&info, 0, sizeof info);
    info.scores = sa;
    assert_int_equal(gpt2_generate_ex(c, prompt, 3, &p, a, 64, &na, NULL, NULL, &info), GPT2_OK);
    beam_watch w;
    memset(&w, 0, sizeof w);
    w.n_beams = 4;
    w.best_finished = -1e300;
    p.on_beam_step = watch_beams;
    p.on_beam_user = &w;
    memset(&info, 0, sizeof info);
    info.scores = sb;
    assert_int_equal(gpt2_generate_ex(c, prompt, 3, &p, b, 64, &nb, NULL, NULL, &info), GPT2_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    assert_true(sa[0] == sb[0]);
    assert_int_equal(w.bad, 0);
    assert_true(w.done_seen);
    assert_int_equal(w.steps, info.n_generated);
    gpt2_context_free(c);
}

/* ---- generate: arguments, callback, stop conditions --------------------------------------- */

static int stop_after_3(void *user, int32_t id, const char *bytes, size_t len) {
    int *n = user;
    assert_true(id >= 0 && bytes && len > 0);
    return ++*n == 3;
}

static void test_generate_arguments_and_stops(void **state) {
    (void)state;
    gpt2_context *c = ctx(2);
    int32_t prompt[2] = {15496, 995}, out[300];
    size_t n;
    gpt2_generate_params p = gpt2_generate_default_params(model);
    p.sampling.temperature = 0;
    p.max_new_tokens = 10;
    int calls = 0;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 300, &n, stop_after_3, &calls), GPT2_OK);
    assert_int_equal(calls, 3);
    assert_int_equal(n, 3);
    /* out too small: the tokens that fit, then GPT2_E_BUFFER */
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 4, &n, NULL, NULL), GPT2_E_BUFFER);
    assert_int_equal(n, 4);
    /* the context end: 128 positions, a 120-token prompt leaves room for 9 new tokens */
    int32_t longp[128];
    for (int i = 0; i < 128; i++) longp[i] = (i * 7919) % 50000;
    p.max_new_tokens = 50;
    p.eos_id = -1;
    gpt2_generate_info info;
    memset(&info, 0, sizeof info);
    assert_int_equal(gpt2_generate_ex(c, longp, 120, &p, out, 300, &n, NULL, NULL, &info), GPT2_E_CONTEXT_FULL);
    assert_int_equal(n, 9);
    assert_int_equal(info.stop, GPT2_STOP_CONTEXT);
    assert_int_equal(gpt2_generate(c, longp, 129 > 128 ? 128 : 0, &p, out, 300, &n, NULL, NULL), GPT2_E_CONTEXT_FULL);
    /* bad arguments */
    gpt2_generate_params bad = p;
    bad.sampling.temperature = -1;
    assert_int_equal(gpt2_generate(c, prompt, 2, &bad, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    bad = p;
    bad.sampling.top_p = 1.5f;
    assert_int_equal(gpt2_generate(c, prompt, 2, &bad, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    bad = p;
    bad.num_beams = 2;
    bad.num_return_sequences = 3; /* more hypotheses than beams */
    assert_int_equal(gpt2_generate(c, prompt, 2, &bad, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    bad = p;
    bad.num_beams = 0;
    assert_int_equal(gpt2_generate(c, prompt, 2, &bad, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    bad = p;
    bad.eos_id = 50257;
    assert_int_equal(gpt2_generate(c, prompt, 2, &bad, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    assert_int_equal(gpt2_generate(c, prompt, 0, &p, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    int32_t badp[1] = {50257};
    assert_int_equal(gpt2_generate(c, badp, 1, &p, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    assert_int_equal(gpt2_generate(c, prompt, 2, NULL, out, 300, &n, NULL, NULL), GPT2_E_ARG);
    /* max_new_tokens 0: nothing */
    p.max_new_tokens = 0;
    assert_int_equal(gpt2_generate(c, prompt, 2, &p, out, 300, &n, NULL, NULL), GPT2_OK);
    assert_int_equal(n, 0);
    gpt2_context_free(c);
}

static int suite_decode(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_processors_golden),
        cmocka_unit_test(test_process_logits_public),
        cmocka_unit_test(test_greedy_golden),
        cmocka_unit_test(test_beam_golden),
        cmocka_unit_test(test_beam_threads),
        cmocka_unit_test(test_sampling_seeded),
        cmocka_unit_test(test_sampling_distribution),
        cmocka_unit_test(test_two_contexts_in_two_threads),
        cmocka_unit_test(test_generate_arguments_and_stops),
        cmocka_unit_test(test_text_stream),
        cmocka_unit_test(test_generate_stop_strings),
        cmocka_unit_test(test_beams_beyond_rows),
        cmocka_unit_test(test_beam_steps_observed),
    };
    return cmocka_run_group_tests_name("decode", tests, setup, teardown);
}
