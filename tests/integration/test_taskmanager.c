/* kappa-taskmanager as a real process against a fake jobmanager played by this test (a listening
 * socket on 127.0.0.1 that speaks proto/frame.h frames): it registers with the right Hello,
 * heartbeats, registers again under the same id after the jobmanager goes away and comes back,
 * refuses a plugin whose bytes do not hash to the sha256 it was deployed with, refuses a graph
 * that hashes differently and (for now) a job split over taskmanagers, runs a whole job over
 * file sources and sinks to FINISHED with the same output as `kappa run --local`, cancels on
 * request, and survives garbage frame streams (each closes the connection, the process lives on
 * and connects again). Binaries come from meson: KAPPA_TM, KAPPA_CLI, KAPPA_GEN, KAPPA_JOBS.
 * No services needed. Every process the test starts is stopped in the fixture's fini. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"
#include "clock.h"
#include "control.pb-c.h"
#include "frame.h"
#include "graph_codec.h"
#include "plan.h"
#include "plugin.h"
#include "rng.h"

#define MAX_STATES  256
#define MAX_METRICS 32

static char dir[] = "/tmp/kappa-tm-test-XXXXXX";
static pid_t tm_pid = -1;
static pid_t tm2_pid = -1; /* a second taskmanager, for split deployments */
static int listen_fd = -1;
static int ack_timeout_ms = 3000; /* the heartbeat timeout our RegisterAck sets */
static int jm_port;

typedef struct task_state {
    char job[40];
    uint32_t attempt;
    int task, subtask, state;
    char message[512];
} task_state;

/* The latest Metrics of one subtask of one attempt, and how many came for it. */
typedef struct subtask_metrics {
    uint32_t attempt;
    int task, subtask, reports;
    long long records_in, records_out, bytes_in, watermark_ms;
} subtask_metrics;

/* One accepted taskmanager connection and what it has sent so far. */
typedef struct jm_conn {
    int fd;
    Kappa__Control__Hello *hello;
    int heartbeats;
    task_state states[MAX_STATES];
    int nstates;
    subtask_metrics metrics[MAX_METRICS];
    int nmetrics;
    int plugin_requests;
    const uint8_t *plugin; /* served on PluginRequest, in `chunks` frames */
    size_t plugin_len;
    const char *plugin_sha; /* the sha256 the PluginData frames name */
    int chunks;
    const char *plugin_error; /* answer PluginRequest with this error instead */
    int hold_plugin;          /* answer PluginRequest not at all */
} jm_conn;

/* ---- the fake jobmanager's socket ------------------------------------------------------ */

static void jm_listen(int port)
{
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(listen_fd, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(listen_fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(listen_fd, 8), 0);
    socklen_t sl = sizeof a;
    getsockname(listen_fd, (struct sockaddr *)&a, &sl);
    jm_port = ntohs(a.sin_port);
}

static void jm_unlisten(void)
{
    if (listen_fd >= 0)
        close(listen_fd);
    listen_fd = -1;
}

static int jm_accept(int timeout_ms)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
}

static void send_raw(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the taskmanager may have closed on us: that is what some tests want */
        p += n;
        len -= (size_t)n;
    }
}

static void send_msg(int fd, kp_frame_type type, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(KP_FRAME_HEADER_SIZE + n + 1);
    cr_assert_not_null(buf);
    protobuf_c_message_pack(m, buf + KP_FRAME_HEADER_SIZE);
    kp_frame_header_encode(buf, type, buf + KP_FRAME_HEADER_SIZE, (uint32_t)n);
    send_raw(fd, buf, KP_FRAME_HEADER_SIZE + n);
    free(buf);
}

