/* Kafka as a sink: `kafka:TOPIC?brokers=H:P`. Each document becomes one message, key = the
 * document id, value = the document, timestamp = the document's event time; the Java-
 * compatible murmur2 partitioner puts equal ids on the same partition.
 *
 * The producer is idempotent (enable.idempotence=true, hence acks=all): librdkafka's retries
 * never duplicate or reorder a message within a partition. write() hands the message to
 * librdkafka (copying it: the engine reuses its buffers), and when librdkafka's queue is full
 * it serves delivery reports until there is room — that is the sink's backpressure. Delivery
 * reports count failures and keep the first error; flush() waits until every message is
 * acknowledged and fails if any delivery failed since the previous flush, so a checkpoint
 * can never complete over lost output.
 *
 * Memory: librdkafka's queue of messages not yet acknowledged is bounded by the subtask's
 * budget, option `memory_mb` (URI, or --conf kafka.memory_mb; default 64 MiB):
 * queue.buffering.max.kbytes = budget / 2, queue.buffering.max.messages = budget / 2 / 256
 * (librdkafka keeps ~250 bytes of bookkeeping per message besides its copy of it); the other
 * half covers that bookkeeping and the batches being sent. rdkafka.* options override them.
 *
 * Cancellation: every wait (a full queue, flush, close) is in steps of at most 100 ms and
 * asks the endpoint's cancellation probe between them; once the job is cancelled write() and
 * flush() fail with "cancelled" and close() abandons what is still queued (the replay from
 * the last checkpoint rewrites it). tick() serves delivery reports in a live job, and fails
 * the job as soon as a delivery failed (or librdkafka raised a fatal error).
 *
 * As a dead-letter output (write_raw) the message is the failed record itself — its key and
 * raw value bytes — with headers kappa.source (origin topic or file), kappa.partition,
 * kappa.offset and kappa.error.
 *
 * Exactly-once (design, not implemented yet; the checkpoint issue wires it). Each sink subtask
 * gets transactional.id = "kappa-<job>-<sink uid>-<subtask>" — stable across restarts, so a
 * new attempt's init_transactions() fences the zombie producer of the previous one and aborts
 * its open transaction. The endpoint's epoch goes into the transaction's first message
 * headers for diagnostics only; fencing comes from the broker's producer epoch. The writer
 * keeps one transaction open per checkpoint interval: begin_transaction() after init and
 * after every commit; at a barrier, flush() becomes "produce everything, then pre-commit"
 * (rd_kafka_flush — the transaction is not committed yet) and the snapshot records
 * {transactional.id, producer id, epoch}; when the checkpoint coordinator reports the
 * checkpoint complete, commit_transaction(). On restore, a transaction that was pre-committed
 * by the restored checkpoint but not yet committed is committed by resuming it with the
 * saved producer id/epoch (as Flink's FlinkKafkaProducer does via reflection; librdkafka
 * would need the equivalent of KIP-939 two-phase commit, or we commit at barrier time and
 * accept at-least-once for the last checkpoint until it lands); otherwise it is aborted. A
 * checkpoint interval must stay below transaction.timeout.ms. Readers use read_committed,
 * the source's default. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_common.h"

typedef struct kafka_writer {
    kp_sink_writer w;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    kp_kafka_log log;
    char topic[256], brokers[512];
    long long sent, delivered, failed; /* delivery reports: served on the writer's thread */
    long long failed_at_flush;         /* failures already reported by a flush */
    char first_error[512];             /* first failure since the last flush */
    unsigned since_poll;
    int (*cancelled)(void *); /* the endpoint's cancellation probe */
    void *cancel_arg;
} kafka_writer;

static int cancelled(kafka_writer *k, const char *while_, char *errstr, size_t errlen)
{
    if (!kp_endpoint_cancelled(k->cancelled, k->cancel_arg))
        return 0;
    snprintf(errstr, errlen, "kafka sink for '%s': cancelled while %s", k->topic, while_);
    return -1;
}

