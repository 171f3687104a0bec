/* A stateless job for exactly-once tests of sinks: every click is copied to the sink as it
 * came, its document id the whole record (unique per event in the tests' inputs), its time
 * the click's "timestamp". No keyed state, so a run restores from a checkpoint with nothing
 * but source positions and sink state (tests/integration/test_kafka_connectors.c). */
#include <kappa/kappa.h>

static kp_rc parse_click(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    int64_t ts = kp_json_int(&j, "timestamp", -1);
    if (ts < 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, raw);
    kp_event_value(ev, raw);
    kp_event_time(ev, ts);
    return KP_OK;
}

KP_JOB(click_copy)
{
    kp_stream *clicks = kp_source(job, "clicks", .decode = parse_click,
                                  .out_of_order = 10 * KP_SECOND, .on_error = KP_POLICY_SKIP);
    kp_sink(clicks, "copies");
}
