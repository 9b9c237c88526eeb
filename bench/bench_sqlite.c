/*
 * bench_sqlite.c - the baselines: what the disk and raw SQLite cost, measured
 * in the same run and on the same disk as the engine's workloads, so that
 * the engine's figures can be read as ratios to the physical limit.
 *
 *   bench_sqlite fsync  --dir D            4 KiB pwrite + fdatasync, median
 *   bench_sqlite commit --db P             one small row per transaction with
 *                                          durable's pragmas (WAL, synchronous
 *                                          FULL, foreign_keys), median per commit
 *   bench_sqlite batch  --db P --like W2DB --commits N
 *                                          re-inserts every runs/steps/events row
 *                                          that workload W2 left in W2DB (so the
 *                                          same number and size of rows, in
 *                                          durable's own schema and indexes) in
 *                                          N transactions, N being the number of
 *                                          commits durable's writer made in W2
 *   bench_sqlite scan   --db P             reads every unfinished run with its
 *                                          steps in one query: what recovery
 *                                          (W5) must at least read
 *
 * Each prints one JSON object on stdout (bench_util.h).
 */
#define _GNU_SOURCE

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define COMMIT_MAX    3000
#define COMMIT_WARMUP 20
#define FSYNC_MAX     1000

static void exec_or_die(sqlite3 *db, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        bench_die("sqlite: %s: %s", sql, msg ? msg : "?");
}

/* Opens path with durable's pragmas (src/store/sqlite.c conn_pragmas). */
static sqlite3 *open_like_durable(const char *path, long page_size)
{
    sqlite3 *db = NULL;
    char sql[64];

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        bench_die("cannot open %s", path);
    sqlite3_busy_timeout(db, 10000);
    if (page_size > 0) {
        snprintf(sql, sizeof(sql), "PRAGMA page_size=%ld", page_size);
        exec_or_die(db, sql);
    }
    exec_or_die(db, "PRAGMA journal_mode=WAL");
    exec_or_die(db, "PRAGMA synchronous=FULL");
    exec_or_die(db, "PRAGMA foreign_keys=ON");
    return db;
}

static long page_size_of(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    long v = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ---- fsync ---- */

static int run_fsync(const char *dir, double seconds)
{
    static char block[4096];
    double lat[FSYNC_MAX];
    char path[4096];
    int64_t end;
    size_t n = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/fsync.bin", dir);
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0)
        bench_die("cannot create %s", path);
    memset(block, 'x', sizeof(block));
    end = bench_now_ns() + (int64_t)(seconds * 1e9);
    while (n < FSYNC_MAX && bench_now_ns() < end) {
        int64_t t0 = bench_now_ns();
        /* Appending, as a WAL does: each sync also writes file metadata. */
        if (pwrite(fd, block, sizeof(block), (off_t)(n * sizeof(block))) != (ssize_t)sizeof(block))
            bench_die("write failed");
        if (fdatasync(fd) != 0)
            bench_die("fdatasync failed");
        lat[n++] = (double)(bench_now_ns() - t0) / 1e6;
    }
    close(fd);
    unlink(path);
    bench_json_begin();
    bench_json_num("n", (double)n);
    bench_json_num("p99_ms", bench_percentile(lat, n, 99));
    bench_json_num("median_ms", bench_percentile(lat, n, 50));
    bench_json_end();
    return 0;
}

/* ---- commit latency ---- */

