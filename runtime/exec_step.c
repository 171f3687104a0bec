/* The deterministic scheduler: runs a prepared job on the calling thread, one step at a time,
 * choosing each step with a seeded random generator — which source subtask polls next, which
 * consumer takes the next batch and from which of its channels (order within a channel is
 * kept, as on a real connection), and when a subtask's clock tick sends its partly filled
 * batches and standalone watermarks. With checkpoints on, the coordinator's turn (triggers,
 * completions) is one more step drawn from the seed, so barriers arrive at seeded points. A seed names one interleaving exactly, so a test can try
 * hundreds of them and print the one that fails. Alignment is off here: the order is the
 * scheduler's.
 *
 * This exists to prove that results depend only on the log (docs/semantics.md): the unit
 * tests run the same input under many seeds at several parallelisms and compare. @locality
 * the calling thread; nothing else runs. */
#include <stdlib.h>

#include "exec_coord.h"
#include "exec_input.h"
#include "exec_step.h"
#include "rng.h"

static uint64_t next(uint64_t *s)
{
    return kp_rng_next(s);
}

static int pick(uint64_t *rng, int n)
{
    return (int)(next(rng) % (uint64_t)n);
}

static int open_sources(struct kp_exec *x)
{
    for (int i = 0; i < x->nsubtasks; i++) {
        subtask_rt *s = x->subtasks[i];
        const kp_node *head = s->t->head;
        if (head->kind != KP_NODE_SOURCE)
            continue;
        const kp_exec_config *cfg = x->cfg;
        s->source = kp_source_open(&s->st, head, kp_exec_binding(cfg, head->endpoint), s->chain,
                                   cfg->watermark_every ? cfg->watermark_every : 1024);
        if (!s->source)
            return -1;
    }
    return 0;
}

/* One step of subtask s; -1 when the job failed. */
static int step(subtask_rt *s, uint64_t *rng)
{
    if (pick(rng, 8) == 0) { /* a clock tick: partial batches and watermarks go out */
        if (kp_op_tick(s->chain, kp_wall_ms()) != 0)
            return -1;
        int rc = s->ckpt.done && !s->source ? kp_exec_control_serve(s) : 1;
        s->done |= rc == 0; /* an abort released held batches that finished the chain */
        return rc < 0 ? -1 : 0;
    }
    if (s->source) {
        int rc = kp_source_step(s->source, 0);
        if (rc <= 0) {
            rc = kp_source_close(s->source, rc);
            s->source = NULL;
            s->done = 1;
        }
        return rc < 0 ? -1 : 0;
    }
    kp_inbox *in = s->t->inboxes[s->st.index];
    int chans[KP_MAX_PARALLELISM];
    int n = kp_inbox_pending(in, chans, KP_MAX_PARALLELISM);
    if (n == 0)
        return 0;
    kp_batch *b = kp_inbox_pop_channel(in, chans[pick(rng, n)]);
    int rc = kp_exec_consume(s, &s->cons, b);
    if (rc == 0)
        s->done = 1;
    return rc < 0 ? -1 : 0;
}

/* Subtasks that have not ended. */
static int running(struct kp_exec *x)
{
    int n = 0;
    for (int i = 0; i < x->nsubtasks; i++)
        n += !x->subtasks[i]->done;
    return n;
}

/* Subtasks that can make progress: open sources, consumers with batches queued. */
static int runnable(struct kp_exec *x, subtask_rt **out)
{
    int n = 0, chans[1];
    for (int i = 0; i < x->nsubtasks; i++) {
        subtask_rt *s = x->subtasks[i];
        if (s->done)
            continue;
        if (s->source || kp_inbox_pending(s->t->inboxes[s->st.index], chans, 1) > 0)
            out[n++] = s;
    }
    return n;
}

void kp_exec_run_stepped(struct kp_exec *x, uint64_t seed)
{
    uint64_t rng = seed | 1;
    subtask_rt **ready = calloc((size_t)x->nsubtasks, sizeof *ready);
    if (!ready || open_sources(x) != 0) {
        if (!ready)
            kp_subtask_fail(&x->subtasks[0]->st, "out of memory");
        goto out;
    }
    while (!kp_subtask_cancelled(&x->subtasks[0]->st)) {
        int n = runnable(x, ready);
        if (n == 0) {
            /* nothing queued: only ticks can move partial batches; if they do not, the
             * job is finished */
            for (int i = 0; i < x->nsubtasks; i++)
                if (!x->subtasks[i]->done && kp_op_tick(x->subtasks[i]->chain, kp_wall_ms()) != 0)
                    goto out;
            if ((n = runnable(x, ready)) == 0)
                break;
        }
        if (x->ckpt_on && pick(&rng, 16) == 0)
            kp_exec_ckpt_poll(x, running(x)); /* the coordinator's turn */
        if (step(ready[pick(&rng, n)], &rng) != 0)
            break;
    }
out:
    for (int i = 0; i < x->nsubtasks; i++)
        if (x->subtasks[i]->source) {
            kp_source_close(x->subtasks[i]->source, -1);
            x->subtasks[i]->source = NULL;
        }
    free(ready);
}
