/* test_model.c — model files: the converter's output against its source checkpoint, and the
 * loader against truncated, corrupt and hostile files.
 *
 * White-box: the engine is included so the tests can look at the loaded tensors.
 */
/* (built inside tests/test_internals.c, after the engine) */

#include <setjmp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "gguf_builder.h"

/* ---- converter -> loader ----------------------------------------------------------------- */

static const char *hf_to_gguf(const char *hf, char *buf, size_t n) {
    static const struct { const char *hf, *gg; } top[] = {
        {"transformer.wte.weight", "token_embd.weight"}, {"transformer.wpe.weight", "position_embd.weight"},
        {"transformer.ln_f.weight", "output_norm.weight"}, {"transformer.ln_f.bias", "output_norm.bias"}};
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(hf, top[i].hf)) return top[i].gg;
    static const struct { const char *hf, *gg; } blk[] = {
        {"ln_1.weight", "attn_norm.weight"}, {"ln_1.bias", "attn_norm.bias"},
        {"attn.c_attn.weight", "attn_qkv.weight"}, {"attn.c_attn.bias", "attn_qkv.bias"},
        {"attn.c_proj.weight", "attn_output.weight"}, {"attn.c_proj.bias", "attn_output.bias"},
        {"ln_2.weight", "ffn_norm.weight"}, {"ln_2.bias", "ffn_norm.bias"},
        {"mlp.c_fc.weight", "ffn_up.weight"}, {"mlp.c_fc.bias", "ffn_up.bias"},
        {"mlp.c_proj.weight", "ffn_down.weight"}, {"mlp.c_proj.bias", "ffn_down.bias"}};
    int l;
    char rest[64];
    if (sscanf(hf, "transformer.h.%d.%63s", &l, rest) == 2)
        for (size_t i = 0; i < 12; i++)
            if (!strcmp(rest, blk[i].hf)) {
                snprintf(buf, n, "blk.%d.%s", l, blk[i].gg);
                return buf;
            }
    return NULL;
}

/* Every tensor of model.safetensors equals the GGUF's (Conv1D weights transposed). With
   f16 = 1 the GGUF holds f16 matrices: each must be the source value rounded to f16. */
static void compare_with_safetensors(const char *gguf_path, int f16) {
    size_t len;
    char *st = read_all(DATA "model/model.safetensors", &len);
    uint64_t hlen;
    memcpy(&hlen, st, 8);
    jv header = json_parse(st + 8, (size_t)hlen);
    const char *base = st + 8 + hlen;
    gpt2_model *m;
    char err[256];
    assert_int_equal(gpt2_load(gguf_path, &m, err, sizeof err), GPT2_OK);
    int n_checked = 0;
    for (size_t i = 0; i < header.len; i++) {
        const char *name = header.keys[i];
        if (!strcmp(name, "__metadata__")) continue;
        char buf[96];
        const char *gg = hf_to_gguf(name, buf, sizeof buf);
        assert_non_null(gg);
        const gguf_tensor *t = gguf_find_tensor(&m->gguf, gg);
        assert_non_null(t);
        const jv *shape = jreq(&header.items[i], "shape"), *offs = jreq(&header.items[i], "data_offsets");
        const float *src = (const float *)(const void *)(base + (size_t)offs->items[0].num);
        bool conv1d = strstr(name, "attn.c_attn.weight") || strstr(name, "c_proj.weight") ||
                      strstr(name, "c_fc.weight");
        int64_t rows = shape->len == 2 ? (int64_t)shape->items[0].num : 1;
        int64_t cols = (int64_t)shape->items[shape->len - 1].num;
        /* GGUF rows (out) x cols (in); the source is [in][out] for Conv1D */
        int64_t g_rows = conv1d ? cols : rows, g_cols = conv1d ? rows : cols;
        assert_int_equal(t->ne[0], g_cols);
        assert_int_equal(t->n_dims, shape->len);
        bool matrix2d = shape->len == 2;
        assert_int_equal(t->type, f16 && matrix2d ? GPT2_TYPE_F16 : GPT2_TYPE_F32);
        matrix w = {t->data, (gpt2_type)t->type, g_rows, g_cols, (size_t)(t->nbytes / (uint64_t)g_rows)};
        float *row = malloc((size_t)g_cols * sizeof *row);
        for (int64_t r = 0; r < g_rows; r++) {
            dequantize_row(&w, r, row);
            for (int64_t c = 0; c < g_cols; c++) {
                float want = conv1d ? src[c * g_rows + r] : src[r * g_cols + c];
                if (f16 && matrix2d) want = f16_to_f32(f32_to_f16(want));
                if (row[c] != want) {
                    fprintf(stderr, "%s [%lld, %lld]: %g != %g\n", name, (long long)r, (long long)c,
                            (double)row[c], (double)want);
                    fail();
                }
            }
        }
        free(row);
        n_checked++;
    }
    assert_int_equal(n_checked, 4 + 2 * 12);
    gpt2_config cf = gpt2_get_config(m);
    assert_int_equal(cf.n_vocab, 50257);
    assert_int_equal(cf.n_ctx, 128);
    assert_int_equal(cf.n_embd, 64);
    assert_int_equal(cf.n_head, 2);
    assert_int_equal(cf.n_layer, 2);
    assert_int_equal(cf.eot_id, 50256);
    assert_ptr_equal(m->lm_head.data, m->wte.data); /* tied */
    gpt2_free(m);
    json_free(&header);
    free(st);
}

