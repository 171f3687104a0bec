/* The fault-injecting HTTP proxy of fault_proxy.h. Deliberately simple: HTTP/1.1 requests
 * with Content-Length bodies (what libcurl sends), responses with Content-Length or chunked
 * bodies (both are re-sent with Content-Length), one upstream connection per client
 * connection. Test code: failures print to stderr and close the connection. */
#include "fault_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256

struct fault_proxy {
    int lfd;
    char url[64];
    struct sockaddr_in upstream;
    pthread_t acceptor;
    atomic_int stop;
    atomic_int item_429_pm; /* per mille */
    atomic_int drop_before_pm, drop_after_pm;
    atomic_int status;
    atomic_llong down_until_ms;
    atomic_int down_hold;
    atomic_int delay_ms;  /* before forwarding each request */
    pthread_mutex_t lock; /* conns, nthreads */
    pthread_cond_t idle;
    int conns[MAX_CONNS];
    int nthreads;
    atomic_ullong requests, items_rewritten, dropped_before, dropped_after, refused;
};

typedef struct conn {
    fault_proxy *p;
    int cfd, ufd;
    unsigned seed;
    char *buf; /* client bytes read but not yet used */
    size_t len, cap;
} conn;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int chance(conn *c, int per_mille)
{
    return per_mille > 0 && (int)(rand_r(&c->seed) % 1000) < per_mille;
}

static void reset_close(int fd)
{
    struct linger l = {1, 0}; /* close with RST: "connection reset by peer" */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

typedef struct rbuf {
    char *p;
    size_t len, cap;
} rbuf;

static int rbuf_fill(int fd, rbuf *b)
{
    if (b->cap - b->len < 65536) {
        size_t cap = b->cap ? b->cap * 2 : 131072;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    ssize_t n;
    do
        n = recv(fd, b->p + b->len, b->cap - b->len - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    b->len += (size_t)n;
    b->p[b->len] = 0;
    return 0;
}

/* Reads one HTTP message head from fd into b (b may already hold bytes); returns the head's
 * length (including the blank line) or -1. */
static long read_head(int fd, rbuf *b)
{
    for (;;) {
        if (b->len) {
            b->p[b->len] = 0;
            char *end = strstr(b->p, "\r\n\r\n");
            if (end)
                return end + 4 - b->p;
        }
        if (rbuf_fill(fd, b) != 0)
            return -1;
    }
}

static long header_long(const char *head, size_t hlen, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l < head + hlen; l = strstr(l + 2, "\r\n"))
        if (!strncasecmp(l + 2, name, n) && l[2 + n] == ':')
            return strtol(l + 3 + n, NULL, 10);
    return -1;
}

static int header_has(const char *head, size_t hlen, const char *name, const char *value)
{
    size_t n = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l < head + hlen; l = strstr(l + 2, "\r\n"))
        if (!strncasecmp(l + 2, name, n) && l[2 + n] == ':') {
            const char *eol = strstr(l + 2, "\r\n");
            char v[128];
            snprintf(v, sizeof v, "%.*s", (int)(eol - l - 3 - (long)n), l + 3 + n);
            return strcasestr(v, value) != NULL;
        }
    return 0;
}

/* Ensures b holds at least `need` bytes. */
static int read_upto(int fd, rbuf *b, size_t need)
{
    while (b->len < need)
        if (rbuf_fill(fd, b) != 0)
            return -1;
    return 0;
}

/* Reads a response body (Content-Length or chunked) after the head; the decoded body goes
 * to *body (malloc'd), and b keeps any bytes after it. */
static int read_body(int fd, rbuf *b, size_t hlen, char **body, size_t *blen)
{
    long cl = header_long(b->p, hlen, "content-length");
    if (cl >= 0) {
        if (read_upto(fd, b, hlen + (size_t)cl) != 0)
            return -1;
        *body = malloc((size_t)cl + 1);
        memcpy(*body, b->p + hlen, (size_t)cl);
        (*body)[cl] = 0;
        *blen = (size_t)cl;
        memmove(b->p, b->p + hlen + cl, b->len - hlen - (size_t)cl);
        b->len -= hlen + (size_t)cl;
        return 0;
    }
    if (!header_has(b->p, hlen, "transfer-encoding", "chunked"))
        return -1;
    size_t pos = hlen, out = 0;
    char *o = NULL;
    for (;;) {
        char *eol;
        while (!(b->p[b->len] = 0, eol = strstr(b->p + pos, "\r\n")))
            if (rbuf_fill(fd, b) != 0)
                goto fail;
        size_t n = strtoul(b->p + pos, NULL, 16);
        size_t data = (size_t)(eol + 2 - b->p);
        if (read_upto(fd, b, data + n + 2) != 0)
            goto fail;
        if (n == 0) {
            pos = data + 2;
            break;
        }
        char *no = realloc(o, out + n + 1);
        if (!no)
            goto fail;
        o = no;
        memcpy(o + out, b->p + data, n);
        out += n;
        pos = data + n + 2;
    }
    memmove(b->p, b->p + pos, b->len - pos);
    b->len -= pos;
    if (!o)
        o = malloc(1);
    o[out] = 0;
    *body = o;
    *blen = out;
    return 0;
fail:
    free(o);
    return -1;
}

/* Turns about item_429_pm/1000 of the items into 429s; returns the new body or NULL. */
static char *rewrite_bulk(conn *c, const char *body, size_t len, int pm, size_t *newlen)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *items = json_object_get(root, "items");
    if (!json_is_array(items)) {
        json_decref(root);
        return NULL;
    }
    size_t i, n = 0;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *k;
        json_t *res;
        json_object_foreach(it, k, res)
        {
            if (!chance(c, pm))
                break;
            json_object_set_new(res, "status", json_integer(429));
            json_object_set_new(res, "error",
                                json_pack("{s:s,s:s}", "type", "es_rejected_execution_exception",
                                          "reason",
                                          "rejected execution (injected by the fault proxy)"));
            n++;
            break;
        }
    }
    if (n)
        json_object_set_new(root, "errors", json_true());
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    atomic_fetch_add(&c->p->items_rewritten, n);
    *newlen = out ? strlen(out) : 0;
    return out;
}

