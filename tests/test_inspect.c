/* test_inspect.c — the Inspection API against the reference values of an independent
 * float64 GPT-2 with Hugging Face's output_hidden_states / output_attentions semantics
 * (tests/data/inspect, from ../shared/golden/model/inspect), on every kernel path: in one
 * call, token by token, and in chunks. Also the logit lens and the tokenizer trace.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "gpt2.h"

static jv index_json;

static int setup(void **state) {
    (void)state;
    index_json = json_file(DATA "inspect/index.json");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    json_free(&index_json);
    return 0;
}

/* Everything the observer saw during one prompt, assembled over however many calls. */
typedef struct {
    int T, C, NH, L, V;
    float *tok, *pos, *emb;   // (T, C)
    float *block;             // (L, T, C)
    float *fin;               // (T, C)
    float *attn;              // (L, NH, T, T)
    float *logits;            // (T, V)
    int seen_tok, seen_pos, seen_emb, seen_fin, seen_logits, seen_block, seen_attn;
    int order_bad;            /* a stage out of data order within a call */
    int last_stage, last_layer;
} capture;

static void on_stage(void *user, const gpt2_activation *a) {
    capture *k = user;
    const int C = k->C, T = k->T;
    /* data order within a call: token, position, sum, then per block attention and output,
       then the final norm and the logits */
    int rank = a->stage == GPT2_STAGE_ATTENTION || a->stage == GPT2_STAGE_BLOCK_OUTPUT
                   ? 10 + 2 * a->layer + (a->stage == GPT2_STAGE_BLOCK_OUTPUT)
                   : a->stage == GPT2_STAGE_FINAL_NORM ? 1000 : a->stage == GPT2_STAGE_LOGITS ? 1001
                   : (int)a->stage;
    if (a->stage == GPT2_STAGE_TOKEN_EMBEDDING) k->last_stage = -1;
    if (rank <= k->last_stage) k->order_bad++;
    k->last_stage = rank;
    int t0 = a->pos0;
    if (a->stage == GPT2_STAGE_ATTENTION) {
        int nh = a->dims[0], rows = a->dims[1], n = a->dims[2];
        if (nh != k->NH || n != t0 + rows || a->n_dims != 3) { k->order_bad += 100; return; }
        for (int h = 0; h < nh; h++)
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < n; j++)
                    k->attn[(((size_t)a->layer * nh + h) * T + (t0 + r)) * T + j] =
                        a->data[((size_t)h * rows + r) * n + j];
        k->seen_attn += rows;
        return;
    }
    int rows = a->dims[0], width = a->dims[1];
    float *dst = NULL;
    switch (a->stage) {
    case GPT2_STAGE_TOKEN_EMBEDDING: dst = k->tok; k->seen_tok += rows; break;
    case GPT2_STAGE_POSITION_EMBEDDING: dst = k->pos; k->seen_pos += rows; break;
    case GPT2_STAGE_EMBEDDING: dst = k->emb; k->seen_emb += rows; break;
    case GPT2_STAGE_BLOCK_OUTPUT: dst = k->block + (size_t)a->layer * T * C; k->seen_block += rows; break;
    case GPT2_STAGE_FINAL_NORM: dst = k->fin; k->seen_fin += rows; break;
    case GPT2_STAGE_LOGITS: dst = k->logits; k->seen_logits += rows; break;
    default: k->order_bad += 1000; return;
    }
    if (a->n_dims != 2 || width != (a->stage == GPT2_STAGE_LOGITS ? k->V : C)) { k->order_bad += 100; return; }
    memcpy(dst + (size_t)t0 * width, a->data, (size_t)rows * width * sizeof(float));
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* runs one prompt in chunks of `chunk` tokens (with logits or not) and checks every stage */
static void check_prompt(gpt2_model *m, const char *name, size_t chunk, bool logits, double *worst) {
    const jv *p = jreq(jreq(&index_json, "prompts"), name);
    size_t T;
    int32_t *ids = jints(jreq(p, "tokens"), &T);
    gpt2_config cf = gpt2_get_config(m);
    capture k;
    memset(&k, 0, sizeof k);
    k.T = (int)T, k.C = cf.n_embd, k.NH = cf.n_head, k.L = cf.n_layer, k.V = cf.n_vocab;
    const size_t TC = T * (size_t)k.C;
    k.tok = calloc(TC, sizeof(float)); k.pos = calloc(TC, sizeof(float)); k.emb = calloc(TC, sizeof(float));
    k.fin = calloc(TC, sizeof(float)); k.block = calloc((size_t)k.L * TC, sizeof(float));
    k.attn = calloc((size_t)k.L * k.NH * T * T, sizeof(float));
    k.logits = calloc(T * (size_t)k.V, sizeof(float));
    float *direct = malloc(T * (size_t)k.V * sizeof(float));
    gpt2_context *c;
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){2, 0}, &c), GPT2_OK);
    assert_int_equal(gpt2_context_set_observer(c, on_stage, &k), GPT2_OK);
    for (size_t i = 0; i < T; i += chunk) {
        size_t n = T - i < chunk ? T - i : chunk;
        assert_int_equal(gpt2_eval(c, ids + i, n, logits ? direct + i * (size_t)k.V : NULL), GPT2_OK);
    }
    assert_int_equal(k.order_bad, 0);
    assert_int_equal(k.seen_tok, (int)T);
    assert_int_equal(k.seen_pos, (int)T);
    assert_int_equal(k.seen_emb, (int)T);
    assert_int_equal(k.seen_block, (int)T * k.L);
    assert_int_equal(k.seen_attn, (int)T * k.L);
    assert_int_equal(k.seen_fin, (int)T);
    assert_int_equal(k.seen_logits, logits ? (int)T : 0);
    /* the reference: tok (T,C), pos (T,C), hidden (L+1,T,C), attn (L,NH,T,T) */
    char path[256];
    snprintf(path, sizeof path, DATA "inspect/%s", jreq(p, "file")->str);
    size_t bytes;
    float *ref = (float *)(void *)read_all(path, &bytes);
    assert_int_equal(bytes, (4 * TC + (size_t)(k.L - 1) * TC + (size_t)k.L * k.NH * T * T) * sizeof(float));
    const float *r_tok = ref, *r_pos = ref + TC, *r_hid = ref + 2 * TC;
    const float *r_attn = r_hid + (size_t)(k.L + 1) * TC;
    double d_emb = fmax(max_diff(k.tok, r_tok, TC), max_diff(k.pos, r_pos, TC));
    d_emb = fmax(d_emb, max_diff(k.emb, r_hid, TC));
    double d_hid = 0;
    for (int l = 1; l < k.L; l++) d_hid = fmax(d_hid, max_diff(k.block + (size_t)(l - 1) * TC, r_hid + (size_t)l * TC, TC));
    d_hid = fmax(d_hid, max_diff(k.fin, r_hid + (size_t)k.L * TC, TC));
    double d_attn = max_diff(k.attn, r_attn, (size_t)k.L * k.NH * T * T);
    if (!(d_emb < 1e-6 && d_hid < 1e-4 && d_attn < 1e-5)) {
        fprintf(stderr, "%s chunk %zu: embeddings %.3g, hidden %.3g, attention %.3g\n", name, chunk,
                d_emb, d_hid, d_attn);
        fail();
    }
    worst[0] = fmax(worst[0], d_emb);
    worst[1] = fmax(worst[1], d_hid);
    worst[2] = fmax(worst[2], d_attn);
    /* the logits the observer saw are the ones returned */
    if (logits) assert_memory_equal(k.logits, direct, T * (size_t)k.V * sizeof(float));
    /* the logit lens: lm_head(ln_f(output of block l)) for l = 1..L, top 5 per position */
    float *lens = malloc(T * (size_t)k.V * sizeof(float));
    const jv *ll = jreq(p, "logit_lens");
    for (size_t li = 0; li < ll->len; li++) {
        int layer = (int)jreq(&ll->items[li], "layer")->num;
        assert_int_equal(gpt2_logit_lens(c, k.block + (size_t)(layer - 1) * TC, T, lens), GPT2_OK);
        const jv *ids5 = jreq(&ll->items[li], "top5_ids"), *lg5 = jreq(&ll->items[li], "top5_logits");
        for (size_t t = 0; t < T; t++) {
            const float *row = lens + t * (size_t)k.V;
            for (size_t j = 0; j < 5; j++) {
                double want = lg5->items[t].items[j].num;
                int32_t id = (int32_t)ids5->items[t].items[j].num;
                worst[3] = fmax(worst[3], fabs(row[id] - want));
                assert_true(fabs(row[id] - want) < 1e-4);
            }
            /* and nothing else scores above the reference's fifth (bar rounding) */
            double fifth = lg5->items[t].items[4].num;
            int above = 0;
            for (int32_t v = 0; v < k.V; v++) above += row[v] > fifth + 1e-4;
            assert_true(above <= 4);
        }
    }
    free(lens);
    free(ref);
    free(ids);
    free(direct);
    free(k.tok); free(k.pos); free(k.emb); free(k.fin); free(k.block); free(k.attn); free(k.logits);
    gpt2_context_free(c);
}

