/*
 * util.c - implementation of the base layer declared in util.h.
 *
 * The OOM and log hooks are process-wide and set before threads start; they
 * are read with relaxed atomics. Per-thread random state lives in TLS.
 */
#include "util/common.h"

#include "util/util.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void dur_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "durable: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

/* ---- errors ---- */

static const char *const code_texts[] = {
    [DURABLE_OK] = "ok",
    [DURABLE_EINVAL] = "invalid argument",
    [DURABLE_ENOMEM] = "out of memory",
    [DURABLE_ETOOBIG] = "too big",
    [DURABLE_ENOTFOUND] = "not found",
    [DURABLE_ECONFLICT] = "conflict with current state",
    [DURABLE_EIO] = "database or i/o error",
    [DURABLE_ESYNTAX] = "syntax error",
    [DURABLE_EUNSUPPORTED] = "not supported yet",
    [DURABLE_ECLOSED] = "engine is shutting down",
    [DURABLE_ETIMEOUT] = "timed out",
    [DURABLE_EACTION] = "action refused",
    [DURABLE_ESTEP] = "step failed",
    [DURABLE_EFENCED] = "run owned by another node",
    [DURABLE_ESUSPENDED] = "the workflow waits",
    [DURABLE_ENONDETERMINISM] = "workflow code does not match its run's history",
};

const char *durable_strerror(durable_code code)
{
    if ((unsigned)code < DUR_ARRAY_LEN(code_texts) && code_texts[code])
        return code_texts[code];
    return "unknown error";
}

const char *durable_version(void)
{
    return DURABLE_VERSION_STRING;
}

void durable_free(void *p)
{
    free(p);
}