static int run_commit(const char *path, long page_size, double seconds)
{
    static double lat[COMMIT_MAX];
    sqlite3 *db = open_like_durable(path, page_size);
    sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
    char data[101];
    int64_t end;
    size_t n = 0;
    long i;

    memset(data, 'd', sizeof(data) - 1);
    data[sizeof(data) - 1] = '\0';
    exec_or_die(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL,"
                    " data TEXT NOT NULL)");
    if (sqlite3_prepare_v2(db, "INSERT INTO t (run_id, data) VALUES (?1, ?2)", -1, &ins, NULL) ||
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL))
        bench_die("prepare: %s", sqlite3_errmsg(db));
    end = bench_now_ns() + (int64_t)(seconds * 1e9);
    for (i = 0; n < COMMIT_MAX && bench_now_ns() < end; i++) {
        int64_t t0 = bench_now_ns();
        sqlite3_step(begin);
        sqlite3_reset(begin);
        sqlite3_bind_text(ins, 1, "run_0123456789abcdef0123456789", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, data, -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            bench_die("insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(ins);
        if (sqlite3_step(commit) != SQLITE_DONE)
            bench_die("commit: %s", sqlite3_errmsg(db));
        sqlite3_reset(commit);
        if (i >= COMMIT_WARMUP)
            lat[n++] = (double)(bench_now_ns() - t0) / 1e6;
    }
    page_size = page_size_of(db);
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    bench_json_begin();
    bench_json_num("n", (double)n);
    bench_json_num("page_size", (double)page_size);
    bench_json_str("sqlite_version", sqlite3_libversion());
    bench_json_num("p99_ms", bench_percentile(lat, n, 99));
    bench_json_num("median_ms", bench_percentile(lat, n, 50));
    bench_json_end();
    return 0;
}

/* ---- batch rows ---- */

/* One row to insert: its table's statement and its values (owned). */
struct row {
    int table;
    int n_cols;
    sqlite3_value **vals;
};

struct rows {
    struct row *v;
    size_t n, cap;
};

enum { T_RUNS, T_STEPS, T_EVENTS, T_COUNT };
static const char *const table_names[T_COUNT] = { "runs", "steps", "events" };

static void rows_add(struct rows *rs, int table, sqlite3_stmt *st)
{
    struct row *r;
    int c;

    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 1024;
        rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
        if (!rs->v)
            bench_die("out of memory");
    }
    r = &rs->v[rs->n++];
    r->table = table;
    r->n_cols = sqlite3_column_count(st);
    r->vals = calloc((size_t)r->n_cols, sizeof(*r->vals));
    for (c = 0; c < r->n_cols; c++)
        r->vals[c] = sqlite3_value_dup(sqlite3_column_value(st, c));
}

static void rows_release(struct rows *rs)
{
    size_t i;
    int c;

    for (i = 0; i < rs->n; i++) {
        for (c = 0; c < rs->v[i].n_cols; c++)
            sqlite3_value_free(rs->v[i].vals[c]);
        free(rs->v[i].vals);
    }
    free(rs->v);
    memset(rs, 0, sizeof(*rs));
}

/* Appends the rows of st (one table; bound, reset afterwards) to rs.
 * Returns how many. */
static size_t load_rows(sqlite3_stmt *st, int table, struct rows *rs)
{
    size_t n = 0;

    while (sqlite3_step(st) == SQLITE_ROW) {
        rows_add(rs, table, st);
        n++;
    }
    sqlite3_reset(st);
    return n;
}

static sqlite3_stmt *prepare_or_die(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        bench_die("%s: %s", sql, sqlite3_errmsg(db));
    return st;
}

