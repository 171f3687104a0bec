/* List and map state of one key; see keyed_state.h. */
#include "keyed_state.h"

#include <stdlib.h>

#include "key_spill.h"
#include "keygroup.h"

#define TOMBSTONE UINT32_MAX

typedef struct map_slot {
    uint32_t off, len; /* len == TOMBSTONE: removed */
} map_slot;

kp_keyed_state *kp_keyed_state_new(void)
{
    kp_keyed_state *ks = calloc(1, sizeof *ks);
    if (ks)
        kp_keytable_init(&ks->map, sizeof(map_slot));
    return ks;
}

void kp_keyed_state_free(kp_keyed_state *ks)
{
    if (!ks)
        return;
    kp_buf_free(&ks->items);
    free(ks->offs);
    kp_keytable_free(&ks->map);
    kp_buf_free(&ks->vals);
    free(ks);
}

int kp_list_add(kp_keyed_state *ks, kp_bytes item)
{
    if (ks->items.len + item.len >= UINT32_MAX)
        return -1;
    if (ks->n + 2 > ks->cap) {
        uint32_t cap = ks->cap ? ks->cap * 2 : 8;
        uint32_t *offs = realloc(ks->offs, cap * sizeof *offs);
        if (!offs)
            return -1;
        ks->offs = offs;
        ks->cap = cap;
    }
    if (kp_buf_append(&ks->items, item.ptr, item.len) != 0)
        return -1;
    if (ks->n == 0)
        ks->offs[0] = 0;
    ks->offs[++ks->n] = (uint32_t)ks->items.len;
    return 0;
}

kp_bytes kp_list_get(const kp_keyed_state *ks, size_t i)
{
    if (i >= ks->n)
        return (kp_bytes){"", 0};
    return (kp_bytes){ks->items.ptr + ks->offs[i], ks->offs[i + 1] - ks->offs[i]};
}

void kp_list_clear(kp_keyed_state *ks)
{
    ks->items.len = 0;
    ks->n = 0;
}

/* Rebuilds the map without tombstones or dead value bytes. */
static int compact(kp_keyed_state *ks)
{
    kp_keyed_state fresh = {0};
    kp_keytable_init(&fresh.map, sizeof(map_slot));
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&ks->map, &i))) {
        const map_slot *s = kp_keyentry_value(e);
        if (s->len == TOMBSTONE)
            continue;
        kp_bytes v = {ks->vals.ptr + s->off, s->len};
        if (kp_map_put(&fresh, kp_keytable_key(&ks->map, e), v) != 0) {
            kp_keytable_free(&fresh.map);
            kp_buf_free(&fresh.vals);
            return -1;
        }
    }
    kp_keytable_free(&ks->map);
    kp_buf_free(&ks->vals);
    ks->map = fresh.map;
    ks->vals = fresh.vals;
    ks->live = fresh.live;
    ks->dead = 0;
    return 0;
}

int kp_map_put(kp_keyed_state *ks, kp_bytes key, kp_bytes value)
{
    if (ks->vals.len + value.len >= UINT32_MAX)
        return -1;
    int created;
    kp_keyentry *e = kp_keytable_upsert(&ks->map, kp_hash64(key.ptr, key.len), key, &created);
    if (!e)
        return -1;
    map_slot *s = kp_keyentry_value(e);
    if (created || s->len == TOMBSTONE) {
        ks->live++;
        ks->dead -= !created;
    } else if (value.len <= s->len) { /* overwrite in place */
        memcpy(ks->vals.ptr + s->off, value.ptr, value.len);
        s->len = (uint32_t)value.len;
        return 0;
    }
    s->off = (uint32_t)ks->vals.len;
    s->len = (uint32_t)value.len;
    return kp_buf_append(&ks->vals, value.ptr, value.len);
}

int kp_map_get(const kp_keyed_state *ks, kp_bytes key, kp_bytes *value)
{
    kp_keyentry *e = kp_keytable_find(&ks->map, kp_hash64(key.ptr, key.len), key);
    const map_slot *s = e ? kp_keyentry_value(e) : NULL;
    if (!s || s->len == TOMBSTONE)
        return 0;
    if (value)
        *value = (kp_bytes){ks->vals.ptr + s->off, s->len};
    return 1;
}

