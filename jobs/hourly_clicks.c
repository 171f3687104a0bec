/* The seed job: clicks per item per event-time hour.
 *
 * Input: {"user_id":"user_7","item_id":"item_42","timestamp":1700000000000} on source
 * "clicks". Output on sink "hourly-click-index": {item_id, click_count, window_start,
 * window_end} with id "item_id|window_end", so a replay overwrites the same documents. */
#include <inttypes.h>
#include <kappa/kappa.h>

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

KP_JOB(hourly_clicks)
{
    kp_stream *clicks = kp_source(job, "clicks", .decode = parse_click,
                                  .out_of_order = 10 * KP_SECOND, .on_error = KP_POLICY_SKIP);
    kp_stream *counts = kp_count(kp_window(kp_key_by(clicks), kp_tumbling(KP_HOUR)),
                                 .emit = write_count, .uid = "hourly-click-count");
    kp_sink(counts, "hourly-click-index");
}
