/*
 * test_map.c - the `map` step through the public API: outputs in item
 * order with the item's context, an engine closed in the middle of a map
 * and opened again (items settled before never run again), and many
 * items in flight on no thread of their own.
 */
#include "util/common.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"

/* The map step's `progress` member of run, or NULL (borrowed). */
static json_t *progress_of(durable *d, const char *run, json_t **doc)
{
    *doc = get_run(d, run);
    return json_object_get(step_of(*doc, "each"), "progress");
}

static void test_map_outputs_in_order(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"m\",\"input\":{\"k\":\"x\"},\"steps\":["
                         "{\"id\":\"rows\",\"type\":\"transform\","
                         "\"config\":{\"expression\":\"[range(0; 50) | {n: .}]\"}},"
                         "{\"id\":\"each\",\"type\":\"map\",\"depends_on\":[\"rows\"],"
                         "\"config\":{\"items\":\".steps.rows.output\",\"max_concurrency\":3,"
                         "\"step\":{\"type\":\"transform\",\"config\":{\"expression\":"
                         "\"{i: .index, sq: (.item.n * .item.n), k: .input.k}\"}}}}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *doc, *out, *ev;

    assert_string_equal("completed", wait_run(f->d, run));
    doc = get_run(f->d, run);
    out = json_object_get(step_of(doc, "each"), "output");
    assert_int_equal(json_array_size(out), 50);
    for (size_t k = 0; k < 50; k++) {
        json_t *o = json_array_get(out, k);
        assert_int_equal(json_integer_value(json_object_get(o, "i")), (json_int_t)k);
        assert_int_equal(json_integer_value(json_object_get(o, "sq")), (json_int_t)(k * k));
        assert_string_equal(json_string_value(json_object_get(o, "k")), "x");
    }
    assert_int_equal(json_integer_value(json_object_get(
                             json_object_get(step_of(doc, "each"), "progress"), "done")),
                     50);
    json_decref(doc);
    ev = get_events(f->d, run);
    assert_int_equal(count_events(ev, "map_item_completed", "each"), 50);
    assert_int_equal(count_events(ev, "step_completed", "each"), 1);
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

/* Closed mid-map and opened again: every item completes once in the
 * history, those completed before the close are not started again. */
static void test_map_across_reopen(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"m\",\"steps\":[{\"id\":\"each\",\"type\":\"map\","
                         "\"config\":{\"items\":\"[range(0; 40)]\",\"max_concurrency\":4,"
                         "\"step\":{\"type\":\"task\",\"config\":{\"duration_seconds\":0.05}}}}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *ev = NULL, *doc, *p;
    int tries, before;

    for (tries = 0; tries < 1000; tries++) {
        json_decref(ev);
        ev = get_events(f->d, run);
        if (count_events(ev, "map_item_completed", "each") >= 8)
            break;
        usleep(10000);
    }
    json_decref(ev);
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    ev = get_events(f->d, run);
    before = count_events(ev, "map_item_completed", "each");
    assert_true(before >= 8 && before < 40);
    json_decref(ev);
    assert_string_equal("completed", wait_run(f->d, run));
    ev = get_events(f->d, run);
    assert_int_equal(count_events(ev, "recovered", NULL), 1);
    assert_int_equal(count_events(ev, "map_item_completed", "each"), 40);
    for (int k = 0; k < 40; k++) {
        int n = 0;
        for (size_t e = 0; e < json_array_size(ev); e++) {
            json_t *x = json_array_get(ev, e);
            if (strcmp(json_string_value(json_object_get(x, "type")), "map_item_completed") == 0 &&
                json_integer_value(json_object_get(json_object_get(x, "data"), "index")) == k)
                n++;
        }
        assert_int_equal(n, 1);
    }
    json_decref(ev);
    p = progress_of(f->d, run, &doc);
    assert_int_equal(json_integer_value(json_object_get(p, "done")), 40);
    assert_int_equal(json_array_size(json_object_get(step_of(doc, "each"), "output")), 40);
    json_decref(doc);
    durable_free(run);
    durable_free(wf);
}

/* 2,000 items of 2 s in flight at once run on no thread of their own. */
static void test_map_items_no_threads(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"m\",\"steps\":[{\"id\":\"each\",\"type\":\"map\","
                         "\"config\":{\"items\":\"[range(0; 2000)]\",\"max_concurrency\":1000,"
                         "\"on_item_failure\":\"collect\","
                         "\"step\":{\"type\":\"task\",\"config\":{\"duration_seconds\":2}}}}]}");
    int idle = count_threads();
    char *run = start(f->d, wf, NULL, NULL);
    json_t *doc, *ev = NULL;
    int tries;

    for (tries = 0; tries < 500; tries++) {
        json_decref(ev);
        ev = get_events(f->d, run);
        if (count_events(ev, "step_started", "each") == 1)
            break;
        usleep(10000);
    }
    json_decref(ev);
    usleep(300000); /* the first 1,000 items are in flight (2 s each) */
    assert_true(count_threads() <= idle);
    assert_string_equal("completed", wait_run(f->d, run));
    doc = get_run(f->d, run);
    assert_int_equal(json_array_size(json_object_get(
                             json_object_get(step_of(doc, "each"), "output"), "results")),
                     2000);
    json_decref(doc);
    durable_free(run);
    durable_free(wf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_map_outputs_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_items_no_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
