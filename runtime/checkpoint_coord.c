/* The checkpoint coordinator (checkpoint_coord.h): pending checkpoints with one
 * acknowledgement slot per expected subtask; the rules for triggering (interval, min pause,
 * max concurrent), expiry, declines, completion (commit, retention, GC, subsumption of older
 * pending ones) and tolerable consecutive failures; statistics in a kp_ckpt_history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "checkpoint_coord.h"
#include "checkpoint_meta.h"

#define DEFAULT_TIMEOUT_MS (10 * 60 * 1000)

typedef struct pending {
    int64_t id;
    kp_time trigger_ms;
    char *savepoint_dir; /* NULL: a checkpoint */
    char **acks;         /* one per expected subtask; NULL until it acknowledged */
    int nacked;
    int committing; /* every ack in: 1 = its commit is to be taken, 2 = taken (async mode) */
    kp_ckpt_stats *stats;
} pending;

struct kp_ckpt_coord {
    kp_ckpt_config cfg;
    kp_ckpt_store *store;
    int *tasks, *subtasks, n, cap;
    pending *p;
    int np, capp;
    int64_t next_id;
    kp_time first_tick, last_trigger, last_end;
    int ticked, triggered, ended;
    int consecutive_failures, job_failed;
    char *why;
    int64_t *aborted;
    int naborted, capaborted;
    int64_t last_completed;
    char *last_path;
    kp_ckpt_history hist;
    int async, gc_due; /* kp_ckpt_coord_set_async: commits and GC passes go to the owner */
};

kp_ckpt_coord *kp_ckpt_coord_new(const kp_ckpt_config *cfg, kp_ckpt_store *store)
{
    kp_ckpt_coord *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->cfg.dir = NULL;
    if (c->cfg.timeout_ms <= 0)
        c->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (c->cfg.max_concurrent <= 0)
        c->cfg.max_concurrent = 1;
    if (c->cfg.retain <= 0)
        c->cfg.retain = 1;
    c->store = store;
    int64_t top = 0;
    kp_ckpt_list_ids(kp_ckpt_store_job_dir(store), &top, 1);
    c->next_id = top + 1;
    return c;
}

static void pending_free(kp_ckpt_coord *c, pending *p)
{
    for (int i = 0; i < c->n && p->acks; i++)
        free(p->acks[i]);
    free(p->acks);
    free(p->savepoint_dir);
}

void kp_ckpt_coord_free(kp_ckpt_coord *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->np; i++)
        pending_free(c, &c->p[i]);
    free(c->p);
    free(c->tasks);
    free(c->subtasks);
    free(c->aborted);
    free(c->why);
    free(c->last_path);
    kp_ckpt_history_free(&c->hist);
    free(c);
}

static int index_of(const kp_ckpt_coord *c, int task, int subtask)
{
    for (int i = 0; i < c->n; i++)
        if (c->tasks[i] == task && c->subtasks[i] == subtask)
            return i;
    return -1;
}

int kp_ckpt_coord_expect(kp_ckpt_coord *c, int task, int subtask)
{
    if (index_of(c, task, subtask) >= 0 || c->np > 0)
        return -1;
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        int *t = realloc(c->tasks, (size_t)cap * sizeof *t);
        if (!t)
            return -1;
        c->tasks = t;
        int *s = realloc(c->subtasks, (size_t)cap * sizeof *s);
        if (!s)
            return -1;
        c->subtasks = s;
        c->cap = cap;
    }
    c->tasks[c->n] = task;
    c->subtasks[c->n] = subtask;
    c->n++;
    return 0;
}

void kp_ckpt_coord_restored(kp_ckpt_coord *c, int64_t id, const char *path, int savepoint,
                            kp_time now_ms)
{
    kp_ckpt_history *h = &c->hist;
    h->restored++;
    h->restored_id = id;
    h->restored_ms = now_ms;
    h->restored_savepoint = savepoint;
    free(h->restored_path);
    h->restored_path = path ? strdup(path) : NULL;
    if (c->next_id <= id)
        c->next_id = id + 1;
}

