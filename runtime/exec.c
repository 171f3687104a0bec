/* The local executor: plans tasks from the logical graph, wires operators and channels,
 * runs one thread per subtask and collects the outcome. See exec.h.
 *
 * Threads: the caller's thread plans, starts and joins; each subtask thread owns its
 * operators. The first failure is recorded under `lock` and aborts every inbox, which wakes
 * all blocked producers and consumers so the run ends promptly. */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

#include "connector.h"
#include "exec.h"
#include "ops.h"

typedef struct task {
    const kp_node *head;
    int parallelism;
    int upstream; /* channels per inbox: the upstream task's parallelism (0 for sources) */
    kp_inbox **inboxes;
    atomic_llong *align; /* sources: per-subtask watermarks for alignment */
} task;

typedef struct subtask_rt {
    kp_subtask st;
    task *t;
    kp_op *chain; /* first operator, or the source's pseudo-operator */
    kp_op *ops[KP_MAX_NODES];
    int nops;
    pthread_t thread;
} subtask_rt;

struct kp_exec {
    const kp_job *job;
    const kp_exec_config *cfg;
    task tasks[KP_MAX_NODES];
    int ntasks;
    task *task_of[KP_MAX_NODES]; /* head node id → task */
    subtask_rt **subtasks;
    int nsubtasks;
    kp_metrics metrics;
    pthread_mutex_t lock;
    atomic_int failed;
    int64_t epoch; /* fencing epoch of this attempt (exec.h) */
    char error[1024];
};

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

/* The node that feeds `n`'s outputs at the data level: an aggregate's records come out of
 * its window operator, a late stream's too. */
static kp_partitioning edge_kind(const kp_node *from, const kp_node *to)
{
    if (from->kind == KP_NODE_KEY_BY)
        return KP_PART_HASH;
    if (from->parallelism != to->parallelism)
        return KP_PART_REBALANCE;
    return KP_PART_FORWARD;
}

static int is_task_head(const kp_node *n)
{
    if (!n->input)
        return 1;
    if (n->kind == KP_NODE_AGGREGATE || n->kind == KP_NODE_LATE)
        return 0;
    return edge_kind(n->input, n) != KP_PART_FORWARD;
}

static int plan(struct kp_exec *x)
{
    for (int i = 0; i < x->job->nnodes; i++) {
        const kp_node *n = x->job->nodes[i];
        if (!is_task_head(n))
            continue;
        task *t = &x->tasks[x->ntasks++];
        t->head = n;
        t->parallelism = n->parallelism;
        t->upstream = n->input ? n->input->parallelism : 0;
        x->task_of[n->id] = t;
        if (!n->input) {
            t->align = calloc((size_t)t->parallelism, sizeof *t->align);
            if (!t->align)
                return -1;
            for (int j = 0; j < t->parallelism; j++)
                atomic_init(&t->align[j], KP_TIME_MIN);
            continue;
        }
        t->inboxes = calloc((size_t)t->parallelism, sizeof *t->inboxes);
        if (!t->inboxes)
            return -1;
        for (int j = 0; j < t->parallelism; j++)
            if (!(t->inboxes[j] = kp_inbox_new(t->upstream, x->cfg->credits ? x->cfg->credits : 4)))
                return -1;
    }
    return 0;
}

static const kp_binding *find_binding(const kp_exec_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nbindings; i++)
        if (!strcmp(cfg->bindings[i].name, name))
            return &cfg->bindings[i];
    return NULL;
}

/* ---- wiring one subtask ------------------------------------------------------------------ */

static kp_op *build(subtask_rt *s, const kp_node *n);

