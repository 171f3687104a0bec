/* A stream that ends nowhere. */
#include <kappa/kappa.h>

static bool keep(const kp_event *ev)
{
    (void)ev;
    return true;
}

KP_JOB(no_sink)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_filter(in, keep, .name = "dangling-filter");
}
