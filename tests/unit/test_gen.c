/*
 * Unit tests for kappa-gen, the click-event generator (deploy/gen), run as a black box.
 *
 * Every kappa correctness test trusts the truth file kappa-gen writes, so these tests check
 * that truth against an independent recount: they run the built binary (path in KAPPA_GEN,
 * set by meson) with --output to a temp file, parse the NDJSON back with jansson and count
 * the on-time clicks per (item, window) themselves. Late events cannot be recognised from the
 * output alone, so the late test compares a run with --late-fraction against the same seed
 * without it: the model draws the same users, items and jitter for every event either way,
 * so the lines that differ are exactly the late ones. No services are needed.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#define T_DAY_MS 86400000LL

/* ---- running the generator ---- */

static char t_dir[256];

static void t_setup(void)
{
    snprintf(t_dir, sizeof(t_dir), "/tmp/kp-gen-test-XXXXXX");
    cr_assert_not_null(mkdtemp(t_dir), "mkdtemp: %s", strerror(errno));
}

static void t_teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", t_dir);
}

/* A path inside this test's temp dir, in one of a few rotating static buffers. */
static const char *t_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", t_dir, name);
    return b;
}

static char *t_slurp(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    if (len_out != NULL)
        *len_out = (size_t)len;
    return buf;
}

/* Run `kappa-gen ARGS`; stdout and stderr go to files in t_dir. Returns the exit status. */
static int t_gen(const char *args)
{
    const char *gen = getenv("KAPPA_GEN");
    cr_assert(gen != NULL && *gen != '\0', "KAPPA_GEN is not set: run this through meson test");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s' %s >'%s' 2>'%s'", gen, args, t_path("stdout"),
             t_path("stderr"));
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

/* Run with --output out and --truth truth added; the run must succeed. */
static void t_gen_ok(const char *out, const char *truth, const char *args)
{
    char all[3072];
    snprintf(all, sizeof(all), "--output '%s' --truth '%s' %s", t_path(out), t_path(truth), args);
    int rc = t_gen(all);
    char *err = t_slurp(t_path("stderr"), NULL);
    cr_assert_eq(rc, 0, "kappa-gen %s exited %d: %s", all, rc, err);
    free(err);
}

/* ---- the NDJSON output ---- */

typedef struct t_lines_s {
    char *buf;
    char **line;
    size_t n;
} t_lines_t;

static t_lines_t t_lines_read(const char *name)
{
    t_lines_t l = {0};
    size_t len;
    l.buf = t_slurp(t_path(name), &len);
    for (size_t i = 0; i < len; i++)
        l.n += l.buf[i] == '\n';
    l.line = calloc(l.n + 1, sizeof(char *));
    char *p = l.buf;
    for (size_t i = 0; i < l.n; i++) {
        char *nl = strchr(p, '\n');
        *nl = '\0';
        l.line[i] = p;
        p = nl + 1;
    }
    cr_assert_eq(*p, '\0', "output does not end with a newline");
    return l;
}

static void t_lines_free(t_lines_t *l)
{
    free(l->line);
    free(l->buf);
}

typedef struct t_event_s {
    uint64_t user;
    char item[32];
    int64_t ts;
} t_event_t;

/* Valid = a JSON object with string user_id "user_N", string item_id and integer timestamp.
 * A valid line must also be byte-for-byte the canonical shape. */
static bool t_event_parse(const char *line, t_event_t *ev)
{
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    if (j == NULL)
        return false;
    json_t *u = json_object_get(j, "user_id");
    json_t *it = json_object_get(j, "item_id");
    json_t *ts = json_object_get(j, "timestamp");
    bool ok = json_is_object(j) && json_is_string(u) && json_is_string(it) && json_is_integer(ts) &&
              json_object_size(j) == 3 &&
              sscanf(json_string_value(u), "user_%" SCNu64, &ev->user) == 1 &&
              strlen(json_string_value(it)) < sizeof(ev->item);
    if (ok) {
        snprintf(ev->item, sizeof(ev->item), "%s", json_string_value(it));
        ev->ts = (int64_t)json_integer_value(ts);
        char canon[256];
        snprintf(canon, sizeof(canon),
                 "{\"user_id\":\"user_%" PRIu64 "\",\"item_id\":\"%s\",\"timestamp\":%" PRId64 "}",
                 ev->user, ev->item, ev->ts);
        cr_assert_str_eq(line, canon, "valid event not in the canonical shape");
    }
    json_decref(j);
    return ok;
}

