/* Keyed process functions: value, list and map state per key, event-time timers (deduplicated)
 * and documents emitted from timers, run through the real engine at several parallelisms; and
 * the list/map containers on their own (tombstones, compaction, iteration). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "connectors.h"
#include "exec.h"
#include "graph.h"
#include "keygroup.h"
#include "keyed_state.h"
#include "ops.h"
#include "timer_heap.h"
#include "timer_spill.h"

#include "../support/shell.h"

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_event_key(ev, kp_json_str(&j, "k"));
    kp_event_value(ev, kp_json_str(&j, "v"));
    kp_event_time(ev, kp_json_int(&j, "t", 0));
    return KP_OK;
}

/* Per key: every value in a list, a count per distinct value in a map, the number of events in
 * value state; one timer 100 ms after the first event flushes all three as a document. */
typedef struct per_key {
    int64_t n;     /* events since the last flush */
    int64_t first; /* time of the first of them */
} per_key;

static _Atomic int timer_calls;

static kp_rc on_event(kp_ctx *ctx, const kp_event *ev)
{
    bool exists;
    per_key *pk = kp_ctx_value(ctx, &exists);
    if (!exists)
        pk->first = kp_event_get_time(ev);
    kp_ctx_timer_event(ctx, pk->first + 100); /* the same timer on every event: fires once */
    pk->n++;
    kp_bytes v = kp_event_get_value(ev);
    kp_ctx_list_add(ctx, v);
    kp_bytes old;
    int64_t count = 0;
    if (kp_ctx_map_get(ctx, v, &old))
        memcpy(&count, old.ptr, sizeof count);
    count++;
    kp_ctx_map_put(ctx, v, (kp_bytes){(const char *)&count, sizeof count});
    return KP_OK;
}

static kp_rc on_timer(kp_ctx *ctx, kp_time when, bool event_time)
{
    timer_calls++;
    bool exists;
    per_key *pk = kp_ctx_value(ctx, &exists);
    if (!exists || pk->n == 0)
        return KP_OK;
    int64_t *n = &pk->n;
    kp_doc *doc = kp_ctx_emit(ctx);
    char list[256] = "";
    for (size_t i = 0; i < kp_ctx_list_len(ctx); i++) {
        kp_bytes b = kp_ctx_list_get(ctx, i);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%.*s", KP_STR(b));
    }
    kp_str key = kp_ctx_key(ctx);
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), when);
    kp_doc_str(doc, "key", key);
    kp_doc_int(doc, "events", *n);
    kp_doc_str(doc, "list", KP_CSTR(list));
    kp_doc_int(doc, "distinct", (int64_t)kp_ctx_map_size(ctx));
    size_t cursor = 0;
    kp_bytes k, v;
    int64_t total = 0;
    while (kp_ctx_map_next(ctx, &cursor, &k, &v)) {
        int64_t c;
        memcpy(&c, v.ptr, sizeof c);
        total += c;
    }
    kp_doc_int(doc, "map_total", total);
    kp_doc_bool(doc, "event_time", event_time);
    kp_ctx_emit_done(ctx, doc);
    kp_ctx_value_clear(ctx);
    kp_ctx_list_clear(ctx);
    kp_ctx_map_clear(ctx);
    return KP_OK;
}

static int define(const kp_api *api, kp_job *job)
{
    kp_stream *in = kp_source(job, "in", .decode = decode, .parallelism = 1);
    /* one partition: timers and records of a key interleave as the file says */
    kp_sink(kp_process(kp_key_by(in), .on_event = on_event, .on_timer = on_timer,
                       .key_in_one_partition = true, .value_size = sizeof(per_key), .uid = "flush"),
            "out");
    return 0;
}

/* A fresh state directory beside the test's input file `in` (tests run in parallel: a shared
 * one would have two runs open the same RocksDB). Removed with kp_test_rmtree. */
static void state_dir_for(const char *in, char *dir, size_t len)
{
    snprintf(dir, len, "%s.state", in);
    kp_test_rmtree(dir);
    cr_assert_eq(mkdir(dir, 0700), 0, "mkdir %s", dir);
}

/* Runs the job; `cache_bytes` is the state budget (0: the default). Returns the spills. */
static long long run(int parallelism, const char *in, const char *out, size_t cache_bytes)
{
    kp_connectors_register_builtin();
    kp_job *job = kp_job_new("process-test");
    job->parallelism_override = parallelism;
    char err[512], src[600], dst[600], state[600];
    cr_assert_eq(kp_job_define(job, define, err, sizeof err), 0, "%s", err);
    state_dir_for(in, state, sizeof state);
    snprintf(src, sizeof src, "file:%s", in);
    snprintf(dst, sizeof dst, "file:%s", out);
    kp_binding b[] = {{.name = "in", .uri = src}, {.name = "out", .uri = dst}};
    kp_exec_config cfg = {.bindings = b,
                          .nbindings = 2,
                          .state_dir = state,
                          .state_cache_bytes = cache_bytes,
                          .watermark_every = 1};
    kp_exec_stats st;
    cr_assert_eq(kp_exec_run(job, &cfg, &st, err, sizeof err), 0, "%s", err);
    kp_job_free(job);
    kp_test_rmtree(state);
    return st.state_spills;
}

/* With `cache_bytes` tiny, every key's state is spilled to RocksDB after each record and
 * read back by the next record or timer of the key: the documents are the same. */
