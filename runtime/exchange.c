/* The exchange writer: the last operator of a chain whose output crosses to another task.
 * It batches records per downstream subtask (by key group, round robin or one-to-one) and
 * sends each batch when it is full, on the subtask's clock tick, or before a control message.
 *
 * Watermarks do not cut batches: a data batch carries, in its header, the producer's
 * watermark at the moment it is sent, which the consumer applies after the batch's records
 * (every record also carries its own partition's watermark, batch.h). A channel that has no
 * data pending gets a standalone watermark message on the next tick if its consumer has not
 * seen the current watermark — so a busy stream sends full batches and a quiet one still
 * advances. Idleness, checkpoint barriers and the end of input flush the pending records first,
 * so order per channel is preserved. A barrier is a batch of its own on every channel, its
 * `watermark` the checkpoint id. */
#include <stdlib.h>

#include "keygroup.h"
#include "exec_live.h"
#include "ops.h"
#include "checkpoint.h"

typedef struct exchange_op {
    kp_op op;
    kp_partitioning mode;
    int nchans;
    int rr;
    int max_parallelism;
    uint64_t kg_mask; /* max_parallelism - 1 when it is a power of two (hash & mask), else 0 */
    int *owner;       /* hash: the channel of each key group, so no division per record */
    kp_time wm;       /* the latest watermark from upstream */
    kp_channel **chans;
    kp_batch **cur;   /* the batch being filled per channel, or NULL */
    kp_time *sent_wm; /* per channel: the watermark its consumer has been sent */
    long long batches, records;
} exchange_op;

/* Fails the subtask unless the inbox was aborted (then the job is failing anyway). */
static kp_batch *acquire(exchange_op *x, int i)
{
    int oom = 0;
    kp_batch *b = kp_channel_acquire(x->chans[i], &oom);
    if (!b && oom)
        kp_subtask_fail(x->op.st, "%s: out of memory for a record batch", x->op.node->name);
    return b;
}

static void send(exchange_op *x, int i, kp_batch *b)
{
    b->watermark = x->wm;
    x->sent_wm[i] = x->wm;
    if (b->kind == KP_MSG_DATA) {
        x->batches++;
        x->records += b->n;
        if (x->op.st->live) { /* exec_live.h: once per batch */
            kp_live_add(&x->op.st->live->records_out, b->n);
            kp_live_add(&x->op.st->live->bytes_out, b->used);
        }
    }
    kp_channel_send(x->chans[i], b);
}

static void flush_one(exchange_op *x, int i)
{
    if (x->cur[i]) {
        send(x, i, x->cur[i]);
        x->cur[i] = NULL;
    }
}

static int target_of(exchange_op *x, kp_event *ev)
{
    switch (x->mode) {
    case KP_PART_HASH: {
        uint64_t h = kp_event_hash(ev);
        return x->owner[x->kg_mask ? (int)(h & x->kg_mask) : kp_key_group(h, x->max_parallelism)];
    }
    case KP_PART_REBALANCE:
        x->rr = x->rr + 1 == x->nchans ? 0 : x->rr + 1;
        return x->rr;
    case KP_PART_FORWARD:
        break;
    }
    return x->op.st->index % x->nchans;
}

static int exchange_record(kp_op *op, kp_event *ev)
{
    exchange_op *x = (exchange_op *)op;
    if (ev->key.len + ev->value.len > KP_BATCH_ARENA)
        return kp_subtask_fail(op->st, "%s: a record of %zu bytes exceeds the %d-byte limit",
                               op->node->name, ev->key.len + ev->value.len, KP_BATCH_ARENA);
    int t = target_of(x, ev);
    kp_batch *b = x->cur[t];
    if (b && !kp_batch_fits(b, ev->key.len, ev->value.len)) {
        flush_one(x, t);
        b = NULL;
    }
    if (!b && !(b = x->cur[t] = acquire(x, t)))
        return -1;
    kp_batch_append(b, ev->key, ev->value, ev->ts, ev->cwm, ev->hash);
    return 0;
}

/* Flushes pending records, then sends a control message of `kind` on every channel. */
static int broadcast(exchange_op *x, kp_msg_kind kind)
{
    for (int i = 0; i < x->nchans; i++) {
        flush_one(x, i);
        kp_batch *b = acquire(x, i);
        if (!b)
            return -1;
        b->kind = kind;
        send(x, i, b);
    }
    return 0;
}