/* ---- the truth file ---- */

typedef struct t_row_s {
    char item[32];
    int64_t ws, we;
    uint64_t count;
} t_row_t;

typedef struct t_truth_s {
    uint64_t events, valid, malformed, late, filter, counted, filtered;
    int64_t window_ms;
    t_row_t *rows;
    size_t n;
} t_truth_t;

static void t_truth_line(t_truth_t *t, const char *line, size_t cap)
{
    if (strncmp(line, "# events=", 9) == 0) {
        int got = sscanf(line,
                         "# events=%" SCNu64 " valid=%" SCNu64 " malformed=%" SCNu64
                         " late=%" SCNu64 " filter_users_above=%" SCNu64 " window_ms=%" SCNd64,
                         &t->events, &t->valid, &t->malformed, &t->late, &t->filter, &t->window_ms);
        cr_assert_eq(got, 6, "bad totals line: %s", line);
    } else if (strncmp(line, "# counted=", 10) == 0) {
        cr_assert_eq(
            sscanf(line, "# counted=%" SCNu64 " filtered=%" SCNu64, &t->counted, &t->filtered), 2,
            "bad counted line: %s", line);
    } else if (line[0] != '#') {
        cr_assert_lt(t->n, cap);
        t_row_t *r = &t->rows[t->n++];
        cr_assert_eq(sscanf(line, "%31[^\t]\t%" SCNd64 "\t%" SCNd64 "\t%" SCNu64, r->item, &r->ws,
                            &r->we, &r->count),
                     4, "bad truth row: %s", line);
    }
}

static t_truth_t t_truth_read(const char *name)
{
    t_lines_t l = t_lines_read(name);
    t_truth_t t = {.events = UINT64_MAX};
    t.rows = calloc(l.n + 1, sizeof(*t.rows));
    for (size_t i = 0; i < l.n; i++)
        t_truth_line(&t, l.line[i], l.n);
    t_lines_free(&l);
    cr_assert_neq(t.events, UINT64_MAX, "truth file has no totals line");
    return t;
}

static void t_truth_free(t_truth_t *t)
{
    free(t->rows);
    t->rows = NULL;
}

static int t_row_cmp(const void *pa, const void *pb)
{
    const t_row_t *a = pa, *b = pb;
    int c = strcmp(a->item, b->item);
    return c != 0 ? c : (a->ws > b->ws) - (a->ws < b->ws);
}

/* Count the valid lines not in `skip` whose user number is > filter, per (item, window). */
static t_truth_t t_recount(const t_lines_t *l, const bool *skip, uint64_t filter, int64_t w)
{
    t_truth_t t = {.window_ms = w};
    t.rows = calloc(l->n + 1, sizeof(*t.rows));
    for (size_t i = 0; i < l->n; i++) {
        t_event_t ev;
        t.events++;
        if (!t_event_parse(l->line[i], &ev)) {
            t.malformed++;
            continue;
        }
        t.valid++;
        if ((skip != NULL && skip[i]) || ev.user <= filter)
            continue;
        t_row_t *r = &t.rows[t.n++];
        snprintf(r->item, sizeof(r->item), "%s", ev.item);
        r->ws = ev.ts - ((ev.ts % w) + w) % w;
        r->we = r->ws + w;
        r->count = 1;
    }
    qsort(t.rows, t.n, sizeof(*t.rows), t_row_cmp);
    size_t out = 0;
    for (size_t i = 0; i < t.n; i++) {
        if (out > 0 && t_row_cmp(&t.rows[out - 1], &t.rows[i]) == 0)
            t.rows[out - 1].count++;
        else
            t.rows[out++] = t.rows[i];
    }
    t.n = out;
    return t;
}

static uint64_t t_truth_sum(const t_truth_t *t)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < t->n; i++)
        sum += t->rows[i].count;
    return sum;
}

static void t_truth_assert_rows_eq(const t_truth_t *want, const t_truth_t *got)
{
    cr_assert_eq(got->n, want->n, "truth has %zu rows, recount %zu", got->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        const t_row_t *a = &want->rows[i], *b = &got->rows[i];
        cr_assert(strcmp(a->item, b->item) == 0 && a->ws == b->ws && a->we == b->we &&
                      a->count == b->count,
                  "row %zu: recount %s %" PRId64 " %" PRId64 " %" PRIu64 ", truth %s %" PRId64
                  " %" PRId64 " %" PRIu64,
                  i, a->item, a->ws, a->we, a->count, b->item, b->ws, b->we, b->count);
    }
}

