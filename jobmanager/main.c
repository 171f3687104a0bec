/* kappa-jobmanager: the cluster's coordinator. Parses the flags, loads the job list from
 * --state-dir, starts the REST server (its own thread) and runs the control plane on the main
 * thread until SIGINT/SIGTERM. Prints the bound ports on stdout, one line each ("rest
 * HOST:PORT", "rpc HOST:PORT"), so scripts and tests can use port 0. Exit codes: 0 stopped by
 * a signal, 1 could not start, 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bluegreen.h"
#include "ckpt_io.h"
#include "jm.h"

static kp_jm_t jm_;
static volatile int stop_;

void kp_jm_log(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kp_time now = kp_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ jobmanager: %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000), msg);
}

static void on_signal(int sig)
{
    stop_ = 1;
    if (jm_.wake_fd > 0)
        kp_jm_wake(&jm_);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kappa-jobmanager [options]\n"
            "  --bind ADDR                 listen address for REST and RPC (127.0.0.1)\n"
            "  --rest-port N               REST port (8081; 0 = a free port)\n"
            "  --rpc-port N                control-plane port (6123; 0 = a free port)\n"
            "  --state-dir DIR             job list and uploads (./kappa-jobmanager-state)\n"
            "  --token-file F              require 'Authorization: Bearer <token in F>' on\n"
            "                              every POST/PATCH/DELETE\n"
            "  --max-upload-mb N           largest plugin accepted (64)\n"
            "  --heartbeat-interval-ms N   taskmanager heartbeat interval (1000)\n"
            "  --heartbeat-timeout-ms N    taskmanager lost after this silence (10000)\n"
            "  --restart-strategy S        fixed-delay | exponential-delay | none (fixed-delay)\n"
            "  --restart-attempts N        restarts allowed per job (10)\n"
            "  --restart-delay-ms N        delay before a restart, or the first one (1000)\n"
            "  --cancel-timeout-ms N       wait this long for cancel acknowledgements (10000)\n"
            "  --deploy-timeout-ms N       a deployed job fails over when not every subtask\n"
            "                              runs this long after its deploy (120000)\n"
            "Checkpoints, the defaults of every job (kappa submit's flags of the same names\n"
            "override them per job; docs/cluster.md, Checkpoints):\n"
            "  --checkpoint-dir DIR        storage shared with every taskmanager\n"
            "                              (<state-dir>/checkpoints)\n"
            "  --checkpoint-interval DUR   e.g. 1s, 500ms (0 = off, unless the job sets one)\n"
            "  --checkpoint-mode M         exactly_once | at_least_once (exactly_once)\n"
            "  --checkpoint-timeout DUR    a checkpoint not complete by then fails (10m)\n"
            "  --min-pause DUR             between the end of one and the next trigger (0)\n"
            "  --max-concurrent-checkpoints N   in flight at once (1)\n"
            "  --tolerable-checkpoint-failures N  consecutive failures before the job\n"
            "                              fails over (0)\n"
            "  --retained-checkpoints N    completed checkpoints kept (1)\n"
            "A manifest's conf may override the restart strategy: restart-strategy=...,\n"
            "restart-strategy.attempts=N, restart-strategy.delay-ms=N,\n"
            "restart-strategy.max-delay-ms=N. Bound ports are printed on stdout.\n");
}

static int parse_u32(const char *flag, const char *v, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || !*v || *end || n < min || n > max) {
        fprintf(stderr, "kappa-jobmanager: %s needs an integer in %u..%u, not '%s'\n", flag, min,
                max, v);
        return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

static int read_token(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "kappa-jobmanager: --token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        fprintf(stderr,
                "kappa-jobmanager: warning: --token-file %s is readable by others (chmod 600 "
                "it)\n",
                path);
    size_t n = fread(out, 1, outlen - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (!n || strchr(out, '\n')) {
        fprintf(stderr, "kappa-jobmanager: --token-file %s: needs one non-empty line\n", path);
        return -1;
    }
    return 0;
}

static int mkdirs(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0700) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(path, 0700) && errno != EEXIST ? -1 : 0;
}

static int parse_restart(const char *v, kp_restart_kind *kind)
{
    if (!strcmp(v, "fixed-delay"))
        *kind = KP_RESTART_FIXED;
    else if (!strcmp(v, "exponential-delay"))
        *kind = KP_RESTART_EXPONENTIAL;
    else if (!strcmp(v, "none"))
        *kind = KP_RESTART_NONE;
    else {
        fprintf(stderr, "kappa-jobmanager: --restart-strategy is fixed-delay, "
                        "exponential-delay or none\n");
        return -1;
    }
    return 0;
}

/* The checkpoint defaults, in the order of the CK_* options. */
static int parse_ckpt_flag(int which, const char *v, kp_jm_config_t *cfg)
{
    static const char *const names[] = {"--checkpoint-dir",
                                        "--checkpoint-interval",
                                        "--checkpoint-mode",
                                        "--checkpoint-timeout",
                                        "--min-pause",
                                        "--max-concurrent-checkpoints",
                                        "--tolerable-checkpoint-failures",
                                        "--retained-checkpoints"};
    kp_ckpt_config *c = &cfg->ckpt;
    kp_time *dur[] = {NULL, &c->interval_ms, NULL, &c->timeout_ms, &c->min_pause_ms};
    uint32_t n;
    switch (which) {
    case 0:
        if (v[0] != '/' || strlen(v) > 3000) {
            fprintf(stderr, "kappa-jobmanager: --checkpoint-dir needs an absolute path (at most "
                            "3000 characters): every taskmanager reads and writes it\n");
            return -1;
        }
        snprintf(cfg->ckpt_dir, sizeof cfg->ckpt_dir, "%s", v);
        return 0;
    case 2:
        if (strcmp(v, "exactly_once") && strcmp(v, "at_least_once")) {
            fprintf(stderr, "kappa-jobmanager: --checkpoint-mode is exactly_once or "
                            "at_least_once\n");
            return -1;
        }
        c->mode = strcmp(v, "exactly_once") ? KP_CKPT_AT_LEAST_ONCE : KP_CKPT_EXACTLY_ONCE;
        return 0;
    case 1:
    case 3:
    case 4:
        if (kp_jm_parse_duration(v, dur[which])) {
            fprintf(stderr, "kappa-jobmanager: %s needs a duration (1500ms, 2s, 5m), not '%s'\n",
                    names[which], v);
            return -1;
        }
        return 0;
    default:
        if (parse_u32(names[which], v, 0, which == 5 ? 64 : 1000000, &n))
            return -1;
        *(which == 5   ? &c->max_concurrent
          : which == 6 ? &c->tolerable_failures
                       : &c->retain) = (int)n;
        return 0;
    }
}

