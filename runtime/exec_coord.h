/* The executor's side of checkpoint coordination (exec_coord.c): storage and the uploader of
 * a run with checkpoints on, passing triggers, completions and aborts to the local subtasks'
 * mailboxes, and the local coordinator of `kappa run --local`. */
#ifndef KP_EXEC_COORD_H
#define KP_EXEC_COORD_H

#include "exec_wire.h"

/* Opens checkpoint storage (cfg->ckpt.dir, the job's name) and starts the uploader (its own
 * thread when `threaded`), when checkpoints are on. 0, or -1 with x->error set.
 * @locality the running thread, before any subtask runs */
int kp_exec_ckpt_start(struct kp_exec *x, int threaded);

/* Stops the uploader (uploading what is queued when ok, else dropping it) and closes the
 * storage. @locality the running thread, after every subtask stopped */
void kp_exec_ckpt_stop(struct kp_exec *x, int ok);

/* Passes a checkpoint message on: TRIGGER to every local source subtask, COMPLETE and ABORT
 * to every local subtask (a subtask whose mailbox is full declines a trigger).
 * @locality the run's coordinator thread */
void kp_exec_ckpt_dispatch(struct kp_exec *x, const kp_ctl *m);

/* The coordinator's periodic work: takes what cfg->control posted (a taskmanager), or
 * triggers due checkpoints and times out late ones (the local coordinator). `running`: how
 * many local subtasks still run (no checkpoint is triggered once one has ended: with
 * checkpoints on, the local run's sources wait at the end of their input for the final
 * checkpoint, so none ends before it). @locality the run's coordinator thread */
void kp_exec_ckpt_poll(struct kp_exec *x, int running);

/* The local coordinator (exec_coord_local.c): start sets x->hooks to its own (acks and
 * declines from any thread); poll triggers, completes and times out; stop completes what
 * the last acknowledgements completed and frees it. start: 0, or -1 with errstr. */
int kp_exec_coord_local_start(struct kp_exec *x, char *errstr, size_t errlen);
void kp_exec_coord_local_poll(struct kp_exec *x, int running);
void kp_exec_coord_local_stop(struct kp_exec *x);
/* kp_ckpt_out.at_end of a local run (ctx: the kp_exec): one more source subtask reached the
 * end of its input. The first checkpoint triggered once all of them did is the final one:
 * its completion (or a later one's) sends KP_CTL_FINAL to the sources, which then end.
 * @locality a source subtask's thread */
void kp_exec_coord_local_at_end(void *ctx);
/* kp_ckpt_out.at_end of a taskmanager's run whose jobmanager flags final checkpoints: nothing
 * to do here (the source's acknowledgements say "end_of_input"; KP_CTL_FINAL comes through
 * cfg->control). */
void kp_exec_coord_remote_at_end(void *ctx);

#endif
