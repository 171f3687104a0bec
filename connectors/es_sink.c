/* Sink `es:INDEX`: documents into an Elasticsearch (or OpenSearch) index through _bulk, with
 * external versions so that replays and superseded attempts can never overwrite newer data.
 *
 * Versions (fencing). Every document is sent as an index action with
 *     version = (epoch << 32) | seq,  version_type = external
 * where epoch is the attempt's fencing epoch (kp_endpoint.epoch: grows with every (re)start
 * of the job; local runs use the start time in seconds) and seq is this writer's 32-bit
 * counter, incremented per document. Elasticsearch applies an external version only if it is
 * greater than the stored one, so:
 *  - a later firing of the same window (same id, same subtask — key groups pin an id to one
 *    subtask) has a higher seq and wins, even when bulk requests complete out of order or one
 *    of them is retried after the other;
 *  - a write from a superseded attempt (a zombie, or a replay racing the restart) has a lower
 *    epoch and is rejected with 409: "stale", counted, not an error;
 *  - a retry of a request that was applied but whose answer was lost gets 409 with the stored
 *    version equal to ours: the document already holds exactly this write ("dup", acked).
 * Limits: epoch < 2^31 (a counter from wall seconds, refused at open above) and at most 2^32-1
 * documents per writer per attempt — the writer fails, rather than wrap, past that.
 *
 * I/O. libcurl's multi interface driven from the subtask's own thread (no thread of ours):
 * `inflight` easy handles, each one keep-alive connection reused bulk after bulk. write()
 * appends to the current bulk; a full bulk (max_actions, max_bytes) or one older than
 * flush_ms is queued and started on a free handle; write() then only blocks when all `inflight`
 * handles are busy (or `inflight` retries are backing off) — that is the backpressure. Every item of every response is checked:
 * 429/5xx items are copied (same bytes, same version) into a retry bulk sent after an
 * exponential backoff with jitter; whole-request failures (refused, reset, timeout, HTTP
 * 429/5xx) resend the bulk the same way, until `retries` attempts or retry_timeout_ms; other
 * item errors follow on_error (fail, or the dead_letter sink). flush() returns when everything
 * written before it is acknowledged. close() does not send: without a flush the attempt's
 * unflushed output is abandoned, and the replay from the last checkpoint rewrites it.
 *
 * Cancellation: every wait (backpressure, retries in backoff, flush) is in steps of at most
 * 200 ms that ask the endpoint's cancellation probe; once the job is cancelled the writer
 * fails with "cancelled" instead of retrying on for up to retry_timeout_ms. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "../runtime/clock.h"
#include "../runtime/connector.h"
#include "../runtime/failpoint.h"
#include "es_bulk.h"

#define MAX_INFLIGHT   64
#define BACKOFF_CAP_MS 10000
#define PUMP_EVERY     64 /* documents between non-blocking progress calls */

typedef struct es_opts {
    long max_actions, max_bytes, flush_ms, inflight, gzip, retries, backoff_ms;
    long retry_timeout_ms, timeout_ms, connect_timeout_ms, require_index, insecure;
    int dead_letter; /* on_error=dead-letter */
    char url[512], user[128], password[256], api_key[512], ca[512], version_type[32];
    char dead_uri[512];
} es_opts;

typedef struct es_slot {
    CURL *easy;
    es_bulk *bulk; /* in flight, or NULL */
    kp_buf resp;
    kp_buf gz;
    int64_t start_ms;
    char curl_err[CURL_ERROR_SIZE];
} es_slot;

typedef struct es_stats {
    uint64_t sent, acked, stale, dups, failed, dead_lettered, retries, items_retried, bulks;
} es_stats;

typedef struct es_writer {
    kp_sink_writer w;
    es_opts o;
    char index[256];
    es_action action;
    uint32_t epoch;
    uint32_t seq;
    CURLM *multi;
    struct curl_slist *headers;
    es_slot slots[MAX_INFLIGHT];
    int busy;       /* slots with a bulk */
    es_bulk *cur;   /* being filled */
    es_bulk *queue; /* ready or backing off, not yet sent */
    int queued;
    es_bulk *pool;   /* empty bulks for reuse */
    unsigned writes; /* since the last pump */
    z_stream z;
    int z_ready;
    uint64_t rng;
    kp_sink_writer *dead; /* on_error=dead-letter */
    int failed;           /* sticky: err says why */
    char err[1024];
    es_stats st;
    es_hist lat;
    int (*cancelled)(void *); /* the endpoint's cancellation probe */
    void *cancel_arg;
} es_writer;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Records the writer's first failure; later calls of write()/flush() return it. */
static int fail(es_writer *e, const char *fmt, ...)
{
    if (!e->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->err, sizeof e->err, fmt, ap);
        va_end(ap);
        e->failed = 1;
    }
    return -1;
}

