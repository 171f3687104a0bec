/* Keyed process functions: user code with per-key value state and timers.
 *
 * on_event runs for each record with a context scoped to the record's key; it can read and
 * write the key's value state (value_size bytes), list state and map state (keyed_state.c),
 * register and delete event-time timers and processing-time timers (fired when the wall
 * clock reaches them), and emit documents. on_timer runs with the same context for the
 * timer's key. A timer registered twice for the same key, time and kind is one timer, as in
 * Flink; kp_timer_delete removes a pending one.
 *
 * What is deterministic (a function of the log), and what is not — with
 * .key_in_one_partition set (every record of a key comes from one source partition; without
 * it, timers fire only when W passes them, Flink's semantics, and the first point below does
 * not hold; the rest does):
 * - An event-time timer of key K at time t fires before any record of K whose carried
 *   watermark (cwm) is >= t is processed, and after every record of K with cwm < t (which the
 *   operator's watermark W cannot pass before they arrive). So for a key whose records all
 *   come from one source partition (records of a partition stay in order), the interleaving of
 *   its records and event-time timers, and what each call sees of the key's state, is a
 *   function of the log, at any parallelism and under any thread timing. A timer registered at
 *   a time <= the cwm of the record being handled fires right after that record's on_event.
 *   Timers still also fire when W passes them (and all of them at the end of bounded input);
 *   that firing can come earlier than the key's next record, never later.
 * - kp_ctx_watermark: during on_event, the record's cwm; during on_timer of an event-time
 *   timer, the timer's time. Both are functions of the log. During on_timer of a
 *   processing-time timer it is W, which is not.
 * - Not deterministic: the order of calls ACROSS keys (timers fired by W run between records
 *   as thread timing has it), hence the order of emitted documents of different keys; a key
 *   whose records come from several partitions; everything about processing-time timers
 *   (they fire on the wall clock, checked on every record, watermark and subtask tick,
 *   KP_TICK_MS, so about 100 ms late at most even on an idle input; pending ones are not
 *   fired at the end of bounded input); kp_ctx_now.
 * - Emitted documents carry a carried watermark that is a function of the log and keeps
 *   the engine's invariant (no downstream watermark is ahead of it): in on_event, the
 *   record's cwm (the operator's watermark is never ahead of it); in on_timer of an
 *   event-time timer at t, t - 1 (the operator's watermark before the advance that fired
 *   it was below t, or the timer would have fired earlier). Processing-time timers: W.
 *
 * State is in memory (keytable.c), one entry per key holding a header (pending timers, list
 * and map state) and the value. Timers are a heap per kind (timer_heap.c, keys copied into
 * it). Which timers are pending is exact and in the keys only: each key keeps its pending
 * timers of each kind sorted (one inline, more in an array; that also lets a record find its
 * key's due event-time timers with one comparison). A timer leaves them when it fires or is
 * deleted. Deleting a timer, or firing it for a record before W reaches it, leaves its heap
 * entry behind; such stale entries are skipped when popped, and the heap is rebuilt once they
 * outnumber the pending ones. A key whose value is cleared, whose list and map are empty and
 * which has no pending timer is removed from the table, so a job whose keys rotate keeps
 * memory proportional to the keys that currently hold state.
 *
 * Spilling (key_spill.h, docs/state.md): the value table is a write-back cache over RocksDB
 * under the subtask's state_cache_bytes (the table, the keys' list/map state and their timer
 * arrays count). A cold key's whole state — value, list, map (tables byte for byte, so the
 * map iterates in the same order after a read-back) and its pending timers of both kinds —
 * is written as one value under key group | key and read back when a record or a timer of it
 * comes (evicting first if the table would otherwise double past the budget: make_room).
 * Each timer heap keeps up to an eighth of the budget in memory; its later timers
 * overflow into a column family ordered by due time (timer_spill.h) and come back before
 * they are due; a heap entry of a spilled key reads the key back when it pops, to see whether
 * the timer is still pending, unless a counting filter of the pending timers says it
 * certainly is not. What stays in memory beyond the budget: that filter (4-8 bytes per
 * pending timer, built once a spilled key's heap entry pops). Spilling changes no result: a
 * key read back is the key evicted, and timers fire in the order of their times.
 *
 * Checkpoints: a barrier flushes the changed keys, and with them their pending timers; a
 * restore (also a rescaling one, which copies the keys of its key groups) rebuilds both
 * heaps by one scan of the keys.
 *
 * @locality one subtask thread per operator instance; no locks. */
#include <stdlib.h>
#include <time.h>

#include "exec_live.h"
#include "keyed_db.h"
#include "keygroup.h"
#include "key_spill.h"
#include "keyed_state.h"
#include "keytable.h"
#include "timer_heap.h"
#include "timer_spill.h"
#include "ops.h"
#include "state_peak.h"

/* Stale heap entries tolerated before a rebuild is considered. */
#define STALE_SLACK 1024

struct kp_ctx {
    struct process_op *p;
    kp_keyentry *e;
    kp_bytes key;
    kp_time ts;      /* time of the record or timer being handled */
    kp_time wm;      /* what kp_ctx_watermark returns */
    kp_time out_cwm; /* the carried watermark of documents emitted in this call */
};

