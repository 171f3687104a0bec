/* The network data plane: record batches between the subtasks of two taskmanagers over TCP.
 *
 * One endpoint (kp_net) per taskmanager listens on its data port. Between two endpoints there is
 * exactly one TCP connection, dialled by the endpoint whose advertised "host:port" address
 * compares lower (strcmp) and accepted by the other; every channel between subtasks of the two
 * processes is multiplexed on it, identified by kp_net_chan_id (job, attempt, producer task and
 * subtask, consumer task and subtask — cluster.md). Frames are in docs/wire.md.
 *
 * Flow control is credit based per channel, the in-process channel semantics stretched over
 * the wire: the receiving endpoint grants as many credits as the consumer's channel has
 * batches, and one more each time the consumer releases one; the sending endpoint writes a
 * batch only while it holds a credit for its channel. The producer writes into a local
 * channel of `send_credits` batches, so a slow consumer stops the producer in
 * kp_channel_acquire with memory bounded by credits × batch size on both sides, and a
 * channel without credits never holds up the others on the same connection (the receiving
 * thread never waits on a consumer: a batch only arrives when one is free for it).
 *
 * Threads: one acceptor per endpoint; per connection a writer (dials or waits for the peer,
 * then writes credit grants and batches) and a reader (validates every frame; a bad frame
 * closes that connection with a logged reason and fails its channels, nothing else).
 * Lock order: endpoint lock → connection lock; an inbox lock → connection lock (channel hooks);
 * never a connection lock → an inbox lock. */
#ifndef KP_NET_H
#define KP_NET_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "net_wire.h"

typedef struct kp_net kp_net;

/* A channel failed because its connection broke or the peer could not be reached. Right after
 * this report the data plane aborts the channel's inbox: a producer's acquire returns NULL, and
 * the consumer's inbox (the deliver channel's, so all of that consumer's inputs) stops, so the
 * subtask fails rather than taking a cut-short input for its end. The callback reports; it is
 * called on the connection's thread with the endpoint lock held and must not call kp_net. */
typedef void (*kp_net_error_fn)(void *ctx, const kp_net_chan_id *chan, const char *message);

typedef struct kp_net_config {
    const char *bind;       /* address to listen on; NULL = "127.0.0.1" */
    int port;               /* 0 = a free port */
    const char *advertise;  /* "host:port" peers dial; NULL = bind address and bound port */
    int send_credits;       /* batches a producer may fill ahead per outgoing channel; 0 = 2 */
    int connect_timeout_ms; /* dialling, or waiting to be dialled, gives up after; 0 = 60000 */
    kp_net_error_fn on_error;
    void *ctx;
} kp_net_config;

typedef struct kp_net_stats {
    long long batches_sent, bytes_sent, batches_received, bytes_received;
    long long refused;            /* batches for channels not open here (a stale attempt) */
    long long connections_failed; /* connections closed on an error */
} kp_net_stats;

/* Listens and starts the acceptor; NULL with a reason (e.g. the port is taken).
 * @locality any thread */
kp_net *kp_net_start(const kp_net_config *cfg, char *err, size_t errlen);

/* The advertised "host:port" address. @locality any thread, stable until kp_net_stop */
const char *kp_net_address(const kp_net *net);

/* Outgoing channel `id` to the endpoint at `peer`: the producer acquires and sends batches on
 * the returned channel (valid until the channel's attempt is dropped); the endpoint ships them.
 * NULL with a reason if the channel is already open or the arguments are wrong.
 * @locality any thread; @locks endpoint, connection */
kp_channel *kp_net_open_out(kp_net *net, const char *peer, const kp_net_chan_id *id, char *err,
                            size_t errlen);

/* Incoming channel `id` from the endpoint at `peer`: its batches are delivered into `deliver`
 * (a consumer inbox's channel, which the caller keeps alive until the attempt is dropped), and
 * its credits are that channel's batches. 0, or -1 with a reason.
 * @locality any thread; @locks endpoint, connection, the deliver channel's inbox */
int kp_net_open_in(kp_net *net, const char *peer, const kp_net_chan_id *id, kp_channel *deliver,
                   char *err, size_t errlen);

/* Closes every channel of (job, attempt). With drain_ms > 0, first waits up to that long for
 * outgoing channels to send what their producers queued (the END of a finished subtask); a
 * cancelled attempt passes 0. Call once the attempt's subtasks no longer use the channels;
 * an attempt is not reopened after its drop (credits that arrive for it later are ignored).
 * Returns the number of outgoing channels whose batches could not all be sent.
 * @locality any thread; @locks endpoint, connection */
int kp_net_drop_attempt(kp_net *net, const char *job, uint32_t attempt, int drain_ms);

/* The attempt failed or was cancelled: wakes every producer blocked on its outgoing channels
 * (their acquire returns NULL) and stops delivering into its incoming ones; the channels stay
 * allocated until kp_net_drop_attempt. Waits for no peer (transport.h's abort).
 * @locality any thread; @locks endpoint, connection, outbox (briefly) */
void kp_net_abort_attempt(kp_net *net, const char *job, uint32_t attempt);

/* @locality any thread */
kp_net_stats kp_net_get_stats(kp_net *net);

/* Closes every channel and connection, joins the threads, frees the endpoint. NULL is fine.
 * @locality any thread but the endpoint's own */
void kp_net_stop(kp_net *net);

#endif
