/* Backpressure across the cluster (issue 9): a slow Elasticsearch must slow the Kafka source
 * down — credits run out from the sink back to the source, which stops fetching — with bounded
 * memory in every process, and nothing lost.
 *
 * A real kappa-jobmanager and two kappa-taskmanagers (1 slot each, so the p=2 seed job is split
 * and its exchange crosses the data plane) read a 2-partition topic; the es: sink writes through
 * the fault proxy (fault_proxy.h), which first holds every request SLOW_MS before forwarding it,
 * then none. The source's fetch rate is measured in both phases as the bytes the kernel counted
 * on the taskmanagers' TCP connections to the broker (`ss -ti`, bytes_received: the fetches
 * themselves); the taskmanagers report no Metrics to the jobmanager yet, so GET /jobs/:id has
 * no records_in to compare. Asserted: the slowed rate is below a third of the normal one, the
 * index holds less than half of the results while slowed, every process's VmRSS (sampled every 100 ms
 * from /proc) stays under RSS_BOUND_MB, and at the end the index equals kappa-gen's truth. The
 * rates and the peak RSS per process are printed (figures, never asserted as durations).
 *
 * Small read-ahead on purpose: the source takes `memory_mb=4`, the smallest budget it accepts
 * (librdkafka queues at most 1 MiB per partition), and the sink one request in flight of 50
 * documents, so the buffers between the broker and the slow node hold a small part of the
 * topic, not all of it. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"
#include "../unit/jm_harness.h"
#include "fault_proxy.h"
#include "seed_data.h"

#define EVENTS       300000
#define SLOW_MS      1000 /* per bulk request while slowed */
#define RSS_BOUND_MB 256  /* generous: about 8 times the peaks measured (docs/cluster.md) */
#define NPROCS       3    /* jobmanager, two taskmanagers */

static char dir_[] = "/tmp/kappa-backpressure-XXXXXX";
static jm_proc jm_;
static pid_t tm_[2];
static pid_t submit_;
static fault_proxy *proxy_;
static char topic_[128], index_[64];

/* --- RSS sampling ------------------------------------------------------------------------- */

static pid_t watched_[NPROCS];
static atomic_llong peak_kb_[NPROCS];
static atomic_int sampling_;
static pthread_t sampler_;

/* VmRSS of a live process in KiB, 0 when it cannot be read. */
static long long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atoll(line + 6);
    if (f)
        fclose(f);
    return kb;
}

/* Keeps the peak VmRSS of every watched process. @locality own thread; peaks are atomics */
static void *sample_main(void *arg)
{
    (void)arg;
    while (atomic_load(&sampling_)) {
        for (int i = 0; i < NPROCS; i++) {
            long long kb = rss_kb(watched_[i]);
            if (kb > atomic_load(&peak_kb_[i]))
                atomic_store(&peak_kb_[i], kb);
        }
        usleep(100 * 1000);
    }
    return NULL;
}

static void sampling_stop(void)
{
    if (atomic_exchange(&sampling_, 0))
        pthread_join(sampler_, NULL);
}

/* --- set-up and tear-down ----------------------------------------------------------------- */

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir_));
    char jmdir[300], tmdir[300];
    snprintf(jmdir, sizeof jmdir, "%s/jm", dir_);
    const char *flags[] = {"--restart-strategy", "none", NULL};
    jm_start(&jm_, jmdir, flags);
    for (int i = 0; i < 2; i++) {
        snprintf(tmdir, sizeof tmdir, "%s/tm%d", dir_, i + 1);
        tm_[i] = tm_proc_start(&jm_, tmdir, 1);
    }
    wait_taskmanagers(&jm_, 2);
    proxy_ = fault_proxy_start(kp_test_env("KAPPA_ES_URL"));
    cr_assert_not_null(proxy_);
}

/* Whatever happened: no process, proxy, topic or index outlives the test. */
static void teardown(void)
{
    sampling_stop();
    if (submit_ > 0) {
        kill(submit_, SIGTERM);
        waitpid(submit_, NULL, 0);
        submit_ = 0;
    }
    jm_kill_all();
    fault_proxy_stop(proxy_);
    proxy_ = NULL;
    seed_data_remove(dir_, topic_, index_);
}

TestSuite(backpressure, .init = setup, .fini = teardown, .timeout = 900);

/* --- measurements ------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Bytes received so far on every open TCP connection to the broker's port (only the
 * taskmanagers' consumers talk to the broker while the job runs). */
static long long fetched_bytes(int broker_port)
{
    char cmd[256], out[64];
    snprintf(cmd, sizeof cmd,
             "ss -tinH '( dport = :%d )' | grep -o 'bytes_received:[0-9]*' | "
             "awk -F: '{s += $2} END {print s + 0}'",
             broker_port);
    kp_test_capture(out, sizeof out, cmd);
    return atoll(out);
}

/* Bytes per second fetched from the broker over `seconds`. */
static double fetch_rate(int broker_port, int seconds)
{
    long long b0 = fetched_bytes(broker_port);
    double t0 = now_s();
    sleep((unsigned)seconds);
    return (double)(fetched_bytes(broker_port) - b0) / (now_s() - t0);
}

