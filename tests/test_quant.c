/* test_quant.c — ggml's quantized formats (q4_0 ... q6_K): dequantization bit for bit
 * ggml's, the logits of two files quantized by ggml itself (every block type; a Q4_K_M-like
 * mix) against a float64 reference, the tiles on every kernel path, the recipes of gpt2
 * quantize, and hostile files of the new types.
 *
 * tests/data/quant holds copies of ../shared/golden/quant (see its README.md).
 * White-box: the engine is included.
 */
/* (built inside tests/test_internals.c, after the engine) */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "gguf_builder.h"

static const char *const files[2] = {"public-mix", "public-q4km"};

typedef struct { int threads; size_t chunk; } split_run;

/* llama.cpp's file type of one of gpt2 quantize's names */
static int recipe_ftype(const char *name) {
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; i++)
        if (!strcmp(recipes[i].name, name)) return recipes[i].ftype;
    return -1;
}

static gpt2_model *load_quant(const char *name, const char *path_name) {
    char path[256];
    snprintf(path, sizeof path, DATA "quant/%s.gguf", name);
    gpt2_model *m = load_on_path(path, path_name);
    assert_non_null(m);
    return m;
}

/* every sampled row of every quantized tensor, as ggml's to_float gives it */
static void test_dequant_bit_exact(void **state) {
    (void)state;
    int checked[32] = {0};
    for (int f = 0; f < 2; f++) {
        char path[256];
        snprintf(path, sizeof path, DATA "quant/%s-dequant.json", files[f]);
        jv idx = json_file(path);
        snprintf(path, sizeof path, DATA "quant/%s-dequant.bin", files[f]);
        float *ref = (float *)(void *)read_all(path, NULL);
        gpt2_model *m = load_quant(files[f], NULL);
        const jv *ts = jreq(&idx, "tensors");
        for (size_t i = 0; i < ts->len; i++) {
            const gguf_tensor *t = gguf_find_tensor(&m->gguf, ts->keys[i]);
            assert_non_null(t);
            const jv *info = &ts->items[i];
            assert_string_equal(gpt2_type_name((gpt2_type)t->type), jreq(info, "type")->str);
            int64_t cols = (int64_t)jreq(info, "cols")->num;
            matrix w = {t->data, (gpt2_type)t->type, (int64_t)t->ne[1], cols, (size_t)(t->nbytes / t->ne[1])};
            const jv *rows = jreq(info, "sampled_rows");
            const float *want = ref + (size_t)jreq(info, "offset_floats")->num;
            float *got = malloc((size_t)cols * sizeof *got);
            for (size_t r = 0; r < rows->len; r++) {
                dequantize_row(&w, (int64_t)rows->items[r].num, got);
                if (memcmp(got, want + r * (size_t)cols, (size_t)cols * sizeof *got) != 0) {
                    fprintf(stderr, "%s %s row %d differs from ggml's\n", files[f], ts->keys[i],
                            (int)rows->items[r].num);
                    fail();
                }
                checked[t->type]++;
            }
            free(got);
        }
        gpt2_free(m);
        free(ref);
        json_free(&idx);
    }
    const gpt2_type types[] = {GPT2_TYPE_Q4_0, GPT2_TYPE_Q4_1, GPT2_TYPE_Q5_0, GPT2_TYPE_Q5_1, GPT2_TYPE_Q8_0,
                               GPT2_TYPE_Q2_K, GPT2_TYPE_Q3_K, GPT2_TYPE_Q4_K, GPT2_TYPE_Q5_K, GPT2_TYPE_Q6_K,
                               GPT2_TYPE_F16};
    fprintf(stderr, "  rows identical to ggml's:");
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        fprintf(stderr, " %s %d", gpt2_type_name(types[i]), checked[types[i]]);
        assert_true(checked[types[i]] > 0); /* every type was seen */
    }
    fprintf(stderr, "\n");
}

