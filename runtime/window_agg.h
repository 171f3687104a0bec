/* Aggregates as the window operators run them: count, sum, min, max and custom accumulators
 * behind one init/add/merge/emit interface, plus the document an aggregate emits. Shared by
 * the pane-based windows (op_window.c) and session windows (op_session.c). */
#ifndef KP_WINDOW_AGG_H
#define KP_WINDOW_AGG_H

#include "engine.h"

typedef struct kp_agg {
    int kind; /* KP_AGG_* */
    const kp_agg_opts *o;
    size_t acc_size;
} kp_agg;

static inline void kp_agg_setup(kp_agg *a, const kp_node *agg_node)
{
    a->kind = agg_node->u.agg.kind;
    a->o = &agg_node->u.agg.opts;
    a->acc_size = a->kind == KP_AGG_CUSTOM ? a->o->acc_size : sizeof(int64_t);
}

static inline void kp_agg_init(const kp_agg *a, void *acc)
{
    switch (a->kind) {
    case KP_AGG_MIN:
        *(int64_t *)acc = INT64_MAX;
        break;
    case KP_AGG_MAX:
        *(int64_t *)acc = INT64_MIN;
        break;
    case KP_AGG_CUSTOM:
        memset(acc, 0, a->acc_size);
        if (a->o->init)
            a->o->init(acc);
        break;
    default:
        *(int64_t *)acc = 0;
    }
}

static inline void kp_agg_add(const kp_agg *a, void *acc, const kp_event *ev)
{
    int64_t *v = acc;
    switch (a->kind) {
    case KP_AGG_COUNT:
        (*v)++;
        break;
    case KP_AGG_SUM:
        *v += a->o->value(ev);
        break;
    case KP_AGG_MIN: {
        int64_t x = a->o->value(ev);
        *v = x < *v ? x : *v;
        break;
    }
    case KP_AGG_MAX: {
        int64_t x = a->o->value(ev);
        *v = x > *v ? x : *v;
        break;
    }
    default:
        a->o->add(acc, ev);
    }
}

static inline void kp_agg_merge(const kp_agg *a, void *acc, const void *other)
{
    int64_t *v = acc;
    int64_t x = 0;
    if (a->kind != KP_AGG_CUSTOM)
        memcpy(&x, other, sizeof x);
    switch (a->kind) {
    case KP_AGG_COUNT:
    case KP_AGG_SUM:
        *v += x;
        break;
    case KP_AGG_MIN:
        *v = x < *v ? x : *v;
        break;
    case KP_AGG_MAX:
        *v = x > *v ? x : *v;
        break;
    default:
        a->o->merge(acc, other);
    }
}

/* ---- time arithmetic where user times meet options ------------------------------------ */

/* a + b saturated to [KP_TIME_MIN, KP_TIME_MAX]: event times are any int64, and window
 * sizes, gaps and allowed lateness may be as large as KP_TIME_MAX, so their sums may not
 * exist in int64. */
static inline kp_time kp_time_add_sat(kp_time a, kp_time b)
{
    kp_time s;
    if (__builtin_add_overflow(a, b, &s))
        return b > 0 ? KP_TIME_MAX : KP_TIME_MIN;
    return s;
}

/* The lateness rule (docs/semantics.md): a window or session whose last instant is `last`
 * (end - 1) is past its allowed lateness at watermark wm when last + lateness <= wm, the sum
 * saturated (with lateness KP_TIME_MAX a window is kept until the watermark reaches
 * KP_TIME_MAX, the end of input). Judged against a record's carried watermark it says
 * whether the record is late for the window; against the operator's watermark, whether the
 * window can be purged. */
static inline int kp_past_lateness(kp_time last, kp_time lateness, kp_time wm)
{
    return kp_time_add_sat(last, lateness) <= wm;
}

/* The cwm argument of kp_agg_emit for a firing by the watermark: the result then carries
 * end - 2 — a function of the log, and no downstream watermark can be ahead of it (this
 * operator passes a watermark >= end - 1 on only after firing). A re-firing caused by a record
 * passes that record's cwm, which the operator's watermark is never ahead of. */
#define KP_EMIT_FIRED KP_TIME_MAX

/* Builds the result document of one (key, window) into `doc` and emits it on `op`.
 * The document id defaults to "key|window_end"; the record's time is window end - 1. */
int kp_agg_emit(const kp_agg *a, kp_op *op, kp_doc *doc, const kp_window *w, kp_bytes key,
                const void *acc, kp_time cwm);

#endif
