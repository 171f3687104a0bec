/* Keyed state on RocksDB (the interface is state.h).
 *
 * Why it is built this way:
 * - One RocksDB database per subtask, one column family per declared state. The subtask's
 *   thread owns the handle, so there are no locks here; RocksDB's own background threads do
 *   flushes and compactions.
 * - Writes go with the WAL disabled: the checkpoint (kp_state_checkpoint, which flushes every
 *   memtable and hard-links the SST files) is the unit of durability, and after a crash the
 *   job restores from the last checkpoint rather than from this directory. A clean
 *   kp_state_close flushes the memtables, so reopening a cleanly closed database sees all
 *   data without a WAL. A directory left behind by a crash may hold some column families
 *   newer than others; open it with `fresh` and restore from a checkpoint instead.
 * - Memory is bounded by configuration: one LRU block cache per database that also holds the
 *   index and filter blocks (so table readers do not grow outside it), and per column family
 *   at most max_memtables memtables of memtable_bytes each; RocksDB stalls writes rather than
 *   exceed that.
 * - The workload is write-heavy and reads in key order (window contents are one key range):
 *   level compaction with dynamic level sizes (least space amplification), LZ4 (cheap on CPU;
 *   falls back if the library lacks it), 16 KiB blocks for scans, full bloom filters for the
 *   point lookups of keyed state, and as many background jobs as cores (at least 2).
 *
 * Column-family ids are indexes into this instance's handle table; they are not stable across
 * runs, so callers look them up by name with kp_state_cf after every open. Iterators take
 * NULL for lo or hi to mean unbounded on that side.
 *
 * Every RocksDB error string is copied into the caller's errstr with the operation, directory
 * and column family it concerns, then freed with rocksdb_free. */
#include "state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>

#define KP_STATE_DEFAULT_CACHE     ((size_t)32 << 20)
#define KP_STATE_DEFAULT_MEMTABLE  ((size_t)16 << 20)
#define KP_STATE_DEFAULT_MEMTABLES 2
#define KP_STATE_BLOCK_SIZE        ((size_t)16 << 10)
#define KP_STATE_BLOOM_BITS        10.0
#define KP_STATE_MAX_BG_JOBS       8

struct kp_state {
    rocksdb_t *db;
    rocksdb_options_t *opts; /* database options, and the template for every column family */
    rocksdb_cache_t *cache;  /* shared by all column families of this database */
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo; /* WAL disabled */
    rocksdb_column_family_handle_t **cfs;
    char **names; /* names[i] is the name of cfs[i] */
    int ncf;
    int capcf;
    char *dir;
};

struct kp_state_batch {
    rocksdb_writebatch_t *wb;
    int bad_cf;   /* first invalid column-family id added since the last write, or -1 */
    size_t bytes; /* keys and values added since the last write */
};

struct kp_state_iter {
    kp_state *st;
    int cf;
    rocksdb_readoptions_t *ro; /* holds the bounds; must outlive the iterator */
    rocksdb_iterator_t *it;
    uint64_t bytes; /* keys and values returned, added to the totals at close */
    char bounds[];  /* lower bound then upper bound, referenced by ro */
};

/* kp_state_io_totals: process-wide, updated once per operation (a batch, an iterator). */
static _Atomic uint64_t io_bytes_written, io_bytes_read, io_writes, io_reads;

static void io_count_write(size_t bytes)
{
    atomic_fetch_add_explicit(&io_bytes_written, bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&io_writes, 1, memory_order_relaxed);
}

static void io_count_read(uint64_t bytes)
{
    atomic_fetch_add_explicit(&io_bytes_read, bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&io_reads, 1, memory_order_relaxed);
}

void kp_state_io_totals(kp_state_io *out)
{
    out->bytes_written = atomic_load_explicit(&io_bytes_written, memory_order_relaxed);
    out->bytes_read = atomic_load_explicit(&io_bytes_read, memory_order_relaxed);
    out->writes = atomic_load_explicit(&io_writes, memory_order_relaxed);
    out->reads = atomic_load_explicit(&io_reads, memory_order_relaxed);
}

