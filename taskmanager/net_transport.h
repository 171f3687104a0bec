/* The executor's kp_transport (runtime/transport.h) over the network data plane (runtime/net.h)
 * for one deployment: a channel id becomes a data-plane channel of (job, attempt), and the
 * remote end of a channel is the data address the Deploy's placements give for the subtask on
 * the other side. */
#ifndef KP_TM_NET_TRANSPORT_H
#define KP_TM_NET_TRANSPORT_H

#include <stddef.h>

#include "control.pb-c.h"
#include "net.h"
#include "transport.h"

typedef struct kp_tm_net_transport {
    kp_transport base;
    kp_net *net;
    const Kappa__Control__Deploy *d; /* placements and ids; outlives the transport */
    int drain_ms;                    /* how long drop(ok) waits for END to leave */
} kp_tm_net_transport;

/* Sets up `t` (caller's memory) for the deployment `d` on endpoint `net`.
 * @locality the deployment's thread */
void kp_tm_net_transport_init(kp_tm_net_transport *t, kp_net *net, const Kappa__Control__Deploy *d);

#endif
