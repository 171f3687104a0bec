/* The data-plane endpoint: listens on the data port, accepts peers after their HELLO, keeps
 * one connection per peer, and opens and drops channels on them (net.h says how the pieces
 * fit; net_conn.c runs the connections). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "net_int.h"

/* Channel hooks (channel.h): called under the channel's inbox lock, take the connection's. */
static void out_on_send(void *ctx)
{
    net_out *o = ctx;
    pthread_mutex_lock(&o->conn->lock);
    o->queued++;
    kp_net_conn_ready_locked(o->conn, o);
    pthread_mutex_unlock(&o->conn->lock);
}

static void in_on_release(void *ctx)
{
    net_in *in = ctx;
    net_conn *c = in->conn;
    pthread_mutex_lock(&c->lock);
    if (in->grant++ == 0 && !in->in_grants) {
        in->in_grants = 1;
        in->grants = c->grants_head;
        c->grants_head = in;
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}

static int failed(net_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int f = c->failed;
    pthread_mutex_unlock(&c->lock);
    return f;
}

/* The live connection to `peer`, made if `create`; endpoint lock held. */
static net_conn *conn_get(kp_net *net, const char *peer, int create)
{
    for (net_conn *c = net->conns; c; c = c->next)
        if (strcmp(c->peer, peer) == 0 && !failed(c))
            return c;
    if (!create)
        return NULL;
    net_conn *c = kp_net_conn_new(net, peer, strcmp(net->address, peer) < 0, -1);
    if (c) {
        c->next = net->conns;
        net->conns = c;
    }
    return c;
}

static int check_args(kp_net *net, const char *peer, const kp_net_chan_id *id, char *err,
                      size_t errlen)
{
    if (!peer || !*peer || strlen(peer) > KP_NET_ADDRESS_MAX)
        snprintf(err, errlen, "a data-plane peer address must be host:port of at most %d bytes",
                 KP_NET_ADDRESS_MAX);
    else if (strcmp(peer, net->address) == 0)
        snprintf(err, errlen,
                 "channel to this endpoint's own address %s (local channels stay "
                 "in process)",
                 peer);
    else if (!id->job[0] || strnlen(id->job, KP_NET_JOB_ID_MAX + 1) > KP_NET_JOB_ID_MAX)
        snprintf(err, errlen, "a job id must have 1 to %d bytes", KP_NET_JOB_ID_MAX);
    else
        return 0;
    return -1;
}

kp_channel *kp_net_open_out(kp_net *net, const char *peer, const kp_net_chan_id *id, char *err,
                            size_t errlen)
{
    if (check_args(net, peer, id, err, errlen) < 0)
        return NULL;
    kp_inbox *outbox = kp_inbox_new(1, net->cfg.send_credits);
    net_out *fresh = calloc(1, sizeof *fresh);
    if (!outbox || !fresh) {
        kp_inbox_free(outbox);
        free(fresh);
        snprintf(err, errlen, "out of memory for a data-plane channel");
        return NULL;
    }
    fresh->id = *id;
    pthread_mutex_lock(&net->lock);
    net_conn *c = conn_get(net, peer, 1);
    net_out *o = NULL;
    if (c) {
        fresh->conn = c;
        pthread_mutex_lock(&c->lock);
        o = kp_net_map_get(&c->outs, id);
        if (o && !o->outbox) { /* credits came first */
            c->orphans--;
        } else if (o) {
            o = NULL;
            snprintf(err, errlen, "data-plane channel already open");
        } else if (kp_net_map_put(&c->outs, fresh) == 0) {
            o = fresh;
            fresh = NULL;
        } else {
            snprintf(err, errlen, "out of memory for a data-plane channel");
        }
        if (o)
            o->outbox = outbox;
        pthread_mutex_unlock(&c->lock);
    } else {
        snprintf(err, errlen, "cannot start a data-plane connection to %s", peer);
    }
    free(fresh);
    if (o)
        kp_channel_set_hooks(kp_inbox_channel(outbox, 0), out_on_send, NULL, o);
    pthread_mutex_unlock(&net->lock);
    if (!o) {
        kp_inbox_free(outbox);
        return NULL;
    }
    return kp_inbox_channel(outbox, 0);
}

int kp_net_open_in(kp_net *net, const char *peer, const kp_net_chan_id *id, kp_channel *deliver,
                   char *err, size_t errlen)
{
    if (check_args(net, peer, id, err, errlen) < 0)
        return -1;
    net_in *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "out of memory for a data-plane channel");
        return -1;
    }
    in->id = *id;
    in->deliver = deliver;
    pthread_mutex_lock(&net->lock);
    net_conn *c = conn_get(net, peer, 1);
    int rc = -1;
    if (!c) {
        snprintf(err, errlen, "cannot start a data-plane connection to %s", peer);
    } else {
        in->conn = c;
        pthread_mutex_lock(&c->lock);
        if (kp_net_map_get(&c->ins, id))
            snprintf(err, errlen, "data-plane channel already open");
        else if (kp_net_map_put(&c->ins, in) < 0)
            snprintf(err, errlen, "out of memory for a data-plane channel");
        else
            rc = 0;
        pthread_mutex_unlock(&c->lock);
    }
    if (rc == 0) {
        kp_channel_set_hooks(deliver, NULL, in_on_release, in);
        pthread_mutex_lock(&c->lock);
        in->grant = kp_channel_credits(deliver); /* every batch of the channel is free */
        in->in_grants = 1;
        in->grants = c->grants_head;
        c->grants_head = in;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&net->lock);
    if (rc < 0)
        free(in);
    return rc;
}