static int exchange_watermark(kp_op *op, kp_time wm)
{
    exchange_op *x = (exchange_op *)op;
    if (wm > x->wm)
        x->wm = wm;
    return 0;
}

static int exchange_idle(kp_op *op)
{
    return broadcast((exchange_op *)op, KP_MSG_IDLE);
}

/* Sends every channel's partial batch, then barrier `snap` on every channel, in that order. */
static int exchange_barrier(kp_op *op, struct kp_snapshot *snap)
{
    exchange_op *x = (exchange_op *)op;
    for (int i = 0; i < x->nchans; i++) {
        flush_one(x, i);
        kp_batch *b = acquire(x, i);
        if (!b)
            return -1;
        b->kind = KP_MSG_BARRIER;
        b->watermark = kp_snapshot_id(snap);
        kp_channel_send(x->chans[i], b);
    }
    return 0;
}

static void add_stats(exchange_op *x)
{
    kp_metrics *m = x->op.st->metrics;
    atomic_fetch_add_explicit(&m->batches_sent, x->batches, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->records_sent, x->records, memory_order_relaxed);
    x->batches = x->records = 0;
}

static int exchange_finish(kp_op *op)
{
    exchange_op *x = (exchange_op *)op;
    x->wm = KP_TIME_MAX;
    int rc = broadcast(x, KP_MSG_END);
    add_stats(x);
    return rc;
}

static void exchange_destroy(kp_op *op)
{
    exchange_op *x = (exchange_op *)op;
    /* unsent batches belong to their channel's inbox, which frees them */
    for (int i = 0; i < x->nchans; i++)
        if (x->cur[i])
            kp_channel_send(x->chans[i], x->cur[i]);
    free(x->cur);
    free(x->sent_wm);
    free(x->chans);
    free(x->owner);
    free(x);
}

/* Sends partly filled batches, so a slow stream's records do not wait for 1024 companions,
 * and the current watermark to channels that carried no data since it advanced. */
static int exchange_tick(kp_op *op, kp_time now)
{
    (void)now;
    exchange_op *x = (exchange_op *)op;
    for (int i = 0; i < x->nchans; i++) {
        if (x->cur[i] && x->cur[i]->n > 0) {
            flush_one(x, i);
        } else if (x->sent_wm[i] < x->wm) {
            kp_batch *b = x->cur[i] ? x->cur[i] : acquire(x, i);
            if (!b)
                return -1;
            x->cur[i] = NULL;
            b->kind = KP_MSG_WATERMARK;
            send(x, i, b);
        }
    }
    return 0;
}

static const kp_op_vt exchange_vt = {.record = exchange_record,
                                     .watermark = exchange_watermark,
                                     .idle = exchange_idle,
                                     .finish = exchange_finish,
                                     .destroy = exchange_destroy,
                                     .tick = exchange_tick,
                                     .barrier = exchange_barrier};

kp_op *kp_op_exchange_new(kp_subtask *st, const kp_node *n, kp_partitioning mode,
                          kp_channel **chans, int nchans)
{
    exchange_op *x = calloc(1, sizeof *x);
    kp_channel **c = calloc((size_t)nchans, sizeof *c);
    kp_batch **cur = calloc((size_t)nchans, sizeof *cur);
    kp_time *sent = malloc((size_t)nchans * sizeof *sent);
    int mp = st->job->max_parallelism;
    int *owner = malloc((size_t)mp * sizeof *owner);
    if (!x || !c || !cur || !sent || !owner) {
        free(x);
        free(c);
        free(cur);
        free(sent);
        free(owner);
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    memcpy(c, chans, (size_t)nchans * sizeof *c);
    for (int i = 0; i < nchans; i++)
        sent[i] = KP_TIME_MIN;
    x->op = (kp_op){.vt = &exchange_vt, .node = n, .st = st};
    x->mode = mode;
    x->nchans = nchans;
    x->rr = st->index % nchans;
    x->max_parallelism = mp;
    x->kg_mask = (mp & (mp - 1)) == 0 ? (uint64_t)mp - 1 : 0;
    for (int kg = 0; kg < mp; kg++)
        owner[kg] = kp_key_group_owner(kg, mp, nchans);
    x->owner = owner;
    x->wm = KP_TIME_MIN;
    x->chans = c;
    x->cur = cur;
    x->sent_wm = sent;
    return &x->op;
}
