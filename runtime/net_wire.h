/* The data plane's wire format (docs/wire.md): how a record batch, a credit grant and the
 * connection's hello look on a TCP stream between two taskmanagers, and how a receiver
 * validates them before it trusts a single offset.
 *
 * Everything is little endian. Every frame starts with a 12-byte prefix (magic, version, type,
 * header length, crc32c of the rest of the header); a batch frame's header is followed by its
 * record table (n × 40 bytes, kp_rec exactly as batch.h lays it out) and the used part of its
 * arena, so the sender writes a batch with one writev of three pieces and the receiver reads
 * the table and arena straight into a batch taken from the consumer's channel.
 *
 * Pure functions: no I/O, no allocation; any thread. */
#ifndef KP_NET_WIRE_H
#define KP_NET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define KP_NET_MAGIC       0x5044504bu /* "KPDP" read as a little-endian u32 */
#define KP_NET_VERSION     1u
#define KP_NET_PREFIX      12u
#define KP_NET_JOB_ID_MAX  32 /* bytes of the job id, zero padded on the wire */
#define KP_NET_ADDRESS_MAX 128
#define KP_NET_REC_SIZE    40u

typedef enum kp_net_frame {
    KP_NET_HELLO = 1,  /* first frame each way: the sender's advertised data address */
    KP_NET_BATCH = 2,  /* a batch of any kind (DATA, WATERMARK, IDLE, END) on one channel */
    KP_NET_CREDIT = 3, /* the receiver can take `count` more batches on one channel */
} kp_net_frame;

/* A channel between two subtasks of one attempt of one job (cluster.md; transport.h's
 * kp_channel_id plus the job and attempt, so a stale attempt's traffic is told apart). */
typedef struct kp_net_chan_id {
    char job[KP_NET_JOB_ID_MAX + 1]; /* NUL-terminated, at most 32 bytes */
    uint32_t attempt;
    int32_t producer_task, producer_subtask;
    int32_t consumer_task, consumer_subtask;
    int32_t input; /* which input of the consumer task it feeds (0 until multi-input ops) */
} kp_net_chan_id;

#define KP_NET_CHAN_WIRE  (KP_NET_JOB_ID_MAX + 6 * 4)
#define KP_NET_HELLO_LEN  (KP_NET_PREFIX + KP_NET_ADDRESS_MAX)
#define KP_NET_BATCH_LEN  (KP_NET_PREFIX + KP_NET_CHAN_WIRE + 3 * 4 + 8)
#define KP_NET_CREDIT_LEN (KP_NET_PREFIX + KP_NET_CHAN_WIRE + 4)
#define KP_NET_HEADER_MAX KP_NET_HELLO_LEN

/* A decoded frame header. */
typedef struct kp_net_header {
    kp_net_frame type;
    char address[KP_NET_ADDRESS_MAX + 1]; /* HELLO */
    kp_net_chan_id chan;                  /* BATCH, CREDIT */
    kp_msg_kind kind;                     /* BATCH */
    uint32_t n, used;                     /* BATCH: records, arena bytes */
    kp_time watermark;                    /* BATCH */
    uint32_t count;                       /* CREDIT */
} kp_net_header;

/* Encoders write the whole header into `out` (KP_NET_HEADER_MAX bytes) and return its length. */
size_t kp_net_encode_hello(uint8_t *out, const char *address);
size_t kp_net_encode_batch(uint8_t *out, const kp_net_chan_id *chan, const kp_batch *b);
size_t kp_net_encode_credit(uint8_t *out, const kp_net_chan_id *chan, uint32_t count);

/* Validates the 12-byte prefix; returns the full header length to read, or 0 with a reason. */
size_t kp_net_prefix_check(const uint8_t *prefix, char *err, size_t errlen);

/* Decodes and validates a whole header (prefix included): checksum, kind, sizes against
 * KP_BATCH_RECORDS / KP_BATCH_ARENA, control batches empty. 0, or -1 with a reason. */
int kp_net_decode(const uint8_t *buf, size_t len, kp_net_header *h, char *err, size_t errlen);

/* Checks that every record of a received table lies inside the `used` arena bytes. */
int kp_net_check_records(const kp_rec *recs, uint32_t n, uint32_t used, char *err, size_t errlen);

/* Whether two channel ids are the same channel, and a hash of one (for lookup tables). */
int kp_net_chan_eq(const kp_net_chan_id *a, const kp_net_chan_id *b);
uint64_t kp_net_chan_hash(const kp_net_chan_id *c);

/* "job/attempt p<task>.<subtask> -> c<task>.<subtask>" for messages. */
void kp_net_chan_format(const kp_net_chan_id *c, char *out, size_t len);

#endif
