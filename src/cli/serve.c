/*
 * serve.c - `durable serve`: open the store (resuming every unfinished
 * run), register the workflow files of a directory, and serve the HTTP API
 * until SIGTERM or SIGINT.
 *
 * SIGTERM and SIGINT are blocked before any thread starts, so every thread
 * inherits the mask and the main thread alone takes them with sigwait: no
 * handler runs in the middle of the engine. On the signal the server stops
 * accepting, ends its streams and closes its connections, then durable_close
 * commits what is queued; runs still in flight resume at the next start.
 * The first line on stdout is "durable listening on http://HOST:PORT" (with
 * the port actually bound), flushed at once: scripts and tests wait for it.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "durable.h"
#include "http/http.h"
#include "util/util.h"

#define DEF_MAX_BYTES ((size_t)1024 * 1024)

static const char serve_usage[] =
        "usage: durable serve [--listen ADDR] [--db PATH] [--workflows DIR] [--workers N]\n"
        "                     [--durability full|process] [--token T] [--session-ttl S]\n"
        "                     [--http-allow HOST[,HOST...]] [--node NAME]\n"
        "                     [--lease DURATION] [--retain-finished DURATION]\n"
        "                     [--rate-limit TYPE=N[,TYPE=N...]] [--verbose]\n"
        "\n"
        "Serves the HTTP API, the web UI and live events, and executes runs. At start-up\n"
        "it resumes every unfinished run in the database and registers the workflows of\n"
        "--workflows. SIGTERM or Ctrl-C stops it: no new requests, every transition\n"
        "already queued is committed, exit 0; unfinished runs resume at the next start.\n"
        "\n"
        "  --listen ADDR      HOST:PORT, [IPV6]:PORT, or :PORT and PORT meaning 127.0.0.1\n"
        "                     (default 127.0.0.1:8000); 0.0.0.0:PORT listens everywhere and\n"
        "                     needs --token. PORT 0 picks a free port. The first line\n"
        "                     printed is \"durable listening on http://HOST:PORT\".\n"
        "  --db LOCATION      a SQLite file (PATH or sqlite:PATH; default $DURABLE_DB,\n"
        "                     else ./durable.db) or postgres://USER@HOST:PORT/DB\n"
        "  --workflows DIR    register every *.json, *.yaml and *.yml in DIR at start-up\n"
        "                     (default ./examples when it exists); each file is reported\n"
        "                     on stderr with its warnings, and an invalid one does not\n"
        "                     stop the server\n"
        "  --workers N        HTTP polling threads (default 4); idle connections and event\n"
        "                     streams hold no thread\n"
        "  --durability MODE  full (default): every commit is fsynced and survives a power\n"
        "                     cut; process: commits are not fsynced, which is faster and\n"
        "                     survives a crash of durable but not of the machine\n"
        "  --token T          require \"Authorization: Bearer T\" on every route but /health\n"
        "                     (or set DURABLE_TOKEN). Required when ADDR is not loopback.\n"
        "                     The UI asks for it once (/ui/signin.html) and keeps a session\n"
        "                     cookie; sessions end at a restart.\n"
        "  --session-ttl S    how long a UI sign-in lasts, in seconds (default 43200: 12 h)\n"
        "  --http-allow HOSTS the only hosts http_request steps may reach, comma-separated\n"
        "                     (names or addresses as the URLs write them, no port): any\n"
        "                     other fails the step with http_forbidden, unconnected. Set\n"
        "                     it so that a definition cannot reach internal services\n"
        "                     (default: any host)\n"
        "  --node NAME        on PostgreSQL, this node's name among the servers sharing\n"
        "                     the database (default HOSTNAME:PID); a node started again\n"
        "                     under its name takes its unfinished runs back at once\n"
        "  --lease DURATION   on PostgreSQL, how long the other nodes wait for a silent\n"
        "                     node before taking its runs over: 10s (default), 2500ms\n"
        "  --retain-finished D delete finished runs (completed, failed, cancelled) with\n"
        "                     their history once they finished more than D ago: a whole\n"
        "                     number and a unit, ms, s, m, h or d (30d, 12h, 90s); or set\n"
        "                     DURABLE_RETAIN_FINISHED. Default: keep them for ever\n"
        "  --rate-limit LIMITS the steps of a type start at most N per second over every\n"
        "                     run: TYPE=N, comma-separated (http_request=10,task=0.5);\n"
        "                     a step's own rate_limit wins. Default: none\n"
        "  --verbose          one line per request on stderr\n"
        "\n"
        "Routes: GET /openapi.json describes them all; the UI is at /.\n"
        "Exit status: 0 stopped by a signal, 1 the database or the address failed,\n"
        "2 usage error (including a non-loopback address without a token).\n";

struct serve_args {
    const char *listen;
    const char *db;
    const char *workflows;
    const char *token;
    const char *http_allow;  /* NULL: any host */
    const char *rate_limits; /* --rate-limit TYPE=N[,TYPE=N...] */
    int workers;
    int session_ttl_s;
    durable_durability durability;
    const char *node;
    int64_t lease_ms;
    const char *retain; /* --retain-finished, or $DURABLE_RETAIN_FINISHED */
    int64_t retain_ms;
    bool verbose;
    char db_label[512]; /* db as shown: no password */
};

