/* The jobmanager's side of checkpoints: per running attempt of a job one coordinator
 * (runtime/checkpoint_coord.h, a pure state machine over the job's checkpoint storage) driven
 * from the control thread. Its clock is kp_life_step's pass over the jobs (every control-loop
 * round, at least every 100 ms): a due checkpoint is triggered at the taskmanagers that run
 * source subtasks; acknowledgements and declines come in as control frames; the last
 * acknowledgement commits the metadata (the store's atomic write) and every taskmanager of
 * the attempt is notified; expired, declined and subsumed checkpoints are aborted; more
 * consecutive failures than the job tolerates fail the job over, under its restart strategy.
 *
 * A coordinator lives for one attempt: a new attempt starts with nothing pending (the old
 * attempt's pending checkpoints die with its tasks) and ids above every chk-<N> in storage.
 * The last attempt's coordinator stays readable for REST until the next one starts. Every
 * restart — a failed task, a lost taskmanager, a restarted jobmanager — deploys the new attempt
 * with the latest completed checkpoint as its restore path (lifecycle.c, registry.c).
 * Everything here runs with jm->lock held; the storage work (commits, savepoint copies, GC,
 * the recovery search) runs on the checkpoint I/O worker (ckpt_io.h), its results coming back
 * here. See docs/cluster.md, "Checkpoints". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_coord.h"
#include "checkpoint_meta.h"
#include "ckpt_io.h"
#include "failpoint.h"
#include "frame.h"
#include "jm.h"
#include "savepoints.h"

struct kp_jm_ckpt {
    kp_ckpt_store *store;
    kp_ckpt_coord *coord;
    uint32_t attempt; /* the attempt the coordinator serves */
    bool active;      /* that attempt runs: ticks and acknowledgements count */
    uint64_t gen;     /* tells a finished commit whether this coordinator still is the job's */
    int inflight;     /* commits on the checkpoint I/O worker */
};

static uint64_t gens; /* jm->lock */

void kp_jm_ckpt_free(struct kp_jm_ckpt *c)
{
    if (!c)
        return;
    kp_ckpt_coord_free(c->coord);
    kp_ckpt_store_free(c->store);
    free(c);
}

/* The id and kind of the checkpoint a restore path names, from its metadata. */
static int64_t restored_id(const char *path, int *savepoint)
{
    json_error_t jerr;
    json_t *meta = json_load_file(path, 0, &jerr);
    int64_t id = json_integer_value(json_object_get(meta, "checkpoint"));
    *savepoint = json_is_true(json_object_get(meta, "savepoint"));
    json_decref(meta);
    return id;
}

/* A coordinator for the job's current attempt over its storage, its statistics going on from
 * `old`'s (the job's previous coordinator, or NULL; the caller frees it); NULL (logged) when
 * the storage cannot be opened or memory is short: the job then runs without checkpoints. */
static void seed_coord(kp_ckpt_coord *coord, const char *job_id);

static struct kp_jm_ckpt *start_coord(kp_jm_job_t *job, struct kp_jm_ckpt *old)
{
    char err[512];
    struct kp_jm_ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->store = kp_ckpt_store_open(job->ckpt.dir, job->id, err, sizeof err);
    if (!c->store) {
        kp_jm_log("job %s (%s): no checkpoints: %s", job->id, job->name, err);
        free(c);
        return NULL;
    }
    c->coord = kp_ckpt_coord_new(&job->ckpt, c->store);
    if (c->coord) /* commits and GC passes go to the checkpoint I/O worker (pump) */
        kp_ckpt_coord_set_async(c->coord);
    c->gen = ++gens;
    for (size_t i = 0; c->coord && i < job->nsubs; i++)
        if (kp_ckpt_coord_expect(c->coord, job->subs[i].task_id, (int)job->subs[i].subtask)) {
            kp_ckpt_coord_free(c->coord);
            c->coord = NULL;
        }
    if (!c->coord) {
        kp_jm_log("job %s (%s): no checkpoints: out of memory", job->id, job->name);
        kp_jm_ckpt_free(c);
        return NULL;
    }
    if (old)
        kp_ckpt_coord_take_history(c->coord, old->coord, kp_wall_ms());
    else
        seed_coord(c->coord, job->id); /* after a jobmanager restart: the retained ones */
    if (job->restore_path[0]) {
        int savepoint = 0;
        int64_t id = restored_id(job->restore_path, &savepoint);
        kp_ckpt_coord_restored(c->coord, id, job->restore_path, savepoint, kp_wall_ms());
    }
    c->attempt = job->attempt;
    c->active = true;
    return c;
}

