/* common.h — helpers shared by the test suites: a small JSON reader (for the golden
 * reference files), file reading, and the paths of the fixtures.
 *
 * Test-only code: it aborts on malformed fixtures rather than returning errors.
 */
#ifndef GPT2_TESTS_COMMON_H
#define GPT2_TESTS_COMMON_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"

/* Built by the Makefile before the tests run (scripts/convert.py on tests/data/model). */
/* Where a suite writes files of its own. make test runs the plain and the sanitized suites
   side by side, so each build has its own directory: one must never truncate a file the
   other has mapped, nor remove one it is about to read. */
#ifndef SCRATCH
#define SCRATCH "build/tests/"
#endif
#define FIXTURE_GGUF "build/fixtures/tiny.gguf"          /* from model.safetensors, f32 */
#define FIXTURE_GGUF_PT "build/fixtures/tiny-pt.gguf"    /* from pytorch_model.bin, f32 */
#define FIXTURE_GGUF_F16 "build/fixtures/tiny-f16.gguf"  /* converter --type f16 */
#define DATA "tests/data/"

static inline void test_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test setup: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static inline char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) test_die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) test_die("cannot read %s", path);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

/* ---- JSON ------------------------------------------------------------------------------ */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jv {
    jtype t;
    double num;           /* J_NUM, J_BOOL */
    char *str;            /* J_STR: bytes (UTF-8, may hold NUL) */
    size_t len;           /* J_STR: bytes; J_ARR/J_OBJ: items */
    struct jv *items;     /* J_ARR values; J_OBJ values */
    char **keys;          /* J_OBJ keys */
} jv;

typedef struct {
    const char *p, *end;
} jparser;

static void j_ws(jparser *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static unsigned j_hex4(jparser *j) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
    }
    return v;
}

static size_t j_utf8(unsigned cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static char *j_string(jparser *j, size_t *len) {
    j->p++; /* " */
    const char *s = j->p;
    size_t cap = 16;
    while (s < j->end && *s != '"') { s += *s == '\\' ? 2 : 1; cap++; }
    char *out = malloc(cap * 4 + 1), *o = out;
    while (*j->p != '"') {
        char c = *j->p++;
        if (c != '\\') { *o++ = c; continue; }
        c = *j->p++;
        switch (c) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': {
            unsigned cp = j_hex4(j);
            if (cp >= 0xD800 && cp < 0xDC00 && j->p[0] == '\\' && j->p[1] == 'u') {
                j->p += 2;
                unsigned lo = j_hex4(j);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            o += j_utf8(cp, o);
            break;
        }
        default: *o++ = c; break;
        }
    }
    j->p++;
    *o = '\0';
    *len = (size_t)(o - out);
    return out;
}

static jv j_value(jparser *j) {
    jv v;
    memset(&v, 0, sizeof v);
    j_ws(j);
    if (j->p >= j->end) test_die("json: unexpected end");
    char c = *j->p;
    if (c == '"') {
        v.t = J_STR;
        v.str = j_string(j, &v.len);
    } else if (c == '[' || c == '{') {
        int obj = c == '{';
        v.t = obj ? J_OBJ : J_ARR;
        j->p++;
        size_t cap = 8;
        v.items = malloc(cap * sizeof *v.items);
        if (obj) v.keys = malloc(cap * sizeof *v.keys);
        j_ws(j);
        if (*j->p == (obj ? '}' : ']')) {
            j->p++;
            return v;
        }
        for (;;) {
            if (v.len == cap) {
                cap *= 2;
                v.items = realloc(v.items, cap * sizeof *v.items);
                if (obj) v.keys = realloc(v.keys, cap * sizeof *v.keys);
            }
            if (obj) {
                j_ws(j);
                size_t kl;
                v.keys[v.len] = j_string(j, &kl);
                j_ws(j);
                j->p++; /* : */
            }
            v.items[v.len++] = j_value(j);
            j_ws(j);
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            j->p++; /* ] or } */
            break;
        }
    } else if (c == 't' || c == 'f') {
        v.t = J_BOOL;
        v.num = c == 't';
        j->p += c == 't' ? 4 : 5;
    } else if (c == 'n') {
        v.t = J_NULL;
        j->p += 4;
    } else {
        v.t = J_NUM;
        char *end;
        v.num = strtod(j->p, &end);
        j->p = end;
    }
    return v;
}

