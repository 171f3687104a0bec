/* Held records of a transactional Kafka sink (kafka_hold.h). Layout of one record in buf:
 * a header (lengths, time, dead-letter fields), then key, value, origin and error bytes. */
#include <stdlib.h>
#include <string.h>

#include "kafka_hold.h"

typedef struct rec_head {
    uint32_t klen, vlen, olen, elen; /* olen = 0: not a dead letter */
    int64_t ts, offset;
    int32_t partition, raw;
} rec_head;

int kp_kafka_hold_add(kp_kafka_hold *h, const kp_kafka_held *r)
{
    rec_head hd = {.klen = (uint32_t)r->key.len,
                   .vlen = (uint32_t)r->value.len,
                   .olen = r->origin ? (uint32_t)strlen(r->origin) + 1 : 0,
                   .elen = r->origin && r->error ? (uint32_t)strlen(r->error) + 1 : 0,
                   .ts = r->ts,
                   .offset = r->offset,
                   .partition = r->partition,
                   .raw = r->origin != NULL};
    size_t need = sizeof hd + hd.klen + hd.vlen + hd.olen + hd.elen;
    if (kp_buf_reserve(&h->buf, need) != 0)
        return -1;
    char *p = h->buf.ptr + h->buf.len;
    memcpy(p, &hd, sizeof hd);
    p += sizeof hd;
    if (hd.klen)
        memcpy(p, r->key.ptr, hd.klen);
    p += hd.klen;
    if (hd.vlen)
        memcpy(p, r->value.ptr, hd.vlen);
    p += hd.vlen;
    if (hd.olen)
        memcpy(p, r->origin, hd.olen);
    p += hd.olen;
    if (hd.elen)
        memcpy(p, r->error, hd.elen);
    h->buf.len += need;
    h->records++;
    return 0;
}

int kp_kafka_hold_close(kp_kafka_hold *h, int64_t ckpt)
{
    if (h->nseg == h->segcap) {
        int cap = h->segcap ? 2 * h->segcap : 8;
        kp_kafka_hold_seg *s = realloc(h->seg, (size_t)cap * sizeof *s);
        if (!s)
            return -1;
        h->seg = s;
        h->segcap = cap;
    }
    h->seg[h->nseg++] = (kp_kafka_hold_seg){h->buf.len, ckpt};
    return 0;
}

int kp_kafka_hold_next(kp_kafka_hold *h, kp_kafka_held *r, int64_t *ckpt)
{
    if (h->nseg > 0 && h->pos == h->seg[0].end) {
        *ckpt = h->seg[0].ckpt;
        memmove(h->seg, h->seg + 1, (size_t)(h->nseg - 1) * sizeof *h->seg);
        h->nseg--;
        return 2;
    }
    if (h->pos == h->buf.len) {
        h->buf.len = h->pos = 0;
        h->records = 0;
        return 0;
    }
    rec_head hd;
    const char *p = h->buf.ptr + h->pos;
    memcpy(&hd, p, sizeof hd);
    p += sizeof hd;
    *r = (kp_kafka_held){.key = {p, hd.klen},
                         .value = {p + hd.klen, hd.vlen},
                         .ts = hd.ts,
                         .origin = hd.raw ? p + hd.klen + hd.vlen : NULL,
                         .error = hd.elen ? p + hd.klen + hd.vlen + hd.olen : NULL,
                         .partition = hd.partition,
                         .offset = hd.offset};
    h->pos += sizeof hd + hd.klen + hd.vlen + hd.olen + hd.elen;
    h->records--;
    return 1;
}

size_t kp_kafka_hold_bytes(const kp_kafka_hold *h)
{
    return h->buf.len - h->pos;
}

void kp_kafka_hold_free(kp_kafka_hold *h)
{
    kp_buf_free(&h->buf);
    free(h->seg);
    memset(h, 0, sizeof *h);
}
