# gpt2c — `make` builds build/libgpt2.a, build/libgpt2.so and build/gpt2; `make test`;
# `make bench`; `make run`; `make install PREFIX=/usr/local` (DESTDIR honoured); `make uninstall`.

CC      ?= cc
PYTHON  ?= python3
CFLAGS  ?= -O2
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes
CPPFLAGS += -Iinclude -Isrc
LDLIBS  := -lm -lpthread

# the sanitized build of the test suites (-g1: line tables are all a sanitizer report needs,
# and they halve the compile time of -g's variable tracking in the kernels). clang at -O1
# with both sanitizers spends over ten minutes on gpt2.c (register allocation in the K-quant
# tiles), so under clang the sanitized build is -O0: make CC=clang test then takes ~8 minutes.
SAN_OPT   := $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null | head -n 1)),-O0,-O1)
SAN_FLAGS := $(SAN_OPT) -g1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# The test programs: the black-box suites link the library; test_internals is the white-box
# suites (tests/test_{model,forward,decode,quant}.c), one program so the engine is compiled
# once for all four. SUITES is what runs, in order: PROGRAM or PROGRAM.SUITE (which is also
# the name of its log under build/asan/log).
TESTS    := test_tokenizer test_internals test_inspect test_cli
SUITES   := test_tokenizer test_internals.model test_internals.forward test_internals.decode \
            test_inspect test_internals.quant test_cli
WHITEBOX := tests/test_model.c tests/test_forward.c tests/test_decode.c tests/test_quant.c
FIXTURES := build/fixtures/tiny.gguf build/fixtures/tiny-pt.gguf build/fixtures/tiny-f16.gguf

EXAMPLES := simple stream logits chat

# the library's version, from gpt2.h; the soname carries the major number
VERSION := $(shell sed -n 's/^\#define GPT2_VERSION "\(.*\)"/\1/p' include/gpt2.h)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libgpt2.so.$(MAJOR)

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(PREFIX)/bin
INCDIR  := $(PREFIX)/include
LIBDIR  := $(PREFIX)/lib

.PHONY: all test test-fast test-asan asan-report FORCE test-tsan test-examples test-install test-explain-html bench run clean \
        fixtures examples install uninstall fuzz fuzz-smoke fuzz-build fuzz-seeds fuzz-convert test-arm

all: build/libgpt2.a build/libgpt2.so build/gpt2

build/gpt2.o: src/gpt2.c include/gpt2.h src/unicode_tables.h | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

build/libgpt2.a: build/gpt2.o
	rm -f $@
	ar rcs $@ $^

# the shared library: position-independent, only the gpt2_* functions exported (everything
# else in gpt2.c is static; the version script makes sure), with a versioned soname
build/pic/gpt2.o: src/gpt2.c include/gpt2.h src/unicode_tables.h | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -c $< -o $@

build/gpt2.map: | build/.dirs
	printf '{\n  global: gpt2_*;\n  local: *;\n};\n' > $@

build/libgpt2.so: build/pic/gpt2.o build/gpt2.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=build/gpt2.map \
	  build/pic/gpt2.o $(LDLIBS) -o build/libgpt2.so.$(VERSION)
	ln -sf libgpt2.so.$(VERSION) build/$(SONAME)
	ln -sf libgpt2.so.$(VERSION) $@

# the pkg-config file for PREFIX: written at every install, since PREFIX may change
define GPT2_PC
prefix=$(PREFIX)
exec_prefix=$${prefix}
libdir=$${exec_prefix}/lib
includedir=$${prefix}/include

Name: gpt2
Description: GPT-2 inference on the CPU (gpt2c)
Version: $(VERSION)
Libs: -L$${libdir} -lgpt2
Libs.private: -lm -lpthread
Cflags: -I$${includedir}
endef
export GPT2_PC

# the examples, against the static and the shared library
examples: $(addprefix build/examples/,$(EXAMPLES)) $(addprefix build/examples/shared-,$(EXAMPLES))

build/examples/%: examples/%.c include/gpt2.h build/libgpt2.a | build/.dirs
	$(CC) $(CFLAGS) $(WARN) -Iinclude $< build/libgpt2.a $(LDLIBS) -o $@

