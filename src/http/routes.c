/*
 * routes.c - the handlers of workflows, orders, /db/snapshot, /health and
 * /metrics, and the helpers every handler shares (JSON bodies, paging,
 * lists).
 *
 * Each handler runs on a polling thread at the access handler's last call,
 * reads rq (its path ids are already valid), calls libdurable once or twice
 * and answers once. Strings from libdurable are handed to the response,
 * which frees them.
 */
#include "util/common.h"

#include "http/http_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers ---- */

json_t *http_body_object(struct request *rq, bool empty_ok, enum MHD_Result *out_ret)
{
    json_error_t jerr;
    json_t *doc;

    if (rq->body.len == 0 && empty_ok)
        return json_object();
    doc = json_loadb(rq->body.buf, rq->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        *out_ret = http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "malformed_json",
                                    "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        *out_ret = http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request",
                                    "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

bool http_page(struct request *rq, int max_limit, int *out_limit, int *out_offset,
               enum MHD_Result *out_ret)
{
    durable_error err = { 0 };
    int64_t limit = 0, offset = 0;

    const struct query_int lq = { "limit", HTTP_LIST_DEFAULT, 1, max_limit };
    static const struct query_int oq = { "offset", 0, 0, INT_MAX };

    if (router_query_int(rq, &lq, &limit, &err) != DURABLE_OK ||
        router_query_int(rq, &oq, &offset, &err) != DURABLE_OK) {
        *out_ret = http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
        return false;
    }
    *out_limit = (int)limit;
    *out_offset = (int)offset;
    return true;
}

enum MHD_Result http_reply_list(struct request *rq, durable_code rc, char *json, int64_t total,
                                const durable_error *err)
{
    if (rc != DURABLE_OK) {
        durable_free(json);
        return http_reply_durable(rq, err);
    }
    http_header_add(rq, "X-Total-Count", "%lld", (long long)total);
    return http_reply_json(rq, MHD_HTTP_OK, json);
}

/* Answers the result of a durable call returning one JSON document. */
static enum MHD_Result reply_doc(struct request *rq, durable_code rc, unsigned status, char *json,
                                 const durable_error *err)
{
    if (rc != DURABLE_OK) {
        durable_free(json);
        return http_reply_durable(rq, err);
    }
    return http_reply_json(rq, status, json);
}

/* A page of a list (?limit, ?offset) read by list, with X-Total-Count. */
static enum MHD_Result reply_page(struct request *rq,
                                  durable_code (*list)(durable *, int, int, char **, int64_t *,
                                                       durable_error *))
{
    durable_error err = { 0 };
    char *json = NULL;
    int64_t total = 0;
    int limit, offset;
    enum MHD_Result ret;
    durable_code rc;

    if (!http_page(rq, HTTP_LIST_MAX, &limit, &offset, &ret))
        return ret;
    rc = list(rq->srv->d, limit, offset, &json, &total, &err);
    return http_reply_list(rq, rc, json, total, &err);
}

/* The document that get reads for the route's id. */
static enum MHD_Result reply_by_id(struct request *rq,
                                   durable_code (*get)(durable *, const char *, char **,
                                                       durable_error *))
{
    durable_error err = { 0 };
    char *json = NULL;
    durable_code rc = get(rq->srv->d, rq->id, &json, &err);

    return reply_doc(rq, rc, MHD_HTTP_OK, json, &err);
}

/* ---- workflows ---- */

#define WARNING_PREFIX "warning: "

/* The report's lines as a JSON array of strings; with warnings_only, only
 * its warnings, without their "warning: " prefix. */
static json_t *report_lines(const char *report, bool warnings_only)
{
    const size_t plen = strlen(WARNING_PREFIX);
    json_t *lines = json_array();
    const char *line = report, *nl;

    while (line && *line) {
        nl = strchr(line, '\n');
        if (!nl)
            nl = line + strlen(line);
        if (!warnings_only && nl > line)
            json_array_append_new(lines, json_stringn(line, (size_t)(nl - line)));
        else if (warnings_only && (size_t)(nl - line) > plen &&
                 strncmp(line, WARNING_PREFIX, plen) == 0)
            json_array_append_new(lines, json_stringn(line + plen, (size_t)(nl - line) - plen));
        line = *nl ? nl + 1 : nl;
    }
    return lines;
}

/* The workflow document json (taken, durable_free) with the warnings of
 * the validator (report) and of the engine (more: what only the store can
 * tell) added as "warnings" (an empty array when there are none), as a new
 * text to free(). */
static char *with_warnings(char *json, const char *report, const char *more)
{
    json_t *doc = json_loads(json, 0, NULL);
    json_t *lines = report_lines(report, true), *engine_lines = report_lines(more, true);
    char *text = NULL;

    json_array_extend(lines, engine_lines);
    json_decref(engine_lines);
    if (json_is_object(doc)) {
        json_object_set_new(doc, "warnings", lines);
        lines = NULL;
        text = json_dumps(doc, JSON_COMPACT);
    }
    json_decref(lines);
    json_decref(doc);
    if (!text) /* not the document durable_workflow_get makes: sent as it is */
        return json;
    durable_free(json);
    return text;
}

/* 400 (malformed JSON or YAML) or 422 (invalid definition) with every
 * located message of the validator in error.details. The body was read as
 * YAML when it does not look like JSON (def's AUTO format), unless it was
 * labelled JSON: a scalar alone is read as JSON, and a JSON client's
 * mistake ("nul") is a JSON mistake. */
static enum MHD_Result reply_invalid(struct request *rq, durable_code rc, const char *report,
                                     const durable_error *err)
{
    json_t *details = report_lines(report, false);
    const char *msg = err->msg;

    if (!*msg && json_array_size(details) > 0)
        msg = json_string_value(json_array_get(details, 0));
    if (rc == DURABLE_ESYNTAX)
        return http_reply_error_details(
                rq, MHD_HTTP_BAD_REQUEST,
                !rq->says_json && !text_looks_json(rq->body.buf, rq->body.len) ? "malformed_yaml"
                                                                               : "malformed_json",
                msg, details);
    return http_reply_error_details(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_definition", msg,
                                    details);
}

enum MHD_Result route_workflow_register(struct request *rq)
{
    durable_error err = { 0 };
    char *report = NULL, *more = NULL, *wf_id = NULL, *json = NULL;
    bool created = false;
    durable_code rc;
    enum MHD_Result ret;

    if (rq->body.len == 0)
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request",
                                "the body must be a workflow definition (JSON or YAML)");
    rc = durable_validate(rq->body.buf, rq->body.len, &report, &err);
    if (rc == DURABLE_EINVAL || rc == DURABLE_ESYNTAX) {
        ret = reply_invalid(rq, rc, report, &err);
        goto done;
    }
    if (rc == DURABLE_OK) {
        err_clear(&err);
        rc = durable_workflow_register(rq->srv->d, rq->body.buf, rq->body.len, &wf_id, NULL,
                                       &created, &err);
    }
    if (rc == DURABLE_EINVAL || rc == DURABLE_ESYNTAX) {
        ret = reply_invalid(rq, rc, NULL, &err);
        goto done;
    }
    if (rc == DURABLE_OK)
        rc = durable_workflow_warnings(rq->srv->d, rq->body.buf, rq->body.len, &more, &err);
    if (rc == DURABLE_OK)
        rc = durable_workflow_get(rq->srv->d, wf_id, &json, &err);
    if (rc == DURABLE_OK) {
        http_header_add(rq, MHD_HTTP_HEADER_LOCATION, "/workflows/%s", wf_id);
        json = with_warnings(json, report, more);
    }
    ret = reply_doc(rq, rc, created ? MHD_HTTP_CREATED : MHD_HTTP_OK, json, &err);
done:
    durable_free(wf_id);
    durable_free(report);
    durable_free(more);
    return ret;
}

enum MHD_Result route_workflows_list(struct request *rq)
{
    return reply_page(rq, durable_workflows_list);
}

enum MHD_Result route_workflow_get(struct request *rq)
{
    return reply_by_id(rq, durable_workflow_get);
}

/* ---- orders ---- */

enum MHD_Result route_order_create(struct request *rq)
{
    durable_error err = { 0 };
    char *order_id = NULL, *json = NULL;
    enum MHD_Result ret;
    json_t *body = http_body_object(rq, false, &ret);
    json_t *amount;
    durable_code rc;

    if (!body)
        return ret;
    amount = json_object_get(body, "amount");
    if (!json_is_number(amount)) {
        json_decref(body);
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request",
                                "amount: expected a number from 0 to 1e12");
    }
    rc = durable_order_create(rq->srv->d, json_number_value(amount), &order_id, &err);
    json_decref(body);
    if (rc == DURABLE_OK)
        rc = durable_order_get(rq->srv->d, order_id, &json, &err);
    if (rc == DURABLE_OK)
        http_header_add(rq, MHD_HTTP_HEADER_LOCATION, "/orders/%s", order_id);
    durable_free(order_id);
    return reply_doc(rq, rc, MHD_HTTP_CREATED, json, &err);
}

