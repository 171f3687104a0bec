/* The source side of a subtask: polls its connector reader, runs the job's decode function
 * on each raw record in place, applies the decode-error policy, stamps each record with its
 * partition's carried watermark and generates watermarks into the chain.
 *
 * Watermarks (watermarks.c: per partition, minimum over owned partitions, ended and idle
 * partitions left out) are passed to the chain after every poll and every `watermark_every`
 * records; the exchange carries them in its batches, so this costs no messages. Which records
 * are late is judged downstream from each record's own carried watermark, so nothing here
 * needs to be timed: polls, alignment pauses and thread scheduling change latency, never
 * results (docs/semantics.md).
 *
 * At the end of a bounded input with checkpoints on (and a coordinator that takes a final
 * checkpoint: st->ckpt->at_end), the source emits the final watermark but not its END: it
 * waits, answering triggers like a running source (its positions are the end positions, its
 * acknowledgement says "end_of_input"), until the final checkpoint — taken after every
 * source's end — completed (KP_CTL_FINAL), and only then ends (FLIP-147; docs/checkpoints.md,
 * Bounded inputs).
 *
 * A source runs in steps (kp_source_step): one poll and what follows from it. The threaded
 * executor loops over steps; the deterministic scheduler (exec_step.c) interleaves the steps
 * of all subtasks in a seeded random order. @locality the source subtask's thread. */
#include <stdlib.h>

#include "align.h"
#include "connector.h"
#include "exec_ckpt.h"
#include "exec_live.h"
#include "source.h"
#include "source_ckpt.h"
#include "watermarks.h"

/* Checkpoints whose positions wait for their completion (then committed to the consumer
 * group, for monitoring). More concurrent ones than this: the oldest is not committed. */
#define PENDING_COMMITS 4

typedef struct pending_commit {
    int64_t id; /* 0 = free */
    kp_offset *offs;
    int n;
} pending_commit;

struct kp_source_task {
    kp_subtask *st;
    const kp_node *node;
    const kp_source_opts *o;
    kp_op *chain;
    kp_error_policy policy;
    kp_sink_writer *dead;
    const char *uri; /* the source's binding, for dead-letter metadata */
    kp_wm_tracker wm;
    kp_time emitted_wm;
    kp_time reported; /* the watermark last reported to the alignment coordinator */
    kp_time allowed;  /* alignment: do not read past this watermark (coordinator's bound) */
    int idle;         /* the last thing sent downstream was "idle" */
    kp_time now;      /* wall clock, read once per poll */
    kp_time ticked;   /* when the chain was last ticked (monotonic) */
    kp_time refreshed;
    int since_wm;
    double poll_idle_s; /* exec_live.h: time in polls that brought no record */
    int watermark_every;
    kp_source_reader *r;
    const kp_binding *b;
    kp_buf key_buf, val_buf;
    /* checkpoints: positions to commit, and a restore's positions until the first
     * assignment of partitions applied their watermark state */
    pending_commit commits[PENDING_COMMITS];
    kp_src_pos *restored;
    int nrestored;
    kp_offset *restore_offs;
    long long decode_errors, dead_lettered; /* this subtask's, for its live JSON */
    int64_t drain_id; /* stop --drain: the savepoint taken after the final watermark */
    int drained;      /* ... completed: the source ends */
    int at_end;       /* the end of bounded input: waiting for the final checkpoint */
    int64_t end_ckpt; /* ... the first checkpoint taken since (0: none yet) */
    int final_done;   /* ... a final checkpoint it took part in completed: the source ends */
    kp_raw raws[256];
};
typedef struct kp_source_task source_state;

/* Tells the alignment coordinator this subtask's watermark or idleness, when it changed — a
 * watermark once it moved by an eighth of the drift (or reached the end) since the last
 * report. The coordinator's bound is the slowest report + drift, so the others may be held
 * back by drift/8 more than they must; in exchange the coordinator's thread is not woken for
 * every poll (a context switch per 256 records and source subtask at p >= 2). */
