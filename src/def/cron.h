/*
 * cron.h - when a schedule fires: a 5-field cron expression or an interval
 * ("every"), in an IANA time zone.
 *
 * Cron: "minute hour day-of-month month day-of-week", each field `*`, a
 * number, a range `a-b`, a step `*\/n` or `a-b/n` or `a/n`, or a list of
 * those separated by commas; months JAN..DEC and days SUN..SAT by name
 * (any case), day of week 0..7 (0 and 7 are Sunday); @yearly, @annually,
 * @monthly, @weekly, @daily, @midnight, @hourly. As in every cron, when
 * both day-of-month and day-of-week are restricted (neither starts with
 * `*`), a day matches when either does.
 *
 * Time zones come from ICU's calendar (ucal_*), one UCalendar per call, so
 * nothing process-global (TZ, localtime_r) is touched. Wall times that do
 * not exist (the hour skipped when clocks go forward) fire once, at the
 * first instant after the gap; wall times that happen twice (clocks go
 * back) fire at their first occurrence only.
 *
 * Every call is thread-safe. Errors are located: the field, its column.
 */
#ifndef DURABLE_DEF_CRON_H
#define DURABLE_DEF_CRON_H

#include "util/common.h"

#include "util/util.h"

/* The longest expression, time zone name and interval text accepted. */
#define CRON_TEXT_MAX     256
#define CRON_TZ_MAX       64
/* Intervals: at least 1 second, at most 366 days. */
#define CRON_EVERY_MIN_MS 1000
#define CRON_EVERY_MAX_MS (366LL * 86400 * 1000)

struct cron_spec {
    uint64_t minutes; /* bit m: minute m (0..59) */
    uint32_t hours;   /* bit h (0..23) */
    uint32_t mdays;   /* bit d (1..31) */
    uint32_t months;  /* bit m (1..12) */
    uint32_t wdays;   /* bit d (0..6, Sunday 0) */
    bool mday_star;   /* the day-of-month field starts with `*` */
    bool wday_star;
};

/* Parses a cron expression; DURABLE_EINVAL with a located message. */
durable_code cron_parse(const char *text, struct cron_spec *out, durable_error *err);

/* Parses an interval: a positive number followed by ms, s, m, h or d, or a
 * sequence of them ("1h30m"); DURABLE_EINVAL when malformed or outside
 * CRON_EVERY_MIN_MS..CRON_EVERY_MAX_MS. */
durable_code cron_parse_every(const char *text, int64_t *out_ms, durable_error *err);

/* Whether name is a time zone ICU knows (an IANA name such as
 * "Europe/Paris", or "UTC"); DURABLE_EINVAL naming it otherwise. */
durable_code cron_tz_check(const char *name, durable_error *err);

/* The first fire time of spec in zone tz (NULL or "" for UTC) strictly
 * after after_ms (Unix ms), in Unix ms; -1 when none in the next 50 years
 * (e.g. "0 0 30 2 *"). DURABLE_EINVAL for an unknown zone. */
durable_code cron_next(const struct cron_spec *spec, const char *tz, int64_t after_ms,
                       int64_t *out_ms, durable_error *err);

/* The first tick of an interval strictly after after_ms: ticks are the
 * multiples of every_ms since anchor_ms (the schedule's creation). */
int64_t cron_every_next(int64_t anchor_ms, int64_t every_ms, int64_t after_ms);

#endif