int kp_map_remove(kp_keyed_state *ks, kp_bytes key)
{
    kp_keyentry *e = kp_keytable_find(&ks->map, kp_hash64(key.ptr, key.len), key);
    map_slot *s = e ? kp_keyentry_value(e) : NULL;
    if (!s || s->len == TOMBSTONE)
        return 0;
    s->len = TOMBSTONE;
    ks->live--;
    ks->dead++;
    if (ks->dead > 64 && ks->dead > ks->live)
        compact(ks); /* on failure the tombstones simply stay */
    return 1;
}

int kp_map_next(const kp_keyed_state *ks, size_t *cursor, kp_bytes *key, kp_bytes *value)
{
    kp_keyentry *e;
    while ((e = kp_keytable_next(&ks->map, cursor))) {
        const map_slot *s = kp_keyentry_value(e);
        if (s->len == TOMBSTONE)
            continue;
        if (key)
            *key = kp_keytable_key(&ks->map, e);
        if (value)
            *value = (kp_bytes){ks->vals.ptr + s->off, s->len};
        return 1;
    }
    return 0;
}

void kp_map_clear(kp_keyed_state *ks)
{
    kp_keytable_clear(&ks->map);
    ks->vals.len = 0;
    ks->live = ks->dead = 0;
}

size_t kp_keyed_state_bytes(const kp_keyed_state *ks)
{
    return sizeof *ks + ks->items.cap + ks->cap * sizeof *ks->offs + kp_keytable_bytes(&ks->map) +
           ks->vals.cap;
}

/* ---- spilling: the state byte for byte --------------------------------------------------- */

typedef struct saved_hdr {
    uint32_t n;         /* list items */
    uint32_t map_bits;  /* the map's slot count is 2^map_bits, or 0 */
    uint64_t items_len; /* list bytes */
    uint64_t map_n, arena_len, arena_dead, vals_len, live, dead;
} saved_hdr;

int kp_keyed_state_save(const kp_keyed_state *ks, kp_buf *out)
{
    const kp_keytable *m = &ks->map;
    saved_hdr h = {ks->n,         m->cap ? m->bits : 0, ks->items.len, m->n,    m->arena_len,
                   m->arena_dead, ks->vals.len,         ks->live,      ks->dead};
    if (kp_buf_append(out, &h, sizeof h) != 0 ||
        (ks->n && kp_buf_append(out, ks->offs, (ks->n + 1) * sizeof *ks->offs) != 0) ||
        kp_buf_append(out, ks->items.ptr, ks->items.len) != 0 ||
        kp_buf_append(out, m->slots, m->cap * m->entry_size) != 0 ||
        kp_buf_append(out, m->arena, m->arena_len) != 0 ||
        kp_buf_append(out, ks->vals.ptr, ks->vals.len) != 0)
        return -1;
    return 0;
}

/* Reads `len` bytes of *in into a fresh buffer (NULL for 0 bytes); -1 on short input or OOM. */
static int take_bytes(kp_bytes *in, size_t len, void **dst)
{
    *dst = NULL;
    if (len == 0)
        return 0;
    if (len > in->len || !(*dst = malloc(len)))
        return -1;
    return kp_blob_read(in, *dst, len);
}

kp_keyed_state *kp_keyed_state_load(kp_bytes *in)
{
    saved_hdr h;
    kp_keyed_state *ks = kp_keyed_state_new();
    if (!ks || kp_blob_read(in, &h, sizeof h) != 0 || h.map_bits >= 40)
        goto error;
    kp_keytable *m = &ks->map;
    size_t cap = h.map_bits ? (size_t)1 << h.map_bits : 0;
    void *p;
    if (h.n) {
        if (take_bytes(in, (h.n + 1) * sizeof *ks->offs, &p) != 0)
            goto error;
        ks->offs = p;
        ks->n = h.n;
        ks->cap = h.n + 1;
    }
    if (take_bytes(in, h.items_len, &p) != 0)
        goto error;
    ks->items = (kp_buf){p, h.items_len, h.items_len};
    if (take_bytes(in, cap * m->entry_size, &p) != 0)
        goto error;
    m->slots = p;
    m->cap = cap;
    m->bits = h.map_bits;
    m->n = h.map_n;
    if (take_bytes(in, h.arena_len, &p) != 0)
        goto error;
    m->arena = p;
    m->arena_len = m->arena_cap = h.arena_len;
    m->arena_dead = h.arena_dead;
    if (take_bytes(in, h.vals_len, &p) != 0)
        goto error;
    ks->vals = (kp_buf){p, h.vals_len, h.vals_len};
    ks->live = h.live;
    ks->dead = h.dead;
    return ks;
error:
    kp_keyed_state_free(ks);
    return NULL;
}
