/*
 * map.c - running a `map` step (steps/map.c): its step template once per
 * element of the list its `items` expression gives, at most
 * max_concurrency items in flight, outputs collected in order.
 *
 * The map step is one step of the run (one row, START and COMPLETE as any
 * step); its items are not. Items run on the scheduler thread like any
 * built-in type's attempt (a task's timer, an http_request on the I/O
 * thread): no thread per item. Each item that settles, or fails an attempt,
 * is one TR_MAP_ITEM: one event (`map_item_completed` with its output,
 * `map_item_failed` with its error and whether it was final) and the
 * step's progress {total, done, failed, running} written over its row's
 * output, so the history grows by one event per item transition and
 * nothing is rewritten. The step completes with the outputs in item order
 * (fail_fast: the array; collect: {results, errors}).
 *
 * After a restart (or when the run is adopted) the map step starts again
 * under the same attempt: the items are computed again from the same
 * committed context, the run's `map_item_*` events of this attempt say
 * which items settled (never run again) and which attempt each failed
 * one is at; the others run again with the same idempotency key
 * (`RUN/STEP[INDEX]`).
 *
 * Scheduler thread only.
 */
#include "util/common.h"

#include <string.h>

#include "engine/engine_int.h"
#include "expr/expr.h"
#include "store/store.h"

enum item_st { MI_PENDING = 0, MI_RUNNING, MI_RETRYING, MI_DONE, MI_FAILED };

struct map_exec {
    int attempt;       /* the map step's attempt these items belong to */
    size_t n;          /* items */
    json_t *items;     /* the list (owned) */
    unsigned char *st; /* enum item_st per item */
    int *attempt_of;   /* each item's current (or last) attempt */
    uint32_t *gen;     /* each item's attempt generation: disarms timers, late I/O */
    json_t *config;    /* n slots: a running item's rendered config (its timer calls), or null */
    json_t *outputs;   /* n slots, null until done */
    json_t *errors;    /* [{index, attempt, code, message}] of items failed for good */
    size_t next;       /* no pending item before it */
    size_t running, done, failed;
    int depth;  /* pump() nesting: items that answer at once settle inside it */
    bool again; /* a nested pump() was asked for */
    bool over;  /* the step's outcome is submitted */
};

void sched_map_free(struct map_exec *m)
{
    if (!m)
        return;
    json_decref(m->config);
    free(m->st);
    free(m->attempt_of);
    free(m->gen);
    json_decref(m->items);
    json_decref(m->outputs);
    json_decref(m->errors);
    free(m);
}

static const struct steps_map *map_def(const struct run_state *r, size_t i)
{
    return r->plan->steps[i].type_data;
}

static void pump(struct sched *s, struct run_state *r, size_t i);

/* The item's context: {item, index, input, run: {id}} (not the other steps'
 * outputs: a render converts its context, and the list itself is one of
 * them, so per item that would cost as much as the list). */
static json_t *item_context(struct run_state *r, struct map_exec *m, size_t k)
{
    return json_pack("{s:O, s:I, s:O, s:{s:s}}", "item", json_array_get(m->items, k), "index",
                     (json_int_t)k, "input", r->input ? r->input : json_null(), "run", "id", r->id);
}

/* A TM_MAP_ITEM timer of item k's current attempt. */
static void push_item_timer(struct sched *s, struct run_state *r, size_t i, size_t k,
                            bool is_timeout, int64_t due_ms)
{
    struct timer t = { .due_ms = due_ms, .step_idx = i, .item = k, .item_timeout = is_timeout };

    t.item_gen = r->steps[i].map->gen[k];
    sched_timer_push_item(s, r, t);
}

static char *progress_text(const struct map_exec *m)
{
    return xasprintf("{\"total\":%zu,\"done\":%zu,\"failed\":%zu,\"running\":%zu}", m->n, m->done,
                     m->failed, m->running);
}

/* One TR_MAP_ITEM: the event of item k and the step's progress. */
static void submit_item(struct sched *s, struct run_state *r, size_t i, struct map_exec *m,
                        const char *type, json_t *data)
{
    struct commit_item *ci = commit_item_new(TR_MAP_ITEM, r->id);
    char *text, *progress = progress_text(m);

    ci->step_idx = i;
    ci->run_gen = r->gen;
    ci->plan = plan_ref(r->plan);
    ci->t.step_id = r->plan->steps[i].id;
    ci->t.attempt = m->attempt;
    ci->t.map_event = type;
    json_object_set_new(data, "map_attempt", json_integer(m->attempt));
    text = json_dumps(data, JSON_COMPACT);
    ci->t.map_event_json = commit_item_str(ci, text ? text : "{}");
    ci->t.output_json = commit_item_str(ci, progress);
    free(text);
    free(progress);
    json_decref(data);
    sched_submit(s, ci);
}