static int report(es_writer *e, char *errstr, size_t errlen)
{
    snprintf(errstr, errlen, "%s", e->err);
    return -1;
}

/* ---- bulks: pool, queue, backoff ----------------------------------------------------------- */

static es_bulk *bulk_get(es_writer *e)
{
    es_bulk *b = e->pool;
    if (b) {
        e->pool = b->next;
        es_bulk_reset(b);
        return b;
    }
    b = calloc(1, sizeof *b);
    if (!b)
        fail(e, "es:%s: out of memory", e->index);
    return b;
}

static void bulk_put(es_writer *e, es_bulk *b)
{
    b->next = e->pool;
    e->pool = b;
}

static void enqueue(es_writer *e, es_bulk *b)
{
    es_bulk **pp = &e->queue;
    while (*pp)
        pp = &(*pp)->next;
    b->next = NULL;
    *pp = b;
    e->queued++;
}

static uint64_t rnd(es_writer *e)
{
    e->rng ^= e->rng << 13;
    e->rng ^= e->rng >> 7;
    e->rng ^= e->rng << 17;
    return e->rng;
}

/* Exponential backoff before attempt `attempt + 1`, capped, with "equal jitter": half the delay
 * fixed, half random — retries of many writers spread out, and the total wait stays
 * predictable (at least half the nominal). */
