/* Keyed process functions: user code with per-key value state and timers.
 *
 * on_event runs for each record with a context scoped to the record's key; it can read and
 * write the key's value state (value_size bytes), list state and map state (keyed_state.c),
 * register event-time timers (fired when the
 * watermark reaches them) and processing-time timers (fired when the wall clock does), and
 * emit documents. on_timer runs with the same context for the timer's key. A timer
 * registered twice for the same key, time and kind fires once, as in Flink.
 *
 * State is in memory (keytable.c); timers are a binary heap per kind plus a set that
 * de-duplicates them. Processing-time timers are checked on every record, watermark and
 * subtask tick (KP_TICK_MS), so they fire at most about 100 ms late even on an idle input.
 * Pending processing-time timers are not fired at the end of bounded input. */
#include <stdlib.h>
#include <time.h>

#include "keygroup.h"
#include "keyed_state.h"
#include "keytable.h"
#include "timer_heap.h"
#include "ops.h"

struct kp_ctx {
    struct process_op *p;
    kp_keyentry *e;
    kp_bytes key;
    kp_time ts; /* time of the record or timer being handled */
};

typedef struct process_op {
    kp_op op;
    const kp_process_opts *o;
    kp_keytable values;     /* key → {exists, value} */
    kp_keytable timerset;   /* (kind, when, key) registered and not yet fired */
    kp_timer_heap heaps[2]; /* [1] event time, [0] processing time */
    kp_time wm;
    kp_doc doc;
    kp_buf tkey;
    int failed;
} process_op;

typedef struct value_hdr {
    uint64_t exists;
    kp_keyed_state *coll; /* list and map state, created on first use */
} value_hdr;

/* The de-duplication key of a timer: kind byte, time, key bytes. */
static kp_bytes timer_id(process_op *p, bool event_time, kp_time when, kp_bytes key)
{
    p->tkey.len = 0;
    char kind = event_time ? 'e' : 'p';
    if (kp_buf_append(&p->tkey, &kind, 1) != 0 ||
        kp_buf_append(&p->tkey, &when, sizeof when) != 0 ||
        kp_buf_append(&p->tkey, key.ptr, key.len) != 0)
        return (kp_bytes){NULL, 0};
    return (kp_bytes){p->tkey.ptr, p->tkey.len};
}

/* ---- the context API ------------------------------------------------------------------- */

static kp_str ctx_key(kp_ctx *c)
{
    return c->key;
}

static void *ctx_value(kp_ctx *c, bool *exists)
{
    value_hdr *h = kp_keyentry_value(c->e);
    if (exists)
        *exists = h->exists != 0;
    h->exists = 1;
    return h + 1;
}

static void ctx_value_clear(kp_ctx *c)
{
    value_hdr *h = kp_keyentry_value(c->e);
    h->exists = 0;
    memset(h + 1, 0, c->p->o->value_size);
}

static void ctx_timer(kp_ctx *c, kp_time when, bool event_time)
{
    process_op *p = c->p;
    kp_bytes id = timer_id(p, event_time, when, c->key);
    int created;
    kp_keyentry *t =
        id.ptr ? kp_keytable_upsert(&p->timerset, kp_hash64(id.ptr, id.len), id, &created) : NULL;
    if (!t) {
        p->failed = kp_subtask_fail(p->op.st, "%s: out of memory for timers", p->op.node->name);
        return;
    }
    if (!created && *(uint64_t *)kp_keyentry_value(t))
        return; /* already pending */
    *(uint64_t *)kp_keyentry_value(t) = 1;
    if (kp_timer_push(&p->heaps[event_time], when, 0, c->e->hash, c->key) != 0)
        p->failed = kp_subtask_fail(p->op.st, "%s: out of memory for timers", p->op.node->name);
}

static kp_time ctx_watermark(kp_ctx *c)
{
    return c->p->wm;
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
    if (kp_op_emit_doc(&p->op, doc, c->ts, p->wm) != 0)
        p->failed = -1;
}

/* The current key's list/map state, created on first use; NULL (and the job failed) when out
 * of memory. */
static kp_keyed_state *coll(kp_ctx *c, int create)
{
    value_hdr *h = kp_keyentry_value(c->e);
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

/* Fires every timer of one kind due at `upto`. */
static int fire_due(process_op *p, bool event_time, kp_time upto)
{
    kp_timer_heap *h = &p->heaps[event_time];
    while (h->n && h->a[0].when <= upto) {
        kp_timer t = kp_timer_pop(h);
        kp_bytes key = kp_timer_key(h, &t);
        kp_bytes id = timer_id(p, event_time, t.when, key);
        kp_keyentry *te =
            id.ptr ? kp_keytable_find(&p->timerset, kp_hash64(id.ptr, id.len), id) : NULL;
        if (te)
            *(uint64_t *)kp_keyentry_value(te) = 0;
        kp_keyentry *e = kp_keytable_find(&p->values, t.hash, key);
        if (!e || !p->o->on_timer)
            continue;
        kp_ctx c = {p, e, kp_keytable_key(&p->values, e), t.when};
        if (check(p, p->o->on_timer(&c, t.when, event_time), "on_timer") != 0)
            return -1;
    }
    if (!p->heaps[0].n && !p->heaps[1].n)
        kp_keytable_clear(&p->timerset); /* nothing pending: reclaim the set */
    return 0;
}

static int process_record(kp_op *op, kp_event *ev)
{
    process_op *p = (process_op *)op;
    int created;
    kp_keyentry *e =
        kp_keytable_upsert(&p->values, kp_hash64(ev->key.ptr, ev->key.len), ev->key, &created);
    if (!e)
        return kp_subtask_fail(op->st, "%s: out of memory for state", op->node->name);
    kp_ctx c = {p, e, kp_keytable_key(&p->values, e), ev->ts};
    if (check(p, p->o->on_event(&c, ev), "on_event") != 0)
        return -1;
    return p->heaps[0].n ? fire_due(p, false, kp_wall_ms()) : 0;
}

static int process_watermark(kp_op *op, kp_time wm)
{
    process_op *p = (process_op *)op;
    if (wm <= p->wm)
        return 0;
    p->wm = wm;
    if (fire_due(p, true, wm) != 0 || fire_due(p, false, kp_wall_ms()) != 0)
        return -1;
    return kp_op_emit_watermark(op, wm);
}

static int process_finish(kp_op *op)
{
    if (process_watermark(op, KP_TIME_MAX) != 0)
        return -1;
    return kp_op_emit_finish(op);
}

static void process_destroy(kp_op *op)
{
    process_op *p = (process_op *)op;
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->values, &i)))
        kp_keyed_state_free(((value_hdr *)kp_keyentry_value(e))->coll);
    kp_keytable_free(&p->values);
    kp_keytable_free(&p->timerset);
    kp_timer_heap_free(&p->heaps[0]);
    kp_timer_heap_free(&p->heaps[1]);
    kp_doc_free(&p->doc);
    kp_buf_free(&p->tkey);
    free(p);
}

/* Processing-time timers fire on the clock, even when no input arrives. */
static int process_tick(kp_op *op, kp_time now)
{
    process_op *p = (process_op *)op;
    if (p->heaps[0].n && fire_due(p, false, now) != 0)
        return -1;
    for (int i = 0; i < op->nout; i++)
        if (kp_op_tick(op->out[i], now) != 0)
            return -1;
    return 0;
}

static const kp_op_vt process_vt = {process_record, process_watermark, kp_op_pass_idle,
                                    process_finish, process_destroy,   process_tick};

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
    kp_keytable_init(&p->timerset, sizeof(uint64_t));
    return &p->op;
}