typedef struct process_op {
    kp_op op;
    const kp_process_opts *o;
    kp_keytable values;     /* key → value_hdr + value */
    kp_timer_heap heaps[2]; /* [1] event time, [0] processing time */
    size_t pending[2];      /* pending timers of each kind */
    size_t settle_at[2];    /* heap entries after its last rebuild, times 2 (settle) */
    kp_time wm;             /* W */
    size_t peak_bytes;      /* of table_bytes, sampled at each watermark and sweep (+ scratch) */
    kp_doc doc;
    int failed;
    size_t extra_bytes; /* held by the keys outside the table: list/map state, timer arrays */
    size_t cache_limit; /* for the table and extra_bytes */
    kp_key_spill spill;
    kp_timer_spill tspill[2];             /* each heap's timers beyond an eighth of the budget */
    long long state_reported, state_next; /* kp_live_state */
    kp_state_peak rocks;                  /* RocksDB's memory, sampled on the tick */
    uint8_t *tf;                          /* counting filter of pending timers (maybe_pending) */
    size_t tf_size;                       /* its counters, a power of two; 0 until first needed */
} process_op;

/* The pending timers of one kind of one key, ascending: one inline, more in an array. */
typedef struct key_timers {
    uint32_t n;
    uint32_t cap; /* capacity of `a`; 0 while the (at most one) timer is in `one` */
    union {
        kp_time one;
        kp_time *a;
    };
} key_timers;

/* The per-key header in front of the value. */
typedef struct value_hdr {
    uint32_t exists;
    uint32_t used;        /* touched since the eviction clock last passed (key_spill.h) */
    uint32_t on_disk;     /* read back from RocksDB, where its older copy still is */
    uint32_t dirty;       /* touched since its state was last written (kp_key_spill_flush) */
    key_timers timers[2]; /* pending timers: [1] event time, [0] processing time (as heaps) */
    kp_keyed_state *coll; /* list and map state, created on first use */
} value_hdr;

static value_hdr *hdr_of(kp_keyentry *e)
{
    return kp_keyentry_value(e);
}

/* ---- the pending timers of one key, of one kind ----------------------------------------- */

static kp_time *kt_times(key_timers *t)
{
    return t->cap ? t->a : &t->one;
}

/* Inserts `when` in order; 0, or -1 when out of memory. */
static int kt_add(key_timers *t, kp_time when)
{
    if (t->cap == 0 && t->n == 0) {
        t->one = when;
        t->n = 1;
        return 0;
    }
    if (t->cap == 0 || t->n == t->cap) { /* the inline slot or the array is full */
        uint32_t cap = t->cap ? t->cap * 2 : 4;
        kp_time *a = realloc(t->cap ? t->a : NULL, cap * sizeof *a);
        if (!a)
            return -1;
        if (t->cap == 0)
            a[0] = t->one;
        t->a = a;
        t->cap = cap;
    }
    uint32_t i = t->n++;
    while (i > 0 && t->a[i - 1] > when) {
        t->a[i] = t->a[i - 1];
        i--;
    }
    t->a[i] = when;
    return 0;
}

/* The index of `when` among the pending timers, or -1. */
static long kt_find(key_timers *t, kp_time when)
{
    kp_time *a = kt_times(t);
    uint32_t lo = 0, hi = t->n; /* ascending: binary search */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < when)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && a[lo] == when ? (long)lo : -1;
}

/* Removes `when`; 1 if it was pending. */
static int kt_del(key_timers *t, kp_time when)
{
    long i = kt_find(t, when);
    if (i < 0)
        return 0;
    kp_time *a = kt_times(t);
    memmove(a + i, a + i + 1, (t->n - (uint32_t)i - 1) * sizeof *a);
    t->n--;
    return 1;
}

/* `n` times read from a saved key into a fresh (zeroed) `t`; 0, or -1 (short or no memory). */
static int kt_load(key_timers *t, kp_bytes *in, uint32_t n)
{
    if (n > in->len / sizeof(kp_time) || (n > 1 && !(t->a = malloc(n * sizeof(kp_time)))))
        return -1;
    t->n = n;
    t->cap = n > 1 ? n : 0;
    return kp_blob_read(in, kt_times(t), n * sizeof(kp_time));
}

static void kt_free(key_timers *t)
{
    if (t->cap)
        free(t->a);
}

/* Bytes a key holds outside the table: its timer arrays, its list and map state. */
static size_t key_extra(const value_hdr *h)
{
    return (h->timers[0].cap + h->timers[1].cap) * sizeof(kp_time) +
           (h->coll ? kp_keyed_state_bytes(h->coll) : 0);
}

static void timers_oom(process_op *p)
{
    p->failed = kp_subtask_fail(p->op.st, "%s: out of memory for timers", p->op.node->name);
}

/* ---- a counting filter of the pending timers --------------------------------------------
 * Which timers are pending is in their keys' headers only (timers[]): a key's state, with
 * them, spills, so their memory is bounded by the budget; their heaps spill too
 * (timer_spill.h). A popped heap entry of a key that is not in memory is stale unless its
 * timer is pending; the key's header (spilled with it) says, but reading it back costs a get.
 * The filter answers "certainly not pending" without one: a byte counter per hash of (key,
 * time) — of either kind: a timer of the other kind at the same time of the same key only
 * costs a read-back —, 4-8 counters per pending timer (at most 1/2 of them in use), counted
 * up on a registration and down when the timer fires or is deleted (a counter that reached
 * 255 stays). Built when first needed (a spilled key's entry pops) from the keys in memory
 * and one scan of the spilled ones, rebuilt twice as large when the pending timers outgrow
 * it; outside the budget, like key_spill.c's filter of spilled keys (docs/state.md,
 * "Timers"). */

