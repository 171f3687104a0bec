/* REST views of one job beyond GET /jobs/:id (rest.c): the overview list, the plan, the
 * exceptions and the per-vertex routes, in Flink's shapes where our data has a counterpart. A
 * vertex is a task of the plan (its id is the task id). Everything comes from what the
 * jobmanager holds — the submitted graph and the taskmanagers' latest Metrics reports — so a
 * figure the engine does not report (backpressure ratios, bytes) is null with a "reason", never
 * made up. Rates are not kept here: clients derive them from two readings of the counters and
 * "now" (the dashboard does), Prometheus from /metrics with rate(). See docs/rest.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rest_int.h"

/* Builds the reply of a job view (jm->lock held); NULL means "out of memory". */
typedef json_t *(*job_view_fn)(kp_jm_t *jm, struct MHD_Connection *conn, const kp_jm_job_t *job,
                               size_t task);

/* The subtasks of task index t start at this index of job->subs. */
static size_t first_sub(const kp_jm_job_t *job, size_t t)
{
    size_t off = 0;
    for (size_t i = 0; i < t; i++)
        off += job->tasks[i].parallelism;
    return off;
}

/* Looks up the job (args->v[0]) and, when `vertex`, its task (args->v[1], a task id), builds
 * the view under the lock and sends it; 400/404 with the reason otherwise. */
static enum MHD_Result with_job(kp_jm_t *jm, struct MHD_Connection *conn,
                                const kp_rest_args_t *args, bool vertex, job_view_fn view)
{
    char id[KP_JM_NAME_MAX], vid[16];
    if (!kp_rest_seg(args->v[0], id, sizeof id) || !kp_manifest_name_ok(id))
        return kp_rest_send_error(conn, 400,
                                  "a job id or name is 1-127 characters of A-Z a-z 0-9 . _ -");
    char *end = NULL;
    long task_id = -1;
    if (vertex) {
        if (!kp_rest_seg(args->v[1], vid, sizeof vid) || (task_id = strtol(vid, &end, 10)) < 0 ||
            end == vid || *end)
            return kp_rest_send_error(conn, 400, "a vertex id is a task id: an integer >= 0");
    }
    pthread_mutex_lock(&jm->lock);
    kp_jm_job_t *job = kp_registry_find(jm, id);
    size_t t = 0;
    while (job && vertex && t < job->ntasks && job->tasks[t].id != task_id)
        t++;
    json_t *body = job && (!vertex || t < job->ntasks) ? view(jm, conn, job, t) : NULL;
    bool found = job && (!vertex || t < job->ntasks);
    pthread_mutex_unlock(&jm->lock);
    if (!found)
        return job ? kp_rest_send_error(conn, 404, "job %s has no vertex (task) %ld", id, task_id)
                   : kp_rest_send_error(conn, 404, "no job with the id or name '%s'", id);
    return body ? kp_rest_send_json(conn, 200, body)
                : kp_rest_send_error(conn, 500, "out of memory");
}

static json_t *watermark_json(kp_time wm)
{
    return wm == KP_TIME_MIN ? json_null() : json_integer(wm);
}

/* --- /jobs/overview --- */

/* Flink counts vertices per state; we count subtasks (what the taskmanagers report). */
static json_t *task_counts(const kp_jm_job_t *job)
{
    static const char *const keys[] = {"scheduled", "deploying", "running", "finished",
                                       "canceled",  "failed",    "lost"};
    size_t n[sizeof keys / sizeof keys[0]] = {0};
    for (size_t i = 0; i < job->nsubs; i++)
        if ((unsigned)job->subs[i].state < sizeof keys / sizeof keys[0])
            n[job->subs[i].state]++;
    json_t *o = json_pack("{s:I}", "total", (json_int_t)job->nsubs);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        json_object_set_new(o, keys[k], json_integer((json_int_t)n[k]));
    return o;
}

enum MHD_Result kp_rest_jobs_overview(kp_jm_t *jm, struct MHD_Connection *conn,
                                      const kp_rest_args_t *args)
{
    (void)args;
    json_t *jobs = json_array();
    kp_time now = kp_wall_ms();
    pthread_mutex_lock(&jm->lock);
    for (size_t i = 0; i < jm->njobs; i++) {
        const kp_jm_job_t *job = jm->jobs[i];
        json_t *o = kp_job_json(jm, job, false);
        kp_time last = job->start_time;
        for (int s = 0; s < KP_JOB_STATE_N_; s++)
            last = job->timestamps[s] > last ? job->timestamps[s] : last;
        kp_time end = kp_job_state_terminal(job->state) ? job->end_time : now;
        json_object_set_new(o, "duration",
                            json_integer(job->start_time ? end - job->start_time : 0));
        json_object_set_new(o, "last-modification", json_integer(last));
        json_object_set_new(o, "tasks", task_counts(job));
        json_array_append_new(jobs, o);
    }
    pthread_mutex_unlock(&jm->lock);
    return kp_rest_send_json(conn, 200, json_pack("{s:o}", "jobs", jobs));
}

