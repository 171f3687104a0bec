/* The whole-cache flush of the window operator (kp_op_window_flush, checkpoint barriers)
 * changes nothing in the results, and leaves RocksDB holding the operator's complete state.
 *
 * Each case runs a tumbling or sliding window job in process over a random input file, with
 * every window operator flushing after random records (kp_op_window_flush_randomly) and then
 * checking, from RocksDB alone, that its state reads back as what it holds
 * (kp_op_window_check_flushed: cached entries plus spilled partials; a mismatch fails the job).
 * The job's documents must equal a brute-force reference. Flushes mix with spills: the cache
 * is the default (nothing spills) or tiny (spills all the time), so flushed entries get
 * spilled, re-dirtied, read back and fired in every order.
 *
 * The input: keys skewed, times rising with a disorder below the out-of-orderness bound, so no
 * record is late (the lateness rule has its own property tests in test_windows.c).
 *
 * Seeds: a fixed list always runs, plus a fresh random one that is printed;
 * KAPPA_TEST_SEED=N runs only N. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "connectors.h"
#include "exec.h"
#include "graph.h"
#include "op_window.h"
#include "rng.h"

#define NREC  3000
#define NKEYS 300
#define OOO   200 /* the source's out-of-orderness bound; records lag by at most half of it */

static kp_window_spec spec; /* the define function has no user pointer */
static int use_sum;

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, kp_json_str(&j, "k"));
    kp_event_time(ev, kp_json_int(&j, "t", 0));
    return KP_OK;
}

static int64_t value_of(const kp_event *ev)
{
    kp_json j;
    if (kp_json_parse(&j, kp_event_get_value(ev)) != 0)
        return 0;
    return kp_json_int(&j, "v", 0);
}

static int define_job(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_stream *src = kp_source(job, "clicks", .decode = decode, .out_of_order = OOO);
    kp_windowed *w = kp_window(kp_key_by(src), spec);
    kp_sink(use_sum ? kp_sum(w, .value = value_of) : kp_count(w), "out");
    return 0;
}

typedef struct rec {
    int key;
    int64_t t, v;
} rec;

/* want[key][window index]: the reference value; windows end on the slide grid (offset 0). */
static int64_t *want;
static int64_t nwin, end0;

static int64_t *want_at(int key, int64_t end)
{
    return &want[(size_t)key * (size_t)nwin + (size_t)((end - end0) / spec.slide)];
}

static void make_case(uint64_t seed, const char *path, rec *recs)
{
    uint64_t r = seed | 1;
    FILE *f = fopen(path, "w");
    cr_assert(f);
    int64_t front = 1000;
    for (int i = 0; i < NREC; i++) {
        front += (int64_t)(kp_rng_next(&r) % 8);
        int key = kp_rng_next(&r) % 2 ? (int)(kp_rng_next(&r) % NKEYS)
                                      : (int)(kp_rng_next(&r) % (NKEYS / 30));
        recs[i] = (rec){key, front - (int64_t)(kp_rng_next(&r) % (OOO / 2)),
                        (int64_t)(kp_rng_next(&r) % 1000)};
        fprintf(f, "{\"k\":\"key_%d\",\"t\":%" PRId64 ",\"v\":%" PRId64 "}\n", recs[i].key,
                recs[i].t, recs[i].v);
    }
    fclose(f);
    /* every window containing a record: ends in (t, t + size], on the slide grid */
    end0 = (1000 - OOO) / spec.slide * spec.slide;
    nwin = (front + spec.size - end0) / spec.slide + 2;
    free(want);
    want = calloc((size_t)NKEYS * (size_t)nwin, sizeof *want);
    cr_assert(want);
    for (int i = 0; i < NREC; i++)
        for (int64_t end = recs[i].t / spec.slide * spec.slide + spec.slide;
             end <= recs[i].t + spec.size; end += spec.slide)
            *want_at(recs[i].key, end) += use_sum ? recs[i].v : 1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Reads the documents; each (key, end) once, with the reference's value. Returns how many. */
static size_t check_output(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s: no output", what);
    char line[512];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        kp_json j;
        cr_assert_eq(kp_json_parse(&j, (kp_bytes){line, strlen(line) - 1}), 0, "%s: %s", what,
                     line);
        kp_str k = kp_json_str(&j, "key");
        int key = atoi(k.ptr + 4);
        int64_t end = kp_json_int(&j, "window_end", -1), v = kp_json_int(&j, "value", -1);
        cr_assert(end > end0 && end < end0 + nwin * spec.slide, "%s: window %" PRId64, what, end);
        int64_t *w = want_at(key, end);
        cr_assert(*w != INT64_MIN, "%s: key_%d|%" PRId64 " emitted twice", what, key, end);
        cr_assert_eq(v, *w, "%s: key_%d|%" PRId64 ": %" PRId64 ", expected %" PRId64, what, key,
                     end, v, *w);
        *w = INT64_MIN;
        n++;
    }
    fclose(f);
    for (size_t i = 0; i < (size_t)NKEYS * (size_t)nwin; i++)
        cr_assert(want[i] == 0 || want[i] == INT64_MIN, "%s: key_%zu|%" PRId64 " never emitted",
                  what, i / (size_t)nwin, end0 + (int64_t)(i % (size_t)nwin) * spec.slide);
    return n;
}