static void list_map_value_state_and_timers(size_t cache_bytes)
{
    char in[] = "/tmp/kappa-process-in-XXXXXX", out[64];
    int fd = mkstemp(in);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    /* key a: events at 0, 10, 20 (values x, y, x) → flushed by the timer at 100;
     * key b: 50 (z) → timer at 150; key c at 160 moves the watermark past both (a watermark
     * follows the record that raised it); key a again at 200 (w) → timer at 300 */
    fputs("{\"k\":\"a\",\"v\":\"x\",\"t\":0}\n{\"k\":\"a\",\"v\":\"y\",\"t\":10}\n"
          "{\"k\":\"a\",\"v\":\"x\",\"t\":20}\n{\"k\":\"b\",\"v\":\"z\",\"t\":50}\n"
          "{\"k\":\"c\",\"v\":\"q\",\"t\":160}\n{\"k\":\"a\",\"v\":\"w\",\"t\":200}\n",
          f);
    fclose(f);
    for (int p = 1; p <= 3; p++) {
        snprintf(out, sizeof out, "%s.out", in);
        timer_calls = 0;
        long long spills = run(p, in, out, cache_bytes);
        cr_assert(!cache_bytes || spills > 0, "p=%d: the tiny budget never spilled", p);
        cr_assert_eq(timer_calls, 4,
                     "%d timer calls at p=%d, expected 4 (one per key and "
                     "deadline)",
                     timer_calls, p);
        FILE *o = fopen(out, "r");
        cr_assert_not_null(o);
        char line[512];
        int seen = 0;
        while (fgets(line, sizeof line, o)) {
            json_t *d = json_loads(line, 0, NULL);
            cr_assert_not_null(d, "%s", line);
            const char *key = json_string_value(json_object_get(d, "key"));
            const char *list = json_string_value(json_object_get(d, "list"));
            json_int_t events = json_integer_value(json_object_get(d, "events"));
            json_int_t distinct = json_integer_value(json_object_get(d, "distinct"));
            json_int_t total = json_integer_value(json_object_get(d, "map_total"));
            if (!strcmp(key, "a") && !strcmp(list, "xyx")) {
                cr_assert(events == 3 && distinct == 2 && total == 3, "%s", line);
                seen |= 1;
            } else if (!strcmp(key, "b")) {
                cr_assert(events == 1 && distinct == 1 && !strcmp(list, "z"), "%s", line);
                seen |= 2;
            } else if (!strcmp(key, "c")) {
                cr_assert(events == 1 && !strcmp(list, "q"), "%s", line);
                seen |= 8;
            } else if (!strcmp(key, "a") && !strcmp(list, "w")) {
                cr_assert(events == 1 && distinct == 1 && total == 1, "%s", line);
                seen |= 4;
            } else {
                cr_assert_fail("unexpected document at p=%d: %s", p, line);
            }
            json_decref(d);
        }
        fclose(o);
        cr_assert_eq(seen, 15, "missing documents at p=%d (seen mask %d)", p, seen);
        unlink(out);
    }
    unlink(in);
}

Test(process, list_map_value_state_and_timers)
{
    list_map_value_state_and_timers(0);
}

Test(process, list_map_value_state_and_timers_spilled)
{
    list_map_value_state_and_timers(1024);
}

Test(process, keyed_state_containers)
{
    kp_keyed_state *ks = kp_keyed_state_new();
    cr_assert_not_null(ks);
    char k[32], v[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "value%d", i);
        cr_assert_eq(kp_map_put(ks, KP_CSTR(k), KP_CSTR(v)), 0);
        cr_assert_eq(kp_list_add(ks, KP_CSTR(v)), 0);
    }
    cr_assert_eq(ks->live, 1000);
    for (int i = 0; i < 1000; i += 2) {
        snprintf(k, sizeof k, "key%d", i);
        cr_assert_eq(kp_map_remove(ks, KP_CSTR(k)), 1);
        cr_assert_eq(kp_map_remove(ks, KP_CSTR(k)), 0);
    }
    cr_assert_eq(ks->live, 500);
    cr_assert_lt(ks->dead, 501, "tombstones are compacted");
    kp_bytes got;
    cr_assert_eq(kp_map_get(ks, KP_LIT("key3"), &got), 1);
    cr_assert_eq(got.len, 6);
    cr_assert_eq(memcmp(got.ptr, "value3", 6), 0);
    cr_assert_eq(kp_map_get(ks, KP_LIT("key4"), &got), 0);
    cr_assert_eq(kp_map_put(ks, KP_LIT("key4"), KP_LIT("back")), 0);
    cr_assert_eq(kp_map_get(ks, KP_LIT("key4"), &got), 1);
    cr_assert_eq(kp_map_put(ks, KP_LIT("key3"), KP_LIT("a-much-longer-value")), 0);
    cr_assert_eq(kp_map_get(ks, KP_LIT("key3"), &got), 1);
    cr_assert_eq(got.len, 19);
    size_t cursor = 0, n = 0;
    kp_bytes kk, vv;
    while (kp_map_next(ks, &cursor, &kk, &vv))
        n++;
    cr_assert_eq(n, 501);
    cr_assert_eq(ks->n, 1000);
    got = kp_list_get(ks, 999);
    cr_assert_eq(got.len, 8);
    cr_assert_eq(memcmp(got.ptr, "value999", 8), 0);
    cr_assert_eq(kp_list_get(ks, 1000).len, 0);
    kp_list_clear(ks);
    kp_map_clear(ks);
    cr_assert_eq(ks->n, 0);
    cr_assert_eq(ks->live, 0);
    cr_assert_eq(kp_map_get(ks, KP_LIT("key1"), NULL), 0);
    kp_keyed_state_free(ks);
}

/* ---- the operator driven directly: exact interleavings of records and watermarks ----------- */

/* A scripted process function. A record's value is a list of commands for its key:
 * rT register an event-time timer at T, dT delete it, s set the value, c clear it, l add to
 * the list, L clear the list, m put in the map, M clear the map. Every call appends
 * "key:E<ts>@<wm>" (on_event) or "key:T<when>@<wm>" (on_timer) to `script_log`; on_timer emits
 * a document. */
static char script_log[8192];

static void log_call(kp_ctx *ctx, char kind, kp_time t)
{
    kp_str key = kp_ctx_key(ctx);
    kp_time wm = kp_ctx_watermark(ctx);
    size_t n = strlen(script_log);
    if (wm == KP_TIME_MIN)
        snprintf(script_log + n, sizeof script_log - n, "%s%.*s:%c%lld@min", n ? " " : "",
                 KP_STR(key), kind, (long long)t);
    else
        snprintf(script_log + n, sizeof script_log - n, "%s%.*s:%c%lld@%lld", n ? " " : "",
                 KP_STR(key), kind, (long long)t, (long long)wm);
}

static kp_rc script_event(kp_ctx *ctx, const kp_event *ev)
{
    log_call(ctx, 'E', kp_event_get_time(ev));
    kp_bytes v = kp_event_get_value(ev);
    char cmds[256];
    snprintf(cmds, sizeof cmds, "%.*s", KP_STR(v));
    for (char *c = strtok(cmds, " "); c; c = strtok(NULL, " ")) {
        kp_time t = strtoll(c + 1, NULL, 10);
        switch (c[0]) {
        case 'r':
            kp_ctx_timer_event(ctx, t);
            break;
        case 'd':
            kp_timer_delete(ctx, t, true);
            break;
        case 'p':
            kp_ctx_timer_processing(ctx, t);
            break;
        case 'q':
            kp_timer_delete(ctx, t, false);
            break;
        case 's':
            *(int64_t *)kp_ctx_value(ctx, NULL) = 1;
            break;
        case 'c':
            kp_ctx_value_clear(ctx);
            break;
        case 'l':
            kp_ctx_list_add(ctx, KP_LIT("x"));
            break;
        case 'L':
            kp_ctx_list_clear(ctx);
            break;
        case 'm':
            kp_ctx_map_put(ctx, KP_LIT("k"), KP_LIT("v"));
            break;
        case 'M':
            kp_ctx_map_clear(ctx);
            break;
        default:
            cr_assert_fail("bad command %s", c);
        }
    }
    return KP_OK;
}