/* --- /jobs/:id/plan --- */

/* The names of the operators chained into a graph task (its "nodes" ids looked up in the
 * graph's "nodes"). */
static json_t *operators_of(json_t *graph_nodes, json_t *ids)
{
    json_t *ops = json_array(), *nid, *node;
    size_t i, k;
    json_array_foreach(ids, i, nid)
    {
        json_array_foreach(graph_nodes, k, node)
        {
            if (json_equal(json_object_get(node, "id"), nid)) {
                json_array_append_new(ops, json_pack("{s:O,s:O,s:O}", "id", nid, "name",
                                                     json_object_get(node, "name"), "kind",
                                                     json_object_get(node, "kind")));
                break;
            }
        }
    }
    return ops;
}

static json_t *plan_view(kp_jm_t *jm, struct MHD_Connection *conn, const kp_jm_job_t *job,
                         size_t unused)
{
    (void)jm, (void)conn, (void)unused;
    json_t *graph = json_object_get(job->manifest, "graph");
    json_t *gnodes = json_object_get(graph, "nodes"), *gtasks = json_object_get(graph, "tasks");
    json_t *nodes = json_array(), *t;
    size_t i;
    json_array_foreach(gtasks, i, t)
    {
        json_t *up = json_object_get(t, "upstream");
        json_t *inputs = json_array();
        if (json_integer_value(up) >= 0)
            json_array_append_new(inputs,
                                  json_pack("{s:i,s:O,s:O,s:s}", "num", 0, "id", up,
                                            "ship_strategy", json_object_get(t, "partitioning"),
                                            "exchange", "pipelined_bounded"));
        json_array_append_new(
            nodes,
            json_pack("{s:O,s:O,s:O,s:O,s:o,s:o}", "id", json_object_get(t, "id"), "parallelism",
                      json_object_get(t, "parallelism"), "operator", json_object_get(t, "name"),
                      "description", json_object_get(t, "name"), "operators",
                      operators_of(gnodes, json_object_get(t, "nodes")), "inputs", inputs));
    }
    return json_pack("{s:{s:s,s:s,s:s,s:O,s:o}}", "plan", "jid", job->id, "name", job->name, "type",
                     "STREAMING", "checkpoint_interval_ms",
                     json_object_get(graph, "checkpoint_interval_ms"), "nodes", nodes);
}

enum MHD_Result kp_rest_job_plan(kp_jm_t *jm, struct MHD_Connection *conn,
                                 const kp_rest_args_t *args)
{
    return with_job(jm, conn, args, false, plan_view);
}

/* --- /jobs/:id/exceptions --- */

static json_t *exceptions_view(kp_jm_t *jm, struct MHD_Connection *conn, const kp_jm_job_t *job,
                               size_t unused)
{
    (void)jm, (void)unused;
    long max =
        kp_rest_arg_long(conn, "maxExceptions", KP_JM_EXCEPTIONS_MAX, 1, KP_JM_EXCEPTIONS_MAX);
    json_t *all = json_array();
    size_t n = json_array_size(job->exceptions);
    for (size_t i = n; i-- > 0 && json_array_size(all) < (size_t)max;) { /* newest first */
        json_t *e = json_array_get(job->exceptions, i);
        json_array_append_new(
            all, json_pack("{s:O,s:O,s:O,s:O}", "exception", json_object_get(e, "message"),
                           "timestamp", json_object_get(e, "time"), "from",
                           json_object_get(e, "from"), "to", json_object_get(e, "to")));
    }
    json_t *root = json_array_get(all, 0);
    return json_pack("{s:O,s:O,s:o,s:b}", "root-exception",
                     root ? json_object_get(root, "exception") : json_null(), "timestamp",
                     root ? json_object_get(root, "timestamp") : json_null(), "all-exceptions", all,
                     "truncated", n > (size_t)max || n >= KP_JM_EXCEPTIONS_MAX);
}

enum MHD_Result kp_rest_job_exceptions(kp_jm_t *jm, struct MHD_Connection *conn,
                                       const kp_rest_args_t *args)
{
    return with_job(jm, conn, args, false, exceptions_view);
}

