/*
 * test_store_docs.c - the exact text of the store's JSON documents (SPEC §6)
 * through the store_* functions, so that a change of how they are built
 * (docs.c from backend records, event_data.c) shows as a changed byte.
 *
 * One scenario covers the shapes: a run with finished, retrying, skipped
 * and never-started steps (null times, no output), a finished run (read
 * twice: the second answer may come from the cache), every kind of event
 * data, events without a step, an order, a workflow, and the lists with
 * their totals. Workflow ids are random: "@WF@" and "@WF2@" in an
 * expected text stand for them. Set STORE_DOCS_PRINT=1 to print the documents instead.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#include "store_test.h"

static char wf2_id[ID_MAX]; /* the second workflow's id */

/* text (owned, freed) with every id replaced by name (owned). */
static char *mask(char *text, const char *id, const char *name)
{
    struct dbuf b;
    const char *t = text, *p;

    dbuf_init(&b, 0);
    while (id[0] && (p = strstr(t, id)) != NULL) {
        dbuf_add(&b, t, (size_t)(p - t));
        dbuf_adds(&b, name);
        t = p + strlen(id);
    }
    dbuf_adds(&b, t);
    free(text);
    text = dbuf_detach(&b, NULL);
    dbuf_release(&b);
    return text;
}

static void check(struct fixture *f, const char *name, durable_code rc, char *text,
                  const durable_error *err, const char *want)
{
    if (rc != DURABLE_OK)
        fail_msg("%s: %s", name, err->msg);
    text = mask(mask(text, f->wf_id, "@WF@"), wf2_id, "@WF2@");
    if (getenv("STORE_DOCS_PRINT"))
        printf("%s\n%s\n\n", name, text);
    else if (strcmp(text, want) != 0)
        fail_msg("%s:\n got  %s\n want %s", name, text, want);
    free(text);
}

static void tr(struct fixture *f, struct transition t)
{
    apply_ok(f, &t, NULL);
}

/* The scenario: run_1 (with an order) has a completed step with an action,
 * a retrying step and a skipped one; run_2 completed with an output; run_3
 * failed, then was retried; run_4 waits; run_5 was recovered. */
static void scenario(struct fixture *f)
{
    struct transition_result res;
    struct transition t;

    put_workflow(f, "zeta", "{\"name\":\"zeta\",\"description\":\"a \\\"z\\\"\\n\",\"steps\":[]}",
                 &res);
    snprintf(wf2_id, sizeof(wf2_id), "%s", res.id);
    create_order(f, "ord_1", 12.5);
    create_order(f, "ord_2", 3);
    create_run(f, "run_1", "ord_1", "k\"1", NULL);
    tr(f, step_tr(TR_STEP_START, "run_1", "a", 1, T0 + 10));
    t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 20);
    t.output_json = "{\"x\":[1,2.5,\"\303\251\"]}"; /* as the engine encodes it */
    t.action = "validate_order";
    tr(f, t);
    tr(f, step_tr(TR_STEP_START, "run_1", "b", 1, T0 + 30));
    t = step_tr(TR_STEP_RETRY, "run_1", "b", 1, T0 + 40);
    t.error_message = "boom\n\"quoted\"";
    t.error_code = "random_failure";
    t.wake_at_ms = T0 + 540;
    tr(f, t);
    tr(f, step_tr(TR_STEP_SKIP, "run_1", "c", 0, T0 + 41));

    create_run(f, "run_2", NULL, NULL, NULL);
    t = step_tr(TR_STEP_COMPLETE, "run_2", "a", 1, T0 + 50);
    t.with_start = true;
    t.output_json = "7";
    tr(f, t);
    t = step_tr(TR_RUN_FINISH, "run_2", NULL, 0, T0 + 60);
    t.run_status = RUN_COMPLETED;
    t.output_json = "{\"total\":3}";
    tr(f, t);

    create_run(f, "run_3", NULL, "k3", NULL);
    tr(f, step_tr(TR_STEP_START, "run_3", "a", 1, T0 + 70));
    t = step_tr(TR_STEP_FAIL, "run_3", "a", 1, T0 + 80);
    t.error_message = "bad";
    tr(f, t);
    t = step_tr(TR_RUN_FINISH, "run_3", NULL, 0, T0 + 90);
    t.run_status = RUN_FAILED;
    t.error_message = "step \"a\" failed: bad";
    tr(f, t);
    t = step_tr(TR_RUN_RETRY, "run_3", NULL, 0, T0 + 100);
    tr(f, t);

    create_run(f, "run_4", NULL, NULL, NULL);
    tr(f, step_tr(TR_STEP_START, "run_4", "a", 1, T0 + 110));
    t = step_tr(TR_STEP_WAIT, "run_4", "a", 1, T0 + 120);
    t.wait_json = "{\"prompt\":\"ok?\",\"waiting_for\":\"approval\"}";
    t.wake_at_ms = T0 + 1120;
    tr(f, t);
    tr(f, step_tr(TR_STEP_START, "run_4", "c", 1, T0 + 121));
    t = step_tr(TR_STEP_WAIT, "run_4", "c", 1, T0 + 122);
    tr(f, t);

    create_run(f, "run_5", NULL, NULL, NULL);
    tr(f, step_tr(TR_STEP_START, "run_5", "a", 1, T0 + 130));
    t = step_tr(TR_RUN_RECOVERED, "run_5", NULL, 0, T0 + 140);
    t.recovered_json = "[\"a\"]";
    tr(f, t);
    t = step_tr(TR_RUN_FINISH, "run_5", NULL, 0, T0 + 150);
    t.run_status = RUN_CANCELLED;
    tr(f, t);
}

