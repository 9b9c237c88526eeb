/*
 * docs.c - the JSON documents of SPEC §6, built from the records a backend
 * reads (store.h, struct run_row ...), for every backend alike: a run with
 * its steps, a run's events, an order, a workflow, the lists of runs,
 * workflows and orders, and every run's events since a global id. Also the
 * cache of finished runs' documents.
 *
 * Documents are concatenated into a dbuf in a fixed member order (the order
 * the API has always shown). Stored JSON text (input, output, depends_on,
 * event data, a definition) is copied as it is, never parsed: the engine
 * encoded it before it was written. Times are RFC 3339 UTC with
 * milliseconds, or null when unset.
 *
 * Any thread. The cache is guarded by its own leaf lock; its pending list
 * (runs a transaction makes unfinished again) belongs to the writer thread.
 */
#include "util/common.h"

#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"

/* ---- members ---- */

/* Each adds key (the text before the value: '{' or ',', the quoted name
 * and ':'), then the value. */
static void add_str(struct dbuf *b, const char *key, const char *v)
{
    dbuf_adds(b, key);
    dbuf_add_json_string(b, v);
}

static void add_int(struct dbuf *b, const char *key, int64_t v)
{
    dbuf_adds(b, key);
    dbuf_addf(b, "%lld", (long long)v);
}

/* Stored JSON text, or null. */
static void add_raw(struct dbuf *b, const char *key, const char *json)
{
    dbuf_adds(b, key);
    dbuf_adds(b, json ? json : "null");
}

/* A time as RFC 3339, or null when 0. */
static void add_time(struct dbuf *b, const char *key, int64_t ms)
{
    char t[32];

    dbuf_adds(b, key);
    if (ms == 0) {
        dbuf_adds(b, "null");
        return;
    }
    clock_format_rfc3339(ms, t);
    dbuf_addf(b, "\"%s\"", t);
}

/* A real as jansson writes one: 17 significant digits, ".0" when it would
 * read as an integer, an exponent without '+' or leading zeros. */
static void add_real(struct dbuf *b, const char *key, double v)
{
    char t[40];
    char *e, *d;
    int n = snprintf(t, sizeof(t) - 2, "%.17g", v);

    if (n > 0 && !strchr(t, '.') && !strchr(t, 'e'))
        memcpy(t + n, ".0", 3);
    e = strchr(t, 'e');
    if (e) {
        e++;
        d = e + (*e == '-' ? 1 : 0);
        if (*e == '+')
            memmove(e, e + 1, strlen(e));
        while (d[0] == '0' && d[1])
            memmove(d, d + 1, strlen(d));
    }
    dbuf_adds(b, key);
    dbuf_adds(b, t);
}

/* Starts the next element of an array (a comma unless it is the first). */
static void add_elem(struct dbuf *b, bool *is_first)
{
    if (!*is_first)
        dbuf_adds(b, ",");
    *is_first = false;
}

static durable_code finish(struct dbuf *b, char **out, durable_error *err)
{
    /* dbuf's only failure is its maximum, which documents do not set. */
    (void)err;
    *out = dbuf_detach(b, NULL);
    return DURABLE_OK;
}

/* ---- runs ---- */

/* A run's members up to completed_at (and restarted_from, on a restart's
 * run only), without the closing brace. */
static void run_members(struct dbuf *b, const struct run_row *r)
{
    add_str(b, "{\"id\":", r->id);
    add_str(b, ",\"workflow_id\":", r->workflow_id);
    add_str(b, ",\"workflow_name\":", r->workflow_name);
    add_int(b, ",\"workflow_version\":", r->workflow_version);
    add_str(b, ",\"status\":", r->status);
    add_raw(b, ",\"input\":", r->input_json);
    add_raw(b, ",\"output\":", r->output_json);
    add_str(b, ",\"order_id\":", r->order_id);
    add_str(b, ",\"idempotency_key\":", r->idempotency_key);
    add_str(b, ",\"error_message\":", r->error_message);
    add_time(b, ",\"created_at\":", r->created_at_ms);
    add_time(b, ",\"started_at\":", r->started_at_ms);
    add_time(b, ",\"completed_at\":", r->completed_at_ms);
    if (r->priority != 0) /* only when started with one: documents stay as they were */
        add_int(b, ",\"priority\":", r->priority);
    if (r->restarted_from) {
        add_str(b, ",\"restarted_from\":{\"run_id\":", r->restarted_from);
        add_str(b, ",\"step_id\":", r->restarted_step);
        dbuf_adds(b, "}");
    }
}

