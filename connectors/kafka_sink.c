/* Kafka as a sink: `kafka:TOPIC?brokers=H:P`. Each document becomes one message, key = the
 * document id, value = the document, timestamp = the document's event time; the Java-
 * compatible murmur2 partitioner puts equal ids on the same partition.
 *
 * The producer is idempotent (enable.idempotence=true, hence acks=all): librdkafka's retries
 * never duplicate or reorder a message within a partition. write() hands the message to
 * librdkafka (copying it: the engine reuses its buffers), and when librdkafka's queue is full
 * it serves delivery reports until there is room — that is the sink's backpressure. Delivery
 * reports count failures and keep the first error; flush() waits until every message is
 * acknowledged and fails if any delivery failed since the previous flush, so a checkpoint
 * can never complete over lost output.
 *
 * Memory: librdkafka's queue of messages not yet acknowledged is bounded by the subtask's
 * budget, option `memory_mb` (URI, or --conf kafka.memory_mb; default 64 MiB):
 * queue.buffering.max.kbytes = budget / 2, queue.buffering.max.messages = budget / 2 / 256
 * (librdkafka keeps ~250 bytes of bookkeeping per message besides its copy of it); the other
 * half covers that bookkeeping and the batches being sent. rdkafka.* options override them.
 *
 * Cancellation: every wait (a full queue, flush, close) is in steps of at most 100 ms and
 * asks the endpoint's cancellation probe between them; once the job is cancelled write() and
 * flush() fail with "cancelled" and close() abandons what is still queued (the replay from
 * the last checkpoint rewrites it). tick() serves delivery reports in a live job, and fails
 * the job as soon as a delivery failed (or librdkafka raised a fatal error).
 *
 * As a dead-letter output (write_raw) the message is the failed record itself — its key and
 * raw value bytes — with headers kappa.source (origin topic or file), kappa.partition,
 * kappa.offset and kappa.error.
 *
 * Exactly-once: `kafka:TOPIC?transactional=1` (or --conf kafka.transactional=1). Kafka lets a
 * producer hold one open transaction at a time, and a checkpoint's transaction may only commit
 * once the checkpoint completed — while the records after its barrier must already go
 * somewhere. So, as Flink's KafkaSink does (a producer per checkpoint, its transactional id
 * built from a prefix, the subtask and a counter; Flink 2's "pooling" naming reuses a fixed
 * set of ids), each sink subtask keeps a small pool of transactional producers, option
 * `tx_pool` (default 3, 2..16), with the ids `<job>-<sink uid>-<topic>-<subtask>-<n>`,
 * n < tx_pool (option `transactional_id` replaces `<job>-<sink uid>-<topic>`; the topic keeps
 * two jobs of one plugin writing different topics apart — jobs writing the same topic
 * transactionally need their own transactional_id), stable across attempts:
 *   - open: init_transactions() on every id of the pool. The broker fences every earlier
 *     producer with that id (a zombie of the previous attempt can no longer write or commit)
 *     and aborts its open transaction; then producer 0 begins a transaction.
 *   - write(): into the current producer's transaction.
 *   - prepare(ckpt) (the barrier): wait until the current producer's messages are all
 *     acknowledged (durable, not yet visible to read_committed readers), set its transaction
 *     aside as "pending for ckpt", begin a transaction on the next idle producer of the pool.
 *     With no idle producer (every one pending: the completions' notifications lag behind the
 *     barriers when checkpoints are frequent) the records after the barrier are held in
 *     memory (kafka_hold.c, a segment per further barrier, at most memory_mb / 2, then the
 *     writer fails) until commits free producers; each held segment then becomes the
 *     transaction of its own checkpoint. A barrier is never declined for want of a producer.
 *   - commit(ckpt) (the checkpoint completed): commit every pending transaction of a
 *     checkpoint <= ckpt, oldest first (a declined checkpoint's records are covered by the
 *     next one that completes), and the producer becomes idle again.
 *   - without checkpoints (endpoint checkpoint_interval_ms = 0) the current transaction
 *     commits on the sink's clock every `commit_ms` (default 1000) — a reader sees results
 *     with that delay — and in every case flush() (end of input) commits everything pending
 *     and the current transaction, then begins the next.
 *   - close(): aborts what is still open or pending (a cancelled job's uncommitted output
 *     never becomes visible).
 * Failpoint kafka.mid_commit (runtime/failpoint.h): after the broker committed a transaction
 * of a completed checkpoint, before the writer counts it — with `crash`, the transactions of
 * the same commit() call after it stay uncommitted, and the restore re-sends them (Recovery).
 * kafka.mid_final_commit is the same point in flush()'s commits at end of input. With
 * checkpoints the sources wait at the end of their input for a final checkpoint taken after
 * it (FLIP-147, docs/checkpoints.md "Bounded inputs"), whose notification, served before the
 * sink finishes, committed every record: flush() commits an empty transaction, and a crash
 * there restores from the final checkpoint with nothing to re-send. (A run whose
 * coordinator takes no final checkpoint — a test's own kp_exec_control — commits the records
 * after its last checkpoint there, outside any checkpoint: a crash then duplicates them.)
 * Recovery (option `recoverable`, default 1, with checkpoints). librdkafka cannot resume
 * another producer's transaction (Flink sets the producer id and epoch by reflection; Kafka's
 * KIP-939 two-phase commit is not in librdkafka 2.0), so a process that dies after a
 * checkpoint completed and before its sink committed would lose that transaction: the next
 * attempt's init_transactions aborts it, and the sources restart after it. Instead:
 *   - each checkpoint's transaction gets the next of the writer's sequence numbers (they go
 *     on from the marker below at open, so they grow across attempts even where checkpoint
 *     ids start again, e.g. from a savepoint into a new checkpoint directory) and keeps a
 *     copy of its records (its journal, kafka_hold.c) until it commits; snapshot(ckpt) puts
 *     the records of every transaction not yet committed (and the held segments of barriers
 *     <= ckpt) into the checkpoint, by sequence number;
 *   - every such transaction commits, inside itself, its sequence number as the offset of
 *     the output topic's partition 0 for the group `kappa-tx-<base>`
 *     (send_offsets_to_transaction): a marker committed exactly when the transaction is;
 *   - open with restored state: fence the old writer's ids (ours by init_transactions,
 *     another subtask's, after a rescale, by producers opened for its ids), read its
 *     marker, and re-send — in one transaction committed at once, with the marker moved —
 *     the records of every transaction above the marker. Those at or below it had
 *     committed; re-sending nothing for them is what keeps the output exactly once.
 * The copies count against memory_mb / 2 together with held records (over it the writer
 * fails: checkpoint more often or raise memory_mb). recoverable=0 drops them and accepts the
 * loss window (the time between the coordinator's completion and the notification).
 * Limits. transaction.timeout.ms (option `transaction_timeout_ms`, default 60000 and at least
 * 2 checkpoint intervals) bounds how long a dead attempt's open transaction holds back
 * read_committed readers when no new attempt fences its ids (a job cancelled by kill -9, or
 * restarted at a lower parallelism without state for the subtasks that went away). At end of
 * input flush() commits the open transaction without a checkpoint: a failure between that
 * and the job's end replays its records once more. A pool costs tx_pool librdkafka handles
 * (each with its own threads and broker connections) per sink subtask. Readers use
 * read_committed, the source's default. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/clock.h"
#include "../runtime/failpoint.h"
#include "kafka_common.h"
#include "kafka_hold.h"

#define TX_POOL_MAX 16

typedef enum tx_state { TX_IDLE = 0, TX_OPEN, TX_PENDING } tx_state;

/* One producer of the writer: the only one, or one of the transactional pool. */
typedef struct producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    kp_kafka_log log;
    int log_ready; /* log initialised (kp_kafka_conf_new succeeded) */
    tx_state state;
    int64_t ckpt;          /* TX_PENDING: the checkpoint whose barrier closed it */
    int64_t seq;           /* TX_PENDING: its sequence number (the marker, Recovery) */
    int64_t begun_ms;      /* TX_OPEN: when the transaction began (monotonic) */
    long long written;     /* messages in the open transaction */
    kp_kafka_hold journal; /* recoverable: a copy of the transaction's records (kafka_snapshot) */
} producer;

