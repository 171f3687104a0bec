/* The right ABI version but a truncated struct and no define function. */
#include <kappa/kappa.h>

__attribute__((visibility("default")))
const kp_plugin kappa_plugin = {KP_ABI_VERSION, 8, "malformed", NULL};
