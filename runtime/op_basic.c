/* Stateless chained operators: map, filter, flat_map, key_by and the sink end of a chain,
 * plus the pass-through helpers every operator uses for watermarks and the end of input. */
#include <stdlib.h>

#include "ops.h"
#include "exec_ckpt.h"
#include "exec_live.h"

int kp_op_pass_watermark(kp_op *op, kp_time wm)
{
    return kp_op_emit_watermark(op, wm);
}

int kp_op_emit_idle(kp_op *op)
{
    for (int i = 0; i < op->nout; i++)
        if (op->out[i]->vt->idle(op->out[i]) != 0)
            return -1;
    return 0;
}

int kp_op_tick(kp_op *op, kp_time now)
{
    if (op->vt->tick)
        return op->vt->tick(op, now);
    for (int i = 0; i < op->nout; i++)
        if (kp_op_tick(op->out[i], now) != 0)
            return -1;
    return 0;
}

int kp_op_pass_idle(kp_op *op)
{
    return kp_op_emit_idle(op);
}

int kp_op_emit_finish(kp_op *op)
{
    for (int i = 0; i < op->nout; i++)
        if (op->out[i]->vt->finish(op->out[i]) != 0)
            return -1;
    return 0;
}

int kp_op_pass_finish(kp_op *op)
{
    return kp_op_emit_finish(op);
}

int kp_op_emit_doc(kp_op *op, kp_doc *doc, kp_time ts, kp_time cwm)
{
    kp_event ev = {
        .key = {doc->id.ptr ? doc->id.ptr : "", doc->id.len},
        .value = {doc->json.ptr, doc->json.len},
        .ts = ts,
        .cwm = cwm,
    };
    return kp_op_emit(op, &ev);
}

/* ---- map / filter / flat_map / key_by ------------------------------------------------- */

typedef struct basic_op {
    kp_op op;
    kp_buf key_buf, val_buf; /* scratch for events this operator rewrites */
    kp_event out;            /* flat_map's output event */
} basic_op;

static int check_rc(kp_op *op, kp_rc rc, const kp_event *ev)
{
    if (rc == KP_OK || rc == KP_SKIP)
        return 0;
    return kp_subtask_fail(op->st, "%s returned %s for a record with key '%.*s' at time %lld",
                           op->node->name, rc == KP_BAD_INPUT ? "KP_BAD_INPUT" : "KP_ERROR",
                           (int)(ev->key.len > 64 ? 64 : ev->key.len), ev->key.ptr,
                           (long long)ev->ts);
}

static int map_record(kp_op *op, kp_event *ev)
{
    basic_op *b = (basic_op *)op;
    kp_event e = *ev;
    e.key_buf = &b->key_buf;
    e.val_buf = &b->val_buf;
    kp_rc rc = op->node->u.map.fn(&e);
    if (e.bad)
        return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
    if (rc != KP_OK) {
        if (rc == KP_SKIP)
            atomic_fetch_add_explicit(&op->st->metrics->skipped, 1, memory_order_relaxed);
        return check_rc(op, rc, ev);
    }
    return kp_op_emit(op, &e);
}

static int filter_record(kp_op *op, kp_event *ev)
{
    if (op->node->u.filter.fn(ev))
        return kp_op_emit(op, ev);
    atomic_fetch_add_explicit(&op->st->metrics->skipped, 1, memory_order_relaxed);
    return 0;
}

struct kp_collector {
    basic_op *op;
    int failed;
};

static void collect(kp_collector *c, kp_bytes key, kp_bytes value, kp_time t)
{
    if (c->failed)
        return;
    basic_op *b = c->op;
    b->out.key_buf = &b->key_buf;
    b->out.val_buf = &b->val_buf;
    b->out.bad = 0;
    kp_event_copy_key(&b->out, key);
    kp_event_copy_value(&b->out, value);
    b->out.ts = t;
    if (b->out.bad)
        c->failed = kp_subtask_fail(b->op.st, "%s: out of memory", b->op.node->name);
    else if (kp_op_emit(&b->op, &b->out) != 0)
        c->failed = -1;
}

void kp_collect_api_fill(kp_api *api);
void kp_collect_api_fill(kp_api *api)
{
    api->collect = collect;
}

static int flat_map_record(kp_op *op, kp_event *ev)
{
    kp_collector c = {(basic_op *)op, 0};
    ((basic_op *)op)->out.cwm = ev->cwm;
    kp_rc rc = op->node->u.flat_map.fn(ev, &c);
    if (c.failed)
        return -1;
    return check_rc(op, rc, ev);
}

static int key_by_record(kp_op *op, kp_event *ev)
{
    if (!op->node->u.key_by.fn)
        return kp_op_emit(op, ev);
    basic_op *b = (basic_op *)op;
    kp_event e = *ev;
    e.key_buf = &b->key_buf;
    kp_event_copy_key(&e, op->node->u.key_by.fn(ev));
    if (e.bad)
        return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
    return kp_op_emit(op, &e);
}

static void basic_destroy(kp_op *op)
{
    basic_op *b = (basic_op *)op;
    kp_buf_free(&b->key_buf);
    kp_buf_free(&b->val_buf);
    free(b);
}

#define BASIC_VT(fn)                                                                               \
    {                                                                                              \
        .record = fn, .watermark = kp_op_pass_watermark, .idle = kp_op_pass_idle,                  \
        .finish = kp_op_pass_finish, .destroy = basic_destroy                                      \
    }
static const kp_op_vt map_vt = BASIC_VT(map_record);
static const kp_op_vt filter_vt = BASIC_VT(filter_record);
static const kp_op_vt flat_map_vt = BASIC_VT(flat_map_record);
static const kp_op_vt key_by_vt = BASIC_VT(key_by_record);