static int64_t backoff_ms(es_writer *e, int attempt)
{
    int64_t d = e->o.backoff_ms;
    for (int i = 1; i < attempt && d < BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    return d / 2 + (int64_t)(rnd(e) % (uint64_t)(d / 2 + 1));
}

/* May bulk b, which just failed its attempt, be sent again? */
static int may_retry(es_writer *e, const es_bulk *b)
{
    return b->attempt < e->o.retries && kp_mono_ms() - b->born_ms < e->o.retry_timeout_ms;
}

static void schedule_retry(es_writer *e, es_bulk *b)
{
    b->due_ms = kp_mono_ms() + backoff_ms(e, b->attempt);
    e->st.retries++;
    enqueue(e, b);
}

/* ---- sending ---------------------------------------------------------------------------------- */

static int gzip_body(es_writer *e, es_slot *s, const es_bulk *b)
{
    if (!e->z_ready) {
        if (deflateInit2(&e->z, 1, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return fail(e, "es:%s: cannot initialise gzip", e->index);
        e->z_ready = 1;
    }
    deflateReset(&e->z);
    size_t bound = deflateBound(&e->z, b->body.len) + 64;
    s->gz.len = 0;
    if (kp_buf_reserve(&s->gz, bound) != 0)
        return fail(e, "es:%s: out of memory", e->index);
    e->z.next_in = (unsigned char *)b->body.ptr;
    e->z.avail_in = (unsigned)b->body.len;
    e->z.next_out = (unsigned char *)s->gz.ptr;
    e->z.avail_out = (unsigned)bound;
    if (deflate(&e->z, Z_FINISH) != Z_STREAM_END)
        return fail(e, "es:%s: gzip failed", e->index);
    s->gz.len = bound - e->z.avail_out;
    return 0;
}

static int start(es_writer *e, es_slot *s, es_bulk *b)
{
    const char *body = b->body.ptr;
    size_t len = b->body.len;
    if (e->o.gzip) {
        if (gzip_body(e, s, b) != 0)
            return -1;
        body = s->gz.ptr;
        len = s->gz.len;
    }
    if (b->attempt++ == 0)
        b->born_ms = kp_mono_ms();
    s->bulk = b;
    s->resp.len = 0;
    s->curl_err[0] = 0;
    s->start_ms = kp_mono_ms();
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    CURLMcode mc = curl_multi_add_handle(e->multi, s->easy);
    if (mc != CURLM_OK)
        return fail(e, "es:%s: libcurl: %s", e->index, curl_multi_strerror(mc));
    e->busy++;
    return 0;
}

/* Starts queued bulks whose backoff has passed on free slots. */
static int dispatch(es_writer *e)
{
    int64_t now = kp_mono_ms();
    for (int i = 0; i < e->o.inflight && e->queue; i++) {
        es_slot *s = &e->slots[i];
        if (s->bulk)
            continue;
        es_bulk **pp = &e->queue;
        while (*pp && (*pp)->due_ms > now)
            pp = &(*pp)->next;
        if (!*pp)
            break;
        es_bulk *b = *pp;
        *pp = b->next;
        e->queued--;
        if (start(e, s, b) != 0)
            return -1;
    }
    return 0;
}

/* ---- responses ---------------------------------------------------------------------------------- */

typedef struct item_ctx {
    es_writer *e;
    es_bulk *done;  /* the answered bulk */
    es_bulk *retry; /* its items to send again, or NULL */
    char first_retry[600];
} item_ctx;

static int dead_letter(es_writer *e, const es_bulk *b, size_t i, const char *id, const char *reason)
{
    kp_bytes doc = es_bulk_doc(b, i);
    char origin[300], err[512];
    snprintf(origin, sizeof origin, "es:%s", e->index);
    int rc;
    if (e->dead->write_raw) {
        kp_raw raw = {.key = {id, strlen(id)},
                      .value = doc,
                      .ts = KP_TIME_MIN,
                      .partition = -1,
                      .offset = -1};
        rc = e->dead->write_raw(e->dead, &raw, origin, reason, err, sizeof err);
    } else {
        rc = e->dead->write(e->dead, (kp_bytes){id, strlen(id)}, doc, KP_TIME_MIN, err, sizeof err);
    }
    if (rc != 0)
        return fail(e, "es:%s: dead-letter output %s failed: %s", e->index, e->o.dead_uri, err);
    e->st.dead_lettered++;
    return 0;
}

static int on_item(void *arg, size_t i, es_outcome what, int status, const char *id,
                   const char *reason)
{
    item_ctx *c = arg;
    es_writer *e = c->e;
    switch (what) {
    case ES_ITEM_RETRY:
        if (!c->retry) {
            if (!(c->retry = bulk_get(e)))
                return -1;
            c->retry->attempt = c->done->attempt;
            c->retry->born_ms = c->done->born_ms;
            snprintf(c->first_retry, sizeof c->first_retry, "document '%s': %s", id, reason);
        }
        if (es_bulk_copy_item(c->retry, c->done, i) != 0)
            return fail(e, "es:%s: out of memory", e->index);
        return 0;
    case ES_ITEM_REJECT:
        e->st.failed++;
        if (e->dead)
            return dead_letter(e, c->done, i, id, reason);
        return fail(e,
                    "Elasticsearch rejected document '%s' for index '%s': %s (on_error=fail; "
                    "on_error=dead-letter&dead_letter=URI keeps the job running)",
                    id, e->index, reason);
    default:
        return 0;
    }
}

static int handle_items(es_writer *e, es_slot *s, es_bulk *b)
{
    size_t counts[5] = {0};
    item_ctx c = {.e = e, .done = b};
    char perr[512];
    int rc = es_bulk_parse(s->resp.ptr ? s->resp.ptr : "", s->resp.len, b->n, counts, on_item, &c,
                           perr, sizeof perr);
    if (rc != 0 && !e->failed)
        fail(e, "Elasticsearch at %s: %s", e->o.url, perr);
    e->st.acked += counts[ES_ITEM_OK] + counts[ES_ITEM_DUP];
    e->st.dups += counts[ES_ITEM_DUP];
    e->st.stale += counts[ES_ITEM_STALE];
    if (c.retry) {
        e->st.items_retried += c.retry->n;
        if (rc == 0 && !may_retry(e, c.retry)) {
            fail(e,
                 "Elasticsearch at %s still refused %zu documents of index '%s' after %d "
                 "attempts (first: %s)",
                 e->o.url, c.retry->n, e->index, c.retry->attempt, c.first_retry);
            bulk_put(e, c.retry);
        } else if (rc == 0) {
            schedule_retry(e, c.retry);
        } else {
            bulk_put(e, c.retry);
        }
    }
    bulk_put(e, b);
    return rc;
}

static void finish(es_writer *e, es_slot *s, CURLcode cc)
{
    es_bulk *b = s->bulk;
    s->bulk = NULL;
    e->busy--;
    curl_multi_remove_handle(e->multi, s->easy);
    int64_t took = kp_mono_ms() - s->start_ms;
    es_hist_add(&e->lat, (uint64_t)(took < 0 ? 0 : took));
    e->st.bulks++;
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_OK && status == 200) {
        handle_items(e, s, b);
        return;
    }
    char why[600];
    if (cc != CURLE_OK)
        snprintf(why, sizeof why, "%s", s->curl_err[0] ? s->curl_err : curl_easy_strerror(cc));
    else
        snprintf(why, sizeof why, "HTTP %ld: %.300s", status, s->resp.ptr ? s->resp.ptr : "");
    if (cc == CURLE_OK && (status == 401 || status == 403)) {
        fail(e, "Elasticsearch at %s refused the credentials (set user/password or api_key): %s",
             e->o.url, why);
    } else if (cc == CURLE_OK && status == 413) {
        fail(e,
             "Elasticsearch at %s refused a bulk request of %zu bytes as too large: lower "
             "max_bytes/max_actions",
             e->o.url, b->body.len);
    } else if (cc == CURLE_OK && status != 429 && status < 500) {
        fail(e, "Elasticsearch at %s rejected a bulk request for index '%s' with %s", e->o.url,
             e->index, why);
    } else if (may_retry(e, b)) {
        schedule_retry(e, b);
        return;
    } else if (cc != CURLE_OK) {
        fail(e, "Elasticsearch at %s unreachable after %d attempts: %s", e->o.url, b->attempt, why);
    } else {
        fail(e, "Elasticsearch at %s failed a bulk request %d times: %s", e->o.url, b->attempt,
             why);
    }
    bulk_put(e, b);
}

/* Moves transfers along without blocking; handles finished ones; starts queued ones. */
static int pump(es_writer *e)
{
    int running;
    curl_multi_perform(e->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(e->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *p = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &p);
        finish(e, (es_slot *)p, m->data.result);
    }
    if (e->failed)
        return -1;
    if (e->queue && e->busy < e->o.inflight) {
        if (dispatch(e) != 0)
            return -1;
        curl_multi_perform(e->multi, &running);
    }
    return 0;
}

/* Waits (at most ~200 ms) for some transfer to make progress or a backoff to end; fails
 * the writer once the job is cancelled. */
static int wait_some(es_writer *e)
{
    if (kp_endpoint_cancelled(e->cancelled, e->cancel_arg))
        return fail(e,
                    "es:%s: cancelled with %d bulk request(s) in flight and %d waiting (sent %llu "
                    "documents, %llu acknowledged)",
                    e->index, e->busy, e->queued, (unsigned long long)e->st.sent,
                    (unsigned long long)e->st.acked);
    int timeout = 200;
    if (e->queue && e->busy < e->o.inflight) {
        int64_t now = kp_mono_ms(), due = INT64_MAX;
        for (es_bulk *b = e->queue; b; b = b->next)
            if (b->due_ms < due)
                due = b->due_ms;
        timeout = due <= now ? 0 : (int)(due - now < timeout ? due - now : timeout);
    }
    if (e->busy)
        curl_multi_poll(e->multi, NULL, 0, timeout, NULL);
    else if (timeout > 0)
        nanosleep(&(struct timespec){.tv_sec = timeout / 1000,
                                     .tv_nsec = (long)(timeout % 1000) * 1000000},
                  NULL);
    return pump(e);
}

/* Backpressure: a new bulk waits while every slot is taken (sending, or claimed by a queued bulk
 * ready to go) — or while `inflight` retries are backing off, which bounds memory when the
 * cluster keeps refusing. A retry in backoff does not hold a slot: one document answered 429
 * must not halve the throughput of the others for the length of its backoff. */
static int must_wait(es_writer *e)
{
    int64_t now = kp_mono_ms();
    int ready = 0, delayed = 0;
    for (es_bulk *b = e->queue; b; b = b->next)
        b->due_ms > now ? delayed++ : ready++;
    return e->busy + ready >= e->o.inflight || delayed >= e->o.inflight;
}

/* Hands the current bulk over for sending; blocks as must_wait() says. */
static int submit(es_writer *e)
{
    es_bulk *b = e->cur;
    e->cur = NULL;
    if (!b || b->n == 0) {
        e->cur = b;
        return 0;
    }
    while (must_wait(e))
        if (wait_some(e) != 0) {
            bulk_put(e, b);
            return -1;
        }
    e->st.sent += b->n;
    b->due_ms = 0;
    enqueue(e, b);
    return pump(e);
}

/* ---- the writer -------------------------------------------------------------------------------- */

static int es_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                    size_t errlen)
{
    es_writer *e = (es_writer *)w;
    if (e->failed)
        return report(e, errstr, errlen);
    if (e->seq == UINT32_MAX) {
        fail(e,
             "es:%s: %u documents in one attempt of subtask: the version sequence would wrap "
             "(restart the job: a new attempt has a new epoch)",
             e->index, UINT32_MAX);
        return report(e, errstr, errlen);
    }
    size_t need = e->action.head_len + 6 * id.len + 64 + doc.len;
    if (e->cur && e->cur->n > 0 && e->cur->body.len + need > (size_t)e->o.max_bytes &&
        submit(e) != 0)
        return report(e, errstr, errlen);
    if (!e->cur && !(e->cur = bulk_get(e)))
        return report(e, errstr, errlen);
    int64_t now = kp_mono_ms(); /* ~20 ns (vDSO): flush_ms is checked on every write */
    if (e->cur->n == 0)
        e->cur->first_ms = now;
    uint64_t version = ((uint64_t)e->epoch << 32) | ++e->seq;
    if (es_bulk_add(e->cur, &e->action, id, doc, version) != 0) {
        fail(e, "es:%s: out of memory", e->index);
        return report(e, errstr, errlen);
    }
    if ((long)e->cur->n >= e->o.max_actions || e->cur->body.len >= (size_t)e->o.max_bytes ||
        now - e->cur->first_ms >= e->o.flush_ms) {
        if (submit(e) != 0)
            return report(e, errstr, errlen);
        e->writes = 0;
    } else if (++e->writes >= PUMP_EVERY) {
        e->writes = 0;
        if (pump(e) != 0)
            return report(e, errstr, errlen);
    }
    return 0;
}

static int es_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    es_writer *e = (es_writer *)w;
    if (e->failed || submit(e) != 0)
        return report(e, errstr, errlen);
    /* failpoint: bulks of this flush sent, none acknowledged yet. Counted at every flush that
     * has a bulk out (not after a first acknowledgement: whether a second bulk is still out
     * then depends on timing, and a test crashing at the Nth must get there) */
    if ((e->busy || e->queued) && kp_failpoint("es.mid_flush") != 0) {
        fail(e, "es:%s: failpoint es.mid_flush", e->index);
        return report(e, errstr, errlen);
    }
    while (e->busy || e->queued)
        if (wait_some(e) != 0)
            return report(e, errstr, errlen);
    if (e->dead && e->dead->flush(e->dead, errstr, errlen) != 0)
        return -1;
    return 0;
}