build/examples/shared-%: examples/%.c include/gpt2.h build/libgpt2.so | build/.dirs
	$(CC) $(CFLAGS) $(WARN) -Iinclude $< -Lbuild -lgpt2 -Wl,-rpath,'$$ORIGIN/..' -lm -o $@

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 755 build/gpt2 $(DESTDIR)$(BINDIR)/gpt2
	install -m 644 include/gpt2.h $(DESTDIR)$(INCDIR)/gpt2.h
	install -m 644 build/libgpt2.a $(DESTDIR)$(LIBDIR)/libgpt2.a
	install -m 755 build/libgpt2.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libgpt2.so.$(VERSION)
	ln -sf libgpt2.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf libgpt2.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libgpt2.so
	printf '%s\n' "$$GPT2_PC" > $(DESTDIR)$(LIBDIR)/pkgconfig/gpt2.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/gpt2 $(DESTDIR)$(INCDIR)/gpt2.h $(DESTDIR)$(LIBDIR)/libgpt2.a \
	  $(DESTDIR)$(LIBDIR)/libgpt2.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/libgpt2.so $(DESTDIR)$(LIBDIR)/pkgconfig/gpt2.pc

build/main.o: src/main.c include/gpt2.h | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

# gpt2 explain: part of the tool only, built on the public API
build/explain.o: src/explain.c include/gpt2.h | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

build/gpt2: build/main.o build/explain.o build/libgpt2.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

build/.dirs:
	mkdir -p build/tests build/asan build/fixtures build/pic build/examples && touch $@

# ---- tests --------------------------------------------------------------------------------
# The fixture model (a 2-layer random GPT-2 with the real vocabulary, tests/data/model) is
# converted by the project's own converter from both checkpoint formats.

build/fixtures/tiny.gguf: scripts/convert.py tests/data/model/model.safetensors | build/.dirs
	rm -rf build/fixtures/st && mkdir -p build/fixtures/st
	cd build/fixtures/st && for f in config.json vocab.json merges.txt model.safetensors; do ln -sf ../../../tests/data/model/$$f .; done
	$(PYTHON) scripts/convert.py build/fixtures/st -o $@

build/fixtures/tiny-pt.gguf: scripts/convert.py tests/data/model/pytorch_model.bin | build/.dirs
	rm -rf build/fixtures/pt && mkdir -p build/fixtures/pt
	cd build/fixtures/pt && for f in config.json vocab.json merges.txt pytorch_model.bin; do ln -sf ../../../tests/data/model/$$f .; done
	$(PYTHON) scripts/convert.py build/fixtures/pt -o $@

build/fixtures/tiny-f16.gguf: build/fixtures/tiny.gguf
	$(PYTHON) scripts/convert.py build/fixtures/st -o $@ --type f16

fixtures: $(FIXTURES)

build/tests/test_internals build/asan/test_internals build/tsan/test_internals: $(WHITEBOX) src/gpt2.c

