/* kp_transport over kp_net (net_transport.h). */
#include "net_transport.h"

#include <stdio.h>

static kp_net_chan_id chan_of(const kp_net_transport *t, kp_channel_id id)
{
    kp_net_chan_id c = {.attempt = t->attempt,
                        .producer_task = id.producer_task,
                        .producer_subtask = id.producer_subtask,
                        .consumer_task = id.consumer_task,
                        .consumer_subtask = id.consumer_subtask,
                        .input = id.input};
    snprintf(c.job, sizeof c.job, "%s", t->job);
    return c;
}

static kp_channel *out_channel(kp_transport *tr, kp_channel_id id, int credits, char *err,
                               size_t errlen)
{
    (void)credits; /* the endpoint's send_credits bound the sender side */
    kp_net_transport *t = (kp_net_transport *)tr;
    const char *peer = t->peer(t->ctx, id.consumer_task, id.consumer_subtask, err, errlen);
    kp_net_chan_id c = chan_of(t, id);
    return peer ? kp_net_open_out(t->net, peer, &c, err, errlen) : NULL;
}

static int in_channel(kp_transport *tr, kp_channel_id id, kp_channel *ch, char *err, size_t errlen)
{
    kp_net_transport *t = (kp_net_transport *)tr;
    const char *peer = t->peer(t->ctx, id.producer_task, id.producer_subtask, err, errlen);
    kp_net_chan_id c = chan_of(t, id);
    return peer ? kp_net_open_in(t->net, peer, &c, ch, err, errlen) : -1;
}

static void abort_run(kp_transport *tr)
{
    kp_net_transport *t = (kp_net_transport *)tr;
    kp_net_abort_attempt(t->net, t->job, t->attempt);
}

static void drop(kp_transport *tr, int ok)
{
    kp_net_transport *t = (kp_net_transport *)tr;
    int left = kp_net_drop_attempt(t->net, t->job, t->attempt, ok ? t->drain_ms : 0);
    if (ok && left)
        fprintf(stderr,
                "kappa data plane: job %s attempt %u: %d channel(s) could not send "
                "their last batches within %d ms\n",
                t->job, t->attempt, left, t->drain_ms);
}

static const kp_transport_vt net_transport_vt = {out_channel, in_channel, abort_run, drop};

void kp_net_transport_init(kp_net_transport *t, kp_net *net, const char *job, uint32_t attempt,
                           kp_net_peer_fn peer, void *ctx)
{
    *t = (kp_net_transport){.base = {&net_transport_vt},
                            .net = net,
                            .attempt = attempt,
                            .peer = peer,
                            .ctx = ctx,
                            .drain_ms = 10000};
    snprintf(t->job, sizeof t->job, "%s", job);
}
