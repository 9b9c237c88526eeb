/*
 * store_test.h - the fixture and helpers of the store's tests (store_test.c):
 * test_store.c, the conformance suite every backend passes through store.h,
 * and test_store_sqlite.c, the SQLite backend's own tests.
 */
#ifndef DURABLE_TESTS_UNIT_STORE_STORE_TEST_H
#define DURABLE_TESTS_UNIT_STORE_STORE_TEST_H

#include "util/common.h"

#include <jansson.h>

#include "store/store.h"

#define T0 1700000000000LL /* a fixed "now" in Unix ms */

struct fixture {
    char dir[64];
    char path[128];
    char location[512]; /* what the store opens: path, or DURABLE_TEST_STORE's */
    char pg_db[64];     /* the test's own PostgreSQL database, "" for none */
    struct store *s;
    struct store_events ev;
    char wf_id[ID_MAX];
};

extern const char *const wf_def;

durable_code apply1(struct fixture *f, const struct transition *t, struct transition_result *res,
                    durable_error *err);
void apply_ok(struct fixture *f, const struct transition *t, struct transition_result *res);
void put_workflow(struct fixture *f, const char *name, const char *def,
                  struct transition_result *res);
void create_order(struct fixture *f, const char *id, double amount);
void create_run(struct fixture *f, const char *run_id, const char *order_id, const char *key,
                struct transition_result *res);
struct transition step_tr(enum transition_kind kind, const char *run_id, const char *step_id,
                          int attempt, int64_t at_ms);
void step_ok(struct fixture *f, enum transition_kind kind, const char *run_id, const char *step_id,
             int attempt);
json_t *events_of(struct fixture *f, const char *run_id, int64_t after);
size_t event_count(struct fixture *f, const char *run_id);
void assert_seqs_dense(json_t *events);
const char *event_type(json_t *events, size_t i);
json_t *doc_of(durable_code (*read)(struct store *, const char *, char **, durable_error *),
               struct fixture *f, const char *id);
const char *step_field(json_t *run, const char *step_id, const char *field);
void assert_run_status(struct fixture *f, const char *run_id, enum run_status want);
void assert_step_status(struct fixture *f, const char *run_id, const char *step_id,
                        enum step_status want);
const char *order_status(struct fixture *f, const char *order_id, char buf[32]);
int setup_empty(void **state);
int setup(void **state);
int teardown(void **state);
json_t *parse_out(durable_code rc, char **text, const durable_error *err);
const char *store_test_location(const struct fixture *f);

#endif
