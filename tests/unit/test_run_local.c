/* `kappa run --local` end to end, with no services: the seed job over a kappa-gen NDJSON file
 * of 1M events (7 days, 10 s jitter, late events, 1 % malformed) produces exactly the
 * generator's truth at parallelism 1..4; the corrected rule matches its own truth; and every
 * decode-error policy does what it says (fail names the record, skip counts, dead-letter
 * writes exactly the malformed lines to a file). Binaries come from meson: KAPPA_GEN,
 * KAPPA_CLI, KAPPA_JOBS. KAPPA_TEST_EVENTS overrides the number of events (CI's
 * ThreadSanitizer run uses 100k: the engine runs ~40x slower there). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"

static char dir[] = "/tmp/kappa-run-local-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    const char *gen = kp_test_env("KAPPA_GEN");
    const char *events = getenv("KAPPA_TEST_EVENTS");
    long count = events && *events ? atol(events) : 1000000;
    cr_assert_gt(count, 0, "KAPPA_TEST_EVENTS must be a positive number");
    char opts[256];
    snprintf(opts, sizeof opts,
             "--count %ld --out-of-order-ms 10000 --late-fraction 0.001 --malformed 0.01 "
             "--seed 7 --quiet",
             count);
    cr_assert_eq(
        kp_test_sh("%s --output %s/events.ndjson %s --truth %s/truth.tsv", gen, dir, opts, dir), 0);
    cr_assert_eq(
        kp_test_sh("%s --output /dev/null %s --filter-users-above 50 --truth %s/truth-v2.tsv", gen,
                   opts, dir),
        0);
}

static void teardown(void)
{
    kp_test_rmtree(dir);
}

/* Loads "item|window_end" → count from a truth file or a job's output, into a jansson object
 * (a convenient string-keyed map); returns the number of entries. */
static size_t load(json_t *map, const char *path, int truth)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char key[256];
        long long count;
        if (truth) {
            char item[128];
            long long start, end;
            if (line[0] == '#' ||
                sscanf(line, "%127s %lld %lld %lld", item, &start, &end, &count) != 4)
                continue;
            snprintf(key, sizeof key, "%s|%lld", item, end);
        } else {
            json_error_t err;
            json_t *d = json_loads(line, 0, &err);
            cr_assert_not_null(d, "output line is not JSON: %s", line);
            snprintf(key, sizeof key, "%s|%lld", json_string_value(json_object_get(d, "item_id")),
                     (long long)json_integer_value(json_object_get(d, "window_end")));
            count = json_integer_value(json_object_get(d, "click_count"));
            cr_assert_null(json_object_get(map, key), "duplicate output for %s", key);
            json_decref(d);
        }
        json_object_set_new(map, key, json_integer(count));
    }
    fclose(f);
    return json_object_size(map);
}

static void assert_equals_truth(const char *out, const char *truth)
{
    json_t *got = json_object(), *want = json_object();
    size_t ng = load(got, out, 0), nw = load(want, truth, 1);
    const char *key;
    json_t *v;
    json_object_foreach(want, key, v)
    {
        json_t *g = json_object_get(got, key);
        cr_assert_not_null(g, "missing result for %s", key);
        cr_assert_eq(json_integer_value(g), json_integer_value(v), "%s: got %lld, truth %lld", key,
                     (long long)json_integer_value(g), (long long)json_integer_value(v));
    }
    cr_assert_eq(ng, nw, "%zu results, truth has %zu", ng, nw);
    json_decref(got);
    json_decref(want);
}

static int run(const char *job, int p, const char *extra)
{
    return kp_test_sh("%s run --local %s/%s.so -p %d --source clicks=file:%s/events.ndjson "
                      "--sink hourly-click-index=file:%s/out.ndjson %s 2>%s/stderr.txt",
                      kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), job, p, dir, dir, extra,
                      dir);
}