/* Documents in the index now, -1 if it cannot tell. */
static long long es_count(void)
{
    char out[64], cmd[512];
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 10 '%s/%s/_count' | grep -o '\"count\":[0-9]*' | cut -d: -f2",
             kp_test_env("KAPPA_ES_URL"), index_);
    kp_test_capture(out, sizeof out, cmd);
    return out[0] ? atoll(out) : -1;
}

static void await_running(void)
{
    char st[32] = "";
    for (int i = 0; i < 1200 && strcmp(job_state(&jm_, "bp", st, sizeof st), "RUNNING"); i++)
        usleep(100 * 1000);
    cr_assert_str_eq(st, "RUNNING", "the job is not running after 120 s (%s/submit.out)", dir_);
}

Test(backpressure, slow_elasticsearch_slows_the_source_with_bounded_memory)
{
    const char *brokers = kp_test_env("KAPPA_BROKERS");
    int kport = atoi(strrchr(brokers, ':') + 1);
    snprintf(topic_, sizeof topic_, "backpressure-%d", (int)getpid());
    snprintf(index_, sizeof index_, "backpressure-%d", (int)getpid());
    long long total = seed_topic_make(dir_, topic_, 2, EVENTS, 100, 13);
    char cmd[600];

    watched_[0] = jm_.pid;
    watched_[1] = tm_[0];
    watched_[2] = tm_[1];
    atomic_store(&sampling_, 1);
    cr_assert_eq(pthread_create(&sampler_, NULL, sample_main, NULL), 0);

    /* slowed from the start: the job's first bulk requests already wait */
    fault_proxy_set_delay(proxy_, SLOW_MS);
    snprintf(cmd, sizeof cmd,
             "exec %s submit %s/hourly_clicks.so --jobmanager %s -p 2 --name bp --brokers %s "
             "--es-url %s --from-earliest --source 'clicks=kafka:%s?stop_at=end&memory_mb=4' "
             "--sink 'hourly-click-index=es:%s?inflight=1&max_actions=50' --wait "
             ">%s/submit.out 2>&1",
             kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), jm_.rest, brokers,
             fault_proxy_url(proxy_), topic_, index_, dir_);
    submit_ = fork();
    cr_assert_geq(submit_, 0);
    if (submit_ == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    await_running();
    char st_now[32] = "RUNNING";
    for (int i = 0; i < 1200 && fetched_bytes(kport) == 0 && !strcmp(st_now, "RUNNING"); i++) {
        usleep(100 * 1000);
        job_state(&jm_, "bp", st_now, sizeof st_now);
    }
    cr_assert_str_eq(st_now, "RUNNING", "the job stopped before it fetched (%s/submit.out)", dir_);
    sleep(3); /* the buffers between the broker and the sink fill up */
    long long before = fetched_bytes(kport);
    double slow = fetch_rate(kport, 8);
    long long after = fetched_bytes(kport), docs_slowed = es_count();
    fault_proxy_set_delay(proxy_, 0);
    sleep(1);
    double normal = fetch_rate(kport, 5);

    int st;
    cr_assert_eq(waitpid(submit_, &st, 0), submit_);
    submit_ = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "kappa submit --wait did not end FINISHED (%s/submit.out)", dir_);
    sampling_stop();

    char load[64];
    kp_test_capture(load, sizeof load, "cut -d' ' -f1-3 /proc/loadavg");
    fprintf(stderr,
            "backpressure: figures (load average %s): fetch rate from the broker %.1f KB/s "
            "slowed (%d ms per bulk request; %lld KB fetched before the 8 s window, %lld after) "
            "vs %.1f KB/s normal; %lld of %lld documents indexed at the end of the slowed "
            "phase\n",
            load, slow / 1e3, SLOW_MS, before / 1000, after / 1000, normal / 1e3, docs_slowed,
            total);
    const char *names[NPROCS] = {"jobmanager", "taskmanager 1", "taskmanager 2"};
    for (int i = 0; i < NPROCS; i++)
        fprintf(stderr, "backpressure: figures: peak VmRSS %s %.1f MB\n", names[i],
                (double)atomic_load(&peak_kb_[i]) / 1024);
    for (int i = 0; i < NPROCS; i++) {
        cr_assert_gt(atomic_load(&peak_kb_[i]), 0, "no RSS sample of the %s", names[i]);
        cr_assert_lt(atomic_load(&peak_kb_[i]), RSS_BOUND_MB * 1024LL,
                     "the %s's RSS reached %lld KiB", names[i], atomic_load(&peak_kb_[i]));
    }
    cr_assert_lt(docs_slowed * 2, total, "half the results were indexed while the node was slow");
    cr_assert_lt(slow * 3, normal, "the source did not slow down: %.0f B/s slowed, %.0f normal",
                 slow, normal);

    seed_index_assert_truth(dir_, index_);

    for (int i = 0; i < 2; i++) {
        tm_proc_stop(tm_[i]);
        tm_[i] = 0;
    }
    jm_stop(&jm_);
}
