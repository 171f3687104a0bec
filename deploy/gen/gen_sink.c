/*
 * kappa-gen's outputs: an NDJSON file (or stdout) for local runs, a Kafka topic, or nothing
 * (--dry-run: only the truth and the summary, e.g. the truth of another filter over a topic
 * that was already filled).
 *
 * Like Redis's rio, a sink is a small struct of function pointers so main.c writes events
 * without caring where they go. Both sinks copy each event out of the caller's reused buffer
 * at once: the file sink into one fixed 1 MiB buffer, the Kafka sink into librdkafka
 * (RD_KAFKA_MSG_F_COPY), so the generator itself allocates nothing per event.
 *
 * The Kafka producer is idempotent with acks=all (no loss, no duplicates on retries, order
 * kept per partition), keyed by user_id, and sends every event to the partition kappa-gen chose
 * (ev->partition): the truth judges lateness per partition, so the placement must not be left
 * to the client. With --partitioner hash that partition is Java's murmur2 of the key, what a
 * Java producer, or librdkafka/kcat with partitioner=murmur2_random, would pick. A full local queue is handled by serving delivery reports and retrying. The broker
 * is probed with a metadata request before the first event, so a wrong address fails in
 * seconds with its name in the message instead of after message.timeout.ms.
 */
#include "gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define KP_GEN_FILE_BUF         (1 << 20)
#define KP_GEN_PROBE_TIMEOUT_MS 10000
#define KP_GEN_MSG_TIMEOUT_MS   "30000"
#define KP_GEN_FLUSH_TIMEOUT_MS 60000
#define KP_GEN_POLL_EVERY       1024

struct kp_gen_sink_s {
    int (*put)(kp_gen_sink_t *s, const kp_gen_event_t *ev, char *errstr, size_t errstr_size);
    int (*close)(kp_gen_sink_t *s);
    kp_gen_sink_stats_t stats;
    /* file */
    FILE *f;
    const char *path;
    char *buf;
    size_t buf_len;
    /* kafka */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    const char *brokers;
    uint64_t produced;
    int32_t partition_cnt; /* the topic's, from the probe */
    bool paced;            /* --rate: serve callbacks after every event */
    volatile int fatal;
};

/* ---- file sink ---- */

static int kp_gen_file_drain(kp_gen_sink_t *s)
{
    if (s->buf_len > 0 && fwrite(s->buf, 1, s->buf_len, s->f) != s->buf_len)
        return -1;
    s->buf_len = 0;
    return 0;
}

static int kp_gen_file_put(kp_gen_sink_t *s, const kp_gen_event_t *ev, char *errstr,
                           size_t errstr_size)
{
    if (s->buf_len + ev->line_len + 1 > KP_GEN_FILE_BUF && kp_gen_file_drain(s) != 0) {
        snprintf(errstr, errstr_size, "cannot write %s: %s", s->path, strerror(errno));
        return -1;
    }
    memcpy(s->buf + s->buf_len, ev->line, ev->line_len);
    s->buf_len += ev->line_len;
    s->buf[s->buf_len++] = '\n';
    s->stats.written++;
    return 0;
}

static int kp_gen_file_close(kp_gen_sink_t *s)
{
    int rc = kp_gen_file_drain(s);
    if (fflush(s->f) != 0 || ferror(s->f))
        rc = -1;
    if (s->f != stdout && fclose(s->f) != 0)
        rc = -1;
    if (rc != 0) {
        snprintf(s->stats.first_error, sizeof(s->stats.first_error), "cannot write %s: %s", s->path,
                 strerror(errno));
        s->stats.failed = 1;
    }
    free(s->buf);
    return rc;
}

static kp_gen_sink_t *kp_gen_file_open(kp_gen_sink_t *s, const char *path, char *errstr,
                                       size_t errstr_size)
{
    s->path = path;
    s->f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    if (s->f == NULL) {
        snprintf(errstr, errstr_size, "cannot open %s for writing: %s", path, strerror(errno));
        return NULL;
    }
    s->buf = malloc(KP_GEN_FILE_BUF);
    if (s->buf == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        if (s->f != stdout)
            fclose(s->f);
        return NULL;
    }
    s->put = kp_gen_file_put;
    s->close = kp_gen_file_close;
    return s;
}

