/* test_internals.c — the white-box suites, built as one program.
 *
 * test_model.c, test_forward.c, test_decode.c and test_quant.c look inside the engine (its
 * tensors, kernels and logits processors), so each needs the engine's source, not only its
 * API. Built as one program, the engine is compiled once for them (natively and under the
 * sanitizers) instead of once per suite: on two cores that is most of `make test`'s build.
 *
 * Usage: test_internals [model|forward|decode|quant]...   (no argument: all four, in order)
 */
#include "../src/gpt2.c" /* first: it sets the POSIX feature level for the system headers */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "gguf_builder.h"

#include "test_model.c"
#include "test_forward.c"
#include "test_decode.c"
#include "test_quant.c"

static const struct {
    const char *name;
    int (*run)(void);
} suites[] = {
    {"model", suite_model},
    {"forward", suite_forward},
    {"decode", suite_decode},
    {"quant", suite_quant},
};
enum { N_SUITES = (int)(sizeof suites / sizeof suites[0]) };

int main(int argc, char **argv) {
    int failed = 0;
    if (argc < 2) {
        for (int s = 0; s < N_SUITES; s++) failed += suites[s].run() != 0;
        return failed ? 1 : 0;
    }
    for (int a = 1; a < argc; a++) {
        int s = 0;
        while (s < N_SUITES && strcmp(argv[a], suites[s].name) != 0) s++;
        if (s == N_SUITES) {
            fprintf(stderr, "test_internals: no suite '%s' (model, forward, decode, quant)\n", argv[a]);
            return 2;
        }
        failed += suites[s].run() != 0;
    }
    return failed ? 1 : 0;
}