static kp_rc script_timer(kp_ctx *ctx, kp_time when, bool event_time)
{
    log_call(ctx, 'T', when);
    kp_doc *doc = kp_ctx_emit(ctx);
    kp_doc_int(doc, "when", when);
    kp_ctx_emit_done(ctx, doc);
    return KP_OK;
}

/* Collects what the operator emits: the carried watermark of each document. */
typedef struct capture {
    kp_op op;
    kp_time cwm[64];
    int n;
} capture;

static int cap_record(kp_op *op, kp_event *ev)
{
    capture *c = (capture *)op;
    if (c->n < 64)
        c->cwm[c->n] = ev->cwm;
    c->n++;
    return 0;
}

static int cap_watermark(kp_op *op, kp_time wm)
{
    return 0;
}

static int cap_idle(kp_op *op)
{
    return 0;
}

static const kp_op_vt cap_vt = {
    .record = cap_record, .watermark = cap_watermark, .idle = cap_idle, .finish = cap_idle};

typedef struct harness {
    kp_metrics metrics;
    kp_subtask st;
    kp_node node;
    kp_op *op;
    capture cap;
} harness;

/* `cache_bytes` > 0: the state budget, with RocksDB in `state_dir`. */
static void h_open_budget(harness *h, kp_rc (*ev_fn)(kp_ctx *, const kp_event *),
                          kp_rc (*timer_fn)(kp_ctx *, kp_time, bool), size_t value_size,
                          size_t cache_bytes, const char *state_dir)
{
    kp_host_api(); /* the inline API calls go through the host's table */
    memset(h, 0, sizeof *h);
    h->st.metrics = &h->metrics;
    h->st.state_cache_bytes = cache_bytes;
    h->st.state_dir = state_dir;
    snprintf(h->node.name, sizeof h->node.name, "script");
    h->node.u.process = (kp_process_opts){.on_event = ev_fn,
                                          .on_timer = timer_fn,
                                          .value_size = value_size,
                                          .key_in_one_partition = true};
    h->op = kp_op_process_new(&h->st, &h->node);
    cr_assert_not_null(h->op);
    h->cap.op.vt = &cap_vt;
    h->op->out[0] = &h->cap.op;
    h->op->nout = 1;
    script_log[0] = 0;
}

static void h_open(harness *h, kp_rc (*ev_fn)(kp_ctx *, const kp_event *),
                   kp_rc (*timer_fn)(kp_ctx *, kp_time, bool), size_t value_size)
{
    h_open_budget(h, ev_fn, timer_fn, value_size, 0, NULL);
}

static void h_rec(harness *h, const char *key, const char *cmds, kp_time ts, kp_time cwm)
{
    kp_event ev = {.key = KP_CSTR(key), .value = KP_CSTR(cmds), .ts = ts, .cwm = cwm};
    cr_assert_eq(h->op->vt->record(h->op, &ev), 0);
}

static void h_wm(harness *h, kp_time wm)
{
    cr_assert_eq(h->op->vt->watermark(h->op, wm), 0);
}

static kp_process_counts h_counts(harness *h)
{
    kp_process_counts c;
    kp_op_process_counts(h->op, &c);
    return c;
}

static void h_close(harness *h)
{
    h->op->vt->destroy(h->op);
}

Test(process, timer_delete)
{
    harness h;
    h_open(&h, script_event, script_timer, sizeof(int64_t));
    h_rec(&h, "a", "r100 r200 r100", 0, KP_TIME_MIN); /* 100 twice: one timer */
    cr_assert_eq(h_counts(&h).pending_timers, 2);
    h_rec(&h, "a", "d200 d999", 1, KP_TIME_MIN); /* deleting what is not pending: no effect */
    cr_assert_eq(h_counts(&h).pending_timers, 1);
    h_rec(&h, "b", "r50 d50", 2, KP_TIME_MIN);
    cr_assert_eq(h_counts(&h).pending_timers, 1);
    cr_assert_eq(h_counts(&h).keys, 1, "b holds nothing: removed");
    h_rec(&h, "c", "r300 d300 r300", 3, KP_TIME_MIN); /* deleted and registered again: one */
    cr_assert_eq(h_counts(&h).pending_timers, 2);
    script_log[0] = 0;
    h_wm(&h, 1000);
    cr_assert_str_eq(script_log, "a:T100@100 c:T300@300");
    kp_process_counts c = h_counts(&h);
    cr_assert(c.keys == 0 && c.pending_timers == 0 && c.heap_entries == 0,
              "all fired: %zu keys, %zu pending, %zu heap entries", c.keys, c.pending_timers,
              c.heap_entries);
    h_close(&h);
}

/* The timer set and the heap stay the size of what is pending in a live stream, where the
 * heaps are never both empty (before, the set was cleared only then). */
Test(process, timer_bookkeeping_is_exact)
{
    harness h;
    h_open(&h, script_event, script_timer, sizeof(int64_t));
    char key[32], cmds[64];
    size_t peak_heap = 0, peak_set = 0;
    for (int i = 0; i < 200000; i++) {
        /* a new key per record, each with a timer 10 ms on, and one long-lived key that
         * moves its deadline on every record (delete + register) */
        snprintf(key, sizeof key, "k%d", i);
        snprintf(cmds, sizeof cmds, "r%d", i + 10);
        h_rec(&h, key, cmds, i, i - 1);
        snprintf(cmds, sizeof cmds, "d%d r%d", i + 1000000 - 1, i + 1000000);
        h_rec(&h, "mover", i ? cmds : cmds + strcspn(cmds, " ") + 1, i, i - 1);
        if (i % 16 == 0)
            h_wm(&h, i - 1);
        kp_process_counts c = h_counts(&h);
        peak_set = c.pending_timers > peak_set ? c.pending_timers : peak_set;
        peak_heap = c.heap_entries > peak_heap ? c.heap_entries : peak_heap;
    }
    kp_process_counts c = h_counts(&h);
    /* pending: the keys of the last 16 + 10 records (W lags by up to 16, timers are 10 on),
     * and the mover */
    cr_assert_leq(peak_set, 28, "pending timers peaked at %zu", peak_set);
    cr_assert_leq(peak_heap, 2 * 28 + 1024 + 1, "heap peaked at %zu entries", peak_heap);
    cr_assert_leq(c.keys, 28, "%zu keys left; keys whose timer fired hold nothing", c.keys);
    h_close(&h);
}

/* Keys that delete and register the same timer again on every record (a deadline reset to
 * the time it had) leave an entry behind each time, and those entries are of a PENDING timer:
 * the heap's rebuild keeps one entry per pending timer, so each heap stays within twice its
 * pending timers plus the slack, and every timer fires once. Both kinds. */
