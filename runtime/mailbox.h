/* Control messages between subtasks and their coordinator — the only way they coordinate.
 *
 * A mailbox is a bounded FIFO of small fixed-size messages with one reader. Inside a process
 * it is a locked queue; across processes (the cluster) the same messages travel in
 * control-plane frames, which is why nothing here is a pointer or shared state: a message is
 * a copy of a few numbers. They carry watermark alignment (sources report their watermark, the
 * coordinator announces how far each may run), the end of each subtask, and checkpoints
 * (triggers to sources, completions and aborts to every subtask).
 *
 * Locking: one mutex per mailbox; any thread may post, only the owner takes. */
#ifndef KP_MAILBOX_H
#define KP_MAILBOX_H

#include <pthread.h>

#include <kappa/kappa.h>

typedef enum kp_ctl_kind {
    KP_CTL_WATERMARK = 1, /* subtask → coordinator: my watermark is `value` */
    KP_CTL_IDLE,          /* subtask → coordinator: leave me out of the minimum */
    KP_CTL_DONE,          /* subtask → coordinator: my thread ended (value: 0 ok, -1 failed) */
    KP_CTL_ALIGN,         /* coordinator → source subtask: do not run past `value` */
    /* checkpoints (checkpoint.h), never replaced by a later message: */
    KP_CTL_TRIGGER,  /* coordinator → source subtask: take checkpoint `value` now */
    KP_CTL_COMPLETE, /* coordinator → every subtask: checkpoint `value` completed */
    KP_CTL_ABORT,    /* coordinator → every subtask: checkpoint `value` was given up */
    KP_CTL_DRAIN,    /* coordinator → source subtask: stop reading, emit the final watermark,
                        take checkpoint `value` (a stop --drain savepoint), end once it completed */
    KP_CTL_FINAL,    /* coordinator → source subtask: checkpoint `value`, triggered once every
                        source had reached the end of its input, completed: a source waiting
                        for its final checkpoint ends (docs/checkpoints.md, Bounded inputs) */
} kp_ctl_kind;

typedef struct kp_ctl {
    kp_ctl_kind kind;
    int task, subtask;
    kp_time value;
} kp_ctl;

typedef struct kp_mailbox kp_mailbox;

/* A mailbox holding at most `cap` messages; NULL when out of memory. */
kp_mailbox *kp_mailbox_new(int cap);
void kp_mailbox_free(kp_mailbox *m);

/* Posts a message, never blocking. A report (WATERMARK or IDLE) replaces the same sender's
 * report still queued, an ALIGN the one still queued for the same subtask — only the latest
 * state matters — so a mailbox with room for two messages per sender never fills. 0, or -1
 * when full. */
int kp_mailbox_post(kp_mailbox *m, kp_ctl msg);

/* Takes the oldest message, waiting up to timeout_ms (0 = do not wait). 1 if one was taken,
 * 0 if none came. */
int kp_mailbox_take(kp_mailbox *m, kp_ctl *out, int timeout_ms);

#endif