static int parse_flags(int argc, char **argv, kp_jm_config_t *cfg)
{
    enum {
        BIND = 256,
        REST,
        RPC,
        STATE,
        TOKEN,
        UPLOAD,
        HBI,
        HBT,
        RS,
        RA,
        RD,
        CT,
        DT,
        HELP,
        CK_DIR,
        CK_INT,
        CK_MODE,
        CK_TO,
        CK_PAUSE,
        CK_CONC,
        CK_TOL,
        CK_RET
    };
    static const struct option opts[] = {
        {"bind", 1, 0, BIND},
        {"rest-port", 1, 0, REST},
        {"rpc-port", 1, 0, RPC},
        {"state-dir", 1, 0, STATE},
        {"token-file", 1, 0, TOKEN},
        {"max-upload-mb", 1, 0, UPLOAD},
        {"heartbeat-interval-ms", 1, 0, HBI},
        {"heartbeat-timeout-ms", 1, 0, HBT},
        {"restart-strategy", 1, 0, RS},
        {"restart-attempts", 1, 0, RA},
        {"restart-delay-ms", 1, 0, RD},
        {"cancel-timeout-ms", 1, 0, CT},
        {"deploy-timeout-ms", 1, 0, DT},
        {"checkpoint-dir", 1, 0, CK_DIR},
        {"checkpoint-interval", 1, 0, CK_INT},
        {"checkpoint-mode", 1, 0, CK_MODE},
        {"checkpoint-timeout", 1, 0, CK_TO},
        {"min-pause", 1, 0, CK_PAUSE},
        {"max-concurrent-checkpoints", 1, 0, CK_CONC},
        {"tolerable-checkpoint-failures", 1, 0, CK_TOL},
        {"retained-checkpoints", 1, 0, CK_RET},
        {"help", 0, 0, HELP},
        {0, 0, 0, 0},
    };
    uint32_t v, upload_mb = 64;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case BIND:
            cfg->bind = optarg;
            break;
        case REST:
        case RPC:
            if (parse_u32(c == REST ? "--rest-port" : "--rpc-port", optarg, 0, 65535, &v))
                return -1;
            *(c == REST ? &cfg->rest_port : &cfg->rpc_port) = (int)v;
            break;
        case STATE:
            cfg->state_dir = optarg;
            break;
        case TOKEN:
            if (read_token(optarg, cfg->token, sizeof cfg->token))
                return -1;
            break;
        case UPLOAD:
            if (parse_u32("--max-upload-mb", optarg, 1, 4096, &upload_mb))
                return -1;
            break;
        case HBI:
            if (parse_u32("--heartbeat-interval-ms", optarg, 10, 600000,
                          &cfg->heartbeat_interval_ms))
                return -1;
            break;
        case HBT:
            if (parse_u32("--heartbeat-timeout-ms", optarg, 50, 3600000,
                          &cfg->heartbeat_timeout_ms))
                return -1;
            break;
        case RS:
            if (parse_restart(optarg, &cfg->restart.kind))
                return -1;
            break;
        case RA:
            if (parse_u32("--restart-attempts", optarg, 0, 1000000, &cfg->restart.attempts))
                return -1;
            break;
        case RD:
            if (parse_u32("--restart-delay-ms", optarg, 0, 3600000, &cfg->restart.delay_ms))
                return -1;
            break;
        case CT:
            if (parse_u32("--cancel-timeout-ms", optarg, 10, 3600000, &cfg->cancel_timeout_ms))
                return -1;
            break;
        case DT:
            if (parse_u32("--deploy-timeout-ms", optarg, 10, 86400000, &cfg->deploy_timeout_ms))
                return -1;
            break;
        case CK_DIR:
        case CK_INT:
        case CK_MODE:
        case CK_TO:
        case CK_PAUSE:
        case CK_CONC:
        case CK_TOL:
        case CK_RET:
            if (parse_ckpt_flag(c - CK_DIR, optarg, cfg))
                return -1;
            break;
        case HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kappa-jobmanager: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_interval_ms) {
        fprintf(stderr, "kappa-jobmanager: --heartbeat-timeout-ms must exceed the interval\n");
        return -1;
    }
    cfg->max_upload_bytes = (uint64_t)upload_mb << 20;
    return 0;
}

