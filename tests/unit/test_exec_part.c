/* The executor's partial runs (kp_exec_run_part): a job split over two executors in one
 * process, each running half of the subtasks, connected by a loopback transport (below) that
 * ships every batch across by copying it — the shape of a taskmanager pair without the
 * sockets. The documents must equal those of the all-local run (kp_exec_run) of the same
 * input: results depend only on the log, never on placement (docs/semantics.md).
 *
 * The job: file source (4 partitions) → map → key_by → tumbling count → sink at another
 * parallelism, so the plan has two hash edges (the second on the document id), plus the late side output
 * chained with the window. Placements split every task, so channels cross both ways. Also:
 * a remote subtask without a transport, and a placement naming a subtask the job does not
 * have, are clear errors; a refused channel fails the run with the transport's reason; the
 * plan of the job (plan.h) has the expected tasks, inputs and channel numbering. Seeds
 * (placements, input): a fixed list plus a fresh printed one; KAPPA_TEST_SEED=N runs only N. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/connector.h"
#include "../../runtime/exec.h"
#include "../../runtime/graph.h"
#include "../../runtime/json.h"
#include "../../runtime/plan.h"
#include "../../runtime/rng.h"
#include "connectors.h"

#include "../support/split_job.h"

/* ---- the loopback transport: both executors' ends in one hub ------------------------------ */

#define MAX_ROUTES 256

/* One remote channel: the producer side's outbox, the consumer side's channel, the pump. */
typedef struct route {
    kp_channel_id id;
    kp_inbox *outbox; /* one channel: the producer's out channel */
    kp_channel *dst;  /* registered by the consumer side's in_channel */
    int from, to;     /* executor sides, -1 until known */
    pthread_t pump;
    int pumping, done;
} route;

typedef struct hub {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    route routes[MAX_ROUTES];
    int nroutes;
    int aborted;
    long long shipped; /* batches copied across */
} hub;

typedef struct loop_end {
    kp_transport t;
    hub *h;
    int side;
} loop_end;

static int same(kp_channel_id a, kp_channel_id b)
{
    return a.producer_task == b.producer_task && a.producer_subtask == b.producer_subtask &&
           a.consumer_task == b.consumer_task && a.consumer_subtask == b.consumer_subtask &&
           a.input == b.input;
}

/* The route of `id`, created if new. @locks h->lock held */
static route *route_of(hub *h, kp_channel_id id)
{
    for (int i = 0; i < h->nroutes; i++)
        if (same(h->routes[i].id, id))
            return &h->routes[i];
    cr_assert_lt(h->nroutes, MAX_ROUTES);
    route *r = &h->routes[h->nroutes++];
    *r = (route){.id = id, .from = -1, .to = -1};
    return r;
}

static void copy_batch(kp_batch *d, const kp_batch *b)
{
    d->kind = b->kind;
    d->watermark = b->watermark;
    d->n = b->n;
    d->used = b->used;
    memcpy(d->recs, b->recs, b->n * sizeof *b->recs);
    memcpy(d->arena, b->arena, b->used);
}

typedef struct pump_arg {
    hub *h;
    route *r;
} pump_arg;

