/*
 * actions.c - the built-in business actions on the demo orders, registered
 * once as data.
 *
 * An action is a guarded change of an order's status, applied by a backend
 * together with the completion of the step that names it (in one savepoint,
 * which is what makes an action exactly-once). store_builtin_actions is the
 * only place that knows the action names, which status each needs and which
 * it sets: definition validation takes the names from it
 * (store_builtin_action_name) and a backend applies the description the
 * transition names (store_action_find, store_action_check); the SQL that
 * reads and sets an order's status stays in the backend.
 *
 * Immutable data and pure functions: any thread.
 */
#include "util/common.h"

#include "store/store.h"

#include <string.h>

const struct store_action store_builtin_actions[] = {
    { "validate_order", "pending", "validated" },
    { "charge_payment", "validated", "charged" },
    { "ship_order", "charged", "shipped" },
    { "send_notification", NULL, NULL },
    { NULL, NULL, NULL },
};

const char *store_builtin_action_name(void *ud, size_t i)
{
    (void)ud;
    return i < DUR_ARRAY_LEN(store_builtin_actions) ? store_builtin_actions[i].name : NULL;
}

const struct store_action *store_action_find(const char *name)
{
    const struct store_action *a;

    for (a = store_builtin_actions; a->name; a++) {
        if (strcmp(a->name, name) == 0)
            return a;
    }
    return NULL;
}

durable_code store_action_check(const struct store_action *a, const char *from, const char **to,
                                durable_error *err)
{
    if (a->from && strcmp(from, a->from) != 0)
        return err_set(err, DURABLE_EACTION,
                       "action \"%s\" needs order status \"%s\", found \"%s\"", a->name, a->from,
                       from);
    *to = a->to ? a->to : from;
    return DURABLE_OK;
}
