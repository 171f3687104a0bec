/* Watermark alignment by messages (runtime/align.c, runtime/mailbox.c): the coordinator's
 * bound follows the slowest active subtask, idle and finished subtasks hold nobody back (the
 * livelock of a subtask that owns no partition), and a mailbox keeps one report per sender so
 * a burst of reports can never push out the one that matters. */
#include <criterion/criterion.h>

#include "../../runtime/align.h"
#include "../../runtime/mailbox.h"

static kp_mailbox *boxes[3];

static void setup(void)
{
    for (int i = 0; i < 3; i++)
        boxes[i] = kp_mailbox_new(4);
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++)
        kp_mailbox_free(boxes[i]);
}

/* The latest bound announced to subtask i, or KP_TIME_MIN if none is queued. */
static kp_time bound_of(int i)
{
    kp_ctl m;
    kp_time b = KP_TIME_MIN;
    while (kp_mailbox_take(boxes[i], &m, 0))
        if (m.kind == KP_CTL_ALIGN)
            b = m.value;
    return b;
}

static void report(kp_align *a, kp_ctl_kind kind, int subtask, kp_time v)
{
    kp_align_report(a, &(kp_ctl){kind, 0, subtask, v}, boxes);
}

Test(align, bound_follows_the_slowest_active_subtask, .init = setup, .fini = teardown)
{
    kp_align *a = kp_align_new(3, 100);
    report(a, KP_CTL_WATERMARK, 0, 1000);
    report(a, KP_CTL_WATERMARK, 1, 5000);
    cr_assert_eq(bound_of(0), KP_TIME_MIN + 100, "subtask 2 has not reported: nobody may run");
    report(a, KP_CTL_WATERMARK, 2, 3000);
    cr_assert_eq(bound_of(1), 1100);
    report(a, KP_CTL_WATERMARK, 0, 4000);
    cr_assert_eq(bound_of(2), 3100);
    kp_align_free(a);
}

Test(align, idle_and_done_subtasks_hold_nobody_back, .init = setup, .fini = teardown)
{
    kp_align *a = kp_align_new(3, 100);
    report(a, KP_CTL_IDLE, 2, 0); /* owns no partition, e.g. p=3 over 2 partitions */
    report(a, KP_CTL_WATERMARK, 0, 1000);
    report(a, KP_CTL_WATERMARK, 1, 2000);
    cr_assert_eq(bound_of(0), 1100);
    report(a, KP_CTL_DONE, 0, 0);
    cr_assert_eq(bound_of(1), 2100);
    report(a, KP_CTL_DONE, 1, 0);
    cr_assert_eq(bound_of(1), KP_TIME_MAX, "everyone else is done or idle: no bound");
    report(a, KP_CTL_WATERMARK, 2, 500); /* the idle one wakes up: it is the slowest again */
    cr_assert_eq(bound_of(2), 600);
    kp_align_free(a);
}

Test(align, drift_off_announces_no_bound, .init = setup, .fini = teardown)
{
    kp_align *a = kp_align_new(3, -1);
    report(a, KP_CTL_WATERMARK, 0, 1000);
    cr_assert_eq(bound_of(0), KP_TIME_MAX);
    kp_align_free(a);
}

Test(mailbox, reports_are_coalesced_per_sender)
{
    kp_mailbox *m = kp_mailbox_new(3);
    for (int i = 0; i < 1000; i++) { /* a burst from two senders fills nothing */
        cr_assert_eq(kp_mailbox_post(m, (kp_ctl){KP_CTL_WATERMARK, 0, 0, i}), 0);
        cr_assert_eq(kp_mailbox_post(m, (kp_ctl){KP_CTL_WATERMARK, 0, 1, 2 * i}), 0);
    }
    cr_assert_eq(kp_mailbox_post(m, (kp_ctl){KP_CTL_WATERMARK, 0, 2, 7}), 0,
                 "the third sender's report must fit");
    cr_assert_eq(kp_mailbox_post(m, (kp_ctl){KP_CTL_IDLE, 0, 0, 0}), 0);
    kp_ctl c;
    cr_assert(kp_mailbox_take(m, &c, 0));
    cr_assert(c.subtask == 0 && c.kind == KP_CTL_IDLE, "latest state of sender 0, in its slot");
    cr_assert(kp_mailbox_take(m, &c, 0));
    cr_assert(c.subtask == 1 && c.value == 1998);
    cr_assert(kp_mailbox_take(m, &c, 0));
    cr_assert(c.subtask == 2 && c.value == 7);
    cr_assert_not(kp_mailbox_take(m, &c, 10));
    kp_mailbox_free(m);
}

Test(mailbox, done_messages_are_never_dropped)
{
    kp_mailbox *m = kp_mailbox_new(2);
    cr_assert_eq(kp_mailbox_post(m, (kp_ctl){KP_CTL_DONE, 0, 0, 0}), 0);
    cr_assert_eq(kp_mailbox_post(m, (kp_ctl){KP_CTL_DONE, 0, 0, 0}), 0);
    cr_assert_eq(kp_mailbox_post(m, (kp_ctl){KP_CTL_DONE, 0, 1, 0}), -1, "full: refused, not lost");
    kp_mailbox_free(m);
}
