/* The cluster verbs of the `kappa` binary (submit, list, status, cancel, taskmanagers), run as
 * a user would — posix_spawn, no shell — against a fake jobmanager this test serves with
 * libmicrohttpd on 127.0.0.1 (a free port): --help on every verb; usage errors and conflicting
 * flags end with exit 2 before any request; a jobmanager nobody listens for is exit 3; submit
 * sends a multipart upload whose manifest carries the right plugin sha256 and graph hash (the
 * test recomputes both) and the bearer token; refusals are exit 1 with the jobmanager's
 * message; --wait exits with the job's outcome; list/status/cancel/taskmanagers print what the
 * jobmanager said. Binaries come from meson: KAPPA_CLI, KAPPA_JOBS. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/spawn.h"
#include "graph_codec.h"
#include "plugin.h"

/* ---- running kappa ------------------------------------------------------------------------- */

static char dir[] = "/tmp/kappa-test-cli-XXXXXX";
static char out[1 << 16], err[1 << 16];

/* Runs kappa with the NULL-terminated arguments; stdout and stderr land in out/err. The
 * environment is the test's minus KAPPA_JOBMANAGER and KAPPA_TOKEN, plus `env` (or NULL). */
static int kappa_env(const char *env, ...)
{
    const char *argv[64] = {getenv("KAPPA_CLI")};
    cr_assert(argv[0] && *argv[0], "KAPPA_CLI is not set (meson sets it)");
    va_list ap;
    va_start(ap, env);
    int n = 1;
    while ((argv[n] = va_arg(ap, const char *)) != NULL)
        cr_assert_lt(++n, 63);
    va_end(ap);
    static const char *const drop[] = {"KAPPA_JOBMANAGER", "KAPPA_TOKEN", NULL};
    char o[512], e[512];
    snprintf(o, sizeof o, "%s/stdout", dir);
    snprintf(e, sizeof e, "%s/stderr", dir);
    kp_test_proc p = {.argv = argv, .drop = drop, .add = env, .out = o, .err = e};
    int rc = kp_test_wait(kp_test_spawn(&p));
    kp_test_slurp(o, out, sizeof out);
    kp_test_slurp(e, err, sizeof err);
    return rc;
}

#define kappa(...) kappa_env(NULL, __VA_ARGS__, NULL)

static const char *job_so(const char *name)
{
    static char path[4][1024];
    static int next;
    const char *jobs = getenv("KAPPA_JOBS");
    cr_assert(jobs && *jobs, "KAPPA_JOBS is not set (meson sets it)");
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s.so", jobs, name);
    return p;
}

/* ---- the fake jobmanager ------------------------------------------------------------------- */

typedef struct fake_jm {
    struct MHD_Daemon *d;
    char url[64];
    pthread_mutex_t mu;
    int requests;
    char method[16], path[256], mode[32], auth[256]; /* of the last request */
    char first[300];                                 /* "METHOD PATH" of the first */
    char manifest[1 << 16];
    size_t manifest_len;
    char *plugin;
    size_t plugin_len;
    char plugin_type[64];
    int post_status;       /* POST /jobs answer */
    const char *post_body; /* its JSON */
    const char *states[8]; /* GET /jobs/:id answers in turn; the last repeats */
    int nstates, polls;
} fake_jm;

static fake_jm jm;