/* What the callbacks of a document fill. */
struct doc {
    const struct store *s; /* for its run_note, or NULL */
    char *run_id;          /* run_read: the run's id (owned), for step_note */
    struct dbuf b;
    bool is_first;   /* no element of the array written yet */
    bool is_final;   /* run_read: the run's status is final */
    bool has_record; /* a single record was read */
};

static void doc_init(struct doc *d)
{
    d->s = NULL;
    d->run_id = NULL;
    dbuf_init(&d->b, 0);
    d->is_first = true;
    d->is_final = false;
    d->has_record = false;
}

/* The engine's note on a pending run (struct store's run_note). */
static void run_note(struct doc *d, const struct run_row *r)
{
    if (d->s && d->s->run_note && r->status && strcmp(r->status, "pending") == 0)
        d->s->run_note(d->s->run_note_ud, r->id, &d->b);
}

static void run_with_steps(void *ud, const struct run_row *r)
{
    struct doc *d = ud;
    enum run_status st;

    run_members(&d->b, r);
    run_note(d, r);
    free(d->run_id);
    d->run_id = xstrdup(r->id);
    dbuf_adds(&d->b, ",\"steps\":[");
    d->is_final = run_status_parse(r->status, &st) && run_status_is_final(st);
    d->has_record = true;
}

/* A map step's progress (steps/map.c): while it has not completed, its
 * output column holds {total, done, failed, running}; once completed, the
 * counts are those of its output (an array, or {results, errors}). */
static void add_map_progress(struct dbuf *b, const struct step_row *r, bool completed)
{
    json_t *out, *results, *errors;
    size_t total, failed;

    if (!completed) {
        add_raw(b, ",\"progress\":", r->output_json);
        return;
    }
    out = r->output_json ? json_loads(r->output_json, JSON_DECODE_ANY, NULL) : NULL;
    results = json_is_array(out) ? out : json_object_get(out, "results");
    errors = json_object_get(out, "errors");
    total = json_array_size(results);
    failed = json_array_size(errors);
    dbuf_addf(b, ",\"progress\":{\"total\":%zu,\"done\":%zu,\"failed\":%zu,\"running\":0}", total,
              total - failed, failed);
    json_decref(out);
}

static void step_of_run(void *ud, const struct step_row *r)
{
    struct doc *d = ud;
    struct dbuf *b = &d->b;

    add_elem(b, &d->is_first);
    add_str(b, "{\"step_id\":", r->step_id);
    add_str(b, ",\"type\":", r->type);
    add_str(b, ",\"status\":", r->status);
    add_int(b, ",\"attempt\":", r->attempt);
    add_int(b, ",\"max_attempts\":", r->max_attempts);
    add_raw(b, ",\"depends_on\":", r->depends_on_json);
    add_time(b, ",\"started_at\":", r->started_at_ms);
    add_time(b, ",\"completed_at\":", r->completed_at_ms);
    add_time(b, ",\"wake_at\":", r->wake_at_ms);
    add_str(b, ",\"error_message\":", r->error_message);
    if (r->type && strcmp(r->type, "map") == 0) {
        bool completed = r->status && strcmp(r->status, "completed") == 0;
        add_map_progress(b, r, completed);
        add_raw(b, ",\"output\":", completed ? r->output_json : NULL);
    } else {
        add_raw(b, ",\"output\":", r->output_json);
    }
    if (d->s && d->s->step_note && d->run_id && r->status && strcmp(r->status, "pending") == 0)
        d->s->step_note(d->s->run_note_ud, d->run_id, r->step_id, b);
    dbuf_adds(b, "}");
}

static void run_of_list(void *ud, const struct run_row *r)
{
    struct doc *d = ud;

    add_elem(&d->b, &d->is_first);
    run_members(&d->b, r);
    run_note(d, r);
    dbuf_adds(&d->b, "}");
}

