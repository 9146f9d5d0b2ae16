/* explain.c — `gpt2 explain`: every stage of the pipeline for one prompt, shown to a learner.
 *
 *   gpt2 explain [-m MODEL] -p TEXT [--json] [--html FILE] [--lang ko] [decoding flags]
 *
 * Part of the gpt2 tool only (not of libgpt2), and built on gpt2.h's public API alone: the
 * tokenizer trace (gpt2_tokenize_trace), the observer of gpt2_eval (gpt2_context_set_observer),
 * the logit lens (gpt2_logit_lens), the logits processors (gpt2_process_logits), the sampler
 * and beam search (gpt2_generate, with on_beam_step). Nothing is recomputed here that the
 * library computes: what this file prints is what the engine did.
 *
 * The work is in two halves. collect() runs the model once and gathers everything into an
 * `explain` record; then one of three writers shows that record: as text for a terminal
 * (80 columns, colour only on a tty), as JSON, or as one self-contained HTML page. Every
 * heading and explanation comes from the message table, in English or Korean.
 *
 * main.c parses the flags and calls explain_lang_ok() and explain_run() (declared there).
 */
#define _POSIX_C_SOURCE 200809L
#include "gpt2.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int explain_lang_ok(const char *lang);
int explain_run(const gpt2_model *m, gpt2_context *c, const char *text, size_t len, int special,
                const gpt2_generate_params *gp, int top_n, int json, const char *html_path,
                const char *lang, char *err, size_t err_len);

#define MAX_PROMPT_TOKENS 256 /* the attention data grows with its square */
#define N_FIRST 4             /* embedding values shown */
#define LENS_ROWS 256         /* rows per call of the logit lens (V floats each) */

/* ==========================================================================================
 * Messages, in English and Korean
 * ======================================================================================== */

typedef enum {
    M_TITLE, M_PROMPT, M_MODEL,
    M_TOK, M_TOK_EXPL, M_PIECES, M_PIECE, M_MERGES, M_MERGE_RANK, M_SPECIAL, M_FINAL, M_TOKEN,
    M_ID, M_BYTES, M_TOK_NOTE,
    M_EMB, M_EMB_EXPL, M_POS, M_WTE, M_WPE, M_SUM, M_FIRST, M_ALIKE, M_ALIKE_EXPL,
    M_BLOCKS, M_BLOCKS_EXPL, M_LAYER, M_HEAD, M_ATT_LEGEND, M_NORM_TITLE, M_NORM_LAST,
    M_NORM_MEAN, M_LENS, M_LENS_EXPL, M_LENS_TOP, M_PROB,
    M_NEXT, M_NEXT_EXPL, M_LOGIT, M_CUM,
    M_DEC, M_DEC_EXPL, M_RAW, M_REP, M_TEMP, M_TOPK, M_TOPP, M_KEPT, M_REMOVED, M_NOFILTER,
    M_GREEDY, M_GREEDY_EXPL, M_SAMPLE, M_SAMPLE_OFF, M_SAMPLE_EXPL, M_SAMPLE_TOP,
    M_SAMPLE_NOTTOP, M_RANK, M_INTERVAL,
    M_BEAMS, M_BEAMS_EXPL, M_STEP, M_SCORE, M_FROM, M_FINISHED, M_WINNER, M_DONE,
    M_ATT_SELECT, M_HOVER, M_BARS_EXPL, M_LENS_GRID_EXPL, M_EMB_VIEW, M_TOKENS, M_LAYERS, M_HEADS,
    M_ALIKE_SHORT,
    M_COUNT
} msg_id;

static const char *const messages[M_COUNT][2] = {
    [M_TITLE] = {"gpt2 explain: one prompt through GPT-2, stage by stage",
                 "gpt2 explain: 프롬프트 하나가 GPT-2를 지나가는 과정, 단계별로"},
    [M_PROMPT] = {"prompt", "프롬프트"},
    [M_MODEL] = {"model", "모델"},
    [M_TOK] = {"1. Tokenization", "1. 토큰화"},
    [M_TOK_EXPL] = {"The pre-tokenizer cuts the text into pieces (words with their leading space, "
                    "numbers, punctuation). Each piece starts as one token per byte; BPE then "
                    "merges the pair with the lowest rank, again and again, until no pair in "
                    "the piece has a merge.",
                    "사전 토크나이저가 텍스트를 조각(앞 공백을 포함한 단어, 숫자, 문장 부호)으로 "
                    "자릅니다. 각 조각은 바이트 하나당 토큰 하나로 시작하고, BPE가 순위(rank)가 "
                    "가장 낮은 쌍을 더 이상 병합할 쌍이 없을 때까지 반복해서 병합합니다."},
    [M_PIECES] = {"pieces", "조각"},
    [M_PIECE] = {"piece", "조각"},
    [M_MERGES] = {"merges", "병합"},
    [M_MERGE_RANK] = {"rank", "순위"},
    [M_SPECIAL] = {"special token", "특수 토큰"},
    [M_FINAL] = {"final tokens", "최종 토큰"},
    [M_TOKEN] = {"token", "토큰"},
    [M_ID] = {"id", "id"},
    [M_BYTES] = {"bytes", "바이트"},
    [M_TOK_NOTE] = {"␣ is a leading space; \\xNN is a byte that is only part of a UTF-8 "
                    "character (Korean syllables take 3 bytes, so often 2-3 tokens).",
                    "␣는 앞 공백, \\xNN은 UTF-8 문자의 일부만 담은 바이트입니다 (한글 음절은 "
                    "3바이트라서 흔히 토큰 2~3개가 됩니다)."},
    [M_EMB] = {"2. Embeddings", "2. 임베딩"},
    [M_EMB_EXPL] = {"Each token id selects a row of the token embedding (wte), each position a "
                    "row of the position embedding (wpe); their sum enters block 0. |x| is a "
                    "vector's length (L2 norm).",
                    "토큰 id마다 토큰 임베딩(wte)의 한 행을, 위치마다 위치 임베딩(wpe)의 한 행을 "
                    "고르고, 둘의 합이 블록 0으로 들어갑니다. |x|는 벡터의 길이(L2 노름)입니다."},
    [M_POS] = {"pos", "위치"},
    [M_WTE] = {"|wte|", "|wte|"},
    [M_WPE] = {"|wpe|", "|wpe|"},
    [M_SUM] = {"|sum|", "|합|"},
    [M_FIRST] = {"first values of the sum", "합의 처음 값들"},
    [M_ALIKE] = {"most alike earlier position", "가장 닮은 앞 위치"},
    [M_ALIKE_EXPL] = {"GPT-2 learns its position embeddings: neighbouring positions come out "
                      "alike (cosine similarity of wpe rows).",
                      "GPT-2는 위치 임베딩을 학습합니다: 이웃한 위치끼리 닮게 됩니다 (wpe 행의 "
                      "코사인 유사도)."},
    [M_BLOCKS] = {"3. Transformer blocks", "3. 트랜스포머 블록"},
    [M_BLOCKS_EXPL] = {"Each block: masked multi-head self-attention (each token looks only at "
                       "itself and earlier tokens), then an MLP; both add to the residual stream.",
                       "각 블록: 마스크된 멀티헤드 셀프 어텐션(각 토큰은 자신과 앞 토큰만 봄), "
                       "그다음 MLP. 둘 다 잔차 스트림에 더해집니다."},
    [M_LAYER] = {"layer", "층"},
    [M_HEAD] = {"head", "헤드"},
    [M_ATT_LEGEND] = {"p:w = the position this token attends to most, with weight w%",
                      "p:w = 이 토큰이 가장 많이 주목하는 위치 p와 가중치 w%"},
    [M_NORM_TITLE] = {"residual stream and logit lens per layer",
                      "층별 잔차 스트림과 로짓 렌즈"},
    [M_NORM_LAST] = {"|x| last", "|x| 마지막"},
    [M_NORM_MEAN] = {"|x| mean", "|x| 평균"},
    [M_LENS] = {"logit lens", "로짓 렌즈"},
    [M_LENS_EXPL] = {"The logit lens applies the final layernorm and the output matrix to the "
                     "residual stream after a block: what the model would predict next if it "
                     "stopped there.",
                     "로짓 렌즈는 블록 뒤의 잔차 스트림에 마지막 layernorm과 출력 행렬을 적용합니다: "
                     "모델이 거기서 멈췄다면 무엇을 다음 토큰으로 예측했을지입니다."},
    [M_LENS_TOP] = {"top token", "1위 토큰"},
    [M_PROB] = {"prob", "확률"},
    [M_NEXT] = {"4. Next token", "4. 다음 토큰 예측"},
    [M_NEXT_EXPL] = {"The logits after the last token, and their softmax: the probability of "
                     "each possible next token.",
                     "마지막 토큰 뒤의 로짓과 그 소프트맥스: 가능한 다음 토큰 각각의 확률입니다."},
    [M_LOGIT] = {"logit", "로짓"},
    [M_CUM] = {"cumulative", "누적"},
    [M_DEC] = {"5. Decoding", "5. 디코딩"},
    [M_DEC_EXPL] = {"The filters in Hugging Face's order, each on the result of the one before; "
                    "probabilities are renormalised over what is left; - marks a removed token.",
                    "필터를 Hugging Face의 순서대로, 각각 앞 결과에 적용합니다. 확률은 남은 "
                    "토큰끼리 다시 정규화하고, -는 제거된 토큰입니다."},
    [M_RAW] = {"raw", "원래"},
    [M_REP] = {"repetition penalty", "반복 페널티"},
    [M_TEMP] = {"temperature", "온도"},
    [M_TOPK] = {"top-k", "top-k"},
    [M_TOPP] = {"top-p", "top-p"},
    [M_KEPT] = {"tokens kept", "남은 토큰"},
    [M_REMOVED] = {"removed", "제거됨"},
    [M_NOFILTER] = {"No filter is on (greedy decoding applies only the repetition penalty)",
                    "켜진 필터가 없습니다 (그리디 디코딩은 반복 페널티만 적용)."},
    [M_GREEDY] = {"greedy", "그리디"},
    [M_GREEDY_EXPL] = {"Greedy decoding takes the most likely token (after the repetition "
                       "penalty; temperature, top-k and top-p do not apply).",
                       "그리디 디코딩은 가장 확률이 높은 토큰을 고릅니다 (반복 페널티 적용 후; "
                       "온도, top-k, top-p는 적용되지 않음)."},
    [M_SAMPLE] = {"sampling", "샘플링"},
    [M_SAMPLE_OFF] = {"Sampling is off (--temp 0): the pick is greedy's.",
                      "샘플링이 꺼져 있습니다 (--temp 0): 그리디와 같은 토큰을 고릅니다"},
    [M_SAMPLE_EXPL] = {"The sampler draws a number u in [0, 1) from the seed and walks the "
                       "kept tokens in id order, adding their probabilities: the token whose "
                       "share of that line holds u is the pick. A token with probability p is "
                       "picked p of the time, so the top token need not win.",
                       "샘플러는 시드로 [0, 1) 사이의 수 u를 뽑고, 남은 토큰을 id 순서로 지나며 "
                       "확률을 더해 갑니다: u가 떨어진 구간의 토큰이 선택됩니다. 확률 p인 토큰은 "
                       "p의 비율로 뽑히므로 1위 토큰이 늘 이기지는 않습니다."},
    [M_SAMPLE_TOP] = {"This time the pick is the top token.", "이번에는 1위 토큰이 뽑혔습니다."},
    [M_SAMPLE_NOTTOP] = {"This time the pick is not the top token.", "이번에는 1위가 아닌 토큰이 뽑혔습니다."},
    [M_RANK] = {"rank", "순위"},
    [M_INTERVAL] = {"its share of [0, 1)", "[0, 1) 중 그 구간"},
    [M_BEAMS] = {"beam search", "빔 서치"},
    [M_BEAMS_EXPL] = {"Beam search keeps the B best hypotheses (by their sum of log-probabilities) "
                      "at every step; a hypothesis that emits <|endoftext|> is finished, scored "
                      "by its sum / length^length_penalty.",
                      "빔 서치는 매 단계 로그 확률 합이 가장 큰 가설 B개를 유지합니다. "
                      "<|endoftext|>를 내놓은 가설은 끝나며, 점수는 합 / 길이^length_penalty입니다."},
    [M_STEP] = {"step", "단계"},
    [M_SCORE] = {"score", "점수"},
    [M_FROM] = {"from", "부모"},
    [M_FINISHED] = {"finished", "끝남"},
    [M_WINNER] = {"winner", "최종 선택"},
    [M_DONE] = {"the search ends here", "탐색이 여기서 끝납니다"},
    [M_ATT_SELECT] = {"show", "보기"},
    [M_HOVER] = {"Rows: the token that looks; columns: the token it looks at. Hover a cell for "
                 "its weight.",
                 "행: 바라보는 토큰, 열: 바라보는 대상 토큰. 칸에 마우스를 올리면 가중치가 보입니다."},
    [M_BARS_EXPL] = {"Each bar is a probability; a grey cell was removed by that filter.",
                     "막대는 확률입니다. 회색 칸은 그 필터가 제거한 토큰입니다."},
    [M_LENS_GRID_EXPL] = {"Rows: layers; columns: positions; each cell holds the top next token and "
                          "its probability.",
                          "행: 층, 열: 위치. 각 칸은 1위 다음 토큰과 그 확률입니다."},
    [M_EMB_VIEW] = {"Bars: the first 32 values of each token's sum embedding (blue > 0, red < 0).",
                    "막대: 각 토큰 합 임베딩의 처음 32개 값 (파랑 > 0, 빨강 < 0)."},
};

