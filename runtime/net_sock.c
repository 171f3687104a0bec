/* Socket plumbing for the data plane: listen on the data port, dial a peer's "host:port"
 * (IPv4, IPv6 as "[addr]:port", or a name), and whole-buffer reads and writes that survive
 * signals and short transfers. Blocking sockets: each connection has its own threads. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_int.h"

/* Splits "host:port" / "[v6]:port" into host and port strings. */
static int split(const char *address, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(address, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= portlen)
        return -1;
    const char *h = address;
    size_t n = (size_t)(colon - address);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = 0;
    strcpy(port, colon + 1);
    return 0;
}

static int resolve(const char *host, const char *port, int passive, struct addrinfo **out,
                   char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (passive)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, out);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s:%s: %s", host, port, gai_strerror(rc));
        return -1;
    }
    return 0;
}

int kp_net_listen(const char *bind_addr, int port, int *bound_port, char *err, size_t errlen)
{
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    struct addrinfo *ai;
    if (resolve(bind_addr, ports, 1, &ai, err, errlen) < 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", bind_addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

void kp_net_set_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void kp_net_tune(int fd)
{
    int one = 1, idle = 10, interval = 5, count = 3, user_timeout = 30000;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

/* One attempt; SO_SNDTIMEO bounds the connect. */
static int connect_once(struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    kp_net_set_timeout(fd, timeout_ms);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    kp_net_set_timeout(fd, 0);
    kp_net_tune(fd);
    return fd;
}

int kp_net_dial_once(const char *address, int timeout_ms, char *err, size_t errlen)
{
    char host[KP_NET_ADDRESS_MAX], port[16];
    if (split(address, host, sizeof host, port, sizeof port) < 0) {
        snprintf(err, errlen, "'%s' is not a host:port address", address);
        return -1;
    }
    struct addrinfo *ai;
    if (resolve(host, port, 0, &ai, err, errlen) < 0)
        return -1;
    int fd = connect_once(ai, timeout_ms);
    int e = errno;
    freeaddrinfo(ai);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to %s: %s", address, strerror(e));
    return fd;
}

int kp_net_read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

int kp_net_write_full(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}
