/* Event-time session windows.
 *
 * Each record opens the window [ts, ts + gap) (the end saturates at KP_TIME_MAX); windows of
 * one key that touch or overlap are merged — [a,b) and [b,c) merge — with the aggregate's
 * merge, as in Flink's MergingWindowSet. A session fires when the operator's watermark W
 * reaches end - 1 and is dropped once W also passes end - 1 + allowed lateness; a record
 * merged into a session that already fired fires the merged session at once.
 *
 * Lateness (docs/semantics.md). A record's own window [ts, ts + gap) does not say which
 * session it would join, so a record is judged by its own timestamp against its carried
 * watermark cwm: it is late (counted, sent to the late side output) iff
 *     ts - 1 + allowed_lateness <= cwm.
 * Why this keeps what a session finally holds a function of the log: a session [s, e) is
 * dropped only when e - 1 + lateness <= W' for the watermark W' of that moment. A record
 * that would merge with it touches it, so ts <= e, and it arrives later, when
 * W' <= W <= cwm (W never passes the carried watermark of a record still to arrive). Then
 * ts - 1 + lateness <= e - 1 + lateness <= W' <= cwm: the record is late. So a record that
 * is not late never meets a dropped session, and the final sessions are the merged windows of
 * all records that are not late, whatever the interleaving. With allowed lateness 0 a
 * session also fires exactly once: a record that is not late has ts - 1 > cwm >= W, so every
 * session it merges with, and the merged one, ends after W + 1 and has not fired. With
 * allowed lateness > 0 a session may fire, then grow under a later record (within lateness)
 * and fire again under its new end; the document of the earlier, smaller session stays — as
 * in Flink — and whether it was written depends on timing. The final document of every final
 * session does not.
 *
 * State: a key table maps each key to its open sessions (a small array per key, allocated
 * when a key first appears, not per record); a key whose last session is dropped is removed.
 * A binary heap of timers drives firing, with ONE live timer per session: a session names its
 * timer by an id (the timer's aux); when sessions merge, the merged one keeps the earliest of
 * their timers and the others become stale. A popped timer that is early for its session
 * (the session grew, or fired and now waits for its lateness) is pushed again at the
 * session's next deadline — lazily, so a record that extends a session pushes nothing. Stale
 * timers are skipped when popped, and filtered out once they outnumber the live ones. The
 * peak bytes of the key table and timers are added to the state_cache_peak metric.
 *
 * Spilling (key_spill.h, docs/state.md): the key table is a write-back cache over RocksDB
 * under the subtask's state_cache_bytes. What spills is a key's sessions — their bounds,
 * timer ids and accumulators, byte for byte — as one value under key group | key; a record
 * or a timer of a key that is not in memory reads it back, evicting first if the table would
 * otherwise grow past the budget for it (make_room). The timer heap keeps up to an eighth of
 * the budget in memory (its array, which never shrinks, up to about twice that); its later
 * timers overflow into a column family ordered by due time (timer_spill.h) and come back
 * before they are due. Spilling changes no result: a
 * key read back is exactly the key evicted, and timers fire in the order of their times. */
#include <stdlib.h>

#include "exec_live.h"
#include "keyed_db.h"
#include "keygroup.h"
#include "key_spill.h"
#include "keytable.h"
#include "ops.h"
#include "state_peak.h"
#include "timer_heap.h"
#include "timer_spill.h"
#include "window_agg.h"

typedef struct session {
    kp_time start, end; /* [start, end) */
    kp_time timer;      /* when its live timer is due (a watermark); KP_TIME_MAX + no id: none */
    int64_t id;         /* names its live timer (the timer's aux) */
    int fired;
    /* acc_size bytes follow, 8-byte aligned */
} session;

typedef struct key_sessions {
    int n, cap;
    uint8_t *items; /* n sessions of sess_size bytes */
    int used;       /* touched since the eviction clock last passed (key_spill.h) */
    int on_disk;    /* read back from RocksDB, where its older copy still is */
    int dirty;      /* touched since its state was last written (kp_key_spill_flush) */
} key_sessions;

