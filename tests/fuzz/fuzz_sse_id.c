/*
 * fuzz_sse_id.c - fuzz target: a Last-Event-ID header's value, as the SSE
 * routes read it (http_event_id_parse). What it accepts must be exactly
 * decimal digits, and the id printed back must be the same digits (less
 * leading zeros). The whole request path, this header included, is
 * fuzz_http's.
 */
#include "util/common.h"

#include "fuzz.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    durable_error err = { 0 };
    int64_t id = -1;

    memcpy(s, data, size);
    s[size] = '\0';
    if (http_event_id_parse(s, &id, &err) == DURABLE_OK) {
        char back[32];
        const char *digits = s;
        DUR_ASSERT(id >= 0 && strspn(s, "0123456789") == strlen(s));
        while (digits[0] == '0' && digits[1] != '\0')
            digits++;
        snprintf(back, sizeof(back), "%" PRId64, id);
        DUR_ASSERT(strcmp(back, digits) == 0);
    } else {
        DUR_ASSERT(err.code == DURABLE_EINVAL && id == -1);
    }
    free(s);
    return 0;
}
