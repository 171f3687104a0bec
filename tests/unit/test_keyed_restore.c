/* Keyed operator state across checkpoints (issue 10): a window, session or process operator
 * snapshotted mid-stream and restored into fresh operators — at the same parallelism and at
 * others (2 -> 4 -> 1 key-group ranges) — emits, over the rest of the input, exactly the
 * documents an uninterrupted run emits after that point (same ids, same values); and a restore
 * from a checkpoint whose files are damaged or missing fails with a clear error.
 *
 * The operators are driven directly, without the executor: each record goes to the subtask
 * that owns its key group, each watermark to all of them (as a hash exchange does), and every
 * output document is collected. Snapshots go through the real checkpoint store (upload,
 * commit, kp_restore_open). Cases run with the default cache and with a tiny one, so restored
 * state is read back from RocksDB, spilled again and flushed again at the next barrier. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "checkpoint_store.h"
#include "engine.h"
#include "graph.h"
#include "keyed_state.h"
#include "key_spill.h"
#include "keygroup.h"
#include "ops.h"
#include "rng.h"

#define NREC     6000
#define NKEYS    250
#define OOO      40 /* watermark = the largest time so far - OOO */
#define WM_EVERY 50

/* ---- the job: one keyed operator of the kind under test ---------------------------------- */

enum kind { TUMBLING, SLIDING_COUNT, SLIDING_SUM, SESSION, PROCESS };
static enum kind kind;

static int64_t parse_int(kp_bytes v)
{
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++)
        n = n * 10 + (v.ptr[i] - '0');
    return n;
}

static int64_t value_of(const kp_event *ev)
{
    return parse_int(kp_event_get_value(ev));
}

typedef struct per_key {
    int64_t n, sum, first;
} per_key;

static kp_rc on_event(kp_ctx *ctx, const kp_event *ev)
{
    bool exists;
    per_key *pk = kp_ctx_value(ctx, &exists);
    if (!exists) {
        pk->first = kp_event_get_time(ev);
        kp_ctx_timer_event(ctx, pk->first + 100);
        /* a processing-time timer that fires only at the end (fire_processing_timers):
         * restored with the others */
        kp_ctx_timer_processing(ctx, KP_TIME_MAX - (kp_time)kp_event_get_value(ev).len);
    }
    pk->n++;
    pk->sum += value_of(ev);
    kp_bytes v = kp_event_get_value(ev);
    kp_ctx_list_add(ctx, v);
    int64_t c = 0;
    kp_bytes old;
    if (kp_ctx_map_get(ctx, v, &old))
        memcpy(&c, old.ptr, sizeof c);
    c++;
    kp_ctx_map_put(ctx, v, (kp_bytes){(const char *)&c, sizeof c});
    if (pk->n % 7 == 3) /* a timer registered and then deleted: never fires */
        kp_ctx_timer_event(ctx, pk->first + 1000);
    if (pk->n % 7 == 5)
        kp_timer_delete(ctx, pk->first + 1000, true);
    return KP_OK;
}

static kp_rc on_timer(kp_ctx *ctx, kp_time when, bool event_time)
{
    bool exists;
    per_key *pk = kp_ctx_value(ctx, &exists);
    kp_doc *doc = kp_ctx_emit(ctx);
    kp_str key = kp_ctx_key(ctx);
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), when);
    kp_doc_int(doc, "events", exists ? pk->n : -1);
    kp_doc_int(doc, "sum", exists ? pk->sum : -1);
    int64_t h = 0;
    for (size_t i = 0; i < kp_ctx_list_len(ctx); i++) {
        kp_bytes b = kp_ctx_list_get(ctx, i);
        for (size_t j = 0; j < b.len; j++)
            h = h * 31 + b.ptr[j];
    }
    kp_doc_int(doc, "list", h);
    kp_doc_int(doc, "distinct", (int64_t)kp_ctx_map_size(ctx));
    size_t cursor = 0;
    kp_bytes k, v;
    int64_t order = 0; /* the map's iteration order must survive spills and restores */
    while (kp_ctx_map_next(ctx, &cursor, &k, &v))
        order = order * 131 + parse_int(k);
    kp_doc_int(doc, "order", order);
    kp_ctx_emit_done(ctx, doc);
    kp_ctx_value_clear(ctx);
    kp_ctx_list_clear(ctx);
    kp_ctx_map_clear(ctx);
    (void)event_time;
    return KP_OK;
}

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    (void)ev;
    (void)raw;
    return KP_OK;
}

