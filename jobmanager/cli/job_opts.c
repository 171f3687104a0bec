/* The job flags shared by `kappa run --local` and `kappa submit` (job_opts.h): one parser, so
 * a binding or a start position means the same on a laptop and on a cluster. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "job_opts.h"

static kp_binding *binding(kp_job_opts *o, const char *name)
{
    for (int i = 0; i < o->nb; i++)
        if (!strcmp(o->b[i].name, name))
            return &o->b[i];
    if (o->nb == KP_CLI_MAX_BINDINGS)
        return NULL;
    o->b[o->nb] = (kp_binding){.name = name};
    return &o->b[o->nb++];
}

/* Splits NAME=VALUE in place; NULL if there is no '='. */
static char *split_arg(char *arg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return NULL;
    *eq = 0;
    return eq + 1;
}

static int parse_policy(const char *s, kp_error_policy *out)
{
    if (!strcmp(s, "fail"))
        *out = KP_POLICY_FAIL;
    else if (!strcmp(s, "skip"))
        *out = KP_POLICY_SKIP;
    else if (!strcmp(s, "dead-letter"))
        *out = KP_POLICY_DEAD_LETTER;
    else
        return -1;
    return 0;
}

static int bind_arg(kp_job_opts *o, int opt, char *arg)
{
    char *val = split_arg(arg);
    kp_binding *b = val ? binding(o, arg) : NULL;
    if (!b) {
        fprintf(stderr, "%s: expected NAME=VALUE, got '%s'\n", o->verb, arg);
        return -1;
    }
    if (opt == KP_OPT_SOURCE || opt == KP_OPT_SINK)
        b->uri = val;
    else if (opt == KP_OPT_DEAD_LETTER)
        b->dead_letter = val;
    else if (parse_policy(val, &b->on_error) != 0) {
        fprintf(stderr, "%s: unknown policy '%s' (fail, skip or dead-letter)\n", o->verb, val);
        return -1;
    }
    return 0;
}

/* Adds a connector configuration entry, fmt applied to arg ("%s" = arg itself). Flags given
 * later win: entries are searched in order, so they are inserted at the front. */
static int add_conf(kp_job_opts *o, const char *fmt, const char *arg)
{
    const char *entry = arg;
    int nbuf = (int)(sizeof o->conf_buf / sizeof o->conf_buf[0]);
    if (strcmp(fmt, "%s") != 0) {
        if (o->nbuf == nbuf) {
            fprintf(stderr, "%s: too many connector flags\n", o->verb);
            return -1;
        }
        snprintf(o->conf_buf[o->nbuf], sizeof o->conf_buf[0], fmt, arg);
        entry = o->conf_buf[o->nbuf++];
    }
    if (o->nconf == KP_CLI_MAX_CONF) {
        fprintf(stderr, "%s: too many --conf entries\n", o->verb);
        return -1;
    }
    memmove(o->conf + 1, o->conf, (size_t)o->nconf * sizeof *o->conf);
    o->conf[0] = entry;
    o->nconf++;
    return 0;
}

static const char *const start_flags[] = {
    [KP_START_EARLIEST] = "--from-earliest",
    [KP_START_LATEST] = "--from-latest",
    [KP_START_TIMESTAMP] = "--from-timestamp",
    [KP_START_GROUP] = "--from-group-offsets",
};

/* One start flag: a second, different one is a usage error (which would win is a guess). The
 * Kafka source reads it as conf kafka.start (connectors/kafka_source.c). */
static int set_start(kp_job_opts *o, kp_start_mode m, const char *arg)
{
    int64_t ts = 0;
    if (m == KP_START_TIMESTAMP) {
        char *end;
        long long v = strtoll(arg, &end, 10);
        if (end == arg || *end || v < 0) {
            fprintf(stderr,
                    "%s: --from-timestamp expects milliseconds since the epoch (an integer >= 0), "
                    "got '%s'\n",
                    o->verb, arg);
            return -1;
        }
        ts = v;
    }
    if (o->start != KP_START_DEFAULT && (o->start != m || o->start_ts != ts)) {
        fprintf(stderr, "%s: %s conflicts with %s: give one start position\n", o->verb,
                start_flags[m], start_flags[o->start]);
        return -1;
    }
    o->start = m;
    o->start_ts = ts;
    if (m == KP_START_TIMESTAMP) {
        char spec[40];
        snprintf(spec, sizeof spec, "timestamp:%" PRId64, ts);
        return add_conf(o, "kafka.start=%s", spec);
    }
    return add_conf(o, "kafka.start=%s",
                    m == KP_START_EARLIEST ? "earliest"
                    : m == KP_START_LATEST ? "latest"
                                           : "group");
}

