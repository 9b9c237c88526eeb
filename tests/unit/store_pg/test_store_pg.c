/*
 * test_store_pg.c - the PostgreSQL backend's base against a real server:
 * locations, the schema and its migration (also by several nodes at once),
 * durability, the writer's transactions, ping, and the cluster operations
 * (join, heartbeat and reaping, claims with SKIP LOCKED, release, wake-ups,
 * leave) and the fence of a writer whose node lost its runs; the reads, on
 * fixture rows inserted with SQL, as records and as the documents docs.c
 * builds from them, and the snapshot.
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
#include <jansson.h>
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

/* What schema 2 had instead of migration 3's constraint (frozen here: the
 * migration is tested against what an older build left). */
static const char v3_keys[] =
        "DROP INDEX runs_key;"
        "ALTER TABLE runs DROP COLUMN workflow_name;"
        "ALTER TABLE runs ADD CONSTRAINT runs_workflow_id_idempotency_key_key"
        "  UNIQUE (workflow_id, idempotency_key);"
        "CREATE INDEX runs_key ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;"
        "DROP TABLE kv;"
        "ALTER TABLE runs DROP COLUMN restarted_from;"
        "ALTER TABLE runs DROP COLUMN restarted_step;"
        "ALTER TABLE runs DROP COLUMN priority;"
        "DROP INDEX runs_finished;"
        "ALTER TABLE workflows DROP COLUMN retain_ms;"
        "DROP TABLE schedules;"
        "ALTER TABLE events ADD CONSTRAINT events_run_id_fkey FOREIGN KEY (run_id)"
        "  REFERENCES runs (id);"
        "ALTER TABLE steps ADD CONSTRAINT steps_run_id_fkey FOREIGN KEY (run_id)"
        "  REFERENCES runs (id);"
        "CREATE INDEX steps_status ON steps (run_id, status);"
        "ALTER TABLE steps RESET (fillfactor);"
        "DROP TABLE rate_slots;"
        "DROP INDEX runs_flow;"
        "ALTER TABLE runs DROP COLUMN flow_key;"
        "UPDATE schema_version SET version = 3;";

/* A database of schema 3 whose key k1 names two runs of workflow shop, one
 * per version (two nodes racing could leave that then): it opens, keeps
 * its runs, the key stays with the oldest, and no third run can take it. */
static void test_migrate_keys_unique_by_name(void **state)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    PGconn *c = direct();
    durable_error err = { 0 };
    char run_id[ID_MAX];
    bool found = false;
    PGresult *r;

    (void)state;
    store_close(s);
    sql(c, v3_keys);
    sql(c, "INSERT INTO workflows VALUES ('wf1', 'shop', 1, '{}', 1), ('wf2', 'shop', 2, '{}', 2)");
    sql(c, "INSERT INTO runs (id, workflow_id, status, input, idempotency_key, created_at)"
           " VALUES ('run_k2', 'wf2', 'completed', '{}', 'k1', 8),"
           " ('run_k1', 'wf1', 'completed', '{}', 'k1', 5),"
           " ('run_k3', 'wf1', 'completed', '{}', 'k3', 6)");
    s = open_ok(DURABLE_DURABILITY_FULL);
    assert_int_equal(sql_int(c, "SELECT version FROM schema_version"), pg_schema_version());
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kv"), 0); /* migration 5 */
    assert_int_equal(sql_int(c, "SELECT count(*) FROM pg_constraint WHERE conname IN"
                                " ('events_run_id_fkey', 'steps_run_id_fkey')"),
                     0); /* migration 11 */
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs"), 3);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE workflow_name = 'shop'"), 2);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE id = 'run_k2'"
                                " AND workflow_name IS NULL AND idempotency_key = 'k1'"),
                     1);
    r = PQexec(c, "INSERT INTO runs (id, workflow_id, status, input, idempotency_key,"
                  " created_at, workflow_name) VALUES ('run_x', 'wf2', 'pending', '{}', 'k1', 9,"
                  " 'shop')");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME), PG_RUNS_KEY);
    PQclear(r);
    assert_int_equal(store_run_find_by_key(s, "wf2", "k1", run_id, &found, &err), DURABLE_OK);
    assert_true(found);
    assert_string_equal(run_id, "run_k1");
    assert_int_equal(store_run_find_by_key(s, "wf2", "k3", run_id, &found, &err), DURABLE_OK);
    assert_true(found);
    assert_string_equal(run_id, "run_k3");
    PQfinish(c);
    store_close(s);
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

/* Inserts workflow wf1 named name through the writer's row operations,
 * inside the open transaction (the write connection is in pipeline mode:
 * the insert is sent, and its answer read at the next read or COMMIT). */
static void insert_workflow(struct store *s, const char *name)
{
    struct transition_result wf = { .id = "wf1", .version = 1 };
    struct transition t = {
        .kind = TR_WORKFLOW_PUT, .wf_name = name, .wf_definition = "{}", .at_ms = 1
    };
    durable_error err = { 0 };

    if (s->ops->rows->workflow_insert(s, &wf, &t, &err) != DURABLE_OK)
        fail_msg("workflow_insert: %s", err.msg);
}

static void test_transactions(void **state)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    struct pg_store *p = pg_of(s);
    PGconn *c = direct();
    durable_error err = { 0 };
    bool found;

    (void)state;
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    insert_workflow(s, "shop");
    store_tx_rollback(s);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows"), 0);
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    insert_workflow(s, "shop");
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows"), 0); /* not yet */
    assert_int_equal(store_tx_commit(s, NULL, &err), DURABLE_OK);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows"), 1);
    /* A transaction an error aborted does not commit. */
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    insert_workflow(s, "dup"); /* the same id: refused by the server, seen at COMMIT */
    assert_int_equal(store_tx_commit(s, NULL, &err), DURABLE_EIO);
    assert_non_null(strstr(err.msg, "could not register a workflow"));
    store_tx_rollback(s);
    assert_int_equal(PQtransactionStatus(p->w), PQTRANS_IDLE);
    /* ... nor one whose read met it; and a failure after is told as
     * itself, not as the one before. */
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    insert_workflow(s, "dup");
    err_clear(&err);
    assert_int_equal(s->ops->rows->workflow_exists(s, "wf1", &found, &err), DURABLE_EIO);
    assert_non_null(strstr(err.msg, "could not register a workflow"));
    store_tx_rollback(s);
    sql(c, "INSERT INTO orders (id, amount, status, created_at, updated_at)"
           " VALUES ('o1', 1, 'pending', 1, 1)");
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    assert_int_equal(s->ops->rows->order_insert(s, "o1", 1, 1, &err), DURABLE_OK); /* sent */
    err_clear(&err);
    assert_int_equal(s->ops->rows->workflow_exists(s, "wf1", &found, &err), DURABLE_EIO);
    assert_non_null(strstr(err.msg, "could not create an order"));
    store_tx_rollback(s);
    /* The writer reconnects after its connection was cut. */
    /* The writer and the reader reconnect after their connections were
     * cut, without an error. */
    terminate(c, p->w);
    terminate(c, p->readers[0].c);
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    store_tx_rollback(s);
    assert_int_equal(store_ping(s, &err), DURABLE_OK);
    /* Cut inside a transaction, its writes sent and unanswered: the commit
     * fails, nothing is written, and the next transaction reconnects. */
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    insert_workflow(s, "cut");
    terminate(c, p->w);
    assert_int_equal(store_tx_commit(s, NULL, &err), DURABLE_EIO);
    store_tx_rollback(s);
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    store_tx_rollback(s);
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    assert_int_equal(store_tx_commit(s, NULL, &err), DURABLE_OK);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows WHERE name = 'cut'"), 0);
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
    sql(c, "INSERT INTO workflows VALUES ('wf1', 'shop', 1, '{}', 1)");
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