typedef struct upload {
    struct MHD_PostProcessor *pp;
} upload;

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *type, const char *enc,
                               const char *data, uint64_t off, size_t size)
{
    (void)cls, (void)kind, (void)filename, (void)enc;
    if (!strcmp(key, "manifest") && off + size < sizeof jm.manifest) {
        memcpy(jm.manifest + off, data, size);
        jm.manifest_len = off + size;
    } else if (!strcmp(key, "plugin")) {
        jm.plugin = realloc(jm.plugin, off + size);
        memcpy(jm.plugin + off, data, size);
        jm.plugin_len = off + size;
        snprintf(jm.plugin_type, sizeof jm.plugin_type, "%s", type ? type : "");
    }
    return MHD_YES;
}

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static const char *job_json(const char *state)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"jid\":\"0123456789abcdef0123456789abcdef\",\"name\":\"clicks-test\","
             "\"state\":\"%s\",\"start-time\":1764565200000,\"end-time\":-1,\"parallelism\":2,"
             "\"attempt\":1,\"plugin_sha256\":\"ab\",\"graph_hash\":\"cd\","
             "\"tasks\":[{\"id\":0,\"name\":\"source:clicks\",\"parallelism\":2,\"subtasks\":["
             "{\"subtask\":0,\"taskmanager\":\"tm-a\",\"data_address\":\"10.0.0.1:7000\","
             "\"state\":\"RUNNING\",\"metrics\":{\"records_in\":4321,\"records_out\":4320,"
             "\"watermark_ms\":5}},{\"subtask\":1,\"taskmanager\":\"tm-b\","
             "\"data_address\":\"10.0.0.2:7000\",\"state\":\"RUNNING\"}]}],"
             "\"exceptions\":[{\"time\":1764565260000,\"from\":\"RUNNING\",\"to\":\"%s\","
             "\"message\":\"taskmanager tm-b lost\"}],\"waiting_reason\":null}",
             state, state);
    return buf;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)cls, (void)version;
    upload *u = *con_cls;
    if (!u) { /* first call: headers only */
        u = calloc(1, sizeof *u);
        *con_cls = u;
        if (!strcmp(method, "POST"))
            u->pp = MHD_create_post_processor(c, 65536, on_part, NULL);
        return MHD_YES;
    }
    pthread_mutex_lock(&jm.mu);
    if (*data_size) {
        if (u->pp)
            MHD_post_process(u->pp, data, *data_size);
        *data_size = 0;
        pthread_mutex_unlock(&jm.mu);
        return MHD_YES;
    }
    if (jm.requests++ == 0)
        snprintf(jm.first, sizeof jm.first, "%s %s", method, url);
    snprintf(jm.method, sizeof jm.method, "%s", method);
    snprintf(jm.path, sizeof jm.path, "%s", url);
    const char *mode = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "mode");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    snprintf(jm.mode, sizeof jm.mode, "%s", mode ? mode : "");
    snprintf(jm.auth, sizeof jm.auth, "%s", auth ? auth : "");
    int status = 200;
    const char *body = "{}";
    if (!strcmp(method, "POST") && !strcmp(url, "/jobs")) {
        status = jm.post_status;
        body = jm.post_body;
    } else if (!strcmp(method, "PATCH")) {
        status = 202;
    } else if (!strcmp(url, "/jobs")) {
        body = "{\"jobs\":[{\"jid\":\"0123456789abcdef0123456789abcdef\",\"name\":"
               "\"clicks-test\",\"state\":\"RUNNING\",\"start-time\":1764565200000,"
               "\"end-time\":-1,\"parallelism\":2,\"attempt\":1}]}";
    } else if (!strcmp(url, "/taskmanagers")) {
        body = "{\"taskmanagers\":[{\"id\":\"tm-a\",\"data_address\":\"10.0.0.1:7000\","
               "\"slots_total\":4,\"slots_free\":2,\"last_heartbeat_ms\":1764565200000,"
               "\"build\":\"0.1.0\"}]}";
    } else if (!strncmp(url, "/jobs/", 6) && jm.nstates > 0) {
        int i = jm.polls < jm.nstates ? jm.polls : jm.nstates - 1;
        jm.polls++;
        body = job_json(jm.states[i]);
    } else {
        status = 404;
        body = "{\"errors\":[\"no such job\"]}";
    }
    enum MHD_Result rc = reply(c, status, body);
    pthread_mutex_unlock(&jm.mu);
    return rc;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    upload *u = *con_cls;
    if (u && u->pp)
        MHD_destroy_post_processor(u->pp);
    free(u);
    *con_cls = NULL;
}

