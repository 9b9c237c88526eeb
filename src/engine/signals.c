/*
 * signals.c - durable_signal: a named signal with a JSON payload sent to a
 * run from any thread (the API, the HTTP route, the CLI through it).
 *
 * The signal is one transition (TR_SIGNAL_SEND): the store keeps it with
 * its signal_received event and, in the same transaction, completes the
 * first step waiting for that name with its payload, if one waits
 * (store/apply.c). A step that starts waiting later takes the oldest
 * signal kept for its name when its WAIT commits. So every signal is
 * taken by exactly one wait, also across crashes. The scheduler learns of
 * a step completed by a signal after the commit (notify_sched): it goes
 * on with a JSON run in memory, and adopts a run that is not (a code-first
 * run waiting in durable_wait_signal is executed again); on PostgreSQL the
 * store tells the run's owner node (run_notify), which reloads it.
 */
#include "util/common.h"

#include "engine/engine.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIGNAL_NAME_MAX    64
#define SIGNAL_PAYLOAD_MAX ((size_t)1024 * 1024)

static bool signal_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    return n > 0 && n <= SIGNAL_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* The payload as compact JSON text (owned), or an error. */
static durable_code payload_text(const char *payload_json, char **out, durable_error *err)
{
    json_error_t jerr;
    json_t *v;

    *out = NULL;
    if (!payload_json) {
        *out = xstrdup("null");
        return DURABLE_OK;
    }
    if (strlen(payload_json) > SIGNAL_PAYLOAD_MAX)
        return err_set(err, DURABLE_ETOOBIG, "a signal's payload is at most %zu bytes",
                       SIGNAL_PAYLOAD_MAX);
    v = json_loads(payload_json, JSON_DECODE_ANY, &jerr);
    if (!v)
        return err_set(err, DURABLE_EINVAL, "the signal's payload is not JSON: %s (line %d)",
                       jerr.text, jerr.line);
    *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return *out ? DURABLE_OK : err_set(err, DURABLE_ENOMEM, "could not encode the payload");
}

durable_code durable_signal_send(durable *d, const char *run_id, const char *name,
                                 const char *payload_json, char **out_json, durable_error *err)
{
    struct transition_result res;
    struct commit_item *ci;
    char id[ID_MAX], *payload = NULL;
    durable_code rc;

    if (out_json)
        *out_json = NULL;
    if (!d || !run_id || !run_id[0])
        return err_set(err, DURABLE_EINVAL, "a signal needs a run id");
    if (!signal_name_ok(name))
        return err_set(err, DURABLE_EINVAL,
                       "a signal's name is 1 to %d of [A-Za-z0-9_.-], got \"%.80s\"",
                       SIGNAL_NAME_MAX, name ? name : "");
    rc = payload_text(payload_json, &payload, err);
    if (rc != DURABLE_OK)
        return rc;
    id_new("sig_", id, sizeof(id));
    ci = commit_item_new(TR_SIGNAL_SEND, run_id);
    ci->t.signal_id = commit_item_str(ci, id);
    ci->t.signal_name = commit_item_str(ci, name);
    ci->t.output_json = commit_item_str(ci, payload);
    free(payload);
    ci->notify_sched = true; /* a step it completed goes on (run_gen 0: not the scheduler's) */
    memset(&res, 0, sizeof(res));
    rc = engine_commit_wait(d, ci, &res, err);
    if (rc == DURABLE_OK && out_json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s?}", "id", id, "run_id", run_id, "name",
                              name, "seq", (json_int_t)res.seq, "taken_by",
                              res.signal_step[0] ? res.signal_step : NULL);
        *out_json = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    }
    return rc;
}

durable_code durable_signal(durable *d, const char *run_id, const char *name,
                            const char *payload_json, durable_error *err)
{
    return durable_signal_send(d, run_id, name, payload_json, NULL, err);
}