static void report(source_state *s, kp_ctl_kind kind, kp_time wm)
{
    kp_subtask *st = s->st;
    if (!st->coordinator)
        return;
    kp_time step = st->align_drift > 0 ? st->align_drift / 8 : 0, moved;
    if (kind == KP_CTL_WATERMARK && s->reported != KP_TIME_MIN && wm != KP_TIME_MAX &&
        !__builtin_sub_overflow(wm, s->reported, &moved) && moved >= 0 && moved <= step)
        return; /* (a watermark near KP_TIME_MIN, e.g. before any data, must not overflow) */
    if (kp_mailbox_post(st->coordinator, (kp_ctl){kind, st->task_id, st->index, wm}) == 0)
        s->reported = kind == KP_CTL_WATERMARK ? wm : KP_TIME_MIN; /* else: again next time */
}

/* ---- checkpoints ----------------------------------------------------------------------- */

static int fill_positions(void *arg, kp_snapshot *snap);

/* Trigger: the positions into the snapshot, then the barrier through the chain. Between two
 * polls every record handed out has gone through the chain, so the positions are exactly
 * the records before the barrier. */
static int trigger(source_state *s, int64_t id)
{
    if (!s->st->ckpt)
        return 0;
    if (s->at_end && !s->end_ckpt)
        s->end_ckpt = id;
    s->now = kp_wall_ms();
    return kp_ckpt_take(s->st, s->chain, id, 0, fill_positions, s);
}

static int fill_positions(void *arg, kp_snapshot *snap)
{
    source_state *s = arg;
    int64_t id = kp_snapshot_id(snap);
    pending_commit *c = &s->commits[0];
    for (int i = 1; i < PENDING_COMMITS; i++) /* a free slot, else the oldest */
        if (c->id && (!s->commits[i].id || s->commits[i].id < c->id))
            c = &s->commits[i];
    if (!c->offs && !(c->offs = malloc(KP_SRC_CKPT_MAX * sizeof *c->offs)))
        return -1;
    c->id = 0;
    kp_snapshot_set_end_of_input(snap, s->at_end);
    int rc = kp_src_ckpt_write(snap, s->node->uid, s->r, &s->wm, c->offs, KP_SRC_CKPT_MAX, &c->n);
    if (rc == -2) {
        kp_ckpt_decline(s->st, id, "source '%s' (%s) cannot report its position", s->node->endpoint,
                        s->uri);
        return 0;
    }
    if (rc == 0)
        c->id = id;
    return rc;
}

/* stop --drain: no more reading; the final watermark fires every window and timer, then
 * checkpoint `id` (the savepoint) is taken after them; the source ends once it completed. */
static int drain(source_state *s, int64_t id)
{
    if (s->drain_id)
        return 0;
    s->drain_id = id;
    if (s->emitted_wm != KP_TIME_MAX && kp_op_emit_watermark(s->chain, KP_TIME_MAX) != 0)
        return -1;
    s->emitted_wm = KP_TIME_MAX;
    return trigger(s, id);
}

/* Checkpoint `id` completed: commits its positions (monitoring only) and forgets older
 * ones; the chain's sinks commit too. */
static int complete(source_state *s, int64_t id)
{
    s->drained |= s->drain_id && id >= s->drain_id;
    for (int i = 0; i < PENDING_COMMITS; i++) {
        pending_commit *c = &s->commits[i];
        if (!c->id || c->id > id)
            continue;
        char err[512];
        if (c->id == id && s->r->commit && s->r->commit(s->r, c->offs, c->n, err, sizeof err))
            fprintf(stderr, "kappa: %s: committing the positions of checkpoint %lld: %s\n",
                    s->st->name, (long long)id, err);
        c->id = 0;
    }
    return kp_op_checkpoint_complete(s->chain, id);
}

static void abort_commit(source_state *s, int64_t id)
{
    for (int i = 0; i < PENDING_COMMITS; i++)
        if (s->commits[i].id == id)
            s->commits[i].id = 0;
}

/* Restore: the positions every old subtask recorded (the reader takes the partitions it
 * owns); their watermark state is applied once the partitions are assigned. */
