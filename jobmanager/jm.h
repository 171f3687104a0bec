/* The jobmanager's shared state: the job registry, the registered taskmanagers and the
 * configuration, all behind one mutex (kp_jm_t.lock). Two threads touch it: libmicrohttpd's
 * REST thread (rest.c) and the control-plane thread (control.c), which also drives every
 * timed transition (heartbeat timeouts, restart delays). Traffic is a few requests and frames
 * per second, so one lock keeps the state machine easy to read; nothing blocks while holding
 * it except small nonblocking socket writes and the atomic rewrite of the job list.
 *
 * Files: main.c (flags, start, stop), registry.c (jobs, states, persistence), lifecycle.c
 * (what the job state machine does on each event), scheduler.c (slots), control.c (TCP
 * control plane), rest.c (HTTP), manifest.c (checking a submission), uploads.c (plugin
 * files). See docs/cluster.md, "Jobmanager". */
#ifndef KP_JM_H
#define KP_JM_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "clock.h"

#define KP_JM_ID_LEN         33 /* 32 hex digits of a job id and the NUL */
#define KP_JM_SHA_LEN        65 /* 64 hex digits of a sha256 and the NUL */
#define KP_JM_NAME_MAX       128
#define KP_JM_ADDR_MAX       256
#define KP_JM_TM_MAX         256  /* registered taskmanagers (live and lost) kept at once */
#define KP_JM_SLOTS_MAX      1024 /* slots one taskmanager may offer */
#define KP_JM_PAR_MAX        1024 /* largest task parallelism accepted */
#define KP_JM_EXCEPTIONS_MAX 100  /* transitions with a cause kept per job, newest */

typedef enum kp_job_state {
    KP_JOB_CREATED,
    KP_JOB_RUNNING,
    KP_JOB_FAILING,
    KP_JOB_RESTARTING,
    KP_JOB_CANCELLING,
    KP_JOB_CANCELED,
    KP_JOB_FAILED,
    KP_JOB_FINISHED,
    KP_JOB_STATE_N_
} kp_job_state;

/* A subtask's state as the taskmanagers report it (TaskState.State), plus LOST: its
 * taskmanager went away. */
typedef enum kp_sub_state {
    KP_SUB_NONE,
    KP_SUB_DEPLOYING,
    KP_SUB_RUNNING,
    KP_SUB_FINISHED,
    KP_SUB_CANCELED,
    KP_SUB_FAILED,
    KP_SUB_LOST,
} kp_sub_state;

typedef enum kp_restart_kind {
    KP_RESTART_FIXED,
    KP_RESTART_EXPONENTIAL,
    KP_RESTART_NONE,
} kp_restart_kind;

typedef struct kp_restart_t {
    kp_restart_kind kind;
    uint32_t attempts;     /* restarts allowed after the first run */
    uint32_t delay_ms;     /* fixed delay, or the first exponential delay */
    uint32_t max_delay_ms; /* exponential: the cap */
} kp_restart_t;

typedef struct kp_jm_task_t {
    int id; /* head node id: the task's id everywhere */
    char name[KP_JM_NAME_MAX];
    uint32_t parallelism;
    bool source; /* no upstream task: checkpoints are triggered at its subtasks */
} kp_jm_task_t;

#define KP_JM_STATS_MAX 8192 /* a connector's stats JSON (exec_live.h, KP_LIVE_JSON_MAX) */

typedef struct kp_jm_sub_t {
    int task_id;
    uint32_t subtask;
    int tm; /* index into kp_jm_t.tms, -1 = not placed */
    kp_sub_state state;
    bool has_metrics; /* the last Metrics report of this attempt, if any */
    uint64_t records_in, records_out;
    kp_time watermark_ms;
    uint64_t bytes_in, bytes_out;                       /* metrics_keep.c: the rest of the report */
    uint64_t state_bytes;                               /* keyed state, memory + RocksDB files */
    double ratio_backpressured, ratio_idle, ratio_busy; /* < 0: not measured yet */
    char source_json[KP_JM_STATS_MAX], sink_json[KP_JM_STATS_MAX]; /* "" = none */
} kp_jm_sub_t;

