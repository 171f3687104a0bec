/* A window without an aggregate. */
#include <kappa/kappa.h>

KP_JOB(no_aggregate)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_window(kp_key_by(in), kp_tumbling(KP_MINUTE), .name = "lonely-window");
}
