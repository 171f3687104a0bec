/* Channel waits (runtime/channel.h, kp_channel_waits_get): a producer that finds every batch
 * of its channel in flight waits for one to come back and that wait is counted as "blocked"
 * (backpressure); a consumer that finds its inbox empty waits and is counted as "starved";
 * calls that do not wait count nothing. The counters are the calling thread's own, which is
 * what the executor reports per subtask thread (kp_exec_stats) and pipeline-bench prints.
 *
 * The blocked case is ordered without sleeping on a guess: the main thread releases the
 * batch only once the producer thread is seen asleep (its /proc state is 'S'), and the only
 * place it can sleep is the wait inside kp_channel_acquire. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../runtime/channel.h"

Test(channel, calls_that_do_not_wait_count_nothing)
{
    kp_inbox *in = kp_inbox_new(1, 2);
    cr_assert_not_null(in);
    kp_channel_waits w0, w1;
    kp_channel_waits_get(&w0);
    int oom, timed_out;
    kp_batch *b = kp_channel_acquire(kp_inbox_channel(in, 0), &oom);
    cr_assert_not_null(b);
    kp_channel_send(kp_inbox_channel(in, 0), b);
    kp_batch *got = kp_inbox_pop_timed(in, 1000, &timed_out);
    cr_assert_eq(got, b);
    kp_inbox_release(in, got);
    kp_channel_waits_get(&w1);
    cr_assert_eq(w1.blocked, w0.blocked);
    cr_assert_eq(w1.starved, w0.starved);
    kp_inbox_free(in);
}

Test(channel, an_empty_inbox_counts_a_starved_wait)
{
    kp_inbox *in = kp_inbox_new(1, 2);
    cr_assert_not_null(in);
    kp_channel_waits w0, w1;
    kp_channel_waits_get(&w0);
    int timed_out;
    cr_assert_null(kp_inbox_pop_timed(in, 5, &timed_out));
    cr_assert(timed_out);
    kp_channel_waits_get(&w1);
    cr_assert_eq(w1.starved, w0.starved + 1);
    cr_assert_geq(w1.starved_s, w0.starved_s);
    cr_assert_eq(w1.blocked, w0.blocked);
    kp_inbox_free(in);
}

typedef struct producer {
    kp_channel *ch;
    atomic_long tid;
    kp_channel_waits waits;
    kp_batch *b;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    atomic_store(&p->tid, (long)syscall(SYS_gettid));
    int oom;
    p->b = kp_channel_acquire(p->ch, &oom); /* the only batch is in flight: waits */
    kp_channel_waits_get(&p->waits);
    return NULL;
}

/* The state letter of thread `tid` of this process ('R', 'S', ...), or 0. */
static char thread_state(long tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : 0;
}

Test(channel, a_full_channel_counts_a_blocked_wait)
{
    kp_inbox *in = kp_inbox_new(1, 1);
    cr_assert_not_null(in);
    producer p = {.ch = kp_inbox_channel(in, 0)};
    int oom, timed_out;
    kp_batch *b = kp_channel_acquire(p.ch, &oom);
    cr_assert_not_null(b);
    kp_channel_send(p.ch, b);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, produce, &p), 0);
    while (atomic_load(&p.tid) == 0 || thread_state(atomic_load(&p.tid)) != 'S')
        sched_yield();
    kp_batch *got = kp_inbox_pop_timed(in, 1000, &timed_out);
    cr_assert_eq(got, b);
    kp_inbox_release(in, got);
    pthread_join(t, NULL);
    cr_assert_not_null(p.b);
    cr_assert_eq(p.waits.blocked, 1);
    cr_assert_geq(p.waits.blocked_s, 0);
    cr_assert_eq(p.waits.starved, 0);
    kp_channel_send(p.ch, p.b);
    kp_inbox_free(in);
}