Test(process, re_registered_timers_keep_one_heap_entry)
{
    harness h;
    h_open(&h, script_event, script_timer, sizeof(int64_t));
    const kp_time far = kp_wall_ms() + 24 * KP_HOUR; /* never due on the wall clock here */
    const int keys = 1000;
    char key[32], cmds[128];
    size_t peak = 0;
    for (int i = 0; i < 200 * keys; i++) {
        int k = i % keys;
        snprintf(key, sizeof key, "k%d", k);
        snprintf(cmds, sizeof cmds, "d%d r%d q%lld p%lld", 1000000 + k, 1000000 + k,
                 (long long)far + k, (long long)far + k);
        h_rec(&h, key, i < keys ? strchr(strchr(cmds, ' ') + 1, ' ') + 1 : cmds, i, KP_TIME_MIN);
        size_t n = h_counts(&h).heap_entries;
        peak = n > peak ? n : peak;
    }
    cr_assert_eq(h_counts(&h).pending_timers, (size_t)2 * keys);
    cr_assert_leq(peak, 2 * (2 * (size_t)keys + 1024 + 1), "the heaps peaked at %zu entries", peak);
    h_wm(&h, KP_TIME_MAX - 1);
    cr_assert_eq(h.op->vt->tick(h.op, far + keys), 0);
    kp_process_counts c = h_counts(&h);
    cr_assert_eq(h.cap.n, 2 * keys, "%d calls of on_timer", h.cap.n);
    cr_assert(c.pending_timers == 0 && c.heap_entries == 0 && c.keys == 0,
              "%zu pending, %zu heap entries, %zu keys", c.pending_timers, c.heap_entries, c.keys);
    h_close(&h);
}

/* A key leaves the table once its value is cleared, its list and map are empty and no timer
 * is pending for it, and not before. */
Test(process, cleared_keys_are_removed)
{
    harness h;
    h_open(&h, script_event, script_timer, sizeof(int64_t));
    h_rec(&h, "v", "s", 0, KP_TIME_MIN);
    h_rec(&h, "l", "l", 0, KP_TIME_MIN);
    h_rec(&h, "m", "m", 0, KP_TIME_MIN);
    h_rec(&h, "t", "r5", 0, KP_TIME_MIN);
    h_rec(&h, "n", "", 0, KP_TIME_MIN);
    cr_assert_eq(h_counts(&h).keys, 4, "each but n holds something");
    h_rec(&h, "v", "c", 1, KP_TIME_MIN);
    h_rec(&h, "l", "L", 1, KP_TIME_MIN);
    h_rec(&h, "m", "M", 1, KP_TIME_MIN);
    cr_assert_eq(h_counts(&h).keys, 1, "only t (a pending timer) is left");
    h_wm(&h, 5);
    cr_assert_eq(h_counts(&h).keys, 0);
    /* state memory follows the live keys: 100k keys in, all cleared, the table shrinks */
    char key[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        h_rec(&h, key, "s l m", 10, KP_TIME_MIN);
    }
    size_t full = h_counts(&h).bytes;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        h_rec(&h, key, "c L M", 11, KP_TIME_MIN);
    }
    kp_process_counts c = h_counts(&h);
    cr_assert_eq(c.keys, 0);
    cr_assert_lt(c.bytes, full / 10, "%zu bytes left of %zu", c.bytes, full);
    h_close(&h);
}

/* The rule: an event-time timer of a key at t fires before any record of that key whose
 * carried watermark is >= t, and after its records with a smaller one, however far behind
 * the operator's watermark is; the function sees the record's cwm, or the timer's time. */
Test(process, timer_fires_before_record_that_passed_it)
{
    harness h;
    h_open(&h, script_event, script_timer, sizeof(int64_t));
    h_rec(&h, "a", "r100", 0, KP_TIME_MIN);
    h_rec(&h, "b", "r100", 500, -1);
    h_rec(&h, "b", "", 50, 99); /* cwm 99 < 100: b's timer stays pending */
    h_rec(&h, "a", "", 510, 499);
    h_rec(&h, "a", "r300", 520, 509); /* a timer already due fires right after on_event */
    cr_assert_str_eq(script_log, "a:E0@min b:E500@-1 b:E50@99 a:T100@100 a:E510@499 "
                                 "a:E520@509 a:T300@300");
    cr_assert_eq(h.cap.n, 2);
    cr_assert_eq(h.cap.cwm[0], 99, "a's timer at 100 emits with t - 1, whenever it fires");
    script_log[0] = 0;
    h_wm(&h, 50);
    h_wm(&h, 200); /* b's timer fires on W: still t - 1, not W — a function of the log */
    cr_assert_str_eq(script_log, "b:T100@100");
    cr_assert_eq(h.cap.n, 3);
    cr_assert_eq(h.cap.cwm[2], 99);
    h_close(&h);
}

/* ---- the rule end to end: a partitioned file at several parallelisms ------------------------ */

/* Per key: a sequence number over its calls, and ONE pending timer 50 ms after its latest
 * record (moved with kp_timer_delete). Every call emits "key seq kind time watermark". */
typedef struct det_state {
    int64_t seq;
    int64_t deadline; /* 0: none pending */
} det_state;

#define DET_DELAY 50

static atomic_int det_stray_timers; /* deleted timers that fired anyway */

static void det_emit(kp_ctx *ctx, det_state *s, const char *kind, kp_time t)
{
    kp_doc *doc = kp_ctx_emit(ctx);
    kp_str key = kp_ctx_key(ctx);
    kp_doc_id(doc, "%.*s|%lld", KP_STR(key), (long long)s->seq);
    kp_doc_str(doc, "key", key);
    kp_doc_int(doc, "seq", s->seq);
    kp_doc_str(doc, "kind", KP_CSTR(kind));
    kp_doc_int(doc, "t", t);
    kp_doc_int(doc, "wm", kp_ctx_watermark(ctx));
    kp_ctx_emit_done(ctx, doc);
}

static kp_rc det_event(kp_ctx *ctx, const kp_event *ev)
{
    det_state *s = kp_ctx_value(ctx, NULL);
    s->seq++;
    det_emit(ctx, s, "E", kp_event_get_time(ev));
    if (s->deadline)
        kp_timer_delete(ctx, s->deadline, true);
    s->deadline = kp_event_get_time(ev) + DET_DELAY;
    kp_ctx_timer_event(ctx, s->deadline);
    return KP_OK;
}

static kp_rc det_timer(kp_ctx *ctx, kp_time when, bool event_time)
{
    det_state *s = kp_ctx_value(ctx, NULL);
    if (when != s->deadline) /* no cr_assert here: this runs on a subtask thread */
        atomic_fetch_add(&det_stray_timers, 1);
    s->seq++;
    s->deadline = 0;
    det_emit(ctx, s, "T", when);
    return KP_OK;
}

