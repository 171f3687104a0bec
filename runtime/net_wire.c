/* Encoding and validation of data-plane frames; the layout is in net_wire.h and docs/wire.md. */
#include "net_wire.h"

#include <stdio.h>
#include <string.h>

#include "frame.h" /* kp_crc32c */
#include "keygroup.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the data plane writes kp_rec tables as they are in memory: little-endian hosts only"
#endif
_Static_assert(sizeof(kp_rec) == KP_NET_REC_SIZE, "kp_rec is the wire's 40-byte record");
_Static_assert(offsetof(kp_rec, ts) == 16 && offsetof(kp_rec, cwm) == 24 &&
                   offsetof(kp_rec, hash) == 32,
               "kp_rec field offsets are the wire's");

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
    return p + 4;
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
    return p + 8;
}

static const uint8_t *get32(const uint8_t *p, uint32_t *v)
{
    memcpy(v, p, 4);
    return p + 4;
}

static const uint8_t *get64(const uint8_t *p, uint64_t *v)
{
    memcpy(v, p, 8);
    return p + 8;
}

/* Prefix: magic u32, version u8, type u8, header length u16, crc32c u32 of bytes [12, len). */
static size_t seal(uint8_t *out, kp_net_frame type, size_t len)
{
    put32(out, KP_NET_MAGIC);
    out[4] = KP_NET_VERSION;
    out[5] = (uint8_t)type;
    uint16_t hl = (uint16_t)len;
    memcpy(out + 6, &hl, 2);
    put32(out + 8, kp_crc32c(0, out + KP_NET_PREFIX, len - KP_NET_PREFIX));
    return len;
}

static uint8_t *put_chan(uint8_t *p, const kp_net_chan_id *c)
{
    memset(p, 0, KP_NET_JOB_ID_MAX);
    memcpy(p, c->job, strnlen(c->job, KP_NET_JOB_ID_MAX));
    p += KP_NET_JOB_ID_MAX;
    p = put32(p, c->attempt);
    p = put32(p, (uint32_t)c->producer_task);
    p = put32(p, (uint32_t)c->producer_subtask);
    p = put32(p, (uint32_t)c->consumer_task);
    p = put32(p, (uint32_t)c->consumer_subtask);
    return put32(p, (uint32_t)c->input);
}

static const uint8_t *get_chan(const uint8_t *p, kp_net_chan_id *c)
{
    memcpy(c->job, p, KP_NET_JOB_ID_MAX);
    c->job[KP_NET_JOB_ID_MAX] = 0;
    p += KP_NET_JOB_ID_MAX;
    uint32_t v[5];
    p = get32(p, &c->attempt);
    for (int i = 0; i < 5; i++)
        p = get32(p, &v[i]);
    c->producer_task = (int32_t)v[0];
    c->producer_subtask = (int32_t)v[1];
    c->consumer_task = (int32_t)v[2];
    c->consumer_subtask = (int32_t)v[3];
    c->input = (int32_t)v[4];
    return p;
}

size_t kp_net_encode_hello(uint8_t *out, const char *address)
{
    memset(out + KP_NET_PREFIX, 0, KP_NET_ADDRESS_MAX);
    memcpy(out + KP_NET_PREFIX, address, strnlen(address, KP_NET_ADDRESS_MAX));
    return seal(out, KP_NET_HELLO, KP_NET_HELLO_LEN);
}

size_t kp_net_encode_batch(uint8_t *out, const kp_net_chan_id *chan, const kp_batch *b)
{
    uint8_t *p = put_chan(out + KP_NET_PREFIX, chan);
    p = put32(p, (uint32_t)b->kind);
    p = put32(p, b->n);
    p = put32(p, b->used);
    put64(p, (uint64_t)b->watermark);
    return seal(out, KP_NET_BATCH, KP_NET_BATCH_LEN);
}

size_t kp_net_encode_credit(uint8_t *out, const kp_net_chan_id *chan, uint32_t count)
{
    put32(put_chan(out + KP_NET_PREFIX, chan), count);
    return seal(out, KP_NET_CREDIT, KP_NET_CREDIT_LEN);
}

static size_t header_len(int type)
{
    switch (type) {
    case KP_NET_HELLO:
        return KP_NET_HELLO_LEN;
    case KP_NET_BATCH:
        return KP_NET_BATCH_LEN;
    case KP_NET_CREDIT:
        return KP_NET_CREDIT_LEN;
    }
    return 0;
}