static void run_case(uint64_t seed, int parallelism, size_t cache_bytes)
{
    char dir[] = "/tmp/kappa-test-flush-XXXXXX", in[128], out[128], state[128], what[256];
    cr_assert(mkdtemp(dir));
    snprintf(in, sizeof in, "%s/in.ndjson", dir);
    snprintf(out, sizeof out, "%s/out.ndjson", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    snprintf(what, sizeof what,
             "seed %" PRIu64 " (rerun with KAPPA_TEST_SEED=%" PRIu64 "): %s(%" PRId64 ",%" PRId64
             ") %s p=%d cache=%zu",
             seed, seed, spec.size == spec.slide ? "tumbling" : "sliding", spec.size, spec.slide,
             use_sum ? "sum" : "count", parallelism, cache_bytes);
    static rec recs[NREC];
    make_case(seed, in, recs);

    kp_op_window_flush_randomly(seed, 80);
    kp_job *job = kp_job_new("flush");
    cr_assert(job);
    job->parallelism_override = parallelism;
    char err[1024] = "", in_uri[160], out_uri[160];
    cr_assert_eq(kp_job_define(job, define_job, err, sizeof err), 0, "%s: %s", what, err);
    kp_connectors_register_builtin();
    snprintf(in_uri, sizeof in_uri, "file:%s", in);
    snprintf(out_uri, sizeof out_uri, "file:%s", out);
    kp_binding bind[] = {{.name = "clicks", .uri = in_uri}, {.name = "out", .uri = out_uri}};
    kp_exec_config cfg = {.bindings = bind,
                          .nbindings = 2,
                          .state_dir = state,
                          .state_cache_bytes = cache_bytes,
                          .watermark_every = 1,
                          .step_seed = seed};
    kp_exec_stats stats = {0};
    int rc = kp_exec_run(job, &cfg, &stats, err, sizeof err);
    kp_job_free(job);
    uint64_t flushes = kp_op_window_flush_randomly(0, 0);
    cr_assert_eq(rc, 0, "%s: run failed: %s", what, err);
    cr_assert_gt(flushes, 5, "%s: only %" PRIu64 " flushes", what, flushes);
    if (cache_bytes)
        cr_assert_gt(stats.state_spills, 0, "%s: the tiny cache never spilled", what);
    size_t docs = check_output(out, what);
    if (getenv("KAPPA_TEST_VERBOSE"))
        fprintf(stderr, "%s: %zu documents, %" PRIu64 " flushes, %lld spills\n", what, docs,
                flushes, stats.state_spills);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void run_seeds(kp_window_spec s, int sum)
{
    spec = s;
    use_sum = sum;
    uint64_t seeds[] = {1, 2, 0};
    const char *env = getenv("KAPPA_TEST_SEED");
    if (env) {
        seeds[0] = strtoull(env, NULL, 10);
        seeds[1] = 0;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seeds[2] = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20;
        fprintf(stderr, "test_flush: fresh seed %" PRIu64 "\n", seeds[2]);
    }
    for (int i = 0; i < 3 && seeds[i]; i++) {
        run_case(seeds[i], 1, 0);        /* all cached: flushed entries stay clean */
        run_case(seeds[i], 2, 16 << 10); /* spills all the time, between flushes */
    }
}

Test(flush, tumbling_count)
{
    run_seeds((kp_window_spec){.kind = KP_WINDOW_TUMBLING, .size = 50, .slide = 50}, 0);
}

Test(flush, sliding_sum)
{
    run_seeds((kp_window_spec){.kind = KP_WINDOW_SLIDING, .size = 60, .slide = 20}, 1);
}

Test(flush, sliding_count_running_window)
{
    run_seeds((kp_window_spec){.kind = KP_WINDOW_SLIDING, .size = 100, .slide = 25}, 0);
}
