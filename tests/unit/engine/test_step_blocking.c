/*
 * test_step_blocking.c - blocking step types (durable_step_type.blocking),
 * through the public API as a program uses them: a handler blocked on a
 * condition variable stalls no other run; a call answered after start()
 * returned, from another thread; cancel() called when the run is
 * cancelled, when the attempt times out and when the engine closes; the
 * unanswered attempt started again after a reopen and after a SIGKILL, with
 * the same idempotency key, once the program registers its type again; and
 * a misspelt type name refused with a suggestion.
 */
#include "util/common.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"

/* What the handlers share with the test's thread, under mu. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int n_started;                /* start() calls */
    int n_cancelled;              /* cancel() calls */
    bool is_open;                 /* the gate: blocked start() calls may go on */
    durable_step_call *held;      /* the last call `later` kept unanswered */
    durable_step_call *cancelled; /* the call cancel() was given */
    char key[256];                /* the last start()'s idempotency key */
    int attempt;                  /* and its attempt */
    const char *kill_file;        /* `later` in the crash child: write the call, then die */
} g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void g_reset(void)
{
    pthread_mutex_lock(&g.mu);
    g.n_started = 0;
    g.n_cancelled = 0;
    g.is_open = false;
    g.held = NULL;
    g.cancelled = NULL;
    g.key[0] = '\0';
    g.attempt = 0;
    g.kill_file = NULL;
    pthread_mutex_unlock(&g.mu);
}

/* Waits (60 s at most: a hang fails the test) until *counter >= n. */
static void wait_count(const int *counter, int n)
{
    struct timespec until;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&g.mu);
    while (*counter < n && rc == 0)
        rc = pthread_cond_timedwait(&g.cond, &g.mu, &until);
    pthread_mutex_unlock(&g.mu);
    assert_true(*counter >= n);
}

static void note_start(durable_step_call *call)
{
    snprintf(g.key, sizeof(g.key), "%s", durable_step_call_idempotency_key(call));
    g.attempt = durable_step_call_attempt(call);
    g.n_started++;
    pthread_cond_broadcast(&g.cond);
}

/* `gate`: blocks until the gate opens (or the call is cancelled). */
static void gate_start(durable_step_call *call, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&g.mu);
    note_start(call);
    while (!g.is_open && g.n_cancelled == 0)
        pthread_cond_wait(&g.cond, &g.mu);
    pthread_mutex_unlock(&g.mu);
    durable_step_done(call, "{\"gate\":\"passed\"}");
}

/* `quick`: answers at once, on the step thread, with its key. */
static void quick_start(durable_step_call *call, void *ud)
{
    json_t *out = json_pack("{s:s, s:s}", "key", durable_step_call_idempotency_key(call), "config",
                            durable_step_call_config(call));
    char *text = json_dumps(out, JSON_COMPACT);

    (void)ud;
    durable_step_done(call, text);
    free(text);
    json_decref(out);
}

/* `later`: keeps the call and returns without answering; in the crash
 * child, writes "RUN_ID KEY" to kill_file and kills its process. */
static void later_start(durable_step_call *call, void *ud)
{
    FILE *fp;

    (void)ud;
    pthread_mutex_lock(&g.mu);
    if (g.kill_file) {
        fp = fopen(g.kill_file, "w");
        if (fp) {
            fprintf(fp, "%s %s\n", durable_step_call_run_id(call),
                    durable_step_call_idempotency_key(call));
            fclose(fp);
        }
        raise(SIGKILL);
    }
    g.held = call;
    note_start(call);
    pthread_mutex_unlock(&g.mu);
}

static void later_cancel(durable_step_call *call, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&g.mu);
    g.cancelled = call;
    g.n_cancelled++;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.mu);
}

static const durable_step_type gate_type = {
    .name = "gate", .start = gate_start, .cancel = later_cancel, .blocking = true
};
static const durable_step_type quick_type = { .name = "quick",
                                              .start = quick_start,
                                              .blocking = true };
static const durable_step_type later_type = {
    .name = "later", .start = later_start, .cancel = later_cancel, .blocking = true
};
/* `later` as a program would register it again after a restart: answers. */
static const durable_step_type later_answering = { .name = "later",
                                                   .start = quick_start,
                                                   .blocking = true };