static void test_converted_safetensors(void **state) {
    (void)state;
    compare_with_safetensors(FIXTURE_GGUF, 0);
}

/* pytorch_model.bin (HF's own legacy file, with lm_head sharing wte's storage) gives the
   same tensors as model.safetensors */
static void test_converted_pytorch_bin(void **state) {
    (void)state;
    compare_with_safetensors(FIXTURE_GGUF_PT, 0);
}

static void test_converted_f16(void **state) {
    (void)state;
    compare_with_safetensors(FIXTURE_GGUF_F16, 1);
}

static void test_model_info(void **state) {
    (void)state;
    gpt2_model *m;
    assert_int_equal(gpt2_load(FIXTURE_GGUF, &m, NULL, 0), GPT2_OK);
    gpt2_model_info in = gpt2_get_model_info(m);
    assert_int_equal(in.n_ff, 256);
    assert_true(in.mapped);
    assert_int_equal(in.matrix_type, GPT2_TYPE_F32);
    /* wte + wpe + 2 blocks + ln_f */
    uint64_t block = 4 * 64 + 64 * 192 + 192 + 64 * 64 + 64 + 64 * 256 + 256 + 256 * 64 + 64;
    assert_int_equal(in.n_params, 50257ull * 64 + 128 * 64 + 2 * block + 128);
    const char *names[] = {"avx512-vnni", "avx512", "avx2", "neon-dotprod", "neon", "scalar"};
    bool known = false;
    for (int i = 0; i < 6; i++) known |= strcmp(in.kernels, names[i]) == 0;
    assert_true(known);
    gpt2_free(m);
    /* GPT2_KERNELS forces the path */
    setenv("GPT2_KERNELS", "scalar", 1);
    assert_int_equal(gpt2_load(FIXTURE_GGUF, &m, NULL, 0), GPT2_OK);
    assert_string_equal(gpt2_get_model_info(m).kernels, "scalar");
    gpt2_free(m);
    unsetenv("GPT2_KERNELS");
    assert_string_equal(gpt2_get_model_info(NULL).kernels, "");
}

/* ---- hostile files ------------------------------------------------------------------------ */

static const gb_config tiny = {32, 2, 1, 16, 64, 6, GPT2_TYPE_F32, 7};