void kp_jm_ckpt_running(kp_jm_t *jm, kp_jm_job_t *job)
{
    (void)jm;
    if (job->ckpt.interval_ms <= 0 && !job->restore_path[0])
        return;
    struct kp_jm_ckpt *old = job->ckpt_state;
    job->ckpt_state = start_coord(job, old);
    kp_jm_ckpt_free(old);
    if (job->ckpt_state && job->ckpt.interval_ms > 0)
        kp_jm_log("job %s (%s): checkpoints every %lld ms (%s) into %s/%s", job->id, job->name,
                  (long long)job->ckpt.interval_ms,
                  job->ckpt.mode == KP_CKPT_AT_LEAST_ONCE ? "at_least_once" : "exactly_once",
                  job->ckpt.dir, job->id);
}

/* The first subtasks that did not acknowledge ("task 3 subtask 0, ..."). */
static const char *missing_acks(const kp_ckpt_stats *s)
{
    static char buf[256]; /* jm->lock held: one caller at a time */
    buf[0] = '\0';
    for (int i = 0, n = 0; i < s->nsub && n < 8; i++)
        if (!s->sub[i].acked) {
            size_t len = strlen(buf);
            snprintf(buf + len, sizeof buf - len, "%stask %d subtask %d", n++ ? ", " : "",
                     s->sub[i].task, s->sub[i].subtask);
        }
    return buf;
}

void kp_jm_ckpt_stopped(kp_jm_t *jm, kp_jm_job_t *job, const char *reason)
{
    (void)jm;
    struct kp_jm_ckpt *c = job->ckpt_state;
    if (!c || !c->active)
        return;
    c->active = false; /* pending checkpoints end with the attempt's tasks */
    const kp_ckpt_history *h = kp_ckpt_coord_history(c->coord);
    for (int i = 0; h && i < h->n; i++) /* what each waited for, for the log */
        if (h->s[i]->status == KP_CKPT_IN_PROGRESS)
            kp_jm_log("job %s (%s): checkpoint %lld abandoned with %d of %d acknowledgements "
                      "(%s)%s%s",
                      job->id, job->name, (long long)h->s[i]->id, h->s[i]->nacked, h->s[i]->nsub,
                      reason, h->s[i]->nacked < h->s[i]->nsub ? ": missing " : "",
                      missing_acks(h->s[i]));
    char why[600];
    snprintf(why, sizeof why, "abandoned: %s", reason);
    kp_ckpt_coord_abandon(c->coord, why, kp_wall_ms());
}

/* The GC of an ended job, on the I/O worker (a store of its own: the coordinator's is the
 * control thread's). */
typedef struct end_gc {
    char root[4096], job[KP_JM_ID_LEN], name[256];
    int retain;
    int64_t oldest; /* kp_ckpt_store_gc's bounds */
    kp_time since;
} end_gc;

static void end_gc_run(void *arg)
{
    end_gc *g = arg;
    char err[512];
    kp_ckpt_store *st = kp_ckpt_store_open(g->root, g->job, err, sizeof err);
    /* nothing is pending any more (the tasks are settled): every chk-<N> without metadata —
     * an abandoned checkpoint's uploads — goes, and the shared files no retained checkpoint
     * names */
    if (!st || kp_ckpt_store_gc(st, g->retain, g->oldest, g->since, err, sizeof err) != 0)
        kp_jm_log("job %s (%s): checkpoint storage GC: %s", g->job, g->name, err);
    kp_ckpt_store_free(st);
    free(g);
}

/* A GC pass of the job's storage on the worker (after what is queued before it). */
static void submit_gc(kp_jm_t *jm, const kp_jm_job_t *job, int retain, int64_t oldest,
                      kp_time since)
{
    end_gc *g = calloc(1, sizeof *g);
    if (!g)
        return; /* the next pass collects it */
    snprintf(g->root, sizeof g->root, "%s", job->ckpt.dir);
    snprintf(g->job, sizeof g->job, "%s", job->id);
    snprintf(g->name, sizeof g->name, "%s", job->name);
    g->retain = retain > 0 ? retain : 1;
    g->oldest = oldest;
    g->since = since;
    if (kp_ckpt_io_submit(jm, end_gc_run, NULL, g) != 0)
        end_gc_run(g); /* no worker: here, under the lock */
}