/* The clock's turn: a partial bulk older than flush_ms goes out even if no document follows it
 * (an idle stream's last results), and finished requests are collected. */
static int es_tick(kp_sink_writer *w, char *errstr, size_t errlen)
{
    es_writer *e = (es_writer *)w;
    if (e->failed)
        return report(e, errstr, errlen);
    if (e->cur && e->cur->n > 0 && kp_mono_ms() - e->cur->first_ms >= e->o.flush_ms) {
        e->writes = 0;
        if (submit(e) != 0)
            return report(e, errstr, errlen);
        return 0;
    }
    return pump(e) != 0 ? report(e, errstr, errlen) : 0;
}

static size_t es_stats_json(kp_sink_writer *w, char *buf, size_t len)
{
    es_writer *e = (es_writer *)w;
    int n = snprintf(buf, len,
                     "{\"sent\":%llu,\"acked\":%llu,\"stale\":%llu,\"dups\":%llu,\"failed\":%llu,"
                     "\"dead_lettered\":%llu,\"retries\":%llu,\"items_retried\":%llu,"
                     "\"bulks\":%llu,\"bulk_latency_ms_p50\":%.1f,\"bulk_latency_ms_p99\":%.1f}",
                     (unsigned long long)e->st.sent, (unsigned long long)e->st.acked,
                     (unsigned long long)e->st.stale, (unsigned long long)e->st.dups,
                     (unsigned long long)e->st.failed, (unsigned long long)e->st.dead_lettered,
                     (unsigned long long)e->st.retries, (unsigned long long)e->st.items_retried,
                     (unsigned long long)e->st.bulks, es_hist_quantile(&e->lat, 0.5),
                     es_hist_quantile(&e->lat, 0.99));
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len ? len - 1 : 0;
}

