/* The control-plane server: taskmanagers connect to --rpc-port and speak the frames of
 * proto/frame.h carrying the messages of proto/control.proto. One thread (poll over the
 * listener, a wake eventfd and every connection) reads, validates and dispatches; it also
 * drives the clock of the job state machine (heartbeat timeouts, restart delays).
 *
 * Validation before use, always: the header (magic, version, a type a taskmanager may send,
 * a length under the inbound limit), the CRC, then the protobuf decode, then each field's
 * range. Anything wrong closes that connection with a logged reason and touches nothing else;
 * a registered taskmanager whose connection closes is lost at once, one that goes silent is
 * lost after --heartbeat-timeout-ms.
 *
 * Sockets are nonblocking. Outgoing frames go to a per-connection buffer, flushed as far as
 * the socket takes and then on POLLOUT, so a slow reader never blocks the jobmanager.
 * Connection buffers and the list are protected by jm->lock (REST's cancel sends frames too);
 * the inbound parse state is the control thread's. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "frame.h"
#include "jm.h"

/* Inbound frames: before its Hello a peer may send 1 MiB; a registered taskmanager 16 MiB
 * (an AckCheckpoint carries its subtask's small state inline: blobs up to 64 KiB each, base64,
 * KP_CKPT_INLINE_MAX; everything else is tiny). */
#define MAX_CONNS         (KP_JM_TM_MAX + 64)
#define HELLO_INBOUND_MAX (1u << 20)
#define INBOUND_MAX       (16u << 20)
#define OUTBOUND_MAX      (256u << 20)
#define HELLO_TIMEOUT_MS  10000
#define PLUGIN_CHUNK      (4u << 20)
#define TICK_MS           100

struct kp_jm_conn_t {
    int fd;
    int tm; /* registered taskmanager, -1 before its Hello */
    char peer[64];
    kp_time opened_mono;
    const char *close_reason; /* set = close at the end of this round */
    /* inbound (control thread only) */
    uint8_t hdr[KP_FRAME_HEADER_SIZE];
    size_t hdr_have;
    kp_frame_header_t h;
    bool in_payload;
    uint8_t *payload;
    size_t payload_have, payload_cap;
    /* outbound (jm->lock) */
    uint8_t *out;
    size_t out_off, out_len, out_cap;
};

static int listen_fd = -1;
static kp_jm_conn_t *conns[MAX_CONNS];
static size_t nconns;

void kp_jm_wake(kp_jm_t *jm)
{
    uint64_t one = 1;
    ssize_t rc = write(jm->wake_fd, &one, sizeof one);
    (void)rc; /* a full counter already means "awake" */
}

int kp_control_listen(kp_jm_t *jm, int *port, char *err, size_t errlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    if (inet_pton(AF_INET, jm->cfg.bind, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "--bind %s is not an IPv4 address", jm->cfg.bind);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t len = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 64) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        snprintf(err, errlen, "cannot listen on %s:%d for the control plane: %s", jm->cfg.bind,
                 *port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    jm->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (jm->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        close(fd);
        return -1;
    }
    listen_fd = fd;
    *port = ntohs(sa.sin_port);
    return 0;
}

/* --- outbound --- */

static void conn_close_later(kp_jm_conn_t *c, const char *reason)
{
    if (!c->close_reason)
        c->close_reason = reason;
}

static void conn_flush(kp_jm_conn_t *c)
{
    while (c->out_off < c->out_len && !c->close_reason) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close_later(c, "write failed (peer gone)");
            return;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
}

/* Appends one frame with `msg` packed as its payload and tries to send it. */
static void conn_send(kp_jm_conn_t *c, kp_frame_type type, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    size_t need = c->out_len + KP_FRAME_HEADER_SIZE + n;
    if (c->close_reason)
        return;
    if (n > KP_FRAME_MAX_PAYLOAD || need > OUTBOUND_MAX) {
        conn_close_later(c, "peer does not read its frames (outbound buffer full)");
        return;
    }
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *out = realloc(c->out, cap);
        if (!out) {
            conn_close_later(c, "out of memory");
            return;
        }
        c->out = out;
        c->out_cap = cap;
    }
    uint8_t *p = c->out + c->out_len;
    protobuf_c_message_pack(msg, p + KP_FRAME_HEADER_SIZE);
    kp_frame_header_encode(p, type, p + KP_FRAME_HEADER_SIZE, (uint32_t)n);
    c->out_len = need;
    conn_flush(c);
}