void kp_jm_ckpt_ended(kp_jm_t *jm, kp_jm_job_t *job)
{
    if (!job->ckpt_state || !job->ckpt.dir)
        return; /* no coordinator ever ran here: this jobmanager wrote nothing for the job */
    /* nothing is pending any more (the tasks are settled) */
    submit_gc(jm, job, job->ckpt.retain, INT64_MAX, kp_wall_ms());
}

/* The coordinator of the job's running attempt, or NULL. */
static kp_ckpt_coord *live_coord(const kp_jm_job_t *job)
{
    const struct kp_jm_ckpt *c = job->ckpt_state;
    return c && c->active && c->attempt == job->attempt && job->state == KP_JOB_RUNNING ? c->coord
                                                                                        : NULL;
}

/* A commit on the checkpoint I/O worker: the coordinator it came from (gen) and the job. */
typedef struct io_commit {
    char job[KP_JM_ID_LEN], root[4096];
    uint64_t gen;
    kp_ckpt_commit *r;
} io_commit;

static void commit_run(void *arg)
{
    io_commit *it = arg;
    kp_ckpt_store *st = kp_ckpt_store_open(it->root, it->job, it->r->err, sizeof it->r->err);
    if (st)
        kp_ckpt_commit_run(it->r, st);
    else
        it->r->rc = -1;
    kp_ckpt_store_free(st);
}

static void after_event(kp_jm_t *jm, kp_jm_job_t *job, kp_ckpt_coord *coord);
static kp_ckpt_coord *live_coord(const kp_jm_job_t *job);

/* The final checkpoint of bounded inputs (docs/checkpoints.md, Bounded inputs): every source
 * subtask took it after the end of its input — its acknowledgement says "end_of_input": true;
 * other subtasks' say nothing. Then the completion tells the sources to end. */
static bool final_checkpoint(const kp_ckpt_commit *r)
{
    int at_end = 0;
    for (int i = 0; i < r->n; i++) {
        if (!strstr(r->acks[i], "\"end_of_input\"")) /* not a source: no need to parse */
            continue;
        json_t *ack = json_loads(r->acks[i], 0, NULL);
        int end = json_is_true(json_object_get(ack, "end_of_input"));
        json_decref(ack);
        if (!end)
            return false;
        at_end++;
    }
    return at_end > 0;
}

static void commit_done(kp_jm_t *jm, void *arg)
{
    io_commit *it = arg;
    kp_jm_job_t *job = kp_registry_find(jm, it->job);
    struct kp_jm_ckpt *c = job ? job->ckpt_state : NULL;
    if (c && c->gen == it->gen) {
        c->inflight--;
        bool live = live_coord(job) == c->coord;
        kp_coord_event ev = kp_ckpt_coord_committed(c->coord, it->r, kp_wall_ms());
        long long id = (long long)it->r->id;
        if (ev == KP_COORD_COMPLETED) {
            kp_jm_log("job %s (%s): checkpoint %lld complete: %s", job->id, job->name, id,
                      it->r->path);
            if (live && kp_failpoint("coord.after_complete_before_notify") == 0)
                kp_control_send_complete(jm, job, it->r->id, final_checkpoint(it->r));
        } else if (ev == KP_COORD_FAILED) {
            kp_jm_log("job %s (%s): checkpoint %lld failed to complete: %s", job->id, job->name, id,
                      it->r->err);
        }
        if (live)
            after_event(jm, job, c->coord);
    }
    kp_ckpt_commit_free(it->r);
    free(it);
}

/* Hands the coordinator's storage work — commits whose acknowledgements are all in, due GC
 * passes — to the checkpoint I/O worker (or, without one, does it here). */
static void pump(kp_jm_t *jm, kp_jm_job_t *job)
{
    struct kp_jm_ckpt *c = job->ckpt_state;
    kp_time now = kp_wall_ms();
    kp_ckpt_commit *r;
    while ((r = kp_ckpt_coord_take_commit(c->coord, now))) {
        io_commit *it = calloc(1, sizeof *it);
        if (!it) {
            kp_ckpt_commit_free(r); /* the checkpoint stays pending until it expires */
            break;
        }
        snprintf(it->job, sizeof it->job, "%s", job->id);
        snprintf(it->root, sizeof it->root, "%s", job->ckpt.dir);
        it->gen = c->gen;
        it->r = r;
        c->inflight++;
        if (kp_ckpt_io_submit(jm, commit_run, commit_done, it) != 0) {
            commit_run(it); /* no worker: here, under the lock */
            commit_done(jm, it);
        }
    }
    int retain;
    int64_t oldest;
    kp_time since;
    if (kp_ckpt_coord_take_gc(c->coord, now, &retain, &oldest, &since))
        submit_gc(jm, job, retain, oldest, since);
}

