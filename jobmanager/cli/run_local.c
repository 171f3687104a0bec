/* `kappa run --local JOB.so`: loads a job plugin, binds its sources and sinks from flags,
 * and runs it to completion in this process on the same engine the taskmanagers run. */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "connectors.h"
#include "exec.h"
#include "plugin.h"

#define MAX_BINDINGS 64

typedef struct run_opts {
    int local, plan_only, parallelism, stats;
    const char *job_path;
    kp_binding b[MAX_BINDINGS];
    int nb;
    char state_dir[512];
    size_t cache_mb, rocks_cache_mb, memtable_mb, network_mb;
    const char *conf[MAX_BINDINGS + 1]; /* "key=value", NULL-terminated */
    int nconf;
    char conf_buf[4][600]; /* storage for conf entries built from flags */
    int nbuf;
} run_opts;

static void run_usage(FILE *out)
{
    fprintf(out,
            "usage: kappa run --local JOB.so [options]\n"
            "  --source NAME=URI        bind source NAME (file:PATH, stdin:)\n"
            "  --sink NAME=URI          bind sink NAME (file:PATH, stdout:)\n"
            "  --on-error NAME=POLICY   decode errors of source NAME: fail, skip, dead-letter\n"
            "  --dead-letter NAME=URI   where source NAME's malformed records go (file:, kafka:)\n"
            "  --conf KEY=VALUE         connector option, e.g. kafka.brokers=H:P, es.url=URL\n"
            "  --brokers H:P            = --conf kafka.brokers=H:P\n"
            "  --es-url URL             = --conf es.url=URL\n"
            "  --from-earliest          Kafka sources start at the earliest offsets\n"
            "  --from-latest            Kafka sources start at the latest offsets\n"
            "  -p, --parallelism N      override the job's default parallelism\n"
            "  --state-dir DIR          RocksDB state directory (default: a temporary one)\n"
            "  --state-cache-mb N       in-memory window cache per subtask before spilling\n"
            "  --rocksdb-cache-mb N     RocksDB block cache per keyed subtask (default 32)\n"
            "  --rocksdb-memtable-mb N  RocksDB memtable size, at most 2 per state (default 16)\n"
            "  --network-memory-mb N    record batches of all exchanges (default 512)\n"
            "  --stats                  print each connector's metrics (JSON) at the end\n"
            "  --plan                   print the job graph and exit\n");
}

