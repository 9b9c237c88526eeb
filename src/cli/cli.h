/*
 * cli.h - the `durable` command line: one function per command.
 *
 * Each command takes the arguments after its name (argv[0] is the command
 * name) and returns the process exit code: 0 success, 1 failure of the work
 * (invalid file, failed run), 2 usage errors. Commands use only the public
 * API (durable.h), the util base layer and, for `serve`, the HTTP layer
 * (http/http.h).
 */
#ifndef DURABLE_CLI_CLI_H
#define DURABLE_CLI_CLI_H

#include "util/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

int cli_run(int argc, char **argv);
int cli_validate(int argc, char **argv);
/* `durable approve|reject` (approve.c): argv[0] says which. */
int cli_approve(int argc, char **argv);
/* `durable runs|show|cancel|retry|pause|resume|restart|logs|signal` (ops.c):
 * argv[0] says which. */
int cli_ops(int argc, char **argv);
/* `durable schedule add|list|pause|resume|rm` (schedule.c). */
int cli_schedule(int argc, char **argv);
/* `durable serve` (serve.c): returns 0 after SIGTERM/SIGINT. */
int cli_serve(int argc, char **argv);

/* ---- main.c: the database location ---- */

/* The --db given, else $DURABLE_DB when set and not blank, else NULL (the
 * library's default, ./durable.db). */
const char *cli_db(const char *flag);
/* Whether location names a local file (PATH or sqlite:PATH) rather than a
 * server (postgres://, postgresql://, postgresql:key=value). */
bool cli_db_is_file(const char *location);
/* location to show (logs, the UI): a password in it replaced by "***". */
void cli_db_label(const char *location, char *out, size_t n);

/* ---- view.c: the steps table of a run ---- */

struct step_view {
    char *id;
    char status[16];
    int attempt;
    int max_attempts;
    int64_t started_ms; /* wall ms of the current attempt's start, 0 if none */
    int64_t ended_ms;
};

struct view {
    bool tty;
    int lines_drawn;
    char run_id[ID_MAX];
    char name[128];
    char status[16];
    int64_t started_ms;
    int64_t ended_ms; /* the run's completed_at, 0 while it runs */
    struct step_view *steps;
    size_t n_steps;
};

/* RFC 3339 text (NULL gives 0) as Unix ms. */
int64_t cli_iso_to_ms(const char *s);
/* Fills v (zeroed, run_id and tty set by the caller) from the run's JSON. */
void cli_view_load(struct view *v, const char *run_json);
void cli_view_release(struct view *v);
/* The step of id, or NULL. */
struct step_view *cli_view_step(struct view *v, const char *id);
/* Prints the table; on a terminal over the one drawn before, coloured. */
void cli_view_draw(struct view *v);

/* ---- client.c: requests to a running server ---- */

struct cli_server {
    const char *cmd;   /* the command, for messages ("approve") */
    const char *url;   /* the server's base URL */
    const char *token; /* bearer token, or NULL */
};

/* Sends METHOD url+path (path escaped already, from "/") with body (JSON
 * text, or NULL for none). Returns 0 on a 2xx answer, with *out_body
 * (caller frees; out_body may be NULL); otherwise prints why (server
 * unreachable, or its status and error message) and returns 1. */
int cli_http_call(const struct cli_server *srv, const char *method, const char *path,
                  const char *body, char **out_body);
/* s percent-encoded for a URL path segment or query value (caller frees). */
char *cli_url_escape(const char *s);

/* Reads a whole file of at most max_len bytes. OUT: *out (caller frees),
 * *out_len. Returns 0, or prints "durable: cannot read FILE: why" and returns -1. */
int cli_read_file(const char *path, size_t max_len, char **out, size_t *out_len);

#endif
