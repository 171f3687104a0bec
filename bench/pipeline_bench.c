/* In-process throughput of the seed pipeline (JSON decode -> key_by item -> hourly count,
 * RocksDB-backed window state) over events pre-loaded in memory, so neither file I/O nor the
 * sink's serialisation is measured.
 *
 * Events are seed-shaped: {"user_id":"user_U","item_id":"item_K","timestamp":T} with K drawn
 * from `keys` distinct items and T advancing evenly over 7 days with up to 10 s of backwards
 * jitter (within the job's 10 s out-of-orderness). A "mem" source connector hands out records
 * pointing into the pre-generated buffer, a "null" sink connector only counts documents. The
 * mem source has 8 partitions (event i is in partition i mod 8; subtask i of p owns the
 * partitions j with j mod p == i), each with its own watermark, so the input the job sees is
 * the same at every p.
 *
 * For each configuration it prints: keys, window kind (tumbling 1 h, or sliding 1 h / 1 min),
 * parallelism, events, wall seconds, events/s, events/s per core, peak RSS of the process so
 * far (ru_maxrss: a high-water mark, so it never goes down between configurations; the
 * pre-generated events are included), state spills and documents out.
 *
 * events/s per core = events/s / min(busy threads, cores), where busy threads = 2p (p source
 * subtasks + p window subtasks; the sink is chained into the window task) and cores = the
 * online CPUs (nproc). This is the throughput per core the run could at best have used; it
 * does not credit RocksDB's background threads. Process CPU seconds (user+sys, all threads)
 * are printed too, and events per CPU-second, the alternative definition.
 *
 *     pipeline_bench [events-small=10000000] [events-10M-keys=20000000] [only=all]
 *                    [span-hours=168] [small-cache-mib=64] [events-scaling=2000000]
 *
 * `only` restricts the runs: "1k", "100k", "10M", "10Msmall", "sliding" (100k keys, tumbling
 * and sliding at p=1), "tumbling" (100k keys, p=1 only, for profiling), "scaling" (below),
 * "scaling-1k", "scaling-100k", "scaling-1M" (one key count of it), or "all" (everything).
 *
 * The scaling runs measure the per-record cost as p grows: tumbling counts at 1k, 100k and 1M
 * keys, p = 1, 2, 4 (one thread per subtask), `events-scaling` events each, over 2 h of event
 * time (unless span-hours is given with only=scaling*), so that a pane holds up to ~1M
 * distinct keys and the in-memory key table is what is measured. Read ns/event (process CPU
 * ns per record, all threads): it should be flat in p. A run's time is bounded by the event
 * counts: e.g. `pipeline_bench 1 1 scaling` is 9 runs of 2M events; a quick look is
 * `pipeline_bench 1 1 scaling 2 64 200000`.
 * span-hours is the event-time range the events cover: the window state holds only the keys
 * seen in the open hour(s), so with 168 h and 20M events a pane holds ~120k distinct keys
 * whatever the total; a span of 2 h puts millions of distinct keys in each pane (and makes
 * the 256 MiB cache spill). */
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/connector.h"
#include "../runtime/exec.h"
#include "../runtime/graph.h"
#include "../runtime/rng.h"
#include "../runtime/state.h"

/* ---- pre-generated events ------------------------------------------------------------- */

typedef struct event_buf {
    char *text;  /* all events, back to back */
    size_t *off; /* start of event i; off[n] = end */
    long n;
} event_buf;

static event_buf events;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    return kp_rng_next(&rng_state);
}

static long span_hours = 168;
static double skew; /* Zipf exponent of the items (item_0 hottest); 0 = uniform */

/* An item drawn from Zipf(skew) over `keys` items by inverse CDF (cdf built once per call of
 * generate), or uniformly when skew is 0. */
static double *zipf_cdf;

static int zipf_setup(long keys)
{
    free(zipf_cdf);
    zipf_cdf = NULL;
    if (skew <= 0)
        return 0;
    zipf_cdf = malloc((size_t)keys * sizeof *zipf_cdf);
    if (!zipf_cdf)
        return -1;
    double sum = 0;
    for (long k = 0; k < keys; k++)
        zipf_cdf[k] = sum += pow((double)(k + 1), -skew);
    for (long k = 0; k < keys; k++)
        zipf_cdf[k] /= sum;
    return 0;
}

