/* The alignment coordinator of one source task; see align.h. */
#include "align.h"

#include <stdlib.h>

enum { ACTIVE, IDLE, DONE };

struct kp_align {
    int n;
    kp_time drift;
    kp_time announced;
    kp_time *wm;
    int *state;
};

kp_align *kp_align_new(int parallelism, kp_time drift)
{
    kp_align *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->wm = malloc((size_t)parallelism * sizeof *a->wm);
    a->state = calloc((size_t)parallelism, sizeof *a->state);
    if (!a->wm || !a->state) {
        kp_align_free(a);
        return NULL;
    }
    for (int i = 0; i < parallelism; i++)
        a->wm[i] = KP_TIME_MIN;
    a->n = parallelism;
    a->drift = drift;
    a->announced = KP_TIME_MIN;
    return a;
}

void kp_align_free(kp_align *a)
{
    if (!a)
        return;
    free(a->wm);
    free(a->state);
    free(a);
}

static kp_time bound(const kp_align *a)
{
    if (a->drift < 0)
        return KP_TIME_MAX;
    kp_time slowest = KP_TIME_MAX;
    for (int i = 0; i < a->n; i++)
        if (a->state[i] == ACTIVE && a->wm[i] < slowest)
            slowest = a->wm[i];
    return slowest == KP_TIME_MAX ? KP_TIME_MAX : kp_time_add_sat(slowest, a->drift);
}

void kp_align_report(kp_align *a, const kp_ctl *msg, kp_mailbox *const *boxes)
{
    int i = msg->subtask;
    if (i < 0 || i >= a->n || a->state[i] == DONE)
        return;
    if (msg->kind == KP_CTL_WATERMARK) {
        a->state[i] = ACTIVE;
        if (msg->value > a->wm[i])
            a->wm[i] = msg->value;
    } else if (msg->kind == KP_CTL_IDLE) {
        a->state[i] = IDLE;
    } else if (msg->kind == KP_CTL_DONE) {
        a->state[i] = DONE;
    }
    kp_time b = bound(a);
    if (b == a->announced)
        return; /* a bound may also fall: a subtask that was idle is active again */
    a->announced = b;
    for (int j = 0; j < a->n; j++)
        kp_mailbox_post(boxes[j], (kp_ctl){KP_CTL_ALIGN, msg->task, j, b});
}