static int read_restore(source_state *s)
{
    char err[512];
    if (!s->st->restore)
        return 0;
    if (kp_src_ckpt_read(s->st->restore, s->node->uid, &s->restored, &s->nrestored, err,
                         sizeof err) != 0)
        return kp_subtask_fail(s->st, "restoring source '%s': %s", s->node->endpoint, err);
    if (!s->nrestored)
        return 0;
    if (!(s->restore_offs = malloc((size_t)s->nrestored * sizeof *s->restore_offs)))
        return kp_subtask_fail(s->st, "restoring source '%s': out of memory", s->node->endpoint);
    for (int i = 0; i < s->nrestored; i++)
        s->restore_offs[i] = (kp_offset){s->restored[i].partition, s->restored[i].offset};
    return 0;
}

/* The restored watermark state of the owned partitions, once. */
static void apply_restore(source_state *s)
{
    for (int i = 0; i < s->nrestored; i++) {
        const kp_src_pos *r = &s->restored[i];
        int k = r->partition + 1;
        if (k < 0 || k >= s->wm.cap || !s->wm.parts[k].owned)
            continue;
        kp_wm_part *p = &s->wm.parts[k];
        if (r->max_ts > p->max_ts)
            p->max_ts = r->max_ts;
        p->ended |= r->ended;
    }
    free(s->restored);
    s->restored = NULL;
    s->nrestored = 0;
}

/* Reads the coordinator's messages — alignment bounds, checkpoint triggers, completions and
 * aborts — waiting up to timeout_ms for one when told to. 0, or -1 when the subtask failed. */
static int read_bounds(source_state *s, int timeout_ms)
{
    kp_ctl m;
    if (!s->st->ctl)
        return 0;
    while (kp_mailbox_take(s->st->ctl, &m, timeout_ms)) {
        if (m.kind == KP_CTL_ALIGN)
            s->allowed = m.value;
        else if (m.kind == KP_CTL_TRIGGER && trigger(s, m.value) != 0)
            return -1;
        else if (m.kind == KP_CTL_COMPLETE && complete(s, m.value) != 0)
            return -1;
        else if (m.kind == KP_CTL_DRAIN && drain(s, m.value) != 0)
            return -1;
        else if (m.kind == KP_CTL_ABORT && s->drain_id && m.value == s->drain_id)
            return kp_subtask_fail(s->st,
                                   "the savepoint of a stop --drain (checkpoint %lld) was "
                                   "given up after the final watermark",
                                   (long long)m.value);
        else if (m.kind == KP_CTL_ABORT)
            abort_commit(s, m.value);
        else if (m.kind == KP_CTL_FINAL)
            s->final_done |= s->end_ckpt && m.value >= s->end_ckpt;
        timeout_ms = 0;
    }
    return 0;
}

/* Sends the current watermark downstream if it advanced, or "idle" when every owned
 * partition is idle. */
static int emit_watermark(source_state *s)
{
    int all_idle;
    kp_time wm = kp_wm_current(&s->wm, s->now, &all_idle);
    if (all_idle) {
        if (s->idle)
            return 0;
        s->idle = 1;
        report(s, KP_CTL_IDLE, 0);
        return kp_op_emit_idle(s->chain);
    }
    if (wm <= s->emitted_wm && !s->idle)
        return 0;
    s->idle = 0;
    if (wm > s->emitted_wm)
        s->emitted_wm = wm;
    report(s, KP_CTL_WATERMARK, s->emitted_wm);
    return kp_op_emit_watermark(s->chain, s->emitted_wm);
}

static int bad_input(source_state *s, const kp_raw *raw)
{
    kp_metrics *m = s->st->metrics;
    atomic_fetch_add_explicit(&m->decode_errors, 1, memory_order_relaxed);
    s->decode_errors++;
    if (s->policy == KP_POLICY_SKIP)
        return 0;
    if (s->policy == KP_POLICY_DEAD_LETTER) {
        char err[256], id[48], origin[256];
        int rc;
        if (s->dead->write_raw) {
            kp_endpoint ep = {.uri = s->uri};
            rc = s->dead->write_raw(s->dead, raw, kp_endpoint_target(&ep, origin, sizeof origin),
                                    "decode returned KP_BAD_INPUT", err, sizeof err);
        } else {
            snprintf(id, sizeof id, "%d:%lld", raw->partition, (long long)raw->offset);
            rc = s->dead->write(s->dead, KP_CSTR(id), raw->value, raw->ts, err, sizeof err);
        }
        if (rc != 0)
            return kp_subtask_fail(s->st, "dead-letter output of '%s': %s", s->node->endpoint, err);
        atomic_fetch_add_explicit(&m->dead_lettered, 1, memory_order_relaxed);
        s->dead_lettered++;
        return 0;
    }
    return kp_subtask_fail(s->st,
                           "source '%s': malformed record at partition %d offset %lld: "
                           "'%.*s' (set the on-error policy to skip or dead-letter to go on)",
                           s->node->endpoint, raw->partition, (long long)raw->offset,
                           (int)(raw->value.len > 120 ? 120 : raw->value.len), raw->value.ptr);
}

