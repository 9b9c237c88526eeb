/*
 * def_plan.c - what a plan is once parsed: its lifetime (an atomic
 * reference count; plans are immutable and shared between threads), lookups,
 * and retry back-off arithmetic. (durable_validate(), the public entry to
 * validation, is in the engine's API file: it needs the built-in step
 * types, which this layer does not know.)
 *
 * plan_ref and plan_unref may be called from any thread; everything else
 * here only reads an immutable plan or builds a new one.
 */
#include "util/common.h"

#include "def/def.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "def/def_int.h"
#include "expr/expr.h"

int64_t def_seconds_to_ms(double s)
{
    int64_t ms = llround(s * 1000.0);

    return ms > 0 ? ms : 1;
}

/* ---- lifetime ---- */

struct plan *def_plan_alloc(size_t n_steps)
{
    struct plan *p = xcalloc(1, sizeof(*p));
    size_t i;

    atomic_init(&p->refs, 1);
    p->input = json_object();
    p->steps = xcalloc(n_steps, sizeof(*p->steps));
    p->n_steps = n_steps;
    for (i = 0; i < n_steps; i++) {
        struct plan_step *st = &p->steps[i];
        st->config = json_object();
        st->retry.max_attempts = 1;
        st->retry.initial_interval_s = 1.0;
        st->retry.backoff_coefficient = 2.0;
        st->retry.max_interval_s = 60.0;
    }
    return p;
}

void def_step_release(struct plan_step *st)
{
    size_t i;

    free(st->id);
    free(st->depends_on_json);
    free(st->name);
    free(st->type);
    json_decref(st->config);
    free(st->action);
    free(st->if_expr);
    expr_free(st->if_compiled);
    expr_free(st->expr);
    expr_config_free(st->templates);
    if (st->type_data && st->type_data_free)
        st->type_data_free(st->type_data);
    free(st->deps);
    free(st->dependents);
    for (i = 0; i < st->retry.n_non_retryable_errors; i++)
        free(st->retry.non_retryable_errors[i]);
    free(st->retry.non_retryable_errors);
}

struct plan *plan_ref(struct plan *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void plan_unref(struct plan *p)
{
    size_t i;

    if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (i = 0; i < p->n_steps; i++)
        def_step_release(&p->steps[i]);
    free(p->steps);
    free(p->topo);
    free(p->name);
    free(p->version);
    free(p->description);
    free(p->concurrency_key);
    expr_free(p->concurrency_key_compiled);
    json_decref(p->input);
    json_decref(p->definition);
    json_decref(p->step_index);
    free(p);
}

long plan_step_index(const struct plan *p, const char *id)
{
    json_t *v;

    if (!p || !id)
        return -1;
    v = json_object_get(p->step_index, id);
    return v ? (long)json_integer_value(v) : -1;
}

/* ---- retries ---- */

int64_t def_retry_delay_ms(const struct retry_policy *r, int next_attempt)
{
    const double limit_ms = 9007199254740992.0; /* 2^53: exact and far from INT64_MAX */
    double initial, coef, max, d, ms;

    if (!r || next_attempt < 2)
        return 0;
    initial = r->initial_interval_s;
    coef = r->backoff_coefficient >= 1 ? r->backoff_coefficient : 1;
    max = r->max_interval_s;
    if (!(initial > 0) || !(max > 0)) /* also NaN */
        return 0;
    /* The cap is decided before pow() can overflow. */
    if (initial >= max ||
        (coef > 1 && (double)(next_attempt - 2) >= log(max / initial) / log(coef))) {
        d = max;
    } else {
        d = initial * pow(coef, (double)(next_attempt - 2));
        d = d < max ? d : max;
    }
    ms = d * 1000.0;
    if (!(ms < limit_ms))
        return (int64_t)limit_ms;
    return llround(ms);
}
