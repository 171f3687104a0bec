/* End to end through the engine (issue 10): a run with checkpoints every 50 ms is cancelled
 * once at least two checkpoints completed; a second run restores from the latest one and
 * finishes. With the documents of both runs put together — the later write of an id wins, as
 * in an index — the result equals an uninterrupted run's. The second run writes exactly the
 * input after the positions the checkpoint recorded (stateless job: its document ids are the
 * line numbers), so nothing is lost and, from the checkpoint on, nothing is doubled.
 *
 * Jobs: file source (4 partitions) at p=2 → map (id = line number) → sink at p=3 over a
 * rebalance, restored at p=2, 3 and 1; and the executor-split tests' keyed tumbling count,
 * whose window state is restored from the checkpoint, at p=2 and at p=3.
 *
 * A bounded run with checkpoints ends with a final checkpoint (FLIP-147, docs/checkpoints.md
 * "Bounded inputs"): its sources' positions are the end of the input, and a run restored
 * from it reads nothing and fires no window again. */
#include <sys/stat.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../runtime/checkpoint_store.h"
#include "../../runtime/connector.h"
#include "../../runtime/exec.h"
#include "../../runtime/graph.h"
#include "../../runtime/source_ckpt.h"
#include "connectors.h"

#include "../support/split_job.h"

#define NPART 4

/* ---- a sink that keeps the last document per id, optionally slowed down -------------------- */

typedef struct docmap {
    char **id, **doc;
    size_t n, cap;
} docmap;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static docmap written; /* every write, in order, of the current run */
static int slow;       /* the cancelled run: a 1 ms pause every `slow` documents */
static int slow_every = 200;

static int lw_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *e, size_t n)
{
    static long long count;
    pthread_mutex_lock(&lock);
    if (written.n == written.cap) {
        written.cap = written.cap ? 2 * written.cap : 4096;
        written.id = realloc(written.id, written.cap * sizeof(char *));
        written.doc = realloc(written.doc, written.cap * sizeof(char *));
        cr_assert(written.id && written.doc);
    }
    written.id[written.n] = strndup(id.ptr, id.len);
    written.doc[written.n++] = strndup(doc.ptr, doc.len);
    int pause = slow && ++count % slow_every == 0;
    pthread_mutex_unlock(&lock);
    if (pause)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    return 0;
}

static int lw_flush(kp_sink_writer *w, char *e, size_t n)
{
    return 0;
}

static void lw_close(kp_sink_writer *w)
{
    free(w);
}

static kp_sink_writer *lw_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    kp_sink_writer *w = calloc(1, sizeof *w);
    *w = (kp_sink_writer){.write = lw_write, .flush = lw_flush, .close = lw_close};
    return w;
}

static docmap take_written(void)
{
    docmap m = written;
    written = (docmap){0};
    return m;
}

static void free_map(docmap *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->id[i]);
        free(m->doc[i]);
    }
    free(m->id);
    free(m->doc);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The index after applying `a` then `b` (last write per id wins), as sorted "id\tdoc" lines. */
static char *index_of(const docmap *a, const docmap *b)
{
    size_t n = a->n + (b ? b->n : 0), k = 0;
    char **lines = calloc(n + 1, sizeof *lines);
    const docmap *parts[2] = {a, b};
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; parts[p] && i < parts[p]->n; i++) {
            char *l;
            cr_assert(asprintf(&l, "%s\t%08zu\t%s", parts[p]->id[i], k, parts[p]->doc[i]) > 0);
            lines[k++] = l; /* k: the write order, so the last write per id sorts last */
        }
    qsort(lines, n, sizeof *lines, cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(lines[i]) + 1;
    char *out = malloc(len), *o = out;
    for (size_t i = 0; i < n; i++) {
        size_t idlen = strcspn(lines[i], "\t");
        int last = i + 1 == n || strncmp(lines[i], lines[i + 1], idlen + 1) != 0;
        if (last) {
            const char *doc = strchr(lines[i] + idlen + 1, '\t') + 1;
            o += sprintf(o, "%.*s\t%s\n", (int)idlen, lines[i], doc);
        }
        free(lines[i]);
    }
    *o = 0;
    free(lines);
    return out;
}

/* ---- the stateless job ---------------------------------------------------------------------- */

