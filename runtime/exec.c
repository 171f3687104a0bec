/* Running a job (exec.h): one thread per local subtask, and the caller's thread as their
 * coordinator — it reads their reports (watermark alignment, their ends) from its mailbox
 * and answers with messages, never through shared state (mailbox.h, align.h). Each subtask
 * thread owns its operators. Setting up is exec_wire.c's; a seeded single-threaded run is
 * exec_step.c's. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "connector.h"
#include "exec.h"
#include "exec_coord.h"
#include "exec_input.h"
#include "exec_live.h"
#include "exec_step.h"
#include "exec_wire.h"

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
            if (s->st.live) /* exec_live.h: once per tick */
                kp_live_publish_waits(s->st.live, 0);
            int rc = kp_op_tick(s->chain, kp_wall_ms()) != 0 ? -1 : 1;
            if (rc == 1 && s->ckpt.done) /* checkpoints on: completions and aborts */
                rc = kp_exec_control_serve(s);
            if (rc <= 0) {
                if (b)
                    kp_inbox_release(inbox, b);
                return rc;
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

/* Names the thread for top/perf ("kp src 1/2", "kp t2 1/2": task index, subtask of p). */
static void name_thread(const subtask_rt *s)
{
    char name[48];
    if (s->t->head->kind == KP_NODE_SOURCE)
        snprintf(name, sizeof name, "kp src %d/%d", s->st.index + 1, s->st.parallelism);
    else
        snprintf(name, sizeof name, "kp t%d %d/%d", s->st.task_id, s->st.index + 1,
                 s->st.parallelism);
    name[15] = '\0'; /* the kernel's limit */
    pthread_setname_np(pthread_self(), name);
}

/* The calling thread's CPU time and channel waits, kept in s for collect_stats. */
static void account_thread(subtask_rt *s)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
        s->cpu_s = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    kp_channel_waits_get(&s->waits);
}

static void *subtask_main(void *arg)
{
    subtask_rt *s = arg;
    int rc = -1;
    const kp_node *head = s->t->head;
    name_thread(s);
    if (kp_subtask_cancelled(&s->st)) {
        rc = -1;
    } else if (head->kind == KP_NODE_SOURCE) {
        const kp_exec_config *cfg = s->x->cfg;
        rc = kp_source_run(&s->st, head, kp_exec_binding(cfg, head->endpoint), s->chain,
                           cfg->watermark_every ? cfg->watermark_every : 1024);
    } else {
        rc = consume(s);
    }
    /* a subtask stopped by a closed channel (a remote end went away) fails the run here */
    if (rc != 0 && !kp_subtask_cancelled(&s->st))
        kp_subtask_fail(&s->st, "stopped: one of its channels was closed");
    account_thread(s);
    kp_mailbox_post(s->x->coordinator,
                    (kp_ctl){KP_CTL_DONE, s->st.task_id, s->st.index, rc == 0 ? 0 : -1});
    return NULL;
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
        .readahead_peak = atomic_load(&m->readahead_peak),
        .batches_sent = atomic_load(&m->batches_sent),
        .records_sent = atomic_load(&m->records_sent),
        .seconds = kp_mono_s() - t0,
    };
    for (int i = 0; i < x->nsubtasks; i++) {
        const subtask_rt *s = x->subtasks[i];
        if (s->t->head->kind == KP_NODE_SOURCE) {
            out->source_cpu_s += s->cpu_s;
            if (s->cpu_s > out->source_cpu_max_s)
                out->source_cpu_max_s = s->cpu_s;
            out->source_blocked += s->waits.blocked;
            out->source_blocked_s += s->waits.blocked_s;
        } else {
            out->other_cpu_s += s->cpu_s;
            if (s->cpu_s > out->other_cpu_max_s)
                out->other_cpu_max_s = s->cpu_s;
            out->other_starved += s->waits.starved;
            out->other_starved_s += s->waits.starved_s;
            out->other_blocked += s->waits.blocked;
            out->other_blocked_s += s->waits.blocked_s;
        }
    }
    for (int i = 0; i < x->ntasks; i++)
        for (int j = 0; x->tasks[i].inboxes && j < x->tasks[i].parallelism; j++)
            if (x->tasks[i].inboxes[j])
                out->exchange_batches += kp_inbox_batches_allocated(x->tasks[i].inboxes[j]);
    out->exchange_bytes = out->exchange_batches * (long long)sizeof(kp_batch);
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

/* The coordinator: serves the subtasks' reports until `running` of them have ended. */
static void coordinate(struct kp_exec *x, int running)
{
    while (running > 0) {
        kp_ctl m;
        /* a signal handler or another thread (a taskmanager's Cancel) sets the flag */
        if (x->cfg->cancel && __atomic_load_n(x->cfg->cancel, __ATOMIC_RELAXED) &&
            !atomic_load(&x->failed))
            kp_subtask_fail(&x->subtasks[0]->st, "cancelled");
        kp_exec_ckpt_poll(x, running); /* checkpoints: triggers, completions */
        if (!kp_mailbox_take(x->coordinator, &m, x->ckpt_on ? 10 : 100))
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
    struct kp_exec *x = kp_exec_new(job, cfg, part);
    if (!x) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    double t0 = kp_mono_s();
    int started = 0;
    if (kp_exec_prepare(x) != 0 || kp_exec_ckpt_start(x, !cfg->step_seed) != 0) {
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
    kp_exec_ckpt_stop(x, !atomic_load(&x->failed));
    int failed = atomic_load(&x->failed);
    if (failed)
        snprintf(errstr, errlen, "%s", x->error);
    if (stats)
        collect_stats(x, stats, t0);
    kp_exec_free(x, !failed);
    return failed ? -1 : 0;
}
