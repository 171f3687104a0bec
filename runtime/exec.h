/* Running a job: the logical graph becomes tasks (plan.h: chains of operators joined by
 * forward edges of equal parallelism), each task runs `parallelism` subtasks as threads, and
 * tasks exchange record batches through bounded channels (channel.h) — in-process between
 * subtasks of one process, through a kp_transport (transport.h) between processes. This is
 * the same code a taskmanager runs for its share of a job; `kappa run --local` runs all of
 * it in one process. */
#ifndef KP_EXEC_H
#define KP_EXEC_H

#include "exec_config.h"

/* Runs `job` (validated) to completion — bounded sources end — or failure. Returns 0, or -1
 * with the first subtask's error in errstr. @locality the calling thread blocks. */
int kp_exec_run(const kp_job *job, const kp_exec_config *cfg, kp_exec_stats *stats, char *errstr,
                size_t errlen);

/* Runs the local subtasks of `job`: channels between two of them stay in-process, the
 * others come from part->transport. Alignment between source subtasks is off (cluster runs
 * pass align_drift < 0); step_seed is refused. kp_exec_run is this with every subtask local.
 * Returns 0 once every local subtask finished, or -1 with the first local error in errstr.
 * @locality the calling thread blocks */
int kp_exec_run_part(const kp_job *job, const kp_exec_config *cfg, const kp_exec_part *part,
                     kp_exec_stats *stats, char *errstr, size_t errlen);

#endif
