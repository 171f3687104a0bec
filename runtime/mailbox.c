/* Control-message mailboxes; see mailbox.h. A ring buffer under one mutex. */
#include "mailbox.h"

#include <errno.h>
#include <stdlib.h>

#include "clock.h"

struct kp_mailbox {
    pthread_mutex_t lock;
    pthread_cond_t readable;
    int cap, head, n;
    kp_ctl msgs[];
};

kp_mailbox *kp_mailbox_new(int cap)
{
    kp_mailbox *m = calloc(1, sizeof *m + (size_t)cap * sizeof(kp_ctl));
    if (!m)
        return NULL;
    if (kp_cond_init(&m->readable) != 0) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->cap = cap;
    return m;
}

void kp_mailbox_free(kp_mailbox *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->readable);
    free(m);
}

/* Removes a superseded message (same sender and kind, a value message); 1 if one was. */
static int drop_superseded(kp_mailbox *m, const kp_ctl *msg)
{
    if (msg->kind == KP_CTL_DONE)
        return 0;
    for (int i = 0; i < m->n; i++) {
        kp_ctl *c = &m->msgs[(m->head + i) % m->cap];
        if (c->kind == msg->kind && c->task == msg->task && c->subtask == msg->subtask) {
            for (int j = i; j + 1 < m->n; j++)
                m->msgs[(m->head + j) % m->cap] = m->msgs[(m->head + j + 1) % m->cap];
            m->n--;
            return 1;
        }
    }
    return 0;
}

int kp_mailbox_post(kp_mailbox *m, kp_ctl msg)
{
    pthread_mutex_lock(&m->lock);
    /* Supersede on every post, not only when full: a queue filled with one sender's
     * watermarks would otherwise have no room for another's DONE, which is never dropped
     * (the coordinator then waits for it forever). */
    drop_superseded(m, &msg);
    int ok = m->n < m->cap;
    if (ok) {
        m->msgs[(m->head + m->n) % m->cap] = msg;
        m->n++;
        pthread_cond_signal(&m->readable);
    }
    pthread_mutex_unlock(&m->lock);
    return ok ? 0 : -1;
}

int kp_mailbox_take(kp_mailbox *m, kp_ctl *out, int timeout_ms)
{
    pthread_mutex_lock(&m->lock);
    if (!m->n && timeout_ms > 0) {
        struct timespec deadline = kp_deadline_ms(timeout_ms);
        while (!m->n)
            if (pthread_cond_timedwait(&m->readable, &m->lock, &deadline) == ETIMEDOUT)
                break;
    }
    int got = m->n > 0;
    if (got) {
        *out = m->msgs[m->head];
        m->head = (m->head + 1) % m->cap;
        m->n--;
    }
    pthread_mutex_unlock(&m->lock);
    return got;
}
