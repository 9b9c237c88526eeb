/*
 * expr.c - compiled jq programs: the libjq 1.6 wrapper of the expr layer.
 *
 * Every libjq call (and every touch of a jv, whose reference counts are not
 * atomic) happens under expr_mu, one process-wide leaf mutex: libjq 1.6 is
 * not thread-safe. A struct expr owns one jq_state, compiled once
 * (jq_compile is slow: it re-parses and re-binds jq's builtins, 15-30 ms) and
 * restarted per evaluation with jq_start/jq_next. Identical sources share
 * one struct expr through a refcounted cache, also guarded by expr_mu.
 *
 * Each program is compiled as EXPR_PRELUDE + source + EXPR_SUFFIX, which
 * works around libjq 1.6 and hides what a server must not expose:
 *  - env and $ENV are {}, input/inputs fail, stderr prints nothing;
 *  - the source comes after `... as $ENV |`, so import/include (which make
 *    libjq abort when no library path is set) are syntax errors;
 *  - halt_error is error(.), and halt breaks out of the program: jq 1.6
 *    double-frees a halt_error message at the next jq_start, and asserts
 *    when reset inside a halted path expression;
 *  - `label $__durable_out | SOURCE | ., break $__durable_out` stops the
 *    program after its first output. jq 1.6 asserts (aborting the process)
 *    when jq_start resets a program paused inside a path expression
 *    (`leaf_paths`, `first(paths)`), so every evaluation runs its program to
 *    the end: the break makes that one more jq_next, and infinite generators
 *    (`repeat(1)`) still yield their first output. jq_next is never called
 *    again after it returned an error or the end: jq 1.6 asserts on that too.
 * The prelude is one line, so jq's "line N" stays right; an error located
 * in the suffix (line N+1) is reported as the end of the user's text.
 *
 * Converters between jansson and jv live here too: json_to_jv (context in,
 * depth-capped) and jv_to_json / jv_measure (results out, depth- and
 * size-capped against a budget shared by all jobs of one call).
 */
#include "util/common.h"

#include "expr/expr.h"

#include <ctype.h>
#include <float.h>
#include <jq.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr_int.h"

/* Wrapped around every program; see the file comment. Keep it on one line:
 * jq's error messages count lines. */
#define EXPR_PRELUDE                                                             \
    "def env: {}; def stderr: .; def input: error(\"input is not available\"); " \
    "def inputs: error(\"inputs is not available\"); def halt_error: error(.); " \
    "def halt_error($code): error(.); {} as $ENV | label $__durable_out | "      \
    "def halt: break $__durable_out; "
/* On its own line so that a trailing `# comment` cannot swallow it. */
#define EXPR_SUFFIX "\n| ., break $__durable_out"

#define CACHE_BUCKETS 256

struct expr {
    char *src;         /* the program as written; immutable */
    uint32_t hash;     /* of src; immutable */
    jq_state *jq;      /* guarded by expr_mu */
    long refs;         /* guarded by expr_mu */
    struct expr *next; /* cache chain, guarded by expr_mu */
};

/* The jq lock: every libjq call and jv operation of the process's expr
 * layer. A leaf: nothing else is locked while it is held. */
static pthread_mutex_t expr_mu = PTHREAD_MUTEX_INITIALIZER;
static struct expr *cache[CACHE_BUCKETS]; /* guarded by expr_mu */

/* Output budget of one expr_eval_jobs call. */
struct budget {
    size_t used; /* bytes of compact JSON counted so far */
};

/* ---- small helpers ---- */

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static bool is_blank(const char *s)
{
    for (; *s; s++) {
        if (!isspace((unsigned char)*s))
            return false;
    }
    return true;
}

static durable_code charge(struct budget *b, size_t n, durable_error *err)
{
    if (n > EXPR_MAX_OUTPUT || b->used > EXPR_MAX_OUTPUT - n)
        return err_set(err, DURABLE_ETOOBIG, "expression result larger than %zu bytes",
                       EXPR_MAX_OUTPUT);
    b->used += n;
    return DURABLE_OK;
}

