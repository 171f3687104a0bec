/* REST views of the cluster itself: the dashboard's /config, the jobmanager's configuration
 * and log tail, and one taskmanager (its slots, heartbeat age and the subtasks it runs, their
 * counters summed, its RSS and CPU from its heartbeats). Only what the jobmanager holds: a
 * taskmanager does not ship its log, so that route is refused with 501 and the place to look. The jobmanager's log is the tail of its stderr when
 * that is a regular file (how kappa's tests and deploy/ start it); otherwise 501 says so. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest_int.h"

#define LOG_TAIL_MAX (256 * 1024) /* bytes of a log one request may read */

enum MHD_Result kp_rest_config(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *a)
{
    (void)a;
    bool auth = jm->cfg.token[0] != '\0'; /* set at start, never changed: no lock needed */
    return kp_rest_send_json(conn, 200,
                             json_pack("{s:i,s:s,s:i,s:s,s:{s:b,s:b,s:b},s:b}", "refresh-interval",
                                       2000, "timezone-name", "UTC", "timezone-offset", 0,
                                       "kappa-version", KP_JM_VERSION, "features", "web-submit", 0,
                                       "web-cancel", 1, "web-savepoint", 0, "auth-required", auth));
}

/* Flink's [{key, value}] list; the token is never shown, only whether one is set. */
enum MHD_Result kp_rest_jm_config(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *a)
{
    (void)a;
    static const char *const kinds[] = {"fixed-delay", "exponential-delay", "none"};
    const kp_jm_config_t *c = &jm->cfg;
    char buf[16][64];
    const char *keys[16];
    int n = 0;
#define KV(k, ...) (keys[n] = (k), snprintf(buf[n], sizeof buf[n], __VA_ARGS__), n++)
    KV("bind", "%s", c->bind);
    KV("rest-port", "%d", c->rest_port);
    KV("rpc-port", "%d", c->rpc_port);
    KV("token", "%s", c->token[0] ? "set" : "not set");
    KV("max-upload-bytes", "%llu", (unsigned long long)c->max_upload_bytes);
    KV("heartbeat-interval-ms", "%u", c->heartbeat_interval_ms);
    KV("heartbeat-timeout-ms", "%u", c->heartbeat_timeout_ms);
    KV("cancel-timeout-ms", "%u", c->cancel_timeout_ms);
    KV("deploy-timeout-ms", "%u", c->deploy_timeout_ms);
    KV("restart-strategy", "%s", kinds[c->restart.kind]);
    KV("restart-attempts", "%u", c->restart.attempts);
    KV("restart-delay-ms", "%u", c->restart.delay_ms);
    KV("restart-max-delay-ms", "%u", c->restart.max_delay_ms);
    KV("instance-id", "%s", jm->instance_id);
#undef KV
    json_t *list = json_array();
    json_array_append_new(list, json_pack("{s:s,s:s}", "key", "state-dir", "value", c->state_dir));
    for (int i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:s,s:s}", "key", keys[i], "value", buf[i]));
    return kp_rest_send_json(conn, 200, list);
}

/* The last `lines` lines (at most LOG_TAIL_MAX bytes) of what fd holds, as text/plain. */
static enum MHD_Result send_tail(struct MHD_Connection *conn, int fd, off_t size, long lines)
{
    size_t want = size < LOG_TAIL_MAX ? (size_t)size : LOG_TAIL_MAX;
    char *buf = malloc(want + 1);
    if (!buf)
        return kp_rest_send_error(conn, 500, "out of memory");
    ssize_t got = pread(fd, buf, want, size - (off_t)want);
    if (got < 0) {
        free(buf);
        return kp_rest_send_error(conn, 500, "cannot read the log");
    }
    size_t start = (size_t)got, seen = 0;
    if (start && buf[start - 1] == '\n')
        start--; /* the last line's newline does not start a line */
    while (start > 0 && seen < (size_t)lines)
        if (buf[--start] == '\n')
            seen++;
    if (start < (size_t)got && buf[start] == '\n' && seen == (size_t)lines)
        start++;
    memmove(buf, buf + start, (size_t)got - start);
    return kp_rest_send_text(conn, 200, "text/plain; charset=utf-8", buf, (size_t)got - start);
}

enum MHD_Result kp_rest_jm_logs(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *a)
{
    (void)jm, (void)a;
    long lines = kp_rest_arg_long(conn, "lines", 200, 1, 10000);
    struct stat st;
    if (fstat(STDERR_FILENO, &st) || !S_ISREG(st.st_mode))
        return kp_rest_send_error(conn, 501,
                                  "the jobmanager's log is its stderr, which is not a file here: "
                                  "start it with 2>FILE to read the log through REST");
    int fd = open("/proc/self/fd/2", O_RDONLY | O_CLOEXEC); /* own offset, unlike dup */
    if (fd < 0)
        return kp_rest_send_error(conn, 500, "cannot open the jobmanager's stderr");
    enum MHD_Result rc = send_tail(conn, fd, st.st_size, lines);
    close(fd);
    return rc;
}

int kp_rest_find_tm(const kp_jm_t *jm, const char *id)
{
    for (size_t t = 0; t < jm->ntms; t++)
        if (!strcmp(jm->tms[t].id, id))
            return (int)t;
    return -1;
}

/* The index of the taskmanager of args->v[0] (jm->lock held): -1 unknown, -2 malformed. */
static int tm_of(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *a, char *id,
                 size_t idlen)
{
    if (!kp_rest_seg(a->v[0], id, idlen))
        return -2;
    return kp_rest_find_tm(jm, id);
}

