/* A custom accumulator on session windows without .merge. */
#include <kappa/kappa.h>

static void add(void *acc, const kp_event *ev)
{
    (void)ev;
    ++*(long *)acc;
}

static void emit(kp_doc *doc, const kp_window *w, kp_str key, const void *acc)
{
    (void)w;
    kp_doc_str(doc, "key", key);
    kp_doc_int(doc, "n", *(const long *)acc);
}

KP_JOB(custom_no_merge)
{
    kp_stream *in = kp_source(job, "clicks");
    kp_sink(kp_aggregate(kp_window(kp_key_by(in), kp_session(KP_MINUTE)), .name = "sessions",
                         .acc_size = sizeof(long), .add = add, .emit_acc = emit),
            "out");
}