/* ---- tests ---- */

TestSuite(gen, .init = t_setup, .fini = t_teardown);

Test(gen, same_seed_same_bytes)
{
    const char *args = "--count 20000 --malformed 0.05 --late-fraction 0.05 "
                       "--out-of-order-ms 5000 --seed 7 --skew 1.2";
    t_gen_ok("a.ndjson", "a.truth", args);
    t_gen_ok("b.ndjson", "b.truth", args);
    size_t la, lb;
    char *a = t_slurp(t_path("a.ndjson"), &la), *b = t_slurp(t_path("b.ndjson"), &lb);
    cr_assert(la == lb && memcmp(a, b, la) == 0, "same seed gave different events");
    free(a);
    free(b);
    a = t_slurp(t_path("a.truth"), &la);
    b = t_slurp(t_path("b.truth"), &lb);
    cr_assert(la == lb && memcmp(a, b, la) == 0, "same seed gave different truth");
    free(a);
    free(b);

    t_gen_ok("c.ndjson", "c.truth", "--count 20000 --seed 8");
    t_gen_ok("d.ndjson", "d.truth", "--count 20000 --seed 7");
    a = t_slurp(t_path("c.ndjson"), &la);
    b = t_slurp(t_path("d.ndjson"), &lb);
    cr_assert(la != lb || memcmp(a, b, la) != 0, "different seeds gave the same events");
    free(a);
    free(b);
}

Test(gen, truth_equals_recount_without_late)
{
    t_gen_ok("e.ndjson", "e.truth",
             "--count 50000 --malformed 0.05 --out-of-order-ms 10000 --seed 3");
    t_lines_t l = t_lines_read("e.ndjson");
    t_truth_t truth = t_truth_read("e.truth");
    t_truth_t mine = t_recount(&l, NULL, 0, 3600000);
    cr_assert_eq(l.n, 50000);
    cr_assert_eq(truth.events, 50000);
    cr_assert_eq(truth.malformed, mine.malformed);
    cr_assert_gt(truth.malformed, 2000, "about 5%% should be malformed");
    cr_assert_eq(truth.valid, mine.valid);
    cr_assert_eq(truth.valid + truth.malformed, truth.events);
    cr_assert_eq(truth.late, 0);
    cr_assert_eq(truth.window_ms, 3600000);
    cr_assert_eq(t_truth_sum(&truth), truth.valid - truth.late);
    cr_assert_eq(truth.counted, t_truth_sum(&truth));
    t_truth_assert_rows_eq(&mine, &truth);
    t_lines_free(&l);
    t_truth_free(&truth);
    t_truth_free(&mine);
}

Test(gen, late_events_are_the_only_difference_and_not_counted)
{
    const char *common = "--count 50000 --malformed 0.02 --out-of-order-ms 2000 --seed 11";
    char args[512];
    snprintf(args, sizeof(args), "%s --late-fraction 0.03", common);
    t_gen_ok("late.ndjson", "late.truth", args);
    t_gen_ok("ontime.ndjson", "ontime.truth", common);
    t_lines_t a = t_lines_read("late.ndjson"), b = t_lines_read("ontime.ndjson");
    t_truth_t ta = t_truth_read("late.truth"), tb = t_truth_read("ontime.truth");
    cr_assert_eq(a.n, b.n);
    cr_assert_gt(ta.late, 1000, "about 3%% should be late, got %" PRIu64, ta.late);
    cr_assert_eq(ta.malformed, tb.malformed, "late fraction must not change malformed ones");

    bool *differs = calloc(a.n, sizeof(bool));
    uint64_t ndiff = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (strcmp(a.line[i], b.line[i]) == 0)
            continue;
        t_event_t ea, eb;
        cr_assert(t_event_parse(a.line[i], &ea) && t_event_parse(b.line[i], &eb),
                  "line %zu: a late event must be valid", i);
        cr_assert(ea.user == eb.user && strcmp(ea.item, eb.item) == 0);
        cr_assert_leq(ea.ts, eb.ts + 2000 - T_DAY_MS, "line %zu is not a day late", i);
        cr_assert_geq(ea.ts, eb.ts - T_DAY_MS - 3600000);
        differs[i] = true;
        ndiff++;
    }
    cr_assert_eq(ndiff, ta.late, "lines that became late %" PRIu64 " != header late=%" PRIu64,
                 ndiff, ta.late);
    cr_assert_eq(t_truth_sum(&ta), ta.valid - ta.late);
    t_truth_t mine = t_recount(&a, differs, 0, 3600000);
    t_truth_assert_rows_eq(&mine, &ta);
    free(differs);
    t_lines_free(&a);
    t_lines_free(&b);
    t_truth_free(&ta);
    t_truth_free(&tb);
    t_truth_free(&mine);
}

