/*
 * template.c - `{{ EXPR }}` templates in strings, and configs full of them.
 *
 * A template is a list of parts, literal text or a compiled expression. The
 * closing `}}` of a part is found by a small scanner that reads the program
 * the way jq's lexer does as far as it matters here: jq strings (with
 * escapes and `\( )` interpolations, nested), `#` comments, and a stack of
 * open brackets where only a matching closer pops (jq's try_exit), so
 * `{{ {"a": {"b": 1}} }}` and `{{ "}}" }}` work and the end of a program is
 * known to be in a string exactly when jq's lexer would be in one.
 *
 * A config is compiled into a deep copy of itself plus one entry per
 * templated string: its path from the root (keys and indices, to find the
 * string again in a copy), its printable path for messages, its template.
 * Rendering evaluates every expression of the config in one batch
 * (expr_eval_jobs) and writes the results into a fresh copy.
 *
 * Nothing here calls libjq: it goes through expr.c, which holds the lock.
 */
#include "util/common.h"

#include "expr/expr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr_int.h"

#define SCAN_MAX_NESTING 32 /* strings and interpolations inside one {{ }} */

struct template_part {
    char *text;      /* literal text (owned), NULL for an expression */
    size_t text_len; /* bytes of text */
    struct expr *e;  /* owned reference, NULL for literal text */
    size_t offset;   /* byte offset of the part's "{{" (or of the text) */
};

struct template
{
    struct template_part *parts;
    size_t n_parts;
    size_t n_exprs;
    bool is_single; /* exactly one part, an expression, no text around it */
};

struct config_entry {
    json_t *path; /* owned: array of keys (strings) and indices (integers) */
    char *where;  /* owned: "config.headers.Authorization", for messages */
    struct template *t;
};

struct config_templates {
    json_t *config; /* owned deep copy of the config as compiled */
    struct config_entry *entries;
    size_t n_entries;
    size_t n_exprs; /* over all entries */
};

/* ---- the scanner ---- */

/* What is open, as jq's lexer keeps it: a stack of states. */
enum scan_kind {
    SC_STRING, /* a jq string */
    SC_INTERP, /* the code of a \( ) interpolation in a string */
    SC_PAREN,  /* code after `(` */
    SC_BRACKET,
    SC_BRACE,
};

struct scan {
    unsigned char *k; /* enum scan_kind; as many as the program has bytes */
    size_t *at;       /* where each state's content starts, when body is set */
    size_t depth;     /* states open; 0: the template's own code */
    int n_strings;    /* of them strings and interpolations */
    /* Told of each interpolation's body as it ends (its first byte, its
     * closing ")"), innermost first; false stops the scan. */
    bool (*body)(void *ud, size_t from, size_t to);
    void *body_ud;
    bool stopped;
};

enum scan_result { SCAN_FOUND, SCAN_UNTERMINATED, SCAN_TOO_DEEP };

/* A scan of a program of len bytes (each byte opens one state at most). */
static void scan_init(struct scan *sc, size_t len)
{
    memset(sc, 0, sizeof(*sc));
    sc->k = xmalloc(len + 1);
}

static bool scan_push(struct scan *sc, enum scan_kind k)
{
    if (k == SC_STRING || k == SC_INTERP) {
        if (sc->n_strings == SCAN_MAX_NESTING)
            return false;
        sc->n_strings++;
    }
    sc->k[sc->depth++] = (unsigned char)k;
    return true;
}

static void scan_pop(struct scan *sc)
{
    enum scan_kind k = (enum scan_kind)sc->k[--sc->depth];

    if (k == SC_STRING || k == SC_INTERP)
        sc->n_strings--;
}

static bool scan_top_is(const struct scan *sc, enum scan_kind k)
{
    return sc->depth > 0 && sc->k[sc->depth - 1] == k;
}

/* A closer pops its opener only when it matches the state on top, as jq's
 * try_exit does: `)` closes a `(` or an interpolation, and a closer that
 * does not match is jq's syntax error and pops nothing (jq goes on lexing
 * in the same state: a `"` after it opens a string). */
static void scan_close_bracket(struct scan *sc, enum scan_kind k, size_t pos)
{
    if (k == SC_PAREN && scan_top_is(sc, SC_INTERP) && sc->body &&
        !sc->body(sc->body_ud, sc->at[sc->depth - 1], pos))
        sc->stopped = true;
    if (scan_top_is(sc, k) || (k == SC_PAREN && scan_top_is(sc, SC_INTERP)))
        scan_pop(sc);
}