static kp_binding *binding(run_opts *o, const char *name)
{
    for (int i = 0; i < o->nb; i++)
        if (!strcmp(o->b[i].name, name))
            return &o->b[i];
    if (o->nb == MAX_BINDINGS)
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

static int bind_arg(run_opts *o, int opt, char *arg)
{
    char *val = split_arg(arg);
    kp_binding *b = val ? binding(o, arg) : NULL;
    if (!b) {
        fprintf(stderr, "kappa run: expected NAME=VALUE, got '%s'\n", arg);
        return -1;
    }
    if (opt == 's' || opt == 'k')
        b->uri = val;
    else if (opt == 'd')
        b->dead_letter = val;
    else if (parse_policy(val, &b->on_error) != 0) {
        fprintf(stderr, "kappa run: unknown policy '%s' (fail, skip or dead-letter)\n", val);
        return -1;
    }
    return 0;
}

/* Adds a connector configuration entry. Flags given later win: entries are searched in
 * order, so they are inserted at the front. */
static int add_conf(run_opts *o, const char *fmt, const char *arg)
{
    const char *entry = arg;
    if (strcmp(fmt, "%s") != 0) {
        if (o->nbuf == 4) {
            fprintf(stderr, "kappa run: too many connector flags\n");
            return -1;
        }
        snprintf(o->conf_buf[o->nbuf], sizeof o->conf_buf[0], fmt, arg);
        entry = o->conf_buf[o->nbuf++];
    }
    if (o->nconf == MAX_BINDINGS) {
        fprintf(stderr, "kappa run: too many --conf entries\n");
        return -1;
    }
    memmove(o->conf + 1, o->conf, (size_t)o->nconf * sizeof *o->conf);
    o->conf[0] = entry;
    o->nconf++;
    return 0;
}

static int parse(run_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"local", no_argument, NULL, 'l'},
        {"source", required_argument, NULL, 's'},
        {"sink", required_argument, NULL, 'k'},
        {"on-error", required_argument, NULL, 'e'},
        {"dead-letter", required_argument, NULL, 'd'},
        {"parallelism", required_argument, NULL, 'p'},
        {"state-dir", required_argument, NULL, 'S'},
        {"state-cache-mb", required_argument, NULL, 'C'},
        {"plan", no_argument, NULL, 'P'},
        {"stats", no_argument, NULL, 'T'},
        {"rocksdb-cache-mb", required_argument, NULL, 'R'},
        {"rocksdb-memtable-mb", required_argument, NULL, 'M'},
        {"network-memory-mb", required_argument, NULL, 'N'},
        {"conf", required_argument, NULL, 'c'},
        {"brokers", required_argument, NULL, 'b'},
        {"es-url", required_argument, NULL, 'u'},
        {"from-earliest", no_argument, NULL, 'E'},
        {"from-latest", no_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->local = 1;
            break;
        case 's':
        case 'k':
        case 'e':
        case 'd':
            if (bind_arg(o, c, optarg) != 0)
                return -1;
            break;
        case 'p': {
            long p = strtol(optarg, &end, 10);
            if (end == optarg || *end || p < 1 || p > KP_MAX_PARALLELISM) {
                fprintf(stderr,
                        "kappa run: --parallelism must be within 1..%d (the most subtasks one "
                        "operator may have), got '%s'\n",
                        KP_MAX_PARALLELISM, optarg);
                return -1;
            }
            o->parallelism = (int)p;
            break;
        }
        case 'S':
            snprintf(o->state_dir, sizeof o->state_dir, "%s", optarg);
            break;
        case 'C':
            o->cache_mb = strtoul(optarg, &end, 10);
            if (*end || !o->cache_mb) {
                fprintf(stderr, "kappa run: --state-cache-mb must be a positive number\n");
                return -1;
            }
            break;
        case 'P':
            o->plan_only = 1;
            break;
        case 'T':
            o->stats = 1;
            break;
        case 'R':
        case 'M':
        case 'N': {
            size_t *mb = c == 'R'   ? &o->rocks_cache_mb
                         : c == 'M' ? &o->memtable_mb
                                    : &o->network_mb;
            *mb = strtoul(optarg, &end, 10);
            if (*end || !*mb || *mb > 65536) {
                fprintf(stderr, "kappa run: --%s must be 1..65536\n",
                        c == 'R'   ? "rocksdb-cache-mb"
                        : c == 'M' ? "rocksdb-memtable-mb"
                                   : "network-memory-mb");
                return -1;
            }
            break;
        }
        case 'c':
            if (!strchr(optarg, '=') || *optarg == '=') {
                fprintf(stderr, "kappa run: --conf expects KEY=VALUE, got '%s'\n", optarg);
                return -1;
            }
            if (add_conf(o, "%s", optarg) != 0)
                return -1;
            break;
        case 'b':
            if (add_conf(o, "kafka.brokers=%s", optarg) != 0)
                return -1;
            break;
        case 'u':
            if (add_conf(o, "es.url=%s", optarg) != 0)
                return -1;
            break;
        case 'E':
        case 'L':
            if (add_conf(o, "kafka.start=%s", c == 'E' ? "earliest" : "latest") != 0)
                return -1;
            break;
        case 'h':
            run_usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "kappa run: expected exactly one JOB.so\n");
        return -1;
    }
    if (!o->local) {
        fprintf(stderr, "kappa run: only --local is available until the cluster lands; "
                        "use `kappa run --local JOB.so`\n");
        return -1;
    }
    o->job_path = argv[optind];
    return 0;
}

/* The run summary; with --stats also how well the exchanges batch (records per batch: a
 * watermark or a clock tick that flushes partly filled batches shows up here). */
