/* Record batches: the unit that moves between subtasks.
 *
 * A batch holds up to KP_BATCH_RECORDS records whose key and value bytes live in the batch's
 * own arena, so a batch is one allocation that is reused for its whole life: producers take
 * batches from their channel's free list and consumers give them back (batch.c, channel.c).
 * The same layout is what the cluster's data plane serialises: a header, the record table and
 * the arena, copied as they are (see docs/architecture.md, "Data plane").
 *
 * A batch is owned by exactly one thread at a time: the producer while filling it, the
 * consumer after it has been popped from a channel. */
#ifndef KP_BATCH_H
#define KP_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include <kappa/kappa.h>

#define KP_BATCH_RECORDS 1024
#define KP_BATCH_ARENA   (128 * 1024)

typedef enum kp_msg_kind {
    KP_MSG_DATA = 1,  /* records */
    KP_MSG_WATERMARK, /* the producer's watermark advanced to `watermark` */
    KP_MSG_IDLE,      /* the producer is idle: leave it out of the minimum until it sends data */
    KP_MSG_END,       /* the producer will send nothing more */
    KP_MSG_BARRIER,   /* checkpoint barrier: `watermark` is the checkpoint id (checkpoint.h) */
} kp_msg_kind;

typedef struct kp_rec {
    uint32_t key_off, key_len;
    uint32_t val_off, val_len;
    kp_time ts;
    kp_time cwm;   /* the record's carried watermark (engine.h, kp_event.cwm) */
    uint64_t hash; /* the key's kp_hash64, so the consumer does not hash it again */
} kp_rec;

typedef struct kp_batch {
    kp_msg_kind kind;
    int channel; /* index of the channel it travels on, set by the channel */
    /* KP_MSG_WATERMARK: the producer's watermark. KP_MSG_DATA: the producer's watermark when
     * it sent the batch, which the consumer applies after the batch's records — so a stream
     * that carries data needs no separate watermark messages. KP_MSG_BARRIER: the checkpoint
     * id, not a watermark. */
    kp_time watermark;
    uint32_t n;
    uint32_t used; /* arena bytes used */
    kp_rec recs[KP_BATCH_RECORDS];
    uint8_t arena[KP_BATCH_ARENA];
    struct kp_batch *next; /* free list / queue link */
} kp_batch;

kp_batch *kp_batch_new(void);
void kp_batch_free(kp_batch *b);

static inline void kp_batch_reset(kp_batch *b)
{
    b->kind = KP_MSG_DATA;
    b->n = 0;
    b->used = 0;
}

/* True if a record with these sizes fits. A record larger than the arena never fits: the
 * caller reports it (records are limited to KP_BATCH_ARENA bytes of key + value). */
static inline int kp_batch_fits(const kp_batch *b, size_t klen, size_t vlen)
{
    return b->n < KP_BATCH_RECORDS && b->used + klen + vlen <= KP_BATCH_ARENA;
}

/* Appends a record; the caller checked kp_batch_fits. */
static inline void kp_batch_append(kp_batch *b, kp_bytes key, kp_bytes value, kp_time ts,
                                   kp_time cwm, uint64_t hash)
{
    kp_rec *r = &b->recs[b->n++];
    r->key_off = b->used;
    r->key_len = (uint32_t)key.len;
    if (key.len)
        memcpy(b->arena + b->used, key.ptr, key.len);
    b->used += (uint32_t)key.len;
    r->val_off = b->used;
    r->val_len = (uint32_t)value.len;
    if (value.len)
        memcpy(b->arena + b->used, value.ptr, value.len);
    b->used += (uint32_t)value.len;
    r->ts = ts;
    r->cwm = cwm;
    r->hash = hash;
}

#endif