/* One character of code at s[*i]. Returns true when it closes the template. */
static bool scan_code(struct scan *sc, const char *s, size_t len, size_t *i, bool *too_deep)
{
    switch (s[*i]) {
    case '"':
        *too_deep = !scan_push(sc, SC_STRING);
        break;
    case '#':
        while (*i + 1 < len && s[*i + 1] != '\n')
            (*i)++;
        break;
    case '(':
        *too_deep = !scan_push(sc, SC_PAREN);
        break;
    case '[':
        *too_deep = !scan_push(sc, SC_BRACKET);
        break;
    case '{':
        *too_deep = !scan_push(sc, SC_BRACE);
        break;
    case ')':
        scan_close_bracket(sc, SC_PAREN, *i);
        break;
    case ']':
        scan_close_bracket(sc, SC_BRACKET, *i);
        break;
    case '}':
        if (sc->depth == 0 && *i + 1 < len && s[*i + 1] == '}')
            return true;
        scan_close_bracket(sc, SC_BRACE, *i);
        break;
    default:
        break;
    }
    return false;
}

/* One character of the program at s[*i], in code or in a string. Returns
 * true when it is the "}}" closing a template. */
static bool scan_char(struct scan *sc, const char *s, size_t len, size_t *i, bool *too_deep)
{
    if (!scan_top_is(sc, SC_STRING))
        return scan_code(sc, s, len, i, too_deep);
    if (s[*i] == '"') {
        scan_pop(sc);
    } else if (s[*i] == '\\' && *i + 1 < len) {
        (*i)++;
        if (s[*i] == '(') {
            *too_deep = !scan_push(sc, SC_INTERP);
            if (!*too_deep && sc->at)
                sc->at[sc->depth - 1] = *i + 1;
        }
    }
    return false;
}

/* Finds the "}}" closing the template whose body starts at s[from]. */
static enum scan_result scan_close(const char *s, size_t len, size_t from, size_t *close)
{
    struct scan sc;
    enum scan_result res = SCAN_UNTERMINATED;
    bool too_deep = false;

    scan_init(&sc, len);
    for (size_t i = from; i < len; i++) {
        if (scan_char(&sc, s, len, &i, &too_deep)) {
            *close = i;
            res = SCAN_FOUND;
            break;
        }
        if (too_deep) {
            res = SCAN_TOO_DEEP;
            break;
        }
    }
    free(sc.k);
    return res;
}

enum expr_src_end expr_src_end(const char *src, bool (*body)(void *ud, size_t from, size_t to),
                               void *ud)
{
    struct scan sc;
    size_t len = strlen(src);
    bool too_deep = false;
    enum expr_src_end end;

    scan_init(&sc, len);
    if (body) {
        sc.at = xmalloc((len + 1) * sizeof(*sc.at));
        sc.body = body;
        sc.body_ud = ud;
    }
    for (size_t i = 0; i < len && !too_deep && !sc.stopped; i++)
        (void)scan_char(&sc, src, len, &i, &too_deep); /* a "}}" is only braces here */
    end = too_deep       ? EXPR_SRC_TOO_DEEP
          : sc.stopped   ? EXPR_SRC_STOPPED
          : sc.n_strings ? EXPR_SRC_IN_STRING
                         : EXPR_SRC_OK;
    free(sc.at);
    free(sc.k);
    return end;
}

/* ---- templates ---- */

static struct template_part *add_part(struct template *t)
{
    t->parts = xrealloc(t->parts, (t->n_parts + 1) * sizeof(*t->parts));
    memset(&t->parts[t->n_parts], 0, sizeof(*t->parts));
    return &t->parts[t->n_parts++];
}

static void add_text(struct template *t, const char *s, size_t len, size_t offset)
{
    struct template_part *p;

    if (len == 0)
        return;
    p = add_part(t);
    p->text = xstrndup(s, len);
    p->text_len = len;
    p->offset = offset;
}

/* Compiles the expression between open ("{{") and close ("}}"). */
static durable_code add_expr(struct template *t, const char *s, size_t len, size_t open,
                             size_t close, durable_error *err)
{
    size_t b = open + 2, e = close;
    bool whole = open == 0 && close + 2 == len;
    durable_code rc;
    char *src;

    if (t->n_exprs == EXPR_MAX_TEMPLATES)
        return err_set(err, DURABLE_ETOOBIG, "more than %d expressions in one template",
                       EXPR_MAX_TEMPLATES);
    while (b < e && isspace((unsigned char)s[b]))
        b++;
    while (e > b && isspace((unsigned char)s[e - 1]))
        e--;
    if (b == e)
        return err_set(err, DURABLE_EINVAL, "empty expression in \"{{ }}\" at offset %zu", open);
    src = xstrndup(s + b, e - b);
    struct template_part *p = add_part(t);
    p->offset = open;
    rc = expr_compile(src, &p->e, err);
    free(src);
    if (rc != DURABLE_OK) {
        t->n_parts--; /* drop the empty part */
        if (!whole)
            err_prefix(err, "expression at offset %zu: ", open);
        return rc;
    }
    t->n_exprs++;
    return DURABLE_OK;
}

