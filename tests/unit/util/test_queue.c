/*
 * test_queue.c - unit tests of util/queue.h: FIFO order of pushes and
 * pushed lists, a timed take that times out, close refusing pushes and
 * waking a waiting consumer, and several producer threads against one
 * consumer (run under TSan too).
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "util/queue.h"
#include "util/util.h"

struct item {
    QUEUE_LINK(struct item);
    int producer;
    int seq;
};

static void test_fifo_order(void **state)
{
    struct item items[5];
    struct queue q;
    struct item *it;
    int i;

    (void)state;
    queue_init(&q);
    for (i = 0; i < 5; i++)
        items[i].seq = i;
    assert_true(queue_push(&q, &items[0].node));
    /* A list built as items (the writer's chains) is pushed as it is. */
    items[1].next = &items[2];
    items[2].next = &items[3];
    assert_true(queue_push_list(&q, &items[1].node, &items[3].node));
    assert_true(queue_push(&q, &items[4].node));
    it = (struct item *)queue_take(&q, 0);
    for (i = 0; i < 5; i++, it = it->next) {
        assert_non_null(it);
        assert_int_equal(it->seq, i);
    }
    assert_null(it);
    assert_null(queue_take(&q, 0));
    queue_release(&q);
}

static void test_take_times_out(void **state)
{
    struct queue q;
    int64_t t0;

    (void)state;
    queue_init(&q);
    t0 = clock_mono_ms();
    assert_null(queue_take(&q, 50));
    assert_true(clock_mono_ms() - t0 >= 50);
    assert_null(queue_take(&q, 0));
    queue_release(&q);
}

static void *close_later(void *arg)
{
    struct timespec ts = { 0, 50 * 1000000 };

    nanosleep(&ts, NULL);
    queue_close(arg);
    return NULL;
}

static void test_close_refuses_and_wakes(void **state)
{
    struct item a = { .seq = 1 }, b = { .seq = 2 };
    struct queue q;
    pthread_t t;

    (void)state;
    queue_init(&q);
    assert_int_equal(pthread_create(&t, NULL, close_later, &q), 0);
    /* Without a limit: only the close can end this wait. */
    assert_null(queue_take(&q, QUEUE_FOREVER));
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(queue_is_closed(&q));
    assert_false(queue_push(&q, &a.node));
    queue_release(&q);

    /* What was pushed before the close is still taken after it. */
    queue_init(&q);
    assert_true(queue_push(&q, &a.node));
    queue_close(&q);
    assert_false(queue_push(&q, &b.node));
    assert_ptr_equal(queue_take(&q, QUEUE_FOREVER), &a.node);
    assert_null(queue_take(&q, QUEUE_FOREVER));
    queue_release(&q);
}

#define N_PRODUCERS    4
#define N_PER_PRODUCER 5000

struct producer {
    struct queue *q;
    int id;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    int i;

    for (i = 0; i < N_PER_PRODUCER; i++) {
        struct item *it = xcalloc(1, sizeof(*it));
        it->producer = p->id;
        it->seq = i;
        if (!queue_push(p->q, &it->node))
            free(it);
    }
    return NULL;
}

/* Every item arrives once, and each producer's in the order it pushed them. */
static void test_many_producers(void **state)
{
    struct producer ps[N_PRODUCERS];
    pthread_t ts[N_PRODUCERS];
    int next[N_PRODUCERS] = { 0 }, n = 0, i;
    struct queue q;

    (void)state;
    queue_init(&q);
    for (i = 0; i < N_PRODUCERS; i++) {
        ps[i].q = &q;
        ps[i].id = i;
        assert_int_equal(pthread_create(&ts[i], NULL, produce, &ps[i]), 0);
    }
    while (n < N_PRODUCERS * N_PER_PRODUCER) {
        struct item *it = (struct item *)queue_take(&q, 10000), *next_it;
        assert_non_null(it);
        for (; it; it = next_it) {
            next_it = it->next;
            assert_int_equal(it->seq, next[it->producer]);
            next[it->producer]++;
            n++;
            free(it);
        }
    }
    for (i = 0; i < N_PRODUCERS; i++)
        assert_int_equal(pthread_join(ts[i], NULL), 0);
    queue_close(&q);
    assert_null(queue_take(&q, QUEUE_FOREVER));
    queue_release(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_take_times_out),
        cmocka_unit_test(test_close_refuses_and_wakes),
        cmocka_unit_test(test_many_producers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
