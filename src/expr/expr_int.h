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

/* Does the jq program src end inside a string (or an interpolation in
 * one)? Read by template.c's scanner; false when strings nest deeper than
 * it follows. libjq 1.6 leaks the string it was reading when the program
 * ends there, so expr_compile refuses such a program before jq sees it. */
bool expr_src_in_string(const char *src);

#endif