/* Writes "<context>: <rocksdb message>" into errstr and frees the RocksDB message (if any). */
static void kp_state_fail(char *errstr, size_t errlen, char **rerr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void kp_state_fail(char *errstr, size_t errlen, char **rerr, const char *fmt, ...)
{
    if (errstr && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(errstr, errlen, fmt, ap);
        va_end(ap);
        if (rerr && *rerr && n >= 0 && (size_t)n < errlen)
            snprintf(errstr + n, errlen - (size_t)n, ": %s", *rerr);
    }
    if (rerr && *rerr) {
        rocksdb_free(*rerr);
        *rerr = NULL;
    }
}

static int kp_state_cf_ok(kp_state *st, int cf, const char *op, char *errstr, size_t errlen)
{
    if (st && st->db && cf >= 0 && cf < st->ncf)
        return 1;
    kp_state_fail(errstr, errlen, NULL,
                  "state %s: invalid column family id %d (use the id kp_state_cf returned for "
                  "this open database)",
                  op, cf);
    return 0;
}

/* mkdir -p: RocksDB creates only the last component of the path. */
static int kp_state_mkdirs(const char *path, char *errstr, size_t errlen)
{
    char *p = strdup(path);
    if (!p) {
        kp_state_fail(errstr, errlen, NULL, "state open %s: out of memory", path);
        return -1;
    }
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            kp_state_fail(errstr, errlen, NULL,
                          "state open %s: cannot create directory %s: %s; check that the "
                          "state directory is a writable path",
                          path, p, strerror(errno));
            free(p);
            return -1;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        kp_state_fail(errstr, errlen, NULL,
                      "state open %s: exists and is not a directory; point the state "
                      "directory elsewhere",
                      path);
        return -1;
    }
    return 0;
}

static int kp_state_bg_jobs(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2)
        return 2;
    return n > KP_STATE_MAX_BG_JOBS ? KP_STATE_MAX_BG_JOBS : (int)n;
}

/* Block-based tables on the shared cache, with or without bloom filters; o copies them. */
static void kp_state_set_table(rocksdb_options_t *o, rocksdb_cache_t *cache, int bloom)
{
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, cache);
    rocksdb_block_based_options_set_block_size(t, KP_STATE_BLOCK_SIZE);
    rocksdb_block_based_options_set_format_version(t, 5);
    /* the table options take ownership of the filter policy */
    if (bloom)
        rocksdb_block_based_options_set_filter_policy(
            t, rocksdb_filterpolicy_create_bloom_full(KP_STATE_BLOOM_BITS));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    rocksdb_options_set_block_based_table_factory(o, t); /* copies t */
    rocksdb_block_based_options_destroy(t);
}

/* Options for the database and (the same object) for every column family. */
static rocksdb_options_t *kp_state_options(const kp_state_config *cfg, rocksdb_cache_t *cache,
                                           int compression)
{
    size_t memtable = cfg->memtable_bytes ? cfg->memtable_bytes : KP_STATE_DEFAULT_MEMTABLE;
    int memtables = cfg->max_memtables > 0 ? cfg->max_memtables : KP_STATE_DEFAULT_MEMTABLES;
    if (memtables < 2)
        memtables = 2; /* RocksDB raises it to 2 anyway: one to fill while one flushes */

    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_create_missing_column_families(o, 1);
    rocksdb_options_increase_parallelism(o, kp_state_bg_jobs());
    /* one writer per database (its subtask's thread); and kp_state_cf_point's in-place
     * updates need it off */
    rocksdb_options_set_allow_concurrent_memtable_write(o, 0);
    rocksdb_options_set_bytes_per_sync(o, 1 << 20);
    rocksdb_options_set_keep_log_file_num(o, 4);
    rocksdb_options_set_max_log_file_size(o, 8 << 20);

    rocksdb_options_set_write_buffer_size(o, memtable);
    rocksdb_options_set_max_write_buffer_number(o, memtables);
    rocksdb_options_set_min_write_buffer_number_to_merge(o, 1);
    rocksdb_options_set_compaction_style(o, rocksdb_level_compaction);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
    rocksdb_options_set_level0_file_num_compaction_trigger(o, 4);
    rocksdb_options_set_target_file_size_base(o, 64 << 20);
    rocksdb_options_set_max_bytes_for_level_base(o, 256 << 20);
    rocksdb_options_set_compression(o, compression);
    kp_state_set_table(o, cache, 1);
    return o;
}