/* ---- compile errors ---- */

struct jq_errors {
    bool has_msg;
    char msg[DURABLE_ERROR_MSG_SIZE];
};

/* jq's compile messages read "jq: error: WHAT at <top-level>, line N:\nPROGRAM".
 * Keeps "jq: WHAT at <top-level>, line N": the program text would show our
 * prelude, and the rest of the message is noise. */
static void clean_message(const char *m, char *out, size_t out_len)
{
    size_t n;

    if (strncmp(m, "jq: error: ", 11) == 0)
        m += 11;
    else if (strncmp(m, "jq: ", 4) == 0)
        m += 4;
    n = strcspn(m, "\n");
    while (n > 0 && (m[n - 1] == ':' || isspace((unsigned char)m[n - 1])))
        n--;
    snprintf(out, out_len, "jq: %.*s", (int)n, m);
}

/* jq_msg_cb: keeps the first message (the second is "jq: 1 compile error").
 * Owns msg. Called under expr_mu, from jq_compile. */
static void capture_error(void *data, jv msg)
{
    struct jq_errors *c = data;

    if (!c->has_msg) {
        if (jv_get_kind(msg) == JV_KIND_STRING) {
            clean_message(jv_string_value(msg), c->msg, sizeof(c->msg));
        } else {
            char buf[200];
            snprintf(c->msg, sizeof(c->msg), "jq: %s",
                     jv_dump_string_trunc(jv_copy(msg), buf, sizeof(buf)));
        }
        c->has_msg = true;
    }
    jv_free(msg);
}

/* Installed after compiling so that nothing ever reaches jq's default
 * callback, which prints to stderr. */
static void discard_error(void *data, jv msg)
{
    (void)data;
    jv_free(msg);
}

/* libjq's message for a program starting with import/include is a bare
 * "syntax error, unexpected import"; say what is meant. */
static bool starts_with_word(const char *s, const char *word)
{
    size_t n = strlen(word);

    return strncmp(s, word, n) == 0 && !isalnum((unsigned char)s[n]) && s[n] != '_';
}

static bool starts_with_module_directive(const char *src)
{
    while (isspace((unsigned char)*src))
        src++;
    return starts_with_word(src, "import") || starts_with_word(src, "include");
}

/* msg (cleaned, in place) ends ", line N". When N is past the end of src,
 * the error is in EXPR_SUFFIX: src ended too early. Returns msg. */
static char *locate_in_source(char *msg, const char *src)
{
    char *at = NULL;
    long lines = 1, line;

    for (char *p = strstr(msg, ", line "); p; p = strstr(p + 1, ", line "))
        at = p; /* the last one */

    for (const char *p = src; *p; p++)
        lines += *p == '\n';
    line = at ? strtol(at + 7, NULL, 10) : 0;
    if (line <= lines)
        return msg;
    if (strncmp(msg, "jq: syntax error, ", 18) == 0)
        snprintf(msg, DURABLE_ERROR_MSG_SIZE,
                 "jq: syntax error, unexpected end of expression at <top-level>, line %ld", lines);
    else
        snprintf(at, DURABLE_ERROR_MSG_SIZE - (size_t)(at - msg), ", line %ld", lines);
    return msg;
}

/* An interpolation's body is compiled alone before the whole program:
 * libjq 1.6 leaks the string it was building when a syntax error stops it
 * inside an interpolation (found by tests/fuzz/fuzz_expr), so a body with
 * a syntax error is refused before jq compiles the program around it. Only
 * a syntax error counts: a variable or function of the enclosing program
 * is not defined in the body alone. Bodies come innermost first, so the
 * one compiled alone never has a faulty interpolation of its own. */
