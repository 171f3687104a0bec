/* Building _bulk request bodies and reading _bulk responses for the es: sink (see es_bulk.h
 * for the why). Appending a document is two memcpys and a number format — no allocation once
 * the buffers have grown to a bulk's size, and they are reused bulk after bulk. A response
 * where every item is 2xx is recognised by a scan (all_ok); any other is read with jansson,
 * once per bulk, and every item is looked at. */
#include "es_bulk.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/json.h"

int es_action_init(es_action *a, const char *index, const char *version_type)
{
    size_t n = strlen(index);
    memset(a, 0, sizeof *a);
    if (n > 255) /* Elasticsearch's own limit */
        return -1;
    size_t o = (size_t)snprintf(a->head, sizeof a->head, "{\"index\":{\"_index\":\"");
    o += kp_json_escape(a->head + o, index, n);
    a->index_len = o + 1;
    memcpy(a->head + o, "\",\"_id\":\"", 9);
    a->head_len = o + 9;
    a->versioned = strcmp(version_type, "none") != 0;
    int len = snprintf(a->vtype, sizeof a->vtype, ",\"version_type\":\"%s\"}}\n", version_type);
    if (len < 0 || (size_t)len >= sizeof a->vtype)
        return -1;
    a->vtype_len = (size_t)len;
    return 0;
}

