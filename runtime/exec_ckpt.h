/* A subtask's side of a checkpoint (exec_ckpt.c): taking its snapshot once the barrier is
 * aligned (consumers, exec_input.c) or triggered (sources, source.c), declining one, and
 * where finished snapshots go — the process's uploader (exec_upload.c). Shared by the
 * executor's parts and the operators that decline (the sink). */
#ifndef KP_EXEC_CKPT_H
#define KP_EXEC_CKPT_H

#include "checkpoint.h"
#include "engine.h"

/* What a subtask knows about checkpoints; kp_subtask.ckpt, NULL when they are off.
 * `done` takes a finished snapshot over, `decline` says the subtask could not take one.
 * @locality done/decline are called on the subtask's thread and must be thread-safe */
typedef struct kp_ckpt_out {
    void (*done)(void *ctx, kp_snapshot *snap);
    void (*decline)(void *ctx, int64_t id, int task, int subtask, const char *reason);
    void *ctx;
    kp_ckpt_mode mode;
    int task; /* the subtask's task in the plan (head node id, kp_subtask_ref.task_id) */
    /* Sources: the subtask reached the end of its bounded input and waits for its final
     * checkpoint (KP_CTL_FINAL) before it ends. NULL = no final checkpoint is coordinated
     * here (a taskmanager's run): the source ends at once. @locality the subtask's thread */
    void (*at_end)(void *ctx);
} kp_ckpt_out;

/* Takes checkpoint `id` of st: a new snapshot, `fill` (a source's positions; NULL = none),
 * then the barrier through `chain` (every operator writes its state, exchanges pass the
 * barrier on), the times (align_ms given, sync_ms measured here), and the snapshot goes to
 * st->ckpt->done. A snapshot that cannot be made is declined, the barrier still passed on.
 * 0, or -1 when an operator failed the subtask. @locality the subtask's thread */
int kp_ckpt_take(kp_subtask *st, kp_op *chain, int64_t id, double align_ms,
                 int (*fill)(void *arg, kp_snapshot *snap), void *arg);

/* Declines checkpoint `id` for st (reason: printf format). @locality the subtask's thread */
void kp_ckpt_decline(kp_subtask *st, int64_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