struct claimed {
    int n;
    char last[ID_MAX];
    char definition[64];
};

static durable_code on_claimed(const struct run_record *r, void *ud)
{
    struct claimed *k = ud;

    k->n++;
    snprintf(k->last, sizeof(k->last), "%s", r->id);
    snprintf(k->definition, sizeof(k->definition), "%s", r->definition);
    return DURABLE_OK;
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
    /* The claim op loads each run it takes and hands it over. */
    sql(c, "UPDATE runs SET owner_node = NULL WHERE id = 'r6'");
    {
        struct claimed k = { 0 };
        assert_int_equal(a->ops->cluster->claim(a, 5, on_claimed, &k, &err), DURABLE_OK);
        assert_int_equal(k.n, 1);
        assert_string_equal(k.last, "r6");
        assert_string_equal(k.definition, "{}");
    }
    PQfinish(locker);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

struct wakes {
    int claims;
    int runs;
    int events;
    int flows;
    char run_id[ID_MAX];
};

static void on_wake(enum store_wake w, const char *run_id, void *ud)
{
    struct wakes *k = ud;

    if (w == STORE_WAKE_CLAIM) {
        k->claims++;
    } else if (w == STORE_WAKE_EVENTS) {
        k->events++;
    } else if (w == STORE_WAKE_FLOW) {
        k->flows++;
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

/* Drains s's wake-ups until it knows another node is alive (a join's
 * NOTIFY), as the engine's cluster thread does. */
static void wait_joined(struct store *s)
{
    struct pollfd pfd = { .fd = s->ops->cluster->wake_fd(s), .events = POLLIN };
    struct wakes k = { 0 };
    durable_error err = { 0 };

    for (int i = 0; i < 100 && !atomic_load(&pg_of(s)->others_alive); i++) {
        if (poll(&pfd, 1, 100) > 0 &&
            s->ops->cluster->wake_drain(s, on_wake, &k, &err) != DURABLE_OK)
            fail_msg("drain: %s", err.msg);
    }
    assert_true(atomic_load(&pg_of(s)->others_alive));
}

/* The NOTIFY durable_events c (listening) receives within ms: its payload
 * as a number, -1 for none. */
static int64_t told(PGconn *c, int ms)
{
    struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
    PGnotify *n;
    int64_t gid = -1;

    for (int64_t end = clock_mono_ms() + ms; gid < 0 && clock_mono_ms() < end;) {
        (void)poll(&pfd, 1, 20);
        if (!PQconsumeInput(c))
            fail_msg("listen: %s", PQerrorMessage(c));
        while ((n = PQnotifies(c)) != NULL) {
            if (strcmp(n->relname, "durable_events") == 0)
                gid = strtoll(n->extra, NULL, 10);
            PQfreemem(n);
        }
    }
    return gid;
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

/* Applies t alone in a transaction of s's writer, committed (rolled back
 * when refused); its result in *res (may be NULL). */
static durable_code apply_tx(struct store *s, const struct transition *t,
                             struct transition_result *res, durable_error *err)
{
    durable_code rc = store_tx_begin(s, err);

    if (rc == DURABLE_OK)
        rc = store_apply(s, t, NULL, res, err);
    if (rc == DURABLE_OK)
        rc = store_tx_commit(s, NULL, err);
    else
        store_tx_rollback(s);
    return rc;
}

/* Cancels run_id in a transaction of s's writer: as its executor
 * (by_owner, fenced) or as a caller. */
static durable_code cancel_as(struct store *s, const char *run_id, bool by_owner,
                              durable_error *err)
{
    struct transition t = { .kind = TR_RUN_FINISH, .run_id = run_id, .at_ms = 5 };

    t.run_status = RUN_CANCELLED;
    t.by_owner = by_owner;
    return apply_tx(s, &t, NULL, err);
}

/* TR_RUN_ADMIT of run_id in group key (limit) in a transaction of s's
 * writer, committed: *out_in_use, the places taken without it; whether it
 * was admitted. */
static bool admit(struct store *s, const char *run_id, const char *key, int limit,
                  int64_t *out_in_use)
{
    struct transition t = { .kind = TR_RUN_ADMIT, .run_id = run_id, .at_ms = 5, .by_owner = true };
    struct transition_result res = { .admitted = false };
    durable_error err = { 0 };

    t.flow_key = key;
    t.flow_limit = limit;
    if (apply_tx(s, &t, &res, &err) != DURABLE_OK)
        fail_msg("admit %s: %s", run_id, err.msg);
    *out_in_use = res.in_use;
    return res.admitted;
}

struct admit_arg {
    struct store *s;
    bool admitted;
    int64_t in_use;
};

static void *admit_thread(void *arg)
{
    struct admit_arg *a = arg;

    a->admitted = admit(a->s, "r5", "shop\nz", 1, &a->in_use);
    return NULL;
}

/* Concurrency groups over the writers of two nodes: a run takes a place
 * while the group has room (itself not counted), keeps it until it ends
 * (the end NOTIFYs durable_flow), and two admissions of one group are
 * serialized: the second waits for the first's COMMIT and counts it. */
static void test_flow_admit(void **state)
{
    struct store_lease la;
    struct store *a = open_ok(DURABLE_DURABILITY_FULL), *b = open_ok(DURABLE_DURABILITY_FULL);
    struct store *listener = node("l", 10000, &la);
    struct transition t = { .kind = TR_RUN_ADMIT, .run_id = "r4", .at_ms = 5, .by_owner = true };
    struct transition_result res = { .admitted = false };
    struct admit_arg arg = { .s = b };
    struct wakes k = { 0 };
    durable_error err = { 0 };
    PGconn *c = direct();
    int64_t in_use = -1;
    pthread_t th;

    (void)state;
    insert_runs(c);
    assert_true(admit(a, "r1", "shop\nk", 1, &in_use));
    assert_int_equal(in_use, 0);
    assert_false(admit(b, "r2", "shop\nk", 1, &in_use));
    assert_int_equal(in_use, 1);
    assert_true(admit(b, "r3", "shop\nj", 1, &in_use)); /* another key */
    assert_true(admit(a, "r1", "shop\nk", 1, &in_use)); /* asked again: its own place */
    assert_int_equal(in_use, 0);
    assert_true(admit(b, "r2", "shop\nk", 2, &in_use)); /* a limit of 2 */
    assert_int_equal(in_use, 1);
    assert_int_equal(cancel_as(a, "r1", false, &err), DURABLE_OK);
    while (k.flows == 0) {
        struct pollfd pfd = { .fd = listener->ops->cluster->wake_fd(listener), .events = POLLIN };
        assert_true(poll(&pfd, 1, 5000) > 0);
        if (listener->ops->cluster->wake_drain(listener, on_wake, &k, &err) != DURABLE_OK)
            fail_msg("drain: %s", err.msg);
    }
    assert_int_equal(sql_int(c,
                             "SELECT count(*) FROM runs WHERE flow_key = 'shop' || chr(10) || 'k'"
                             " AND status <> 'cancelled'"),
                     1);

    /* a holds the group's lock, uncommitted: b's admission waits for it */
    t.flow_key = "shop\nz";
    t.flow_limit = 1;
    assert_int_equal(store_tx_begin(a, &err), DURABLE_OK);
    assert_int_equal(store_apply(a, &t, NULL, &res, &err), DURABLE_OK);
    assert_true(res.admitted);
    assert_int_equal(pthread_create(&th, NULL, admit_thread, &arg), 0);
    usleep(300 * 1000);
    assert_int_equal(store_tx_commit(a, NULL, &err), DURABLE_OK);
    pthread_join(th, NULL);
    assert_false(arg.admitted);
    assert_int_equal(arg.in_use, 1);
    PQfinish(c);
    store_close(listener);
    store_close(a);
    store_close(b);
}

/* Cancels run_id as a caller in a transaction of s's writer, its events
 * added to ev. */
static void cancel_ev(struct store *s, const char *run_id, struct store_events *ev)
{
    struct transition t = { .kind = TR_RUN_FINISH, .run_id = run_id, .at_ms = 5 };
    durable_error err = { 0 };

    t.run_status = RUN_CANCELLED;
    if (store_tx_begin(s, &err) != DURABLE_OK || store_apply(s, &t, ev, NULL, &err) != DURABLE_OK ||
        store_tx_commit(s, ev, &err) != DURABLE_OK)
        fail_msg("cancel %s: %s", run_id, err.msg);
}

/* Global ids over the writers of two nodes: the server numbers a
 * transaction's events from the counter when it inserts them, so each
 * writer's list of its events (what it publishes) holds the gids they
 * were stored under, though the other writer committed events since this
 * one last did, and no id is missing or taken twice. */
static void test_gids_over_two_writers(void **state)
{
    struct store *a = open_ok(DURABLE_DURABILITY_FULL), *b = open_ok(DURABLE_DURABILITY_FULL);
    struct store_events ev = { 0 };
    PGconn *c = direct();
    char q[256];

    (void)state;
    insert_runs(c);
    cancel_ev(a, "r1", &ev);
    cancel_ev(b, "r2", &ev);
    cancel_ev(a, "r3", &ev);
    cancel_ev(b, "r4", &ev);
    assert_true(ev.n >= 4);
    for (size_t i = 0; i < ev.n; i++) {
        snprintf(q, sizeof(q), "SELECT gid FROM events WHERE run_id = '%s' AND seq = %lld",
                 ev.items[i].run_id, (long long)ev.items[i].seq);
        assert_int_equal(ev.items[i].global_id, sql_int(c, q));
        if (i > 0) /* in commit order */
            assert_true(ev.items[i].global_id > ev.items[i - 1].global_id);
    }
    assert_int_equal(sql_int(c, "SELECT count(*) FROM events"),
                     sql_int(c, "SELECT max(gid) FROM events"));
    assert_int_equal(sql_int(c, "SELECT count(DISTINCT gid) FROM events"),
                     sql_int(c, "SELECT gid FROM event_counter"));
    store_events_release(&ev);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

/* The statement's one row's text cell (owned). */
static char *sql_text(PGconn *c, const char *text)
{
    PGresult *r = PQexec(c, text);
    char *v;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", text, PQerrorMessage(c));
    v = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void assert_status(PGconn *c, const char *run_id, const char *want)
{
    char q[128];
    char *st;

    snprintf(q, sizeof(q), "SELECT status FROM runs WHERE id = '%s'", run_id);
    st = sql_text(c, q);
    assert_string_equal(st, want);
    free(st);
}

/* Each event of ev is stored under its gid, and no gid is missing. */
static void assert_gids_stored(PGconn *c, const struct store_events *ev)
{
    char q[256];

    for (size_t i = 0; i < ev->n; i++) {
        snprintf(q, sizeof(q), "SELECT gid FROM events WHERE run_id = '%s' AND seq = %lld",
                 ev->items[i].run_id, (long long)ev->items[i].seq);
        assert_int_equal(ev->items[i].global_id, sql_int(c, q));
    }
    assert_int_equal(sql_int(c, "SELECT count(*) FROM events"),
                     sql_int(c, "SELECT coalesce(max(gid), 0) FROM events"));
    assert_int_equal(sql_int(c, "SELECT count(*) FROM events"),
                     sql_int(c, "SELECT gid FROM event_counter"));
}

/* Begins a transaction behind the COMMIT on its way and reads ahead the
 * guard of cancelling run_id (*t), as the writer does. */
static void begin_behind(struct store *s, struct transition *t, const char *run_id)
{
    const struct transition *ts[1] = { t };
    durable_error err = { 0 };

    memset(t, 0, sizeof(*t));
    t->kind = TR_RUN_FINISH;
    t->run_id = run_id;
    t->at_ms = 5;
    t->run_status = RUN_CANCELLED;
    assert_int_equal(store_tx_begin(s, &err), DURABLE_OK);
    assert_int_equal(store_tx_prefetch(s, ts, 1, &err), DURABLE_OK);
}

/* A commit in two halves with the next transaction begun between them
 * (store_tx_commit_send, the writer's overlap): the first commits and its
 * events get the gids the server gave them (another writer committed
 * before them); the second, its guard read behind the first's COMMIT,
 * commits after it. When the first fails (a statement refused), both are
 * rolled back and the second applies afterwards, alone; when the
 * connection is cut between the halves, the next transaction reconnects.
 * No gid is missing or given twice. */
static void test_overlapped_commits(void **state)
{
    struct store *a = open_ok(DURABLE_DURABILITY_FULL), *b = open_ok(DURABLE_DURABILITY_FULL);
    struct pg_store *p = pg_of(a);
    struct store_events ev1 = { 0 }, ev2 = { 0 }, evb = { 0 };
    struct transition t1 = { .kind = TR_RUN_FINISH, .run_id = "r1", .at_ms = 5 }, t2;
    durable_error err = { 0 };
    PGconn *c = direct();
    durable_code rc;

    (void)state;
    assert_true(store_tx_overlaps(a));
    insert_runs(c);
    t1.run_status = RUN_CANCELLED;
    cancel_ev(b, "r2", &evb); /* the counter moves on, unknown to a */
    assert_int_equal(store_tx_begin(a, &err), DURABLE_OK);
    assert_int_equal(store_apply(a, &t1, &ev1, NULL, &err), DURABLE_OK);
    assert_int_equal(store_tx_commit_send(a, &ev1, &err), DURABLE_OK);
    begin_behind(a, &t2, "r3");
    store_tx_commit_ready(a);
    assert_int_equal(store_tx_commit_wait(a, &ev1, &err), DURABLE_OK);
    assert_status(c, "r1", "cancelled");
    assert_status(c, "r3", "pending"); /* not yet: its transaction is open */
    assert_int_equal(store_apply(a, &t2, &ev2, NULL, &err), DURABLE_OK);
    assert_int_equal(store_tx_commit_send(a, &ev2, &err), DURABLE_OK);
    store_tx_commit_ready(a);
    assert_int_equal(store_tx_commit_wait(a, &ev2, &err), DURABLE_OK);
    assert_status(c, "r3", "cancelled");
    assert_true(ev1.n > 0 && ev2.n > 0 && evb.n > 0);
    assert_true(ev1.items[0].global_id > evb.items[evb.n - 1].global_id);
    assert_true(ev2.items[0].global_id > ev1.items[ev1.n - 1].global_id);
    assert_gids_stored(c, &ev1);
    assert_gids_stored(c, &ev2);
    assert_int_equal(PQtransactionStatus(p->w), PQTRANS_IDLE);

    /* The first refused at the server (a workflow id taken): both undone. */
    store_events_clear(&ev1);
    store_events_clear(&ev2);
    assert_int_equal(store_tx_begin(a, &err), DURABLE_OK);
    t1.run_id = "r4";
    assert_int_equal(store_apply(a, &t1, &ev1, NULL, &err), DURABLE_OK);
    insert_workflow(a, "dup");
    assert_int_equal(store_tx_commit_send(a, &ev1, &err), DURABLE_OK);
    begin_behind(a, &t2, "r5");
    assert_int_equal(store_tx_commit_wait(a, &ev1, &err), DURABLE_EIO);
    assert_non_null(strstr(err.msg, "could not register a workflow"));
    store_tx_rollback(a);
    assert_int_equal(PQtransactionStatus(p->w), PQTRANS_IDLE);
    assert_status(c, "r4", "pending");
    assert_int_equal(sql_int(c, "SELECT count(*) FROM workflows WHERE name = 'dup'"), 0);
    cancel_ev(a, "r5", &ev2); /* the second, again, alone */
    assert_status(c, "r5", "cancelled");
    assert_gids_stored(c, &ev2);

    /* The connection cut between the halves: the COMMIT may or may not
     * have been done; either way the next transaction reconnects. */
    store_events_clear(&ev1);
    store_events_clear(&ev2);
    assert_int_equal(store_tx_begin(a, &err), DURABLE_OK);
    assert_int_equal(store_apply(a, &t1, &ev1, NULL, &err), DURABLE_OK); /* r4 */
    assert_int_equal(store_tx_commit_send(a, &ev1, &err), DURABLE_OK);
    begin_behind(a, &t2, "r6");
    terminate(c, p->w);
    store_tx_commit_ready(a);
    rc = store_tx_commit_wait(a, &ev1, &err);
    if (rc == DURABLE_OK)
        assert_status(c, "r4", "cancelled");
    else
        assert_int_equal(rc, DURABLE_EIO);
    store_tx_rollback(a); /* the second, begun or not, is given up */
    /* As the writer does: tried again; the first try may still meet the
     * cut connection (its end read only now), the next reconnects. */
    for (int tries = 0;; tries++) {
        store_events_clear(&ev2);
        rc = store_tx_begin(a, &err);
        if (rc == DURABLE_OK)
            rc = store_apply(a, &t2, &ev2, NULL, &err);
        if (rc == DURABLE_OK)
            rc = store_tx_commit(a, &ev2, &err);
        if (rc == DURABLE_OK)
            break;
        store_tx_rollback(a);
        if (tries == 1)
            fail_msg("cancel r6: %s", err.msg);
    }
    assert_status(c, "r6", "cancelled");
    assert_gids_stored(c, &ev2);
    store_events_release(&ev1);
    store_events_release(&ev2);
    store_events_release(&evb);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

/* TR_RATE_TAKE of a place of limit key (one every interval_ms) for run
 * r1, committed: the wait until it comes. */
static int64_t rate_take(struct store *s, const char *key, double interval_ms)
{
    struct transition t = { .kind = TR_RATE_TAKE, .run_id = "r1", .at_ms = 5, .by_owner = true };
    struct transition_result res = { .wait_ms = -1 };
    durable_error err = { 0 };

    t.flow_key = key;
    t.rate_interval_ms = interval_ms;
    if (apply_tx(s, &t, &res, &err) != DURABLE_OK)
        fail_msg("rate_take %s: %s", key, err.msg);
    return res.wait_ms;
}

/* A rate limit's places over the writers of two nodes: one every
 * interval, whichever node takes the next one; another limit's apart. */
static void test_rate_take(void **state)
{
    struct store *a = open_ok(DURABLE_DURABILITY_FULL), *b = open_ok(DURABLE_DURABILITY_FULL);
    PGconn *c = direct();
    int64_t w1, w2, w3;

    (void)state;
    insert_runs(c);
    w1 = rate_take(a, "shop\nt", 10000);
    w2 = rate_take(b, "shop\nt", 10000);
    w3 = rate_take(a, "shop\nt", 10000);
    assert_int_equal(w1, 0);
    assert_in_range(w2, 9000, 10000); /* a few ms have passed since the first */
    assert_in_range(w3, 19000, 20000);
    assert_int_equal(rate_take(b, "\ntask", 10000), 0); /* another limit */
    assert_int_equal(sql_int(c, "SELECT count(*) FROM rate_slots"), 2);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

/* A node alone tells nobody of its events; a node that joins is told at
 * once of those committed so far, and of each commit after, also of one
 * under way when it joined; after it left, nobody again. */
static void test_events_told_to_others(void **state)
{
    struct store_lease la, lb;
    struct store *a = node("a", 10000, &la);
    struct store *b;
    PGconn *c = direct();
    PGconn *listener = direct();
    durable_error err = { 0 };

    (void)state;
    insert_runs(c);
    sql(listener, "LISTEN durable_events");
    assert_false(atomic_load(&pg_of(a)->others_alive));
    assert_int_equal(cancel_as(a, "r1", false, &err), DURABLE_OK);
    assert_int_equal(told(listener, 300), -1);
    b = node("b", 10000, &lb);
    assert_true(atomic_load(&pg_of(b)->others_alive));
    wait_joined(a);
    assert_int_equal(told(listener, 3000), sql_int(c, "SELECT gid FROM event_counter"));
    assert_int_equal(cancel_as(a, "r2", false, &err), DURABLE_OK);
    assert_int_equal(told(listener, 3000), sql_int(c, "SELECT gid FROM event_counter"));
    /* b leaves; a's heartbeat finds itself alone. */
    b->ops->cluster->leave(b);
    assert_int_equal(a->ops->cluster->heartbeat(a, &la, &err), DURABLE_OK);
    assert_false(atomic_load(&pg_of(a)->others_alive));
    assert_int_equal(cancel_as(a, "r3", false, &err), DURABLE_OK);
    assert_int_equal(told(listener, 300), -1);
    /* A node joins while a transaction's events are on their way untold:
     * the writer tells them after its commit. */
    {
        struct transition t = { .kind = TR_RUN_FINISH, .run_id = "r4", .at_ms = 5 };
        t.run_status = RUN_CANCELLED;
        assert_int_equal(store_tx_begin(a, &err), DURABLE_OK);
        assert_int_equal(store_apply(a, &t, NULL, NULL, &err), DURABLE_OK);
        atomic_store(&pg_of(a)->others_alive, true);
        assert_int_equal(store_tx_commit(a, NULL, &err), DURABLE_OK);
    }
    assert_int_equal(told(listener, 3000), sql_int(c, "SELECT gid FROM event_counter"));
    PQfinish(listener);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

/* Starts step step_id of a code-first run as its executor (by_owner),
 * inserting the step's row (insert_step), in a transaction of s's writer. */
static durable_code code_step_start(struct store *s, const char *run_id, const char *step_id,
                                    durable_error *err)
{
    struct transition_step_init si = {
        .step_id = step_id, .type = "code", .max_attempts = 1, .depends_on_json = "[]"
    };
    struct transition t = { .kind = TR_STEP_START,
                            .run_id = run_id,
                            .step_id = step_id,
                            .attempt = 1,
                            .at_ms = 6,
                            .by_owner = true,
                            .insert_step = &si };

    return apply_tx(s, &t, NULL, err);
}

/* The fence: a node declared dead cannot write as the executor of a run
 * taken over, while a caller's write through any node applies and tells
 * the owner. */
static void test_fence(void **state)
{
    struct store_lease la, lb;
    struct store *a = node("a", 10000, &la);
    struct store *b = node("b", 10000, &lb);
    PGconn *c = direct();
    char ids[10][ID_MAX];
    int n = 0;
    bool owned = true;
    struct wakes k = { 0 };
    durable_error err = { 0 };

    (void)state;
    insert_runs(c);
    wait_joined(a); /* b's join */
    assert_int_equal(pg_claim_ids(a, 2, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(cancel_as(a, "r1", true, &err), DURABLE_OK); /* its own run */
    /* a is declared dead; b takes its runs over. */
    sql(c, "UPDATE nodes SET lease_until = durable_now_ms() - 1 WHERE id = 'a'");
    assert_int_equal(b->ops->cluster->heartbeat(b, &lb, &err), DURABLE_OK);
    assert_int_equal(pg_claim_ids(b, 10, ids, &n, &err), DURABLE_OK);
    assert_int_equal(n, 5);
    /* a's late write as executor is refused and writes nothing. */
    assert_int_equal(cancel_as(a, "r2", true, &err), DURABLE_EFENCED);
    assert_non_null(strstr(err.msg, "taken over"));
    assert_int_equal(sql_int(c, "SELECT count(*) FROM runs WHERE id = 'r2' AND status = 'pending'"),
                     1);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM events WHERE run_id = 'r2'"), 0);
    assert_int_equal(cancel_as(b, "r2", true, &err), DURABLE_OK);
    /* so is a code-first step's start, which inserts no row */
    assert_int_equal(code_step_start(a, "r4", "c1", &err), DURABLE_EFENCED);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM steps WHERE run_id = 'r4'"), 0);
    assert_int_equal(code_step_start(b, "r4", "c1", &err), DURABLE_OK);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM steps WHERE run_id = 'r4' AND step_id = "
                                "'c1' AND status = 'running' AND attempt = 1"),
                     1);
    /* A caller's write through any node applies, and tells the owner. */
    assert_int_equal(cancel_as(a, "r3", false, &err), DURABLE_OK);
    for (int i = 0, events = 0; i < 50 && k.runs == 0; i++) {
        events += k.events;
        k.claims = k.events = 0; /* wait_wake waits for a claim or a run */
        wait_wake(b, &k);
        k.events += events;
    }
    assert_string_equal(k.run_id, "r3");
    assert_true(k.events > 0); /* the cancel's events, announced at COMMIT */
    /* claim_run: the owner's own, not another's, not a finished one. */
    assert_int_equal(b->ops->cluster->claim_run(b, "r4", &owned, &err), DURABLE_OK);
    assert_true(owned);
    assert_int_equal(b->ops->cluster->claim_run(b, "r1", &owned, &err), DURABLE_OK);
    assert_false(owned);
    assert_int_equal(a->ops->cluster->claim_run(a, "r5", &owned, &err), DURABLE_OK);
    assert_false(owned);
    PQfinish(c);
    store_close(a);
    store_close(b);
}

/* ---- reads ---- */

/* Two versions of workflow "shop" and one of "other" (created in the same
 * millisecond as shop v2, inserted after it); two orders; a completed run
 * with an order, a key, steps and events; a failed run with an error and a
 * NULL time; a running run (same millisecond as the failed one, inserted
 * after it) whose step ids sort differently by bytes than by definition. */
static void insert_fixture(PGconn *c)
{
    sql(c, "INSERT INTO workflows VALUES"
           " ('wf1', 'shop', 1, '{\"description\":\"v1\",\"steps\":[]}', 1000),"
           " ('wf2', 'shop', 2, '{\"description\":\"the shop\",\"steps\":[]}', 2000),"
           " ('wa', 'other', 1, '{\"description\":5}', 2000)");
    sql(c, "INSERT INTO orders VALUES ('o1', 12.5, 'paid', 1000, 1500),"
           " ('o2', 3, 'new', 1000, 1000)");
    sql(c, "INSERT INTO runs (id, workflow_id, status, input, output, order_id, idempotency_key,"
           " error_message, created_at, started_at, completed_at, deadline_at) VALUES"
           " ('r1', 'wf1', 'completed', '{\"a\":1}', '{\"ok\":true}', 'o1', 'k1', NULL,"
           "  1000, 1100, 1900, NULL),"
           " ('r2', 'wf2', 'failed', '{}', NULL, NULL, NULL, 'boom', 2000, 2000, NULL, NULL),"
           " ('r3', 'wf2', 'running', '{}', NULL, NULL, NULL, NULL, 2000, 2001, NULL, 9000)");
    /* As the writer's insert sets it. */
    sql(c, "UPDATE runs SET workflow_name = w.name FROM workflows w WHERE w.id = workflow_id");
    sql(c, "INSERT INTO steps (run_id, idx, step_id, type, status, attempt, max_attempts,"
           " depends_on, idempotency_key, started_at, completed_at, wake_at, error_message,"
           " output) VALUES"
           " ('r1', 0, 'b', 'task', 'completed', 1, 3, '[]', 'r1:b', 1100, 1200, NULL, NULL,"
           "  '{\"x\":1}'),"
           " ('r1', 1, 'a', 'task', 'completed', 1, 3, '[\"b\"]', 'r1:a', 1200, 1300, NULL,"
           "  NULL, 'null'),"
           " ('r3', 0, 'b', 'task', 'completed', 1, 1, '[]', 'r3:b', 2001, 2002, NULL, NULL, '1'),"
           " ('r3', 1, 'a', 'approval', 'waiting', 2, 3, '[\"b\"]', 'r3:a', 2003, NULL, 5000,"
           "  'late', NULL),"
           " ('r3', 2, 'C', 'task', 'pending', 0, 1, '[\"a\"]', 'r3:C', NULL, NULL, NULL, NULL,"
           "  NULL)");
    sql(c, "INSERT INTO events (run_id, seq, gid, type, step_id, at, data) VALUES"
           " ('r1', 1, 1, 'run_created', NULL, 1000, '{}'),"
           " ('r3', 1, 2, 'run_created', NULL, 2000, '{}'),"
           " ('r1', 2, 3, 'step_started', 'b', 1100, '{\"attempt\":1}'),"
           " ('r1', 3, 4, 'run_completed', NULL, 1900, '{\"output\":{\"ok\":true}}')");
    sql(c, "UPDATE event_counter SET gid = 4");
}

static struct store *open_fixture(void)
{
    struct store *s = open_ok(DURABLE_DURABILITY_FULL);
    PGconn *c = direct();

    insert_fixture(c);
    PQfinish(c);
    return s;
}

static void test_read_records(void **state)
{
    struct store *s = open_fixture();
    struct workflow_record w = { 0 };
    struct run_record r = { 0 };
    enum run_status st = RUN_PENDING;
    char id[ID_MAX] = "";
    bool found = true;
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(store_workflow_get(s, "wf1", &w, &err), DURABLE_OK);
    assert_string_equal(w.name, "shop");
    assert_int_equal(w.version, 1);
    assert_int_equal(w.created_at_ms, 1000);
    workflow_record_release(&w);
    assert_int_equal(store_workflow_get(s, "shop", &w, &err), DURABLE_OK); /* the latest */
    assert_string_equal(w.id, "wf2");
    assert_non_null(strstr(w.definition, "the shop"));
    workflow_record_release(&w);
    assert_int_equal(store_workflow_get(s, "nope", &w, &err), DURABLE_ENOTFOUND);

    assert_int_equal(store_run_load(s, "r1", &r, &err), DURABLE_OK);
    assert_int_equal(r.status, RUN_COMPLETED);
    assert_string_equal(r.workflow_id, "wf1");
    assert_string_equal(r.order_id, "o1");
    assert_true(r.order_amount == 12.5);
    assert_string_equal(r.output_json, "{\"ok\":true}");
    assert_null(r.error_message);
    assert_int_equal(r.deadline_ms, 0);
    assert_int_equal(r.n_steps, 2);
    run_record_release(&r);
    assert_int_equal(store_run_load(s, "r2", &r, &err), DURABLE_OK);
    assert_int_equal(r.status, RUN_FAILED);
    assert_string_equal(r.error_message, "boom");
    assert_null(r.order_id);
    assert_int_equal(r.n_steps, 0);
    run_record_release(&r);
    assert_int_equal(store_run_load(s, "r3", &r, &err), DURABLE_OK);
    assert_int_equal(r.deadline_ms, 9000);
    assert_non_null(strstr(r.definition, "the shop"));
    assert_int_equal(r.n_steps, 3); /* in step id order by bytes */
    assert_string_equal(r.steps[0].step_id, "C");
    assert_int_equal(r.steps[0].status, STEP_S_PENDING);
    assert_null(r.steps[0].output_json);
    assert_string_equal(r.steps[1].step_id, "a");
    assert_int_equal(r.steps[1].status, STEP_S_WAITING);
    assert_int_equal(r.steps[1].attempt, 2);
    assert_int_equal(r.steps[1].wake_at_ms, 5000);
    assert_int_equal(r.steps[1].started_at_ms, 2003);
    assert_string_equal(r.steps[2].output_json, "1");
    run_record_release(&r);
    assert_int_equal(store_run_load(s, "nope", &r, &err), DURABLE_ENOTFOUND);

    assert_int_equal(store_run_status(s, "r2", &st, &err), DURABLE_OK);
    assert_int_equal(st, RUN_FAILED);
    assert_int_equal(store_run_status(s, "nope", &st, &err), DURABLE_ENOTFOUND);
    /* A key names a run of the workflow's name, whatever its version. */
    assert_int_equal(store_run_find_by_key(s, "wf2", "k1", id, &found, &err), DURABLE_OK);
    assert_true(found);
    assert_string_equal(id, "r1");
    assert_int_equal(store_run_find_by_key(s, "wa", "k1", id, &found, &err), DURABLE_OK);
    assert_false(found);
    store_close(s);
}

struct unfinished {
    int n;
    int64_t last_at;
    char ids[4][ID_MAX];
    size_t steps[4];
    bool ordered;
};

static durable_code on_unfinished(const struct run_record *r, void *ud)
{
    struct unfinished *u = ud;

    if (u->n > 0 && r->created_at_ms < u->last_at)
        u->ordered = false;
    u->last_at = r->created_at_ms;
    if (u->n < 4) {
        snprintf(u->ids[u->n], ID_MAX, "%s", r->id);
        u->steps[u->n] = r->n_steps;
    }
    u->n++;
    return strcmp(r->definition, "") == 0 ? DURABLE_EIO : DURABLE_OK;
}

static void test_runs_unfinished(void **state)
{
    struct store *s = open_fixture();
    PGconn *c = direct();
    struct unfinished u = { .ordered = true };
    durable_error err = { 0 };

    (void)state;
    sql(c, "INSERT INTO runs (id, workflow_id, status, input, created_at)"
           " VALUES ('r0', 'wf1', 'pending', '{}', 500)");
    assert_int_equal(store_runs_unfinished(s, on_unfinished, &u, &err), DURABLE_OK);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.ids[0], "r0");
    assert_int_equal(u.steps[0], 0);
    assert_string_equal(u.ids[1], "r3");
    assert_int_equal(u.steps[1], 3);
    /* More than a page (256), oldest first, each run once. */
    sql(c, "INSERT INTO runs (id, workflow_id, status, input, created_at)"
           " SELECT 'p' || i, 'wf2', 'waiting', '{}', 3000 + i / 2 FROM generate_series(1, 600) i");
    sql(c, "INSERT INTO steps (run_id, idx, step_id, type, status, max_attempts, depends_on,"
           " idempotency_key) SELECT 'p' || i, j, 's' || j, 'task', 'pending', 1, '[]', 'k'"
           " FROM generate_series(1, 600) i, generate_series(0, 2) j");
    memset(&u, 0, sizeof(u));
    u.ordered = true;
    assert_int_equal(store_runs_unfinished(s, on_unfinished, &u, &err), DURABLE_OK);
    assert_int_equal(u.n, 602);
    assert_true(u.ordered);
    PQfinish(c);
    store_close(s);
}

/* The text at key of the array element i of the JSON doc. */
static const char *elem_str(json_t *doc, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(doc, i), key));
}

static json_t *parse(char *text)
{
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);

    if (!doc)
        fail_msg("not JSON (%s): %s", je.text, text);
    free(text);
    return doc;
}

static void test_run_documents(void **state)
{
    struct store *s = open_fixture();
    char *text = NULL;
    json_t *doc, *steps;
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(store_run_json(s, "r1", &text, &err), DURABLE_OK);
    doc = parse(text);
    assert_string_equal(json_string_value(json_object_get(doc, "workflow_name")), "shop");
    assert_int_equal(json_integer_value(json_object_get(doc, "workflow_version")), 1);
    assert_true(json_is_true(json_object_get(json_object_get(doc, "output"), "ok")));
    assert_string_equal(json_string_value(json_object_get(doc, "idempotency_key")), "k1");
    steps = json_object_get(doc, "steps"); /* in definition order */
    assert_int_equal(json_array_size(steps), 2);
    assert_string_equal(elem_str(steps, 0, "step_id"), "b");
    assert_string_equal(elem_str(steps, 1, "step_id"), "a");
    assert_string_equal(json_string_value(json_array_get(
                                json_object_get(json_array_get(steps, 1), "depends_on"), 0)),
                        "b");
    json_decref(doc);
    assert_int_equal(store_run_json(s, "r2", &text, &err), DURABLE_OK);
    doc = parse(text);
    assert_string_equal(json_string_value(json_object_get(doc, "error_message")), "boom");
    assert_true(json_is_null(json_object_get(doc, "completed_at"))); /* NULL time */
    assert_true(json_is_null(json_object_get(doc, "output")));
    assert_int_equal(json_array_size(json_object_get(doc, "steps")), 0);
    json_decref(doc);
    assert_int_equal(store_run_json(s, "r3", &text, &err), DURABLE_OK);
    doc = parse(text);
    steps = json_object_get(doc, "steps");
    assert_string_equal(elem_str(steps, 1, "error_message"), "late");
    assert_string_equal(elem_str(steps, 1, "wake_at"), "1970-01-01T00:00:05.000Z");
    json_decref(doc);
    assert_int_equal(store_run_json(s, "nope", &text, &err), DURABLE_ENOTFOUND);
    store_close(s);
}

static void test_event_documents(void **state)
{
    struct store *s = open_fixture();
    char *text = NULL;
    json_t *doc;
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(store_events_json(s, "r1", 1, &text, &err), DURABLE_OK);
    doc = parse(text);
    assert_int_equal(json_array_size(doc), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(doc, 0), "seq")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(doc, 0), "id")), 3);
    assert_string_equal(elem_str(doc, 0, "step_id"), "b");
    assert_string_equal(elem_str(doc, 1, "type"), "run_completed");
    assert_null(json_object_get(json_array_get(doc, 0), "run_id"));
    json_decref(doc);
    assert_int_equal(store_events_json(s, "r2", 0, &text, &err), DURABLE_OK); /* none */
    assert_string_equal(text, "[]");
    free(text);
    assert_int_equal(store_events_json(s, "nope", 0, &text, &err), DURABLE_ENOTFOUND);
    /* Every run's, by global id. */
    assert_int_equal(store_events_since(s, 1, 2, &text, &err), DURABLE_OK);
    doc = parse(text);
    assert_int_equal(json_array_size(doc), 2);
    assert_string_equal(elem_str(doc, 0, "run_id"), "r3");
    assert_string_equal(elem_str(doc, 1, "run_id"), "r1");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(doc, 1), "id")), 3);
    json_decref(doc);
    store_close(s);
}