/* Ships one route's batches, in order, until END or abort. */
static void *pump_main(void *arg)
{
    pump_arg *a = arg;
    hub *h = a->h;
    route *r = a->r;
    free(a);
    for (;;) {
        int timed_out;
        kp_batch *b = kp_inbox_pop_timed(r->outbox, 50, &timed_out);
        if (!b && timed_out)
            continue;
        if (!b)
            break;
        pthread_mutex_lock(&h->lock);
        while (!r->dst && !h->aborted)
            pthread_cond_wait(&h->cond, &h->lock);
        kp_channel *dst = h->aborted ? NULL : r->dst;
        pthread_mutex_unlock(&h->lock);
        int oom = 0;
        kp_batch *d = dst ? kp_channel_acquire(dst, &oom) : NULL;
        int end = b->kind == KP_MSG_END;
        if (d)
            copy_batch(d, b);
        kp_inbox_release(r->outbox, b);
        if (!d)
            break;
        kp_channel_send(dst, d);
        pthread_mutex_lock(&h->lock);
        h->shipped++;
        pthread_mutex_unlock(&h->lock);
        if (end)
            break;
    }
    pthread_mutex_lock(&h->lock);
    r->done = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static kp_channel *loop_out(kp_transport *t, kp_channel_id id, int credits, char *err,
                            size_t errlen)
{
    loop_end *e = (loop_end *)t;
    hub *h = e->h;
    pthread_mutex_lock(&h->lock);
    route *r = route_of(h, id);
    kp_channel *ch = NULL;
    if (r->outbox) {
        snprintf(err, errlen, "opened twice");
    } else if ((r->outbox = kp_inbox_new(1, credits))) {
        pump_arg *a = malloc(sizeof *a);
        *a = (pump_arg){h, r};
        r->from = e->side;
        r->pumping = pthread_create(&r->pump, NULL, pump_main, a) == 0;
        ch = r->pumping ? kp_inbox_channel(r->outbox, 0) : NULL;
    }
    pthread_mutex_unlock(&h->lock);
    return ch;
}

static int loop_in(kp_transport *t, kp_channel_id id, kp_channel *ch, char *err, size_t errlen)
{
    loop_end *e = (loop_end *)t;
    pthread_mutex_lock(&e->h->lock);
    route *r = route_of(e->h, id);
    int rc = r->dst ? -1 : 0;
    if (rc)
        snprintf(err, errlen, "delivered twice");
    r->dst = ch;
    r->to = e->side;
    pthread_cond_broadcast(&e->h->cond);
    pthread_mutex_unlock(&e->h->lock);
    return rc;
}

static void loop_abort(kp_transport *t)
{
    hub *h = ((loop_end *)t)->h;
    pthread_mutex_lock(&h->lock);
    h->aborted = 1;
    for (int i = 0; i < h->nroutes; i++)
        if (h->routes[i].outbox)
            kp_inbox_abort(h->routes[i].outbox);
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* Waits until no pump feeds or drains this side's channels any more. */
static void loop_drop(kp_transport *t, int ok)
{
    loop_end *e = (loop_end *)t;
    hub *h = e->h;
    if (!ok)
        loop_abort(t);
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < h->nroutes; i++) {
        route *r = &h->routes[i];
        while (r->pumping && !r->done && (r->from == e->side || r->to == e->side))
            pthread_cond_wait(&h->cond, &h->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

static const kp_transport_vt loop_vt = {loop_out, loop_in, loop_abort, loop_drop};

static void hub_free(hub *h)
{
    for (int i = 0; i < h->nroutes; i++) {
        if (h->routes[i].pumping)
            pthread_join(h->routes[i].pump, NULL);
        kp_inbox_free(h->routes[i].outbox);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h);
}

/* ---- running ------------------------------------------------------------------------------- */

typedef struct side_run {
    const char *input;
    kp_exec_part part;
    int side;
    int rc;
    char err[1024];
    kp_exec_stats stats;
} side_run;

static kp_exec_config config_for(const char *input, const char *state_dir, kp_binding *bind)
{
    static _Thread_local char in_uri[512]; /* each side thread builds its own config */
    snprintf(in_uri, sizeof in_uri, "file:%s?partitions=4", input);
    bind[0] = (kp_binding){.name = "in", .uri = in_uri};
    bind[1] = (kp_binding){.name = "out", .uri = "collect:out"};
    bind[2] = (kp_binding){.name = "late", .uri = "collect:late"};
    return (kp_exec_config){.bindings = bind,
                            .nbindings = 3,
                            .state_dir = state_dir,
                            .watermark_every = 7,
                            .align_drift = -1};
}

static void *side_main(void *arg)
{
    side_run *r = arg;
    char state_dir[128];
    snprintf(state_dir, sizeof state_dir, "/tmp/kappa-exec-part-%d-%d", (int)getpid(), r->side);
    kp_binding bind[3];
    kp_exec_config cfg = config_for(r->input, state_dir, bind);
    kp_job *job = new_job(); /* each side rebuilds the job, as a taskmanager does */
    r->rc = kp_exec_run_part(job, &cfg, &r->part, &r->stats, r->err, sizeof r->err);
    kp_job_free(job);
    return NULL;
}

static void register_connectors(void)
{
    static int done;
    if (done)
        return;
    static const kp_connector col = {"collect", NULL, collect_open};
    kp_connectors_register_builtin();
    kp_connector_register(&col);
    done = 1;
}

static doc_list run_local(const char *input, long long *late)
{
    register_connectors();
    kp_binding bind[3];
    kp_exec_config cfg = config_for(input, "/tmp", bind);
    kp_job *job = new_job();
    char err[1024] = "";
    kp_exec_stats st;
    int rc = kp_exec_run(job, &cfg, &st, err, sizeof err);
    kp_job_free(job);
    cr_assert_eq(rc, 0, "local run failed: %s", err);
    *late = st.late_records;
    return take_sorted();
}

/* Splits every subtask between two sides by a seeded coin (both sides get at least one). */
static int split(const kp_plan *plan, uint64_t seed, kp_subtask_ref *refs, int *side_of)
{
    uint64_t s = seed | 1;
    int n = 0;
    for (int i = 0; i < plan->ntasks; i++)
        for (int j = 0; j < plan->tasks[i].parallelism; j++) {
            refs[n] = (kp_subtask_ref){plan->tasks[i].id, j};
            side_of[n] = (int)(kp_rng_next(&s) & 1);
            n++;
        }
    side_of[0] = 0;
    side_of[n - 1] = 1;
    return n;
}

static void check_split(int p, int sink_p, uint64_t seed)
{
    job_parallelism = p;
    sink_parallelism = sink_p;
    const char *input = write_input(seed, 3000);
    long long want_late;
    doc_list want = run_local(input, &want_late);
    cr_assert_gt(want.n, 0);

    kp_job *job = new_job();
    kp_plan *plan = malloc(sizeof *plan);
    cr_assert(plan);
    cr_assert_eq(kp_plan_build(job, plan), 0);
    kp_subtask_ref refs[64], mine[2][64];
    int side_of[64], nmine[2] = {0, 0};
    int n = split(plan, seed, refs, side_of);
    for (int i = 0; i < n; i++)
        mine[side_of[i]][nmine[side_of[i]]++] = refs[i];
    free(plan);
    kp_job_free(job);

    hub *h = calloc(1, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    loop_end ends[2] = {{{&loop_vt}, h, 0}, {{&loop_vt}, h, 1}};
    side_run runs[2];
    pthread_t th[2];
    for (int s = 0; s < 2; s++) {
        runs[s] = (side_run){.input = input, .side = s};
        runs[s].part = (kp_exec_part){mine[s], nmine[s], &ends[s].t};
        cr_assert_eq(pthread_create(&th[s], NULL, side_main, &runs[s]), 0);
    }
    for (int s = 0; s < 2; s++)
        pthread_join(th[s], NULL);
    long long shipped = h->shipped;
    hub_free(h);
    for (int s = 0; s < 2; s++)
        cr_assert_eq(runs[s].rc, 0, "p=%d seed=%" PRIu64 " side %d failed: %s", p, seed, s,
                     runs[s].err);
    cr_assert_gt(shipped, 0, "p=%d seed=%" PRIu64 ": nothing crossed the transport", p, seed);
    doc_list got = take_sorted();
    long long late = runs[0].stats.late_records + runs[1].stats.late_records;
    cr_assert_eq(late, want_late, "p=%d seed=%" PRIu64 ": %lld late, all-local %lld", p, seed, late,
                 want_late);
    cr_assert_eq(got.n, want.n, "p=%d seed=%" PRIu64 ": %zu documents, all-local %zu", p, seed,
                 got.n, want.n);
    for (size_t i = 0; i < got.n; i++)
        cr_assert_str_eq(got.lines[i], want.lines[i], "p=%d seed=%" PRIu64 ": document %zu", p,
                         seed, i);
    free_list(&got);
    free_list(&want);
    unlink(input);
}

static uint64_t fresh_seed(void)
{
    uint64_t s = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&s, sizeof s, 1, f) != 1)
        s = 77;
    if (f)
        fclose(f);
    fprintf(stderr, "test_exec_part: fresh seed %" PRIu64 "\n", s);
    return s;
}

Test(exec_part, split_over_two_executors_equals_local_run, .timeout = 240)
{
    const char *env = getenv("KAPPA_TEST_SEED");
    if (env) {
        check_split(2, 3, strtoull(env, NULL, 10));
        return;
    }
    static const uint64_t seeds[] = {1, 2, 3, 17, 4242};
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++)
        check_split(1 + (int)(i % 3), 1 + (int)((i + 1) % 3), seeds[i]);
    check_split(2, 3, fresh_seed());
}

Test(exec_part, remote_subtask_without_transport_is_an_error)
{
    register_connectors();
    job_parallelism = 2;
    sink_parallelism = 2;
    const char *input = write_input(5, 10);
    kp_job *job = new_job();
    kp_subtask_ref only = {0, 0}; /* source subtask 0; everything else is elsewhere */
    kp_exec_part part = {&only, 1, NULL};
    kp_binding bind[3];
    kp_exec_config cfg = config_for(input, "/tmp", bind);
    char err[1024] = "";
    int rc = kp_exec_run_part(job, &cfg, &part, NULL, err, sizeof err);
    kp_job_free(job);
    unlink(input);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err, "no transport"), "error: %s", err);
}

