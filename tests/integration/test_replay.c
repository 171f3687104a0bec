/* Deterministic replay against the real services (issue 7): the same retained log, replayed
 * three times at each of -p 1, 2 and 4, must give byte-identical indices, equal to kappa-gen's
 * truth where there is one. The log is the scenario: a 4-partition topic where
 * kappa-gen's `range` partitioner gives partition 0 only the first fifth of the event time (it
 * reaches its end early while the others go on), events two days late spread through the whole
 * stream, and a few malformed messages. Every run reads with --from-earliest and stop_at=end
 * and writes its own indices; each index is dumped whole (es_sources.py: _id and canonical
 * _source, sorted) and compared byte for byte with the first run's; hourly counts are also
 * compared with the truth. The late count of the run summary must not depend on the run.
 *
 * All runs are made and checked before anything is asserted (cr_expect), so a failure shows
 * every run's figures (the table on stderr), not only the first difference.
 *
 * The run step is one function, run_replay(), taking the command that runs a job: `kappa run
 * --local` here; the cluster issue sets KAPPA_REPLAY_RUN to its `kappa submit ...` and the same
 * test then replays across taskmanager processes. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"

#define EVENTS    200000
#define RUNS      3 /* per parallelism */
#define NPAR      3
#define NRUNS     (NPAR * RUNS)
#define MAX_SINKS 2

static const int parallelism[NPAR] = {1, 2, 4};
static const unsigned long long default_seed = 7;

/* kappa-gen's options for the log (and for every truth of it): the events do not depend on the
 * partitioning options, and the truth applies the lateness rule per partition as the engine
 * must. 0.1 % of the events are moved back 2 days (+ up to 1 h): late from the first records
 * on. 100 items rather than 1000 keep the hourly indices at ~17k documents (7 days x 100
 * items) instead of ~62k: the same events and late ones, a quarter of the Elasticsearch work. */
static const char gen_options[] = "--partitions 4 --partitioner %s --count %d --items 100 "
                                  "--out-of-order-ms 10000 --late-fraction 0.001 "
                                  "--late-lag-ms 172800000 --malformed 0.002 --seed %llu";

/* The fields of an hourly count in kappa-gen's truth order (item, window end, count). */
static const char hourly_fields[] = "item_id,window_end,click_count";

typedef struct replay_job {
    const char *name;             /* jobs/<name>.so */
    const char *partitioner;      /* kappa-gen's: range (the scenario) or hash */
    const char *sinks[MAX_SINKS]; /* each bound to its own index per run */
    const char *truth_options;    /* extra kappa-gen truth options; NULL: no truth exists */
    bool filters;                 /* decode skips (filters) events the truth counts as filtered */
    bool fresh_seed;              /* a fresh seed (printed) instead of the fixed one */
    int compared;                 /* how many of sinks must agree across runs; 0 = all */
} replay_job;

/* Whether sink k's index is compared across runs. */
static bool compared(const replay_job *j, int k)
{
    return !j->compared || k < j->compared;
}

typedef struct run_summary {
    int rc;
    long long in, out, decode_errors, skipped, late;
    long long docs[MAX_SINKS]; /* -1: the index could not be read */
    double seconds;
} run_summary;

static char dir[] = "/tmp/kappa-replay-XXXXXX";
static char brokers[128], es[128], topic[128];

static void setup_dir(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(brokers, sizeof brokers, "%s", kp_test_env("KAPPA_BROKERS"));
    snprintf(es, sizeof es, "%s", kp_test_env("KAPPA_ES_URL"));
}

/* Removes the topic (the broker may outlive the test) and the directory. */
static void teardown_dir(void)
{
    const char *src = getenv("KAPPA_SRC");
    if (topic[0] && src)
        kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-delete %s >/dev/null 2>&1", brokers,
                   src, topic);
    if (!getenv("KAPPA_KEEP_TEST_DIR"))
        kp_test_rmtree(dir);
    else
        fprintf(stderr, "replay: kept %s\n", dir);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The seed of the log: the fixed one, so CI always replays the same log, or a fresh one;
 * KAPPA_REPLAY_SEED=N (or "random") overrides both. Printed. */