static void start_jm(void)
{
    memset(&jm, 0, sizeof jm);
    pthread_mutex_init(&jm.mu, NULL);
    jm.post_status = 202;
    jm.post_body = "{\"jobid\":\"0123456789abcdef0123456789abcdef\",\"name\":\"clicks-test\","
                   "\"state\":\"CREATED\"}";
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    jm.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, NULL,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
    cr_assert_not_null(jm.d, "cannot start the fake jobmanager");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(jm.d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(jm.url, sizeof jm.url, "http://127.0.0.1:%u", info->port);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    start_jm();
}

static void teardown(void)
{
    MHD_stop_daemon(jm.d);
    free(jm.plugin);
    char p[512];
    const char *files[] = {"stdout", "stderr", "token"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int requests(void)
{
    pthread_mutex_lock(&jm.mu);
    int n = jm.requests;
    pthread_mutex_unlock(&jm.mu);
    return n;
}

/* A port nobody listens on: bound, read, closed. */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 120);

/* ---- flags --------------------------------------------------------------------------------- */

Test(cli, help_on_every_verb)
{
    const char *verbs[] = {"submit", "list", "status", "cancel", "taskmanagers", "run"};
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++) {
        cr_assert_eq(kappa(verbs[i], "--help"), 0, "%s --help", verbs[i]);
        char want[64];
        snprintf(want, sizeof want, "usage: kappa %s", verbs[i]);
        cr_assert_eq(strncmp(out, want, strlen(want)), 0, "%s --help printed: %.80s", verbs[i],
                     out);
    }
    cr_assert_eq(kappa("help"), 0);
    cr_assert(strstr(out, "submit") && strstr(out, "taskmanagers"));
    cr_assert_eq(requests(), 0);
}

Test(cli, usage_errors_and_conflicting_flags_send_nothing)
{
    const char *so = job_so("hourly_clicks"), *u = jm.url;
    struct {
        const char *args[8];
        const char *msg;
    } bad[] = {
        {{"submit", "--jobmanager", u}, "exactly one JOB.so"},
        {{"submit", so, so, "--jobmanager", u}, "exactly one JOB.so"},
        {{"submit", so, "--from-earliest", "--from-latest", "--jobmanager", u}, "conflicts"},
        {{"submit", so, "--from-latest", "--from-timestamp", "5", "--jobmanager", u}, "conflicts"},
        {{"submit", so, "--from-timestamp", "5", "--from-group-offsets", "--jobmanager", u},
         "conflicts"},
        {{"submit", so, "--from-timestamp", "5", "--from-timestamp", "6", "--jobmanager", u},
         "conflicts"},
        {{"submit", so, "--from-timestamp", "yesterday", "--jobmanager", u}, "milliseconds"},
        {{"submit", so, "-p", "0", "--jobmanager", u}, "within 1..256"},
        {{"submit", so, "--source", "clicks", "--jobmanager", u}, "NAME=VALUE"},
        {{"submit", so, "--on-error", "clicks=maybe", "--jobmanager", u}, "unknown policy"},
        {{"submit", so, "--on-error", "clicks=skip", "--jobmanager", u}, "no --source/--sink"},
        {{"submit", so, "--source", "nosuch=file:x", "--jobmanager", u}, "no source or sink"},
        {{"submit", so, "--no-such-flag", "--jobmanager", u}, "usage"},
        {{"submit", so, "--jobmanager", "ftp://example.org"}, "http://HOST:PORT"},
        {{"submit", so, "--token-file", "/nonexistent/token", "--jobmanager", u}, "token-file"},
        {{"status", "--jobmanager", u}, "expected 1 argument"},
        {{"cancel", "a", "b", "--jobmanager", u}, "expected 1 argument"},
        {{"list", "extra", "--jobmanager", u}, "expected 0 arguments"},
        {{"taskmanagers", "--bogus", "--jobmanager", u}, "usage"},
        {{"frobnicate"}, "unknown command"},
        {{"run", "--local", so, "--from-earliest", "--from-group-offsets", "--plan"}, "conflicts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char **a = bad[i].args;
        int rc = kappa_env(NULL, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], NULL);
        cr_assert_eq(rc, 2, "case %zu (%s %s %s): exit %d, stderr: %s", i, a[0], a[1], a[2], rc,
                     err);
        cr_assert_not_null(strstr(err, bad[i].msg), "case %zu: '%s' not in: %s", i, bad[i].msg,
                           err);
    }
    cr_assert_eq(requests(), 0, "a usage error must not reach the jobmanager");
}

Test(cli, unreachable_jobmanager_is_exit_3)
{
    char url[64], env[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", free_port());
    const char *verbs[][2] = {{"list", NULL},
                              {"taskmanagers", NULL},
                              {"status", "x"},
                              {"cancel", "x"},
                              {"submit", job_so("hourly_clicks")}};
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++) {
        int rc = verbs[i][1] ? kappa(verbs[i][0], verbs[i][1], "--jobmanager", url)
                             : kappa(verbs[i][0], "--jobmanager", url);
        cr_assert_eq(rc, 3, "%s: exit %d, stderr: %s", verbs[i][0], rc, err);
        cr_assert_not_null(strstr(err, "cannot reach the jobmanager"), "%s", err);
        cr_assert_not_null(strstr(err, url), "the message names the address: %s", err);
    }
    /* $KAPPA_JOBMANAGER is the default address */
    snprintf(env, sizeof env, "KAPPA_JOBMANAGER=%s", url);
    cr_assert_eq(kappa_env(env, "list", NULL), 3);
    cr_assert_not_null(strstr(err, url), "%s", err);
}

/* ---- submit -------------------------------------------------------------------------------- */

static json_t *manifest(void)
{
    json_error_t e;
    json_t *m = json_loadb(jm.manifest, jm.manifest_len, 0, &e);
    cr_assert_not_null(m, "the manifest part is not JSON: %s", e.text);
    return m;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert_not_null(s, "manifest field %s is not a string", key);
    return s;
}

Test(cli, submit_sends_a_well_formed_multipart_manifest)
{
    const char *so = job_so("hourly_clicks");
    char tok[512];
    snprintf(tok, sizeof tok, "%s/token", dir);
    FILE *f = fopen(tok, "w");
    fputs("  s3cret-token\n", f);
    fclose(f);
    int rc = kappa("submit", so, "--jobmanager", jm.url, "--token-file", tok, "-p", "3",
                   "--from-timestamp", "1700000000000", "--name", "clicks-test", "--replace",
                   "old-job", "--source", "clicks=kafka:user-behavior", "--sink",
                   "hourly-click-index=es:hourly-click-index", "--on-error", "clicks=skip",
                   "--brokers", "127.0.0.1:9092", "--conf", "es.flush_ms=100");
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, err);
    cr_assert_str_eq(out, "0123456789abcdef0123456789abcdef\n", "prints the job id");
    /* POST /jobs, then GET /jobs/:id to see it deployed (this fake answers 404: submit says
     * it cannot read the state and still exits 0, the job was accepted) */
    cr_assert_eq(requests(), 2);
    cr_assert_str_eq(jm.first, "POST /jobs");
    cr_assert_str_eq(jm.method, "GET");
    cr_assert_str_eq(jm.path, "/jobs/0123456789abcdef0123456789abcdef");
    cr_assert(strstr(err, "could not be read"), "stderr: %s", err);
    cr_assert_str_eq(jm.auth, "Bearer s3cret-token");
    cr_assert_str_eq(jm.plugin_type, "application/octet-stream");

    /* the plugin part is the file's bytes; the manifest names their sha256 */
    FILE *pf = fopen(so, "rb");
    cr_assert_not_null(pf);
    char *bytes = malloc(jm.plugin_len + 1);
    size_t n = fread(bytes, 1, jm.plugin_len + 1, pf);
    fclose(pf);
    cr_assert_eq(n, jm.plugin_len, "the plugin part has the file's size");
    cr_assert_eq(memcmp(bytes, jm.plugin, n), 0, "the plugin part has the file's bytes");
    free(bytes);
    char sha[KP_SHA256_HEX], want[KP_SHA256_HEX], e[512];
    kp_sha256_hex(jm.plugin, jm.plugin_len, sha);
    json_t *m = manifest();
    cr_assert_str_eq(str(m, "plugin_sha256"), sha);

    /* the graph hash is the sha256 of the canonical graph, which is the job's at -p 3 */
    json_t *g = json_object_get(m, "graph");
    char *canon = json_dumps(g, JSON_SORT_KEYS | JSON_COMPACT);
    kp_sha256_hex(canon, strlen(canon), sha);
    free(canon);
    cr_assert_str_eq(str(m, "graph_hash"), sha);
    kp_plugin_handle *h = kp_plugin_load(so, 3, e, sizeof e);
    cr_assert_not_null(h, "%s", e);
    cr_assert_eq(kp_graph_hash(kp_plugin_job(h), want, e, sizeof e), 0, "%s", e);
    kp_plugin_close(h);
    cr_assert_str_eq(sha, want, "graph hash of the job at -p 3");
    cr_assert_gt(json_array_size(json_object_get(g, "tasks")), 0);

    cr_assert_str_eq(str(m, "name"), "clicks-test");
    cr_assert_str_eq(str(m, "replace"), "old-job");
    cr_assert_eq(json_integer_value(json_object_get(m, "parallelism")), 3);
    cr_assert_str_eq(str(m, "start"), "timestamp");
    cr_assert_eq(json_integer_value(json_object_get(m, "start_timestamp_ms")), 1700000000000LL);
    json_t *b = json_object_get(m, "bindings");
    cr_assert_eq(json_array_size(b), 2);
    json_t *clicks = json_array_get(b, 0);
    cr_assert_str_eq(str(clicks, "name"), "clicks");
    cr_assert_str_eq(str(clicks, "uri"), "kafka:user-behavior");
    cr_assert_str_eq(str(clicks, "on_error"), "skip");
    cr_assert(json_is_null(json_object_get(clicks, "dead_letter")));
    cr_assert_str_eq(str(json_array_get(b, 1), "on_error"), "default");
    char *conf = json_dumps(json_object_get(m, "conf"), JSON_COMPACT);
    cr_assert_str_eq(conf,
                     "[\"es.flush_ms=100\",\"kafka.brokers=127.0.0.1:9092\","
                     "\"kafka.start=timestamp:1700000000000\"]",
                     "conf in lookup order (later flags first)");
    free(conf);
    json_decref(m);
}