static long draw_item(long keys)
{
    if (!zipf_cdf)
        return (long)(rng() % (uint64_t)keys);
    double u = (double)(rng() >> 11) / (double)(1ull << 53);
    long lo = 0, hi = keys - 1;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int generate(long n, long keys)
{
    free(events.text);
    free(events.off);
    size_t cap = (size_t)n * 80 + 64;
    events.text = malloc(cap);
    events.off = malloc(((size_t)n + 1) * sizeof *events.off);
    if (!events.text || !events.off || zipf_setup(keys) != 0)
        return -1;
    const int64_t t0 = 1700000000000ll, span = span_hours * KP_HOUR;
    size_t pos = 0;
    rng_state = 0x9e3779b97f4a7c15ull;
    for (long i = 0; i < n; i++) {
        int64_t ts = t0 + (int64_t)((double)span * (double)i / (double)n);
        ts -= (int64_t)(rng() % (10 * KP_SECOND));
        long item = draw_item(keys);
        long user = (long)(rng() % 100000);
        events.off[i] = pos;
        pos += (size_t)snprintf(events.text + pos, cap - pos,
                                "{\"user_id\":\"user_%ld\",\"item_id\":\"item_%ld\","
                                "\"timestamp\":%" PRId64 "}",
                                user, item, ts);
    }
    events.off[n] = pos;
    events.n = n;
    return 0;
}

/* ---- "mem" source ------------------------------------------------------------------------ */

/* The events form MEM_PARTITIONS partitions: event i is record i / MEM_PARTITIONS of
 * partition i % MEM_PARTITIONS. Subtask s of p owns the partitions j with j mod p == s and
 * reads its events in index order, so what each partition holds, and so the job's result,
 * does not depend on p. */
#define MEM_PARTITIONS 8

typedef struct mem_reader {
    kp_source_reader r;
    long next; /* next event index to consider */
    int mine, p;
} mem_reader;

static int mem_owns(const mem_reader *m, int32_t partition)
{
    return partition >= 0 && partition < MEM_PARTITIONS && partition % m->p == m->mine;
}

static kp_poll_rc mem_poll(kp_source_reader *r, kp_raw *out, int max, int *n, int timeout_ms,
                           char *errstr, size_t errlen)
{
    mem_reader *m = (mem_reader *)r;
    *n = 0;
    /* when p divides MEM_PARTITIONS the events owned are those with i mod p == mine: step
     * over the others rather than test each (every subtask would pass over all events, a
     * per-record cost that grows with p) */
    long step = MEM_PARTITIONS % m->p == 0 ? m->p : 1;
    if (step > 1 && m->next % step != m->mine)
        m->next += (m->mine - m->next % step + step) % step;
    for (; *n < max && m->next < events.n; m->next += step) {
        long i = m->next;
        int32_t part = (int32_t)(i % MEM_PARTITIONS);
        if (!mem_owns(m, part))
            continue;
        out[(*n)++] =
            (kp_raw){.key = {"", 0},
                     .value = {events.text + events.off[i], events.off[i + 1] - events.off[i]},
                     .ts = KP_TIME_MIN,
                     .partition = part,
                     .offset = i / MEM_PARTITIONS};
    }
    return *n > 0 ? KP_POLL_RECORDS : KP_POLL_EOF;
}

static int mem_partitions(kp_source_reader *r, int32_t *out, int max)
{
    mem_reader *m = (mem_reader *)r;
    int n = 0;
    for (int32_t j = m->mine; j < MEM_PARTITIONS && n < max; j += m->p)
        out[n++] = j;
    return n;
}

/* A partition has ended (and is caught up: memory does not grow) once the reader has gone
 * past its last event. */
static int mem_ended(kp_source_reader *r, int32_t partition)
{
    mem_reader *m = (mem_reader *)r;
    if (!mem_owns(m, partition))
        return 0;
    if (partition >= events.n)
        return 1; /* empty partition */
    long last = partition + (events.n - 1 - partition) / MEM_PARTITIONS * MEM_PARTITIONS;
    return m->next > last;
}

static void mem_close(kp_source_reader *r)
{
    free(r);
}

static kp_source_reader *mem_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    mem_reader *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    m->r = (kp_source_reader){.poll = mem_poll,
                              .close = mem_close,
                              .partitions = mem_partitions,
                              .caught_up = mem_ended,
                              .ended = mem_ended};
    m->mine = ep->subtask;
    m->p = ep->parallelism > 0 ? ep->parallelism : 1;
    return &m->r;
}

