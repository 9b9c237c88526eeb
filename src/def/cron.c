/*
 * cron.c - cron expressions, intervals and their fire times in a time zone
 * (cron.h). The calendar of a zone is ICU's (ucal_*): glibc's localtime_r
 * and mktime read the zone from the process-global TZ, which one thread
 * cannot change without racing every other; a UCalendar is an object of
 * its own, opened per call, and ICU says what a skipped or repeated wall
 * time becomes (UCAL_SKIPPED_WALL_TIME, UCAL_REPEATED_WALL_TIME).
 */
#include "util/common.h"

#include "def/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>

struct field {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] is value lo + i (NULL: no names) */
};

static const char *const month_names[] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                           "JUL", "AUG", "SEP", "OCT", "NOV", "DEC" };
static const char *const wday_names[] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT" };

static const struct field fields[5] = {
    { "minute", 0, 59, NULL },           { "hour", 0, 23, NULL },
    { "day-of-month", 1, 31, NULL },     { "month", 1, 12, month_names },
    { "day-of-week", 0, 7, wday_names },
};

static durable_code field_err(durable_error *err, int idx, size_t col, const char *fmt,
                              const char *what)
{
    char msg[160];

    snprintf(msg, sizeof msg, fmt, what);
    return err_set(err, DURABLE_EINVAL, "cron field %d (%s), column %zu: %s", idx + 1,
                   fields[idx].name, col, msg);
}

/* A number or a name of field f at *p (advanced past it). */
static bool read_value(const struct field *f, const char **p, int *out)
{
    const char *s = *p;

    if (isdigit((unsigned char)*s)) {
        long v = 0;
        int n = 0;

        while (isdigit((unsigned char)*s) && n < 4) {
            v = v * 10 + (*s++ - '0');
            n++;
        }
        if (isdigit((unsigned char)*s))
            return false;
        *out = (int)v;
        *p = s;
        return true;
    }
    if (f->names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) &&
        isalpha((unsigned char)s[2]) && !isalpha((unsigned char)s[3])) {
        int n = f->hi - f->lo + 1 - (f->lo == 0 && f->hi == 7 ? 1 : 0);

        for (int i = 0; i < n; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *out = f->lo + i;
                *p = s + 3;
                return true;
            }
        }
    }
    return false;
}

/* A field's text being parsed: its index, its text (a copy) and column. */
struct field_text {
    int idx;
    const char *buf;
    size_t col;
};

/* An item of a field's list: from a to b by step. */
struct field_item {
    int a, b, step;
};

/* One item of a field's list ("*", "a", "a-b", each with an optional
 * "/step") at *pp into *it; *pp moves past it. */
static durable_code parse_item(const struct field_text *ft, const char **pp, struct field_item *it,
                               durable_error *err)
{
    const struct field *f = &fields[ft->idx];
    const char *item = *pp, *p = *pp;
    bool ranged = true;

    it->a = f->lo;
    it->b = f->hi;
    it->step = 1;
    if (*p == '*') {
        p++;
    } else {
        if (!read_value(f, &p, &it->a))
            return field_err(err, ft->idx, ft->col + (size_t)(p - ft->buf),
                             "\"%.40s\" is not a number or a name here", item);
        it->b = it->a;
        ranged = *p == '-';
        if (ranged) {
            p++;
            if (!read_value(f, &p, &it->b))
                return field_err(err, ft->idx, ft->col + (size_t)(p - ft->buf),
                                 "a range needs an end: \"%.40s\"", item);
        }
    }
    if (*p == '/') {
        p++;
        if (!isdigit((unsigned char)*p) || !read_value(f, &p, &it->step) || it->step < 1)
            return field_err(err, ft->idx, ft->col + (size_t)(p - ft->buf),
                             "a step needs a positive number: \"%.40s\"", item);
        if (!ranged) /* "a/n": from a to the end */
            it->b = f->hi;
    }
    *pp = p;
    return DURABLE_OK;
}

