/*
 * test_code_scale.c - waiting costs no thread: 10,000 code-first runs
 * each in a long durable sleep leave the process with as many threads as
 * three such runs do; after a restart (the wake-up times brought near in
 * the database, as if the hour had passed) they all wake and complete.
 */
#include "util/common.h"

#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"

#define N_RUNS 10000

static atomic_int invocations;

static durable_code napper(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    atomic_fetch_add(&invocations, 1);
    DURABLE_TRY(durable_sleep(ctx, "nap", 3600 * 1000, err));
    *out = strdup("{\"rested\":true}");
    return DURABLE_OK;
}

/* The threads of this process. */
static int thread_count(void)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(dir);
    return n;
}

/* The number of runs in status `status`. */
static int64_t runs_in(durable *d, const char *status)
{
    durable_run_filter rf = { .status = status, .limit = 1 };
    durable_error err = { 0 };
    int64_t total = -1;
    char *list = NULL;

    assert_int_equal(durable_runs_list(d, &rf, &list, &total, &err), DURABLE_OK);
    durable_free(list);
    return total;
}

/* Waits (up to 5 minutes) until n runs are in status `status`. */
static void wait_for(durable *d, const char *status, int64_t n)
{
    struct timespec ts = { 0, 50 * 1000000L };
    int64_t got = 0;

    for (int i = 0; i < 6000 && (got = runs_in(d, status)) < n; i++)
        nanosleep(&ts, NULL);
    assert_int_equal(got, n);
}

static atomic_int started, start_failed;

static void on_started(const durable_run_started *o, void *ud)
{
    (void)ud;
    if (o->code == DURABLE_OK)
        atomic_fetch_add(&started, 1);
    else
        atomic_fetch_add(&start_failed, 1);
}

static void start_runs(durable *d, int n)
{
    durable_run_request req = { .workflow = "napper", .input_json = "{}" };
    durable_error err = { 0 };

    for (int i = 0; i < n; i++)
        assert_int_equal(durable_run_start_async(d, &req, on_started, NULL, &err), DURABLE_OK);
}

static void test_sleeping_runs_hold_no_thread(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    sqlite3 *db = NULL;
    int few, many;
    char sql[160];

    assert_int_equal(durable_workflow_fn_register(f->d, "napper", 1, napper, NULL, &err),
                     DURABLE_OK);
    start_runs(f->d, 3);
    wait_for(f->d, "waiting", 3);
    few = thread_count();
    start_runs(f->d, N_RUNS - 3);
    wait_for(f->d, "waiting", N_RUNS);
    many = thread_count();
    assert_int_equal(atomic_load(&start_failed), 0);
    assert_int_equal(atomic_load(&started), N_RUNS);
    print_message("threads: %d with 3 sleeping runs, %d with %d\n", few, many, N_RUNS);
    assert_int_equal(many, few);
    assert_int_equal(atomic_load(&invocations), N_RUNS);

    /* An hour later: the wake-ups, a second from now, come after a restart. */
    durable_close(f->d);
    f->d = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "UPDATE steps SET wake_at = %lld WHERE step_id = 'nap'",
             (long long)time(NULL) * 1000 + 1000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), N_RUNS);
    sqlite3_close(db);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    assert_int_equal(durable_workflow_fn_register(f->d, "napper", 1, napper, NULL, &err),
                     DURABLE_OK);
    wait_for(f->d, "completed", N_RUNS);
    assert_int_equal(runs_in(f->d, "waiting"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sleeping_runs_hold_no_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
