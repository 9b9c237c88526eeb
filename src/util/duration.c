/*
 * duration.c - durations as people write them on a command line or in a
 * query string: a whole number and a unit, "90s", "15m", "12h", "30d"
 * ("ms" too). Pure; any thread.
 */
#include "util/common.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* The longest duration accepted: 100 years, far from overflowing ms. */
#define DURATION_MAX_MS ((int64_t)100 * 366 * 24 * 3600 * 1000)

durable_code duration_parse(const char *text, int64_t *out_ms, durable_error *err)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };
    const char *p = text;
    char *end;
    long long n;

    if (!text || !text[0])
        return err_set(err, DURABLE_EINVAL,
                       "a duration is a whole number and a unit (ms, s, m, h, d), e.g. 30d; got "
                       "nothing");
    if (!isdigit((unsigned char)p[0]))
        goto bad;
    errno = 0;
    n = strtoll(p, &end, 10);
    if (errno != 0 || end == p)
        goto bad;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (n <= 0 || n > DURATION_MAX_MS / units[i].ms)
                return err_set(err, DURABLE_EINVAL,
                               "duration \"%.40s\" is out of range: more than 0 and at most 100 "
                               "years",
                               text);
            *out_ms = (int64_t)n * units[i].ms;
            return DURABLE_OK;
        }
    }
bad:
    return err_set(err, DURABLE_EINVAL,
                   "duration \"%.40s\" is not a whole number and a unit (ms, s, m, h, d), e.g. "
                   "30d, 12h, 90s",
                   text);
}