/* ---- the cache of finished runs ----
 * A finished run's document never changes except by a transition that
 * makes the run unfinished again (TR_RUN_RETRY, the only one): store_apply
 * notes the run (run_cache_forget_at_commit) and store_tx_commit drops its
 * document after the backend's commit, before the writer tells anyone of
 * it. (Dropping it earlier would let a reader cache the old state again
 * before the commit.) A rolled-back transaction forgets nothing. Only for
 * a backend of one node: on several, another node may retry a run.
 * Direct-mapped by a hash of the run id; gen counts the invalidations of a
 * slot, so that a reader that read before one does not store what it read
 * after it. */
#define RUN_CACHE_SLOTS   1024
#define RUN_CACHE_DOC_MAX ((size_t)16 * 1024) /* larger documents are not kept */

struct run_cache_slot {
    char id[ID_MAX]; /* "" when empty */
    char *json;      /* owned, or NULL */
    size_t len;
    uint64_t gen;
};

struct run_cache {
    pthread_mutex_t mu; /* a leaf lock */
    struct run_cache_slot slots[RUN_CACHE_SLOTS];
    char (*pending)[ID_MAX]; /* writer thread only: finished runs the open */
    size_t n_pending;        /* transaction makes unfinished (retries) */
    size_t cap_pending;
};

struct run_cache *run_cache_new(void)
{
    struct run_cache *c = xcalloc(1, sizeof(*c));

    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void run_cache_free(struct run_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < RUN_CACHE_SLOTS; i++)
        free(c->slots[i].json);
    free(c->pending);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* FNV-1a of the run id. */
static struct run_cache_slot *cache_slot(struct run_cache *c, const char *run_id)
{
    uint32_t h = 2166136261u;

    for (; *run_id; run_id++)
        h = (h ^ (unsigned char)*run_id) * 16777619u;
    return &c->slots[h % RUN_CACHE_SLOTS];
}

/* A copy of run_id's cached document into *out (owned), or false. *out_gen
 * gets the slot's generation either way, for cache_put. */
static bool cache_get(struct run_cache *c, const char *run_id, char **out, uint64_t *out_gen)
{
    struct run_cache_slot *e = cache_slot(c, run_id);
    bool hit;

    pthread_mutex_lock(&c->mu);
    hit = e->json && strcmp(e->id, run_id) == 0;
    if (hit) {
        *out = xmalloc(e->len + 1);
        memcpy(*out, e->json, e->len + 1);
    }
    *out_gen = e->gen;
    pthread_mutex_unlock(&c->mu);
    return hit;
}

/* Keeps a copy of json as run_id's, unless the slot was invalidated since
 * gen was read (the run may have changed after it was read). */
static void cache_put(struct run_cache *c, const char *run_id, const char *json, size_t len,
                      uint64_t gen)
{
    struct run_cache_slot *e = cache_slot(c, run_id);
    char *copy = NULL;

    if (len > RUN_CACHE_DOC_MAX || strlen(run_id) >= ID_MAX)
        return;
    copy = xmalloc(len + 1);
    memcpy(copy, json, len + 1);
    pthread_mutex_lock(&c->mu);
    if (e->gen == gen) {
        char *old = e->json;
        e->json = copy;
        e->len = len;
        snprintf(e->id, sizeof(e->id), "%s", run_id);
        copy = old;
    }
    pthread_mutex_unlock(&c->mu);
    free(copy);
}

/* Drops the cached document of run_id, if any, and keeps a reader that read
 * the run before this call from caching what it read. */
static void cache_forget(struct run_cache *c, const char *run_id)
{
    struct run_cache_slot *e = cache_slot(c, run_id);
    char *old = NULL;

    pthread_mutex_lock(&c->mu);
    e->gen++;
    if (e->json && strcmp(e->id, run_id) == 0) {
        old = e->json;
        e->json = NULL;
        e->id[0] = '\0';
    }
    pthread_mutex_unlock(&c->mu);
    free(old);
}

void run_cache_forget_at_commit(struct run_cache *c, const char *run_id)
{
    if (c->n_pending == c->cap_pending) {
        c->cap_pending = c->cap_pending ? c->cap_pending * 2 : 8;
        c->pending = xrealloc(c->pending, c->cap_pending * sizeof(*c->pending));
    }
    snprintf(c->pending[c->n_pending++], ID_MAX, "%s", run_id);
}

void run_cache_forget_pending(struct run_cache *c, bool committed)
{
    for (size_t i = 0; committed && i < c->n_pending; i++)
        cache_forget(c, c->pending[i]);
    c->n_pending = 0;
}

/* ---- the documents ---- */

durable_code store_run_json(struct store *s, const char *run_id, char **out, durable_error *err)
{
    struct doc d;
    struct store_row_fns fn = { .run = run_with_steps, .step = step_of_run, .ud = &d };
    uint64_t gen = 0;
    size_t len = 0;
    durable_code rc;

    if (s->cache && cache_get(s->cache, run_id, out, &gen))
        return DURABLE_OK;
    doc_init(&d);
    d.s = s;
    rc = s->ops->run_read(s, run_id, &fn, err);
    if (rc == DURABLE_OK && !d.has_record)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK) {
        dbuf_adds(&d.b, "]}");
        len = d.b.len;
        rc = finish(&d.b, out, err);
    }
    if (rc == DURABLE_OK && s->cache && d.is_final)
        cache_put(s->cache, run_id, *out, len, gen);
    dbuf_release(&d.b);
    free(d.run_id);
    return rc;
}

