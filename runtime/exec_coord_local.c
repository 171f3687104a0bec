/* The local coordinator of `kappa run --local` with checkpoints (exec_coord.h): triggers
 * checkpoint N every interval (after the minimum pause, at most max_concurrent at once),
 * collects one acknowledgement per local subtask — they come from the uploader's thread, and
 * declines from subtask threads, under `lock` — and on the coordinator's thread completes N
 * (kp_ckpt_store_commit, then COMPLETE to every subtask, then retention), or gives it up
 * after a decline or the timeout (ABORT to every subtask); more consecutive failures than
 * tolerable fail the run. Ids start above every chk-<N> directory already in storage. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_store.h"
#include "clock.h"
#include "exec_coord.h"

#define MAX_PENDING 16

typedef struct pending {
    int64_t id; /* 0 = free */
    kp_time trigger_ms, started;
    char **acks; /* per local subtask (x->subtasks order) */
    int nacks;
    char declined[256]; /* non-empty: given up */
} pending;

struct kp_local_coord {
    pthread_mutex_t lock;
    int64_t next_id;
    kp_time last_trigger, last_end; /* monotonic */
    int failures;                   /* consecutive */
    long long completed;
    pending p[MAX_PENDING];
};

static int subtask_slot(const struct kp_exec *x, int task_id, int subtask)
{
    for (int i = 0; i < x->nsubtasks; i++)
        if (x->subtasks[i]->ckpt.task == task_id && x->subtasks[i]->st.index == subtask)
            return i;
    return -1;
}

static pending *find(struct kp_local_coord *c, int64_t id)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (c->p[i].id == id && id)
            return &c->p[i];
    return NULL;
}

static void on_ack(void *ctx, int64_t id, int task_id, int subtask, const char *ack_json)
{
    struct kp_exec *x = ctx;
    struct kp_local_coord *c = x->coord;
    pthread_mutex_lock(&c->lock);
    pending *p = find(c, id);
    int slot = subtask_slot(x, task_id, subtask);
    if (p && slot >= 0 && !p->acks[slot] && (p->acks[slot] = strdup(ack_json)))
        p->nacks++;
    pthread_mutex_unlock(&c->lock);
}

static void on_decline(void *ctx, int64_t id, int task_id, int subtask, const char *reason)
{
    struct kp_exec *x = ctx;
    struct kp_local_coord *c = x->coord;
    pthread_mutex_lock(&c->lock);
    pending *p = find(c, id);
    if (p && !p->declined[0])
        snprintf(p->declined, sizeof p->declined, "task %d subtask %d declined: %s", task_id,
                 subtask, reason);
    pthread_mutex_unlock(&c->lock);
}

int kp_exec_coord_local_start(struct kp_exec *x, char *errstr, size_t errlen)
{
    struct kp_local_coord *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&c->lock, NULL);
    for (int i = 0; i < MAX_PENDING; i++)
        if (!(c->p[i].acks = calloc((size_t)x->nsubtasks, sizeof(char *)))) {
            x->coord = c;
            kp_exec_coord_local_stop(x);
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
    c->next_id = kp_ckpt_store_max_id(x->cfg->ckpt.dir, x->job->name) + 1;
    c->last_trigger = c->last_end = kp_mono_ms();
    x->coord = c;
    x->hooks = (kp_ckpt_hooks){on_ack, on_decline, x};
    return 0;
}

/* Frees a pending checkpoint's acknowledgements; the caller holds the lock. */
static void release(struct kp_exec *x, pending *p)
{
    for (int i = 0; i < x->nsubtasks; i++) {
        free(p->acks[i]);
        p->acks[i] = NULL;
    }
    p->id = 0;
    p->nacks = 0;
    p->declined[0] = 0;
}

/* Gives checkpoint p up; `counts`: a failure towards the tolerable ones (not when the job's
 * input simply ended under it). */
