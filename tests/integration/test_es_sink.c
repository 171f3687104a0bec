/* The es: sink against a REAL Elasticsearch-API node (KAPPA_ES_URL, from
 * tests/integration/with-services; never skipped): bulk writes arrive exactly once, external
 * versions fence stale attempts and let later ones win, item errors follow on_error, open-time
 * failures say what is wrong — and, through fault_proxy.c, 429 items, dropped connections and
 * a node that is down for seconds lose and duplicate nothing; a cancelled job ends the
 * retries and flush at once instead of after retry_timeout_ms. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../connectors/connectors.h"
#include "../../runtime/connector.h"
#include "../support/es_http.h"
#include "fault_proxy.h"

extern const kp_connector kp_es_connector;

static const char *es_url(void)
{
    return kp_test_es_url();
}

/* One request straight to the node; returns the status, the body in *out (caller frees). */
static long request(const char *method, const char *path, const char *body, char **out)
{
    return kp_test_es_request(method, path, "application/json", body, body ? strlen(body) : 0, out);
}

/* A fresh index (1 shard, no replicas), optionally with click_count mapped as long. */
static void make_index(char *idx, size_t len, const char *what, int mapped)
{
    static int n;
    snprintf(idx, len, "kappa-sink-%s-%ld-%d-%d", what, (long)time(NULL), (int)getpid(), n++);
    char path[160], *resp;
    snprintf(path, sizeof path, "/%s", idx);
    const char *body = mapped ? "{\"settings\":{\"number_of_shards\":1,\"number_of_replicas\":0},"
                                "\"mappings\":{\"properties\":{\"item_id\":{\"type\":\"keyword\"},"
                                "\"click_count\":{\"type\":\"long\"}}}}"
                              : "{\"settings\":{\"number_of_shards\":1,\"number_of_replicas\":0}}";
    long st = request("PUT", path, body, &resp);
    cr_assert_eq(st, 200, "creating %s: %s", idx, resp);
    free(resp);
}

static void drop_index(const char *idx)
{
    char path[160];
    snprintf(path, sizeof path, "/%s", idx);
    request("DELETE", path, NULL, NULL);
}

static long count(const char *idx, const char *query)
{
    char path[256], *resp;
    snprintf(path, sizeof path, "/%s/_refresh", idx);
    request("POST", path, NULL, NULL);
    snprintf(path, sizeof path, "/%s/_count%s", idx, query);
    cr_assert_eq(request("GET", path, NULL, &resp), 200, "%s", resp);
    json_t *root = json_loads(resp, 0, NULL);
    cr_assert_not_null(root, "%s", resp);
    long n = (long)json_integer_value(json_object_get(root, "count"));
    json_decref(root);
    free(resp);
    return n;
}

/* Document item_i's click_count and _version (-1 if missing). */
static void get_doc(const char *idx, int i, long *clicks, long long *version)
{
    char path[256], *resp;
    snprintf(path, sizeof path, "/%s/_doc/item_%d%%7C1700000000000", idx, i);
    long st = request("GET", path, NULL, &resp);
    *clicks = *version = -1;
    if (st == 200) {
        json_t *root = json_loads(resp, 0, NULL);
        *version = json_integer_value(json_object_get(root, "_version"));
        *clicks = (long)json_integer_value(
            json_object_get(json_object_get(root, "_source"), "click_count"));
        json_decref(root);
    }
    free(resp);
}

static kp_sink_writer *open_sink(const char *uri, const char *url, int64_t epoch, char *err,
                                 size_t errlen)
{
    static char conf_url[600];
    static const char *conf[2];
    snprintf(conf_url, sizeof conf_url, "es.url=%s", url);
    conf[0] = conf_url;
    conf[1] = NULL;
    kp_endpoint ep = {
        .name = "out", .uri = uri, .subtask = 0, .parallelism = 1, .conf = conf, .epoch = epoch};
    err[0] = 0;
    return kp_es_connector.open_sink(&ep, err, errlen);
}

static kp_sink_writer *must_open(const char *uri, const char *url, int64_t epoch)
{
    char err[1024];
    kp_sink_writer *w = open_sink(uri, url, epoch, err, sizeof err);
    cr_assert_not_null(w, "opening %s: %s", uri, err);
    return w;
}