/* The events as a JSON array, each with run_id when with_run_id. */
static durable_code events_doc(const struct store_events *ev, bool with_run_id, char **out,
                               durable_error *err)
{
    struct dbuf b;
    bool is_first = true;
    durable_code rc;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "[");
    for (size_t i = 0; i < ev->n; i++) {
        const struct store_event *e = &ev->items[i];
        add_elem(&b, &is_first);
        add_int(&b, "{\"id\":", e->global_id);
        if (with_run_id)
            add_str(&b, ",\"run_id\":", e->run_id);
        add_int(&b, ",\"seq\":", e->seq);
        add_str(&b, ",\"type\":", e->type);
        add_str(&b, ",\"step_id\":", e->step_id);
        add_time(&b, ",\"at\":", e->at_ms);
        add_raw(&b, ",\"data\":", e->data_json);
        dbuf_adds(&b, "}");
    }
    dbuf_adds(&b, "]");
    rc = finish(&b, out, err);
    dbuf_release(&b);
    return rc;
}

durable_code store_events_json(struct store *s, const char *run_id, int64_t after_seq, char **out,
                               durable_error *err)
{
    struct store_events ev = { NULL, 0, 0 };
    durable_code rc = s->ops->events_read(s, run_id, after_seq, &ev, err);

    if (rc == DURABLE_OK)
        rc = events_doc(&ev, false, out, err);
    store_events_release(&ev);
    return rc;
}

durable_code store_events_records(struct store *s, const char *run_id, int64_t after_seq,
                                  struct store_events *out, durable_error *err)
{
    return s->ops->events_read(s, run_id, after_seq, out, err);
}

durable_code store_events_since(struct store *s, int64_t after_gid, int limit, char **out,
                                durable_error *err)
{
    struct store_events ev = { NULL, 0, 0 };
    durable_code rc;

    limit = store_clamp_limit(limit, STORE_EVENTS_MAX, STORE_EVENTS_MAX);
    rc = s->ops->events_since(s, after_gid < 0 ? 0 : after_gid, limit, &ev, err);
    if (rc == DURABLE_OK)
        rc = events_doc(&ev, true, out, err);
    store_events_release(&ev);
    return rc;
}

durable_code store_events_since_records(struct store *s, int64_t after_gid, int limit,
                                        struct store_events *out, durable_error *err)
{
    limit = store_clamp_limit(limit, STORE_EVENTS_MAX, STORE_EVENTS_MAX);
    return s->ops->events_since(s, after_gid < 0 ? 0 : after_gid, limit, out, err);
}

static void order_members(void *ud, const struct order_row *o)
{
    struct doc *d = ud;
    struct dbuf *b = &d->b;

    add_elem(b, &d->is_first);
    add_str(b, "{\"id\":", o->id);
    add_real(b, ",\"amount\":", o->amount);
    add_str(b, ",\"status\":", o->status);
    add_time(b, ",\"created_at\":", o->created_at_ms);
    add_time(b, ",\"updated_at\":", o->updated_at_ms);
    dbuf_adds(b, "}");
    d->has_record = true;
}