typedef struct kafka_writer {
    kp_sink_writer w;
    rd_kafka_t *rk; /* the current producer's (pool[cur]) */
    rd_kafka_topic_t *rkt;
    producer pool[TX_POOL_MAX];
    int npool, cur;
    int tx;        /* transactional mode */
    int holding;   /* tx: no producer free, writes go to `hold` (kafka_hold.h) */
    int finishing; /* tx: flush() at end of input is committing (failpoint name, see above) */
    kp_kafka_hold hold;
    size_t hold_cap;       /* bytes held at most (memory_mb / 2) */
    long long held_total;  /* records that were ever held */
    int journal;           /* recoverable: transactions keep their records until committed */
    char base[320];        /* transactional ids: base-n; marker group kappa-tx-base */
    long long recovered;   /* records re-sent at open for transactions a crash left behind */
    int64_t seq;           /* the last sequence number given to a checkpoint's transaction */
    kp_buf snap;           /* kafka_snapshot's blob, reused */
    long commit_ms;        /* tx without checkpoints: commit every commit_ms */
    int64_t ckpt_interval; /* the run's checkpoint interval, 0 = none */
    char topic[256], brokers[512];
    long long sent, delivered, failed; /* delivery reports: served on the writer's thread */
    long long failed_at_flush;         /* failures already reported by a flush */
    long long committed, aborted;      /* transactions */
    char first_error[512];             /* first failure since the last flush */
    unsigned since_poll;
    int (*cancelled)(void *); /* the endpoint's cancellation probe */
    void *cancel_arg;
} kafka_writer;

static int cancelled(kafka_writer *k, const char *while_, char *errstr, size_t errlen)
{
    if (!kp_endpoint_cancelled(k->cancelled, k->cancel_arg))
        return 0;
    snprintf(errstr, errlen, "kafka sink for '%s': cancelled while %s", k->topic, while_);
    return -1;
}

/* Delivery report. @locality the writer's thread, inside rd_kafka_poll / rd_kafka_flush */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_writer *k = m->_private; /* per-message opaque */
    if (!k)
        return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->delivered++;
        return;
    }
    if (k->failed++ == k->failed_at_flush)
        snprintf(k->first_error, sizeof k->first_error,
                 "delivery to topic '%s' partition %d failed: %s", k->topic, (int)m->partition,
                 rd_kafka_err2str(m->err));
}