typedef struct session_op {
    kp_op op;
    kp_op *late[KP_MAX_OUTPUTS];
    int nlate;
    kp_agg agg;
    kp_time gap, lateness, wm;
    size_t sess_size;
    kp_keytable keys; /* key → key_sessions */
    kp_timer_heap timers;
    size_t nsessions; /* = live timers; the rest of the heap is stale */
    int64_t next_id;
    kp_doc doc;
    uint8_t *tmp;       /* one session, for merging */
    size_t state_peak;  /* the most bytes the key table, the timers and a sweep's scratch held */
    size_t items_bytes; /* of all keys' session arrays (the table's bytes come on top) */
    size_t cache_limit; /* for the table and the arrays */
    kp_key_spill spill;
    kp_timer_spill tspill;                /* the timers beyond an eighth of the budget */
    long long state_reported, state_next; /* kp_live_state */
    kp_state_peak rocks;                  /* RocksDB's memory, sampled on the tick */
} session_op;

#define SESS(s, ks, i) ((session *)((ks)->items + (size_t)(i) * (s)->sess_size))
#define ACC(sess)      ((void *)((uint8_t *)(sess) + sizeof(session)))

/* The watermark at which session x needs attention: its firing, then its purge. */
static kp_time deadline(const session_op *s, const session *x)
{
    return x->fired ? kp_time_add_sat(x->end - 1, s->lateness) : x->end - 1;
}

/* Is a record with time ts and carried watermark cwm late: ts - 1 + lateness <= cwm? */
static int record_late(const session_op *s, kp_time ts, kp_time cwm)
{
    if (ts == KP_TIME_MIN) /* ts - 1 does not exist: ts + (lateness - 1) */
        return s->lateness == 0 || kp_past_lateness(ts, s->lateness - 1, cwm);
    return kp_past_lateness(ts - 1, s->lateness, cwm);
}

/* ---- timers ----------------------------------------------------------------------------- */

static int push_timer(session_op *s, session *x, uint64_t hash, kp_bytes key)
{
    x->timer = deadline(s, x);
    if (kp_timer_push(&s->timers, x->timer, x->id, hash, key) != 0)
        return kp_subtask_fail(s->op.st, "%s: out of memory for timers", s->op.node->name);
    return 0;
}

static session *find_session(session_op *s, key_sessions *ks, int64_t id, int *pos)
{
    for (int i = 0; ks && i < ks->n; i++)
        if (SESS(s, ks, i)->id == id) {
            *pos = i;
            return SESS(s, ks, i);
        }
    return NULL;
}

static bool timer_live(void *arg, const kp_timer_heap *h, const kp_timer *t)
{
    session_op *s = arg;
    kp_keyentry *e = kp_keytable_find(&s->keys, t->hash, kp_timer_key(h, t));
    if (!e && s->spill.ever)
        return true; /* its key may be in RocksDB: kept; skipped when it pops, if stale */
    int pos;
    session *x = e ? find_session(s, kp_keyentry_value(e), t->aux, &pos) : NULL;
    return x && x->timer == t->when;
}

/* Drops stale timers once they outnumber the live ones (amortised O(1) per timer). */
static void filter_stale(session_op *s)
{
    if (s->timers.n > 1024 && s->timers.n > 2 * s->nsessions)
        kp_timer_heap_filter(&s->timers, timer_live, s);
}

/* ---- sessions of one key ----------------------------------------------------------------- */

static int fire(session_op *s, kp_bytes key, session *x, kp_time cwm)
{
    kp_window w = {x->start, x->end};
    x->fired = 1;
    atomic_fetch_add_explicit(&s->op.st->metrics->windows_fired, 1, memory_order_relaxed);
    return kp_agg_emit(&s->agg, &s->op, &s->doc, &w, key, ACC(x), cwm);
}

static void remove_at(session_op *s, key_sessions *ks, int i)
{
    memmove(SESS(s, ks, i), SESS(s, ks, i + 1), (size_t)(ks->n - i - 1) * s->sess_size);
    ks->n--;
    s->nsessions--;
}