/* ---- the documents the scenario gives ---- */

static const char *const want_run_1 =
        "{\"id\":\"run_1\",\"workflow_id\":\"@WF@\",\"workflow_name\":\"shop\",\"workflow_ver"
        "sion\":1,\"status\":\"waiting\",\"input\":{\"n\":1},\"output\":null,\"order_id\":\"o"
        "rd_1\",\"idempotency_key\":\"k\\\"1\",\"error_message\":null,\"created_at\":\"2023-1"
        "1-14T22:13:20.001Z\",\"started_at\":\"2023-11-14T22:13:20.010Z\",\"completed_at\":nu"
        "ll,\"steps\":[{\"step_id\":\"a\",\"type\":\"task\",\"status\":\"completed\",\"attemp"
        "t\":1,\"max_attempts\":3,\"depends_on\":[],\"started_at\":\"2023-11-14T22:13:20.010Z"
        "\",\"completed_at\":\"2023-11-14T22:13:20.020Z\",\"wake_at\":null,\"error_message\":"
        "null,\"output\":{\"x\":[1,2.5,\"\303\251\"]}},{\"step_id\":\"b\",\"type\":\"task\","
        "\"status\":\"retrying\",\"attempt\":1,\"max_attempts\":1,\"depends_on\":[\"a\"],\"st"
        "arted_at\":\"2023-11-14T22:13:20.030Z\",\"completed_at\":null,\"wake_at\":\"2023-11-"
        "14T22:13:20.540Z\",\"error_message\":\"boom\\n\\\"quoted\\\"\",\"output\":null},{\"s"
        "tep_id\":\"c\",\"type\":\"log\",\"status\":\"skipped\",\"attempt\":0,\"max_attempts"
        "\":1,\"depends_on\":[],\"started_at\":null,\"completed_at\":\"2023-11-14T22:13:20.04"
        "1Z\",\"wake_at\":null,\"error_message\":null,\"output\":null}]}";