/* Delivery report. @locality the writer's thread, inside rd_kafka_poll / rd_kafka_flush */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_writer *k = m->_private; /* per-message opaque */
    if (!k)
        return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->delivered++;
        return;
    }
    if (k->failed++ == k->failed_at_flush)
        snprintf(k->first_error, sizeof k->first_error,
                 "delivery to topic '%s' partition %d failed: %s", k->topic, (int)m->partition,
                 rd_kafka_err2str(m->err));
}

static int check_fatal(kafka_writer *k, char *errstr, size_t errlen)
{
    char why[512];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(k->rk, why, sizeof why);
    if (!err)
        return 0;
    snprintf(errstr, errlen, "kafka producer for '%s' failed: %s: %s", k->topic,
             rd_kafka_err2name(err), why);
    return -1;
}

/* Produces one message (copied), waiting for room while librdkafka's queue is full. */
static int produce(kafka_writer *k, const void *key, size_t key_len, const void *value,
                   size_t value_len, kp_time ts, rd_kafka_headers_t *hdrs, char *errstr,
                   size_t errlen)
{
    for (;;) {
        rd_kafka_resp_err_t err;
        if (hdrs)
            err = rd_kafka_producev(
                k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
                RD_KAFKA_V_TIMESTAMP(ts != KP_TIME_MIN && ts > 0 ? ts : 0),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(k), RD_KAFKA_V_END);
        else
            err = rd_kafka_producev(
                k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
                RD_KAFKA_V_TIMESTAMP(ts != KP_TIME_MIN && ts > 0 ? ts : 0), RD_KAFKA_V_OPAQUE(k),
                RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            k->sent++;
            if (++k->since_poll >= 1024) { /* serve delivery reports now and then */
                k->since_poll = 0;
                rd_kafka_poll(k->rk, 0);
            }
            return 0;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            snprintf(errstr, errlen, "producing to topic '%s': %s", k->topic,
                     rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(k->rk, 100); /* backpressure: wait for deliveries to make room */
        if (check_fatal(k, errstr, errlen) != 0 ||
            cancelled(k, "waiting for room in the producer queue", errstr, errlen) != 0) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            return -1;
        }
    }
}

static int kafka_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                       size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    return produce(k, id.ptr, id.len, doc.ptr, doc.len, ts, NULL, errstr, errlen);
}

static int kafka_write_raw(kp_sink_writer *w, const kp_raw *raw, const char *origin,
                           const char *error, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    char part[16], off[24];
    snprintf(part, sizeof part, "%d", (int)raw->partition);
    snprintf(off, sizeof off, "%" PRId64, raw->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "kappa.source", -1, origin ? origin : "", -1);
    rd_kafka_header_add(h, "kappa.partition", -1, part, -1);
    rd_kafka_header_add(h, "kappa.offset", -1, off, -1);
    rd_kafka_header_add(h, "kappa.error", -1, error ? error : "", -1);
    /* on success the message owns the headers */
    return produce(k, raw->key.ptr, raw->key.len, raw->value.ptr, raw->value.len, raw->ts, h,
                   errstr, errlen);
}

/* -1 with the first error if deliveries failed since the last report. */
static int delivery_failed(kafka_writer *k, char *errstr, size_t errlen)
{
    if (k->failed == k->failed_at_flush)
        return 0;
    snprintf(errstr, errlen, "%lld message(s) to Kafka failed since the last flush; first: %s",
             k->failed - k->failed_at_flush, k->first_error);
    k->failed_at_flush = k->failed;
    return -1;
}

static int kafka_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    while (rd_kafka_outq_len(k->rk) > 0) {
        rd_kafka_flush(k->rk, 100);
        if (check_fatal(k, errstr, errlen) != 0 ||
            cancelled(k, "waiting for acknowledgements (flush)", errstr, errlen) != 0)
            return -1;
    }
    rd_kafka_poll(k->rk, 0);
    k->since_poll = 0;
    return delivery_failed(k, errstr, errlen);
}

/* The clock's turn: serve delivery reports without waiting; fail once a delivery failed. */
static int kafka_tick(kp_sink_writer *w, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    rd_kafka_poll(k->rk, 0);
    k->since_poll = 0;
    if (check_fatal(k, errstr, errlen) != 0)
        return -1;
    return delivery_failed(k, errstr, errlen);
}