static int define_job(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_stream *in = kp_source(job, "in", .decode = decode);
    kp_stream *keyed = kp_key_by(in);
    switch (kind) {
    case TUMBLING:
        kp_sink(kp_count(kp_window(keyed, kp_tumbling(60), .uid = "win")), "out");
        break;
    case SLIDING_COUNT:
        kp_sink(kp_count(kp_window(keyed, kp_sliding(90, 30), .uid = "win")), "out");
        break;
    case SLIDING_SUM:
        kp_sink(kp_sum(kp_window(keyed, kp_sliding(90, 30), .uid = "win"), .value = value_of),
                "out");
        break;
    case SESSION:
        kp_sink(kp_count(kp_window(keyed, kp_session(25), .uid = "win")), "out");
        break;
    case PROCESS:
        kp_sink(kp_process(keyed, .on_event = on_event, .on_timer = on_timer,
                           .key_in_one_partition = true, .value_size = sizeof(per_key),
                           .uid = "proc"),
                "out");
        break;
    }
    return 0;
}

static kp_job *job;
static const kp_node *node; /* the operator under test */

static void make_job(enum kind k)
{
    kind = k;
    char err[512];
    job = kp_job_new("restore");
    cr_assert(job);
    cr_assert_eq(kp_job_define(job, define_job, err, sizeof err), 0, "%s", err);
    node = NULL;
    for (int i = 0; i < job->nnodes; i++)
        if (job->nodes[i]->kind == KP_NODE_WINDOW || job->nodes[i]->kind == KP_NODE_PROCESS)
            node = job->nodes[i];
    cr_assert(node);
}

/* ---- the input -------------------------------------------------------------------------- */

typedef struct rec {
    char key[16], val[8];
    kp_time ts;
} rec;

static rec recs[NREC];
static kp_time wm_at[NREC]; /* the watermark before record i (KP_TIME_MIN before the first) */

static void make_input(uint64_t seed)
{
    uint64_t rng = seed | 1;
    for (int i = 0; i < NREC; i++) {
        /* skewed keys; times rising with disorder below OOO, so no record is late */
        int k = (int)(kp_rng_next(&rng) % NKEYS);
        if (kp_rng_next(&rng) % 3 == 0)
            k %= 10;
        snprintf(recs[i].key, sizeof recs[i].key, "k%d", k);
        snprintf(recs[i].val, sizeof recs[i].val, "%d", (int)(kp_rng_next(&rng) % 9));
        recs[i].ts = (kp_time)i * 3 + (kp_time)(kp_rng_next(&rng) % (OOO / 2));
    }
    kp_time hi = KP_TIME_MIN, wm = KP_TIME_MIN;
    for (int i = 0; i < NREC; i++) {
        if (i > 0 && i % WM_EVERY == 0)
            wm = hi - OOO;
        wm_at[i] = wm;
        hi = recs[i].ts > hi ? recs[i].ts : hi;
    }
}

/* ---- collecting documents --------------------------------------------------------------- */

typedef struct doc_list {
    char **v;
    size_t n, cap;
} doc_list;

static doc_list got;

