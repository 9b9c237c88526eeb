/*
 * static.c - the web UI and the OpenAPI document, served from memory.
 *
 * The files of web/ are compiled into the binary (cmake/embed.cmake writes
 * http_assets[] at build time), so there is no filesystem access at run
 * time and no path can reach outside the UI. A requested path is still
 * normalised first: a segment that is empty, ".", ".." or holds a byte
 * outside [A-Za-z0-9_.-] is a 404, as is any name not embedded. "/" is
 * index.html, "/ui/NAME" is web/NAME, "/openapi.json" the API description.
 * Pages carry a Content-Security-Policy without inline script and are never
 * framed (HTML_CSP); every response of the server says nosniff (respond.c).
 */
#include "util/common.h"

#include "http/http_int.h"

#include <string.h>

#define OPENAPI_ASSET ":openapi.json" /* ':' keeps it out of /ui/ */

/* The pages' policy: scripts only from our own files (no inline script or
 * handler runs, so injected markup cannot run code), no plugins, no <base>,
 * forms only to us, and no page may frame ours (clickjacking; X-Frame-Options
 * says the same to older browsers). Inline styles stay allowed: the pages
 * set a few style attributes. */
#define HTML_CSP                                                                     \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "      \
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; " \
    "frame-ancestors 'none'"

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".mjs", "text/javascript; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".svg", "image/svg+xml" },
    { ".json", "application/json" },
    { ".png", "image/png" },
    { ".ico", "image/x-icon" },
    { ".txt", "text/plain; charset=utf-8" },
    { ".woff2", "font/woff2" },
};

const struct http_asset *http_asset_find(const char *name)
{
    size_t i;

    for (i = 0; i < http_n_assets; i++) {
        if (strcmp(http_assets[i].name, name) == 0)
            return &http_assets[i];
    }
    return NULL;
}

static const char *content_type_of(const char *name)
{
    size_t len = strlen(name), i;

    for (i = 0; i < DUR_ARRAY_LEN(content_types); i++) {
        size_t el = strlen(content_types[i].ext);
        if (len > el && strcmp(name + len - el, content_types[i].ext) == 0)
            return content_types[i].type;
    }
    return "application/octet-stream";
}

/* Is path a clean relative path: segments of [A-Za-z0-9_.-], none of them
 * empty, "." or ".."? */
static bool path_clean(const char *path)
{
    const char *seg = path;

    for (;;) {
        size_t n = strcspn(seg, "/"), i;
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        for (i = 0; i < n; i++) {
            char c = seg[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-'))
                return false;
        }
        if (seg[n] == '\0')
            return true;
        seg += n + 1;
    }
}

static enum MHD_Result reply_asset(struct request *rq, const char *name, const char *type)
{
    const struct http_asset *a = http_asset_find(name);
    struct MHD_Response *resp;

    if (!a)
        return http_reply_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no such file");
    resp = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (strcmp(type, "text/html; charset=utf-8") == 0) {
        MHD_add_response_header(resp, "Content-Security-Policy", HTML_CSP);
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
    }
    return http_reply_response(rq, MHD_HTTP_OK, resp);
}

enum MHD_Result route_openapi(struct request *rq)
{
    return reply_asset(rq, OPENAPI_ASSET, "application/json");
}

enum MHD_Result route_ui_index(struct request *rq)
{
    return reply_asset(rq, "index.html", content_type_of("index.html"));
}

enum MHD_Result route_favicon(struct request *rq)
{
    return reply_asset(rq, "favicon.svg", content_type_of("favicon.svg"));
}

enum MHD_Result route_ui_file(struct request *rq)
{
    const char *path = rq->rest;

    if (!*path)
        return route_ui_index(rq);
    if (!path_clean(path))
        return http_reply_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "no such file");
    return reply_asset(rq, path, content_type_of(path));
}