size_t kp_net_prefix_check(const uint8_t *prefix, char *err, size_t errlen)
{
    uint32_t magic;
    uint16_t hl;
    get32(prefix, &magic);
    memcpy(&hl, prefix + 6, 2);
    size_t want = header_len(prefix[5]);
    if (magic != KP_NET_MAGIC)
        snprintf(err, errlen, "not a kappa data-plane stream (magic 0x%08x)", magic);
    else if (prefix[4] != KP_NET_VERSION)
        snprintf(err, errlen, "data-plane protocol version %u, this build speaks %u", prefix[4],
                 KP_NET_VERSION);
    else if (!want)
        snprintf(err, errlen, "unknown frame type %u", prefix[5]);
    else if (hl != want)
        snprintf(err, errlen, "frame type %u with a %u-byte header (expected %zu)", prefix[5], hl,
                 want);
    else
        return want;
    return 0;
}

static int decode_batch(const uint8_t *p, kp_net_header *h, char *err, size_t errlen)
{
    uint32_t kind;
    uint64_t wm;
    p = get_chan(p, &h->chan);
    p = get32(p, &kind);
    p = get32(p, &h->n);
    p = get32(p, &h->used);
    get64(p, &wm);
    h->watermark = (kp_time)wm;
    h->kind = (kp_msg_kind)kind;
    if (kind < KP_MSG_DATA || kind > KP_MSG_BARRIER)
        snprintf(err, errlen, "batch of unknown kind %u", kind);
    else if (h->n > KP_BATCH_RECORDS || h->used > KP_BATCH_ARENA)
        snprintf(err, errlen, "batch of %u records and %u arena bytes exceeds %d / %d", h->n,
                 h->used, KP_BATCH_RECORDS, KP_BATCH_ARENA);
    else if (kind != KP_MSG_DATA && (h->n || h->used))
        snprintf(err, errlen, "control batch (kind %u) carrying %u records", kind, h->n);
    else
        return 0;
    return -1;
}

int kp_net_decode(const uint8_t *buf, size_t len, kp_net_header *h, char *err, size_t errlen)
{
    size_t want = kp_net_prefix_check(buf, err, errlen);
    if (!want)
        return -1;
    if (len != want) {
        snprintf(err, errlen, "header of %zu bytes, expected %zu", len, want);
        return -1;
    }
    uint32_t crc;
    get32(buf + 8, &crc);
    if (crc != kp_crc32c(0, buf + KP_NET_PREFIX, len - KP_NET_PREFIX)) {
        snprintf(err, errlen, "frame header checksum mismatch");
        return -1;
    }
    memset(h, 0, sizeof *h);
    h->type = (kp_net_frame)buf[5];
    const uint8_t *p = buf + KP_NET_PREFIX;
    switch (h->type) {
    case KP_NET_HELLO:
        memcpy(h->address, p, KP_NET_ADDRESS_MAX);
        h->address[KP_NET_ADDRESS_MAX] = 0;
        return 0;
    case KP_NET_BATCH:
        return decode_batch(p, h, err, errlen);
    case KP_NET_CREDIT:
        get32(get_chan(p, &h->chan), &h->count);
        if (h->count == 0 || h->count > KP_BATCH_RECORDS) {
            snprintf(err, errlen, "credit grant of %u batches", h->count);
            return -1;
        }
        return 0;
    }
    return -1; /* kp_net_prefix_check refused other types */
}

int kp_net_check_records(const kp_rec *recs, uint32_t n, uint32_t used, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < n; i++) {
        const kp_rec *r = &recs[i];
        if ((uint64_t)r->key_off + r->key_len > used || (uint64_t)r->val_off + r->val_len > used) {
            snprintf(err, errlen,
                     "record %u points outside the batch's %u arena bytes (key %u+%u, value %u+%u)",
                     i, used, r->key_off, r->key_len, r->val_off, r->val_len);
            return -1;
        }
    }
    return 0;
}

int kp_net_chan_eq(const kp_net_chan_id *a, const kp_net_chan_id *b)
{
    return a->attempt == b->attempt && a->producer_task == b->producer_task &&
           a->producer_subtask == b->producer_subtask && a->consumer_task == b->consumer_task &&
           a->consumer_subtask == b->consumer_subtask && a->input == b->input &&
           strncmp(a->job, b->job, KP_NET_JOB_ID_MAX) == 0;
}

uint64_t kp_net_chan_hash(const kp_net_chan_id *c)
{
    uint8_t buf[KP_NET_CHAN_WIRE];
    put_chan(buf, c);
    return kp_hash64(buf, sizeof buf);
}

void kp_net_chan_format(const kp_net_chan_id *c, char *out, size_t len)
{
    snprintf(out, len, "%.32s/%u %d.%d -> %d.%d input %d", c->job, c->attempt, c->producer_task,
             c->producer_subtask, c->consumer_task, c->consumer_subtask, c->input);
}