/* ---- kafka sink ---- */

/* @locality the thread calling rd_kafka_poll/flush, i.e. the main thread */
static void kp_gen_kafka_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    kp_gen_sink_t *s = opaque;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->stats.written++;
        return;
    }
    if (s->stats.failed++ == 0)
        snprintf(s->stats.first_error, sizeof(s->stats.first_error), "delivery to %s failed: %s",
                 s->brokers, rd_kafka_err2str(msg->err));
}

/* @locality the thread calling rd_kafka_poll/flush, i.e. the main thread */
static void kp_gen_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kp_gen_sink_t *s = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        s->fatal = 1;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        fprintf(stderr, "kappa-gen: all brokers down (%s): %s\n", s->brokers, reason);
}

static int kp_gen_kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                                 size_t errstr_size)
{
    char why[256];
    if (rd_kafka_conf_set(conf, k, v, why, sizeof(why)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(errstr, errstr_size, "bad producer property %s=%s: %s", k, v, why);
    return -1;
}

static rd_kafka_conf_t *kp_gen_kafka_conf(kp_gen_sink_t *s, const kp_gen_opts_t *o, char *errstr,
                                          size_t errstr_size)
{
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "10"},
        {"batch.num.messages", "100000"},
        {"queue.buffering.max.messages", "1000000"},
        {"message.timeout.ms", KP_GEN_MSG_TIMEOUT_MS},
        {"client.id", "kappa-gen"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = kp_gen_kafka_conf_set(conf, "bootstrap.servers", o->brokers, errstr, errstr_size);
    for (size_t i = 0; rc == 0 && i < sizeof(defaults) / sizeof(defaults[0]); i++)
        rc = kp_gen_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, errstr_size);
    for (int i = 0; rc == 0 && i < o->kafka_prop_cnt; i++) {
        char kv[512];
        snprintf(kv, sizeof(kv), "%s", o->kafka_props[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        rc = kp_gen_kafka_conf_set(conf, kv, eq + 1, errstr, errstr_size);
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, s);
    rd_kafka_conf_set_dr_msg_cb(conf, kp_gen_kafka_dr);
    rd_kafka_conf_set_error_cb(conf, kp_gen_kafka_error);
    return conf;
}

/* Ask the broker for the topic's metadata: fails fast and clearly on a wrong address or a
 * missing topic. Retries briefly while a just-created topic has no leader yet. */
static int kp_gen_kafka_probe(kp_gen_sink_t *s, const char *topic, char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < 20; attempt++) {
        const struct rd_kafka_metadata *md = NULL;
        err = rd_kafka_metadata(s->rk, 0, s->rkt, &md, KP_GEN_PROBE_TIMEOUT_MS);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size,
                     "cannot reach Kafka broker(s) %s: %s (is the broker running and the "
                     "address right?)",
                     s->brokers, rd_kafka_err2str(err));
            return -1;
        }
        err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt == 0)
            err = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            s->partition_cnt = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        usleep(250 * 1000);
    }
    snprintf(errstr, errstr_size,
             "topic %s on %s is not usable: %s (create it first, e.g. with 8 partitions)", topic,
             s->brokers, rd_kafka_err2str(err));
    return -1;
}