/* With a short lag the model may only make an event late where a 10 s watermark over the
 * on-time events before it has already closed the event's window; otherwise it stays on time. */
Test(gen, late_events_are_behind_the_watermark)
{
    const char *common = "--count 20000 --span 7200000 --out-of-order-ms 3000 --seed 4 "
                         "--window-ms 600000";
    char args[512];
    snprintf(args, sizeof(args), "%s --late-fraction 0.2 --late-lag-ms 60000", common);
    t_gen_ok("late.ndjson", "late.truth", args);
    t_gen_ok("ontime.ndjson", "ontime.truth", common);
    t_lines_t a = t_lines_read("late.ndjson"), b = t_lines_read("ontime.ndjson");
    t_truth_t ta = t_truth_read("late.truth");
    int64_t max_ontime = INT64_MIN;
    uint64_t late = 0, candidates = 0;
    for (size_t i = 0; i < a.n; i++) {
        t_event_t ev;
        cr_assert(t_event_parse(a.line[i], &ev));
        if (strcmp(a.line[i], b.line[i]) == 0) {
            max_ontime = ev.ts > max_ontime ? ev.ts : max_ontime;
            continue;
        }
        int64_t window_end = ev.ts - ev.ts % 600000 + 600000;
        cr_assert_geq(i, 1000, "late event %zu inside the warm-up", i);
        cr_assert_leq(window_end + 10000, max_ontime, "line %zu: window not closed yet", i);
        late++;
    }
    candidates = (uint64_t)(0.2 * 20000);
    cr_assert_eq(late, ta.late);
    cr_assert(late > 0 && late < candidates * 9 / 10,
              "late=%" PRIu64 ": some but not all candidates can be late with a 1 min lag", late);
    t_truth_t mine = t_recount(&a, NULL, 0, 600000);
    cr_assert_eq(t_truth_sum(&mine), ta.valid, "all lines are valid here");
    t_lines_free(&a);
    t_lines_free(&b);
    t_truth_free(&ta);
    t_truth_free(&mine);
}

Test(gen, filter_users_above_counts_only_higher_users)
{
    const char *common = "--count 30000 --malformed 0.01 --late-fraction 0 --seed 5";
    char args[512];
    snprintf(args, sizeof(args), "%s --filter-users-above 60", common);
    t_gen_ok("f.ndjson", "f.truth", args);
    t_gen_ok("all.ndjson", "all.truth", common);
    t_lines_t l = t_lines_read("f.ndjson");
    t_truth_t tf = t_truth_read("f.truth"), tall = t_truth_read("all.truth");
    cr_assert_eq(tf.filter, 60);
    t_truth_t mine = t_recount(&l, NULL, 60, 3600000);
    t_truth_assert_rows_eq(&mine, &tf);
    uint64_t sum = t_truth_sum(&tf);
    cr_assert_lt(sum, t_truth_sum(&tall));
    cr_assert_eq(sum + tf.filtered, tf.valid - tf.late);
    /* users 61..100 of 100: about 40% remain */
    cr_assert(sum > tall.counted * 3 / 10 && sum < tall.counted * 5 / 10,
              "filtered %" PRIu64 " of %" PRIu64, sum, tall.counted);
    t_lines_free(&l);
    t_truth_free(&tf);
    t_truth_free(&tall);
    t_truth_free(&mine);
}

Test(gen, window_option_changes_buckets)
{
    t_gen_ok("w.ndjson", "w.truth",
             "--count 20000 --window-ms 60000 --span 3600000 --out-of-order-ms 1000");
    t_lines_t l = t_lines_read("w.ndjson");
    t_truth_t truth = t_truth_read("w.truth");
    cr_assert_eq(truth.window_ms, 60000);
    t_truth_t mine = t_recount(&l, NULL, 0, 60000);
    t_truth_assert_rows_eq(&mine, &truth);
    t_lines_free(&l);
    t_truth_free(&truth);
    t_truth_free(&mine);
}

