/* GET /jobs/:id/results: what a job wrote to Elasticsearch, charted by the dashboard (what the
 * seed's setup needed Kibana for). The jobmanager is a thin proxy: it takes the job's first
 * `es:NAME` sink binding (the alias readers use) and its url (the URI's url= option, else the
 * conf's es.url) from the manifest, asks that alias or index for
 * the top items by the sum of a value field and, for each, the sums per hour of a time field
 * over the last hours before the newest document, and answers
 *   {index, key, value, time, hours, documents, latest, items: [{key, total, hourly: [[t, v]]}]}
 * The field names default to the seed job's documents (item_id, click_count, window_end) and
 * can be given (?key=&value=&time=, [A-Za-z0-9_.] only); ?top= (10, 1..50), ?hours= (48,
 * 1..720). A text key field is aggregated through its .keyword subfield (dynamic mapping).
 * The request to Elasticsearch runs on the REST thread with a 5 s timeout: other REST requests
 * wait meanwhile, the control plane does not (it has its own thread). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rest_int.h"

#define ES_REPLY_MAX (4u << 20)

typedef struct es_target_t {
    char url[1024], index[256];
} es_target_t;

typedef struct buf_t {
    char *p;
    size_t n;
    bool over;
} buf_t;

static size_t on_data(char *data, size_t size, size_t nmemb, void *userdata)
{
    buf_t *b = userdata;
    size_t len = size * nmemb;
    if (b->n + len > ES_REPLY_MAX) {
        b->over = true;
        return 0;
    }
    char *p = realloc(b->p, b->n + len + 1);
    if (!p)
        return 0;
    memcpy(p + b->n, data, len);
    b->p = p;
    b->n += len;
    p[b->n] = '\0';
    return len;
}

/* One request to Elasticsearch; the parsed JSON reply, or NULL with the reason. */
static json_t *es_call(const es_target_t *es, const char *path, json_t *body, char *err,
                       size_t errlen)
{
    char url[1600];
    snprintf(url, sizeof url, "%s/%s/%s", es->url, es->index, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    buf_t b = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (text)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(text);
    json_t *j = rc == CURLE_OK && b.p ? json_loads(b.p, 0, NULL) : NULL;
    if (!j || status != 200) {
        json_t *e = json_object_get(j, "error");
        json_t *root = json_array_get(json_object_get(e, "root_cause"), 0);
        const char *why = json_string_value(json_object_get(root ? root : e, "reason"));
        snprintf(err, errlen, "%.300s/%.100s: %s (HTTP %ld)%s%.300s", es->url, es->index,
                 rc != CURLE_OK ? curl_easy_strerror(rc)
                 : b.over       ? "reply larger than 4 MiB"
                                : "error",
                 status, why ? ": " : "", why ? why : "");
        json_decref(j);
        j = NULL;
    }
    free(b.p);
    return j;
}

/* Option `key` of an es: URI ("es:NAME?index=X&url=Y") into out; false if absent. */
static bool uri_opt(const char *uri, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    for (const char *q = strchr(uri, '?'); q && *q; q = strchr(q, '&')) {
        q++;
        if (!strncmp(q, key, klen) && q[klen] == '=') {
            snprintf(out, outlen, "%.*s", (int)strcspn(q + klen + 1, "&"), q + klen + 1);
            return true;
        }
    }
    return false;
}

/* The job's first es: sink — its NAME, the alias or index readers use (blue/green points it at
 * the current index) — and its url= option or else es.url (jm->lock held). false with the
 * reason. */
static bool es_target(const kp_jm_job_t *job, es_target_t *es, char *err, size_t errlen)
{
    size_t i;
    json_t *b, *conf;
    es->url[0] = es->index[0] = '\0';
    json_array_foreach(json_object_get(job->manifest, "conf"), i, conf)
    {
        const char *kv = json_string_value(conf);
        if (kv && !strncmp(kv, "es.url=", 7))
            snprintf(es->url, sizeof es->url, "%s", kv + 7);
    }
    json_array_foreach(json_object_get(job->manifest, "bindings"), i, b)
    {
        const char *uri = json_string_value(json_object_get(b, "uri"));
        if (!uri || strncmp(uri, "es:", 3))
            continue;
        snprintf(es->index, sizeof es->index, "%.*s", (int)strcspn(uri + 3, "?"), uri + 3);
        uri_opt(uri, "url", es->url, sizeof es->url);
        break;
    }
    size_t n = strlen(es->url);
    while (n && es->url[n - 1] == '/')
        es->url[--n] = '\0';
    if (!es->index[0])
        snprintf(err, errlen, "job %s writes to no Elasticsearch index (no es: sink)", job->name);
    else if (strncmp(es->url, "http://", 7) && strncmp(es->url, "https://", 8))
        snprintf(err, errlen, "job %s has no http(s) es.url in its conf", job->name);
    else if (strspn(es->index, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(es->index))
        snprintf(err, errlen, "job %s: index name '%s' is not one this route queries", job->name,
                 es->index);
    else
        return true;
    return false;
}

/* A field-name argument: [A-Za-z0-9_.], 1..64 characters, else `dflt`. */
static const char *field_arg(struct MHD_Connection *conn, const char *key, const char *dflt)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
    size_t n = v ? strlen(v) : 0;
    if (!n || n > 64 ||
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") != n)
        return dflt;
    return v;
}

/* The field to aggregate `key` by: itself when keyword, its .keyword subfield when text. */
static void key_field(json_t *mapping, const char *key, char *out, size_t outlen)
{
    const char *k;
    json_t *idx;
    snprintf(out, outlen, "%s", key);
    json_object_foreach(mapping, k, idx)
    {
        json_t *f =
            json_object_get(json_object_get(json_object_get(idx, "mappings"), "properties"), key);
        const char *type = json_string_value(json_object_get(f, "type"));
        if (type && !strcmp(type, "text") &&
            json_object_get(json_object_get(f, "fields"), "keyword"))
            snprintf(out, outlen, "%s.keyword", key);
        return;
    }
}

/* The top items and their hourly sums, from the two search replies. */
static json_t *results_json(json_t *top, const es_target_t *es, const char *key, const char *value,
                            const char *time, long hours, double latest)
{
    json_t *items = json_array(), *bucket;
    size_t i, k;
    json_array_foreach(
        json_object_get(json_object_get(json_object_get(top, "aggregations"), "top"), "buckets"), i,
        bucket)
    {
        json_t *hourly = json_array(), *h;
        json_array_foreach(json_object_get(json_object_get(bucket, "hourly"), "buckets"), k, h)
        {
            json_array_append_new(
                hourly, json_pack("[I,O]", (json_int_t)json_number_value(json_object_get(h, "key")),
                                  json_object_get(json_object_get(h, "sum"), "value")));
        }
        json_array_append_new(
            items, json_pack("{s:O,s:O,s:o}", "key", json_object_get(bucket, "key"), "total",
                             json_object_get(json_object_get(bucket, "total"), "value"), "hourly",
                             hourly));
    }
    json_t *total =
        json_object_get(json_object_get(json_object_get(top, "hits"), "total"), "value");
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:O,s:f,s:o}", "index", es->index, "key", key, "value",
                     value, "time", time, "hours", (int)hours, "documents",
                     total ? total : json_null(), "latest", latest, "items", items);
}

