/* GET /metrics: everything the jobmanager knows, in Prometheus' text exposition format 0.0.4,
 * for a Prometheus server to scrape (checked by `promtool check metrics` in the tests).
 * Names are kappa_*, counters end in _total, units in the name (_seconds, _bytes); labels are
 * job (the job id), job_name, task (the task id), task_name, subtask and taskmanager. The
 * subtask series come from the taskmanagers' latest Metrics reports of the current attempt (a
 * restart starts them again from 0, which Prometheus' rate() reads as a counter reset), with
 * the connectors' stats they carry: a source's partitions (offset, end offset, lag, carried
 * watermark; label partition) and an Elasticsearch sink's counters. The jobmanager's own CPU
 * and RSS come from /proc/self, each taskmanager's from its heartbeats. The text is built under jm->lock in one
 * memory stream and sent after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc_usage.h"
#include "rest_int.h"

/* A label value with \, " and newline escaped as the format wants. */
static void put_label(FILE *f, const char *name, const char *value, bool first)
{
    fprintf(f, "%s%s=\"", first ? "" : ",", name);
    if (!strpbrk(value, "\\\"\n")) { /* the usual case: nothing to escape, one write */
        fputs(value, f);
        fputc('"', f);
        return;
    }
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f);
        if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void help(FILE *f, const char *name, const char *type, const char *text)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* The jobmanager process: CPU seconds (utime+stime) and RSS, from /proc/self. */
static void process_metrics(FILE *f)
{
    double cpu;
    long long rss;
    kp_proc_usage(&cpu, &rss);
    help(f, "kappa_jobmanager_cpu_seconds_total", "counter",
         "CPU time (user+system) the jobmanager process used.");
    fprintf(f, "kappa_jobmanager_cpu_seconds_total %.2f\n", cpu);
    help(f, "kappa_jobmanager_resident_memory_bytes", "gauge",
         "Resident set size of the jobmanager process.");
    fprintf(f, "kappa_jobmanager_resident_memory_bytes %lld\n", rss);
}

static void taskmanager_metrics(FILE *f, const kp_jm_t *jm, kp_time now)
{
    help(f, "kappa_taskmanagers", "gauge", "Registered live taskmanagers.");
    size_t live = 0;
    for (size_t t = 0; t < jm->ntms; t++)
        live += jm->tms[t].alive;
    fprintf(f, "kappa_taskmanagers %zu\n", live);
    static const char *const names[] = {"kappa_taskmanager_slots", "kappa_taskmanager_slots_free",
                                        "kappa_taskmanager_heartbeat_age_seconds",
                                        "kappa_taskmanager_resident_memory_bytes",
                                        "kappa_taskmanager_cpu_seconds_total"};
    static const char *const helps[] = {
        "Task slots a taskmanager offers.", "Task slots of a taskmanager no deployed job holds.",
        "Seconds since the taskmanager's last heartbeat.",
        "Resident set size of the taskmanager process (its last heartbeat).",
        "CPU time (user+system) the taskmanager process used (its last heartbeat)."};
    for (int m = 0; m < 5; m++) {
        help(f, names[m], m == 4 ? "counter" : "gauge", helps[m]);
        for (size_t t = 0; t < jm->ntms; t++) {
            const kp_jm_tm_t *tm = &jm->tms[t];
            if (!tm->alive || (m >= 3 && !tm->rss_bytes)) /* RSS/CPU: from its heartbeats */
                continue;
            fprintf(f, "%s{", names[m]);
            put_label(f, "taskmanager", tm->id, true);
            const double v[] = {tm->slots, kp_sched_free_slots(jm, (int)t),
                                (double)(now - tm->last_heartbeat_ms) / 1000.0,
                                (double)tm->rss_bytes, tm->cpu_seconds};
            fprintf(f, m == 2 ? "} %.3f\n" : m == 4 ? "} %.2f\n" : "} %.0f\n", v[m]);
        }
    }
}

