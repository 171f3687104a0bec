/* The framed control-plane socket of the taskmanager (see conn.h): connect with a timeout,
 * whole-frame writes bounded by a send timeout, and incremental reads that hand out a frame
 * only once its header and checksum are valid. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

/* Reads at most this much per recv; a plugin frame arrives in many reads. */
#define READ_CHUNK (256u * 1024u)

static int connect_timeout(int fd, const struct addrinfo *ai, int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = poll(&p, 1, timeout_ms);
        if (n <= 0) {
            errno = n == 0 ? ETIMEDOUT : errno;
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            return -1;
        if (soerr) {
            errno = soerr;
            return -1;
        }
    }
    return fcntl(fd, F_SETFL, fl); /* blocking again: writes are bounded by SO_SNDTIMEO */
}

int kp_tm_conn_open(kp_tm_conn *c, const char *host, const char *port, int timeout_ms, char *err,
                    size_t errlen)
{
    *c = (kp_tm_conn){.fd = -1, .send_timeout_ms = timeout_ms};
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s:%s: %s", host, port, gai_strerror(gai));
        return -1;
    }
    int saved = 0;
    for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect_timeout(fd, ai, timeout_ms) == 0) {
            c->fd = fd;
            break;
        }
        saved = errno;
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        snprintf(err, errlen, "cannot connect to %s:%s: %s", host, port, strerror(saved));
        return -1;
    }
    int one = 1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return 0;
}

void kp_tm_conn_close(kp_tm_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->rx);
    *c = (kp_tm_conn){.fd = -1};
}

uint8_t *kp_tm_frame_pack(kp_frame_type type, const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(KP_FRAME_HEADER_SIZE + n + 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(msg, buf + KP_FRAME_HEADER_SIZE);
    kp_frame_header_encode(buf, type, buf + KP_FRAME_HEADER_SIZE, (uint32_t)n);
    *len = KP_FRAME_HEADER_SIZE + n;
    return buf;
}

int kp_tm_conn_send_raw(kp_tm_conn *c, const uint8_t *frame, size_t len, char *err, size_t errlen)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, frame + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "cannot send to the jobmanager: %s",
                     errno == EAGAIN ? "it took nothing for the send timeout" : strerror(errno));
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

int kp_tm_conn_send(kp_tm_conn *c, kp_frame_type type, const ProtobufCMessage *msg, char *err,
                    size_t errlen)
{
    size_t len;
    uint8_t *frame = kp_tm_frame_pack(type, msg, &len);
    if (!frame) {
        snprintf(err, errlen, "out of memory packing a control message");
        return -1;
    }
    int rc = kp_tm_conn_send_raw(c, frame, len, err, errlen);
    free(frame);
    return rc;
}

int kp_tm_conn_fill(kp_tm_conn *c, char *err, size_t errlen)
{
    if (c->consumed) { /* drop the frame handed out last */
        memmove(c->rx, c->rx + c->consumed, c->rx_len - c->consumed);
        c->rx_len -= c->consumed;
        c->consumed = 0;
    }
    /* never more than one largest frame plus a read ahead: kp_tm_conn_next judges the header
     * long before that, so a peer streaming garbage cannot grow the buffer without bound */
    while (c->rx_len < KP_FRAME_HEADER_SIZE + KP_FRAME_MAX_PAYLOAD + READ_CHUNK) {
        if (c->rx_cap - c->rx_len < READ_CHUNK) {
            size_t cap =
                c->rx_cap * 2 > c->rx_len + READ_CHUNK ? c->rx_cap * 2 : c->rx_len + READ_CHUNK;
            uint8_t *p = realloc(c->rx, cap);
            if (!p) {
                snprintf(err, errlen, "out of memory reading a control frame");
                return -1;
            }
            c->rx = p;
            c->rx_cap = cap;
        }
        ssize_t n = recv(c->fd, c->rx + c->rx_len, READ_CHUNK, MSG_DONTWAIT);
        if (n > 0) {
            c->rx_len += (size_t)n;
            if ((size_t)n < READ_CHUNK)
                return 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        snprintf(err, errlen, "%s",
                 n == 0 ? "the jobmanager closed the connection" : strerror(errno));
        return -1;
    }
    return 1;
}

int kp_tm_conn_next(kp_tm_conn *c, kp_frame_header_t *hdr, const uint8_t **payload, char *err,
                    size_t errlen)
{
    size_t start = c->consumed;
    size_t avail = c->rx_len - start;
    if (avail < KP_FRAME_HEADER_SIZE)
        return 0;
    kp_frame_err fe = kp_frame_header_decode(hdr, c->rx + start, avail);
    if (fe != KP_FRAME_OK) {
        snprintf(err, errlen, "bad frame header: %s", kp_frame_strerror(fe));
        return -1;
    }
    if (avail - KP_FRAME_HEADER_SIZE < hdr->length)
        return 0;
    const uint8_t *p = c->rx + start + KP_FRAME_HEADER_SIZE;
    fe = kp_frame_payload_check(hdr, p, hdr->length);
    if (fe != KP_FRAME_OK) {
        snprintf(err, errlen, "bad frame (type %u, %u bytes): %s", hdr->type, hdr->length,
                 kp_frame_strerror(fe));
        return -1;
    }
    *payload = p;
    c->consumed = start + KP_FRAME_HEADER_SIZE + hdr->length;
    return 1;
}
