/*
 * bench_engine.c - the engine's workloads through the public C API
 * (include/durable.h), one per process so that peak RSS and thread counts
 * belong to that workload alone.
 *
 *   w1  --db P                 100-step chain: per-step latency from the
 *                              commit of one step_completed to the next
 *   w1code --db P              the same with a code-first workflow of 100
 *                              sequential durable_step calls
 *   w1once --db P              w1code with steps that answer at once
 *                              (durable_step_opts.answers_at_once)
 *   w2  --db P                 1,000 runs x 10 chained steps, 50 in flight
 *   w3  --db P                 1 -> 100 -> 1 fan-out: start to run_completed
 *   w4  --db P                 10,000 runs with a 30 s task in flight
 *   w5create  --db P           100,000 runs left with a running 1-hour task
 *   w5recover --db P           durable_open (RECOVER_ALL) over them
 *   lib --db P                 run starts and durable_run_get per second from
 *                              library threads: the baseline of W6
 *   sched --db P               1,000 schedules `every: 1s`: CPU per tick (the
 *                              process's, the writer's and the schedule
 *                              thread's), ticks that start a run (overlap
 *                              allow) and ticks skipped (overlap skip)
 *   w8map --db P               one run mapping a task of 0 s over 10,000 items
 *                              (--steps, max_concurrency --inflight), against
 *                              one run of 10,000 independent plain steps
 *
 * Times of events are taken in a durable_subscribe callback with
 * CLOCK_MONOTONIC: the callback runs on the writer thread right after the
 * commit, so the time is the commit's, not the caller's wake-up.
 * Every wait is bounded (WAIT_MS); a workload that runs out of time dies
 * with a message, which bench/run.py reports as a failure.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "durable.h"

#define WAIT_MS 120000

/* ---- options ---- */

struct opts {
    const char *db;
    long runs;      /* how many runs the workload starts */
    long steps;     /* steps per run (chains) or width (fan-out) */
    long inflight;  /* runs in flight (W2) or starter threads */
    long reps;      /* repetitions (W1, W3) */
    double seconds; /* duration of a timed phase */
};

/* ---- watching committed events ---- */

/* What the subscriber saw. Guarded by mu; the callback is on the writer. */
struct watch {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    long n_started;   /* step_started */
    long n_completed; /* step_completed */
    long n_runs_done; /* run_completed / run_failed / run_cancelled */
    long n_runs_failed;
    int64_t *completed_ns; /* W1: time of each step_completed, if set */
    size_t n_completed_ns, cap_completed_ns;
    int64_t last_run_done_ns;
};

static struct watch watch = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, 0, 0, 0
};

static void on_event(const durable_event *ev, void *ud)
{
    int64_t now = bench_now_ns();
    const char *t = ev->type;

    (void)ud;
    pthread_mutex_lock(&watch.mu);
    if (strcmp(t, "step_started") == 0) {
        watch.n_started++;
    } else if (strcmp(t, "step_completed") == 0) {
        watch.n_completed++;
        if (watch.completed_ns && watch.n_completed_ns < watch.cap_completed_ns)
            watch.completed_ns[watch.n_completed_ns++] = now;
    } else if (strncmp(t, "run_", 4) == 0 && strcmp(t, "run_created") != 0 &&
               strcmp(t, "run_retried") != 0) {
        watch.n_runs_done++;
        watch.last_run_done_ns = now;
        if (strcmp(t, "run_completed") != 0)
            watch.n_runs_failed++;
    }
    pthread_cond_broadcast(&watch.cond);
    pthread_mutex_unlock(&watch.mu);
}

/* Waits until *field >= target (a field of watch) or WAIT_MS passes. */
static bool watch_wait(const long *field, long target)
{
    struct timespec ts;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&watch.mu);
    while (*field < target) {
        if (pthread_cond_timedwait(&watch.cond, &watch.mu, &ts) != 0)
            break;
    }
    ok = *field >= target;
    pthread_mutex_unlock(&watch.mu);
    return ok;
}

static long watch_get(const long *field)
{
    long v;

    pthread_mutex_lock(&watch.mu);
    v = *field;
    pthread_mutex_unlock(&watch.mu);
    return v;
}

/* ---- the engine ---- */

static durable *open_db(const char *path, durable_durability dur, durable_recovery rec)
{
    durable_options o = { .db_path = path, .durability = dur, .recovery = rec };
    durable_error err = { 0 };
    durable *d = durable_open(&o, &err);

    if (!d)
        bench_die("cannot open %s: %s", path, err.msg);
    durable_subscribe(d, on_event, NULL);
    return d;
}

