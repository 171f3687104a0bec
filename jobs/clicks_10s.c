/* The seed job with 10 s tumbling windows, for the end-to-end latency benchmark
 * (bench/latency): clicks per item per event-time 10 s.
 *
 * Input and output as jobs/hourly_clicks.c: {"user_id","item_id","timestamp"} on source
 * "clicks"; {item_id, click_count, window_start, window_end} with id "item_id|window_end" on
 * sink "click-index-10s". The bounded out-of-orderness is small (CLICKS_10S_OUT_OF_ORDER):
 * the benchmark's events carry their production time and arrive in order per partition, and
 * a window cannot fire before an event this much past its end has been read, so this bound
 * is a floor of the measured latency. */
#include <inttypes.h>
#include <kappa/kappa.h>

#define CLICKS_10S_WINDOW       (10 * KP_SECOND)
#define CLICKS_10S_OUT_OF_ORDER (100 * KP_MILLISECOND)

static kp_rc parse_click(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str item = kp_json_str(&j, "item_id");
    int64_t ts = kp_json_int(&j, "timestamp", -1);
    if (item.len == 0 || ts < 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, item);
    kp_event_time(ev, ts);
    return KP_OK;
}

static void write_count(kp_doc *doc, const kp_window *w, kp_str item, int64_t count)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(item), w->end);
    kp_doc_str(doc, "item_id", item);
    kp_doc_int(doc, "click_count", count);
    kp_doc_int(doc, "window_start", w->start);
    kp_doc_int(doc, "window_end", w->end);
}

KP_JOB(clicks_10s)
{
    kp_stream *clicks =
        kp_source(job, "clicks", .decode = parse_click, .out_of_order = CLICKS_10S_OUT_OF_ORDER,
                  .on_error = KP_POLICY_SKIP);
    kp_stream *counts = kp_count(kp_window(kp_key_by(clicks), kp_tumbling(CLICKS_10S_WINDOW)),
                                 .emit = write_count, .uid = "click-count-10s");
    kp_sink(counts, "click-index-10s");
}
