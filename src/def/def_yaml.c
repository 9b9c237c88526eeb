/*
 * def_yaml.c - pass 1 for YAML definitions: libyaml's events to one jansson
 * document, and where each of its values was written (struct def_ylocs).
 *
 * The builder keeps an explicit stack of the open sequences and mappings,
 * at most DEF_YAML_MAX_DEPTH deep, so nesting costs heap, never C stack.
 * Scalars are typed here (def.h says how). An alias is expanded by copying
 * its anchored node; each copy counts its nodes and bytes against
 * DEF_YAML_MAX_NODES and DEF_MAX_TEXT, which is what stops "billion laughs"
 * before it allocates. The first problem stops the build, like a syntax
 * error in jansson.
 *
 * Locations are keyed by container and member, never by value: jansson's
 * true, false and null are shared singletons, so a value's address cannot
 * say where it was written. Every sequence and mapping built from the text
 * has a record for itself and one per member; members of a copy made for an
 * alias have none and are located at the alias. Records are sorted by
 * (container address, member ordinal) once the document is built. Removed
 * containers are kept alive ("buried") until the parse ends, so no address
 * is reused within a parse. One thread, one parse: nothing here is shared.
 */
#include "util/common.h"

#include "def/def.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "def/def_int.h"

#define TAG_PREFIX  "tag:yaml.org,2002:"
#define SELF        SIZE_MAX /* the ordinal of a container's own record */
#define LITERAL_MAX 40       /* bytes of a scalar quoted in a message */

/* Where one value was written: a member of a container (mapping members
 * by key, sequence members by index), or the container itself (SELF). */
struct yloc {
    const json_t *parent;
    size_t ordinal;         /* members in the order written; SELF */
    char *key;              /* mapping members: owned; else NULL */
    struct def_mark at;     /* of the value */
    struct def_mark key_at; /* of the key (mapping members) */
};

struct def_ylocs {
    struct yloc *items;
    size_t n;
    size_t cap;
    json_t *written; /* "%p" of a mapping -> { current key -> key as written } */
    json_t *buried;  /* removed nodes, kept alive (array) */
};

/* An anchored node, ready to be copied by its aliases. */
struct anchor {
    json_t *node; /* a reference */
    size_t n_nodes;
    size_t n_bytes;
    int height; /* levels below it: 0 for a scalar */
};

/* A finished node on its way into its container. */
struct done {
    json_t *v; /* owned */
    size_t n_nodes;
    size_t n_bytes;
    int height;
    struct def_mark at;
    const char *anchor; /* borrowed, or NULL */
};

/* An open sequence or mapping. */
struct frame {
    json_t *node; /* owned until it is attached to its parent */
    bool is_map;
    char *anchor; /* owned, or NULL */
    struct def_mark at;
    size_t n_nodes; /* in its subtree so far, itself included */
    size_t n_bytes; /* scalar and key bytes in its subtree so far */
    int height;
    size_t n_members;
    char *key; /* mappings: the key waiting for its value (owned), or NULL */
    bool key_is_merge;
    struct def_mark key_at;
    json_t *merges; /* the value of "<<" (owned), or NULL */
    struct def_mark merge_at, merge_key_at;
};

struct ybuild {
    struct parser *p;
    struct def_ylocs *locs;
    const char *text;
    size_t len;
    struct frame *stack;
    size_t depth;
    json_t *root;       /* owned */
    json_t *anchor_ids; /* name -> index into anchors */
    struct anchor *anchors;
    size_t n_anchors;
    size_t n_nodes; /* in the whole document, copies included */
    size_t n_bytes;
    int n_docs;
    durable_code code; /* DURABLE_OK until the first problem */
};

/* ---- locations ---- */

static struct def_ylocs *ylocs_new(void)
{
    struct def_ylocs *l = xcalloc(1, sizeof(*l));

    l->written = json_object();
    l->buried = json_array();
    return l;
}

void def_ylocs_free(struct def_ylocs *l)
{
    size_t i;

    if (!l)
        return;
    for (i = 0; i < l->n; i++)
        free(l->items[i].key);
    free(l->items);
    json_decref(l->written);
    json_decref(l->buried);
    free(l);
}

/* Adds a record; takes ownership of key. */
static void loc_add(struct def_ylocs *l, const json_t *parent, size_t ordinal, char *key,
                    struct def_mark at, struct def_mark key_at)
{
    struct yloc *r;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
    }
    r = &l->items[l->n++];
    r->parent = parent;
    r->ordinal = ordinal;
    r->key = key;
    r->at = at;
    r->key_at = key_at;
}