/* ---- "null" sink ------------------------------------------------------------------------- */

static atomic_llong docs_out;

typedef struct null_writer {
    kp_sink_writer w;
    long long n;
} null_writer;

static int null_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                      size_t errlen)
{
    ((null_writer *)w)->n++;
    return 0;
}

static int null_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    return 0;
}

static void null_close(kp_sink_writer *w)
{
    atomic_fetch_add(&docs_out, ((null_writer *)w)->n);
    free(w);
}

static kp_sink_writer *null_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    null_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    w->w = (kp_sink_writer){.write = null_write, .flush = null_flush, .close = null_close};
    return &w->w;
}

/* ---- the seed job, defined in-process ---------------------------------------------------- */

static kp_rc parse_click(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str item = kp_json_str(&j, "item_id");
    int64_t ts = kp_json_int(&j, "timestamp", -1);
    if (item.len == 0 || ts < 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, item);
    kp_event_time(ev, ts);
    return KP_OK;
}

static void write_count(kp_doc *doc, const kp_window *w, kp_str item, int64_t count)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(item), w->end);
    kp_doc_str(doc, "item_id", item);
    kp_doc_int(doc, "click_count", count);
    kp_doc_int(doc, "window_start", w->start);
    kp_doc_int(doc, "window_end", w->end);
}

static int sliding;        /* read by the define functions: 1 = 1 h / 1 min, 2 = tumbling 1 min */
static size_t memtable_mb; /* PIPELINE_BENCH_MEMTABLE_MB; 0 = the default */
static int only_p;         /* PIPELINE_BENCH_P: the scaling runs at this p only; 0 = 1, 2, 4 */
static int credits;        /* PIPELINE_BENCH_CREDITS: batches per channel; 0 = the default */

static int define_seed(const kp_api *api, kp_job *job)
{
    kp_stream *clicks = kp_source(job, "clicks", .decode = parse_click,
                                  .out_of_order = 10 * KP_SECOND, .on_error = KP_POLICY_SKIP);
    kp_window_spec spec = sliding == 1   ? kp_sliding(KP_HOUR, KP_MINUTE)
                          : sliding == 2 ? kp_tumbling(KP_MINUTE)
                                         : kp_tumbling(KP_HOUR);
    kp_stream *counts = kp_count(kp_window(kp_key_by(clicks), spec), .emit = write_count,
                                 .uid = "hourly-click-count");
    kp_sink(counts, "hourly-click-index");
    return 0;
}

/* ---- measurement -------------------------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static const char *key_label(long keys)
{
    static char b[32];
    if (keys >= 1000000 && keys % 1000000 == 0)
        snprintf(b, sizeof b, "%ldM", keys / 1000000);
    else if (keys >= 1000 && keys % 1000 == 0)
        snprintf(b, sizeof b, "%ldk", keys / 1000);
    else
        snprintf(b, sizeof b, "%ld", keys);
    return b;
}

/* One run's figures, for the state-scale matrix. */
typedef struct run_result {
    double ns_per_event;
    long long spills, cache_peak;
} run_result;

static int run_bytes(long keys, int slide, int p, size_t cache_bytes, run_result *res);

static int run_one(long keys, int slide, int p, size_t cache_mb)
{
    return run_bytes(keys, slide, p, cache_mb << 20, NULL);
}

/* Runs the seed job once with a write-back cache of cache_bytes per window subtask and prints
 * one line; fills *res if given. */