/* the logits rows at the reference's positions for prompt p of a file */
static float *file_logits(gpt2_model *m, const jv *p, int threads, size_t chunk, size_t *n_tok) {
    size_t T;
    int32_t *ids = jints(jreq(p, "tokens"), &T);
    const size_t n_vocab = 50257;
    float *lg = malloc(T * n_vocab * sizeof *lg);
    gpt2_context *c;
    assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){threads, 0}, &c), GPT2_OK);
    for (size_t k = 0; k < T; k += chunk)
        assert_int_equal(gpt2_eval(c, ids + k, T - k < chunk ? T - k : chunk, lg + k * n_vocab), GPT2_OK);
    gpt2_context_free(c);
    free(ids);
    *n_tok = T;
    return lg;
}

/* Within 0.5 (max) and 0.05 (mean) of the float64 reference over ggml's dequantized weights,
   on every path; and the same bits for any thread count and chunking. (Activations are
   quantized to int8 as llama.cpp does, so the logits land near the reference, not on it.) */
static void test_golden_files_logits(void **state) {
    (void)state;
    FOR_EACH_KERNEL_PATH("quantized files against the reference", path, {
        for (int f = 0; f < 2; f++) {
            char jpath[256];
            snprintf(jpath, sizeof jpath, DATA "quant/%s-ref.json", files[f]);
            jv ref = json_file(jpath);
            snprintf(jpath, sizeof jpath, DATA "quant/%s-ref.bin", files[f]);
            float *rows = (float *)(void *)read_all(jpath, NULL);
            gpt2_model *m = load_quant(files[f], path);
            const jv *prompts = jreq(&ref, "prompts");
            double worst = 0, sum = 0;
            size_t count = 0;
            /* the accuracy over every prompt (the bounds are on all of them); under
               GPT2_TEST_STRIDE the bit-identity reruns on every stride-th prompt */
            const size_t stride = test_stride("quantized files' bit identity (prompts)");
            for (size_t i = 0; i < prompts->len; i++) {
                const jv *p = &prompts->items[i];
                size_t T;
                float *lg = file_logits(m, p, 2, 1000, &T);
                const jv *pos = jreq(p, "positions");
                size_t row0 = (size_t)jreq(p, "row0")->num;
                for (size_t k = 0; k < pos->len; k++) {
                    const float *want = rows + (row0 + k) * 50257;
                    const float *got = lg + (size_t)pos->items[k].num * 50257;
                    for (size_t v = 0; v < 50257; v++) {
                        double d = fabs((double)got[v] - want[v]);
                        worst = d > worst ? d : worst;
                        sum += d;
                        count++;
                    }
                }
                /* bit identity: 1 thread token by token, 3 threads in chunks of 4 (the
                   thread counts 1-8 are test_forward's) */
                const split_run runs[2] = {{1, 1}, {3, 4}};
                for (int r = 0; r < 2 && i % stride == 0; r++) {
                    size_t T2;
                    float *lg2 = file_logits(m, p, runs[r].threads, runs[r].chunk, &T2);
                    assert_memory_equal(lg2, lg, T * 50257 * sizeof *lg);
                    free(lg2);
                }
                free(lg);
            }
            fprintf(stderr, "  %s on %s: max |logit - reference| %.3g, mean %.3g\n", files[f],
                    m->kt->name, worst, sum / (double)count);
            /* llama.cpp's released build on the same files, measured: 0.31 / 0.037 (mix) and
               0.5016 / 0.043 (q4km). With one int8 row per token everywhere, as llama.cpp,
               gpt2c measured 0.25 / 0.032 and 0.503 / 0.041; q, k and v's input taken as two
               rows for K-format weights (forward(), "two_pass") brings them to about
               0.23 / 0.031 and 0.19 / 0.027 */
            assert_true(worst < 0.5);
            assert_true(sum / (double)count < 0.05);
            gpt2_free(m);
            free(rows);
            json_free(&ref);
        }
    });
}