static int append(session_op *s, key_sessions *ks, const session *x)
{
    if (ks->n == ks->cap) {
        int cap = ks->cap ? ks->cap * 2 : 2;
        uint8_t *items = realloc(ks->items, (size_t)cap * s->sess_size);
        if (!items)
            return -1;
        s->items_bytes += (size_t)(cap - ks->cap) * s->sess_size;
        ks->items = items;
        ks->cap = cap;
    }
    memcpy(SESS(s, ks, ks->n), x, s->sess_size);
    ks->n++;
    s->nsessions++;
    return 0;
}

/* ---- the key table as a cache over RocksDB (key_spill.h) --------------------------------- */

static int ks_used(void *arg, kp_keyentry *e)
{
    key_sessions *ks = kp_keyentry_value(e);
    int used = ks->used;
    ks->used = 0;
    return used;
}

/* A key's spilled value: the number of sessions (int32), then the sessions as in memory. */
static int ks_save(void *arg, kp_keyentry *e, kp_buf *out)
{
    session_op *s = arg;
    key_sessions *ks = kp_keyentry_value(e);
    int32_t n = ks->n;
    if (kp_buf_append(out, &n, sizeof n) != 0 ||
        kp_buf_append(out, ks->items, (size_t)ks->n * s->sess_size) != 0)
        return -1;
    return 0;
}

static size_t ks_bytes(void *arg, kp_keyentry *e)
{
    session_op *s = arg;
    return (size_t)((key_sessions *)kp_keyentry_value(e))->cap * s->sess_size;
}

/* Frees a key's sessions; their count stays in nsessions (their timers stay live). */
static void ks_drop(void *arg, kp_keyentry *e)
{
    session_op *s = arg;
    s->items_bytes -= ks_bytes(arg, e);
    free(((key_sessions *)kp_keyentry_value(e))->items);
}

static int ks_dirty(void *arg, kp_keyentry *e)
{
    return ((key_sessions *)kp_keyentry_value(e))->dirty;
}

static void ks_flushed(void *arg, kp_keyentry *e)
{
    key_sessions *ks = kp_keyentry_value(e);
    ks->on_disk = 1;
    ks->dirty = 0;
}

static const kp_key_spill_ops ks_ops = {ks_used, ks_save, ks_bytes, ks_drop, ks_dirty, ks_flushed};

static int ks_restore(void *arg, kp_keyentry *e, kp_bytes in)
{
    session_op *s = arg;
    key_sessions *ks = kp_keyentry_value(e);
    int32_t n;
    if (kp_blob_read(&in, &n, sizeof n) != 0 || n <= 0 || in.len != (size_t)n * s->sess_size)
        return -1;
    if (!(ks->items = malloc(in.len)))
        return -1;
    memcpy(ks->items, in.ptr, in.len);
    ks->n = ks->cap = n;
    ks->on_disk = 1;
    s->items_bytes += in.len;
    return 0;
}

/* Records that the state held `bytes`, plus the scratch of the sweep that just ran (held next
 * to all of it; released after the sweep, key_spill.h). */
static void note_peak(session_op *s, size_t bytes, int swept)
{
    if (swept)
        bytes += kp_key_spill_scratch_release(&s->spill);
    if (bytes > s->state_peak)
        s->state_peak = bytes;
}

/* What the state holds: the key table, the session arrays and the timers in memory. */
static size_t state_bytes(const session_op *s)
{
    return kp_keytable_bytes(&s->keys) + s->items_bytes + kp_timer_heap_bytes(&s->timers);
}

/* Evicts cold keys once the table and the session arrays pass the budget, down to half of
 * it; records the peak of what the state held (timers and the sweep's scratch included). */
static int maybe_evict(session_op *s)
{
    if (kp_timer_spill_check(&s->tspill, &s->timers) != 0)
        return -1;
    size_t bytes = kp_keytable_bytes(&s->keys) + s->items_bytes, all = state_bytes(s);
    if (bytes <= s->cache_limit) {
        note_peak(s, all, 0);
        return 0;
    }
    int rc = kp_key_spill_evict(&s->spill, &s->keys, bytes - s->cache_limit / 2, &ks_ops, s);
    note_peak(s, all, 1);
    return rc;
}