kp_op *kp_op_basic_new(kp_subtask *st, const kp_node *n)
{
    basic_op *b = calloc(1, sizeof *b);
    if (!b) {
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    switch (n->kind) {
    case KP_NODE_MAP:
        b->op.vt = &map_vt;
        break;
    case KP_NODE_FILTER:
        b->op.vt = &filter_vt;
        break;
    case KP_NODE_FLAT_MAP:
        b->op.vt = &flat_map_vt;
        break;
    default: /* key_by, and the late side output, which only forwards */
        b->op.vt = &key_by_vt;
        break;
    }
    b->op.node = n;
    b->op.st = st;
    return &b->op;
}

/* ---- sink ---------------------------------------------------------------------------- */

typedef struct sink_op {
    kp_op op;
    kp_sink_writer *w;
    long long written; /* not yet added to the job's records_out (added on tick and finish) */
    long long bytes;   /* the same in key + value bytes, for the live counters */
} sink_op;

static void sink_count(sink_op *s)
{
    atomic_fetch_add_explicit(&s->op.st->metrics->records_out, s->written, memory_order_relaxed);
    kp_subtask_live *l = s->op.st->live;
    if (l) { /* exec_live.h: on tick and finish */
        kp_live_add(&l->records_out, s->written);
        kp_live_add(&l->bytes_out, s->bytes);
        if (s->w->stats && kp_live_json_due(&l->sink)) {
            char buf[KP_LIVE_JSON_MAX];
            kp_live_json_put(&l->sink, buf, s->w->stats(s->w, buf, sizeof buf));
        }
    }
    s->written = 0;
    s->bytes = 0;
}

static int sink_record(kp_op *op, kp_event *ev)
{
    sink_op *s = (sink_op *)op;
    char err[256];
    if (s->w->write(s->w, ev->key, ev->value, ev->ts, err, sizeof err) != 0)
        return kp_subtask_fail(op->st, "%s: %s", op->node->name, err);
    s->written++;
    s->bytes += (long long)(ev->key.len + ev->value.len);
    return 0;
}

static int sink_ignore_wm(kp_op *op, kp_time wm)
{
    return 0;
}

static int sink_ignore(kp_op *op)
{
    return 0;
}

static int sink_finish(kp_op *op)
{
    sink_op *s = (sink_op *)op;
    char err[256];
    sink_count(s);
    if (s->w->flush(s->w, err, sizeof err) != 0)
        return kp_subtask_fail(op->st, "%s: %s", op->node->name, err);
    kp_print_connector_stats(op->st, op->node->name, s->w->stats ? s->w : NULL, NULL);
    return 0;
}

static void sink_destroy(kp_op *op)
{
    sink_op *s = (sink_op *)op;
    if (s->w)
        s->w->close(s->w);
    free(s);
}

/* Lets the writer send what is due by the clock (a partial bulk past its flush interval). */
static int sink_tick(kp_op *op, kp_time now)
{
    sink_op *s = (sink_op *)op;
    char err[256];
    sink_count(s);
    if (s->w->tick && s->w->tick(s->w, err, sizeof err) != 0)
        return kp_subtask_fail(op->st, "%s: %s", op->node->name, err);
    return 0;
}

/* A transactional writer's state goes into the snapshot as blob "sink" of the sink's uid. */
typedef struct sink_put {
    struct kp_snapshot *snap;
    const char *uid;
} sink_put;

static int sink_put_blob(void *ctx, const void *data, size_t len)
{
    sink_put *p = ctx;
    return kp_snapshot_blob(p->snap, p->uid, "sink", -1, -1, data, len);
}

/* Checkpoint barrier: everything written before it becomes durable (prepare, or flush) before
 * the subtask acknowledges; a writer that cannot declines the checkpoint, the run goes on. */
static int sink_barrier(kp_op *op, struct kp_snapshot *snap)
{
    sink_op *s = (sink_op *)op;
    char err[256];
    int64_t id = kp_snapshot_id(snap);
    sink_count(s);
    int rc = s->w->prepare ? s->w->prepare(s->w, id, err, sizeof err)
                           : s->w->flush(s->w, err, sizeof err);
    if (rc == 0 && s->w->snapshot) {
        sink_put put = {snap, op->node->uid};
        rc = s->w->snapshot(s->w, id, sink_put_blob, &put, err, sizeof err);
    }
    if (rc != 0)
        kp_ckpt_decline(op->st, id, "%s: %s", op->node->name, err);
    return 0;
}

/* Checkpoint `id` completed: a transactional writer commits what it prepared. */
static int sink_checkpoint_complete(kp_op *op, int64_t id)
{
    sink_op *s = (sink_op *)op;
    char err[256];
    if (s->w->commit && s->w->commit(s->w, id, err, sizeof err) != 0)
        return kp_subtask_fail(op->st, "%s: committing checkpoint %lld: %s", op->node->name,
                               (long long)id, err);
    return 0;
}

static const kp_op_vt sink_vt = {.record = sink_record,
                                 .watermark = sink_ignore_wm,
                                 .idle = sink_ignore,
                                 .finish = sink_finish,
                                 .destroy = sink_destroy,
                                 .tick = sink_tick,
                                 .barrier = sink_barrier,
                                 .checkpoint_complete = sink_checkpoint_complete};

kp_op *kp_op_sink_new(kp_subtask *st, const kp_node *n, kp_sink_writer *w)
{
    sink_op *s = calloc(1, sizeof *s);
    if (!s) {
        w->close(w);
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    s->op = (kp_op){.vt = &sink_vt, .node = n, .st = st};
    s->w = w;
    return &s->op;
}