static unsigned long long log_seed(bool fresh)
{
    const char *v = getenv("KAPPA_REPLAY_SEED");
    unsigned long long seed = default_seed;
    if ((v && strcmp(v, "random") == 0) || (fresh && !(v && *v)))
        seed = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 16);
    else if (v && *v)
        seed = strtoull(v, NULL, 10);
    fprintf(stderr, "replay: kappa-gen seed %llu (KAPPA_REPLAY_SEED=%llu reproduces it)\n", seed,
            seed);
    return seed;
}

/* Creates the 4-partition topic, writes the log into it and the truth files into dir:
 * truth.tsv for the job (with its truth options) and its sorted (item, end, count) lines. */
static void produce(const replay_job *j, unsigned long long seed)
{
    const char *src = kp_test_env("KAPPA_SRC"), *gen = kp_test_env("KAPPA_GEN");
    char opts[512];
    snprintf(opts, sizeof opts, gen_options, j->partitioner, EVENTS, seed);
    snprintf(topic, sizeof topic, "replay-%s-%ld-%d", j->name, (long)time(NULL), getpid());
    cr_assert_eq(kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s 4 >/dev/null "
                            "2>&1",
                            brokers, src, topic),
                 0, "cannot create topic %s at %s", topic, brokers);
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s %s --truth %s/truth-log.tsv", gen, brokers,
                            topic, opts, dir),
                 0, "kappa-gen could not write the log");
    if (!j->truth_options)
        return;
    cr_assert_eq(kp_test_sh("%s --dry-run %s %s --truth %s/truth.tsv --quiet", gen, opts,
                            j->truth_options, dir),
                 0);
    cr_assert_eq(
        kp_test_sh("grep -v '^#' %s/truth.tsv | awk -F'\\t' '{print $1\"\\t\"$3\"\\t\"$4}' "
                   "| LC_ALL=C sort > %s/truth.sorted",
                   dir, dir),
        0);
}

/* A total of the truth header ("# events=N valid=N malformed=N late=N ..." comes first). */
static long long truth_total(const char *name)
{
    char cmd[1024], out[64];
    snprintf(cmd, sizeof cmd,
             "grep '^#' %s/truth.tsv | tr ' ' '\\n' | sed -n 's/^%s=//p' | head -1", dir, name);
    kp_test_capture(out, sizeof out, cmd);
    cr_assert(out[0], "no %s= in the truth header (%s/truth.tsv)", name, dir);
    return atoll(out);
}

/* The number just before `label` in the run summary line, -1 if it is not there. */
static long long number_before(const char *line, const char *label)
{
    const char *at = strstr(line, label);
    if (!at)
        return -1;
    const char *start = at;
    while (start > line && isdigit((unsigned char)start[-1]))
        start--;
    return start < at ? strtoll(start, NULL, 10) : -1;
}

/* The counts of "kappa: done in S s: N records in (R/s), N out, N decode errors (N
 * dead-lettered), N skipped, N late, ..." in the run's stderr. */
static void read_summary(run_summary *s, const char *err_path)
{
    char line[2048] = "";
    FILE *f = fopen(err_path, "r");
    cr_assert_not_null(f, "no %s", err_path);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "kappa: done in", 14) == 0)
            break;
    bool found = strncmp(line, "kappa: done in", 14) == 0;
    fclose(f);
    s->in = s->out = s->decode_errors = s->skipped = s->late = -1;
    if (!found)
        return;
    s->in = number_before(line, " records in");
    s->out = number_before(line, " out,");
    s->decode_errors = number_before(line, " decode errors");
    s->skipped = number_before(line, " skipped,");
    s->late = number_before(line, " late,");
}

/* The run step: `PREFIX JOB.so -p P` replays the whole topic (earliest offsets to the end
 * offsets, stop_at=end) into the sink bindings `sinks` ("--sink NAME=es:INDEX ..."), stdout and
 * stderr to LOG.out and LOG.err. PREFIX is the command that runs a job: "kappa run --local",
 * or in the cluster issue a `kappa submit` that runs it on taskmanagers. Blocks until the job
 * has finished; returns its exit status and the counts of its summary line. */
