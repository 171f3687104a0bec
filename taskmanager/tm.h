/* What the pieces of kappa-taskmanager share: its options (flags of main.c), its identity, and
 * the log line format. The daemon is a control-plane client (session.c) that deploys jobs
 * (deployment.c) from plugins it fetched and verified (plugin_cache.c); see docs/cluster.md,
 * "Taskmanager". */
#ifndef KP_TM_H
#define KP_TM_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define KP_TM_VERSION "0.1.0"

/* Hex digits of a taskmanager instance id (16 random bytes) and its NUL. */
#define KP_TM_ID_LEN 33

typedef struct kp_tm_options {
    char jm_host[256];
    char jm_port[16];
    const char *bind;         /* address of the data-plane listener, advertised to the JM */
    int slots;                /* task slots offered */
    int slot_mb;              /* memory budget of one slot (memory_budget.h) */
    int data_port;            /* 0 = a free port */
    const char *state_dir;    /* instance id, plugin cache, job state */
    int heartbeat_ms;         /* until the RegisterAck says otherwise */
    int heartbeat_timeout_ms; /* until the RegisterAck says otherwise */
} kp_tm_options;

/* Set by SIGINT/SIGTERM (main.c): the daemon cancels what it runs and exits. */
extern volatile sig_atomic_t kp_tm_stop;

/* One log line on stderr: "<UTC time> kappa-taskmanager: <message>". @locality any thread
 * (stdio locks the stream) */
void kp_tm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The instance id kept in <state_dir>/instance-id, created (16 random bytes, hex) on the first
 * start; the same id across reconnects and restarts lets the jobmanager recognise the
 * taskmanager. 0, or -1 with the reason. @locality main thread, at start */
int kp_tm_identity_load(const char *state_dir, char id[KP_TM_ID_LEN], char *err, size_t errlen);

/* mkdir -p for `path` (mode 0700 for what it creates). 0, or -1 with errno set.
 * @locality any thread */
int kp_tm_mkdirs(const char *path);

/* Removes a directory tree without following symbolic links; logs what it could not remove.
 * @locality any thread */
void kp_tm_rmtree(const char *path);

#endif
