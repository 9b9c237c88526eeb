/*
 * def_graph.c - the dependency graph of a plan: dependents, the stable
 * topological order, cycle reports, and "did you mean" suggestions.
 *
 * Edges run from a step to its dependents (the order things execute). The
 * topological order is Kahn's algorithm that always takes the ready step
 * with the lowest file index (a min-heap), so independent steps keep the
 * order of the file. Steps Kahn cannot place lie on a cycle or after one;
 * Tarjan's algorithm (iterative: a 10,000-step chain must not exhaust the
 * stack) splits them into strongly connected components, and each component
 * with a cycle is reported once, as the shortest cycle through its first
 * step in file order: `cycle validate → charge → validate`.
 */
#include "util/common.h"

#include <stdlib.h>
#include <string.h>

#include "def/def_int.h"

#define NONE        SIZE_MAX
#define ARROW       " \xe2\x86\x92 " /* U+2192 */
#define CYCLE_SHOWN 16               /* steps named in a cycle message before "..." */
#define DIST_MAX    160              /* longest string the edit distance compares */

static void build_dependents(struct plan *pl)
{
    size_t i, j, *count = xcalloc(pl->n_steps, sizeof(size_t));

    for (i = 0; i < pl->n_steps; i++) {
        for (j = 0; j < pl->steps[i].n_deps; j++)
            count[pl->steps[i].deps[j]]++;
    }
    for (i = 0; i < pl->n_steps; i++)
        pl->steps[i].dependents = xcalloc(count[i], sizeof(size_t));
    /* i ascending, so every dependents list comes out ascending. */
    for (i = 0; i < pl->n_steps; i++) {
        for (j = 0; j < pl->steps[i].n_deps; j++) {
            struct plan_step *d = &pl->steps[pl->steps[i].deps[j]];
            d->dependents[d->n_dependents++] = i;
        }
    }
    free(count);
}

/* Each step's depends_on as JSON text, once per plan rather than once per
 * run (the store writes it in every run's step rows). Ids are
 * [A-Za-z0-9_.-], but they are escaped all the same. */
static void build_depends_on_json(struct plan *pl)
{
    struct dbuf b;
    size_t i, j;

    for (i = 0; i < pl->n_steps; i++) {
        struct plan_step *st = &pl->steps[i];

        dbuf_init(&b, 0);
        dbuf_add(&b, "[", 1);
        for (j = 0; j < st->n_deps; j++) {
            if (j > 0)
                dbuf_add(&b, ",", 1);
            dbuf_add_json_string(&b, pl->steps[st->deps[j]].id);
        }
        dbuf_add(&b, "]", 1);
        st->depends_on_json = dbuf_detach(&b, NULL);
    }
}

/* ---- Kahn's algorithm with a min-heap of ready indices ---- */

