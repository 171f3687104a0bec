/* One data-plane connection between two endpoints: its writer thread (dial or wait to be
 * dialled, HELLO, then credit grants first and batches of channels holding a credit, round
 * robin, one writev each) and its reader thread (every frame validated; batches read straight
 * into a batch of the consumer's channel; a bad frame closes the connection with a logged
 * reason and fails only its channels). net.h describes the protocol and the lock order. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "net_int.h"

#define SCRATCH        (64 * 1024)
#define GRANTS_AT_ONCE 64
#define MAX_ORPHANS    65536

/* @locality any thread; @locks c->lock held */
void kp_net_conn_ready_locked(net_conn *c, net_out *o)
{
    if (o->in_ready || !o->outbox || o->credits <= 0 || o->queued <= 0)
        return;
    o->in_ready = 1;
    o->ready = NULL;
    if (c->ready_tail)
        c->ready_tail->ready = o;
    else
        c->ready_head = o;
    c->ready_tail = o;
    pthread_cond_broadcast(&c->cond);
}

/* The channels of a connection, copied under its lock; entries live while the endpoint lock
 * is held (only kp_net_drop_attempt frees them, under that lock). */
static void **snapshot(net_conn *c, size_t *n)
{
    pthread_mutex_lock(&c->lock);
    size_t total = c->outs.count + c->ins.count, k = 0;
    void **v = malloc((total ? total : 1) * sizeof *v);
    for (size_t i = 0; v && i < c->outs.cap; i++)
        if (c->outs.slots[i])
            v[k++] = c->outs.slots[i];
    size_t nouts = k;
    for (size_t i = 0; v && i < c->ins.cap; i++)
        if (c->ins.slots[i])
            v[k++] = c->ins.slots[i];
    pthread_mutex_unlock(&c->lock);
    n[0] = nouts;
    n[1] = k - nouts;
    return v;
}

/* @locality any thread; @locks the endpoint lock held, takes c->lock and outbox locks */
void kp_net_fail_channels(net_conn *c)
{
    size_t n[2];
    void **v = snapshot(c, n);
    if (!v)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "data-plane connection to %s lost: %s", c->peer, c->reason);
    kp_net *net = c->net;
    for (size_t i = 0; i < n[0] + n[1]; i++) {
        net_out *o = i < n[0] ? v[i] : NULL;
        if (o && !o->outbox)
            continue; /* credits for a channel not opened here */
        /* report, then wake the producer, or the consumer (whose input is cut short: it must
         * fail, not end), as a failed run would: whoever wakes finds the reason reported */
        if (net->cfg.on_error && !atomic_load(&net->stopping))
            net->cfg.on_error(net->cfg.ctx, (const kp_net_chan_id *)v[i], msg);
        kp_inbox_abort(o ? o->outbox : kp_channel_inbox(((net_in *)v[i])->deliver));
    }
    free(v);
}

/* @locality any thread; @locks takes c->lock, then the endpoint lock (never hold either) */
void kp_net_conn_fail(net_conn *c, const char *fmt, ...)
{
    pthread_mutex_lock(&c->lock);
    if (c->failed) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    kp_net *net = c->net;
    int report = !atomic_load(&net->stopping);
    if (report) /* counted before the peer can see the close */
        atomic_fetch_add(&net->failures, 1);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (report) {
        fprintf(stderr, "kappa data plane: connection with %s closed: %s\n", c->peer, c->reason);
    }
    pthread_mutex_lock(&net->lock);
    kp_net_fail_channels(c);
    pthread_mutex_unlock(&net->lock);
}

/* Reads and validates one frame header. */
static int read_header(net_conn *c, uint8_t *buf, kp_net_header *h, char *err, size_t errlen)
{
    int rc = kp_net_read_full(c->fd, buf, KP_NET_PREFIX);
    size_t want = rc > 0 ? kp_net_prefix_check(buf, err, errlen) : 0;
    if (rc == 0)
        snprintf(err, errlen, "the peer closed the connection");
    else if (rc < 0)
        snprintf(err, errlen, "read failed: %s", strerror(errno));
    if (!want)
        return -1;
    rc = kp_net_read_full(c->fd, buf + KP_NET_PREFIX, want - KP_NET_PREFIX);
    if (rc <= 0) {
        snprintf(err, errlen, "truncated frame header (%s)", rc ? "read failed" : "end of stream");
        return -1;
    }
    return kp_net_decode(buf, want, h, err, errlen);
}

