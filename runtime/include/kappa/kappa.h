/* <kappa/kappa.h> — the whole API a kappa job is written against.
 *
 * A job is a shared object (job.so) built from C that includes only this header and links
 * against nothing of kappa. It exports one symbol, `kappa_plugin` (written by KP_JOB), whose
 * define function builds a logical dataflow graph. The host passes the plugin a versioned
 * table of functions (kp_api); every kp_* call below goes through that table. Structs the
 * host and plugin exchange start with abi_version/struct_size and only ever grow at the end.
 *
 *     #include <kappa/kappa.h>
 *
 *     static kp_rc parse_click(kp_event *ev, kp_bytes raw) { ... kp_event_key(ev, item); ... }
 *
 *     KP_JOB(hourly_clicks)
 *     {
 *         kp_stream *clicks = kp_source(job, "clicks", .decode = parse_click,
 *                                       .out_of_order = 10 * KP_SECOND);
 *         kp_stream *counts = kp_count(kp_window(kp_key_by(clicks), kp_tumbling(KP_HOUR)),
 *                                      .emit = write_count);
 *         kp_sink(counts, "hourly-click-index");
 *     }
 *
 * Sources and sinks are named in the job and bound to a file, Kafka or Elasticsearch by the
 * runner's configuration, so one job.so serves tests and production without recompiling.
 *
 * Threads: a job's callbacks run on the subtask threads of the engine; one subtask never runs
 * two callbacks at once, but different subtasks run concurrently, so callbacks must not share
 * mutable globals. The define function runs once per process that loads the job.
 * Pointers passed to callbacks (kp_bytes, kp_str, kp_event, kp_doc) are valid only during the
 * call. */
#ifndef KAPPA_KAPPA_H
#define KAPPA_KAPPA_H

#pragma GCC system_header /* variadic option macros below may expand with no options */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KP_ABI_VERSION 1u

/* Event time and durations are milliseconds since the Unix epoch. */
typedef int64_t kp_time;
#define KP_MILLISECOND ((kp_time)1)
#define KP_SECOND      ((kp_time)1000)
#define KP_MINUTE      (60 * KP_SECOND)
#define KP_HOUR        (60 * KP_MINUTE)
#define KP_DAY         (24 * KP_HOUR)
#define KP_TIME_MIN    INT64_MIN
#define KP_TIME_MAX    INT64_MAX

/* A byte string that is not NUL-terminated. */
typedef struct kp_str {
    const char *ptr;
    size_t len;
} kp_str;
typedef kp_str kp_bytes;
#define KP_STR(s)   (int)(s).len, (s).ptr /* for printf's "%.*s" */
#define KP_LIT(lit) ((kp_str){(lit), sizeof(lit) - 1})
#define KP_CSTR(cs) ((kp_str){(cs), strlen(cs)})

/* Result of a user callback. */
typedef enum kp_rc {
    KP_OK = 0,        /* keep the record */
    KP_SKIP = 1,      /* drop the record on purpose (a filter rule), not an error */
    KP_BAD_INPUT = 2, /* malformed input: the source's decode-error policy applies */
    KP_ERROR = 3,     /* the job cannot go on: the task fails with this record */
} kp_rc;

/* Opaque handles. */
typedef struct kp_job kp_job;             /* the job being defined */
typedef struct kp_stream kp_stream;       /* a stream of records in the logical graph */
typedef struct kp_windowed kp_windowed;   /* a keyed stream cut into windows */
typedef struct kp_event kp_event;         /* one record: key, value, event time */
typedef struct kp_doc kp_doc;             /* an output document: id + JSON object */
typedef struct kp_collector kp_collector; /* where flat_map emits records */
typedef struct kp_ctx kp_ctx;             /* a keyed process function's view of its key */

/* A parsed JSON object: stack-allocate it; the host owns the layout. */
typedef struct kp_json {
    uint64_t opaque_[200];
} kp_json;

/* A window [start, end): end is exclusive, like Flink's TimeWindow. */
typedef struct kp_window {
    kp_time start;
    kp_time end;
} kp_window;

typedef enum kp_window_kind {
    KP_WINDOW_TUMBLING = 1,
    KP_WINDOW_SLIDING = 2,
    KP_WINDOW_SESSION = 3,
} kp_window_kind;