static void job_metrics(FILE *f, const kp_jm_t *jm)
{
    help(f, "kappa_jobs", "gauge", "Jobs the jobmanager knows, by state.");
    for (int s = 0; s < KP_JOB_STATE_N_; s++) {
        size_t n = 0;
        for (size_t j = 0; j < jm->njobs; j++)
            n += jm->jobs[j]->state == (kp_job_state)s;
        fprintf(f, "kappa_jobs{state=\"%s\"} %zu\n", kp_job_state_name((kp_job_state)s), n);
    }
    help(f, "kappa_job_attempt", "gauge",
         "The job's current attempt (0 = first run, +1 per restart); non-final jobs only.");
    for (size_t j = 0; j < jm->njobs; j++) {
        const kp_jm_job_t *job = jm->jobs[j];
        if (kp_job_state_terminal(job->state))
            continue;
        fputs("kappa_job_attempt{", f);
        put_label(f, "job", job->id, true);
        put_label(f, "job_name", job->name, false);
        put_label(f, "state", kp_job_state_name(job->state), false);
        fprintf(f, "} %u\n", job->attempt);
    }
}

/* The labels of every subtask of the non-final jobs, in the order the families walk them
 * (jobs, tasks, subtasks), each "{job=...,taskmanager=\"...\"" without the closing brace:
 * built once per scrape, not once per family. NULL when out of memory. */
static char **sub_labels_all(const kp_jm_t *jm, size_t *n)
{
    *n = 0;
    for (size_t j = 0; j < jm->njobs; j++)
        *n += kp_job_state_terminal(jm->jobs[j]->state) ? 0 : jm->jobs[j]->nsubs;
    char **lab = calloc(*n ? *n : 1, sizeof *lab);
    size_t k = 0;
    for (size_t j = 0; lab && j < jm->njobs; j++) {
        const kp_jm_job_t *job = jm->jobs[j];
        if (kp_job_state_terminal(job->state))
            continue;
        const kp_jm_sub_t *s = job->subs;
        for (size_t t = 0; t < job->ntasks; t++)
            for (uint32_t i = 0; i < job->tasks[t].parallelism; i++, s++, k++) {
                size_t len;
                FILE *f = open_memstream(&lab[k], &len);
                if (!f)
                    continue;
                char num[16];
                fputc('{', f);
                put_label(f, "job", job->id, true);
                put_label(f, "job_name", job->name, false);
                snprintf(num, sizeof num, "%d", job->tasks[t].id);
                put_label(f, "task", num, false);
                put_label(f, "task_name", job->tasks[t].name, false);
                snprintf(num, sizeof num, "%u", s->subtask);
                put_label(f, "subtask", num, false);
                put_label(f, "taskmanager", s->tm >= 0 ? jm->tms[s->tm].id : "", false);
                fclose(f);
            }
    }
    return lab;
}

/* One series' name and labels: a subtask's (lab from sub_labels_all), and its partition. */
static bool series(FILE *f, const char *name, const char *lab, const char *partition)
{
    if (!lab)
        return false;
    fputs(name, f);
    fputs(lab, f);
    if (partition)
        put_label(f, "partition", partition, false);
    fputs("} ", f);
    return true;
}

/* One subtask figure: its value, false when the subtask has none. */
static bool sub_value(const kp_jm_sub_t *s, int m, double *v)
{
    const double all[] = {
        (double)s->records_in, (double)s->records_out, (double)s->watermark_ms / 1000.0,
        (double)s->bytes_in,   (double)s->bytes_out,   s->ratio_backpressured,
        s->ratio_idle,         s->ratio_busy,          (double)s->state_bytes};
    *v = all[m];
    return m == 2 ? s->watermark_ms != KP_TIME_MIN : m < 5 || m == 8 || all[m] >= 0;
}

/* Per subtask of every non-final job that reported: records and bytes in/out, the watermark
 * the time ratios and the state size. */