/* --- /jobs/:id/vertices/:vid --- */

/* A ratio the taskmanager measured, or null before its second report. */
static json_t *ratio_json(double r)
{
    return r < 0 ? json_null() : json_real(r);
}

/* A connector's stats JSON as the taskmanager sent it (metrics_keep.c), or null. */
static json_t *stats_json(const char *text)
{
    json_t *v = text[0] ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *sub_metrics(const kp_jm_sub_t *sub)
{
    if (!sub->has_metrics)
        return json_null();
    return json_pack("{s:I,s:I,s:o,s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:o}", "read-records",
                     (json_int_t)sub->records_in, "write-records", (json_int_t)sub->records_out,
                     "current-input-watermark", watermark_json(sub->watermark_ms), "read-bytes",
                     (json_int_t)sub->bytes_in, "write-bytes", (json_int_t)sub->bytes_out,
                     "state-size", (json_int_t)sub->state_bytes, "backpressured-ratio",
                     ratio_json(sub->ratio_backpressured), "idle-ratio",
                     ratio_json(sub->ratio_idle), "busy-ratio", ratio_json(sub->ratio_busy),
                     "source", stats_json(sub->source_json), "sink", stats_json(sub->sink_json));
}

static json_t *vertex_view(kp_jm_t *jm, struct MHD_Connection *conn, const kp_jm_job_t *job,
                           size_t t)
{
    (void)conn;
    const kp_jm_task_t *task = &job->tasks[t];
    const kp_jm_sub_t *sub = &job->subs[first_sub(job, t)];
    json_t *subs = json_array();
    for (uint32_t i = 0; i < task->parallelism; i++, sub++) {
        const kp_jm_tm_t *tm = sub->tm >= 0 ? &jm->tms[sub->tm] : NULL;
        json_array_append_new(
            subs, json_pack("{s:i,s:s,s:i,s:o,s:o,s:o}", "subtask", (int)sub->subtask, "status",
                            kp_sub_state_name(sub->state), "attempt", (int)job->attempt,
                            "taskmanager-id", tm ? json_string(tm->id) : json_null(), "host",
                            tm ? json_string(tm->data_address) : json_null(), "metrics",
                            sub_metrics(sub)));
    }
    return json_pack("{s:i,s:s,s:i,s:I,s:o}", "id", task->id, "name", task->name, "parallelism",
                     (int)task->parallelism, "now", (json_int_t)kp_wall_ms(), "subtasks", subs);
}

enum MHD_Result kp_rest_vertex(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *args)
{
    return with_job(jm, conn, args, true, vertex_view);
}

/* --- /jobs/:id/vertices/:vid/subtasks/metrics --- */

static const char *const metric_ids[] = {"numRecordsIn",          "numRecordsOut",
                                         "currentInputWatermark", "numBytesIn",
                                         "numBytesOut",           "backPressuredTimeMsPerSecond",
                                         "idleTimeMsPerSecond",   "busyTimeMsPerSecond"};

static bool metric_of(const kp_jm_sub_t *sub, int m, double *v)
{
    if (!sub->has_metrics)
        return false;
    const double all[] = {(double)sub->records_in,   (double)sub->records_out,
                          (double)sub->watermark_ms, (double)sub->bytes_in,
                          (double)sub->bytes_out,    sub->ratio_backpressured * 1000,
                          sub->ratio_idle * 1000,    sub->ratio_busy * 1000}; /* ms per second */
    *v = all[m];
    return m == 2 ? sub->watermark_ms != KP_TIME_MIN : m < 5 || all[m] >= 0;
}

/* Flink's aggregated subtask metrics: without ?get= the ids available, with ?get=a,b each
 * one's min/max/avg/sum over the subtasks that reported it. */
static json_t *vertex_metrics_view(kp_jm_t *jm, struct MHD_Connection *conn, const kp_jm_job_t *job,
                                   size_t t)
{
    (void)jm;
    const char *get = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "get");
    json_t *out = json_array();
    const kp_jm_sub_t *subs = &job->subs[first_sub(job, t)];
    for (int m = 0; m < (int)(sizeof metric_ids / sizeof metric_ids[0]); m++) {
        size_t len = strlen(metric_ids[m]);
        const char *hit = get ? strstr(get, metric_ids[m]) : NULL;
        while (hit && !((hit == get || hit[-1] == ',') && (hit[len] == ',' || !hit[len])))
            hit = strstr(hit + 1, metric_ids[m]);
        if (!get) {
            json_array_append_new(out, json_pack("{s:s}", "id", metric_ids[m]));
            continue;
        }
        if (!hit)
            continue;
        double v, min = 0, max = 0, sum = 0;
        size_t n = 0;
        for (uint32_t i = 0; i < job->tasks[t].parallelism; i++)
            if (metric_of(&subs[i], m, &v)) {
                min = n && min < v ? min : v;
                max = n && max > v ? max : v;
                sum += v;
                n++;
            }
        json_array_append_new(out, n ? json_pack("{s:s,s:f,s:f,s:f,s:f,s:i}", "id", metric_ids[m],
                                                 "min", min, "max", max, "avg", sum / (double)n,
                                                 "sum", sum, "subtasks", (int)n)
                                     : json_pack("{s:s,s:n,s:n,s:n,s:n,s:i}", "id", metric_ids[m],
                                                 "min", "max", "avg", "sum", "subtasks", 0));
    }
    return out;
}