static void note_aborted(kp_ckpt_coord *c, int64_t id)
{
    if (c->naborted == c->capaborted) {
        int cap = c->capaborted ? c->capaborted * 2 : 8;
        int64_t *a = realloc(c->aborted, (size_t)cap * sizeof *a);
        if (!a)
            return; /* the owner misses an abort: the subtasks drop it at the next trigger */
        c->aborted = a;
        c->capaborted = cap;
    }
    c->aborted[c->naborted++] = id;
}

/* Removes pending i (its stats stay in the history). */
static void drop(kp_ckpt_coord *c, int i)
{
    pending_free(c, &c->p[i]);
    memmove(&c->p[i], &c->p[i + 1], (size_t)(c->np - i - 1) * sizeof *c->p);
    c->np--;
}

/* What a GC pass must spare: every pending checkpoint with an id above `above` (and every
 * later one: ids from next_id on), and the shared files written since the oldest of their
 * triggers. */
static void gc_bounds(const kp_ckpt_coord *c, int64_t above, kp_time now_ms, int64_t *oldest,
                      kp_time *since)
{
    *oldest = c->next_id;
    *since = now_ms;
    for (int i = 0; i < c->np; i++) {
        if (c->p[i].id <= above)
            continue;
        if (c->p[i].id < *oldest)
            *oldest = c->p[i].id;
        if (c->p[i].trigger_ms < *since)
            *since = c->p[i].trigger_ms;
    }
}

/* Retention and GC with the pending checkpoints protected (async mode: a pass is due, for
 * the owner); errors only reported. */
static void collect(kp_ckpt_coord *c, kp_time now_ms)
{
    if (c->async) {
        c->gc_due = 1;
        return;
    }
    int64_t oldest;
    kp_time since;
    gc_bounds(c, 0, now_ms, &oldest, &since);
    char err[512];
    if (kp_ckpt_store_gc(c->store, c->cfg.retain, oldest, since, err, sizeof err) != 0)
        fprintf(stderr, "kappa: checkpoint storage: %s\n", err);
}

/* Ends pending i as failed; counts it towards the tolerable failures unless subsumed. */
static void fail(kp_ckpt_coord *c, int i, const char *why, int counts, kp_time now_ms)
{
    pending *p = &c->p[i];
    kp_ckpt_history_end(&c->hist, p->stats, KP_CKPT_FAILED, now_ms, why);
    note_aborted(c, p->id);
    if (counts) {
        fprintf(stderr, "kappa: checkpoint %lld failed: %s\n", (long long)p->id, why);
        c->ended = 1;
        c->last_end = now_ms;
        if (++c->consecutive_failures > c->cfg.tolerable_failures && !c->job_failed) {
            c->job_failed = 1;
            char buf[700];
            snprintf(buf, sizeof buf, "%d consecutive checkpoints failed (tolerable: %d); last: %s",
                     c->consecutive_failures, c->cfg.tolerable_failures, why);
            free(c->why);
            c->why = strdup(buf);
        }
    }
    drop(c, i);
}

static int64_t start(kp_ckpt_coord *c, kp_time now_ms, const char *savepoint_dir)
{
    if (c->np == c->capp) {
        int cap = c->capp ? c->capp * 2 : 4;
        pending *p = realloc(c->p, (size_t)cap * sizeof *p);
        if (!p)
            return 0;
        c->p = p;
        c->capp = cap;
    }
    pending *p = &c->p[c->np];
    memset(p, 0, sizeof *p);
    p->id = c->next_id;
    p->trigger_ms = now_ms;
    p->acks = calloc(c->n ? (size_t)c->n : 1, sizeof *p->acks);
    p->savepoint_dir = savepoint_dir ? strdup(savepoint_dir) : NULL;
    p->stats = p->acks ? kp_ckpt_history_add(&c->hist, p->id, savepoint_dir != NULL, now_ms,
                                             c->tasks, c->subtasks, c->n)
                       : NULL;
    if (!p->stats || (savepoint_dir && !p->savepoint_dir)) {
        pending_free(c, p);
        return 0;
    }
    c->np++;
    c->next_id++;
    c->triggered = 1;
    c->last_trigger = now_ms;
    return p->id;
}