/* every tile shape of every quantized format gives the single-call bits, and every path
   agrees with the scalar reference (the K formats: bit for bit) */
static void test_quant_tiles(void **state) {
    (void)state;
    const gpt2_type types[] = {GPT2_TYPE_Q4_0, GPT2_TYPE_Q4_1, GPT2_TYPE_Q5_0, GPT2_TYPE_Q5_1,
                               GPT2_TYPE_Q2_K, GPT2_TYPE_Q3_K, GPT2_TYPE_Q4_K, GPT2_TYPE_Q5_K, GPT2_TYPE_Q6_K};
    const char *paths[N_ALL_KERNEL_PATHS];
    int n_paths = kernel_paths_here(paths);
    uint64_t seed = 77;
    int compared = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        for (int64_t n = 256; n <= 1024; n += 768) {
            size_t row_bytes;
            assert_int_equal(kq_row_bytes((int)types[ti], n, &row_bytes), 0);
            uint8_t *w = malloc(4 * row_bytes);
            float *v = malloc((size_t)n * sizeof *v);
            for (int r = 0; r < 4; r++) {
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed) * (float)(1 + (i % 7));
                assert_int_equal(kq_quantize_row((int)types[ti], v, n, w + (size_t)r * row_bytes), 0);
            }
            size_t ldq = kq_is_k((int)types[ti]) ? (size_t)(n / 256) * sizeof(q8k_record)
                                                  : (size_t)q8_groups(n) * sizeof(q8_group);
            uint8_t *xq = alloc64(4 * ldq);
            for (int t = 0; t < 4; t++) {
                for (int64_t i = 0; i < n; i++) v[i] = gb_randf(&seed) * 3.0f - (float)t * 0.1f;
                assert_int_equal(kq_quantize_act((int)types[ti], v, n, xq + (size_t)t * ldq), 0);
            }
            float ref[4][4];
            kq_dot_fn scalar = kq_dot_for((int)types[ti], KQ_ISA_SCALAR);
            for (int t = 0; t < 4; t++)
                for (int r = 0; r < 4; r++)
                    scalar(w + (size_t)r * row_bytes, row_bytes, 1, xq + (size_t)t * ldq, ldq, 1, n, &ref[t][r], 1);
            for (int p = 0; p < n_paths; p++) {
                const kernel_table *kt;
                assert_int_equal(kernels_by_name(paths[p], &kt), GPT2_OK);
                kq_dot_fn dot = kq_dot_for((int)types[ti], kt->kq_isa);
                float one[4][4];
                for (int t = 0; t < 4; t++)
                    for (int r = 0; r < 4; r++)
                        dot(w + (size_t)r * row_bytes, row_bytes, 1, xq + (size_t)t * ldq, ldq, 1, n, &one[t][r], 1);
                for (int nr = 1; nr <= 4; nr++)
                    for (int nt = 1; nt <= 4; nt++) {
                        float got[4][5];
                        memset(got, 0x7f, sizeof got);
                        dot(w, row_bytes, nr, xq, ldq, nt, n, &got[0][0], 5);
                        for (int t = 0; t < nt; t++)
                            for (int r = 0; r < nr; r++) {
                                assert_memory_equal(&got[t][r], &one[t][r], sizeof(float));
                                if (kq_is_k((int)types[ti])) /* the K formats: the scalar's bits */
                                    assert_memory_equal(&got[t][r], &ref[t][r], sizeof(float));
                                assert_true(fabsf(got[t][r] - ref[t][r]) <= 1e-5f * (1.0f + fabsf(ref[t][r])) * 8);
                            }
                        compared++;
                    }
            }
            free(w);
            free(v);
            free(xq);
        }
    }
    fprintf(stderr, "  %d quantized tiles compared\n", compared);
    report_paths("quantized tiles against the scalar reference", paths, n_paths);
}

/* gpt2 quantize's recipes: every tensor gets llama.cpp's type for it, the file loads and
   runs, and the K mixes are mixes */