static const char *const messages2[][2] = {
    {"tokens", "토큰"}, {"layers", "층"}, {"heads", "헤드"}, {"alike (cos)", "닮은 위치(cos)"},
};

static int g_lang; /* 0 English, 1 Korean (set once by explain_run) */

static const char *S(msg_id id) {
    return id >= M_TOKENS ? messages2[id - M_TOKENS][g_lang] : messages[id][g_lang];
}

int explain_lang_ok(const char *lang) { return !lang || !strcmp(lang, "en") || !strcmp(lang, "ko"); }

/* ==========================================================================================
 * Token text made visible
 * ======================================================================================== */

/* The length of the valid UTF-8 character at s (n bytes left), or 0 if s does not start one. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp_out) {
    unsigned char b = s[0];
    size_t k;
    uint32_t cp;
    if (b < 0x80) { *cp_out = b; return 1; }
    else if (b >= 0xC2 && b <= 0xDF) { k = 2; cp = b & 0x1F; }
    else if (b >= 0xE0 && b <= 0xEF) { k = 3; cp = b & 0x0F; }
    else if (b >= 0xF0 && b <= 0xF4) { k = 4; cp = b & 0x07; }
    else return 0;
    if (k > n) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *cp_out = cp;
    return k;
}

/* A growing string. Allocation failure sets oom and keeps what fits (reported at the end). */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *p, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Token bytes as visible text: a space is ␣, a newline ↵, a tab →, other control characters
   and every byte that is not part of a whole UTF-8 character \xNN. The result is valid UTF-8
   and has no control characters. */
static void visible(sbuf *b, const char *bytes, size_t len) {
    const unsigned char *s = (const unsigned char *)bytes;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_char(s + i, len - i, &cp);
        if (k == 0) { sb_printf(b, "\\x%02x", s[i]); i++; continue; }
        if (cp == ' ') sb_str(b, "\xe2\x90\xa3");           /* ␣ */
        else if (cp == '\n') sb_str(b, "\xe2\x86\xb5");     /* ↵ */
        else if (cp == '\t') sb_str(b, "\xe2\x86\x92");     /* → */
        else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029)
            for (size_t j = 0; j < k; j++) sb_printf(b, "\\x%02x", s[i + j]);
        else if (cp == '\\') sb_str(b, "\\\\");
        else sb_add(b, bytes + i, k);
        i += k;
    }
}

/* Columns a code point takes on a terminal: 2 for East Asian wide characters, else 1. */
static int cp_width(uint32_t cp) {
    if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF && cp != 0x303F) ||
        (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
        (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
        (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
        (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD))
        return 2;
    return 1;
}

/* The display width of valid UTF-8 text. */
static int text_width(const char *s) {
    int w = 0;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_char((const unsigned char *)s + i, n - i, &cp);
        if (!k) { w++; i++; continue; }
        w += cp_width(cp);
        i += k;
    }
    return w;
}

/* s cut to at most w columns ("…" marks a cut) and padded with spaces to exactly w (left
   aligned, or right aligned when right), appended to b. */
static void sb_fit(sbuf *b, const char *s, int w, bool right) {
    int tw = text_width(s);
    size_t n = strlen(s), end = n;
    if (tw > w) { /* keep what fits in w - 1 columns, then the ellipsis */
        int used = 0;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = utf8_char((const unsigned char *)s + i, n - i, &cp);
            int cw = k ? cp_width(cp) : 1;
            if (!k) k = 1;
            if (used + cw > w - 1) { end = i; break; }
            used += cw;
            i += k;
        }
        if (right) for (int i = used + 1; i < w; i++) sb_str(b, " ");
        sb_add(b, s, end);
        sb_str(b, "\xe2\x80\xa6");
        if (!right) for (int i = used + 1; i < w; i++) sb_str(b, " ");
        return;
    }
    if (right) for (int i = tw; i < w; i++) sb_str(b, " ");
    sb_add(b, s, n);
    if (!right) for (int i = tw; i < w; i++) sb_str(b, " ");
}

/* ==========================================================================================
 * Collecting: run the model once and keep what every stage showed
 * ======================================================================================== */

typedef struct {
    int32_t rank;      /* -1 for the first step (the bytes) */
    int32_t *ids;
    size_t n;
} bpe_step;

typedef struct {
    size_t start, len;
    int special;
    bpe_step *steps;
    int n_steps, cap_steps;
} piece;

typedef struct {
    int step, n_beams, n_finished, done;
    int32_t *tokens;        /* (n_beams, step) */
    float *scores;          /* (n_beams) */
    int32_t *parent;        /* (n_beams) */
    int32_t *fin_parent;    /* (n_finished) */
    double *fin_score;      /* (n_finished) */
} beam_step_rec;

/* one decoding stage: the row of logits after a filter, and its softmax */
typedef struct {
    msg_id name;
    char param[32];         /* the flag's value, as text */
    float *logits;          /* (V) */
    double *probs;          /* (V), 0 for removed */
    int32_t kept;
} dec_stage;

typedef struct {
    const gpt2_model *m;
    gpt2_context *c;
    gpt2_config cfg;
    const char *text;
    size_t len;
    int T, L, H, C, V;
    int32_t *ids;
    piece *pieces;
    int n_pieces, cap_pieces;
    /* the observer's copies */
    float *wte, *wpe, *emb;  /* (T, C) */
    float *attn;             /* (L, H, T, T) */
    float *block;            /* (L, T, C) */
    float *logits;           /* (T, V) */
    /* derived */
    double *n_wte, *n_wpe, *n_emb;  /* (T) norms */
    int32_t *alike;          /* (T) most alike earlier position by wpe cosine, -1 at 0 */
    double *alike_cos;       /* (T) */
    int32_t *lens_id;        /* (L, T) logit lens top token */
    double *lens_p;          /* (L, T) its probability */
    double *res_norm;        /* (L, T) residual stream norm after each block */
    /* the next token */
    int top_n;
    int32_t *order;          /* (V) ids by raw logit, descending */
    double *probs;           /* (V) softmax of the raw logits */
    /* decoding */
    gpt2_generate_params gp;
    dec_stage stages[5];
    int n_stages;
    int32_t *rows;           /* (top_n) ids by the logits after the repetition penalty */
    int32_t greedy;
    int32_t sampled;         /* -1 when sampling is off */
    int sampled_rank;        /* 1-based, among the kept tokens */
    double sampled_lo, sampled_hi;
    /* beam search */
    beam_step_rec *beams;
    int n_beam_steps, cap_beam_steps;
    int32_t *winner;
    size_t n_winner;
    double winner_score;
    bool lens_last_only;     /* the terminal report: the lens of the last position only */
    bool oom;
} explain;

static void *xcalloc(explain *e, size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) e->oom = true;
    return p;
}

static void on_bpe(void *user, const gpt2_bpe_event *ev) {
    explain *e = user;
    if (e->oom) return;
    if (ev->step == 0) {
        if (e->n_pieces == e->cap_pieces) {
            int cap = e->cap_pieces ? 2 * e->cap_pieces : 16;
            piece *p = realloc(e->pieces, (size_t)cap * sizeof *p);
            if (!p) { e->oom = true; return; }
            e->pieces = p;
            e->cap_pieces = cap;
        }
        piece *p = &e->pieces[e->n_pieces++];
        memset(p, 0, sizeof *p);
        p->start = ev->piece_start;
        p->len = ev->piece_len;
        p->special = ev->special;
    }
    if (e->n_pieces == 0) return;
    piece *p = &e->pieces[e->n_pieces - 1];
    if (p->n_steps == p->cap_steps) {
        int cap = p->cap_steps ? 2 * p->cap_steps : 8;
        bpe_step *s = realloc(p->steps, (size_t)cap * sizeof *s);
        if (!s) { e->oom = true; return; }
        p->steps = s;
        p->cap_steps = cap;
    }
    bpe_step *s = &p->steps[p->n_steps];
    s->rank = ev->step == 0 ? -1 : ev->rank;
    s->n = ev->n_ids;
    s->ids = malloc((ev->n_ids ? ev->n_ids : 1) * sizeof *s->ids);
    if (!s->ids) { e->oom = true; return; }
    memcpy(s->ids, ev->ids, ev->n_ids * sizeof *s->ids);
    p->n_steps++;
}

/* copies each stage's rows into the explain record (a pass may start at pos0 > 0) */
static void on_stage(void *user, const gpt2_activation *a) {
    explain *e = user;
    const int T = e->T, C = e->C;
    int rows = a->dims[a->n_dims == 3 ? 1 : 0];
    if (a->pos0 < 0 || a->pos0 + rows > T) return;
    float *dst = NULL;
    switch (a->stage) {
    case GPT2_STAGE_TOKEN_EMBEDDING: dst = e->wte; break;
    case GPT2_STAGE_POSITION_EMBEDDING: dst = e->wpe; break;
    case GPT2_STAGE_EMBEDDING: dst = e->emb; break;
    case GPT2_STAGE_BLOCK_OUTPUT:
        if (a->layer >= 0 && a->layer < e->L) dst = e->block + (size_t)a->layer * T * C;
        break;
    case GPT2_STAGE_ATTENTION:
        if (a->layer >= 0 && a->layer < e->L && a->n_dims == 3 && a->dims[0] == e->H &&
            a->dims[2] == a->pos0 + rows)
            for (int h = 0; h < e->H; h++)
                for (int t = 0; t < rows; t++)
                    memcpy(e->attn + (((size_t)a->layer * e->H + h) * T + a->pos0 + t) * T,
                           a->data + ((size_t)h * rows + t) * a->dims[2],
                           (size_t)a->dims[2] * sizeof(float));
        return;
    default: return;
    }
    if (dst && a->n_dims == 2 && a->dims[1] == C)
        memcpy(dst + (size_t)a->pos0 * C, a->data, (size_t)rows * C * sizeof(float));
}

static double norm(const float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* softmax of a row into p (removed = -inf = 0); returns how many are kept */
static int32_t softmax_row(const float *x, int n, double *p) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    double sum = 0;
    int32_t kept = 0;
    for (int i = 0; i < n; i++) {
        p[i] = x[i] == -INFINITY || mx == -INFINITY ? 0.0 : exp((double)x[i] - mx);
        sum += p[i];
        kept += x[i] != -INFINITY;
    }
    for (int i = 0; i < n; i++) p[i] = sum > 0 ? p[i] / sum : 0;
    return kept;
}

/* The top entry of a row of logits and its probability, for the logit lens, which asks it of
   every layer and position (L x T rows of V): one pass for the maximum, one for the
   normaliser, with exp in float summed in double (plenty for a percentage; softmax_row's
   double exp over every row was a fifth of explain --html on a 124M model). */
static void top_of_row(const float *x, int n, int32_t *best, double *p_best) {
    int32_t b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    double sum = 0;
    if (x[b] != -INFINITY)
        for (int i = 0; i < n; i++) sum += x[i] == -INFINITY ? 0.0 : (double)expf(x[i] - x[b]);
    *best = b;
    *p_best = sum > 0 ? 1.0 / sum : 0;
}

static const float *sort_key;
static int by_key_desc(const void *a, const void *b) {
    float x = sort_key[*(const int32_t *)a], y = sort_key[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a < *(const int32_t *)b ? -1 : 1;
}

/* ids 0..n-1 in descending order of key (ties: lower id first, as the library's argmax) */
static void order_by(const float *key, int n, int32_t *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    sort_key = key;
    qsort(order, (size_t)n, sizeof *order, by_key_desc);
}

static void on_beam(void *user, const gpt2_beam_step *s) {
    explain *e = user;
    if (e->oom) return;
    if (e->n_beam_steps == e->cap_beam_steps) {
        int cap = e->cap_beam_steps ? 2 * e->cap_beam_steps : 8;
        beam_step_rec *r = realloc(e->beams, (size_t)cap * sizeof *r);
        if (!r) { e->oom = true; return; }
        e->beams = r;
        e->cap_beam_steps = cap;
    }
    beam_step_rec *r = &e->beams[e->n_beam_steps];
    memset(r, 0, sizeof *r);
    r->step = s->step;
    r->n_beams = s->n_beams;
    r->n_finished = s->n_finished;
    r->done = s->done;
    r->tokens = malloc(((size_t)s->n_beams * s->step + 1) * sizeof *r->tokens);
    r->scores = malloc(((size_t)s->n_beams + 1) * sizeof *r->scores);
    r->parent = malloc(((size_t)s->n_beams + 1) * sizeof *r->parent);
    r->fin_parent = malloc(((size_t)s->n_finished + 1) * sizeof *r->fin_parent);
    r->fin_score = malloc(((size_t)s->n_finished + 1) * sizeof *r->fin_score);
    e->n_beam_steps++;
    if (!r->tokens || !r->scores || !r->parent || !r->fin_parent || !r->fin_score) { e->oom = true; return; }
    for (int b = 0; b < s->n_beams; b++) {
        memcpy(r->tokens + (size_t)b * s->step, s->tokens[b], (size_t)s->step * sizeof *r->tokens);
        r->scores[b] = s->scores[b];
        r->parent[b] = s->parent[b];
    }
    for (int f = 0; f < s->n_finished; f++) {
        r->fin_parent[f] = s->finished_parent[f];
        r->fin_score[f] = s->finished_score[f];
    }
}

static int fail_msg(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err_len) vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return 1;
}