static durable_code template_parse(struct template *t, const char *s, durable_error *err)
{
    size_t len = strlen(s), pos = 0, close = 0;
    durable_code rc = DURABLE_OK;
    const char *open;

    while (rc == DURABLE_OK && pos < len) {
        open = strstr(s + pos, "{{");
        if (!open) {
            add_text(t, s + pos, len - pos, pos);
            break;
        }
        add_text(t, s + pos, (size_t)(open - s) - pos, pos);
        switch (scan_close(s, len, (size_t)(open - s) + 2, &close)) {
        case SCAN_FOUND:
            rc = add_expr(t, s, len, (size_t)(open - s), close, err);
            pos = close + 2;
            break;
        case SCAN_TOO_DEEP:
            rc = err_set(err, DURABLE_EINVAL, "\"{{\" at offset %zu nested too deeply",
                         (size_t)(open - s));
            break;
        default:
            rc = err_set(err, DURABLE_EINVAL, "unterminated \"{{\" at offset %zu",
                         (size_t)(open - s));
            break;
        }
    }
    t->is_single = rc == DURABLE_OK && t->n_parts == 1 && t->parts[0].e != NULL;
    return rc;
}

durable_code expr_template_compile(const char *s, struct template **out, durable_error *err)
{
    struct template *t = xcalloc(1, sizeof(*t));
    durable_code rc;

    *out = NULL;
    rc = template_parse(t, s, err);
    if (rc != DURABLE_OK)
        expr_template_free(t);
    else
        *out = t;
    return rc;
}

bool expr_template_is_single(const struct template *t)
{
    return t->is_single;
}

bool expr_template_has_exprs(const struct template *t)
{
    return t->n_exprs > 0;
}

void expr_template_free(struct template *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_parts; i++) {
        free(t->parts[i].text);
        expr_free(t->parts[i].e);
    }
    free(t->parts);
    free(t);
}

/* Points jobs[0..t->n_exprs) at t's expressions. */
static void template_jobs(const struct template *t, struct expr_job *jobs)
{
    size_t k = 0;

    for (size_t i = 0; i < t->n_parts; i++) {
        if (t->parts[i].e) {
            jobs[k].e = t->parts[i].e;
            jobs[k].as_text = !t->is_single;
            k++;
        }
    }
}

/* Builds t's value from its evaluated jobs (taking their outputs). */
static durable_code template_assemble(const struct template *t, struct expr_job *jobs, json_t **out,
                                      durable_error *err)
{
    struct dbuf b;
    durable_code rc = DURABLE_OK;
    size_t k = 0;

    if (t->is_single) {
        *out = jobs[0].value;
        jobs[0].value = NULL;
        return DURABLE_OK;
    }
    dbuf_init(&b, EXPR_MAX_OUTPUT);
    for (size_t i = 0; i < t->n_parts && rc == DURABLE_OK; i++) {
        if (t->parts[i].e) {
            rc = dbuf_add(&b, jobs[k].text, jobs[k].text_len);
            k++;
        } else {
            rc = dbuf_add(&b, t->parts[i].text, t->parts[i].text_len);
        }
    }
    if (rc != DURABLE_OK)
        rc = err_set(err, DURABLE_ETOOBIG, "rendered template larger than %zu bytes",
                     EXPR_MAX_OUTPUT);
    else
        *out = json_stringn(b.buf, b.len);
    if (rc == DURABLE_OK && !*out)
        rc = err_set(err, DURABLE_ESTEP, "rendered template is not valid UTF-8");
    dbuf_release(&b);
    return rc;
}

/* The message prefix for a failure of t's expression number k. */
static void template_blame(const struct template *t, size_t k, durable_error *err)
{
    if (t->is_single)
        return;
    for (size_t i = 0; i < t->n_parts; i++) {
        if (t->parts[i].e && k-- == 0) {
            err_prefix(err, "expression at offset %zu: ", t->parts[i].offset);
            return;
        }
    }
}