/* Appends to buf (of size cap) with a hard stop. */
static void addf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void addf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        bench_die("definition too long");
    *len += (size_t)n;
}

#define STEP_FMT "{\"id\": \"s%ld\", \"type\": \"task\", \"config\": {\"duration_seconds\": %g}, "

/* A chain of n task steps of duration d seconds. Returns the workflow id. */
static char *register_chain(durable *d, const char *name, long n, double dur)
{
    size_t cap = 256 + (size_t)n * 128, len = 0;
    char *def = malloc(cap), *id = NULL;
    durable_error err = { 0 };
    long i;

    addf(def, cap, &len, "{\"name\": \"%s\", \"steps\": [", name);
    for (i = 0; i < n; i++) {
        addf(def, cap, &len, "%s" STEP_FMT, i ? ", " : "", i, dur);
        if (i == 0)
            addf(def, cap, &len, "\"depends_on\": []}");
        else
            addf(def, cap, &len, "\"depends_on\": [\"s%ld\"]}", i - 1);
    }
    addf(def, cap, &len, "]}");
    if (durable_workflow_register(d, def, len, &id, NULL, NULL, &err) != DURABLE_OK)
        bench_die("cannot register %s: %s", name, err.msg);
    free(def);
    return id;
}

/* One step "a", `width` steps after it, one step "z" after all of them. */
static char *register_fanout(durable *d, long width)
{
    size_t cap = 512 + (size_t)width * 160, len = 0;
    char *def = malloc(cap), *id = NULL;
    durable_error err = { 0 };
    long i;

    addf(def, cap, &len, "{\"name\": \"bench-fanout\", \"steps\": [");
    addf(def, cap, &len, STEP_FMT "\"depends_on\": []}", -1L, 0.0);
    for (i = 0; i < width; i++)
        addf(def, cap, &len, ", " STEP_FMT "\"depends_on\": [\"s-1\"]}", i, 0.0);
    addf(def, cap, &len, ", " STEP_FMT "\"depends_on\": [", width, 0.0);
    for (i = 0; i < width; i++)
        addf(def, cap, &len, "%s\"s%ld\"", i ? ", " : "", i);
    addf(def, cap, &len, "]}]}");
    if (durable_workflow_register(d, def, len, &id, NULL, NULL, &err) != DURABLE_OK)
        bench_die("cannot register the fan-out: %s", err.msg);
    free(def);
    return id;
}

static char *start_run(durable *d, const char *wf)
{
    durable_run_request req = { .workflow = wf };
    durable_error err = { 0 };
    char *run_id = NULL;

    if (durable_run_start(d, &req, &run_id, NULL, &err) != DURABLE_OK)
        bench_die("cannot start a run of %s: %s", wf, err.msg);
    return run_id;
}

static void wait_run(durable *d, const char *run_id)
{
    durable_error err = { 0 };
    const char *status = NULL;

    if (durable_run_wait(d, run_id, WAIT_MS, &status, &err) != DURABLE_OK)
        bench_die("run %s: %s", run_id, err.msg);
    if (strcmp(status, "completed") != 0)
        bench_die("run %s ended %s", run_id, status);
}

/* A counter of durable_metrics ("durable_commits_total"), -1 if absent. */
static double metric(durable *d, const char *name)
{
    durable_error err = { 0 };
    char *text = NULL, *p;
    size_t len = strlen(name);
    double v = -1;

    if (durable_metrics(d, &text, &err) != DURABLE_OK)
        bench_die("metrics: %s", err.msg);
    for (p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, len) == 0 && p[len] == ' ') {
            v = strtod(p + len + 1, NULL);
            break;
        }
    }
    durable_free(text);
    return v;
}

/* ---- W1: sequential chain ---- */

/* W1 code-first: a workflow function of o->steps sequential steps, each
 * answering at once with a small output. */
static long code_steps;
static durable_step_opts code_opts;

static durable_code code_step(const durable_step_info *info, void *arg, char **out,
                              durable_error *err)
{
    (void)info;
    (void)arg;
    (void)err;
    *out = strdup("{\"ok\":true}");
    return *out ? DURABLE_OK : DURABLE_ENOMEM;
}

static durable_code code_chain(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    for (long i = 0; i < code_steps; i++)
        DURABLE_TRY(durable_step_ex(ctx, "s", code_step, NULL, &code_opts, NULL, err));
    *out = NULL;
    return DURABLE_OK;
}

