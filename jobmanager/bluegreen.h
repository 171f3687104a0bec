/* Blue/green reprocessing (docs/bluegreen.md): a replacement started from reset offsets runs
 * beside the job it replaces, writing its own physical Elasticsearch index; once it has caught
 * up, the alias readers use moves to it in one atomic call, the old job is cancelled and its
 * index deleted after a grace period. The procedure is a persisted state machine
 * (state-dir/bluegreen.json): the pure part (phases, the caught-up rule, the record's JSON) is
 * bluegreen_sm.c, unit-tested; bluegreen.c runs it on a thread of its own, because it talks to
 * Elasticsearch, and hooks into the job lifecycle. */
#ifndef KP_JM_BLUEGREEN_H
#define KP_JM_BLUEGREEN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "jm.h"

#define KP_BG_SINKS_MAX 8

typedef enum kp_bg_phase {
    KP_BG_PREPARING,    /* physical indices being chosen/created; the job waits to deploy */
    KP_BG_READY,        /* not a blue/green: the job writes the alias's index (final) */
    KP_BG_CATCHING_UP,  /* v2 runs beside v1 into its own index */
    KP_BG_SWITCHING,    /* caught up long enough: a checkpoint of v2, then the alias moves */
    KP_BG_SWITCHED,     /* alias on v2, v1 cancelled; v1's index kept until delete_at */
    KP_BG_DONE,         /* v1's index deleted (final) */
    KP_BG_ABORTING,     /* v2 failed or was cancelled before the switch: its index goes */
    KP_BG_ABORTED,      /* (final) alias untouched */
    KP_BG_ROLLING_BACK, /* kappa rollback: alias back to v1's index, v1 again, v2 cancelled */
    KP_BG_ROLLED_BACK,  /* (final once v2's index is deleted) */
    KP_BG_PHASE_N_
} kp_bg_phase;

typedef enum kp_bg_mode {
    KP_BG_ASSIGN,    /* a job that is not a blue/green replacement: index of the alias */
    KP_BG_BLUEGREEN, /* a replacement from reset offsets without --in-place */
} kp_bg_mode;

typedef struct kp_bg_sink {
    char binding[KP_JM_NAME_MAX]; /* the job's sink name */
    char alias[256];              /* es:ALIAS */
    char url[512];                /* the node */
    char old_index[256];          /* the alias's index before (v1's), "" if none */
    char new_index[256];          /* what this job writes */
} kp_bg_sink;

typedef struct kp_bg_params {
    uint64_t lag_records;    /* v2 may be this many source records behind v1 */
    int64_t wm_tolerance_ms; /* v2's watermark may be this far behind v1's */
    int64_t hold_ms;         /* for this long, continuously */
    int64_t keep_old_ms;     /* v1's index kept this long after the switch */
} kp_bg_params;

/* What the jobmanager sees of the two versions at one moment. */
typedef struct kp_bg_obs {
    kp_job_state v1_state, v2_state;
    bool v1_seen, v2_seen; /* every subtask reported metrics (v1: now or before) */
    uint64_t v1_in, v2_in; /* records read by the sources */
    int64_t v1_wm, v2_wm;  /* smallest watermark over the subtasks */
    bool v2_lag_known;     /* every source subtask of v2 reported its partitions' end offsets */
    uint64_t v2_lag;       /* v2's Kafka lag: records between its positions and the log ends */
    int64_t now_ms;        /* wall clock */
} kp_bg_obs;

typedef struct kp_bg_rec {
    char job_id[KP_JM_ID_LEN]; /* the job this record assigns indices to (v2) */
    char v1_id[KP_JM_ID_LEN];  /* blue/green: the job it replaces */
    char v1r_id[KP_JM_ID_LEN]; /* rollback: v1 started again */
    kp_bg_mode mode;
    kp_bg_phase phase;
    kp_bg_params p;
    kp_bg_sink sinks[KP_BG_SINKS_MAX];
    int nsinks;
    bool old_via_alias; /* v1 writes through the alias (no index= of its own): cancel first */
    int64_t caught_since_ms, caught_up_ms, switched_ms, delete_at_ms; /* wall, -1 = not yet */
    int64_t last_v1_wm; /* v1's last observation, kept when v1 stops */
    uint64_t last_v1_in;
    bool last_v1_seen;
    int64_t old_bytes, new_bytes, old_docs, new_docs; /* at the switch, -1 unknown */
    bool new_deleted;                                 /* ROLLED_BACK: v2's index is gone */
    char sp_rid[KP_JM_ID_LEN];       /* v1's stop-with-savepoint request ("" = none or cancelled) */
    char sp_path[1024];              /* its savepoint once complete: a rollback restores it */
    char sync_rid[KP_JM_ID_LEN];     /* SWITCHING: v2's checkpoint on demand ("" = none yet) */
    bool v2_synced;                  /* that checkpoint completed: v2's writes are acknowledged */
    int64_t sync_attempt;            /* v2's attempt that was caught up (-1 unknown): a later one
                                    catches up again before its checkpoint counts */
    char error[512];                 /* the last Elasticsearch failure, retried */
    int64_t eta_ms, eta_gap, eta_at; /* not persisted: the estimate to the cut-over */
    json_t *transitions;             /* [{time, phase, message}] (owned) */
} kp_bg_rec;

