/*
 * kappa-gen internals: the types shared by the generator's four parts.
 *
 * kappa-gen exists so that every test and benchmark of kappa feeds the engine the same click
 * events and can check the engine's answer against a truth that the engine had no hand in.
 * It is split by purpose:
 *   gen_opts.c   command line → kp_gen_opts_t, usage text (exit 2 on bad flags)
 *   gen_model.c  the deterministic event model: PRNG, Zipf items, timestamps, late and
 *                malformed events, JSON rendering into a caller buffer; and the partitioners
 *                that choose each event's partition
 *   gen_truth.c  the engine's lateness rule applied per partition, per (item, window) counts
 *                of the events an engine must count, and the truth file writer
 *   gen_sink.c   where the bytes go: an NDJSON file (or stdout), a Kafka topic (each event
 *                to the partition chosen here), or nowhere (--dry-run)
 *   main.c       the loop that ties them together, pacing and the summary line
 * Nothing here is a public kappa API; it is a tool, built as the executable `kappa-gen`.
 * Threads: kappa-gen is single-threaded. Every function below is called from the main
 * thread (@locality main thread, @locks none); librdkafka's callbacks are served by
 * rd_kafka_poll()/rd_kafka_flush() on that same thread.
 */
#ifndef KP_GEN_H
#define KP_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default bounded out-of-orderness of the engine's watermark that the truth applies (the
 * jobs' `.out_of_order = 10 * KP_SECOND`); --truth-out-of-order-ms changes it. */
#define KP_GEN_WATERMARK_MS 10000
/* Late events get an extra random 0..this on top of --late-lag-ms. */
#define KP_GEN_LATE_SPREAD_MS 3600000
/* --partitioner range: partition 0 only gets events i with i * this < count. */
#define KP_GEN_RANGE_DIV 5
/* Largest JSON line (or malformed message) the model renders, without the newline. */
#define KP_GEN_LINE_MAX 160
/* Largest key ("user_<n>"). */
#define KP_GEN_KEY_MAX 32

/* How each event's partition is chosen (see kp_gen_partition_pick). */
typedef enum {
    KP_GEN_PART_HASH = 0,    /* Java murmur2 of the key, as Kafka's default partitioner */
    KP_GEN_PART_ROUND_ROBIN, /* event i -> i mod N */
    KP_GEN_PART_RANGE,       /* partition 0 only carries the first fifth of the events */
} kp_gen_partitioner_t;

/* Parsed command line. Zero/NULL means "not given" where a default does not apply. */
typedef struct kp_gen_opts_s {
    const char *brokers;
    const char *topic;
    const char *output; /* "-" = stdout */
    bool dry_run;       /* no output at all: truth and summary only */
    const char *truth;
    uint64_t count; /* total messages (valid + malformed) */
    double rate;    /* events/s, 0 = as fast as possible */
    double duration_s;
    uint64_t users;
    uint64_t items;
    double skew;
    int64_t start_time_ms;
    int64_t span_ms;
    bool live_timestamps; /* base time = wall clock at production (--live-timestamps) */
    int64_t out_of_order_ms;
    double late_fraction;
    int64_t late_lag_ms;
    double malformed;
    uint64_t seed;
    uint64_t filter_users_above;
    int partitions; /* 0 = not given: the topic's partition count for Kafka, else 1 */
    kp_gen_partitioner_t partitioner;
    bool partitioner_set;
    int64_t window_ms;
    int64_t truth_out_of_order_ms; /* the engine's watermark bound the truth applies */
    int64_t allowed_lateness_ms;
    const char *kafka_props[32]; /* -X key=value, passed to librdkafka as is */
    int kafka_prop_cnt;
    bool quiet;
} kp_gen_opts_t;

typedef enum {
    KP_GEN_PARSE_OK = 0,
    KP_GEN_PARSE_HELP = 1,  /* --help: usage printed on stdout, exit 0 */
    KP_GEN_PARSE_USAGE = 2, /* bad flags: message + usage on stderr, exit 2 */
} kp_gen_parse_res_t;

/* Fill *opts from argv. Prints the usage itself. @locality main thread */
kp_gen_parse_res_t kp_gen_opts_parse(kp_gen_opts_t *opts, int argc, char **argv);

/* ---- event model (gen_model.c) ---- */

/* What the model did with an event. Whether a valid event is late is not the model's
 * decision: the truth judges it by the engine's rule for the event's partition. */
typedef enum {
    KP_GEN_EV_ONTIME = 0,    /* valid, at its base time minus jitter */
    KP_GEN_EV_LATE = 1,      /* valid, moved back by --late-lag-ms (+ spread) */
    KP_GEN_EV_MALFORMED = 2, /* invalid: never counted, never advances a watermark */
} kp_gen_ev_kind_t;

/* One generated message. The line and key live in the struct: no allocation per event. */
typedef struct kp_gen_event_s {
    kp_gen_ev_kind_t kind;
    int32_t partition; /* set by kp_gen_partition_pick, 0..N-1 */
    uint64_t user;     /* 1..users */
    uint64_t item;     /* 1..items */
    int64_t ts_ms;
    size_t line_len;
    size_t key_len;
    char line[KP_GEN_LINE_MAX];
    char key[KP_GEN_KEY_MAX];
} kp_gen_event_t;

