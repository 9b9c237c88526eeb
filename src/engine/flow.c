/*
 * flow.c - concurrency limits (a definition's `concurrency: {key, limit}`):
 * at most `limit` runs of one workflow name, per value of the key, execute
 * at once; the others are held back, pending, until one ends.
 *
 * Nothing here is stored: the groups are derived from the runs in memory,
 * which recovery rebuilds from the store. A run counts against its group
 * (is "in use") once it was admitted: in the store, once its status left
 * `pending` (its first START committed); a run still pending waits in its
 * group's queue, highest priority first, then oldest. Admission happens in
 * flow_pump, which the scheduler calls between batches of messages and never
 * during recovery, so every run that was executing before a restart is
 * counted before any held run is let in: a SIGKILL cannot leave a count
 * wrong, and never lets two runs of a key with limit 1 execute at once.
 *
 * On PostgreSQL a pass of claims (cluster.c: at start, after a node's
 * runs were released) is bracketed the same way: SCHED_CLAIMS_BEGIN/_END,
 * nothing admitted in between, whatever order the claimed runs come in.
 *
 * A step's rate limit hands out places, one every 1000/N ms: in memory
 * in one process; on a cluster the store's row of the limit does
 * (TR_RATE_TAKE, flow_on_rate_taken), so the limit holds over every node.
 *
 * On a cluster (PostgreSQL, several nodes) the count is the store's: a
 * held run that has room in its group here is asked for with a
 * TR_RUN_ADMIT (counted in the group meanwhile), which takes a place in
 * the store unless `limit` runs of the group hold one on any node
 * (write.c's flow_admit: the group's admissions serialized by an advisory
 * lock until COMMIT; a run holds its place until it ends). Refused, it is
 * held again until a run of some group ends on some node (a NOTIFY at its
 * finish: SCHED_FLOW, flow_wake), or at once when one ended while it was
 * asked for (the wake-ups are counted).
 *
 * Why a run is held is visible to the API: the scheduler writes each held
 * run's `waiting` member into a table under flow->mu (a leaf), which the
 * store's documents read through struct store's run_note (any thread).
 *
 * Scheduler thread only, except flow_note.
 */
#include "util/common.h"

#include "engine/engine_int.h"
#include "expr/expr.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* A key's text is cut here (longer keys that agree on this much share a
 * group: the limit then holds over both, never less). */
#define FLOW_KEY_MAX 256

struct flow_wait {
    char id[ID_MAX];
    int64_t priority;
    int64_t created_ms;
    uint64_t seq; /* adoption order: runs created in one millisecond keep their order */
};

struct flow_group {
    char *name;      /* workflow name, '\n', key: the table's key */
    char *key;       /* the key's text, or NULL: the whole workflow */
    int limit;       /* from the plan of the run last adopted */
    size_t in_use;   /* admitted runs in memory (and those being asked for) */
    int64_t counted; /* on a cluster: the places taken on every node, at the last answer */
    struct flow_wait *held;
    size_t n_held;
    size_t cap_held;
    bool dirty; /* in flow->dirty */
    struct flow_group *hnext;
};

/* A step's rate limit (`rate_limit.per_second`), per workflow name and
 * step id, or its type's (durable_options.rate_limits), per type: places
 * are handed out every 1000/N ms; next_ms is the next free one. In memory
 * only. */
struct flow_rate {
    char *name; /* workflow name, '\n', step id; or '\n', type name */
    double next_ms;
    struct flow_rate *hnext;
};

struct flow {
    uint64_t next_seq;
    struct flow_rate **rates; /* FLOW_BUCKETS, made when first needed */
    int claiming;             /* passes of claims under way (cluster.c): admit nothing */
    uint64_t wakes;           /* flow_wake calls so far */
    struct flow_group **buckets;
    size_t n_buckets; /* a power of two */
    struct flow_group **dirty;
    size_t n_dirty;
    size_t cap_dirty;
    /* read by any thread through flow_note */
    pthread_mutex_t mu;
    json_t *notes; /* run id -> the `waiting` object's text (string) */
};

#define FLOW_BUCKETS 1024

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

struct flow *flow_new(void)
{
    struct flow *f = xcalloc(1, sizeof(*f));

    f->n_buckets = FLOW_BUCKETS;
    f->buckets = xcalloc(f->n_buckets, sizeof(struct flow_group *));
    pthread_mutex_init(&f->mu, NULL);
    f->notes = json_object();
    return f;
}