enum MHD_Result route_orders_list(struct request *rq)
{
    return reply_page(rq, durable_orders_list);
}

enum MHD_Result route_order_get(struct request *rq)
{
    return reply_by_id(rq, durable_order_get);
}

/* ---- the database, health and metrics ---- */

enum MHD_Result route_db_snapshot(struct request *rq)
{
    durable_error err = { 0 };
    char *json = NULL;
    int64_t rows = 0;
    durable_code rc;

    static const struct query_int q = { "limit", 50, 1, 200 };

    if (router_query_int(rq, &q, &rows, &err) != DURABLE_OK)
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
    rc = durable_db_snapshot(rq->srv->d, (int)rows, &json, &err);
    return reply_doc(rq, rc, MHD_HTTP_OK, json, &err);
}

enum MHD_Result route_health(struct request *rq)
{
    durable_error err = { 0 };
    durable_code rc = durable_health(rq->srv->d, &err);
    json_t *doc = json_pack("{s:s, s:s, s:s}", "status", rc == DURABLE_OK ? "ok" : "unavailable",
                            "version", durable_version(), "db", rq->srv->db_label);
    char *text;

    if (!doc) /* a database path that is not UTF-8 */
        doc = json_pack("{s:s, s:s}", "status", rc == DURABLE_OK ? "ok" : "unavailable", "version",
                        durable_version());
    if (rc != DURABLE_OK) {
        json_object_set_new(doc, "error",
                            json_pack("{s:s, s:s}", "code", "unavailable", "message",
                                      err.msg[0] ? err.msg : durable_strerror(rc)));
    }
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    DUR_ASSERT(text);
    return http_reply_json(rq, rc == DURABLE_OK ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

enum MHD_Result route_metrics(struct request *rq)
{
    durable_error err = { 0 };
    char *text = NULL;
    struct dbuf out;
    durable_code rc = durable_metrics(rq->srv->d, &text, &err);

    if (rc != DURABLE_OK)
        return http_reply_durable(rq, &err);
    dbuf_init(&out, 0);
    dbuf_adds(&out, text);
    durable_free(text);
    http_metrics_write(&rq->srv->metrics, &out);
    dbuf_addf(&out,
              "# HELP durable_http_sse_clients Open event streams.\n"
              "# TYPE durable_http_sse_clients gauge\ndurable_http_sse_clients %zu\n",
              sse_hub_clients(rq->srv->hub));
    text = dbuf_detach(&out, NULL);
    return http_reply(rq, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text,
                      strlen(text), true);
}
