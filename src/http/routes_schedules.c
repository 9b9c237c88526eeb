/*
 * routes_schedules.c - the handlers of /schedules: create (201), list,
 * get, pause, resume, delete. A schedule's errors name the member at fault
 * (422 invalid_schedule); a malformed body is 400 malformed_json.
 */
#include "util/common.h"

#include "http/http_int.h"

#include <stdlib.h>
#include <string.h>

static enum MHD_Result reply_schedule(struct request *rq, const char *id, unsigned status)
{
    durable_error err = { 0 };
    char *json = NULL;

    if (durable_schedule_get(rq->srv->d, id, &json, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return http_reply_json(rq, status, json);
}

enum MHD_Result route_schedule_create(struct request *rq)
{
    durable_error err = { 0 };
    char *json = NULL, *text;
    durable_code rc;
    enum MHD_Result ret;

    if (rq->body.len == 0)
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request",
                                "the body must be a JSON object (a schedule)");
    text = xstrndup(rq->body.buf, rq->body.len);
    rc = durable_schedule_create(rq->srv->d, text, &json, &err);
    free(text);
    if (rc == DURABLE_EINVAL) {
        durable_free(json);
        return http_reply_error(rq, MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_schedule", "%s",
                                err.msg);
    }
    if (rc != DURABLE_OK) {
        durable_free(json);
        return http_reply_durable(rq, &err);
    }
    {
        json_t *doc = json_loads(json, 0, NULL);
        const char *id = json_string_value(json_object_get(doc, "id"));

        if (id)
            http_header_add(rq, MHD_HTTP_HEADER_LOCATION, "/schedules/%s", id);
        json_decref(doc);
    }
    ret = http_reply_json(rq, MHD_HTTP_CREATED, json);
    return ret;
}

enum MHD_Result route_schedules_list(struct request *rq)
{
    durable_error err = { 0 };
    char *json = NULL;
    durable_code rc = durable_schedules_list(rq->srv->d, &json, &err);
    int64_t total = 0;

    if (rc == DURABLE_OK) {
        json_t *doc = json_loads(json, 0, NULL);
        total = (int64_t)json_array_size(doc);
        json_decref(doc);
    }
    return http_reply_list(rq, rc, json, total, &err);
}

enum MHD_Result route_schedule_get(struct request *rq)
{
    return reply_schedule(rq, rq->id, MHD_HTTP_OK);
}

static enum MHD_Result pause_to(struct request *rq, bool paused)
{
    durable_error err = { 0 };

    if (durable_schedule_pause(rq->srv->d, rq->id, paused, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    return reply_schedule(rq, rq->id, MHD_HTTP_OK);
}

enum MHD_Result route_schedule_pause(struct request *rq)
{
    return pause_to(rq, true);
}

enum MHD_Result route_schedule_resume(struct request *rq)
{
    return pause_to(rq, false);
}

enum MHD_Result route_schedule_delete(struct request *rq)
{
    durable_error err = { 0 };
    json_t *doc;

    if (durable_schedule_delete(rq->srv->d, rq->id, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    doc = json_pack("{s:s, s:b}", "id", rq->id, "deleted", 1);
    {
        char *json = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        return http_reply_json(rq, MHD_HTTP_OK, json);
    }
}
