/* Setting up one process's share of a run (exec_wire.h): the plan's tasks get their inboxes
 * and channels — in-process between two local subtasks, from the transport when one end runs
 * elsewhere — and every local subtask gets its chain of operators, built here from the nodes
 * (operators never construct each other, nor call back into the executor: they report
 * through their subtask's host, engine.h). Runners (exec.c threads, exec_step.c) start from a
 * prepared kp_exec and free it here.
 *
 * Exchange memory: every (producer, consumer) pair of subtasks has a channel with `credits`
 * batches of KP_BATCH_BYTES; credits per channel are the network budget
 * (kp_exec_config.network_bytes, default 512 MiB) divided over all channels of the job,
 * at most 4; a job whose channels cannot have 2 each within the budget is refused before
 * it starts, naming the memory it needs (docs/architecture.md, "Exchange memory"). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "connector.h"
#include "exec_control.h"
#include "exec_coord.h"
#include "exec_input.h"
#include "exec_live.h"
#include "exec_upload.h"
#include "exec_wire.h"

/* The subtasks' host (engine.h): the first failure is recorded under `lock`, and every
 * local inbox and the transport are aborted, which wakes all blocked producers and consumers
 * so the run ends promptly. @locality any thread */
static void exec_fail(void *ctx, const kp_subtask *st, const char *message)
{
    struct kp_exec *x = ctx;
    pthread_mutex_lock(&x->lock);
    if (!atomic_load(&x->failed)) {
        snprintf(x->error, sizeof x->error, "%s: %s", st->name, message);
        atomic_store(&x->failed, 1);
        for (int i = 0; i < x->ntasks; i++)
            for (int j = 0; j < x->tasks[i].parallelism && x->tasks[i].inboxes; j++)
                if (x->tasks[i].inboxes[j])
                    kp_inbox_abort(x->tasks[i].inboxes[j]);
        kp_transport *tr = x->part ? x->part->transport : NULL;
        if (tr && tr->vt->abort)
            tr->vt->abort(tr);
    }
    pthread_mutex_unlock(&x->lock);
}

struct kp_exec *kp_exec_new(const kp_job *job, const kp_exec_config *cfg, const kp_exec_part *part)
{
    struct kp_exec *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->epoch = cfg->epoch ? cfg->epoch : (int64_t)time(NULL);
    x->job = job;
    x->cfg = cfg;
    x->part = part;
    x->host = (kp_subtask_host){exec_fail, x, &x->failed};
    x->ckpt_on = cfg->ckpt.interval_ms > 0 || cfg->control != NULL;
    pthread_mutex_init(&x->lock, NULL);
    return x;
}

/* ---- planning ------------------------------------------------------------------------ */

/* Whether subtask j of the task headed by node `task_id` runs in this process. */
static int runs_here(const struct kp_exec *x, int task_id, int j)
{
    if (!x->part)
        return 1;
    for (int i = 0; i < x->part->nlocal; i++)
        if (x->part->local[i].task_id == task_id && x->part->local[i].subtask == j)
            return 1;
    return 0;
}

static int transport_error(struct kp_exec *x, const char *what, kp_channel_id id, const char *err)
{
    snprintf(x->error, sizeof x->error, "%s channel %d/%d -> %d/%d: %s", what, id.producer_task,
             id.producer_subtask, id.consumer_task, id.consumer_subtask, err);
    atomic_store(&x->failed, 1);
    return -1;
}

/* The inbox of local consumer subtask j of t; inbound channels from remote producers are
 * handed to the transport. */
static int open_inbox(struct kp_exec *x, task *t, int j)
{
    if (!(t->inboxes[j] = kp_inbox_new(t->upstream, x->credits)))
        return -1;
    for (int in = 0; in < t->plan->nin; in++) {
        const kp_plan_task *up = kp_plan_task_by_id(&x->plan, t->plan->in[in].task);
        for (int p = 0; p < up->parallelism; p++) {
            if (runs_here(x, up->id, p))
                continue;
            kp_channel_id id = {up->id, p, t->plan->id, j, in};
            char err[512] = "no transport for a remote subtask";
            kp_transport *tr = x->part->transport;
            kp_channel *ch =
                kp_inbox_channel(t->inboxes[j], kp_plan_channel(&x->plan, t->plan, in, p));
            if (!tr || tr->vt->in_channel(tr, id, ch, err, sizeof err) != 0)
                return transport_error(x, "inbound", id, err);
        }
    }
    return 0;
}

