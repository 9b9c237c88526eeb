/*
 * server.c - the MHD daemon and its access handler: where a request is
 * routed, authenticated, limited and handed to its route.
 *
 * MHD calls on_access several times per request (http.h): first with
 * *con_cls NULL (request_begin decides everything the headers allow), then
 * once per chunk of body (body_take), then a last time (request_finish runs
 * the handler). on_completed frees the request whatever happened to it.
 * Every call for one connection runs on the same polling thread, so a
 * struct request needs no lock. A handler that waits for the engine
 * (a run's start) suspends its connection instead of blocking the thread
 * (http_async_suspend); the engine's callback fills the request and
 * resumes it (http_async_resume), and MHD calls the access handler again,
 * which answers (rq->on_resumed).
 */
#include "util/common.h"

#include "http/http_int.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* The limits a client meets (README, "Limits of the server"). A
 * connection's memory pool holds its request line, headers and read
 * buffer: a request whose headers do not fit is answered 431 (414 for the
 * URL), and an idle keep-alive connection costs about this much RSS (MHD
 * zeroes the pool between requests). 36 KiB, not 32: above 32 KiB MHD maps
 * the pool with mmap, which gives it back to the system when the
 * connection closes; a malloc'ed pool stays in the allocator's arenas
 * after a burst of connections. Half the connections at most may be event
 * streams, so streams can never take every connection. */
#define CONNECTION_TIMEOUT_S 30
#define CONNECTION_MEMORY    ((size_t)36 * 1024)
#define MAX_CONNECTIONS      16384u
#define RESERVED_FDS         64u /* the database, logs, epoll and pipes */

/* ---- the decisions taken on the headers ---- */

/* Is the media type of ct (parameters ignored) equal to type? */
static bool media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);

    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static DUR_PRINTF(4, 5) void set_pending(struct request *rq, unsigned status, const char *code,
                                         const char *fmt, ...)
{
    va_list ap;

    rq->pending_status = status;
    rq->pending_code = code;
    va_start(ap, fmt);
    /* The analyzer loses va_start under the format attribute (a false
     * positive); the attribute is worth more: it checks every caller. */
    vsnprintf(rq->pending_msg, sizeof(rq->pending_msg), fmt, ap); /* NOLINT */
    va_end(ap);
}

/* 415 unless the body of a POST is JSON (SPEC §6: absent, application/json
 * or what curl -d sends) or YAML. Definitions are read by content (def's
 * AUTO format: JSON when it starts with '{' or '['), so a YAML body is
 * welcome where a definition is expected; elsewhere it fails as JSON. */
static void check_content_type(struct request *rq)
{
    const char *ct =
            MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);

    rq->says_json = ct && media_is(ct, "application/json");
    if (!ct || rq->says_json || media_is(ct, "application/x-www-form-urlencoded"))
        return;
    if (media_is(ct, "application/yaml") || media_is(ct, "application/x-yaml") ||
        media_is(ct, "text/yaml"))
        return;
    set_pending(
            rq, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
            "content type \"%.60s\" is not supported: send application/json or application/yaml",
            ct);
}

/* Routing, auth and the headers' limits. Leaves the error, if any, in
 * rq->pending_status. */
static void decide(struct request *rq, uint64_t content_length, bool has_body)
{
    enum route_match m = router_match(rq, rq->method, rq->url);
    enum http_auth auth = http_authorize(rq);

    if (auth == AUTH_NONE && http_route_is_page(rq)) {
        http_signin_redirect(rq);
        set_pending(rq, MHD_HTTP_SEE_OTHER, "see_other", "sign in first");
    } else if (auth == AUTH_NONE) {
        http_header_add(rq, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"durable\"");
        set_pending(rq, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                    "missing or wrong token: send \"Authorization: Bearer TOKEN\", or sign "
                    "in at /ui/signin.html");
    } else if (auth == AUTH_CROSS_SITE) {
        set_pending(rq, MHD_HTTP_FORBIDDEN, "forbidden",
                    "cross-site request refused: a request the session cookie authorizes must "
                    "come from the UI's own pages (Sec-Fetch-Site or Origin)");
    } else if (m == MATCH_NO_PATH) {
        set_pending(rq, MHD_HTTP_NOT_FOUND, "not_found", "no route for %s %.100s", rq->method,
                    rq->url);
    } else if (m == MATCH_BAD_METHOD) {
        http_header_add(rq, MHD_HTTP_HEADER_ALLOW, "%s", rq->allow);
        set_pending(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                    "method %.16s is not allowed here; allowed: %s", rq->method, rq->allow);
    } else if (m == MATCH_BAD_ID) {
        set_pending(rq, MHD_HTTP_NOT_FOUND, "not_found",
                    "not found: ids in paths match [A-Za-z0-9_.-]{1,128}");
    } else if (content_length > HTTP_MAX_BODY) {
        set_pending(rq, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                    "request body is larger than %zu bytes", HTTP_MAX_BODY);
    } else if (has_body && strcmp(rq->method, "POST") == 0) {
        check_content_type(rq);
    }
}