/* Writes documents item_from..item_to-1 with click_count = i * mult; the i'th write is
 * doc_hook(i) instead when that returns non-NULL. Returns write()'s first failure. */
static int write_docs(kp_sink_writer *w, int from, int to, int mult, const char *bad_at, int bad_i,
                      char *err, size_t errlen)
{
    for (int i = from; i < to; i++) {
        char id[64], doc[256];
        int il = snprintf(id, sizeof id, "item_%d|1700000000000", i);
        int dl = (bad_at && i == bad_i)
                     ? snprintf(doc, sizeof doc, "%s", bad_at)
                     : snprintf(doc, sizeof doc,
                                "{\"item_id\":\"item_%d\",\"click_count\":%d,"
                                "\"window_start\":1700000000000,\"window_end\":1700003600000}",
                                i, i * mult);
        if (w->write(w, (kp_bytes){id, (size_t)il}, (kp_bytes){doc, (size_t)dl}, 1700003599999, err,
                     errlen) != 0)
            return -1;
    }
    return 0;
}

static void check_all(const char *idx, int n, int64_t epoch);

static json_t *stats(kp_sink_writer *w)
{
    char s[1024];
    w->stats(w, s, sizeof s);
    json_t *j = json_loads(s, 0, NULL);
    cr_assert_not_null(j, "stats are not JSON: %s", s);
    return j;
}

static long long stat(json_t *j, const char *k)
{
    return json_integer_value(json_object_get(j, k));
}

