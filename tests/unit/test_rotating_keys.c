/* A 24/7-style job whose keys rotate keeps a flat memory footprint (issue 7, defect 3).
 *
 * `kappa run --local user_sessions.so` reads a generated click stream from stdin: event i at
 * time START + i * SPACING_MS, by user i/2 + r with r uniform in [0, SPREAD): every user
 * clicks about twice within SPREAD events and then never again, so the users ever seen grow
 * with the stream (EVENTS / 2 of them) while the users holding state do not: a user holds a
 * session for 30 minutes of event time after its last click and a quiet timer for 2 hours
 * (72,000 events at 100 ms). The job's state (session windows, the process function's
 * value state and its one timer per user) must follow the live users, not all users.
 *
 * The child's peak RSS (wait4's ru_maxrss: the process, not the test) is asserted under
 * RSS_BUDGET_MB for EVENTS events, and the run at EVENTS must not need more than
 * FLAT_SLACK_MB over a run a quarter that long: memory is flat in the number of users.
 * Default 4M events (2M distinct users), about a minute on one core; KAPPA_TEST_ROTATING_EVENTS
 * overrides (the 20M events / 10M users: KAPPA_TEST_ROTATING_EVENTS=20000000). */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../support/shell.h"

#define START_MS      1699999200000LL
#define SPACING_MS    100
#define SPREAD        1000
#define RSS_BUDGET_MB 64
#define FLAT_SLACK_MB 8

typedef struct run_result {
    long peak_rss_kb;
    long quiet_users; /* documents on the quiet-users sink */
} run_result;

/* Runs user_sessions at -p 1 over `events` generated clicks fed through a pipe. */
static run_result run(long events, unsigned seed, const char *dir)
{
    char job[1024], quiet[512], quiet_uri[600];
    snprintf(job, sizeof job, "%s/user_sessions.so", kp_test_env("KAPPA_JOBS"));
    snprintf(quiet, sizeof quiet, "%s/quiet.ndjson", dir);
    snprintf(quiet_uri, sizeof quiet_uri, "quiet-users=file:%s", quiet);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        const char *cli = kp_test_env("KAPPA_CLI");
        execl(cli, cli, "run", "--local", job, "-p", "1", "--source", "clicks=stdin:", "--sink",
              "user-sessions=file:/dev/null", "--sink", quiet_uri, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    FILE *in = fdopen(fds[1], "w");
    cr_assert_not_null(in);
    srand(seed);
    for (long i = 0; i < events; i++)
        if (fprintf(in, "{\"user_id\":\"user_%ld\",\"item_id\":\"item_%d\",\"timestamp\":%lld}\n",
                    i / 2 + rand() % SPREAD, rand() % 1000,
                    START_MS + (long long)i * SPACING_MS) < 0)
            break; /* the child died: its status says why */
    fclose(in);
    int status;
    struct rusage ru;
    pid_t got;
    while ((got = wait4(pid, &status, 0, &ru)) < 0 && errno == EINTR)
        ;
    cr_assert_eq(got, pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "kappa run failed (status %d)",
              status);
    run_result r = {ru.ru_maxrss, 0};
    FILE *f = fopen(quiet, "r");
    cr_assert_not_null(f);
    int c, prev = '\n';
    while ((c = fgetc(f)) != EOF)
        if ((prev = c) == '\n')
            r.quiet_users++;
    (void)prev;
    fclose(f);
    return r;
}

Test(rotating_keys, user_sessions_memory_is_flat, .timeout = 1200)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* the sanitizers' shadow memory and quarantine make RSS say nothing about the engine */
    cr_skip_test("peak RSS is not meaningful under sanitizers");
#endif
    const char *env = getenv("KAPPA_TEST_ROTATING_EVENTS");
    long events = env && *env ? atol(env) : 4000000;
    cr_assert_geq(events, 400000, "KAPPA_TEST_ROTATING_EVENTS must be at least 400000");
    char dir[] = "/tmp/kappa-rotating-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    unsigned seed = 7;
    run_result quarter = run(events / 4, seed, dir);
    run_result full = run(events, seed, dir);
    fprintf(stderr,
            "rotating keys: %ld events, %ld distinct users: peak RSS %.1f MiB (budget %d MiB); "
            "%ld events: %.1f MiB; quiet-users documents %ld / %ld\n",
            events, events / 2, full.peak_rss_kb / 1024.0, RSS_BUDGET_MB, events / 4,
            quarter.peak_rss_kb / 1024.0, full.quiet_users, quarter.quiet_users);
    cr_assert_gt(full.quiet_users, quarter.quiet_users, "the job produced its output");
    cr_assert_lt(full.peak_rss_kb, RSS_BUDGET_MB * 1024L,
                 "peak RSS %.1f MiB over the %d MiB budget", full.peak_rss_kb / 1024.0,
                 RSS_BUDGET_MB);
    cr_assert_lt(full.peak_rss_kb - quarter.peak_rss_kb, FLAT_SLACK_MB * 1024L,
                 "peak RSS grew from %.1f MiB (%ld events) to %.1f MiB (%ld events): memory "
                 "follows all users, not the live ones",
                 quarter.peak_rss_kb / 1024.0, events / 4, full.peak_rss_kb / 1024.0, events);
    kp_test_rmtree(dir);
}
