/*
 * router.c - the routing table of SPEC §6 and what requests carry in their
 * path and query string.
 *
 * A path is split into segments and compared with each route's pattern:
 * literal segments, {id} and {step} (validated against the id charset
 * [A-Za-z0-9_.-]{1,128} before any handler sees them), and a final {path*}
 * that takes the rest (static files). MHD has already decoded %XX escapes
 * (but %00, see server.c), so "%2e%2e" arrives here as "..". An empty
 * segment ("//", or a trailing slash) matches nothing: "/runs/" is not
 * "/runs", which also keeps a raw NUL ("GET /runs/\0x", cut by MHD to
 * "/runs/") from reaching the list. GET routes also answer HEAD (MHD drops the
 * body). Pure functions of their arguments: any thread.
 */
#include "util/common.h"

#include "http/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEGMENTS 16

const struct route http_routes[] = {
    { "GET", "/health", route_health, ROUTE_PUBLIC },
    { "GET", "/metrics", route_metrics, 0 },
    { "GET", "/openapi.json", route_openapi, 0 },
    { "POST", "/workflows", route_workflow_register, 0 },
    { "GET", "/workflows", route_workflows_list, 0 },
    { "GET", "/workflows/{id}", route_workflow_get, 0 },
    { "DELETE", "/workflows/{id}/versions/{step}", route_workflow_version_delete, 0 },
    { "POST", "/workflows/{id}/runs", route_run_start, 0 },
    { "GET", "/runs", route_runs_list, 0 },
    { "DELETE", "/runs", route_runs_purge, 0 },
    { "POST", "/runs/bulk", route_runs_bulk, 0 },
    { "GET", "/runs/{id}", route_run_get, 0 },
    { "DELETE", "/runs/{id}", route_run_delete, 0 },
    { "GET", "/runs/{id}/events", route_run_events, 0 },
    { "GET", "/runs/{id}/logs", route_run_logs, 0 },
    { "GET", "/runs/{id}/stream", route_run_stream, 0 },
    { "POST", "/runs/{id}/cancel", route_run_cancel, 0 },
    { "POST", "/runs/{id}/retry", route_run_retry, 0 },
    { "POST", "/runs/{id}/pause", route_run_pause, 0 },
    { "POST", "/runs/{id}/resume", route_run_resume, 0 },
    { "POST", "/runs/{id}/restart", route_run_restart, 0 },
    { "POST", "/runs/{id}/steps/{step}/approve", route_step_approve, 0 },
    { "POST", "/runs/{id}/steps/{step}/reject", route_step_reject, 0 },
    { "POST", "/runs/{id}/signals/{step}", route_run_signal, 0 },
    { "GET", "/events/stream", route_events_stream, 0 },
    { "POST", "/orders", route_order_create, 0 },
    { "GET", "/orders", route_orders_list, 0 },
    { "GET", "/orders/{id}", route_order_get, 0 },
    { "GET", "/db/snapshot", route_db_snapshot, 0 },
    { "POST", "/schedules", route_schedule_create, 0 },
    { "GET", "/schedules", route_schedules_list, 0 },
    { "GET", "/schedules/{id}", route_schedule_get, 0 },
    { "DELETE", "/schedules/{id}", route_schedule_delete, 0 },
    { "POST", "/schedules/{id}/pause", route_schedule_pause, 0 },
    { "POST", "/schedules/{id}/resume", route_schedule_resume, 0 },
    { "POST", "/signin", route_signin, ROUTE_PUBLIC },
    { "POST", "/signout", route_signout, ROUTE_PUBLIC },
    { "GET", "/", route_ui_index, ROUTE_PAGE },
    { "GET", "/favicon.svg", route_favicon, 0 },
    { "GET", "/ui/{path*}", route_ui_file, ROUTE_PAGE },
};
const size_t http_n_routes = DUR_ARRAY_LEN(http_routes);

struct seg {
    const char *p;
    size_t len;
};

bool router_id_valid(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok || n >= HTTP_ID_MAX)
            return false;
    }
    return n > 0;
}

