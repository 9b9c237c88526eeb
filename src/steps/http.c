/*
 * http.c - the `http_request` step type and the I/O thread that makes its
 * requests with libcurl's multi interface.
 *
 * check() validates the config at parse time; start() checks the rendered
 * config and builds a request (method, url,
 * headers, body, expected statuses, timeout) with the step's idempotency
 * key as the `Idempotency-Key` header; the engine hands it to the I/O
 * thread (steps_io_submit), so the scheduler never waits on the network.
 * Run again after a restart, an attempt sends the same key: the server
 * can recognise the repeat (at-least-once, SPEC §5).
 *
 * The I/O thread owns the multi handle and every transfer. Its queue of new
 * requests (io->queue) is the only shared state; curl_multi_wakeup, which
 * libcurl documents as callable from any thread, interrupts its poll.
 * Responses are read into a buffer capped at STEPS_HTTP_MAX_BODY bytes; a
 * larger body aborts the transfer and fails the attempt. Outcomes:
 *   expected status (default any 2xx)  DONE {"status", "headers", "body"}
 *                                      (headers lowercased; body parsed when
 *                                      the content type says JSON)
 *   another status                     FAIL http_status
 *   connection error, timeout, cap     FAIL http_error
 * Both failures are retryable under the step's retry policy.
 */
#include "util/common.h"

#include "steps/steps.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/queue.h"

#define MAX_EXPECT 32

struct step_io_request {
    QUEUE_LINK(struct step_io_request); /* in io->queue */
    struct step_io_tag tag;
    char *method;
    char *url;
    CURLU *curlu; /* url parsed, as the transfer uses it (I/O thread) */
    struct curl_slist *headers;
    char *body; /* or NULL */
    size_t body_len;
    long timeout_ms;
    int expect[MAX_EXPECT]; /* n_expect == 0: any 2xx */
    size_t n_expect;
    /* I/O thread only, once submitted */
    struct step_io_request *iprev, *inext; /* in io->inflight */
    CURL *easy;
    struct dbuf resp;
    json_t *resp_headers;
    bool too_big;
    char errbuf[CURL_ERROR_SIZE];
};

struct step_io {
    pthread_t thread;
    CURLM *multi; /* I/O thread only, but for curl_multi_wakeup */
    step_io_done_fn done;
    void *ud;
    struct queue queue; /* of requests submitted, not yet added; closed to stop the thread */
    struct step_io_request *inflight; /* I/O thread only: transfers added to multi */
    char *allow;                      /* ",host,host," (lowercase), or NULL: any host; read-only */
};

static void inflight_add(struct step_io *io, struct step_io_request *req)
{
    req->iprev = NULL;
    req->inext = io->inflight;
    if (io->inflight)
        io->inflight->iprev = req;
    io->inflight = req;
}

static void inflight_remove(struct step_io *io, struct step_io_request *req)
{
    if (req->iprev)
        req->iprev->inext = req->inext;
    else
        io->inflight = req->inext;
    if (req->inext)
        req->inext->iprev = req->iprev;
}

void steps_io_request_free(struct step_io_request *req)
{
    if (!req)
        return;
    free(req->method);
    free(req->url);
    curl_url_cleanup(req->curlu);
    curl_slist_free_all(req->headers);
    free(req->body);
    dbuf_release(&req->resp);
    json_decref(req->resp_headers);
    free(req);
}

/* ---- the step type: config to request ---- */

static bool get_expect(json_t *v, struct step_io_request *req, struct step_outcome *out)
{
    size_t i;
    json_t *e;

    if (!v)
        return true;
    if (json_is_integer(v)) {
        req->expect[req->n_expect++] = (int)json_integer_value(v);
        return true;
    }
    if (json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= MAX_EXPECT) {
        json_array_foreach(v, i, e)
        {
            if (!json_is_integer(e))
                break;
            req->expect[req->n_expect++] = (int)json_integer_value(e);
        }
        if (i == json_array_size(v))
            return true;
    }
    steps_fail(out, STEPS_INVALID_CONFIG,
               "config.expect_status: expected a status or a list of at most %d statuses",
               MAX_EXPECT);
    return false;
}