static int run_w1(const struct opts *o, bool is_code)
{
    durable *d = open_db(o->db, DURABLE_DURABILITY_FULL, DURABLE_RECOVER_ALL);
    char *wf = NULL;
    size_t n_iv = 0, cap_iv = (size_t)(o->reps * o->steps);
    double *iv = calloc(cap_iv, sizeof(*iv)), total_ms = 0;
    long r;

    if (is_code) {
        durable_error err = { 0 };
        code_steps = o->steps;
        if (durable_workflow_fn_register(d, "bench-code", 1, code_chain, NULL, &err) != DURABLE_OK)
            bench_die("register: %s", err.msg);
        wf = strdup("bench-code");
    } else {
        wf = register_chain(d, "bench-chain", o->steps, 0);
    }
    watch.completed_ns = calloc((size_t)o->steps, sizeof(int64_t));
    for (r = 0; r < o->reps; r++) {
        char *run_id;
        int64_t t0;
        size_t k;

        pthread_mutex_lock(&watch.mu);
        watch.n_completed_ns = 0;
        watch.cap_completed_ns = (size_t)o->steps;
        pthread_mutex_unlock(&watch.mu);
        t0 = bench_now_ns();
        run_id = start_run(d, wf);
        wait_run(d, run_id);
        /* On PostgreSQL subscribers are called from the cluster thread,
         * which reads the events after their commit: wait for it (10 s). */
        for (int w = 0; w < 10000; w++) {
            size_t seen;
            pthread_mutex_lock(&watch.mu);
            seen = watch.n_completed_ns;
            pthread_mutex_unlock(&watch.mu);
            if (seen >= (size_t)o->steps)
                break;
            usleep(1000);
        }
        pthread_mutex_lock(&watch.mu);
        if (watch.n_completed_ns != (size_t)o->steps)
            bench_die("saw %zu step completions of %ld", watch.n_completed_ns, o->steps);
        /* Interval k: step k-1's completion committed -> step k's did. The
         * first step is measured from before durable_run_start. */
        iv[n_iv++] = (double)(watch.completed_ns[0] - t0) / 1e6;
        for (k = 1; k < (size_t)o->steps; k++)
            iv[n_iv++] = (double)(watch.completed_ns[k] - watch.completed_ns[k - 1]) / 1e6;
        total_ms += (double)(watch.completed_ns[o->steps - 1] - t0) / 1e6;
        pthread_mutex_unlock(&watch.mu);
        durable_free(run_id);
    }
    bench_json_begin();
    bench_json_num("steps", (double)n_iv);
    bench_json_num("mean_ms", total_ms / (double)n_iv);
    bench_json_num("commits_per_step",
                   metric(d, "durable_commits_total") / (double)(o->reps * o->steps));
    bench_json_num("max_ms", bench_percentile(iv, n_iv, 100));
    bench_json_num("p99_ms", bench_percentile(iv, n_iv, 99));
    bench_json_num("median_ms", bench_percentile(iv, n_iv, 50));
    bench_json_end();
    if (is_code)
        free(wf);
    else
        durable_free(wf);
    durable_close(d);
    free(watch.completed_ns);
    watch.completed_ns = NULL;
    free(iv);
    return 0;
}

/* ---- W2: throughput ---- */

struct w2_ctx {
    durable *d;
    const char *wf;
    atomic_long next;
    long runs;
};

static void *w2_worker(void *arg)
{
    struct w2_ctx *c = arg;

    while (atomic_fetch_add(&c->next, 1) < c->runs) {
        char *run_id = start_run(c->d, c->wf);
        wait_run(c->d, run_id);
        durable_free(run_id);
    }
    return NULL;
}

static int run_w2(const struct opts *o)
{
    durable *d = open_db(o->db, DURABLE_DURABILITY_FULL, DURABLE_RECOVER_ALL);
    char *wf = register_chain(d, "bench-throughput", o->steps, 0);
    struct w2_ctx c = { .d = d, .wf = wf, .runs = o->runs };
    pthread_t *th = calloc((size_t)o->inflight, sizeof(*th));
    double commits0 = metric(d, "durable_commits_total");
    double tr0 = metric(d, "durable_transitions_total");
    double cpu0, cpu, secs, commits, trans;
    int64_t t0;
    long i;

    atomic_init(&c.next, 0);
    cpu0 = bench_cpu_seconds();
    t0 = bench_now_ns();
    for (i = 0; i < o->inflight; i++)
        pthread_create(&th[i], NULL, w2_worker, &c);
    for (i = 0; i < o->inflight; i++)
        pthread_join(th[i], NULL);
    secs = (double)(bench_now_ns() - t0) / 1e9;
    cpu = bench_cpu_seconds() - cpu0;
    commits = metric(d, "durable_commits_total") - commits0;
    trans = metric(d, "durable_transitions_total") - tr0;
    if (watch_get(&watch.n_runs_failed) > 0)
        bench_die("%ld runs did not complete", watch_get(&watch.n_runs_failed));
    bench_json_begin();
    bench_json_num("runs", (double)o->runs);
    bench_json_num("steps", (double)(o->runs * o->steps));
    bench_json_num("seconds", secs);
    bench_json_num("commits", commits);
    bench_json_num("transitions", trans);
    bench_json_num("transitions_per_commit", trans / commits);
    bench_json_num("cpu_ms_per_run", cpu * 1e3 / (double)o->runs);
    bench_json_num("peak_rss_mib", (double)bench_status_kib("VmHWM") / 1024.0);
    bench_json_num("steps_per_s", (double)(o->runs * o->steps) / secs);
    bench_json_end();
    durable_free(wf);
    durable_close(d);
    free(th);
    return 0;
}