/* The broken job plugins of tests/unit/plugins: $KAPPA_TEST_PLUGINS, else next to this binary. */
static const char *test_plugins_dir(void)
{
    static char path[1100];
    const char *env = getenv("KAPPA_TEST_PLUGINS");
    if (env && *env)
        return env;
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert_gt(n, 0, "readlink /proc/self/exe failed");
    exe[n] = 0;
    snprintf(path, sizeof path, "%s/plugins", dirname(exe));
    return path;
}

TestSuite(run_local, .init = setup, .fini = teardown, .timeout = 240);

Test(run_local, seed_job_equals_truth_at_every_parallelism)
{
    char out[600], truth[600];
    snprintf(out, sizeof out, "%s/out.ndjson", dir);
    snprintf(truth, sizeof truth, "%s/truth.tsv", dir);
    for (int p = 1; p <= 4; p++) {
        cr_assert_eq(run("hourly_clicks", p, ""), 0, "kappa run failed at p=%d", p);
        assert_equals_truth(out, truth);
    }
}

Test(run_local, corrected_rule_equals_its_truth)
{
    char out[600], truth[600];
    snprintf(out, sizeof out, "%s/out.ndjson", dir);
    snprintf(truth, sizeof truth, "%s/truth-v2.tsv", dir);
    cr_assert_eq(run("hourly_clicks_v2", 2, ""), 0);
    assert_equals_truth(out, truth);
}

/* The number after "name=" in the generator's truth header. */
static long long truth_total(const char *name)
{
    char path[600], line[512], pat[64];
    snprintf(path, sizeof path, "%s/truth.tsv", dir);
    snprintf(pat, sizeof pat, "%s=", name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    long long v = -1;
    while (v < 0 && fgets(line, sizeof line, f)) {
        char *p = strstr(line, pat);
        if (line[0] == '#' && p)
            v = atoll(p + strlen(pat));
    }
    fclose(f);
    return v;
}

Test(run_local, dead_letter_file_gets_exactly_the_malformed_lines)
{
    char extra[700];
    snprintf(extra, sizeof extra,
             "--on-error clicks=dead-letter --dead-letter clicks=file:%s/dead.ndjson", dir);
    cr_assert_eq(run("hourly_clicks", 2, extra), 0);
    long long malformed = truth_total("malformed");
    cr_assert_gt(malformed, 0);
    /* the dead-letter lines are exactly the input lines jansson cannot read as a valid click */
    cr_assert_eq(kp_test_sh("sort %s/dead.ndjson > %s/dead.sorted", dir, dir), 0);
    cr_assert_eq(
        kp_test_sh("python3 -c 'import json,sys\n"
                   "bad=[]\n"
                   "for l in open(sys.argv[1]):\n"
                   "    l=l.rstrip(\"\\n\")\n"
                   "    try:\n"
                   "        d=json.loads(l); ok=isinstance(d,dict) and "
                   "isinstance(d.get(\"item_id\"),str) and d[\"item_id\"] and "
                   "type(d.get(\"timestamp\")) is int and d[\"timestamp\"]>=0\n"
                   "    except Exception: ok=False\n"
                   "    if not ok: bad.append(l)\n"
                   "open(sys.argv[2],\"w\").write(\"\".join(sorted(x+\"\\n\" for x in bad)))' "
                   "%s/events.ndjson %s/expected.sorted",
                   dir, dir),
        0);
    cr_assert_eq(kp_test_sh("cmp -s %s/dead.sorted %s/expected.sorted", dir, dir), 0,
                 "dead-letter file differs from the malformed input lines");
    cr_assert_eq(kp_test_sh("test $(wc -l < %s/dead.ndjson) -eq %lld", dir, malformed), 0);
    cr_assert_eq(kp_test_sh("grep -q '%lld decode errors (%lld dead-lettered)' %s/stderr.txt",
                            malformed, malformed, dir),
                 0);
}

Test(run_local, skip_policy_counts_and_fail_policy_names_the_record)
{
    long long malformed = truth_total("malformed");
    cr_assert_eq(run("hourly_clicks", 1, "--on-error clicks=skip"), 0);
    cr_assert_eq(
        kp_test_sh("grep -q '%lld decode errors (0 dead-lettered)' %s/stderr.txt", malformed, dir),
        0);
    cr_assert_eq(run("hourly_clicks", 1, "--on-error clicks=fail"), 1);
    cr_assert_eq(
        kp_test_sh("grep -q 'malformed record at partition 0 offset [0-9]*' %s/stderr.txt", dir), 0,
        "the failure does not name the record");
    cr_assert_eq(
        kp_test_sh("grep -q 'set the on-error policy to skip or dead-letter' %s/stderr.txt", dir),
        0);
}

/* --stats reports how the exchanges batched: every well-formed event crosses the key_by
 * exchange exactly once, so the records sent equal the well-formed events, and records per
 * batch is their ratio. */
Test(run_local, stats_report_records_per_batch)
{
    cr_assert_eq(run("hourly_clicks", 2, "--on-error clicks=skip --stats"), 0);
    char path[600], line[512];
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    long long records = -1, batches = -1;
    double per_batch = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "kappa: exchanges: %lld records in %lld batches, %lf records per batch",
                   &records, &batches, &per_batch) == 3)
            break;
    fclose(f);
    cr_assert_gt(batches, 0, "no 'kappa: exchanges: ... records per batch' line in %s", path);
    long long valid = truth_total("valid");
    cr_assert_gt(valid, 0);
    cr_assert_eq(records, valid, "%lld records crossed the exchange, %lld are well-formed", records,
                 valid);
    cr_assert_float_eq(per_batch, (double)records / (double)batches, 0.05);
    printf("records per batch at p=2: %.1f (%lld records, %lld batches)\n", per_batch, records,
           batches);
}