static int matches(const kp_net_chan_id *id, const char *job, uint32_t attempt)
{
    return !job || (id->attempt == attempt && strncmp(id->job, job, KP_NET_JOB_ID_MAX) == 0);
}

/* Waits until the matching outgoing channels of `c` sent what was queued, or the deadline or
 * a failure; returns how many still hold batches. c->lock held. */
static int drain(net_conn *c, const char *job, uint32_t attempt, struct timespec *deadline)
{
    for (;;) {
        int left = 0;
        for (size_t i = 0; i < c->outs.cap; i++) {
            net_out *o = c->outs.slots[i];
            left += o && o->outbox && matches(&o->id, job, attempt) && (o->queued || o->busy);
        }
        if (!left || c->failed || pthread_cond_timedwait(&c->cond, &c->lock, deadline) == ETIMEDOUT)
            return left;
    }
}

static void unlink_ready(net_conn *c, net_out *o)
{
    net_out **p = &c->ready_head, *prev = NULL;
    while (*p && *p != o) {
        prev = *p;
        p = &(*p)->ready;
    }
    if (*p) {
        *p = o->ready;
        if (c->ready_tail == o)
            c->ready_tail = prev;
    }
}

static void unlink_grant(net_conn *c, net_in *in)
{
    net_in **p = &c->grants_head;
    while (*p && *p != in)
        p = &(*p)->grants;
    if (*p)
        *p = in->grants;
}

