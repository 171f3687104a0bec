/* Bounded channels between subtasks, with credit-based backpressure.
 *
 * Every consumer subtask has one inbox; every (producer, consumer) pair has a channel into
 * it. A channel owns a fixed number of batches (its credits): a producer takes a free one,
 * fills it and sends it; the consumer gives it back after processing. When all of a
 * channel's batches are in flight, kp_channel_acquire blocks — that is how a slow window or
 * sink stops the source from reading, with memory bounded by credits × batch size. The
 * network data plane (cluster issue) keeps these semantics with credits announced over TCP.
 *
 * Locking: one mutex per inbox guards its queue and its channels' free lists. Any thread may
 * abort an inbox; after that every blocked and future call returns NULL/-1. */
#ifndef KP_CHANNEL_H
#define KP_CHANNEL_H

#include <pthread.h>

#include "batch.h"

typedef struct kp_inbox kp_inbox;
typedef struct kp_channel kp_channel;

kp_inbox *kp_inbox_new(int nchannels, int credits);
void kp_inbox_free(kp_inbox *in);

/* Batches created so far by the inbox's channels (each lives until the inbox is freed, so
 * this is also the peak): memory accounting for --stats. @locality any thread; @locks the
 * inbox lock */
int kp_inbox_batches_allocated(kp_inbox *in);

/* The channel with index `i` (0 <= i < nchannels) of the inbox. */
kp_channel *kp_inbox_channel(kp_inbox *in, int i);

/* Producer side. acquire returns an empty batch, blocking while none is free; NULL if the
 * inbox was aborted, or with *oom set if a new batch could not be allocated. send queues a
 * batch acquired from the same channel. */
kp_batch *kp_channel_acquire(kp_channel *ch, int *oom);
void kp_channel_send(kp_channel *ch, kp_batch *b);

/* The network data plane's side of a channel (runtime/net_*.c).
 * try_acquire is acquire without waiting: NULL when all of the channel's batches are in
 * flight (or the inbox was aborted, or *oom). putback returns an acquired, unsent batch to
 * the free list without calling the release hook. credits is the channel's batch count;
 * inbox the inbox it feeds (which the data plane aborts when the channel's peer is lost).
 * set_hooks installs functions called after every send / release on this channel, with the
 * inbox lock held: a hook must not call into this inbox, and any lock it takes must never be
 * held while an inbox lock is taken. NULL hooks (the default) cost one branch.
 * @locality any thread; @locks the inbox lock */
typedef void (*kp_channel_hook)(void *ctx);
kp_batch *kp_channel_try_acquire(kp_channel *ch, int *oom);
void kp_channel_putback(kp_channel *ch, kp_batch *b);
int kp_channel_credits(const kp_channel *ch);
kp_inbox *kp_channel_inbox(kp_channel *ch);
void kp_channel_set_hooks(kp_channel *ch, kp_channel_hook on_send, kp_channel_hook on_release,
                          void *ctx);

/* Consumer side. Waits up to timeout_ms for a batch: NULL with *timed_out set when none
 * came, NULL without it if the inbox was aborted. release returns a popped batch to its
 * channel. */
kp_batch *kp_inbox_pop_timed(kp_inbox *in, int timeout_ms, int *timed_out);
void kp_inbox_release(kp_inbox *in, kp_batch *b);

/* For the deterministic scheduler (single-threaded runs): the channels with queued batches
 * (up to max, in channel order; returns how many), and the first queued batch of one channel
 * (NULL if none) — per-channel order is kept, the order between channels is the caller's. */
int kp_inbox_pending(kp_inbox *in, int *channels, int max);
kp_batch *kp_inbox_pop_channel(kp_inbox *in, int channel);

/* How long the calling thread has waited in this file: blocked in kp_channel_acquire (all of
 * a channel's batches in flight: backpressure from the consumer) and in kp_inbox_pop_timed
 * (nothing queued: starved by the producers; timeouts included). Counted only when a call
 * waits — a clock read before and after — so the fast paths cost nothing more.
 * @locality the calling thread's own counters (thread-local) */
typedef struct kp_channel_waits {
    long long blocked, starved; /* waits */
    double blocked_s, starved_s;
} kp_channel_waits;
void kp_channel_waits_get(kp_channel_waits *out);

/* Wakes everyone blocked on the inbox; all later calls fail fast. */
void kp_inbox_abort(kp_inbox *in);

#endif