Test(exec_part, placement_naming_a_missing_subtask_is_an_error)
{
    register_connectors();
    job_parallelism = 2;
    sink_parallelism = 2;
    const char *input = write_input(6, 10);
    kp_job *job = new_job();
    kp_subtask_ref bad[] = {{0, 0}, {0, 2}}; /* task 0 has subtasks 0 and 1 */
    kp_exec_part part = {bad, 2, NULL};
    kp_binding bind[3];
    kp_exec_config cfg = config_for(input, "/tmp", bind);
    char err[1024] = "";
    int rc = kp_exec_run_part(job, &cfg, &part, NULL, err, sizeof err);
    kp_job_free(job);
    unlink(input);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err, "subtask 2 of task 0"), "error: %s", err);
}

static kp_channel *refuse_out(kp_transport *t, kp_channel_id id, int credits, char *err,
                              size_t errlen)
{
    snprintf(err, errlen, "refused");
    return NULL;
}

static int refuse_in(kp_transport *t, kp_channel_id id, kp_channel *ch, char *err, size_t errlen)
{
    snprintf(err, errlen, "refused");
    return -1;
}

Test(exec_part, transport_refusing_a_channel_fails_the_run_with_its_reason)
{
    register_connectors();
    job_parallelism = 2;
    sink_parallelism = 2;
    const char *input = write_input(7, 10);
    kp_job *job = new_job();
    kp_plan *plan = malloc(sizeof *plan);
    cr_assert(plan);
    cr_assert_eq(kp_plan_build(job, plan), 0);
    cr_assert_gt(plan->ntasks, 1);
    kp_subtask_ref refs[2] = {{plan->tasks[0].id, 0}, {plan->tasks[1].id, 0}};
    free(plan);
    static const kp_transport_vt refuse_vt = {refuse_out, refuse_in, NULL, NULL};
    kp_transport refuse = {&refuse_vt};
    kp_binding bind[3];
    kp_exec_config cfg = config_for(input, "/tmp", bind);
    char err[1024] = "";
    /* only a consumer subtask here: its channel from the remote source subtask is refused */
    kp_exec_part in_part = {&refs[1], 1, &refuse};
    cr_assert_eq(kp_exec_run_part(job, &cfg, &in_part, NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "inbound channel") && strstr(err, "refused"), "error: %s", err);
    /* only a source subtask here: its channels to the remote consumers are refused */
    kp_exec_part out_part = {&refs[0], 1, &refuse};
    cr_assert_eq(kp_exec_run_part(job, &cfg, &out_part, NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "outbound channel") && strstr(err, "refused"), "error: %s", err);
    kp_job_free(job);
    unlink(input);
}

