/* A consumer subtask's inputs: each popped batch goes through its chain, and the watermark
 * it passes on is the minimum over its active inputs — with idle and ended inputs left out,
 * and the furthest watermark passed on first when the last active input goes idle (Flink's
 * valve). Shared by the threaded runner (exec.c) and the deterministic scheduler
 * (exec_step.c). @locality the consumer subtask's thread */
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

int kp_exec_consume(subtask_rt *s, consumer *c, kp_batch *b)
{
    kp_inbox *inbox = s->t->inboxes[s->st.index];
    kp_op *head = s->chain;
    input_state *ch = &c->in[b->channel];
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
    }
    kp_inbox_release(inbox, b);
    if (rc != 0)
        return -1;
    int all_idle, all_ended;
    kp_time m = min_watermark(c->in, c->n, &all_idle, &all_ended);
    if (all_ended)
        return head->vt->finish(head) != 0 ? -1 : 0;
    if (all_idle && !c->was_idle) {
        /* the last active input went idle or ended: first pass on the furthest watermark any
         * input reached (an input that ended reached KP_TIME_MAX), as Flink's valve does —
         * otherwise windows an ended input completed would wait for idle inputs, and the
         * downstream operators, told "idle", would pass this subtask's results by */
        kp_time top = KP_TIME_MIN;
        for (int i = 0; i < c->n; i++)
            top = c->in[i].wm > top ? c->in[i].wm : top;
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
