/* `kappa run --local JOB.so`: loads a job plugin, binds its sources and sinks from flags,
 * and runs it to completion in this process on the same engine the taskmanagers run. */
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint_store.h"
#include "cli.h"
#include "connectors.h"
#include "epoch_file.h"
#include "exec.h"
#include "job_opts.h"
#include "memory_budget.h"
#include "plugin.h"

typedef struct run_opts {
    int local, plan_only, stats;
    const char *job_path;
    kp_job_opts job; /* bindings, connector options, start position, -p (job_opts.h) */
    char state_dir[512];
    char ckpt_dir[600]; /* STATE_DIR/checkpoints, the default --checkpoint-dir */
    size_t cache_mb, rocks_cache_mb, memtable_mb, network_mb, slot_mb;
    char fetch_conf[64]; /* kafka.memory_mb from the slot budget */
} run_opts;

static void run_usage(FILE *out)
{
    fprintf(out, "usage: kappa run --local JOB.so [options]\n");
    kp_job_opts_usage(out);
    fprintf(out,
            "  --state-dir DIR          RocksDB state directory (default: a temporary one)\n"
            "  --state-cache-mb N       in-memory window cache per subtask before spilling\n"
            "  --rocksdb-cache-mb N     RocksDB block cache per keyed subtask (default 32)\n"
            "  --rocksdb-memtable-mb N  RocksDB memtable size, at most 2 per state (default 16)\n"
            "  --network-memory-mb N    record batches of all exchanges (default 512)\n"
            "  --slot-memory-mb N       memory budget of one slot, split over state, RocksDB,\n"
            "                           exchanges and Kafka read-ahead (memory_budget.h)\n"
            "  --stats                  print each connector's metrics (JSON) at the end\n"
            "  --plan                   print the job graph and exit\n");
}

