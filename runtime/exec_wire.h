/* The executor's state for one process's share of a run, set up here (exec_wire.c) and
 * driven by the threaded runner (exec.c) or the deterministic scheduler (exec_step.c): the
 * plan's tasks, their inboxes, and the runtime state of every local subtask. */
#ifndef KP_EXEC_WIRE_H
#define KP_EXEC_WIRE_H

#include <pthread.h>

#include "align.h"
#include "exec_ckpt.h"
#include "exec_config.h"
#include "mailbox.h"
#include "ops.h"
#include "plan.h"
#include "source.h"

/* Per input channel of a consumer subtask: its watermark and state. */
typedef struct input_state {
    kp_time wm;
    int idle, ended;
    int64_t barrier; /* the last checkpoint barrier it delivered (0 = none) */
    /* exactly_once alignment: batches popped after this channel delivered the barrier being
     * aligned, in order, until every open input delivered it (linked through kp_batch.next;
     * bounded by the channel's credits, which is the backpressure) */
    kp_batch *held, *held_tail;
} input_state;

/* The consumer side of a subtask: its inputs and the watermark it passed on. */
typedef struct consumer {
    input_state *in;
    int n;
    kp_time cur;
    int was_idle;
    /* checkpoints (exec_input.c): the checkpoint being aligned (0 = none), the newest one
     * taken or given up (older barriers are stale), when alignment began, batches held */
    int64_t aligning, last;
    double align_t0;
    int nheld;
    int64_t aborted[4]; /* aborted before their barrier came: those barriers are stale */
    int naborted;
} consumer;

typedef struct task {
    const kp_node *head;
    int parallelism;
    int upstream; /* channels per inbox: the upstream task's parallelism (0 for sources) */
    const kp_plan_task *plan;
    kp_inbox **inboxes; /* per subtask; NULL where that subtask runs elsewhere */
    kp_align *align;    /* sources: the alignment coordinator's state for this task */
    kp_mailbox **ctl;   /* each subtask's mailbox for announcements: sources always, every
                           task when checkpoints are on */
} task;

typedef struct subtask_rt {
    kp_subtask st;
    struct kp_exec *x;
    task *t;
    kp_op *chain; /* first operator, or the source's pseudo-operator */
    kp_op *ops[KP_MAX_NODES];
    int nops;
    pthread_t thread;
    kp_source_task *source; /* stepped runs: the open source */
    consumer cons;          /* consumers: their inputs */
    int done;               /* stepped runs: finished or failed */
    double cpu_s;           /* threaded runs: the thread's CPU time, set as it ends */
    kp_channel_waits waits; /* threaded runs: its waits (channel.h), set as it ends */
    kp_ckpt_out ckpt;       /* checkpoints on: st.ckpt points here */
} subtask_rt;

struct kp_exec {
    const kp_job *job;
    const kp_exec_config *cfg;
    const kp_exec_part *part; /* NULL = every subtask runs here */
    kp_plan plan;
    task tasks[KP_MAX_NODES];
    int ntasks;
    task *task_of[KP_MAX_NODES]; /* head node id → task */
    subtask_rt **subtasks;
    int nsubtasks;
    kp_metrics metrics;
    pthread_mutex_t lock;
    atomic_int failed;
    kp_subtask_host host;    /* how subtasks fail the run (exec_fail) */
    int64_t epoch;           /* fencing epoch of this attempt (exec.h) */
    int credits;             /* batches per channel, from the network budget */
    kp_mailbox *coordinator; /* reports of all subtasks (alignment, ends) */
    /* Checkpoints (ckpt_on): where snapshots go, and where acknowledgements and declines go —
     * the local coordinator (exec_coord.c) or cfg->ckpt_hooks */
    int ckpt_on;
    struct kp_ckpt_store *store;
    struct kp_uploader *uploader;
    struct kp_local_coord *coord; /* kappa run --local: exec_coord_local.c */
    kp_ckpt_hooks hooks;
    char error[1024];
};

/* A run of `job` with this share of its subtasks (part NULL = all), not yet prepared; NULL
 * if out of memory. @locality the running thread owns it; subtasks reach it only through
 * their host (exec_fail, under `lock`) and their own subtask_rt */
struct kp_exec *kp_exec_new(const kp_job *job, const kp_exec_config *cfg, const kp_exec_part *part);

/* Plans tasks and wires every local subtask (threads are not started). 0 or -1 (x->error
 * set). @locality the running thread, before any subtask runs */
int kp_exec_prepare(struct kp_exec *x);

/* The binding of a source or sink name, or NULL. @locality any thread (cfg is read-only) */
const kp_binding *kp_exec_binding(const kp_exec_config *cfg, const char *name);

/* Destroys the operators, lets the transport go (`ok`: the run succeeded), frees the inboxes
 * and x. @locality the running thread, after every subtask stopped */
void kp_exec_free(struct kp_exec *x, int ok);

#endif
