/* The physical plan: which nodes chain into one task and how tasks exchange records
 * (plan.h). Pure functions of the validated graph; no allocation. */
#include <string.h>

#include "plan.h"

/* True when n's records come out of a keyed part of the job (a key_by upstream): their key is
 * meaningful — the document id once a window or process function emitted them. */
static int after_key_by(const kp_node *n)
{
    for (; n; n = n->input)
        if (n->kind == KP_NODE_KEY_BY)
            return 1;
    return 0;
}

kp_partitioning kp_plan_edge(const kp_node *from, const kp_node *to)
{
    if (from->kind == KP_NODE_KEY_BY)
        return KP_PART_HASH;
    if (from->parallelism == to->parallelism)
        return KP_PART_FORWARD;
    /* A document id must come from exactly one sink writer: a versioned sink (es:) orders
     * the writes of one id by its own counter, and two writers' counters are unrelated, so
     * round robin would let an older result outrank a newer one. Into a sink of another
     * parallelism, keyed results go by the hash of their key, which is the document id. The
     * binding (es:, kafka:, file:) is not part of the plan, so this holds for every sink. */
    if (to->kind == KP_NODE_SINK && after_key_by(from))
        return KP_PART_HASH;
    return KP_PART_REBALANCE;
}

int kp_plan_is_head(const kp_node *n)
{
    if (!n->input)
        return 1;
    /* an aggregate's records come out of its window operator, a late stream's too */
    if (n->kind == KP_NODE_AGGREGATE || n->kind == KP_NODE_LATE)
        return 0;
    return kp_plan_edge(n->input, n) != KP_PART_FORWARD;
}

const char *kp_partitioning_name(kp_partitioning p)
{
    switch (p) {
    case KP_PART_FORWARD:
        return "forward";
    case KP_PART_HASH:
        return "hash";
    case KP_PART_REBALANCE:
        return "rebalance";
    }
    return "none";
}

/* Appends n and the nodes chained after it (depth first, outputs in order). */
static void collect_chain(kp_plan *p, int task_index, const kp_node *n, int *used)
{
    p->node_ids[(*used)++] = n->id;
    p->index_of[n->id] = task_index;
    for (int i = 0; i < n->noutputs; i++)
        if (!kp_plan_is_head(n->outputs[i]))
            collect_chain(p, task_index, n->outputs[i], used);
}

int kp_plan_build(const kp_job *job, kp_plan *out)
{
    memset(out, 0, sizeof *out);
    if (job->error[0] || job->nnodes > KP_MAX_NODES)
        return -1;
    int used = 0;
    for (int i = 0; i < job->nnodes; i++) {
        const kp_node *n = job->nodes[i];
        if (!kp_plan_is_head(n))
            continue;
        kp_plan_task *t = &out->tasks[out->ntasks];
        *t = (kp_plan_task){.id = n->id,
                            .name = n->name,
                            .parallelism = n->parallelism,
                            .nodes = &out->node_ids[used],
                            .upstream = -1};
        int first = used;
        collect_chain(out, out->ntasks, n, &used);
        t->nnodes = used - first;
        out->ntasks++;
    }
    /* inputs once every node knows its task */
    for (int i = 0; i < out->ntasks; i++) {
        kp_plan_task *t = &out->tasks[i];
        const kp_node *head = job->nodes[t->id];
        if (!head->input)
            continue;
        t->in[t->nin++] = (kp_plan_input){out->tasks[out->index_of[head->input->id]].id,
                                          kp_plan_edge(head->input, head)};
        t->upstream = t->in[0].task;
        t->partitioning = t->in[0].partitioning;
    }
    return 0;
}

const kp_plan_task *kp_plan_task_by_id(const kp_plan *plan, int id)
{
    if (id < 0 || id >= KP_MAX_NODES)
        return NULL;
    const kp_plan_task *t = &plan->tasks[plan->index_of[id]];
    return plan->ntasks > 0 && t->id == id ? t : NULL;
}

int kp_plan_channels(const kp_plan *plan, const kp_plan_task *t)
{
    return kp_plan_channel(plan, t, t->nin, 0);
}

int kp_plan_channel(const kp_plan *plan, const kp_plan_task *t, int input, int p)
{
    int base = 0;
    for (int i = 0; i < input && i < t->nin; i++)
        base += kp_plan_task_by_id(plan, t->in[i].task)->parallelism;
    return base + p;
}
