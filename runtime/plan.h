/* The physical plan of a validated job: its tasks. A task is a chain of nodes joined by
 * forward edges of equal parallelism, run as `parallelism` subtasks; an edge between two
 * tasks is an exchange (hash by key group, rebalance, or forward one-to-one).
 *
 * The plan is a pure function of the validated job: the local executor runs from it, the CLI
 * serialises it into the graph JSON (graph_codec.h), the jobmanager schedules its subtasks
 * from that JSON, and a taskmanager rebuilds it from the plugin. A task's id is its head
 * node's id — the same number in REST, the control plane and channel ids.
 *
 * Several inputs: a task lists its inputs (`in`, today at most one) so operators with several
 * inputs (union, connect, joins) add entries instead of changing the shape; a consumer's
 * channels are numbered input after input (kp_plan_channel). Owned by its builder; read-only
 * after kp_plan_build, so any thread may read it. */
#ifndef KP_PLAN_H
#define KP_PLAN_H

#include "graph.h"

typedef enum kp_partitioning {
    KP_PART_FORWARD = 1, /* subtask i → subtask i (equal parallelism) */
    KP_PART_HASH,        /* by key group */
    KP_PART_REBALANCE,   /* round robin */
} kp_partitioning;

/* The most inputs a task may have (one today; joins and unions use more). */
#define KP_PLAN_MAX_INPUTS 4

/* One input edge of a task: from which task, partitioned how. */
typedef struct kp_plan_input {
    int task; /* the producer task's id */
    kp_partitioning partitioning;
} kp_plan_input;

typedef struct kp_plan_task {
    int id;           /* the head node's id */
    const char *name; /* the head node's name (owned by the job) */
    int parallelism;
    const int *nodes; /* node ids of the chain, head first, in wiring order */
    int nnodes;
    int upstream;                         /* the first input's task id, or -1 for a source task */
    kp_partitioning partitioning;         /* of the edge from upstream (0 for a source task) */
    kp_plan_input in[KP_PLAN_MAX_INPUTS]; /* every input, in order; in[0] is upstream */
    int nin;
} kp_plan_task;

typedef struct kp_plan {
    kp_plan_task tasks[KP_MAX_NODES]; /* in node order of their heads */
    int ntasks;
    int index_of[KP_MAX_NODES]; /* node id → index in tasks[] of the task holding it */
    int node_ids[KP_MAX_NODES]; /* the tasks' `nodes` point in here */
} kp_plan;

/* Builds the plan of a validated job. Returns 0, or -1 if the job is not valid (job->error
 * set) or has more nodes than a plan holds. @locality any thread; `out` is the caller's */
int kp_plan_build(const kp_job *job, kp_plan *out);

/* The task whose head is node `id`, or NULL. */
const kp_plan_task *kp_plan_task_by_id(const kp_plan *plan, int id);

/* True when node `n` starts a task (its input edge is an exchange, or it has no input). */
int kp_plan_is_head(const kp_node *n);

/* How records move from `from` to its output `to`. */
kp_partitioning kp_plan_edge(const kp_node *from, const kp_node *to);

/* "forward", "hash" or "rebalance" (the graph JSON's words). */
const char *kp_partitioning_name(kp_partitioning p);

/* Channels into one consumer subtask of task `t`: the upstream parallelism summed over its
 * inputs. The channel from producer subtask `p` on input `input` has index
 * kp_plan_channel(plan, t, input, p); channels of input 0 come first. */
int kp_plan_channels(const kp_plan *plan, const kp_plan_task *t);
int kp_plan_channel(const kp_plan *plan, const kp_plan_task *t, int input, int p);

#endif
