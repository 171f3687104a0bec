/* Tumbling and sliding event-time windows, aggregated per pane.
 *
 * Time is cut into panes of gcd(size, slide); each record updates exactly one pane
 * accumulator for its key, so the cost per record does not grow with size/slide (Flink
 * assigns a sliding-window record to size/slide windows; this does not). A window fires when
 * the watermark passes its end - 1 and merges the panes it covers. Tumbling windows are the
 * case pane == window.
 *
 * State: panes live in memory (keytable.c) as a write-back cache over RocksDB. When the
 * cache passes its byte budget the largest pane is written to RocksDB as partial
 * accumulators (blind writes: no read per record, ever) and cleared; when a spilled pane is
 * needed, its partials are read back and merged. RocksDB keys are
 *   key group (2, BE) | pane end (8, BE, sign flipped) | key | spill sequence (4, BE)
 * — the pane before the key, so a pane is one range per key group (docs/architecture.md).
 *
 * Lateness (Flink semantics): a record is late when every window containing it has
 * end - 1 + allowed_lateness <= watermark; late records are counted and go to the late side
 * output. A record for an already fired window that is still within allowed lateness updates
 * the window and fires it again, for that key, with the same document id. */
#include <stdlib.h>

#include "keygroup.h"
#include "keytable.h"
#include "ops.h"
#include "state.h"
#include "window_agg.h"

#define MAX_PANES_DEFAULT 4096

typedef struct pane {
    kp_time end;
    kp_keytable t;
    int spilled;
} pane;

typedef struct window_op {
    kp_op op;
    kp_op *late[KP_MAX_OUTPUTS];
    int nlate;
    kp_agg agg;
    kp_time size, slide, offset, gran, lateness;
    kp_time wm;
    kp_time fired_upto; /* end of the last window fired; KP_TIME_MIN if none */
    pane **panes;       /* sorted by end */
    int npanes, cap;
    kp_keytable merged; /* sliding: scratch for merging panes */
    /* sliding counts: a running window, the sum of the panes with end in (run_lo, run_hi];
     * run_hi == KP_TIME_MIN when it must be rebuilt */
    int incremental;
    kp_keytable running;
    kp_time run_lo, run_hi;
    kp_doc doc;
    uint8_t *acc_tmp;
    uint8_t *spill_tmp; /* an aligned copy of a spilled accumulator (RocksDB values are not) */
    /* spill */
    size_t cache_limit;
    size_t cache_bytes; /* sum of the panes' kp_keytable_bytes, kept up to date */
    size_t cache_peak;
    kp_state *state;
    int cf;
    kp_state_batch *batch;
    uint32_t spill_seq;
    kp_buf kbuf;
    int kg_first, kg_end;
} window_op;

