/*
 * routes_bulk.c - the filters of GET /runs beyond status and workflow_id
 * (time ranges, a field of the input) and POST /runs/bulk (cancel, retry, pause or resume
 * every run a filter matches, in one commit: durable_runs_bulk).
 */
#include "util/common.h"

#include "http/http_int.h"

#include <stdlib.h>
#include <string.h>

/* The time parameters, in the filter's order. */
static const char *const time_names[] = { "created_after", "created_before", "finished_after",
                                          "finished_before" };

static int64_t *time_slot(durable_run_filter *f, size_t i)
{
    int64_t *slots[] = { &f->created_after_ms, &f->created_before_ms, &f->finished_after_ms,
                         &f->finished_before_ms };
    return slots[i];
}

/* An RFC 3339 time into *out (a blank or absent one leaves it 0). */
static durable_code time_value(const char *name, const char *s, int64_t *out, durable_error *err)
{
    if (!s || !*s)
        return DURABLE_OK;
    if (!clock_parse_rfc3339(s, out))
        return err_set(err, DURABLE_EINVAL,
                       "%s: \"%.40s\" is not an RFC 3339 time (2026-01-31T12:00:00Z)", name, s);
    if (*out == 0)
        *out = 1; /* 0 means no bound: the epoch itself is a millisecond later */
    return DURABLE_OK;
}

/* A field name the buffer holds (the engine checks its names). */
static durable_code field_fits(const char *field, durable_error *err)
{
    if (strlen(field) >= sizeof(((struct http_filter_text *)0)->field))
        return err_set(err, DURABLE_EINVAL, "input field \"%.60s...\" is too long", field);
    return DURABLE_OK;
}

struct query_scan {
    durable_run_filter *f;
    struct http_filter_text *text;
    durable_error *err;
    durable_code rc;
};

static enum MHD_Result scan_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    struct query_scan *qs = cls;
    struct http_filter_text *t = qs->text;
    json_t *j;

    (void)kind;
    if (qs->rc != DURABLE_OK || !key || strncmp(key, "input.", 6) != 0 || !value || !*value)
        return MHD_YES;
    if (qs->f->input_field) {
        qs->rc =
                err_set(qs->err, DURABLE_EINVAL, "one input filter at a time (got %.60s and %.60s)",
                        qs->f->input_field, key + 6);
        return MHD_NO;
    }
    qs->rc = field_fits(key + 6, qs->err);
    if (qs->rc != DURABLE_OK)
        return MHD_NO;
    snprintf(t->field, sizeof(t->field), "%s", key + 6);
    /* JSON when it reads as a JSON scalar (7, "7", true, null), else the
     * text as a string (input.name=alice). */
    j = json_loads(value, JSON_DECODE_ANY, NULL);
    if (j && (json_is_object(j) || json_is_array(j))) {
        json_decref(j);
        qs->rc = err_set(qs->err, DURABLE_EINVAL,
                         "input.%.60s: the value must be a string, number, true, false or null",
                         t->field);
        return MHD_NO;
    }
    if (!j)
        j = json_string(value);
    t->value = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (!t->value || strlen(t->value) > 1024) {
        qs->rc =
                err_set(qs->err, DURABLE_EINVAL,
                        "input.%.60s: the value is not UTF-8 text of at most 1024 bytes", t->field);
        return MHD_NO;
    }
    qs->f->input_field = t->field;
    qs->f->input_value = t->value;
    return MHD_YES;
}

durable_code http_run_filter_query(struct request *rq, durable_run_filter *f,
                                   struct http_filter_text *text, durable_error *err)
{
    struct query_scan qs = { f, text, err, DURABLE_OK };

    memset(text, 0, sizeof(*text));
    for (size_t i = 0; i < DUR_ARRAY_LEN(time_names); i++) {
        durable_code rc =
                time_value(time_names[i], router_query(rq, time_names[i]), time_slot(f, i), err);
        if (rc != DURABLE_OK)
            return rc;
    }
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, scan_arg, &qs);
    return qs.rc;
}

/* A string member of the filter: absent, null or "" is none. */
static durable_code filter_string(json_t *obj, const char *name, const char **out,
                                  durable_error *err)
{
    json_t *v = json_object_get(obj, name);

    *out = NULL;
    if (!v || json_is_null(v))
        return DURABLE_OK;
    if (!json_is_string(v))
        return err_set(err, DURABLE_EINVAL, "filter.%s: expected a string", name);
    if (json_string_length(v) > 0)
        *out = json_string_value(v);
    return DURABLE_OK;
}

/* The filter's input member ({"field": value}) into f. */
static durable_code body_input(json_t *input, durable_run_filter *f, struct http_filter_text *text,
                               durable_error *err)
{
    const char *key;
    json_t *v;
    durable_code rc;

    if (!input || json_is_null(input))
        return DURABLE_OK;
    if (!json_is_object(input))
        return err_set(err, DURABLE_EINVAL, "filter.input: expected an object {\"field\": value}");
    if (json_object_size(input) > 1)
        return err_set(err, DURABLE_EINVAL, "filter.input: one input field at a time");
    json_object_foreach(input, key, v)
    {
        rc = field_fits(key, err);
        if (rc != DURABLE_OK)
            return rc;
        if (json_is_object(v) || json_is_array(v))
            return err_set(err, DURABLE_EINVAL,
                           "filter.input.%.60s: the value must be a string, number, true, false "
                           "or null",
                           key);
        snprintf(text->field, sizeof(text->field), "%s", key);
        text->value = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        f->input_field = text->field;
        f->input_value = text->value;
    }
    return DURABLE_OK;
}

