/* A window on a stream that was never keyed. */
#include <kappa/kappa.h>

KP_JOB(unkeyed_window)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_sink(kp_count(kp_window(in, kp_tumbling(KP_MINUTE))), "out");
}
