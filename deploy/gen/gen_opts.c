/*
 * kappa-gen command line: long getopt options → kp_gen_opts_t, and the usage text.
 *
 * Kept apart from the generator so that every rule about what a valid invocation is lives in
 * one place: anything odd (unknown option, a number that is not one, a fraction outside 0..1,
 * no output chosen) is reported with a one-line reason plus the usage on stderr, and the
 * caller exits 2, so scripts can tell a bad invocation (2) from a failed run (1).
 */
#include "gen.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KP_GEN_DEFAULT_START_MS (1700000000000LL / 3600000LL * 3600000LL)
#define KP_GEN_MAX_COUNT        4000000000ULL
#define KP_GEN_MAX_ITEMS        10000000ULL
#define KP_GEN_MAX_USERS        1000000000000ULL

/* Two parts: ISO C only promises string literals up to 4095 bytes. */
static const char kp_gen_usage_head[] =
    "usage: kappa-gen (--brokers HOST:PORT --topic T | --output FILE|- | --dry-run)\n"
    "                 (--count N | --rate EPS --duration-s S) [options]\n"
    "\n"
    "Writes click events {\"user_id\":\"user_7\",\"item_id\":\"item_42\",\"timestamp\":MS}\n"
    "to a Kafka topic (key = user_id) or to an NDJSON file, deterministically for a seed,\n"
    "choosing each event's partition itself, and can write the truth: how many clicks\n"
    "each item got per window that an engine judging lateness per partition must count.\n"
    "\n"
    "output:\n"
    "  --brokers HOST:PORT      Kafka bootstrap servers (with --topic)\n"
    "  --topic T                Kafka topic (must exist or be auto-created); every event\n"
    "                           is produced to the partition kappa-gen chose\n"
    "  --output FILE            NDJSON file instead of Kafka; '-' = stdout. Line k is\n"
    "                           event k; with --partitions N > 1 read it as\n"
    "                           file:FILE?partitions=N (line k -> partition k mod N)\n"
    "  --dry-run                no output: only --truth and the summary, exactly as for\n"
    "                           a Kafka run with the same options and --partitions\n"
    "  -X, --kafka-prop K=V     extra librdkafka producer property (repeatable)\n"
    "  --truth FILE             write the truth file (format below)\n"
    "  --quiet                  no summary on stderr\n"
    "partitions:\n"
    "  --partitions N           number of partitions (Kafka: default and only allowed\n"
    "                           value = the topic's partition count; otherwise default 1)\n"
    "  --partitioner P          how event i (0-based, malformed ones too) is placed:\n"
    "                           hash         Java murmur2 of the key (user_id), as Kafka's\n"
    "                                        default partitioner and librdkafka/kcat\n"
    "                                        partitioner=murmur2_random: (murmur2(key) &\n"
    "                                        0x7fffffff) mod N\n"
    "                           round-robin  i mod N\n"
    "                           range        i mod N while 5*i < count, then\n"
    "                                        1 + (i mod (N-1)): partition 0 carries only\n"
    "                                        the first fifth of the run's event time and\n"
    "                                        then nothing; needs N >= 2\n"
    "                           Default: hash for Kafka and --dry-run, round-robin for\n"
    "                           --output, which allows only round-robin when N > 1 (the\n"
    "                           file source assigns line k to partition k mod N)\n"
    "volume:\n";