/* Reads exactly n bytes before the deadline: 1, 0 when the peer closed, -1 on timeout. */
static int read_full(int fd, uint8_t *buf, size_t n, kp_time deadline)
{
    size_t got = 0;
    while (got < n) {
        kp_time left = deadline - kp_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            return -1;
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return 1;
}

/* One frame from the taskmanager, which must be valid. 1, 0 closed, -1 timeout. */
static int recv_frame(int fd, kp_frame_header_t *h, uint8_t **payload, kp_time deadline)
{
    uint8_t hdr[KP_FRAME_HEADER_SIZE];
    int rc = read_full(fd, hdr, sizeof hdr, deadline);
    if (rc != 1)
        return rc;
    cr_assert_eq(kp_frame_header_decode(h, hdr, sizeof hdr), KP_FRAME_OK,
                 "the taskmanager sent a bad frame header");
    *payload = malloc(h->length + 1);
    rc = read_full(fd, *payload, h->length, deadline);
    if (rc == 1)
        cr_assert_eq(kp_frame_payload_check(h, *payload, h->length), KP_FRAME_OK);
    else
        free(*payload);
    return rc;
}

static void serve_plugin(jm_conn *c)
{
    size_t chunk = c->plugin_len / (size_t)c->chunks + 1;
    for (size_t off = 0; off < c->plugin_len; off += chunk) {
        Kappa__Control__PluginData d = KAPPA__CONTROL__PLUGIN_DATA__INIT;
        d.sha256 = (char *)c->plugin_sha;
        d.offset = off;
        d.total_size = c->plugin_len;
        d.bytes.data = (uint8_t *)c->plugin + off;
        d.bytes.len = off + chunk > c->plugin_len ? c->plugin_len - off : chunk;
        send_msg(c->fd, KP_FRAME_PLUGIN_DATA, &d.base);
    }
}

/* Handles one frame from the taskmanager: echoes heartbeats, records task states, serves
 * plugin requests. */
static void handle(jm_conn *c, const kp_frame_header_t *h, const uint8_t *p)
{
    if (h->type == KP_FRAME_HEARTBEAT) {
        Kappa__Control__Heartbeat *hb = kappa__control__heartbeat__unpack(NULL, h->length, p);
        cr_assert_not_null(hb, "a heartbeat does not decode");
        cr_assert_eq(hb->sequence, (uint64_t)c->heartbeats + 1, "heartbeat sequence %llu",
                     (unsigned long long)hb->sequence);
        c->heartbeats++;
        send_msg(c->fd, KP_FRAME_HEARTBEAT, &hb->base);
        kappa__control__heartbeat__free_unpacked(hb, NULL);
    } else if (h->type == KP_FRAME_TASK_STATE) {
        Kappa__Control__TaskState *ts = kappa__control__task_state__unpack(NULL, h->length, p);
        cr_assert_not_null(ts);
        cr_assert_lt(c->nstates, MAX_STATES);
        task_state *s = &c->states[c->nstates++];
        snprintf(s->job, sizeof s->job, "%s", ts->job_id);
        snprintf(s->message, sizeof s->message, "%s", ts->message);
        s->attempt = ts->attempt;
        s->task = ts->task_id;
        s->subtask = (int)ts->subtask;
        s->state = ts->state;
        cr_log_info("TaskState %s/%u task %d.%d: %d %s", s->job, s->attempt, s->task, s->subtask,
                    s->state, s->message);
        kappa__control__task_state__free_unpacked(ts, NULL);
    } else if (h->type == KP_FRAME_METRICS) {
        Kappa__Control__Metrics *m = kappa__control__metrics__unpack(NULL, h->length, p);
        cr_assert_not_null(m, "a Metrics frame does not decode");
        subtask_metrics *sm = NULL;
        for (int i = 0; i < c->nmetrics && !sm; i++)
            if (c->metrics[i].attempt == m->attempt && c->metrics[i].task == m->task_id &&
                c->metrics[i].subtask == (int)m->subtask)
                sm = &c->metrics[i];
        if (!sm) {
            cr_assert_lt(c->nmetrics, MAX_METRICS);
            sm = &c->metrics[c->nmetrics++];
            *sm = (subtask_metrics){
                .attempt = m->attempt, .task = m->task_id, .subtask = (int)m->subtask};
        }
        cr_assert_geq((long long)m->records_in, sm->records_in, "records_in went back");
        cr_assert_geq((long long)m->records_out, sm->records_out, "records_out went back");
        sm->reports++;
        sm->records_in = (long long)m->records_in;
        sm->records_out = (long long)m->records_out;
        sm->bytes_in = (long long)m->bytes_in;
        sm->watermark_ms = m->watermark_ms;
        kappa__control__metrics__free_unpacked(m, NULL);
    } else if (h->type == KP_FRAME_PLUGIN_REQUEST) {
        Kappa__Control__PluginRequest *r =
            kappa__control__plugin_request__unpack(NULL, h->length, p);
        cr_assert_not_null(r);
        cr_assert_not_null(c->plugin, "unexpected plugin request");
        cr_assert_str_eq(r->sha256, c->plugin_sha);
        c->plugin_requests++;
        kappa__control__plugin_request__free_unpacked(r, NULL);
        if (c->plugin_error) {
            Kappa__Control__PluginData d = KAPPA__CONTROL__PLUGIN_DATA__INIT;
            d.sha256 = (char *)c->plugin_sha;
            d.error = (char *)c->plugin_error;
            send_msg(c->fd, KP_FRAME_PLUGIN_DATA, &d.base);
        } else if (!c->hold_plugin) {
            serve_plugin(c);
        }
    } else {
        cr_assert_fail("unexpected frame type %u from the taskmanager", h->type);
    }
}

/* Serves the connection until pred(c, arg) holds: 1, 0 when the taskmanager closed, -1 on
 * timeout. */
static int serve_until(jm_conn *c, int (*pred)(jm_conn *, long), long arg, int timeout_ms)
{
    kp_time deadline = kp_mono_ms() + timeout_ms;
    while (!pred(c, arg)) {
        kp_frame_header_t h;
        uint8_t *p;
        int rc = recv_frame(c->fd, &h, &p, deadline);
        if (rc != 1)
            return rc;
        handle(c, &h, p);
        free(p);
    }
    return 1;
}

static int heartbeats_at_least(jm_conn *c, long n)
{
    return c->heartbeats >= n;
}

/* The taskmanager's Hello, then ours and the RegisterAck. */
static void jm_register(jm_conn *c, int fd)
{
    *c = (jm_conn){.fd = fd};
    kp_frame_header_t h;
    uint8_t *p;
    cr_assert_eq(recv_frame(fd, &h, &p, kp_mono_ms() + 10000), 1, "no Hello from the taskmanager");
    cr_assert_eq(h.type, KP_FRAME_HELLO, "first frame of type %u", h.type);
    c->hello = kappa__control__hello__unpack(NULL, h.length, p);
    free(p);
    cr_assert_not_null(c->hello);
    Kappa__Control__Hello hello = KAPPA__CONTROL__HELLO__INIT;
    hello.role = KAPPA__CONTROL__HELLO__ROLE__ROLE_JOBMANAGER;
    hello.build_version = "fake";
    hello.abi_version = KP_ABI_VERSION;
    send_msg(fd, KP_FRAME_HELLO, &hello.base);
    Kappa__Control__RegisterAck ack = KAPPA__CONTROL__REGISTER_ACK__INIT;
    ack.taskmanager_id = c->hello->instance_id;
    ack.heartbeat_interval_ms = 50;
    ack.heartbeat_timeout_ms = (uint32_t)ack_timeout_ms;
    ack.jobmanager_id = "fake-jm";
    send_msg(fd, KP_FRAME_REGISTER_ACK, &ack.base);
}

static void jm_close(jm_conn *c)
{
    if (c->hello)
        kappa__control__hello__free_unpacked(c->hello, NULL);
    if (c->fd >= 0)
        close(c->fd);
    c->hello = NULL;
    c->fd = -1;
}

static void accept_and_register(jm_conn *c)
{
    int fd = jm_accept(15000);
    cr_assert_geq(fd, 0, "the taskmanager did not connect");
    jm_register(c, fd);
}

/* ---- the taskmanager process ------------------------------------------------------------ */

/* Starts a taskmanager with state and log named by `name`; returns its pid. */
static pid_t spawn_tm(const char *name)
{
    char jm[64], state[600], log[600];
    snprintf(jm, sizeof jm, "127.0.0.1:%d", jm_port);
    snprintf(state, sizeof state, "%s/%s", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    const char *tm = kp_test_env("KAPPA_TM");
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        execl(tm, tm, "--jobmanager", jm, "--state-dir", state, "--slots", "2", "--data-port", "0",
              "--heartbeat-timeout-ms", "3000", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void start_tm(void)
{
    tm_pid = spawn_tm("state");
}

static int tm_alive(void)
{
    return tm_pid > 0 && waitpid(tm_pid, NULL, WNOHANG) == 0;
}

/* SIGTERM, then up to 10 s for a clean exit, then SIGKILL. Returns the exit status or -1. */
static int stop_pid(pid_t *pid)
{
    if (*pid <= 0)
        return -1;
    int status = 0, rc = -1;
    kill(*pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            break;
        }
        poll(NULL, 0, 50);
    }
    if (rc == -1 && waitpid(*pid, &status, WNOHANG) == 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, &status, 0);
    }
    *pid = -1;
    return rc;
}

static int stop_tm(void)
{
    return stop_pid(&tm_pid);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    jm_listen(0);
    start_tm();
}

static void teardown(void)
{
    stop_tm();
    stop_pid(&tm2_pid);
    jm_unlisten();
    /* the daemons' logs, for failures */
    kp_test_sh("sed 's/^/  tm: /' %s/state.log >&2; test ! -f %s/state2.log || sed 's/^/  tm2: /' "
               "%s/state2.log >&2",
               dir, dir, dir);
    kp_test_rmtree(dir);
}

TestSuite(taskmanager, .init = setup, .fini = teardown, .timeout = 180);

/* ---- jobs and deployments ----------------------------------------------------------------- */

typedef struct job_fixture {
    uint8_t *plugin;
    size_t plugin_len;
    char sha[KP_SHA256_HEX], graph_hash[KP_SHA256_HEX];
    kp_plan plan;
    int parallelism;
} job_fixture;

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A job plugin as `kappa submit` would send it: its bytes, sha256, graph hash and plan at p. */
static void load_job(job_fixture *j, const char *name, int p)
{
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/%s.so", kp_test_env("KAPPA_JOBS"), name);
    j->plugin = read_file(path, &j->plugin_len);
    kp_sha256_hex(j->plugin, j->plugin_len, j->sha);
    kp_plugin_handle *h = kp_plugin_load(path, p, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    cr_assert_eq(kp_graph_hash(kp_plugin_job(h), j->graph_hash, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kp_plan_build(kp_plugin_job(h), &j->plan), 0);
    kp_plugin_close(h);
    j->parallelism = p;
}

/* A Deploy of the job's plan over `ntm` taskmanagers at data addresses addr[]: subtask s of
 * every task goes to taskmanager s mod ntm (the jobmanager's slot sharing), and the Deploy is
 * the one for taskmanager `which`. Strings are the caller's; free with free_deploy. */
static Kappa__Control__Deploy *make_deploy_on(const job_fixture *j, const char *job_id,
                                              uint32_t attempt, const char *source_uri,
                                              const char *sink_uri, const char *const *addr,
                                              int ntm, int which)
{
    static const char *const tm_ids[] = {"tm-0", "tm-1", "tm-2", "tm-3"};
    Kappa__Control__Deploy *d = calloc(1, sizeof *d);
    kappa__control__deploy__init(d);
    d->job_id = (char *)job_id;
    d->attempt = attempt;
    d->epoch = 7 + attempt;
    d->name = "hourly-clicks";
    d->plugin_sha256 = (char *)j->sha;
    d->plugin_size = j->plugin_len;
    d->graph_hash = (char *)j->graph_hash;
    d->parallelism = (uint32_t)j->parallelism;
    d->start = "earliest";
    static Kappa__Control__Binding b[2];
    kappa__control__binding__init(&b[0]);
    kappa__control__binding__init(&b[1]);
    b[0].name = "clicks";
    b[0].uri = (char *)source_uri;
    b[1].name = "hourly-click-index";
    b[1].uri = (char *)sink_uri;
    d->bindings = calloc(2, sizeof *d->bindings);
    d->bindings[0] = &b[0];
    d->bindings[1] = &b[1];
    d->n_bindings = 2;
    int total = 0;
    for (int t = 0; t < j->plan.ntasks; t++)
        total += j->plan.tasks[t].parallelism;
    d->locals = calloc((size_t)total, sizeof *d->locals);
    d->placements = calloc((size_t)total, sizeof *d->placements);
    for (int t = 0; t < j->plan.ntasks; t++)
        for (int s = 0; s < j->plan.tasks[t].parallelism; s++) {
            Kappa__Control__Placement *pl = calloc(1, sizeof *pl);
            kappa__control__placement__init(pl);
            pl->task_id = j->plan.tasks[t].id;
            pl->subtask = (uint32_t)s;
            pl->taskmanager_id = (char *)tm_ids[s % ntm];
            pl->data_address = (char *)addr[s % ntm];
            d->placements[d->n_placements++] = pl;
            if (s % ntm != which)
                continue;
            Kappa__Control__Local *l = calloc(1, sizeof *l);
            kappa__control__local__init(l);
            l->task_id = j->plan.tasks[t].id;
            l->subtask = (uint32_t)s;
            d->locals[d->n_locals++] = l;
        }
    return d;
}

/* The whole job on one taskmanager. */
static Kappa__Control__Deploy *make_deploy(const job_fixture *j, const char *job_id,
                                           uint32_t attempt, const char *source_uri,
                                           const char *sink_uri)
{
    static const char *const addr[] = {"127.0.0.1:1"};
    return make_deploy_on(j, job_id, attempt, source_uri, sink_uri, addr, 1, 0);
}

static void free_deploy(Kappa__Control__Deploy *d)
{
    for (size_t i = 0; i < d->n_locals; i++)
        free(d->locals[i]);
    for (size_t i = 0; i < d->n_placements; i++)
        free(d->placements[i]);
    free(d->locals);
    free(d->placements);
    free(d->bindings);
    free(d);
}

/* At least n final states (FINISHED, CANCELED, FAILED) were reported. */
static int finals_reached(jm_conn *c, long n)
{
    int k = 0;
    for (int i = 0; i < c->nstates; i++)
        k += c->states[i].state >= KAPPA__CONTROL__TASK_STATE__STATE__FINISHED;
    return k >= n;
}

static int has_state(jm_conn *c, long state)
{
    for (int i = 0; i < c->nstates; i++)
        if (c->states[i].state == state)
            return 1;
    return 0;
}

/* Every final state reported is `state`, for `n` subtasks; returns the first message. */
static const char *assert_finals(jm_conn *c, int state, size_t n)
{
    size_t finals = 0;
    const char *msg = NULL;
    for (int i = 0; i < c->nstates; i++) {
        if (c->states[i].state < KAPPA__CONTROL__TASK_STATE__STATE__FINISHED)
            continue;
        cr_assert_eq(c->states[i].state, state, "task %d.%d ended in state %d: %s",
                     c->states[i].task, c->states[i].subtask, c->states[i].state,
                     c->states[i].message);
        finals++;
        msg = msg ? msg : c->states[i].message;
    }
    cr_assert_eq(finals, n, "%zu final states, want %zu", finals, n);
    return msg;
}

static void deploy_and_wait(jm_conn *c, job_fixture *j, Kappa__Control__Deploy *d, int timeout_ms)
{
    c->plugin = j->plugin;
    c->plugin_len = j->plugin_len;
    c->plugin_sha = j->sha;
    c->chunks = c->chunks ? c->chunks : 3;
    send_msg(c->fd, KP_FRAME_DEPLOY, &d->base);
    cr_assert_eq(serve_until(c, finals_reached, (long)d->n_locals, timeout_ms), 1,
                 "no final state for every subtask within %d ms", timeout_ms);
}

/* ---- tests ------------------------------------------------------------------------------- */

Test(taskmanager, registers_with_its_hello_and_heartbeats)
{
    jm_conn c;
    accept_and_register(&c);
    const Kappa__Control__Hello *h = c.hello;
    cr_assert_eq(h->role, KAPPA__CONTROL__HELLO__ROLE__ROLE_TASKMANAGER);
    cr_assert_eq(h->slots, 2);
    cr_assert_eq(h->abi_version, KP_ABI_VERSION);
    cr_assert_gt(strlen(h->build_version), 0);
    cr_assert_eq(strlen(h->instance_id), 32, "instance id '%s'", h->instance_id);
    int port = 0;
    cr_assert_eq(sscanf(h->data_address, "127.0.0.1:%d", &port), 1, "data address '%s'",
                 h->data_address);
    cr_assert_gt(port, 0);
    char path[700], stored[128];
    snprintf(path, sizeof path, "cat %s/state/instance-id", dir);
    kp_test_capture(stored, sizeof stored, path);
    cr_assert_str_eq(stored, h->instance_id, "the id is kept in --state-dir");
    cr_assert_eq(serve_until(&c, heartbeats_at_least, 5, 10000), 1, "fewer than 5 heartbeats");
    jm_close(&c);
    cr_assert_eq(stop_tm(), 0, "SIGTERM is a clean exit");
}

/* A jobmanager that keeps the connection open but goes silent is given up after the heartbeat
 * timeout its RegisterAck set, and registered with again. */
Test(taskmanager, leaves_a_silent_jobmanager_after_the_heartbeat_timeout)
{
    ack_timeout_ms = 600;
    jm_conn c;
    accept_and_register(&c);
    cr_assert_eq(serve_until(&c, heartbeats_at_least, 2, 10000), 1);
    /* read without answering until the taskmanager closes */
    kp_time deadline = kp_mono_ms() + 10000;
    uint8_t buf[4096];
    ssize_t n;
    for (;;) {
        struct pollfd p = {.fd = c.fd, .events = POLLIN};
        kp_time left = deadline - kp_mono_ms();
        cr_assert(left > 0 && poll(&p, 1, (int)left) == 1, "the connection stayed open");
        if ((n = recv(c.fd, buf, sizeof buf, 0)) <= 0)
            break;
    }
    jm_close(&c);
    cr_assert(tm_alive());
    accept_and_register(&c);
    cr_assert_eq(serve_until(&c, heartbeats_at_least, 2, 10000), 1);
    jm_close(&c);
}

Test(taskmanager, registers_again_when_the_jobmanager_comes_back)
{
    jm_conn c;
    accept_and_register(&c);
    char id[64];
    snprintf(id, sizeof id, "%s", c.hello->instance_id);
    cr_assert_eq(serve_until(&c, heartbeats_at_least, 2, 10000), 1);
    /* the jobmanager goes away entirely, then comes back on the same port */
    int port = jm_port;
    jm_close(&c);
    jm_unlisten();
    poll(NULL, 0, 500);
    cr_assert(tm_alive());
    jm_listen(port);
    accept_and_register(&c);
    cr_assert_str_eq(c.hello->instance_id, id, "same instance id after reconnecting");
    cr_assert_eq(serve_until(&c, heartbeats_at_least, 2, 10000), 1);
    jm_close(&c);
    /* a restarted taskmanager keeps its id too */
    cr_assert_eq(stop_tm(), 0);
    start_tm();
    accept_and_register(&c);
    cr_assert_str_eq(c.hello->instance_id, id, "same instance id after a restart");
    jm_close(&c);
}

Test(taskmanager, refuses_a_plugin_whose_bytes_do_not_match_its_sha256)
{
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 1);
    jm_conn c;
    accept_and_register(&c);
    Kappa__Control__Deploy *d =
        make_deploy(j, "0123456789abcdef0123456789abcdef", 0, "file:/dev/null", "file:/dev/null");
    uint8_t *bad = malloc(j->plugin_len);
    memcpy(bad, j->plugin, j->plugin_len);
    bad[j->plugin_len / 2] ^= 0x5a; /* one byte flipped */
    c.plugin = bad;
    c.plugin_len = j->plugin_len;
    c.plugin_sha = j->sha;
    c.chunks = 2;
    send_msg(c.fd, KP_FRAME_DEPLOY, &d->base);
    cr_assert_eq(serve_until(&c, finals_reached, (long)d->n_locals, 20000), 1);
    const char *msg = assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, d->n_locals);
    cr_assert(strstr(msg, "do not match their sha256"), "message: %s", msg);
    cr_assert_eq(c.plugin_requests, 1);
    cr_assert(has_state(&c, KAPPA__CONTROL__TASK_STATE__STATE__DEPLOYING));
    cr_assert(!has_state(&c, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING), "nothing ran");
    char path[800];
    snprintf(path, sizeof path, "%s/state/plugins/%s.so", dir, j->sha);
    cr_assert_neq(access(path, F_OK), 0, "the bad bytes are not in the cache");
    cr_assert_eq(kp_test_sh("ls -A %s/state/plugins | grep -q .", dir), 1,
                 "no partial download is left behind");
    cr_assert(tm_alive());
    free(bad);
    free_deploy(d);
    jm_close(&c);
    free(j->plugin);
    free(j);
}

/* events.ndjson (kappa-gen, 20k events with late and malformed ones) and local.ndjson, what
 * `kappa run --local` makes of it with the seed job at p=2 over 4 file partitions. */
static void make_reference(int seed)
{
    cr_assert_eq(kp_test_sh("%s --output %s/events.ndjson --count 20000 --out-of-order-ms 10000 "
                            "--late-fraction 0.001 --malformed 0.01 --seed %d --quiet",
                            kp_test_env("KAPPA_GEN"), dir, seed),
                 0);
    cr_assert_eq(kp_test_sh("%s run --local %s/hourly_clicks.so -p 2 --source "
                            "clicks=file:%s/events.ndjson?partitions=4 --sink "
                            "hourly-click-index=file:%s/local.ndjson 2>/dev/null",
                            kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), dir, dir),
                 0);
}

/* The seed job at p=2 over a kappa-gen file, deployed whole, equals `kappa run --local`. */
Test(taskmanager, runs_a_whole_job_like_run_local, .timeout = 300)
{
    make_reference(11);
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 2);
    jm_conn c;
    accept_and_register(&c);
    char src[700], sink[700];
    snprintf(src, sizeof src, "file:%s/events.ndjson?partitions=4", dir);
    snprintf(sink, sizeof sink, "file:%s/tm.ndjson", dir);
    const char *job = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb";
    Kappa__Control__Deploy *d = make_deploy(j, job, 0, src, sink);
    cr_assert_gt(d->n_locals, 2, "p=2 over at least two tasks");
    deploy_and_wait(&c, j, d, 120000);
    assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED, d->n_locals);
    cr_assert(has_state(&c, KAPPA__CONTROL__TASK_STATE__STATE__DEPLOYING));
    cr_assert(has_state(&c, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING));
    cr_assert_eq(c.plugin_requests, 1);
    cr_assert_eq(kp_test_sh("test -s %s/local.ndjson && sort %s/local.ndjson > %s/a && sort "
                            "%s/tm.ndjson > %s/b && cmp -s %s/a %s/b",
                            dir, dir, dir, dir, dir, dir, dir),
                 0, "the taskmanager's output differs from kappa run --local");
    cr_assert_eq(kp_test_sh("test -d %s/state/jobs/%s/0", dir, job), 1,
                 "the attempt's state is removed after the run");
    /* the next attempt finds the plugin in the verified cache: no second request */
    c.nstates = 0;
    Kappa__Control__Deploy *d2 = make_deploy(j, job, 1, src, sink);
    deploy_and_wait(&c, j, d2, 120000);
    assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED, d2->n_locals);
    cr_assert_eq(c.plugin_requests, 1, "the cached plugin is used");
    cr_assert_eq(kp_test_sh("sort %s/tm.ndjson > %s/b && cmp -s %s/a %s/b", dir, dir, dir, dir), 0);
    /* a cached file that no longer hashes to its name is fetched again */
    cr_assert_eq(kp_test_sh("printf x | dd of=%s/state/plugins/%s.so bs=1 seek=100 conv=notrunc "
                            "2>/dev/null",
                            dir, j->sha),
                 0);
    c.nstates = 0;
    Kappa__Control__Deploy *d3 = make_deploy(j, job, 2, src, sink);
    deploy_and_wait(&c, j, d3, 120000);
    assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED, d3->n_locals);
    cr_assert_eq(c.plugin_requests, 2, "a corrupted cache entry is fetched again");
    free_deploy(d);
    free_deploy(d2);
    free_deploy(d3);
    jm_close(&c);
    free(j->plugin);
    free(j);
}