/* loads an image from an 8-aligned copy; returns the status */
static gpt2_status load_image_copy(const uint8_t *img, size_t len, char *err, size_t err_len) {
    uint64_t *copy = malloc(len + 8);
    memcpy(copy, img, len);
    gpt2_model *m = NULL;
    gpt2_status s = gpt2_load_from_buffer(copy, len, &m, err, err_len);
    if (s == GPT2_OK) {
        assert_non_null(m);
        /* a model that loads must also work */
        gpt2_context *c;
        assert_int_equal(gpt2_context_new(m, &(gpt2_context_params){1, 0}, &c), GPT2_OK);
        int32_t ids[2] = {1, 2};
        float *logits = malloc(2 * (size_t)m->cfg.n_vocab * sizeof(float));
        assert_int_equal(gpt2_eval(c, ids, 2, logits), GPT2_OK);
        free(logits);
        gpt2_context_free(c);
        gpt2_free(m);
    } else {
        assert_null(m);
        assert_true(err == NULL || err[0] != '\0'); /* a reason is given */
    }
    free(copy);
    return s;
}

static void test_synthetic_model_loads(void **state) {
    (void)state;
    gb_layout lay;
    wbuf w = gb_build(&tiny, &lay);
    char err[256] = "";
    assert_int_equal(load_image_copy(w.buf, w.len, err, sizeof err), GPT2_OK);
    /* the merges work: "aba" -> "ab" "a" -> "aba" (257); "abab" -> "ab" "ab", which has no
       merge of its own */
    uint64_t *copy = malloc(w.len);
    memcpy(copy, w.buf, w.len);
    gpt2_model *m;
    assert_int_equal(gpt2_load_from_buffer(copy, w.len, &m, NULL, 0), GPT2_OK);
    int32_t ids[8];
    size_t n;
    assert_int_equal(gpt2_tokenize(m, "aba", 3, 0, ids, 8, &n), GPT2_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 257);
    assert_int_equal(gpt2_tokenize(m, "abab", 4, 0, ids, 8, &n), GPT2_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 256);
    gpt2_free(m);
    free(copy);
    free(w.buf);
}

static void test_truncated_everywhere(void **state) {
    (void)state;
    gb_layout lay;
    wbuf w = gb_build(&tiny, &lay);
    char err[256];
    /* every length up to the end of the tensor table, then every 97th byte after it */
    for (size_t len = 0; len < w.len; len += len < lay.data_start + 64 ? 1 : 97) {
        err[0] = '\0';
        gpt2_status s = load_image_copy(w.buf, len, err, sizeof err);
        if (s == GPT2_OK) {
            fprintf(stderr, "truncated to %zu of %zu bytes, yet it loaded\n", len, w.len);
            fail();
        }
        assert_true(s == GPT2_E_FORMAT || s == GPT2_E_UNSUPPORTED);
    }
    free(w.buf);
}

static void test_truncated_files(void **state) {
    (void)state;
    /* through real files too, so the mmap path sees them */
    size_t len;
    char *img = read_all(FIXTURE_GGUF, &len);
    const char *path = SCRATCH "truncated.gguf";
    size_t cuts[] = {0, 3, 4, 8, 23, 24, 25, 100, 4096, 100000, 1000000, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        FILE *f = fopen(path, "wb");
        fwrite(img, 1, cuts[i], f);
        fclose(f);
        gpt2_model *m = NULL;
        char err[256] = "";
        gpt2_status s = gpt2_load(path, &m, err, sizeof err);
        assert_true(s == GPT2_E_FORMAT);
        assert_null(m);
        assert_non_null(strstr(err, path)); /* the message names the file */
    }
    remove(path);
    free(img);
    gpt2_model *m = NULL;
    char err[256];
    assert_int_equal(gpt2_load("no/such/model.gguf", &m, err, sizeof err), GPT2_E_IO);
    assert_non_null(strstr(err, "no/such/model.gguf"));
    assert_int_equal(gpt2_load("tests", &m, err, sizeof err), GPT2_E_IO); /* a directory */
}

