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

int kp_kafka_hold_close(kp_kafka_hold *h, int64_t ckpt, int64_t seq)
{
    if (h->nseg == h->segcap) {
        int cap = h->segcap ? 2 * h->segcap : 8;
        kp_kafka_hold_seg *s = realloc(h->seg, (size_t)cap * sizeof *s);
        if (!s)
            return -1;
        h->seg = s;
        h->segcap = cap;
    }
    h->seg[h->nseg++] = (kp_kafka_hold_seg){h->buf.len, ckpt, seq};
    return 0;
}

int kp_kafka_hold_next(kp_kafka_hold *h, kp_kafka_held *r, int64_t *ckpt, int64_t *seq)
{
    if (h->nseg > 0 && h->pos == h->seg[0].end) {
        *ckpt = h->seg[0].ckpt;
        *seq = h->seg[0].seq;
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

void kp_kafka_hold_reset(kp_kafka_hold *h)
{
    h->buf.len = h->pos = 0;
    h->nseg = 0;
    h->records = 0;
}

void kp_kafka_hold_view(kp_kafka_hold *h, const void *data, size_t len)
{
    memset(h, 0, sizeof *h);
    h->buf = (kp_buf){(char *)data, len, len};
    h->records = -1; /* unknown, and not used */
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

/* ---- checkpoint state ------------------------------------------------------------------ */

static const char magic[8] = "KPKTX1\n";

int kp_kafka_txstate_begin(kp_buf *b, const char *base, int npool)
{
    uint32_t blen = (uint32_t)strlen(base), np = (uint32_t)npool, n = 0;
    b->len = 0;
    return kp_buf_append(b, magic, sizeof magic) || kp_buf_append(b, &blen, 4) ||
                   kp_buf_append(b, base, blen) || kp_buf_append(b, &np, 4) ||
                   kp_buf_append(b, &n, 4)
               ? -1
               : 0;
}

int kp_kafka_txstate_add(kp_buf *b, int64_t seq, const void *records, size_t len)
{
    uint64_t l = len;
    if (kp_buf_append(b, &seq, 8) || kp_buf_append(b, &l, 8) ||
        (len && kp_buf_append(b, records, len)))
        return -1;
    uint32_t blen, n;
    memcpy(&blen, b->ptr + sizeof magic, 4);
    size_t at = sizeof magic + 4 + blen + 4;
    memcpy(&n, b->ptr + at, 4);
    n++;
    memcpy(b->ptr + at, &n, 4);
    return 0;
}

int kp_kafka_txstate_open(kp_kafka_txstate *t, const void *data, size_t len)
{
    const char *p = data;
    uint32_t blen, np, n;
    if (len < sizeof magic + 4 || memcmp(p, magic, sizeof magic))
        return -1;
    memcpy(&blen, p + sizeof magic, 4);
    if (blen >= sizeof t->base || len < sizeof magic + 4 + blen + 8)
        return -1;
    memcpy(t->base, p + sizeof magic + 4, blen);
    t->base[blen] = 0;
    memcpy(&np, p + sizeof magic + 4 + blen, 4);
    memcpy(&n, p + sizeof magic + 8 + blen, 4);
    t->npool = (int)np;
    t->n = (int)n;
    t->p = p + sizeof magic + 12 + blen;
    t->left = len - (sizeof magic + 12 + blen);
    return 0;
}

int kp_kafka_txstate_next(kp_kafka_txstate *t, int64_t *seq, const void **records, size_t *len)
{
    if (t->left == 0)
        return 0;
    uint64_t l;
    if (t->left < 16)
        return -1;
    memcpy(seq, t->p, 8);
    memcpy(&l, t->p + 8, 8);
    if (l > t->left - 16)
        return -1;
    *records = t->p + 16;
    *len = (size_t)l;
    t->p += 16 + l;
    t->left -= 16 + l;
    return 1;
}