static int collect_record(kp_op *op, kp_event *ev)
{
    (void)op;
    char *line = malloc(ev->key.len + ev->value.len + 2);
    cr_assert(line);
    memcpy(line, ev->key.ptr, ev->key.len);
    line[ev->key.len] = '\t';
    memcpy(line + ev->key.len + 1, ev->value.ptr, ev->value.len);
    line[ev->key.len + 1 + ev->value.len] = 0;
    if (got.n == got.cap) {
        got.cap = got.cap ? 2 * got.cap : 1024;
        got.v = realloc(got.v, got.cap * sizeof *got.v);
        cr_assert(got.v);
    }
    got.v[got.n++] = line;
    return 0;
}

static int collect_wm(kp_op *op, kp_time wm)
{
    (void)op;
    (void)wm;
    return 0;
}

static int collect_op(kp_op *op)
{
    (void)op;
    return 0;
}

static void collect_destroy(kp_op *op)
{
    (void)op;
}

static const kp_op_vt collect_vt = {.record = collect_record,
                                    .watermark = collect_wm,
                                    .idle = collect_op,
                                    .finish = collect_op,
                                    .destroy = collect_destroy};
static kp_op collector = {.vt = &collect_vt};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void take_docs(doc_list *out)
{
    *out = got;
    got = (doc_list){0};
    qsort(out->v, out->n, sizeof *out->v, cmp_str);
}

static void free_docs(doc_list *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i]);
    free(d->v);
    *d = (doc_list){0};
}

/* ---- running operators ------------------------------------------------------------------ */

static char failure[2048];
static atomic_int stopped;

static void on_fail(void *ctx, const kp_subtask *st, const char *message)
{
    (void)ctx;
    (void)st;
    if (!failure[0])
        snprintf(failure, sizeof failure, "%s", message);
    atomic_store(&stopped, 1);
}

static const kp_subtask_host host = {on_fail, NULL, &stopped};
static kp_metrics metrics;
static char root[256]; /* the test's temporary directory */
static size_t cache_bytes;

typedef struct run {
    int p;
    kp_subtask st[8];
    kp_op *ops[8];
    char state_dir[300];
} run;

static kp_op *create(kp_subtask *st)
{
    if (node->kind == KP_NODE_PROCESS)
        return kp_op_process_new(st, node);
    return node->u.window.spec.kind == KP_WINDOW_SESSION ? kp_op_session_new(st, node)
                                                         : kp_op_window_new(st, node);
}

/* Starts p subtasks (attempt `attempt`: its own state dir); NULL restore = fresh. 0, or -1
 * with the failure in `failure`. */
static int start(run *r, int p, int attempt, const kp_restore *restore)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    snprintf(r->state_dir, sizeof r->state_dir, "%s/state/attempt-%d", root, attempt);
    failure[0] = 0;
    atomic_store(&stopped, 0);
    for (int i = 0; i < p; i++) {
        r->st[i] = (kp_subtask){.host = &host,
                                .job = job,
                                .index = i,
                                .parallelism = p,
                                .metrics = &metrics,
                                .state_dir = r->state_dir,
                                .state_cache_bytes = cache_bytes,
                                .restore = restore};
        snprintf(r->st[i].name, sizeof r->st[i].name, "op (%d/%d)", i + 1, p);
        r->ops[i] = create(&r->st[i]);
        if (!r->ops[i]) {
            for (int j = 0; j < i; j++)
                r->ops[j]->vt->destroy(r->ops[j]);
            return -1;
        }
        r->ops[i]->out[0] = &collector;
        r->ops[i]->nout = 1;
    }
    return 0;
}

/* Pending timers over all subtasks (process functions), else 0. */
static size_t pending_timers(run *r)
{
    size_t n = 0;
    for (int i = 0; i < r->p && node->kind == KP_NODE_PROCESS; i++) {
        kp_process_counts c;
        kp_op_process_counts(r->ops[i], &c);
        n += c.pending_timers;
    }
    return n;
}

static void stop(run *r)
{
    for (int i = 0; i < r->p; i++)
        r->ops[i]->vt->destroy(r->ops[i]);
}