static int run_bytes(long keys, int slide, int p, size_t cache_bytes, run_result *res)
{
    char err[1024], dir[] = "/tmp/kappa-pipeline-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return -1;
    }
    sliding = slide;
    kp_job *job = kp_job_new("pipeline_bench");
    job->parallelism_override = p;
    if (kp_job_define(job, define_seed, err, sizeof err) != 0) {
        fprintf(stderr, "define: %s\n", err);
        kp_job_free(job);
        return -1;
    }
    kp_binding b[] = {{.name = "clicks", .uri = "mem:"},
                      {.name = "hourly-click-index", .uri = "null:"}};
    kp_exec_config cfg = {.bindings = b,
                          .nbindings = 2,
                          .state_dir = dir,
                          .state_cache_bytes = cache_bytes,
                          .rocksdb_memtable_bytes = memtable_mb << 20,
                          .credits = credits};
    kp_exec_stats st;
    memset(&st, 0, sizeof st);
    atomic_store(&docs_out, 0);
    kp_state_io io0, io1;
    kp_state_io_totals(&io0);
    double c0 = cpu_seconds(), t0 = now();
    int rc = kp_exec_run(job, &cfg, &st, err, sizeof err);
    double secs = now() - t0, cpu = cpu_seconds() - c0;
    kp_state_io_totals(&io1);
    kp_job_free(job);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (rc != 0) {
        fprintf(stderr, "run failed (keys %ld, p %d): %s\n", keys, p, err);
        return -1;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int busy = 2 * p;
    int cores = busy < ncpu ? busy : (int)ncpu;
    double eps = (double)st.records_in / secs;
    double ns = 1e9 * cpu / (double)st.records_in;
    printf("keys=%-4s window=%-8s p=%d cache=%.2fMiB events=%lld secs=%.2f events/s=%.0f "
           "events/s/core=%.0f (/%d) cpu_s=%.2f events/cpu_s=%.0f ns/event=%.0f "
           "peak_rss=%ldMiB spills=%lld cache_peak=%.2fMiB rocksdb_written=%.1fMiB "
           "rocksdb_read=%.1fMiB late=%lld fired=%lld docs=%lld\n",
           key_label(keys),
           slide == 1   ? "sliding"
           : slide == 2 ? "minute"
                        : "tumbling",
           p, (double)cache_bytes / (1 << 20), st.records_in, secs, eps, eps / cores, cores, cpu,
           (double)st.records_in / cpu, ns, peak_rss_mb(), st.state_spills,
           (double)st.state_cache_peak / (1 << 20),
           (double)(io1.bytes_written - io0.bytes_written) / (1 << 20),
           (double)(io1.bytes_read - io0.bytes_read) / (1 << 20), st.late_records, st.windows_fired,
           (long long)atomic_load(&docs_out));
    /* per thread: CPU of the source and window threads (sum, busiest), and their waits */
    printf("  threads: source cpu_s=%.2f (max %.2f) blocked=%lld for %.2fs; window cpu_s=%.2f "
           "(max %.2f) starved=%lld for %.2fs; cores busy=%.2f\n",
           st.source_cpu_s, st.source_cpu_max_s, st.source_blocked, st.source_blocked_s,
           st.other_cpu_s, st.other_cpu_max_s, st.other_starved, st.other_starved_s,
           (st.source_cpu_s + st.other_cpu_s) / secs);
    fflush(stdout);
    if (res)
        *res = (run_result){ns, st.state_spills, st.state_cache_peak};
    return 0;
}

/* The scaling runs: tumbling 1 h counts at 1k, 100k and 1M keys, p = 1, 2, 4, CPU ns per
 * record. `which` is "scaling" (all three key counts) or "scaling-1k" / "-100k" / "-1M". */
static int run_scaling(const char *which, long n, size_t cache_mb)
{
    static const long keysets[] = {1000, 100000, 1000000};
    static const char *const labels[] = {"scaling-1k", "scaling-100k", "scaling-1M"};
    for (int k = 0; k < 3; k++) {
        if (strcmp(which, "scaling") != 0 && strcmp(which, labels[k]) != 0)
            continue;
        double g0 = now();
        if (generate(n, keysets[k]) != 0) {
            fprintf(stderr, "out of memory generating %ld events\n", n);
            return -1;
        }
        printf("# scaling: generated %ld events over %ld keys, %ld h of event time (%.1f MiB) in "
               "%.1f s\n",
               n, keysets[k], span_hours, (double)events.off[n] / (1 << 20), now() - g0);
        fflush(stdout);
        for (int p = 1; p <= 4; p *= 2)
            if ((!only_p || p == only_p) && run_one(keysets[k], 0, p, cache_mb) != 0)
                return -1;
    }
    return 0;
}

