/* `kappa` against the real kappa-jobmanager (no taskmanager, no services): started on free
 * 127.0.0.1 ports with a token, it accepts what `kappa submit` uploads — it checks the plugin's
 * sha256 and the graph hash itself — and shows the same hashes back; a missing token, a name
 * that could be a path and a file that is not a plugin are refused (exit 1) with nothing stored
 * but content-addressed uploads; a job waiting for slots says why; `--wait` ends with exit 4
 * when another `kappa cancel` cancels the job; list and taskmanagers print tables; and with a
 * real kappa-taskmanager, `kappa submit --wait` of the seed job on a kappa-gen file ends with
 * exit 0 and output equal to the generator's truth. Every process the test starts is stopped.
 * Binaries from meson: KAPPA_CLI, KAPPA_JM, KAPPA_TM, KAPPA_GEN, KAPPA_JOBS. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"
#include "../support/spawn.h"
#include "graph_codec.h"
#include "plugin.h"

static char dir[] = "/tmp/kappa-test-cli-jm-XXXXXX";
static char url[64], rpc[64], env_url[128], token_path[600];
static char out[1 << 16], err[1 << 16];
static pid_t jm_pid, tm_pid;

static const char *path_in(const char *name)
{
    static char p[8][600];
    static int next;
    char *s = p[next++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", dir, name);
    return s;
}

static const char *job_so(const char *name)
{
    static char p[4][1024];
    static int next;
    char *s = p[next++ % 4];
    snprintf(s, sizeof p[0], "%s/%s.so", kp_test_env("KAPPA_JOBS"), name);
    return s;
}

static const char *const drop[] = {"KAPPA_JOBMANAGER", "KAPPA_TOKEN", NULL};

/* kappa with $KAPPA_JOBMANAGER pointing at the test's jobmanager and no token unless `tok`;
 * stdout and stderr into dir/NAME.out and dir/NAME.err. */
static pid_t kappa_start(int tok, const char **args, const char *name)
{
    static const char *argv[40];
    char o[64], e[64];
    snprintf(o, sizeof o, "%s.out", name);
    snprintf(e, sizeof e, "%s.err", name);
    int n = 0;
    argv[n++] = kp_test_env("KAPPA_CLI");
    for (; *args; args++)
        argv[n++] = *args;
    if (tok) {
        argv[n++] = "--token-file";
        argv[n++] = token_path;
    }
    argv[n] = NULL;
    kp_test_proc p = {
        .argv = argv, .drop = drop, .add = env_url, .out = path_in(o), .err = path_in(e)};
    return kp_test_spawn(&p);
}

static int kappa_tok(int tok, ...)
{
    const char *args[32];
    va_list ap;
    va_start(ap, tok);
    int n = 0;
    while ((args[n] = va_arg(ap, const char *)) != NULL)
        cr_assert_lt(++n, 31);
    va_end(ap);
    int rc = kp_test_wait(kappa_start(tok, args, "kappa"));
    kp_test_slurp(path_in("kappa.out"), out, sizeof out);
    kp_test_slurp(path_in("kappa.err"), err, sizeof err);
    return rc;
}

#define kappa(...)       kappa_tok(1, __VA_ARGS__, NULL)
#define kappa_notok(...) kappa_tok(0, __VA_ARGS__, NULL)

static void start_jobmanager(void)
{
    FILE *f = fopen(token_path, "w");
    cr_assert_not_null(f);
    fputs("cli-test-token\n", f);
    fclose(f);
    const char *argv[] = {
        kp_test_env("KAPPA_JM"), "--rest-port",  "0",        "--rpc-port", "0", "--state-dir",
        path_in("state"),        "--token-file", token_path, NULL};
    kp_test_proc p = {.argv = argv, .out = path_in("jm.out"), .err = path_in("jm.err")};
    jm_pid = kp_test_spawn(&p);
    char text[4096];
    const struct timespec pause = {0, 50 * 1000000L};
    char rest[64] = "";
    for (int i = 0; i < 400 && !rpc[0]; i++) { /* it prints "rest H:P" and "rpc H:P" once bound */
        kp_test_slurp(path_in("jm.out"), text, sizeof text);
        if (sscanf(text, "rest %63s rpc %63s", rest, rpc) != 2) {
            rpc[0] = 0;
            nanosleep(&pause, NULL);
        }
    }
    cr_assert(rpc[0], "the jobmanager did not print its addresses: %s", text);
    snprintf(url, sizeof url, "http://%s", rest);
    snprintf(env_url, sizeof env_url, "KAPPA_JOBMANAGER=%s", url);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(token_path, sizeof token_path, "%s/token", dir);
    url[0] = rpc[0] = 0;
    tm_pid = 0;
    start_jobmanager();
}