durable_code expr_template_render(const struct template *t, json_t *ctx, json_t **out,
                                  durable_error *err)
{
    struct expr_job *jobs = NULL;
    durable_code rc = DURABLE_OK;
    size_t failed = 0;

    *out = NULL;
    if (t->n_exprs == 0)
        return template_assemble(t, NULL, out, err); /* literal text only */
    jobs = xcalloc(t->n_exprs, sizeof(*jobs));
    template_jobs(t, jobs);
    rc = expr_eval_jobs(jobs, t->n_exprs, ctx, &failed, err);
    if (rc != DURABLE_OK && failed != EXPR_JOB_CONTEXT)
        template_blame(t, failed, err);
    if (rc == DURABLE_OK)
        rc = template_assemble(t, jobs, out, err);
    expr_jobs_release(jobs, t->n_exprs);
    free(jobs);
    return rc;
}

/* ---- configs ---- */

static bool is_identifier(const char *key)
{
    if (!isalpha((unsigned char)*key) && *key != '_')
        return false;
    for (; *key; key++) {
        if (!isalnum((unsigned char)*key) && *key != '_')
            return false;
    }
    return true;
}

/* Appends ".key" or ["key"] (JSON-quoted when not an identifier). */
static void where_add_key(struct dbuf *where, const char *key)
{
    if (is_identifier(key)) {
        dbuf_addf(where, ".%s", key);
    } else {
        json_t *k = json_string(key);
        char *q = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
        dbuf_addf(where, "[%s]", q ? q : "?");
        free(q);
        json_decref(k);
    }
}

struct walk {
    struct config_templates *c;
    json_t *path;      /* keys and indices from the root to the current value */
    struct dbuf where; /* printable path of the current value */
};

static durable_code walk_value(struct walk *w, json_t *v, int depth, durable_error *err);

static durable_code walk_string(struct walk *w, json_t *v, durable_error *err)
{
    struct config_templates *c = w->c;
    struct template *t = NULL;
    struct config_entry *ent;
    durable_code rc;

    if (!strstr(json_string_value(v), "{{"))
        return DURABLE_OK;
    rc = expr_template_compile(json_string_value(v), &t, err);
    if (rc == DURABLE_OK && c->n_exprs + t->n_exprs > EXPR_MAX_TEMPLATES)
        rc = err_set(err, DURABLE_ETOOBIG, "more than %d expressions in one config",
                     EXPR_MAX_TEMPLATES);
    if (rc != DURABLE_OK) {
        expr_template_free(t);
        err_prefix(err, "%s: ", w->where.buf);
        return rc;
    }
    c->entries = xrealloc(c->entries, (c->n_entries + 1) * sizeof(*c->entries));
    ent = &c->entries[c->n_entries++];
    ent->path = json_deep_copy(w->path);
    ent->where = xstrdup(w->where.buf);
    ent->t = t;
    c->n_exprs += t->n_exprs;
    return DURABLE_OK;
}

static durable_code walk_child(struct walk *w, json_t *step, json_t *child, int depth,
                               durable_error *err)
{
    size_t saved = w->where.len;
    durable_code rc;

    if (!step) /* a key jansson cannot hold as a string value */
        return err_set(err, DURABLE_EINVAL, "%s: a key is not valid UTF-8", w->where.buf);
    if (json_is_string(step))
        where_add_key(&w->where, json_string_value(step));
    else
        dbuf_addf(&w->where, "[%lld]", (long long)json_integer_value(step));
    json_array_append_new(w->path, step);
    rc = walk_value(w, child, depth + 1, err);
    json_array_remove(w->path, json_array_size(w->path) - 1);
    w->where.len = saved;
    w->where.buf[saved] = '\0';
    return rc;
}

static durable_code walk_value(struct walk *w, json_t *v, int depth, durable_error *err)
{
    durable_code rc = DURABLE_OK;
    const char *key;
    json_t *child;
    size_t i;

    if (depth >= EXPR_MAX_DEPTH)
        return err_set(err, DURABLE_ETOOBIG, "%s: nested deeper than %d levels", w->where.buf,
                       EXPR_MAX_DEPTH);
    if (json_is_string(v))
        return walk_string(w, v, err);
    if (json_is_object(v)) {
        json_object_foreach(v, key, child)
        {
            rc = walk_child(w, json_string(key), child, depth, err);
            if (rc != DURABLE_OK)
                break;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child)
        {
            rc = walk_child(w, json_integer((json_int_t)i), child, depth, err);
            if (rc != DURABLE_OK)
                break;
        }
    }
    return rc;
}