/* Removes and frees the matching channels of one connection; endpoint lock held. */
static void drop_conn(net_conn *c, const char *job, uint32_t attempt)
{
    pthread_mutex_lock(&c->lock);
    size_t total = c->outs.count + c->ins.count, no = 0, ni = 0;
    net_out **outs = malloc((total ? total : 1) * sizeof *outs);
    net_in **ins = malloc((total ? total : 1) * sizeof *ins);
    for (size_t i = 0; outs && ins && i < c->outs.cap; i++)
        if (c->outs.slots[i] && matches(c->outs.slots[i], job, attempt))
            outs[no++] = c->outs.slots[i];
    for (size_t i = 0; outs && ins && i < c->ins.cap; i++)
        if (c->ins.slots[i] && matches(c->ins.slots[i], job, attempt))
            ins[ni++] = c->ins.slots[i];
    pthread_mutex_unlock(&c->lock);
    /* first stop the hooks, so nothing refers to an entry once it is unlinked */
    for (size_t i = 0; i < ni; i++)
        kp_channel_set_hooks(ins[i]->deliver, NULL, NULL, NULL);
    for (size_t i = 0; i < no; i++)
        if (outs[i]->outbox) {
            kp_channel_set_hooks(kp_inbox_channel(outs[i]->outbox, 0), NULL, NULL, NULL);
            kp_inbox_abort(outs[i]->outbox);
        }
    /* the reader or writer may be inside a frame of one of them: wait for it; a peer stuck
     * mid-frame for 5 s gets its connection shut, which ends the frame (with an error) */
    struct timespec deadline = kp_deadline_ms(5000);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        int busy = 0;
        for (size_t i = 0; i < no; i++)
            busy |= outs[i]->busy;
        for (size_t i = 0; i < ni; i++)
            busy |= ins[i]->busy;
        if (!busy)
            break;
        if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT && c->fd >= 0) {
            shutdown(c->fd, SHUT_RDWR);
            deadline = kp_deadline_ms(60000);
        }
    }
    for (size_t i = 0; i < no; i++) {
        unlink_ready(c, outs[i]);
        kp_net_map_del(&c->outs, outs[i]);
        c->orphans -= !outs[i]->outbox;
    }
    for (size_t i = 0; i < ni; i++) {
        unlink_grant(c, ins[i]);
        kp_net_map_del(&c->ins, ins[i]);
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < no; i++) {
        kp_inbox_free(outs[i]->outbox);
        free(outs[i]);
    }
    for (size_t i = 0; i < ni; i++)
        free(ins[i]);
    free(outs);
    free(ins);
}

static void remember_dropped(kp_net *net, const char *job, uint32_t attempt)
{
    pthread_mutex_lock(&net->dropped_lock);
    int i = net->dropped_next;
    snprintf(net->dropped[i].job, sizeof net->dropped[i].job, "%s", job);
    net->dropped[i].attempt = attempt;
    net->dropped_next = (i + 1) % KP_NET_DROPPED_MEMORY;
    pthread_mutex_unlock(&net->dropped_lock);
}

/* Drops channels (all if job is NULL), then unlinks the failed connections left without
 * channels into *dead, for the caller to free outside the endpoint lock. */
/* Waits (without the endpoint lock, so aborts and other attempts go on) until the outgoing
 * channels of (job, attempt) sent what their producers queued, or drain_ms passed, or their
 * connection failed; returns how many still hold batches. A connection holding channels of
 * the attempt is not freed before the attempt is dropped, so the pointers stay valid. */
static int drain_attempt(kp_net *net, const char *job, uint32_t attempt, int drain_ms)
{
    pthread_mutex_lock(&net->lock);
    size_t n = 0, k = 0;
    for (net_conn *c = net->conns; c; c = c->next)
        n++;
    net_conn **conns = malloc((n ? n : 1) * sizeof *conns);
    for (net_conn *c = net->conns; conns && c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        int mine = 0;
        for (size_t i = 0; i < c->outs.cap && !mine; i++) {
            net_out *o = c->outs.slots[i];
            mine = o && o->outbox && matches(&o->id, job, attempt);
        }
        pthread_mutex_unlock(&c->lock);
        if (mine)
            conns[k++] = c;
    }
    pthread_mutex_unlock(&net->lock);
    struct timespec deadline = kp_deadline_ms(drain_ms > 0 ? drain_ms : 0);
    int undrained = 0;
    for (size_t i = 0; i < k; i++) {
        pthread_mutex_lock(&conns[i]->lock);
        undrained += drain(conns[i], job, attempt, &deadline);
        pthread_mutex_unlock(&conns[i]->lock);
    }
    free(conns);
    return undrained;
}

/* Drops channels (all if job is NULL), then unlinks the failed connections left without
 * channels into *dead, for the caller to free outside the endpoint lock. */