Test(gen, timestamps_cover_the_span_in_order)
{
    t_gen_ok("t.ndjson", "t.truth",
             "--count 10000 --start-time 1000000 --span 10000000 --out-of-order-ms 0");
    t_lines_t l = t_lines_read("t.ndjson");
    int64_t prev = 0;
    for (size_t i = 0; i < l.n; i++) {
        t_event_t ev;
        cr_assert(t_event_parse(l.line[i], &ev));
        cr_assert_eq(ev.ts, 1000000 + (int64_t)i * 1000, "line %zu", i);
        cr_assert_geq(ev.ts, prev);
        prev = ev.ts;
    }
    t_lines_free(&l);
}

Test(gen, default_start_is_floored_to_the_hour)
{
    t_gen_ok("s.ndjson", "s.truth", "--count 1");
    t_lines_t l = t_lines_read("s.ndjson");
    t_event_t ev;
    cr_assert(t_event_parse(l.line[0], &ev));
    cr_assert_eq(ev.ts, 1699999200000LL);
    t_lines_free(&l);
}

Test(gen, malformed_messages_are_all_invalid_and_of_every_kind)
{
    t_gen_ok("m.ndjson", "m.truth", "--count 2000 --malformed 1");
    t_lines_t l = t_lines_read("m.ndjson");
    int truncated = 0, garbage = 0, no_ts = 0, no_item = 0, ts_string = 0;
    for (size_t i = 0; i < l.n; i++) {
        t_event_t ev;
        cr_assert(!t_event_parse(l.line[i], &ev), "line %zu is valid: %s", i, l.line[i]);
        json_error_t jerr;
        json_t *j = json_loads(l.line[i], 0, &jerr);
        if (j == NULL) {
            truncated += l.line[i][0] == '{';
            garbage += l.line[i][0] != '{';
            continue;
        }
        json_t *ts = json_object_get(j, "timestamp");
        no_ts += ts == NULL;
        no_item += json_object_get(j, "item_id") == NULL;
        ts_string += json_is_string(ts);
        json_decref(j);
    }
    cr_assert(truncated > 0 && garbage > 0 && no_ts > 0 && no_item > 0 && ts_string > 0,
              "kinds: truncated=%d garbage=%d no_ts=%d no_item=%d ts_string=%d", truncated, garbage,
              no_ts, no_item, ts_string);
    t_truth_t truth = t_truth_read("m.truth");
    cr_assert_eq(truth.malformed, 2000);
    cr_assert_eq(truth.valid, 0);
    cr_assert_eq(truth.n, 0);
    t_lines_free(&l);
    t_truth_free(&truth);
}

static uint64_t t_item1_share_permille(const char *skew)
{
    char args[256];
    snprintf(args, sizeof(args), "--count 20000 --items 1000 --skew %s", skew);
    t_gen_ok("k.ndjson", "k.truth", args);
    t_lines_t l = t_lines_read("k.ndjson");
    uint64_t hot = 0;
    for (size_t i = 0; i < l.n; i++) {
        t_event_t ev;
        cr_assert(t_event_parse(l.line[i], &ev));
        hot += strcmp(ev.item, "item_1") == 0;
    }
    t_lines_free(&l);
    return hot * 1000 / 20000;
}

Test(gen, skew_makes_a_few_items_hot)
{
    /* Zipf s=1.5 over 1000 items: item_1 gets 1/H(1000,1.5), about 39%. */
    uint64_t skewed = t_item1_share_permille("1.5");
    uint64_t uniform = t_item1_share_permille("0");
    cr_assert(skewed > 330 && skewed < 450, "item_1 share %" PRIu64 " permille", skewed);
    cr_assert_lt(uniform, 5, "item_1 share %" PRIu64 " permille with --skew 0", uniform);
}

Test(gen, users_and_items_stay_in_range)
{
    t_gen_ok("r.ndjson", "r.truth", "--count 5000 --users 3 --items 4 --skew 0");
    t_lines_t l = t_lines_read("r.ndjson");
    bool seen_user[4] = {0}, seen_item[5] = {0};
    for (size_t i = 0; i < l.n; i++) {
        t_event_t ev;
        unsigned item;
        cr_assert(t_event_parse(l.line[i], &ev));
        cr_assert(ev.user >= 1 && ev.user <= 3);
        cr_assert_eq(sscanf(ev.item, "item_%u", &item), 1);
        cr_assert(item >= 1 && item <= 4);
        seen_user[ev.user] = seen_item[item] = true;
    }
    cr_assert(seen_user[1] && seen_user[2] && seen_user[3]);
    cr_assert(seen_item[1] && seen_item[2] && seen_item[3] && seen_item[4]);
    t_lines_free(&l);
}

