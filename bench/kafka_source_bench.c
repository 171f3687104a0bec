/* Kafka source throughput against a bare librdkafka consumer, in one run on one topic.
 *
 * Creates a topic (Admin API), fills it with M seed events by running kappa-gen, then times:
 *   (a) a bare librdkafka consumer (default settings, rd_kafka_consumer_poll, all partitions
 *       assigned) reading every partition to its end — what the client library alone does;
 *   (a') the same with the kappa source's fetch settings and the batch API — the fairest
 *       baseline: what the reader's own overhead plus decode costs over the library;
 *   (b) the kappa Kafka source reader (`kafka:T?stop_at=end`, one reader, all partitions)
 *       plus the engine's JSON decode of every event (kp_json_scan, item_id, timestamp) —
 *       what a kappa source subtask does before its records enter the chain;
 *   (c) optionally, with `full`, `kappa run --local hourly_clicks.so` on the same topic end to
 *       end (decode, key_by, hourly window, file sink), as a subprocess.
 * Each of (a), (a') and (b) runs three times, alternating, and the best time of each counts (the
 * broker's page cache and JIT are warm after the first pass; a 2-core machine is noisy).
 * The brokers also go into the URI of (c): `kappa run` does not yet pass --conf through to
 * connectors (exec.c leaves kp_subtask.conf unset). Prints events/s for each and the ratio (b)/(a).
 * Asserts nothing (STYLE.md rule 6). The topic is deleted at the end.
 *
 *     kafka_source_bench [brokers=$KAPPA_BROKERS] [events=2000000] [partitions=8] [full]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "../connectors/connectors.h"
#include "../runtime/connector.h"
#include "../runtime/json.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "kafka_source_bench: %s: %s\n", what, why);
    exit(1);
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err))
        die("conf", err);
    for (; kv && kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof err))
            die("conf", err);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk)
        die("rd_kafka_new", err);
    return rk;
}

static void admin_topic(const char *brokers, const char *topic, int partitions, int create)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    char why[512];
    if (create) {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, why, sizeof why);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_NewTopic_destroy(nt);
    } else {
        rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
        rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
        rd_kafka_DeleteTopic_destroy(dt);
    }
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev || rd_kafka_event_error(ev))
        die(create ? "create topic" : "delete topic",
            ev ? rd_kafka_event_error_string(ev) : "timed out");
    if (create) {
        size_t n;
        const rd_kafka_topic_result_t **r =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        if (n != 1 || rd_kafka_topic_result_error(r[0]))
            die("create topic", n ? rd_kafka_topic_result_error_string(r[0]) : "no result");
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    if (create)
        sleep(2); /* leaders elected */
}