static void teardown(void)
{
    if (tm_pid > 0) {
        kill(tm_pid, SIGTERM);
        kp_test_wait(tm_pid);
    }
    if (jm_pid > 0) {
        kill(jm_pid, SIGTERM);
        kp_test_wait(jm_pid);
    }
    kp_test_rmtree(dir);
}

TestSuite(cli_jobmanager, .init = setup, .fini = teardown, .timeout = 120);

static json_t *status_json(const char *id)
{
    cr_assert_eq(kappa("status", id, "--json"), 0, "%s", err);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    cr_assert_not_null(j, "status --json: %s", e.text);
    return j;
}

static void file_sha(const char *path, char hex[KP_SHA256_HEX])
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static char buf[8 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    kp_sha256_hex(buf, n, hex);
}

Test(cli_jobmanager, submit_shows_the_same_hashes_back_and_waits_for_slots)
{
    const char *so = job_so("hourly_clicks");
    cr_assert_eq(kappa("submit", so, "-p", "3", "--from-earliest", "--source",
                       "clicks=kafka:user-behavior", "--brokers", "127.0.0.1:9"),
                 0, "%s", err);
    char id[64];
    cr_assert_eq(sscanf(out, "%63s", id), 1);
    cr_assert_eq(strlen(id), 32, "a 32-hex job id: %s", out);
    char sha[KP_SHA256_HEX], hash[KP_SHA256_HEX], e[512];
    file_sha(so, sha);
    kp_plugin_handle *h = kp_plugin_load(so, 3, e, sizeof e);
    cr_assert_not_null(h, "%s", e);
    cr_assert_eq(kp_graph_hash(kp_plugin_job(h), hash, e, sizeof e), 0);
    kp_plugin_close(h);
    json_t *j = status_json(id);
    cr_assert_str_eq(json_string_value(json_object_get(j, "plugin_sha256")), sha);
    cr_assert_str_eq(json_string_value(json_object_get(j, "graph_hash")), hash);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "CREATED");
    cr_assert(json_is_string(json_object_get(j, "waiting_reason")),
              "no taskmanager: the job says why it waits");
    json_decref(j);
    /* by name too, and as a table */
    cr_assert_eq(kappa("status", "hourly_clicks"), 0, "%s", err);
    cr_assert(strstr(out, id) && strstr(out, "waiting"), "%s", out);
    cr_assert_eq(kappa("list"), 0);
    cr_assert(strstr(out, id) && strstr(out, "CREATED"), "%s", out);
    cr_assert_eq(kappa("taskmanagers"), 0);
    cr_assert_not_null(strstr(out, "no taskmanager"), "%s", out);
}

/* Files in the state dir's uploads: every name is a sha256 (content-addressed). */
static int uploads(void)
{
    DIR *d = opendir(path_in("state/uploads"));
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            cr_assert_eq(strspn(de->d_name, "0123456789abcdef"), 64, "upload named %s", de->d_name);
            n++;
        }
    closedir(d);
    return n;
}

Test(cli_jobmanager, bad_input_is_refused_and_nothing_deployed)
{
    const char *so = job_so("hourly_clicks");
    cr_assert_eq(kappa_notok("submit", so), 1);
    cr_assert_not_null(strstr(err, "HTTP 401"), "%s", err);
    cr_assert_eq(kappa_notok("cancel", "hourly_clicks"), 1);
    cr_assert_not_null(strstr(err, "HTTP 401"), "%s", err);
    cr_assert_eq(kappa("submit", so, "--name", "../../etc/passwd"), 1);
    cr_assert_not_null(strstr(err, "HTTP 400"), "%s", err);
    /* not a plugin: refused before any request */
    FILE *f = fopen(path_in("garbage.so"), "w");
    fputs("this is not an ELF file\n", f);
    fclose(f);
    cr_assert_eq(kappa("submit", path_in("garbage.so")), 1);
    cr_assert_eq(kappa("status", "nosuch"), 1);
    cr_assert_not_null(strstr(err, "HTTP 404"), "%s", err);
    cr_assert_eq(kappa("list", "--json"), 0);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(j, "jobs")), 0, "no job was created: %s", out);
    json_decref(j);
    cr_assert_leq(uploads(), 1, "at most the one content-addressed upload");
}

