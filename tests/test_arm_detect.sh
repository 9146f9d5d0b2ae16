#!/bin/sh
# The arm64 kernel path chosen at run time, under qemu (make test-arm): on qemu's default CPU
# (which has FEAT_DotProd) the best path is neon-dotprod; on an emulated Cortex-A53 (armv8.0,
# no dotprod) it is neon, and forcing neon-dotprod is refused.
# usage: test_arm_detect.sh "QEMU-COMMAND" GPT2-BINARY MODEL
set -u
run=$1 bin=$2 model=$3
fails=0
check() { # description, expected substring, command...
    what=$1 want=$2
    shift 2
    got=$("$@" 2>&1)
    if printf '%s' "$got" | grep -q -- "$want"; then
        echo "  ok: $what"
    else
        echo "  FAILED: $what: wanted [$want], got [$got]"
        fails=$((fails + 1))
    fi
}
# $run is a command with arguments: split on purpose
# shellcheck disable=SC2086
check "default CPU: best path neon-dotprod" "neon-dotprod kernels" $run "$bin" info -m "$model"
check "cortex-a53: best path neon" "(neon kernels)\|, neon kernels" $run -cpu cortex-a53 "$bin" info -m "$model"
check "cortex-a53: neon-dotprod refused" "GPT2_KERNELS=neon-dotprod: this CPU cannot run" \
    env GPT2_KERNELS=neon-dotprod $run -cpu cortex-a53 "$bin" info -m "$model"
check "default CPU: neon-nodotprod forced" ", neon kernels" \
    env GPT2_KERNELS=neon-nodotprod $run "$bin" info -m "$model"
check "cortex-a53: generation runs" "neon kernels" \
    $run -cpu cortex-a53 "$bin" -m "$model" -p "Hello" -n 4 --greedy --stats
[ "$fails" -eq 0 ] && echo "kernel path detection: 5 passed" && exit 0
echo "kernel path detection: $fails failed"
exit 1
