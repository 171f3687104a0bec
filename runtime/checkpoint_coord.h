/* The checkpoint coordinator as a pure state machine: no threads, no clock, no messages; its
 * only I/O is through the store (commit, retention/GC, savepoint copies). Used by `kappa run
 * --local` (the executor's thread) and by the jobmanager (one per job). The owner:
 *   - calls kp_ckpt_coord_tick(c, now) periodically (every ~10-100 ms): a non-zero result is
 *     a new checkpoint id to trigger at every source subtask with timestamp `now`;
 *     then sends an abort for every id kp_ckpt_coord_take_aborted returns (timed out,
 *     declined, subsumed or failed to commit) and fails the job if kp_ckpt_coord_job_failed;
 *   - passes every acknowledgement to kp_ckpt_coord_ack and every decline to
 *     kp_ckpt_coord_decline; on KP_COORD_COMPLETED it notifies every subtask that checkpoint
 *     id is complete (sinks commit, sources commit offsets).
 * `now_ms` is wall-clock milliseconds (kp_wall_ms): it becomes the trigger time in the
 * metadata and is compared with file modification times by the garbage collection.
 * @locality one thread at a time (the owner serialises; a REST reader takes the owner's lock) */
#ifndef KP_CHECKPOINT_COORD_H
#define KP_CHECKPOINT_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "checkpoint_stats.h"
#include "checkpoint_store.h"

typedef struct kp_ckpt_coord kp_ckpt_coord;

/* A coordinator for cfg (copied; cfg->dir is not used: the store says where) over `store`
 * (borrowed; it must outlive the coordinator). The first id is above every chk-<N> already
 * in the store. Add the subtasks that must acknowledge with kp_ckpt_coord_expect before the
 * first tick. NULL if out of memory. */
kp_ckpt_coord *kp_ckpt_coord_new(const kp_ckpt_config *cfg, kp_ckpt_store *store);
void kp_ckpt_coord_free(kp_ckpt_coord *c);

/* (task, subtask) must acknowledge every checkpoint (all subtasks of every task, sources,
 * operators and sinks alike). 0, or -1 if out of memory, already listed, or a checkpoint is
 * pending. */
int kp_ckpt_coord_expect(kp_ckpt_coord *c, int task, int subtask);

/* The run was restored from checkpoint id (statistics: "latest restored"); ids continue
 * above it. */
void kp_ckpt_coord_restored(kp_ckpt_coord *c, int64_t id, const char *path, int savepoint,
                            kp_time now_ms);

/* Periodic work: the first call collects garbage (kp_ckpt_store_gc: what a crashed or failed
 * earlier run left); expires pending checkpoints older than the timeout (failed, "expired"); then
 * says whether to trigger a new one now: checkpoints on (interval > 0), at least interval
 * since the last trigger (the first: interval after the first tick), at least min pause since
 * the last checkpoint ended, fewer than max concurrent pending, job not failed. Returns the
 * new id (pending from now on) or 0. */
int64_t kp_ckpt_coord_tick(kp_ckpt_coord *c, kp_time now_ms);

/* Triggers a savepoint now (regardless of interval and min pause; not beyond max concurrent:
 * then 0). On completion the checkpoint is copied into `dir` (kp_ckpt_store_savepoint).
 * Returns the id, or 0. */
int64_t kp_ckpt_coord_trigger_savepoint(kp_ckpt_coord *c, kp_time now_ms, const char *dir);
/* Triggers a checkpoint now, on demand (regardless of interval and min pause, even with
 * periodic checkpoints off; not beyond max concurrent: then 0). Returns the id, or 0. */
int64_t kp_ckpt_coord_trigger_now(kp_ckpt_coord *c, kp_time now_ms);

typedef enum kp_coord_event {
    KP_COORD_PENDING = 0, /* recorded; the checkpoint waits for more acknowledgements */
    KP_COORD_COMPLETED,   /* the last one: metadata committed; notify the subtasks */
    KP_COORD_COMMITTING, /* the last one, async mode: take the commit (kp_ckpt_coord_take_commit) */
    KP_COORD_FAILED,     /* the checkpoint failed (decline, commit error): it is aborted */
    KP_COORD_IGNORED,    /* unknown, ended or duplicate id, or a subtask not expected */
} kp_coord_event;

/* An acknowledgement (ack_json: kp_ckpt_store_upload's text, copied). With the last one the
 * coordinator commits the metadata, applies retention and GC, aborts older pending
 * checkpoints (subsumed, not failures) and resets the consecutive failure count. */
kp_coord_event kp_ckpt_coord_ack(kp_ckpt_coord *c, int64_t id, int task, int subtask,
                                 const char *ack_json, kp_time now_ms);