/* ---- arguments ---- */

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* HOST:PORT, [V6]:PORT, :PORT or PORT into host (empty: loopback) and port. */
static int parse_listen(const char *spec, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr(spec, ':');
    const char *port_s = spec;

    host[0] = '\0';
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(host, host_len, "%.*s", (int)(close - spec - 1), spec + 1);
        port_s = close + 2;
    } else if (colon) {
        if ((size_t)(colon - spec) >= host_len)
            return -1;
        snprintf(host, host_len, "%.*s", (int)(colon - spec), spec);
        port_s = colon + 1;
    }
    return parse_int(port_s, 0, 65535, port);
}

/* "10s", "2500ms" or "10" (seconds) into ms, from 100 ms to a day. */
static int parse_duration_ms(const char *s, int64_t *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s)
        return -1;
    if (strcmp(end, "ms") == 0)
        v /= 1000.0;
    else if (*end != '\0' && strcmp(end, "s") != 0)
        return -1;
    if (!(v >= 0.1 && v <= 86400.0))
        return -1;
    *out = (int64_t)(v * 1000.0);
    return 0;
}

/* The options of a node in a cluster; -1 when opt is none of them. */
static int parse_cluster_option(struct serve_args *a, const char *opt, const char *val)
{
    if (strcmp(opt, "--node") == 0) {
        if (val[0] == '\0' || strlen(val) >= ID_MAX) {
            fprintf(stderr, "durable serve: --node is a name of 1 to %d bytes\n", ID_MAX - 1);
            return -1;
        }
        a->node = val;
        return 0;
    }
    if (strcmp(opt, "--lease") == 0) {
        if (parse_duration_ms(val, &a->lease_ms) != 0) {
            fprintf(stderr,
                    "durable serve: --lease is a duration such as 10s or 2500ms, not \"%s\"\n",
                    val);
            return -1;
        }
        return 0;
    }
    fprintf(stderr, "durable serve: unknown option \"%s\"\n\n%s", opt, serve_usage);
    return -1;
}

static int parse_option(struct serve_args *a, const char *opt, const char *val)
{
    if (strcmp(opt, "--listen") == 0)
        a->listen = val;
    else if (strcmp(opt, "--db") == 0)
        a->db = val;
    else if (strcmp(opt, "--workflows") == 0)
        a->workflows = val;
    else if (strcmp(opt, "--token") == 0)
        a->token = val;
    else if (strcmp(opt, "--http-allow") == 0)
        a->http_allow = val;
    else if (strcmp(opt, "--rate-limit") == 0)
        a->rate_limits = val;
    else if (strcmp(opt, "--workers") == 0) {
        if (parse_int(val, 1, 64, &a->workers) != 0) {
            fprintf(stderr, "durable serve: --workers is a number from 1 to 64, not \"%s\"\n", val);
            return -1;
        }
    } else if (strcmp(opt, "--session-ttl") == 0) {
        if (parse_int(val, 1, 366 * 86400, &a->session_ttl_s) != 0) {
            fprintf(stderr, "durable serve: --session-ttl is a number of seconds, not \"%s\"\n",
                    val);
            return -1;
        }
    } else if (strcmp(opt, "--retain-finished") == 0) {
        a->retain = val;
    } else if (strcmp(opt, "--durability") == 0) {
        if (strcmp(val, "full") != 0 && strcmp(val, "process") != 0) {
            fprintf(stderr, "durable serve: --durability is \"full\" or \"process\", not \"%s\"\n",
                    val);
            return -1;
        }
        a->durability =
                strcmp(val, "full") == 0 ? DURABLE_DURABILITY_FULL : DURABLE_DURABILITY_PROCESS;
    } else {
        return parse_cluster_option(a, opt, val);
    }
    return 0;
}

