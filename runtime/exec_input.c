/* A consumer subtask's inputs: each popped batch goes through its chain, and the watermark
 * it passes on is the minimum over its active inputs — with idle and ended inputs left out,
 * and the furthest watermark passed on first when the last active input goes idle (Flink's
 * valve). Shared by the threaded runner (exec.c) and the deterministic scheduler
 * (exec_step.c).
 *
 * Checkpoint barriers are aligned here. exactly_once: an input that delivered barrier N is
 * held back — its later batches stay popped, in order, in a queue of that input (bounded by
 * its channel's credits: the producer blocks, which is the backpressure) — until every open
 * input delivered N (an input that ended counts as delivered); then the subtask takes its
 * snapshot (exec_ckpt.c) and the held batches are processed in order, as if they had just
 * arrived: their watermarks and idleness apply after the release, never early, so the chain
 * sees for each input exactly the sequence the input sent. A held batch may be barrier N+1,
 * which holds its input back again. A barrier newer than the one being aligned on an input
 * that has not delivered it (its upstream skipped N) gives N up (declined). An abort of N
 * ends its alignment (declined, held inputs go on); one that comes before N's first barrier
 * makes N's barriers stale.
 * at_least_once: nothing is held; the snapshot of N is taken when the last input delivered N
 * — a fast input may have delivered N+1, N+2 by then (ids are consecutive: each snapshot
 * follows once every input is at or past its id). With checkpoints off none of this runs:
 * two tests per batch. @locality the consumer subtask's thread */
#include "exec_ckpt.h"
#include "exec_input.h"
#include "exec_live.h"

/* The minimum watermark over active inputs; sets *all_idle when every open input is idle. */
static kp_time min_watermark(const input_state *in, int n, int *all_idle, int *all_ended)
{
    kp_time m = KP_TIME_MAX;
    int active = 0, open = 0;
    for (int i = 0; i < n; i++) {
        if (in[i].ended)
            continue;
        open++;
        if (in[i].idle)
            continue;
        active++;
        m = in[i].wm < m ? in[i].wm : m;
    }
    *all_idle = open > 0 && active == 0;
    *all_ended = open == 0;
    return m;
}

static int run_records(kp_op *head, const kp_batch *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        const kp_rec *r = &b->recs[i];
        kp_event ev = {.key = {(const char *)b->arena + r->key_off, r->key_len},
                       .value = {(const char *)b->arena + r->val_off, r->val_len},
                       .ts = r->ts,
                       .cwm = r->cwm,
                       .hash = r->hash};
        if (head->vt->record(head, &ev) != 0)
            return -1;
    }
    return 0;
}

/* ---- alignment ---------------------------------------------------------------------------- */

/* Input i delivered the barrier being aligned and is held back until the others do. */
static int blocked(const subtask_rt *s, const consumer *c, int i)
{
    return c->aligning && s->st.ckpt->mode == KP_CKPT_EXACTLY_ONCE &&
           c->in[i].barrier >= c->aligning && !c->in[i].ended;
}

/* Every open input delivered the barrier being aligned. */
static int aligned(const consumer *c)
{
    for (int i = 0; i < c->n; i++)
        if (!c->in[i].ended && c->in[i].barrier < c->aligning)
            return 0;
    return 1;
}

static void hold(consumer *c, input_state *ch, kp_batch *b)
{
    b->next = NULL;
    if (ch->held_tail)
        ch->held_tail->next = b;
    else
        ch->held = b;
    ch->held_tail = b;
    c->nheld++;
}

static kp_batch *unhold(consumer *c, input_state *ch)
{
    kp_batch *b = ch->held;
    if ((ch->held = b->next) == NULL)
        ch->held_tail = NULL;
    c->nheld--;
    return b;
}

/* The inputs are aligned on c->aligning: the snapshot, and the inputs go free.
 * at_least_once: an input already past it starts the next one's alignment. */
static int take(subtask_rt *s, consumer *c)
{
    int64_t id = c->aligning, ahead = 0;
    double now = kp_mono_s(), align_ms = (now - c->align_t0) * 1000.0;
    c->aligning = 0;
    c->last = id;
    for (int i = 0; i < c->n; i++)
        ahead = c->in[i].barrier > ahead ? c->in[i].barrier : ahead;
    if (ahead > id) { /* at_least_once only: exactly_once held those inputs back */
        c->aligning = id + 1;
        c->align_t0 = now;
    }
    return kp_ckpt_take(&s->st, s->chain, id, align_ms, NULL, NULL);
}

/* Gives up the checkpoint being aligned (aborted, or overtaken by a newer barrier). */
static void give_up(subtask_rt *s, consumer *c, const char *why)
{
    kp_ckpt_decline(&s->st, c->aligning, "%s: %s", s->st.name, why);
    c->last = c->aligning;
    c->aligning = 0;
}

/* Checkpoint `id` was aborted before any of its barriers came here. */
static int aborted_early(const consumer *c, int64_t id)
{
    for (int k = 0; k < 4; k++)
        if (c->aborted[k] == id)
            return 1;
    return 0;
}

/* Barrier `id` came on input i. */
static void on_barrier(subtask_rt *s, consumer *c, int i, int64_t id)
{
    if (!s->st.ckpt || id <= c->last || id <= c->in[i].barrier || aborted_early(c, id))
        return; /* stale: given up already (or checkpoints are off here) */
    if (s->st.ckpt->mode == KP_CKPT_AT_LEAST_ONCE) {
        c->in[i].barrier = id;
        if (!c->aligning) {
            c->aligning = c->last ? c->last + 1 : id;
            c->align_t0 = kp_mono_s();
        }
        return;
    }
    if (c->aligning && id < c->aligning)
        return; /* stale */
    if (c->aligning && id > c->aligning)
        give_up(s, c, "a newer checkpoint's barrier came before alignment ended");
    c->in[i].barrier = id;
    if (!c->aligning) {
        c->aligning = id;
        c->align_t0 = kp_mono_s();
    }
}

