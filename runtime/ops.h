/* Constructors of the chained operators. The executor (exec_wire.c) builds one instance per
 * node per subtask and wires outputs; operators never construct each other. Every operator
 * then runs on its subtask's thread only and reports through its subtask (engine.h). */
#ifndef KP_OPS_H
#define KP_OPS_H

#include "connector.h"
#include "engine.h"
#include "plan.h"

/* map, filter, flat_map, key_by; NULL with the reason in the subtask on failure. */
kp_op *kp_op_basic_new(kp_subtask *st, const kp_node *n);

/* The end of a chain at a sink node, writing to `w` (the op takes ownership of w). */
kp_op *kp_op_sink_new(kp_subtask *st, const kp_node *n, kp_sink_writer *w);

/* The end of a chain at a task boundary: batches records into `chans` (one per downstream
 * subtask), forwards watermarks, idleness and the end of input to all of them. */
kp_op *kp_op_exchange_new(kp_subtask *st, const kp_node *n, kp_partitioning mode,
                          kp_channel **chans, int nchans);

/* Window operator (window node + its aggregate) for tumbling and sliding windows, and the
 * session window operator (op_session.c). Late records go to `late` if set. */
kp_op *kp_op_window_new(kp_subtask *st, const kp_node *window);
kp_op *kp_op_session_new(kp_subtask *st, const kp_node *window);
void kp_op_window_set_late(kp_op *op, kp_op *late);

/* The tick of window and session operators: to late and main outputs. */
int kp_op_window_tick(kp_op *op, kp_time now);

/* Keyed process function. */
kp_op *kp_op_process_new(kp_subtask *st, const kp_node *n);

#endif
