/* A consumer subtask's inputs (exec_input.c). */
#ifndef KP_EXEC_INPUT_H
#define KP_EXEC_INPUT_H

#include "exec_wire.h"

/* Hands one popped batch to a consumer subtask's chain and gives it back to its inbox.
 * 1 = go on, 0 = every input ended and the chain finished, -1 = failed.
 * @locality the consumer subtask's thread */
int kp_exec_consume(subtask_rt *s, consumer *c, kp_batch *b);

/* Checkpoint `id` was aborted: if it is being aligned, it is declined and the held inputs go
 * on. 1 = go on, 0 = finished, -1 = failed. @locality the consumer subtask's thread */
int kp_exec_abort_alignment(subtask_rt *s, consumer *c, int64_t id);

/* Serves the subtask's control mailbox (checkpoints on): COMPLETE goes through the chain
 * (kp_op_checkpoint_complete), ABORT ends an alignment. 1/0/-1 as kp_exec_consume.
 * @locality the consumer subtask's thread; called on its clock tick */
int kp_exec_control_serve(subtask_rt *s);

/* Gives batches still held back to their inbox (before the inboxes are freed).
 * @locality the running thread, after the subtask stopped */
void kp_exec_input_free(subtask_rt *s, consumer *c);

#endif