Test(cli, submit_defaults_and_json_output)
{
    char env[128];
    snprintf(env, sizeof env, "KAPPA_JOBMANAGER=%s", jm.url);
    int rc = kappa_env(env, "submit", job_so("user_sessions"), "--json", NULL);
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, err);
    json_error_t e;
    json_t *o = json_loads(out, 0, &e);
    cr_assert_not_null(o, "--json prints JSON: %s", out);
    cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "CREATED");
    json_decref(o);
    cr_assert_str_eq(jm.auth, "", "no token given, none sent");
    json_t *m = manifest();
    cr_assert_str_eq(str(m, "name"), "user_sessions");
    cr_assert_str_eq(str(m, "start"), "earliest");
    cr_assert_eq(json_integer_value(json_object_get(m, "parallelism")), 0);
    cr_assert(json_is_null(json_object_get(m, "replace")));
    cr_assert_eq(json_array_size(json_object_get(m, "conf")), 0);
    json_decref(m);
    /* $KAPPA_TOKEN when there is no --token-file */
    cr_assert_eq(kappa_env("KAPPA_TOKEN=t0k", "submit", job_so("user_sessions"), "--jobmanager",
                           jm.url, "--from-group-offsets", NULL),
                 0, "%s", err);
    cr_assert_str_eq(jm.auth, "Bearer t0k");
    m = manifest();
    cr_assert_str_eq(str(m, "start"), "group-offsets");
    json_decref(m);
}