durable_code expr_config_compile(json_t *config, struct config_templates **out, durable_error *err)
{
    struct walk w = { .c = xcalloc(1, sizeof(*w.c)), .path = json_array() };
    durable_code rc;

    *out = NULL;
    dbuf_init(&w.where, 0);
    dbuf_adds(&w.where, "config");
    rc = walk_value(&w, config, 0, err);
    if (rc == DURABLE_OK) {
        w.c->config = json_deep_copy(config);
        *out = w.c;
    } else {
        expr_config_free(w.c);
    }
    dbuf_release(&w.where);
    json_decref(w.path);
    return rc;
}

size_t expr_config_n_templates(const struct config_templates *c)
{
    return c->n_entries;
}

void expr_config_free(struct config_templates *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_entries; i++) {
        json_decref(c->entries[i].path);
        free(c->entries[i].where);
        expr_template_free(c->entries[i].t);
    }
    free(c->entries);
    json_decref(c->config);
    free(c);
}

/* Puts value (a fresh reference, always consumed) at path inside *root. */
static void put_at(json_t **root, json_t *path, json_t *value)
{
    size_t n = json_array_size(path);
    json_t *node = *root;

    if (n == 0) {
        json_decref(*root);
        *root = value;
        return;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        json_t *step = json_array_get(path, i);
        node = json_is_string(step) ? json_object_get(node, json_string_value(step))
                                    : json_array_get(node, (size_t)json_integer_value(step));
        DUR_ASSERT(node != NULL);
    }
    json_t *last = json_array_get(path, n - 1);
    int r;
    if (json_is_string(last))
        r = json_object_set_new(node, json_string_value(last), value);
    else
        r = json_array_set_new(node, (size_t)json_integer_value(last), value);
    DUR_ASSERT(r == 0); /* the copy has the shape the path was taken from */
}

/* Prefixes err with the path (and offset) of the config's job number k. */
static void config_blame(const struct config_templates *c, size_t k, durable_error *err)
{
    for (size_t i = 0; i < c->n_entries; i++) {
        if (k < c->entries[i].t->n_exprs) {
            template_blame(c->entries[i].t, k, err);
            err_prefix(err, "%s: ", c->entries[i].where);
            return;
        }
        k -= c->entries[i].t->n_exprs;
    }
}

/* A config's expression that yields null is almost always a typo in a path
 * (`.input.ulr`): refused, naming the field and the expression, rather than
 * rendering "null" or a null field. `// default` is how to mean "optional". */
static durable_code config_refuse_null(const struct config_templates *c,
                                       const struct expr_job *jobs, durable_error *err)
{
    size_t k = 0;

    for (size_t i = 0; i < c->n_entries; i++) {
        for (size_t j = 0; j < c->entries[i].t->n_exprs; j++, k++) {
            if (jobs[k].is_null)
                return err_set(err, DURABLE_ESTEP, "%s: template \"{{ %s }}\" rendered null",
                               c->entries[i].where, expr_source(jobs[k].e));
        }
    }
    return DURABLE_OK;
}

durable_code expr_config_render(const struct config_templates *c, json_t *ctx, json_t **out,
                                durable_error *err)
{
    struct expr_job *jobs = xcalloc(c->n_exprs ? c->n_exprs : 1, sizeof(*jobs));
    json_t *copy = json_deep_copy(c->config), *value = NULL;
    durable_code rc = DURABLE_OK;
    size_t i, k = 0, failed = 0;

    *out = NULL;
    for (i = 0; i < c->n_entries; i++) {
        template_jobs(c->entries[i].t, jobs + k);
        k += c->entries[i].t->n_exprs;
    }
    rc = expr_eval_jobs(jobs, c->n_exprs, ctx, &failed, err);
    if (rc != DURABLE_OK && failed != EXPR_JOB_CONTEXT)
        config_blame(c, failed, err);
    if (rc == DURABLE_OK)
        rc = config_refuse_null(c, jobs, err);
    for (i = 0, k = 0; i < c->n_entries && rc == DURABLE_OK; i++) {
        rc = template_assemble(c->entries[i].t, jobs + k, &value, err);
        if (rc == DURABLE_OK)
            put_at(&copy, c->entries[i].path, value);
        else
            err_prefix(err, "%s: ", c->entries[i].where);
        k += c->entries[i].t->n_exprs;
    }
    expr_jobs_release(jobs, c->n_exprs);
    free(jobs);
    if (rc == DURABLE_OK)
        *out = copy;
    else
        json_decref(copy);
    return rc;
}