static void free_chain(es_bulk *b)
{
    while (b) {
        es_bulk *next = b->next;
        es_bulk_free(b);
        b = next;
    }
}

static void es_close(kp_sink_writer *w)
{
    es_writer *e = (es_writer *)w;
    for (int i = 0; i < MAX_INFLIGHT; i++) {
        es_slot *s = &e->slots[i];
        if (s->bulk) {
            curl_multi_remove_handle(e->multi, s->easy);
            es_bulk_free(s->bulk);
        }
        if (s->easy)
            curl_easy_cleanup(s->easy);
        free(s->resp.ptr);
        free(s->gz.ptr);
    }
    if (e->multi)
        curl_multi_cleanup(e->multi);
    curl_slist_free_all(e->headers);
    es_bulk_free(e->cur);
    free_chain(e->queue);
    free_chain(e->pool);
    if (e->z_ready)
        deflateEnd(&e->z);
    if (e->dead)
        e->dead->close(e->dead);
    free(e);
}

/* ---- opening --------------------------------------------------------------------------------- */

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    kp_buf *b = arg;
    if (kp_buf_reserve(b, size * n + 1) != 0)
        return 0;
    memcpy(b->ptr + b->len, data, size * n);
    b->len += size * n;
    b->ptr[b->len] = 0;
    return size * n;
}