/* Copies the schema (tables and indexes) of src. */
static void copy_schema(sqlite3 *src, sqlite3 *dst)
{
    sqlite3_stmt *st = NULL;

    sqlite3_prepare_v2(
            src,
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            " ORDER BY type = 'index', rowid",
            -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW)
        exec_or_die(dst, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static sqlite3_stmt *insert_stmt(sqlite3 *dst, const char *table, int n_cols)
{
    char sql[512];
    sqlite3_stmt *st = NULL;
    size_t len;
    int c;

    len = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (", table);
    for (c = 0; c < n_cols; c++)
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s?", c ? "," : "");
    snprintf(sql + len, sizeof(sql) - len, ")");
    if (sqlite3_prepare_v2(dst, sql, -1, &st, NULL) != SQLITE_OK)
        bench_die("%s: %s", sql, sqlite3_errmsg(dst));
    return st;
}

/* The rows in durable's order: each run with its steps just before its first
 * event (as TR_RUN_CREATE writes them), events in commit order (gid). */
static void load_in_commit_order(sqlite3 *src, struct rows *rs, size_t counts[T_COUNT])
{
    sqlite3_stmt *ev = prepare_or_die(src, "SELECT * FROM events ORDER BY gid");
    sqlite3_stmt *run = prepare_or_die(src, "SELECT * FROM runs WHERE id = ?1");
    sqlite3_stmt *steps = prepare_or_die(src, "SELECT * FROM steps WHERE run_id = ?1 ORDER BY idx");
    int c_run = -1, c_seq = -1, c;

    memset(counts, 0, T_COUNT * sizeof(counts[0]));
    for (c = 0; c < sqlite3_column_count(ev); c++) {
        if (strcmp(sqlite3_column_name(ev, c), "run_id") == 0)
            c_run = c;
        if (strcmp(sqlite3_column_name(ev, c), "seq") == 0)
            c_seq = c;
    }
    if (c_run < 0 || c_seq < 0)
        bench_die("events has no run_id or seq column");
    while (sqlite3_step(ev) == SQLITE_ROW) {
        if (sqlite3_column_int(ev, c_seq) == 1) {
            sqlite3_bind_value(run, 1, sqlite3_column_value(ev, c_run));
            counts[T_RUNS] += load_rows(run, T_RUNS, rs);
            sqlite3_bind_value(steps, 1, sqlite3_column_value(ev, c_run));
            counts[T_STEPS] += load_rows(steps, T_STEPS, rs);
        }
        rows_add(rs, T_EVENTS, ev);
        counts[T_EVENTS]++;
    }
    sqlite3_finalize(ev);
    sqlite3_finalize(run);
    sqlite3_finalize(steps);
}

/* Copies the workflows rows (the runs refer to them), outside the timing. */
static void copy_workflows(sqlite3 *src, sqlite3 *dst)
{
    struct rows wf = { 0 };
    sqlite3_stmt *st = prepare_or_die(src, "SELECT * FROM workflows");
    size_t i;
    int k;

    load_rows(st, 0, &wf);
    sqlite3_finalize(st);
    st = wf.n ? insert_stmt(dst, "workflows", wf.v[0].n_cols) : NULL;
    for (i = 0; i < wf.n; i++) {
        for (k = 0; k < wf.v[i].n_cols; k++)
            sqlite3_bind_value(st, k + 1, wf.v[i].vals[k]);
        if (sqlite3_step(st) != SQLITE_DONE)
            bench_die("insert into workflows: %s", sqlite3_errmsg(dst));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    rows_release(&wf);
}

static int64_t bytes_of(const struct rows *rs)
{
    int64_t total = 0;
    size_t i;
    int c;

    for (i = 0; i < rs->n; i++) {
        for (c = 0; c < rs->v[i].n_cols; c++)
            total += sqlite3_value_bytes(rs->v[i].vals[c]);
    }
    return total;
}

static int run_batch(const char *path, const char *like, long n_commits)
{
    sqlite3 *src = NULL, *dst;
    sqlite3_stmt *ins[T_COUNT] = { 0 };
    struct rows rs = { 0 };
    size_t counts[T_COUNT], i, per_commit;
    double cpu0, secs, cpu;
    int64_t t0;
    int k;

    if (sqlite3_open_v2(like, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        bench_die("cannot open %s", like);
    dst = open_like_durable(path, page_size_of(src));
    copy_schema(src, dst);
    load_in_commit_order(src, &rs, counts);
    copy_workflows(src, dst);
    sqlite3_close(src);
    if (rs.n == 0 || n_commits < 1)
        bench_die("nothing to insert from %s", like);
    for (k = 0; k < T_COUNT; k++) {
        size_t j;
        for (j = 0; j < rs.n && rs.v[j].table != k; j++)
            ;
        if (j < rs.n)
            ins[k] = insert_stmt(dst, table_names[k], rs.v[j].n_cols);
    }
    per_commit = (rs.n + (size_t)n_commits - 1) / (size_t)n_commits;
    cpu0 = bench_cpu_seconds();
    t0 = bench_now_ns();
    for (i = 0; i < rs.n; i++) {
        struct row *r = &rs.v[i];
        if (i % per_commit == 0)
            exec_or_die(dst, "BEGIN IMMEDIATE");
        for (k = 0; k < r->n_cols; k++)
            sqlite3_bind_value(ins[r->table], k + 1, r->vals[k]);
        if (sqlite3_step(ins[r->table]) != SQLITE_DONE)
            bench_die("insert into %s: %s", table_names[r->table], sqlite3_errmsg(dst));
        sqlite3_reset(ins[r->table]);
        if ((i + 1) % per_commit == 0 || i + 1 == rs.n)
            exec_or_die(dst, "COMMIT");
    }
    secs = (double)(bench_now_ns() - t0) / 1e9;
    cpu = bench_cpu_seconds() - cpu0;
    bench_json_begin();
    bench_json_num("rows", (double)rs.n);
    bench_json_num("bytes", (double)bytes_of(&rs));
    bench_json_num("runs", (double)counts[T_RUNS]);
    bench_json_num("steps", (double)counts[T_STEPS]);
    bench_json_num("events", (double)counts[T_EVENTS]);
    bench_json_num("commits", (double)((rs.n + per_commit - 1) / per_commit));
    bench_json_num("rows_per_commit", (double)per_commit);
    bench_json_num("seconds", secs);
    bench_json_num("steps_per_s", (double)counts[T_STEPS] / secs);
    bench_json_num("cpu_ms_per_run", cpu * 1e3 / (double)counts[T_RUNS]);
    bench_json_end();
    for (k = 0; k < T_COUNT; k++)
        sqlite3_finalize(ins[k]);
    sqlite3_close(dst);
    rows_release(&rs);
    return 0;
}

/* ---- scan ---- */

static int run_scan(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t t0 = bench_now_ns(), bytes = 0;
    long runs = 0, rows = 0;
    int c;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        bench_die("cannot open %s", path);
    st = prepare_or_die(
            db, "SELECT r.id, r.workflow_id, r.status, r.input, r.order_id, r.created_at,"
                " r.deadline_at, s.step_id, s.status, s.attempt, s.wake_at, s.started_at, s.output"
                " FROM runs r JOIN steps s ON s.run_id = r.id"
                " WHERE r.status IN ('pending', 'running', 'waiting')");
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (c = 0; c < sqlite3_column_count(st); c++)
            bytes += sqlite3_column_bytes(st, c);
        rows++;
    }
    sqlite3_finalize(st);
    st = prepare_or_die(db, "SELECT count(*) FROM runs WHERE status IN ('pending', 'running',"
                            " 'waiting')");
    if (sqlite3_step(st) == SQLITE_ROW)
        runs = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    bench_json_begin();
    bench_json_num("runs", (double)runs);
    bench_json_num("rows", (double)rows);
    bench_json_num("bytes", (double)bytes);
    bench_json_num("seconds", (double)(bench_now_ns() - t0) / 1e9);
    bench_json_end();
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "", *db = NULL, *dir = ".", *like = NULL;
    double seconds = 3;
    long page_size = 0, commits = 0;
    int i;

    for (i = 2; i < argc; i++) {
        if (!bench_opt_str(argc, argv, &i, "--db", &db) &&
            !bench_opt_str(argc, argv, &i, "--dir", &dir) &&
            !bench_opt_str(argc, argv, &i, "--like", &like) &&
            !bench_opt_double(argc, argv, &i, "--seconds", &seconds) &&
            !bench_opt_long(argc, argv, &i, "--page-size", &page_size) &&
            !bench_opt_long(argc, argv, &i, "--commits", &commits))
            bench_die("unknown option \"%s\"", argv[i]);
    }
    if (strcmp(mode, "fsync") == 0)
        return run_fsync(dir, seconds);
    if (strcmp(mode, "commit") == 0 && db)
        return run_commit(db, page_size, seconds);
    if (strcmp(mode, "scan") == 0 && db)
        return run_scan(db);
    if (strcmp(mode, "batch") == 0 && db && like)
        return run_batch(db, like, commits);
    fprintf(stderr, "usage: bench_sqlite fsync --dir D | commit --db P [--page-size N] |"
                    " batch --db P --like W2DB --commits N | scan --db P\n");
    return 2;
}
