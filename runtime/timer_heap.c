/* Binary min-heap of operator timers with their keys in an arena of its own; see
 * timer_heap.h. */
#include "timer_heap.h"

#include <stdlib.h>
#include <string.h>

/* Below this many arena bytes compaction is not worth it. */
#define MIN_COMPACT 4096

/* Copies the keys of the timers in the heap into a fresh arena; -1 (nothing changed) when out
 * of memory. Invalidates the key of a timer popped before. */
static int compact(kp_timer_heap *h)
{
    size_t cap = h->live * 2 > MIN_COMPACT ? h->live * 2 : MIN_COMPACT;
    char *arena = malloc(cap);
    if (!arena)
        return -1;
    size_t used = 0;
    for (size_t i = 0; i < h->n; i++) {
        memcpy(arena + used, h->arena + h->a[i].key_off, h->a[i].key_len);
        h->a[i].key_off = (uint32_t)used;
        used += h->a[i].key_len;
    }
    free(h->arena);
    h->arena = arena;
    h->used = used;
    h->acap = cap;
    return 0;
}

/* Compacts when more than half of a not-small arena is garbage. Failure is harmless: the
 * arena just stays as it is. */
static void maybe_compact(kp_timer_heap *h)
{
    if (h->used > MIN_COMPACT && h->used - h->live > h->live)
        (void)compact(h);
}

static void sift_up(kp_timer_heap *h, size_t i, kp_timer t)
{
    while (i > 0 && h->a[(i - 1) / 2].when > t.when) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = t;
}

static void sift_down(kp_timer_heap *h, size_t i, kp_timer t)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1].when < h->a[c].when)
            c++;
        if (t.when <= h->a[c].when)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    h->a[i] = t;
}

int kp_timer_push(kp_timer_heap *h, kp_time when, kp_time aux, uint64_t hash, kp_bytes key)
{
    /* The key may live in our own arena (a just-popped timer's key): remember its offset, and
     * do not compact it away. */
    bool own = h->arena && key.len && key.ptr >= h->arena && key.ptr < h->arena + h->used;
    size_t own_off = own ? (size_t)(key.ptr - h->arena) : 0;
    if (!own)
        maybe_compact(h);
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        kp_timer *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -1;
        h->a = a;
        h->cap = cap;
    }
    if (h->used + key.len > UINT32_MAX)
        return -1; /* offsets are 32-bit: 4 GiB of pending keys */
    if (h->used + key.len > h->acap) {
        size_t cap = h->acap ? h->acap : MIN_COMPACT;
        while (cap < h->used + key.len)
            cap *= 2;
        char *arena = realloc(h->arena, cap);
        if (!arena)
            return -1;
        h->arena = arena;
        h->acap = cap;
    }
    if (key.len)
        memmove(h->arena + h->used, own ? h->arena + own_off : key.ptr, key.len);
    kp_timer t = {when, aux, hash, (uint32_t)h->used, (uint32_t)key.len};
    h->used += key.len;
    h->live += key.len;
    sift_up(h, h->n++, t);
    return 0;
}

kp_timer kp_timer_pop(kp_timer_heap *h)
{
    maybe_compact(h);
    kp_timer top = h->a[0], last = h->a[--h->n];
    if (h->n)
        sift_down(h, 0, last);
    h->live -= top.key_len;
    return top;
}

void kp_timer_heap_filter(kp_timer_heap *h,
                          bool (*keep)(void *arg, const kp_timer_heap *h, const kp_timer *t),
                          void *arg)
{
    size_t n = 0, live = 0;
    for (size_t i = 0; i < h->n; i++)
        if (keep(arg, h, &h->a[i])) {
            live += h->a[i].key_len;
            h->a[n++] = h->a[i];
        }
    h->n = n;
    h->live = live;
    for (size_t i = n / 2; i-- > 0;)
        sift_down(h, i, h->a[i]);
    maybe_compact(h);
}

static int timer_cmp(const void *pa, const void *pb, void *arg)
{
    const kp_timer *a = pa, *b = pb;
    const char *arena = arg;
    if (a->when != b->when)
        return a->when < b->when ? -1 : 1;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    uint32_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int d = n ? memcmp(arena + a->key_off, arena + b->key_off, n) : 0;
    if (d || a->key_len != b->key_len)
        return d ? d : a->key_len < b->key_len ? -1 : 1;
    return (a->aux > b->aux) - (a->aux < b->aux);
}

void kp_timer_heap_sort(kp_timer_heap *h)
{
    if (h->n > 1)
        qsort_r(h->a, h->n, sizeof *h->a, timer_cmp, h->arena);
}

bool kp_timer_same(const kp_timer_heap *h, const kp_timer *a, const kp_timer *b)
{
    return timer_cmp(a, b, h->arena) == 0;
}

size_t kp_timer_heap_bytes(const kp_timer_heap *h)
{
    return h->cap * sizeof *h->a + h->acap;
}

void kp_timer_heap_free(kp_timer_heap *h)
{
    free(h->a);
    free(h->arena);
    *h = (kp_timer_heap){0};
}