static kp_time gcd64(kp_time a, kp_time b)
{
    while (b) {
        kp_time t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static kp_time floor_div(kp_time a, kp_time b)
{
    kp_time q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* End of the pane holding ts. */
static kp_time pane_end_of(const window_op *w, kp_time ts)
{
    return floor_div(ts - w->offset, w->gran) * w->gran + w->offset + w->gran;
}

/* First and last window ends whose windows contain the pane ending at pe. */
static kp_time first_window(const window_op *w, kp_time pe)
{
    return floor_div(pe - w->offset + w->slide - 1, w->slide) * w->slide + w->offset;
}

static kp_time last_window(const window_op *w, kp_time pe)
{
    return floor_div(pe - w->gran + w->size - w->offset, w->slide) * w->slide + w->offset;
}

static int is_fired(const window_op *w, kp_time end)
{
    return w->fired_upto != KP_TIME_MIN && end <= w->fired_upto;
}

/* ---- panes ----------------------------------------------------------------------------- */

static pane *find_pane(window_op *w, kp_time end, int *pos)
{
    int lo = 0, hi = w->npanes;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (w->panes[mid]->end < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return lo < w->npanes && w->panes[lo]->end == end ? w->panes[lo] : NULL;
}

static pane *get_pane(window_op *w, kp_time end)
{
    int pos;
    pane *p = find_pane(w, end, &pos);
    if (p)
        return p;
    if (w->npanes == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        pane **a = realloc(w->panes, (size_t)cap * sizeof *a);
        if (!a)
            return NULL;
        w->panes = a;
        w->cap = cap;
    }
    p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->end = end;
    kp_keytable_init(&p->t, w->agg.acc_size);
    memmove(w->panes + pos + 1, w->panes + pos, (size_t)(w->npanes - pos) * sizeof *w->panes);
    w->panes[pos] = p;
    w->npanes++;
    return p;
}

/* Upsert into a pane, keeping the cache byte count current. */
static kp_keyentry *pane_upsert(window_op *w, pane *p, uint64_t hash, kp_bytes key, int *created)
{
    size_t before = kp_keytable_bytes(&p->t);
    kp_keyentry *e = kp_keytable_upsert(&p->t, hash, key, created);
    w->cache_bytes += kp_keytable_bytes(&p->t) - before;
    if (w->cache_bytes > w->cache_peak)
        w->cache_peak = w->cache_bytes;
    return e;
}

/* ---- spilling to RocksDB --------------------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static size_t spill_prefix(uint8_t *p, int kg, kp_time end)
{
    put_be(p, (uint64_t)kg, 2);
    put_be(p + 2, (uint64_t)end ^ (1ull << 63), 8);
    return 10;
}

static int open_state(window_op *w)
{
    char dir[1024], err[512];
    kp_subtask *st = w->op.st;
    snprintf(dir, sizeof dir, "%s/%s-%d", st->state_dir ? st->state_dir : "/tmp/kappa-state",
             w->op.node->uid, st->index);
    for (char *c = dir + strlen(st->state_dir ? st->state_dir : "/tmp/kappa-state") + 1; *c; c++)
        if (*c == '/' || *c == ' ' || *c == ':')
            *c = '_';
    kp_state_config cfg = {.dir = dir,
                           .fresh = 1,
                           .block_cache_bytes = st->rocksdb_cache_bytes,
                           .memtable_bytes = st->rocksdb_memtable_bytes};
    w->state = kp_state_open(&cfg, err, sizeof err);
    if (!w->state)
        return kp_subtask_fail(st, "%s: cannot open window state: %s", w->op.node->name, err);
    w->cf = kp_state_cf(w->state, "window", err, sizeof err);
    w->batch = kp_state_batch_new();
    if (w->cf < 0 || !w->batch)
        return kp_subtask_fail(st, "%s: window state: %s", w->op.node->name, err);
    return 0;
}

static int spill_pane(window_op *w, pane *p)
{
    if (!w->state && open_state(w) != 0)
        return -1;
    uint8_t seq[4];
    put_be(seq, w->spill_seq++, 4);
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->t, &i))) {
        kp_bytes key = kp_keytable_key(&p->t, e);
        int kg = kp_key_group(kp_hash64(key.ptr, key.len), w->op.st->job->max_parallelism);
        w->kbuf.len = 0;
        if (kp_buf_reserve(&w->kbuf, 14 + key.len) != 0)
            return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
        size_t n = spill_prefix((uint8_t *)w->kbuf.ptr, kg, p->end);
        memcpy(w->kbuf.ptr + n, key.ptr, key.len);
        memcpy(w->kbuf.ptr + n + key.len, seq, 4);
        kp_state_batch_put(w->batch, w->state, w->cf, w->kbuf.ptr, n + key.len + 4,
                           kp_keyentry_value(e), w->agg.acc_size);
    }
    char err[512];
    if (kp_state_write(w->state, w->batch, err, sizeof err) != 0)
        return kp_subtask_fail(w->op.st, "%s: spilling window state: %s", w->op.node->name, err);
    w->cache_bytes -= kp_keytable_bytes(&p->t);
    kp_keytable_free(&p->t);
    p->spilled = 1;
    atomic_fetch_add_explicit(&w->op.st->metrics->state_spills, 1, memory_order_relaxed);
    return 0;
}

static int maybe_spill(window_op *w)
{
    if (w->cache_bytes <= w->cache_limit)
        return 0;
    pane *largest = NULL;
    for (int i = 0; i < w->npanes; i++)
        if (!largest || kp_keytable_bytes(&w->panes[i]->t) > kp_keytable_bytes(&largest->t))
            largest = w->panes[i];
    return largest ? spill_pane(w, largest) : 0;
}

/* Brings a spilled pane's partial accumulators back into memory and deletes them on disk. */
static int load_pane(window_op *w, pane *p)
{
    if (!p->spilled)
        return 0;
    char err[512];
    for (int kg = w->kg_first; kg < w->kg_end; kg++) {
        uint8_t lo[10], hi[10];
        spill_prefix(lo, kg, p->end);
        spill_prefix(hi, kg, p->end + 1);
        kp_state_iter *it = kp_state_iter_open(w->state, w->cf, lo, 10, hi, 10);
        for (; it && kp_state_iter_valid(it); kp_state_iter_next(it)) {
            size_t klen, vlen;
            const char *k = kp_state_iter_key(it, &klen);
            const void *v = kp_state_iter_value(it, &vlen);
            kp_bytes key = {k + 10, klen - 14};
            int created;
            kp_keyentry *e = pane_upsert(w, p, kp_hash64(key.ptr, key.len), key, &created);
            if (!e || vlen != w->agg.acc_size) {
                kp_state_iter_close(it, err, sizeof err);
                return kp_subtask_fail(w->op.st, "%s: corrupt or unloadable window state",
                                       w->op.node->name);
            }
            if (created) {
                memcpy(kp_keyentry_value(e), v, vlen);
            } else {
                /* merge functions may read the accumulator as its struct type */
                memcpy(w->spill_tmp, v, vlen);
                kp_agg_merge(&w->agg, kp_keyentry_value(e), w->spill_tmp);
            }
        }
        if (!it || kp_state_iter_close(it, err, sizeof err) != 0 ||
            kp_state_del_range(w->state, w->cf, lo, 10, hi, 10, err, sizeof err) != 0)
            return kp_subtask_fail(w->op.st, "%s: reading window state: %s", w->op.node->name,
                                   it ? err : "iterator");
    }
    p->spilled = 0;
    return 0;
}

/* ---- firing ---------------------------------------------------------------------------- */

/* The accumulator of `key` over the window ending at `end`, into acc. 0 if the key has no
 * data there. */
static int window_value(window_op *w, kp_time end, uint64_t hash, kp_bytes key, void *acc)
{
    int found = 0;
    kp_agg_init(&w->agg, acc);
    for (int i = 0; i < w->npanes; i++) {
        pane *p = w->panes[i];
        if (p->end <= end - w->size || p->end > end)
            continue;
        if (load_pane(w, p) != 0)
            return -1;
        kp_keyentry *e = kp_keytable_find(&p->t, hash, key);
        if (e) {
            kp_agg_merge(&w->agg, acc, kp_keyentry_value(e));
            found = 1;
        }
    }
    return found;
}

static int emit_table(window_op *w, kp_keytable *t, kp_time end)
{
    kp_window win = {end - w->size, end};
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(t, &i)))
        if (kp_agg_emit(&w->agg, &w->op, &w->doc, &win, kp_keytable_key(t, e),
                        kp_keyentry_value(e), w->wm) != 0)
            return -1;
    return 0;
}

static int fire_running(window_op *w, kp_time end);

static int fire_window(window_op *w, kp_time end)
{
    atomic_fetch_add_explicit(&w->op.st->metrics->windows_fired, 1, memory_order_relaxed);
    if (w->size == w->gran) { /* tumbling: the pane is the window */
        int pos;
        pane *p = find_pane(w, end, &pos);
        if (!p)
            return 0;
        return load_pane(w, p) != 0 ? -1 : emit_table(w, &p->t, end);
    }
    if (w->incremental)
        return fire_running(w, end);
    kp_keytable_clear(&w->merged);
    for (int i = 0; i < w->npanes; i++) {
        pane *p = w->panes[i];
        if (p->end <= end - w->size || p->end > end)
            continue;
        if (load_pane(w, p) != 0)
            return -1;
        size_t j = 0;
        kp_keyentry *e;
        while ((e = kp_keytable_next(&p->t, &j))) {
            int created;
            kp_keyentry *m =
                kp_keytable_upsert(&w->merged, e->hash, kp_keytable_key(&p->t, e), &created);
            if (!m)
                return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
            if (created)
                memcpy(kp_keyentry_value(m), kp_keyentry_value(e), w->agg.acc_size);
            else
                kp_agg_merge(&w->agg, kp_keyentry_value(m), kp_keyentry_value(e));
        }
    }
    return emit_table(w, &w->merged, end);
}

/* ---- sliding counts as a running window ------------------------------------------------- */

/* Adds (sign 1) or subtracts (sign -1) a pane's counts to the running window. */
static int run_apply(window_op *w, pane *p, int64_t sign)
{
    size_t j = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->t, &j))) {
        int created;
        kp_keyentry *r =
            kp_keytable_upsert(&w->running, e->hash, kp_keytable_key(&p->t, e), &created);
        if (!r)
            return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
        int64_t d, *v = kp_keyentry_value(r);
        memcpy(&d, kp_keyentry_value(e), sizeof d);
        *v += sign * d;
    }
    return 0;
}