/* Flipping any byte of the header and metadata: the file loads (the flip was harmless, e.g.
   inside a token's spelling) or is rejected; never a crash, a hang or a sanitizer report. */
static void test_byte_flips(void **state) {
    (void)state;
    gb_layout lay;
    wbuf w = gb_build(&tiny, &lay);
    int rejected = 0;
    for (size_t i = 0; i < lay.data_start; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            w.buf[i] ^= (uint8_t)(1 << bit);
            gpt2_status s = load_image_copy(w.buf, w.len, NULL, 0);
            assert_true(s == GPT2_OK || s == GPT2_E_FORMAT || s == GPT2_E_UNSUPPORTED);
            rejected += s != GPT2_OK;
            w.buf[i] ^= (uint8_t)(1 << bit);
        }
    }
    assert_true(rejected > 100);
    free(w.buf);
}

/* loads the synthetic model with the little-endian field at `at` (4 or 8 bytes) set to v */
static gpt2_status patched(size_t at, uint64_t v, int width) {
    gb_layout lay;
    wbuf w = gb_build(&tiny, &lay);
    if (width == 8) wb_put_u64(&w, at, v);
    else wb_put_u32(&w, at, (uint32_t)v);
    char err[256] = "";
    gpt2_status s = load_image_copy(w.buf, w.len, err, sizeof err);
    free(w.buf);
    return s;
}
#define patched_u64(lay, at, v) patched(at, v, 8)
#define patched_u32(at, v) patched(at, v, 4)

static void test_hostile_counts(void **state) {
    (void)state;
    gb_layout lay;
    wbuf w = gb_build(&tiny, &lay);
    free(w.buf);
    const uint64_t huge[] = {UINT64_MAX, UINT64_MAX / 2, (uint64_t)1 << 62, (uint64_t)1 << 32,
                             (uint64_t)1 << 31, 1000000};
    for (size_t k = 0; k < sizeof huge / sizeof *huge; k++) {
        uint64_t v = huge[k];
        assert_int_equal(patched_u64(&lay, lay.n_tensors, v), GPT2_E_FORMAT);
        assert_int_equal(patched_u64(&lay, lay.n_kv, v), GPT2_E_FORMAT);
        for (int i = 0; i < lay.nkv; i++) {
            assert_int_not_equal(patched_u64(&lay, lay.kv_keylen[i], v), GPT2_OK);
            if (lay.kv_count[i]) assert_int_not_equal(patched_u64(&lay, lay.kv_count[i], v), GPT2_OK);
        }
        for (int i = 0; i < lay.nt; i++) {
            assert_int_not_equal(patched_u64(&lay, lay.t_namelen[i], v), GPT2_OK);
            assert_int_not_equal(patched_u64(&lay, lay.t_ne0[i], v), GPT2_OK);
            if (lay.t_ne1[i]) assert_int_not_equal(patched_u64(&lay, lay.t_ne1[i], v), GPT2_OK);
            assert_int_not_equal(patched_u64(&lay, lay.t_offset[i], v), GPT2_OK);
        }
    }
    for (int i = 0; i < lay.nt; i++) {
        assert_int_not_equal(patched_u32(lay.t_ndims[i], 5), GPT2_OK);
        assert_int_not_equal(patched_u32(lay.t_ndims[i], 0), GPT2_OK);
        assert_int_equal(patched_u32(lay.t_type[i], 9), GPT2_E_UNSUPPORTED);  /* q8_1: not a weight type */
        assert_int_equal(patched_u32(lay.t_type[i], 16), GPT2_E_UNSUPPORTED); /* iq2_xxs */
        assert_int_equal(patched_u32(lay.t_type[i], 99), GPT2_E_UNSUPPORTED);
        assert_int_not_equal(patched_u64(&lay, lay.t_ne0[i], 0), GPT2_OK);
        assert_int_not_equal(patched_u64(&lay, lay.t_offset[i], 16), GPT2_OK); /* misaligned */
    }
    for (int i = 0; i < lay.nkv; i++) assert_int_not_equal(patched_u32(lay.kv_type[i], 13), GPT2_OK);
    /* the wrong shape for the config: embedding width 64 against tensors of 32 */
    assert_int_equal(patched_u32(lay.kv_keylen[4] + 8 + strlen("gpt2.embedding_length") + 4, 64), GPT2_E_FORMAT);
    assert_int_equal(patched_u32(lay.alignment_value, 0), GPT2_E_FORMAT);
    assert_int_equal(patched_u32(lay.alignment_value, 12), GPT2_E_FORMAT);
    assert_int_equal(patched_u32(lay.alignment_value, 64), GPT2_E_FORMAT); /* offsets now misaligned */
    /* GGUF version 1 and 4, and a bad magic */
    assert_int_equal(patched_u32(4, 1), GPT2_E_UNSUPPORTED);
    assert_int_equal(patched_u32(4, 4), GPT2_E_UNSUPPORTED);
    assert_int_equal(patched_u32(0, 0x46554748u), GPT2_E_FORMAT);
}