#define DET_OOO 20

static int define_det(const kp_api *api, kp_job *job)
{
    kp_stream *in = kp_source(job, "in", .decode = decode, .out_of_order = DET_OOO);
    kp_sink(kp_process(kp_key_by(in), .key_in_one_partition = true, .on_event = det_event,
                       .on_timer = det_timer, .value_size = sizeof(det_state), .uid = "det"),
            "out");
    return 0;
}

/* Runs define_det over `in` read as `partitions` partitions; the output lines "key seq kind t
 * wm", sorted, into out (a jansson array of strings). */
static json_t *run_det(const char *in, int partitions, int parallelism, int watermark_every,
                       uint64_t step_seed, size_t cache_bytes, long long *spills)
{
    kp_connectors_register_builtin();
    kp_job *job = kp_job_new("process-det");
    job->parallelism_override = parallelism;
    char err[512], src[700], dst[700], out[600], state[600];
    cr_assert_eq(kp_job_define(job, define_det, err, sizeof err), 0, "%s", err);
    state_dir_for(in, state, sizeof state);
    snprintf(out, sizeof out, "%s.out", in);
    snprintf(src, sizeof src, "file:%s?partitions=%d", in, partitions);
    snprintf(dst, sizeof dst, "file:%s", out);
    kp_binding b[] = {{.name = "in", .uri = src}, {.name = "out", .uri = dst}};
    kp_exec_config cfg = {.bindings = b,
                          .nbindings = 2,
                          .state_dir = state,
                          .watermark_every = watermark_every,
                          .step_seed = step_seed,
                          .state_cache_bytes = cache_bytes};
    kp_exec_stats st;
    cr_assert_eq(kp_exec_run(job, &cfg, &st, err, sizeof err), 0, "%s", err);
    kp_job_free(job);
    kp_test_rmtree(state);
    *spills = st.state_spills;
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    json_t *lines = json_array();
    char line[512], buf[256];
    while (fgets(line, sizeof line, f)) {
        json_t *d = json_loads(line, 0, NULL);
        cr_assert_not_null(d, "%s", line);
        snprintf(buf, sizeof buf, "%s %06lld %s %lld %lld",
                 json_string_value(json_object_get(d, "key")),
                 (long long)json_integer_value(json_object_get(d, "seq")),
                 json_string_value(json_object_get(d, "kind")),
                 (long long)json_integer_value(json_object_get(d, "t")),
                 (long long)json_integer_value(json_object_get(d, "wm")));
        json_array_append_new(lines, json_string(buf));
        json_decref(d);
    }
    fclose(f);
    unlink(out);
    return lines;
}

static int cmp_json_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* One string per line, sorted. */
static char *sorted_text(json_t *lines)
{
    size_t n = json_array_size(lines);
    json_t **v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(lines, i);
    qsort(v, n, sizeof *v, cmp_json_str);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(json_string_value(v[i])) + 1;
    char *s = calloc(1, len), *p = s;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\n", json_string_value(v[i]));
    free(v);
    return s;
}

static int det_keys = 8; /* per partition */

/* The brute-force reference: per partition the carried watermark of each line, then per key
 * (a key lives in one partition) its calls in order under the rule. */
static json_t *det_reference(const kp_time *ts, const int *key, int n, int partitions)
{
    kp_time *maxts = malloc(sizeof(kp_time) * (size_t)partitions);
    for (int j = 0; j < partitions; j++)
        maxts[j] = KP_TIME_MIN;
    int nkeys = det_keys * partitions;
    int64_t *seq = calloc((size_t)nkeys, sizeof *seq);
    kp_time *deadline = calloc((size_t)nkeys, sizeof *deadline);
    json_t *lines = json_array();
    char buf[256];
#define DET_LINE(k, kind, t, wm)                                                                   \
    (snprintf(buf, sizeof buf, "k%d %06lld %s %lld %lld", k, (long long)++seq[k], kind,            \
              (long long)(t), (long long)(wm)),                                                    \
     json_array_append_new(lines, json_string(buf)))
    for (int i = 0; i < n; i++) {
        int part = i % partitions, k = key[i];
        kp_time cwm = maxts[part] == KP_TIME_MIN ? KP_TIME_MIN : maxts[part] - DET_OOO - 1;
        if (ts[i] > maxts[part])
            maxts[part] = ts[i];
        if (deadline[k] && deadline[k] <= cwm) {
            DET_LINE(k, "T", deadline[k], deadline[k]);
            deadline[k] = 0;
        }
        DET_LINE(k, "E", ts[i], cwm);
        deadline[k] = ts[i] + DET_DELAY;
        if (deadline[k] <= cwm) {
            DET_LINE(k, "T", deadline[k], deadline[k]);
            deadline[k] = 0;
        }
    }
    for (int k = 0; k < nkeys; k++)
        if (deadline[k])
            DET_LINE(k, "T", deadline[k], deadline[k]);
#undef DET_LINE
    free(maxts);
    free(seq);
    free(deadline);
    return lines;
}

/* Timers and records of a key interleave as the log says, whatever the parallelism, the
 * watermark cadence, the thread timing and the state budget (`cache_bytes`, 0: the default;
 * small: keys are spilled to RocksDB and read back): equal to the brute-force reference. Keys
 * of partition j are k<j + partitions * r>, so each key lives in one partition. */
