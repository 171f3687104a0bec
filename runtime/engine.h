/* The engine's internal types: events as operators see them, output documents, operators
 * chained inside a task, and the subtask that runs a chain on one thread.
 *
 * Ownership: a subtask, its operators, their state and every event/doc they touch belong to
 * the subtask's thread. The only things shared between threads are channels (channel.h, own
 * lock), the sink connectors' shared writers (their own lock) and the job-wide metrics
 * counters (atomics, written with relaxed ordering, read by reporters). */
#ifndef KP_ENGINE_H
#define KP_ENGINE_H

#include <stdatomic.h>
#include <stdio.h>

#include "batch.h"
#include "channel.h"
#include "clock.h"
#include "keygroup.h"
#include "graph.h"

/* A growable byte buffer that is reused, never freed per record. */
typedef struct kp_buf {
    char *ptr;
    size_t len, cap;
} kp_buf;

int kp_buf_reserve(kp_buf *b, size_t extra);
int kp_buf_append(kp_buf *b, const void *data, size_t len);
void kp_buf_free(kp_buf *b);

/* Decimal formatting without printf into at least 21 bytes; returns the length (no NUL). */
size_t kp_fmt_i64(char *out, long long v);
size_t kp_fmt_u64(char *out, unsigned long long v);

/* One record on its way through a chain. key/value point either into an input batch, into
 * the source's read buffer, or into `scratch` after an operator set them. */
struct kp_event {
    kp_bytes key;
    kp_bytes value;
    kp_time ts;
    /* The carried watermark: the watermark the record's source partition had reached through
     * the records before it in that partition (KP_TIME_MIN before its first). Lateness is
     * judged against it, never against the operator's current watermark, so which records
     * are late is a function of the log alone (docs/semantics.md). Records made by an
     * operator (window results, process-function output) carry that operator's watermark
     * from before the input or advance that produced them. */
    kp_time cwm;
    uint64_t hash;   /* kp_hash64(key) once computed, else 0: read it with kp_event_hash */
    kp_buf *key_buf; /* where setters copy to; owned by the operator that made the event */
    kp_buf *val_buf;
    int bad; /* set by event setters on allocation failure */
};

/* The key's hash, computed at most once per record along its whole way (it crosses
 * exchanges in the batch): the exchange needs it for the key group, keyed operators for their
 * tables. Whoever changes a key resets hash to 0 (kp_event_copy_key does). */
static inline uint64_t kp_event_hash(kp_event *ev)
{
    if (!ev->hash)
        ev->hash = kp_hash64(ev->key.ptr, ev->key.len);
    return ev->hash;
}

/* An output document under construction: id and JSON object. */
struct kp_doc {
    kp_buf id;
    kp_buf json;
    int nfields;
    int bad; /* an append ran out of memory: kp_doc_end fails */
};

void kp_doc_begin(kp_doc *doc);
/* Appends raw JSON text; running out of memory marks the document bad. */
void kp_doc_append(kp_doc *doc, const char *data, size_t len);
/* Closes the JSON object; returns 0, or -1 if building it ran out of memory. */
int kp_doc_end(kp_doc *doc);
void kp_doc_free(kp_doc *doc);

typedef struct kp_subtask kp_subtask;
typedef struct kp_op kp_op;

struct kp_snapshot; /* checkpoint.h */

/* Operators return 0, or -1 after kp_subtask_fail() explained why. */
typedef struct kp_op_vt {
    int (*record)(kp_op *op, kp_event *ev);
    int (*watermark)(kp_op *op, kp_time wm);
    int (*idle)(kp_op *op); /* the inputs went idle: only exchange writers forward it */
    int (*finish)(kp_op *op);
    void (*destroy)(kp_op *op);
    /* Optional: called about every 100 ms from the subtask loop, busy or not, for work due by
     * the clock (partial batches and bulks, processing-time timers). NULL = pass it on. */
    int (*tick)(kp_op *op, kp_time now);
    /* Optional: checkpoint barrier `kp_snapshot_id(snap)` reached this operator (aligned,
     * runtime/checkpoint.h): write the state into snap, then pass the barrier on with
     * kp_op_emit_barrier. NULL = stateless: pass it on. */
    int (*barrier)(kp_op *op, struct kp_snapshot *snap);
    /* Optional: checkpoint `id` completed everywhere (sinks commit what they prepared at its
     * barrier). NULL = pass it on. */
    int (*checkpoint_complete)(kp_op *op, int64_t id);
} kp_op_vt;

struct kp_op {
    const kp_op_vt *vt;
    const kp_node *node;
    kp_subtask *st;
    kp_op *out[KP_MAX_OUTPUTS];
    int nout;
};

/* Job-wide counters, one set per job run, shared by all subtasks. */
typedef struct kp_metrics {
    atomic_llong records_in; /* records read by sources */
    atomic_llong bytes_in;
    atomic_llong decode_errors; /* KP_BAD_INPUT from decode */
    atomic_llong dead_lettered;
    atomic_llong skipped;      /* KP_SKIP from decode/map, and filtered */
    atomic_llong late_records; /* dropped as late by windows */
    atomic_llong windows_fired;
    atomic_llong records_out;      /* written by sinks */
    atomic_llong state_spills;     /* write-back cache flushes to RocksDB */
    atomic_llong state_cache_peak; /* sum over keyed subtasks of their peak in-memory state */
    atomic_llong state_rocksdb;    /* RocksDB memory (memtables, cache, readers), peak */
    atomic_llong readahead_peak;   /* sum over sources of their read-ahead peak (Kafka) */
    atomic_llong batches_sent;     /* data batches sent by exchanges (added at their end) */
    atomic_llong records_sent;     /* records in them */
} kp_metrics;

