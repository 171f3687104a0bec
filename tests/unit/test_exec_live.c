/* The executor's live counters (runtime/exec_live.h): a caller-owned array, one entry per
 * subtask, filled while the run goes on and read by another thread meanwhile (under TSan in
 * the threaded suite). At the end they add up to the run's totals: the sources' records_in
 * is the input, what the sources sent is what the window subtasks received, the sinks'
 * records_out is what was written; counters never go back while a reader watches. Input
 * seeds: a fixed list plus a fresh printed one. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../runtime/connector.h"
#include "../../runtime/exec.h"
#include "../../runtime/exec_live.h"
#include "../../runtime/graph.h"
#include "../../runtime/json.h"
#include "../../runtime/plan.h"
#include "../../runtime/rng.h"
#include "connectors.h"

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str k = kp_json_str(&j, "k");
    int64_t t = kp_json_int(&j, "t", INT64_MIN);
    if (k.len == 0 || t == INT64_MIN)
        return KP_BAD_INPUT;
    kp_event_key(ev, k);
    kp_event_time(ev, t);
    return KP_OK;
}

static void emit_count(kp_doc *doc, const kp_window *w, kp_str key, int64_t count)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), w->end);
    kp_doc_int(doc, "c", count);
}

static int define(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_job_parallelism(job, 2);
    kp_stream *src = kp_source(job, "in", .decode = decode, .out_of_order = 200);
    kp_windowed *w = kp_window(kp_key_by(src), kp_tumbling(1000));
    kp_sink(kp_count(w, .emit = emit_count), "out");
    return 0;
}

static void write_input(const char *path, uint64_t seed, int nrec)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    int64_t front = 1000000;
    for (int i = 0; i < nrec; i++) {
        front += (int64_t)(kp_rng_next(&s) % 20);
        fprintf(f, "{\"k\":\"k%d\",\"t\":%" PRId64 "}\n", (int)(kp_rng_next(&s) % 23), front);
    }
    fclose(f);
}

typedef struct watcher {
    kp_subtask_live *live;
    int n;
    atomic_int stop;
    int went_back;
} watcher;

/* Reads every counter while the run goes on; notes any that went back. */
static void *watch(void *arg)
{
    watcher *w = arg;
    long long last[64] = {0};
    while (!atomic_load(&w->stop)) {
        for (int i = 0; i < w->n; i++) {
            long long v = kp_live_get(&w->live[i].records_in);
            w->went_back |= v < last[i];
            last[i] = v;
        }
        usleep(200);
    }
    return NULL;
}

static void run_seed(uint64_t seed)
{
    char in[256], out[256], uri_in[300], uri_out[300], err[1024] = "";
    snprintf(in, sizeof in, "/tmp/kappa-exec-live-%d.ndjson", (int)getpid());
    snprintf(out, sizeof out, "/tmp/kappa-exec-live-%d.out", (int)getpid());
    int nrec = 20000 + (int)(seed % 5000);
    write_input(in, seed, nrec);
    snprintf(uri_in, sizeof uri_in, "file:%s?partitions=4", in);
    snprintf(uri_out, sizeof uri_out, "file:%s", out);
    kp_binding bind[2] = {{.name = "in", .uri = uri_in}, {.name = "out", .uri = uri_out}};
    kp_job *job = kp_job_new("exec-live");
    cr_assert(job);
    cr_assert_eq(kp_job_define(job, define, err, sizeof err), 0, "%s", err);
    kp_plan *plan = malloc(sizeof *plan);
    cr_assert_eq(kp_plan_build(job, plan), 0);
    watcher w = {.live = calloc(64, sizeof(kp_subtask_live))};
    for (int t = 0; t < plan->ntasks; t++)
        for (int j = 0; j < plan->tasks[t].parallelism; j++, w.n++) {
            cr_assert_lt(w.n, 64);
            w.live[w.n].task_id = plan->tasks[t].id;
            w.live[w.n].subtask = j;
        }
    kp_exec_config cfg = {.bindings = bind,
                          .nbindings = 2,
                          .state_dir = "/tmp",
                          .watermark_every = 7,
                          .live = w.live,
                          .nlive = w.n};
    pthread_t reader;
    cr_assert_eq(pthread_create(&reader, NULL, watch, &w), 0);
    kp_exec_stats st;
    int rc = kp_exec_run(job, &cfg, &st, err, sizeof err);
    atomic_store(&w.stop, 1);
    pthread_join(reader, NULL);
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": %s", seed, err);
    cr_assert_not(w.went_back, "a counter went back");
    long long src_in = 0, src_out = 0, bytes = 0, win_in = 0, win_out = 0;
    for (int i = 0, k = 0; k < plan->ntasks; k++)
        for (int j = 0; j < plan->tasks[k].parallelism; j++, i++) {
            kp_subtask_live *l = &w.live[i];
            if (plan->tasks[k].upstream < 0) {
                src_in += kp_live_get(&l->records_in);
                src_out += kp_live_get(&l->records_out);
                bytes += kp_live_get(&l->bytes_in);
            } else {
                win_in += kp_live_get(&l->records_in);
                win_out += kp_live_get(&l->records_out);
                cr_assert_neq(kp_live_get(&l->watermark_ms), KP_TIME_MIN, "a watermark passed");
            }
        }
    cr_assert_eq(src_in, nrec, "seed %" PRIu64, seed);
    cr_assert_eq(src_in, st.records_in);
    cr_assert_eq(bytes, st.bytes_in);
    cr_assert_eq(src_out, win_in, "what the sources sent, the windows received");
    cr_assert_eq(win_out, st.records_out, "the sinks' records_out");
    cr_assert_gt(win_out, 0);
    free(w.live);
    free(plan);
    kp_job_free(job);
    unlink(in);
    unlink(out);
}

Test(exec_live, counters_add_up_to_the_run)
{
    kp_connectors_register_builtin();
    static const uint64_t fixed[] = {1, 2, 3};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        run_seed(fixed[i]);
    uint64_t fresh = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    cr_log_info("fresh seed %" PRIu64, fresh);
    run_seed(fresh);
}