/* Adds config.headers; false when one is not a string or not a header. */
static bool add_headers(json_t *h, struct step_io_request *req, struct step_outcome *out)
{
    const char *key;
    json_t *v;
    char *line;

    if (h && !json_is_object(h)) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.headers: expected an object");
        return false;
    }
    json_object_foreach(h, key, v)
    {
        if (!json_is_string(v) || !key[0] || strpbrk(key, ":\r\n ") ||
            strpbrk(json_string_value(v), "\r\n")) {
            steps_fail(out, STEPS_INVALID_CONFIG, "config.headers: invalid header \"%.60s\"", key);
            return false;
        }
        if (strcasecmp(key, "Idempotency-Key") == 0)
            continue; /* the step's own key is sent, always */
        line = xasprintf("%s: %s", key, json_string_value(v));
        req->headers = curl_slist_append(req->headers, line);
        free(line);
    }
    return true;
}

static bool has_header(json_t *h, const char *name)
{
    const char *key;
    json_t *v;

    json_object_foreach(h, key, v)
    {
        if (strcasecmp(key, name) == 0)
            return true;
    }
    return false;
}

/* config.body: a string as is, any other JSON value serialised. */
static void set_body(json_t *body, json_t *headers, struct step_io_request *req)
{
    if (!body)
        return;
    if (json_is_string(body)) {
        req->body_len = json_string_length(body);
        req->body = xstrndup(json_string_value(body), req->body_len);
        return;
    }
    req->body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    req->body_len = req->body ? strlen(req->body) : 0;
    if (!has_header(headers, "Content-Type"))
        req->headers = curl_slist_append(req->headers, "Content-Type: application/json");
}

/* ---- config ---- */

static void http_url(durable_step_check *chk, json_t *v)
{
    struct def_quoted q;
    const char *s;

    if (def_is_templated(v) || !def_check_string(chk, v, &s))
        return;
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        def_check_error(chk, "expected an http:// or https:// URL, got %s", def_quote(&q, s));
}

static void http_method(durable_step_check *chk, json_t *v)
{
    static const char *const allowed[] = { "GET",    "POST", "PUT",     "PATCH",
                                           "DELETE", "HEAD", "OPTIONS", NULL };

    def_check_one_of(chk, v, allowed, true);
}

static void http_headers(durable_step_check *chk, json_t *v)
{
    const char *key, *s;
    json_t *h;
    size_t mark;

    if (def_is_templated(v))
        return;
    if (!json_is_object(v)) {
        def_check_error(chk, "expected an object of header names to strings, got %s",
                        def_type_name(v));
        return;
    }
    json_object_foreach(v, key, h)
    {
        mark = def_check_key(chk, key);
        def_check_string(chk, h, &s);
        def_check_pop(chk, mark);
    }
}

static void http_body(durable_step_check *chk, json_t *v)
{
    (void)chk;
    (void)v;
}

static void want_status(durable_step_check *chk, const json_t *v)
{
    int code;

    if (!def_is_templated(v))
        def_check_int(chk, v, 100, 599, &code);
}

static void http_expect_status(durable_step_check *chk, json_t *v)
{
    size_t i, mark;

    if (!json_is_array(v)) {
        want_status(chk, v);
        return;
    }
    if (json_array_size(v) == 0)
        def_check_error(chk, "expected at least one status");
    for (i = 0; i < json_array_size(v); i++) {
        mark = def_check_index(chk, i);
        want_status(chk, json_array_get(v, i));
        def_check_pop(chk, mark);
    }
}

static void http_timeout(durable_step_check *chk, json_t *v)
{
    def_check_seconds(chk, v, true);
}

/* clang-format off */
static const struct def_check_field http_fields[] = {
    { "url", http_url },
    { "method", http_method },
    { "headers", http_headers },
    { "body", http_body },
    { "expect_status", http_expect_status },
    { "timeout_seconds", http_timeout },
};
/* clang-format on */

