/* The document a window aggregate emits for one (key, window); see window_agg.h. */
#include <inttypes.h>
#include <stdio.h>

#include "window_agg.h"

/* Without an emit function: {"key":..,"window_start":..,"window_end":..,"value":..}. */
static void default_emit(kp_doc *doc, const kp_window *w, kp_str key, int64_t value)
{
    kp_doc_str(doc, "key", key);
    kp_doc_int(doc, "window_start", w->start);
    kp_doc_int(doc, "window_end", w->end);
    kp_doc_int(doc, "value", value);
}

int kp_agg_emit(const kp_agg *a, kp_op *op, kp_doc *doc, const kp_window *w, kp_bytes key,
                const void *acc, kp_time cwm)
{
    kp_doc_begin(doc);
    if (a->kind == KP_AGG_CUSTOM) {
        a->o->emit_acc(doc, w, key, acc);
    } else {
        int64_t v;
        memcpy(&v, acc, sizeof v);
        (a->o->emit ? a->o->emit : default_emit)(doc, w, key, v);
    }
    if (doc->id.len == 0) {
        char end[24];
        size_t n = kp_fmt_i64(end, w->end);
        if (kp_buf_append(&doc->id, key.ptr, key.len) != 0 ||
            kp_buf_append(&doc->id, "|", 1) != 0 || kp_buf_append(&doc->id, end, n) != 0)
            return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
    }
    if (kp_doc_end(doc) != 0)
        return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
    if (cwm == KP_EMIT_FIRED) /* fired by the watermark: below the result's time, from the log */
        cwm = w->end < KP_TIME_MIN + 2 ? KP_TIME_MIN : w->end - 2;
    return kp_op_emit_doc(op, doc, w->end - 1, cwm);
}
