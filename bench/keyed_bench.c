/* CPU cost per record of session windows and keyed process functions with all state in
 * memory, and with the state budget (state_cache_bytes) 10x and 100x smaller than the state,
 * so that keys are spilled to RocksDB and read back (runtime/key_spill.c).
 *
 * Input: a generated file of click events {"u":"user_U","t":T}, U uniform over `keys` users,
 * T advancing evenly over `span-min` minutes, read by the file source (its reading and JSON
 * decoding are in every figure alike). Jobs, at parallelism 1:
 *   session: key_by user, session windows (gap 30 min), count; documents to /dev/null;
 *   process: key_by user, a process function with a 16-byte value per user and ONE event-time
 *            timer 2 h after the user's last click (moved by delete + register on each click);
 *   process-pt (only when named): the same with ONE processing-time timer per user instead,
 *            an hour of wall clock after the user's last click (never due during a run).
 * With the default span (60 min) and 30-min gap, every user's session and value stay open to
 * the end: the state is all users. Each job runs first with the default budget (256 MiB: all
 * cached), which gives the state's peak bytes, then with that peak / 10 and / 100.
 *
 * Prints per run: records, CPU seconds (user+sys, all threads, RocksDB's included), CPU ns per
 * record, wall seconds, spills, peak in-memory state bytes, budget, and the ratio of the
 * all-cached CPU cost to this run's (how much throughput per CPU-second is kept).
 *
 *     keyed_bench [events=2000000] [keys=200000] [span-min=60]
 *                 [only=all|session|process|process-pt]
 *                 [memtable-mib=0 (RocksDB's default here, 16)] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/clock.h"
#include "../connectors/connectors.h"
#include "../runtime/connector.h"
#include "../runtime/exec.h"
#include "../runtime/graph.h"
#include "../runtime/rng.h"

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, kp_json_str(&j, "u"));
    kp_event_time(ev, kp_json_int(&j, "t", 0));
    return KP_OK;
}

static int define_session(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_stream *in = kp_source(job, "in", .decode = decode, .out_of_order = 1000);
    kp_sink(kp_count(kp_window(kp_key_by(in), kp_session(30 * KP_MINUTE)), .uid = "sessions"),
            "out");
    return 0;
}

typedef struct last_click {
    int64_t last, clicks;
} last_click;

static kp_rc on_click(kp_ctx *ctx, const kp_event *ev)
{
    bool exists;
    last_click *s = kp_ctx_value(ctx, &exists);
    kp_time t = kp_event_get_time(ev);
    s->clicks++;
    if (exists && t <= s->last)
        return KP_OK;
    if (exists)
        kp_timer_delete(ctx, s->last + 2 * KP_HOUR, true);
    s->last = t;
    kp_ctx_timer_event(ctx, t + 2 * KP_HOUR);
    return KP_OK;
}

static kp_rc on_quiet(kp_ctx *ctx, kp_time when, bool event_time)
{
    kp_ctx_value_clear(ctx);
    return KP_OK;
}

static kp_rc on_click_pt(kp_ctx *ctx, const kp_event *ev)
{
    bool exists;
    last_click *s = kp_ctx_value(ctx, &exists);
    kp_time due = kp_ctx_now(ctx) + KP_HOUR;
    s->clicks++;
    if (exists && due == s->last)
        return KP_OK;
    if (exists)
        kp_timer_delete(ctx, s->last, false);
    s->last = due;
    kp_ctx_timer_processing(ctx, due);
    return KP_OK;
}

static int define_process_on(kp_job *job, kp_rc (*on_event)(kp_ctx *, const kp_event *))
{
    kp_stream *in = kp_source(job, "in", .decode = decode, .out_of_order = 1000);
    kp_sink(kp_process(kp_key_by(in), .on_event = on_event, .on_timer = on_quiet,
                       .key_in_one_partition = true, .value_size = sizeof(last_click),
                       .uid = "process"),
            "out");
    return 0;
}

static int define_process(const kp_api *api, kp_job *job)
{
    (void)api;
    return define_process_on(job, on_click);
}

static int define_process_pt(const kp_api *api, kp_job *job)
{
    (void)api;
    return define_process_on(job, on_click_pt);
}

static size_t memtable_bytes;

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

typedef struct result {
    double cpu, wall;
    kp_exec_stats stats;
} result;

static int run(const char *what, int (*define)(const kp_api *, kp_job *), const char *in,
               const char *state_dir, size_t budget, result *r)
{
    kp_job *job = kp_job_new(what);
    char err[1024], src[700];
    if (!job || kp_job_define(job, define, err, sizeof err) != 0) {
        fprintf(stderr, "keyed_bench: define %s: %s\n", what, job ? err : "out of memory");
        return -1;
    }
    job->parallelism_override = 1;
    snprintf(src, sizeof src, "file:%s", in);
    kp_binding b[] = {{.name = "in", .uri = src}, {.name = "out", .uri = "file:/dev/null"}};
    kp_exec_config cfg = {
        .bindings = b, .nbindings = 2, .state_dir = state_dir, .state_cache_bytes = budget};
    double c0 = cpu_seconds();
    kp_time w0 = kp_mono_ms();
    int rc = kp_exec_run(job, &cfg, &r->stats, err, sizeof err);
    r->wall = (double)(kp_mono_ms() - w0) / 1e3;
    r->cpu = cpu_seconds() - c0;
    kp_job_free(job);
    if (rc != 0)
        fprintf(stderr, "keyed_bench: %s: %s\n", what, err);
    return rc;
}

static void print(const char *what, const char *label, size_t budget, const result *r,
                  double base_ns)
{
    double ns = r->cpu * 1e9 / (double)r->stats.records_in;
    printf("%-8s %-10s budget %10zu B  records %9lld  CPU %6.2f s  %7.0f ns/record  wall %6.2f s"
           "  spills %6lld  state peak %11lld B  kept %3.0f %%\n",
           what, label, budget, r->stats.records_in, r->cpu, ns, r->wall, r->stats.state_spills,
           r->stats.state_cache_peak, base_ns > 0 ? 100.0 * base_ns / ns : 100.0);
    fflush(stdout);
}

static int bench(const char *what, int (*define)(const kp_api *, kp_job *), const char *in,
                 const char *state_dir)
{
    result all;
    if (run(what, define, in, state_dir, 0, &all) != 0)
        return -1;
    double base_ns = all.cpu * 1e9 / (double)all.stats.records_in;
    print(what, "cached", 256u << 20, &all, 0);
    static const int over[] = {10, 100};
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        size_t budget = (size_t)all.stats.state_cache_peak / (size_t)over[i];
        char label[32];
        snprintf(label, sizeof label, "%dx over", over[i]);
        result r;
        if (run(what, define, in, state_dir, budget, &r) != 0)
            return -1;
        print(what, label, budget, &r, base_ns);
    }
    return 0;
}

int main(int argc, char **argv)
{
    long events = argc > 1 ? atol(argv[1]) : 2000000;
    long keys = argc > 2 ? atol(argv[2]) : 200000;
    long span_min = argc > 3 ? atol(argv[3]) : 60;
    const char *only = argc > 4 ? argv[4] : "all";
    memtable_bytes = argc > 5 ? (size_t)atol(argv[5]) << 20 : 0;
    if (events < 1 || keys < 1 || span_min < 1) {
        fprintf(stderr, "usage: keyed_bench [events] [keys] [span-min] [only]\n");
        return 2;
    }
    char dir[] = "/tmp/kappa-keyed-bench-XXXXXX", in[600], state[600];
    if (!mkdtemp(dir))
        return 1;
    snprintf(in, sizeof in, "%s/clicks.ndjson", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    FILE *f = fopen(in, "w");
    if (!f)
        return 1;
    uint64_t rng = 42;
    const int64_t t0 = 1700000000000LL, span = span_min * 60000;
    for (long i = 0; i < events; i++)
        fprintf(f, "{\"u\":\"user_%llu\",\"t\":%lld}\n",
                (unsigned long long)(kp_rng_next(&rng) % (uint64_t)keys),
                (long long)(t0 + span * i / events));
    fclose(f);
    double load[3] = {0};
    if (getloadavg(load, 3) < 0)
        load[0] = -1;
    printf("keyed_bench: %ld events, %ld keys, %ld min of event time, p=1, memtable %zu MiB, %ld "
           "CPUs, load average %.2f\n",
           events, keys, span_min, memtable_bytes >> 20, sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    kp_connectors_register_builtin();
    int rc = 0;
    if (!strcmp(only, "all") || !strcmp(only, "session"))
        rc |= bench("session", define_session, in, state);
    if (!strcmp(only, "all") || !strcmp(only, "process"))
        rc |= bench("process", define_process, in, state);
    if (!strcmp(only, "process-pt"))
        rc |= bench("process-pt", define_process_pt, in, state);
    unlink(in);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "keyed_bench: could not remove %s\n", dir);
    return rc ? 1 : 0;
}