static int check_fatal(kafka_writer *k, char *errstr, size_t errlen)
{
    char why[512];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(k->rk, why, sizeof why);
    if (!err)
        return 0;
    snprintf(errstr, errlen, "kafka producer for '%s' failed: %s: %s", k->topic,
             rd_kafka_err2name(err), why);
    return -1;
}

/* Produces one message (copied), waiting for room while librdkafka's queue is full. */
static int produce(kafka_writer *k, const void *key, size_t key_len, const void *value,
                   size_t value_len, kp_time ts, rd_kafka_headers_t *hdrs, char *errstr,
                   size_t errlen)
{
    for (;;) {
        rd_kafka_resp_err_t err;
        if (hdrs)
            err = rd_kafka_producev(
                k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
                RD_KAFKA_V_TIMESTAMP(ts != KP_TIME_MIN && ts > 0 ? ts : 0),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(k), RD_KAFKA_V_END);
        else
            err = rd_kafka_producev(
                k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
                RD_KAFKA_V_TIMESTAMP(ts != KP_TIME_MIN && ts > 0 ? ts : 0), RD_KAFKA_V_OPAQUE(k),
                RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            k->sent++;
            k->pool[k->cur].written++;
            if (++k->since_poll >= 1024) { /* serve delivery reports now and then */
                k->since_poll = 0;
                rd_kafka_poll(k->rk, 0);
            }
            return 0;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            snprintf(errstr, errlen, "producing to topic '%s': %s", k->topic,
                     rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(k->rk, 100); /* backpressure: wait for deliveries to make room */
        if (check_fatal(k, errstr, errlen) != 0 ||
            cancelled(k, "waiting for room in the producer queue", errstr, errlen) != 0) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            return -1;
        }
    }
}

/* A record while no producer is free: into the hold, within its cap. */
/* Bytes of records kept in memory: held, and the journals of the transactions. */
static size_t kept_bytes(const kafka_writer *k)
{
    size_t n = kp_kafka_hold_bytes(&k->hold);
    for (int i = 0; i < k->npool; i++)
        n += kp_kafka_hold_bytes(&k->pool[i].journal);
    return n;
}

static int over_cap(kafka_writer *k, char *errstr, size_t errlen)
{
    if (kept_bytes(k) <= k->hold_cap)
        return 0;
    snprintf(errstr, errlen,
             "kafka sink for '%s': the records kept until their checkpoints complete (held, or "
             "copies of pending transactions) passed %zu MiB (memory_mb / 2): raise memory_mb, "
             "take checkpoints more often, or check that they complete",
             k->topic, k->hold_cap >> 20);
    return -1;
}

static int hold(kafka_writer *k, const kp_kafka_held *r, char *errstr, size_t errlen)
{
    if (over_cap(k, errstr, errlen) != 0)
        return -1;
    if (kp_kafka_hold_add(&k->hold, r) != 0) {
        snprintf(errstr, errlen, "kafka sink for '%s': out of memory", k->topic);
        return -1;
    }
    k->held_total++;
    return 0;
}

/* A dead letter: the failed record itself, where it came from and why in headers. */
static int produce_raw(kafka_writer *k, const kp_kafka_held *r, char *errstr, size_t errlen)
{
    char part[16], off[24];
    snprintf(part, sizeof part, "%d", (int)r->partition);
    snprintf(off, sizeof off, "%" PRId64, r->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "kappa.source", -1, r->origin, -1);
    rd_kafka_header_add(h, "kappa.partition", -1, part, -1);
    rd_kafka_header_add(h, "kappa.offset", -1, off, -1);
    rd_kafka_header_add(h, "kappa.error", -1, r->error ? r->error : "", -1);
    /* on success the message owns the headers */
    return produce(k, r->key.ptr, r->key.len, r->value.ptr, r->value.len, r->ts, h, errstr, errlen);
}

/* Produces one record into the current transaction; a recoverable writer keeps a copy in
 * the transaction's journal until it commits. */
static int send_record(kafka_writer *k, const kp_kafka_held *r, char *errstr, size_t errlen)
{
    int rc = r->origin ? produce_raw(k, r, errstr, errlen)
                       : produce(k, r->key.ptr, r->key.len, r->value.ptr, r->value.len, r->ts, NULL,
                                 errstr, errlen);
    if (rc != 0 || !k->journal)
        return rc;
    if (over_cap(k, errstr, errlen) != 0)
        return -1;
    if (kp_kafka_hold_add(&k->pool[k->cur].journal, r) != 0) {
        snprintf(errstr, errlen, "kafka sink for '%s': out of memory", k->topic);
        return -1;
    }
    return 0;
}

static int kafka_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                       size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    kp_kafka_held r = {.key = id, .value = doc, .ts = ts};
    if (k->holding)
        return hold(k, &r, errstr, errlen);
    if (!k->journal) /* the common path: no copy */
        return produce(k, id.ptr, id.len, doc.ptr, doc.len, ts, NULL, errstr, errlen);
    return send_record(k, &r, errstr, errlen);
}

static int kafka_write_raw(kp_sink_writer *w, const kp_raw *raw, const char *origin,
                           const char *error, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    kp_kafka_held r = {.key = raw->key,
                       .value = raw->value,
                       .ts = raw->ts,
                       .origin = origin ? origin : "",
                       .error = error ? error : "",
                       .partition = raw->partition,
                       .offset = raw->offset};
    return k->holding ? hold(k, &r, errstr, errlen) : send_record(k, &r, errstr, errlen);
}