static int grow_items(es_bulk *b)
{
    if (b->n < b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 1024;
    es_item *it = realloc(b->items, cap * sizeof *it);
    if (!it)
        return -1;
    b->items = it;
    b->cap = cap;
    return 0;
}

int es_bulk_add(es_bulk *b, const es_action *a, kp_bytes id, kp_bytes doc, uint64_t version)
{
    size_t need = a->head_len + 6 * id.len + 64 + a->vtype_len + doc.len + 1;
    if (grow_items(b) != 0 || kp_buf_reserve(&b->body, need) != 0)
        return -1;
    es_item *it = &b->items[b->n++];
    char *p = b->body.ptr + b->body.len;
    it->start = (uint32_t)b->body.len;
    size_t o;
    if (id.len == 0) {
        /* no id: Elasticsearch generates one; versions need an id */
        o = a->index_len;
        memcpy(p, a->head, o);
        memcpy(p + o, "}}\n", 3);
        o += 3;
    } else {
        memcpy(p, a->head, a->head_len);
        o = a->head_len;
        o += kp_json_escape(p + o, id.ptr, id.len);
        p[o++] = '"';
        if (a->versioned) {
            memcpy(p + o, ",\"version\":", 11);
            o += 11;
            o += kp_fmt_u64(p + o, version);
            memcpy(p + o, a->vtype, a->vtype_len);
            o += a->vtype_len;
        } else {
            memcpy(p + o, "}}\n", 3);
            o += 3;
        }
    }
    it->doc = (uint32_t)(b->body.len + o);
    memcpy(p + o, doc.ptr, doc.len);
    for (char *nl = memchr(p + o, '\n', doc.len); nl; nl = memchr(nl, '\n', p + o + doc.len - nl))
        *nl = ' ';
    o += doc.len;
    p[o++] = '\n';
    b->body.len += o;
    it->end = (uint32_t)b->body.len;
    return 0;
}

int es_bulk_copy_item(es_bulk *dst, const es_bulk *src, size_t i)
{
    const es_item *s = &src->items[i];
    size_t len = s->end - s->start;
    if (grow_items(dst) != 0 || kp_buf_reserve(&dst->body, len) != 0)
        return -1;
    uint32_t base = (uint32_t)dst->body.len;
    memcpy(dst->body.ptr + base, src->body.ptr + s->start, len);
    dst->items[dst->n++] = (es_item){base, base + (s->doc - s->start), base + (uint32_t)len};
    dst->body.len += len;
    return 0;
}

void es_bulk_reset(es_bulk *b)
{
    b->body.len = 0;
    b->n = 0;
    b->attempt = 0;
    b->born_ms = b->due_ms = b->first_ms = 0;
    b->next = NULL;
}

void es_bulk_free(es_bulk *b)
{
    if (!b)
        return;
    free(b->body.ptr);
    free(b->items);
    free(b);
}

kp_bytes es_bulk_doc(const es_bulk *b, size_t i)
{
    const es_item *it = &b->items[i];
    return (kp_bytes){b->body.ptr + it->doc, it->end - it->doc - 1};
}

/* "... current version [5] is higher or equal to the one provided [5]": equal versions mean
 * the document already holds exactly this write (a retry of a request that was applied but
 * whose answer was lost). */
static es_outcome conflict_kind(const char *reason)
{
    const char *c = reason ? strstr(reason, "current version [") : NULL;
    const char *p = reason ? strstr(reason, "provided [") : NULL;
    if (!c || !p)
        return ES_ITEM_STALE;
    unsigned long long cur = strtoull(c + 17, NULL, 10), ours = strtoull(p + 10, NULL, 10);
    return cur == ours ? ES_ITEM_DUP : ES_ITEM_STALE;
}

/* The common case without jansson: a response that says "errors":false and holds exactly n
 * "status": fields, each 2xx. The pattern `"status":` cannot occur inside a JSON string (its
 * quotes would be escaped), so counting it counts items. Anything else takes the full parse. */
static int all_ok(const char *resp, size_t len, size_t n)
{
    const char *end = resp + len, *p = resp;
    const char *e = memmem(resp, len < 64 ? len : 64, "\"errors\":", 9);
    if (!e || strncmp(e + 9, "false", 5) != 0)
        return 0;
    size_t seen = 0;
    while ((p = memmem(p, (size_t)(end - p), "\"status\":", 9))) {
        p += 9;
        if (end - p < 4 || p[0] != '2' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9' ||
            (p[3] >= '0' && p[3] <= '9'))
            return 0;
        seen++;
    }
    return seen == n;
}

int es_bulk_parse(const char *resp, size_t len, size_t n, size_t counts[5], es_item_fn fn,
                  void *arg, char *errstr, size_t errlen)
{
    if (all_ok(resp, len, n)) {
        counts[ES_ITEM_OK] += n;
        return 0;
    }
    json_error_t jerr;
    json_t *root = json_loadb(resp, len, 0, &jerr);
    json_t *items = root ? json_object_get(root, "items") : NULL;
    if (!json_is_array(items) || json_array_size(items) != n) {
        snprintf(errstr, errlen,
                 "unexpected _bulk response (%s, %zu items for %zu documents): %.120s",
                 root ? "JSON" : jerr.text, items ? json_array_size(items) : 0, n, resp);
        json_decref(root);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(items, i);
        const char *action;
        json_t *res = NULL, *v;
        json_object_foreach(item, action, v)
        {
            res = v;
            break;
        }
        int status = (int)json_integer_value(json_object_get(res, "status"));
        if (status >= 200 && status < 300) {
            counts[ES_ITEM_OK]++;
            continue;
        }
        json_t *err = json_object_get(res, "error");
        const char *type = json_string_value(json_object_get(err, "type"));
        const char *why = json_string_value(json_object_get(err, "reason"));
        const char *id = json_string_value(json_object_get(res, "_id"));
        es_outcome what;
        if (status == 409 && type && !strcmp(type, "version_conflict_engine_exception"))
            what = conflict_kind(why);
        else if (status == 429 || status >= 500 ||
                 (status == 403 && type && !strcmp(type, "cluster_block_exception")))
            what = ES_ITEM_RETRY; /* a block: an index being migrated (es_alias.h), a full disk */
        else
            what = ES_ITEM_REJECT;
        counts[what]++;
        char reason[512];
        snprintf(reason, sizeof reason, "status %d: %s: %s", status, type ? type : "error",
                 why ? why : (status ? "(no reason given)" : "item without a status"));
        if (fn && fn(arg, i, what, status, id ? id : "", reason) != 0) {
            json_decref(root);
            return -1;
        }
    }
    json_decref(root);
    return 0;
}

static int hist_bucket(uint64_t v)
{
    if (v < 16)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= 4 */
    if (e > 31)
        return ES_HIST_BUCKETS - 1;
    return 16 + (e - 4) * 16 + (int)((v >> (e - 4)) & 15);
}

void es_hist_add(es_hist *h, uint64_t ms)
{
    h->count[hist_bucket(ms)]++;
    h->total++;
}

double es_hist_quantile(const es_hist *h, double q)
{
    if (!h->total)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)(h->total - 1)) + 1, seen = 0;
    for (int b = 0; b < ES_HIST_BUCKETS; b++) {
        seen += h->count[b];
        if (seen < rank)
            continue;
        if (b < 16)
            return b;
        int e = (b - 16) / 16 + 4, m = (b - 16) % 16;
        double lo = (double)((uint64_t)(16 + m) << (e - 4)), width = (double)(1ull << (e - 4));
        return lo + width / 2;
    }
    return 0;
}