Test(cli_jobmanager, wait_ends_with_exit_4_when_the_job_is_cancelled)
{
    const char *args[] = {"submit", job_so("user_sessions"), "--wait", "--token-file", token_path,
                          NULL};
    pid_t waiter = kappa_start(0, args, "waiter");
    const struct timespec pause = {0, 100 * 1000000L};
    int listed = 0;
    for (int i = 0; i < 300 && !listed; i++) {
        nanosleep(&pause, NULL);
        cr_assert_eq(kappa("list"), 0, "%s", err);
        listed = strstr(out, "user_sessions") != NULL;
    }
    cr_assert(listed, "the job was never listed");
    cr_assert_eq(kappa("cancel", "user_sessions"), 0, "%s", err);
    int rc = kp_test_wait(waiter);
    kp_test_slurp(path_in("waiter.err"), err, sizeof err);
    cr_assert_eq(rc, 4, "exit %d, stderr: %s", rc, err);
    cr_assert_not_null(strstr(err, "CANCELED"), "%s", err);
}

/* ---- a job run on a taskmanager -------------------------------------------------------------- */

/* "item|window_end" -> count, from kappa-gen's truth (TSV) or the job's NDJSON output. */
static json_t *counts(const char *path, int truth)
{
    json_t *map = json_object();
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char line[512], key[256], item[128];
    long long start, end, count;
    while (fgets(line, sizeof line, f)) {
        if (truth) {
            if (line[0] == '#' ||
                sscanf(line, "%127s %lld %lld %lld", item, &start, &end, &count) != 4)
                continue;
            snprintf(key, sizeof key, "%s|%lld", item, end);
        } else {
            json_t *d = json_loads(line, 0, NULL);
            cr_assert_not_null(d, "output line is not JSON: %s", line);
            snprintf(key, sizeof key, "%s|%lld", json_string_value(json_object_get(d, "item_id")),
                     (long long)json_integer_value(json_object_get(d, "window_end")));
            count = json_integer_value(json_object_get(d, "click_count"));
            json_decref(d);
        }
        json_object_set_new(map, key, json_integer(count));
    }
    fclose(f);
    return map;
}

Test(cli_jobmanager, submit_wait_runs_the_job_on_a_taskmanager)
{
    const char *gen[] = {kp_test_env("KAPPA_GEN"),
                         "--output",
                         path_in("events.ndjson"),
                         "--count",
                         "20000",
                         "--seed",
                         "7",
                         "--quiet",
                         "--truth",
                         path_in("truth.tsv"),
                         NULL};
    kp_test_proc g = {.argv = gen, .out = path_in("gen.out"), .err = path_in("gen.err")};
    cr_assert_eq(kp_test_wait(kp_test_spawn(&g)), 0, "kappa-gen failed");
    const char *tm[] = {kp_test_env("KAPPA_TM"), "--jobmanager", rpc, "--slots", "2",
                        "--state-dir",           path_in("tm"),  NULL};
    kp_test_proc t = {.argv = tm, .out = path_in("tm.out"), .err = path_in("tm.err")};
    tm_pid = kp_test_spawn(&t);
    char source[700], sink[700];
    snprintf(source, sizeof source, "clicks=file:%s", path_in("events.ndjson"));
    snprintf(sink, sizeof sink, "hourly-click-index=file:%s", path_in("out.ndjson"));
    /* submitted before the taskmanager may have registered: the job waits for its slots */
    int rc = kappa("submit", job_so("hourly_clicks"), "-p", "2", "--source", source, "--sink", sink,
                   "--wait");
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, err);
    cr_assert_not_null(strstr(err, "FINISHED"), "%s", err);
    json_t *want = counts(path_in("truth.tsv"), 1), *got = counts(path_in("out.ndjson"), 0);
    cr_assert_gt(json_object_size(want), 0);
    cr_assert(json_equal(want, got), "the output equals kappa-gen's truth (%zu vs %zu windows)",
              json_object_size(got), json_object_size(want));
    json_decref(want);
    json_decref(got);
}
