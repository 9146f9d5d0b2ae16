#!/usr/bin/env bash
# make bench: a random GPT-2 124M (the project's own scripts make it), converted to F32, F16, BF16
# and Q8_0, then `gpt2 bench` at 1 and 2 threads. Prints figures; passes or fails nothing.
#   SIZE=355M scripts/bench.sh      other GPT-2 sizes (124M, 355M, 774M, 1558M)
#   REPS=5 PP=512 TG=128            repetitions (medians) and token counts
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-124M}; REPS=${REPS:-3}; PP=${PP:-512}; TG=${TG:-128}
dir=models/bench
mkdir -p "$dir"
if [ ! -f "$dir/gpt2-$SIZE-f32.gguf" ]; then
    [ -f "$dir/hf-$SIZE/model.safetensors" ] || python3 scripts/make_random_model.py "$dir/hf-$SIZE" --size "$SIZE"
    start=$(date +%s.%N)
    python3 scripts/convert.py "$dir/hf-$SIZE" -o "$dir/gpt2-$SIZE-f32.gguf"
    echo "convert (f32): $(echo "$(date +%s.%N) - $start" | bc) s"
fi
for t in f16 bf16 q8_0; do
    [ -f "$dir/gpt2-$SIZE-$t.gguf" ] || build/gpt2 quantize "$dir/gpt2-$SIZE-f32.gguf" "$dir/gpt2-$SIZE-$t.gguf" "$t"
done
echo
echo "tokenizer:"
build/gpt2 bench --tokenizer -m "$dir/gpt2-$SIZE-f32.gguf" || true
echo
printf "%-6s %-3s %10s %10s %10s %10s %8s %9s\n" type thr "pp128 t/s" "pp$PP t/s" "tg$TG t/s" "GB/s" "of peak" "load ms"
for t in f32 f16 bf16 q8_0; do
    for th in 1 2; do
        m="$dir/gpt2-$SIZE-$t.gguf"
        a=$(build/gpt2 bench -m "$m" -p 128 -n 0 -t "$th" -r "$REPS")
        b=$(build/gpt2 bench -m "$m" -p "$PP" -n "$TG" -t "$th" -r "$REPS" --roofline)
        pp128=$(echo "$a" | awk '/^pp/ {print $2}')
        ppN=$(echo "$b" | awk '/^pp/ {print $2}')
        tg=$(echo "$b" | awk '/^tg/ {print $2}')
        gbs=$(echo "$b" | awk '/^achieved/ {print $2}')
        ratio=$(echo "$b" | awk '/^roofline/ {print $2}')
        load=$(echo "$b" | awk '/^load/ {print $2}')
        printf "%-6s %-3s %10s %10s %10s %10s %8s %9s\n" "$t" "$th" "$pp128" "$ppN" "$tg" "$gbs" "$ratio" "$load"
    done
done
