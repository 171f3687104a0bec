/*
 * The Kafka source (connectors/kafka_source.c) and sink against librdkafka's mock cluster:
 * no broker process, so these run in milliseconds and can set up exact offsets and
 * timestamps.
 *
 * Each test gets a fresh mock cluster with topic "t" of T_PARTS partitions holding
 * T_PER_PART records per partition: value "P:I", key "kP-I", timestamp T_TS(P, I), offsets
 * 0..T_PER_PART-1. Readers are opened through the connector registry exactly as the engine
 * does. Covered: every start mode (earliest, latest, group with both fallbacks, explicit
 * offsets, timestamp), manual partition assignment across p = 1..3 subtasks, offsets() and
 * stats(), stop_at=end, the open-time errors (no brokers option, unreachable broker, missing
 * topic), and the sink's round trip and dead-letter headers; ended() (stop_at=end, by offset)
 * and caught_up() (at the high watermark of the last fetch, not before the first one, and no
 * longer once new records were fetched); the memory_mb option; and a sink whose broker is
 * down failing write() and flush() with "cancelled" once the cancellation probe says so, and
 * its tick() reporting a message that could not be delivered.
 *
 * Limitation: the mock cluster of librdkafka 2.0 does not implement ListOffsets by timestamp
 * (it answers "no such offset"), so here start=timestamp can only be checked for the
 * "nothing at or after T: start at the end" case; tests/integration/test_kafka_connectors.c
 * checks real timestamp lookups against a real broker.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../../runtime/connector.h"
#include "connectors.h"

#define T_PARTS    3
#define T_PER_PART 10
#define T_TS(p, i) (1700000000000LL + (int64_t)(i)*1000 + (p))

static rd_kafka_t *t_host; /* owns the mock cluster */
static rd_kafka_mock_cluster_t *t_mock;
static char t_brokers[256];

static void t_produce(const char *topic, int32_t part, int from, int to)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", t_brokers, err, sizeof err),
                 RD_KAFKA_CONF_OK);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    for (int i = from; i < to; i++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "k%d-%d", part, i);
        snprintf(val, sizeof val, "%d:%d", part, i);
        rd_kafka_resp_err_t e =
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, strlen(val)),
                              RD_KAFKA_V_TIMESTAMP(T_TS(part, i)), RD_KAFKA_V_END);
        cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
    }
    cr_assert_eq(rd_kafka_flush(p, 10000), 0, "flush to the mock cluster timed out");
    rd_kafka_destroy(p);
}

static void t_setup(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
    t_host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(t_host, "%s", err);
    t_mock = rd_kafka_mock_cluster_new(t_host, 1);
    cr_assert_not_null(t_mock);
    snprintf(t_brokers, sizeof t_brokers, "%s", rd_kafka_mock_cluster_bootstraps(t_mock));
    cr_assert_eq(rd_kafka_mock_topic_create(t_mock, "t", T_PARTS, 1), 0);
    cr_assert_eq(rd_kafka_mock_topic_create(t_mock, "seven", 7, 1), 0);
    for (int p = 0; p < T_PARTS; p++)
        t_produce("t", p, 0, T_PER_PART);
    kp_connectors_register_builtin();
}

static void t_teardown(void)
{
    rd_kafka_mock_cluster_destroy(t_mock);
    rd_kafka_destroy(t_host);
}

TestSuite(kafka_source, .init = t_setup, .fini = t_teardown, .timeout = 60);

/* ---- helpers ---- */

static kp_source_reader *t_open_at(const char *query, int subtask, int parallelism, char *err,
                                   size_t errlen)
{
    static char uri[1024];
    snprintf(uri, sizeof uri, "kafka:%s", query);
    kp_endpoint ep = {.name = "clicks", .uri = uri, .subtask = subtask, .parallelism = parallelism};
    const kp_connector *c = kp_connector_find(uri);
    cr_assert_not_null(c, "no kafka connector registered");
    return c->open_source(&ep, err, errlen);
}

