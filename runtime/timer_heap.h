/* Timers of keyed operators: a binary min-heap ordered by `when`, each timer naming its key by
 * hash and position in the operator's key table arena (which only grows, so positions stay
 * valid). Session windows and process functions use it. Owned by one subtask thread. */
#ifndef KP_TIMER_HEAP_H
#define KP_TIMER_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include <kappa/kappa.h>

typedef struct kp_timer {
    kp_time when;
    kp_time aux; /* the owner's own datum (sessions: the session end it is for) */
    uint64_t hash;
    uint32_t key_off, key_len;
} kp_timer;

typedef struct kp_timer_heap {
    kp_timer *a;
    size_t n, cap;
} kp_timer_heap;

/* 0, or -1 when out of memory. */
int kp_timer_push(kp_timer_heap *h, kp_timer t);

/* Removes and returns the earliest timer; the heap must not be empty. */
kp_timer kp_timer_pop(kp_timer_heap *h);

void kp_timer_heap_free(kp_timer_heap *h);

#endif