/* -1 with the first error if deliveries failed since the last report. */
static int delivery_failed(kafka_writer *k, char *errstr, size_t errlen)
{
    if (k->failed == k->failed_at_flush)
        return 0;
    snprintf(errstr, errlen, "%lld message(s) to Kafka failed since the last flush; first: %s",
             k->failed - k->failed_at_flush, k->first_error);
    k->failed_at_flush = k->failed;
    return -1;
}

/* Waits until every message of the current producer is acknowledged; -1 with the first error
 * if a delivery failed since the last report. */
static int drain(kafka_writer *k, char *errstr, size_t errlen)
{
    while (rd_kafka_outq_len(k->rk) > 0) {
        rd_kafka_flush(k->rk, 100);
        if (check_fatal(k, errstr, errlen) != 0 ||
            cancelled(k, "waiting for acknowledgements (flush)", errstr, errlen) != 0)
            return -1;
    }
    rd_kafka_poll(k->rk, 0);
    k->since_poll = 0;
    return delivery_failed(k, errstr, errlen);
}

/* ---- transactions (the first comment) ------------------------------------------------- */

/* Runs one transactional call until it succeeds, in steps of at most 1 s (librdkafka resumes
 * a call that timed out), asking the cancellation probe between steps. `what` names the step
 * in errors. 0, or -1 with errstr. */
static int tx_call(kafka_writer *k, producer *p, const char *what,
                   rd_kafka_error_t *(*call)(rd_kafka_t *, int), char *errstr, size_t errlen)
{
    for (;;) {
        rd_kafka_error_t *e = call(p->rk, 1000);
        if (!e)
            return 0;
        int retry = rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e);
        if (!retry || cancelled(k, what, errstr, errlen) != 0) {
            if (!retry)
                snprintf(errstr, errlen, "kafka sink for '%s' (%s): %s failed: %s%s", k->topic,
                         p->log.who, what, rd_kafka_error_string(e),
                         rd_kafka_error_is_fatal(e) ? " (fatal: fenced by a newer producer with "
                                                      "the same transactional.id?)"
                                                    : "");
            rd_kafka_error_destroy(e);
            return -1;
        }
        rd_kafka_error_destroy(e);
        rd_kafka_poll(p->rk, 0);
    }
}

static rd_kafka_error_t *init_tx(rd_kafka_t *rk, int timeout_ms)
{
    return rd_kafka_init_transactions(rk, timeout_ms);
}

static rd_kafka_error_t *commit_tx(rd_kafka_t *rk, int timeout_ms)
{
    return rd_kafka_commit_transaction(rk, timeout_ms);
}

