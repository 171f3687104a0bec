/* The executor over the real data plane: a job split over two executors in one process, each
 * running part of the subtasks, whose remote channels are kp_transports over two data-plane
 * endpoints (runtime/net.h) talking TCP on 127.0.0.1 — the shape of two taskmanagers. The
 * documents must equal those of the all-local run of the same input (results depend only on
 * the log, docs/semantics.md), and every channel's batches, END included, must cross.
 * The job and the split are those of test_exec_part.c (file source, 4 partitions → map →
 * key_by → tumbling count → sink at another parallelism, late side output); seeds: a fixed
 * list plus a fresh printed one, KAPPA_TEST_SEED=N runs only N. With checkpoints, each side
 * is steered as a taskmanager is (kp_exec_control, ckpt_hooks): barriers cross TCP, every
 * subtask of both sides acknowledges, and the documents stay those of the local run. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/connector.h"
#include "../../runtime/exec.h"
#include "../../runtime/exec_control.h"
#include "../../runtime/graph.h"
#include "../../runtime/json.h"
#include "../../runtime/net_transport.h"
#include "../../runtime/plan.h"
#include "../../runtime/rng.h"
#include "connectors.h"

#include "../support/split_job.h"

/* ---- the transport: kp_net_transport over one endpoint per side -------------------------- */

#define JOB "netexec"

/* Every remote subtask runs on the other side. */
static const char *other_side(void *ctx, int task, int subtask, char *err, size_t errlen)
{
    return ctx;
}

static void on_error(void *ctx, const kp_net_chan_id *chan, const char *msg)
{
    fprintf(stderr, "test_net_exec: unexpected data-plane failure: %s\n", msg);
    atomic_fetch_add((atomic_int *)ctx, 1);
}

/* ---- running ------------------------------------------------------------------------------- */

typedef struct side_run {
    const char *input;
    kp_exec_part part;
    int side;
    int rc;
    char err[1024];
    kp_exec_stats stats;
    kp_exec_control *ctl; /* checkpoints: steered from the test (NULL: off) */
    const kp_ckpt_hooks *hooks;
    const char *ckpt_dir;
} side_run;

