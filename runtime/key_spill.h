/* Spilling per-key state of keyed operators (session windows, process functions) to RocksDB.
 *
 * Such an operator keeps its keys in a key table (keytable.h) that is a write-back cache
 * over RocksDB: hot keys in memory, cold ones evicted in batches and read back when a record
 * or a timer needs them. The operator says what one key's state is (it serializes it to one
 * blob and frees it); this file does the rest, the same way for every such operator:
 *   - the key layout, shared by all keyed state: key group (2 bytes, big endian) | key, so a
 *     key-group range is one RocksDB range (checkpoints, rescaling);
 *   - eviction with a second-chance clock over the key table: a key used since the hand last
 *     passed is spared once; the others are written in write batches (no WAL; a quarter of
 *     the eviction each, so the saved state held during a sweep stays small) and removed,
 *     until about half the budget is free, so one spill moves many keys and costs what it
 *     moves;
 *   - read-back: a key that is not in memory is looked up in RocksDB only if a key of its
 *     hash bucket was ever spilled (a bitmap of spilled hashes, at most ~8 bits per spilled
 *     key, rebuilt twice as large by one scan of the column family when a quarter of it is
 *     set): a key seen for the first time, and every key of an all-cached run, costs no
 *     read. Its on-disk copy stays (deleting it would cost
 *     a write per read-back); the operator remembers that the key is on disk, overwrites it
 *     when it evicts the key again, and deletes it (kp_key_spill_forget) when the key is
 *     dropped because it holds nothing any more — so a dropped key never comes back.
 * The database opens lazily on the first spill (at once when restoring), in
 * <state_dir>/<uid>-kg<lo>-<hi> (keyed_db.h).
 *
 * @locality one subtask thread (the owning operator's); no locks. */
#ifndef KP_KEY_SPILL_H
#define KP_KEY_SPILL_H

#include "engine.h"
#include "keyed_db.h"
#include "keytable.h"
#include "state.h"

typedef struct kp_key_spill kp_key_spill;

/* What the operator tells the eviction about its keys.
 * used:  1 if the key was used since the last call for it (and clears that mark): spared;
 * save:  appends the key's state to `out` (the blob read back by the operator); -1 on OOM;
 * bytes: the memory the key's state holds outside the table (freed by drop);
 * drop:  frees what the key holds outside the table; the table entry is removed after. */
typedef struct kp_key_spill_ops {
    int (*used)(void *arg, kp_keyentry *e);
    int (*save)(void *arg, kp_keyentry *e, kp_buf *out);
    size_t (*bytes)(void *arg, kp_keyentry *e);
    void (*drop)(void *arg, kp_keyentry *e);
    /* 1 if the key changed since its state was last written to RocksDB (or was never
     * written): a flush writes only those, and an eviction drops a clean key (read back and
     * unchanged since) without writing it; flushed: it was written, it is on disk now (clean;
     * a later drop of the key must kp_key_spill_forget it). */
    int (*dirty)(void *arg, kp_keyentry *e);
    void (*flushed)(void *arg, kp_keyentry *e);
} kp_key_spill_ops;

struct kp_key_spill {
    kp_subtask *st;
    const kp_node *node;
    const char *cf_name;
    int max_parallelism;
    int kg_lo, kg_hi; /* the subtask's key groups */
    kp_state *state;  /* opened on the first spill */
    int cf;
    kp_state_batch *batch; /* the keys of one eviction */
    kp_buf rkey;           /* a RocksDB key */
    kp_buf victims;        /* the keys being evicted and their saved state (key_spill.c) */
    kp_buf order;          /* offsets of the victims, sorted in RocksDB key order */
    size_t clock;          /* the eviction hand: a slot index into the key table */
    int ever;              /* something was spilled: misses must look in RocksDB */
    uint64_t *filter;      /* one bit per hash bucket: a key of this bucket was spilled */
    size_t filter_bits;    /* a power of two, or 0 before the first spill */
    size_t filter_set;     /* bits set; the filter doubles when a quarter is set */
    long long keys_out, keys_in, bytes_out, bytes_in, spills;
};

/* Sets up `sp` for the operator of `node` on subtask `st`; the column family is `cf_name`. */
void kp_key_spill_init(kp_key_spill *sp, kp_subtask *st, const kp_node *node, const char *cf_name);

/* Closes the database (the spilled state of a finished run is not kept). */
void kp_key_spill_finish(kp_key_spill *sp);