typedef struct kp_window_spec {
    kp_window_kind kind;
    kp_time size;   /* tumbling, sliding */
    kp_time slide;  /* sliding */
    kp_time gap;    /* session */
    kp_time offset; /* tumbling, sliding: windows start at offset + n * slide */
} kp_window_spec;

/* What a source does with a record its decode function calls KP_BAD_INPUT. */
typedef enum kp_error_policy {
    KP_POLICY_DEFAULT = 0, /* as configured by the runner (default: fail) */
    KP_POLICY_FAIL,        /* the job fails, naming the record */
    KP_POLICY_SKIP,        /* counted and dropped */
    KP_POLICY_DEAD_LETTER, /* counted and written, raw, to the dead-letter output */
} kp_error_policy;

/* ---- options: every operator takes these by designated initializers ---------------- */

#define KP_OP_COMMON                                                                               \
    uint32_t struct_size;                                                                          \
    const char *name; /* shown in plans and metrics; default derived from the operator */          \
    const char *uid;  /* stable id for state; default derived from the name */                     \
    int parallelism   /* 0 = the job's default */

typedef kp_rc (*kp_decode_fn)(kp_event *ev, kp_bytes raw);
typedef kp_rc (*kp_map_fn)(kp_event *ev);
typedef bool (*kp_filter_fn)(const kp_event *ev);
typedef kp_rc (*kp_flat_map_fn)(const kp_event *ev, kp_collector *out);
typedef kp_bytes (*kp_key_fn)(const kp_event *ev);

typedef struct kp_source_opts {
    KP_OP_COMMON;
    kp_decode_fn decode;      /* NULL: key empty, value = raw bytes, time = ingestion */
    kp_time out_of_order;     /* bounded out-of-orderness of event time */
    kp_time idle_timeout;     /* 0 = never idle; else an input silent this long is ignored */
    kp_error_policy on_error; /* for KP_BAD_INPUT */
} kp_source_opts;

typedef struct kp_map_opts {
    KP_OP_COMMON;
    kp_map_fn fn;
} kp_map_opts;

typedef struct kp_filter_opts {
    KP_OP_COMMON;
    kp_filter_fn fn;
} kp_filter_opts;

typedef struct kp_flat_map_opts {
    KP_OP_COMMON;
    kp_flat_map_fn fn;
} kp_flat_map_opts;

typedef struct kp_key_by_opts {
    KP_OP_COMMON;
    kp_key_fn fn; /* NULL: the key the source's decode set */
} kp_key_by_opts;

typedef struct kp_window_opts {
    KP_OP_COMMON;
    kp_time allowed_lateness; /* windows stay updatable this long after they fire */
} kp_window_opts;

/* Emit callbacks turn a window result into a document. They run once per (key, window)
 * firing; with allowed lateness a window can fire again, with the same id and a new value. */
typedef void (*kp_emit_int_fn)(kp_doc *doc, const kp_window *w, kp_str key, int64_t value);
typedef void (*kp_emit_double_fn)(kp_doc *doc, const kp_window *w, kp_str key, double value);
typedef void (*kp_emit_acc_fn)(kp_doc *doc, const kp_window *w, kp_str key, const void *acc);
typedef int64_t (*kp_int_field_fn)(const kp_event *ev);

typedef struct kp_agg_opts {
    KP_OP_COMMON;
    kp_int_field_fn value; /* sum/min/max: the number to aggregate */
    kp_emit_int_fn emit;   /* NULL: {"key","window_start","window_end","value"} */
    /* custom accumulators (kp_aggregate): fixed-size, trivially copyable */
    size_t acc_size;
    void (*init)(void *acc);
    void (*add)(void *acc, const kp_event *ev);
    void (*merge)(void *acc, const void *other); /* required for session windows */
    kp_emit_acc_fn emit_acc;
} kp_agg_opts;

/* Keyed process functions: per-key state and timers. For a key whose records all come from
 * one source partition, the order of its on_event and event-time on_timer calls, and what
 * they see (state, kp_ctx_watermark), is a function of the log: an event-time timer at t
 * fires after the key's records whose carried watermark is < t and before those whose
 * carried watermark is >= t (docs/semantics.md). The order across keys, and anything about
 * processing-time timers, depends on timing. */