static int kp_state_add_cf(kp_state *st, const char *name, rocksdb_column_family_handle_t *h)
{
    if (st->ncf == st->capcf) {
        int cap = st->capcf ? 2 * st->capcf : 8;
        rocksdb_column_family_handle_t **cfs = realloc(st->cfs, (size_t)cap * sizeof(*cfs));
        if (!cfs)
            return -1;
        st->cfs = cfs;
        char **names = realloc(st->names, (size_t)cap * sizeof(*names));
        if (!names)
            return -1;
        st->names = names;
        st->capcf = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    st->cfs[st->ncf] = h;
    st->names[st->ncf] = copy;
    st->ncf++;
    return 0;
}

/* Names of the column families in dir: every one on disk, or just "default" for a new
 * database. *names is either RocksDB's list (*from_rocksdb = 1) or a static one. */
static int kp_state_list_cfs(kp_state *st, char ***names, size_t *n, int *from_rocksdb,
                             char *errstr, size_t errlen)
{
    static char *fresh_names[] = {"default"};
    size_t len = strlen(st->dir) + sizeof("/CURRENT");
    char *current = malloc(len);
    if (!current) {
        kp_state_fail(errstr, errlen, NULL, "state open %s: out of memory", st->dir);
        return -1;
    }
    snprintf(current, len, "%s/CURRENT", st->dir);
    int exists = access(current, F_OK) == 0;
    free(current);
    if (!exists) {
        *names = fresh_names;
        *n = 1;
        *from_rocksdb = 0;
        return 0;
    }
    char *err = NULL;
    *names = rocksdb_list_column_families(st->opts, st->dir, n, &err);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state open %s: listing column families", st->dir);
        return -1;
    }
    *from_rocksdb = 1;
    return 0;
}

/* Opens the database with every column family in names; retries without compression if the
 * RocksDB library was built without the preferred one. */
static int kp_state_open_db(kp_state *st, const kp_state_config *cfg, char **names, size_t n,
                            char *errstr, size_t errlen)
{
    static const int compressions[] = {rocksdb_lz4_compression, rocksdb_snappy_compression,
                                       rocksdb_no_compression};
    rocksdb_column_family_handle_t **handles = calloc(n, sizeof(*handles));
    const rocksdb_options_t **cfopts = calloc(n, sizeof(*cfopts));
    if (!handles || !cfopts) {
        kp_state_fail(errstr, errlen, NULL, "state open %s: out of memory", st->dir);
        goto error;
    }
    char *err = NULL;
    for (size_t c = 0; c < sizeof(compressions) / sizeof(compressions[0]); c++) {
        if (c > 0) {
            rocksdb_options_destroy(st->opts);
            st->opts = kp_state_options(cfg, st->cache, compressions[c]);
        }
        for (size_t i = 0; i < n; i++)
            cfopts[i] = st->opts;
        st->db = rocksdb_open_column_families(st->opts, st->dir, (int)n, (const char **)names,
                                              cfopts, handles, &err);
        if (!err || !strstr(err, "not linked with the binary"))
            break;
        rocksdb_free(err);
        err = NULL;
    }
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state open %s", st->dir);
        st->db = NULL;
        goto error;
    }
    for (size_t i = 0; i < n; i++) {
        if (kp_state_add_cf(st, names[i], handles[i]) != 0) {
            kp_state_fail(errstr, errlen, NULL, "state open %s: out of memory", st->dir);
            for (size_t j = i; j < n; j++)
                rocksdb_column_family_handle_destroy(handles[j]);
            goto error;
        }
    }
    free(handles);
    free(cfopts);
    return 0;

error:
    free(handles);
    free(cfopts);
    return -1;
}

