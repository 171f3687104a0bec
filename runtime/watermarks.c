/* Per-partition watermarks of a source subtask; see watermarks.h. */
#include "watermarks.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PARTITION 65535

void kp_wm_init(kp_wm_tracker *t, kp_time out_of_order, kp_time idle_timeout)
{
    memset(t, 0, sizeof *t);
    t->out_of_order = out_of_order;
    t->idle_timeout = idle_timeout;
}

void kp_wm_free(kp_wm_tracker *t)
{
    free(t->parts);
    t->parts = NULL;
    t->cap = 0;
}

static int grow(kp_wm_tracker *t, int need)
{
    if (need <= t->cap)
        return 0;
    int cap = t->cap ? t->cap : 16;
    while (cap < need)
        cap *= 2;
    kp_wm_part *p = realloc(t->parts, (size_t)cap * sizeof *p);
    if (!p)
        return -1;
    for (int i = t->cap; i < cap; i++)
        p[i] = (kp_wm_part){KP_TIME_MIN, 0, 0, 0, 0, -1};
    t->parts = p;
    t->cap = cap;
    return 0;
}

int kp_wm_own(kp_wm_tracker *t, int32_t partition, kp_time now)
{
    if (partition < -1 || partition > MAX_PARTITION || grow(t, partition + 2) != 0)
        return -1;
    kp_wm_part *p = &t->parts[partition + 1];
    if (!p->owned) {
        p->owned = 1;
        p->last_data = now;
    }
    return 0;
}

int kp_wm_assign(kp_wm_tracker *t, const int32_t *parts, int n, kp_time now)
{
    for (int i = 0; i < t->cap; i++)
        t->parts[i].owned = -t->parts[i].owned; /* mark: owned before */
    for (int i = 0; i < n; i++) {
        if (parts[i] < -1 || parts[i] > MAX_PARTITION || grow(t, parts[i] + 2) != 0)
            return -1;
        kp_wm_part *p = &t->parts[parts[i] + 1];
        if (p->owned == 0)
            p->last_data = now; /* newly owned */
        p->owned = 1;
    }
    for (int i = 0; i < t->cap; i++)
        if (t->parts[i].owned < 0)
            t->parts[i].owned = 0; /* no longer owned */
    return 0;
}

kp_time kp_wm_current(const kp_wm_tracker *t, kp_time now, int *all_idle)
{
    kp_time wm = KP_TIME_MAX;
    int owned = 0, active = 0;
    for (int i = 0; i < t->cap; i++) {
        const kp_wm_part *p = &t->parts[i];
        if (!p->owned)
            continue;
        owned++;
        if (p->ended)
            continue;
        if (t->idle_timeout > 0 && p->caught_up != 0 && now - p->last_data >= t->idle_timeout)
            continue; /* caught up (or cannot tell) and silent: idle */
        active++;
        kp_time w = kp_wm_of(t, p);
        wm = w < wm ? w : wm;
    }
    int ended = 0;
    for (int i = 0; i < t->cap; i++)
        ended += t->parts[i].owned && t->parts[i].ended;
    *all_idle = owned == 0 || (active == 0 && ended < owned);
    return wm;
}
