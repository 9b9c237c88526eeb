/*
 * routes_runs.c - the handlers of runs: start (idempotent), list, detail,
 * history, execution logs, cancel, retry, pause, resume, and the approval
 * decisions.
 *
 * Statuses: start answers 202 with a new run and 200 with the run an
 * idempotency key already started (a key is per workflow name, across
 * versions), the latter with `reused`: that run's version, the requested
 * one, and whether the inputs differ; cancel answers 200 (the cancellation has
 * committed when it returns) and retry 202 (the run is running again), both
 * with the run, and 409 when the run's state forbids it; pause and resume
 * answer 200 with the run (paused, or running again) once committed, 409
 * likewise, 422 for a code-first run's pause. Approvals arrive
 * with the approval step type: until then a decision is 404 for a step the
 * run does not have and 409 for any other, since no step can be waiting for
 * one.
 */
#include "util/common.h"

#include "http/http_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 255 /* idempotency keys: 1..255 printable bytes */

static const char *const run_statuses[] = {
    "pending", "running", "waiting", "completed", "failed", "cancelled", "paused",
};

/* Answers the run (durable_run_get) with status, or the error. */
static enum MHD_Result reply_run(struct request *rq, const char *run_id, unsigned status)
{
    durable_error err = { 0 };
    char *json = NULL;

    if (durable_run_get(rq->srv->d, run_id, &json, &err) != DURABLE_OK) {
        durable_free(json);
        return http_reply_durable(rq, &err);
    }
    http_header_add(rq, MHD_HTTP_HEADER_LOCATION, "/runs/%s", run_id);
    return http_reply_json(rq, status, json);
}

/* Fails with a message in err unless every key of obj is in allowed. */
static durable_code only_fields(json_t *obj, const char *const *allowed, size_t n, const char *list,
                                durable_error *err)
{
    const char *key;
    json_t *v;
    size_t i;

    json_object_foreach(obj, key, v)
    {
        for (i = 0; i < n && strcmp(key, allowed[i]) != 0; i++)
            ;
        if (i == n)
            return err_set(err, DURABLE_EINVAL, "unknown field \"%.60s\" (expected %s)", key, list);
    }
    return DURABLE_OK;
}

/* A string field: absent/null gives NULL; anything but a string of 1..max
 * printable bytes is an error. */
static durable_code string_field(json_t *obj, const char *name, size_t max, const char **out,
                                 durable_error *err)
{
    json_t *v = json_object_get(obj, name);
    const char *s;
    size_t i, len;

    *out = NULL;
    if (!v || json_is_null(v))
        return DURABLE_OK;
    s = json_string_value(v);
    len = s ? json_string_length(v) : 0;
    if (!s || len == 0 || len > max)
        return err_set(err, DURABLE_EINVAL, "%s: expected a string of 1 to %zu characters", name,
                       max);
    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20)
            return err_set(err, DURABLE_EINVAL, "%s: control characters are not allowed", name);
    }
    *out = s;
    return DURABLE_OK;
}

/* string_field for a field a person may leave blank: "" is as absent. */
static durable_code blank_field(json_t *obj, const char *name, size_t max, const char **out,
                                durable_error *err)
{
    json_t *v = json_object_get(obj, name);

    if (json_is_string(v) && json_string_length(v) == 0) {
        *out = NULL;
        return DURABLE_OK;
    }
    return string_field(obj, name, max, out, err);
}

/* An Idempotency-Key header: 1..KEY_MAX bytes of valid UTF-8 (jansson
 * checks it) and no control character, like the body's field. */
static bool key_valid(const char *s)
{
    size_t len = strlen(s), i;
    json_t *probe;

    if (len == 0 || len > KEY_MAX)
        return false;
    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    probe = json_stringn(s, len);
    json_decref(probe);
    return probe != NULL;
}

/* The body's priority: absent or null is 0; a number must be a whole one
 * in range (1e300 and 2.5 are refused, not rounded). */
static durable_code priority_field(json_t *body, int *out, durable_error *err)
{
    json_t *v = json_object_get(body, "priority");
    double d;

    if (!v || json_is_null(v))
        return DURABLE_OK;
    d = json_is_number(v) ? json_number_value(v) : 0.5;
    if (!(d >= -DURABLE_PRIORITY_MAX && d <= DURABLE_PRIORITY_MAX) || d != (double)(int)d)
        return err_set(err, DURABLE_EINVAL, "priority: expected an integer from %d to %d",
                       -DURABLE_PRIORITY_MAX, DURABLE_PRIORITY_MAX);
    *out = (int)d;
    return DURABLE_OK;
}

