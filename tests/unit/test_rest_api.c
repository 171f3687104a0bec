/* The jobmanager's REST routes beyond submit/list/cancel (docs/rest.md) against a real
 * kappa-jobmanager and a fake taskmanager that reports known counters: every route answers
 * with those exact figures in its documented shape; /metrics passes `promtool check metrics`;
 * the dashboard is served and no path — "../", %2e%2e, %252f, %00, a raw NUL, backslashes —
 * gets anything but a 400/404; clients stalled mid-request do not stop heartbeats. Requests
 * are raw HTTP over a socket so that no client library normalizes the paths first. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/shell.h"
#include "control.pb-c.h"
#include "jm_harness.h"

static char dir_[256];

static void cleanup(void)
{
    jm_kill_all();
    kp_test_rmtree(dir_);
    char log[300];
    snprintf(log, sizeof log, "%s.log", dir_);
    unlink(log);
}

typedef struct raw_reply {
    int status;
    char *head, *body; /* malloc'd; body NUL-terminated */
    size_t body_len;
} raw_reply;

/* A TCP connection to the jobmanager's REST port from source address `from`. */
static int rest_connect(const jm_proc *jm, const char *from)
{
    int port = atoi(strrchr(jm->rest, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    inet_pton(AF_INET, from, &src.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Sends `len` bytes of a raw request from `from` and reads the reply until the server closes. */
static raw_reply raw_http_from(const jm_proc *jm, const char *from, const char *req, size_t len)
{
    int fd = rest_connect(jm, from);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(write(fd, req, len), (ssize_t)len);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096)
            buf = realloc(buf, cap = cap * 2 + 8192);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    raw_reply rep = {0};
    if (sscanf(buf, "HTTP/1.%*d %d", &rep.status) != 1)
        rep.status = -1; /* closed without an answer */
    char *sep = strstr(buf, "\r\n\r\n");
    rep.head = buf;
    rep.body_len = sep ? n - (size_t)(sep + 4 - buf) : 0;
    rep.body = malloc(rep.body_len + 1); /* binary-safe: a gzip body holds NULs */
    memcpy(rep.body, sep ? sep + 4 : "", rep.body_len);
    rep.body[rep.body_len] = '\0';
    if (sep)
        sep[2] = '\0';
    return rep;
}

static raw_reply raw_http(const jm_proc *jm, const char *req, size_t len)
{
    return raw_http_from(jm, "127.0.0.1", req, len);
}

static raw_reply get(const jm_proc *jm, const char *path)
{
    char req[1024];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    return raw_http(jm, req, (size_t)n);
}

static void raw_free(raw_reply *r)
{
    free(r->head);
    free(r->body);
}

/* GET path; asserts the status and that the body is JSON; the body. */
static json_t *get_json(const jm_proc *jm, const char *path, int status)
{
    raw_reply r = get(jm, path);
    cr_assert_eq(r.status, status, "GET %s: %d, expected %d: %s", path, r.status, status, r.body);
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    cr_assert_not_null(j, "GET %s: not JSON: %s", path, r.body);
    raw_free(&r);
    return j;
}

static json_int_t jint(json_t *o, const char *path)
{
    json_t *v = json_object_get(o, path);
    cr_assert(json_is_integer(v), "%s is not an integer", path);
    return json_integer_value(v);
}

/* A job of two tasks (source p=2, window p=1) deployed on fake taskmanager tm-a, running,
 * with Metrics for window subtask 0: 1234 in, 56 out, watermark 5000. Returns the fd. */
static int running_job(jm_proc *jm, char id[33])
{
    size_t len, n;
    char sha[65], path[512];
    snprintf(path, sizeof path, "%s/hourly_clicks.so", kp_test_env("KAPPA_JOBS"));
    void *so = read_all(path, &len);
    sha256_hex(so, len, sha);
    int par[] = {2, 1};
    char *m = make_manifest("clicks", sha, par, 2, NULL);
    http_reply r = http_submit(jm, m, so, len, NULL);
    cr_assert_eq(r.status, 202);
    snprintf(id, 33, "%s", json_string_value(json_object_get(r.body, "jobid")));
    http_free(&r);
    free(m);
    free(so);
    int tm = tm_register(jm->rpc_port, "tm-a", 2);
    Kappa__Control__Deploy *d =
        kappa__control__deploy__unpack(NULL, n, tm_expect(tm, KP_FRAME_DEPLOY, &n));
    cr_assert_not_null(d);
    uint32_t attempt = d->attempt;
    for (size_t i = 0; i < d->n_locals; i++) {
        Kappa__Control__TaskState s = KAPPA__CONTROL__TASK_STATE__INIT;
        s.job_id = id;
        s.attempt = attempt;
        s.task_id = d->locals[i]->task_id;
        s.subtask = d->locals[i]->subtask;
        s.state = KAPPA__CONTROL__TASK_STATE__STATE__RUNNING;
        tm_send(tm, KP_FRAME_TASK_STATE, &s.base);
    }
    kappa__control__deploy__free_unpacked(d, NULL);
    wait_job_state(jm, id, "RUNNING");
    Kappa__Control__Metrics mt = KAPPA__CONTROL__METRICS__INIT;
    mt.job_id = id;
    mt.attempt = attempt;
    mt.task_id = 1;
    mt.records_in = 1234;
    mt.records_out = 56;
    mt.watermark_ms = 5000;
    mt.bytes_in = 98765;
    mt.bytes_out = 4321;
    mt.state_bytes = 987654;
    mt.backpressured_ratio = 0.25;
    mt.idle_ratio = 0.5;
    mt.busy_ratio = 0.25;
    mt.source_json = "{\"reader\":{\"records\":1234,\"partitions\":[{\"partition\":3,"
                     "\"offset\":100,\"high\":107,\"lag\":7}]},\"watermarks\":[{\"partition\":3,"
                     "\"watermark\":4000}]}";
    mt.sink_json = "{\"sent\":60,\"acked\":56,\"stale\":2,\"failed\":1,\"retries\":3,"
                   "\"bulks\":4,\"bulk_latency_ms_p50\":12.5,\"bulk_latency_ms_p99\":40.0}";
    tm_send(tm, KP_FRAME_METRICS, &mt.base);
    Kappa__Control__Heartbeat hb = KAPPA__CONTROL__HEARTBEAT__INIT;
    hb.sequence = 1;
    hb.rss_bytes = 12345678;
    hb.cpu_seconds = 1.5;
    hb.log_tail = "2026-12-01T10:00:00.000Z kappa-taskmanager: first line\n"
                  "2026-12-01T10:00:01.000Z kappa-taskmanager: second line\n";
    tm_send(tm, KP_FRAME_HEARTBEAT,
            &hb.base); /* its echo proves the Metrics before it was handled */
    free(tm_expect(tm, KP_FRAME_HEARTBEAT, &n));
    return tm;
}

Test(rest_api, every_route_shows_the_reported_figures, .fini = cleanup)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-rest-api-%d", (int)getpid());
    kp_test_rmtree(dir_);
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    char id[33];
    int tm = running_job(&jm, id);

    json_t *j = get_json(&jm, "/jobs/overview", 200);
    json_t *job = json_array_get(json_object_get(j, "jobs"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(job, "jid")), id);
    cr_assert_str_eq(json_string_value(json_object_get(job, "state")), "RUNNING");
    cr_assert_eq(jint(json_object_get(job, "tasks"), "total"), 3);
    cr_assert_eq(jint(json_object_get(job, "tasks"), "running"), 3);
    json_decref(j);

    j = get_json(&jm, "/jobs/clicks/plan", 200);
    json_t *nodes = json_object_get(json_object_get(j, "plan"), "nodes");
    cr_assert_eq(json_array_size(nodes), 2);
    json_t *in = json_array_get(json_object_get(json_array_get(nodes, 1), "inputs"), 0);
    cr_assert_eq(jint(in, "id"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(in, "ship_strategy")), "hash");
    cr_assert_eq(jint(json_array_get(nodes, 0), "parallelism"), 2);
    json_decref(j);

    j = get_json(&jm, "/jobs/clicks/vertices/1", 200);
    json_t *sub = json_array_get(json_object_get(j, "subtasks"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(sub, "taskmanager-id")), "tm-a");
    cr_assert_eq(jint(json_object_get(sub, "metrics"), "read-records"), 1234);
    cr_assert_eq(jint(json_object_get(sub, "metrics"), "write-records"), 56);
    cr_assert_eq(jint(json_object_get(sub, "metrics"), "current-input-watermark"), 5000);
    cr_assert_eq(jint(json_object_get(sub, "metrics"), "read-bytes"), 98765);
    cr_assert_eq(jint(json_object_get(sub, "metrics"), "write-bytes"), 4321);
    cr_assert_eq(jint(json_object_get(sub, "metrics"), "state-size"), 987654);
    cr_assert_eq(json_real_value(json_object_get(json_object_get(sub, "metrics"), "idle-ratio")),
                 0.5);
    json_t *part = json_array_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(sub, "metrics"), "source"), "reader"),
            "partitions"),
        0);
    cr_assert_eq(jint(part, "lag"), 7);
    cr_assert_eq(jint(json_object_get(json_object_get(sub, "metrics"), "sink"), "acked"), 56);
    json_decref(j);
    j = get_json(&jm, "/jobs/clicks/vertices/0", 200); /* no report yet: null, not 0 */
    cr_assert(json_is_null(
        json_object_get(json_array_get(json_object_get(j, "subtasks"), 1), "metrics")));
    json_decref(j);

    j = get_json(&jm, "/jobs/clicks/vertices/1/subtasks/metrics", 200);
    cr_assert_eq(json_array_size(j), 8);
    json_decref(j);
    j = get_json(&jm, "/jobs/clicks/vertices/1/subtasks/metrics?get=numRecordsOut,numRecordsIn",
                 200);
    cr_assert_eq(json_array_size(j), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "id")),
                     "numRecordsIn");
    cr_assert_eq(json_real_value(json_object_get(json_array_get(j, 0), "sum")), 1234.0);
    cr_assert_eq(json_real_value(json_object_get(json_array_get(j, 1), "max")), 56.0);
    json_decref(j);

    j = get_json(&jm, "/jobs/clicks/vertices/1/watermarks", 200);
    cr_assert_eq(json_array_size(j), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "id")),
                     "0.currentInputWatermark");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "value")), "5000");
    json_decref(j);
    j = get_json(&jm, "/jobs/clicks/vertices/1/backpressure", 200);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    cr_assert_str_eq(json_string_value(json_object_get(j, "backpressure-level")), "low");
    sub = json_array_get(json_object_get(j, "subtasks"), 0);
    cr_assert_eq(json_real_value(json_object_get(sub, "ratio")), 0.25);
    cr_assert_eq(json_real_value(json_object_get(sub, "busyRatio")), 0.25);
    json_decref(j);
    j = get_json(&jm, "/jobs/clicks/vertices/0/backpressure", 200); /* nothing reported */
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "unavailable");
    cr_assert(json_is_null(json_object_get(j, "backpressure-level")));
    json_decref(j);
    json_decref(get_json(&jm, "/jobs/clicks/vertices/7", 404));
    json_decref(get_json(&jm, "/jobs/clicks/vertices/x1", 400));
    json_decref(get_json(&jm, "/jobs/nosuch/plan", 404));

    j = get_json(&jm, "/taskmanagers/tm-a", 200);
    cr_assert_eq(jint(j, "slotsNumber"), 2);
    cr_assert_eq(jint(j, "freeSlots"), 0);
    cr_assert_eq(json_array_size(json_object_get(j, "subtasks")), 3);
    cr_assert_eq(jint(j, "records-in"), 1234);
    json_decref(j);
    j = get_json(&jm, "/taskmanagers/tm-a/metrics", 200);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "metrics"), 0), "id")),
        "Status.Slots.Total");
    cr_assert_eq(jint(json_array_get(json_object_get(j, "metrics"), 5), "value"), 12345678);
    json_decref(j);
    j = get_json(&jm, "/taskmanagers", 200);
    cr_assert_eq(jint(json_array_get(json_object_get(j, "taskmanagers"), 0), "rss_bytes"),
                 12345678);
    json_decref(j);
    /* the log lines it sent with its heartbeat; ?lines=1 keeps the last one */
    raw_reply lg = get(&jm, "/taskmanagers/tm-a/logs");
    cr_assert_eq(lg.status, 200);
    cr_assert(strstr(lg.body, "first line\n") && strstr(lg.body, "second line\n"), "%s", lg.body);
    raw_free(&lg);
    lg = get(&jm, "/taskmanagers/tm-a/logs?lines=1");
    cr_assert_eq(lg.status, 200);
    cr_assert(!strstr(lg.body, "first line") && strstr(lg.body, "second line\n"), "%s", lg.body);
    raw_free(&lg);
    json_decref(get_json(&jm, "/taskmanagers/nope", 404));

    j = get_json(&jm, "/config", 200);
    cr_assert_eq(json_is_false(json_object_get(json_object_get(j, "features"), "web-submit")), 1);
    json_decref(j);
    j = get_json(&jm, "/jobmanager/config", 200);
    cr_assert(json_array_size(j) > 5);
    json_decref(j);
    raw_reply r = get(&jm, "/jobmanager/logs?lines=50");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "jobmanager: started"), "log tail: %s", r.body);
    cr_assert(strstr(r.body, "RUNNING"), "log tail: %s", r.body);
    raw_free(&r);

    /* /metrics: the figures, and valid for promtool */
    r = get(&jm, "/metrics");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head, "text/plain; version=0.0.4"));
    char want[300];
    snprintf(want, sizeof want,
             "kappa_subtask_records_in_total{job=\"%s\",job_name=\"clicks\",task=\"1\","
             "task_name=\"window\",subtask=\"0\",taskmanager=\"tm-a\"} 1234\n",
             id);
    cr_assert(strstr(r.body, want), "no %s in %s", want, r.body);
    cr_assert(strstr(r.body, "kappa_subtask_watermark_seconds{"));
    cr_assert(strstr(r.body, "kappa_taskmanager_slots{taskmanager=\"tm-a\"} 2\n"));
    cr_assert(strstr(r.body, "kappa_jobs{state=\"RUNNING\"} 1\n"));
    cr_assert(strstr(r.body, "kappa_taskmanager_resident_memory_bytes{taskmanager=\"tm-a\"} "
                             "12345678\n"));
    snprintf(want, sizeof want,
             "kappa_source_partition_lag{job=\"%s\",job_name=\"clicks\",task=\"1\","
             "task_name=\"window\",subtask=\"0\",taskmanager=\"tm-a\",partition=\"3\"} 7\n",
             id);
    cr_assert(strstr(r.body, want), "no %s in %s", want, r.body);
    cr_assert(strstr(r.body, "kappa_es_sink_documents_total{"));
    cr_assert(strstr(r.body, "kappa_subtask_backpressured_ratio{"));
    cr_assert(strstr(r.body, "} 987654\n") && strstr(r.body, "kappa_subtask_state_bytes{"),
              "the state size in /metrics");
    cr_assert(strstr(r.body, "kappa_source_partition_watermark_seconds{"));
    char prom[300];
    snprintf(prom, sizeof prom, "%s.prom", dir_);
    FILE *f = fopen(prom, "w");
    fwrite(r.body, 1, r.body_len, f);
    fclose(f);
    raw_free(&r);
    cr_assert_eq(kp_test_sh("promtool check metrics <%s >%s.out 2>&1", prom, prom), 0,
                 "promtool check metrics failed (see %s.out; promtool: deploy/dev/install-deps)",
                 prom);
    unlink(prom);

    close(tm); /* the taskmanager dies: the job restarts and says why */
    wait_job_state(&jm, id, "RESTARTING");
    j = get_json(&jm, "/jobs/clicks/exceptions", 200);
    cr_assert(json_is_string(json_object_get(j, "root-exception")));
    json_t *all = json_object_get(j, "all-exceptions"), *e;
    size_t i, lost = 0;
    json_array_foreach(all, i, e)
    {
        lost += strstr(json_string_value(json_object_get(e, "exception")), "tm-a lost") != NULL;
    }
    cr_assert_eq(lost, 1, "no 'tm-a lost' among %zu exceptions", json_array_size(all));
    json_decref(j);
    jm_stop(&jm);
}

