# gpt2c — `make` builds build/libgpt2.a and build/gpt2; `make test`; `make bench`; `make run`.

CC      ?= cc
PYTHON  ?= python3
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes
CPPFLAGS += -Iinclude -Isrc
LDLIBS  := -lm -lpthread

# the sanitized build of the test suites
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

TESTS    := test_tokenizer test_model test_forward test_decode test_cli
FIXTURES := build/fixtures/tiny.gguf build/fixtures/tiny-pt.gguf build/fixtures/tiny-f16.gguf

.PHONY: all test test-fast test-asan test-tsan bench run clean fixtures

all: build/libgpt2.a build/gpt2

build/gpt2.o: src/gpt2.c include/gpt2.h src/unicode_tables.h | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

build/libgpt2.a: build/gpt2.o
	rm -f $@
	ar rcs $@ $^

build/main.o: src/main.c include/gpt2.h | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

build/gpt2: build/main.o build/libgpt2.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

build/.dirs:
	mkdir -p build/tests build/asan build/fixtures && touch $@

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

build/tests/%: tests/%.c tests/common.h tests/gguf_builder.h $(wildcard tests/data/*.inc) src/gpt2.c build/libgpt2.a | build/.dirs
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Wno-unused-function $< build/libgpt2.a -lcmocka $(LDLIBS) -o $@

# sanitized builds of the library, the suites and the tool
build/asan/gpt2.o: src/gpt2.c include/gpt2.h src/unicode_tables.h | build/.dirs
	$(CC) $(CPPFLAGS) $(SAN_FLAGS) $(WARN) -c $< -o $@

build/asan/libgpt2.a: build/asan/gpt2.o
	rm -f $@
	ar rcs $@ $^

build/asan/%: tests/%.c tests/common.h tests/gguf_builder.h $(wildcard tests/data/*.inc) build/asan/libgpt2.a | build/.dirs
	$(CC) $(CPPFLAGS) $(SAN_FLAGS) $(WARN) -Wno-unused-function $< build/asan/libgpt2.a -lcmocka $(LDLIBS) -o $@

build/asan/gpt2: src/main.c build/asan/libgpt2.a | build/.dirs
	$(CC) $(CPPFLAGS) $(SAN_FLAGS) $(WARN) $^ $(LDLIBS) -o $@

# `make test`: the suites, the converter's tests, then the suites again under ASan + UBSan.
# Everything is built first, in parallel; the suites then run one after another.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
TEST_DEPS := all $(FIXTURES) $(addprefix build/tests/,$(TESTS)) $(addprefix build/asan/,$(TESTS)) build/asan/gpt2

test:
	@$(MAKE) -s -j$(JOBS) $(TEST_DEPS)
	@$(MAKE) -s test-fast test-asan

test-fast: all $(FIXTURES) $(addprefix build/tests/,$(TESTS))
	@rm -f build/tests/paths-run.txt
	@set -e; for t in $(TESTS); do echo "== $$t"; GPT2_BIN=build/gpt2 build/tests/$$t; done
	@echo "== converter (python)"; $(PYTHON) tests/test_convert.py
	@scripts/paths_covered.sh build/tests/paths-run.txt

test-asan: $(FIXTURES) $(addprefix build/asan/,$(TESTS)) build/asan/gpt2
	@rm -f build/tests/paths-run.txt
	@set -e; for t in $(TESTS); do echo "== $$t (asan+ubsan)"; \
	  ASAN_OPTIONS=detect_leaks=1 GPT2_BIN=build/asan/gpt2 build/asan/$$t; done
	@scripts/paths_covered.sh build/tests/paths-run.txt

# `make test-tsan`: the threaded suites under ThreadSanitizer (slow; not part of `make test`)
build/tsan/%: tests/%.c tests/common.h tests/gguf_builder.h src/gpt2.c include/gpt2.h | build/.dirs
	mkdir -p build/tsan
	$(CC) $(CPPFLAGS) -O1 -g -fsanitize=thread $(WARN) -Wno-unused-function $< -lcmocka $(LDLIBS) -o $@

test-tsan: $(FIXTURES) build/tsan/test_forward build/tsan/test_decode
	@set -e; for t in test_forward test_decode; do echo "== $$t (tsan)"; \
	  TSAN_OPTIONS=halt_on_error=1 build/tsan/$$t; done

# ---- benchmarks and a demo ------------------------------------------------------------------

bench: all
	@scripts/bench.sh

MODEL ?= models/gpt2-124M.gguf
run: all
	@test -f $(MODEL) || $(PYTHON) scripts/convert.py gpt2 -o $(MODEL)
	build/gpt2 -m $(MODEL) -p "The meaning of life is" -n 64 --stats

clean:
	rm -rf build
