/*
 * sse.c - live events as Server-Sent Events: GET /runs/{id}/stream (id:
 * the run's seq) and GET /events/stream (id: the global event id).
 *
 * Frames: "id: N\nevent: TYPE\ndata: JSON\n\n", and ": ping\n\n" every 15 s.
 * data is {"id", "run_id", "seq", "type", "step_id", "at", "data"} (id: the
 * global event id): an element of GET /runs/{id}/events with run_id added,
 * the same bytes whether the event came from the history or live.
 *
 * No gap, no duplicate: a new client is added to the hub *before* its
 * history is read, in replay mode, where live events are kept aside; after
 * the history (events after Last-Event-ID or ?after=) the kept events with
 * an id above the history's last are appended, and from then on live events
 * go straight to the buffer. The run stream ends after the run's final
 * event (completed, failed, cancelled); a global replay larger than 4 MiB
 * ends early so the client reconnects for the rest.
 *
 * Who runs what: the hub callback (on_event) runs on the engine's writer
 * thread after each commit (on PostgreSQL, the engine's cluster thread,
 * for every node's commits) and only formats and appends (never calls
 * durable). The content reader runs on the connection's polling thread: it
 * copies out what is buffered, or suspends the connection when nothing is,
 * so an idle client holds no thread; appending resumes it. Suspending and
 * resuming both happen under the client's mu, with `suspended` recording
 * which was last, so a resume never precedes its suspend. The client is
 * freed by the response's free callback, after it left the hub.
 */
#include "util/common.h"

#include "http/http_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SSE_BLOCK       ((size_t)16 * 1024)
#define SSE_MAX_BACKLOG ((size_t)4 * 1024 * 1024) /* unsent bytes before a client is dropped */
#define SSE_REPLAY_MAX  ((size_t)4 * 1024 * 1024) /* global history per connection */
#define SSE_PAGE        1000
#define SSE_PING_S      15

enum sse_kind { SSE_RUN, SSE_ALL };

/* A live event that arrived while its client was replaying history. */
struct kept_ev {
    struct kept_ev *next;
    int64_t id;
    bool is_final;
    char *frame; /* owned */
};

struct sse_client {
    struct sse_client *prev, *next; /* in hub->clients; guarded by hub->mu */
    struct sse_hub *hub;
    struct MHD_Connection *conn;
    enum sse_kind kind;
    char run_id[HTTP_ID_MAX + 1];
    pthread_mutex_t mu;
    struct dbuf out;      /* guarded by mu: frames, sent up to out_pos */
    size_t out_pos;       /* guarded by mu */
    int64_t last_id;      /* guarded by mu: id of the last frame appended */
    bool replaying;       /* guarded by mu: live events go to kept */
    struct kept_ev *kept; /* guarded by mu, newest first */
    bool suspended;       /* guarded by mu: the reader suspended the connection */
    bool ending;          /* guarded by mu: end the stream once out is sent */
    bool truncated;       /* guarded by mu: replay cut short, no live events */
    bool stopping;        /* guarded by mu: the server stops: never suspend again */
    bool dead;            /* guarded by mu: close the connection */
    bool stall_seen;      /* guarded by mu: the pinger found it stalled (client_unstall) */
};

struct sse_hub {
    durable *d;
    int sub_id;
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* wakes the pinger when closing */
    struct sse_client *clients; /* guarded by mu */
    size_t n_clients;           /* guarded by mu */
    size_t max_clients;         /* 0: no limit; set before the daemon starts */
    bool closing;               /* guarded by mu */
    pthread_t pinger;
};

/* ---- frames ---- */

static bool type_is_final(const char *type)
{
    return strcmp(type, "run_completed") == 0 || strcmp(type, "run_failed") == 0 ||
           strcmp(type, "run_cancelled") == 0;
}

/* What a frame says about one event; strings borrowed. */
struct frame_ev {
    int64_t sse_id;    /* the SSE id: seq (run stream) or global id */
    int64_t global_id; /* < 0: unknown, left out of the data */
    const char *run_id;
    int64_t seq;
    const char *type;
    const char *step_id; /* NULL for run events */
    const char *at;
};

/* One event as an SSE frame, built by concatenation: the event's data is
 * JSON text already (as committed, or as read from the history), so it is
 * copied, never parsed and encoded again. data_json NULL is null. Returns
 * an owned string. */
