/*
 * bench_util.h - small helpers shared by the benchmark programs: clocks,
 * CPU time, /proc readings, percentiles, and the one-line JSON result.
 *
 * Each benchmark program prints exactly one JSON object on stdout (its
 * figures) and its progress on stderr; bench/run.py reads the object.
 * Nothing here is thread-safe unless said: the programs call it from their
 * main thread, except bench_now_ns, which any thread may call.
 */
#ifndef DURABLE_BENCH_UTIL_H
#define DURABLE_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. Any thread. */
int64_t bench_now_ns(void);

/* CPU time (user + system) of the whole process so far, in seconds. */
double bench_cpu_seconds(void);

/* A "Key:   N kB" (or plain number) field of /proc/self/status, -1 if absent.
 * bench_status_kib("VmHWM"), bench_status_kib("Threads"). */
long bench_status_kib(const char *key);

/* The p-th percentile (0..100, nearest rank) of v[0..n), sorting v. */
double bench_percentile(double *v, size_t n, double p);

/* Reads a whole file into a NUL-terminated malloc'd buffer; NULL on error. */
char *bench_read_file(const char *path, size_t *out_len);

/* Dies with a message on stderr (exit 1). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The JSON result on stdout: bench_json_begin, any number of fields, end. */
void bench_json_begin(void);
void bench_json_num(const char *key, double value);
void bench_json_str(const char *key, const char *value);
void bench_json_end(void);

/* Parses "--name value" style integer/double/string options: returns the
 * value after argv[i] when argv[i] is name, advancing *i; else def. */
bool bench_opt_long(int argc, char **argv, int *i, const char *name, long *out);
bool bench_opt_double(int argc, char **argv, int *i, const char *name, double *out);
bool bench_opt_str(int argc, char **argv, int *i, const char *name, const char **out);

#endif
