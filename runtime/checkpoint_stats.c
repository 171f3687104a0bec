/* Checkpoint statistics and their Flink-shaped JSON (checkpoint_stats.h). Sizes and times of
 * a checkpoint are the sums and maxima of its acknowledgements; "checkpointed_size" is what
 * this checkpoint wrote (incremental), "state_size" the whole state it names. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_stats.h"

static void stats_free(kp_ckpt_stats *s)
{
    if (!s)
        return;
    free(s->sub);
    free(s->failure);
    free(s->path);
    free(s);
}

void kp_ckpt_history_free(kp_ckpt_history *h)
{
    for (int i = 0; i < h->n; i++)
        stats_free(h->s[i]);
    free(h->s);
    free(h->restored_path);
    memset(h, 0, sizeof *h);
}

kp_ckpt_stats *kp_ckpt_history_add(kp_ckpt_history *h, int64_t id, int savepoint,
                                   kp_time trigger_ms, const int *tasks, const int *subtasks, int n)
{
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        kp_ckpt_stats **s = realloc(h->s, (size_t)cap * sizeof *s);
        if (!s)
            return NULL;
        h->s = s;
        h->cap = cap;
    }
    kp_ckpt_stats *s = calloc(1, sizeof *s);
    if (!s || !(s->sub = calloc(n ? (size_t)n : 1, sizeof *s->sub))) {
        free(s);
        return NULL;
    }
    s->id = id;
    s->savepoint = savepoint;
    s->trigger_ms = trigger_ms;
    s->nsub = n;
    for (int i = 0; i < n; i++) {
        s->sub[i].task = tasks[i];
        s->sub[i].subtask = subtasks[i];
    }
    h->s[h->n++] = s;
    h->total++;
    return s;
}

void kp_ckpt_stats_ack(kp_ckpt_stats *s, int i, kp_time now_ms, const char *ack_json)
{
    kp_ckpt_sub_stats *u = &s->sub[i];
    json_t *a = json_loads(ack_json, 0, NULL);
    u->acked = 1;
    u->ack_ms = now_ms;
    u->align_ms = json_number_value(json_object_get(a, "align_ms"));
    u->sync_ms = json_number_value(json_object_get(a, "sync_ms"));
    u->async_ms = json_number_value(json_object_get(a, "async_ms"));
    u->bytes = json_integer_value(json_object_get(a, "bytes"));
    u->incremental = json_integer_value(json_object_get(a, "incremental_bytes"));
    json_decref(a);
    s->nacked++;
    s->latest_ack_ms = now_ms;
    s->bytes += u->bytes;
    s->incremental += u->incremental;
}

kp_ckpt_stats *kp_ckpt_history_find(const kp_ckpt_history *h, int64_t id)
{
    for (int i = h->n - 1; i >= 0; i--)
        if (h->s[i]->id == id)
            return h->s[i];
    return NULL;
}

/* Drops the oldest ended entries beyond KP_CKPT_HISTORY. */
static void trim(kp_ckpt_history *h)
{
    int ended = 0;
    for (int i = 0; i < h->n; i++)
        ended += h->s[i]->status != KP_CKPT_IN_PROGRESS;
    int w = 0;
    for (int i = 0; i < h->n; i++) {
        if (ended > KP_CKPT_HISTORY && h->s[i]->status != KP_CKPT_IN_PROGRESS) {
            stats_free(h->s[i]);
            ended--;
            continue;
        }
        h->s[w++] = h->s[i];
    }
    h->n = w;
}

void kp_ckpt_history_end(kp_ckpt_history *h, kp_ckpt_stats *s, kp_ckpt_status status,
                         kp_time now_ms, const char *path_or_failure)
{
    s->status = status;
    s->end_ms = now_ms;
    char *text = path_or_failure ? strdup(path_or_failure) : NULL;
    if (status == KP_CKPT_COMPLETED) {
        h->completed++;
        s->path = text;
    } else {
        h->failed++;
        s->failure = text;
    }
    trim(h);
}

static const char *status_name(kp_ckpt_status s)
{
    return s == KP_CKPT_COMPLETED ? "COMPLETED" : s == KP_CKPT_FAILED ? "FAILED" : "IN_PROGRESS";
}

static json_int_t duration(const kp_ckpt_stats *s)
{
    kp_time end = s->status == KP_CKPT_IN_PROGRESS ? s->latest_ack_ms : s->end_ms;
    return end > s->trigger_ms ? (json_int_t)(end - s->trigger_ms) : 0;
}

static double max_align(const kp_ckpt_stats *s)
{
    double m = 0;
    for (int i = 0; i < s->nsub; i++)
        if (s->sub[i].align_ms > m)
            m = s->sub[i].align_ms;
    return m;
}

