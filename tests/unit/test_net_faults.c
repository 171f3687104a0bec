/* The data plane under bad input and lost peers (runtime/net.c, net_conn.c): a garbage,
 * truncated or oversized frame stream, or a batch whose records point outside its arena,
 * closes only the connection it came on (with a logged reason) while another peer's channels
 * keep flowing; a peer that goes away fails its channels with a clear error and unblocks the
 * producer and the consumer waiting on them. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../runtime/clock.h"
#include "../../runtime/rng.h"
#include "../../runtime/net.h"
#include "test_net_common.h"

#define JOB "faults"

static kp_net *start(errors *e)
{
    return start_endpoint(e, 0, 10000);
}

static kp_net_chan_id attempt_chan(uint32_t attempt, int producer)
{
    kp_net_chan_id id = {
        .attempt = attempt, .producer_task = 1, .producer_subtask = producer, .consumer_task = 2};
    snprintf(id.job, sizeof id.job, "%s", JOB);
    return id;
}

static kp_net_chan_id chan_id(int producer)
{
    return attempt_chan(1, producer);
}

/* Sends `n` one-record batches and END on a channel of a fresh attempt a → b and checks they
 * arrive (attempts are never reused once dropped). */
static void check_flow(kp_net *a, kp_net *b, uint32_t attempt, int n)
{
    char err[256];
    kp_inbox *in = kp_inbox_new(1, 2);
    kp_net_chan_id id = attempt_chan(attempt, 0);
    cr_assert_eq(
        kp_net_open_in(b, kp_net_address(a), &id, kp_inbox_channel(in, 0), err, sizeof err), 0,
        "open_in attempt %u: %s", attempt, err);
    kp_channel *out = kp_net_open_out(a, kp_net_address(b), &id, err, sizeof err);
    cr_assert_not_null(out, "open_out attempt %u: %s", attempt, err);
    for (int i = 0; i <= n; i++) {
        int oom, timed_out;
        kp_batch *x = kp_channel_acquire(out, &oom);
        cr_assert_not_null(x);
        if (i < n)
            kp_batch_append(x, (kp_bytes){"k", 1}, (kp_bytes){(const char *)&i, sizeof i}, i, i, 0);
        else
            x->kind = KP_MSG_END;
        kp_channel_send(out, x);
        kp_batch *got = kp_inbox_pop_timed(in, 20000, &timed_out);
        cr_assert_not_null(got, "batch %d of a healthy channel arrives", i);
        cr_assert_eq(got->kind, i < n ? KP_MSG_DATA : KP_MSG_END);
        if (i < n)
            cr_assert_eq(memcmp(got->arena + got->recs[0].val_off, &i, sizeof i), 0);
        kp_inbox_release(in, got);
    }
    kp_net_drop_attempt(a, JOB, attempt, 5000);
    kp_net_drop_attempt(b, JOB, attempt, 0);
    kp_inbox_free(in);
}