/* Returns 0 to serve, 1 when --help was printed, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct serve_args *a)
{
    int i;

    memset(a, 0, sizeof(*a));
    a->listen = "127.0.0.1:8000";
    a->token = getenv("DURABLE_TOKEN"); /* NOLINT(concurrency-mt-unsafe): no thread yet */
    a->retain = getenv("DURABLE_RETAIN_FINISHED"); /* NOLINT(concurrency-mt-unsafe) */
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(serve_usage, stdout);
            return 1;
        }
        if (strcmp(arg, "--verbose") == 0 || strcmp(arg, "-v") == 0) {
            a->verbose = true;
            continue;
        }
        if (arg[0] != '-' || strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "durable serve: unexpected argument \"%s\"\n\n%s", arg, serve_usage);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "durable serve: %s needs a value\n", arg);
            return -1;
        }
        if (parse_option(a, arg, argv[++i]) != 0)
            return -1;
    }
    return 0;
}

/* ---- workflows at start-up ---- */

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);

    return n > s && strcmp(name + n - s, suffix) == 0;
}

/* Prints the validator's report (warnings only, once the file is valid),
 * one "durable serve: PATH: warning: WHERE: MESSAGE" line each. */
static void print_report(const char *path, const char *report)
{
    const char *line, *nl;

    for (line = report; line && *line; line = *nl ? nl + 1 : nl) {
        nl = strchr(line, '\n');
        if (!nl)
            nl = line + strlen(line);
        if (nl > line)
            fprintf(stderr, "durable serve: %s: %.*s\n", path, (int)(nl - line), line);
    }
}

/* Registers the file at path and prints its validation warnings. True when
 * it is registered: *text and *len then hold the definition (free). */
static bool register_file(durable *d, const char *path, char **text, size_t *len)
{
    durable_error err = { 0 };
    char *report = NULL, *wf_id = NULL;
    int version = 0;
    bool created = false;

    *text = NULL;
    if (cli_read_file(path, DEF_MAX_BYTES, text, len) != 0)
        return false;
    /* durable_validate first: its first message is the located one. */
    if (durable_validate(*text, *len, &report, &err) == DURABLE_OK) {
        err_clear(&err);
        durable_workflow_register(d, *text, *len, &wf_id, &version, &created, &err);
    }
    if (err.code != DURABLE_OK) {
        fprintf(stderr, "durable serve: %s: not registered: %s\n", path,
                err.msg[0] ? err.msg : durable_strerror(err.code));
        free(*text);
        *text = NULL;
    } else {
        fprintf(stderr, "durable serve: %s: %s (workflow %s, version %d)\n", path,
                created ? "registered" : "unchanged", wf_id, version);
        print_report(path, report);
    }
    durable_free(wf_id);
    durable_free(report);
    return *text != NULL;
}

/* Prints what only the database can tell of a registered file (a child
 * workflow nobody registered), once every file of the directory is in. */
static void print_store_warnings(durable *d, const char *path, const char *text, size_t len)
{
    durable_error err = { 0 };
    char *report = NULL;

    if (durable_workflow_warnings(d, text, len, &report, &err) == DURABLE_OK)
        print_report(path, report);
    durable_free(report);
}

static int only_definitions(const struct dirent *e)
{
    return has_suffix(e->d_name, ".json") || has_suffix(e->d_name, ".yaml") ||
           has_suffix(e->d_name, ".yml");
}

/* Registers every *.json, *.yaml and *.yml of dir, in name order, then
 * warns of child workflows that none of them nor the database has (so a
 * parent may come before its child in name order). Nothing here stops the
 * server. */
