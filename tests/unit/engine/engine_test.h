/*
 * engine_test.h - what the engine's tests share (engine_test.c): a fresh
 * database in a temporary directory per test, and the calls every test
 * makes through the public API, failing the test with the engine's message
 * when one does not succeed.
 */
#ifndef DURABLE_TESTS_ENGINE_TEST_H
#define DURABLE_TESTS_ENGINE_TEST_H

#include <jansson.h>

#include "durable.h"

struct fixture {
    char dir[64];
    char db[96];
    durable *d;
};

/* cmocka setup and teardown: a temporary directory with a database opened
 * with DURABLE_RECOVER_ALL and DURABLE_DURABILITY_PROCESS; closed and
 * removed. */
int setup(void **state);
int teardown(void **state);

durable *open_db(const char *path, durable_recovery rec, durable_durability dur);
/* The registered workflow's id (durable_free it). */
char *reg(durable *d, const char *json);
/* A started run's id (durable_free it); order and key may be NULL. */
char *start(durable *d, const char *wf, const char *order, const char *key);
/* The run's final status, within 60 s. */
const char *wait_run(durable *d, const char *run);
/* The run document and its history, parsed (json_decref them). */
json_t *get_run(durable *d, const char *run);
json_t *get_events(durable *d, const char *run);
/* How many events of `type` (and of step `step`, when not NULL). */
int count_events(json_t *events, const char *type, const char *step);
/* The step `id` of a run document (borrowed); fails the test if none. */
json_t *step_of(json_t *run, const char *id);
/* How many threads this process has now (/proc/self/task). */
int count_threads(void);

#endif