/* Fires a sliding count window by moving the running window to end: add the panes that
 * entered, subtract those that left (panes already purged were subtracted then) — two panes per
 * slide instead of size/slide of them. Keys whose count fell to zero are skipped, and the
 * table is rebuilt once they are the majority. */
static int fire_running(window_op *w, kp_time end)
{
    if (w->run_hi == KP_TIME_MIN || end < w->run_hi) {
        kp_keytable_clear(&w->running);
        w->run_lo = w->run_hi = end - w->size;
    }
    for (int i = 0; i < w->npanes; i++) {
        pane *p = w->panes[i];
        int leaves = p->end > w->run_lo && p->end <= end - w->size;
        int enters = p->end > w->run_hi && p->end <= end;
        if (leaves && enters)
            continue; /* a jump over a whole window: in and out again */
        if ((leaves || enters) && (load_pane(w, p) != 0 || run_apply(w, p, enters ? 1 : -1) != 0))
            return -1;
    }
    w->run_lo = end - w->size;
    w->run_hi = end;
    kp_window win = {end - w->size, end};
    size_t i = 0, zeros = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&w->running, &i))) {
        if (*(int64_t *)kp_keyentry_value(e) == 0) {
            zeros++;
            continue;
        }
        if (kp_agg_emit(&w->agg, &w->op, &w->doc, &win, kp_keytable_key(&w->running, e),
                        kp_keyentry_value(e), w->wm) != 0)
            return -1;
    }
    if (zeros > 1024 && zeros > w->running.n / 2)
        w->run_hi = KP_TIME_MIN; /* mostly zeros: rebuild at the next firing */
    return 0;
}

