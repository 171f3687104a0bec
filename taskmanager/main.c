/* kappa-taskmanager: the worker daemon of a kappa cluster. It registers with the jobmanager
 * (--jobmanager HOST:PORT, the jobmanager's --rpc-port), offers --slots task slots and a data
 * address, and runs the subtasks the jobmanager deploys to it. This file reads the flags,
 * prepares the state directory and the data listener, and hands over to the session. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kappa/kappa.h>

#include "connectors.h"
#include "data_listener.h"
#include "log_tail.h"
#include "memory_budget.h"
#include "session.h"
#include "tm.h"

volatile sig_atomic_t kp_tm_stop;

void kp_tm_log(const char *fmt, ...)
{
    char msg[2048], stamp[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[2200];
    int n = snprintf(line, sizeof line, "%s.%03ldZ kappa-taskmanager: %s", stamp,
                     ts.tv_nsec / 1000000, msg);
    fprintf(stderr, "%s\n", line);
    kp_tm_log_keep(line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kappa-taskmanager --jobmanager HOST:PORT [options]\n"
            "  --jobmanager HOST:PORT     the jobmanager's control-plane (--rpc-port) address\n"
            "  --bind ADDR                data-plane listen address (default 127.0.0.1)\n"
            "  --slots N                  task slots offered (default 1)\n"
            "  --slot-memory-mb N         memory budget of one slot, split over state, RocksDB,\n"
            "                             exchanges and Kafka read-ahead (default 512)\n"
            "  --data-port N              data-plane port (default 0 = a free port)\n"
            "  --state-dir DIR            instance id, plugin cache and job state\n"
            "                             (default ./kappa-taskmanager-state)\n"
            "  --heartbeat-interval-ms N  heartbeat interval until the jobmanager sets one "
            "(default 1000)\n"
            "  --heartbeat-timeout-ms N   silence from the jobmanager that counts as lost "
            "(default 10000)\n");
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "kappa-taskmanager: %s must be a number in %d..%d, got '%s'\n", flag, lo,
                hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* HOST:PORT or [V6]:PORT. */
static int parse_jobmanager(kp_tm_options *o, const char *s)
{
    const char *colon = strrchr(s, ':');
    const char *host = s;
    size_t hlen = colon ? (size_t)(colon - s) : 0;
    if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    int port;
    if (!colon || hlen == 0 || hlen >= sizeof o->jm_host ||
        parse_int("--jobmanager port", colon + 1, 1, 65535, &port) != 0) {
        fprintf(stderr, "kappa-taskmanager: --jobmanager expects HOST:PORT, got '%s'\n", s);
        return -1;
    }
    memcpy(o->jm_host, host, hlen);
    o->jm_host[hlen] = 0;
    snprintf(o->jm_port, sizeof o->jm_port, "%d", port);
    return 0;
}

static int parse(kp_tm_options *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"jobmanager", required_argument, NULL, 'j'},
        {"bind", required_argument, NULL, 'b'},
        {"slots", required_argument, NULL, 's'},
        {"slot-memory-mb", required_argument, NULL, 'm'},
        {"data-port", required_argument, NULL, 'd'},
        {"state-dir", required_argument, NULL, 'S'},
        {"heartbeat-interval-ms", required_argument, NULL, 'i'},
        {"heartbeat-timeout-ms", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    *o = (kp_tm_options){.bind = "127.0.0.1",
                         .slots = 1,
                         .slot_mb = (int)(KP_SLOT_MEMORY_DEFAULT >> 20),
                         .state_dir = "kappa-taskmanager-state",
                         .heartbeat_ms = 1000,
                         .heartbeat_timeout_ms = 10000};
    int c, rc = 0, have_jm = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            rc = parse_jobmanager(o, optarg);
            have_jm = 1;
            break;
        case 'b':
            o->bind = optarg;
            break;
        case 's':
            rc = parse_int("--slots", optarg, 1, 1024, &o->slots);
            break;
        case 'm':
            rc = parse_int("--slot-memory-mb", optarg, (int)(KP_SLOT_MEMORY_MIN >> 20), 1 << 20,
                           &o->slot_mb);
            break;
        case 'd':
            rc = parse_int("--data-port", optarg, 0, 65535, &o->data_port);
            break;
        case 'S':
            o->state_dir = optarg;
            break;
        case 'i':
            rc = parse_int("--heartbeat-interval-ms", optarg, 10, 600000, &o->heartbeat_ms);
            break;
        case 't':
            rc = parse_int("--heartbeat-timeout-ms", optarg, 50, 3600000, &o->heartbeat_timeout_ms);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (rc == 0 && optind != argc) {
        fprintf(stderr, "kappa-taskmanager: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (rc == 0 && !have_jm) {
        fprintf(stderr, "kappa-taskmanager: --jobmanager HOST:PORT is required\n");
        return -1;
    }
    return rc;
}

static void on_signal(int sig)
{
    kp_tm_stop = sig;
}

int main(int argc, char **argv)
{
    kp_tm_options opt;
    if (parse(&opt, argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    char id[KP_TM_ID_LEN], err[1024];
    if (kp_tm_identity_load(opt.state_dir, id, err, sizeof err) != 0) {
        kp_tm_log("%s", err);
        return 1;
    }
    kp_net *net =
        kp_tm_data_start(opt.bind, opt.data_port, opt.jm_host, opt.jm_port, err, sizeof err);
    if (!net) {
        kp_tm_log("cannot start the data plane on %s:%d: %s", opt.bind, opt.data_port, err);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    kp_connectors_register_builtin();
    kp_tm_log("taskmanager %s (kappa %s, job ABI %u): %d slots, data %s, state %s, jobmanager "
              "%s:%s",
              id, KP_TM_VERSION, KP_ABI_VERSION, opt.slots, kp_net_address(net), opt.state_dir,
              opt.jm_host, opt.jm_port);
    int rc = kp_tm_session_run(&opt, id, net);
    if (rc == 0) /* else a deployment may still use the endpoint: the exit frees it all */
        kp_net_stop(net);
    return rc;
}