/* How a subtask reports to whoever runs it (the executor sets it up): operators, sources and
 * sinks fail the run and check whether it is over through their subtask, never by calling the
 * executor. `fail` receives the message without the subtask's name; the first failure wins.
 * @locality fail: any thread (thread-safe); stopped is read with relaxed loads */
typedef struct kp_subtask_host {
    void (*fail)(void *ctx, const kp_subtask *st, const char *message);
    void *ctx;
    const atomic_int *stopped; /* nonzero once the run failed or was cancelled */
} kp_subtask_host;

struct kp_subtask {
    const kp_subtask_host *host;
    const kp_job *job;
    int index;       /* subtask index within its task */
    int parallelism; /* of its task */
    char name[KP_NAME_MAX + 16];
    kp_metrics *metrics;
    const char *state_dir;          /* where keyed operators open their RocksDB, per subtask */
    struct kp_mailbox *ctl;         /* announcements from the coordinator (mailbox.h): sources
                                       always, every subtask when checkpoints are on */
    struct kp_mailbox *coordinator; /* sources: reports to the coordinator; NULL = no alignment */
    int task_id;                    /* the task's index in the job plan, for reports */
    kp_time align_drift;            /* sources: how far ahead of the slowest subtask one may run */
    const char *const *conf;        /* connector configuration */
    int64_t epoch;                  /* fencing epoch of this attempt */
    int print_stats;                /* connectors print their metrics (JSON) to stderr at the end */
    size_t state_cache_bytes;
    size_t rocksdb_cache_bytes;    /* RocksDB block cache per keyed subtask; 0 = default */
    size_t rocksdb_memtable_bytes; /* RocksDB memtable size per column family; 0 = default */
    struct kp_subtask_live *live;  /* its live counters (exec_live.h), or NULL */
    /* The checkpoint this attempt restores from (checkpoint.h), or NULL for a fresh start.
     * Read-only, shared by the process's subtasks. */
    const struct kp_restore *restore;
    /* Checkpoints: how this subtask hands over its snapshots (exec_ckpt.h); NULL = off. */
    struct kp_ckpt_out *ckpt;
};

/* Marks the job as failed with a message naming the subtask; returns -1. Thread-safe. */
int kp_subtask_fail(kp_subtask *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True once the job failed or was cancelled; long loops check it. Thread-safe. */
static inline int kp_subtask_cancelled(const kp_subtask *st)
{
    return atomic_load_explicit(st->host->stopped, memory_order_relaxed);
}

/* kp_subtask_cancelled as a connector cancellation probe (kp_endpoint.cancelled, with
 * cancel_arg = the subtask). @locality any thread @locks none */
int kp_subtask_cancel_probe(void *subtask);

/* Forwards to every output of `op`. */
static inline int kp_op_emit(kp_op *op, kp_event *ev)
{
    for (int i = 0; i < op->nout; i++)
        if (op->out[i]->vt->record(op->out[i], ev) != 0)
            return -1;
    return 0;
}

static inline int kp_op_emit_watermark(kp_op *op, kp_time wm)
{
    for (int i = 0; i < op->nout; i++)
        if (op->out[i]->vt->watermark(op->out[i], wm) != 0)
            return -1;
    return 0;
}

int kp_op_emit_idle(kp_op *op);

/* Delivers a tick to `op` (its own tick, or its outputs' when it has none). */
int kp_op_tick(kp_op *op, kp_time now);

/* How often subtask loops tick their chains. */
#define KP_TICK_MS 100
int kp_op_emit_finish(kp_op *op);

/* Checkpoints (checkpoint.h). kp_op_barrier delivers the barrier of `snap` to op: its own
 * `barrier`, or for an operator without one, on to its outputs; kp_op_emit_barrier delivers
 * it to every output of op (an operator's `barrier` ends with it, after writing its state).
 * The same for the completion of checkpoint `id`. @locality the subtask's thread */
int kp_op_barrier(kp_op *op, struct kp_snapshot *snap);
int kp_op_emit_barrier(kp_op *op, struct kp_snapshot *snap);
int kp_op_checkpoint_complete(kp_op *op, int64_t id);
int kp_op_emit_checkpoint_complete(kp_op *op, int64_t id);

/* Helpers shared by operators: pass-through watermark/idle/finish. */
int kp_op_pass_watermark(kp_op *op, kp_time wm);
int kp_op_pass_idle(kp_op *op);
int kp_op_pass_finish(kp_op *op);

/* Sets an event's key/value by copying into its scratch buffer. */
void kp_event_copy_key(kp_event *ev, kp_bytes key);
void kp_event_copy_value(kp_event *ev, kp_bytes value);

struct kp_sink_writer;
struct kp_source_reader;
/* With print_stats: one line "kappa: stats NAME (i/p): {...}" of the connector's metrics. */
void kp_print_connector_stats(const kp_subtask *st, const char *name, struct kp_sink_writer *w,
                              struct kp_source_reader *r);

/* Emits a document as an event (key = id, value = JSON, ts, carried watermark cwm) to op's
 * outputs. */
int kp_op_emit_doc(kp_op *op, kp_doc *doc, kp_time ts, kp_time cwm);

#endif