/* The request of POST /workflows/{id}/runs: borrowed from body and rq. */
static durable_code start_request(struct request *rq, json_t *body, durable_run_request *req,
                                  char **out_input, durable_error *err)
{
    static const char *const fields[] = { "input", "order_id", "idempotency_key", "priority" };
    const char *header = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Idempotency-Key");
    json_t *input = json_object_get(body, "input");
    durable_code rc =
            only_fields(body, fields, 4, "input, order_id, idempotency_key, priority", err);

    if (rc == DURABLE_OK)
        rc = priority_field(body, &req->priority, err);
    if (rc == DURABLE_OK)
        rc = string_field(body, "order_id", HTTP_ID_MAX, &req->order_id, err);
    if (rc == DURABLE_OK && req->order_id && !router_id_valid(req->order_id))
        rc = err_set(err, DURABLE_EINVAL, "order_id: ids match [A-Za-z0-9_.-]{1,128}");
    if (rc == DURABLE_OK)
        rc = string_field(body, "idempotency_key", KEY_MAX, &req->idempotency_key, err);
    if (rc == DURABLE_OK && header && !key_valid(header))
        rc = err_set(err, DURABLE_EINVAL,
                     "Idempotency-Key: 1 to %d bytes of UTF-8 without control characters", KEY_MAX);
    if (rc == DURABLE_OK && header && req->idempotency_key &&
        strcmp(header, req->idempotency_key) != 0)
        rc = err_set(err, DURABLE_EINVAL,
                     "the Idempotency-Key header and the body's idempotency_key differ");
    if (rc == DURABLE_OK && header)
        req->idempotency_key = header;
    if (rc == DURABLE_OK && input && !json_is_null(input) && !json_is_object(input))
        rc = err_set(err, DURABLE_EINVAL, "input: expected a JSON object");
    if (rc == DURABLE_OK && json_is_object(input))
        *out_input = json_dumps(input, JSON_COMPACT);
    req->input_json = *out_input;
    req->workflow = rq->id;
    return rc;
}

/* The `reused` object of a 200 start: how the run the key returned
 * compares with this request (durable_run_compare), or NULL when it
 * cannot be said. The request is read again from rq's body, which lasts
 * as long as the request. */
static json_t *reused_object(struct request *rq, const char *run_id)
{
    durable_run_request req = { 0 };
    durable_run_reuse reuse = { 0 };
    durable_error err = { 0 };
    char *input = NULL;
    enum MHD_Result ignored;
    json_t *body = http_body_object(rq, true, &ignored);
    json_t *out = NULL;

    if (body && start_request(rq, body, &req, &input, &err) == DURABLE_OK &&
        durable_run_compare(rq->srv->d, &req, run_id, &reuse, &err) == DURABLE_OK)
        out = json_pack("{s:i, s:i, s:b}", "run_version", reuse.run_version, "requested_version",
                        reuse.requested_version, "input_differs", reuse.input_differs);
    free(input);
    json_decref(body);
    return out;
}

/* Answers the start: 202 and the new run, or 200 and the run the key
 * had started, with `reused`. */
static enum MHD_Result reply_started(struct request *rq, const char *run_id, bool existed)
{
    durable_error err = { 0 };
    char *json = NULL;
    json_t *run, *reused;

    if (!existed)
        return reply_run(rq, run_id, MHD_HTTP_ACCEPTED);
    if (durable_run_get(rq->srv->d, run_id, &json, &err) != DURABLE_OK) {
        durable_free(json);
        return http_reply_durable(rq, &err);
    }
    run = json_loads(json, 0, NULL);
    durable_free(json);
    reused = reused_object(rq, run_id);
    if (!run || !reused) {
        json_decref(run);
        json_decref(reused);
        return http_reply_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                "could not compare the run with the request");
    }
    json_object_set_new(run, "reused", reused);
    json = json_dumps(run, JSON_COMPACT);
    json_decref(run);
    http_header_add(rq, MHD_HTTP_HEADER_LOCATION, "/runs/%s", run_id);
    return http_reply_json(rq, MHD_HTTP_OK, json);
}

/* The engine's answer to an asynchronous start, on the writer thread:
 * keeps it in the request and resumes the connection. */
static void on_run_started(const durable_run_started *outcome, void *ud)
{
    struct request *rq = ud;

    rq->async_code = outcome->code;
    if (outcome->code == DURABLE_OK) {
        snprintf(rq->async_run_id, sizeof(rq->async_run_id), "%s", outcome->run_id);
        rq->async_existed = outcome->existed;
    } else {
        rq->async_err = *outcome->err;
    }
    http_async_resume(rq);
}

