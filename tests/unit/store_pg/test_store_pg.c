/*
 * test_store_pg.c - the PostgreSQL backend's base against a real server:
 * locations, the schema and its migration (also by several nodes at once),
 * durability, the writer's transactions, ping, and the cluster operations
 * (join, heartbeat and reaping, claims with SKIP LOCKED, release, wake-ups,
 * leave).
 *
 * The server is the one DURABLE_TEST_PG names (ctest starts one with
 * tests/pg_server.py); each test empties its public schema first. Without
 * DURABLE_TEST_PG only the location tests run and the program exits 77
 * (skipped) saying why.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/pg/pg_int.h"

static const char *url;

/* ---- helpers ---- */

/* A direct connection of the test's own. */
static PGconn *direct(void)
{
    PGconn *c = NULL;
    durable_error err = { 0 };

    if (pg_connect(url, &c, &err) != DURABLE_OK)
        fail_msg("%s", err.msg);
    return c;
}

/* Runs test SQL (constant text) on c; fails the test on error. */
static void sql(PGconn *c, const char *text)
{
    PGresult *r = PQexec(c, text);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", text, PQerrorMessage(c));
    PQclear(r);
}

/* The integer the query answers. */
static int64_t sql_int(PGconn *c, const char *text)
{
    PGresult *r = PQexec(c, text);
    int64_t v;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", text, PQerrorMessage(c));
    v = pg_cell_int64(r, 0, 0);
    PQclear(r);
    return v;
}

/* Ends the server process of conn (as a server restart or a network cut
 * would) and waits until it is gone. */
static void terminate(PGconn *c, PGconn *conn)
{
    char pid[16];
    const char *params[1] = { pid };
    PGresult *r;

    snprintf(pid, sizeof(pid), "%d", PQbackendPID(conn));
    r = PQexecParams(c, "SELECT pg_terminate_backend($1::integer, 5000)", 1, NULL, params, NULL,
                     NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "t") != 0)
        fail_msg("terminate: %s", PQerrorMessage(c));
    PQclear(r);
}

static struct store *open_ok(durable_durability d)
{
    struct store *s = NULL;
    durable_error err = { 0 };

    if (pg_open(url, d, &s, &err) != DURABLE_OK)
        fail_msg("open: %s", err.msg);
    return s;
}

/* Every test starts from an empty database. */
static int setup(void **state)
{
    PGconn *c = direct();

    (void)state;
    sql(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    PQfinish(c);
    return 0;
}

/* ---- locations ---- */

static void test_locations(void **state)
{
    char *ci = NULL;
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(pg_location_conninfo("postgres://u@127.0.0.1:5/db", &ci, &err), DURABLE_OK);
    assert_string_equal(ci, "postgres://u@127.0.0.1:5/db");
    free(ci);
    assert_int_equal(pg_location_conninfo("postgresql://h/db?sslmode=disable", &ci, &err),
                     DURABLE_OK);
    assert_string_equal(ci, "postgresql://h/db?sslmode=disable");
    free(ci);
    assert_int_equal(pg_location_conninfo("postgresql:host=/tmp port=5 dbname=x", &ci, &err),
                     DURABLE_OK);
    assert_string_equal(ci, "host=/tmp port=5 dbname=x");
    free(ci);
    ci = (char *)"untouched";
    assert_int_equal(pg_location_conninfo("postgresql:nonsense=1", &ci, &err), DURABLE_EINVAL);
    assert_null(ci);
    assert_non_null(strstr(err.msg, "nonsense"));
    assert_int_equal(pg_location_conninfo("sqlite:x.db", &ci, &err), DURABLE_EINVAL);
    assert_int_equal(pg_location_conninfo("postgres://h:5/db?nokey=1", &ci, &err), DURABLE_EINVAL);
}

/* ---- schema ---- */

static void test_schema_created(void **state)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    PGconn *c = direct();
    durable_error err = { 0 };
    struct store *s2 = NULL;

    (void)state;
    assert_int_equal(sql_int(c, "SELECT version FROM schema_version"), pg_schema_version());
    assert_int_equal(sql_int(c, "SELECT count(*) FROM information_schema.tables"
                                " WHERE table_schema = 'public' AND table_name IN ('workflows',"
                                " 'orders', 'runs', 'steps', 'events', 'event_counter', 'nodes',"
                                " 'schema_version')"),
                     8);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM information_schema.columns"
                                " WHERE table_name = 'runs' AND column_name IN ('owner_node',"
                                " 'owner_epoch', 'deadline_at', 'idempotency_key')"),
                     4);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM information_schema.columns"
                                " WHERE table_name = 'events' AND column_name IN ('seq', 'gid')"),
                     2);
    store_close(s);
    /* Again: nothing to do, the version stays. */
    s = open_ok(DURABLE_DURABILITY_FULL);
    store_close(s);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM schema_version"), 1);
    /* A database of a newer build is refused. */
    sql(c, "UPDATE schema_version SET version = 999");
    assert_int_equal(pg_open(url, DURABLE_DURABILITY_FULL, &s2, &err), DURABLE_EUNSUPPORTED);
    assert_null(s2);
    assert_non_null(strstr(err.msg, "999"));
    PQfinish(c);
}