/* Parses a comma-separated list of counts with optional k/M suffixes into v (at most max);
 * returns how many, or -1 if malformed. */
static int parse_list(const char *s, long *v, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x <= 0)
            return -1;
        if (*end == 'k')
            x *= 1000, end++;
        else if (*end == 'M')
            x *= 1000000, end++;
        v[n++] = x;
        if (*end != ',' && *end != '\0')
            return -1;
        s = *end ? end + 1 : end;
    }
    return *s ? -1 : n;
}

/* The state-scale matrix (issue 8): tumbling 1 h counts over 2 h of event time, so every
 * pane holds (nearly) all keys. For each key count and p, a first run with an unbounded cache
 * measures the state (the peak of the write-back cache, per subtask): that is "1x" (the
 * budget equals the state; nothing spills). Then the budget is set to state / 10 and
 * state / 100. `spec` is "state" (everything) or "state:KEYS:PS:RATIOS:SKEW", KEYS, PS and
 * RATIOS comma lists, e.g. "state:100k,1M:1,2:10" (1x always runs: it is the reference);
 * SKEW is the items' Zipf exponent (default 0 = uniform, every key equally hot: the worst case
 * for a cache; kappa-gen's default is 1.0). A sixth field picks other windows: "sliding" (1 h
 * every 1 min) or "minute" (tumbling 1 min). Events per key count: max(events-scaling,
 * 2 * keys). */