static json_t *ckpt_json(const kp_ckpt_stats *s)
{
    json_t *j = json_pack(
        "{s:s, s:I, s:s, s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:b, s:o}",
        "className",
        s->status == KP_CKPT_COMPLETED ? ".CompletedCheckpointStatistics"
        : s->status == KP_CKPT_FAILED  ? ".FailedCheckpointStatistics"
                                       : ".PendingCheckpointStatistics",
        "id", (json_int_t)s->id, "status", status_name(s->status), "is_savepoint", s->savepoint,
        "checkpoint_type", s->savepoint ? "SAVEPOINT" : "CHECKPOINT", "trigger_timestamp",
        (json_int_t)s->trigger_ms, "latest_ack_timestamp", (json_int_t)s->latest_ack_ms,
        "checkpointed_size", (json_int_t)s->incremental, "state_size", (json_int_t)s->bytes,
        "end_to_end_duration", duration(s), "alignment_buffered", (json_int_t)0, "processed_data",
        (json_int_t)0, "persisted_data", (json_int_t)0, "num_subtasks", s->nsub,
        "num_acknowledged_subtasks", s->nacked, "discarded", 0, "tasks", json_object());
    if (!j)
        return NULL;
    json_object_set_new(j, "alignment_duration", json_real(max_align(s)));
    if (s->status == KP_CKPT_COMPLETED)
        json_object_set_new(j, "external_path", json_string(s->path ? s->path : ""));
    if (s->status == KP_CKPT_FAILED) {
        json_object_set_new(j, "failure_timestamp", json_integer(s->end_ms));
        json_object_set_new(j, "failure_message", json_string(s->failure ? s->failure : ""));
    }
    return j;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* {"min","max","avg","p50","p90","p95","p99","p999"} of v[0..n). */
static json_t *summary_of(int64_t *v, int n)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", .5}, {"p90", .9}, {"p95", .95}, {"p99", .99}, {"p999", .999}};
    json_t *j = json_object();
    if (n == 0) {
        json_object_set_new(j, "min", json_integer(0));
        json_object_set_new(j, "max", json_integer(0));
        json_object_set_new(j, "avg", json_integer(0));
        return j;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    int64_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    json_object_set_new(j, "min", json_integer(v[0]));
    json_object_set_new(j, "max", json_integer(v[n - 1]));
    json_object_set_new(j, "avg", json_integer(sum / n));
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        int idx = (int)(qs[k].q * n);
        json_object_set_new(j, qs[k].name, json_real((double)v[idx < n ? idx : n - 1]));
    }
    return j;
}

static json_t *summary_json(const kp_ckpt_history *h)
{
    int64_t *v = malloc((size_t)(h->n ? h->n : 1) * 3 * sizeof *v);
    if (!v)
        return json_object();
    int64_t *size = v, *state = v + h->n, *dur = v + 2 * h->n;
    int n = 0;
    for (int i = 0; i < h->n; i++) {
        const kp_ckpt_stats *s = h->s[i];
        if (s->status != KP_CKPT_COMPLETED)
            continue;
        size[n] = s->incremental;
        state[n] = s->bytes;
        dur[n] = duration(s);
        n++;
    }
    json_t *j = json_object();
    json_object_set_new(j, "checkpointed_size", summary_of(size, n));
    json_object_set_new(j, "state_size", summary_of(state, n));
    json_object_set_new(j, "end_to_end_duration", summary_of(dur, n));
    free(v);
    return j;
}

/* The newest entry with status st (and savepoint flag sp, -1 = any), or NULL. */
static const kp_ckpt_stats *latest(const kp_ckpt_history *h, kp_ckpt_status st, int sp)
{
    for (int i = h->n - 1; i >= 0; i--)
        if (h->s[i]->status == st && (sp < 0 || h->s[i]->savepoint == sp))
            return h->s[i];
    return NULL;
}

static json_t *opt(const kp_ckpt_stats *s)
{
    return s ? ckpt_json(s) : json_null();
}

