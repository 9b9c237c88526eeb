/*
 * bench_pg.c - PostgreSQL's baseline: what one small committed row costs
 * on the server the PostgreSQL workloads use, measured in the same run, so
 * that their figures read as ratios to it (as bench_sqlite's commit for
 * SQLite).
 *
 *   bench_pg commit --db URL [--seconds S]
 *       one ~130-byte row per transaction (BEGIN; INSERT; COMMIT, one round
 *       trip each, as a client without pipelining pays it; the server's
 *       synchronous_commit as configured), median and p99 per commit
 *
 * Prints one JSON object on stdout (bench_util.h).
 */
#define _GNU_SOURCE

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define COMMIT_MAX    3000
#define COMMIT_WARMUP 20

static void exec_or_die(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        bench_die("postgresql: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static int run_commit(const char *url, double seconds)
{
    static double lat[COMMIT_MAX];
    PGconn *c = PQconnectdb(url);
    char data[101];
    const char *params[2] = { "run_0123456789abcdef0123456789", data };
    int64_t end;
    size_t n = 0;
    PGresult *r;
    char sync[32] = "?";

    if (PQstatus(c) != CONNECTION_OK)
        bench_die("cannot connect to %s: %s", url, PQerrorMessage(c));
    memset(data, 'd', sizeof(data) - 1);
    data[sizeof(data) - 1] = '\0';
    exec_or_die(c,
                "CREATE TABLE bench_commit (id bigserial PRIMARY KEY, run_id text NOT NULL,"
                " data text NOT NULL)",
                0, NULL);
    end = bench_now_ns() + (int64_t)(seconds * 1e9);
    for (long i = 0; n < COMMIT_MAX && bench_now_ns() < end; i++) {
        int64_t t0 = bench_now_ns();
        exec_or_die(c, "BEGIN", 0, NULL);
        exec_or_die(c, "INSERT INTO bench_commit (run_id, data) VALUES ($1, $2)", 2, params);
        exec_or_die(c, "COMMIT", 0, NULL);
        if (i >= COMMIT_WARMUP)
            lat[n++] = (double)(bench_now_ns() - t0) / 1e6;
    }
    r = PQexec(c, "SHOW synchronous_commit");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(sync, sizeof(sync), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    exec_or_die(c, "DROP TABLE bench_commit", 0, NULL);
    bench_json_begin();
    bench_json_num("n", (double)n);
    bench_json_num("server_version", (double)PQserverVersion(c));
    bench_json_str("synchronous_commit", sync);
    bench_json_num("p99_ms", bench_percentile(lat, n, 99));
    bench_json_num("median_ms", bench_percentile(lat, n, 50));
    bench_json_end();
    PQfinish(c);
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    double seconds = 3;

    if (argc < 2 || strcmp(argv[1], "commit") != 0)
        bench_die("usage: bench_pg commit --db URL [--seconds S]");
    for (int i = 2; i < argc; i++) {
        if (!bench_opt_str(argc, argv, &i, "--db", &url) &&
            !bench_opt_double(argc, argv, &i, "--seconds", &seconds))
            bench_die("unknown option %s", argv[i]);
    }
    if (!url)
        bench_die("bench_pg commit needs --db URL");
    return run_commit(url, seconds);
}