/* Answers a start once its connection is resumed (polling thread). */
static enum MHD_Result run_started_reply(struct request *rq)
{
    if (rq->async_code != DURABLE_OK)
        return http_reply_durable(rq, &rq->async_err);
    return reply_started(rq, rq->async_run_id, rq->async_existed);
}

/* Starts the run without holding the polling thread for the commit: the
 * connection is suspended until the engine calls back, so every start that
 * arrives meanwhile, on any connection, joins the same commit. (A worker
 * blocked per start would let only --workers starts share a commit.) When
 * the server is stopping, the start waits for its commit instead. */
static enum MHD_Result run_start(struct request *rq, const durable_run_request *req)
{
    durable_error err = { 0 };
    char *run_id = NULL;
    bool existed = false;
    enum MHD_Result ret;

    if (http_async_suspend(rq, run_started_reply)) {
        /* Resumed by on_run_started, or here if nothing was queued. */
        if (durable_run_start_async(rq->srv->d, req, on_run_started, rq, &err) != DURABLE_OK) {
            rq->async_code = err.code;
            rq->async_err = err;
            http_async_resume(rq);
        }
        return MHD_YES;
    }
    if (durable_run_start(rq->srv->d, req, &run_id, &existed, &err) != DURABLE_OK)
        ret = http_reply_durable(rq, &err);
    else
        ret = reply_started(rq, run_id, existed);
    durable_free(run_id);
    return ret;
}

enum MHD_Result route_run_start(struct request *rq)
{
    durable_run_request req = { 0 };
    durable_error err = { 0 };
    char *input = NULL;
    enum MHD_Result ret;
    json_t *body = http_body_object(rq, true, &ret);

    if (!body)
        return ret;
    if (start_request(rq, body, &req, &input, &err) != DURABLE_OK)
        ret = http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", err.msg);
    else
        ret = run_start(rq, &req);
    free(input);
    json_decref(body);
    return ret;
}

static bool status_known(const char *s)
{
    size_t i;

    for (i = 0; i < DUR_ARRAY_LEN(run_statuses); i++) {
        if (strcmp(s, run_statuses[i]) == 0)
            return true;
    }
    return false;
}

enum MHD_Result route_runs_list(struct request *rq)
{
    durable_run_filter f = { 0 };
    struct http_filter_text text = { 0 };
    durable_error err = { 0 };
    char *json = NULL;
    int64_t total = 0;
    enum MHD_Result ret;
    durable_code rc;

    if (!http_page(rq, HTTP_LIST_MAX, &f.limit, &f.offset, &ret))
        return ret;
    f.status = router_query(rq, "status");
    f.workflow_id = router_query(rq, "workflow_id");
    if (f.status && !status_known(f.status))
        return http_reply_error(
                rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
                "status must be one of pending, running, waiting, completed, failed, "
                "cancelled, paused");
    if (f.workflow_id && !router_id_valid(f.workflow_id))
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
                                "workflow_id: ids match [A-Za-z0-9_.-]{1,128}");
    if (http_run_filter_query(rq, &f, &text, &err) != DURABLE_OK) {
        free(text.value);
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
    }
    rc = durable_runs_list(rq->srv->d, &f, &json, &total, &err);
    free(text.value);
    if (rc == DURABLE_EINVAL) {
        durable_free(json);
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
    }
    return http_reply_list(rq, rc, json, total, &err);
}

enum MHD_Result route_run_get(struct request *rq)
{
    return reply_run(rq, rq->id, MHD_HTTP_OK);
}

enum MHD_Result route_run_events(struct request *rq)
{
    durable_error err = { 0 };
    char *json = NULL;
    int64_t after = 0;

    static const struct query_int q = { "after", 0, 0, INT64_MAX };

    if (router_query_int(rq, &q, &after, &err) != DURABLE_OK)
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
    if (durable_run_events(rq->srv->d, rq->id, after, &json, &err) != DURABLE_OK) {
        durable_free(json);
        return http_reply_durable(rq, &err);
    }
    return http_reply_json(rq, MHD_HTTP_OK, json);
}

/* GET /runs/{id}/logs?level=L&after=SEQ&limit=N (durable_run_logs): 400
 * for an unknown level, 404 for an unknown run. */
enum MHD_Result route_run_logs(struct request *rq)
{
    durable_log_filter f = { 0 };
    durable_error err = { 0 };
    char *json = NULL;
    int64_t limit = 0;

    static const struct query_int aq = { "after", 0, 0, INT64_MAX };
    static const struct query_int lq = { "limit", 100, 1, 1000 };

