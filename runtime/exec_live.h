/* Live counters of one subtask, readable by another thread while the run goes on (a
 * taskmanager reports them to the jobmanager every heartbeat). The caller owns an array of
 * them and names it in kp_exec_config.live; the executor finds each local subtask's entry by
 * (task_id, subtask) and its subtask thread alone writes it, once per batch or poll — never
 * per record — with relaxed atomic stores of its running totals. A reader sees each counter
 * as of some recent batch (the counters are not a consistent snapshot of one another). */
#ifndef KP_EXEC_LIVE_H
#define KP_EXEC_LIVE_H

#include <stdatomic.h>
#include <stddef.h>

/* A connector's stats JSON (connector.h: stats), published by the subtask thread at most
 * every KP_LIVE_JSON_EVERY_MS and copied by a reader; a tiny lock (the writer skips a
 * publication rather than wait, the reader waits only for a copy of len bytes). */
#define KP_LIVE_JSON_MAX      8192
#define KP_LIVE_JSON_EVERY_MS 1000
typedef struct kp_live_json {
    atomic_int lock;
    long long next_ms; /* the writer's own: mono ms of the next publication */
    int len;           /* 0 = nothing published */
    char buf[KP_LIVE_JSON_MAX];
} kp_live_json;

typedef struct kp_subtask_live {
    int task_id, subtask;      /* set by the caller: the plan's task id (head node id) and index */
    atomic_llong records_in;   /* sources: records read; others: records received */
    atomic_llong bytes_in;     /* sources: bytes read */
    atomic_llong records_out;  /* records its chain sent to an exchange or wrote to a sink */
    atomic_llong watermark_ms; /* the watermark it passed on; KP_TIME_MIN before the first */
    atomic_llong bytes_out;    /* sinks: bytes of the records written (key + value) */
    atomic_llong blocked_us;   /* its thread's time blocked on exchange credits (channel.h) */
    atomic_llong starved_us;   /* ... and waiting for input */
    atomic_llong state_bytes;  /* keyed operators: their state in memory (write-back caches)
                                  and in RocksDB (SST files), reported on their tick once a
                                  second (kp_live_state) */
    kp_live_json source;       /* its source reader's stats plus per-partition watermarks */
    kp_live_json sink;         /* its sink writer's stats */
    /* the reporter's own (the taskmanager's heartbeat): its previous reading, for ratios */
    long long rep_mono_us, rep_blocked_us, rep_starved_us;
} kp_subtask_live;

/* Copies the calling thread's channel waits (channel.h) into l, plus idle_s seconds of other
 * waiting for input (a source's polls that brought nothing). @locality the subtask's thread,
 * once per poll or tick */
void kp_live_publish_waits(kp_subtask_live *l, double idle_s);

/* Whether j is due for a publication (mono clock); then the caller writes it with
 * kp_live_json_put. @locality the subtask's thread */
int kp_live_json_due(kp_live_json *j);
void kp_live_json_put(kp_live_json *j, const char *s, size_t n);

/* Copies the last publication into out (NUL-terminated); its length, 0 if none. @locality any */
size_t kp_live_json_get(kp_live_json *j, char *out, size_t cap);

/* Adds n to a counter only the calling thread writes. @locality the subtask's thread */
static inline void kp_live_add(atomic_llong *c, long long n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Reads a counter. @locality any thread */
/* A keyed operator's state size: its subtask's state_bytes moves by the change since the
 * operator's previous report (*reported), at most once a second (*next_ms, mono ms); several
 * keyed operators of one chain add up. l may be NULL (no live counters). @locality the
 * operator's subtask thread */
static inline void kp_live_state(struct kp_subtask_live *l, long long *reported, long long *next_ms,
                                 long long now_ms, long long bytes)
{
    if (!l || now_ms < *next_ms)
        return;
    *next_ms = now_ms + 1000;
    kp_live_add(&l->state_bytes, bytes - *reported);
    *reported = bytes;
}

static inline long long kp_live_get(const atomic_llong *c)
{
    return atomic_load_explicit((atomic_llong *)c, memory_order_relaxed);
}

#endif