#define N_OPENERS 4

static void *open_thread(void *arg)
{
    durable_error err = { 0 };
    struct store *s = NULL;
    durable_code rc = pg_open(url, DURABLE_DURABILITY_FULL, &s, &err);

    if (rc != DURABLE_OK)
        fprintf(stderr, "open: %s\n", err.msg);
    store_close(s);
    *(durable_code *)arg = rc;
    return NULL;
}

/* Nodes starting at once on an empty database: one creates the schema, the
 * others wait for it on the advisory lock and find it done. */
static void test_concurrent_open(void **state)
{
    pthread_t t[N_OPENERS];
    durable_code rc[N_OPENERS];
    PGconn *c;

    (void)state;
    for (int i = 0; i < N_OPENERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &rc[i]), 0);
    for (int i = 0; i < N_OPENERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(rc[i], DURABLE_OK);
    }
    c = direct();
    assert_int_equal(sql_int(c, "SELECT version FROM schema_version"), pg_schema_version());
    assert_int_equal(sql_int(c, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM event_counter"), 1);
    PQfinish(c);
}

/* ---- the writer ---- */

static void test_synchronous(void **state)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    durable_error err = { 0 };
    int level = 0;

    (void)state;
    assert_int_equal(store_synchronous(s, &level, &err), DURABLE_OK);
    assert_int_equal(level, 2);
    store_close(s);
    s = open_ok(DURABLE_DURABILITY_PROCESS);
    assert_int_equal(store_synchronous(s, &level, &err), DURABLE_OK);
    assert_int_equal(level, 1);
    store_close(s);
}

static void insert_workflow(PGconn *w)
{
    sql(w, "INSERT INTO workflows VALUES ('wf1', 'shop', 1, '{}', 1)");
}

static void test_transactions(void **state)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    struct pg_store *p = pg_of(s);
    PGconn *c = direct();
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    insert_workflow(p->w);
    store_tx_rollback(s);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows"), 0);
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    insert_workflow(p->w);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows"), 0); /* not yet */
    assert_int_equal(store_tx_commit(s, &err), DURABLE_OK);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows"), 1);
    /* A transaction an error aborted does not commit. */
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    PQclear(PQexec(p->w, "INSERT INTO workflows VALUES ('wf1', 'dup', 1, '{}', 1)"));
    assert_int_equal(store_tx_commit(s, &err), DURABLE_EIO);
    store_tx_rollback(s);
    assert_int_equal(PQtransactionStatus(p->w), PQTRANS_IDLE);
    /* The writer reconnects after its connection was cut. */
    /* The writer and the reader reconnect after their connections were
     * cut, without an error. */
    terminate(c, p->w);
    terminate(c, p->readers[0]);
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    store_tx_rollback(s);
    assert_int_equal(store_ping(s, &err), DURABLE_OK);
    PQfinish(c);
    store_close(s);
}

static void test_ping(void **state)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    PGconn *c = direct();
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(store_ping(s, &err), DURABLE_OK);
    sql(c, "DROP TABLE schema_version");
    assert_int_equal(store_ping(s, &err), DURABLE_EIO);
    assert_non_null(strstr(err.msg, "schema_version"));
    PQfinish(c);
    store_close(s);
}

/* ---- the cluster ---- */