static size_t tf_at(const process_op *p, uint64_t hash, kp_time when)
{
    uint64_t x = hash ^ ((uint64_t)when * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (size_t)x & (p->tf_size - 1);
}

static void tf_count(process_op *p, uint64_t hash, kp_time when, int d)
{
    if (!p->tf)
        return;
    uint8_t *c = &p->tf[tf_at(p, hash, when)];
    if (*c != 255)
        *c = (uint8_t)(*c + d);
}

static void tf_count_key(process_op *p, uint64_t hash, key_timers *t)
{
    for (uint32_t j = 0; j < t->n; j++)
        tf_count(p, hash, kt_times(t)[j], 1);
}

/* A spilled key's pending timers into the filter; keys in memory are counted from the table
 * (their on-disk copy may be older). */
static int tf_add_spilled(void *arg, uint64_t hash, kp_bytes key, kp_bytes value);

static int tf_build(process_op *p)
{
    size_t size = 1 << 12;
    while (size < 4 * (p->pending[0] + p->pending[1]))
        size *= 2;
    uint8_t *f = calloc(size, 1);
    if (!f)
        return kp_subtask_fail(p->op.st, "%s: out of memory for the timer filter",
                               p->op.node->name);
    free(p->tf);
    p->tf = f;
    p->tf_size = size;
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->values, &i))) {
        tf_count_key(p, e->hash, &hdr_of(e)->timers[0]);
        tf_count_key(p, e->hash, &hdr_of(e)->timers[1]);
    }
    if (p->spill.state && kp_key_spill_scan(&p->spill, p->spill.cf, tf_add_spilled, p) != 0)
        return -1;
    return 0;
}

/* 1 if a timer (key hash, when) of a key that is not in memory may be pending, 0 if it
 * certainly is not; -1 after kp_subtask_fail. */
static int maybe_pending(process_op *p, uint64_t hash, kp_time when)
{
    if (!p->spill.ever)
        return 0; /* no key is on disk: a pending timer's key is in memory */
    if ((!p->tf || 2 * (p->pending[0] + p->pending[1]) > p->tf_size) && tf_build(p) != 0)
        return -1;
    return p->tf[tf_at(p, hash, when)] != 0;
}

/* Takes a pending timer out of its key's header: it fired or was deleted. 1 if it was
 * pending. Its heap entry, if any, becomes stale. */
static int unpend(process_op *p, value_hdr *h, uint64_t hash, bool event_time, kp_time when)
{
    if (!kt_del(&h->timers[event_time], when))
        return 0;
    tf_count(p, hash, when, -1);
    p->pending[event_time]--;
    return 1;
}

typedef struct rebuild_arg {
    process_op *p;
    bool event_time;
    bool any;
    kp_timer last; /* keep_first: the last entry kept, if any */
} rebuild_arg;

/* Keeps a heap entry iff its timer may be pending: the key's header says; an entry of a key
 * not in memory is kept unless the filter (if built) says it is stale (reading the key back
 * to check is not worth it: it is checked when it pops). */
static bool keep_pending(void *arg, const kp_timer_heap *h, const kp_timer *t)
{
    rebuild_arg *a = arg;
    process_op *p = a->p;
    kp_keyentry *e = kp_keytable_find(&p->values, t->hash, kp_timer_key(h, t));
    if (e)
        return kt_find(&hdr_of(e)->timers[a->event_time], t->when) >= 0;
    return p->spill.ever && (!p->tf || p->tf[tf_at(p, t->hash, t->when)] != 0);
}

/* In a heap sorted by kp_timer_heap_sort: keeps the first entry of each timer. */
static bool keep_first(void *arg, const kp_timer_heap *h, const kp_timer *t)
{
    rebuild_arg *a = arg;
    if (a->any && kp_timer_same(h, &a->last, t))
        return false;
    a->last = *t;
    a->any = true;
    return true;
}

/* Drops the stale entries of a heap once they outnumber the pending timers, and once the heap
 * has doubled since the last time (the entries kept for keys not in memory could otherwise
 * make every call rebuild it). Deleting and registering a timer again leaves two entries of
 * a pending timer; a key that does so on every record (a deadline reset to the time it had)
 * would fill the heap with them: when many more entries than pending timers are left, the
 * heap is sorted and only the first entry of each timer kept (a sort only then: it costs
 * ~40 % of the CPU of an all-cached job that moves its timers, when done at every rebuild). */
static void settle(process_op *p, bool event_time)
{
    kp_timer_heap *h = &p->heaps[event_time];
    size_t pending = p->pending[event_time];
    if (h->n <= 2 * pending + STALE_SLACK || h->n <= p->settle_at[event_time])
        return;
    rebuild_arg a = {p, event_time, false, {0}};
    kp_timer_heap_filter(h, keep_pending, &a);
    if (h->n > pending + pending / 2 + STALE_SLACK) {
        kp_timer_heap_sort(h);
        kp_timer_heap_filter(h, keep_first, &a);
    }
    p->settle_at[event_time] = 2 * h->n;
}