Test(exec_part, plan_chains_forward_edges_and_lists_inputs)
{
    job_parallelism = 2;
    sink_parallelism = 3;
    kp_job *job = new_job();
    kp_plan *plan = malloc(sizeof *plan);
    cr_assert(plan);
    cr_assert_eq(kp_plan_build(job, plan), 0);
    /* source -> map -> key_by | hash | window + count + late sink | hash | sink: a sink fed by
     * keyed results at another parallelism gets a hash edge on the document id, so that one
     * writer owns each id (plan.c) */
    cr_assert_eq(plan->ntasks, 3);
    const kp_plan_task *src = &plan->tasks[0], *win = &plan->tasks[1], *out = &plan->tasks[2];
    cr_assert_eq(src->nin, 0);
    cr_assert_eq(src->upstream, -1);
    cr_assert_eq(src->nnodes, 3);
    cr_assert_eq(job->nodes[src->nodes[0]]->kind, KP_NODE_SOURCE);
    cr_assert_eq(job->nodes[src->nodes[2]]->kind, KP_NODE_KEY_BY);
    cr_assert_eq(win->upstream, src->id);
    cr_assert_eq(win->partitioning, KP_PART_HASH);
    cr_assert_eq(win->nin, 1);
    cr_assert_eq(win->in[0].task, src->id);
    cr_assert_eq(job->nodes[win->id]->kind, KP_NODE_WINDOW);
    cr_assert_eq(out->upstream, win->id);
    cr_assert_eq(out->partitioning, KP_PART_HASH);
    cr_assert_eq(out->parallelism, 3);
    cr_assert_str_eq(kp_partitioning_name(out->partitioning), "hash");
    int seen = 0;
    for (int i = 0; i < plan->ntasks; i++)
        for (int k = 0; k < plan->tasks[i].nnodes; k++) {
            int id = plan->tasks[i].nodes[k];
            cr_assert_eq(plan->index_of[id], i, "node %d is in task %d", id, i);
            seen++;
        }
    cr_assert_eq(seen, job->nnodes, "every node is in exactly one task");
    cr_assert_eq(kp_plan_task_by_id(plan, win->id), win);
    cr_assert_null(kp_plan_task_by_id(plan, win->nodes[1]), "only heads name tasks");
    /* a consumer's channels: one per producer subtask, numbered input after input */
    cr_assert_eq(kp_plan_channels(plan, win), 2);
    cr_assert_eq(kp_plan_channel(plan, win, 0, 1), 1);
    cr_assert_eq(kp_plan_channels(plan, out), 2);
    free(plan);
    kp_job_free(job);
}
