/*
 * engine_test.c - the helpers of engine_test.h.
 */
#include "util/common.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine_test.h"

durable *open_db(const char *path, durable_recovery rec, durable_durability dur)
{
    durable_options o = { .db_path = path, .recovery = rec, .durability = dur };
    durable_error err = { 0 };
    durable *d = durable_open(&o, &err);
    if (!d)
        fail_msg("durable_open: %s", err.msg);
    return d;
}

int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/durable-engine-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/t.db", f->dir);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    *state = f;
    return 0;
}

int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[160];
    durable_close(f->d);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(0, system(cmd)); /* test code: a temp dir we made */
    free(f);
    return 0;
}

char *reg(durable *d, const char *json)
{
    durable_error err = { 0 };
    char *id = NULL;
    if (durable_workflow_register(d, json, strlen(json), &id, NULL, NULL, &err) != DURABLE_OK)
        fail_msg("register: %s", err.msg);
    return id;
}

char *start(durable *d, const char *wf, const char *order, const char *key)
{
    durable_run_request req = { .workflow = wf, .order_id = order, .idempotency_key = key };
    durable_error err = { 0 };
    char *run = NULL;
    if (durable_run_start(d, &req, &run, NULL, &err) != DURABLE_OK)
        fail_msg("start: %s", err.msg);
    return run;
}

const char *wait_run(durable *d, const char *run)
{
    durable_error err = { 0 };
    const char *status = NULL;
    if (durable_run_wait(d, run, 60000, &status, &err) != DURABLE_OK)
        fail_msg("wait: %s", err.msg);
    return status;
}

json_t *get_run(durable *d, const char *run)
{
    durable_error err = { 0 };
    char *text = NULL;
    json_t *j;
    assert_int_equal(DURABLE_OK, durable_run_get(d, run, &text, &err));
    j = json_loads(text, 0, NULL);
    durable_free(text);
    assert_non_null(j);
    return j;
}

json_t *get_events(durable *d, const char *run)
{
    durable_error err = { 0 };
    char *text = NULL;
    json_t *j;
    assert_int_equal(DURABLE_OK, durable_run_events(d, run, 0, &text, &err));
    j = json_loads(text, 0, NULL);
    durable_free(text);
    assert_non_null(j);
    return j;
}

int count_events(json_t *events, const char *type, const char *step)
{
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(events, i, e)
    {
        const char *sid = json_string_value(json_object_get(e, "step_id"));
        if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0 &&
            (!step || (sid && strcmp(sid, step) == 0)))
            n++;
    }
    return n;
}

json_t *step_of(json_t *run, const char *id)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(run, "steps"), i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "step_id")), id) == 0)
            return s;
    }
    fail_msg("no step %s", id);
    return NULL;
}

int count_threads(void)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    while (dir && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    if (dir)
        closedir(dir);
    return n;
}