static struct store *node(const char *id, int64_t lease_ms, struct store_lease *l)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    durable_error err = { 0 };

    pg_store_set_node(s, id, lease_ms);
    if (s->ops->cluster->join(s, l, &err) != DURABLE_OK)
        fail_msg("join: %s", err.msg);
    return s;
}

/* Six unowned pending runs r1..r6, oldest first. */
static void insert_runs(PGconn *c)
{
    insert_workflow(c);
    sql(c, "INSERT INTO runs (id, workflow_id, status, input, created_at)"
           " SELECT 'r' || i, 'wf1', 'pending', '{}', i FROM generate_series(1, 6) i");
}

static void test_join_heartbeat(void **state)
{
    struct store_lease a = { 0 }, b = { 0 };
    struct store *s1 = node("n1", 10000, &a);
    struct store *s2;
    durable_error err = { 0 };

    (void)state;
    assert_string_equal(a.node_id, "n1");
    assert_int_equal(a.epoch, 1);
    assert_true(a.expires_at_ms > 0);
    assert_int_equal(s1->ops->cluster->heartbeat(s1, &a, &err), DURABLE_OK);
    /* The same id joining again is a new incarnation: the old one's lease is
     * gone. */
    s2 = node("n1", 10000, &b);
    assert_int_equal(b.epoch, 2);
    assert_int_equal(s1->ops->cluster->heartbeat(s1, &a, &err), DURABLE_ECONFLICT);
    assert_non_null(strstr(err.msg, "lost its lease"));
    assert_int_equal(s2->ops->cluster->heartbeat(s2, &b, &err), DURABLE_OK);
    store_close(s1);
    store_close(s2);
}

