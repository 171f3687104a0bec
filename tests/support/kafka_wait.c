/* A topic's partitions and leaders, polled until ready; see kafka_wait.h. */
#include "kafka_wait.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <unistd.h>

void kp_test_kafka_wait_partitions(rd_kafka_t *rk, const char *name, int partitions, int attempts)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
    for (int attempt = 0; attempt < attempts; attempt++) {
        const struct rd_kafka_metadata *md = NULL;
        bool ready = false;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ready = md->topic_cnt == 1 && md->topics[0].err == 0 &&
                    md->topics[0].partition_cnt == partitions;
            for (int p = 0; ready && p < md->topics[0].partition_cnt; p++)
                ready = md->topics[0].partitions[p].leader >= 0;
            rd_kafka_metadata_destroy(md);
        }
        if (ready) {
            rd_kafka_topic_destroy(rkt);
            return;
        }
        usleep(200 * 1000);
    }
    rd_kafka_topic_destroy(rkt);
    cr_assert_fail("topic %s did not get %d partitions with leaders", name, partitions);
}
