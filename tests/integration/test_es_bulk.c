/* The real Elasticsearch-API node answers the calls the sink will make: _bulk with external
 * versions, _refresh, _count; a re-send with lower versions is rejected item by item (409)
 * and changes nothing. KAPPA_ES_URL comes from tests/integration/with-services. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../support/es_http.h"

/* Sends one request; returns the HTTP status and the body (caller frees). */
static long request(const char *method, const char *path, const char *body, size_t len, char **out)
{
    return kp_test_es_request(method, path, "application/x-ndjson", body, len, out);
}

/* 10,000 index actions with external versions `version`, for index `idx`. */
static char *bulk_body(const char *idx, int version, size_t *len)
{
    size_t cap = 10000 * 200, off = 0;
    char *p = malloc(cap);
    cr_assert_not_null(p);
    for (int i = 0; i < 10000; i++)
        off += (size_t)snprintf(p + off, cap - off,
                                "{\"index\":{\"_index\":\"%s\",\"_id\":\"item_%d|1700000000000\","
                                "\"version\":%d,\"version_type\":\"external\"}}\n"
                                "{\"item_id\":\"item_%d\",\"click_count\":%d}\n",
                                idx, i, version, i, version);
    *len = off;
    return p;
}

/* Counts bulk items by status. */
static void item_statuses(const char *resp, int *ok, int *conflict, int *other)
{
    json_error_t err;
    json_t *root = json_loads(resp, 0, &err);
    cr_assert_not_null(root, "bulk response is not JSON: %s", err.text);
    json_t *items = json_object_get(root, "items");
    size_t i;
    json_t *it;
    *ok = *conflict = *other = 0;
    json_array_foreach(items, i, it)
    {
        int st = (int)json_integer_value(json_object_get(json_object_get(it, "index"), "status"));
        if (st == 200 || st == 201)
            (*ok)++;
        else if (st == 409)
            (*conflict)++;
        else
            (*other)++;
    }
    json_decref(root);
}

static long count_docs(const char *idx, const char *query, char **body)
{
    char path[256];
    snprintf(path, sizeof path, "/%s/_count%s", idx, query);
    request("GET", path, NULL, 0, body);
    json_t *root = json_loads(*body, 0, NULL);
    cr_assert_not_null(root);
    long n = (long)json_integer_value(json_object_get(root, "count"));
    json_decref(root);
    free(*body);
    return n;
}

Test(es_bulk, external_versions_fence_stale_writes, .timeout = 600)
{
    char idx[64], path[128], *resp;
    snprintf(idx, sizeof idx, "kappa-test-%ld-%d", (long)time(NULL), rand() % 100000);
    const char *settings = "{\"settings\":{\"number_of_shards\":1,\"number_of_replicas\":0}}";
    snprintf(path, sizeof path, "/%s", idx);
    cr_assert_eq(request("PUT", path, settings, strlen(settings), &resp), 200, "%s", resp);
    free(resp);

    size_t len;
    char *body = bulk_body(idx, 5, &len);
    cr_assert_eq(request("POST", "/_bulk", body, len, &resp), 200);
    int ok, conflict, other;
    item_statuses(resp, &ok, &conflict, &other);
    free(resp);
    free(body);
    cr_assert_eq(ok, 10000, "first bulk: %d ok, %d conflicts, %d other", ok, conflict, other);

    snprintf(path, sizeof path, "/%s/_refresh", idx);
    request("POST", path, NULL, 0, &resp);
    free(resp);
    cr_assert_eq(count_docs(idx, "", &resp), 10000);

    body = bulk_body(idx, 3, &len); /* a superseded attempt with lower versions */
    cr_assert_eq(request("POST", "/_bulk", body, len, &resp), 200);
    item_statuses(resp, &ok, &conflict, &other);
    free(resp);
    free(body);
    cr_assert_eq(conflict, 10000, "stale bulk: %d ok, %d conflicts, %d other", ok, conflict, other);

    snprintf(path, sizeof path, "/%s/_refresh", idx);
    request("POST", path, NULL, 0, &resp);
    free(resp);
    cr_assert_eq(count_docs(idx, "", &resp), 10000);
    cr_assert_eq(count_docs(idx, "?q=click_count:5", &resp), 10000, "a stale write got through");

    snprintf(path, sizeof path, "/%s", idx);
    request("DELETE", path, NULL, 0, &resp);
    free(resp);
}