typedef struct kp_jm_job_t {
    char id[KP_JM_ID_LEN];
    char name[KP_JM_NAME_MAX];
    kp_job_state state;
    kp_time start_time, end_time; /* wall ms; end -1 while not terminal */
    kp_time timestamps[KP_JOB_STATE_N_];
    uint32_t attempt;
    uint64_t epoch; /* fencing token of the current deploy, 0 = never deployed */
    char plugin_sha256[KP_JM_SHA_LEN];
    uint64_t plugin_size;
    char graph_hash[KP_JM_SHA_LEN];
    uint32_t parallelism; /* the -p override from the manifest, 0 = job default */
    json_t *manifest;     /* the submitted manifest (owned): bindings, conf, start, graph */
    kp_jm_task_t *tasks;
    size_t ntasks;
    uint32_t slots;    /* slots needed: the largest task parallelism */
    kp_jm_sub_t *subs; /* every subtask of every task, task by task */
    size_t nsubs;
    bool deployed;      /* this attempt holds slots (subs[].tm are set) */
    json_t *exceptions; /* [{time, from, to, message}] (owned) */
    char waiting_reason[256];
    kp_restart_t restart;
    kp_time restart_at_mono;       /* RESTARTING: when to deploy again */
    kp_time cancel_deadline_mono;  /* FAILING/CANCELLING: stop waiting for acks then */
    kp_time deploy_deadline_mono;  /* deployed: every subtask RUNNING by then, or it fails */
    char replaces[KP_JM_ID_LEN];   /* job to cancel once this one runs ("" = none) */
    kp_ckpt_config ckpt;           /* resolved: manifest > graph > cluster defaults (dir points
                                     into the manifest or the configuration) */
    char restore_path[4096];       /* _metadata the current attempt restores ("" = fresh start):
                                     the manifest's from_checkpoint, then the latest completed */
    struct kp_jm_ckpt *ckpt_state; /* checkpoints.c: coordinator and statistics (owned) */
} kp_jm_job_t;

typedef struct kp_jm_conn_t kp_jm_conn_t; /* control.c */

typedef struct kp_jm_tm_t {
    bool alive;
    char id[KP_JM_NAME_MAX];
    char data_address[KP_JM_ADDR_MAX];
    char build[64];
    uint32_t slots;
    kp_time last_heartbeat_ms;   /* wall, for REST */
    kp_time last_heartbeat_mono; /* for the timeout */
    kp_jm_conn_t *conn;          /* its control connection while alive */
    uint64_t rss_bytes;          /* from its last Heartbeat; 0 = not reported */
    double cpu_seconds;
    char *log; /* its last KP_JM_TM_LOG_MAX bytes of log lines (Heartbeat.log_tail), malloc'd */
    size_t log_len;
} kp_jm_tm_t;

#define KP_JM_TM_LOG_MAX (64 * 1024)

/* Appends a taskmanager's new log lines, keeping the last KP_JM_TM_LOG_MAX bytes (whole
 * lines). @locks jm->lock */
void kp_jm_tm_log_append(kp_jm_tm_t *tm, const char *text);

typedef struct kp_jm_config_t {
    const char *bind;
    int rest_port, rpc_port;
    const char *state_dir;
    char token[256]; /* "" = no token needed */
    uint64_t max_upload_bytes;
    uint32_t heartbeat_interval_ms, heartbeat_timeout_ms;
    uint32_t cancel_timeout_ms; /* how long FAILING/CANCELLING wait for the taskmanagers */
    uint32_t deploy_timeout_ms; /* how long a deploy may take until every subtask runs */
    kp_restart_t restart;       /* default restart strategy */
    kp_ckpt_config ckpt;        /* cluster defaults of every job's checkpoints */
    char ckpt_dir[4096];        /* --checkpoint-dir, default <state-dir>/checkpoints */
} kp_jm_config_t;

