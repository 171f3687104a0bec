/* Throughput of the network data plane (runtime/net.c) between two endpoints of this process
 * over loopback TCP, next to a plain TCP copy of the same bytes in the same run (iperf-like).
 *
 * Data plane: `channels` channels from endpoint A to endpoint B on their one connection; a
 * producer thread per channel fills full batches (1024 records of a 16-byte key and a
 * `value`-byte value, copied from a template batch as an exchange fills its batches) and sends
 * them for `seconds`, then END; one consumer thread on B pops every batch and releases it (which
 * returns the credit). Figures: records/s, MB/s of wire bytes (header + record table + arena),
 * and the process CPU seconds per GB moved.
 * Plain TCP: one connection on 127.0.0.1, a writer thread writes the same number of bytes in
 * chunks of one batch frame with write(2), a reader thread reads them. Same figures.
 * The load average before the run is printed: the machine is shared.
 *
 *     dataplane_bench [seconds=3] [channels=4] [value=100] [send_credits=2] [recv_credits=4]
 *
 * Job mode: the seed pipeline's shape (decode → key_by item → tumbling 1 h count → a sink that
 * only counts) over `events` events of `keys` items from a file (8 partitions) at p = 2, run
 * once all in process (kp_exec_run) and once split as over two taskmanagers (subtask i of every
 * task on side i mod 2, slot sharing), the sides joined by two data-plane endpoints over
 * loopback TCP (kp_net_transport). Prints wall seconds, process CPU seconds and events per
 * CPU-second of both, and the split run's cost per CPU-second relative to the local one (the
 * issue's goal: ≤ 15 %). Both runs have alignment off, as cluster runs do.
 *
 *     dataplane_bench job [events=2000000] [keys=1000] [split-first] */
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/clock.h"
#include "../runtime/connector.h"
#include "../runtime/keygroup.h"
#include "../runtime/rng.h"
#include "../runtime/exec.h"
#include "../runtime/graph.h"
#include "../runtime/net_transport.h"
#include "../runtime/plan.h"
#include "connectors.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct run {
    const kp_batch *tmpl;
    double seconds;
    atomic_llong batches, records, bytes;
} run;

typedef struct producer {
    run *r;
    kp_channel *ch;
    pthread_t thread;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    const kp_batch *t = p->r->tmpl;
    double end = kp_mono_s() + p->r->seconds;
    for (int more = 1;; more = kp_mono_s() < end) {
        int oom;
        kp_batch *b = kp_channel_acquire(p->ch, &oom);
        if (!b)
            return NULL;
        if (more) {
            memcpy(b->recs, t->recs, t->n * sizeof *t->recs);
            memcpy(b->arena, t->arena, t->used);
            b->n = t->n;
            b->used = t->used;
        } else {
            b->kind = KP_MSG_END;
        }
        kp_channel_send(p->ch, b);
        if (!more)
            return NULL;
    }
}

typedef struct consumer {
    run *r;
    kp_inbox *in;
    int channels;
} consumer;

static void *consume(void *arg)
{
    consumer *c = arg;
    for (int ended = 0; ended < c->channels;) {
        int timed_out;
        kp_batch *b = kp_inbox_pop_timed(c->in, 1000, &timed_out);
        if (!b && !timed_out)
            return NULL;
        if (!b)
            continue;
        ended += b->kind == KP_MSG_END;
        atomic_fetch_add(&c->r->batches, b->kind == KP_MSG_DATA);
        atomic_fetch_add(&c->r->records, b->n);
        atomic_fetch_add(&c->r->bytes,
                         (long long)(KP_NET_BATCH_LEN + b->n * sizeof(kp_rec) + b->used));
        kp_inbox_release(c->in, b);
    }
    return NULL;
}

static void report(const char *what, long long records, long long bytes, double wall, double cpu)
{
    printf("%-22s %12.0f records/s %9.1f MB/s %8.2f CPU-s per GB  (%lld records, %.1f MB in "
           "%.2f s, %.2f CPU-s)\n",
           what, records / wall, bytes / wall / 1e6, cpu / (bytes / 1e9), records, bytes / 1e6,
           wall, cpu);
}