/* Removes the key of `e` when it holds nothing: value cleared, list and map empty, no
 * pending timer. `e` (and pointers into the table) are invalid afterwards. */
static int drop_if_empty(process_op *p, kp_keyentry *e)
{
    value_hdr *h = hdr_of(e);
    if (h->exists || h->timers[0].n || h->timers[1].n || (h->coll && (h->coll->n || h->coll->live)))
        return 0;
    if (h->on_disk && kp_key_spill_forget(&p->spill, e->hash, kp_keytable_key(&p->values, e)))
        return -1;
    p->extra_bytes -= key_extra(h);
    kp_keyed_state_free(h->coll);
    kt_free(&h->timers[0]);
    kt_free(&h->timers[1]);
    kp_keytable_remove(&p->values, e);
    return 0;
}

/* ---- the value table as a cache over RocksDB (key_spill.h) ------------------------------- */

/* What a key's spilled value starts with; then its pending event-time timers (et_n times),
 * its pending processing-time timers (pt_n times), its value (value_size bytes) and, with
 * SAVED_COLL, its list and map (kp_keyed_state_save). */
typedef struct saved_key {
    uint32_t exists, pt_n, et_n, flags;
} saved_key;

#define SAVED_COLL 1u /* the list and map follow */
#define SAVED_PT   2u /* the processing-time timers follow (an older build kept only their count) */

/* The header of a saved key, and its timers into `t` (zeroed: kt_free them); 0, or -1. */
static int saved_read(kp_bytes *in, saved_key *k, key_timers t[2])
{
    if (kp_blob_read(in, k, sizeof *k) != 0 || (k->pt_n && !(k->flags & SAVED_PT)))
        return -1;
    if (kt_load(&t[1], in, k->et_n) != 0 || kt_load(&t[0], in, k->pt_n) != 0) {
        kt_free(&t[0]);
        kt_free(&t[1]);
        return -1;
    }
    return 0;
}

static int pk_used(void *arg, kp_keyentry *e)
{
    value_hdr *h = hdr_of(e);
    int used = (int)h->used;
    h->used = 0;
    return used;
}

static int pk_save(void *arg, kp_keyentry *e, kp_buf *out)
{
    process_op *p = arg;
    value_hdr *h = hdr_of(e);
    saved_key k = {h->exists, h->timers[0].n, h->timers[1].n,
                   SAVED_PT | (h->coll ? SAVED_COLL : 0)};
    if (kp_buf_append(out, &k, sizeof k) != 0 ||
        kp_buf_append(out, kt_times(&h->timers[1]), k.et_n * sizeof(kp_time)) != 0 ||
        kp_buf_append(out, kt_times(&h->timers[0]), k.pt_n * sizeof(kp_time)) != 0 ||
        kp_buf_append(out, (uint8_t *)h + sizeof *h, p->o->value_size) != 0 ||
        (h->coll && kp_keyed_state_save(h->coll, out) != 0))
        return -1;
    return 0;
}

static size_t pk_bytes(void *arg, kp_keyentry *e)
{
    return key_extra(hdr_of(e));
}

static void pk_drop(void *arg, kp_keyentry *e)
{
    process_op *p = arg;
    value_hdr *h = hdr_of(e);
    p->extra_bytes -= key_extra(h);
    kp_keyed_state_free(h->coll);
    kt_free(&h->timers[0]);
    kt_free(&h->timers[1]);
}

static int tf_add_spilled(void *arg, uint64_t hash, kp_bytes key, kp_bytes value)
{
    process_op *p = arg;
    saved_key k;
    key_timers t[2] = {{0}, {0}};
    hash = hash ? hash : 1; /* as the key table has it */
    if (kp_keytable_find(&p->values, hash, key))
        return 0;
    if (saved_read(&value, &k, t) != 0)
        return kp_subtask_fail(p->op.st, "%s: corrupt spilled state of a key", p->op.node->name);
    tf_count_key(p, hash, &t[0]);
    tf_count_key(p, hash, &t[1]);
    kt_free(&t[0]);
    kt_free(&t[1]);
    return 0;
}

static int pk_restore(void *arg, kp_keyentry *e, kp_bytes in)
{
    process_op *p = arg;
    value_hdr *h = hdr_of(e);
    saved_key k;
    *h = (value_hdr){.on_disk = 1};
    if (saved_read(&in, &k, h->timers) != 0)
        return -1;
    h->exists = k.exists;
    if (kp_blob_read(&in, (uint8_t *)h + sizeof *h, p->o->value_size) != 0 ||
        ((k.flags & SAVED_COLL) && !(h->coll = kp_keyed_state_load(&in))) || in.len) {
        kp_keyed_state_free(h->coll);
        kt_free(&h->timers[0]);
        kt_free(&h->timers[1]);
        return -1;
    }
    p->extra_bytes += key_extra(h);
    return 0;
}

static int pk_dirty(void *arg, kp_keyentry *e)
{
    return (int)hdr_of(e)->dirty;
}

static void pk_flushed(void *arg, kp_keyentry *e)
{
    hdr_of(e)->on_disk = 1;
    hdr_of(e)->dirty = 0;
}

static const kp_key_spill_ops pk_ops = {pk_used, pk_save, pk_bytes, pk_drop, pk_dirty, pk_flushed};

static size_t table_bytes(const process_op *p);

