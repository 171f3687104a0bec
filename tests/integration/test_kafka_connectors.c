/*
 * The Kafka source and sink (connectors/kafka_*.c) against a REAL broker (KAPPA_BROKERS, set
 * by tests/integration/with-services). A missing KAPPA_BROKERS is a failure, never a skip.
 *
 * Each test creates uniquely named topics with the Admin API and deletes them at the end.
 * Records are produced with explicit timestamps (value "P:I", timestamp T_TS(P, I), so within
 * a partition timestamps grow with offsets) and read back through the connector registry as
 * the engine does. Covered: start=earliest / latest / timestamp:MS (a real ListOffsets by
 * time, which the mock cluster of the unit tests cannot do) / group (commit() then reopen
 * resumes there) / offsets; the sink's round trip (N documents written and flushed are read
 * back exactly once by an independent read_committed consumer, keyed by document id); a dead
 * letter with its headers; partitions added while a source runs are picked up; a topic
 * that does not exist gives a clear error at open; and the transactional sink (prepare/commit
 * driven as checkpoints would: a read_committed reader sees exactly the completed
 * checkpoints' records, never an aborted one; a second writer with the same ids fences the
 * first; without checkpoints it commits on its clock and at flush; the seed job Kafka -> Kafka
 * through the CLI at -p 2, without and with checkpoints every 50 ms, gives a read_committed
 * reader exactly the file run's documents; a restored writer re-sends exactly the
 * checkpoints a crash left uncommitted; and jobs/click_copy crashed between a checkpoint's
 * completion and its notification, then restored, gives every click exactly once).
 *
 * And through the CLI ($KAPPA_CLI run --local, jobs in $KAPPA_JOBS): the source's read-ahead
 * stays within its memory budget when the sink stalls (32 partitions, every record sent to a
 * dead-letter FIFO nobody reads; the RSS of the kappa process, read from /proc while it runs,
 * must stay under the budget plus an allowance for the rest of the process — and a control
 * run with the old read-ahead settings shows the test can fail); and a live topic of 3
 * partitions read at -p 4 (one subtask owns nothing) delivers results while events are
 * produced, and the CLI exits promptly on SIGINT.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "../support/kafka_wait.h"

#include "../../runtime/connector.h"
#include "connectors.h"
#include "failpoint.h"

#define T_PARTS    3
#define T_PER_PART 20
#define T_BASE     1700000000000LL
#define T_TS(p, i) (T_BASE + (int64_t)(i)*1000 + (p))
#define T_WAIT_MS  60000

static char t_topics[4][128];
static int t_ntopics;

static const char *t_brokers(void)
{
    const char *b = getenv("KAPPA_BROKERS");
    cr_assert(b != NULL && *b != '\0',
              "KAPPA_BROKERS is not set: run through tests/integration/with-services "
              "(meson test --suite integration) or point it at a running broker");
    return b;
}

/* ---- admin ---- */

static rd_kafka_t *t_client(rd_kafka_type_t type, const char *extra_k, const char *extra_v)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", t_brokers(), err, sizeof err),
                 RD_KAFKA_CONF_OK, "%s", err);
    if (extra_k)
        cr_assert_eq(rd_kafka_conf_set(conf, extra_k, extra_v, err, sizeof err), RD_KAFKA_CONF_OK,
                     "%s", err);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    cr_assert_not_null(rk, "rd_kafka_new: %s", err);
    return rk;
}

static rd_kafka_event_t *t_admin_result(rd_kafka_queue_t *q)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, T_WAIT_MS);
    cr_assert_not_null(ev, "no admin result in time");
    cr_assert_eq(rd_kafka_event_error(ev), 0, "admin: %s", rd_kafka_event_error_string(ev));
    return ev;
}

static void t_wait_partitions(rd_kafka_t *rk, const char *name, int partitions)
{
    kp_test_kafka_wait_partitions(rk, name, partitions, 150);
}

