/* The whole-cache flush of the tumbling and sliding window operator (op_window.c), for
 * checkpoint barriers: after kp_op_window_flush, the operator's RocksDB instance alone holds
 * its complete state (docs/state.md, "Whole-cache flush"). The cache stays warm: flushed
 * entries become clean, a later spill drops them without writing, and a record that changes
 * one makes it dirty again. Cost: per pane with dirty entries, one sort and one write batch
 * without WAL, or from 50k entries on one SST file ingested — in proportion to the dirty
 * entries; nothing when nothing changed. */
#ifndef KP_OP_WINDOW_H
#define KP_OP_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Writes every dirty cached entry of window operator `op` to RocksDB. 0, or -1 after
 * kp_subtask_fail. @locality the operator's subtask thread */
int kp_op_window_flush(kp_op *op);

/* Tests: 0 if reading the operator's state back from RocksDB alone gives what it holds
 * (cache plus spilled partials) and every cached entry is clean; else -1 and why in err.
 * @locality the operator's subtask thread */
int kp_op_window_check_flushed(kp_op *op, char *err, size_t errlen);

/* Tests: from now on every window operator created flushes after a record with probability
 * 1/one_in (0 = never; its own generator, seeded from seed and its subtask index) and then
 * checks the flush (kp_op_window_check_flushed), failing its subtask if it is wrong.
 * Returns how many such flushes were done and checked since the previous call.
 * @locality any thread; affects operators created afterwards in this process */
uint64_t kp_op_window_flush_randomly(uint64_t seed, unsigned one_in);

#endif