static int dataplane(run *r, int channels, int send_credits, int recv_credits)
{
    char err[256];
    kp_net_config cfg = {.bind = "127.0.0.1", .send_credits = send_credits};
    kp_net *a = kp_net_start(&cfg, err, sizeof err),
           *b = a ? kp_net_start(&cfg, err, sizeof err) : NULL;
    if (!a || !b) {
        fprintf(stderr, "dataplane_bench: %s\n", err);
        return -1;
    }
    consumer c = {.r = r, .in = kp_inbox_new(channels, recv_credits), .channels = channels};
    producer *p = calloc((size_t)channels, sizeof *p);
    for (int i = 0; i < channels; i++) {
        kp_net_chan_id id = {
            .job = "bench", .attempt = 1, .producer_subtask = i, .consumer_task = 1};
        if (kp_net_open_in(b, kp_net_address(a), &id, kp_inbox_channel(c.in, i), err, sizeof err) <
                0 ||
            !(p[i].ch = kp_net_open_out(a, kp_net_address(b), &id, err, sizeof err))) {
            fprintf(stderr, "dataplane_bench: %s\n", err);
            return -1;
        }
        p[i].r = r;
    }
    double w0 = kp_mono_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    pthread_t ct;
    pthread_create(&ct, NULL, consume, &c);
    for (int i = 0; i < channels; i++)
        pthread_create(&p[i].thread, NULL, produce, &p[i]);
    for (int i = 0; i < channels; i++)
        pthread_join(p[i].thread, NULL);
    pthread_join(ct, NULL);
    double wall = kp_mono_s() - w0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    report("data plane", atomic_load(&r->records), atomic_load(&r->bytes), wall, cpu);
    kp_net_drop_attempt(a, "bench", 1, 1000);
    kp_net_drop_attempt(b, "bench", 1, 0);
    kp_net_stop(a);
    kp_net_stop(b);
    kp_inbox_free(c.in);
    free(p);
    return 0;
}

typedef struct copy {
    int fd;
    size_t chunk;
    long long total;
} copy;

static void *copy_write(void *arg)
{
    copy *c = arg;
    uint8_t *buf = calloc(1, c->chunk);
    for (long long left = c->total; buf && left > 0;) {
        size_t n = left < (long long)c->chunk ? (size_t)left : c->chunk;
        ssize_t w = write(c->fd, buf, n);
        if (w <= 0)
            break;
        left -= w;
    }
    free(buf);
    shutdown(c->fd, SHUT_WR);
    return NULL;
}

/* The same bytes over one plain loopback TCP connection. */
static int plain_tcp(long long total, size_t chunk, long long records)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    int wfd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(wfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -1;
    int rfd = accept(ls, NULL, NULL);
    copy c = {.fd = wfd, .chunk = chunk, .total = total};
    uint8_t *buf = malloc(chunk);
    double w0 = kp_mono_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    pthread_t wt;
    pthread_create(&wt, NULL, copy_write, &c);
    long long got = 0;
    for (ssize_t n; (n = read(rfd, buf, chunk)) > 0;)
        got += n;
    pthread_join(wt, NULL);
    double wall = kp_mono_s() - w0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    report("plain TCP copy", records, got, wall, cpu);
    free(buf);
    close(rfd);
    close(wfd);
    close(ls);
    return got == total ? 0 : -1;
}

/* ---- job mode ------------------------------------------------------------------------------ */

static atomic_llong docs_out;

static int null_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                      size_t errlen)
{
    atomic_fetch_add_explicit(&docs_out, 1, memory_order_relaxed);
    return 0;
}

static int null_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    return 0;
}

static kp_sink_writer *null_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    kp_sink_writer *w = calloc(1, sizeof *w);
    if (w)
        *w = (kp_sink_writer){
            .write = null_write, .flush = null_flush, .close = (void (*)(kp_sink_writer *))free};
    return w;
}

/* "item_K,T" */
static kp_rc decode_line(kp_event *ev, kp_bytes raw)
{
    const char *p = raw.ptr, *comma = memchr(p, ',', raw.len);
    if (!comma)
        return KP_BAD_INPUT;
    kp_time t = 0;
    for (const char *q = comma + 1; q < p + raw.len && *q >= '0' && *q <= '9'; q++)
        t = t * 10 + (*q - '0');
    kp_event_key(ev, (kp_bytes){p, (size_t)(comma - p)});
    kp_event_time(ev, t);
    return KP_OK;
}

static void emit_count(kp_doc *doc, const kp_window *w, kp_str key, int64_t count)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), w->end);
    kp_doc_int(doc, "c", count);
}

static int define_job(const kp_api *api, kp_job *job)
{
    kp_job_parallelism(job, 2);
    kp_stream *src = kp_source(job, "in", .decode = decode_line, .out_of_order = 10000);
    kp_windowed *w = kp_window(kp_key_by(src), kp_tumbling(3600 * 1000));
    kp_sink(kp_count(w, .emit = emit_count), "out");
    return 0;
}

