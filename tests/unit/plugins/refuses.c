/* A define function that refuses the host (as KP_JOB's does on an ABI mismatch). */
#include <kappa/kappa.h>

static int define(const kp_api *api, kp_job *job)
{
    (void)api;
    (void)job;
    return -1;
}

__attribute__((visibility("default")))
const kp_plugin kappa_plugin = {KP_ABI_VERSION, sizeof(kp_plugin), "refuses", define};
