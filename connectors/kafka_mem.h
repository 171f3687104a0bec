/* How much a Kafka consumer holds read ahead, measured from librdkafka's own statistics.
 *
 * The read-ahead is bounded by settings (kafka_source.c, "Memory"), but what librdkafka
 * actually holds is only visible in its statistics JSON, emitted every statistics.interval.ms
 * on the thread that polls the consumer: each partition's `fetchq_size` is the bytes of the
 * messages fetched and not yet consumed, and `fetchq_cnt` their number. Each fetched message
 * also costs librdkafka one op of KP_KAFKA_MSG_OVERHEAD bytes (rd_kafka_op_t, one malloc a
 * message; measured with heaptrack, librdkafka 2.0.2) — four times the payload of a 70-byte
 * record — so the read-ahead is fetchq_size + fetchq_cnt × that. The source samples the sum
 * once a second and keeps the peak, which `--stats` prints as the Kafka read-ahead row
 * (memory_budget.h). What it does not see: fetch responses in flight, the rest of a response
 * buffer pinned by a message not yet destroyed (messages point into it), and peaks between
 * two samples (docs/state.md, "Memory").
 *
 * @locality any thread; no state */
#ifndef KP_KAFKA_MEM_H
#define KP_KAFKA_MEM_H

#include <stddef.h>

/* librdkafka's heap bytes per fetched message besides its payload: a 296-byte op plus
 * glibc's 8-byte chunk header. */
#define KP_KAFKA_MSG_OVERHEAD 304

/* The sum of `fetchq_size` + `fetchq_cnt` × KP_KAFKA_MSG_OVERHEAD over every partition of every
 * topic in one statistics JSON of librdkafka; -1 when `json` is not such a document. */
long long kp_kafka_stats_fetchq_bytes(const char *json, size_t len);

#endif