/* The bounds of an item (its text at item) of a field. */
static durable_code check_item(const struct field_text *ft, const char *item,
                               const struct field_item *it, durable_error *err)
{
    const struct field *f = &fields[ft->idx];
    size_t col = ft->col + (size_t)(item - ft->buf);

    if (it->a < f->lo || it->a > f->hi || it->b < f->lo || it->b > f->hi) {
        char range[48];

        snprintf(range, sizeof range, "out of range %d-%d", f->lo, f->hi);
        return field_err(err, ft->idx, col, "%s", range);
    }
    if (it->b < it->a)
        return field_err(err, ft->idx, col, "a range must go up: \"%.40s\"", item);
    return DURABLE_OK;
}

/* One field's text (len bytes at text, starting at column col) into bits. */
static durable_code parse_field(int idx, const char *text, size_t len, size_t col, uint64_t *bits,
                                durable_error *err)
{
    char buf[CRON_TEXT_MAX];
    struct field_text ft = { idx, buf, col };
    const char *p;

    memcpy(buf, text, len);
    buf[len] = 0;
    *bits = 0;
    p = buf;
    for (;;) {
        const char *item = p;
        struct field_item it;
        durable_code rc = parse_item(&ft, &p, &it, err);

        if (rc == DURABLE_OK)
            rc = check_item(&ft, item, &it, err);
        if (rc != DURABLE_OK)
            return rc;
        for (int v = it.a; v <= it.b; v += it.step)
            *bits |= 1ULL << (idx == 4 && v == 7 ? 0 : v);
        if (*p != ',')
            break;
        p++;
    }
    if (*p != 0)
        return field_err(err, idx, col + (size_t)(p - buf), "unexpected \"%.40s\"", p);
    return DURABLE_OK;
}

static const struct {
    const char *name;
    const char *expr;
} macros[] = {
    { "@yearly", "0 0 1 1 *" }, { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
    { "@weekly", "0 0 * * 0" }, { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
    { "@hourly", "0 * * * *" },
};

/* The blank-separated fields of text into bits (*n of them, at most 5). */
static durable_code parse_fields(const char *text, uint64_t bits[5], int *n, struct cron_spec *out,
                                 durable_error *err)
{
    const char *p = text;

    for (;;) {
        size_t len;

        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return DURABLE_OK;
        len = strcspn(p, " \t");
        if (*n == 5)
            return err_set(err, DURABLE_EINVAL,
                           "cron expression has more than 5 fields (minute hour day-of-month "
                           "month day-of-week): column %zu",
                           (size_t)(p - text) + 1);
        if (parse_field(*n, p, len, (size_t)(p - text) + 1, &bits[*n], err) != DURABLE_OK)
            return DURABLE_EINVAL;
        if (*n == 2)
            out->mday_star = (*p == '*');
        if (*n == 4)
            out->wday_star = (*p == '*');
        (*n)++;
        p += len;
    }
}

/* A macro (@daily, ...) and nothing after it but blanks. */
static durable_code parse_macro(const char *text, struct cron_spec *out, durable_error *err)
{
    size_t len = strcspn(text, " \t");

    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
        if (strlen(macros[i].name) == len && strncasecmp(text, macros[i].name, len) == 0 &&
            text[len + strspn(text + len, " \t")] == 0)
            return cron_parse(macros[i].expr, out, err);
    }
    return err_set(err, DURABLE_EINVAL,
                   "cron expression \"%.*s\" is no known macro (@yearly, @monthly, @weekly, "
                   "@daily, @hourly)",
                   (int)len, text);
}

durable_code cron_parse(const char *text, struct cron_spec *out, durable_error *err)
{
    uint64_t bits[5];
    int n = 0;

    memset(out, 0, sizeof *out);
    if (!text || !*text)
        return err_set(err, DURABLE_EINVAL, "cron expression is empty");
    if (strlen(text) >= CRON_TEXT_MAX)
        return err_set(err, DURABLE_EINVAL, "cron expression is longer than %d bytes",
                       CRON_TEXT_MAX - 1);
    while (*text == ' ' || *text == '\t')
        text++;
    if (*text == '@')
        return parse_macro(text, out, err);
    if (parse_fields(text, bits, &n, out, err) != DURABLE_OK)
        return DURABLE_EINVAL;
    if (n < 5)
        return err_set(err, DURABLE_EINVAL,
                       "cron expression has %d field%s, needs 5 (minute hour day-of-month month "
                       "day-of-week)",
                       n, n == 1 ? "" : "s");
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint32_t)bits[3];
    out->wdays = (uint32_t)bits[4];
    return DURABLE_OK;
}

