/* The exchange writer: the last operator of a chain whose output crosses to another task.
 * It batches records per downstream subtask (by key group, round robin or one-to-one) and
 * forwards watermarks, idleness and the end of input to every downstream subtask, after
 * flushing the records that precede them, so order per channel is preserved. */
#include <stdlib.h>

#include "keygroup.h"
#include "ops.h"

typedef struct exchange_op {
    kp_op op;
    kp_partitioning mode;
    int nchans;
    int rr;
    int max_parallelism;
    kp_channel **chans;
    kp_batch **cur; /* the batch being filled per channel, or NULL */
} exchange_op;

static int flush_one(exchange_op *x, int i)
{
    if (x->cur[i]) {
        kp_channel_send(x->chans[i], x->cur[i]);
        x->cur[i] = NULL;
    }
    return 0;
}

static kp_batch *current(exchange_op *x, int i)
{
    if (!x->cur[i])
        x->cur[i] = kp_channel_acquire(x->chans[i]);
    return x->cur[i];
}

static int target_of(exchange_op *x, const kp_event *ev)
{
    switch (x->mode) {
    case KP_PART_HASH: {
        int kg = kp_key_group(kp_hash64(ev->key.ptr, ev->key.len), x->max_parallelism);
        return kp_key_group_owner(kg, x->max_parallelism, x->nchans);
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
    kp_batch *b = current(x, t);
    if (b && !kp_batch_fits(b, ev->key.len, ev->value.len)) {
        flush_one(x, t);
        b = current(x, t);
    }
    if (!b)
        return -1; /* cancelled */
    kp_batch_append(b, ev->key, ev->value, ev->ts, ev->cwm);
    return 0;
}

/* Flushes pending records, then sends a control message of `kind` on every channel. */
static int broadcast(exchange_op *x, kp_msg_kind kind, kp_time wm)
{
    for (int i = 0; i < x->nchans; i++) {
        flush_one(x, i);
        kp_batch *b = kp_channel_acquire(x->chans[i]);
        if (!b)
            return -1;
        b->kind = kind;
        b->watermark = wm;
        kp_channel_send(x->chans[i], b);
    }
    return 0;
}

static int exchange_watermark(kp_op *op, kp_time wm)
{
    return broadcast((exchange_op *)op, KP_MSG_WATERMARK, wm);
}

static int exchange_idle(kp_op *op)
{
    return broadcast((exchange_op *)op, KP_MSG_IDLE, 0);
}

static int exchange_finish(kp_op *op)
{
    return broadcast((exchange_op *)op, KP_MSG_END, KP_TIME_MAX);
}

static void exchange_destroy(kp_op *op)
{
    exchange_op *x = (exchange_op *)op;
    /* unsent batches belong to their channel's inbox, which frees them */
    for (int i = 0; i < x->nchans; i++)
        if (x->cur[i])
            kp_channel_send(x->chans[i], x->cur[i]);
    free(x->cur);
    free(x->chans);
    free(x);
}

/* Sends partly filled batches, so a slow stream's records do not wait for 1024 companions. */
static int exchange_tick(kp_op *op, kp_time now)
{
    exchange_op *x = (exchange_op *)op;
    for (int i = 0; i < x->nchans; i++)
        if (x->cur[i] && x->cur[i]->n > 0)
            flush_one(x, i);
    return 0;
}

static const kp_op_vt exchange_vt = {exchange_record, exchange_watermark, exchange_idle,
                                     exchange_finish, exchange_destroy,   exchange_tick};

kp_op *kp_op_exchange_new(kp_subtask *st, const kp_node *n, kp_partitioning mode,
                          kp_channel **chans, int nchans)
{
    exchange_op *x = calloc(1, sizeof *x);
    kp_channel **c = calloc((size_t)nchans, sizeof *c);
    kp_batch **cur = calloc((size_t)nchans, sizeof *cur);
    if (!x || !c || !cur) {
        free(x);
        free(c);
        free(cur);
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    memcpy(c, chans, (size_t)nchans * sizeof *c);
    x->op = (kp_op){.vt = &exchange_vt, .node = n, .st = st};
    x->mode = mode;
    x->nchans = nchans;
    x->rr = st->index % nchans;
    x->max_parallelism = st->job->max_parallelism;
    x->chans = c;
    x->cur = cur;
    return &x->op;
}