static void item_end(struct map_exec *m, size_t k)
{
    m->gen[k]++;
    json_array_set(m->config, k, json_null());
    if (m->st[k] == MI_RUNNING)
        m->running--;
}

static void item_done(struct sched *s, struct run_state *r, size_t i, struct map_exec *m, size_t k,
                      json_t *output)
{
    item_end(m, k);
    m->st[k] = MI_DONE;
    m->done++;
    json_array_set(m->outputs, k, output);
    submit_item(s, r, i, m, "map_item_completed",
                json_pack("{s:I, s:i, s:O}", "index", (json_int_t)k, "attempt", m->attempt_of[k],
                          "output", output));
    json_decref(output);
    pump(s, r, i); /* may free m (finish) */
}

static bool non_retryable(const struct retry_policy *rp, const char *code)
{
    for (size_t j = 0; j < rp->n_non_retryable_errors; j++) {
        if (strcmp(rp->non_retryable_errors[j], code) == 0)
            return true;
    }
    return false;
}

static void item_failed(struct sched *s, struct run_state *r, size_t i, size_t k, const char *code,
                        const char *msg)
{
    struct map_exec *m = r->steps[i].map;
    const struct plan_step *tmpl = map_def(r, i)->tmpl;
    int a = m->attempt_of[k];
    bool final = a >= tmpl->retry.max_attempts || non_retryable(&tmpl->retry, code);
    json_t *data = json_pack("{s:I, s:i, s:s, s:s, s:b}", "index", (json_int_t)k, "attempt", a,
                             "code", code, "message", msg, "final", final);

    item_end(m, k);
    if (final) {
        m->st[k] = MI_FAILED;
        m->failed++;
        json_array_append_new(m->errors, json_pack("{s:I, s:i, s:s, s:s}", "index", (json_int_t)k,
                                                   "attempt", a, "code", code, "message", msg));
    } else {
        int64_t wake = clock_wall_ms() + def_retry_delay_ms(&tmpl->retry, a + 1);
        m->st[k] = MI_RETRYING;
        json_object_set_new(data, "retry_in_ms", json_integer(wake - clock_wall_ms()));
        push_item_timer(s, r, i, k, false, wake);
    }
    submit_item(s, r, i, m, "map_item_failed", data);
    pump(s, r, i); /* may free m (finish) */
}

/* A `workflow` template: item k's child run (data {workflow, input}),
 * keyed RUN/STEP[k]#ATTEMPT so that a restart finds the same child; it
 * ends the item through sched_map_child_ended (children.c). */
static void start_child(struct sched *s, struct run_state *r, size_t i, size_t k, json_t *data)
{
    struct map_exec *m = r->steps[i].map;
    json_t *input = json_object_get(data, "input");
    char key[ID_MAX + DEF_MAX_ID_LEN + 48];
    char *input_text = input ? json_dumps(input, JSON_COMPACT) : NULL;
    struct commit_item *ci = NULL;
    durable_error err = { 0 };

    snprintf(key, sizeof(key), "%s/%s[%zu]#%d", r->id, r->plan->steps[i].id, k, m->attempt_of[k]);
    if (engine_child_item(s->d, json_string_value(json_object_get(data, "workflow")), input_text,
                          key, &ci, &err) != DURABLE_OK) {
        free(input_text);
        item_failed(s, r, i, k, "child_error", err.msg);
        return;
    }
    free(input_text);
    ci->is_child = true;
    snprintf(ci->parent_id, sizeof(ci->parent_id), "%s", r->id);
    ci->parent_gen = r->gen;
    ci->parent_step = i;
    ci->parent_step_gen = r->steps[i].gen;
    ci->parent_item = k + 1;
    ci->parent_item_gen = m->gen[k];
    sched_submit(s, ci);
}

void sched_map_child_ended(struct sched *s, struct run_state *r, size_t i, size_t item,
                           uint32_t item_gen, const struct child_end *e)
{
    struct map_exec *m = r->steps[i].map;
    size_t k = item - 1;
    char msg[384];
    json_t *out;

    if (!m || m->over || k >= m->n || m->gen[k] != item_gen || m->st[k] != MI_RUNNING)
        return; /* the item moved on (its timeout, the map's end) */
    if (e->status == RUN_COMPLETED) {
        out = e->output_json ? json_loads(e->output_json, JSON_DECODE_ANY, NULL) : NULL;
        item_done(s, r, i, m, k, out ? out : json_object());
        return;
    }
    snprintf(msg, sizeof(msg), "child run %s %s%s%s", e->id, run_status_name(e->status),
             e->error ? ": " : "", e->error ? e->error : "");
    item_failed(s, r, i, k, e->status == RUN_CANCELLED ? "child_cancelled" : "child_failed", msg);
}