/* Before `key` enters the table (kp_key_spill_entry with `create`): evicts first if the table
 * would grow for it past the budget (kp_key_spill_room), so the state does not hold a doubled
 * table until maybe_evict. The timers are left alone (`key` may point into the heap). */
static int make_room(session_op *s, uint64_t hash, kp_bytes key, int create)
{
    size_t need =
        kp_key_spill_room(&s->spill, &s->keys, hash, key, create, s->items_bytes, s->cache_limit);
    if (!need)
        return 0;
    size_t all = state_bytes(s);
    int rc = kp_key_spill_evict(&s->spill, &s->keys, need, &ks_ops, s);
    note_peak(s, all, 1);
    return rc;
}

/* The entry of `key` in *out (kp_key_spill_entry), marked used; made room for first. */
static int key_entry(session_op *s, uint64_t hash, kp_bytes key, int create, kp_keyentry **out)
{
    if (make_room(s, hash, key, create) != 0 ||
        kp_key_spill_entry(&s->spill, &s->keys, hash, key, create, ks_restore, s, out) != 0)
        return -1;
    if (*out)
        ((key_sessions *)kp_keyentry_value(*out))->used =
            ((key_sessions *)kp_keyentry_value(*out))->dirty = 1;
    return 0;
}

static int late_record(session_op *s, kp_event *ev)
{
    atomic_fetch_add_explicit(&s->op.st->metrics->late_records, 1, memory_order_relaxed);
    for (int i = 0; i < s->nlate; i++)
        if (s->late[i]->vt->record(s->late[i], ev) != 0)
            return -1;
    return 0;
}

static int session_record(kp_op *op, kp_event *ev)
{
    session_op *s = (session_op *)op;
    if (record_late(s, ev->ts, ev->cwm))
        return late_record(s, ev);
    uint64_t hash = kp_event_hash(ev);
    kp_keyentry *e;
    if (key_entry(s, hash, ev->key, 1, &e) != 0)
        return -1;
    key_sessions *ks = kp_keyentry_value(e);
    session *m = (session *)s->tmp;
    *m = (session){ev->ts, kp_time_add_sat(ev->ts, s->gap), KP_TIME_MAX, -1, 0};
    kp_agg_init(&s->agg, ACC(m));
    kp_agg_add(&s->agg, ACC(m), ev);
    /* merge every session that touches or overlaps; keep the earliest of their timers */
    for (int i = 0; i < ks->n;) {
        session *x = SESS(s, ks, i);
        if (x->start <= m->end && x->end >= m->start) {
            m->start = x->start < m->start ? x->start : m->start;
            m->end = x->end > m->end ? x->end : m->end;
            kp_agg_merge(&s->agg, ACC(m), ACC(x));
            if (m->id < 0 || x->timer < m->timer) {
                m->timer = x->timer;
                m->id = x->id;
            }
            remove_at(s, ks, i);
        } else {
            i++;
        }
    }
    /* m->fired stays 0: a session that fired and then grew has not fired at its new end yet
     * (Flink re-registers the trigger on merge). One already due fires right here; it is not
     * past its lateness: m->end - 1 + lateness >= ts - 1 + lateness > cwm >= W. */
    if (m->end - 1 <= s->wm && fire(s, ev->key, m, ev->cwm) != 0)
        return -1;
    int need_timer = m->id < 0 || m->timer > deadline(s, m);
    if (need_timer)
        m->id = s->next_id++; /* the kept timer (if any) is too late: a new one */
    if (append(s, ks, m) != 0)
        return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
    filter_stale(s);
    /* without a new timer, the one kept is due first; it is pushed again when it pops early */
    if (need_timer && push_timer(s, SESS(s, ks, ks->n - 1), hash, ev->key) != 0)
        return -1;
    return maybe_evict(s);
}