int64_t kp_ckpt_coord_tick(kp_ckpt_coord *c, kp_time now_ms)
{
    for (int i = 0; i < c->np;) {
        if (!c->p[i].committing && now_ms - c->p[i].trigger_ms >= c->cfg.timeout_ms) {
            char why[128];
            snprintf(why, sizeof why, "expired before completing (timeout %lld ms)",
                     (long long)c->cfg.timeout_ms);
            fail(c, i, why, 1, now_ms);
            collect(c, now_ms);
        } else {
            i++;
        }
    }
    if (!c->ticked) { /* a restarted run: what crashed or failed before it goes */
        c->ticked = 1;
        c->first_tick = now_ms;
        collect(c, now_ms);
    }
    if (c->job_failed || c->cfg.interval_ms <= 0 || c->n == 0)
        return 0;
    kp_time since = c->triggered ? c->last_trigger : c->first_tick;
    if (now_ms - since < c->cfg.interval_ms)
        return 0;
    if (c->ended && now_ms - c->last_end < c->cfg.min_pause_ms)
        return 0;
    if (c->np >= c->cfg.max_concurrent)
        return 0;
    return start(c, now_ms, NULL);
}

int64_t kp_ckpt_coord_trigger_savepoint(kp_ckpt_coord *c, kp_time now_ms, const char *dir)
{
    if (c->job_failed || c->n == 0 || !dir || !*dir || c->np >= c->cfg.max_concurrent)
        return 0;
    return start(c, now_ms, dir);
}

int64_t kp_ckpt_coord_trigger_now(kp_ckpt_coord *c, kp_time now_ms)
{
    if (c->job_failed || c->n == 0 || c->np >= c->cfg.max_concurrent)
        return 0;
    return start(c, now_ms, NULL);
}

static int find(const kp_ckpt_coord *c, int64_t id)
{
    for (int i = 0; i < c->np; i++)
        if (c->p[i].id == id)
            return i;
    return -1;
}

/* The commit of pending i as a request that owns its acknowledgements and savepoint dir. */
static kp_ckpt_commit *commit_request(kp_ckpt_coord *c, int i, kp_time now_ms)
{
    pending *p = &c->p[i];
    kp_ckpt_commit *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->id = p->id;
    r->trigger_ms = p->trigger_ms;
    r->mode = c->cfg.mode;
    r->acks = p->acks;
    r->n = c->n;
    r->savepoint_dir = p->savepoint_dir;
    r->retain = c->cfg.retain;
    gc_bounds(c, p->id, now_ms, &r->gc_oldest, &r->gc_since); /* older ones: subsumed */
    p->acks = NULL;
    p->savepoint_dir = NULL;
    p->committing = 2;
    return r;
}

void kp_ckpt_commit_run(kp_ckpt_commit *r, kp_ckpt_store *st)
{
    r->rc = kp_ckpt_store_commit(st, r->id, r->trigger_ms, r->mode, (const char *const *)r->acks,
                                 r->n, r->path, sizeof r->path, r->err, sizeof r->err);
    if (r->rc != 0)
        return; /* the pending ones stay pending: the owner's next GC pass knows them */
    if (r->savepoint_dir && kp_ckpt_store_savepoint(r->path, r->savepoint_dir, r->savepoint_err,
                                                    sizeof r->savepoint_err) != 0) {
        fprintf(stderr, "kappa: savepoint %lld: %s\n", (long long)r->id, r->savepoint_err);
        r->savepoint_failed = 1;
    }
    char err[512];
    if (kp_ckpt_store_gc(st, r->retain, r->gc_oldest, r->gc_since, err, sizeof err) != 0)
        fprintf(stderr, "kappa: checkpoint storage: %s\n", err);
}

