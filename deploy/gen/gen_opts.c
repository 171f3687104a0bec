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

static const char kp_gen_usage_text[] =
    "usage: kappa-gen (--brokers HOST:PORT --topic T | --output FILE|-)\n"
    "                 (--count N | --rate EPS --duration-s S) [options]\n"
    "\n"
    "Writes click events {\"user_id\":\"user_7\",\"item_id\":\"item_42\",\"timestamp\":MS}\n"
    "to a Kafka topic (key = user_id) or to an NDJSON file, deterministically for a seed,\n"
    "and can write the truth: how many on-time clicks each item got per window.\n"
    "\n"
    "output:\n"
    "  --brokers HOST:PORT      Kafka bootstrap servers (with --topic)\n"
    "  --topic T                Kafka topic (must exist or be auto-created)\n"
    "  --output FILE            NDJSON file instead of Kafka; '-' = stdout\n"
    "  -X, --kafka-prop K=V     extra librdkafka producer property (repeatable)\n"
    "  --truth FILE             write the truth file (format below)\n"
    "  --partitions N           print how many messages each of N partitions gets\n"
    "                           (Java murmur2 of the key, as the producer partitions)\n"
    "  --quiet                  no summary line on stderr\n"
    "volume:\n"
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
    "                           run (default 604800000 = 7 days)\n"
    "  --out-of-order-ms J      timestamp = base time - uniform 0..J (default 0). The\n"
    "                           truth assumes J <= 10000 (a 10 s watermark bound)\n"
    "  --late-fraction F        fraction of events made late: timestamp = base time -\n"
    "                           late lag - uniform 0..1 h; not counted (default 0).\n"
    "                           Only after the first max(10000, count/10) events, once\n"
    "                           a partitioned watermark is well defined\n"
    "  --late-lag-ms L          late lag (default 86400000 = 24 h)\n"
    "  --malformed F            fraction of invalid messages: truncated JSON, garbage,\n"
    "                           no timestamp, no item_id, timestamp as a string;\n"
    "                           keyed like the others, never counted (default 0)\n"
    "  --seed N                 PRNG seed; same options + seed = same bytes (default 1)\n"
    "truth:\n"
    "  --window-ms W            tumbling window size (default 3600000)\n"
    "  --filter-users-above N   count only users whose number is > N (default 0 = all)\n"
    "\n"
    "Truth file: lines starting with '#' are comments; one of them carries the totals\n"
    "  # events=N valid=N malformed=N late=N filter_users_above=N window_ms=W\n"
    "and another '# counted=N filtered=N seed=N' (counted = sum of click_count).\n"
    "Then one line per (item, window) with a count > 0:\n"
    "  item_id<TAB>window_start<TAB>window_end<TAB>click_count\n"
    "sorted by item_id (byte order, as LC_ALL=C sort) then window_start; window_start =\n"
    "ts - (ts mod W), window_end = window_start + W (exclusive). Late events are made late\n"
    "only where a 10 s bounded-out-of-orderness watermark has passed their window, so an\n"
    "engine drops them; otherwise the event is emitted on time.\n"
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
    fprintf(stderr, "\n\n%s", kp_gen_usage_text);
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
    default:
        return false;
    }
}

/* Rules that involve more than one option. Returns NULL or the reason. */
static const char *kp_gen_opts_check(kp_gen_opts_t *o)
{
    if (o->output != NULL && (o->brokers != NULL || o->topic != NULL))
        return "give either --output or --brokers/--topic, not both";
    if (o->output == NULL && (o->brokers == NULL || o->topic == NULL))
        return "give --brokers and --topic, or --output FILE";
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
        o->start_time_ms > INT64_MAX / 4 || o->out_of_order_ms > INT64_MAX / 4)
        return "a time option is too large";
    return NULL;
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
            fputs(kp_gen_usage_text, stdout);
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
