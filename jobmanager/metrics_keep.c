/* Keeps what a Metrics report carries beyond records and watermark (docs/rest.md, "Only real
 * data"): bytes in/out, the share of time the subtask was backpressured, idle and busy since
 * its previous report, and its connectors' stats JSON (exec_live.h) — a Kafka source's
 * per-partition offsets, end offsets, lag and carried watermarks, an Elasticsearch sink's
 * documents, bulk latency, retries, stale and failed items. Served by rest_metrics.c and
 * metrics_prom.c. @locality the control thread, @locks jm->lock held */
#include <string.h>

#include "control.pb-c.h"
#include "jm.h"

/* A JSON object text that fits, else "" (a truncated text would not parse). */
static void keep_json(char dst[KP_JM_STATS_MAX], const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= KP_JM_STATS_MAX || (n && src[0] != '{'))
        n = 0;
    memcpy(dst, src, n);
    dst[n] = 0;
}

void kp_jm_keep_metrics(kp_jm_sub_t *sub, const Kappa__Control__Metrics *m)
{
    if (!sub)
        return;
    sub->bytes_in = m->bytes_in;
    sub->bytes_out = m->bytes_out;
    sub->state_bytes = m->state_bytes;
    /* proto3 doubles default to 0: a taskmanager that does not measure sends all three 0 */
    bool measured = m->busy_ratio + m->idle_ratio + m->backpressured_ratio > 0.5;
    sub->ratio_backpressured = measured ? m->backpressured_ratio : -1;
    sub->ratio_idle = measured ? m->idle_ratio : -1;
    sub->ratio_busy = measured ? m->busy_ratio : -1;
    keep_json(sub->source_json, m->source_json);
    keep_json(sub->sink_json, m->sink_json);
}