/* A jq with its errors captured into cap; NULL out of memory. */
static jq_state *jq_open(struct jq_errors *cap)
{
    jq_state *jq = jq_init();

    if (jq) {
        /* jq_init leaves these unset in 1.6 (valgrind: `input_filename`
         * reads them), and `debug` would call a garbage debug callback. */
        jq_set_input_cb(jq, NULL, NULL);
        jq_set_debug_cb(jq, NULL, NULL);
        jq_set_error_cb(jq, capture_error, cap);
    }
    return jq;
}

struct body_check {
    const char *src;
    durable_error *err;
    durable_code rc;
};

static bool check_body(void *ud, size_t from, size_t to)
{
    struct body_check *bc = ud;
    /* in parentheses, as an expression (an empty one is a syntax error, as
     * in the interpolation); the ")" on its own line, past a `# comment` */
    char *body = xasprintf("(%.*s\n)", (int)(to - from), bc->src + from);
    struct jq_errors cap = { .has_msg = false };
    jq_state *jq = NULL;

    if (starts_with_module_directive(body + 1))
        bc->rc = err_set(bc->err, DURABLE_EINVAL, "jq: import and include are not allowed");
    else
        jq = jq_open(&cap);
    if (jq) {
        if (!jq_compile(jq, body) && cap.has_msg && strstr(cap.msg, "syntax error")) {
            /* jq's words about the body alone, without its place in it */
            char *m = strncmp(cap.msg, "jq: ", 4) == 0 ? cap.msg + 4 : cap.msg, *cut;
            if ((cut = strstr(m, " (Unix shell quoting issues?)")) != NULL ||
                (cut = strstr(m, " at <top-level>")) != NULL)
                *cut = '\0';
            bc->rc = err_set(bc->err, DURABLE_EINVAL, "jq: in a string interpolation \\( ): %s", m);
        }
        jq_set_error_cb(jq, discard_error, NULL);
        jq_teardown(&jq);
    }
    free(body);
    return bc->rc == DURABLE_OK;
}

/* Builds a new struct expr for src. Caller holds expr_mu. */
static durable_code compile_locked(const char *src, uint32_t h, struct expr **out,
                                   durable_error *err)
{
    struct jq_errors cap = { .has_msg = false };
    char *program = NULL;
    jq_state *jq = NULL;
    durable_code rc = DURABLE_OK;
    struct body_check bc = { src, err, DURABLE_OK };

    switch (expr_src_end(src, check_body, &bc)) {
    case EXPR_SRC_IN_STRING: {
        long lines = 1;
        for (const char *p = src; *p; p++)
            lines += *p == '\n';
        rc = err_set(err, DURABLE_EINVAL,
                     "jq: syntax error, unterminated string at <top-level>, line %ld", lines);
        goto done;
    }
    case EXPR_SRC_TOO_DEEP:
        rc = err_set(err, DURABLE_EINVAL,
                     "jq: the program nests strings and interpolations more than 32 deep");
        goto done;
    case EXPR_SRC_STOPPED:
        rc = bc.rc;
        goto done;
    default:
        break;
    }
    jq = jq_open(&cap);
    if (!jq) {
        rc = err_set(err, DURABLE_ENOMEM, "could not start jq: out of memory");
        goto done;
    }
    program = xasprintf("%s%s%s", EXPR_PRELUDE, src, EXPR_SUFFIX);
    if (!jq_compile(jq, program)) {
        if (starts_with_module_directive(src))
            rc = err_set(err, DURABLE_EINVAL, "jq: import and include are not allowed");
        else if (cap.has_msg)
            rc = err_set(err, DURABLE_EINVAL, "%s", locate_in_source(cap.msg, src));
        else
            rc = err_set(err, DURABLE_EINVAL, "jq: could not compile the expression");
        goto done;
    }
    jq_set_error_cb(jq, discard_error, NULL);
    *out = xcalloc(1, sizeof(**out));
    (*out)->src = xstrdup(src);
    (*out)->hash = h;
    (*out)->jq = jq;
    (*out)->refs = 1;
    jq = NULL;
done:
    if (jq)
        jq_teardown(&jq);
    free(program);
    return rc;
}

