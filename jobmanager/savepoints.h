/* Savepoints on the jobmanager (docs/checkpoints.md, "Savepoints"): a savepoint is a
 * checkpoint of the running attempt that the coordinator copies, once complete, into a target
 * directory of its own (runtime/checkpoint_savepoint.c: every file, relative paths, movable,
 * never touched by retention). Requests are kept in this process only (a restarted
 * jobmanager forgets them; the savepoints on disk stay). Everything here runs with jm->lock
 * held. */
#ifndef KP_JM_SAVEPOINTS_H
#define KP_JM_SAVEPOINTS_H

#include <stdbool.h>
#include <stddef.h>

#include "jm.h"

struct kp_ckpt_coord;

/* checkpoints.c: the coordinator of the job's running attempt — started now, without
 * periodic checkpoints, when the job has none configured. NULL with err when the job does not
 * run with every subtask RUNNING or its storage cannot be opened. */
struct kp_ckpt_coord *kp_jm_ckpt_coord_now(kp_jm_t *jm, kp_jm_job_t *job, char *err, size_t errlen);

/* A savepoint of `job` into `dir` (absolute; "" = <checkpoint dir>/savepoints/<name>-<rid>);
 * cancel: the job is cancelled once the savepoint is complete (kappa stop). Triggered now, or
 * at the next control-loop round while another checkpoint is in flight. The request id (32
 * hex digits) into rid. 0, or -1 with err and the HTTP status for it in *http. */
int kp_jm_savepoint_request(kp_jm_t *jm, kp_jm_job_t *job, const char *dir, bool cancel,
                            char rid[KP_JM_ID_LEN], unsigned *http, char *err, size_t errlen);
/* Where a savepoint request `rid` of `job` without a target directory writes:
 * <checkpoint dir>/savepoints/<name>-<first 12 digits of rid> (its _metadata is written last). */
void kp_jm_savepoint_default_dir(const kp_jm_t *jm, const kp_jm_job_t *job, const char *rid,
                                 char *out, size_t len);
/* A plain checkpoint of `job` on demand (blue/green's proof that every result before it is
 * acknowledged by the sinks): as a savepoint request without the copy, followed the same way
 * (kp_jm_savepoint_status; "location" is then the checkpoint's _metadata). Works without
 * periodic checkpoints (the coordinator is started for it, kp_jm_ckpt_coord_now). */
int kp_jm_checkpoint_request(kp_jm_t *jm, kp_jm_job_t *job, char rid[KP_JM_ID_LEN], unsigned *http,
                             char *err, size_t errlen);
/* kappa stop --drain: the sources end their input first — the final watermark fires every
 * window — then the savepoint is taken and the job ends FINISHED (not cancelled). */
int kp_jm_savepoint_drain(kp_jm_t *jm, kp_jm_job_t *job, const char *dir, char rid[KP_JM_ID_LEN],
                          unsigned *http, char *err, size_t errlen);

/* The request's state in Flink's shape: {"status":{"id":"IN_PROGRESS"|"COMPLETED"},
 * "operation":{"location":DIR} | {"failure-cause":{"class","stack-trace"}}} plus "checkpoint"
 * and "cancel-job". NULL when the job has no request of that id. */
json_t *kp_jm_savepoint_status(kp_jm_t *jm, const kp_jm_job_t *job, const char *rid);

/* The clock (control thread, the job RUNNING): triggers waiting requests, notes completed and
 * failed ones, cancels the job of a completed stop. */
void kp_jm_savepoints_step(kp_jm_t *jm, kp_jm_job_t *job);

/* deploy(), before placing: a job submitted with --replace OLD --from-savepoint-of-old first
 * stops OLD with a savepoint and then restores it. true while it must wait (waiting_reason
 * says for what) or after it failed the job (the savepoint could not be taken). */
bool kp_jm_savepoint_handover_wait(kp_jm_t *jm, kp_jm_job_t *job);

/* deploy(), once the restore path is known, first attempt only: state in the restore for an
 * operator uid the job's graph does not have fails the job, naming the uids, unless the
 * manifest has "allow_non_restored_state". true when the job was failed. */
bool kp_jm_restore_refused(kp_jm_t *jm, kp_jm_job_t *job);

#endif