static void fail_checkpoint(struct kp_exec *x, pending *p, const char *reason, int counts)
{
    struct kp_local_coord *c = x->coord;
    const kp_ckpt_config *k = &x->cfg->ckpt;
    char why[600];
    snprintf(why, sizeof why, "%s", reason); /* it may be p's own */
    if (counts)
        fprintf(stderr, "kappa: checkpoint %lld failed: %s\n", (long long)p->id, why);
    kp_exec_ckpt_dispatch(x, &(kp_ctl){KP_CTL_ABORT, -1, -1, p->id});
    release(x, p);
    c->last_end = kp_mono_ms();
    if (counts && ++c->failures > k->tolerable_failures)
        kp_subtask_fail(&x->subtasks[0]->st, "%d checkpoints failed in a row (tolerable: %d): %s",
                        c->failures, k->tolerable_failures, why);
}

static void complete(struct kp_exec *x, pending *p)
{
    struct kp_local_coord *c = x->coord;
    const kp_ckpt_config *k = &x->cfg->ckpt;
    char err[512];
    if (kp_ckpt_store_commit(x->store, p->id, p->trigger_ms, k->mode, (const char *const *)p->acks,
                             x->nsubtasks, NULL, 0, err, sizeof err) != 0) {
        fail_checkpoint(x, p, err, 1);
        return;
    }
    int64_t id = p->id;
    release(x, p);
    c->failures = 0;
    c->completed++;
    c->last_end = kp_mono_ms();
    kp_exec_ckpt_dispatch(x, &(kp_ctl){KP_CTL_COMPLETE, -1, -1, id});
    int64_t oldest = INT64_MAX;
    for (int i = 0; i < MAX_PENDING; i++)
        if (c->p[i].id && c->p[i].id < oldest)
            oldest = c->p[i].id;
    if (kp_ckpt_store_gc(x->store, k->retain, oldest, kp_wall_ms(), err, sizeof err) != 0)
        fprintf(stderr, "kappa: checkpoint storage: %s\n", err);
}

void kp_exec_coord_local_poll(struct kp_exec *x, int running)
{
    struct kp_local_coord *c = x->coord;
    const kp_ckpt_config *k = &x->cfg->ckpt;
    kp_time now = kp_mono_ms(), timeout = k->timeout_ms > 0 ? k->timeout_ms : 600000;
    int npending = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < MAX_PENDING; i++) {
        pending *p = &c->p[i];
        if (!p->id)
            continue;
        if (p->declined[0])
            fail_checkpoint(x, p, p->declined, 1);
        else if (p->nacks == x->nsubtasks)
            complete(x, p);
        else if (now - p->started >= timeout)
            fail_checkpoint(x, p, "expired before every subtask acknowledged it", 1);
        else if (running < x->nsubtasks)
            fail_checkpoint(x, p, "a subtask ended before it acknowledged", 0);
        npending += p->id != 0;
    }
    int max = k->max_concurrent > 0 ? k->max_concurrent : 1;
    if (running == x->nsubtasks && npending < max && npending < MAX_PENDING &&
        now - c->last_trigger >= k->interval_ms && now - c->last_end >= k->min_pause_ms &&
        !atomic_load(&x->failed)) {
        pending *p = NULL;
        for (int i = 0; i < MAX_PENDING && !p; i++)
            if (!c->p[i].id)
                p = &c->p[i];
        p->id = c->next_id++;
        p->trigger_ms = kp_wall_ms();
        p->started = now;
        c->last_trigger = now;
        kp_exec_ckpt_dispatch(x, &(kp_ctl){KP_CTL_TRIGGER, -1, -1, p->id});
    }
    pthread_mutex_unlock(&c->lock);
}

void kp_exec_coord_local_stop(struct kp_exec *x)
{
    struct kp_local_coord *c = x->coord;
    if (!c)
        return;
    /* the last acknowledgements may have completed a checkpoint after the subtasks ended */
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < MAX_PENDING; i++)
        if (c->p[i].id && c->p[i].nacks == x->nsubtasks && !c->p[i].declined[0] &&
            !atomic_load(&x->failed))
            complete(x, &c->p[i]);
    for (int i = 0; i < MAX_PENDING; i++) {
        if (c->p[i].acks)
            release(x, &c->p[i]);
        free(c->p[i].acks);
    }
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
    x->coord = NULL;
}