static int loc_cmp(const void *a, const void *b)
{
    const struct yloc *x = a, *y = b;
    uintptr_t px = (uintptr_t)x->parent, py = (uintptr_t)y->parent;

    if (px != py)
        return px < py ? -1 : 1;
    if (x->ordinal != y->ordinal)
        return x->ordinal < y->ordinal ? -1 : 1;
    return 0;
}

/* Index of the first record of parent, or l->n. Records must be sorted. */
static size_t loc_first(const struct def_ylocs *l, const json_t *parent)
{
    size_t lo = 0, hi = l->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)l->items[mid].parent < (uintptr_t)parent)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The record of parent's member (by key for mappings, else by index), or
 * of parent itself (key NULL, index SELF). Records must be sorted. */
static struct yloc *loc_find(const struct def_ylocs *l, const json_t *parent, const char *key,
                             size_t index)
{
    size_t i;

    if (!parent)
        return NULL;
    i = loc_first(l, parent);
    if (!key && index != SELF && json_is_array(parent)) {
        /* A sequence's records are its members in order, then itself. */
        if (i + index < l->n && l->items[i + index].parent == parent &&
            l->items[i + index].ordinal == index)
            return &l->items[i + index];
        return NULL;
    }
    for (; i < l->n && l->items[i].parent == parent; i++) {
        const struct yloc *r = &l->items[i];
        if (key ? r->key && strcmp(r->key, key) == 0 : r->ordinal == index)
            return &l->items[i];
    }
    return NULL;
}

bool def_yaml_locate(const struct parser *p, struct def_mark *out)
{
    const struct yloc *r;
    size_t k;

    if (!p->ylocs || p->n_nodes == 0)
        return false;
    /* The deepest level written in the text: a missing member or one inside
     * an alias's copy is located at the nearest enclosing value that is. */
    for (k = p->n_nodes - 1; k >= 1; k--) {
        const struct def_path_node *n = &p->nodes[k];
        r = loc_find(p->ylocs, n->parent, n->key, n->key ? 0 : n->index);
        if (r && r->at.line > 0) {
            *out = r->at;
            return true;
        }
    }
    r = loc_find(p->ylocs, p->nodes[0].node, NULL, SELF);
    if (!r)
        return false;
    *out = r->at;
    return true;
}

const char *def_yaml_written_key(const struct parser *p, const json_t *parent, const char *key)
{
    char id[32];
    json_t *names;

    if (!p->ylocs || !parent || json_object_size(p->ylocs->written) == 0)
        return NULL;
    snprintf(id, sizeof(id), "%p", (const void *)parent);
    names = json_object_get(p->ylocs->written, id);
    return json_string_value(json_object_get(names, key));
}

static void written_set(struct parser *p, const json_t *obj, const char *key, const char *as)
{
    char id[32];
    json_t *names;

    snprintf(id, sizeof(id), "%p", (const void *)obj);
    names = json_object_get(p->ylocs->written, id);
    if (!names) {
        names = json_object();
        json_object_set_new(p->ylocs->written, id, names);
    }
    json_object_set_new(names, key, json_string(as));
}

void def_ylocs_rename(struct parser *p, json_t *obj, const char *key, const char *to)
{
    const char *written = def_yaml_written_key(p, obj, key);
    struct yloc *r = loc_find(p->ylocs, obj, key, 0);
    char *as = xstrdup(written ? written : key);

    if (r) {
        free(r->key);
        r->key = xstrdup(to);
    }
    written_set(p, obj, to, as);
    free(as);
}

void def_ylocs_move(struct parser *p, json_t *obj, const char *from, const char *to)
{
    const struct yloc *rf = loc_find(p->ylocs, obj, from, 0);
    struct yloc *rt = loc_find(p->ylocs, obj, to, 0);

    if (rf && rt) {
        rt->at = rf->at;
        rt->key_at = rf->key_at;
    }
    written_set(p, obj, to, from);
}

void def_ylocs_bury(struct parser *p, json_t *v)
{
    if (v && p->ylocs)
        json_array_append(p->ylocs->buried, v);
}

/* ---- problems ---- */

static struct def_mark mark_of(yaml_mark_t m)
{
    return (struct def_mark){ (int)m.line + 1, (int)m.column + 1 };
}

/* Reports the build's one problem at `at` (line 0: the whole document). */
static void fail(struct ybuild *b, durable_code code, struct def_mark at, const char *fmt, ...)
        DUR_PRINTF(4, 5);
static void fail(struct ybuild *b, durable_code code, struct def_mark at, const char *fmt, ...)
{
    char where[64] = "";
    char msg[512];
    va_list ap;

    if (b->code != DURABLE_OK)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (at.line > 0)
        snprintf(where, sizeof(where), "line %d, column %d", at.line, at.column);
    def_error_at(b->p, where, "%s", msg);
    b->code = code;
}