/* Aborts what the coordinator gave up, and fails the job over once its failures are more
 * than it tolerates. */
static void after_event(kp_jm_t *jm, kp_jm_job_t *job, kp_ckpt_coord *coord)
{
    pump(jm, job);
    int64_t ids[16];
    int n;
    while ((n = kp_ckpt_coord_take_aborted(coord, ids, 16)) > 0)
        for (int i = 0; i < n; i++)
            kp_control_send_ckpt(jm, job, KP_FRAME_ABORT_CHECKPOINT, ids[i], 0,
                                 "the checkpoint did not complete");
    const char *why = NULL;
    if (kp_ckpt_coord_job_failed(coord, &why)) {
        char msg[512];
        snprintf(msg, sizeof msg, "more than %d consecutive checkpoint failures; the last: %s",
                 job->ckpt.tolerable_failures, why ? why : "unknown");
        kp_life_fail(jm, job, msg);
    }
}

struct kp_ckpt_coord *kp_jm_ckpt_coord_now(kp_jm_t *jm, kp_jm_job_t *job, char *err, size_t errlen)
{
    (void)jm;
    for (size_t i = 0; i < job->nsubs; i++)
        if (job->state != KP_JOB_RUNNING || job->subs[i].state != KP_SUB_RUNNING) {
            snprintf(err, errlen, "the job is %s, not running with every subtask",
                     kp_job_state_name(job->state));
            return NULL;
        }
    if (!live_coord(job)) { /* no checkpoints configured: a coordinator for savepoints */
        struct kp_jm_ckpt *old = job->ckpt_state;
        job->ckpt_state = start_coord(job, old);
        kp_jm_ckpt_free(old);
    }
    kp_ckpt_coord *coord = live_coord(job);
    if (!coord)
        snprintf(err, errlen, "its checkpoint storage cannot be opened (see the log)");
    return coord;
}

void kp_jm_ckpt_step(kp_jm_t *jm, kp_jm_job_t *job)
{
    kp_jm_savepoints_step(jm, job);
    kp_ckpt_coord *coord = live_coord(job);
    if (!coord)
        return;
    for (size_t i = 0; i < job->nsubs; i++)
        if (job->subs[i].state != KP_SUB_RUNNING)
            return; /* a finishing job takes no new checkpoint */
    kp_time now = kp_wall_ms();
    int64_t id = kp_ckpt_coord_tick(coord, now);
    if (id > 0)
        kp_control_send_ckpt(jm, job, KP_FRAME_TRIGGER_CHECKPOINT, id, now, NULL);
    after_event(jm, job, coord);
}

/* The job a checkpoint report of taskmanager `tm` is about, when it is the running attempt's
 * and the subtask runs there; NULL (logged) otherwise. */
static kp_jm_job_t *report_job(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt,
                               int64_t id, int task_id, uint32_t subtask)
{
    for (size_t j = 0; j < jm->njobs; j++) {
        kp_jm_job_t *job = jm->jobs[j];
        if (strcmp(job->id, job_id))
            continue;
        if (job->attempt != attempt || !live_coord(job))
            break;
        for (size_t i = 0; i < job->nsubs; i++)
            if (job->subs[i].task_id == task_id && job->subs[i].subtask == subtask)
                return job->subs[i].tm == tm ? job : NULL;
        return NULL;
    }
    kp_jm_log("taskmanager %s: checkpoint %lld report on %s attempt %u ignored (not a running "
              "attempt)",
              jm->tms[tm].id, (long long)id, job_id, attempt);
    return NULL;
}

void kp_jm_ckpt_ack(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int64_t id,
                    int task_id, uint32_t subtask, const char *ack_json)
{
    kp_jm_job_t *job = report_job(jm, tm, job_id, attempt, id, task_id, subtask);
    if (!job)
        return;
    kp_ckpt_coord *coord = live_coord(job);
    kp_coord_event ev = kp_ckpt_coord_ack(coord, id, task_id, (int)subtask, ack_json, kp_wall_ms());
    if (ev == KP_COORD_FAILED)
        kp_jm_log("job %s (%s): checkpoint %lld failed to complete", job->id, job->name,
                  (long long)id);
    after_event(jm, job, coord); /* KP_COORD_COMMITTING: the commit goes to the worker */
}

