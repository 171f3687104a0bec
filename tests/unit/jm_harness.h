/* What the jobmanager tests drive: a real kappa-jobmanager process on free 127.0.0.1 ports,
 * HTTP requests to its REST API (libcurl), and a fake taskmanager speaking the control
 * protocol over TCP (frames of proto/frame.h). Every helper asserts on misuse; every process
 * started is stopped by jm_stop. */
#ifndef KP_JM_HARNESS_H
#define KP_JM_HARNESS_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

typedef struct jm_proc {
    pid_t pid;
    char rest[64]; /* http://127.0.0.1:PORT */
    int rpc_port;
    char dir[256]; /* its --state-dir */
} jm_proc;

/* Starts kappa-jobmanager (path in $KAPPA_JOBMANAGER) with --state-dir dir, port 0 for both
 * ports and the extra flags (NULL-terminated), and reads its bound ports. Its log goes to
 * dir.log. */
void jm_start(jm_proc *jm, const char *dir, const char *const *extra);
/* SIGTERM and wait; asserts it exits 0 (it did not crash). */
void jm_stop(jm_proc *jm);
/* Starts a real kappa-taskmanager ($KAPPA_TM) registering at jm's control port with `slots`,
 * its state in state_dir and its log in state_dir.log. */
pid_t tm_proc_start(const jm_proc *jm, const char *state_dir, int slots);
/* SIGTERM (SIGKILL after 10 s) and wait. */
void tm_proc_stop(pid_t pid);
/* SIGKILL (a crash, for failover tests) and wait. */
void tm_proc_kill(pid_t pid);
/* SIGKILLs every jobmanager and taskmanager this process started and did not stop: for a
 * test's .fini, so a failed assertion leaves no process behind. Does not assert. */
void jm_kill_all(void);
/* True while the process runs. */
int jm_alive(jm_proc *jm);

typedef struct http_reply {
    long status;
    json_t *body; /* NULL when not JSON */
} http_reply;

/* A request; token may be NULL. */
http_reply http_req(const jm_proc *jm, const char *method, const char *path, const char *token);
/* POST /jobs with a manifest part and a plugin part of the given bytes. */
http_reply http_submit(const jm_proc *jm, const char *manifest, const void *plugin, size_t len,
                       const char *token);
/* POST /jobs with a raw body and content type. */
http_reply http_post_raw(const jm_proc *jm, const char *ctype, const void *body, size_t len);
void http_free(http_reply *r);

/* The state of a job from GET /jobs/:id ("" if it cannot be read). */
const char *job_state(const jm_proc *jm, const char *id, char *buf, size_t len);
/* Polls GET /jobs/:id until its state is `want`; asserts it gets there within 20 s. */
void wait_job_state(const jm_proc *jm, const char *id, const char *want);
/* Polls GET /taskmanagers until it lists n of them; asserts within 20 s. */
void wait_taskmanagers(const jm_proc *jm, size_t n);

/* A manifest for a job named `name` whose graph has one task per entry of par[] (ids 0,1,..),
 * with the plugin's sha256 and a correct graph hash. `extra` is merged in (may be NULL). New
 * string, free() it. */
char *make_manifest(const char *name, const char *sha, const int *par, size_t ntasks,
                    json_t *extra);
void sha256_hex(const void *data, size_t len, char hex[65]);
/* The bytes of a file (asserted to exist). */
void *read_all(const char *path, size_t *len);

/* --- fake taskmanager --- */

int tm_connect(int port);
void tm_send(int fd, kp_frame_type type, const ProtobufCMessage *msg);
/* Raw bytes. -1 if the peer closed. */
int tm_send_raw(int fd, const void *p, size_t n);
/* Reads frames until one of `type` arrives (others are skipped); its payload (malloc'd) and
 * length. Asserts it arrives within 10 s. */
uint8_t *tm_expect(int fd, kp_frame_type type, size_t *len);
/* Hello as taskmanager `id` with `slots`, then waits for Hello and RegisterAck. */
int tm_register(int port, const char *id, unsigned slots);
void tm_heartbeat(int fd, uint64_t seq);
/* True when the peer closed the connection (reads until EOF or a 5 s timeout). */
int tm_closed_by_peer(int fd);

#endif
