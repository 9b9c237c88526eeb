/*
 * pool.h - a pool of worker threads that run jobs in FIFO order: made on
 * demand (a job queued while every thread is busy makes one, up to the
 * pool's size), named, living until pool_stop. The step types' blocking
 * calls (steps/pool.c) and code-first async steps (engine/code.c) run on
 * one each.
 *
 * The pool owns no memory: a job is the caller's structure with a struct
 * pool_job in it (container_of-style, via offsetof); once pool_submit has
 * queued it, the job belongs to the worker that runs it, and run() may free
 * it.
 *
 * Threads: any thread submits; pool_stop is called once, by the owner,
 * after the last submit. Every field is guarded by mu, a leaf lock never
 * held while a job runs.
 */
#ifndef DURABLE_UTIL_POOL_H
#define DURABLE_UTIL_POOL_H

#include "util/common.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct pool_job {
    struct pool_job *next; /* guarded by the pool's mu while queued */
    void (*run)(struct pool_job *job);
};

struct pool {
    const char *thread_name; /* static */
    size_t max_threads;
    pthread_mutex_t mu;
    pthread_cond_t cond;          /* a job queued, or stopping */
    struct pool_job *head, *tail; /* guarded by mu */
    size_t n_queued, n_idle;      /* guarded by mu */
    bool is_stopping;             /* guarded by mu */
    pthread_t *threads;           /* guarded by mu */
    size_t n_threads;             /* guarded by mu */
};

void pool_init(struct pool *p, const char *thread_name, size_t max_threads);
/* Queues job (its run() is then called once, on a pool thread). False when
 * the pool has no thread and none could be made: nothing was queued, and
 * the job is still the caller's. */
bool pool_submit(struct pool *p, struct pool_job *job);
/* Lets the threads run what is queued, then joins them; frees the pool's
 * own memory. No submit may follow. */
void pool_stop(struct pool *p);

#endif