static void handle_item_outcome(struct sched *s, struct run_state *r, size_t i, struct map_exec *m,
                                size_t k, struct step_outcome *o)
{
    switch (o->kind) {
    case STEP_OUT_DONE:
        item_done(s, r, i, m, k, o->output ? o->output : json_null());
        o->output = NULL;
        break;
    case STEP_OUT_TIMER:
        push_item_timer(s, r, i, k, false, clock_wall_ms() + o->timer_ms);
        break;
    case STEP_OUT_IO: {
        struct step_io_tag tag = { .step_idx = i,
                                   .run_gen = r->gen,
                                   .gen = r->steps[i].gen,
                                   .item = k + 1,
                                   .item_gen = m->gen[k] };
        snprintf(tag.run_id, sizeof(tag.run_id), "%s", r->id);
        steps_io_submit(s->io, o->io_request, &tag);
        o->io_request = NULL;
        break;
    }
    case STEP_OUT_CHILD:
        start_child(s, r, i, k, o->data);
        break;
    case STEP_OUT_FAIL:
    case STEP_OUT_NONE:
        item_failed(s, r, i, k, o->error_code, o->error_msg);
        break;
    default: /* refused by the check: waits, decisions, child runs */
        item_failed(s, r, i, k, "unsupported", "this outcome is not supported in a map");
        break;
    }
    json_decref(o->data);
    o->data = NULL;
    json_decref(o->output);
    o->output = NULL;
}

/* Calls the template's type for item k (its start, or its timer). */
static void call_item(struct sched *s, struct run_state *r, size_t i, struct map_exec *m, size_t k,
                      bool is_timer)
{
    const struct plan_step *tmpl = map_def(r, i)->tmpl;
    struct step_outcome out = { 0 };
    durable_step_call call;
    char key[ID_MAX + DEF_MAX_ID_LEN + 32];

    snprintf(key, sizeof(key), "%s/%s[%zu]", r->id, r->plan->steps[i].id, k);
    memset(&call, 0, sizeof(call));
    call.step = tmpl;
    call.step_id = r->plan->steps[i].id;
    call.run_id = r->id;
    call.attempt = m->attempt_of[k];
    call.idempotency_key = key;
    call.config = json_is_null(json_array_get(m->config, k)) ? tmpl->config
                                                             : json_array_get(m->config, k);
    call.out = &out;
    if (tmpl->expr)
        call.ctx = item_context(r, m, k);
    steps_call(tmpl->step_type, &call, is_timer);
    json_decref(call.ctx);
    handle_item_outcome(s, r, i, m, k, &out);
}

static void start_item(struct sched *s, struct run_state *r, size_t i, struct map_exec *m, size_t k)
{
    const struct plan_step *tmpl = map_def(r, i)->tmpl;
    durable_error err = { 0 };

    m->st[k] = MI_RUNNING;
    m->running++;
    m->attempt_of[k]++;
    if (tmpl->templates) {
        json_t *ctx = item_context(r, m, k), *cfg = NULL;
        durable_code rc = expr_config_render(tmpl->templates, ctx, &cfg, &err);
        json_decref(ctx);
        if (rc != DURABLE_OK) {
            item_failed(s, r, i, k, STEPS_EXPRESSION_ERROR, err.msg);
            return;
        }
        json_array_set_new(m->config, k, cfg);
    }
    if (tmpl->timeout_ms > 0)
        push_item_timer(s, r, i, k, true, clock_wall_ms() + tmpl->timeout_ms);
    call_item(s, r, i, m, k, false);
}

/* The step's outcome, once every item has settled (or one failed, fail fast). */
static void finish(struct sched *s, struct run_state *r, size_t i, struct map_exec *m)
{
    const struct steps_map *def = map_def(r, i);
    struct step_state *ss = &r->steps[i];
    json_t *out;

    if (m->over)
        return;
    if (!def->collect && m->failed > 0) {
        json_t *e = json_array_get(m->errors, 0);
        char msg[DURABLE_ERROR_MSG_SIZE];
        snprintf(msg, sizeof(msg), "item %" JSON_INTEGER_FORMAT " failed: %s",
                 json_integer_value(json_object_get(e, "index")),
                 json_string_value(json_object_get(e, "message")));
        m->over = true;
        sched_submit_failure(s, r, i, "item_failed", msg);
    } else if (m->done + m->failed == m->n) {
        m->over = true;
        out = def->collect ? json_pack("{s:O, s:O}", "results", m->outputs, "errors", m->errors)
                           : json_incref(m->outputs);
        sched_submit_complete(s, r, i, out);
    } else {
        return;
    }
    ss->map = NULL; /* its attempt is over: nothing of it is acted on again */
    sched_map_free(m);
}

