/* The taskmanager's checkpoint handle (exec_control.h): a mailbox, so that a post never
 * blocks the control-plane thread and the run takes messages in the order they came. */
#include <stdlib.h>

#include "exec_control.h"

struct kp_exec_control {
    kp_mailbox *q;
    int final; /* the owner posts KP_CTL_FINAL (set before the run starts, then read-only) */
};

kp_exec_control *kp_exec_control_new(void)
{
    kp_exec_control *c = calloc(1, sizeof *c);
    if (c && !(c->q = kp_mailbox_new(1024))) {
        free(c);
        c = NULL;
    }
    return c;
}

void kp_exec_control_free(kp_exec_control *c)
{
    if (!c)
        return;
    kp_mailbox_free(c->q);
    free(c);
}

static int post(kp_exec_control *c, kp_ctl_kind kind, int64_t id)
{
    return kp_mailbox_post(c->q, (kp_ctl){kind, -1, -1, id});
}

int kp_exec_control_trigger(kp_exec_control *c, int64_t id, kp_time timestamp)
{
    (void)timestamp; /* the coordinator keeps it; subtasks need only the id */
    return post(c, KP_CTL_TRIGGER, id);
}

int kp_exec_control_complete(kp_exec_control *c, int64_t id)
{
    return post(c, KP_CTL_COMPLETE, id);
}

int kp_exec_control_abort(kp_exec_control *c, int64_t id)
{
    return post(c, KP_CTL_ABORT, id);
}

int kp_exec_control_drain(kp_exec_control *c, int64_t id)
{
    return post(c, KP_CTL_DRAIN, id);
}

int kp_exec_control_final(kp_exec_control *c, int64_t id)
{
    return post(c, KP_CTL_FINAL, id);
}

void kp_exec_control_sends_final(kp_exec_control *c)
{
    c->final = 1;
}

int kp_exec_control_final_on(const kp_exec_control *c)
{
    return c->final;
}

int kp_exec_control_take(kp_exec_control *c, kp_ctl *out, int timeout_ms)
{
    return kp_mailbox_take(c->q, out, timeout_ms);
}
