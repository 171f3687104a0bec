/* A deployment's life (deployment.h): created from a Deploy by the session thread, run on its
 * own thread — load the verified plugin, rebuild the graph and compare its hash with the one
 * submitted, check the assigned subtasks against the plan, run them — and reported subtask by
 * subtask through the outbox. The session only ever cancels and joins it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_store.h"
#include "deploy_config.h"
#include "deployment.h"
#include "exec.h"
#include "exec_control.h"
#include "exec_live.h"
#include "graph_codec.h"
#include "net_transport.h"
#include "plan.h"
#include "plugin.h"
#include "tm.h"

struct kp_tm_deployment {
    Kappa__Control__Deploy *d;
    kp_tm_env env;
    char plugin_path[1100];
    char state_dir[1200];
    pthread_t thread;
    int started;
    volatile sig_atomic_t cancel; /* written by the session thread, read by the executor */
    atomic_int done;
    atomic_int running;       /* the executor runs: live counters move */
    kp_subtask_live *live;    /* one per local subtask, in the Deploy's order (exec_live.h) */
    kp_exec_control *control; /* checkpoint triggers/completions into the run (thread-safe) */
    kp_ckpt_hooks hooks;      /* the run's acks/declines → the outbox */
};

/* The cancel flag, read atomically (the session thread sets it; the executor polls it). */
static int cancelled(kp_tm_deployment *dep)
{
    return __atomic_load_n(&dep->cancel, __ATOMIC_RELAXED) != 0;
}

/* kp_plugin_load and kp_plugin_close run one at a time in a process (plugin.h). */
static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

kp_tm_deployment *kp_tm_deployment_new(Kappa__Control__Deploy *d, const kp_tm_env *env)
{
    kp_tm_deployment *dep = calloc(1, sizeof *dep);
    if (!dep)
        return NULL;
    dep->live = calloc(d->n_locals ? d->n_locals : 1, sizeof *dep->live);
    if (!dep->live) {
        free(dep);
        return NULL;
    }
    for (size_t i = 0; i < d->n_locals; i++) {
        dep->live[i].task_id = d->locals[i]->task_id;
        dep->live[i].subtask = (int)d->locals[i]->subtask;
    }
    dep->control = kp_exec_control_new();
    if (!dep->control) {
        free(dep->live);
        free(dep);
        return NULL;
    }
    dep->d = d;
    dep->env = *env;
    snprintf(dep->state_dir, sizeof dep->state_dir, "%s/jobs/%s/%u", env->state_dir, d->job_id,
             d->attempt);
    return dep;
}

const Kappa__Control__Deploy *kp_tm_deployment_msg(const kp_tm_deployment *dep)
{
    return dep->d;
}

/* @locality the session thread or the deployment's thread (the outbox locks) */
void kp_tm_deployment_report(kp_tm_deployment *dep, Kappa__Control__TaskState__State state,
                             const char *message)
{
    for (size_t i = 0; i < dep->d->n_locals; i++) {
        Kappa__Control__TaskState ts = KAPPA__CONTROL__TASK_STATE__INIT;
        ts.job_id = dep->d->job_id;
        ts.attempt = dep->d->attempt;
        ts.task_id = dep->d->locals[i]->task_id;
        ts.subtask = dep->d->locals[i]->subtask;
        ts.state = state;
        ts.message = (char *)(message ? message : "");
        if (kp_tm_outbox_post(dep->env.outbox, KP_FRAME_TASK_STATE, &ts.base) != 0)
            kp_tm_log("job %s: out of memory reporting a task state", dep->d->job_id);
    }
}

/* The shares of wall time since l's previous report its thread was blocked on exchange
 * credits, waiting for input and busy; -1 each on the first report (no interval yet). */
