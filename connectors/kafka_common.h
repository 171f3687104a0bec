/* What the Kafka source and sink share: building a librdkafka configuration from an endpoint's
 * options, logging without floods, and checking at open that the brokers answer and the
 * topic exists, so a misconfigured job fails in seconds with a message that says what to do
 * instead of hanging in librdkafka's reconnect loop. Internal to connectors/. */
#ifndef KP_KAFKA_COMMON_H
#define KP_KAFKA_COMMON_H

#include <pthread.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "../runtime/connector.h"

/* How long open() waits for the brokers' first answer before giving up. */
#define KP_KAFKA_OPEN_TIMEOUT_MS 10000

/* Per-handle state of the log and error callbacks (the handle's opaque points at it).
 * Callbacks may run on librdkafka threads: the fields are under `lock`. */
typedef struct kp_kafka_log {
    pthread_mutex_t lock;
    char who[200];           /* "kafka source 'clicks' (topic t, subtask 0)" */
    unsigned long long seen; /* bit per error kind already logged (err code hashed to 64) */
    int all_brokers_down;    /* RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN since the last reset */
    int fatal;               /* a fatal error was raised (rd_kafka_fatal_error has it) */
    char last_err[256];      /* the latest error's text */
} kp_kafka_log;

/* Starts a configuration for endpoint `ep`: bootstrap.servers from option `brokers` (copied
 * into `brokers`, required), client.id, the log/error callbacks bound to `log` (which must
 * outlive the handle; initialised here with `who`). The caller sets its own defaults and then
 * calls kp_kafka_conf_passthrough. Returns NULL with errstr on error.
 * @locality any thread @locks none */
rd_kafka_conf_t *kp_kafka_conf_new(const kp_endpoint *ep, kp_kafka_log *log, const char *who,
                                   char *brokers, size_t brokers_len, char *errstr, size_t errlen);

/* Applies every `rdkafka.<prop>=value` option (URI query first, then conf
 * `kafka.rdkafka.<prop>=value`) to conf, so users can tune librdkafka directly. Returns 0 or
 * -1 with errstr naming the bad property. */
int kp_kafka_conf_passthrough(const kp_endpoint *ep, rd_kafka_conf_t *conf, char *errstr,
                              size_t errlen);

/* Sets a property the connector relies on; -1 with errstr if librdkafka rejects it. */
int kp_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                      size_t errlen);

/* Waits (serving rk's main queue with rd_kafka_poll, so call it before
 * rd_kafka_poll_set_consumer) until the brokers return metadata for `topic`; stores its
 * partition count. Fails after KP_KAFKA_OPEN_TIMEOUT_MS, or after 2 s once librdkafka reports
 * every broker down, with "cannot reach Kafka at <brokers>: <why>"; fails at once with
 * "topic 'X' does not exist at <brokers> ..." when the topic is missing, and with "cancelled"
 * when ep's cancellation probe says so. @locality the thread that owns rk */
int kp_kafka_wait_topic(rd_kafka_t *rk, kp_kafka_log *log, const kp_endpoint *ep,
                        const char *brokers, const char *topic, int *partitions, char *errstr,
                        size_t errlen);

/* 1 if librdkafka raised a fatal error on this handle (read under the log's lock: the
 * error callback sets it on a librdkafka thread). @locality any thread @locks log->lock */
int kp_kafka_log_fatal(kp_kafka_log *log);

/* The memory budget of one source or sink subtask, in bytes: option `memory_mb` (URI, or
 * conf `kafka.memory_mb`), default KP_KAFKA_MEMORY_MB, from 4 to 65536. -1 with errstr if
 * the option is not such a number. @locality any thread */
#define KP_KAFKA_MEMORY_MB 64
long long kp_kafka_memory_budget(const kp_endpoint *ep, char *errstr, size_t errlen);

/* Integer option `key` (URI, else conf kafka.<key>) into *out, `def` when absent; -1 with
 * errstr naming the option and its range if it is not an integer in [min, max]. */
int kp_kafka_opt_long(const kp_endpoint *ep, const char *key, long def, long min, long max,
                      long *out, char *errstr, size_t errlen);

/* The offset group `group` committed for topic/partition (RD_KAFKA_OFFSET_INVALID: none), read
 * by a short-lived consumer of the endpoint's brokers. 0, or -1 with errstr.
 * @locality any thread */
int kp_kafka_group_offset(const char *brokers, const char *group, const char *topic,
                          int32_t partition, int64_t *offset, char *errstr, size_t errlen);

/* One metadata lookup of `topic` with a short timeout, for periodic partition discovery:
 * returns the partition count, 0 if the topic does not exist (the response said so), or -1
 * if the brokers did not answer in time. @locality the thread that owns rk */
int kp_kafka_partition_count(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int timeout_ms);

/* Logs `what` once per error kind per handle ("kappa: <who>: <what>"). Returns 1 if logged. */
int kp_kafka_log_once(kp_kafka_log *log, rd_kafka_resp_err_t err, const char *what);

void kp_kafka_log_destroy(kp_kafka_log *log);

/* The sink side of the `kafka` connector (kafka_sink.c); kafka_source.c defines the connector
 * struct kp_kafka_connector that names both. */
kp_sink_writer *kp_kafka_open_sink(const kp_endpoint *ep, char *errstr, size_t errlen);

#endif
