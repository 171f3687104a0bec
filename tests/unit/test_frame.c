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

/* Checkpoint messages (issue 10): a Deploy with its checkpoint config and restore path, and
 * every checkpoint frame, survive a round trip through a frame. */
static size_t frame_of(kp_frame_type type, const ProtobufCMessage *m, uint8_t *buf, size_t cap)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    cr_assert_leq(n + KP_FRAME_HEADER_SIZE, cap);
    protobuf_c_message_pack(m, buf + KP_FRAME_HEADER_SIZE);
    kp_frame_header_encode(buf, type, buf + KP_FRAME_HEADER_SIZE, (uint32_t)n);
    kp_frame_header_t hdr;
    cr_assert_eq(kp_frame_header_decode(&hdr, buf, KP_FRAME_HEADER_SIZE), KP_FRAME_OK);
    cr_assert_eq(hdr.type, type);
    cr_assert_eq(kp_frame_payload_check(&hdr, buf + KP_FRAME_HEADER_SIZE, n), KP_FRAME_OK);
    return n;
}

Test(frame, deploy_carries_checkpoint_config_and_restore_path)
{
    Kappa__Control__CheckpointConfig cc = KAPPA__CONTROL__CHECKPOINT_CONFIG__INIT;
    cc.interval_ms = 1000;
    cc.timeout_ms = 60000;
    cc.min_pause_ms = 250;
    cc.max_concurrent = 2;
    cc.tolerable_failures = 3;
    cc.retain = 4;
    cc.mode = "at_least_once";
    cc.dir = "/shared/ckpt";
    Kappa__Control__Deploy d = KAPPA__CONTROL__DEPLOY__INIT;
    d.job_id = "0123456789abcdef0123456789abcdef";
    d.attempt = 3;
    d.checkpoint = &cc;
    d.restore_path = "/shared/ckpt/0123456789abcdef0123456789abcdef/chk-7/_metadata";
    uint8_t buf[1024];
    size_t n = frame_of(KP_FRAME_DEPLOY, &d.base, buf, sizeof buf);
    Kappa__Control__Deploy *got =
        kappa__control__deploy__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(got);
    cr_assert_not_null(got->checkpoint);
    cr_assert_eq(got->checkpoint->interval_ms, 1000);
    cr_assert_eq(got->checkpoint->timeout_ms, 60000);
    cr_assert_eq(got->checkpoint->min_pause_ms, 250);
    cr_assert_eq(got->checkpoint->max_concurrent, 2);
    cr_assert_eq(got->checkpoint->tolerable_failures, 3);
    cr_assert_eq(got->checkpoint->retain, 4);
    cr_assert_str_eq(got->checkpoint->mode, "at_least_once");
    cr_assert_str_eq(got->checkpoint->dir, "/shared/ckpt");
    cr_assert_str_eq(got->restore_path, d.restore_path);
    kappa__control__deploy__free_unpacked(got, NULL);

    /* an older jobmanager's Deploy: no checkpoint config, restore path empty */
    Kappa__Control__Deploy old = KAPPA__CONTROL__DEPLOY__INIT;
    old.job_id = d.job_id;
    n = frame_of(KP_FRAME_DEPLOY, &old.base, buf, sizeof buf);
    got = kappa__control__deploy__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(got);
    cr_assert_null(got->checkpoint);
    cr_assert_str_eq(got->restore_path, "");
    kappa__control__deploy__free_unpacked(got, NULL);
}

