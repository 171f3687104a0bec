/* What a run of a job is given — the bindings of its sources and sinks to connectors, memory
 * and timing settings, the share of subtasks that runs in this process — and what it reports
 * back. Shared by the executor's parts (exec.c, exec_wire.c, exec_step.c) and the sources
 * (source.c), below all of them. */
#ifndef KP_EXEC_CONFIG_H
#define KP_EXEC_CONFIG_H

#include <signal.h>

#include "checkpoint.h"
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
    /* Set to nonzero (from a signal handler, or atomically from another thread) to cancel the
     * run: it fails with "cancelled" within about 100 ms, every subtask stopping where it is.
     * NULL = not cancellable. */
    const volatile sig_atomic_t *cancel;
    uint64_t step_seed; /* nonzero: run single-threaded under the deterministic scheduler,
                             interleaving subtasks in an order drawn from this seed (tests) */
    /* Optional live counters (exec_live.h), caller-owned, one per subtask it wants to watch:
     * the executor fills the entries of local subtasks while they run. NULL = none. */
    struct kp_subtask_live *live;
    int nlive;
    /* Checkpoints (checkpoint.h). With ckpt.interval_ms > 0 and no `control`, the run
     * coordinates its own checkpoints (kappa run --local) into ckpt.dir. With `control` (a
     * taskmanager), triggers and completions come from outside through it and every local
     * subtask's acknowledgement goes to ckpt_hooks. */
    kp_ckpt_config ckpt;
    struct kp_exec_control *control; /* exec_control.h; NULL = none */
    const struct kp_ckpt_hooks *ckpt_hooks;
    /* Restore every local subtask from this checkpoint (NULL: fresh start). */
    const struct kp_restore *restore;
    /* The job's directory under ckpt.dir (ROOT/<ckpt_job>/chk-<N>): a taskmanager's run uses
     * the cluster's job id, which the jobmanager commits under. NULL = the job's name. */
    const char *ckpt_job;
} kp_exec_config;

typedef struct kp_exec_stats {
    long long records_in, bytes_in, decode_errors, dead_lettered, skipped, late_records;
    long long windows_fired, records_out, state_spills;
    long long state_cache_peak, state_rocksdb; /* bytes */
    long long readahead_peak;                  /* bytes, Kafka read-ahead (kafka_mem.h) */
    long long batches_sent, records_sent;      /* exchanges: data batches and their records */
    double seconds;
    /* Threads (threaded runs): CPU seconds of the source subtasks' threads and of the others',
     * summed and the largest of one thread, and their waits (channel.h): sources blocked by
     * backpressure, the others starved of input or blocked. A thread's CPU against `seconds`
     * says how busy it was; the waits say on what it was not. */
    double source_cpu_s, source_cpu_max_s, source_blocked_s;
    double other_cpu_s, other_cpu_max_s, other_starved_s, other_blocked_s;
    long long source_blocked, other_starved, other_blocked;
    /* Memory (docs/state.md, "Memory"): record batches created by this process's inboxes —
     * they live until the run ends, so this is their peak — and their bytes. */
    long long exchange_batches, exchange_bytes;
} kp_exec_stats;

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

#endif