static const char kp_gen_usage_tail[] =
    "  --count N                number of messages (valid + malformed)\n"
    "  --rate EPS               pace to EPS messages/s (default: as fast as possible)\n"
    "  --duration-s S           with --rate: count = EPS * S\n"
    "model:\n"
    "  --users N                user_1..user_N (default 100)\n"
    "  --items N                item_1..item_N (default 1000)\n"
    "  --skew S                 Zipf exponent for items, item_1 hottest; 0 = uniform\n"
    "                           (default 1.0)\n"
    "  --start-time MS          event time of the first event (default 1699999200000)\n"
    "  --span MS                event times advance evenly over this range across the\n"
    "                           run: base(i) = start + i * span / count (default\n"
    "                           604800000 = 7 days)\n"
    "  --live-timestamps        base time = the wall clock (ms) when the event is\n"
    "                           handed to the producer, after pacing: event time is\n"
    "                           production time, for latency measurements; replaces\n"
    "                           --start-time/--span; the output is then not repeatable\n"
    "  --out-of-order-ms J      timestamp = base time - uniform 0..J (default 0); with\n"
    "                           J > the truth's out-of-orderness some of these events\n"
    "                           are late by the rule, and the truth counts them so\n"
    "  --late-fraction F        fraction of events moved back: timestamp = base time -\n"
    "                           late lag - uniform 0..1 h, from the very first events on\n"
    "                           (default 0). The truth judges each by the rule below;\n"
    "                           the first valid event of a partition is never late\n"
    "  --late-lag-ms L          late lag (default 86400000 = 24 h)\n"
    "  --malformed F            fraction of invalid messages: truncated JSON, garbage,\n"
    "                           no timestamp, no item_id, timestamp as a string;\n"
    "                           keyed like the others, never counted (default 0)\n"
    "  --seed N                 PRNG seed; same options + seed = same bytes (default 1).\n"
    "                           The events do not depend on the partitioning options\n"
    "truth:\n"
    "  --window-ms W            tumbling window size (default 3600000)\n"
    "  --filter-users-above N   count only users whose number is > N (default 0 = all)\n"
    "  --truth-out-of-order-ms O  the engine's watermark bound (the source's\n"
    "                           out_of_order) the rule uses (default 10000)\n"
    "  --allowed-lateness-ms L  the window's allowed lateness the rule uses (default 0)\n"
    "\n"
    "The rule (kappa's, per partition): a partition's watermark through the events\n"
    "before an event is cwm = (max timestamp of the earlier VALID events of that\n"
    "partition) - O - 1, or minus infinity before its first valid event; malformed\n"
    "events do not advance it. A valid event is late iff window_end - 1 + L <= cwm.\n"
    "Counted = valid events that are not late (and of users > --filter-users-above).\n"
    "\n"
    "Truth file: lines starting with '#' are comments; one of them carries the totals\n"
    "  # events=N valid=N malformed=N late=N filter_users_above=N window_ms=W\n"
    "another '# counted=N filtered=N seed=N' (counted = sum of click_count), another\n"
    "  # rule: partitions=N partitioner=P out_of_order_ms=O allowed_lateness_ms=L moved_back=N\n"
    "and one '# partition=P messages=N late=N max_ts=T' per partition (T '-' if none).\n"
    "Then one line per (item, window) with a count > 0:\n"
    "  item_id<TAB>window_start<TAB>window_end<TAB>click_count\n"
    "sorted by item_id (byte order, as LC_ALL=C sort) then window_start; window_start =\n"
    "ts - (ts mod W), window_end = window_start + W (exclusive).\n"
    "The summary on stderr ends with, per partition,\n"
    "  kappa-gen: partitions=N counts=C0,C1,.. late=L0,L1,.. partitioner=P\n"
    "\n"
    "Exit status: 0 ok, 1 run failed (delivery failures, broker unreachable, I/O), 2 usage.\n";

enum {
    OPT_BROKERS = 256,
    OPT_TOPIC,
    OPT_OUTPUT,
    OPT_TRUTH,
    OPT_COUNT,
    OPT_RATE,
    OPT_DURATION,
    OPT_USERS,
    OPT_ITEMS,
    OPT_SKEW,
    OPT_START,
    OPT_SPAN,
    OPT_OOO,
    OPT_LATE,
    OPT_LATE_LAG,
    OPT_MALFORMED,
    OPT_SEED,
    OPT_FILTER,
    OPT_PARTITIONS,
    OPT_WINDOW,
    OPT_QUIET,
    OPT_PARTITIONER,
    OPT_TRUTH_OOO,
    OPT_LATENESS,
    OPT_DRY_RUN,
    OPT_LIVE,
};

static const struct option kp_gen_long_opts[] = {
    {"brokers", required_argument, NULL, OPT_BROKERS},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"truth", required_argument, NULL, OPT_TRUTH},
    {"count", required_argument, NULL, OPT_COUNT},
    {"rate", required_argument, NULL, OPT_RATE},
    {"duration-s", required_argument, NULL, OPT_DURATION},
    {"users", required_argument, NULL, OPT_USERS},
    {"items", required_argument, NULL, OPT_ITEMS},
    {"skew", required_argument, NULL, OPT_SKEW},
    {"start-time", required_argument, NULL, OPT_START},
    {"span", required_argument, NULL, OPT_SPAN},
    {"out-of-order-ms", required_argument, NULL, OPT_OOO},
    {"late-fraction", required_argument, NULL, OPT_LATE},
    {"late-lag-ms", required_argument, NULL, OPT_LATE_LAG},
    {"malformed", required_argument, NULL, OPT_MALFORMED},
    {"seed", required_argument, NULL, OPT_SEED},
    {"filter-users-above", required_argument, NULL, OPT_FILTER},
    {"partitions", required_argument, NULL, OPT_PARTITIONS},
    {"window-ms", required_argument, NULL, OPT_WINDOW},
    {"kafka-prop", required_argument, NULL, 'X'},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"partitioner", required_argument, NULL, OPT_PARTITIONER},
    {"truth-out-of-order-ms", required_argument, NULL, OPT_TRUTH_OOO},
    {"allowed-lateness-ms", required_argument, NULL, OPT_LATENESS},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"live-timestamps", no_argument, NULL, OPT_LIVE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

