/*
 * routes_delete.c - deletions: DELETE /runs/{id} (204; 404 unknown; 409 a
 * run not finished), DELETE /runs?older_than=D&workflow=NAME&status=S&dry_run=true
 * (purge: 200 {"deleted": N, "dry_run": bool}) and DELETE
 * /workflows/{name}/versions/{v} (204; 404; 409 when runs use it). Each is
 * a transition the engine's writer commits (engine/retain.c).
 */
#include "util/common.h"

#include "http/http_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum MHD_Result route_run_delete(struct request *rq)
{
    durable_error err = { 0 };

    if (durable_run_delete(rq->srv->d, rq->id, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return http_reply(rq, MHD_HTTP_NO_CONTENT, NULL, (void *)"", 0, false);
}

/* The first query parameter purge does not know, if any. */
struct unknown_arg {
    char name[64];
    bool found;
};

static enum MHD_Result find_unknown(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    static const char *const known[] = { "older_than", "workflow", "status", "dry_run", "all" };
    struct unknown_arg *u = cls;

    (void)kind;
    (void)value;
    for (size_t i = 0; i < DUR_ARRAY_LEN(known); i++) {
        if (key && strcmp(key, known[i]) == 0)
            return MHD_YES;
    }
    u->found = true;
    snprintf(u->name, sizeof(u->name), "%s", key ? key : "");
    return MHD_NO;
}

static enum MHD_Result bad_param(struct request *rq, const char *msg)
{
    return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", msg);
}

enum MHD_Result route_runs_purge(struct request *rq)
{
    durable_purge p = { 0 };
    durable_error err = { 0 };
    struct unknown_arg u = { .found = false };
    const char *older = router_query(rq, "older_than"), *dry = router_query(rq, "dry_run");
    const char *all = router_query(rq, "all");
    int64_t ms = 0, n = 0;
    json_t *o;
    char *json;
    enum MHD_Result ret;

    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, find_unknown, &u);
    if (u.found) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "unknown parameter \"%.60s\": purge takes older_than, workflow, status, "
                 "dry_run, all",
                 u.name);
        return bad_param(rq, msg);
    }
    if (older) {
        if (duration_parse(older, &ms, &err) != DURABLE_OK)
            return bad_param(rq, err.msg);
        p.finished_before_ms = clock_wall_ms() - ms;
    }
    p.workflow = router_query(rq, "workflow");
    if (p.workflow && !p.workflow[0])
        return bad_param(rq, "workflow: a workflow name, not blank");
    p.status = router_query(rq, "status");
    if (p.status && strcmp(p.status, "completed") != 0 && strcmp(p.status, "failed") != 0 &&
        strcmp(p.status, "cancelled") != 0)
        return bad_param(rq, "status: one of completed, failed, cancelled (only finished runs "
                             "are deleted)");
    if (dry && strcmp(dry, "true") != 0 && strcmp(dry, "false") != 0)
        return bad_param(rq, "dry_run: true or false");
    p.dry_run = dry && strcmp(dry, "true") == 0;
    if (all && strcmp(all, "true") != 0 && strcmp(all, "false") != 0)
        return bad_param(rq, "all: true or false");
    /* A bare DELETE /runs (a typo, a stray client) must not empty the
     * database: every finished run is deleted only when asked by name. */
    if (!older && !p.workflow && !p.status && !(all && strcmp(all, "true") == 0))
        return bad_param(rq, "purge needs a filter (older_than, workflow, status) or all=true "
                             "to delete every finished run");
    if (durable_runs_purge(rq->srv->d, &p, &n, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    o = json_pack("{s:I, s:b}", "deleted", (json_int_t)n, "dry_run", p.dry_run);
    json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    ret = http_reply_json(rq, MHD_HTTP_OK, json);
    return ret;
}

enum MHD_Result route_workflow_version_delete(struct request *rq)
{
    durable_error err = { 0 };
    char *end;
    long v = strtol(rq->step, &end, 10);

    if (end == rq->step || *end || v < 1 || v > 1000000000)
        return http_reply_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                                "a workflow version is a number from 1, got \"%.40s\"", rq->step);
    if (durable_workflow_delete(rq->srv->d, rq->id, (int)v, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return http_reply(rq, MHD_HTTP_NO_CONTENT, NULL, (void *)"", 0, false);
}