static int parse(run_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"local", no_argument, NULL, 'l'},
        {"state-dir", required_argument, NULL, 'S'},
        {"state-cache-mb", required_argument, NULL, 'C'},
        {"plan", no_argument, NULL, 'P'},
        {"stats", no_argument, NULL, 'T'},
        {"rocksdb-cache-mb", required_argument, NULL, 'R'},
        {"rocksdb-memtable-mb", required_argument, NULL, 'M'},
        {"network-memory-mb", required_argument, NULL, 'N'},
        {"slot-memory-mb", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        KP_JOB_LONGOPTS,
        {0},
    };
    int c;
    char *end;
    o->job.verb = "kappa run";
    while ((c = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        int shared = kp_job_opts_parse(&o->job, c, optarg);
        if (shared < 0)
            return -1;
        if (shared)
            continue;
        switch (c) {
        case 'l':
            o->local = 1;
            break;
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
        case 'N':
        case 'B': {
            size_t *mb = c == 'R'   ? &o->rocks_cache_mb
                         : c == 'M' ? &o->memtable_mb
                         : c == 'N' ? &o->network_mb
                                    : &o->slot_mb;
            *mb = strtoul(optarg, &end, 10);
            if (*end || !*mb || *mb > 65536) {
                fprintf(stderr, "kappa run: --%s must be 1..65536\n",
                        c == 'R'   ? "rocksdb-cache-mb"
                        : c == 'M' ? "rocksdb-memtable-mb"
                        : c == 'N' ? "network-memory-mb"
                                   : "slot-memory-mb");
                return -1;
            }
            break;
        }
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

/* The slots a local run needs (slot sharing: the largest parallelism) and the keyed subtasks
 * each slot holds (one per window, session or process operator). */
static void slot_shape(const kp_job *job, int *slots, int *keyed)
{
    *slots = 1;
    *keyed = 0;
    for (int i = 0; i < job->nnodes; i++) {
        const kp_node *n = job->nodes[i];
        if (n->parallelism > *slots)
            *slots = n->parallelism;
        *keyed += n->kind == KP_NODE_WINDOW || n->kind == KP_NODE_PROCESS;
    }
}

/* Sets every memory knob the user did not set from the slot budget (memory_budget.h). Kafka's
 * read-ahead goes in as the last conf entry, so any kafka.memory_mb the user gave wins. */
static int apply_slot_budget(run_opts *o, const kp_job *job, kp_exec_config *cfg, kp_slot_memory *m)
{
    char err[256];
    int slots, keyed;
    slot_shape(job, &slots, &keyed);
    if (kp_slot_memory_split((o->slot_mb ? o->slot_mb : KP_SLOT_MEMORY_DEFAULT >> 20) << 20, keyed,
                             m, err, sizeof err) != 0) {
        fprintf(stderr, "kappa run: --slot-memory-mb: %s\n", err);
        return -1;
    }
    if (o->cache_mb)
        m->state_cache = o->cache_mb << 20;
    if (o->rocks_cache_mb)
        m->rocksdb_cache = o->rocks_cache_mb << 20;
    if (o->memtable_mb)
        m->memtable = o->memtable_mb << 20;
    cfg->state_cache_bytes = m->state_cache;
    cfg->rocksdb_cache_bytes = m->rocksdb_cache;
    cfg->rocksdb_memtable_bytes = m->memtable;
    cfg->network_bytes = o->network_mb ? o->network_mb << 20 : m->network * (size_t)slots;
    snprintf(o->fetch_conf, sizeof o->fetch_conf, "kafka.memory_mb=%zu", m->source_fetch >> 20);
    o->job.conf[o->job.nconf++] = o->fetch_conf; /* kp_job_opts keeps one entry free */
    return 0;
}

/* The parts of the run the memory table sums budgets over: slots, keyed and source subtasks. */
static kp_memory_shape memory_shape(const kp_job *job, const kp_exec_config *cfg)
{
    kp_memory_shape sh = {.network = cfg->network_bytes};
    int keyed_per_slot;
    slot_shape(job, &sh.slots, &keyed_per_slot);
    for (int i = 0; i < job->nnodes; i++) {
        const kp_node *n = job->nodes[i];
        if (n->kind == KP_NODE_WINDOW || n->kind == KP_NODE_PROCESS)
            sh.keyed += n->parallelism;
        else if (n->kind == KP_NODE_SOURCE)
            sh.sources += n->parallelism;
    }
    return sh;
}

/* The attempt's fencing epoch from the counter in the state dir (epoch_file.h). Without
 * --state-dir (a temporary one, removed at the end) the counter is the user's, per job name:
 * $XDG_STATE_HOME/kappa/JOB or ~/.local/state/kappa/JOB; if that cannot be written the run
 * warns and falls back to the wall clock in seconds. 0, or -1 after printing why. */
static int take_epoch(const char *state_dir, int tmp_state, const char *job, int64_t *epoch)
{
    char dir[1200], err[1024], name[256];
    snprintf(name, sizeof name, "%s", job);
    for (char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            *c = '_';
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (!tmp_state)
        snprintf(dir, sizeof dir, "%s", state_dir);
    else if (xdg && xdg[0])
        snprintf(dir, sizeof dir, "%s/kappa/%s", xdg, name);
    else if (home && home[0])
        snprintf(dir, sizeof dir, "%s/.local/state/kappa/%s", home, name);
    else
        dir[0] = 0;
    if (dir[0] && kp_epoch_next(dir, (int64_t)time(NULL), epoch, err, sizeof err) == 0)
        return 0;
    if (!tmp_state) {
        fprintf(stderr, "kappa run: %s\n", err);
        return -1;
    }
    fprintf(stderr, "kappa run: warning: no fencing epoch counter (%s); using the wall clock\n",
            dir[0] ? err : "neither XDG_STATE_HOME nor HOME is set");
    *epoch = (int64_t)time(NULL);
    return 0;
}

/* Checkpoints of a local run (job_opts.h flags; without --checkpoint-interval, the job's own
 * interval): storage in --checkpoint-dir or STATE_DIR/checkpoints; --from-checkpoint opens
 * the checkpoint to restore (*restore). 0, or -1 after printing why (a usage error). */
static int setup_checkpoints(run_opts *o, kp_job *job, kp_exec_config *cfg, kp_restore **restore)
{
    char err[1024];
    cfg->ckpt = o->job.ckpt;
    if (!kp_job_opts_has(&o->job, KP_OPT_CKPT_INTERVAL))
        cfg->ckpt.interval_ms = job->checkpoint_interval;
    if (!cfg->ckpt.dir) {
        snprintf(o->ckpt_dir, sizeof o->ckpt_dir, "%s/checkpoints", o->state_dir);
        cfg->ckpt.dir = o->ckpt_dir;
    }
    if (!o->job.from_checkpoint)
        return 0;
    if (!(*restore = kp_restore_open(o->job.from_checkpoint, err, sizeof err))) {
        fprintf(stderr, "kappa run: --from-checkpoint %s: %s\n", o->job.from_checkpoint, err);
        return -1;
    }
    cfg->restore = *restore;
    fprintf(stderr, "kappa run: restoring from checkpoint %lld (%s)\n",
            (long long)kp_restore_id(*restore), kp_restore_path(*restore));
    return 0;
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
    kp_exec_config cfg = {.bindings = o->job.b,
                          .nbindings = o->job.nb,
                          .state_dir = o->state_dir,
                          .conf = o->job.conf,
                          .print_stats = o->stats,
                          .cancel = &cancel_requested};
    kp_slot_memory mem;
    kp_restore *restore = NULL;
    if (take_epoch(o->state_dir, tmp_state, job->name, &cfg.epoch) != 0 ||
        apply_slot_budget(o, job, &cfg, &mem) != 0 ||
        setup_checkpoints(o, job, &cfg, &restore) != 0) {
        if (tmp_state)
            remove_tree(o->state_dir);
        return 2;
    }
    /* checkpoints in a temporary state directory outlive the run: it is kept */
    int keep_state = tmp_state && cfg.ckpt.interval_ms > 0 && !o->job.ckpt.dir;
    if (o->stats) {
        char line[512];
        kp_slot_memory_describe(&mem, line, sizeof line);
        fprintf(stderr, "kappa: %s\n", line);
    }
    kp_exec_stats stats = {0};
    catch_signals();
    int rc = kp_exec_run(job, &cfg, &stats, err, sizeof err);
    if (stats.seconds > 0)
        print_stats(&stats, o->stats);
    if (stats.seconds > 0 && o->stats) {
        kp_memory_shape shape = memory_shape(job, &cfg);
        kp_memory_report(stderr, &mem, &shape, &stats);
    }
    kp_restore_free(restore);
    if (keep_state)
        fprintf(stderr, "kappa run: checkpoints are in %s\n", cfg.ckpt.dir);
    else if (tmp_state)
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
    if (kp_job_opts_check(&o.job) != 0)
        return 2;
    kp_connectors_register_builtin();
    char err[1024];
    kp_plugin_handle *h = kp_plugin_load(o.job_path, o.job.parallelism, err, sizeof err);
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
