/*
 * onboarding.c - employee onboarding as a code-first durable workflow: a C
 * function whose steps are durable_step() calls. Each step's result is
 * committed before the next step begins, so when the program is killed and
 * run again, the steps already done return their recorded results and are
 * not run again.
 *
 *   onboarding [--db PATH] [--employee ID] [--crash-after STEP]
 *              [--effects FILE] [--speed X]
 *
 * Steps: create_record (2 s), then provision_laptop (3 s) and setup_access
 * (2.5 s) in parallel, then send_welcome (1.5 s). --crash-after STEP exits
 * abruptly once STEP is recorded (for a parallel step: once both are); --effects appends a line per
 * step actually run (its idempotency key), as a real side effect would; --speed divides the
 * durations (for tests).
 */
#define _POSIX_C_SOURCE 200809L

#include <durable.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct demo {
    const char *crash_after; /* or NULL */
    const char *effects;     /* or NULL */
    double speed;
    int ran[4]; /* set by a step function: it ran in this execution */
};

struct step_def {
    int no;
    const char *name;
    double seconds;
};

static struct demo demo = { NULL, NULL, 1.0, { 0 } };

static const struct step_def steps[] = {
    { 0, "create_record", 2.0 },
    { 1, "provision_laptop", 3.0 },
    { 2, "setup_access", 2.5 },
    { 3, "send_welcome", 1.5 },
};

static void sleep_s(double s)
{
    struct timespec ts;

    s /= demo.speed;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

/* The side effect: a line in the effects file, then the work itself. */
static durable_code work(const durable_step_info *info, void *arg, char **out_json,
                         durable_error *err)
{
    const struct step_def *sd = arg;
    char buf[256];

    (void)err;
    demo.ran[sd->no] = 1; /* each step writes its own flag: no race */
    if (demo.effects) {
        FILE *f = fopen(demo.effects, "a");
        if (f) {
            fprintf(f, "%s attempt %d\n", info->idempotency_key, info->attempt);
            fclose(f);
        }
    }
    sleep_s(sd->seconds);
    snprintf(buf, sizeof(buf), "{\"step\":\"%s\",\"done\":true}", sd->name);
    *out_json = strdup(buf);
    return DURABLE_OK;
}

/* Says whether the step ran, and crashes after it if asked to. */
static void report(const struct step_def *sd)
{
    printf("%s: %s\n", sd->name, demo.ran[sd->no] ? "ran" : "recorded, not run again");
    fflush(stdout);
}

static void maybe_crash(const char *name)
{
    if (demo.crash_after && strcmp(demo.crash_after, name) == 0) {
        printf("crashing after %s\n", name);
        fflush(stdout);
        raise(SIGKILL);
    }
}

/* One step in line: runs it (or gets it from the record). */
static durable_code step(durable_ctx *ctx, const struct step_def *sd, durable_error *err)
{
    char *out = NULL;

    DURABLE_TRY(durable_step(ctx, sd->name, work, (void *)sd, &out, err));
    durable_free(out);
    report(sd);
    maybe_crash(sd->name);
    return DURABLE_OK;
}

/* The laptop and the access at once; their ids are given here, in call
 * order, whichever finishes first. */
static durable_code laptop_and_access(durable_ctx *ctx, durable_error *err)
{
    durable_future *f[2];

    DURABLE_TRY(durable_step_async(ctx, steps[1].name, work, (void *)&steps[1], &f[0], err));
    DURABLE_TRY(durable_step_async(ctx, steps[2].name, work, (void *)&steps[2], &f[1], err));
    DURABLE_TRY(durable_wait_all(ctx, f, 2, err));
    report(&steps[1]);
    report(&steps[2]);
    maybe_crash(steps[1].name);
    maybe_crash(steps[2].name);
    return DURABLE_OK;
}

static durable_code onboarding(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    DURABLE_TRY(step(ctx, &steps[0], err));
    DURABLE_TRY(laptop_and_access(ctx, err));
    DURABLE_TRY(step(ctx, &steps[3], err));
    *out = strdup("{\"onboarded\":true}");
    return DURABLE_OK;
}

static const char usage[] =
        "usage: onboarding [--db PATH] [--employee ID] [--crash-after STEP]\n"
        "                  [--effects FILE] [--speed X]\n"
        "STEP: create_record, provision_laptop, setup_access or send_welcome.\n"
        "Run it again after a crash or kill -9: recorded steps are not run again.\n";

/* Whether name is one of the demo's steps. */
static int step_named(const char *name)
{
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (strcmp(steps[i].name, name) == 0)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    durable_options opts = { .db_path = "onboarding.db" };
    durable_error err = { 0 };
    const char *employee = "employee-42", *status = NULL;
    char input[128], *run_id = NULL;
    durable *d;
    int rc = 1;

    for (int i = 1; i < argc; i += 2) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (!val) {
            fprintf(stderr, "onboarding: %s needs a value\n%s", opt, usage);
            return 2;
        }
        if (strcmp(opt, "--db") == 0)
            opts.db_path = val;
        else if (strcmp(opt, "--employee") == 0)
            employee = val;
        else if (strcmp(opt, "--crash-after") == 0 && step_named(val))
            demo.crash_after = val;
        else if (strcmp(opt, "--effects") == 0)
            demo.effects = val;
        else if (strcmp(opt, "--speed") == 0 && strtod(val, NULL) > 0)
            demo.speed = strtod(val, NULL);
        else {
            fprintf(stderr, "onboarding: bad option or value: %s %s\n%s", opt, val, usage);
            return 2;
        }
    }
    d = durable_open(&opts, &err);
    if (!d) {
        fprintf(stderr, "onboarding: %s\n", err.msg);
        return 1;
    }
    snprintf(input, sizeof(input), "{\"employee\":\"%s\"}", employee);
    if (durable_workflow_fn_register(d, "onboarding", 1, onboarding, NULL, &err) != DURABLE_OK ||
        durable_start(d, "onboarding", employee, input, &run_id, &err) != DURABLE_OK ||
        durable_run_wait(d, run_id, -1, &status, &err) != DURABLE_OK) {
        fprintf(stderr, "onboarding: %s\n", err.msg);
        goto done;
    }
    printf("run %s %s\n", run_id, status);
    rc = strcmp(status, "completed") == 0 ? 0 : 1;
done:
    durable_free(run_id);
    durable_close(d);
    return rc;
}