/* Frees everything without flushing (used by open's error path and by close). */
static void kp_state_free(kp_state *st)
{
    for (int i = 0; i < st->ncf; i++) {
        rocksdb_column_family_handle_destroy(st->cfs[i]);
        free(st->names[i]);
    }
    if (st->db)
        rocksdb_close(st->db);
    if (st->opts)
        rocksdb_options_destroy(st->opts);
    if (st->cache)
        rocksdb_cache_destroy(st->cache);
    if (st->ro)
        rocksdb_readoptions_destroy(st->ro);
    if (st->wo)
        rocksdb_writeoptions_destroy(st->wo);
    free(st->cfs);
    free(st->names);
    free(st->dir);
    free(st);
}

kp_state *kp_state_open(const kp_state_config *cfg, char *errstr, size_t errlen)
{
    if (!cfg || !cfg->dir || !cfg->dir[0]) {
        kp_state_fail(errstr, errlen, NULL, "state open: no directory configured");
        return NULL;
    }
    kp_state *st = calloc(1, sizeof(*st));
    if (!st || !(st->dir = strdup(cfg->dir))) {
        free(st);
        kp_state_fail(errstr, errlen, NULL, "state open %s: out of memory", cfg->dir);
        return NULL;
    }
    st->cache = rocksdb_cache_create_lru(cfg->block_cache_bytes ? cfg->block_cache_bytes
                                                                : KP_STATE_DEFAULT_CACHE);
    st->opts = kp_state_options(cfg, st->cache, rocksdb_lz4_compression);
    st->ro = rocksdb_readoptions_create();
    st->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(st->wo, 1);

    char *err = NULL;
    struct stat sb;
    if (cfg->fresh && stat(st->dir, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        rocksdb_destroy_db(st->opts, st->dir, &err);
        if (err) {
            kp_state_fail(errstr, errlen, &err, "state open %s: deleting the old database",
                          st->dir);
            goto error;
        }
    }
    if (kp_state_mkdirs(st->dir, errstr, errlen) != 0)
        goto error;

    char **names;
    size_t n;
    int from_rocksdb;
    if (kp_state_list_cfs(st, &names, &n, &from_rocksdb, errstr, errlen) != 0)
        goto error;
    int rc = kp_state_open_db(st, cfg, names, n, errstr, errlen);
    if (from_rocksdb)
        rocksdb_list_column_families_destroy(names, n);
    if (rc != 0)
        goto error;
    return st;

error:
    kp_state_free(st);
    return NULL;
}

void kp_state_close(kp_state *st)
{
    if (!st)
        return;
    if (st->db) {
        /* Without a WAL, unflushed memtables would be lost on close. */
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 1);
        for (int i = 0; i < st->ncf; i++) {
            char *err = NULL;
            rocksdb_flush_cf(st->db, fo, st->cfs[i], &err);
            if (err) {
                /* close cannot return an error; the checkpoint still holds the state */
                fprintf(stderr,
                        "kappa: state close %s: flushing column family '%s': %s; a reopen "
                        "may miss recent writes, restore from the last checkpoint\n",
                        st->dir, st->names[i], err);
                rocksdb_free(err);
            }
        }
        rocksdb_flushoptions_destroy(fo);
    }
    kp_state_free(st);
}

/* kp_state_cf and kp_state_cf_scan: the column family `name`, created with `opts` if new. */
static int kp_state_cf_with(kp_state *st, const char *name, const rocksdb_options_t *opts,
                            char *errstr, size_t errlen)
{
    if (!st || !st->db || !name || !name[0]) {
        kp_state_fail(errstr, errlen, NULL, "state: column family needs a non-empty name");
        return -1;
    }
    for (int i = 0; i < st->ncf; i++)
        if (strcmp(st->names[i], name) == 0)
            return i;
    char *err = NULL;
    rocksdb_column_family_handle_t *h = rocksdb_create_column_family(st->db, opts, name, &err);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: creating column family '%s'", st->dir, name);
        return -1;
    }
    if (kp_state_add_cf(st, name, h) != 0) {
        rocksdb_column_family_handle_destroy(h);
        kp_state_fail(errstr, errlen, NULL,
                      "state %s: creating column family '%s': out of "
                      "memory",
                      st->dir, name);
        return -1;
    }
    return st->ncf - 1;
}