static void register_dir(durable *d, const char *dir)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, only_definitions, alphasort), i;
    char **paths, **texts, why[128];
    size_t *lens;

    if (n < 0) {
        fprintf(stderr, "durable serve: cannot read workflows from \"%s\": %s\n", dir,
                err_errno(errno, why, sizeof(why)));
        return;
    }
    paths = xcalloc((size_t)n + 1, sizeof(*paths));
    texts = xcalloc((size_t)n + 1, sizeof(*texts));
    lens = xcalloc((size_t)n + 1, sizeof(*lens));
    for (i = 0; i < n; i++) {
        paths[i] = xasprintf("%s/%s", dir, list[i]->d_name);
        register_file(d, paths[i], &texts[i], &lens[i]);
        free(list[i]);
    }
    for (i = 0; i < n; i++) {
        if (texts[i])
            print_store_warnings(d, paths[i], texts[i], lens[i]);
        free(texts[i]);
        free(paths[i]);
    }
    free(lens);
    free(texts);
    free(paths);
    free(list);
}

/* ---- serving ---- */

/* More descriptors for many event streams: the soft limit up to the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static struct http_options http_options_of(const struct serve_args *a, const char *host, int port)
{
    struct http_options ho = { .host = host,
                               .port = port,
                               .workers = a->workers,
                               .token = a->token,
                               .session_ttl_s = a->session_ttl_s,
                               .db_label = a->db_label,
                               .verbose = a->verbose };

    return ho;
}

static int serve(durable *d, const struct serve_args *a, const char *host, int port,
                 const sigset_t *stop)
{
    struct http_options ho = http_options_of(a, host, port);
    struct http_server *srv = NULL;
    durable_error err = { 0 };
    int sig = 0;

    if (http_server_start(d, &ho, &srv, &err) != DURABLE_OK) {
        fprintf(stderr, "durable serve: %s\n", err.msg);
        return err.code == DURABLE_EINVAL ? 2 : 1;
    }
    printf("durable listening on %s\n", http_server_url(srv));
    fflush(stdout);
    while (sigwait(stop, &sig) != 0)
        ;
    fprintf(stderr, "durable serve: %s: stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    http_server_stop(srv);
    return 0;
}

static const char *default_workflows(void)
{
    struct stat st;

    return stat("examples", &st) == 0 && S_ISDIR(st.st_mode) ? "examples" : NULL;
}

int cli_serve(int argc, char **argv)
{
    durable_options opts = { 0 };
    struct serve_args a;
    durable_error err = { 0 };
    durable *d = NULL;
    char host[256];
    int port = 0, ret;
    sigset_t stop;

    ret = parse_args(argc, argv, &a);
    if (ret)
        return ret > 0 ? 0 : 2;
    if (a.retain && a.retain[0] && duration_parse(a.retain, &a.retain_ms, &err) != DURABLE_OK) {
        fprintf(stderr, "durable serve: --retain-finished (or DURABLE_RETAIN_FINISHED): %s\n",
                err.msg);
        return 2;
    }
    a.db = cli_db(a.db);
    cli_db_label(a.db ? a.db : "durable.db", a.db_label, sizeof(a.db_label));
    if (parse_listen(a.listen, host, sizeof(host), &port) != 0) {
        fprintf(stderr, "durable serve: --listen is HOST:PORT, :PORT or PORT, not \"%s\"\n",
                a.listen);
        return 2;
    }
    {
        struct http_options ho = http_options_of(&a, host[0] ? host : NULL, port);
        if (http_check_listen(&ho, &err) != DURABLE_OK) {
            fprintf(stderr, "durable serve: %s\n", err.msg);
            return 2;
        }
    }
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (a.verbose)
        durable_set_log_handler(NULL, NULL, DURABLE_LOG_INFO);
    opts.db_path = a.db;
    opts.durability = a.durability;
    opts.http_allow = a.http_allow;
    opts.rate_limits = a.rate_limits;
    opts.recovery = DURABLE_RECOVER_ALL;
    opts.node_id = a.node;
    opts.lease_ms = a.lease_ms;
    opts.retain_finished_ms = a.retain_ms;
    d = durable_open(&opts, &err);
    if (!d) {
        fprintf(stderr, "durable serve: %s\n", err.msg);
        /* a bad --rate-limit is a usage error */
        return strncmp(err.msg, "rate limits:", 12) == 0 ? 2 : 1;
    }
    if (!a.workflows)
        a.workflows = default_workflows();
    if (a.workflows)
        register_dir(d, a.workflows);
    ret = serve(d, &a, host[0] ? host : NULL, port, &stop);
    durable_close(d);
    return ret;
}
