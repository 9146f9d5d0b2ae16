#!/bin/sh
# Runs every example, linked statically and against libgpt2.so, on the fixture model and
# checks what each prints. Usage: tests/test_examples.sh BUILD_DIR MODEL
set -eu
dir=$1 model=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
for kind in "" shared-; do
    out=$("$dir/${kind}simple" "$model" "Hello world")
    case $out in "Hello world"?*) ;; *) fail "${kind}simple printed: $out" ;; esac
    [ "$("$dir/${kind}simple" "$model" "Hello world")" = "$out" ] || fail "${kind}simple is not deterministic"
    # stream: the same text twice (a fixed seed), and a stop string taken from its own output cuts it
    a=$("$dir/${kind}stream" "$model" "Once upon a time" 2>/dev/null)
    [ "$("$dir/${kind}stream" "$model" "Once upon a time" 2>/dev/null)" = "$a" ] || fail "${kind}stream differs between runs"
    stop=$(printf '%s' "$a" | cut -c25-27)
    b=$("$dir/${kind}stream" "$model" "Once upon a time" "$stop" 2>"$dir/stream.err")
    grep -q "stopped by a stop string" "$dir/stream.err" || fail "${kind}stream did not stop at '$stop'"
    case $b in *"$stop"*) fail "${kind}stream printed the stop string" ;; esac
    case $a in "$b"*) ;; *) fail "${kind}stream's cut text is not a prefix" ;; esac
    # logits: 5 rows of probabilities in decreasing order
    "$dir/${kind}logits" "$model" "Hello" 5 > "$dir/logits.out"
    [ "$(grep -c ' p 0\.' "$dir/logits.out")" = 5 ] || fail "${kind}logits printed: $(cat "$dir/logits.out")"
    # chat: two turns, the cache kept across them
    printf 'hi\nhow are you\n' | "$dir/${kind}chat" "$model" > "$dir/chat.out" 2>"$dir/chat.err"
    [ "$(grep -c '^User: ' "$dir/chat.out")" = 2 ] || fail "${kind}chat: $(cat "$dir/chat.out")"
    grep -q 'positions used' "$dir/chat.err" || fail "${kind}chat did not report its context"
    # bad arguments: a usage line, status 2; a missing model: status 1
    set +e
    "$dir/${kind}simple" >/dev/null 2>&1; [ $? = 2 ] || fail "${kind}simple without a model"
    "$dir/${kind}simple" no/such.gguf >/dev/null 2>&1; [ $? = 1 ] || fail "${kind}simple with a missing model"
    set -e
done
# only gpt2_* leaves the shared library
extra=$(nm -D --defined-only build/libgpt2.so | awk '{print $3}' | grep -v '^gpt2_' | grep -v '^GPT2' || true)
[ -z "$extra" ] || fail "libgpt2.so exports: $extra"
soname=$(objdump -p build/libgpt2.so | awk '/SONAME/ {print $2}')
case $soname in libgpt2.so.[0-9]*) ;; *) fail "soname is '$soname'" ;; esac
echo "examples: simple stream logits chat, static and shared: ok ($soname, gpt2_* only)"
# the README's library example compiles as shown and runs
awk '/^## The library/ {lib=1} lib && /^```c$/ {on=1; next} on && /^```$/ {exit} on {print}' README.md > "$dir/readme.c"
[ -s "$dir/readme.c" ] || fail "no C example found in README.md"
cc -std=c11 -Wall -Wextra -Werror -Iinclude "$dir/readme.c" build/libgpt2.a -lm -lpthread -o "$dir/readme"
"$dir/readme" "$model" | grep -q '^Hello, my name is' || fail "the README example did not run"
echo "README library example: compiles with -Wall -Wextra -Werror, runs"
