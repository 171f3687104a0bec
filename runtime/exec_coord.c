/* The executor's side of checkpoint coordination (exec_coord.h). With cfg->control (a
 * taskmanager) the triggers come from outside and acknowledgements go to cfg->ckpt_hooks;
 * without it (kappa run --local) the run coordinates its own checkpoints with the
 * coordinator's state machine (checkpoint_coord.h, exec_coord_local.c) into cfg->ckpt.dir,
 * under the job's name (ROOT/<job name>/chk-<N>), a taskmanager's run under cfg->ckpt_job.
 *
 * A subtask that ended takes no more checkpoints (its mailbox is no longer read), so the
 * local coordinator triggers none once a local subtask has ended. A local run's sources
 * therefore wait at the end of their bounded input until a checkpoint taken after every
 * source's end completed (KP_CTL_FINAL, exec_coord_local.c): the final checkpoint, after
 * which nothing changes. A taskmanager's sources wait likewise for the jobmanager's final
 * completion (NotifyCheckpointComplete.final → kp_exec_control_final; docs/checkpoints.md,
 * Bounded inputs). @locality the run's coordinator thread, except the hooks (the uploader
 * thread and subtask threads) */
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint_store.h"
#include "exec_control.h"
#include "exec_coord.h"
#include "exec_upload.h"

void kp_exec_ckpt_dispatch(struct kp_exec *x, const kp_ctl *m)
{
    for (int i = 0; i < x->nsubtasks; i++) {
        subtask_rt *s = x->subtasks[i];
        int source = s->t->head->kind == KP_NODE_SOURCE;
        int trigger = m->kind == KP_CTL_TRIGGER || m->kind == KP_CTL_DRAIN;
        if (!s->st.ctl || ((trigger || m->kind == KP_CTL_FINAL) && !source))
            continue;
        kp_ctl msg = {m->kind, s->st.task_id, s->st.index, m->value};
        if (kp_mailbox_post(s->st.ctl, msg) != 0 && trigger)
            x->hooks.decline(x->hooks.ctx, m->value, s->ckpt.task, s->st.index,
                             "its control mailbox is full");
    }
}

void kp_exec_coord_remote_at_end(void *ctx)
{
    (void)ctx;
}

static int ckpt_fail(struct kp_exec *x, const char *what, const char *err)
{
    snprintf(x->error, sizeof x->error, "checkpoints: %s: %s", what, err);
    atomic_store(&x->failed, 1);
    return -1;
}

int kp_exec_ckpt_start(struct kp_exec *x, int threaded)
{
    const kp_exec_config *cfg = x->cfg;
    char err[512];
    if (!x->ckpt_on)
        return 0;
    if (!cfg->ckpt.dir || !cfg->ckpt.dir[0])
        return ckpt_fail(x, "no storage directory", "set the checkpoint directory");
    if (cfg->control && !cfg->ckpt_hooks)
        return ckpt_fail(x, "a controlled run", "needs ckpt_hooks for its acknowledgements");
    const char *job = cfg->ckpt_job ? cfg->ckpt_job : x->job->name;
    if (!(x->store = kp_ckpt_store_open(cfg->ckpt.dir, job, err, sizeof err)))
        return ckpt_fail(x, cfg->ckpt.dir, err);
    if (cfg->control)
        x->hooks = *cfg->ckpt_hooks;
    else if (kp_exec_coord_local_start(x, err, sizeof err) != 0)
        return ckpt_fail(x, "local coordinator", err);
    if (!(x->uploader = kp_uploader_new(x->store, &x->hooks, threaded)))
        return ckpt_fail(x, "uploader", "cannot start its thread");
    return 0;
}

void kp_exec_ckpt_stop(struct kp_exec *x, int ok)
{
    kp_uploader_free(x->uploader, !ok);
    x->uploader = NULL;
    if (!x->cfg->control) {
        kp_exec_coord_local_stop(x);
        /* the run is over and its uploads with it: a checkpoint still pending when the subtasks
         * ended (or were cancelled) is abandoned, and its files go now, not at the next start.
         * The taskmanager's share leaves this to the jobmanager (kp_jm_ckpt_ended). */
        char err[512];
        if (x->store && kp_ckpt_store_gc(x->store, x->cfg->ckpt.retain, INT64_MAX,
                                         kp_wall_ms() + 2000, err, sizeof err) != 0)
            fprintf(stderr, "kappa: cleaning the checkpoint storage up: %s\n", err);
    }
    kp_ckpt_store_free(x->store);
    x->store = NULL;
}

void kp_exec_ckpt_poll(struct kp_exec *x, int running)
{
    kp_ctl m;
    if (!x->ckpt_on)
        return;
    if (x->cfg->control) {
        while (kp_exec_control_take(x->cfg->control, &m, 0))
            kp_exec_ckpt_dispatch(x, &m);
        return;
    }
    kp_exec_coord_local_poll(x, running);
}