Test(gen, rate_with_duration_sets_the_count)
{
    t_gen_ok("p.ndjson", "p.truth", "--rate 4000 --duration-s 0.25");
    t_lines_t l = t_lines_read("p.ndjson");
    cr_assert_eq(l.n, 1000);
    t_lines_free(&l);
}

/* The --partitions stats must match librdkafka's own murmur2 partitioner on the keys. */
Test(gen, partition_stats_match_librdkafka_murmur2)
{
    t_gen_ok("q.ndjson", "q.truth", "--count 5000 --users 1000 --partitions 8");
    t_lines_t l = t_lines_read("q.ndjson");
    uint64_t want[8] = {0};
    for (size_t i = 0; i < l.n; i++) {
        t_event_t ev;
        char key[32];
        cr_assert(t_event_parse(l.line[i], &ev));
        int n = snprintf(key, sizeof(key), "user_%" PRIu64, ev.user);
        want[rd_kafka_msg_partitioner_murmur2_random(NULL, key, (size_t)n, 8, NULL, NULL)]++;
    }
    char expect[256];
    snprintf(expect, sizeof(expect),
             "partitions=8 counts=%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
             ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n",
             want[0], want[1], want[2], want[3], want[4], want[5], want[6], want[7]);
    char *err = t_slurp(t_path("stderr"), NULL);
    cr_assert_not_null(strstr(err, expect), "want '%s' in: %s", expect, err);
    free(err);
    t_lines_free(&l);
}

static void t_assert_usage(const char *args)
{
    int rc = t_gen(args);
    char *err = t_slurp(t_path("stderr"), NULL);
    cr_assert_eq(rc, 2, "kappa-gen %s: exit %d, want 2; stderr: %s", args, rc, err);
    cr_assert_not_null(strstr(err, "usage: kappa-gen"), "no usage for %s: %s", args, err);
    free(err);
}

Test(gen, bad_flags_exit_2_with_usage)
{
    t_assert_usage("");
    t_assert_usage("--count 10");               /* no output */
    t_assert_usage("--output - ");              /* no count */
    t_assert_usage("--output - --count -5");    /* negative */
    t_assert_usage("--output - --count 12abc"); /* not a number */
    t_assert_usage("--output - --count 0");     /* nothing to do */
    t_assert_usage("--output - --count 10 --late-fraction 1.5");
    t_assert_usage("--output - --count 10 --malformed -0.1");
    t_assert_usage("--output - --count 10 --malformed 0.6 --late-fraction 0.6");
    t_assert_usage("--output - --count 10 --nonsense");
    t_assert_usage("--output - --count 10 --users 0");
    t_assert_usage("--output - --count 10 --window-ms 0");
    t_assert_usage("--output - --count 10 --rate fast");
    t_assert_usage("--output - --duration-s 5"); /* duration without rate */
    t_assert_usage("--output - --count 10 --duration-s 5 --rate 1");
    t_assert_usage("--brokers 127.0.0.1:9092 --count 10"); /* no topic */
    t_assert_usage("--output - --topic t --count 10");     /* both */
    t_assert_usage("--output - --count 10 stray");
    t_assert_usage("--output - --count"); /* missing value */
}

Test(gen, help_exits_0_and_documents_the_truth_format)
{
    cr_assert_eq(t_gen("--help"), 0);
    char *out = t_slurp(t_path("stdout"), NULL);
    cr_assert_not_null(strstr(out, "item_id<TAB>window_start<TAB>window_end<TAB>click_count"));
    cr_assert_not_null(strstr(out, "--filter-users-above"));
    free(out);
}

Test(gen, stdout_output_matches_file_output)
{
    t_gen_ok("o.ndjson", "o.truth", "--count 3000 --seed 9 --malformed 0.1");
    cr_assert_eq(t_gen("--output - --count 3000 --seed 9 --malformed 0.1"), 0);
    size_t la, lb;
    char *a = t_slurp(t_path("o.ndjson"), &la), *b = t_slurp(t_path("stdout"), &lb);
    cr_assert(la == lb && memcmp(a, b, la) == 0);
    free(a);
    free(b);
}

Test(gen, unreachable_broker_fails_with_its_name)
{
    /* Port 1 on loopback: nothing listens there; the probe must fail fast and name it. */
    int rc = t_gen("--brokers 127.0.0.1:1 --topic t --count 10");
    char *err = t_slurp(t_path("stderr"), NULL);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
    cr_assert_not_null(strstr(err, "127.0.0.1:1"), "broker not named: %s", err);
    free(err);
}