static void drop_all(kp_net *net, const char *job, uint32_t attempt, net_conn **dead)
{
    pthread_mutex_lock(&net->lock);
    if (job)
        remember_dropped(net, job, attempt);
    for (net_conn *c = net->conns; c; c = c->next)
        drop_conn(c, job, attempt);
    for (net_conn **p = &net->conns; *p;) {
        net_conn *c = *p;
        pthread_mutex_lock(&c->lock);
        int reap = c->failed && !c->outs.count && !c->ins.count;
        pthread_mutex_unlock(&c->lock);
        if (reap) {
            *p = c->next;
            c->next = *dead;
            *dead = c;
        } else {
            p = &c->next;
        }
    }
    pthread_mutex_unlock(&net->lock);
}

static void free_conns(net_conn *c)
{
    while (c) {
        net_conn *next = c->next;
        kp_net_conn_free(c);
        c = next;
    }
}

int kp_net_drop_attempt(kp_net *net, const char *job, uint32_t attempt, int drain_ms)
{
    int undrained = drain_attempt(net, job, attempt, drain_ms);
    net_conn *dead = NULL;
    drop_all(net, job, attempt, &dead);
    free_conns(dead);
    return undrained;
}

void kp_net_abort_attempt(kp_net *net, const char *job, uint32_t attempt)
{
    pthread_mutex_lock(&net->lock);
    for (net_conn *c = net->conns; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        size_t n = 0;
        kp_inbox **boxes = malloc((c->outs.count ? c->outs.count : 1) * sizeof *boxes);
        for (size_t i = 0; i < c->outs.cap; i++) {
            net_out *o = c->outs.slots[i];
            if (boxes && o && o->outbox && matches(&o->id, job, attempt))
                boxes[n++] = o->outbox;
        }
        for (size_t i = 0; i < c->ins.cap; i++) {
            net_in *in = c->ins.slots[i];
            if (in && matches(&in->id, job, attempt))
                in->aborted = 1;
        }
        pthread_mutex_unlock(&c->lock);
        for (size_t i = 0; i < n; i++) /* outboxes live until the drop */
            kp_inbox_abort(boxes[i]);
        free(boxes);
    }
    pthread_mutex_unlock(&net->lock);
}

/* A peer dialled us: the connection to it takes the socket. */
static void attach(kp_net *net, const char *peer, int fd)
{
    pthread_mutex_lock(&net->lock);
    net_conn *c = conn_get(net, peer, 0);
    int dialer = 0, connected = 0;
    if (c) {
        pthread_mutex_lock(&c->lock);
        dialer = c->dialer;
        connected = c->fd >= 0;
        pthread_mutex_unlock(&c->lock);
    }
    if (c && connected && !dialer) { /* the peer restarted: its old connection is dead */
        pthread_mutex_unlock(&net->lock);
        kp_net_conn_fail(c, "%s connected again", peer);
        pthread_mutex_lock(&net->lock);
        c = conn_get(net, peer, 0);
    }
    if (dialer || strcmp(peer, net->address) >= 0) {
        fprintf(stderr,
                "kappa data plane: refused a connection from %s: the endpoint with the lower "
                "address dials, and that is this one (%s)\n",
                peer, net->address);
        close(fd);
    } else if (c) {
        pthread_mutex_lock(&c->lock);
        c->fd = fd;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
    } else if ((c = kp_net_conn_new(net, peer, 0, fd))) {
        c->next = net->conns;
        net->conns = c;
    } else {
        close(fd);
    }
    pthread_mutex_unlock(&net->lock);
}

