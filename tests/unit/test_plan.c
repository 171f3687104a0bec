/* The physical plan's edges (runtime/plan.c), in particular into sinks: a document id must
 * come from exactly one sink writer (a versioned sink orders one id's writes by its own
 * counter), so keyed results going into a sink of another parallelism take a hash edge on
 * their key (the document id), not round robin; unkeyed streams keep rebalance, and equal
 * parallelism keeps the forward edge (the sink chains: graph JSON and hash unchanged). */
#include <criterion/criterion.h>
#include <string.h>

#include "graph_codec.h"
#include "plan.h"

static int sink_p, window_p;

static kp_rc same(kp_event *ev)
{
    (void)ev;
    return KP_OK;
}

static int define_windowed(const kp_api *api, kp_job *job)
{
    (void)api; /* the host's kp__api is bound */
    kp_stream *src = kp_source(job, "clicks", .parallelism = 2);
    kp_stream *counts =
        kp_count(kp_window(kp_key_by(src), kp_tumbling(1000)), .parallelism = window_p);
    kp_sink(kp_map(counts, same), "index", .parallelism = sink_p);
    return 0;
}

static int define_unkeyed(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_stream *src = kp_source(job, "clicks", .parallelism = 2);
    kp_sink(kp_map(src, same), "out", .parallelism = sink_p);
    return 0;
}

static kp_job *build(int (*define)(const kp_api *, kp_job *), kp_plan *plan)
{
    kp_job *job = kp_job_new("plan-test");
    cr_assert_not_null(job);
    char err[512] = "";
    cr_assert_eq(kp_job_define(job, define, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kp_plan_build(job, plan), 0, "%s", job->error);
    return job;
}

/* The task whose chain holds the sink node. */
static const kp_plan_task *sink_task(const kp_job *job, const kp_plan *plan)
{
    for (int i = 0; i < job->nnodes; i++)
        if (job->nodes[i]->kind == KP_NODE_SINK)
            return &plan->tasks[plan->index_of[i]];
    cr_assert_fail("no sink");
    return NULL;
}

Test(plan, keyed_results_into_a_wider_or_narrower_sink_go_by_hash)
{
    static const int sinks[] = {1, 3, 4};
    for (size_t i = 0; i < sizeof sinks / sizeof sinks[0]; i++) {
        window_p = 2;
        sink_p = sinks[i];
        kp_plan plan;
        kp_job *job = build(define_windowed, &plan);
        const kp_plan_task *t = sink_task(job, &plan);
        cr_expect_eq(t->parallelism, sink_p);
        cr_expect_eq(t->nnodes, 1, "the sink heads its own task");
        cr_expect_eq(t->partitioning, KP_PART_HASH, "sink p=%d: %s", sink_p,
                     kp_partitioning_name(t->partitioning));
        char err[256];
        char *json = kp_graph_json(job, err, sizeof err);
        cr_assert_not_null(json, "%s", err);
        cr_expect(strstr(json, "\"partitioning\":\"rebalance\"") == NULL, "%s", json);
        free(json);
        kp_job_free(job);
    }
}

Test(plan, equal_parallelism_keeps_the_sink_chained)
{
    window_p = 2;
    sink_p = 2;
    kp_plan plan;
    kp_job *job = build(define_windowed, &plan);
    const kp_plan_task *t = sink_task(job, &plan);
    cr_expect_gt(t->nnodes, 1, "the sink chains after the window");
    cr_expect_eq(plan.ntasks, 2, "source, window+map+sink");
    kp_job_free(job);
}

Test(plan, unkeyed_streams_keep_rebalance)
{
    sink_p = 3;
    kp_plan plan;
    kp_job *job = build(define_unkeyed, &plan);
    const kp_plan_task *t = sink_task(job, &plan);
    cr_expect_eq(t->partitioning, KP_PART_REBALANCE, "%s", kp_partitioning_name(t->partitioning));
    kp_job_free(job);
}
