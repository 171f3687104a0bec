/* What the Kafka sink's transactional mode costs against its idempotent mode.
 *
 * The same documents (the seed job's output shape, ~110 bytes, ids and JSON built before the
 * clock starts) go through kp_kafka_open_sink's writer into a fresh 3-partition topic:
 *   - idempotent: write everything, one flush() at the end;
 *   - transactional, a checkpoint every `every` documents: prepare(c) then commit(c) at once
 *     (a checkpoint completing instantly: the commit round trip is on the writer's thread),
 *     and a last flush();
 *   - transactional, commit one checkpoint late: prepare(c) then commit(c - 1), as when the
 *     coordinator's notification arrives while the next interval already runs.
 * Modes take turns for `rounds` rounds; the best rate of each is printed with CPU seconds and
 * the time spent in commit/prepare. The transactional runs keep their records until commit
 * (the recovery copies: checkpoints are on); argv[4] adds URI options to them, e.g.
 * recoverable=0. Usage: KAPPA_BROKERS=127.0.0.1:9092
 * build/bench/kafka-sink-bench [docs] [every] [rounds] [options]. Prints figures, asserts
 * nothing (STYLE.md rule 6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "../runtime/connector.h"
#include "connectors.h"

static double now_s(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "kafka-sink-bench: %s: %s\n", what, why);
    exit(1);
}

/* A fresh topic with 3 partitions. */
static void create_topic(const char *brokers, const char *name)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) != RD_KAFKA_CONF_OK)
        die("conf", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("rd_kafka_new", err);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, 3, 1, err, sizeof err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev || rd_kafka_event_error(ev))
        die("CreateTopics", ev ? rd_kafka_event_error_string(ev) : "timeout");
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

typedef struct figures {
    double rate, cpu, ckpt_s;
} figures;

/* mode 0 idempotent, 1 commit at once, 2 commit one checkpoint late */
static const char *extra_opts = ""; /* argv[4]: more URI options for the transactional runs */

static figures run(const char *brokers, int mode, int n, int every, char **ids, char **docs,
                   int round)
{
    char topic[128], uri[512], uid[64], err[512];
    snprintf(topic, sizeof topic, "kappa-sink-bench-%d-%d-%d", (int)getpid(), mode, round);
    create_topic(brokers, topic);
    snprintf(uri, sizeof uri, "kafka:%s?brokers=%s%s%s%s", topic, brokers,
             mode ? "&transactional=1" : "", mode && *extra_opts ? "&" : "",
             mode ? extra_opts : "");
    snprintf(uid, sizeof uid, "bench-%d-%d-%d", (int)getpid(), mode, round);
    kp_endpoint ep = {.name = "out",
                      .uri = uri,
                      .parallelism = 1,
                      .epoch = 1,
                      .job = "bench",
                      .uid = uid,
                      .checkpoint_interval_ms = mode ? 1000 : 0};
    kp_sink_writer *w = kp_connector_find(uri)->open_sink(&ep, err, sizeof err);
    if (!w)
        die("open", err);
    figures f = {0};
    double t0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    int64_t ckpt = 0;
    for (int i = 0; i < n; i++) {
        kp_bytes id = {ids[i], strlen(ids[i])}, doc = {docs[i], strlen(docs[i])};
        if (w->write(w, id, doc, 1700000000000LL + i, err, sizeof err) != 0)
            die("write", err);
        if (mode && (i + 1) % every == 0) {
            double s = now_s(CLOCK_MONOTONIC);
            ckpt++;
            if (w->prepare(w, ckpt, err, sizeof err) != 0)
                die("prepare", err);
            if ((mode == 1 || ckpt > 1) &&
                w->commit(w, mode == 1 ? ckpt : ckpt - 1, err, sizeof err) != 0)
                die("commit", err);
            f.ckpt_s += now_s(CLOCK_MONOTONIC) - s;
        }
    }
    if (w->flush(w, err, sizeof err) != 0)
        die("flush", err);
    double el = now_s(CLOCK_MONOTONIC) - t0;
    f.cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    f.rate = n / el;
    w->close(w);
    return f;
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAPPA_BROKERS");
    if (!brokers || !*brokers)
        die("KAPPA_BROKERS", "not set (e.g. tests/integration/with-services build/bench/...)");
    int n = argc > 1 ? atoi(argv[1]) : 500000;
    int every = argc > 2 ? atoi(argv[2]) : 50000;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    if (argc > 4)
        extra_opts = argv[4];
    kp_connectors_register_builtin();
    char **ids = malloc(sizeof *ids * (size_t)n), **docs = malloc(sizeof *docs * (size_t)n);
    for (int i = 0; i < n; i++) {
        char b[160];
        snprintf(b, sizeof b, "item-%d|%lld", i % 5000, 1700003600000LL + 3600000LL * (i / 5000));
        ids[i] = strdup(b);
        snprintf(b, sizeof b,
                 "{\"item_id\":\"item-%d\",\"click_count\":%d,\"window_start\":%lld,"
                 "\"window_end\":%lld}",
                 i % 5000, i % 977, 1700000000000LL + 3600000LL * (i / 5000),
                 1700003600000LL + 3600000LL * (i / 5000));
        docs[i] = strdup(b);
    }
    static const char *const names[] = {"idempotent", "transactional, commit at once",
                                        "transactional, commit 1 late"};
    figures best[3] = {{0}};
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < 3; m++) {
            int mode = (m + r) % 3;
            figures f = run(brokers, mode, n, every, ids, docs, r);
            fprintf(stderr, "round %d %-30s %9.0f docs/s  cpu %.2f s  prepare+commit %.3f s\n", r,
                    names[mode], f.rate, f.cpu, f.ckpt_s);
            if (f.rate > best[mode].rate)
                best[mode] = f;
        }
    double load[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = -1;
        fclose(la);
    }
    printf(
        "kafka sink, %d documents, a checkpoint every %d, best of %d, options '%s' (load %.2f):\n",
        n, every, rounds, extra_opts, load[0]);
    for (int m = 0; m < 3; m++)
        printf("  %-30s %9.0f docs/s  (%.2fx idempotent)  cpu %.2f s  prepare+commit %.3f s\n",
               names[m], best[m].rate, best[m].rate / best[0].rate, best[m].cpu, best[m].ckpt_s);
    for (int i = 0; i < n; i++) {
        free(ids[i]);
        free(docs[i]);
    }
    free(ids);
    free(docs);
    return 0;
}