static void must_register(durable *d, const durable_step_type *t)
{
    durable_error err = { 0 };

    if (durable_step_type_register(d, t, &err) != DURABLE_OK)
        fail_msg("register %s: %s", t->name, err.msg);
}

static const char *step_status(durable *d, const char *run, const char *step)
{
    static char buf[32];
    json_t *doc = get_run(d, run);

    snprintf(buf, sizeof(buf), "%s",
             json_string_value(json_object_get(step_of(doc, step), "status")));
    json_decref(doc);
    return buf;
}

/* With two step threads, one blocked in gate's start(): ten runs of a
 * blocking type and a built-in one complete meanwhile. */
static void test_blocked_handler_stalls_nothing(void **state)
{
    struct fixture *f = *state;
    durable_options o = { .db_path = f->db,
                          .durability = DURABLE_DURABILITY_PROCESS,
                          .step_threads = 2 };
    durable_error err = { 0 };
    char *wf_gate, *wf_quick, *blocked, *runs[10];
    int i;

    g_reset();
    durable_close(f->d);
    f->d = durable_open(&o, &err);
    assert_non_null(f->d);
    must_register(f->d, &gate_type);
    must_register(f->d, &quick_type);
    wf_gate = reg(f->d, "{\"name\":\"gated\",\"steps\":[{\"id\":\"g\",\"type\":\"gate\"}]}");
    wf_quick = reg(f->d, "{\"name\":\"quick\",\"steps\":[{\"id\":\"q\",\"type\":\"quick\","
                         "\"config\":{\"n\":\"{{ .input.n }}\"}},{\"id\":\"t\",\"depends_on\":"
                         "[\"q\"],\"config\":{\"duration_seconds\":0}}]}");
    blocked = start(f->d, wf_gate, NULL, NULL);
    wait_count(&g.n_started, 1);
    for (i = 0; i < 10; i++) {
        char input[32];
        durable_run_request req = { .workflow = wf_quick, .input_json = input };
        snprintf(input, sizeof(input), "{\"n\":\"x%d\"}", i);
        assert_int_equal(durable_run_start(f->d, &req, &runs[i], NULL, &err), DURABLE_OK);
    }
    for (i = 0; i < 10; i++) {
        json_t *doc, *out;
        assert_string_equal(wait_run(f->d, runs[i]), "completed");
        doc = get_run(f->d, runs[i]);
        char want[160], config[32];
        out = json_object_get(step_of(doc, "q"), "output");
        snprintf(want, sizeof(want), "%s/q", runs[i]);
        assert_string_equal(json_string_value(json_object_get(out, "key")), want);
        snprintf(config, sizeof(config), "{\"n\":\"x%d\"}", i);
        assert_string_equal(json_string_value(json_object_get(out, "config")), config);
        json_decref(doc);
        durable_free(runs[i]);
    }
    /* all the while, the gated run waited in its handler */
    assert_string_equal(step_status(f->d, blocked, "g"), "running");
    pthread_mutex_lock(&g.mu);
    assert_int_equal(g.n_started, 1);
    g.is_open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.mu);
    assert_string_equal(wait_run(f->d, blocked), "completed");
    durable_free(blocked);
    durable_free(wf_gate);
    durable_free(wf_quick);
}

/* start() returns without answering; the test's thread answers later. */
static void test_answer_from_another_thread(void **state)
{
    struct fixture *f = *state;
    char *wf, *run;
    durable_step_call *call;
    json_t *doc, *out;

    g_reset();
    must_register(f->d, &later_type);
    wf = reg(f->d, "{\"name\":\"mail\",\"steps\":[{\"id\":\"send\",\"type\":\"later\"},"
                   "{\"id\":\"after\",\"depends_on\":[\"send\"],\"type\":\"log\","
                   "\"config\":{\"message\":\"sent {{ .steps.send.output.id }}\"}}]}");
    run = start(f->d, wf, NULL, NULL);
    wait_count(&g.n_started, 1);
    assert_string_equal(step_status(f->d, run, "send"), "running");
    pthread_mutex_lock(&g.mu);
    call = g.held;
    pthread_mutex_unlock(&g.mu);
    assert_string_equal(durable_step_call_step_id(call), "send");
    assert_string_equal(durable_step_call_run_id(call), run);
    assert_string_equal(durable_step_call_config(call), "{}");
    durable_step_done(call, "{\"id\":\"msg-1\"}"); /* frees call */
    assert_string_equal(wait_run(f->d, run), "completed");
    doc = get_run(f->d, run);
    out = json_object_get(step_of(doc, "send"), "output");
    assert_string_equal(json_string_value(json_object_get(out, "id")), "msg-1");
    json_decref(doc);
    assert_int_equal(g.n_cancelled, 0);
    durable_free(run);
    durable_free(wf);
}

