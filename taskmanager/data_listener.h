/* The taskmanager's data-plane address: the listener on --bind:--data-port that other
 * taskmanagers will dial, and the "host:port" it advertises in its Hello. Until the network
 * data plane (runtime/net.h) is wired in, the socket only reserves the port; see
 * docs/cluster.md, "Taskmanager". */
#ifndef KP_TM_DATA_LISTENER_H
#define KP_TM_DATA_LISTENER_H

#include <stddef.h>

typedef struct kp_tm_data_listener {
    int fd;
    char address[300]; /* advertised host:port */
} kp_tm_data_listener;

/* Listens on bind:port (port 0 = a free one). A wildcard bind (0.0.0.0, ::) advertises the
 * local address this host uses to reach the jobmanager. 0, or -1 with the reason.
 * @locality main thread */
int kp_tm_data_listen(kp_tm_data_listener *l, const char *bind, int port, const char *jm_host,
                      const char *jm_port, char *err, size_t errlen);

void kp_tm_data_close(kp_tm_data_listener *l);

#endif
