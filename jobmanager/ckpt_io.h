/* The jobmanager's checkpoint I/O worker: one thread per jobmanager that runs the slow storage
 * work of checkpoints (the GC of an ended job, the search for a job's latest valid checkpoint
 * after a jobmanager restart) without jm->lock, so that heartbeats and REST never wait for a
 * disk. Work is queued by the control thread; each item's `done` comes back to the control
 * thread (kp_ckpt_io_drain, with jm->lock held) — the coordinator's state changes only there.
 * Items run one at a time in the order queued. See docs/cluster.md, "Checkpoints". */
#ifndef KP_JM_CKPT_IO_H
#define KP_JM_CKPT_IO_H

#include "jm.h"

/* run(arg): on the worker, no lock held; must not touch jm state. done(jm, arg): on the
 * control thread with jm->lock held, after run; owns arg from then on. done may be NULL (then
 * run frees arg). arg is one malloc'd block: kp_ckpt_io_stop frees it when done never ran. */
typedef void (*kp_ckpt_io_run_fn)(void *arg);
typedef void (*kp_ckpt_io_done_fn)(kp_jm_t *jm, void *arg);

/* Queues an item (the worker starts with the first one). 0, or -1 (out of memory or no
 * thread: the caller runs the work itself). @locality the control thread, jm->lock held */
int kp_ckpt_io_submit(kp_jm_t *jm, kp_ckpt_io_run_fn run, kp_ckpt_io_done_fn done, void *arg);

/* Calls `done` of every finished item. @locality the control thread, jm->lock held */
void kp_ckpt_io_drain(kp_jm_t *jm);

/* Lets queued items finish, then ends the worker (their `done` is not called: the jobmanager
 * stops; what they wrote is on disk). @locality main thread at shutdown, no lock held */
void kp_ckpt_io_stop(void);

#endif