/* A pane is about to be purged: take it out of the running window first. */
static void run_forget(window_op *w, pane *p)
{
    if (!w->incremental || w->run_hi == KP_TIME_MIN || p->end <= w->run_lo || p->end > w->run_hi)
        return;
    if (p->spilled || run_apply(w, p, -1) != 0)
        w->run_hi = KP_TIME_MIN;
    w->run_lo = p->end;
}

/* The next window end after fired_upto that covers some pane, or KP_TIME_MAX. */
static kp_time next_window(const window_op *w)
{
    for (int i = 0; i < w->npanes; i++) {
        kp_time pe = w->panes[i]->end;
        if (is_fired(w, last_window(w, pe)))
            continue;
        kp_time first = first_window(w, pe);
        if (w->fired_upto != KP_TIME_MIN && first <= w->fired_upto)
            first = w->fired_upto + w->slide;
        return first;
    }
    return KP_TIME_MAX;
}

static void drop_pane(window_op *w, int i)
{
    pane *p = w->panes[i];
    run_forget(w, p);
    if (p->spilled && w->state) {
        char err[256];
        for (int kg = w->kg_first; kg < w->kg_end; kg++) {
            uint8_t lo[10], hi[10];
            spill_prefix(lo, kg, p->end);
            spill_prefix(hi, kg, p->end + 1);
            kp_state_del_range(w->state, w->cf, lo, 10, hi, 10, err, sizeof err);
        }
    }
    w->cache_bytes -= kp_keytable_bytes(&p->t);
    kp_keytable_free(&p->t);
    free(p);
    memmove(w->panes + i, w->panes + i + 1, (size_t)(w->npanes - i - 1) * sizeof *w->panes);
    w->npanes--;
}

