/* A consumer subtask's inputs (exec_input.c). */
#ifndef KP_EXEC_INPUT_H
#define KP_EXEC_INPUT_H

#include "exec_wire.h"

/* Hands one popped batch to a consumer subtask's chain and gives it back to its inbox.
 * 1 = go on, 0 = every input ended and the chain finished, -1 = failed.
 * @locality the consumer subtask's thread */
int kp_exec_consume(subtask_rt *s, consumer *c, kp_batch *b);

#endif
