/*
 * fuzz_http.c - fuzz target: an HTTP request through the real server, in
 * this process: libmicrohttpd, the access handler and its limits, auth,
 * the router (method, path, query), every route's handler, SSE streams
 * (Last-Event-ID) and the engine behind them, on a database in a
 * temporary directory ($TMPDIR) made once (LLVMFuzzerInitialize) and
 * removed at exit.
 *
 * An input is "METHOD TARGET\n", then header lines "Name: value\n" up to
 * an empty line, then the body. The harness adds Host, Connection: close
 * and Content-Length (unless the input gives its own), sends the request
 * on a new loopback connection and reads the answer until the server
 * closes it, or, for a stream, until it has been quiet for IDLE_MS. The
 * server has a token (TOKEN): the seeds carry "Authorization: Bearer
 * fuzz-token" so the routes behind auth are reached. http_request steps may
 * only reach loopback (durable_options.http_allow). The routing table
 * alone, on every method and path, is checked with router_match too.
 * Seeds: tests/fuzz/corpus/http.
 */
#include "util/common.h"

#include "fuzz.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "durable.h"
#include "http/http.h"
#include "http/http_int.h"

#define TOKEN        "fuzz-token"
#define IDLE_MS      50    /* a stream quiet this long is done with */
#define FIRST_MS     10000 /* the first byte of an answer (a commit) */
#define MAX_REQUEST  ((size_t)2 * 1024 * 1024)
#define MAX_HEAD_LEN 8192

static durable *engine;
static struct http_server *server;
static int port;
static char dir[512];
static char db_path[sizeof(dir) + 16];

static const char approval_def[] =
        "{\"name\": \"fz\", \"steps\": [{\"id\": \"a\", \"type\": \"approval\"},"
        " {\"id\": \"b\", \"depends_on\": [\"a\"], \"config\": {\"duration_seconds\": 0}}]}";

static void cleanup(void)
{
    char path[sizeof(db_path) + 8];

    http_server_stop(server);
    durable_close(engine);
    unlink(db_path);
    snprintf(path, sizeof(path), "%s-wal", db_path);
    unlink(path);
    snprintf(path, sizeof(path), "%s-shm", db_path);
    unlink(path);
    snprintf(path, sizeof(path), "%s-lock", db_path);
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    durable_options dopts = { .durability = DURABLE_DURABILITY_PROCESS,
                              .http_allow = "127.0.0.1,localhost" };
    struct http_options hopts = { .host = "127.0.0.1", .token = TOKEN, .workers = 2 };
    durable_error err = { 0 };
    durable_run_request req = { .workflow = "fz", .idempotency_key = "k" };
    char *run_id = NULL;
    const char *colon;
    const char *tmp = getenv("TMPDIR"); /* NOLINT(concurrency-mt-unsafe): no thread yet */

    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "%s/durable-fuzz-http-XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    DUR_ASSERT(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof(db_path), "%s/fuzz.db", dir);
    dopts.db_path = db_path;
    engine = durable_open(&dopts, &err);
    DUR_ASSERT(engine != NULL);
    DUR_ASSERT(durable_workflow_register(engine, approval_def, strlen(approval_def), NULL, NULL,
                                         NULL, &err) == DURABLE_OK);
    DUR_ASSERT(durable_run_start(engine, &req, &run_id, NULL, &err) == DURABLE_OK);
    durable_free(run_id);
    DUR_ASSERT(http_server_start(engine, &hopts, &server, &err) == DURABLE_OK);
    colon = strrchr(http_server_url(server), ':');
    port = (int)strtol(colon + 1, NULL, 10); /* our own URL: digits */
    atexit(cleanup);
    return 0;
}

/* Appends the request the input describes to out. */
static void build_request(const char *in, size_t len, struct dbuf *out)
{
    const char *nl = memchr(in, '\n', len);
    const char *p, *body, *end = in + len;
    bool has_length = false;
    size_t body_len;

    if (!nl)
        nl = end;
    dbuf_addf(out, "%.*s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", (int)(nl - in), in);
    p = nl < end ? nl + 1 : end;
    while (p < end && *p != '\n') {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e)
            e = end;
        if ((size_t)(e - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            has_length = true;
        dbuf_addf(out, "%.*s\r\n", (int)(e - p), p);
        p = e < end ? e + 1 : end;
    }
    body = p < end ? p + 1 : end;
    body_len = (size_t)(end - body);
    if (!has_length)
        dbuf_addf(out, "Content-Length: %zu\r\n", body_len);
    dbuf_add(out, "\r\n", 2);
    dbuf_add(out, body, body_len);
}

/* Sends the request on a new connection and reads the answer. */
static void exchange(const struct dbuf *rq)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t sent = 0, got = 0;
    char buf[16384];

    DUR_ASSERT(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    DUR_ASSERT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    while (sent < rq->len) {
        ssize_t n = send(fd, rq->buf + sent, rq->len - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server answered early (413, 400) and closed */
        sent += (size_t)n;
    }
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;
        if (poll(&pfd, 1, got ? IDLE_MS : FIRST_MS) <= 0)
            break;
        n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in;
    const char *sp;
    struct request rq = { 0 };
    struct dbuf out;

    if (size > MAX_REQUEST)
        return 0;
    in = malloc(size + 1); /* NUL-terminated for the string functions */
    memcpy(in, data, size);
    in[size] = '\0';
    sp = memchr(in, ' ', size < MAX_HEAD_LEN ? size : MAX_HEAD_LEN);
    if (sp) {
        char method[16], path[MAX_HEAD_LEN];
        size_t ml = (size_t)(sp - in);
        size_t pl = strcspn(sp + 1, " ?\n");
        if (ml < sizeof(method) && pl < sizeof(path)) {
            memcpy(method, in, ml);
            method[ml] = '\0';
            memcpy(path, sp + 1, pl);
            path[pl] = '\0';
            (void)router_match(&rq, method, path);
        }
    }
    dbuf_init(&out, MAX_REQUEST * 2);
    build_request(in, size, &out);
    exchange(&out);
    dbuf_release(&out);
    free(in);
    return 0;
}