static void subtask_metrics(FILE *f, const kp_jm_t *jm, char *const *lab)
{
    static const char *const names[] = {
        "kappa_subtask_records_in_total",  "kappa_subtask_records_out_total",
        "kappa_subtask_watermark_seconds", "kappa_subtask_bytes_in_total",
        "kappa_subtask_bytes_out_total",   "kappa_subtask_backpressured_ratio",
        "kappa_subtask_idle_ratio",        "kappa_subtask_busy_ratio",
        "kappa_subtask_state_bytes"};
    static const char *const helps[] = {
        "Records the subtask read (sources: from the external system).",
        "Records the subtask emitted (sinks: to the external system).",
        "The subtask's current watermark (event time, Unix seconds).",
        "Bytes (key + value) the subtask read (sources only).",
        "Bytes (key + value) the subtask sent to an exchange or wrote to a sink.",
        "Share of the last heartbeat interval the subtask was blocked on exchange credits.",
        "Share of the last heartbeat interval the subtask waited for input.",
        "Share of the last heartbeat interval the subtask was neither backpressured nor idle.",
        "Bytes of the subtask's keyed state: write-back caches in memory and RocksDB SST files."};
    for (int m = 0; m < 9; m++) {
        help(f, names[m], m < 2 || m == 3 || m == 4 ? "counter" : "gauge", helps[m]);
        size_t k = 0;
        double v;
        for (size_t j = 0; j < jm->njobs; j++) {
            const kp_jm_job_t *job = jm->jobs[j];
            for (size_t i = 0; !kp_job_state_terminal(job->state) && i < job->nsubs; i++, k++)
                if (job->subs[i].has_metrics && sub_value(&job->subs[i], m, &v) &&
                    series(f, names[m], lab[k], NULL))
                    fprintf(f, m == 2 || (m >= 5 && m < 8) ? "%.3f\n" : "%.0f\n", v);
        }
    }
}

/* A family from the connectors' stats JSON (exec_live.h): a source's partitions (the
 * reader's "partitions" or the source's "watermarks", one series per partition) or an
 * Elasticsearch sink's counters (sink stats with "bulks"). */
typedef struct conn_family {
    const char *name, *type, *help;
    int from; /* 0 reader.partitions, 1 watermarks, 2 Elasticsearch sink, 3 the source's own */
    const char *key;
    double scale;
} conn_family;

static const conn_family conn_families[] = {
    {"kappa_source_partition_offset", "gauge", "The next offset the source reads in the partition.",
     0, "offset", 1},
    {"kappa_source_partition_end_offset", "gauge",
     "The partition's end offset (high watermark) as of the source's last fetch.", 0, "high", 1},
    {"kappa_source_partition_lag", "gauge",
     "Records of the partition the source has not read yet (end offset - offset).", 0, "lag", 1},
    {"kappa_source_partition_watermark_seconds", "gauge",
     "The partition's carried watermark (event time, Unix seconds).", 1, "watermark", 0.001},
    {"kappa_source_decode_errors_total", "counter",
     "Records the source's decode function refused as malformed.", 3, "decode_errors", 1},
    {"kappa_source_dead_lettered_total", "counter",
     "Malformed records the source sent to its dead-letter output.", 3, "dead_lettered", 1},
    {"kappa_es_sink_documents_total", "counter", "Documents Elasticsearch acknowledged.", 2,
     "acked", 1},
    {"kappa_es_sink_bulks_total", "counter", "Bulk requests the sink completed.", 2, "bulks", 1},
    {"kappa_es_sink_retries_total", "counter", "Bulk requests the sink retried.", 2, "retries", 1},
    {"kappa_es_sink_stale_total", "counter",
     "Documents Elasticsearch refused as stale (an external version not above the stored one).", 2,
     "stale", 1},
    {"kappa_es_sink_failed_total", "counter", "Documents that failed for good.", 2, "failed", 1},
    {"kappa_es_sink_dead_lettered_total", "counter", "Documents sent to the dead-letter sink.", 2,
     "dead_lettered", 1},
    {"kappa_es_sink_bulk_latency_p50_seconds", "gauge", "Median bulk request latency.", 2,
     "bulk_latency_ms_p50", 0.001},
    {"kappa_es_sink_bulk_latency_p99_seconds", "gauge", "99th percentile bulk request latency.", 2,
     "bulk_latency_ms_p99", 0.001},
};

