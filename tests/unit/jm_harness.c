/* The jobmanager tests' harness; see jm_harness.h. */
#include "jm_harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control.pb-c.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t started_[16]; /* jobmanagers and taskmanagers started and not yet stopped */

static void track(pid_t pid, pid_t replace)
{
    for (size_t i = 0; i < sizeof started_ / sizeof started_[0]; i++)
        if (started_[i] == replace) {
            started_[i] = pid;
            return;
        }
}

void jm_kill_all(void)
{
    for (size_t i = 0; i < sizeof started_ / sizeof started_[0]; i++)
        if (started_[i] > 0) {
            int st;
            kill(started_[i], SIGKILL);
            waitpid(started_[i], &st, 0);
            started_[i] = 0;
        }
}

pid_t tm_proc_start(const jm_proc *jm, const char *state_dir, int slots)
{
    const char *bin = getenv("KAPPA_TM");
    cr_assert(bin && *bin, "KAPPA_TM is not set (run through meson test)");
    char log[300], addr[64], nslots[16];
    snprintf(log, sizeof log, "%s.log", state_dir);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", jm->rpc_port);
    snprintf(nslots, sizeof nslots, "%d", slots);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (lfd >= 0) {
            dup2(lfd, 1);
            dup2(lfd, 2);
        }
        execl(bin, bin, "--jobmanager", addr, "--slots", nslots, "--state-dir", state_dir,
              (char *)NULL);
        _exit(127);
    }
    track(pid, 0);
    return pid;
}

void tm_proc_stop(pid_t pid)
{
    int st;
    track(0, pid);
    kill(pid, SIGTERM);
    for (int i = 0; i < 200 && waitpid(pid, &st, WNOHANG) == 0; i++)
        sleep_ms(50);
    if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
}

void tm_proc_kill(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    track(0, pid);
}

