/* Index and alias administration over libcurl for blue/green reprocessing (see es_alias.h and
 * docs/bluegreen.md). Each request is one blocking easy handle: the jobmanager makes a handful
 * of them per procedure from its blue/green thread, so a connection pool would buy nothing.
 * Answers are parsed with jansson; every failure says which request and what the node said. */
#include "es_alias.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REINDEX_TIMEOUT_MS 600000L

typedef struct resp {
    char *ptr;
    size_t len;
} resp;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static _Thread_local long last_status_ = -1; /* of this thread's last request */

long kp_es_last_status(void)
{
    return last_status_;
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    resp *r = arg;
    char *p = realloc(r->ptr, r->len + size * n + 1);
    if (!p)
        return 0;
    memcpy(p + r->len, data, size * n);
    r->ptr = p;
    r->len += size * n;
    p[r->len] = 0;
    return size * n;
}

void kp_es_admin_init(kp_es_admin *a, const char *url)
{
    memset(a, 0, sizeof *a);
    snprintf(a->url, sizeof a->url, "%s", url);
    size_t n = strlen(a->url);
    while (n > 0 && a->url[n - 1] == '/')
        a->url[--n] = 0;
    a->timeout_ms = 30000;
}

/* One request; the HTTP status (the body, parsed when it is JSON, in *out), or -1 with err. */
static long call(const kp_es_admin *a, const char *method, const char *path, const char *body,
                 long timeout_ms, json_t **out, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init_once);
    char url[1024], cerr[CURL_ERROR_SIZE] = "", auth[600];
    snprintf(url, sizeof url, "%s%s", a->url, path);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -1;
    }
    resp r = {0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (*a->api_key) {
        snprintf(auth, sizeof auth, "Authorization: ApiKey %s", a->api_key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (*a->user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, a->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, a->password);
    }
    long status = -1;
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK)
        snprintf(err, errlen, "Elasticsearch at %s: %s %s: %s", a->url, method, path,
                 *cerr ? cerr : curl_easy_strerror(cc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 0 && out)
        *out = r.ptr ? json_loads(r.ptr, 0, NULL) : NULL;
    if (status >= 300 || (status >= 0 && status < 200))
        snprintf(err, errlen, "Elasticsearch at %s answered %s %s with HTTP %ld: %.300s", a->url,
                 method, path, status, r.ptr ? r.ptr : "");
    free(r.ptr);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    last_status_ = status;
    return status;
}

/* call() for requests that must succeed (2xx); the parsed answer in *out when asked for. */
static int call_ok(const kp_es_admin *a, const char *method, const char *path, const char *body,
                   long timeout_ms, json_t **out, char *err, size_t errlen)
{
    json_t *j = NULL;
    long st = call(a, method, path, body, timeout_ms, &j, err, errlen);
    if (st < 200 || st >= 300) {
        json_decref(j);
        return -1;
    }
    if (out)
        *out = j;
    else
        json_decref(j);
    return 0;
}

int kp_es_resolve(const kp_es_admin *a, const char *name, kp_es_kind *kind, char *target,
                  size_t tlen, char *err, size_t errlen)
{
    char path[KP_ES_NAME_MAX + 16];
    json_t *j = NULL;
    snprintf(path, sizeof path, "/_alias/%s", name);
    long st = call(a, "GET", path, NULL, a->timeout_ms, &j, err, errlen);
    if (st == 200 && json_object_size(j) == 1) {
        *kind = KP_ES_ALIAS;
        snprintf(target, tlen, "%s", json_object_iter_key(json_object_iter(j)));
        json_decref(j);
        return 0;
    }
    if (st == 200) {
        snprintf(err, errlen,
                 "the alias '%s' at %s points at %zu indices: kappa manages an alias with one "
                 "index; remove the others from it (POST /_aliases)",
                 name, a->url, json_object_size(j));
        json_decref(j);
        return -1;
    }
    json_decref(j);
    if (st != 404)
        return -1;
    snprintf(path, sizeof path, "/%s", name);
    st = call(a, "HEAD", path, NULL, a->timeout_ms, NULL, err, errlen);
    if (st == 200) {
        *kind = KP_ES_INDEX;
        snprintf(target, tlen, "%s", name);
        return 0;
    }
    if (st == 404) {
        *kind = KP_ES_MISSING;
        *target = 0;
        return 0;
    }
    return -1;
}

int kp_es_index_create(const kp_es_admin *a, const char *index, const char *body, char *err,
                       size_t errlen)
{
    char path[KP_ES_NAME_MAX + 8];
    json_t *j = NULL;
    snprintf(path, sizeof path, "/%s", index);
    long st = call(a, "PUT", path, body && *body ? body : "{}", a->timeout_ms, &j, err, errlen);
    const char *type = json_string_value(json_object_get(json_object_get(j, "error"), "type"));
    int exists = st == 400 && type && !strcmp(type, "resource_already_exists_exception");
    json_decref(j);
    return (st >= 200 && st < 300) || exists ? 0 : -1;
}

int kp_es_index_delete(const kp_es_admin *a, const char *index, char *err, size_t errlen)
{
    char path[KP_ES_NAME_MAX + 8];
    snprintf(path, sizeof path, "/%s", index);
    long st = call(a, "DELETE", path, NULL, a->timeout_ms, NULL, err, errlen);
    return (st >= 200 && st < 300) || st == 404 ? 0 : -1;
}

int kp_es_alias_switch(const kp_es_admin *a, const char *alias, const char *from, const char *to,
                       char *err, size_t errlen)
{
    json_t *actions = json_array();
    if (from && *from && strcmp(from, to))
        json_array_append_new(actions,
                              json_pack("{s:{s:s,s:s}}", "remove", "index", from, "alias", alias));
    json_array_append_new(actions, json_pack("{s:{s:s,s:s}}", "add", "index", to, "alias", alias));
    json_t *req = json_pack("{s:o}", "actions", actions);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int rc = body ? call_ok(a, "POST", "/_aliases", body, a->timeout_ms, NULL, err, errlen) : -1;
    if (!body)
        snprintf(err, errlen, "out of memory");
    free(body);
    return rc;
}

/* index.blocks.write on `index` (true), or lifted (false). */
static int write_block(const kp_es_admin *a, const char *index, int on, char *err, size_t errlen)
{
    char path[KP_ES_NAME_MAX + 32];
    snprintf(path, sizeof path, "/%s/_settings", index);
    return call_ok(a, "PUT", path,
                   on ? "{\"index.blocks.write\":true}" : "{\"index.blocks.write\":false}",
                   a->timeout_ms, NULL, err, errlen);
}

int kp_es_migrate(const kp_es_admin *a, const char *name, const char *to, const char *body,
                  char *err, size_t errlen)
{
    if (kp_es_index_create(a, to, body, err, errlen) != 0 ||
        write_block(a, name, 1, err, errlen) != 0)
        return -1;
    /* refreshed once blocked: _reindex reads what a search sees, so every acknowledged write */
    int rc = kp_es_refresh(a, name, err, errlen);
    json_t *req = json_pack("{s:s,s:{s:s},s:{s:s,s:s}}", "conflicts", "proceed", "source", "index",
                            name, "dest", "index", to, "version_type", "external");
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (rc == 0)
        rc = text ? call_ok(a, "POST", "/_reindex?wait_for_completion=true&refresh=true", text,
                            REINDEX_TIMEOUT_MS, NULL, err, errlen)
                  : -1;
    free(text);
    if (rc == 0) {
        req = json_pack("{s:[{s:{s:s,s:s,s:b}},{s:{s:s}}]}", "actions", "add", "index", to, "alias",
                        name, "is_write_index", 1, "remove_index", "index", name);
        text = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        rc = text ? call_ok(a, "POST", "/_aliases", text, a->timeout_ms, NULL, err, errlen) : -1;
        free(text);
    }
    char ignored[256]; /* failed: the writers held by the block go on (the step is retried) */
    if (rc != 0)
        write_block(a, name, 0, ignored, sizeof ignored);
    return rc;
}

int kp_es_version_of(const char *alias, const char *index)
{
    size_t n = strlen(alias);
    if (strncmp(index, alias, n) || strncmp(index + n, "-v", 2) || !index[n + 2])
        return 0;
    char *end;
    long v = strtol(index + n + 2, &end, 10);
    return *end || v < 0 || v > 1000000000 ? 0 : (int)v;
}

int kp_es_next_version(const kp_es_admin *a, const char *alias, int *next, char *err, size_t errlen)
{
    char path[KP_ES_NAME_MAX + 64];
    json_t *j = NULL;
    snprintf(path, sizeof path, "/_cat/indices/%s-v*?h=index&format=json", alias);
    long st = call(a, "GET", path, NULL, a->timeout_ms, &j, err, errlen);
    if (st == 404) { /* older nodes answer 404 to a wildcard that matches nothing */
        json_decref(j);
        *next = 1;
        return 0;
    }
    if (st != 200 || !json_is_array(j)) {
        json_decref(j);
        if (st == 200)
            snprintf(err, errlen, "Elasticsearch at %s: GET %s did not answer a list", a->url,
                     path);
        return -1;
    }
    size_t i;
    int best = 0;
    json_t *row;
    json_array_foreach(j, i, row)
    {
        const char *ix = json_string_value(json_object_get(row, "index"));
        int v = ix ? kp_es_version_of(alias, ix) : 0;
        best = v > best ? v : best;
    }
    json_decref(j);
    *next = best + 1;
    return 0;
}

int kp_es_refresh(const kp_es_admin *a, const char *index, char *err, size_t errlen)
{
    char path[KP_ES_NAME_MAX + 16];
    snprintf(path, sizeof path, "/%s/_refresh", index);
    return call_ok(a, "POST", path, NULL, a->timeout_ms, NULL, err, errlen);
}

int kp_es_index_stats(const kp_es_admin *a, const char *index, long long *docs, long long *bytes,
                      char *err, size_t errlen)
{
    char path[KP_ES_NAME_MAX + 32];
    json_t *j = NULL;
    snprintf(path, sizeof path, "/%s/_stats/docs,store", index);
    if (call_ok(a, "GET", path, NULL, a->timeout_ms, &j, err, errlen) != 0)
        return -1;
    json_t *p = json_object_get(json_object_get(j, "_all"), "primaries");
    *docs = json_integer_value(json_object_get(json_object_get(p, "docs"), "count"));
    *bytes = json_integer_value(json_object_get(json_object_get(p, "store"), "size_in_bytes"));
    json_decref(j);
    return 0;
}
