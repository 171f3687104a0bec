/* A sink asking for a parallelism far above KP_MAX_PARALLELISM (defect 4: it used to overrun
 * the executor's fixed stack arrays). */
#include <kappa/kappa.h>

KP_JOB(huge_parallelism)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_sink(kp_count(kp_window(kp_key_by(in), kp_tumbling(KP_HOUR))), "out", .parallelism = 2000);
}
