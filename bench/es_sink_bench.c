/* How close the es: sink gets to a plain bulk loader on the same node.
 *
 * (a) the loader: NDJSON bodies of 1000 documents (the seed job's output shape {item_id,
 *     click_count, window_start, window_end}, external versions) built before the clock
 *     starts, POSTed with libcurl easy handles (keep-alive) — once sequentially, once from
 *     `inflight` threads — checking only "errors":false in each response;
 * (b) the sink: the same documents (ids and JSON prepared before the clock starts) through
 *     kp_es_connector's writer (max_actions=1000, the same inflight), then flush().
 * Each run writes a fresh index so every run creates documents, never updates them; loader
 * and sink take turns going first for `rounds` rounds and the best of each is compared. Both send the same
 * filter_path the sink uses, so the difference is the sink's own work.
 *
 * Usage: KAPPA_ES_URL=http://127.0.0.1:9200 build/bench/es-sink-bench [docs] [inflight]
 * [rounds]. Prints figures, asserts nothing (STYLE.md rule 6). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/connector.h"

extern const kp_connector kp_es_connector;

#define BATCH 1000

static const char *base;
static int64_t epoch;

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    if (b->len + size * n + 1 > b->cap) {
        b->cap = (b->len + size * n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, size * n);
    b->len += size * n;
    b->p[b->len] = 0;
    return size * n;
}

static long simple(const char *method, const char *path, const char *body)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(b.p);
    return status;
}

static void make_index(const char *idx)
{
    char path[160];
    snprintf(path, sizeof path, "/%s", idx);
    long st =
        simple("PUT", path, "{\"settings\":{\"number_of_shards\":1,\"number_of_replicas\":0}}");
    if (st != 200) {
        fprintf(stderr, "es-sink-bench: creating %s: HTTP %ld\n", idx, st);
        exit(1);
    }
}

static void drop_index(const char *idx)
{
    char path[160];
    snprintf(path, sizeof path, "/%s", idx);
    simple("DELETE", path, NULL);
}

/* The documents, prepared once. */
static int ndocs;
static char (*ids)[40];
static char (*docs)[160];
static int *id_len, *doc_len;

static void prepare_docs(void)
{
    ids = malloc((size_t)ndocs * sizeof *ids);
    docs = malloc((size_t)ndocs * sizeof *docs);
    id_len = malloc((size_t)ndocs * sizeof *id_len);
    doc_len = malloc((size_t)ndocs * sizeof *doc_len);
    for (int i = 0; i < ndocs; i++) {
        long long ws = 1700000000000ll + (long long)(i % 24) * 3600000;
        id_len[i] = snprintf(ids[i], sizeof ids[i], "item_%d|%lld", i, ws);
        doc_len[i] = snprintf(docs[i], sizeof docs[i],
                              "{\"item_id\":\"item_%d\",\"click_count\":%d,\"window_start\":%lld,"
                              "\"window_end\":%lld}",
                              i, i % 977, ws, ws + 3600000);
    }
}

/* ---- (a) the plain loader ---- */

typedef struct loader {
    char **bodies;
    size_t *lens;
    int nbodies;
    atomic_int next;
    atomic_int errors;
    char url[512];
} loader;

static void build_bodies(loader *l, const char *idx)
{
    l->nbodies = (ndocs + BATCH - 1) / BATCH;
    l->bodies = calloc((size_t)l->nbodies, sizeof *l->bodies);
    l->lens = calloc((size_t)l->nbodies, sizeof *l->lens);
    for (int b = 0; b < l->nbodies; b++) {
        size_t cap = BATCH * 400, off = 0;
        char *p = malloc(cap);
        for (int i = b * BATCH; i < ndocs && i < (b + 1) * BATCH; i++)
            off += (size_t)snprintf(p + off, cap - off,
                                    "{\"index\":{\"_index\":\"%s\",\"_id\":\"%s\",\"version\":%lld,"
                                    "\"version_type\":\"external\"}}\n%s\n",
                                    idx, ids[i], (long long)((epoch << 32) | (i + 1)), docs[i]);
        l->bodies[b] = p;
        l->lens[b] = off;
    }
    atomic_store(&l->next, 0);
    atomic_store(&l->errors, 0);
    snprintf(l->url, sizeof l->url,
             "%s/_bulk?filter_path=errors,items.*.status,items.*.error,items.*._id", base);
}

static void free_bodies(loader *l)
{
    for (int b = 0; b < l->nbodies; b++)
        free(l->bodies[b]);
    free(l->bodies);
    free(l->lens);
}

static void *loader_thread(void *arg)
{
    loader *l = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    h = curl_slist_append(h, "Expect:");
    buf resp = {0};
    curl_easy_setopt(c, CURLOPT_URL, l->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    for (int b; (b = atomic_fetch_add(&l->next, 1)) < l->nbodies;) {
        resp.len = 0;
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, l->bodies[b]);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)l->lens[b]);
        long st = 0;
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        if (st != 200 || !resp.p || !strstr(resp.p, "\"errors\":false"))
            atomic_fetch_add(&l->errors, 1);
    }
    free(resp.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static double run_loader(int threads, const char *idx)
{
    loader l;
    make_index(idx);
    build_bodies(&l, idx);
    pthread_t t[64];
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, loader_thread, &l);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double took = now_s() - t0;
    printf("  loader x%d: client CPU %.2f us/doc\n", threads, (cpu_s() - c0) * 1e6 / ndocs);
    if (atomic_load(&l.errors))
        fprintf(stderr, "es-sink-bench: loader: %d bulks failed\n", atomic_load(&l.errors));
    free_bodies(&l);
    drop_index(idx);
    return ndocs / took;
}

