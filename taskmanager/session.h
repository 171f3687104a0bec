/* The taskmanager's control-plane client: connects to the jobmanager, registers (Hello →
 * Hello + RegisterAck), heartbeats, and serves Deploy / PluginData / Cancel until the
 * connection breaks or the heartbeat timeout passes without a frame from the jobmanager. Then
 * it cancels everything it runs (there is no jobmanager HA yet), and connects again with
 * exponential backoff, registering under the same instance id. */
#ifndef KP_TM_SESSION_H
#define KP_TM_SESSION_H

#include "net.h"
#include "tm.h"

/* Runs until kp_tm_stop is set; deployments exchange records with other taskmanagers through
 * `net`, whose address the Hello advertises. Returns 0, or 1 if it could not start (reason
 * logged). @locality main thread; deployments run on threads of their own */
int kp_tm_session_run(const kp_tm_options *opt, const char *instance_id, kp_net *net);

#endif