durable_code store_order_json(struct store *s, const char *order_id, char **out, durable_error *err)
{
    struct doc d;
    struct store_row_fns fn = { .order = order_members, .ud = &d };
    durable_code rc;

    doc_init(&d);
    rc = s->ops->order_read(s, order_id, &fn, err);
    if (rc == DURABLE_OK && !d.has_record)
        rc = err_set(err, DURABLE_ENOTFOUND, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK)
        rc = finish(&d.b, out, err);
    dbuf_release(&d.b);
    return rc;
}

durable_code store_workflow_json(struct store *s, const char *id_or_name, char **out,
                                 durable_error *err)
{
    struct workflow_record w = { .version = 0 };
    struct dbuf b;
    durable_code rc = store_workflow_get(s, id_or_name, &w, err);

    dbuf_init(&b, 0);
    if (rc == DURABLE_OK) {
        add_str(&b, "{\"id\":", w.id);
        add_str(&b, ",\"name\":", w.name);
        add_int(&b, ",\"version\":", w.version);
        add_raw(&b, ",\"definition\":", w.definition);
        add_time(&b, ",\"created_at\":", w.created_at_ms);
        dbuf_adds(&b, "}");
        rc = finish(&b, out, err);
    }
    dbuf_release(&b);
    workflow_record_release(&w);
    return rc;
}

/* ---- lists ---- */

static void workflow_of_list(void *ud, const struct workflow_row *w)
{
    struct doc *d = ud;
    struct dbuf *b = &d->b;

    add_elem(b, &d->is_first);
    add_str(b, "{\"id\":", w->id);
    add_str(b, ",\"name\":", w->name);
    add_int(b, ",\"version\":", w->version);
    add_str(b, ",\"description\":", w->description);
    add_time(b, ",\"created_at\":", w->created_at_ms);
    dbuf_adds(b, "}");
}

/* The page's limit and offset into their ranges (store.h). */
static struct store_page page_clamp(struct store_page page)
{
    page.limit = store_clamp_limit(page.limit, STORE_LIST_DEFAULT, STORE_LIST_MAX);
    page.offset = page.offset < 0 ? 0 : page.offset;
    return page;
}

/* Ends a list that a page read filled into d (rc its result). */
static durable_code list_end(struct doc *d, durable_code rc, int64_t total, char **out,
                             int64_t *out_total, durable_error *err)
{
    if (rc == DURABLE_OK) {
        dbuf_adds(&d->b, "]");
        rc = finish(&d->b, out, err);
    }
    if (rc == DURABLE_OK && out_total)
        *out_total = total;
    dbuf_release(&d->b);
    return rc;
}

durable_code store_runs_list(struct store *s, const struct store_run_query *q, char **out,
                             int64_t *out_total, durable_error *err)
{
    struct store_run_query cq = *q;
    struct doc d;
    struct store_row_fns fn = { .run = run_of_list, .ud = &d };
    int64_t total = 0;
    durable_code rc = store_run_query_check(q, err);

    if (rc != DURABLE_OK)
        return rc;
    cq.page = page_clamp(q->page);
    doc_init(&d);
    d.s = s;
    dbuf_adds(&d.b, "[");
    rc = s->ops->runs_page(s, &cq, &fn, &total, err);
    return list_end(&d, rc, total, out, out_total, err);
}

durable_code store_workflows_list(struct store *s, struct store_page page, char **out,
                                  int64_t *out_total, durable_error *err)
{
    struct doc d;
    struct store_row_fns fn = { .workflow = workflow_of_list, .ud = &d };
    int64_t total = 0;
    durable_code rc;

    doc_init(&d);
    dbuf_adds(&d.b, "[");
    rc = s->ops->workflows_page(s, page_clamp(page), &fn, &total, err);
    return list_end(&d, rc, total, out, out_total, err);
}

durable_code store_orders_list(struct store *s, struct store_page page, char **out,
                               int64_t *out_total, durable_error *err)
{
    struct doc d;
    struct store_row_fns fn = { .order = order_members, .ud = &d };
    int64_t total = 0;
    durable_code rc;

    doc_init(&d);
    dbuf_adds(&d.b, "[");
    rc = s->ops->orders_page(s, page_clamp(page), &fn, &total, err);
    return list_end(&d, rc, total, out, out_total, err);
}