Test(taskmanager, refuses_a_graph_that_hashes_differently)
{
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 1);
    jm_conn c;
    accept_and_register(&c);
    Kappa__Control__Deploy *d =
        make_deploy(j, "cccccccccccccccccccccccccccccccc", 0, "file:/dev/null", "file:/dev/null");
    d->parallelism = 3; /* the graph hash was taken at p=1 */
    deploy_and_wait(&c, j, d, 20000);
    const char *msg = assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, d->n_locals);
    cr_assert(strstr(msg, "different graph"), "message: %s", msg);
    cr_assert(!has_state(&c, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING));
    free_deploy(d);
    jm_close(&c);
    free(j->plugin);
    free(j);
}

/* Serves two taskmanagers at once until each reported na / nb final states. */
static void serve_two(jm_conn *a, long na, jm_conn *b, long nb, int timeout_ms)
{
    kp_time deadline = kp_mono_ms() + timeout_ms;
    while (!finals_reached(a, na) || !finals_reached(b, nb)) {
        struct pollfd p[2] = {{.fd = a->fd, .events = POLLIN}, {.fd = b->fd, .events = POLLIN}};
        kp_time left = deadline - kp_mono_ms();
        cr_assert(left > 0 && poll(p, 2, (int)left) > 0, "no final state for every subtask");
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents)
                continue;
            jm_conn *c = i ? b : a;
            kp_frame_header_t h;
            uint8_t *payload;
            cr_assert_eq(recv_frame(c->fd, &h, &payload, deadline), 1,
                         "taskmanager %d closed its connection", i);
            handle(c, &h, payload);
            free(payload);
        }
    }
}

