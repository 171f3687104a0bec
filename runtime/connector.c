/* The registry of connector schemes (see connector.h). Written at start-up by the main
 * thread, read-only while jobs run. */
#include "connector.h"
#include "engine.h"

#include <stdio.h>
#include <string.h>

#define MAX_CONNECTORS 16

static const kp_connector *registry[MAX_CONNECTORS];
static int nregistered;

int kp_connector_register(const kp_connector *c)
{
    for (int i = 0; i < nregistered; i++)
        if (!strcmp(registry[i]->scheme, c->scheme)) {
            registry[i] = c;
            return 0;
        }
    if (nregistered == MAX_CONNECTORS)
        return -1;
    registry[nregistered++] = c;
    return 0;
}

const kp_connector *kp_connector_find(const char *uri)
{
    const char *colon = strchr(uri, ':');
    size_t n = colon ? (size_t)(colon - uri) : strlen(uri);
    for (int i = 0; i < nregistered; i++)
        if (strlen(registry[i]->scheme) == n && !strncmp(registry[i]->scheme, uri, n))
            return registry[i];
    return NULL;
}

const char *kp_endpoint_target(const kp_endpoint *ep, char *buf, size_t len)
{
    const char *colon = strchr(ep->uri, ':');
    const char *start = colon ? colon + 1 : ep->uri;
    size_t n = strcspn(start, "?");
    snprintf(buf, len, "%.*s", (int)n, start);
    return buf;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies a percent-encoded query value of length n into buf. */
static const char *decode_value(const char *v, size_t n, char *buf, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < len; i++) {
        if (v[i] == '%' && i + 2 < n && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
            buf[o++] = (char)(hexval(v[i + 1]) * 16 + hexval(v[i + 2]));
            i += 2;
        } else {
            buf[o++] = v[i] == '+' ? ' ' : v[i];
        }
    }
    buf[o] = 0;
    return buf;
}

const char *kp_endpoint_get(const kp_endpoint *ep, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    const char *q = strchr(ep->uri, '?');
    while (q && *q) {
        q++;
        size_t n = strcspn(q, "&");
        if (n > klen && !strncmp(q, key, klen) && q[klen] == '=')
            return decode_value(q + klen + 1, n - klen - 1, buf, len);
        if (n == klen && !strncmp(q, key, klen))
            return decode_value("", 0, buf, len); /* "?flag" */
        q += n;
    }
    const char *colon = strchr(ep->uri, ':');
    size_t slen = colon ? (size_t)(colon - ep->uri) : 0;
    for (const char *const *c = ep->conf; c && *c; c++)
        if (!strncmp(*c, ep->uri, slen) && (*c)[slen] == '.' &&
            !strncmp(*c + slen + 1, key, klen) && (*c)[slen + 1 + klen] == '=') {
            snprintf(buf, len, "%s", *c + slen + 2 + klen);
            return buf;
        }
    return NULL;
}

void kp_print_connector_stats(const kp_subtask *st, const char *name, kp_sink_writer *w,
                              kp_source_reader *r)
{
    char buf[4096];
    size_t n = 0;
    if (!st->print_stats || (!w && !r))
        return;
    n = w ? w->stats(w, buf, sizeof buf) : r->stats(r, buf, sizeof buf);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    fprintf(stderr, "kappa: stats %s (%d/%d): %.*s\n", name, st->index + 1, st->parallelism, (int)n,
            buf);
}
