/* Turning a Deploy message into what the executor takes: source/sink bindings, connector
 * configuration (with the start position), and the check that the subtasks it assigns here
 * exist in the plan the plugin builds. Pure translation, no I/O: any thread may call these, on
 * its own arguments (@locality any thread). */
#ifndef KP_TM_DEPLOY_CONFIG_H
#define KP_TM_DEPLOY_CONFIG_H

#include <stddef.h>

#include "control.pb-c.h"
#include "exec.h"
#include "plan.h"

typedef struct kp_tm_exec_args {
    kp_binding *bindings; /* strings point into the Deploy message */
    int nbindings;
    const char **conf; /* NULL-terminated; entries point into the message or start_conf */
    char start_conf[64];
    char fetch_conf[64]; /* kafka.memory_mb from the slot budget, the last conf entry */
} kp_tm_exec_args;

/* What can be checked in a Deploy before its plugin is there: the job id is usable in a path
 * (1..64 letters, digits, '-', '_'), the plugin sha256 is 64 lowercase hex digits, and at least
 * one subtask is assigned here. 0, or -1 with the reason. @locality any thread */
int kp_tm_deploy_check(const Kappa__Control__Deploy *d, char *err, size_t errlen);

/* Fills `a` from `d`. 0, or -1 with the reason (an unknown on_error policy or start). Free
 * with kp_tm_exec_args_free. @locality the deployment's thread */
int kp_tm_exec_args_build(const Kappa__Control__Deploy *d, kp_tm_exec_args *a, char *err,
                          size_t errlen);
void kp_tm_exec_args_free(kp_tm_exec_args *a);

/* Sizes the run's memory from one slot's budget (memory_budget.h), as `kappa run --local
 * --slot-memory-mb` does: the state caches, RocksDB caches and memtables of every keyed
 * subtask, the exchanges' batches for the slots the local subtasks occupy (slot i holds
 * subtask i of every task), and the Kafka read-ahead as the last conf entry (a conf entry
 * from the job's submission wins). 0, or -1 with the reason (a budget too small for the
 * job's keyed operators). Call after kp_tm_exec_args_build. */
int kp_tm_memory_apply(const Kappa__Control__Deploy *d, const kp_job *job, size_t slot_bytes,
                       kp_tm_exec_args *a, kp_exec_config *cfg, char *err, size_t errlen);

/* The run's checkpoint settings from the Deploy's CheckpointConfig (none or interval 0:
 * checkpoints off); strings point into the message. The run does not coordinate them itself:
 * the deployment gives it a kp_exec_control. 0, or -1 with the reason (a mode it does not
 * know, a relative dir, a negative value). */
int kp_tm_ckpt_config(const Kappa__Control__Deploy *d, kp_ckpt_config *c, char *err, size_t errlen);

/* The data address of the taskmanager that runs `subtask` of `task`, from the Deploy's
 * placements (ctx is the Deploy): a kp_net_peer_fn for runtime/net_transport.h. NULL with the
 * reason when the Deploy places it nowhere. */
const char *kp_tm_placement_peer(void *ctx, int task, int subtask, char *err, size_t errlen);

/* Checks the Deploy's local subtasks against the plan: every one names a task of the plan and
 * a subtask below its parallelism, none twice. Sets *whole when they are every subtask of the
 * job (nothing runs elsewhere). 0, or -1 with the reason. */
int kp_tm_locals_check(const Kappa__Control__Deploy *d, const kp_plan *plan, int *whole, char *err,
                       size_t errlen);

#endif