build/tests/%: tests/%.c tests/common.h tests/gguf_builder.h $(wildcard tests/data/*.inc) build/libgpt2.a | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Wno-unused-function $< build/libgpt2.a -lcmocka $(LDLIBS) -o $@

# sanitized builds of the library, the suites and the tool
build/asan/gpt2.o: src/gpt2.c include/gpt2.h src/unicode_tables.h | build/.dirs
	$(CC) $(CPPFLAGS) $(SAN_FLAGS) $(WARN) -c $< -o $@

build/asan/libgpt2.a: build/asan/gpt2.o
	rm -f $@
	ar rcs $@ $^

# the sanitized suites write their own files into build/asan/scratch/ (SCRATCH, tests/common.h):
# they run beside the plain ones, which write into build/tests/
build/asan/%: tests/%.c tests/common.h tests/gguf_builder.h $(wildcard tests/data/*.inc) build/asan/libgpt2.a | build/.dirs
	$(CC) $(CPPFLAGS) $(SAN_FLAGS) $(WARN) -Wno-unused-function -DSCRATCH='"build/asan/scratch/"' $< build/asan/libgpt2.a -lcmocka $(LDLIBS) -o $@

build/asan/gpt2: src/main.c src/explain.c build/asan/libgpt2.a | build/.dirs
	$(CC) $(CPPFLAGS) $(SAN_FLAGS) $(WARN) $^ $(LDLIBS) -o $@

# `make test`: the suites, the converter's tests, the examples, install and the explain page;
# and the suites again under ASan + UBSan. Both builds come first, in parallel; then the runs
# go side by side, JOBS at a time: the plain run prints as it goes, each sanitized suite into
# build/asan/log/, and those logs are printed, in order, when everything is done.
# (Running beside each other is no risk to the tests: none depends on speed, and the
# bit-identity tests hold whatever the scheduling.)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
TEST_DEPS := all examples $(FIXTURES) $(addprefix build/tests/,$(TESTS))
# (the longest compiles first: make -j starts jobs in the order given)
ASAN_DEPS := build/asan/test_internals build/asan/gpt2 $(addprefix build/asan/,$(TESTS)) $(FIXTURES)

# runs the suites in SUITES with the programs in directory $(1), each as PROGRAM [SUITE]
# (suite_cmd: PROGRAM and SUITE of $$s into $$prog and $$arg)
suite_cmd  = prog=$${s%%.*}; arg=; case $$s in *.*) arg=$${s\#*.};; esac
run_suites = set -e; for s in $(SUITES); do $(suite_cmd); \
  echo "== $$prog $$arg$(2)"; $(3) $(1)/$$prog $$arg; done

test:
	@$(MAKE) -s -j$(JOBS) $(ASAN_DEPS) $(TEST_DEPS)
	@rm -rf build/asan/log build/asan/paths-run.txt
	@$(MAKE) -s -k -j$(JOBS) test-fast $(ASAN_LOGS); status=$$?; \
	  $(MAKE) -s asan-report && exit $$status

test-fast: all $(FIXTURES) $(addprefix build/tests/,$(TESTS))
	@rm -f build/tests/paths-run.txt
	@$(call run_suites,build/tests,,GPT2_BIN=build/gpt2 GPT2_PATHS_RUN=build/tests/paths-run.txt)
	@echo "== converter (python)"; $(PYTHON) tests/test_convert.py
	@$(MAKE) -s test-examples test-install test-explain-html
	@scripts/paths_covered.sh build/tests/paths-run.txt

# Under ASan + UBSan the whole-model tests run on scalar and the best path of each family
# (GPT2_TEST_PATHS=families) and the longest sweeps on every fourth case (GPT2_TEST_STRIDE=4):
# what the sanitizers look for is in the code each path runs, not in the count of cases,
# and the plain run checks every case on every path.
ASAN_ENV  := ASAN_OPTIONS=detect_leaks=1 GPT2_TEST_PATHS=families GPT2_TEST_STRIDE=4 \
             GPT2_BIN=build/asan/gpt2 GPT2_PATHS_RUN=build/asan/paths-run.txt
# the longest first, so that the cores finish together
ASAN_LONG := test_internals.forward test_internals.decode test_internals.quant
ASAN_LOGS := $(patsubst %,build/asan/log/%.log,$(ASAN_LONG) $(filter-out $(ASAN_LONG),$(SUITES)))

# one sanitized suite, its output and then "exit status: N" into build/asan/log/PROGRAM.SUITE.log
build/asan/log/%.log: FORCE
	@mkdir -p build/asan/log build/asan/scratch
	@s=$*; $(suite_cmd); \
	  { $(ASAN_ENV) build/asan/$$prog $$arg; echo "exit status: $$?"; } >$@ 2>&1

test-asan: $(ASAN_DEPS)
	@rm -rf build/asan/log build/asan/paths-run.txt
	@$(MAKE) -s -k -j$(JOBS) $(ASAN_LOGS); $(MAKE) -s asan-report

# the sanitized suites' logs, in order; fails unless every one ran and passed
asan-report:
	@echo "== under ASan + UBSan the whole-model tests run on scalar and the best path of each"
	@echo "   family (GPT2_TEST_PATHS=families), the longest sweeps on every 4th case"
	@failed=; for s in $(SUITES); do log=build/asan/log/$$s.log; $(suite_cmd); \
	  echo "== $$prog $$arg (asan+ubsan)"; \
	  if [ -f $$log ]; then cat $$log; else echo "(did not run)"; fi; \
	  tail -n 1 $$log 2>/dev/null | grep -qx 'exit status: 0' || failed="$$failed $$s"; done; \
	  scripts/paths_covered.sh build/asan/paths-run.txt; \
	  [ -z "$$failed" ] || { echo "make test: failed under ASan + UBSan:$$failed"; exit 1; }

FORCE:

# the examples run on the fixture model, static and shared; then an install into a scratch
# DESTDIR, and an example built against the installed copy through pkg-config alone
test-examples: examples $(FIXTURES)
	@echo "== examples (static and shared)"
	@sh tests/test_examples.sh build/examples build/fixtures/tiny.gguf

# gpt2 explain --html rendered by a real browser (chromium, headless); fails without one
test-explain-html: build/gpt2 build/fixtures/tiny.gguf
	@echo "== gpt2 explain --html in chromium"
	@sh tests/test_explain_html.sh build/gpt2 build/fixtures/tiny.gguf

test-install: all
	@echo "== make install into a scratch DESTDIR, pkg-config, uninstall"
	@sh tests/test_install.sh "$(MAKE)" build/fixtures/tiny.gguf

# `make test-tsan`: the threaded suites under ThreadSanitizer (slow; not part of `make test`)
build/tsan/%: tests/%.c tests/common.h tests/gguf_builder.h src/gpt2.c include/gpt2.h | build/.dirs
	mkdir -p build/tsan
	$(CC) $(CPPFLAGS) -O1 -g1 -fsanitize=thread $(WARN) -Wno-unused-function $< -lcmocka $(LDLIBS) -o $@

test-tsan: $(FIXTURES) build/tsan/test_internals
	@set -e; for s in forward decode; do echo "== test_internals $$s (tsan)"; \
	  TSAN_OPTIONS=halt_on_error=1 build/tsan/test_internals $$s; done

# ---- arm64, under emulation ------------------------------------------------------------------
# `make test-arm`: the suites cross-built for arm64 (Debian's gcc-aarch64-linux-gnu, cmocka from
# libcmocka-dev:arm64) and run under qemu-aarch64, on scalar and every NEON path: qemu's default
# CPU has dotprod, and each suite forces neon-nodotprod too. Then the run-time detection, on
# an emulated Cortex-A53 (no dotprod). No ASan build: emulation is slow enough.
# Under emulation the longest replays and sweeps check every ARM_STRIDE-th case (the suites
# print where: GPT2_TEST_STRIDE in tests/common.h); ARM_STRIDE=1 runs them all (~30 minutes).
ARM_STRIDE ?= 4
ARM_CC    ?= aarch64-linux-gnu-gcc
ARM_AR    ?= aarch64-linux-gnu-ar
# The arm64 C library: Debian's multiarch libc6:arm64 (which libcmocka-dev:arm64 brings) when
# installed, else the cross toolchain's copy through -L. (qemu 7.2 with `-L /usr/aarch64-linux-gnu`,
# whose libc is the older 2.36-8, hangs in the first pthread_create of a dynamic binary.)
ARM_SYSROOT ?= /usr/aarch64-linux-gnu
ARM_RUN   ?= $(if $(wildcard /lib/ld-linux-aarch64.so.1),qemu-aarch64,qemu-aarch64 -L $(ARM_SYSROOT))
ARM_DIR   := build/arm64
ARM_TESTS := $(TESTS)

$(ARM_DIR)/gpt2.o: src/gpt2.c include/gpt2.h src/unicode_tables.h
	@mkdir -p $(ARM_DIR)/tests
	$(ARM_CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

$(ARM_DIR)/libgpt2.a: $(ARM_DIR)/gpt2.o
	rm -f $@
	$(ARM_AR) rcs $@ $^

$(ARM_DIR)/gpt2: src/main.c src/explain.c include/gpt2.h $(ARM_DIR)/libgpt2.a
	$(ARM_CC) $(CPPFLAGS) $(CFLAGS) $(WARN) src/main.c src/explain.c $(ARM_DIR)/libgpt2.a $(LDLIBS) -o $@

$(ARM_DIR)/tests/test_internals: $(WHITEBOX) src/gpt2.c

$(ARM_DIR)/tests/%: tests/%.c tests/common.h tests/gguf_builder.h $(wildcard tests/data/*.inc) $(ARM_DIR)/libgpt2.a
	$(ARM_CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Wno-unused-function $< $(ARM_DIR)/libgpt2.a -lcmocka $(LDLIBS) -o $@

test-arm: $(FIXTURES) | build/.dirs
	@$(MAKE) -s -j$(JOBS) $(ARM_DIR)/gpt2 $(addprefix $(ARM_DIR)/tests/,$(ARM_TESTS))
	@rm -f $(ARM_DIR)/paths-run.txt
	@echo "test-arm: GPT2_TEST_STRIDE=$(ARM_STRIDE) (the longest replays check every $(ARM_STRIDE)-th case)"
	@$(call run_suites,$(ARM_DIR)/tests, (arm64, qemu),GPT2_TEST_STRIDE=$(ARM_STRIDE) \
	  GPT2_BIN="$(ARM_RUN) $(ARM_DIR)/gpt2" GPT2_PATHS_RUN=$(ARM_DIR)/paths-run.txt $(ARM_RUN))
	@scripts/paths_covered.sh $(ARM_DIR)/paths-run.txt
	@echo "== kernel path detection (arm64, qemu default CPU and -cpu cortex-a53)"
	@sh tests/test_arm_detect.sh "$(ARM_RUN)" $(ARM_DIR)/gpt2 build/fixtures/tiny.gguf

# ---- fuzzing (libFuzzer; needs clang) -------------------------------------------------------
# Every tests/fuzz/fuzz_*.c is a target. `make fuzz` builds them all and runs each for FUZZ_S
# seconds, one after another, at the lowest priority: its corpus grows in build/fuzz/<target>
# (seeded from tests/fuzz/corpus/<target>, which is only read), crashes go to
# build/fuzz/artifacts. tests/fuzz/<target>.dict, when present, is its dictionary.
# FUZZ_SAN picks the sanitizers (FUZZ_SAN=undefined: UBSan alone); FUZZ_ARGS adds options.
# A crash is replayed with: build/fuzz/bin/address-undefined/<target> <artifact>
FUZZ_CC      ?= clang
FUZZ_S       ?= 60
FUZZ_SAN     ?= address,undefined
FUZZ_ARGS    ?=
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_TARGETS := $(sort $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
fuzz_comma   := ,
FUZZ_BIN     := build/fuzz/bin/$(subst $(fuzz_comma),-,$(FUZZ_SAN))

# The engine at -O0: clang 14 takes over 15 minutes for it at -O1 with ASan + UBSan (the
# quantized formats' tiles are many large inlined functions), under a minute at -O0.
$(FUZZ_BIN)/gpt2.o: src/gpt2.c include/gpt2.h src/unicode_tables.h
	@mkdir -p $(FUZZ_BIN)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -O0 -fsanitize=fuzzer-no-link,$(FUZZ_SAN) $(WARN) -c $< -o $@

$(FUZZ_BIN)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h src/main.c $(FUZZ_BIN)/gpt2.o
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) $(WARN) $< $(FUZZ_BIN)/gpt2.o $(LDLIBS) -o $@

fuzz-build: $(addprefix $(FUZZ_BIN)/,$(FUZZ_TARGETS))

fuzz: fuzz-build build/fixtures/tiny.gguf
	@mkdir -p build/fuzz/artifacts
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== $$t ($(FUZZ_S) s, $(FUZZ_SAN))"; mkdir -p build/fuzz/$$t; \
	  dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	  seeds=; [ -d tests/fuzz/corpus/$$t ] && seeds=tests/fuzz/corpus/$$t; \
	  ASAN_OPTIONS=detect_leaks=1:$${ASAN_OPTIONS:-} nice -n 19 $(FUZZ_BIN)/$$t -max_total_time=$(FUZZ_S) \
	    -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$$t- $$dict $(FUZZ_ARGS) \
	    build/fuzz/$$t $$seeds 2>build/fuzz/$$t.log \
	    || { tail -n 60 build/fuzz/$$t.log; echo "$$t: FAILED (log: build/fuzz/$$t.log)"; exit 1; }; \
	  grep -E '^#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|new_units_added|peak_rss)' \
	    build/fuzz/$$t.log || true; \
	done; echo "fuzz: $(words $(FUZZ_TARGETS)) passed, 0 failed"
	@$(MAKE) --no-print-directory fuzz-convert FUZZ_S=$(FUZZ_S)

# the converter's safetensors / pickle / zip readers (Python, no clang): mutated fixtures under a
# 1 GiB RLIMIT_AS, FUZZ_S seconds; findings go to build/fuzz/artifacts/convert-SEED-CASE.<file>,
# replayed with: python3 tests/fuzz/fuzz_convert.py --replay <artifact>. FUZZ_SEED fixes the seed.
fuzz-convert:
	@mkdir -p build/fuzz/artifacts
	@echo "== fuzz_convert ($(FUZZ_S) s)"; nice -n 19 $(PYTHON) tests/fuzz/fuzz_convert.py -t $(FUZZ_S) \
	  --artifacts build/fuzz/artifacts $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

# a short run of every target (CI calls it when clang is there)
fuzz-smoke:
	@$(MAKE) -s fuzz FUZZ_S=20

# regenerates tests/fuzz/corpus/ (small synthetic GGUF images, texts and id arrays)
build/fuzz/make_seeds: tests/fuzz/make_seeds.c tests/gguf_builder.h tests/common.h
	@mkdir -p build/fuzz
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Wno-unused-function $< -o $@

fuzz-seeds: build/fuzz/make_seeds build/fixtures/tiny.gguf
	build/fuzz/make_seeds tests/fuzz/corpus build/fixtures/tiny.gguf

# ---- benchmarks and a demo ------------------------------------------------------------------

bench: all
	@scripts/bench.sh

MODEL ?= models/gpt2-124M.gguf
run: all
	@test -f $(MODEL) || $(PYTHON) scripts/convert.py gpt2 -o $(MODEL)
	build/gpt2 -m $(MODEL) -p "The meaning of life is" -n 64 --stats

clean:
	rm -rf build
