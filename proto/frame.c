/* Control-plane frame header encoding and validation; see frame.h for the layout. */
#include "frame.h"

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint32_t kp_crc32c(uint32_t crc, const void *data, size_t len)
{
    static uint32_t table[256];
    static int ready; /* benign race: every thread computes the same table */
    const uint8_t *p = data;

    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
            __atomic_store_n(&table[i], c, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    crc = ~crc;
    while (len--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void kp_frame_header_encode(uint8_t out[KP_FRAME_HEADER_SIZE], kp_frame_type type,
                            const void *payload, uint32_t len)
{
    put_be32(out, KP_FRAME_MAGIC);
    put_be16(out + 4, KP_FRAME_VERSION);
    put_be16(out + 6, (uint16_t)type);
    put_be32(out + 8, len);
    put_be32(out + 12, kp_crc32c(0, payload, len));
}

kp_frame_err kp_frame_header_decode(kp_frame_header_t *hdr, const uint8_t *buf, size_t len)
{
    if (len < KP_FRAME_HEADER_SIZE)
        return KP_FRAME_ERR_SHORT;
    if (get_be32(buf) != KP_FRAME_MAGIC)
        return KP_FRAME_ERR_MAGIC;
    hdr->version = get_be16(buf + 4);
    hdr->type = get_be16(buf + 6);
    hdr->length = get_be32(buf + 8);
    hdr->crc32c = get_be32(buf + 12);
    if (hdr->version != KP_FRAME_VERSION)
        return KP_FRAME_ERR_VERSION;
    if (hdr->type == 0 || hdr->type >= KP_FRAME_TYPE_MAX_)
        return KP_FRAME_ERR_TYPE;
    if (hdr->length > KP_FRAME_MAX_PAYLOAD)
        return KP_FRAME_ERR_TOO_LARGE;
    return KP_FRAME_OK;
}

kp_frame_err kp_frame_payload_check(const kp_frame_header_t *hdr, const void *payload, size_t len)
{
    if (len != hdr->length)
        return KP_FRAME_ERR_SHORT;
    if (kp_crc32c(0, payload, len) != hdr->crc32c)
        return KP_FRAME_ERR_CHECKSUM;
    return KP_FRAME_OK;
}

const char *kp_frame_strerror(kp_frame_err err)
{
    switch (err) {
    case KP_FRAME_OK:
        return "ok";
    case KP_FRAME_ERR_SHORT:
        return "truncated frame";
    case KP_FRAME_ERR_MAGIC:
        return "bad magic: the peer is not a kappa control connection";
    case KP_FRAME_ERR_VERSION:
        return "unsupported protocol version: upgrade the older side";
    case KP_FRAME_ERR_TYPE:
        return "unknown message type";
    case KP_FRAME_ERR_TOO_LARGE:
        return "frame larger than the 64 MiB limit";
    case KP_FRAME_ERR_CHECKSUM:
        return "payload checksum mismatch";
    }
    return "unknown frame error";
}
