/* Running a job: the logical graph becomes tasks (chains of operators joined by forward
 * edges of equal parallelism), each task runs `parallelism` subtasks as threads, and tasks
 * exchange record batches through bounded channels. This is the same code a taskmanager
 * runs for its share of a job; `kappa run --local` runs all of it in one process. */
#ifndef KP_EXEC_H
#define KP_EXEC_H

#include <signal.h>

#include "engine.h"
#include "transport.h"

typedef struct kp_binding {
    const char *name;         /* source or sink name in the job */
    const char *uri;          /* connector URI */
    kp_error_policy on_error; /* sources: KP_POLICY_DEFAULT = the job's choice, else fail */
    const char *dead_letter;  /* sources: URI of the dead-letter sink */
} kp_binding;

typedef struct kp_exec_config {
    const kp_binding *bindings;
    int nbindings;
    const char *state_dir;         /* RocksDB directories go below it */
    size_t state_cache_bytes;      /* per keyed operator subtask; 0 = 256 MiB */
    size_t rocksdb_cache_bytes;    /* block cache per keyed subtask; 0 = 32 MiB */
    size_t rocksdb_memtable_bytes; /* per column family (2 of them at most); 0 = 16 MiB */
    int credits;                   /* batches in flight per channel; 0 = 4 */
    int watermark_every;           /* sources emit a watermark after this many records; 0 = 1024 */
    const char *const *conf;       /* connector configuration "key=value", NULL-terminated */
    int64_t epoch;                 /* fencing epoch of this attempt; 0 = start time in seconds */
    int print_stats;      /* connectors print their metrics to stderr at the end of a run */
    kp_time align_drift;  /* watermark alignment between the subtasks of one source:
                                 none runs further ahead of the slowest; 0 = 1 hour,
                                 negative = off */
    size_t network_bytes; /* budget for all record batches of all exchanges; 0 = 512 MiB */
    /* Set to nonzero (e.g. from a signal handler) to cancel the run: it fails with "cancelled"
     * within about 100 ms, every subtask stopping where it is. NULL = not cancellable. */
    const volatile sig_atomic_t *cancel;
    uint64_t step_seed; /* nonzero: run single-threaded under the deterministic scheduler,
                             interleaving subtasks in an order drawn from this seed (tests) */
} kp_exec_config;

typedef struct kp_exec_stats {
    long long records_in, bytes_in, decode_errors, dead_lettered, skipped, late_records;
    long long windows_fired, records_out, state_spills;
    long long state_cache_peak, state_rocksdb; /* bytes */
    long long batches_sent, records_sent;      /* exchanges: data batches and their records */
    double seconds;
} kp_exec_stats;

/* Runs `job` (validated) to completion — bounded sources end — or failure. Returns 0, or -1
 * with the first subtask's error in errstr. @locality the calling thread blocks. */
int kp_exec_run(const kp_job *job, const kp_exec_config *cfg, kp_exec_stats *stats, char *errstr,
                size_t errlen);

/* One subtask of the plan: task id (head node id, plan.h) and subtask index. */
typedef struct kp_subtask_ref {
    int task_id, subtask;
} kp_subtask_ref;

/* A share of a job for one process (a taskmanager): the subtasks that run here, and the
 * transport for channels whose other end runs elsewhere (transport.h). */
typedef struct kp_exec_part {
    const kp_subtask_ref *local;
    int nlocal;
    kp_transport *transport; /* may be NULL when every subtask is local */
} kp_exec_part;

/* Runs the local subtasks of `job`: channels between two of them stay in-process, the
 * others come from part->transport. Alignment between source subtasks is off (cluster runs
 * pass align_drift < 0); step_seed is refused. kp_exec_run is this with every subtask local.
 * Returns 0 once every local subtask finished, or -1 with the first local error in errstr.
 * @locality the calling thread blocks */
int kp_exec_run_part(const kp_job *job, const kp_exec_config *cfg, const kp_exec_part *part,
                     kp_exec_stats *stats, char *errstr, size_t errlen);

/* kp_subtask_cancelled as a connector cancellation probe (kp_endpoint.cancelled, with
 * cancel_arg = the subtask). @locality any thread @locks none */
int kp_subtask_cancel_probe(void *subtask);

/* Source side (source.c). open: NULL after failing the subtask. step: one poll (waiting at
 * most timeout_ms) and what follows — 1 = call again, 0 = the input ended and the chain was
 * finished, -1 = failed. close: releases everything; returns rc, or -1 if flushing failed.
 * run: open, step until done, close. @locality the source subtask's thread. */
typedef struct kp_source_task kp_source_task;
kp_source_task *kp_source_open(kp_subtask *st, const kp_node *src, const kp_binding *b,
                               kp_op *chain, int watermark_every);
int kp_source_step(kp_source_task *s, int timeout_ms);
int kp_source_close(kp_source_task *s, int rc);
int kp_source_run(kp_subtask *st, const kp_node *src, const kp_binding *b, kp_op *chain,
                  int watermark_every);

#endif
