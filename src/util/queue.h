/*
 * queue.h - the one FIFO that threads pass work on: a mutex, a condition
 * variable on CLOCK_MONOTONIC and an intrusive singly linked list.
 *
 * The queue owns no memory: a producer links its own item (a struct
 * queue_node is the item's first member) and, once queue_push returns true,
 * the item belongs to the consumer. The consumer takes the whole list at
 * once (queue_take: one lock per batch, which is what gives the writer its
 * group commit), in FIFO order, with the last node's next NULL.
 *
 * An item type that links its items by a typed pointer declares its first
 * member with QUEUE_LINK(type): the queue's node and the item's `next` are
 * then one field, so a list taken from the queue is walked as items, and a
 * list of items built by the user can be pushed as it is.
 *
 * Threads: any thread pushes, closes and asks queue_is_closed; one consumer
 * takes (several would each get part of the stream). Every field is guarded
 * by mu, a leaf lock held for a few pointer moves, never across a wait on
 * anything but the queue's own condition variable.
 */
#ifndef DURABLE_UTIL_QUEUE_H
#define DURABLE_UTIL_QUEUE_H

#include "util/common.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct queue_node {
    struct queue_node *next;
};

/* The first member of an item of type `type`, as `node` for the queue and
 * as `next` for the item's own lists. Pointers to structures share one
 * representation (C11 6.2.5), so both names read the same link. */
#define QUEUE_LINK(type)        \
    union {                     \
        struct queue_node node; \
        type *next;             \
    }

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cond;     /* CLOCK_MONOTONIC */
    struct queue_node *head; /* guarded by mu */
    struct queue_node *tail; /* guarded by mu */
    bool is_closed;          /* guarded by mu */
};

#define QUEUE_FOREVER (-1) /* queue_take's timeout_ms: wait without a limit */

void queue_init(struct queue *q);
/* Destroys the mutex and condition variable. The queue must have been
 * drained (queue_take after queue_close): nodes still queued are not freed. */
void queue_release(struct queue *q);

/* Appends the list first..last (linked by next; last->next is set to NULL)
 * and wakes the consumer. False once the queue is closed: nothing was
 * queued and the list is still the caller's to free. */
bool queue_push_list(struct queue *q, struct queue_node *first, struct queue_node *last);
/* queue_push_list of one node. */
bool queue_push(struct queue *q, struct queue_node *n);

/* Takes every queued node: the list in FIFO order (last->next NULL), now the
 * caller's. While the queue is empty and open it waits, up to timeout_ms
 * milliseconds (0: not at all, QUEUE_FOREVER: without a limit). NULL when
 * the wait ended with nothing queued: timeout, or the queue is closed and
 * drained (after queue_close every node pushed before it is still taken). */
struct queue_node *queue_take(struct queue *q, int64_t timeout_ms);

/* Refuses every later push and wakes the consumer. Idempotent. */
void queue_close(struct queue *q);
bool queue_is_closed(struct queue *q);

#endif