typedef struct kp_gen_model_s kp_gen_model_t;

/* Allocate the model (the Zipf table is its only large allocation). NULL on out of memory.
 * opts must outlive the model. */
kp_gen_model_t *kp_gen_model_create(const kp_gen_opts_t *opts);
void kp_gen_model_destroy(kp_gen_model_t *m);
/* Produce event number i (i must go 0, 1, 2, ... up to opts->count - 1) into *ev. With
 * --live-timestamps its base time is the wall clock at this call. */
void kp_gen_model_next(kp_gen_model_t *m, uint64_t i, kp_gen_event_t *ev);

/* Java-compatible murmur2 partition of key, as librdkafka's murmur2_random does. */
int32_t kp_gen_partition_of(const char *key, size_t len, int32_t partition_cnt);
/* The partition of event i of `count` (ev already made by kp_gen_model_next) among
 * partition_cnt >= 1 partitions, by the partitioner p. Defined in --help:
 *   hash        kp_gen_partition_of(key)
 *   round-robin i mod N
 *   range       i mod N while i * 5 < count, then 1 + i mod (N - 1)  (needs N >= 2) */
int32_t kp_gen_partition_pick(kp_gen_partitioner_t p, uint64_t i, uint64_t count,
                              const kp_gen_event_t *ev, int32_t partition_cnt);
const char *kp_gen_partitioner_name(kp_gen_partitioner_t p);

/* ---- truth (gen_truth.c) ---- */

typedef struct kp_gen_truth_s kp_gen_truth_t;

typedef struct kp_gen_totals_s {
    uint64_t events;
    uint64_t malformed;
    uint64_t late;       /* valid events late by the rule in their partition */
    uint64_t moved_back; /* valid events the model moved back by --late-lag-ms */
    uint64_t counted;    /* non-late valid events of counted users: sum(click_count) */
    uint64_t filtered;   /* non-late valid events dropped by --filter-users-above */
} kp_gen_totals_t;

/* What the truth needs to know about the engine and the partitions. */
typedef struct kp_gen_truth_conf_s {
    int64_t window_ms;
    uint64_t filter_users_above;
    int64_t out_of_order_ms;
    int64_t allowed_lateness_ms;
    int32_t partitions; /* >= 1 */
    kp_gen_partitioner_t partitioner;
} kp_gen_truth_conf_t;

/* One partition's share, for the summary and the truth file. */
typedef struct kp_gen_part_totals_s {
    uint64_t events; /* messages, malformed included */
    uint64_t late;
    int64_t max_ts; /* INT64_MIN before the partition's first valid event */
} kp_gen_part_totals_t;

kp_gen_truth_t *kp_gen_truth_create(const kp_gen_truth_conf_t *conf);
void kp_gen_truth_destroy(kp_gen_truth_t *t);
/* Account one emitted event (ev->partition set). Returns false only on out of memory. */
bool kp_gen_truth_add(kp_gen_truth_t *t, const kp_gen_event_t *ev);
const kp_gen_totals_t *kp_gen_truth_totals(const kp_gen_truth_t *t);
/* Partition p's totals, 0 <= p < conf->partitions. */
const kp_gen_part_totals_t *kp_gen_truth_partition(const kp_gen_truth_t *t, int32_t p);
/* Write the truth file (format in gen_truth.c). Consumes the table: call once, last.
 * 0 or -1 with errstr filled. */
int kp_gen_truth_write(kp_gen_truth_t *t, const char *path, uint64_t seed, char *errstr,
                       size_t errstr_size);

/* ---- output (gen_sink.c) ---- */

typedef struct kp_gen_sink_s kp_gen_sink_t;

typedef struct kp_gen_sink_stats_s {
    uint64_t written; /* file: lines written; kafka: delivered */
    uint64_t failed;  /* kafka: delivery failures */
    char first_error[256];
} kp_gen_sink_stats_t;

/* Open the file, Kafka or dry-run sink named by opts. NULL with errstr filled on failure (for
 * Kafka this includes an unreachable broker). */
kp_gen_sink_t *kp_gen_sink_open(const kp_gen_opts_t *opts, char *errstr, size_t errstr_size);
/* Send one event (Kafka: to partition ev->partition). 0, or -1 with errstr filled on a fatal
 * error (stop producing). */
int kp_gen_sink_put(kp_gen_sink_t *s, const kp_gen_event_t *ev, char *errstr, size_t errstr_size);
/* Flush and close; fills *stats. 0, or -1 if anything failed. Accepts NULL. */
int kp_gen_sink_close(kp_gen_sink_t *s, kp_gen_sink_stats_t *stats);
bool kp_gen_sink_is_kafka(const kp_gen_sink_t *s);
/* Kafka: the topic's partition count (from the probe); 0 for the other sinks. */
int32_t kp_gen_sink_topic_partitions(const kp_gen_sink_t *s);

#endif /* KP_GEN_H */