static char *dump(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

char *kp_ckpt_history_json(const kp_ckpt_history *h)
{
    int in_progress = 0;
    for (int i = 0; i < h->n; i++)
        in_progress += h->s[i]->status == KP_CKPT_IN_PROGRESS;
    json_t *restored = h->restored_id
                           ? json_pack("{s:I, s:I, s:b, s:s}", "id", (json_int_t)h->restored_id,
                                       "restore_timestamp", (json_int_t)h->restored_ms,
                                       "is_savepoint", h->restored_savepoint, "external_path",
                                       h->restored_path ? h->restored_path : "")
                           : json_null();
    json_t *hist = json_array();
    for (int i = h->n - 1; i >= 0; i--)
        json_array_append_new(hist, ckpt_json(h->s[i]));
    return dump(json_pack(
        "{s:{s:I, s:I, s:i, s:I, s:I}, s:o, s:{s:o, s:o, s:o, s:o}, s:o}", "counts", "restored",
        (json_int_t)h->restored, "total", (json_int_t)h->total, "in_progress", in_progress,
        "completed", (json_int_t)h->completed, "failed", (json_int_t)h->failed, "summary",
        summary_json(h), "latest", "completed", opt(latest(h, KP_CKPT_COMPLETED, 0)), "savepoint",
        opt(latest(h, KP_CKPT_COMPLETED, 1)), "failed", opt(latest(h, KP_CKPT_FAILED, -1)),
        "restored", restored, "history", hist));
}

static json_t *subtask_json(const kp_ckpt_stats *s, const kp_ckpt_sub_stats *u)
{
    if (!u->acked)
        return json_pack("{s:i, s:s}", "index", u->subtask, "status", "pending_or_failed");
    return json_pack("{s:i, s:s, s:I, s:I, s:I, s:I, s:{s:f, s:f}, s:{s:f, s:I, s:I, s:I}, "
                     "s:b, s:b}",
                     "index", u->subtask, "status", "completed", "ack_timestamp",
                     (json_int_t)u->ack_ms, "end_to_end_duration",
                     (json_int_t)(u->ack_ms - s->trigger_ms), "state_size", (json_int_t)u->bytes,
                     "checkpointed_size", (json_int_t)u->incremental, "checkpoint", "sync",
                     u->sync_ms, "async", u->async_ms, "alignment", "duration", u->align_ms,
                     "buffered", (json_int_t)0, "processed", (json_int_t)0, "persisted",
                     (json_int_t)0, "unaligned_checkpoint", 0, "aborted", 0);
}

/* The per-task aggregate of details, created on first use. */
static json_t *task_entry(json_t *tasks, const kp_ckpt_stats *s, int task)
{
    char key[16];
    snprintf(key, sizeof key, "%d", task);
    json_t *t = json_object_get(tasks, key);
    if (t)
        return t;
    t = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i, s:[]}", "id", key, "status",
                  status_name(s->status), "latest_ack_timestamp", (json_int_t)0,
                  "checkpointed_size", (json_int_t)0, "state_size", (json_int_t)0,
                  "end_to_end_duration", (json_int_t)0, "num_subtasks", 0,
                  "num_acknowledged_subtasks", 0, "subtasks");
    json_object_set_new(tasks, key, t);
    return t;
}

static void add_int(json_t *o, const char *key, json_int_t v, int take_max)
{
    json_int_t cur = json_integer_value(json_object_get(o, key));
    json_object_set_new(o, key, json_integer(take_max ? (v > cur ? v : cur) : cur + v));
}

char *kp_ckpt_details_json(const kp_ckpt_history *h, int64_t id)
{
    const kp_ckpt_stats *s = kp_ckpt_history_find(h, id);
    if (!s)
        return NULL;
    json_t *j = ckpt_json(s);
    json_t *tasks = json_object_get(j, "tasks");
    for (int i = 0; j && i < s->nsub; i++) {
        const kp_ckpt_sub_stats *u = &s->sub[i];
        json_t *t = task_entry(tasks, s, u->task);
        add_int(t, "num_subtasks", 1, 0);
        json_array_append_new(json_object_get(t, "subtasks"), subtask_json(s, u));
        if (!u->acked)
            continue;
        add_int(t, "num_acknowledged_subtasks", 1, 0);
        add_int(t, "state_size", u->bytes, 0);
        add_int(t, "checkpointed_size", u->incremental, 0);
        add_int(t, "latest_ack_timestamp", u->ack_ms, 1);
        add_int(t, "end_to_end_duration", u->ack_ms - s->trigger_ms, 1);
    }
    return dump(j);
}

char *kp_ckpt_config_json(const kp_ckpt_config *cfg)
{
    return dump(json_pack(
        "{s:s, s:I, s:I, s:I, s:i, s:i, s:{s:b, s:b}, s:s, s:s, s:i, s:b}", "mode",
        cfg->mode == KP_CKPT_AT_LEAST_ONCE ? "at_least_once" : "exactly_once", "interval",
        (json_int_t)cfg->interval_ms, "timeout",
        (json_int_t)(cfg->timeout_ms ? cfg->timeout_ms : 600000), "min_pause",
        (json_int_t)cfg->min_pause_ms, "max_concurrent",
        cfg->max_concurrent > 0 ? cfg->max_concurrent : 1, "tolerable_failed_checkpoints",
        cfg->tolerable_failures, "externalization", "enabled", 1, "delete_on_cancellation", 0,
        "state_backend", "RocksDB", "checkpoint_storage", cfg->dir ? cfg->dir : "",
        "checkpoints_retained", cfg->retain > 0 ? cfg->retain : 1, "unaligned_checkpoints", 0));
}