int kp_state_cf(kp_state *st, const char *name, char *errstr, size_t errlen)
{
    return kp_state_cf_with(st, name, st ? st->opts : NULL, errstr, errlen);
}

int kp_state_cf_scan(kp_state *st, const char *name, char *errstr, size_t errlen)
{
    if (!st || !st->opts)
        return kp_state_cf_with(st, name, NULL, errstr, errlen); /* reports the error */
    rocksdb_options_t *o = rocksdb_options_create_copy(st->opts);
    kp_state_set_table(o, st->cache, 0);
    rocksdb_options_set_level0_file_num_compaction_trigger(o, 8);
    int cf = kp_state_cf_with(st, name, o, errstr, errlen);
    rocksdb_options_destroy(o);
    return cf;
}

int kp_state_cf_point(kp_state *st, const char *name, char *errstr, size_t errlen)
{
    if (!st || !st->opts)
        return kp_state_cf_with(st, name, NULL, errstr, errlen); /* reports the error */
    rocksdb_options_t *o = rocksdb_options_create_copy(st->opts);
    /* no memtable bloom filter: measured slower (most gets find their key in the memtable) */
    rocksdb_options_set_optimize_filters_for_hits(o, 1);
    /* a put of a key already in the memtable overwrites it (if not larger) instead of adding
     * a version: the skip list holds distinct keys, not every eviction of every key */
    rocksdb_options_set_inplace_update_support(o, 1);
    /* a hashed memtable (the whole key is the prefix): a get or in-place put finds its key
     * in one bucket instead of a search of the skip list (docs/state.md, "Read-back");
     * iterators set total_order_seek (kp_state_iter_open). ~8 bytes of bucket per 128 of
     * memtable. */
    rocksdb_options_set_prefix_extractor(o, rocksdb_slicetransform_create_noop());
    rocksdb_options_set_hash_link_list_rep(o, rocksdb_options_get_write_buffer_size(o) / 128 + 1);
    int cf = kp_state_cf_with(st, name, o, errstr, errlen);
    rocksdb_options_destroy(o);
    return cf;
}

int kp_state_get(kp_state *st, int cf, const void *key, size_t klen, void **val, size_t *vlen,
                 char *errstr, size_t errlen)
{
    *val = NULL;
    *vlen = 0;
    if (!kp_state_cf_ok(st, cf, "get", errstr, errlen))
        return -1;
    char *err = NULL;
    /* pinned: one copy (ours) instead of rocksdb_get_cf's two */
    rocksdb_pinnableslice_t *ps =
        rocksdb_get_pinned_cf(st->db, st->ro, st->cfs[cf], key, klen, &err);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: get from column family '%s'", st->dir,
                      st->names[cf]);
        return -1;
    }
    if (!ps) {
        io_count_read(0);
        return 0;
    }
    size_t n;
    const char *p = rocksdb_pinnableslice_value(ps, &n);
    io_count_read(klen + n);
    void *copy = malloc(n ? n : 1);
    if (!copy) {
        rocksdb_pinnableslice_destroy(ps);
        kp_state_fail(errstr, errlen, NULL,
                      "state %s: get from column family '%s': out of "
                      "memory",
                      st->dir, st->names[cf]);
        return -1;
    }
    memcpy(copy, p, n);
    rocksdb_pinnableslice_destroy(ps);
    *val = copy;
    *vlen = n;
    return 1;
}

int kp_state_put(kp_state *st, int cf, const void *key, size_t klen, const void *val, size_t vlen,
                 char *errstr, size_t errlen)
{
    if (!kp_state_cf_ok(st, cf, "put", errstr, errlen))
        return -1;
    char *err = NULL;
    rocksdb_put_cf(st->db, st->wo, st->cfs[cf], key, klen, val, vlen, &err);
    io_count_write(klen + vlen);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: put into column family '%s'", st->dir,
                      st->names[cf]);
        return -1;
    }
    return 0;
}