/* A scalar as written, cut for a message, without quotes. */
static const char *literal(const char *s, size_t n, char out[LITERAL_MAX + 4])
{
    if (n > LITERAL_MAX)
        snprintf(out, LITERAL_MAX + 4, "%.*s...", LITERAL_MAX, s);
    else
        snprintf(out, LITERAL_MAX + 4, "%.*s", (int)n, s);
    return out;
}

/* A tag as users write it: !!int rather than tag:yaml.org,2002:int. */
static const char *tag_text(const char *tag, char out[128])
{
    if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0)
        snprintf(out, 128, "!!%s", tag + strlen(TAG_PREFIX));
    else
        snprintf(out, 128, "%s", tag);
    return out;
}

/* YAML's noun for the type of v. */
static const char *noun(const json_t *v)
{
    if (json_is_object(v))
        return "mapping";
    if (json_is_array(v))
        return "sequence";
    return def_type_name(v);
}

/* Counts nodes and bytes against the limits of the whole document. */
static bool count(struct ybuild *b, size_t n_nodes, size_t n_bytes, struct def_mark at)
{
    b->n_nodes += n_nodes;
    b->n_bytes += n_bytes;
    if (b->n_nodes > (size_t)DEF_YAML_MAX_NODES)
        fail(b, DURABLE_ETOOBIG, at,
             "the document has more than %d nodes once aliases are expanded", DEF_YAML_MAX_NODES);
    else if (b->n_bytes > (size_t)DEF_MAX_TEXT)
        fail(b, DURABLE_ETOOBIG, at,
             "the document has more than %d bytes of text once aliases are expanded", DEF_MAX_TEXT);
    return b->code == DURABLE_OK;
}

/* ---- scalars ---- */

static bool word_in(const char *s, size_t n, const char *const *words)
{
    size_t i;

    for (i = 0; words[i]; i++) {
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0)
            return true;
    }
    return false;
}

static bool is_null_word(const char *s, size_t n)
{
    static const char *const words[] = { "~", "null", "Null", "NULL", NULL };

    return n == 0 || word_in(s, n, words);
}

/* YAML 1.1 booleans, in the three cases YAML 1.1 allows. */
static bool bool_word(const char *s, size_t n, bool *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes",
                                       "YES",  "on",   "On",   "ON",  NULL };
    static const char *const no[] = { "false", "False", "FALSE", "no",  "No",
                                      "NO",    "off",   "Off",   "OFF", NULL };

    if (word_in(s, n, yes))
        *out = true;
    else if (word_in(s, n, no))
        *out = false;
    else
        return false;
    return true;
}

enum num_kind { NUM_NONE, NUM_INT, NUM_FLOAT, NUM_HEX, NUM_OCT, NUM_SPECIAL };

static size_t count_digits(const char *s, size_t n, size_t i, const char *set)
{
    size_t start = i;

    while (i < n && s[i] && strchr(set, s[i]))
        i++;
    return i - start;
}

/* Length of the exponent ([eE][-+]?[0-9]+) at s[i], 0 when there is none. */
static size_t exponent_len(const char *s, size_t n, size_t i)
{
    size_t j = i + 1, digits;

    if (i >= n || (s[i] != 'e' && s[i] != 'E'))
        return 0;
    if (j < n && (s[j] == '-' || s[j] == '+'))
        j++;
    digits = count_digits(s, n, j, "0123456789");
    return digits ? j + digits - i : 0;
}

/* Classifies a plain scalar as YAML 1.2's core schema does (no sign on
 * 0x and 0o; .inf and .nan are NUM_SPECIAL). */
static enum num_kind num_kind(const char *s, size_t n)
{
    static const char *const special[] = { ".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf",
                                           "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
                                           ".NaN",  ".NAN",  NULL };
    size_t i = 0, d1, d2 = 0, e;
    bool has_dot = false;

    if (word_in(s, n, special))
        return NUM_SPECIAL;
    if (n > 2 && s[0] == '0' && s[1] == 'x')
        return count_digits(s, n, 2, "0123456789abcdefABCDEF") == n - 2 ? NUM_HEX : NUM_NONE;
    if (n > 2 && s[0] == '0' && s[1] == 'o')
        return count_digits(s, n, 2, "01234567") == n - 2 ? NUM_OCT : NUM_NONE;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    d1 = count_digits(s, n, i, "0123456789");
    i += d1;
    if (i < n && s[i] == '.') {
        has_dot = true;
        d2 = count_digits(s, n, i + 1, "0123456789");
        i += 1 + d2;
    }
    e = exponent_len(s, n, i);
    if (d1 + d2 == 0 || i + e != n)
        return NUM_NONE;
    return has_dot || e ? NUM_FLOAT : NUM_INT;
}