/* After a sweep (eviction or barrier flush): the state held `before` bytes and the sweep's
 * scratch next to them (released now, key_spill.h); both count in the peak. */
static void note_sweep(process_op *p, size_t before)
{
    size_t bytes = before + kp_key_spill_scratch_release(&p->spill);
    if (bytes > p->peak_bytes)
        p->peak_bytes = bytes;
}

/* Evicts cold keys once the table and what its keys hold pass the budget, down to half of
 * it. Only between calls: no kp_ctx holds an entry then. */
static int maybe_evict(process_op *p)
{
    if (kp_timer_spill_check(&p->tspill[0], &p->heaps[0]) != 0 ||
        kp_timer_spill_check(&p->tspill[1], &p->heaps[1]) != 0)
        return -1;
    size_t bytes = kp_keytable_bytes(&p->values) + p->extra_bytes;
    if (bytes <= p->cache_limit)
        return 0;
    size_t before = table_bytes(p);
    int rc = kp_key_spill_evict(&p->spill, &p->values, bytes - p->cache_limit / 2, &pk_ops, p);
    note_sweep(p, before);
    return rc;
}

/* Before `key` enters the table (kp_key_spill_entry with `create`): evicts first if the table
 * would grow for it past the budget (kp_key_spill_room). Leaves the heaps alone (a timer's
 * key may point into one). */
static int make_room(process_op *p, uint64_t hash, kp_bytes key, int create)
{
    size_t need =
        kp_key_spill_room(&p->spill, &p->values, hash, key, create, p->extra_bytes, p->cache_limit);
    if (!need)
        return 0;
    size_t before = table_bytes(p);
    int rc = kp_key_spill_evict(&p->spill, &p->values, need, &pk_ops, p);
    note_sweep(p, before);
    return rc;
}

/* The entry of `key` in *out (kp_key_spill_entry), marked used; made room for first. */
static int key_entry(process_op *p, uint64_t hash, kp_bytes key, int create, kp_keyentry **out)
{
    if (make_room(p, hash, key, create) != 0 ||
        kp_key_spill_entry(&p->spill, &p->values, hash, key, create, pk_restore, p, out) != 0)
        return -1;
    if (*out)
        hdr_of(*out)->used = hdr_of(*out)->dirty = 1;
    return 0;
}

/* ---- the context API ------------------------------------------------------------------- */

static kp_str ctx_key(kp_ctx *c)
{
    return c->key;
}

static void *ctx_value(kp_ctx *c, bool *exists)
{
    value_hdr *h = hdr_of(c->e);
    if (exists)
        *exists = h->exists != 0;
    h->exists = 1;
    return (uint8_t *)kp_keyentry_value(c->e) + sizeof(value_hdr);
}

static void ctx_value_clear(kp_ctx *c)
{
    value_hdr *h = hdr_of(c->e);
    h->exists = 0;
    memset((uint8_t *)kp_keyentry_value(c->e) + sizeof(value_hdr), 0, c->p->o->value_size);
}

static void ctx_timer(kp_ctx *c, kp_time when, bool event_time)
{
    process_op *p = c->p;
    key_timers *t = &hdr_of(c->e)->timers[event_time];
    if (kt_find(t, when) >= 0)
        return; /* already pending */
    if (kt_add(t, when) != 0) {
        timers_oom(p);
        return;
    }
    tf_count(p, c->e->hash, when, 1);
    p->pending[event_time]++;
    if (kp_timer_push(&p->heaps[event_time], when, 0, c->e->hash, c->key) != 0)
        timers_oom(p);
}

static void ctx_timer_delete(kp_ctx *c, kp_time when, bool event_time)
{
    if (unpend(c->p, hdr_of(c->e), c->e->hash, event_time, when))
        settle(c->p, event_time);
}

static kp_time ctx_watermark(kp_ctx *c)
{
    return c->wm;
}

static kp_time ctx_now(kp_ctx *c)
{
    return kp_wall_ms();
}

static kp_doc *ctx_emit(kp_ctx *c)
{
    kp_doc_begin(&c->p->doc);
    return &c->p->doc;
}

static void ctx_emit_done(kp_ctx *c, kp_doc *doc)
{
    process_op *p = c->p;
    if (p->failed)
        return;
    if (kp_doc_end(doc) != 0) {
        p->failed = kp_subtask_fail(p->op.st, "%s: out of memory", p->op.node->name);
        return;
    }
    if (doc->id.len == 0 && kp_buf_append(&doc->id, c->key.ptr, c->key.len) != 0) {
        p->failed = kp_subtask_fail(p->op.st, "%s: out of memory", p->op.node->name);
        return;
    }
    if (kp_op_emit_doc(&p->op, doc, c->ts, c->out_cwm) != 0)
        p->failed = -1;
}

/* The current key's list/map state, created on first use; NULL (and the job failed) when out
 * of memory. */
static kp_keyed_state *coll(kp_ctx *c, int create)
{
    value_hdr *h = hdr_of(c->e);
    if (!h->coll && create && !(h->coll = kp_keyed_state_new()))
        c->p->failed =
            kp_subtask_fail(c->p->op.st, "%s: out of memory for state", c->p->op.node->name);
    return h->coll;
}
static void oom(kp_ctx *c)
{
    c->p->failed = kp_subtask_fail(c->p->op.st, "%s: out of memory for state", c->p->op.node->name);
}