static void test_claim(void **state)
{
    struct store_lease la, lb;
    struct store *a = node("a", 10000, &la);
    struct store *b = node("b", 10000, &lb);
    PGconn *c = direct();
    PGconn *locker = direct();
    char ids[10][ID_MAX];
    int n = 0;
    durable_error err = { 0 };

    (void)state;
    insert_runs(c);
    assert_int_equal(pg_claim_ids(a, 2, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE owner_node = 'a'"
                                " AND owner_epoch = 1 AND id IN ('r1', 'r2')"),
                     2);
    /* A run locked elsewhere is skipped, not waited for. */
    sql(locker, "BEGIN; SELECT * FROM runs WHERE id = 'r3' FOR UPDATE");
    assert_int_equal(pg_claim_ids(b, 10, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 3);
    sql(locker, "COMMIT");
    assert_int_equal(pg_claim_ids(b, 10, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "r3");
    /* Finished runs are never claimed. */
    sql(c, "INSERT INTO runs (id, workflow_id, status, input, created_at)"
           " VALUES ('done', 'wf1', 'completed', '{}', 0)");
    assert_int_equal(pg_claim_ids(a, 10, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE owner_node IS NULL"), 1);
    /* The claim op needs the read side, which is not built yet. */
    assert_int_equal(a->ops->cluster->claim(a, 1, NULL, NULL, &err), DURABLE_EUNSUPPORTED);
    PQfinish(locker);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

struct wakes {
    int claims;
    int runs;
    char run_id[ID_MAX];
};

static void on_wake(enum store_wake w, const char *run_id, void *ud)
{
    struct wakes *k = ud;

    if (w == STORE_WAKE_CLAIM) {
        k->claims++;
    } else {
        k->runs++;
        snprintf(k->run_id, sizeof(k->run_id), "%s", run_id);
    }
}

/* Waits until s's wake-up socket is readable, then drains it into k. */
static void wait_wake(struct store *s, struct wakes *k)
{
    struct pollfd pfd = { .fd = s->ops->cluster->wake_fd(s), .events = POLLIN };
    durable_error err = { 0 };

    assert_true(pfd.fd >= 0);
    for (int i = 0; i < 100 && k->claims + k->runs == 0; i++) {
        if (poll(&pfd, 1, 100) > 0 &&
            s->ops->cluster->wake_drain(s, on_wake, k, &err) != DURABLE_OK)
            fail_msg("drain: %s", err.msg);
    }
    assert_true(k->claims + k->runs > 0);
}

static void test_release_and_wakeups(void **state)
{
    struct store_lease la, lb;
    struct store *a = node("a", 10000, &la);
    struct store *b = node("b", 10000, &lb);
    PGconn *c = direct();
    char ids[10][ID_MAX];
    int n = 0;
    struct wakes k = { 0 };
    durable_error err = { 0 };

    (void)state;
    insert_runs(c);
    assert_int_equal(pg_claim_ids(a, 6, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 6);
    /* Only the owner releases. */
    assert_int_equal(b->ops->cluster->release(b, "r1", &err), DURABLE_OK);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE owner_node IS NULL"), 0);
    assert_int_equal(a->ops->cluster->release(a, "r1", &err), DURABLE_OK);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE owner_node IS NULL"), 1);
    wait_wake(b, &k);
    assert_true(k.claims >= 1);
    assert_int_equal(pg_claim_ids(b, 6, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 1);
    /* A run's own channel carries its id. */
    memset(&k, 0, sizeof(k));
    sql(c, "SELECT pg_notify('durable_run', 'r4')");
    wait_wake(a, &k);
    assert_int_equal(k.runs, 1);
    assert_string_equal(k.run_id, "r4");
    /* A cut connection: the drain reconnects, listens again and asks for a
     * claim, since hints may have been lost. */
    memset(&k, 0, sizeof(k));
    terminate(c, pg_of(a)->cl);
    wait_wake(a, &k);
    assert_true(k.claims >= 1);
    memset(&k, 0, sizeof(k));
    sql(c, "SELECT pg_notify('durable_work', '')");
    wait_wake(a, &k);
    assert_true(k.claims >= 1);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

static void test_reap_and_leave(void **state)
{
    struct store_lease la, lb;
    struct store *a = node("a", 10000, &la);
    struct store *b = node("b", 10000, &lb);
    PGconn *c = direct();
    char ids[10][ID_MAX];
    int n = 0;
    durable_error err = { 0 };

    (void)state;
    insert_runs(c);
    assert_int_equal(pg_claim_ids(a, 4, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 4);
    /* a's lease runs out (as if a stopped renewing it for its length; set
     * in the database so that a loaded machine cannot change the story). */
    sql(c, "UPDATE nodes SET lease_until = durable_now_ms() - 1 WHERE id = 'a'");
    /* b's heartbeat reaps a: its runs are free again. */
    assert_int_equal(b->ops->cluster->heartbeat(b, &lb, &err), DURABLE_OK);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE owner_node IS NULL"), 6);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM nodes WHERE id = 'a' AND state = 'dead'"), 1);
    /* A dead node claims nothing and learns it lost its lease. */
    assert_int_equal(pg_claim_ids(a, 4, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(a->ops->cluster->heartbeat(a, &la, &err), DURABLE_ECONFLICT);
    /* b takes them all, then leaves: released at once, lease given up. */
    assert_int_equal(pg_claim_ids(b, 10, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 6);
    b->ops->cluster->leave(b);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE owner_node IS NULL"), 6);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM nodes WHERE id = 'b' AND state = 'left'"), 1);
    assert_int_equal(b->ops->cluster->wake_fd(b), -1);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(test_locations),
    };
    const struct CMUnitTest online[] = {
        cmocka_unit_test_setup(test_schema_created, setup),
        cmocka_unit_test_setup(test_concurrent_open, setup),
        cmocka_unit_test_setup(test_synchronous, setup),
        cmocka_unit_test_setup(test_transactions, setup),
        cmocka_unit_test_setup(test_ping, setup),
        cmocka_unit_test_setup(test_join_heartbeat, setup),
        cmocka_unit_test_setup(test_claim, setup),
        cmocka_unit_test_setup(test_release_and_wakeups, setup),
        cmocka_unit_test_setup(test_reap_and_leave, setup),
    };
    int failed = cmocka_run_group_tests_name("offline", offline, NULL, NULL);

    url = getenv("DURABLE_TEST_PG");
    if (!url || !url[0]) {
        fprintf(stderr, "test_store_pg: DURABLE_TEST_PG is not set, PostgreSQL tests skipped"
                        " (run through tests/pg_server.py)\n");
        return failed ? 1 : 77;
    }
    return failed + cmocka_run_group_tests_name("postgresql", online, NULL, NULL);
}
