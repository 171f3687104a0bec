/* A valid job: source -> key_by -> tumbling count -> sink, plus a late side output. */
#include <kappa/kappa.h>

static kp_rc parse(kp_event *ev, kp_bytes raw)
{
    kp_event_key(ev, raw);
    return KP_OK;
}

KP_JOB(ok_job)
{
    kp_job_parallelism(job, 2);
    kp_stream *in = kp_source(job, "clicks", .decode = parse, .out_of_order = KP_SECOND);
    kp_windowed *w = kp_window(kp_key_by(in), kp_tumbling(KP_MINUTE));
    kp_sink(kp_count(w), "counts");
    kp_sink(kp_late_records(w), "late");
}
