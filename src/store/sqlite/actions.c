/*
 * actions.c - the built-in business actions on the demo orders.
 *
 * An action is a guarded change of an order's status, applied by
 * store_apply together with the completion of the step that names it (see
 * apply.c: both sit in one savepoint, which is what makes an action
 * exactly-once). The table below is the only place that knows which status
 * each action needs and which it sets; def.h's def_builtin_actions lists the
 * same names for validation, and the store's unit test checks both agree.
 *
 * Writer thread only.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

struct action_def {
    const char *name;
    const char *from; /* the status the order must have, or NULL for any */
    const char *to;   /* the status it gets, or NULL to leave it */
};

static const struct action_def actions[] = {
    { "validate_order", "pending", "validated" },
    { "charge_payment", "validated", "charged" },
    { "ship_order", "charged", "shipped" },
    { "send_notification", NULL, NULL },
};

const char *const store_builtin_actions[] = {
    "validate_order", "charge_payment", "ship_order", "send_notification", NULL,
};

static const struct action_def *find_action(const char *name)
{
    size_t i;

    for (i = 0; i < DUR_ARRAY_LEN(actions); i++) {
        if (strcmp(actions[i].name, name) == 0)
            return &actions[i];
    }
    return NULL;
}

/* The order's current status, owned. DURABLE_EACTION if there is no order. */
static durable_code order_status(struct sqlite_store *s, const char *order_id, char **out,
                                 durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&s->w, ST_ORDER_STATUS, &st, err, "s", order_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_EACTION, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK) {
        *out = col_strdup(st, 0);
        if (!*out)
            *out = xstrdup("");
    }
    stmt_release(st);
    return rc;
}

durable_code store_action_apply(struct sqlite_store *s, const struct transition *t,
                                const char *order_id, struct store_events *events,
                                durable_error *err)
{
    const struct action_def *a = find_action(t->action);
    char *from = NULL;
    const char *to = NULL;
    durable_code rc;

    if (!a)
        return err_set(err, DURABLE_EACTION, "unknown action \"%s\"", t->action);
    if (!order_id)
        return DURABLE_OK; /* a run without an order: nothing to act on */
    rc = order_status(s, order_id, &from, err);
    if (rc == DURABLE_OK && a->from && strcmp(from, a->from) != 0) {
        rc = err_set(err, DURABLE_EACTION, "action \"%s\" needs order status \"%s\", found \"%s\"",
                     a->name, a->from, from);
    }
    if (rc == DURABLE_OK) {
        to = a->to ? a->to : from;
        rc = stmt_exec(&s->w, ST_ORDER_SET_STATUS, err, "ssI", order_id, to, t->at_ms);
    }
    if (rc == DURABLE_OK) {
        json_t *data = json_pack("{s:s, s:s, s:s, s:s}", "action", a->name, "order_id", order_id,
                                 "from", from, "to", to);
        struct event_key k = { t->run_id, t->step_id, t->at_ms };
        rc = store_event_append(s, events, &k, "action_applied", data, err);
    }
    free(from);
    return rc;
}