/* Handles one due timer (popped at watermark wm). Stale timers do nothing. */
static int on_timer(session_op *s, const kp_timer *t, kp_time wm)
{
    kp_bytes key = kp_timer_key(&s->timers, t);
    kp_keyentry *e;
    if (key_entry(s, t->hash, key, 0, &e) != 0)
        return -1;
    key_sessions *ks = e ? kp_keyentry_value(e) : NULL;
    int i;
    session *x = find_session(s, ks, t->aux, &i);
    if (!x || x->timer != t->when)
        return 0; /* stale: its session merged into another */
    if (!x->fired && x->end - 1 <= wm && fire(s, key, x, KP_EMIT_FIRED) != 0)
        return -1;
    if (deadline(s, x) > wm) /* early: the session grew, or now waits for its lateness */
        return push_timer(s, x, t->hash, key);
    remove_at(s, ks, i);
    if (ks->n == 0) { /* the key holds nothing any more: drop it */
        int on_disk = ks->on_disk;
        s->items_bytes -= (size_t)ks->cap * s->sess_size;
        free(ks->items);
        kp_keytable_remove(&s->keys, e);
        if (on_disk)
            return kp_key_spill_forget(&s->spill, t->hash, key);
    }
    return 0;
}

static int session_watermark(kp_op *op, kp_time wm)
{
    session_op *s = (session_op *)op;
    if (wm <= s->wm)
        return 0;
    s->wm = wm;
    kp_timer t;
    int due;
    while ((due = kp_timer_spill_pop_due(&s->tspill, &s->timers, wm, &t)) == 1)
        if (on_timer(s, &t, wm) != 0 || maybe_evict(s) != 0)
            return -1;
    if (due < 0)
        return -1;
    return kp_op_emit_watermark(op, wm);
}

static int session_finish(kp_op *op)
{
    session_op *s = (session_op *)op;
    if (session_watermark(op, KP_TIME_MAX) != 0)
        return -1;
    atomic_fetch_add_explicit(&s->op.st->metrics->state_cache_peak, (long long)s->state_peak,
                              memory_order_relaxed);
    kp_state_peak_report(&s->rocks, s->spill.state, s->op.st->metrics);
    for (int i = 0; i < s->nlate; i++)
        if (s->late[i]->vt->finish(s->late[i]) != 0)
            return -1;
    return kp_op_emit_finish(op);
}

static int session_idle(kp_op *op)
{
    session_op *s = (session_op *)op;
    for (int i = 0; i < s->nlate; i++)
        if (s->late[i]->vt->idle(s->late[i]) != 0)
            return -1;
    return kp_op_emit_idle(op);
}

static void session_destroy(kp_op *op)
{
    session_op *s = (session_op *)op;
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&s->keys, &i)))
        free(((key_sessions *)kp_keyentry_value(e))->items);
    kp_keytable_free(&s->keys);
    kp_timer_spill_finish(&s->tspill);
    kp_key_spill_finish(&s->spill);
    kp_timer_heap_free(&s->timers);
    free(s->tmp);
    kp_doc_free(&s->doc);
    free(s);
}

/* ---- checkpoints (keyed_db.h, docs/state.md "Checkpoints and restore") ------------------ */

/* The operator's state outside RocksDB is a kp_keyed_blob: its watermark and next timer id.
 * Timers are not in the checkpoint: every session names its one live timer (its `timer` and
 * `id`), so a restore rebuilds the heap from the sessions; stale timers are not worth keeping. */
static int session_barrier(kp_op *op, struct kp_snapshot *snap)
{
    session_op *s = (session_op *)op;
    kp_key_spill *sp = &s->spill;
    if (kp_key_spill_flush(sp, &s->keys, &ks_ops, s) != 0)
        return -1;
    note_peak(s, state_bytes(s), 1);
    if (sp->state &&
        kp_keyed_db_snapshot(op->st, op->node, sp->state, sp->kg_lo, sp->kg_hi, snap) != 0)
        return -1;
    kp_keyed_blob b = {.wm = s->wm, .next_id = s->next_id};
    if (kp_keyed_blob_write(op->st, op->node, sp->kg_lo, sp->kg_hi, snap, b) != 0)
        return -1;
    return kp_keyed_pass_barrier(op, s->late, s->nlate, snap);
}

typedef struct session_acc {
    session_op *s;
    size_t keys;
} session_acc;

