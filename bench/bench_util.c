/*
 * bench_util.c - clocks, CPU time, /proc readings, percentiles and the JSON
 * result line shared by the benchmark programs (bench_util.h).
 */
#define _GNU_SOURCE

#include "bench_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

long bench_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    size_t key_len = strlen(key);
    char line[256];
    long value = -1;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
            value = strtol(line + key_len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return value;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double p)
{
    size_t rank;

    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    /* Nearest rank: the smallest value with at least p% of values <= it. */
    rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

char *bench_read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long len;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)len + 1);
        if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
            buf[len] = '\0';
            if (out_len)
                *out_len = (size_t)len;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static bool json_first = true;

void bench_json_begin(void)
{
    json_first = true;
    fputc('{', stdout);
}

void bench_json_num(const char *key, double value)
{
    printf("%s\"%s\": %.9g", json_first ? "" : ", ", key, value);
    json_first = false;
}

void bench_json_str(const char *key, const char *value)
{
    const char *p;

    printf("%s\"%s\": \"", json_first ? "" : ", ", key);
    for (p = value; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            printf("\\u%04x", (unsigned char)*p);
        else
            fputc(*p, stdout);
    }
    fputc('"', stdout);
    json_first = false;
}

void bench_json_end(void)
{
    fputs("}\n", stdout);
    fflush(stdout);
}

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    if (strcmp(argv[*i], name) != 0)
        return NULL;
    if (*i + 1 >= argc)
        bench_die("%s needs a value", name);
    (*i)++;
    return argv[*i];
}

bool bench_opt_long(int argc, char **argv, int *i, const char *name, long *out)
{
    const char *v = opt_value(argc, argv, i, name);
    char *end;

    if (!v)
        return false;
    errno = 0;
    *out = strtol(v, &end, 10);
    if (errno || *end || end == v)
        bench_die("%s: not an integer: \"%s\"", name, v);
    return true;
}

bool bench_opt_double(int argc, char **argv, int *i, const char *name, double *out)
{
    const char *v = opt_value(argc, argv, i, name);
    char *end;

    if (!v)
        return false;
    errno = 0;
    *out = strtod(v, &end);
    if (errno || *end || end == v)
        bench_die("%s: not a number: \"%s\"", name, v);
    return true;
}

bool bench_opt_str(int argc, char **argv, int *i, const char *name, const char **out)
{
    const char *v = opt_value(argc, argv, i, name);

    if (!v)
        return false;
    *out = v;
    return true;
}