static size_t kafka_sink_stats(kp_sink_writer *w, char *buf, size_t len)
{
    kafka_writer *k = (kafka_writer *)w;
    int n = snprintf(buf, len, "{\"sent\":%lld,\"delivered\":%lld,\"failed\":%lld}", k->sent,
                     k->delivered, k->failed);
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : (len ? len - 1 : 0);
}

static void kafka_writer_close(kp_sink_writer *w)
{
    kafka_writer *k = (kafka_writer *)w;
    if (k->rk) {
        /* best effort, for up to 10 s unless the job is cancelled: flush() is where losses
         * are reported */
        char err[400];
        for (int i = 0; i < 100 && rd_kafka_outq_len(k->rk) > 0; i++)
            if (rd_kafka_flush(k->rk, 100) == RD_KAFKA_RESP_ERR_NO_ERROR ||
                cancelled(k, "closing", err, sizeof err) != 0)
                break;
        if (rd_kafka_outq_len(k->rk) > 0) {
            fprintf(stderr, "kappa: %s: %d message(s) still undelivered at close\n", k->log.who,
                    rd_kafka_outq_len(k->rk));
            rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_poll(k->rk, 0); /* their (failed) delivery reports */
        }
        if (k->rkt)
            rd_kafka_topic_destroy(k->rkt);
        rd_kafka_destroy(k->rk);
    }
    kp_kafka_log_destroy(&k->log);
    free(k);
}

kp_sink_writer *kp_kafka_open_sink(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    kafka_writer *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    k->w = (kp_sink_writer){.write = kafka_write,
                            .flush = kafka_flush,
                            .close = kafka_writer_close,
                            .stats = kafka_sink_stats,
                            .write_raw = kafka_write_raw,
                            .tick = kafka_tick};
    k->cancelled = ep->cancelled;
    k->cancel_arg = ep->cancel_arg;
    kp_endpoint_target(ep, k->topic, sizeof k->topic);
    if (!k->topic[0]) {
        snprintf(errstr, errlen, "'%s' names no topic: use kafka:TOPIC", ep->uri);
        free(k);
        return NULL;
    }
    char who[200];
    snprintf(who, sizeof who, "kafka sink '%.60s' (topic %.80s, subtask %d)",
             ep->name ? ep->name : "?", k->topic, ep->subtask);
    rd_kafka_conf_t *conf =
        kp_kafka_conf_new(ep, &k->log, who, k->brokers, sizeof k->brokers, errstr, errlen);
    if (!conf) {
        free(k);
        return NULL;
    }
    long long bytes = kp_kafka_memory_budget(ep, errstr, errlen);
    if (bytes < 0)
        goto fail_conf;
    char queue_kb[24], queue_msgs[24];
    snprintf(queue_kb, sizeof queue_kb, "%lld", bytes / 2 / 1024);
    snprintf(queue_msgs, sizeof queue_msgs, "%lld",
             bytes / 2 / 256 < 10000000 ? bytes / 2 / 256 : 10000000);
    const char *kv[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"batch.size", "1000000"},
        {"queue.buffering.max.kbytes", queue_kb},
        {"queue.buffering.max.messages", queue_msgs},
        {"partitioner", "murmur2_random"},
        {"reconnect.backoff.max.ms", "1000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (kp_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, errlen) != 0)
            goto fail_conf;
    if (kp_kafka_conf_passthrough(ep, conf, errstr, errlen) != 0)
        goto fail_conf;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char why[512];
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!k->rk) {
        snprintf(errstr, errlen, "cannot create a Kafka producer: %s", why);
        goto fail_conf;
    }
    int parts;
    if (kp_kafka_wait_topic(k->rk, &k->log, ep, k->brokers, k->topic, &parts, errstr, errlen) != 0)
        goto fail;
    k->rkt = rd_kafka_topic_new(k->rk, k->topic, NULL);
    if (!k->rkt) {
        snprintf(errstr, errlen, "topic '%s': %s", k->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    return &k->w;
fail_conf:
    rd_kafka_conf_destroy(conf);
    kp_kafka_log_destroy(&k->log);
    free(k);
    return NULL;
fail:
    kafka_writer_close(&k->w);
    return NULL;
}