static int window_watermark(kp_op *op, kp_time wm)
{
    window_op *w = (window_op *)op;
    if (wm <= w->wm)
        return 0;
    w->wm = wm;
    for (kp_time end; (end = next_window(w)) != KP_TIME_MAX && end - 1 <= wm;) {
        if (fire_window(w, end) != 0)
            return -1;
        w->fired_upto = end;
    }
    /* Every window ending by wm + 1 is now done, including those no record had reached: mark
     * them fired, so a record that lands in one later is judged by lateness (skipped, or
     * fired again at once within allowed lateness) instead of firing it at the next watermark
     * with data that was late for it. */
    if (wm < KP_TIME_MAX && wm > KP_TIME_MIN + w->slide) {
        kp_time done = floor_div(wm + 1 - w->offset, w->slide) * w->slide + w->offset;
        if (w->fired_upto == KP_TIME_MIN || done > w->fired_upto)
            w->fired_upto = done;
    }
    /* purge panes no window can update any more */
    for (int i = 0; i < w->npanes;) {
        kp_time last = last_window(w, w->panes[i]->end);
        if (last - 1 + w->lateness <= wm && is_fired(w, last))
            drop_pane(w, i);
        else
            i++;
    }
    return kp_op_emit_watermark(op, wm);
}

/* ---- records ----------------------------------------------------------------------------- */

static int late_record(window_op *w, kp_event *ev)
{
    atomic_fetch_add_explicit(&w->op.st->metrics->late_records, 1, memory_order_relaxed);
    for (int i = 0; i < w->nlate; i++)
        if (w->late[i]->vt->record(w->late[i], ev) != 0)
            return -1;
    return 0;
}

/* A record landed in windows that already fired (within allowed lateness): fire them again
 * for this key. */
static int refire(window_op *w, kp_time pe, uint64_t hash, kp_bytes key)
{
    kp_time last = last_window(w, pe);
    for (kp_time end = first_window(w, pe); end <= last && is_fired(w, end); end += w->slide) {
        if (end - 1 + w->lateness <= w->wm)
            continue;
        int found = window_value(w, end, hash, key, w->acc_tmp);
        if (found < 0)
            return -1;
        kp_window win = {end - w->size, end};
        if (found && kp_agg_emit(&w->agg, &w->op, &w->doc, &win, key, w->acc_tmp, w->wm) != 0)
            return -1;
    }
    return 0;
}

static int window_record(kp_op *op, kp_event *ev)
{
    window_op *w = (window_op *)op;
    kp_time pe = pane_end_of(w, ev->ts);
    if (last_window(w, pe) - 1 + w->lateness <= w->wm)
        return late_record(w, ev);
    pane *p = get_pane(w, pe);
    uint64_t hash = kp_hash64(ev->key.ptr, ev->key.len);
    int created;
    kp_keyentry *e = p ? pane_upsert(w, p, hash, ev->key, &created) : NULL;
    if (!e)
        return kp_subtask_fail(op->st, "%s: out of memory for window state", op->node->name);
    if (created)
        kp_agg_init(&w->agg, kp_keyentry_value(e));
    kp_agg_add(&w->agg, kp_keyentry_value(e), ev);
    if (w->incremental && w->run_hi != KP_TIME_MIN && pe > w->run_lo && pe <= w->run_hi) {
        int fresh;
        kp_keyentry *r = kp_keytable_upsert(&w->running, hash, ev->key, &fresh);
        if (!r)
            return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
        (*(int64_t *)kp_keyentry_value(r))++; /* a late count for windows already fired */
    }
    if (w->fired_upto != KP_TIME_MIN && first_window(w, pe) <= w->fired_upto &&
        refire(w, pe, hash, ev->key) != 0)
        return -1;
    if (created && maybe_spill(w) != 0)
        return -1;
    return 0;
}

/* Adds this subtask's peak cache and RocksDB memory to the job's metrics. */
static void report_memory(window_op *w)
{
    kp_metrics *m = w->op.st->metrics;
    atomic_fetch_add_explicit(&m->state_cache_peak, (long long)w->cache_peak, memory_order_relaxed);
    if (w->state) {
        kp_state_memory mem;
        kp_state_memory_usage(w->state, &mem);
        atomic_fetch_add_explicit(&m->state_rocksdb,
                                  (long long)(mem.block_cache + mem.memtables + mem.table_readers),
                                  memory_order_relaxed);
    }
}