/* Opens kafka:t with `opts` (appended after brokers). */
static kp_source_reader *t_open(const char *opts, int subtask, int parallelism)
{
    char q[1024], err[512] = "";
    snprintf(q, sizeof q, "t?brokers=%s%s%s", t_brokers, *opts ? "&" : "", opts);
    kp_source_reader *r = t_open_at(q, subtask, parallelism, err, sizeof err);
    cr_assert_not_null(r, "open kafka:%s: %s", q, err);
    return r;
}

typedef struct rec {
    int32_t part;
    int64_t off, ts;
    char key[32], val[32];
} rec;

/* Reads until EOF (bounded readers) or until `want` records or `ms` pass. */
static int t_read(kp_source_reader *r, rec *out, int cap, int want, int ms, int *eof)
{
    kp_raw raws[64];
    char err[512];
    int n = 0;
    *eof = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int got = 0;
        kp_poll_rc rc = r->poll(r, raws, 64, &got, 50, err, sizeof err);
        cr_assert_neq(rc, KP_POLL_ERROR, "poll: %s", err);
        if (rc == KP_POLL_EOF) {
            *eof = 1;
            return n;
        }
        for (int i = 0; i < got; i++) {
            cr_assert_lt(n, cap, "more records than expected");
            out[n] = (rec){.part = raws[i].partition, .off = raws[i].offset, .ts = raws[i].ts};
            snprintf(out[n].key, sizeof out[n].key, "%.*s", (int)raws[i].key.len, raws[i].key.ptr);
            snprintf(out[n].val, sizeof out[n].val, "%.*s", (int)raws[i].value.len,
                     raws[i].value.ptr);
            n++;
        }
        if (want >= 0 && n >= want)
            return n;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > ms)
            return n;
    }
}

/* Reads a stop_at=end reader to EOF; returns the count. */
static int t_read_all(kp_source_reader *r, rec *out, int cap)
{
    int eof;
    int n = t_read(r, out, cap, -1, 20000, &eof);
    cr_assert(eof, "stop_at=end did not reach EOF in 20 s (got %d records)", n);
    return n;
}

/* First offset read per partition (-1 = none) and the count per partition. */
static void t_firsts(const rec *rs, int n, int64_t *first, int *count)
{
    for (int p = 0; p < T_PARTS; p++) {
        first[p] = -1;
        count[p] = 0;
    }
    for (int i = 0; i < n; i++) {
        cr_assert(rs[i].part >= 0 && rs[i].part < T_PARTS);
        if (first[rs[i].part] < 0)
            first[rs[i].part] = rs[i].off;
        else
            cr_assert_eq(rs[i].off, rs[i].off, "");
        count[rs[i].part]++;
    }
}

/* ---- start modes ---- */

Test(kafka_source, earliest_reads_everything_with_keys_timestamps_offsets)
{
    kp_source_reader *r = t_open("start=earliest&stop_at=end", 0, 1);
    rec rs[64];
    int n = t_read_all(r, rs, 64);
    cr_assert_eq(n, T_PARTS * T_PER_PART);
    int64_t next[T_PARTS] = {0};
    for (int i = 0; i < n; i++) {
        int p = rs[i].part;
        cr_assert_eq(rs[i].off, next[p], "partition %d: offset %" PRId64 " after %" PRId64, p,
                     rs[i].off, next[p] - 1);
        char want[32];
        snprintf(want, sizeof want, "%d:%d", p, (int)rs[i].off);
        cr_assert_str_eq(rs[i].val, want);
        snprintf(want, sizeof want, "k%d-%d", p, (int)rs[i].off);
        cr_assert_str_eq(rs[i].key, want);
        cr_assert_eq(rs[i].ts, T_TS(p, rs[i].off), "timestamp of %s", rs[i].val);
        next[p]++;
    }
    /* offsets() = next offset per owned partition */
    kp_offset offs[8];
    cr_assert_eq(r->offsets(r, offs, 8), T_PARTS);
    for (int i = 0; i < T_PARTS; i++)
        cr_assert_eq(offs[i].offset, T_PER_PART, "partition %d at %" PRId64, offs[i].partition,
                     offs[i].offset);
    char stats[1024];
    r->stats(r, stats, sizeof stats);
    cr_assert(strstr(stats, "\"records\":30") != NULL, "stats: %s", stats);
    cr_assert(strstr(stats, "\"partition\":2,\"offset\":10") != NULL, "stats: %s", stats);
    r->close(r);
}

