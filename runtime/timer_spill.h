/* Timers of keyed operators that do not all stay in memory: a timer heap (timer_heap.h) whose
 * later timers overflow into a RocksDB column family ordered by time.
 *
 * When the heap's timers and keys pass its byte limit, it is sorted by time (a sorted array is a valid heap)
 * and its later half is written, in one write batch without WAL, under
 *   due time (8, big endian, sign flipped) | key group (2, BE) | aux (8, BE, sign flipped) | key
 * with the key's hash as the value; `disk_min` remembers the earliest time on disk. Before a
 * timer is popped, timers due at or before it that are on disk are read back, in key (= time)
 * order, by one range scan of about half the limit, and deleted (one point delete each). Firing order is
 * the order of due times, wherever the timers were; the owner sees the same timers as with an
 * in-memory heap. The heap array never shrinks: it holds up to about twice the limit.
 *
 * Time comes first so that firing is one range scan from the start; the key group follows, so
 * a rescale reads the family once and keeps the timers of its key groups (docs/state.md).
 * Stale timers (their session merged, their process timer deleted) may be spilled too: the
 * owner skips them when they pop, as it does in memory.
 *
 * @locality one subtask thread (the owning operator's); no locks. */
#ifndef KP_TIMER_SPILL_H
#define KP_TIMER_SPILL_H

#include "key_spill.h"
#include "timer_heap.h"

typedef struct kp_timer_spill {
    kp_key_spill *sp; /* the operator's database (opened by its key spill) */
    const char *cf_name;
    int cf;
    size_t limit;     /* heap bytes above which the later half goes to RocksDB */
    int on_disk;      /* timers are in RocksDB */
    kp_time disk_min; /* every timer in RocksDB is due at or after this */
    kp_state_batch *batch;
    kp_buf rkey;
    long long spills, timers_out, timers_in;
} kp_timer_spill;

/* limit 0: the heap never spills. */
void kp_timer_spill_init(kp_timer_spill *ts, kp_key_spill *sp, const char *cf_name, size_t limit);
void kp_timer_spill_finish(kp_timer_spill *ts);

/* Spills the later half of `h` if it is over the limit. Invalidates every timer key taken from
 * `h` before. 0, or -1 after kp_subtask_fail. */
int kp_timer_spill_check(kp_timer_spill *ts, kp_timer_heap *h);

/* Pops into *t the earliest timer, in memory or on disk, if it is due at `upto`: 1; 0 if none
 * is due; -1 after kp_subtask_fail. The popped timer's key (kp_timer_key) stays valid until
 * the next push, pop or filter of `h` or call here. */
int kp_timer_spill_pop_due(kp_timer_spill *ts, kp_timer_heap *h, kp_time upto, kp_timer *t);

/* Restore: deletes every timer this column family holds (a restored database's spilled timers;
 * the owner rebuilds its timers from its keyed state) and forgets that any are on disk. 0, or
 * -1 after kp_subtask_fail. */
int kp_timer_spill_reset(kp_timer_spill *ts);

/* Timers pending anywhere: in memory, or some on disk. */
static inline int kp_timer_spill_any(const kp_timer_spill *ts, const kp_timer_heap *h)
{
    return h->n > 0 || ts->on_disk;
}

#endif
