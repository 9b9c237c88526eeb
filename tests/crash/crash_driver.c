/*
 * crash_driver.c - a batch of runs through the public library, for the crash
 * test (test_crash.py), which SIGKILLs it at random moments and restarts it.
 *
 *   crash_driver DB start FILE N   registers FILE, starts N runs, each with a
 *                                  new demo order and the idempotency key
 *                                  "kI" (I from 0), then waits for them all
 *   crash_driver DB resume         reopens DB (every unfinished run resumes
 *                                  at open) and waits for the runs of DB.runs
 *
 * DB.runs lists the N run ids, one per line. `start` writes it only once
 * every run has committed, to DB.runs.tmp, fsyncs it, renames it over DB.runs
 * and fsyncs the directory: the file either is complete or does not exist.
 * When a kill interrupts `start` before that, `start` is simply run again:
 * it looks each key up first (durable_run_find) and creates an order and a
 * run only for the keys without one, so no key gets a second run. An order
 * created just before a kill, whose run never committed, stays pending and
 * belongs to no run; the test checks the orders that runs reference.
 *
 * Exit status: 0 every run completed, 1 a run finished otherwise, 2 usage,
 * 3 the library failed, 4 `resume` found no DB.runs (run `start` again).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <durable.h>

#define MAX_RUNS 1000
#define MAX_FILE (1024 * 1024)
#define WAIT_MS  (150 * 1000)

struct batch {
    char *ids[MAX_RUNS];
    int n;
};

static void batch_release(struct batch *b)
{
    int i;

    for (i = 0; i < b->n; i++)
        durable_free(b->ids[i]);
    b->n = 0;
}

static int fail(const char *what, const durable_error *err)
{
    fprintf(stderr, "crash_driver: %s: %s\n", what, err->msg);
    return 3;
}

static char *read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;

    if (!f) {
        fprintf(stderr, "crash_driver: cannot open \"%s\"\n", path);
        return NULL;
    }
    buf = malloc(MAX_FILE + 1);
    if (buf)
        len = fread(buf, 1, MAX_FILE, f);
    fclose(f);
    if (buf)
        buf[len] = '\0';
    *out_len = len;
    return buf;
}

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    int fd = -1, rc = -1;

    if (copy)
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0 && fsync(fd) == 0)
        rc = 0;
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

/* Writes the run ids atomically (see the top comment). */
static int write_ids(const char *db, const struct batch *b)
{
    char tmp[4096], final[4096];
    FILE *f;
    int i, ok;

    snprintf(tmp, sizeof(tmp), "%s.runs.tmp", db);
    snprintf(final, sizeof(final), "%s.runs", db);
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    for (i = 0; i < b->n; i++)
        fprintf(f, "%s\n", b->ids[i]);
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, final) != 0 || fsync_dir_of(final) != 0) {
        fprintf(stderr, "crash_driver: could not write \"%s\" (errno %d)\n", final, errno);
        return -1;
    }
    return 0;
}