static int discard(net_conn *c, size_t len)
{
    while (len) {
        size_t n = len < SCRATCH ? len : SCRATCH;
        if (kp_net_read_full(c->fd, c->scratch, n) <= 0)
            return -1;
        len -= n;
    }
    return 0;
}

static int attempt_dropped(kp_net *net, const kp_net_chan_id *id)
{
    int found = 0;
    pthread_mutex_lock(&net->dropped_lock);
    for (int i = 0; i < KP_NET_DROPPED_MEMORY && !found; i++)
        found = net->dropped[i].attempt == id->attempt &&
                strncmp(net->dropped[i].job, id->job, KP_NET_JOB_ID_MAX) == 0 &&
                net->dropped[i].job[0];
    pthread_mutex_unlock(&net->dropped_lock);
    return found;
}

static int on_credit(net_conn *c, const kp_net_header *h, char *err, size_t errlen)
{
    pthread_mutex_lock(&c->lock);
    net_out *o = kp_net_map_get(&c->outs, &h->chan);
    if (!o && !attempt_dropped(c->net, &h->chan)) {
        /* the consumer opened its end first: keep the credits for when the producer does */
        if (c->orphans >= MAX_ORPHANS || !(o = calloc(1, sizeof *o)) ||
            (o->id = h->chan, o->conn = c, kp_net_map_put(&c->outs, o) < 0)) {
            pthread_mutex_unlock(&c->lock);
            free(o);
            snprintf(err, errlen, "credits for more than %d channels not open here", MAX_ORPHANS);
            return -1;
        }
        c->orphans++;
    }
    if (o) {
        o->credits += (int)h->count;
        kp_net_conn_ready_locked(c, o);
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* Fills a batch of the consumer's channel from the stream; -1 with a reason. */
static int fill(net_conn *c, kp_batch *b, const kp_net_header *h, char *err, size_t errlen)
{
    if (kp_net_read_full(c->fd, b->recs, (size_t)h->n * KP_NET_REC_SIZE) <= 0 ||
        kp_net_read_full(c->fd, b->arena, h->used) <= 0) {
        snprintf(err, errlen, "truncated batch of %u records", h->n);
        return -1;
    }
    if (kp_net_check_records(b->recs, h->n, h->used, err, errlen) < 0)
        return -1;
    b->kind = h->kind;
    b->watermark = h->watermark;
    b->n = h->n;
    b->used = h->used;
    return 0;
}

static int on_batch(net_conn *c, const kp_net_header *h, char *err, size_t errlen)
{
    kp_net *net = c->net;
    size_t payload = (size_t)h->n * KP_NET_REC_SIZE + h->used;
    pthread_mutex_lock(&c->lock);
    net_in *in = kp_net_map_get(&c->ins, &h->chan);
    int no_credit = in && in->outstanding <= 0;
    if (in && !no_credit) {
        in->outstanding--;
        in->busy = 1;
    }
    pthread_mutex_unlock(&c->lock);
    if (no_credit) {
        char id[160];
        kp_net_chan_format(&h->chan, id, sizeof id);
        snprintf(err, errlen, "batch on channel %s without a credit", id);
        return -1;
    }
    if (!in) { /* a channel not open here (a stale attempt's): refuse it */
        atomic_fetch_add(&net->refused, 1);
        if (discard(c, payload) == 0)
            return 0;
        snprintf(err, errlen, "truncated batch of %u records", h->n);
        return -1;
    }
    int oom = 0, rc = 0;
    kp_batch *b = in->aborted ? NULL : kp_channel_try_acquire(in->deliver, &oom);
    if (!b && oom) {
        snprintf(err, errlen, "out of memory for a record batch");
        rc = -1;
    } else if (!b) { /* the run was aborted: its job is failing */
        rc = discard(c, payload);
        if (rc < 0)
            snprintf(err, errlen, "truncated batch of %u records", h->n);
    } else if ((rc = fill(c, b, h, err, errlen)) < 0) {
        kp_channel_putback(in->deliver, b);
    } else {
        kp_channel_send(in->deliver, b);
        atomic_fetch_add(&net->batches_received, 1);
        atomic_fetch_add(&net->bytes_received, (long long)(payload + KP_NET_BATCH_LEN));
    }
    pthread_mutex_lock(&c->lock);
    in->busy = 0;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void *reader_main(void *arg)
{
    net_conn *c = arg;
    uint8_t buf[KP_NET_HEADER_MAX];
    kp_net_header h;
    char err[256];
    if (c->expect_hello) {
        if (read_header(c, buf, &h, err, sizeof err) < 0) {
            kp_net_conn_fail(c, "%s", err);
            return NULL;
        }
        if (h.type != KP_NET_HELLO || strcmp(h.address, c->peer) != 0) {
            kp_net_conn_fail(c, "dialled %s but the answer was %s", c->peer,
                             h.type == KP_NET_HELLO ? h.address : "not a HELLO");
            return NULL;
        }
    }
    for (;;) {
        int rc = read_header(c, buf, &h, err, sizeof err);
        if (rc == 0 && h.type == KP_NET_HELLO)
            rc = (snprintf(err, sizeof err, "a second HELLO"), -1);
        else if (rc == 0 && h.type == KP_NET_CREDIT)
            rc = on_credit(c, &h, err, sizeof err);
        else if (rc == 0)
            rc = on_batch(c, &h, err, sizeof err);
        if (rc < 0) {
            kp_net_conn_fail(c, "%s", err);
            return NULL;
        }
    }
}

/* Encodes pending credit grants (up to GRANTS_AT_ONCE frames); c->lock held. */
static size_t take_grants(net_conn *c, uint8_t *buf)
{
    size_t len = 0;
    for (int k = 0; k < GRANTS_AT_ONCE && c->grants_head; k++) {
        net_in *in = c->grants_head;
        uint32_t n = in->grant > KP_BATCH_RECORDS ? KP_BATCH_RECORDS : (uint32_t)in->grant;
        len += kp_net_encode_credit(buf + len, &in->id, n);
        in->grant -= (int)n;
        in->outstanding += (int)n;
        if (!in->grant) {
            c->grants_head = in->grants;
            in->in_grants = 0;
        }
    }
    return len;
}

/* Writes one batch of a ready channel; c->lock held on entry and exit. */
static int write_one(net_conn *c)
{
    net_out *o = c->ready_head;
    c->ready_head = o->ready;
    if (!c->ready_head)
        c->ready_tail = NULL;
    o->in_ready = 0;
    o->credits--;
    o->queued--;
    o->busy = 1;
    kp_net_conn_ready_locked(c, o); /* to the back: channels take turns */
    pthread_mutex_unlock(&c->lock);
    int rc = 0;
    kp_batch *b = kp_inbox_pop_channel(o->outbox, 0);
    if (b) {
        uint8_t hdr[KP_NET_HEADER_MAX];
        struct iovec iov[3] = {
            {hdr, kp_net_encode_batch(hdr, &o->id, b)},
            {b->recs, (size_t)b->n * KP_NET_REC_SIZE},
            {b->arena, b->used},
        };
        size_t bytes = iov[0].iov_len + iov[1].iov_len + iov[2].iov_len;
        rc = kp_net_write_full(c->fd, iov, 3);
        kp_inbox_release(o->outbox, b);
        atomic_fetch_add(&c->net->batches_sent, 1);
        atomic_fetch_add(&c->net->bytes_sent, (long long)bytes);
    }
    pthread_mutex_lock(&c->lock);
    o->busy = 0;
    pthread_cond_broadcast(&c->cond);
    return rc;
}

static void writer_loop(net_conn *c)
{
    uint8_t grants[GRANTS_AT_ONCE * KP_NET_CREDIT_LEN];
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->failed && !c->ready_head && !c->grants_head)
            pthread_cond_wait(&c->cond, &c->lock);
        if (c->failed)
            break;
        int rc;
        if (c->grants_head) {
            struct iovec iov = {grants, take_grants(c, grants)};
            pthread_mutex_unlock(&c->lock);
            rc = kp_net_write_full(c->fd, &iov, 1);
            pthread_mutex_lock(&c->lock);
        } else {
            rc = write_one(c);
        }
        if (rc < 0) {
            pthread_mutex_unlock(&c->lock);
            kp_net_conn_fail(c, "write failed: %s", strerror(errno));
            return;
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* Dials until connected, the deadline or the connection's failure (kp_net_stop); retries back
 * off from 20 ms to 500 ms, each attempt bounded by 2 s (a peer whose SYNs are dropped).
 * 0 once c->fd is set. */
static int dial(net_conn *c, int timeout)
{
    char err[256];
    kp_time deadline = kp_mono_ms() + timeout;
    int delay = 20;
    pthread_mutex_lock(&c->lock);
    while (!c->failed) {
        pthread_mutex_unlock(&c->lock);
        kp_time left = deadline - kp_mono_ms();
        int fd = kp_net_dial_once(c->peer, left < 2000 ? (int)(left > 1 ? left : 1) : 2000, err,
                                  sizeof err);
        pthread_mutex_lock(&c->lock);
        if (fd >= 0 && !c->failed) {
            c->fd = fd;
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        if (fd >= 0)
            close(fd);
        if (c->failed || kp_mono_ms() + delay > deadline)
            break;
        struct timespec wake = kp_deadline_ms(delay); /* kp_net_conn_fail wakes it early */
        pthread_cond_timedwait(&c->cond, &c->lock, &wake);
        delay = delay < 500 ? delay * 2 : 500;
    }
    int failed = c->failed;
    pthread_mutex_unlock(&c->lock);
    if (!failed)
        kp_net_conn_fail(c, "%s", err);
    return -1;
}

/* Dials, or waits for the peer to dial; 0 once c->fd is set. */
static int connect_peer(net_conn *c)
{
    int timeout = c->net->cfg.connect_timeout_ms;
    if (c->dialer)
        return dial(c, timeout);
    struct timespec deadline = kp_deadline_ms(timeout);
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    while (c->fd < 0 && !c->failed && rc == 0)
        rc = pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
    int ok = c->fd >= 0 && !c->failed;
    pthread_mutex_unlock(&c->lock);
    if (!ok)
        kp_net_conn_fail(c, "%s did not connect within %d ms", c->peer, timeout);
    return ok ? 0 : -1;
}

static void *writer_main(void *arg)
{
    net_conn *c = arg;
    if (connect_peer(c) < 0)
        return NULL;
    uint8_t hello[KP_NET_HEADER_MAX];
    struct iovec iov = {hello, kp_net_encode_hello(hello, c->net->address)};
    if (kp_net_write_full(c->fd, &iov, 1) < 0) {
        kp_net_conn_fail(c, "cannot write HELLO: %s", strerror(errno));
        return NULL;
    }
    if (pthread_create(&c->reader, NULL, reader_main, c) != 0) {
        kp_net_conn_fail(c, "cannot start the reader thread");
        return NULL;
    }
    writer_loop(c);
    pthread_join(c->reader, NULL);
    return NULL;
}

/* @locality any thread; @locks the endpoint lock held by the caller */
net_conn *kp_net_conn_new(kp_net *net, const char *peer, int dialer, int fd)
{
    net_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->scratch = malloc(SCRATCH)) || kp_cond_init(&c->cond) != 0) {
        if (c)
            free(c->scratch);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->net = net;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->dialer = dialer;
    c->expect_hello = dialer;
    c->fd = fd;
    if (pthread_create(&c->writer, NULL, writer_main, c) != 0) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c->scratch);
        free(c);
        return NULL;
    }
    c->writer_started = 1;
    return c;
}

/* Joins the threads of a failed connection without channels and frees it.
 * @locality any thread but the connection's; @locks none held */
void kp_net_conn_free(net_conn *c)
{
    if (c->writer_started)
        pthread_join(c->writer, NULL);
    if (c->fd >= 0)
        close(c->fd);
    kp_net_map_free(&c->outs);
    kp_net_map_free(&c->ins);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c->scratch);
    free(c);
}