static void ctx_list_add(kp_ctx *c, kp_bytes item)
{
    kp_keyed_state *ks = coll(c, 1);
    if (ks && kp_list_add(ks, item) != 0)
        oom(c);
}

static size_t ctx_list_len(kp_ctx *c)
{
    kp_keyed_state *ks = coll(c, 0);
    return ks ? ks->n : 0;
}

static kp_bytes ctx_list_get(kp_ctx *c, size_t i)
{
    kp_keyed_state *ks = coll(c, 0);
    return ks ? kp_list_get(ks, i) : (kp_bytes){"", 0};
}

static void ctx_list_clear(kp_ctx *c)
{
    kp_keyed_state *ks = coll(c, 0);
    if (ks)
        kp_list_clear(ks);
}

static void ctx_map_put(kp_ctx *c, kp_bytes key, kp_bytes value)
{
    kp_keyed_state *ks = coll(c, 1);
    if (ks && kp_map_put(ks, key, value) != 0)
        oom(c);
}

static int ctx_map_get(kp_ctx *c, kp_bytes key, kp_bytes *value)
{
    kp_keyed_state *ks = coll(c, 0);
    return ks ? kp_map_get(ks, key, value) : 0;
}

static int ctx_map_remove(kp_ctx *c, kp_bytes key)
{
    kp_keyed_state *ks = coll(c, 0);
    return ks ? kp_map_remove(ks, key) : 0;
}

static size_t ctx_map_size(kp_ctx *c)
{
    kp_keyed_state *ks = coll(c, 0);
    return ks ? ks->live : 0;
}

static int ctx_map_next(kp_ctx *c, size_t *cursor, kp_bytes *key, kp_bytes *value)
{
    kp_keyed_state *ks = coll(c, 0);
    return ks ? kp_map_next(ks, cursor, key, value) : 0;
}

static void ctx_map_clear(kp_ctx *c)
{
    kp_keyed_state *ks = coll(c, 0);
    if (ks)
        kp_map_clear(ks);
}

void kp_process_api_fill(kp_api *api);
void kp_process_api_fill(kp_api *api)
{
    api->ctx_key = ctx_key;
    api->ctx_value = ctx_value;
    api->ctx_value_clear = ctx_value_clear;
    api->ctx_timer = ctx_timer;
    api->ctx_watermark = ctx_watermark;
    api->ctx_now = ctx_now;
    api->ctx_emit = ctx_emit;
    api->ctx_emit_done = ctx_emit_done;
    api->ctx_list_add = ctx_list_add;
    api->ctx_list_len = ctx_list_len;
    api->ctx_list_get = ctx_list_get;
    api->ctx_list_clear = ctx_list_clear;
    api->ctx_map_put = ctx_map_put;
    api->ctx_map_get = ctx_map_get;
    api->ctx_map_remove = ctx_map_remove;
    api->ctx_map_size = ctx_map_size;
    api->ctx_map_next = ctx_map_next;
    api->ctx_map_clear = ctx_map_clear;
    api->ctx_timer_delete = ctx_timer_delete;
}

/* ---- the operator ------------------------------------------------------------------------ */

static int check(process_op *p, kp_rc rc, const char *what)
{
    if (p->failed)
        return -1;
    if (rc == KP_OK || rc == KP_SKIP)
        return 0;
    return kp_subtask_fail(p->op.st, "%s: %s returned %s", p->op.node->name, what,
                           rc == KP_BAD_INPUT ? "KP_BAD_INPUT" : "KP_ERROR");
}

/* Runs on_timer for a timer that has just left the pending set. */
static int call_on_timer(process_op *p, kp_keyentry *e, kp_time when, bool event_time)
{
    if (!p->o->on_timer)
        return 0;
    kp_time before = when == KP_TIME_MIN ? when : when - 1;
    kp_ctx c = {p,
                e,
                kp_keytable_key(&p->values, e),
                when,
                event_time ? when : p->wm,
                event_time ? before : p->wm};
    return check(p, p->o->on_timer(&c, when, event_time), "on_timer");
}

/* Fires every timer of one kind due at `upto` (W for event time, the wall clock for
 * processing time), in time order, skipping stale heap entries. */
static int fire_due(process_op *p, bool event_time, kp_time upto)
{
    kp_timer_heap *h = &p->heaps[event_time];
    kp_timer t;
    int due;
    while ((due = kp_timer_spill_pop_due(&p->tspill[event_time], h, upto, &t)) == 1) {
        kp_bytes key = kp_timer_key(h, &t);
        /* a pending timer keeps its key (in memory or spilled); whether it is pending is in
         * the key's header, read back if it was spilled and the filter does not rule it out */
        kp_keyentry *e = kp_keytable_find(&p->values, t.hash, key);
        int maybe = e ? 1 : maybe_pending(p, t.hash, t.when);
        if (maybe < 0)
            return -1;
        if (!e && maybe &&
            (make_room(p, t.hash, key, 0) != 0 ||
             kp_key_spill_entry(&p->spill, &p->values, t.hash, key, 0, pk_restore, p, &e) != 0))
            return -1;
        if (!e || !unpend(p, hdr_of(e), e->hash, event_time, t.when)) {
            if (e && maybe_evict(p) != 0) /* a key read back for a stale entry */
                return -1;
            continue;
        }
        hdr_of(e)->used = hdr_of(e)->dirty = 1;
        /* on_timer may push (invalidating `key`), but it does not touch `values`: `e` holds */
        size_t before = key_extra(hdr_of(e));
        if (call_on_timer(p, e, t.when, event_time) != 0)
            return -1;
        p->extra_bytes += key_extra(hdr_of(e)) - before;
        if (drop_if_empty(p, e) != 0 || maybe_evict(p) != 0)
            return -1;
    }
    return due;
}

