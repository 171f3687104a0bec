/* Kafka as a source: `kafka:TOPIC?brokers=H:P&start=...` (see docs/architecture.md,
 * "Connectors"), and the `kafka` connector entry that also carries the sink (kafka_sink.c).
 *
 * Partitions are assigned by hand, never through a consumer-group rebalance: subtask i of p
 * reads the partitions with partition % p == i (rd_kafka_assign), so which subtask reads what
 * depends only on the topic and the parallelism — what checkpoints and per-partition
 * watermarks need. The consumer group is used only to publish committed offsets for lag
 * monitoring (commit()). Every few seconds poll() looks the topic up again and adds
 * partitions created since (read from the earliest offset, as Flink does).
 *
 * Start positions are resolved to concrete offsets at open — earliest / latest / a timestamp
 * with one ListOffsets request, `group` with one OffsetFetch — so offsets() is meaningful
 * before the first record arrives and `stop_at=end` knows where each partition ends: the
 * high watermark (the last stable offset under read_committed) seen at open.
 *
 * Every partition keeps its own fetch queue (not forwarded to the consumer queue), so
 * librdkafka prefetches at most queued.min.messages per partition and poll() decides which
 * partitions to read: round robin over those the source has not held back. That is what
 * makes the engine's per-partition watermark alignment work — holding a partition back
 * really stops it, instead of its prefetched hours of event time still pouring out of a
 * shared queue. poll() hands out records pointing into librdkafka's message buffers; those
 * messages are kept until the next poll() and destroyed then. Nothing is copied and nothing allocated per record.
 * Broker outages are not errors: librdkafka reconnects and fetching resumes; each kind of
 * problem is logged once. Authorisation failures, a deleted topic and librdkafka's fatal
 * errors end the source with KP_POLL_ERROR.
 *
 * Memory. What librdkafka reads ahead is outside the engine's backpressure, so it is bounded
 * by one budget per source subtask: option `memory_mb` (URI `?memory_mb=`, or `--conf
 * kafka.memory_mb=`), default 64 MiB, split over the n partitions the subtask owns at open:
 *   fetch.max.bytes            = budget / 64, at least 1 MiB: it caps what one fetch adds to
 *                                  the partitions' queues beyond queued.min.messages (the
 *                                  broker fills a partition up to max.partition.fetch.bytes),
 *                                  and each message costs an op of 304 bytes besides its
 *                                  bytes, which stay in the response buffer (docs/state.md)
 *   per partition              K = budget / 2 / n, of which
 *     queued.max.messages.kbytes = K / 2     (its read-ahead queue)
 *     max.partition.fetch.bytes  = K / 2     (one fetch can overshoot the queue by that much)
 *     queued.min.messages        = K / 2 / 256 (message count, for librdkafka's 304 bytes of
 *                                  bookkeeping per message, kafka_mem.h), at least 16
 * and the rest of the budget for that per-message bookkeeping and librdkafka's own
 * buffers. The figures assume messages of 100 bytes or more on average; smaller ones cost
 * proportionally more bookkeeping. Partitions found later by discovery get the same share
 * each (the budget grows with them). receive.message.max.bytes (librdkafka's largest response,
 * 100 MB by default) is budget / 4 (at most 64 MiB) plus 1 MiB: room for the record batch a
 * broker returns beyond fetch.max.bytes (its message.max.bytes, 1 MiB by default), and for an
 * rdkafka.fetch.max.bytes override up to budget / 4 (librdkafka refuses a smaller one). What the fetch
 * queues hold is sampled once a second from librdkafka's statistics (kafka_mem.h); the peak
 * is --stats' Kafka read-ahead row. tests/integration/test_kafka_connectors.c measures the
 * process's RSS against it with 32 partitions and a stalled sink. rdkafka.<prop> options
 * override any of these. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/clock.h"
#include "kafka_common.h"
#include "kafka_mem.h"

#define REFRESH_MS      5000 /* partition discovery period */
#define REFRESH_WAIT_MS 200  /* how long one discovery may hold up poll() */
#define RESOLVE_MS      KP_KAFKA_OPEN_TIMEOUT_MS

typedef struct kpart {
    int32_t id;
    int64_t next;        /* offset of the next record to hand out */
    int64_t stop;        /* stop_at=end: the end seen at open; INT64_MAX otherwise */
    int done;            /* stop_at=end: reached stop (paused) */
    int held_back;       /* alignment: the source asked us not to hand out its records for now */
    int at_end;          /* the last event of this partition was "end of partition" */
    int64_t end_high;    /* the high watermark when that event was taken */
    rd_kafka_queue_t *q; /* its own fetch queue, not forwarded to the consumer queue */
} kpart;

