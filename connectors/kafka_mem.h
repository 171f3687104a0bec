/* How much a Kafka consumer holds read ahead, measured from librdkafka's own statistics.
 *
 * The read-ahead is bounded by settings (kafka_source.c, "Memory"), but what librdkafka
 * actually holds is only visible in its statistics JSON, emitted every statistics.interval.ms
 * on the thread that polls the consumer: each partition's `fetchq_size` is the bytes of the
 * messages fetched and not yet consumed. The source samples their sum once a second and
 * keeps the peak, which `--stats` prints as the Kafka read-ahead row (memory_budget.h).
 * What the sum does not see: librdkafka's per-message bookkeeping (~250 bytes a message),
 * fetch responses in flight and buffers pinned by a message not yet destroyed.
 *
 * @locality any thread; no state */
#ifndef KP_KAFKA_MEM_H
#define KP_KAFKA_MEM_H

#include <stddef.h>

/* The sum of `fetchq_size` over every partition of every topic in one statistics JSON of
 * librdkafka; -1 when `json` is not such a document. */
long long kp_kafka_stats_fetchq_bytes(const char *json, size_t len);

#endif