/* Makes pool[i] the current producer and begins its transaction. */
static int begin(kafka_writer *k, int i, char *errstr, size_t errlen)
{
    producer *p = &k->pool[i];
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
    if (e) {
        snprintf(errstr, errlen, "kafka sink for '%s' (%s): begin_transaction: %s", k->topic,
                 p->log.who, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    p->state = TX_OPEN;
    p->begun_ms = kp_mono_ms();
    p->written = 0;
    kp_kafka_hold_reset(&p->journal);
    k->cur = i;
    k->rk = p->rk;
    k->rkt = p->rkt;
    return 0;
}

/* Commits, within p's transaction, offset `seq` of the output topic's partition 0 for group
 * `group`: the marker a restore reads to learn whether the transaction with sequence number
 * seq committed. */
static int send_marker(kafka_writer *k, producer *p, const char *group, int64_t seq, char *errstr,
                       size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, k->topic, 0)->offset = seq;
    rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata_new(group);
    rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(p->rk, l, md, 30000);
    rd_kafka_consumer_group_metadata_destroy(md);
    rd_kafka_topic_partition_list_destroy(l);
    if (!e)
        return 0;
    snprintf(errstr, errlen, "kafka sink for '%s' (%s): checkpoint marker for group %s: %s",
             k->topic, p->log.who, group, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return -1;
}

static void marker_group(char *buf, size_t len, const char *base)
{
    snprintf(buf, len, "kappa-tx-%s", base);
}

static int commit_one(kafka_writer *k, producer *p, char *errstr, size_t errlen)
{
    if (k->journal && p->state == TX_PENDING) {
        char group[400];
        marker_group(group, sizeof group, k->base);
        if (send_marker(k, p, group, p->seq, errstr, errlen) != 0)
            return -1;
    }
    if (tx_call(k, p, "commit_transaction", commit_tx, errstr, errlen) != 0)
        return -1;
    kp_kafka_hold_reset(&p->journal);
    /* committed at the broker, not yet here (docs/checkpoints.md, Failpoints) */
    const char *fp = k->finishing ? "kafka.mid_final_commit" : "kafka.mid_commit";
    if (kp_failpoint(fp) != 0) {
        snprintf(errstr, errlen, "kafka sink for '%s': failpoint %s", k->topic, fp);
        return -1;
    }
    p->state = TX_IDLE;
    k->committed++;
    return 0;
}

/* Commits every pending transaction of a checkpoint <= upto, oldest first. */
static int commit_pending(kafka_writer *k, int64_t upto, char *errstr, size_t errlen)
{
    for (;;) {
        producer *oldest = NULL;
        for (int i = 0; i < k->npool; i++) {
            producer *p = &k->pool[i];
            if (p->state == TX_PENDING && p->ckpt <= upto && (!oldest || p->ckpt < oldest->ckpt))
                oldest = p;
        }
        if (!oldest)
            return 0;
        if (commit_one(k, oldest, errstr, errlen) != 0)
            return -1;
    }
}

/* An idle producer of the pool, the one after `cur` first; -1 if every one is pending. */
static int idle_producer(kafka_writer *k)
{
    for (int d = 1; d <= k->npool; d++)
        if (k->pool[(k->cur + d) % k->npool].state == TX_IDLE)
            return (k->cur + d) % k->npool;
    return -1;
}

/* Sets the current transaction aside for checkpoint `ckpt`, sequence number `seq` (all its
 * messages acknowledged)
 * and begins the next on an idle producer, or holds what comes next if there is none. */
static int set_aside(kafka_writer *k, int64_t ckpt, int64_t seq, char *errstr, size_t errlen)
{
    if (drain(k, errstr, errlen) != 0)
        return -1;
    k->pool[k->cur].state = TX_PENDING;
    k->pool[k->cur].ckpt = ckpt;
    k->pool[k->cur].seq = seq;
    int next = idle_producer(k);
    if (next < 0) {
        k->holding = 1;
        return 0;
    }
    return begin(k, next, errstr, errlen);
}

/* Producers became idle: the held records go into transactions, a segment closed by barrier
 * N into one set aside for N; the open tail into the new current transaction. */
static int resume_held(kafka_writer *k, char *errstr, size_t errlen)
{
    int next = k->holding ? idle_producer(k) : -1;
    if (next < 0)
        return 0;
    if (begin(k, next, errstr, errlen) != 0)
        return -1;
    k->holding = 0;
    for (;;) {
        kp_kafka_held r;
        int64_t ckpt, seq;
        int rc = kp_kafka_hold_next(&k->hold, &r, &ckpt, &seq);
        if (rc == 0) /* the open tail is in the current transaction */
            return 0;
        if (rc == 2) { /* barrier `ckpt`: set aside; with no producer left, hold on */
            if (set_aside(k, ckpt, seq, errstr, errlen) != 0)
                return -1;
            if (k->holding)
                return 0;
            continue;
        }
        if (send_record(k, &r, errstr, errlen) != 0)
            return -1;
    }
}

/* The barrier of checkpoint `ckpt`: the current transaction's messages are acknowledged and
 * set aside until commit(ckpt); the next idle producer takes the records after the barrier —
 * or, while none is idle, the hold does (a segment per barrier). */
static int kafka_prepare(kp_sink_writer *w, int64_t ckpt, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    if (k->holding) {
        if (kp_kafka_hold_close(&k->hold, ckpt, ++k->seq) != 0) {
            snprintf(errstr, errlen, "kafka sink for '%s': out of memory", k->topic);
            return -1;
        }
        return 0;
    }
    return set_aside(k, ckpt, ++k->seq, errstr, errlen);
}

static int kafka_commit(kp_sink_writer *w, int64_t ckpt, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    if (commit_pending(k, ckpt, errstr, errlen) != 0)
        return -1;
    return resume_held(k, errstr, errlen);
}

/* Commits the current transaction (all its messages acknowledged) and begins the next. */
static int commit_current(kafka_writer *k, char *errstr, size_t errlen)
{
    if (drain(k, errstr, errlen) != 0 || commit_one(k, &k->pool[k->cur], errstr, errlen) != 0)
        return -1;
    return begin(k, k->cur, errstr, errlen);
}

/* ---- the writer ----------------------------------------------------------------------- */

/* flush(): every message acknowledged; transactional: everything pending and the current
 * transaction committed (end of input, or a run without checkpoints). */
static int kafka_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    if (!k->tx)
        return drain(k, errstr, errlen);
    k->finishing = 1;
    int rc = 0;
    do { /* each round frees the pool and moves held segments into it */
        if (commit_pending(k, INT64_MAX, errstr, errlen) != 0 ||
            resume_held(k, errstr, errlen) != 0)
            rc = -1;
    } while (rc == 0 && k->holding);
    if (rc == 0)
        rc = commit_current(k, errstr, errlen);
    k->finishing = 0;
    return rc;
}

/* The clock's turn: serve delivery reports without waiting; fail once a delivery failed. A
 * transactional writer in a run without checkpoints commits every commit_ms. */
static int kafka_tick(kp_sink_writer *w, char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    for (int i = 0; i < k->npool; i++)
        rd_kafka_poll(k->pool[i].rk, 0);
    k->since_poll = 0;
    if (check_fatal(k, errstr, errlen) != 0 || delivery_failed(k, errstr, errlen) != 0)
        return -1;
    producer *p = &k->pool[k->cur];
    if (k->tx && !k->holding && !k->ckpt_interval && p->written > 0 &&
        kp_mono_ms() - p->begun_ms >= k->commit_ms)
        return commit_current(k, errstr, errlen);
    return 0;
}

static size_t kafka_sink_stats(kp_sink_writer *w, char *buf, size_t len)
{
    kafka_writer *k = (kafka_writer *)w;
    int pending = 0;
    for (int i = 0; i < k->npool; i++)
        pending += k->pool[i].state == TX_PENDING;
    int n = k->tx ? snprintf(buf, len,
                             "{\"sent\":%lld,\"delivered\":%lld,\"failed\":%lld,"
                             "\"transactions\":{\"committed\":%lld,\"aborted\":%lld,"
                             "\"pending\":%d},\"held\":%lld,\"held_total\":%lld,"
                             "\"recovered\":%lld}",
                             k->sent, k->delivered, k->failed, k->committed, k->aborted, pending,
                             k->hold.records, k->held_total, k->recovered)
                  : snprintf(buf, len, "{\"sent\":%lld,\"delivered\":%lld,\"failed\":%lld}",
                             k->sent, k->delivered, k->failed);
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : (len ? len - 1 : 0);
}

/* Closes one producer: a transaction still open or pending is aborted (5 s at most); an
 * idempotent producer delivers what it queued, best effort for up to 10 s unless the job is
 * cancelled — flush() is where losses are reported. */
static void producer_close(kafka_writer *k, producer *p)
{
    char err[400];
    if (!p->rk)
        goto log;
    if (p->state != TX_IDLE) {
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE);
        rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, 5000);
        if (e)
            rd_kafka_error_destroy(e);
        else
            k->aborted++;
    }
    for (int i = 0; i < 100 && rd_kafka_outq_len(p->rk) > 0; i++)
        if (rd_kafka_flush(p->rk, 100) == RD_KAFKA_RESP_ERR_NO_ERROR ||
            cancelled(k, "closing", err, sizeof err) != 0)
            break;
    if (rd_kafka_outq_len(p->rk) > 0) {
        fprintf(stderr, "kappa: %s: %d message(s) still undelivered at close\n", p->log.who,
                rd_kafka_outq_len(p->rk));
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0); /* their (failed) delivery reports */
    }
    if (p->rkt)
        rd_kafka_topic_destroy(p->rkt);
    rd_kafka_destroy(p->rk);