typedef struct kp_process_opts {
    KP_OP_COMMON;
    size_t value_size; /* bytes of per-key value state (0 = none) */
    kp_rc (*on_event)(kp_ctx *ctx, const kp_event *ev);
    kp_rc (*on_timer)(kp_ctx *ctx, kp_time when, bool event_time);
    /* Set when every record of a key comes from one source partition (the log is partitioned
     * by this key, e.g. a Kafka topic keyed by it with the default partitioner). Event-time
     * timers of a key then also fire before any of its records whose partition's watermark
     * passed them, so records and timers interleave as the log says: a replay gives the same
     * calls in the same order. Unset (the default, Flink's semantics): timers fire when the
     * operator's watermark — the slowest input — passes them; correct for keys spread over
     * partitions, but how a key's timers interleave with its records then depends on timing
     * (docs/semantics.md). */
    bool key_in_one_partition;
} kp_process_opts;

typedef struct kp_sink_opts {
    KP_OP_COMMON;
} kp_sink_opts;

/* ---- the host's function table ----------------------------------------------------- */

typedef struct kp_api {
    uint32_t abi_version;
    uint32_t struct_size;
    /* job */
    void (*job_parallelism)(kp_job *job, int parallelism);
    void (*job_max_parallelism)(kp_job *job, int max_parallelism);
    void (*job_checkpoint_interval)(kp_job *job, kp_time interval);
    void (*job_fail)(kp_job *job, const char *message);
    /* graph */
    kp_stream *(*source)(kp_job *job, const char *name, const kp_source_opts *o);
    kp_stream *(*map)(kp_stream *in, const kp_map_opts *o);
    kp_stream *(*filter)(kp_stream *in, const kp_filter_opts *o);
    kp_stream *(*flat_map)(kp_stream *in, const kp_flat_map_opts *o);
    kp_stream *(*key_by)(kp_stream *in, const kp_key_by_opts *o);
    kp_windowed *(*window)(kp_stream *keyed, kp_window_spec spec, const kp_window_opts *o);
    kp_stream *(*late_records)(kp_windowed *w);
    kp_stream *(*aggregate)(kp_windowed *w, int kind, const kp_agg_opts *o);
    kp_stream *(*process)(kp_stream *keyed, const kp_process_opts *o);
    void (*sink)(kp_stream *in, const char *name, const kp_sink_opts *o);
    /* events */
    void (*event_set_key)(kp_event *ev, kp_bytes key);
    void (*event_set_value)(kp_event *ev, kp_bytes value);
    void (*event_set_time)(kp_event *ev, kp_time t);
    kp_bytes (*event_key)(const kp_event *ev);
    kp_bytes (*event_value)(const kp_event *ev);
    kp_time (*event_time)(const kp_event *ev);
    void (*collect)(kp_collector *out, kp_bytes key, kp_bytes value, kp_time t);
    /* JSON */
    int (*json_parse)(kp_json *j, kp_bytes raw);
    kp_str (*json_str)(kp_json *j, const char *field);
    int64_t (*json_int)(kp_json *j, const char *field, int64_t dflt);
    double (*json_double)(kp_json *j, const char *field, double dflt);
    int (*json_bool)(kp_json *j, const char *field, int dflt);
    /* documents */
    void (*doc_idv)(kp_doc *doc, const char *fmt, va_list ap);
    void (*doc_str)(kp_doc *doc, const char *field, kp_str value);
    void (*doc_int)(kp_doc *doc, const char *field, int64_t value);
    void (*doc_double)(kp_doc *doc, const char *field, double value);
    void (*doc_bool)(kp_doc *doc, const char *field, bool value);
    /* keyed process context */
    kp_str (*ctx_key)(kp_ctx *ctx);
    void *(*ctx_value)(kp_ctx *ctx, bool *exists);
    void (*ctx_value_clear)(kp_ctx *ctx);
    void (*ctx_timer)(kp_ctx *ctx, kp_time when, bool event_time);
    kp_time (*ctx_watermark)(kp_ctx *ctx);
    kp_time (*ctx_now)(kp_ctx *ctx);
    kp_doc *(*ctx_emit)(kp_ctx *ctx);
    void (*ctx_emit_done)(kp_ctx *ctx, kp_doc *doc);
    /* keyed process context: list and map state */
    void (*ctx_list_add)(kp_ctx *ctx, kp_bytes item);
    size_t (*ctx_list_len)(kp_ctx *ctx);
    kp_bytes (*ctx_list_get)(kp_ctx *ctx, size_t i);
    void (*ctx_list_clear)(kp_ctx *ctx);
    void (*ctx_map_put)(kp_ctx *ctx, kp_bytes key, kp_bytes value);
    int (*ctx_map_get)(kp_ctx *ctx, kp_bytes key, kp_bytes *value);
    int (*ctx_map_remove)(kp_ctx *ctx, kp_bytes key);
    size_t (*ctx_map_size)(kp_ctx *ctx);
    int (*ctx_map_next)(kp_ctx *ctx, size_t *cursor, kp_bytes *key, kp_bytes *value);
    void (*ctx_map_clear)(kp_ctx *ctx);
    /* added later; new members only ever go at the end (a plugin checks struct_size) */
    void (*ctx_timer_delete)(kp_ctx *ctx, kp_time when, bool event_time);
} kp_api;