/* --- Deploy / Cancel --- */

static void fill_bindings(const kp_jm_job_t *job, Kappa__Control__Binding *b,
                          Kappa__Control__Binding **bp, size_t n)
{
    json_t *arr = json_object_get(job->manifest, "bindings");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        kappa__control__binding__init(&b[i]);
        const char *oe = json_string_value(json_object_get(o, "on_error"));
        const char *dl = json_string_value(json_object_get(o, "dead_letter"));
        b[i].name = (char *)json_string_value(json_object_get(o, "name"));
        b[i].uri = (char *)json_string_value(json_object_get(o, "uri"));
        b[i].on_error = (char *)(oe ? oe : "default"); /* the job's own choice */
        b[i].dead_letter = (char *)(dl ? dl : "");
        bp[i] = &b[i];
    }
}

void kp_control_send_deploy(kp_jm_t *jm, const kp_jm_job_t *job)
{
    json_t *m = job->manifest, *conf = json_object_get(m, "conf");
    size_t nb = json_array_size(json_object_get(m, "bindings")), nc = json_array_size(conf);
    Kappa__Control__Binding *b = calloc(nb + 1, sizeof *b);
    Kappa__Control__Binding **bp = calloc(nb + 1, sizeof *bp);
    char **cp = calloc(nc + 1, sizeof *cp);
    Kappa__Control__Placement *pl = calloc(job->nsubs, sizeof *pl);
    Kappa__Control__Placement **plp = calloc(job->nsubs, sizeof *plp);
    Kappa__Control__Local *lo = calloc(job->nsubs, sizeof *lo);
    Kappa__Control__Local **lop = calloc(job->nsubs, sizeof *lop);
    if (!b || !bp || !cp || !pl || !plp || !lo || !lop) {
        kp_jm_log("job %s: out of memory building its Deploy", job->id);
        goto out;
    }
    fill_bindings(job, b, bp, nb);
    for (size_t i = 0; i < nc; i++)
        cp[i] = (char *)json_string_value(json_array_get(conf, i));
    for (size_t i = 0; i < job->nsubs; i++) {
        const kp_jm_sub_t *s = &job->subs[i];
        kappa__control__placement__init(&pl[i]);
        pl[i].task_id = s->task_id;
        pl[i].subtask = s->subtask;
        pl[i].taskmanager_id = jm->tms[s->tm].id;
        pl[i].data_address = jm->tms[s->tm].data_address;
        plp[i] = &pl[i];
    }
    const char *start = json_string_value(json_object_get(m, "start"));
    Kappa__Control__Deploy d = KAPPA__CONTROL__DEPLOY__INIT;
    d.job_id = (char *)job->id;
    d.attempt = job->attempt;
    d.epoch = job->epoch;
    d.name = (char *)job->name;
    d.plugin_sha256 = (char *)job->plugin_sha256;
    d.plugin_size = job->plugin_size;
    d.graph_hash = (char *)job->graph_hash;
    d.parallelism = job->parallelism;
    d.n_bindings = nb;
    d.bindings = bp;
    d.n_conf = nc;
    d.conf = cp;
    d.n_placements = job->nsubs;
    d.placements = plp;
    d.start = (char *)(start ? start : "earliest");
    d.start_timestamp_ms = json_integer_value(json_object_get(m, "start_timestamp_ms"));
    Kappa__Control__CheckpointConfig cc = KAPPA__CONTROL__CHECKPOINT_CONFIG__INIT;
    if (job->ckpt.dir) { /* interval 0: no periodic checkpoints, savepoints still */
        cc.interval_ms = job->ckpt.interval_ms;
        cc.timeout_ms = job->ckpt.timeout_ms;
        cc.min_pause_ms = job->ckpt.min_pause_ms;
        cc.max_concurrent = job->ckpt.max_concurrent;
        cc.tolerable_failures = job->ckpt.tolerable_failures;
        cc.retain = job->ckpt.retain;
        cc.mode =
            (char *)(job->ckpt.mode == KP_CKPT_AT_LEAST_ONCE ? "at_least_once" : "exactly_once");
        cc.dir = (char *)job->ckpt.dir;
        d.checkpoint = &cc;
    }
    d.restore_path = (char *)job->restore_path;
    for (size_t t = 0; t < jm->ntms; t++) {
        size_t n = 0;
        for (size_t i = 0; i < job->nsubs; i++)
            if (job->subs[i].tm == (int)t) {
                kappa__control__local__init(&lo[n]);
                lo[n].task_id = job->subs[i].task_id;
                lo[n].subtask = job->subs[i].subtask;
                lop[n] = &lo[n];
                n++;
            }
        if (!n || !jm->tms[t].conn)
            continue;
        d.n_locals = n;
        d.locals = lop;
        conn_send(jm->tms[t].conn, KP_FRAME_DEPLOY, &d.base);
    }
out:
    free(b);
    free(bp);
    free(cp);
    free(pl);
    free(plp);
    free(lo);
    free(lop);
    kp_jm_wake(jm);
}