/* A config far larger than the file (seen while writing tests/fuzz/fuzz_gguf.c): 1024 blocks
   of width 65536 in a 74 KB file. It must be refused as a format error before anything is
   allocated for it: the loader used to ask for 3.7 GB of 1-D weights first, so that with a
   limit on memory the answer was "out of memory" instead of what is wrong. */
static gpt2_status load_config_too_large(char *err, size_t err_len) {
    gb_layout lay;
    wbuf w = gb_build(&tiny, &lay);
    wb_put_u32(&w, lay.kv_type[4] + 4, 65536);  /* gpt2.embedding_length */
    wb_put_u32(&w, lay.kv_type[5] + 4, 262144); /* gpt2.feed_forward_length */
    wb_put_u32(&w, lay.kv_type[6] + 4, 1024);   /* gpt2.block_count */
    gpt2_status s = load_image_copy(w.buf, w.len, err, err_len);
    free(w.buf);
    return s;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void test_config_larger_than_file(void **state) {
    (void)state;
    char err[256] = "";
    assert_int_equal(load_config_too_large(err, sizeof err), GPT2_E_FORMAT);
    assert_non_null(strstr(err, "do not fit in the file"));
#ifndef UNDER_ASAN /* ASan reserves terabytes of address space: no limit can be set under it */
    /* the same with 1 GB of address space, in a child process */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {(rlim_t)1 << 30, (rlim_t)1 << 30};
        setrlimit(RLIMIT_AS, &rl);
        _exit(load_config_too_large(NULL, 0) == GPT2_E_FORMAT ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#endif
}

static void test_not_gpt2(void **state) {
    (void)state;
    gb_layout lay;
    wbuf w = gb_build(&tiny, &lay);
    /* "gpt2" -> "gptj" in general.architecture */
    size_t at = lay.kv_keylen[0] + 8 + strlen("general.architecture") + 4 + 8 + 3;
    assert_int_equal(w.buf[at], '2');
    w.buf[at] = 'j';
    char err[256];
    assert_int_equal(load_image_copy(w.buf, w.len, err, sizeof err), GPT2_E_UNSUPPORTED);
    assert_non_null(strstr(err, "gptj"));
    free(w.buf);
}

static int suite_model(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converted_safetensors),
        cmocka_unit_test(test_converted_pytorch_bin),
        cmocka_unit_test(test_converted_f16),
        cmocka_unit_test(test_model_info),
        cmocka_unit_test(test_synthetic_model_loads),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_byte_flips),
        cmocka_unit_test(test_hostile_counts),
        cmocka_unit_test(test_not_gpt2),
        cmocka_unit_test(test_config_larger_than_file),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