static run_summary run_replay(const char *prefix, const char *job, int p, const char *sinks,
                              const char *log)
{
    run_summary s = {0};
    double t0 = now_s();
    s.rc =
        kp_test_sh("%s %s/%s.so -p %d --stats --brokers %s --es-url %s --from-earliest "
                   "--source 'clicks=kafka:%s?stop_at=end' %s >%s.out 2>%s.err",
                   prefix, kp_test_env("KAPPA_JOBS"), job, p, brokers, es, topic, sinks, log, log);
    s.seconds = now_s() - t0;
    char err[1100];
    snprintf(err, sizeof err, "%s.err", log);
    read_summary(&s, err);
    return s;
}

/* The command that runs a job (see run_replay). */
static const char *run_prefix(char *buf, size_t len)
{
    const char *v = getenv("KAPPA_REPLAY_RUN");
    if (v && *v)
        return v;
    snprintf(buf, len, "%s run --local", kp_test_env("KAPPA_CLI"));
    return buf;
}

/* Dumps sink k's index of run i to dir/SINK.i.src (with a truth: also the truth's fields to
 * dir/SINK.i.tsv), then deletes the index to keep the node small. Returns the number of
 * documents, -1 if the index could not be read. */
static long long dump_index(const replay_job *j, int k, int i, const char *index)
{
    char cmd[2048], out[64];
    int n =
        snprintf(cmd, sizeof cmd, "python3 %s/tests/integration/es_sources.py %s %s %s/%s.%d.src",
                 kp_test_env("KAPPA_SRC"), es, index, dir, j->sinks[k], i);
    if (j->truth_options)
        snprintf(cmd + n, sizeof cmd - (size_t)n, " %s/%s.%d.tsv %s", dir, j->sinks[k], i,
                 hourly_fields);
    kp_test_capture(out, sizeof out, cmd);
    kp_test_sh("curl -s -XDELETE '%s/%s' >/dev/null", es, index);
    return out[0] ? atoll(out) : -1;
}

/* Lines in one sorted file and not in the other (both ways); -1 if either is missing. */
static long long differing(const char *a, const char *b)
{
    char cmd[2048], out[64];
    snprintf(cmd, sizeof cmd,
             "if [ -f %s ] && [ -f %s ]; then LC_ALL=C comm -3 %s %s | wc -l; else echo -1; fi", a,
             b, a, b);
    kp_test_capture(out, sizeof out, cmd);
    return out[0] ? atoll(out) : -1;
}

typedef struct comparison {
    long long vs_first[NRUNS][MAX_SINKS]; /* lines differing from run 0's dump */
    long long vs_truth[NRUNS];            /* lines differing from the truth, -1: no truth */
} comparison;

static void compare(const replay_job *j, comparison *c)
{
    char a[1024], b[1024];
    for (int i = 0; i < NRUNS; i++) {
        for (int k = 0; k < MAX_SINKS && j->sinks[k]; k++) {
            snprintf(a, sizeof a, "%s/%s.0.src", dir, j->sinks[k]);
            snprintf(b, sizeof b, "%s/%s.%d.src", dir, j->sinks[k], i);
            c->vs_first[i][k] = differing(a, b);
        }
        c->vs_truth[i] = -1;
        if (j->truth_options) {
            snprintf(a, sizeof a, "%s/truth.sorted", dir);
            snprintf(b, sizeof b, "%s/%s.%d.tsv", dir, j->sinks[0], i);
            c->vs_truth[i] = differing(a, b);
        }
    }
}

/* Every run's figures on stderr (the evidence when an assertion fails), and the first lines of
 * the first difference of each kind. */