/* What a taskmanager runs now: its subtasks of deployed jobs, with their counters. */
static json_t *tm_subtasks(const kp_jm_t *jm, int tm, uint64_t *in, uint64_t *out)
{
    json_t *subs = json_array();
    *in = *out = 0;
    for (size_t j = 0; j < jm->njobs; j++) {
        const kp_jm_job_t *job = jm->jobs[j];
        if (!job->deployed)
            continue;
        for (size_t i = 0; i < job->nsubs; i++) {
            const kp_jm_sub_t *s = &job->subs[i];
            if (s->tm != tm)
                continue;
            *in += s->has_metrics ? s->records_in : 0;
            *out += s->has_metrics ? s->records_out : 0;
            json_array_append_new(subs, json_pack("{s:s,s:s,s:i,s:i,s:s}", "jid", job->id,
                                                  "job-name", job->name, "task", s->task_id,
                                                  "subtask", (int)s->subtask, "status",
                                                  kp_sub_state_name(s->state)));
        }
    }
    return subs;
}

static json_t *tm_json(const kp_jm_t *jm, int t, kp_time now)
{
    const kp_jm_tm_t *tm = &jm->tms[t];
    uint64_t in, out;
    json_t *subs = tm_subtasks(jm, t, &in, &out);
    json_t *j =
        json_pack("{s:s,s:b,s:s,s:s,s:i,s:i,s:I,s:I,s:o,s:I,s:I}", "id", tm->id, "alive", tm->alive,
                  "path", tm->data_address, "build", tm->build, "slotsNumber", (int)tm->slots,
                  "freeSlots", tm->alive ? (int)kp_sched_free_slots(jm, t) : 0,
                  "timeSinceLastHeartbeat", (json_int_t)(now - tm->last_heartbeat_ms),
                  "lastHeartbeat", (json_int_t)tm->last_heartbeat_ms, "subtasks", subs,
                  "records-in", (json_int_t)in, "records-out", (json_int_t)out);
    /* from its heartbeats (session.c): null from a taskmanager that does not send them */
    json_object_set_new(j, "rss-bytes",
                        tm->rss_bytes ? json_integer((json_int_t)tm->rss_bytes) : json_null());
    json_object_set_new(j, "cpu-seconds", tm->rss_bytes ? json_real(tm->cpu_seconds) : json_null());
    return j;
}

static enum MHD_Result tm_reply(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *a,
                                bool metrics)
{
    char id[KP_JM_NAME_MAX];
    kp_time now = kp_wall_ms();
    pthread_mutex_lock(&jm->lock);
    int t = tm_of(jm, conn, a, id, sizeof id);
    json_t *body = t >= 0 ? tm_json(jm, t, now) : NULL;
    pthread_mutex_unlock(&jm->lock);
    if (t == -2)
        return kp_rest_send_error(conn, 400, "a taskmanager id is at most 127 characters");
    if (t < 0)
        return kp_rest_send_error(conn, 404, "no taskmanager '%s' is known", id);
    if (!metrics)
        return kp_rest_send_json(conn, 200, body);
    /* Flink's [{id, value}] list of what we have, and what we do not. */
    static const char *const ids[] = {
        "Status.Slots.Total", "Status.Slots.Free",  "Status.Heartbeat.AgeMs", "numRecordsIn",
        "numRecordsOut",      "Status.Process.RSS", "Status.Process.CPU"};
    static const char *const keys[] = {"slotsNumber", "freeSlots",   "timeSinceLastHeartbeat",
                                       "records-in",  "records-out", "rss-bytes",
                                       "cpu-seconds"};
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        json_array_append_new(
            list, json_pack("{s:s,s:O}", "id", ids[i], "value", json_object_get(body, keys[i])));
    bool proc = !json_is_null(json_object_get(body, "rss-bytes"));
    json_decref(body);
    return kp_rest_send_json(
        conn, 200,
        json_pack("{s:o,s:s}", "metrics", list, "reason",
                  proc ? "Status.Process.RSS in bytes and Status.Process.CPU in CPU seconds "
                         "(user + system), from the taskmanager's last heartbeat"
                       : "RSS and CPU are null: this taskmanager's heartbeats do not carry them"));
}

enum MHD_Result kp_rest_tm(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *a)
{
    return tm_reply(jm, conn, a, false);
}

enum MHD_Result kp_rest_tm_metrics(kp_jm_t *jm, struct MHD_Connection *conn,
                                   const kp_rest_args_t *a)
{
    return tm_reply(jm, conn, a, true);
}

enum MHD_Result kp_rest_tm_logs(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *a)
{
    char id[KP_JM_NAME_MAX];
    long lines = kp_rest_arg_long(conn, "lines", 200, 1, 10000);
    pthread_mutex_lock(&jm->lock);
    int t = tm_of(jm, conn, a, id, sizeof id);
    if (t < 0) {
        pthread_mutex_unlock(&jm->lock);
        return kp_rest_send_error(conn, t == -2 ? 400 : 404, "no taskmanager '%.127s' is known",
                                  t == -2 ? "?" : id);
    }
    /* the last `lines` lines the taskmanager sent with its heartbeats (kp_jm_tm_log_append) */
    const kp_jm_tm_t *tm = &jm->tms[t];
    size_t start = tm->log_len;
    for (long n = 0; start > 0; start--)
        if (tm->log[start - 1] == '\n' && start < tm->log_len && ++n == lines)
            break;
    char *copy = malloc(tm->log_len - start + 1);
    if (copy && tm->log_len > start)
        memcpy(copy, tm->log + start, tm->log_len - start);
    size_t len = tm->log_len - start;
    pthread_mutex_unlock(&jm->lock);
    if (!copy)
        return kp_rest_send_error(conn, 500, "out of memory");
    return kp_rest_send_text(conn, 200, "text/plain; charset=utf-8", copy, len); /* frees copy */
}