/* --- bluegreen_sm.c: pure; @locality any thread, @locks none --- */

const char *kp_bg_phase_name(kp_bg_phase p);
bool kp_bg_phase_final(kp_bg_phase p);
/* Defaults: lag 1000 records, tolerance 0 ms, hold 3000 ms, keep-old 1 h. */
void kp_bg_params_default(kp_bg_params *p);
/* Is v2 caught up at this observation? (lag and watermark rule, not the hold) */
bool kp_bg_caught_up(const kp_bg_params *p, const kp_bg_obs *o);
/* Moves a record on by what is observed, for the transitions that need no Elasticsearch call
 * (catching up → switching, → aborting, switched → due for deletion). Returns true when the
 * record changed; the transition is recorded. */
bool kp_bg_observe(kp_bg_rec *r, const kp_bg_obs *o);
/* The estimate to the cut-over (r->eta_ms): how long v2's watermark needs to reach v1's at the
 * pace it closed the gap over the last >= 2 s of observations; -1 while it does not close. */
void kp_bg_estimate(kp_bg_rec *r, const kp_bg_obs *o);
/* Records a transition to `to` at `now_ms` with a message. */
void kp_bg_enter(kp_bg_rec *r, kp_bg_phase to, int64_t now_ms, const char *message);
/* The record as persisted and as REST shows it (new reference) / read back (0 or -1). */
json_t *kp_bg_rec_json(const kp_bg_rec *r);
/* The step of the cut-over the procedure is at, in words, for the dashboard (new reference):
 * "waiting for v2's checkpoint N" (v2_ckpt: the id of the pending checkpoint, 0 while not
 * triggered yet), "stopping v1 with a savepoint", "v1 savepoint: PATH"; null when none applies. */
json_t *kp_bg_step_json(const kp_bg_rec *r, int64_t v2_ckpt);
int kp_bg_rec_load(kp_bg_rec *r, json_t *j, char *err, size_t errlen);
/* Whether a record has nothing left to do (a final phase, or ROLLED_BACK with v2's index
 * deleted): bluegreen.json may drop it. */
bool kp_bg_rec_finished(const kp_bg_rec *r);
/* Keeps every unfinished record, every finished one whose job is live (live[i]: a job it names
 * still runs) and the last `keep` finished ones; drops the others (their transitions freed),
 * keeping the order. Returns the new count. */
size_t kp_bg_prune(kp_bg_rec *recs, size_t n, const bool *live, size_t keep);
/* "3600000", "90s", "15m", "2h", "1d" → ms; -1 when malformed. */
int64_t kp_bg_parse_duration(const char *s);

/* --- bluegreen.c: hooks; @locality the control thread unless said, @locks jm->lock held --- */

/* Before a deploy: false while the job's Elasticsearch indices are being prepared (the job
 * keeps waiting, with the reason set). A job with no es: sink is always ready. */
bool kp_bg_deploy_ready(kp_jm_t *jm, kp_jm_job_t *job);
/* The new job runs: true when blue/green keeps the replaced job running until the switch. */
bool kp_bg_defers_cancel(kp_jm_t *jm, const kp_jm_job_t *job);
/* The procedure the job takes part in, for GET /jobs/:id (new reference or NULL). @locality
 * REST thread */
json_t *kp_bg_job_json(kp_jm_t *jm, const kp_jm_job_t *job);
/* kappa rollback: 0, or -1 with the reason (for a 409). @locality REST thread */
int kp_bg_rollback(kp_jm_t *jm, kp_jm_job_t *job, char *err, size_t errlen);
/* Starts (loading state-dir/bluegreen.json) / stops the blue/green thread. @locality main,
 * @locks none */
int kp_bg_start(kp_jm_t *jm, char *err, size_t errlen);
void kp_bg_stop(void);

#endif