/* ---- W3: fan-out ---- */

static int run_w3(const struct opts *o)
{
    durable *d = open_db(o->db, DURABLE_DURABILITY_FULL, DURABLE_RECOVER_ALL);
    char *wf = register_fanout(d, o->steps);
    double *wall = calloc((size_t)o->reps, sizeof(*wall));
    double commits0 = metric(d, "durable_commits_total");
    long r;

    for (r = 0; r < o->reps; r++) {
        long done = watch_get(&watch.n_runs_done);
        int64_t t0 = bench_now_ns();
        char *run_id = start_run(d, wf);

        if (!watch_wait(&watch.n_runs_done, done + 1))
            bench_die("the fan-out run did not finish in time");
        pthread_mutex_lock(&watch.mu);
        wall[r] = (double)(watch.last_run_done_ns - t0) / 1e6;
        pthread_mutex_unlock(&watch.mu);
        wait_run(d, run_id);
        durable_free(run_id);
    }
    bench_json_begin();
    bench_json_num("reps", (double)o->reps);
    bench_json_num("commits_per_run",
                   (metric(d, "durable_commits_total") - commits0) / (double)o->reps);
    bench_json_num("min_ms", bench_percentile(wall, (size_t)o->reps, 0));
    bench_json_num("median_ms", bench_percentile(wall, (size_t)o->reps, 50));
    bench_json_end();
    durable_free(wf);
    durable_close(d);
    free(wall);
    return 0;
}

/* ---- a map over many items against as many plain steps (W8) ---- */

static char *register_text(durable *d, const char *def, size_t len)
{
    durable_error err = { 0 };
    char *id = NULL;

    if (durable_workflow_register(d, def, len, &id, NULL, NULL, &err) != DURABLE_OK)
        bench_die("cannot register a workflow: %s", err.msg);
    return id;
}

/* Wall ms from a start of wf to its run's end, and the commits it took. */
static double time_run(durable *d, const char *wf, double *out_commits)
{
    double commits0 = metric(d, "durable_commits_total");
    int64_t t0 = bench_now_ns();
    char *run_id = start_run(d, wf);
    double ms;

    wait_run(d, run_id);
    ms = (double)(bench_now_ns() - t0) / 1e6;
    *out_commits = metric(d, "durable_commits_total") - commits0;
    durable_free(run_id);
    return ms;
}

static int run_w8map(const struct opts *o)
{
    durable *d = open_db(o->db, DURABLE_DURABILITY_FULL, DURABLE_RECOVER_ALL);
    size_t cap = 1024 + (size_t)o->steps * 120, len = 0;
    char *def = malloc(cap), *map_wf, *plain_wf;
    double map_ms, plain_ms, map_commits, plain_commits;
    long i;

    addf(def, cap, &len,
         "{\"name\": \"bench-map\", \"steps\": ["
         "{\"id\": \"rows\", \"type\": \"transform\", "
         "\"config\": {\"expression\": \"[range(0; %ld)]\"}},"
         "{\"id\": \"each\", \"type\": \"map\", \"depends_on\": [\"rows\"], "
         "\"config\": {\"items\": \".steps.rows.output\", \"max_concurrency\": %ld, "
         "\"step\": {\"type\": \"task\", \"config\": {\"duration_seconds\": 0}}}}]}",
         o->steps, o->inflight);
    map_wf = register_text(d, def, len);
    len = 0;
    addf(def, cap, &len, "{\"name\": \"bench-plain\", \"steps\": [");
    for (i = 0; i < o->steps; i++)
        addf(def, cap, &len, "%s" STEP_FMT "\"depends_on\": []}", i ? ", " : "", i, 0.0);
    addf(def, cap, &len, "]}");
    plain_wf = register_text(d, def, len);
    free(def);
    map_ms = time_run(d, map_wf, &map_commits);
    plain_ms = time_run(d, plain_wf, &plain_commits);
    bench_json_begin();
    bench_json_num("items", (double)o->steps);
    bench_json_num("max_concurrency", (double)o->inflight);
    bench_json_num("map_ms", map_ms);
    bench_json_num("map_commits", map_commits);
    bench_json_num("plain_ms", plain_ms);
    bench_json_num("plain_commits", plain_commits);
    bench_json_num("map_over_plain", map_ms / plain_ms);
    bench_json_end();
    durable_free(map_wf);
    durable_free(plain_wf);
    durable_close(d);
    return 0;
}

