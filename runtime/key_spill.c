/* Spilling per-key state of keyed operators to RocksDB; see key_spill.h. */
#include "key_spill.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "graph.h"
#include "keyed_db.h"
#include "keygroup.h"

#define FILTER_MIN_BITS ((size_t)1 << 16) /* 8 KiB */

void kp_key_spill_init(kp_key_spill *sp, kp_subtask *st, const kp_node *node, const char *cf_name)
{
    *sp = (kp_key_spill){.st = st, .node = node, .cf_name = cf_name, .cf = -1};
    sp->max_parallelism = st->job ? st->job->max_parallelism : 128;
    int p = st->parallelism > 0 ? st->parallelism : 1; /* 0: a bare subtask of a test */
    sp->kg_lo = kp_key_group_first(st->index, sp->max_parallelism, p);
    sp->kg_hi = kp_key_group_first(st->index + 1, sp->max_parallelism, p);
}

void kp_key_spill_finish(kp_key_spill *sp)
{
    if (sp->batch)
        kp_state_batch_free(sp->batch);
    kp_state_close(sp->state);
    kp_buf_free(&sp->rkey);
    kp_buf_free(&sp->victims);
    kp_buf_free(&sp->order);
    free(sp->filter);
    sp->filter = NULL;
    sp->filter_bits = sp->filter_set = 0;
    sp->state = NULL;
    sp->batch = NULL;
}

static int filter_rebuild(kp_key_spill *sp, size_t bits);