static void heap_push(size_t *h, size_t *n, size_t v)
{
    size_t i = (*n)++;

    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *n)
{
    size_t top = h[0], last = h[--(*n)], i = 0, c;

    for (;;) {
        c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= last)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

/* Fills topo; returns how many steps were placed. indeg[i] stays > 0 for
 * the steps that could not be (on or after a cycle). */
static size_t kahn(const struct plan *pl, size_t *topo, size_t *indeg)
{
    size_t *heap = xcalloc(pl->n_steps, sizeof(size_t));
    size_t n_heap = 0, placed = 0, i, j;

    for (i = 0; i < pl->n_steps; i++) {
        indeg[i] = pl->steps[i].n_deps;
        if (indeg[i] == 0)
            heap_push(heap, &n_heap, i);
    }
    while (n_heap > 0) {
        const struct plan_step *st;
        i = heap_pop(heap, &n_heap);
        topo[placed++] = i;
        st = &pl->steps[i];
        for (j = 0; j < st->n_dependents; j++) {
            if (--indeg[st->dependents[j]] == 0)
                heap_push(heap, &n_heap, st->dependents[j]);
        }
    }
    free(heap);
    return placed;
}

/* ---- Tarjan's strongly connected components, iteratively ---- */

struct tarjan {
    const struct plan *pl;
    const size_t *indeg; /* > 0: the step is still in the graph */
    size_t *idx, *low, *stack, n_stack, counter;
    bool *on_stack;
    size_t (*frames)[2]; /* call stack: step, next dependent to visit */
    size_t *comp;        /* component of each step, NONE outside */
    size_t *comp_size;
    size_t n_comps;
};

static void tarjan_push(struct tarjan *t, size_t *n_frames, size_t v)
{
    t->idx[v] = t->low[v] = t->counter++;
    t->stack[t->n_stack++] = v;
    t->on_stack[v] = true;
    t->frames[*n_frames][0] = v;
    t->frames[*n_frames][1] = 0;
    (*n_frames)++;
}

/* Called when v's visit ends: pops its component if v is its root. */
static void tarjan_close(struct tarjan *t, size_t v)
{
    size_t w;

    if (t->low[v] != t->idx[v])
        return;
    do {
        w = t->stack[--t->n_stack];
        t->on_stack[w] = false;
        t->comp[w] = t->n_comps;
        t->comp_size[t->n_comps]++;
    } while (w != v);
    t->n_comps++;
}

static void tarjan_visit(struct tarjan *t, size_t root)
{
    size_t n_frames = 0, v, w;

    tarjan_push(t, &n_frames, root);
    while (n_frames > 0) {
        size_t *f = t->frames[n_frames - 1];
        const struct plan_step *st = &t->pl->steps[f[0]];
        v = f[0];
        if (f[1] < st->n_dependents) {
            w = st->dependents[f[1]++];
            if (t->indeg[w] == 0)
                continue;
            if (t->idx[w] == NONE)
                tarjan_push(t, &n_frames, w);
            else if (t->on_stack[w] && t->idx[w] < t->low[v])
                t->low[v] = t->idx[w];
            continue;
        }
        tarjan_close(t, v);
        n_frames--;
        if (n_frames > 0 && t->low[v] < t->low[t->frames[n_frames - 1][0]])
            t->low[t->frames[n_frames - 1][0]] = t->low[v];
    }
}

/* ---- cycle reports ---- */

static const char *step_id(const struct plan *pl, size_t i)
{
    return pl->steps[i].id ? pl->steps[i].id : "?";
}

/* Appends the shortest cycle through start (inside its component) to msg,
 * found by breadth-first search along dependents. seen[w] == start + 1
 * marks the steps this search reached, so nothing needs resetting. */
static void cycle_text(const struct tarjan *t, size_t start, size_t *seen, size_t *parent,
                       size_t *queue, struct dbuf *msg)
{
    const struct plan *pl = t->pl;
    size_t head = 0, tail = 0, end = NONE, u, j, k, n_path = 0;

    queue[tail++] = start;
    while (head < tail && end == NONE) {
        u = queue[head++];
        for (j = 0; j < pl->steps[u].n_dependents && end == NONE; j++) {
            size_t w = pl->steps[u].dependents[j];
            if (w == start) {
                end = u;
            } else if (t->comp[w] == t->comp[start] && seen[w] != start + 1) {
                seen[w] = start + 1;
                parent[w] = u;
                queue[tail++] = w;
            }
        }
    }
    DUR_ASSERT(end != NONE); /* start is in a component with a cycle */
    for (u = end; u != start; u = parent[u])
        queue[n_path++] = u; /* the path backwards, reusing queue */
    queue[n_path++] = start;
    for (k = 0; k < n_path; k++) {
        if (k == CYCLE_SHOWN && n_path > CYCLE_SHOWN + 1) {
            dbuf_addf(msg, ARROW "... (%zu more)", n_path - 1 - k);
            k = n_path - 1;
        }
        if (k > 0)
            dbuf_adds(msg, ARROW);
        dbuf_adds(msg, step_id(pl, queue[n_path - 1 - k]));
    }
    dbuf_adds(msg, ARROW);
    dbuf_adds(msg, step_id(pl, start));
}

static void report_cycles(struct parser *p, struct tarjan *t)
{
    size_t n = t->pl->n_steps, v, c;
    size_t *seen = xcalloc(n, sizeof(size_t));
    size_t *parent = xmalloc(n * sizeof(size_t));
    size_t *queue = xmalloc(n * sizeof(size_t));
    bool *done = xcalloc(t->n_comps, sizeof(bool));
    struct dbuf msg;

    dbuf_init(&msg, 0);
    for (v = 0; v < n; v++) {
        c = t->comp[v];
        if (c == NONE || t->comp_size[c] < 2 || done[c])
            continue;
        done[c] = true;
        dbuf_reset(&msg);
        cycle_text(t, v, seen, parent, queue, &msg);
        def_error_at(p, "steps", "cycle %s", msg.buf);
    }
    dbuf_release(&msg);
    free(done);
    free(queue);
    free(parent);
    free(seen);
}

static void find_cycles(struct parser *p, const size_t *indeg)
{
    size_t n = p->plan->n_steps, v;
    struct tarjan t = { .pl = p->plan, .indeg = indeg };

    t.idx = xmalloc(n * sizeof(size_t));
    t.low = xmalloc(n * sizeof(size_t));
    t.stack = xmalloc(n * sizeof(size_t));
    t.on_stack = xcalloc(n, sizeof(bool));
    t.frames = xmalloc(n * sizeof(*t.frames));
    t.comp = xmalloc(n * sizeof(size_t));
    t.comp_size = xcalloc(n, sizeof(size_t));
    memset(t.idx, 0xff, n * sizeof(size_t));
    memset(t.comp, 0xff, n * sizeof(size_t));
    for (v = 0; v < n; v++) {
        if (indeg[v] > 0 && t.idx[v] == NONE)
            tarjan_visit(&t, v);
    }
    report_cycles(p, &t);
    free(t.comp_size);
    free(t.comp);
    free(t.frames);
    free(t.on_stack);
    free(t.stack);
    free(t.low);
    free(t.idx);
}

void def_graph_build(struct parser *p)
{
    struct plan *pl = p->plan;
    size_t *topo, *indeg;

    if (pl->n_steps == 0)
        return;
    build_dependents(pl);
    build_depends_on_json(pl);
    topo = xmalloc(pl->n_steps * sizeof(size_t));
    indeg = xmalloc(pl->n_steps * sizeof(size_t));
    if (kahn(pl, topo, indeg) == pl->n_steps) {
        pl->topo = topo;
        topo = NULL;
    } else {
        find_cycles(p, indeg);
    }
    free(indeg);
    free(topo);
}

/* ---- suggestions ---- */

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;

    return m < c ? m : c;
}

