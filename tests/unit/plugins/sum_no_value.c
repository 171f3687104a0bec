/* kp_sum without .value. */
#include <kappa/kappa.h>

KP_JOB(sum_no_value)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_sink(kp_sum(kp_window(kp_key_by(in), kp_tumbling(KP_MINUTE)), .name = "bad-sum"), "out");
}
