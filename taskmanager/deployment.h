/* One deployment: the subtasks of one attempt of a job that the jobmanager placed on this
 * taskmanager. The session creates it from a Deploy message, starts it once the plugin is in
 * the verified cache, and may cancel it at any time; the deployment runs on a thread of its
 * own, loads and checks the plugin (ABI, graph hash), runs its subtasks and reports each
 * subtask's TaskState through the outbox. */
#ifndef KP_TM_DEPLOYMENT_H
#define KP_TM_DEPLOYMENT_H

#include <stdint.h>

#include "control.pb-c.h"
#include "net.h"
#include "outbox.h"

typedef struct kp_tm_deployment kp_tm_deployment;

/* What every deployment needs from the daemon; the strings outlive every deployment. */
typedef struct kp_tm_env {
    const char *state_dir; /* jobs/<job>/<attempt> go below it */
    kp_tm_outbox *outbox;  /* TaskState messages go here */
    size_t slot_bytes;     /* memory budget of one slot (--slot-memory-mb) */
    kp_net *net;           /* the data plane, for subtasks whose peers run elsewhere */
} kp_tm_env;

/* Takes ownership of `d` (unpacked by protobuf-c, checked by kp_tm_deploy_check, so its ids
 * are safe in paths). NULL when out of memory (d is still the caller's). @locality the
 * session thread, as every function here unless said otherwise */
kp_tm_deployment *kp_tm_deployment_new(Kappa__Control__Deploy *d, const kp_tm_env *env);

/* The Deploy message it was made from (owned by the deployment). */
const Kappa__Control__Deploy *kp_tm_deployment_msg(const kp_tm_deployment *dep);

/* Posts a TaskState for every local subtask. */
void kp_tm_deployment_report(kp_tm_deployment *dep, Kappa__Control__TaskState__State state,
                             const char *message);

/* Posts a Metrics message (the live counters, exec_live.h) for every local subtask.
 * @locality the session thread or the deployment's thread */
void kp_tm_deployment_post_metrics(kp_tm_deployment *dep);

/* A checkpoint message of the jobmanager for this deployment: KP_FRAME_TRIGGER_CHECKPOINT
 * (id, timestamp), KP_FRAME_CHECKPOINT_COMPLETE or KP_FRAME_ABORT_CHECKPOINT, posted to the
 * run's kp_exec_control (it holds them until the run starts, and drops them after it ended).
 * The run's acknowledgements go to the jobmanager as AckCheckpoint / DeclineCheckpoint frames
 * through the outbox. */
void kp_tm_deployment_checkpoint(kp_tm_deployment *dep, kp_frame_type type, int64_t id,
                                 int64_t timestamp_ms);
/* kappa stop --drain: the sources stop reading, emit the final watermark, take checkpoint
 * `id` (the savepoint) and end once it completed. @locality the session's thread */
void kp_tm_deployment_drain(kp_tm_deployment *dep, int64_t id);
/* Checkpoint `id` completed and is final (NotifyCheckpointComplete.final), after its
 * completion: sources waiting at the end of their bounded input end. @locality the session's
 * thread */
void kp_tm_deployment_final(kp_tm_deployment *dep, int64_t id);

/* True while the executor runs the subtasks (their counters move). @locality any thread */
int kp_tm_deployment_running(const kp_tm_deployment *dep);

/* Starts the deployment's thread on the verified plugin at `plugin_path`. 0, or -1 with the
 * reason (then nothing runs and the caller reports FAILED). */
int kp_tm_deployment_start(kp_tm_deployment *dep, const char *plugin_path, char *err,
                           size_t errlen);

/* True once started. */
int kp_tm_deployment_started(const kp_tm_deployment *dep);

/* Asks a started deployment to stop (its subtasks end within about 100 ms, reported
 * CANCELED). */
void kp_tm_deployment_cancel(kp_tm_deployment *dep);

/* True when the thread has ended (it wakes the outbox as its last act). @locality any thread */
int kp_tm_deployment_done(const kp_tm_deployment *dep);

/* Joins the thread if started and frees everything. Accepts NULL. */
void kp_tm_deployment_free(kp_tm_deployment *dep);

#endif
