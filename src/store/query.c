/*
 * query.c - the filters of a list of runs beyond status and workflow (time
 * ranges, a field of the input), their checks, and the read of every run a
 * filter matches (store_runs_match, for bulk operations).
 */
#include "util/common.h"

#include "store/store.h"

#include <string.h>

#include <jansson.h>

bool store_run_query_extended(const struct store_run_query *q)
{
    return q->created_after_ms || q->created_before_ms || q->finished_after_ms ||
           q->finished_before_ms || q->input_field;
}

durable_code store_input_field_check(const char *field, durable_error *err)
{
    size_t len = 0;
    int depth = 1;

    if (!field || !field[0])
        return err_set(err, DURABLE_EINVAL, "an input filter needs a field name");
    for (const char *p = field;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.' || c == '\0') {
            if (len == 0)
                return err_set(err, DURABLE_EINVAL,
                               "input field \"%.80s\" has an empty name between dots", field);
            if (c == '\0')
                break;
            if (++depth > STORE_INPUT_DEPTH)
                return err_set(err, DURABLE_EINVAL, "input field \"%.80s\" is deeper than %d names",
                               field, STORE_INPUT_DEPTH);
            len = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return err_set(err, DURABLE_EINVAL,
                           "input field \"%.80s\": names are [A-Za-z0-9_-] joined by '.'", field);
        if (++len > 64)
            return err_set(err, DURABLE_EINVAL, "input field \"%.80s\": a name is over 64 bytes",
                           field);
    }
    return DURABLE_OK;
}

durable_code store_input_value_check(const char *value, durable_error *err)
{
    json_t *j;
    bool ok;

    if (!value)
        return err_set(err, DURABLE_EINVAL, "an input filter needs a value");
    if (strlen(value) > 1024)
        return err_set(err, DURABLE_EINVAL, "an input filter's value is over 1024 bytes");
    j = json_loads(value, JSON_DECODE_ANY, NULL);
    ok = j && !json_is_object(j) && !json_is_array(j);
    json_decref(j);
    if (!ok)
        return err_set(err, DURABLE_EINVAL,
                       "an input filter's value must be a JSON string, number, true, false "
                       "or null");
    return DURABLE_OK;
}

/* Checks a query's filters (every list and match goes through here). */
static durable_code query_check(const struct store_run_query *q, durable_error *err)
{
    enum run_status st;
    durable_code rc = DURABLE_OK;

    if (q->status && !run_status_parse(q->status, &st))
        return err_set(err, DURABLE_EINVAL, "unknown run status \"%s\"", q->status);
    if (q->input_field) {
        rc = store_input_field_check(q->input_field, err);
        if (rc == DURABLE_OK)
            rc = store_input_value_check(q->input_value, err);
    }
    return rc;
}

durable_code store_runs_match(struct store *s, const struct store_run_query *q, int max,
                              const struct store_row_fns *fn, int64_t *out_total,
                              durable_error *err)
{
    struct store_run_query cq = *q;
    durable_code rc = query_check(q, err);

    if (rc != DURABLE_OK)
        return rc;
    cq.page.limit = max > 0 ? max : 1;
    cq.page.offset = 0;
    return s->ops->runs_page(s, &cq, fn, out_total, err);
}

durable_code store_run_query_check(const struct store_run_query *q, durable_error *err)
{
    return query_check(q, err);
}
