/* Binary min-heap of operator timers; see timer_heap.h. */
#include "timer_heap.h"

#include <stdlib.h>

int kp_timer_push(kp_timer_heap *h, kp_timer t)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        kp_timer *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return -1;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && h->a[(i - 1) / 2].when > t.when) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = t;
    return 0;
}

kp_timer kp_timer_pop(kp_timer_heap *h)
{
    kp_timer top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1].when < h->a[c].when)
            c++;
        if (last.when <= h->a[c].when)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return top;
}

void kp_timer_heap_free(kp_timer_heap *h)
{
    free(h->a);
    *h = (kp_timer_heap){0};
}