/* A decimal integer or float, converted by jansson (exact, locale-proof,
 * and overflowing as in JSON) after rewriting it as a JSON number. */
static json_t *decimal_number(struct ybuild *b, const char *s, size_t n, struct def_mark at)
{
    struct dbuf j;
    json_error_t je;
    json_t *v;
    char lit[LITERAL_MAX + 4];
    size_t i = 0, d;
    bool is_real = false;

    dbuf_init(&j, 0);
    if (s[i] == '-' || s[i] == '+') {
        if (s[i] == '-')
            dbuf_adds(&j, "-");
        i++;
    }
    d = count_digits(s, n, i, "0123456789");
    while (d > 1 && s[i] == '0') { /* JSON has no leading zeros */
        i++;
        d--;
    }
    dbuf_add(&j, d ? s + i : "0", d ? d : 1);
    i += d;
    if (i < n && s[i] == '.') {
        is_real = true;
        d = count_digits(s, n, i + 1, "0123456789");
        dbuf_adds(&j, ".");
        dbuf_add(&j, d ? s + i + 1 : "0", d ? d : 1);
        i += 1 + d;
    }
    if (i < n) { /* the exponent, valid JSON as it stands */
        is_real = true;
        dbuf_add(&j, s + i, n - i);
    }
    v = json_loadb(j.buf, j.len, JSON_DECODE_ANY, &je);
    dbuf_release(&j);
    if (!v)
        fail(b, DURABLE_ESYNTAX, at, "%s %s is too big", is_real ? "number" : "integer",
             literal(s, n, lit));
    return v;
}

/* 0x1F or 0o17. */
static json_t *radix_number(struct ybuild *b, const char *s, size_t n, struct def_mark at)
{
    unsigned base = s[1] == 'x' ? 16 : 8;
    uint64_t v = 0;
    char lit[LITERAL_MAX + 4];
    size_t i;

    for (i = 2; i < n; i++) {
        char c = s[i];
        unsigned d = c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
        if (v > ((uint64_t)INT64_MAX - d) / base) {
            fail(b, DURABLE_ESYNTAX, at, "integer %s is too big", literal(s, n, lit));
            return NULL;
        }
        v = v * base + d;
    }
    return json_integer((json_int_t)v);
}

static json_t *string_node(struct ybuild *b, const char *s, size_t n, struct def_mark at)
{
    json_t *v = json_stringn(s, n);

    if (!v) /* libyaml checks UTF-8; this is a second line of defence */
        fail(b, DURABLE_ESYNTAX, at, "a string is not valid UTF-8");
    return v;
}

static json_t *number_node(struct ybuild *b, const char *s, size_t n, enum num_kind k,
                           struct def_mark at)
{
    char lit[LITERAL_MAX + 4];

    if (k == NUM_HEX || k == NUM_OCT)
        return radix_number(b, s, n, at);
    if (k == NUM_SPECIAL) {
        fail(b, DURABLE_ESYNTAX, at, "%s is not a number JSON can hold", literal(s, n, lit));
        return NULL;
    }
    return decimal_number(b, s, n, at);
}

/* A plain scalar without a tag: null, boolean, number or string. */
static json_t *plain_scalar(struct ybuild *b, const char *s, size_t n, struct def_mark at)
{
    enum num_kind k;
    bool flag;

    if (is_null_word(s, n))
        return json_null();
    if (bool_word(s, n, &flag))
        return json_boolean(flag);
    k = num_kind(s, n);
    if (k != NUM_NONE)
        return number_node(b, s, n, k, at);
    return string_node(b, s, n, at);
}

/* A scalar with a standard tag (!!str, !!int, ...), which must fit it. */
static json_t *tagged_scalar(struct ybuild *b, const char *tag, const char *s, size_t n,
                             struct def_mark at)
{
    const char *t =
            strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0 ? tag + strlen(TAG_PREFIX) : "";
    struct def_quoted q;
    enum num_kind k = num_kind(s, n);
    json_t *v = NULL;
    bool flag;
    char shown[128];

    if (strcmp(t, "str") == 0)
        return string_node(b, s, n, at);
    if (strcmp(t, "null") == 0 && is_null_word(s, n))
        return json_null();
    if (strcmp(t, "bool") == 0 && bool_word(s, n, &flag))
        return json_boolean(flag);
    if (strcmp(t, "int") == 0 && (k == NUM_INT || k == NUM_HEX || k == NUM_OCT))
        return number_node(b, s, n, k, at);
    if (strcmp(t, "float") == 0 && (k == NUM_INT || k == NUM_FLOAT || k == NUM_SPECIAL)) {
        v = number_node(b, s, n, k, at);
        if (json_is_integer(v)) {
            json_t *r = json_real((double)json_integer_value(v));
            json_decref(v);
            v = r;
        }
        return v;
    }
    if (strcmp(t, "null") == 0 || strcmp(t, "bool") == 0 || strcmp(t, "int") == 0 ||
        strcmp(t, "float") == 0)
        fail(b, DURABLE_ESYNTAX, at, "%s is not a valid %s", def_quote(&q, s),
             tag_text(tag, shown));
    else
        fail(b, DURABLE_ESYNTAX, at, "unsupported tag %s", def_quote(&q, tag_text(tag, shown)));
    return NULL;
}