static int handle(source_state *s, const kp_raw *raw)
{
    kp_event ev = {.key = raw->key,
                   .value = raw->value,
                   .ts = raw->ts != KP_TIME_MIN ? raw->ts : s->now,
                   .key_buf = &s->key_buf,
                   .val_buf = &s->val_buf};
    kp_rc rc = s->o->decode ? s->o->decode(&ev, raw->value) : KP_OK;
    if (ev.bad)
        return kp_subtask_fail(s->st, "source '%s': out of memory", s->node->endpoint);
    if (ev.ts == KP_TIME_MIN) /* neither the system nor decode gave a time: ingestion time */
        ev.ts = s->now;
    switch (rc) {
    case KP_OK:
        if (kp_wm_observe(&s->wm, raw->partition, ev.ts, s->now, &ev.cwm) != 0)
            return kp_subtask_fail(s->st, "source '%s': partition %d out of range",
                                   s->node->endpoint, raw->partition);
        return kp_op_emit(s->chain, &ev);
    case KP_SKIP:
        atomic_fetch_add_explicit(&s->st->metrics->skipped, 1, memory_order_relaxed);
        return 0;
    case KP_BAD_INPUT:
        return bad_input(s, raw);
    default:
        return kp_subtask_fail(s->st, "source '%s': decode failed (KP_ERROR) at offset %lld",
                               s->node->endpoint, (long long)raw->offset);
    }
}

static int open_dead_letter(source_state *s, const kp_binding *b)
{
    if (s->policy != KP_POLICY_DEAD_LETTER)
        return 0;
    if (!b->dead_letter)
        return kp_subtask_fail(s->st,
                               "source '%s' uses dead-letter but has no --dead-letter "
                               "%s=URI",
                               s->node->endpoint, s->node->endpoint);
    const kp_connector *c = kp_connector_find(b->dead_letter);
    char err[512];
    kp_endpoint ep = {.name = s->node->endpoint,
                      .uri = b->dead_letter,
                      .subtask = s->st->index,
                      .parallelism = s->st->parallelism,
                      .conf = s->st->conf,
                      .epoch = s->st->epoch,
                      .cancelled = kp_subtask_cancel_probe,
                      .cancel_arg = s->st};
    s->dead = c && c->open_sink ? c->open_sink(&ep, err, sizeof err) : NULL;
    if (!s->dead)
        return kp_subtask_fail(s->st, "dead-letter output '%s': %s", b->dead_letter,
                               c ? err : "no connector for this URI");
    return 0;
}

/* Refreshes the owned partitions from the reader (new partitions, rebalances). */
static int refresh_partitions(source_state *s, kp_source_reader *r)
{
    int32_t parts[1024];
    int n = 1;
    parts[0] = -1;
    if (r->partitions)
        n = r->partitions(r, parts, 1024);
    if (kp_wm_assign(&s->wm, parts, n, s->now) != 0)
        return kp_subtask_fail(s->st, "source '%s': cannot track %d partitions", s->node->endpoint,
                               n);
    if (s->restored)
        apply_restore(s);
    return 0;
}

