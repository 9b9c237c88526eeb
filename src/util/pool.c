/*
 * pool.c - worker threads made on demand (pool.h).
 */
#include "util/common.h"

#include "util/pool.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

void pool_init(struct pool *p, const char *thread_name, size_t max_threads)
{
    memset(p, 0, sizeof(*p));
    p->thread_name = thread_name;
    p->max_threads = max_threads > 0 ? max_threads : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->threads = xcalloc(p->max_threads, sizeof(pthread_t));
}

static void *worker_main(void *arg)
{
    struct pool *p = arg;
    struct pool_job *job;

    pthread_setname_np(pthread_self(), p->thread_name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->is_stopping) {
            p->n_idle++;
            pthread_cond_wait(&p->cond, &p->mu);
            p->n_idle--;
        }
        job = p->head;
        if (!job)
            break; /* stopping, and nothing left */
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->n_queued--;
        pthread_mutex_unlock(&p->mu);
        job->run(job);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

bool pool_submit(struct pool *p, struct pool_job *job)
{
    bool is_queued;

    pthread_mutex_lock(&p->mu);
    DUR_ASSERT(!p->is_stopping);
    if (p->n_queued >= p->n_idle && p->n_threads < p->max_threads &&
        pthread_create(&p->threads[p->n_threads], NULL, worker_main, p) == 0)
        p->n_threads++;
    is_queued = p->n_threads > 0;
    if (is_queued) {
        job->next = NULL;
        if (p->tail)
            p->tail->next = job;
        else
            p->head = job;
        p->tail = job;
        p->n_queued++;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
    return is_queued;
}

void pool_stop(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->is_stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    p->threads = NULL;
    p->n_threads = 0;
}