void kp_control_send_cancel(kp_jm_t *jm, const kp_jm_job_t *job, const char *reason)
{
    Kappa__Control__Cancel c = KAPPA__CONTROL__CANCEL__INIT;
    c.job_id = (char *)job->id;
    c.attempt = job->attempt;
    c.reason = (char *)(reason ? reason : "");
    for (size_t t = 0; t < jm->ntms; t++) {
        if (!jm->tms[t].alive || !jm->tms[t].conn)
            continue;
        for (size_t i = 0; i < job->nsubs; i++)
            if (job->subs[i].tm == (int)t) {
                conn_send(jm->tms[t].conn, KP_FRAME_CANCEL, &c.base);
                break;
            }
    }
    kp_jm_wake(jm);
}

static void send_ckpt(kp_jm_t *jm, const kp_jm_job_t *job, int type, int64_t id,
                      kp_time timestamp_ms, const char *reason, bool drain, bool final)
{
    Kappa__Control__TriggerCheckpoint t = KAPPA__CONTROL__TRIGGER_CHECKPOINT__INIT;
    Kappa__Control__NotifyCheckpointComplete c = KAPPA__CONTROL__NOTIFY_CHECKPOINT_COMPLETE__INIT;
    Kappa__Control__AbortCheckpoint a = KAPPA__CONTROL__ABORT_CHECKPOINT__INIT;
    t.job_id = c.job_id = a.job_id = (char *)job->id;
    t.attempt = c.attempt = a.attempt = job->attempt;
    t.checkpoint_id = c.checkpoint_id = a.checkpoint_id = id;
    t.timestamp_ms = timestamp_ms;
    t.drain = drain;
    c.final = final;
    a.reason = (char *)(reason ? reason : "");
    const ProtobufCMessage *msg = type == KP_FRAME_TRIGGER_CHECKPOINT    ? &t.base
                                  : type == KP_FRAME_CHECKPOINT_COMPLETE ? &c.base
                                                                         : &a.base;
    for (size_t t_ = 0; t_ < jm->ntms; t_++) {
        if (!jm->tms[t_].alive || !jm->tms[t_].conn)
            continue;
        for (size_t i = 0; i < job->nsubs; i++) {
            const kp_jm_sub_t *s = &job->subs[i];
            if (s->tm != (int)t_ ||
                (type == KP_FRAME_TRIGGER_CHECKPOINT && !kp_job_task(job, s->task_id)->source))
                continue;
            conn_send(jm->tms[t_].conn, (kp_frame_type)type, msg);
            break;
        }
    }
    kp_jm_wake(jm);
}