static char *frame_new(const struct frame_ev *e, const char *data_json)
{
    struct dbuf b;

    dbuf_init(&b, 0);
    dbuf_addf(&b, "id: %lld\nevent: %s\ndata: {", (long long)e->sse_id, e->type);
    if (e->global_id >= 0)
        dbuf_addf(&b, "\"id\":%lld,", (long long)e->global_id);
    dbuf_adds(&b, "\"run_id\":");
    dbuf_add_json_string(&b, e->run_id);
    dbuf_addf(&b, ",\"seq\":%lld,\"type\":", (long long)e->seq);
    dbuf_add_json_string(&b, e->type);
    dbuf_adds(&b, ",\"step_id\":");
    dbuf_add_json_string(&b, e->step_id);
    dbuf_adds(&b, ",\"at\":");
    dbuf_add_json_string(&b, e->at);
    dbuf_adds(&b, ",\"data\":");
    dbuf_adds(&b, data_json ? data_json : "null");
    dbuf_adds(&b, "}\n\n");
    return dbuf_detach(&b, NULL);
}

static char *frame_live(const durable_event *ev, bool global)
{
    char at[32];
    struct frame_ev e = { global ? ev->global_id : ev->seq,
                          ev->global_id,
                          ev->run_id,
                          ev->seq,
                          ev->type,
                          ev->step_id,
                          at };

    clock_format_rfc3339(ev->at_ms, at);
    return frame_new(&e, ev->data_json);
}

/* ---- a client's buffer (callers hold c->mu) ---- */

static void client_wake(struct sse_client *c)
{
    if (c->suspended) {
        c->suspended = false;
        if (!FAILPOINT_SKIP("sse.resume"))
            MHD_resume_connection(c->conn);
    }
}

static void client_append(struct sse_client *c, int64_t id, bool is_final, const char *frame)
{
    if (c->out.len - c->out_pos > SSE_MAX_BACKLOG) {
        c->dead = true; /* too far behind: it reconnects with Last-Event-ID */
        return;
    }
    dbuf_adds(&c->out, frame);
    c->last_id = id;
    if (c->kind == SSE_RUN)
        c->ending = is_final;
}

