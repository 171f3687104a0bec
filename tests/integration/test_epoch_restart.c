/* A restart within the same second loses nothing (issue 10, "Recovery"): two `kappa run
 * --local` attempts of the seed job against the real OpenSearch, with the same --state-dir,
 * both inside one wall-clock second, the second writing changed values for the same document
 * ids. The Elasticsearch sink versions each write (epoch << 32 | seq); with the wall clock as
 * the epoch both attempts had the same epoch and the second one's lower sequence numbers were
 * rejected as stale. With the counter in <state-dir>/epoch the second attempt's epoch is the
 * first's + 1, and every document must hold the second attempt's value. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"

#define ITEMS 200
#define HOUR0 1700000000000LL /* some hour's start, ms */

static char dir[256];

/* `clicks` clicks for every item in the hour starting at HOUR0 (ids "item-N|end"). */
static void write_input(const char *path, int clicks)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    for (int c = 0; c < clicks; c++)
        for (int i = 0; i < ITEMS; i++)
            fprintf(f, "{\"item_id\":\"item-%d\",\"timestamp\":%lld}\n", i,
                    HOUR0 - HOUR0 % 3600000 + 1000LL * (c * ITEMS + i) % 3600000);
    fclose(f);
}

static int run_attempt(const char *index, const char *input, const char *log)
{
    return kp_test_sh("%s run --local %s/hourly_clicks.so -p 2 --state-dir %s/state "
                      "--source 'clicks=file:%s/%s?partitions=2' --es-url %s "
                      "--sink 'hourly-click-index=es:%s' >%s/%s 2>&1",
                      kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), dir, dir, input,
                      kp_test_env("KAPPA_ES_URL"), index, dir, log);
}

static long long stored_epoch(void)
{
    char path[300], buf[64] = "";
    snprintf(path, sizeof path, "%s/state/epoch", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s missing", path);
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    fclose(f);
    return atoll(buf);
}

/* Waits until just after the next wall-clock second begins. */
static void align_to_second(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    usleep((useconds_t)(1000000 - tv.tv_usec + 5000));
}

Test(epoch_restart, same_second_restart_overwrites_every_document, .timeout = 600)
{
    snprintf(dir, sizeof dir, "%s/kp-epoch-restart-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/a.ndjson", dir);
    snprintf(b, sizeof b, "%s/b.ndjson", dir);
    write_input(a, 1);
    write_input(b, 3);
    const char *es = kp_test_env("KAPPA_ES_URL");
    /* both attempts must start and end within one second: try a few times on a slow machine */
    int same_second = 0;
    char index[64];
    long long e1 = 0, e2 = 0;
    for (int attempt = 0; attempt < 8 && !same_second; attempt++) {
        snprintf(index, sizeof index, "epoch-restart-%d-%d", (int)getpid(), attempt);
        kp_test_sh("rm -rf %s/state", dir);
        align_to_second();
        time_t t0 = time(NULL);
        cr_assert_eq(run_attempt(index, "a.ndjson", "a.log"), 0, "attempt 1 failed (%s/a.log)",
                     dir);
        e1 = stored_epoch();
        cr_assert_eq(run_attempt(index, "b.ndjson", "b.log"), 0, "attempt 2 failed (%s/b.log)",
                     dir);
        e2 = stored_epoch();
        same_second = time(NULL) == t0;
        if (!same_second) {
            fprintf(stderr, "epoch_restart: the two attempts took more than a second; again\n");
            kp_test_sh("curl -s -XDELETE '%s/%s' >/dev/null", es, index);
        }
    }
    cr_assert(same_second, "never managed two attempts within one second");
    cr_expect_eq(e2, e1 + 1, "epochs %lld then %lld", e1, e2);

    /* every document holds the second attempt's count (3), none the first's (1) */
    char cmd[1024], out[64];
    snprintf(cmd, sizeof cmd,
             "python3 %s/tests/integration/es_sources.py %s %s %s/docs.src %s/docs.tsv "
             "item_id,click_count",
             kp_test_env("KAPPA_SRC"), es, index, dir, dir);
    kp_test_capture(out, sizeof out, cmd);
    cr_expect_eq(atoll(out), ITEMS, "%s documents in %s, want %d", out, index, ITEMS);
    char bad[64];
    snprintf(cmd, sizeof cmd, "awk -F'\\t' '$2 != 3' %s/docs.tsv | wc -l", dir);
    kp_test_capture(bad, sizeof bad, cmd);
    cr_expect_eq(atoll(bad), 0, "%s documents do not hold the second attempt's value (%s/docs.tsv)",
                 bad, dir);
    kp_test_sh("curl -s -XDELETE '%s/%s' >/dev/null", es, index);
    if (atoll(out) == ITEMS && atoll(bad) == 0) /* else keep the logs */
        kp_test_rmtree(dir);
}
