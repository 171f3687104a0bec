/* The local coordinator of `kappa run --local` with checkpoints (exec_coord.h): the
 * coordinator's state machine (checkpoint_coord.h) behind a lock, fed by the uploader's
 * thread (acknowledgements) and subtask threads (declines), ticked by the run's coordinator
 * thread, which posts the triggers and aborts it asks for; a completion is posted to every
 * subtask by whichever thread's acknowledgement completed it. Messages are posted after the
 * lock is released: a full mailbox declines, which takes the lock again.
 *
 * Bounded inputs (FLIP-147's final checkpoint): a source subtask at the end of its input
 * emits its last records and the final watermark, counts itself in `at_end` and waits. The
 * first checkpoint triggered once every source counted itself is the final one (`final_id`):
 * every source takes it after its end, every operator after the final watermark fired its
 * windows and timers. When it (or, if it failed, a later one) completes, the sources hear
 * KP_CTL_FINAL after KP_CTL_COMPLETE and end. The final checkpoint is triggered as soon as
 * the last source counted itself, when nothing is pending and the min pause has passed since
 * the last checkpoint ended; else by the interval as any other. */
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint_coord.h"
#include "clock.h"
#include "exec_coord.h"
#include "failpoint.h"

struct kp_local_coord {
    pthread_mutex_t lock;
    kp_ckpt_coord *coord;
    atomic_int at_end; /* source subtasks at the end of their input (kp_exec_coord_local_at_end) */
    int nsources;
    int64_t final_id; /* the final checkpoint (0: not triggered yet); under lock */
    int final_done;   /* ... or a later one completed: no more triggers; under lock */
    int was_pending;  /* the coordinator thread's: a checkpoint was pending at the last poll */
    kp_time last_end; /* ... when the last one ended (none pending since), for the min pause */
};

static void post_all(struct kp_exec *x, kp_ctl_kind kind, int64_t id)
{
    kp_exec_ckpt_dispatch(x, &(kp_ctl){kind, -1, -1, id});
}

static void on_ack(void *ctx, int64_t id, int task_id, int subtask, const char *ack_json)
{
    struct kp_exec *x = ctx;
    pthread_mutex_lock(&x->coord->lock);
    kp_coord_event ev =
        kp_ckpt_coord_ack(x->coord->coord, id, task_id, subtask, ack_json, kp_wall_ms());
    int final = ev == KP_COORD_COMPLETED && x->coord->final_id && id >= x->coord->final_id;
    x->coord->final_done |= final;
    pthread_mutex_unlock(&x->coord->lock);
    /* failpoint: the checkpoint is complete, no subtask has heard of it (an error: it never
     * will; sinks commit with the next completion) */
    if (ev == KP_COORD_COMPLETED && kp_failpoint("coord.after_complete_before_notify") == 0) {
        post_all(x, KP_CTL_COMPLETE, id);
        if (final) /* after COMPLETE: every sink commits before its inputs end */
            post_all(x, KP_CTL_FINAL, id);
    } else if (final) { /* nobody heard of it: the next checkpoint is final */
        pthread_mutex_lock(&x->coord->lock);
        x->coord->final_done = 0;
        pthread_mutex_unlock(&x->coord->lock);
    }
}

void kp_exec_coord_local_at_end(void *ctx)
{
    struct kp_exec *x = ctx;
    atomic_fetch_add(&x->coord->at_end, 1);
}

static void on_decline(void *ctx, int64_t id, int task_id, int subtask, const char *reason)
{
    struct kp_exec *x = ctx;
    fprintf(stderr, "kappa: checkpoint %lld declined by task %d subtask %d: %s\n", (long long)id,
            task_id, subtask, reason);
    pthread_mutex_lock(&x->coord->lock);
    kp_ckpt_coord_decline(x->coord->coord, id, task_id, subtask, reason, kp_wall_ms());
    pthread_mutex_unlock(&x->coord->lock);
}

int kp_exec_coord_local_start(struct kp_exec *x, char *errstr, size_t errlen)
{
    struct kp_local_coord *c = calloc(1, sizeof *c);
    if (!c || !(c->coord = kp_ckpt_coord_new(&x->cfg->ckpt, x->store))) {
        free(c);
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&c->lock, NULL);
    x->coord = c;
    for (int i = 0; i < x->nsubtasks; i++)
        c->nsources += x->subtasks[i]->t->head->kind == KP_NODE_SOURCE;
    for (int i = 0; i < x->nsubtasks; i++)
        if (kp_ckpt_coord_expect(c->coord, x->subtasks[i]->ckpt.task, x->subtasks[i]->st.index) !=
            0) {
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
    const kp_restore *r = x->cfg->restore;
    if (r)
        kp_ckpt_coord_restored(c->coord, kp_restore_id(r), kp_restore_path(r),
                               kp_restore_is_savepoint(r), kp_wall_ms());
    x->hooks = (kp_ckpt_hooks){on_ack, on_decline, x};
    return 0;
}

void kp_exec_coord_local_poll(struct kp_exec *x, int running)
{
    struct kp_local_coord *c = x->coord;
    int64_t aborted[16], id = 0;
    const char *why = NULL;
    pthread_mutex_lock(&c->lock);
    /* a subtask that ended reads no more triggers: none is triggered after the first end
     * (the sources wait for the final checkpoint: none ends before it), nor once the final
     * checkpoint completed (the sources are ending: it would be abandoned) */
    int all_at_end = atomic_load(&c->at_end) >= c->nsources;
    kp_time now = kp_wall_ms();
    int pending = kp_ckpt_coord_pending(c->coord);
    if (c->was_pending && !pending)
        c->last_end = now;
    c->was_pending = pending;
    if (running == x->nsubtasks && !atomic_load(&x->failed) && !c->final_done) {
        id = kp_ckpt_coord_tick(c->coord, now);
        const kp_ckpt_config *cfg = &x->cfg->ckpt;
        if (!id && all_at_end && !c->final_id && !pending && cfg->interval_ms > 0 &&
            now - c->last_end >= cfg->min_pause_ms) /* the final one: no need to wait */
            id = kp_ckpt_coord_trigger_now(c->coord, now);
    }
    if (id && all_at_end && !c->final_id)
        c->final_id = id;
    int n = kp_ckpt_coord_take_aborted(c->coord, aborted, 16);
    int failed = kp_ckpt_coord_job_failed(c->coord, &why);
    char reason[512];
    snprintf(reason, sizeof reason, "%s", why ? why : "");
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++)
        post_all(x, KP_CTL_ABORT, aborted[i]);
    if (id)
        post_all(x, KP_CTL_TRIGGER, id);
    if (failed && !atomic_load(&x->failed))
        kp_subtask_fail(&x->subtasks[0]->st, "too many checkpoints failed in a row: %s", reason);
}

void kp_exec_coord_local_stop(struct kp_exec *x)
{
    struct kp_local_coord *c = x->coord;
    if (!c)
        return;
    kp_ckpt_coord_free(c->coord);
    pthread_mutex_destroy(&c->lock);
    free(c);
    x->coord = NULL;
}