/* Every subtask the placement names must exist in the plan. */
static int check_part(struct kp_exec *x)
{
    for (int i = 0; x->part && i < x->part->nlocal; i++) {
        kp_subtask_ref r = x->part->local[i];
        const kp_plan_task *t = kp_plan_task_by_id(&x->plan, r.task_id);
        if (!t || r.subtask < 0 || r.subtask >= t->parallelism) {
            snprintf(x->error, sizeof x->error,
                     "the placement names subtask %d of task %d, which the job does not have",
                     r.subtask, r.task_id);
            atomic_store(&x->failed, 1);
            return -1;
        }
    }
    return 0;
}

static int plan(struct kp_exec *x)
{
    if (kp_plan_build(x->job, &x->plan) != 0 || check_part(x) != 0)
        return -1;
    for (int i = 0; i < x->plan.ntasks; i++) {
        const kp_plan_task *pt = &x->plan.tasks[i];
        const kp_node *n = x->job->nodes[pt->id];
        task *t = &x->tasks[x->ntasks++];
        t->head = n;
        t->plan = pt;
        t->parallelism = pt->parallelism;
        t->upstream = kp_plan_channels(&x->plan, pt);
        x->task_of[n->id] = t;
        if (!n->input || x->ckpt_on) {
            /* room for triggers, completions and aborts of several checkpoints */
            t->ctl = calloc((size_t)t->parallelism, sizeof *t->ctl);
            if (!t->ctl)
                return -1;
            for (int j = 0; j < t->parallelism; j++)
                if (!(t->ctl[j] = kp_mailbox_new(x->ckpt_on ? 64 : 8)))
                    return -1;
        }
        if (!n->input) {
            kp_time drift = x->cfg->align_drift ? x->cfg->align_drift : KP_HOUR;
            if (x->cfg->step_seed)
                drift = -1; /* the scheduler decides the interleaving */
            if (!(t->align = kp_align_new(t->parallelism, drift)))
                return -1;
            continue;
        }
        t->inboxes = calloc((size_t)t->parallelism, sizeof *t->inboxes);
        if (!t->inboxes)
            return -1;
        for (int j = 0; j < t->parallelism; j++)
            if (runs_here(x, pt->id, j) && open_inbox(x, t, j) != 0)
                return -1;
    }
    return 0;
}

/* Credits per channel from the network budget; -1 (with the reason) if even 2 do not fit. */
static int size_exchanges(struct kp_exec *x)
{
    long long channels = 0;
    for (int i = 0; i < x->job->nnodes; i++) {
        const kp_node *n = x->job->nodes[i];
        if (n->input && kp_plan_is_head(n))
            channels += (long long)n->input->parallelism * n->parallelism;
    }
    size_t budget = x->cfg->network_bytes ? x->cfg->network_bytes : (size_t)512 << 20;
    long long fit = channels ? (long long)(budget / sizeof(kp_batch)) / channels : 4;
    if (x->cfg->step_seed) {
        x->credits = 1 << 20; /* single-threaded: a producer must never wait */
        return 0;
    }
    if (fit < 2) {
        snprintf(x->error, sizeof x->error,
                 "the job's exchanges need %lld channels x 2 batches x %zu KiB = %lld MiB of "
                 "record batches, above the network memory budget of %zu MiB: lower the "
                 "parallelism or raise the budget (--network-memory-mb)",
                 channels, sizeof(kp_batch) >> 10,
                 (channels * 2 * (long long)sizeof(kp_batch)) >> 20, budget >> 20);
        return -1;
    }
    int want = x->cfg->credits ? x->cfg->credits : 4;
    x->credits = fit < want ? (int)fit : want;
    return 0;
}

const kp_binding *kp_exec_binding(const kp_exec_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nbindings; i++)
        if (!strcmp(cfg->bindings[i].name, name))
            return &cfg->bindings[i];
    return NULL;
}

/* ---- wiring one subtask ------------------------------------------------------------------ */

static kp_op *build(subtask_rt *s, const kp_node *n);

/* The channel from subtask s into consumer subtask j of task t: its inbox's when j runs
 * here, else the transport's. NULL after failing s. */