/* Starts pending items while fewer than max_concurrency run. An item that
 * answers at once settles inside; the loop (not recursion) goes on. */
static void pump(struct sched *s, struct run_state *r, size_t i)
{
    struct map_exec *m = r->steps[i].map;
    size_t max = (size_t)map_def(r, i)->max_concurrency;

    if (!m || m->over)
        return;
    if (r->paused && !(m->failed > 0 && !map_def(r, i)->collect) &&
        !(m->done + m->failed == m->n && m->running == 0))
        return; /* no new item while paused: sched_map_resumed pumps again */
    if (m->depth > 0) {
        m->again = true;
        return;
    }
    m->depth++;
    do {
        m->again = false;
        while (m->running < max && m->next < m->n && !(m->failed > 0 && !map_def(r, i)->collect)) {
            size_t k = m->next++;
            if (m->st[k] == MI_PENDING)
                start_item(s, r, i, m, k);
        }
    } while (m->again);
    m->depth--;
    /* r->steps[i].map is still m: finish() alone frees it, and only here */
    if ((m->failed > 0 && !map_def(r, i)->collect) ||
        (m->done + m->failed == m->n && m->running == 0))
        finish(s, r, i, m);
}

/* What the store holds of this attempt's items: their events. */
static durable_code load_items(struct sched *s, struct run_state *r, size_t i, struct map_exec *m,
                               durable_error *err)
{
    struct store_events ev = { NULL, 0, 0 };
    durable_code rc = store_events_records(s->d->store, r->id, 0, &ev, err);
    const char *step_id = r->plan->steps[i].id;
    size_t from = 0;

    /* Only this attempt's items: those after the step's last START (a
     * retried run starts it again under attempt 1; a restart writes none). */
    for (size_t e = 0; rc == DURABLE_OK && e < ev.n; e++) {
        if (ev.items[e].step_id && strcmp(ev.items[e].step_id, step_id) == 0 &&
            strcmp(ev.items[e].type, "step_started") == 0)
            from = e + 1;
    }
    for (size_t e = from; rc == DURABLE_OK && e < ev.n; e++) {
        const struct store_event *x = &ev.items[e];
        bool completed = strcmp(x->type, "map_item_completed") == 0;
        json_t *data;
        json_int_t k;

        if (!x->step_id || strcmp(x->step_id, step_id) != 0 ||
            (!completed && strcmp(x->type, "map_item_failed") != 0))
            continue;
        data = json_loads(x->data_json, 0, NULL);
        k = json_integer_value(json_object_get(data, "index"));
        if (json_integer_value(json_object_get(data, "map_attempt")) == m->attempt && k >= 0 &&
            (size_t)k < m->n && m->st[k] != MI_DONE && m->st[k] != MI_FAILED) {
            m->attempt_of[k] = (int)json_integer_value(json_object_get(data, "attempt"));
            if (completed) {
                m->st[k] = MI_DONE;
                m->done++;
                json_array_set(m->outputs, (size_t)k, json_object_get(data, "output"));
            } else if (json_is_true(json_object_get(data, "final"))) {
                m->st[k] = MI_FAILED;
                m->failed++;
                json_array_append_new(m->errors,
                                      json_pack("{s:I, s:O, s:O, s:O}", "index", k, "attempt",
                                                json_object_get(data, "attempt"), "code",
                                                json_object_get(data, "code"), "message",
                                                json_object_get(data, "message")));
            }
        }
        json_decref(data);
    }
    store_events_release(&ev);
    return rc;
}

/* Orders errors by index (loaded ones come in event order). */
struct error_at {
    json_int_t index;
    size_t pos;
};

static int by_index(const void *a, const void *b)
{
    const struct error_at *x = a, *y = b;

    return x->index < y->index ? -1 : x->index > y->index;
}

