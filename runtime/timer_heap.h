/* Timers of keyed operators: a binary min-heap ordered by `when`. Each timer owns a copy of
 * its key in the heap's own arena, so operators may drop keys from their key tables
 * (kp_keytable_remove) while timers for them are pending. The arena is compacted when most of
 * it is garbage (keys of popped timers), so its size follows the number of pending timers,
 * not the number ever pushed. Session windows and process functions use it.
 * @locality one subtask thread (the owning operator's); no locks. */
#ifndef KP_TIMER_HEAP_H
#define KP_TIMER_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kappa/kappa.h>

typedef struct kp_timer {
    kp_time when;
    kp_time aux; /* the owner's own datum (sessions: the session end it is for) */
    uint64_t hash;
    uint32_t key_off, key_len; /* the key's bytes in the heap's arena (kp_timer_key) */
} kp_timer;

typedef struct kp_timer_heap {
    kp_timer *a;
    size_t n, cap;
    char *arena;       /* keys of the timers in `a` (and garbage) */
    size_t used, acap; /* bytes used / allocated in arena */
    size_t live;       /* bytes of keys of the timers in `a` */
} kp_timer_heap;

/* Pushes a timer for `key` (copied; it may point into this heap's arena, e.g. a key from
 * kp_timer_key). 0, or -1 when out of memory (the heap is unchanged). */
int kp_timer_push(kp_timer_heap *h, kp_time when, kp_time aux, uint64_t hash, kp_bytes key);

/* Removes and returns the earliest timer; the heap must not be empty. The popped timer's key
 * (kp_timer_key) stays valid until the next push, pop or filter. */
kp_timer kp_timer_pop(kp_timer_heap *h);

/* The key of a timer in the heap or just popped from it. */
static inline kp_bytes kp_timer_key(const kp_timer_heap *h, const kp_timer *t)
{
    return (kp_bytes){h->arena + t->key_off, t->key_len};
}

/* Keeps only the timers for which keep(arg, h, t) is true (called once per timer, in the
 * order of the array: by time, hash and key after kp_timer_heap_sort), restores the heap
 * order and compacts the arena. O(n). For owners that delete timers lazily: they rebuild the
 * heap once stale timers outnumber live ones. */
void kp_timer_heap_filter(kp_timer_heap *h,
                          bool (*keep)(void *arg, const kp_timer_heap *h, const kp_timer *t),
                          void *arg);

/* Sorts the timers by time, then hash, key and aux (a sorted array is a valid heap), so that
 * identical timers (kp_timer_same) are next to each other. O(n log n). */
void kp_timer_heap_sort(kp_timer_heap *h);

/* 1 if timers a and b of `h` are identical: the same time, aux, hash and key. */
bool kp_timer_same(const kp_timer_heap *h, const kp_timer *a, const kp_timer *b);

/* Bytes held by the heap (timer array + key arena). */
size_t kp_timer_heap_bytes(const kp_timer_heap *h);

void kp_timer_heap_free(kp_timer_heap *h);

#endif