static kp_job *new_job(void)
{
    char err[512] = "";
    kp_job *job = kp_job_new("dataplane-bench");
    if (job && kp_job_define(job, define_job, err, sizeof err) != 0) {
        fprintf(stderr, "dataplane_bench: define: %s\n", err);
        kp_job_free(job);
        return NULL;
    }
    return job;
}

typedef struct side {
    const char *in_uri;
    kp_exec_part part;
    kp_net_transport t;
    int index, rc;
    char err[1024];
} side;

static kp_exec_config job_config(const char *in_uri, const char *state_dir, kp_binding *bind)
{
    bind[0] = (kp_binding){.name = "in", .uri = in_uri};
    bind[1] = (kp_binding){.name = "out", .uri = "null:"};
    return (kp_exec_config){
        .bindings = bind, .nbindings = 2, .state_dir = state_dir, .align_drift = -1};
}

static void *side_main(void *arg)
{
    side *s = arg;
    char state_dir[128];
    snprintf(state_dir, sizeof state_dir, "/tmp/kappa-dataplane-bench-%d-%d", (int)getpid(),
             s->index);
    kp_binding bind[2];
    kp_exec_config cfg = job_config(s->in_uri, state_dir, bind);
    kp_job *job = new_job();
    s->rc = job ? kp_exec_run_part(job, &cfg, s->part.local ? &s->part : NULL, NULL, s->err,
                                   sizeof s->err)
                : -1;
    kp_job_free(job);
    return NULL;
}

static const char *other_side(void *ctx, int task, int subtask, char *err, size_t errlen)
{
    return ctx;
}

/* Runs the job all local (nets NULL) or split over the two endpoints; wall and CPU seconds. */
static int run_job(const char *in_uri, kp_net **nets, double *wall, double *cpu)
{
    kp_job *job = new_job();
    kp_plan *plan = malloc(sizeof *plan);
    if (!job || !plan || kp_plan_build(job, plan) != 0)
        return -1;
    static kp_subtask_ref mine[2][64];
    int n[2] = {0, 0};
    for (int i = 0; i < plan->ntasks; i++)
        for (int j = 0; j < plan->tasks[i].parallelism && n[j % 2] < 64; j++)
            mine[j % 2][n[j % 2]++] = (kp_subtask_ref){plan->tasks[i].id, j};
    free(plan);
    kp_job_free(job);
    side sides[2] = {{.in_uri = in_uri, .index = 0}, {.in_uri = in_uri, .index = 1}};
    char peers[2][KP_NET_ADDRESS_MAX + 1];
    int nsides = nets ? 2 : 1;
    for (int s = 0; nets && s < 2; s++) {
        snprintf(peers[s], sizeof peers[s], "%s", kp_net_address(nets[1 - s]));
        kp_net_transport_init(&sides[s].t, nets[s], "bench-job", 1, other_side, peers[s]);
        sides[s].part = (kp_exec_part){mine[s], n[s], &sides[s].t.base};
    }
    double w0 = kp_mono_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    pthread_t th[2];
    for (int s = 0; s < nsides; s++)
        pthread_create(&th[s], NULL, side_main, &sides[s]);
    for (int s = 0; s < nsides; s++)
        pthread_join(th[s], NULL);
    *wall = kp_mono_s() - w0;
    *cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    for (int s = 0; s < nsides; s++)
        if (sides[s].rc != 0) {
            fprintf(stderr, "dataplane_bench: side %d: %s\n", s, sides[s].err);
            return -1;
        }
    return 0;
}

