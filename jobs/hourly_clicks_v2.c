/* The seed job with the corrected rule: only clicks of users numbered above 50 count.
 * Same output shape and ids as hourly_clicks, so reprocessing overwrites in place. */
#include <inttypes.h>
#include <stdlib.h>
#include <kappa/kappa.h>

/* "user_51" → 51; -1 if the id does not have that shape. */
static long user_number(kp_str user)
{
    if (user.len <= 5 || user.len > 25 || memcmp(user.ptr, "user_", 5) != 0)
        return -1;
    long n = 0;
    for (size_t i = 5; i < user.len; i++) {
        if (user.ptr[i] < '0' || user.ptr[i] > '9')
            return -1;
        n = n * 10 + (user.ptr[i] - '0');
    }
    return n;
}

static kp_rc parse_click(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str item = kp_json_str(&j, "item_id");
    long user = user_number(kp_json_str(&j, "user_id"));
    int64_t ts = kp_json_int(&j, "timestamp", -1);
    if (item.len == 0 || ts < 0 || user < 0)
        return KP_BAD_INPUT;
    if (user <= 50)
        return KP_SKIP; /* the corrected rule */
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

KP_JOB(hourly_clicks_v2)
{
    kp_stream *clicks = kp_source(job, "clicks", .decode = parse_click,
                                  .out_of_order = 10 * KP_SECOND, .on_error = KP_POLICY_SKIP);
    kp_stream *counts = kp_count(kp_window(kp_key_by(clicks), kp_tumbling(KP_HOUR)),
                                 .emit = write_count, .uid = "hourly-click-count");
    kp_sink(counts, "hourly-click-index");
}
