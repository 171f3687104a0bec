/*
 * kappa-gen: the click-event generator that feeds kappa's tests and benchmarks.
 *
 * This file is only the loop: parse options, open the sink (for Kafka that tells the topic's
 * partition count), then for each event index ask the model for the event, choose its
 * partition, pace it if --rate was given, hand it to the sink and to the truth, and at the end
 * flush, write the truth file and print the summary on stderr. The parts are described
 * in gen.h. Exit status: 0 ok, 1 run failed (a delivery failed, broker unreachable, I/O
 * error), 2 bad command line.
 */
#include "gen.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t kp_gen_stop;

static void kp_gen_on_signal(int sig)
{
    (void)sig;
    kp_gen_stop = 1;
}

static double kp_gen_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleep until event i is due when pacing to `rate` events/s from t0. */
static void kp_gen_pace(double t0, uint64_t i, double rate)
{
    double wait = t0 + (double)i / rate - kp_gen_now();
    if (wait <= 0)
        return;
    struct timespec ts = {.tv_sec = (time_t)wait, .tv_nsec = (long)((wait - (time_t)wait) * 1e9)};
    nanosleep(&ts, NULL);
}

typedef struct kp_gen_run_s {
    const kp_gen_opts_t *o;
    kp_gen_model_t *model;
    kp_gen_truth_t *truth;
    kp_gen_sink_t *sink;
    int32_t partitions; /* resolved: --partitions, the topic's count, or 1 */
    uint64_t emitted;
    char errstr[512];
} kp_gen_run_t;

/* The per-event loop. 0, or -1 with run->errstr filled. */
static int kp_gen_loop(kp_gen_run_t *run)
{
    const kp_gen_opts_t *o = run->o;
    kp_gen_event_t ev;
    double t0 = kp_gen_now();
    for (uint64_t i = 0; i < o->count && !kp_gen_stop; i++) {
        /* paced first: a --live-timestamps event is timed when it is due */
        if (o->rate > 0)
            kp_gen_pace(t0, i, o->rate);
        kp_gen_model_next(run->model, i, &ev);
        ev.partition = kp_gen_partition_pick(o->partitioner, i, o->count, &ev, run->partitions);
        if (kp_gen_sink_put(run->sink, &ev, run->errstr, sizeof(run->errstr)) != 0)
            return -1;
        if (!kp_gen_truth_add(run->truth, &ev)) {
            snprintf(run->errstr, sizeof(run->errstr), "out of memory for the truth table");
            return -1;
        }
        run->emitted++;
    }
    return 0;
}

/* One line: messages and late events per partition, as the truth accounted them. */
static void kp_gen_print_partitions(const kp_gen_run_t *run)
{
    fprintf(stderr, "kappa-gen: partitions=%d counts=", run->partitions);
    for (int32_t p = 0; p < run->partitions; p++)
        fprintf(stderr, "%s%llu", p ? "," : "",
                (unsigned long long)kp_gen_truth_partition(run->truth, p)->events);
    fprintf(stderr, " late=");
    for (int32_t p = 0; p < run->partitions; p++)
        fprintf(stderr, "%s%llu", p ? "," : "",
                (unsigned long long)kp_gen_truth_partition(run->truth, p)->late);
    fprintf(stderr, " partitioner=%s\n", kp_gen_partitioner_name(run->o->partitioner));
}

static void kp_gen_print_summary(const kp_gen_run_t *run, bool kafka, const kp_gen_sink_stats_t *st,
                                 double elapsed)
{
    const kp_gen_totals_t *t = kp_gen_truth_totals(run->truth);
    fprintf(stderr,
            "kappa-gen: %s=%llu failed=%llu malformed=%llu late=%llu counted=%llu "
            "elapsed=%.2fs rate=%.0f/s\n",
            kafka ? "delivered" : "written", (unsigned long long)st->written,
            (unsigned long long)st->failed, (unsigned long long)t->malformed,
            (unsigned long long)t->late, (unsigned long long)t->counted, elapsed,
            elapsed > 0 ? (double)run->emitted / elapsed : 0.0);
    if (run->o->partitions > 0 || run->o->truth != NULL)
        kp_gen_print_partitions(run);
}