/* The value of a scalar event, or NULL after reporting why not. */
static json_t *scalar_value(struct ybuild *b, const yaml_event_t *ev, struct def_mark at)
{
    const char *s = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    size_t n = ev->data.scalar.length;

    if (tag && strcmp(tag, "!") != 0)
        return tagged_scalar(b, tag, s, n, at);
    if (tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return string_node(b, s, n, at);
    return plain_scalar(b, s, n, at);
}

/* ---- building ---- */

static struct frame *top(struct ybuild *b)
{
    return b->depth ? &b->stack[b->depth - 1] : NULL;
}

static bool wants_key(struct ybuild *b)
{
    const struct frame *f = top(b);

    return f && f->is_map && !f->key;
}

/* The anchor called name, or NULL. */
static struct anchor *anchor_get(const struct ybuild *b, const char *name)
{
    json_t *idx = json_object_get(b->anchor_ids, name);
    size_t i = idx ? (size_t)json_integer_value(idx) : SIZE_MAX;

    return b->anchors && i < b->n_anchors ? &b->anchors[i] : NULL;
}

static void anchor_set(struct ybuild *b, const char *name, const struct done *d)
{
    struct anchor *a = anchor_get(b, name);

    if (a) {
        json_decref(a->node);
    } else {
        /* Grow at powers of two: n is a power of two exactly when full. */
        if ((b->n_anchors & (b->n_anchors - 1)) == 0)
            b->anchors = xrealloc(b->anchors,
                                  (b->n_anchors ? b->n_anchors * 2 : 4) * sizeof(*b->anchors));
        json_object_set_new(b->anchor_ids, name, json_integer((json_int_t)b->n_anchors));
        a = &b->anchors[b->n_anchors++];
    }
    a->node = json_incref(d->v);
    a->n_nodes = d->n_nodes;
    a->n_bytes = d->n_bytes;
    a->height = d->height;
}

/* The record of the first occurrence of key in the open mapping f. Only
 * for messages: the records are not sorted yet. */
static const struct yloc *first_key(const struct ybuild *b, const struct frame *f, const char *key)
{
    size_t i;

    for (i = b->locs->n; i > 0; i--) {
        const struct yloc *r = &b->locs->items[i - 1];
        if (r->parent == f->node && r->key && strcmp(r->key, key) == 0)
            return r;
    }
    return NULL;
}

/* The value of "<<": a mapping, or a sequence of mappings. */
static void merge_set(struct ybuild *b, struct frame *f, const struct done *d)
{
    size_t i;

    for (i = 0; json_is_array(d->v) && i < json_array_size(d->v); i++) {
        if (!json_is_object(json_array_get(d->v, i))) {
            fail(b, DURABLE_ESYNTAX, d->at,
                 "merge key \"<<\" needs a mapping or a sequence of mappings, got %s in the "
                 "sequence",
                 noun(json_array_get(d->v, i)));
            break;
        }
    }
    if (!json_is_object(d->v) && !json_is_array(d->v))
        fail(b, DURABLE_ESYNTAX, d->at,
             "merge key \"<<\" needs a mapping or a sequence of mappings, got %s", noun(d->v));
    f->merges = d->v;
    f->merge_at = d->at;
    f->merge_key_at = f->key_at;
    f->key_is_merge = false;
}

/* Puts a finished node into its container, or makes it the root. Takes
 * ownership of d->v. */
static void attach(struct ybuild *b, const struct done *d)
{
    struct frame *f = top(b);
    static const struct def_mark none = { 0, 0 };

    if (d->anchor)
        anchor_set(b, d->anchor, d);
    if (!f) {
        b->root = d->v;
        return;
    }
    f->n_nodes += d->n_nodes;
    f->n_bytes += d->n_bytes;
    if (d->height + 1 > f->height)
        f->height = d->height + 1;
    if (!f->is_map) {
        loc_add(b->locs, f->node, f->n_members++, NULL, d->at, none);
        json_array_append_new(f->node, d->v);
    } else if (f->key_is_merge) {
        merge_set(b, f, d);
        free(f->key);
        f->key = NULL;
    } else {
        loc_add(b->locs, f->node, f->n_members++, f->key, d->at, f->key_at);
        json_object_set_new(f->node, f->key, d->v);
        f->key = NULL; /* the record owns it */
    }
}

static void duplicate_key(struct ybuild *b, const char *key, struct def_mark first,
                          struct def_mark at)
{
    struct def_quoted q;

    fail(b, DURABLE_ESYNTAX, at, "duplicate key %s (first at line %d, column %d)",
         def_quote(&q, key), first.line, first.column);
}

/* A key for the open mapping f: a string, not given before. n is its size
 * as written, counted like a scalar's. */
static void key_set(struct ybuild *b, struct frame *f, const char *key, size_t n,
                    struct def_mark at)
{
    const struct yloc *first;

    if (json_object_get(f->node, key)) {
        first = first_key(b, f, key);
        duplicate_key(b, key, first ? first->key_at : at, at);
        return;
    }
    if (!count(b, 0, n, at))
        return;
    f->key = xstrdup(key);
    f->key_at = at;
    f->n_bytes += n;
}

/* A scalar where a mapping expects a key. */
static void on_key_scalar(struct ybuild *b, const yaml_event_t *ev, struct def_mark at)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    bool is_plain = !ev->data.scalar.tag && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    struct frame *f = top(b);
    struct def_quoted q;
    char lit[LITERAL_MAX + 4];
    json_t *k;

    if (is_plain && n == 2 && memcmp(s, "<<", 2) == 0) {
        if (f->merges) {
            duplicate_key(b, "<<", f->merge_key_at, at);
            return;
        }
        f->key = xstrdup("<<");
        f->key_at = at;
        f->key_is_merge = true;
        return;
    }
    k = scalar_value(b, ev, at);
    if (!k)
        return;
    if (json_is_string(k)) {
        key_set(b, f, json_string_value(k), n, at);
        if (ev->data.scalar.anchor && b->code == DURABLE_OK) {
            const struct done d = { .v = k, .n_nodes = 1, .n_bytes = n, .at = at };
            anchor_set(b, (const char *)ev->data.scalar.anchor, &d);
        }
    } else if (is_plain && n > 0) {
        literal(s, n, lit);
        fail(b, DURABLE_ESYNTAX, at, "mapping keys must be strings: %s is read as %s%s (write %s)",
             lit, json_is_null(k) ? "" : "a ", noun(k), def_quote(&q, lit));
    } else
        fail(b, DURABLE_ESYNTAX, at, "mapping keys must be strings, got %s", noun(k));
    json_decref(k); /* an anchor keeps its own reference */
}

