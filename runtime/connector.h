/* The connector interface: how sources and sinks named in a job are bound to real systems.
 *
 * A job names its endpoints ("clicks", "hourly-click-index"); the runner binds each name to a
 * URI (`file:events.ndjson`, `stdin:`, `stdout:`, later `kafka:TOPIC`, `es:INDEX`). A
 * connector scheme registers one factory; the executor opens one source reader per source
 * subtask and one sink writer per sink subtask, so connectors never see threads they did not
 * create. Readers hand out raw records in batches that stay valid until the next poll: the
 * source operator decodes them in place, without copying.
 *
 * The structs follow the Redis `rio` model: a small table of function pointers per instance.
 * Offsets and flush() are the hooks the checkpoint issue builds on. */
#ifndef KP_CONNECTOR_H
#define KP_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#include <kappa/kappa.h>

typedef struct kp_raw {
    kp_bytes key;
    kp_bytes value;
    kp_time ts;        /* the system's own timestamp (Kafka), or KP_TIME_MIN */
    int32_t partition; /* origin partition: Kafka's, or a file's line number mod its
                        * `partitions` option (stdin: 0); -1 if the input has none */
    int64_t offset;    /* byte offset (files) or Kafka offset */
} kp_raw;

typedef enum kp_poll_rc {
    KP_POLL_RECORDS = 0, /* *n > 0 records */
    KP_POLL_EMPTY,       /* nothing right now: try again */
    KP_POLL_EOF,         /* bounded input finished */
    KP_POLL_ERROR,       /* errstr says why */
} kp_poll_rc;

/* A partition's position: the offset of the next record to read. */
typedef struct kp_offset {
    int32_t partition;
    int64_t offset;
} kp_offset;

typedef struct kp_source_reader kp_source_reader;
struct kp_source_reader {
    /* Up to `max` records into `out`, waiting at most timeout_ms. */
    kp_poll_rc (*poll)(kp_source_reader *r, kp_raw *out, int max, int *n, int timeout_ms,
                       char *errstr, size_t errlen);
    void (*close)(kp_source_reader *r);
    /* Optional (NULL for unpartitioned sources). The partitions this reader owns right now,
     * up to `max`; returns how many. The source operator keeps a watermark per partition and
     * holds its output watermark back for an owned partition that has sent nothing yet, until
     * the idleness timeout. */
    int (*partitions)(kp_source_reader *r, int32_t *out, int max);
    /* Optional. The position of every owned partition, for snapshots (checkpoint issue). */
    int (*offsets)(kp_source_reader *r, kp_offset *out, int max);
    /* Optional. Commits the given positions to the consumer group — for lag monitoring only;
     * restore uses the checkpoint. Returns 0 or -1 with errstr. */
    int (*commit)(kp_source_reader *r, const kp_offset *offs, int n, char *errstr, size_t errlen);
    /* Optional. The connector's metrics as one JSON object into buf; returns its length. */
    size_t (*stats)(kp_source_reader *r, char *buf, size_t len);
    /* Optional. Stops (paused != 0) or resumes fetching one owned partition, without losing
     * or repeating records: the source uses it to keep its partitions within a bounded
     * event-time drift of each other (watermark alignment per partition). */
    int (*pause)(kp_source_reader *r, int32_t partition, int paused);
    /* Optional. 1 if an owned partition is caught up with the log end right now: everything
     * the system held for it (Kafka: up to the high watermark of the latest fetch response; a
     * file: up to EOF) has been handed out. 0 if records are or may be pending, also before the
     * system first answered (while it is unreachable, its last answer counts: Kafka keeps the
     * high watermark it last saw). Only a caught-up partition may count as idle (after
     * producing nothing for the idle timeout), and only a caught-up partition may fall behind
     * in alignment; without this callback the source guesses from a second without records. */
    int (*caught_up)(kp_source_reader *r, int32_t partition);
    /* Optional (NULL: partitions never end). 1 if an owned partition will deliver nothing more,
     * ever: Kafka with stop_at=end once its position reached the end offset captured at open;
     * a file once its last line was read (EOF). The source then excludes it from the watermark
     * minimum at once, by offset rather than by a timer. 0 otherwise (also for a partition
     * this reader does not own). @locality the reader's (source subtask's) thread */
    int (*ended)(kp_source_reader *r, int32_t partition);
    /* Optional. The most bytes the connector held read ahead outside the engine's batches
     * (Kafka: librdkafka's fetch queues, sampled once a second), for --stats. */
    size_t (*memory_peak)(kp_source_reader *r);
};