/* Splits path into segments. Returns the count, or -1 when the path is not
 * absolute, has an empty segment or too many. */
static int split(const char *path, struct seg *segs)
{
    size_t len = strlen(path);
    int n = 0;
    const char *p, *end;

    if (len == 0 || path[0] != '/' || (len > 1 && path[len - 1] == '/'))
        return -1;
    end = path + len;
    for (p = path + 1; p < end;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t seg_len = slash ? (size_t)(slash - p) : (size_t)(end - p);
        if (seg_len == 0 || n == MAX_SEGMENTS)
            return -1;
        segs[n].p = p;
        segs[n].len = seg_len;
        n++;
        p += seg_len + 1;
    }
    return n;
}

/* Copies a path parameter into out; false when it is not a valid id. */
static bool take_param(const struct seg *s, char out[HTTP_ID_MAX + 1])
{
    if (s->len > HTTP_ID_MAX)
        return false;
    memcpy(out, s->p, s->len);
    out[s->len] = '\0';
    return router_id_valid(out);
}

/* Does path (segs) have the shape of pattern? Fills rq's parameters and
 * *bad_id when a parameter is not a valid id. */
static bool match_pattern(const char *pattern, const struct seg *segs, int n, struct request *rq,
                          bool *bad_id)
{
    struct seg pat[MAX_SEGMENTS];
    int np = split(pattern, pat), i;

    for (i = 0; i < np; i++) {
        if (pat[i].len == 7 && memcmp(pat[i].p, "{path*}", 7) == 0) {
            rq->rest = i < n ? segs[i].p : "";
            return true;
        }
        if (i >= n)
            return false;
        if (pat[i].len == 4 && memcmp(pat[i].p, "{id}", 4) == 0)
            *bad_id |= !take_param(&segs[i], rq->id);
        else if (pat[i].len == 6 && memcmp(pat[i].p, "{step}", 6) == 0)
            *bad_id |= !take_param(&segs[i], rq->step);
        else if (pat[i].len != segs[i].len || memcmp(pat[i].p, segs[i].p, segs[i].len) != 0)
            return false;
    }
    return i == n;
}

static bool method_fits(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

static void allow_add(struct request *rq, const char *route_method)
{
    const char *m = strcmp(route_method, "GET") == 0 ? "GET, HEAD" : route_method;
    size_t len = strlen(rq->allow);

    if (strstr(rq->allow, m))
        return;
    snprintf(rq->allow + len, sizeof(rq->allow) - len, "%s%s", len ? ", " : "", m);
}

enum route_match router_match(struct request *rq, const char *method, const char *path)
{
    struct seg segs[MAX_SEGMENTS];
    int n = split(path, segs);
    bool any_path = false;
    int first = -1;
    size_t i;

    rq->route = -1;
    rq->allow[0] = '\0';
    for (i = 0; n >= 0 && i < http_n_routes; i++) {
        bool bad_id = false;
        if (!match_pattern(http_routes[i].pattern, segs, n, rq, &bad_id))
            continue;
        if (!method_fits(http_routes[i].method, method)) {
            allow_add(rq, http_routes[i].method);
            if (!any_path)
                first = (int)i; /* the pattern the 405 is counted under */
            any_path = true;
            continue;
        }
        rq->route = (int)i;
        return bad_id ? MATCH_BAD_ID : MATCH_OK;
    }
    rq->route = first;
    return any_path ? MATCH_BAD_METHOD : MATCH_NO_PATH;
}

const char *router_query(struct request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

durable_code router_query_int(struct request *rq, const struct query_int *q, int64_t *out,
                              durable_error *err)
{
    const char *s = router_query(rq, q->name);
    char *end = NULL;
    long long v;

    if (!s || !*s) {
        *out = q->def;
        return DURABLE_OK;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) || v < q->min ||
        v > q->max) {
        return err_set(err, DURABLE_EINVAL,
                       "%s must be an integer from %lld to %lld, not \"%.40s\"", q->name,
                       (long long)q->min, (long long)q->max, s);
    }
    *out = v;
    return DURABLE_OK;
}