/* ---- one batch ------------------------------------------------------------------------------ */

/* Runs a batch that is not held back through the chain; 1 = go on, 0 = finished, -1. */
static int deliver(subtask_rt *s, consumer *c, kp_batch *b)
{
    kp_inbox *inbox = s->t->inboxes[s->st.index];
    kp_op *head = s->chain;
    int i = b->channel;
    input_state *ch = &c->in[i];
    int rc = 0;
    switch (b->kind) {
    case KP_MSG_DATA:
        if (s->st.live)
            kp_live_add(&s->st.live->records_in, b->n);
        rc = run_records(head, b);
        /* a data batch carries its producer's watermark */
        __attribute__((fallthrough));
    case KP_MSG_WATERMARK:
        ch->idle = 0;
        ch->wm = b->watermark > ch->wm ? b->watermark : ch->wm;
        break;
    case KP_MSG_IDLE:
        ch->idle = 1;
        break;
    case KP_MSG_END:
        ch->ended = 1;
        ch->wm = KP_TIME_MAX; /* an input that ended holds nothing back */
        break;
    case KP_MSG_BARRIER:
        on_barrier(s, c, i, b->watermark);
        break;
    }
    kp_inbox_release(inbox, b);
    if (rc != 0)
        return -1;
    /* a barrier, or an END that was the last one missing: the snapshot, before the end */
    while (c->aligning && aligned(c))
        if (take(s, c) != 0)
            return -1;
    int all_idle, all_ended;
    kp_time m = min_watermark(c->in, c->n, &all_idle, &all_ended);
    if (all_ended) {
        /* the completions already posted first (the final checkpoint's: its sinks commit
         * through its notification, not at their end-of-input flush) */
        int served = s->ckpt.done ? kp_exec_control_serve(s) : 1;
        if (served <= 0)
            return served;
        return head->vt->finish(head) != 0 ? -1 : 0;
    }
    if (all_idle && !c->was_idle) {
        /* the last active input went idle or ended: first pass on the furthest watermark any
         * input reached (an input that ended reached KP_TIME_MAX), as Flink's valve does —
         * otherwise windows an ended input completed would wait for idle inputs, and the
         * downstream operators, told "idle", would pass this subtask's results by */
        kp_time top = KP_TIME_MIN;
        for (int k = 0; k < c->n; k++)
            top = c->in[k].wm > top ? c->in[k].wm : top;
        if (top > c->cur) {
            c->cur = top;
            if (head->vt->watermark(head, top) != 0)
                return -1;
        }
        if (head->vt->idle(head) != 0)
            return -1;
    }
    c->was_idle = all_idle;
    if (!all_idle && m > c->cur) {
        c->cur = m;
        if (head->vt->watermark(head, m) != 0)
            return -1;
    }
    if (s->st.live) /* exec_live.h: once per batch */
        atomic_store_explicit(&s->st.live->watermark_ms, c->cur, memory_order_relaxed);
    return 1;
}

/* Processes held batches of inputs that are no longer held back, in each input's order,
 * until none can go (every queue is empty or its input is held back again). */
static int drain(subtask_rt *s, consumer *c)
{
    int progress = 1;
    while (progress && c->nheld) {
        progress = 0;
        for (int i = 0; i < c->n; i++)
            while (c->in[i].held && !blocked(s, c, i)) {
                int rc = deliver(s, c, unhold(c, &c->in[i]));
                if (rc <= 0)
                    return rc;
                progress = 1;
            }
    }
    return 1;
}

int kp_exec_consume(subtask_rt *s, consumer *c, kp_batch *b)
{
    input_state *ch = &c->in[b->channel];
    if (ch->held || blocked(s, c, b->channel)) {
        hold(c, ch, b);
        return 1;
    }
    int rc = deliver(s, c, b);
    if (rc <= 0 || !c->nheld)
        return rc;
    return drain(s, c);
}

int kp_exec_abort_alignment(subtask_rt *s, consumer *c, int64_t id)
{
    if (id > c->last && id != c->aligning && !aborted_early(c, id))
        c->aborted[c->naborted++ % 4] = id; /* its barriers, still on their way, are stale */
    if (!c->aligning || c->aligning != id)
        return 1;
    give_up(s, c, "the checkpoint was aborted");
    return c->nheld ? drain(s, c) : 1;
}

void kp_exec_input_free(subtask_rt *s, consumer *c)
{
    kp_inbox *inbox = s->t->inboxes ? s->t->inboxes[s->st.index] : NULL;
    for (int i = 0; i < c->n && inbox; i++)
        while (c->in[i].held)
            kp_inbox_release(inbox, unhold(c, &c->in[i]));
}

int kp_exec_control_serve(subtask_rt *s)
{
    kp_ctl m;
    int rc = 1;
    while (rc == 1 && s->st.ctl && kp_mailbox_take(s->st.ctl, &m, 0)) {
        if (m.kind == KP_CTL_COMPLETE)
            rc = kp_op_checkpoint_complete(s->chain, m.value) != 0 ? -1 : 1;
        else if (m.kind == KP_CTL_ABORT)
            rc = kp_exec_abort_alignment(s, &s->cons, m.value);
    }
    return rc;
}
