/* The data-plane listener and its advertised address (data_listener.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "data_listener.h"

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

int kp_tm_data_listen(kp_tm_data_listener *l, const char *bind_addr, int port, const char *jm_host,
                      const char *jm_port, char *err, size_t errlen)
{
    *l = (kp_tm_data_listener){.fd = -1};
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST},
                    *res;
    int gai = getaddrinfo(bind_addr, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "--bind %s: %s (give a numeric IPv4 or IPv6 address)", bind_addr,
                 gai_strerror(gai));
        return -1;
    }
    int one = 1;
    l->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(l->fd, res->ai_addr, res->ai_addrlen) != 0 || listen(l->fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d for the data plane: %s", bind_addr, port,
                 strerror(errno));
        freeaddrinfo(res);
        kp_tm_data_close(l);
        return -1;
    }
    int family = res->ai_family;
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN + 1], serv[16];
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(err, errlen, "cannot read the data-plane port: %s", strerror(errno));
        kp_tm_data_close(l);
        return -1;
    }
    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::")) {
        if (route_address(jm_host, jm_port, host, sizeof host) != 0)
            snprintf(host, sizeof host, "%s", family == AF_INET6 ? "::1" : "127.0.0.1");
    }
    snprintf(l->address, sizeof l->address, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, serv);
    return 0;
}

void kp_tm_data_close(kp_tm_data_listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}
