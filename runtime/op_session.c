/* Event-time session windows.
 *
 * Each record opens the window [ts, ts + gap); windows of one key that touch or overlap are
 * merged (accumulators merged with the aggregate's merge), as in Flink's MergingWindowSet.
 * A session fires when the watermark passes its end - 1 and is dropped once it also passes
 * end - 1 + allowed lateness; a record merged into a session that already fired fires it
 * again. A record whose merged session would already be past its lateness is late: counted
 * and sent to the late side output.
 *
 * State: a key table maps each key to its open sessions (a small array per key, allocated
 * when a key first appears, not per record), and a binary heap of (time, key, session end)
 * timers drives firing. Stale timers (the session merged or fired meanwhile) are skipped when
 * popped. Sessions are kept in memory only; they are not spilled to RocksDB (see
 * docs/architecture.md). */
#include <stdlib.h>

#include "keygroup.h"
#include "keytable.h"
#include "timer_heap.h"
#include "ops.h"
#include "window_agg.h"

typedef struct session {
    kp_time start, end; /* [start, end) */
    int fired;
    /* acc_size bytes follow, 8-byte aligned */
} session;

typedef struct key_sessions {
    int n, cap;
    uint8_t *items; /* n sessions of sess_size bytes */
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
    kp_doc doc;
    uint8_t *tmp; /* one session, for merging */
} session_op;

#define SESS(s, ks, i) ((session *)((ks)->items + (size_t)(i) * (s)->sess_size))
#define ACC(sess)      ((void *)((uint8_t *)(sess) + sizeof(session)))

/* ---- timer heap ------------------------------------------------------------------------ */

static int arm(session_op *s, kp_keyentry *e, kp_time when, kp_time end)
{
    if (kp_timer_push(&s->timers, when, end, e->hash, kp_keytable_key(&s->keys, e)) != 0)
        return kp_subtask_fail(s->op.st, "%s: out of memory for timers", s->op.node->name);
    return 0;
}

/* ---- sessions of one key ----------------------------------------------------------------- */

static int fire(session_op *s, kp_bytes key, session *x)
{
    kp_window w = {x->start, x->end};
    x->fired = 1;
    atomic_fetch_add_explicit(&s->op.st->metrics->windows_fired, 1, memory_order_relaxed);
    return kp_agg_emit(&s->agg, &s->op, &s->doc, &w, key, ACC(x), s->wm);
}

static void remove_at(session_op *s, key_sessions *ks, int i)
{
    memmove(SESS(s, ks, i), SESS(s, ks, i + 1), (size_t)(ks->n - i - 1) * s->sess_size);
    ks->n--;
}

static int append(session_op *s, key_sessions *ks, const session *x)
{
    if (ks->n == ks->cap) {
        int cap = ks->cap ? ks->cap * 2 : 2;
        uint8_t *items = realloc(ks->items, (size_t)cap * s->sess_size);
        if (!items)
            return -1;
        ks->items = items;
        ks->cap = cap;
    }
    memcpy(SESS(s, ks, ks->n), x, s->sess_size);
    ks->n++;
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
    kp_time start = ev->ts, end = ev->ts + s->gap;
    uint64_t hash = kp_hash64(ev->key.ptr, ev->key.len);
    kp_keyentry *e = kp_keytable_find(&s->keys, hash, ev->key);
    key_sessions *ks = e ? kp_keyentry_value(e) : NULL;
    /* the merged window first, to decide lateness before touching state */
    for (int i = 0; ks && i < ks->n; i++) {
        session *x = SESS(s, ks, i);
        if (x->start <= end && x->end >= start) {
            start = x->start < start ? x->start : start;
            end = x->end > end ? x->end : end;
        }
    }
    if (end - 1 + s->lateness <= s->wm)
        return late_record(s, ev);
    if (!e) {
        int created;
        e = kp_keytable_upsert(&s->keys, hash, ev->key, &created);
        if (!e)
            return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
        ks = kp_keyentry_value(e);
    }
    session *m = (session *)s->tmp;
    *m = (session){ev->ts, ev->ts + s->gap, 0};
    kp_agg_init(&s->agg, ACC(m));
    kp_agg_add(&s->agg, ACC(m), ev);
    for (int i = 0; i < ks->n;) {
        session *x = SESS(s, ks, i);
        if (x->start <= m->end && x->end >= m->start) {
            m->start = x->start < m->start ? x->start : m->start;
            m->end = x->end > m->end ? x->end : m->end;
            kp_agg_merge(&s->agg, ACC(m), ACC(x));
            remove_at(s, ks, i);
        } else {
            i++;
        }
    }
    if (append(s, ks, m) != 0)
        return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
    /* m->fired stays 0: a session that fired and then grew past the watermark has not fired
     * at its new end yet; its timer at the new end fires it (Flink re-registers the trigger on
     * merge). A merged session already due fires right here. */
    session *x = SESS(s, ks, ks->n - 1);
    if (x->end - 1 <= s->wm) /* within allowed lateness: fire again now */
        return fire(s, ev->key, x) != 0 ? -1 : arm(s, e, x->end + s->lateness, x->end);
    return arm(s, e, x->end, x->end);
}

/* Handles one due timer; stale ones (merged or removed sessions) do nothing. */
static int on_timer(session_op *s, const kp_timer *t)
{
    kp_bytes key = kp_timer_key(&s->timers, t);
    kp_keyentry *e = kp_keytable_find(&s->keys, t->hash, key);
    key_sessions *ks = e ? kp_keyentry_value(e) : NULL;
    for (int i = 0; ks && i < ks->n; i++) {
        session *x = SESS(s, ks, i);
        if (x->end != t->aux)
            continue;
        if (!x->fired && fire(s, key, x) != 0)
            return -1;
        if (x->end - 1 + s->lateness <= s->wm)
            remove_at(s, ks, i);
        else if (t->when != x->end + s->lateness)
            return arm(s, e, x->end + s->lateness, x->end);
        return 0;
    }
    return 0;
}

static int session_watermark(kp_op *op, kp_time wm)
{
    session_op *s = (session_op *)op;
    if (wm <= s->wm)
        return 0;
    s->wm = wm;
    while (s->timers.n && s->timers.a[0].when - 1 <= wm) {
        kp_timer t = kp_timer_pop(&s->timers);
        if (on_timer(s, &t) != 0)
            return -1;
    }
    return kp_op_emit_watermark(op, wm);
}

static int session_finish(kp_op *op)
{
    session_op *s = (session_op *)op;
    if (session_watermark(op, KP_TIME_MAX) != 0)
        return -1;
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
    kp_timer_heap_free(&s->timers);
    free(s->tmp);
    kp_doc_free(&s->doc);
    free(s);
}

static const kp_op_vt session_vt = {session_record, session_watermark, session_idle,
                                    session_finish, session_destroy,   kp_op_window_tick};

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
    s->tmp = calloc(1, s->sess_size);
    if (!s->tmp) {
        session_destroy(&s->op);
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    return &s->op;
}