static int opt_long(const kp_endpoint *ep, const char *key, long def, long min, long max, long *out,
                    char *errstr, size_t errlen)
{
    char v[64];
    *out = def;
    if (!kp_endpoint_get(ep, key, v, sizeof v))
        return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < min || x > max) {
        snprintf(errstr, errlen, "es: option %s must be an integer in [%ld, %ld], not '%s'", key,
                 min, max, v);
        return -1;
    }
    *out = x;
    return 0;
}

static void opt_str(const kp_endpoint *ep, const char *key, const char *def, char *out, size_t len)
{
    if (!kp_endpoint_get(ep, key, out, len))
        snprintf(out, len, "%s", def);
}

static int read_opts(const kp_endpoint *ep, es_opts *o, char *errstr, size_t errlen)
{
    if (opt_long(ep, "max_actions", 1000, 1, 1000000, &o->max_actions, errstr, errlen) ||
        opt_long(ep, "max_bytes", 5l << 20, 1024, 1l << 30, &o->max_bytes, errstr, errlen) ||
        opt_long(ep, "flush_ms", 1000, 0, 86400000, &o->flush_ms, errstr, errlen) ||
        opt_long(ep, "inflight", 2, 1, MAX_INFLIGHT, &o->inflight, errstr, errlen) ||
        opt_long(ep, "gzip", 0, 0, 1, &o->gzip, errstr, errlen) ||
        opt_long(ep, "retries", 20, 1, 1000, &o->retries, errstr, errlen) ||
        opt_long(ep, "backoff_ms", 100, 1, 60000, &o->backoff_ms, errstr, errlen) ||
        opt_long(ep, "retry_timeout_ms", 120000, 0, 86400000, &o->retry_timeout_ms, errstr,
                 errlen) ||
        opt_long(ep, "timeout_ms", 60000, 100, 3600000, &o->timeout_ms, errstr, errlen) ||
        opt_long(ep, "connect_timeout_ms", 10000, 100, 600000, &o->connect_timeout_ms, errstr,
                 errlen) ||
        opt_long(ep, "require_index", 0, 0, 1, &o->require_index, errstr, errlen) ||
        opt_long(ep, "insecure", 0, 0, 1, &o->insecure, errstr, errlen))
        return -1;
    if (!kp_endpoint_get(ep, "url", o->url, sizeof o->url) || !*o->url) {
        snprintf(errstr, errlen,
                 "%s: option url is not set: give the Elasticsearch address as "
                 "es:INDEX?url=http://HOST:9200 or --conf es.url=http://HOST:9200",
                 ep->uri);
        return -1;
    }
    size_t n = strlen(o->url);
    while (n > 0 && o->url[n - 1] == '/')
        o->url[--n] = 0;
    opt_str(ep, "user", "", o->user, sizeof o->user);
    opt_str(ep, "password", "", o->password, sizeof o->password);
    opt_str(ep, "api_key", "", o->api_key, sizeof o->api_key);
    opt_str(ep, "ca", "", o->ca, sizeof o->ca);
    opt_str(ep, "version_type", "external", o->version_type, sizeof o->version_type);
    if (strcmp(o->version_type, "external") && strcmp(o->version_type, "external_gte") &&
        strcmp(o->version_type, "none")) {
        snprintf(errstr, errlen,
                 "es: version_type must be external, external_gte or none, not '%s'",
                 o->version_type);
        return -1;
    }
    char on_error[32];
    opt_str(ep, "on_error", "fail", on_error, sizeof on_error);
    o->dead_letter = !strcmp(on_error, "dead-letter");
    if (!o->dead_letter && strcmp(on_error, "fail")) {
        snprintf(errstr, errlen, "es: on_error must be fail or dead-letter, not '%s'", on_error);
        return -1;
    }
    opt_str(ep, "dead_letter", "", o->dead_uri, sizeof o->dead_uri);
    if (o->dead_letter && !*o->dead_uri) {
        snprintf(errstr, errlen,
                 "es: on_error=dead-letter needs dead_letter=URI (e.g. file:rejected.ndjson)");
        return -1;
    }
    return 0;
}