static const char *const want_run_2 =
        "{\"id\":\"run_2\",\"workflow_id\":\"@WF@\",\"workflow_name\":\"shop\",\"workflow_ver"
        "sion\":1,\"status\":\"completed\",\"input\":{\"n\":1},\"output\":{\"total\":3},\"ord"
        "er_id\":null,\"idempotency_key\":null,\"error_message\":null,\"created_at\":\"2023-1"
        "1-14T22:13:20.001Z\",\"started_at\":\"2023-11-14T22:13:20.050Z\",\"completed_at\":\""
        "2023-11-14T22:13:20.060Z\",\"steps\":[{\"step_id\":\"a\",\"type\":\"task\",\"status"
        "\":\"completed\",\"attempt\":1,\"max_attempts\":3,\"depends_on\":[],\"started_at\":"
        "\"2023-11-14T22:13:20.050Z\",\"completed_at\":\"2023-11-14T22:13:20.050Z\",\"wake_at"
        "\":null,\"error_message\":null,\"output\":7},{\"step_id\":\"b\",\"type\":\"task\",\""
        "status\":\"cancelled\",\"attempt\":0,\"max_attempts\":1,\"depends_on\":[\"a\"],\"sta"
        "rted_at\":null,\"completed_at\":\"2023-11-14T22:13:20.060Z\",\"wake_at\":null,\"erro"
        "r_message\":null,\"output\":null},{\"step_id\":\"c\",\"type\":\"log\",\"status\":\"c"
        "ancelled\",\"attempt\":0,\"max_attempts\":1,\"depends_on\":[],\"started_at\":null,\""
        "completed_at\":\"2023-11-14T22:13:20.060Z\",\"wake_at\":null,\"error_message\":null,"
        "\"output\":null}]}";

static const char *const want_run_3 =
        "{\"id\":\"run_3\",\"workflow_id\":\"@WF@\",\"workflow_name\":\"shop\",\"workflow_ver"
        "sion\":1,\"status\":\"running\",\"input\":{\"n\":1},\"output\":null,\"order_id\":nul"
        "l,\"idempotency_key\":\"k3\",\"error_message\":null,\"created_at\":\"2023-11-14T22:1"
        "3:20.001Z\",\"started_at\":\"2023-11-14T22:13:20.070Z\",\"completed_at\":null,\"step"
        "s\":[{\"step_id\":\"a\",\"type\":\"task\",\"status\":\"pending\",\"attempt\":0,\"max"
        "_attempts\":3,\"depends_on\":[],\"started_at\":null,\"completed_at\":null,\"wake_at"
        "\":null,\"error_message\":null,\"output\":null},{\"step_id\":\"b\",\"type\":\"task\""
        ",\"status\":\"pending\",\"attempt\":0,\"max_attempts\":1,\"depends_on\":[\"a\"],\"st"
        "arted_at\":null,\"completed_at\":null,\"wake_at\":null,\"error_message\":null,\"outp"
        "ut\":null},{\"step_id\":\"c\",\"type\":\"log\",\"status\":\"pending\",\"attempt\":0,"
        "\"max_attempts\":1,\"depends_on\":[],\"started_at\":null,\"completed_at\":null,\"wak"
        "e_at\":null,\"error_message\":null,\"output\":null}]}";

static const char *const want_ev_1 =
        "[{\"id\":1,\"seq\":1,\"type\":\"run_created\",\"step_id\":null,\"at\":\"2023-11-14T2"
        "2:13:20.001Z\",\"data\":{\"workflow_id\":\"@WF@\",\"input\":{\"n\":1},\"order_id\":"
        "\"ord_1\"}},{\"id\":2,\"seq\":2,\"type\":\"step_started\",\"step_id\":\"a\",\"at\":"
        "\"2023-11-14T22:13:20.010Z\",\"data\":{\"attempt\":1,\"idempotency_key\":\"run_1/a\""
        "}},{\"id\":3,\"seq\":3,\"type\":\"step_completed\",\"step_id\":\"a\",\"at\":\"2023-1"
        "1-14T22:13:20.020Z\",\"data\":{\"attempt\":1,\"output\":{\"x\":[1,2.5,\"\303\251\"]}"
        "}},{\"id\":4,\"seq\":4,\"type\":\"action_applied\",\"step_id\":\"a\",\"at\":\"2023-1"
        "1-14T22:13:20.020Z\",\"data\":{\"action\":\"validate_order\",\"order_id\":\"ord_1\","
        "\"from\":\"pending\",\"to\":\"validated\"}},{\"id\":5,\"seq\":5,\"type\":\"step_star"
        "ted\",\"step_id\":\"b\",\"at\":\"2023-11-14T22:13:20.030Z\",\"data\":{\"attempt\":1,"
        "\"idempotency_key\":\"run_1/b\"}},{\"id\":6,\"seq\":6,\"type\":\"step_failed\",\"ste"
        "p_id\":\"b\",\"at\":\"2023-11-14T22:13:20.040Z\",\"data\":{\"attempt\":1,\"error\":"
        "\"boom\\n\\\"quoted\\\"\",\"code\":\"random_failure\",\"final\":false}},{\"id\":7,\""
        "seq\":7,\"type\":\"retry_scheduled\",\"step_id\":\"b\",\"at\":\"2023-11-14T22:13:20."
        "040Z\",\"data\":{\"attempt\":2,\"delay_ms\":500,\"wake_at\":\"2023-11-14T22:13:20.54"
        "0Z\"}},{\"id\":8,\"seq\":8,\"type\":\"step_skipped\",\"step_id\":\"c\",\"at\":\"2023"
        "-11-14T22:13:20.041Z\",\"data\":{}}]";

