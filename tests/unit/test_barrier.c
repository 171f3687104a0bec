/* Checkpoint barriers through a job (issue 10): sources record their positions and send a
 * barrier, exchanges pass it on every channel, consumers align their inputs, sinks prepare
 * (flush) at the barrier, the local coordinator completes checkpoints into storage.
 *
 * The job: a file source (4 partitions, p=2) → key_by → map → sink at p=3, so every sink
 * subtask has two inputs to align. The sink's prepare(id) records how many documents the
 * writer had been given by then. exactly_once means: for every completed checkpoint, the
 * documents all sinks had at its barrier are exactly the input lines before the source
 * positions it recorded (no record after a barrier slipped into the snapshot, none before it
 * was missing) — checked under the deterministic scheduler for many seeds and threaded with
 * checkpoints every few milliseconds. The output with checkpoints on equals the output with
 * them off — also for a keyed tumbling count with a late side output (the executor-split tests'
 * job), whose operators flush their state at every barrier. A seed is printed with every
 * failure: KAPPA_TEST_SEED=<n> reruns it. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../runtime/checkpoint_store.h"
#include "../../runtime/connector.h"
#include "../../runtime/exec.h"
#include "../../runtime/exec_control.h"
#include "../../runtime/graph.h"
#include "../../runtime/rng.h"
#include "../../runtime/source_ckpt.h"
#include "connectors.h"

#include "../support/split_job.h"

#define NPART 4
#define MAXCK 4096

/* ---- a counting sink: documents, and how many each writer had at each prepare ------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long long prepared[MAXCK]; /* checkpoint id -> documents written before its barriers */
static int prepares[MAXCK];       /* how many sink subtasks prepared it */
static int commits[MAXCK];        /* how many sink subtasks committed it */
static int slow_sink;             /* 2 ms pause every 1000 documents per writer */
static char **docs;
static size_t ndocs, capdocs;

typedef struct count_writer {
    kp_sink_writer w;
    long long written;
} count_writer;

static int cw_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *e, size_t n)
{
    char *line = malloc(id.len + doc.len + 2);
    cr_assert(line);
    snprintf(line, id.len + doc.len + 2, "%.*s\t%.*s", (int)id.len, id.ptr, (int)doc.len, doc.ptr);
    pthread_mutex_lock(&lock);
    if (ndocs == capdocs) {
        capdocs = capdocs ? 2 * capdocs : 4096;
        docs = realloc(docs, capdocs * sizeof *docs);
        cr_assert(docs);
    }
    docs[ndocs++] = line;
    pthread_mutex_unlock(&lock);
    if (++((count_writer *)w)->written % 1000 == 0 && slow_sink)
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    return 0;
}

static int cw_flush(kp_sink_writer *w, char *e, size_t n)
{
    return 0;
}

static int cw_prepare(kp_sink_writer *w, int64_t id, char *e, size_t n)
{
    cr_assert(id > 0 && id < MAXCK);
    pthread_mutex_lock(&lock);
    prepared[id] += ((count_writer *)w)->written;
    prepares[id]++;
    pthread_mutex_unlock(&lock);
    return 0;
}

static int cw_commit(kp_sink_writer *w, int64_t id, char *e, size_t n)
{
    cr_assert(id > 0 && id < MAXCK);
    pthread_mutex_lock(&lock);
    commits[id]++;
    pthread_mutex_unlock(&lock);
    return 0;
}

static void cw_close(kp_sink_writer *w)
{
    free(w);
}

static kp_sink_writer *cw_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    count_writer *c = calloc(1, sizeof *c);
    c->w = (kp_sink_writer){.write = cw_write,
                            .flush = cw_flush,
                            .close = cw_close,
                            .prepare = cw_prepare,
                            .commit = cw_commit};
    return &c->w;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The documents of the last run, sorted, as one string; the collector starts empty. */
static char *take_docs(void)
{
    qsort(docs, ndocs, sizeof *docs, cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < ndocs; i++)
        len += strlen(docs[i]) + 1;
    char *all = malloc(len), *p = all;
    for (size_t i = 0; i < ndocs; i++) {
        p += sprintf(p, "%s\n", docs[i]);
        free(docs[i]);
    }
    *p = 0;
    ndocs = 0;
    memset(prepared, 0, sizeof prepared);
    memset(prepares, 0, sizeof prepares);
    memset(commits, 0, sizeof commits);
    return all;
}

/* ---- the job and its input ------------------------------------------------------------------ */

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    /* "k<key> <n>": the key is the first word */
    const char *sp = memchr(raw.ptr, ' ', raw.len);
    if (!sp)
        return KP_BAD_INPUT;
    kp_event_key(ev, (kp_bytes){raw.ptr, (size_t)(sp - raw.ptr)});
    kp_event_time(ev, 1000000 + (kp_time)raw.len);
    return KP_OK;
}