static void on_scalar(struct ybuild *b, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    struct def_mark at = mark_of(ev->start_mark);
    struct frame *f = top(b);
    struct done d = { .n_nodes = 1, .n_bytes = n, .at = at };

    if (memchr(s, '\0', n)) {
        fail(b, DURABLE_ESYNTAX, at, "NUL characters are not allowed in strings");
        return;
    }
    if (wants_key(b)) {
        on_key_scalar(b, ev, at);
        return;
    }
    if (!count(b, 1, n, at))
        return;
    d.v = scalar_value(b, ev, at);
    if (!d.v)
        return;
    /* The informational top-level version, a plain number, stays as
     * written: 1.10 is not 1.1. */
    if (b->depth == 1 && f->is_map && strcmp(f->key, "version") == 0 && json_is_number(d.v) &&
        !ev->data.scalar.tag) {
        json_decref(d.v);
        d.v = string_node(b, s, n, at);
        if (!d.v)
            return;
    }
    d.anchor = (const char *)ev->data.scalar.anchor;
    attach(b, &d);
}

static void on_alias(struct ybuild *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    struct def_mark at = mark_of(ev->start_mark);
    const struct anchor *a = anchor_get(b, name);
    struct done d = { .at = at };

    if (!a) {
        fail(b, DURABLE_ESYNTAX, at, "alias *%.*s has no anchor before it", LITERAL_MAX, name);
        return;
    }
    if (wants_key(b)) {
        if (json_is_string(a->node))
            key_set(b, top(b), json_string_value(a->node), a->n_bytes, at);
        else
            fail(b, DURABLE_ESYNTAX, at, "mapping keys must be strings, got %s", noun(a->node));
        return;
    }
    if (b->depth + 1 + (size_t)a->height > DEF_YAML_MAX_DEPTH) {
        fail(b, DURABLE_ESYNTAX, at, "nesting is deeper than %d levels", DEF_YAML_MAX_DEPTH);
        return;
    }
    if (!count(b, a->n_nodes, a->n_bytes, at))
        return;
    d.v = json_deep_copy(a->node); /* recursion bounded by DEF_YAML_MAX_DEPTH */
    d.n_nodes = a->n_nodes;
    d.n_bytes = a->n_bytes;
    d.height = a->height;
    attach(b, &d);
}