static void interleave_property(int keys_per_partition, size_t cache_bytes)
{
    const int partitions = 3, n = 6000;
    det_keys = keys_per_partition;
    unsigned seeds[8] = {1, 2, 3, 0};
    int nseeds = cache_bytes ? 1 : 3; /* spilling runs are slower: one fixed seed */
    seeds[nseeds++] = (unsigned)time(NULL);
    for (int si = 0; si < nseeds; si++) {
        unsigned seed = seeds[si];
        fprintf(stderr, "interleave_property: seed %u, %d keys per partition, budget %zu\n", seed,
                det_keys, cache_bytes);
        srand(seed);
        char in[] = "/tmp/kappa-process-det-XXXXXX";
        int fd = mkstemp(in);
        cr_assert_geq(fd, 0);
        FILE *f = fdopen(fd, "w");
        kp_time *ts = malloc(sizeof(kp_time) * (size_t)n);
        int *key = malloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) {
            int part = i % partitions;
            /* partition 2 runs ahead in event time; jitter beyond the out-of-orderness and a
             * few far-late records make timers due before records arrive */
            kp_time base = 1000 + (kp_time)i * 3 + (part == 2 ? 400 : 0);
            ts[i] = base - rand() % 40 - (rand() % 50 == 0 ? 300 : 0);
            key[i] = part + partitions * (rand() % det_keys);
            fprintf(f, "{\"k\":\"k%d\",\"v\":\"\",\"t\":%lld}\n", key[i], (long long)ts[i]);
        }
        fclose(f);
        json_t *want_lines = det_reference(ts, key, n, partitions);
        char *want = sorted_text(want_lines);
        json_decref(want_lines);
        /* threads, timing as it comes; and at p=1 the deterministic scheduler too (at p >= 2
         * it spins in runnable() on this input today: reported to the runtime's owner) */
        for (int p = 1; p <= 3; p += cache_bytes ? 2 : 1) /* spilling: p = 1 and 3 */
            for (int every = 1; every <= 1000; every *= 1000) {
                uint64_t step = every == 1 || p > 1 ? 0 : (uint64_t)seed * 7919 + (uint64_t)p;
                long long spills;
                json_t *got_lines = run_det(in, partitions, p, every, step, cache_bytes, &spills);
                char *got = sorted_text(got_lines);
                cr_assert_eq(det_stray_timers, 0, "a deleted timer fired");
                cr_assert(!cache_bytes || spills > 0, "seed %u, p=%d: budget %zu never spilled",
                          seed, p, cache_bytes);
                cr_assert_str_eq(got, want,
                                 "seed %u, p=%d, watermark every %d records, step seed %llu", seed,
                                 p, every, (unsigned long long)step);
                json_decref(got_lines);
                free(got);
            }
        free(want);
        free(ts);
        free(key);
        unlink(in);
    }
}

Test(process, timers_and_records_interleave_as_the_log_says, .timeout = 240)
{
    interleave_property(8, 0);
}

/* Every key evicted after each of its records (a budget below an empty table's size), and a
 * budget that holds part of 600 keys (the clock picks which are evicted). */
Test(process, spilled_keys_interleave_as_the_log_says, .timeout = 480)
{
    interleave_property(8, 1024);
    interleave_property(200, 24 * 1024);
}

/* The timer heap owns its keys: they survive the caller's buffers, come back with their
 * timers in time order, may be pushed again straight from a popped timer, and the arena is
 * compacted so it follows the pending timers, not all timers ever pushed. */
Test(process, timer_heap_owns_its_keys)
{
    kp_timer_heap h = {0};
    char key[32];
    srand(11);
    size_t peak = 0;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 2000; i++) {
            kp_time when = rand() % 100000;
            int len = snprintf(key, sizeof key, "key-%lld-%d", (long long)when, round);
            cr_assert_eq(kp_timer_push(&h, when, round, 0, (kp_bytes){key, (size_t)len}), 0);
        }
        memset(key, 'x', sizeof key); /* the heap must not point into our buffer */
        kp_time last = KP_TIME_MIN;
        for (int i = 0; i < 1990; i++) {
            kp_timer t = kp_timer_pop(&h);
            cr_assert_geq(t.when, last);
            last = t.when;
            int len =
                snprintf(key, sizeof key, "key-%lld-%lld", (long long)t.when, (long long)t.aux);
            kp_bytes k = kp_timer_key(&h, &t);
            cr_assert(k.len == (size_t)len && !memcmp(k.ptr, key, k.len), "key of %lld: %.*s",
                      (long long)t.when, KP_STR(k));
            if (i % 100 == 0) /* re-arm from the popped key itself: it aliases the arena */
                cr_assert_eq(kp_timer_push(&h, t.when + 1000000, t.aux, 0, k), 0);
        }
        size_t bytes = kp_timer_heap_bytes(&h);
        peak = bytes > peak ? bytes : peak;
    }
    /* 50 rounds leave ~1,500 timers (10 + 20 re-armed per round): the arena holds their keys
     * and at most as much garbage again, not the 100,000 keys pushed */
    cr_assert_lt(h.used, 4 * h.live + 8192, "arena %zu bytes for %zu live", h.used, h.live);
    cr_assert_lt(peak, 512 * 1024, "heap peaked at %zu bytes", peak);
    kp_time last = KP_TIME_MIN;
    while (h.n) {
        kp_timer t = kp_timer_pop(&h);
        cr_assert_geq(t.when, last);
        last = t.when;
        kp_bytes k = kp_timer_key(&h, &t);
        int len =
            snprintf(key, sizeof key, "key-%lld-%lld",
                     (long long)(t.when >= 1000000 ? t.when - 1000000 : t.when), (long long)t.aux);
        cr_assert(k.len == (size_t)len && !memcmp(k.ptr, key, k.len));
    }
    kp_timer_heap_free(&h);
}

/* ---- spilling: memory stays inside the budget, and a key read back is the key evicted ------ */

/* A 24/7 job whose keys rotate but never clear their state: 30,000 keys each hold a value,
 * a list item, a map entry and a timer far ahead. The value table and what its keys hold stay
 * inside the budget all along (keys go to RocksDB), and so do most timers; every key is then
 * read back, cleared and its timer deleted, and nothing is left anywhere. */
Test(process, rotating_keys_stay_inside_the_budget, .timeout = 240)
{
    char dir[] = "/tmp/kappa-process-spill-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    const size_t budget = 256 * 1024;
    harness h;
    h_open_budget(&h, script_event, script_timer, sizeof(int64_t), budget, dir);
    char key[32], cmds[64];
    size_t peak = 0;
    const int keys = 30000;
    for (int i = 0; i < keys; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(cmds, sizeof cmds, "s l m r%d", 10000000 + i);
        h_rec(&h, key, cmds, i, i - 1);
        script_log[0] = 0;
        kp_process_counts c = h_counts(&h);
        peak = c.cache_bytes > peak ? c.cache_bytes : peak;
        cr_assert_leq(c.cache_bytes, budget, "record %d: %zu bytes in memory, budget %zu", i,
                      c.cache_bytes, budget);
    }
    kp_process_counts c = h_counts(&h);
    fprintf(stderr,
            "rotating_keys_stay_inside_the_budget: %d keys, %zu in memory (peak %zu bytes of "
            "%zu), %lld spills, %lld keys spilled; %zu bytes with the timers\n",
            keys, c.keys, peak, budget, c.spills, c.keys_spilled, c.bytes);
    cr_assert_gt(c.spills, 0);
    cr_assert_lt(c.keys, (size_t)keys / 10, "most keys are in RocksDB, not in memory");
    cr_assert_eq(c.pending_timers, (size_t)keys, "spilled keys keep their timers");
    cr_assert_gt(c.timers_spilled, 0);
    cr_assert_lt(c.heap_entries, (size_t)keys / 10, "%zu timers in memory", c.heap_entries);
    for (int i = 0; i < keys; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(cmds, sizeof cmds, "c L M d%d", 10000000 + i);
        h_rec(&h, key, cmds, keys, keys);
        script_log[0] = 0;
    }
    c = h_counts(&h);
    cr_assert_geq(c.keys_read_back, (long long)keys * 9 / 10, "%lld keys read back",
                  c.keys_read_back);
    cr_assert(c.keys == 0 && c.pending_timers == 0, "%zu keys, %zu timers left", c.keys,
              c.pending_timers);
    h_wm(&h, KP_TIME_MAX);
    cr_assert_str_eq(script_log, "", "a cleared key or a deleted timer came back: %s", script_log);
    c = h_counts(&h);
    cr_assert_eq(c.timers_read_back, c.timers_spilled, "every spilled timer came back");
    h_close(&h);
    kp_test_rmtree(dir);
}