static void live_ratios(kp_subtask_live *l, double *blocked, double *idle, double *busy)
{
    long long now = kp_mono_ms() * 1000, b = kp_live_get(&l->blocked_us),
              st = kp_live_get(&l->starved_us);
    long long dt = now - l->rep_mono_us;
    *blocked = *idle = *busy = -1;
    if (l->rep_mono_us && dt > 0) {
        double rb = (double)(b - l->rep_blocked_us) / (double)dt;
        double ri = (double)(st - l->rep_starved_us) / (double)dt;
        *blocked = rb < 0 ? 0 : rb > 1 ? 1 : rb;
        *idle = ri < 0 ? 0 : ri > 1 - *blocked ? 1 - *blocked : ri;
        *busy = 1 - *blocked - *idle;
    }
    l->rep_mono_us = now;
    l->rep_blocked_us = b;
    l->rep_starved_us = st;
}

/* @locality the session thread or the deployment's thread (the outbox locks; the counters
 * are read with relaxed loads while the subtask threads write them) */
void kp_tm_deployment_post_metrics(kp_tm_deployment *dep)
{
    for (size_t i = 0; i < dep->d->n_locals; i++) {
        kp_subtask_live *l = &dep->live[i];
        Kappa__Control__Metrics m = KAPPA__CONTROL__METRICS__INIT;
        m.job_id = dep->d->job_id;
        m.attempt = dep->d->attempt;
        m.task_id = l->task_id;
        m.subtask = (uint32_t)l->subtask;
        m.records_in = (uint64_t)kp_live_get(&l->records_in);
        m.records_out = (uint64_t)kp_live_get(&l->records_out);
        m.bytes_in = (uint64_t)kp_live_get(&l->bytes_in);
        m.bytes_out = (uint64_t)kp_live_get(&l->bytes_out);
        m.watermark_ms = kp_live_get(&l->watermark_ms);
        m.state_bytes = (uint64_t)kp_live_get(&l->state_bytes);
        live_ratios(&dep->live[i], &m.backpressured_ratio, &m.idle_ratio, &m.busy_ratio);
        char src[KP_LIVE_JSON_MAX], snk[KP_LIVE_JSON_MAX];
        kp_live_json_get(&dep->live[i].source, src, sizeof src);
        kp_live_json_get(&dep->live[i].sink, snk, sizeof snk);
        m.source_json = src;
        m.sink_json = snk;
        if (kp_tm_outbox_post(dep->env.outbox, KP_FRAME_METRICS, &m.base) != 0)
            kp_tm_log("job %s: out of memory reporting metrics", dep->d->job_id);
    }
}

/* kp_ckpt_hooks.ack: a local subtask's snapshot is in storage. @locality the run's uploader
 * thread (the outbox locks) */
static void hook_ack(void *ctx, int64_t id, int task_id, int subtask, const char *ack_json)
{
    kp_tm_deployment *dep = ctx;
    Kappa__Control__AckCheckpoint a = KAPPA__CONTROL__ACK_CHECKPOINT__INIT;
    a.job_id = dep->d->job_id;
    a.attempt = dep->d->attempt;
    a.checkpoint_id = id;
    a.task_id = task_id;
    a.subtask = (uint32_t)subtask;
    a.ack_json = (char *)ack_json;
    if (kp_tm_outbox_post(dep->env.outbox, KP_FRAME_ACK_CHECKPOINT, &a.base) != 0)
        kp_tm_log("job %s: out of memory acknowledging checkpoint %lld", dep->d->job_id,
                  (long long)id);
}

/* kp_ckpt_hooks.decline. @locality the uploader or a subtask thread (the outbox locks) */
static void hook_decline(void *ctx, int64_t id, int task_id, int subtask, const char *reason)
{
    kp_tm_deployment *dep = ctx;
    Kappa__Control__DeclineCheckpoint dc = KAPPA__CONTROL__DECLINE_CHECKPOINT__INIT;
    dc.job_id = dep->d->job_id;
    dc.attempt = dep->d->attempt;
    dc.checkpoint_id = id;
    dc.task_id = task_id;
    dc.subtask = (uint32_t)subtask;
    dc.reason = (char *)(reason ? reason : "");
    kp_tm_log("job %s attempt %u: task %d subtask %d declined checkpoint %lld: %s", dep->d->job_id,
              dep->d->attempt, task_id, subtask, (long long)id, dc.reason);
    if (kp_tm_outbox_post(dep->env.outbox, KP_FRAME_DECLINE_CHECKPOINT, &dc.base) != 0)
        kp_tm_log("job %s: out of memory declining checkpoint %lld", dep->d->job_id, (long long)id);
}