/* Options every request shares: auth, TLS, timeouts. */
static void common_opts(es_writer *e, CURL *c)
{
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, e->o.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
    if (*e->o.user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, e->o.user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, e->o.password);
    }
    if (*e->o.ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, e->o.ca);
    if (e->o.insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (e->o.gzip)
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
}

/* libcurl's progress callback: a non-zero return aborts the transfer. */
static int abort_if_cancelled(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                              curl_off_t ulnow)
{
    es_writer *e = arg;
    return kp_endpoint_cancelled(e->cancelled, e->cancel_arg);
}

/* One blocking GET of url+path at open time (aborted if the job is cancelled); returns the HTTP
 * status, or -1 with errstr and the libcurl code in *cc_out. */
static long probe_once(es_writer *e, const char *path, CURLcode *cc_out, char *errstr,
                       size_t errlen)
{
    char url[1024], cerr[CURL_ERROR_SIZE] = "";
    snprintf(url, sizeof url, "%s%s", e->o.url, path);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(errstr, errlen, "es: cannot initialise libcurl");
        return -1;
    }
    kp_buf body = {0};
    struct curl_slist *h = NULL;
    common_opts(e, c);
    if (*e->o.api_key) {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: ApiKey %s", e->o.api_key);
        h = curl_slist_append(NULL, auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_if_cancelled);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, e);
    CURLcode cc = curl_easy_perform(c);
    *cc_out = cc;
    long status = -1;
    if (cc != CURLE_OK)
        snprintf(errstr, errlen, "cannot reach Elasticsearch at %s: %s", e->o.url,
                 *cerr ? cerr : curl_easy_strerror(cc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status == 401 || status == 403)
        snprintf(errstr, errlen,
                 "Elasticsearch at %s refused the credentials (set user/password or api_key)",
                 e->o.url);
    else if (status >= 0 && (status < 200 || status >= 300) && status != 404)
        snprintf(errstr, errlen, "Elasticsearch at %s answered GET %s with HTTP %ld: %.200s",
                 e->o.url, *path ? path : "/", status, body.ptr ? body.ptr : "");
    free(body.ptr);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return status;
}

/* probe_once, tried again (3 attempts, 200 ms apart) when a connection was made and then dropped:
 * a node restarting or a proxy recycling connections is not a reason to fail the job. A refused
 * connection, a timeout or an HTTP answer is final, so an unreachable node fails fast. */
static long probe(es_writer *e, const char *path, char *errstr, size_t errlen)
{
    for (int attempt = 1;; attempt++) {
        CURLcode cc = CURLE_OK;
        long status = probe_once(e, path, &cc, errstr, errlen);
        int dropped = cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR || cc == CURLE_GOT_NOTHING;
        if (!dropped || attempt == 3 || kp_endpoint_cancelled(e->cancelled, e->cancel_arg))
            return status;
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static int setup_curl(es_writer *e, char *errstr, size_t errlen)
{
    e->headers = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    e->headers = curl_slist_append(e->headers, "Expect:"); /* no 100-continue round trip */
    if (e->o.gzip)
        e->headers = curl_slist_append(e->headers, "Content-Encoding: gzip");
    if (*e->o.api_key) {
        char h[600];
        snprintf(h, sizeof h, "Authorization: ApiKey %s", e->o.api_key);
        e->headers = curl_slist_append(e->headers, h);
    }
    e->multi = curl_multi_init();
    if (!e->headers || !e->multi) {
        snprintf(errstr, errlen, "es: cannot initialise libcurl");
        return -1;
    }
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)e->o.inflight + 2);
    char url[1024];
    snprintf(url, sizeof url,
             "%s/_bulk?filter_path=errors,items.*.status,items.*.error,items.*._id", e->o.url);
    for (int i = 0; i < e->o.inflight; i++) {
        es_slot *s = &e->slots[i];
        if (!(s->easy = curl_easy_init())) {
            snprintf(errstr, errlen, "es: cannot initialise libcurl");
            return -1;
        }
        common_opts(e, s->easy);
        curl_easy_setopt(s->easy, CURLOPT_URL, url);
        curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, e->o.timeout_ms);
        curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->curl_err);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, &s->resp);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
    }
    return 0;
}

