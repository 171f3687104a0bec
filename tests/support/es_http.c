/* The services' Elasticsearch-API node, one request at a time; see es_http.h. */
#include "es_http.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *p;
    size_t len;
} buf;

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    char *p = realloc(b->p, b->len + size * n + 1);
    cr_assert_not_null(p);
    memcpy(p + b->len, data, size * n);
    b->len += size * n;
    p[b->len] = 0;
    b->p = p;
    return size * n;
}

const char *kp_test_es_url(void)
{
    const char *u = getenv("KAPPA_ES_URL");
    cr_assert(u && *u, "KAPPA_ES_URL is not set: run through tests/integration/with-services");
    return u;
}

long kp_test_es_request(const char *method, const char *path, const char *ctype, const char *body,
                        size_t len, char **out)
{
    char url[512], header[128];
    snprintf(url, sizeof url, "%s%s", kp_test_es_url(), path);
    snprintf(header, sizeof header, "Content-Type: %s", ctype);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = curl_slist_append(NULL, header);
    buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(rc));
    long status;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (out)
        *out = b.p ? b.p : strdup("");
    else
        free(b.p);
    return status;
}
