/* The engine's small shared helpers (engine.h): reusable buffers, number formatting, event
 * setters, documents, and a subtask's reports to whoever runs it. They sit at the bottom of
 * the runtime: operators, connectors and the host API table all use them, and they call
 * nothing above (a subtask reports through the host its runner set, never into exec.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

int kp_buf_reserve(kp_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = realloc(b->ptr, cap);
    if (!p)
        return -1;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int kp_buf_append(kp_buf *b, const void *data, size_t len)
{
    if (kp_buf_reserve(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->ptr + b->len, data, len);
    b->len += len;
    return 0;
}

size_t kp_fmt_u64(char *out, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t kp_fmt_i64(char *out, long long v)
{
    if (v >= 0)
        return kp_fmt_u64(out, (unsigned long long)v);
    out[0] = '-';
    return 1 + kp_fmt_u64(out + 1, 0ull - (unsigned long long)v);
}

void kp_buf_free(kp_buf *b)
{
    free(b->ptr);
    *b = (kp_buf){0};
}

static void copy_into(kp_event *ev, kp_buf *buf, kp_bytes in, kp_bytes *field)
{
    if (!buf) { /* an event without scratch (read-only view): keep the caller's pointer */
        *field = in;
        return;
    }
    buf->len = 0;
    if (kp_buf_append(buf, in.ptr, in.len) != 0) {
        ev->bad = 1;
        return;
    }
    *field = (kp_bytes){buf->ptr, in.len};
}

void kp_event_copy_key(kp_event *ev, kp_bytes key)
{
    ev->hash = 0;
    copy_into(ev, ev->key_buf, key, &ev->key);
}

void kp_event_copy_value(kp_event *ev, kp_bytes value)
{
    copy_into(ev, ev->val_buf, value, &ev->value);
}

/* Appends to the document's JSON; a failed allocation marks the document bad, which
 * kp_doc_end reports, so a truncated document is never emitted. */
void kp_doc_append(kp_doc *doc, const char *data, size_t len)
{
    if (kp_buf_append(&doc->json, data, len) != 0)
        doc->bad = 1;
}

void kp_doc_begin(kp_doc *doc)
{
    doc->id.len = 0;
    doc->json.len = 0;
    doc->nfields = 0;
    doc->bad = 0;
    kp_doc_append(doc, "{", 1);
}

int kp_doc_end(kp_doc *doc)
{
    kp_doc_append(doc, "}", 1);
    return doc->bad ? -1 : 0;
}

void kp_doc_free(kp_doc *doc)
{
    kp_buf_free(&doc->id);
    kp_buf_free(&doc->json);
}

int kp_op_barrier(kp_op *op, struct kp_snapshot *snap)
{
    return op->vt->barrier ? op->vt->barrier(op, snap) : kp_op_emit_barrier(op, snap);
}

int kp_op_emit_barrier(kp_op *op, struct kp_snapshot *snap)
{
    for (int i = 0; i < op->nout; i++)
        if (kp_op_barrier(op->out[i], snap) != 0)
            return -1;
    return 0;
}

int kp_op_checkpoint_complete(kp_op *op, int64_t id)
{
    return op->vt->checkpoint_complete ? op->vt->checkpoint_complete(op, id)
                                       : kp_op_emit_checkpoint_complete(op, id);
}

int kp_op_emit_checkpoint_complete(kp_op *op, int64_t id)
{
    for (int i = 0; i < op->nout; i++)
        if (kp_op_checkpoint_complete(op->out[i], id) != 0)
            return -1;
    return 0;
}

int kp_subtask_fail(kp_subtask *st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    st->host->fail(st->host->ctx, st, msg);
    return -1;
}

int kp_subtask_cancel_probe(void *subtask)
{
    return kp_subtask_cancelled(subtask);
}
