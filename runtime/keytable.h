/* A hash table from key bytes to a fixed-size value, for per-key operator state held in
 * memory (window panes, sessions, process-function values).
 *
 * Open addressing with linear probing; entries store the key's hash and the offset of its
 * bytes in the table's own arena, followed by the value, so a lookup touches one cache line
 * in the common case and nothing is allocated per record. A key is removed one by one with
 * kp_keytable_remove (state that was cleared) or all at once with kp_keytable_clear (how
 * windows purge panes); removal leaves no tombstones and the table returns the memory of
 * removed keys (slots shrink when mostly empty, the key arena is rebuilt when more than half
 * of it is garbage), so a table with rotating keys stays the size of its live keys.
 *
 * The home slot comes from the hash's HIGH bits: the low bits pick the key group
 * (kp_key_group), so a subtask's keys all share a few low-bit residues.
 *
 * @locality one subtask thread owns a table; no locks. */
#ifndef KP_KEYTABLE_H
#define KP_KEYTABLE_H

#include <stddef.h>
#include <stdint.h>

#include <kappa/kappa.h>

typedef struct kp_keytable {
    size_t value_size;
    size_t entry_size; /* header + value, 8-byte aligned */
    size_t n, cap;     /* cap is a power of two; 0 when empty */
    unsigned bits;     /* cap == 2^bits when cap > 0 */
    uint8_t *slots;
    char *arena;
    size_t arena_len, arena_cap;
    size_t arena_dead; /* bytes of removed keys still in the arena */
} kp_keytable;

typedef struct kp_keyentry {
    uint64_t hash; /* 0 marks an empty slot; real hashes are forced non-zero */
    uint32_t key_off;
    uint32_t key_len;
    /* value_size bytes follow */
} kp_keyentry;

void kp_keytable_init(kp_keytable *t, size_t value_size);
void kp_keytable_free(kp_keytable *t);
void kp_keytable_clear(kp_keytable *t);

/* The entry for `key` (hash from kp_hash64), inserting a zero-filled one if absent.
 * *created says which. NULL on allocation failure. Pointers are valid until the next insert
 * or removal. */
kp_keyentry *kp_keytable_upsert(kp_keytable *t, uint64_t hash, kp_bytes key, int *created);

/* The entry for `key`, or NULL. */
kp_keyentry *kp_keytable_find(const kp_keytable *t, uint64_t hash, kp_bytes key);

/* Removes entry `e` (from upsert, find or next of this table). Never fails. Every pointer
 * into the table (entries, values, key bytes) is invalid afterwards, since entries move and
 * the table may shrink. Do not remove while iterating with kp_keytable_next: collect the
 * keys first, then find and remove each. */
void kp_keytable_remove(kp_keytable *t, kp_keyentry *e);

static inline void *kp_keyentry_value(kp_keyentry *e)
{
    return (uint8_t *)e + sizeof(kp_keyentry);
}

static inline kp_bytes kp_keytable_key(const kp_keytable *t, const kp_keyentry *e)
{
    return (kp_bytes){t->arena + e->key_off, e->key_len};
}

/* Iteration: for (i = 0; (e = kp_keytable_next(t, &i));) — skips empty slots. */
kp_keyentry *kp_keytable_next(const kp_keytable *t, size_t *i);

/* The entry in slot i (i - 1 after kp_keytable_next returned it), while nothing is inserted or
 * removed: a 4-byte handle to an entry. */
static inline kp_keyentry *kp_keytable_at(const kp_keytable *t, size_t i)
{
    return (kp_keyentry *)(t->slots + i * t->entry_size);
}

/* The mean number of slots a successful lookup probes (1 = every key in its home slot),
 * over the table's present keys; 0 for an empty table. O(cap): for benchmarks and tests,
 * it shows clustering without timing anything. */
double kp_keytable_mean_probes(const kp_keytable *t);

/* Bytes held by the table (slots + arena capacity, garbage included until compacted). */
size_t kp_keytable_bytes(const kp_keytable *t);
/* What kp_keytable_bytes would be after upserting a key of klen bytes that is not in the table
 * (the slots double at 3/4 full, the arena when the key does not fit): lets a cache make room
 * before a table grows past its budget. */
size_t kp_keytable_bytes_after_insert(const kp_keytable *t, size_t klen);

#endif