static void sort_errors(struct map_exec *m)
{
    size_t n = json_array_size(m->errors);
    struct error_at *v;
    json_t *sorted;

    if (n < 2)
        return;
    v = xcalloc(n, sizeof(*v));
    for (size_t k = 0; k < n; k++) {
        v[k].index = json_integer_value(json_object_get(json_array_get(m->errors, k), "index"));
        v[k].pos = k;
    }
    qsort(v, n, sizeof(*v), by_index);
    sorted = json_array();
    for (size_t k = 0; k < n; k++)
        json_array_append(sorted, json_array_get(m->errors, v[k].pos));
    free(v);
    json_decref(m->errors);
    m->errors = sorted;
}

void sched_map_start(struct sched *s, struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct step_state *ss = &r->steps[i];
    durable_error err = { 0 };
    json_t *ctx, *items = NULL;
    struct map_exec *m;
    char msg[DURABLE_ERROR_MSG_SIZE];

    sched_map_free(ss->map);
    ss->map = NULL;
    if (!ps->type_data || !map_def(r, i)->tmpl || !map_def(r, i)->tmpl->step_type) {
        sched_submit_failure(s, r, i, "unsupported", "the map's step template is not usable");
        return;
    }
    ctx = sched_run_context(r); /* also parses the run's input, for item contexts */
    if (expr_eval(ps->expr, ctx, &items, &err) != DURABLE_OK) {
        json_decref(ctx);
        snprintf(msg, sizeof(msg), "items: %.200s", err.msg);
        sched_submit_failure(s, r, i, STEPS_EXPRESSION_ERROR, msg);
        return;
    }
    json_decref(ctx);
    if (!json_is_array(items)) {
        snprintf(msg, sizeof(msg), "items: expected a list, got %s",
                 items ? def_type_name(items) : "nothing");
        json_decref(items);
        sched_submit_failure(s, r, i, "invalid_items", msg);
        return;
    }
    if (json_array_size(items) > STEPS_MAP_MAX_ITEMS) {
        snprintf(msg, sizeof(msg), "items: %zu items, more than the %d a map takes",
                 json_array_size(items), STEPS_MAP_MAX_ITEMS);
        json_decref(items);
        sched_submit_failure(s, r, i, "too_many_items", msg);
        return;
    }
    m = xcalloc(1, sizeof(*m));
    m->attempt = ss->attempt;
    m->items = items;
    m->n = json_array_size(items);
    m->st = xcalloc(m->n + 1, 1);
    m->attempt_of = xcalloc(m->n + 1, sizeof(*m->attempt_of));
    m->gen = xcalloc(m->n + 1, sizeof(*m->gen));
    m->config = json_array();
    m->outputs = json_array();
    for (size_t k = 0; k < m->n; k++) {
        json_array_append_new(m->outputs, json_null());
        json_array_append_new(m->config, json_null());
    }
    m->errors = json_array();
    if (load_items(s, r, i, m, &err) != DURABLE_OK) {
        sched_map_free(m);
        snprintf(msg, sizeof(msg), "reading the items' events: %.200s", err.msg);
        sched_submit_failure(s, r, i, "store_error", msg);
        return;
    }
    sort_errors(m);
    ss->map = m;
    pump(s, r, i);
}

void sched_map_resumed(struct sched *s, struct run_state *r, size_t i)
{
    pump(s, r, i);
}

void sched_map_timer(struct sched *s, struct run_state *r, const struct timer *t)
{
    struct map_exec *m = r->steps[t->step_idx].map;
    size_t k = t->item;
    char msg[96];

    if (!m || m->over || k >= m->n || m->gen[k] != t->item_gen)
        return;
    if (m->st[k] == MI_RETRYING) {
        m->st[k] = MI_PENDING;
        if (k < m->next)
            m->next = k;
        pump(s, r, t->step_idx);
    } else if (m->st[k] == MI_RUNNING && t->item_timeout) {
        snprintf(msg, sizeof(msg), "item attempt %d timed out after %.3gs", m->attempt_of[k],
                 (double)map_def(r, t->step_idx)->tmpl->timeout_ms / 1000.0);
        item_failed(s, r, t->step_idx, k, "timeout", msg);
    } else if (m->st[k] == MI_RUNNING) {
        call_item(s, r, t->step_idx, m, k, true);
    }
}

void sched_map_io_done(struct sched *s, struct run_state *r, struct sched_msg *m)
{
    struct map_exec *me = r->steps[m->tag.step_idx].map;
    size_t k = m->tag.item - 1;

    if (!me || me->over || k >= me->n || me->gen[k] != m->tag.item_gen || me->st[k] != MI_RUNNING)
        return; /* a late result */
    handle_item_outcome(s, r, m->tag.step_idx, me, k, &m->out);
}