static void *acceptor_main(void *arg)
{
    kp_net *net = arg;
    uint8_t buf[KP_NET_HEADER_MAX];
    while (!atomic_load(&net->stopping)) {
        int fd = accept4(net->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(50 * 1000);
            continue;
        }
        /* the HELLO must come within 2 s: a stray client holds up other peers no longer */
        kp_net_set_timeout(fd, 2000);
        kp_net_header h;
        char err[256] = "truncated HELLO";
        size_t want = 0;
        int ok = kp_net_read_full(fd, buf, KP_NET_PREFIX) > 0 &&
                 (want = kp_net_prefix_check(buf, err, sizeof err)) &&
                 kp_net_read_full(fd, buf + KP_NET_PREFIX, want - KP_NET_PREFIX) > 0 &&
                 kp_net_decode(buf, want, &h, err, sizeof err) == 0;
        if (ok && h.type != KP_NET_HELLO)
            ok = (snprintf(err, sizeof err, "the first frame is not a HELLO"), 0);
        if (!ok) {
            if (!atomic_load(&net->stopping))
                fprintf(stderr, "kappa data plane: refused a connection: %s\n", err);
            close(fd);
            continue;
        }
        kp_net_set_timeout(fd, 0);
        kp_net_tune(fd);
        attach(net, h.address, fd);
    }
    return NULL;
}

kp_net *kp_net_start(const kp_net_config *cfg, char *err, size_t errlen)
{
    kp_net *net = calloc(1, sizeof *net);
    if (!net) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    net->cfg = *cfg;
    snprintf(net->bind, sizeof net->bind, "%s", cfg->bind ? cfg->bind : "127.0.0.1");
    net->cfg.bind = net->bind;
    if (net->cfg.send_credits <= 0)
        net->cfg.send_credits = 2;
    if (net->cfg.connect_timeout_ms <= 0)
        net->cfg.connect_timeout_ms = 60000;
    int port = 0;
    net->listen_fd = kp_net_listen(net->bind, cfg->port, &port, err, errlen);
    if (net->listen_fd < 0) {
        free(net);
        return NULL;
    }
    if (cfg->advertise)
        snprintf(net->address, sizeof net->address, "%s", cfg->advertise);
    else if (strchr(net->bind, ':'))
        snprintf(net->address, sizeof net->address, "[%.100s]:%d", net->bind, port);
    else
        snprintf(net->address, sizeof net->address, "%.100s:%d", net->bind, port);
    net->cfg.advertise = net->address;
    pthread_mutex_init(&net->lock, NULL);
    pthread_mutex_init(&net->dropped_lock, NULL);
    if (pthread_create(&net->acceptor, NULL, acceptor_main, net) != 0) {
        snprintf(err, errlen, "cannot start the data-plane acceptor thread");
        close(net->listen_fd);
        pthread_mutex_destroy(&net->lock);
        pthread_mutex_destroy(&net->dropped_lock);
        free(net);
        return NULL;
    }
    return net;
}

const char *kp_net_address(const kp_net *net)
{
    return net->address;
}

kp_net_stats kp_net_get_stats(kp_net *net)
{
    return (kp_net_stats){
        .batches_sent = atomic_load(&net->batches_sent),
        .bytes_sent = atomic_load(&net->bytes_sent),
        .batches_received = atomic_load(&net->batches_received),
        .bytes_received = atomic_load(&net->bytes_received),
        .refused = atomic_load(&net->refused),
        .connections_failed = atomic_load(&net->failures),
    };
}

void kp_net_stop(kp_net *net)
{
    if (!net)
        return;
    atomic_store(&net->stopping, 1);
    shutdown(net->listen_fd, SHUT_RDWR);
    pthread_join(net->acceptor, NULL);
    close(net->listen_fd);
    net_conn *dead = NULL;
    drop_all(net, NULL, 0, &dead);
    pthread_mutex_lock(&net->lock);
    net_conn *live = net->conns;
    net->conns = NULL;
    pthread_mutex_unlock(&net->lock);
    for (net_conn *c = live; c; c = c->next)
        kp_net_conn_fail(c, "the data plane stopped");
    free_conns(live);
    free_conns(dead);
    pthread_mutex_destroy(&net->lock);
    pthread_mutex_destroy(&net->dropped_lock);
    free(net);
}
