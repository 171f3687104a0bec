/* Loading job plugins (job.so): file checks, the entry symbol, the ABI version, and running
 * the define step into a validated kp_job. */
#ifndef KP_PLUGIN_H
#define KP_PLUGIN_H

#include "graph.h"

typedef struct kp_plugin_handle kp_plugin_handle;

/* Loads `path` and defines its job. Returns NULL with a message that says what is wrong and
 * what to do in errstr (parallelism > 0 overrides the job's default): not a file, not an ELF shared object, no `kappa_plugin` symbol, another
 * ABI version, or a define step that failed. @locality any thread, one at a time */
kp_plugin_handle *kp_plugin_load(const char *path, int parallelism, char *errstr, size_t errlen);

/* The job it defined; owned by the handle. */
kp_job *kp_plugin_job(kp_plugin_handle *h);

/* Frees the job and unloads the code. Accepts NULL. */
void kp_plugin_close(kp_plugin_handle *h);

#endif