typedef struct kafka_reader {
    kp_source_reader r;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_topic_t *rkt; /* for metadata refreshes */
    kp_kafka_log log;
    char topic[256], brokers[512];
    int subtask, parallelism;
    int stop_at_end;
    int topic_partitions; /* partitions the topic had at the last look */
    int missing;          /* consecutive lookups that said the topic is gone */
    long long refreshed_ms;
    kpart *parts; /* owned partitions, by increasing id */
    int nparts, parts_cap;
    int *by_id; /* partition id -> index into parts, -1 if not ours */
    int by_id_cap;
    int ndone;
    rd_kafka_message_t **held; /* handed out by the last poll, destroyed by the next */
    int nheld, held_cap;
    int rr;              /* round-robin start among partitions */
    long long refetched; /* records skipped because they were handed out already */
    long long records, bytes;
    long long readahead_peak; /* the most bytes in the fetch queues (kafka_mem.h) */
} kafka_reader;

/* ---- start positions ----------------------------------------------------------------------- */

typedef enum {
    START_EARLIEST,
    START_LATEST,
    START_TIMESTAMP,
    START_GROUP,
    START_OFFSETS
} start_mode;

typedef struct start_spec {
    start_mode mode;
    int64_t ts;          /* START_TIMESTAMP */
    int fallback_latest; /* START_GROUP / START_OFFSETS: partitions without a position */
    const char *offsets; /* START_OFFSETS: "P=O,P=O" */
} start_spec;

static int parse_start(const kp_endpoint *ep, start_spec *s, char *buf, size_t len, char *errstr,
                       size_t errlen)
{
    char fb[32];
    memset(s, 0, sizeof *s);
    const char *v = kp_endpoint_get(ep, "start", buf, len);
    const char *f = kp_endpoint_get(ep, "fallback", fb, sizeof fb);
    if (f && strcmp(f, "earliest") && strcmp(f, "latest")) {
        snprintf(errstr, errlen, "fallback=%s: use fallback=earliest or fallback=latest", f);
        return -1;
    }
    s->fallback_latest = f && !strcmp(f, "latest");
    char *end;
    if (!v || !strcmp(v, "earliest"))
        s->mode = START_EARLIEST;
    else if (!strcmp(v, "latest"))
        s->mode = START_LATEST;
    else if (!strcmp(v, "group"))
        s->mode = START_GROUP;
    else if (!strncmp(v, "timestamp:", 10) && (s->ts = strtoll(v + 10, &end, 10)) >= 0 &&
             end != v + 10 && !*end)
        s->mode = START_TIMESTAMP;
    else if (!strncmp(v, "offsets:", 8)) {
        s->mode = START_OFFSETS;
        s->offsets = v + 8;
    } else {
        snprintf(errstr, errlen,
                 "start=%s: use earliest, latest, timestamp:MS, group or offsets:P=O,P=O", v);
        return -1;
    }
    return 0;
}

/* Explicit offset of partition p in "P=O,P=O", or -1 if absent; -2 with errstr if malformed. */
static int64_t explicit_offset(const char *list, int32_t p, char *errstr, size_t errlen)
{
    const char *s = list;
    while (*s) {
        char *end;
        long long part = strtoll(s, &end, 10);
        if (end == s || *end != '=')
            goto bad;
        s = end + 1;
        long long off = strtoll(s, &end, 10);
        if (end == s || off < 0 || (*end && *end != ','))
            goto bad;
        if (part == p)
            return off;
        s = *end ? end + 1 : end;
    }
    return -1;
bad:
    snprintf(errstr, errlen, "start=offsets:%s: expected offsets:PARTITION=OFFSET,...", list);
    return -2;
}

/* ListOffsets for every partition of `l` (offset field = timestamp, or -1 latest / -2
 * earliest); results replace the offsets (-1 when no record is at or after the timestamp). */