/* <state-dir>/checkpoints, absolute: it travels to the taskmanagers in every Deploy. */
static int default_ckpt_dir(kp_jm_config_t *cfg)
{
    char *abs = realpath(cfg->state_dir, NULL);
    if (!abs)
        return -1;
    snprintf(cfg->ckpt_dir, sizeof cfg->ckpt_dir, "%.3000s/checkpoints", abs);
    free(abs);
    return 0;
}

int main(int argc, char **argv)
{
    kp_jm_t *jm = &jm_;
    kp_jm_config_t *cfg = &jm->cfg;
    *cfg = (kp_jm_config_t){
        .bind = "127.0.0.1",
        .rest_port = 8081,
        .rpc_port = 6123,
        .state_dir = "kappa-jobmanager-state",
        .heartbeat_interval_ms = 1000,
        .heartbeat_timeout_ms = 10000,
        .cancel_timeout_ms = 10000,
        .deploy_timeout_ms = 120000,
        .restart = {KP_RESTART_FIXED, 10, 1000, 60000},
    };
    if (parse_flags(argc, argv, cfg))
        return 2;
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return 1;
    for (int i = 0; i < 16; i++)
        snprintf(jm->instance_id + 2 * i, 3, "%02x", raw[i]);
    pthread_mutex_init(&jm->lock, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    if (strlen(cfg->state_dir) > 3000) {
        fprintf(stderr, "kappa-jobmanager: --state-dir is longer than 3000 characters\n");
        return 2;
    }
    if (mkdirs(cfg->state_dir)) {
        fprintf(stderr, "kappa-jobmanager: cannot create --state-dir %s: %s\n", cfg->state_dir,
                strerror(errno));
        return 1;
    }
    if (!cfg->ckpt_dir[0] && default_ckpt_dir(cfg)) {
        fprintf(stderr, "kappa-jobmanager: cannot resolve --state-dir %s: %s\n", cfg->state_dir,
                strerror(errno));
        return 1;
    }
    cfg->ckpt.dir = cfg->ckpt_dir;
    kp_uploads_sweep(cfg->state_dir);
    pthread_mutex_lock(&jm->lock);
    int rc = kp_registry_load(jm, err, sizeof err);
    pthread_mutex_unlock(&jm->lock);
    if (rc) {
        fprintf(stderr, "kappa-jobmanager: %s\n", err);
        return 1;
    }
    int rpc_port = cfg->rpc_port, rest_port = cfg->rest_port;
    if (kp_control_listen(jm, &rpc_port, err, sizeof err)) {
        fprintf(stderr, "kappa-jobmanager: %s\n", err);
        return 1;
    }
    /* the blue/green records before REST answers: GET /jobs/:id and rollback read them */
    if (kp_bg_start(jm, err, sizeof err)) {
        fprintf(stderr, "kappa-jobmanager: %s\n", err);
        return 1;
    }
    kp_rest_t *rest = kp_rest_start(jm, &rest_port, err, sizeof err);
    if (!rest) {
        fprintf(stderr, "kappa-jobmanager: %s\n", err);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("rest %s:%d\nrpc %s:%d\n", cfg->bind, rest_port, cfg->bind, rpc_port);
    fflush(stdout);
    if (!cfg->token[0] && strcmp(cfg->bind, "127.0.0.1"))
        kp_jm_log("warning: REST on %s accepts submissions from anyone who can reach it: give "
                  "a --token-file",
                  cfg->bind);
    kp_jm_log("started (id %s): REST %s:%d, control %s:%d, state %s, %zu jobs known",
              jm->instance_id, cfg->bind, rest_port, cfg->bind, rpc_port, cfg->state_dir,
              jm->njobs);

    kp_control_run(jm, &stop_);
    kp_bg_stop();
    kp_ckpt_io_stop();

    kp_rest_stop(rest);
    pthread_mutex_lock(&jm->lock);
    kp_registry_save(jm);
    for (size_t i = 0; i < jm->njobs; i++)
        kp_job_free(jm->jobs[i]);
    free(jm->jobs);
    pthread_mutex_unlock(&jm->lock);
    kp_jm_log("stopped");
    return 0;
}