/* ---- (b) the sink ---- */

static double run_sink(int inflight, const char *idx, double *p50, double *p99)
{
    make_index(idx);
    char uri[512], url[600], err[1024];
    snprintf(uri, sizeof uri, "es:%s?max_actions=%d&inflight=%d", idx, BATCH, inflight);
    snprintf(url, sizeof url, "es.url=%s", base);
    const char *conf[] = {url, NULL};
    kp_endpoint ep = {
        .name = "out", .uri = uri, .subtask = 0, .parallelism = 1, .conf = conf, .epoch = epoch};
    kp_sink_writer *w = kp_es_connector.open_sink(&ep, err, sizeof err);
    if (!w) {
        fprintf(stderr, "es-sink-bench: %s\n", err);
        exit(1);
    }
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < ndocs; i++)
        if (w->write(w, (kp_bytes){ids[i], (size_t)id_len[i]},
                     (kp_bytes){docs[i], (size_t)doc_len[i]}, 0, err, sizeof err) != 0) {
            fprintf(stderr, "es-sink-bench: %s\n", err);
            exit(1);
        }
    if (w->flush(w, err, sizeof err) != 0) {
        fprintf(stderr, "es-sink-bench: %s\n", err);
        exit(1);
    }
    double took = now_s() - t0;
    printf("  sink: client CPU %.2f us/doc\n", (cpu_s() - c0) * 1e6 / ndocs);
    char st[1024];
    w->stats(w, st, sizeof st);
    const char *p = strstr(st, "\"bulk_latency_ms_p50\":");
    *p50 = p ? atof(p + 22) : 0;
    p = strstr(st, "\"bulk_latency_ms_p99\":");
    *p99 = p ? atof(p + 22) : 0;
    printf("  sink stats: %s\n", st);
    w->close(w);
    drop_index(idx);
    return ndocs / took;
}

int main(int argc, char **argv)
{
    base = getenv("KAPPA_ES_URL");
    if (!base || !*base) {
        fprintf(stderr, "es-sink-bench: set KAPPA_ES_URL (deploy/dev/search start prints it)\n");
        return 2;
    }
    ndocs = argc > 1 ? atoi(argv[1]) : 200000;
    int inflight = argc > 2 ? atoi(argv[2]) : 2;
    int rounds = argc > 3 ? atoi(argv[3]) : 4;
    if (ndocs <= 0 || inflight <= 0 || inflight > 64 || rounds <= 0) {
        fprintf(stderr, "usage: es-sink-bench [docs] [inflight 1..64] [rounds]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    epoch = time(NULL);
    prepare_docs();
    printf("es-sink-bench: %d docs, bulks of %d, inflight %d, %d rounds, node %s\n", ndocs, BATCH,
           inflight, rounds, base);
    double best_seq = 0, best_par = 0, best_sink = 0, p50 = 0, p99 = 0;
    for (int r = 0; r < rounds; r++) {
        /* odd rounds run the sink first: the node's JIT and caches warm up as it runs */
        char idx[128];
        double q50, q99, sink = 0;
        snprintf(idx, sizeof idx, "kappa-bench-%ld-%d-sink", (long)epoch, r);
        if (r % 2)
            sink = run_sink(inflight, idx, &q50, &q99);
        snprintf(idx, sizeof idx, "kappa-bench-%ld-%d-seq", (long)epoch, r);
        double seq = run_loader(1, idx);
        snprintf(idx, sizeof idx, "kappa-bench-%ld-%d-par", (long)epoch, r);
        double par = run_loader(inflight, idx);
        snprintf(idx, sizeof idx, "kappa-bench-%ld-%d-sink", (long)epoch, r);
        if (!(r % 2))
            sink = run_sink(inflight, idx, &q50, &q99);
        printf("round %d: loader sequential %.0f docs/s, loader x%d %.0f docs/s, sink %.0f docs/s "
               "(p50 %.1f ms, p99 %.1f ms)\n",
               r + 1, seq, inflight, par, sink, q50, q99);
        best_seq = seq > best_seq ? seq : best_seq;
        best_par = par > best_par ? par : best_par;
        if (sink > best_sink) {
            best_sink = sink;
            p50 = q50;
            p99 = q99;
        }
    }
    printf("best: loader sequential %.0f docs/s, loader x%d %.0f docs/s, sink %.0f docs/s\n",
           best_seq, inflight, best_par, best_sink);
    printf("sink / loader x%d = %.0f %% (target >= 80 %%); sink / sequential loader = %.0f %%\n",
           inflight, 100 * best_sink / best_par, 100 * best_sink / best_seq);
    printf("sink bulk latency: p50 %.1f ms, p99 %.1f ms\n", p50, p99);
    free(ids);
    free(docs);
    free(id_len);
    free(doc_len);
    curl_global_cleanup();
    return 0;
}
