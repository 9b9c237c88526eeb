/*
 * store.c - the backend-neutral half of the store: the table of backends,
 * store_open's choice among them, the store_* dispatchers over s->ops, and
 * the helpers every backend shares (backend.h). The documents built from
 * the backend's records are docs.c's.
 *
 * A dispatcher only forwards: the thread rules and contracts are those of
 * store.h, which every backend keeps. store_apply is apply.c's, over the
 * backend's row operations. Adding a backend is a line in backends[] per
 * scheme plus its folder.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"

/* The backends, by the scheme of a location ("scheme:rest"). The first
 * answers a location without a scheme (a plain path). */
static const struct backend {
    const char *scheme;
    const struct store_ops *ops;
} backends[] = {
    { "sqlite", &sqlite_store_ops },
    { "postgres", &pg_store_ops },
    { "postgresql", &pg_store_ops },
};

#define LOCATIONS_EXPECTED "expected a path, sqlite:PATH or postgres://USER@HOST:PORT/DB"

/* The backend for location, or NULL when its scheme names none. A scheme is
 * letters, digits, '+', '-' or '.' before the first ':' (so a path holding a
 * ':' after a '/' is still a path). */
static const struct store_ops *backend_for(const char *location)
{
    size_t n =
            strspn(location, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");

    if (n == 0 || location[n] != ':')
        return backends[0].ops;
    for (size_t i = 0; i < DUR_ARRAY_LEN(backends); i++) {
        if (strlen(backends[i].scheme) == n && strncmp(location, backends[i].scheme, n) == 0)
            return backends[i].ops;
    }
    return NULL;
}

durable_code store_location_file(const char *location, const char **out_file, durable_error *err)
{
    const struct store_ops *ops = backend_for(location);

    *out_file = NULL;
    if (!ops) {
        return err_set(err, DURABLE_EUNSUPPORTED,
                       "unsupported database url \"%s\": " LOCATIONS_EXPECTED, location);
    }
    if (ops == backends[0].ops)
        *out_file = strncmp(location, "sqlite:", 7) == 0 ? location + 7 : location;
    return DURABLE_OK;
}

durable_code store_open(const char *location, durable_durability durability, struct store **out,
                        durable_error *err)
{
    const struct store_ops *ops = backend_for(location);

    durable_code rc;

    *out = NULL;
    if (!ops) {
        return err_set(err, DURABLE_EUNSUPPORTED,
                       "unsupported database url \"%s\": " LOCATIONS_EXPECTED, location);
    }
    rc = ops->open(location, durability, out, err);
    /* On several nodes another node may retry a finished run: no cache. */
    if (rc == DURABLE_OK && !ops->cluster)
        (*out)->cache = run_cache_new();
    return rc;
}

void store_close(struct store *s)
{
    if (s) {
        run_cache_free(s->cache);
        s->cache = NULL;
        s->ops->close(s);
    }
}

int store_schema_version(const struct store *s)
{
    return s->ops->schema_version();
}

durable_code store_synchronous(struct store *s, int *out_level, durable_error *err)
{
    return s->ops->synchronous(s, out_level, err);
}

/* ---- transitions ---- */

/* The cache of finished runs learns of retries here (docs.c says why at
 * commit): a transaction's list starts empty and is applied only after
 * the backend's commit. */

durable_code store_tx_begin(struct store *s, durable_error *err)
{
    if (s->cache)
        run_cache_forget_pending(s->cache, false);
    return s->ops->tx_begin(s, err);
}

durable_code store_tx_prefetch(struct store *s, const struct transition *const *t, size_t n,
                               durable_error *err)
{
    return s->ops->prefetch && n > 0 ? s->ops->prefetch(s, t, n, err) : DURABLE_OK;
}

durable_code store_tx_commit(struct store *s, struct store_events *ev, durable_error *err)
{
    durable_code rc = s->ops->tx_commit(s, ev, err);

    /* On failure the caller rolls back, which drops the list. */
    if (rc == DURABLE_OK && s->cache)
        run_cache_forget_pending(s->cache, true);
    return rc;
}

bool store_tx_overlaps(const struct store *s)
{
    /* The cache's list of a transaction is dropped by the next's begin. */
    return s->ops->tx_commit_send && !s->cache;
}

durable_code store_tx_commit_send(struct store *s, struct store_events *ev, durable_error *err)
{
    return store_tx_overlaps(s) ? s->ops->tx_commit_send(s, err) : store_tx_commit(s, ev, err);
}

durable_code store_tx_commit_wait(struct store *s, struct store_events *ev, durable_error *err)
{
    return store_tx_overlaps(s) ? s->ops->tx_commit_wait(s, ev, err) : DURABLE_OK;
}

void store_tx_commit_ready(struct store *s)
{
    if (store_tx_overlaps(s))
        s->ops->tx_commit_ready(s);
}

void store_tx_rollback(struct store *s)
{
    if (s->cache)
        run_cache_forget_pending(s->cache, false);
    s->ops->tx_rollback(s);
}

#ifdef DURABLE_FAILPOINTS
durable_code commit_fault_parse(struct commit_fault *f, const char *const *kinds,
                                durable_error *err)
{
    /* NOLINTNEXTLINE(concurrency-mt-unsafe): read at open, durable never sets it */
    const char *spec = getenv("DURABLE_FAILPOINT_COMMIT");
    const char *p;
    char *end;
    struct dbuf names;

    memset(f, 0, sizeof(*f));
    if (!spec || !spec[0])
        return DURABLE_OK;
    f->count = -1;
    f->p = 1.0;
    for (int i = 0; kinds[i] && !f->kind; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(spec, kinds[i], n) == 0 && (spec[n] == '\0' || spec[n] == ','))
            f->kind = i + 1;
    }
    if (!f->kind)
        goto bad;
    for (p = strchr(spec, ','); p; p = strchr(p + 1, ',')) {
        if (strncmp(p, ",after=", 7) == 0)
            f->after = strtol(p + 7, &end, 10);
        else if (strncmp(p, ",count=", 7) == 0)
            f->count = strtol(p + 7, &end, 10);
        else if (strncmp(p, ",p=", 3) == 0)
            f->p = strtod(p + 3, &end);
        else
            goto bad;
        if ((*end != '\0' && *end != ',') || f->after < 0 || f->count < -1 || f->p < 0 || f->p > 1)
            goto bad;
    }
    return DURABLE_OK;
bad:
    f->kind = 0;
    dbuf_init(&names, 0);
    for (int i = 0; kinds[i]; i++)
        (void)dbuf_addf(&names, "%s%s", i ? " or " : "", kinds[i]);
    err_set(err, DURABLE_EINVAL,
            "DURABLE_FAILPOINT_COMMIT \"%s\": expected %s, then optionally "
            ",after=N ,count=N ,p=P (0 to 1)",
            spec, names.buf);
    dbuf_release(&names);
    return DURABLE_EINVAL;
}