void kp_tm_deployment_checkpoint(kp_tm_deployment *dep, kp_frame_type type, int64_t id,
                                 int64_t timestamp_ms)
{
    if (type == KP_FRAME_TRIGGER_CHECKPOINT)
        kp_exec_control_trigger(dep->control, id, timestamp_ms);
    else if (type == KP_FRAME_CHECKPOINT_COMPLETE)
        kp_exec_control_complete(dep->control, id);
    else
        kp_exec_control_abort(dep->control, id);
}

void kp_tm_deployment_drain(kp_tm_deployment *dep, int64_t id)
{
    kp_exec_control_drain(dep->control, id);
}

void kp_tm_deployment_final(kp_tm_deployment *dep, int64_t id)
{
    kp_exec_control_final(dep->control, id);
}

int kp_tm_deployment_running(const kp_tm_deployment *dep)
{
    return atomic_load(&((kp_tm_deployment *)dep)->running);
}

/* The plugin must build exactly the graph that was submitted (same code, same -p). */
static int check_graph(kp_tm_deployment *dep, const kp_job *job, char *err, size_t errlen)
{
    char hex[KP_SHA256_HEX];
    if (kp_graph_hash(job, hex, err, errlen) != 0)
        return -1;
    if (strcmp(hex, dep->d->graph_hash) != 0) {
        snprintf(err, errlen,
                 "the plugin builds a different graph than the one submitted (graph hash %s, "
                 "submitted %s, parallelism override %u): refusing to run it",
                 hex, dep->d->graph_hash, dep->d->parallelism);
        return -1;
    }
    return 0;
}

/* Checks the local subtasks against the job's plan; *whole when nothing runs elsewhere. */
static int check_locals(kp_tm_deployment *dep, const kp_job *job, int *whole, char *err,
                        size_t errlen)
{
    kp_plan *plan = malloc(sizeof *plan); /* ~20 KiB: not on the thread's stack */
    int rc = plan ? kp_plan_build(job, plan) : -1;
    if (rc != 0)
        snprintf(err, errlen, "%s",
                 plan ? "the job's physical plan cannot be built" : "out of memory");
    else
        rc = kp_tm_locals_check(dep->d, plan, whole, err, errlen);
    free(plan);
    return rc;
}

/* A fresh state directory for the attempt (a crashed earlier run of it may have left one). */
static int make_state_dir(kp_tm_deployment *dep, char *err, size_t errlen)
{
    kp_tm_rmtree(dep->state_dir);
    int made = kp_tm_mkdirs(dep->state_dir);
    for (int i = 0; made != 0 && errno == ENOENT && i < 3; i++)
        made = kp_tm_mkdirs(dep->state_dir); /* an older attempt just removed the job's dir */
    if (made != 0)
        snprintf(err, errlen, "cannot create %.600s: %s", dep->state_dir, strerror(errno));
    return made;
}

/* No checkpoints yet: the state dies with its attempt, the job's directory with its last. */
static void remove_state_dir(kp_tm_deployment *dep)
{
    kp_tm_rmtree(dep->state_dir);
    char *slash = strrchr(dep->state_dir, '/');
    *slash = 0;
    rmdir(dep->state_dir);
    *slash = '/';
}

