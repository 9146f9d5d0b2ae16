#!/bin/sh
# test_explain_html.sh — `gpt2 explain --html` in a real browser (Debian's chromium, headless).
#
#   sh tests/test_explain_html.sh BIN MODEL
#
# For English and Korean: writes the page, checks it is self-contained (no URL it would
# load), renders it with `chromium --headless --dump-dom` (after the scripts ran) and
# checks every section is there with the prompt's token ids, the attention heatmap was
# drawn, the page's load handler ran (#render-ok) and no script error happened
# (window.onerror writes #script-error); then takes a screenshot (build/tests/explain-*.png,
# to look at). A prompt full of HTML must come out as text. No chromium = a failure.
set -u
BIN=${1:-build/gpt2}
MODEL=${2:-build/fixtures/tiny.gguf}
OUT=build/tests/explain-html
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

CHROMIUM=
for c in chromium chromium-browser; do
    if command -v "$c" >/dev/null 2>&1; then CHROMIUM=$c; break; fi
done
if [ -z "$CHROMIUM" ]; then
    echo "FAIL: chromium is not installed; install it (apt-get install chromium fonts-noto-cjk) to test gpt2 explain --html"
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT/profile"
ABS=$(cd "$OUT" && pwd)

browse() { # browse MODE FILE OUTFILE
    timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$ABS/profile" --no-first-run --virtual-time-budget=5000 \
        "$1" "file://$ABS/$2" >"$3" 2>>"$ABS/chromium.log"
}

PROMPT='Hello world, 안녕 <b>&amp;</b>'
IDS=$("$BIN" tokenize -m "$MODEL" "$PROMPT") || { echo "FAIL: gpt2 tokenize"; exit 1; }

for lang in en ko; do
    page=page-$lang.html
    if ! "$BIN" explain -m "$MODEL" -p "$PROMPT" --lang $lang --beams 3 -n 3 --repeat-penalty 1.3 \
        --html "$OUT/$page" >"$OUT/stdout-$lang" 2>"$OUT/stderr-$lang"; then
        fail "$lang: gpt2 explain --html failed: $(cat "$OUT/stderr-$lang")"
        continue
    fi
    [ -s "$OUT/stdout-$lang" ] && fail "$lang: --html alone printed on stdout"
    size=$(wc -c <"$OUT/$page")
    echo "$lang: $page, $size bytes"
    # self-contained: nothing to fetch (the SVG namespace is a name, not a fetch)
    if grep -o -E '(src|href|action)=|@import|url\(|https?://[^"'\'' ]*' "$OUT/$page" | grep -v -x 'http://www.w3.org/2000/svg' | grep -q .; then
        fail "$lang: the page refers to something outside itself: $(grep -o -E '(src|href|action)=|@import|url\(|https?://[^"'\'' ]*' "$OUT/$page" | grep -v -x 'http://www.w3.org/2000/svg' | head -3 | tr '\n' ' ')"
    fi
    grep -q '<b>&amp;</b>' "$OUT/$page" && fail "$lang: the prompt's HTML was not escaped"
    browse --dump-dom "$page" "$OUT/dom-$lang.html" || fail "$lang: chromium --dump-dom failed (see $OUT/chromium.log)"
    dom=$OUT/dom-$lang.html
    grep -q 'id="render-ok"' "$dom" || fail "$lang: the page's load handler did not run (no #render-ok)"
    if grep -q 'id="script-error"' "$dom"; then
        fail "$lang: script error: $(grep -o 'script error: [^<]*' "$dom" | head -1)"
    fi
    for id in tokenization token-strip embeddings attention heatmap logit-lens next-token decoding \
              filters greedy sampling beam-search beam-tree beam-winner; do
        grep -q "id=\"$id\"" "$dom" || fail "$lang: section #$id is missing"
    done
    cells=$(grep -o 'class="cell"' "$dom" | wc -l)
    [ "$cells" -gt 0 ] || fail "$lang: the attention heatmap has no cells"
    for id in $IDS; do
        grep -q "<span class=\"id\">$id</span>" "$dom" || fail "$lang: token id $id is not in the token strip"
    done
    grep -q '&lt;b&gt;' "$dom" || fail "$lang: the prompt's '<b>' is not shown as text"
    grep -q '<b>&amp;' "$dom" && fail "$lang: the prompt became markup"
    if [ $lang = ko ]; then
        for h in '1. 토큰화' '2. 임베딩' '3. 트랜스포머 블록' '4. 다음 토큰 예측' '5. 디코딩' '빔 서치'; do
            grep -q "$h" "$dom" || fail "ko: heading '$h' is missing"
        done
    else
        for h in '1. Tokenization' '2. Embeddings' '3. Transformer blocks' '4. Next token' '5. Decoding' 'beam search'; do
            grep -q "$h" "$dom" || fail "en: heading '$h' is missing"
        done
    fi
    (cd "$OUT" && timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$ABS/profile" --no-first-run --virtual-time-budget=5000 --window-size=1200,3600 \
        --screenshot="$ABS/screenshot-$lang.png" "file://$ABS/$page" >/dev/null 2>>"$ABS/chromium.log")
    if [ -s "$OUT/screenshot-$lang.png" ] && head -c 8 "$OUT/screenshot-$lang.png" | od -An -c | grep -q 'P   N   G'; then
        echo "$lang: screenshot $OUT/screenshot-$lang.png"
    else
        fail "$lang: no screenshot"
    fi
done

# an existing output that is not a regular file is refused, and nothing is left behind
if "$BIN" explain -m "$MODEL" -p hi --html "$OUT" 2>/dev/null; then fail "--html onto a directory was accepted"; fi
ln -s /nonexistent/target "$OUT/link.html"
"$BIN" explain -m "$MODEL" -p hi --html "$OUT/link.html" 2>/dev/null || fail "--html onto a dangling link failed"
[ -f "$OUT/link.html" ] && [ ! -L "$OUT/link.html" ] || fail "--html wrote through a link instead of replacing it"
ls "$OUT" | grep -q '\.tmp$' && fail "a temporary file was left behind"

if [ $fails -gt 0 ]; then
    echo "explain --html: $fails failure(s)"
    exit 1
fi
echo "explain --html: all checks passed (chromium: $("$CHROMIUM" --version 2>/dev/null | head -1))"
