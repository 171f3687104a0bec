/* The deterministic scheduler (exec_step.c). */
#ifndef KP_EXEC_STEP_H
#define KP_EXEC_STEP_H

#include <stdint.h>

#include "exec_wire.h"

/* Runs the prepared job on the calling thread, interleaving subtask steps in an order drawn
 * from `seed`. @locality the calling thread; nothing else runs */
void kp_exec_run_stepped(struct kp_exec *x, uint64_t seed);

#endif