/* The unit at *p in ms (*p moves past it), 0 for none. */
static int64_t every_unit(const char **p)
{
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };

    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t n = strlen(units[i].name);

        if (strncmp(*p, units[i].name, n) == 0) {
            *p += n;
            return units[i].ms;
        }
    }
    return 0;
}

durable_code cron_parse_every(const char *text, int64_t *out_ms, durable_error *err)
{
    const char *p = text;
    int64_t total = 0;

    if (!text || !*text)
        return err_set(err, DURABLE_EINVAL,
                       "every: the interval is empty (e.g. \"90s\", \"1h30m\")");
    if (strlen(text) > 32)
        return err_set(err, DURABLE_EINVAL, "every: \"%.32s...\" is too long", text);
    while (*p) {
        int64_t v = 0, unit;
        int digits = 0;

        while (isdigit((unsigned char)*p) && digits < 12) {
            v = v * 10 + (*p++ - '0');
            digits++;
        }
        if (digits == 0 || isdigit((unsigned char)*p))
            return err_set(err, DURABLE_EINVAL,
                           "every: \"%s\", column %zu: a number is expected (e.g. \"90s\")", text,
                           (size_t)(p - text) + 1);
        unit = every_unit(&p);
        if (unit == 0)
            return err_set(err, DURABLE_EINVAL,
                           "every: \"%s\", column %zu: a unit is expected (ms, s, m, h, d)", text,
                           (size_t)(p - text) + 1);
        total += v * unit;
        if (total > CRON_EVERY_MAX_MS)
            break;
    }
    if (total < CRON_EVERY_MIN_MS || total > CRON_EVERY_MAX_MS)
        return err_set(err, DURABLE_EINVAL, "every: \"%s\" must be between 1s and 366d", text);
    *out_ms = total;
    return DURABLE_OK;
}

/* ---- time zones ---- */

static UCalendar *cal_open(const char *tz, durable_error *err)
{
    UChar zone[CRON_TZ_MAX + 1];
    UChar canon[CRON_TZ_MAX + 1];
    UErrorCode st = U_ZERO_ERROR;
    UBool system = 0;
    UCalendar *cal;

    if (!tz || !*tz)
        tz = "UTC";
    if (strlen(tz) > CRON_TZ_MAX)
        return err_set(err, DURABLE_EINVAL, "time zone \"%.20s...\" is too long", tz), NULL;
    for (const char *c = tz; *c; c++) {
        if (!isalnum((unsigned char)*c) && !strchr("/_+-", *c)) {
            err_set(err, DURABLE_EINVAL, "time zone \"%s\" is not an IANA name (e.g. Europe/Paris)",
                    tz);
            return NULL;
        }
    }
    u_uastrcpy(zone, tz);
    ucal_getCanonicalTimeZoneID(zone, -1, canon, CRON_TZ_MAX, &system, &st);
    if (U_FAILURE(st) || !system) {
        err_set(err, DURABLE_EINVAL,
                "time zone \"%s\" is unknown (an IANA name, e.g. Europe/Paris)", tz);
        return NULL;
    }
    cal = ucal_open(zone, -1, "en_US_POSIX", UCAL_GREGORIAN, &st);
    if (U_FAILURE(st)) {
        err_set(err, DURABLE_EINVAL, "time zone \"%s\": %s", tz, u_errorName(st));
        return NULL;
    }
    ucal_setAttribute(cal, UCAL_REPEATED_WALL_TIME, UCAL_WALLTIME_FIRST);
    ucal_setAttribute(cal, UCAL_SKIPPED_WALL_TIME, UCAL_WALLTIME_NEXT_VALID);
    ucal_setAttribute(cal, UCAL_LENIENT, 1);
    return cal;
}