static void add_stage(explain *e, msg_id name, const char *param, const gpt2_sampling *only) {
    dec_stage *prev = &e->stages[e->n_stages - 1], *s = &e->stages[e->n_stages];
    s->name = name;
    snprintf(s->param, sizeof s->param, "%s", param);
    s->logits = xcalloc(e, (size_t)e->V, sizeof *s->logits);
    s->probs = xcalloc(e, (size_t)e->V, sizeof *s->probs);
    if (e->oom) return;
    memcpy(s->logits, prev->logits, (size_t)e->V * sizeof *s->logits);
    gpt2_process_logits(only, s->logits, e->V, e->ids, (size_t)e->T);
    s->kept = softmax_row(s->logits, e->V, s->probs);
    e->n_stages++;
}

/* Runs everything once; 0 on success, else 1 with err set. */
static int collect(explain *e, int special, char *err, size_t err_len) {
    const gpt2_model *m = e->m;
    gpt2_status st;
    /* 1. tokens, and how the tokenizer made them */
    size_t n_ids = 0;
    st = gpt2_tokenize(m, e->text, e->len, special, NULL, 0, &n_ids);
    if (st != GPT2_OK && st != GPT2_E_BUFFER) return fail_msg(err, err_len, "tokenizing failed: %s", gpt2_strerror(st));
    if (n_ids == 0) return fail_msg(err, err_len, "the prompt is empty");
    if (n_ids > MAX_PROMPT_TOKENS)
        return fail_msg(err, err_len, "the prompt has %zu tokens; explain shows at most %d", n_ids, MAX_PROMPT_TOKENS);
    if ((int)n_ids > gpt2_context_size(e->c))
        return fail_msg(err, err_len, "the prompt (%zu tokens) does not fit the context (%d)", n_ids, gpt2_context_size(e->c));
    e->T = (int)n_ids;
    e->ids = xcalloc(e, n_ids, sizeof *e->ids);
    if (e->oom) return fail_msg(err, err_len, "out of memory");
    st = gpt2_tokenize(m, e->text, e->len, special, e->ids, n_ids, &n_ids);
    if (st) return fail_msg(err, err_len, "tokenizing failed: %s", gpt2_strerror(st));
    st = gpt2_tokenize_trace(m, e->text, e->len, special, on_bpe, e);
    if (e->oom) return fail_msg(err, err_len, "out of memory");
    if (st) return fail_msg(err, err_len, "tokenizing failed: %s", gpt2_strerror(st));

    /* 2-3. one forward pass, watched */
    const int T = e->T, L = e->L, H = e->H, C = e->C, V = e->V;
    e->wte = xcalloc(e, (size_t)T * C, sizeof(float));
    e->wpe = xcalloc(e, (size_t)T * C, sizeof(float));
    e->emb = xcalloc(e, (size_t)T * C, sizeof(float));
    e->attn = xcalloc(e, (size_t)L * H * T * T, sizeof(float));
    e->block = xcalloc(e, (size_t)L * T * C, sizeof(float));
    e->logits = xcalloc(e, (size_t)T * V, sizeof(float));
    e->n_wte = xcalloc(e, (size_t)T, sizeof(double));
    e->n_wpe = xcalloc(e, (size_t)T, sizeof(double));
    e->n_emb = xcalloc(e, (size_t)T, sizeof(double));
    e->alike = xcalloc(e, (size_t)T, sizeof(int32_t));
    e->alike_cos = xcalloc(e, (size_t)T, sizeof(double));
    e->lens_id = xcalloc(e, (size_t)L * T, sizeof(int32_t));
    e->lens_p = xcalloc(e, (size_t)L * T, sizeof(double));
    e->res_norm = xcalloc(e, (size_t)L * T, sizeof(double));
    e->order = xcalloc(e, (size_t)V, sizeof(int32_t));
    e->probs = xcalloc(e, (size_t)V, sizeof(double));
    float *lens = xcalloc(e, (size_t)LENS_ROWS * V, sizeof(float));
    float *lens_in = xcalloc(e, (size_t)L * T * C, sizeof(float));
    if (e->oom) { free(lens); free(lens_in); return fail_msg(err, err_len, "out of memory"); }
    gpt2_context_reset(e->c);
    st = gpt2_context_set_observer(e->c, on_stage, e);
    /* the prompt but its last token without logits, then the last token with them (the
       same bits as one call; the observer sees two passes) */
    if (!st && T > 1) st = gpt2_eval(e->c, e->ids, (size_t)T - 1, NULL);
    if (!st) st = gpt2_eval(e->c, e->ids + T - 1, 1, e->logits + (size_t)(T - 1) * V);
    gpt2_context_set_observer(e->c, NULL, NULL);
    if (st) { free(lens); free(lens_in); return fail_msg(err, err_len, "evaluating the prompt failed: %s", gpt2_strerror(st)); }

    for (int t = 0; t < T; t++) {
        e->n_wte[t] = norm(e->wte + (size_t)t * C, C);
        e->n_wpe[t] = norm(e->wpe + (size_t)t * C, C);
        e->n_emb[t] = norm(e->emb + (size_t)t * C, C);
        e->alike[t] = -1;
        e->alike_cos[t] = 0;
        for (int j = 0; j < t; j++) {
            double dot = 0;
            for (int k = 0; k < C; k++) dot += (double)e->wpe[(size_t)t * C + k] * e->wpe[(size_t)j * C + k];
            double d = e->n_wpe[t] * e->n_wpe[j];
            double cosine = d > 0 ? dot / d : 0;
            if (e->alike[t] < 0 || cosine > e->alike_cos[t]) { e->alike[t] = j; e->alike_cos[t] = cosine; }
        }
    }
    /* The logit lens after every block, in batches of up to LENS_ROWS rows of the residual
       stream (the output matrix is read once a batch, not once a layer). The terminal
       report shows the last position only: then only those L rows are computed. */
    const size_t n_rows = e->lens_last_only ? (size_t)L : (size_t)L * T;
    for (size_t r = 0; r < n_rows; r++) { /* the rows, gathered */
        size_t at = e->lens_last_only ? r * T + T - 1 : r;
        memcpy(lens_in + r * C, e->block + at * C, (size_t)C * sizeof(float));
    }
    for (size_t r0 = 0; r0 < n_rows && !st; r0 += LENS_ROWS) {
        size_t n = n_rows - r0 < LENS_ROWS ? n_rows - r0 : LENS_ROWS;
        st = gpt2_logit_lens(e->c, lens_in + r0 * C, n, lens);
        for (size_t r = 0; r < n && !st; r++) {
            size_t at = e->lens_last_only ? (r0 + r) * T + T - 1 : r0 + r;
            top_of_row(lens + r * V, V, &e->lens_id[at], &e->lens_p[at]);
        }
    }
    for (size_t r = 0; r < (size_t)L * T; r++) e->res_norm[r] = norm(e->block + r * C, C);
    free(lens_in);
    free(lens);
    if (st) return fail_msg(err, err_len, "the logit lens failed: %s", gpt2_strerror(st));

    /* 4. the next token */
    const float *last = e->logits + (size_t)(T - 1) * V;
    softmax_row(last, V, e->probs);
    order_by(last, V, e->order);

    /* 5. decoding: each filter on the result of the one before */
    const gpt2_sampling *sp = &e->gp.sampling;
    dec_stage *s0 = &e->stages[0];
    s0->name = M_RAW;
    s0->logits = xcalloc(e, (size_t)V, sizeof(float));
    s0->probs = xcalloc(e, (size_t)V, sizeof(double));
    if (e->oom) return fail_msg(err, err_len, "out of memory");
    memcpy(s0->logits, last, (size_t)V * sizeof(float));
    s0->kept = softmax_row(s0->logits, V, s0->probs);
    e->n_stages = 1;
    gpt2_sampling off = {1.0f, 0, 1.0f, 1.0f, 0, sp->min_tokens_to_keep}, one;
    char param[32];
    if (sp->repetition_penalty != 1.0f) {
        one = off;
        one.repetition_penalty = sp->repetition_penalty;
        snprintf(param, sizeof param, "%g", sp->repetition_penalty);
        add_stage(e, M_REP, param, &one);
    }
    const dec_stage *penalised = &e->stages[e->n_stages - 1];
    /* greedy: the most likely token after the penalty (lowest id on ties) */
    e->greedy = 0;
    for (int v = 1; v < V; v++) if (penalised->logits[v] > penalised->logits[e->greedy]) e->greedy = v;
    e->rows = xcalloc(e, (size_t)V, sizeof(int32_t));
    if (e->oom) return fail_msg(err, err_len, "out of memory");
    order_by(penalised->logits, V, e->rows);
    if (sp->temperature > 0) { /* the warpers apply only when sampling */
        if (sp->temperature != 1.0f) {
            one = off;
            one.temperature = sp->temperature;
            snprintf(param, sizeof param, "%g", sp->temperature);
            add_stage(e, M_TEMP, param, &one);
        }
        if (sp->top_k > 0) {
            one = off;
            one.top_k = sp->top_k;
            snprintf(param, sizeof param, "%d", sp->top_k);
            add_stage(e, M_TOPK, param, &one);
        }
        if (sp->top_p < 1.0f) {
            one = off;
            one.top_p = sp->top_p;
            snprintf(param, sizeof param, "%g", sp->top_p);
            add_stage(e, M_TOPP, param, &one);
        }
    }
    if (e->oom) return fail_msg(err, err_len, "out of memory");

    /* the library's own pick with the seed: one token of gpt2_generate with these params */
    e->sampled = -1;
    gpt2_generate_params g = e->gp;
    g.num_beams = 1;
    g.num_return_sequences = 1;
    g.max_new_tokens = 1;
    g.stop = NULL;
    g.n_stop = 0;
    g.on_text = NULL;
    g.on_beam_step = NULL;
    if (sp->temperature > 0) {
        int32_t out[4];
        size_t n_out = 0;
        st = gpt2_generate(e->c, e->ids, (size_t)T, &g, out, 4, &n_out, NULL, NULL);
        if (st || n_out != 1) return fail_msg(err, err_len, "sampling failed: %s", gpt2_strerror(st));
        e->sampled = out[0];
        const dec_stage *fin = &e->stages[e->n_stages - 1];
        int rank = 1;
        double lo = 0;
        for (int v = 0; v < V; v++) {
            if (fin->logits[v] > fin->logits[e->sampled]) rank++;
            if (v < e->sampled) lo += fin->probs[v];
        }
        e->sampled_rank = rank;
        e->sampled_lo = lo;
        e->sampled_hi = lo + fin->probs[e->sampled];
    }

    /* beam search, watched step by step */
    if (e->gp.num_beams > 1) {
        g = e->gp;
        g.num_return_sequences = 1;
        g.stop = NULL;
        g.n_stop = 0;
        g.on_text = NULL;
        g.on_beam_step = on_beam;
        g.on_beam_user = e;
        size_t cap = (size_t)g.max_new_tokens + 2;
        e->winner = xcalloc(e, cap, sizeof(int32_t));
        if (e->oom) return fail_msg(err, err_len, "out of memory");
        gpt2_generate_info info;
        memset(&info, 0, sizeof info);
        info.scores = &e->winner_score;
        size_t n_out = 0;
        st = gpt2_generate_ex(e->c, e->ids, (size_t)T, &g, e->winner, cap, &n_out, NULL, NULL, &info);
        if (st && st != GPT2_E_CONTEXT_FULL)
            return fail_msg(err, err_len, "beam search failed: %s", gpt2_strerror(st));
        if (e->oom) return fail_msg(err, err_len, "out of memory");
        e->n_winner = 0;
        while (e->n_winner < n_out && e->winner[e->n_winner] != -1) e->n_winner++;
    }
    return 0;
}

/* ==========================================================================================
 * The terminal report (80 columns; colour only on a terminal)
 * ======================================================================================== */

#define WIDTH 80

static FILE *g_out;
static bool g_colour;

/* the visible text of a token, as a new NUL-terminated string in b (b is reset) */
static const char *tok_label(const explain *e, sbuf *b, int32_t id) {
    const char *bytes;
    size_t len;
    b->n = 0;
    if (b->s) b->s[0] = '\0';
    if (gpt2_token_bytes(e->m, id, &bytes, &len) != GPT2_OK) sb_str(b, "?");
    else visible(b, bytes, len);
    if (!b->s) sb_str(b, "");
    return b->oom ? "?" : b->s;
}