/* Optimal string alignment distance (a swap of neighbours costs 1), or
 * limit + 1 once it is sure to exceed limit. */
static size_t osa_distance(const char *a, size_t la, const char *b, size_t lb, size_t limit,
                           long *budget)
{
    size_t rows[3][DIST_MAX + 1];
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2], *tmp, i, j, row_min;

    if (la > DIST_MAX || lb > DIST_MAX)
        return limit + 1;
    for (j = 0; j <= lb; j++)
        prev[j] = j;
    for (i = 1; i <= la; i++) {
        cur[0] = row_min = i;
        for (j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < cur[j])
                cur[j] = prev2[j - 2] + 1;
            if (cur[j] < row_min)
                row_min = cur[j];
        }
        *budget -= (long)lb + 1;
        if (row_min > limit)
            return limit + 1;
        tmp = prev2;
        prev2 = prev;
        prev = cur;
        cur = tmp;
    }
    return prev[lb];
}

const char *def_suggest(struct parser *p, const char *name, const char *const *cands,
                        size_t n_cands, const char *exclude)
{
    size_t la = strlen(name), limit = (la + 2) / 3, best_d, i;
    const char *best = NULL;

    if (limit > 3)
        limit = 3;
    best_d = limit + 1;
    for (i = 0; i < n_cands && p->suggest_budget > 0; i++) {
        size_t lb = strlen(cands[i]), d;
        if ((la > lb ? la - lb : lb - la) > limit || (exclude && strcmp(cands[i], exclude) == 0))
            continue;
        d = osa_distance(name, la, cands[i], lb, limit, &p->suggest_budget);
        if (d < best_d && d < la) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}
