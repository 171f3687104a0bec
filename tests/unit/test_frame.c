/* Control-plane framing: round trips, and every kind of bad header is rejected before any
 * payload is decoded. */
#include <criterion/criterion.h>
#include <string.h>

#include "frame.h"
#include "control.pb-c.h"

Test(frame, hello_round_trip)
{
    Kappa__Control__Hello hello = KAPPA__CONTROL__HELLO__INIT;
    hello.role = KAPPA__CONTROL__HELLO__ROLE__ROLE_TASKMANAGER;
    hello.instance_id = "tm-1";
    hello.slots = 4;
    uint8_t buf[256];
    size_t n = kappa__control__hello__pack(&hello, buf + KP_FRAME_HEADER_SIZE);
    kp_frame_header_encode(buf, KP_FRAME_HELLO, buf + KP_FRAME_HEADER_SIZE, (uint32_t)n);

    kp_frame_header_t hdr;
    cr_assert_eq(kp_frame_header_decode(&hdr, buf, KP_FRAME_HEADER_SIZE), KP_FRAME_OK);
    cr_assert_eq(hdr.type, KP_FRAME_HELLO);
    cr_assert_eq(hdr.length, n);
    cr_assert_eq(kp_frame_payload_check(&hdr, buf + KP_FRAME_HEADER_SIZE, n), KP_FRAME_OK);
    Kappa__Control__Hello *got = kappa__control__hello__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(got);
    cr_assert_str_eq(got->instance_id, "tm-1");
    cr_assert_eq(got->slots, 4);
    kappa__control__hello__free_unpacked(got, NULL);
}

Test(frame, rejects_bad_headers)
{
    uint8_t buf[KP_FRAME_HEADER_SIZE];
    kp_frame_header_t hdr;
    kp_frame_header_encode(buf, KP_FRAME_HEARTBEAT, "", 0);
    cr_assert_eq(kp_frame_header_decode(&hdr, buf, 5), KP_FRAME_ERR_SHORT);

    uint8_t bad[KP_FRAME_HEADER_SIZE];
    memcpy(bad, "GET / HTTP/1.1\r\n", KP_FRAME_HEADER_SIZE);
    cr_assert_eq(kp_frame_header_decode(&hdr, bad, sizeof bad), KP_FRAME_ERR_MAGIC);

    memcpy(bad, buf, sizeof bad);
    bad[5] = 9;
    cr_assert_eq(kp_frame_header_decode(&hdr, bad, sizeof bad), KP_FRAME_ERR_VERSION);

    memcpy(bad, buf, sizeof bad);
    bad[7] = 0;
    cr_assert_eq(kp_frame_header_decode(&hdr, bad, sizeof bad), KP_FRAME_ERR_TYPE);

    memcpy(bad, buf, sizeof bad);
    bad[8] = 0xff;
    cr_assert_eq(kp_frame_header_decode(&hdr, bad, sizeof bad), KP_FRAME_ERR_TOO_LARGE);
    cr_assert_str_eq(kp_frame_strerror(KP_FRAME_ERR_TOO_LARGE),
                     "frame larger than the 64 MiB limit");
}

Test(frame, detects_corrupt_payload)
{
    uint8_t buf[KP_FRAME_HEADER_SIZE];
    char payload[] = "abcdef";
    kp_frame_header_encode(buf, KP_FRAME_HEARTBEAT, payload, 6);
    kp_frame_header_t hdr;
    cr_assert_eq(kp_frame_header_decode(&hdr, buf, sizeof buf), KP_FRAME_OK);
    payload[2] = 'X';
    cr_assert_eq(kp_frame_payload_check(&hdr, payload, 6), KP_FRAME_ERR_CHECKSUM);
    cr_assert_eq(kp_frame_payload_check(&hdr, payload, 5), KP_FRAME_ERR_SHORT);
    /* RFC 3720 check value */
    cr_assert_eq(kp_crc32c(0, "123456789", 9), 0xe3069283u);
}

/* The bit-at-a-time CRC-32C the compile-time table in frame.c must agree with. */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

Test(frame, crc_table_matches_bitwise_crc)
{
    /* Every single byte exercises every table entry once. */
    for (unsigned b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        cr_assert_eq(kp_crc32c(0, &byte, 1), crc32c_bitwise(0, &byte, 1), "byte 0x%02x", b);
    }
    uint8_t buf[4096];
    uint32_t x = 2463534242u; /* fixed xorshift stream: deterministic content */
    for (size_t i = 0; i < sizeof buf; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
    cr_assert_eq(kp_crc32c(0, buf, sizeof buf), crc32c_bitwise(0, buf, sizeof buf));
    /* Chaining: the CRC of a buffer equals the CRC continued over its two halves. */
    cr_assert_eq(kp_crc32c(kp_crc32c(0, buf, 1000), buf + 1000, sizeof buf - 1000),
                 kp_crc32c(0, buf, sizeof buf));
}