void jm_start(jm_proc *jm, const char *dir, const char *const *extra)
{
    const char *bin = getenv("KAPPA_JOBMANAGER");
    cr_assert(bin && *bin, "KAPPA_JOBMANAGER is not set (run through meson test)");
    const char *argv[32] = {bin, "--rest-port", "0", "--rpc-port", "0", "--state-dir", dir};
    size_t n = 7;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int out[2];
    cr_assert_eq(pipe(out), 0);
    char log[300];
    snprintf(log, sizeof log, "%s.log", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (lfd >= 0)
            dup2(lfd, 2);
        close(out[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    track(pid, 0);
    memset(jm, 0, sizeof *jm);
    jm->pid = pid;
    snprintf(jm->dir, sizeof jm->dir, "%s", dir);
    FILE *f = fdopen(out[0], "r");
    char line[128];
    int rest = 0;
    while ((!rest || !jm->rpc_port) && fgets(line, sizeof line, f)) {
        char *colon = strrchr(line, ':');
        if (!strncmp(line, "rest ", 5) && colon)
            rest = atoi(colon + 1);
        else if (!strncmp(line, "rpc ", 4) && colon)
            jm->rpc_port = atoi(colon + 1);
    }
    fclose(f);
    cr_assert(rest > 0 && jm->rpc_port > 0, "the jobmanager did not print its ports (see %s)", log);
    snprintf(jm->rest, sizeof jm->rest, "http://127.0.0.1:%d", rest);
}

int jm_alive(jm_proc *jm)
{
    int st;
    return waitpid(jm->pid, &st, WNOHANG) == 0;
}

void jm_stop(jm_proc *jm)
{
    if (jm->pid <= 0)
        return;
    int st = 0;
    track(0, jm->pid);
    kill(jm->pid, SIGTERM);
    for (int i = 0; i < 200 && waitpid(jm->pid, &st, WNOHANG) == 0; i++)
        sleep_ms(50);
    if (waitpid(jm->pid, &st, WNOHANG) == 0) {
        kill(jm->pid, SIGKILL);
        waitpid(jm->pid, &st, 0);
        cr_assert_fail("the jobmanager did not stop on SIGTERM");
    }
    jm->pid = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the jobmanager exited with status %d", st);
}

/* --- HTTP --- */

typedef struct buf_t {
    char *p;
    size_t n;
} buf_t;

static size_t collect(char *data, size_t size, size_t nmemb, void *arg)
{
    buf_t *b = arg;
    size_t n = size * nmemb;
    char *p = realloc(b->p, b->n + n + 1);
    if (!p)
        return 0;
    memcpy(p + b->n, data, n);
    b->p = p;
    b->n += n;
    p[b->n] = '\0';
    return n;
}

static http_reply perform(CURL *c, const jm_proc *jm, const char *path, const char *token,
                          struct curl_slist *headers)
{
    char url[512], auth[300];
    buf_t b = {0};
    snprintf(url, sizeof url, "%s%s", jm->rest, path);
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    http_reply r = {0, NULL};
    if (rc == CURLE_OK || rc == CURLE_SEND_ERROR) /* an early answer may cut the upload */
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    cr_assert(r.status > 0, "%s %s: %s", "request", path, curl_easy_strerror(rc));
    if (b.p)
        r.body = json_loads(b.p, 0, NULL);
    free(b.p);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return r;
}

http_reply http_req(const jm_proc *jm, const char *method, const char *path, const char *token)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    return perform(c, jm, path, token, NULL);
}

http_reply http_submit(const jm_proc *jm, const char *manifest, const void *plugin, size_t len,
                       const char *token)
{
    CURL *c = curl_easy_init();
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "manifest");
    curl_mime_type(part, "application/json");
    curl_mime_data(part, manifest, CURL_ZERO_TERMINATED);
    part = curl_mime_addpart(mime);
    curl_mime_name(part, "plugin");
    curl_mime_filename(part, "../../etc/evil.so"); /* must never matter */
    curl_mime_type(part, "application/octet-stream");
    curl_mime_data(part, plugin, len);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    http_reply r = perform(c, jm, "/jobs", token, NULL);
    curl_mime_free(mime);
    return r;
}

http_reply http_post_raw(const jm_proc *jm, const char *ctype, const void *body, size_t len)
{
    CURL *c = curl_easy_init();
    char h[256];
    snprintf(h, sizeof h, "Content-Type: %s", ctype);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    return perform(c, jm, "/jobs", NULL, curl_slist_append(NULL, h));
}

void http_free(http_reply *r)
{
    json_decref(r->body);
    r->body = NULL;
}

const char *job_state(const jm_proc *jm, const char *id, char *buf, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "/jobs/%s", id);
    http_reply r = http_req(jm, "GET", path, NULL);
    const char *s = json_string_value(json_object_get(r.body, "state"));
    snprintf(buf, len, "%s", s ? s : "");
    http_free(&r);
    return buf;
}

void wait_job_state(const jm_proc *jm, const char *id, const char *want)
{
    char got[32] = "";
    for (int i = 0; i < 400; i++) {
        if (!strcmp(job_state(jm, id, got, sizeof got), want))
            return;
        sleep_ms(50);
    }
    cr_assert_fail("job %s is %s, expected %s", id, got, want);
}

void wait_taskmanagers(const jm_proc *jm, size_t n)
{
    size_t got = 0;
    for (int i = 0; i < 400; i++) {
        http_reply r = http_req(jm, "GET", "/taskmanagers", NULL);
        got = json_array_size(json_object_get(r.body, "taskmanagers"));
        http_free(&r);
        if (got == n)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("%zu taskmanagers listed, expected %zu", got, n);
}

void sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

char *make_manifest(const char *name, const char *sha, const int *par, size_t ntasks, json_t *extra)
{
    json_t *tasks = json_array();
    int maxp = 1;
    for (size_t i = 0; i < ntasks; i++) {
        json_array_append_new(tasks, json_pack("{s:i,s:s,s:i,s:[i],s:i,s:s}", "id", (int)i, "name",
                                               i ? "window" : "source", "parallelism", par[i],
                                               "nodes", (int)i, "upstream", (int)i - 1,
                                               "partitioning", i ? "hash" : "forward"));
        maxp = par[i] > maxp ? par[i] : maxp;
    }
    json_t *graph =
        json_pack("{s:s,s:i,s:i,s:i,s:[],s:o}", "name", name, "parallelism", maxp,
                  "max_parallelism", 128, "checkpoint_interval_ms", 0, "nodes", "tasks", tasks);
    char *canon = json_dumps(graph, JSON_SORT_KEYS | JSON_COMPACT);
    char hash[65];
    sha256_hex(canon, strlen(canon), hash);
    free(canon);
    json_t *m = json_pack("{s:s,s:s,s:o,s:s,s:i,s:s,s:[{s:s,s:s,s:s,s:n}],s:[s],s:n}", "name", name,
                          "plugin_sha256", sha, "graph", graph, "graph_hash", hash, "parallelism",
                          0, "start", "earliest", "bindings", "name", "clicks", "uri",
                          "kafka://clicks", "on_error", "fail", "dead_letter", "conf",
                          "restart-strategy.delay-ms=100", "replace");
    if (extra)
        json_object_update(m, extra);
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return text;
}

void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s (build the jobs first)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)n);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* --- fake taskmanager --- */