static int add_out(subtask_rt *s, kp_op *op, const kp_node *child, int late)
{
    kp_op *o;
    if (!is_task_head(child) || child->kind == KP_NODE_AGGREGATE || child->kind == KP_NODE_LATE) {
        o = build(s, child);
    } else {
        task *t = s->st.exec->task_of[child->id];
        kp_channel *chans[1024];
        for (int j = 0; j < t->parallelism; j++)
            chans[j] = kp_inbox_channel(t->inboxes[j], s->st.index);
        o = kp_op_exchange_new(&s->st, child->input, edge_kind(child->input, child), chans,
                               t->parallelism);
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
    const kp_binding *b = find_binding(s->st.exec->cfg, n->endpoint);
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

typedef struct input_state {
    kp_time wm;
    int idle, ended;
} input_state;

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

static int consume(subtask_rt *s)
{
    kp_inbox *inbox = s->t->inboxes[s->st.index];
    int n = s->t->upstream;
    input_state in[1024];
    for (int i = 0; i < n; i++)
        in[i] = (input_state){KP_TIME_MIN, 0, 0};
    kp_time cur = KP_TIME_MIN;
    int was_idle = 0;
    kp_op *head = s->chain;
    kp_time ticked = kp_wall_ms();
    for (;;) {
        int timed_out;
        kp_batch *b = kp_inbox_pop_timed(inbox, KP_TICK_MS, &timed_out);
        kp_time now = kp_wall_ms();
        if (now - ticked >= KP_TICK_MS) {
            ticked = now;
            if (kp_op_tick(head, now) != 0) {
                if (b)
                    kp_inbox_release(inbox, b);
                return -1;
            }
        }
        if (timed_out)
            continue;
        if (!b)
            return -1;
        input_state *ch = &in[b->channel];
        int rc = 0;
        if (b->kind == KP_MSG_DATA) {
            ch->idle = 0;
            for (uint32_t i = 0; i < b->n && rc == 0; i++) {
                const kp_rec *r = &b->recs[i];
                kp_event ev = {.key = {(const char *)b->arena + r->key_off, r->key_len},
                               .value = {(const char *)b->arena + r->val_off, r->val_len},
                               .ts = r->ts,
                               .cwm = r->cwm};
                rc = head->vt->record(head, &ev);
            }
        } else if (b->kind == KP_MSG_WATERMARK) {
            ch->idle = 0;
            ch->wm = b->watermark > ch->wm ? b->watermark : ch->wm;
        } else if (b->kind == KP_MSG_IDLE) {
            ch->idle = 1;
        } else {
            ch->ended = 1;
        }
        kp_inbox_release(inbox, b);
        if (rc != 0)
            return -1;
        int all_idle, all_ended;
        kp_time m = min_watermark(in, n, &all_idle, &all_ended);
        if (all_ended)
            return head->vt->finish(head);
        if (all_idle && !was_idle && head->vt->idle(head) != 0)
            return -1;
        was_idle = all_idle;
        if (!all_idle && m > cur) {
            cur = m;
            if (head->vt->watermark(head, m) != 0)
                return -1;
        }
    }
}

static void *subtask_main(void *arg)
{
    subtask_rt *s = arg;
    if (kp_subtask_cancelled(&s->st))
        return NULL;
    const kp_node *head = s->t->head;
    if (head->kind == KP_NODE_SOURCE) {
        const kp_exec_config *cfg = s->st.exec->cfg;
        kp_source_run(&s->st, head, find_binding(cfg, head->endpoint), s->chain,
                      cfg->watermark_every ? cfg->watermark_every : 1024);
    } else {
        consume(s);
    }
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
            subtask_rt *s = calloc(1, sizeof *s);
            if (!s)
                return -1;
            x->subtasks[x->nsubtasks++] = s;
            s->t = t;
            s->st = (kp_subtask){.exec = x,
                                 .job = x->job,
                                 .index = j,
                                 .parallelism = t->parallelism,
                                 .metrics = &x->metrics,
                                 .state_dir = x->cfg->state_dir,
                                 .state_cache_bytes = x->cfg->state_cache_bytes,
                                 .rocksdb_cache_bytes = x->cfg->rocksdb_cache_bytes,
                                 .rocksdb_memtable_bytes = x->cfg->rocksdb_memtable_bytes,
                                 .align = t->align,
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

static void teardown(struct kp_exec *x)
{
    for (int i = 0; i < x->nsubtasks; i++) {
        subtask_rt *s = x->subtasks[i];
        for (int j = s->nops - 1; j >= 0; j--)
            s->ops[j]->vt->destroy(s->ops[j]);
        free(s);
    }
    free(x->subtasks);
    for (int i = 0; i < x->ntasks; i++) {
        for (int j = 0; x->tasks[i].inboxes && j < x->tasks[i].parallelism; j++)
            kp_inbox_free(x->tasks[i].inboxes[j]);
        free(x->tasks[i].inboxes);
        free(x->tasks[i].align);
    }
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
        const kp_binding *b = find_binding(cfg, n->endpoint);
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

int kp_exec_run(const kp_job *job, const kp_exec_config *cfg, kp_exec_stats *stats, char *errstr,
                size_t errlen)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (check_bindings(job, cfg, errstr, errlen) != 0)
        return -1;
    struct kp_exec *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    x->epoch = cfg->epoch ? cfg->epoch : (int64_t)time(NULL);
    x->job = job;
    x->cfg = cfg;
    pthread_mutex_init(&x->lock, NULL);
    double t0 = kp_mono_s();
    int started = 0;
    if (plan(x) != 0 || create_subtasks(x) != 0) {
        if (!atomic_load(&x->failed))
            snprintf(x->error, sizeof x->error, "out of memory while planning the job");
        atomic_store(&x->failed, 1);
    } else {
        for (; started < x->nsubtasks; started++)
            if (pthread_create(&x->subtasks[started]->thread, NULL, subtask_main,
                               x->subtasks[started]) != 0) {
                kp_subtask_fail(&x->subtasks[started]->st, "cannot start a thread");
                break;
            }
    }
    for (int i = 0; i < started; i++)
        pthread_join(x->subtasks[i]->thread, NULL);
    int failed = atomic_load(&x->failed);
    if (failed)
        snprintf(errstr, errlen, "%s", x->error);
    if (stats)
        collect_stats(x, stats, t0);
    teardown(x);
    free(x);
    return failed ? -1 : 0;
}