static kp_rc decode_line(kp_event *ev, kp_bytes raw)
{
    /* "<line number> k<key>": the id is the first word */
    const char *sp = memchr(raw.ptr, ' ', raw.len);
    if (!sp)
        return KP_BAD_INPUT;
    kp_event_key(ev, (kp_bytes){raw.ptr, (size_t)(sp - raw.ptr)});
    kp_event_time(ev, 1000000);
    return KP_OK;
}

static kp_rc upper(kp_event *ev)
{
    char buf[64];
    size_t n = ev->value.len < sizeof buf ? ev->value.len : sizeof buf;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(ev->value.ptr[i] >= 'a' && ev->value.ptr[i] <= 'z' ? ev->value.ptr[i] - 32
                                                                           : ev->value.ptr[i]);
    kp_event_value(ev, (kp_bytes){buf, n});
    return KP_OK;
}

static int define_stateless(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_job_parallelism(job, 2);
    kp_stream *src = kp_source(job, "in", .decode = decode_line, .uid = "lines");
    kp_sink(kp_map(src, upper), "out", .parallelism = 3);
    return 0;
}

static char input[256];
static int64_t line_pos[1 << 20];
static int nlines;

static void write_lines(int n)
{
    snprintf(input, sizeof input, "/tmp/kappa-ckpt-restore-%d.txt", (int)getpid());
    FILE *f = fopen(input, "w");
    cr_assert(f);
    nlines = n;
    for (int i = 0; i < n; i++) {
        line_pos[i] = ftell(f);
        fprintf(f, "%d k%d\n", i, (int)((i * 7919LL) % 101));
    }
    fclose(f);
}

/* ---- runs ------------------------------------------------------------------------------------ */

static char ckpt_dir[256];
static volatile sig_atomic_t cancel;
static const char *job_name;

/* Completed checkpoints in storage (their _metadata.sha256 is in place). */
static int completed(void)
{
    int n = 0;
    char path[600];
    for (int id = 1; id < 10000; id++) {
        snprintf(path, sizeof path, "%s/%s/chk-%d/_metadata.sha256", ckpt_dir, job_name, id);
        n += access(path, F_OK) == 0;
    }
    return n;
}

/* Cancels the run once two checkpoints completed (retention keeps 100). */
static void *watch(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&cancel, __ATOMIC_RELAXED)) {
        if (completed() >= 2)
            __atomic_store_n(&cancel, 1, __ATOMIC_RELAXED);
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    return NULL;
}

static void register_connectors(void)
{
    static int done;
    static const kp_connector lw = {"lastwrite", NULL, lw_open};
    if (done++)
        return;
    kp_connectors_register_builtin();
    kp_connector_register(&lw);
}

enum { RUN_PLAIN, RUN_CANCELLED, RUN_CHECKPOINTED };

/* One run; RUN_CANCELLED: with checkpoints every 50 ms until two completed, then cancelled;
 * RUN_CHECKPOINTED: with checkpoints every 50 ms to its end; restore: from the latest
 * checkpoint. Returns the run's rc. */
static int run(kp_job *job, kp_binding *bind, int nbind, int mode, kp_restore *restore)
{
    register_connectors();
    int cancelled = mode == RUN_CANCELLED;
    kp_exec_config cfg = {
        .bindings = bind,
        .nbindings = nbind,
        .state_dir = ckpt_dir,
        .ckpt = {.interval_ms = mode != RUN_PLAIN ? 50 : 0, .retain = 100, .dir = ckpt_dir},
        .cancel = &cancel,
        .restore = restore};
    pthread_t w;
    cancel = 0;
    slow = cancelled;
    if (cancelled)
        cr_assert_eq(pthread_create(&w, NULL, watch, NULL), 0);
    char err[1024] = "";
    kp_exec_stats st;
    int rc = kp_exec_run(job, &cfg, &st, err, sizeof err);
    if (cancelled) {
        __atomic_store_n(&cancel, 1, __ATOMIC_RELAXED);
        pthread_join(w, NULL);
        cr_assert(rc != 0 ? strstr(err, "cancelled") != NULL : 1, "%s", err);
    } else {
        cr_assert_eq(rc, 0, "%s", err);
    }
    return rc;
}