static enum MHD_Result reply_pending(struct request *rq)
{
    if (rq->pending_status == MHD_HTTP_SEE_OTHER)
        return http_reply(rq, MHD_HTTP_SEE_OTHER, NULL, (void *)"", 0, false);
    return http_reply_error(rq, rq->pending_status, rq->pending_code, "%s", rq->pending_msg);
}

/* The access handler's first call. Answers an error at once when the client
 * has not sent a body it would then be reset in the middle of. */
static enum MHD_Result request_begin(struct request *rq)
{
    const char *cl =
            MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *expect =
            MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    uint64_t content_length = cl ? strtoull(cl, NULL, 10) : 0;
    bool has_body = content_length > 0 || te != NULL;

    decide(rq, content_length, has_body);
    if (!rq->pending_status)
        return MHD_YES;
    if (!has_body || (expect && strcasecmp(expect, "100-continue") == 0) ||
        content_length > HTTP_DRAIN_MAX)
        return reply_pending(rq);
    return MHD_YES; /* read and drop the body, then answer */
}

static enum MHD_Result body_take(struct request *rq, const char *data, size_t len)
{
    if (!rq->pending_status && dbuf_add(&rq->body, data, len) != DURABLE_OK) {
        set_pending(rq, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                    "request body is larger than %zu bytes", HTTP_MAX_BODY);
        rq->discarded = rq->body.len;
        dbuf_release(&rq->body);
        dbuf_init(&rq->body, HTTP_MAX_BODY);
    }
    if (!rq->pending_status)
        return MHD_YES;
    rq->discarded += len;
    /* A client that streams on and on without a length is cut off. */
    return rq->discarded > HTTP_DRAIN_MAX ? MHD_NO : MHD_YES;
}

static enum MHD_Result request_finish(struct request *rq)
{
    if (rq->pending_status)
        return reply_pending(rq);
    if (rq->on_resumed)
        return rq->on_resumed(rq);
    return http_routes[rq->route].fn(rq);
}

/* ---- suspended requests ---- */

bool http_async_suspend(struct request *rq, enum MHD_Result (*on_resumed)(struct request *rq))
{
    struct http_server *s = rq->srv;
    bool ok;

    pthread_mutex_lock(&s->async_mu);
    ok = !s->async_stopped;
    if (ok)
        s->n_async++;
    pthread_mutex_unlock(&s->async_mu);
    if (!ok)
        return false;
    rq->on_resumed = on_resumed;
    MHD_suspend_connection(rq->conn);
    return true;
}

void http_async_resume(struct request *rq)
{
    struct http_server *s = rq->srv;

    /* After this the polling thread may answer and free rq. */
    MHD_resume_connection(rq->conn);
    pthread_mutex_lock(&s->async_mu);
    if (--s->n_async == 0)
        pthread_cond_broadcast(&s->async_cond);
    pthread_mutex_unlock(&s->async_mu);
}

/* Waits until no request is suspended for the engine (they all end: the
 * engine answers every start it has queued), and lets none be suspended
 * again: a keep-alive connection may still send requests until
 * MHD_stop_daemon, and those are answered without suspending. */
static void async_drain(struct http_server *s)
{
    pthread_mutex_lock(&s->async_mu);
    s->async_stopped = true;
    while (s->n_async > 0)
        pthread_cond_wait(&s->async_cond, &s->async_mu);
    pthread_mutex_unlock(&s->async_mu);
}

/* MHD's access handler; MHD's signature, hence 8 parameters. */
static enum MHD_Result on_access(/* NOLINT(readability-function-size) */
                                 void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct request *rq = *con_cls;
    enum MHD_Result ret;

    (void)version;
    if (!rq) {
        rq = xcalloc(1, sizeof(*rq));
        rq->srv = cls;
        rq->conn = conn;
        rq->url = url;
        rq->method = method;
        rq->start_us = clock_mono_us();
        dbuf_init(&rq->body, HTTP_MAX_BODY);
        *con_cls = rq;
        return request_begin(rq);
    }
    if (*upload_data_size > 0) {
        ret = body_take(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ret;
    }
    return request_finish(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *rq = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (!rq)
        return;
    dbuf_release(&rq->body);
    free(rq);
    *con_cls = NULL;
}

/* MHD's messages: a client that went away mid-response (routine for event
 * streams) or that sent malformed HTTP (MHD answered it) is info, shown
 * with --verbose; anything else is a warning. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (strncmp(msg, "Failed to send", 14) == 0 || strstr(msg, "onnection reset") ||
        strstr(msg, "no longer available") || strncmp(msg, "Error processing request", 24) == 0)
        log_info("http: %s", msg);
    else
        log_warn("http: %s", msg);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX in the path and query arguments in place, like MHD's own
 * decoder, except %00: a decoded NUL would cut "/runs/%00x" to "/runs/",
 * so it stays "%00" and fails the id and parameter checks. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *r = s, *w = s;

    (void)cls;
    (void)conn;
    while (*r) {
        int hi = r[0] == '%' ? hex_value(r[1]) : -1;
        int lo = hi >= 0 ? hex_value(r[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- the listening address ---- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* Resolves host:port into *out. Refuses a non-loopback address without a
 * token (SPEC §9). */
static durable_code resolve(const struct http_options *o, struct sockaddr_storage *out,
                            socklen_t *out_len, durable_error *err)
{
    struct addrinfo hints, *res = NULL;
    const char *host = o->host && *o->host ? o->host : "127.0.0.1";
    char port[16];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", o->port);
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return err_set(err, DURABLE_EINVAL, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *out_len = res->ai_addrlen;
    freeaddrinfo(res);
    if (!is_loopback((struct sockaddr *)out) && !(o->token && *o->token)) {
        return err_set(
                err, DURABLE_EINVAL,
                "refusing to listen on \"%s\" without a token: anyone who can reach it could "
                "start and cancel runs; pass --token T (or set DURABLE_TOKEN), or listen on "
                "127.0.0.1",
                host);
    }
    return DURABLE_OK;
}

durable_code http_check_listen(const struct http_options *opts, durable_error *err)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;

    return resolve(opts, &ss, &len, err);
}

/* Fills s->url from the bound address. */
static void set_url(struct http_server *s, const struct sockaddr_storage *ss, socklen_t len)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET6_ADDRSTRLEN + 2] = "127.0.0.1";

    getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
    if (ss->ss_family == AF_INET6)
        snprintf(s->url, sizeof(s->url), "http://[%s]:%u", host, info ? info->port : 0);
    else
        snprintf(s->url, sizeof(s->url), "http://%s:%u", host, info ? info->port : 0);
}