/* `in_uri` is the caller's (512 bytes): both sides build their config at the same time. */
static kp_exec_config config_for(const char *input, const char *state_dir, kp_binding *bind,
                                 char *in_uri)
{
    snprintf(in_uri, 512, "file:%s?partitions=4", input);
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
    snprintf(state_dir, sizeof state_dir, "/tmp/kappa-net-exec-%d-%d", (int)getpid(), r->side);
    kp_binding bind[3];
    char in_uri[512];
    kp_exec_config cfg = config_for(r->input, state_dir, bind, in_uri);
    cfg.control = r->ctl;
    cfg.ckpt_hooks = r->hooks;
    cfg.ckpt.dir = r->ckpt_dir;
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
    char in_uri[512];
    kp_exec_config cfg = config_for(input, "/tmp", bind, in_uri);
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

/* ---- checkpoints: the jobmanager's part, both sides acknowledging into one counter ------ */

typedef struct ckpt_driver {
    kp_exec_control *ctl[2];
    kp_ckpt_hooks hooks;
    pthread_mutex_t lock;
    int acks[64], declines, nsubtasks, completed;
    int abort_first; /* checkpoint 1 reaches side 0's sources only, then is aborted */
    atomic_int stop;
} ckpt_driver;

static void drv_ack(void *ctx, int64_t id, int task, int subtask, const char *json)
{
    ckpt_driver *d = ctx;
    pthread_mutex_lock(&d->lock);
    d->acks[id]++;
    pthread_mutex_unlock(&d->lock);
}

static void drv_decline(void *ctx, int64_t id, int task, int subtask, const char *reason)
{
    ckpt_driver *d = ctx;
    pthread_mutex_lock(&d->lock);
    d->declines++;
    pthread_mutex_unlock(&d->lock);
}

/* Triggers checkpoints 1.. at both sides, completing each once every subtask acknowledged. */
static void *drive(void *arg)
{
    ckpt_driver *d = arg;
    int64_t id = 1;
    if (d->abort_first) {
        /* consumers fed by side 1's sources never see barrier 1: they hold the inputs that
         * delivered it until the abort releases them */
        cr_assert_eq(kp_exec_control_trigger(d->ctl[0], id, 0), 0);
        int acked = 0; /* side 0's source subtasks sent barrier 1 (then acknowledged) */
        for (int i = 0; i < 5000 && !acked && !atomic_load(&d->stop); i++) {
            usleep(1000);
            pthread_mutex_lock(&d->lock);
            acked = d->acks[id] > 0;
            pthread_mutex_unlock(&d->lock);
        }
        usleep(100000); /* the barrier reaches the consumers, which start aligning */
        for (int s = 0; s < 2; s++)
            cr_assert_eq(kp_exec_control_abort(d->ctl[s], id), 0);
        id++;
    }
    for (; id < 64 && !atomic_load(&d->stop); id++) {
        for (int s = 0; s < 2; s++)
            cr_assert_eq(kp_exec_control_trigger(d->ctl[s], id, 0), 0);
        int n = 0;
        for (int i = 0; i < 3000 && !atomic_load(&d->stop) && n < d->nsubtasks; i++) {
            usleep(1000);
            pthread_mutex_lock(&d->lock);
            n = d->acks[id];
            pthread_mutex_unlock(&d->lock);
        }
        if (n < d->nsubtasks)
            break; /* the run ended: its subtasks take no more checkpoints */
        for (int s = 0; s < 2; s++)
            cr_assert_eq(kp_exec_control_complete(d->ctl[s], id), 0);
        d->completed++;
    }
    return NULL;
}

/* ckpt: 0 off, 1 on, 2 on with checkpoint 1 partial and aborted (drive): then only seeds
 * that put source subtasks on both sides run (returns 0 for the others). */
static int check_split_ckpt(int p, int sink_p, uint64_t seed, int nrec, int ckpt);

static void check_split(int p, int sink_p, uint64_t seed)
{
    check_split_ckpt(p, sink_p, seed, 3000, 0);
}

static int check_split_ckpt(int p, int sink_p, uint64_t seed, int nrec, int ckpt)
{
    job_parallelism = p;
    sink_parallelism = sink_p;
    const char *input = write_input(seed, nrec);
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
    int source_sides = 0; /* bit s: side s runs a source subtask (task 0 is the source's) */
    for (int i = 0; i < n; i++) {
        mine[side_of[i]][nmine[side_of[i]]++] = refs[i];
        source_sides |= refs[i].task_id == refs[0].task_id ? 1 << side_of[i] : 0;
    }
    free(plan);
    kp_job_free(job);
    if (ckpt == 2 && source_sides != 3) {
        free_list(&want);
        unlink(input);
        return 0;
    }

    static uint32_t attempt; /* an attempt is never reopened after its drop */
    attempt++;
    static atomic_int failures;
    kp_net_config ncfg = {.bind = "127.0.0.1", .on_error = on_error, .ctx = &failures};
    char err[256];
    kp_net *nets[2];
    for (int s = 0; s < 2; s++)
        cr_assert_not_null(nets[s] = kp_net_start(&ncfg, err, sizeof err), "%s", err);
    kp_net_transport ends[2];
    char peers[2][KP_NET_ADDRESS_MAX + 1];
    for (int s = 0; s < 2; s++) {
        snprintf(peers[s], sizeof peers[s], "%s", kp_net_address(nets[1 - s]));
        kp_net_transport_init(&ends[s], nets[s], JOB, attempt, other_side, peers[s]);
    }
    side_run runs[2];
    pthread_t th[2], drv;
    static ckpt_driver d;
    char ckpt_dir[128];
    snprintf(ckpt_dir, sizeof ckpt_dir, "/tmp/kappa-net-exec-ck-%d", (int)getpid());
    if (ckpt) {
        d = (ckpt_driver){
            .hooks = {drv_ack, drv_decline, &d}, .nsubtasks = n, .abort_first = ckpt == 2};
        pthread_mutex_init(&d.lock, NULL);
        for (int s = 0; s < 2; s++)
            cr_assert_not_null(d.ctl[s] = kp_exec_control_new());
    }
    for (int s = 0; s < 2; s++) {
        runs[s] = (side_run){.input = input, .side = s};
        runs[s].part = (kp_exec_part){mine[s], nmine[s], &ends[s].base};
        if (ckpt)
            runs[s].ctl = d.ctl[s], runs[s].hooks = &d.hooks, runs[s].ckpt_dir = ckpt_dir;
        cr_assert_eq(pthread_create(&th[s], NULL, side_main, &runs[s]), 0);
    }
    if (ckpt)
        cr_assert_eq(pthread_create(&drv, NULL, drive, &d), 0);
    for (int s = 0; s < 2; s++)
        pthread_join(th[s], NULL);
    if (ckpt) {
        atomic_store(&d.stop, 1);
        pthread_join(drv, NULL);
        for (int s = 0; s < 2; s++)
            kp_exec_control_free(d.ctl[s]);
        if (ckpt == 1)
            cr_assert_eq(d.declines, 0, "seed %" PRIu64 ": a subtask declined", seed);
        else /* alignments in progress give it up (declines); a consumer that took the abort
                before the barrier came ignores that barrier: either way nothing hangs */
            fprintf(stderr, "test_net_exec: seed %" PRIu64 ": %d alignments aborted\n", seed,
                    d.declines);
        /* with the abort, the run may be over before a later checkpoint completes (seen about
         * 1 run in 4 at load 10-25): then only results and the end of the run are checked */
        if (ckpt == 1)
            cr_assert_gt(d.completed, 0, "seed %" PRIu64 ": no checkpoint acknowledged by all %d",
                         seed, n);
        fprintf(stderr, "test_net_exec: p=%d seed %" PRIu64 ": %d checkpoints over TCP\n", p, seed,
                d.completed);
        char rm[200];
        snprintf(rm, sizeof rm, "rm -rf %s", ckpt_dir);
        cr_assert_eq(system(rm), 0);
    }
    long long shipped =
        kp_net_get_stats(nets[0]).batches_sent + kp_net_get_stats(nets[1]).batches_sent;
    long long received =
        kp_net_get_stats(nets[0]).batches_received + kp_net_get_stats(nets[1]).batches_received;
    for (int s = 0; s < 2; s++)
        kp_net_stop(nets[s]);
    cr_assert_eq(atomic_load(&failures), 0);
    cr_assert_eq(received, shipped, "every batch sent was delivered");
    for (int s = 0; s < 2; s++)
        cr_assert_eq(runs[s].rc, 0, "p=%d seed=%" PRIu64 " side %d failed: %s", p, seed, s,
                     runs[s].err);
    cr_assert_gt(shipped, 0, "p=%d seed=%" PRIu64 ": nothing crossed the data plane", p, seed);
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
    return 1;
}

static uint64_t fresh_seed(void)
{
    uint64_t s = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&s, sizeof s, 1, f) != 1)
        s = 77;
    if (f)
        fclose(f);
    fprintf(stderr, "test_net_exec: fresh seed %" PRIu64 "\n", s);
    return s;
}