static void group_free(struct flow_group *g)
{
    free(g->name);
    free(g->key);
    free(g->held);
    free(g);
}

void flow_free(struct flow *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_buckets; i++) {
        struct flow_group *g = f->buckets[i], *next;
        for (; g; g = next) {
            next = g->hnext;
            group_free(g);
        }
    }
    for (size_t i = 0; f->rates && i < FLOW_BUCKETS; i++) {
        struct flow_rate *q = f->rates[i], *next;
        for (; q; q = next) {
            next = q->hnext;
            free(q->name);
            free(q);
        }
    }
    free(f->rates);
    free(f->buckets);
    free(f->dirty);
    json_decref(f->notes);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void flow_note(void *ud, const char *run_id, struct dbuf *b)
{
    struct flow *f = ud;
    json_t *v;

    pthread_mutex_lock(&f->mu);
    v = json_object_get(f->notes, run_id);
    if (v) {
        dbuf_adds(b, ",\"waiting\":");
        dbuf_adds(b, json_string_value(v));
    }
    pthread_mutex_unlock(&f->mu);
}

void flow_step_note(void *ud, const char *run_id, const char *step_id, struct dbuf *b)
{
    char key[ID_MAX + 130];

    snprintf(key, sizeof(key), "%s/%s", run_id, step_id);
    flow_note(ud, key, b);
}

static void note_set(struct flow *f, const char *run_id, const struct flow_group *g)
{
    json_t *w = json_object();
    char msg[FLOW_KEY_MAX + 128];
    int64_t in_use = (int64_t)g->in_use > g->counted ? (int64_t)g->in_use : g->counted;
    char *text;

    if (g->key)
        snprintf(msg, sizeof(msg), "waiting for concurrency key %s, %lld of %d in use", g->key,
                 (long long)in_use, g->limit);
    else
        snprintf(msg, sizeof(msg),
                 "waiting for the workflow's concurrency limit, %lld of %d in use",
                 (long long)in_use, g->limit);
    json_object_set_new(w, "reason", json_string("concurrency"));
    json_object_set_new(w, "key", g->key ? json_string(g->key) : json_null());
    json_object_set_new(w, "in_use", json_integer((json_int_t)in_use));
    json_object_set_new(w, "limit", json_integer(g->limit));
    json_object_set_new(w, "message", json_string(msg));
    text = json_dumps(w, JSON_COMPACT);
    json_decref(w);
    pthread_mutex_lock(&f->mu);
    json_object_set_new(f->notes, run_id, json_string(text));
    pthread_mutex_unlock(&f->mu);
    free(text);
}

static void note_clear(struct flow *f, const char *run_id)
{
    pthread_mutex_lock(&f->mu);
    json_object_del(f->notes, run_id);
    pthread_mutex_unlock(&f->mu);
}

/* The key's text for run r: a string as it is, any other value as compact
 * JSON; null, or an expression that fails on this input, is "null" (such
 * runs share one group), cut at FLOW_KEY_MAX bytes. Owned. */
