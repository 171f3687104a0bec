/* A job that defines nothing. */
#include <kappa/kappa.h>

KP_JOB(no_source)
{
    (void)job;
}
