/* The cluster over a real network (issue 9): each of the two kappa-taskmanagers runs in its own
 * network namespace, so nothing between them can go through shared memory, shared files or a
 * shared loopback. The seed job at -p 2, one subtask on each taskmanager, reads a Kafka topic
 * and its index must equal kappa-gen's truth.
 *
 * The network (addresses 10.231.N.0/28, N from the test's pid; names kpns-PID-a|b for the
 * namespaces, kpnsPIDa|b for the root ends of their links):
 *
 *   root 10.231.N.1 ──veth── 10.231.N.2  namespace a   (default route via .1)
 *   root 10.231.N.5 ──veth── 10.231.N.6  namespace b   (default route via .5)
 *   namespace a 10.231.N.9 ──veth── 10.231.N.10 namespace b   (the data plane)
 *
 * The jobmanager binds 10.231.N.1 only (no loopback): b reaches it through its gateway, as a
 * local address of the root namespace, so the host needs no IP forwarding; for the same reason
 * the data plane gets its own link between the namespaces instead of a route through the root.
 * Each taskmanager binds its data plane to its end of that link and has its own --state-dir.
 *
 * Kafka and OpenSearch (with-services) listen on 127.0.0.1 only. OpenSearch is reached through
 * a TCP relay in this test on 10.231.N.1. Kafka needs two: the broker advertises
 * 127.0.0.1:PORT in its metadata, so a relay on a veth address alone would carry only the
 * bootstrap; each namespace therefore gets a relay on its own 127.0.0.1:PORT that forwards over
 * its veth to a relay on 10.231.N.1, which forwards to the broker. deploy/dev/kafka and
 * deploy/dev/search take no listen address (only --port), and giving them one would still
 * leave Kafka advertising a single address that must work in three namespaces.
 *
 * `ip netns` must work (root, as CI runs): if it does not, the test fails saying so. Whatever
 * happens, the processes, relays, namespaces and links it made go at the end; those a crashed
 * earlier run left (names with the pid of a process that is gone) are removed first. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../support/shell.h"
#include "../support/spawn.h"
#include "../unit/jm_harness.h"
#include "seed_data.h"

/* --- a TCP relay, listening in a chosen network namespace ---------------------------------- */

typedef struct relay {
    int lfd, port;
    struct sockaddr_in target;
    pthread_t acceptor;
    atomic_int stop;
    atomic_int live; /* connections being pumped */
} relay;

typedef struct pump {
    relay *r;
    int a, b;
} pump;

/* Copies bytes both ways until either side closes or the relay stops. @locality own thread */
static void *pump_main(void *arg)
{
    pump *p = arg;
    char buf[65536];
    struct pollfd fds[2] = {{p->a, POLLIN, 0}, {p->b, POLLIN, 0}};
    while (!atomic_load(&p->r->stop)) {
        if (poll(fds, 2, 100) <= 0)
            continue;
        int done = 0;
        for (int i = 0; i < 2 && !done; i++) {
            if (!fds[i].revents)
                continue;
            ssize_t n = recv(fds[i].fd, buf, sizeof buf, 0);
            done = n <= 0 || send(fds[1 - i].fd, buf, (size_t)n, MSG_NOSIGNAL) != n;
        }
        if (done)
            break;
    }
    close(p->a);
    close(p->b);
    atomic_fetch_sub(&p->r->live, 1);
    free(p);
    return NULL;
}

/* Accepts and connects each client to the target, in the namespace it was started in.
 * @locality own thread */