void kp_control_send_ckpt(kp_jm_t *jm, const kp_jm_job_t *job, int type, int64_t id,
                          kp_time timestamp_ms, const char *reason)
{
    send_ckpt(jm, job, type, id, timestamp_ms, reason, false, false);
}

void kp_control_send_complete(kp_jm_t *jm, const kp_jm_job_t *job, int64_t id, bool final)
{
    send_ckpt(jm, job, KP_FRAME_CHECKPOINT_COMPLETE, id, 0, NULL, false, final);
}

void kp_control_send_drain(kp_jm_t *jm, const kp_jm_job_t *job, int64_t id, kp_time timestamp_ms)
{
    send_ckpt(jm, job, KP_FRAME_TRIGGER_CHECKPOINT, id, timestamp_ms, NULL, true, false);
}

/* --- inbound messages --- */

static bool printable(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static void lose_tm(kp_jm_t *jm, int tm, const char *reason)
{
    kp_jm_tm_t *t = &jm->tms[tm];
    if (!t->alive)
        return;
    t->alive = false;
    if (t->conn) {
        t->conn->tm = -1;
        conn_close_later(t->conn, reason);
        t->conn = NULL;
    }
    kp_life_tm_lost(jm, tm, reason);
}

void kp_jm_tm_log_append(kp_jm_tm_t *tm, const char *text)
{
    size_t n = strlen(text);
    if (!tm->log && !(tm->log = malloc(KP_JM_TM_LOG_MAX)))
        return; /* out of memory: the log is for people, the cluster goes on */
    if (n > KP_JM_TM_LOG_MAX) {
        text += n - KP_JM_TM_LOG_MAX;
        n = KP_JM_TM_LOG_MAX;
    }
    if (tm->log_len + n > KP_JM_TM_LOG_MAX) { /* drop the oldest lines */
        size_t drop = tm->log_len + n - KP_JM_TM_LOG_MAX;
        const char *nl = memchr(tm->log + drop, '\n', tm->log_len - drop);
        drop = nl ? (size_t)(nl - tm->log) + 1 : tm->log_len;
        memmove(tm->log, tm->log + drop, tm->log_len - drop);
        tm->log_len -= drop;
    }
    memcpy(tm->log + tm->log_len, text, n);
    tm->log_len += n;
}

/* A record for taskmanager `id`: its old one, a free one, the record of a lost taskmanager
 * no deployed job uses (finished jobs then show no taskmanager there), or -1. */
static int tm_slot(kp_jm_t *jm, const char *id)
{
    for (size_t t = 0; t < jm->ntms; t++)
        if (!strcmp(jm->tms[t].id, id))
            return (int)t;
    if (jm->ntms < KP_JM_TM_MAX)
        return (int)jm->ntms++;
    for (size_t t = 0; t < jm->ntms; t++)
        if (!jm->tms[t].alive && kp_sched_forget_tm(jm, (int)t))
            return (int)t;
    return -1;
}

static void on_hello(kp_jm_t *jm, kp_jm_conn_t *c, const Kappa__Control__Hello *h)
{
    if (h->role != KAPPA__CONTROL__HELLO__ROLE__ROLE_TASKMANAGER) {
        conn_close_later(c, "Hello: only taskmanagers connect to the control port");
        return;
    }
    if (!printable(h->instance_id, KP_JM_NAME_MAX) || !printable(h->data_address, KP_JM_ADDR_MAX) ||
        h->slots < 1 || h->slots > KP_JM_SLOTS_MAX) {
        conn_close_later(c, "Hello: instance_id, data_address or slots (1..1024) invalid");
        return;
    }
    int tm = tm_slot(jm, h->instance_id);
    if (tm < 0) {
        conn_close_later(c, "Hello: too many taskmanagers");
        return;
    }
    if (jm->tms[tm].alive)
        lose_tm(jm, tm, "it registered again on a new connection");
    kp_jm_tm_t *t = &jm->tms[tm];
    if (strcmp(t->id, h->instance_id) != 0) { /* a record reused for another taskmanager */
        free(t->log);
        t->log = NULL;
        t->log_len = 0;
    }
    snprintf(t->id, sizeof t->id, "%s", h->instance_id);
    snprintf(t->data_address, sizeof t->data_address, "%s", h->data_address);
    snprintf(t->build, sizeof t->build, "%s",
             printable(h->build_version, sizeof t->build) ? h->build_version : "unknown");
    t->slots = h->slots;
    t->alive = true;
    t->conn = c;
    t->last_heartbeat_ms = kp_wall_ms();
    t->last_heartbeat_mono = kp_mono_ms();
    c->tm = tm;
    kp_jm_log("taskmanager %s registered from %s: %u slots, data %s, build %s", t->id, c->peer,
              t->slots, t->data_address, t->build);

    Kappa__Control__Hello me = KAPPA__CONTROL__HELLO__INIT;
    me.role = KAPPA__CONTROL__HELLO__ROLE__ROLE_JOBMANAGER;
    me.instance_id = jm->instance_id;
    me.build_version = KP_JM_VERSION;
    me.abi_version = KP_ABI_VERSION;
    conn_send(c, KP_FRAME_HELLO, &me.base);
    Kappa__Control__RegisterAck ack = KAPPA__CONTROL__REGISTER_ACK__INIT;
    ack.taskmanager_id = t->id;
    ack.heartbeat_interval_ms = jm->cfg.heartbeat_interval_ms;
    ack.heartbeat_timeout_ms = jm->cfg.heartbeat_timeout_ms;
    ack.jobmanager_id = jm->instance_id;
    conn_send(c, KP_FRAME_REGISTER_ACK, &ack.base);
}

static void on_plugin_request(kp_jm_t *jm, kp_jm_conn_t *c, const char *sha)
{
    Kappa__Control__PluginData pd = KAPPA__CONTROL__PLUGIN_DATA__INIT;
    char path[4096];
    bool known = false;
    pd.sha256 = (char *)sha;
    for (size_t j = 0; j < jm->njobs && !known; j++)
        known = !strcmp(jm->jobs[j]->plugin_sha256, sha);
    FILE *f = known && !kp_upload_path(jm->cfg.state_dir, sha, path, sizeof path)
                  ? fopen(path, "rbe")
                  : NULL;
    struct stat st;
    if (!f || fstat(fileno(f), &st)) {
        pd.error = (char *)(known ? "the jobmanager cannot read that plugin"
                                  : "no job of this jobmanager has that plugin");
        kp_jm_log("taskmanager %s: plugin %.12s not served: %s", jm->tms[c->tm].id, sha, pd.error);
        conn_send(c, KP_FRAME_PLUGIN_DATA, &pd.base);
        if (f)
            fclose(f);
        return;
    }
    uint8_t *buf = malloc(PLUGIN_CHUNK);
    pd.total_size = (uint64_t)st.st_size;
    for (uint64_t off = 0; buf && off < pd.total_size;) {
        size_t n = fread(buf, 1, PLUGIN_CHUNK, f);
        if (n == 0) {
            conn_close_later(c, "the plugin file shrank while being sent");
            break;
        }
        pd.offset = off;
        pd.bytes.data = buf;
        pd.bytes.len = n;
        conn_send(c, KP_FRAME_PLUGIN_DATA, &pd.base);
        off += n;
    }
    free(buf);
    fclose(f);
}

static kp_sub_state sub_state_of(Kappa__Control__TaskState__State s)
{
    switch (s) {
    case KAPPA__CONTROL__TASK_STATE__STATE__DEPLOYING:
        return KP_SUB_DEPLOYING;
    case KAPPA__CONTROL__TASK_STATE__STATE__RUNNING:
        return KP_SUB_RUNNING;
    case KAPPA__CONTROL__TASK_STATE__STATE__FINISHED:
        return KP_SUB_FINISHED;
    case KAPPA__CONTROL__TASK_STATE__STATE__CANCELED:
        return KP_SUB_CANCELED;
    case KAPPA__CONTROL__TASK_STATE__STATE__FAILED:
        return KP_SUB_FAILED;
    default:
        return KP_SUB_NONE;
    }
}

/* One validated frame of a registered taskmanager (or its Hello). */
static void dispatch(kp_jm_t *jm, kp_jm_conn_t *c, uint16_t type, const uint8_t *p, size_t n)
{
#define UNPACK(var, kind, name)                                                                    \
    var = kind##__unpack(NULL, n, p);                                                              \
    if (!var) {                                                                                    \
        conn_close_later(c, "undecodable " name " frame");                                         \
        return;                                                                                    \
    }
    if (c->tm < 0 && type != KP_FRAME_HELLO) {
        conn_close_later(c, "the first frame must be a Hello");
        return;
    }
    switch (type) {
    case KP_FRAME_HELLO: {
        if (c->tm >= 0) {
            conn_close_later(c, "a second Hello on one connection");
            return;
        }
        Kappa__Control__Hello *UNPACK(h, kappa__control__hello, "Hello");
        on_hello(jm, c, h);
        kappa__control__hello__free_unpacked(h, NULL);
        return;
    }
    case KP_FRAME_HEARTBEAT: {
        Kappa__Control__Heartbeat *UNPACK(hb, kappa__control__heartbeat, "Heartbeat");
        jm->tms[c->tm].last_heartbeat_ms = kp_wall_ms();
        jm->tms[c->tm].last_heartbeat_mono = kp_mono_ms();
        jm->tms[c->tm].rss_bytes = hb->rss_bytes; /* 0 from a taskmanager that does not say */
        jm->tms[c->tm].cpu_seconds = hb->cpu_seconds;
        if (hb->log_tail && *hb->log_tail)
            kp_jm_tm_log_append(&jm->tms[c->tm], hb->log_tail);
        Kappa__Control__Heartbeat echo = KAPPA__CONTROL__HEARTBEAT__INIT;
        echo.sequence = hb->sequence; /* the answer, without the log */
        echo.sent_at_ms = kp_wall_ms();
        conn_send(c, KP_FRAME_HEARTBEAT, &echo.base);
        kappa__control__heartbeat__free_unpacked(hb, NULL);
        return;
    }
    case KP_FRAME_PLUGIN_REQUEST: {
        Kappa__Control__PluginRequest *UNPACK(r, kappa__control__plugin_request, "PluginRequest");
        if (r->sha256 && strlen(r->sha256) == 64 && kp_jm_is_hex(r->sha256, 64))
            on_plugin_request(jm, c, r->sha256);
        else
            conn_close_later(c, "PluginRequest: sha256 is not 64 lowercase hex digits");
        kappa__control__plugin_request__free_unpacked(r, NULL);
        return;
    }
    case KP_FRAME_TASK_STATE: {
        Kappa__Control__TaskState *UNPACK(s, kappa__control__task_state, "TaskState");
        kp_sub_state st = sub_state_of(s->state);
        if (s->job_id && strlen(s->job_id) == 32 && kp_jm_is_hex(s->job_id, 32) &&
            st != KP_SUB_NONE)
            kp_life_task_state(jm, c->tm, s->job_id, s->attempt, s->task_id, s->subtask, st,
                               s->message);
        else
            conn_close_later(c, "TaskState: bad job id or state");
        kappa__control__task_state__free_unpacked(s, NULL);
        return;
    }
    case KP_FRAME_METRICS: {
        Kappa__Control__Metrics *UNPACK(mt, kappa__control__metrics, "Metrics");
        if (mt->job_id && strlen(mt->job_id) == 32 && kp_jm_is_hex(mt->job_id, 32))
            kp_jm_keep_metrics(kp_life_metrics(jm, c->tm, mt->job_id, mt->attempt, mt->task_id,
                                               mt->subtask, mt->records_in, mt->records_out,
                                               mt->watermark_ms),
                               mt);
        else
            conn_close_later(c, "Metrics: bad job id");
        kappa__control__metrics__free_unpacked(mt, NULL);
        return;
    }
    case KP_FRAME_ACK_CHECKPOINT: {
        Kappa__Control__AckCheckpoint *UNPACK(a, kappa__control__ack_checkpoint, "AckCheckpoint");
        if (a->job_id && strlen(a->job_id) == 32 && kp_jm_is_hex(a->job_id, 32) &&
            a->checkpoint_id > 0 && a->ack_json && *a->ack_json)
            kp_jm_ckpt_ack(jm, c->tm, a->job_id, a->attempt, a->checkpoint_id, a->task_id,
                           a->subtask, a->ack_json);
        else
            conn_close_later(c, "AckCheckpoint: bad job id, checkpoint id or acknowledgement");
        kappa__control__ack_checkpoint__free_unpacked(a, NULL);
        return;
    }
    case KP_FRAME_DECLINE_CHECKPOINT: {
        Kappa__Control__DeclineCheckpoint *UNPACK(dc, kappa__control__decline_checkpoint,
                                                  "DeclineCheckpoint");
        if (dc->job_id && strlen(dc->job_id) == 32 && kp_jm_is_hex(dc->job_id, 32) &&
            dc->checkpoint_id > 0)
            kp_jm_ckpt_decline(jm, c->tm, dc->job_id, dc->attempt, dc->checkpoint_id, dc->task_id,
                               dc->subtask, dc->reason);
        else
            conn_close_later(c, "DeclineCheckpoint: bad job id or checkpoint id");
        kappa__control__decline_checkpoint__free_unpacked(dc, NULL);
        return;
    }
    default: {
        conn_close_later(c, "a frame type taskmanagers do not send");
        return;
    }
    }
#undef UNPACK
}

/* Reads what the socket has (at most 1 MiB per round, so one flooding peer cannot starve the
 * others) and dispatches every complete frame. */
static void conn_read(kp_jm_t *jm, kp_jm_conn_t *c)
{
    uint8_t buf[65536];
    for (int reads = 0; reads < 16; reads++) { /* then the others' turn: poll comes back */
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close_later(c, n == 0 ? "connection closed by peer" : "read error");
            return;
        }
        for (size_t off = 0; off < (size_t)n && !c->close_reason;) {
            if (!c->in_payload) {
                size_t take = KP_FRAME_HEADER_SIZE - c->hdr_have;
                take = take < (size_t)n - off ? take : (size_t)n - off;
                memcpy(c->hdr + c->hdr_have, buf + off, take);
                c->hdr_have += take;
                off += take;
                if (c->hdr_have < KP_FRAME_HEADER_SIZE)
                    break;
                kp_frame_err e = kp_frame_header_decode(&c->h, c->hdr, KP_FRAME_HEADER_SIZE);
                if (e != KP_FRAME_OK) {
                    conn_close_later(c, kp_frame_strerror(e));
                    return;
                }
                if (c->h.length > (c->tm < 0 ? HELLO_INBOUND_MAX : INBOUND_MAX)) {
                    conn_close_later(c, c->tm < 0 ? "frame above the 1 MiB a peer may send "
                                                    "before its Hello"
                                                  : "frame above the 16 MiB a taskmanager may "
                                                    "send");
                    return;
                }
                if (c->h.length > c->payload_cap) {
                    uint8_t *p = realloc(c->payload, c->h.length);
                    if (!p) {
                        conn_close_later(c, "out of memory");
                        return;
                    }
                    c->payload = p;
                    c->payload_cap = c->h.length;
                }
                c->in_payload = true;
                c->payload_have = 0;
            }
            size_t take = c->h.length - c->payload_have;
            take = take < (size_t)n - off ? take : (size_t)n - off;
            memcpy(c->payload + c->payload_have, buf + off, take);
            c->payload_have += take;
            off += take;
            if (c->payload_have < c->h.length)
                break;
            c->in_payload = false;
            c->hdr_have = 0;
            kp_frame_err e = kp_frame_payload_check(&c->h, c->payload, c->h.length);
            if (e != KP_FRAME_OK) {
                conn_close_later(c, kp_frame_strerror(e));
                return;
            }
            dispatch(jm, c, c->h.type, c->payload, c->h.length);
        }
        if (c->close_reason)
            return;
    }
}

