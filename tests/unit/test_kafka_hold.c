/* The transactional Kafka sink's kept records (connectors/kafka_hold.c), without a broker:
 * records (documents and dead letters) come back in order with their segments' checkpoints,
 * a reset keeps nothing, a view reads encoded records, and the checkpoint state round-trips
 * while a wrong or truncated one is refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "kafka_hold.h"

static kp_kafka_held doc(const char *id, const char *v, kp_time ts)
{
    return (kp_kafka_held){.key = {id, strlen(id)}, .value = {v, strlen(v)}, .ts = ts};
}

Test(kafka_hold, records_and_segments_in_order)
{
    kp_kafka_hold h = {0};
    char id[16], v[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(v, sizeof v, "{\"n\":%d}", i);
        cr_assert_eq(kp_kafka_hold_add(&h, &(kp_kafka_held){.key = {id, strlen(id)},
                                                            .value = {v, strlen(v)},
                                                            .ts = 1000 + i}),
                     0);
        if (i == 399)
            cr_assert_eq(kp_kafka_hold_close(&h, 7, 70), 0);
        if (i == 799) {
            cr_assert_eq(kp_kafka_hold_close(&h, 8, 80), 0);
            cr_assert_eq(kp_kafka_hold_close(&h, 9, 90), 0); /* an empty segment */
        }
    }
    kp_kafka_held dl = doc("k", "raw bytes", 5);
    dl.origin = "topic-a";
    dl.error = "bad json";
    dl.partition = 3;
    dl.offset = 42;
    cr_assert_eq(kp_kafka_hold_add(&h, &dl), 0);
    cr_expect_eq(h.records, 1001);
    cr_expect_gt(kp_kafka_hold_bytes(&h), 0);
    kp_kafka_held r;
    int64_t ckpt, seq;
    int n = 0, rc;
    int64_t seen[3];
    int nseen = 0;
    while ((rc = kp_kafka_hold_next(&h, &r, &ckpt, &seq)) != 0) {
        if (rc == 2) {
            cr_expect_eq(seq, 10 * ckpt);
            cr_assert_lt(nseen, 3);
            seen[nseen++] = ckpt;
            cr_expect_eq(n, nseen == 1 ? 400 : 800, "segment %lld ends after %d", (long long)ckpt,
                         n);
            continue;
        }
        if (n < 1000) {
            snprintf(id, sizeof id, "id-%d", n);
            cr_assert_eq(r.key.len, strlen(id));
            cr_assert(!memcmp(r.key.ptr, id, r.key.len));
            cr_assert_eq(r.ts, 1000 + n);
            cr_assert_null(r.origin);
        } else {
            cr_expect_str_eq(r.origin, "topic-a");
            cr_expect_str_eq(r.error, "bad json");
            cr_expect_eq(r.partition, 3);
            cr_expect_eq(r.offset, 42);
            cr_expect_eq(r.value.len, 9);
        }
        n++;
    }
    cr_expect_eq(n, 1001);
    cr_expect_eq(nseen, 3);
    cr_expect(seen[0] == 7 && seen[1] == 8 && seen[2] == 9);
    cr_expect_eq(kp_kafka_hold_bytes(&h), 0);
    cr_expect_eq(h.records, 0);
    /* empty again: reusable */
    cr_assert_eq(kp_kafka_hold_add(&h, &(kp_kafka_held){.key = {"a", 1}, .value = {"b", 1}}), 0);
    kp_kafka_hold_reset(&h);
    cr_expect_eq(kp_kafka_hold_next(&h, &r, &ckpt, &seq), 0);
    kp_kafka_hold_free(&h);
}

Test(kafka_hold, checkpoint_state_round_trip)
{
    kp_kafka_hold j1 = {0}, j2 = {0};
    for (int i = 0; i < 10; i++)
        kp_kafka_hold_add(i < 6 ? &j1 : &j2, &(kp_kafka_held){.key = {"k", 1}, .value = {"v", 1}});
    kp_buf b = {0};
    cr_assert_eq(kp_kafka_txstate_begin(&b, "job-uid-3", 4), 0);
    cr_assert_eq(kp_kafka_txstate_add(&b, 11, j1.buf.ptr, j1.buf.len), 0);
    cr_assert_eq(kp_kafka_txstate_add(&b, 12, j2.buf.ptr, j2.buf.len), 0);
    cr_assert_eq(kp_kafka_txstate_add(&b, 13, NULL, 0), 0);
    kp_kafka_txstate t;
    cr_assert_eq(kp_kafka_txstate_open(&t, b.ptr, b.len), 0);
    cr_expect_str_eq(t.base, "job-uid-3");
    cr_expect_eq(t.npool, 4);
    cr_expect_eq(t.n, 3);
    int64_t ckpt;
    const void *recs;
    size_t len;
    int counts[3] = {0}, e = 0;
    while (kp_kafka_txstate_next(&t, &ckpt, &recs, &len) == 1) {
        cr_assert_lt(e, 3);
        cr_expect_eq(ckpt, 11 + e);
        kp_kafka_hold view;
        kp_kafka_hold_view(&view, recs, len);
        kp_kafka_held r;
        int64_t none, none2;
        while (kp_kafka_hold_next(&view, &r, &none, &none2) == 1)
            counts[e]++;
        e++;
    }
    cr_expect(counts[0] == 6 && counts[1] == 4 && counts[2] == 0);
    /* truncated: the last entry's records cut short */
    cr_assert_eq(kp_kafka_txstate_open(&t, b.ptr, b.len - 20 - 16), 0);
    int rc;
    while ((rc = kp_kafka_txstate_next(&t, &ckpt, &recs, &len)) == 1)
        ;
    cr_expect_eq(rc, -1, "a truncated state was read to its end");
    /* not a state at all */
    cr_expect_eq(kp_kafka_txstate_open(&t, "not a kafka state", 17), -1);
    cr_expect_eq(kp_kafka_txstate_open(&t, b.ptr, 6), -1);
    kp_buf_free(&b);
    kp_kafka_hold_free(&j1);
    kp_kafka_hold_free(&j2);
}