durable_code err_set(durable_error *err, durable_code code, const char *fmt, ...)
{
    va_list ap;

    if (!err || err->code != DURABLE_OK)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void err_prefix(durable_error *err, const char *fmt, ...)
{
    char pre[DURABLE_ERROR_MSG_SIZE];
    size_t n, size = sizeof(err->msg);
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    n = strlen(pre);
    if (n > size - 1)
        n = size - 1;
    memmove(err->msg + n, err->msg, size - 1 - n);
    memcpy(err->msg, pre, n);
    err->msg[size - 1] = '\0';
}

void err_clear(durable_error *err)
{
    if (!err)
        return;
    err->code = DURABLE_OK;
    err->msg[0] = '\0';
}

const char *err_errno(int errnum, char *buf, size_t buf_len)
{
    /* GNU strerror_r may return a static string rather than fill buf. */
    const char *s = strerror_r(errnum, buf, buf_len);
    if (s != buf)
        snprintf(buf, buf_len, "%s", s);
    return buf;
}

/* ---- allocation ---- */

static void default_oom(size_t size)
{
    fprintf(stderr, "durable: out of memory allocating %zu bytes\n", size);
    abort();
}

static _Atomic(durable_oom_fn) oom_hook = default_oom;

void durable_set_oom_handler(durable_oom_fn fn)
{
    atomic_store(&oom_hook, fn ? fn : default_oom);
}

static DUR_NORETURN void oom(size_t n)
{
    durable_oom_fn hook = atomic_load(&oom_hook);

    hook(n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    return p;
}

/* ---- dbuf ---- */

void dbuf_init(struct dbuf *b, size_t max)
{
    b->cap = 64;
    b->buf = xmalloc(b->cap);
    b->buf[0] = '\0';
    b->len = 0;
    b->max = max ? max : SIZE_MAX / 2;
}

void dbuf_release(struct dbuf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}

void dbuf_reset(struct dbuf *b)
{
    b->len = 0;
    b->buf[0] = '\0';
}

static durable_code dbuf_grow(struct dbuf *b, size_t extra)
{
    size_t need;

    if (extra > b->max - b->len)
        return DURABLE_ETOOBIG;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return DURABLE_OK;
    while (b->cap < need)
        b->cap *= 2;
    b->buf = xrealloc(b->buf, b->cap);
    return DURABLE_OK;
}

durable_code dbuf_add(struct dbuf *b, const void *p, size_t n)
{
    if (dbuf_grow(b, n) != DURABLE_OK)
        return DURABLE_ETOOBIG;
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return DURABLE_OK;
}

durable_code dbuf_adds(struct dbuf *b, const char *s)
{
    return dbuf_add(b, s, strlen(s));
}

durable_code dbuf_addf(struct dbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DURABLE_EINVAL;
    if ((size_t)n >= b->cap - b->len) {
        if (dbuf_grow(b, (size_t)n) != DURABLE_OK) {
            b->buf[b->len] = '\0';
            return DURABLE_ETOOBIG;
        }
        va_start(ap, fmt);
        vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    } else if ((size_t)n > b->max - b->len) {
        b->buf[b->len] = '\0';
        return DURABLE_ETOOBIG;
    }
    b->len += (size_t)n;
    return DURABLE_OK;
}

/* Appends the escape sequence of c, a byte JSON strings cannot hold as is. */
static durable_code add_json_escape(struct dbuf *b, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

    switch (c) {
    case '"':
    case '\\':
        esc[1] = (char)c;
        return dbuf_add(b, esc, 2);
    case '\b':
        esc[1] = 'b';
        return dbuf_add(b, esc, 2);
    case '\f':
        esc[1] = 'f';
        return dbuf_add(b, esc, 2);
    case '\n':
        esc[1] = 'n';
        return dbuf_add(b, esc, 2);
    case '\r':
        esc[1] = 'r';
        return dbuf_add(b, esc, 2);
    case '\t':
        esc[1] = 't';
        return dbuf_add(b, esc, 2);
    default:
        return dbuf_add(b, esc, 6);
    }
}

durable_code dbuf_add_json_string(struct dbuf *b, const char *s)
{
    const char *run;
    durable_code rc;

    if (!s)
        return dbuf_add(b, "null", 4);
    rc = dbuf_add(b, "\"", 1);
    while (rc == DURABLE_OK && *s) {
        for (run = s; (unsigned char)*s >= 0x20 && *s != '"' && *s != '\\'; s++)
            ;
        rc = dbuf_add(b, run, (size_t)(s - run));
        if (rc == DURABLE_OK && *s)
            rc = add_json_escape(b, (unsigned char)*s++);
    }
    return rc == DURABLE_OK ? dbuf_add(b, "\"", 1) : rc;
}

char *dbuf_detach(struct dbuf *b, size_t *out_len)
{
    char *p = b->buf;

    if (out_len)
        *out_len = b->len;
    b->buf = NULL;
    b->len = b->cap = 0;
    return p;
}

bool text_looks_json(const char *text, size_t len)
{
    size_t i = 0;

    while (text && i < len &&
           (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    return !text || i == len || text[i] == '{' || text[i] == '[';
}

/* ---- clocks ---- */

int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ms(void)
{
    return clock_mono_us() / 1000;
}

int64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void clock_format_rfc3339(int64_t unix_ms, char out[32])
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    /* Clamp so the compiler can see the text fits (and so must a reader). */
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(unix_ms % 1000 + 1000) % 1000);
}

/* n decimal digits at s as a number, -1 if any is not a digit. */
static int rfc_digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The fraction of a second at *p (after the '.', if any) as ms; p moves
 * past it. false for a '.' without digits. */
static bool rfc_fraction(const char **p, int *ms)
{
    int n = 0;

    *ms = 0;
    if (**p != '.')
        return true;
    for ((*p)++; **p >= '0' && **p <= '9'; (*p)++, n++) {
        if (n < 3)
            *ms = *ms * 10 + (**p - '0');
    }
    for (int k = n; k < 3; k++)
        *ms *= 10;
    return n > 0;
}

/* The offset at p ("Z" or "+HH:MM", the end of the text) in minutes. */
static bool rfc_offset(const char *p, int *minutes)
{
    int oh, om;

    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        *minutes = 0;
        return true;
    }
    if ((*p != '+' && *p != '-') || strlen(p) != 6 || p[3] != ':')
        return false;
    oh = rfc_digits(p + 1, 2);
    om = rfc_digits(p + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59)
        return false;
    *minutes = (oh * 60 + om) * (*p == '-' ? -1 : 1);
    return true;
}

bool clock_parse_rfc3339(const char *s, int64_t *out_ms)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, mo, d, h, mi, sec, ms = 0, off = 0;
    int64_t era, yoe, doy, days;
    const char *p;

    if (!s || strnlen(s, 20) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return false;
    y = rfc_digits(s, 4);
    mo = rfc_digits(s + 5, 2);
    d = rfc_digits(s + 8, 2);
    h = rfc_digits(s + 11, 2);
    mi = rfc_digits(s + 14, 2);
    sec = rfc_digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || sec < 0 || sec > 60)
        return false;
    p = s + 19;
    if (!rfc_fraction(&p, &ms) || !rfc_offset(p, &off))
        return false;
    /* days from 1970-01-01 to the date (the civil calendar's algorithm) */
    y -= mo <= 2;
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    *out_ms = ((days * 24 + h) * 60 + mi - off) * 60000 + (int64_t)sec * 1000 + ms;
    return true;
}

