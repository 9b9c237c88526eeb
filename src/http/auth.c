/*
 * auth.c - who may call the server when it has a token: the bearer token,
 * the UI's sign-in sessions (a cookie), the cross-site check on requests a
 * cookie authorizes, and the /signin and /signout routes.
 *
 * Without a token (loopback only) everything is allowed. With one:
 *
 *   - "Authorization: Bearer T" authorizes any request; when the header is
 *     there it alone decides (a wrong token is 401 whatever the cookie).
 *   - POST /signin {"token": T} answers 204 with a session cookie
 *     (durable_session: HttpOnly, SameSite=Strict, Path=/, Max-Age the
 *     session's life; Secure when the request says it came over TLS through
 *     a proxy, X-Forwarded-Proto: https, since the server itself speaks plain
 *     HTTP) and a marker cookie (durable_signed_in=1, readable by the pages,
 *     which then offer "Sign out"). The cookie's value is a random 256-bit
 *     session id (getrandom), never the token: the table of sessions below
 *     maps it to its expiry. Sessions live in memory and end at a restart.
 *   - A request with a live session's cookie is authorized like a bearer
 *     token, except that a POST must show it comes from the UI's own pages:
 *     Sec-Fetch-Site "same-origin" when the browser sends it, otherwise an
 *     Origin whose host is the request's Host; neither is 403 (a cookie is
 *     sent by the browser whoever made the page, SameSite=Strict aside).
 *     GETs, and so EventSource streams, need no more than the cookie.
 *   - Unauthorized: an HTML page (/, /ui/NAME.html) is a 303 to
 *     /ui/signin.html?next=PATH; any other route a 401 JSON error. The
 *     UI's other files (scripts, styles, the icon) and the sign-in page are
 *     public: they are the same for everyone.
 *
 * Comparisons of secrets (the token, session ids) take a time that does not
 * depend on where they differ, and a lookup compares every slot.
 *
 * Threads: any polling thread. The table is guarded by sessions.mu, a leaf.
 */
#include "util/common.h"

#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define SESSION_COOKIE "durable_session"
#define SIGNED_IN      "durable_signed_in"
#define SESSION_HEX    ((size_t)HTTP_SESSION_BYTES * 2)
#define SIGNIN_PAGE    "/ui/signin.html"
#define DEFAULT_TTL_S  ((int64_t)12 * 3600)
#define US_PER_S       1000000

/* ---- the table of sessions ---- */

void http_sessions_init(struct http_sessions *t, int64_t ttl_s, bool enabled)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->ttl_s = ttl_s > 0 ? ttl_s : DEFAULT_TTL_S;
    if (enabled)
        t->slots = xcalloc(HTTP_SESSION_MAX, sizeof(*t->slots));
}

void http_sessions_release(struct http_sessions *t)
{
    free(t->slots);
    pthread_mutex_destroy(&t->mu);
}

/* Constant-time comparison: the time depends on want's length only. */
static bool secret_equal(const char *given, const char *want)
{
    size_t gl = strlen(given), wl = strlen(want), i;
    unsigned char diff = gl != wl;

    for (i = 0; i < wl; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? given[i] : 0);
    return diff == 0;
}

/* A new session's id into id (SESSION_HEX chars and a NUL), added to the
 * table (taking a free or expired slot, else the one ending first). */
static bool session_new(struct http_sessions *t, char id[SESSION_HEX + 1])
{
    unsigned char raw[HTTP_SESSION_BYTES];
    int64_t now = clock_mono_us();
    size_t i, pick = 0;

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return false;
    for (i = 0; i < sizeof(raw); i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    pthread_mutex_lock(&t->mu);
    for (i = 0; i < HTTP_SESSION_MAX; i++) {
        if (t->slots[i].expires_us <= now) {
            pick = i;
            break;
        }
        if (t->slots[i].expires_us < t->slots[pick].expires_us)
            pick = i;
    }
    memcpy(t->slots[pick].id, id, SESSION_HEX + 1);
    t->slots[pick].expires_us = now + t->ttl_s * US_PER_S;
    pthread_mutex_unlock(&t->mu);
    return true;
}

/* Is id a live session? With end, the session ends too. Every slot is
 * compared, so the time does not tell how close a guess was. */
static bool session_find(struct http_sessions *t, const char *id, bool end)
{
    int64_t now = clock_mono_us();
    bool found = false;
    size_t i;

    if (!t->slots || strlen(id) != SESSION_HEX)
        return false;
    pthread_mutex_lock(&t->mu);
    for (i = 0; i < HTTP_SESSION_MAX; i++) {
        bool live = t->slots[i].expires_us > now;
        bool same = secret_equal(id, t->slots[i].id);
        if (live && same && end)
            t->slots[i].expires_us = 0;
        found |= live && same;
    }
    pthread_mutex_unlock(&t->mu);
    return found;
}

/* ---- what a request carries ---- */

static const char *header(struct request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

/* Does the request show it comes from a page of this server? Sec-Fetch-Site
 * when present, else Origin against Host; with neither, evidence_needed
 * decides (a non-browser client sends neither). */
static bool same_origin(struct request *rq, bool evidence_needed)
{
    const char *site = header(rq, "Sec-Fetch-Site");
    const char *origin = header(rq, MHD_HTTP_HEADER_ORIGIN);
    const char *host = header(rq, MHD_HTTP_HEADER_HOST);
    const char *sep;

    if (site)
        return strcmp(site, "same-origin") == 0;
    if (!origin)
        return !evidence_needed;
    sep = strstr(origin, "://");
    return sep && host && strcasecmp(sep + 3, host) == 0;
}

/* Is the route's file public: the UI's files but its pages, the sign-in
 * page, the icon? */
static bool public_file(const struct request *rq)
{
    const char *rest = rq->rest;
    size_t n;

    if (http_routes[rq->route].fn == route_favicon)
        return true;
    if (http_routes[rq->route].fn != route_ui_file || !rest || !*rest)
        return false;
    n = strlen(rest);
    return strcmp(rest, "signin.html") == 0 || n < 5 || strcmp(rest + n - 5, ".html") != 0;
}

static bool safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

enum http_auth http_authorize(struct request *rq)
{
    struct http_server *s = rq->srv;
    const char *h, *cookie;

    if (!s->token)
        return AUTH_OK;
    if (rq->route >= 0 && ((http_routes[rq->route].flags & ROUTE_PUBLIC) || public_file(rq)))
        return AUTH_OK;
    h = header(rq, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h) {
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return AUTH_NONE;
        h += 7;
        while (*h == ' ')
            h++;
        return secret_equal(h, s->token) ? AUTH_OK : AUTH_NONE;
    }
    cookie = MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND, SESSION_COOKIE);
    if (!cookie || !session_find(&s->sessions, cookie, false))
        return AUTH_NONE;
    if (!safe_method(rq->method) && !same_origin(rq, true))
        return AUTH_CROSS_SITE;
    return AUTH_OK;
}

bool http_route_is_page(const struct request *rq)
{
    return rq->route >= 0 && (http_routes[rq->route].flags & ROUTE_PAGE) && !public_file(rq);
}

/* ---- the way back after signing in ---- */

static void pct_encode(struct dbuf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            dbuf_add(out, s, 1);
        else
            dbuf_addf(out, "%%%02X", c);
    }
}