static void put(const sbuf *b) {
    if (b->n) fwrite(b->s, 1, b->n, g_out);
}

static void line(const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    fwrite(tmp, 1, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1, g_out);
    fputc('\n', g_out);
}

static void heading(const char *s) {
    fprintf(g_out, "\n%s%s%s\n", g_colour ? "\033[1;36m" : "", s, g_colour ? "\033[0m" : "");
}

static void subheading(const char *s) {
    fprintf(g_out, "\n  %s%s%s\n", g_colour ? "\033[1m" : "", s, g_colour ? "\033[0m" : "");
}

/* a paragraph, word-wrapped to the width, indented by two spaces */
static void para(const char *s) {
    sbuf b = {0};
    int col = 0;
    const char *p = s;
    if (g_colour) sb_str(&b, "\033[2m");
    sb_str(&b, "  ");
    col = 2;
    while (*p) {
        while (*p == ' ') p++;
        const char *w = p;
        while (*p && *p != ' ') p++;
        if (p == w) break;
        char word[512];
        size_t n = (size_t)(p - w) < sizeof word - 1 ? (size_t)(p - w) : sizeof word - 1;
        memcpy(word, w, n);
        word[n] = '\0';
        int ww = text_width(word);
        if (col > 2 && col + 1 + ww > WIDTH - 1) {
            sb_str(&b, "\n  ");
            col = 2;
        } else if (col > 2) {
            sb_str(&b, " ");
            col++;
        }
        sb_add(&b, word, n);
        col += ww;
    }
    if (g_colour) sb_str(&b, "\033[0m");
    sb_str(&b, "\n");
    put(&b);
    free(b.s);
}

static void cell(sbuf *b, const char *s, int w, bool right) {
    sb_fit(b, s, w, right);
}

static void cellf(sbuf *b, int w, bool right, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_fit(b, tmp, w, right);
}

static void endline(sbuf *b) {
    while (b->n && b->s[b->n - 1] == ' ') b->s[--b->n] = '\0';
    sb_str(b, "\n");
    put(b);
    b->n = 0;
}

static void pct(char *buf, size_t n, double p) {
    if (p <= 0) snprintf(buf, n, "-");
    else if (p < 0.0001) snprintf(buf, n, "<0.01%%");
    else snprintf(buf, n, "%.2f%%", 100 * p);
}

static void text_tokens(const explain *e) {
    sbuf b = {0}, t = {0};
    heading(S(M_TOK));
    para(S(M_TOK_EXPL));
    line("  %s: %d", S(M_PIECES), e->n_pieces);
    for (int i = 0; i < e->n_pieces; i++) {
        const piece *p = &e->pieces[i];
        sbuf pt = {0};
        visible(&pt, e->text + p->start, p->len);
        b.n = 0;
        sb_printf(&b, "  %s %d  ", S(M_PIECE), i + 1);
        sb_str(&b, "\"");
        cell(&b, pt.s ? pt.s : "", text_width(pt.s ? pt.s : "") > 50 ? 50 : text_width(pt.s ? pt.s : ""), false);
        sb_str(&b, "\"");
        if (p->special) sb_printf(&b, "  (%s)", S(M_SPECIAL));
        endline(&b);
        free(pt.s);
        for (int k = 0; k < p->n_steps; k++) {
            const bpe_step *s = &p->steps[k];
            sbuf l = {0};
            for (size_t j = 0; j < s->n; j++) {
                if (j) sb_str(&l, " ");
                sb_str(&l, tok_label(e, &t, s->ids[j]));
            }
            b.n = 0;
            sb_str(&b, "    ");
            if (s->rank >= 0) {
                char r[48];
                snprintf(r, sizeof r, "  (%s %d)", S(M_MERGE_RANK), s->rank);
                cell(&b, l.s ? l.s : "", WIDTH - 5 - text_width(r), false);
                sb_str(&b, r);
            } else {
                cell(&b, l.s ? l.s : "", WIDTH - 5, false);
            }
            endline(&b);
            free(l.s);
        }
    }
    subheading(S(M_FINAL));
    b.n = 0;
    sb_str(&b, "  ");
    cell(&b, S(M_POS), 5, false);
    cell(&b, S(M_ID), 8, false);
    cell(&b, S(M_TOKEN), 18, false);
    cell(&b, S(M_BYTES), 40, false);
    endline(&b);
    for (int i = 0; i < e->T; i++) {
        const char *bytes;
        size_t len = 0;
        gpt2_token_bytes(e->m, e->ids[i], &bytes, &len);
        b.n = 0;
        sb_str(&b, "  ");
        cellf(&b, 5, false, "%d", i);
        cellf(&b, 8, false, "%d", e->ids[i]);
        cell(&b, tok_label(e, &t, e->ids[i]), 18, false);
        sbuf hx = {0};
        for (size_t k = 0; k < len; k++) sb_printf(&hx, k ? " %02x" : "%02x", (unsigned char)bytes[k]);
        cell(&b, hx.s ? hx.s : "", 40, false);
        free(hx.s);
        endline(&b);
    }
    para(S(M_TOK_NOTE));
    free(b.s);
    free(t.s);
}

static void text_embeddings(const explain *e) {
    sbuf b = {0}, t = {0};
    heading(S(M_EMB));
    para(S(M_EMB_EXPL));
    para(S(M_ALIKE_EXPL));
    sb_str(&b, "  ");
    cell(&b, S(M_POS), 4, false);
    cell(&b, S(M_TOKEN), 10, false);
    cell(&b, S(M_WTE), 7, true);
    cell(&b, S(M_WPE), 7, true);
    cell(&b, S(M_SUM), 7, true);
    sb_str(&b, "  ");
    cell(&b, S(M_FIRST), 30, false);
    cell(&b, S(M_ALIKE_SHORT), 11, false);
    endline(&b);
    for (int i = 0; i < e->T; i++) {
        sb_str(&b, "  ");
        cellf(&b, 4, false, "%d", i);
        cell(&b, tok_label(e, &t, e->ids[i]), 10, false);
        cellf(&b, 7, true, "%.2f", e->n_wte[i]);
        cellf(&b, 7, true, "%.2f", e->n_wpe[i]);
        cellf(&b, 7, true, "%.2f", e->n_emb[i]);
        sb_str(&b, "  ");
        for (int k = 0; k < N_FIRST; k++)
            cellf(&b, 7, true, "%.3f", k < e->C ? e->emb[(size_t)i * e->C + k] : 0.0f);
        sb_str(&b, " ");
        if (e->alike[i] >= 0) cellf(&b, 11, false, " %d (%.2f)", e->alike[i], e->alike_cos[i]);
        else cell(&b, " -", 11, false);
        endline(&b);
    }
    free(b.s);
    free(t.s);
}

static void text_blocks(const explain *e) {
    sbuf b = {0}, t = {0};
    const int T = e->T, H = e->H;
    heading(S(M_BLOCKS));
    para(S(M_BLOCKS_EXPL));
    para(S(M_ATT_LEGEND));
    int digits = 1;
    for (int x = T - 1; x >= 10; x /= 10) digits++;
    const int cw = digits + 4, label = 4 + 10;
    int per = (WIDTH - 2 - label) / cw;
    if (per < 1) per = 1;
    for (int l = 0; l < e->L; l++) {
        char h[64];
        snprintf(h, sizeof h, "%s %d", S(M_LAYER), l);
        subheading(h);
        for (int h0 = 0; h0 < H; h0 += per) {
            int h1 = h0 + per < H ? h0 + per : H;
            sb_str(&b, "  ");
            cell(&b, S(M_POS), 4, false);
            cell(&b, S(M_TOKEN), 10, false);
            for (int hh = h0; hh < h1; hh++) cellf(&b, cw, true, "h%d", hh);
            endline(&b);
            for (int i = 0; i < T; i++) {
                sb_str(&b, "  ");
                cellf(&b, 4, false, "%d", i);
                cell(&b, tok_label(e, &t, e->ids[i]), 10, false);
                for (int hh = h0; hh < h1; hh++) {
                    const float *r = e->attn + (((size_t)l * H + hh) * T + i) * T;
                    int best = 0;
                    for (int j = 1; j <= i; j++) if (r[j] > r[best]) best = j;
                    int w = (int)lround(100.0 * r[best]);
                    cellf(&b, cw, true, "%d:%02d", best, w > 99 ? 99 : w);
                }
                endline(&b);
            }
        }
    }
    subheading(S(M_NORM_TITLE));
    para(S(M_LENS_EXPL));
    sb_str(&b, "  ");
    cell(&b, S(M_LAYER), 7, false);
    cell(&b, S(M_NORM_LAST), 11, true);
    cell(&b, S(M_NORM_MEAN), 11, true);
    sb_str(&b, "   ");
    cell(&b, S(M_LENS), 22, false);
    cell(&b, S(M_PROB), 9, true);
    endline(&b);
    for (int l = 0; l < e->L; l++) {
        double mean = 0;
        for (int i = 0; i < T; i++) mean += e->res_norm[(size_t)l * T + i];
        mean /= T;
        char p[32];
        pct(p, sizeof p, e->lens_p[(size_t)l * T + T - 1]);
        sb_str(&b, "  ");
        cellf(&b, 7, false, "%d", l);
        cellf(&b, 11, true, "%.2f", e->res_norm[(size_t)l * T + T - 1]);
        cellf(&b, 11, true, "%.2f", mean);
        sb_str(&b, "   ");
        cell(&b, tok_label(e, &t, e->lens_id[(size_t)l * T + T - 1]), 22, false);
        cell(&b, p, 9, true);
        endline(&b);
    }
    free(b.s);
    free(t.s);
}

static const char *stage_short(msg_id name) {
    switch (name) {
    case M_RAW: return S(M_RAW);
    case M_REP: return g_lang ? "반복" : "rep";
    case M_TEMP: return g_lang ? "온도" : "temp";
    default: return S(name);
    }
}

/* the tokens of one beam, as visible text */
static void beam_text(const explain *e, sbuf *out, const int32_t *toks, int n) {
    sbuf t = {0};
    for (int i = 0; i < n; i++) sb_str(out, tok_label(e, &t, toks[i]));
    free(t.s);
}

static void text_next(const explain *e) {
    sbuf b = {0}, t = {0};
    const int V = e->V, N = e->top_n < V ? e->top_n : V;
    heading(S(M_NEXT));
    para(S(M_NEXT_EXPL));
    sb_str(&b, "  ");
    cell(&b, "#", 5, false);
    cell(&b, S(M_TOKEN), 18, false);
    cell(&b, S(M_ID), 8, true);
    cell(&b, S(M_LOGIT), 11, true);
    cell(&b, S(M_PROB), 10, true);
    cell(&b, S(M_CUM), 12, true);
    endline(&b);
    double cum = 0;
    for (int r = 0; r < N; r++) {
        int32_t id = e->order[r];
        cum += e->probs[id];
        char p[32], c[32];
        pct(p, sizeof p, e->probs[id]);
        pct(c, sizeof c, cum);
        sb_str(&b, "  ");
        cellf(&b, 5, false, "%d", r + 1);
        cell(&b, tok_label(e, &t, id), 18, false);
        cellf(&b, 8, true, "%d", id);
        cellf(&b, 11, true, "%.4f", e->logits[(size_t)(e->T - 1) * V + id]);
        cell(&b, p, 10, true);
        cell(&b, c, 12, true);
        endline(&b);
    }

    heading(S(M_DEC));
    para(S(M_DEC_EXPL));
    if (e->n_stages == 1) para(S(M_NOFILTER));
    sb_str(&b, "  ");
    cell(&b, "", 18, false);
    for (int s = 0; s < e->n_stages; s++) cell(&b, stage_short(e->stages[s].name), 11, true);
    endline(&b);
    sb_str(&b, "  ");
    cell(&b, S(M_TOKEN), 18, false);
    for (int s = 0; s < e->n_stages; s++) cell(&b, e->stages[s].param, 11, true);
    endline(&b);
    for (int r = 0; r < N; r++) {
        int32_t id = e->rows[r];
        sb_str(&b, "  ");
        cell(&b, tok_label(e, &t, id), 18, false);
        for (int s = 0; s < e->n_stages; s++) {
            char p[32];
            pct(p, sizeof p, e->stages[s].probs[id]);
            cell(&b, p, 11, true);
        }
        endline(&b);
    }
    sb_str(&b, "  ");
    cell(&b, S(M_KEPT), 18, false);
    for (int s = 0; s < e->n_stages; s++) cellf(&b, 11, true, "%d", e->stages[s].kept);
    endline(&b);
    sb_str(&b, "  ");
    cell(&b, S(M_REMOVED), 18, false);
    for (int s = 0; s < e->n_stages; s++)
        cellf(&b, 11, true, "%d", s ? e->stages[s - 1].kept - e->stages[s].kept : 0);
    endline(&b);

    const dec_stage *fin = &e->stages[e->n_stages - 1];
    char p[32];
    subheading(S(M_GREEDY));
    pct(p, sizeof p, e->stages[e->n_stages > 1 && e->stages[1].name == M_REP ? 1 : 0].probs[e->greedy]);
    b.n = 0;
    sb_str(&b, "  -> ");
    sb_str(&b, tok_label(e, &t, e->greedy));
    sb_printf(&b, "  (%s %d, %s %s)", S(M_ID), e->greedy, S(M_PROB), p);
    endline(&b);
    para(S(M_GREEDY_EXPL));
    subheading(S(M_SAMPLE));
    if (e->sampled < 0) {
        para(S(M_SAMPLE_OFF));
    } else {
        pct(p, sizeof p, fin->probs[e->sampled]);
        sb_printf(&b, "  seed %llu -> ", (unsigned long long)e->gp.sampling.seed);
        sb_str(&b, tok_label(e, &t, e->sampled));
        sb_printf(&b, "  (%s %d, %s %d / %d, %s %s)", S(M_ID), e->sampled, S(M_RANK), e->sampled_rank,
                  fin->kept, S(M_PROB), p);
        endline(&b);
        sb_printf(&b, "  %s: [%.4f, %.4f)", S(M_INTERVAL), e->sampled_lo, e->sampled_hi);
        endline(&b);
        para(S(M_SAMPLE_EXPL));
        para(e->sampled_rank == 1 ? S(M_SAMPLE_TOP) : S(M_SAMPLE_NOTTOP));
    }
    if (e->gp.num_beams > 1) {
        char h[96];
        snprintf(h, sizeof h, "%s (--beams %d, -n %d)", S(M_BEAMS), e->gp.num_beams, e->gp.max_new_tokens);
        subheading(h);
        para(S(M_BEAMS_EXPL));
        for (int k = 0; k < e->n_beam_steps; k++) {
            const beam_step_rec *r = &e->beams[k];
            line("  %s %d", S(M_STEP), r->step);
            for (int bm = 0; bm < r->n_beams; bm++) {
                sbuf bt = {0};
                beam_text(e, &bt, r->tokens + (size_t)bm * r->step, r->step);
                sb_printf(&b, "    #%-2d %s %9.4f  %s #%-2d  ", bm, S(M_SCORE), r->scores[bm], S(M_FROM), r->parent[bm]);
                cell(&b, bt.s ? bt.s : "", WIDTH - 1 - text_width(b.s), false);
                endline(&b);
                free(bt.s);
            }
            for (int f = 0; f < r->n_finished; f++) {
                sb_printf(&b, "    %s: %s #%d + <|endoftext|>, %s %.4f", S(M_FINISHED), S(M_FROM),
                          r->fin_parent[f], S(M_SCORE), r->fin_score[f]);
                endline(&b);
            }
            if (r->done) line("    (%s)", S(M_DONE));
        }
        sbuf bt = {0};
        beam_text(e, &bt, e->winner, (int)e->n_winner);
        sb_printf(&b, "  %s (%s %.4f): ", S(M_WINNER), S(M_SCORE), e->winner_score);
        cell(&b, bt.s ? bt.s : "", WIDTH - 1 - text_width(b.s), false);
        endline(&b);
        free(bt.s);
    }
    free(b.s);
    free(t.s);
}