static const char *const want_ev_1_6 =
        "[{\"id\":7,\"seq\":7,\"type\":\"retry_scheduled\",\"step_id\":\"b\",\"at\":\"2023-11"
        "-14T22:13:20.040Z\",\"data\":{\"attempt\":2,\"delay_ms\":500,\"wake_at\":\"2023-11-1"
        "4T22:13:20.540Z\"}},{\"id\":8,\"seq\":8,\"type\":\"step_skipped\",\"step_id\":\"c\","
        "\"at\":\"2023-11-14T22:13:20.041Z\",\"data\":{}}]";

static const char *const want_ev_2 =
        "[{\"id\":9,\"seq\":1,\"type\":\"run_created\",\"step_id\":null,\"at\":\"2023-11-14T2"
        "2:13:20.001Z\",\"data\":{\"workflow_id\":\"@WF@\",\"input\":{\"n\":1},\"order_id\":n"
        "ull}},{\"id\":10,\"seq\":2,\"type\":\"step_started\",\"step_id\":\"a\",\"at\":\"2023"
        "-11-14T22:13:20.050Z\",\"data\":{\"attempt\":1,\"idempotency_key\":\"run_2/a\"}},{\""
        "id\":11,\"seq\":3,\"type\":\"step_completed\",\"step_id\":\"a\",\"at\":\"2023-11-14T"
        "22:13:20.050Z\",\"data\":{\"attempt\":1,\"output\":7}},{\"id\":12,\"seq\":4,\"type\""
        ":\"run_completed\",\"step_id\":null,\"at\":\"2023-11-14T22:13:20.060Z\",\"data\":{\""
        "output\":{\"total\":3}}}]";

static const char *const want_ev_3 =
        "[{\"id\":13,\"seq\":1,\"type\":\"run_created\",\"step_id\":null,\"at\":\"2023-11-14T"
        "22:13:20.001Z\",\"data\":{\"workflow_id\":\"@WF@\",\"input\":{\"n\":1},\"order_id\":"
        "null}},{\"id\":14,\"seq\":2,\"type\":\"step_started\",\"step_id\":\"a\",\"at\":\"202"
        "3-11-14T22:13:20.070Z\",\"data\":{\"attempt\":1,\"idempotency_key\":\"run_3/a\"}},{"
        "\"id\":15,\"seq\":3,\"type\":\"step_failed\",\"step_id\":\"a\",\"at\":\"2023-11-14T2"
        "2:13:20.080Z\",\"data\":{\"attempt\":1,\"error\":\"bad\",\"code\":null,\"final\":tru"
        "e}},{\"id\":16,\"seq\":4,\"type\":\"run_failed\",\"step_id\":null,\"at\":\"2023-11-1"
        "4T22:13:20.090Z\",\"data\":{\"error\":\"step \\\"a\\\" failed: bad\"}},{\"id\":17,\""
        "seq\":5,\"type\":\"run_retried\",\"step_id\":null,\"at\":\"2023-11-14T22:13:20.100Z"
        "\",\"data\":{\"steps\":[\"a\",\"b\",\"c\"]}}]";

