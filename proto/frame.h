/* Framing for control-plane connections.
 *
 * Every message travels as a 16-byte header followed by a protobuf-c payload:
 *
 *   offset  size  field
 *   0       4     magic     "KAPA" (0x4b415041, big endian)
 *   4       2     version   KP_FRAME_VERSION (big endian)
 *   6       2     type      kp_frame_type (big endian)
 *   8       4     length    payload bytes (big endian), at most KP_FRAME_MAX_PAYLOAD
 *   12      4     crc32c    of the payload (big endian)
 *
 * A receiver validates the header (kp_frame_header_decode) before reading the payload and
 * the checksum (kp_frame_payload_check) before handing it to protobuf-c, so a stray client,
 * a truncated write or a different protocol version is rejected with a clear error instead of
 * being decoded. */
#ifndef KP_FRAME_H
#define KP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define KP_FRAME_MAGIC       0x4b415041u
#define KP_FRAME_VERSION     1u
#define KP_FRAME_HEADER_SIZE 16u
#define KP_FRAME_MAX_PAYLOAD (64u * 1024u * 1024u)

typedef enum kp_frame_type {
    KP_FRAME_HELLO = 1,
    KP_FRAME_HEARTBEAT = 2,
    KP_FRAME_REGISTER_ACK = 3,         /* JM → TM */
    KP_FRAME_DEPLOY = 4,               /* JM → TM */
    KP_FRAME_PLUGIN_REQUEST = 5,       /* TM → JM */
    KP_FRAME_PLUGIN_DATA = 6,          /* JM → TM */
    KP_FRAME_CANCEL = 7,               /* JM → TM */
    KP_FRAME_TASK_STATE = 8,           /* TM → JM */
    KP_FRAME_METRICS = 9,              /* TM → JM */
    KP_FRAME_TRIGGER_CHECKPOINT = 10,  /* JM → TM */
    KP_FRAME_ACK_CHECKPOINT = 11,      /* TM → JM */
    KP_FRAME_DECLINE_CHECKPOINT = 12,  /* TM → JM */
    KP_FRAME_CHECKPOINT_COMPLETE = 13, /* JM → TM: NotifyCheckpointComplete */
    KP_FRAME_ABORT_CHECKPOINT = 14,    /* JM → TM */
    KP_FRAME_TYPE_MAX_                 /* first unused value */
} kp_frame_type;

typedef struct kp_frame_header_t {
    uint16_t version;
    uint16_t type;
    uint32_t length;
    uint32_t crc32c;
} kp_frame_header_t;

typedef enum kp_frame_err {
    KP_FRAME_OK = 0,
    KP_FRAME_ERR_SHORT,     /* fewer than KP_FRAME_HEADER_SIZE bytes */
    KP_FRAME_ERR_MAGIC,     /* not a kappa control connection */
    KP_FRAME_ERR_VERSION,   /* peer speaks another protocol version */
    KP_FRAME_ERR_TYPE,      /* unknown message type */
    KP_FRAME_ERR_TOO_LARGE, /* length above KP_FRAME_MAX_PAYLOAD */
    KP_FRAME_ERR_CHECKSUM,  /* payload does not match its crc32c */
} kp_frame_err;

/* Writes the header for a payload of `len` bytes into `out`. Thread-safe, no locks. */
void kp_frame_header_encode(uint8_t out[KP_FRAME_HEADER_SIZE], kp_frame_type type,
                            const void *payload, uint32_t len);

/* Parses and validates a header. On error `hdr` is unspecified. Thread-safe, no locks. */
kp_frame_err kp_frame_header_decode(kp_frame_header_t *hdr, const uint8_t *buf, size_t len);

/* Checks the payload against the header's length and checksum. */
kp_frame_err kp_frame_payload_check(const kp_frame_header_t *hdr, const void *payload, size_t len);

/* A static, human-readable description of `err`. */
const char *kp_frame_strerror(kp_frame_err err);

/* CRC-32C (Castagnoli), software table implementation. */
uint32_t kp_crc32c(uint32_t crc, const void *data, size_t len);

#endif
