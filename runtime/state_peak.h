/* The peak of RocksDB's memory of one keyed subtask's database, for --stats.
 *
 * RocksDB's memory (block cache in use, memtables, table readers: kp_state_memory_usage)
 * rises and falls as memtables fill and flush; read once at the end of a run it says little
 * about what the run held. A keyed operator samples it on its tick, at most once a second
 * (the properties cost a few microseconds), and once more at the end, and reports the peak
 * into the job's state_rocksdb metric.
 *
 * @locality the operator's subtask thread */
#ifndef KP_STATE_PEAK_H
#define KP_STATE_PEAK_H

#include <stdatomic.h>

#include "engine.h"
#include "state.h"

typedef struct kp_state_peak {
    size_t peak;    /* bytes */
    long long next; /* mono ms of the next sample */
} kp_state_peak;

/* Samples `st` (NULL: not open yet, nothing to sample) if a second has passed since the last
 * sample, or at once when now_ms is 0. */
static inline void kp_state_peak_sample(kp_state_peak *pk, kp_state *st, long long now_ms)
{
    if (!st || (now_ms && now_ms < pk->next))
        return;
    pk->next = now_ms + 1000;
    kp_state_memory mem;
    kp_state_memory_usage(st, &mem);
    size_t bytes = mem.block_cache + mem.memtables + mem.table_readers;
    if (bytes > pk->peak)
        pk->peak = bytes;
}

/* At the end of a run: a last sample, and the peak added to the job's state_rocksdb. */
static inline void kp_state_peak_report(kp_state_peak *pk, kp_state *st, kp_metrics *m)
{
    kp_state_peak_sample(pk, st, 0);
    atomic_fetch_add_explicit(&m->state_rocksdb, (long long)pk->peak, memory_order_relaxed);
}

#endif