static void text_report(const explain *e) {
    sbuf t = {0};
    fprintf(g_out, "%s%s%s\n", g_colour ? "\033[1m" : "", S(M_TITLE), g_colour ? "\033[0m" : "");
    visible(&t, e->text, e->len);
    sbuf b = {0};
    sb_printf(&b, "%s: \"", S(M_PROMPT));
    cell(&b, t.s ? t.s : "", text_width(t.s ? t.s : "") > 60 ? 60 : text_width(t.s ? t.s : ""), false);
    sb_printf(&b, "\" (%d %s)", e->T, S(M_TOKENS));
    endline(&b);
    gpt2_model_info in = gpt2_get_model_info(e->m);
    line("%s: %s%s%d %s, %d %s, n_embd %d, n_vocab %d", S(M_MODEL), in.name, in.name[0] ? ", " : "",
         e->L, S(M_LAYERS), e->H, S(M_HEADS), e->C, e->V);
    free(t.s);
    free(b.s);
    text_tokens(e);
    text_embeddings(e);
    text_blocks(e);
    text_next(e);
}

/* ==========================================================================================
 * JSON: the same content, machine-readable
 * ======================================================================================== */

/* A small JSON writer. Strings may hold any bytes: valid UTF-8 is kept (but < > & and the
   JavaScript line separators are escaped, so that the text can sit inside an HTML <script>),
   control characters are \u escapes, and a byte that is not part of valid UTF-8 becomes
   U+FFFD (the token's "bytes" say what it was). */
typedef struct {
    FILE *f;
    int depth;
    bool comma[64];
    bool after_key;
} jw;

static void jw_sep(jw *j) {
    if (j->after_key) { j->after_key = false; return; }
    if (j->comma[j->depth]) fputc(',', j->f);
    j->comma[j->depth] = true;
}

static void jw_open(jw *j, char c) {
    jw_sep(j);
    fputc(c, j->f);
    if (j->depth < 63) j->depth++;
    j->comma[j->depth] = false;
}

static void jw_close(jw *j, char c) {
    fputc(c, j->f);
    if (j->depth > 0) j->depth--;
}

static void jw_raw_str(FILE *f, const char *bytes, size_t len) {
    const unsigned char *s = (const unsigned char *)bytes;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_char(s + i, len - i, &cp);
        if (k == 0) { fputs("\\ufffd", f); i++; continue; }
        if (cp == '"') fputs("\\\"", f);
        else if (cp == '\\') fputs("\\\\", f);
        else if (cp == '\n') fputs("\\n", f);
        else if (cp == '\t') fputs("\\t", f);
        else if (cp < 0x20 || cp == 0x7f || cp == '<' || cp == '>' || cp == '&' || cp == 0x2028 || cp == 0x2029)
            fprintf(f, "\\u%04x", (unsigned)cp);
        else fwrite(s + i, 1, k, f);
        i += k;
    }
    fputc('"', f);
}

static void jw_key(jw *j, const char *k) {
    jw_sep(j);
    jw_raw_str(j->f, k, strlen(k));
    fputc(':', j->f);
    j->after_key = true;
}

static void jw_strn(jw *j, const char *s, size_t n) { jw_sep(j); jw_raw_str(j->f, s, n); }
static void jw_str(jw *j, const char *s) { jw_strn(j, s, strlen(s)); }
static void jw_int(jw *j, long long v) { jw_sep(j); fprintf(j->f, "%lld", v); }
static void jw_bool(jw *j, bool v) { jw_sep(j); fputs(v ? "true" : "false", j->f); }
static void jw_null(jw *j) { jw_sep(j); fputs("null", j->f); }
static void jw_num(jw *j, double v) {
    jw_sep(j);
    if (isfinite(v)) fprintf(j->f, "%.6g", v);
    else fputs("null", j->f); /* a removed logit (-inf) */
}

static void jw_kstr(jw *j, const char *k, const char *v) { jw_key(j, k); jw_str(j, v); }
static void jw_kint(jw *j, const char *k, long long v) { jw_key(j, k); jw_int(j, v); }
static void jw_knum(jw *j, const char *k, double v) { jw_key(j, k); jw_num(j, v); }

/* {"id": .., "text": ..} */
static void jw_token(jw *j, const explain *e, int32_t id) {
    const char *bytes = "";
    size_t len = 0;
    gpt2_token_bytes(e->m, id, &bytes, &len);
    jw_open(j, '{');
    jw_kint(j, "id", id);
    jw_key(j, "text");
    jw_strn(j, bytes, len);
    jw_close(j, '}');
}

static void jw_section(jw *j, const char *key, msg_id title, msg_id expl) {
    jw_key(j, key);
    jw_open(j, '{');
    jw_kstr(j, "title", S(title));
    if (expl != M_COUNT) jw_kstr(j, "explanation", S(expl));
}