/* ---- starting many runs (W4, W5) ---- */

struct starter {
    durable *d;
    const char *wf;
    atomic_long next;
    long runs;
};

static void *starter_main(void *arg)
{
    struct starter *s = arg;

    while (atomic_fetch_add(&s->next, 1) < s->runs)
        durable_free(start_run(s->d, s->wf));
    return NULL;
}

/* Starts `runs` runs of wf from n_threads threads, joins them, and waits
 * until every run's first step has started. Returns the seconds taken. */
static double start_many(durable *d, const char *wf, long runs, long n_threads)
{
    struct starter s = { .d = d, .wf = wf, .runs = runs };
    pthread_t *th = calloc((size_t)n_threads, sizeof(*th));
    long started0 = watch_get(&watch.n_started), i;
    int64_t t0 = bench_now_ns();

    atomic_init(&s.next, 0);
    for (i = 0; i < n_threads; i++)
        pthread_create(&th[i], NULL, starter_main, &s);
    for (i = 0; i < n_threads; i++)
        pthread_join(th[i], NULL);
    if (!watch_wait(&watch.n_started, started0 + runs))
        bench_die("only %ld of %ld steps started", watch_get(&watch.n_started) - started0, runs);
    free(th);
    return (double)(bench_now_ns() - t0) / 1e9;
}

/* ---- W4: many waiting ---- */

static int run_w4(const struct opts *o)
{
    durable *d = open_db(o->db, DURABLE_DURABILITY_FULL, DURABLE_RECOVER_ALL);
    char *wf = register_chain(d, "bench-wait-30s", 1, 30);
    long threads0 = bench_status_kib("Threads"), rss0 = bench_status_kib("VmRSS");
    double secs, close_s;
    long threads, rss, hwm, completed;
    int64_t t0;

    secs = start_many(d, wf, o->runs, o->inflight);
    usleep(200000); /* let the scheduler arm the last timers */
    threads = bench_status_kib("Threads");
    rss = bench_status_kib("VmRSS");
    hwm = bench_status_kib("VmHWM");
    completed = watch_get(&watch.n_completed);
    durable_free(wf);
    t0 = bench_now_ns();
    durable_close(d);
    close_s = (double)(bench_now_ns() - t0) / 1e9;
    bench_json_begin();
    bench_json_num("runs", (double)o->runs);
    bench_json_num("start_seconds", secs);
    bench_json_num("completed_before_measure", (double)completed);
    bench_json_num("threads_idle", (double)threads0);
    bench_json_num("rss_idle_mib", (double)rss0 / 1024.0);
    bench_json_num("peak_rss_mib", (double)hwm / 1024.0);
    bench_json_num("close_seconds", close_s);
    bench_json_num("threads", (double)threads);
    bench_json_num("rss_mib", (double)rss / 1024.0);
    bench_json_end();
    return 0;
}

/* ---- W5: recovery ---- */

static int run_w5create(const struct opts *o)
{
    /* Setup only: PROCESS durability (no fsync) to build the database fast;
     * what is measured is the start-up in w5recover. */
    durable *d = open_db(o->db, DURABLE_DURABILITY_PROCESS, DURABLE_RECOVER_ALL);
    char *wf = register_chain(d, "bench-recover-1h", 1, 3600);
    double secs = start_many(d, wf, o->runs, o->inflight);
    int64_t t0 = bench_now_ns();

    durable_free(wf);
    durable_close(d);
    bench_json_begin();
    bench_json_num("runs", (double)o->runs);
    bench_json_num("close_seconds", (double)(bench_now_ns() - t0) / 1e9);
    bench_json_num("create_seconds", secs);
    bench_json_end();
    return 0;
}

/* The highest global event id in the database (raw SQLite, read-only, before
 * the engine opens it): recovery's events are numbered after it. */
