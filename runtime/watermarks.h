/* Watermark generation for one source subtask: bounded out-of-orderness per partition, and
 * the minimum over the partitions the subtask owns (Flink's per-split watermarks).
 *
 * - A partition that is owned but has sent nothing yet holds the watermark back.
 * - A partition that has ENDED (the reader says it will deliver nothing more: the end offset
 *   of a bounded run, the end of a file) stops holding it back at once — by offset, not by a
 *   timer.
 * - A partition is IDLE only when the reader says it is caught up with the log end AND it
 *   produced nothing for the idle timeout: idleness is for live streams. During a replay of
 *   history no partition is caught up, so none is idle, and the watermark — hence lateness —
 *   depends only on the log (docs/semantics.md).
 * Each record's carried watermark is its partition's watermark through the records before it
 * (kp_wm_observe). Owned by the source subtask's thread. */
#ifndef KP_WATERMARKS_H
#define KP_WATERMARKS_H

#include <kappa/kappa.h>

typedef struct kp_wm_part {
    kp_time max_ts;    /* KP_TIME_MIN until the first record */
    kp_time last_data; /* wall clock of the last record, or of the assignment */
    int owned;
    int paused;    /* the source asked the reader to stop fetching it (alignment) */
    int ended;     /* the reader said it will deliver nothing more */
    int caught_up; /* the reader said it is at the log end right now (-1: cannot tell) */
} kp_wm_part;

typedef struct kp_wm_tracker {
    kp_time out_of_order;
    kp_time idle_timeout; /* 0 = partitions never go idle */
    kp_wm_part *parts;    /* indexed by partition + 1 (files use partition -1) */
    int cap;
} kp_wm_tracker;

void kp_wm_init(kp_wm_tracker *t, kp_time out_of_order, kp_time idle_timeout);
void kp_wm_free(kp_wm_tracker *t);

/* Replaces the set of owned partitions; newly owned ones start their idleness clock at now.
 * Returns 0 or -1 (out of memory, or a partition id outside 0..65535). */
int kp_wm_assign(kp_wm_tracker *t, const int32_t *parts, int n, kp_time now);

/* Adds one owned partition (a record from a partition the reader did not announce). */
int kp_wm_own(kp_wm_tracker *t, int32_t partition, kp_time now);

/* The watermark of one partition: max_ts - out_of_order - 1, KP_TIME_MIN before its first
 * record (saturating: never wraps around). */
static inline kp_time kp_wm_of(const kp_wm_tracker *t, const kp_wm_part *p)
{
    if (p->max_ts == KP_TIME_MIN || p->max_ts < KP_TIME_MIN + t->out_of_order + 1)
        return KP_TIME_MIN;
    return p->max_ts - t->out_of_order - 1;
}

/* A record of `partition` with event time ts arrived (at wall clock now): *cwm is the
 * partition's watermark through the records before it (its carried watermark). 0 or -1. */
static inline int kp_wm_observe(kp_wm_tracker *t, int32_t partition, kp_time ts, kp_time now,
                                kp_time *cwm)
{
    int i = partition + 1;
    if ((i < 0 || i >= t->cap || !t->parts[i].owned) && kp_wm_own(t, partition, now) != 0)
        return -1;
    kp_wm_part *p = &t->parts[i];
    *cwm = kp_wm_of(t, p);
    if (ts > p->max_ts)
        p->max_ts = ts;
    p->last_data = now;
    return 0;
}

/* The current watermark: the minimum over owned partitions that are neither ended nor idle
 * (KP_TIME_MIN while one of them has no data; KP_TIME_MAX when every owned partition ended).
 * *all_idle says the subtask owns no partition, or every owned partition that has not ended
 * is idle (then the return value is meaningless). */
kp_time kp_wm_current(const kp_wm_tracker *t, kp_time now, int *all_idle);

#endif