/* Watermark alignment between the partitions of this subtask (Flink's split-level
 * alignment): a partition more than 4 x align_drift of event time ahead of the slowest one is
 * paused until it is within 2 x align_drift again. Fetching is bursty — one fetch can carry
 * hours of one partition's event time — which is why the bound is wider than between
 * subtasks. A partition that has not delivered its first record yet holds all others back (as
 * it holds the watermark). A partition the reader reports as caught up (nothing more to read
 * right now) does not count as the slowest, so a drained or empty partition cannot pause the
 * others forever; one that is merely slow or unreachable does, so it cannot be overtaken by
 * hours. */
static void align_partitions(source_state *s, kp_source_reader *r)
{
    kp_time drift = s->st->align_drift;
    kp_wm_tracker *t = &s->wm;
    if (!r->pause || drift < 0)
        return;
    kp_time slowest = KP_TIME_MAX;
    int waiting = 0; /* an owned partition has not delivered yet, but has data to come */
    for (int i = 0; i < t->cap; i++) {
        const kp_wm_part *p = &t->parts[i];
        if (!p->owned)
            continue;
        int caught_up = r->caught_up ? r->caught_up(r, i - 1) == 1 : s->now - p->last_data >= 1000;
        if (p->max_ts == KP_TIME_MIN)
            waiting |= !caught_up;
        else if ((p->paused || !caught_up) && p->max_ts < slowest)
            slowest = p->max_ts;
    }
    for (int i = 0; i < t->cap; i++) {
        kp_wm_part *p = &t->parts[i];
        if (!p->owned || p->max_ts == KP_TIME_MIN)
            continue;
        kp_time ahead = slowest == KP_TIME_MAX ? 0 : p->max_ts - slowest;
        int want = waiting || (p->paused ? ahead > 2 * drift : ahead > 4 * drift);
        if (want != p->paused && r->pause(r, i - 1, want) == 0)
            p->paused = want;
    }
}

/* Asks the reader which owned partitions have ended or are caught up with the log end. */
static void partition_states(source_state *s)
{
    kp_wm_tracker *t = &s->wm;
    for (int i = 0; i < t->cap; i++) {
        kp_wm_part *p = &t->parts[i];
        if (!p->owned || p->ended)
            continue;
        if (s->r->ended)
            p->ended = s->r->ended(s->r, i - 1) == 1;
        p->caught_up = s->r->caught_up ? s->r->caught_up(s->r, i - 1) == 1 : -1;
    }
}

/* The end of bounded input: everything is final, as Flink does at the end of a bounded
 * source: the final watermark fires every window and timer downstream. With a final
 * checkpoint to wait for, the END is sent later (kp_source_step); 1 then, else 0 or -1. */
static int finish(source_state *s)
{
    if (emit_watermark(s) != 0 || kp_op_emit_watermark(s->chain, KP_TIME_MAX) != 0)
        return -1;
    s->emitted_wm = KP_TIME_MAX;
    const kp_ckpt_out *ck = s->st->ckpt;
    if (!ck || !ck->at_end)
        return kp_op_emit_finish(s->chain) != 0 ? -1 : 0;
    report(s, KP_CTL_IDLE, 0); /* holds no other subtask back while it waits */
    s->at_end = 1;
    ck->at_end(ck->ctx);
    return 1;
}

static int tick(source_state *s)
{
    kp_time mono = kp_mono_ms();
    if (mono - s->ticked < KP_TICK_MS)
        return 0;
    s->ticked = mono;
    return kp_op_tick(s->chain, s->now);
}

/* exec_live.h, at most once a second: {"reader": the reader's stats or null, "decode_errors":
 * malformed records, "dead_lettered": those sent to the dead-letter output, "watermarks":
 * [{partition, watermark}] of the owned partitions with a carried watermark}. */
static void publish_source_json(source_state *s)
{
    char buf[KP_LIVE_JSON_MAX];
    size_t len = sizeof buf, o = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + o, o < len ? len - o : 0, __VA_ARGS__);                            \
        o += w_ > 0 ? (size_t)w_ : 0;                                                              \
    } while (0)
    PUT("{\"reader\":");
    if (s->r && s->r->stats && o < len)
        o += s->r->stats(s->r, buf + o, len - o);
    else
        PUT("null");
    PUT(",\"decode_errors\":%lld,\"dead_lettered\":%lld,\"watermarks\":[", s->decode_errors,
        s->dead_lettered);
    int first = 1;
    for (int i = 0; i < s->wm.cap; i++) {
        kp_time w = s->wm.parts[i].owned ? kp_wm_of(&s->wm, &s->wm.parts[i]) : KP_TIME_MIN;
        if (w == KP_TIME_MIN)
            continue;
        PUT("%s{\"partition\":%d,\"watermark\":%lld}", first ? "" : ",", i - 1, (long long)w);
        first = 0;
    }
    PUT("]}");