/* The checkpoint the Deploy names (restore_path), opened and verified; none = a fresh start. */
static int open_restore(kp_tm_deployment *dep, kp_restore **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!dep->d->restore_path || !*dep->d->restore_path)
        return 0;
    char why[768];
    *out = kp_restore_open(dep->d->restore_path, why, sizeof why);
    if (!*out) {
        snprintf(err, errlen, "cannot restore checkpoint %.200s: %s", dep->d->restore_path, why);
        return -1;
    }
    kp_tm_log("job %s attempt %u: restoring checkpoint %lld from %s", dep->d->job_id,
              dep->d->attempt, (long long)kp_restore_id(*out), dep->d->restore_path);
    return 0;
}

/* The executor: the whole job in this process, or the local subtasks with the others reached
 * over the data plane. */
static int execute(kp_tm_deployment *dep, const kp_job *job, const kp_exec_config *cfg, int whole,
                   kp_exec_stats *stats, char *err, size_t errlen)
{
    if (whole)
        return kp_exec_run(job, cfg, stats, err, errlen);
    kp_subtask_ref *local = calloc(dep->d->n_locals, sizeof *local);
    if (!local) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < dep->d->n_locals; i++)
        local[i] = (kp_subtask_ref){dep->d->locals[i]->task_id, (int)dep->d->locals[i]->subtask};
    kp_net_transport t;
    kp_net_transport_init(&t, dep->env.net, dep->d->job_id, dep->d->attempt, kp_tm_placement_peer,
                          dep->d);
    kp_exec_part part = {.local = local, .nlocal = (int)dep->d->n_locals, .transport = &t.base};
    int rc = kp_exec_run_part(job, cfg, &part, stats, err, errlen);
    free(local);
    return rc;
}

/* Runs the job's subtasks assigned here. */
static int run_job(kp_tm_deployment *dep, const kp_job *job, char *err, size_t errlen)
{
    int whole = 0;
    kp_tm_exec_args args;
    if (check_locals(dep, job, &whole, err, errlen) != 0 ||
        kp_tm_exec_args_build(dep->d, &args, err, errlen) != 0)
        return -1;
    kp_exec_config cfg = {.bindings = args.bindings,
                          .nbindings = args.nbindings,
                          .conf = args.conf,
                          .state_dir = dep->state_dir,
                          .epoch = (int64_t)dep->d->epoch,
                          .align_drift = -1, /* off across processes (docs/cluster.md) */
                          .cancel = &dep->cancel,
                          .live = dep->live,
                          .nlive = (int)dep->d->n_locals};
    kp_restore *restore = NULL;
    if (kp_tm_ckpt_config(dep->d, &cfg.ckpt, err, errlen) != 0 ||
        kp_tm_memory_apply(dep->d, job, dep->env.slot_bytes, &args, &cfg, err, errlen) != 0 ||
        make_state_dir(dep, err, errlen) != 0 || open_restore(dep, &restore, err, errlen) != 0) {
        kp_tm_exec_args_free(&args);
        return -1;
    }
    dep->hooks = (kp_ckpt_hooks){.ack = hook_ack, .decline = hook_decline, .ctx = dep};
    if (cfg.ckpt.dir) { /* a run with a control takes checkpoints: it needs their storage */
        cfg.control = dep->control;
        cfg.ckpt_hooks = &dep->hooks;
        /* periodic checkpoints: the jobmanager flags a final one, the sources wait for it at
         * their end (savepoints only: nothing would come, they end at once) */
        if (cfg.ckpt.interval_ms > 0)
            kp_exec_control_sends_final(dep->control);
    }
    cfg.restore = restore;
    cfg.ckpt_job = dep->d->job_id; /* the jobmanager commits under DIR/<job id> */
    kp_exec_stats stats = {0};
    kp_tm_deployment_report(dep, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING, "");
    kp_tm_log("job %s attempt %u: running %zu subtasks%s", dep->d->job_id, dep->d->attempt,
              dep->d->n_locals, whole ? " (the whole job)" : ", the rest elsewhere");
    atomic_store(&dep->running, 1);
    int rc = execute(dep, job, &cfg, whole, &stats, err, errlen);
    atomic_store(&dep->running, 0);
    kp_tm_deployment_post_metrics(dep); /* the final counts, before the final state */
    kp_tm_log("job %s attempt %u: %s after %.2f s, %lld records in, %lld out", dep->d->job_id,
              dep->d->attempt,
              rc == 0          ? "finished"
              : cancelled(dep) ? "cancelled"
                               : "failed",
              stats.seconds, stats.records_in, stats.records_out);
    kp_tm_exec_args_free(&args);
    kp_restore_free(restore);
    remove_state_dir(dep);
    return rc;
}