/* Fires the event-time timers of key `e` due at `cwm` (the cwm of a record of that key), in
 * time order, including ones the calls register. */
static int fire_key_due(process_op *p, kp_keyentry *e, kp_time cwm)
{
    key_timers *t = &hdr_of(e)->timers[1];
    if (!t->n || kt_times(t)[0] > cwm)
        return 0;
    while (t->n && kt_times(t)[0] <= cwm) {
        kp_time when = kt_times(t)[0];
        unpend(p, hdr_of(e), e->hash, true, when);
        if (call_on_timer(p, e, when, true) != 0)
            return -1;
    }
    settle(p, true);
    return 0;
}

static int process_record(kp_op *op, kp_event *ev)
{
    process_op *p = (process_op *)op;
    uint64_t hash = kp_event_hash(ev);
    kp_keyentry *e;
    if (key_entry(p, hash, ev->key, 1, &e) != 0)
        return -1;
    size_t before = key_extra(hdr_of(e));
    /* Neither the calls below nor the context insert into or remove from `values`, so `e`
     * stays valid until drop_if_empty. */
    kp_time due = p->o->key_in_one_partition ? ev->cwm : KP_TIME_MIN;
    if (fire_key_due(p, e, due) != 0)
        return -1;
    kp_ctx c = {p, e, kp_keytable_key(&p->values, e), ev->ts, ev->cwm, ev->cwm};
    if (check(p, p->o->on_event(&c, ev), "on_event") != 0 || fire_key_due(p, e, due) != 0)
        return -1;
    p->extra_bytes += key_extra(hdr_of(e)) - before;
    if (drop_if_empty(p, e) != 0 || maybe_evict(p) != 0)
        return -1;
    return kp_timer_spill_any(&p->tspill[0], &p->heaps[0]) ? fire_due(p, false, kp_wall_ms()) : 0;
}

/* Bytes of the tables, heaps and what the keys in memory hold. */
static size_t table_bytes(const process_op *p)
{
    return kp_keytable_bytes(&p->values) + p->extra_bytes + kp_timer_heap_bytes(&p->heaps[0]) +
           kp_timer_heap_bytes(&p->heaps[1]);
}

static int process_watermark(kp_op *op, kp_time wm)
{
    process_op *p = (process_op *)op;
    if (wm <= p->wm)
        return 0;
    size_t bytes = table_bytes(p); /* sampled per watermark: cheap, and enough for a peak */
    if (bytes > p->peak_bytes)
        p->peak_bytes = bytes;
    p->wm = wm;
    if (fire_due(p, true, wm) != 0 || fire_due(p, false, kp_wall_ms()) != 0)
        return -1;
    return kp_op_emit_watermark(op, wm);
}

void kp_op_process_counts(const kp_op *op, kp_process_counts *c)
{
    const process_op *p = (const process_op *)op;
    *c = (kp_process_counts){p->values.n,
                             p->pending[0] + p->pending[1],
                             p->heaps[0].n + p->heaps[1].n,
                             table_bytes(p),
                             kp_keytable_bytes(&p->values) + p->extra_bytes,
                             p->spill.spills,
                             p->spill.keys_out,
                             p->spill.keys_in,
                             p->tspill[0].timers_out + p->tspill[1].timers_out,
                             p->tspill[0].timers_in + p->tspill[1].timers_in};
}

static int process_finish(kp_op *op)
{
    process_op *p = (process_op *)op;
    if (process_watermark(op, KP_TIME_MAX) != 0)
        return -1;
    atomic_fetch_add_explicit(&op->st->metrics->state_cache_peak, (long long)p->peak_bytes,
                              memory_order_relaxed);
    kp_state_peak_report(&p->rocks, p->spill.state, op->st->metrics);
    return kp_op_emit_finish(op);
}

static void process_destroy(kp_op *op)
{
    process_op *p = (process_op *)op;
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->values, &i))) {
        kp_keyed_state_free(hdr_of(e)->coll);
        kt_free(&hdr_of(e)->timers[0]);
        kt_free(&hdr_of(e)->timers[1]);
    }
    kp_keytable_free(&p->values);
    kp_timer_spill_finish(&p->tspill[0]);
    kp_timer_spill_finish(&p->tspill[1]);
    kp_key_spill_finish(&p->spill);
    kp_timer_heap_free(&p->heaps[0]);
    kp_timer_heap_free(&p->heaps[1]);
    kp_doc_free(&p->doc);
    free(p->tf);
    free(p);
}

