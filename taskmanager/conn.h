/* One control-plane connection as the taskmanager sees it: a TCP socket to the jobmanager,
 * messages framed by proto/frame.h. Reading is incremental (the session polls the socket and
 * also has heartbeats to send), and every frame is validated — header, size, version, type,
 * CRC — before the caller sees its payload; the caller then decodes it with protobuf-c. */
#ifndef KP_TM_CONN_H
#define KP_TM_CONN_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

typedef struct kp_tm_conn {
    int fd;      /* -1 when closed */
    uint8_t *rx; /* received bytes not yet consumed */
    size_t rx_len, rx_cap;
    size_t consumed; /* bytes of the frame last returned by kp_tm_conn_next */
    int send_timeout_ms;
} kp_tm_conn;

/* Connects to host:port (blocking, at most timeout_ms). 0, or -1 with the reason.
 * @locality the session thread, as every function here */
int kp_tm_conn_open(kp_tm_conn *c, const char *host, const char *port, int timeout_ms, char *err,
                    size_t errlen);

/* Closes the socket and frees the buffer. Accepts a closed connection. */
void kp_tm_conn_close(kp_tm_conn *c);

/* Packs `msg` into a frame of `type` and writes it whole. A peer that takes no bytes for the
 * send timeout counts as gone. 0, or -1 with the reason. */
int kp_tm_conn_send(kp_tm_conn *c, kp_frame_type type, const ProtobufCMessage *msg, char *err,
                    size_t errlen);

/* Writes an already packed frame (header included). 0, or -1 with the reason. */
int kp_tm_conn_send_raw(kp_tm_conn *c, const uint8_t *frame, size_t len, char *err, size_t errlen);

/* Reads what the socket has without blocking. 1 = bytes arrived or none are waiting, -1 = the
 * peer closed or the socket failed (reason in err). */
int kp_tm_conn_fill(kp_tm_conn *c, char *err, size_t errlen);

/* The next complete, validated frame in the buffer: 1 with *hdr and *payload (valid until the
 * next call), 0 when more bytes are needed, -1 when the stream is not a valid frame stream
 * (reason in err: the connection must be closed). */
int kp_tm_conn_next(kp_tm_conn *c, kp_frame_header_t *hdr, const uint8_t **payload, char *err,
                    size_t errlen);

/* Packs `msg` into a malloc'd frame (header + payload); NULL on allocation failure.
 * @locality any thread */
uint8_t *kp_tm_frame_pack(kp_frame_type type, const ProtobufCMessage *msg, size_t *len);

#endif