static void test_recipes(void **state) {
    (void)state;
    const char *names[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "f16", "bf16"};
    /* a small f32 model 256 wide (the fixture is 64 wide, where the K formats fall back as
       llama.cpp does; at 256 they stay), 2 blocks, 301 tokens: the recipes' rules are per
       tensor name and shape, so a small vocabulary keeps them and costs little */
    char err[256];
    gb_config cf = {256, 4, 2, 64, 1024, 45, GPT2_TYPE_F32, 5};
    gb_layout lay;
    wbuf w = gb_build(&cf, &lay);
    FILE *fsrc = fopen(SCRATCH "rq-f32.gguf", "wb");
    assert_non_null(fsrc);
    assert_int_equal(fwrite(w.buf, 1, w.len, fsrc), w.len);
    fclose(fsrc);
    free(w.buf);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char out[128];
        snprintf(out, sizeof out, SCRATCH "rq-%s.gguf", names[i]);
        assert_int_equal(gpt2_quantize_recipe(SCRATCH "rq-f32.gguf", out, names[i], err, sizeof err), GPT2_OK);
        gpt2_model *m = load_on_path(out, NULL);
        assert_non_null(m);
        int kinds[32] = {0}, n_kinds = 0;
        for (uint64_t t = 0; t < m->gguf.n_tensors; t++) {
            const gguf_tensor *g = &m->gguf.tensors[t];
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)g->name_len, g->name);
            int want = g->n_dims == 2 ? kq_recipe(recipe_ftype(names[i]), name, tensor_layer(g), m->cfg.n_layer,
                                                  (int64_t)g->ne[1], (int64_t)g->ne[0]) : KQ_KEEP;
            if (want == KQ_KEEP) want = GPT2_TYPE_F32; /* the source is all f32 */
            assert_int_equal(g->type, want);
            if (!kinds[g->type]++) n_kinds++;
        }
        if (!strcmp(names[i], "q4_k_m")) { /* q6_K embedding and some layers, q4_K the rest */
            assert_true(kinds[GPT2_TYPE_Q6_K] >= 2 && kinds[GPT2_TYPE_Q4_K] >= 3);
            assert_true(kinds[GPT2_TYPE_F32] > 0);
        }
        /* it runs */
        gpt2_context *c;
        assert_int_equal(gpt2_context_new(m, NULL, &c), GPT2_OK);
        int32_t ids[3] = {46, 268, 75};
        const size_t n_vocab = (size_t)m->cfg.n_vocab;
        float *lg = malloc(3 * n_vocab * sizeof *lg);
        assert_int_equal(gpt2_eval(c, ids, 3, lg), GPT2_OK);
        for (size_t v = 0; v < 3 * n_vocab; v++) assert_true(isfinite(lg[v]));
        free(lg);
        gpt2_context_free(c);
        fprintf(stderr, "  %-7s %d tensor types\n", names[i], n_kinds);
        gpt2_free(m);
        remove(out);
    }
    remove(SCRATCH "rq-f32.gguf");
    assert_int_equal(gpt2_quantize_recipe(FIXTURE_GGUF, SCRATCH "x.gguf", "q4_k_s", err, sizeof err), GPT2_E_ARG);
}

