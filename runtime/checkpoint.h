/* Checkpoints: what a run is told about them, what an operator writes into a snapshot and
 * reads back from a restore. Shared by the barrier path (exec_*.c, source.c, exchange.c),
 * the stateful operators, the storage (checkpoint_store.c), the coordinator
 * (checkpoint_coord.c, run by `kappa run --local` and by the jobmanager) and the
 * taskmanager. Nothing here is a pointer that crosses a process: a subtask's snapshot
 * becomes an acknowledgement (JSON text) once its files are in checkpoint storage, and the
 * coordinator's metadata is the list of those acknowledgements (docs/checkpoints.md).
 *
 * One checkpoint, in order:
 *   1. the coordinator triggers id N at every source subtask (a message);
 *   2. a source subtask records its positions (offsets, per-partition watermark state) in
 *      its snapshot and sends a barrier N down every output, in order with its records;
 *   3. a subtask with inputs aligns (exactly_once: an input that delivered barrier N is held
 *      back until every open input did; at_least_once: no holding back), then calls
 *      `barrier` on its chain: each operator writes its state into the snapshot (keyed
 *      state: the write-back cache is flushed to RocksDB and RocksDB's checkpoint hard-links
 *      the files into a local directory), sinks flush/prepare, exchanges pass the barrier on;
 *   4. the synchronous part ends; the subtask goes on processing while its process uploads
 *      the snapshot's files to storage (the asynchronous part) and then acknowledges;
 *   5. with every subtask's acknowledgement the coordinator writes the metadata atomically:
 *      the checkpoint is complete; it notifies the subtasks (sinks commit transactions,
 *      sources commit offsets to the consumer group for monitoring). */
#ifndef KP_CHECKPOINT_H
#define KP_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <kappa/kappa.h>

typedef enum kp_ckpt_mode {
    KP_CKPT_EXACTLY_ONCE = 0, /* aligned barriers */
    KP_CKPT_AT_LEAST_ONCE,    /* no alignment: records after a barrier may be in the state */
} kp_ckpt_mode;

/* A job's checkpoint settings (kappa submit / kappa run flags, cluster defaults). */
typedef struct kp_ckpt_config {
    kp_time interval_ms;    /* 0 = checkpoints off */
    kp_time timeout_ms;     /* 0 = 10 minutes */
    kp_time min_pause_ms;   /* between the end of one and the trigger of the next; 0 = none */
    int max_concurrent;     /* 0 = 1 */
    int tolerable_failures; /* consecutive failed checkpoints before the job fails; 0 = 0 */
    int retain;             /* completed checkpoints kept; 0 = 1 */
    kp_ckpt_mode mode;
    const char *dir; /* checkpoint storage root (a shared filesystem across hosts) */
} kp_ckpt_config;

/* Where a run that does not coordinate its own checkpoints (a taskmanager's share) sends
 * what its subtasks did: `ack` once a subtask's snapshot is in storage (ack_json: its
 * acknowledgement, the text the coordinator keeps in the metadata — checkpoint_store.h),
 * `decline` when a subtask could not take it. @locality the process's uploader thread or a
 * subtask thread: the callee must be thread-safe */
typedef struct kp_ckpt_hooks {
    void (*ack)(void *ctx, int64_t id, int task_id, int subtask, const char *ack_json);
    void (*decline)(void *ctx, int64_t id, int task_id, int subtask, const char *reason);
    void *ctx;
} kp_ckpt_hooks;

/* ---- the snapshot of one subtask for one checkpoint (snapshot.c) ----
 * Written during the synchronous part, on the subtask's thread; then handed to the process's
 * uploader, which owns it from there. Entries are named by (operator uid, name); a keyed
 * entry says which key groups it covers so that a restore at another parallelism can pick
 * the entries it needs. */
typedef struct kp_snapshot kp_snapshot;

/* A new, empty snapshot; NULL if out of memory. */
kp_snapshot *kp_snapshot_new(int64_t checkpoint_id, int task_id, int subtask, int parallelism);
void kp_snapshot_free(kp_snapshot *s);
int64_t kp_snapshot_id(const kp_snapshot *s);

/* A small piece of operator state (source offsets, an operator's watermark, counters),
 * copied. kg_lo/kg_hi: the key groups it covers ([lo, hi)), or -1/-1 for operator state
 * that is not keyed. 0, or -1 if out of memory. */
int kp_snapshot_blob(kp_snapshot *s, const char *uid, const char *name, int kg_lo, int kg_hi,
                     const void *data, size_t len);

/* A local directory of files (a RocksDB checkpoint) that the uploader copies to storage —
 * files it already stored for an earlier checkpoint of the same database (same name, size
 * and checksum: RocksDB's SST files never change) are referenced, not copied — and then
 * deletes. The snapshot takes the directory over. 0, or -1 if out of memory. */
int kp_snapshot_dir(kp_snapshot *s, const char *uid, const char *name, int kg_lo, int kg_hi,
                    const char *local_dir);

/* Timings of the synchronous part, reported in the acknowledgement. */
void kp_snapshot_set_times(kp_snapshot *s, double align_ms, double sync_ms);

/* Sources: whether the subtask had reached the end of its bounded input when it took this
 * snapshot ("end_of_input" in the acknowledgement; unset for other subtasks). The jobmanager
 * calls a completed checkpoint final when every source's acknowledgement says true
 * (docs/checkpoints.md, Bounded inputs). */
void kp_snapshot_set_end_of_input(kp_snapshot *s, int at_end);

/* ---- restoring (checkpoint_store.c) ----
 * A completed checkpoint (or savepoint) opened for restore, read-only and shared by all
 * subtasks of a process (it holds no per-subtask state; materialising copies files). */
typedef struct kp_restore kp_restore;

/* One stored entry of an operator, from one subtask of the run that wrote it. */
typedef struct kp_restore_entry {
    const char *uid, *name;
    int subtask, parallelism; /* of the writer */
    int kg_lo, kg_hi;         /* -1/-1: not keyed */
    int is_dir;
    const void *data; /* blobs: the bytes (valid while the restore is open) */
    size_t len;
} kp_restore_entry;

/* The checkpoint's id (0 if r is NULL). */
int64_t kp_restore_id(const kp_restore *r);

/* Calls fn for every entry of operator `uid` named `name` (NULL = any name), in (subtask,
 * name) order; stops at and returns fn's first non-zero. @locality any thread */
int kp_restore_each(const kp_restore *r, const char *uid, const char *name,
                    int (*fn)(void *ctx, const kp_restore_entry *e), void *ctx);

/* Copies (or hard-links, on the same filesystem) a directory entry's files into local_dir,
 * created fresh, verifying every file's checksum. 0, or -1 with errstr. */
int kp_restore_materialize(const kp_restore *r, const kp_restore_entry *e, const char *local_dir,
                           char *errstr, size_t errlen);

/* The uids that have state in the checkpoint, for "state of uid X was not restored"
 * (savepoints: --allow-non-restored-state). Returns how many, up to max. */
int kp_restore_uids(const kp_restore *r, const char **out, int max);

#endif
