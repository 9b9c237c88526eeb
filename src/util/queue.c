/*
 * queue.c - the threads' FIFO (queue.h): push under the lock and signal
 * after it, take the whole list under the lock, close.
 *
 * The condition variable waits on CLOCK_MONOTONIC, so that a change of the
 * wall clock neither stretches nor cuts a timed take.
 */
#include "util/common.h"

#include "util/queue.h"

#include <errno.h>
#include <time.h>

void queue_init(struct queue *q)
{
    pthread_condattr_t ca;

    q->head = NULL;
    q->tail = NULL;
    q->is_closed = false;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
}

void queue_release(struct queue *q)
{
    DUR_DEBUG_ASSERT(!q->head);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->mu);
}

bool queue_push_list(struct queue *q, struct queue_node *first, struct queue_node *last)
{
    bool is_open;

    last->next = NULL;
    pthread_mutex_lock(&q->mu);
    is_open = !q->is_closed;
    if (is_open) {
        if (q->tail)
            q->tail->next = first;
        else
            q->head = first;
        q->tail = last;
    }
    pthread_mutex_unlock(&q->mu);
    /* After the unlock: a taker woken under the lock would wake only to
     * wait for it (two more futex calls per hand-over). */
    if (is_open)
        pthread_cond_signal(&q->cond);
    return is_open;
}

bool queue_push(struct queue *q, struct queue_node *n)
{
    return queue_push_list(q, n, n);
}

/* The monotonic time timeout_ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_after(int64_t timeout_ms)
{
    struct timespec ts;
    int64_t ns;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ns = ts.tv_nsec + (timeout_ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(timeout_ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

struct queue_node *queue_take(struct queue *q, int64_t timeout_ms)
{
    struct queue_node *list;
    struct timespec deadline = { 0 };

    if (timeout_ms > 0)
        deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->is_closed && timeout_ms != 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&q->cond, &q->mu);
        else if (pthread_cond_timedwait(&q->cond, &q->mu, &deadline) == ETIMEDOUT)
            break;
    }
    list = q->head;
    q->head = NULL;
    q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    return list;
}

void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->is_closed = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->mu);
}

bool queue_is_closed(struct queue *q)
{
    bool is_closed;

    pthread_mutex_lock(&q->mu);
    is_closed = q->is_closed;
    pthread_mutex_unlock(&q->mu);
    return is_closed;
}