/* The seed job at p=2 split over two taskmanagers (subtask i of every task on taskmanager
 * i mod 2, records crossing the TCP data plane) equals `kappa run --local`. */
Test(taskmanager, runs_a_job_split_over_two_taskmanagers, .timeout = 300)
{
    make_reference(13);
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 2);
    jm_conn a, b;
    accept_and_register(&a);
    tm2_pid = spawn_tm("state2");
    accept_and_register(&b);
    const char *addr[] = {a.hello->data_address, b.hello->data_address};
    char src[700], sink[700];
    snprintf(src, sizeof src, "file:%s/events.ndjson?partitions=4", dir);
    snprintf(sink, sizeof sink, "file:%s/tm.ndjson", dir);
    const char *job = "ffffffffffffffff0000000000000000";
    Kappa__Control__Deploy *da = make_deploy_on(j, job, 0, src, sink, addr, 2, 0);
    Kappa__Control__Deploy *db = make_deploy_on(j, job, 0, src, sink, addr, 2, 1);
    /* both write the same file: the sink's two subtasks are in two processes, so each writes
     * its own file here */
    static Kappa__Control__Binding sink_b;
    char sink_b_uri[720];
    snprintf(sink_b_uri, sizeof sink_b_uri, "file:%s/tm-b.ndjson", dir);
    sink_b = *db->bindings[1];
    sink_b.uri = sink_b_uri;
    db->bindings[1] = &sink_b;
    cr_assert_gt(da->n_locals, 0);
    cr_assert_gt(db->n_locals, 0);
    a.plugin = b.plugin = j->plugin;
    a.plugin_len = b.plugin_len = j->plugin_len;
    a.plugin_sha = b.plugin_sha = j->sha;
    a.chunks = b.chunks = 2;
    send_msg(a.fd, KP_FRAME_DEPLOY, &da->base);
    send_msg(b.fd, KP_FRAME_DEPLOY, &db->base);
    serve_two(&a, (long)da->n_locals, &b, (long)db->n_locals, 120000);
    assert_finals(&a, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED, da->n_locals);
    assert_finals(&b, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED, db->n_locals);
    cr_assert_eq(kp_test_sh("sort %s/local.ndjson > %s/a && sort %s/tm.ndjson %s/tm-b.ndjson > "
                            "%s/b && test -s %s/a && cmp -s %s/a %s/b",
                            dir, dir, dir, dir, dir, dir, dir, dir),
                 0, "the split run's output differs from kappa run --local");
    free_deploy(da);
    free_deploy(db);
    jm_close(&a);
    jm_close(&b);
    free(j->plugin);
    free(j);
}