/* The body's filter object into f (strings borrowed from it, the input
 * value's text into text). */
static durable_code body_filter(json_t *obj, durable_run_filter *f, struct http_filter_text *text,
                                durable_error *err)
{
    static const char *const known[] = { "workflow",        "workflow_id",    "status",
                                         "created_after",   "created_before", "finished_after",
                                         "finished_before", "input" };
    const char *key, *s;
    json_t *v;
    durable_code rc = DURABLE_OK;

    memset(text, 0, sizeof(*text));
    if (!obj || json_is_null(obj))
        return DURABLE_OK;
    if (!json_is_object(obj))
        return err_set(err, DURABLE_EINVAL, "filter: expected an object");
    json_object_foreach(obj, key, v)
    {
        size_t i;
        for (i = 0; i < DUR_ARRAY_LEN(known) && strcmp(key, known[i]) != 0; i++)
            ;
        if (i == DUR_ARRAY_LEN(known))
            return err_set(err, DURABLE_EINVAL,
                           "filter: unknown field \"%.60s\" (expected workflow, status, "
                           "created_after, created_before, finished_after, finished_before, "
                           "input)",
                           key);
    }
    rc = filter_string(obj, "workflow", &f->workflow_id, err);
    if (rc == DURABLE_OK && !f->workflow_id)
        rc = filter_string(obj, "workflow_id", &f->workflow_id, err);
    if (rc == DURABLE_OK && f->workflow_id && !router_id_valid(f->workflow_id))
        rc = err_set(err, DURABLE_EINVAL, "filter.workflow: ids match [A-Za-z0-9_.-]{1,128}");
    if (rc == DURABLE_OK)
        rc = filter_string(obj, "status", &f->status, err);
    for (size_t i = 0; rc == DURABLE_OK && i < DUR_ARRAY_LEN(time_names); i++) {
        rc = filter_string(obj, time_names[i], &s, err);
        if (rc == DURABLE_OK)
            rc = time_value(time_names[i], s, time_slot(f, i), err);
    }
    if (rc != DURABLE_OK)
        return rc;
    return body_input(json_object_get(obj, "input"), f, text, err);
}

/* An optional boolean member. */
static durable_code bool_field(json_t *obj, const char *name, bool *out, durable_error *err)
{
    json_t *v = json_object_get(obj, name);

    *out = false;
    if (!v || json_is_null(v))
        return DURABLE_OK;
    if (!json_is_boolean(v))
        return err_set(err, DURABLE_EINVAL, "%s: expected true or false", name);
    *out = json_is_true(v);
    return DURABLE_OK;
}

/* The request in body (strings borrowed from it, the input value's text
 * into text). */
static durable_code body_request(json_t *body, durable_bulk_request *req,
                                 struct http_filter_text *text, durable_error *err)
{
    static const char *const known[] = { "action", "filter", "dry_run", "all" };
    const char *key;
    json_t *v;
    durable_code rc;

    json_object_foreach(body, key, v)
    {
        size_t i;
        for (i = 0; i < DUR_ARRAY_LEN(known) && strcmp(key, known[i]) != 0; i++)
            ;
        if (i == DUR_ARRAY_LEN(known))
            return err_set(err, DURABLE_EINVAL,
                           "unknown field \"%.60s\" (expected action, filter, dry_run, all)", key);
    }
    req->action = json_string_value(json_object_get(body, "action"));
    if (!req->action)
        return err_set(err, DURABLE_EINVAL,
                       "action: expected \"cancel\", \"retry\", \"pause\" or \"resume\"");
    rc = bool_field(body, "dry_run", &req->dry_run, err);
    if (rc == DURABLE_OK)
        rc = bool_field(body, "all", &req->all, err);
    if (rc == DURABLE_OK)
        rc = body_filter(json_object_get(body, "filter"), &req->filter, text, err);
    return rc;
}

enum MHD_Result route_runs_bulk(struct request *rq)
{
    durable_bulk_request req = { 0 };
    durable_bulk_result res = { 0 };
    struct http_filter_text text = { 0 };
    durable_error err = { 0 };
    enum MHD_Result ret;
    json_t *body, *out;
    durable_code rc;

    body = http_body_object(rq, false, &ret);
    if (!body)
        return ret;
    rc = body_request(body, &req, &text, &err);
    if (rc == DURABLE_OK)
        rc = durable_runs_bulk(rq->srv->d, &req, &res, &err);
    if (rc == DURABLE_ETOOBIG) {
        out = json_pack("{sIsi}", "matched", (json_int_t)res.matched, "limit", DURABLE_BULK_MAX);
        ret = http_reply_error_details(rq, MHD_HTTP_CONTENT_TOO_LARGE, "too_many_runs", err.msg,
                                       out);
    } else if (rc == DURABLE_EINVAL) {
        ret = http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
    } else if (rc != DURABLE_OK) {
        ret = http_reply_durable(rq, &err);
    } else {
        out = json_pack("{sssIsIsb}", "action", req.action, "matched", (json_int_t)res.matched,
                        "touched", (json_int_t)res.touched, "dry_run", req.dry_run);
        ret = http_reply_json(rq, MHD_HTTP_OK, json_dumps(out, JSON_COMPACT));
        json_decref(out);
    }
    free(text.value);
    json_decref(body);
    return ret;
}