int kp_state_del(kp_state *st, int cf, const void *key, size_t klen, char *errstr, size_t errlen)
{
    if (!kp_state_cf_ok(st, cf, "del", errstr, errlen))
        return -1;
    char *err = NULL;
    rocksdb_delete_cf(st->db, st->wo, st->cfs[cf], key, klen, &err);
    io_count_write(klen);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: delete from column family '%s'", st->dir,
                      st->names[cf]);
        return -1;
    }
    return 0;
}

/* A point delete of every key in the range, not RocksDB's DeleteRange: the RocksDB we link
 * (7.8) fragments every range tombstone of the memtable again for each new iterator, and
 * merges them into every seek, so the ~128 tombstones a window pane leaves (one per key
 * group) made reads cost O(tombstones): 8.6 CPU-s instead of 2.1 for keyed_restore's tumbling
 * case with a tiny cache (docs/state.md, "Deleting"). Point tombstones sit before the keys
 * later seeks look for, and a deletion costs what the range holds. */
int kp_state_del_range(kp_state *st, int cf, const void *lo, size_t lolen, const void *hi,
                       size_t hilen, char *errstr, size_t errlen)
{
    if (!kp_state_cf_ok(st, cf, "del_range", errstr, errlen))
        return -1;
    kp_state_iter *it = kp_state_iter_open(st, cf, lo, lolen, hi, hilen);
    kp_state_batch *b = kp_state_batch_new();
    if (!it || !b) {
        kp_state_iter_close(it, NULL, 0);
        kp_state_batch_free(b);
        snprintf(errstr, errlen, "state %s: delete range: out of memory", st->dir);
        return -1;
    }
    for (; kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t klen;
        const void *key = kp_state_iter_key(it, &klen);
        kp_state_batch_del(b, st, cf, key, klen);
    }
    int rc = kp_state_iter_close(it, errstr, errlen);
    if (rc == 0 && kp_state_batch_count(b) > 0)
        rc = kp_state_write(st, b, errstr, errlen);
    kp_state_batch_free(b);
    return rc;
}

int kp_state_del_range_tombstone(kp_state *st, int cf, const void *lo, size_t lolen, const void *hi,
                                 size_t hilen, char *errstr, size_t errlen)
{
    if (!kp_state_cf_ok(st, cf, "del_range_tombstone", errstr, errlen))
        return -1;
    char *err = NULL;
    rocksdb_delete_range_cf(st->db, st->wo, st->cfs[cf], lo, lolen, hi, hilen, &err);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: delete range in column family '%s'", st->dir,
                      st->names[cf]);
        return -1;
    }
    return 0;
}

kp_state_batch *kp_state_batch_new(void)
{
    kp_state_batch *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    b->wb = rocksdb_writebatch_create();
    b->bad_cf = -1;
    b->bytes = 0;
    return b;
}

