/* The data of a cluster test that runs the seed job (hourly_clicks) against the real services:
 * a Kafka topic filled by kappa-gen with its truth next to it, the comparison of an
 * Elasticsearch index with that truth, and the removal of both. Shared by test_netns.c and
 * test_backpressure.c; criterion asserts on failure (cleanup never asserts). */
#ifndef KP_TEST_SEED_DATA_H
#define KP_TEST_SEED_DATA_H

/* Creates `topic` with `partitions` at $KAPPA_BROKERS and writes `count` kappa-gen events of
 * `items` items (seed `seed`) into it; the truth as sorted (item, window end, count) lines goes
 * to dir/truth.sorted. Returns the number of truth lines (asserted > 0). */
long long seed_topic_make(const char *dir, const char *topic, int partitions, int count, int items,
                          int seed);

/* Asserts that `index` at $KAPPA_ES_URL holds exactly dir/truth.sorted (es_dump.py into
 * dir/index.sorted; the first differences on stderr if not). */
void seed_index_assert_truth(const char *dir, const char *index);

/* Deletes the topic and the index (either may be "" or not exist) and, unless
 * KAPPA_KEEP_TEST_DIR is set, the directory tree `dir`. */
void seed_data_remove(const char *dir, const char *topic, const char *index);

#endif