static kp_channel *out_channel(subtask_rt *s, task *t, int j)
{
    struct kp_exec *x = s->x;
    int in = 0, self = s->t->plan->id;
    while (in < t->plan->nin - 1 && t->plan->in[in].task != self)
        in++;
    if (t->inboxes[j])
        return kp_inbox_channel(t->inboxes[j], kp_plan_channel(&x->plan, t->plan, in, s->st.index));
    kp_channel_id id = {self, s->st.index, t->plan->id, j, in};
    kp_transport *tr = x->part ? x->part->transport : NULL;
    char err[512] = "no transport for a remote subtask";
    kp_channel *ch = tr ? tr->vt->out_channel(tr, id, x->credits, err, sizeof err) : NULL;
    if (!ch)
        kp_subtask_fail(&s->st, "outbound channel %d/%d -> %d/%d: %s", id.producer_task,
                        id.producer_subtask, id.consumer_task, id.consumer_subtask, err);
    return ch;
}

static int add_out(subtask_rt *s, kp_op *op, const kp_node *child, int late)
{
    kp_op *o;
    if (!kp_plan_is_head(child)) {
        o = build(s, child);
    } else {
        struct kp_exec *x = s->x;
        task *t = x->task_of[child->id];
        kp_channel **chans = malloc((size_t)t->parallelism * sizeof *chans);
        if (!chans)
            return kp_subtask_fail(&s->st, "out of memory");
        for (int j = 0; j < t->parallelism; j++)
            if (!(chans[j] = out_channel(s, t, j))) {
                free(chans);
                return -1;
            }
        o = kp_op_exchange_new(&s->st, child->input, kp_plan_edge(child->input, child), chans,
                               t->parallelism);
        free(chans);
        if (o)
            s->ops[s->nops++] = o;
    }
    if (!o)
        return -1;
    if (late)
        kp_op_window_set_late(op, o);
    else
        op->out[op->nout++] = o;
    return 0;
}

/* The restored sink states an opening sink writer gets (kp_endpoint.restored_state). */
typedef struct sink_states {
    kp_sink_state *v;
    int n, cap, subtask, parallelism, oom;
} sink_states;

static int collect_sink_state(void *ctx, const kp_restore_entry *e)
{
    sink_states *ss = ctx;
    if (e->is_dir || e->subtask % ss->parallelism != ss->subtask)
        return 0;
    if (ss->n == ss->cap) {
        int cap = ss->cap ? 2 * ss->cap : 4;
        kp_sink_state *v = realloc(ss->v, (size_t)cap * sizeof *v);
        if (!v) {
            ss->oom = 1;
            return 1;
        }
        ss->v = v;
        ss->cap = cap;
    }
    ss->v[ss->n++] = (kp_sink_state){e->subtask, e->data, e->len};
    return 0;
}

static kp_sink_writer *open_sink(subtask_rt *s, const kp_node *n)
{
    const kp_binding *b = kp_exec_binding(s->x->cfg, n->endpoint);
    char err[512];
    if (!b) {
        kp_subtask_fail(&s->st, "sink '%s' is not bound: pass --sink %s=URI", n->endpoint,
                        n->endpoint);
        return NULL;
    }
    const kp_connector *c = kp_connector_find(b->uri);
    if (!c || !c->open_sink) {
        kp_subtask_fail(&s->st, "sink '%s': no connector for '%s'", n->endpoint, b->uri);
        return NULL;
    }
    kp_endpoint ep = {.name = n->endpoint,
                      .uri = b->uri,
                      .subtask = s->st.index,
                      .parallelism = s->st.parallelism,
                      .conf = s->st.conf,
                      .epoch = s->st.epoch,
                      .cancelled = kp_subtask_cancel_probe,
                      .cancel_arg = &s->st,
                      .job = s->x->job->name,
                      .uid = n->uid,
                      .checkpoint_interval_ms = s->x->cfg->ckpt.interval_ms};
    sink_states ss = {.subtask = s->st.index, .parallelism = s->st.parallelism};
    if (s->x->cfg->restore) {
        kp_restore_each(s->x->cfg->restore, n->uid, "sink", collect_sink_state, &ss);
        if (ss.oom) {
            free(ss.v);
            kp_subtask_fail(&s->st, "sink '%s': out of memory", n->endpoint);
            return NULL;
        }
        ep.restored_checkpoint = kp_restore_id(s->x->cfg->restore);
        ep.restored_state = ss.v;
        ep.nrestored_state = ss.n;
    }
    kp_sink_writer *w = c->open_sink(&ep, err, sizeof err);
    free(ss.v);
    if (!w)
        kp_subtask_fail(&s->st, "sink '%s' (%s): %s", n->endpoint, b->uri, err);
    return w;
}

