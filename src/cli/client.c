/*
 * client.c - the HTTP client of the commands that talk to a running
 * server (approve, reject, runs, show, cancel, retry, logs): one blocking
 * libcurl easy request per call, with connect and total time limits, the
 * bearer token when there is one, and the answer's body read up to
 * CLIENT_MAX_BODY bytes.
 *
 * A failure is printed here, once, as the commands print theirs: "durable
 * CMD: could not reach URL: why" or "durable CMD: the server answered
 * STATUS: MESSAGE" (the message of the server's {"error": {"message"}}).
 * The caller has called curl_global_init. One thread.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define CLIENT_MAX_BODY  ((size_t)16 * 1024 * 1024)
#define CLIENT_TIMEOUT_S 30L

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct dbuf *b = ud;
    size_t len = size * n;

    if (dbuf_add(b, p, len) != DURABLE_OK)
        return 0; /* over the limit: curl stops with CURLE_WRITE_ERROR */
    return len;
}

/* The server's error message in body ({"error": {"message"}}), or the body. */
static void print_refusal(const char *cmd, long status, const struct dbuf *body)
{
    json_t *j = json_loads(body->buf, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));

    fprintf(stderr, "durable %s: the server answered %ld: %s\n", cmd, status,
            msg ? msg : (body->len ? body->buf : "(no body)"));
    json_decref(j);
}

char *cli_url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    struct dbuf b;
    char *text;

    dbuf_init(&b, 0);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c)) {
            dbuf_add(&b, s, 1);
        } else {
            char enc[3] = { '%', hex[c >> 4], hex[c & 15] };
            dbuf_add(&b, enc, 3);
        }
    }
    text = dbuf_detach(&b, NULL);
    return text;
}

int cli_http_call(const struct cli_server *srv, const char *method, const char *path,
                  const char *body, char **out_body)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    struct dbuf resp;
    char *url = NULL, *auth = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    size_t n = strlen(srv->url);
    long status = 0;
    CURLcode cc;
    int rc = 1;

    dbuf_init(&resp, CLIENT_MAX_BODY);
    if (!h) {
        fprintf(stderr, "durable %s: could not start libcurl\n", srv->cmd);
        goto done;
    }
    while (n > 0 && srv->url[n - 1] == '/')
        n--;
    url = xasprintf("%.*s%s", (int)n, srv->url, path);
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    if (srv->token) {
        auth = xasprintf("Authorization: Bearer %s", srv->token);
        hdr = curl_slist_append(hdr, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, CLIENT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        fprintf(stderr, "durable %s: could not reach %s: %s\n", srv->cmd, srv->url,
                errbuf[0] ? errbuf : curl_easy_strerror(cc));
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        print_refusal(srv->cmd, status, &resp);
        goto done;
    }
    if (out_body)
        *out_body = dbuf_detach(&resp, NULL);
    rc = 0;
done:
    curl_slist_free_all(hdr);
    if (h)
        curl_easy_cleanup(h);
    free(auth);
    free(url);
    dbuf_release(&resp);
    return rc;
}