log:
    if (p->log_ready)
        kp_kafka_log_destroy(&p->log);
}

static void kafka_writer_close(kp_sink_writer *w)
{
    kafka_writer *k = (kafka_writer *)w;
    for (int i = 0; i < k->npool; i++) {
        producer_close(k, &k->pool[i]);
        kp_kafka_hold_free(&k->pool[i].journal);
    }
    kp_kafka_hold_free(&k->hold); /* never produced: as aborted */
    kp_buf_free(&k->snap);
    free(k);
}

/* Options of transactional mode: tx_pool, commit_ms, transaction_timeout_ms, and the ids'
 * base `<job>-<sink uid>-<topic>-<subtask>` (or `<transactional_id>-<subtask>`) into base. */
static int tx_options(kafka_writer *k, const kp_endpoint *ep, char *base, size_t blen,
                      long *timeout_ms, char *errstr, size_t errlen)
{
    long pool, min_timeout = 2 * (long)k->ckpt_interval;
    if (kp_kafka_opt_long(ep, "tx_pool", 3, 2, TX_POOL_MAX, &pool, errstr, errlen) != 0 ||
        kp_kafka_opt_long(ep, "commit_ms", 1000, 10, 3600000, &k->commit_ms, errstr, errlen) != 0 ||
        kp_kafka_opt_long(ep, "transaction_timeout_ms", min_timeout > 60000 ? min_timeout : 60000,
                          1000, 86400000, timeout_ms, errstr, errlen) != 0)
        return -1;
    if (*timeout_ms < min_timeout) {
        snprintf(errstr, errlen,
                 "transaction_timeout_ms=%ld is below 2 checkpoint intervals (%ld ms): a "
                 "transaction must outlive the checkpoint that commits it",
                 *timeout_ms, min_timeout);
        return -1;
    }
    k->npool = (int)pool;
    char prefix[300];
    /* the topic too: two jobs of one plugin (a blue/green pair, two submissions) writing
     * different topics must not fence each other's producers nor share the marker group */
    if ((!kp_endpoint_get(ep, "transactional_id", prefix, sizeof prefix) || !*prefix) &&
        snprintf(prefix, sizeof prefix, "%s-%s-%s", ep->job ? ep->job : "kappa",
                 ep->uid ? ep->uid : (ep->name ? ep->name : k->topic),
                 k->topic) >= (int)sizeof prefix) {
        snprintf(errstr, errlen,
                 "the transactional ids of the sink for '%s' would be longer than %zu bytes: "
                 "set the option transactional_id",
                 k->topic, sizeof prefix - 1);
        return -1;
    }
    snprintf(base, blen, "%s-%d", prefix, ep->subtask);
    long recoverable;
    if (kp_kafka_opt_long(ep, "recoverable", 1, 0, 1, &recoverable, errstr, errlen) != 0)
        return -1;
    k->journal = recoverable && k->ckpt_interval > 0; /* snapshots come with checkpoints */
    return 0;
}

/* Creates producer p with the writer's settings (+ its transactional.id in tx mode, then
 * init_transactions); wait_topic: also check that the topic exists. */