void kp_ckpt_commit_free(kp_ckpt_commit *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n && r->acks; i++)
        free(r->acks[i]);
    free(r->acks);
    free(r->savepoint_dir);
    free(r);
}

kp_coord_event kp_ckpt_coord_committed(kp_ckpt_coord *c, const kp_ckpt_commit *r, kp_time now_ms)
{
    int i = find(c, r->id);
    if (i < 0 || c->p[i].committing != 2) { /* abandoned meanwhile: still, it is on disk */
        if (r->rc == 0 && r->id > c->last_completed) {
            c->last_completed = r->id;
            free(c->last_path);
            c->last_path = strdup(r->path);
        }
        return KP_COORD_IGNORED;
    }
    pending *p = &c->p[i];
    if (r->rc != 0) {
        char why[700];
        snprintf(why, sizeof why, "metadata not committed: %s", r->err);
        fail(c, i, why, 1, now_ms);
        collect(c, now_ms);
        return KP_COORD_FAILED;
    }
    const char *shown = r->savepoint_dir && !r->savepoint_failed ? r->savepoint_dir : r->path;
    kp_ckpt_history_end(&c->hist, p->stats, KP_CKPT_COMPLETED, now_ms, shown);
    if (r->savepoint_failed) /* the checkpoint holds, the copy did not */
        p->stats->failure = strdup(r->savepoint_err);
    c->last_completed = r->id;
    free(c->last_path);
    c->last_path = strdup(r->path);
    c->consecutive_failures = 0;
    c->ended = 1;
    c->last_end = now_ms;
    drop(c, i);
    for (int j = 0; j < c->np;) {
        if (c->p[j].id < r->id)
            fail(c, j, "subsumed by a newer completed checkpoint", 0, now_ms);
        else
            j++;
    }
    return KP_COORD_COMPLETED;
}

/* All acknowledgements are in: commit, savepoint copy, subsume older, collect — here, or
 * (async mode) by the owner through kp_ckpt_coord_take_commit. */
static kp_coord_event complete(kp_ckpt_coord *c, int i, kp_time now_ms)
{
    c->p[i].committing = 1;
    if (c->async)
        return KP_COORD_COMMITTING;
    kp_ckpt_commit *r = commit_request(c, i, now_ms);
    if (!r) {
        fail(c, i, "out of memory", 1, now_ms);
        return KP_COORD_FAILED;
    }
    kp_ckpt_commit_run(r, c->store);
    kp_coord_event ev = kp_ckpt_coord_committed(c, r, now_ms);
    kp_ckpt_commit_free(r);
    return ev;
}

void kp_ckpt_coord_set_async(kp_ckpt_coord *c)
{
    c->async = 1;
}

kp_ckpt_commit *kp_ckpt_coord_take_commit(kp_ckpt_coord *c, kp_time now_ms)
{
    for (int i = 0; i < c->np; i++)
        if (c->p[i].committing == 1)
            return commit_request(c, i, now_ms);
    return NULL;
}

int kp_ckpt_coord_take_gc(kp_ckpt_coord *c, kp_time now_ms, int *retain, int64_t *oldest,
                          kp_time *since)
{
    if (!c->gc_due)
        return 0;
    c->gc_due = 0;
    *retain = c->cfg.retain;
    gc_bounds(c, 0, now_ms, oldest, since);
    return 1;
}

