/* GET /metrics: everything the jobmanager knows, in Prometheus' text exposition format 0.0.4,
 * for a Prometheus server to scrape (checked by `promtool check metrics` in the tests).
 * Names are kappa_*, counters end in _total, units in the name (_seconds, _bytes); labels are
 * job (the job id), job_name, task (the task id), task_name, subtask and taskmanager. The
 * subtask series come from the taskmanagers' latest Metrics reports of the current attempt (a
 * restart starts them again from 0, which Prometheus' rate() reads as a counter reset). The
 * jobmanager's own CPU and RSS come from /proc/self. The text is built under jm->lock in one
 * memory stream and sent after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rest_int.h"

/* A label value with \, " and newline escaped as the format wants. */
static void put_label(FILE *f, const char *name, const char *value, bool first)
{
    fprintf(f, "%s%s=\"", first ? "" : ",", name);
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
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long ut = 0, st = 0;
    long rss = 0;
    FILE *p = fopen("/proc/self/stat", "r");
    if (p) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, p);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
        if (rp &&
            sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
            ut = st = 0;
        fclose(p);
    }
    p = fopen("/proc/self/statm", "r");
    if (p) {
        if (fscanf(p, "%*s %ld", &rss) != 1)
            rss = 0;
        fclose(p);
    }
    help(f, "kappa_jobmanager_cpu_seconds_total", "counter",
         "CPU time (user+system) the jobmanager process used.");
    fprintf(f, "kappa_jobmanager_cpu_seconds_total %.2f\n",
            tick > 0 ? (double)(ut + st) / (double)tick : 0.0);
    help(f, "kappa_jobmanager_resident_memory_bytes", "gauge",
         "Resident set size of the jobmanager process.");
    fprintf(f, "kappa_jobmanager_resident_memory_bytes %ld\n", rss * page);
}

static void taskmanager_metrics(FILE *f, const kp_jm_t *jm, kp_time now)
{
    help(f, "kappa_taskmanagers", "gauge", "Registered live taskmanagers.");
    size_t live = 0;
    for (size_t t = 0; t < jm->ntms; t++)
        live += jm->tms[t].alive;
    fprintf(f, "kappa_taskmanagers %zu\n", live);
    static const char *const names[] = {"kappa_taskmanager_slots", "kappa_taskmanager_slots_free",
                                        "kappa_taskmanager_heartbeat_age_seconds"};
    static const char *const helps[] = {"Task slots a taskmanager offers.",
                                        "Task slots of a taskmanager no deployed job holds.",
                                        "Seconds since the taskmanager's last heartbeat."};
    for (int m = 0; m < 3; m++) {
        help(f, names[m], "gauge", helps[m]);
        for (size_t t = 0; t < jm->ntms; t++) {
            if (!jm->tms[t].alive)
                continue;
            fprintf(f, "%s{", names[m]);
            put_label(f, "taskmanager", jm->tms[t].id, true);
            if (m == 0)
                fprintf(f, "} %u\n", jm->tms[t].slots);
            else if (m == 1)
                fprintf(f, "} %u\n", kp_sched_free_slots(jm, (int)t));
            else
                fprintf(f, "} %.3f\n", (double)(now - jm->tms[t].last_heartbeat_ms) / 1000.0);
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

/* The labels of one subtask series. */
static void sub_labels(FILE *f, const kp_jm_t *jm, const kp_jm_job_t *job, const kp_jm_task_t *t,
                       const kp_jm_sub_t *s)
{
    char num[16];
    fputc('{', f);
    put_label(f, "job", job->id, true);
    put_label(f, "job_name", job->name, false);
    snprintf(num, sizeof num, "%d", t->id);
    put_label(f, "task", num, false);
    put_label(f, "task_name", t->name, false);
    snprintf(num, sizeof num, "%u", s->subtask);
    put_label(f, "subtask", num, false);
    put_label(f, "taskmanager", s->tm >= 0 ? jm->tms[s->tm].id : "", false);
    fputs("} ", f);
}

/* Per subtask of every non-final job that reported: records in/out and the watermark. */
static void subtask_metrics(FILE *f, const kp_jm_t *jm)
{
    static const char *const names[] = {"kappa_subtask_records_in_total",
                                        "kappa_subtask_records_out_total",
                                        "kappa_subtask_watermark_seconds"};
    static const char *const helps[] = {
        "Records the subtask read (sources: from the external system).",
        "Records the subtask emitted (sinks: to the external system).",
        "The subtask's current watermark (event time, Unix seconds)."};
    for (int m = 0; m < 3; m++) {
        help(f, names[m], m < 2 ? "counter" : "gauge", helps[m]);
        for (size_t j = 0; j < jm->njobs; j++) {
            const kp_jm_job_t *job = jm->jobs[j];
            if (kp_job_state_terminal(job->state))
                continue;
            const kp_jm_sub_t *s = job->subs;
            for (size_t t = 0; t < job->ntasks; t++)
                for (uint32_t i = 0; i < job->tasks[t].parallelism; i++, s++) {
                    if (!s->has_metrics || (m == 2 && s->watermark_ms == KP_TIME_MIN))
                        continue;
                    fputs(names[m], f);
                    sub_labels(f, jm, job, &job->tasks[t], s);
                    if (m == 2)
                        fprintf(f, "%.3f\n", (double)s->watermark_ms / 1000.0);
                    else
                        fprintf(f, "%llu\n",
                                (unsigned long long)(m == 0 ? s->records_in : s->records_out));
                }
        }
    }
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
    subtask_metrics(f, jm);
    pthread_mutex_unlock(&jm->lock);
    if (fclose(f) || !text) {
        free(text);
        return kp_rest_send_error(conn, 500, "out of memory");
    }
    return kp_rest_send_text(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
