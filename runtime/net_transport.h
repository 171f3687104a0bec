/* The executor's kp_transport (transport.h) over a data-plane endpoint (net.h): a channel id
 * becomes the data-plane channel of (job, attempt, the same five numbers), and the remote end
 * of a channel is found by a callback — a taskmanager answers from the Deploy's placements,
 * tests and benchmarks from their own split. */
#ifndef KP_NET_TRANSPORT_H
#define KP_NET_TRANSPORT_H

#include "net.h"
#include "transport.h"

/* The "host:port" data address of the process running `subtask` of task `task`, or NULL
 * with a reason. @locality the thread preparing the run */
typedef const char *(*kp_net_peer_fn)(void *ctx, int task, int subtask, char *err, size_t errlen);

typedef struct kp_net_transport {
    kp_transport base;
    kp_net *net;
    char job[KP_NET_JOB_ID_MAX + 1];
    uint32_t attempt;
    kp_net_peer_fn peer;
    void *ctx;
    int drain_ms; /* how long drop(ok) waits for queued batches (END) to leave; 10000 */
} kp_net_transport;

/* Sets up `t` (caller's memory, no allocation) for one attempt of `job` on `net`. abort wakes
 * the attempt's producers and stops delivery (kp_net_abort_attempt); drop(ok) drains (ok) or
 * discards, then closes the attempt's channels (kp_net_drop_attempt). @locality any thread */
void kp_net_transport_init(kp_net_transport *t, kp_net *net, const char *job, uint32_t attempt,
                           kp_net_peer_fn peer, void *ctx);

#endif