durable_code expr_compile(const char *src, struct expr **out, durable_error *err)
{
    struct expr *e = NULL;
    durable_code rc = DURABLE_OK;
    uint32_t h;

    *out = NULL;
    if (!src || is_blank(src))
        return err_set(err, DURABLE_EINVAL, "jq: empty expression");
    if (strnlen(src, EXPR_MAX_SRC_LEN + 1) > EXPR_MAX_SRC_LEN)
        return err_set(err, DURABLE_ETOOBIG, "jq: expression longer than %d bytes",
                       EXPR_MAX_SRC_LEN);
    h = hash_str(src);
    pthread_mutex_lock(&expr_mu);
    for (e = cache[h % CACHE_BUCKETS]; e; e = e->next) {
        if (e->hash == h && strcmp(e->src, src) == 0)
            break;
    }
    if (e) {
        e->refs++;
    } else {
        rc = compile_locked(src, h, &e, err);
        if (rc == DURABLE_OK) {
            DUR_ASSERT(e != NULL);
            e->next = cache[h % CACHE_BUCKETS];
            cache[h % CACHE_BUCKETS] = e;
        }
    }
    pthread_mutex_unlock(&expr_mu);
    if (rc == DURABLE_OK)
        *out = e;
    return rc;
}

void expr_free(struct expr *e)
{
    struct expr **pp;
    bool last;

    if (!e)
        return;
    pthread_mutex_lock(&expr_mu);
    DUR_ASSERT(e->refs > 0);
    last = --e->refs == 0;
    if (last) {
        for (pp = &cache[e->hash % CACHE_BUCKETS]; *pp != e; pp = &(*pp)->next)
            DUR_ASSERT(*pp != NULL);
        *pp = e->next;
        jq_teardown(&e->jq);
    }
    pthread_mutex_unlock(&expr_mu);
    if (last) {
        free(e->src);
        free(e);
    }
}

const char *expr_source(const struct expr *e)
{
    return e->src;
}

bool expr_truthy(json_t *v)
{
    return v && !json_is_null(v) && !json_is_false(v);
}

/* ---- jansson -> jv (the context) ---- */

static durable_code json_to_jv(json_t *j, int depth, jv *out, durable_error *err);

static durable_code array_to_jv(json_t *j, int depth, jv *out, durable_error *err)
{
    size_t i, n = json_array_size(j);
    durable_code rc = DURABLE_OK;
    jv a, item = jv_invalid();

    if (n > INT_MAX)
        return err_set(err, DURABLE_ETOOBIG, "expression input has an array too long for jq");
    a = jv_array_sized((int)n);
    for (i = 0; i < n && rc == DURABLE_OK; i++) {
        rc = json_to_jv(json_array_get(j, i), depth + 1, &item, err);
        if (rc == DURABLE_OK)
            a = jv_array_append(a, item);
    }
    if (rc != DURABLE_OK)
        jv_free(a);
    else
        *out = a;
    return rc;
}

static durable_code object_to_jv(json_t *j, int depth, jv *out, durable_error *err)
{
    const char *key;
    size_t key_len;
    json_t *value;
    durable_code rc = DURABLE_OK;
    jv o = jv_object(), item = jv_invalid();

    json_object_keylen_foreach(j, key, key_len, value)
    {
        if (key_len > INT_MAX) {
            rc = err_set(err, DURABLE_ETOOBIG, "expression input has a key too long for jq");
            break;
        }
        rc = json_to_jv(value, depth + 1, &item, err);
        if (rc != DURABLE_OK)
            break;
        o = jv_object_set(o, jv_string_sized(key, (int)key_len), item);
    }
    if (rc != DURABLE_OK)
        jv_free(o);
    else
        *out = o;
    return rc;
}

