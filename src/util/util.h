/*
 * util.h - the base layer: errors, allocation, growable buffers, clocks,
 * logging, random numbers, ids and failpoints.
 *
 * Knows nothing of any other layer. Everything here is thread-safe unless it
 * says otherwise; a struct dbuf belongs to one thread at a time.
 */
#ifndef DURABLE_UTIL_UTIL_H
#define DURABLE_UTIL_UTIL_H

#include "util/common.h"

#include <stdarg.h>

#include "durable.h"

/* ---- errors ---- */

/* Fills err (if not NULL and still empty: the first error wins) and returns code. */
durable_code err_set(durable_error *err, durable_code code, const char *fmt, ...) DUR_PRINTF(3, 4);
/* Prepends context to an error already set ("step \"x\": " + msg). */
void err_prefix(durable_error *err, const char *fmt, ...) DUR_PRINTF(2, 3);
/* Clears err to DURABLE_OK with an empty message. */
void err_clear(durable_error *err);
/* Thread-safe text for an errno value, into buf. Returns buf. */
const char *err_errno(int errnum, char *buf, size_t buf_len);

/* ---- allocation: never returns NULL (calls the OOM hook) ---- */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) DUR_PRINTF(1, 2);

/* ---- dbuf: growable NUL-terminated buffer with a hard maximum ----
 * Invariant: after dbuf_init, buf is never NULL and buf[len] == 0. */
struct dbuf {
    char *buf;
    size_t len;
    size_t cap;
    size_t max; /* hard limit on len; 0 means SIZE_MAX/2 */
};
void dbuf_init(struct dbuf *b, size_t max);
void dbuf_release(struct dbuf *b);
void dbuf_reset(struct dbuf *b);
/* Appends; DURABLE_ETOOBIG (buffer unchanged) past the maximum. */
durable_code dbuf_add(struct dbuf *b, const void *p, size_t n);
durable_code dbuf_adds(struct dbuf *b, const char *s);
durable_code dbuf_addf(struct dbuf *b, const char *fmt, ...) DUR_PRINTF(2, 3);
/* Appends s as a JSON string, quotes included, escaped as jansson's
 * json_dumps escapes it (so a document built by concatenation has the same
 * bytes as one jansson encodes); NULL appends null. s must be UTF-8. */
durable_code dbuf_add_json_string(struct dbuf *b, const char *s);
/* Hands the buffer to the caller (free()); b is left as dbuf_release
 * leaves it (nothing to free: releasing it again is harmless, dbuf_init
 * before using it again). */
char *dbuf_detach(struct dbuf *b, size_t *out_len);

/* Is text read as JSON where either JSON or YAML is welcome? Yes when its
 * first character other than space, tab, CR or LF is '{' or '[', or when
 * there is none (text may be NULL when len is 0). */
bool text_looks_json(const char *text, size_t len);

/* ---- clocks ---- */
int64_t clock_wall_ms(void); /* Unix time, milliseconds */
int64_t clock_mono_ms(void); /* monotonic, milliseconds */
int64_t clock_mono_us(void); /* monotonic, microseconds */
/* Formats Unix ms as RFC 3339 UTC with milliseconds into out (>= 25 bytes). */
void clock_format_rfc3339(int64_t unix_ms, char out[32]);
/* Reads RFC 3339 text "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"
 * (T and Z in either case; fraction digits past milliseconds ignored) as
 * Unix ms. false when s is anything else (a date alone, a bad field). */
bool clock_parse_rfc3339(const char *s, int64_t *out_ms);

/* ---- logging (through durable_set_log_handler) ---- */
void log_msg(durable_log_level level, const char *fmt, ...) DUR_PRINTF(2, 3);
#define log_debug(...) log_msg(DURABLE_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(DURABLE_LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(DURABLE_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(DURABLE_LOG_ERROR, __VA_ARGS__)

/* ---- randomness and ids ---- */
/* Uniform double in [0, 1), thread-safe (per-thread state seeded from getrandom). */
double rand_unit(void);
/* Fills out with a new id: prefix + 26 chars, time-ordered then random
 * (Crockford base32, like a ULID). out must hold strlen(prefix) + 27 bytes. */
void id_new(const char *prefix, char *out, size_t out_len);
#define ID_MAX 48

/* ---- failpoints (crash tests) ----
 * FAILPOINT("name") kills the process with SIGKILL when the environment
 * variable DURABLE_FAILPOINT is "name" or "name:N" (the Nth time it is
 * reached, from 1). FAILPOINT_SKIP("name") is true instead, that once: the
 * caller leaves something out (a lost wake-up). Compiled in only when
 * DURABLE_FAILPOINTS is defined. */
#ifdef DURABLE_FAILPOINTS
void failpoint_hit(const char *name);
bool failpoint_skip(const char *name);
#    define FAILPOINT(name)      failpoint_hit(name)
#    define FAILPOINT_SKIP(name) failpoint_skip(name)
#else
#    define FAILPOINT(name)      ((void)0)
#    define FAILPOINT_SKIP(name) false
#endif

/* ---- durations (duration.c) ---- */

/* "90s", "15m", "12h", "30d" (also "ms"): a whole number above 0 and a
 * unit, at most 100 years, into *out_ms; DURABLE_EINVAL saying so
 * otherwise. */
durable_code duration_parse(const char *text, int64_t *out_ms, durable_error *err);

#endif