__attribute__((format(printf, 1, 2))) static kp_gen_parse_res_t kp_gen_usage_error(const char *fmt,
                                                                                   ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kappa-gen: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s%s", kp_gen_usage_head, kp_gen_usage_tail);
    return KP_GEN_PARSE_USAGE;
}

/* Digits only (no sign, no spaces), fits in uint64. */
static bool kp_gen_parse_u64(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool kp_gen_parse_i64(const char *s, int64_t *out)
{
    uint64_t v;
    if (!kp_gen_parse_u64(s, &v) || v > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

static bool kp_gen_parse_double(const char *s, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

static bool kp_gen_parse_fraction(const char *s, double *out)
{
    return kp_gen_parse_double(s, out) && *out <= 1.0;
}

static void kp_gen_opts_defaults(kp_gen_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->users = 100;
    o->items = 1000;
    o->skew = 1.0;
    o->start_time_ms = KP_GEN_DEFAULT_START_MS;
    o->span_ms = 7LL * 24 * 3600 * 1000;
    o->late_lag_ms = 24LL * 3600 * 1000;
    o->seed = 1;
    o->window_ms = 3600000;
    o->truth_out_of_order_ms = KP_GEN_WATERMARK_MS;
}

static bool kp_gen_parse_partitioner(const char *v, kp_gen_opts_t *o)
{
    static const kp_gen_partitioner_t all[] = {KP_GEN_PART_HASH, KP_GEN_PART_ROUND_ROBIN,
                                               KP_GEN_PART_RANGE};
    for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) {
        if (strcmp(v, kp_gen_partitioner_name(all[k])) == 0) {
            o->partitioner = all[k];
            o->partitioner_set = true;
            return true;
        }
    }
    return false;
}

/* One option's value into *o. Returns false if the value is malformed. */
static bool kp_gen_opt_set(kp_gen_opts_t *o, int c, const char *v)
{
    uint64_t u = 0;
    switch (c) {
    case OPT_BROKERS:
        o->brokers = v;
        return *v != '\0';
    case OPT_TOPIC:
        o->topic = v;
        return *v != '\0';
    case OPT_OUTPUT:
        o->output = v;
        return *v != '\0';
    case OPT_TRUTH:
        o->truth = v;
        return *v != '\0';
    case OPT_COUNT:
        return kp_gen_parse_u64(v, &o->count);
    case OPT_RATE:
        return kp_gen_parse_double(v, &o->rate) && o->rate > 0;
    case OPT_DURATION:
        return kp_gen_parse_double(v, &o->duration_s) && o->duration_s > 0;
    case OPT_USERS:
        return kp_gen_parse_u64(v, &o->users);
    case OPT_ITEMS:
        return kp_gen_parse_u64(v, &o->items);
    case OPT_SKEW:
        return kp_gen_parse_double(v, &o->skew) && o->skew <= 10.0;
    case OPT_START:
        return kp_gen_parse_i64(v, &o->start_time_ms);
    case OPT_SPAN:
        return kp_gen_parse_i64(v, &o->span_ms);
    case OPT_OOO:
        return kp_gen_parse_i64(v, &o->out_of_order_ms);
    case OPT_LATE:
        return kp_gen_parse_fraction(v, &o->late_fraction);
    case OPT_LATE_LAG:
        return kp_gen_parse_i64(v, &o->late_lag_ms);
    case OPT_MALFORMED:
        return kp_gen_parse_fraction(v, &o->malformed);
    case OPT_SEED:
        return kp_gen_parse_u64(v, &o->seed);
    case OPT_FILTER:
        return kp_gen_parse_u64(v, &o->filter_users_above);
    case OPT_WINDOW:
        return kp_gen_parse_i64(v, &o->window_ms) && o->window_ms > 0;
    case OPT_PARTITIONS:
        if (!kp_gen_parse_u64(v, &u) || u < 1 || u > 100000)
            return false;
        o->partitions = (int)u;
        return true;
    case 'X':
        if (strchr(v, '=') == NULL || v[0] == '=' || o->kafka_prop_cnt >= 32)
            return false;
        o->kafka_props[o->kafka_prop_cnt++] = v;
        return true;
    case OPT_QUIET:
        o->quiet = true;
        return true;
    case OPT_DRY_RUN:
        o->dry_run = true;
        return true;
    case OPT_LIVE:
        o->live_timestamps = true;
        return true;
    case OPT_PARTITIONER:
        return kp_gen_parse_partitioner(v, o);
    case OPT_TRUTH_OOO:
        return kp_gen_parse_i64(v, &o->truth_out_of_order_ms);
    case OPT_LATENESS:
        return kp_gen_parse_i64(v, &o->allowed_lateness_ms);
    default:
        return false;
    }
}

/* Rules that involve more than one option. Returns NULL or the reason. */
/* The partitioning rules that do not need the topic's partition count. */
static const char *kp_gen_opts_check_partitions(kp_gen_opts_t *o)
{
    bool kafka = o->output == NULL && !o->dry_run;
    if (!o->partitioner_set)
        o->partitioner = o->output != NULL ? KP_GEN_PART_ROUND_ROBIN : KP_GEN_PART_HASH;
    if (o->partitioner == KP_GEN_PART_RANGE && !kafka && o->partitions < 2)
        return "--partitioner range needs --partitions N with N >= 2";
    if (o->output != NULL && o->partitions > 1 && o->partitioner != KP_GEN_PART_ROUND_ROBIN)
        return "--output with --partitions N > 1 needs --partitioner round-robin: the file "
               "source puts line k in partition k mod N (read it as file:PATH?partitions=N); "
               "use --dry-run for the truth of a hash or range partitioned Kafka run";
    return NULL;
}

static const char *kp_gen_opts_check(kp_gen_opts_t *o)
{
    int outputs = (o->output != NULL) + o->dry_run + (o->brokers != NULL || o->topic != NULL);
    if (outputs > 1)
        return "give one of --output, --brokers/--topic or --dry-run";
    if (o->output == NULL && !o->dry_run && (o->brokers == NULL || o->topic == NULL))
        return "give --brokers and --topic, --output FILE, or --dry-run";
    if (o->count != 0 && o->duration_s != 0)
        return "give --count or --duration-s, not both";
    if (o->duration_s != 0 && o->rate == 0)
        return "--duration-s needs --rate";
    if (o->duration_s != 0)
        o->count = (uint64_t)llround(o->rate * o->duration_s);
    if (o->count == 0)
        return "give --count N (N >= 1), or --rate EPS with --duration-s S";
    if (o->count > KP_GEN_MAX_COUNT)
        return "--count is limited to 4000000000 per run";
    if (o->users < 1 || o->users > KP_GEN_MAX_USERS)
        return "--users must be 1..1000000000000";
    if (o->items < 1 || o->items > KP_GEN_MAX_ITEMS)
        return "--items must be 1..10000000";
    if (o->late_fraction + o->malformed > 1.0)
        return "--late-fraction + --malformed must not exceed 1";
    if (o->late_lag_ms > INT64_MAX / 4 || o->span_ms > INT64_MAX / 4 ||
        o->start_time_ms > INT64_MAX / 4 || o->out_of_order_ms > INT64_MAX / 4 ||
        o->truth_out_of_order_ms > INT64_MAX / 4 || o->allowed_lateness_ms > INT64_MAX / 4)
        return "a time option is too large";
    return kp_gen_opts_check_partitions(o);
}

kp_gen_parse_res_t kp_gen_opts_parse(kp_gen_opts_t *opts, int argc, char **argv)
{
    kp_gen_opts_defaults(opts);
    optind = 1;
    opterr = 0;
    int c;
    int idx = -1;
    while ((c = getopt_long(argc, argv, ":hX:", kp_gen_long_opts, &idx)) != -1) {
        if (c == 'h') {
            fputs(kp_gen_usage_head, stdout);
            fputs(kp_gen_usage_tail, stdout);
            return KP_GEN_PARSE_HELP;
        }
        if (c == '?')
            return kp_gen_usage_error("unknown option '%s'", argv[optind - 1]);
        if (c == ':')
            return kp_gen_usage_error("option '%s' needs a value", argv[optind - 1]);
        if (!kp_gen_opt_set(opts, c, optarg))
            return kp_gen_usage_error("bad value '%s' for %s%s", optarg, c == 'X' ? "-" : "--",
                                      c == 'X' ? "X" : kp_gen_long_opts[idx].name);
        idx = -1;
    }
    if (optind < argc)
        return kp_gen_usage_error("unexpected argument '%s'", argv[optind]);
    const char *why = kp_gen_opts_check(opts);
    if (why != NULL)
        return kp_gen_usage_error("%s", why);
    return KP_GEN_PARSE_OK;
}