/* The plugin's one exported symbol. */
typedef struct kp_plugin {
    uint32_t abi_version; /* KP_ABI_VERSION the plugin was built against */
    uint32_t struct_size; /* sizeof(kp_plugin) at build time */
    const char *name;     /* the job's name */
    int (*define)(const kp_api *api, kp_job *job);
} kp_plugin;

#define KP_PLUGIN_SYMBOL "kappa_plugin"

/* Set by KP_JOB's define function (in a plugin) or by the host itself. */
extern __attribute__((visibility("hidden"))) const kp_api *kp__api;

/* Defines a job: KP_JOB(name) { ...build the graph from `job`... } */
#define KP_JOB(jobname)                                                                            \
    static void kp_job_body_(kp_job *job);                                                         \
    __attribute__((visibility("hidden"))) const kp_api *kp__api;                                   \
    static int kp_job_define_(const kp_api *api, kp_job *job)                                      \
    {                                                                                              \
        if (api->abi_version != KP_ABI_VERSION || api->struct_size < sizeof(kp_api))               \
            return -1;                                                                             \
        kp__api = api;                                                                             \
        kp_job_body_(job);                                                                         \
        return 0;                                                                                  \
    }                                                                                              \
    __attribute__((visibility("default")))                                                         \
    const kp_plugin kappa_plugin = {KP_ABI_VERSION, sizeof(kp_plugin), #jobname, kp_job_define_};  \
    static void kp_job_body_(kp_job *job)

/* ---- the API, as calls through the table --------------------------------------------- */

static inline kp_window_spec kp_tumbling(kp_time size)
{
    return (kp_window_spec){KP_WINDOW_TUMBLING, size, size, 0, 0};
}
static inline kp_window_spec kp_sliding(kp_time size, kp_time slide)
{
    return (kp_window_spec){KP_WINDOW_SLIDING, size, slide, 0, 0};
}
static inline kp_window_spec kp_session(kp_time gap)
{
    return (kp_window_spec){KP_WINDOW_SESSION, 0, 0, gap, 0};
}

static inline void kp_job_parallelism(kp_job *job, int p)
{
    kp__api->job_parallelism(job, p);
}
static inline void kp_job_max_parallelism(kp_job *job, int k)
{
    kp__api->job_max_parallelism(job, k);
}
static inline void kp_job_checkpoint_interval(kp_job *job, kp_time t)
{
    kp__api->job_checkpoint_interval(job, t);
}
/* Marks the definition as failed; the runner reports `message` and runs nothing. */
static inline void kp_job_fail(kp_job *job, const char *message)
{
    kp__api->job_fail(job, message);
}

#define KP_OPTS_(type, ...) (&(type){.struct_size = sizeof(type), __VA_ARGS__})

#define kp_source(job, name, ...)                                                                  \
    kp__api->source((job), (name), KP_OPTS_(kp_source_opts, __VA_ARGS__))
#define kp_map(in, fn_, ...) kp__api->map((in), KP_OPTS_(kp_map_opts, .fn = (fn_), __VA_ARGS__))
#define kp_filter(in, fn_, ...)                                                                    \
    kp__api->filter((in), KP_OPTS_(kp_filter_opts, .fn = (fn_), __VA_ARGS__))
#define kp_flat_map(in, fn_, ...)                                                                  \
    kp__api->flat_map((in), KP_OPTS_(kp_flat_map_opts, .fn = (fn_), __VA_ARGS__))
#define kp_key_by(in, ...) kp__api->key_by((in), KP_OPTS_(kp_key_by_opts, __VA_ARGS__))
#define kp_window(keyed, spec, ...)                                                                \
    kp__api->window((keyed), (spec), KP_OPTS_(kp_window_opts, __VA_ARGS__))
/* Records that arrive after their window's end + allowed lateness, as a stream. */
#define kp_late_records(w) kp__api->late_records(w)

enum { KP_AGG_COUNT = 1, KP_AGG_SUM, KP_AGG_MIN, KP_AGG_MAX, KP_AGG_CUSTOM };
#define kp_count(w, ...) kp__api->aggregate((w), KP_AGG_COUNT, KP_OPTS_(kp_agg_opts, __VA_ARGS__))
#define kp_sum(w, ...)   kp__api->aggregate((w), KP_AGG_SUM, KP_OPTS_(kp_agg_opts, __VA_ARGS__))
#define kp_min(w, ...)   kp__api->aggregate((w), KP_AGG_MIN, KP_OPTS_(kp_agg_opts, __VA_ARGS__))
#define kp_max(w, ...)   kp__api->aggregate((w), KP_AGG_MAX, KP_OPTS_(kp_agg_opts, __VA_ARGS__))
#define kp_aggregate(w, ...)                                                                       \
    kp__api->aggregate((w), KP_AGG_CUSTOM, KP_OPTS_(kp_agg_opts, __VA_ARGS__))
#define kp_process(keyed, ...) kp__api->process((keyed), KP_OPTS_(kp_process_opts, __VA_ARGS__))
#define kp_sink(in, name, ...) kp__api->sink((in), (name), KP_OPTS_(kp_sink_opts, __VA_ARGS__))

static inline void kp_event_key(kp_event *ev, kp_bytes key)
{
    kp__api->event_set_key(ev, key);
}
static inline void kp_event_value(kp_event *ev, kp_bytes value)
{
    kp__api->event_set_value(ev, value);
}
static inline void kp_event_time(kp_event *ev, kp_time t)
{
    kp__api->event_set_time(ev, t);
}
static inline kp_bytes kp_event_get_key(const kp_event *ev)
{
    return kp__api->event_key(ev);
}
static inline kp_bytes kp_event_get_value(const kp_event *ev)
{
    return kp__api->event_value(ev);
}
static inline kp_time kp_event_get_time(const kp_event *ev)
{
    return kp__api->event_time(ev);
}
static inline void kp_collect(kp_collector *out, kp_bytes key, kp_bytes value, kp_time t)
{
    kp__api->collect(out, key, value, t);
}

/* JSON: kp_json_parse returns 0 for one valid JSON object, -1 otherwise. Lookups of absent or
 * mistyped fields return an empty string / the default. */
static inline int kp_json_parse(kp_json *j, kp_bytes raw)
{
    return kp__api->json_parse(j, raw);
}
static inline kp_str kp_json_str(kp_json *j, const char *field)
{
    return kp__api->json_str(j, field);
}
static inline int64_t kp_json_int(kp_json *j, const char *field, int64_t dflt)
{
    return kp__api->json_int(j, field, dflt);
}
static inline double kp_json_double(kp_json *j, const char *field, double dflt)
{
    return kp__api->json_double(j, field, dflt);
}
static inline int kp_json_bool(kp_json *j, const char *field, int dflt)
{
    return kp__api->json_bool(j, field, dflt);
}

/* Documents: the id (printf-style) and typed fields of the JSON object a sink writes. */
__attribute__((format(printf, 2, 3))) static inline void kp_doc_id(kp_doc *doc, const char *fmt,
                                                                   ...)
{
    va_list ap;
    va_start(ap, fmt);
    kp__api->doc_idv(doc, fmt, ap);
    va_end(ap);
}
static inline void kp_doc_str(kp_doc *doc, const char *field, kp_str value)
{
    kp__api->doc_str(doc, field, value);
}
static inline void kp_doc_int(kp_doc *doc, const char *field, int64_t value)
{
    kp__api->doc_int(doc, field, value);
}
static inline void kp_doc_double(kp_doc *doc, const char *field, double value)
{
    kp__api->doc_double(doc, field, value);
}
static inline void kp_doc_bool(kp_doc *doc, const char *field, bool value)
{
    kp__api->doc_bool(doc, field, value);
}

/* Keyed process context. */
static inline kp_str kp_ctx_key(kp_ctx *ctx)
{
    return kp__api->ctx_key(ctx);
}
/* The key's value state (value_size bytes, zeroed when new); *exists says if it was set. */
static inline void *kp_ctx_value(kp_ctx *ctx, bool *exists)
{
    return kp__api->ctx_value(ctx, exists);
}
static inline void kp_ctx_value_clear(kp_ctx *ctx)
{
    kp__api->ctx_value_clear(ctx);
}
/* Registers a timer of the current key at `when`: event time (fires when the watermark
 * reaches it, and before any record of the key whose carried watermark has reached it) or
 * processing time (fires when the wall clock, in ms, reaches it). The same key, time and kind
 * registered twice is one timer. */
static inline void kp_ctx_timer_event(kp_ctx *ctx, kp_time when)
{
    kp__api->ctx_timer(ctx, when, true);
}
static inline void kp_ctx_timer_processing(kp_ctx *ctx, kp_time when)
{
    kp__api->ctx_timer(ctx, when, false);
}
/* Deletes the current key's pending timer at `when` of that kind (event_time true: event
 * time), as Flink's deleteEventTimeTimer / deleteProcessingTimeTimer; no effect if there is
 * none. A function that moves a deadline deletes the old timer and registers the new one, so
 * a key has one pending timer, not one per record. A key whose value is cleared
 * (kp_ctx_value_clear), whose list and map state are empty and which has no pending timer
 * holds no memory: it is removed from the operator's state. */
static inline void kp_timer_delete(kp_ctx *ctx, kp_time when, bool event_time)
{
    kp__api->ctx_timer_delete(ctx, when, event_time);
}
/* The watermark as this call may see it, deterministically (a function of the log): in
 * on_event the record's carried watermark (its source partition's watermark through the
 * records before it); in on_timer of an event-time timer the timer's time. In on_timer of a
 * processing-time timer: the operator's current watermark (not deterministic). */
static inline kp_time kp_ctx_watermark(kp_ctx *ctx)
{
    return kp__api->ctx_watermark(ctx);
}
static inline kp_time kp_ctx_now(kp_ctx *ctx)
{
    return kp__api->ctx_now(ctx);
}
/* List state of the current key: items are copied in; kp_ctx_list_get's bytes stay valid until
 * the key's list changes. */
static inline void kp_ctx_list_add(kp_ctx *ctx, kp_bytes item)
{
    kp__api->ctx_list_add(ctx, item);
}
static inline size_t kp_ctx_list_len(kp_ctx *ctx)
{
    return kp__api->ctx_list_len(ctx);
}
static inline kp_bytes kp_ctx_list_get(kp_ctx *ctx, size_t i)
{
    return kp__api->ctx_list_get(ctx, i);
}
static inline void kp_ctx_list_clear(kp_ctx *ctx)
{
    kp__api->ctx_list_clear(ctx);
}
/* Map state of the current key (byte keys to byte values, copied in). get returns 1 and sets
 * *value if present, else 0; remove returns 1 if it removed something. Returned bytes stay valid
 * until the key's map changes. Iterate with size_t cursor = 0; while (kp_ctx_map_next(ctx,
 * &cursor, &k, &v)) ...; the map must not change during the iteration. */
static inline void kp_ctx_map_put(kp_ctx *ctx, kp_bytes key, kp_bytes value)
{
    kp__api->ctx_map_put(ctx, key, value);
}
static inline int kp_ctx_map_get(kp_ctx *ctx, kp_bytes key, kp_bytes *value)
{
    return kp__api->ctx_map_get(ctx, key, value);
}
static inline int kp_ctx_map_remove(kp_ctx *ctx, kp_bytes key)
{
    return kp__api->ctx_map_remove(ctx, key);
}
static inline size_t kp_ctx_map_size(kp_ctx *ctx)
{
    return kp__api->ctx_map_size(ctx);
}
static inline int kp_ctx_map_next(kp_ctx *ctx, size_t *cursor, kp_bytes *key, kp_bytes *value)
{
    return kp__api->ctx_map_next(ctx, cursor, key, value);
}
static inline void kp_ctx_map_clear(kp_ctx *ctx)
{
    kp__api->ctx_map_clear(ctx);
}
/* Starts an output document; finish it with kp_ctx_emit_done. */
static inline kp_doc *kp_ctx_emit(kp_ctx *ctx)
{
    return kp__api->ctx_emit(ctx);
}
static inline void kp_ctx_emit_done(kp_ctx *ctx, kp_doc *doc)
{
    kp__api->ctx_emit_done(ctx, doc);
}

#ifdef __cplusplus
}
#endif

#endif