/* ---- logging ---- */

static void default_log(durable_log_level level, const char *msg, void *ud)
{
    static const char *const names[] = { "debug", "info", "warning", "error" };
    (void)ud;
    fprintf(stderr, "durable: %s: %s\n", names[level], msg);
}

static _Atomic(durable_log_fn) log_hook = default_log;
static void *_Atomic log_ud;
static _Atomic int log_min = DURABLE_LOG_WARN;

void durable_set_log_handler(durable_log_fn fn, void *ud, durable_log_level min)
{
    atomic_store(&log_ud, ud);
    atomic_store(&log_min, (int)min);
    atomic_store(&log_hook, fn ? fn : default_log);
}

void log_msg(durable_log_level level, const char *fmt, ...)
{
    char msg[1024];
    durable_log_fn hook;
    va_list ap;

    if ((int)level < atomic_load_explicit(&log_min, memory_order_relaxed))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    hook = atomic_load(&log_hook);
    hook(level, msg, atomic_load(&log_ud));
}

/* ---- randomness and ids ---- */

static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* splitmix64: small, fast, good enough for simulated failures and ids. */
    uint64_t z;

    if (rng_state == 0) {
        if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state))
            rng_state = (uint64_t)clock_mono_us() ^ (uint64_t)getpid();
        rng_state |= 1;
    }
    z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double rand_unit(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

void id_new(const char *prefix, char *out, size_t out_len)
{
    static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
    uint64_t ms = (uint64_t)clock_wall_ms();
    uint64_t r1 = rng_next();
    uint64_t r2 = rng_next();
    char body[27];
    int i;

    /* 10 chars of time (50 bits), 16 chars of randomness (80 bits). */
    for (i = 9; i >= 0; i--) {
        body[i] = alphabet[ms & 31];
        ms >>= 5;
    }
    for (i = 10; i < 26; i++) {
        uint64_t *r = i < 22 ? &r1 : &r2;
        body[i] = alphabet[*r & 31];
        *r >>= 5;
    }
    body[26] = '\0';
    snprintf(out, out_len, "%s%s", prefix, body);
}

/* ---- failpoints ---- */

#ifdef DURABLE_FAILPOINTS
/* Whether this reach of name is the one DURABLE_FAILPOINT arms; hits
 * counts the reaches of an armed name. */
static bool failpoint_due(const char *name, _Atomic long *hits)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): durable never sets the environment */
    const char *spec = getenv("DURABLE_FAILPOINT");
    size_t n;
    long want = 1;

    if (!spec)
        return false;
    n = strlen(name);
    if (strncmp(spec, name, n) != 0 || (spec[n] != '\0' && spec[n] != ':'))
        return false;
    if (spec[n] == ':')
        want = strtol(spec + n + 1, NULL, 10);
    return atomic_fetch_add(hits, 1) + 1 == want;
}

void failpoint_hit(const char *name)
{
    static _Atomic long hits;

    if (failpoint_due(name, &hits))
        raise(SIGKILL);
}

bool failpoint_skip(const char *name)
{
    static _Atomic long hits;

    return failpoint_due(name, &hits);
}
#endif