/* The series of one family from one subtask's parsed stats. */
static void conn_series(FILE *f, const char *lab, const conn_family *c, json_t *src, json_t *snk)
{
    if (c->from == 2 || c->from == 3) {
        json_t *v = json_object_get(c->from == 2 ? snk : src, c->key);
        if ((c->from == 2 && !json_object_get(snk, "bulks")) || !json_is_number(v))
            return;
        if (series(f, c->name, lab, NULL))
            fprintf(f, "%.6g\n", json_number_value(v) * c->scale);
        return;
    }
    json_t *parts = c->from == 0 ? json_object_get(json_object_get(src, "reader"), "partitions")
                                 : json_object_get(src, "watermarks");
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p)
    {
        json_t *v = json_object_get(p, c->key);
        if (!json_is_integer(json_object_get(p, "partition")) || !json_is_number(v))
            continue;
        char part[16];
        snprintf(part, sizeof part, "%lld",
                 (long long)json_integer_value(json_object_get(p, "partition")));
        if (series(f, c->name, lab, part))
            fprintf(f, c->scale == 1 ? "%.0f\n" : "%.3f\n", json_number_value(v) * c->scale);
    }
}

/* The connectors' families: each subtask's stats parsed once, then family by family (the
 * format wants a family's samples together). lab and n from sub_labels_all. */
static void connector_metrics(FILE *f, const kp_jm_t *jm, char *const *lab, size_t n)
{
    json_t **parsed = calloc(2 * (n ? n : 1), sizeof *parsed);
    if (!parsed)
        return;
    for (size_t c = 0; c < sizeof conn_families / sizeof conn_families[0]; c++) {
        help(f, conn_families[c].name, conn_families[c].type, conn_families[c].help);
        size_t k = 0;
        for (size_t j = 0; j < jm->njobs; j++) {
            const kp_jm_job_t *job = jm->jobs[j];
            for (size_t i = 0; !kp_job_state_terminal(job->state) && i < job->nsubs; i++, k++) {
                const kp_jm_sub_t *s = &job->subs[i];
                if (!s->has_metrics)
                    continue;
                if (c == 0) {
                    parsed[2 * k] = s->source_json[0] ? json_loads(s->source_json, 0, NULL) : NULL;
                    parsed[2 * k + 1] = s->sink_json[0] ? json_loads(s->sink_json, 0, NULL) : NULL;
                }
                conn_series(f, lab[k], &conn_families[c], parsed[2 * k], parsed[2 * k + 1]);
            }
        }
    }
    for (size_t k = 0; k < 2 * n; k++)
        json_decref(parsed[k]);
    free(parsed);
}

enum MHD_Result kp_rest_prometheus(kp_jm_t *jm, struct MHD_Connection *conn,
                                   const kp_rest_args_t *a)
{
    (void)a;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return kp_rest_send_error(conn, 500, "out of memory");
    help(f, "kappa_jobmanager_info", "gauge", "Always 1; the version in a label.");
    fprintf(f, "kappa_jobmanager_info{version=\"%s\"} 1\n", KP_JM_VERSION);
    process_metrics(f);
    kp_time now = kp_wall_ms();
    pthread_mutex_lock(&jm->lock);
    taskmanager_metrics(f, jm, now);
    job_metrics(f, jm);
    size_t n;
    char **lab = sub_labels_all(jm, &n);
    if (lab) {
        subtask_metrics(f, jm, lab);
        connector_metrics(f, jm, lab, n);
    }
    pthread_mutex_unlock(&jm->lock);
    for (size_t k = 0; lab && k < n; k++)
        free(lab[k]);
    free(lab);
    if (fclose(f) || !text) {
        free(text);
        return kp_rest_send_error(conn, 500, "out of memory");
    }
    return kp_rest_send_text(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