static void test_observer_against_reference(void **state) {
    (void)state;
    const char *prompts[] = {"p0", "p1", "p2", "p3", "p5"};
    const size_t stride = test_stride("inspection prompts");
    FOR_EACH_KERNEL_PATH("inspection against the reference", path, {
        gpt2_model *m = load_on_path(FIXTURE_GGUF, path);
        assert_non_null(m);
        double worst[4] = {0, 0, 0, 0};
        for (size_t i = 0; i < 5; i += stride) {
            check_prompt(m, prompts[i], 1000, true, worst); /* one call */
            check_prompt(m, prompts[i], 1, true, worst);    /* token by token */
            check_prompt(m, prompts[i], 3, false, worst);   /* chunks, no logits asked */
        }
        fprintf(stderr, "  %s: embeddings %.2g, hidden states %.2g, attention %.2g, logit lens %.2g\n",
                gpt2_get_model_info(m).kernels, worst[0], worst[1], worst[2], worst[3]);
        gpt2_free(m);
    });
}

static void counting(void *user, const gpt2_activation *a) {
    (void)a;
    ++*(int *)user;
}

/* an observer changes no bit of the logits; removed, it is not called */
static void test_observer_off(void **state) {
    (void)state;
    gpt2_model *m = load_or_report(FIXTURE_GGUF);
    assert_non_null(m);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 7919) % 50257;
    float *a = malloc(40 * 50257 * sizeof(float)), *b = malloc(40 * 50257 * sizeof(float));
    gpt2_context *c;
    assert_int_equal(gpt2_context_new(m, NULL, &c), GPT2_OK);
    assert_int_equal(gpt2_eval(c, ids, 40, a), GPT2_OK);
    int calls = 0;
    gpt2_context_reset(c);
    assert_int_equal(gpt2_context_set_observer(c, counting, &calls), GPT2_OK);
    assert_int_equal(gpt2_eval(c, ids, 40, b), GPT2_OK);
    assert_memory_equal(a, b, 40 * 50257 * sizeof(float));
    assert_int_equal(calls, 3 + 2 * 2 + 2); /* 3 embeddings, 2 per block, norm and logits */
    assert_int_equal(gpt2_context_set_observer(c, NULL, NULL), GPT2_OK);
    gpt2_context_reset(c);
    calls = 0;
    assert_int_equal(gpt2_eval(c, ids, 40, b), GPT2_OK);
    assert_int_equal(calls, 0);
    assert_memory_equal(a, b, 40 * 50257 * sizeof(float));
    /* generation does not report */
    assert_int_equal(gpt2_context_set_observer(c, counting, &calls), GPT2_OK);
    gpt2_generate_params p = gpt2_generate_default_params(m);
    p.sampling.temperature = 0;
    p.max_new_tokens = 4;
    int32_t out[4];
    size_t n;
    assert_int_equal(gpt2_generate(c, ids, 3, &p, out, 4, &n, NULL, NULL), GPT2_OK);
    assert_int_equal(calls, 0);
    assert_int_equal(gpt2_context_set_observer(NULL, counting, &calls), GPT2_E_ARG);
    assert_int_equal(gpt2_logit_lens(NULL, a, 1, b), GPT2_E_ARG);
    free(a);
    free(b);
    gpt2_context_free(c);
    gpt2_free(m);
}