static int producer_open(kafka_writer *k, producer *p, int wait_topic, const kp_endpoint *ep,
                         const char *txid, long tx_timeout_ms, char *errstr, size_t errlen)
{
    char who[200];
    snprintf(who, sizeof who, "kafka sink '%.30s' (topic %.50s, subtask %d%s%.60s)",
             ep->name ? ep->name : "?", k->topic, ep->subtask, txid ? ", " : "", txid ? txid : "");
    rd_kafka_conf_t *conf =
        kp_kafka_conf_new(ep, &p->log, who, k->brokers, sizeof k->brokers, errstr, errlen);
    if (!conf)
        return -1;
    p->log_ready = 1;
    long long bytes = kp_kafka_memory_budget(ep, errstr, errlen);
    if (bytes < 0)
        goto fail_conf;
    char queue_kb[24], queue_msgs[24], timeout[24];
    snprintf(queue_kb, sizeof queue_kb, "%lld", bytes / 2 / 1024);
    snprintf(queue_msgs, sizeof queue_msgs, "%lld",
             bytes / 2 / 256 < 10000000 ? bytes / 2 / 256 : 10000000);
    snprintf(timeout, sizeof timeout, "%ld", tx_timeout_ms);
    const char *kv[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"batch.size", "1000000"},
        {"queue.buffering.max.kbytes", queue_kb},
        {"queue.buffering.max.messages", queue_msgs},
        {"partitioner", "murmur2_random"},
        {"reconnect.backoff.max.ms", "1000"},
        {txid ? "transactional.id" : NULL, txid},
        {txid ? "transaction.timeout.ms" : NULL, timeout},
    };
    for (size_t j = 0; j < sizeof kv / sizeof kv[0]; j++)
        if (kv[j][0] && kp_kafka_conf_set(conf, kv[j][0], kv[j][1], errstr, errlen) != 0)
            goto fail_conf;
    if (kp_kafka_conf_passthrough(ep, conf, errstr, errlen) != 0)
        goto fail_conf;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char why[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!p->rk) {
        snprintf(errstr, errlen, "cannot create a Kafka producer: %s", why);
        goto fail_conf;
    }
    int parts;
    if (wait_topic &&
        kp_kafka_wait_topic(p->rk, &p->log, ep, k->brokers, k->topic, &parts, errstr, errlen) != 0)
        return -1;
    p->rkt = rd_kafka_topic_new(p->rk, k->topic, NULL);
    if (!p->rkt) {
        snprintf(errstr, errlen, "topic '%s': %s", k->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    /* fences every earlier producer with this id and aborts its open transaction */
    if (txid && tx_call(k, p, "init_transactions", init_tx, errstr, errlen) != 0)
        return -1;
    return 0;
fail_conf:
    rd_kafka_conf_destroy(conf);
    return -1;
}

/* ---- recovery: the checkpoint state of a recoverable writer ------------------------------- */

/* snapshot(ckpt), right after prepare(ckpt): the records of every transaction not known to
 * be committed — the pending ones (their journals) and, while holding, the held segments of
 * barriers <= ckpt — by checkpoint, under the ids' base. */
static int kafka_snapshot(kp_sink_writer *w, int64_t ckpt,
                          int (*put)(void *ctx, const void *data, size_t len), void *ctx,
                          char *errstr, size_t errlen)
{
    kafka_writer *k = (kafka_writer *)w;
    int rc = kp_kafka_txstate_begin(&k->snap, k->base, k->npool);
    for (int i = 0; i < k->npool && rc == 0; i++) {
        producer *p = &k->pool[i];
        if (p->state == TX_PENDING && p->ckpt <= ckpt)
            rc = kp_kafka_txstate_add(&k->snap, p->seq, p->journal.buf.ptr, p->journal.buf.len);
    }
    size_t from = k->hold.pos;
    for (int i = 0; i < k->hold.nseg && rc == 0 && k->hold.seg[i].ckpt <= ckpt; i++) {
        rc = kp_kafka_txstate_add(&k->snap, k->hold.seg[i].seq, k->hold.buf.ptr + from,
                                  k->hold.seg[i].end - from);
        from = k->hold.seg[i].end;
    }
    if (rc == 0)
        rc = put(ctx, k->snap.ptr, k->snap.len);
    if (rc != 0)
        snprintf(errstr, errlen, "kafka sink for '%s': out of memory", k->topic);
    return rc;
}

/* Fences the transactional ids base-0 .. base-(npool-1) of another subtask of the run that
 * took the checkpoint (a restore at another parallelism): its zombies can commit nothing. */
static int fence_ids(kafka_writer *k, const kp_endpoint *ep, const char *base, int npool,
                     long tx_timeout_ms, char *errstr, size_t errlen)
{
    for (int n = 0; n < npool; n++) {
        producer p = {0};
        char txid[340];
        snprintf(txid, sizeof txid, "%s-%d", base, n);
        int rc = producer_open(k, &p, 0, ep, txid, tx_timeout_ms, errstr, errlen);
        producer_close(k, &p);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Re-sends, in one transaction committed at once, the records of every transaction of the
 * restored checkpoint that its writer's marker group shows never committed (the crash came
 * between the checkpoint's completion and the commit). Each old writer's ids are fenced
 * first (our own by open), so no zombie can commit them afterwards. */
static int recover(kafka_writer *k, const kp_endpoint *ep, long tx_timeout_ms, char *errstr,
                   size_t errlen)
{
    int begun = 0;
    char group[400];
    if (k->journal) { /* our sequence numbers go on from our marker, whatever the ids */
        int64_t own;
        marker_group(group, sizeof group, k->base);
        if (kp_kafka_group_offset(k->brokers, group, k->topic, 0, &own, errstr, errlen) != 0)
            return -1;
        k->seq = own > 0 ? own : 0;
    }
    for (int i = 0; i < ep->nrestored_state; i++) {
        kp_kafka_txstate t;
        const kp_sink_state *st = &ep->restored_state[i];
        if (kp_kafka_txstate_open(&t, st->data, st->len) != 0) {
            snprintf(errstr, errlen,
                     "kafka sink for '%s': the restored state of subtask %d is not a Kafka "
                     "transactional sink's (was the sink bound to another connector?)",
                     k->topic, st->subtask);
            return -1;
        }
        if (strcmp(t.base, k->base) &&
            fence_ids(k, ep, t.base, t.npool, tx_timeout_ms, errstr, errlen) != 0)
            return -1;
        marker_group(group, sizeof group, t.base);
        int64_t marker, seq, top = -1;
        int own = !strcmp(t.base, k->base);
        if (kp_kafka_group_offset(k->brokers, group, k->topic, 0, &marker, errstr, errlen) != 0)
            return -1;
        const void *recs;
        size_t len;
        int rc;
        while ((rc = kp_kafka_txstate_next(&t, &seq, &recs, &len)) == 1) {
            if (own && seq > k->seq)
                k->seq = seq;
            if (seq <= marker) /* committed before the crash */
                continue;
            if (!begun && begin(k, 0, errstr, errlen) != 0)
                return -1;
            begun = 1;
            kp_kafka_hold view;
            kp_kafka_hold_view(&view, recs, len);
            kp_kafka_held r;
            int64_t none, none2;
            while (kp_kafka_hold_next(&view, &r, &none, &none2) == 1) {
                if (send_record(k, &r, errstr, errlen) != 0)
                    return -1;
                k->recovered++;
            }
            top = seq > top ? seq : top;
        }
        if (rc < 0) {
            snprintf(errstr, errlen,
                     "kafka sink for '%s': the restored state of subtask %d is "
                     "truncated",
                     k->topic, st->subtask);
            return -1;
        }
        if (top >= 0 && send_marker(k, &k->pool[0], group, top, errstr, errlen) != 0)
            return -1;
    }
    if (!begun)
        return 0;
    if (drain(k, errstr, errlen) != 0)
        return -1;
    producer *p = &k->pool[0];
    if (tx_call(k, p, "commit_transaction", commit_tx, errstr, errlen) != 0)
        return -1;
    kp_kafka_hold_reset(&p->journal);
    p->state = TX_IDLE;
    k->committed++;
    return 0;
}

kp_sink_writer *kp_kafka_open_sink(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    kafka_writer *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    k->w = (kp_sink_writer){.write = kafka_write,
                            .flush = kafka_flush,
                            .close = kafka_writer_close,
                            .stats = kafka_sink_stats,
                            .write_raw = kafka_write_raw,
                            .tick = kafka_tick};
    k->cancelled = ep->cancelled;
    k->cancel_arg = ep->cancel_arg;
    k->ckpt_interval = ep->checkpoint_interval_ms;
    kp_endpoint_target(ep, k->topic, sizeof k->topic);
    if (!k->topic[0]) {
        snprintf(errstr, errlen, "'%s' names no topic: use kafka:TOPIC", ep->uri);
        free(k);
        return NULL;
    }
    long tx = 0, tx_timeout = 0;
    char base[320];
    if (kp_kafka_opt_long(ep, "transactional", 0, 0, 1, &tx, errstr, errlen) != 0 ||
        (tx && tx_options(k, ep, base, sizeof base, &tx_timeout, errstr, errlen) != 0)) {
        free(k);
        return NULL;
    }
    k->tx = (int)tx;
    if (!k->tx)
        k->npool = 1;
    long long budget = kp_kafka_memory_budget(ep, errstr, errlen);
    if (budget < 0) {
        free(k);
        return NULL;
    }
    k->hold_cap = (size_t)budget / 2;
    for (int i = 0; i < k->npool; i++) {
        char txid[340];
        snprintf(txid, sizeof txid, "%s-%d", base, i);
        if (producer_open(k, &k->pool[i], i == 0, ep, k->tx ? txid : NULL, tx_timeout, errstr,
                          errlen) != 0) {
            k->npool = i + 1; /* close what exists of it */
            goto fail;
        }
    }
    k->rk = k->pool[0].rk;
    k->rkt = k->pool[0].rkt;
    if (k->tx) {
        snprintf(k->base, sizeof k->base, "%s", base);
        k->w.prepare = kafka_prepare;
        k->w.commit = kafka_commit;
        if (k->journal)
            k->w.snapshot = kafka_snapshot;
        if (recover(k, ep, tx_timeout, errstr, errlen) != 0 || begin(k, 0, errstr, errlen) != 0)
            goto fail;
    } else if (ep->nrestored_state > 0) {
        snprintf(errstr, errlen,
                 "kafka sink for '%s': the checkpoint holds transactional state for this sink; "
                 "restore it with transactional=1",
                 k->topic);
        goto fail;
    }
    return &k->w;
fail:
    kafka_writer_close(&k->w);
    return NULL;
}
