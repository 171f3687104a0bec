/* The local executor: plans tasks from the logical graph, wires operators and channels,
 * runs one thread per subtask and collects the outcome. See exec.h.
 *
 * Threads: the caller's thread plans, starts the subtask threads and then acts as their
 * coordinator — it reads their reports (watermark alignment, their ends) from its mailbox
 * and answers with messages, never through shared state (mailbox.h, align.h). Each subtask
 * thread owns its operators. The first failure is recorded under `lock` and aborts every
 * inbox, which wakes all blocked producers and consumers so the run ends promptly.
 *
 * Exchange memory: every (producer, consumer) pair of subtasks has a channel with `credits`
 * batches of KP_BATCH_BYTES; credits per channel are the network budget
 * (kp_exec_config.network_bytes, default 512 MiB) divided over all channels of the job,
 * at most 4; a job whose channels cannot have 2 each within the budget is refused before
 * it starts, naming the memory it needs (docs/architecture.md, "Exchange memory"). */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>

#include "connector.h"
#include "exec_int.h"

int kp_subtask_fail(kp_subtask *st, const char *fmt, ...)
{
    struct kp_exec *x = st->exec;
    pthread_mutex_lock(&x->lock);
    if (!atomic_load(&x->failed)) {
        int n = snprintf(x->error, sizeof x->error, "%s: ", st->name);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->error + n, sizeof x->error - (size_t)n, fmt, ap);
        va_end(ap);
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
    return -1;
}

int kp_subtask_cancelled(const kp_subtask *st)
{
    return atomic_load_explicit(&st->exec->failed, memory_order_relaxed);
}