    if (router_query_int(rq, &aq, &f.after_seq, &err) != DURABLE_OK ||
        router_query_int(rq, &lq, &limit, &err) != DURABLE_OK)
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
    f.limit = (int)limit;
    f.level = router_query(rq, "level");
    if (durable_run_logs(rq->srv->d, rq->id, &f, &json, &err) != DURABLE_OK) {
        durable_free(json);
        if (err.code == DURABLE_EINVAL)
            return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "level: %s",
                                    err.msg);
        return http_reply_durable(rq, &err);
    }
    return http_reply_json(rq, MHD_HTTP_OK, json);
}

enum MHD_Result route_run_cancel(struct request *rq)
{
    durable_error err = { 0 };

    if (durable_run_cancel(rq->srv->d, rq->id, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return reply_run(rq, rq->id, MHD_HTTP_OK);
}

enum MHD_Result route_run_retry(struct request *rq)
{
    durable_error err = { 0 };

    if (durable_run_retry(rq->srv->d, rq->id, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return reply_run(rq, rq->id, MHD_HTTP_ACCEPTED);
}

enum MHD_Result route_run_pause(struct request *rq)
{
    durable_error err = { 0 };

    if (durable_run_pause(rq->srv->d, rq->id, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return reply_run(rq, rq->id, MHD_HTTP_OK);
}

enum MHD_Result route_run_resume(struct request *rq)
{
    durable_error err = { 0 };

    if (durable_run_resume(rq->srv->d, rq->id, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return reply_run(rq, rq->id, MHD_HTTP_OK);
}

/* POST /runs/{id}/restart {"from_step": STEP}: 202 with the NEW run (its
 * restarted_from names the original); 400 for a missing, blank or unknown
 * from_step (the message suggests the closest step id) or another field,
 * 404 for an unknown run, 409 for a run that has not finished, 422 for a
 * code-first run. */
enum MHD_Result route_run_restart(struct request *rq)
{
    static const char *const fields[] = { "from_step" };
    durable_error err = { 0 };
    const char *from = NULL;
    char *new_id = NULL;
    enum MHD_Result ret;
    json_t *body = http_body_object(rq, true, &ret);

    if (!body)
        return ret;
    if (only_fields(body, fields, 1, "from_step", &err) != DURABLE_OK ||
        blank_field(body, "from_step", 128, &from, &err) != DURABLE_OK)
        ret = http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", err.msg);
    else if (durable_run_restart(rq->srv->d, rq->id, from, &new_id, &err) != DURABLE_OK)
        ret = http_reply_durable(rq, &err);
    else
        ret = reply_run(rq, new_id, MHD_HTTP_ACCEPTED);
    durable_free(new_id);
    json_decref(body);
    return ret;
}

/* ---- approvals ---- */

/* POST /runs/{id}/steps/{step}/approve|reject {"by", "comment"} (either
 * may be absent, null or blank): 200 with
 * the run once the decision has committed; 404 for an unknown run or step,
 * 409 when the step is not an approval waiting for a decision. */
static enum MHD_Result decide_step(struct request *rq, bool approve)
{
    static const char *const fields[] = { "by", "comment" };
    durable_error err = { 0 };
    const char *by = NULL, *comment = NULL;
    enum MHD_Result ret;
    json_t *body = http_body_object(rq, true, &ret);

    if (!body)
        return ret;
    if (only_fields(body, fields, 2, "by, comment", &err) != DURABLE_OK ||
        blank_field(body, "by", 128, &by, &err) != DURABLE_OK ||
        blank_field(body, "comment", 4096, &comment, &err) != DURABLE_OK)
        ret = http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", err.msg);
    else if (durable_step_decide(rq->srv->d, rq->id, rq->step, approve, by, comment, &err) !=
             DURABLE_OK)
        ret = http_reply_durable(rq, &err);
    else
        ret = reply_run(rq, rq->id, MHD_HTTP_OK);
    json_decref(body);
    return ret;
}

enum MHD_Result route_step_approve(struct request *rq)
{
    return decide_step(rq, true);
}

enum MHD_Result route_step_reject(struct request *rq)
{
    return decide_step(rq, false);
}

/* ---- signals ---- */

/* POST /runs/{id}/signals/{name} with the payload as the body (any JSON;
 * empty: null): 202 with the stored signal {id, run_id, name, seq,
 * taken_by}; 404 for an unknown run, 409 for a finished one, 400 for a bad
 * name or a body that is not JSON. */
enum MHD_Result route_run_signal(struct request *rq)
{
    durable_error err = { 0 };
    char *out = NULL;
    const char *body = rq->body.len ? rq->body.buf : NULL;

    if (body && strlen(body) != rq->body.len)
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request",
                                "the signal's payload contains a NUL byte");
    if (durable_signal_send(rq->srv->d, rq->id, rq->step, body, &out, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return http_reply_json(rq, MHD_HTTP_ACCEPTED, out);
}