/* A raw TCP client to an endpoint's data port. */
static int dial(kp_net *net)
{
    const char *addr = kp_net_address(net);
    int port = atoi(strrchr(addr, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    cr_assert_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads until the endpoint closes the connection; fails if it does not (20 s timeout). */
static void expect_closed(int fd)
{
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        ;
    cr_assert(n == 0 || errno == ECONNRESET, "the endpoint closed the connection (n %zd, %s)", n,
              strerror(errno));
    close(fd);
}

/* A raw peer that says HELLO as `address` (lower than the endpoint's, so it may dial). */
static int hello(kp_net *net, const char *address)
{
    int fd = dial(net);
    uint8_t buf[KP_NET_HEADER_MAX];
    send_all(fd, buf, kp_net_encode_hello(buf, address));
    uint8_t answer[KP_NET_HELLO_LEN];
    cr_assert_eq(recv(fd, answer, sizeof answer, MSG_WAITALL), (ssize_t)sizeof answer);
    kp_net_header h;
    char err[256];
    cr_assert_eq(kp_net_decode(answer, sizeof answer, &h, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(h.address, kp_net_address(net));
    return fd;
}

Test(net_faults, bad_streams_close_only_their_connection, .timeout = 120)
{
    errors ea = {0}, eb = {0};
    kp_net *a = start(&ea), *b = start(&eb);
    check_flow(a, b, 10, 5);

    /* garbage instead of a HELLO */
    int fd = dial(b);
    char junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 37 + 11);
    send_all(fd, junk, sizeof junk);
    expect_closed(fd);

    /* a HELLO, then half a batch header and the end of the stream */
    kp_net_chan_id id = chan_id(9);
    kp_batch *x = kp_batch_new();
    kp_batch_reset(x);
    uint8_t hdr[KP_NET_HEADER_MAX];
    fd = hello(b, "127.0.0.0:1");
    size_t len = kp_net_encode_batch(hdr, &id, x);
    send_all(fd, hdr, len / 2);
    shutdown(fd, SHUT_WR);
    expect_closed(fd);

    /* a HELLO, then a batch header claiming more records than a batch holds */
    fd = hello(b, "127.0.0.0:2");
    x->n = KP_BATCH_RECORDS + 1;
    send_all(fd, hdr, kp_net_encode_batch(hdr, &id, x));
    expect_closed(fd);

    /* a HELLO, a credit for a channel b receives on, then records pointing outside the arena */
    kp_inbox *in = kp_inbox_new(1, 2);
    char err[256];
    cr_assert_eq(kp_net_open_in(b, "127.0.0.0:3", &id, kp_inbox_channel(in, 0), err, sizeof err), 0,
                 "%s", err);
    fd = hello(b, "127.0.0.0:3");
    uint8_t credit[KP_NET_CREDIT_LEN];
    cr_assert_eq(recv(fd, credit, sizeof credit, MSG_WAITALL), (ssize_t)sizeof credit);
    kp_batch_reset(x);
    kp_batch_append(x, (kp_bytes){"key", 3}, (kp_bytes){"value", 5}, 1, 1, 1);
    x->recs[0].val_len = 4000; /* beyond the 8 arena bytes sent */
    send_all(fd, hdr, kp_net_encode_batch(hdr, &id, x));
    send_all(fd, x->recs, sizeof(kp_rec));
    send_all(fd, x->arena, x->used);
    expect_closed(fd);
    kp_time deadline = kp_mono_ms() + 20000;
    while (error_count(&eb) < 1 && kp_mono_ms() < deadline)
        usleep(1000);
    cr_assert_eq(error_count(&eb), 1, "the channel of the bad connection failed");
    char last[512];
    cr_assert(strstr(last_error(&eb, last, sizeof last), "outside"), "%s", last);
    int timed_out;
    cr_assert_null(kp_inbox_pop_timed(in, 0, &timed_out), "nothing of the bad batch delivered");

    /* the good peer never noticed */
    check_flow(a, b, 11, 5);
    cr_assert_eq(kp_net_get_stats(a).connections_failed, 0);
    cr_assert_eq(error_count(&ea), 0, "%s", last_error(&ea, last, sizeof last));
    cr_assert_eq(kp_net_get_stats(b).connections_failed, 3, "the three bad peers after HELLO");
    kp_batch_free(x);
    kp_net_drop_attempt(b, JOB, 1, 0);
    kp_net_stop(a);
    kp_net_stop(b);
    kp_inbox_free(in);
}

typedef struct blocked {
    kp_channel *out;
    kp_inbox *in;
    int sent, out_failed, in_failed;
} blocked;

static void *fill_until_blocked(void *arg)
{
    blocked *s = arg;
    for (;;) {
        int oom;
        kp_batch *x = kp_channel_acquire(s->out, &oom);
        if (!x)
            break;
        kp_batch_append(x, (kp_bytes){"k", 1}, (kp_bytes){"v", 1}, 0, 0, 0);
        kp_channel_send(s->out, x);
        s->sent++;
    }
    s->out_failed = 1;
    return NULL;
}

static void *wait_input(void *arg)
{
    blocked *s = arg;
    int timed_out = 1;
    while (timed_out && !kp_inbox_pop_timed(s->in, 100, &timed_out))
        ;
    s->in_failed = !timed_out;
    return NULL;
}

Test(net_faults, lost_peer_fails_the_channels, .timeout = 60)
{
    errors ea = {0}, eb = {0};
    kp_net *a = start(&ea), *b = start(&eb);
    char err[256];
    blocked s = {.in = kp_inbox_new(1, 2)};
    kp_inbox *a_in = kp_inbox_new(1, 2);
    kp_net_chan_id to_a = chan_id(0), to_b = chan_id(1);
    cr_assert_eq(
        kp_net_open_in(a, kp_net_address(b), &to_a, kp_inbox_channel(a_in, 0), err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(
        kp_net_open_in(b, kp_net_address(a), &to_b, kp_inbox_channel(s.in, 0), err, sizeof err), 0,
        "%s", err);
    s.out = kp_net_open_out(b, kp_net_address(a), &to_a, err, sizeof err);
    cr_assert_not_null(s.out, "%s", err);
    pthread_t producer, consumer;
    pthread_create(&producer, NULL, fill_until_blocked, &s);
    pthread_create(&consumer, NULL, wait_input, &s);
    kp_time deadline = kp_mono_ms() + 20000;
    while (kp_net_get_stats(a).batches_received < 2 && kp_mono_ms() < deadline)
        usleep(1000);
    char a_addr[KP_NET_ADDRESS_MAX + 1];
    snprintf(a_addr, sizeof a_addr, "%s", kp_net_address(a));
    kp_net_stop(a); /* the peer goes away */
    pthread_join(producer, NULL);
    pthread_join(consumer, NULL);
    cr_assert(s.out_failed, "the producer blocked on the lost peer was woken");
    cr_assert(s.in_failed, "the consumer waiting on the lost peer was woken");
    deadline = kp_mono_ms() + 20000; /* the consumer wakes at the first of the two reports */
    while (error_count(&eb) < 2 && kp_mono_ms() < deadline)
        usleep(1000);
    char last[512];
    cr_assert_eq(error_count(&eb), 2, "both channels failed (%d: %s)", error_count(&eb),
                 last_error(&eb, last, sizeof last));
    char want[200];
    snprintf(want, sizeof want, "data-plane connection to %s lost", a_addr);
    cr_assert(strstr(last_error(&eb, last, sizeof last), want), "'%s' says which peer was lost",
              last);
    kp_net_drop_attempt(b, JOB, 1, 0);
    kp_net_stop(b);
    kp_inbox_free(s.in);
    kp_inbox_free(a_in);
}

/* Opens a channel from `peer` into a fresh inbox and waits until it fails. */
static void expect_failure(const char *peer, const char *reason)
{
    errors ea = {0};
    kp_net *a = start_endpoint(&ea, 0, 300);
    char err[256];
    kp_inbox *in = kp_inbox_new(1, 2);
    kp_net_chan_id id = chan_id(0);
    cr_assert_eq(kp_net_open_in(a, peer, &id, kp_inbox_channel(in, 0), err, sizeof err), 0, "%s",
                 err);
    int timed_out = 1;
    kp_time deadline = kp_mono_ms() + 20000;
    while (timed_out && kp_mono_ms() < deadline)
        cr_assert_null(kp_inbox_pop_timed(in, 100, &timed_out));
    cr_assert(!timed_out, "the consumer was woken");
    cr_assert_eq(error_count(&ea), 1);
    char last[512];
    cr_assert(strstr(last_error(&ea, last, sizeof last), reason), "'%s' does not say '%s'", last,
              reason);
    kp_net_drop_attempt(a, JOB, 1, 0);
    kp_net_stop(a);
    kp_inbox_free(in);
}

Test(net_faults, unreachable_peer_fails_the_channel, .timeout = 60)
{
    /* a port bound but not listening refuses connections; 127.0.0.2 sorts above 127.0.0.1, so
     * the endpoint is the one that dials */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char peer[64];
    snprintf(peer, sizeof peer, "127.0.0.2:%d", ntohs(sa.sin_port));
    expect_failure(peer, "cannot connect to");
    close(fd);
    /* a peer that should dial (its address sorts lower) and never does */
    expect_failure("127.0.0.0:1", "did not connect within");
}

/* A peer that stops in the middle of a batch does not hold a drop (and with it the endpoint)
 * forever: after 5 s its connection is shut. */
Test(net_faults, drop_is_not_held_by_a_peer_stuck_mid_frame, .timeout = 60)
{
    errors eb = {0};
    kp_net *b = start(&eb);
    kp_inbox *in = kp_inbox_new(1, 2);
    kp_net_chan_id id = chan_id(0);
    char err[256];
    cr_assert_eq(kp_net_open_in(b, "127.0.0.0:4", &id, kp_inbox_channel(in, 0), err, sizeof err), 0,
                 "%s", err);
    int fd = hello(b, "127.0.0.0:4");
    uint8_t credit[KP_NET_CREDIT_LEN], hdr[KP_NET_HEADER_MAX];
    cr_assert_eq(recv(fd, credit, sizeof credit, MSG_WAITALL), (ssize_t)sizeof credit);
    kp_batch *x = kp_batch_new();
    kp_batch_reset(x);
    kp_batch_append(x, (kp_bytes){"key", 3}, (kp_bytes){"value", 5}, 1, 1, 1);
    send_all(fd, hdr, kp_net_encode_batch(hdr, &id, x));
    send_all(fd, x->recs, 10); /* and then nothing */
    /* the endpoint's kernel has the bytes (nothing left in our send queue); its reader, which
     * was waiting for them, is then inside the frame and the drop finds the channel busy */
    kp_time deadline = kp_mono_ms() + 20000;
    int queued = 1;
    while (queued > 0 && kp_mono_ms() < deadline && ioctl(fd, SIOCOUTQ, &queued) == 0)
        usleep(1000);
    usleep(100 * 1000);
    kp_net_drop_attempt(b, JOB, 1, 0); /* returns once the stuck connection is shut */
    expect_closed(fd);
    deadline = kp_mono_ms() + 20000; /* the reader counts the failure once the drop let go */
    while (kp_net_get_stats(b).connections_failed < 1 && kp_mono_ms() < deadline)
        usleep(1000);
    cr_assert_eq(kp_net_get_stats(b).connections_failed, 1);
    int timed_out;
    cr_assert_null(kp_inbox_pop_timed(in, 0, &timed_out), "nothing of the cut batch delivered");
    kp_batch_free(x);
    kp_net_stop(b);
    kp_inbox_free(in);
}

/* Stopping an endpoint does not wait out the connect timeout of a peer it is still dialling
 * or still waiting for (the test's own timeout is far below the 60 s). */
Test(net_faults, stop_does_not_wait_for_pending_connections, .timeout = 30)
{
    errors ea = {0};
    kp_net *a = start_endpoint(&ea, 0, 60000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char refusing[64], err[256];
    snprintf(refusing, sizeof refusing, "127.0.0.2:%d", ntohs(sa.sin_port));
    kp_inbox *in = kp_inbox_new(2, 2);
    kp_net_chan_id dialled = chan_id(0), awaited = chan_id(1);
    cr_assert_eq(kp_net_open_in(a, refusing, &dialled, kp_inbox_channel(in, 0), err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(
        kp_net_open_in(a, "127.0.0.0:5", &awaited, kp_inbox_channel(in, 1), err, sizeof err), 0,
        "%s", err);
    usleep(100 * 1000); /* both connection threads are in their loops */
    kp_net_drop_attempt(a, JOB, 1, 0);
    kp_net_stop(a);
    cr_assert_eq(error_count(&ea), 0, "a stop is no failure");
    close(fd);
    kp_inbox_free(in);
}

/* A bounded fuzz: streams of valid frames (credits, batches for a channel open here and for
 * one that is not) with random bytes flipped, cut at a random point, from a peer after its
 * HELLO. The endpoint survives every one, and a healthy peer's channel still flows after.
 * Seeds: a fixed list plus a fresh printed one (KAPPA_TEST_SEED=N runs only N). */
static void fuzz_round(kp_net *b, uint64_t *rng, kp_inbox *in)
{
    uint8_t stream[4096];
    size_t len = 0;
    kp_net_chan_id open_id = attempt_chan(7, 0), other = attempt_chan(8, 3);
    kp_batch *x = kp_batch_new();
    cr_assert_not_null(x);
    for (int f = 0; f < 6 && len + KP_NET_HEADER_MAX + 200 < sizeof stream; f++) {
        kp_batch_reset(x);
        int kind = (int)(kp_rng_next(rng) % 3);
        if (kind == 0) {
            len += kp_net_encode_credit(stream + len, &other, 1 + (uint32_t)(kp_rng_next(rng) % 4));
            continue;
        }
        kp_batch_append(x, (kp_bytes){"k", 1}, (kp_bytes){"val", 3}, 1, 1, 1);
        len += kp_net_encode_batch(stream + len, kind == 1 ? &open_id : &other, x);
        memcpy(stream + len, x->recs, sizeof(kp_rec));
        len += sizeof(kp_rec);
        memcpy(stream + len, x->arena, x->used);
        len += x->used;
    }
    kp_batch_free(x);
    int flips = (int)(kp_rng_next(rng) % 4);
    for (int i = 0; i < flips; i++)
        stream[kp_rng_next(rng) % len] ^= (uint8_t)(1 + kp_rng_next(rng) % 255);
    size_t cut = kp_rng_next(rng) % 2 ? len : kp_rng_next(rng) % len;
    int fd = hello(b, "127.0.0.0:9");
    send(fd, stream, cut, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    expect_closed(fd);
    /* whatever reached the consumer is released, as a consumer would */
    int timed_out;
    for (kp_batch *got; (got = kp_inbox_pop_timed(in, 0, &timed_out));)
        kp_inbox_release(in, got);
}

static void fuzz_run(uint64_t seed)
{
    errors ea = {0}, eb = {0};
    kp_net *a = start(&ea), *b = start(&eb);
    kp_inbox *in = kp_inbox_new(1, 2);
    uint64_t rng = seed | 1;
    for (int round = 0; round < 60; round++) {
        /* the channel the fuzzing peer may feed, opened afresh (its connection fails often) */
        kp_net_chan_id open_id = attempt_chan(7, 0);
        char err[256];
        kp_net_drop_attempt(b, JOB, 7, 0);
        kp_inbox_free(in);
        in = kp_inbox_new(1, 2);
        cr_assert_eq(
            kp_net_open_in(b, "127.0.0.0:9", &open_id, kp_inbox_channel(in, 0), err, sizeof err), 0,
            "%s", err);
        fuzz_round(b, &rng, in);
    }
    kp_net_drop_attempt(b, JOB, 7, 0);
    check_flow(a, b, 20, 3);
    cr_assert_eq(error_count(&ea), 0);
    kp_net_stop(a);
    kp_net_stop(b);
    kp_inbox_free(in);
}

Test(net_faults, fuzzed_frame_streams_harm_nothing_else, .timeout = 120)
{
    const char *env = getenv("KAPPA_TEST_SEED");
    if (env) {
        fuzz_run(strtoull(env, NULL, 10));
        return;
    }
    static const uint64_t fixed[] = {3, 99, 20261201};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        fuzz_run(fixed[i]);
    uint64_t fresh = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    printf("net_faults: fresh fuzz seed %" PRIu64 " (rerun with KAPPA_TEST_SEED=%" PRIu64 ")\n",
           fresh, fresh);
    fflush(stdout);
    fuzz_run(fresh);
}