/* ---- the tokenizer's steps ------------------------------------------------------------- */

typedef struct {
    int32_t ids[4096];
    size_t n;
    size_t piece_start, piece_len;
    int32_t last_rank, steps, pieces;
    int bad;
    int32_t final[64];   /* the current piece's last step */
    size_t n_final;
    size_t covered;      /* bytes of text covered by finished pieces, in order */
    char log[4096];      /* "step: ids" of the first piece, for the merges of "hello" */
    size_t log_len;
} trace_rec;

static void flush_piece(trace_rec *r) {
    if (r->n_final == 0) return;
    for (size_t i = 0; i < r->n_final; i++) r->ids[r->n++] = r->final[i];
    r->covered += r->piece_len;
    r->n_final = 0;
}

static void on_bpe(void *user, const gpt2_bpe_event *e) {
    trace_rec *r = user;
    if (e->step == 0) { /* a new piece: it starts where the last one ended */
        flush_piece(r);
        if (e->piece_start != r->covered) r->bad++;
        if (e->rank != -1) r->bad++;
        if (!e->special && e->n_ids != e->piece_len) r->bad++; /* one token per byte at first */
        r->pieces++;
        r->last_rank = -1;
    } else {
        if (e->rank < r->last_rank) r->bad++; /* merges come lowest rank first */
        r->last_rank = e->rank;
        if (e->n_ids + 1 != r->n_final) r->bad++; /* each merge joins two tokens into one */
    }
    r->piece_start = e->piece_start;
    r->piece_len = e->piece_len;
    r->steps++;
    if (e->n_ids > 64) { r->bad++; return; }
    memcpy(r->final, e->ids, e->n_ids * sizeof *e->ids);
    r->n_final = e->n_ids;
    if (r->pieces == 1 && r->log_len < sizeof r->log - 64) {
        r->log_len += (size_t)snprintf(r->log + r->log_len, sizeof r->log - r->log_len, "%d:", e->step);
        for (size_t i = 0; i < e->n_ids; i++)
            r->log_len += (size_t)snprintf(r->log + r->log_len, sizeof r->log - r->log_len, " %d", e->ids[i]);
        r->log_len += (size_t)snprintf(r->log + r->log_len, sizeof r->log - r->log_len, "\n");
    }
}

