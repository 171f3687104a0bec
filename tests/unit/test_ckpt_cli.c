/* `kappa run --local` with checkpoints, as a user runs it: the seed job (hourly_clicks, keyed
 * tumbling windows) over a kappa-gen file at -p 2 with --checkpoint-interval 10ms is stopped
 * with SIGINT once two checkpoints are complete; `--from-checkpoint DIR/<job>` then runs it
 * to the end. The two runs' documents together (the later write of a window wins, as in an
 * index) equal the generator's truth exactly: no window missing, no count inflated. Binaries
 * come from meson: KAPPA_GEN, KAPPA_CLI, KAPPA_JOBS. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"

static char dir[] = "/tmp/kappa-ckpt-cli-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(kp_test_sh("%s --output %s/events.ndjson --count 3000000 --out-of-order-ms 10000 "
                            "--late-fraction 0.001 --seed 11 --quiet --truth %s/truth.tsv",
                            kp_test_env("KAPPA_GEN"), dir, dir),
                 0);
}

static void teardown(void)
{
    kp_test_rmtree(dir);
}

TestSuite(ckpt_cli, .init = setup, .fini = teardown, .timeout = 240);

/* "item|window_end" -> count from the truth file, or from output files applied in order. */
static void load_truth(json_t *map, const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[512], item[128], key[256];
    long long start, end, count;
    while (fgets(line, sizeof line, f))
        if (line[0] != '#' &&
            sscanf(line, "%127s %lld %lld %lld", item, &start, &end, &count) == 4) {
            snprintf(key, sizeof key, "%s|%lld", item, end);
            json_object_set_new(map, key, json_integer(count));
        }
    fclose(f);
}

static size_t load_output(json_t *map, const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[512], key[256];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *d = json_loads(line, 0, &err);
        cr_assert_not_null(d, "output line is not JSON: %s", line);
        snprintf(key, sizeof key, "%s|%lld", json_string_value(json_object_get(d, "item_id")),
                 (long long)json_integer_value(json_object_get(d, "window_end")));
        json_object_set_new(map, key,
                            json_integer(json_integer_value(json_object_get(d, "click_count"))));
        json_decref(d);
        n++;
    }
    fclose(f);
    return n;
}

static const char *cmd(const char *out, const char *extra)
{
    static char c[2048];
    snprintf(c, sizeof c,
             "exec %s run --local %s/hourly_clicks.so -p 2 --source "
             "clicks=file:%s/events.ndjson?partitions=4 --sink hourly-click-index=file:%s/%s "
             "%s 2>>%s/stderr.txt",
             kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), dir, dir, out, extra, dir);
    return c;
}

static int completed(void)
{
    char path[600];
    int n = 0;
    for (int id = 1; id < 1000; id++) {
        snprintf(path, sizeof path, "%s/ck/hourly_clicks/chk-%d/_metadata.sha256", dir, id);
        n += access(path, F_OK) == 0;
    }
    return n;
}

Test(ckpt_cli, interrupted_and_restored_run_equals_truth)
{
    char extra[700];
    snprintf(extra, sizeof extra,
             "--state-dir %s/st --checkpoint-dir %s/ck --checkpoint-interval 10ms "
             "--retained-checkpoints 5",
             dir, dir);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd("out1.ndjson", extra), (char *)NULL);
        _exit(127);
    }
    int status, done = 0;
    for (int i = 0; i < 60000 && !done; i++) {
        if (completed() >= 2) {
            kill(pid, SIGINT);
            break;
        }
        done = waitpid(pid, &status, WNOHANG) == pid;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    if (!done)
        cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the first run did not exit");
    cr_assert(!done, "the first run ended before two checkpoints completed (exit %d)",
              WEXITSTATUS(status));
    cr_assert_eq(WEXITSTATUS(status), 130, "SIGINT: exit 128 + 2, got %d", WEXITSTATUS(status));

    snprintf(extra, sizeof extra, "--state-dir %s/st2 --from-checkpoint %s/ck/hourly_clicks", dir,
             dir);
    cr_assert_eq(kp_test_sh("%s", cmd("out2.ndjson", extra)), 0, "the restored run failed");

    json_t *got = json_object(), *want = json_object();
    char p1[600], p2[600], truth[600];
    snprintf(p1, sizeof p1, "%s/out1.ndjson", dir);
    snprintf(p2, sizeof p2, "%s/out2.ndjson", dir);
    snprintf(truth, sizeof truth, "%s/truth.tsv", dir);
    size_t n1 = load_output(got, p1), n2 = load_output(got, p2);
    load_truth(want, truth);
    const char *key;
    json_t *v;
    json_object_foreach(want, key, v)
    {
        json_t *g = json_object_get(got, key);
        cr_assert_not_null(g, "missing result for %s", key);
        cr_assert_eq(json_integer_value(g), json_integer_value(v), "%s: got %lld, truth %lld", key,
                     (long long)json_integer_value(g), (long long)json_integer_value(v));
    }
    cr_assert_eq(json_object_size(got), json_object_size(want), "%zu results, truth has %zu",
                 json_object_size(got), json_object_size(want));
    cr_assert_gt(n1, 0, "the first run wrote nothing before the interrupt");
    printf("ckpt_cli: %zu windows; %zu written before SIGINT, %zu after the restore\n",
           json_object_size(want), n1, n2);
    json_decref(got);
    json_decref(want);
}
