/* Timer heaps that overflow into RocksDB; see timer_spill.h. */
#include "timer_spill.h"

#include <stdlib.h>

#include "graph.h"
#include "keygroup.h"

#define TKEY_PREFIX 18 /* due time, key group, aux */

/* A key after every timer key. */
static const uint8_t past_all[TKEY_PREFIX + 1] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                  0xff, 0xff, 0xff, 0xff, 0xff};

void kp_timer_spill_init(kp_timer_spill *ts, kp_key_spill *sp, const char *cf_name, size_t limit)
{
    *ts = (kp_timer_spill){.sp = sp, .cf_name = cf_name, .cf = -1, .limit = limit};
}

void kp_timer_spill_finish(kp_timer_spill *ts)
{
    if (ts->batch)
        kp_state_batch_free(ts->batch);
    kp_buf_free(&ts->rkey);
    ts->batch = NULL;
}

static void put_be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int fail_oom(kp_timer_spill *ts)
{
    return kp_subtask_fail(ts->sp->st, "%s: out of memory for timers", ts->sp->node->name);
}

static int open_cf(kp_timer_spill *ts)
{
    if (ts->cf >= 0)
        return 0;
    if (kp_key_spill_open(ts->sp) != 0)
        return -1;
    char err[512];
    ts->cf = kp_state_cf_scan(ts->sp->state, ts->cf_name, err, sizeof err); /* range scans only */
    if (ts->cf < 0)
        return kp_subtask_fail(ts->sp->st, "%s: timer state: %s", ts->sp->node->name, err);
    if (!(ts->batch = kp_state_batch_new()))
        return fail_oom(ts);
    return 0;
}

static int by_time(const void *a, const void *b)
{
    kp_time x = ((const kp_timer *)a)->when, y = ((const kp_timer *)b)->when;
    return (x > y) - (x < y);
}

static bool in_lower_half(void *arg, const kp_timer_heap *h, const kp_timer *t)
{
    return (size_t)(t - h->a) < *(size_t *)arg;
}

int kp_timer_spill_check(kp_timer_spill *ts, kp_timer_heap *h)
{
    /* what the timers need, not what the heap holds: its array keeps its largest size */
    if (!ts->limit || h->n < 2 || h->n * sizeof *h->a + h->live <= ts->limit)
        return 0;
    if (open_cf(ts) != 0)
        return -1;
    qsort(h->a, h->n, sizeof *h->a, by_time); /* sorted by time: still a heap */
    size_t keep = h->n / 2;
    int maxp = ts->sp->max_parallelism;
    for (size_t i = keep; i < h->n; i++) {
        const kp_timer *t = &h->a[i];
        kp_bytes key = kp_timer_key(h, t);
        ts->rkey.len = 0;
        if (kp_buf_reserve(&ts->rkey, TKEY_PREFIX + key.len) != 0)
            return fail_oom(ts);
        uint8_t *k = (uint8_t *)ts->rkey.ptr;
        int kg = kp_key_group(t->hash ? t->hash : 1, maxp);
        put_be(k, (uint64_t)t->when ^ (1ull << 63));
        k[8] = (uint8_t)(kg >> 8);
        k[9] = (uint8_t)kg;
        put_be(k + 10, (uint64_t)t->aux ^ (1ull << 63));
        memcpy(k + TKEY_PREFIX, key.ptr, key.len);
        kp_state_batch_put(ts->batch, ts->sp->state, ts->cf, k, TKEY_PREFIX + key.len, &t->hash,
                           sizeof t->hash);
    }
    kp_time first = h->a[keep].when;
    char err[512];
    if (kp_state_write(ts->sp->state, ts->batch, err, sizeof err) != 0)
        return kp_subtask_fail(ts->sp->st, "%s: spilling timers: %s", ts->sp->node->name, err);
    ts->timers_out += (long long)(h->n - keep);
    kp_timer_heap_filter(h, in_lower_half, &keep); /* drops the later half, compacts the keys */
    if (!ts->on_disk || first < ts->disk_min)
        ts->disk_min = first;
    ts->on_disk = 1;
    ts->spills++;
    atomic_fetch_add_explicit(&ts->sp->st->metrics->state_spills, 1, memory_order_relaxed);
    return 0;
}