/* the fallback of the recipes, llama.cpp's rules for GPT-2's shapes */
static void test_recipe_rules(void **state) {
    (void)state;
    /* 124M: 12 layers, 768 wide */
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "token_embd.weight", -1, 12, 50257, 768), GPT2_TYPE_Q6_K);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "position_embd.weight", -1, 12, 1024, 768), KQ_KEEP);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.0.attn_norm.weight", 0, 12, 1, 768), KQ_KEEP);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.0.attn_qkv.weight", 0, 12, 2304, 768), GPT2_TYPE_Q6_K);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.1.attn_qkv.weight", 1, 12, 2304, 768), GPT2_TYPE_Q4_K);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.11.ffn_down.weight", 11, 12, 768, 3072), GPT2_TYPE_Q6_K);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.4.ffn_down.weight", 4, 12, 768, 3072), GPT2_TYPE_Q4_K);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.4.ffn_up.weight", 4, 12, 3072, 768), GPT2_TYPE_Q4_K);
    assert_int_equal(kq_recipe(KQ_FT_Q8_0, "token_embd.weight", -1, 12, 50257, 768), GPT2_TYPE_Q8_0);
    assert_int_equal(kq_recipe(KQ_FT_Q2_K, "blk.3.attn_output.weight", 3, 12, 768, 768), GPT2_TYPE_Q3_K);
    /* XL: 1600 wide, not whole 256-blocks: the fallbacks */
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "token_embd.weight", -1, 48, 50257, 1600), GPT2_TYPE_Q8_0);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.5.ffn_up.weight", 5, 48, 6400, 1600), GPT2_TYPE_Q5_0);
    assert_int_equal(kq_recipe(KQ_FT_Q5_K_M, "blk.5.ffn_up.weight", 5, 48, 6400, 1600), GPT2_TYPE_Q5_1);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.21.ffn_down.weight", 21, 48, 1600, 6400), GPT2_TYPE_Q4_K);
    assert_int_equal(kq_recipe(KQ_FT_Q4_K_M, "blk.5.ffn_down.weight", 5, 48, 1600, 6400), GPT2_TYPE_Q6_K);
    assert_int_equal(kq_recipe(999, "token_embd.weight", -1, 12, 50257, 768), -1);
}

/* a quantized file with a row length that is not whole blocks, or cut short, is refused */
static void test_hostile_quant_files(void **state) {
    (void)state;
    size_t len;
    char *img = read_all(DATA "quant/public-mix.gguf", &len);
    char *buf = alloc64(len + 64);
    gpt2_model *m = NULL;
    char err[256];
    /* cut anywhere in the tensor data: the tensor that no longer fits is named */
    gpt2_model *ok = load_quant("public-mix", NULL);
    size_t data0 = (size_t)ok->gguf.data_offset;
    gpt2_free(ok);
    for (size_t cut = data0 + 1; cut < len; cut += (len - data0) / 7) {
        memcpy(buf, img, cut);
        assert_int_equal(gpt2_load_from_buffer(buf, cut, &m, err, sizeof err), GPT2_E_FORMAT);
        assert_null(m);
        assert_non_null(strstr(err, "past the end"));
    }
    /* blk.1.attn_qkv (q2_K) given rows of 255: not whole blocks of 256 */
    const char *name = "blk.1.attn_qkv.weight";
    char *at = NULL;
    for (size_t i = 0; i + strlen(name) < len && !at; i++)
        if (!memcmp(img + i, name, strlen(name))) at = img + i;
    assert_non_null(at);
    memcpy(buf, img, len);
    size_t ne0_at = (size_t)(at - img) + strlen(name) + 4; /* after the name: n_dims, then ne[0] */
    buf[ne0_at] = (char)255;
    buf[ne0_at + 1] = 0;
    assert_int_equal(gpt2_load_from_buffer(buf, len, &m, err, sizeof err), GPT2_E_FORMAT);
    assert_non_null(strstr(err, "do not fit"));
    /* a type number the engine does not know */
    memcpy(buf, img, len);
    size_t type_at = ne0_at + 16;
    buf[type_at] = 9; /* ggml's q8_1: not a weight type */
    assert_int_equal(gpt2_load_from_buffer(buf, len, &m, err, sizeof err), GPT2_E_UNSUPPORTED);
    free(buf);
    free(img);
}

static int suite_quant(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_bit_exact),
        cmocka_unit_test(test_golden_files_logits),
        cmocka_unit_test(test_quant_tiles),
        cmocka_unit_test(test_recipes),
        cmocka_unit_test(test_recipe_rules),
        cmocka_unit_test(test_hostile_quant_files),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
