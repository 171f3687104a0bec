/* Watermark alignment between the subtasks of one source (Flink's maxAllowedWatermarkDrift),
 * decided by a coordinator from messages: each source subtask reports its watermark (or that
 * it is idle, or done), and the coordinator announces to every subtask how far it may run —
 * the slowest active subtask's watermark plus the allowed drift. A subtask past its bound stops
 * reading until the bound moves. The slowest subtask is never held, so this cannot deadlock.
 *
 * Alignment bounds memory (a window holds the event time between the slowest and the fastest
 * input) and latency; results do not depend on it (lateness is judged by each record's own
 * partition, docs/semantics.md). It works from messages only (mailbox.h), so the same
 * coordinator runs in the executor's thread today and in the jobmanager once sources run on
 * several taskmanagers. @locality the coordinator's thread. */
#ifndef KP_ALIGN_H
#define KP_ALIGN_H

#include "mailbox.h"

typedef struct kp_align kp_align;

/* The coordinator state of one source task with `parallelism` subtasks; NULL when out of
 * memory. drift < 0 turns alignment off (every announced bound is KP_TIME_MAX). */
kp_align *kp_align_new(int parallelism, kp_time drift);
void kp_align_free(kp_align *a);

/* Applies a subtask's report (KP_CTL_WATERMARK, KP_CTL_IDLE or KP_CTL_DONE) and, when the
 * bound moved, posts KP_CTL_ALIGN with the new bound to every subtask's mailbox (`boxes`,
 * indexed by subtask). */
void kp_align_report(kp_align *a, const kp_ctl *msg, kp_mailbox *const *boxes);

/* a + b without overflow (clamped to the kp_time range). */
static inline kp_time kp_time_add_sat(kp_time a, kp_time b)
{
    kp_time r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? KP_TIME_MAX : KP_TIME_MIN;
    return r;
}

#endif
