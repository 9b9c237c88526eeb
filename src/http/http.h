/*
 * http.h - the HTTP layer: `durable serve`'s API (SPEC §6), live events as
 * Server-Sent Events, the embedded web UI, auth and input limits.
 *
 * A client of libdurable (durable.h) and util only: it never sees SQL or
 * the engine's internals. libmicrohttpd (MHD) 0.9.75 runs the sockets:
 *
 *   MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, a pool of --workers
 *   polling threads (default 4), MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC.
 *   A connection idle for 30 s is closed. A slow client (one byte per
 *   second) holds a socket in one thread's epoll set, never a thread, so it
 *   cannot starve the others. Connections are bounded by the descriptors
 *   the process may open (at most 10,000), each by 64 KiB of MHD memory.
 *
 * Files: server.c (daemon, the access handler: body accumulation, limits,
 * dispatch), auth.c (the bearer token, the UI's sign-in sessions and their
 * cookie, the cross-site check, /signin and /signout), router.c (the routing table, path ids, query
 * parameters), respond.c (responses, the JSON error shape, durable_code -> status, request
 * metrics), routes.c and routes_runs.c (one handler per route), sse.c (the
 * event hub and streams), static.c (the embedded UI and openapi.json).
 *
 * A request's life (struct request, http_int.h): MHD calls the access
 * handler first with *con_cls NULL: the route, method, token, Content-Type
 * and Content-Length are decided there and an error is answered at once
 * when the client has not sent its body yet (Expect: 100-continue, or no
 * body); otherwise the body is read and discarded and the error answered
 * after it, so that a client that sends its body without waiting is not
 * reset before it reads the answer (at most 8 MiB are read and dropped;
 * past that the connection is closed). Bodies accumulate in a struct dbuf
 * of at most 1 MiB (413 past it). %00 in a path stays "%00" (a decoded NUL
 * would cut the path short) and ids outside [A-Za-z0-9_.-]{1,128} are 404. The last call runs the
 * route's handler, which calls libdurable (blocking its polling thread for at most one commit) and
 * queues one response. A run's start does not block: the handler suspends its connection
 * (http_async_suspend) and calls durable_run_start_async, whose callback, on the engine's writer
 * thread after the commit, stores the outcome in the request and resumes the connection; MHD
 * then calls the access handler again and it answers. So all the starts in flight, from any
 * number of connections, share one commit.
 *
 * Statuses: 400 bad request (malformed JSON: "line L, column C: ..."; bad
 * parameters or body fields), 303 an HTML page of the UI without auth (to
 * /ui/signin.html), 401 missing or wrong token, 403 a POST authorized by the
 * session cookie that does not come from the UI's pages, 404 unknown route
 * or resource, 405 wrong method (with Allow), 409 the state forbids it, 413
 * body over 1 MiB, 415 content type, 422 invalid definition (every located
 * message in error.details), 503 the database or engine is unavailable.
 *
 * Live events (sse.c): one durable_subscribe for the whole server. Its
 * callback runs on the engine's writer thread after each commit (the
 * cluster thread on a shared database), formats the event once and
 * appends it to each matching client's buffer, resuming
 * the client's connection if it was suspended. An idle client holds no
 * thread: its content reader suspends the connection when its buffer is
 * empty. A timer thread (`durable-sse`) sends a comment every 15 s so dead
 * clients are noticed. A client more than 4 MiB behind is disconnected; it
 * reconnects with Last-Event-ID and misses nothing.
 *
 * Threads: MHD's polling threads run handlers and content readers; the
 * writer thread runs the hub callback and the start callback; `durable-sse`
 * sends pings; the caller of http_server_start/stop owns the server. Lock
 * order: hub->mu, then a client's mu, then MHD's internal mutexes
 * (MHD_resume_connection); MHD holds a response's mutex while it calls a
 * content reader, which takes the client's mu. The metrics mutex, the
 * sessions' mu (auth.c) and the server's async_mu are leaves (the start callback resumes its
 * connection before it takes async_mu). No lock is held across a call into durable.
 *
 * Stopping (http_server_stop): sse_hub_shutdown (no more events, no new
 * streams; every stream is told to end and its
 * connection resumed: MHD aborts when stopped with a suspended connection),
 * waiting for every start still suspended to be resumed by the engine (and
 * from then on starts wait for their commit on the polling thread),
 * MHD_stop_daemon (closes connections, joins the polling threads, frees
 * each stream through its response's free callback), then the hub.
 */
#ifndef DURABLE_HTTP_HTTP_H
#define DURABLE_HTTP_HTTP_H

#include "util/common.h"

#include "durable.h"

struct http_server;

struct http_options {
    const char *host;      /* address to bind: numeric or a name; NULL: 127.0.0.1 */
    int port;              /* 0: any free port (see http_server_url) */
    int workers;           /* polling threads, 1..64; 0: 4 */
    const char *token;     /* bearer token; NULL or "": none (loopback only) */
    int64_t session_ttl_s; /* a UI sign-in's life; 0: 12 hours */
    const char *db_label;  /* what /health reports as "db" */
    bool verbose;          /* one line per request on stderr */
};

/* Starts serving d (borrowed: it must outlive the server) on opts' address.
 * Refuses (DURABLE_EINVAL) an address that is not loopback when there is no
 * token, and a host that does not resolve; DURABLE_EIO when the socket
 * cannot be bound. OUT: *out, stopped and freed by http_server_stop. */
durable_code http_server_start(durable *d, const struct http_options *opts,
                               struct http_server **out, /* OUT */
                               durable_error *err);

/* Checks opts' address before anything starts: DURABLE_EINVAL when the
 * host does not resolve, or is not loopback while there is no token. */
durable_code http_check_listen(const struct http_options *opts, durable_error *err);

/* "http://HOST:PORT" with the port actually bound. Valid until stop. */
const char *http_server_url(const struct http_server *s);

/* Stops accepting connections, ends every event stream, closes every
 * connection (waiting for handlers in progress), joins the threads and frees
 * the server. d stays open. Accepts NULL. */
void http_server_stop(struct http_server *s);

#endif