/* Feeds records [from, to), with a watermark to every subtask every WM_EVERY records. */
static void feed(run *r, int from, int to)
{
    kp_buf kb = {0}, vb = {0};
    int maxp = job->max_parallelism;
    for (int i = from; i < to; i++) {
        if (i > 0 && i % WM_EVERY == 0)
            for (int s = 0; s < r->p; s++)
                cr_assert_eq(r->ops[s]->vt->watermark(r->ops[s], wm_at[i]), 0, "%s", failure);
        kp_event ev = {.key = {recs[i].key, strlen(recs[i].key)},
                       .value = {recs[i].val, strlen(recs[i].val)},
                       .ts = recs[i].ts,
                       .cwm = wm_at[i],
                       .key_buf = &kb,
                       .val_buf = &vb};
        int kg = kp_key_group(kp_event_hash(&ev), maxp);
        int s = kp_key_group_owner(kg, maxp, r->p);
        cr_assert_eq(r->ops[s]->vt->record(r->ops[s], &ev), 0, "%s", failure);
    }
    kp_buf_free(&kb);
    kp_buf_free(&vb);
}

/* Process functions: fires every pending processing-time timer (a tick at the end of time),
 * so that the documents show that each was restored exactly: its key, its time, once. */
static void fire_processing_timers(run *r)
{
    for (int s = 0; s < r->p && node->kind == KP_NODE_PROCESS; s++)
        cr_assert_eq(r->ops[s]->vt->tick(r->ops[s], KP_TIME_MAX), 0, "%s", failure);
}

static void finish(run *r)
{
    for (int s = 0; s < r->p; s++)
        cr_assert_eq(r->ops[s]->vt->finish(r->ops[s]), 0, "%s", failure);
}