static int list_offsets(kafka_reader *k, rd_kafka_topic_partition_list_t *l, char *errstr,
                        size_t errlen)
{
    if (l->cnt == 0)
        return 0;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(k->rk, l, RESOLVE_MS);
    for (int i = 0; !err && i < l->cnt; i++)
        err = l->elems[i].err;
    if (err) {
        snprintf(errstr, errlen, "cannot look up offsets of topic '%s' at %s: %s", k->topic,
                 k->brokers, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Sets parts[].next (and .stop) for the owned partitions as the start spec says. */
static int resolve_starts(kafka_reader *k, const start_spec *s, char *errstr, size_t errlen)
{
    int n = k->nparts, rc = -1;
    rd_kafka_topic_partition_list_t *ends = rd_kafka_topic_partition_list_new(n);
    rd_kafka_topic_partition_list_t *query = rd_kafka_topic_partition_list_new(n);
    int64_t *want = calloc((size_t)n + 1, sizeof *want);
    if (!want)
        goto out;
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(ends, k->topic, k->parts[i].id)->offset = -1;
    if (list_offsets(k, ends, errstr, errlen) != 0)
        goto out;
    int64_t fallback = s->fallback_latest ? -1 : -2;
    if (s->mode == START_GROUP) {
        rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(c, k->topic, k->parts[i].id);
        rd_kafka_resp_err_t err = rd_kafka_committed(k->rk, c, RESOLVE_MS);
        for (int i = 0; i < n && !err; i++)
            want[i] = c->elems[i].offset >= 0 ? c->elems[i].offset : fallback;
        rd_kafka_topic_partition_list_destroy(c);
        if (err) {
            snprintf(errstr, errlen, "cannot read the committed offsets of the group: %s",
                     rd_kafka_err2str(err));
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        switch (s->mode) {
        case START_EARLIEST:
            want[i] = -2;
            break;
        case START_LATEST:
            want[i] = -1;
            break;
        case START_TIMESTAMP:
            want[i] = s->ts;
            break;
        case START_OFFSETS:
            want[i] = explicit_offset(s->offsets, k->parts[i].id, errstr, errlen);
            if (want[i] == -2)
                goto out;
            if (want[i] == -1)
                want[i] = fallback;
            break;
        case START_GROUP:
            break;
        }
    }
    /* concrete offsets for the logical ones (earliest, latest, timestamps) in one request;
     * explicit and committed offsets are used as they are */
    for (int i = 0; i < n; i++)
        if (want[i] < 0 || s->mode == START_TIMESTAMP)
            rd_kafka_topic_partition_list_add(query, k->topic, k->parts[i].id)->offset = want[i];
    if (list_offsets(k, query, errstr, errlen) != 0)
        goto out;
    for (int i = 0, j = 0; i < n; i++) {
        int64_t end = ends->elems[i].offset;
        if (want[i] < 0 || s->mode == START_TIMESTAMP) {
            int64_t got = query->elems[j++].offset;
            want[i] = got >= 0 ? got : end; /* no record at/after the timestamp: the end */
        }
        k->parts[i].next = want[i];
        k->parts[i].stop = k->stop_at_end ? end : INT64_MAX;
    }
    rc = 0;
out:
    free(want);
    rd_kafka_topic_partition_list_destroy(ends);
    rd_kafka_topic_partition_list_destroy(query);
    return rc;
}

/* A restored source (kp_endpoint.restore_offsets): the checkpoint's position of an owned
 * partition wins over the start mode; partitions the checkpoint did not know start as the
 * start mode says. Their stop offsets (stop_at=end) stay those resolved at open. */
static void restore_positions(kafka_reader *k, const kp_endpoint *ep)
{
    for (int i = 0; i < ep->nrestore_offsets; i++) {
        const kp_offset *o = &ep->restore_offsets[i];
        if (o->partition >= 0 && o->partition < k->by_id_cap && k->by_id[o->partition] >= 0)
            k->parts[k->by_id[o->partition]].next = o->offset;
    }
}

/* ---- partitions ---------------------------------------------------------------------------- */

static int own(kafka_reader *k, int32_t id, char *errstr, size_t errlen)
{
    if (id >= k->by_id_cap) {
        int cap = k->by_id_cap ? k->by_id_cap : 16;
        while (cap <= id)
            cap *= 2;
        int *b = realloc(k->by_id, (size_t)cap * sizeof *b);
        if (!b)
            goto oom;
        for (int i = k->by_id_cap; i < cap; i++)
            b[i] = -1;
        k->by_id = b;
        k->by_id_cap = cap;
    }
    if (k->nparts == k->parts_cap) {
        int cap = k->parts_cap ? 2 * k->parts_cap : 16;
        kpart *p = realloc(k->parts, (size_t)cap * sizeof *p);
        if (!p)
            goto oom;
        k->parts = p;
        k->parts_cap = cap;
    }
    k->by_id[id] = k->nparts;
    k->parts[k->nparts++] = (kpart){.id = id, .next = -1, .stop = INT64_MAX};
    return 0;
oom:
    snprintf(errstr, errlen, "out of memory");
    return -1;
}

/* Assigns parts[from..nparts) at their .next offsets (incremental: the partitions already
 * assigned keep their fetch positions). */
static int assign_from(kafka_reader *k, int from, char *errstr, size_t errlen)
{
    for (int i = from; i < k->nparts; i++) {
        /* before assigning, so no message is ever forwarded to the consumer queue */
        kpart *p = &k->parts[i];
        p->q = rd_kafka_queue_get_partition(k->rk, k->topic, p->id);
        if (!p->q) {
            snprintf(errstr, errlen, "cannot get the queue of '%s' partition %d", k->topic,
                     (int)p->id);
            return -1;
        }
        rd_kafka_queue_forward(p->q, NULL);
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(k->nparts - from);
    for (int i = from; i < k->nparts; i++) {
        kpart *p = &k->parts[i];
        if (p->next >= p->stop) {
            p->done = 1;
            k->ndone++;
            continue; /* stop_at=end and nothing to read */
        }
        rd_kafka_topic_partition_list_add(l, k->topic, p->id)->offset =
            p->next >= 0 ? p->next : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_error_t *e = l->cnt ? rd_kafka_incremental_assign(k->rk, l) : NULL;
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(errstr, errlen, "cannot assign partitions of '%s': %s", k->topic,
                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    return 0;
}

/* Partition discovery: adds partitions the topic gained (from the earliest offset). A topic
 * that two lookups in a row report as gone ends the source. */
static int refresh(kafka_reader *k, char *errstr, size_t errlen)
{
    int n = kp_kafka_partition_count(k->rk, k->rkt, REFRESH_WAIT_MS);
    if (n < 0)
        return 0; /* brokers busy or down: try again later */
    if (n == 0) {
        if (++k->missing >= 2) {
            snprintf(errstr, errlen, "topic '%s' no longer exists at %s", k->topic, k->brokers);
            return -1;
        }
        return 0;
    }
    k->missing = 0;
    if (n <= k->topic_partitions || k->stop_at_end)
        return 0; /* a bounded read stays on the partitions it started with */
    int from = k->nparts;
    for (int32_t id = k->topic_partitions; id < n; id++)
        if (id % k->parallelism == k->subtask && own(k, id, errstr, errlen) != 0)
            return -1;
    k->topic_partitions = n;
    if (k->nparts > from) {
        fprintf(stderr, "kappa: %s: %d new partition(s), reading them from the earliest offset\n",
                k->log.who, k->nparts - from);
        if (assign_from(k, from, errstr, errlen) != 0)
            return -1;
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------- */

static void release_held(kafka_reader *k)
{
    for (int i = 0; i < k->nheld; i++)
        rd_kafka_message_destroy(k->held[i]);
    k->nheld = 0;
}

static void mark_done(kafka_reader *k, kpart *p)
{
    if (p->done)
        return;
    p->done = 1;
    k->ndone++;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, k->topic, p->id);
    rd_kafka_pause_partitions(k->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

static int is_fatal(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        return 1;
    default:
        return 0;
    }
}

/* One consumed message or event: 1 = a record for the caller, 0 = nothing, -1 = fatal. */
static int take(kafka_reader *k, rd_kafka_message_t *m, kp_raw *out, char *errstr, size_t errlen)
{
    kpart *p = m->partition >= 0 && m->partition < k->by_id_cap && k->by_id[m->partition] >= 0
                   ? &k->parts[k->by_id[m->partition]]
                   : NULL;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        int64_t low = -1;
        if (p) {
            p->at_end = 1;
            p->end_high = -1;
            rd_kafka_get_watermark_offsets(k->rk, k->topic, p->id, &low, &p->end_high);
        }
        if (p && k->stop_at_end && m->offset >= p->stop)
            mark_done(k, p);
        return 0;
    }
    if (m->err) {
        char what[512];
        snprintf(what, sizeof what, "topic '%s' partition %d: %s", k->topic, (int)m->partition,
                 rd_kafka_message_errstr(m));
        if (is_fatal(m->err)) {
            snprintf(errstr, errlen, "kafka: %s", what);
            return -1;
        }
        kp_kafka_log_once(&k->log, m->err, what);
        return 0;
    }
    if (!p || p->done || m->offset >= p->stop)
        return 0; /* beyond stop_at=end, or a partition we no longer own */
    if (p->next >= 0 && m->offset < p->next) {
        /* already handed out: librdkafka re-fetched after a broker restart or an offset
         * reset. Offsets are the source of truth, so each record goes out exactly once. */
        k->refetched++;
        return 0;
    }
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    *out = (kp_raw){.key = {m->key ? (const char *)m->key : "", m->key_len},
                    .value = {m->payload ? (const char *)m->payload : "", m->len},
                    .ts = tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0 ? ts : KP_TIME_MIN,
                    .partition = m->partition,
                    .offset = m->offset};
    p->next = m->offset + 1;
    p->at_end = 0;
    if (p->next >= p->stop)
        mark_done(k, p);
    k->records++;
    k->bytes += (long long)(m->key_len + m->len);
    return 1;
}

/* Collects up to `max` messages into held: from the consumer queue (errors, events), then
 * round robin from the partition queues not held back, each giving at most its share so
 * partitions interleave finely. Waits up to timeout_ms, in short naps, for the first one. */
static ssize_t gather(kafka_reader *k, int max, int timeout_ms)
{
    long long deadline = kp_mono_ms() + timeout_ms;
    for (;;) {
        ssize_t got = rd_kafka_consume_batch_queue(k->q, 0, k->held, (size_t)max);
        if (got < 0)
            return -1;
        int active = 0;
        for (int i = 0; i < k->nparts; i++)
            active += k->parts[i].q && !k->parts[i].done && !k->parts[i].held_back;
        int share = active ? (max + active - 1) / active : 0;
        for (int j = 0; j < k->nparts && got < max; j++) {
            kpart *p = &k->parts[(k->rr + j) % k->nparts];
            if (!p->q || p->done || p->held_back)
                continue;
            size_t want = (size_t)(max - got) < (size_t)share ? (size_t)(max - got) : (size_t)share;
            ssize_t n = rd_kafka_consume_batch_queue(p->q, 0, k->held + got, want);
            if (n > 0)
                got += n;
        }
        k->rr = k->nparts ? (k->rr + 1) % k->nparts : 0;
        long long left = deadline - kp_mono_ms();
        if (got > 0 || left <= 0)
            return got;
        rd_kafka_poll(k->rk, 0); /* serve callbacks while waiting */
        struct timespec nap = {0, (left < 2 ? left : 2) * 1000000L};
        nanosleep(&nap, NULL);
    }
}

static kp_poll_rc kafka_poll(kp_source_reader *r, kp_raw *out, int max, int *n, int timeout_ms,
                             char *errstr, size_t errlen)
{
    kafka_reader *k = (kafka_reader *)r;
    *n = 0;
    release_held(k); /* the caller is done with the previous batch */
    if (k->stop_at_end && k->ndone == k->nparts)
        return KP_POLL_EOF;
    long long now = kp_mono_ms();
    if (now - k->refreshed_ms >= REFRESH_MS) {
        k->refreshed_ms = now;
        if (refresh(k, errstr, errlen) != 0)
            return KP_POLL_ERROR;
    }
    if (max > k->held_cap) {
        rd_kafka_message_t **h = realloc(k->held, (size_t)max * sizeof *h);
        if (!h) {
            snprintf(errstr, errlen, "out of memory");
            return KP_POLL_ERROR;
        }
        k->held = h;
        k->held_cap = max;
    }
    ssize_t got = gather(k, max, timeout_ms);
    if (got < 0) {
        snprintf(errstr, errlen, "kafka: %s", rd_kafka_err2str(rd_kafka_last_error()));
        return KP_POLL_ERROR;
    }
    k->nheld = (int)got;
    for (int i = 0; i < k->nheld; i++) {
        int rc = take(k, k->held[i], &out[*n], errstr, errlen);
        if (rc < 0)
            return KP_POLL_ERROR;
        *n += rc;
    }
    if (kp_kafka_log_fatal(&k->log)) {
        char why[512];
        rd_kafka_resp_err_t err = rd_kafka_fatal_error(k->rk, why, sizeof why);
        snprintf(errstr, errlen, "kafka: fatal error: %s: %s", rd_kafka_err2name(err), why);
        return KP_POLL_ERROR;
    }
    if (*n > 0)
        return KP_POLL_RECORDS;
    if (k->stop_at_end && k->ndone == k->nparts)
        return KP_POLL_EOF;
    return KP_POLL_EMPTY;
}

/* Alignment pause/resume of one owned partition; a partition that reached stop_at=end stays
 * paused. librdkafka resumes from the position of the last record handed out, so records
 * prefetched while paused are neither lost nor repeated. */
/* Alignment: holds one owned partition back (its records stay in its own queue, and
 * librdkafka stops fetching it once queued.min.messages are waiting) or releases it. A
 * partition that reached stop_at=end is finished and cannot be held back. */
static int kafka_pause(kp_source_reader *r, int32_t partition, int paused)
{
    kafka_reader *k = (kafka_reader *)r;
    if (partition < 0 || partition >= k->by_id_cap || k->by_id[partition] < 0)
        return -1;
    kpart *p = &k->parts[k->by_id[partition]];
    if (p->done)
        return -1;
    p->held_back = paused;
    return 0;
}

static const kpart *owned(const kafka_reader *k, int32_t partition)
{
    if (partition < 0 || partition >= k->by_id_cap || k->by_id[partition] < 0)
        return NULL;
    return &k->parts[k->by_id[partition]];
}

/* Caught up with the log end right now: the position reached the high watermark the latest
 * fetch response reported (librdkafka's cached value, no request), or librdkafka said "end of
 * partition" since the last record and the high watermark has not moved since (that covers
 * read_committed, whose end is the last stable offset, and transaction markers after the
 * last record). Before any fetch answered, the end is unknown: not caught up. */
static int kafka_caught_up(kp_source_reader *r, int32_t partition)
{
    kafka_reader *k = (kafka_reader *)r;
    const kpart *p = owned(k, partition);
    if (!p)
        return 0;
    if (p->done)
        return 1;
    int64_t low = -1, high = -1;
    if (rd_kafka_get_watermark_offsets(k->rk, k->topic, p->id, &low, &high) != 0 || high < 0)
        return 0;
    return (p->next >= 0 && p->next >= high) || (p->at_end && high <= p->end_high);
}

/* Ended: stop_at=end and the position reached the end captured at open. */
static int kafka_ended(kp_source_reader *r, int32_t partition)
{
    kafka_reader *k = (kafka_reader *)r;
    const kpart *p = owned(k, partition);
    return p && k->stop_at_end && p->done;
}

static int kafka_partitions(kp_source_reader *r, int32_t *out, int max)
{
    kafka_reader *k = (kafka_reader *)r;
    int n = 0;
    for (int i = 0; i < k->nparts && n < max; i++)
        out[n++] = k->parts[i].id;
    return n;
}

static int kafka_offsets(kp_source_reader *r, kp_offset *out, int max)
{
    kafka_reader *k = (kafka_reader *)r;
    int n = 0;
    for (int i = 0; i < k->nparts && n < max; i++)
        out[n++] = (kp_offset){k->parts[i].id, k->parts[i].next};
    return n;
}

static int kafka_commit(kp_source_reader *r, const kp_offset *offs, int n, char *errstr,
                        size_t errlen)
{
    kafka_reader *k = (kafka_reader *)r;
    if (n <= 0)
        return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        if (offs[i].offset >= 0)
            rd_kafka_topic_partition_list_add(l, k->topic, offs[i].partition)->offset =
                offs[i].offset;
    rd_kafka_resp_err_t err = l->cnt ? rd_kafka_commit(k->rk, l, 1) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        snprintf(errstr, errlen, "committing offsets of '%s': %s", k->topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static size_t kafka_stats(kp_source_reader *r, char *buf, size_t len)
{
    kafka_reader *k = (kafka_reader *)r;
    size_t o = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + o, o < len ? len - o : 0, __VA_ARGS__);                            \
        o += w_ > 0 ? (size_t)w_ : 0;                                                              \
    } while (0)
    PUT("{\"records\":%lld,\"bytes\":%lld,\"refetched\":%lld,\"partitions\":[", k->records,
        k->bytes, k->refetched);
    for (int i = 0; i < k->nparts; i++) {
        int64_t low = -1, high = -1;
        rd_kafka_get_watermark_offsets(k->rk, k->topic, k->parts[i].id, &low, &high);
        int64_t lag = high >= 0 && k->parts[i].next >= 0 ? high - k->parts[i].next : -1;
        PUT("%s{\"partition\":%d,\"offset\":%" PRId64 ",\"high\":%" PRId64 ",\"lag\":%" PRId64 "}",
            i ? "," : "", (int)k->parts[i].id, k->parts[i].next, high, lag < 0 ? 0 : lag);
    }
    PUT("]}");
#undef PUT
    if (len)
        buf[o < len ? o : len - 1] = 0;
    return o < len ? o : (len ? len - 1 : 0);
}

static void kafka_reader_close(kp_source_reader *r)
{
    kafka_reader *k = (kafka_reader *)r;
    release_held(k);
    for (int i = 0; i < k->nparts; i++)
        if (k->parts[i].q)
            rd_kafka_queue_destroy(k->parts[i].q);
    if (k->rkt)
        rd_kafka_topic_destroy(k->rkt);
    if (k->q)
        rd_kafka_queue_destroy(k->q);
    if (k->rk) {
        rd_kafka_consumer_close(k->rk); /* waits for outstanding commits */
        rd_kafka_destroy(k->rk);
    }
    kp_kafka_log_destroy(&k->log);
    free(k->held);
    free(k->parts);
    free(k->by_id);
    free(k);
}

/* Consumer settings. Each partition reads ahead into its own queue, from which poll() takes
 * round robin (the source holds partitions back to keep them aligned in event time), so the
 * consumer never waits on the network in bulk; how far it reads ahead is set by budget(). */
static int configure(const kp_endpoint *ep, rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
    char group[256], iso[64];
    if (!kp_endpoint_get(ep, "group", group, sizeof group))
        snprintf(group, sizeof group, "kappa-%s", ep->name ? ep->name : "source");
    if (!kp_endpoint_get(ep, "isolation", iso, sizeof iso))
        snprintf(iso, sizeof iso, "read_committed");
    if (strcmp(iso, "read_committed") && strcmp(iso, "read_uncommitted")) {
        snprintf(errstr, errlen, "isolation=%s: use read_committed or read_uncommitted", iso);
        return -1;
    }
    const char *kv[][2] = {
        {"group.id", group},
        {"isolation.level", iso},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"}, /* a position that fell out of retention */
        {"enable.partition.eof", "true"},  /* caught_up(), and stop_at=end */
        {"fetch.wait.max.ms", "100"},
        {"fetch.error.backoff.ms", "100"},
        {"topic.metadata.refresh.interval.ms", "5000"},
        {"reconnect.backoff.max.ms", "1000"},
        {"check.crcs", "false"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (kp_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, errlen) != 0)
            return -1;
    return kp_kafka_conf_passthrough(ep, conf, errstr, errlen);
}

/* The read-ahead limits from the subtask's memory budget split over its `nparts` partitions
 * (see the first comment), then the user's rdkafka.* overrides again. */
static int budget(const kp_endpoint *ep, rd_kafka_conf_t *conf, long long bytes, int nparts,
                  char *errstr, size_t errlen)
{
    long long part = bytes / 2 / (nparts > 0 ? nparts : 1); /* K */
    long long queue_kb = part / 2 / 1024, fetch_part = part / 2, msgs = part / 2 / 256;
    long long fetch = bytes / 64 > 1ll << 20 ? bytes / 64 : 1ll << 20;
    char v[5][24];
    snprintf(v[0], sizeof v[0], "%lld", queue_kb > 1 ? queue_kb : 1);
    snprintf(v[1], sizeof v[1], "%lld", fetch_part > 1024 ? fetch_part : 1024);
    snprintf(v[2], sizeof v[2], "%lld", msgs > 16 ? msgs : 16);
    long long resp = bytes / 4 < 64ll << 20 ? bytes / 4 : 64ll << 20; /* an rdkafka.* override */
    snprintf(v[3], sizeof v[3], "%lld", fetch < 64ll << 20 ? fetch : 64ll << 20);
    snprintf(v[4], sizeof v[4], "%lld", resp + (1ll << 20));
    if (kp_kafka_conf_set(conf, "queued.max.messages.kbytes", v[0], errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "max.partition.fetch.bytes", v[1], errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "queued.min.messages", v[2], errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "fetch.max.bytes", v[3], errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "receive.message.max.bytes", v[4], errstr, errlen) != 0 ||
        kp_kafka_conf_set(conf, "statistics.interval.ms", "1000", errstr, errlen) != 0)
        return -1;
    return kp_kafka_conf_passthrough(ep, conf, errstr, errlen);
}

/* librdkafka's statistics, on the thread that polls (the source's): the read-ahead's peak.
 * The opaque is the reader's log (kafka_common.c). */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    kafka_reader *k = (kafka_reader *)(void *)((char *)opaque - offsetof(kafka_reader, log));
    long long held = kp_kafka_stats_fetchq_bytes(json, len);
    if (held > k->readahead_peak)
        k->readahead_peak = held;
    return 0; /* librdkafka frees json */
}

static size_t kafka_memory_peak(kp_source_reader *r)
{
    return (size_t)((kafka_reader *)r)->readahead_peak;
}

/* How many partitions of the topic subtask `subtask` of `p` owns. */
static int owned_count(int partitions, int subtask, int p)
{
    return subtask < partitions ? (partitions - 1 - subtask) / p + 1 : 0;
}

/* The topic's partition count, looked up with a short-lived consumer on a copy of conf: the
 * read-ahead limits depend on it and librdkafka takes them only at creation. */
static int lookup_partitions(kafka_reader *k, const kp_endpoint *ep, rd_kafka_conf_t *conf,
                             char *errstr, size_t errlen)
{
    char why[512];
    rd_kafka_conf_t *copy = rd_kafka_conf_dup(conf);
    rd_kafka_t *rk = copy ? rd_kafka_new(RD_KAFKA_CONSUMER, copy, why, sizeof why) : NULL;
    if (!rk) {
        snprintf(errstr, errlen, "cannot create a Kafka consumer: %s", copy ? why : "no memory");
        if (copy)
            rd_kafka_conf_destroy(copy);
        return -1;
    }
    int rc = kp_kafka_wait_topic(rk, &k->log, ep, k->brokers, k->topic, &k->topic_partitions,
                                 errstr, errlen);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return rc;
}

static kp_source_reader *open_kafka_source(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    kafka_reader *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    k->r = (kp_source_reader){.poll = kafka_poll,
                              .close = kafka_reader_close,
                              .partitions = kafka_partitions,
                              .offsets = kafka_offsets,
                              .commit = kafka_commit,
                              .stats = kafka_stats,
                              .pause = kafka_pause,
                              .caught_up = kafka_caught_up,
                              .ended = kafka_ended,
                              .memory_peak = kafka_memory_peak};
    k->subtask = ep->subtask;
    k->parallelism = ep->parallelism > 0 ? ep->parallelism : 1;
    kp_endpoint_target(ep, k->topic, sizeof k->topic);
    char who[200], buf[1024];
    snprintf(who, sizeof who, "kafka source '%.60s' (topic %.80s, subtask %d/%d)",
             ep->name ? ep->name : "?", k->topic, k->subtask, k->parallelism);
    start_spec start;
    const char *stop = kp_endpoint_get(ep, "stop_at", buf, sizeof buf);
    if (stop && strcmp(stop, "end") && strcmp(stop, "never")) {
        snprintf(errstr, errlen, "stop_at=%s: use stop_at=end (or leave it out)", stop);
        free(k);
        return NULL;
    }
    k->stop_at_end = stop && !strcmp(stop, "end");
    if (!k->topic[0]) {
        snprintf(errstr, errlen, "'%s' names no topic: use kafka:TOPIC", ep->uri);
        free(k);
        return NULL;
    }
    if (parse_start(ep, &start, buf, sizeof buf, errstr, errlen) != 0) {
        free(k);
        return NULL;
    }
    /* the start spec may point into buf: keep the offsets list in its own copy */
    char offsets[1024];
    if (start.mode == START_OFFSETS) {
        snprintf(offsets, sizeof offsets, "%s", start.offsets);
        start.offsets = offsets;
    }
    rd_kafka_conf_t *conf =
        kp_kafka_conf_new(ep, &k->log, who, k->brokers, sizeof k->brokers, errstr, errlen);
    if (!conf) {
        free(k);
        return NULL;
    }
    long long bytes = kp_kafka_memory_budget(ep, errstr, errlen);
    if (bytes < 0 || configure(ep, conf, errstr, errlen) != 0 ||
        lookup_partitions(k, ep, conf, errstr, errlen) != 0 ||
        budget(ep, conf, bytes, owned_count(k->topic_partitions, k->subtask, k->parallelism),
               errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        kp_kafka_log_destroy(&k->log);
        free(k);
        return NULL;
    }
    char why[512];
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!k->rk) {
        snprintf(errstr, errlen, "cannot create a Kafka consumer: %s", why);
        rd_kafka_conf_destroy(conf);
        kp_kafka_log_destroy(&k->log);
        free(k);
        return NULL;
    }
    rd_kafka_poll_set_consumer(k->rk);
    k->q = rd_kafka_queue_get_consumer(k->rk);
    k->rkt = rd_kafka_topic_new(k->rk, k->topic, NULL);
    for (int32_t id = k->subtask; id < k->topic_partitions; id += k->parallelism)
        if (own(k, id, errstr, errlen) != 0)
            goto fail;
    if (resolve_starts(k, &start, errstr, errlen) != 0)
        goto fail;
    restore_positions(k, ep);
    if (assign_from(k, 0, errstr, errlen) != 0)
        goto fail;
    k->refreshed_ms = kp_mono_ms();
    return &k->r;
fail:
    kafka_reader_close(&k->r);
    return NULL;
}

const kp_connector kp_kafka_connector = {"kafka", open_kafka_source, kp_kafka_open_sink};
