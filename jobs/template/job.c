/* A kappa job template: copy this directory, rename, and edit.
 *
 * A job is a shared object built against <kappa/kappa.h> only. KP_JOB(name) defines the one
 * exported symbol; its body builds the dataflow graph once, when the job is loaded. Callbacks
 * (decode, emit, ...) then run on the engine's subtask threads, many at a time, so they must not
 * share mutable globals.
 *
 * Build:  make            (uses `pkg-config --cflags kappa`)
 * Run:    kappa run --local ./job.so --source events=file:events.ndjson \
 *                                    --sink counts=stdout:
 * Input:  one JSON object per line, e.g. {"key":"a","ts":1700000000000}
 * Output: per key and minute, {"key":"a","count":3,"window_start":...,"window_end":...} */
#include <inttypes.h>
#include <kappa/kappa.h>

/* Turns one raw record into an event: its key and its event time (ms). Return KP_BAD_INPUT
 * for malformed input (the source's on_error policy decides: fail, skip or dead-letter) and
 * KP_SKIP to drop a record on purpose. */
static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str key = kp_json_str(&j, "key");
    int64_t ts = kp_json_int(&j, "ts", -1);
    if (key.len == 0 || ts < 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, key);
    kp_event_time(ev, ts);
    return KP_OK;
}

/* Turns one window result into the output document. The id makes writes idempotent: a
 * replay overwrites the same document. */
static void emit(kp_doc *doc, const kp_window *w, kp_str key, int64_t count)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), w->end);
    kp_doc_str(doc, "key", key);
    kp_doc_int(doc, "count", count);
    kp_doc_int(doc, "window_start", w->start);
    kp_doc_int(doc, "window_end", w->end);
}

KP_JOB(template_job)
{
    kp_job_parallelism(job, 2);
    kp_stream *events = kp_source(job, "events", .decode = decode,
                                  .out_of_order = 5 * KP_SECOND, /* bounded disorder */
                                  .idle_timeout = 30 * KP_SECOND, .on_error = KP_POLICY_SKIP);
    kp_windowed *minutes =
        kp_window(kp_key_by(events), kp_tumbling(KP_MINUTE), .allowed_lateness = 10 * KP_SECOND);
    kp_sink(kp_count(minutes, .emit = emit, .uid = "per-minute-count"), "counts");
    kp_sink(kp_late_records(minutes), "late-events"); /* optional side output */
}