struct query_ctx {
    struct dbuf q;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    struct query_ctx *c = cls;

    (void)kind;
    dbuf_adds(&c->q, c->q.len ? "&" : "?");
    pct_encode(&c->q, key);
    if (value) {
        dbuf_adds(&c->q, "=");
        pct_encode(&c->q, value);
    }
    return MHD_YES;
}

void http_signin_redirect(struct request *rq)
{
    struct query_ctx c;
    struct dbuf next, loc;

    dbuf_init(&c.q, 1024);
    dbuf_init(&next, 2048);
    dbuf_init(&loc, 4096);
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, add_arg, &c);
    dbuf_adds(&next, rq->url);
    dbuf_add(&next, c.q.buf, c.q.len);
    dbuf_adds(&loc, SIGNIN_PAGE "?next=");
    pct_encode(&loc, next.buf);
    /* A way back too long for the header: to the dashboard instead. */
    if (loc.len < sizeof(rq->headers[0].value))
        http_header_add(rq, MHD_HTTP_HEADER_LOCATION, "%s", loc.buf);
    else
        http_header_add(rq, MHD_HTTP_HEADER_LOCATION, "%s", SIGNIN_PAGE);
    dbuf_release(&loc);
    dbuf_release(&next);
    dbuf_release(&c.q);
}

/* ---- the routes ---- */

/* "; Secure" when a proxy in front says the browser spoke TLS to it. */
static const char *secure_attr(struct request *rq)
{
    const char *proto = header(rq, "X-Forwarded-Proto");

    return proto && strcasecmp(proto, "https") == 0 ? "; Secure" : "";
}

static enum MHD_Result reply_cookies(struct request *rq, const char *id, int64_t max_age)
{
    const char *sec = secure_attr(rq);

    http_header_add(rq, MHD_HTTP_HEADER_SET_COOKIE,
                    SESSION_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s", id,
                    (long long)max_age, sec);
    http_header_add(rq, MHD_HTTP_HEADER_SET_COOKIE,
                    SIGNED_IN "=%s; Path=/; Max-Age=%lld; SameSite=Strict%s", *id ? "1" : "",
                    (long long)max_age, sec);
    http_header_add(rq, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return http_reply(rq, MHD_HTTP_NO_CONTENT, NULL, (void *)"", 0, false);
}

static enum MHD_Result refuse_cross_site(struct request *rq)
{
    return http_reply_error(rq, MHD_HTTP_FORBIDDEN, "forbidden",
                            "cross-site request refused: send it from the UI's own pages");
}

enum MHD_Result route_signin(struct request *rq)
{
    struct http_server *s = rq->srv;
    char id[SESSION_HEX + 1];
    enum MHD_Result ret;
    json_t *body, *token;
    bool ok;

    if (!same_origin(rq, false))
        return refuse_cross_site(rq);
    body = http_body_object(rq, false, &ret);
    if (!body)
        return ret;
    token = json_object_get(body, "token");
    if (!json_is_string(token) || json_object_size(body) != 1) {
        json_decref(body);
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_request",
                                "the body must be {\"token\": \"...\"}");
    }
    ok = !s->token || secret_equal(json_string_value(token), s->token);
    json_decref(body);
    if (!ok)
        return http_reply_error(rq, MHD_HTTP_UNAUTHORIZED, "unauthorized", "wrong token");
    if (!s->token) /* nothing to sign in to */
        return http_reply(rq, MHD_HTTP_NO_CONTENT, NULL, (void *)"", 0, false);
    if (!session_new(&s->sessions, id))
        return http_reply_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                "no random bytes for a session");
    return reply_cookies(rq, id, s->sessions.ttl_s);
}

enum MHD_Result route_signout(struct request *rq)
{
    const char *cookie = MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND, SESSION_COOKIE);

    if (!same_origin(rq, false))
        return refuse_cross_site(rq);
    if (cookie)
        session_find(&rq->srv->sessions, cookie, true);
    return reply_cookies(rq, "", 0);
}