/* One restored key: a live timer for each of its sessions. */
static int restore_key_timers(void *arg, uint64_t hash, kp_bytes key, kp_bytes value)
{
    session_acc *a = arg;
    session_op *s = a->s;
    int32_t n;
    if (kp_blob_read(&value, &n, sizeof n) != 0 || n <= 0 || value.len != (size_t)n * s->sess_size)
        return kp_subtask_fail(s->op.st, "%s: restore: a malformed session state",
                               s->op.node->name);
    for (int32_t i = 0; i < n; i++) {
        session x;
        memcpy(&x, value.ptr + (size_t)i * s->sess_size, sizeof x);
        if (kp_timer_push(&s->timers, x.timer, x.id, hash, key) != 0)
            return kp_subtask_fail(s->op.st, "%s: out of memory for timers", s->op.node->name);
        s->nsessions++;
    }
    if (++a->keys % 4096 == 0 && kp_timer_spill_check(&s->tspill, &s->timers) != 0)
        return -1;
    return 0;
}

/* Restores the operator from st->restore: its database (the keys stay on disk until used),
 * the live timers of its sessions, its watermark and timer ids. */
static int restore_sessions(session_op *s)
{
    kp_op *op = &s->op;
    kp_key_spill *sp = &s->spill;
    kp_keyed_blob b;
    if (kp_key_spill_open(sp) != 0 || kp_timer_spill_reset(&s->tspill) != 0 ||
        kp_keyed_blob_read(op->st, op->node, sp->kg_lo, sp->kg_hi, sp->ever, &b) != 0)
        return -1;
    s->wm = b.wm;
    s->next_id = b.next_id;
    session_acc a = {s, 0};
    if (kp_key_spill_scan(sp, sp->cf, restore_key_timers, &a) != 0)
        return -1;
    return kp_timer_spill_check(&s->tspill, &s->timers);
}

static int session_complete(kp_op *op, int64_t id)
{
    session_op *s = (session_op *)op;
    return kp_keyed_pass_complete(op, s->late, s->nlate, id);
}

/* The clock: the state size for the live counters, then the outputs' ticks. */
static int session_tick(kp_op *op, kp_time now)
{
    session_op *s = (session_op *)op;
    kp_live_state(op->st->live, &s->state_reported, &s->state_next, kp_mono_ms(),
                  (long long)(state_bytes(s) + kp_state_disk_bytes(s->spill.state)));
    kp_state_peak_sample(&s->rocks, s->spill.state, kp_mono_ms());
    return kp_op_window_tick(op, now);
}

static const kp_op_vt session_vt = {.record = session_record,
                                    .watermark = session_watermark,
                                    .idle = session_idle,
                                    .finish = session_finish,
                                    .destroy = session_destroy,
                                    .tick = session_tick,
                                    .barrier = session_barrier,
                                    .checkpoint_complete = session_complete};

kp_op *kp_op_session_new(kp_subtask *st, const kp_node *n);
kp_op *kp_op_session_new(kp_subtask *st, const kp_node *n)
{
    session_op *s = calloc(1, sizeof *s);
    if (!s) {
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    s->op = (kp_op){.vt = &session_vt, .node = n, .st = st};
    kp_agg_setup(&s->agg, n->u.window.aggregate);
    s->gap = n->u.window.spec.gap;
    s->lateness = n->u.window.opts.allowed_lateness;
    s->wm = KP_TIME_MIN;
    s->sess_size = (sizeof(session) + s->agg.acc_size + 7) & ~(size_t)7;
    kp_keytable_init(&s->keys, sizeof(key_sessions));
    s->cache_limit = st->state_cache_bytes ? st->state_cache_bytes : 256u << 20;
    kp_key_spill_init(&s->spill, st, n, "sessions");
    kp_timer_spill_init(&s->tspill, &s->spill, "session-timers", s->cache_limit / 8);
    s->tmp = calloc(1, s->sess_size);
    if (!s->tmp) {
        session_destroy(&s->op);
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    if (kp_keyed_restoring(st, n) && restore_sessions(s) != 0) {
        session_destroy(&s->op);
        return NULL;
    }
    return &s->op;
}