static kp_op *build(subtask_rt *s, const kp_node *n)
{
    kp_op *op = NULL;
    switch (n->kind) {
    case KP_NODE_SOURCE:
        return NULL; /* sources are run by source.c, never built as operators */
    case KP_NODE_WINDOW:
        op = n->u.window.spec.kind == KP_WINDOW_SESSION ? kp_op_session_new(&s->st, n)
                                                        : kp_op_window_new(&s->st, n);
        break;
    case KP_NODE_PROCESS:
        op = kp_op_process_new(&s->st, n);
        break;
    case KP_NODE_SINK: {
        kp_sink_writer *w = open_sink(s, n);
        op = w ? kp_op_sink_new(&s->st, n, w) : NULL;
        break;
    }
    case KP_NODE_AGGREGATE:
        return NULL; /* part of its window */
    default:
        op = kp_op_basic_new(&s->st, n);
    }
    if (!op)
        return NULL;
    s->ops[s->nops++] = op;
    const kp_node *feeds = n->kind == KP_NODE_WINDOW ? n->u.window.aggregate : n;
    for (int i = 0; i < feeds->noutputs; i++)
        if (add_out(s, op, feeds->outputs[i], 0) != 0)
            return NULL;
    if (n->kind == KP_NODE_WINDOW && n->u.window.late && add_out(s, op, n->u.window.late, 1) != 0)
        return NULL;
    return op;
}

/* A pseudo-operator standing for the source node: its outputs are the chain after it. */
static const kp_op_vt source_pseudo_vt;

static int wire(subtask_rt *s)
{
    const kp_node *head = s->t->head;
    if (head->kind != KP_NODE_SOURCE) {
        s->chain = build(s, head);
        return s->chain ? 0 : -1;
    }
    kp_op *src = calloc(1, sizeof *src);
    if (!src)
        return kp_subtask_fail(&s->st, "out of memory");
    *src = (kp_op){.vt = &source_pseudo_vt, .node = head, .st = &s->st};
    s->ops[s->nops++] = src;
    s->chain = src;
    for (int i = 0; i < head->noutputs; i++)
        if (add_out(s, src, head->outputs[i], 0) != 0)
            return -1;
    return 0;
}

/* The caller's live counters of subtask j of task `task_id`, or NULL (exec_live.h). */
static kp_subtask_live *live_of(const kp_exec_config *cfg, int task_id, int j)
{
    for (int i = 0; i < cfg->nlive; i++)
        if (cfg->live[i].task_id == task_id && cfg->live[i].subtask == j) {
            atomic_store(&cfg->live[i].watermark_ms, KP_TIME_MIN);
            return &cfg->live[i];
        }
    return NULL;
}

static void pseudo_destroy(kp_op *op)
{
    free(op);
}
static const kp_op_vt source_pseudo_vt = {.destroy = pseudo_destroy};

/* A subtask's finished snapshot goes to the uploader, a decline to the hooks (exec_ckpt.h). */
static void ckpt_done(void *ctx, kp_snapshot *snap)
{
    struct kp_exec *x = ctx;
    kp_uploader_push(x->uploader, snap);
}

static void ckpt_decline(void *ctx, int64_t id, int task_id, int subtask, const char *reason)
{
    struct kp_exec *x = ctx;
    x->hooks.decline(x->hooks.ctx, id, task_id, subtask, reason);
}

/* kp_ckpt_out.at_end: a local run takes a final checkpoint (exec_coord_local.c), a
 * taskmanager's when its jobmanager flags final checkpoints (the acknowledgements tell it who
 * is at the end); else NULL: the sources end at once. */
static void (*final_at_end(const kp_exec_config *cfg))(void *)
{
    if (!cfg->control)
        return kp_exec_coord_local_at_end;
    return kp_exec_control_final_on(cfg->control) ? kp_exec_coord_remote_at_end : NULL;
}

