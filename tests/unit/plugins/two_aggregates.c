/* Two aggregates on one window. */
#include <kappa/kappa.h>

KP_JOB(two_aggregates)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_windowed *w = kp_window(kp_key_by(in), kp_tumbling(KP_MINUTE), .name = "shared");
    kp_sink(kp_count(w), "a");
    kp_sink(kp_count(w), "b");
}