bool commit_fault_due(struct commit_fault *f)
{
    if (!f->kind || f->seen++ < f->after || f->count == 0)
        return false;
    if (f->p < 1.0 && rand_unit() >= f->p)
        return false;
    if (f->count > 0)
        f->count--;
    return true;
}
#endif

/* ---- records ---- */

durable_code store_workflow_get(struct store *s, const char *id_or_name,
                                struct workflow_record *out, durable_error *err)
{
    return s->ops->workflow_get(s, id_or_name, out, err);
}

durable_code store_run_load(struct store *s, const char *run_id, struct run_record *out,
                            durable_error *err)
{
    return s->ops->run_load(s, run_id, out, err);
}

durable_code store_runs_unfinished(struct store *s,
                                   durable_code (*fn)(const struct run_record *r, void *ud),
                                   void *ud, durable_error *err)
{
    return s->ops->runs_unfinished(s, fn, ud, err);
}

durable_code store_run_find_by_key(struct store *s, const char *workflow_id, const char *key,
                                   char out_run_id[ID_MAX], bool *out_found, durable_error *err)
{
    return s->ops->run_find_by_key(s, workflow_id, key, out_run_id, out_found, err);
}

durable_code store_run_status(struct store *s, const char *run_id, enum run_status *out_status,
                              durable_error *err)
{
    return s->ops->run_status(s, run_id, out_status, err);
}

/* ---- inspection ---- */

durable_code store_snapshot_json(struct store *s, int rows_per_table, char **out,
                                 durable_error *err)
{
    return s->ops->snapshot_json(s, rows_per_table, out, err);
}