durable_code cron_tz_check(const char *name, durable_error *err)
{
    UCalendar *cal = cal_open(name, err);

    if (!cal)
        return DURABLE_EINVAL;
    ucal_close(cal);
    return DURABLE_OK;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
    static const int d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* Day of the week (Sunday 0) of a civil date (Sakamoto's method). */
static int weekday(int y, int m, int d)
{
    static const int t[12] = { 0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4 };

    if (m < 3)
        y--;
    return (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
}

static bool day_matches(const struct cron_spec *s, int y, int m, int d)
{
    bool md = (s->mdays >> d) & 1, wd = (s->wdays >> weekday(y, m, d)) & 1;

    if (!((s->months >> m) & 1))
        return false;
    if (s->mday_star || s->wday_star)
        return md && wd;
    return md || wd; /* both restricted: either (cron's rule) */
}

durable_code cron_next(const struct cron_spec *spec, const char *tz, int64_t after_ms,
                       int64_t *out_ms, durable_error *err)
{
    UErrorCode st = U_ZERO_ERROR;
    UCalendar *cal = cal_open(tz, err);
    int y, mo, d, h, mi;
    int days = 0;

    if (!cal)
        return DURABLE_EINVAL;
    *out_ms = -1;
    ucal_setMillis(cal, (UDate)after_ms, &st);
    y = ucal_get(cal, UCAL_YEAR, &st);
    mo = ucal_get(cal, UCAL_MONTH, &st) + 1;
    d = ucal_get(cal, UCAL_DATE, &st);
    h = ucal_get(cal, UCAL_HOUR_OF_DAY, &st);
    mi = ucal_get(cal, UCAL_MINUTE, &st) + 1; /* strictly after: the next minute on */
    /* Local wall minutes in order; each matching one is converted to an
     * instant (the first of a repeated one, the gap's end for a skipped
     * one), until one lies after after_ms. Clocks going back make a
     * minute's instant precede after_ms: the search goes on. */
    while (U_SUCCESS(st) && days < 366 * 50 + 13) {
        if (mi > 59) {
            mi = 0;
            h++;
        }
        if (h > 23) {
            h = 0;
            mi = 0;
            d++;
            days++;
        }
        if (d > month_days(y, mo)) {
            d = 1;
            mo++;
        }
        if (mo > 12) {
            mo = 1;
            y++;
        }
        if (!day_matches(spec, y, mo, d)) {
            h = 24; /* the next day */
            continue;
        }
        if (!((spec->hours >> h) & 1)) {
            h++;
            mi = 0;
            continue;
        }
        if (!((spec->minutes >> mi) & 1)) {
            mi++;
            continue;
        }
        ucal_clear(cal);
        ucal_setDateTime(cal, y, mo - 1, d, h, mi, 0, &st);
        int64_t at = (int64_t)ucal_getMillis(cal, &st);
        if (U_SUCCESS(st) && at > after_ms) {
            *out_ms = at;
            break;
        }
        mi++;
    }
    ucal_close(cal);
    if (U_FAILURE(st))
        return err_set(err, DURABLE_EINVAL, "time zone \"%s\": %s", tz ? tz : "UTC",
                       u_errorName(st));
    return DURABLE_OK;
}

int64_t cron_every_next(int64_t anchor_ms, int64_t every_ms, int64_t after_ms)
{
    if (after_ms < anchor_ms)
        return anchor_ms;
    return anchor_ms + ((after_ms - anchor_ms) / every_ms + 1) * every_ms;
}