/* A failure answered later fails the attempt like any other. */
static void test_failure_from_another_thread(void **state)
{
    struct fixture *f = *state;
    char *wf, *run;
    json_t *doc;

    g_reset();
    must_register(f->d, &later_type);
    wf = reg(f->d, "{\"name\":\"mail\",\"steps\":[{\"id\":\"send\",\"type\":\"later\"}]}");
    run = start(f->d, wf, NULL, NULL);
    wait_count(&g.n_started, 1);
    durable_step_fail(g.held, "mailbox_full", "the mailbox is full");
    assert_string_equal(wait_run(f->d, run), "failed");
    doc = get_run(f->d, run);
    assert_non_null(strstr(json_string_value(json_object_get(doc, "error_message")),
                           "the mailbox is full"));
    json_decref(doc);
    durable_free(run);
    durable_free(wf);
}

static void test_cancel_on_run_cancel(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf, *run;
    durable_step_call *call;

    g_reset();
    must_register(f->d, &later_type);
    wf = reg(f->d, "{\"name\":\"mail\",\"steps\":[{\"id\":\"send\",\"type\":\"later\"}]}");
    run = start(f->d, wf, NULL, NULL);
    wait_count(&g.n_started, 1);
    assert_int_equal(durable_run_cancel(f->d, run, &err), DURABLE_OK);
    wait_count(&g.n_cancelled, 1);
    pthread_mutex_lock(&g.mu);
    call = g.held;
    assert_ptr_equal(g.cancelled, call);
    pthread_mutex_unlock(&g.mu);
    durable_step_done(call, "{\"late\":true}"); /* ignored; frees call */
    assert_string_equal(wait_run(f->d, run), "cancelled");
    assert_string_not_equal(step_status(f->d, run, "send"), "completed");
    assert_int_equal(g.n_cancelled, 1);
    durable_free(run);
    durable_free(wf);
}

