/* A seed-job test's topic, truth and index; see seed_data.h. */
#include "seed_data.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support/shell.h"

long long seed_topic_make(const char *dir, const char *topic, int partitions, int count, int items,
                          int seed)
{
    const char *brokers = kp_test_env("KAPPA_BROKERS");
    cr_assert_eq(kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s %d >/dev/null "
                            "2>&1",
                            brokers, kp_test_env("KAPPA_SRC"), topic, partitions),
                 0, "cannot create topic %s at %s", topic, brokers);
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s --partitions %d --count %d --items %d "
                            "--seed %d --truth %s/truth.tsv --quiet && grep -v '^#' %s/truth.tsv "
                            "| awk -F'\\t' '{print $1\"\\t\"$3\"\\t\"$4}' | LC_ALL=C sort > "
                            "%s/truth.sorted",
                            kp_test_env("KAPPA_GEN"), brokers, topic, partitions, count, items,
                            seed, dir, dir, dir),
                 0, "kappa-gen could not write the log");
    char cmd[400], out[64];
    snprintf(cmd, sizeof cmd, "wc -l < %s/truth.sorted", dir);
    kp_test_capture(out, sizeof out, cmd);
    cr_assert_gt(atoll(out), 0, "empty truth");
    return atoll(out);
}

void seed_index_assert_truth(const char *dir, const char *index)
{
    cr_assert_eq(kp_test_sh("python3 %s/tests/integration/es_dump.py %s %s %s/index.tsv && "
                            "LC_ALL=C sort %s/index.tsv > %s/index.sorted",
                            kp_test_env("KAPPA_SRC"), kp_test_env("KAPPA_ES_URL"), index, dir, dir,
                            dir),
                 0, "cannot dump %s", index);
    if (kp_test_sh("cmp -s %s/truth.sorted %s/index.sorted", dir, dir) != 0)
        kp_test_sh("diff %s/truth.sorted %s/index.sorted | head -n 12 >&2", dir, dir);
    cr_assert_eq(kp_test_sh("cmp -s %s/truth.sorted %s/index.sorted", dir, dir), 0,
                 "the index %s differs from kappa-gen's truth (diff %s/truth.sorted "
                 "%s/index.sorted)",
                 index, dir, dir);
}

void seed_data_remove(const char *dir, const char *topic, const char *index)
{
    const char *brokers = getenv("KAPPA_BROKERS"), *es = getenv("KAPPA_ES_URL");
    if (topic[0] && brokers)
        kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-delete %s >/dev/null 2>&1", brokers,
                   kp_test_env("KAPPA_SRC"), topic);
    if (index[0] && es) /* on the cluster the name is an alias of INDEX-vN (docs/bluegreen.md) */
        kp_test_sh("curl -s -XDELETE '%s/%s' >/dev/null; curl -s -XDELETE '%s/%s-v*' >/dev/null",
                   es, index, es, index);
    if (!getenv("KAPPA_KEEP_TEST_DIR"))
        kp_test_rmtree(dir);
    else
        fprintf(stderr, "kept %s\n", dir);
}
