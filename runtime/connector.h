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
    int32_t partition; /* origin, for errors and dead letters; -1 for files */
    int64_t offset;    /* byte offset (files) or Kafka offset */
} kp_raw;

typedef enum kp_poll_rc {
    KP_POLL_RECORDS = 0, /* *n > 0 records */
    KP_POLL_EMPTY,       /* nothing right now: try again */
    KP_POLL_EOF,         /* bounded input finished */
    KP_POLL_ERROR,       /* errstr says why */
} kp_poll_rc;

typedef struct kp_source_reader kp_source_reader;
struct kp_source_reader {
    /* Up to `max` records into `out`, waiting at most timeout_ms. */
    kp_poll_rc (*poll)(kp_source_reader *r, kp_raw *out, int max, int *n, int timeout_ms,
                       char *errstr, size_t errlen);
    void (*close)(kp_source_reader *r);
};

typedef struct kp_sink_writer kp_sink_writer;
struct kp_sink_writer {
    /* Queues one document. Returns 0 or -1 with errstr. */
    int (*write)(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                 size_t errlen);
    /* Returns only when everything written before it is durable/acknowledged. */
    int (*flush)(kp_sink_writer *w, char *errstr, size_t errlen);
    void (*close)(kp_sink_writer *w);
};

/* Where and how one endpoint is bound. */
typedef struct kp_endpoint {
    const char *name; /* the job's name for it */
    const char *uri;  /* scheme:rest */
    int subtask;      /* which reader/writer this is */
    int parallelism;
} kp_endpoint;

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
