/*
 * metrics.c - what the engine tells about itself: Prometheus metrics and
 * health.
 *
 * Counts of runs and steps by status come from the database at each scrape
 * (GROUP BY on the read connection), so they are true across restarts and
 * other processes. The histograms and counters are this process's since it
 * opened the store: the writer observes each commit's batch size, the
 * scheduler each step attempt's time from its START commit to its result.
 * Histograms take their own leaf mutex; counters are relaxed atomics.
 */
#include "util/common.h"

#include "engine/engine.h"

#include <string.h>

#define METRICS_MAX_BYTES ((size_t)64 * 1024)

/* Step latency: 1 ms to 1 min. */
static const double step_seconds_bounds[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5,   1,     2.5,  5,     10,   30,  60 };
/* Transitions per commit: powers of two up to the writer's largest batch. */
static const double batch_size_bounds[] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096
};

_Static_assert(DUR_ARRAY_LEN(step_seconds_bounds) <= HIST_MAX_BOUNDS, "too many buckets");
_Static_assert(DUR_ARRAY_LEN(batch_size_bounds) <= HIST_MAX_BOUNDS, "too many buckets");

/* ---- histograms ---- */

void engine_hist_init(struct engine_hist *h, const double *bounds, size_t n_bounds)
{
    DUR_ASSERT(n_bounds <= HIST_MAX_BOUNDS);
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    h->bounds = bounds;
    h->n_bounds = n_bounds;
}

void engine_hist_release(struct engine_hist *h)
{
    pthread_mutex_destroy(&h->mu);
}

void engine_hist_observe(struct engine_hist *h, double value)
{
    size_t i = 0;

    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    pthread_mutex_lock(&h->mu);
    h->counts[i]++;
    h->sum += value;
    pthread_mutex_unlock(&h->mu);
}

/* Appends the histogram in the exposition format; cumulative buckets, and a
 * count equal to the +Inf bucket by construction. */
static durable_code hist_write(struct engine_hist *h, const char *name, const char *help,
                               struct dbuf *b)
{
    uint64_t counts[HIST_MAX_BOUNDS + 1];
    uint64_t cumulative = 0;
    double sum;
    size_t i;
    durable_code rc;

    pthread_mutex_lock(&h->mu);
    memcpy(counts, h->counts, sizeof(counts));
    sum = h->sum;
    pthread_mutex_unlock(&h->mu);
    rc = dbuf_addf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (i = 0; rc == DURABLE_OK && i < h->n_bounds; i++) {
        cumulative += counts[i];
        rc = dbuf_addf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                       (unsigned long long)cumulative);
    }
    cumulative += counts[h->n_bounds];
    if (rc == DURABLE_OK) {
        rc = dbuf_addf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name,
                       (unsigned long long)cumulative, name, sum, name,
                       (unsigned long long)cumulative);
    }
    return rc;
}

void engine_metrics_init(struct durable *d)
{
    engine_hist_init(&d->batch_size, batch_size_bounds, DUR_ARRAY_LEN(batch_size_bounds));
    engine_hist_init(&d->step_seconds, step_seconds_bounds, DUR_ARRAY_LEN(step_seconds_bounds));
    pthread_mutex_init(&d->health_mu, NULL);
}

void engine_metrics_release(struct durable *d)
{
    pthread_mutex_destroy(&d->health_mu);
    engine_hist_release(&d->step_seconds);
    engine_hist_release(&d->batch_size);
}

/* ---- metrics ---- */

static durable_code gauge_write(const char *name, const char *help, const char *const *labels,
                                const int64_t *values, size_t n, struct dbuf *b)
{
    durable_code rc = dbuf_addf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);

    for (size_t i = 0; rc == DURABLE_OK && i < n; i++)
        rc = dbuf_addf(b, "%s{status=\"%s\"} %lld\n", name, labels[i], (long long)values[i]);
    return rc;
}

static durable_code counter_write(const char *name, const char *help, uint64_t value,
                                  struct dbuf *b)
{
    return dbuf_addf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                     (unsigned long long)value);
}

static durable_code metrics_write(struct durable *d, const int64_t *runs, const int64_t *steps,
                                  struct dbuf *b)
{
    durable_code rc;

    rc = gauge_write("durable_runs", "Runs in the database by status.", store_run_statuses, runs,
                     STORE_N_RUN_STATUSES, b);
    if (rc == DURABLE_OK) {
        rc = gauge_write("durable_steps", "Steps in the database by status.", store_step_statuses,
                         steps, STORE_N_STEP_STATUSES, b);
    }
    if (rc == DURABLE_OK) {
        rc = hist_write(&d->step_seconds, "durable_step_duration_seconds",
                        "Time from a step attempt's start commit to its result.", b);
    }
    if (rc == DURABLE_OK) {
        rc = hist_write(&d->batch_size, "durable_commit_batch_size",
                        "Transitions committed per transaction (group commit).", b);
    }
    if (rc == DURABLE_OK) {
        rc = counter_write("durable_commits_total", "Transactions committed by the writer.",
                           atomic_load_explicit(&d->n_commits, memory_order_relaxed), b);
    }
    if (rc == DURABLE_OK) {
        rc = counter_write("durable_transitions_total",
                           "State transitions committed (refused ones are not counted).",
                           atomic_load_explicit(&d->n_transitions, memory_order_relaxed), b);
    }
    return rc;
}

durable_code durable_metrics(durable *d, char **out_text, durable_error *err)
{
    int64_t runs[STORE_N_RUN_STATUSES];
    int64_t steps[STORE_N_STEP_STATUSES];
    struct dbuf b;
    durable_code rc;

    if (!d || !out_text)
        return err_set(err, DURABLE_EINVAL, "metrics need an engine and an output");
    dbuf_init(&b, METRICS_MAX_BYTES);
    rc = store_count_runs(d->store, runs, err);
    if (rc == DURABLE_OK)
        rc = store_count_steps(d->store, steps, err);
    if (rc == DURABLE_OK) {
        rc = metrics_write(d, runs, steps, &b);
        if (rc != DURABLE_OK)
            err_set(err, rc, "the metrics text is over %zu bytes", METRICS_MAX_BYTES);
    }
    if (rc == DURABLE_OK)
        *out_text = dbuf_detach(&b, NULL);
    dbuf_release(&b);
    return rc;
}

/* ---- health ---- */

void engine_health_set_writer_error(struct durable *d, const char *why)
{
    pthread_mutex_lock(&d->health_mu);
    snprintf(d->writer_error, sizeof(d->writer_error), "%s", why ? why : "");
    pthread_mutex_unlock(&d->health_mu);
    atomic_store(&d->store_failed, why != NULL);
}

durable_code durable_health(durable *d, durable_error *err)
{
    char why[sizeof(d->writer_error)];
    durable_code rc;

    if (!d)
        return err_set(err, DURABLE_EINVAL, "health needs an engine");
    rc = store_ping(d->store, err);
    if (rc != DURABLE_OK)
        return rc;
    if (!atomic_load(&d->store_failed))
        return DURABLE_OK;
    pthread_mutex_lock(&d->health_mu);
    snprintf(why, sizeof(why), "%s", d->writer_error);
    pthread_mutex_unlock(&d->health_mu);
    return err_set(err, DURABLE_EIO, "%s",
                   why[0] ? why : "the database cannot be written: a batch could not be committed");
}