static int parse_parallelism(kp_job_opts *o, const char *arg)
{
    char *end;
    long p = strtol(arg, &end, 10);
    if (end == arg || *end || p < 1 || p > KP_MAX_PARALLELISM) {
        fprintf(stderr,
                "%s: --parallelism must be within 1..%d (the most subtasks one operator may "
                "have), got '%s'\n",
                o->verb, KP_MAX_PARALLELISM, arg);
        return -1;
    }
    o->parallelism = (int)p;
    return 0;
}

int kp_parse_duration(const char *s, kp_time *ms)
{
    static const struct {
        const char *unit;
        kp_time ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0 || *s == '+' || *s == '-')
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].unit)) {
            if (v > INT64_MAX / units[i].ms)
                return -1;
            *ms = (kp_time)v * units[i].ms;
            return 0;
        }
    return -1;
}

/* --checkpoint-interval/-timeout/--min-pause: a duration, positive except the pause. */
static int ckpt_duration(kp_job_opts *o, int opt, const char *flag, const char *arg, kp_time *out)
{
    if (kp_parse_duration(arg, out) != 0 || (*out == 0 && opt != KP_OPT_MIN_PAUSE)) {
        fprintf(stderr, "%s: --%s expects a %sduration with a unit (500ms, 1s, 2m, 1h), got '%s'\n",
                o->verb, flag, opt == KP_OPT_MIN_PAUSE ? "" : "positive ", arg);
        return -1;
    }
    return 0;
}