static void fresh_dir(const char *name)
{
    job_name = name;
    snprintf(ckpt_dir, sizeof ckpt_dir, "/tmp/kappa-ckpt-restore-%d", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", ckpt_dir, ckpt_dir);
    cr_assert_eq(system(cmd), 0);
}

/* Cancelled run, restored run, reference run: the union equals the reference. Returns the
 * restored checkpoint's source positions in *pos (stateless job: uid "lines"). */
static void cancel_restore_compare(kp_job *(*make)(int p), int restore_p, kp_binding *bind,
                                   int nbind, const char *uid, docmap *restored_run,
                                   kp_src_pos **pos, int *npos)
{
    kp_job *job = make(0);
    run(job, bind, nbind, RUN_PLAIN, NULL);
    docmap ref = take_written();
    char *want = index_of(&ref, NULL);

    run(job, bind, nbind, RUN_CANCELLED, NULL);
    docmap first = take_written();
    cr_assert_geq(completed(), 2, "the run ended before two checkpoints completed");

    char err[1024], path[600];
    snprintf(path, sizeof path, "%s/%s", ckpt_dir, job_name);
    kp_restore *r = kp_restore_open(path, err, sizeof err);
    cr_assert(r, "%s: %s", path, err);
    cr_assert_eq(kp_src_ckpt_read(r, uid, pos, npos, err, sizeof err), 0, "%s", err);
    kp_job *job2 = make(restore_p); /* restored at another parallelism, or the same */
    run(job2, bind, nbind, RUN_PLAIN, r);
    kp_job_free(job2);
    *restored_run = take_written();
    char *got = index_of(&first, restored_run);
    cr_assert_str_eq(got, want, "the union of the two runs differs from the uninterrupted run");
    printf("ckpt_restore %s: %zu documents, %zu before the cancel, %zu after the restore from "
           "checkpoint %lld\n",
           job_name, ref.n, first.n, restored_run->n, (long long)kp_restore_id(r));
    kp_restore_free(r);
    free(got);
    free(want);
    free_map(&first);
    free_map(&ref);
    kp_job_free(job);
}

/* The job at its own parallelism (p = 0) or overridden as -p does. */
static kp_job *stateless_job(int p)
{
    kp_job *job = kp_job_new("restore-stateless");
    job->parallelism_override = p;
    char err[512] = "";
    cr_assert_eq(kp_job_define(job, define_stateless, err, sizeof err), 0, "%s", err);
    return job;
}

static void stateless(int restore_p)
{
    write_lines(300000);
    fresh_dir("restore-stateless");
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s?partitions=%d", input, NPART);
    kp_binding bind[] = {{.name = "in", .uri = uri}, {.name = "out", .uri = "lastwrite:"}};
    docmap second;
    kp_src_pos *pos;
    int npos;
    cancel_restore_compare(stateless_job, restore_p, bind, 2, "lines", &second, &pos, &npos);
    /* the restored run wrote exactly the lines after the recorded positions, once each */
    cr_assert_eq(npos, NPART);
    int64_t at[NPART];
    for (int i = 0; i < npos; i++)
        at[pos[i].partition] = pos[i].offset;
    size_t after = 0;
    for (int i = 0; i < nlines; i++)
        after += line_pos[i] >= at[i % NPART];
    cr_assert_eq(second.n, after,
                 "restored run wrote %zu documents, %zu lines follow the "
                 "checkpoint",
                 second.n, after);
    cr_assert(after > 0 && after < (size_t)nlines, "the checkpoint is at an end: %zu", after);
    free(pos);
    free_map(&second);
    unlink(input);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", ckpt_dir);
    cr_assert_eq(system(cmd), 0);
}

Test(ckpt_restore, stateless_job_resumes_exactly_at_the_checkpoint, .timeout = 300)
{
    stateless(0);
}

/* Positions are per partition: sources restored at p=3 (and p=1) take the partitions they
 * own now, whoever recorded them. */
Test(ckpt_restore, restore_at_another_parallelism, .timeout = 300)
{
    stateless(3);
    stateless(1);
}

static kp_job *window_job(int p)
{
    job_parallelism = p ? p : 2;
    sink_parallelism = 3;
    return new_job();
}

static void windows(int restore_p)
{
    const char *in = write_input(7, 250000);
    slow_every = 10; /* a window result per key and second: fewer documents than records */
    fresh_dir("split-job");
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s?partitions=%d", in, NPART);
    /* late records: ids are keys, so which one is last per id depends on the interleaving */
    kp_binding bind[] = {{.name = "in", .uri = uri},
                         {.name = "out", .uri = "lastwrite:"},
                         {.name = "late", .uri = "file:/dev/null"}};
    docmap second;
    kp_src_pos *pos;
    int npos;
    cancel_restore_compare(window_job, restore_p, bind, 3, "in", &second, &pos, &npos);
    free(pos);
    free_map(&second);
}

Test(ckpt_restore, window_state_is_restored, .timeout = 300)
{
    windows(0);
}

/* Key groups redistribute: the windows restored at p=3 take their groups from both old
 * subtasks. */
Test(ckpt_restore, window_state_is_restored_at_another_parallelism, .timeout = 300)
{
    windows(3);
}

/* The last checkpoint of a bounded run is taken after its sources ended: every partition's
 * position is the end of the file, and a run restored from it writes nothing — no record is
 * read again, no window fires twice. The checkpointed run's results equal a plain run's. */
static void final_checkpoint(int nparts)
{
    const char *in = write_input(7, 100000);
    fresh_dir("split-job");
    char uri[300], path[600], err[1024];
    snprintf(uri, sizeof uri, "file:%s?partitions=%d", in, nparts);
    kp_binding bind[] = {{.name = "in", .uri = uri},
                         {.name = "out", .uri = "lastwrite:"},
                         {.name = "late", .uri = "file:/dev/null"}};
    kp_job *job = window_job(0);
    run(job, bind, 3, RUN_PLAIN, NULL);
    docmap ref = take_written();
    run(job, bind, 3, RUN_CHECKPOINTED, NULL);
    docmap ckpted = take_written();
    char *want = index_of(&ref, NULL), *got = index_of(&ckpted, NULL);
    cr_assert_str_eq(got, want, "a run with checkpoints wrote other results");
    int ncompleted = completed();
    cr_assert_geq(ncompleted, 1, "no checkpoint completed");

    snprintf(path, sizeof path, "%s/%s", ckpt_dir, job_name);
    kp_restore *r = kp_restore_open(path, err, sizeof err);
    cr_assert(r, "%s: %s", path, err);
    kp_src_pos *pos;
    int npos;
    cr_assert_eq(kp_src_ckpt_read(r, "source:in", &pos, &npos, err, sizeof err), 0, "%s", err);
    struct stat sb;
    cr_assert_eq(stat(in, &sb), 0);
    cr_assert_eq(npos, nparts);
    for (int i = 0; i < npos; i++)
        cr_assert_eq(pos[i].offset, (int64_t)sb.st_size,
                     "checkpoint %lld: partition %d at %lld, the input ends at %lld",
                     (long long)kp_restore_id(r), pos[i].partition, (long long)pos[i].offset,
                     (long long)sb.st_size);
    run(job, bind, 3, RUN_CHECKPOINTED, r);
    docmap again = take_written();
    cr_assert_eq(again.n, 0, "the run restored from the final checkpoint wrote %zu documents",
                 again.n);
    printf("ckpt_restore final (%d partitions): %zu documents; the last of %d checkpoints (%lld) "
           "at the end of the input\n",
           nparts, ckpted.n, ncompleted, (long long)kp_restore_id(r));
    kp_restore_free(r);
    free(pos);
    free(got);
    free(want);
    free_map(&again);
    free_map(&ckpted);
    free_map(&ref);
    kp_job_free(job);
    unlink(in);
    snprintf(path, sizeof path, "rm -rf %s", ckpt_dir);
    cr_assert_eq(system(path), 0);
}

Test(ckpt_restore, a_bounded_run_ends_with_a_final_checkpoint, .timeout = 300)
{
    final_checkpoint(NPART);
}

/* One partition at p=2: the second source subtask owns none, is at its end from the start and
 * must take part in every checkpoint (and the final one) while the first still reads. */
Test(ckpt_restore, a_source_subtask_without_input_waits_for_the_final_checkpoint, .timeout = 300)
{
    final_checkpoint(1);
}
