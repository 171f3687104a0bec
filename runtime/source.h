/* A source subtask (source.c): polls its connector's reader, decodes, assigns event time
 * and per-partition watermarks, and pushes records through its chain. */
#ifndef KP_SOURCE_H
#define KP_SOURCE_H

#include "exec_config.h"

/* open: NULL after failing the subtask. step: one poll (waiting at
 * most timeout_ms) and what follows — 1 = call again, 0 = the input ended and the chain was
 * finished, -1 = failed. close: releases everything; returns rc, or -1 if flushing failed.
 * run: open, step until done, close. @locality the source subtask's thread. */
typedef struct kp_source_task kp_source_task;
kp_source_task *kp_source_open(kp_subtask *st, const kp_node *src, const kp_binding *b,
                               kp_op *chain, int watermark_every);
int kp_source_step(kp_source_task *s, int timeout_ms);
int kp_source_close(kp_source_task *s, int rc);
int kp_source_run(kp_subtask *st, const kp_node *src, const kp_binding *b, kp_op *chain,
                  int watermark_every);

#endif
