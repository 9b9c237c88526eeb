/*
 * test_actions.c - business actions registered from C
 * (durable_action_register): applied in the transaction that completes
 * their step, once per step even when the process is SIGKILLed inside that
 * transaction; a refusal fails the step and keeps none of its writes; the
 * names are checked where definitions are.
 */
#include "util/common.h"

#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"

/* What the action does beyond counting. */
enum how { COUNT, KILL, REFUSE, BAD_VALUE };

/* Adds 1 to key "count" and records what it was called with under
 * "seen/STEP"; then, as `how` says, kills the process before the commit,
 * refuses, or writes a value that is not JSON. */
static void count_action(durable_action_tx *tx, const durable_action_call *call, void *ud)
{
    enum how how = *(const enum how *)ud;
    char *v = NULL, buf[64], key[128];
    json_t *seen;
    char *seen_text;

    assert_int_equal(durable_action_get(tx, "count", &v), DURABLE_OK);
    snprintf(buf, sizeof(buf), "%ld", (v ? strtol(v, NULL, 10) : 0) + 1);
    durable_free(v);
    assert_int_equal(durable_action_put(tx, "count", buf), DURABLE_OK);
    seen = json_pack("{s:s, s:s, s:s, s:s, s:s}", "action", call->action, "run_id", call->run_id,
                     "key", call->idempotency_key, "output", call->output_json, "input",
                     call->input_json);
    seen_text = json_dumps(seen, JSON_COMPACT);
    snprintf(key, sizeof(key), "seen/%s", call->step_id);
    assert_int_equal(durable_action_put(tx, key, seen_text), DURABLE_OK);
    free(seen_text);
    json_decref(seen);
    if (how == KILL)
        raise(SIGKILL); /* inside the transaction, before its commit */
    if (how == REFUSE)
        durable_action_refuse(tx, "out of stock");
    if (how == BAD_VALUE)
        assert_int_equal(durable_action_put(tx, "count", "{nope"), DURABLE_EINVAL);
}

static enum how how_count = COUNT, how_kill = KILL, how_refuse = REFUSE, how_bad = BAD_VALUE;

/* The committed value of key, or NULL (free it). */
static char *kv(durable *d, const char *key)
{
    durable_error err = { 0 };
    char *v = NULL;

    if (durable_kv_get(d, key, &v, &err) != DURABLE_OK)
        fail_msg("kv %s: %s", key, err.msg);
    return v;
}

static void assert_kv(durable *d, const char *key, const char *want)
{
    char *v = kv(d, key);

    if (want) {
        assert_non_null(v);
        assert_string_equal(v, want);
    } else {
        assert_null(v);
    }
    durable_free(v);
}

static void must_register_action(durable *d, const char *name, enum how *how)
{
    durable_error err = { 0 };

    if (durable_action_register(d, name, count_action, how, &err) != DURABLE_OK)
        fail_msg("register %s: %s", name, err.msg);
}

#define TWO_STEPS                                                                      \
    "{\"name\":\"stock\",\"steps\":["                                                  \
    "{\"id\":\"a\",\"action\":\"reserve_stock\",\"config\":{\"duration_seconds\":0}}," \
    "{\"id\":\"b\",\"action\":\"reserve_stock\",\"config\":{\"duration_seconds\":0},"  \
    "\"depends_on\":[\"a\"]}]}"

static void test_action_commits_with_each_step(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf, *run = NULL, *v;
    json_t *ev, *seen, *in, *data = NULL;
    size_t i;

    must_register_action(f->d, "reserve_stock", &how_count);
    wf = reg(f->d, TWO_STEPS);
    {
        durable_run_request req = { .workflow = wf, .input_json = "{\"sku\":\"X1\"}" };

        assert_int_equal(durable_run_start(f->d, &req, &run, NULL, &err), DURABLE_OK);
    }
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_kv(f->d, "count", "2");
    v = kv(f->d, "seen/b");
    assert_non_null(v);
    seen = json_loads(v, 0, NULL);
    durable_free(v);
    assert_string_equal(json_string_value(json_object_get(seen, "action")), "reserve_stock");
    assert_string_equal(json_string_value(json_object_get(seen, "run_id")), run);
    assert_non_null(strstr(json_string_value(json_object_get(seen, "key")), "/b"));
    in = json_loads(json_string_value(json_object_get(seen, "input")), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(in, "sku")), "X1");
    json_decref(in);
    json_decref(seen);
    ev = get_events(f->d, run);
    assert_int_equal(count_events(ev, "action_applied", "a"), 1);
    assert_int_equal(count_events(ev, "action_applied", "b"), 1);
    for (i = 0; i < json_array_size(ev); i++) {
        json_t *e = json_array_get(ev, i);
        if (strcmp(json_string_value(json_object_get(e, "type")), "action_applied") == 0)
            data = json_object_get(e, "data");
    }
    assert_non_null(data);
    assert_string_equal(json_string_value(json_object_get(data, "action")), "reserve_stock");
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

