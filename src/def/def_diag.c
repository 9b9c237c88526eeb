/*
 * def_diag.c - the diagnostics of a parse: the report, the JSON path that
 * locates each entry, quoting of user values, and the typed field checks
 * every part of the parser uses.
 *
 * Invariants: a report lists at most DEF_MAX_DIAGS entries per parse (plus
 * one warning saying the rest were left out) so hostile input cannot make it
 * huge, but n_errors counts every error. For YAML, the path stack also
 * tracks the node at each level (p->nodes), so that a diagnostic at a path
 * can add where that node was written. Quoted values are JSON-escaped and
 * cut short, so a message is always one line of valid UTF-8.
 */
#include "util/common.h"

#include "def/def_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the report ---- */

void def_report_init(struct def_report *r)
{
    r->items = NULL;
    r->n = 0;
    r->n_errors = 0;
}

void def_report_release(struct def_report *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; i < r->n; i++) {
        free(r->items[i].where);
        free(r->items[i].message);
    }
    free(r->items);
    def_report_init(r);
}

void def_report_format(const struct def_report *r, struct dbuf *out)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        const struct def_diag *d = &r->items[i];
        dbuf_addf(out, "%s%s%s%s\n", d->is_warning ? "warning: " : "", d->where,
                  d->where[0] ? ": " : "", d->message);
    }
}

static void report_add(struct def_report *r, bool is_warning, const char *where, char *message)
{
    struct def_diag *d;

    /* Grow at powers of two: n is a power of two exactly when full. */
    if ((r->n & (r->n - 1)) == 0)
        r->items = xrealloc(r->items, (r->n ? r->n * 2 : 4) * sizeof(*r->items));
    d = &r->items[r->n++];
    d->is_warning = is_warning;
    d->where = xstrdup(where);
    d->message = message;
}

/* For YAML, the current path followed by " (line L, column C)"; NULL when
 * there is nothing to add. Only computed for diagnostics that are shown:
 * finding a location may scan a large mapping. */
static char *located_path(struct parser *p, bool is_warning)
{
    bool is_shown = p->n_listed < DEF_MAX_DIAGS || (!is_warning && p->n_errors == 0);
    struct def_mark m;

    if (!p->ylocs || p->path.len == 0 || !is_shown)
        return NULL;
    if (!def_yaml_locate(p, &m))
        return NULL;
    return xasprintf("%s (line %d, column %d)", p->path.buf, m.line, m.column);
}

static void diag_v(struct parser *p, bool is_warning, const char *where, const char *fmt,
                   va_list ap)
{
    char *msg = NULL;

    if (vasprintf(&msg, fmt, ap) < 0)
        msg = xstrdup("(out of memory)");
    if (!is_warning) {
        p->n_errors++;
        p->rep->n_errors++;
        if (p->n_errors == 1)
            snprintf(p->first_error, sizeof(p->first_error), "%s%s%s", where, where[0] ? ": " : "",
                     msg);
    }
    if (p->n_listed < DEF_MAX_DIAGS) {
        report_add(p->rep, is_warning, where, msg);
        msg = NULL;
    } else if (p->n_listed == DEF_MAX_DIAGS) {
        report_add(p->rep, true, "",
                   xasprintf("too many problems; only the first %d are listed", DEF_MAX_DIAGS));
    }
    p->n_listed++;
    free(msg);
}

void def_error(struct parser *p, const char *fmt, ...)
{
    char *located = located_path(p, false);
    va_list ap;

    va_start(ap, fmt);
    diag_v(p, false, located ? located : p->path.buf, fmt, ap);
    va_end(ap);
    free(located);
}

void def_warn(struct parser *p, const char *fmt, ...)
{
    char *located = located_path(p, true);
    va_list ap;

    va_start(ap, fmt);
    diag_v(p, true, located ? located : p->path.buf, fmt, ap);
    va_end(ap);
    free(located);
}

void def_error_at(struct parser *p, const char *where, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    diag_v(p, false, where, fmt, ap);
    va_end(ap);
}

/* ---- paths and quoting ---- */