static kp_rc ident(kp_event *ev)
{
    return KP_OK;
}

static int define(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_job_parallelism(job, 2);
    kp_stream *src = kp_source(job, "in", .decode = decode, .uid = "the-source");
    kp_sink(kp_map(kp_key_by(src), ident), "out", .parallelism = 3);
    return 0;
}

static kp_job *barrier_job(void)
{
    kp_job *job = kp_job_new("barrier-job");
    char err[512] = "";
    cr_assert(job);
    cr_assert_eq(kp_job_define(job, define, err, sizeof err), 0, "define: %s", err);
    return job;
}

static char input_path[256];
static int64_t line_pos[1 << 20];
static int nlines;

static void write_lines(int n)
{
    snprintf(input_path, sizeof input_path, "/tmp/kappa-barrier-%d.txt", (int)getpid());
    FILE *f = fopen(input_path, "w");
    cr_assert(f);
    nlines = n;
    for (int i = 0; i < n; i++) {
        line_pos[i] = ftell(f);
        fprintf(f, "k%d %d\n", (int)((i * 7919LL) % 97), i);
    }
    fclose(f);
}

/* ---- running ---------------------------------------------------------------------------------- */

static void register_connectors(void)
{
    static int done;
    static const kp_connector cw = {"count", NULL, cw_open};
    static const kp_connector col = {"collect", NULL, collect_open};
    if (done++)
        return;
    kp_connectors_register_builtin();
    kp_connector_register(&cw);
    kp_connector_register(&col);
}

static char ckpt_dir[256];

/* One run; returns its seconds. */
static double run(uint64_t seed, kp_time interval, kp_ckpt_mode mode)
{
    register_connectors();
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s?partitions=%d", input_path, NPART);
    kp_binding bind[2] = {{.name = "in", .uri = uri}, {.name = "out", .uri = "count:"}};
    kp_exec_config cfg = {.bindings = bind,
                          .nbindings = 2,
                          .state_dir = "/tmp",
                          .step_seed = seed,
                          .watermark_every = 64,
                          .ckpt = {.interval_ms = interval,
                                   .mode = mode,
                                   .retain = 1000,
                                   .max_concurrent = 3,
                                   .dir = ckpt_dir}};
    kp_job *job = barrier_job();
    char err[1024];
    kp_exec_stats st;
    int rc = kp_exec_run(job, &cfg, &st, err, sizeof err);
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": %s", seed, err);
    kp_job_free(job);
    return st.seconds;
}

/* Lines of the input before the positions checkpoint `meta` recorded. */
static long long lines_before(const char *meta)
{
    char err[512];
    kp_restore *r = kp_restore_open(meta, err, sizeof err);
    cr_assert(r, "%s: %s", meta, err);
    kp_src_pos *pos;
    int n;
    cr_assert_eq(kp_src_ckpt_read(r, "the-source", &pos, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, NPART, "%s: %d positions", meta, n);
    int64_t at[NPART];
    for (int i = 0; i < n; i++)
        at[pos[i].partition] = pos[i].offset;
    long long c = 0;
    for (int i = 0; i < nlines; i++)
        c += line_pos[i] < at[i % NPART];
    free(pos);
    kp_restore_free(r);
    return c;
}

/* Every completed checkpoint in storage: the sinks had exactly the lines before its source
 * positions (exactly_once), or at least those (at_least_once). Returns how many. */
static int check_checkpoints(kp_ckpt_mode mode, uint64_t seed)
{
    int found = 0;
    for (int id = 1; id < MAXCK; id++) {
        char meta[600];
        snprintf(meta, sizeof meta, "%s/barrier-job/chk-%d/_metadata.sha256", ckpt_dir, id);
        if (access(meta, F_OK) != 0)
            continue;
        meta[strlen(meta) - 7] = 0; /* _metadata */
        found++;
        cr_assert_eq(prepares[id], 3, "seed %" PRIu64 ": checkpoint %d prepared by %d sinks", seed,
                     id, prepares[id]);
        long long want = lines_before(meta);
        if (mode == KP_CKPT_EXACTLY_ONCE)
            cr_assert_eq(prepared[id], want,
                         "seed %" PRIu64 ": checkpoint %d: sinks had %lld documents at the "
                         "barrier, the sources' positions say %lld",
                         seed, id, prepared[id], want);
        else
            cr_assert_geq(prepared[id], want, "seed %" PRIu64 ": checkpoint %d", seed, id);
    }
    return found;
}

static void fresh_dir(void)
{
    snprintf(ckpt_dir, sizeof ckpt_dir, "/tmp/kappa-barrier-ck-%d", (int)getpid());
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", ckpt_dir);
    cr_assert_eq(system(cmd), 0);
}

static uint64_t seeds[] = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 0};

