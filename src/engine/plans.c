/*
 * plans.c - the plan cache: a workflow id to its parsed plan, shared
 * read-only by reference count. Entries are only added, never replaced;
 * durable_close frees them all.
 *
 * Any thread: the cache is guarded by plans_mu, which is held only around
 * the lookup or the append, never while a definition is parsed.
 */
#include "util/common.h"

#include "engine/engine.h"

#include <string.h>

static struct plan *plan_cache_find(struct durable *d, const char *workflow_id)
{
    struct plan *p = NULL;
    size_t i;

    pthread_mutex_lock(&d->plans_mu);
    for (i = 0; i < d->n_plans && !p; i++) {
        if (strcmp(d->plans[i].workflow_id, workflow_id) == 0)
            p = plan_ref(d->plans[i].plan);
    }
    pthread_mutex_unlock(&d->plans_mu);
    return p;
}

void engine_plan_cache_add(struct durable *d, const char *workflow_id, struct plan *p)
{
    pthread_mutex_lock(&d->plans_mu);
    d->plans = xrealloc(d->plans, (d->n_plans + 1) * sizeof(*d->plans));
    snprintf(d->plans[d->n_plans].workflow_id, ID_MAX, "%s", workflow_id);
    d->plans[d->n_plans].plan = plan_ref(p);
    d->n_plans++;
    pthread_mutex_unlock(&d->plans_mu);
}

bool engine_plan_cache_has(struct durable *d, const char *workflow_id)
{
    struct plan *p = plan_cache_find(d, workflow_id);

    plan_unref(p);
    return p != NULL;
}

durable_code engine_plan_get(struct durable *d, const char *workflow_id, const char *definition,
                             struct plan **out, durable_error *err)
{
    struct plan *p = plan_cache_find(d, workflow_id);
    struct def_options opts;
    durable_code rc;

    if (p) {
        *out = p;
        return DURABLE_OK;
    }
    rc = def_parse(definition, strlen(definition), engine_def_options(d, &opts), &p, NULL, err);
    if (rc != DURABLE_OK)
        return rc;
    /* Two threads may parse the same definition at once: both entries are
     * equal, the first one found wins. */
    engine_plan_cache_add(d, workflow_id, p);
    *out = p;
    return DURABLE_OK;
}
