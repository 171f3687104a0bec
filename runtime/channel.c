/* Bounded channels between subtasks; see channel.h for the protocol. */
#include "channel.h"

#include <errno.h>
#include <stdlib.h>

#include "clock.h"

/* The calling thread's waits (kp_channel_waits_get): counted only on the slow path. */
static _Thread_local kp_channel_waits waits;

struct kp_channel {
    kp_inbox *inbox;
    int index;
    int allocated; /* batches created so far, at most the inbox's credits */
    kp_batch *free;
    /* The network data plane's hooks (NULL in process), called under the inbox lock. */
    kp_channel_hook on_send, on_release;
    void *hook_ctx;
};

struct kp_inbox {
    pthread_mutex_t lock;
    pthread_cond_t readable; /* queue became non-empty, or abort */
    pthread_cond_t writable; /* some channel got a batch back, or abort */
    kp_batch *head, *tail;
    int aborted;
    int credits;
    int nchannels;
    kp_channel channels[];
};

kp_inbox *kp_inbox_new(int nchannels, int credits)
{
    kp_inbox *in = calloc(1, sizeof *in + (size_t)nchannels * sizeof(kp_channel));
    if (!in)
        return NULL;
    pthread_mutex_init(&in->lock, NULL);
    if (kp_cond_init(&in->readable) != 0 || kp_cond_init(&in->writable) != 0) {
        free(in);
        return NULL;
    }
    in->credits = credits;
    in->nchannels = nchannels;
    for (int i = 0; i < nchannels; i++) {
        in->channels[i].inbox = in;
        in->channels[i].index = i;
    }
    return in;
}

int kp_inbox_batches_allocated(kp_inbox *in)
{
    int n = 0;
    pthread_mutex_lock(&in->lock);
    for (int i = 0; i < in->nchannels; i++)
        n += in->channels[i].allocated;
    pthread_mutex_unlock(&in->lock);
    return n;
}

static void free_list(kp_batch *b)
{
    while (b) {
        kp_batch *next = b->next;
        kp_batch_free(b);
        b = next;
    }
}

void kp_inbox_free(kp_inbox *in)
{
    if (!in)
        return;
    free_list(in->head);
    for (int i = 0; i < in->nchannels; i++)
        free_list(in->channels[i].free);
    pthread_mutex_destroy(&in->lock);
    pthread_cond_destroy(&in->readable);
    pthread_cond_destroy(&in->writable);
    free(in);
}

kp_channel *kp_inbox_channel(kp_inbox *in, int i)
{
    return &in->channels[i];
}

/* Takes a free batch or the right to allocate one; the caller holds the inbox lock. Returns
 * the batch, or NULL with *allocate set when the caller must create one (outside the lock). */
static kp_batch *take_locked(kp_channel *ch, int *allocate)
{
    *allocate = 0;
    kp_batch *b = ch->free;
    if (b)
        ch->free = b->next;
    else if (ch->allocated < ch->inbox->credits && (*allocate = 1))
        ch->allocated++;
    return b;
}

/* Allocates if `allocate` (undoing the reservation on failure) and prepares the batch. */
static kp_batch *finish_take(kp_channel *ch, kp_batch *b, int allocate, int *oom)
{
    if (allocate) {
        b = kp_batch_new();
        if (!b) {
            pthread_mutex_lock(&ch->inbox->lock);
            ch->allocated--;
            pthread_mutex_unlock(&ch->inbox->lock);
            *oom = 1;
            return NULL;
        }
    }
    if (b) {
        kp_batch_reset(b);
        b->channel = ch->index;
        b->next = NULL;
    }
    return b;
}

kp_batch *kp_channel_acquire(kp_channel *ch, int *oom)
{
    *oom = 0;
    kp_inbox *in = ch->inbox;
    kp_batch *b = NULL;
    int allocate = 0;
    pthread_mutex_lock(&in->lock);
    if (!in->aborted && !ch->free && ch->allocated >= in->credits) {
        double t0 = kp_mono_s();
        while (!in->aborted && !ch->free && ch->allocated >= in->credits)
            pthread_cond_wait(&in->writable, &in->lock);
        waits.blocked++;
        waits.blocked_s += kp_mono_s() - t0;
    }
    if (!in->aborted)
        b = take_locked(ch, &allocate);
    pthread_mutex_unlock(&in->lock);
    return finish_take(ch, b, allocate, oom);
}

