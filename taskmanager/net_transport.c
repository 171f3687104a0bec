/* kp_transport over kp_net (net_transport.h). The executor asks for each channel whose other end
 * is remote; the peer is found in the Deploy's placements (a linear scan: a few hundred
 * subtasks at most, once per channel at the start of a run). */
#include <stdio.h>
#include <string.h>

#include "net_transport.h"

/* The data address of the taskmanager running subtask `subtask` of task `task`. */
static const char *peer_of(const Kappa__Control__Deploy *d, int task, int subtask, char *err,
                           size_t errlen)
{
    for (size_t i = 0; i < d->n_placements; i++) {
        const Kappa__Control__Placement *p = d->placements[i];
        if (p->task_id == task && p->subtask == (uint32_t)subtask && *p->data_address)
            return p->data_address;
    }
    snprintf(err, errlen, "the deployment places subtask %d of task %d nowhere", subtask, task);
    return NULL;
}

static void chan_id(const kp_tm_net_transport *t, kp_channel_id id, kp_net_chan_id *out)
{
    *out = (kp_net_chan_id){.attempt = t->d->attempt,
                            .producer_task = id.producer_task,
                            .producer_subtask = id.producer_subtask,
                            .consumer_task = id.consumer_task,
                            .consumer_subtask = id.consumer_subtask,
                            .input = id.input};
    snprintf(out->job, sizeof out->job, "%s", t->d->job_id);
}

static kp_channel *out_channel(kp_transport *tr, kp_channel_id id, int credits, char *err,
                               size_t errlen)
{
    kp_tm_net_transport *t = (kp_tm_net_transport *)tr;
    const char *peer = peer_of(t->d, id.consumer_task, id.consumer_subtask, err, errlen);
    if (!peer)
        return NULL;
    kp_net_chan_id nid;
    chan_id(t, id, &nid);
    return kp_net_open_out(t->net, peer, &nid, err, errlen);
}

static int in_channel(kp_transport *tr, kp_channel_id id, kp_channel *ch, char *err, size_t errlen)
{
    kp_tm_net_transport *t = (kp_tm_net_transport *)tr;
    const char *peer = peer_of(t->d, id.producer_task, id.producer_subtask, err, errlen);
    if (!peer)
        return -1;
    kp_net_chan_id nid;
    chan_id(t, id, &nid);
    return kp_net_open_in(t->net, peer, &nid, ch, err, errlen);
}

/* The run failed or was cancelled: wake producers blocked on remote credits, stop delivery. */
static void abort_run(kp_transport *tr)
{
    kp_tm_net_transport *t = (kp_tm_net_transport *)tr;
    kp_net_abort_attempt(t->net, t->d->job_id, t->d->attempt);
}

static void drop(kp_transport *tr, int ok)
{
    kp_tm_net_transport *t = (kp_tm_net_transport *)tr;
    kp_net_drop_attempt(t->net, t->d->job_id, t->d->attempt, ok ? t->drain_ms : 0);
}

static const kp_transport_vt net_vt = {
    .out_channel = out_channel,
    .in_channel = in_channel,
    .abort = abort_run,
    .drop = drop,
};

void kp_tm_net_transport_init(kp_tm_net_transport *t, kp_net *net, const Kappa__Control__Deploy *d)
{
    *t = (kp_tm_net_transport){.base = {.vt = &net_vt}, .net = net, .d = d, .drain_ms = 10000};
}