static void json_report(const explain *e, FILE *f) {
    jw j0 = {f, 0, {false}, false}, *j = &j0;
    const int T = e->T, H = e->H, V = e->V, N = e->top_n < V ? e->top_n : V;
    jw_open(j, '{');
    jw_kstr(j, "title", S(M_TITLE));
    jw_kstr(j, "lang", g_lang ? "ko" : "en");
    jw_key(j, "prompt");
    jw_strn(j, e->text, e->len);
    gpt2_model_info in = gpt2_get_model_info(e->m);
    jw_key(j, "model");
    jw_open(j, '{');
    jw_kstr(j, "name", in.name);
    jw_kint(j, "n_layer", e->L);
    jw_kint(j, "n_head", e->H);
    jw_kint(j, "n_embd", e->C);
    jw_kint(j, "n_vocab", e->V);
    jw_kint(j, "n_ctx", e->cfg.n_ctx);
    jw_close(j, '}');

    jw_section(j, "tokenization", M_TOK, M_TOK_EXPL);
    jw_key(j, "pieces");
    jw_open(j, '[');
    for (int i = 0; i < e->n_pieces; i++) {
        const piece *p = &e->pieces[i];
        jw_open(j, '{');
        jw_key(j, "text");
        jw_strn(j, e->text + p->start, p->len);
        jw_kint(j, "start", (long long)p->start);
        jw_kint(j, "length", (long long)p->len);
        jw_key(j, "special");
        jw_bool(j, p->special != 0);
        jw_key(j, "steps");
        jw_open(j, '[');
        for (int k = 0; k < p->n_steps; k++) {
            jw_open(j, '{');
            jw_key(j, "rank");
            if (p->steps[k].rank < 0) jw_null(j);
            else jw_int(j, p->steps[k].rank);
            jw_key(j, "tokens");
            jw_open(j, '[');
            for (size_t t = 0; t < p->steps[k].n; t++) jw_token(j, e, p->steps[k].ids[t]);
            jw_close(j, ']');
            jw_close(j, '}');
        }
        jw_close(j, ']');
        jw_close(j, '}');
    }
    jw_close(j, ']');
    jw_key(j, "tokens");
    jw_open(j, '[');
    for (int i = 0; i < T; i++) {
        const char *bytes = "";
        size_t len = 0;
        gpt2_token_bytes(e->m, e->ids[i], &bytes, &len);
        jw_open(j, '{');
        jw_kint(j, "position", i);
        jw_kint(j, "id", e->ids[i]);
        jw_key(j, "text");
        jw_strn(j, bytes, len);
        char hx[3 * 64 + 1];
        size_t o = 0;
        for (size_t k = 0; k < len && k < 64; k++)
            o += (size_t)snprintf(hx + o, sizeof hx - o, k ? " %02x" : "%02x", (unsigned char)bytes[k]);
        hx[o] = '\0';
        jw_kstr(j, "bytes", hx);
        jw_close(j, '}');
    }
    jw_close(j, ']');
    jw_close(j, '}');

    jw_section(j, "embeddings", M_EMB, M_EMB_EXPL);
    jw_key(j, "rows");
    jw_open(j, '[');
    for (int i = 0; i < T; i++) {
        jw_open(j, '{');
        jw_kint(j, "position", i);
        jw_key(j, "token");
        jw_token(j, e, e->ids[i]);
        jw_knum(j, "wte_norm", e->n_wte[i]);
        jw_knum(j, "wpe_norm", e->n_wpe[i]);
        jw_knum(j, "sum_norm", e->n_emb[i]);
        jw_key(j, "first");
        jw_open(j, '[');
        for (int k = 0; k < N_FIRST && k < e->C; k++) jw_num(j, e->emb[(size_t)i * e->C + k]);
        jw_close(j, ']');
        jw_key(j, "most_alike_position");
        if (e->alike[i] < 0) jw_null(j);
        else jw_int(j, e->alike[i]);
        jw_key(j, "cosine");
        if (e->alike[i] < 0) jw_null(j);
        else jw_num(j, e->alike_cos[i]);
        jw_close(j, '}');
    }
    jw_close(j, ']');
    jw_close(j, '}');

    jw_section(j, "blocks", M_BLOCKS, M_BLOCKS_EXPL);
    jw_kstr(j, "logit_lens_explanation", S(M_LENS_EXPL));
    jw_key(j, "layers");
    jw_open(j, '[');
    for (int l = 0; l < e->L; l++) {
        jw_open(j, '{');
        jw_kint(j, "layer", l);
        jw_key(j, "attention");
        jw_open(j, '[');
        for (int h = 0; h < H; h++) {
            jw_open(j, '{');
            jw_kint(j, "head", h);
            jw_key(j, "most_attended");
            jw_open(j, '[');
            for (int i = 0; i < T; i++) {
                const float *r = e->attn + (((size_t)l * H + h) * T + i) * T;
                int best = 0;
                for (int k = 1; k <= i; k++) if (r[k] > r[best]) best = k;
                jw_open(j, '{');
                jw_kint(j, "position", i);
                jw_kint(j, "attends_to", best);
                jw_knum(j, "weight", r[best]);
                jw_close(j, '}');
            }
            jw_close(j, ']');
            jw_close(j, '}');
        }
        jw_close(j, ']');
        jw_key(j, "residual_norm");
        jw_open(j, '[');
        for (int i = 0; i < T; i++) jw_num(j, e->res_norm[(size_t)l * T + i]);
        jw_close(j, ']');
        jw_key(j, "logit_lens"); /* the last position, or every position with --html */
        jw_open(j, '[');
        for (int i = e->lens_last_only ? T - 1 : 0; i < T; i++) {
            jw_open(j, '{');
            jw_kint(j, "position", i);
            jw_key(j, "token");
            jw_token(j, e, e->lens_id[(size_t)l * T + i]);
            jw_knum(j, "probability", e->lens_p[(size_t)l * T + i]);
            jw_close(j, '}');
        }
        jw_close(j, ']');
        jw_close(j, '}');
    }
    jw_close(j, ']');
    jw_close(j, '}');

    jw_section(j, "next_token", M_NEXT, M_NEXT_EXPL);
    jw_key(j, "top");
    jw_open(j, '[');
    double cum = 0;
    for (int r = 0; r < N; r++) {
        int32_t id = e->order[r];
        cum += e->probs[id];
        jw_open(j, '{');
        jw_kint(j, "rank", r + 1);
        jw_key(j, "token");
        jw_token(j, e, id);
        jw_knum(j, "logit", e->logits[(size_t)(T - 1) * V + id]);
        jw_knum(j, "probability", e->probs[id]);
        jw_knum(j, "cumulative", cum);
        jw_close(j, '}');
    }
    jw_close(j, ']');
    jw_close(j, '}');

    jw_section(j, "decoding", M_DEC, M_DEC_EXPL);
    jw_key(j, "stages");
    jw_open(j, '[');
    for (int s = 0; s < e->n_stages; s++) {
        const dec_stage *d = &e->stages[s];
        static const char *const keys[] = {[M_RAW] = "raw", [M_REP] = "repetition_penalty",
                                           [M_TEMP] = "temperature", [M_TOPK] = "top_k", [M_TOPP] = "top_p"};
        jw_open(j, '{');
        jw_kstr(j, "name", keys[d->name]);
        jw_kstr(j, "title", S(d->name));
        jw_kstr(j, "value", d->param);
        jw_kint(j, "kept", d->kept);
        jw_kint(j, "removed", s ? e->stages[s - 1].kept - d->kept : 0);
        jw_key(j, "rows");
        jw_open(j, '[');
        for (int r = 0; r < N; r++) {
            int32_t id = e->rows[r];
            jw_open(j, '{');
            jw_key(j, "token");
            jw_token(j, e, id);
            jw_knum(j, "logit", d->logits[id]);
            jw_knum(j, "probability", d->probs[id]);
            jw_key(j, "removed");
            jw_bool(j, d->logits[id] == -INFINITY);
            jw_close(j, '}');
        }
        jw_close(j, ']');
        jw_close(j, '}');
    }
    jw_close(j, ']');
    const dec_stage *fin = &e->stages[e->n_stages - 1];
    jw_key(j, "greedy");
    jw_open(j, '{');
    jw_key(j, "token");
    jw_token(j, e, e->greedy);
    jw_kstr(j, "explanation", S(M_GREEDY_EXPL));
    jw_close(j, '}');
    jw_key(j, "sampling");
    if (e->sampled < 0) {
        jw_null(j);
    } else {
        jw_open(j, '{');
        jw_key(j, "seed");
        jw_sep(j);
        fprintf(f, "%llu", (unsigned long long)e->gp.sampling.seed);
        jw_key(j, "token");
        jw_token(j, e, e->sampled);
        jw_kint(j, "rank", e->sampled_rank);
        jw_kint(j, "kept", fin->kept);
        jw_knum(j, "probability", fin->probs[e->sampled]);
        jw_key(j, "interval");
        jw_open(j, '[');
        jw_num(j, e->sampled_lo);
        jw_num(j, e->sampled_hi);
        jw_close(j, ']');
        jw_key(j, "is_top");
        jw_bool(j, e->sampled_rank == 1);
        jw_kstr(j, "explanation", S(M_SAMPLE_EXPL));
        jw_close(j, '}');
    }
    jw_key(j, "beam_search");
    if (e->gp.num_beams <= 1) {
        jw_null(j);
    } else {
        jw_open(j, '{');
        jw_kint(j, "beams", e->gp.num_beams);
        jw_kint(j, "max_new_tokens", e->gp.max_new_tokens);
        jw_kstr(j, "explanation", S(M_BEAMS_EXPL));
        jw_key(j, "steps");
        jw_open(j, '[');
        for (int k = 0; k < e->n_beam_steps; k++) {
            const beam_step_rec *r = &e->beams[k];
            jw_open(j, '{');
            jw_kint(j, "step", r->step);
            jw_key(j, "beams");
            jw_open(j, '[');
            for (int b = 0; b < r->n_beams; b++) {
                jw_open(j, '{');
                jw_knum(j, "score", r->scores[b]);
                jw_kint(j, "parent", r->parent[b]);
                jw_key(j, "tokens");
                jw_open(j, '[');
                for (int t = 0; t < r->step; t++) jw_token(j, e, r->tokens[(size_t)b * r->step + t]);
                jw_close(j, ']');
                jw_close(j, '}');
            }
            jw_close(j, ']');
            jw_key(j, "finished");
            jw_open(j, '[');
            for (int fi = 0; fi < r->n_finished; fi++) {
                jw_open(j, '{');
                jw_kint(j, "parent", r->fin_parent[fi]);
                jw_knum(j, "score", r->fin_score[fi]);
                jw_close(j, '}');
            }
            jw_close(j, ']');
            jw_key(j, "done");
            jw_bool(j, r->done != 0);
            jw_close(j, '}');
        }
        jw_close(j, ']');
        jw_key(j, "winner");
        jw_open(j, '{');
        jw_knum(j, "score", e->winner_score);
        jw_key(j, "tokens");
        jw_open(j, '[');
        for (size_t t = 0; t < e->n_winner; t++) jw_token(j, e, e->winner[t]);
        jw_close(j, ']');
        jw_close(j, '}');
        jw_close(j, '}');
    }
    jw_close(j, '}');
    jw_close(j, '}');
    fputc('\n', f);
}

/* ==========================================================================================
 * Running it
 * ======================================================================================== */

static int html_report(const explain *e, const char *path, char *err, size_t err_len);

static void explain_free(explain *e) {
    for (int i = 0; i < e->n_pieces; i++) {
        for (int k = 0; k < e->pieces[i].n_steps; k++) free(e->pieces[i].steps[k].ids);
        free(e->pieces[i].steps);
    }
    free(e->pieces);
    for (int k = 0; k < e->n_beam_steps; k++) {
        beam_step_rec *r = &e->beams[k];
        free(r->tokens);
        free(r->scores);
        free(r->parent);
        free(r->fin_parent);
        free(r->fin_score);
    }
    free(e->beams);
    for (int s = 0; s < e->n_stages; s++) {
        free(e->stages[s].logits);
        free(e->stages[s].probs);
    }
    void *bufs[] = {e->ids, e->wte, e->wpe, e->emb, e->attn, e->block, e->logits, e->n_wte,
                    e->n_wpe, e->n_emb, e->alike, e->alike_cos, e->lens_id, e->lens_p,
                    e->res_norm, e->order, e->probs, e->rows, e->winner};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
}

int explain_run(const gpt2_model *m, gpt2_context *c, const char *text, size_t len, int special,
                const gpt2_generate_params *gp, int top_n, int json, const char *html_path,
                const char *lang, char *err, size_t err_len) {
    if (err_len) err[0] = '\0';
    if (!explain_lang_ok(lang)) return fail_msg(err, err_len, "unknown language '%.32s' (en or ko)", lang);
    g_lang = lang && !strcmp(lang, "ko");
    explain e;
    memset(&e, 0, sizeof e);
    e.m = m;
    e.c = c;
    e.cfg = gpt2_get_config(m);
    e.L = e.cfg.n_layer;
    e.H = e.cfg.n_head;
    e.C = e.cfg.n_embd;
    e.V = e.cfg.n_vocab;
    e.text = text;
    e.len = len;
    e.gp = *gp;
    e.top_n = top_n > 0 ? top_n : 10;
    e.lens_last_only = !html_path; /* the page's grid needs every position */
    int r = collect(&e, special, err, err_len);
    if (r == 0 && html_path) r = html_report(&e, html_path, err, err_len);
    if (r == 0) {
        g_out = stdout;
        const char *term = getenv("TERM");
        g_colour = isatty(STDOUT_FILENO) && !getenv("NO_COLOR") && !(term && !strcmp(term, "dumb"));
        if (json) json_report(&e, stdout);
        else if (!html_path) text_report(&e);
    }
    explain_free(&e);
    return r;
}

/* ==========================================================================================
 * The web page: one self-contained file (inline CSS, SVG and a small script; no URL)
 * ======================================================================================== */

/* A new file beside path for writing, under a name no one else has (O_CREAT | O_EXCL, and
   O_NOFOLLOW: never a link someone planted), to be renamed onto path when it is complete, as
   gpt2_quantize writes its output. path must be a regular file or not exist. */
static FILE *create_beside(const char *path, char **tmp, char *err, size_t err_len) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fail_msg(err, err_len, "%s exists and is not a regular file", path);
        return NULL;
    }
    size_t n = strlen(path) + 32;
    char *name = malloc(n);
    if (!name) { fail_msg(err, err_len, "out of memory"); return NULL; }
    uint64_t x = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&st;
    for (int attempt = 0; attempt < 100; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (x ^ (uint64_t)ts.tv_nsec) * 0xbf58476d1ce4e5b9ULL + (uint64_t)attempt;
        snprintf(name, n, "%s.%08llx.tmp", path, (unsigned long long)(x >> 32));
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            fail_msg(err, err_len, "%s: %s", path, strerror(errno));
            free(name);
            return NULL;
        }
        FILE *f = fdopen(fd, "wb");
        if (!f) {
            close(fd);
            remove(name);
            free(name);
            fail_msg(err, err_len, "out of memory");
            return NULL;
        }
        *tmp = name;
        return f;
    }
    free(name);
    fail_msg(err, err_len, "%s: cannot create a temporary file beside it", path);
    return NULL;
}