Test(rest_api, the_dashboard_is_served_and_no_path_escapes, .fini = cleanup)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-rest-path-%d", (int)getpid());
    kp_test_rmtree(dir_);
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    raw_reply r = get(&jm, "/");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head, "text/html"));
    cr_assert(strstr(r.body, "<script src=\"/web/app.js\""), "index: %s", r.body);
    raw_free(&r);
    r = get(&jm, "/web/app.js");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head, "text/javascript"));
    cr_assert(!strstr(r.head, "Content-Encoding"));
    size_t plain = r.body_len;
    raw_free(&r);
    static const char gz_req[] = "GET /web/app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: "
                                 "gzip, deflate, br\r\nConnection: close\r\n\r\n";
    r = raw_http(&jm, gz_req, sizeof gz_req - 1);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head, "Content-Encoding: gzip"), "head: %s", r.head);
    cr_assert(r.body_len > 2 && (unsigned char)r.body[0] == 0x1f &&
                  (unsigned char)r.body[1] == 0x8b && r.body_len < plain / 2,
              "gzip body of %zu bytes for %zu plain", r.body_len, plain);
    raw_free(&r);

    static const char *const bad[] = {
        "/web/../../../../etc/passwd",
        "/web/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/web/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/web/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "/web/..%252f..%252fetc%252fpasswd",
        "/web/index.html%00.png",
        "/web/%00",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/web/..%5c..%5cetc%5cpasswd",
        "/web//etc/passwd",
        "/web/",
        "/web/jm.h",
        "/web/embed.py",
        "/jobs/%2e%2e/plan",
        "/jobs/..%2f..%2fetc/plan",
        "/taskmanagers/%2e%2e%2f%2e%2e%2fetc%2fpasswd/logs",
        "/jobs/clicks%00/plan",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = get(&jm, bad[i]);
        cr_assert(r.status == 400 || r.status == 404, "GET %s: %d", bad[i], r.status);
        cr_assert(!strstr(r.body, "root:"), "GET %s leaked a file", bad[i]);
        raw_free(&r);
    }
    /* a raw NUL in the request line: refused by the HTTP parser or by us */
    static const char nul_req[] = "GET /web/index.html\0/../../etc/passwd HTTP/1.1\r\nHost: x\r\n"
                                  "Connection: close\r\n\r\n";
    r = raw_http(&jm, nul_req, sizeof nul_req - 1);
    cr_assert(r.status == 400 || r.status == 404 || r.status == -1, "raw NUL: %d", r.status);
    raw_free(&r);
    /* an oversized header and a large body on a route that takes none */
    char *big = malloc(200000);
    int n = snprintf(big, 200000, "GET /overview HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 100000);
    n += 100000;
    n += snprintf(big + n, 200000 - (size_t)n, "\r\nConnection: close\r\n\r\n");
    r = raw_http(&jm, big, (size_t)n);
    cr_assert(r.status == 431 || r.status == 413 || r.status == 400 || r.status == -1,
              "big header: %d", r.status);
    raw_free(&r);
    n = snprintf(big, 200000,
                 "PATCH /jobs/x?mode=cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 150000\r\n"
                 "Connection: close\r\n\r\n");
    memset(big + n, 'b', 150000);
    r = raw_http(&jm, big, (size_t)n + 150000);
    cr_assert(r.status < 200 || r.status >= 300, "big body: %d", r.status);
    raw_free(&r);
    free(big);
    r = get(&jm, "/overview"); /* and it still answers */
    cr_assert_eq(r.status, 200);
    raw_free(&r);
    jm_stop(&jm);
}