static int plugin_requested(jm_conn *c, long n)
{
    return c->plugin_requests >= n;
}

/* A jobmanager that cannot serve the plugin fails the deployment with its reason; a Cancel
 * that arrives while the plugin is being fetched cancels the deployment before anything ran. */
Test(taskmanager, plugin_errors_and_cancel_while_fetching)
{
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 1);
    jm_conn c;
    accept_and_register(&c);
    const char *job = "9999999999999999aaaaaaaaaaaaaaaa";
    Kappa__Control__Deploy *d = make_deploy(j, job, 0, "file:/dev/null", "file:/dev/null");
    c.plugin_error = "upload is gone";
    deploy_and_wait(&c, j, d, 20000);
    const char *msg = assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, d->n_locals);
    cr_assert(strstr(msg, "upload is gone"), "message: %s", msg);
    c.nstates = 0;
    c.plugin_error = NULL;
    c.hold_plugin = 1;
    d->attempt = 1;
    send_msg(c.fd, KP_FRAME_DEPLOY, &d->base);
    cr_assert_eq(serve_until(&c, plugin_requested, 2, 20000), 1);
    Kappa__Control__Cancel cancel = KAPPA__CONTROL__CANCEL__INIT;
    cancel.job_id = (char *)job;
    cancel.attempt = 1;
    send_msg(c.fd, KP_FRAME_CANCEL, &cancel.base);
    cr_assert_eq(serve_until(&c, finals_reached, (long)d->n_locals, 20000), 1);
    assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED, d->n_locals);
    cr_assert(!has_state(&c, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING));
    /* bytes that come after the cancel still complete the verified cache; it serves on */
    serve_plugin(&c);
    cr_assert_eq(serve_until(&c, heartbeats_at_least, c.heartbeats + 3, 10000), 1);
    cr_assert(tm_alive());
    free_deploy(d);
    jm_close(&c);
    free(j->plugin);
    free(j);
}

