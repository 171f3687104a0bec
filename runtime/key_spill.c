/* Spilling per-key state of keyed operators to RocksDB; see key_spill.h. */
#include "key_spill.h"

#include <stdio.h>
#include <stdlib.h>

#include "graph.h"
#include "keygroup.h"

void kp_key_spill_init(kp_key_spill *sp, kp_subtask *st, const kp_node *node, const char *cf_name)
{
    *sp = (kp_key_spill){.st = st, .node = node, .cf_name = cf_name, .cf = -1};
    sp->max_parallelism = st->job ? st->job->max_parallelism : 128;
}

void kp_key_spill_finish(kp_key_spill *sp)
{
    if (sp->batch)
        kp_state_batch_free(sp->batch);
    kp_state_close(sp->state);
    kp_buf_free(&sp->rkey);
    kp_buf_free(&sp->blob);
    kp_buf_free(&sp->victims);
    sp->state = NULL;
    sp->batch = NULL;
}

static int open_state(kp_key_spill *sp)
{
    char dir[1024], err[512];
    const char *root = sp->st->state_dir ? sp->st->state_dir : "/tmp/kappa-state";
    int n = snprintf(dir, sizeof dir, "%s/%s-%d", root, sp->node->uid[0] ? sp->node->uid : "op",
                     sp->st->index);
    for (char *c = dir + strlen(root) + 1; n > 0 && *c; c++)
        if (*c == '/' || *c == ' ' || *c == ':')
            *c = '_';
    kp_state_config cfg = {.dir = dir,
                           .fresh = 1,
                           .block_cache_bytes = sp->st->rocksdb_cache_bytes,
                           .memtable_bytes = sp->st->rocksdb_memtable_bytes};
    sp->state = kp_state_open(&cfg, err, sizeof err);
    if (!sp->state)
        return kp_subtask_fail(sp->st, "%s: cannot open keyed state in %s: %s", sp->node->name, dir,
                               err);
    sp->cf = kp_state_cf(sp->state, sp->cf_name, err, sizeof err);
    if (sp->cf < 0)
        return kp_subtask_fail(sp->st, "%s: keyed state: %s", sp->node->name, err);
    sp->batch = kp_state_batch_new();
    if (!sp->batch)
        return kp_subtask_fail(sp->st, "%s: out of memory", sp->node->name);
    return 0;
}

/* The RocksDB key of `key` in rkey: key group (2, BE) | key bytes. -1 when out of memory
 * (the caller fails the job). */
static int rocks_key(kp_key_spill *sp, uint64_t hash, kp_bytes key)
{
    int kg = kp_key_group(hash ? hash : 1, sp->max_parallelism); /* as the key table has it */
    uint8_t prefix[2] = {(uint8_t)(kg >> 8), (uint8_t)kg};
    sp->rkey.len = 0;
    if (kp_buf_append(&sp->rkey, prefix, 2) != 0 || kp_buf_append(&sp->rkey, key.ptr, key.len))
        return -1;
    return 0;
}

typedef struct victim {
    uint64_t hash;
    size_t len; /* key bytes follow */
} victim;

/* One turn of the clock: visits each key of `t` at most once from the hand, puts the keys
 * not used since the last turn in the batch and collects them in `victims`, until `need`
 * bytes (an estimate) are found. Returns the bytes found, or (size_t)-1 after
 * kp_subtask_fail. */
static size_t choose(kp_key_spill *sp, kp_keytable *t, size_t need, const kp_key_spill_ops *ops,
                     void *arg)
{
    size_t found = 0, visits = 0, n = t->n;
    sp->victims.len = 0;
    while (found < need && visits < n) {
        if (sp->clock >= t->cap)
            sp->clock = 0;
        kp_keyentry *e = kp_keytable_next(t, &sp->clock);
        if (!e)
            continue; /* past the last slot: the hand starts over */
        visits++;
        if (ops->used(arg, e))
            continue;
        kp_bytes key = kp_keytable_key(t, e);
        sp->blob.len = 0;
        victim v = {e->hash, key.len};
        if (ops->save(arg, e, &sp->blob) != 0 || rocks_key(sp, e->hash, key) != 0 ||
            kp_buf_append(&sp->victims, &v, sizeof v) != 0 ||
            kp_buf_append(&sp->victims, key.ptr, key.len) != 0 ||
            kp_buf_append(&sp->victims, "\0\0\0\0\0\0\0", (8 - key.len % 8) % 8) != 0) {
            kp_subtask_fail(sp->st, "%s: out of memory spilling state", sp->node->name);
            return (size_t)-1;
        }
        kp_state_batch_put(sp->batch, sp->state, sp->cf, sp->rkey.ptr, sp->rkey.len, sp->blob.ptr,
                           sp->blob.len);
        sp->bytes_out += (long long)(sp->rkey.len + sp->blob.len);
        found += 2 * t->entry_size + key.len + ops->bytes(arg, e);
    }
    return found;
}

