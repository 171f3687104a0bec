/* Checkpoint storage: a snapshot's files into the storage layout (upload → the subtask's
 * acknowledgement JSON), the metadata that completes a checkpoint (commit), finding the newest
 * valid checkpoint (latest), retention and garbage collection, savepoints; kp_restore_open for
 * the kp_restore_* readers of checkpoint.h. Layout and formats: docs/checkpoints.md.
 *
 *   ROOT/<job>/chk-<N>/_metadata, _metadata.sha256   the completed checkpoint N
 *   ROOT/<job>/chk-<N>/<task>-<subtask>/...          private files (large blobs, RocksDB
 *                                                    MANIFEST/CURRENT/OPTIONS, ...)
 *   ROOT/<job>/shared/<uid>.<name>.<lo>-<hi>.<tail>.<file>(.sha256)
 *                                                    SST files, referenced by several
 *
 * Paths in acknowledgements and metadata are relative to ROOT/<job> (a savepoint: to the
 * savepoint directory). Nothing here keeps state between calls beyond the two paths of a
 * kp_ckpt_store, so processes on several hosts can share ROOT (a shared filesystem). */
#ifndef KP_CHECKPOINT_STORE_H
#define KP_CHECKPOINT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

/* ---- reading a kp_snapshot (the uploader; snapshot.c) ---- */

/* One entry as an operator wrote it. Blob: data/len (is_dir 0). Directory: dir, the local
 * directory the snapshot owns (removed by kp_snapshot_free). */
typedef struct kp_snapshot_entry {
    const char *uid, *name;
    int kg_lo, kg_hi; /* -1/-1: not keyed */
    int is_dir;
    const void *data;
    size_t len;
    const char *dir;
} kp_snapshot_entry;

int kp_snapshot_task(const kp_snapshot *s);
int kp_snapshot_subtask(const kp_snapshot *s);
int kp_snapshot_parallelism(const kp_snapshot *s);
void kp_snapshot_times(const kp_snapshot *s, double *align_ms, double *sync_ms);
/* kp_snapshot_set_end_of_input's value: 1, 0, or -1 when unset (not a source). */
int kp_snapshot_end_of_input(const kp_snapshot *s);
size_t kp_snapshot_count(const kp_snapshot *s);
/* The i-th entry in the order written; NULL past the end. Valid until kp_snapshot_free. */
const kp_snapshot_entry *kp_snapshot_entry_at(const kp_snapshot *s, size_t i);

/* ---- the store of one job ---- */
typedef struct kp_ckpt_store kp_ckpt_store;

/* Opens the storage of `job` (a name without '/') under `root`, creating ROOT/<job>/shared.
 * Does not collect garbage (kp_ckpt_store_gc). NULL with errstr. @locality any thread */
kp_ckpt_store *kp_ckpt_store_open(const char *root, const char *job, char *errstr, size_t errlen);
void kp_ckpt_store_free(kp_ckpt_store *st);
/* ROOT/<job>. */
const char *kp_ckpt_store_job_dir(const kp_ckpt_store *st);

/* Blobs up to this size travel inline (base64) in the acknowledgement; larger ones are files. */
#define KP_CKPT_INLINE_MAX (64 * 1024)

/* Copies a snapshot's state into storage and returns its acknowledgement (docs/checkpoints.md;
 * malloc'd JSON text, the caller frees it): small blobs inline, large blobs and directory
 * files under chk-<N>/<task>-<subtask>/, the *.sst files of a directory under shared/ — an SST
 * already stored (same database, file name, size and tail) is referenced, not copied, and its
 * timestamp refreshed so that kp_ckpt_store_gc keeps it. async_ms in the ack is the time this
 * call took. Does not free the snapshot (its directories go with kp_snapshot_free). On failure
 * (a full disk, an unreadable file): NULL with errstr, and nothing this call wrote remains.
 * @locality any thread; concurrent uploads of different subtasks are safe */
char *kp_ckpt_store_upload(kp_ckpt_store *st, const kp_snapshot *s, char *errstr, size_t errlen);

/* Completes checkpoint `id`: checks that every file the acknowledgements name exists with its
 * size, then writes chk-<id>/_metadata ({"version":1,"job","checkpoint","savepoint":false,
 * "trigger_ms","complete_ms","mode","subtasks":[ack...]}) and then _metadata.sha256, each
 * through a temp file, fsync, rename and directory fsync. The checkpoint is complete once
 * _metadata.sha256 is in place. Failpoints: store.before_metadata_rename,
 * store.after_metadata_write. path_out (may be NULL) receives the _metadata path.
 * 0, or -1 with errstr (nothing that makes the checkpoint look complete is left behind).
 * @locality the coordinator's thread */
int kp_ckpt_store_commit(kp_ckpt_store *st, int64_t id, kp_time trigger_ms, kp_ckpt_mode mode,
                         const char *const *acks, int n, char *path_out, size_t path_len,
                         char *errstr, size_t errlen);

/* Retention and garbage collection, after a commit and at startup: keeps the `retain` (0 = 1)
 * newest completed checkpoints whose metadata verifies; removes older completed ones, every
 * chk-<M> without valid metadata with M < oldest_pending (failed, aborted or crashed
 * checkpoints; pass INT64_MAX when none is pending), stray temp files, and the shared files
 * no kept checkpoint references whose modification time is before protect_since_ms
 * (wall-clock ms: the trigger time of the oldest pending checkpoint, or now) minus 2 s.
 * 0, or -1 with errstr for the first failure (the pass goes on). @locality the coordinator's
 * thread */
int kp_ckpt_store_gc(kp_ckpt_store *st, int retain, int64_t oldest_pending,
                     kp_time protect_since_ms, char *errstr, size_t errlen);

/* The newest checkpoint of ROOT/<job> whose metadata and every file it names verify (size and
 * sha256); truncated or corrupted ones are skipped with a line on stderr naming the reason.
 * 1 and its _metadata path in path_out, 0 if there is none, -1 with errstr. @locality any */
int kp_ckpt_store_latest(const char *root, const char *job, char *path_out, size_t path_len,
                         char *errstr, size_t errlen);

/* The highest N of any chk-<N> directory of ROOT/<job> (complete or not), 0 if none: a
 * coordinator starts its ids above it so that no directory is ever reused. */
int64_t kp_ckpt_store_max_id(const char *root, const char *job);

/* Makes a savepoint of a completed checkpoint: target_dir (created; must not exist or be
 * empty) receives a copy of every file the metadata names, at the same relative paths, and a
 * _metadata with "savepoint":true — self-contained and movable. 0, or -1 with errstr and
 * target_dir removed. */
int kp_ckpt_store_savepoint(const char *metadata_path, const char *target_dir, char *errstr,
                            size_t errlen);

/* ---- restoring ---- */

/* Opens a completed checkpoint or savepoint for restore: `path` is a _metadata file, a
 * chk-<N> or savepoint directory, or a job directory ROOT/<job> (its latest valid
 * checkpoint). Verifies the metadata's checksum and loads every blob (file blobs verified).
 * NULL with errstr. kp_restore_free(NULL) is fine. */
kp_restore *kp_restore_open(const char *path, char *errstr, size_t errlen);
void kp_restore_free(kp_restore *r);
/* The _metadata path it was opened from. */
const char *kp_restore_path(const kp_restore *r);
int kp_restore_is_savepoint(const kp_restore *r);

#endif
