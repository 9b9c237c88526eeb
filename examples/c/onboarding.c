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
 * Steps: create_record (2 s), provision_laptop (3 s), setup_access (2.5 s),
 * send_welcome (1.5 s). The laptop and access steps run one after the other
 * (parallel steps come later). --crash-after STEP exits abruptly once STEP
 * is recorded; --effects appends a line per step actually run (its
 * idempotency key), as a real side effect would; --speed divides the
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
    int ran; /* set by a step function: it ran in this execution */
};

struct step_def {
    const char *name;
    double seconds;
};

static struct demo demo = { NULL, NULL, 1.0, 0 };

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
    demo.ran = 1;
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

/* One step: runs it (or gets it from the record) and says which. */
static durable_code step(durable_ctx *ctx, const struct step_def *sd, durable_error *err)
{
    char *out = NULL;
    durable_code rc;

    demo.ran = 0;
    rc = durable_step(ctx, sd->name, work, (void *)sd, &out, err);
    if (rc != DURABLE_OK)
        return rc;
    printf("%s: %s\n", sd->name, demo.ran ? "ran" : "recorded, not run again");
    fflush(stdout);
    durable_free(out);
    if (demo.crash_after && strcmp(demo.crash_after, sd->name) == 0) {
        printf("crashing after %s\n", sd->name);
        fflush(stdout);
        raise(SIGKILL);
    }
    return DURABLE_OK;
}

static durable_code onboarding(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    static const struct step_def steps[] = {
        { "create_record", 2.0 },
        { "provision_laptop", 3.0 },
        { "setup_access", 2.5 },
        { "send_welcome", 1.5 },
    };

    (void)input;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        DURABLE_TRY(step(ctx, &steps[i], err));
    *out = strdup("{\"onboarded\":true}");
    return DURABLE_OK;
}

int main(int argc, char **argv)
{
    durable_options opts = { .db_path = "onboarding.db" };
    durable_error err = { 0 };
    const char *employee = "employee-42", *status = NULL;
    char input[128], *run_id = NULL;
    durable *d;
    int rc = 1;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            opts.db_path = argv[i + 1];
        else if (strcmp(argv[i], "--employee") == 0)
            employee = argv[i + 1];
        else if (strcmp(argv[i], "--crash-after") == 0)
            demo.crash_after = argv[i + 1];
        else if (strcmp(argv[i], "--effects") == 0)
            demo.effects = argv[i + 1];
        else if (strcmp(argv[i], "--speed") == 0)
            demo.speed = strtod(argv[i + 1], NULL) > 0 ? strtod(argv[i + 1], NULL) : 1.0;
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