/* Reads DB.runs. Returns 0, 4 when it does not exist, 3 when it is damaged. */
static int read_ids(const char *db, struct batch *b)
{
    char path[4096], line[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s.runs", db);
    f = fopen(path, "r");
    if (!f)
        return 4;
    while (b->n < MAX_RUNS && fgets(line, sizeof(line), f)) {
        size_t len = strcspn(line, "\r\n");
        if (len == 0)
            continue;
        line[len] = '\0';
        b->ids[b->n] = strdup(line);
        if (!b->ids[b->n])
            break;
        b->n++;
    }
    fclose(f);
    return b->n > 0 ? 0 : 3;
}

/* Waits for every run; prints one line per run. Returns the exit status. */
static int wait_all(durable *d, const struct batch *b)
{
    int i, n_completed = 0, ret = 0;

    for (i = 0; i < b->n; i++) {
        durable_error err = { 0 };
        const char *status = NULL;

        if (durable_run_wait(d, b->ids[i], WAIT_MS, &status, &err) != DURABLE_OK) {
            fprintf(stderr, "crash_driver: run %s: %s\n", b->ids[i], err.msg);
            ret = 3;
            continue;
        }
        if (strcmp(status, "completed") == 0)
            n_completed++;
        else if (ret == 0)
            ret = 1;
        printf("%s %s\n", b->ids[i], status);
    }
    printf("%d of %d runs completed\n", n_completed, b->n);
    return ret;
}

/* Finds or starts the run of key "kI" for each I < n. */
static int start_runs(durable *d, const char *wf, int n, struct batch *b)
{
    int i;

    for (i = 0; i < n; i++) {
        durable_run_request req = { 0 };
        durable_error err = { 0 };
        char key[32], *order = NULL, *run = NULL;

        snprintf(key, sizeof(key), "k%d", i);
        if (durable_run_find(d, wf, key, &run, &err) != DURABLE_OK) {
            if (err.code != DURABLE_ENOTFOUND)
                return fail("could not look up a key", &err);
            memset(&err, 0, sizeof(err));
            if (durable_order_create(d, 10.0 + i, &order, &err) != DURABLE_OK)
                return fail("could not create an order", &err);
            req.workflow = wf;
            req.order_id = order;
            req.idempotency_key = key;
            if (durable_run_start(d, &req, &run, NULL, &err) != DURABLE_OK) {
                durable_free(order);
                return fail("could not start a run", &err);
            }
            durable_free(order);
        }
        b->ids[b->n++] = run;
    }
    return 0;
}

static durable *open_db(const char *db)
{
    durable_options opts = { .db_path = db, .recovery = DURABLE_RECOVER_ALL };
    durable_error err = { 0 };
    durable *d = durable_open(&opts, &err);

    if (!d)
        fail("could not open the database", &err);
    return d;
}

static int cmd_start(const char *db, const char *file, const char *count)
{
    struct batch b = { .n = 0 };
    durable_error err = { 0 };
    durable *d = NULL;
    char *text = NULL, *wf = NULL, *end = NULL;
    size_t len = 0;
    long n = strtol(count, &end, 10);
    int ret = 3;

    if (end == count || *end != '\0' || n < 1 || n > MAX_RUNS) {
        fprintf(stderr, "crash_driver: N is 1 to %d, not \"%s\"\n", MAX_RUNS, count);
        return 2;
    }
    text = read_file(file, &len);
    if (!text)
        return 2;
    d = open_db(db);
    if (!d)
        goto done;
    if (durable_workflow_register(d, text, len, &wf, NULL, NULL, &err) != DURABLE_OK) {
        ret = fail("could not register the workflow", &err);
        goto done;
    }
    ret = start_runs(d, wf, (int)n, &b);
    if (ret == 0 && write_ids(db, &b) != 0)
        ret = 3;
    if (ret == 0) {
        printf("started %d runs\n", b.n);
        fflush(stdout);
        ret = wait_all(d, &b);
    }
done:
    durable_close(d);
    batch_release(&b);
    durable_free(wf);
    free(text);
    return ret;
}

static int cmd_resume(const char *db)
{
    struct batch b = { .n = 0 };
    durable *d = NULL;
    int ret = read_ids(db, &b);

    if (ret == 4)
        fprintf(stderr, "crash_driver: no %s.runs: `start` did not finish, run it again\n", db);
    if (ret != 0)
        goto done;
    d = open_db(db);
    ret = d ? wait_all(d, &b) : 3;
done:
    durable_close(d);
    batch_release(&b);
    return ret;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && strcmp(argv[2], "start") == 0)
        return cmd_start(argv[1], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[2], "resume") == 0)
        return cmd_resume(argv[1]);
    fprintf(stderr, "usage: crash_driver DB start FILE N\n"
                    "       crash_driver DB resume\n");
    return 2;
}