void kp_jm_ckpt_decline(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int64_t id,
                        int task_id, uint32_t subtask, const char *reason)
{
    kp_jm_job_t *job = report_job(jm, tm, job_id, attempt, id, task_id, subtask);
    if (!job)
        return;
    kp_ckpt_coord *coord = live_coord(job);
    kp_jm_log("job %s (%s): task %d subtask %u declined checkpoint %lld: %s", job->id, job->name,
              task_id, subtask, (long long)id, reason && *reason ? reason : "(no reason)");
    kp_ckpt_coord_decline(coord, id, task_id, (int)subtask, reason ? reason : "", kp_wall_ms());
    after_event(jm, job, coord);
}

/* A restore path that names a directory — a chk-N or savepoint directory, or a job's
 * checkpoint directory (its latest valid checkpoint) — becomes the _metadata file it means;
 * left as it is when it names nothing (the taskmanagers' kp_restore_open says why). */
static void resolve_restore(kp_jm_job_t *job)
{
    char *p = job->restore_path, found[4096], err[512];
    size_t n = strlen(p);
    if (!n || (n >= 10 && !strcmp(p + n - 10, "/_metadata")))
        return;
    snprintf(found, sizeof found, "%.4000s/_metadata", p);
    if (!access(found, F_OK)) {
        snprintf(p, sizeof job->restore_path, "%s", found);
        return;
    }
    char *slash = strrchr(p, '/');
    if (!slash || slash == p)
        return;
    *slash = '\0';
    int rc = kp_ckpt_store_latest(p, slash + 1, found, sizeof found, err, sizeof err);
    *slash = '/';
    if (rc == 1)
        snprintf(p, sizeof job->restore_path, "%s", found);
    else
        kp_jm_log("job %s (%s): from_checkpoint %s: %s", job->id, job->name, p,
                  rc ? err : "no valid checkpoint in that directory");
}

/* A search for a job's latest valid checkpoint (kp_ckpt_store_latest hashes every file of
 * the candidate: ~1 s per GiB) on the I/O worker. run fills rc/path/err; `done` (the control
 * thread) sets done; the control thread reads the result only after that. */
#define SEEDS_MAX 16

typedef struct search {
    char job[KP_JM_ID_LEN], root[4096];
    bool done, taken; /* taken: the restore used it; the seeds wait for the coordinator */
    int rc;
    char path[4096], err[512];
    json_t *seeds[SEEDS_MAX]; /* the retained checkpoints' metadata, oldest first */
    int nseeds;
    struct search *next;
} search;

static search *searches; /* jm->lock */

static search *search_of(const char *job_id)
{
    for (search *s = searches; s; s = s->next)
        if (!strcmp(s->job, job_id))
            return s;
    return NULL;
}

/* The metadata of the completed checkpoints in storage (small files: no data file is read),
 * for the statistics of the coordinator that comes after a jobmanager restart. */
static void load_seeds(search *s)
{
    char dir[4200], path[4400], err[256];
    snprintf(dir, sizeof dir, "%s/%s", s->root, s->job);
    int64_t ids[SEEDS_MAX];
    int n = kp_ckpt_list_ids(dir, ids, SEEDS_MAX);
    for (int i = n - 1; i >= 0; i--) {
        snprintf(path, sizeof path, "%s/chk-%lld/_metadata", dir, (long long)ids[i]);
        json_t *meta = access(path, F_OK) ? NULL : kp_ckpt_meta_load(path, err, sizeof err);
        if (!meta)
            continue;
        json_object_set_new(meta, "_path", json_string(path));
        s->seeds[s->nseeds++] = meta;
    }
}

static void search_run(void *arg)
{
    search *s = arg;
    s->rc = kp_ckpt_store_latest(s->root, s->job, s->path, sizeof s->path, s->err, sizeof s->err);
    load_seeds(s);
}

static void search_free(search *s)
{
    for (int i = 0; i < s->nseeds; i++)
        json_decref(s->seeds[i]);
    free(s);
}

/* The statistics of a coordinator after a jobmanager restart start with the retained
 * checkpoints the search found; the search's entry goes. */