/* The ids of a list, comma-separated. */
static void list_ids(char *text, char *out, size_t n)
{
    json_t *doc = parse(text);

    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(doc); i++) {
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", i ? "," : "", elem_str(doc, i, "id"));
    }
    json_decref(doc);
}

static void test_lists(void **state)
{
    struct store *s = open_fixture();
    char *text = NULL;
    char ids[128];
    int64_t total = -1;
    json_t *doc;
    durable_error err = { 0 };
    struct store_run_query q = { .status = NULL };

    (void)state;
    /* Newest first; r3 and r2 share a millisecond: the later insert first. */
    assert_int_equal(store_runs_list(s, &q, &text, &total, &err), DURABLE_OK);
    list_ids(text, ids, sizeof(ids));
    assert_string_equal(ids, "r3,r2,r1");
    assert_int_equal(total, 3);
    q.page = (struct store_page){ .limit = 1, .offset = 1 };
    assert_int_equal(store_runs_list(s, &q, &text, &total, &err), DURABLE_OK);
    list_ids(text, ids, sizeof(ids));
    assert_string_equal(ids, "r2");
    assert_int_equal(total, 3);
    q = (struct store_run_query){ .status = "failed" };
    assert_int_equal(store_runs_list(s, &q, &text, &total, &err), DURABLE_OK);
    list_ids(text, ids, sizeof(ids));
    assert_string_equal(ids, "r2");
    assert_int_equal(total, 1);
    q = (struct store_run_query){ .workflow = "wf1" };
    assert_int_equal(store_runs_list(s, &q, &text, &total, &err), DURABLE_OK);
    list_ids(text, ids, sizeof(ids));
    assert_string_equal(ids, "r1");
    q = (struct store_run_query){ .workflow = "shop", .status = "running" };
    assert_int_equal(store_runs_list(s, &q, &text, &total, &err), DURABLE_OK);
    list_ids(text, ids, sizeof(ids));
    assert_string_equal(ids, "r3");
    assert_int_equal(total, 1);
    q = (struct store_run_query){ .page = { .offset = 10 } }; /* past the end: the total */
    assert_int_equal(store_runs_list(s, &q, &text, &total, &err), DURABLE_OK);
    list_ids(text, ids, sizeof(ids));
    assert_string_equal(ids, "");
    assert_int_equal(total, 3);

    assert_int_equal(store_workflows_list(s, (struct store_page){ 0 }, &text, &total, &err),
                     DURABLE_OK);
    doc = parse(text);
    assert_int_equal(total, 3);
    assert_string_equal(elem_str(doc, 0, "id"), "wa");
    assert_true(json_is_null(json_object_get(json_array_get(doc, 0), "description")));
    assert_string_equal(elem_str(doc, 1, "description"), "the shop");
    assert_string_equal(elem_str(doc, 2, "id"), "wf1");
    json_decref(doc);
    assert_int_equal(store_workflow_json(s, "shop", &text, &err), DURABLE_OK);
    doc = parse(text);
    assert_int_equal(json_integer_value(json_object_get(doc, "version")), 2);
    assert_true(json_is_object(json_object_get(doc, "definition")));
    json_decref(doc);

    assert_int_equal(store_orders_list(s, (struct store_page){ 0 }, &text, &total, &err),
                     DURABLE_OK);
    list_ids(text, ids, sizeof(ids));
    assert_string_equal(ids, "o2,o1");
    assert_int_equal(total, 2);
    assert_int_equal(store_order_json(s, "o1", &text, &err), DURABLE_OK);
    doc = parse(text);
    assert_true(json_real_value(json_object_get(doc, "amount")) == 12.5);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "paid");
    json_decref(doc);
    assert_int_equal(store_order_json(s, "nope", &text, &err), DURABLE_ENOTFOUND);
    store_close(s);
}