typedef struct kp_jm_t {
    pthread_mutex_t lock;
    kp_jm_config_t cfg;
    char instance_id[KP_JM_ID_LEN];
    kp_jm_job_t **jobs; /* in submission order */
    size_t njobs, jobs_cap;
    uint64_t epoch; /* last fencing epoch handed out; persisted */
    kp_jm_tm_t tms[KP_JM_TM_MAX];
    size_t ntms;
    int wake_fd; /* eventfd: wakes the control thread (new job, cancel, stop) */
} kp_jm_t;

const char *kp_job_state_name(kp_job_state s);
bool kp_job_state_terminal(kp_job_state s);
const char *kp_sub_state_name(kp_sub_state s);

/* --- registry.c: @locality any thread, @locks jm->lock held by the caller --- */

/* Loads state-dir/jobs.json; jobs that were not in a final state are marked FAILED ("jobmanager
 * restarted"), waiting CREATED jobs stay. 0, or -1 with the reason. */
int kp_registry_load(kp_jm_t *jm, char *err, size_t errlen);
/* Rewrites state-dir/jobs.json atomically (temp file, fsync, rename, fsync of the dir).
 * Logs and returns -1 on failure; the in-memory state stays authoritative. */
int kp_registry_save(kp_jm_t *jm);
/* The job's task of that id (it exists: subtasks are only made for the tasks). */
const kp_jm_task_t *kp_job_task(const kp_jm_job_t *job, int task_id);
/* Adds a job (ownership passes to the registry). */
int kp_registry_add(kp_jm_t *jm, kp_jm_job_t *job);
/* By id, or by name: the one active job of that name, else the newest. NULL if none. */
kp_jm_job_t *kp_registry_find(kp_jm_t *jm, const char *id_or_name);
void kp_job_free(kp_jm_job_t *job);
/* write(2) until done; 0 or -1 (errno set). fsync of a directory (after a rename in it). */
int kp_jm_write_all(int fd, const void *buf, size_t n);
void kp_jm_fsync_dir(const char *dir);
/* Moves the job to `to`, recording the transition with `message` in its exceptions when the
 * message is not NULL. Saves the registry. */
void kp_job_transition(kp_jm_t *jm, kp_jm_job_t *job, kp_job_state to, const char *message);
/* The job as REST shows it: the list entry, or with `detail` everything. New reference. */
json_t *kp_job_json(const kp_jm_t *jm, const kp_jm_job_t *job, bool detail);

/* --- scheduler.c: @locality any thread, @locks jm->lock held by the caller --- */

/* Free slots of taskmanager `tm` (slots minus those held by deployed jobs). */
uint32_t kp_sched_free_slots(const kp_jm_t *jm, int tm);
/* Places every subtask of the job on live taskmanagers (slot sharing: subtask i of every
 * task in slot i; slots spread round-robin). false with job->waiting_reason set when there
 * are not enough free slots. */
bool kp_sched_place(kp_jm_t *jm, kp_jm_job_t *job);
/* Before the record of lost taskmanager `tm` is reused: false if a deployed job still uses
 * it, else every placement on it is forgotten (tm = -1). */
bool kp_sched_forget_tm(kp_jm_t *jm, int tm);
/* Forgets the placement (the slots are free again). */
void kp_sched_release(kp_jm_job_t *job);

/* --- lifecycle.c: @locality the control thread unless said otherwise, @locks jm->lock held --- */

/* One pass over all jobs: deploy waiting ones, fire due restarts, finish timed-out cancels. */
void kp_life_step(kp_jm_t *jm);
/* A taskmanager reported a subtask state. */
void kp_life_task_state(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int task_id,
                        uint32_t subtask, kp_sub_state state, const char *message);
/* A taskmanager reported a subtask's counters (kept for REST; stale reports ignored): the
 * subtask, NULL when ignored. */
kp_jm_sub_t *kp_life_metrics(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int task_id,
                             uint32_t subtask, uint64_t records_in, uint64_t records_out,
                             kp_time watermark_ms);
/* metrics_keep.c: keeps the rest of a subtask's Metrics report (bytes, time ratios, the
 * connectors' stats JSON). */
