/*
 * view.c - the steps table of a run, as `durable run` redraws it in place on
 * a terminal and `durable show` prints it once: the run's name, id, status
 * and age, then one line per step (a mark, its id, status, attempt and the
 * current attempt's duration). Built from the run's JSON (durable_run_get,
 * GET /runs/{id}) and updated by its owner. One thread.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

int64_t cli_iso_to_ms(const char *s)
{
    struct tm tm;
    const char *rest;
    long ms = 0;

    if (!s)
        return 0;
    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return 0;
    if (*rest == '.')
        ms = strtol(rest + 1, NULL, 10);
    return (int64_t)timegm(&tm) * 1000 + ms;
}

void cli_view_load(struct view *v, const char *run_json)
{
    json_t *run = json_loads(run_json, 0, NULL);
    json_t *steps = json_object_get(run, "steps");
    size_t i;

    snprintf(v->name, sizeof(v->name), "%s",
             json_string_value(json_object_get(run, "workflow_name")) ?: "");
    snprintf(v->status, sizeof(v->status), "%s",
             json_string_value(json_object_get(run, "status")) ?: "");
    v->started_ms = cli_iso_to_ms(json_string_value(json_object_get(run, "created_at")));
    v->ended_ms = cli_iso_to_ms(json_string_value(json_object_get(run, "completed_at")));
    if (!v->run_id[0])
        snprintf(v->run_id, sizeof(v->run_id), "%s",
                 json_string_value(json_object_get(run, "id")) ?: "");
    v->n_steps = json_array_size(steps);
    v->steps = xcalloc(v->n_steps ? v->n_steps : 1, sizeof(*v->steps));
    for (i = 0; i < v->n_steps; i++) {
        json_t *st = json_array_get(steps, i);
        struct step_view *sv = &v->steps[i];
        sv->id = xstrdup(json_string_value(json_object_get(st, "step_id")) ?: "?");
        snprintf(sv->status, sizeof(sv->status), "%s",
                 json_string_value(json_object_get(st, "status")) ?: "pending");
        sv->attempt = (int)json_integer_value(json_object_get(st, "attempt"));
        sv->max_attempts = (int)json_integer_value(json_object_get(st, "max_attempts"));
        sv->started_ms = cli_iso_to_ms(json_string_value(json_object_get(st, "started_at")));
        sv->ended_ms = cli_iso_to_ms(json_string_value(json_object_get(st, "completed_at")));
    }
    json_decref(run);
}

void cli_view_release(struct view *v)
{
    size_t i;

    for (i = 0; i < v->n_steps; i++)
        free(v->steps[i].id);
    free(v->steps);
}

struct step_view *cli_view_step(struct view *v, const char *id)
{
    size_t i;

    for (i = 0; id && i < v->n_steps; i++) {
        if (strcmp(v->steps[i].id, id) == 0)
            return &v->steps[i];
    }
    return NULL;
}

/* A mark for status, coloured on a terminal. */
static const char *status_icon(const char *status, bool tty)
{
    static const struct {
        const char *status, *colour, *plain;
    } icons[] = {
        { "completed", "\033[32m✓\033[0m", "✓" }, { "running", "\033[36m●\033[0m", "●" },
        { "retrying", "\033[33m↻\033[0m", "↻" },  { "waiting", "\033[33m↻\033[0m", "↻" },
        { "failed", "\033[31m✗\033[0m", "✗" },    { "skipped", "\033[90m–\033[0m", "–" },
        { "cancelled", "\033[90m–\033[0m", "–" },
    };

    for (size_t i = 0; i < DUR_ARRAY_LEN(icons); i++) {
        if (strcmp(status, icons[i].status) == 0)
            return tty ? icons[i].colour : icons[i].plain;
    }
    return tty ? "\033[90m·\033[0m" : "·";
}

void cli_view_draw(struct view *v)
{
    int64_t now = v->ended_ms ? v->ended_ms : clock_wall_ms();
    const char *clear = v->tty ? "\033[K" : "";
    size_t i;

    if (v->tty && v->lines_drawn)
        printf("\033[%dA", v->lines_drawn);
    printf(v->tty ? "%s\033[1m%s\033[0m  %s  %s  %.1fs\n" : "%s%s  %s  %s  %.1fs\n", clear, v->name,
           v->run_id, v->status, (double)(now - v->started_ms) / 1000.0);
    for (i = 0; i < v->n_steps; i++) {
        struct step_view *sv = &v->steps[i];
        printf("%s  %s %-24s %-10s", clear, status_icon(sv->status, v->tty), sv->id, sv->status);
        if (sv->attempt > 0)
            printf(" attempt %d/%d", sv->attempt, sv->max_attempts);
        if (sv->started_ms)
            printf("  %.1fs",
                   (double)((sv->ended_ms ? sv->ended_ms : now) - sv->started_ms) / 1000.0);
        putchar('\n');
    }
    v->lines_drawn = (int)v->n_steps + 1;
    fflush(stdout);
}
