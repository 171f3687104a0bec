/* Per-key in-memory state table; see keytable.h.
 *
 * Linear probing without tombstones: removal shifts the entries of the probe run that
 * follows back into the hole (backward-shift deletion), so a lookup still stops at the first
 * empty slot. Key bytes live in an append-only arena; a removed key's bytes become garbage,
 * counted in arena_dead, and the arena is rebuilt (live keys only) once garbage exceeds live
 * bytes, so memory follows what is live at an amortised O(1) cost per removal. */
#include "keytable.h"

#include <stdlib.h>
#include <string.h>

#define SLOT(t, i) ((kp_keyentry *)((t)->slots + (i) * (t)->entry_size))
#define MIN_CAP    64
#define MIN_ARENA  4096

/* The home slot of a hash in a table of 2^bits slots: the hash's top bits. Not the low bits,
 * which pick the key group (kp_key_group: hash % 128): the keys of one subtask of p share
 * 128/p low-bit residues, so indexing by them leaves all but 1/p of the home slots unused
 * (long probe runs, slower as p grows). kp_hash64 mixes every bit, so the top bits of one
 * subtask's keys are as uniform as anyone's. */
static inline size_t home(uint64_t hash, unsigned bits)
{
    return (size_t)(hash >> (64 - bits));
}

static unsigned log2_cap(size_t cap)
{
    unsigned bits = 0;
    while (((size_t)1 << bits) < cap)
        bits++;
    return bits;
}

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
    t->arena_dead = 0;
}

static inline uint64_t fix_hash(uint64_t h)
{
    return h ? h : 1;
}

/* Moves every entry into a fresh slot array of `cap` slots (a power of two > n). */
static int resize(kp_keytable *t, size_t cap)
{
    uint8_t *slots = calloc(cap, t->entry_size);
    if (!slots)
        return -1;
    unsigned bits = log2_cap(cap);
    for (size_t i = 0; i < t->cap; i++) {
        kp_keyentry *e = SLOT(t, i);
        if (!e->hash)
            continue;
        size_t j = home(e->hash, bits);
        while (((kp_keyentry *)(slots + j * t->entry_size))->hash)
            j = (j + 1) & (cap - 1);
        memcpy(slots + j * t->entry_size, e, t->entry_size);
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    t->bits = bits;
    return 0;
}

static int arena_add(kp_keytable *t, kp_bytes key, uint32_t *off)
{
    if (t->arena_len + key.len > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap * 2 : MIN_ARENA;
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
    *off = (uint32_t)t->arena_len;
    if (key.len)
        memcpy(t->arena + t->arena_len, key.ptr, key.len);
    t->arena_len += key.len;
    return 0;
}

kp_keyentry *kp_keytable_find(const kp_keytable *t, uint64_t hash, kp_bytes key)
{
    if (!t->cap)
        return NULL;
    hash = fix_hash(hash);
    for (size_t i = home(hash, t->bits);; i = (i + 1) & (t->cap - 1)) {
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
    if ((t->n + 1) * 4 > t->cap * 3) { /* full for a new key: grow, unless the key is there */
        kp_keyentry *e = kp_keytable_find(t, hash, key);
        if (e) {
            *created = 0;
            return e;
        }
        if (resize(t, t->cap ? t->cap * 2 : MIN_CAP) != 0)
            return NULL;
    }
    size_t i = home(hash, t->bits);
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

/* Copies the live keys into a fresh arena sized for them. On allocation failure the table
 * keeps its garbage (still correct) and the next removal tries again. */
static void compact_arena(kp_keytable *t)
{
    size_t live = t->arena_len - t->arena_dead;
    size_t cap = 0;
    char *arena = NULL;
    if (live) {
        cap = MIN_ARENA;
        while (cap < live)
            cap *= 2;
        arena = malloc(cap);
        if (!arena)
            return;
    }
    size_t len = 0;
    for (size_t i = 0; i < t->cap; i++) {
        kp_keyentry *e = SLOT(t, i);
        if (!e->hash || !e->key_len)
            continue;
        memcpy(arena + len, t->arena + e->key_off, e->key_len);
        e->key_off = (uint32_t)len;
        len += e->key_len;
    }
    free(t->arena);
    t->arena = arena;
    t->arena_cap = cap;
    t->arena_len = len;
    t->arena_dead = 0;
}

void kp_keytable_remove(kp_keytable *t, kp_keyentry *e)
{
    const size_t mask = t->cap - 1;
    size_t hole = (size_t)((uint8_t *)e - t->slots) / t->entry_size;
    t->arena_dead += e->key_len;
    t->n--;
    /* Backward shift: an entry after the hole moves into it unless its home lies cyclically
     * in (hole, j], i.e. unless moving it would put it before its home. */
    for (size_t j = (hole + 1) & mask;; j = (j + 1) & mask) {
        kp_keyentry *f = SLOT(t, j);
        if (!f->hash)
            break;
        size_t h = home(f->hash, t->bits);
        if (((j - h) & mask) >= ((j - hole) & mask)) {
            memcpy(SLOT(t, hole), f, t->entry_size);
            hole = j;
        }
    }
    memset(SLOT(t, hole), 0, t->entry_size);

    if (t->cap > MIN_CAP && t->n * 8 < t->cap) {
        size_t cap = t->cap;
        while (cap > MIN_CAP && t->n * 4 < cap)
            cap /= 2;
        (void)resize(t, cap); /* on failure the larger table stays, still correct */
    }
    if (t->arena_dead > t->arena_len - t->arena_dead)
        compact_arena(t);
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

double kp_keytable_mean_probes(const kp_keytable *t)
{
    if (!t->n)
        return 0;
    size_t sum = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const kp_keyentry *e = SLOT(t, i);
        if (e->hash)
            sum += 1 + ((i - home(e->hash, t->bits)) & (t->cap - 1));
    }
    return (double)sum / (double)t->n;
}

size_t kp_keytable_bytes_after_insert(const kp_keytable *t, size_t klen)
{
    size_t cap = (t->n + 1) * 4 > t->cap * 3 ? (t->cap ? t->cap * 2 : MIN_CAP) : t->cap;
    size_t arena = t->arena_cap;
    if (t->arena_len + klen > arena)
        for (arena = arena ? arena * 2 : MIN_ARENA; arena < t->arena_len + klen;)
            arena *= 2;
    return cap * t->entry_size + arena;
}

size_t kp_keytable_bytes(const kp_keytable *t)
{
    return t->cap * t->entry_size + t->arena_cap;
}