static void seed_coord(kp_ckpt_coord *coord, const char *job_id)
{
    for (search **p = &searches; *p; p = &(*p)->next) {
        search *s = *p;
        if (strcmp(s->job, job_id) || !s->done)
            continue;
        for (int i = 0; i < s->nseeds; i++) {
            json_t *m = s->seeds[i], *subs = json_object_get(m, "subtasks"), *a;
            const char *acks[512];
            char *texts[512];
            int n = 0;
            size_t k;
            json_array_foreach(subs, k, a)
            {
                if (n == 512 || !(texts[n] = json_dumps(a, JSON_COMPACT)))
                    break;
                acks[n] = texts[n];
                n++;
            }
            kp_ckpt_coord_seed(coord, json_integer_value(json_object_get(m, "checkpoint")),
                               json_integer_value(json_object_get(m, "trigger_ms")),
                               json_integer_value(json_object_get(m, "complete_ms")),
                               json_string_value(json_object_get(m, "_path")), acks, n);
            for (int j = 0; j < n; j++)
                free(texts[j]);
        }
        *p = s->next;
        search_free(s);
        return;
    }
}

static void search_done(kp_jm_t *jm, void *arg)
{
    ((search *)arg)->done = true;
    kp_jm_wake(jm); /* the deploy that waits for it goes on */
}

/* Whether the job's restore needs the storage searched: a later attempt whose checkpoints no
 * coordinator of this jobmanager saw (a restarted jobmanager). A first attempt has none. */
static bool needs_search(const kp_jm_job_t *job)
{
    return !job->ckpt_state && job->ckpt.dir && job->attempt > 0;
}

bool kp_jm_ckpt_restore_wait(kp_jm_t *jm, kp_jm_job_t *job)
{
    if (job->ckpt_state && job->ckpt_state->inflight) { /* the latest may be one of them */
        snprintf(job->waiting_reason, sizeof job->waiting_reason,
                 "waiting for %d checkpoint commit(s) to finish", job->ckpt_state->inflight);
        return true;
    }
    if (!needs_search(job))
        return false;
    search *s = search_of(job->id);
    if (s)
        return !s->done;
    if (!(s = calloc(1, sizeof *s)))
        return false; /* kp_jm_ckpt_pick_restore searches itself */
    snprintf(s->job, sizeof s->job, "%s", job->id);
    snprintf(s->root, sizeof s->root, "%s", job->ckpt.dir);
    if (kp_ckpt_io_submit(jm, search_run, search_done, s) != 0) {
        free(s);
        return false;
    }
    s->next = searches;
    searches = s;
    snprintf(job->waiting_reason, sizeof job->waiting_reason,
             "looking for its latest valid checkpoint in %.120s/%s", job->ckpt.dir, job->id);
    return true;
}

/* The finished search's result for the job (removed from the list), or a search here when
 * none ran (no worker, out of memory). */
static int take_search(const kp_jm_job_t *job, char *found, size_t len, char *err, size_t errlen)
{
    for (search *s = searches; s; s = s->next) {
        if (strcmp(s->job, job->id) || !s->done || s->taken)
            continue;
        s->taken = true; /* its seeds wait for the coordinator (seed_coord) */
        snprintf(found, len, "%s", s->path);
        snprintf(err, errlen, "%s", s->err);
        return s->rc;
    }
    if (search_of(job->id))
        return 0; /* still running (a restart's pick before its deploy): the deploy waits */
    return kp_ckpt_store_latest(job->ckpt.dir, job->id, found, len, err, errlen);
}

void kp_jm_ckpt_pick_restore(kp_jm_t *jm, kp_jm_job_t *job)
{
    (void)jm;
    resolve_restore(job);
    const char *path = NULL;
    if (job->ckpt_state && kp_ckpt_coord_last_completed(job->ckpt_state->coord, &path) > 0 &&
        path) { /* the coordinator committed it: no need to read storage again */
        snprintf(job->restore_path, sizeof job->restore_path, "%s", path);
        return;
    }
    if (!needs_search(job))
        return; /* this jobmanager saw every checkpoint of the job: none completed since */
    char found[4096], err[512];
    int rc = take_search(job, found, sizeof found, err, sizeof err);
    if (rc == 1)
        snprintf(job->restore_path, sizeof job->restore_path, "%s", found);
    else if (rc < 0)
        kp_jm_log("job %s (%s): cannot look for its latest checkpoint: %s", job->id, job->name,
                  err);
}

const kp_ckpt_history *kp_jm_ckpt_history(const kp_jm_job_t *job)
{
    return job->ckpt_state ? kp_ckpt_coord_history(job->ckpt_state->coord) : NULL;
}
