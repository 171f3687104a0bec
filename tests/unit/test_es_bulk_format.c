/* The es: sink's bulk bodies and response reading (connectors/es_bulk.c), without a node:
 * action lines, escaping, versions, copies for retries, and how every kind of item answer is
 * classified — including the scan that skips jansson when every item is 2xx. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../connectors/es_bulk.h"
#include "connector.h"
#include "connectors.h"

static kp_bytes B(const char *s)
{
    return (kp_bytes){s, strlen(s)};
}

Test(es_bulk_format, action_lines_escape_and_version)
{
    es_action a;
    cr_assert_eq(es_action_init(&a, "idx", "external"), 0);
    es_bulk b = {0};
    cr_assert_eq(es_bulk_add(&b, &a, B("a\"b\\c\x01"), B("{\"x\":1}"), (5ull << 32) | 7), 0);
    cr_assert_eq(es_bulk_add(&b, &a, B(""), B("{\n\"y\":2}"), 9), 0);
    const char *want = "{\"index\":{\"_index\":\"idx\",\"_id\":\"a\\\"b\\\\c\\u0001\","
                       "\"version\":21474836487,\"version_type\":\"external\"}}\n"
                       "{\"x\":1}\n"
                       "{\"index\":{\"_index\":\"idx\"}}\n"
                       "{ \"y\":2}\n";
    cr_assert_eq(b.body.len, strlen(want));
    cr_assert_arr_eq(b.body.ptr, want, strlen(want));
    cr_assert_eq(b.n, 2);
    kp_bytes d = es_bulk_doc(&b, 1);
    cr_assert_eq(d.len, 8);
    cr_assert_arr_eq(d.ptr, "{ \"y\":2}", 8);

    es_bulk r = {0};
    cr_assert_eq(es_bulk_copy_item(&r, &b, 1), 0);
    cr_assert_eq(es_bulk_copy_item(&r, &b, 0), 0);
    cr_assert_eq(r.body.len, b.body.len);
    d = es_bulk_doc(&r, 1);
    cr_assert_arr_eq(d.ptr, "{\"x\":1}", 7);
    free(r.body.ptr);
    free(r.items);
    free(b.body.ptr);
    free(b.items);

    cr_assert_eq(es_action_init(&a, "idx", "none"), 0);
    es_bulk c = {0};
    cr_assert_eq(es_bulk_add(&c, &a, B("k"), B("{}"), 3), 0);
    want = "{\"index\":{\"_index\":\"idx\",\"_id\":\"k\"}}\n{}\n";
    cr_assert_arr_eq(c.body.ptr, want, strlen(want));
    free(c.body.ptr);
    free(c.items);
}

typedef struct seen {
    int n;
    es_outcome what[8];
    char id[8][32];
} seen;

static int record(void *arg, size_t i, es_outcome what, int status, const char *id,
                  const char *reason)
{
    seen *s = arg;
    s->what[s->n] = what;
    snprintf(s->id[s->n], sizeof s->id[0], "%s", id);
    s->n++;
    return 0;
}

Test(es_bulk_format, every_item_is_classified)
{
    const char *ok = "{\"errors\":false,\"items\":[{\"index\":{\"_id\":\"a\",\"status\":201}},"
                     "{\"index\":{\"_id\":\"b\",\"status\":200}}]}";
    size_t counts[5] = {0};
    seen s = {0};
    char err[256];
    cr_assert_eq(es_bulk_parse(ok, strlen(ok), 2, counts, record, &s, err, sizeof err), 0);
    cr_assert_eq(counts[ES_ITEM_OK], 2);
    cr_assert_eq(s.n, 0);
    /* the scan must not accept a wrong count */
    cr_assert_eq(es_bulk_parse(ok, strlen(ok), 3, counts, record, &s, err, sizeof err), -1);

    const char *mixed =
        "{\"errors\":true,\"items\":["
        "{\"index\":{\"_id\":\"ok\",\"status\":201}},"
        "{\"index\":{\"_id\":\"dup\",\"status\":409,\"error\":{\"type\":"
        "\"version_conflict_engine_exception\",\"reason\":\"[dup]: version conflict, current "
        "version [7] is higher or equal to the one provided [7]\"}}},"
        "{\"index\":{\"_id\":\"stale\",\"status\":409,\"error\":{\"type\":"
        "\"version_conflict_engine_exception\",\"reason\":\"[stale]: version conflict, current "
        "version [9] is higher or equal to the one provided [7]\"}}},"
        "{\"index\":{\"_id\":\"busy\",\"status\":429,\"error\":{\"type\":"
        "\"es_rejected_execution_exception\",\"reason\":\"full\"}}},"
        "{\"index\":{\"_id\":\"down\",\"status\":503,\"error\":{\"type\":\"unavailable_shards_"
        "exception\",\"reason\":\"x\"}}},"
        "{\"index\":{\"_id\":\"bad\",\"status\":400,\"error\":{\"type\":"
        "\"mapper_parsing_exception\",\"reason\":\"failed to parse field [n]\"}}}]}";
    memset(counts, 0, sizeof counts);
    memset(&s, 0, sizeof s);
    cr_assert_eq(es_bulk_parse(mixed, strlen(mixed), 6, counts, record, &s, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(counts[ES_ITEM_OK], 1);
    cr_assert_eq(counts[ES_ITEM_DUP], 1);
    cr_assert_eq(counts[ES_ITEM_STALE], 1);
    cr_assert_eq(counts[ES_ITEM_RETRY], 2);
    cr_assert_eq(counts[ES_ITEM_REJECT], 1);
    cr_assert_eq(s.n, 5);
    cr_assert_str_eq(s.id[0], "dup");
    cr_assert_eq(s.what[4], ES_ITEM_REJECT);
    cr_assert_str_eq(s.id[4], "bad");

    /* "errors":false but a non-2xx status: the full parse must see it */
    const char *liar = "{\"errors\":false,\"items\":[{\"index\":{\"_id\":\"a\",\"status\":429}}]}";
    memset(counts, 0, sizeof counts);
    cr_assert_eq(es_bulk_parse(liar, strlen(liar), 1, counts, NULL, NULL, err, sizeof err), 0);
    cr_assert_eq(counts[ES_ITEM_RETRY], 1);

    cr_assert_eq(es_bulk_parse("<html>", 6, 1, counts, NULL, NULL, err, sizeof err), -1);
}

/* A write block (index.blocks.write, set while the jobmanager migrates a concrete index behind
 * an alias, or a node's read-only disk block) is transient: retried, not rejected. Another 403
 * (a security refusal) is not. */
Test(es_bulk_format, write_block_is_retried)
{
    size_t counts[5] = {0};
    char err[256];
    const char *resp =
        "{\"took\":20,\"errors\":true,\"items\":["
        "{\"index\":{\"_index\":\"clicks\",\"_id\":\"a\",\"status\":403,\"error\":{\"type\":"
        "\"cluster_block_exception\",\"reason\":\"index [clicks] blocked by: [FORBIDDEN/8/index "
        "write (api)];\"}}},"
        "{\"index\":{\"_id\":\"b\",\"status\":403,\"error\":{\"type\":"
        "\"security_exception\",\"reason\":\"no permissions\"}}}]}";
    cr_assert_eq(es_bulk_parse(resp, strlen(resp), 2, counts, NULL, NULL, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(counts[ES_ITEM_RETRY], 1);
    cr_assert_eq(counts[ES_ITEM_REJECT], 1);
}

Test(es_bulk_format, latency_quantiles)
{
    es_hist h = {0};
    for (int i = 1; i <= 100; i++)
        es_hist_add(&h, (uint64_t)i);
    double p50 = es_hist_quantile(&h, 0.5), p99 = es_hist_quantile(&h, 0.99);
    cr_assert(p50 >= 48 && p50 <= 53, "p50 %.1f", p50);
    cr_assert(p99 >= 95 && p99 <= 102, "p99 %.1f", p99);
    es_hist_add(&h, 1ull << 40); /* absurd values land in the last bucket */
    cr_assert_eq(es_hist_quantile(&(es_hist){0}, 0.5), 0);
}

/* The es: sink refuses a fencing epoch whose versions would not fit (epoch << 32 | seq must
 * stay below 2^63), before it talks to any node, with a message that says why. */
Test(es_sink_open, epoch_at_2_31_is_refused)
{
    kp_connectors_register_builtin();
    const kp_connector *c = kp_connector_find("es:idx");
    cr_assert_not_null(c);
    const char *conf[] = {"es.url=http://127.0.0.1:1", NULL};
    int64_t bad[] = {(int64_t)1 << 31, -1, INT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kp_endpoint ep = {
            .name = "out", .uri = "es:idx", .parallelism = 1, .conf = conf, .epoch = bad[i]};
        char err[512] = "";
        kp_sink_writer *w = c->open_sink(&ep, err, sizeof err);
        cr_expect_null(w, "epoch %lld accepted", (long long)bad[i]);
        if (w)
            w->close(w);
        cr_expect(strstr(err, "fencing epoch") && strstr(err, "2^31"), "%s", err);
    }
    kp_endpoint ep = {.name = "out",
                      .uri = "es:idx",
                      .parallelism = 1,
                      .conf = conf,
                      .epoch = ((int64_t)1 << 31) - 1};
    char err[512] = "";
    kp_sink_writer *w = c->open_sink(&ep, err, sizeof err); /* no node there: fails later */
    cr_expect(!strstr(err, "fencing epoch"), "the last valid epoch was refused: %s", err);
    if (w)
        w->close(w);
}
