/*
 * test_pool.c - unit tests of util/pool.h: every job runs exactly once, on
 * at most max_threads threads at a time; a job blocked on a gate does not
 * stop the others while threads remain; pool_stop runs what is queued
 * before it returns; several submitting threads (run under TSan too).
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/pool.h"

#define N_JOBS 2000

struct counter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int running, peak, done;
    bool is_open; /* the gate of gated jobs */
};

struct job {
    struct pool_job pj; /* first */
    struct counter *k;
    int runs;
    bool is_gated;
};

static void job_run(struct pool_job *pj)
{
    struct job *j = (struct job *)(void *)pj;
    struct counter *k = j->k;
    struct timespec ts = { 0, 20000 };

    pthread_mutex_lock(&k->mu);
    j->runs++;
    if (++k->running > k->peak)
        k->peak = k->running;
    while (j->is_gated && !k->is_open)
        pthread_cond_wait(&k->cond, &k->mu);
    pthread_mutex_unlock(&k->mu);
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&k->mu);
    k->running--;
    k->done++;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->mu);
}

static void counter_init(struct counter *k)
{
    memset(k, 0, sizeof(*k));
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cond, NULL);
}

static void counter_wait(struct counter *k, int done)
{
    pthread_mutex_lock(&k->mu);
    while (k->done < done)
        pthread_cond_wait(&k->cond, &k->mu);
    pthread_mutex_unlock(&k->mu);
}

static void test_each_job_once_bounded(void **state)
{
    struct job *jobs = calloc(N_JOBS, sizeof(*jobs));
    struct counter k;
    struct pool p;

    (void)state;
    counter_init(&k);
    pool_init(&p, "test-pool", 4);
    for (int i = 0; i < N_JOBS; i++) {
        jobs[i].k = &k;
        jobs[i].pj.run = job_run;
        assert_true(pool_submit(&p, &jobs[i].pj));
    }
    /* Stopping right away: what is queued still runs before it returns. */
    pool_stop(&p);
    assert_int_equal(k.done, N_JOBS);
    for (int i = 0; i < N_JOBS; i++)
        assert_int_equal(jobs[i].runs, 1);
    assert_true(k.peak >= 1 && k.peak <= 4);
    free(jobs);
}

static void test_blocked_job_does_not_stop_others(void **state)
{
    struct job gated = { .is_gated = true }, others[10];
    struct counter k;
    struct pool p;

    (void)state;
    counter_init(&k);
    pool_init(&p, "test-pool", 2);
    gated.k = &k;
    gated.pj.run = job_run;
    assert_true(pool_submit(&p, &gated.pj));
    for (int i = 0; i < 10; i++) {
        others[i] = (struct job){ .k = &k, .pj.run = job_run };
        assert_true(pool_submit(&p, &others[i].pj));
    }
    counter_wait(&k, 10); /* the second thread runs the ten */
    assert_int_equal(gated.runs, 1);
    pthread_mutex_lock(&k.mu);
    assert_int_equal(k.done, 10);
    k.is_open = true;
    pthread_cond_broadcast(&k.cond);
    pthread_mutex_unlock(&k.mu);
    pool_stop(&p);
    assert_int_equal(k.done, 11);
}

struct submitter {
    struct pool *p;
    struct job *jobs;
    int n;
};

static void *submit_main(void *arg)
{
    struct submitter *s = arg;

    for (int i = 0; i < s->n; i++)
        assert_true(pool_submit(s->p, &s->jobs[i].pj));
    return NULL;
}

static void test_many_submitters(void **state)
{
    enum { N_SUB = 4, PER = 500 };
    struct job *jobs = calloc(N_SUB * PER, sizeof(*jobs));
    struct submitter subs[N_SUB];
    pthread_t ts[N_SUB];
    struct counter k;
    struct pool p;

    (void)state;
    counter_init(&k);
    pool_init(&p, "test-pool", 3);
    for (int i = 0; i < N_SUB * PER; i++)
        jobs[i] = (struct job){ .k = &k, .pj.run = job_run };
    for (int i = 0; i < N_SUB; i++) {
        subs[i] = (struct submitter){ &p, jobs + i * PER, PER };
        assert_int_equal(pthread_create(&ts[i], NULL, submit_main, &subs[i]), 0);
    }
    for (int i = 0; i < N_SUB; i++)
        assert_int_equal(pthread_join(ts[i], NULL), 0);
    counter_wait(&k, N_SUB * PER);
    pool_stop(&p);
    for (int i = 0; i < N_SUB * PER; i++)
        assert_int_equal(jobs[i].runs, 1);
    assert_true(k.peak <= 3);
    free(jobs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_job_once_bounded),
        cmocka_unit_test(test_blocked_job_does_not_stop_others),
        cmocka_unit_test(test_many_submitters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
