/* The RocksDB database of one keyed operator instance across checkpoints: where it lives,
 * how a barrier snapshots it, how a restore (at the same or another parallelism) fills it.
 * Shared by the window operator (op_window.c) and the key-spill operators (sessions and
 * process functions, key_spill.c), so that every keyed operator lays its state out and
 * restores it the same way (docs/state.md, "Checkpoints and restore").
 *
 * A database lives in <state dir>/<uid>-kg<lo>-<hi>: the state dir is the job attempt's, the
 * uid names the operator across job versions, [lo, hi) is the subtask's key-group range. A
 * fresh start wipes that directory; a restore fills it from the checkpoint:
 *   - one old subtask covered exactly [lo, hi): its files are materialised as the database;
 *   - otherwise every old subtask whose range overlaps ours is materialised into a temporary
 *     directory, opened, and the keys of our key groups of the column families the operator
 *     names are copied in (every such column family starts its keys with the key group, 2
 *     bytes big endian); the temporary directory is deleted.
 * In a checkpoint the database is the entry (uid, "rocksdb", lo, hi); the operator's other
 * state (its watermark, counters) is a blob (uid, "op", lo, hi) it writes itself.
 *
 * @locality the operator's subtask thread */
#ifndef KP_KEYED_DB_H
#define KP_KEYED_DB_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "engine.h"
#include "state.h"

/* The name of the directory entry of a keyed database in a snapshot. */
#define KP_KEYED_DB_ENTRY "rocksdb"

/* A column family the restore copies by key group, and how the operator opens it
 * (kp_state_cf_scan, kp_state_cf_point or kp_state_cf: the options are fixed at creation). */
typedef struct kp_keyed_cf {
    const char *name;
    int (*open)(kp_state *st, const char *name, char *errstr, size_t errlen);
} kp_keyed_cf;

/* <state dir>/<uid>-kg<lo>-<hi> into out (uid characters that are not safe in a file name
 * become '_'). */
void kp_keyed_db_path(const kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi, char *out,
                      size_t outlen);

/* Opens the database of `node` on `st` for key groups [kg_lo, kg_hi): restored from
 * st->restore when it holds a database of this uid overlapping the range (*restored = 1),
 * else fresh (an existing directory is wiped; *restored = 0). cfs: the column families a
 * rescaling restore copies. NULL after kp_subtask_fail (a missing or corrupt checkpoint
 * directory says which). */
kp_state *kp_keyed_db_open(kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi,
                           const kp_keyed_cf *cfs, int ncfs, int *restored);

/* The synchronous part of a barrier for a database whose write-back cache is flushed:
 * RocksDB's checkpoint into a local directory beside it, handed to `snap` as the entry (uid,
 * "rocksdb", kg_lo, kg_hi). 0, or -1 after kp_subtask_fail. */
int kp_keyed_db_snapshot(kp_subtask *st, const kp_node *node, kp_state *db, int kg_lo, int kg_hi,
                         struct kp_snapshot *snap);

/* The operator state of a keyed operator that is not keyed by record (one per subtask, the
 * entry (uid, "op", kg_lo, kg_hi)): its watermark (which windows fired, which state was
 * purged), the spill sequence of windows, the next timer id of sessions (0 where unused). */
typedef struct kp_keyed_blob {
    uint32_t version, spill_seq;
    int64_t wm, next_id;
} kp_keyed_blob;

#define KP_KEYED_BLOB         "op"
#define KP_KEYED_BLOB_VERSION 1

/* Adds b (version set here) to snap. 0, or -1 after kp_subtask_fail. */
int kp_keyed_blob_write(kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi,
                        struct kp_snapshot *snap, kp_keyed_blob b);

/* Reads the blobs of the old subtasks whose key groups overlap [kg_lo, kg_hi) into *out: the
 * minimum watermark (the oldest of them: should old subtasks have reached different ones, a
 * window that fired in one but not in another fires again here for the keys that had it,
 * under the same document id — nothing is lost, an upsert sink ends the same), the largest
 * spill sequence and timer id; *n = how many there were (0: out is zeroed, wm KP_TIME_MIN).
 * `db_restored`: a database was restored, so a missing blob is an error. 0, or -1 after
 * kp_subtask_fail (a blob of another version or size). */
int kp_keyed_blob_read(kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi, int db_restored,
                       kp_keyed_blob *out);

/* Passes a barrier, or the completion of checkpoint `id`, on from a keyed operator: to its
 * late side outputs, then its outputs (engine.h). */
int kp_keyed_pass_barrier(kp_op *op, kp_op *const *late, int nlate, struct kp_snapshot *snap);
int kp_keyed_pass_complete(kp_op *op, kp_op *const *late, int nlate, int64_t id);

/* Calls fn for every blob of `node` named `name` in st->restore whose key-group range overlaps
 * [kg_lo, kg_hi); stops at fn's first non-zero and returns it. 0 when there is no restore. */
int kp_keyed_blobs(const kp_subtask *st, const kp_node *node, const char *name, int kg_lo,
                   int kg_hi, int (*fn)(void *ctx, const kp_restore_entry *e), void *ctx);

/* Does st->restore hold any state of this operator (its uid)? */
int kp_keyed_restoring(const kp_subtask *st, const kp_node *node);

#endif