/* OUT *out: an owned jv, written only on success. Caller holds expr_mu. */
static durable_code json_to_jv(json_t *j, int depth, jv *out, durable_error *err)
{
    if (depth >= EXPR_MAX_DEPTH)
        return err_set(err, DURABLE_ETOOBIG, "expression input nested deeper than %d levels",
                       EXPR_MAX_DEPTH);
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return object_to_jv(j, depth, out, err);
    case JSON_ARRAY:
        return array_to_jv(j, depth, out, err);
    case JSON_STRING:
        if (json_string_length(j) > INT_MAX)
            return err_set(err, DURABLE_ETOOBIG, "expression input has a string too long for jq");
        *out = jv_string_sized(json_string_value(j), (int)json_string_length(j));
        return DURABLE_OK;
    case JSON_INTEGER:
        *out = jv_number((double)json_integer_value(j));
        return DURABLE_OK;
    case JSON_REAL:
        *out = jv_number(json_real_value(j));
        return DURABLE_OK;
    case JSON_TRUE:
        *out = jv_true();
        return DURABLE_OK;
    case JSON_FALSE:
        *out = jv_false();
        return DURABLE_OK;
    case JSON_NULL:
    default:
        *out = jv_null();
        return DURABLE_OK;
    }
}

/* ---- jv -> jansson (results) ---- */

static json_t *number_to_json(double d)
{
    if (isnan(d))
        return json_null(); /* jq prints nan as null */
    if (isinf(d))
        return json_real(d > 0 ? DBL_MAX : -DBL_MAX); /* as jq prints infinite */
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == trunc(d))
        return json_integer((json_int_t)d);
    return json_real(d);
}

static size_t number_len(double d)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%.17g", d);

    return n > 0 ? (size_t)n : 1;
}

static durable_code jv_to_json(jv v, int depth, struct budget *b, json_t **out, durable_error *err);

static durable_code jv_array_to_json(jv v, int depth, struct budget *b, json_t **out,
                                     durable_error *err)
{
    int i, n = jv_array_length(jv_copy(v));
    durable_code rc = charge(b, 2 + (n > 0 ? (size_t)n - 1 : 0), err);
    json_t *a = json_array(), *item = NULL;

    for (i = 0; i < n && rc == DURABLE_OK; i++) {
        jv elem = jv_array_get(jv_copy(v), i);
        rc = jv_to_json(elem, depth + 1, b, &item, err);
        jv_free(elem);
        if (rc == DURABLE_OK)
            json_array_append_new(a, item);
    }
    if (rc != DURABLE_OK)
        json_decref(a);
    else
        *out = a;
    return rc;
}

static durable_code jv_object_to_json(jv v, int depth, struct budget *b, json_t **out,
                                      durable_error *err)
{
    int n = jv_object_length(jv_copy(v));
    durable_code rc = charge(b, 2 + (n > 0 ? (size_t)n - 1 : 0), err);
    json_t *o = json_object(), *item = NULL;

    for (int it = jv_object_iter(v); rc == DURABLE_OK && jv_object_iter_valid(v, it);
         it = jv_object_iter_next(v, it)) {
        jv key = jv_object_iter_key(v, it);
        jv val = jv_object_iter_value(v, it);
        size_t key_len = (size_t)jv_string_length_bytes(jv_copy(key));
        rc = charge(b, key_len + 3, err);
        if (rc == DURABLE_OK)
            rc = jv_to_json(val, depth + 1, b, &item, err);
        if (rc == DURABLE_OK && json_object_setn_new(o, jv_string_value(key), key_len, item) != 0)
            rc = err_set(err, DURABLE_ESTEP, "jq: result has a key that is not valid UTF-8");
        jv_free(key);
        jv_free(val);
    }
    if (rc != DURABLE_OK)
        json_decref(o);
    else
        *out = o;
    return rc;
}

/* v is borrowed. OUT *out: a new reference, written only on success.
 * Caller holds expr_mu. */