static void test_tokenize_trace(void **state) {
    (void)state;
    gpt2_model *m = load_or_report(FIXTURE_GGUF);
    assert_non_null(m);
    const char *texts[] = {"hello", "Hello world, it's 2024!", "  spaces\n\n and\ttabs ",
                           "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xeb\xac\xb8\xec\x9e\xa5", /* Korean */
                           "a<|endoftext|>b", "\xff\xfe broken \xc3"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        for (int special = 0; special < 2; special++) {
            trace_rec *r = calloc(1, sizeof *r);
            size_t len = strlen(texts[i]);
            assert_int_equal(gpt2_tokenize_trace(m, texts[i], len, special, on_bpe, r), GPT2_OK);
            flush_piece(r);
            assert_int_equal(r->bad, 0);
            assert_int_equal(r->covered, len); /* the pieces tile the text */
            int32_t ids[256];
            size_t n;
            assert_int_equal(gpt2_tokenize(m, texts[i], len, special, ids, 256, &n), GPT2_OK);
            assert_int_equal(r->n, n); /* the last steps are the tokens */
            assert_memory_equal(r->ids, ids, n * sizeof *ids);
            if (i == 0) /* "hello": h e l l o -> he l l o -> he ll o -> hell o -> hello */
                assert_string_equal(r->log, "0: 71 68 75 75 78\n1: 258 75 75 78\n2: 258 297 78\n3: 12758 78\n4: 31373\n");
            free(r);
        }
    }
    assert_int_equal(gpt2_tokenize_trace(m, "x", 1, 0, NULL, NULL), GPT2_E_ARG);
    gpt2_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_observer_against_reference),
        cmocka_unit_test(test_observer_off),
        cmocka_unit_test(test_tokenize_trace),
    };
    return cmocka_run_group_tests_name("inspect", tests, setup, teardown);
}