static void print_runs(const replay_job *j, const run_summary *r, const comparison *c)
{
    fprintf(stderr,
            "replay: %s, %d events, topic %s; per run: p, exit, records in, out, decode "
            "errors, skipped, late, then per sink documents/lines differing from run 0, "
            "lines differing from the truth, seconds\n",
            j->name, EVENTS, topic);
    bool shown_first = false, shown_truth = false;
    for (int i = 0; i < NRUNS; i++) {
        fprintf(stderr,
                "replay:  run %d p=%d rc=%d in=%lld out=%lld bad=%lld skipped=%lld late=%lld", i,
                parallelism[i / RUNS], r[i].rc, r[i].in, r[i].out, r[i].decode_errors, r[i].skipped,
                r[i].late);
        for (int k = 0; k < MAX_SINKS && j->sinks[k]; k++)
            fprintf(stderr, " %s=%lld/%lld", j->sinks[k], r[i].docs[k], c->vs_first[i][k]);
        fprintf(stderr, " truth=%lld %.1fs\n", c->vs_truth[i], r[i].seconds);
        for (int k = 0; k < MAX_SINKS && j->sinks[k]; k++)
            if (c->vs_first[i][k] != 0 && !shown_first) {
                shown_first = true;
                kp_test_sh("diff %s/%s.0.src %s/%s.%d.src | head -n 8 >&2", dir, j->sinks[k], dir,
                           j->sinks[k], i);
            }
        if (c->vs_truth[i] > 0 && !shown_truth) {
            shown_truth = true;
            kp_test_sh("echo 'replay: truth (<) vs run %d (>):' >&2; diff %s/truth.sorted "
                       "%s/%s.%d.tsv | head -n 8 >&2",
                       i, dir, dir, j->sinks[0], i);
        }
    }
    kp_test_sh("grep -h 'kappa: stats' %s/run.0.err %s/run.%d.err %s/run.%d.err | cut -c1-300 >&2",
               dir, dir, RUNS, dir, 2 * RUNS);
}

/* What every run must share with run 0, and with the truth where there is one. */
static void check_runs(const replay_job *j, const run_summary *r, const comparison *c)
{
    for (int i = 0; i < NRUNS; i++) {
        int p = parallelism[i / RUNS];
        cr_expect_eq(r[i].rc, 0, "run %d (p=%d) exited with %d (%s/run.%d.err)", i, p, r[i].rc, dir,
                     i);
        cr_expect_eq(r[i].in, EVENTS, "run %d (p=%d) read %lld records of %d", i, p, r[i].in,
                     EVENTS);
        cr_expect_eq(r[i].late, r[0].late, "run %d (p=%d) counted %lld late, run 0 (p=1) %lld", i,
                     p, r[i].late, r[0].late);
        if (!j->compared)
            cr_expect_eq(r[i].out, r[0].out, "run %d (p=%d) emitted %lld results, run 0 (p=1) %lld",
                         i, p, r[i].out, r[0].out);
        cr_expect_eq(r[i].decode_errors, r[0].decode_errors,
                     "run %d (p=%d) had %lld decode errors, run 0 %lld", i, p, r[i].decode_errors,
                     r[0].decode_errors);
        long long docs = 0;
        for (int k = 0; k < MAX_SINKS && j->sinks[k]; k++) {
            if (!compared(j, k))
                continue;
            cr_expect_eq(c->vs_first[i][k], 0,
                         "index of sink %s, run %d (p=%d): %lld lines differ from run 0's "
                         "(%lld documents, run 0 %lld)",
                         j->sinks[k], i, p, c->vs_first[i][k], r[i].docs[k], r[0].docs[k]);
            docs += r[i].docs[k];
        }
        /* allowed lateness 0: every window and every timer emits once, each a new document */
        if (!j->compared)
            cr_expect_eq(r[i].out, docs, "run %d (p=%d) emitted %lld results into %lld documents",
                         i, p, r[i].out, docs);
        if (j->truth_options)
            cr_expect_eq(c->vs_truth[i], 0,
                         "index of run %d (p=%d): %lld lines differ from kappa-gen's truth "
                         "(%lld documents)",
                         i, p, c->vs_truth[i], r[i].docs[0]);
    }
    if (!j->truth_options)
        return;
    long long late = truth_total("late"), filtered = truth_total("filtered");
    cr_expect_eq(r[0].decode_errors, truth_total("malformed"),
                 "%lld decode errors, kappa-gen wrote %lld malformed", r[0].decode_errors,
                 truth_total("malformed"));
    if (!j->filters)
        cr_expect_eq(r[0].late, late, "the runs counted %lld late, the truth %lld", r[0].late,
                     late);
    else /* the truth judges lateness before the filter, the job filters in decode (skipped) */
        cr_expect_eq(r[0].late + r[0].skipped, late + filtered,
                     "late %lld + skipped %lld != the truth's late %lld + filtered %lld", r[0].late,
                     r[0].skipped, late, filtered);
}