Test(es_sink, writes_20k_exactly_once, .timeout = 300)
{
    char idx[128], uri[256], err[1024];
    make_index(idx, sizeof idx, "basic", 0);
    snprintf(uri, sizeof uri, "es:%s", idx);
    int64_t epoch = time(NULL);
    kp_sink_writer *w = must_open(uri, es_url(), epoch);
    cr_assert_eq(write_docs(w, 0, 20000, 1, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    json_t *s = stats(w);
    cr_expect_eq(stat(s, "sent"), 20000);
    cr_expect_eq(stat(s, "acked"), 20000);
    cr_expect_eq(stat(s, "stale"), 0);
    cr_expect_eq(stat(s, "bulks"), 20);
    json_decref(s);
    w->close(w);
    cr_assert_eq(count(idx, ""), 20000);
    long clicks;
    long long version;
    get_doc(idx, 12345, &clicks, &version);
    cr_expect_eq(clicks, 12345);
    cr_expect_eq(version, (epoch << 32) | 12346, "version %lld", version);
    drop_index(idx);
}

Test(es_sink, gzip_small_bulks_many_inflight, .timeout = 300)
{
    char idx[128], uri[256], err[1024];
    make_index(idx, sizeof idx, "gzip", 0);
    snprintf(uri, sizeof uri, "es:%s?gzip=1&max_actions=100&inflight=4&max_bytes=8192", idx);
    int64_t epoch = time(NULL);
    kp_sink_writer *w = must_open(uri, es_url(), epoch);
    cr_assert_eq(write_docs(w, 0, 5000, 1, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    json_t *s = stats(w);
    cr_expect_eq(stat(s, "acked"), 5000);
    cr_expect_gt(stat(s, "bulks"), 50, "max_bytes=8192 should split bulks: %lld", stat(s, "bulks"));
    json_decref(s);
    w->close(w);
    check_all(idx, 5000, epoch);
    drop_index(idx);
}

Test(es_sink, lower_epoch_is_stale_higher_epoch_wins, .timeout = 300)
{
    char idx[128], uri[256], err[1024];
    make_index(idx, sizeof idx, "fence", 0);
    snprintf(uri, sizeof uri, "es:%s?max_actions=300", idx);
    int64_t epoch = time(NULL);
    kp_sink_writer *w = must_open(uri, es_url(), epoch);
    cr_assert_eq(write_docs(w, 0, 2000, 1, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    w->close(w);

    w = must_open(uri, es_url(), epoch - 10); /* a superseded attempt */
    cr_assert_eq(write_docs(w, 0, 2000, 7, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "stale writes must not fail: %s", err);
    json_t *s = stats(w);
    cr_expect_eq(stat(s, "stale"), 2000, "stale %lld", stat(s, "stale"));
    cr_expect_eq(stat(s, "acked"), 0);
    json_decref(s);
    w->close(w);
    cr_assert_eq(count(idx, ""), 2000);
    cr_assert_eq(count(idx, "?q=click_count:7"), 1, "a stale write changed a document");

    w = must_open(uri, es_url(), epoch + 10); /* the next attempt */
    cr_assert_eq(write_docs(w, 0, 2000, 3, NULL, 0, err, sizeof err), 0, "%s", err);
    /* a later firing of the same documents in the same attempt wins too */
    cr_assert_eq(write_docs(w, 0, 100, 5, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    s = stats(w);
    cr_expect_eq(stat(s, "acked"), 2100);
    cr_expect_eq(stat(s, "stale"), 0);
    json_decref(s);
    w->close(w);
    long clicks;
    long long version;
    get_doc(idx, 1500, &clicks, &version);
    cr_expect_eq(clicks, 4500);
    cr_expect_eq(version, ((epoch + 10) << 32) | 1501);
    get_doc(idx, 50, &clicks, &version);
    cr_expect_eq(clicks, 250, "the later firing lost: click_count %ld", clicks);
    drop_index(idx);
}

#define BAD_DOC "{\"item_id\":\"item_50\",\"click_count\":\"many\"}"

Test(es_sink, mapping_error_fails_clearly, .timeout = 300)
{
    char idx[128], uri[256], err[1024];
    make_index(idx, sizeof idx, "mapfail", 1);
    snprintf(uri, sizeof uri, "es:%s", idx);
    kp_sink_writer *w = must_open(uri, es_url(), time(NULL));
    int rc = write_docs(w, 0, 100, 1, BAD_DOC, 50, err, sizeof err);
    if (rc == 0)
        rc = w->flush(w, err, sizeof err);
    cr_assert_eq(rc, -1, "a mapping error went unnoticed");
    cr_expect(strstr(err, idx), "error does not name the index: %s", err);
    cr_expect(strstr(err, "item_50|1700000000000"), "error does not name the id: %s", err);
    cr_expect(strstr(err, "parsing_exception") || strstr(err, "click_count"),
              "error gives no reason: %s", err);
    w->close(w);
    drop_index(idx);
}

Test(es_sink, mapping_error_goes_to_dead_letter, .timeout = 300)
{
    kp_connectors_register_builtin();
    char idx[128], uri[512], err[1024], path[128];
    make_index(idx, sizeof idx, "deadletter", 1);
    snprintf(path, sizeof path, "/tmp/kappa-es-dead-%d.ndjson", (int)getpid());
    snprintf(uri, sizeof uri, "es:%s?on_error=dead-letter&dead_letter=file:%s", idx, path);
    kp_sink_writer *w = must_open(uri, es_url(), time(NULL));
    cr_assert_eq(write_docs(w, 0, 100, 1, BAD_DOC, 50, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    json_t *s = stats(w);
    cr_expect_eq(stat(s, "failed"), 1);
    cr_expect_eq(stat(s, "dead_lettered"), 1);
    cr_expect_eq(stat(s, "acked"), 99);
    json_decref(s);
    w->close(w);
    cr_assert_eq(count(idx, ""), 99);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[512] = "";
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_expect_str_eq(line, BAD_DOC "\n");
    cr_expect_null(fgets(line, sizeof line, f), "more than one dead letter: %s", line);
    fclose(f);
    unlink(path);
    drop_index(idx);
}

Test(es_sink, open_errors_are_clear, .timeout = 120)
{
    char err[1024];
    /* nobody listens on port 1: a clear error, not a hang (the test's timeout bounds it) */
    cr_assert_null(open_sink("es:x", "http://127.0.0.1:1", 1, err, sizeof err));
    cr_expect(strstr(err, "cannot reach Elasticsearch at http://127.0.0.1:1"), "%s", err);

    kp_endpoint ep = {.name = "out", .uri = "es:x", .parallelism = 1, .epoch = 1};
    cr_assert_null(kp_es_connector.open_sink(&ep, err, sizeof err));
    cr_expect(strstr(err, "option url"), "%s", err);

    char uri[256];
    snprintf(uri, sizeof uri, "es:kappa-no-such-index-%d?require_index=1", (int)getpid());
    cr_assert_null(open_sink(uri, es_url(), 1, err, sizeof err));
    cr_expect(strstr(err, "does not exist"), "%s", err);

    fault_proxy *p = fault_proxy_start(es_url());
    cr_assert_not_null(p);
    fault_proxy_set_status(p, 401);
    cr_assert_null(open_sink("es:x?user=u&password=wrong", fault_proxy_url(p), 1, err, sizeof err));
    char want[256];
    snprintf(want, sizeof want,
             "Elasticsearch at %s refused the credentials (set user/password or api_key)",
             fault_proxy_url(p));
    cr_expect(strstr(err, want), "%s", err);
    fault_proxy_stop(p);
}

/* Everything arrived once with the latest values: count, sampled values and versions. */
static void check_all(const char *idx, int n, int64_t epoch)
{
    cr_assert_eq(count(idx, ""), n, "documents lost or extra");
    for (int i = 0; i < n; i += n / 7 + 1) {
        long clicks;
        long long version;
        get_doc(idx, i, &clicks, &version);
        cr_expect_eq(clicks, i, "item_%d: click_count %ld", i, clicks);
        cr_expect_eq(version, (epoch << 32) | (i + 1), "item_%d: version %lld", i, version);
    }
}

Test(es_sink, survives_429_items_and_dropped_connections, .timeout = 600)
{
    char idx[128], uri[256], err[1024];
    make_index(idx, sizeof idx, "faults", 0);
    fault_proxy *p = fault_proxy_start(es_url());
    cr_assert_not_null(p);
    fault_proxy_set_item_429(p, 0.3);
    fault_proxy_set_drops(p, 0.05, 0.05);
    snprintf(uri, sizeof uri, "es:%s?backoff_ms=20", idx);
    int64_t epoch = time(NULL);
    kp_sink_writer *w = must_open(uri, fault_proxy_url(p), epoch);
    cr_assert_eq(write_docs(w, 0, 50000, 1, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    json_t *s = stats(w);
    fault_proxy_stats ps = fault_proxy_get_stats(p);
    char *sj = json_dumps(s, JSON_COMPACT);
    cr_log_info("sink: %s; proxy: %llu requests, %llu items rewritten, %llu+%llu dropped", sj,
                (unsigned long long)ps.requests, (unsigned long long)ps.items_rewritten,
                (unsigned long long)ps.dropped_before, (unsigned long long)ps.dropped_after);
    free(sj);
    cr_expect_gt(stat(s, "retries"), 0);
    cr_expect_eq(stat(s, "acked"), 50000, "acked %lld", stat(s, "acked"));
    cr_expect_eq(stat(s, "stale"), 0, "our own retries must not count as stale");
    cr_expect_gt(ps.items_rewritten, 10000);
    cr_expect_gt(ps.dropped_before + ps.dropped_after, 0);
    json_decref(s);
    w->close(w);
    fault_proxy_stop(p);
    check_all(idx, 50000, epoch);
    drop_index(idx);
}

Test(es_sink, waits_out_a_node_that_is_down, .timeout = 600)
{
    char idx[128], uri[256], err[1024];
    make_index(idx, sizeof idx, "down", 0);
    fault_proxy *p = fault_proxy_start(es_url());
    cr_assert_not_null(p);
    snprintf(uri, sizeof uri, "es:%s?max_actions=500&timeout_ms=3000", idx);
    int64_t epoch = time(NULL);
    kp_sink_writer *w = must_open(uri, fault_proxy_url(p), epoch);
    time_t t0 = time(NULL);
    cr_assert_eq(write_docs(w, 0, 5000, 1, NULL, 0, err, sizeof err), 0, "%s", err);
    fault_proxy_down(p, 8000, 0); /* connections reset for 8 s */
    cr_assert_eq(write_docs(w, 5000, 10000, 1, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    json_t *s1 = stats(w);
    long long retries_reset = stat(s1, "retries");
    json_decref(s1);
    cr_expect_gt(fault_proxy_get_stats(p).refused, 0, "the reset outage did not happen");
    cr_expect_gt(retries_reset, 0, "the sink did not retry through the reset outage");
    fault_proxy_down(p, 6000, 1); /* then connections held unanswered for 6 s */
    cr_assert_eq(write_docs(w, 10000, 15000, 1, NULL, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(w->flush(w, err, sizeof err), 0, "%s", err);
    json_t *s = stats(w);
    fault_proxy_stats ps = fault_proxy_get_stats(p);
    char *sj = json_dumps(s, JSON_COMPACT);
    cr_log_info("sink after %lds: %s; proxy refused %llu", (long)(time(NULL) - t0), sj,
                (unsigned long long)ps.refused);
    free(sj);
    cr_expect_gt(stat(s, "retries"), retries_reset,
                 "the sink did not retry through the unanswered outage");
    json_decref(s);
    w->close(w);
    fault_proxy_stop(p);
    check_all(idx, 15000, epoch);
    drop_index(idx);
}

Test(es_sink, gives_up_after_retries_with_a_clear_error, .timeout = 120)
{
    char idx[128], uri[256], err[1024];
    make_index(idx, sizeof idx, "giveup", 0);
    fault_proxy *p = fault_proxy_start(es_url());
    cr_assert_not_null(p);
    snprintf(uri, sizeof uri, "es:%s?retries=3&backoff_ms=50", idx);
    kp_sink_writer *w = must_open(uri, fault_proxy_url(p), time(NULL));
    fault_proxy_down(p, 60000, 0);
    int rc = write_docs(w, 0, 100, 1, NULL, 0, err, sizeof err);
    if (rc == 0)
        rc = w->flush(w, err, sizeof err);
    cr_assert_eq(rc, -1);
    char want[256];
    snprintf(want, sizeof want, "Elasticsearch at %s unreachable after 3 attempts",
             fault_proxy_url(p));
    cr_expect(strstr(err, want), "%s", err);
    w->close(w);
    fault_proxy_stop(p);
    drop_index(idx);
}

/* A cancellation probe that says "cancelled" from its `after`-th call on. */
typedef struct probe {
    int calls, after;
} probe;

static int probe_cancelled(void *arg)
{
    probe *p = arg;
    return ++p->calls >= p->after;
}

/* Defect 7: with the node unreachable, flush() used to retry for up to retry_timeout_ms
 * (120 s) whatever happened to the job. Now it stops at the job's cancellation. */
Test(es_sink, cancellation_ends_retries_and_flush, .timeout = 60)
{
    char idx[128], uri[256], err[1024], conf_url[600];
    make_index(idx, sizeof idx, "cancel", 0);
    fault_proxy *p = fault_proxy_start(es_url());
    cr_assert_not_null(p);
    snprintf(uri, sizeof uri, "es:%s?max_actions=50&backoff_ms=50", idx);
    snprintf(conf_url, sizeof conf_url, "es.url=%s", fault_proxy_url(p));
    const char *conf[] = {conf_url, NULL};
    probe pr = {0, 1 << 30};
    kp_endpoint ep = {.name = "out",
                      .uri = uri,
                      .parallelism = 1,
                      .conf = conf,
                      .epoch = time(NULL),
                      .cancelled = probe_cancelled,
                      .cancel_arg = &pr};
    kp_sink_writer *w = kp_es_connector.open_sink(&ep, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    fault_proxy_down(p, 600000, 1); /* every request held unanswered, then reset */
    pr.calls = 0;
    pr.after = 10; /* ~10 waits of at most 200 ms, then the job is cancelled */
    int rc = write_docs(w, 0, 1000, 1, NULL, 0, err, sizeof err);
    if (rc == 0)
        rc = w->flush(w, err, sizeof err);
    cr_assert_eq(rc, -1, "flush succeeded with the node down");
    cr_assert(strstr(err, "cancelled"), "failed otherwise: %s", err);
    cr_log_info("es sink: %s", err);
    w->close(w);
    fault_proxy_stop(p);
    drop_index(idx);
}