#undef PUT
    if (o < len) /* else truncated: not valid JSON, not published */
        kp_live_json_put(&s->st->live->source, buf, o);
}

int kp_source_step(source_state *s, int timeout_ms)
{
    if (kp_subtask_cancelled(s->st))
        return -1;
    s->now = kp_wall_ms();
    if (s->now - s->refreshed >= 1000) {
        if (refresh_partitions(s, s->r) != 0)
            return -1;
        s->refreshed = s->now;
    }
    if (read_bounds(s, 0) != 0)
        return -1;
    /* stop --drain, or the end of input: read nothing more, wait for the savepoint or the
     * final checkpoint */
    if (s->drain_id || s->at_end) {
        if (!s->drained && !s->final_done && read_bounds(s, timeout_ms) != 0)
            return -1;
        if (s->drained || s->final_done)
            return kp_op_emit_finish(s->chain) != 0 ? -1 : 0;
        s->now = kp_wall_ms();
        return tick(s) != 0 ? -1 : 1;
    }
    if (s->emitted_wm > s->allowed && s->emitted_wm != KP_TIME_MAX) { /* wait for the slowest */
        if (read_bounds(s, timeout_ms) != 0)
            return -1;
        s->now = kp_wall_ms();
        return tick(s) != 0 ? -1 : 1;
    }
    int n = 0;
    char err[512];
    double t0 = s->st->live ? kp_mono_s() : 0; /* once per poll, for the idle ratio */
    kp_poll_rc rc = s->r->poll(s->r, s->raws, 256, &n, timeout_ms, err, sizeof err);
    if (s->st->live && rc != KP_POLL_RECORDS)
        s->poll_idle_s += kp_mono_s() - t0;
    if (rc == KP_POLL_ERROR)
        return kp_subtask_fail(s->st, "source '%s': %s", s->node->endpoint, err);
    if (rc == KP_POLL_EOF)
        return finish(s);
    long long bytes = 0;
    for (int i = 0; rc == KP_POLL_RECORDS && i < n; i++) {
        bytes += (long long)(s->raws[i].key.len + s->raws[i].value.len);
        if (handle(s, &s->raws[i]) != 0)
            return -1;
        if (++s->since_wm >= s->watermark_every) {
            s->since_wm = 0;
            if (emit_watermark(s) != 0)
                return -1;
        }
    }
    partition_states(s);
    if (emit_watermark(s) != 0)
        return -1;
    align_partitions(s, s->r);
    if (tick(s) != 0)
        return -1;
    if (rc == KP_POLL_RECORDS) {
        atomic_fetch_add_explicit(&s->st->metrics->records_in, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->st->metrics->bytes_in, bytes, memory_order_relaxed);
    }
    if (s->st->live) { /* exec_live.h: once per poll */
        kp_live_add(&s->st->live->records_in, rc == KP_POLL_RECORDS ? n : 0);
        kp_live_add(&s->st->live->bytes_in, rc == KP_POLL_RECORDS ? (long long)bytes : 0);
        atomic_store_explicit(&s->st->live->watermark_ms, s->emitted_wm, memory_order_relaxed);
        kp_live_publish_waits(s->st->live, s->poll_idle_s);
        if (kp_live_json_due(&s->st->live->source))
            publish_source_json(s);
    }
    return 1;
}

