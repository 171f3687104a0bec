/* A sliding window whose slide is larger than its size. */
#include <kappa/kappa.h>

KP_JOB(bad_window)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_sink(kp_count(kp_window(kp_key_by(in), kp_sliding(KP_MINUTE, KP_HOUR))), "out");
}