/* The child is SIGKILLed inside the transaction that completes step a, its
 * action's write made but not committed. Reopened here, the run waits for
 * the action to be registered, then step a runs again and the count ends
 * at 1 per step. */
static void test_killed_inside_the_commit_applies_once(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *run = NULL;
    int status = 0;
    pid_t pid;
    json_t *ev;

    durable_close(f->d); /* no engine threads when forking */
    f->d = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        durable *d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_FULL);

        must_register_action(d, "reserve_stock", &how_kill);
        start(d, reg(d, TWO_STEPS), NULL, "stock-1");
        sleep(60); /* the action kills this process */
        _exit(3);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_FULL);
    assert_kv(f->d, "count", NULL); /* the write died with its transaction */
    assert_int_equal(durable_run_find(f->d, "stock", "stock-1", &run, &err), DURABLE_OK);
    must_register_action(f->d, "reserve_stock", &how_count);
    assert_string_equal(wait_run(f->d, run), "completed");
    ev = get_events(f->d, run);
    assert_int_equal(count_events(ev, "action_applied", "a"), 1);
    assert_int_equal(count_events(ev, "action_applied", "b"), 1);
    assert_int_equal(count_events(ev, "step_completed", "a"), 1);
    json_decref(ev);
    assert_kv(f->d, "count", "2");
    durable_free(run);
}

static void test_refusal_fails_the_step_and_writes_nothing(void **state)
{
    struct fixture *f = *state;
    char *wf, *run;
    json_t *doc, *ev;
    const char *code = NULL;
    size_t i;

    must_register_action(f->d, "reserve_stock", &how_refuse);
    wf = reg(f->d, "{\"name\":\"stock\",\"steps\":[{\"id\":\"a\",\"action\":\"reserve_stock\","
                   "\"config\":{\"duration_seconds\":0,\"max_retries\":0}}]}");
    run = start(f->d, wf, NULL, NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "a"), "status")), "failed");
    assert_non_null(
            strstr(json_string_value(json_object_get(doc, "error_message")), "out of stock"));
    json_decref(doc);
    ev = get_events(f->d, run);
    for (i = 0; i < json_array_size(ev); i++) {
        json_t *e = json_array_get(ev, i);
        if (strcmp(json_string_value(json_object_get(e, "type")), "step_failed") == 0)
            code = json_string_value(json_object_get(json_object_get(e, "data"), "code"));
    }
    assert_non_null(code);
    assert_string_equal(code, "action_failed");
    assert_int_equal(count_events(ev, "action_applied", NULL), 0);
    assert_int_equal(count_events(ev, "step_completed", NULL), 0);
    json_decref(ev);
    assert_kv(f->d, "count", NULL);
    assert_kv(f->d, "seen/a", NULL);
    durable_free(run);
    durable_free(wf);
}

static void test_value_not_json_fails_the_step(void **state)
{
    struct fixture *f = *state;
    char *wf, *run;
    json_t *doc;

    must_register_action(f->d, "reserve_stock", &how_bad);
    wf = reg(f->d, "{\"name\":\"stock\",\"steps\":[{\"id\":\"a\",\"action\":\"reserve_stock\","
                   "\"config\":{\"duration_seconds\":0,\"max_retries\":0}}]}");
    run = start(f->d, wf, NULL, NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    doc = get_run(f->d, run);
    assert_non_null(strstr(json_string_value(json_object_get(doc, "error_message")), "not JSON"));
    json_decref(doc);
    assert_kv(f->d, "count", NULL);
    durable_free(run);
    durable_free(wf);
}

static void test_names(void **state)
{
    struct fixture *f = *state;
    const char *typo =
            "{\"name\":\"stock\",\"steps\":[{\"id\":\"a\",\"action\":\"reserve_stok\"}]}";
    durable_error err = { 0 };
    char *v = NULL;

    assert_int_equal(durable_action_register(f->d, "ship_order", count_action, &how_count, &err),
                     DURABLE_ECONFLICT);
    must_register_action(f->d, "reserve_stock", &how_count);
    assert_int_equal(durable_action_register(f->d, "reserve_stock", count_action, &how_count, &err),
                     DURABLE_ECONFLICT);
    assert_int_equal(durable_action_register(f->d, "reserve stock", count_action, NULL, &err),
                     DURABLE_EINVAL);
    assert_int_equal(durable_action_register(f->d, "", count_action, NULL, &err), DURABLE_EINVAL);
    assert_int_equal(durable_action_register(f->d, "x", NULL, NULL, &err), DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_workflow_register(f->d, typo, strlen(typo), NULL, NULL, NULL, &err),
                     DURABLE_EINVAL);
    assert_string_equal(err.msg, "steps[0].action: unknown action \"reserve_stok\" "
                                 "(did you mean \"reserve_stock\"?)");
    assert_int_equal(durable_kv_get(f->d, "", &v, &err), DURABLE_EINVAL);
    assert_null(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_action_commits_with_each_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_inside_the_commit_applies_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusal_fails_the_step_and_writes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_value_not_json_fails_the_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