Test(cli, dry_run_prints_the_manifest_and_sends_nothing)
{
    int rc = kappa("submit", job_so("hourly_clicks"), "--dry-run", "-p", "2", "--jobmanager",
                   "http://127.0.0.1:1");
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, err);
    json_error_t e;
    json_t *m = json_loads(out, 0, &e);
    cr_assert_not_null(m, "--dry-run prints the manifest: %s", e.text);
    char *canon = json_dumps(json_object_get(m, "graph"), JSON_SORT_KEYS | JSON_COMPACT);
    char sha[KP_SHA256_HEX];
    kp_sha256_hex(canon, strlen(canon), sha);
    free(canon);
    cr_assert_str_eq(str(m, "graph_hash"), sha);
    cr_assert_eq(strlen(str(m, "plugin_sha256")), 64);
    json_decref(m);
}

Test(cli, refusals_are_exit_1_with_the_jobmanagers_message)
{
    jm.post_status = 413;
    jm.post_body = "{\"errors\":[\"upload over the 64 MiB limit\"]}";
    int rc = kappa("submit", job_so("hourly_clicks"), "--jobmanager", jm.url);
    cr_assert_eq(rc, 1, "exit %d", rc);
    cr_assert_not_null(strstr(err, "HTTP 413: upload over the 64 MiB limit"), "%s", err);
    jm.post_status = 401;
    jm.post_body = "{\"errors\":[\"missing or wrong bearer token\"]}";
    cr_assert_eq(kappa("submit", job_so("hourly_clicks"), "--jobmanager", jm.url), 1);
    cr_assert_not_null(strstr(err, "--token-file"), "says how to give a token: %s", err);
    cr_assert_eq(kappa("status", "nosuch", "--jobmanager", jm.url), 1);
    cr_assert_not_null(strstr(err, "no such job"), "%s", err);
    /* a file that is not a plugin never reaches the jobmanager */
    int before = requests();
    char junk[512];
    snprintf(junk, sizeof junk, "%s/stderr", dir);
    cr_assert_eq(kappa("submit", junk, "--jobmanager", jm.url), 1);
    cr_assert_eq(requests(), before);
}