/* Checkpoint `id` of every subtask into the store; the _metadata path into path. */
static void checkpoint(run *r, kp_ckpt_store *store, int64_t id, char *path, size_t pathlen)
{
    char err[1024];
    char *acks[8];
    for (int s = 0; s < r->p; s++) {
        kp_snapshot *snap = kp_snapshot_new(id, 1, s, r->p);
        cr_assert(snap);
        cr_assert_eq(r->ops[s]->vt->barrier(r->ops[s], snap), 0, "%s", failure);
        acks[s] = kp_ckpt_store_upload(store, snap, err, sizeof err);
        cr_assert(acks[s], "upload: %s", err);
        kp_snapshot_free(snap);
    }
    cr_assert_eq(kp_ckpt_store_commit(store, id, 0, KP_CKPT_EXACTLY_ONCE, (const char *const *)acks,
                                      r->p, path, pathlen, err, sizeof err),
                 0, "commit: %s", err);
    for (int s = 0; s < r->p; s++)
        free(acks[s]);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup_dir(void)
{
    snprintf(root, sizeof root, "/tmp/kp-keyed-restore-XXXXXX");
    cr_assert(mkdtemp(root));
}

static void remove_dir(void)
{
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The documents of an uninterrupted run at parallelism p. */
static void reference(doc_list *out, int p)
{
    run r;
    cr_assert_eq(start(&r, p, 0, NULL), 0, "%s", failure);
    feed(&r, 0, NREC);
    fire_processing_timers(&r);
    finish(&r);
    stop(&r);
    take_docs(out);
}

static void assert_same(const doc_list *want, const doc_list *have, const char *what)
{
    size_t n = want->n < have->n ? want->n : have->n;
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(have->v[i], want->v[i], "%s: document %zu of %zu differs", what, i,
                         want->n);
    cr_assert_eq(have->n, want->n, "%s: %zu documents, an uninterrupted run emits %zu", what,
                 have->n, want->n);
}

/* Runs the input through parallelisms ps[0..n), checkpointing and restoring at cuts[i]
 * between stage i and i + 1; the documents of all stages together must equal the reference
 * (lateness 0: every document is emitted once). */
static void staged(const int *ps, const int *cuts, int n, const doc_list *want)
{
    char err[1024], path[1024];
    kp_ckpt_store *store = kp_ckpt_store_open(root, "job", err, sizeof err);
    cr_assert(store, "%s", err);
    doc_list all = {0};
    kp_restore *restore = NULL;
    size_t pending = 0;
    for (int i = 0; i < n; i++) {
        run r;
        cr_assert_eq(start(&r, ps[i], i + 1, restore), 0, "stage %d: %s", i, failure);
        cr_assert_eq(pending_timers(&r), pending, "stage %d: %zu pending timers restored of %zu", i,
                     pending_timers(&r), pending);
        int from = i == 0 ? 0 : cuts[i - 1], to = i == n - 1 ? NREC : cuts[i];
        /* an earlier checkpoint of the stage, not restored from: the one restored from then
         * writes only what changed since (clean cached entries are not written again) */
        feed(&r, from, from + (to - from) / 2);
        checkpoint(&r, store, 100 + i, path, sizeof path);
        feed(&r, from + (to - from) / 2, to);
        if (i == n - 1) {
            fire_processing_timers(&r);
            finish(&r);
        } else {
            checkpoint(&r, store, i + 1, path, sizeof path);
            cr_assert_eq(atomic_load(&stopped), 0, "%s", failure);
            pending = pending_timers(&r);
        }
        stop(&r);
        kp_restore_free(restore);
        restore = NULL;
        if (i < n - 1) {
            restore = kp_restore_open(path, err, sizeof err);
            cr_assert(restore, "restore: %s", err);
        }
        doc_list part;
        take_docs(&part);
        for (size_t j = 0; j < part.n; j++) {
            if (all.n == all.cap) {
                all.cap = all.cap ? 2 * all.cap : 1024;
                all.v = realloc(all.v, all.cap * sizeof *all.v);
            }
            all.v[all.n++] = part.v[j];
        }
        free(part.v);
    }
    qsort(all.v, all.n, sizeof *all.v, cmp_str);
    char what[128];
    snprintf(what, sizeof what, "%d stages from p=%d, cache %zu", n, ps[0], cache_bytes);
    assert_same(want, &all, what);
    free_docs(&all);
    kp_ckpt_store_free(store);
}

static void check_kind(enum kind k)
{
    make_job(k);
    make_input(0x5eed + (uint64_t)k);
    size_t caches[2] = {0, 16 << 10};
    for (int c = 0; c < 2; c++) {
        cache_bytes = caches[c];
        setup_dir();
        doc_list want;
        reference(&want, 1);
        cr_assert_gt(want.n, 100);
        /* the same parallelism, and 2 -> 4 -> 1 */
        staged((const int[]){2, 2}, (const int[]){NREC / 2}, 2, &want);
        staged((const int[]){2, 4, 1}, (const int[]){NREC / 3 + 17, 2 * NREC / 3 + 5}, 3, &want);
        staged((const int[]){3, 1, 2, 2}, (const int[]){1001, 2002, 4003}, 4, &want);
        free_docs(&want);
        remove_dir();
    }
    kp_job_free(job);
}

Test(keyed_restore, tumbling_windows)
{
    check_kind(TUMBLING);
}

Test(keyed_restore, sliding_counts)
{
    check_kind(SLIDING_COUNT);
}

Test(keyed_restore, sliding_sums)
{
    check_kind(SLIDING_SUM);
}

Test(keyed_restore, session_windows)
{
    check_kind(SESSION);
}

Test(keyed_restore, process_functions)
{
    check_kind(PROCESS);
}

/* Sessions and process functions flush large caches as an ingested SST file: every flush
 * does here. */
Test(keyed_restore, sst_flushes)
{
    kp_key_spill_flush_sst_min(1);
    check_kind(SESSION);
    check_kind(PROCESS);
    kp_key_spill_flush_sst_min(50000);
}

/* Damages every file (or deletes them) under dir whose name contains `part`. */
static int damaged;
static const char *damage_part;
static int delete_files;

static int damage(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F || !strstr(path + ftw->base, damage_part))
        return 0;
    damaged++;
    if (delete_files)
        return unlink(path);
    FILE *f = fopen(path, "r+");
    cr_assert(f);
    fseek(f, sb->st_size / 2, SEEK_SET);
    int c = fgetc(f);
    fseek(f, sb->st_size / 2, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
    return 0;
}

/* A fresh test directory and job of kind k whose first half of input ran at p=2 and was
 * checkpointed (id 1); its _metadata path into path. Returns the store. */
static kp_ckpt_store *half_checkpointed(enum kind k, uint64_t seed, char *path, size_t pathlen)
{
    make_job(k);
    make_input(seed);
    setup_dir();
    char err[1024];
    kp_ckpt_store *store = kp_ckpt_store_open(root, "job", err, sizeof err);
    cr_assert(store, "%s", err);
    run r;
    cr_assert_eq(start(&r, 2, 1, NULL), 0, "%s", failure);
    feed(&r, 0, NREC / 2);
    checkpoint(&r, store, 1, path, pathlen);
    stop(&r);
    doc_list before;
    take_docs(&before);
    free_docs(&before);
    return store;
}

/* A checkpoint at p=2 whose RocksDB files are damaged or gone: the restore (at p=2, the
 * materialising path, and at p=3, the rescaling one) fails, naming the operator, the key
 * groups and the file. */
static void check_broken(int del)
{
    cache_bytes = 0;
    char err[1024], path[1024];
    kp_ckpt_store *store = half_checkpointed(TUMBLING, 7, path, sizeof path);
    run r;
    char jobdir[600];
    snprintf(jobdir, sizeof jobdir, "%s/job", root);
    damaged = 0;
    damage_part = "MANIFEST";
    delete_files = del;
    nftw(jobdir, damage, 16, FTW_PHYS);
    cr_assert_gt(damaged, 0, "no MANIFEST file in the checkpoint");
    kp_restore *restore = kp_restore_open(path, err, sizeof err);
    if (!restore) { /* found when opening: also a clear error */
        cr_assert(strstr(err, "MANIFEST") || strstr(err, "checksum") || strstr(err, "missing"),
                  "%s", err);
    } else {
        for (int p = 2; p <= 3; p++) {
            cr_assert_eq(start(&r, p, p, restore), -1, "a restore from a %s file succeeded",
                         del ? "missing" : "damaged");
            cr_assert(strstr(failure, "restore") && strstr(failure, "key groups"), "%s", failure);
            cr_assert(strstr(failure, "MANIFEST") || strstr(failure, "checksum") ||
                          strstr(failure, "sha256"),
                      "the error does not say what is wrong: %s", failure);
        }
        kp_restore_free(restore);
    }
    kp_ckpt_store_free(store);
    remove_dir();
    kp_job_free(job);
}

Test(keyed_restore, corrupted_checkpoint_fails)
{
    check_broken(0);
}

Test(keyed_restore, missing_files_fail)
{
    check_broken(1);
}

/* State taken under one max parallelism cannot be restored under another (key groups are the
 * hash modulo it): the error says so and what to do. */
Test(keyed_restore, other_max_parallelism_fails)
{
    enum kind kinds[3] = {TUMBLING, SESSION, PROCESS};
    for (int k = 0; k < 3; k++) {
        cache_bytes = 16 << 10;
        char err[1024], path[1024];
        kp_ckpt_store *store = half_checkpointed(kinds[k], 9, path, sizeof path);
        run r;
        kp_restore *restore = kp_restore_open(path, err, sizeof err);
        cr_assert(restore, "%s", err);
        job->max_parallelism = 64;
        cr_assert_eq(start(&r, 2, 2, restore), -1);
        cr_assert(strstr(failure, "max parallelism 128") && strstr(failure, "has 64"), "%s",
                  failure);
        kp_restore_free(restore);
        kp_ckpt_store_free(store);
        remove_dir();
        kp_job_free(job);
    }
}
