/*
 * respond.c - every response goes out through here: the JSON error shape of
 * SPEC §6, the one HTTP status of each durable_code, extra headers, the
 * request counters of /metrics and the --verbose request log.
 *
 * http_reply* run on the polling thread that serves the request and are
 * called once per request. The counters are a small array guarded by a
 * mutex (a leaf lock): one entry per (route pattern, status), so the label
 * set stays bounded whatever paths clients send.
 */
#include "util/common.h"

#include "http/http_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned http_status_of(durable_code code)
{
    switch (code) {
    case DURABLE_OK:
        return MHD_HTTP_OK;
    case DURABLE_EINVAL:
    case DURABLE_ESYNTAX:
        return MHD_HTTP_BAD_REQUEST;
    case DURABLE_ETOOBIG:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case DURABLE_ENOTFOUND:
        return MHD_HTTP_NOT_FOUND;
    case DURABLE_ECONFLICT:
        return MHD_HTTP_CONFLICT;
    case DURABLE_EUNSUPPORTED:
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    case DURABLE_EIO:
    case DURABLE_ECLOSED:
    case DURABLE_ETIMEOUT:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

const char *http_code_of(durable_code code)
{
    switch (code) {
    case DURABLE_EINVAL:
        return "invalid_request";
    case DURABLE_ESYNTAX:
        return "malformed_json";
    case DURABLE_ETOOBIG:
        return "payload_too_large";
    case DURABLE_ENOTFOUND:
        return "not_found";
    case DURABLE_ECONFLICT:
        return "conflict";
    case DURABLE_EUNSUPPORTED:
        return "unsupported";
    case DURABLE_EIO:
    case DURABLE_ECLOSED:
    case DURABLE_ETIMEOUT:
        return "unavailable";
    default:
        return "internal";
    }
}

void http_header_add(struct request *rq, const char *name, const char *fmt, ...)
{
    struct http_header *h;
    va_list ap;

    DUR_ASSERT(rq->n_headers < HTTP_MAX_HEADERS);
    h = &rq->headers[rq->n_headers++];
    h->name = name;
    va_start(ap, fmt);
    vsnprintf(h->value, sizeof(h->value), fmt, ap);
    va_end(ap);
}

/* Copies s into out with control and non-ASCII bytes escaped (log lines
 * must not be forged through a decoded %0a). */
static void log_safe(const char *s, char *out, size_t out_len)
{
    size_t o = 0;

    for (; *s && o + 5 < out_len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, out_len - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

static void log_request(const struct request *rq, unsigned status)
{
    char path[256];

    log_safe(rq->url ? rq->url : "", path, sizeof(path));
    fprintf(stderr, "http: %s %s %u %.1fms\n", rq->method ? rq->method : "?", path, status,
            (double)(clock_mono_us() - rq->start_us) / 1000.0);
}

static void free_body(void *p)
{
    free(p);
}

enum MHD_Result http_reply_response(struct request *rq, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret;
    size_t i;

    for (i = 0; i < rq->n_headers; i++)
        MHD_add_response_header(resp, rq->headers[i].name, rq->headers[i].value);
    /* No response is to be read as another type than it says (a JSON error
     * quoting client input as HTML, say). */
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    rq->status = status;
    ret = MHD_queue_response(rq->conn, status, resp);
    MHD_destroy_response(resp);
    http_metrics_count(&rq->srv->metrics, rq->route, status);
    if (rq->srv->verbose)
        log_request(rq, status);
    return ret;
}

enum MHD_Result http_reply(struct request *rq, unsigned status, const char *content_type,
                           void *body, size_t len, bool must_free)
{
    struct MHD_Response *resp;

    if (must_free)
        resp = MHD_create_response_from_buffer_with_free_callback(len, body, free_body);
    else
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return http_reply_response(rq, status, resp);
}

enum MHD_Result http_reply_json(struct request *rq, unsigned status, char *json)
{
    return http_reply(rq, status, "application/json", json, strlen(json), true);
}

enum MHD_Result http_reply_error_details(struct request *rq, unsigned status, const char *code,
                                         const char *msg, json_t *details)
{
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
    json_t *doc;
    char *text;

    if (!e) /* msg is not valid UTF-8: it quotes client input */
        e = json_pack("{s:s, s:s}", "code", code, "message", "(message not valid UTF-8)");
    if (details)
        json_object_set_new(e, "details", details);
    doc = json_pack("{s:o}", "error", e);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    DUR_ASSERT(text);
    return http_reply_json(rq, status, text);
}

enum MHD_Result http_reply_error(struct request *rq, unsigned status, const char *code,
                                 const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return http_reply_error_details(rq, status, code, msg, NULL);
}

enum MHD_Result http_reply_durable(struct request *rq, const durable_error *err)
{
    durable_code code = err->code == DURABLE_OK ? DURABLE_EIO : err->code;
    const char *msg = err->msg[0] ? err->msg : durable_strerror(code);

    return http_reply_error(rq, http_status_of(code), http_code_of(code), "%s", msg);
}

/* ---- metrics ---- */

void http_metrics_init(struct http_metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
}

void http_metrics_release(struct http_metrics *m)
{
    free(m->c);
    pthread_mutex_destroy(&m->mu);
}

void http_metrics_count(struct http_metrics *m, int route, unsigned status)
{
    size_t i;

    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->n; i++) {
        if (m->c[i].route == route && m->c[i].status == status)
            break;
    }
    if (i == m->n) {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 32;
            m->c = xrealloc(m->c, m->cap * sizeof(*m->c));
        }
        m->c[i].route = route;
        m->c[i].status = status;
        m->c[i].n = 0;
        m->n++;
    }
    m->c[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void http_metrics_write(struct http_metrics *m, struct dbuf *out)
{
    size_t i;

    dbuf_adds(out, "# HELP durable_http_requests_total HTTP requests answered, by route pattern "
                   "and status.\n# TYPE durable_http_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->n; i++) {
        const struct http_counter *c = &m->c[i];
        dbuf_addf(out, "durable_http_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
                  c->route >= 0 ? http_routes[c->route].pattern : "unmatched", c->status,
                  (unsigned long long)c->n);
    }
    pthread_mutex_unlock(&m->mu);
}