Test(net_exec, split_over_tcp_equals_local_run, .timeout = 240)
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

/* Barriers cross the data plane in order with the records; consumers align inputs from both
 * sides; every subtask acknowledges; results unchanged. */
Test(net_exec, checkpoints_over_tcp, .timeout = 240)
{
    static const uint64_t seeds[] = {5, 6};
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++)
        check_split_ckpt(2, 3, seeds[i], 200000, 1);
}

/* A checkpoint whose barrier comes from some sources only: consumers hold the inputs that
 * delivered it; the abort gives it up (declined) and releases them, in order; later
 * checkpoints complete; results unchanged. The abort is posted 100 ms after the first
 * acknowledgement, when the consumers are normally aligning (both declined in 12 of 12 runs
 * at load 20; printed, not asserted: a consumer that takes the abort before the barrier
 * arrives ignores that barrier instead, which must not change the results either). */
Test(net_exec, aborted_alignment_releases_held_inputs, .timeout = 240)
{
    int ran = 0;
    /* KAPPA_TEST_EVENTS: a smaller input under ThreadSanitizer (deploy/dev/sanitize), where
     * 1M records twice outlast the timeout */
    const char *ev = getenv("KAPPA_TEST_EVENTS");
    int records = ev && atoi(ev) > 0 ? atoi(ev) : 1000000;
    for (uint64_t seed = 1; seed < 64 && ran < 2; seed++)
        ran += check_split_ckpt(2, 3, seed, records, 2);
    cr_assert_eq(ran, 2, "no seed below 64 splits the sources over both sides");
}
