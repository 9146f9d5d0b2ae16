/* fuzz_common.h — helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * A target reports a broken property by aborting (libFuzzer then saves the input as a crash),
 * after saying on stderr what went wrong. Sanitizer reports need nothing from here.
 */
#ifndef GPT2_FUZZ_COMMON_H
#define GPT2_FUZZ_COMMON_H

#define _POSIX_C_SOURCE 200809L /* setenv */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"

/* The fixture the Makefile builds (`make fixtures`); GPT2_FUZZ_MODEL names another. */
#define FUZZ_FIXTURE "build/fixtures/tiny.gguf"

static inline void fuzz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\nfuzz property violated: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

#define FUZZ_CHECK(cond, ...)                   \
    do {                                        \
        if (!(cond)) fuzz_fail(__VA_ARGS__);    \
    } while (0)

/* The fixture model, loaded once per process; exits (not a finding) when it is missing. */
static inline gpt2_model *fuzz_load_fixture(void) {
    const char *path = getenv("GPT2_FUZZ_MODEL");
    if (!path || !*path) path = FUZZ_FIXTURE;
    gpt2_model *m = NULL;
    char err[256] = "";
    if (gpt2_load(path, &m, err, sizeof err) != GPT2_OK) {
        fprintf(stderr, "cannot load the fuzzing model %s: %s\n(run `make fixtures` first, from the "
                        "repository's top directory)\n", path, err);
        exit(2);
    }
    return m;
}

/* A guard region after a caller's buffer: filled with a pattern, checked after the call. */
#define FUZZ_GUARD 64
#define FUZZ_GUARD_BYTE 0xA5

static inline void fuzz_guard_set(void *after, size_t n) { memset(after, FUZZ_GUARD_BYTE, n); }

static inline int fuzz_guard_ok(const void *after, size_t n) {
    const uint8_t *p = after;
    for (size_t i = 0; i < n; i++)
        if (p[i] != FUZZ_GUARD_BYTE) return 0;
    return 1;
}

#endif
