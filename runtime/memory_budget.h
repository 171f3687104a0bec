/* One memory budget per slot, split into the parts that hold memory while a job runs.
 *
 * A slot holds one subtask of each task of a job (slot sharing), so its memory is: the read-ahead
 * of its source subtask (Kafka fetch queues), the record batches of the channels into its
 * subtasks, the write-back caches of its keyed subtasks, their RocksDB block caches and
 * memtables, and what no knob bounds (code, thread stacks, allocator slack, sink buffers). The
 * split is fixed shares of the slot's budget, each with a floor, so that one number — the
 * slot's — decides the process's footprint: p slots need about p times it (docs/state.md,
 * "Memory"). Explicit per-part settings (--state-cache-mb, ...) override a share.
 *
 * Pure functions: no state, any thread. */
#ifndef KP_MEMORY_BUDGET_H
#define KP_MEMORY_BUDGET_H

#include <stddef.h>
#include <stdio.h>

#include "exec_config.h"

#define KP_SLOT_MEMORY_DEFAULT ((size_t)512 << 20)
#define KP_SLOT_MEMORY_MIN     ((size_t)32 << 20)

typedef struct kp_slot_memory {
    size_t total;         /* the slot's budget */
    size_t source_fetch;  /* read-ahead of the slot's source subtask(s) (Kafka memory_mb) */
    size_t network;       /* record batches of all channels into the slot's subtasks */
    size_t state_cache;   /* write-back caches, per keyed subtask of the slot */
    size_t rocksdb_cache; /* RocksDB block cache, per keyed subtask */
    size_t memtable;      /* RocksDB memtable size, per column family (2 memtables each,
                             2 column families per keyed subtask) */
    size_t reserved;      /* not bounded by a knob: code, stacks, allocator, sink buffers */
} kp_slot_memory;

/* Splits `total` bytes over the parts for a slot that holds `keyed` keyed subtasks (window,
 * session or process operators; 0 is fine). Returns 0, or -1 with the reason in errstr when
 * `total` is below KP_SLOT_MEMORY_MIN. @locality any thread */
int kp_slot_memory_split(size_t total, int keyed, kp_slot_memory *out, char *errstr, size_t errlen);

/* "slot budget 512 MiB: source fetch 64, network 64, ..." — one line for --stats. */
void kp_slot_memory_describe(const kp_slot_memory *m, char *buf, size_t len);

/* What a run held next to what it was given, for --stats and the taskmanager's end-of-run
 * log: budgets are for the whole process (`slots` slots, `keyed` keyed subtasks and `sources`
 * source subtasks over all slots, `network` bytes for every exchange). */
typedef struct kp_memory_shape {
    int slots, keyed, sources;
    size_t network;
} kp_memory_shape;

/* Prints one table to `f`, a row per part: budget and peak used (MiB), then the process's
 * peak RSS (getrusage) next to the sum of the slots' budgets. @locality any thread */
void kp_memory_report(FILE *f, const kp_slot_memory *m, const kp_memory_shape *shape,
                      const kp_exec_stats *s);

#endif