/* A plugin request the jobmanager never answers fails the deployment after 3 heartbeat
 * timeouts instead of leaving it DEPLOYING for ever. */
Test(taskmanager, an_unanswered_plugin_request_fails_the_deployment)
{
    ack_timeout_ms = 500;
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 1);
    jm_conn c;
    accept_and_register(&c);
    Kappa__Control__Deploy *d =
        make_deploy(j, "77777777777777777777777777777777", 0, "file:/dev/null", "file:/dev/null");
    static const char never[] = "0000000000000000000000000000000000000000000000000000000000000000";
    d->plugin_sha256 = (char *)never;
    c.plugin = j->plugin;
    c.plugin_sha = never;
    c.hold_plugin = 1;
    send_msg(c.fd, KP_FRAME_DEPLOY, &d->base);
    cr_assert_eq(serve_until(&c, finals_reached, (long)d->n_locals, 20000), 1);
    const char *msg = assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, d->n_locals);
    cr_assert(strstr(msg, "no data for plugin"), "message: %s", msg);
    cr_assert_eq(c.plugin_requests, 1);
    cr_assert(tm_alive());
    free_deploy(d);
    jm_close(&c);
    free(j->plugin);
    free(j);
}

static int running(jm_conn *c, long n)
{
    int k = 0;
    for (int i = 0; i < c->nstates; i++)
        k += c->states[i].state == KAPPA__CONTROL__TASK_STATE__STATE__RUNNING;
    return k >= n;
}

/* A live split job: hourly_clicks at p=2 over two taskmanagers reading a FIFO nobody writes
 * (hold keeps a writer open), both RUNNING when this returns. */
typedef struct split_fixture {
    job_fixture j;
    jm_conn a, b;
    Kappa__Control__Deploy *da, *db;
    int hold;
} split_fixture;