static const char *const want_ev_4 =
        "[{\"id\":18,\"seq\":1,\"type\":\"run_created\",\"step_id\":null,\"at\":\"2023-11-14T"
        "22:13:20.001Z\",\"data\":{\"workflow_id\":\"@WF@\",\"input\":{\"n\":1},\"order_id\":"
        "null}},{\"id\":19,\"seq\":2,\"type\":\"step_started\",\"step_id\":\"a\",\"at\":\"202"
        "3-11-14T22:13:20.110Z\",\"data\":{\"attempt\":1,\"idempotency_key\":\"run_4/a\"}},{"
        "\"id\":20,\"seq\":3,\"type\":\"step_waiting\",\"step_id\":\"a\",\"at\":\"2023-11-14T"
        "22:13:20.120Z\",\"data\":{\"prompt\":\"ok?\",\"waiting_for\":\"approval\",\"attempt"
        "\":1,\"wake_at\":\"2023-11-14T22:13:21.120Z\"}},{\"id\":21,\"seq\":4,\"type\":\"step"
        "_started\",\"step_id\":\"c\",\"at\":\"2023-11-14T22:13:20.121Z\",\"data\":{\"attempt"
        "\":1,\"idempotency_key\":\"run_4/c\"}},{\"id\":22,\"seq\":5,\"type\":\"step_waiting"
        "\",\"step_id\":\"c\",\"at\":\"2023-11-14T22:13:20.122Z\",\"data\":{\"attempt\":1}}]";

static const char *const want_ev_5 =
        "[{\"id\":23,\"seq\":1,\"type\":\"run_created\",\"step_id\":null,\"at\":\"2023-11-14T"
        "22:13:20.001Z\",\"data\":{\"workflow_id\":\"@WF@\",\"input\":{\"n\":1},\"order_id\":"
        "null}},{\"id\":24,\"seq\":2,\"type\":\"step_started\",\"step_id\":\"a\",\"at\":\"202"
        "3-11-14T22:13:20.130Z\",\"data\":{\"attempt\":1,\"idempotency_key\":\"run_5/a\"}},{"
        "\"id\":25,\"seq\":3,\"type\":\"recovered\",\"step_id\":null,\"at\":\"2023-11-14T22:1"
        "3:20.140Z\",\"data\":{\"steps\":[\"a\"]}},{\"id\":26,\"seq\":4,\"type\":\"run_cancel"
        "led\",\"step_id\":null,\"at\":\"2023-11-14T22:13:20.150Z\",\"data\":{}}]";

static const char *const want_since =
        "[{\"id\":4,\"run_id\":\"run_1\",\"seq\":4,\"type\":\"action_applied\",\"step_id\":\""
        "a\",\"at\":\"2023-11-14T22:13:20.020Z\",\"data\":{\"action\":\"validate_order\",\"or"
        "der_id\":\"ord_1\",\"from\":\"pending\",\"to\":\"validated\"}},{\"id\":5,\"run_id\":"
        "\"run_1\",\"seq\":5,\"type\":\"step_started\",\"step_id\":\"b\",\"at\":\"2023-11-14T"
        "22:13:20.030Z\",\"data\":{\"attempt\":1,\"idempotency_key\":\"run_1/b\"}},{\"id\":6,"
        "\"run_id\":\"run_1\",\"seq\":6,\"type\":\"step_failed\",\"step_id\":\"b\",\"at\":\"2"
        "023-11-14T22:13:20.040Z\",\"data\":{\"attempt\":1,\"error\":\"boom\\n\\\"quoted\\\""
        "\",\"code\":\"random_failure\",\"final\":false}}]";

static const char *const want_order =
        "{\"id\":\"ord_1\",\"amount\":12.5,\"status\":\"validated\",\"created_at\":\"2023-11-"
        "14T22:13:20.000Z\",\"updated_at\":\"2023-11-14T22:13:20.020Z\"}";

static const char *const want_order_2 =
        "{\"id\":\"ord_2\",\"amount\":3.0,\"status\":\"pending\",\"created_at\":\"2023-11-14T"
        "22:13:20.000Z\",\"updated_at\":\"2023-11-14T22:13:20.000Z\"}";

static const char *const want_wf =
        "{\"id\":\"@WF@\",\"name\":\"shop\",\"version\":1,\"definition\":{\"name\":\"shop\","
        "\"steps\":[]},\"created_at\":\"2023-11-14T22:13:20.000Z\"}";

