/* The data-plane endpoint and its advertised address (data_listener.h). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "data_listener.h"
#include "tm.h"

/* The local address a connection to host:port would leave from (a UDP connect sends nothing). */
static int route_address(const char *host, const char *port, char *out, size_t len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int rc = -1;
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, out, (socklen_t)len, NULL, 0, NI_NUMERICHOST) == 0)
        rc = 0;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return rc;
}

/* A channel's connection broke or its peer could not be reached; the executor sees the
 * channel fail and ends the run with it. @locality a data-plane thread, endpoint lock held */
static void on_net_error(void *ctx, const kp_net_chan_id *chan, const char *message)
{
    (void)ctx;
    kp_tm_log("data plane: job %s attempt %u channel %d.%d -> %d.%d: %s", chan->job, chan->attempt,
              chan->producer_task, chan->producer_subtask, chan->consumer_task,
              chan->consumer_subtask, message);
}

kp_net *kp_tm_data_start(const char *bind_addr, int port, const char *jm_host, const char *jm_port,
                         char *err, size_t errlen)
{
    kp_net_config cfg = {.bind = bind_addr, .port = port, .on_error = on_net_error};
    kp_net *net = kp_net_start(&cfg, err, errlen);
    int wildcard = !strcmp(bind_addr, "0.0.0.0") || !strcmp(bind_addr, "::");
    if (!net || !wildcard)
        return net;
    /* a wildcard is no address to dial: advertise the route to the jobmanager instead, on
     * the port the first start found */
    const char *bound = kp_net_address(net);
    const char *colon = strrchr(bound, ':');
    char host[256], advertise[300];
    int p = colon ? atoi(colon + 1) : 0;
    kp_net_stop(net);
    if (route_address(jm_host, jm_port, host, sizeof host) != 0)
        snprintf(host, sizeof host, "%s", strchr(bind_addr, ':') ? "::1" : "127.0.0.1");
    snprintf(advertise, sizeof advertise, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, p);
    cfg.port = p;
    cfg.advertise = advertise;
    return kp_net_start(&cfg, err, errlen);
}