/* A 24/7 job with many keys, each holding a processing-time timer (a timeout) and nothing
 * else, under a tiny budget: the keys spill with their timers, so nothing of a spilled key
 * stays in memory — the state held (keys, what they hold, both heaps) stays inside the
 * budget and its heaps' share at every record and tick, and so does the peak reported —,
 * and then every timer fires once, in time order, read back from RocksDB; one deleted never,
 * one deleted and registered again once. The wall clock is never due here: ticks with a
 * later `now` fire the timers. */
#define PT_KEYS 20000

static unsigned char pt_fired[PT_KEYS][2];
static kp_time pt_base, pt_last;
static int pt_wrong; /* calls for a time, key or kind that was not due */

static kp_time pt_due(int i)
{
    return pt_base + (kp_time)(((long)i * 7919) % PT_KEYS); /* not in key order */
}

static kp_rc pt_timer(kp_ctx *ctx, kp_time when, bool event_time)
{
    kp_str key = kp_ctx_key(ctx);
    char buf[32];
    snprintf(buf, sizeof buf, "%.*s", KP_STR(key));
    int i = atoi(buf + 3), second = when == pt_due(i) + PT_KEYS;
    if (event_time || strncmp(buf, "pt-", 3) || i < 0 || i >= PT_KEYS || when < pt_last ||
        (when != pt_due(i) && !second))
        pt_wrong++;
    else
        pt_fired[i][second]++;
    pt_last = when;
    return KP_OK;
}

/* State bytes reported (kp_process_counts.bytes) may be: the budget for the keys, and for
 * each heap an eighth of it (timer_spill.h), its array up to twice that. */
static void pt_check_memory(harness *h, size_t budget, size_t *peak, const char *when)
{
    kp_process_counts c = h_counts(h);
    *peak = c.bytes > *peak ? c.bytes : *peak;
    cr_assert_leq(c.cache_bytes, budget, "%s: %zu bytes of keys, budget %zu", when, c.cache_bytes,
                  budget);
    cr_assert_leq(c.bytes, budget + 2 * 2 * (budget / 8) + 2 * sizeof(kp_timer) + 64,
                  "%s: %zu bytes of state, budget %zu", when, c.bytes, budget);
}

Test(process, processing_timers_spill_with_their_keys, .timeout = 240)
{
    char dir[] = "/tmp/kappa-process-pt-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    const size_t budget = 128 * 1024;
    harness h;
    h_open_budget(&h, script_event, pt_timer, sizeof(int64_t), budget, dir);
    memset(pt_fired, 0, sizeof pt_fired);
    pt_wrong = 0;
    pt_last = KP_TIME_MIN;
    pt_base = kp_wall_ms() + 24 * KP_HOUR; /* never due on the wall clock during the test */
    char key[32], cmds[96];
    size_t peak = 0;
    for (int i = 0; i < PT_KEYS; i++) { /* a timer each; every tenth key a second one */
        snprintf(key, sizeof key, "pt-%d", i);
        int n = snprintf(cmds, sizeof cmds, "p%lld", (long long)pt_due(i));
        if (i % 10 == 0)
            snprintf(cmds + n, sizeof cmds - (size_t)n, " p%lld", (long long)pt_due(i) + PT_KEYS);
        h_rec(&h, key, cmds, i, KP_TIME_MIN);
        pt_check_memory(&h, budget, &peak, "registering");
    }
    for (int i = 0; i < PT_KEYS; i += 3) { /* delete; delete and register again */
        snprintf(key, sizeof key, "pt-%d", i);
        snprintf(cmds, sizeof cmds, "q%lld", (long long)pt_due(i));
        h_rec(&h, key, cmds, PT_KEYS, KP_TIME_MIN);
        if (i + 1 < PT_KEYS) {
            snprintf(key, sizeof key, "pt-%d", i + 1);
            snprintf(cmds, sizeof cmds, "q%lld p%lld", (long long)pt_due(i + 1),
                     (long long)pt_due(i + 1));
            h_rec(&h, key, cmds, PT_KEYS, KP_TIME_MIN);
        }
        pt_check_memory(&h, budget, &peak, "deleting");
    }
    kp_process_counts c = h_counts(&h);
    size_t pending = (size_t)PT_KEYS + PT_KEYS / 10 - (PT_KEYS + 2) / 3;
    cr_assert_eq(c.pending_timers, pending, "%zu pending of %zu", c.pending_timers, pending);
    cr_assert_lt(c.keys, (size_t)PT_KEYS / 10, "%zu keys in memory: most are in RocksDB", c.keys);
    cr_assert_gt(c.keys_read_back, 0);
    cr_assert_gt(c.timers_spilled, 0);
    long calls = 0;
    for (int i = 0; i < PT_KEYS; i++)
        calls += pt_fired[i][0] + pt_fired[i][1];
    cr_assert(calls == 0 && pt_wrong == 0, "fired before they were due: %ld", calls);
    for (kp_time now = pt_base; now <= pt_base + 2 * PT_KEYS; now += PT_KEYS / 16) {
        cr_assert_eq(h.op->vt->tick(h.op, now), 0);
        pt_check_memory(&h, budget, &peak, "firing");
    }
    c = h_counts(&h);
    cr_assert_eq(h.op->vt->finish(h.op), 0);
    fprintf(stderr,
            "processing_timers_spill_with_their_keys: %d keys, state peak %zu bytes (budget "
            "%zu; with sweeps %lld), %lld keys spilled, %lld read back, %lld timers spilled\n",
            PT_KEYS, peak, budget, (long long)h.metrics.state_cache_peak, c.keys_spilled,
            c.keys_read_back, c.timers_spilled);
    /* the peak reported (state_cache_peak) counts each sweep's scratch too: the saved keys
     * of an eviction next to the state they come from; the table never doubles past the
     * budget before an eviction (make_room in op_process.c: without it, 2.2 x the budget) */
    cr_assert_leq(h.metrics.state_cache_peak, (long long)(budget + budget / 2),
                  "state peak %lld bytes, budget %zu", (long long)h.metrics.state_cache_peak,
                  budget);
    cr_assert_eq(pt_wrong, 0, "%d calls not due", pt_wrong);
    for (int i = 0; i < PT_KEYS; i++) {
        cr_assert_eq(pt_fired[i][0], i % 3 != 0, "key %d: its timer fired %d times", i,
                     pt_fired[i][0]);
        cr_assert_eq(pt_fired[i][1], i % 10 == 0, "key %d: its second timer fired %d times", i,
                     pt_fired[i][1]);
    }
    cr_assert(c.keys == 0 && c.pending_timers == 0, "%zu keys, %zu timers left", c.keys,
              c.pending_timers);
    h_close(&h);
    kp_test_rmtree(dir);
}

