/* A define step that gives up with kp_job_fail after building part of a graph. */
#include <kappa/kappa.h>

KP_JOB(job_fail)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_job_fail(job, "no configuration for region eu-west-9");
    kp_sink(in, "out"); /* a no-op after the failure */
}