static Kappa__Control__TaskState__State run(kp_tm_deployment *dep, char *err, size_t errlen)
{
    char lerr[1024];
    pthread_mutex_lock(&plugin_lock);
    kp_plugin_handle *h =
        kp_plugin_load(dep->plugin_path, (int)dep->d->parallelism, lerr, sizeof lerr);
    pthread_mutex_unlock(&plugin_lock);
    if (!h) {
        snprintf(err, errlen, "cannot load the plugin: %.900s", lerr);
        return KAPPA__CONTROL__TASK_STATE__STATE__FAILED;
    }
    int rc = check_graph(dep, kp_plugin_job(h), err, errlen);
    int ran = rc == 0 && !cancelled(dep);
    if (ran)
        rc = run_job(dep, kp_plugin_job(h), err, errlen);
    pthread_mutex_lock(&plugin_lock);
    kp_plugin_close(h);
    pthread_mutex_unlock(&plugin_lock);
    if (rc != 0 && cancelled(dep))
        return KAPPA__CONTROL__TASK_STATE__STATE__CANCELED; /* the executor's "cancelled" */
    if (rc != 0)
        return KAPPA__CONTROL__TASK_STATE__STATE__FAILED;
    return ran ? KAPPA__CONTROL__TASK_STATE__STATE__FINISHED
               : KAPPA__CONTROL__TASK_STATE__STATE__CANCELED;
}

/* @locality the deployment's own thread */
static void *deployment_main(void *arg)
{
    kp_tm_deployment *dep = arg;
    char err[1024] = "";
    Kappa__Control__TaskState__State st = run(dep, err, sizeof err);
    if (st == KAPPA__CONTROL__TASK_STATE__STATE__FAILED)
        kp_tm_log("job %s attempt %u failed: %s", dep->d->job_id, dep->d->attempt, err);
    kp_tm_deployment_report(dep, st,
                            st == KAPPA__CONTROL__TASK_STATE__STATE__FAILED     ? err
                            : st == KAPPA__CONTROL__TASK_STATE__STATE__CANCELED ? "cancelled"
                                                                                : "");
    atomic_store(&dep->done, 1);
    kp_tm_outbox_wake(dep->env.outbox);
    return NULL;
}

int kp_tm_deployment_start(kp_tm_deployment *dep, const char *plugin_path, char *err, size_t errlen)
{
    snprintf(dep->plugin_path, sizeof dep->plugin_path, "%s", plugin_path);
    int rc = pthread_create(&dep->thread, NULL, deployment_main, dep);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(rc));
        return -1;
    }
    dep->started = 1;
    return 0;
}

int kp_tm_deployment_started(const kp_tm_deployment *dep)
{
    return dep->started;
}

void kp_tm_deployment_cancel(kp_tm_deployment *dep)
{
    __atomic_store_n(&dep->cancel, 1, __ATOMIC_RELAXED);
}

int kp_tm_deployment_done(const kp_tm_deployment *dep)
{
    return atomic_load(&((kp_tm_deployment *)dep)->done);
}

void kp_tm_deployment_free(kp_tm_deployment *dep)
{
    if (!dep)
        return;
    if (dep->started)
        pthread_join(dep->thread, NULL);
    kappa__control__deploy__free_unpacked(dep->d, NULL);
    kp_exec_control_free(dep->control);
    free(dep->live);
    free(dep);
}
