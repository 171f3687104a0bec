/* The taskmanager's data-plane endpoint (runtime/net.h) on --bind:--data-port, and the
 * "host:port" it advertises in its Hello — the address other taskmanagers dial. */
#ifndef KP_TM_DATA_LISTENER_H
#define KP_TM_DATA_LISTENER_H

#include <stddef.h>

#include "net.h"

/* Starts the endpoint on bind:port (port 0 = a free one). A wildcard bind (0.0.0.0, ::)
 * advertises the local address this host uses to reach the jobmanager. NULL with the reason.
 * Stop it with kp_net_stop. @locality main thread */
kp_net *kp_tm_data_start(const char *bind, int port, const char *jm_host, const char *jm_port,
                         char *err, size_t errlen);

#endif