static int kp_gen_kafka_put(kp_gen_sink_t *s, const kp_gen_event_t *ev, char *errstr,
                            size_t errstr_size)
{
    for (;;) {
        if (s->fatal)
            break;
        if (rd_kafka_produce(s->rkt, ev->partition, RD_KAFKA_MSG_F_COPY, (void *)ev->line,
                             ev->line_len, ev->key, ev->key_len, NULL) == 0) {
            if (++s->produced % KP_GEN_POLL_EVERY == 0 || s->paced)
                rd_kafka_poll(s->rk, 0);
            return 0;
        }
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(errstr, errstr_size, "produce to %s failed: %s", s->brokers,
                     rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(s->rk, 10); /* serve delivery reports to make room */
    }
    char why[256];
    rd_kafka_fatal_error(s->rk, why, sizeof(why));
    snprintf(errstr, errstr_size, "fatal producer error (%s): %s", s->brokers, why);
    return -1;
}

static int kp_gen_kafka_close(kp_gen_sink_t *s)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(s->rk, KP_GEN_FLUSH_TIMEOUT_MS);
    int left = rd_kafka_outq_len(s->rk);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && left > 0) {
        if (s->stats.failed == 0)
            snprintf(s->stats.first_error, sizeof(s->stats.first_error),
                     "%d messages still undelivered to %s after %d s", left, s->brokers,
                     KP_GEN_FLUSH_TIMEOUT_MS / 1000);
        s->stats.failed += (uint64_t)left;
    }
    if (s->fatal && s->stats.failed == 0) {
        s->stats.failed = 1;
        rd_kafka_fatal_error(s->rk, s->stats.first_error, sizeof(s->stats.first_error));
    }
    rd_kafka_topic_destroy(s->rkt);
    rd_kafka_destroy(s->rk);
    return s->stats.failed == 0 ? 0 : -1;
}

static kp_gen_sink_t *kp_gen_kafka_open(kp_gen_sink_t *s, const kp_gen_opts_t *o, char *errstr,
                                        size_t errstr_size)
{
    s->brokers = o->brokers;
    s->paced = o->rate > 0;
    rd_kafka_conf_t *conf = kp_gen_kafka_conf(s, o, errstr, errstr_size);
    if (conf == NULL)
        return NULL;
    char why[512];
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (s->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create Kafka producer: %s", why);
        return NULL;
    }
    s->rkt = rd_kafka_topic_new(s->rk, o->topic, NULL);
    if (s->rkt == NULL || kp_gen_kafka_probe(s, o->topic, errstr, errstr_size) != 0) {
        if (s->rkt == NULL)
            snprintf(errstr, errstr_size, "bad topic %s: %s", o->topic,
                     rd_kafka_err2str(rd_kafka_last_error()));
        else
            rd_kafka_topic_destroy(s->rkt);
        rd_kafka_destroy(s->rk);
        return NULL;
    }
    s->put = kp_gen_kafka_put;
    s->close = kp_gen_kafka_close;
    return s;
}

/* ---- dry run: the events go nowhere ---- */

static int kp_gen_null_put(kp_gen_sink_t *s, const kp_gen_event_t *ev, char *errstr,
                           size_t errstr_size)
{
    (void)ev;
    (void)errstr;
    (void)errstr_size;
    s->stats.written++;
    return 0;
}

static int kp_gen_null_close(kp_gen_sink_t *s)
{
    (void)s;
    return 0;
}

/* ---- common ---- */

kp_gen_sink_t *kp_gen_sink_open(const kp_gen_opts_t *opts, char *errstr, size_t errstr_size)
{
    kp_gen_sink_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    kp_gen_sink_t *ok = s;
    if (opts->dry_run) {
        s->put = kp_gen_null_put;
        s->close = kp_gen_null_close;
    } else if (opts->output != NULL) {
        ok = kp_gen_file_open(s, opts->output, errstr, errstr_size);
    } else {
        ok = kp_gen_kafka_open(s, opts, errstr, errstr_size);
    }
    if (ok == NULL)
        free(s);
    return ok;
}

int kp_gen_sink_put(kp_gen_sink_t *s, const kp_gen_event_t *ev, char *errstr, size_t errstr_size)
{
    return s->put(s, ev, errstr, errstr_size);
}

int kp_gen_sink_close(kp_gen_sink_t *s, kp_gen_sink_stats_t *stats)
{
    if (s == NULL)
        return 0;
    int rc = s->close(s);
    *stats = s->stats;
    free(s);
    return rc;
}

bool kp_gen_sink_is_kafka(const kp_gen_sink_t *s)
{
    return s->rk != NULL;
}

int32_t kp_gen_sink_topic_partitions(const kp_gen_sink_t *s)
{
    return s->rk != NULL ? s->partition_cnt : 0;
}
