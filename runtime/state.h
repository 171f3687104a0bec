/* Keyed state backend: the interface the operators use, implemented on RocksDB in
 * state_rocksdb.c.
 *
 * One backend instance belongs to one subtask (its thread owns it; no locks inside). Each
 * declared state is a column family. Keys are laid out by the caller as
 *   key group (2 bytes, big endian) | ... (operator-specific)
 * so that any key-group range can be scanned, deleted or, later, restored at another
 * parallelism. Window operators put the namespace (window end) before the key, so that a
 * window's contents are one range (see docs/architecture.md, "State").
 *
 * Memory is bounded by configuration: a shared LRU block cache and a fixed number of
 * memtables of a fixed size per column family; kp_state_memory() reports what is in use.
 * The operators' in-memory write-back caches sit in front of this and count separately. */
#ifndef KP_STATE_H
#define KP_STATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct kp_state kp_state;
typedef struct kp_state_iter kp_state_iter;
typedef struct kp_state_batch kp_state_batch;

typedef struct kp_state_config {
    const char *dir;          /* database directory, created if missing */
    size_t block_cache_bytes; /* 0 = 32 MiB */
    size_t memtable_bytes;    /* per column family, 0 = 16 MiB */
    int max_memtables;        /* per column family, 0 = 2 */
    int fresh;                /* non-zero: delete any existing database first */
} kp_state_config;

typedef struct kp_state_memory {
    size_t block_cache;   /* bytes pinned in the block cache */
    size_t memtables;     /* bytes in all memtables (active + immutable) */
    size_t table_readers; /* index and filter blocks held outside the cache */
} kp_state_memory;

/* Opens (or creates) the database. Returns NULL and fills errstr on error.
 * @locality any thread; the returned handle is then owned by one thread. */
kp_state *kp_state_open(const kp_state_config *cfg, char *errstr, size_t errlen);

/* Flushes the memtables (there is no WAL), then closes everything. Accepts NULL. */
void kp_state_close(kp_state *st);

/* Returns the id of column family `name`, creating it if needed; -1 and errstr on error. */
int kp_state_cf(kp_state *st, const char *name, char *errstr, size_t errlen);

/* Like kp_state_cf, for a column family that is only ever read by range scans (window panes):
 * no bloom filter is built for it at flushes and compactions, and L0 files are compacted
 * later (8 of them instead of 4), since most of what it holds is read once and deleted.
 * docs/state.md has the measurements. An existing column family keeps the options it was
 * opened with. */
int kp_state_cf_scan(kp_state *st, const char *name, char *errstr, size_t errlen);

/* Like kp_state_cf, for a column family read by point gets of whole keys (the spilled keys of
 * sessions and process functions, key_spill.h): the SST files keep their bloom filters except
 * on the last level (optimize_filters_for_hits: most gets look for keys that exist); a put of
 * a key that is in the active memtable overwrites it in place when the value is not larger
 * (inplace_update_support: the memtable holds each key once, not each eviction of it; no
 * snapshots of this column family). An existing column family keeps its options. */
int kp_state_cf_point(kp_state *st, const char *name, char *errstr, size_t errlen);

/* Point operations. get returns 1 if found (value malloc'd into *val, free with free()),
 * 0 if absent, -1 on error. put/del return 0 or -1. */
int kp_state_get(kp_state *st, int cf, const void *key, size_t klen, void **val, size_t *vlen,
                 char *errstr, size_t errlen);
int kp_state_put(kp_state *st, int cf, const void *key, size_t klen, const void *val, size_t vlen,
                 char *errstr, size_t errlen);
int kp_state_del(kp_state *st, int cf, const void *key, size_t klen, char *errstr, size_t errlen);

/* Deletes every key in [lo, hi). */
int kp_state_del_range(kp_state *st, int cf, const void *lo, size_t lolen, const void *hi,
                       size_t hilen, char *errstr, size_t errlen);
