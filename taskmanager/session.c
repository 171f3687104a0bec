/* The control-plane session (session.h). One thread owns the connection: it reads and
 * validates frames, decodes them with protobuf-c, and is the only writer — deployment threads
 * post their TaskState messages to the outbox, which wakes this thread. Plugins are fetched one
 * at a time (PluginRequest → PluginData chunks) into the verified cache; deployments wait for
 * theirs and start once it is there. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kappa/kappa.h>

#include "proc_usage.h"
#include "clock.h"
#include "conn.h"
#include "control.pb-c.h"
#include "deploy_config.h"
#include "deployment.h"
#include "outbox.h"
#include "plugin_cache.h"
#include "rng.h"
#include "session.h"
#include "log_tail.h"

#define MAX_DEPLOYMENTS 64
#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000
#define STOP_TIMEOUT_MS 15000
/* A plugin download fails when no chunk came for this many heartbeat timeouts. */
#define FETCH_TIMEOUTS 3

typedef struct dep_entry {
    kp_tm_deployment *dep;
    int waiting; /* for its plugin: not started yet */
} dep_entry;

typedef struct session {
    const kp_tm_options *opt;
    const char *instance_id, *data_address;
    char plugin_dir[1100];
    kp_tm_conn conn;
    kp_tm_outbox outbox;
    kp_tm_env env;
    char tm_id[128]; /* as the jobmanager named us in RegisterAck */
    int hb_interval_ms, hb_timeout_ms;
    kp_time last_rx, next_hb;
    uint64_t hb_seq;
    dep_entry deps[MAX_DEPLOYMENTS];
    int ndeps;
    kp_tm_fetch *fetch;     /* the plugin download in flight, if any */
    kp_time fetch_deadline; /* the download fails if no chunk arrives before */
    int abandoned;          /* deployments that did not stop when cancelled (never freed) */
    uint64_t rng;
} session;

/* ---- deployments ---------------------------------------------------------------------- */

static void remove_dep(session *s, int i)
{
    kp_tm_deployment_free(s->deps[i].dep);
    s->deps[i] = s->deps[--s->ndeps];
}

/* Fails (and drops) every deployment still waiting for plugin `sha` (NULL: for any plugin). */
static void fail_waiting(session *s, const char *sha, const char *why)
{
    for (int i = s->ndeps - 1; i >= 0; i--) {
        const Kappa__Control__Deploy *d = kp_tm_deployment_msg(s->deps[i].dep);
        if (!s->deps[i].waiting || (sha && strcmp(d->plugin_sha256, sha) != 0))
            continue;
        kp_tm_log("job %s attempt %u: %s", d->job_id, d->attempt, why);
        kp_tm_deployment_report(s->deps[i].dep, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, why);
        remove_dep(s, i);
    }
}

static int start_dep(session *s, int i, const char *path)
{
    char err[512];
    s->deps[i].waiting = 0;
    if (kp_tm_deployment_start(s->deps[i].dep, path, err, sizeof err) == 0)
        return 0;
    kp_tm_deployment_report(s->deps[i].dep, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, err);
    remove_dep(s, i);
    return -1;
}

/* Starts every waiting deployment whose plugin is in the cache; requests the first missing
 * plugin if no download is in flight. Returns -1 if the request could not be sent. */