static int64_t max_gid(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT coalesce(max(gid), 0) FROM events", -1, &st, NULL) ==
                SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (v < 0)
        bench_die("cannot read the last event id of %s", path);
    return v;
}

/* Whether the event with global id gid has committed (an indexed read). */
static bool event_committed(durable *d, int64_t gid)
{
    durable_error err = { 0 };
    char *json = NULL;
    bool yes;

    if (durable_events_since(d, gid - 1, 1, &json, &err) != DURABLE_OK)
        bench_die("events: %s", err.msg);
    yes = strcmp(json, "[]") != 0;
    durable_free(json);
    return yes;
}

static int run_w5recover(const struct opts *o)
{
    durable_options opt = { .db_path = o->db,
                            .durability = DURABLE_DURABILITY_FULL,
                            .recovery = DURABLE_RECOVER_ALL };
    durable_error err = { 0 };
    double open_s, resumed_s, close_s, cpu0 = bench_cpu_seconds(), cpu;
    int64_t t0, deadline, last;
    bool done;
    durable *d;

    /* Each recovered run commits one transition, TR_RUN_RECOVERED, whose
     * `recovered` event also restarts its running step (the scheduler then
     * calls the step's type): "resumed" means it has committed for every
     * run, that is, the event numbered last + runs has committed. Polled
     * with an indexed read, since a subscription cannot exist before
     * durable_open returns. */
    last = max_gid(o->db) + o->runs;
    t0 = bench_now_ns();
    d = durable_open(&opt, &err);
    open_s = (double)(bench_now_ns() - t0) / 1e9;
    if (!d)
        bench_die("cannot open %s: %s", o->db, err.msg);
    deadline = t0 + (int64_t)WAIT_MS * 1000000;
    while (!(done = event_committed(d, last)) && bench_now_ns() < deadline)
        usleep(5000);
    resumed_s = (double)(bench_now_ns() - t0) / 1e9;
    cpu = bench_cpu_seconds() - cpu0;
    if (!done)
        bench_die("event %lld (the last of recovery) did not commit in time", (long long)last);
    t0 = bench_now_ns();
    bench_json_begin();
    bench_json_num("runs", (double)o->runs);
    /* 1 if recovery wrote more than the 1 event per run counted on. */
    bench_json_num("more_events", event_committed(d, last + 1) ? 1 : 0);
    bench_json_num("cpu_seconds", cpu);
    bench_json_num("peak_rss_mib", (double)bench_status_kib("VmHWM") / 1024.0);
    durable_close(d);
    close_s = (double)(bench_now_ns() - t0) / 1e9;
    bench_json_num("close_seconds", close_s);
    bench_json_num("open_seconds", open_s);
    bench_json_num("resumed_seconds", resumed_s);
    bench_json_end();
    return 0;
}

/* ---- lib: the library's own start and read rates (W6's baseline) ---- */

struct lib_ctx {
    durable *d;
    const char *wf;
    const char *run_id; /* read phase */
    int64_t end_ns;
    atomic_long n;
};

static void *lib_starter(void *arg)
{
    struct lib_ctx *c = arg;

    while (bench_now_ns() < c->end_ns) {
        durable_free(start_run(c->d, c->wf));
        atomic_fetch_add(&c->n, 1);
    }
    return NULL;
}

static void *lib_reader(void *arg)
{
    struct lib_ctx *c = arg;
    durable_error err = { 0 };

    while (bench_now_ns() < c->end_ns) {
        char *json = NULL;
        if (durable_run_get(c->d, c->run_id, &json, &err) != DURABLE_OK)
            bench_die("durable_run_get: %s", err.msg);
        durable_free(json);
        atomic_fetch_add(&c->n, 1);
    }
    return NULL;
}

static double lib_phase(struct lib_ctx *c, void *(*fn)(void *), long n_threads, double seconds)
{
    pthread_t *th = calloc((size_t)n_threads, sizeof(*th));
    int64_t t0 = bench_now_ns();
    long i;

    atomic_store(&c->n, 0);
    c->end_ns = t0 + (int64_t)(seconds * 1e9);
    for (i = 0; i < n_threads; i++)
        pthread_create(&th[i], NULL, fn, c);
    for (i = 0; i < n_threads; i++)
        pthread_join(th[i], NULL);
    free(th);
    return (double)atomic_load(&c->n) / ((double)(bench_now_ns() - t0) / 1e9);
}