static durable_code jv_to_json(jv v, int depth, struct budget *b, json_t **out, durable_error *err)
{
    durable_code rc = DURABLE_OK;
    json_t *j = NULL;

    if (depth >= EXPR_MAX_DEPTH)
        return err_set(err, DURABLE_ETOOBIG, "expression result nested deeper than %d levels",
                       EXPR_MAX_DEPTH);
    switch (jv_get_kind(v)) {
    case JV_KIND_OBJECT:
        return jv_object_to_json(v, depth, b, out, err);
    case JV_KIND_ARRAY:
        return jv_array_to_json(v, depth, b, out, err);
    case JV_KIND_STRING: {
        size_t len = (size_t)jv_string_length_bytes(jv_copy(v));
        rc = charge(b, len + 2, err);
        if (rc == DURABLE_OK)
            j = json_stringn(jv_string_value(v), len);
        break;
    }
    case JV_KIND_NUMBER:
        rc = charge(b, number_len(jv_number_value(v)), err);
        j = number_to_json(jv_number_value(v));
        break;
    case JV_KIND_TRUE:
        rc = charge(b, 4, err);
        j = json_true();
        break;
    case JV_KIND_FALSE:
        rc = charge(b, 5, err);
        j = json_false();
        break;
    default: /* JV_KIND_NULL; JV_KIND_INVALID never reaches here */
        rc = charge(b, 4, err);
        j = json_null();
        break;
    }
    if (rc == DURABLE_OK && !j)
        rc = err_set(err, DURABLE_ESTEP, "jq: result is not representable as JSON");
    if (rc == DURABLE_OK)
        *out = j;
    else
        json_decref(j);
    return rc;
}

/* Charges the compact size of v (borrowed) to the budget without building
 * anything, so that jv_dump_string never sees an oversized or over-deep
 * value. Caller holds expr_mu. */
static durable_code jv_measure(jv v, int depth, struct budget *b, durable_error *err)
{
    durable_code rc = DURABLE_OK;
    int i, n;

    if (depth >= EXPR_MAX_DEPTH)
        return err_set(err, DURABLE_ETOOBIG, "expression result nested deeper than %d levels",
                       EXPR_MAX_DEPTH);
    switch (jv_get_kind(v)) {
    case JV_KIND_ARRAY:
        n = jv_array_length(jv_copy(v));
        rc = charge(b, 2 + (n > 0 ? (size_t)n - 1 : 0), err);
        for (i = 0; i < n && rc == DURABLE_OK; i++) {
            jv elem = jv_array_get(jv_copy(v), i);
            rc = jv_measure(elem, depth + 1, b, err);
            jv_free(elem);
        }
        return rc;
    case JV_KIND_OBJECT:
        n = jv_object_length(jv_copy(v));
        rc = charge(b, 2 + (n > 0 ? (size_t)n - 1 : 0), err);
        for (int it = jv_object_iter(v); rc == DURABLE_OK && jv_object_iter_valid(v, it);
             it = jv_object_iter_next(v, it)) {
            jv key = jv_object_iter_key(v, it);
            jv val = jv_object_iter_value(v, it);
            rc = charge(b, (size_t)jv_string_length_bytes(key) + 3, err);
            if (rc == DURABLE_OK)
                rc = jv_measure(val, depth + 1, b, err);
            jv_free(val);
        }
        return rc;
    case JV_KIND_STRING:
        return charge(b, (size_t)jv_string_length_bytes(jv_copy(v)) + 2, err);
    case JV_KIND_NUMBER:
        return charge(b, number_len(jv_number_value(v)), err);
    default:
        return charge(b, 5, err);
    }
}

/* ---- evaluation ---- */