static char *key_of(struct run_state *r)
{
    durable_error err = { 0 };
    json_t *input = r->input ? json_incref(r->input)
                             : (r->input_json ? json_loads(r->input_json, 0, NULL) : NULL);
    json_t *ctx = json_pack("{s:o}", "input", input ? input : json_object());
    json_t *v = NULL;
    char *text;

    if (expr_eval(r->plan->concurrency_key_compiled, ctx, &v, &err) != DURABLE_OK) {
        log_warn("run %s: concurrency key %s: %s; the run is counted under the key null", r->id,
                 r->plan->concurrency_key, err.msg);
        v = json_null();
    }
    if (json_is_string(v))
        text = xstrdup(json_string_value(v));
    else
        text = json_dumps(v ? v : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        text = xstrdup("null");
    if (strlen(text) > FLOW_KEY_MAX) {
        size_t n = FLOW_KEY_MAX;
        while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
            n--; /* not inside a UTF-8 sequence */
        text[n] = '\0';
    }
    json_decref(v);
    json_decref(ctx);
    return text;
}

static struct flow_group *group_get(struct flow *f, struct run_state *r)
{
    char *key = r->plan->concurrency_key_compiled ? key_of(r) : NULL;
    char *name = xasprintf("%s\n%s", r->plan->name, key ? key : "");
    struct flow_group **pp = &f->buckets[hash_str(name) & (f->n_buckets - 1)];
    struct flow_group *g;

    for (g = *pp; g && strcmp(g->name, name) != 0; g = g->hnext)
        ;
    if (g) {
        free(name);
        free(key);
    } else {
        g = xcalloc(1, sizeof(*g));
        g->name = name;
        g->key = key;
        g->hnext = *pp;
        *pp = g;
    }
    g->limit = r->plan->concurrency_limit;
    return g;
}

static void mark_dirty(struct flow *f, struct flow_group *g)
{
    if (g->dirty)
        return;
    if (f->n_dirty == f->cap_dirty) {
        f->cap_dirty = f->cap_dirty ? f->cap_dirty * 2 : 16;
        f->dirty = xrealloc(f->dirty, f->cap_dirty * sizeof(struct flow_group *));
    }
    f->dirty[f->n_dirty++] = g;
    g->dirty = true;
}

void flow_on_adopt(struct sched *s, struct run_state *r, bool started, int64_t priority,
                   int64_t created_ms)
{
    struct flow *f = s->flow;
    struct flow_group *g;
    struct flow_wait *w;

    if (r->plan->concurrency_limit <= 0 || r->flow)
        return;
    g = group_get(f, r);
    r->flow = g;
    if (started) {
        g->in_use++;
        return;
    }
    if (g->n_held == g->cap_held) {
        g->cap_held = g->cap_held ? g->cap_held * 2 : 4;
        g->held = xrealloc(g->held, g->cap_held * sizeof(*g->held));
    }
    w = &g->held[g->n_held++];
    snprintf(w->id, sizeof(w->id), "%s", r->id);
    w->priority = priority;
    w->created_ms = created_ms;
    w->seq = ++f->next_seq;
    r->flow_held = true;
    note_set(f, r->id, g);
    mark_dirty(f, g);
}

static void rate_note_clear(struct flow *f, const struct run_state *r, size_t i)
{
    char key[ID_MAX + 130];

    snprintf(key, sizeof(key), "%s/%s", r->id, r->plan->steps[i].id);
    note_clear(f, key);
}

static void held_remove(struct flow_group *g, const struct run_state *r)
{
    for (size_t k = 0; k < g->n_held; k++) {
        if (strcmp(g->held[k].id, r->id) == 0) {
            g->held[k] = g->held[--g->n_held];
            return;
        }
    }
}

void flow_on_drop(struct sched *s, struct run_state *r)
{
    struct flow_group *g = r->flow;

    for (size_t i = 0; i < r->plan->n_steps; i++) {
        if (r->steps[i].rate_held)
            rate_note_clear(s->flow, r, i);
    }
    if (!g)
        return;
    if (r->flow_held) {
        held_remove(g, r);
        note_clear(s->flow, r->id);
    }
    if ((!r->flow_held || r->flow_admitting) && g->in_use > 0)
        g->in_use--;
    r->flow = NULL;
    r->flow_held = false;
    r->flow_admitting = false;
    mark_dirty(s->flow, g);
}

void flow_on_resumed(struct sched *s, struct run_state *r)
{
    if (r->flow && r->flow_held)
        mark_dirty(s->flow, r->flow);
}

/* The held run to admit next: highest priority, then oldest, then first
 * adopted (new runs are adopted in commit order, recovered ones in the
 * order of (created_at, id)); a
 * paused run is passed over (it would hold a place doing nothing). -1:
 * none. */
static long next_held(struct sched *s, const struct flow_group *g)
{
    long best = -1;

    for (size_t k = 0; k < g->n_held; k++) {
        const struct flow_wait *w = &g->held[k], *b;
        struct run_state *r = sched_run_find(s, w->id);
        if (!r || r->paused || r->flow_admitting)
            continue;
        if (best < 0) {
            best = (long)k;
            continue;
        }
        b = &g->held[best];
        if (w->priority > b->priority ||
            (w->priority == b->priority && (w->created_ms < b->created_ms ||
                                            (w->created_ms == b->created_ms && w->seq < b->seq))))
            best = (long)k;
    }
    return best;
}

/* Lets run r execute: its ready steps start. */
static void admit(struct sched *s, struct run_state *r)
{
    r->flow_held = false;
    note_clear(s->flow, r->id);
    for (size_t k = 0; k < r->plan->n_steps; k++) {
        size_t i = r->plan->topo[k];
        if (r->steps[i].st == SS_PENDING && r->steps[i].n_deps_left == 0)
            sched_on_ready(s, r, i);
    }
    sched_check_finished(s, r);
}

static void group_unlink(struct flow *f, struct flow_group *g)
{
    struct flow_group **pp = &f->buckets[hash_str(g->name) & (f->n_buckets - 1)];

    while (*pp && *pp != g)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = g->hnext;
    group_free(g);
}

/* The rate limit of step i's type (durable_options.rate_limits), 0 for none. */
static double type_rate(const struct durable *d, const struct plan_step *ps)
{
    for (size_t k = 0; ps->step_type && k < d->n_type_rates; k++) {
        if (d->type_rates[k].type == ps->step_type)
            return d->type_rates[k].per_second;
    }
    return 0;
}

/* The name of step i's rate limit: workflow name, '\n', step id; or, by
 * its type's, '\n', type name. Owned. */
static char *rate_name(const struct run_state *r, size_t i, bool by_type)
{
    const struct plan_step *ps = &r->plan->steps[i];

    return by_type ? xasprintf("\n%s", ps->step_type->name)
                   : xasprintf("%s\n%s", r->plan->name, ps->id);
}

static struct flow_rate *rate_get(struct flow *f, const struct run_state *r, size_t i, bool by_type)
{
    char *name = rate_name(r, i, by_type);
    struct flow_rate **pp, *q;

    if (!f->rates)
        f->rates = xcalloc(FLOW_BUCKETS, sizeof(struct flow_rate *));
    pp = &f->rates[hash_str(name) & (FLOW_BUCKETS - 1)];
    for (q = *pp; q && strcmp(q->name, name) != 0; q = q->hnext)
        ;
    if (q) {
        free(name);
        return q;
    }
    q = xcalloc(1, sizeof(*q));
    q->name = name;
    q->hnext = *pp;
    *pp = q;
    return q;
}

/* Step i's rate limit, per second (0: none): its own, else its type's. */
static double step_rate(const struct sched *s, const struct run_state *r, size_t i, bool *by_type)
{
    const struct plan_step *ps = &r->plan->steps[i];

    *by_type = ps->rate_per_second <= 0;
    return *by_type ? type_rate(s->d, ps) : ps->rate_per_second;
}

/* Step i waits for its place: its `waiting` member says why. */
static void rate_note_set(struct sched *s, const struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    bool by_type;
    double per_second = step_rate(s, r, i, &by_type);
    char key[ID_MAX + 130], msg[200];
    json_t *w;
    char *text;

    if (by_type) {
        snprintf(msg, sizeof(msg), "waiting for the rate limit of step type %s, %g per second",
                 ps->step_type->name, per_second);
        w = json_pack("{s:s, s:s, s:f, s:s}", "reason", "rate_limit", "step_type",
                      ps->step_type->name, "per_second", per_second, "message", msg);
    } else {
        snprintf(msg, sizeof(msg), "waiting for the rate limit of step %s, %g per second", ps->id,
                 per_second);
        w = json_pack("{s:s, s:f, s:s}", "reason", "rate_limit", "per_second", per_second,
                      "message", msg);
    }
    text = json_dumps(w, JSON_COMPACT);
    json_decref(w);
    snprintf(key, sizeof(key), "%s/%s", r->id, ps->id);
    pthread_mutex_lock(&s->flow->mu);
    json_object_set_new(s->flow->notes, key, json_string(text));
    pthread_mutex_unlock(&s->flow->mu);
    free(text);
}

/* On a cluster: asks the store for step i's place (the database hands
 * them out over every node); flow_on_rate_taken takes the answer. */
static void rate_ask(struct sched *s, struct run_state *r, size_t i, bool by_type, double interval)
{
    struct commit_item *ci = commit_item_new(TR_RATE_TAKE, r->id);
    char *name = rate_name(r, i, by_type);

    ci->step_idx = i;
    ci->run_gen = r->gen;
    ci->t.flow_key = commit_item_str(ci, name);
    ci->t.rate_interval_ms = interval;
    free(name);
    sched_submit(s, ci);
}

bool flow_rate_admit(struct sched *s, struct run_state *r, size_t i)
{
    struct step_state *ss = &r->steps[i];
    bool by_type;
    double per_second = step_rate(s, r, i, &by_type);
    struct flow_rate *q;
    double now = (double)clock_wall_ms(), interval, slot;

    if (per_second <= 0)
        return true;
    if (ss->rate_held)
        return false; /* its place is reserved already */
    interval = 1000.0 / per_second;
    ss->rate_held = true;
    if (s->d->cluster) {
        rate_ask(s, r, i, by_type, interval);
        return false;
    }
    q = rate_get(s->flow, r, i, by_type);
    if (q->next_ms <= now) {
        q->next_ms = now + interval;
        ss->rate_held = false;
        return true;
    }
    slot = q->next_ms;
    q->next_ms += interval;
    sched_timer_push(s, r, i, TM_RATE, (int64_t)slot + 1);
    rate_note_set(s, r, i);
    return false;
}

void flow_on_rate_taken(struct sched *s, struct run_state *r, size_t i, int64_t wait_ms)
{
    if (i >= r->plan->n_steps || !r->steps[i].rate_held)
        return;
    if (wait_ms <= 0) {
        flow_rate_due(s, r, i);
        return;
    }
    sched_timer_push(s, r, i, TM_RATE, clock_wall_ms() + wait_ms);
    rate_note_set(s, r, i);
}

void flow_rate_due(struct sched *s, struct run_state *r, size_t i)
{
    struct step_state *ss = &r->steps[i];

    if (!ss->rate_held)
        return;
    ss->rate_held = false;
    rate_note_clear(s->flow, r, i);
    /* Paused or held meanwhile: it asks for a new place when it can start. */
    if (ss->st == SS_PENDING && !r->paused && !r->flow_held && !r->finishing)
        sched_submit_start(s, r, i, 1);
}

void flow_claims(struct sched *s, bool begin)
{
    struct flow *f = s->flow;

    if (begin)
        f->claiming++;
    else if (f->claiming > 0)
        f->claiming--;
}

/* On a cluster: asks the store for a place for held run r of group g
 * (it stays held, counted in g, until the answer). */
static void ask_admit(struct sched *s, struct flow_group *g, struct run_state *r)
{
    struct commit_item *ci = commit_item_new(TR_RUN_ADMIT, r->id);

    ci->run_gen = r->gen;
    ci->t.flow_key = commit_item_str(ci, g->name);
    ci->t.flow_limit = g->limit;
    r->flow_admitting = true;
    r->flow_wakes = s->flow->wakes;
    sched_submit(s, ci);
}

void flow_on_admitted(struct sched *s, struct run_state *r, const struct transition_result *res)
{
    struct flow *f = s->flow;
    struct flow_group *g = r->flow;

    if (!g || !r->flow_admitting)
        return;
    r->flow_admitting = false;
    g->counted = res->in_use + (res->admitted ? 1 : 0);
    if (res->admitted) {
        held_remove(g, r);
        admit(s, r);
        return;
    }
    g->in_use--;
    note_set(f, r->id, g);
    if (f->wakes != r->flow_wakes)
        mark_dirty(f, g); /* a place was freed while it was asked for */
}

void flow_wake(struct sched *s)
{
    struct flow *f = s->flow;

    f->wakes++;
    for (size_t i = 0; i < f->n_buckets; i++) {
        for (struct flow_group *g = f->buckets[i]; g; g = g->hnext) {
            if (g->n_held > 0)
                mark_dirty(f, g);
        }
    }
}

void flow_pump(struct sched *s)
{
    struct flow *f = s->flow;
    struct flow_group **empty;
    size_t n_empty = 0, d;

    if (f->n_dirty == 0 || f->claiming > 0)
        return;
    /* Admitting a run may end it at once (every step skipped), which drops
     * it and marks its group dirty again: the list may grow as it is read,
     * and list a group twice. */
    for (d = 0; d < f->n_dirty; d++) {
        struct flow_group *g = f->dirty[d];
        long k;

        g->dirty = false;
        while (g->in_use < (size_t)g->limit && (k = next_held(s, g)) >= 0) {
            struct run_state *r = sched_run_find(s, g->held[k].id);
            g->in_use++;
            if (s->d->cluster) {
                ask_admit(s, g, r);
                continue;
            }
            g->held[k] = g->held[--g->n_held];
            admit(s, r);
        }
        for (size_t j = 0; j < g->n_held; j++)
            note_set(f, g->held[j].id, g);
    }
    /* Groups left with no run are freed, each once (dirty marks it seen). */
    empty = xmalloc(f->n_dirty * sizeof(struct flow_group *));
    for (d = 0; d < f->n_dirty; d++) {
        struct flow_group *g = f->dirty[d];
        if (g->dirty)
            continue;
        g->dirty = true;
        if (g->in_use == 0 && g->n_held == 0)
            empty[n_empty++] = g;
    }
    for (d = 0; d < f->n_dirty; d++)
        f->dirty[d]->dirty = false;
    for (d = 0; d < n_empty; d++)
        group_unlink(f, empty[d]);
    free(empty);
    f->n_dirty = 0;
}