static void stepped(kp_ckpt_mode mode)
{
    write_lines(40000);
    run(7, 0, mode);
    char *ref = take_docs();
    const char *env = getenv("KAPPA_TEST_SEED");
    uint64_t fixed[] = {env ? strtoull(env, NULL, 10) : 0, 0};
    int total = 0;
    for (uint64_t *s = env ? fixed : seeds; *s; s++) {
        fresh_dir();
        run(*s, 1, mode);
        total += check_checkpoints(mode, *s);
        char *got = take_docs();
        cr_assert_str_eq(got, ref, "seed %" PRIu64 ": output differs with checkpoints on", *s);
        free(got);
    }
    cr_assert_gt(total, 0, "no checkpoint completed");
    printf("barrier: %d checkpoints checked under the scheduler\n", total);
    free(ref);
    fresh_dir();
}

Test(barrier, stepped_exactly_once_at_the_barrier, .timeout = 240)
{
    stepped(KP_CKPT_EXACTLY_ONCE);
}

Test(barrier, stepped_at_least_once, .timeout = 240)
{
    stepped(KP_CKPT_AT_LEAST_ONCE);
}

static void threaded(kp_ckpt_mode mode)
{
    write_lines(400000);
    double off = run(0, 0, mode);
    char *ref = take_docs();
    fresh_dir();
    double on = run(0, 5, mode);
    int n = check_checkpoints(mode, 0);
    char *got = take_docs();
    cr_assert_gt(n, 0, "no checkpoint completed");
    cr_assert_str_eq(got, ref, "output differs with checkpoints on");
    printf("barrier: %d checkpoints checked (threaded, %s); 400k lines in %.3f s without "
           "checkpoints, %.3f s with one every 5 ms\n",
           n, mode == KP_CKPT_EXACTLY_ONCE ? "exactly_once" : "at_least_once", off, on);
    free(got);
    free(ref);
    fresh_dir();
}

Test(barrier, threaded_exactly_once_at_the_barrier, .timeout = 240)
{
    threaded(KP_CKPT_EXACTLY_ONCE);
}

Test(barrier, threaded_at_least_once, .timeout = 240)
{
    threaded(KP_CKPT_AT_LEAST_ONCE);
}

/* The windowed job under the scheduler: identical documents with checkpoints every
 * millisecond (window operators flush their caches and snapshot at each barrier). */
static doc_list run_windows(uint64_t seed, const char *input, kp_time interval)
{
    register_connectors();
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s?partitions=%d", input, NPART);
    kp_binding bind[3] = {{.name = "in", .uri = uri},
                          {.name = "out", .uri = "collect:out"},
                          {.name = "late", .uri = "collect:late"}};
    kp_exec_config cfg = {
        .bindings = bind,
        .nbindings = 3,
        .state_dir = ckpt_dir,
        .step_seed = seed,
        .watermark_every = 64,
        .ckpt = {.interval_ms = interval, .max_concurrent = 2, .retain = 1000, .dir = ckpt_dir}};
    job_parallelism = 2;
    sink_parallelism = 3;
    kp_job *job = new_job();
    char err[1024];
    kp_exec_stats st;
    cr_assert_eq(kp_exec_run(job, &cfg, &st, err, sizeof err), 0, "seed %" PRIu64 ": %s", seed,
                 err);
    kp_job_free(job);
    return take_sorted();
}

Test(barrier, stepped_windows_identical_with_checkpoints, .timeout = 240)
{
    fresh_dir();
    const char *input = write_input(11, 20000);
    doc_list ref = run_windows(3, input, 0);
    cr_assert_gt(ref.n, 0);
    int total = 0;
    for (uint64_t *s = seeds; *s; s++) {
        fresh_dir();
        doc_list got = run_windows(*s, input, 1);
        char path[400];
        for (int id = 1; id < 1000; id++) {
            snprintf(path, sizeof path, "%s/split-job/chk-%d/_metadata.sha256", ckpt_dir, id);
            total += access(path, F_OK) == 0;
        }
        cr_assert_eq(got.n, ref.n, "seed %" PRIu64 ": %zu documents, want %zu", *s, got.n, ref.n);
        for (size_t i = 0; i < ref.n; i++)
            cr_assert_str_eq(got.lines[i], ref.lines[i], "seed %" PRIu64, *s);
        free_list(&got);
    }
    cr_assert_gt(total, 0, "no checkpoint completed");
    printf("barrier: windows identical with %d checkpoints under the scheduler\n", total);
    free_list(&ref);
    unlink(input);
    fresh_dir();
}

/* ---- a taskmanager's run: triggers and completions from outside (kp_exec_control) ----- */