Test(frame, checkpoint_messages_round_trip)
{
    uint8_t buf[1024];
    char *job = "0123456789abcdef0123456789abcdef";
    Kappa__Control__TriggerCheckpoint t = KAPPA__CONTROL__TRIGGER_CHECKPOINT__INIT;
    t.job_id = job;
    t.attempt = 2;
    t.checkpoint_id = 41;
    t.timestamp_ms = 1764585600123;
    size_t n = frame_of(KP_FRAME_TRIGGER_CHECKPOINT, &t.base, buf, sizeof buf);
    Kappa__Control__TriggerCheckpoint *t2 =
        kappa__control__trigger_checkpoint__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(t2);
    cr_assert_str_eq(t2->job_id, job);
    cr_assert_eq(t2->attempt, 2);
    cr_assert_eq(t2->checkpoint_id, 41);
    cr_assert_eq(t2->timestamp_ms, 1764585600123);
    kappa__control__trigger_checkpoint__free_unpacked(t2, NULL);

    Kappa__Control__AckCheckpoint a = KAPPA__CONTROL__ACK_CHECKPOINT__INIT;
    a.job_id = job;
    a.attempt = 2;
    a.checkpoint_id = 41;
    a.task_id = 5;
    a.subtask = 1;
    a.ack_json = "{\"checkpoint\":41,\"task\":5,\"subtask\":1,\"entries\":[]}";
    n = frame_of(KP_FRAME_ACK_CHECKPOINT, &a.base, buf, sizeof buf);
    Kappa__Control__AckCheckpoint *a2 =
        kappa__control__ack_checkpoint__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(a2);
    cr_assert_eq(a2->checkpoint_id, 41);
    cr_assert_eq(a2->task_id, 5);
    cr_assert_eq(a2->subtask, 1);
    cr_assert_str_eq(a2->ack_json, a.ack_json);
    kappa__control__ack_checkpoint__free_unpacked(a2, NULL);

    Kappa__Control__DeclineCheckpoint dc = KAPPA__CONTROL__DECLINE_CHECKPOINT__INIT;
    dc.job_id = job;
    dc.checkpoint_id = 42;
    dc.task_id = 0;
    dc.subtask = 3;
    dc.reason = "No space left on device";
    n = frame_of(KP_FRAME_DECLINE_CHECKPOINT, &dc.base, buf, sizeof buf);
    Kappa__Control__DeclineCheckpoint *dc2 =
        kappa__control__decline_checkpoint__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(dc2);
    cr_assert_eq(dc2->checkpoint_id, 42);
    cr_assert_eq(dc2->subtask, 3);
    cr_assert_str_eq(dc2->reason, "No space left on device");
    kappa__control__decline_checkpoint__free_unpacked(dc2, NULL);

    Kappa__Control__NotifyCheckpointComplete c = KAPPA__CONTROL__NOTIFY_CHECKPOINT_COMPLETE__INIT;
    c.job_id = job;
    c.attempt = 2;
    c.checkpoint_id = 41;
    n = frame_of(KP_FRAME_CHECKPOINT_COMPLETE, &c.base, buf, sizeof buf);
    Kappa__Control__NotifyCheckpointComplete *c2 =
        kappa__control__notify_checkpoint_complete__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(c2);
    cr_assert_eq(c2->checkpoint_id, 41);
    cr_assert_eq(c2->attempt, 2);
    kappa__control__notify_checkpoint_complete__free_unpacked(c2, NULL);

    Kappa__Control__AbortCheckpoint ab = KAPPA__CONTROL__ABORT_CHECKPOINT__INIT;
    ab.job_id = job;
    ab.checkpoint_id = 42;
    ab.reason = "expired after 60000 ms";
    n = frame_of(KP_FRAME_ABORT_CHECKPOINT, &ab.base, buf, sizeof buf);
    Kappa__Control__AbortCheckpoint *ab2 =
        kappa__control__abort_checkpoint__unpack(NULL, n, buf + KP_FRAME_HEADER_SIZE);
    cr_assert_not_null(ab2);
    cr_assert_eq(ab2->checkpoint_id, 42);
    cr_assert_str_eq(ab2->reason, "expired after 60000 ms");
    kappa__control__abort_checkpoint__free_unpacked(ab2, NULL);

    /* the first type past the checkpoint frames is still unknown */
    uint8_t hdr[KP_FRAME_HEADER_SIZE];
    kp_frame_header_t h;
    kp_frame_header_encode(hdr, KP_FRAME_TYPE_MAX_, "", 0);
    cr_assert_eq(kp_frame_header_decode(&h, hdr, sizeof hdr), KP_FRAME_ERR_TYPE);
}