static void *accept_main(void *arg)
{
    relay *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd pfd = {r->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int a = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (a < 0)
            continue;
        int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (b < 0 || connect(b, (struct sockaddr *)&r->target, sizeof r->target) != 0) {
            fprintf(stderr, "netns relay: connect: %s\n", strerror(errno));
            close(a);
            if (b >= 0)
                close(b);
            continue;
        }
        struct timeval tv = {2, 0}; /* a stuck reader cannot hold a pump past a stop forever */
        setsockopt(a, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(b, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        pump *p = malloc(sizeof *p);
        *p = (pump){r, a, b};
        atomic_fetch_add(&r->live, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, pump_main, p) != 0) {
            atomic_fetch_sub(&r->live, 1);
            close(a);
            close(b);
            free(p);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static void to_sockaddr(struct sockaddr_in *sa, const char *ip, int port)
{
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    cr_assert_eq(inet_pton(AF_INET, ip, &sa->sin_addr), 1, "bad address %s", ip);
}

/* A relay listening on ip:port (0: a free port) inside namespace `ns` (NULL: this one) and
 * connecting to target_ip:target_port from there. Its threads live in that namespace. */
static relay *relay_start(const char *ns, const char *ip, int port, const char *target_ip,
                          int target_port)
{
    relay *r = calloc(1, sizeof *r);
    to_sockaddr(&r->target, target_ip, target_port);
    int home = -1;
    if (ns) {
        char path[128];
        snprintf(path, sizeof path, "/run/netns/%s", ns);
        home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        cr_assert(home >= 0 && fd >= 0, "cannot open %s: %s", path, strerror(errno));
        cr_assert_eq(setns(fd, CLONE_NEWNET), 0, "setns %s: %s", ns, strerror(errno));
        close(fd);
    }
    struct sockaddr_in sa;
    to_sockaddr(&sa, ip, port);
    int one = 1;
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int ok = r->lfd >= 0 && bind(r->lfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
             listen(r->lfd, 64) == 0;
    int err = errno;
    socklen_t len = sizeof sa;
    getsockname(r->lfd, (struct sockaddr *)&sa, &len);
    r->port = ntohs(sa.sin_port);
    if (ok) /* the acceptor inherits this thread's namespace, its connects happen there */
        ok = pthread_create(&r->acceptor, NULL, accept_main, r) == 0;
    if (ns) {
        cr_assert_eq(setns(home, CLONE_NEWNET), 0, "setns back: %s", strerror(errno));
        close(home);
    }
    cr_assert(ok, "relay on %s:%d (namespace %s): %s", ip, port, ns ? ns : "root", strerror(err));
    return r;
}

static void relay_stop(relay *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, 1);
    pthread_join(r->acceptor, NULL);
    close(r->lfd);
    while (atomic_load(&r->live) > 0)
        usleep(20 * 1000);
    free(r);
}

/* --- the test's network ------------------------------------------------------------------- */

#define NRELAYS 4

static char dir_[] = "/tmp/kappa-netns-XXXXXX";
static char ip_bin_[128];
static int net_;          /* N of 10.231.N.0/28 */
static char ns_[2][32];   /* kpns-PID-a, kpns-PID-b ("" until made) */
static char link_[2][16]; /* kpnsPIDa, kpnsPIDb: the root ends */
static relay *relays_[NRELAYS];
static pid_t tm_[2];
static jm_proc jm_;
static char topic_[128], index_[64];

static const char *addr(int host)
{
    static char s[4][24];
    static int next;
    char *p = s[next++ % 4];
    snprintf(p, sizeof s[0], "10.231.%d.%d", net_, host);
    return p;
}

/* Runs `ip ARGS`; fails the test with ip's own message when it fails. */
static void ip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ip(const char *fmt, ...)
{
    char args[512], err[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (kp_test_sh("%s %s 2>%s/ip.err", ip_bin_, args, dir_) == 0)
        return;
    char path[300];
    snprintf(path, sizeof path, "%s/ip.err", dir_);
    kp_test_slurp(path, err, sizeof err);
    cr_assert_fail("`ip %s` failed: %s(this test needs a working `ip netns`: run it as root "
                   "with iproute2, as CI does)",
                   args, err);
}

/* Namespaces and links named by this test whose pid is gone (or is ours: a pid reused after a
 * crash) are left over from an earlier run: deleting the namespace takes its links along. */
static void remove_leftovers(void)
{
    kp_test_sh("ip=%s me=%d; for n in $($ip netns list | awk '{print $1}' | "
               "grep -E '^kpns-[0-9]+-[ab]$'); do p=${n#kpns-}; p=${p%%-*}; "
               "if [ $p = $me ] || [ ! -d /proc/$p ]; then $ip netns del $n; fi; done; "
               "for l in $($ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | "
               "grep -E '^kpns[0-9]+[ab]$'); do p=${l#kpns}; p=${p%%?}; "
               "if [ $p = $me ] || [ ! -d /proc/$p ]; then $ip link del $l; fi; done",
               ip_bin_, (int)getpid());
}

/* The picture in the first comment. */
static void make_network(void)
{
    int pid = (int)getpid();
    net_ = pid % 250 + 1;
    for (int i = 0; i < 2; i++) {
        snprintf(ns_[i], sizeof ns_[i], "kpns-%d-%c", pid, 'a' + i);
        snprintf(link_[i], sizeof link_[i], "kpns%d%c", pid, 'a' + i);
        ip("netns add %s", ns_[i]);
        ip("link add %s type veth peer name %sn netns %s", link_[i], link_[i], ns_[i]);
        ip("addr add %s/30 dev %s", addr(1 + 4 * i), link_[i]);
        ip("link set %s up", link_[i]);
        ip("-n %s addr add %s/30 dev %sn", ns_[i], addr(2 + 4 * i), link_[i]);
        ip("-n %s link set %sn up", ns_[i], link_[i]);
        ip("-n %s link set lo up", ns_[i]);
        ip("-n %s route add default via %s", ns_[i], addr(1 + 4 * i));
    }
    ip("link add kpns%dx netns %s type veth peer name kpns%dy netns %s", pid, ns_[0], pid, ns_[1]);
    for (int i = 0; i < 2; i++) {
        ip("-n %s addr add %s/30 dev kpns%d%c", ns_[i], addr(9 + i), pid, 'x' + i);
        ip("-n %s link set kpns%d%c up", ns_[i], pid, 'x' + i);
    }
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir_));
    kp_test_capture(ip_bin_, sizeof ip_bin_, "command -v ip");
    cr_assert(ip_bin_[0], "no `ip` command (iproute2): this test needs `ip netns`");
    remove_leftovers();
    make_network();
}

/* Whatever happened: processes, relays, namespaces (with their links), topic, index, files. */
static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        if (tm_[i] > 0) {
            kill(tm_[i], SIGKILL);
            waitpid(tm_[i], NULL, 0);
            tm_[i] = 0;
        }
    jm_kill_all();
    for (int i = 0; i < NRELAYS; i++) {
        relay_stop(relays_[i]);
        relays_[i] = NULL;
    }
    for (int i = 0; i < 2; i++)
        if (ns_[i][0])
            kp_test_sh("%s netns del %s 2>/dev/null", ip_bin_, ns_[i]);
    remove_leftovers();
    seed_data_remove(dir_, topic_, index_);
    cr_assert_eq(kp_test_sh("%s netns list | grep -q 'kpns-%d-'", ip_bin_, (int)getpid()), 1,
                 "a namespace of this test is still there");
}

TestSuite(netns, .init = setup, .fini = teardown, .timeout = 900);

/* kappa-taskmanager i inside its namespace, data plane on its end of the a–b link, 1 slot (so a
 * p=2 job must use both). */
static pid_t start_taskmanager(int i)
{
    char jm[64], state[300], out[320], log[320], bind[32];
    snprintf(jm, sizeof jm, "%s:%d", addr(1), jm_.rpc_port);
    snprintf(state, sizeof state, "%s/tm-%c", dir_, 'a' + i);
    snprintf(out, sizeof out, "%s.out", state);
    snprintf(log, sizeof log, "%s.log", state);
    snprintf(bind, sizeof bind, "%s", addr(9 + i));
    const char *argv[] = {
        ip_bin_,  "netns", "exec",    ns_[i], kp_test_env("KAPPA_TM"), "--jobmanager", jm,
        "--bind", bind,    "--slots", "1",    "--state-dir",           state,          NULL};
    return kp_test_spawn(&(kp_test_proc){.argv = argv, .out = out, .err = log});
}

/* "host:port" of a URL or address; its port. */
static int port_of(const char *s)
{
    const char *c = strrchr(s, ':');
    cr_assert_not_null(c, "no port in %s", s);
    return atoi(c + 1);
}

Test(netns, seed_job_split_over_two_namespaces_equals_the_truth)
{
    const char *brokers = kp_test_env("KAPPA_BROKERS"), *es = kp_test_env("KAPPA_ES_URL");
    int kport = port_of(brokers), eport = port_of(es);

    /* the jobmanager on the root end of a's link only */
    const char *flags[] = {"--bind", addr(1), "--restart-strategy", "none", NULL};
    char jmdir[300];
    snprintf(jmdir, sizeof jmdir, "%s/jm", dir_);
    jm_start(&jm_, jmdir, flags);
    snprintf(jm_.rest, sizeof jm_.rest, "http://%s:%d", addr(1), port_of(jm_.rest));

    /* Kafka: namespace 127.0.0.1:KPORT → 10.231.N.1:R → 127.0.0.1:KPORT; OpenSearch on
     * 10.231.N.1 */
    relays_[0] = relay_start(NULL, addr(1), 0, "127.0.0.1", kport);
    for (int i = 0; i < 2; i++)
        relays_[1 + i] = relay_start(ns_[i], "127.0.0.1", kport, addr(1), relays_[0]->port);
    relays_[3] = relay_start(NULL, addr(1), 0, "127.0.0.1", eport);
    char ns_brokers[64], ns_es[64];
    snprintf(ns_brokers, sizeof ns_brokers, "%s:%d", addr(1), relays_[0]->port);
    snprintf(ns_es, sizeof ns_es, "http://%s:%d", addr(1), relays_[3]->port);

    for (int i = 0; i < 2; i++)
        tm_[i] = start_taskmanager(i);
    wait_taskmanagers(&jm_, 2);

    /* a small topic and its truth (kappa-gen writes from the root namespace) */
    snprintf(topic_, sizeof topic_, "netns-%d", (int)getpid());
    seed_topic_make(dir_, topic_, 2, 30000, 50, 5);

    snprintf(index_, sizeof index_, "netns-%d", (int)getpid());
    cr_assert_eq(kp_test_sh("%s submit %s/hourly_clicks.so --jobmanager %s -p 2 --name netns "
                            "--brokers %s --es-url %s --from-earliest "
                            "--source 'clicks=kafka:%s?stop_at=end' "
                            "--sink hourly-click-index=es:%s --wait >%s/submit.out 2>&1",
                            kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), jm_.rest,
                            ns_brokers, ns_es, topic_, index_, dir_),
                 0, "kappa submit --wait did not end FINISHED (%s/submit.out, tm-a.log, tm-b.log)",
                 dir_);

    /* the placement really split: each task's two subtasks on the two taskmanagers, whose data
     * addresses are their namespace ends of the a–b link */
    http_reply r = http_req(&jm_, "GET", "/jobs/netns", NULL);
    cr_assert_eq(r.status, 200);
    size_t i, j;
    json_t *task, *sub;
    json_array_foreach(json_object_get(r.body, "tasks"), i, task)
    {
        int seen[2] = {0, 0};
        json_array_foreach(json_object_get(task, "subtasks"), j, sub)
        {
            const char *a = json_string_value(json_object_get(sub, "data_address"));
            cr_assert_not_null(a, "task %zu subtask %zu has no data address", i, j);
            for (int k = 0; k < 2; k++) {
                char want[32];
                snprintf(want, sizeof want, "%s:", addr(9 + k));
                seen[k] += !strncmp(a, want, strlen(want));
            }
        }
        cr_assert(seen[0] == 1 && seen[1] == 1,
                  "task %zu is not split over the two namespaces (%d on a, %d on b)", i, seen[0],
                  seen[1]);
    }
    cr_assert_gt(i, 0, "GET /jobs/netns lists no tasks");
    http_free(&r);

    seed_index_assert_truth(dir_, index_);

    for (int k = 0; k < 2; k++) {
        tm_proc_stop(tm_[k]);
        tm_[k] = 0;
    }
    jm_stop(&jm_);
}