struct Kappa__Control__Metrics;
void kp_jm_keep_metrics(kp_jm_sub_t *sub, const struct Kappa__Control__Metrics *m);
/* The job fails over (FAILING, then the restart strategy) with `message` as its cause. */
void kp_life_fail(kp_jm_t *jm, kp_jm_job_t *job, const char *message);
/* A taskmanager is gone (connection closed or heartbeat timeout). */
void kp_life_tm_lost(kp_jm_t *jm, int tm, const char *reason);
/* REST cancel (@locality REST thread). 0, or -1 when the job is already final. */
int kp_life_cancel(kp_jm_t *jm, kp_jm_job_t *job, const char *reason);

/* --- control.c: the listener and loop belong to the control thread; the senders may be
 * called from any thread with jm->lock held (they only queue and try a nonblocking send) --- */

/* Opens the control-plane listener (port 0 = a free one); the bound port in *port. */
int kp_control_listen(kp_jm_t *jm, int *port, char *err, size_t errlen);
/* Runs the control loop until *stop becomes true (checked after every wake). @locality the
 * control thread (main) */
void kp_control_run(kp_jm_t *jm, volatile int *stop);
/* Sends a Deploy for the job to each taskmanager that runs part of it (jm->lock held). */
void kp_control_send_deploy(kp_jm_t *jm, const kp_jm_job_t *job);
/* Sends Cancel to every taskmanager holding a non-final subtask of the job (jm->lock held). */
void kp_control_send_cancel(kp_jm_t *jm, const kp_jm_job_t *job, const char *reason);
/* Sends a checkpoint message of the job's attempt (`type` a kp_frame_type of proto/frame.h,
 * which this header does not include): KP_FRAME_TRIGGER_CHECKPOINT to every taskmanager
 * running a source subtask, KP_FRAME_CHECKPOINT_COMPLETE or KP_FRAME_ABORT_CHECKPOINT (with
 * `reason`) to every taskmanager of the attempt. */
void kp_control_send_ckpt(kp_jm_t *jm, const kp_jm_job_t *job, int type, int64_t id,
                          kp_time timestamp_ms, const char *reason);
/* A trigger of checkpoint id with TriggerCheckpoint.drain (kappa stop --drain: the sources end
 * their input with the final watermark, take it, and end once it completed). */
void kp_control_send_drain(kp_jm_t *jm, const kp_jm_job_t *job, int64_t id, kp_time timestamp_ms);
/* KP_FRAME_CHECKPOINT_COMPLETE of checkpoint id with NotifyCheckpointComplete.final (every
 * source took it after the end of its bounded input: the sources end now). */
void kp_control_send_complete(kp_jm_t *jm, const kp_jm_job_t *job, int64_t id, bool final);
/* Wakes the control thread. @locality any thread */
void kp_jm_wake(kp_jm_t *jm);

/* --- rest.c: @locality main thread (start/stop); handlers run on libmicrohttpd's thread and
 * take jm->lock themselves --- */

typedef struct kp_rest_t kp_rest_t;
/* Starts the HTTP server (its own thread); the bound port in *port. NULL with the reason. */
kp_rest_t *kp_rest_start(kp_jm_t *jm, int *port, char *err, size_t errlen);
void kp_rest_stop(kp_rest_t *rest);

/* --- manifest.c: @locality any thread, @locks none (pure functions) --- */

/* Checks a submitted manifest (JSON text) and builds a job from it (state CREATED, a fresh
 * id). NULL with the reason (for a 400) in err. */
kp_jm_job_t *kp_manifest_parse(const kp_jm_config_t *cfg, const char *text, size_t len, char *err,
                               size_t errlen);
/* A job name or id safe for paths and logs: [A-Za-z0-9._-], 1..127 chars, no leading dot. */
bool kp_manifest_name_ok(const char *name);

/* --- uploads.c: @locality the REST thread (one upload per request), @locks none --- */