static const char *const want_wf2 =
        "{\"id\":\"@WF2@\",\"name\":\"zeta\",\"version\":1,\"definition\":{\"name\":\"zeta\","
        "\"description\":\"a \\\"z\\\"\\n\",\"steps\":[]},\"created_at\":\"2023-11-14T22:13:2"
        "0.000Z\"}";

static const char *const want_runs =
        "[{\"id\":\"run_4\",\"workflow_id\":\"@WF@\",\"workflow_name\":\"shop\",\"workflow_ve"
        "rsion\":1,\"status\":\"waiting\",\"input\":{\"n\":1},\"output\":null,\"order_id\":nu"
        "ll,\"idempotency_key\":null,\"error_message\":null,\"created_at\":\"2023-11-14T22:13"
        ":20.001Z\",\"started_at\":\"2023-11-14T22:13:20.110Z\",\"completed_at\":null},{\"id"
        "\":\"run_3\",\"workflow_id\":\"@WF@\",\"workflow_name\":\"shop\",\"workflow_version"
        "\":1,\"status\":\"running\",\"input\":{\"n\":1},\"output\":null,\"order_id\":null,\""
        "idempotency_key\":\"k3\",\"error_message\":null,\"created_at\":\"2023-11-14T22:13:20"
        ".001Z\",\"started_at\":\"2023-11-14T22:13:20.070Z\",\"completed_at\":null}]";

static const char *const want_runs_waiting =
        "[{\"id\":\"run_4\",\"workflow_id\":\"@WF@\",\"workflow_name\":\"shop\",\"workflow_ve"
        "rsion\":1,\"status\":\"waiting\",\"input\":{\"n\":1},\"output\":null,\"order_id\":nu"
        "ll,\"idempotency_key\":null,\"error_message\":null,\"created_at\":\"2023-11-14T22:13"
        ":20.001Z\",\"started_at\":\"2023-11-14T22:13:20.110Z\",\"completed_at\":null},{\"id"
        "\":\"run_1\",\"workflow_id\":\"@WF@\",\"workflow_name\":\"shop\",\"workflow_version"
        "\":1,\"status\":\"waiting\",\"input\":{\"n\":1},\"output\":null,\"order_id\":\"ord_1"
        "\",\"idempotency_key\":\"k\\\"1\",\"error_message\":null,\"created_at\":\"2023-11-14"
        "T22:13:20.001Z\",\"started_at\":\"2023-11-14T22:13:20.010Z\",\"completed_at\":null}]";

static const char *const want_wfs =
        "[{\"id\":\"@WF2@\",\"name\":\"zeta\",\"version\":1,\"description\":\"a \\\"z\\\"\\n"
        "\",\"created_at\":\"2023-11-14T22:13:20.000Z\"},{\"id\":\"@WF@\",\"name\":\"shop\","
        "\"version\":1,\"description\":null,\"created_at\":\"2023-11-14T22:13:20.000Z\"}]";

static const char *const want_orders =
        "[{\"id\":\"ord_2\",\"amount\":3.0,\"status\":\"pending\",\"created_at\":\"2023-11-14"
        "T22:13:20.000Z\",\"updated_at\":\"2023-11-14T22:13:20.000Z\"},{\"id\":\"ord_1\",\"am"
        "ount\":12.5,\"status\":\"validated\",\"created_at\":\"2023-11-14T22:13:20.000Z\",\"u"
        "pdated_at\":\"2023-11-14T22:13:20.020Z\"}]";

static void test_run_documents(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL;
    durable_code rc;

    scenario(f);
    rc = store_run_json(f->s, "run_1", &text, &err);
    check(f, "run_1", rc, text, &err, want_run_1);
    for (int i = 0; i < 2; i++) { /* the second read may be the cache's */
        rc = store_run_json(f->s, "run_2", &text, &err);
        check(f, "run_2", rc, text, &err, want_run_2);
    }
    rc = store_run_json(f->s, "run_3", &text, &err);
    check(f, "run_3", rc, text, &err, want_run_3);
}