static void start_live_split(split_fixture *f, const char *job)
{
    char fifo[700], src[720], sink[720];
    snprintf(fifo, sizeof fifo, "%s/live", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    f->hold = open(fifo, O_RDWR);
    cr_assert_geq(f->hold, 0);
    snprintf(src, sizeof src, "file:%s?partitions=2", fifo);
    snprintf(sink, sizeof sink, "file:%s/out.ndjson", dir);
    load_job(&f->j, "hourly_clicks", 2);
    accept_and_register(&f->a);
    tm2_pid = spawn_tm("state2");
    accept_and_register(&f->b);
    const char *addr[] = {f->a.hello->data_address, f->b.hello->data_address};
    f->da = make_deploy_on(&f->j, job, 0, src, sink, addr, 2, 0);
    f->db = make_deploy_on(&f->j, job, 0, src, sink, addr, 2, 1);
    jm_conn *cs[] = {&f->a, &f->b};
    for (int i = 0; i < 2; i++) {
        cs[i]->plugin = f->j.plugin;
        cs[i]->plugin_len = f->j.plugin_len;
        cs[i]->plugin_sha = f->j.sha;
        cs[i]->chunks = 1;
    }
    send_msg(f->a.fd, KP_FRAME_DEPLOY, &f->da->base);
    send_msg(f->b.fd, KP_FRAME_DEPLOY, &f->db->base);
    cr_assert_eq(serve_until(&f->a, running, (long)f->da->n_locals, 20000), 1);
    cr_assert_eq(serve_until(&f->b, running, (long)f->db->n_locals, 20000), 1);
    poll(NULL, 0, 300); /* let the data connection come up */
}

static void free_split(split_fixture *f)
{
    close(f->hold);
    free_deploy(f->da);
    free_deploy(f->db);
    jm_close(&f->a);
    jm_close(&f->b);
    free(f->j.plugin);
}

/* A split job whose other taskmanager dies (kill -9) fails on the survivor by itself: its data
 * connection breaks, the channels to the dead peer fail and so does the run — no Cancel needed,
 * nothing hangs. */
Test(taskmanager, a_split_job_fails_when_its_peer_dies, .timeout = 120)
{
    static split_fixture f;
    start_live_split(&f, "1234567890abcdef1234567890abcdef");
    kill(tm2_pid, SIGKILL);
    waitpid(tm2_pid, NULL, 0);
    tm2_pid = -1;
    cr_assert_eq(serve_until(&f.a, finals_reached, (long)f.da->n_locals, 30000), 1,
                 "the survivor's subtasks did not end");
    assert_finals(&f.a, KAPPA__CONTROL__TASK_STATE__STATE__FAILED, f.da->n_locals);
    cr_assert(tm_alive());
    free_split(&f);
}

/* Cancel reaches both halves of a split job: each reports CANCELED. */
Test(taskmanager, cancel_stops_a_split_job, .timeout = 120)
{
    static split_fixture f;
    const char *job = "abcdef1234567890abcdef1234567890";
    start_live_split(&f, job);
    Kappa__Control__Cancel cancel = KAPPA__CONTROL__CANCEL__INIT;
    cancel.job_id = (char *)job;
    send_msg(f.a.fd, KP_FRAME_CANCEL, &cancel.base);
    send_msg(f.b.fd, KP_FRAME_CANCEL, &cancel.base);
    serve_two(&f.a, (long)f.da->n_locals, &f.b, (long)f.db->n_locals, 30000);
    assert_finals(&f.a, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED, f.da->n_locals);
    assert_finals(&f.b, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED, f.db->n_locals);
    free_split(&f);
}

/* A job reading a FIFO nobody writes to runs until cancelled; a lost jobmanager cancels too. */
Test(taskmanager, cancel_stops_a_running_job)
{
    char fifo[700], src[720], sink[720];
    snprintf(fifo, sizeof fifo, "%s/live", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int hold = open(fifo, O_RDWR); /* a writer that never writes: the source waits */
    cr_assert_geq(hold, 0);
    snprintf(src, sizeof src, "file:%s", fifo);
    snprintf(sink, sizeof sink, "file:%s/out.ndjson", dir);
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 1);
    jm_conn c;
    accept_and_register(&c);
    const char *job = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    Kappa__Control__Deploy *d = make_deploy(j, job, 0, src, sink);
    c.plugin = j->plugin;
    c.plugin_len = j->plugin_len;
    c.plugin_sha = j->sha;
    c.chunks = 1;
    send_msg(c.fd, KP_FRAME_DEPLOY, &d->base);
    cr_assert_eq(serve_until(&c, running, (long)d->n_locals, 20000), 1);
    cr_assert_eq(kp_test_sh("test -d %s/state/jobs/%s/0", dir, job), 0, "state dir while running");
    Kappa__Control__Cancel cancel = KAPPA__CONTROL__CANCEL__INIT;
    cancel.job_id = (char *)job;
    cancel.attempt = 0;
    send_msg(c.fd, KP_FRAME_CANCEL, &cancel.base);
    cr_assert_eq(serve_until(&c, finals_reached, (long)d->n_locals, 20000), 1);
    assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED, d->n_locals);
    cr_assert_eq(kp_test_sh("test -d %s/state/jobs/%s/0", dir, job), 1, "state removed");
    /* again, then the jobmanager goes away: the taskmanager cancels what it runs */
    c.nstates = 0;
    d->attempt = 1;
    send_msg(c.fd, KP_FRAME_DEPLOY, &d->base);
    cr_assert_eq(serve_until(&c, running, (long)d->n_locals, 20000), 1);
    jm_close(&c);
    int removed = 0;
    for (int i = 0; i < 100 && !removed; i++, poll(NULL, 0, 100))
        removed = kp_test_sh("test -d %s/state/jobs/%s/1", dir, job) == 1;
    cr_assert(removed, "the job was not cancelled when the jobmanager went away");
    cr_assert(tm_alive());
    close(hold);
    free_deploy(d);
    free(j->plugin);
    free(j);
}

/* One garbage stream after registering; the taskmanager must close the connection. */
static void garbage_round(uint64_t seed, int kind)
{
    jm_conn c;
    accept_and_register(&c);
    uint8_t buf[4096];
    uint64_t rng = seed;
    size_t len = 64 + kp_rng_next(&rng) % (sizeof buf - 64);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)kp_rng_next(&rng);
    switch (kind) {
    case 0: /* random bytes */
        break;
    case 1: /* a valid header for a Deploy whose payload is not protobuf */
        buf[KP_FRAME_HEADER_SIZE] = 0xff; /* field 31, wire type 7: never valid */
        kp_frame_header_encode(buf, KP_FRAME_DEPLOY, buf + KP_FRAME_HEADER_SIZE,
                               (uint32_t)(len - KP_FRAME_HEADER_SIZE));
        break;
    case 2: /* a valid header whose checksum does not match */
        kp_frame_header_encode(buf, KP_FRAME_PLUGIN_DATA, buf + KP_FRAME_HEADER_SIZE,
                               (uint32_t)(len - KP_FRAME_HEADER_SIZE));
        buf[len - 1] ^= 1;
        break;
    default: /* a header announcing more than the frame limit */
        kp_frame_header_encode(buf, KP_FRAME_CANCEL, buf + KP_FRAME_HEADER_SIZE, 0);
        buf[8] = buf[9] = buf[10] = buf[11] = 0xff;
        break;
    }
    send_raw(c.fd, buf, len);
    /* the taskmanager reads, logs and closes: serve until the connection ends */
    int rc = serve_until(&c, heartbeats_at_least, 1000000, 10000);
    cr_assert_eq(rc, 0, "seed %llu kind %d: the connection stayed open", (unsigned long long)seed,
                 kind);
    jm_close(&c);
    cr_assert(tm_alive(), "seed %llu kind %d: the taskmanager died", (unsigned long long)seed,
              kind);
}