typedef struct acks {
    pthread_mutex_t lock;
    int n[MAXCK]; /* acknowledgements per checkpoint */
    int declined[MAXCK];
    char *first[MAXCK]; /* one acknowledgement's JSON */
    double align_max;   /* the longest alignment any subtask reported (ms) */
} acks;

static void on_ack(void *ctx, int64_t id, int task, int subtask, const char *json)
{
    acks *a = ctx;
    pthread_mutex_lock(&a->lock);
    a->n[id]++;
    const char *al = strstr(json, "\"align_ms\":");
    double ms = al ? strtod(al + 11, NULL) : 0;
    a->align_max = ms > a->align_max ? ms : a->align_max;
    if (!a->first[id])
        a->first[id] = strdup(json);
    pthread_mutex_unlock(&a->lock);
}

static void on_decline(void *ctx, int64_t id, int task, int subtask, const char *reason)
{
    acks *a = ctx;
    pthread_mutex_lock(&a->lock);
    a->declined[id]++;
    pthread_mutex_unlock(&a->lock);
}

typedef struct driver {
    kp_exec_control *c;
    acks *a;
    int stop; /* atomic */
    int triggered, completed, committed;
} driver;

/* The job's subtasks: source+key_by (2), map (2, behind the hash exchange), sink (3). */
#define NSUBTASKS 7

/* Triggers checkpoints 1, 2, ... one after the other; completes each once every subtask
 * acknowledged it (the jobmanager's part). */
static void *drive(void *arg)
{
    driver *d = arg;
    while (!__atomic_load_n(&d->stop, __ATOMIC_RELAXED) && d->triggered < 20) {
        int64_t id = ++d->triggered;
        cr_assert_eq(kp_exec_control_trigger(d->c, id, 0), 0);
        for (int i = 0; i < 2000 && !__atomic_load_n(&d->stop, __ATOMIC_RELAXED); i++) {
            pthread_mutex_lock(&d->a->lock);
            int n = d->a->n[id];
            pthread_mutex_unlock(&d->a->lock);
            if (n == NSUBTASKS) {
                cr_assert_eq(kp_exec_control_complete(d->c, id), 0);
                d->completed++;
                /* the sinks commit on their next tick (~100 ms) */
                int c = 0;
                for (int k = 0; k < 1000 && !__atomic_load_n(&d->stop, __ATOMIC_RELAXED) && c < 3;
                     k++) {
                    nanosleep(&(struct timespec){0, 1000000}, NULL);
                    pthread_mutex_lock(&lock);
                    c = commits[id];
                    pthread_mutex_unlock(&lock);
                }
                d->committed += c == 3;
                break;
            }
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
    }
    return NULL;
}

Test(barrier, controlled_run_acks_every_subtask_and_commits, .timeout = 240)
{
    write_lines(400000);
    fresh_dir();
    register_connectors();
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s?partitions=%d", input_path, NPART);
    kp_binding bind[2] = {{.name = "in", .uri = uri}, {.name = "out", .uri = "count:"}};
    static acks a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    kp_ckpt_hooks hooks = {on_ack, on_decline, &a};
    driver d = {.c = kp_exec_control_new(), .a = &a};
    cr_assert(d.c);
    kp_exec_config cfg = {.bindings = bind,
                          .nbindings = 2,
                          .state_dir = "/tmp",
                          .ckpt = {.dir = ckpt_dir},
                          .control = d.c,
                          .ckpt_hooks = &hooks};
    pthread_t t;
    slow_sink = 1;
    cr_assert_eq(pthread_create(&t, NULL, drive, &d), 0);
    kp_job *job = barrier_job();
    char err[1024];
    kp_exec_stats st;
    int rc = kp_exec_run(job, &cfg, &st, err, sizeof err);
    __atomic_store_n(&d.stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_gt(d.completed, 0, "no checkpoint was acknowledged by every subtask");
    for (int id = 1; id <= d.completed; id++) {
        cr_assert_eq(a.n[id], NSUBTASKS, "checkpoint %d: %d acknowledgements", id, a.n[id]);
        cr_assert_eq(a.declined[id], 0);
        cr_assert(strstr(a.first[id], "\"checkpoint\":"), "%s", a.first[id]);
        cr_assert_leq(commits[id], 3, "checkpoint %d committed %d times", id, commits[id]);
    }
    cr_assert_gt(d.committed, 0, "no completion reached the sinks");
    printf("barrier: %d checkpoints through kp_exec_control, every subtask acknowledged, %d "
           "committed by every sink; longest alignment %.1f ms (sinks slowed: backpressure)\n",
           d.completed, d.committed, a.align_max);
    for (int id = 0; id < MAXCK; id++)
        free(a.first[id]);
    kp_exec_control_free(d.c);
    kp_job_free(job);
    free(take_docs());
    fresh_dir();
}