static int job_mode(long long events, int keys, int split_first)
{
    static const kp_connector null_sink = {"null", NULL, null_open};
    kp_connectors_register_builtin();
    kp_connector_register(&null_sink);
    char path[128], in_uri[256];
    snprintf(path, sizeof path, "/tmp/kappa-dataplane-bench-%d.csv", (int)getpid());
    snprintf(in_uri, sizeof in_uri, "file:%s?partitions=8", path);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    uint64_t rng = 42;
    kp_time span = 7LL * 24 * 3600 * 1000, t0 = 1700000000000LL;
    for (long long i = 0; i < events; i++) {
        kp_time t = t0 + span * i / events - (kp_time)(kp_rng_next(&rng) % 5000);
        fprintf(f, "item_%d,%lld\n", (int)(kp_rng_next(&rng) % (uint64_t)keys), (long long)t);
    }
    fclose(f);
    double wl, cl, ws, cs;
    long long docs_local = 0, docs_split = 0;
    char err[256];
    kp_net_config cfg = {.bind = "127.0.0.1"};
    kp_net *nets[2] = {kp_net_start(&cfg, err, sizeof err), kp_net_start(&cfg, err, sizeof err)};
    int rc = nets[0] && nets[1] ? 0 : -1;
    for (int pass = 0; pass < 2 && rc == 0; pass++) { /* split_first: the split run goes first */
        if ((pass == 0) != split_first) {
            rc = run_job(in_uri, NULL, &wl, &cl);
            docs_local = atomic_exchange(&docs_out, 0);
        } else {
            rc = run_job(in_uri, nets, &ws, &cs);
            docs_split = atomic_exchange(&docs_out, 0);
        }
    }
    kp_net_stats st = nets[0] ? kp_net_get_stats(nets[0]) : (kp_net_stats){0};
    kp_net_stats st1 = nets[1] ? kp_net_get_stats(nets[1]) : (kp_net_stats){0};
    kp_net_stop(nets[0]);
    kp_net_stop(nets[1]);
    unlink(path);
    if (rc != 0)
        return -1;
    printf("job all local          %7.2f s wall %7.2f CPU-s %10.0f events/s %10.0f events per "
           "CPU-s (%lld documents)\n",
           wl, cl, events / wl, events / cl, docs_local);
    printf("job split over TCP     %7.2f s wall %7.2f CPU-s %10.0f events/s %10.0f events per "
           "CPU-s (%lld documents; %lld batches, %.1f MB crossed)\n",
           ws, cs, events / ws, events / cs, docs_split, st.batches_sent + st1.batches_sent,
           (st.bytes_sent + st1.bytes_sent) / 1e6);
    printf("split/local: %.1f %% more CPU per event, %.1f %% of the throughput per CPU-second\n",
           100 * (cs / cl - 1), 100 * cl / cs);
    return docs_local == docs_split ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "job")) {
        char load[128] = "?\n";
        FILE *f = fopen("/proc/loadavg", "r");
        if (f) {
            if (!fgets(load, sizeof load, f))
                snprintf(load, sizeof load, "?\n");
            fclose(f);
        }
        long long events = argc > 2 ? atoll(argv[2]) : 2000000;
        int keys = argc > 3 ? atoi(argv[3]) : 1000;
        printf("dataplane_bench job: %lld events, %d keys, p=2; load average %s", events, keys,
               load);
        return events > 0 && keys > 0 &&
                       job_mode(events, keys, argc > 4 && !strcmp(argv[4], "split-first")) == 0
                   ? 0
                   : 1;
    }
    double seconds = argc > 1 ? atof(argv[1]) : 3;
    int channels = argc > 2 ? atoi(argv[2]) : 4;
    int value = argc > 3 ? atoi(argv[3]) : 100;
    int send_credits = argc > 4 ? atoi(argv[4]) : 2, recv_credits = argc > 5 ? atoi(argv[5]) : 4;
    if (seconds <= 0 || channels < 1 || value < 0 || value > 4096 || send_credits < 1 ||
        recv_credits < 1) {
        fprintf(stderr, "usage: dataplane_bench [seconds=3] [channels=4] [value=100] "
                        "[send_credits=2] [recv_credits=4]\n");
        return 2;
    }
    kp_batch *t = kp_batch_new();
    kp_batch_reset(t);
    char key[17], val[4096];
    memset(val, 'v', sizeof val);
    for (int i = 0; kp_batch_fits(t, 16, (size_t)value); i++) {
        snprintf(key, sizeof key, "user%012d", i);
        kp_batch_append(t, (kp_bytes){key, 16}, (kp_bytes){val, (size_t)value}, i, i,
                        kp_hash64(key, 16));
    }
    char load[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(load, sizeof load, f))
            snprintf(load, sizeof load, "?");
        fclose(f);
    }
    printf("dataplane_bench: %.1f s, %d channels, %u records of 16 + %d bytes per batch "
           "(%zu wire bytes), credits %d send / %d receive; load average %s",
           seconds, channels, t->n, value, KP_NET_BATCH_LEN + t->n * sizeof(kp_rec) + t->used,
           send_credits, recv_credits, load);
    run r = {.tmpl = t, .seconds = seconds};
    if (dataplane(&r, channels, send_credits, recv_credits) < 0)
        return 1;
    size_t frame = KP_NET_BATCH_LEN + t->n * sizeof(kp_rec) + t->used;
    int rc = plain_tcp(atomic_load(&r.bytes), frame, atomic_load(&r.records)) < 0;
    kp_batch_free(t);
    return rc;
}