static int pump_plugins(session *s, char *err, size_t errlen)
{
    char path[1200], why[512];
    for (int i = s->ndeps - 1; i >= 0; i--) {
        if (!s->deps[i].waiting)
            continue;
        const Kappa__Control__Deploy *d = kp_tm_deployment_msg(s->deps[i].dep);
        int rc = kp_tm_plugin_cached(s->plugin_dir, d->plugin_sha256, path, sizeof path, why,
                                     sizeof why);
        if (rc == 1) {
            start_dep(s, i, path);
        } else if (rc < 0) {
            char sha[65];
            snprintf(sha, sizeof sha, "%s", d->plugin_sha256);
            fail_waiting(s, sha, why);
            i = s->ndeps; /* the list changed: look again */
        }
    }
    for (int i = 0; i < s->ndeps && !s->fetch; i++) {
        if (!s->deps[i].waiting)
            continue;
        const Kappa__Control__Deploy *d = kp_tm_deployment_msg(s->deps[i].dep);
        s->fetch =
            kp_tm_fetch_begin(s->plugin_dir, d->plugin_sha256, d->plugin_size, why, sizeof why);
        if (!s->fetch) {
            char sha[65];
            snprintf(sha, sizeof sha, "%s", d->plugin_sha256);
            fail_waiting(s, sha, why);
            i = -1; /* the list changed: look again */
            continue;
        }
        s->fetch_deadline = kp_mono_ms() + (kp_time)FETCH_TIMEOUTS * s->hb_timeout_ms;
        Kappa__Control__PluginRequest req = KAPPA__CONTROL__PLUGIN_REQUEST__INIT;
        req.sha256 = d->plugin_sha256;
        kp_tm_log("fetching plugin %s (%llu bytes) for job %s", d->plugin_sha256,
                  (unsigned long long)d->plugin_size, d->job_id);
        if (kp_tm_conn_send(&s->conn, KP_FRAME_PLUGIN_REQUEST, &req.base, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Cancels (started) or drops (waiting, reported CANCELED) the deployments of job_id: those of
 * `attempt`, or with other_attempts those of every other attempt. */
static void cancel_job(session *s, const char *job_id, uint32_t attempt, int other_attempts,
                       const char *why)
{
    for (int i = s->ndeps - 1; i >= 0; i--) {
        const Kappa__Control__Deploy *d = kp_tm_deployment_msg(s->deps[i].dep);
        if (strcmp(d->job_id, job_id) != 0 || (other_attempts != (d->attempt != attempt)))
            continue;
        kp_tm_log("job %s attempt %u: cancelling (%s)", job_id, d->attempt, why);
        if (s->deps[i].waiting) {
            kp_tm_deployment_report(s->deps[i].dep, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED,
                                    why);
            remove_dep(s, i);
        } else {
            kp_tm_deployment_cancel(s->deps[i].dep);
        }
    }
}

/* A download the jobmanager stopped feeding fails the deployments waiting for it; the next
 * plugin is requested. */
static int check_fetch(session *s, char *err, size_t errlen)
{
    if (!s->fetch || kp_mono_ms() < s->fetch_deadline)
        return 0;
    char sha[65], why[256];
    snprintf(sha, sizeof sha, "%s", kp_tm_fetch_sha256(s->fetch));
    snprintf(why, sizeof why, "no data for plugin %s from the jobmanager for %d ms", sha,
             FETCH_TIMEOUTS * s->hb_timeout_ms);
    kp_tm_fetch_free(s->fetch);
    s->fetch = NULL;
    fail_waiting(s, sha, why);
    return pump_plugins(s, err, errlen);
}

/* Joins and frees the deployments whose threads ended. */
static void reap(session *s)
{
    for (int i = s->ndeps - 1; i >= 0; i--)
        if (!s->deps[i].waiting && kp_tm_deployment_done(s->deps[i].dep))
            remove_dep(s, i);
}

/* Connection lost or shutting down: nothing keeps running without a jobmanager. A
 * deployment that has not stopped after STOP_TIMEOUT_MS (a connector stuck in a call, say) is
 * left behind, never freed, so the session can serve again. */
static void cancel_all(session *s)
{
    for (int i = 0; i < s->ndeps; i++)
        if (!s->deps[i].waiting)
            kp_tm_deployment_cancel(s->deps[i].dep);
    kp_time deadline = kp_mono_ms() + STOP_TIMEOUT_MS;
    while (s->ndeps > 0) {
        reap(s);
        for (int i = s->ndeps - 1; i >= 0; i--)
            if (s->deps[i].waiting)
                remove_dep(s, i);
        if (s->ndeps > 0 && kp_mono_ms() >= deadline) {
            const Kappa__Control__Deploy *d = kp_tm_deployment_msg(s->deps[0].dep);
            kp_tm_log("job %s attempt %u did not stop within %d ms: its thread is left behind",
                      d->job_id, d->attempt, STOP_TIMEOUT_MS);
            s->abandoned++;
            s->deps[0] = s->deps[--s->ndeps];
        } else if (s->ndeps > 0) {
            poll(NULL, 0, 20);
        }
    }
    kp_tm_fetch_free(s->fetch);
    s->fetch = NULL;
    kp_tm_outbox_free_list(kp_tm_outbox_take(&s->outbox)); /* for a connection that is gone */
}

/* ---- messages from the jobmanager --------------------------------------------------- */

/* Each handler owns the decoded message. 0, or -1 with the reason: the connection closes. */
typedef int (*handler_fn)(session *s, ProtobufCMessage *msg, char *err, size_t errlen);

static int on_deploy(session *s, ProtobufCMessage *msg, char *err, size_t errlen)
{
    Kappa__Control__Deploy *d = (Kappa__Control__Deploy *)msg;
    kp_tm_log("deploy: job %.80s '%.80s' attempt %u, %zu subtasks here, plugin %.80s", d->job_id,
              d->name, d->attempt, d->n_locals, d->plugin_sha256);
    for (int i = 0; i < s->ndeps; i++) {
        const Kappa__Control__Deploy *o = kp_tm_deployment_msg(s->deps[i].dep);
        if (!strcmp(o->job_id, d->job_id) && o->attempt == d->attempt) {
            kp_tm_log("job %s attempt %u is already deployed here: ignoring the repeat", d->job_id,
                      d->attempt);
            kappa__control__deploy__free_unpacked(d, NULL);
            return 0;
        }
    }
    char why[512];
    int ok = kp_tm_deploy_check(d, why, sizeof why) == 0;
    if (ok)
        cancel_job(s, d->job_id, d->attempt, 1, "superseded by a newer attempt");
    if (ok && s->ndeps == MAX_DEPLOYMENTS) {
        snprintf(why, sizeof why, "this taskmanager already runs %d deployments", s->ndeps);
        ok = 0;
    }
    kp_tm_deployment *dep = kp_tm_deployment_new(d, &s->env);
    if (!dep) {
        kappa__control__deploy__free_unpacked(d, NULL);
        snprintf(err, errlen, "out of memory taking a deployment");
        return -1;
    }
    if (!ok) {
        kp_tm_log("deploy refused: %s", why);
        kp_tm_deployment_report(dep, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, why);
        kp_tm_deployment_free(dep);
        return 0;
    }
    kp_tm_deployment_report(dep, KAPPA__CONTROL__TASK_STATE__STATE__DEPLOYING, "");
    s->deps[s->ndeps++] = (dep_entry){.dep = dep, .waiting = 1};
    return pump_plugins(s, err, errlen);
}

static int on_plugin_data(session *s, ProtobufCMessage *msg, char *err, size_t errlen)
{
    Kappa__Control__PluginData *m = (Kappa__Control__PluginData *)msg;
    char why[768];
    if (!s->fetch || strcmp(kp_tm_fetch_sha256(s->fetch), m->sha256) != 0) {
        kp_tm_log("plugin data for %.80s, which is not being fetched: ignored", m->sha256);
    } else if (*m->error) {
        snprintf(why, sizeof why, "the jobmanager cannot serve plugin %s: %.500s", m->sha256,
                 m->error);
        fail_waiting(s, m->sha256, why);
        kp_tm_fetch_free(s->fetch);
        s->fetch = NULL;
    } else {
        s->fetch_deadline = kp_mono_ms() + (kp_time)FETCH_TIMEOUTS * s->hb_timeout_ms;
        int rc = kp_tm_fetch_add(s->fetch, m->offset, m->total_size, m->bytes.data, m->bytes.len,
                                 why, sizeof why);
        if (rc < 0)
            fail_waiting(s, m->sha256, why);
        else if (rc > 0)
            kp_tm_log("plugin %s verified and cached", m->sha256);
        if (rc != 0) {
            kp_tm_fetch_free(s->fetch);
            s->fetch = NULL;
        }
    }
    kappa__control__plugin_data__free_unpacked(m, NULL);
    return s->fetch ? 0 : pump_plugins(s, err, errlen);
}

static int on_cancel(session *s, ProtobufCMessage *msg, char *err, size_t errlen)
{
    Kappa__Control__Cancel *m = (Kappa__Control__Cancel *)msg;
    cancel_job(s, m->job_id, m->attempt, 0, *m->reason ? m->reason : "cancelled by the jobmanager");
    kappa__control__cancel__free_unpacked(m, NULL);
    return 0;
}

/* The started deployment of (job_id, attempt), or NULL. */
static kp_tm_deployment *find_dep(session *s, const char *job_id, uint32_t attempt)
{
    for (int i = 0; i < s->ndeps; i++) {
        const Kappa__Control__Deploy *d = kp_tm_deployment_msg(s->deps[i].dep);
        if (!strcmp(d->job_id, job_id) && d->attempt == attempt && !s->deps[i].waiting)
            return s->deps[i].dep;
    }
    return NULL;
}

/* TriggerCheckpoint, NotifyCheckpointComplete, AbortCheckpoint: to the deployment they name;
 * one that is not (or no longer) running here ignores them — its checkpoint times out or
 * was already given up at the jobmanager. */
static void on_checkpoint(session *s, kp_frame_type type, const char *job_id, uint32_t attempt,
                          int64_t id, int64_t timestamp_ms)
{
    kp_tm_deployment *dep = find_dep(s, job_id, attempt);
    if (dep)
        kp_tm_deployment_checkpoint(dep, type, id, timestamp_ms);
    else
        kp_tm_log("checkpoint %lld of job %.80s attempt %u: not running here, ignored",
                  (long long)id, job_id, attempt);
}

static int on_trigger(session *s, ProtobufCMessage *msg, char *err, size_t errlen)
{
    Kappa__Control__TriggerCheckpoint *m = (Kappa__Control__TriggerCheckpoint *)msg;
    kp_tm_deployment *dep = m->drain ? find_dep(s, m->job_id, m->attempt) : NULL;
    if (dep) /* kappa stop --drain */
        kp_tm_deployment_drain(dep, m->checkpoint_id);
    else
        on_checkpoint(s, KP_FRAME_TRIGGER_CHECKPOINT, m->job_id, m->attempt, m->checkpoint_id,
                      m->timestamp_ms);
    kappa__control__trigger_checkpoint__free_unpacked(m, NULL);
    return 0;
}

static int on_complete(session *s, ProtobufCMessage *msg, char *err, size_t errlen)
{
    Kappa__Control__NotifyCheckpointComplete *m = (Kappa__Control__NotifyCheckpointComplete *)msg;
    on_checkpoint(s, KP_FRAME_CHECKPOINT_COMPLETE, m->job_id, m->attempt, m->checkpoint_id, 0);
    kp_tm_deployment *dep = m->final ? find_dep(s, m->job_id, m->attempt) : NULL;
    if (dep) /* after the completion: the sinks commit before the sources end */
        kp_tm_deployment_final(dep, m->checkpoint_id);
    kappa__control__notify_checkpoint_complete__free_unpacked(m, NULL);
    return 0;
}

static int on_abort(session *s, ProtobufCMessage *msg, char *err, size_t errlen)
{
    Kappa__Control__AbortCheckpoint *m = (Kappa__Control__AbortCheckpoint *)msg;
    on_checkpoint(s, KP_FRAME_ABORT_CHECKPOINT, m->job_id, m->attempt, m->checkpoint_id, 0);
    kappa__control__abort_checkpoint__free_unpacked(m, NULL);
    return 0;
}

static int on_heartbeat(session *s, ProtobufCMessage *msg, char *err, size_t errlen)
{
    protobuf_c_message_free_unpacked(msg, NULL); /* the echo: its arrival is what counts */
    return 0;
}

static const struct {
    kp_frame_type type;
    const ProtobufCMessageDescriptor *desc;
    handler_fn fn;
} handlers[] = {
    {KP_FRAME_HEARTBEAT, &kappa__control__heartbeat__descriptor, on_heartbeat},
    {KP_FRAME_DEPLOY, &kappa__control__deploy__descriptor, on_deploy},
    {KP_FRAME_PLUGIN_DATA, &kappa__control__plugin_data__descriptor, on_plugin_data},
    {KP_FRAME_CANCEL, &kappa__control__cancel__descriptor, on_cancel},
    {KP_FRAME_TRIGGER_CHECKPOINT, &kappa__control__trigger_checkpoint__descriptor, on_trigger},
    {KP_FRAME_CHECKPOINT_COMPLETE, &kappa__control__notify_checkpoint_complete__descriptor,
     on_complete},
    {KP_FRAME_ABORT_CHECKPOINT, &kappa__control__abort_checkpoint__descriptor, on_abort},
};

/* Decodes a validated frame with protobuf-c and hands it to its handler. */
static int dispatch(session *s, const kp_frame_header_t *h, const uint8_t *p, char *err,
                    size_t errlen)
{
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
        if (handlers[i].type != h->type)
            continue;
        ProtobufCMessage *m = protobuf_c_message_unpack(handlers[i].desc, NULL, h->length, p);
        if (!m) {
            snprintf(err, errlen, "a %s frame (%u bytes) does not decode", handlers[i].desc->name,
                     h->length);
            return -1;
        }
        return handlers[i].fn(s, m, err, errlen);
    }
    kp_tm_log("ignoring a frame of type %u the jobmanager should not send after registering",
              h->type);
    return 0;
}

/* ---- the connection ----------------------------------------------------------------- */

/* Waits until the socket (or, with_outbox, the outbox) is readable, at most timeout_ms. -1 on
 * a poll error. */
static int wait_io(session *s, int timeout_ms, int with_outbox, int *readable)
{
    struct pollfd pf[2] = {{.fd = s->conn.fd, .events = POLLIN},
                           {.fd = s->outbox.wake_fd, .events = POLLIN}};
    int n = poll(pf, with_outbox ? 2 : 1, timeout_ms < 0 ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR)
        return -1;
    *readable = n > 0 && (pf[0].revents & (POLLIN | POLLHUP | POLLERR));
    return 0;
}

/* During registration: the next frame, which must be of `type`, decoded; NULL with the reason
 * (err stays empty when the daemon is stopping). */
static ProtobufCMessage *expect(session *s, kp_time deadline, kp_frame_type type,
                                const ProtobufCMessageDescriptor *desc, char *err, size_t errlen)
{
    kp_frame_header_t h;
    const uint8_t *p;
    int rc;
    err[0] = 0;
    while ((rc = kp_tm_conn_next(&s->conn, &h, &p, err, errlen)) == 0) {
        kp_time now = kp_mono_ms();
        int readable = 0;
        if (kp_tm_stop)
            return NULL;
        if (now >= deadline) {
            snprintf(err, errlen, "no %s from the jobmanager within the heartbeat timeout",
                     desc->short_name);
            return NULL;
        }
        if (wait_io(s, (int)(deadline - now), 0, &readable) != 0 ||
            (readable && kp_tm_conn_fill(&s->conn, err, errlen) < 0))
            return NULL;
    }
    if (rc < 0)
        return NULL;
    ProtobufCMessage *m =
        h.type == type ? protobuf_c_message_unpack(desc, NULL, h.length, p) : NULL;
    if (!m)
        snprintf(err, errlen, "expected a valid %s from the jobmanager, got a frame of type %u",
                 desc->short_name, h.type);
    return m;
}

/* Hello both ways, then the RegisterAck. 0, or -1 with the reason. */
static int register_tm(session *s, char *err, size_t errlen)
{
    Kappa__Control__Hello hello = KAPPA__CONTROL__HELLO__INIT;
    hello.role = KAPPA__CONTROL__HELLO__ROLE__ROLE_TASKMANAGER;
    hello.instance_id = (char *)s->instance_id;
    hello.build_version = KP_TM_VERSION;
    hello.abi_version = KP_ABI_VERSION;
    hello.slots = (uint32_t)s->opt->slots;
    hello.data_address = (char *)s->data_address;
    if (kp_tm_conn_send(&s->conn, KP_FRAME_HELLO, &hello.base, err, errlen) != 0)
        return -1;
    kp_time deadline = kp_mono_ms() + s->opt->heartbeat_timeout_ms;
    Kappa__Control__Hello *jm = (Kappa__Control__Hello *)expect(
        s, deadline, KP_FRAME_HELLO, &kappa__control__hello__descriptor, err, errlen);
    if (!jm)
        return -1;
    int role = jm->role;
    if (jm->abi_version != KP_ABI_VERSION)
        kp_tm_log("the jobmanager (%.80s) speaks job ABI %u, this taskmanager %u",
                  jm->build_version, jm->abi_version, KP_ABI_VERSION);
    kappa__control__hello__free_unpacked(jm, NULL);
    if (role != KAPPA__CONTROL__HELLO__ROLE__ROLE_JOBMANAGER) {
        snprintf(err, errlen, "the peer's Hello says role %d, not a jobmanager", role);
        return -1;
    }
    Kappa__Control__RegisterAck *ack = (Kappa__Control__RegisterAck *)expect(
        s, deadline, KP_FRAME_REGISTER_ACK, &kappa__control__register_ack__descriptor, err, errlen);
    if (!ack)
        return -1;
    snprintf(s->tm_id, sizeof s->tm_id, "%s", ack->taskmanager_id);
    s->hb_interval_ms =
        ack->heartbeat_interval_ms ? (int)ack->heartbeat_interval_ms : s->opt->heartbeat_ms;
    s->hb_timeout_ms =
        ack->heartbeat_timeout_ms ? (int)ack->heartbeat_timeout_ms : s->opt->heartbeat_timeout_ms;
    kp_tm_log("registered with jobmanager %.80s as %.80s (%d slots, data %s; heartbeat every %d "
              "ms, timeout %d ms)",
              ack->jobmanager_id, s->tm_id, s->opt->slots, s->data_address, s->hb_interval_ms,
              s->hb_timeout_ms);
    kappa__control__register_ack__free_unpacked(ack, NULL);
    return 0;
}

static int send_heartbeat(session *s, char *err, size_t errlen)
{
    Kappa__Control__Heartbeat hb = KAPPA__CONTROL__HEARTBEAT__INIT;
    hb.sequence = ++s->hb_seq;
    hb.sent_at_ms = kp_wall_ms();
    long long rss;
    kp_proc_usage(&hb.cpu_seconds, &rss); /* the process' RSS and CPU, for /metrics */
    hb.rss_bytes = rss > 0 ? (uint64_t)rss : 0;
    char tail[8192]; /* the log lines since the last heartbeat, for GET /taskmanagers/:id/logs */
    if (kp_tm_log_take(tail, sizeof tail) > 0)
        hb.log_tail = tail;
    return kp_tm_conn_send(&s->conn, KP_FRAME_HEARTBEAT, &hb.base, err, errlen);
}

/* Every heartbeat: the live counters of each running subtask (docs/cluster.md, "Metrics"),
 * sent with the outbox right after. */
static void post_metrics(session *s)
{
    for (int i = 0; i < s->ndeps; i++)
        if (!s->deps[i].waiting && kp_tm_deployment_running(s->deps[i].dep))
            kp_tm_deployment_post_metrics(s->deps[i].dep);
}

/* Sends what deployment threads posted, in order. */
static int flush_outbox(session *s, char *err, size_t errlen)
{
    kp_tm_msg *list = kp_tm_outbox_take(&s->outbox);
    int rc = 0;
    for (kp_tm_msg *m = list; m && rc == 0; m = m->next)
        rc = kp_tm_conn_send_raw(&s->conn, m->frame, m->len, err, errlen);
    kp_tm_outbox_free_list(list);
    return rc;
}

/* Serves a registered connection until it breaks, times out or the daemon stops. */
static void serve(session *s)
{
    char err[1024] = "";
    s->last_rx = kp_mono_ms();
    s->next_hb = s->last_rx;
    s->hb_seq = 0; /* sequences count per connection */
    while (!kp_tm_stop) {
        kp_time now = kp_mono_ms();
        if (now - s->last_rx > s->hb_timeout_ms) {
            snprintf(err, sizeof err, "nothing from the jobmanager for %lld ms (heartbeat timeout)",
                     (long long)(now - s->last_rx));
            break;
        }
        if (now >= s->next_hb) {
            if (send_heartbeat(s, err, sizeof err) != 0)
                break;
            post_metrics(s);
            s->next_hb = now + s->hb_interval_ms;
        }
        if (flush_outbox(s, err, sizeof err) != 0 || check_fetch(s, err, sizeof err) != 0)
            break;
        reap(s);
        int readable = 0;
        kp_time wait = s->next_hb - now < 250 ? s->next_hb - now : 250;
        if (wait_io(s, (int)wait, 1, &readable) != 0) {
            snprintf(err, sizeof err, "poll: %s", strerror(errno));
            break;
        }
        if (!readable)
            continue;
        if (kp_tm_conn_fill(&s->conn, err, sizeof err) < 0)
            break;
        kp_frame_header_t h;
        const uint8_t *p;
        int rc;
        while ((rc = kp_tm_conn_next(&s->conn, &h, &p, err, sizeof err)) == 1) {
            s->last_rx = kp_mono_ms();
            if (dispatch(s, &h, p, err, sizeof err) != 0) {
                rc = -1;
                break;
            }
        }
        if (rc < 0)
            break;
    }
    if (!kp_tm_stop)
        kp_tm_log("connection to the jobmanager closed: %s; cancelling what runs here", err);
}

/* Sleeps up to ms, waking early when the daemon stops. */
static void sleep_ms(int ms)
{
    kp_time end = kp_mono_ms() + ms;
    while (!kp_tm_stop && kp_mono_ms() < end)
        poll(NULL, 0, 50);
}

int kp_tm_session_run(const kp_tm_options *opt, const char *instance_id, kp_net *net)
{
    session *s = calloc(1, sizeof *s);
    if (!s || kp_tm_outbox_init(&s->outbox) != 0) {
        kp_tm_log("cannot start: %s", strerror(errno));
        free(s);
        return 1;
    }
    s->opt = opt;
    s->instance_id = instance_id;
    s->data_address = kp_net_address(net);
    s->conn.fd = -1;
    s->env = (kp_tm_env){.state_dir = opt->state_dir,
                         .outbox = &s->outbox,
                         .slot_bytes = (size_t)opt->slot_mb << 20,
                         .net = net};
    s->rng = (uint64_t)kp_wall_ms() ^ ((uint64_t)getpid() << 32) ^ 1;
    snprintf(s->plugin_dir, sizeof s->plugin_dir, "%s/plugins", opt->state_dir);
    int backoff = BACKOFF_MIN_MS;
    while (!kp_tm_stop) {
        char err[1024] = "";
        int served = 0;
        if (kp_tm_conn_open(&s->conn, opt->jm_host, opt->jm_port, opt->heartbeat_timeout_ms, err,
                            sizeof err) == 0 &&
            register_tm(s, err, sizeof err) == 0) {
            backoff = BACKOFF_MIN_MS;
            serve(s);
            served = 1;
        }
        cancel_all(s);
        kp_tm_conn_close(&s->conn);
        if (kp_tm_stop)
            break;
        int delay = backoff / 2 + (int)(kp_rng_next(&s->rng) % (uint64_t)(backoff / 2 + 1));
        if (served)
            kp_tm_log("connecting again in %d ms", delay);
        else
            kp_tm_log("jobmanager %s:%s: %s; trying again in %d ms", opt->jm_host, opt->jm_port,
                      err, delay);
        sleep_ms(delay);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    kp_tm_log("stopping");
    cancel_all(s);
    if (s->abandoned) { /* their threads may still post: keep the outbox until exit */
        kp_tm_log("exiting with %d deployments that did not stop", s->abandoned);
        return 1;
    }
    kp_tm_outbox_destroy(&s->outbox);
    free(s);
    return 0;
}
