/* `kappa run --local --stats` prints the memory table (memory_budget.h, kp_memory_report):
 * each part's peak stays within its share of the slot budget, and the process's peak RSS
 * within slots x slot budget plus a fixed allowance for what no knob bounds.
 *
 * The seed job runs at -p 2 with --slot-memory-mb 48 over a kappa-gen file of EVENTS events
 * on ITEMS items (enough distinct windows that an unbounded cache would grow). The table is
 * read from the run's stderr. The Kafka row must say "-" (a file source has no read-ahead). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/shell.h"

#define EVENTS  1000000
#define ITEMS   100000
#define SLOT_MB 48
#define SLOTS   2
/* Outside every budget: code and libraries (~20 MiB mapped and touched: RocksDB, librdkafka,
 * libc), thread stacks touched, allocator slack, the file source's and sink's buffers. */
#define ALLOWANCE_MB 48

static char dir[] = "/tmp/kappa-memory-stats-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(kp_test_sh("%s --output %s/events.ndjson --count %d --items %d --seed 11 --quiet",
                            kp_test_env("KAPPA_GEN"), dir, EVENTS, ITEMS),
                 0);
}

static void teardown(void)
{
    kp_test_rmtree(dir);
}

/* The budget and peak (MiB) of the row starting with `part`; peak -1 for "-". */
static void find_row(const char *table, const char *part, double *budget, double *peak)
{
    char key[64];
    snprintf(key, sizeof key, "kappa:   %s ", part);
    const char *r = strstr(table, key);
    cr_assert_not_null(r, "no row '%s' in:\n%s", part, table);
    r += strlen(key);
    char used[32];
    cr_assert_eq(sscanf(r, "%lf %31s", budget, used), 2, "row '%s' unreadable", part);
    *peak = strcmp(used, "-") == 0 ? -1 : atof(used);
}

Test(memory_stats, seed_job_within_slot_budget, .init = setup, .fini = teardown, .timeout = 280)
{
    static char out[16384];
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s run --local %s/hourly_clicks.so -p %d --slot-memory-mb %d --stats "
             "--source clicks=file:%s/events.ndjson?partitions=4 "
             "--sink hourly-click-index=file:/dev/null 2>&1 >/dev/null",
             kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), SLOTS, SLOT_MB, dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    cr_assert_eq(pclose(p), 0, "kappa run failed:\n%s", out);
    fprintf(stderr, "%s", out);
    cr_assert_not_null(strstr(out, "kappa: memory (MiB)"), "no memory table:\n%s", out);
    double budget, peak;
    find_row(out, "Kafka read-ahead", &budget, &peak);
    cr_assert_eq(peak, -1, "a file source reports no Kafka read-ahead");
    static const char *const parts[] = {"exchange batches", "state caches",
                                        "RocksDB cache+memtables"};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        find_row(out, parts[i], &budget, &peak);
        cr_assert_gt(budget, 0, "%s: no budget", parts[i]);
        cr_assert_geq(peak, 0, "%s: no figure", parts[i]);
        cr_assert_leq(peak, budget, "%s: peak %.1f MiB over its budget %.1f MiB", parts[i], peak,
                      budget);
    }
    find_row(out, "exchange batches", &budget, &peak);
    cr_assert_gt(peak, 0, "the seed job's key-by exchange created no batch");
    find_row(out, "process (max RSS)", &budget, &peak);
    cr_assert_eq(budget, SLOTS * SLOT_MB);
    cr_assert_leq(peak, SLOTS * SLOT_MB + ALLOWANCE_MB,
                  "peak RSS %.1f MiB over %d slots x %d MiB + %d MiB", peak, SLOTS, SLOT_MB,
                  ALLOWANCE_MB);
}