/* The map of a key iterates in the same order after the key was spilled and read back: what
 * a function sees does not depend on when spills happen. */
static char map_order[4096];

static kp_rc map_event(kp_ctx *ctx, const kp_event *ev)
{
    kp_bytes v = kp_event_get_value(ev);
    if (v.len && v.ptr[0] == 'f') { /* fill: 300 entries, every third removed */
        char k[16];
        for (int i = 0; i < 300; i++) {
            snprintf(k, sizeof k, "e%d", i);
            kp_ctx_map_put(ctx, KP_CSTR(k), KP_LIT("v"));
            kp_ctx_list_add(ctx, KP_CSTR(k));
        }
        for (int i = 0; i < 300; i += 3) {
            snprintf(k, sizeof k, "e%d", i);
            kp_ctx_map_remove(ctx, KP_CSTR(k));
        }
    } else if (v.len && v.ptr[0] == 'o') { /* order: the map's keys, then the list */
        map_order[0] = 0;
        size_t cursor = 0, n = 0;
        kp_bytes k, val;
        while (kp_ctx_map_next(ctx, &cursor, &k, &val))
            n += (size_t)snprintf(map_order + n, sizeof map_order - n, "%.*s,", KP_STR(k));
        for (size_t i = 0; i < kp_ctx_list_len(ctx); i += 50)
            n += (size_t)snprintf(map_order + n, sizeof map_order - n, "|%.*s",
                                  KP_STR(kp_ctx_list_get(ctx, i)));
    } else {
        *(int64_t *)kp_ctx_value(ctx, NULL) = 1; /* the other keys: a value each */
    }
    return KP_OK;
}

Test(process, spilled_map_iterates_in_the_same_order)
{
    char dir[] = "/tmp/kappa-process-spill-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    harness h;
    h_open_budget(&h, map_event, script_timer, sizeof(int64_t), 64 * 1024, dir);
    h_rec(&h, "big", "f", 0, KP_TIME_MIN);
    h_rec(&h, "big", "o", 0, KP_TIME_MIN);
    char before[sizeof map_order];
    memcpy(before, map_order, sizeof before);
    cr_assert_gt(strlen(before), 600);
    char key[32];
    for (int i = 0; i < 20000; i++) { /* other keys push "big" out of memory */
        snprintf(key, sizeof key, "other-%d", i);
        h_rec(&h, key, "", 0, KP_TIME_MIN);
    }
    kp_process_counts c = h_counts(&h);
    cr_assert_gt(c.keys_spilled, 0);
    h_rec(&h, "big", "o", 0, KP_TIME_MIN);
    cr_assert_gt(h_counts(&h).keys_read_back, 0);
    cr_assert_str_eq(map_order, before, "the map iterates in another order after a read-back");
    h_close(&h);
    kp_test_rmtree(dir);
}

/* Timers beyond the limit go to RocksDB ordered by time and come back before they are due:
 * popped in time order with their keys and aux, the same as from a heap in memory, while the
 * heap holds about its limit. */
Test(process, spilled_timers_pop_in_time_order)
{
    char dir[] = "/tmp/kappa-timer-spill-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    kp_metrics metrics = {0};
    kp_subtask st = {.metrics = &metrics, .state_dir = dir};
    kp_node node = {0};
    snprintf(node.name, sizeof node.name, "timers");
    kp_key_spill sp;
    kp_key_spill_init(&sp, &st, &node, "keys");
    kp_timer_spill ts;
    const size_t limit = 16 * 1024;
    kp_timer_spill_init(&ts, &sp, "timers", limit);
    kp_timer_heap h = {0};
    srand(5);
    char key[32];
    size_t peak = 0;
    kp_time wm = 0, last = KP_TIME_MIN;
    long pushed = 0, popped = 0;
    static char seen[20000];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 2000; i++, pushed++) { /* due from just past wm to far ahead */
            kp_time when = wm + 1 + rand() % 100000;
            int len = snprintf(key, sizeof key, "k%lld-%ld", (long long)when, pushed);
            cr_assert_eq(kp_timer_push(&h, when, pushed, kp_hash64(key, (size_t)len),
                                       (kp_bytes){key, (size_t)len}),
                         0);
            cr_assert_eq(kp_timer_spill_check(&ts, &h), 0);
            size_t need = h.n * sizeof *h.a + h.live;
            peak = need > peak ? need : peak;
        }
        wm += 2500;
        kp_timer t;
        int rc;
        while ((rc = kp_timer_spill_pop_due(&ts, &h, wm, &t)) == 1) {
            popped++;
            cr_assert_geq(t.when, last, "popped %lld after %lld", (long long)t.when,
                          (long long)last);
            last = t.when;
            kp_bytes k = kp_timer_key(&h, &t);
            int len = snprintf(key, sizeof key, "k%lld-%lld", (long long)t.when, (long long)t.aux);
            cr_assert(k.len == (size_t)len && !memcmp(k.ptr, key, k.len), "key of %lld: %.*s",
                      (long long)t.when, KP_STR(k));
            cr_assert_eq(t.hash, kp_hash64(key, (size_t)len));
            cr_assert(t.aux >= 0 && t.aux < 20000 && !seen[t.aux], "timer %lld popped twice",
                      (long long)t.aux);
            seen[t.aux] = 1;
        }
        cr_assert_eq(rc, 0);
    }
    kp_timer t;
    while (kp_timer_spill_pop_due(&ts, &h, KP_TIME_MAX, &t) == 1) {
        popped++;
        cr_assert_geq(t.when, last);
        last = t.when;
    }
    cr_assert_eq(popped, pushed, "every timer came back once");
    cr_assert_gt(ts.spills, 0);
    cr_assert_geq(ts.timers_in, ts.timers_out);
    cr_assert_leq(peak, limit + sizeof(kp_timer) + 16, "the heap held %zu bytes", peak);
    cr_assert(!kp_timer_spill_any(&ts, &h));
    kp_timer_heap_free(&h);
    kp_timer_spill_finish(&ts);
    kp_key_spill_finish(&sp);
    kp_test_rmtree(dir);
}