static void on_open(struct ybuild *b, const yaml_event_t *ev, bool is_map)
{
    const char *tag =
            (const char *)(is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
    const char *anchor =
            (const char *)(is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
    const char *want = is_map ? TAG_PREFIX "map" : TAG_PREFIX "seq";
    struct def_mark at = mark_of(ev->start_mark);
    static const struct def_mark none = { 0, 0 };
    struct def_quoted q;
    char shown[128];
    struct frame *f;

    if (wants_key(b)) {
        fail(b, DURABLE_ESYNTAX, at, "mapping keys must be strings, got %s",
             is_map ? "mapping" : "sequence");
        return;
    }
    if (tag && strcmp(tag, "!") != 0 && strcmp(tag, want) != 0) {
        fail(b, DURABLE_ESYNTAX, at, "unsupported tag %s", def_quote(&q, tag_text(tag, shown)));
        return;
    }
    if (b->depth >= DEF_YAML_MAX_DEPTH) {
        fail(b, DURABLE_ESYNTAX, at, "nesting is deeper than %d levels", DEF_YAML_MAX_DEPTH);
        return;
    }
    if (!count(b, 1, 0, at))
        return;
    f = &b->stack[b->depth++];
    *f = (struct frame){ .is_map = is_map, .at = at, .n_nodes = 1 };
    f->node = is_map ? json_object() : json_array();
    f->anchor = anchor ? xstrdup(anchor) : NULL;
    loc_add(b->locs, f->node, SELF, NULL, at, none);
}

/* Adds the members of "<<" that the mapping does not have: explicit keys
 * win, then earlier merged mappings over later ones (YAML's merge rules). */
static void merge_apply(struct ybuild *b, struct frame *f)
{
    size_t i, n = json_is_array(f->merges) ? json_array_size(f->merges) : 1;
    const char *key;
    json_t *v;

    for (i = 0; i < n; i++) {
        json_t *src = json_is_array(f->merges) ? json_array_get(f->merges, i) : f->merges;
        json_object_foreach(src, key, v)
        {
            if (json_object_get(f->node, key))
                continue;
            loc_add(b->locs, f->node, f->n_members++, xstrdup(key), f->merge_at, f->merge_key_at);
            json_object_set(f->node, key, v);
        }
    }
    /* The merged mappings may have records keyed by their address. */
    json_array_append(b->locs->buried, f->merges);
}

static void on_close(struct ybuild *b)
{
    struct frame *f = top(b);
    struct done d;

    if (!f) /* libyaml never closes what it did not open */
        return;
    if (f->merges && b->code == DURABLE_OK)
        merge_apply(b, f);
    d = (struct done){ .v = f->node,
                       .n_nodes = f->n_nodes,
                       .n_bytes = f->n_bytes,
                       .height = f->height,
                       .at = f->at,
                       .anchor = f->anchor };
    json_decref(f->merges);
    free(f->key);
    b->depth--;
    attach(b, &d);
    free(f->anchor);
}

static void on_event(struct ybuild *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->n_docs++ > 0)
            fail(b, DURABLE_ESYNTAX, mark_of(ev->start_mark),
                 "expected one YAML document, found a second one");
        break;
    case YAML_ALIAS_EVENT:
        on_alias(b, ev);
        break;
    case YAML_SCALAR_EVENT:
        on_scalar(b, ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        on_open(b, ev, false);
        break;
    case YAML_MAPPING_START_EVENT:
        on_open(b, ev, true);
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        on_close(b);
        break;
    default: /* stream start and end, document end */
        break;
    }
}

/* ---- libyaml's errors ---- */

/* The byte at 0-based line and character column, or NULL. libyaml counts
 * columns in characters. */
static const char *char_at(const char *text, size_t len, size_t line, size_t column)
{
    size_t i = 0;

    for (; line > 0 && i < len; i++) {
        if (text[i] == '\n')
            line--;
    }
    for (; i < len && text[i] != '\n'; i++) {
        if (((unsigned char)text[i] & 0xc0) == 0x80)
            continue;
        if (column-- == 0)
            return text + i;
    }
    return NULL;
}

/* Line and column of a byte offset (reader errors give only that). */
static struct def_mark mark_of_offset(const char *text, size_t len, size_t offset)
{
    struct def_mark m = { 1, 1 };
    size_t i;

    for (i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            m.line++;
            m.column = 1;
        } else if (((unsigned char)text[i] & 0xc0) != 0x80) {
            m.column++;
        }
    }
    return m;
}

/* Errors of libyaml's reader, which locates them by byte offset. For a
 * broken UTF-8 sequence it names the byte after the lead; name the lead. */