static void test_event_documents(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL;
    durable_code rc;

    scenario(f);
    rc = store_events_json(f->s, "run_1", 0, &text, &err);
    check(f, "events run_1", rc, text, &err, want_ev_1);
    rc = store_events_json(f->s, "run_1", 6, &text, &err);
    check(f, "events run_1 after 6", rc, text, &err, want_ev_1_6);
    rc = store_events_json(f->s, "run_2", 0, &text, &err);
    check(f, "events run_2", rc, text, &err, want_ev_2);
    rc = store_events_json(f->s, "run_3", 0, &text, &err);
    check(f, "events run_3", rc, text, &err, want_ev_3);
    rc = store_events_json(f->s, "run_4", 0, &text, &err);
    check(f, "events run_4", rc, text, &err, want_ev_4);
    rc = store_events_json(f->s, "run_5", 0, &text, &err);
    check(f, "events run_5", rc, text, &err, want_ev_5);
    rc = store_events_since(f->s, 3, 3, &text, &err);
    check(f, "events since 3", rc, text, &err, want_since);
    rc = store_events_since(f->s, 1000, 0, &text, &err);
    check(f, "events since 1000", rc, text, &err, "[]");
}

static void test_other_documents(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct store_run_query q = { .page = { 2, 1 } };
    struct store_page page = { 0, 0 };
    char *text = NULL;
    int64_t total = -1;
    char name[64];
    durable_code rc;

    scenario(f);
    rc = store_order_json(f->s, "ord_1", &text, &err);
    check(f, "order", rc, text, &err, want_order);
    rc = store_order_json(f->s, "ord_2", &text, &err);
    check(f, "order 2", rc, text, &err, want_order_2);
    rc = store_workflow_json(f->s, "shop", &text, &err);
    check(f, "workflow", rc, text, &err, want_wf);
    rc = store_workflow_json(f->s, "zeta", &text, &err);
    check(f, "workflow zeta", rc, text, &err, want_wf2);
    rc = store_runs_list(f->s, &q, &text, &total, &err);
    snprintf(name, sizeof(name), "runs total %lld", (long long)total);
    check(f, name, rc, text, &err, want_runs);
    assert_int_equal(total, 5);
    q.status = "waiting";
    q.page.offset = 0;
    rc = store_runs_list(f->s, &q, &text, NULL, &err);
    check(f, "runs waiting", rc, text, &err, want_runs_waiting);
    rc = store_workflows_list(f->s, page, &text, &total, &err);
    check(f, "workflows", rc, text, &err, want_wfs);
    assert_int_equal(total, 2);
    rc = store_orders_list(f->s, page, &text, &total, &err);
    check(f, "orders", rc, text, &err, want_orders);
    assert_int_equal(total, 2);
    page.offset = 2;
    rc = store_orders_list(f->s, page, &text, &total, &err);
    check(f, "orders past the end", rc, text, &err, "[]");
    assert_int_equal(total, 2);
}

/* The status a run's document shows. */
static void assert_doc_status(struct fixture *f, const char *run_id, const char *want)
{
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL;
    char needle[64];

    assert_int_equal(store_run_json(f->s, run_id, &text, &err), DURABLE_OK);
    snprintf(needle, sizeof(needle), "\"status\":\"%s\"", want);
    if (!strstr(text, needle))
        fail_msg("%s: want %s in %s", run_id, needle, text);
    free(text);
}

/* A finished run's document, once read, is answered again until a retry
 * commits; a rolled-back retry changes nothing. */
static void test_finished_run_after_retry(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 10);

    create_run(f, "run_1", NULL, NULL, NULL);
    t.run_status = RUN_FAILED;
    t.error_message = "bad";
    tr(f, t);
    assert_doc_status(f, "run_1", "failed");
    assert_doc_status(f, "run_1", "failed");
    t = step_tr(TR_RUN_RETRY, "run_1", NULL, 0, T0 + 20);
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_OK);
    store_tx_rollback(f->s);
    assert_doc_status(f, "run_1", "failed");
    tr(f, t);
    assert_doc_status(f, "run_1", "running");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_run_documents),
        T(test_event_documents),
        T(test_other_documents),
        T(test_finished_run_after_retry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
