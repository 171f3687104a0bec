/* A source subtask's positions in a checkpoint (source_ckpt.h). The blob is a fixed binary
 * layout, little-endian as the host: a header {magic "KPSP", version 1, count} and per
 * partition {i32 partition, i32 ended, i64 offset, i64 max_ts}. Positions are per partition,
 * never per subtask, so a restore at another parallelism gives each new subtask the
 * partitions it owns, whoever owned them before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source_ckpt.h"

#define MAGIC   0x5053504bu /* "KPSP" */
#define VERSION 1u

typedef struct blob_head {
    uint32_t magic, version, count, reserved;
} blob_head;

_Static_assert(sizeof(kp_src_pos) == 24, "kp_src_pos is the blob's 24-byte entry");

int kp_src_ckpt_write(kp_snapshot *snap, const char *uid, kp_source_reader *r,
                      const kp_wm_tracker *wm, kp_offset *offs, int max, int *n)
{
    *n = 0;
    if (!r->offsets)
        return -2;
    *n = r->offsets(r, offs, max);
    size_t len = sizeof(blob_head) + (size_t)*n * sizeof(kp_src_pos);
    uint8_t *buf = malloc(len);
    if (!buf)
        return -1;
    blob_head h = {MAGIC, VERSION, (uint32_t)*n, 0};
    memcpy(buf, &h, sizeof h);
    kp_src_pos *pos = (kp_src_pos *)(buf + sizeof h);
    for (int i = 0; i < *n; i++) {
        int k = offs[i].partition + 1;
        const kp_wm_part *p = k >= 0 && k < wm->cap ? &wm->parts[k] : NULL;
        pos[i] = (kp_src_pos){.partition = offs[i].partition,
                              .ended = p ? p->ended : 0,
                              .offset = offs[i].offset,
                              .max_ts = p ? p->max_ts : KP_TIME_MIN};
    }
    int rc = kp_snapshot_blob(snap, uid, "source", -1, -1, buf, len);
    free(buf);
    return rc;
}

typedef struct gather {
    kp_src_pos *pos;
    int n, cap;
    char *err;
    size_t errlen;
} gather;

static int add_entry(void *ctx, const kp_restore_entry *e)
{
    gather *g = ctx;
    blob_head h;
    if (e->is_dir || e->len < sizeof h)
        goto bad;
    memcpy(&h, e->data, sizeof h);
    if (h.magic != MAGIC || h.version != VERSION ||
        e->len != sizeof h + (size_t)h.count * sizeof(kp_src_pos))
        goto bad;
    if (g->n + (int)h.count > g->cap) {
        int cap = g->n + (int)h.count + 16;
        kp_src_pos *p = realloc(g->pos, (size_t)cap * sizeof *p);
        if (!p) {
            snprintf(g->err, g->errlen, "out of memory");
            return -1;
        }
        g->pos = p;
        g->cap = cap;
    }
    memcpy(g->pos + g->n, (const uint8_t *)e->data + sizeof h, h.count * sizeof(kp_src_pos));
    g->n += (int)h.count;
    return 0;
bad:
    snprintf(g->err, g->errlen, "the positions of source '%s' written by subtask %d are malformed",
             e->uid, e->subtask);
    return -1;
}

int kp_src_ckpt_read(const kp_restore *r, const char *uid, kp_src_pos **out, int *n, char *errstr,
                     size_t errlen)
{
    gather g = {.err = errstr, .errlen = errlen};
    if (kp_restore_each(r, uid, "source", add_entry, &g) != 0) {
        free(g.pos);
        return -1;
    }
    *out = g.pos;
    *n = g.n;
    return 0;
}