static inline jv json_parse(const char *s, size_t len) {
    jparser j = {s, s + len};
    return j_value(&j);
}

static inline void json_free(jv *v) {
    if (v->t == J_STR) free(v->str);
    if (v->t == J_ARR || v->t == J_OBJ) {
        for (size_t i = 0; i < v->len; i++) {
            json_free(&v->items[i]);
            if (v->t == J_OBJ) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
}

static inline const jv *jget(const jv *o, const char *key) {
    if (o->t != J_OBJ) return NULL;
    for (size_t i = 0; i < o->len; i++)
        if (!strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}

/* a member that must exist */
static inline const jv *jreq(const jv *o, const char *key) {
    const jv *v = jget(o, key);
    if (!v) test_die("json: missing key '%s'", key);
    return v;
}

/* a JSON number, or the string "-inf" */
static inline double jnum(const jv *v) {
    if (v->t == J_STR && !strcmp(v->str, "-inf")) return -INFINITY;
    return v->num;
}

/* an array of ints into a new buffer */
static inline int32_t *jints(const jv *a, size_t *n) {
    int32_t *out = malloc((a->len + 1) * sizeof *out);
    for (size_t i = 0; i < a->len; i++) out[i] = (int32_t)a->items[i].num;
    *n = a->len;
    return out;
}

static inline jv json_file(const char *path) {
    size_t len;
    char *s = read_all(path, &len);
    jv v = json_parse(s, len);
    free(s);
    return v;
}

/* A model, or NULL after printing why it would not load. */
static inline gpt2_model *load_or_report(const char *path) {
    gpt2_model *m = NULL;
    char err[256];
    if (gpt2_load(path, &m, err, sizeof err) != GPT2_OK) fprintf(stderr, "%s\n", err);
    return m;
}

/* ---- kernel paths ------------------------------------------------------------------------
 * Property tests that depend on the kernels run on every path this CPU can execute, each
 * forced by a name that selects exactly that path, and say which ran. A path the CPU lacks
 * is reported as not run, by name. Each suite appends the paths it ran to the file named by
 * GPT2_PATHS_RUN (make test sets it: build/tests/paths-run.txt, and build/asan/paths-run.txt
 * for the sanitized run beside it), which `make test` summarises. */
static const struct {
    const char *force; /* the name that selects exactly this path */
    const char *name;  /* what gpt2_model_info.kernels reports for it */
} ALL_KERNEL_PATHS[] = {
    {"scalar", "scalar"},
    {"avx2-novnni", "avx2"},
    {"avx2-vnni", "avx2-vnni"},
    {"avx512-novnni", "avx512"},
    {"avx512-vnni", "avx512-vnni"},
    {"neon-nodotprod", "neon"},
    {"neon-dotprod", "neon-dotprod"},
};
#define N_ALL_KERNEL_PATHS (sizeof ALL_KERNEL_PATHS / sizeof *ALL_KERNEL_PATHS)

/* Whether a runnable path is left out because GPT2_TEST_PATHS=families asks for scalar and
   the best path of each family only (the sanitizer run: the family's other members run the
   same code with other instructions, and all of them ran in the plain run). */
static inline int kernel_path_left_out(size_t i) {
    const char *sel = getenv("GPT2_TEST_PATHS");
    if (!sel || strcmp(sel, "families")) return 0;
    const char *f = ALL_KERNEL_PATHS[i].force, *dash = strchr(f, '-');
    if (!dash) return 0;
    for (size_t j = i + 1; j < N_ALL_KERNEL_PATHS; j++) /* a better member of the family runs */
        if (!strncmp(ALL_KERNEL_PATHS[j].force, f, (size_t)(dash - f) + 1) &&
            gpt2_kernels_supported(ALL_KERNEL_PATHS[j].force) == GPT2_OK)
            return 1;
    return 0;
}

/* The forcing names of the paths this CPU runs, into names (room for N_ALL_KERNEL_PATHS),
   scalar first; their count. */
static inline int kernel_paths_here(const char **names) {
    int n = 0;
    for (size_t i = 0; i < N_ALL_KERNEL_PATHS; i++)
        if (gpt2_kernels_supported(ALL_KERNEL_PATHS[i].force) == GPT2_OK && !kernel_path_left_out(i))
            names[n++] = ALL_KERNEL_PATHS[i].force;
    return n;
}

static inline const char *kernel_path_label(const char *force) {
    for (size_t i = 0; i < N_ALL_KERNEL_PATHS; i++)
        if (!strcmp(force, ALL_KERNEL_PATHS[i].force)) return ALL_KERNEL_PATHS[i].name;
    return force;
}

/* "paths run: a b c (not run, not on this CPU: d e)" for one test, and the record for make
   test (the file GPT2_PATHS_RUN names, when set) */
static inline void report_paths(const char *test, const char *const *ran, int n_ran) {
    char line[512] = "", missing[512] = "", left[512] = "";
    for (int i = 0; i < n_ran; i++) {
        strncat(line, " ", sizeof line - strlen(line) - 1);
        strncat(line, kernel_path_label(ran[i]), sizeof line - strlen(line) - 1);
    }
    for (size_t i = 0; i < N_ALL_KERNEL_PATHS; i++) {
        int found = 0;
        for (int j = 0; j < n_ran; j++) found |= !strcmp(ran[j], ALL_KERNEL_PATHS[i].force);
        if (found) continue;
        char *to = gpt2_kernels_supported(ALL_KERNEL_PATHS[i].force) == GPT2_OK ? left : missing;
        strncat(to, " ", 511 - strlen(to));
        strncat(to, ALL_KERNEL_PATHS[i].name, 511 - strlen(to));
    }
    fprintf(stderr, "  %s: paths run:%s%s%s%s%s%s%s\n", test, line,
            *left ? " (left to the plain run, GPT2_TEST_PATHS=families:" : "", left, *left ? ")" : "",
            *missing ? " (not run, not on this CPU:" : "", missing, *missing ? ")" : "");
    const char *record = getenv("GPT2_PATHS_RUN");
    FILE *f = record && *record ? fopen(record, "a") : NULL;
    if (f) {
        fprintf(f, "%s:%s\n", test, line);
        fclose(f);
    }
}

/* Emulated runs (make test-arm: the suites under qemu, some 30x slower) and the sanitized
   run of make test set GPT2_TEST_STRIDE=N, and the longest replays and sweeps then check
   every N-th case only, on every path, saying so; the plain run (no GPT2_TEST_STRIDE)
   checks them all. */
static inline size_t test_stride(const char *what) {
    const char *e = getenv("GPT2_TEST_STRIDE");
    long s = e ? strtol(e, NULL, 10) : 1;
    if (s <= 1) return 1;
    fprintf(stderr, "  GPT2_TEST_STRIDE=%ld: %s: every %ld-th case only\n", s, what, s);
    return (size_t)s;
}

/* A model on one kernel path, or NULL after printing why it would not load. */
static inline gpt2_model *load_on_path(const char *path, const char *kernel_path) {
    gpt2_model *m = NULL;
    char err[256];
    gpt2_model_params p = gpt2_model_default_params();
    p.kernels = kernel_path;
    if (gpt2_load_ex(path, &p, &m, err, sizeof err) != GPT2_OK) fprintf(stderr, "%s\n", err);
    return m;
}

/* Runs BODY once per kernel path this CPU has, with `path_name` set, then reports them. */
#define FOR_EACH_KERNEL_PATH(TEST, path_name, ...)                                            \
    do {                                                                                      \
        const char *paths_[N_ALL_KERNEL_PATHS];                                               \
        int n_paths_ = kernel_paths_here(paths_);                                             \
        for (int pi_ = 0; pi_ < n_paths_; pi_++) {                                            \
            const char *path_name = paths_[pi_];                                              \
            __VA_ARGS__                                                                       \
        }                                                                                     \
        report_paths(TEST, paths_, n_paths_);                                                 \
    } while (0)

/* Group setup and teardown for suites that share one fixture model in `model`. */
#define FIXTURE_MODEL_GROUP                                                                    \
    static gpt2_model *model;                                                                 \
    static int setup(void **state) {                                                          \
        (void)state;                                                                          \
        model = load_or_report(FIXTURE_GGUF);                                                 \
        return model ? 0 : -1;                                                                \
    }                                                                                         \
    static int teardown(void **state) {                                                       \
        (void)state;                                                                          \
        gpt2_free(model);                                                                     \
        return 0;                                                                             \
    }

#endif
