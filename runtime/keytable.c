/* Per-key in-memory state table; see keytable.h. */
#include "keytable.h"

#include <stdlib.h>
#include <string.h>

#define SLOT(t, i) ((kp_keyentry *)((t)->slots + (i) * (t)->entry_size))

void kp_keytable_init(kp_keytable *t, size_t value_size)
{
    memset(t, 0, sizeof *t);
    t->value_size = value_size;
    t->entry_size = (sizeof(kp_keyentry) + value_size + 7) & ~(size_t)7;
}

void kp_keytable_free(kp_keytable *t)
{
    free(t->slots);
    free(t->arena);
    kp_keytable_init(t, t->value_size);
}

void kp_keytable_clear(kp_keytable *t)
{
    if (t->slots)
        memset(t->slots, 0, t->cap * t->entry_size);
    t->n = 0;
    t->arena_len = 0;
}

static inline uint64_t fix_hash(uint64_t h)
{
    return h ? h : 1;
}

static int grow(kp_keytable *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    uint8_t *slots = calloc(cap, t->entry_size);
    if (!slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        kp_keyentry *e = SLOT(t, i);
        if (!e->hash)
            continue;
        size_t j = e->hash & (cap - 1);
        while (((kp_keyentry *)(slots + j * t->entry_size))->hash)
            j = (j + 1) & (cap - 1);
        memcpy(slots + j * t->entry_size, e, t->entry_size);
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static int arena_add(kp_keytable *t, kp_bytes key, uint32_t *off)
{
    if (t->arena_len + key.len > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap * 2 : 4096;
        while (cap < t->arena_len + key.len)
            cap *= 2;
        if (cap > UINT32_MAX)
            return -1;
        char *a = realloc(t->arena, cap);
        if (!a)
            return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, key.ptr, key.len);
    *off = (uint32_t)t->arena_len;
    t->arena_len += key.len;
    return 0;
}

kp_keyentry *kp_keytable_find(const kp_keytable *t, uint64_t hash, kp_bytes key)
{
    if (!t->cap)
        return NULL;
    hash = fix_hash(hash);
    for (size_t i = hash & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        kp_keyentry *e = SLOT(t, i);
        if (!e->hash)
            return NULL;
        if (e->hash == hash && e->key_len == key.len &&
            !memcmp(t->arena + e->key_off, key.ptr, key.len))
            return e;
    }
}

kp_keyentry *kp_keytable_upsert(kp_keytable *t, uint64_t hash, kp_bytes key, int *created)
{
    hash = fix_hash(hash);
    if ((t->n + 1) * 4 > t->cap * 3 && grow(t) != 0)
        return NULL;
    size_t i = hash & (t->cap - 1);
    for (;; i = (i + 1) & (t->cap - 1)) {
        kp_keyentry *e = SLOT(t, i);
        if (!e->hash)
            break;
        if (e->hash == hash && e->key_len == key.len &&
            !memcmp(t->arena + e->key_off, key.ptr, key.len)) {
            *created = 0;
            return e;
        }
    }
    kp_keyentry *e = SLOT(t, i);
    if (arena_add(t, key, &e->key_off) != 0)
        return NULL;
    e->hash = hash;
    e->key_len = (uint32_t)key.len;
    memset(kp_keyentry_value(e), 0, t->value_size);
    t->n++;
    *created = 1;
    return e;
}

kp_keyentry *kp_keytable_next(const kp_keytable *t, size_t *i)
{
    while (*i < t->cap) {
        kp_keyentry *e = SLOT(t, *i);
        (*i)++;
        if (e->hash)
            return e;
    }
    return NULL;
}

size_t kp_keytable_bytes(const kp_keytable *t)
{
    return t->cap * t->entry_size + t->arena_cap;
}