static void test_counts(void **state)
{
    struct store *s = open_fixture();
    int64_t runs[STORE_N_RUN_STATUSES], steps[STORE_N_STEP_STATUSES];
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(store_count_runs(s, runs, &err), DURABLE_OK);
    assert_int_equal(runs[RUN_COMPLETED], 1);
    assert_int_equal(runs[RUN_FAILED], 1);
    assert_int_equal(runs[RUN_RUNNING], 1);
    assert_int_equal(runs[RUN_PENDING], 0);
    assert_int_equal(store_count_steps(s, steps, &err), DURABLE_OK);
    assert_int_equal(steps[STEP_S_COMPLETED], 3);
    assert_int_equal(steps[STEP_S_WAITING], 1);
    assert_int_equal(steps[STEP_S_PENDING], 1);
    store_close(s);
}

/* The snapshot's table called name. */
static json_t *snap_table(json_t *doc, const char *name)
{
    json_t *tables = json_object_get(doc, "tables");

    for (size_t i = 0; i < json_array_size(tables); i++) {
        if (strcmp(elem_str(tables, i, "name"), name) == 0)
            return json_array_get(tables, i);
    }
    fail_msg("no table %s in the snapshot", name);
    return NULL;
}

static void test_snapshot(void **state)
{
    struct store *s = open_fixture();
    PGconn *c = direct();
    PGresult *r;
    char *text = NULL;
    json_t *doc, *runs, *row;
    durable_error err = { 0 };

    (void)state;
    sql(c, "UPDATE runs SET input = '\"' || repeat('é', 150) || '\"' WHERE id = 'r1'");
    assert_int_equal(store_snapshot_json(s, 2, &text, &err), DURABLE_OK);
    doc = parse(text);
    /* Every table of the schema is there. */
    r = PQexec(c, "SELECT table_name FROM information_schema.tables"
                  " WHERE table_schema = 'public'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++)
        snap_table(doc, PQgetvalue(r, i, 0));
    assert_int_equal(json_array_size(json_object_get(doc, "tables")), PQntuples(r));
    PQclear(r);
    runs = snap_table(doc, "runs");
    assert_int_equal(json_integer_value(json_object_get(runs, "total")), 3);
    assert_int_equal(json_array_size(json_object_get(runs, "rows")), 2); /* newest 2 */
    assert_string_equal(json_string_value(json_array_get(json_object_get(runs, "columns"), 0)),
                        "id");
    row = json_array_get(json_object_get(runs, "rows"), 0);
    assert_string_equal(json_string_value(json_array_get(row, 0)), "r3");
    /* Numbers are numbers, NULL is null. */
    assert_int_equal(json_integer_value(json_array_get(row, 8)), 2000); /* created_at */
    assert_true(json_is_null(json_array_get(row, 4)));                  /* output */
    assert_true(json_is_true(json_array_get(
            json_array_get(json_object_get(snap_table(doc, "event_counter"), "rows"), 0), 0)));
    json_decref(doc);
    /* A long cell is cut on a character boundary. */
    assert_int_equal(store_snapshot_json(s, 200, &text, &err), DURABLE_OK);
    doc = parse(text);
    runs = snap_table(doc, "runs");
    row = json_array_get(json_object_get(runs, "rows"), 2);
    assert_string_equal(json_string_value(json_array_get(row, 0)), "r1");
    text = (char *)json_string_value(json_array_get(row, 3));
    assert_true(strlen(text) <= STORE_SNAPSHOT_CELL_MAX + strlen("…"));
    assert_non_null(strstr(text, "…"));
    json_decref(doc);
    PQfinish(c);
    store_close(s);
}

/* A read on a connection the server dropped reconnects and answers. */
static void test_read_after_cut(void **state)
{
    struct store *s = open_fixture();
    PGconn *c = direct();
    char *text = NULL;
    durable_error err = { 0 };

    (void)state;
    terminate(c, pg_of(s)->readers[0].c);
    assert_int_equal(store_run_json(s, "r1", &text, &err), DURABLE_OK);
    free(text);
    terminate(c, pg_of(s)->readers[0].c);
    assert_int_equal(
            store_runs_list(s, &(struct store_run_query){ .status = NULL }, &text, NULL, &err),
            DURABLE_OK);
    free(text);
    PQfinish(c);
    store_close(s);
}

/* Reads are prepared on their connection at their first use: the same
 * read again on a new server process (the old one cut), after its
 * statements were dropped, when its name is taken already, and a SELECT *
 * after its table changed all answer. */
static void test_prepared_reads(void **state)
{
    struct store *s = open_fixture();
    struct pg_store *p = pg_of(s);
    PGconn *c = direct();
    char *text = NULL;
    enum run_status st = RUN_PENDING;
    durable_error err = { 0 };
    json_t *doc, *cols;

    (void)state;
    for (int i = 0; i < 7; i++) { /* past the server's five custom plans */
        assert_int_equal(store_run_status(s, "r1", &st, &err), DURABLE_OK);
        assert_int_equal(st, RUN_COMPLETED);
    }
    assert_int_equal(sql_int(p->readers[0].c, "SELECT count(*) FROM pg_prepared_statements"
                                              " WHERE statement = 'SELECT status FROM runs"
                                              " WHERE id = $1'"),
                     1);
    terminate(c, p->readers[0].c);
    assert_int_equal(store_run_status(s, "r1", &st, &err), DURABLE_OK);
    assert_int_equal(st, RUN_COMPLETED);
    PQclear(PQexec(p->readers[0].c, "DEALLOCATE ALL"));
    assert_int_equal(store_run_status(s, "r1", &st, &err), DURABLE_OK);
    assert_int_equal(st, RUN_COMPLETED);
    p->readers[0].n_prepared = 0; /* the connection's list forgot what the server has */
    assert_int_equal(store_run_status(s, "r1", &st, &err), DURABLE_OK);
    assert_int_equal(st, RUN_COMPLETED);
    assert_int_equal(store_snapshot_json(s, 5, &text, &err), DURABLE_OK);
    free(text);
    sql(c, "ALTER TABLE kv ADD COLUMN added_later integer");
    assert_int_equal(store_snapshot_json(s, 5, &text, &err), DURABLE_OK);
    doc = parse(text);
    cols = json_object_get(snap_table(doc, "kv"), "columns");
    assert_string_equal(json_string_value(json_array_get(cols, json_array_size(cols) - 1)),
                        "added_later");
    json_decref(doc);
    sql(c, "ALTER TABLE kv DROP COLUMN added_later");
    PQfinish(c);
    store_close(s);
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
        cmocka_unit_test_setup(test_migrate_keys_unique_by_name, setup),
        cmocka_unit_test_setup(test_transactions, setup),
        cmocka_unit_test_setup(test_ping, setup),
        cmocka_unit_test_setup(test_join_heartbeat, setup),
        cmocka_unit_test_setup(test_claim, setup),
        cmocka_unit_test_setup(test_release_and_wakeups, setup),
        cmocka_unit_test_setup(test_events_told_to_others, setup),
        cmocka_unit_test_setup(test_reap_and_leave, setup),
        cmocka_unit_test_setup(test_fence, setup),
        cmocka_unit_test_setup(test_flow_admit, setup),
        cmocka_unit_test_setup(test_rate_take, setup),
        cmocka_unit_test_setup(test_gids_over_two_writers, setup),
        cmocka_unit_test_setup(test_overlapped_commits, setup),
        cmocka_unit_test_setup(test_read_records, setup),
        cmocka_unit_test_setup(test_runs_unfinished, setup),
        cmocka_unit_test_setup(test_run_documents, setup),
        cmocka_unit_test_setup(test_event_documents, setup),
        cmocka_unit_test_setup(test_lists, setup),
        cmocka_unit_test_setup(test_counts, setup),
        cmocka_unit_test_setup(test_snapshot, setup),
        cmocka_unit_test_setup(test_read_after_cut, setup),
        cmocka_unit_test_setup(test_prepared_reads, setup),
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