source_state *kp_source_open(kp_subtask *st, const kp_node *src, const kp_binding *b, kp_op *chain,
                             int watermark_every)
{
    if (!b) {
        kp_subtask_fail(st, "source '%s' is not bound: pass --source %s=URI", src->endpoint,
                        src->endpoint);
        return NULL;
    }
    const kp_connector *c = kp_connector_find(b->uri);
    if (!c || !c->open_source) {
        kp_subtask_fail(st, "source '%s': no connector for '%s'", src->endpoint, b->uri);
        return NULL;
    }
    source_state *s = calloc(1, sizeof *s);
    if (!s) {
        kp_subtask_fail(st, "source '%s': out of memory", src->endpoint);
        return NULL;
    }
    *s = (source_state){.st = st,
                        .node = src,
                        .o = &src->u.source,
                        .chain = chain,
                        .emitted_wm = KP_TIME_MIN,
                        .reported = KP_TIME_MIN,
                        .allowed = st->coordinator ? KP_TIME_MIN : KP_TIME_MAX,
                        .now = kp_wall_ms(),
                        .watermark_every = watermark_every,
                        .b = b,
                        .uri = b->uri};
    kp_wm_init(&s->wm, s->o->out_of_order, s->o->idle_timeout);
    s->policy = b->on_error != KP_POLICY_DEFAULT ? b->on_error : s->o->on_error;
    if (s->policy == KP_POLICY_DEFAULT)
        s->policy = KP_POLICY_FAIL;
    char err[512];
    if (read_restore(s) != 0) {
        kp_source_close(s, -1);
        return NULL;
    }
    kp_endpoint ep = {.name = src->endpoint,
                      .uri = b->uri,
                      .subtask = st->index,
                      .parallelism = st->parallelism,
                      .conf = st->conf,
                      .epoch = st->epoch,
                      .cancelled = kp_subtask_cancel_probe,
                      .cancel_arg = st,
                      .restore_offsets = s->restore_offs,
                      .nrestore_offsets = s->restore_offs ? s->nrestored : 0,
                      .restored_checkpoint = kp_restore_id(st->restore)};
    s->r = c->open_source(&ep, err, sizeof err);
    if (!s->r) {
        kp_subtask_fail(st, "source '%s' (%s): %s", src->endpoint, b->uri, err);
        kp_source_close(s, -1);
        return NULL;
    }
    if (st->ckpt && !s->r->offsets) { /* every checkpoint would be declined */
        kp_subtask_fail(st,
                        "source '%s' (%s) cannot say where it is, so it cannot take part in "
                        "checkpoints: run without them or bind it to a file or Kafka",
                        src->endpoint, b->uri);
        kp_source_close(s, -1);
        return NULL;
    }
    if (open_dead_letter(s, b) != 0) {
        kp_source_close(s, -1);
        return NULL;
    }
    return s;
}

int kp_source_close(source_state *s, int rc)
{
    char err[512];
    kp_subtask *st = s->st;
    if (rc == 0 && s->dead && s->dead->flush(s->dead, err, sizeof err) != 0)
        rc = kp_subtask_fail(st, "dead-letter output '%s': %s", s->b->dead_letter, err);
    if (rc == 0 && s->r)
        kp_print_connector_stats(st, s->node->name, NULL, s->r->stats ? s->r : NULL);
    if (rc == 0 && st->print_stats)
        fprintf(stderr, "kappa: stats %s (%d/%d): {\"watermark\":%lld}\n", s->node->name,
                st->index + 1, st->parallelism, (long long)s->emitted_wm);
    if (s->r && s->r->memory_peak)
        atomic_fetch_add_explicit(&st->metrics->readahead_peak, (long long)s->r->memory_peak(s->r),
                                  memory_order_relaxed);
    if (s->r)
        s->r->close(s->r);
    if (s->dead)
        s->dead->close(s->dead);
    kp_buf_free(&s->key_buf);
    kp_buf_free(&s->val_buf);
    kp_wm_free(&s->wm);
    for (int i = 0; i < PENDING_COMMITS; i++)
        free(s->commits[i].offs);
    free(s->restored);
    free(s->restore_offs);
    free(s);
    return rc;
}

int kp_source_run(kp_subtask *st, const kp_node *src, const kp_binding *b, kp_op *chain,
                  int watermark_every)
{
    source_state *s = kp_source_open(st, src, b, chain, watermark_every);
    if (!s)
        return -1;
    int rc;
    while ((rc = kp_source_step(s, 100)) == 1)
        ;
    return kp_source_close(s, rc);
}