/* The count flags: an integer of at least `min`. */
static int ckpt_count(kp_job_opts *o, const char *flag, const char *arg, int min, int *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || v < min || v > 1000000) {
        fprintf(stderr, "%s: --%s expects an integer >= %d, got '%s'\n", o->verb, flag, min, arg);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* One of the checkpoint flags. */
static int parse_ckpt(kp_job_opts *o, int opt, const char *arg)
{
    kp_ckpt_config *k = &o->ckpt;
    o->ckpt_flags |= 1u << (opt - KP_OPT_CKPT_INTERVAL);
    switch (opt) {
    case KP_OPT_CKPT_INTERVAL:
        return ckpt_duration(o, opt, "checkpoint-interval", arg, &k->interval_ms);
    case KP_OPT_CKPT_TIMEOUT:
        return ckpt_duration(o, opt, "checkpoint-timeout", arg, &k->timeout_ms);
    case KP_OPT_MIN_PAUSE:
        return ckpt_duration(o, opt, "min-pause", arg, &k->min_pause_ms);
    case KP_OPT_MAX_CONCURRENT:
        return ckpt_count(o, "max-concurrent-checkpoints", arg, 1, &k->max_concurrent);
    case KP_OPT_TOLERABLE_FAILURES:
        return ckpt_count(o, "tolerable-checkpoint-failures", arg, 0, &k->tolerable_failures);
    case KP_OPT_RETAINED:
        return ckpt_count(o, "retained-checkpoints", arg, 1, &k->retain);
    case KP_OPT_CKPT_MODE:
        if (!strcmp(arg, "exactly_once"))
            k->mode = KP_CKPT_EXACTLY_ONCE;
        else if (!strcmp(arg, "at_least_once"))
            k->mode = KP_CKPT_AT_LEAST_ONCE;
        else {
            fprintf(stderr, "%s: --checkpoint-mode is exactly_once or at_least_once, got '%s'\n",
                    o->verb, arg);
            return -1;
        }
        return 0;
    case KP_OPT_CKPT_DIR:
    case KP_OPT_FROM_CHECKPOINT:
        if (!*arg) {
            fprintf(stderr, "%s: --%s expects a path\n", o->verb,
                    opt == KP_OPT_CKPT_DIR ? "checkpoint-dir" : "from-checkpoint");
            return -1;
        }
        *(opt == KP_OPT_CKPT_DIR ? &k->dir : &o->from_checkpoint) = arg;
        return 0;
    }
    return -1;
}

/* --from-savepoint PATH: an existing savepoint (or checkpoint) directory or _metadata file, made
 * absolute (the jobmanager and the taskmanagers read it); exclusive with --from-checkpoint. */
static int from_savepoint(kp_job_opts *o, const char *arg)
{
    if (o->from_checkpoint) {
        fprintf(stderr, "%s: give one of --from-checkpoint and --from-savepoint\n", o->verb);
        return -1;
    }
    if (!realpath(arg, o->savepoint_path)) {
        fprintf(stderr, "%s: --from-savepoint %s: %s\n", o->verb, arg, strerror(errno));
        return -1;
    }
    o->from_checkpoint = o->savepoint_path;
    return 0;
}

int kp_job_opts_parse(kp_job_opts *o, int opt, char *arg)
{
    int rc;
    if (opt == KP_OPT_FROM_SAVEPOINT)
        return from_savepoint(o, arg) == 0 ? 1 : -1;
    if (opt == KP_OPT_ALLOW_NON_RESTORED)
        return (o->allow_non_restored = 1);
    if (opt == KP_OPT_FROM_CHECKPOINT && o->savepoint_path[0]) {
        fprintf(stderr, "%s: give one of --from-checkpoint and --from-savepoint\n", o->verb);
        return -1;
    }
    if (opt >= KP_OPT_CKPT_INTERVAL && opt <= KP_OPT_FROM_CHECKPOINT)
        return parse_ckpt(o, opt, arg) == 0 ? 1 : -1;
    switch (opt) {
    case KP_OPT_SOURCE:
    case KP_OPT_SINK:
    case KP_OPT_ON_ERROR:
    case KP_OPT_DEAD_LETTER:
        rc = bind_arg(o, opt, arg);
        break;
    case 'p':
        rc = parse_parallelism(o, arg);
        break;
    case KP_OPT_CONF:
        if (!strchr(arg, '=') || *arg == '=') {
            fprintf(stderr, "%s: --conf expects KEY=VALUE, got '%s'\n", o->verb, arg);
            return -1;
        }
        rc = add_conf(o, "%s", arg);
        break;
    case KP_OPT_BROKERS:
        rc = add_conf(o, "kafka.brokers=%s", arg);
        break;
    case KP_OPT_ES_URL:
        rc = add_conf(o, "es.url=%s", arg);
        break;
    case KP_OPT_FROM_EARLIEST:
    case KP_OPT_FROM_LATEST:
    case KP_OPT_FROM_TIMESTAMP:
    case KP_OPT_FROM_GROUP:
        rc = set_start(o, (kp_start_mode)(KP_START_EARLIEST + (opt - KP_OPT_FROM_EARLIEST)), arg);
        break;
    default:
        return 0;
    }
    return rc == 0 ? 1 : -1;
}

int kp_job_opts_check(const kp_job_opts *o)
{
    for (int i = 0; i < o->nb; i++)
        if (!o->b[i].uri) {
            fprintf(stderr, "%s: '%s' has options but no --source/--sink URI\n", o->verb,
                    o->b[i].name);
            return -1;
        }
    return 0;
}

const char *kp_start_mode_name(kp_start_mode m)
{
    switch (m) {
    case KP_START_LATEST:
        return "latest";
    case KP_START_TIMESTAMP:
        return "timestamp";
    case KP_START_GROUP:
        return "group-offsets";
    default:
        return "earliest";
    }
}

void kp_job_opts_usage(FILE *out)
{
    fprintf(
        out,
        "  --source NAME=URI        bind source NAME (file:PATH, stdin:, kafka:TOPIC)\n"
        "  --sink NAME=URI          bind sink NAME (file:PATH, stdout:, es:INDEX, kafka:TOPIC)\n"
        "  --on-error NAME=POLICY   decode errors of source NAME: fail, skip, dead-letter\n"
        "  --dead-letter NAME=URI   where source NAME's malformed records go (file:, kafka:)\n"
        "  --conf KEY=VALUE         connector option, e.g. kafka.brokers=H:P, es.url=URL\n"
        "  --brokers H:P            = --conf kafka.brokers=H:P\n"
        "  --es-url URL             = --conf es.url=URL\n"
        "  --from-earliest          Kafka sources start at the earliest offsets (default)\n"
        "  --from-latest            Kafka sources start at the latest offsets\n"
        "  --from-timestamp MS      Kafka sources start at the first record at or after MS\n"
        "                           (milliseconds since the epoch; the end if none)\n"
        "  --from-group-offsets     Kafka sources start at their group's committed offsets\n"
        "                           (partitions without one: earliest)\n"
        "  -p, --parallelism N      override the job's default parallelism\n"
        "  --checkpoint-interval DUR  take a checkpoint every DUR (500ms, 1s, 2m; default: off)\n"
        "  --checkpoint-mode M      exactly_once (aligned barriers, default) or at_least_once\n"
        "  --checkpoint-dir DIR     checkpoint storage (run --local: STATE_DIR/checkpoints)\n"
        "  --checkpoint-timeout DUR a checkpoint not complete by then fails (default 10m)\n"
        "  --min-pause DUR          between the end of one checkpoint and the next (default 0)\n"
        "  --max-concurrent-checkpoints N   in flight at once (default 1)\n"
        "  --tolerable-checkpoint-failures N  failed in a row before the job fails (default 0)\n"
        "  --retained-checkpoints N completed checkpoints kept (default 1)\n"
        "  --from-checkpoint PATH   restore from a checkpoint (_metadata, chk-N or job dir)\n"
        "  --from-savepoint PATH    restore from a savepoint (its directory; kappa savepoint)\n"
        "  --allow-non-restored-state  drop state of operators the job no longer has (by uid)\n");
}
