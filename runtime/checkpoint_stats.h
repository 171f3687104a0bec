/* Checkpoint statistics: per checkpoint and per subtask (trigger time, duration, size,
 * incremental size, alignment, sync and async parts, from the acknowledgements), kept for
 * the last KP_CKPT_HISTORY checkpoints, and written as Flink's REST shapes:
 * `/jobs/:id/checkpoints`, `/jobs/:id/checkpoints/details/:cid`, `/jobs/:id/checkpoints/config`.
 * Filled by the coordinator (checkpoint_coord.c). Not thread-safe: the coordinator's owner
 * serialises access (a REST thread takes the owner's lock). */
#ifndef KP_CHECKPOINT_STATS_H
#define KP_CHECKPOINT_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

#define KP_CKPT_HISTORY 100

typedef enum kp_ckpt_status {
    KP_CKPT_IN_PROGRESS = 0,
    KP_CKPT_COMPLETED,
    KP_CKPT_FAILED,
} kp_ckpt_status;

typedef struct kp_ckpt_sub_stats {
    int task, subtask;
    int acked;
    kp_time ack_ms;
    double align_ms, sync_ms, async_ms;
    int64_t bytes, incremental;
} kp_ckpt_sub_stats;

typedef struct kp_ckpt_stats {
    int64_t id;
    kp_ckpt_status status;
    int savepoint;
    kp_time trigger_ms, latest_ack_ms, end_ms; /* end: completion or failure */
    int64_t bytes, incremental;
    int nsub, nacked;
    kp_ckpt_sub_stats *sub; /* nsub, in the coordinator's (task, subtask) order */
    char *failure;          /* failed: why */
    char *path;             /* completed: the _metadata path (a savepoint: its directory) */
} kp_ckpt_stats;

typedef struct kp_ckpt_history {
    kp_ckpt_stats **s; /* by id, oldest first; at most KP_CKPT_HISTORY that are not in progress */
    int n, cap;
    int64_t total, completed, failed, restored; /* counts since the coordinator started */
    int64_t restored_id;
    kp_time restored_ms;
    int restored_savepoint;
    char *restored_path;
} kp_ckpt_history;

void kp_ckpt_history_free(kp_ckpt_history *h);

/* A new in-progress entry for checkpoint id with the expected subtasks; NULL if out of memory. */
kp_ckpt_stats *kp_ckpt_history_add(kp_ckpt_history *h, int64_t id, int savepoint,
                                   kp_time trigger_ms, const int *tasks, const int *subtasks,
                                   int n);

/* Records subtask i's acknowledgement (fields parsed from ack_json; unknown fields ignored). */
void kp_ckpt_stats_ack(kp_ckpt_stats *s, int i, kp_time now_ms, const char *ack_json);

/* Ends an entry (completed with its path, or failed with why) and trims the history. */
void kp_ckpt_history_end(kp_ckpt_history *h, kp_ckpt_stats *s, kp_ckpt_status status,
                         kp_time now_ms, const char *path_or_failure);

/* The entry of checkpoint id, or NULL if it is not (or no longer) in the history. */
kp_ckpt_stats *kp_ckpt_history_find(const kp_ckpt_history *h, int64_t id);

/* `/jobs/:id/checkpoints`: {"counts","summary","latest":{"completed","savepoint","failed",
 * "restored"},"history":[...newest first]}. Malloc'd JSON text, NULL if out of memory. */
char *kp_ckpt_history_json(const kp_ckpt_history *h);

/* `/jobs/:id/checkpoints/details/:cid`: the checkpoint with "tasks":{"<task>":{... ,
 * "subtasks":[{"index","status","ack_timestamp","end_to_end_duration","state_size",
 * "checkpointed_size","checkpoint":{"sync","async"},"alignment":{"duration"}}]}}. NULL if id
 * is unknown (404) or out of memory. */
char *kp_ckpt_details_json(const kp_ckpt_history *h, int64_t id);

/* `/jobs/:id/checkpoints/config`. Malloc'd JSON text. */
char *kp_ckpt_config_json(const kp_ckpt_config *cfg);

#endif