static kp_sink_writer *open_es_sink(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    es_writer *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    e->w = (kp_sink_writer){.write = es_write,
                            .flush = es_flush,
                            .close = es_close,
                            .stats = es_stats_json,
                            .tick = es_tick};
    e->cancelled = ep->cancelled;
    e->cancel_arg = ep->cancel_arg;
    kp_endpoint_target(ep, e->index, sizeof e->index);
    /* es:ALIAS?index=ALIAS-vN: the binding names the alias readers use, the jobmanager assigns
     * the physical index this job version writes (docs/bluegreen.md) */
    char physical[sizeof e->index];
    if (kp_endpoint_get(ep, "index", physical, sizeof physical) && *physical)
        memcpy(e->index, physical, sizeof e->index);
    if (!*e->index) {
        snprintf(errstr, errlen, "'%s' names no index: use es:INDEX?url=http://HOST:9200", ep->uri);
        goto error;
    }
    if (read_opts(ep, &e->o, errstr, errlen) != 0)
        goto error;
    if (es_action_init(&e->action, e->index, e->o.version_type) != 0) {
        snprintf(errstr, errlen, "es: index name '%s' is too long", e->index);
        goto error;
    }
    if (ep->epoch < 0 || ep->epoch >= (int64_t)1 << 31) {
        snprintf(errstr, errlen,
                 "es:%s: fencing epoch %lld out of range [0, 2^31): document versions are "
                 "epoch << 32 | seq and must stay below 2^63; the epoch grows by one per "
                 "attempt (kappa run --local: <state-dir>/epoch; the jobmanager: its state dir), "
                 "so lowering it makes new writes stale until the index is rebuilt",
                 e->index, (long long)ep->epoch);
        goto error;
    }
    e->epoch = (uint32_t)ep->epoch;
    e->rng = (uint64_t)kp_mono_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)e ^
             (uint64_t)ep->subtask;
    if (!e->rng)
        e->rng = 1;
    pthread_once(&curl_once, curl_init_once);
    if (setup_curl(e, errstr, errlen) != 0)
        goto error;
    long status = probe(e, "", errstr, errlen);
    if (status < 200 || status >= 300) {
        if (status == 404)
            snprintf(errstr, errlen, "Elasticsearch at %s answered GET / with HTTP 404", e->o.url);
        goto error;
    }
    if (e->o.require_index) {
        char path[300];
        snprintf(path, sizeof path, "/%s", e->index);
        status = probe(e, path, errstr, errlen);
        if (status == 404)
            snprintf(errstr, errlen,
                     "index '%s' does not exist at %s (require_index=1): create it, or drop "
                     "require_index to let Elasticsearch create it",
                     e->index, e->o.url);
        if (status < 200 || status >= 300)
            goto error;
    }
    if (e->o.dead_letter) {
        const kp_connector *c = kp_connector_find(e->o.dead_uri);
        kp_endpoint dep = *ep;
        dep.uri = e->o.dead_uri;
        char derr[512] = "";
        if (!c || !c->open_sink) {
            snprintf(errstr, errlen, "es: dead_letter '%s' is not a sink URI", e->o.dead_uri);
            goto error;
        }
        if (!(e->dead = c->open_sink(&dep, derr, sizeof derr))) {
            snprintf(errstr, errlen, "es: cannot open dead_letter '%s': %s", e->o.dead_uri, derr);
            goto error;
        }
    }
    return &e->w;
error:
    es_close(&e->w);
    return NULL;
}

const kp_connector kp_es_connector = {"es", NULL, open_es_sink};