Test(run_local, bad_flags_exit_2)
{
    const char *cli = kp_test_env("KAPPA_CLI");
    cr_assert_eq(kp_test_sh("%s run --local 2>/dev/null", cli), 2);
    cr_assert_eq(kp_test_sh("%s run --local x.so --on-error clicks=maybe 2>/dev/null", cli), 2);
    cr_assert_eq(kp_test_sh("%s frobnicate 2>/dev/null", cli), 2);
    cr_assert_eq(kp_test_sh("%s run --local %s/hourly_clicks.so --source clicks=ftp:x 2>/dev/null",
                            cli, kp_test_env("KAPPA_JOBS")),
                 1);
}

/* Defect 4: every parallelism is bounded by KP_MAX_PARALLELISM (256). Out of range on the
 * command line is bad usage (exit 2) and says the range; a plugin that asks for more on one
 * operator fails to load with a message naming it (exit 1) instead of overrunning the
 * executor's per-subtask arrays. */
Test(run_local, parallelism_out_of_range_is_a_clear_error)
{
    const char *cli = kp_test_env("KAPPA_CLI"), *jobs = kp_test_env("KAPPA_JOBS");
    static const char *bad[] = {"0", "-1", "257", "100000", "2x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(kp_test_sh("%s run --local %s/hourly_clicks.so -p '%s' 2>%s/stderr.txt", cli,
                                jobs, bad[i], dir),
                     2, "-p '%s' should be bad usage", bad[i]);
        cr_assert_eq(
            kp_test_sh("grep -q -- '--parallelism must be within 1..256' %s/stderr.txt", dir), 0,
            "-p '%s': the message does not give the range", bad[i]);
    }
    /* in range passes the CLI (the plan only: no threads); hourly_clicks has the default 128
     * key groups, which bound its keyed operators further */
    cr_assert_eq(
        kp_test_sh("%s run --local %s/hourly_clicks.so -p 128 --plan >/dev/null", cli, jobs), 0);

    char plugin[1200];
    snprintf(plugin, sizeof plugin, "%s/huge_parallelism.so", test_plugins_dir());
    cr_assert_eq(kp_test_sh("test -f %s", plugin), 0, "%s is missing: build with ninja", plugin);
    cr_assert_eq(kp_test_sh("%s run --local %s --source clicks=file:%s/events.ndjson "
                            "--sink out=file:%s/out.ndjson 2>%s/stderr.txt",
                            cli, plugin, dir, dir, dir),
                 1, "a sink with .parallelism = 2000 must fail the load, not crash");
    cr_assert_eq(
        kp_test_sh("grep -q 'parallelism must be within 1..256, got 2000' %s/stderr.txt", dir), 0,
        "the message does not name the bound and the value");
}

