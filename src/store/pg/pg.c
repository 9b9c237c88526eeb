/*
 * pg.c - the PostgreSQL store's base: locations, connections (the writer's
 * and the read pool), opening with the schema brought up to date,
 * transactions on the write connection, the durability in force, ping, and
 * pg_read, the one way reads reach the server (pipelined, one round trip).
 *
 * A location is "postgres://USER@HOST:PORT/DB", "postgresql://..." or
 * "postgresql:KEY=VALUE ..." (a libpq conninfo). store_open's migration runs
 * on the write connection under an advisory lock (schema.c), so several
 * nodes may start at once. DURABLE_DURABILITY_PROCESS sets
 * synchronous_commit off on the write connection: a commit survives the
 * node's crash (the server has it) but not the server's.
 *
 * Thread rules (pg_int.h): the write connection is the writer thread's; a
 * read connection is one thread's between pg_reader_take and pg_reader_put.
 * A connection found broken (the server restarted) is reset before use:
 * the writer's at tx_begin, a reader's when taken.
 */
#include "util/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/pg/pg_int.h"

/* ---- locations and connections ---- */

durable_code pg_location_conninfo(const char *location, char **out, durable_error *err)
{
    const char *conninfo = location;
    char *why = NULL;
    PQconninfoOption *opts;

    *out = NULL;
    if (strncmp(location, "postgresql:", 11) == 0 && strncmp(location, "postgresql://", 13) != 0)
        conninfo = location + 11;
    else if (strncmp(location, "postgres://", 11) != 0 &&
             strncmp(location, "postgresql://", 13) != 0)
        return err_set(err, DURABLE_EINVAL, "\"%s\" is not a postgresql location", location);
    opts = PQconninfoParse(conninfo, &why);
    if (!opts) {
        durable_code rc = err_set(err, DURABLE_EINVAL, "invalid database url \"%s\": %s", location,
                                  why ? why : "out of memory");
        PQfreemem(why);
        return rc;
    }
    PQconninfoFree(opts);
    *out = xstrdup(conninfo);
    return DURABLE_OK;
}

/* The server's notices (NOTICE, WARNING) go to the log, not to stderr:
 * the library never prints. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgresql: %s", message);
}

/* TCP settings given before the location, so that the location's own win
 * (libpq takes the last value of a key): a peer gone silent (a cut cable,
 * a dropped route) is noticed in about 20 s instead of the kernel's two
 * hours of keepalive or fifteen minutes of retransmissions, and the node's
 * threads get an error they recover from instead of waiting. Ignored on a
 * Unix socket. */