/* --- the loop --- */

static void accept_all(void)
{
    for (;;) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        int fd = accept4(listen_fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        kp_jm_conn_t *c = nconns < MAX_CONNS ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            kp_jm_log("control: connection refused: too many connections");
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->tm = -1;
        c->opened_mono = kp_mono_ms();
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%u", ip, ntohs(sa.sin_port));
        conns[nconns++] = c;
    }
}

static void conn_free(kp_jm_t *jm, size_t i)
{
    kp_jm_conn_t *c = conns[i];
    kp_jm_log("control %s: closing: %s", c->peer, c->close_reason);
    if (c->tm >= 0) {
        int tm = c->tm;
        jm->tms[tm].conn = NULL;
        c->tm = -1;
        lose_tm(jm, tm, c->close_reason);
    }
    close(c->fd);
    free(c->payload);
    free(c->out);
    free(c);
    conns[i] = conns[--nconns];
}

static void check_timeouts(kp_jm_t *jm)
{
    kp_time now = kp_mono_ms();
    for (size_t t = 0; t < jm->ntms; t++)
        if (jm->tms[t].alive &&
            now - jm->tms[t].last_heartbeat_mono > (kp_time)jm->cfg.heartbeat_timeout_ms)
            lose_tm(jm, (int)t, "no heartbeat within the heartbeat timeout");
    for (size_t i = 0; i < nconns; i++)
        if (conns[i]->tm < 0 && now - conns[i]->opened_mono > HELLO_TIMEOUT_MS)
            conn_close_later(conns[i], "no Hello within 10 s");
}