/* Processing-time timers fire on the clock, even when no input arrives. */
static int process_tick(kp_op *op, kp_time now)
{
    process_op *p = (process_op *)op;
    kp_live_state(op->st->live, &p->state_reported, &p->state_next, kp_mono_ms(),
                  (long long)(table_bytes(p) + kp_state_disk_bytes(p->spill.state)));
    kp_state_peak_sample(&p->rocks, p->spill.state, kp_mono_ms());
    if (kp_timer_spill_any(&p->tspill[0], &p->heaps[0]) && fire_due(p, false, now) != 0)
        return -1;
    for (int i = 0; i < op->nout; i++)
        if (kp_op_tick(op->out[i], now) != 0)
            return -1;
    return 0;
}

/* ---- checkpoints (keyed_db.h, docs/state.md "Checkpoints and restore") ------------------ */

/* The pending timers in a checkpoint are in the keys' state: a key's saved value holds its
 * pending timers of both kinds (saved_key), and a barrier's flush writes every key changed
 * since the last one, so a restore rebuilds both heaps by one scan of the keys — and a
 * rescaling restore, which copies the keys of its key groups, brings their timers with them.
 * No stale heap entries come back. */
static int process_barrier(kp_op *op, struct kp_snapshot *snap)
{
    process_op *p = (process_op *)op;
    kp_key_spill *sp = &p->spill;
    if (kp_key_spill_flush(sp, &p->values, &pk_ops, p) != 0)
        return -1;
    note_sweep(p, table_bytes(p));
    if (sp->state &&
        kp_keyed_db_snapshot(op->st, op->node, sp->state, sp->kg_lo, sp->kg_hi, snap) != 0)
        return -1;
    kp_keyed_blob b = {.wm = p->wm};
    if (kp_keyed_blob_write(op->st, op->node, sp->kg_lo, sp->kg_hi, snap, b) != 0)
        return -1;
    return kp_keyed_pass_barrier(op, NULL, 0, snap);
}

typedef struct process_acc {
    process_op *p;
    size_t timers;
} process_acc;

/* A restored key's pending timers of one kind: into their heap. */
static int restore_timers(process_acc *a, bool event_time, uint64_t hash, kp_bytes key,
                          key_timers *t)
{
    process_op *p = a->p;
    for (uint32_t i = 0; i < t->n; i++) {
        if (kp_timer_push(&p->heaps[event_time], kt_times(t)[i], 0, hash, key) != 0)
            return kp_subtask_fail(p->op.st, "%s: out of memory for timers", p->op.node->name);
        p->pending[event_time]++;
        if (++a->timers % 4096 == 0 &&
            kp_timer_spill_check(&p->tspill[event_time], &p->heaps[event_time]) != 0)
            return -1;
    }
    return 0;
}

/* A restored key: its pending timers (saved_key). */
static int restore_key_timers(void *arg, uint64_t hash, kp_bytes key, kp_bytes value)
{
    process_acc *a = arg;
    saved_key k;
    key_timers t[2] = {{0}, {0}};
    if (saved_read(&value, &k, t) != 0)
        return kp_subtask_fail(a->p->op.st,
                               "%s: restore: a malformed key state (or one saved by an older "
                               "build with processing-time timers)",
                               a->p->op.node->name);
    hash = hash ? hash : 1; /* as the key table has it */
    int rc = restore_timers(a, true, hash, key, &t[1]) != 0 ||
             restore_timers(a, false, hash, key, &t[0]) != 0;
    kt_free(&t[0]);
    kt_free(&t[1]);
    return rc ? -1 : 0;
}

/* Restores the operator from st->restore: its database (keys stay on disk until used), both
 * heaps (from the keys), its watermark. */
static int restore_process(process_op *p)
{
    kp_op *op = &p->op;
    kp_key_spill *sp = &p->spill;
    kp_keyed_blob b;
    if (kp_key_spill_open(sp) != 0 || kp_timer_spill_reset(&p->tspill[0]) != 0 ||
        kp_timer_spill_reset(&p->tspill[1]) != 0 ||
        kp_keyed_blob_read(op->st, op->node, sp->kg_lo, sp->kg_hi, sp->ever, &b) != 0)
        return -1;
    p->wm = b.wm;
    process_acc a = {p, 0};
    if (kp_key_spill_scan(sp, sp->cf, restore_key_timers, &a) != 0)
        return -1;
    return maybe_evict(p);
}

static const kp_op_vt process_vt = {.record = process_record,
                                    .watermark = process_watermark,
                                    .idle = kp_op_pass_idle,
                                    .finish = process_finish,
                                    .destroy = process_destroy,
                                    .tick = process_tick,
                                    .barrier = process_barrier};

kp_op *kp_op_process_new(kp_subtask *st, const kp_node *n)
{
    process_op *p = calloc(1, sizeof *p);
    if (!p) {
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    p->op = (kp_op){.vt = &process_vt, .node = n, .st = st};
    p->o = &n->u.process;
    p->wm = KP_TIME_MIN;
    kp_keytable_init(&p->values, sizeof(value_hdr) + p->o->value_size);
    p->cache_limit = st->state_cache_bytes ? st->state_cache_bytes : 256u << 20;
    kp_key_spill_init(&p->spill, st, n, "process");
    kp_timer_spill_init(&p->tspill[0], &p->spill, "process-timers-processing", p->cache_limit / 8);
    kp_timer_spill_init(&p->tspill[1], &p->spill, "process-timers-event", p->cache_limit / 8);
    if (kp_keyed_restoring(st, n) && restore_process(p) != 0) {
        process_destroy(&p->op);
        return NULL;
    }
    return &p->op;
}
