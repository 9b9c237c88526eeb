/*
 * api.c - the public API of durable.h on top of the writer and scheduler.
 *
 * Every function here may run on any thread. Writes go through the commit
 * queue and return only after their transaction has committed (engine_commit_
 * wait), except durable_run_start_async, which returns once its creation is
 * queued and is called back by the writer (engine_commit_async); reads go to
 * the store's read connections. The plan cache is plans.c.
 */
#include "util/common.h"

#include "engine/engine.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "steps/steps.h"

/* ---- step types ---- */

/* True when name is 1 to 64 of [a-z0-9_], starting with a letter. */
static bool type_name_is_valid(const char *name)
{
    size_t i;

    if (!name || !(name[0] >= 'a' && name[0] <= 'z'))
        return false;
    for (i = 0; name[i]; i++) {
        char c = name[i];
        if (i >= 64 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static const durable_step_type *type_find_locked(struct durable *d, const char *name)
{
    size_t i;

    for (i = 0; i < d->n_types; i++) {
        if (strcmp(d->types[i]->name, name) == 0)
            return d->types[i];
    }
    return NULL;
}

/* durable_options.rate_limits ("TYPE=N[,TYPE=N...]") into d->type_rates. */
static durable_code parse_type_rates(struct durable *d, const char *text, durable_error *err)
{
    char *copy, *item, *save = NULL;
    durable_code rc = DURABLE_OK;

    if (!text || !text[0])
        return DURABLE_OK;
    copy = xstrdup(text);
    for (item = strtok_r(copy, ",", &save); item && rc == DURABLE_OK;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end = NULL;
        const durable_step_type *t;
        double n;

        if (!eq || eq == item) {
            rc = err_set(err, DURABLE_EINVAL, "rate limits: \"%.60s\" is not TYPE=N", item);
            break;
        }
        *eq = '\0';
        n = strtod(eq + 1, &end);
        t = type_find_locked(d, item);
        if (!t)
            rc = err_set(err, DURABLE_EINVAL, "rate limits: unknown step type \"%.60s\"", item);
        else if (end == eq + 1 || *end || !(n > 0 && n <= 1000))
            rc = err_set(err, DURABLE_EINVAL,
                         "rate limits: %s: N is a number above 0 and at most 1000, got \"%.30s\"",
                         item, eq + 1);
        for (size_t i = 0; rc == DURABLE_OK && i < d->n_type_rates; i++) {
            if (d->type_rates[i].type == t)
                rc = err_set(err, DURABLE_EINVAL, "rate limits: step type %s is given twice", item);
        }
        if (rc == DURABLE_OK) {
            d->type_rates = xrealloc(d->type_rates, (d->n_type_rates + 1) * sizeof(*d->type_rates));
            d->type_rates[d->n_type_rates].type = t;
            d->type_rates[d->n_type_rates++].per_second = n;
        }
    }
    if (rc == DURABLE_OK && d->n_type_rates == 0)
        rc = err_set(err, DURABLE_EINVAL, "rate limits: \"%.60s\" names no step type", text);
    free(copy);
    return rc;
}

/* def_find_type_fn over d's registry. */
static const durable_step_type *engine_step_type_find(void *ud, const char *name)
{
    struct durable *d = ud;
    const durable_step_type *t;

    pthread_mutex_lock(&d->types_mu);
    t = type_find_locked(d, name);
    pthread_mutex_unlock(&d->types_mu);
    return t;
}

/* def_type_name_fn over d's registry. */
static const char *engine_step_type_name(void *ud, size_t i)
{
    struct durable *d = ud;
    const char *name;

    pthread_mutex_lock(&d->types_mu);
    name = i < d->n_types ? d->types[i]->name : NULL;
    pthread_mutex_unlock(&d->types_mu);
    return name;
}

/* Registering while runs go on is safe: an entry, once added, never moves
 * nor changes, and a parse looks names up under types_mu. What a late
 * registration cannot change is a plan resolved before it (durable.h). */
durable_code durable_step_type_register(durable *d, const durable_step_type *type,
                                        durable_error *err)
{
    durable_step_type *copy;
    durable_code rc = DURABLE_OK;

    if (!d || !type || !type->start)
        return err_set(err, DURABLE_EINVAL, "a step type needs a start function");
    if (type->blocking && (type->answers_at_once || type->timer))
        return err_set(err, DURABLE_EINVAL,
                       "a blocking step type has no timer and does not answer at once");
    if (!type_name_is_valid(type->name))
        return err_set(err, DURABLE_EINVAL,
                       "invalid step type name \"%.64s\": use 1 to 64 lowercase letters, digits or "
                       "'_', starting with a letter",
                       type->name ? type->name : "");
    pthread_mutex_lock(&d->types_mu);
    if (type_find_locked(d, type->name)) {
        rc = err_set(err, DURABLE_ECONFLICT, "step type \"%s\" is registered already", type->name);
    } else if (d->n_types == ENGINE_MAX_STEP_TYPES) {
        rc = err_set(err, DURABLE_ETOOBIG, "more than %d step types", ENGINE_MAX_STEP_TYPES);
    } else {
        copy = xmalloc(sizeof(*copy));
        *copy = *type;
        copy->name = xstrdup(type->name);
        d->types[d->n_types++] = copy;
    }
    pthread_mutex_unlock(&d->types_mu);
    /* After durable_open: the runs resumed at open that name this type
     * are resumed now. */
    if (rc == DURABLE_OK && d->sched)
        engine_sched_types_changed(d);
    return rc;
}

/* ---- business actions ---- */

static const struct engine_action *action_find_locked(struct durable *d, const char *name)
{
    size_t i;

    for (i = 0; i < d->n_actions; i++) {
        if (strcmp(d->actions[i].name, name) == 0)
            return &d->actions[i];
    }
    return NULL;
}

bool engine_action_find(struct durable *d, const char *name, durable_action_fn *fn, void **ud)
{
    const struct engine_action *a;

    pthread_mutex_lock(&d->types_mu);
    a = action_find_locked(d, name);
    if (a) {
        *fn = a->fn;
        *ud = a->ud;
    }
    pthread_mutex_unlock(&d->types_mu);
    return a != NULL;
}

/* def_action_name_fn: the built-in actions, then d's registered ones. */
static const char *engine_action_name(void *ud, size_t i)
{
    struct durable *d = ud;
    const char *name = store_builtin_action_name(NULL, i);
    size_t n_builtin = 0;

    if (name)
        return name;
    while (store_builtin_action_name(NULL, n_builtin))
        n_builtin++;
    pthread_mutex_lock(&d->types_mu);
    name = i - n_builtin < d->n_actions ? d->actions[i - n_builtin].name : NULL;
    pthread_mutex_unlock(&d->types_mu);
    return name;
}

static bool action_name_is_valid(const char *name)
{
    size_t i;

    for (i = 0; name && name[i]; i++) {
        char c = name[i];
        if (i >= DEF_MAX_ID_LEN || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                     (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return i > 0;
}

durable_code durable_action_register(durable *d, const char *name, durable_action_fn fn, void *ud,
                                     durable_error *err)
{
    durable_code rc = DURABLE_OK;

    if (!d || !fn)
        return err_set(err, DURABLE_EINVAL, "an action needs a function");
    if (!action_name_is_valid(name))
        return err_set(err, DURABLE_EINVAL,
                       "invalid action name \"%.128s\": use 1 to %d letters, digits, '_', '.' "
                       "or '-'",
                       name ? name : "", DEF_MAX_ID_LEN);
    pthread_mutex_lock(&d->types_mu);
    if (store_action_find(name) || action_find_locked(d, name)) {
        rc = err_set(err, DURABLE_ECONFLICT, "action \"%s\" exists already", name);
    } else if (d->n_actions == ENGINE_MAX_ACTIONS) {
        rc = err_set(err, DURABLE_ETOOBIG, "more than %d actions", ENGINE_MAX_ACTIONS);
    } else {
        d->actions[d->n_actions].name = xstrdup(name);
        d->actions[d->n_actions].fn = fn;
        d->actions[d->n_actions].ud = ud;
        d->n_actions++;
    }
    pthread_mutex_unlock(&d->types_mu);
    /* The runs durable_open could not resume for want of it go on now. */
    if (rc == DURABLE_OK && d->sched)
        engine_sched_types_changed(d);
    return rc;
}

durable_code durable_kv_get(durable *d, const char *key, char **out_value_json, durable_error *err)
{
    if (!d || !out_value_json)
        return err_set(err, DURABLE_EINVAL, "durable_kv_get needs an engine and an output");
    return store_kv_get(d->store, key, out_value_json, err);
}

/* The built-in types go through the same call as a user's. */
static durable_code register_builtin_types(struct durable *d, durable_error *err)
{
    durable_code rc = DURABLE_OK;
    size_t i;

    for (i = 0; steps_builtin[i] && rc == DURABLE_OK; i++)
        rc = durable_step_type_register(d, steps_builtin[i], err);
    return rc;
}

/* ---- open and close ---- */

durable *durable_open(const durable_options *opts, durable_error *err)
{
    static const durable_options defaults = { 0 };
    struct durable *d;
    const char *path, *file = NULL;

    if (!opts)
        opts = &defaults;
    if (opts->step_threads < 0 || opts->step_threads > ENGINE_MAX_STEP_THREADS) {
        err_set(err, DURABLE_EINVAL, "step_threads must be 0 (the default, %d) to %d, got %d",
                STEPS_POOL_THREADS, ENGINE_MAX_STEP_THREADS, opts->step_threads);
        return NULL;
    }
    d = xcalloc(1, sizeof(*d));
    path = opts->db_path ? opts->db_path : "durable.db";
    d->recovery = opts->recovery;
    d->retain_finished_ms = opts->retain_finished_ms > 0 ? opts->retain_finished_ms : 0;
    queue_init(&d->commit_queue);
    pthread_mutex_init(&d->subs_mu, NULL);
    pthread_mutex_init(&d->finish_mu, NULL);
    pthread_mutex_init(&d->plans_mu, NULL);
    pthread_mutex_init(&d->types_mu, NULL);
    engine_metrics_init(d);
    d->next_sub_id = 1;
    d->lock_fd = -1;
    if (register_builtin_types(d, err) != DURABLE_OK ||
        parse_type_rates(d, opts->rate_limits, err) != DURABLE_OK)
        goto fail;
    /* The lock sits beside the file, however the location spells it:
     * "x.db" and "sqlite:x.db" are one database, and must exclude each other. */
    if (store_location_file(path, &file, err) != DURABLE_OK)
        goto fail;
    if (file && engine_lock_open(d, file, err) != DURABLE_OK)
        goto fail;
    if (store_open(path, opts->durability, &d->store, err) != DURABLE_OK)
        goto fail;
    if (engine_cluster_open(d, opts, err) != DURABLE_OK)
        goto fail;
    engine_writer_start(d);
    if (engine_code_start(d, err) != DURABLE_OK)
        goto fail_writer;
    if (engine_sched_start(d, opts->http_allow, opts->step_threads, err) != DURABLE_OK)
        goto fail_writer;
    engine_cluster_start(d);
    engine_schedules_start(d);
    return d;

fail_writer:
    engine_code_stop(d);
    engine_writer_stop(d);
    engine_code_free(d);
    engine_sched_free(d);
fail:
    engine_cluster_close(d);
    store_close(d->store);
    d->store = NULL;
    durable_close(d);
    return NULL;
}

void durable_close(durable *d)
{
    size_t i;

    if (!d)
        return;
    if (d->store) {
        engine_schedules_stop(d);
        engine_cluster_stop(d);
        engine_sched_stop(d);
        engine_code_stop(d);
        engine_writer_stop(d);
        engine_cluster_close(d); /* after the last commit: releases the runs */
        engine_sched_free(d);
        engine_code_free(d);
        store_close(d->store);
    }
    for (i = 0; i < d->n_plans; i++)
        plan_unref(d->plans[i].plan);
    free(d->plans);
    free(d->subs);
    engine_metrics_release(d);
    for (i = 0; i < d->n_types; i++) {
        free((char *)d->types[i]->name);
        free(d->types[i]);
    }
    for (i = 0; i < d->n_actions; i++)
        free(d->actions[i].name);
    free(d->type_rates);
    pthread_mutex_destroy(&d->types_mu);
    pthread_mutex_destroy(&d->plans_mu);
    pthread_mutex_destroy(&d->finish_mu);
    pthread_mutex_destroy(&d->subs_mu);
    queue_release(&d->commit_queue);
    engine_lock_close(d);
    free(d);
}

static const struct def_options builtin_def_options = { .action_name = store_builtin_action_name };

/* builtin_def_options, with d's step types. Returns opts. */
const struct def_options *engine_def_options(struct durable *d, struct def_options *opts)
{
    *opts = builtin_def_options;
    opts->action_name = engine_action_name;
    opts->find_type = engine_step_type_find;
    opts->type_name = engine_step_type_name;
    opts->find_type_ud = d;
    return opts;
}

/* ---- definitions ---- */

/* Here rather than in def/: the def layer knows no step type, and a
 * definition is checked against the built-in ones (steps_builtin). */
durable_code durable_validate(const char *text, size_t text_len, char **out_report,
                              durable_error *err)
{
    struct def_options opts = builtin_def_options;
    struct def_report rep;
    struct plan *plan = NULL;
    struct dbuf out;
    durable_code code;

    opts.format = DEF_FORMAT_AUTO;
    opts.find_type = steps_builtin_find;
    opts.type_name = steps_builtin_name;
    def_report_init(&rep);
    dbuf_init(&out, 0);
    code = def_parse_any(text, text_len, &opts, &plan, &rep, err);
    def_report_format(&rep, &out);
    if (out_report) {
        if (code == DURABLE_OK || code == DURABLE_EINVAL || code == DURABLE_ESYNTAX)
            *out_report = dbuf_detach(&out, NULL);
        else
            *out_report = NULL;
    }
    dbuf_release(&out);
    plan_unref(plan);
    def_report_release(&rep);
    return code;
}

/* The definition as stored: compact, so that whitespace alone never makes a
 * new version, and its numbers as written when 15 digits give every one of
 * them back exactly (jansson's 17 print 0.1, or a YAML "100ms", as
 * 0.10000000000000001); otherwise all with 17. */
static char *definition_text(const json_t *def)
{
    char *text = json_dumps(def, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_t *back = text ? json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
    bool same = back && json_equal(back, def);

    json_decref(back);
    if (same)
        return text;
    free(text);
    return json_dumps(def, JSON_COMPACT);
}

/* NOLINTNEXTLINE(readability-function-size): the public signature (durable.h) */
durable_code durable_workflow_register(durable *d, const char *text, size_t text_len,
                                       char **out_workflow_id, int *out_version, bool *out_created,
                                       durable_error *err)
{
    struct plan *plan = NULL;
    struct transition_result res;
    struct commit_item *ci;
    struct def_options opts;
    char *canonical = NULL;
    durable_code rc;

    rc = def_parse_any(text, text_len, engine_def_options(d, &opts), &plan, NULL, err);
    if (rc != DURABLE_OK)
        goto done;
    canonical = definition_text(plan->definition);
    ci = commit_item_new(TR_WORKFLOW_PUT, NULL);
    ci->t.wf_name = commit_item_str(ci, plan->name);
    ci->t.wf_definition = commit_item_str(ci, canonical);
    ci->t.wf_retain_ms = plan->retain_finished_ms;
    rc = engine_commit_wait(d, ci, &res, err);
    if (rc == DURABLE_OK)
        rc = engine_schedules_of_definition(d, plan, err);
    if (rc != DURABLE_OK)
        goto done;
    if (out_workflow_id)
        *out_workflow_id = xstrdup(res.id);
    if (out_version)
        *out_version = res.version;
    if (out_created)
        *out_created = res.created;
    /* Runs of it need this plan: keep it rather than parse (and compile
     * every expression) again at the first start. */
    if (!engine_plan_cache_has(d, res.id))
        engine_plan_cache_add(d, res.id, plan);
done:
    free(canonical);
    plan_unref(plan);
    return rc;
}

/* The warning of workflow step i when it names a workflow d does not
 * have, appended to out. */
static durable_code child_warning(durable *d, const struct plan *plan, size_t i, struct dbuf *out,
                                  durable_error *err)
{
    const struct plan_step *ps = &plan->steps[i];
    json_t *name = json_object_get(ps->config, "workflow");
    struct workflow_record wf;
    durable_code rc;

    if (!ps->step_type || strcmp(ps->step_type->name, "workflow") != 0 || !json_is_string(name) ||
        def_is_templated(name) || strcmp(json_string_value(name), plan->name) == 0)
        return DURABLE_OK;
    memset(&wf, 0, sizeof(wf));
    rc = store_workflow_get(d->store, json_string_value(name), &wf, err);
    workflow_record_release(&wf);
    if (rc != DURABLE_ENOTFOUND)
        return rc;
    err_clear(err);
    dbuf_addf(out,
              "warning: steps[%zu].config.workflow: no workflow \"%.128s\" is registered yet\n", i,
              json_string_value(name));
    return DURABLE_OK;
}

durable_code durable_workflow_warnings(durable *d, const char *text, size_t text_len,
                                       char **out_report, durable_error *err)
{
    struct def_options opts;
    struct plan *plan = NULL;
    struct dbuf out;
    durable_code rc;
    size_t i;

    if (!out_report)
        return err_set(err, DURABLE_EINVAL, "warnings need a place to go");
    *out_report = NULL;
    dbuf_init(&out, 0);
    rc = def_parse_any(text, text_len, engine_def_options(d, &opts), &plan, NULL, err);
    for (i = 0; rc == DURABLE_OK && i < plan->n_steps; i++)
        rc = child_warning(d, plan, i, &out, err);
    if (rc == DURABLE_OK)
        *out_report = dbuf_detach(&out, NULL);
    dbuf_release(&out);
    plan_unref(plan);
    return rc;
}

/* ---- runs ---- */

/* The run's input: the definition's defaults overlaid with the request's. */
static durable_code merge_input(const struct plan *plan, const char *input_json, char **out,
                                durable_error *err)
{
    json_t *input = json_deep_copy(plan->input);
    json_error_t jerr;
    durable_code rc = DURABLE_OK;

    if (input_json) {
        json_t *given = json_loads(input_json, JSON_REJECT_DUPLICATES, &jerr);
        if (!given) {
            rc = err_set(err, DURABLE_ESYNTAX, "input: line %d, column %d: %s", jerr.line,
                         jerr.column, jerr.text);
            goto done;
        }
        if (!json_is_object(given)) {
            json_decref(given);
            rc = err_set(err, DURABLE_EINVAL, "input: expected a JSON object");
            goto done;
        }
        json_object_update(input, given);
        json_decref(given);
    }
    *out = json_dumps(input, JSON_COMPACT);
done:
    json_decref(input);
    return rc;
}

/* The amount of an existing order, for the run context (run.order); 0
 * when it cannot be read (the store refuses an unknown order anyway). */
static double order_amount(struct durable *d, const char *order_id)
{
    char *text = NULL;
    json_t *j;
    double amount = 0;

    if (store_order_json(d->store, order_id, &text, NULL) != DURABLE_OK)
        return 0;
    j = json_loads(text, 0, NULL);
    amount = json_number_value(json_object_get(j, "amount"));
    json_decref(j);
    free(text);
    return amount;
}

static void fill_step_inits(struct commit_item *ci, const struct plan *plan)
{
    size_t i;

    ci->step_inits = xcalloc(plan->n_steps, sizeof(*ci->step_inits));
    for (i = 0; i < plan->n_steps; i++) {
        const struct plan_step *ps = &plan->steps[i];

        ci->step_inits[i].step_id = ps->id;
        ci->step_inits[i].type = ps->type;
        ci->step_inits[i].max_attempts = ps->retry.max_attempts;
        ci->step_inits[i].depends_on_json = ps->depends_on_json;
    }
    ci->t.steps = ci->step_inits;
    ci->t.n_steps = plan->n_steps;
}

durable_code engine_child_item(struct durable *d, const char *workflow, const char *input_json,
                               const char *key, struct commit_item **out, durable_error *err)
{
    struct workflow_record wf;
    struct plan *plan = NULL;
    struct commit_item *ci;
    char *input = NULL;
    char run_id[ID_MAX];
    durable_code rc;

    memset(&wf, 0, sizeof(wf));
    rc = store_workflow_get(d->store, workflow, &wf, err);
    if (rc == DURABLE_OK)
        rc = engine_plan_get(d, wf.id, wf.definition, &plan, err);
    if (rc == DURABLE_OK)
        rc = merge_input(plan, input_json, &input, err);
    if (rc != DURABLE_OK)
        goto done;
    id_new("run_", run_id, sizeof(run_id));
    engine_run_lock(d, run_id);
    ci = commit_item_new(TR_RUN_CREATE, run_id);
    ci->t.workflow_id = commit_item_str(ci, wf.id);
    ci->t.input_json = commit_item_str(ci, input);
    ci->t.idempotency_key = commit_item_str(ci, key);
    if (plan->timeout_ms > 0)
        ci->t.deadline_ms = ci->t.at_ms + plan->timeout_ms;
    fill_step_inits(ci, plan);
    ci->plan = plan_ref(plan);
    *out = ci;
done:
    free(input);
    plan_unref(plan);
    workflow_record_release(&wf);
    return rc;
}

/* The TR_RUN_CREATE item of a start, its run id claimed (engine_run_lock)
 * and copied to run_id. OUT *out_ci (owned) on success. */
static durable_code start_item(durable *d, const durable_run_request *req, char run_id[ID_MAX],
                               struct commit_item **out_ci, durable_error *err)
{
    struct workflow_record wf;
    struct plan *plan = NULL;
    struct commit_item *ci = NULL;
    char *input = NULL;
    durable_code rc;

    memset(&wf, 0, sizeof(wf));
    if (!req || !req->workflow)
        return err_set(err, DURABLE_EINVAL, "a run needs a workflow");
    rc = store_workflow_get(d->store, req->workflow, &wf, err);
    if (rc != DURABLE_OK)
        goto done;
    rc = engine_plan_get(d, wf.id, wf.definition, &plan, err);
    if (rc != DURABLE_OK)
        goto done;
    rc = merge_input(plan, req->input_json, &input, err);
    if (rc != DURABLE_OK)
        goto done;
    if (req->priority < -DURABLE_PRIORITY_MAX || req->priority > DURABLE_PRIORITY_MAX) {
        rc = err_set(err, DURABLE_EINVAL, "priority must be an integer from %d to %d, got %d",
                     -DURABLE_PRIORITY_MAX, DURABLE_PRIORITY_MAX, req->priority);
        goto done;
    }
    if (req->create_order &&
        (req->order_id || !(req->order_amount >= 0) || req->order_amount > 1e12)) {
        rc = err_set(err, DURABLE_EINVAL,
                     req->order_id ? "a run cannot both create an order and name one"
                                   : "order amount must be a number from 0 to 1e12");
        goto done;
    }
    id_new("run_", run_id, ID_MAX);
    /* Claimed before it exists, so that no other process resuming it by
     * key can execute it beside us. */
    engine_run_lock(d, run_id);
    ci = commit_item_new(TR_RUN_CREATE, run_id);
    ci->t.workflow_id = commit_item_str(ci, wf.id);
    ci->t.input_json = commit_item_str(ci, input);
    if (req->create_order) {
        char order_id[ID_MAX];
        id_new("ord_", order_id, sizeof(order_id));
        ci->t.order_id = commit_item_str(ci, order_id);
        ci->t.order_amount = req->order_amount;
        ci->t.create_order = true;
    } else {
        ci->t.order_id = commit_item_str(ci, req->order_id);
        if (req->order_id)
            ci->t.order_amount = order_amount(d, req->order_id);
    }
    ci->t.idempotency_key = commit_item_str(ci, req->idempotency_key);
    ci->t.priority = req->priority;
    if (plan->timeout_ms > 0)
        ci->t.deadline_ms = ci->t.at_ms + plan->timeout_ms;
    fill_step_inits(ci, plan);
    ci->plan = plan_ref(plan);
    ci->notify_sched = true;
    *out_ci = ci;
done:
    free(input);
    plan_unref(plan);
    workflow_record_release(&wf);
    return rc;
}

/* ---- restart from a step ---- */

/* The edit distance of a and b (short ids), or a large number past 64
 * bytes. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65], i, j;

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* DURABLE_EINVAL naming the unknown step, with the closest step id when
 * it is close (at most a third of its length apart). */
static durable_code unknown_step(const struct plan *plan, const char *step, durable_error *err)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;

    for (size_t i = 0; i < plan->n_steps; i++) {
        size_t dist = edit_distance(step, plan->steps[i].id);
        if (dist < best_d) {
            best_d = dist;
            best = plan->steps[i].id;
        }
    }
    if (best && best_d <= (strlen(step) + 2) / 3) {
        return err_set(err, DURABLE_EINVAL,
                       "from_step: the workflow has no step \"%.64s\" (did you mean \"%s\"?)", step,
                       best);
    }
    return err_set(err, DURABLE_EINVAL, "from_step: the workflow has no step \"%.64s\"", step);
}

/* Marks step i and its dependents, transitively, in again[]. */
static void mark_again(const struct plan *plan, size_t i, bool *again)
{
    if (again[i])
        return;
    again[i] = true;
    for (size_t k = 0; k < plan->steps[i].n_dependents; k++)
        mark_again(plan, plan->steps[i].dependents[k], again);
}

/* The steps of rec kept by a restart (not in again[]): those completed or
 * skipped, in definition order, into ci->copies. */
static void restart_copies(struct commit_item *ci, const struct plan *plan,
                           const struct run_record *rec, const bool *again)
{
    size_t n = 0;

    ci->copies = xcalloc(plan->n_steps, sizeof(*ci->copies));
    for (size_t i = 0; i < plan->n_steps; i++) {
        const struct step_record *sr = NULL;
        for (size_t k = 0; k < rec->n_steps && !sr; k++) {
            if (strcmp(rec->steps[k].step_id, plan->steps[i].id) == 0)
                sr = &rec->steps[k];
        }
        if (again[i] || !sr || (sr->status != STEP_S_COMPLETED && sr->status != STEP_S_SKIPPED))
            continue;
        ci->copies[n].step_id = plan->steps[i].id;
        ci->copies[n].status = sr->status;
        ci->copies[n].attempt = sr->attempt;
        ci->copies[n].output_json = sr->status == STEP_S_COMPLETED
                                            ? xstrdup(sr->output_json ? sr->output_json : "null")
                                            : NULL;
        n++;
    }
    ci->t.copies = ci->copies;
    ci->t.n_copies = n;
}

/* The TR_RUN_CREATE item of a restart of rec from step `from` (checked),
 * its run id claimed and copied to run_id. */
static durable_code restart_item(durable *d, const struct run_record *rec, const char *from,
                                 char run_id[ID_MAX], struct commit_item **out_ci,
                                 durable_error *err)
{
    struct plan *plan = NULL;
    struct commit_item *ci;
    bool *again;
    long idx;
    durable_code rc = engine_plan_get(d, rec->workflow_id, rec->definition, &plan, err);

    if (rc != DURABLE_OK)
        return rc;
    if (plan->code_version > 0) {
        plan_unref(plan);
        return err_set(err, DURABLE_EUNSUPPORTED,
                       "run %s is a code-first run, which cannot be restarted from a step",
                       rec->id);
    }
    idx = plan_step_index(plan, from);
    if (idx < 0) {
        rc = unknown_step(plan, from, err);
        plan_unref(plan);
        return rc;
    }
    id_new("run_", run_id, ID_MAX);
    engine_run_lock(d, run_id);
    ci = commit_item_new(TR_RUN_CREATE, run_id);
    ci->t.workflow_id = commit_item_str(ci, rec->workflow_id);
    ci->t.input_json = commit_item_str(ci, rec->input_json ? rec->input_json : "{}");
    ci->t.order_id = commit_item_str(ci, rec->order_id);
    ci->t.order_amount = rec->order_amount;
    ci->t.restarted_from = commit_item_str(ci, rec->id);
    ci->t.restarted_step = plan->steps[idx].id;
    if (plan->timeout_ms > 0)
        ci->t.deadline_ms = ci->t.at_ms + plan->timeout_ms;
    fill_step_inits(ci, plan);
    again = xcalloc(plan->n_steps, sizeof(*again));
    mark_again(plan, (size_t)idx, again);
    restart_copies(ci, plan, rec, again);
    free(again);
    ci->plan = plan; /* the reference taken above */
    ci->notify_sched = true;
    *out_ci = ci;
    return DURABLE_OK;
}

durable_code durable_run_restart(durable *d, const char *run_id, const char *from_step,
                                 char **out_run_id, durable_error *err)
{
    struct transition_result res;
    struct run_record rec;
    struct commit_item *ci = NULL;
    char new_id[ID_MAX];
    durable_code rc;

    memset(&res, 0, sizeof(res));
    memset(&rec, 0, sizeof(rec));
    if (!run_id || !out_run_id)
        return err_set(err, DURABLE_EINVAL, "restart needs a run id");
    if (!from_step || !from_step[strspn(from_step, " \t\r\n")])
        return err_set(err, DURABLE_EINVAL, "from_step: the step to restart from is required");
    rc = store_run_load(d->store, run_id, &rec, err);
    if (rc == DURABLE_OK && !run_status_is_final(rec.status)) {
        rc = err_set(err, DURABLE_ECONFLICT,
                     "run %s is %s, only a finished run (completed, failed or cancelled) can be "
                     "restarted",
                     run_id, run_status_name(rec.status));
    }
    if (rc == DURABLE_OK)
        rc = restart_item(d, &rec, from_step, new_id, &ci, err);
    run_record_release(&rec);
    if (rc != DURABLE_OK)
        return rc;
    rc = engine_commit_wait(d, ci, &res, err);
    if (rc != DURABLE_OK) {
        engine_run_unlock(d, new_id);
        return rc;
    }
    *out_run_id = xstrdup(res.id);
    return DURABLE_OK;
}

/* After a start's item committed or failed (rc): the claim on the run id
 * is released unless the run was created, and a run that the idempotency
 * key returned is made sure to be executed (the scheduler claims it unless
 * another process executes it). Any thread. */
static void start_settled(durable *d, const char *run_id, durable_code rc,
                          const struct transition_result *res)
{
    if (rc != DURABLE_OK || !res->created)
        engine_run_unlock(d, run_id);
    if (rc == DURABLE_OK && !res->created)
        engine_sched_resume(d, res->id);
}

durable_code durable_run_start(durable *d, const durable_run_request *req, char **out_run_id,
                               bool *out_existed, durable_error *err)
{
    struct transition_result res;
    struct commit_item *ci = NULL;
    char run_id[ID_MAX];
    durable_code rc;

    memset(&res, 0, sizeof(res));
    if (!out_run_id)
        return err_set(err, DURABLE_EINVAL, "a run needs a workflow");
    rc = start_item(d, req, run_id, &ci, err);
    if (rc != DURABLE_OK)
        return rc;
    rc = engine_commit_wait(d, ci, &res, err);
    start_settled(d, run_id, rc, &res);
    if (rc != DURABLE_OK)
        return rc;
    *out_run_id = xstrdup(res.id);
    if (out_existed)
        *out_existed = !res.created;
    return DURABLE_OK;
}

durable_code engine_schedule_run_start(struct durable *d, const durable_run_request *r,
                                       const char *schedule_id, int64_t tick_ms,
                                       char out_run_id[ID_MAX], durable_error *err)
{
    char key[ID_MAX + 48];
    durable_run_request req = { .workflow = r->workflow, .input_json = r->input_json };
    struct transition_result res;
    struct commit_item *ci = NULL;
    char run_id[ID_MAX];
    durable_code rc;

    snprintf(key, sizeof(key), "schedule:%s:%lld", schedule_id, (long long)tick_ms);
    req.idempotency_key = key;
    memset(&res, 0, sizeof(res));
    rc = start_item(d, &req, run_id, &ci, err);
    if (rc != DURABLE_OK || !ci)
        return rc != DURABLE_OK ? rc
                                : err_set(err, DURABLE_EIO, "schedule %s: no run", schedule_id);
    ci->t.schedule_id = commit_item_str(ci, schedule_id);
    ci->t.tick_ms = tick_ms;
    rc = engine_commit_wait(d, ci, &res, err);
    start_settled(d, run_id, rc, &res);
    if (rc == DURABLE_OK)
        snprintf(out_run_id, ID_MAX, "%s", res.id);
    return rc;
}

/* An asynchronous start: the reply the writer completes, and whom to tell. */
struct start_async {
    struct commit_reply reply; /* first: on_done gets &reply */
    struct durable *d;
    char run_id[ID_MAX]; /* the id claimed for a new run */
    durable_run_started_fn fn;
    void *ud;
};

/* The reply's on_done: on the writer thread, after the commit. */
static void start_async_done(struct commit_reply *r)
{
    struct start_async *sa = (struct start_async *)r;
    durable_error err = { 0 };
    durable_run_started outcome = { .code = r->code, .err = &err };

    start_settled(sa->d, sa->run_id, r->code, &r->result);
    if (r->code == DURABLE_OK) {
        outcome.run_id = r->result.id;
        outcome.existed = !r->result.created;
    } else {
        err_set(&err, r->code, "%s", r->err.msg);
    }
    sa->fn(&outcome, sa->ud);
    free(sa);
}

durable_code durable_run_start_async(durable *d, const durable_run_request *req,
                                     durable_run_started_fn fn, void *ud, durable_error *err)
{
    struct start_async *sa = NULL;
    struct commit_item *ci = NULL;
    char run_id[ID_MAX];
    durable_code rc;

    if (!fn)
        return err_set(err, DURABLE_EINVAL, "an asynchronous start needs a callback");
    rc = start_item(d, req, run_id, &ci, err);
    if (rc != DURABLE_OK)
        return rc;
    sa = xcalloc(1, sizeof(*sa));
    sa->reply.on_done = start_async_done;
    sa->d = d;
    memcpy(sa->run_id, run_id, ID_MAX);
    sa->fn = fn;
    sa->ud = ud;
    rc = engine_commit_async(d, ci, &sa->reply);
    if (rc != DURABLE_OK) {
        engine_run_unlock(d, run_id);
        free(sa);
        return err_set(err, rc, "the engine is shutting down");
    }
    return DURABLE_OK;
}

durable_code durable_run_find(durable *d, const char *workflow, const char *idempotency_key,
                              char **out_run_id, durable_error *err)
{
    struct workflow_record wf;
    char run_id[ID_MAX];
    bool found = false;
    durable_code rc;

    memset(&wf, 0, sizeof(wf));
    rc = store_workflow_get(d->store, workflow, &wf, err);
    if (rc == DURABLE_OK)
        rc = store_run_find_by_key(d->store, wf.id, idempotency_key, run_id, &found, err);
    if (rc == DURABLE_OK && !found)
        rc = err_set(err, DURABLE_ENOTFOUND, "no run with idempotency key \"%s\"", idempotency_key);
    if (rc == DURABLE_OK)
        *out_run_id = xstrdup(run_id);
    workflow_record_release(&wf);
    return rc;
}

/* JSON text in one canonical form (compact, keys sorted), or NULL when it
 * is not JSON. Caller frees. */
static char *canonical_json(const char *text)
{
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    char *out = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;

    json_decref(j);
    return out;
}

durable_code durable_run_compare(durable *d, const durable_run_request *req, const char *run_id,
                                 durable_run_reuse *out, durable_error *err)
{
    struct workflow_record wf, run_wf;
    struct run_record run;
    struct plan *plan = NULL;
    char *input = NULL, *asked = NULL, *had = NULL;
    durable_code rc;

    memset(&wf, 0, sizeof(wf));
    memset(&run_wf, 0, sizeof(run_wf));
    memset(&run, 0, sizeof(run));
    if (!req || !req->workflow || !run_id || !out)
        return err_set(err, DURABLE_EINVAL, "a comparison needs a request, a run and an answer");
    rc = store_workflow_get(d->store, req->workflow, &wf, err);
    if (rc == DURABLE_OK)
        rc = engine_plan_get(d, wf.id, wf.definition, &plan, err);
    if (rc == DURABLE_OK)
        rc = merge_input(plan, req->input_json, &input, err);
    if (rc == DURABLE_OK)
        rc = store_run_load(d->store, run_id, &run, err);
    if (rc == DURABLE_OK)
        rc = store_workflow_get(d->store, run.workflow_id, &run_wf, err);
    if (rc == DURABLE_OK) {
        asked = canonical_json(input);
        had = canonical_json(run.input_json);
        out->run_version = run_wf.version;
        out->requested_version = wf.version;
        out->input_differs = !asked || !had || strcmp(asked, had) != 0;
    }
    free(asked);
    free(had);
    free(input);
    plan_unref(plan);
    run_record_release(&run);
    workflow_record_release(&run_wf);
    workflow_record_release(&wf);
    return rc;
}

bool durable_run_elsewhere(durable *d, const char *run_id)
{
    return engine_run_locked_elsewhere(d, run_id);
}

durable_code durable_run_cancel(durable *d, const char *run_id, durable_error *err)
{
    struct commit_item *ci;
    enum run_status status = RUN_PENDING;
    durable_code rc;

    rc = store_run_status(d->store, run_id, &status, err);
    if (rc != DURABLE_OK)
        return rc;
    if (run_status_is_final(status)) {
        return err_set(err, DURABLE_ECONFLICT, "run %s has already %s", run_id,
                       run_status_name(status));
    }
    ci = commit_item_cancel(run_id);
    rc = engine_commit_wait(d, ci, NULL, err);
    if (rc == DURABLE_ECONFLICT) {
        err_clear(err);
        rc = err_set(err, DURABLE_ECONFLICT, "run %s has already finished", run_id);
    }
    return rc;
}

durable_code durable_run_retry(durable *d, const char *run_id, durable_error *err)
{
    struct run_record rec;
    struct plan *plan = NULL;
    struct commit_item *ci;
    durable_code rc;

    memset(&rec, 0, sizeof(rec));
    if (!run_id)
        return err_set(err, DURABLE_EINVAL, "retry needs a run id");
    rc = store_run_load(d->store, run_id, &rec, err);
    if (rc == DURABLE_OK && rec.status != RUN_FAILED) {
        rc = err_set(err, DURABLE_ECONFLICT, "run %s is %s, only a failed run can be retried",
                     run_id, run_status_name(rec.status));
    }
    if (rc == DURABLE_OK)
        rc = engine_plan_get(d, rec.workflow_id, rec.definition, &plan, err);
    if (rc != DURABLE_OK)
        goto done;
    /* The store checks the status again: another retry may have won. */
    ci = commit_item_new(TR_RUN_RETRY, run_id);
    if (plan->timeout_ms > 0)
        ci->t.deadline_ms = ci->t.at_ms + plan->timeout_ms;
    rc = engine_commit_wait(d, ci, NULL, err);
    if (rc == DURABLE_OK)
        engine_sched_retry(d, run_id);
done:
    plan_unref(plan);
    run_record_release(&rec);
    return rc;
}

/* A caller's pause (or resume) of run_id. The store checks the status again
 * when it applies it: another caller may have come first. */
static durable_code run_pause(durable *d, const char *run_id, bool pause, durable_error *err)
{
    struct run_record rec;
    struct plan *plan = NULL;
    struct commit_item *ci;
    durable_code rc;

    memset(&rec, 0, sizeof(rec));
    if (!run_id)
        return err_set(err, DURABLE_EINVAL, "%s needs a run id", pause ? "pause" : "resume");
    rc = store_run_load(d->store, run_id, &rec, err);
    if (rc == DURABLE_OK && pause &&
        (run_status_is_final(rec.status) || rec.status == RUN_PAUSED)) {
        rc = err_set(err, DURABLE_ECONFLICT, "run %s is %s, only an unfinished run can be paused",
                     run_id, run_status_name(rec.status));
    }
    if (rc == DURABLE_OK && !pause && rec.status != RUN_PAUSED) {
        rc = err_set(err, DURABLE_ECONFLICT, "run %s is %s, only a paused run can be resumed",
                     run_id, run_status_name(rec.status));
    }
    if (rc == DURABLE_OK && pause)
        rc = engine_plan_get(d, rec.workflow_id, rec.definition, &plan, err);
    if (rc == DURABLE_OK && plan && plan->code_version > 0) {
        rc = err_set(err, DURABLE_EUNSUPPORTED,
                     "run %s is a code-first run, which cannot be paused", run_id);
    }
    if (rc == DURABLE_OK) {
        ci = commit_item_new(pause ? TR_RUN_PAUSE : TR_RUN_RESUME, run_id);
        ci->notify_sched = true;
        rc = engine_commit_wait(d, ci, NULL, err);
    }
    plan_unref(plan);
    run_record_release(&rec);
    return rc;
}

durable_code durable_run_pause(durable *d, const char *run_id, durable_error *err)
{
    return run_pause(d, run_id, true, err);
}

durable_code durable_run_resume(durable *d, const char *run_id, durable_error *err)
{
    return run_pause(d, run_id, false, err);
}

/* s cut at max_len bytes on a character boundary, as a JSON string (new
 * reference); JSON null for NULL; NULL when s is not UTF-8. */
static json_t *cut_string(const char *s, size_t max_len)
{
    size_t n;

    if (!s)
        return json_null();
    n = strnlen(s, max_len + 1);
    if (n > max_len) {
        n = max_len;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    return json_stringn(s, n);
}

static bool utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    bool ok = j != NULL;

    json_decref(j);
    return ok;
}

/* NOLINTNEXTLINE(readability-function-size): the public signature (durable.h) */
durable_code durable_step_decide(durable *d, const char *run_id, const char *step_id, bool approve,
                                 const char *by, const char *comment, durable_error *err)
{
    struct commit_item *ci;
    json_t *out;
    char at[32], *text;
    durable_code rc;

    if (!run_id || !step_id)
        return err_set(err, DURABLE_EINVAL, "a decision needs a run and a step");
    if ((by && !utf8_ok(by)) || (comment && !utf8_ok(comment)))
        return err_set(err, DURABLE_EINVAL, "by and comment must be UTF-8 text");
    ci = commit_item_new(TR_STEP_DECIDE, run_id);
    ci->t.step_id = commit_item_str(ci, step_id);
    ci->t.attempt = 0; /* the current one */
    clock_format_rfc3339(ci->t.at_ms, at);
    out = json_pack("{s:b, s:o?, s:o?, s:s}", "approved", approve, "by", cut_string(by, 200),
                    "comment", cut_string(comment, 4096), "at", at);
    text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!text) {
        commit_item_free(ci);
        return err_set(err, DURABLE_EINVAL, "by and comment must be UTF-8 text");
    }
    ci->t.output_json = commit_item_str(ci, text);
    free(text);
    /* The scheduler learns of it after the commit (run_gen 0: not its own). */
    ci->notify_sched = true;
    rc = engine_commit_wait(d, ci, NULL, err);
    return rc;
}

static void waiter_unlink(struct durable *d, struct run_waiter *w)
{
    struct run_waiter **p;

    pthread_mutex_lock(&d->finish_mu);
    for (p = &d->waiters; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&d->finish_mu);
}

/* Waits on w until its run finishes, deadline (monotonic ms) passes, or a
 * second goes by (another process may finish the run: read it again).
 * Whether its finish was published since the last call, with the status it
 * finished with in *out. */
static bool waiter_wait(struct durable *d, struct run_waiter *w, int64_t deadline,
                        enum run_status *out)
{
    bool finished;
    struct timespec ts;
    int64_t left = deadline - clock_mono_ms();

    if (left > 1000)
        left = 1000;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&d->finish_mu);
    while (!w->finished && left > 0) {
        if (pthread_cond_timedwait(&w->cond, &d->finish_mu, &ts) == ETIMEDOUT)
            break;
    }
    finished = w->finished;
    if (finished)
        *out = w->final;
    w->finished = false;
    pthread_mutex_unlock(&d->finish_mu);
    return finished;
}

durable_code durable_run_wait(durable *d, const char *run_id, int64_t timeout_ms,
                              const char **out_status, durable_error *err)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : clock_mono_ms() + timeout_ms;
    struct run_waiter w = { .run_id = run_id };
    enum run_status status = RUN_PENDING;
    durable_code rc;

    /* Listed before the first read, so that a finish committed between the
     * read and the wait still wakes it. */
    pthread_cond_init(&w.cond, NULL);
    pthread_mutex_lock(&d->finish_mu);
    w.next = d->waiters;
    d->waiters = &w;
    pthread_mutex_unlock(&d->finish_mu);
    for (bool published = false;;) {
        /* A finish published needs no read: it was committed. */
        if (!published) {
            rc = store_run_status(d->store, run_id, &status, err);
            if (rc != DURABLE_OK)
                break;
        }
        if (run_status_is_final(status)) {
            if (out_status)
                *out_status = run_status_name(status);
            break;
        }
        if (clock_mono_ms() >= deadline) {
            rc = err_set(err, DURABLE_ETIMEOUT, "run %s has not finished yet", run_id);
            break;
        }
        published = waiter_wait(d, &w, deadline, &status);
    }
    waiter_unlink(d, &w);
    pthread_cond_destroy(&w.cond);
    return rc;
}

durable_code durable_run_get(durable *d, const char *run_id, char **out_json, durable_error *err)
{
    return store_run_json(d->store, run_id, out_json, err);
}

durable_code durable_run_events(durable *d, const char *run_id, int64_t after_seq, char **out_json,
                                durable_error *err)
{
    return store_events_json(d->store, run_id, after_seq, out_json, err);
}

/* ---- lists and inspection (store reads) ---- */

void engine_run_query(struct store_run_query *q, const durable_run_filter *f)
{
    memset(q, 0, sizeof(*q));
    q->status = f->status;
    q->workflow = f->workflow_id;
    q->created_after_ms = f->created_after_ms;
    q->created_before_ms = f->created_before_ms;
    q->finished_after_ms = f->finished_after_ms;
    q->finished_before_ms = f->finished_before_ms;
    q->input_field = f->input_field;
    q->input_value = f->input_value;
}

durable_code durable_runs_list(durable *d, const durable_run_filter *filter, char **out_json,
                               int64_t *out_total, durable_error *err)
{
    static const durable_run_filter all = { 0 };
    struct store_run_query q;

    if (!out_json)
        return err_set(err, DURABLE_EINVAL, "a list needs an output");
    if (!filter)
        filter = &all;
    engine_run_query(&q, filter);
    q.page.limit = filter->limit;
    q.page.offset = filter->offset;
    return store_runs_list(d->store, &q, out_json, out_total, err);
}

durable_code durable_workflows_list(durable *d, int limit, int offset, char **out_json,
                                    int64_t *out_total, durable_error *err)
{
    struct store_page page = { limit, offset };

    if (!out_json)
        return err_set(err, DURABLE_EINVAL, "a list needs an output");
    return store_workflows_list(d->store, page, out_json, out_total, err);
}

durable_code durable_orders_list(durable *d, int limit, int offset, char **out_json,
                                 int64_t *out_total, durable_error *err)
{
    struct store_page page = { limit, offset };

    if (!out_json)
        return err_set(err, DURABLE_EINVAL, "a list needs an output");
    return store_orders_list(d->store, page, out_json, out_total, err);
}

durable_code durable_workflow_get(durable *d, const char *id_or_name, char **out_json,
                                  durable_error *err)
{
    if (!id_or_name || !out_json)
        return err_set(err, DURABLE_EINVAL, "a workflow needs an id or a name");
    return store_workflow_json(d->store, id_or_name, out_json, err);
}

durable_code durable_events_since(durable *d, int64_t after_id, int limit, char **out_json,
                                  durable_error *err)
{
    if (!out_json)
        return err_set(err, DURABLE_EINVAL, "events need an output");
    return store_events_since(d->store, after_id, limit, out_json, err);
}

durable_code durable_db_snapshot(durable *d, int rows_per_table, char **out_json,
                                 durable_error *err)
{
    if (!out_json)
        return err_set(err, DURABLE_EINVAL, "a snapshot needs an output");
    return store_snapshot_json(d->store, rows_per_table, out_json, err);
}

/* ---- subscriptions ---- */

int durable_subscribe(durable *d, durable_event_fn fn, void *ud)
{
    int id;

    pthread_mutex_lock(&d->subs_mu);
    d->subs = xrealloc(d->subs, (d->n_subs + 1) * sizeof(*d->subs));
    id = d->next_sub_id++;
    d->subs[d->n_subs].id = id;
    d->subs[d->n_subs].fn = fn;
    d->subs[d->n_subs].ud = ud;
    d->n_subs++;
    pthread_mutex_unlock(&d->subs_mu);
    return id;
}

void durable_unsubscribe(durable *d, int subscription_id)
{
    size_t i;

    pthread_mutex_lock(&d->subs_mu);
    for (i = 0; i < d->n_subs; i++) {
        if (d->subs[i].id == subscription_id) {
            memmove(&d->subs[i], &d->subs[i + 1], (d->n_subs - i - 1) * sizeof(*d->subs));
            d->n_subs--;
            break;
        }
    }
    pthread_mutex_unlock(&d->subs_mu);
}

/* ---- orders ---- */

durable_code durable_order_create(durable *d, double amount, char **out_order_id,
                                  durable_error *err)
{
    struct commit_item *ci;
    char id[ID_MAX];
    durable_code rc;

    if (!(amount >= 0) || amount > 1e12)
        return err_set(err, DURABLE_EINVAL, "order amount must be a number from 0 to 1e12");
    id_new("ord_", id, sizeof(id));
    ci = commit_item_new(TR_ORDER_CREATE, NULL);
    ci->t.order_id = commit_item_str(ci, id);
    ci->t.order_amount = amount;
    rc = engine_commit_wait(d, ci, NULL, err);
    if (rc == DURABLE_OK && out_order_id)
        *out_order_id = xstrdup(id);
    return rc;
}

durable_code durable_order_get(durable *d, const char *order_id, char **out_json,
                               durable_error *err)
{
    return store_order_json(d->store, order_id, out_json, err);
}

/* ---- execution logs (built from the history) ---- */

static const char *const log_level_names[] = { "debug", "info", "warning", "error" };

static int log_level_parse(const char *s)
{
    for (int i = 0; i < (int)DUR_ARRAY_LEN(log_level_names); i++) {
        if (strcmp(s, log_level_names[i]) == 0)
            return i;
    }
    return strcmp(s, "warn") == 0 ? DURABLE_LOG_WARN : -1;
}

/* The ids of the run's `log` steps, from the run's JSON, as an object
 * {id: true} (new reference). */
static json_t *log_steps_of(const char *run_json)
{
    json_t *run = json_loads(run_json, 0, NULL);
    json_t *ids = json_object(), *st;
    size_t i;

    json_array_foreach(json_object_get(run, "steps"), i, st)
    {
        const char *type = json_string_value(json_object_get(st, "type"));
        const char *id = json_string_value(json_object_get(st, "step_id"));
        if (id && type && strcmp(type, "log") == 0)
            json_object_set_new(ids, id, json_true());
    }
    json_decref(run);
    return ids;
}

/* A step event's line: its level and message (owned). */
static int step_event_line(const char *type, json_t *data, char **msg)
{
    int attempt = (int)json_integer_value(json_object_get(data, "attempt"));
    const char *error = json_string_value(json_object_get(data, "error")) ?: "";
    const char *code = json_string_value(json_object_get(data, "code")) ?: "";

    if (strcmp(type, "step_started") == 0) {
        *msg = xasprintf("attempt %d started", attempt);
        return DURABLE_LOG_DEBUG;
    }
    if (strcmp(type, "step_completed") == 0) {
        *msg = xasprintf("completed (attempt %d)", attempt);
        return DURABLE_LOG_DEBUG;
    }
    if (strcmp(type, "step_failed") == 0 && json_is_true(json_object_get(data, "final"))) {
        *msg = xasprintf("failed for good at attempt %d: %s (%s)", attempt, error, code);
        return DURABLE_LOG_ERROR;
    }
    if (strcmp(type, "step_failed") == 0) {
        *msg = xasprintf("attempt %d failed: %s (%s)", attempt, error, code);
        return DURABLE_LOG_WARN;
    }
    if (strcmp(type, "retry_scheduled") == 0) {
        *msg = xasprintf("retrying: attempt %d in %.1fs", attempt,
                         (double)json_integer_value(json_object_get(data, "delay_ms")) / 1000.0);
        return DURABLE_LOG_WARN;
    }
    if (strcmp(type, "step_skipped") == 0) {
        *msg = xstrdup("skipped");
        return DURABLE_LOG_DEBUG;
    }
    return -1;
}

static int waiting_line(json_t *data, char **msg)
{
    const char *wf = json_string_value(json_object_get(data, "waiting_for"));
    const char *until = json_string_value(json_object_get(data, "wake_at"));
    const char *signal = json_string_value(json_object_get(data, "signal"));

    if (signal)
        *msg = xasprintf("waiting for signal %s", signal);
    else
        *msg = wf ? xasprintf("waiting for %s", wf)
                  : xasprintf("waiting until %s", until ? until : "woken");
    return DURABLE_LOG_INFO;
}

static int signal_line(json_t *data, char **msg)
{
    const char *name = json_string_value(json_object_get(data, "name"));

    *msg = xasprintf("signal %s received", name ? name : "?");
    return DURABLE_LOG_INFO;
}

/* The line of any other event: its level and message (owned). */
static int other_event_line(const char *type, json_t *data, char **msg)
{
    const char *error = json_string_value(json_object_get(data, "error"));
    json_t *by = json_object_get(data, "by");

    if (strcmp(type, "step_waiting") == 0)
        return waiting_line(data, msg);
    if (strcmp(type, "signal_received") == 0)
        return signal_line(data, msg);
    if (strcmp(type, "approval_decided") == 0) {
        *msg = xasprintf("%s by %s",
                         json_is_true(json_object_get(data, "approved")) ? "approved" : "rejected",
                         json_is_string(by) ? json_string_value(by) : "someone");
        return DURABLE_LOG_INFO;
    }
    if (strcmp(type, "action_applied") == 0) {
        *msg = xasprintf("action %s: order %s %s -> %s",
                         json_string_value(json_object_get(data, "action")) ?: "?",
                         json_string_value(json_object_get(data, "order_id")) ?: "?",
                         json_string_value(json_object_get(data, "from")) ?: "?",
                         json_string_value(json_object_get(data, "to")) ?: "?");
        return DURABLE_LOG_INFO;
    }
    if (strcmp(type, "run_failed") == 0) {
        *msg = xasprintf("run failed: %s", error ? error : "(no reason given)");
        return DURABLE_LOG_ERROR;
    }
    if (strcmp(type, "run_cancelled") == 0) {
        *msg = xstrdup("run cancelled");
        return DURABLE_LOG_WARN;
    }
    if (strncmp(type, "run_", 4) == 0 || strcmp(type, "recovered") == 0) {
        *msg = strcmp(type, "recovered") == 0 ? xstrdup("run recovered after a restart")
                                              : xasprintf("run %s", type + 4);
        return DURABLE_LOG_INFO;
    }
    *msg = xstrdup(type);
    return DURABLE_LOG_DEBUG;
}

/* The log line of one event (new reference), or NULL when it is below
 * min_level. */
static json_t *event_log_line(json_t *ev, json_t *log_steps, int min_level)
{
    const char *type = json_string_value(json_object_get(ev, "type")) ?: "";
    json_t *step = json_object_get(ev, "step_id");
    json_t *data = json_object_get(ev, "data");
    json_t *out = json_object_get(data, "output");
    json_t *line;
    char *msg = NULL;
    int level;

    if (strcmp(type, "step_completed") == 0 && json_is_string(step) &&
        json_object_get(log_steps, json_string_value(step)) &&
        json_is_string(json_object_get(out, "message"))) {
        const char *lv = json_string_value(json_object_get(out, "level"));
        level = lv ? log_level_parse(lv) : -1;
        if (level < 0)
            level = DURABLE_LOG_INFO;
        msg = xstrdup(json_string_value(json_object_get(out, "message")));
    } else {
        level = step_event_line(type, data, &msg);
        if (level < 0)
            level = other_event_line(type, data, &msg);
    }
    if (level < min_level) {
        free(msg);
        return NULL;
    }
    line = json_pack("{s:O, s:O, s:s, s:O, s:s%}", "seq", json_object_get(ev, "seq"), "at",
                     json_object_get(ev, "at"), "level", log_level_names[level], "step_id",
                     step ? step : json_null(), "message", msg, strlen(msg));
    free(msg);
    return line;
}

/* The page of lines of events (a JSON array, borrowed). */
static char *logs_page(json_t *events, json_t *log_steps, int min_level, int limit,
                       int64_t after_seq)
{
    json_t *lines = json_array(), *ev, *line, *doc;
    json_int_t next_after = after_seq;
    size_t i;
    char *text;

    json_array_foreach(events, i, ev)
    {
        if ((int)json_array_size(lines) >= limit)
            break;
        next_after = json_integer_value(json_object_get(ev, "seq"));
        line = event_log_line(ev, log_steps, min_level);
        if (line)
            json_array_append_new(lines, line);
    }
    doc = json_pack("{s:o, s:I}", "logs", lines, "next_after", next_after);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

durable_code durable_run_logs(durable *d, const char *run_id, const durable_log_filter *filter,
                              char **out_json, durable_error *err)
{
    static const durable_log_filter all = { 0 };
    char *run_json = NULL, *events_json = NULL;
    json_t *events = NULL, *log_steps = NULL;
    int min_level = DURABLE_LOG_DEBUG, limit;
    int64_t after_seq;
    durable_code rc;

    if (!filter)
        filter = &all;
    limit = filter->limit <= 0 ? 100 : filter->limit > 1000 ? 1000 : filter->limit;
    if (filter->level)
        min_level = log_level_parse(filter->level);
    if (min_level < 0)
        return err_set(err, DURABLE_EINVAL,
                       "unknown level \"%.40s\" (expected debug, info, warning or error)",
                       filter->level);
    after_seq = filter->after_seq < 0 ? 0 : filter->after_seq;
    rc = durable_run_get(d, run_id, &run_json, err);
    if (rc == DURABLE_OK)
        rc = durable_run_events(d, run_id, after_seq, &events_json, err);
    if (rc != DURABLE_OK)
        goto done;
    events = json_loads(events_json, 0, NULL);
    log_steps = log_steps_of(run_json);
    *out_json = logs_page(events, log_steps, min_level, limit, after_seq);
done:
    json_decref(log_steps);
    json_decref(events);
    durable_free(events_json);
    durable_free(run_json);
    return rc;
}