/* A subtask could not take checkpoint id: it fails (a failure towards the tolerable count). */
kp_coord_event kp_ckpt_coord_decline(kp_ckpt_coord *c, int64_t id, int task, int subtask,
                                     const char *reason, kp_time now_ms);

/* ---- async mode: the owner runs the storage work on a thread of its own ----
 * After kp_ckpt_coord_set_async the coordinator does no I/O at all: the last acknowledgement returns KP_COORD_COMMITTING; the owner takes the commit
 * (kp_ckpt_coord_take_commit), runs kp_ckpt_commit_run on any thread (commit, savepoint
 * copy, retention/GC) and hands it back with kp_ckpt_coord_committed on the coordinator's
 * thread (COMPLETED: notify; FAILED: abort), then kp_ckpt_commit_free. A committing checkpoint
 * does not expire and ignores declines. GC passes the coordinator wants (first tick, failures)
 * come from kp_ckpt_coord_take_gc: run kp_ckpt_store_gc with those bounds on that thread,
 * after the commits taken before it. */
typedef struct kp_ckpt_commit {
    int64_t id;
    kp_time trigger_ms;
    kp_ckpt_mode mode;
    char **acks; /* n, owned */
    int n;
    char *savepoint_dir; /* NULL: a checkpoint (owned) */
    int retain;
    int64_t gc_oldest; /* the GC after the commit spares these (pending newer ones) */
    kp_time gc_since;
    int rc, savepoint_failed; /* results of kp_ckpt_commit_run */
    char path[4400], err[600], savepoint_err[600];
} kp_ckpt_commit;

void kp_ckpt_coord_set_async(kp_ckpt_coord *c);
/* The next checkpoint whose acknowledgements are all in, as a commit request, or NULL. */
kp_ckpt_commit *kp_ckpt_coord_take_commit(kp_ckpt_coord *c, kp_time now_ms);
/* The storage work of a commit request over `st` (any store of the same job directory).
 * @locality any thread; no coordinator state touched */
void kp_ckpt_commit_run(kp_ckpt_commit *r, kp_ckpt_store *st);
/* The result back on the coordinator's thread: COMPLETED, FAILED, or IGNORED when the
 * checkpoint was abandoned meanwhile (a successful commit still becomes the last completed). */
kp_coord_event kp_ckpt_coord_committed(kp_ckpt_coord *c, const kp_ckpt_commit *r, kp_time now_ms);
void kp_ckpt_commit_free(kp_ckpt_commit *r);
/* 1 and the bounds of kp_ckpt_store_gc when a GC pass is due, else 0. */
int kp_ckpt_coord_take_gc(kp_ckpt_coord *c, kp_time now_ms, int *retain, int64_t *oldest,
                          kp_time *since);

/* Checkpoints ended without completing since the last call (the owner sends an abort for
 * each): up to max ids into out; returns how many. */
int kp_ckpt_coord_take_aborted(kp_ckpt_coord *c, int64_t *out, int max);

/* Non-zero once more than tolerable_failures consecutive checkpoints failed: the owner fails
 * the job; why: the last failure. */
int kp_ckpt_coord_job_failed(const kp_ckpt_coord *c, const char **why);

/* The newest completed checkpoint's id (0 if none) and its _metadata path (NULL if none). */
int64_t kp_ckpt_coord_last_completed(const kp_ckpt_coord *c, const char **metadata_path);

/* How many checkpoints are pending. */
int kp_ckpt_coord_pending(const kp_ckpt_coord *c);

/* The run stopped (its tasks failed, were cancelled or finished): every pending checkpoint
 * ends as failed with `why` in the statistics (not towards the tolerable failures; no abort
 * is owed: the tasks are gone). Its files stay until the next kp_ckpt_store_gc. */
void kp_ckpt_coord_abandon(kp_ckpt_coord *c, const char *why, kp_time now_ms);

/* A checkpoint completed before this coordinator (an earlier jobmanager's, from its
 * metadata: the subtasks' acknowledgements as JSON texts) enters the statistics as completed
 * (id at or below the ones this coordinator starts). Before any checkpoint starts. */
void kp_ckpt_coord_seed(kp_ckpt_coord *c, int64_t id, kp_time trigger_ms, kp_time complete_ms,
                        const char *path, const char *const *acks, int nacks);

/* The statistics go on from `from`'s (an earlier run of the same job): its history and counts
 * move into c (from's pending checkpoints abandoned first), so that they are per job, not per
 * run. c must not have started a checkpoint yet; call before kp_ckpt_coord_restored.
 * 0, or -1 (then nothing moved). */
int kp_ckpt_coord_take_history(kp_ckpt_coord *c, kp_ckpt_coord *from, kp_time now_ms);

/* The statistics (checkpoint_stats.h: kp_ckpt_history_json, kp_ckpt_details_json). */
const kp_ckpt_history *kp_ckpt_coord_history(const kp_ckpt_coord *c);

#endif