/* A live event for c: kept during the replay, appended after. */
static void client_push(struct sse_client *c, int64_t id, bool is_final, const char *frame)
{
    pthread_mutex_lock(&c->mu);
    if (c->replaying) {
        struct kept_ev *k = xcalloc(1, sizeof(*k));
        k->id = id;
        k->is_final = is_final;
        k->frame = xstrdup(frame);
        k->next = c->kept;
        c->kept = k;
    } else if (!c->dead && !c->truncated && id > c->last_id) {
        client_append(c, id, is_final, frame);
        client_wake(c);
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- the hub ---- */

/* The engine's subscriber: writer thread, after each commit (cluster
 * thread on a shared database). */
static void on_event(const durable_event *ev, void *ud)
{
    struct sse_hub *h = ud;
    char *frames[2] = { NULL, NULL }; /* run stream, global stream */
    bool is_final = type_is_final(ev->type);
    struct sse_client *c;

    pthread_mutex_lock(&h->mu);
    for (c = h->clients; c; c = c->next) {
        bool global = c->kind == SSE_ALL;
        if (!global && strcmp(c->run_id, ev->run_id) != 0)
            continue;
        if (!frames[global])
            frames[global] = frame_live(ev, global);
        client_push(c, global ? ev->global_id : ev->seq, is_final, frames[global]);
    }
    pthread_mutex_unlock(&h->mu);
    free(frames[0]);
    free(frames[1]);
}

/* A safety net, with c->mu held: frames wait to be sent and c was resumed,
 * yet libmicrohttpd still holds the connection suspended, at two pings in
 * a row (a resume is taken up within microseconds), as a lost wake-up
 * would leave it. Once, under TSan on a loaded machine, most of 200
 * streams stopped short of their last frames for minutes (cause not
 * found). Resuming a suspended connection again is safe at any time.
 * MHD_get_connection_info only reads a flag of the connection, alive
 * while c is in the hub. */
static void client_unstall(struct sse_client *c)
{
    const union MHD_ConnectionInfo *info;
    bool stalled = false;

    if (!c->replaying && !c->dead && !c->suspended && c->out.len > c->out_pos) {
        info = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_SUSPENDED);
        stalled = info && info->suspended == MHD_YES;
    }
    if (stalled && c->stall_seen) {
        log_warn("http: an event stream with %zu bytes to send stayed suspended; resumed again",
                 c->out.len - c->out_pos);
        MHD_resume_connection(c->conn);
        stalled = false;
    }
    c->stall_seen = stalled;
}

static void *pinger_main(void *arg)
{
    struct sse_hub *h = arg;
    struct sse_client *c;
    struct timespec ts;

    pthread_mutex_lock(&h->mu);
    while (!h->closing) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += SSE_PING_S;
        if (pthread_cond_timedwait(&h->cond, &h->mu, &ts) != ETIMEDOUT || h->closing)
            continue;
        for (c = h->clients; c; c = c->next) {
            pthread_mutex_lock(&c->mu);
            client_unstall(c); /* before a ping's own wake-up */
            if (!c->replaying && !c->dead && c->out.len == c->out_pos) {
                dbuf_adds(&c->out, ": ping\n\n");
                client_wake(c);
            }
            pthread_mutex_unlock(&c->mu);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

struct sse_hub *sse_hub_new(durable *d)
{
    struct sse_hub *h = xcalloc(1, sizeof(*h));
    pthread_condattr_t ca;

    h->d = d;
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cond, &ca);
    pthread_condattr_destroy(&ca);
    DUR_ASSERT(pthread_create(&h->pinger, NULL, pinger_main, h) == 0);
    pthread_setname_np(h->pinger, "durable-sse");
    h->sub_id = durable_subscribe(d, on_event, h);
    return h;
}

void sse_hub_shutdown(struct sse_hub *h)
{
    struct sse_client *c;

    durable_unsubscribe(h->d, h->sub_id);
    pthread_mutex_lock(&h->mu);
    h->closing = true;
    pthread_cond_broadcast(&h->cond);
    for (c = h->clients; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        c->stopping = true;
        client_wake(c);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->pinger, NULL);
}

void sse_hub_free(struct sse_hub *h)
{
    if (!h)
        return;
    if (h->n_clients > 0)
        log_warn("http: %zu event streams were not freed at shutdown", h->n_clients);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

size_t sse_hub_clients(struct sse_hub *h)
{
    size_t n;

    pthread_mutex_lock(&h->mu);
    n = h->n_clients;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void sse_hub_set_max(struct sse_hub *h, size_t max)
{
    h->max_clients = max;
}

enum hub_add_result { HUB_ADDED, HUB_CLOSING, HUB_FULL };

/* Adds c to the hub, in replay mode, unless the server is stopping or the
 * hub holds max_clients streams already. */
static enum hub_add_result hub_add(struct sse_hub *h, struct sse_client *c)
{
    enum hub_add_result ok;

    pthread_mutex_lock(&h->mu);
    ok = h->closing                                         ? HUB_CLOSING
         : h->max_clients && h->n_clients >= h->max_clients ? HUB_FULL
                                                            : HUB_ADDED;
    if (ok == HUB_ADDED) {
        c->next = h->clients;
        if (h->clients)
            h->clients->prev = c;
        h->clients = c;
        h->n_clients++;
    }
    pthread_mutex_unlock(&h->mu);
    return ok;
}

static void hub_remove(struct sse_hub *h, struct sse_client *c)
{
    pthread_mutex_lock(&h->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->n_clients--;
    pthread_mutex_unlock(&h->mu);
}

/* ---- a client ---- */

static struct sse_client *client_new(struct request *rq, enum sse_kind kind)
{
    struct sse_client *c = xcalloc(1, sizeof(*c));

    c->hub = rq->srv->hub;
    c->conn = rq->conn;
    c->kind = kind;
    snprintf(c->run_id, sizeof(c->run_id), "%s", kind == SSE_RUN ? rq->id : "");
    pthread_mutex_init(&c->mu, NULL);
    dbuf_init(&c->out, 0);
    c->replaying = true;
    return c;
}

static void kept_free(struct kept_ev *k)
{
    while (k) {
        struct kept_ev *next = k->next;
        free(k->frame);
        free(k);
        k = next;
    }
}

static void client_free(struct sse_client *c)
{
    kept_free(c->kept);
    dbuf_release(&c->out);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The response's free callback: MHD is done with the stream. */
static void client_release(void *cls)
{
    struct sse_client *c = cls;

    hub_remove(c->hub, c);
    client_free(c);
}

/* Ends the replay: appends the kept live events the history did not have,
 * oldest first, and switches to live delivery. */
static void client_go_live(struct sse_client *c)
{
    struct kept_ev *k, *oldest = NULL, *next;

    pthread_mutex_lock(&c->mu);
    for (k = c->kept; k; k = next) { /* reverse: kept is newest first */
        next = k->next;
        k->next = oldest;
        oldest = k;
    }
    c->kept = NULL;
    for (k = oldest; k && !c->truncated; k = k->next) {
        if (k->id > c->last_id)
            client_append(c, k->id, k->is_final, k->frame);
    }
    kept_free(oldest);
    c->replaying = false;
    pthread_mutex_unlock(&c->mu);
}

/* MHD's content reader: the connection's polling thread. */
static ssize_t client_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_client *c = cls;
    ssize_t n = 0;

    (void)pos;
    pthread_mutex_lock(&c->mu);
    if (c->dead) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (c->out.len > c->out_pos) {
        size_t left = c->out.len - c->out_pos;
        n = (ssize_t)(left < max ? left : max);
        memcpy(buf, c->out.buf + c->out_pos, (size_t)n);
        c->out_pos += (size_t)n;
        if (c->out_pos == c->out.len) {
            dbuf_reset(&c->out);
            c->out_pos = 0;
        }
    } else if (c->ending || c->stopping) {
        /* MHD_stop_daemon aborts on a suspended connection: once stopping
         * is set, a stream ends rather than waits. */
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        c->suspended = true;
        MHD_suspend_connection(c->conn);
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- history ---- */

/* The fields of an event of the history (borrowed from ev). */
static struct frame_ev history_event(const struct sse_client *c, json_t *ev)
{
    json_t *gid = json_object_get(ev, "id");
    const char *run_id = json_string_value(json_object_get(ev, "run_id"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    struct frame_ev e = { 0 };

    e.seq = json_integer_value(json_object_get(ev, "seq"));
    e.global_id = json_is_integer(gid) ? json_integer_value(gid) : -1;
    e.sse_id = c->kind == SSE_ALL ? e.global_id : e.seq;
    e.run_id = c->kind == SSE_ALL ? (run_id ? run_id : "") : c->run_id;
    e.type = type ? type : "unknown";
    e.step_id = json_string_value(json_object_get(ev, "step_id"));
    e.at = json_string_value(json_object_get(ev, "at"));
    return e;
}

/* Appends the frames of a JSON array of events (from durable_run_events or
 * durable_events_since). Returns how many there were. */
static size_t replay_frames(struct sse_client *c, const char *events_json)
{
    json_t *arr = json_loads(events_json, 0, NULL), *ev;
    bool global = c->kind == SSE_ALL;
    size_t i;

    pthread_mutex_lock(&c->mu);
    json_array_foreach(arr, i, ev)
    {
        struct frame_ev e = history_event(c, ev);
        char *data = json_dumps(json_object_get(ev, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
        char *frame = frame_new(&e, data);

        free(data);
        dbuf_adds(&c->out, frame);
        c->last_id = e.sse_id;
        if (!global)
            c->ending = type_is_final(e.type);
        free(frame);
    }
    pthread_mutex_unlock(&c->mu);
    i = json_array_size(arr);
    json_decref(arr);
    return i;
}

static durable_code replay(struct sse_client *c, durable *d, int64_t after, bool has_after,
                           durable_error *err)
{
    char *json = NULL;
    durable_code rc = DURABLE_OK;
    size_t n = SSE_PAGE;

    if (c->kind == SSE_RUN) {
        rc = durable_run_events(d, c->run_id, after, &json, err);
        if (rc == DURABLE_OK)
            replay_frames(c, json);
        durable_free(json);
        return rc;
    }
    while (has_after && rc == DURABLE_OK && n == SSE_PAGE) {
        if (c->out.len > SSE_REPLAY_MAX) { /* the rest on the next connection */
            pthread_mutex_lock(&c->mu);
            c->truncated = c->ending = true;
            pthread_mutex_unlock(&c->mu);
            break;
        }
        rc = durable_events_since(d, c->last_id > after ? c->last_id : after, SSE_PAGE, &json, err);
        n = rc == DURABLE_OK ? replay_frames(c, json) : 0;
        durable_free(json);
        json = NULL;
    }
    return rc;
}

/* ---- the routes ---- */

durable_code http_event_id_parse(const char *s, int64_t *out, durable_error *err)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || s[0] < '0' || s[0] > '9')
        return err_set(err, DURABLE_EINVAL, "Last-Event-ID must be an event id, not \"%.40s\"", s);
    *out = v;
    return DURABLE_OK;
}

/* Where the client resumes: Last-Event-ID, else ?after=, else nothing. */
static durable_code resume_point(struct request *rq, int64_t *out, bool *has, durable_error *err)
{
    const char *h =
            MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_LAST_EVENT_ID);
    durable_code rc;

    *has = false;
    *out = 0;
    if (!h || !*h) {
        static const struct query_int q = { "after", 0, 0, INT64_MAX };
        *has = router_query(rq, "after") != NULL;
        return router_query_int(rq, &q, out, err);
    }
    rc = http_event_id_parse(h, out, err);
    *has = rc == DURABLE_OK;
    return rc;
}

/* Has the run finished? Read before its history: if it had, the history
 * holds every event of the run, the final one included. */
static durable_code run_finished(struct request *rq, bool *out, durable_error *err)
{
    const char *status = NULL;
    durable_code rc = durable_run_wait(rq->srv->d, rq->id, 0, &status, err);

    *out = rc == DURABLE_OK;
    return rc == DURABLE_ETIMEOUT ? DURABLE_OK : rc;
}

static bool client_idle(struct sse_client *c)
{
    bool idle;

    pthread_mutex_lock(&c->mu);
    idle = c->out.len == c->out_pos;
    pthread_mutex_unlock(&c->mu);
    return idle;
}

/* Subscribes c, replays its history and switches it to live events. On
 * failure c has left the hub and is freed. */
static durable_code client_start(struct request *rq, struct sse_client *c, int64_t after,
                                 bool has_after, durable_error *err)
{
    durable_code rc;
    enum hub_add_result added = hub_add(rq->srv->hub, c);

    if (added != HUB_ADDED) {
        client_free(c);
        if (added == HUB_FULL)
            err_set(err, DURABLE_ECLOSED, "too many event streams open (at most %zu): retry later",
                    rq->srv->hub->max_clients);
        else
            err_set(err, DURABLE_ECLOSED, "the server is stopping");
        return DURABLE_ECLOSED; /* not err_set's value: c is freed, say so plainly */
    }
    rc = replay(c, rq->srv->d, after, has_after, err);
    if (rc != DURABLE_OK) {
        hub_remove(rq->srv->hub, c);
        client_free(c);
        return rc;
    }
    client_go_live(c);
    return DURABLE_OK;
}

static enum MHD_Result stream(struct request *rq, enum sse_kind kind)
{
    durable_error err = { 0 };
    struct sse_client *c;
    struct MHD_Response *resp;
    int64_t after = 0;
    bool has_after = false, finished = false;

    if (resume_point(rq, &after, &has_after, &err) != DURABLE_OK)
        return http_reply_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "%s", err.msg);
    if (kind == SSE_RUN && run_finished(rq, &finished, &err) != DURABLE_OK)
        return http_reply_durable(rq, &err);
    c = client_new(rq, kind);
    c->last_id = after;
    if (client_start(rq, c, after, has_after, &err) != DURABLE_OK) {
        if (err.code == DURABLE_ECLOSED)
            http_header_add(rq, MHD_HTTP_HEADER_RETRY_AFTER, "5");
        return http_reply_durable(rq, &err);
    }
    if (finished && client_idle(c)) {
        /* Nothing more will come: 204 tells EventSource not to reconnect. */
        hub_remove(rq->srv->hub, c);
        client_free(c);
        return http_reply(rq, MHD_HTTP_NO_CONTENT, NULL, (void *)"", 0, false);
    }
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, client_read, c,
                                             client_release);
    if (!resp) {
        client_release(c);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return http_reply_response(rq, MHD_HTTP_OK, resp);
}

enum MHD_Result route_run_stream(struct request *rq)
{
    return stream(rq, SSE_RUN);
}

enum MHD_Result route_events_stream(struct request *rq)
{
    return stream(rq, SSE_ALL);
}
