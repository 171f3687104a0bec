/* A job built against a future ABI version. */
#include <kappa/kappa.h>

static int define(const kp_api *api, kp_job *job)
{
    (void)api;
    (void)job;
    return 0;
}

__attribute__((visibility("default")))
const kp_plugin kappa_plugin = {KP_ABI_VERSION + 41, sizeof(kp_plugin), "bad_abi", define};