/* Connections allowed: bounded by the file descriptors the process has.
 * The soft RLIMIT_NOFILE (often 1,024) is first raised towards the hard
 * one, as far as MAX_CONNECTIONS needs. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    rlim_t want = MAX_CONNECTIONS + RESERVED_FDS;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return MAX_CONNECTIONS;
    if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 128)
        return 32;
    return rl.rlim_cur - RESERVED_FDS < MAX_CONNECTIONS ? (unsigned)(rl.rlim_cur - RESERVED_FDS)
                                                        : MAX_CONNECTIONS;
}

static struct MHD_Daemon *daemon_start(struct http_server *s, const struct sockaddr_storage *ss,
                                       unsigned workers, unsigned max_conns)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;

    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    return MHD_start_daemon(
            flags, 0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
            (void *)NULL, /* first: MHD wants it so */
            MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)ss, MHD_OPTION_THREAD_POOL_SIZE, workers,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
            MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)s,
            MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, (void *)NULL, MHD_OPTION_END);
}

static void server_free(struct http_server *s)
{
    pthread_cond_destroy(&s->async_cond);
    pthread_mutex_destroy(&s->async_mu);
    sse_hub_free(s->hub);
    http_metrics_release(&s->metrics);
    http_sessions_release(&s->sessions);
    free(s->token);
    free(s->db_label);
    free(s);
}

durable_code http_server_start(durable *d, const struct http_options *opts,
                               struct http_server **out, durable_error *err)
{
    struct http_server *s = NULL;
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    unsigned workers = opts->workers > 0 ? (unsigned)opts->workers : 4;
    unsigned max_conns;
    durable_code rc;

    memset(&ss, 0, sizeof(ss));
    if (workers > 64)
        return err_set(err, DURABLE_EINVAL, "--workers must be from 1 to 64, not %u", workers);
    rc = resolve(opts, &ss, &ss_len, err);
    if (rc != DURABLE_OK)
        return rc;
    s = xcalloc(1, sizeof(*s));
    s->d = d;
    s->token = opts->token && *opts->token ? xstrdup(opts->token) : NULL;
    http_sessions_init(&s->sessions, opts->session_ttl_s, s->token != NULL);
    s->db_label = xstrdup(opts->db_label ? opts->db_label : "");
    s->verbose = opts->verbose;
    http_metrics_init(&s->metrics);
    pthread_mutex_init(&s->async_mu, NULL);
    pthread_cond_init(&s->async_cond, NULL);
    s->hub = sse_hub_new(d);
    max_conns = connection_limit();
    sse_hub_set_max(s->hub, max_conns / 2);
    s->daemon = daemon_start(s, &ss, workers, max_conns);
    if (!s->daemon) {
        sse_hub_shutdown(s->hub);
        server_free(s);
        return err_set(err, DURABLE_EIO, "could not listen on %s port %d (is it in use?)",
                       opts->host ? opts->host : "127.0.0.1", opts->port);
    }
    set_url(s, &ss, ss_len);
    *out = s;
    return DURABLE_OK;
}

const char *http_server_url(const struct http_server *s)
{
    return s->url;
}

/* The daemon keeps accepting until MHD_stop_daemon: a connection arriving
 * meanwhile is answered (a stream refused, a start not suspended). Not
 * MHD_quiesce_daemon: with a thread pool under epoll it races each worker's
 * own removal of the listen socket from its epoll set, and libmicrohttpd
 * aborts the process when both remove it. */
void http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    sse_hub_shutdown(s->hub);
    async_drain(s);
    MHD_stop_daemon(s->daemon);
    server_free(s);
}