Test(cli, submit_wait_exits_with_the_jobs_outcome)
{
    struct {
        const char *final;
        int code;
    } cases[] = {{"FINISHED", 0}, {"FAILED", 1}, {"CANCELED", 4}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        jm.states[0] = "CREATED";
        jm.states[1] = "RUNNING";
        jm.states[2] = cases[i].final;
        jm.nstates = 3;
        jm.polls = 0;
        int rc = kappa("submit", job_so("hourly_clicks"), "--jobmanager", jm.url, "--wait");
        cr_assert_eq(rc, cases[i].code, "%s: exit %d, stderr: %s", cases[i].final, rc, err);
        cr_assert_eq(jm.polls, 3, "polled until the final state");
        cr_assert_not_null(strstr(err, cases[i].final), "%s", err);
        if (cases[i].code)
            cr_assert_not_null(strstr(err, "taskmanager tm-b lost"), "the cause is shown: %s", err);
    }
}

/* Without --wait, submit returns once the job is deployed (past CREATED), as flink run -d. */
Test(cli, submit_returns_once_the_job_is_deployed)
{
    jm.states[0] = "CREATED";
    jm.states[1] = "CREATED";
    jm.states[2] = "RUNNING";
    jm.nstates = 3;
    jm.polls = 0;
    int rc = kappa("submit", job_so("hourly_clicks"), "--jobmanager", jm.url);
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, err);
    cr_assert_eq(jm.polls, 3, "polled until deployed");
    cr_assert(strstr(err, "is RUNNING"), "%s", err);
    jm.states[0] = "FAILED";
    jm.nstates = 1;
    jm.polls = 0;
    cr_assert_eq(kappa("submit", job_so("hourly_clicks"), "--jobmanager", jm.url), 1,
                 "a job that failed at once: %s", err);
}

/* ---- list, status, cancel, taskmanagers ---------------------------------------------------- */

Test(cli, list_status_cancel_taskmanagers)
{
    cr_assert_eq(kappa("list", "--jobmanager", jm.url), 0, "%s", err);
    cr_assert(strstr(out, "JOB ID") && strstr(out, "clicks-test") && strstr(out, "RUNNING"), "%s",
              out);
    cr_assert_eq(kappa("list", "--jobmanager", jm.url, "--json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(o, "jobs")), 1, "%s", out);
    json_decref(o);

    jm.states[0] = "RUNNING";
    jm.nstates = 1;
    cr_assert_eq(kappa("status", "clicks test/..", "--jobmanager", jm.url), 0, "%s", err);
    cr_assert_str_eq(jm.path, "/jobs/clicks test/..", "the name is one escaped path segment");
    cr_assert(strstr(out, "tm-b") && strstr(out, "10.0.0.2:7000") &&
                  strstr(out, "taskmanager tm-b lost"),
              "placement and exceptions shown: %s", out);
    cr_assert(strstr(out, "RECORDS IN") && strstr(out, "4321") && strstr(out, "4320"),
              "records in/out per subtask shown: %s", out);
    cr_assert_eq(kappa("status", "clicks-test", "--jobmanager", jm.url, "--json"), 0);
    o = json_loads(out, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "name")), "clicks-test");
    json_decref(o);

    cr_assert_eq(kappa("cancel", "clicks-test", "--jobmanager", jm.url), 0, "%s", err);
    cr_assert_str_eq(jm.method, "PATCH");
    cr_assert_str_eq(jm.path, "/jobs/clicks-test");
    cr_assert_str_eq(jm.mode, "cancel");

    cr_assert_eq(kappa("taskmanagers", "--jobmanager", jm.url), 0, "%s", err);
    cr_assert(strstr(out, "tm-a") && strstr(out, "10.0.0.1:7000"), "%s", out);
}
