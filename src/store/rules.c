/*
 * rules.c - the state rules every backend keeps: the names of the run and
 * step statuses (as stored and shown), which are final, and the guard table
 * saying which step statuses each step transition accepts.
 *
 * A backend reads the run's and the step's stored status in its own way (one
 * statement on SQLite) and asks store_guard_step / store_guard_run whether
 * the transition may apply: the rules live here once, as data, and the
 * refusal messages are the same on every backend. Pure functions, any
 * thread.
 */
#include "util/common.h"

#include "store/store.h"

#include <string.h>

#include "store/backend.h"

const char *const store_run_statuses[] = {
    [RUN_PENDING] = "pending", [RUN_RUNNING] = "running",
    [RUN_WAITING] = "waiting", [RUN_COMPLETED] = "completed",
    [RUN_FAILED] = "failed",   [RUN_CANCELLED] = "cancelled",
    [RUN_PAUSED] = "paused",   NULL,
};

const char *const store_step_statuses[] = {
    [STEP_S_PENDING] = "pending", [STEP_S_RUNNING] = "running",     [STEP_S_RETRYING] = "retrying",
    [STEP_S_WAITING] = "waiting", [STEP_S_COMPLETED] = "completed", [STEP_S_FAILED] = "failed",
    [STEP_S_SKIPPED] = "skipped", [STEP_S_CANCELLED] = "cancelled", NULL,
};

_Static_assert(DUR_ARRAY_LEN(store_run_statuses) == STORE_N_RUN_STATUSES + 1, "run statuses");
_Static_assert(DUR_ARRAY_LEN(store_step_statuses) == STORE_N_STEP_STATUSES + 1, "step statuses");

const char *run_status_name(enum run_status st)
{
    return (unsigned)st < STORE_N_RUN_STATUSES ? store_run_statuses[st] : "unknown";
}

const char *step_status_name(enum step_status st)
{
    return (unsigned)st < STORE_N_STEP_STATUSES ? store_step_statuses[st] : "unknown";
}

/* The index of name in names (n of them), or -1. */
static int name_index(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    return -1;
}

bool run_status_parse(const char *name, enum run_status *out)
{
    int i = name_index(store_run_statuses, STORE_N_RUN_STATUSES, name);

    if (i < 0)
        return false;
    *out = (enum run_status)i;
    return true;
}

bool step_status_parse(const char *name, enum step_status *out)
{
    int i = name_index(store_step_statuses, STORE_N_STEP_STATUSES, name);

    if (i < 0)
        return false;
    *out = (enum step_status)i;
    return true;
}

bool run_status_is_final(enum run_status st)
{
    return st == RUN_COMPLETED || st == RUN_FAILED || st == RUN_CANCELLED;
}

bool step_status_is_final(enum step_status st)
{
    return st == STEP_S_COMPLETED || st == STEP_S_FAILED || st == STEP_S_SKIPPED ||
           st == STEP_S_CANCELLED;
}

/* ---- guards ---- */

#define S(st) (1u << (st))

static const struct step_guard step_guards[] = {
    { "start", S(STEP_S_PENDING) | S(STEP_S_RETRYING) | S(STEP_S_RUNNING), TR_STEP_START, false },
    { "complete", S(STEP_S_RUNNING) | S(STEP_S_WAITING), TR_STEP_COMPLETE, true },
    { "retry", S(STEP_S_RUNNING) | S(STEP_S_WAITING), TR_STEP_RETRY, true },
    { "fail", S(STEP_S_RUNNING) | S(STEP_S_WAITING), TR_STEP_FAIL, true },
    { "skip", S(STEP_S_PENDING), TR_STEP_SKIP, false },
    { "wait", S(STEP_S_RUNNING), TR_STEP_WAIT, true },
    { "restart", S(STEP_S_RUNNING), TR_RUN_RECOVERED, false },
};

const struct step_guard *store_step_guard(enum transition_kind kind)
{
    for (size_t i = 0; i < DUR_ARRAY_LEN(step_guards); i++) {
        if (step_guards[i].kind == kind)
            return &step_guards[i];
    }
    return NULL;
}

durable_code store_guard_run(const char *run_id, const char *status_text, bool need_failed,
                             durable_error *err)
{
    enum run_status st;

    if (!run_status_parse(status_text, &st)) {
        return err_set(err, DURABLE_EIO, "run \"%s\" has an unknown status \"%s\"", run_id,
                       status_text ? status_text : "");
    }
    if (need_failed && st != RUN_FAILED) {
        return err_set(err, DURABLE_ECONFLICT, "run %s is %s, only a failed run can be retried",
                       run_id, status_text);
    }
    if (!need_failed && run_status_is_final(st))
        return err_set(err, DURABLE_ECONFLICT, "run \"%s\" is already %s", run_id, status_text);
    return DURABLE_OK;
}

durable_code store_guard_step(const struct step_guard *g, const struct transition *t,
                              const struct guard_row *row, durable_error *err)
{
    enum step_status st;
    durable_code rc = store_guard_run(t->run_id, row->run_status, false, err);

    if (rc != DURABLE_OK)
        return rc;
    if (!row->step_status) {
        return err_set(err, DURABLE_ENOTFOUND, "step \"%s\" not found in run \"%s\"", t->step_id,
                       t->run_id);
    }
    if (!step_status_parse(row->step_status, &st) || !(g->allowed & S(st))) {
        return err_set(err, DURABLE_ECONFLICT, "cannot %s step \"%s\": it is %s", g->verb,
                       t->step_id, row->step_status);
    }
    if (g->check_attempt && row->attempt != t->attempt) {
        return err_set(err, DURABLE_ECONFLICT,
                       "cannot %s step \"%s\": attempt %d is not the current attempt %d", g->verb,
                       t->step_id, t->attempt, row->attempt);
    }
    return DURABLE_OK;
}