int tm_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

int tm_send_raw(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

void tm_send(int fd, kp_frame_type type, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(KP_FRAME_HEADER_SIZE + n + 1);
    protobuf_c_message_pack(msg, buf + KP_FRAME_HEADER_SIZE);
    kp_frame_header_encode(buf, type, buf + KP_FRAME_HEADER_SIZE, (uint32_t)n);
    cr_assert_eq(tm_send_raw(fd, buf, KP_FRAME_HEADER_SIZE + n), 0, "send failed");
    free(buf);
}

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = recv(fd, c, n, 0);
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

uint8_t *tm_expect(int fd, kp_frame_type type, size_t *len)
{
    for (int i = 0; i < 1000; i++) {
        uint8_t h[KP_FRAME_HEADER_SIZE];
        kp_frame_header_t hdr;
        cr_assert_eq(read_full(fd, h, sizeof h), 0, "no frame of type %d arrived", type);
        cr_assert_eq(kp_frame_header_decode(&hdr, h, sizeof h), KP_FRAME_OK);
        uint8_t *p = malloc(hdr.length + 1);
        cr_assert_eq(read_full(fd, p, hdr.length), 0);
        cr_assert_eq(kp_frame_payload_check(&hdr, p, hdr.length), KP_FRAME_OK);
        if (hdr.type == type) {
            *len = hdr.length;
            return p;
        }
        free(p);
    }
    cr_assert_fail("no frame of type %d among 1000", type);
    return NULL;
}

int tm_register(int port, const char *id, unsigned slots)
{
    int fd = tm_connect(port);
    Kappa__Control__Hello h = KAPPA__CONTROL__HELLO__INIT;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", 40000 + slots);
    h.role = KAPPA__CONTROL__HELLO__ROLE__ROLE_TASKMANAGER;
    h.instance_id = (char *)id;
    h.build_version = "test";
    h.abi_version = 1;
    h.slots = slots;
    h.data_address = addr;
    tm_send(fd, KP_FRAME_HELLO, &h.base);
    size_t n;
    free(tm_expect(fd, KP_FRAME_HELLO, &n));
    uint8_t *p = tm_expect(fd, KP_FRAME_REGISTER_ACK, &n);
    Kappa__Control__RegisterAck *ack = kappa__control__register_ack__unpack(NULL, n, p);
    cr_assert_not_null(ack);
    cr_assert_str_eq(ack->taskmanager_id, id);
    cr_assert(ack->heartbeat_interval_ms > 0 && ack->heartbeat_timeout_ms > 0);
    kappa__control__register_ack__free_unpacked(ack, NULL);
    free(p);
    return fd;
}

void tm_heartbeat(int fd, uint64_t seq)
{
    Kappa__Control__Heartbeat hb = KAPPA__CONTROL__HEARTBEAT__INIT;
    hb.sequence = seq;
    tm_send(fd, KP_FRAME_HEARTBEAT, &hb.base);
}

int tm_closed_by_peer(int fd)
{
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
        if (r < 0)
            return 0;
    }
}