/* text (valid UTF-8, no control characters: what visible() makes) with & < > " ' escaped */
static void h_esc(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* a token's visible text, escaped */
static void h_tok(FILE *f, const explain *e, int32_t id) {
    sbuf t = {0};
    h_esc(f, tok_label(e, &t, id));
    free(t.s);
}

static void h_pct(FILE *f, double p) {
    char b[32];
    pct(b, sizeof b, p);
    fputs(b, f);
}

static const char *css =
    "body{font-family:system-ui,-apple-system,'Segoe UI','Noto Sans','Noto Sans CJK KR',sans-serif;"
    "margin:0 auto;max-width:1100px;padding:16px 24px;color:#1d2430;background:#fbfbfd;line-height:1.45}"
    "h1{font-size:1.5em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:2px solid #d8dde6;padding-bottom:.2em}"
    "h3{margin:1em 0 .4em;font-size:1.05em}"
    "p.ex{color:#4a5566;max-width:60em}"
    ".mono,.tok,td.mono{font-family:ui-monospace,'DejaVu Sans Mono','Noto Sans Mono CJK KR',monospace}"
    ".strip{display:flex;flex-wrap:wrap;gap:6px;margin:.5em 0}"
    ".chip{border:1px solid #9fb3d1;background:#eef3fb;border-radius:6px;padding:3px 8px;text-align:center}"
    ".chip .tok{display:block;font-size:1.05em;white-space:pre}"
    ".chip .id{display:block;font-size:.75em;color:#5b6b82}.chip .tok{border:none;background:none;padding:0;margin:0}"
    ".tok{background:#eef3fb;border:1px solid #c7d4ea;border-radius:4px;padding:0 4px;margin:0 2px;white-space:pre}"
    "ol.merges{margin:.2em 0 .6em;padding-left:2em}ol.merges li{margin:2px 0}"
    ".rank{color:#7a8699;font-size:.8em;margin-left:.6em}"
    "table{border-collapse:collapse;margin:.4em 0}th,td{padding:2px 8px;border-bottom:1px solid #e3e7ee;text-align:right}"
    "th{background:#eef1f6;font-weight:600}td.l,th.l{text-align:left}"
    ".bar{display:inline-block;height:10px;background:#3b78c2;vertical-align:middle;border-radius:2px}"
    ".barcell{min-width:120px;text-align:left}.barcell span.v{font-size:.8em;margin-left:4px;color:#333}"
    "td.removed{background:#eceef1;color:#9aa3ae}td.removed .bar{background:#c5cad1}"
    ".lens td{font-size:.85em;text-align:center;min-width:60px}"
    ".lens td small{display:block;color:#334}"
    "#attw{min-height:1.4em;font-family:ui-monospace,monospace;color:#223}"
    "select{font-size:1em;margin:0 .6em 0 .2em}"
    ".pick{background:#fff6d6;border:1px solid #e5c95c;border-radius:6px;padding:6px 10px;margin:.5em 0}"
    "svg text{font-family:ui-monospace,'DejaVu Sans Mono','Noto Sans Mono CJK KR',monospace}"
    ".beamwrap{overflow-x:auto}";

static void h_tokens(FILE *f, const explain *e) {
    fprintf(f, "<section id=\"tokenization\"><h2>");
    h_esc(f, S(M_TOK));
    fprintf(f, "</h2><p class=\"ex\">");
    h_esc(f, S(M_TOK_EXPL));
    fprintf(f, "</p><h3>");
    h_esc(f, S(M_FINAL));
    fprintf(f, "</h3><div class=\"strip\" id=\"token-strip\">");
    for (int i = 0; i < e->T; i++) {
        fprintf(f, "<div class=\"chip\" title=\"%s %d\"><span class=\"tok\">", S(M_POS), i);
        h_tok(f, e, e->ids[i]);
        fprintf(f, "</span><span class=\"id\">%d</span></div>", e->ids[i]);
    }
    fprintf(f, "</div><p class=\"ex\">");
    h_esc(f, S(M_TOK_NOTE));
    fprintf(f, "</p><h3>");
    h_esc(f, S(M_MERGES));
    fprintf(f, "</h3>");
    for (int i = 0; i < e->n_pieces; i++) {
        const piece *p = &e->pieces[i];
        sbuf pt = {0};
        visible(&pt, e->text + p->start, p->len);
        fprintf(f, "<div class=\"piece\">");
        h_esc(f, S(M_PIECE));
        fprintf(f, " %d: <span class=\"tok\">", i + 1);
        h_esc(f, pt.s ? pt.s : "");
        fprintf(f, "</span>");
        if (p->special) { fputs(" (", f); h_esc(f, S(M_SPECIAL)); fputs(")", f); }
        free(pt.s);
        fprintf(f, "<ol class=\"merges\" start=\"0\">");
        for (int k = 0; k < p->n_steps; k++) {
            fprintf(f, "<li>");
            for (size_t j = 0; j < p->steps[k].n; j++) {
                fputs("<span class=\"tok\">", f);
                h_tok(f, e, p->steps[k].ids[j]);
                fputs("</span>", f);
            }
            if (p->steps[k].rank >= 0) {
                fputs("<span class=\"rank\">", f);
                h_esc(f, S(M_MERGE_RANK));
                fprintf(f, " %d</span>", p->steps[k].rank);
            }
            fprintf(f, "</li>");
        }
        fprintf(f, "</ol></div>\n");
    }
    fprintf(f, "</section>\n");
}

static void h_embeddings(FILE *f, const explain *e) {
    const int T = e->T, C = e->C, K = C < 32 ? C : 32;
    double mx = 1e-9;
    for (int i = 0; i < T; i++)
        for (int k = 0; k < K; k++) mx = fmax(mx, fabs(e->emb[(size_t)i * C + k]));
    fprintf(f, "<section id=\"embeddings\"><h2>");
    h_esc(f, S(M_EMB));
    fprintf(f, "</h2><p class=\"ex\">");
    h_esc(f, S(M_EMB_EXPL));
    fputs(" ", f);
    h_esc(f, S(M_ALIKE_EXPL));
    fprintf(f, "</p><p class=\"ex\">");
    h_esc(f, S(M_EMB_VIEW));
    fprintf(f, "</p><table><tr><th>");
    h_esc(f, S(M_POS));
    fputs("</th><th class=\"l\">", f);
    h_esc(f, S(M_TOKEN));
    fprintf(f, "</th><th>%s</th><th>%s</th><th>%s</th><th class=\"l\">", S(M_WTE), S(M_WPE), S(M_SUM));
    h_esc(f, S(M_FIRST));
    fputs("</th><th>", f);
    h_esc(f, S(M_ALIKE_SHORT));
    fputs("</th></tr>\n", f);
    for (int i = 0; i < T; i++) {
        fprintf(f, "<tr><td>%d</td><td class=\"l\"><span class=\"tok\">", i);
        h_tok(f, e, e->ids[i]);
        fprintf(f, "</span></td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td class=\"l\">", e->n_wte[i],
                e->n_wpe[i], e->n_emb[i]);
        fprintf(f, "<svg width=\"%d\" height=\"30\" viewBox=\"0 0 %d 30\" role=\"img\">", K * 5, K * 5);
        for (int k = 0; k < K; k++) {
            double v = e->emb[(size_t)i * C + k], h = 14.0 * fabs(v) / mx;
            fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"4\" height=\"%.1f\" fill=\"%s\"><title>%d: %.4f</title></rect>",
                    k * 5, v >= 0 ? 15 - h : 15, h < 0.5 ? 0.5 : h, v >= 0 ? "#3b78c2" : "#d0523e", k, v);
        }
        fputs("</svg></td><td>", f);
        if (e->alike[i] >= 0) fprintf(f, "%d (%.2f)", e->alike[i], e->alike_cos[i]);
        else fputs("-", f);
        fputs("</td></tr>\n", f);
    }
    fputs("</table></section>\n", f);
}