static int connect_upstream(conn *c)
{
    if (c->ufd >= 0)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&c->p->upstream, sizeof c->p->upstream) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ufd = fd;
    return 0;
}

static int is_down(fault_proxy *p)
{
    return now_ms() < atomic_load(&p->down_until_ms);
}

/* Holds a connection unanswered until the down period ends (or the proxy stops). */
static void hold(fault_proxy *p)
{
    while (is_down(p) && !atomic_load(&p->stop))
        usleep(20000);
}

/* Waits the configured delay before a request is forwarded (a slow node), in short steps so a
 * stop is not held up. */
static void delay(fault_proxy *p)
{
    for (int left = atomic_load(&p->delay_ms); left > 0 && !atomic_load(&p->stop); left -= 20)
        usleep((useconds_t)(left < 20 ? left : 20) * 1000);
}

/* Serves one client connection until it closes; returns when done (fd still open). */
static void serve(conn *c)
{
    fault_proxy *p = c->p;
    rbuf in = {0}, up = {0};
    for (;;) {
        long hlen = read_head(c->cfd, &in);
        if (hlen < 0 || atomic_load(&p->stop))
            break;
        atomic_fetch_add(&p->requests, 1);
        long cl = header_long(in.p, (size_t)hlen, "content-length");
        if (is_down(p)) {
            atomic_fetch_add(&p->refused, 1);
            if (atomic_load(&p->down_hold))
                hold(p);
            break;
        }
        if (chance(c, atomic_load(&p->drop_before_pm))) {
            atomic_fetch_add(&p->dropped_before, 1); /* mid-request: body not read */
            break;
        }
        size_t total = (size_t)hlen + (size_t)(cl > 0 ? cl : 0);
        if (read_upto(c->cfd, &in, total) != 0)
            break;
        delay(p);
        int status = atomic_load(&p->status);
        if (status) {
            char resp[256];
            const char *msg = "{\"error\":\"injected by the fault proxy\"}";
            int n = snprintf(resp, sizeof resp,
                             "HTTP/1.1 %d Injected\r\ncontent-type: application/json\r\n"
                             "content-length: %zu\r\n\r\n%s",
                             status, strlen(msg), msg);
            if (write_all(c->cfd, resp, (size_t)n) != 0)
                break;
        } else {
            int bulk = strstr(in.p, "/_bulk") && strstr(in.p, "/_bulk") < in.p + hlen;
            if (connect_upstream(c) != 0 || write_all(c->ufd, in.p, total) != 0)
                break;
            long uh = read_head(c->ufd, &up);
            char *body = NULL, *uhead = uh < 0 ? NULL : strndup(up.p, (size_t)uh);
            size_t blen = 0;
            /* the answer to a HEAD request has a Content-Length but never a body */
            int head_req = !strncmp(in.p, "HEAD ", 5);
            if (uhead && head_req) {
                body = calloc(1, 1);
                memmove(up.p, up.p + uh, up.len - (size_t)uh);
                up.len -= (size_t)uh;
            }
            if (!uhead || (!head_req && read_body(c->ufd, &up, (size_t)uh, &body, &blen) != 0)) {
                free(uhead);
                break;
            }
            int st = atoi(uhead + 9);
            int pm = atomic_load(&p->item_429_pm);
            if (bulk && st == 200 && pm > 0) {
                size_t nl;
                char *nb = rewrite_bulk(c, body, blen, pm, &nl);
                if (nb) {
                    free(body);
                    body = nb;
                    blen = nl;
                }
            }
            if (chance(c, atomic_load(&p->drop_after_pm))) {
                atomic_fetch_add(&p->dropped_after, 1);
                free(body);
                free(uhead);
                break;
            }
            /* the head again, minus its framing headers */
            char *head = malloc((size_t)uh + 64);
            size_t ho = 0;
            const char *l = uhead, *end = uhead + uh - 2;
            while (l < end) {
                const char *eol = strstr(l, "\r\n");
                size_t n = (size_t)(eol + 2 - l);
                if (strncasecmp(l, "content-length:", 15) &&
                    strncasecmp(l, "transfer-encoding:", 18) && strncasecmp(l, "connection:", 11)) {
                    memcpy(head + ho, l, n);
                    ho += n;
                }
                l = eol + 2;
            }
            ho += (size_t)sprintf(head + ho, "content-length: %zu\r\n\r\n", blen);
            int rc = write_all(c->cfd, head, ho) || write_all(c->cfd, body, blen);
            free(head);
            free(uhead);
            free(body);
            if (rc)
                break;
        }
        memmove(in.p, in.p + total, in.len - total);
        in.len -= total;
    }
    free(in.p);
    free(up.p);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    fault_proxy *p = c->p;
    serve(c);
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < MAX_CONNS; i++)
        if (p->conns[i] == c->cfd)
            p->conns[i] = -1;
    reset_close(c->cfd);
    if (c->ufd >= 0)
        close(c->ufd);
    free(c);
    if (--p->nthreads == 0)
        pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void *accept_main(void *arg)
{
    fault_proxy *p = arg;
    unsigned seed = (unsigned)time(NULL);
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd = {p->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (is_down(p) && !atomic_load(&p->down_hold)) {
            atomic_fetch_add(&p->refused, 1);
            reset_close(fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        c->p = p;
        c->cfd = fd;
        c->ufd = -1;
        c->seed = seed += 7919;
        pthread_mutex_lock(&p->lock);
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++)
            if (p->conns[i] < 0)
                slot = i;
        if (slot < 0) {
            pthread_mutex_unlock(&p->lock);
            close(fd);
            free(c);
            continue;
        }
        p->conns[slot] = fd;
        p->nthreads++;
        pthread_mutex_unlock(&p->lock);
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, conn_main, c) != 0) {
            pthread_mutex_lock(&p->lock);
            p->conns[slot] = -1;
            p->nthreads--;
            pthread_mutex_unlock(&p->lock);
            close(fd);
            free(c);
        }
        pthread_attr_destroy(&a);
    }
    return NULL;
}