/* Reads back about half the limit of the earliest timers on disk and deletes them (one point
 * delete each, in one write batch: a range delete per load made every later iterator of the
 * column family re-fragment all range tombstones still in the memtable — 8 % of the CPU of a
 * spilling process job); disk_min becomes the time of the first timer left, if any. */
static int load(kp_timer_spill *ts, kp_timer_heap *h)
{
    /* from disk_min, not from the start: below it lie the ranges deleted by earlier loads,
     * which an iterator from the start would step over entry by entry (was ~20 % of the
     * CPU of a spilling session job) */
    uint8_t from[8];
    put_be(from, (uint64_t)ts->disk_min ^ (1ull << 63));
    kp_state_iter *it = kp_state_iter_open(ts->sp->state, ts->cf, from, sizeof from, NULL, 0);
    size_t bytes = 0, want = ts->limit / 2, loaded = 0;
    ts->on_disk = 0;
    for (; it && kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = kp_state_iter_key(it, &klen);
        const void *v = kp_state_iter_value(it, &vlen);
        if (klen < TKEY_PREFIX || vlen != sizeof(uint64_t))
            break; /* reported below */
        kp_time when = (kp_time)(get_be(k) ^ (1ull << 63));
        if (bytes >= want && loaded) { /* the first timer left */
            ts->on_disk = 1;
            ts->disk_min = when;
            break;
        }
        uint64_t hash;
        memcpy(&hash, v, sizeof hash);
        kp_bytes key = {(const char *)k + TKEY_PREFIX, klen - TKEY_PREFIX};
        kp_time aux = (kp_time)(get_be(k + 10) ^ (1ull << 63));
        if (kp_timer_push(h, when, aux, hash, key) != 0) {
            kp_state_iter_close(it, NULL, 0);
            return fail_oom(ts);
        }
        kp_state_batch_del(ts->batch, ts->sp->state, ts->cf, k, klen);
        loaded++;
        bytes += sizeof(kp_timer) + key.len;
        ts->timers_in++;
    }
    char err[512] = "out of memory";
    int bad = it && kp_state_iter_valid(it) && !ts->on_disk;
    if (!it || kp_state_iter_close(it, err, sizeof err) != 0 || bad)
        return kp_subtask_fail(ts->sp->st, "%s: reading timers: %s", ts->sp->node->name,
                               bad ? "a malformed entry" : err);
    if (loaded && kp_state_write(ts->sp->state, ts->batch, err, sizeof err) != 0)
        return kp_subtask_fail(ts->sp->st, "%s: deleting timers: %s", ts->sp->node->name, err);
    return 0;
}

int kp_timer_spill_reset(kp_timer_spill *ts)
{
    static const uint8_t first[1] = {0};
    char err[512];
    if (open_cf(ts) != 0)
        return -1;
    if (kp_state_del_range(ts->sp->state, ts->cf, first, 0, past_all, sizeof past_all, err,
                           sizeof err) != 0)
        return kp_subtask_fail(ts->sp->st, "%s: deleting restored timers: %s", ts->sp->node->name,
                               err);
    ts->on_disk = 0;
    return 0;
}

int kp_timer_spill_pop_due(kp_timer_spill *ts, kp_timer_heap *h, kp_time upto, kp_timer *t)
{
    /* timers on disk that are due, and not later than the earliest in memory, come first */
    while (ts->on_disk && ts->disk_min <= upto && (!h->n || h->a[0].when >= ts->disk_min))
        if (load(ts, h) != 0)
            return -1;
    if (!h->n || h->a[0].when > upto)
        return 0;
    *t = kp_timer_pop(h);
    return 1;
}