static void http_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_require(chk, "url");
    def_check_walk(chk, http_fields, DUR_ARRAY_LEN(http_fields));
}

/* ---- behaviour ---- */

/* The rendered config's url and timeout_seconds, checked again: a template
 * may have rendered them to anything. False (out failed) when invalid. */
static bool config_valid(const char *url, const json_t *timeout, struct step_outcome *out)
{
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.url: expected an http:// or https:// URL");
        return false;
    }
    if (timeout && (!json_is_number(timeout) || !(json_number_value(timeout) > 0) ||
                    json_number_value(timeout) > DEF_MAX_SECONDS)) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.timeout_seconds: expected seconds > 0");
        return false;
    }
    return true;
}

static void http_start(durable_step_call *c, void *ud)
{
    struct step_outcome *out = c->out;
    const char *url = json_string_value(json_object_get(c->config, "url"));
    const char *method = json_string_value(json_object_get(c->config, "method"));
    json_t *headers = json_object_get(c->config, "headers");
    json_t *timeout = json_object_get(c->config, "timeout_seconds");
    struct step_io_request *req = xcalloc(1, sizeof(*req));
    char *key;
    size_t i;

    (void)ud;
    dbuf_init(&req->resp, STEPS_HTTP_MAX_BODY);
    if (!config_valid(url, timeout, out) ||
        !get_expect(json_object_get(c->config, "expect_status"), req, out) ||
        !add_headers(headers, req, out))
        goto fail;
    req->method = xstrdup(method ? method : "GET");
    for (i = 0; req->method[i]; i++)
        req->method[i] = (char)toupper((unsigned char)req->method[i]);
    req->url = xstrdup(url);
    req->timeout_ms = timeout ? (long)(json_number_value(timeout) * 1000.0) : STEPS_HTTP_TIMEOUT_MS;
    if (req->timeout_ms < 1)
        req->timeout_ms = 1;
    set_body(json_object_get(c->config, "body"), headers, req);
    key = xasprintf("Idempotency-Key: %s", c->idempotency_key);
    req->headers = curl_slist_append(req->headers, key);
    free(key);
    req->headers = curl_slist_append(req->headers, "User-Agent: durable/" DURABLE_VERSION_STRING);
    req->headers = curl_slist_append(req->headers, "Expect:"); /* no 100-continue wait */
    out->kind = STEP_OUT_IO;
    out->io_request = req;
    return;
fail:
    steps_io_request_free(req);
}

const durable_step_type steps_http_type = {
    .name = "http_request",
    .check = http_check,
    .start = http_start,
};

/* ---- the I/O thread ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct step_io_request *req = ud;

    if (dbuf_add(&req->resp, p, size * n) != DURABLE_OK) {
        req->too_big = true;
        return 0;
    }
    return size * n;
}

/* The first byte of [v, end) that is not a space or a tab (end if none). */
static const char *skip_blanks(const char *v, const char *end)
{
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    return v;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct step_io_request *req = ud;
    size_t len = size * n, k, name_len;
    char *colon = memchr(p, ':', len), name[128];
    const char *v, *end = p + len;

    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new response (after 1xx) */
        json_object_clear(req->resp_headers);
        return len;
    }
    if (!colon || (size_t)(colon - p) >= sizeof(name))
        return len;
    name_len = (size_t)(colon - p);
    for (k = 0; k < name_len; k++)
        name[k] = (char)tolower((unsigned char)p[k]);
    name[name_len] = '\0';
    v = skip_blanks(colon + 1, end);
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    json_object_set_new(req->resp_headers, name, json_stringn(v, (size_t)(end - v)));
    return len;
}

/* ",a,b," from "a, B,[c]": hosts lowercased, spaces and IPv6 brackets
 * dropped, so that host_listed is one search. */
static char *allow_list_new(const char *spec)
{
    struct dbuf b;
    const char *p;

    dbuf_init(&b, 0);
    dbuf_add(&b, ",", 1);
    for (p = spec; *p; p++) {
        char ch = (char)tolower((unsigned char)*p);
        if (ch != ' ' && ch != '\t' && ch != '[' && ch != ']')
            dbuf_add(&b, &ch, 1);
    }
    dbuf_add(&b, ",", 1);
    return dbuf_detach(&b, NULL);
}

