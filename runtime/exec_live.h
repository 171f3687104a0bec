/* Live counters of one subtask, readable by another thread while the run goes on (a
 * taskmanager reports them to the jobmanager every heartbeat). The caller owns an array of
 * them and names it in kp_exec_config.live; the executor finds each local subtask's entry by
 * (task_id, subtask) and its subtask thread alone writes it, once per batch or poll — never
 * per record — with relaxed atomic stores of its running totals. A reader sees each counter
 * as of some recent batch (the counters are not a consistent snapshot of one another). */
#ifndef KP_EXEC_LIVE_H
#define KP_EXEC_LIVE_H

#include <stdatomic.h>

typedef struct kp_subtask_live {
    int task_id, subtask;      /* set by the caller: the plan's task id (head node id) and index */
    atomic_llong records_in;   /* sources: records read; others: records received */
    atomic_llong bytes_in;     /* sources: bytes read */
    atomic_llong records_out;  /* records its chain sent to an exchange or wrote to a sink */
    atomic_llong watermark_ms; /* the watermark it passed on; KP_TIME_MIN before the first */
} kp_subtask_live;

/* Adds n to a counter only the calling thread writes. @locality the subtask's thread */
static inline void kp_live_add(atomic_llong *c, long long n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Reads a counter. @locality any thread */
static inline long long kp_live_get(const atomic_llong *c)
{
    return atomic_load_explicit((atomic_llong *)c, memory_order_relaxed);
}

#endif
