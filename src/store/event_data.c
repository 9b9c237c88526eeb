/*
 * event_data.c - the data JSON of every event a transition writes, one
 * function per event type, for every backend alike: a backend writes rows
 * and appends the text it is given here.
 *
 * The writer's hot path (step_started for every attempt, step_completed,
 * ...): texts are concatenated into a dbuf, never built or parsed with
 * jansson. JSON text a transition carries (an input, an output, wait data,
 * recovered steps) is valid by contract (the engine encoded it) and is
 * copied as it is. Member order is the one events have always shown.
 *
 * Any thread; every function returns an owned NUL-terminated text.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"

/* A time as a JSON string in RFC 3339. */
static void add_time(struct dbuf *b, int64_t ms)
{
    char t[32];

    clock_format_rfc3339(ms, t);
    dbuf_addf(b, "\"%s\"", t);
}

static char *done(struct dbuf *b)
{
    return dbuf_detach(b, NULL);
}

char *store_event_data_run_created(const char *workflow_id, const char *input_json,
                                   const char *order_id)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{\"workflow_id\":");
    dbuf_add_json_string(&b, workflow_id);
    dbuf_adds(&b, ",\"input\":");
    dbuf_adds(&b, input_json ? input_json : "null");
    dbuf_adds(&b, ",\"order_id\":");
    dbuf_add_json_string(&b, order_id);
    dbuf_adds(&b, "}");
    return done(&b);
}

char *store_event_data_step_started(int attempt, const char *run_id, const char *step_id)
{
    struct dbuf b;
    char key[2 * ID_MAX + 64];
    char *long_key = NULL;
    int n = snprintf(key, sizeof(key), "%s/%s", run_id, step_id);

    if (n < 0 || (size_t)n >= sizeof(key)) /* a step id longer than most */
        long_key = xasprintf("%s/%s", run_id, step_id);
    dbuf_init(&b, 0);
    dbuf_addf(&b, "{\"attempt\":%d,\"idempotency_key\":", attempt);
    dbuf_add_json_string(&b, long_key ? long_key : key);
    dbuf_adds(&b, "}");
    free(long_key);
    return done(&b);
}

char *store_event_data_step_completed(int attempt, const char *output_json)
{
    return xasprintf("{\"attempt\":%d,\"output\":%s}", attempt, output_json ? output_json : "null");
}

char *store_event_data_step_copied(int attempt, const char *output_json, const char *from_run)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{");
    if (output_json) {
        dbuf_addf(&b, "\"attempt\":%d,\"output\":", attempt);
        dbuf_adds(&b, output_json);
        dbuf_adds(&b, ",");
    }
    dbuf_adds(&b, "\"copied_from\":");
    dbuf_add_json_string(&b, from_run);
    dbuf_adds(&b, "}");
    return done(&b);
}

char *store_event_data_action_applied(const char *action, const char *order_id, const char *from,
                                      const char *to)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{\"action\":");
    dbuf_add_json_string(&b, action);
    if (order_id) { /* a built-in's, on an order; a registered action's: {action} */
        dbuf_adds(&b, ",\"order_id\":");
        dbuf_add_json_string(&b, order_id);
        dbuf_adds(&b, ",\"from\":");
        dbuf_add_json_string(&b, from);
        dbuf_adds(&b, ",\"to\":");
        dbuf_add_json_string(&b, to);
    }
    dbuf_adds(&b, "}");
    return done(&b);
}

char *store_event_data_step_failed(int attempt, const char *error, const char *code, bool is_final)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_addf(&b, "{\"attempt\":%d,\"error\":", attempt);
    dbuf_add_json_string(&b, error);
    dbuf_adds(&b, ",\"code\":");
    dbuf_add_json_string(&b, code);
    dbuf_adds(&b, is_final ? ",\"final\":true}" : ",\"final\":false}");
    return done(&b);
}

char *store_event_data_retry_scheduled(int next_attempt, int64_t at_ms, int64_t wake_at_ms)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_addf(&b, "{\"attempt\":%d,\"delay_ms\":%lld,\"wake_at\":", next_attempt,
              (long long)(wake_at_ms - at_ms));
    add_time(&b, wake_at_ms);
    dbuf_adds(&b, "}");
    return done(&b);
}

durable_code store_event_data_step_waiting(const char *wait_json, int attempt, int64_t wake_at_ms,
                                           char **out, durable_error *err)
{
    const char *w = wait_json ? wait_json : "{}";
    size_t end = strlen(w);
    size_t start = strspn(w, " \t\r\n");
    struct dbuf b;

    while (end > start && strchr(" \t\r\n", w[end - 1]))
        end--;
    /* Only the shape is checked: the engine encoded the object. */
    if (end - start < 2 || w[start] != '{' || w[end - 1] != '}')
        return err_set(err, DURABLE_EINVAL, "wait data is not a JSON object");
    dbuf_init(&b, 0);
    dbuf_add(&b, w + start, end - 1 - start); /* without its '}' */
    if (strspn(w + start + 1, " \t\r\n") < end - start - 2)
        dbuf_adds(&b, ","); /* the object has members */
    dbuf_addf(&b, "\"attempt\":%d", attempt);
    if (wake_at_ms > 0) {
        dbuf_adds(&b, ",\"wake_at\":");
        add_time(&b, wake_at_ms);
    }
    dbuf_adds(&b, "}");
    *out = done(&b);
    return DURABLE_OK;
}

char *store_event_data_run_finished(enum run_status st, const char *output_json, const char *error)
{
    struct dbuf b;

    if (st == RUN_COMPLETED)
        return xasprintf("{\"output\":%s}", output_json ? output_json : "null");
    if (st != RUN_FAILED)
        return xstrdup("{}");
    dbuf_init(&b, 0);
    dbuf_adds(&b, "{\"error\":");
    dbuf_add_json_string(&b, error);
    dbuf_adds(&b, "}");
    return done(&b);
}

char *store_event_data_recovered(const char *steps_json)
{
    return xasprintf("{\"steps\":%s}", steps_json ? steps_json : "[]");
}

char *store_event_data_run_retried(const char *const *step_ids, size_t n)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{\"steps\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            dbuf_adds(&b, ",");
        dbuf_add_json_string(&b, step_ids[i]);
    }
    dbuf_adds(&b, "]}");
    return done(&b);
}

char *store_event_data_signal_received(const char *signal_id, const char *name,
                                       const char *payload_json)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{\"signal_id\":");
    dbuf_add_json_string(&b, signal_id);
    dbuf_adds(&b, ",\"name\":");
    dbuf_add_json_string(&b, name);
    dbuf_adds(&b, ",\"payload\":");
    dbuf_adds(&b, payload_json ? payload_json : "null");
    dbuf_adds(&b, "}");
    return done(&b);
}