/* Is host (as libcurl parsed it) one of allow's? */
static bool host_listed(const char *allow, const char *host)
{
    struct dbuf want;
    const char *p;
    bool found;

    dbuf_init(&want, 0);
    dbuf_add(&want, ",", 1);
    for (p = host; *p; p++) {
        char ch = (char)tolower((unsigned char)*p);
        if (ch == ',')
            break; /* never a host's; it would match two entries */
        if (ch != '[' && ch != ']')
            dbuf_add(&want, &ch, 1);
    }
    dbuf_add(&want, ",", 1);
    found = *p == '\0' && want.len > 2 && strstr(allow, want.buf) != NULL;
    dbuf_release(&want);
    return found;
}

/* Parses req->url into req->curlu, the URL the transfer will use, and
 * checks its host against io's allow-list: the check and the connection
 * read the same parse, so no URL can pass one and mean another host to
 * the other. False with out failed otherwise. */
static bool url_allowed(struct step_io *io, struct step_io_request *req, struct step_outcome *out)
{
    char *host = NULL, *scheme = NULL;
    bool ok = false;

    req->curlu = curl_url();
    if (!req->curlu || curl_url_set(req->curlu, CURLUPART_URL, req->url, 0) != CURLUE_OK ||
        curl_url_get(req->curlu, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(req->curlu, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        steps_fail(out, "http_error", "could not %s %.120s: malformed URL", req->method, req->url);
        goto done;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.url: expected an http:// or https:// URL");
        goto done;
    }
    ok = !io->allow || host_listed(io->allow, host);
    if (!ok)
        steps_fail(out, "http_forbidden", "host \"%.80s\" is not in the server's allow-list", host);
done:
    curl_free(host);
    curl_free(scheme);
    return ok;
}

static bool add_transfer(struct step_io *io, struct step_io_request *req)
{
    CURL *h = curl_easy_init();

    if (!h)
        return false;
    req->easy = h;
    req->resp_headers = json_object();
    curl_easy_setopt(h, CURLOPT_CURLU, req->curlu);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    if (strcmp(req->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, req->headers);
    if (req->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_PRIVATE, req);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    if (curl_multi_add_handle(io->multi, h) != CURLM_OK)
        return false;
    inflight_add(io, req);
    return true;
}

static bool status_expected(const struct step_io_request *req, long status)
{
    size_t i;

    if (req->n_expect == 0)
        return status >= 200 && status <= 299;
    for (i = 0; i < req->n_expect; i++) {
        if (req->expect[i] == status)
            return true;
    }
    return false;
}

/* The response body as JSON: parsed when the content type says JSON (and
 * it parses), else a string when it is UTF-8, else null. */
static json_t *body_value(const struct step_io_request *req)
{
    const char *ct = json_string_value(json_object_get(req->resp_headers, "content-type"));
    json_t *v = NULL;

    if (ct && strstr(ct, "json"))
        v = json_loadb(req->resp.buf, req->resp.len, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_stringn(req->resp.buf, req->resp.len);
    return v ? v : json_null();
}

static void finish(struct step_io *io, struct step_io_request *req, CURLcode cc)
{
    struct step_outcome out = { 0 };
    long status = 0;

    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    if (req->too_big) {
        steps_fail(&out, "http_error", "%s %.120s: response body larger than %zu bytes",
                   req->method, req->url, STEPS_HTTP_MAX_BODY);
    } else if (cc != CURLE_OK) {
        steps_fail(&out, "http_error", "could not %s %.120s: %s", req->method, req->url,
                   req->errbuf[0] ? req->errbuf : curl_easy_strerror(cc));
    } else if (!status_expected(req, status)) {
        steps_fail(&out, "http_status", "%s %.120s answered %ld: %.80s", req->method, req->url,
                   status, req->resp.buf);
    } else {
        /* The output goes to the scheduler thread: it takes the headers
         * object itself (jansson's reference counts are not to be shared
         * between threads), so the request keeps no reference to it. */
        out.kind = STEP_OUT_DONE;
        out.output = json_pack("{s:i, s:o, s:o}", "status", (int)status, "headers",
                               req->resp_headers, "body", body_value(req));
        req->resp_headers = NULL;
    }
    io->done(io->ud, &req->tag, &out);
    json_decref(out.output);
}

static void reap(struct step_io *io)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(io->multi, &left)) != NULL) {
        struct step_io_request *req = NULL;
        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        curl_multi_remove_handle(io->multi, m->easy_handle);
        inflight_remove(io, req);
        finish(io, req, m->data.result);
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
        steps_io_request_free(req);
    }
}

static void add_new(struct step_io *io, struct step_io_request *list)
{
    struct step_io_request *req, *next;

    for (req = list; req; req = next) {
        struct step_outcome out = { 0 };
        next = req->next;
        if (url_allowed(io, req, &out) && add_transfer(io, req))
            continue;
        if (out.kind != STEP_OUT_FAIL)
            steps_fail(&out, "http_error", "could not start a request to %.120s", req->url);
        io->done(io->ud, &req->tag, &out);
        if (req->easy)
            curl_easy_cleanup(req->easy);
        steps_io_request_free(req);
    }
}

/* Ends every transfer still in flight without a callback (stopping). */
static void abort_all(struct step_io *io)
{
    while (io->inflight) {
        struct step_io_request *req = io->inflight;

        io->inflight = req->inext; /* inflight_remove, the head being req */
        if (io->inflight)
            io->inflight->iprev = NULL;
        curl_multi_remove_handle(io->multi, req->easy);
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
        steps_io_request_free(req);
    }
}

static void *io_main(void *arg)
{
    struct step_io *io = arg;
    struct step_io_request *list;
    int running = 0;

    pthread_setname_np(pthread_self(), "durable-io");
    while (!queue_is_closed(&io->queue)) {
        add_new(io, (struct step_io_request *)queue_take(&io->queue, 0));
        curl_multi_perform(io->multi, &running);
        reap(io);
        curl_multi_poll(io->multi, NULL, 0, 1000, NULL);
    }
    list = (struct step_io_request *)queue_take(&io->queue, 0);
    while (list) { /* submitted before the stop: never started */
        struct step_io_request *next = list->next;
        steps_io_request_free(list);
        list = next;
    }
    abort_all(io);
    return NULL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static bool curl_ok;

static void curl_init_once(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

durable_code steps_io_start(step_io_done_fn done, void *ud, const char *http_allow,
                            struct step_io **out, durable_error *err)
{
    struct step_io *io;

    pthread_once(&curl_once, curl_init_once);
    if (!curl_ok)
        return err_set(err, DURABLE_ENOMEM, "could not start libcurl");
    io = xcalloc(1, sizeof(*io));
    io->done = done;
    io->ud = ud;
    io->allow = http_allow ? allow_list_new(http_allow) : NULL;
    queue_init(&io->queue);
    io->multi = curl_multi_init();
    if (!io->multi || pthread_create(&io->thread, NULL, io_main, io) != 0) {
        if (io->multi)
            curl_multi_cleanup(io->multi);
        queue_release(&io->queue);
        free(io->allow);
        free(io);
        return err_set(err, DURABLE_ENOMEM, "could not start the I/O thread");
    }
    *out = io;
    return DURABLE_OK;
}

void steps_io_submit(struct step_io *io, struct step_io_request *req, const struct step_io_tag *tag)
{
    req->tag = *tag;
    if (queue_push(&io->queue, &req->node))
        curl_multi_wakeup(io->multi);
    else
        steps_io_request_free(req);
}

void steps_io_stop(struct step_io *io)
{
    if (!io)
        return;
    queue_close(&io->queue);
    curl_multi_wakeup(io->multi);
    pthread_join(io->thread, NULL);
    curl_multi_cleanup(io->multi);
    queue_release(&io->queue);
    free(io->allow);
    free(io);
}