static void h_blocks(FILE *f, const explain *e) {
    const int T = e->T, L = e->L;
    fprintf(f, "<section id=\"attention\"><h2>");
    h_esc(f, S(M_BLOCKS));
    fprintf(f, "</h2><p class=\"ex\">");
    h_esc(f, S(M_BLOCKS_EXPL));
    fprintf(f, "</p><p class=\"ex\">");
    h_esc(f, S(M_HOVER));
    fprintf(f, "</p><label>");
    h_esc(f, S(M_LAYER));
    fputs("<select id=\"layer\">", f);
    for (int l = 0; l < L; l++) fprintf(f, "<option value=\"%d\">%d</option>", l, l);
    fputs("</select></label><label>", f);
    h_esc(f, S(M_HEAD));
    fputs("<select id=\"head\">", f);
    for (int h = 0; h < e->H; h++) fprintf(f, "<option value=\"%d\">%d</option>", h, h);
    fputs("</select></label><div id=\"attw\">&nbsp;</div>"
          "<svg id=\"heatmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"></svg>\n", f);
    fputs("</section>\n<section id=\"logit-lens\"><h2>", f);
    h_esc(f, S(M_LENS));
    fprintf(f, "</h2><p class=\"ex\">");
    h_esc(f, S(M_LENS_EXPL));
    fputs(" ", f);
    h_esc(f, S(M_LENS_GRID_EXPL));
    fputs("</p><div class=\"beamwrap\"><table class=\"lens\"><tr><th>", f);
    h_esc(f, S(M_LAYER));
    fputs("</th>", f);
    for (int t = 0; t < T; t++) {
        fputs("<th><span class=\"tok\">", f);
        h_tok(f, e, e->ids[t]);
        fprintf(f, "</span><br><small>%d</small></th>", t);
    }
    fputs("<th>", f);
    h_esc(f, S(M_NORM_LAST));
    fputs("</th></tr>\n", f);
    for (int l = 0; l < L; l++) {
        fprintf(f, "<tr><th>%d</th>", l);
        for (int t = 0; t < T; t++) {
            double p = e->lens_p[(size_t)l * T + t];
            int light = 97 - (int)(45 * sqrt(p));
            fprintf(f, "<td style=\"background:hsl(212,70%%,%d%%)\" title=\"%.4f\"><span class=\"mono\">", light, p);
            h_tok(f, e, e->lens_id[(size_t)l * T + t]);
            fputs("</span><small>", f);
            h_pct(f, p);
            fputs("</small></td>", f);
        }
        fprintf(f, "<td>%.2f</td></tr>\n", e->res_norm[(size_t)l * T + T - 1]);
    }
    fputs("</table></div></section>\n", f);
}

static void h_bar(FILE *f, double p, double scale) {
    double w = scale > 0 ? 110.0 * p / scale : 0;
    fprintf(f, "<span class=\"bar\" style=\"width:%.1fpx\"></span><span class=\"v\">", w < 1 && p > 0 ? 1.0 : w);
    h_pct(f, p);
    fputs("</span>", f);
}

static void h_next(FILE *f, const explain *e) {
    const int V = e->V, N = e->top_n < V ? e->top_n : V;
    fprintf(f, "<section id=\"next-token\"><h2>");
    h_esc(f, S(M_NEXT));
    fprintf(f, "</h2><p class=\"ex\">");
    h_esc(f, S(M_NEXT_EXPL));
    fputs("</p><table><tr><th>#</th><th class=\"l\">", f);
    h_esc(f, S(M_TOKEN));
    fprintf(f, "</th><th>%s</th><th>", S(M_ID));
    h_esc(f, S(M_LOGIT));
    fputs("</th><th class=\"l\">", f);
    h_esc(f, S(M_PROB));
    fputs("</th><th>", f);
    h_esc(f, S(M_CUM));
    fputs("</th></tr>\n", f);
    double cum = 0, top = e->probs[e->order[0]];
    for (int r = 0; r < N; r++) {
        int32_t id = e->order[r];
        cum += e->probs[id];
        fprintf(f, "<tr><td>%d</td><td class=\"l\"><span class=\"tok\">", r + 1);
        h_tok(f, e, id);
        fprintf(f, "</span></td><td>%d</td><td>%.4f</td><td class=\"barcell\">", id,
                e->logits[(size_t)(e->T - 1) * V + id]);
        h_bar(f, e->probs[id], top);
        fputs("</td><td>", f);
        h_pct(f, cum);
        fputs("</td></tr>\n", f);
    }
    fputs("</table></section>\n", f);

    fprintf(f, "<section id=\"decoding\"><h2>");
    h_esc(f, S(M_DEC));
    fprintf(f, "</h2><p class=\"ex\">");
    h_esc(f, S(M_DEC_EXPL));
    fputs(" ", f);
    h_esc(f, S(M_BARS_EXPL));
    fputs("</p>", f);
    if (e->n_stages == 1) { fputs("<p class=\"ex\">", f); h_esc(f, S(M_NOFILTER)); fputs("</p>", f); }
    fputs("<div class=\"beamwrap\"><table id=\"filters\"><tr><th class=\"l\">", f);
    h_esc(f, S(M_TOKEN));
    fputs("</th>", f);
    for (int s = 0; s < e->n_stages; s++) {
        fputs("<th class=\"l\">", f);
        h_esc(f, S(e->stages[s].name));
        if (e->stages[s].param[0]) { fputs(" ", f); h_esc(f, e->stages[s].param); }
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    double scale[5];
    for (int s = 0; s < e->n_stages; s++) {
        scale[s] = 0;
        for (int r = 0; r < N; r++) scale[s] = fmax(scale[s], e->stages[s].probs[e->rows[r]]);
    }
    for (int r = 0; r < N; r++) {
        int32_t id = e->rows[r];
        fputs("<tr><td class=\"l\"><span class=\"tok\">", f);
        h_tok(f, e, id);
        fputs("</span></td>", f);
        for (int s = 0; s < e->n_stages; s++) {
            bool removed = e->stages[s].logits[id] == -INFINITY;
            fprintf(f, "<td class=\"barcell%s\">", removed ? " removed" : "");
            if (removed) { fputs("&#x2715; ", f); h_esc(f, S(M_REMOVED)); }
            else h_bar(f, e->stages[s].probs[id], scale[s]);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("<tr><th class=\"l\">", f);
    h_esc(f, S(M_KEPT));
    fputs("</th>", f);
    for (int s = 0; s < e->n_stages; s++) fprintf(f, "<td class=\"l\">%d</td>", e->stages[s].kept);
    fputs("</tr></table></div>\n", f);

    const dec_stage *fin = &e->stages[e->n_stages - 1];
    fputs("<div class=\"pick\" id=\"greedy\"><b>", f);
    h_esc(f, S(M_GREEDY));
    fputs("</b>: <span class=\"tok\">", f);
    h_tok(f, e, e->greedy);
    fprintf(f, "</span> (%s %d)<br><small>", S(M_ID), e->greedy);
    h_esc(f, S(M_GREEDY_EXPL));
    fputs("</small></div>\n<div class=\"pick\" id=\"sampling\"><b>", f);
    h_esc(f, S(M_SAMPLE));
    fputs("</b>: ", f);
    if (e->sampled < 0) {
        h_esc(f, S(M_SAMPLE_OFF));
    } else {
        fprintf(f, "seed %llu &#x2192; <span class=\"tok\">", (unsigned long long)e->gp.sampling.seed);
        h_tok(f, e, e->sampled);
        fprintf(f, "</span> (%s %d, ", S(M_ID), e->sampled);
        h_esc(f, S(M_RANK));
        fprintf(f, " %d / %d, ", e->sampled_rank, fin->kept);
        h_esc(f, S(M_PROB));
        fputs(" ", f);
        h_pct(f, fin->probs[e->sampled]);
        fputs("; ", f);
        h_esc(f, S(M_INTERVAL));
        fprintf(f, " [%.4f, %.4f))<br>", e->sampled_lo, e->sampled_hi);
        /* the line [0, 1) with the pick's share */
        fprintf(f, "<svg width=\"600\" height=\"22\" role=\"img\"><rect x=\"0\" y=\"6\" width=\"600\" height=\"10\" fill=\"#dfe5ee\"/>"
                   "<rect x=\"%.1f\" y=\"2\" width=\"%.1f\" height=\"18\" fill=\"#e0a800\"/></svg><br><small>",
                600 * e->sampled_lo, fmax(1.5, 600 * (e->sampled_hi - e->sampled_lo)));
        h_esc(f, S(M_SAMPLE_EXPL));
        fputs(" ", f);
        h_esc(f, e->sampled_rank == 1 ? S(M_SAMPLE_TOP) : S(M_SAMPLE_NOTTOP));
        fputs("</small>", f);
    }
    fputs("</div></section>\n", f);
}

/* does beam b of step record r start with the winner's first r->step tokens? */
static bool on_winner_path(const explain *e, const beam_step_rec *r, int b) {
    if ((size_t)r->step > e->n_winner) return false;
    return !memcmp(r->tokens + (size_t)b * r->step, e->winner, (size_t)r->step * sizeof *e->winner);
}

static void h_node(FILE *f, const explain *e, double x, double y, const char *label_raw, int32_t id,
                   double score, const char *title, bool win, bool finished) {
    sbuf t = {0}, fit = {0};
    const char *lab = label_raw ? label_raw : tok_label(e, &t, id);
    sb_fit(&fit, lab, 12, false);
    fprintf(f, "<g class=\"node%s\"><title>", win ? " win" : "");
    h_esc(f, title ? title : "");
    fprintf(f, "</title><rect x=\"%.1f\" y=\"%.1f\" width=\"150\" height=\"26\" rx=\"5\" fill=\"%s\" stroke=\"%s\" stroke-width=\"%s\"/>",
            x, y, finished ? "#f1ecfa" : win ? "#fff3c4" : "#eef3fb", win ? "#c79a00" : "#9fb3d1", win ? "2.5" : "1");
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#1d2430\">", x + 6, y + 17);
    h_esc(f, fit.s ? fit.s : "");
    fputs("</text>", f);
    if (isfinite(score)) fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#5b6b82\" text-anchor=\"end\">%.3f</text>", x + 146, y + 17, score);
    fputs("</g>\n", f);
    free(t.s);
    free(fit.s);
}

static void h_beams(FILE *f, const explain *e) {
    fprintf(f, "<section id=\"beam-search\"><h2>");
    h_esc(f, S(M_BEAMS));
    if (e->gp.num_beams <= 1) {
        fputs("</h2><p class=\"ex\">", f);
        h_esc(f, S(M_BEAMS_EXPL));
        fputs("</p><p class=\"ex mono\">gpt2 explain -p &#8230; --beams 3 -n 4</p></section>\n", f);
        return;
    }
    fprintf(f, " (--beams %d, -n %d)</h2><p class=\"ex\">", e->gp.num_beams, e->gp.max_new_tokens);
    h_esc(f, S(M_BEAMS_EXPL));
    fputs("</p>", f);
    int rows = 1, steps = e->n_beam_steps;
    for (int k = 0; k < steps; k++) {
        int r = e->beams[k].n_beams + e->beams[k].n_finished;
        if (r > rows) rows = r;
    }
    const double colw = 190, rowh = 36, x0 = 10, y0 = 30;
    double W = x0 + (steps + 1) * colw + 10, Hh = y0 + rows * rowh + 10;
    fprintf(f, "<div class=\"beamwrap\"><svg id=\"beam-tree\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\">\n", W, Hh);
    fprintf(f, "<text x=\"%.1f\" y=\"18\" font-size=\"12\" fill=\"#5b6b82\">", x0);
    h_esc(f, S(M_PROMPT));
    fputs("</text>", f);
    for (int k = 0; k < steps; k++) {
        fprintf(f, "<text x=\"%.1f\" y=\"18\" font-size=\"12\" fill=\"#5b6b82\">", x0 + (k + 1) * colw);
        h_esc(f, S(M_STEP));
        fprintf(f, " %d</text>", e->beams[k].step);
    }
    /* edges first, then nodes over them */
    for (int k = 0; k < steps; k++) {
        const beam_step_rec *r = &e->beams[k];
        for (int i = 0; i < r->n_beams + r->n_finished; i++) {
            int par = i < r->n_beams ? r->parent[i] : r->fin_parent[i - r->n_beams];
            if (k == 0) par = 0;
            double xa = x0 + k * colw + 150, ya = y0 + par * rowh + 13;
            double xb = x0 + (k + 1) * colw, yb = y0 + i * rowh + 13;
            bool win = i < r->n_beams && on_winner_path(e, r, i);
            fprintf(f, "<path d=\"M%.1f %.1fC%.1f %.1f %.1f %.1f %.1f %.1f\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s/>\n",
                    xa, ya, xa + 20, ya, xb - 20, yb, xb, yb, win ? "#c79a00" : "#a9b6c9", win ? "2.5" : "1.2",
                    i >= r->n_beams ? " stroke-dasharray=\"4 3\"" : "");
        }
    }
    sbuf pt = {0};
    visible(&pt, e->text, e->len);
    h_node(f, e, x0, y0, pt.s ? pt.s : "", 0, NAN, pt.s, true, false);
    free(pt.s);
    bool marked[64] = {false};
    for (int k = 0; k < steps; k++) {
        const beam_step_rec *r = &e->beams[k];
        bool win_done = false;
        for (int b = 0; b < r->n_beams; b++) {
            sbuf bt = {0};
            beam_text(e, &bt, r->tokens + (size_t)b * r->step, r->step);
            bool win = !win_done && on_winner_path(e, r, b);
            win_done |= win;
            h_node(f, e, x0 + (k + 1) * colw, y0 + b * rowh, NULL, r->tokens[(size_t)b * r->step + r->step - 1],
                   r->scores[b], bt.s, win, false);
            free(bt.s);
        }
        for (int i = 0; i < r->n_finished; i++) {
            bool win = e->n_winner == (size_t)r->step && fabs(r->fin_score[i] - e->winner_score) < 1e-9 && k < 64 && !marked[k];
            if (win) marked[k] = true;
            char title[96];
            snprintf(title, sizeof title, "%s: %.4f", S(M_FINISHED), r->fin_score[i]);
            h_node(f, e, x0 + (k + 1) * colw, y0 + (r->n_beams + i) * rowh, "<|endoftext|>", 0, r->fin_score[i], title, win, true);
        }
    }
    fputs("</svg></div><p class=\"pick\" id=\"beam-winner\"><b>", f);
    h_esc(f, S(M_WINNER));
    fprintf(f, "</b> (%s %.4f): <span class=\"tok\">", S(M_SCORE), e->winner_score);
    sbuf bt = {0};
    beam_text(e, &bt, e->winner, (int)e->n_winner);
    h_esc(f, bt.s ? bt.s : "");
    free(bt.s);
    fputs("</span></p></section>\n", f);
}

/* the script: the attention heatmap of the selected layer and head, from the data block;
   an error is written into the page (tests look for it), success too */
static const char *script =
    "window.onerror=function(m){var d=document.createElement('p');d.id='script-error';"
    "d.textContent='script error: '+m;document.body.appendChild(d);};\n"
    "(function(){\n"
    "var D=JSON.parse(document.getElementById('explain-data').textContent);\n"
    "var NS='http://www.w3.org/2000/svg',svg=document.getElementById('heatmap'),"
    "ls=document.getElementById('layer'),hs=document.getElementById('head'),"
    "out=document.getElementById('attw');\n"
    "function el(n,a){var e=document.createElementNS(NS,n);for(var k in a)e.setAttribute(k,a[k]);return e;}\n"
    "function draw(){\n"
    " var l=+ls.value,h=+hs.value,T=D.T,a=D.attn[l*D.H+h],c=Math.max(8,Math.min(30,Math.floor(560/T))),"
    "m=Math.min(140,8+8*D.maxlab);\n"
    " while(svg.firstChild)svg.removeChild(svg.firstChild);\n"
    " svg.setAttribute('width',m+T*c+10);svg.setAttribute('height',m+T*c+10);\n"
    " for(var i=0;i<T;i++){\n"
    "  var t=el('text',{x:m-4,y:m+i*c+c/2+4,'font-size':11,'text-anchor':'end'});t.textContent=D.labels[i];svg.appendChild(t);\n"
    "  var u=el('text',{x:0,y:0,'font-size':11,transform:'translate('+(m+i*c+c/2+4)+','+(m-4)+') rotate(-60)'});"
    "u.textContent=D.labels[i];svg.appendChild(u);\n"
    "  for(var j=0;j<T;j++){\n"
    "   var w=j<=i?a[i*(i+1)/2+j]/10000:-1;\n"
    "   var r=el('rect',{x:m+j*c,y:m+i*c,width:c-1,height:c-1,'class':'cell',"
    "fill:w<0?'#f1f2f4':'rgba(40,95,170,'+(0.06+0.94*w).toFixed(3)+')'});\n"
    "   if(w>=0){(function(i,j,w){r.addEventListener('mouseover',function(){out.textContent="
    "D.labels[i]+' \\u2192 '+D.labels[j]+': '+w.toFixed(4);});})(i,j,w);\n"
    "    var ti=el('title',{});ti.textContent=D.labels[i]+' \\u2192 '+D.labels[j]+': '+w.toFixed(4);r.appendChild(ti);}\n"
    "   svg.appendChild(r);\n"
    "  }\n"
    " }\n"
    "}\n"
    "ls.addEventListener('change',draw);hs.addEventListener('change',draw);draw();\n"
    "window.addEventListener('load',function(){var d=document.createElement('p');d.id='render-ok';"
    "d.hidden=true;d.textContent='render-ok';document.body.appendChild(d);});\n"
    "})();\n";

static void h_data(FILE *f, const explain *e) {
    const int T = e->T;
    jw j0 = {f, 0, {false}, false}, *j = &j0;
    fputs("<script type=\"application/json\" id=\"explain-data\">", f);
    jw_open(j, '{');
    jw_kint(j, "T", T);
    jw_kint(j, "L", e->L);
    jw_kint(j, "H", e->H);
    jw_key(j, "labels");
    jw_open(j, '[');
    int maxlab = 1;
    for (int i = 0; i < T; i++) {
        sbuf t = {0};
        const char *lab = tok_label(e, &t, e->ids[i]);
        int w = text_width(lab);
        if (w > maxlab) maxlab = w;
        jw_str(j, lab);
        free(t.s);
    }
    jw_close(j, ']');
    jw_kint(j, "maxlab", maxlab > 16 ? 16 : maxlab);
    /* attention, the lower triangle of each (layer, head), in units of 1e-4 */
    jw_key(j, "attn");
    jw_open(j, '[');
    for (int lh = 0; lh < e->L * e->H; lh++) {
        jw_open(j, '[');
        for (int i = 0; i < T; i++)
            for (int k = 0; k <= i; k++) jw_int(j, lround(1e4 * e->attn[((size_t)lh * T + i) * T + k]));
        jw_close(j, ']');
        fputc('\n', f);
    }
    jw_close(j, ']');
    jw_close(j, '}');
    fputs("</script>\n", f);
}

static int html_report(const explain *e, const char *path, char *err, size_t err_len) {
    char *tmp = NULL;
    FILE *f = create_beside(path, &tmp, err, err_len);
    if (!f) return 1;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
               "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
               "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
               "<title>gpt2 explain</title><style>%s</style></head>\n<body>\n<h1>",
            g_lang ? "ko" : "en", css);
    h_esc(f, S(M_TITLE));
    fputs("</h1><p>", f);
    h_esc(f, S(M_PROMPT));
    fputs(": <span class=\"tok\" id=\"prompt\">", f);
    sbuf pt = {0};
    visible(&pt, e->text, e->len);
    h_esc(f, pt.s ? pt.s : "");
    free(pt.s);
    gpt2_model_info in = gpt2_get_model_info(e->m);
    fprintf(f, "</span> (%d %s)<br>", e->T, S(M_TOKENS));
    h_esc(f, S(M_MODEL));
    fputs(": ", f);
    sbuf nm = {0};
    visible(&nm, in.name, strlen(in.name));
    h_esc(f, nm.s ? nm.s : "");
    free(nm.s);
    fprintf(f, " &#8212; %d %s, %d %s, n_embd %d, n_vocab %d</p>\n", e->L, S(M_LAYERS), e->H, S(M_HEADS), e->C, e->V);
    h_tokens(f, e);
    h_embeddings(f, e);
    h_blocks(f, e);
    h_next(f, e);
    h_beams(f, e);
    h_data(f, e);
    fprintf(f, "<script>%s</script>\n</body></html>\n", script);
    int bad = ferror(f);
    if (fflush(f) != 0) bad = 1;
    int e1 = errno;
    if (!bad && fsync(fileno(f)) != 0 && errno != EINVAL) { bad = 1; e1 = errno; }
    if (fclose(f) != 0 && !bad) { bad = 1; e1 = errno; }
    if (bad) {
        remove(tmp);
        free(tmp);
        return fail_msg(err, err_len, "writing %s failed: %s", path, strerror(e1 ? e1 : EIO));
    }
    if (rename(tmp, path) != 0) {
        int e2 = errno;
        remove(tmp);
        free(tmp);
        return fail_msg(err, err_len, "%s: %s", path, strerror(e2));
    }
    free(tmp);
    struct stat st;
    if (stat(path, &st) == 0) fprintf(stderr, "gpt2: wrote %s (%lld bytes)\n", path, (long long)st.st_size);
    return 0;
}