/* Clients that send half a request and stall take REST connections, never the control plane:
 * with all 32 connections one address may hold taken by such clients, a taskmanager's
 * heartbeats are still answered, it stays registered, and another address still gets answers. */
Test(rest_api, slow_clients_do_not_stop_heartbeats, .fini = cleanup)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-rest-slow-%d", (int)getpid());
    kp_test_rmtree(dir_);
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    int tm = tm_register(jm.rpc_port, "tm-slow", 1);
    wait_taskmanagers(&jm, 1);
    enum { SLOW = 32 };
    int slow[SLOW];
    static const char half[] = "GET /overview HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for (int i = 0; i < SLOW; i++) {
        slow[i] = rest_connect(&jm, "127.0.0.1");
        cr_assert_eq(write(slow[i], half, sizeof half - 1), (ssize_t)(sizeof half - 1));
    }
    size_t n;
    for (uint64_t seq = 1; seq <= 15; seq++) { /* 3 s of heartbeats, each echoed */
        tm_heartbeat(tm, seq);
        free(tm_expect(tm, KP_FRAME_HEARTBEAT, &n));
        usleep(200 * 1000);
    }
    static const char req[] = "GET /taskmanagers/tm-slow HTTP/1.1\r\nHost: x\r\n"
                              "Connection: close\r\n\r\n";
    raw_reply r = raw_http_from(&jm, "127.0.0.2", req, sizeof req - 1);
    cr_assert_eq(r.status, 200, "from another address: %d", r.status);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_assert(json_is_true(json_object_get(j, "alive")));
    cr_assert(json_integer_value(json_object_get(j, "timeSinceLastHeartbeat")) < 2000);
    json_decref(j);
    raw_free(&r);
    for (int i = 0; i < SLOW; i++)
        close(slow[i]);
    close(tm);
    jm_stop(&jm);
}
