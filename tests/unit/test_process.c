/* Keyed process functions: value, list and map state per key, event-time timers (deduplicated)
 * and documents emitted from timers, run through the real engine at several parallelisms; and
 * the list/map containers on their own (tombstones, compaction, iteration). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "connectors.h"
#include "exec.h"
#include "graph.h"
#include "keyed_state.h"

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
    kp_sink(kp_process(kp_key_by(in), .on_event = on_event, .on_timer = on_timer,
                       .value_size = sizeof(per_key), .uid = "flush"),
            "out");
    return 0;
}

static void run(int parallelism, const char *in, const char *out)
{
    kp_connectors_register_builtin();
    kp_job *job = kp_job_new("process-test");
    job->parallelism_override = parallelism;
    char err[512], src[600], dst[600];
    cr_assert_eq(kp_job_define(job, define, err, sizeof err), 0, "%s", err);
    snprintf(src, sizeof src, "file:%s", in);
    snprintf(dst, sizeof dst, "file:%s", out);
    kp_binding b[] = {{.name = "in", .uri = src}, {.name = "out", .uri = dst}};
    kp_exec_config cfg = {.bindings = b, .nbindings = 2, .state_dir = "/tmp", .watermark_every = 1};
    kp_exec_stats st;
    cr_assert_eq(kp_exec_run(job, &cfg, &st, err, sizeof err), 0, "%s", err);
    kp_job_free(job);
}

Test(process, list_map_value_state_and_timers)
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
        run(p, in, out);
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