/* Opens the operator's database (keyed_db.h): fresh, or restored from the checkpoint. */
static int open_state(kp_key_spill *sp)
{
    char err[512];
    kp_keyed_cf cf = {sp->cf_name, kp_state_cf_point};
    int restored;
    sp->state = kp_keyed_db_open(sp->st, sp->node, sp->kg_lo, sp->kg_hi, &cf, 1, &restored);
    if (!sp->state)
        return -1;
    sp->cf = kp_state_cf_point(sp->state, sp->cf_name, err, sizeof err);
    if (sp->cf < 0)
        return kp_subtask_fail(sp->st, "%s: keyed state: %s", sp->node->name, err);
    sp->batch = kp_state_batch_new();
    sp->filter = calloc(FILTER_MIN_BITS / 64, sizeof *sp->filter);
    if (!sp->batch || !sp->filter)
        return kp_subtask_fail(sp->st, "%s: out of memory", sp->node->name);
    sp->filter_bits = FILTER_MIN_BITS;
    if (!restored)
        return 0;
    sp->ever = 1; /* keys of the checkpoint are on disk: misses must look */
    size_t n = 0, bits = FILTER_MIN_BITS;
    kp_state_iter *it = kp_state_iter_open(sp->state, sp->cf, NULL, 0, NULL, 0);
    if (!it)
        return kp_subtask_fail(sp->st, "%s: out of memory scanning keyed state", sp->node->name);
    for (; kp_state_iter_valid(it); kp_state_iter_next(it))
        n++;
    if (kp_state_iter_close(it, err, sizeof err) != 0)
        return kp_subtask_fail(sp->st, "%s: scanning keyed state: %s", sp->node->name, err);
    while (bits / 4 < n) /* sized once: at most a quarter set, as after the doublings */
        bits *= 2;
    return filter_rebuild(sp, bits);
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

/* ---- the filter of spilled keys: one bit per hash bucket ---------------------------------- */

/* The bucket of a (non-zero) hash: bits above the low ones, which pick the key group (all
 * keys of a subtask share a range of those). */
static inline size_t filter_at(const kp_key_spill *sp, uint64_t hash)
{
    return (size_t)(hash >> 16) & (sp->filter_bits - 1);
}

static inline int filter_has(const kp_key_spill *sp, uint64_t hash)
{
    size_t i = filter_at(sp, hash ? hash : 1);
    return sp->filter_bits && (sp->filter[i / 64] >> (i % 64) & 1);
}

static inline void filter_mark(kp_key_spill *sp, uint64_t hash)
{
    size_t i = filter_at(sp, hash ? hash : 1);
    uint64_t bit = (uint64_t)1 << (i % 64);
    sp->filter_set += !(sp->filter[i / 64] & bit);
    sp->filter[i / 64] |= bit;
}

/* Replaces the filter by one of `bits` bits holding every key in the column family (one scan
 * of its keys: amortised, a key is scanned about once per doubling). */
static int filter_rebuild(kp_key_spill *sp, size_t bits)
{
    uint64_t *f = calloc(bits / 64, sizeof *f);
    if (!f)
        return kp_subtask_fail(sp->st, "%s: out of memory for the spilled-key filter",
                               sp->node->name);
    free(sp->filter);
    sp->filter = f;
    sp->filter_bits = bits;
    sp->filter_set = 0;
    kp_state_iter *it = kp_state_iter_open(sp->state, sp->cf, NULL, 0, NULL, 0);
    if (!it)
        return kp_subtask_fail(sp->st, "%s: out of memory scanning keyed state", sp->node->name);
    for (; kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t len;
        const char *k = kp_state_iter_key(it, &len);
        if (len >= 2)
            filter_mark(sp, kp_hash64(k + 2, len - 2));
    }
    char err[512];
    if (kp_state_iter_close(it, err, sizeof err) != 0)
        return kp_subtask_fail(sp->st, "%s: scanning keyed state: %s", sp->node->name, err);
    return 0;
}

/* An evicted key in `victims`: this header, the key bytes, the saved state, padding to 8. */
typedef struct victim {
    uint64_t hash;
    uint32_t key_len, blob_len;
    uint32_t clean, pad; /* clean: its on-disk copy is current; nothing to write */
} victim;

#define VICTIM_SIZE(v) ((sizeof(victim) + (v)->key_len + (v)->blob_len + 7) & ~(size_t)7)

static const char zeros[8];

/* Saves entry e into `victims` (its offset into `order`). 0, or -1 after kp_subtask_fail. */
static int add_victim(kp_key_spill *sp, kp_keytable *t, kp_keyentry *e, const kp_key_spill_ops *ops,
                      void *arg, int clean)
{
    kp_bytes key = kp_keytable_key(t, e);
    size_t at = sp->victims.len;
    victim v = {e->hash, (uint32_t)key.len, 0, (uint32_t)clean, 0};
    if (kp_buf_append(&sp->order, &at, sizeof at) != 0 ||
        kp_buf_append(&sp->victims, &v, sizeof v) != 0 ||
        kp_buf_append(&sp->victims, key.ptr, key.len) != 0 ||
        (!clean && ops->save(arg, e, &sp->victims) != 0) ||
        sp->victims.len - at - sizeof v - key.len > UINT32_MAX)
        return kp_subtask_fail(sp->st, "%s: out of memory spilling state", sp->node->name);
    v.blob_len = (uint32_t)(sp->victims.len - at - sizeof v - key.len);
    memcpy(sp->victims.ptr + at, &v, sizeof v);
    if (kp_buf_append(&sp->victims, zeros, VICTIM_SIZE(&v) - (sp->victims.len - at)) != 0)
        return kp_subtask_fail(sp->st, "%s: out of memory spilling state", sp->node->name);
    return 0;
}

/* The clock: visits keys of `t` from the hand — each at most once, and at most *left of them
 * (counted down) — and saves the keys not used since the hand last passed into `victims`
 * (their offsets into `order`), until `need` bytes (an estimate) are found. Returns the bytes
 * found, or (size_t)-1 after kp_subtask_fail. */
static size_t choose(kp_key_spill *sp, kp_keytable *t, size_t need, const kp_key_spill_ops *ops,
                     void *arg, size_t *left)
{
    size_t found = 0, visits = 0, n = t->n;
    sp->victims.len = 0;
    sp->order.len = 0;
    while (found < need && visits < n && *left) {
        if (sp->clock >= t->cap)
            sp->clock = 0;
        kp_keyentry *e = kp_keytable_next(t, &sp->clock);
        if (!e)
            continue; /* past the last slot: the hand starts over */
        visits++;
        --*left;
        if (ops->used(arg, e))
            continue;
        /* a key read back and not changed since (e.g. for a stale timer) is dropped unwritten */
        if (add_victim(sp, t, e, ops, arg, !ops->dirty(arg, e)) != 0)
            return (size_t)-1;
        found += 2 * t->entry_size + kp_keytable_key(t, e).len + ops->bytes(arg, e);
    }
    return found;
}

typedef struct order_ctx {
    const char *base; /* victims */
    int max_parallelism;
} order_ctx;

/* RocksDB key order: key group, then the key's bytes (a shorter prefix first). */
static int victim_cmp(const void *a, const void *b, void *arg)
{
    const order_ctx *c = arg;
    const victim *x = (const victim *)(c->base + *(const size_t *)a);
    const victim *y = (const victim *)(c->base + *(const size_t *)b);
    int gx = kp_key_group(x->hash, c->max_parallelism);
    int gy = kp_key_group(y->hash, c->max_parallelism);
    if (gx != gy)
        return gx < gy ? -1 : 1;
    uint32_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int d = memcmp(x + 1, y + 1, n);
    return d ? d : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* From this many keys on, a flush (not an eviction) writes one SST file and ingests it
 * instead of a write batch, as the window's flush does (docs/state.md, "Whole-cache flush"). */
static _Atomic size_t flush_sst_min = 50000;

void kp_key_spill_flush_sst_min(size_t n)
{
    atomic_store(&flush_sst_min, n);
}

/* Writes the victims in `order` (RocksDB key order): a write batch, or with `sst` one SST
 * file ingested. 0, or -1 with err. */
static int put_victims(kp_key_spill *sp, const size_t *order, size_t n, int sst, char *err,
                       size_t errlen)
{
    kp_state_sst *f = sst ? kp_state_sst_open(sp->state, sp->cf, err, errlen) : NULL;
    if (sst && !f)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const victim *v = (const victim *)(void *)(sp->victims.ptr + order[i]);
        const char *key = (const char *)(v + 1);
        if (v->clean)
            continue;
        if (rocks_key(sp, v->hash, (kp_bytes){key, v->key_len}) != 0) {
            kp_state_sst_abort(f);
            return snprintf(err, errlen, "out of memory"), -1;
        }
        if (f && kp_state_sst_put(f, sp->rkey.ptr, sp->rkey.len, key + v->key_len, v->blob_len, err,
                                  errlen) != 0) {
            kp_state_sst_abort(f);
            return -1;
        }
        if (!f)
            kp_state_batch_put(sp->batch, sp->state, sp->cf, sp->rkey.ptr, sp->rkey.len,
                               key + v->key_len, v->blob_len);
        sp->bytes_out += (long long)(sp->rkey.len + v->blob_len);
    }
    return f ? kp_state_sst_ingest(f, err, errlen)
             : kp_state_write(sp->state, sp->batch, err, errlen);
}

/* Writes the victims in one batch, in key order (a sorted batch goes into the memtable's skip
 * list as sequential inserts, much cheaper than random ones), then takes them out of memory
 * (their key bytes are copies) — or, with `keep`, leaves them in memory, now on disk too. */
static int write_victims(kp_key_spill *sp, kp_keytable *t, const kp_key_spill_ops *ops, void *arg,
                         int keep)
{
    size_t n = sp->order.len / sizeof(size_t);
    size_t *order = (size_t *)(void *)sp->order.ptr;
    order_ctx ctx = {sp->victims.ptr, sp->max_parallelism};
    qsort_r(order, n, sizeof *order, victim_cmp, &ctx);
    char err[512];
    if (put_victims(sp, order, n, keep && n >= atomic_load(&flush_sst_min), err, sizeof err))
        return kp_subtask_fail(sp->st, "%s: %s keyed state: %s", sp->node->name,
                               keep ? "flushing" : "spilling", err);
    for (size_t i = 0; i < n; i++) {
        const victim *v = (const victim *)(void *)(sp->victims.ptr + order[i]);
        kp_keyentry *e =
            kp_keytable_find(t, v->hash, (kp_bytes){(const char *)(v + 1), v->key_len});
        if (keep) {
            ops->flushed(arg, e);
        } else {
            ops->drop(arg, e);
            kp_keytable_remove(t, e);
            sp->keys_out++;
        }
        filter_mark(sp, v->hash);
    }
    if (sp->filter_set > sp->filter_bits / 4)
        return filter_rebuild(sp, 2 * sp->filter_bits);
    return 0;
}

int kp_key_spill_evict(kp_key_spill *sp, kp_keytable *t, size_t need, const kp_key_spill_ops *ops,
                       void *arg)
{
    if (!t->n)
        return 0;
    if (!sp->state && open_state(sp) != 0)
        return -1;
    /* two turns at most (the first may only clear the marks of keys used since the last), in
     * chunks of a quarter of `need`: the chunk's saved state (the scratch) is held next to all
     * the state and counts in the peak, so it is kept a fraction of what is evicted */
    size_t freed = 0, left = 2 * t->n, chunk = need / 4 + 1;
    while (freed < need && left && t->n) {
        size_t found = choose(sp, t, need - freed < chunk ? need - freed : chunk, ops, arg, &left);
        if (found == (size_t)-1)
            return -1;
        if (sp->order.len && write_victims(sp, t, ops, arg, 0) != 0)
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

int kp_key_spill_flush(kp_key_spill *sp, kp_keytable *t, const kp_key_spill_ops *ops, void *arg)
{
    if (!t->n)
        return 0;
    if (!sp->state && open_state(sp) != 0)
        return -1;
    sp->victims.len = 0;
    sp->order.len = 0;
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(t, &i)))
        if (ops->dirty(arg, e) && add_victim(sp, t, e, ops, arg, 0) != 0)
            return -1;
    if (sp->order.len && write_victims(sp, t, ops, arg, 1) != 0)
        return -1;
    sp->ever = 1;
    return 0;
}

int kp_key_spill_scan(kp_key_spill *sp, int cf,
                      int (*fn)(void *arg, uint64_t hash, kp_bytes key, kp_bytes value), void *arg)
{
    uint8_t lo[2] = {(uint8_t)(sp->kg_lo >> 8), (uint8_t)sp->kg_lo},
            hi[2] = {(uint8_t)(sp->kg_hi >> 8), (uint8_t)sp->kg_hi};
    kp_state_iter *it = kp_state_iter_open(sp->state, cf, lo, 2, hi, 2);
    if (!it)
        return kp_subtask_fail(sp->st, "%s: out of memory scanning keyed state", sp->node->name);
    int rc = 0;
    for (; rc == 0 && kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t klen, vlen;
        const char *k = kp_state_iter_key(it, &klen);
        const char *v = kp_state_iter_value(it, &vlen);
        kp_bytes key = {k + 2, klen - 2};
        rc = fn(arg, kp_hash64(key.ptr, key.len), key, (kp_bytes){v, vlen});
    }
    char err[512];
    if (kp_state_iter_close(it, err, sizeof err) != 0)
        return kp_subtask_fail(sp->st, "%s: scanning keyed state: %s", sp->node->name, err);
    return rc;
}

int kp_key_spill_open(kp_key_spill *sp)
{
    return sp->state ? 0 : open_state(sp);
}

int kp_key_spill_take(kp_key_spill *sp, uint64_t hash, kp_bytes key, void **blob, size_t *len)
{
    if (!sp->ever || !filter_has(sp, hash))
        return 0;
    if (rocks_key(sp, hash, key) != 0)
        return kp_subtask_fail(sp->st, "%s: out of memory", sp->node->name);
    char err[512];
    int rc =
        kp_state_get(sp->state, sp->cf, sp->rkey.ptr, sp->rkey.len, blob, len, err, sizeof err);
    if (rc < 0)
        return kp_subtask_fail(sp->st, "%s: reading keyed state: %s", sp->node->name, err);
    if (rc == 1) {
        sp->keys_in++;
        sp->bytes_in += (long long)(sp->rkey.len + *len);
    }
    return rc;
}

int kp_key_spill_forget(kp_key_spill *sp, uint64_t hash, kp_bytes key)
{
    char err[512];
    if (rocks_key(sp, hash, key) != 0)
        return kp_subtask_fail(sp->st, "%s: out of memory", sp->node->name);
    if (kp_state_del(sp->state, sp->cf, sp->rkey.ptr, sp->rkey.len, err, sizeof err) != 0)
        return kp_subtask_fail(sp->st, "%s: deleting keyed state: %s", sp->node->name, err);
    return 0;
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

size_t kp_key_spill_room(const kp_key_spill *sp, const kp_keytable *t, uint64_t hash, kp_bytes key,
                         int create, size_t extra, size_t limit)
{
    size_t now = kp_keytable_bytes(t), after = kp_keytable_bytes_after_insert(t, key.len);
    if (after == now || after + extra <= limit || kp_keytable_find(t, hash, key) ||
        (!create && (!sp->ever || !filter_has(sp, hash))))
        return 0;
    size_t bytes = now + extra, slots = t->cap * t->entry_size;
    size_t need = bytes > limit / 2 ? bytes - limit / 2 : 0;
    return need > slots / 2 ? need : slots / 2;
}

size_t kp_key_spill_scratch_release(kp_key_spill *sp)
{
    size_t held = sp->victims.cap + sp->order.cap;
    if (held > 64 << 10) {
        kp_buf_free(&sp->victims);
        kp_buf_free(&sp->order);
    }
    return held;
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