static int create_subtasks(struct kp_exec *x)
{
    int total = 0;
    for (int i = 0; i < x->ntasks; i++)
        total += x->tasks[i].parallelism;
    x->subtasks = calloc((size_t)total, sizeof *x->subtasks);
    if (!x->subtasks)
        return -1;
    for (int i = 0; i < x->ntasks; i++) {
        task *t = &x->tasks[i];
        for (int j = 0; j < t->parallelism; j++) {
            if (!runs_here(x, t->plan->id, j))
                continue;
            subtask_rt *s = calloc(1, sizeof *s);
            if (!s)
                return -1;
            x->subtasks[x->nsubtasks++] = s;
            s->t = t;
            s->x = x;
            if (t->inboxes) {
                s->cons = (consumer){.in = calloc((size_t)t->upstream, sizeof(input_state)),
                                     .n = t->upstream,
                                     .cur = KP_TIME_MIN};
                if (!s->cons.in)
                    return -1;
                for (int k = 0; k < t->upstream; k++)
                    s->cons.in[k] = (input_state){.wm = KP_TIME_MIN};
            }
            s->st = (kp_subtask){.host = &x->host,
                                 .job = x->job,
                                 .index = j,
                                 .parallelism = t->parallelism,
                                 .metrics = &x->metrics,
                                 .state_dir = x->cfg->state_dir,
                                 .state_cache_bytes = x->cfg->state_cache_bytes,
                                 .rocksdb_cache_bytes = x->cfg->rocksdb_cache_bytes,
                                 .rocksdb_memtable_bytes = x->cfg->rocksdb_memtable_bytes,
                                 .ctl = t->ctl ? t->ctl[j] : NULL,
                                 /* aligned only when threads run (the scheduler orders steps)
                                  * and all of a source's subtasks run here */
                                 .coordinator = t->align && t->parallelism > 1 &&
                                                        !x->cfg->step_seed && !x->part
                                                    ? x->coordinator
                                                    : NULL,
                                 .task_id = i,
                                 .align_drift = x->cfg->align_drift ? x->cfg->align_drift : KP_HOUR,
                                 .conf = x->cfg->conf,
                                 .epoch = x->epoch,
                                 .print_stats = x->cfg->print_stats,
                                 .live = live_of(x->cfg, t->plan->id, j),
                                 .restore = x->cfg->restore};
            if (x->ckpt_on) {
                s->ckpt = (kp_ckpt_out){.done = ckpt_done,
                                        .decline = ckpt_decline,
                                        .ctx = x,
                                        .mode = x->cfg->ckpt.mode,
                                        .task = t->plan->id,
                                        .at_end = final_at_end(x->cfg)};
                s->st.ckpt = &s->ckpt;
            }
            snprintf(s->st.name, sizeof s->st.name, "%s (%d/%d)", t->head->name, j + 1,
                     t->parallelism);
        }
    }
    for (int i = 0; i < x->nsubtasks; i++)
        if (wire(x->subtasks[i]) != 0)
            return -1;
    return 0;
}

/* Operators first (an exchange hands its unsent batches to their channels), then the
 * transport lets go of the channels, then the inboxes go. */
void kp_exec_free(struct kp_exec *x, int ok)
{
    for (int i = 0; i < x->nsubtasks; i++) {
        subtask_rt *s = x->subtasks[i];
        for (int j = s->nops - 1; j >= 0; j--)
            s->ops[j]->vt->destroy(s->ops[j]);
        kp_exec_input_free(s, &s->cons);
        free(s->cons.in);
        free(s);
    }
    free(x->subtasks);
    kp_transport *tr = x->part ? x->part->transport : NULL;
    if (tr && tr->vt->drop)
        tr->vt->drop(tr, ok);
    for (int i = 0; i < x->ntasks; i++) {
        for (int j = 0; x->tasks[i].inboxes && j < x->tasks[i].parallelism; j++)
            kp_inbox_free(x->tasks[i].inboxes[j]);
        free(x->tasks[i].inboxes);
        for (int j = 0; x->tasks[i].ctl && j < x->tasks[i].parallelism; j++)
            kp_mailbox_free(x->tasks[i].ctl[j]);
        free(x->tasks[i].ctl);
        kp_align_free(x->tasks[i].align);
    }
    kp_mailbox_free(x->coordinator);
    pthread_mutex_destroy(&x->lock);
    free(x);
}

int kp_exec_prepare(struct kp_exec *x)
{
    int total = 0;
    for (int i = 0; i < x->job->nnodes; i++)
        total += x->job->nodes[i]->parallelism;
    if (size_exchanges(x) != 0)
        return -1;
    x->coordinator = kp_mailbox_new(16 + 2 * total); /* one report + one DONE each */
    if (!x->coordinator || plan(x) != 0 || create_subtasks(x) != 0) {
        if (!atomic_load(&x->failed))
            snprintf(x->error, sizeof x->error, "out of memory while planning the job");
        return -1;
    }
    return 0;
}