typedef struct kp_sink_writer kp_sink_writer;
struct kp_sink_writer {
    /* Queues one document. Returns 0 or -1 with errstr. */
    int (*write)(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                 size_t errlen);
    /* Returns only when everything written before it is durable/acknowledged. */
    int (*flush)(kp_sink_writer *w, char *errstr, size_t errlen);
    void (*close)(kp_sink_writer *w);
    /* Optional. The connector's metrics as one JSON object into buf; returns its length. */
    size_t (*stats)(kp_sink_writer *w, char *buf, size_t len);
    /* Optional, for dead-letter outputs: writes a raw record that failed, with where it came
     * from (`origin`, e.g. the source topic) and why (`error`) — the Kafka sink puts these in
     * headers. Without it, the source writes the raw value with write(). */
    int (*write_raw)(kp_sink_writer *w, const kp_raw *raw, const char *origin, const char *error,
                     char *errstr, size_t errlen);
    /* Optional. Called about every 100 ms from the subtask thread, busy or idle: send what is
     * due by the clock (a partial batch past its flush interval) and collect answers to requests
     * in flight (Kafka delivery reports, Elasticsearch bulk responses), without waiting for
     * them. 0, or -1 with errstr when the writer has failed. */
    int (*tick)(kp_sink_writer *w, char *errstr, size_t errlen);
    /* Optional (checkpoint.h). A barrier of checkpoint `ckpt` passed the writer: everything
     * written before it must be durable before this returns (NULL: flush() is called instead).
     * A transactional writer ends its open transaction's writes here (keeping it open until
     * commit) and begins the next one. 0, or -1 with errstr (the checkpoint is declined). */
    int (*prepare)(kp_sink_writer *w, int64_t ckpt, char *errstr, size_t errlen);
    /* Optional. Checkpoint `ckpt` completed: commit what prepare(ckpt) and earlier set aside.
     * 0, or -1 with errstr. */
    int (*commit)(kp_sink_writer *w, int64_t ckpt, char *errstr, size_t errlen);
    /* Optional (transactional writers). Right after prepare(ckpt): the writer's state for
     * checkpoint ckpt, what a restore from it needs to finish the transactions a crash left
     * behind, handed to put (at most once; put returns 0, or -1 if out of memory). The restore
     * gives it back through kp_endpoint.restored_state. 0, or -1 with errstr (declined). */
    int (*snapshot)(kp_sink_writer *w, int64_t ckpt,
                    int (*put)(void *ctx, const void *data, size_t len), void *ctx, char *errstr,
                    size_t errlen);
};

/* One sink writer's snapshot() from a restored checkpoint. */
typedef struct kp_sink_state {
    int subtask;      /* of the writer that put it */
    const void *data; /* valid during open_sink */
    size_t len;
} kp_sink_state;

/* Where and how one endpoint is bound.
 *
 * Connector options come from the URI's query (`kafka:user-behavior?start=earliest`) and,
 * where the URI does not set them, from the runner's configuration `conf` (a NULL-terminated
 * array of "key=value", e.g. "kafka.brokers=127.0.0.1:9092", "es.url=http://...";
 * `kappa run --conf`). Read them with kp_endpoint_get. */
typedef struct kp_endpoint {
    const char *name; /* the job's name for it */
    const char *uri;  /* scheme:rest[?k=v&...] */
    int subtask;      /* which reader/writer this is */
    int parallelism;
    const char *const *conf;
    /* The attempt's fencing epoch: grows with every (re)start of the job, never reused.
     * Sinks with external versioning derive their versions from it (see docs/architecture.md,
     * "Exactly-once into Elasticsearch"): the jobmanager's persisted counter, or for `kappa
     * run --local` the counter in its state dir (runtime/epoch_file.h). */
    int64_t epoch;
    /* Cancellation probe (optional; NULL = never cancelled). Returns non-zero once the job is
     * failing or cancelled. Readers and writers keep the pair and call it in every loop that
     * can wait (a full queue, retries and backoff, flush, open-time lookups), at least every
     * ~200 ms; once it says so they stop waiting and return an error "cancelled". The runtime
     * passes {kp_subtask_cancelled-based probe, the subtask}; both must outlive the
     * reader/writer. Called only on the thread that calls the reader/writer; must be cheap
     * and thread-safe (an atomic load). */
    int (*cancelled)(void *cancel_arg);
    void *cancel_arg;
    /* Sources restored from a checkpoint: the position of every partition the checkpoint
     * knew (the offset of the next record to read), which wins over the start mode for those
     * partitions; other partitions start as the start mode says. NULL/0 = a fresh start. */
    const kp_offset *restore_offsets;
    int nrestore_offsets;
    /* Transactional sinks: the id of the checkpoint this attempt restored (0 = none). */
    int64_t restored_checkpoint;
    /* Transactional sinks: names stable across attempts, for transactional ids (the Kafka
     * sink's `<job>-<uid>-<subtask>`): the job's name and the sink node's uid (NULL: unknown,
     * the sink falls back to the endpoint's name), and whether this run takes checkpoints
     * (their interval; 0 = none: the sink commits on its own clock and at end of input). */
    const char *job;
    const char *uid;
    kp_time checkpoint_interval_ms;
    /* Sinks restored from a checkpoint: what the writers of the run that took it put into it
     * (kp_sink_writer.snapshot), those of old subtask j with j % parallelism == subtask;
     * NULL/0 = none. */
    const kp_sink_state *restored_state;
    int nrestored_state;
} kp_endpoint;

/* The endpoint's cancellation probe: 1 if the job is being cancelled, else 0. */
static inline int kp_endpoint_cancelled(int (*cancelled)(void *), void *cancel_arg)
{
    return cancelled && cancelled(cancel_arg);
}

/* The URI's target without scheme and query: "kafka:t?x=1" → "t" (into buf). */
const char *kp_endpoint_target(const kp_endpoint *ep, char *buf, size_t len);

/* Option `key`: the URI query's `key` if present, else conf's `<scheme>.<key>`, else NULL.
 * The value is copied into buf (URI values are percent-decoded). */
const char *kp_endpoint_get(const kp_endpoint *ep, const char *key, char *buf, size_t len);

typedef struct kp_connector {
    const char *scheme; /* "file", "kafka", ... */
    kp_source_reader *(*open_source)(const kp_endpoint *ep, char *errstr, size_t errlen);
    kp_sink_writer *(*open_sink)(const kp_endpoint *ep, char *errstr, size_t errlen);
} kp_connector;

/* Registers a scheme (process-wide, before any job runs). Returns 0 or -1 if full. */
int kp_connector_register(const kp_connector *c);

/* The connector for a URI's scheme, or NULL. */
const kp_connector *kp_connector_find(const char *uri);

#endif