typedef struct kp_upload_t kp_upload_t;
/* A new upload into state-dir/uploads under a server-generated temporary name. */
kp_upload_t *kp_upload_begin(const char *state_dir, char *err, size_t errlen);
/* Appends bytes (hashing them). -1 on a write error. */
int kp_upload_write(kp_upload_t *up, const void *data, size_t len);
uint64_t kp_upload_size(const kp_upload_t *up);
/* Finishes: when the sha256 of the bytes equals `expect_sha` the file becomes
 * uploads/<sha256>.so (fsync'd) and 0 is returned; otherwise it is removed and -1 returned
 * with the reason. Frees `up` either way. */
int kp_upload_commit(kp_upload_t *up, const char *expect_sha, char *err, size_t errlen);
/* Removes the temporary files of uploads a previous run did not finish (at start). */
void kp_uploads_sweep(const char *state_dir);
/* Removes the temporary file and frees. Accepts NULL. */
void kp_upload_abort(kp_upload_t *up);
/* The stored plugin's path for a sha256 hex (checked to be hex) into out. -1 if malformed. */
int kp_upload_path(const char *state_dir, const char *sha, char *out, size_t outlen);
/* Lowercase sha256 hex of a buffer. */
void kp_jm_sha256_hex(const void *data, size_t len, char hex[KP_JM_SHA_LEN]);
bool kp_jm_is_hex(const char *s, size_t len);

/* --- checkpoints.c: the checkpoint coordinator of each job (runtime/checkpoint_coord.h) driven
 * by the control thread; @locks jm->lock held by the caller --- */

/* The job's attempt runs (every subtask RUNNING): checkpoints start (when configured). */
void kp_jm_ckpt_running(kp_jm_t *jm, kp_jm_job_t *job);
/* The attempt stops (failing, cancelling, finished): pending checkpoints are aborted. */
void kp_jm_ckpt_stopped(kp_jm_t *jm, kp_jm_job_t *job, const char *reason);
/* The job ended (FINISHED, CANCELED, FAILED): its storage keeps only the retained checkpoints
 * and the files they name (what abandoned checkpoints uploaded goes). */
void kp_jm_ckpt_ended(kp_jm_t *jm, kp_jm_job_t *job);
/* The clock: triggers due checkpoints, expires timed-out ones. @locality the control thread */
void kp_jm_ckpt_step(kp_jm_t *jm, kp_jm_job_t *job);
/* A subtask's acknowledgement / decline (stale ones, of an older attempt, are ignored). */
void kp_jm_ckpt_ack(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int64_t id,
                    int task_id, uint32_t subtask, const char *ack_json);
void kp_jm_ckpt_decline(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int64_t id,
                        int task_id, uint32_t subtask, const char *reason);
/* Before a deploy: job->restore_path becomes the latest completed checkpoint in storage, if
 * there is one (else it stays: the manifest's from_checkpoint, or "" = the original start
 * position). */
void kp_jm_ckpt_pick_restore(kp_jm_t *jm, kp_jm_job_t *job);
/* Before a deploy's placement: true while the job waits for the search of its latest valid
 * checkpoint on the checkpoint I/O worker (ckpt_io.h; a restarted jobmanager's recovery:
 * started here, waiting_reason set); the deploy tries again on the next round. */
bool kp_jm_ckpt_restore_wait(kp_jm_t *jm, kp_jm_job_t *job);
/* Frees the job's coordinator state (kp_job_free). Accepts NULL. */
void kp_jm_ckpt_free(struct kp_jm_ckpt *c);
/* Parses a duration: "1500" or "1500ms", "2s", "5m", "1h". 0, or -1. */
int kp_jm_parse_duration(const char *s, kp_time *out);
/* Resolves the job's checkpoint settings from the manifest's "checkpoint" object, the graph's
 * checkpoint_interval_ms and the cluster defaults. 0, or -1 with the reason. */
int kp_jm_ckpt_config(const kp_jm_config_t *cfg, kp_jm_job_t *job, json_t *manifest, char *err,
                      size_t errlen);
/* The statistics of the job's current or last attempt (checkpoint_stats.h), NULL if it never
 * had a coordinator. */
const struct kp_ckpt_history *kp_jm_ckpt_history(const kp_jm_job_t *job);

/* --- main.c: @locality any thread (stderr is line-buffered by one fprintf per line) --- */
void kp_jm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
