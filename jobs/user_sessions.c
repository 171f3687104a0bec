/* Sessions and timers: per user, click sessions with a 30-minute gap (count and distinct
 * span), and a keyed process function that flags users who go quiet for 2 hours of event
 * time after a burst of 3+ clicks. The function keeps ONE pending event-time timer per user
 * (each click that moves the deadline deletes the old timer and registers the new one), and
 * clears the user's state when the timer fires, so users who stop clicking cost nothing.
 *
 * Sinks: "user-sessions" ({user_id, clicks, session_start, session_end}) and
 * "quiet-users" ({user_id, last_click, burst}). */
#include <inttypes.h>
#include <kappa/kappa.h>

static kp_rc parse_click(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str user = kp_json_str(&j, "user_id");
    int64_t ts = kp_json_int(&j, "timestamp", -1);
    if (user.len == 0 || ts < 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, user);
    kp_event_time(ev, ts);
    return KP_OK;
}

static void write_session(kp_doc *doc, const kp_window *w, kp_str user, int64_t clicks)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(user), w->start);
    kp_doc_str(doc, "user_id", user);
    kp_doc_int(doc, "clicks", clicks);
    kp_doc_int(doc, "session_start", w->start);
    kp_doc_int(doc, "session_end", w->end);
}

typedef struct quiet_state {
    int64_t last_click;
    int64_t burst; /* clicks since the user was last quiet */
} quiet_state;

#define QUIET (2 * KP_HOUR)

static kp_rc on_click(kp_ctx *ctx, const kp_event *ev)
{
    bool exists;
    quiet_state *s = kp_ctx_value(ctx, &exists);
    kp_time t = kp_event_get_time(ev);
    s->burst++;
    if (exists && t <= s->last_click)
        return KP_OK; /* the deadline stays */
    if (exists)
        kp_timer_delete(ctx, s->last_click + QUIET, true);
    s->last_click = t;
    kp_ctx_timer_event(ctx, s->last_click + QUIET);
    return KP_OK;
}

static kp_rc on_quiet(kp_ctx *ctx, kp_time when, bool event_time)
{
    bool exists;
    quiet_state *s = kp_ctx_value(ctx, &exists);
    if (exists && when != s->last_click + QUIET)
        return KP_OK; /* cannot happen: a click that moves the deadline deletes the timer */
    if (s->burst >= 3) {
        kp_doc *doc = kp_ctx_emit(ctx);
        kp_str user = kp_ctx_key(ctx);
        kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(user), s->last_click);
        kp_doc_str(doc, "user_id", user);
        kp_doc_int(doc, "last_click", s->last_click);
        kp_doc_int(doc, "burst", s->burst);
        kp_ctx_emit_done(ctx, doc);
    }
    kp_ctx_value_clear(ctx);
    return KP_OK;
}

KP_JOB(user_sessions)
{
    kp_stream *clicks = kp_source(job, "clicks", .decode = parse_click,
                                  .out_of_order = 10 * KP_SECOND, .on_error = KP_POLICY_SKIP);
    kp_stream *by_user = kp_key_by(clicks);
    kp_sink(kp_count(kp_window(by_user, kp_session(30 * KP_MINUTE)), .emit = write_session,
                     .uid = "user-session-count"),
            "user-sessions");
    /* the clicks topic is keyed by user_id (Kafka's default partitioner): a user's clicks
     * come from one partition, so the quiet-user timers follow the log exactly */
    kp_sink(kp_process(by_user, .on_event = on_click, .on_timer = on_quiet,
                       .key_in_one_partition = true, .value_size = sizeof(quiet_state),
                       .uid = "quiet-users"),
            "quiet-users");
}