kp_coord_event kp_ckpt_coord_ack(kp_ckpt_coord *c, int64_t id, int task, int subtask,
                                 const char *ack_json, kp_time now_ms)
{
    int i = find(c, id), k = index_of(c, task, subtask);
    if (i < 0 || k < 0 || c->p[i].acks[k] || !ack_json)
        return KP_COORD_IGNORED;
    pending *p = &c->p[i];
    if (!(p->acks[k] = strdup(ack_json))) {
        fail(c, i, "out of memory", 1, now_ms);
        return KP_COORD_FAILED;
    }
    kp_ckpt_stats_ack(p->stats, k, now_ms, ack_json);
    if (++p->nacked < c->n)
        return KP_COORD_PENDING;
    return complete(c, i, now_ms);
}

kp_coord_event kp_ckpt_coord_decline(kp_ckpt_coord *c, int64_t id, int task, int subtask,
                                     const char *reason, kp_time now_ms)
{
    int i = find(c, id);
    if (i < 0 || index_of(c, task, subtask) < 0 || c->p[i].committing)
        return KP_COORD_IGNORED;
    char why[700];
    snprintf(why, sizeof why, "declined by task %d subtask %d: %s", task, subtask,
             reason ? reason : "no reason given");
    fail(c, i, why, 1, now_ms);
    collect(c, now_ms);
    return KP_COORD_FAILED;
}

int kp_ckpt_coord_take_aborted(kp_ckpt_coord *c, int64_t *out, int max)
{
    int n = c->naborted < max ? c->naborted : max;
    if (n <= 0) /* c->aborted may still be NULL */
        return 0;
    memcpy(out, c->aborted, (size_t)n * sizeof *out);
    memmove(c->aborted, c->aborted + n, (size_t)(c->naborted - n) * sizeof *out);
    c->naborted -= n;
    return n;
}

int kp_ckpt_coord_job_failed(const kp_ckpt_coord *c, const char **why)
{
    if (why)
        *why = c->why;
    return c->job_failed;
}

int64_t kp_ckpt_coord_last_completed(const kp_ckpt_coord *c, const char **metadata_path)
{
    if (metadata_path)
        *metadata_path = c->last_path;
    return c->last_completed;
}

int kp_ckpt_coord_pending(const kp_ckpt_coord *c)
{
    return c->np;
}

void kp_ckpt_coord_seed(kp_ckpt_coord *c, int64_t id, kp_time trigger_ms, kp_time complete_ms,
                        const char *path, const char *const *acks, int nacks)
{
    if (c->np > 0)
        return;
    kp_ckpt_stats *s =
        kp_ckpt_history_add(&c->hist, id, 0, trigger_ms, c->tasks, c->subtasks, c->n);
    if (!s)
        return;
    for (int i = 0; i < nacks; i++) {
        json_t *a = json_loads(acks[i], 0, NULL);
        int k = index_of(c, (int)json_integer_value(json_object_get(a, "task")),
                         (int)json_integer_value(json_object_get(a, "subtask")));
        json_decref(a);
        if (k >= 0)
            kp_ckpt_stats_ack(s, k, complete_ms, acks[i]);
    }
    kp_ckpt_history_end(&c->hist, s, KP_CKPT_COMPLETED, complete_ms, path);
    if (c->next_id <= id)
        c->next_id = id + 1;
}

void kp_ckpt_coord_abandon(kp_ckpt_coord *c, const char *why, kp_time now_ms)
{
    while (c->np > 0) {
        kp_ckpt_history_end(&c->hist, c->p[0].stats, KP_CKPT_FAILED, now_ms, why);
        drop(c, 0);
    }
}

int kp_ckpt_coord_take_history(kp_ckpt_coord *c, kp_ckpt_coord *from, kp_time now_ms)
{
    if (c->np > 0 || c->hist.n > 0 || c->hist.total > 0 || !from || from == c)
        return -1;
    kp_ckpt_coord_abandon(from, "abandoned: the run ended", now_ms);
    kp_ckpt_history_free(&c->hist);
    c->hist = from->hist;
    memset(&from->hist, 0, sizeof from->hist);
    return 0;
}

const kp_ckpt_history *kp_ckpt_coord_history(const kp_ckpt_coord *c)
{
    return &c->hist;
}