static void print_stats(const kp_exec_stats *s, int detailed)
{
    fprintf(stderr,
            "kappa: done in %.2f s: %lld records in (%.0f/s), %lld out, %lld decode errors "
            "(%lld dead-lettered), %lld skipped, %lld late, %lld windows fired, %lld spills; "
            "state: peak cache %.1f MiB, RocksDB %.1f MiB\n",
            s->seconds, s->records_in, s->seconds > 0 ? s->records_in / s->seconds : 0.0,
            s->records_out, s->decode_errors, s->dead_lettered, s->skipped, s->late_records,
            s->windows_fired, s->state_spills, s->state_cache_peak / 1048576.0,
            s->state_rocksdb / 1048576.0);
    if (!detailed)
        return;
    if (s->batches_sent > 0)
        fprintf(stderr, "kappa: exchanges: %lld records in %lld batches, %.1f records per batch\n",
                s->records_sent, s->batches_sent, (double)s->records_sent / s->batches_sent);
    else
        fprintf(stderr, "kappa: exchanges: none sent a batch (every operator chained)\n");
}

/* nftw callback: removes one entry; children come first (FTW_DEPTH). */
static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    if (rc != 0)
        fprintf(stderr, "kappa run: could not remove %s: %s\n", path, strerror(errno));
    return 0; /* go on: remove as much as possible */
}

/* Removes the temporary state directory and everything below it, without a shell (the path
 * comes from TMPDIR and may hold any character) and without following symbolic links. */
static void remove_tree(const char *dir)
{
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "kappa run: could not remove %s: %s\n", dir, strerror(errno));
}

/* SIGINT/SIGTERM cancel the job: subtasks stop, the run ends with "cancelled", temporary
 * state is removed. A second signal kills the process (the default action is restored). */
static volatile sig_atomic_t cancel_requested;

static void on_signal(int sig)
{
    cancel_requested = sig;
    signal(sig, SIG_DFL);
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int run_job(run_opts *o, kp_job *job)
{
    char err[1024];
    int tmp_state = !o->state_dir[0];
    if (tmp_state) {
        snprintf(o->state_dir, sizeof o->state_dir, "%s/kappa-state-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(o->state_dir)) {
            perror("kappa run: cannot create a state directory");
            return 1;
        }
    }
    kp_exec_config cfg = {.bindings = o->b,
                          .nbindings = o->nb,
                          .state_dir = o->state_dir,
                          .state_cache_bytes = o->cache_mb << 20,
                          .conf = o->conf,
                          .print_stats = o->stats,
                          .rocksdb_cache_bytes = o->rocks_cache_mb << 20,
                          .rocksdb_memtable_bytes = o->memtable_mb << 20,
                          .network_bytes = o->network_mb << 20,
                          .cancel = &cancel_requested};
    kp_exec_stats stats = {0};
    catch_signals();
    int rc = kp_exec_run(job, &cfg, &stats, err, sizeof err);
    if (stats.seconds > 0)
        print_stats(&stats, o->stats);
    if (tmp_state)
        remove_tree(o->state_dir);
    if (rc != 0 && cancel_requested) {
        fprintf(stderr, "kappa run: job '%s' cancelled by signal %d\n", job->name,
                (int)cancel_requested);
        return 128 + (int)cancel_requested;
    }
    if (rc != 0) {
        fprintf(stderr, "kappa run: job '%s' failed: %s\n", job->name, err);
        return 1;
    }
    return 0;
}

int kp_cli_run(int argc, char **argv)
{
    run_opts o = {0};
    if (parse(&o, argc, argv) != 0) {
        run_usage(stderr);
        return 2;
    }
    for (int i = 0; i < o.nb; i++)
        if (!o.b[i].uri) {
            fprintf(stderr, "kappa run: '%s' has options but no --source/--sink URI\n",
                    o.b[i].name);
            return 2;
        }
    kp_connectors_register_builtin();
    char err[1024];
    kp_plugin_handle *h = kp_plugin_load(o.job_path, o.parallelism, err, sizeof err);
    if (!h) {
        fprintf(stderr, "kappa run: %s\n", err);
        return 1;
    }
    kp_job *job = kp_plugin_job(h);
    int rc = 0;
    if (o.plan_only) {
        char plan[16384];
        kp_job_describe(job, plan, sizeof plan);
        fputs(plan, stdout);
    } else {
        rc = run_job(&o, job);
    }
    kp_plugin_close(h);
    return rc;
}
