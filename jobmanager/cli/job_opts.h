/* The flags every verb that starts a job takes — bindings (--source, --sink, --on-error,
 * --dead-letter), connector options (--conf, --brokers, --es-url), the start position
 * (--from-earliest | --from-latest | --from-timestamp MS | --from-group-offsets), -p and the
 * checkpoint settings (--checkpoint-interval, ..., --from-checkpoint) —
 * parsed in one place, so `kappa run --local` and `kappa submit` accept exactly the same
 * words with the same meaning. A verb puts KP_JOB_LONGOPTS into its getopt_long table and
 * hands every option it does not know itself to kp_job_opts_parse().
 * @locality the CLI's one thread (parsing happens before anything else runs) */
#ifndef KP_CLI_JOB_OPTS_H
#define KP_CLI_JOB_OPTS_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "exec.h"

#define KP_CLI_MAX_BINDINGS 64
#define KP_CLI_MAX_CONF     64

typedef enum kp_start_mode {
    KP_START_DEFAULT = 0, /* no flag: the connector's own default (earliest) */
    KP_START_EARLIEST,
    KP_START_LATEST,
    KP_START_TIMESTAMP,
    KP_START_GROUP,
} kp_start_mode;

/* Option codes of the shared flags (above any character getopt returns). */
enum {
    KP_OPT_SOURCE = 1000,
    KP_OPT_SINK,
    KP_OPT_ON_ERROR,
    KP_OPT_DEAD_LETTER,
    KP_OPT_CONF,
    KP_OPT_BROKERS,
    KP_OPT_ES_URL,
    KP_OPT_FROM_EARLIEST,
    KP_OPT_FROM_LATEST,
    KP_OPT_FROM_TIMESTAMP,
    KP_OPT_FROM_GROUP,
    KP_OPT_CKPT_INTERVAL,
    KP_OPT_CKPT_MODE,
    KP_OPT_CKPT_DIR,
    KP_OPT_CKPT_TIMEOUT,
    KP_OPT_MIN_PAUSE,
    KP_OPT_MAX_CONCURRENT,
    KP_OPT_TOLERABLE_FAILURES,
    KP_OPT_RETAINED,
    KP_OPT_FROM_CHECKPOINT,
    KP_OPT_FROM_SAVEPOINT,
    KP_OPT_ALLOW_NON_RESTORED,
};

/* The shared entries of a getopt_long table ('p' also needs "p:" in the short options). */
#define KP_JOB_LONGOPTS                                                                            \
    {"source", required_argument, NULL, KP_OPT_SOURCE},                                            \
        {"sink", required_argument, NULL, KP_OPT_SINK},                                            \
        {"on-error", required_argument, NULL, KP_OPT_ON_ERROR},                                    \
        {"dead-letter", required_argument, NULL, KP_OPT_DEAD_LETTER},                              \
        {"conf", required_argument, NULL, KP_OPT_CONF},                                            \
        {"brokers", required_argument, NULL, KP_OPT_BROKERS},                                      \
        {"es-url", required_argument, NULL, KP_OPT_ES_URL},                                        \
        {"from-earliest", no_argument, NULL, KP_OPT_FROM_EARLIEST},                                \
        {"from-latest", no_argument, NULL, KP_OPT_FROM_LATEST},                                    \
        {"from-timestamp", required_argument, NULL, KP_OPT_FROM_TIMESTAMP},                        \
        {"from-group-offsets", no_argument, NULL, KP_OPT_FROM_GROUP},                              \
        {"checkpoint-interval", required_argument, NULL, KP_OPT_CKPT_INTERVAL},                    \
        {"checkpoint-mode", required_argument, NULL, KP_OPT_CKPT_MODE},                            \
        {"checkpoint-dir", required_argument, NULL, KP_OPT_CKPT_DIR},                              \
        {"checkpoint-timeout", required_argument, NULL, KP_OPT_CKPT_TIMEOUT},                      \
        {"min-pause", required_argument, NULL, KP_OPT_MIN_PAUSE},                                  \
        {"max-concurrent-checkpoints", required_argument, NULL, KP_OPT_MAX_CONCURRENT},            \
        {"tolerable-checkpoint-failures", required_argument, NULL, KP_OPT_TOLERABLE_FAILURES},     \
        {"retained-checkpoints", required_argument, NULL, KP_OPT_RETAINED},                        \
        {"from-checkpoint", required_argument, NULL, KP_OPT_FROM_CHECKPOINT},                      \
        {"from-savepoint", required_argument, NULL, KP_OPT_FROM_SAVEPOINT},                        \
        {"allow-non-restored-state", no_argument, NULL, KP_OPT_ALLOW_NON_RESTORED},                \
    {                                                                                              \
        "parallelism", required_argument, NULL, 'p'                                                \
    }

typedef struct kp_job_opts {
    const char *verb; /* "kappa run", "kappa submit": prefixes every message */
    int parallelism;  /* -p; 0 = the job's default */
    kp_binding b[KP_CLI_MAX_BINDINGS];
    int nb;
    /* connector configuration "key=value", NULL-terminated, later flags first (they win);
     * one entry more is kept free for the runner's own last entry (run_local.c) */
    const char *conf[KP_CLI_MAX_CONF + 2];
    int nconf;
    kp_start_mode start;
    int64_t start_ts;      /* KP_START_TIMESTAMP: milliseconds since the epoch */
    char conf_buf[8][600]; /* storage for entries built from flags (--brokers, --from-*) */
    int nbuf;
    /* Checkpoints: the flags' values (0/NULL where not given: the runner's or the cluster's
     * default); ckpt_flags has bit (opt - KP_OPT_CKPT_INTERVAL) set for every flag given.
     * from_checkpoint: a _metadata file, a chk-<N> directory or a job's checkpoint directory
     * (its latest valid checkpoint). */
    kp_ckpt_config ckpt;
    unsigned ckpt_flags;
    const char *from_checkpoint;
    /* --from-savepoint PATH (made absolute into savepoint_path; it also sets from_checkpoint:
     * the restore is the same) and --allow-non-restored-state (state of operator uids the job
     * does not have is dropped instead of failing the submission; the jobmanager checks). */
    char savepoint_path[4096];
    int allow_non_restored;
} kp_job_opts;

/* Whether checkpoint flag `opt` (KP_OPT_CKPT_INTERVAL ...) was given. */
static inline int kp_job_opts_has(const kp_job_opts *o, int opt)
{
    return (o->ckpt_flags >> (opt - KP_OPT_CKPT_INTERVAL)) & 1u;
}

/* A duration: an integer with a unit, ms, s, m or h ("500ms", "1s", "2m"). 0, or -1 when it is
 * not one (the caller says which flag). */
int kp_parse_duration(const char *s, kp_time *ms);

/* Handles one option returned by getopt_long. Returns 1 if it was a shared option and was
 * taken, 0 if it is not one of them (the verb's own), -1 after printing why it is wrong
 * (a usage error: a malformed value, or a start flag that conflicts with an earlier one). */
int kp_job_opts_parse(kp_job_opts *o, int opt, char *arg);

/* Checks what can only be checked once all flags are in (every binding has a URI). Returns 0
 * or -1 after printing why. */
int kp_job_opts_check(const kp_job_opts *o);

/* The start position as the manifest spells it: "earliest", "latest", "timestamp",
 * "group-offsets" (KP_START_DEFAULT is "earliest", the Kafka source's default). */
const char *kp_start_mode_name(kp_start_mode m);

/* The help lines of the shared flags. */
void kp_job_opts_usage(FILE *out);

#endif
