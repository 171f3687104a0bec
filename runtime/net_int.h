/* Internals shared by the data plane's files: the endpoint, its connections and their channel
 * entries (net.c registers and drops channels, net_conn.c runs a connection's threads,
 * net_sock.c is the socket plumbing, net_map.c finds a channel by id). Not for other callers. */
#ifndef KP_NET_INT_H
#define KP_NET_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "net.h"

typedef struct net_conn net_conn;

/* Entries start with their id so a map can hold either kind. */
typedef struct net_out { /* a channel this endpoint sends on */
    kp_net_chan_id id;
    net_conn *conn;
    kp_inbox *outbox;      /* the producer's side: send_credits batches; NULL for an orphan */
    int credits;           /* batches the receiver can take now */
    int queued;            /* batches the producer sent that are not yet written */
    int busy;              /* the writer is writing one of its batches */
    int in_ready;          /* on the connection's ready list */
    struct net_out *ready; /* ready-list link */
} net_out;

typedef struct net_in { /* a channel this endpoint receives on */
    kp_net_chan_id id;
    net_conn *conn;
    kp_channel *deliver;
    int outstanding; /* credits granted and not yet used by a batch */
    int grant;       /* credits to grant with the next CREDIT frame */
    int busy;        /* the reader is filling a batch of it */
    int aborted;     /* kp_net_abort_attempt: arriving batches are dropped */
    int in_grants;
    struct net_in *grants;
} net_in;

typedef struct net_map {
    void **slots; /* open addressing; entries begin with a kp_net_chan_id */
    size_t cap, count;
} net_map;

struct net_conn {
    kp_net *net;
    char peer[KP_NET_ADDRESS_MAX + 1];
    int dialer;       /* this endpoint dials (its address is the lower) */
    int expect_hello; /* the reader must first read the peer's HELLO (dialled connections) */
    int fd;           /* -1 until connected */
    pthread_t writer, reader;
    int writer_started;
    pthread_mutex_t lock; /* everything below, and the entries' counters */
    pthread_cond_t cond;  /* fd attached, work for the writer, busy cleared, failure */
    int failed;
    char reason[256];
    net_map outs, ins;
    size_t orphans;                   /* out entries created by credits alone */
    net_out *ready_head, *ready_tail; /* channels with a credit and a queued batch */
    net_in *grants_head;              /* channels with credits to grant */
    uint8_t *scratch;                 /* reader: where refused frames are read to be dropped */
    net_conn *next;                   /* the endpoint's list */
};

#define KP_NET_DROPPED_MEMORY 64

struct kp_net {
    kp_net_config cfg;
    char bind[KP_NET_ADDRESS_MAX + 1];
    char address[KP_NET_ADDRESS_MAX + 1];
    int listen_fd;
    pthread_t acceptor;
    pthread_mutex_t lock; /* the connection list, entry lifetimes */
    atomic_int stopping;
    net_conn *conns;
    /* the last attempts dropped here: credits for them are not kept (a leaf lock) */
    pthread_mutex_t dropped_lock;
    struct {
        char job[KP_NET_JOB_ID_MAX + 1];
        uint32_t attempt;
    } dropped[KP_NET_DROPPED_MEMORY];
    int dropped_next;
    atomic_llong batches_sent, bytes_sent, batches_received, bytes_received, refused, failures;
};

/* net_map.c — @locality the owning connection's lock */
void *kp_net_map_get(const net_map *m, const kp_net_chan_id *id);
int kp_net_map_put(net_map *m, void *entry);
void kp_net_map_del(net_map *m, const void *entry);
void kp_net_map_free(net_map *m);

/* net_conn.c */
net_conn *kp_net_conn_new(kp_net *net, const char *peer, int dialer, int fd);
void kp_net_conn_ready_locked(net_conn *c, net_out *o);
void kp_net_conn_fail(net_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kp_net_conn_free(net_conn *c);
void kp_net_fail_channels(net_conn *c); /* endpoint lock held */

/* net_sock.c — blocking socket helpers; -1 with errno or a reason */
int kp_net_listen(const char *bind, int port, int *bound_port, char *err, size_t errlen);
int kp_net_dial_once(const char *address, int timeout_ms, char *err, size_t errlen);
int kp_net_read_full(int fd, void *buf, size_t len); /* 1 read, 0 EOF before len, -1 error */
int kp_net_write_full(int fd, struct iovec *iov, int iovcnt);
void kp_net_set_timeout(int fd, int ms);
/* TCP_NODELAY, and keepalive probes plus TCP_USER_TIMEOUT so a peer host that vanished
 * without closing (power, partition) fails its connection within about 30 s. */
void kp_net_tune(int fd);

#endif
