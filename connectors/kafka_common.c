/* Configuration, logging and open-time checks shared by the Kafka source and sink (see
 * kafka_common.h).
 *
 * librdkafka retries connections forever and logs every failed attempt; a stream job wants
 * the opposite at the edges: fail fast at open when the brokers or the topic are wrong, and
 * once running, ride out broker restarts quietly. So open waits for metadata with a deadline,
 * and the log/error callbacks print each kind of problem once per handle. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/clock.h"
#include "kafka_common.h"

int kp_kafka_log_once(kp_kafka_log *log, rd_kafka_resp_err_t err, const char *what)
{
    unsigned long long bit = 1ull << ((unsigned)(err + 1000) % 64u);
    pthread_mutex_lock(&log->lock);
    int first = !(log->seen & bit);
    log->seen |= bit;
    pthread_mutex_unlock(&log->lock);
    if (first)
        fprintf(stderr, "kappa: %s: %s (further errors of this kind are not logged)\n", log->who,
                what);
    return first;
}

/* @locality librdkafka threads or the poller */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kp_kafka_log *log = opaque;
    pthread_mutex_lock(&log->lock);
    snprintf(log->last_err, sizeof log->last_err, "%s", reason);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        log->all_brokers_down = 1;
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        log->fatal = 1;
    pthread_mutex_unlock(&log->lock);
    char what[400];
    snprintf(what, sizeof what, "%s: %s", rd_kafka_err2name(err), reason);
    kp_kafka_log_once(log, err, what);
}

/* librdkafka's own log lines: warnings and worse, once per facility. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    kp_kafka_log *log = rd_kafka_opaque(rk);
    if (level > 4 || !log)
        return;
    unsigned h = 5381;
    for (const char *p = fac; *p; p++)
        h = h * 33 + (unsigned char)*p;
    unsigned long long bit = 1ull << (h % 64u);
    pthread_mutex_lock(&log->lock);
    int first = !(log->seen & bit);
    log->seen |= bit;
    pthread_mutex_unlock(&log->lock);
    if (first)
        fprintf(stderr, "kappa: %s: librdkafka %s: %s\n", log->who, fac, buf);
}

int kp_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                      size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(conf, key, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "librdkafka property %s=%s: %s", key, value, why);
        return -1;
    }
    return 0;
}

rd_kafka_conf_t *kp_kafka_conf_new(const kp_endpoint *ep, kp_kafka_log *log, const char *who,
                                   char *brokers, size_t brokers_len, char *errstr, size_t errlen)
{
    if (!kp_endpoint_get(ep, "brokers", brokers, brokers_len) || !*brokers) {
        snprintf(errstr, errlen,
                 "no Kafka brokers for '%s': add ?brokers=HOST:PORT to the URI or pass "
                 "--conf kafka.brokers=HOST:PORT",
                 ep->uri);
        return NULL;
    }
    memset(log, 0, sizeof *log);
    pthread_mutex_init(&log->lock, NULL);
    snprintf(log->who, sizeof log->who, "%s", who);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char client_id[160];
    snprintf(client_id, sizeof client_id, "kappa-%s-%d", ep->name ? ep->name : "endpoint",
             ep->subtask);
    if (kp_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "client.id", client_id, errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        kp_kafka_log_destroy(log);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;
}

int kp_kafka_conf_passthrough(const kp_endpoint *ep, rd_kafka_conf_t *conf, char *errstr,
                              size_t errlen)
{
    static const char prefix[] = "rdkafka.";
    const size_t plen = sizeof prefix - 1;
    char key[256], value[1024];
    /* URI query: ?rdkafka.fetch.wait.max.ms=10&... */
    const char *q = strchr(ep->uri, '?');
    while (q && *q) {
        q++;
        size_t n = strcspn(q, "&");
        size_t klen = strcspn(q, "=&");
        if (klen > plen && klen < sizeof key && !strncmp(q, prefix, plen)) {
            memcpy(key, q, klen);
            key[klen] = 0;
            if (kp_endpoint_get(ep, key, value, sizeof value) &&
                kp_kafka_conf_set(conf, key + plen, value, errstr, errlen) != 0)
                return -1;
        }
        q += n;
    }
    /* runner configuration: kafka.rdkafka.<prop>=value, unless the URI set the property */
    static const char cprefix[] = "kafka.rdkafka.";
    const size_t cplen = sizeof cprefix - 1;
    for (const char *const *c = ep->conf; c && *c; c++) {
        const char *eq = strchr(*c, '=');
        if (!eq || strncmp(*c, cprefix, cplen) || (size_t)(eq - *c) - 6 >= sizeof key)
            continue;
        snprintf(key, sizeof key, "%.*s", (int)(eq - *c - 6), *c + 6); /* "rdkafka.<prop>" */
        const char *qk = strstr(ep->uri, key);
        if (qk && strchr(ep->uri, '?') && qk > strchr(ep->uri, '?') &&
            (qk[-1] == '?' || qk[-1] == '&') && qk[strlen(key)] == '=')
            continue;
        if (kp_kafka_conf_set(conf, key + plen, eq + 1, errstr, errlen) != 0)
            return -1;
    }
    return 0;
}