/* Fills job's output from r (owned). Caller holds expr_mu. */
static durable_code deliver(struct expr_job *job, jv r, struct budget *b, durable_error *err)
{
    durable_code rc = DURABLE_OK;

    job->is_null = jv_get_kind(r) == JV_KIND_NULL;
    if (!job->as_text) {
        rc = jv_to_json(r, 0, b, &job->value, err);
    } else if (jv_get_kind(r) == JV_KIND_STRING) {
        job->text_len = (size_t)jv_string_length_bytes(jv_copy(r));
        rc = charge(b, job->text_len, err);
        if (rc == DURABLE_OK)
            job->text = xstrndup(jv_string_value(r), job->text_len);
    } else {
        rc = jv_measure(r, 0, b, err);
        if (rc == DURABLE_OK) {
            jv s = jv_dump_string(jv_copy(r), 0);
            job->text_len = (size_t)jv_string_length_bytes(jv_copy(s));
            job->text = xstrndup(jv_string_value(s), job->text_len);
            jv_free(s);
        }
    }
    jv_free(r);
    return rc;
}

/* An error value: a string is jq's message, anything else is shown as JSON.
 * Consumes msg. */
static durable_code runtime_error(jv msg, durable_error *err)
{
    char buf[200];

    if (jv_get_kind(msg) == JV_KIND_STRING) {
        err_set(err, DURABLE_ESTEP, "jq: %s", jv_string_value(msg));
        jv_free(msg);
        return DURABLE_ESTEP;
    }
    return err_set(err, DURABLE_ESTEP, "jq: %s (not a string)",
                   jv_dump_string_trunc(msg, buf, sizeof(buf)));
}

/* Runs one job on input (borrowed). Caller holds expr_mu. */
static durable_code run_job(struct expr_job *job, jv input, struct budget *b, durable_error *err)
{
    jq_state *jq = job->e->jq;
    durable_code rc;
    jv r;

    jq_start(jq, jv_copy(input), 0);
    r = jq_next(jq);
    if (jv_is_valid(r)) {
        rc = deliver(job, r, b, err);
        /* Run to the end (see the file comment): normally one more call, in
         * which the suffix's break unwinds the program. */
        for (r = jq_next(jq); jv_is_valid(r); r = jq_next(jq))
            jv_free(r);
        jv_free(r);
    } else if (jv_invalid_has_msg(jv_copy(r))) {
        rc = runtime_error(jv_invalid_get_msg(r), err);
    } else {
        jv_free(r);
        rc = deliver(job, jv_null(), b, err); /* no output: null */
    }
    /* Restart on null so that the state no longer holds the context. */
    jq_start(jq, jv_null(), 0);
    return rc;
}

durable_code expr_eval_jobs(struct expr_job *jobs, size_t n, json_t *ctx, size_t *failed,
                            durable_error *err)
{
    struct budget b = { .used = 0 };
    durable_code rc;
    size_t i;
    jv input = jv_invalid();

    for (i = 0; i < n; i++) {
        jobs[i].value = NULL;
        jobs[i].text = NULL;
        jobs[i].text_len = 0;
        jobs[i].is_null = false;
    }
    pthread_mutex_lock(&expr_mu);
    rc = json_to_jv(ctx ? ctx : json_null(), 0, &input, err);
    if (rc != DURABLE_OK) {
        *failed = EXPR_JOB_CONTEXT;
    } else {
        for (i = 0; i < n && rc == DURABLE_OK; i++)
            rc = run_job(&jobs[i], input, &b, err);
        jv_free(input);
        if (rc != DURABLE_OK)
            *failed = i - 1;
    }
    pthread_mutex_unlock(&expr_mu);
    if (rc != DURABLE_OK)
        expr_jobs_release(jobs, n);
    return rc;
}

void expr_jobs_release(struct expr_job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(jobs[i].value);
        jobs[i].value = NULL;
        free(jobs[i].text);
        jobs[i].text = NULL;
        jobs[i].text_len = 0;
    }
}

durable_code expr_eval(const struct expr *e, json_t *context, json_t **out, durable_error *err)
{
    struct expr_job job = { .e = e, .as_text = false };
    size_t failed;
    durable_code rc;

    *out = NULL;
    rc = expr_eval_jobs(&job, 1, context, &failed, err);
    if (rc == DURABLE_OK)
        *out = job.value;
    return rc;
}
