/* A port of Flink's EventTimeWindowCheckpointingITCase (tumbling windows over RocksDB state,
 * the test's idea, not its code): many keys, small event-time tumbling windows summing the
 * event times, a failure injected once in the middle of the stream after at least two
 * checkpoints completed, a restore from the latest checkpoint, and every window's sum exact.
 *
 * Input: for every millisecond t in [0, T) one record per key k in [0, K): "k<k> <t>" with
 * event time t and value t (file source, 4 partitions). Job at p=2: source → a map that can
 * fail → key by k → tumbling windows of W ms → sum of the values → a sink at p=1 that appends
 * every result to a file with one write(2) each, as an external system would keep it.
 *
 * The first run (a child process, checkpoints every 50 ms) is slowed to about a millisecond of
 * event time per millisecond, like Flink's FailingSource; once two checkpoints are in storage
 * and a third of the records went through the map, the map calls _exit(137): a crash at an
 * arbitrary point between checkpoints, with windows half-filled and results already written
 * after the last checkpoint. The second run restores from the latest checkpoint and runs to
 * the end. Checked, over both runs' output, as Flink's ValidatingSink does: every result ever
 * written — before the crash or after the restore — holds exactly the sum of its window's
 * times (nothing lost from, nothing counted twice into, a restored window), and every window
 * of every key was written. A second case restores at p=3 (key groups redistributed). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../runtime/checkpoint_store.h"
#include "../../runtime/connector.h"
#include "../../runtime/exec.h"
#include "../../runtime/graph.h"
#include "connectors.h"

#include "../support/shell.h"

#define K     100  /* keys */
#define T     3000 /* milliseconds of event time, one record per key each */
#define W     100  /* window size, ms */
#define NPART 4
#define JOB   "window-ckpt"

static char dir[] = "/tmp/kappa-window-ckpt-XXXXXX";
static char input[300], ledger[300], ckpt_dir[300];

/* ---- the job ------------------------------------------------------------------------------- */

static atomic_long mapped; /* records through the map (first run) */
static atomic_int armed;   /* two checkpoints completed */
static int failing;        /* the first run: slowed, fails once */

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    const char *sp = memchr(raw.ptr, ' ', raw.len);
    if (!sp || raw.ptr[0] != 'k')
        return KP_BAD_INPUT;
    size_t klen = (size_t)(sp - raw.ptr);
    kp_event_key(ev, (kp_bytes){raw.ptr, klen});
    kp_event_value(ev, (kp_bytes){sp + 1, raw.len - klen - 1});
    kp_event_time(ev, strtoll(sp + 1, NULL, 10));
    return KP_OK;
}

static kp_rc fail_once(kp_event *ev)
{
    (void)ev;
    if (!failing)
        return KP_OK;
    long n = atomic_fetch_add(&mapped, 1) + 1;
    if (n % K == 0) /* ~1 ms per millisecond of event time (two subtasks: half that) */
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    if (atomic_load(&armed) && n >= (long)K * T / 3)
        _exit(137);
    return KP_OK;
}

static int64_t value(const kp_event *ev)
{
    kp_bytes v = kp_event_get_value(ev);
    int64_t x = 0;
    for (size_t i = 0; i < v.len; i++)
        x = x * 10 + (v.ptr[i] - '0');
    return x;
}

static void emit_sum(kp_doc *doc, const kp_window *w, kp_str key, int64_t sum)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), w->end);
    kp_doc_int(doc, "start", w->start);
    kp_doc_int(doc, "end", w->end);
    kp_doc_int(doc, "sum", sum);
}

static int define(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_job_parallelism(job, 2);
    kp_stream *src = kp_source(job, "in", .decode = decode, .out_of_order = 10, .uid = "src");
    kp_windowed *w = kp_window(kp_key_by(kp_map(src, fail_once)), kp_tumbling(W));
    kp_sink(kp_sum(w, .value = value, .emit = emit_sum, .uid = "sums"), "out", .parallelism = 1);
    return 0;
}

/* ---- the sink: one write(2) per result ------------------------------------------------------ */

typedef struct ledger_writer {
    kp_sink_writer w;
    int fd;
} ledger_writer;

static int lw_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *e, size_t n)
{
    (void)ts;
    char line[512];
    int len =
        snprintf(line, sizeof line, "%.*s\t%.*s\n", (int)id.len, id.ptr, (int)doc.len, doc.ptr);
    if (len <= 0 || len >= (int)sizeof line ||
        write(((ledger_writer *)w)->fd, line, (size_t)len) != len) {
        snprintf(e, n, "ledger: cannot write %s", ledger);
        return -1;
    }
    return 0;
}

static int lw_flush(kp_sink_writer *w, char *e, size_t n)
{
    (void)w, (void)e, (void)n;
    return 0;
}

static void lw_close(kp_sink_writer *w)
{
    close(((ledger_writer *)w)->fd);
    free(w);
}

static kp_sink_writer *lw_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    (void)ep;
    ledger_writer *l = calloc(1, sizeof *l);
    if (!l || (l->fd = open(ledger, O_WRONLY | O_APPEND | O_CREAT, 0644)) < 0) {
        snprintf(errstr, errlen, "ledger: cannot open %s", ledger);
        free(l);
        return NULL;
    }
    l->w = (kp_sink_writer){.write = lw_write, .flush = lw_flush, .close = lw_close};
    return &l->w;
}

/* ---- runs ------------------------------------------------------------------------------------ */