enum MHD_Result kp_rest_job_results(kp_jm_t *jm, struct MHD_Connection *conn,
                                    const kp_rest_args_t *args)
{
    char id[KP_JM_NAME_MAX], err[1024];
    if (!kp_rest_seg(args->v[0], id, sizeof id) || !kp_manifest_name_ok(id))
        return kp_rest_send_error(conn, 400, "a job id or name is 1-127 characters");
    es_target_t es;
    pthread_mutex_lock(&jm->lock);
    kp_jm_job_t *job = kp_registry_find(jm, id);
    bool ok = job && es_target(job, &es, err, sizeof err);
    pthread_mutex_unlock(&jm->lock);
    if (!job)
        return kp_rest_send_error(conn, 404, "no job with the id or name '%s'", id);
    if (!ok)
        return kp_rest_send_error(conn, 404, "%s", err);
    const char *key = field_arg(conn, "key", "item_id"),
               *value = field_arg(conn, "value", "click_count"),
               *time = field_arg(conn, "time", "window_end");
    long top = kp_rest_arg_long(conn, "top", 10, 1, 50),
         hours = kp_rest_arg_long(conn, "hours", 48, 1, 720);
    json_t *mapping = es_call(&es, "_mapping", NULL, err, sizeof err);
    if (!mapping)
        return kp_rest_send_error(conn, 502, "%s", err);
    char kf[80];
    key_field(mapping, key, kf, sizeof kf);
    json_decref(mapping);
    json_t *q =
        json_pack("{s:i,s:{s:{s:{s:s}}}}", "size", 0, "aggs", "latest", "max", "field", time);
    json_t *r = es_call(&es, "_search", q, err, sizeof err);
    json_decref(q);
    if (!r)
        return kp_rest_send_error(conn, 502, "%s", err);
    double latest = json_number_value(
        json_object_get(json_object_get(json_object_get(r, "aggregations"), "latest"), "value"));
    json_decref(r);
    json_t *sum = json_pack("{s:{s:s}}", "sum", "field", value);
    json_t *hourly = json_pack("{s:{s:s,s:i,s:i},s:{s:O}}", "histogram", "field", time, "interval",
                               3600000, "min_doc_count", 1, "aggs", "sum", sum);
    json_t *terms =
        json_pack("{s:{s:s,s:i,s:{s:s}},s:{s:O,s:o}}", "terms", "field", kf, "size", (int)top,
                  "order", "total", "desc", "aggs", "total", sum, "hourly", hourly);
    q = json_pack("{s:i,s:b,s:{s:{s:{s:f}}},s:{s:o}}", "size", 0, "track_total_hits", 1, "query",
                  "range", time, "gt", latest - (double)hours * 3600000.0, "aggs", "top", terms);
    json_decref(sum);
    r = q ? es_call(&es, "_search", q, err, sizeof err) : NULL;
    if (!q)
        snprintf(err, sizeof err, "out of memory");
    json_decref(q);
    if (!r)
        return kp_rest_send_error(conn, 502, "%s", err);
    json_t *body = results_json(r, &es, key, value, time, hours, latest);
    json_decref(r);
    return body ? kp_rest_send_json(conn, 200, body)
                : kp_rest_send_error(conn, 500, "out of memory");
}