/* The temporary state directory is removed without a shell: a TMPDIR with a space and a
 * quote (which broke the old `system("rm -rf '...'")`) ends up empty. */
Test(run_local, temporary_state_dir_is_removed_whatever_its_name)
{
    cr_assert_eq(kp_test_sh("mkdir -p \"%s/tmp dir's\"", dir), 0);
    cr_assert_eq(kp_test_sh("TMPDIR=\"%s/tmp dir's\" %s run --local %s/hourly_clicks.so -p 2 "
                            "--source clicks=file:%s/events.ndjson --on-error clicks=skip "
                            "--sink hourly-click-index=file:%s/out.ndjson 2>%s/stderr.txt",
                            dir, kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), dir, dir,
                            dir),
                 0);
    cr_assert_eq(kp_test_sh("test -z \"$(ls -A \"%s/tmp dir's\")\"", dir), 0,
                 "the state directory under TMPDIR was left behind");
    cr_assert_eq(kp_test_sh("grep -q 'could not remove' %s/stderr.txt", dir), 1);
}

static long long read_epoch(const char *path)
{
    char text[64] = "";
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s is missing", path);
    cr_assert_not_null(fgets(text, sizeof text, f));
    fclose(f);
    return atoll(text);
}

/* The fencing epoch counter (runtime/epoch_file.h): two runs with one --state-dir take
 * growing epochs from <state-dir>/epoch even within the same second; without --state-dir the
 * counter is the user's, per job ($XDG_STATE_HOME/kappa/JOB/epoch); a corrupt file stops the
 * run with a message naming it. */
Test(run_local, fencing_epoch_counter_in_the_state_dir)
{
    char extra[600], path[600];
    snprintf(extra, sizeof extra, "--state-dir %s/st", dir);
    snprintf(path, sizeof path, "%s/st/epoch", dir);
    cr_assert_eq(run("hourly_clicks", 1, extra), 0);
    long long e1 = read_epoch(path);
    long long now = (long long)time(NULL);
    cr_expect(e1 > now - 600 && e1 <= now, "first epoch %lld is not the wall clock %lld", e1, now);
    cr_assert_eq(run("hourly_clicks", 1, extra), 0);
    long long e2 = read_epoch(path);
    cr_expect_gt(e2, e1);

    snprintf(extra, sizeof extra, "XDG_STATE_HOME=%s/xdg", dir); /* no --state-dir */
    cr_assert_eq(kp_test_sh("%s %s run --local %s/hourly_clicks.so --source "
                            "clicks=file:%s/events.ndjson --sink hourly-click-index=file:%s/o2 "
                            "2>/dev/null",
                            extra, kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), dir, dir),
                 0);
    snprintf(path, sizeof path, "%s/xdg/kappa/hourly_clicks/epoch", dir);
    cr_expect_gt(read_epoch(path), 0);

    snprintf(path, sizeof path, "%s/st/epoch", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not a number\n", f);
    fclose(f);
    snprintf(extra, sizeof extra, "--state-dir %s/st", dir);
    cr_expect_neq(run("hourly_clicks", 1, extra), 0, "a corrupt epoch file was accepted");
    cr_expect_eq(kp_test_sh("grep -q 'st/epoch: corrupt fencing epoch file' %s/stderr.txt", dir), 0,
                 "no clear error (%s/stderr.txt)", dir);
}