durable_code pg_connect(const char *conninfo, PGconn **out, durable_error *err)
{
    const char *const keys[] = { "connect_timeout",
                                 "keepalives",
                                 "keepalives_idle",
                                 "keepalives_interval",
                                 "keepalives_count",
                                 "tcp_user_timeout",
                                 "dbname",
                                 "fallback_application_name",
                                 NULL };
    const char *const values[] = { "10", "1", "10", "3", "3", "20000", conninfo, "durable", NULL };
    PGconn *c = PQconnectdbParams(keys, values, 1); /* dbname may be a URI or conninfo */
    durable_code rc = DURABLE_OK;

    *out = NULL;
    if (!c)
        return err_set(err, DURABLE_EIO, "could not connect to the database: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        rc = err_set(err, DURABLE_EIO, "could not connect to the database: %s", PQerrorMessage(c));
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    *out = c;
    return DURABLE_OK;
}

PGresult *pg_exec(PGconn *c, const char *what, const char *sql, int n_params,
                  const char *const *params, durable_error *err)
{
    PGresult *r = PQexecParams(c, sql, n_params, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    /* The result's message; the connection's when there is no result. */
    err_set(err, DURABLE_EIO, "could not %s: %s", what,
            r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return NULL;
}

durable_code pg_run(PGconn *c, const char *what, const char *sql, int n_params,
                    const char *const *params, durable_error *err)
{
    PGresult *r = pg_exec(c, what, sql, n_params, params, err);

    if (!r)
        return DURABLE_EIO;
    PQclear(r);
    return DURABLE_OK;
}

int64_t pg_cell_int64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *pg_cell_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Session settings of the write connection. */
/* The write connection's settings, again after a reconnect: durability,
 * and half a lease as the longest it may sit idle inside a transaction, so
 * that a node paused mid-transaction (SIGSTOP) holds the row locks of its
 * fence no longer than that: the server ends its session, and the others'
 * takeover goes on. */
static durable_code writer_settings(struct pg_store *s, durable_error *err)
{
    const char *sync = s->durability == DURABLE_DURABILITY_PROCESS ? "off" : "on";
    char idle[24];
    const char *params[2] = { sync, idle };

    snprintf(idle, sizeof(idle), "%lld", (long long)(s->lease_ms / 2));
    /* Generic plans: the writer's statements find rows by their keys, and
     * a custom plan would be made again at each call of one whose
     * estimate depends on an array's length (write.c PG_W_GUARDS). For
     * the same reason joins are nested loops: a generic plan guesses an
     * array's length (unnest) and would hash a whole table to join a few
     * rows (write.c PG_W_STEPS_*). */
    return pg_run(s->w, "set the durability",
                  "SELECT set_config('synchronous_commit', $1, false),"
                  " set_config('idle_in_transaction_session_timeout', $2, false),"
                  " set_config('plan_cache_mode', 'force_generic_plan', false),"
                  " set_config('enable_hashjoin', 'off', false),"
                  " set_config('enable_mergejoin', 'off', false),"
                  " set_config('enable_material', 'off', false)",
                  2, params, err);
}

/* A broken connection (the server restarted, the network failed) is reset
 * once; DURABLE_EIO if it stays broken. */
static durable_code conn_check(PGconn *c, durable_error *err)
{
    if (PQstatus(c) == CONNECTION_OK)
        return DURABLE_OK;
    PQreset(c);
    if (PQstatus(c) == CONNECTION_OK)
        return DURABLE_OK;
    return err_set(err, DURABLE_EIO, "could not reconnect to the database: %s", PQerrorMessage(c));
}

/* ---- opening ---- */

static void node_default(struct pg_store *s)
{
    char host[64] = "node";

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "node");
    host[sizeof(host) - 1] = '\0';
    snprintf(s->node_id, sizeof(s->node_id), "%.32s:%ld", host, (long)getpid());
    s->lease_ms = PG_LEASE_MS_DEFAULT;
}

durable_code pg_open(const char *location, durable_durability durability, struct store **out,
                     durable_error *err)
{
    struct pg_store *s = xcalloc(1, sizeof(*s));
    durable_code rc;

    *out = NULL;
    s->base.ops = &pg_store_ops;
    s->durability = durability;
    pthread_mutex_init(&s->read_mu, NULL);
    pthread_mutex_init(&s->code_mu, NULL);
    s->code_ids = xstrdup("{}");
    pg_write_init(s);
    pthread_cond_init(&s->read_cond, NULL);
    node_default(s);
    rc = pg_location_conninfo(location, &s->conninfo, err);
    if (rc == DURABLE_OK)
        rc = pg_connect(s->conninfo, &s->w, err);
    if (rc == DURABLE_OK)
        rc = pg_migrate(s->w, err);
    if (rc == DURABLE_OK)
        rc = writer_settings(s, err);
    /* The first reader now, so that a database it cannot read fails here. */
    if (rc == DURABLE_OK)
        rc = pg_connect(s->conninfo, &s->readers[0], err);
    if (rc != DURABLE_OK) {
        pg_close(&s->base);
        return rc;
    }
    s->n_open = 1;
    s->idle[s->n_idle++] = s->readers[0];
    *out = &s->base;
    return DURABLE_OK;
}

void pg_close(struct store *base)
{
    struct pg_store *s = pg_of(base);

    if (!s)
        return;
    if (s->cl)
        pg_cluster_ops.leave(base);
    for (size_t i = 0; i < PG_READERS; i++)
        PQfinish(s->readers[i]); /* accepts NULL */
    pg_write_begin(s, false);    /* clears what was read ahead */
    PQfinish(s->w);
    free(s->w_fifo);
    free(s->ahead);
    free(s->ahead_order);
    pg_write_free(s);
    pthread_cond_destroy(&s->read_cond);
    pthread_mutex_destroy(&s->read_mu);
    free(s->conninfo);
    free(s->code_ids);
    pthread_mutex_destroy(&s->code_mu);
    free(s);
}

void pg_store_set_node(struct store *base, const char *node_id, int64_t lease_ms)
{
    struct pg_store *s = pg_of(base);

    if (node_id)
        snprintf(s->node_id, sizeof(s->node_id), "%s", node_id);
    if (lease_ms > 0 && lease_ms != s->lease_ms) {
        durable_error err = { 0 };
        s->lease_ms = lease_ms;
        if (s->w && writer_settings(s, &err) != DURABLE_OK)
            log_warn("%s", err.msg); /* again at the writer's next reconnect */
    }
}

void pg_store_set_code_workflows(struct store *base, const char *const *ids, size_t n)
{
    struct pg_store *s = pg_of(base);
    struct dbuf b;
    char *text;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{");
    for (size_t i = 0; i < n; i++) { /* each element quoted: "a\"b" */
        dbuf_adds(&b, i > 0 ? ",\"" : "\"");
        for (const char *c = ids[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                dbuf_adds(&b, "\\");
            dbuf_add(&b, c, 1);
        }
        dbuf_adds(&b, "\"");
    }
    dbuf_adds(&b, "}");
    text = dbuf_detach(&b, NULL);
    pthread_mutex_lock(&s->code_mu);
    free(s->code_ids);
    s->code_ids = text;
    pthread_mutex_unlock(&s->code_mu);
}

/* ---- the read pool ---- */

durable_code pg_reader_take(struct pg_store *s, PGconn **out, durable_error *err)
{
    PGconn *c = NULL;
    size_t i;
    durable_code rc;

    *out = NULL;
    pthread_mutex_lock(&s->read_mu);
    while (s->n_idle == 0 && s->n_open >= PG_READERS)
        pthread_cond_wait(&s->read_cond, &s->read_mu);
    if (s->n_idle > 0) {
        c = s->idle[--s->n_idle];
        pthread_mutex_unlock(&s->read_mu);
        rc = conn_check(c, err);
        if (rc != DURABLE_OK) {
            pg_reader_put(s, c);
            return rc;
        }
        *out = c;
        return DURABLE_OK;
    }
    i = s->n_open++; /* reserved: connected outside the mutex */
    pthread_mutex_unlock(&s->read_mu);
    rc = pg_connect(s->conninfo, &c, err);
    pthread_mutex_lock(&s->read_mu);
    if (rc == DURABLE_OK) {
        s->readers[i] = c;
    } else if (s->n_open == i + 1) {
        s->n_open = i; /* only the last reserved slot can be given back */
    }
    pthread_mutex_unlock(&s->read_mu);
    *out = c;
    return rc;
}

void pg_reader_put(struct pg_store *s, PGconn *c)
{
    pthread_mutex_lock(&s->read_mu);
    DUR_ASSERT(s->n_idle < PG_READERS);
    s->idle[s->n_idle++] = c;
    pthread_cond_signal(&s->read_cond);
    pthread_mutex_unlock(&s->read_mu);
}

/* ---- the writer's transactions ---- */

durable_code pg_synchronous(struct store *base, int *out_level, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    PGresult *r = pg_exec(s->w, "read the durability", "SHOW synchronous_commit", 0, NULL, err);

    if (!r)
        return DURABLE_EIO;
    /* on, remote_write, remote_apply and local all wait for the local WAL
     * flush: FULL (2). off: NORMAL (1). */
    *out_level = strcmp(PQgetvalue(r, 0, 0), "off") == 0 ? 1 : 2;
    PQclear(r);
    return DURABLE_OK;
}

durable_code pg_tx_begin(struct store *base, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    durable_code rc = DURABLE_OK;

    /* A connection the server dropped (a restart) shows when used: then
     * the transaction fails, is rolled back, and the writer's next try
     * finds the connection broken and resets it here. */
    bool reconnect = PQstatus(s->w) != CONNECTION_OK;

    pg_write_begin(s, reconnect);
    if (reconnect) {
        rc = conn_check(s->w, err);
        if (rc == DURABLE_OK)
            rc = writer_settings(s, err);
    }
    if (rc == DURABLE_OK)
        rc = pg_write_tx_begin(s, err);
    return rc;
}

durable_code pg_tx_commit(struct store *base, struct store_events *ev, durable_error *err)
{
    return pg_write_commit(pg_of(base), ev, err);
}

void pg_tx_rollback(struct store *base)
{
    struct pg_store *s = pg_of(base);
    durable_error err = { 0 };

    pg_write_end(s);
    pg_write_forget(s);
    if (PQstatus(s->w) != CONNECTION_OK || PQtransactionStatus(s->w) == PQTRANS_IDLE)
        return;
    if (pg_run(s->w, "roll back", "ROLLBACK", 0, NULL, &err) != DURABLE_OK)
        log_error("%s", err.msg);
}

/* ---- reads ---- */

static const char sql_read_begin[] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/* Sends q (between BEGIN and COMMIT when wrap) and a sync. */
static bool pipeline_send(PGconn *c, const struct pg_query *q, size_t n, bool wrap)
{
    bool ok = PQenterPipelineMode(c) == 1;

    if (ok && wrap)
        ok = PQsendQueryParams(c, sql_read_begin, 0, NULL, NULL, NULL, NULL, 0) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = PQsendQueryParams(c, q[i].sql, q[i].n_params, NULL, q[i].params, NULL, NULL, 0) == 1;
    if (ok && wrap)
        ok = PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
    return ok && PQpipelineSync(c) == 1;
}

/* Where pipeline_collect keeps what it read. */
struct collect {
    const struct pg_query *q;
    size_t n;
    size_t first; /* the index of q[0] among the statements sent */
    PGresult **out;
    durable_code rc;
};

/* Takes the result r of statement i: kept in out when it is q's first, an
 * error kept when it is the first one (what follows it in the pipeline is
 * aborted), else cleared. */
static void collect_one(struct collect *k, size_t i, PGresult *r, durable_error *err)
{
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    bool is_q = i >= k->first && i < k->first + k->n;

    if (ok && is_q && !k->out[i - k->first]) {
        k->out[i - k->first] = r;
        return;
    }
    if (!ok && k->rc == DURABLE_OK) {
        k->rc = err_set(err, DURABLE_EIO, "could not %s: %s",
                        is_q ? k->q[i - k->first].what : "read",
                        st == PGRES_PIPELINE_ABORTED ? "aborted" : PQresultErrorMessage(r));
    }
    PQclear(r);
}

/* Reads the results of a pipeline_send up to its sync. Each statement's
 * results end with a NULL from PQgetResult; more NULLs than statements
 * mean the connection broke. */
static durable_code pipeline_collect(PGconn *c, const struct pg_query *q, size_t n, bool wrap,
                                     PGresult **out, durable_error *err)
{
    struct collect k = { q, n, wrap ? 1 : 0, out, DURABLE_OK };
    size_t total = n + (wrap ? 2 : 0);
    size_t i = 0;

    for (;;) {
        PGresult *r = PQgetResult(c);
        if (!r) {
            if (++i <= total && PQstatus(c) == CONNECTION_OK)
                continue;
            if (k.rc == DURABLE_OK)
                k.rc = err_set(err, DURABLE_EIO, "could not read: %s", PQerrorMessage(c));
            break;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        collect_one(&k, i, r, err);
    }
    return k.rc;
}

/* One try of pg_read on c; leaves c idle, out of pipeline mode. */
static durable_code read_once(PGconn *c, const struct pg_query *q, size_t n, PGresult **out,
                              durable_error *err)
{
    bool wrap = n > 1;
    durable_code rc = DURABLE_OK;

    if (!pipeline_send(c, q, n, wrap))
        rc = err_set(err, DURABLE_EIO, "could not %s: %s", q[0].what, PQerrorMessage(c));
    else
        rc = pipeline_collect(c, q, n, wrap, out, err);
    /* A pipeline left unfinished (a broken connection) cannot be left:
     * the connection is reset by the next pg_reader_take. */
    if (PQpipelineStatus(c) != PQ_PIPELINE_OFF && !PQexitPipelineMode(c))
        PQreset(c);
    /* An error inside BEGIN leaves the transaction aborted past the sync. */
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    if (rc != DURABLE_OK)
        pg_results_clear(out, n);
    return rc;
}

durable_code pg_read(PGconn *c, const struct pg_query *q, size_t n, PGresult **out,
                     durable_error *err)
{
    durable_code rc;

    DUR_ASSERT(n > 0);
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    rc = read_once(c, q, n, out, err);
    /* A connection the server dropped since its last use (a restart) shows
     * only now; a read has no effect, so it is tried again once. */
    if (rc != DURABLE_OK && PQstatus(c) != CONNECTION_OK && conn_check(c, err) == DURABLE_OK)
        rc = read_once(c, q, n, out, err);
    return rc;
}

durable_code pg_reads(struct pg_store *s, const struct pg_query *q, size_t n, PGresult **out,
                      durable_error *err)
{
    PGconn *c = NULL;
    durable_code rc = pg_reader_take(s, &c, err);

    if (rc != DURABLE_OK) {
        for (size_t i = 0; i < n; i++)
            out[i] = NULL;
        return rc;
    }
    rc = pg_read(c, q, n, out, err);
    pg_reader_put(s, c);
    return rc;
}

void pg_results_clear(PGresult **r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        PQclear(r[i]);
        r[i] = NULL;
    }
}

/* ---- ping ---- */

durable_code pg_ping(struct store *base, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    PGconn *c = NULL;
    durable_code rc = pg_reader_take(s, &c, err);

    if (rc != DURABLE_OK)
        return rc;
    /* A real read of a table, unlike "SELECT 1"; again once on a connection
     * found dropped (the server restarted since it was last used). */
    rc = pg_run(c, "read the database", "SELECT version FROM schema_version", 0, NULL, err);
    if (rc != DURABLE_OK && PQstatus(c) != CONNECTION_OK && conn_check(c, err) == DURABLE_OK)
        rc = pg_run(c, "read the database", "SELECT version FROM schema_version", 0, NULL, err);
    pg_reader_put(s, c);
    return rc;
}

const struct store_ops pg_store_ops = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .schema_version = pg_schema_version,
    .synchronous = pg_synchronous,
    .tx_begin = pg_tx_begin,
    .tx_commit = pg_tx_commit,
    .tx_rollback = pg_tx_rollback,
    .rows = &pg_rows_ops,
    .prefetch = pg_prefetch,
    .workflow_get = pg_workflow_get,
    .run_load = pg_run_load,
    .runs_unfinished = pg_runs_unfinished,
    .run_find_by_key = pg_run_find_by_key,
    .run_status = pg_run_status,
    .run_read = pg_run_read,
    .events_read = pg_events_read,
    .events_since = pg_events_since,
    .order_read = pg_order_read,
    .runs_page = pg_runs_page,
    .workflows_page = pg_workflows_page,
    .orders_page = pg_orders_page,
    .snapshot_json = pg_snapshot_json,
    .count_runs = pg_count_runs,
    .count_steps = pg_count_steps,
    .ping = pg_ping,
    .kv_read = pg_kv_read,
    .schedules_read = pg_schedules_read,
    .cluster = &pg_cluster_ops,
};