static int window_finish(kp_op *op)
{
    window_op *w = (window_op *)op;
    if (window_watermark(op, KP_TIME_MAX) != 0)
        return -1;
    report_memory(w);
    for (int i = 0; i < w->nlate; i++)
        if (w->late[i]->vt->finish(w->late[i]) != 0)
            return -1;
    return kp_op_emit_finish(op);
}

static int window_idle(kp_op *op)
{
    window_op *w = (window_op *)op;
    for (int i = 0; i < w->nlate; i++)
        if (w->late[i]->vt->idle(w->late[i]) != 0)
            return -1;
    return kp_op_emit_idle(op);
}

static void window_destroy(kp_op *op)
{
    window_op *w = (window_op *)op;
    while (w->npanes)
        drop_pane(w, w->npanes - 1);
    free(w->panes);
    kp_keytable_free(&w->merged);
    kp_keytable_free(&w->running);
    kp_doc_free(&w->doc);
    kp_buf_free(&w->kbuf);
    free(w->acc_tmp);
    free(w->spill_tmp);
    if (w->batch)
        kp_state_batch_free(w->batch);
    kp_state_close(w->state);
    free(w);
}

/* Window and session operators start with the same header (kp_op, late[], nlate): a tick
 * goes to the late side outputs as well as the main ones. */
typedef struct late_header {
    kp_op op;
    kp_op *late[KP_MAX_OUTPUTS];
    int nlate;
} late_header;

int kp_op_window_tick(kp_op *op, kp_time now)
{
    late_header *h = (late_header *)op;
    for (int i = 0; i < h->nlate; i++)
        if (kp_op_tick(h->late[i], now) != 0)
            return -1;
    for (int i = 0; i < op->nout; i++)
        if (kp_op_tick(op->out[i], now) != 0)
            return -1;
    return 0;
}

static const kp_op_vt window_vt = {window_record, window_watermark, window_idle,
                                   window_finish, window_destroy,   kp_op_window_tick};

kp_op *kp_op_session_new(kp_subtask *st, const kp_node *window);

kp_op *kp_op_window_new(kp_subtask *st, const kp_node *n)
{
    const kp_window_spec *s = &n->u.window.spec;
    if (s->kind == KP_WINDOW_SESSION)
        return kp_op_session_new(st, n);
    window_op *w = calloc(1, sizeof *w);
    if (!w) {
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    w->op = (kp_op){.vt = &window_vt, .node = n, .st = st};
    kp_agg_setup(&w->agg, n->u.window.aggregate);
    w->size = s->size;
    w->slide = s->kind == KP_WINDOW_TUMBLING ? s->size : s->slide;
    w->offset = s->offset;
    w->gran = gcd64(w->size, w->slide);
    w->lateness = n->u.window.opts.allowed_lateness;
    w->wm = KP_TIME_MIN;
    w->fired_upto = KP_TIME_MIN;
    w->cache_limit = st->state_cache_bytes ? st->state_cache_bytes : 256u << 20;
    w->kg_first = kp_key_group_first(st->index, st->job->max_parallelism, st->parallelism);
    w->kg_end = kp_key_group_first(st->index + 1, st->job->max_parallelism, st->parallelism);
    kp_keytable_init(&w->merged, w->agg.acc_size);
    kp_keytable_init(&w->running, sizeof(int64_t));
    w->incremental = w->agg.kind == KP_AGG_COUNT && w->size != w->gran;
    w->run_hi = KP_TIME_MIN;
    w->acc_tmp = malloc(w->agg.acc_size);
    w->spill_tmp = malloc(w->agg.acc_size);
    if (!w->acc_tmp || !w->spill_tmp) {
        window_destroy(&w->op);
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    return &w->op;
}

void kp_op_window_set_late(kp_op *op, kp_op *late)
{
    /* both window kinds start with the same header: kp_op, late[], nlate */
    window_op *w = (window_op *)op;
    if (w->nlate < KP_MAX_OUTPUTS)
        w->late[w->nlate++] = late;
}
