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

/* A watermark or idleness report supersedes the sender's earlier one, an announcement the
 * earlier announcement: only the latest state matters. */
static int latest_only(kp_ctl_kind k)
{
    return k == KP_CTL_WATERMARK || k == KP_CTL_IDLE || k == KP_CTL_ALIGN;
}

static int same_class(const kp_ctl *a, const kp_ctl *b)
{
    if (!latest_only(a->kind) || !latest_only(b->kind))
        return 0; /* DONE and checkpoint messages all count */
    int a_report = a->kind != KP_CTL_ALIGN, b_report = b->kind != KP_CTL_ALIGN;
    return a_report == b_report && a->task == b->task && a->subtask == b->subtask;
}

int kp_mailbox_post(kp_mailbox *m, kp_ctl msg)
{
    pthread_mutex_lock(&m->lock);
    int ok = 0;
    for (int i = 0; i < m->n && !ok; i++) {
        kp_ctl *c = &m->msgs[(m->head + i) % m->cap];
        if (same_class(c, &msg)) {
            *c = msg; /* replaced in place: the queue holds one state per sender */
            ok = 1;
        }
    }
    if (!ok && m->n < m->cap) {
        m->msgs[(m->head + m->n) % m->cap] = msg;
        m->n++;
        ok = 1;
    }
    if (ok)
        pthread_cond_signal(&m->readable);
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