/* Evicts keys of `t` until about `need` bytes (the estimate: two slots, the key and ops->bytes
 * per key) are freed, or every key was considered twice. One spill, written in write batches of
 * about need / 4 each (the scratch, kp_key_spill_scratch_release). 0, or -1 after
 * kp_subtask_fail. Every pointer into `t` is invalid afterwards. */
int kp_key_spill_evict(kp_key_spill *sp, kp_keytable *t, size_t need, const kp_key_spill_ops *ops,
                       void *arg);

/* Before kp_key_spill_entry(sp, t, hash, key, create, ...): the bytes to evict first (an
 * estimate for kp_key_spill_evict; 0: none) so that `t` does not grow past `limit` for the key.
 * The table grows for a key that enters it (its slots double at 3/4 full, its key arena when
 * full); grown past the budget, it would hold up to twice the budget until the eviction after
 * the record, and that eviction, down to half the budget of the grown table, would take most
 * keys out of memory. Non-zero only when the key would enter (not in `t`; with !create, it may
 * be on disk) and `t` grown + `extra` (what the keys hold outside the table) would pass
 * `limit`: down to half the limit, or at least a quarter of the slots' worth. Looks the key up
 * only then. The caller evicts before any pointer into `t` is held. */
size_t kp_key_spill_room(const kp_key_spill *sp, const kp_keytable *t, uint64_t hash, kp_bytes key,
                         int create, size_t extra, size_t limit);

/* The entry of `key` (hash: kp_hash64 of it) in *out: from memory; else read back from
 * RocksDB into a new zeroed entry by restore(arg, e, blob) (which notes that the key is on
 * disk) (0, or -1 for bytes that are no
 * saved state or no memory; it must free what it allocated before failing); else, if
 * `create`, a new zeroed entry; else NULL. 0, or -1 after kp_subtask_fail. */
int kp_key_spill_entry(kp_key_spill *sp, kp_keytable *t, uint64_t hash, kp_bytes key, int create,
                       int (*restore)(void *arg, kp_keyentry *e, kp_bytes blob), void *arg,
                       kp_keyentry **out);

/* Opens the database now if it is not open yet (for other column families of the same
 * operator, e.g. timer_spill.h). 0, or -1 after kp_subtask_fail. */
int kp_key_spill_open(kp_key_spill *sp);

/* Reads back the spilled state of `key` (hash: kp_hash64 of it): 1 and *blob (malloc'd, free
 * it) if it was spilled, 0 if not, -1 after kp_subtask_fail. The on-disk copy stays. */
int kp_key_spill_take(kp_key_spill *sp, uint64_t hash, kp_bytes key, void **blob, size_t *len);

/* Deletes the on-disk copy of a key that was read back and is now dropped from memory. 0, or
 * -1 after kp_subtask_fail. */
int kp_key_spill_forget(kp_key_spill *sp, uint64_t hash, kp_bytes key);

/* Checkpoint barriers: writes the state of every dirty key in `t` to RocksDB (one sorted write
 * batch) and keeps it in memory, clean, so that RocksDB alone holds the complete keyed state. Opens
 * the database if needed. 0, or -1 after kp_subtask_fail. */
int kp_key_spill_flush(kp_key_spill *sp, kp_keytable *t, const kp_key_spill_ops *ops, void *arg);

/* Tests: flushes of at least n keys write an SST file (default 50000). @locality any thread;
 * affects later flushes of every operator in this process */
void kp_key_spill_flush_sst_min(size_t n);

/* Restore: calls fn for every key of column family `cf` in the subtask's key groups (its
 * RocksDB key: key group | key bytes) with the key and its value; stops at fn's first non-zero
 * and returns it. -1 after kp_subtask_fail on a read error. */
int kp_key_spill_scan(kp_key_spill *sp, int cf,
                      int (*fn)(void *arg, uint64_t hash, kp_bytes key, kp_bytes value), void *arg);

/* The scratch of the last eviction or flush (the evicted keys' saved state, in victims and
 * order): returns the bytes it held, and frees it when that is more than 64 KiB, so that
 * what a sweep needs is held only during the sweep. The operator counts the returned bytes
 * in its peak (docs/state.md, "Memory"). */
size_t kp_key_spill_scratch_release(kp_key_spill *sp);

/* Reading a blob: copies `n` bytes from *in into dst and advances; -1 if *in is too short. */
int kp_blob_read(kp_bytes *in, void *dst, size_t n);

#endif
