/*
 * Unit tests for kappa-gen, the click-event generator (deploy/gen), run as a black box.
 *
 * Every kappa correctness test trusts the truth file kappa-gen writes, so these tests check
 * that truth against an independent recount: they run the built binary (path in KAPPA_GEN,
 * set by meson) with --output to a temp file, parse the NDJSON back with jansson, recompute
 * every event's partition from the documented partitioner (murmur2 through librdkafka's own
 * partitioner for hash), apply the engine's lateness rule per partition themselves and count
 * the non-late clicks per (item, window). The events do not depend on the partitioning
 * options, so the truth of a hash or range partitioned run (--dry-run) is checked against the
 * events of the same seed written to a file. Seeds: a fixed list that always runs plus one
 * fresh random seed, printed. No services are needed.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#define T_DAY_MS   86400000LL
#define T_MAX_PART 16

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
    uint64_t events, valid, malformed, late, filter, counted, filtered, moved_back;
    uint64_t on_the_edge; /* recount only: valid events with window_end - 1 + L == cwm */
    int64_t window_ms;
    int nparts; /* from the '# rule:' line, or the recount's */
    char partitioner[16];
    uint64_t part_msgs[T_MAX_PART], part_late[T_MAX_PART];
    int64_t part_max[T_MAX_PART]; /* INT64_MIN = no valid event */
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
    } else if (strncmp(line, "# rule: ", 8) == 0) {
        cr_assert_eq(
            sscanf(line, "# rule: partitions=%d partitioner=%15s", &t->nparts, t->partitioner), 2,
            "bad rule line: %s", line);
        const char *mb = strstr(line, " moved_back=");
        cr_assert_not_null(mb, "bad rule line: %s", line);
        t->moved_back = strtoull(mb + 12, NULL, 10);
    } else if (strncmp(line, "# partition=", 12) == 0) {
        int p;
        uint64_t msgs, late;
        char max[32];
        cr_assert_eq(sscanf(line,
                            "# partition=%d messages=%" SCNu64 " late=%" SCNu64 " max_ts=%31s", &p,
                            &msgs, &late, max),
                     4, "bad partition line: %s", line);
        cr_assert(p >= 0 && p < T_MAX_PART);
        t->part_msgs[p] = msgs;
        t->part_late[p] = late;
        t->part_max[p] = strcmp(max, "-") == 0 ? INT64_MIN : strtoll(max, NULL, 10);
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

/* What the engine does with the events: its lateness rule and the job's user filter. */
typedef struct t_rule_s {
    int64_t w;            /* tumbling window size; 0 = kappa-gen's default 3600000 */
    int64_t ooo;          /* the source's out_of_order; 0 = kappa-gen's default 10000 */
    int64_t lateness;     /* allowed lateness */
    uint64_t filter;      /* count users > filter */
    int nparts;           /* partitions; 0 = 1 */
    const int32_t *parts; /* partition of each line, NULL = all 0 */
} t_rule_t;

#define T_RULE(...) ((t_rule_t){.lateness = 0, __VA_ARGS__})

static int64_t t_floor_start(int64_t ts, int64_t w)
{
    return ts - ((ts % w) + w) % w;
}

/* Apply the rule of docs/semantics.md to the lines, written here from the rule's text:
 * per partition, cwm = max timestamp of the earlier valid lines - ooo - 1 (none before the
 * first valid line); a valid line is late iff window_end - 1 + lateness <= cwm. Counted:
 * valid, not late, user > filter; aggregated per (item, window). */
static t_truth_t t_recount(const t_lines_t *l, t_rule_t r)
{
    r.w = r.w != 0 ? r.w : 3600000;
    r.ooo = r.ooo != 0 ? r.ooo : 10000;
    r.nparts = r.nparts != 0 ? r.nparts : 1;
    t_truth_t t = {.window_ms = r.w, .nparts = r.nparts};
    cr_assert(r.nparts >= 1 && r.nparts <= T_MAX_PART);
    bool seen[T_MAX_PART] = {0};
    for (int p = 0; p < T_MAX_PART; p++)
        t.part_max[p] = INT64_MIN;
    t.rows = calloc(l->n + 1, sizeof(*t.rows));
    for (size_t i = 0; i < l->n; i++) {
        int p = r.parts != NULL ? r.parts[i] : 0;
        cr_assert(p >= 0 && p < r.nparts);
        t_event_t ev;
        t.events++;
        t.part_msgs[p]++;
        if (!t_event_parse(l->line[i], &ev)) {
            t.malformed++;
            continue;
        }
        t.valid++;
        int64_t ws = t_floor_start(ev.ts, r.w);
        bool late = seen[p] && ws + r.w - 1 + r.lateness <= t.part_max[p] - r.ooo - 1;
        t.on_the_edge += seen[p] && ws + r.w - 1 + r.lateness == t.part_max[p] - r.ooo - 1;
        if (!seen[p] || ev.ts > t.part_max[p])
            t.part_max[p] = ev.ts;
        seen[p] = true;
        if (late) {
            t.late++;
            t.part_late[p]++;
            continue;
        }
        if (ev.user <= r.filter) {
            t.filtered++;
            continue;
        }
        t_row_t *row = &t.rows[t.n++];
        snprintf(row->item, sizeof(row->item), "%s", ev.item);
        row->ws = ws;
        row->we = ws + r.w;
        row->count = 1;
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
    t.counted = t.valid - t.late - t.filtered;
    return t;
}

/* Every line's partition by the documented partitioners. Keys of malformed lines cannot be
 * read back, so hash gives them -1: callers use hash only where the partitions of malformed
 * messages do not matter, or with --malformed 0. */
static int32_t *t_parts_round_robin(size_t n, int nparts)
{
    int32_t *parts = calloc(n + 1, sizeof(*parts));
    for (size_t i = 0; i < n; i++)
        parts[i] = (int32_t)(i % (size_t)nparts);
    return parts;
}

static int32_t *t_parts_range(size_t n, int nparts)
{
    int32_t *parts = calloc(n + 1, sizeof(*parts));
    for (size_t i = 0; i < n; i++)
        parts[i] =
            i * 5 < n ? (int32_t)(i % (size_t)nparts) : (int32_t)(1 + i % (size_t)(nparts - 1));
    return parts;
}

static int32_t *t_parts_hash(const t_lines_t *l, int nparts)
{
    int32_t *parts = calloc(l->n + 1, sizeof(*parts));
    for (size_t i = 0; i < l->n; i++) {
        t_event_t ev;
        char key[32];
        if (!t_event_parse(l->line[i], &ev)) {
            parts[i] = 0; /* malformed: does not take part in the rule */
            continue;
        }
        int n = snprintf(key, sizeof(key), "user_%" PRIu64, ev.user);
        parts[i] =
            rd_kafka_msg_partitioner_murmur2_random(NULL, key, (size_t)n, nparts, NULL, NULL);
    }
    return parts;
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

/* The truth file equals the recount: totals, per-partition lines and every row. With
 * check_msgs false the per-partition message counts are not compared (hash with malformed
 * messages, whose keys the recount cannot read). */
static void t_truth_assert_eq(const t_truth_t *want, const t_truth_t *got, bool check_msgs)
{
    cr_assert_eq(got->events, want->events);
    cr_assert_eq(got->valid, want->valid);
    cr_assert_eq(got->malformed, want->malformed);
    cr_assert_eq(got->late, want->late, "truth late=%" PRIu64 ", rule recount %" PRIu64, got->late,
                 want->late);
    cr_assert_eq(got->filtered, want->filtered);
    cr_assert_eq(got->counted, want->counted);
    cr_assert_eq(got->nparts, want->nparts);
    for (int p = 0; p < want->nparts; p++) {
        cr_assert_eq(got->part_late[p], want->part_late[p], "partition %d late", p);
        cr_assert_eq(got->part_max[p], want->part_max[p], "partition %d max_ts", p);
        if (check_msgs)
            cr_assert_eq(got->part_msgs[p], want->part_msgs[p], "partition %d messages", p);
    }
    t_truth_assert_rows_eq(want, got);
    cr_assert_eq(t_truth_sum(got), got->counted);
}

/* The summary's per-partition line must say what the truth file says. */
static void t_assert_summary_partitions(const t_truth_t *t, const char *partitioner)
{
    char want[1024];
    int n = snprintf(want, sizeof(want), "partitions=%d counts=", t->nparts);
    for (int p = 0; p < t->nparts; p++)
        n += snprintf(want + n, sizeof(want) - (size_t)n, "%s%" PRIu64, p ? "," : "",
                      t->part_msgs[p]);
    n += snprintf(want + n, sizeof(want) - (size_t)n, " late=");
    for (int p = 0; p < t->nparts; p++)
        n += snprintf(want + n, sizeof(want) - (size_t)n, "%s%" PRIu64, p ? "," : "",
                      t->part_late[p]);
    snprintf(want + n, sizeof(want) - (size_t)n, " partitioner=%s\n", partitioner);
    char *err = t_slurp(t_path("stderr"), NULL);
    cr_assert_not_null(strstr(err, want), "want '%s' in: %s", want, err);
    free(err);
}

/* Seeds: a fixed list that always runs, then one fresh seed, printed so a failure can be
 * replayed with --seed. */
static const uint64_t t_fixed_seeds[] = {1, 7, 42, 1234567};
#define T_SEED_CNT (sizeof(t_fixed_seeds) / sizeof(t_fixed_seeds[0]) + 1)

static uint64_t t_seed(size_t k)
{
    if (k < T_SEED_CNT - 1)
        return t_fixed_seeds[k];
    static uint64_t fresh;
    if (fresh == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        fresh = ((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec * 2654435761u ^ (uint64_t)getpid()) | 1;
        fprintf(stderr, "test_gen: fresh random seed %" PRIu64 "\n", fresh);
    }
    return fresh;
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
    t_truth_t mine = t_recount(&l, T_RULE());
    cr_assert_eq(l.n, 50000);
    cr_assert_eq(truth.events, 50000);
    cr_assert_gt(truth.malformed, 2000, "about 5%% should be malformed");
    cr_assert_eq(truth.valid + truth.malformed, truth.events);
    cr_assert_eq(truth.late, 0, "jitter within the watermark bound is never late");
    cr_assert_eq(truth.window_ms, 3600000);
    cr_assert_eq(truth.nparts, 1);
    cr_assert_str_eq(truth.partitioner, "round-robin");
    t_truth_assert_eq(&mine, &truth, true);
    t_lines_free(&l);
    t_truth_free(&truth);
    t_truth_free(&mine);
}

/* The heart of it: for round-robin files at several partition counts, with moved-back events,
 * malformed ones, jitter beyond the watermark bound and a short lag (so that some moved-back
 * events are not late), the truth equals the rule applied here to the file. */
Test(gen, truth_equals_rule_recount_per_partition)
{
    static const int nparts[] = {1, 2, 3, 4, 7};
    for (size_t k = 0; k < T_SEED_CNT; k++) {
        uint64_t seed = t_seed(k);
        int n = nparts[k % (sizeof(nparts) / sizeof(nparts[0]))];
        char args[512];
        snprintf(args, sizeof(args),
                 "--count 30000 --span 36000000 --window-ms 600000 --malformed 0.03 "
                 "--late-fraction 0.05 --late-lag-ms 300000 --out-of-order-ms 20000 "
                 "--users 50 --seed %" PRIu64 " --partitions %d",
                 seed, n);
        t_gen_ok("r.ndjson", "r.truth", args);
        t_lines_t l = t_lines_read("r.ndjson");
        t_truth_t truth = t_truth_read("r.truth");
        int32_t *parts = t_parts_round_robin(l.n, n);
        t_truth_t mine = t_recount(&l, T_RULE(.w = 600000, .nparts = n, .parts = parts));
        cr_log_info("seed %" PRIu64 " partitions %d: late %" PRIu64 " of %" PRIu64 " moved back",
                    seed, n, truth.late, truth.moved_back);
        cr_assert_gt(truth.late, 0);
        cr_assert_lt(truth.late, truth.valid / 5);
        t_truth_assert_eq(&mine, &truth, true);
        t_assert_summary_partitions(&mine, "round-robin");
        free(parts);
        t_lines_free(&l);
        t_truth_free(&truth);
        t_truth_free(&mine);
    }
}

/* Jitter beyond the truth's out-of-orderness makes on-time events late; a larger
 * --truth-out-of-order-ms or an allowed lateness makes fewer late; the truth follows. */
Test(gen, truth_follows_out_of_order_and_allowed_lateness_options)
{
    const char *model = "--count 20000 --span 7200000 --window-ms 60000 --out-of-order-ms 30000 "
                        "--partitions 3 --seed 5";
    struct {
        const char *extra;
        int64_t ooo, lateness;
    } cases[] = {
        {"", 10000, 0},
        {"--truth-out-of-order-ms 20000", 20000, 0},
        {"--allowed-lateness-ms 15000", 10000, 15000},
        {"--truth-out-of-order-ms 30000", 30000, 0},
    };
    uint64_t prev_late = UINT64_MAX;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char args[512];
        snprintf(args, sizeof(args), "%s %s", model, cases[k].extra);
        t_gen_ok("o.ndjson", "o.truth", args);
        t_lines_t l = t_lines_read("o.ndjson");
        t_truth_t truth = t_truth_read("o.truth");
        int32_t *parts = t_parts_round_robin(l.n, 3);
        t_rule_t rule = {.w = 60000,
                         .ooo = cases[k].ooo,
                         .lateness = cases[k].lateness,
                         .nparts = 3,
                         .parts = parts};
        t_truth_t mine = t_recount(&l, rule);
        t_truth_assert_eq(&mine, &truth, true);
        cr_assert_eq(truth.moved_back, 0);
        if (k == 0)
            cr_assert_gt(truth.late, 0, "30 s jitter against a 10 s bound: some are late");
        if (k == 3)
            cr_assert_eq(truth.late, 0, "jitter within the bound is never late");
        cr_assert_leq(truth.late, prev_late, "each case is more lenient than the one before");
        prev_late = truth.late;
        free(parts);
        t_lines_free(&l);
        t_truth_free(&truth);
        t_truth_free(&mine);
    }
}

/* 1 ms steps, 1-2 ms windows and a few ms of jitter put many events exactly on the edge of
 * the rule (window_end - 1 + L == cwm: late) and one off it (not late): an off-by-one in the
 * truth's rule fails here. */
Test(gen, rule_is_exact_at_the_edge)
{
    struct {
        const char *args;
        t_rule_t rule;
    } cases[] = {
        {"--window-ms 1 --truth-out-of-order-ms 1", {.w = 1, .ooo = 1}},
        {"--window-ms 2 --truth-out-of-order-ms 2", {.w = 2, .ooo = 2}},
        {"--window-ms 1 --truth-out-of-order-ms 1 --allowed-lateness-ms 1",
         {.w = 1, .ooo = 1, .lateness = 1}},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char args[512];
        snprintf(args, sizeof(args),
                 "--count 20000 --start-time 1000 --span 20000 --out-of-order-ms 6 "
                 "--malformed 0.05 --partitions 3 --seed %zu %s",
                 k + 1, cases[k].args);
        t_gen_ok("x.ndjson", "x.truth", args);
        t_lines_t l = t_lines_read("x.ndjson");
        t_truth_t truth = t_truth_read("x.truth");
        int32_t *parts = t_parts_round_robin(l.n, 3);
        cases[k].rule.nparts = 3;
        cases[k].rule.parts = parts;
        t_truth_t mine = t_recount(&l, cases[k].rule);
        cr_assert_gt(mine.on_the_edge, 100, "case %zu: only %" PRIu64 " events on the edge", k,
                     mine.on_the_edge);
        cr_assert_geq(mine.late, mine.on_the_edge);
        cr_assert_lt(mine.late, mine.valid);
        t_truth_assert_eq(&mine, &truth, true);
        free(parts);
        t_lines_free(&l);
        t_truth_free(&truth);
        t_truth_free(&mine);
    }
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
        ndiff++;
    }
    cr_assert_eq(ndiff, ta.moved_back, "lines moved back %" PRIu64 " != header %" PRIu64, ndiff,
                 ta.moved_back);
    /* A day back is late everywhere except as the first valid line of the one partition. */
    cr_assert(ta.late == ndiff || ta.late + 1 == ndiff);
    t_truth_t mine = t_recount(&a, T_RULE());
    t_truth_assert_eq(&mine, &ta, true);
    t_lines_free(&a);
    t_lines_free(&b);
    t_truth_free(&ta);
    t_truth_free(&tb);
    t_truth_free(&mine);
}

/* No warm-up: with many moved-back events the second valid line of a partition can already
 * be late, and is, in every partition. */
Test(gen, late_events_at_the_very_start)
{
    t_gen_ok("s.ndjson", "s.truth",
             "--count 400 --late-fraction 0.6 --partitions 4 --seed 3 --span 3600000");
    t_lines_t l = t_lines_read("s.ndjson");
    t_truth_t truth = t_truth_read("s.truth");
    int32_t *parts = t_parts_round_robin(l.n, 4);
    t_truth_t mine = t_recount(&l, T_RULE(.nparts = 4, .parts = parts));
    t_truth_assert_eq(&mine, &truth, true);
    /* Recount the first 20 lines on their own: late ones among them, in every partition. */
    t_lines_t head = l;
    head.n = 20;
    t_truth_t first = t_recount(&head, T_RULE(.nparts = 4, .parts = parts));
    cr_assert_geq(first.late, 4, "late among the first 20 lines: %" PRIu64, first.late);
    for (int p = 0; p < 4; p++)
        cr_assert_gt(first.part_late[p], 0, "partition %d: no late event in its first 5", p);
    /* and the first valid line of a partition never is */
    t_lines_t one = l;
    one.n = 4;
    t_truth_t four = t_recount(&one, T_RULE(.nparts = 4, .parts = parts));
    cr_assert_eq(four.late, 0);
    free(parts);
    t_truth_free(&first);
    t_truth_free(&four);
    t_lines_free(&l);
    t_truth_free(&truth);
    t_truth_free(&mine);
}

/* The events of a seed do not depend on the partitioning options: only the truth does. */
Test(gen, partitioning_does_not_change_the_events)
{
    t_gen_ok("p1.ndjson", "p1.truth", "--count 5000 --late-fraction 0.1 --malformed 0.1 --seed 9");
    t_gen_ok("p4.ndjson", "p4.truth",
             "--count 5000 --late-fraction 0.1 --malformed 0.1 --seed 9 --partitions 4");
    size_t la, lb;
    char *a = t_slurp(t_path("p1.ndjson"), &la), *b = t_slurp(t_path("p4.ndjson"), &lb);
    cr_assert(la == lb && memcmp(a, b, la) == 0);
    free(a);
    free(b);
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
    t_truth_t mine = t_recount(&l, T_RULE(.filter = 60));
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
    t_truth_t mine = t_recount(&l, T_RULE(.w = 60000));
    t_truth_assert_eq(&mine, &truth, true);
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

static int64_t t_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --live-timestamps: event time is the wall clock when the paced event is made, so the
 * timestamps lie within the run, never decrease, and are at least 1/rate apart on average
 * (pacing never runs ahead; under load it may only lag). */
Test(gen, live_timestamps_are_the_wall_clock_at_production)
{
    int64_t before = t_wall_ms();
    t_gen_ok("l.ndjson", "l.truth", "--rate 2000 --duration-s 0.5 --live-timestamps");
    int64_t after = t_wall_ms();
    t_lines_t l = t_lines_read("l.ndjson");
    cr_assert_eq(l.n, 1000);
    int64_t first = 0, prev = 0;
    for (size_t i = 0; i < l.n; i++) {
        t_event_t ev;
        cr_assert(t_event_parse(l.line[i], &ev), "line %zu: %s", i, l.line[i]);
        cr_assert(ev.ts >= before && ev.ts <= after,
                  "line %zu: %" PRId64 " not in [%" PRId64 ", %" PRId64 "]", i, ev.ts, before,
                  after);
        cr_assert_geq(ev.ts, prev, "line %zu", i);
        first = i == 0 ? ev.ts : first;
        prev = ev.ts;
    }
    cr_assert_geq(prev - first, 999 * 1000 / 2000 - 1, "paced events %" PRId64 " ms apart",
                  prev - first);
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

/* hash: every event goes where librdkafka's murmur2_random partitioner (what kcat and the
 * Java client use for keyed messages) puts its key; the --dry-run truth of a hash partitioned
 * run equals the rule recounted over those partitions. */
Test(gen, hash_partitioner_matches_librdkafka_murmur2)
{
    for (size_t k = 0; k < T_SEED_CNT; k++) {
        uint64_t seed = t_seed(k);
        char model[256], args[512];
        snprintf(model, sizeof(model),
                 "--count 20000 --users 1000 --late-fraction 0.02 --late-lag-ms 3600000 "
                 "--out-of-order-ms 15000 --span 86400000 --seed %" PRIu64,
                 seed);
        t_gen_ok("h.ndjson", "h1.truth", model); /* the events */
        snprintf(args, sizeof(args), "%s --dry-run --partitions 8", model);
        char all[1024];
        snprintf(all, sizeof(all), "--truth '%s' %s", t_path("h.truth"), args);
        cr_assert_eq(t_gen(all), 0);
        t_lines_t l = t_lines_read("h.ndjson");
        t_truth_t truth = t_truth_read("h.truth");
        cr_assert_str_eq(truth.partitioner, "hash", "--dry-run defaults to hash");
        int32_t *parts = t_parts_hash(&l, 8);
        t_truth_t mine = t_recount(&l, T_RULE(.nparts = 8, .parts = parts));
        t_truth_assert_eq(&mine, &truth, true);
        t_assert_summary_partitions(&mine, "hash");
        for (int p = 0; p < 8; p++)
            cr_assert_gt(mine.part_msgs[p], 0);
        free(parts);
        t_lines_free(&l);
        t_truth_free(&truth);
        t_truth_free(&mine);
    }
}

/* range: partition 0 gets events only while 5*i < count, so its event time ends after the
 * first fifth of the span while the others run to the end; the truth follows it. */
Test(gen, range_partitioner_ends_partition_zero_early)
{
    const char *model = "--count 50000 --span 36000000 --start-time 0 --malformed 0.02 "
                        "--late-fraction 0.01 --late-lag-ms 7200000 --seed 13";
    char all[1024];
    t_gen_ok("g.ndjson", "g1.truth", model);
    snprintf(all, sizeof(all), "--truth '%s' %s --dry-run --partitions 4 --partitioner range",
             t_path("g.truth"), model);
    cr_assert_eq(t_gen(all), 0);
    t_lines_t l = t_lines_read("g.ndjson");
    t_truth_t truth = t_truth_read("g.truth");
    cr_assert_str_eq(truth.partitioner, "range");
    int32_t *parts = t_parts_range(l.n, 4);
    t_truth_t mine = t_recount(&l, T_RULE(.nparts = 4, .parts = parts));
    t_truth_assert_eq(&mine, &truth, true);
    t_assert_summary_partitions(&mine, "range");
    cr_assert_eq(truth.part_msgs[0], 2500, "every 4th of the first 10000 events");
    cr_assert_eq(truth.part_msgs[1] + truth.part_msgs[2] + truth.part_msgs[3], 47500);
    /* a fifth of 10 h: partition 0's last event time is before 2 h, the others near 10 h */
    cr_assert_lt(truth.part_max[0], 7200000);
    cr_assert_gt(truth.part_max[0], 7000000);
    for (int p = 1; p < 4; p++)
        cr_assert_gt(truth.part_max[p], 35000000, "partition %d", p);
    size_t last0 = 0;
    for (size_t i = 0; i < l.n; i++)
        last0 = parts[i] == 0 ? i : last0;
    cr_assert_lt(last0, 10000);
    free(parts);
    t_lines_free(&l);
    t_truth_free(&truth);
    t_truth_free(&mine);
}

/* round-robin: line k in partition k mod N, so the counts differ by at most one. */
Test(gen, round_robin_counts)
{
    t_gen_ok("q.ndjson", "q.truth", "--count 1003 --partitions 4 --malformed 0.2");
    t_truth_t truth = t_truth_read("q.truth");
    cr_assert_str_eq(truth.partitioner, "round-robin", "--output defaults to round-robin");
    cr_assert(truth.part_msgs[0] == 251 && truth.part_msgs[1] == 251 && truth.part_msgs[2] == 251 &&
              truth.part_msgs[3] == 250);
    t_truth_free(&truth);
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
    t_assert_usage("--output - --count 10 --partitioner nope");
    t_assert_usage("--output - --count 10 --partitions 4 --partitioner hash"); /* file: k mod N */
    t_assert_usage("--output - --count 10 --partitions 4 --partitioner range");
    t_assert_usage("--dry-run --count 10 --partitioner range"); /* one partition */
    t_assert_usage("--dry-run --count 10 --partitions 1 --partitioner range");
    t_assert_usage("--dry-run --output - --count 10");
    t_assert_usage("--dry-run --brokers 127.0.0.1:9092 --topic t --count 10");
    t_assert_usage("--output - --count 10 --truth-out-of-order-ms -1");
}

Test(gen, help_exits_0_and_documents_the_truth_format)
{
    cr_assert_eq(t_gen("--help"), 0);
    char *out = t_slurp(t_path("stdout"), NULL);
    cr_assert_not_null(strstr(out, "item_id<TAB>window_start<TAB>window_end<TAB>click_count"));
    cr_assert_not_null(strstr(out, "--filter-users-above"));
    cr_assert_not_null(strstr(out, "--partitioner P"));
    cr_assert_not_null(strstr(out, "murmur2"));
    cr_assert_not_null(strstr(out, "file:FILE?partitions=N"));
    cr_assert_not_null(strstr(out, "window_end - 1 + L <= cwm"));
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