static void reader_failed(struct ybuild *b, const yaml_parser_t *yp, const char *problem)
{
    size_t off = yp->problem_offset, back;

    if (strstr(problem, "UTF-8") && !strstr(problem, "leading")) {
        for (back = 0; back < 4 && back <= off && off - back < b->len; back++) {
            if ((unsigned char)b->text[off - back] >= 0xc0) {
                off -= back;
                break;
            }
        }
        if (off < b->len && (unsigned char)b->text[off] >= 0xc0) {
            fail(b, DURABLE_ESYNTAX, mark_of_offset(b->text, b->len, off),
                 "invalid UTF-8: incomplete sequence starting with byte 0x%02x",
                 (unsigned char)b->text[off]);
            return;
        }
    }
    if (strstr(problem, "UTF-8") && off < b->len)
        fail(b, DURABLE_ESYNTAX, mark_of_offset(b->text, b->len, off),
             "invalid UTF-8: unexpected byte 0x%02x", (unsigned char)b->text[off]);
    else if (yp->problem_value >= 0)
        fail(b, DURABLE_ESYNTAX, mark_of_offset(b->text, b->len, off), "%s (U+%04X)", problem,
             (unsigned)yp->problem_value);
    else
        fail(b, DURABLE_ESYNTAX, mark_of_offset(b->text, b->len, off), "%s", problem);
}

static void yaml_failed(struct ybuild *b, const yaml_parser_t *yp)
{
    struct def_mark at = mark_of(yp->problem_mark), ctx = mark_of(yp->context_mark);
    const char *problem = yp->problem ? yp->problem : "malformed YAML";
    const char *c;

    if (yp->error == YAML_MEMORY_ERROR) {
        fail(b, DURABLE_ENOMEM, (struct def_mark){ 0, 0 }, "could not parse YAML: out of memory");
    } else if (yp->error == YAML_READER_ERROR) {
        reader_failed(b, yp, problem);
    } else {
        c = char_at(b->text, b->len, yp->problem_mark.line, yp->problem_mark.column);
        if (c && *c == '\t')
            fail(b, DURABLE_ESYNTAX, at, "tab characters cannot indent YAML; use spaces");
        else if (!yp->context)
            fail(b, DURABLE_ESYNTAX, at, "%s", problem);
        else if (ctx.line == at.line && ctx.column == at.column)
            fail(b, DURABLE_ESYNTAX, at, "%s %s", problem, yp->context);
        else
            fail(b, DURABLE_ESYNTAX, at, "%s %s started at line %d, column %d", problem,
                 yp->context, ctx.line, ctx.column);
    }
}

/* ---- the pass ---- */

static void build_release(struct ybuild *b)
{
    size_t i;

    while (b->depth > 0) {
        struct frame *f = &b->stack[--b->depth];
        json_decref(f->node);
        json_decref(f->merges);
        free(f->key);
        free(f->anchor);
    }
    free(b->stack);
    for (i = 0; i < b->n_anchors; i++)
        json_decref(b->anchors[i].node);
    free(b->anchors);
    json_decref(b->anchor_ids);
    json_decref(b->root);
}

durable_code def_yaml_load(struct parser *p, const char *text, size_t len, json_t **out_root)
{
    struct ybuild b = { .p = p, .text = text, .len = len };
    yaml_parser_t yp;
    yaml_event_t ev;
    yaml_event_type_t type;
    bool has_parser = false;

    *out_root = NULL;
    def_ylocs_free(p->ylocs);
    p->ylocs = ylocs_new();
    b.locs = p->ylocs;
    if (!def_check_nul(p, text, len))
        return DURABLE_ESYNTAX;
    b.stack = xcalloc(DEF_YAML_MAX_DEPTH, sizeof(*b.stack));
    b.anchor_ids = json_object();
    if (!yaml_parser_initialize(&yp)) {
        fail(&b, DURABLE_ENOMEM, (struct def_mark){ 0, 0 }, "could not parse YAML: out of memory");
        goto done;
    }
    has_parser = true;
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    /* No encoding is forced: libyaml then skips a byte order mark. UTF-16
     * never gets here (def_check_nul refuses its zero bytes). */
    while (b.code == DURABLE_OK) {
        if (!yaml_parser_parse(&yp, &ev)) {
            yaml_failed(&b, &yp);
            break;
        }
        on_event(&b, &ev);
        type = ev.type;
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
    }

done:
    if (has_parser)
        yaml_parser_delete(&yp);
    if (b.code == DURABLE_OK) {
        if (b.locs->n > 1)
            qsort(b.locs->items, b.locs->n, sizeof(*b.locs->items), loc_cmp);
        *out_root = b.root;
        b.root = NULL;
    }
    build_release(&b);
    return b.code;
}
