/*
 * common.h - included first by every .c file of durable.
 *
 * Sets the feature-test macros (so every file sees the same libc), pulls in
 * the C11 basics every file uses, and defines the always-on invariant check
 * DUR_ASSERT. Nothing here allocates or depends on any other layer.
 */
#ifndef DURABLE_UTIL_COMMON_H
#define DURABLE_UTIL_COMMON_H

#ifndef _GNU_SOURCE
#    define _GNU_SOURCE
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DUR_PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))
#define DUR_NORETURN                  __attribute__((noreturn))
#define DUR_UNUSED                    __attribute__((unused))
#define DUR_ARRAY_LEN(a)              (sizeof(a) / sizeof((a)[0]))

DUR_NORETURN void dur_assert_fail(const char *expr, const char *file, int line);

/* Invariants whose breach would corrupt state. Never for user or disk input. */
#define DUR_ASSERT(x)                                \
    do {                                             \
        if (!(x))                                    \
            dur_assert_fail(#x, __FILE__, __LINE__); \
    } while (0)

#ifdef NDEBUG
#    define DUR_DEBUG_ASSERT(x) ((void)0)
#else
#    define DUR_DEBUG_ASSERT(x) DUR_ASSERT(x)
#endif

#endif
