/* fuzz_stream.c — the UTF-8-safe streaming of token bytes and stop-string matching
 * (gpt2_text_stream), with any bytes cut into any pushes.
 *
 * Input: byte 0: the number of stop strings (0..3, low 2 bits); then for each, one length
 * byte (1..8) and its bytes; then the text, cut into pushes at every byte equal to the
 * first byte of the input (a push may be empty).
 * Properties:
 *   - what comes out is the text before the first stop string to be complete, all of it if
 *     none is: push returns 1 exactly when one completes in its bytes, and the cut is at the
 *     earliest start among the stop strings that complete in that push (a stop string that
 *     began earlier but is still incomplete when another completes does not count);
 *   - no piece is empty, and before the flush no piece ends in a UTF-8 character that the
 *     next bytes of the text continue, except the text before a stop string (it is final);
 *     a lead byte followed by a byte that cannot continue it is broken already and may go;
 *   - after a stop, pushes return 1 and hand out nothing.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint8_t out[1 << 16];
    size_t len;
    int flushing;
    int unfinished; /* pieces of this push that ended inside a character */
    const uint8_t *text; /* the whole text, to see what follows a piece */
    size_t text_len;
} sink;

/* a lead byte and fewer continuation bytes than it announces, at the end of s */
static int ends_unfinished(const uint8_t *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t b = s[n - back];
        if ((b & 0xC0) == 0x80) continue;
        size_t need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
        return need > back;
    }
    return 0;
}

static int take(void *user, const char *text, size_t len) {
    sink *k = user;
    FUZZ_CHECK(len > 0, "an empty piece");
    FUZZ_CHECK(k->len + len <= sizeof k->out, "more out than in");
    memcpy(k->out + k->len, text, len);
    k->len += len;
    if (!k->flushing && ends_unfinished((const uint8_t *)text, len) && k->len < k->text_len &&
        (k->text[k->len] & 0xC0) == 0x80)
        k->unfinished++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 60000) return 0;
    size_t pos = 1;
    int n_stop = data[0] & 3;
    char stops[3][9];
    const char *sp[3];
    size_t sl[3];
    for (int i = 0; i < n_stop; i++) {
        if (pos >= size) return 0;
        size_t l = (size_t)(data[pos++] & 7) + 1;
        if (pos + l > size) return 0;
        memcpy(stops[i], data + pos, l);
        stops[i][l] = '\0';
        if (strlen(stops[i]) != l) return 0; /* stop strings are C strings */
        sp[i] = stops[i];
        sl[i] = l;
        pos += l;
    }
    const uint8_t *text = data + pos;
    size_t n = size - pos;
    /* the expected output, push by push: the first push in which some stop string ends cuts
       the text at the earliest start among those ending in it */
    size_t want = n;
    int stops_at_all = 0;
    for (size_t i = 0, from = 0; i <= n && !stops_at_all; i++) {
        if (i < n && text[i] != data[0]) continue;
        for (int j = 0; j < n_stop; j++)
            for (size_t p = 0; p + sl[j] <= i; p++)
                if (p + sl[j] > from && p < want && !memcmp(text + p, sp[j], sl[j])) {
                    want = p;
                    stops_at_all = 1;
                    break;
                }
        from = i;
    }
    gpt2_text_stream *ts;
    FUZZ_CHECK(gpt2_text_stream_new(n_stop ? sp : NULL, (size_t)n_stop, &ts) == GPT2_OK, "new failed");
    static sink k;
    k.len = 0;
    k.flushing = 0;
    k.text = text;
    k.text_len = n;
    int stopped = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && text[i] != data[0]) continue;
        k.unfinished = 0;
        int r = gpt2_text_stream_push(ts, (const char *)text + start, i - start, take, &k);
        FUZZ_CHECK(r == 0 || r == 1, "push returned %d", r);
        FUZZ_CHECK(r == 1 || k.unfinished == 0, "a piece ends inside a character");
        if (stopped) FUZZ_CHECK(r == 1, "a push after the stop returned %d", r);
        if (r == 1) stopped = 1;
        start = i;
    }
    size_t before_flush = k.len;
    k.flushing = 1;
    if (!gpt2_text_stream_stopped(ts)) gpt2_text_stream_flush(ts, take, &k);
    FUZZ_CHECK(stopped == stops_at_all, "stopped %d, expected %d", stopped, stops_at_all);
    FUZZ_CHECK(!stopped || k.len == before_flush, "a flush after a stop handed out text");
    FUZZ_CHECK(k.len == want && !memcmp(k.out, text, want), "out %zu bytes, expected the first %zu", k.len, want);
    gpt2_text_stream_free(ts);
    return 0;
}