static bool is_plain_key(const char *key)
{
    size_t i;

    if (!((key[0] >= 'a' && key[0] <= 'z') || (key[0] >= 'A' && key[0] <= 'Z') || key[0] == '_'))
        return false;
    for (i = 1; key[i]; i++) {
        char c = key[i];
        if (i >= 64)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* YAML only: records the node a new path level names. */
static void node_push(struct parser *p, size_t mark, const char *key, size_t index)
{
    struct def_path_node *n;
    json_t *parent;

    DUR_ASSERT(p->n_nodes > 0 && p->n_nodes < DEF_PATH_NODES);
    parent = p->nodes[p->n_nodes - 1].node;
    n = &p->nodes[p->n_nodes++];
    n->mark = mark;
    n->parent = parent;
    n->key = key;
    n->index = index;
    n->node = key ? json_object_get(parent, key) : json_array_get(parent, index);
}

size_t def_path_key(struct parser *p, const char *key)
{
    size_t mark = p->path.len;
    const char *shown = key;
    struct def_quoted q;

    if (p->ylocs) {
        const char *written = def_yaml_written_key(p, p->nodes[p->n_nodes - 1].node, key);
        if (written)
            shown = written;
        node_push(p, mark, key, 0);
    }
    if (is_plain_key(shown))
        dbuf_addf(&p->path, "%s%s", mark ? "." : "", shown);
    else
        dbuf_addf(&p->path, "[%s]", def_quote(&q, shown));
    return mark;
}

size_t def_path_index(struct parser *p, size_t i)
{
    size_t mark = p->path.len;

    if (p->ylocs)
        node_push(p, mark, NULL, i);
    dbuf_addf(&p->path, "[%zu]", i);
    return mark;
}

void def_path_pop(struct parser *p, size_t mark)
{
    p->path.len = mark;
    p->path.buf[mark] = '\0';
    while (p->n_nodes > 1 && p->nodes[p->n_nodes - 1].mark >= mark)
        p->n_nodes--;
}

void def_path_reset(struct parser *p, json_t *root)
{
    def_path_pop(p, 0);
    p->n_nodes = 0;
    if (p->ylocs) {
        p->nodes[0] = (struct def_path_node){ .node = root };
        p->n_nodes = 1;
    }
}

/* Length of the UTF-8 sequence that starts with byte c (1 for stray bytes). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xf0 && c < 0xf8)
        return 4;
    if (c >= 0xe0)
        return c < 0xf0 ? 3 : 1;
    if (c >= 0xc0)
        return 2;
    return 1;
}

/* Writes the escaped form of the character at s into piece; returns its
 * length in s. Bytes that do not form valid UTF-8 become '?'. */
static size_t escape_char(const char *s, char piece[8])
{
    unsigned char c = (unsigned char)*s;
    size_t n = utf8_len(c), i;

    if (c == '"' || c == '\\')
        snprintf(piece, 8, "\\%c", c);
    else if (c == '\n')
        snprintf(piece, 8, "\\n");
    else if (c == '\t')
        snprintf(piece, 8, "\\t");
    else if (c < 0x20 || c == 0x7f)
        snprintf(piece, 8, "\\u%04x", c);
    else if (c < 0x80)
        snprintf(piece, 8, "%c", c);
    else {
        for (i = 1; i < n; i++) {
            if (((unsigned char)s[i] & 0xc0) != 0x80)
                break;
        }
        if (n == 1 || i < n) {
            snprintf(piece, 8, "?");
            return 1;
        }
        memcpy(piece, s, n);
        piece[n] = '\0';
    }
    return n;
}

const char *def_quote(struct def_quoted *q, const char *s)
{
    const size_t limit = 80; /* of output; room stays for "...\"" */
    size_t len = 1;
    char piece[8];

    q->s[0] = '"';
    while (*s) {
        size_t used = escape_char(s, piece);
        size_t plen = strlen(piece);
        if (len + plen > limit) {
            memcpy(q->s + len, "...", 3);
            len += 3;
            break;
        }
        memcpy(q->s + len, piece, plen);
        len += plen;
        s += used;
    }
    q->s[len++] = '"';
    q->s[len] = '\0';
    return q->s;
}

const char *def_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* ---- walking and checks ---- */

void def_walk(struct parser *p, json_t *obj, const struct def_field *fields, size_t n_fields,
              void *ctx)
{
    const char *key;
    json_t *v;
    struct def_quoted q;
    size_t i;

    json_object_foreach(obj, key, v)
    {
        size_t mark = def_path_key(p, key);
        for (i = 0; i < n_fields; i++) {
            if (strcmp(fields[i].key, key) == 0)
                break;
        }
        if (i < n_fields)
            fields[i].fn(p, ctx, v);
        else
            def_warn(p, "unknown field %s", def_quote(&q, key));
        def_path_pop(p, mark);
    }
}

bool def_get_string(struct parser *p, const json_t *v, const char **out)
{
    if (!json_is_string(v)) {
        def_error(p, "expected a string, got %s", def_type_name(v));
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* The number as written: integers without a fraction, reals shortest-ish. */
static void number_text(const json_t *v, char out[40])
{
    if (json_is_integer(v))
        snprintf(out, 40, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(out, 40, "%.15g", json_number_value(v));
}

bool def_get_number(struct parser *p, const json_t *v, double lo, double hi, bool lo_open,
                    double *out)
{
    char got[40];
    double d;

    if (!json_is_number(v)) {
        def_error(p, "expected a number, got %s", def_type_name(v));
        return false;
    }
    d = json_number_value(v);
    if (d < lo || (lo_open && d == lo) || d > hi) {
        number_text(v, got);
        if (lo_open)
            def_error(p, "must be greater than %.15g and at most %.15g, got %s", lo, hi, got);
        else
            def_error(p, "must be between %.15g and %.15g, got %s", lo, hi, got);
        return false;
    }
    *out = d;
    return true;
}

bool def_get_int(struct parser *p, const json_t *v, int lo, int hi, int *out)
{
    char got[40];
    double d;

    if (!json_is_number(v)) {
        def_error(p, "expected an integer, got %s", def_type_name(v));
        return false;
    }
    d = json_number_value(v);
    if (d != floor(d) || d < lo || d > hi) {
        number_text(v, got);
        def_error(p, "must be an integer between %d and %d, got %s", lo, hi, got);
        return false;
    }
    *out = (int)d;
    return true;
}

bool def_get_label(struct parser *p, const json_t *v, size_t max_chars, char **out)
{
    const char *s;
    size_t n_chars = 0, i;

    if (!def_get_string(p, v, &s))
        return false;
    for (i = 0; s[i]; i++)
        n_chars += ((unsigned char)s[i] & 0xc0) != 0x80;
    if (n_chars == 0) {
        def_error(p, "must not be empty");
        return false;
    }
    if (n_chars > max_chars) {
        def_error(p, "must be at most %zu characters, got %zu", max_chars, n_chars);
        return false;
    }
    free(*out);
    *out = xstrdup(s);
    return true;
}