Test(kafka_source, default_start_is_earliest)
{
    kp_source_reader *r = t_open("stop_at=end", 0, 1);
    rec rs[64];
    cr_assert_eq(t_read_all(r, rs, 64), T_PARTS * T_PER_PART);
    r->close(r);
}

Test(kafka_source, latest_reads_only_new_records)
{
    kp_source_reader *r = t_open("start=latest", 0, 1);
    kp_offset offs[8];
    cr_assert_eq(r->offsets(r, offs, 8), T_PARTS);
    for (int i = 0; i < T_PARTS; i++)
        cr_assert_eq(offs[i].offset, T_PER_PART, "latest resolves to the end at open");
    rec rs[64];
    int eof;
    cr_assert_eq(t_read(r, rs, 64, -1, 500, &eof), 0, "old records read with start=latest");
    cr_assert(!eof, "an unbounded Kafka source reported EOF");
    t_produce("t", 1, T_PER_PART, T_PER_PART + 2);
    int n = t_read(r, rs, 64, 2, 10000, &eof);
    cr_assert_eq(n, 2);
    cr_assert_eq(rs[0].part, 1);
    cr_assert_eq(rs[0].off, T_PER_PART);
    cr_assert_eq(rs[1].off, T_PER_PART + 1);
    r->close(r);
    /* latest + stop_at=end: nothing to read, EOF at once */
    r = t_open("start=latest&stop_at=end", 0, 1);
    cr_assert_eq(t_read_all(r, rs, 64), 0);
    r->close(r);
}

Test(kafka_source, explicit_offsets_and_fallbacks)
{
    kp_source_reader *r = t_open("start=offsets:0=7,2=9&stop_at=end", 0, 1);
    rec rs[64];
    int64_t first[T_PARTS];
    int count[T_PARTS];
    t_firsts(rs, t_read_all(r, rs, 64), first, count);
    cr_assert_eq(first[0], 7);
    cr_assert_eq(count[0], 3);
    cr_assert_eq(first[1], 0, "partition without an explicit offset uses fallback=earliest");
    cr_assert_eq(count[1], T_PER_PART);
    cr_assert_eq(first[2], 9);
    cr_assert_eq(count[2], 1);
    r->close(r);
    r = t_open("start=offsets:1=4&fallback=latest&stop_at=end", 0, 1);
    t_firsts(rs, t_read_all(r, rs, 64), first, count);
    cr_assert_eq(count[0], 0);
    cr_assert_eq(first[1], 4);
    cr_assert_eq(count[1], 6);
    cr_assert_eq(count[2], 0);
    r->close(r);
}

/* A restored source (kp_endpoint.restore_offsets, checkpoints): an owned partition's
 * restored position wins over the start mode, others start as it says; positions of
 * partitions another subtask owns are ignored; offsets() reports where it now stands. */