void kp_control_run(kp_jm_t *jm, volatile int *stop)
{
    struct pollfd fds[MAX_CONNS + 2];
    while (!*stop) {
        pthread_mutex_lock(&jm->lock);
        size_t n = nconns;
        fds[0] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = jm->wake_fd, .events = POLLIN};
        for (size_t i = 0; i < n; i++)
            fds[i + 2] = (struct pollfd){
                .fd = conns[i]->fd,
                .events = (short)(POLLIN | (conns[i]->out_len > conns[i]->out_off ? POLLOUT : 0))};
        pthread_mutex_unlock(&jm->lock);

        poll(fds, n + 2, TICK_MS);

        pthread_mutex_lock(&jm->lock);
        uint64_t count;
        if (fds[1].revents && read(jm->wake_fd, &count, sizeof count) < 0)
            count = 0;
        for (size_t i = 0; i < n; i++) { /* conns[0..n) are unchanged since the poll */
            if (fds[i + 2].revents & POLLOUT)
                conn_flush(conns[i]);
            if (fds[i + 2].revents & (POLLIN | POLLHUP | POLLERR))
                conn_read(jm, conns[i]);
            if (!conns[i]->close_reason)
                conn_flush(conns[i]);
        }
        if (fds[0].revents)
            accept_all();
        check_timeouts(jm);
        kp_life_step(jm);
        for (size_t i = nconns; i-- > 0;)
            if (conns[i]->close_reason)
                conn_free(jm, i);
        pthread_mutex_unlock(&jm->lock);
    }
    pthread_mutex_lock(&jm->lock);
    for (size_t i = nconns; i-- > 0;) {
        conn_close_later(conns[i], "jobmanager stopping");
        conns[i]->tm = -1; /* stopping is not losing: the job list keeps its states */
        conn_free(jm, i);
    }
    pthread_mutex_unlock(&jm->lock);
    close(listen_fd);
}