fault_proxy *fault_proxy_start(const char *upstream)
{
    fault_proxy *p = calloc(1, sizeof *p);
    int port;
    if (!p || sscanf(upstream, "http://127.0.0.1:%d", &port) != 1) {
        fprintf(stderr, "fault_proxy: upstream must be http://127.0.0.1:PORT, not %s\n", upstream);
        free(p);
        return NULL;
    }
    p->upstream.sin_family = AF_INET;
    p->upstream.sin_port = htons((uint16_t)port);
    p->upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(p->lfd, 128) != 0 || getsockname(p->lfd, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "fault_proxy: cannot listen: %s\n", strerror(errno));
        if (p->lfd >= 0)
            close(p->lfd);
        free(p);
        return NULL;
    }
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    for (int i = 0; i < MAX_CONNS; i++)
        p->conns[i] = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (pthread_create(&p->acceptor, NULL, accept_main, p) != 0) {
        close(p->lfd);
        free(p);
        return NULL;
    }
    return p;
}

const char *fault_proxy_url(const fault_proxy *p)
{
    return p->url;
}

void fault_proxy_set_item_429(fault_proxy *p, double fraction)
{
    atomic_store(&p->item_429_pm, (int)(fraction * 1000));
}

void fault_proxy_set_drops(fault_proxy *p, double before, double after)
{
    atomic_store(&p->drop_before_pm, (int)(before * 1000));
    atomic_store(&p->drop_after_pm, (int)(after * 1000));
}

void fault_proxy_set_status(fault_proxy *p, int status)
{
    atomic_store(&p->status, status);
}

void fault_proxy_down(fault_proxy *p, int ms, int hold_conns)
{
    atomic_store(&p->down_hold, hold_conns);
    atomic_store(&p->down_until_ms, now_ms() + ms);
    if (hold_conns)
        return;
    /* kept-alive connections die too, as with a node that goes away */
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < MAX_CONNS; i++)
        if (p->conns[i] >= 0)
            shutdown(p->conns[i], SHUT_RDWR);
    pthread_mutex_unlock(&p->lock);
}

void fault_proxy_set_delay(fault_proxy *p, int ms)
{
    atomic_store(&p->delay_ms, ms > 0 ? ms : 0);
}

fault_proxy_stats fault_proxy_get_stats(fault_proxy *p)
{
    return (fault_proxy_stats){atomic_load(&p->requests), atomic_load(&p->items_rewritten),
                               atomic_load(&p->dropped_before), atomic_load(&p->dropped_after),
                               atomic_load(&p->refused)};
}

void fault_proxy_stop(fault_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->acceptor, NULL);
    close(p->lfd);
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < MAX_CONNS; i++)
        if (p->conns[i] >= 0)
            shutdown(p->conns[i], SHUT_RDWR);
    while (p->nthreads > 0)
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->idle);
    free(p);
}