static void test_cancel_on_timeout(void **state)
{
    struct fixture *f = *state;
    char *wf, *run;
    json_t *doc;

    g_reset();
    must_register(f->d, &later_type);
    wf = reg(f->d, "{\"name\":\"mail\",\"steps\":[{\"id\":\"send\",\"type\":\"later\","
                   "\"timeout_seconds\":0.05}]}");
    run = start(f->d, wf, NULL, NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    wait_count(&g.n_cancelled, 1);
    doc = get_run(f->d, run);
    assert_non_null(strstr(json_string_value(json_object_get(doc, "error_message")), "timed out"));
    json_decref(doc);
    durable_step_done(g.held, "{}"); /* ignored; frees the call */
    durable_free(run);
    durable_free(wf);
}

/* durable_close cancels the unanswered call; the next open resumes the
 * run once the program registers its type, with the same key. */
static void test_close_cancels_and_reopen_resumes(void **state)
{
    struct fixture *f = *state;
    char *wf, *run, key[256];
    json_t *doc, *out;

    g_reset();
    must_register(f->d, &later_type);
    wf = reg(f->d, "{\"name\":\"mail\",\"steps\":[{\"id\":\"send\",\"type\":\"later\"}]}");
    run = start(f->d, wf, NULL, NULL);
    wait_count(&g.n_started, 1);
    snprintf(key, sizeof(key), "%s", g.key);
    durable_close(f->d);
    f->d = NULL;
    assert_int_equal(g.n_cancelled, 1);
    durable_step_done(g.held, "{}"); /* after close: ignored, frees the call */

    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    must_register(f->d, &later_answering);
    assert_string_equal(wait_run(f->d, run), "completed");
    doc = get_run(f->d, run);
    out = json_object_get(step_of(doc, "send"), "output");
    assert_string_equal(json_string_value(json_object_get(out, "key")), key);
    json_decref(doc);
    durable_free(run);
    durable_free(wf);
}

/* A child process starts the run; its handler is SIGKILLed with the call
 * unanswered. Reopened here, the attempt runs again with the same key. */
static void test_killed_attempt_runs_again(void **state)
{
    struct fixture *f = *state;
    char kill_file[128], run_id[128], key[256];
    int status = 0;
    FILE *fp;
    pid_t pid;
    json_t *doc, *ev;

    durable_close(f->d); /* no engine threads when forking */
    f->d = NULL;
    snprintf(kill_file, sizeof(kill_file), "%s/killed", f->dir);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        durable *d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
        char *wf;

        g.kill_file = kill_file;
        must_register(d, &later_type);
        wf = reg(d, "{\"name\":\"mail\",\"steps\":[{\"id\":\"send\",\"type\":\"later\"}]}");
        start(d, wf, NULL, "mail-7");
        sleep(60); /* the handler kills this process */
        _exit(3);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    fp = fopen(kill_file, "r");
    assert_non_null(fp);
    assert_int_equal(fscanf(fp, "%127s %255s", run_id, key), 2);
    fclose(fp);

    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    assert_string_equal(step_status(f->d, run_id, "send"), "running");
    must_register(f->d, &later_answering);
    assert_string_equal(wait_run(f->d, run_id), "completed");
    doc = get_run(f->d, run_id);
    assert_string_equal(json_string_value(json_object_get(
                                json_object_get(step_of(doc, "send"), "output"), "key")),
                        key);
    json_decref(doc);
    ev = get_events(f->d, run_id);
    /* the same attempt, restarted: one start, then `recovered` naming it */
    assert_int_equal(count_events(ev, "step_started", "send"), 1);
    assert_int_equal(count_events(ev, "recovered", NULL), 1);
    assert_int_equal(count_events(ev, "step_completed", "send"), 1);
    json_decref(ev);
}

static void test_misspelt_type(void **state)
{
    struct fixture *f = *state;
    const char *def = "{\"name\":\"mail\",\"steps\":[{\"id\":\"send\",\"type\":\"send_emial\"}]}";
    durable_step_type t = quick_type;
    durable_error err = { 0 };

    t.name = "send_email";
    must_register(f->d, &t);
    assert_int_equal(durable_workflow_register(f->d, def, strlen(def), NULL, NULL, NULL, &err),
                     DURABLE_EINVAL);
    assert_string_equal(err.msg, "steps[0].type: unknown step type \"send_emial\" "
                                 "(did you mean \"send_email\"?)");
}

static void test_blocking_refusals(void **state)
{
    struct fixture *f = *state;
    durable_step_type t = quick_type;
    durable_error err = { 0 };

    t.name = "eager";
    t.answers_at_once = true;
    assert_int_equal(durable_step_type_register(f->d, &t, &err), DURABLE_EINVAL);
    assert_non_null(strstr(err.msg, "blocking"));
    t.answers_at_once = false;
    t.timer = quick_start;
    assert_int_equal(durable_step_type_register(f->d, &t, &err), DURABLE_EINVAL);
    t.timer = NULL;
    assert_int_equal(durable_step_type_register(f->d, &t, &err), DURABLE_OK);
}

static void test_step_threads_option(void **state)
{
    struct fixture *f = *state;
    durable_options o = { .db_path = f->db, .step_threads = -1 };
    durable_error err = { 0 };

    assert_null(durable_open(&o, &err));
    assert_int_equal(err.code, DURABLE_EINVAL);
    assert_string_equal(err.msg, "step_threads must be 0 (the default, 8) to 1024, got -1");
    o.step_threads = 1025;
    assert_null(durable_open(&o, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_blocked_handler_stalls_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_from_another_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_from_another_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_on_run_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_on_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels_and_reopen_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_attempt_runs_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misspelt_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_threads_option, setup, teardown),
    };
    return cmocka_run_group_tests_name("step_blocking", tests, NULL, NULL);
}
