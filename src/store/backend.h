/*
 * backend.h - what the store's backends share: the helpers of store.c that
 * every backend's transitions and reads use, apart from the contract
 * (store.h) the engine sees.
 *
 * Only src/store/ includes it. Nothing here knows a database: a backend
 * keeps its SQL in its own folder (sqlite/).
 */
#ifndef DURABLE_STORE_BACKEND_H
#define DURABLE_STORE_BACKEND_H

#include "util/common.h"

#include "store/store.h"

/* The backends store.c knows (each in its own folder). */
extern const struct store_ops sqlite_store_ops;

/* Where an event belongs: its run, its step (or NULL) and its time. */
struct event_key {
    const char *run_id;
    const char *step_id;
    int64_t at_ms;
};

/* Adds an event a backend has written to ev; takes ownership of data_json. */
void store_events_push(struct store_events *ev, const struct event_key *k, int64_t seq, int64_t gid,
                       const char *type, char *data_json);

/* Frees the events of `ev` from index n on and truncates it to n. */
void store_events_truncate(struct store_events *ev, size_t n);

/* Clamps a page size: 0 gives dflt, then into 1..max. */
int store_clamp_limit(int limit, int dflt, int max);

#endif
