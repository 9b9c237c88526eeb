/*
 * timers.c - the scheduler's timer heap: a binary min-heap of (due, run id,
 * step, generation) in struct sched. A timer whose generation no longer
 * matches its step is stale and ignored by whoever pops it (engine.c), which
 * is how a finished attempt disarms its timeout without a heap delete.
 *
 * Scheduler thread only.
 */
#include "util/common.h"

#include "engine/engine_int.h"

static bool timer_before(const struct timer *a, const struct timer *b)
{
    return a->due_ms < b->due_ms;
}

static void push(struct sched *s, struct timer t)
{
    size_t i;

    if (s->n_heap == s->cap_heap) {
        s->cap_heap = s->cap_heap ? s->cap_heap * 2 : 256;
        s->heap = xrealloc(s->heap, s->cap_heap * sizeof(*s->heap));
    }
    i = s->n_heap++;
    while (i > 0 && timer_before(&t, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = t;
}

void sched_timer_push(struct sched *s, const struct run_state *r, size_t step_idx,
                      enum timer_kind kind, int64_t due_ms)
{
    struct timer t = { .due_ms = due_ms, .kind = kind, .step_idx = step_idx };

    t.gen = kind == TM_DEADLINE || kind == TM_RELOAD ? 0 : r->steps[step_idx].gen;
    t.run_gen = r->gen;
    snprintf(t.run_id, sizeof(t.run_id), "%s", r->id);
    push(s, t);
}

void sched_timer_push_plain(struct sched *s, enum timer_kind kind, int64_t due_ms)
{
    struct timer t = { .due_ms = due_ms, .kind = kind };

    push(s, t);
}

struct timer sched_timer_pop(struct sched *s)
{
    struct timer top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!timer_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}
