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
 *     dataplane_bench [seconds=3] [channels=4] [value=100] [send_credits=2] [recv_credits=4] */
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
#include "../runtime/keygroup.h"
#include "../runtime/net.h"

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

int main(int argc, char **argv)
{
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