void kp_state_batch_free(kp_state_batch *b)
{
    if (!b)
        return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

void kp_state_batch_put(kp_state_batch *b, kp_state *st, int cf, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    if (!st || cf < 0 || cf >= st->ncf) {
        if (b->bad_cf == -1)
            b->bad_cf = cf < 0 ? -2 : cf; /* reported by kp_state_write */
        return;
    }
    rocksdb_writebatch_put_cf(b->wb, st->cfs[cf], key, klen, val, vlen);
    b->bytes += klen + vlen;
}

void kp_state_batch_del(kp_state_batch *b, kp_state *st, int cf, const void *key, size_t klen)
{
    if (!st || cf < 0 || cf >= st->ncf) {
        if (b->bad_cf == -1)
            b->bad_cf = cf < 0 ? -2 : cf;
        return;
    }
    rocksdb_writebatch_delete_cf(b->wb, st->cfs[cf], key, klen);
    b->bytes += klen;
}

size_t kp_state_batch_count(const kp_state_batch *b)
{
    return (size_t)rocksdb_writebatch_count(b->wb);
}

int kp_state_write(kp_state *st, kp_state_batch *b, char *errstr, size_t errlen)
{
    int rc = 0;
    if (b->bad_cf != -1) {
        kp_state_fail(errstr, errlen, NULL,
                      "state write: the batch used an invalid column family id%s; nothing "
                      "was written",
                      b->bad_cf == -2 ? " (negative)" : "");
        rc = -1;
    } else if (!st || !st->db) {
        kp_state_fail(errstr, errlen, NULL, "state write: no open database");
        rc = -1;
    } else {
        char *err = NULL;
        rocksdb_write(st->db, st->wo, b->wb, &err);
        io_count_write(b->bytes);
        if (err) {
            kp_state_fail(errstr, errlen, &err, "state %s: writing a batch of %d updates", st->dir,
                          rocksdb_writebatch_count(b->wb));
            rc = -1;
        }
    }
    rocksdb_writebatch_clear(b->wb);
    b->bad_cf = -1;
    b->bytes = 0;
    return rc;
}

kp_state_iter *kp_state_iter_open(kp_state *st, int cf, const void *lo, size_t lolen,
                                  const void *hi, size_t hilen)
{
    if (!kp_state_cf_ok(st, cf, "iter_open", NULL, 0))
        return NULL;
    size_t lon = lo ? lolen : 0, hin = hi ? hilen : 0;
    kp_state_iter *it = malloc(sizeof(*it) + lon + hin);
    if (!it)
        return NULL;
    it->st = st;
    it->cf = cf;
    it->bytes = 0;
    it->ro = rocksdb_readoptions_create();
    /* a column family with a prefix extractor (kp_state_cf_point) is scanned in key order */
    rocksdb_readoptions_set_total_order_seek(it->ro, 1);
    if (lo) {
        memcpy(it->bounds, lo, lon);
        rocksdb_readoptions_set_iterate_lower_bound(it->ro, it->bounds, lon);
    }
    if (hi) {
        memcpy(it->bounds + lon, hi, hin);
        rocksdb_readoptions_set_iterate_upper_bound(it->ro, it->bounds + lon, hin);
    }
    it->it = rocksdb_create_iterator_cf(st->db, it->ro, st->cfs[cf]);
    if (lo)
        rocksdb_iter_seek(it->it, it->bounds, lon);
    else
        rocksdb_iter_seek_to_first(it->it);
    return it;
}

int kp_state_iter_valid(const kp_state_iter *it)
{
    return it && rocksdb_iter_valid(it->it);
}

void kp_state_iter_seek(kp_state_iter *it, const void *key, size_t klen)
{
    rocksdb_iter_seek(it->it, key, klen);
}

void kp_state_iter_next(kp_state_iter *it)
{
    rocksdb_iter_next(it->it);
}

const void *kp_state_iter_key(const kp_state_iter *it, size_t *len)
{
    const void *k = rocksdb_iter_key(it->it, len);
    /* the iterator was malloc'd non-const; the const in the interface is about the position */
    ((kp_state_iter *)it)->bytes += *len;
    return k;
}

const void *kp_state_iter_value(const kp_state_iter *it, size_t *len)
{
    const void *v = rocksdb_iter_value(it->it, len);
    ((kp_state_iter *)it)->bytes += *len;
    return v;
}

int kp_state_iter_close(kp_state_iter *it, char *errstr, size_t errlen)
{
    if (!it)
        return 0;
    int rc = 0;
    char *err = NULL;
    rocksdb_iter_get_error(it->it, &err);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: iterating column family '%s'", it->st->dir,
                      it->st->names[it->cf]);
        rc = -1;
    }
    io_count_read(it->bytes);
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ro);
    free(it);
    return rc;
}

static size_t kp_state_prop_sum(kp_state *st, const char *prop)
{
    size_t sum = 0;
    for (int i = 0; i < st->ncf; i++) {
        uint64_t v = 0;
        if (rocksdb_property_int_cf(st->db, st->cfs[i], prop, &v) == 0)
            sum += (size_t)v;
    }
    return sum;
}

uint64_t kp_state_disk_bytes(kp_state *st)
{
    return st && st->db ? kp_state_prop_sum(st, "rocksdb.total-sst-files-size") : 0;
}

void kp_state_memory_usage(kp_state *st, kp_state_memory *out)
{
    memset(out, 0, sizeof(*out));
    if (!st || !st->db)
        return;
    out->block_cache = rocksdb_cache_get_usage(st->cache);
    /* size-all-: active, unflushed and flushed-but-still-pinned memtables */
    out->memtables = kp_state_prop_sum(st, "rocksdb.size-all-mem-tables");
    out->table_readers = kp_state_prop_sum(st, "rocksdb.estimate-table-readers-mem");
}