int kp_kafka_partition_count(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    int n = -1;
    if (md->topic_cnt == 1) {
        rd_kafka_resp_err_t err = md->topics[0].err;
        if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
            n = 0;
        else if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            n = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

int kp_kafka_log_fatal(kp_kafka_log *log)
{
    pthread_mutex_lock(&log->lock);
    int fatal = log->fatal;
    pthread_mutex_unlock(&log->lock);
    return fatal;
}

long long kp_kafka_memory_budget(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    char v[32];
    if (!kp_endpoint_get(ep, "memory_mb", v, sizeof v))
        return (long long)KP_KAFKA_MEMORY_MB << 20;
    char *end;
    long long mb = strtoll(v, &end, 10);
    if (!*v || *end || mb < 4 || mb > 65536) {
        snprintf(errstr, errlen,
                 "memory_mb=%s: give the memory budget per subtask in MiB, an integer from 4 to "
                 "65536 (default %d)",
                 v, KP_KAFKA_MEMORY_MB);
        return -1;
    }
    return mb << 20;
}

int kp_kafka_opt_long(const kp_endpoint *ep, const char *key, long def, long min, long max,
                      long *out, char *errstr, size_t errlen)
{
    char v[64];
    *out = def;
    if (!kp_endpoint_get(ep, key, v, sizeof v))
        return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < min || x > max) {
        snprintf(errstr, errlen, "kafka: option %s must be an integer in [%ld, %ld], not '%s'", key,
                 min, max, v);
        return -1;
    }
    *out = x;
    return 0;
}

int kp_kafka_group_offset(const char *brokers, const char *group, const char *topic,
                          int32_t partition, int64_t *offset, char *errstr, size_t errlen)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kp_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "group.id", group, errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "cannot create a Kafka consumer: %s", why);
        return -1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, KP_KAFKA_OPEN_TIMEOUT_MS);
    if (!err)
        err = l->elems[0].err;
    *offset = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    if (err) {
        snprintf(errstr, errlen, "offsets of group %s at %s: %s", group, brokers,
                 rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

int kp_kafka_wait_topic(rd_kafka_t *rk, kp_kafka_log *log, const kp_endpoint *ep,
                        const char *brokers, const char *topic, int *partitions, char *errstr,
                        size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(errstr, errlen, "topic '%s': %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    long long start = kp_mono_ms(), down_since = -1;
    int rc = -1;
    for (;;) {
        int n = kp_kafka_partition_count(rk, rkt, 500);
        rd_kafka_poll(rk, 0); /* serve the error callback */
        if (n > 0) {
            *partitions = n;
            rc = 0;
            break;
        }
        if (n == 0) {
            snprintf(errstr, errlen,
                     "topic '%s' does not exist at %s (create it first, e.g. "
                     "deploy/dev/kafka topic-create %s PARTITIONS, or with kafka-topics.sh)",
                     topic, brokers, topic);
            break;
        }
        if (kp_endpoint_cancelled(ep->cancelled, ep->cancel_arg)) {
            snprintf(errstr, errlen, "cancelled while waiting for Kafka at %s", brokers);
            break;
        }
        long long now = kp_mono_ms();
        pthread_mutex_lock(&log->lock);
        int down = log->all_brokers_down;
        char why[256];
        snprintf(why, sizeof why, "%s", log->last_err[0] ? log->last_err : "no answer");
        pthread_mutex_unlock(&log->lock);
        if (down && down_since < 0)
            down_since = now;
        if (now - start >= KP_KAFKA_OPEN_TIMEOUT_MS ||
            (down_since >= 0 && now - down_since >= 2000)) {
            snprintf(errstr, errlen,
                     "cannot reach Kafka at %s: %s (is the broker running? check the brokers "
                     "option)",
                     brokers, why);
            break;
        }
        if (n < 0 && now - start < 100)
            continue;
        struct timespec nap = {0, 50 * 1000000};
        nanosleep(&nap, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

void kp_kafka_log_destroy(kp_kafka_log *log)
{
    pthread_mutex_destroy(&log->lock);
}
