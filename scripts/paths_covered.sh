#!/bin/sh
# Summarises the kernel paths the test suites ran (each suite appends "test: path path ..."
# lines to the file given) and the paths this CPU could not run.
f=${1:-build/tests/paths-run.txt}
if [ ! -s "$f" ]; then echo "kernel paths covered: none recorded ($f is missing)"; exit 1; fi
ran=$(cut -d: -f2- "$f" | tr ' ' '\n' | grep -v '^$' | sort -u | tr '\n' ' ')
tests=$(wc -l < "$f" | tr -d ' ')
echo "kernel paths covered: ${ran}(by $tests path-dependent tests)"