int kp_subtask_cancel_probe(void *subtask)
{
    return kp_subtask_cancelled(subtask);
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

static int plan(struct kp_exec *x)
{
    if (kp_plan_build(x->job, &x->plan) != 0)
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
        if (!n->input) {
            t->ctl = calloc((size_t)t->parallelism, sizeof *t->ctl);
            if (!t->ctl)
                return -1;
            for (int j = 0; j < t->parallelism; j++)
                if (!(t->ctl[j] = kp_mailbox_new(8)))
                    return -1;
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
    struct kp_exec *x = s->st.exec;
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
        struct kp_exec *x = s->st.exec;
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

static kp_sink_writer *open_sink(subtask_rt *s, const kp_node *n)
{
    const kp_binding *b = kp_exec_binding(s->st.exec->cfg, n->endpoint);
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
                      .cancel_arg = &s->st};
    kp_sink_writer *w = c->open_sink(&ep, err, sizeof err);
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
        op = kp_op_window_new(&s->st, n);
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

static void pseudo_destroy(kp_op *op)
{
    free(op);
}
static const kp_op_vt source_pseudo_vt = {NULL, NULL, NULL, NULL, pseudo_destroy, NULL};

/* ---- running ------------------------------------------------------------------------------ */

/* The minimum watermark over active inputs; sets *all_idle when every open input is idle. */
static kp_time min_watermark(const input_state *in, int n, int *all_idle, int *all_ended)
{
    kp_time m = KP_TIME_MAX;
    int active = 0, open = 0;
    for (int i = 0; i < n; i++) {
        if (in[i].ended)
            continue;
        open++;
        if (in[i].idle)
            continue;
        active++;
        m = in[i].wm < m ? in[i].wm : m;
    }
    *all_idle = open > 0 && active == 0;
    *all_ended = open == 0;
    return m;
}

static int records(kp_op *head, const kp_batch *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        const kp_rec *r = &b->recs[i];
        kp_event ev = {.key = {(const char *)b->arena + r->key_off, r->key_len},
                       .value = {(const char *)b->arena + r->val_off, r->val_len},
                       .ts = r->ts,
                       .cwm = r->cwm,
                       .hash = r->hash};
        if (head->vt->record(head, &ev) != 0)
            return -1;
    }
    return 0;
}

int kp_exec_consume(subtask_rt *s, consumer *c, kp_batch *b)
{
    kp_inbox *inbox = s->t->inboxes[s->st.index];
    kp_op *head = s->chain;
    input_state *ch = &c->in[b->channel];
    int rc = 0;
    switch (b->kind) {
    case KP_MSG_DATA:
        rc = records(head, b);
        /* a data batch carries its producer's watermark */
        __attribute__((fallthrough));
    case KP_MSG_WATERMARK:
        ch->idle = 0;
        ch->wm = b->watermark > ch->wm ? b->watermark : ch->wm;
        break;
    case KP_MSG_IDLE:
        ch->idle = 1;
        break;
    case KP_MSG_END:
        ch->ended = 1;
        ch->wm = KP_TIME_MAX; /* an input that ended holds nothing back */
        break;
    }
    kp_inbox_release(inbox, b);
    if (rc != 0)
        return -1;
    int all_idle, all_ended;
    kp_time m = min_watermark(c->in, c->n, &all_idle, &all_ended);
    if (all_ended)
        return head->vt->finish(head) != 0 ? -1 : 0;
    if (all_idle && !c->was_idle) {
        /* the last active input went idle or ended: first pass on the furthest watermark any
         * input reached (an input that ended reached KP_TIME_MAX), as Flink's valve does —
         * otherwise windows an ended input completed would wait for idle inputs, and the
         * downstream operators, told "idle", would pass this subtask's results by */
        kp_time top = KP_TIME_MIN;
        for (int i = 0; i < c->n; i++)
            top = c->in[i].wm > top ? c->in[i].wm : top;
        if (top > c->cur) {
            c->cur = top;
            if (head->vt->watermark(head, top) != 0)
                return -1;
        }
        if (head->vt->idle(head) != 0)
            return -1;
    }
    c->was_idle = all_idle;
    if (!all_idle && m > c->cur) {
        c->cur = m;
        if (head->vt->watermark(head, m) != 0)
            return -1;
    }
    return 1;
}

static int consume(subtask_rt *s)
{
    kp_inbox *inbox = s->t->inboxes[s->st.index];
    kp_time ticked = kp_mono_ms();
    for (;;) {
        int timed_out;
        kp_batch *b = kp_inbox_pop_timed(inbox, KP_TICK_MS, &timed_out);
        kp_time now = kp_mono_ms();
        if (now - ticked >= KP_TICK_MS) {
            ticked = now;
            if (kp_op_tick(s->chain, kp_wall_ms()) != 0) {
                if (b)
                    kp_inbox_release(inbox, b);
                return -1;
            }
        }
        if (timed_out)
            continue;
        if (!b)
            return -1;
        int rc = kp_exec_consume(s, &s->cons, b);
        if (rc <= 0)
            return rc;
    }
}

static void *subtask_main(void *arg)
{
    subtask_rt *s = arg;
    int rc = -1;
    const kp_node *head = s->t->head;
    if (kp_subtask_cancelled(&s->st)) {
        rc = -1;
    } else if (head->kind == KP_NODE_SOURCE) {
        const kp_exec_config *cfg = s->st.exec->cfg;
        rc = kp_source_run(&s->st, head, kp_exec_binding(cfg, head->endpoint), s->chain,
                           cfg->watermark_every ? cfg->watermark_every : 1024);
    } else {
        rc = consume(s);
    }
    /* a subtask stopped by a closed channel (a remote end went away) fails the run here */
    if (rc != 0 && !kp_subtask_cancelled(&s->st))
        kp_subtask_fail(&s->st, "stopped: one of its channels was closed");
    kp_mailbox_post(s->st.exec->coordinator,
                    (kp_ctl){KP_CTL_DONE, s->st.task_id, s->st.index, rc == 0 ? 0 : -1});
    return NULL;
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
            if (t->inboxes) {
                s->cons = (consumer){calloc((size_t)t->upstream, sizeof(input_state)), t->upstream,
                                     KP_TIME_MIN, 0};
                if (!s->cons.in)
                    return -1;
                for (int k = 0; k < t->upstream; k++)
                    s->cons.in[k] = (input_state){KP_TIME_MIN, 0, 0};
            }
            s->st = (kp_subtask){.exec = x,
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
                                 .coordinator =
                                     t->ctl && t->parallelism > 1 && !x->cfg->step_seed && !x->part
                                         ? x->coordinator
                                         : NULL,
                                 .task_id = i,
                                 .align_drift = x->cfg->align_drift ? x->cfg->align_drift : KP_HOUR,
                                 .conf = x->cfg->conf,
                                 .epoch = x->epoch,
                                 .print_stats = x->cfg->print_stats};
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
static void teardown(struct kp_exec *x, int ok)
{
    for (int i = 0; i < x->nsubtasks; i++) {
        subtask_rt *s = x->subtasks[i];
        for (int j = s->nops - 1; j >= 0; j--)
            s->ops[j]->vt->destroy(s->ops[j]);
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
}

static void collect_stats(struct kp_exec *x, kp_exec_stats *out, double t0)
{
    kp_metrics *m = &x->metrics;
    *out = (kp_exec_stats){
        .records_in = atomic_load(&m->records_in),
        .bytes_in = atomic_load(&m->bytes_in),
        .decode_errors = atomic_load(&m->decode_errors),
        .dead_lettered = atomic_load(&m->dead_lettered),
        .skipped = atomic_load(&m->skipped),
        .late_records = atomic_load(&m->late_records),
        .windows_fired = atomic_load(&m->windows_fired),
        .records_out = atomic_load(&m->records_out),
        .state_spills = atomic_load(&m->state_spills),
        .state_cache_peak = atomic_load(&m->state_cache_peak),
        .state_rocksdb = atomic_load(&m->state_rocksdb),
        .batches_sent = atomic_load(&m->batches_sent),
        .records_sent = atomic_load(&m->records_sent),
        .seconds = kp_mono_s() - t0,
    };
}

/* Every source and sink must be bound to a URI whose scheme has a connector: checked before
 * anything starts, naming each missing binding. */
static int check_bindings(const kp_job *job, const kp_exec_config *cfg, char *errstr, size_t errlen)
{
    size_t off = 0;
    errstr[0] = 0;
    for (int i = 0; i < job->nnodes; i++) {
        const kp_node *n = job->nodes[i];
        if (n->kind != KP_NODE_SOURCE && n->kind != KP_NODE_SINK)
            continue;
        const char *what = n->kind == KP_NODE_SOURCE ? "source" : "sink";
        const kp_binding *b = kp_exec_binding(cfg, n->endpoint);
        const kp_connector *c = b ? kp_connector_find(b->uri) : NULL;
        int ok = c && (n->kind == KP_NODE_SOURCE ? c->open_source != NULL : c->open_sink != NULL);
        if (ok || off >= errlen)
            continue;
        if (!b)
            off += (size_t)snprintf(errstr + off, errlen - off,
                                    "%s%s '%s' is not bound (pass --%s %s=URI)", off ? "; " : "",
                                    what, n->endpoint, what, n->endpoint);
        else
            off +=
                (size_t)snprintf(errstr + off, errlen - off, "%s%s '%s': no %s connector for '%s'",
                                 off ? "; " : "", what, n->endpoint, what, b->uri);
    }
    return errstr[0] ? -1 : 0;
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

/* The coordinator: serves the subtasks' reports until `running` of them have ended. */
static void coordinate(struct kp_exec *x, int running)
{
    while (running > 0) {
        kp_ctl m;
        if (x->cfg->cancel && *x->cfg->cancel && !atomic_load(&x->failed))
            kp_subtask_fail(&x->subtasks[0]->st, "cancelled");
        if (!kp_mailbox_take(x->coordinator, &m, 100))
            continue;
        if (m.kind == KP_CTL_DONE)
            running--;
        task *t = m.task >= 0 && m.task < x->ntasks ? &x->tasks[m.task] : NULL;
        if (t && t->align)
            kp_align_report(t->align, &m, t->ctl);
    }
}

int kp_exec_run(const kp_job *job, const kp_exec_config *cfg, kp_exec_stats *stats, char *errstr,
                size_t errlen)
{
    return kp_exec_run_part(job, cfg, NULL, stats, errstr, errlen);
}

int kp_exec_run_part(const kp_job *job, const kp_exec_config *cfg, const kp_exec_part *part,
                     kp_exec_stats *stats, char *errstr, size_t errlen)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (check_bindings(job, cfg, errstr, errlen) != 0)
        return -1;
    if (part && cfg->step_seed) {
        snprintf(errstr, errlen, "the deterministic scheduler runs whole jobs only");
        return -1;
    }
    struct kp_exec *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    x->epoch = cfg->epoch ? cfg->epoch : (int64_t)time(NULL);
    x->job = job;
    x->cfg = cfg;
    x->part = part;
    pthread_mutex_init(&x->lock, NULL);
    double t0 = kp_mono_s();
    int started = 0;
    if (kp_exec_prepare(x) != 0) {
        atomic_store(&x->failed, 1);
    } else if (cfg->step_seed) {
        kp_exec_run_stepped(x, cfg->step_seed);
    } else {
        for (; started < x->nsubtasks; started++)
            if (pthread_create(&x->subtasks[started]->thread, NULL, subtask_main,
                               x->subtasks[started]) != 0) {
                kp_subtask_fail(&x->subtasks[started]->st, "cannot start a thread");
                break;
            }
        coordinate(x, started);
    }
    for (int i = 0; i < started; i++)
        pthread_join(x->subtasks[i]->thread, NULL);
    int failed = atomic_load(&x->failed);
    if (failed)
        snprintf(errstr, errlen, "%s", x->error);
    if (stats)
        collect_stats(x, stats, t0);
    teardown(x, !failed);
    free(x);
    return failed ? -1 : 0;
}
