#!/bin/sh
# make install into a scratch DESTDIR, build an example against the installed copy with
# nothing but pkg-config, run it, then make uninstall and check nothing is left.
# Usage: tests/test_install.sh MAKE MODEL
set -eu
make=$1 model=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v pkg-config >/dev/null || fail "pkg-config is missing (apt-get install pkg-config)"
root=$(pwd)/build/install-test prefix=/opt/gpt2c
rm -rf "$root" build/install-out; mkdir -p build/install-out
$make -s install DESTDIR="$root" PREFIX="$prefix" >/dev/null
for f in bin/gpt2 include/gpt2.h lib/libgpt2.a lib/libgpt2.so lib/pkgconfig/gpt2.pc; do
    [ -e "$root$prefix/$f" ] || fail "not installed: $f"
done
export PKG_CONFIG_PATH="$root$prefix/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$root"
flags=$(pkg-config --cflags --libs gpt2)
cc -std=c11 -O2 examples/simple.c $flags -o build/install-out/simple-shared
LD_LIBRARY_PATH="$root$prefix/lib" build/install-out/simple-shared "$model" "Hello" > build/install-out/out
grep -q '^Hello' build/install-out/out || fail "the installed shared library did not run"
# static: the private libraries come with --static
cc -std=c11 -O2 examples/simple.c $(pkg-config --cflags gpt2) "$root$prefix/lib/libgpt2.a" \
   $(pkg-config --static --libs-only-l gpt2 | sed 's/-lgpt2//') -o build/install-out/simple-static
build/install-out/simple-static "$model" "Hello" | cmp -s - build/install-out/out || fail "static and shared differ"
"$root$prefix/bin/gpt2" --version | grep -q '^gpt2 ' || fail "the installed gpt2 does not run"
$make -s uninstall DESTDIR="$root" PREFIX="$prefix" >/dev/null
left=$(find "$root" -type f | wc -l)
[ "$left" = 0 ] || fail "uninstall left $left files"
rm -rf "$root" build/install-out
echo "install: bin, include, lib (.a, .so), pkgconfig into DESTDIR; pkg-config build ok; uninstall clean"