/* The partition count the run uses; 0 with run->errstr filled if the options and the topic
 * disagree. */
static int32_t kp_gen_resolve_partitions(kp_gen_run_t *run)
{
    const kp_gen_opts_t *o = run->o;
    int32_t topic = kp_gen_sink_topic_partitions(run->sink);
    int32_t n = o->partitions > 0 ? o->partitions : topic > 0 ? topic : 1;
    if (topic > 0 && n != topic) {
        snprintf(run->errstr, sizeof(run->errstr),
                 "topic %s has %d partitions but --partitions %d was given: omit --partitions "
                 "or give %d (the truth judges lateness per partition)",
                 o->topic, (int)topic, o->partitions, (int)topic);
        return 0;
    }
    if (o->partitioner == KP_GEN_PART_RANGE && n < 2) {
        snprintf(run->errstr, sizeof(run->errstr),
                 "--partitioner range needs at least 2 partitions; topic %s has %d", o->topic,
                 (int)n);
        return 0;
    }
    return n;
}

static kp_gen_truth_t *kp_gen_truth_for(const kp_gen_opts_t *o, int32_t partitions)
{
    kp_gen_truth_conf_t conf = {
        .window_ms = o->window_ms,
        .filter_users_above = o->filter_users_above,
        .out_of_order_ms = o->truth_out_of_order_ms,
        .allowed_lateness_ms = o->allowed_lateness_ms,
        .partitions = partitions,
        .partitioner = o->partitioner,
    };
    return kp_gen_truth_create(&conf);
}

/* Everything after the options are parsed. Returns the exit status. */
static int kp_gen_run(const kp_gen_opts_t *o)
{
    kp_gen_run_t run = {.o = o};
    int status = 1;
    double t0 = kp_gen_now();
    run.sink = kp_gen_sink_open(o, run.errstr, sizeof(run.errstr));
    if (run.sink == NULL) {
        fprintf(stderr, "kappa-gen: %s\n", run.errstr);
        goto out;
    }
    run.partitions = kp_gen_resolve_partitions(&run);
    if (run.partitions == 0) {
        fprintf(stderr, "kappa-gen: %s\n", run.errstr);
        kp_gen_sink_stats_t ignored;
        kp_gen_sink_close(run.sink, &ignored);
        goto out;
    }
    run.model = kp_gen_model_create(o);
    run.truth = kp_gen_truth_for(o, run.partitions);
    if (run.model == NULL || run.truth == NULL) {
        fprintf(stderr, "kappa-gen: out of memory\n");
        kp_gen_sink_stats_t ignored;
        kp_gen_sink_close(run.sink, &ignored);
        goto out;
    }
    bool kafka = kp_gen_sink_is_kafka(run.sink);
    int loop_rc = kp_gen_loop(&run);
    kp_gen_sink_stats_t st;
    int close_rc = kp_gen_sink_close(run.sink, &st);
    double elapsed = kp_gen_now() - t0;
    if (loop_rc != 0)
        fprintf(stderr, "kappa-gen: %s\n", run.errstr);
    if (close_rc != 0)
        fprintf(stderr, "kappa-gen: %s\n", st.first_error);
    if (kp_gen_stop)
        fprintf(stderr, "kappa-gen: interrupted after %llu events\n",
                (unsigned long long)run.emitted);
    if (!o->quiet || loop_rc != 0 || close_rc != 0)
        kp_gen_print_summary(&run, kafka, &st, elapsed);
    status = (loop_rc == 0 && close_rc == 0) ? 0 : 1;
    if (o->truth != NULL &&
        kp_gen_truth_write(run.truth, o->truth, o->seed, run.errstr, sizeof(run.errstr)) != 0) {
        fprintf(stderr, "kappa-gen: %s\n", run.errstr);
        status = 1;
    }
out:
    kp_gen_truth_destroy(run.truth);
    kp_gen_model_destroy(run.model);
    return status;
}

int main(int argc, char **argv)
{
    kp_gen_opts_t opts;
    kp_gen_parse_res_t res = kp_gen_opts_parse(&opts, argc, argv);
    if (res == KP_GEN_PARSE_HELP)
        return 0;
    if (res != KP_GEN_PARSE_OK)
        return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kp_gen_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return kp_gen_run(&opts);
}
