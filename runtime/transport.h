/* The exchange between subtasks that run in different processes: what the executor asks of a
 * data plane (runtime/net_*.c implements it over TCP; tests use in-memory ones).
 *
 * A channel carries record batches (batch.h: records with ts, cwm and hash; WATERMARK, IDLE,
 * END messages) from one producer subtask to one consumer subtask, in order. Between two
 * subtasks of one process the executor wires an inbox channel directly (channel.h, no
 * serialisation); a channel with a remote end is obtained from the transport, per side:
 *
 * - out side (local producer, remote consumer): out_channel gives the producer a kp_channel
 *   to acquire and send batches on, exactly as on a local one; the transport ships what is
 *   sent and hands the batches back to that channel once shipped. Its credits bound the
 *   batches in flight, so a slow remote consumer blocks the producer (backpressure).
 * - in side (remote producer, local consumer): in_channel hands the transport the channel
 *   of the local consumer's inbox into which it delivers what arrives (acquire, fill, send);
 *   the consumer releases each batch after processing, which is the credit the transport
 *   returns to the remote producer.
 *
 * The executor calls in_channel for all its inbound channels before any out_channel, so two
 * processes that prepare at the same time never wait on each other. @locality in_channel
 * and out_channel are called by the thread preparing the run; abort from any thread. */
#ifndef KP_TRANSPORT_H
#define KP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"

/* Names one channel identically on both ends. Tasks are named by their id (the head node's
 * id, plan.h). `input` says which input of the consumer task the channel feeds: 0 today;
 * operators with several inputs (union, connect, joins) number their inputs, so a job that
 * feeds one task twice from the same producer still has distinct channels. */
typedef struct kp_channel_id {
    int32_t producer_task, producer_subtask;
    int32_t consumer_task, consumer_subtask;
    int32_t input;
} kp_channel_id;

typedef struct kp_transport kp_transport;

typedef struct kp_transport_vt {
    /* The channel a local producer sends into for `id`; `credits` is the executor's batches
     * per channel, which the transport may use for it. Owned by the transport; the producer
     * uses it until drop. NULL with the reason in err. */
    kp_channel *(*out_channel)(kp_transport *t, kp_channel_id id, int credits, char *err,
                               size_t errlen);
    /* Deliver the batches arriving for `id` into `ch` (a channel of a local inbox, owned by
     * the executor until drop). 0, or -1 with the reason in err. */
    int (*in_channel)(kp_transport *t, kp_channel_id id, kp_channel *ch, char *err, size_t errlen);
    /* The run failed or was cancelled: wake every producer blocked on an out channel and
     * stop delivering. May be NULL. @locality any thread; must not block */
    void (*abort)(kp_transport *t);
    /* The run is over (`ok`: every local subtask finished, so out channels end with END and
     * should be drained; else discard). After it returns the transport touches no in channel
     * and no producer uses an out channel; the executor then frees its inboxes. May block. */
    void (*drop)(kp_transport *t, int ok);
} kp_transport_vt;

struct kp_transport {
    const kp_transport_vt *vt;
};

#endif
