/* The slower half of a subtask's live counters (exec_live.h): its channel wait times and its
 * connectors' stats JSON, published by the subtask thread at most once a second or tick —
 * never per record — for the taskmanager to report every heartbeat. */
#include <string.h>

#include "channel.h"
#include "clock.h"
#include "exec_live.h"

void kp_live_publish_waits(kp_subtask_live *l, double idle_s)
{
    kp_channel_waits w;
    kp_channel_waits_get(&w);
    atomic_store_explicit(&l->blocked_us, (long long)(w.blocked_s * 1e6), memory_order_relaxed);
    atomic_store_explicit(&l->starved_us, (long long)((w.starved_s + idle_s) * 1e6),
                          memory_order_relaxed);
}

int kp_live_json_due(kp_live_json *j)
{
    long long now = kp_mono_ms();
    if (now < j->next_ms)
        return 0;
    j->next_ms = now + KP_LIVE_JSON_EVERY_MS;
    return 1;
}

void kp_live_json_put(kp_live_json *j, const char *s, size_t n)
{
    int free_ = 0;
    if (!atomic_compare_exchange_strong_explicit(&j->lock, &free_, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        return; /* a reader is copying: the next publication will do */
    n = n < sizeof j->buf - 1 ? n : sizeof j->buf - 1;
    memcpy(j->buf, s, n);
    j->buf[n] = 0;
    j->len = (int)n;
    atomic_store_explicit(&j->lock, 0, memory_order_release);
}

size_t kp_live_json_get(kp_live_json *j, char *out, size_t cap)
{
    int free_ = 0;
    while (!atomic_compare_exchange_weak_explicit(&j->lock, &free_, 1, memory_order_acquire,
                                                  memory_order_relaxed))
        free_ = 0; /* the writer holds it for one memcpy */
    size_t n = (size_t)j->len < cap ? (size_t)j->len : (cap ? cap - 1 : 0);
    memcpy(out, j->buf, n);
    if (cap)
        out[n] = 0;
    atomic_store_explicit(&j->lock, 0, memory_order_release);
    return n;
}
