/* What a checkpoint barrier costs a keyed window operator (issue 10; docs/state.md,
 * "Checkpoints and restore"), and what restoring it costs.
 *
 * One tumbling count window subtask (p=1, default 256 MiB cache: nothing spills) gets one
 * record for each of N keys, all in one pane; then:
 *   barrier 1   the whole-cache flush (every entry dirty), then the rest of the barrier
 *               (RocksDB checkpoint into a local directory, the snapshot entry, the blob);
 *   records     another record for each key: the flushed entries stayed cached (clean), so
 *               this costs what the first pass cost (no read-back);
 *   barriers    after every key changed again (all dirty), after 10 % of them changed (only
 *               they are written), and with nothing changed;
 *   upload      the asynchronous part: the checkpoint store copies the files (kp_ckpt_store_upload);
 *   restore     a new subtask from the committed checkpoint, same key groups (materialise) and
 *               at p=2 (subtask 0: a rescaling copy of half the key groups).
 * Bytes: the files of the local checkpoint directory; "new" = files not in the previous one.
 *
 * Sessions (one session per key) and process functions (a count and one pending timer per key)
 * the same way; their flush is part of their barrier, so it is in the checkpoint column.
 *
 *     barrier-bench [window|session|process] [keys ...]      # default: window 100000 1000000 */
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "checkpoint_store.h"
#include "engine.h"
#include "graph.h"
#include "op_window.h"
#include "ops.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    (void)ev;
    (void)raw;
    return KP_OK;
}

enum kind { WINDOW, SESSION, PROCESS };
static enum kind kind;
static const char *const kind_names[] = {"tumbling window", "session window", "process function"};

/* Process functions: a count in value state and one event-time timer per key. */
static kp_rc on_event(kp_ctx *ctx, const kp_event *ev)
{
    bool exists;
    int64_t *n = kp_ctx_value(ctx, &exists);
    if (!exists)
        kp_ctx_timer_event(ctx, kp_event_get_time(ev) + 3600000);
    ++*n;
    return KP_OK;
}

static int define_job(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_stream *keyed = kp_key_by(kp_source(job, "in", .decode = decode));
    if (kind == PROCESS)
        kp_sink(
            kp_process(keyed, .on_event = on_event, .value_size = sizeof(int64_t), .uid = "proc"),
            "out");
    else
        kp_sink(
            kp_count(kp_window(keyed, kind == WINDOW ? kp_tumbling(3600000) : kp_session(3600000),
                               .uid = "win")),
            "out");
    return 0;
}

static int drop_record(kp_op *op, kp_event *ev)
{
    (void)op;
    (void)ev;
    return 0;
}

static int drop_wm(kp_op *op, kp_time wm)
{
    (void)op;
    (void)wm;
    return 0;
}

static int drop_op(kp_op *op)
{
    (void)op;
    return 0;
}

static void drop_destroy(kp_op *op)
{
    (void)op;
}

static const kp_op_vt drop_vt = {.record = drop_record,
                                 .watermark = drop_wm,
                                 .idle = drop_op,
                                 .finish = drop_op,
                                 .destroy = drop_destroy};
static kp_op sink = {.vt = &drop_vt};

static char failure[1024];
static atomic_int stopped;

static void on_fail(void *ctx, const kp_subtask *st, const char *message)
{
    (void)ctx;
    (void)st;
    snprintf(failure, sizeof failure, "%s", message);
    atomic_store(&stopped, 1);
}

static const kp_subtask_host host = {on_fail, NULL, &stopped};
static kp_metrics metrics;

static void die(const char *what)
{
    fprintf(stderr, "barrier-bench: %s: %s\n", what, failure);
    exit(1);
}

/* Feeds one record for each key in [0, n) with step `step` (1 = every key). */
static double feed(kp_op *op, unsigned n, unsigned step, unsigned salt)
{
    kp_buf kb = {0}, vb = {0};
    char key[24];
    double t0 = cpu_ms();
    for (unsigned i = salt % step; i < n; i += step) {
        int len = snprintf(key, sizeof key, "key-%u", i);
        kp_event ev = {.key = {key, (size_t)len},
                       .value = {"", 0},
                       .ts = 1000 + i % 1000,
                       .cwm = KP_TIME_MIN,
                       .key_buf = &kb,
                       .val_buf = &vb};
        if (op->vt->record(op, &ev) != 0)
            die("record");
    }
    kp_buf_free(&kb);
    kp_buf_free(&vb);
    return cpu_ms() - t0;
}

/* Bytes of the files in dir; with `prev` (names of an earlier directory, NUL-separated) also
 * the bytes of files not named there. Fills `names` with this directory's names. */
static void dir_bytes(const char *dir, const char *prev, char *names, size_t cap,
                      unsigned long long *all, unsigned long long *fresh)
{
    *all = *fresh = 0;
    size_t used = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[2048];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        *all += (unsigned long long)sb.st_size;
        int seen = 0;
        for (const char *p = prev; p && *p; p += strlen(p) + 1)
            seen |= strcmp(p, e->d_name) == 0;
        if (!seen)
            *fresh += (unsigned long long)sb.st_size;
        size_t l = strlen(e->d_name) + 1;
        if (used + l + 1 < cap) {
            memcpy(names + used, e->d_name, l);
            used += l;
        }
    }
    names[used] = 0;
    closedir(d);
}