kp_batch *kp_channel_try_acquire(kp_channel *ch, int *oom)
{
    *oom = 0;
    kp_inbox *in = ch->inbox;
    kp_batch *b = NULL;
    int allocate = 0;
    pthread_mutex_lock(&in->lock);
    if (!in->aborted)
        b = take_locked(ch, &allocate);
    pthread_mutex_unlock(&in->lock);
    return finish_take(ch, b, allocate, oom);
}

void kp_channel_putback(kp_channel *ch, kp_batch *b)
{
    kp_inbox *in = ch->inbox;
    pthread_mutex_lock(&in->lock);
    b->next = ch->free;
    ch->free = b;
    pthread_cond_broadcast(&in->writable);
    pthread_mutex_unlock(&in->lock);
}

int kp_channel_credits(const kp_channel *ch)
{
    return ch->inbox->credits;
}

kp_inbox *kp_channel_inbox(kp_channel *ch)
{
    return ch->inbox;
}

void kp_channel_set_hooks(kp_channel *ch, kp_channel_hook on_send, kp_channel_hook on_release,
                          void *ctx)
{
    kp_inbox *in = ch->inbox;
    pthread_mutex_lock(&in->lock);
    ch->on_send = on_send;
    ch->on_release = on_release;
    ch->hook_ctx = ctx;
    pthread_mutex_unlock(&in->lock);
}

void kp_channel_send(kp_channel *ch, kp_batch *b)
{
    kp_inbox *in = ch->inbox;
    b->next = NULL;
    pthread_mutex_lock(&in->lock);
    if (in->tail)
        in->tail->next = b;
    else
        in->head = b;
    in->tail = b;
    pthread_cond_signal(&in->readable);
    if (ch->on_send)
        ch->on_send(ch->hook_ctx);
    pthread_mutex_unlock(&in->lock);
}

kp_batch *kp_inbox_pop_timed(kp_inbox *in, int timeout_ms, int *timed_out)
{
    struct timespec deadline = kp_deadline_ms(timeout_ms);
    *timed_out = 0;
    pthread_mutex_lock(&in->lock);
    if (!in->aborted && !in->head) {
        double t0 = kp_mono_s();
        while (!in->aborted && !in->head)
            if (pthread_cond_timedwait(&in->readable, &in->lock, &deadline) == ETIMEDOUT) {
                *timed_out = !in->head && !in->aborted;
                break;
            }
        waits.starved++;
        waits.starved_s += kp_mono_s() - t0;
    }
    kp_batch *b = in->aborted ? NULL : in->head;
    if (b) {
        in->head = b->next;
        if (!in->head)
            in->tail = NULL;
    }
    pthread_mutex_unlock(&in->lock);
    return b;
}

void kp_inbox_release(kp_inbox *in, kp_batch *b)
{
    kp_channel *ch = &in->channels[b->channel];
    pthread_mutex_lock(&in->lock);
    b->next = ch->free;
    ch->free = b;
    pthread_cond_broadcast(&in->writable);
    if (ch->on_release)
        ch->on_release(ch->hook_ctx);
    pthread_mutex_unlock(&in->lock);
}

void kp_channel_waits_get(kp_channel_waits *out)
{
    *out = waits;
}

void kp_inbox_abort(kp_inbox *in)
{
    pthread_mutex_lock(&in->lock);
    in->aborted = 1;
    pthread_cond_broadcast(&in->readable);
    pthread_cond_broadcast(&in->writable);
    pthread_mutex_unlock(&in->lock);
}

int kp_inbox_pending(kp_inbox *in, int *channels, int max)
{
    int n = 0;
    pthread_mutex_lock(&in->lock);
    for (int c = 0; c < in->nchannels && n < max; c++)
        for (kp_batch *b = in->head; b; b = b->next)
            if (b->channel == c) {
                channels[n++] = c;
                break;
            }
    pthread_mutex_unlock(&in->lock);
    return n;
}

kp_batch *kp_inbox_pop_channel(kp_inbox *in, int channel)
{
    pthread_mutex_lock(&in->lock);
    kp_batch *prev = NULL, *b = in->head;
    while (b && b->channel != channel) {
        prev = b;
        b = b->next;
    }
    if (b) {
        if (prev)
            prev->next = b->next;
        else
            in->head = b->next;
        if (in->tail == b)
            in->tail = prev;
    }
    pthread_mutex_unlock(&in->lock);
    return b;
}
