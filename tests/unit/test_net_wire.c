/* The data plane's frame encoding (runtime/net_wire.c): headers round-trip, and every kind of
 * malformed header or record table is refused with a reason before anything trusts it. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../runtime/net_wire.h"

static const kp_net_chan_id chan = {.job = "0123456789abcdef0123456789abcdef",
                                    .attempt = 3,
                                    .producer_task = 1,
                                    .producer_subtask = 2,
                                    .consumer_task = 4,
                                    .consumer_subtask = 0};

static kp_batch *data_batch(void)
{
    kp_batch *b = kp_batch_new();
    cr_assert_not_null(b);
    kp_batch_reset(b);
    kp_batch_append(b, (kp_bytes){"k", 1}, (kp_bytes){"value", 5}, 10, 9, 77);
    b->watermark = 8;
    return b;
}

Test(net_wire, batch_header_round_trips)
{
    kp_batch *b = data_batch();
    uint8_t buf[KP_NET_HEADER_MAX];
    char err[256];
    size_t len = kp_net_encode_batch(buf, &chan, b);
    cr_assert_eq(len, KP_NET_BATCH_LEN);
    cr_assert_eq(kp_net_prefix_check(buf, err, sizeof err), len);
    kp_net_header h;
    cr_assert_eq(kp_net_decode(buf, len, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(h.type, KP_NET_BATCH);
    cr_assert(kp_net_chan_eq(&h.chan, &chan));
    cr_assert_eq(h.kind, KP_MSG_DATA);
    cr_assert_eq(h.n, 1);
    cr_assert_eq(h.used, 6);
    cr_assert_eq(h.watermark, 8);
    cr_assert_eq(kp_net_check_records(b->recs, b->n, b->used, err, sizeof err), 0);
    kp_batch_free(b);
}

/* A checkpoint barrier is a control batch whose watermark field carries the checkpoint id. */
Test(net_wire, barrier_round_trips)
{
    kp_batch *b = kp_batch_new();
    cr_assert_not_null(b);
    kp_batch_reset(b);
    b->kind = KP_MSG_BARRIER;
    b->watermark = 123456789012LL;
    uint8_t buf[KP_NET_HEADER_MAX];
    char err[256];
    size_t len = kp_net_encode_batch(buf, &chan, b);
    kp_net_header h;
    cr_assert_eq(kp_net_decode(buf, len, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(h.kind, KP_MSG_BARRIER);
    cr_assert_eq(h.n, 0);
    cr_assert_eq(h.watermark, 123456789012LL);
    kp_batch_free(b);
}

Test(net_wire, credit_and_hello_round_trip)
{
    uint8_t buf[KP_NET_HEADER_MAX];
    char err[256];
    kp_net_header h;
    size_t len = kp_net_encode_credit(buf, &chan, 4);
    cr_assert_eq(kp_net_decode(buf, len, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(h.type, KP_NET_CREDIT);
    cr_assert_eq(h.count, 4);
    cr_assert(kp_net_chan_eq(&h.chan, &chan));
    len = kp_net_encode_hello(buf, "10.0.0.2:6124");
    cr_assert_eq(kp_net_decode(buf, len, &h, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(h.address, "10.0.0.2:6124");
}

static void expect_refused(const uint8_t *buf, size_t len, const char *reason)
{
    char err[256] = "";
    kp_net_header h;
    cr_assert_eq(kp_net_decode(buf, len, &h, err, sizeof err), -1);
    cr_assert(strstr(err, reason), "'%s' does not mention '%s'", err, reason);
}

/* Re-encodes a batch header with one field (kind, n or used: byte offset 0, 4, 8) changed and a
 * valid checksum, as a buggy or hostile peer that computes checksums would send it. */
static void patch(uint8_t *buf, size_t off, uint32_t v)
{
    kp_net_header h;
    char err[256];
    cr_assert_eq(kp_net_decode(buf, KP_NET_BATCH_LEN, &h, err, sizeof err), 0);
    kp_batch *b = kp_batch_new();
    kp_batch_reset(b);
    b->kind = h.kind;
    b->n = h.n;
    b->used = h.used;
    b->watermark = h.watermark;
    if (off == 0)
        b->kind = (kp_msg_kind)v;
    else if (off == 4)
        b->n = v;
    else
        b->used = v;
    kp_net_encode_batch(buf, &h.chan, b);
    kp_batch_free(b);
}

Test(net_wire, malformed_headers_are_refused)
{
    kp_batch *b = data_batch();
    uint8_t good[KP_NET_HEADER_MAX], buf[KP_NET_HEADER_MAX];
    kp_net_encode_batch(good, &chan, b);

    memcpy(buf, good, sizeof buf);
    buf[0] ^= 0xff;
    expect_refused(buf, KP_NET_BATCH_LEN, "magic");
    memcpy(buf, good, sizeof buf);
    buf[4] = 9;
    expect_refused(buf, KP_NET_BATCH_LEN, "version");
    memcpy(buf, good, sizeof buf);
    buf[5] = 42;
    expect_refused(buf, KP_NET_BATCH_LEN, "unknown frame type");
    memcpy(buf, good, sizeof buf);
    buf[6] = 200;
    expect_refused(buf, KP_NET_BATCH_LEN, "header");
    memcpy(buf, good, sizeof buf);
    buf[KP_NET_PREFIX + 3] ^= 1; /* a flipped bit in the channel id */
    expect_refused(buf, KP_NET_BATCH_LEN, "checksum");

    memcpy(buf, good, sizeof buf);
    patch(buf, 4, KP_BATCH_RECORDS + 1);
    expect_refused(buf, KP_NET_BATCH_LEN, "exceeds");
    memcpy(buf, good, sizeof buf);
    patch(buf, 8, KP_BATCH_ARENA + 1);
    expect_refused(buf, KP_NET_BATCH_LEN, "exceeds");
    memcpy(buf, good, sizeof buf);
    patch(buf, 0, 99);
    expect_refused(buf, KP_NET_BATCH_LEN, "unknown kind");
    memcpy(buf, good, sizeof buf);
    patch(buf, 0, KP_MSG_END); /* an END that carries records */
    expect_refused(buf, KP_NET_BATCH_LEN, "control batch");
    memcpy(buf, good, sizeof buf);
    patch(buf, 0, KP_MSG_BARRIER); /* a barrier that carries records */
    expect_refused(buf, KP_NET_BATCH_LEN, "control batch");
    memcpy(buf, good, sizeof buf);
    patch(buf, 0, KP_MSG_BARRIER + 1);
    expect_refused(buf, KP_NET_BATCH_LEN, "unknown kind");
    kp_batch_free(b);
}

Test(net_wire, records_outside_the_arena_are_refused)
{
    kp_batch *b = data_batch();
    char err[256];
    b->recs[0].val_len = 6; /* 1 + 6 > 6 used bytes */
    cr_assert_eq(kp_net_check_records(b->recs, b->n, b->used, err, sizeof err), -1);
    cr_assert(strstr(err, "outside"), "%s", err);
    b->recs[0].val_len = 5;
    b->recs[0].key_off = UINT32_MAX; /* would wrap in 32-bit arithmetic */
    cr_assert_eq(kp_net_check_records(b->recs, b->n, b->used, err, sizeof err), -1);
    kp_batch_free(b);
}

Test(net_wire, zero_and_oversized_credit_grants_are_refused)
{
    uint8_t buf[KP_NET_HEADER_MAX];
    size_t len = kp_net_encode_credit(buf, &chan, 0);
    expect_refused(buf, len, "credit grant");
    len = kp_net_encode_credit(buf, &chan, KP_BATCH_RECORDS + 1);
    expect_refused(buf, len, "credit grant");
}
