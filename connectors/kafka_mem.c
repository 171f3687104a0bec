/* Reading librdkafka's statistics for the bytes it holds read ahead; see kafka_mem.h. */
#include "kafka_mem.h"

#include <jansson.h>

long long kp_kafka_stats_fetchq_bytes(const char *json, size_t len)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *topics = json_object_get(root, "topics");
    if (!json_is_object(topics)) {
        json_decref(root);
        return -1;
    }
    long long sum = 0;
    const char *name;
    json_t *topic;
    json_object_foreach(topics, name, topic)
    {
        const char *id;
        json_t *part;
        json_object_foreach(json_object_get(topic, "partitions"), id, part)
        {
            json_int_t q = json_integer_value(json_object_get(part, "fetchq_size"));
            json_int_t n = json_integer_value(json_object_get(part, "fetchq_cnt"));
            sum += (q > 0 ? (long long)q : 0) + (n > 0 ? (long long)n * KP_KAFKA_MSG_OVERHEAD : 0);
        }
    }
    json_decref(root);
    return sum;
}
