/* kp_kafka_stats_fetchq_bytes (connectors/kafka_mem.h): the read-ahead that --stats reports
 * for a Kafka source is the sum of the partitions' fetchq_size, plus librdkafka's per-message op
 * for each of their fetchq_cnt messages, in librdkafka's statistics. */
#include <criterion/criterion.h>
#include <string.h>

#include "kafka_mem.h"

static long long bytes_of(const char *json)
{
    return kp_kafka_stats_fetchq_bytes(json, strlen(json));
}

/* The shape librdkafka 2.x emits for a consumer (fields trimmed): one object per topic, one
 * per partition, the unassigned partition "-1" with an empty queue. */
Test(kafka_mem, sums_every_partition_of_every_topic)
{
    const char *json =
        "{\"name\":\"rdkafka#consumer-1\",\"type\":\"consumer\",\"msg_cnt\":0,\"msg_size\":0,"
        "\"brokers\":{\"127.0.0.1:9092/1\":{\"rx\":12,\"rxbytes\":900000}},"
        "\"topics\":{"
        "\"clicks\":{\"topic\":\"clicks\",\"partitions\":{"
        "\"0\":{\"partition\":0,\"fetchq_cnt\":10,\"fetchq_size\":1500},"
        "\"1\":{\"partition\":1,\"fetchq_cnt\":2,\"fetchq_size\":300},"
        "\"-1\":{\"partition\":-1,\"fetchq_cnt\":0,\"fetchq_size\":0}}},"
        "\"other\":{\"topic\":\"other\",\"partitions\":{"
        "\"3\":{\"partition\":3,\"fetchq_cnt\":1,\"fetchq_size\":4096}}}}}";
    cr_assert_eq(bytes_of(json), 1500 + 300 + 4096 + (10 + 2 + 1) * KP_KAFKA_MSG_OVERHEAD);
}

Test(kafka_mem, no_topic_yet_is_zero)
{
    cr_assert_eq(bytes_of("{\"name\":\"c\",\"topics\":{}}"), 0);
    cr_assert_eq(bytes_of("{\"topics\":{\"t\":{\"topic\":\"t\"}}}"), 0, "no partitions object");
}

Test(kafka_mem, other_documents_are_refused)
{
    cr_assert_eq(bytes_of("{\"name\":\"c\"}"), -1, "no topics");
    cr_assert_eq(bytes_of("{\"topics\":[1,2]}"), -1, "topics not an object");
    cr_assert_eq(bytes_of("{\"topics\":{"), -1, "truncated");
    cr_assert_eq(bytes_of(""), -1, "empty");
}