static int run_state_matrix(const char *spec, long n_min)
{
    long keys[8] = {100000, 1000000, 10000000}, ps[8] = {1, 2, 4}, ratios[8] = {10, 100};
    int nk = 3, np = 3, nr = 2, slide = 0;
    if (strncmp(spec, "state:", 6) == 0) {
        char k[128], p[64], r[64], kind[16] = "";
        r[0] = '\0';
        if (sscanf(spec + 6, "%127[^:]:%63[^:]:%63[^:]:%lf:%15s", k, p, r, &skew, kind) < 2 ||
            (kind[0] && (slide = !strcmp(kind, "sliding")  ? 1
                                 : !strcmp(kind, "minute") ? 2
                                                           : -1) < 0) ||
            (nk = parse_list(k, keys, 8)) <= 0 || (np = parse_list(p, ps, 8)) <= 0 ||
            (nr = r[0] ? parse_list(r, ratios, 8) : 0) < 0) {
            fprintf(stderr,
                    "state matrix: expected state:KEYS:PS[:RATIOS[:SKEW[:sliding|minute]]], "
                    "e.g. state:100k,1M:1,2:10,100:1.0\n");
            return -1;
        }
    }
    for (int k = 0; k < nk; k++) {
        long n = n_min > 2 * keys[k] ? n_min : 2 * keys[k];
        double g0 = now();
        if (generate(n, keys[k]) != 0) {
            fprintf(stderr, "out of memory generating %ld events\n", n);
            return -1;
        }
        printf("# state: generated %ld events over %ld keys (Zipf skew %.2f), %ld h of event time "
               "(%.1f MiB) in %.1f s\n",
               n, keys[k], skew, span_hours, (double)events.off[n] / (1 << 20), now() - g0);
        fflush(stdout);
        for (int i = 0; i < np; i++) {
            run_result all, r;
            printf("# state 1x (budget = the state, unbounded cache)\n");
            if (run_bytes(keys[k], slide, (int)ps[i], (size_t)1 << 40, &all) != 0)
                return -1;
            size_t state = (size_t)all.cache_peak / (size_t)ps[i];
            for (int j = 0; j < nr; j++) {
                size_t budget = state / (size_t)ratios[j];
                printf("# state %ldx: budget %.3f MiB per subtask\n", ratios[j],
                       (double)budget / (1 << 20));
                if (run_bytes(keys[k], slide, (int)ps[i], budget ? budget : 1, &r) != 0)
                    return -1;
                printf("# summary keys=%s p=%ld state=%ldx spills=%lld ns/event=%.0f (1x: %.0f) "
                       "throughput per CPU-s kept=%.0f%%\n",
                       key_label(keys[k]), ps[i], ratios[j], r.spills, r.ns_per_event,
                       all.ns_per_event, 100.0 * all.ns_per_event / r.ns_per_event);
                fflush(stdout);
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    long n_small = argc > 1 ? atol(argv[1]) : 10000000;
    long n_big = argc > 2 ? atol(argv[2]) : 20000000;
    const char *only = argc > 3 ? argv[3] : "all";
    int scaling_only = !strncmp(only, "scaling", 7);
    int state_only = !strncmp(only, "state", 5);
    span_hours = argc > 4 ? atol(argv[4]) : scaling_only || state_only ? 2 : 168;
    size_t small_cache = argc > 5 ? (size_t)atol(argv[5]) : 64;
    long n_scaling = argc > 6 ? atol(argv[6]) : 2000000;
    int all = !strcmp(only, "all");
    const char *mt = getenv("PIPELINE_BENCH_MEMTABLE_MB");
    memtable_mb = mt ? (size_t)atol(mt) : 0;
    const char *op = getenv("PIPELINE_BENCH_P");
    only_p = op ? atoi(op) : 0;
    const char *cr = getenv("PIPELINE_BENCH_CREDITS");
    credits = cr ? atoi(cr) : 0;
    if (n_small <= 0 || n_big <= 0 || span_hours <= 0 || n_scaling <= 0) {
        fprintf(stderr,
                "usage: pipeline_bench [events-small] [events-10M-keys] [only] [span-hours] "
                "[small-cache-mib] [events-scaling]\n");
        return 2;
    }

    static const kp_connector mem = {"mem", mem_open, NULL};
    static const kp_connector null = {"null", NULL, null_open};
    kp_connector_register(&mem);
    kp_connector_register(&null);

    printf("# cores online: %ld; events/s/core = events/s / min(2p busy threads, cores)\n",
           sysconf(_SC_NPROCESSORS_ONLN));
    if (scaling_only)
        return run_scaling(only, n_scaling, 256) == 0 ? 0 : 1;
    if (state_only)
        return run_state_matrix(only, n_scaling) == 0 ? 0 : 1;
    long keysets[] = {1000, 100000, 10000000};
    const char *labels[] = {"1k", "100k", "10M"};
    for (int k = 0; k < 3; k++) {
        int want = all || !strcmp(only, labels[k]) || (k == 2 && !strcmp(only, "10Msmall")) ||
                   (k == 1 && (!strcmp(only, "sliding") || !strcmp(only, "tumbling")));
        if (!want)
            continue;
        long n = k == 2 ? n_big : n_small;
        double g0 = now();
        if (generate(n, keysets[k]) != 0) {
            fprintf(stderr, "out of memory generating %ld events\n", n);
            return 1;
        }
        printf("# generated %ld events over %ld keys, %ld h of event time (%.1f MiB) in %.1f s\n",
               n, keysets[k], span_hours, (double)events.off[n] / (1 << 20), now() - g0);
        fflush(stdout);
        if (!strcmp(only, "sliding")) {
            run_one(keysets[k], 0, 1, 256);
            run_one(keysets[k], 1, 1, 256);
            continue;
        }
        if (!strcmp(only, "tumbling")) {
            run_one(keysets[k], 0, 1, 256);
            continue;
        }
        if (!strcmp(only, "10Msmall")) {
            run_one(keysets[k], 0, 1, small_cache);
            continue;
        }
        for (int p = 1; p <= 2; p++)
            run_one(keysets[k], 0, p, 256);
        if (k <= 1) /* sliding: dense (1k keys) and sparse (100k keys) */
            for (int p = 1; p <= 2; p++)
                run_one(keysets[k], 1, p, 256);
        if (k == 2)
            run_one(keysets[k], 0, 1, small_cache);
    }
    if (all) {
        long saved = span_hours;
        span_hours = 2; /* panes of up to ~1M distinct keys: the key table is what is measured */
        if (run_scaling("scaling", n_scaling, 256) != 0)
            return 1;
        span_hours = saved;
    }
    return 0;
}