/* Writes the batch, then takes the victims out of memory (their key bytes are copies). */
static int write_victims(kp_key_spill *sp, kp_keytable *t, const kp_key_spill_ops *ops, void *arg)
{
    char err[512];
    if (kp_state_write(sp->state, sp->batch, err, sizeof err) != 0)
        return kp_subtask_fail(sp->st, "%s: spilling keyed state: %s", sp->node->name, err);
    for (size_t off = 0; off < sp->victims.len;) {
        victim v;
        memcpy(&v, sp->victims.ptr + off, sizeof v);
        kp_bytes key = {sp->victims.ptr + off + sizeof v, v.len};
        off += sizeof v + ((v.len + 7) & ~(size_t)7);
        kp_keyentry *e = kp_keytable_find(t, v.hash, key);
        ops->drop(arg, e);
        kp_keytable_remove(t, e);
        sp->keys_out++;
    }
    return 0;
}

int kp_key_spill_evict(kp_key_spill *sp, kp_keytable *t, size_t need, const kp_key_spill_ops *ops,
                       void *arg)
{
    if (!t->n)
        return 0;
    if (!sp->state && open_state(sp) != 0)
        return -1;
    /* two turns at most: the first may only clear the marks of keys used since the last */
    size_t freed = 0;
    for (int turn = 0; turn < 2 && freed < need && t->n; turn++) {
        size_t found = choose(sp, t, need - freed, ops, arg);
        if (found == (size_t)-1)
            return -1;
        if (kp_state_batch_count(sp->batch) && write_victims(sp, t, ops, arg) != 0)
            return -1;
        freed += found;
    }
    if (!freed)
        return 0;
    sp->ever = 1;
    sp->spills++;
    atomic_fetch_add_explicit(&sp->st->metrics->state_spills, 1, memory_order_relaxed);
    return 0;
}

int kp_key_spill_take(kp_key_spill *sp, uint64_t hash, kp_bytes key, void **blob, size_t *len)
{
    if (!sp->ever)
        return 0;
    if (rocks_key(sp, hash, key) != 0)
        return kp_subtask_fail(sp->st, "%s: out of memory", sp->node->name);
    char err[512];
    int rc =
        kp_state_get(sp->state, sp->cf, sp->rkey.ptr, sp->rkey.len, blob, len, err, sizeof err);
    if (rc == 1 && kp_state_del(sp->state, sp->cf, sp->rkey.ptr, sp->rkey.len, err, sizeof err))
        rc = -1;
    if (rc < 0)
        return kp_subtask_fail(sp->st, "%s: reading keyed state: %s", sp->node->name, err);
    if (rc == 1) {
        sp->keys_in++;
        sp->bytes_in += (long long)(sp->rkey.len + *len);
    }
    return rc;
}

int kp_key_spill_entry(kp_key_spill *sp, kp_keytable *t, uint64_t hash, kp_bytes key, int create,
                       int (*restore)(void *arg, kp_keyentry *e, kp_bytes blob), void *arg,
                       kp_keyentry **out)
{
    *out = kp_keytable_find(t, hash, key);
    if (*out)
        return 0;
    void *blob = NULL;
    size_t len = 0;
    int created, rc = kp_key_spill_take(sp, hash, key, &blob, &len);
    if (rc < 0 || (rc == 0 && !create))
        return rc;
    kp_keyentry *e = kp_keytable_upsert(t, hash, key, &created);
    if (e && rc == 1 && restore(arg, e, (kp_bytes){blob, len}) != 0) {
        kp_keytable_remove(t, e);
        free(blob);
        return kp_subtask_fail(sp->st,
                               "%s: cannot read back the spilled state of a key (out of "
                               "memory, or corrupt)",
                               sp->node->name);
    }
    free(blob);
    if (!e)
        return kp_subtask_fail(sp->st, "%s: out of memory for keyed state", sp->node->name);
    *out = e;
    return 0;
}

void kp_key_spill_report(kp_key_spill *sp)
{
    if (!sp->state)
        return;
    kp_state_memory mem;
    kp_state_memory_usage(sp->state, &mem);
    atomic_fetch_add_explicit(&sp->st->metrics->state_rocksdb,
                              (long long)(mem.block_cache + mem.memtables + mem.table_readers),
                              memory_order_relaxed);
}

int kp_blob_read(kp_bytes *in, void *dst, size_t n)
{
    if (in->len < n)
        return -1;
    memcpy(dst, in->ptr, n);
    in->ptr += n;
    in->len -= n;
    return 0;
}
