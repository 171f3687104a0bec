/* The handle through which a taskmanager steers the checkpoints of a run it does not
 * coordinate (kp_exec_config.control): the jobmanager's trigger, completion and abort
 * messages are posted here from the taskmanager's thread and picked up by the run's
 * coordinator thread, which passes triggers to the local source subtasks and completions
 * and aborts to every local subtask (exec_coord.c). Acknowledgements go the other way,
 * through kp_exec_config.ckpt_hooks. */
#ifndef KP_EXEC_CONTROL_H
#define KP_EXEC_CONTROL_H

#include <stdint.h>

#include "mailbox.h"

typedef struct kp_exec_control kp_exec_control;

/* A handle with room for 1024 messages not yet taken; NULL if out of memory. It must outlive
 * the run it is given to. @locality any thread */
kp_exec_control *kp_exec_control_new(void);
void kp_exec_control_free(kp_exec_control *c);

/* Take checkpoint `id` (triggered at wall-clock `timestamp`), checkpoint `id` completed,
 * checkpoint `id` was given up. 0, or -1 when the handle is full (the run is not taking
 * messages: the checkpoint will time out). @locality any thread; @locks the handle's */
int kp_exec_control_trigger(kp_exec_control *c, int64_t id, kp_time timestamp);
int kp_exec_control_complete(kp_exec_control *c, int64_t id);
int kp_exec_control_abort(kp_exec_control *c, int64_t id);
/* kappa stop --drain: the sources stop reading and emit the final watermark, then take
 * checkpoint `id` (the savepoint) and end once it completed (KP_CTL_DRAIN). */
int kp_exec_control_drain(kp_exec_control *c, int64_t id);
/* Checkpoint `id`, in which every source took part after the end of its bounded input,
 * completed (posted after its completion): sources waiting at their end end now
 * (KP_CTL_FINAL). Only for a handle whose owner said it sends them
 * (kp_exec_control_sends_final): then the run's sources wait for it at their end. */
int kp_exec_control_final(kp_exec_control *c, int64_t id);
/* The owner (a taskmanager whose jobmanager flags final checkpoints) will post
 * kp_exec_control_final: call before the run starts. @locality any thread */
void kp_exec_control_sends_final(kp_exec_control *c);
/* Whether it said so. @locality any thread */
int kp_exec_control_final_on(const kp_exec_control *c);

/* The run's side: the oldest message (KP_CTL_TRIGGER, _COMPLETE, _ABORT, _DRAIN or _FINAL,
 * value = id),
 * waiting up to timeout_ms. 1 if one was taken. @locality the run's coordinator thread */
int kp_exec_control_take(kp_exec_control *c, kp_ctl *out, int timeout_ms);

#endif