static int completed(void)
{
    char path[600];
    int n = 0;
    for (int id = 1; id < 2000; id++) {
        snprintf(path, sizeof path, "%s/%s/chk-%d/_metadata.sha256", ckpt_dir, JOB, id);
        n += access(path, F_OK) == 0;
    }
    return n;
}

static void *watch(void *arg)
{
    (void)arg;
    while (completed() < 2)
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    atomic_store(&armed, 1);
    return NULL;
}

/* One run at parallelism p (the job's own: 2). */
static int run(kp_restore *restore, int p, char *err, size_t errlen)
{
    static const kp_connector lw = {"ledger", NULL, lw_open};
    static int registered;
    if (!registered++) {
        kp_connectors_register_builtin();
        kp_connector_register(&lw);
    }
    char uri[400];
    snprintf(uri, sizeof uri, "file:%s?partitions=%d", input, NPART);
    kp_binding bind[] = {{.name = "in", .uri = uri}, {.name = "out", .uri = "ledger:"}};
    char state[400];
    snprintf(state, sizeof state, "%s/state-%s", dir, restore ? "restored" : "first");
    kp_exec_config cfg = {.bindings = bind,
                          .nbindings = 2,
                          .state_dir = state,
                          .ckpt = {.interval_ms = 50, .retain = 2, .dir = ckpt_dir},
                          .restore = restore};
    kp_job *job = kp_job_new(JOB);
    job->parallelism_override = p;
    cr_assert_eq(kp_job_define(job, define, err, errlen), 0, "%s", err);
    kp_exec_stats st;
    int rc = kp_exec_run(job, &cfg, &st, err, errlen);
    kp_job_free(job);
    return rc;
}

static void write_input(void)
{
    FILE *f = fopen(input, "w");
    cr_assert_not_null(f);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++)
            fprintf(f, "k%d %d\n", k, t);
    cr_assert_eq(fclose(f), 0);
}

static int64_t field(const char *doc, const char *name)
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *p = strstr(doc, pat);
    cr_assert_not_null(p, "no %s in %s", name, doc);
    return strtoll(p + strlen(pat), NULL, 10);
}

/* The failure, then the restore at parallelism restore_p, then the checks. */
static void fail_restore_check(int restore_p)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(input, sizeof input, "%s/in.txt", dir);
    snprintf(ledger, sizeof ledger, "%s/results.tsv", dir);
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/ck", dir);
    write_input();

    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        failing = 1;
        pthread_t w;
        if (pthread_create(&w, NULL, watch, NULL) != 0)
            _exit(2);
        char err[1024] = "";
        int rc = run(NULL, 2, err, sizeof err);
        fprintf(stderr, "window_ckpt: the first run ended without the failure: %d %s\n", rc, err);
        _exit(rc == 0 ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 137,
              "the first run did not fail in the middle (status %#x)", status);
    int ckpts = completed();
    cr_assert_geq(ckpts, 1, "no checkpoint kept after the failure");
    FILE *lf = fopen(ledger, "r");
    long before = 0;
    char line[512];
    while (lf && fgets(line, sizeof line, lf))
        before++;
    if (lf)
        fclose(lf);

    char err[1024] = "", path[400];
    snprintf(path, sizeof path, "%s/%s", ckpt_dir, JOB);
    kp_restore *r = kp_restore_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    int64_t restored = kp_restore_id(r);
    cr_assert_eq(run(r, restore_p, err, sizeof err), 0, "the restored run failed: %s", err);
    kp_restore_free(r);

    /* every result exact; every window written */
    static unsigned char seen[K][T / W];
    long lines = 0, wrong = 0, windows = 0;
    FILE *f = fopen(ledger, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f)) {
        lines++;
        int k = atoi(line + 1);
        const char *doc = strchr(line, '\t');
        cr_assert_not_null(doc, "bad line %s", line);
        int64_t start = field(doc, "start"), end = field(doc, "end"), sum = field(doc, "sum");
        cr_assert(k >= 0 && k < K && start >= 0 && end == start + W && end <= T && start % W == 0,
                  "not a window of the input: %s", line);
        int64_t want = (start + end - 1) * W / 2;
        if (sum != want && wrong++ < 5)
            fprintf(stderr, "window_ckpt: %.*s: sum %" PRId64 ", exact %" PRId64 "\n",
                    (int)strcspn(line, "\t"), line, sum, want);
        windows += !seen[k][start / W];
        seen[k][start / W] = 1;
    }
    fclose(f);
    printf("window_ckpt: %d keys x %d windows; %ld results written (%ld before the failure), "
           "restored from checkpoint %" PRId64 " (%d kept) at p=%d, %ld wrong\n",
           K, T / W, lines, before, restored, ckpts, restore_p, wrong);
    cr_assert_eq(wrong, 0, "%ld window results are not the exact sum", wrong);
    cr_assert_eq(windows, (long)K * (T / W), "%ld of %d windows written", windows, K * (T / W));
    cr_assert_gt(before, 0, "the failure came before any result: the restore proves little");
    cr_assert_lt(lines - before, (long)K * (T / W),
                 "the restored run wrote every window again: it did not start at the checkpoint");
    kp_test_rmtree(dir);
}

Test(window_ckpt, every_window_sum_is_exact_after_a_failure, .timeout = 300)
{
    fail_restore_check(2);
}

/* The same failure, restored at p=3: every new window subtask takes its key groups from both
 * old ones' RocksDB checkpoints. */
Test(window_ckpt, every_window_sum_is_exact_restored_at_another_parallelism, .timeout = 300)
{
    fail_restore_check(3);
}
