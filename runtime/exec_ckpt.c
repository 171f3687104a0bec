/* A subtask's side of a checkpoint (exec_ckpt.h): the synchronous part — a snapshot, the
 * barrier through the chain, the times — after which the snapshot leaves the subtask's
 * thread for the uploader. @locality the subtask's thread */
#include <stdarg.h>
#include <stdio.h>

#include "clock.h"
#include "exec_ckpt.h"

void kp_ckpt_decline(kp_subtask *st, int64_t id, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (st->ckpt)
        st->ckpt->decline(st->ckpt->ctx, id, st->ckpt->task, st->index, reason);
}

int kp_ckpt_take(kp_subtask *st, kp_op *chain, int64_t id, double align_ms,
                 int (*fill)(void *arg, kp_snapshot *snap), void *arg)
{
    double t0 = kp_mono_s();
    kp_snapshot *snap = kp_snapshot_new(id, st->ckpt->task, st->index, st->parallelism);
    if (snap && fill && fill(arg, snap) != 0) {
        kp_snapshot_free(snap);
        snap = NULL;
    }
    if (!snap) {
        /* the barrier still goes on, so that downstream alignment is not stuck */
        kp_ckpt_decline(st, id, "%s: out of memory for its snapshot", st->name);
        kp_snapshot *empty = kp_snapshot_new(id, st->ckpt->task, st->index, st->parallelism);
        if (!empty)
            return kp_subtask_fail(st, "out of memory for a checkpoint barrier");
        int rc = kp_op_barrier(chain, empty);
        kp_snapshot_free(empty);
        return rc;
    }
    if (kp_op_barrier(chain, snap) != 0) {
        kp_snapshot_free(snap);
        return -1;
    }
    kp_snapshot_set_times(snap, align_ms, (kp_mono_s() - t0) * 1000.0);
    st->ckpt->done(st->ckpt->ctx, snap);
    return 0;
}
