/* The records a transactional Kafka sink holds back while no producer of its pool is free:
 * every producer has a transaction set aside for a checkpoint that has not completed yet (the
 * completion's notification can arrive after the next barriers when checkpoints are frequent).
 * Records are appended to one growing buffer (no allocation per record); a barrier closes a
 * segment, so the records of each checkpoint interval later go into a transaction of their
 * own. Internal to connectors/kafka_sink.c. @locality the sink subtask's thread */
#ifndef KP_KAFKA_HOLD_H
#define KP_KAFKA_HOLD_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/engine.h"

typedef struct kp_kafka_hold_seg {
    size_t end;   /* the segment's records end here in buf */
    int64_t ckpt; /* the barrier that closed it */
    int64_t seq;  /* the writer's sequence number of its transaction-to-be */
} kp_kafka_hold_seg;

typedef struct kp_kafka_hold {
    kp_buf buf;
    size_t pos; /* the next record to hand out */
    kp_kafka_hold_seg *seg;
    int nseg, segcap;
    long long records; /* held now */
} kp_kafka_hold;

/* One held record; pointers into the hold, valid until the hold is reset or freed. A dead
 * letter (write_raw) has origin != NULL. */
typedef struct kp_kafka_held {
    kp_bytes key, value;
    kp_time ts;
    const char *origin, *error;
    int32_t partition;
    int64_t offset;
} kp_kafka_held;

/* Appends a record (copied); origin/error/partition/offset only for dead letters (origin
 * NULL otherwise). 0, or -1 if out of memory. */
int kp_kafka_hold_add(kp_kafka_hold *h, const kp_kafka_held *r);

/* A barrier while holding: the records so far belong to checkpoint `ckpt`, their transaction
 * will have sequence number `seq`. 0 or -1 (memory). */
int kp_kafka_hold_close(kp_kafka_hold *h, int64_t ckpt, int64_t seq);

/* The next held record, in order: 1 with *r; 2 at the end of a closed segment, with its
 * checkpoint and sequence number in *ckpt, *seq; 0 when nothing is left (the hold is then
 * empty and reset). */
int kp_kafka_hold_next(kp_kafka_hold *h, kp_kafka_held *r, int64_t *ckpt, int64_t *seq);

/* Empties the hold, keeping its memory. */
void kp_kafka_hold_reset(kp_kafka_hold *h);

/* A read-only hold over encoded records (a checkpoint's copy): iterate it with
 * kp_kafka_hold_next, never add to it or free it. */
void kp_kafka_hold_view(kp_kafka_hold *h, const void *data, size_t len);

/* Bytes held (for the memory cap). */
size_t kp_kafka_hold_bytes(const kp_kafka_hold *h);

void kp_kafka_hold_free(kp_kafka_hold *h);

/* ---- a transactional sink's checkpoint state (kp_sink_writer.snapshot) ----
 * "KPKTX1" magic (8 bytes) | u32 base length | base (the transactional ids' base) | u32 pool
 * size | u32 entries | entries: i64 sequence number | u64 length | records (the encoding
 * above) — the records of every transaction not known to be committed, by the writer's
 * transaction sequence number (kafka_sink.c, Recovery). */
int kp_kafka_txstate_begin(kp_buf *b, const char *base, int npool);
int kp_kafka_txstate_add(kp_buf *b, int64_t seq, const void *records, size_t len);

typedef struct kp_kafka_txstate {
    char base[320];
    int npool, n;
    const char *p; /* the next entry */
    size_t left;
} kp_kafka_txstate;

/* 0, or -1 if data is not such a state. */
int kp_kafka_txstate_open(kp_kafka_txstate *t, const void *data, size_t len);
/* 1 with the next entry, 0 at the end, -1 if truncated. */
int kp_kafka_txstate_next(kp_kafka_txstate *t, int64_t *seq, const void **records, size_t *len);

#endif