static kp_op *new_op(kp_subtask *st, const kp_job *job, const kp_node *node, int index, int p,
                     const char *state_dir, const kp_restore *r)
{
    *st = (kp_subtask){.host = &host,
                       .job = job,
                       .index = index,
                       .parallelism = p,
                       .metrics = &metrics,
                       .state_dir = state_dir,
                       .restore = r};
    snprintf(st->name, sizeof st->name, "window (%d/%d)", index + 1, p);
    kp_op *op = kind == PROCESS   ? kp_op_process_new(st, node)
                : kind == SESSION ? kp_op_session_new(st, node)
                                  : kp_op_window_new(st, node);
    if (!op)
        die("create");
    op->out[0] = &sink;
    op->nout = 1;
    return op;
}

/* One barrier: flush timed alone, then the rest; prints one line; returns the ack. */
static char *barrier(kp_op *op, kp_ckpt_store *store, int64_t id, const char *label, char *names,
                     size_t cap, char *prev)
{
    kp_snapshot *snap = kp_snapshot_new(id, 1, 0, 1);
    double w0 = now_ms(), c0 = cpu_ms();
    if (kind == WINDOW && kp_op_window_flush(op) != 0) /* the others: inside their barrier */
        die("flush");
    double w1 = now_ms(), c1 = cpu_ms();
    if (op->vt->barrier(op, snap) != 0)
        die("barrier");
    double w2 = now_ms(), c2 = cpu_ms();
    unsigned long long all = 0, fresh = 0;
    for (size_t i = 0; i < kp_snapshot_count(snap); i++) {
        const kp_snapshot_entry *e = kp_snapshot_entry_at(snap, i);
        if (e->is_dir)
            dir_bytes(e->dir, prev, names, cap, &all, &fresh);
    }
    char err[1024];
    double w3 = now_ms();
    char *ack = kp_ckpt_store_upload(store, snap, err, sizeof err);
    double w4 = now_ms();
    if (!ack) {
        snprintf(failure, sizeof failure, "%s", err);
        die("upload");
    }
    kp_snapshot_free(snap);
    printf("  %-9s flush %8.1f ms (cpu %8.1f)  checkpoint %7.1f ms (cpu %7.1f)  files %6.1f MB "
           "(new %6.1f MB)  upload %7.1f ms\n",
           label, w1 - w0, c1 - c0, w2 - w1, c2 - c1, (double)all / 1e6, (double)fresh / 1e6,
           w4 - w3);
    return ack;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void run(unsigned n)
{
    char root[] = "/tmp/kp-barrier-bench-XXXXXX", state[600], err[1024], meta[1024];
    if (!mkdtemp(root))
        die("mkdtemp");
    snprintf(state, sizeof state, "%s/state", root);
    kp_job *job = kp_job_new("bench");
    if (kp_job_define(job, define_job, err, sizeof err) != 0)
        die(err);
    const kp_node *node = NULL;
    for (int i = 0; i < job->nnodes; i++)
        if (job->nodes[i]->kind == KP_NODE_WINDOW || job->nodes[i]->kind == KP_NODE_PROCESS)
            node = job->nodes[i];
    kp_ckpt_store *store = kp_ckpt_store_open(root, "bench", err, sizeof err);
    if (!store)
        die(err);
    printf("%s, %u keys%s:\n", kind_names[kind], n,
           kind == WINDOW ? ", one pane" : ", flush included in the checkpoint column");
    kp_subtask st;
    kp_op *op = new_op(&st, job, node, 0, 1, state, NULL);
    double first = feed(op, n, 1, 0);
    static char names[2][1 << 16];
    char *ack = barrier(op, store, 1, "barrier 1", names[0], sizeof names[0], NULL);
    free(ack);
    double again = feed(op, n, 1, 0);
    printf("  records   first pass %.0f ns/record, after the barrier %.0f ns/record (cpu)\n",
           first * 1e6 / n, again * 1e6 / n);
    free(barrier(op, store, 2, "all dirty", names[1], sizeof names[1], names[0]));
    feed(op, n, 10, 3);
    free(barrier(op, store, 3, "10% dirty", names[0], sizeof names[0], names[1]));
    ack = barrier(op, store, 4, "unchanged", names[1], sizeof names[1], names[0]);
    const char *acks[1] = {ack};
    if (kp_ckpt_store_commit(store, 4, 0, KP_CKPT_EXACTLY_ONCE, acks, 1, meta, sizeof meta, err,
                             sizeof err) != 0)
        die(err);
    free(ack);
    op->vt->destroy(op);
    kp_restore *r = kp_restore_open(meta, err, sizeof err);
    if (!r)
        die(err);
    for (int p = 1; p <= 2; p++) {
        char dir[700];
        snprintf(dir, sizeof dir, "%s/restore-%d", root, p);
        double w0 = now_ms(), c0 = cpu_ms();
        op = new_op(&st, job, node, 0, p, dir, r);
        double w1 = now_ms(), c1 = cpu_ms();
        printf("  restore   p=%d subtask 0: %8.1f ms (cpu %8.1f)%s\n", p, w1 - w0, c1 - c0,
               p == 1 ? "  (materialise)" : "  (half the key groups copied)");
        op->vt->destroy(op);
    }
    kp_restore_free(r);
    kp_ckpt_store_free(store);
    kp_job_free(job);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    kp_host_api();
    int a = 1;
    if (a < argc && !strcmp(argv[a], "session"))
        kind = SESSION, a++;
    else if (a < argc && !strcmp(argv[a], "process"))
        kind = PROCESS, a++;
    else if (a < argc && !strcmp(argv[a], "window"))
        a++;
    if (a == argc) {
        run(100000);
        run(1000000);
    }
    for (; a < argc; a++)
        run((unsigned)strtoul(argv[a], NULL, 10));
    return 0;
}