static void replay(const replay_job *j)
{
    produce(j, log_seed(j->fresh_seed));
    char prefix_buf[1024];
    const char *prefix = run_prefix(prefix_buf, sizeof prefix_buf);
    run_summary runs[NRUNS];
    double t0 = now_s();
    for (int i = 0; i < NRUNS; i++) {
        int p = parallelism[i / RUNS];
        char sinks[1024] = "", index[MAX_SINKS][160], log[1024];
        size_t n = 0;
        for (int k = 0; k < MAX_SINKS && j->sinks[k]; k++) {
            snprintf(index[k], sizeof index[k], "replay-%d-%s-p%d-r%d", getpid(), j->sinks[k], p,
                     i % RUNS);
            n += (size_t)snprintf(sinks + n, sizeof sinks - n, " --sink %s=es:%s", j->sinks[k],
                                  index[k]);
        }
        snprintf(log, sizeof log, "%s/run.%d", dir, i);
        runs[i] = run_replay(prefix, j->name, p, sinks, log);
        if (runs[i].rc != 0)
            kp_test_sh("tail -n 5 %s.err >&2", log);
        for (int k = 0; k < MAX_SINKS && j->sinks[k]; k++)
            runs[i].docs[k] = dump_index(j, k, i, index[k]);
    }
    comparison c;
    compare(j, &c);
    print_runs(j, runs, &c);
    fprintf(stderr, "replay: %s: %d runs in %.1f s\n", j->name, NRUNS, now_s() - t0);
    check_runs(j, runs, &c);
}

TestSuite(replay, .init = setup_dir, .fini = teardown_dir, .timeout = 900);

Test(replay, hourly_clicks)
{
    static const replay_job j = {"hourly_clicks", "range", {"hourly-click-index"}, "", false,
                                 false,           0};
    replay(&j);
}

/* deploy/dev/seed's v2: same sink and document ids, only users numbered above 50 count */
Test(replay, hourly_clicks_v2)
{
    static const replay_job j = {"hourly_clicks_v2",
                                 "range",
                                 {"hourly-click-index"},
                                 "--filter-users-above 50",
                                 true,
                                 false,
                                 0};
    replay(&j);
}

/* No generator truth exists for sessions or quiet users: the runs must agree with each other.
 * In this log each user's clicks are spread over all four partitions (range places events, not
 * keys). Session windows are deterministic whatever the partitioning; the quiet-users process
 * function declares .key_in_one_partition (its topic is keyed by user), which this log breaks,
 * so only the sessions sink is compared here (docs/semantics.md, "Process functions"); the
 * next test checks both sinks on a topic keyed as the job declares. */
Test(replay, user_sessions)
{
    static const replay_job j = {
        "user_sessions", "range", {"user-sessions", "quiet-users"}, NULL, false, false, 1};
    replay(&j);
}

/* The same with the topic keyed as Kafka's default partitioner keys it (murmur2 of user_id):
 * all clicks of a user in one partition, the case in which runtime/op_process.c guarantees
 * that a key's records and timers interleave as a function of the log. A fresh seed each time
 * (printed; KAPPA_REPLAY_SEED reproduces it). */
Test(replay, user_sessions_key_in_one_partition)
{
    static const replay_job j = {
        "user_sessions", "hash", {"user-sessions", "quiet-users"}, NULL, false, true, 0};
    replay(&j);
}
