/* List and map state of one key, for keyed process functions (op_process.c).
 *
 * In memory, allocated the first time a key uses a list or a map (never per record): a list
 * is its items back to back in one buffer plus an offset table; a map is a key table from
 * entry key to (offset, length) of its value in a value buffer. Removing a map entry leaves a
 * tombstone; the map is compacted when tombstones outnumber live entries, so memory stays
 * proportional to what is live. Owned by the process operator's subtask thread. */
#ifndef KP_KEYED_STATE_H
#define KP_KEYED_STATE_H

#include "engine.h"
#include "keytable.h"

typedef struct kp_keyed_state {
    kp_buf items;   /* list items, back to back */
    uint32_t *offs; /* list: start of item i in items; offs[n] = end */
    uint32_t n, cap;
    kp_keytable map; /* entry key → kp_map_slot */
    kp_buf vals;     /* map values */
    size_t live, dead;
} kp_keyed_state;

kp_keyed_state *kp_keyed_state_new(void);
void kp_keyed_state_free(kp_keyed_state *ks);

/* Each returns 0, or -1 when out of memory. */
int kp_list_add(kp_keyed_state *ks, kp_bytes item);
kp_bytes kp_list_get(const kp_keyed_state *ks, size_t i); /* empty if i is out of range */
void kp_list_clear(kp_keyed_state *ks);

int kp_map_put(kp_keyed_state *ks, kp_bytes key, kp_bytes value);
int kp_map_get(const kp_keyed_state *ks, kp_bytes key, kp_bytes *value); /* 1 found, 0 not */
int kp_map_remove(kp_keyed_state *ks, kp_bytes key);                     /* 1 removed */
int kp_map_next(const kp_keyed_state *ks, size_t *cursor, kp_bytes *key, kp_bytes *value);
void kp_map_clear(kp_keyed_state *ks);

/* Bytes held, for memory reporting. */
size_t kp_keyed_state_bytes(const kp_keyed_state *ks);

/* Spilling (key_spill.h): save appends the state to `out` as it is in memory, tables and all,
 * so that load rebuilds it exactly — the same map iteration order, so what a function sees
 * does not depend on whether its key was spilled. save returns 0 or -1 (out of memory); load
 * consumes the saved bytes from *in and returns the state, or NULL (out of memory or bytes
 * that are no saved state). */
int kp_keyed_state_save(const kp_keyed_state *ks, kp_buf *out);
kp_keyed_state *kp_keyed_state_load(kp_bytes *in);

/* What a process operator (op_process.c) holds: for tests and memory reports.
 * @locality the operator's subtask thread, or any thread once it has stopped. */
typedef struct kp_process_counts {
    size_t keys;           /* keys in the value table */
    size_t pending_timers; /* timers registered and neither fired nor deleted (the set) */
    size_t heap_entries;   /* timer heap entries, pending and stale */
    size_t bytes;          /* tables, heaps, list and map state */
    size_t cache_bytes;    /* what counts against state_cache_bytes: the value table and
                              what its keys hold (list/map state, timer arrays) */
    long long spills, keys_spilled, keys_read_back; /* key_spill.h */
    long long timers_spilled, timers_read_back;     /* timer_spill.h, both kinds */
} kp_process_counts;

void kp_op_process_counts(const kp_op *op, kp_process_counts *c);

#endif