enum MHD_Result kp_rest_vertex_metrics(kp_jm_t *jm, struct MHD_Connection *conn,
                                       const kp_rest_args_t *args)
{
    return with_job(jm, conn, args, true, vertex_metrics_view);
}

/* --- /jobs/:id/vertices/:vid/backpressure --- */

/* Flink's levels of the share of time blocked on exchange credits: ok up to 10 %, low up to
 * 50 %, high above. */
static const char *bp_level(double r)
{
    return r <= 0.10 ? "ok" : r <= 0.5 ? "low" : "high";
}

/* Flink's shape from the ratios the taskmanagers measure (deployment.c, each heartbeat:
 * the share of the interval the subtask's thread was blocked on exchange credits, waiting
 * for input, and the rest). The vertex's level is its worst subtask's; null, and "status"
 * "unavailable" with a reason, until a subtask has reported twice. */
static json_t *backpressure_view(kp_jm_t *jm, struct MHD_Connection *conn, const kp_jm_job_t *job,
                                 size_t t)
{
    (void)jm, (void)conn;
    json_t *subs = json_array();
    const kp_jm_sub_t *sub = &job->subs[first_sub(job, t)];
    double worst = -1;
    for (uint32_t i = 0; i < job->tasks[t].parallelism; i++, sub++) {
        double r = sub->has_metrics ? sub->ratio_backpressured : -1;
        worst = r > worst ? r : worst;
        json_array_append_new(
            subs,
            json_pack("{s:i,s:o,s:o,s:o,s:o}", "subtask", (int)sub->subtask, "backpressure-level",
                      r < 0 ? json_null() : json_string(bp_level(r)), "ratio", ratio_json(r),
                      "idleRatio", ratio_json(sub->has_metrics ? sub->ratio_idle : -1), "busyRatio",
                      ratio_json(sub->has_metrics ? sub->ratio_busy : -1)));
    }
    json_t *out =
        json_pack("{s:s,s:o,s:I,s:o}", "status", worst < 0 ? "unavailable" : "ok",
                  "backpressure-level", worst < 0 ? json_null() : json_string(bp_level(worst)),
                  "end-timestamp", (json_int_t)kp_wall_ms(), "subtasks", subs);
    if (worst < 0)
        json_object_set_new(out, "reason",
                            json_string("no subtask of this vertex has reported twice yet"));
    return out;
}

enum MHD_Result kp_rest_vertex_backpressure(kp_jm_t *jm, struct MHD_Connection *conn,
                                            const kp_rest_args_t *args)
{
    return with_job(jm, conn, args, true, backpressure_view);
}

/* --- /jobs/:id/vertices/:vid/watermarks: Flink's [{"id":"0.currentInputWatermark",...}] --- */

static json_t *watermarks_view(kp_jm_t *jm, struct MHD_Connection *conn, const kp_jm_job_t *job,
                               size_t t)
{
    (void)jm, (void)conn;
    json_t *out = json_array();
    const kp_jm_sub_t *sub = &job->subs[first_sub(job, t)];
    for (uint32_t i = 0; i < job->tasks[t].parallelism; i++, sub++) {
        if (!sub->has_metrics || sub->watermark_ms == KP_TIME_MIN)
            continue;
        char id[48], value[24];
        snprintf(id, sizeof id, "%u.currentInputWatermark", sub->subtask);
        snprintf(value, sizeof value, "%lld", (long long)sub->watermark_ms);
        json_array_append_new(out, json_pack("{s:s,s:s}", "id", id, "value", value));
    }
    return out;
}

enum MHD_Result kp_rest_vertex_watermarks(kp_jm_t *jm, struct MHD_Connection *conn,
                                          const kp_rest_args_t *args)
{
    return with_job(jm, conn, args, true, watermarks_view);
}