Test(kafka_source, restore_offsets_win_over_the_start_mode)
{
    static char uri[1024];
    snprintf(uri, sizeof uri, "kafka:t?brokers=%s&start=latest&stop_at=end", t_brokers);
    kp_offset restore[] = {{0, 6}, {2, 9}, {1, 3}};
    kp_endpoint ep = {.name = "clicks",
                      .uri = uri,
                      .subtask = 0,
                      .parallelism = 2, /* owns partitions 0 and 2 of 3 */
                      .restore_offsets = restore,
                      .nrestore_offsets = 3};
    char err[512] = "";
    kp_source_reader *r = kp_connector_find(uri)->open_source(&ep, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    kp_offset at[8];
    int n = r->offsets(r, at, 8);
    cr_assert_eq(n, 2);
    for (int i = 0; i < n; i++)
        cr_assert_eq(at[i].offset, at[i].partition == 0 ? 6 : 9, "partition %d at %lld",
                     at[i].partition, (long long)at[i].offset);
    rec rs[64];
    int64_t first[T_PARTS];
    int count[T_PARTS];
    t_firsts(rs, t_read_all(r, rs, 64), first, count);
    cr_assert_eq(first[0], 6);
    cr_assert_eq(count[0], T_PER_PART - 6);
    cr_assert_eq(first[2], 9);
    cr_assert_eq(count[2], T_PER_PART - 9);
    cr_assert_eq(count[1], 0, "partition 1 is subtask 1's");
    n = r->offsets(r, at, 8);
    for (int i = 0; i < n; i++)
        cr_assert_eq(at[i].offset, T_PER_PART, "partition %d ends at %lld", at[i].partition,
                     (long long)at[i].offset);
    r->close(r);
}

Test(kafka_source, group_resumes_from_committed_offsets)
{
    kp_source_reader *r = t_open("group=g1", 0, 1);
    kp_offset offs[2] = {{0, 3}, {1, 5}};
    char err[512];
    cr_assert_eq(r->commit(r, offs, 2, err, sizeof err), 0, "commit: %s", err);
    r->close(r); /* waits for the asynchronous commit */
    rec rs[64];
    int64_t first[T_PARTS];
    int count[T_PARTS];
    r = t_open("group=g1&start=group&fallback=latest&stop_at=end", 0, 1);
    t_firsts(rs, t_read_all(r, rs, 64), first, count);
    cr_assert_eq(first[0], 3);
    cr_assert_eq(count[0], 7);
    cr_assert_eq(first[1], 5);
    cr_assert_eq(count[1], 5);
    cr_assert_eq(count[2], 0, "no commit + fallback=latest reads nothing");
    r->close(r);
    r = t_open("group=g1&start=group&stop_at=end", 0, 1); /* fallback defaults to earliest */
    t_firsts(rs, t_read_all(r, rs, 64), first, count);
    cr_assert_eq(first[0], 3);
    cr_assert_eq(first[2], 0);
    cr_assert_eq(count[2], T_PER_PART);
    r->close(r);
    /* another group has no commits at all */
    r = t_open("group=other&start=group&fallback=latest&stop_at=end", 0, 1);
    cr_assert_eq(t_read_all(r, rs, 64), 0);
    r->close(r);
}

Test(kafka_source, timestamp_after_everything_starts_at_the_end)
{
    kp_source_reader *r = t_open("start=timestamp:1900000000000&stop_at=end", 0, 1);
    rec rs[64];
    cr_assert_eq(t_read_all(r, rs, 64), 0);
    r->close(r);
}

/* The start position as `kappa run --local` and `kappa submit` pass it: connector conf entries
 * (kafka.start=..., --from-group-offsets / --from-timestamp), not URI options. */
Test(kafka_source, start_from_conf_as_the_cli_passes_it)
{
    kp_source_reader *r = t_open("group=g2", 0, 1);
    kp_offset offs[1] = {{1, 4}};
    char err[512] = "", uri[512];
    cr_assert_eq(r->commit(r, offs, 1, err, sizeof err), 0, "commit: %s", err);
    r->close(r);
    snprintf(uri, sizeof uri, "kafka:t?brokers=%s&stop_at=end", t_brokers);
    const char *group[] = {"kafka.start=group", "kafka.group=g2", "kafka.fallback=latest", NULL};
    const char *late[] = {"kafka.start=timestamp:1900000000000", NULL};
    const char *const *confs[] = {group, late};
    int want[] = {T_PER_PART - 4, 0};
    for (int i = 0; i < 2; i++) {
        kp_endpoint ep = {.name = "clicks", .uri = uri, .parallelism = 1, .conf = confs[i]};
        r = kp_connector_find(uri)->open_source(&ep, err, sizeof err);
        cr_assert_not_null(r, "%s: %s", confs[i][0], err);
        rec rs[64];
        cr_assert_eq(t_read_all(r, rs, 64), want[i], "%s", confs[i][0]);
        r->close(r);
    }
}

Test(kafka_source, bad_options_are_named)
{
    char q[512], err[512] = "";
    const char *bad[][2] = {{"start=yesterday", "start=yesterday"},
                            {"start=timestamp:abc", "start=timestamp:abc"},
                            {"fallback=middle", "fallback=middle"},
                            {"stop_at=noon", "stop_at=noon"},
                            {"isolation=dirty", "isolation=dirty"},
                            {"start=offsets:x", "offsets:PARTITION=OFFSET"},
                            {"rdkafka.no.such.property=1", "no.such.property"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(q, sizeof q, "t?brokers=%s&%s", t_brokers, bad[i][0]);
        kp_source_reader *r = t_open_at(q, 0, 1, err, sizeof err);
        cr_assert_null(r, "%s was accepted", bad[i][0]);
        cr_assert(strstr(err, bad[i][1]) != NULL, "%s: error '%s' does not name it", bad[i][0],
                  err);
    }
    /* a valid pass-through property is accepted */
    snprintf(q, sizeof q, "t?brokers=%s&rdkafka.fetch.wait.max.ms=10&stop_at=end", t_brokers);
    kp_source_reader *r = t_open_at(q, 0, 1, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    r->close(r);
}

/* ---- partitions ---- */

Test(kafka_source, subtasks_cover_every_partition_exactly_once)
{
    for (int p = 1; p <= 3; p++) {
        int seen[7] = {0};
        for (int i = 0; i < p; i++) {
            char q[512], err[512];
            snprintf(q, sizeof q, "seven?brokers=%s&stop_at=end", t_brokers);
            kp_source_reader *r = t_open_at(q, i, p, err, sizeof err);
            cr_assert_not_null(r, "%s", err);
            int32_t parts[16];
            int n = r->partitions(r, parts, 16);
            for (int j = 0; j < n; j++) {
                cr_assert(parts[j] >= 0 && parts[j] < 7);
                cr_assert_eq(parts[j] % p, i, "subtask %d/%d got partition %d", i, p, parts[j]);
                seen[parts[j]]++;
            }
            r->close(r);
        }
        for (int j = 0; j < 7; j++)
            cr_assert_eq(seen[j], 1, "p=%d: partition %d owned %d times", p, j, seen[j]);
    }
}

Test(kafka_source, subtasks_read_only_their_partitions)
{
    rec rs[64];
    int total = 0;
    for (int i = 0; i < 2; i++) {
        kp_source_reader *r = t_open("stop_at=end", i, 2);
        int n = t_read_all(r, rs, 64);
        for (int j = 0; j < n; j++)
            cr_assert_eq(rs[j].part % 2, i);
        total += n;
        r->close(r);
    }
    cr_assert_eq(total, T_PARTS * T_PER_PART);
    /* more subtasks than partitions: the extra one owns nothing and ends at once */
    kp_source_reader *r = t_open("stop_at=end", 3, 4);
    int32_t parts[4];
    cr_assert_eq(r->partitions(r, parts, 4), 0);
    cr_assert_eq(t_read_all(r, rs, 64), 0);
    r->close(r);
}

/* ---- open-time errors ---- */

Test(kafka_source, missing_brokers_option)
{
    char err[512] = "";
    kp_source_reader *r = t_open_at("t?start=earliest", 0, 1, err, sizeof err);
    cr_assert_null(r);
    cr_assert(strstr(err, "brokers") != NULL && strstr(err, "kafka.brokers") != NULL, "%s", err);
}

Test(kafka_source, brokers_from_conf)
{
    char conf0[300];
    snprintf(conf0, sizeof conf0, "kafka.brokers=%s", t_brokers);
    const char *conf[] = {conf0, NULL};
    kp_endpoint ep = {
        .name = "clicks", .uri = "kafka:t?stop_at=end", .parallelism = 1, .conf = conf};
    char err[512] = "";
    kp_source_reader *r = kp_connector_find(ep.uri)->open_source(&ep, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    rec rs[64];
    cr_assert_eq(t_read_all(r, rs, 64), T_PARTS * T_PER_PART);
    r->close(r);
}

/* A clear error instead of waiting forever (the test's timeout bounds the wait). */
Test(kafka_source, unreachable_broker_fails_clearly, .timeout = 60)
{
    char err[512] = "";
    kp_source_reader *r = t_open_at("t?brokers=127.0.0.1:1", 0, 1, err, sizeof err);
    cr_assert_null(r);
    cr_assert(strstr(err, "cannot reach Kafka at 127.0.0.1:1") != NULL, "%s", err);
}

Test(kafka_source, missing_topic_is_named)
{
    char q[512], err[512] = "";
    /* the mock cluster creates unknown topics on first mention: make it answer as a broker
     * with auto.create.topics.enable=false does */
    rd_kafka_mock_topic_set_error(t_mock, "nope", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    snprintf(q, sizeof q, "nope?brokers=%s", t_brokers);
    kp_source_reader *r = t_open_at(q, 0, 1, err, sizeof err);
    cr_assert_null(r);
    cr_assert(strstr(err, "topic 'nope' does not exist") != NULL, "%s", err);
}

/* ---- sink ---- */

static kp_sink_writer *t_open_sink(const char *topic)
{
    char uri[512], err[512] = "";
    snprintf(uri, sizeof uri, "kafka:%s?brokers=%s", topic, t_brokers);
    kp_endpoint ep = {.name = "out", .uri = uri, .parallelism = 1};
    kp_sink_writer *w = kp_connector_find(uri)->open_sink(&ep, err, sizeof err);
    cr_assert_not_null(w, "open sink: %s", err);
    return w;
}

Test(kafka_source, sink_round_trip_and_dead_letter_headers)
{
    cr_assert_eq(rd_kafka_mock_topic_create(t_mock, "out", 2, 1), 0);
    kp_sink_writer *w = t_open_sink("out");
    char err[512], id[32], doc[64];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(doc, sizeof doc, "{\"n\":%d}", i);
        cr_assert_eq(w->write(w, KP_CSTR(id), KP_CSTR(doc), 1700000000000LL + i, err, sizeof err),
                     0, "%s", err);
    }
    kp_raw raw = {
        .key = KP_CSTR("k"), .value = KP_CSTR("{bad"), .ts = 5, .partition = 3, .offset = 42};
    cr_assert_eq(w->write_raw(w, &raw, "clicks", "decode returned KP_BAD_INPUT", err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "flush: %s", err);
    char stats[256];
    w->stats(w, stats, sizeof stats);
    cr_assert_str_eq(stats, "{\"sent\":101,\"delivered\":101,\"failed\":0}");
    w->close(w);

    /* read back with a bare consumer, headers included */
    char cerr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", t_brokers, cerr, sizeof cerr);
    rd_kafka_conf_set(conf, "group.id", "check", cerr, sizeof cerr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, cerr, sizeof cerr);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, "out", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_topic_partition_list_add(l, "out", 1)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0, dead = 0;
    for (int tries = 0; n < 101 && tries < 200; tries++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (!m->err) {
            n++;
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(m, &h) == 0) {
                const void *v;
                size_t vl;
                dead++;
                cr_assert_eq(m->len, 4);
                cr_assert_eq(memcmp(m->payload, "{bad", 4), 0);
                cr_assert_eq(rd_kafka_header_get_last(h, "kappa.source", &v, &vl), 0);
                cr_assert_eq(vl, 6);
                cr_assert_eq(memcmp(v, "clicks", 6), 0);
                cr_assert_eq(rd_kafka_header_get_last(h, "kappa.partition", &v, &vl), 0);
                cr_assert_eq(memcmp(v, "3", 1), 0);
                cr_assert_eq(rd_kafka_header_get_last(h, "kappa.offset", &v, &vl), 0);
                cr_assert_eq(memcmp(v, "42", 2), 0);
                cr_assert_eq(rd_kafka_header_get_last(h, "kappa.error", &v, &vl), 0);
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    cr_assert_eq(n, 101);
    cr_assert_eq(dead, 1);
}

/* ---- partition end, caught up, memory budget, cancellation ---- */

static void t_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

Test(kafka_source, stop_at_end_partitions_end_by_offset)
{
    kp_source_reader *r = t_open("stop_at=end", 0, 1);
    for (int p = 0; p < T_PARTS; p++)
        cr_assert_eq(r->ended(r, p), 0, "partition %d ended before a record was read", p);
    cr_assert_eq(r->ended(r, T_PARTS), 0, "a partition the reader does not own");
    rec rs[64];
    cr_assert_eq(t_read_all(r, rs, 64), T_PARTS * T_PER_PART);
    for (int p = 0; p < T_PARTS; p++) {
        cr_assert_eq(r->ended(r, p), 1, "partition %d not ended at its end offset", p);
        cr_assert_eq(r->caught_up(r, p), 1);
    }
    r->close(r);
}

Test(kafka_source, live_partitions_never_end_and_are_caught_up_only_at_the_log_end)
{
    kp_source_reader *r = t_open("", 0, 1);
    for (int p = 0; p < T_PARTS; p++)
        cr_assert_eq(r->caught_up(r, p), 0, "partition %d caught up before the first fetch", p);
    rec rs[64];
    int eof;
    cr_assert_eq(t_read(r, rs, 64, T_PARTS * T_PER_PART, 20000, &eof), T_PARTS * T_PER_PART);
    /* the end is known from the fetch responses: wait until every partition says so */
    int caught = 0;
    for (int i = 0; i < 400 && caught < T_PARTS; i++) {
        caught = 0;
        for (int p = 0; p < T_PARTS; p++)
            caught += r->caught_up(r, p);
        if (caught < T_PARTS) {
            kp_raw raws[4];
            int n;
            char err[256];
            cr_assert_eq(r->poll(r, raws, 4, &n, 50, err, sizeof err), KP_POLL_EMPTY);
        }
    }
    cr_assert_eq(caught, T_PARTS, "drained partitions not caught up");
    /* new records in partition 1: not caught up once fetched, until they are read */
    t_produce("t", 1, T_PER_PART, T_PER_PART + 5);
    int behind = 0;
    for (int i = 0; i < 400 && !behind; i++) {
        behind = !r->caught_up(r, 1);
        if (!behind)
            t_sleep_ms(25);
    }
    cr_assert(behind, "partition 1 still caught up with 5 unread records fetched");
    cr_assert_eq(r->caught_up(r, 0), 1);
    cr_assert_eq(t_read(r, rs, 64, 5, 20000, &eof), 5);
    cr_assert_eq(r->caught_up(r, 1), 1, "partition 1 read to its end");
    for (int p = 0; p < T_PARTS; p++)
        cr_assert_eq(r->ended(r, p), 0, "a live partition never ends");
    r->close(r);
}

Test(kafka_source, memory_budget_is_validated)
{
    static const char *bad[] = {"memory_mb=0", "memory_mb=3", "memory_mb=65537", "memory_mb=x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char q[512], err[512] = "";
        snprintf(q, sizeof q, "t?brokers=%s&%s", t_brokers, bad[i]);
        cr_assert_null(t_open_at(q, 0, 1, err, sizeof err), "%s accepted", bad[i]);
        cr_assert(strstr(err, "memory_mb") && strstr(err, "4 to 65536"), "%s: %s", bad[i], err);
    }
    kp_source_reader *r = t_open("memory_mb=4&stop_at=end", 0, 1);
    rec rs[64];
    cr_assert_eq(t_read_all(r, rs, 64), T_PARTS * T_PER_PART);
    r->close(r);
}

/* A probe that says "cancelled" from its `after`-th call on. */
typedef struct t_probe {
    int calls, after;
} t_probe;

static int t_cancelled(void *arg)
{
    t_probe *p = arg;
    return ++p->calls >= p->after;
}

Test(kafka_source, sink_waits_end_when_the_job_is_cancelled)
{
    cr_assert_eq(rd_kafka_mock_topic_create(t_mock, "stuck", 1, 1), 0);
    char uri[512], err[512] = "";
    snprintf(uri, sizeof uri, "kafka:stuck?brokers=%s&memory_mb=4", t_brokers);
    t_probe probe = {0, 1 << 30};
    kp_endpoint ep = {.name = "out",
                      .uri = uri,
                      .parallelism = 1,
                      .cancelled = t_cancelled,
                      .cancel_arg = &probe};
    kp_sink_writer *w = kp_connector_find(uri)->open_sink(&ep, err, sizeof err);
    cr_assert_not_null(w, "open sink: %s", err);
    cr_assert_eq(w->tick(w, err, sizeof err), 0, "tick: %s", err);
    /* the broker stops answering: the 2 MiB queue of a 4 MiB budget fills up */
    rd_kafka_mock_broker_set_down(t_mock, 1);
    static char doc[4096];
    memset(doc, 'x', sizeof doc - 1);
    probe.calls = 0;
    probe.after = 5;
    int rc = 0, i;
    for (i = 0; i < 100000 && rc == 0; i++)
        rc = w->write(w, KP_CSTR("id"), KP_CSTR(doc), 1, err, sizeof err);
    cr_assert_eq(rc, -1, "the producer queue never filled");
    cr_assert(strstr(err, "cancelled"), "write failed otherwise: %s", err);
    cr_assert_lt(i, 2000, "%d documents of 4 KiB queued under a 2 MiB queue", i);
    probe.calls = 0;
    cr_assert_eq(w->flush(w, err, sizeof err), -1);
    cr_assert(strstr(err, "cancelled"), "flush failed otherwise: %s", err);
    w->close(w); /* abandons the queue instead of waiting 10 s */
    rd_kafka_mock_broker_set_up(t_mock, 1);
}

Test(kafka_source, sink_tick_reports_a_failed_delivery_in_a_live_job)
{
    cr_assert_eq(rd_kafka_mock_topic_create(t_mock, "lost", 1, 1), 0);
    char uri[512], err[512] = "";
    snprintf(uri, sizeof uri, "kafka:lost?brokers=%s&rdkafka.message.timeout.ms=300", t_brokers);
    kp_endpoint ep = {.name = "out", .uri = uri, .parallelism = 1};
    kp_sink_writer *w = kp_connector_find(uri)->open_sink(&ep, err, sizeof err);
    cr_assert_not_null(w, "open sink: %s", err);
    rd_kafka_mock_broker_set_down(t_mock, 1);
    cr_assert_eq(w->write(w, KP_CSTR("id"), KP_CSTR("{}"), 1, err, sizeof err), 0, "%s", err);
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++) { /* the engine ticks every ~100 ms */
        t_sleep_ms(50);
        rc = w->tick(w, err, sizeof err);
    }
    cr_assert_eq(rc, -1, "tick never reported the undeliverable message");
    cr_assert(strstr(err, "failed"), "%s", err);
    w->close(w);
    rd_kafka_mock_broker_set_up(t_mock, 1);
}