/* A fresh topic, deleted in fini. */
static const char *t_topic(const char *what, int partitions)
{
    cr_assert_lt(t_ntopics, 4);
    char *name = t_topics[t_ntopics++];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, sizeof t_topics[0], "kappa-kc-%s-%ld-%ld", what, (long)getpid(),
             (long)(ts.tv_nsec / 1000));
    rd_kafka_t *rk = t_client(RD_KAFKA_PRODUCER, NULL, NULL);
    char why[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, why, sizeof why);
    cr_assert_not_null(nt, "%s", why);
    /* the records carry event times of 2023 (T_BASE): without this, time retention deletes
     * closed segments of them (a transaction marker, stamped now, rolls a segment) while a
     * test still reads them */
    cr_assert_eq(rd_kafka_NewTopic_set_config(nt, "retention.ms", "-1"), 0);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = t_admin_result(q);
    size_t n = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(rd_kafka_topic_result_error(res[0]), 0, "CreateTopics %s: %s", name,
                 rd_kafka_topic_result_error_string(res[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    t_wait_partitions(rk, name, partitions);
    rd_kafka_destroy(rk);
    return name;
}

static void t_add_partitions(const char *name, int total)
{
    rd_kafka_t *rk = t_client(RD_KAFKA_PRODUCER, NULL, NULL);
    char why[512];
    rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(name, (size_t)total, why, sizeof why);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreatePartitions(rk, &np, 1, NULL, q);
    rd_kafka_event_destroy(t_admin_result(q));
    rd_kafka_NewPartitions_destroy(np);
    rd_kafka_queue_destroy(q);
    t_wait_partitions(rk, name, total);
    rd_kafka_destroy(rk);
}

static void t_setup(void)
{
    kp_connectors_register_builtin();
}

static void t_fini(void)
{
    if (!t_ntopics)
        return;
    rd_kafka_t *rk = t_client(RD_KAFKA_PRODUCER, NULL, NULL);
    rd_kafka_DeleteTopic_t *dt[4];
    for (int i = 0; i < t_ntopics; i++)
        dt[i] = rd_kafka_DeleteTopic_new(t_topics[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, dt, (size_t)t_ntopics, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, T_WAIT_MS);
    if (!ev || rd_kafka_event_error(ev))
        cr_log_warn("could not delete the test topics");
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_DeleteTopic_destroy_array(dt, (size_t)t_ntopics);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    t_ntopics = 0;
}

TestSuite(kafka_connectors, .init = t_setup, .fini = t_fini, .timeout = 300);

/* Produces records from..to-1 of each partition: key "kP-I", value "P:I", time T_TS(P, I). */
static void t_produce(const char *topic, int parts, int from, int to)
{
    rd_kafka_t *p = t_client(RD_KAFKA_PRODUCER, "enable.idempotence", "true");
    for (int part = 0; part < parts; part++)
        for (int i = from; i < to; i++) {
            char key[32], val[32];
            snprintf(key, sizeof key, "k%d-%d", part, i);
            snprintf(val, sizeof val, "%d:%d", part, i);
            rd_kafka_resp_err_t e = rd_kafka_producev(
                p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_TIMESTAMP(T_TS(part, i)),
                RD_KAFKA_V_END);
            cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
        }
    cr_assert_eq(rd_kafka_flush(p, T_WAIT_MS), 0, "producer flush timed out");
    rd_kafka_destroy(p);
}

static kp_source_reader *t_open_source(const char *topic, const char *opts, char *err,
                                       size_t errlen)
{
    static char uri[1024];
    snprintf(uri, sizeof uri, "kafka:%s?brokers=%s%s%s", topic, t_brokers(), *opts ? "&" : "",
             opts);
    kp_endpoint ep = {.name = "clicks", .uri = uri, .subtask = 0, .parallelism = 1};
    return kp_connector_find(uri)->open_source(&ep, err, errlen);
}

static kp_source_reader *t_source(const char *topic, const char *opts)
{
    char err[512] = "";
    kp_source_reader *r = t_open_source(topic, opts, err, sizeof err);
    cr_assert_not_null(r, "open %s?%s: %s", topic, opts, err);
    return r;
}

typedef struct t_counts {
    int n;
    int count[8];
    int64_t first[8], last[8];
    int eof;
} t_counts;

/* Polls until EOF, `want` records, or `ms`; checks values and timestamps against T_TS. */
static t_counts t_read(kp_source_reader *r, int want, int ms)
{
    t_counts c = {0};
    for (int p = 0; p < 8; p++)
        c.first[p] = c.last[p] = -1;
    kp_raw raws[256];
    char err[512];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int n = 0;
        kp_poll_rc rc = r->poll(r, raws, 256, &n, 100, err, sizeof err);
        cr_assert_neq(rc, KP_POLL_ERROR, "poll: %s", err);
        if (rc == KP_POLL_EOF) {
            c.eof = 1;
            return c;
        }
        for (int i = 0; i < n; i++) {
            int p = raws[i].partition;
            cr_assert(p >= 0 && p < 8);
            char want_val[32];
            snprintf(want_val, sizeof want_val, "%d:%d", p, (int)raws[i].offset);
            cr_assert(raws[i].value.len == strlen(want_val) &&
                          !memcmp(raws[i].value.ptr, want_val, raws[i].value.len),
                      "partition %d offset %" PRId64 ": value '%.*s'", p, raws[i].offset,
                      (int)raws[i].value.len, raws[i].value.ptr);
            cr_assert_eq(raws[i].ts, T_TS(p, raws[i].offset));
            if (c.first[p] < 0)
                c.first[p] = raws[i].offset;
            else
                cr_assert_eq(raws[i].offset, c.last[p] + 1, "partition %d skipped", p);
            c.last[p] = raws[i].offset;
            c.count[p]++;
            c.n++;
        }
        if (want >= 0 && c.n >= want)
            return c;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > ms)
            return c;
    }
}

static t_counts t_read_all(kp_source_reader *r)
{
    t_counts c = t_read(r, -1, T_WAIT_MS);
    cr_assert(c.eof, "stop_at=end did not end (got %d records)", c.n);
    return c;
}

/* ---- source ---- */

Test(kafka_connectors, start_modes)
{
    const char *topic = t_topic("start", T_PARTS);
    t_produce(topic, T_PARTS, 0, T_PER_PART);

    kp_source_reader *r = t_source(topic, "start=earliest&stop_at=end");
    t_counts c = t_read_all(r);
    cr_assert_eq(c.n, T_PARTS * T_PER_PART);
    for (int p = 0; p < T_PARTS; p++)
        cr_assert_eq(c.first[p], 0);
    r->close(r);

    /* timestamp: the first record at or after T in every partition */
    char opts[128];
    snprintf(opts, sizeof opts, "start=timestamp:%lld&stop_at=end", (long long)(T_BASE + 5000));
    r = t_source(topic, opts);
    c = t_read_all(r);
    for (int p = 0; p < T_PARTS; p++) {
        cr_assert_eq(c.first[p], 5, "partition %d starts at %" PRId64, p, c.first[p]);
        cr_assert_eq(c.count[p], T_PER_PART - 5);
    }
    r->close(r);
    /* a time between two records of partition 2 (T_TS(2,7) = base+7002) */
    snprintf(opts, sizeof opts, "start=timestamp:%lld&stop_at=end", (long long)(T_BASE + 7001));
    r = t_source(topic, opts);
    c = t_read_all(r);
    cr_assert_eq(c.first[0], 8);
    cr_assert_eq(c.first[1], 7);
    cr_assert_eq(c.first[2], 7);
    r->close(r);
    /* after every record: nothing */
    r = t_source(topic, "start=timestamp:1900000000000&stop_at=end");
    cr_assert_eq(t_read_all(r).n, 0);
    r->close(r);

    /* explicit offsets */
    r = t_source(topic, "start=offsets:1=15&fallback=latest&stop_at=end");
    c = t_read_all(r);
    cr_assert_eq(c.n, 5);
    cr_assert_eq(c.first[1], 15);
    r->close(r);

    /* latest: only what is produced after open */
    r = t_source(topic, "start=latest");
    cr_assert_eq(t_read(r, -1, 1000).n, 0, "start=latest read old records");
    t_produce(topic, T_PARTS, T_PER_PART, T_PER_PART + 1);
    c = t_read(r, T_PARTS, T_WAIT_MS);
    cr_assert_eq(c.n, T_PARTS);
    for (int p = 0; p < T_PARTS; p++)
        cr_assert_eq(c.first[p], T_PER_PART);
    r->close(r);
}

Test(kafka_connectors, group_commit_then_resume)
{
    const char *topic = t_topic("group", T_PARTS);
    t_produce(topic, T_PARTS, 0, T_PER_PART);
    char group[160], opts[256];
    snprintf(group, sizeof group, "kappa-test-%ld", (long)getpid());

    /* read 12 records, commit offsets() */
    snprintf(opts, sizeof opts, "group=%s", group);
    kp_source_reader *r = t_source(topic, opts);
    t_counts c = t_read(r, 12, T_WAIT_MS);
    cr_assert_geq(c.n, 12);
    kp_offset offs[8];
    int n = r->offsets(r, offs, 8);
    cr_assert_eq(n, T_PARTS);
    int64_t at[T_PARTS];
    for (int i = 0; i < n; i++) {
        at[offs[i].partition] = offs[i].offset;
        cr_assert_eq(offs[i].offset, c.last[offs[i].partition] + 1,
                     "offsets() is not the next offset after the last read");
    }
    char err[512];
    cr_assert_eq(r->commit(r, offs, n, err, sizeof err), 0, "commit: %s", err);
    char stats[1024];
    r->stats(r, stats, sizeof stats);
    cr_assert(strstr(stats, "\"partitions\":[{\"partition\":0") != NULL, "stats: %s", stats);
    r->close(r);

    /* start=group resumes exactly there */
    snprintf(opts, sizeof opts, "group=%s&start=group&stop_at=end", group);
    r = t_source(topic, opts);
    c = t_read_all(r);
    int total = 0;
    for (int p = 0; p < T_PARTS; p++) {
        cr_assert_eq(c.count[p] ? c.first[p] : T_PER_PART, at[p],
                     "partition %d resumed at %" PRId64 " instead of %" PRId64, p, c.first[p],
                     at[p]);
        total += (int)(T_PER_PART - at[p]);
    }
    cr_assert_eq(c.n, total);
    r->close(r);
}

Test(kafka_connectors, new_partitions_are_discovered)
{
    const char *topic = t_topic("grow", 2);
    t_produce(topic, 2, 0, 3);
    kp_source_reader *r = t_source(topic, "");
    cr_assert_eq(t_read(r, 6, T_WAIT_MS).n, 6);
    t_add_partitions(topic, 4);
    t_produce(topic, 4, 0, 2); /* new partitions 2, 3: offsets 0, 1 */
    int32_t parts[8];
    int n = 0;
    kp_raw raws[64];
    char err[512];
    int got_new = 0;
    for (int i = 0; i < 300 && got_new < 4; i++) {
        int k = 0;
        cr_assert_neq(r->poll(r, raws, 64, &k, 100, err, sizeof err), KP_POLL_ERROR, "%s", err);
        for (int j = 0; j < k; j++)
            got_new += raws[j].partition >= 2;
    }
    n = r->partitions(r, parts, 8);
    cr_assert_eq(n, 4, "partitions() after growth: %d", n);
    cr_assert_eq(got_new, 4, "records of the new partitions read: %d", got_new);
    r->close(r);
}

Test(kafka_connectors, missing_topic_gives_a_clear_error)
{
    char err[512] = "";
    kp_source_reader *r = t_open_source("kappa-no-such-topic", "", err, sizeof err);
    cr_assert_null(r);
    cr_assert(strstr(err, "topic 'kappa-no-such-topic' does not exist") != NULL, "%s", err);
    char uri[512];
    snprintf(uri, sizeof uri, "kafka:kappa-no-such-topic?brokers=%s", t_brokers());
    kp_endpoint ep = {.name = "out", .uri = uri, .parallelism = 1};
    kp_sink_writer *w = kp_connector_find(uri)->open_sink(&ep, err, sizeof err);
    cr_assert_null(w);
    cr_assert(strstr(err, "does not exist") != NULL, "%s", err);
}

/* ---- sink ---- */

static kp_sink_writer *t_sink(const char *topic)
{
    char uri[512], err[512] = "";
    snprintf(uri, sizeof uri, "kafka:%s?brokers=%s", topic, t_brokers());
    kp_endpoint ep = {.name = "out", .uri = uri, .parallelism = 1, .epoch = 1};
    kp_sink_writer *w = kp_connector_find(uri)->open_sink(&ep, err, sizeof err);
    cr_assert_not_null(w, "open sink: %s", err);
    return w;
}

/* Reads every partition of topic to its end with a bare read_committed consumer; calls
 * fn for each message. */
static int t_bare_read(const char *topic, int parts, void (*fn)(const rd_kafka_message_t *, void *),
                       void *arg)
{
    rd_kafka_t *c = t_client(RD_KAFKA_CONSUMER, "group.id", "kappa-test-bare");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    int64_t high[8];
    for (int p = 0; p < parts; p++) {
        int64_t low;
        cr_assert_eq(rd_kafka_query_watermark_offsets(c, topic, p, &low, &high[p], 10000), 0);
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0, done = 0;
    int64_t next[8] = {0};
    for (int p = 0; p < parts; p++)
        done += high[p] == 0;
    for (int idle = 0; done < parts && idle < 600;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) {
            idle++; /* 60 s without a message: give up */
            continue;
        }
        idle = 0;
        if (!m->err) {
            fn(m, arg);
            n++;
            next[m->partition] = m->offset + 1;
        }
        rd_kafka_message_destroy(m);
        done = 0;
        for (int p = 0; p < parts; p++)
            done += next[p] >= high[p];
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

typedef struct t_seen {
    unsigned char *hit;
    int n, dups, bad;
} t_seen;

static void t_check_doc(const rd_kafka_message_t *m, void *arg)
{
    t_seen *s = arg;
    char key[32], want[64];
    snprintf(key, sizeof key, "%.*s", (int)m->key_len, (const char *)m->key);
    int i = atoi(key + 3);
    snprintf(want, sizeof want, "{\"n\":%d}", i);
    if (strncmp(key, "id-", 3) || i < 0 || i >= s->n || m->len != strlen(want) ||
        memcmp(m->payload, want, m->len)) {
        s->bad++;
        return;
    }
    rd_kafka_timestamp_type_t tt;
    if (rd_kafka_message_timestamp(m, &tt) != T_BASE + i)
        s->bad++;
    s->dups += s->hit[i]++ > 0;
}

Test(kafka_connectors, sink_round_trip_exactly_n)
{
    const int N = 20000;
    const char *topic = t_topic("sink", T_PARTS);
    kp_sink_writer *w = t_sink(topic);
    char err[512], id[32], doc[64];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(doc, sizeof doc, "{\"n\":%d}", i);
        cr_assert_eq(w->write(w, KP_CSTR(id), KP_CSTR(doc), T_BASE + i, err, sizeof err), 0, "%s",
                     err);
    }
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "flush: %s", err);
    char stats[256], want[256];
    w->stats(w, stats, sizeof stats);
    snprintf(want, sizeof want, "{\"sent\":%d,\"delivered\":%d,\"failed\":0}", N, N);
    cr_assert_str_eq(stats, want);
    w->close(w);

    t_seen s = {.hit = calloc((size_t)N, 1), .n = N};
    int n = t_bare_read(topic, T_PARTS, t_check_doc, &s);
    cr_assert_eq(s.bad, 0, "%d malformed messages", s.bad);
    cr_assert_eq(s.dups, 0, "%d duplicates", s.dups);
    cr_assert_eq(n, N, "read back %d of %d", n, N);
    free(s.hit);

    /* and the kappa source reads them too */
    kp_source_reader *r = t_source(topic, "stop_at=end");
    int total = 0;
    kp_raw raws[256];
    for (;;) {
        int k = 0;
        kp_poll_rc rc = r->poll(r, raws, 256, &k, 100, err, sizeof err);
        cr_assert_neq(rc, KP_POLL_ERROR, "%s", err);
        if (rc == KP_POLL_EOF)
            break;
        total += k;
    }
    cr_assert_eq(total, N);
    r->close(r);
}

static void t_check_dead(const rd_kafka_message_t *m, void *arg)
{
    int *ok = arg;
    rd_kafka_headers_t *h = NULL;
    cr_assert_eq(rd_kafka_message_headers(m, &h), 0, "dead letter without headers");
    const char *names[] = {"kappa.source", "kappa.partition", "kappa.offset", "kappa.error"};
    const char *vals[] = {"clicks", "4", "1234", "decode returned KP_BAD_INPUT"};
    for (int i = 0; i < 4; i++) {
        const void *v;
        size_t vl;
        cr_assert_eq(rd_kafka_header_get_last(h, names[i], &v, &vl), 0, "no header %s", names[i]);
        cr_assert(vl == strlen(vals[i]) && !memcmp(v, vals[i], vl), "header %s = '%.*s'", names[i],
                  (int)vl, (const char *)v);
    }
    cr_assert(m->len == 9 && !memcmp(m->payload, "{\"item\":1", 9));
    cr_assert(m->key_len == 6 && !memcmp(m->key, "user_7", 6));
    (*ok)++;
}

Test(kafka_connectors, dead_letter_with_headers)
{
    const char *topic = t_topic("dead", 1);
    kp_sink_writer *w = t_sink(topic);
    char err[512];
    kp_raw raw = {.key = KP_CSTR("user_7"),
                  .value = KP_CSTR("{\"item\":1"),
                  .ts = T_BASE,
                  .partition = 4,
                  .offset = 1234};
    cr_assert_eq(w->write_raw(w, &raw, "clicks", "decode returned KP_BAD_INPUT", err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    w->close(w);
    int ok = 0;
    cr_assert_eq(t_bare_read(topic, 1, t_check_dead, &ok), 1);
    cr_assert_eq(ok, 1);
}

/* ---- the transactional sink (kafka:TOPIC?transactional=1) ---- */

/* A transactional writer with ids `kc-<uid>-0-<n>`; `opts` adds URI options. */
static kp_sink_writer *t_tx_sink(const char *topic, const char *uid, int64_t ckpt_interval,
                                 const char *opts, char *err, size_t errlen)
{
    char uri[640];
    snprintf(uri, sizeof uri, "kafka:%s?brokers=%s&transactional=1%s%s", topic, t_brokers(),
             opts ? "&" : "", opts ? opts : "");
    kp_endpoint ep = {.name = "out",
                      .uri = uri,
                      .parallelism = 1,
                      .epoch = 1,
                      .job = "kc",
                      .uid = uid,
                      .checkpoint_interval_ms = ckpt_interval};
    return kp_connector_find(uri)->open_sink(&ep, err, errlen);
}

/* A fresh topic and a transactional writer on it, its uid the topic's name (so its ids are
 * the test's own). */
static kp_sink_writer *t_tx_topic_sink(const char *what, int64_t ckpt_interval, const char *opts,
                                       const char **topic)
{
    char err[512] = "";
    *topic = t_topic(what, T_PARTS);
    kp_sink_writer *w = t_tx_sink(*topic, *topic, ckpt_interval, opts, err, sizeof err);
    cr_assert_not_null(w, "open: %s", err);
    return w;
}

/* Writes documents id-from .. id-(to-1) ({"n":i}, time T_BASE + i). */
static void t_write_range(kp_sink_writer *w, int from, int to)
{
    char err[512], id[32], doc[64];
    for (int i = from; i < to; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        snprintf(doc, sizeof doc, "{\"n\":%d}", i);
        cr_assert_eq(w->write(w, KP_CSTR(id), KP_CSTR(doc), T_BASE + i, err, sizeof err), 0, "%s",
                     err);
    }
}

/* Reads every partition of topic with isolation level `iso` up to its end as that level sees
 * it (read_committed: the last stable offset, so an open transaction ends the read); calls fn
 * for each message. */
static int t_read_iso(const char *topic, int parts, const char *iso,
                      void (*fn)(const rd_kafka_message_t *, void *), void *arg)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"bootstrap.servers", t_brokers()},
                           {"group.id", "kappa-test-tx"},
                           {"enable.partition.eof", "true"},
                           {"enable.auto.commit", "false"},
                           {"isolation.level", iso}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err), RD_KAFKA_CONF_OK,
                     "%s", err);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0, eof = 0, at_end[16] = {0};
    cr_assert_leq(parts, 16);
    for (int idle = 0; eof < parts && idle < 600;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) {
            idle++; /* 60 s without news: give up */
            continue;
        }
        idle = 0;
        int p = m->partition >= 0 && m->partition < parts ? m->partition : 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof += !at_end[p]; /* each partition once, until it delivers again */
            at_end[p] = 1;
        } else if (!m->err) {
            eof -= at_end[p];
            at_end[p] = 0;
            fn(m, arg);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    cr_expect_eq(eof, parts, "not every partition reached its end");
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

/* Counts what a read_committed reader sees in [from, to), after a fresh read. */
static int t_committed(const char *topic, int n, int from, int to, int *dups)
{
    t_seen s = {.hit = calloc((size_t)n, 1), .n = n};
    t_read_iso(topic, T_PARTS, "read_committed", t_check_doc, &s);
    cr_expect_eq(s.bad, 0, "%d malformed messages", s.bad);
    int c = 0;
    for (int i = from; i < to; i++)
        c += s.hit[i] > 0;
    *dups = s.dups;
    free(s.hit);
    return c;
}

/* prepare/commit driven as checkpoints would: a read_committed reader sees a checkpoint's
 * records once it completed, never before, never twice; with every producer of the pool
 * waiting for its checkpoint the records after the next barriers are held, a segment per
 * barrier, and committed with their own checkpoints; what a closed writer left open is
 * aborted and never seen (a read_uncommitted reader shows it was written). */
Test(kafka_connectors, transactional_sink_commits_completed_checkpoints_only)
{
    const char *topic;
    char err[512] = "", stats[512];
    kp_sink_writer *w = t_tx_topic_sink("tx", 1000, NULL, &topic);
    int d;
    t_write_range(w, 0, 1000); /* A: checkpoint 1 */
    cr_assert_eq(w->prepare(w, 1, err, sizeof err), 0, "%s", err);
    t_write_range(w, 1000, 2000); /* B: checkpoint 2 */
    cr_assert_eq(w->prepare(w, 2, err, sizeof err), 0, "%s", err);
    t_write_range(w, 2000, 3000); /* C: open, then checkpoint 3 */
    cr_assert_eq(w->tick(w, err, sizeof err), 0, "%s", err);
    cr_expect_eq(t_committed(topic, 4000, 0, 3000, &d), 0, "visible before any commit");
    cr_assert_eq(w->commit(w, 1, err, sizeof err), 0, "%s", err);
    cr_expect_eq(t_committed(topic, 4000, 0, 1000, &d), 1000, "checkpoint 1 not all visible");
    cr_expect_eq(t_committed(topic, 4000, 1000, 3000, &d), 0, "checkpoint 2 visible early");
    cr_assert_eq(w->prepare(w, 3, err, sizeof err), 0, "%s", err);
    t_write_range(w, 3000, 3500); /* D: checkpoint 4, the pool's last idle producer */
    cr_assert_eq(w->prepare(w, 4, err, sizeof err), 0, "%s", err);
    t_write_range(w, 3500, 3800); /* E: held, checkpoint 5 */
    cr_assert_eq(w->prepare(w, 5, err, sizeof err), 0, "%s", err);
    t_write_range(w, 3800, 3900); /* F: held, open */
    w->stats(w, stats, sizeof stats);
    cr_expect(strstr(stats, "\"pending\":3},\"held\":400,") != NULL, "%s", stats);
    cr_assert_eq(w->commit(w, 3, err, sizeof err), 0, "%s", err); /* 2 and 3; E, F produced */
    cr_expect_eq(t_committed(topic, 4000, 0, 3000, &d), 3000);
    cr_expect_eq(t_committed(topic, 4000, 3000, 3900, &d), 0, "checkpoints 4, 5 visible early");
    cr_assert_eq(w->commit(w, 5, err, sizeof err), 0, "%s", err); /* 4 and 5 */
    cr_expect_eq(t_committed(topic, 4000, 0, 3800, &d), 3800);
    cr_expect_eq(t_committed(topic, 4000, 3800, 3900, &d), 0, "the open transaction visible");
    cr_expect_eq(d, 0, "%d duplicates", d);
    w->stats(w, stats, sizeof stats);
    cr_expect(strstr(stats, "\"committed\":5,\"aborted\":0,\"pending\":0},\"held\":0,"
                            "\"held_total\":400") != NULL,
              "%s", stats);
    w->close(w); /* F open: aborted */
    cr_expect_eq(t_committed(topic, 4000, 3800, 3900, &d), 0, "aborted records visible");
    t_seen all = {.hit = calloc(4000, 1), .n = 4000};
    t_read_iso(topic, T_PARTS, "read_uncommitted", t_check_doc, &all);
    int written = 0;
    for (int i = 0; i < 3900; i++)
        written += all.hit[i] > 0;
    cr_expect_eq(written, 3900, "read_uncommitted sees every record written");
    free(all.hit);
}

/* A second writer with the same transactional ids (the next attempt) fences the first: the
 * first's pending transaction is aborted and it can commit nothing any more. */
Test(kafka_connectors, transactional_sink_second_writer_fences_the_first)
{
    const char *topic;
    char err[512] = "";
    kp_sink_writer *w1 = t_tx_topic_sink("txfence", 1000, NULL, &topic);
    const char *uid = topic;
    t_write_range(w1, 0, 500);
    cr_assert_eq(w1->prepare(w1, 1, err, sizeof err), 0, "%s", err);
    t_write_range(w1, 500, 600);
    kp_sink_writer *w2 = t_tx_sink(topic, uid, 1000, NULL, err, sizeof err);
    cr_assert_not_null(w2, "open of the second writer: %s", err);
    err[0] = 0;
    cr_expect_eq(w1->commit(w1, 1, err, sizeof err), -1, "a fenced writer committed");
    cr_expect(err[0] != 0);
    t_write_range(w2, 1000, 1200);
    cr_assert_eq(w2->prepare(w2, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w2->commit(w2, 1, err, sizeof err), 0, "%s", err);
    int d;
    cr_expect_eq(t_committed(topic, 2000, 0, 1000, &d), 0, "the fenced writer's records");
    cr_expect_eq(t_committed(topic, 2000, 1000, 1200, &d), 200);
    cr_expect_eq(d, 0);
    w1->close(w1);
    w2->close(w2);
}

/* A transactional writer of subtask `subtask`, restored from `state` (NULL: fresh). */
static kp_sink_writer *t_tx_restore(const char *topic, const char *uid, int subtask,
                                    const kp_sink_state *state, char *err, size_t errlen)
{
    char uri[640];
    snprintf(uri, sizeof uri, "kafka:%s?brokers=%s&transactional=1", topic, t_brokers());
    kp_endpoint ep = {.name = "out",
                      .uri = uri,
                      .subtask = subtask,
                      .parallelism = subtask + 1,
                      .epoch = 1,
                      .job = "kc",
                      .uid = uid,
                      .checkpoint_interval_ms = 1000,
                      .restored_checkpoint = state ? 1 : 0,
                      .restored_state = state,
                      .nrestored_state = state ? 1 : 0};
    return kp_connector_find(uri)->open_sink(&ep, err, errlen);
}

typedef struct t_blob {
    char *data;
    size_t len;
} t_blob;

static int t_put(void *ctx, const void *data, size_t len)
{
    t_blob *b = ctx;
    free(b->data);
    b->data = malloc(len);
    memcpy(b->data, data, len);
    b->len = len;
    return 0;
}

static long long t_stat(kp_sink_writer *w, const char *key)
{
    char stats[512], k[64];
    w->stats(w, stats, sizeof stats);
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(stats, k);
    cr_assert_not_null(p, "%s not in %s", key, stats);
    return atoll(p + strlen(k));
}

/* The crash between a checkpoint's completion and the sink's commit: the restored writer
 * finds the checkpoint's transaction uncommitted (its marker group says so), fences the old
 * writer and re-sends the records the checkpoint kept; restored again from the same
 * checkpoint it re-sends nothing; records after the barrier are never seen (the sources
 * replay them). A restore at another parallelism takes over another subtask's ids. */
Test(kafka_connectors, transactional_sink_restore_finishes_what_a_crash_left)
{
    const char *topic = t_topic("txrec", T_PARTS);
    char err[512] = "", uid[160];
    snprintf(uid, sizeof uid, "%s", topic);
    t_blob b1 = {0}, b2 = {0};
    kp_sink_writer *w1 = t_tx_restore(topic, uid, 0, NULL, err, sizeof err);
    cr_assert_not_null(w1, "open: %s", err);
    t_write_range(w1, 0, 300); /* checkpoint 1, committed before the crash */
    cr_assert_eq(w1->prepare(w1, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w1->snapshot(w1, 1, t_put, &b1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w1->commit(w1, 1, err, sizeof err), 0, "%s", err);
    t_write_range(w1, 300, 400); /* checkpoint 2: completes, the crash comes before commit */
    cr_assert_eq(w1->prepare(w1, 2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w1->snapshot(w1, 2, t_put, &b2, err, sizeof err), 0, "%s", err);
    t_write_range(w1, 400, 450); /* after barrier 2: replayed by the sources, never kept */

    kp_sink_state st2 = {0, b2.data, b2.len};
    kp_sink_writer *w2 = t_tx_restore(topic, uid, 0, &st2, err, sizeof err);
    cr_assert_not_null(w2, "restore: %s", err);
    cr_expect_eq(t_stat(w2, "recovered"), 100);
    err[0] = 0;
    cr_expect_eq(w1->commit(w1, 2, err, sizeof err), -1, "the crashed writer still committed");
    int d;
    int v1 = t_committed(topic, 1000, 0, 400, &d);
    cr_expect_eq(v1, 400, "%d visible", v1);
    int v2 = t_committed(topic, 1000, 400, 450, &d);
    cr_expect_eq(v2, 0, "records after the barrier");
    cr_expect_eq(d, 0, "%d duplicates", d);
    w2->close(w2);
    w1->close(w1);

    /* restored again from checkpoint 2, and once from the older checkpoint 1: nothing again */
    kp_sink_state st1 = {0, b1.data, b1.len};
    const kp_sink_state *again[] = {&st2, &st1};
    for (int i = 0; i < 2; i++) {
        kp_sink_writer *w = t_tx_restore(topic, uid, 0, again[i], err, sizeof err);
        cr_assert_not_null(w, "restore %d: %s", i, err);
        cr_expect_eq(t_stat(w, "recovered"), 0, "restore %d re-sent committed records", i);
        w->close(w);
    }
    int v3 = t_committed(topic, 1000, 0, 450, &d);
    cr_expect_eq(v3, 400, "%d visible", v3);
    cr_expect_eq(d, 0, "%d duplicates", d);

    /* another parallelism: subtask 1's uncommitted checkpoint, restored by subtask 0 */
    t_blob b3 = {0};
    kp_sink_writer *o1 = t_tx_restore(topic, uid, 1, NULL, err, sizeof err);
    cr_assert_not_null(o1, "open subtask 1: %s", err);
    t_write_range(o1, 500, 600);
    cr_assert_eq(o1->prepare(o1, 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(o1->snapshot(o1, 3, t_put, &b3, err, sizeof err), 0, "%s", err);
    kp_sink_state st3 = {1, b3.data, b3.len};
    kp_sink_writer *n0 = t_tx_restore(topic, uid, 0, &st3, err, sizeof err);
    cr_assert_not_null(n0, "restore of subtask 1's state by subtask 0: %s", err);
    cr_expect_eq(t_stat(n0, "recovered"), 100);
    cr_expect_eq(o1->commit(o1, 3, err, sizeof err), -1, "subtask 1's zombie still committed");
    int v4 = t_committed(topic, 1000, 0, 1000, &d);
    cr_expect_eq(v4, 500, "%d visible", v4);
    cr_expect_eq(d, 0, "%d duplicates", d);
    n0->close(n0);
    o1->close(o1);
    /* checkpoint ids that start again (a savepoint restored into a new checkpoint
     * directory): checkpoint 1 of a later run after checkpoint 2 committed above is still
     * re-sent, because the marker counts the writer's transactions, not checkpoint ids */
    t_blob b4 = {0};
    kp_sink_writer *a = t_tx_restore(topic, uid, 0, NULL, err, sizeof err);
    cr_assert_not_null(a, "open: %s", err);
    t_write_range(a, 600, 700);
    cr_assert_eq(a->prepare(a, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(a->snapshot(a, 1, t_put, &b4, err, sizeof err), 0, "%s", err);
    kp_sink_state st4 = {0, b4.data, b4.len};
    kp_sink_writer *c = t_tx_restore(topic, uid, 0, &st4, err, sizeof err);
    cr_assert_not_null(c, "restore: %s", err);
    cr_expect_eq(t_stat(c, "recovered"), 100, "checkpoint 1 of the later run was not re-sent");
    int v5 = t_committed(topic, 1000, 0, 1000, &d);
    cr_expect_eq(v5, 600, "%d visible", v5);
    cr_expect_eq(d, 0, "%d duplicates", d);
    c->close(c);
    a->close(a);
    free(b4.data);
    /* state of another connector is a clear error */
    kp_sink_state junk = {0, "not a kafka state", 17};
    cr_expect_null(t_tx_restore(topic, uid, 0, &junk, err, sizeof err));
    cr_expect(strstr(err, "not a Kafka transactional sink's") != NULL, "%s", err);
    free(b1.data);
    free(b2.data);
    free(b3.data);
}

/* Failpoint kafka.mid_commit=error: commit() fails after the broker committed — the
 * checkpoint's records are visible, the writer reports the failure. */
Test(kafka_connectors, transactional_sink_mid_commit_failpoint)
{
    const char *topic;
    char err[512] = "";
    kp_sink_writer *w = t_tx_topic_sink("txfp", 1000, NULL, &topic);
    t_write_range(w, 0, 300);
    cr_assert_eq(w->prepare(w, 1, err, sizeof err), 0, "%s", err);
    setenv("KAPPA_FAILPOINTS", "kafka.mid_commit=error", 1);
    kp_failpoint_reload();
    int rc = w->commit(w, 1, err, sizeof err);
    unsetenv("KAPPA_FAILPOINTS");
    kp_failpoint_reload();
    cr_expect_eq(rc, -1);
    cr_expect(strstr(err, "failpoint kafka.mid_commit") != NULL, "%s", err);
    int d;
    cr_expect_eq(t_committed(topic, 400, 0, 300, &d), 300, "committed at the broker");
    w->close(w);
}

/* Without checkpoints the writer commits on its clock (commit_ms) and at flush. */
Test(kafka_connectors, transactional_sink_without_checkpoints_commits_by_itself)
{
    const char *topic;
    char err[512] = "";
    kp_sink_writer *w = t_tx_topic_sink("txclock", 0, "commit_ms=200", &topic);
    const char *uid = topic;
    t_write_range(w, 0, 100);
    for (int i = 0; i < 10; i++) { /* the subtask's clock: about every 100 ms */
        cr_assert_eq(w->tick(w, err, sizeof err), 0, "%s", err);
        usleep(100 * 1000);
    }
    int d;
    cr_expect_eq(t_committed(topic, 200, 0, 100, &d), 100, "not committed by the clock");
    t_write_range(w, 100, 150);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    cr_expect_eq(t_committed(topic, 200, 0, 150, &d), 150, "not committed by flush");
    cr_expect_eq(d, 0);
    w->close(w);
    /* bad options are clear errors */
    cr_expect_null(t_tx_sink(topic, uid, 0, "tx_pool=1", err, sizeof err));
    cr_expect(strstr(err, "tx_pool") != NULL, "%s", err);
    cr_expect_null(t_tx_sink(topic, uid, 60000, "transaction_timeout_ms=60000", err, sizeof err));
    cr_expect(strstr(err, "2 checkpoint intervals") != NULL, "%s", err);
}

/* ---- the CLI: memory under a stalled sink, live topics at -p 4 ---- */

static void t_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *t_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set: run through meson test (suite integration)", name);
    return v;
}

/* Produces `per_part` records to each of `parts` partitions; value(part, i, buf) writes the
 * value into buf (at least 1024 bytes) and returns its length. */
static void t_produce_values(const char *topic, int parts, int from, int to,
                             size_t (*value)(int part, int i, char *buf))
{
    rd_kafka_t *p = t_client(RD_KAFKA_PRODUCER, "linger.ms", "20");
    char val[1024];
    for (int i = from; i < to; i++)
        for (int part = 0; part < parts; part++) {
            size_t len = value(part, i, val);
            rd_kafka_resp_err_t e;
            while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_VALUE(val, len), RD_KAFKA_V_END)) ==
                   RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(p, 10);
            cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
        }
    cr_assert_eq(rd_kafka_flush(p, T_WAIT_MS), 0, "producer flush timed out");
    rd_kafka_destroy(p);
}

/* Starts `kappa run --local` with argv (NULL-terminated, after "run --local JOB"); output to
 * log. Returns the pid. */
static pid_t t_spawn(const char *job, const char *const *args, const char *log)
{
    static char cli[512], jobpath[512];
    snprintf(cli, sizeof cli, "%s", t_env("KAPPA_CLI"));
    snprintf(jobpath, sizeof jobpath, "%s/%s.so", t_env("KAPPA_JOBS"), job);
    const char *argv[64] = {cli, "run", "--local", jobpath};
    int n = 4;
    for (int i = 0; args[i]; i++) {
        cr_assert_lt(n, 62);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(cli, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* VmRSS of a live process in KiB, or -1 once it is gone. */
static long t_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* 1 if the child exited (status in *status), within ms. */
static int t_wait_exit(pid_t pid, long ms, int *status)
{
    for (long t = 0; t <= ms; t += 50) {
        if (waitpid(pid, status, WNOHANG) == pid)
            return 1;
        t_sleep_ms(50);
    }
    return 0;
}

static void t_show_log(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        cr_log_info("kappa: %s", line);
    if (f)
        fclose(f);
}

#define MEM_PARTS    32
#define MEM_PER_PART 8000
#define MEM_VALUE    600
#define MEM_BUDGET   64 /* MiB, the default memory_mb */

/* Not JSON: every record goes to the dead-letter output. */
static size_t t_garbage(int part, int i, char *buf)
{
    int n = snprintf(buf, 64, "not json %d:%d ", part, i);
    memset(buf + n, 'x', MEM_VALUE - (size_t)n);
    return MEM_VALUE;
}

/* Runs hourly_clicks over `topic` with its source stalled behind a dead-letter FIFO nobody
 * reads, for `ms`; returns the peak RSS in KiB. `extra` adds --conf flags. */
static long t_stalled_peak(const char *topic, const char *const *extra, long ms)
{
    char fifo[128], dead[160], src[256], log[128];
    snprintf(fifo, sizeof fifo, "/tmp/kappa-mem-fifo-%d", (int)getpid());
    snprintf(log, sizeof log, "/tmp/kappa-mem-%d.log", (int)getpid());
    unlink(fifo);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK); /* lets the writer open it; never read */
    cr_assert_geq(rd, 0);
    snprintf(dead, sizeof dead, "clicks=file:%s", fifo);
    snprintf(src, sizeof src, "clicks=kafka:%s", topic);
    const char *args[32] = {"--source",
                            src,
                            "--sink",
                            "hourly-click-index=file:/dev/null",
                            "--brokers",
                            t_brokers(),
                            "--from-earliest",
                            "--on-error",
                            "clicks=dead-letter",
                            "--dead-letter",
                            dead};
    int n = 11;
    for (int i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    pid_t pid = t_spawn("hourly_clicks", args, log);
    long peak = 0;
    for (long t = 0; t < ms; t += 100) {
        long kb = t_rss_kb(pid);
        if (kb < 0)
            break;
        peak = kb > peak ? kb : peak;
        t_sleep_ms(100);
    }
    int status = 0;
    int exited = waitpid(pid, &status, WNOHANG) == pid;
    if (exited)
        t_show_log(log);
    cr_assert(!exited, "kappa ended while its sink was stalled (status %d)", status);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(rd);
    unlink(fifo);
    unlink(log);
    return peak;
}

Test(kafka_connectors, read_ahead_stays_within_the_memory_budget_when_the_sink_stalls,
     .timeout = 600)
{
    const char *topic = t_topic("mem", MEM_PARTS);
    t_produce_values(topic, MEM_PARTS, 0, MEM_PER_PART, t_garbage);
    long payload_mb = (long)MEM_PARTS * MEM_PER_PART * MEM_VALUE >> 20;
    /* the rest of the process: code, libraries, the file source/sink buffers, thread stacks
     * touched, RocksDB's first allocations — measured at about 30 MiB */
    const long allowance_mb = 48;
    long peak = t_stalled_peak(topic, NULL, 20000);
    cr_log_info("stalled sink, %d partitions, %ld MiB in the topic: peak RSS %ld MiB (budget %d "
                "MiB + allowance %ld MiB)",
                MEM_PARTS, payload_mb, peak >> 10, MEM_BUDGET, allowance_mb);
    fprintf(stderr, "kafka memory: peak RSS %ld KiB with memory_mb=%d (topic %ld MiB)\n", peak,
            MEM_BUDGET, payload_mb);
    cr_assert_lt(peak >> 10, MEM_BUDGET + allowance_mb,
                 "peak RSS %ld MiB over the budget of %d MiB + %ld MiB", peak >> 10, MEM_BUDGET,
                 allowance_mb);
    /* control: librdkafka's read-ahead as it was (100k messages / 128 MiB per partition) */
    static const char *const old[] = {"--conf", "kafka.rdkafka.queued.min.messages=100000",
                                      "--conf", "kafka.rdkafka.queued.max.messages.kbytes=131072",
                                      "--conf", "kafka.rdkafka.max.partition.fetch.bytes=262144",
                                      "--conf", "kafka.rdkafka.fetch.max.bytes=8388608",
                                      NULL};
    long control = t_stalled_peak(topic, old, 20000);
    fprintf(stderr, "kafka memory: peak RSS %ld KiB with the old read-ahead settings\n", control);
    cr_assert_gt(control >> 10, MEM_BUDGET + allowance_mb,
                 "the control run stayed at %ld MiB: the test would not see unbounded read-ahead",
                 control >> 10);
}

/* A click per record: 3 partitions, event time spread over `hours` from T_BASE. */
static size_t t_click(int part, int i, char *buf)
{
    long long ts = T_BASE + (long long)i * 6000 + part; /* 10 events per partition a minute */
    return (size_t)snprintf(buf, 1024,
                            "{\"user_id\":\"user_%d\",\"item_id\":\"item_%d\",\"timestamp\":%lld}",
                            i % 17, (i + part) % 5, ts);
}

static int t_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

/* Appends a message's value and a newline to the FILE in arg. */
static void t_value_line(const rd_kafka_message_t *m, void *arg)
{
    fprintf(arg, "%.*s\n", (int)m->len, (const char *)m->payload);
}

/* The seed job Kafka -> Kafka through `kappa run --local -p 2` (two sink subtasks, two pools
 * of transactional ids) with the transactional sink and `extra` flags (NULL-terminated, up to
 * 8): a read_committed reader gets exactly the documents the same run writes into a file,
 * each once. `events` per partition of 3. Returns the transactions the sink subtasks
 * committed (from --stats). */
static long t_tx_run_local(const char *what, int events, const char *const *extra)
{
    const char *in = t_topic("txin", 3), *outt = t_topic("txout", 3);
    t_produce_values(in, 3, 0, events, t_click);
    char src[256], sink[400], truth[128], got[128], log[128], cmd[1024], line[512];
    snprintf(truth, sizeof truth, "/tmp/kappa-%s-%d.truth", what, (int)getpid());
    snprintf(got, sizeof got, "/tmp/kappa-%s-%d.got", what, (int)getpid());
    snprintf(log, sizeof log, "/tmp/kappa-%s-%d.log", what, (int)getpid());
    snprintf(src, sizeof src, "clicks=kafka:%s?stop_at=end", in);
    for (int run = 0; run < 2; run++) {
        if (run == 0)
            snprintf(sink, sizeof sink, "hourly-click-index=file:%s", truth);
        else
            snprintf(sink, sizeof sink, "hourly-click-index=kafka:%s?transactional=1", outt);
        const char *args[24] = {
            "-p",        "2",         "--source",        src,      "--sink", sink,
            "--brokers", t_brokers(), "--from-earliest", "--stats"};
        int n = 10;
        for (int i = 0; run == 1 && extra[i]; i++)
            args[n++] = extra[i];
        args[n] = NULL;
        int status = 0;
        pid_t pid = t_spawn("hourly_clicks", args, log);
        int exited = t_wait_exit(pid, 120000, &status);
        if (!exited || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (!exited) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
            }
            t_show_log(log);
            cr_assert_fail("%s: run %d did not finish cleanly", what, run);
        }
    }
    long committed = 0;
    FILE *lf = fopen(log, "r"); /* --stats: "transactions":{"committed":N,... per subtask */
    while (lf && fgets(line, sizeof line, lf))
        for (char *c = strstr(line, "\"committed\":"); c; c = strstr(c + 1, "\"committed\":"))
            committed += atol(c + strlen("\"committed\":"));
    if (lf)
        fclose(lf);
    FILE *f = fopen(got, "w");
    cr_assert_not_null(f);
    int n = t_read_iso(outt, 3, "read_committed", t_value_line, f);
    fclose(f);
    int want = t_lines(truth);
    cr_expect_gt(want, 0);
    cr_expect_eq(n, want, "%s: read_committed got %d documents, the file run wrote %d", what, n,
                 want);
    snprintf(cmd, sizeof cmd, "sort -o %s %s && sort -o %s %s && cmp -s %s %s", truth, truth, got,
             got, truth, got);
    cr_expect_eq(system(cmd), 0, "%s: the committed documents differ from the file run's (%s, %s)",
                 what, truth, got);
    fprintf(stderr, "%s: %d documents, %ld transactions committed\n", what, n, committed);
    unlink(truth);
    unlink(got);
    unlink(log);
    return committed;
}

/* No checkpoints: the sink commits on its clock and at end of input. */
Test(kafka_connectors, transactional_sink_through_run_local, .timeout = 300)
{
    const char *none[] = {NULL};
    cr_expect_geq(t_tx_run_local("txe2e", 1200, none), 2, "each sink subtask commits at the end");
}

/* Checkpoints every 50 ms: the sink commits when they complete (more transactions than the
 * two end-of-input commits), and the reader still sees each document once. */
Test(kafka_connectors, transactional_sink_with_checkpoints_through_run_local, .timeout = 300)
{
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/kappa-txckpt-%d", (int)getpid());
    const char *ckpt[] = {"--checkpoint-interval", "50ms", "--checkpoint-dir", dir, NULL};
    long committed = t_tx_run_local("txckpt", 60000, ckpt);
    cr_expect_gt(committed, 2, "no transaction was committed by a checkpoint");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Runs `kappa run --local click_copy.so` (stateless: every click copied, its id the record)
 * Kafka -> Kafka transactional at -p 2 with checkpoints every 400 ms (long enough for records
 * to reach the sinks before the first barrier, on a loaded machine too); restored from
 * `more` (NULL: a fresh run). A fresh run reads on past the topic's end (it ends by the
 * crash: a sink's end-of-input commit is outside checkpoints, see kafka_sink.c), a restored
 * one stops at the end. An environment variable `env` (NULL: none) for the run. Returns the
 * exit status (-1: killed after 120 s). */
static int t_copy_run(const char *in, const char *out, const char *dir, const char *more,
                      const char *env, const char *log)
{
    char src[256], sink[256];
    snprintf(src, sizeof src, "clicks=kafka:%s%s", in, more ? "?stop_at=end" : "");
    snprintf(sink, sizeof sink, "copies=kafka:%s?transactional=1", out);
    const char *args[24] = {"-p",
                            "2",
                            "--source",
                            src,
                            "--sink",
                            sink,
                            "--brokers",
                            t_brokers(),
                            "--from-earliest",
                            "--checkpoint-interval",
                            "400ms",
                            "--checkpoint-dir",
                            dir,
                            "--stats"};
    int n = 14;
    if (more) {
        args[n++] = "--from-checkpoint";
        args[n++] = more;
    }
    args[n] = NULL;
    if (env)
        setenv("KAPPA_FAILPOINTS", env, 1);
    pid_t pid = t_spawn("click_copy", args, log);
    unsetenv("KAPPA_FAILPOINTS");
    int status = 0;
    if (!t_wait_exit(pid, 120000, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Exactly once across a crash between a checkpoint's completion and the sinks' commit
 * (failpoint coord.after_complete_before_notify: the process exits 137 like kill -9 once a
 * checkpoint's metadata is durable, before any subtask hears of it): the run restored from
 * that checkpoint re-sends its uncommitted transactions, the sources go on from its
 * positions, and a read_committed reader sees every click exactly once. */
Test(kafka_connectors, transactional_sink_exactly_once_across_a_crash, .timeout = 300)
{
    enum { PER_PART = 40000 };
    const char *in = t_topic("txcrin", 3), *outt = t_topic("txcrout", 3);
    t_produce_values(in, 3, 0, PER_PART, t_click);
    char dir[128], from[200], log[128], got[128], cmd[512], out[64];
    snprintf(dir, sizeof dir, "/tmp/kappa-txcrash-%d", (int)getpid());
    snprintf(from, sizeof from, "%s/click_copy", dir);
    snprintf(log, sizeof log, "/tmp/kappa-txcrash-%d.log", (int)getpid());
    snprintf(got, sizeof got, "/tmp/kappa-txcrash-%d.got", (int)getpid());
    int rc = t_copy_run(in, outt, dir, NULL, "coord.after_complete_before_notify", log);
    if (rc != 137)
        t_show_log(log);
    cr_assert_eq(rc, 137, "the first run did not crash at the failpoint (exit %d)", rc);
    rc = t_copy_run(in, outt, dir, from, NULL, log);
    if (rc != 0)
        t_show_log(log);
    cr_assert_eq(rc, 0, "the restored run failed (exit %d)", rc);
    long long recovered = 0;
    FILE *lf = fopen(log, "r");
    char line[1024];
    while (lf && fgets(line, sizeof line, lf))
        for (char *c = strstr(line, "\"recovered\":"); c; c = strstr(c + 1, "\"recovered\":"))
            recovered += atoll(c + strlen("\"recovered\":"));
    if (lf)
        fclose(lf);
    FILE *f = fopen(got, "w");
    cr_assert_not_null(f);
    int n = t_read_iso(outt, 3, "read_committed", t_value_line, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "sort %s | uniq -d | wc -l", got);
    FILE *pf = popen(cmd, "r");
    cr_assert_not_null(pf);
    if (!fgets(out, sizeof out, pf))
        out[0] = 0;
    pclose(pf);
    out[strcspn(out, "\n")] = 0;
    fprintf(stderr, "crash: %d clicks read back of %d, %s duplicated, %lld re-sent at restore\n", n,
            3 * PER_PART, out, recovered);
    cr_expect_eq(atoll(out), 0, "%s clicks duplicated", out);
    cr_expect_eq(n, 3 * PER_PART, "read_committed got %d clicks of %d", n, 3 * PER_PART);
    cr_expect_gt(recovered, 0, "the crash left no transaction to re-send: the test proves little");
    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", dir, log, got);
    cr_expect_eq(system(cmd), 0);
}

/* Defect 1: with more source subtasks than partitions, a live topic (no stop_at) used to
 * livelock in watermark alignment: the subtask with no partition never published a
 * watermark. Results must flow while events are produced, and SIGINT must end the CLI. */
Test(kafka_connectors, live_topic_with_more_subtasks_than_partitions, .timeout = 300)
{
    const char *topic = t_topic("live", 3);
    t_produce_values(topic, 3, 0, 1200, t_click); /* 2 hours of event time */
    char src[256], sink[160], out[128], log[128];
    snprintf(out, sizeof out, "/tmp/kappa-live-%d.ndjson", (int)getpid());
    snprintf(log, sizeof log, "/tmp/kappa-live-%d.log", (int)getpid());
    snprintf(src, sizeof src, "clicks=kafka:%s", topic);
    snprintf(sink, sizeof sink, "hourly-click-index=file:%s", out);
    const char *args[] = {"-p",        "4",         "--source",        src, "--sink", sink,
                          "--brokers", t_brokers(), "--from-earliest", NULL};
    pid_t pid = t_spawn("hourly_clicks", args, log);
    int first = 0, status;
    for (int t = 0; t < 600 && first == 0 && waitpid(pid, &status, WNOHANG) == 0; t++) {
        first = t_lines(out);
        t_sleep_ms(100);
    }
    if (first == 0)
        t_show_log(log);
    cr_assert_gt(first, 0, "no window results within 60 s from a live 3-partition topic at -p 4");
    /* more events, live: later hours fire too */
    t_produce_values(topic, 3, 1200, 2400, t_click);
    int later = first;
    for (int t = 0; t < 600 && later == first; t++) {
        later = t_lines(out);
        t_sleep_ms(100);
    }
    cr_assert_gt(later, first, "no results for events produced while the job ran");
    cr_assert_eq(kill(pid, SIGINT), 0);
    int exited = t_wait_exit(pid, 30000, &status);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        t_show_log(log);
    }
    cr_assert(exited, "kappa run --local did not exit within 30 s of SIGINT");
    fprintf(stderr, "live -p 4: %d then %d results; after SIGINT: %s %d\n", first, later,
            WIFSIGNALED(status) ? "killed by signal" : "exit status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    unlink(out);
    unlink(log);
}