Test(taskmanager, garbage_frames_close_the_connection_not_the_process)
{
    static const uint64_t seeds[] = {1, 2, 3, 0x9e3779b97f4a7c15ull};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        for (int kind = 0; kind < 4; kind++)
            garbage_round(seeds[i], kind);
    uint64_t fresh = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 1;
    fprintf(stderr, "test_taskmanager: fresh garbage seed %llu\n", (unsigned long long)fresh);
    for (int kind = 0; kind < 4; kind++)
        garbage_round(fresh, kind);
    /* and it still registers and heartbeats normally */
    jm_conn c;
    accept_and_register(&c);
    cr_assert_eq(serve_until(&c, heartbeats_at_least, 3, 10000), 1);
    jm_close(&c);
}

/* ---- live metrics ------------------------------------------------------------------------ */

/* Records read so far by the source subtasks of the job, from their latest Metrics. */
static long long source_records_in(jm_conn *c, const job_fixture *j)
{
    long long n = 0;
    for (int i = 0; i < c->nmetrics; i++)
        for (int t = 0; t < j->plan.ntasks; t++)
            if (j->plan.tasks[t].id == c->metrics[i].task && j->plan.tasks[t].upstream < 0)
                n += c->metrics[i].records_in;
    return n;
}

static const job_fixture *metrics_job; /* for the predicate below */

static int source_read_at_least(jm_conn *c, long n)
{
    return source_records_in(c, metrics_job) >= n;
}

static int metrics_for_at_least(jm_conn *c, long n)
{
    return c->nmetrics >= n;
}

/* A job reading a FIFO fed in two halves reports Metrics for every subtask each heartbeat:
 * the sources' records_in reaches the first half while the job still runs, and at the end it
 * equals the input's records, with a final report before the final states. */
Test(taskmanager, reports_live_metrics_per_subtask, .timeout = 180)
{
    char fifo[700], src[720], sink[720];
    cr_assert_eq(kp_test_sh("%s --output %s/m.ndjson --count 4000 --seed 5 --quiet",
                            kp_test_env("KAPPA_GEN"), dir),
                 0);
    cr_assert_eq(kp_test_sh("head -n 1500 %s/m.ndjson > %s/m1 && tail -n +1501 %s/m.ndjson > "
                            "%s/m2 && test $(wc -l < %s/m.ndjson) -eq 4000",
                            dir, dir, dir, dir, dir),
                 0);
    snprintf(fifo, sizeof fifo, "%s/mlive", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int hold = open(fifo, O_RDWR); /* keeps the FIFO open between the halves */
    cr_assert_geq(hold, 0);
    snprintf(src, sizeof src, "file:%s", fifo); /* one partition: a FIFO is read once */
    snprintf(sink, sizeof sink, "file:%s/mout.ndjson", dir);
    job_fixture *j = calloc(1, sizeof *j);
    load_job(j, "hourly_clicks", 2);
    metrics_job = j;
    jm_conn c;
    accept_and_register(&c);
    Kappa__Control__Deploy *d = make_deploy(j, "0123456789abcdef0123456789abcdef", 0, src, sink);
    c.plugin = j->plugin;
    c.plugin_len = j->plugin_len;
    c.plugin_sha = j->sha;
    c.chunks = 1;
    send_msg(c.fd, KP_FRAME_DEPLOY, &d->base);
    cr_assert_eq(serve_until(&c, running, (long)d->n_locals, 20000), 1);
    cr_assert_eq(kp_test_sh("cat %s/m1 > %s", dir, fifo), 0);
    cr_assert_eq(serve_until(&c, source_read_at_least, 1500, 30000), 1,
                 "the sources' records_in did not reach the first half while running: %lld",
                 source_records_in(&c, j));
    cr_assert_eq(source_records_in(&c, j), 1500);
    cr_assert_not(finals_reached(&c, 1), "still running");
    cr_assert_eq(serve_until(&c, metrics_for_at_least, (long)d->n_locals, 10000), 1,
                 "Metrics for %d of %zu subtasks", c.nmetrics, d->n_locals);
    cr_assert_eq(c.nmetrics, (int)d->n_locals);
    cr_assert_eq(kp_test_sh("cat %s/m2 > %s", dir, fifo), 0);
    close(hold); /* end of input: the job finishes */
    cr_assert_eq(serve_until(&c, finals_reached, (long)d->n_locals, 60000), 1);
    assert_finals(&c, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED, d->n_locals);
    cr_assert_eq(source_records_in(&c, j), 4000, "records_in at the end");
    long long out = 0, bytes = 0;
    for (int i = 0; i < c.nmetrics; i++) {
        cr_log_info("metrics task %d.%d: in %lld out %lld bytes %lld wm %lld (%d reports)",
                    c.metrics[i].task, c.metrics[i].subtask, c.metrics[i].records_in,
                    c.metrics[i].records_out, c.metrics[i].bytes_in, c.metrics[i].watermark_ms,
                    c.metrics[i].reports);
        cr_assert_geq(c.metrics[i].reports, 2, "a running report and the final one");
        out += c.metrics[i].records_out;
        bytes += c.metrics[i].bytes_in;
    }
    cr_assert_gt(out, 0);
    cr_assert_eq(kp_test_sh("test $(wc -c < %s/m.ndjson) -gt %lld", dir, bytes), 0,
                 "bytes_in counts key and value bytes of the lines");
    cr_assert_gt(bytes, 0);
    free_deploy(d);
    jm_close(&c);
    free(j->plugin);
    free(j);
}
