/*
 * expr_int.h - what expr.c shares with template.c: batch evaluation, and
 * the scanner's view of a program's strings.
 *
 * A template or a config has several expressions that all run on the same
 * context. expr_eval_jobs converts the context to jq's representation once
 * and runs every job under a single hold of the jq mutex, with one output
 * budget (EXPR_MAX_OUTPUT) for the lot. A job asks either for the value as
 * a json_t or for its text as jq's `tostring` gives it (strings raw, other
 * values compact JSON with jq's shortest number formatting), which is what
 * a template interpolates.
 */
#ifndef DURABLE_EXPR_EXPR_INT_H
#define DURABLE_EXPR_EXPR_INT_H

#include "util/common.h"

#include <jansson.h>

#include "expr/expr.h"

struct expr_job {
    const struct expr *e; /* IN, borrowed */
    bool as_text;         /* IN: produce text instead of value */
    json_t *value;        /* OUT (!as_text): owned by the job */
    char *text;           /* OUT (as_text): NUL-terminated, owned by the job */
    size_t text_len;      /* OUT (as_text): bytes, without the NUL */
    bool is_null;         /* OUT: the output was JSON null (or there was none) */
};

/* The index *failed takes when the context itself is the problem. */
#define EXPR_JOB_CONTEXT ((size_t)-1)

/* Runs jobs[0..n) in order on ctx (borrowed). On success every job holds its
 * output (release with expr_jobs_release). On failure no job holds anything,
 * *failed is the index of the failing job (EXPR_JOB_CONTEXT when the context
 * could not be converted) and err says why, without location. Takes the jq
 * mutex once. */
durable_code expr_eval_jobs(struct expr_job *jobs, size_t n, json_t *ctx, size_t *failed,
                            durable_error *err);

/* Frees the outputs of jobs[0..n); the jobs array itself is the caller's. */
void expr_jobs_release(struct expr_job *jobs, size_t n);

/* Where the jq program src ends, read by template.c's scanner as jq's
 * lexer reads it: inside a string (or an interpolation in one), or with
 * strings and interpolations nested deeper than the scanner follows (32).
 * libjq 1.6 leaks the string it was reading when the program ends in one,
 * so expr_compile refuses both before jq sees them. body, when not NULL,
 * is told of every \( ) interpolation's body as its ")" is read (offsets
 * of its first byte and of that ")"), innermost first; when it returns
 * false the scan stops there (EXPR_SRC_STOPPED). */
enum expr_src_end { EXPR_SRC_OK, EXPR_SRC_IN_STRING, EXPR_SRC_TOO_DEEP, EXPR_SRC_STOPPED };
enum expr_src_end expr_src_end(const char *src, bool (*body)(void *ud, size_t from, size_t to),
                               void *ud);

#endif
