/* Waiting for a freshly created or grown Kafka topic to be usable: tests that create their own
 * topics (gen_kafka, kafka_connectors) each carried a copy of this metadata poll. Needs
 * librdkafka; Criterion asserts on misuse. */
#ifndef KP_TEST_KAFKA_WAIT_H
#define KP_TEST_KAFKA_WAIT_H

#include <librdkafka/rdkafka.h>

/* Polls the topic's metadata (5 s per request, 200 ms apart, at most `attempts` times) until the
 * broker reports exactly `partitions` partitions, each with a leader; fails the test otherwise. */
void kp_test_kafka_wait_partitions(rd_kafka_t *rk, const char *name, int partitions, int attempts);

#endif