/* (a) bare consumer: defaults + partition EOF events to know the end. */
static long long bare_consume(const char *brokers, const char *topic, int partitions, int tuned,
                              long long *bytes, double *span)
{
    /* clang-format off */
    const char *kv[] = {"group.id", "kappa-bench-bare", "enable.partition.eof", "true",
                        "enable.auto.commit", "false", NULL};
    /* the kappa source's fetch settings (kafka_source.c, configure) */
    const char *kv_tuned[] = {"group.id", "kappa-bench-bare", "enable.partition.eof", "true",
                              "enable.auto.commit", "false",
                              "max.partition.fetch.bytes", "262144",
                              "fetch.max.bytes", "8388608",
                              "fetch.wait.max.ms", "100",
                              "queued.min.messages", "200000",
                              "queued.max.messages.kbytes", "131072",
                              "check.crcs", "false", NULL};
    /* clang-format on */
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, tuned ? kv_tuned : kv);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    long long n = 0;
    int eofs = 0;
    *bytes = 0;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t *batch[256];
    double first = 0, last = 0;
    while (eofs < partitions) {
        ssize_t got = 1;
        if (tuned)
            got = rd_kafka_consume_batch_queue(q, 1000, batch, 256);
        else
            batch[0] = rd_kafka_consumer_poll(rk, 1000);
        for (ssize_t i = 0; i < got; i++) {
            rd_kafka_message_t *m = batch[i];
            if (!m)
                continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                eofs++;
            else if (!m->err) {
                if (!n++)
                    first = now_s();
                last = now_s();
                *bytes += (long long)m->len;
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    *span = last - first;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

/* (b) kappa source + decode; returns events decoded (bad ones counted separately). */
static long long kappa_consume(const char *brokers, const char *topic, long long *bad,
                               int64_t *tsum, double *span)
{
    char uri[512], err[512];
    snprintf(uri, sizeof uri, "kafka:%s?brokers=%s&stop_at=end&group=kappa-bench", topic, brokers);
    kp_endpoint ep = {.name = "clicks", .uri = uri, .parallelism = 1};
    kp_source_reader *r = kp_connector_find(uri)->open_source(&ep, err, sizeof err);
    if (!r)
        die("open kafka source", err);
    kp_raw raws[256];
    kp_json_doc doc;
    double first = 0, last = 0;
    long long n = 0;
    *bad = 0;
    *tsum = 0;
    for (;;) {
        int k = 0;
        kp_poll_rc rc = r->poll(r, raws, 256, &k, 100, err, sizeof err);
        if (rc == KP_POLL_ERROR)
            die("poll", err);
        if (rc == KP_POLL_EOF)
            break;
        if (k > 0 && first == 0)
            first = now_s();
        for (int i = 0; i < k; i++) {
            const char *jerr, *item;
            size_t item_len;
            int64_t ts;
            if (kp_json_scan(&doc, raws[i].value.ptr, raws[i].value.len, &jerr) != 0 ||
                kp_json_get_str(&doc, "item_id", 7, &item, &item_len) != 0 ||
                kp_json_get_int(&doc, "timestamp", 9, &ts) != 0) {
                (*bad)++;
                continue;
            }
            *tsum += ts + (int64_t)item_len;
            n++;
        }
        if (k > 0)
            last = now_s();
    }
    *span = last - first;
    r->close(r);
    return n;
}

int main(int argc, char **argv)
{
    const char *brokers = argc > 1 ? argv[1] : getenv("KAPPA_BROKERS");
    long long events = argc > 2 ? atoll(argv[2]) : 2000000;
    int partitions = argc > 3 ? atoi(argv[3]) : 8;
    int full = argc > 4 && !strcmp(argv[4], "full");
    if (!brokers || !*brokers)
        die("usage", "kafka_source_bench BROKERS [events] [partitions] [full] (or set "
                     "KAPPA_BROKERS)");
    kp_connectors_register_builtin();
    char topic[128];
    snprintf(topic, sizeof topic, "kappa-bench-%ld-%ld", (long)getpid(), (long)time(NULL));
    admin_topic(brokers, topic, partitions, 1);

    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s --brokers %s --topic %s --count %lld --items 100000 --out-of-order-ms 5000 "
             "--quiet",
             KAPPA_GEN_PATH, brokers, topic, events);
    double t0 = now_s();
    if (system(cmd) != 0)
        die("kappa-gen failed", cmd);
    printf("produced %lld events into %s (%d partitions) in %.1f s\n", events, topic, partitions,
           now_s() - t0);

    /* per run: wall time (open to close) and span (first to last record) */
    double wall[3] = {1e30, 1e30, 1e30}, span[3] = {1e30, 1e30, 1e30};
    const char *what[3] = {"(a)  bare consumer, defaults, consumer_poll       ",
                           "(a') bare consumer, kappa's fetch settings, batch",
                           "(b)  kappa source + JSON decode                  "};
    long long n[3] = {0}, bytes = 0, bad = 0;
    int64_t tsum = 0;
    for (int round = 0; round < 3; round++) {
        printf("round %d:", round + 1);
        for (int w = 0; w < 3; w++) {
            double sp;
            t0 = now_s();
            n[w] = w < 2 ? bare_consume(brokers, topic, partitions, w, &bytes, &sp)
                         : kappa_consume(brokers, topic, &bad, &tsum, &sp);
            double t = now_s() - t0;
            printf(" %s %.2f s (span %.2f s)", w == 0 ? "bare" : w == 1 ? "tuned" : "kappa", t, sp);
            wall[w] = t < wall[w] ? t : wall[w];
            span[w] = sp < span[w] ? sp : span[w];
        }
        printf("\n");
    }
    printf("\nbest of 3; 'wall' = open to close, 'span' = first to last record (steady state)\n");
    for (int w = 0; w < 3; w++)
        printf("%s: %9.0f events/s wall, %9.0f events/s span (%lld events)\n", what[w],
               n[w] / wall[w], n[w] / span[w], n[w]);
    printf("ratio (b)/(a): wall %.2f, span %.2f;  (b)/(a'): wall %.2f, span %.2f\n",
           wall[0] / wall[2], span[0] / span[2], wall[1] / wall[2], span[1] / span[2]);
    if (bad)
        printf("(%lld events did not decode)\n", bad);

    if (full) {
        snprintf(cmd, sizeof cmd,
                 "%s run --local %s --brokers %s --source 'clicks=kafka:%s?brokers=%s&stop_at=end' "
                 "--sink hourly-click-index=file:/tmp/kappa-bench-out-%ld.ndjson "
                 "--on-error clicks=skip >/dev/null",
                 KAPPA_CLI_PATH, KAPPA_JOB_PATH, brokers, topic, brokers, (long)getpid());
        t0 = now_s();
        int rc = system(cmd);
        double c = now_s() - t0;
        printf("kappa run --local hourly_clicks (end to end): %s, %.2f s, %.0f events/s\n",
               rc == 0 ? "ok" : "FAILED", c, events / c);
        snprintf(cmd, sizeof cmd, "rm -f /tmp/kappa-bench-out-%ld.ndjson", (long)getpid());
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove the output file\n");
    }
    admin_topic(brokers, topic, partitions, 0);
    return 0;
}