int kp_state_checkpoint(kp_state *st, const char *dir, char *errstr, size_t errlen)
{
    if (!st || !st->db || !dir || !dir[0]) {
        kp_state_fail(errstr, errlen, NULL, "state checkpoint: no database or no directory");
        return -1;
    }
    char *err = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(st->db, &err);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: checkpoint into %s", st->dir, dir);
        return -1;
    }
    /* log_size_for_flush 0: always flush the memtables first (there is no WAL to copy) */
    rocksdb_checkpoint_create(cp, dir, 0, &err);
    rocksdb_checkpoint_object_destroy(cp);
    if (err) {
        kp_state_fail(errstr, errlen, &err,
                      "state %s: checkpoint into %s (the directory must not exist yet and its "
                      "parent must, on the same file system)",
                      st->dir, dir);
        return -1;
    }
    return 0;
}

/* ---- bulk load: one sorted SST file, ingested (measured for the whole-cache flush) -------- */

struct kp_state_sst {
    kp_state *st;
    int cf;
    rocksdb_sstfilewriter_t *w;
    rocksdb_envoptions_t *env;
    uint64_t bytes;
    char path[];
};

kp_state_sst *kp_state_sst_open(kp_state *st, int cf, char *errstr, size_t errlen)
{
    if (!st || !st->db || cf < 0 || cf >= st->ncf) {
        kp_state_fail(errstr, errlen, NULL, "state sst: no database or an invalid column family");
        return NULL;
    }
    static _Atomic unsigned serial;
    size_t len = strlen(st->dir) + 48;
    kp_state_sst *s = calloc(1, sizeof *s + len);
    if (!s) {
        kp_state_fail(errstr, errlen, NULL, "state sst: out of memory");
        return NULL;
    }
    snprintf(s->path, len, "%s/bulk-%u.sst", st->dir, atomic_fetch_add(&serial, 1));
    s->st = st;
    s->cf = cf;
    s->env = rocksdb_envoptions_create();
    s->w = rocksdb_sstfilewriter_create(s->env, st->opts);
    char *err = NULL;
    rocksdb_sstfilewriter_open(s->w, s->path, &err);
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: opening %s", st->dir, s->path);
        kp_state_sst_abort(s);
        return NULL;
    }
    return s;
}

int kp_state_sst_put(kp_state_sst *s, const void *key, size_t klen, const void *val, size_t vlen,
                     char *errstr, size_t errlen)
{
    char *err = NULL;
    rocksdb_sstfilewriter_put(s->w, key, klen, val, vlen, &err);
    s->bytes += klen + vlen;
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: writing %s (keys must increase)", s->st->dir,
                      s->path);
        return -1;
    }
    return 0;
}

int kp_state_sst_ingest(kp_state_sst *s, char *errstr, size_t errlen)
{
    char *err = NULL;
    int rc = 0;
    rocksdb_sstfilewriter_finish(s->w, &err);
    if (!err) {
        rocksdb_ingestexternalfileoptions_t *o = rocksdb_ingestexternalfileoptions_create();
        rocksdb_ingestexternalfileoptions_set_move_files(o, 1);
        const char *files[1] = {s->path};
        rocksdb_ingest_external_file_cf(s->st->db, s->st->cfs[s->cf], files, 1, o, &err);
        rocksdb_ingestexternalfileoptions_destroy(o);
    }
    if (err) {
        kp_state_fail(errstr, errlen, &err, "state %s: ingesting %s", s->st->dir, s->path);
        rc = -1;
    } else {
        io_count_write(s->bytes);
    }
    kp_state_sst_abort(s);
    return rc;
}

void kp_state_sst_abort(kp_state_sst *s)
{
    if (!s)
        return;
    rocksdb_sstfilewriter_destroy(s->w);
    rocksdb_envoptions_destroy(s->env);
    unlink(s->path); /* gone already once ingested (moved) */
    free(s);
}