durable_code store_count_runs(struct store *s, int64_t out[STORE_N_RUN_STATUSES],
                              durable_error *err)
{
    return s->ops->count_runs(s, out, err);
}

durable_code store_count_steps(struct store *s, int64_t out[STORE_N_STEP_STATUSES],
                               durable_error *err)
{
    return s->ops->count_steps(s, out, err);
}

durable_code store_ping(struct store *s, durable_error *err)
{
    return s->ops->ping(s, err);
}

durable_code store_kv_key_check(const char *key, durable_error *err)
{
    size_t n = key ? strlen(key) : 0;

    if (n == 0 || n > STORE_KV_KEY_MAX)
        return err_set(err, DURABLE_EINVAL, "a key is 1 to %d bytes, got %zu", STORE_KV_KEY_MAX, n);
    return DURABLE_OK;
}

durable_code store_kv_get(struct store *s, const char *key, char **out, durable_error *err)
{
    durable_code rc = store_kv_key_check(key, err);

    *out = NULL;
    return rc == DURABLE_OK ? s->ops->kv_read(s, key, out, err) : rc;
}

durable_code store_schedules_read(struct store *s, const char *id,
                                  void (*fn)(const struct schedule_record *r, void *ud), void *ud,
                                  durable_error *err)
{
    if (!s->ops->schedules_read)
        return err_set(err, DURABLE_EUNSUPPORTED, "this store has no schedules yet");
    return s->ops->schedules_read(s, id, fn, ud, err);
}

void schedule_record_release(struct schedule_record *r)
{
    free(r->workflow_name);
    free(r->cron);
    free(r->tz);
    free(r->input_json);
    free(r->overlap);
    free(r->catch_up);
    memset(r, 0, sizeof(*r));
}

/* ---- shared helpers ---- */

void workflow_record_release(struct workflow_record *w)
{
    if (!w)
        return;
    free(w->name);
    free(w->definition);
    memset(w, 0, sizeof(*w));
}

void run_record_release(struct run_record *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; i < r->n_steps; i++) {
        free(r->steps[i].step_id);
        free(r->steps[i].output_json);
    }
    free(r->steps);
    free(r->definition);
    free(r->input_json);
    free(r->order_id);
    free(r->output_json);
    free(r->error_message);
    memset(r, 0, sizeof(*r));
}

void store_events_push(struct store_events *ev, const struct event_key *k, int64_t seq, int64_t gid,
                       const char *type, char *data_json)
{
    struct store_event *e;

    if (ev->n == ev->cap) {
        ev->cap = ev->cap ? ev->cap * 2 : 16;
        ev->items = xrealloc(ev->items, ev->cap * sizeof(*ev->items));
    }
    e = &ev->items[ev->n++];
    snprintf(e->run_id, sizeof(e->run_id), "%s", k->run_id);
    snprintf(e->type, sizeof(e->type), "%s", type);
    e->seq = seq;
    e->global_id = gid;
    e->step_id = k->step_id ? xstrdup(k->step_id) : NULL;
    e->at_ms = k->at_ms;
    e->data_json = data_json;
}

void store_events_truncate(struct store_events *ev, size_t n)
{
    while (ev->n > n) {
        struct store_event *e = &ev->items[--ev->n];
        free(e->step_id);
        free(e->data_json);
        e->step_id = NULL;
        e->data_json = NULL;
    }
}

void store_events_clear(struct store_events *ev)
{
    store_events_truncate(ev, 0);
}

void store_events_release(struct store_events *ev)
{
    store_events_clear(ev);
    free(ev->items);
    ev->items = NULL;
    ev->cap = 0;
}

json_t *store_snapshot_text(const char *text, size_t len)
{
    char buf[STORE_SNAPSHOT_CELL_MAX + sizeof("…")];
    size_t n = STORE_SNAPSHOT_CELL_MAX;

    if (len <= STORE_SNAPSHOT_CELL_MAX)
        return json_stringn(text, len);
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
        n--; /* text[n] continues a character: cut before that character */
    memcpy(buf, text, n);
    memcpy(buf + n, "…", sizeof("…"));
    return json_stringn(buf, n + sizeof("…") - 1);
}

int store_clamp_limit(int limit, int dflt, int max)
{
    if (limit == 0)
        limit = dflt;
    if (limit < 1)
        return 1;
    return limit > max ? max : limit;
}