static int run_lib(const struct opts *o)
{
    durable *d = open_db(o->db, DURABLE_DURABILITY_FULL, DURABLE_RECOVER_ALL);
    char *wf = register_chain(d, "bench-http", 1, 0);
    struct lib_ctx c = { .d = d, .wf = wf };
    char *run_id = start_run(d, wf);
    double starts, reads;

    wait_run(d, run_id);
    c.run_id = run_id;
    starts = lib_phase(&c, lib_starter, o->inflight, o->seconds);
    reads = lib_phase(&c, lib_reader, o->inflight, o->seconds);
    bench_json_begin();
    bench_json_num("threads", (double)o->inflight);
    bench_json_num("starts_per_s", starts);
    bench_json_num("reads_per_s", reads);
    bench_json_end();
    durable_free(run_id);
    durable_free(wf);
    durable_close(d);
    return 0;
}

/* ---- sched: the cost of a schedule tick ---- */

/* CPU seconds of this process's threads named `name` (/proc/self/task). */
static double thread_cpu_s(const char *name)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    double total = 0;

    if (!dir)
        return -1;
    while ((e = readdir(dir)) != NULL) {
        char path[300], comm[64] = "", stat[1024];
        FILE *fp;
        size_t n;
        const char *p;
        unsigned long ut = 0, st = 0;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        fp = fopen(path, "r");
        if (!fp)
            continue;
        if (!fgets(comm, sizeof comm, fp))
            comm[0] = 0;
        fclose(fp);
        comm[strcspn(comm, "\n")] = 0;
        if (strcmp(comm, name) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        fp = fopen(path, "r");
        if (!fp)
            continue;
        n = fread(stat, 1, sizeof stat - 1, fp);
        fclose(fp);
        stat[n] = 0;
        p = strrchr(stat, ')'); /* then: state ppid ... utime (14th) stime (15th) */
        if (p &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            total += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    closedir(dir);
    return total;
}

/* Ticks fired and skipped so far, summed over the schedules whose id
 * starts with prefix (read from durable_schedules_list's JSON). */
static long ticks_of(durable *d, const char *prefix)
{
    durable_error err = { 0 };
    char *json = NULL, needle[64];
    const char *p;
    long total = 0;

    if (durable_schedules_list(d, &json, &err) != DURABLE_OK)
        bench_die("schedules: %s", err.msg);
    snprintf(needle, sizeof needle, "{\"id\":\"%s", prefix);
    for (p = strstr(json, needle); p; p = strstr(p + 1, needle)) {
        const char *f = strstr(p, "\"fired\":"), *k = strstr(p, "\"skipped\":");

        if (f && k)
            total += strtol(f + 8, NULL, 10) + strtol(k + 10, NULL, 10);
    }
    durable_free(json);
    return total;
}

/* One phase: n schedules of overlap `overlap`; after warm-up ticks, the CPU
 * of a window of o->seconds per tick. Prefix names its schedules. */
static void sched_phase(durable *d, const struct opts *o, const char *overlap, const char *prefix)
{
    durable_error err = { 0 };
    char body[256], key[64];
    long i, t0, t1;
    double cpu0, w0, c0, cpu1, w1, c1, secs;
    int64_t start, deadline;

    for (i = 0; i < o->runs; i++) {
        snprintf(body, sizeof body,
                 "{\"id\": \"%s%ld\", \"workflow\": \"bench-nap\", \"every\": \"1s\","
                 " \"overlap\": \"%s\", \"catch_up\": \"none\"}",
                 prefix, i, overlap);
        if (durable_schedule_create(d, body, NULL, &err) != DURABLE_OK)
            bench_die("schedule: %s", err.msg);
    }
    /* warm-up: every schedule fired a tick (skip: its first run started) */
    deadline = bench_now_ns() + (int64_t)WAIT_MS * 1000000;
    while (ticks_of(d, prefix) < 2 * o->runs) {
        if (bench_now_ns() > deadline)
            bench_die("%s: the schedules did not tick in time", overlap);
        usleep(100000);
    }
    t0 = ticks_of(d, prefix);
    cpu0 = bench_cpu_seconds();
    w0 = thread_cpu_s("durable-writer");
    c0 = thread_cpu_s("durable-cron");
    start = bench_now_ns();
    usleep((useconds_t)(o->seconds * 1e6));
    cpu1 = bench_cpu_seconds();
    w1 = thread_cpu_s("durable-writer");
    c1 = thread_cpu_s("durable-cron");
    secs = (double)(bench_now_ns() - start) / 1e9;
    t1 = ticks_of(d, prefix);
    if (t1 <= t0)
        bench_die("%s: no tick in the window", overlap);
    snprintf(key, sizeof key, "%s_ticks_per_s", overlap);
    bench_json_num(key, (double)(t1 - t0) / secs);
    snprintf(key, sizeof key, "%s_cpu_ms_per_tick", overlap);
    bench_json_num(key, (cpu1 - cpu0) * 1e3 / (double)(t1 - t0));
    snprintf(key, sizeof key, "%s_writer_ms_per_tick", overlap);
    bench_json_num(key, (w1 - w0) * 1e3 / (double)(t1 - t0));
    snprintf(key, sizeof key, "%s_cron_ms_per_tick", overlap);
    bench_json_num(key, (c1 - c0) * 1e3 / (double)(t1 - t0));
    for (i = 0; i < o->runs; i++) { /* stop them before the next phase */
        snprintf(key, sizeof key, "%s%ld", prefix, i);
        if (durable_schedule_delete(d, key, &err) != DURABLE_OK)
            bench_die("delete: %s", err.msg);
    }
}

/* o->runs schedules `every: 1s` of a workflow whose run waits an hour (a
 * delay step: no thread, no commit after its start): with overlap allow a
 * tick is the run's creation and start; with overlap skip, after each
 * schedule's first run, a tick is the skip's commit alone. */
static int run_sched(const struct opts *o)
{
    static const char def[] = "{\"name\": \"bench-nap\", \"steps\": [{\"id\": \"nap\","
                              " \"type\": \"delay\", \"config\": {\"seconds\": 3600}}]}";
    durable *d = open_db(o->db, DURABLE_DURABILITY_FULL, DURABLE_RECOVER_ALL);
    durable_error err = { 0 };
    char *id = NULL;

    if (durable_workflow_register(d, def, strlen(def), &id, NULL, NULL, &err) != DURABLE_OK)
        bench_die("cannot register bench-nap: %s", err.msg);
    durable_free(id);
    bench_json_begin();
    bench_json_num("schedules", (double)o->runs);
    sched_phase(d, o, "skip", "k");
    sched_phase(d, o, "allow", "a");
    bench_json_end();
    durable_close(d);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    struct opts o = { .runs = -1, .steps = -1, .inflight = -1, .reps = -1, .seconds = 3 };
    int i;

    for (i = 2; i < argc; i++) {
        if (!bench_opt_str(argc, argv, &i, "--db", &o.db) &&
            !bench_opt_long(argc, argv, &i, "--runs", &o.runs) &&
            !bench_opt_long(argc, argv, &i, "--steps", &o.steps) &&
            !bench_opt_long(argc, argv, &i, "--inflight", &o.inflight) &&
            !bench_opt_long(argc, argv, &i, "--reps", &o.reps) &&
            !bench_opt_double(argc, argv, &i, "--seconds", &o.seconds))
            bench_die("unknown option \"%s\"", argv[i]);
    }
    if (!o.db)
        bench_die(
                "usage: bench_engine w1|w1code|w1once|w2|w3|w4|w5create|w5recover|lib|sched|w8map --db "
                "PATH [options]");
#define DFLT(f, v) (o.f = o.f < 0 ? (v) : o.f)
    if (strcmp(mode, "w1") == 0) {
        DFLT(steps, 100);
        DFLT(reps, 5);
        return run_w1(&o, false);
    }
    if (strcmp(mode, "w1code") == 0 || strcmp(mode, "w1once") == 0) {
        DFLT(steps, 100);
        DFLT(reps, 5);
        code_opts.answers_at_once = strcmp(mode, "w1once") == 0;
        return run_w1(&o, true);
    }
    if (strcmp(mode, "w2") == 0) {
        DFLT(runs, 1000);
        DFLT(steps, 10);
        DFLT(inflight, 50);
        return run_w2(&o);
    }
    if (strcmp(mode, "w3") == 0) {
        DFLT(steps, 100);
        DFLT(reps, 5);
        return run_w3(&o);
    }
    if (strcmp(mode, "w4") == 0) {
        DFLT(runs, 10000);
        DFLT(inflight, 32);
        return run_w4(&o);
    }
    if (strcmp(mode, "w5create") == 0) {
        DFLT(runs, 100000);
        DFLT(inflight, 32);
        return run_w5create(&o);
    }
    if (strcmp(mode, "w5recover") == 0) {
        DFLT(runs, 100000);
        return run_w5recover(&o);
    }
    if (strcmp(mode, "lib") == 0) {
        DFLT(inflight, 16);
        return run_lib(&o);
    }
    if (strcmp(mode, "sched") == 0) {
        DFLT(runs, 1000);
        return run_sched(&o);
    }
    if (strcmp(mode, "w8map") == 0) {
        DFLT(steps, 10000);
        DFLT(inflight, 8);
        return run_w8map(&o);
    }
#undef DFLT
    bench_die("unknown workload \"%s\"", mode);
}