/* Deletes every key in [lo, hi) with one RocksDB range tombstone: costs nothing per key, but
 * RocksDB 7.8 re-fragments the memtable's range tombstones at every new iterator and merges
 * them into every seek, so it is for ranges that hold many keys (kp_state_del_range: key by
 * key, for the others). */
int kp_state_del_range_tombstone(kp_state *st, int cf, const void *lo, size_t lolen, const void *hi,
                                 size_t hilen, char *errstr, size_t errlen);

/* Write batches: reusable; kp_state_write applies and clears the batch (WAL disabled: the
 * checkpoint, not the WAL, is the unit of durability). */
kp_state_batch *kp_state_batch_new(void);
void kp_state_batch_free(kp_state_batch *b);
void kp_state_batch_put(kp_state_batch *b, kp_state *st, int cf, const void *key, size_t klen,
                        const void *val, size_t vlen);
void kp_state_batch_del(kp_state_batch *b, kp_state *st, int cf, const void *key, size_t klen);
size_t kp_state_batch_count(const kp_state_batch *b);
int kp_state_write(kp_state *st, kp_state_batch *b, char *errstr, size_t errlen);

/* Range iteration over [lo, hi) in key order. The key/value pointers stay valid until the
 * next call to kp_state_iter_next or kp_state_iter_close. */
kp_state_iter *kp_state_iter_open(kp_state *st, int cf, const void *lo, size_t lolen,
                                  const void *hi, size_t hilen);
int kp_state_iter_valid(const kp_state_iter *it);
/* Moves to the first key >= key (within the iterator's bounds): one iterator can read several
 * ranges, which is much cheaper than one iterator per range. */
void kp_state_iter_seek(kp_state_iter *it, const void *key, size_t klen);
void kp_state_iter_next(kp_state_iter *it);
const void *kp_state_iter_key(const kp_state_iter *it, size_t *len);
const void *kp_state_iter_value(const kp_state_iter *it, size_t *len);
/* 0 if iteration ended normally, -1 (and errstr) if it stopped on an error. */
int kp_state_iter_close(kp_state_iter *it, char *errstr, size_t errlen);

/* Bytes of the database's SST files over all column families (RocksDB's
 * rocksdb.total-sst-files-size): the state on disk; 0 for NULL. */
uint64_t kp_state_disk_bytes(kp_state *st);

/* Memory currently used by RocksDB for this database. */
void kp_state_memory_usage(kp_state *st, kp_state_memory *out);

/* Bytes moved between the operators and RocksDB: keys plus values handed to puts and write
 * batches, and returned by gets and iterators. */
typedef struct kp_state_io {
    uint64_t bytes_written, bytes_read;
    uint64_t writes; /* puts, deletes and batches written */
    uint64_t reads;  /* gets and iterators opened */
} kp_state_io;

/* Totals over every database this process opened since it started (benchmarks read them
 * before and after a run). @locality any thread; the counters are atomic. */
void kp_state_io_totals(kp_state_io *out);

/* Hook for checkpoints (checkpoint issue): a consistent hard-linked copy in `dir`. */
int kp_state_checkpoint(kp_state *st, const char *dir, char *errstr, size_t errlen);

/* Bulk load (measured for the whole-cache flush, docs/state.md): puts in strictly increasing
 * key order go to one SST file in the database directory; kp_state_sst_ingest finishes it,
 * ingests it into column family cf (moved, not copied) and frees the writer, whatever the
 * outcome; kp_state_sst_abort drops an unfinished one. Nothing is visible before the ingest.
 * @locality the database's thread */
typedef struct kp_state_sst kp_state_sst;
kp_state_sst *kp_state_sst_open(kp_state *st, int cf, char *errstr, size_t errlen);
int kp_state_sst_put(kp_state_sst *s, const void *key, size_t klen, const void *val, size_t vlen,
                     char *errstr, size_t errlen);
int kp_state_sst_ingest(kp_state_sst *s, char *errstr, size_t errlen);
void kp_state_sst_abort(kp_state_sst *s);

#endif
