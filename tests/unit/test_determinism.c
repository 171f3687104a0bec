/* Deterministic replay (docs/semantics.md): the same partitioned input, run under the
 * deterministic scheduler in many seeded interleavings of partitions, source subtasks and
 * exchanges, at parallelism 1..4, gives identical output — equal to a brute-force reference
 * that applies the lateness rule with each record's own partition watermark. Threaded runs
 * must agree too.
 *
 * The input has 4 partitions: partition 0 covers only the first fifth of the event time and
 * then ends, partition 3 starts delivering late (its reader holds it back for a while), far
 * late events sit at the very start of a partition, and late events are spread throughout.
 * Half the keys are shared by all partitions (windows mix partitions), half belong to one
 * partition (process-function timers are deterministic for those).
 *
 * A seed is printed with every failure: KAPPA_TEST_SEED=<n> reruns that interleaving. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/connector.h"
#include "../../runtime/exec.h"
#include "../../runtime/graph.h"
#include "../../runtime/rng.h"

#define NPART   4
#define PERPART 600
#define OOO     200

/* ---- the input -------------------------------------------------------------------------- */

typedef struct rec {
    char key[16];
    int64_t ts;
    int part;
    int64_t cwm;
    char line[96];
} rec;

enum { CASE_TUMBLING, CASE_SLIDING, CASE_SESSION, CASE_PROCESS, NCASES };
static const char *case_names[] = {"tumbling", "sliding", "session", "process"};
static int cur_case;

static rec input[NPART][PERPART];
static int nrec[NPART];

static uint64_t rng_of(uint64_t *s)
{
    return kp_rng_next(s);
}

static int64_t in_range(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_of(s) % (uint64_t)(hi - lo + 1));
}

static void make_input(void)
{
    uint64_t s = 0x51ed2701u;
    const int64_t t0 = 1000000;
    for (int p = 0; p < NPART; p++) {
        int64_t front = t0 + in_range(&s, 0, 50), max = INT64_MIN;
        nrec[p] = p == 0 ? PERPART / 5 : PERPART; /* partition 0 ends early */
        for (int i = 0; i < nrec[p]; i++) {
            rec *r = &input[p][i];
            front += in_range(&s, 0, 20);
            int64_t ts = front - in_range(&s, 0, OOO);
            if (in_range(&s, 0, 99) < 3)
                ts = front - in_range(&s, 500, 5000); /* late, throughout */
            if (p == 1 && i == 1)
                ts = t0 - 100000; /* far late at the very start */
            if (in_range(&s, 0, 1))
                snprintf(r->key, sizeof r->key, "s_%d", (int)in_range(&s, 0, 9));
            else
                snprintf(r->key, sizeof r->key, "k%d_%d", p, (int)in_range(&s, 0, 4));
            r->ts = ts;
            r->part = p;
            r->cwm = max == INT64_MIN ? INT64_MIN : max - OOO - 1;
            /* records the decoder skips (shared keys, process case) carry no event time for
             * the source: they do not advance the partition's watermark */
            if (cur_case != CASE_PROCESS || r->key[0] != 's')
                max = ts > max ? ts : max;
            snprintf(r->line, sizeof r->line,
                     "{\"k\":\"%.15s\",\"t\":%" PRId64 ",\"p\":%d,\"i\":%d}", r->key, ts, p, i);
        }
    }
}

/* ---- a partitioned in-memory source: random chunks from random owned partitions -------- */

typedef struct mem_reader {
    kp_source_reader r;
    int owned[NPART], nowned;
    int pos[NPART];
    uint64_t rng;
    int polls;
} mem_reader;

static int remaining(const mem_reader *m, int p)
{
    return m->pos[p] < nrec[p];
}

static kp_poll_rc mem_poll(kp_source_reader *r, kp_raw *out, int max, int *n, int timeout_ms,
                           char *errstr, size_t errlen)
{
    mem_reader *m = (mem_reader *)r;
    int cand[NPART], nc = 0, left = 0;
    m->polls++;
    for (int i = 0; i < m->nowned; i++) {
        int p = m->owned[i];
        if (!remaining(m, p))
            continue;
        left++;
        if (p == 3 && m->polls < 40)
            continue; /* partition 3 starts late */
        cand[nc++] = p;
    }
    *n = 0;
    if (!left)
        return KP_POLL_EOF;
    if (!nc)
        return KP_POLL_EMPTY;
    int p = cand[rng_of(&m->rng) % (uint64_t)nc];
    int k = 1 + (int)(rng_of(&m->rng) % 9);
    for (; *n < k && *n < max && remaining(m, p); (*n)++, m->pos[p]++) {
        const rec *x = &input[p][m->pos[p]];
        out[*n] = (kp_raw){.key = {"", 0},
                           .value = {x->line, strlen(x->line)},
                           .ts = KP_TIME_MIN,
                           .partition = p,
                           .offset = m->pos[p]};
    }
    return KP_POLL_RECORDS;
}

static int mem_partitions(kp_source_reader *r, int32_t *out, int max)
{
    mem_reader *m = (mem_reader *)r;
    int n = 0;
    for (int i = 0; i < m->nowned && n < max; i++)
        out[n++] = m->owned[i];
    return n;
}

static int mem_ended(kp_source_reader *r, int32_t p)
{
    mem_reader *m = (mem_reader *)r;
    return p >= 0 && p < NPART && !remaining(m, p);
}

static void mem_close(kp_source_reader *r)
{
    free(r);
}

static kp_source_reader *mem_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    mem_reader *m = calloc(1, sizeof *m);
    char buf[32];
    const char *seed = kp_endpoint_get(ep, "seed", buf, sizeof buf);
    m->rng =
        (seed ? strtoull(seed, NULL, 10) : 1) * 0x9e3779b97f4a7c15ull + (uint64_t)ep->subtask + 1;
    for (int p = 0; p < NPART; p++)
        if (p % ep->parallelism == ep->subtask)
            m->owned[m->nowned++] = p;
    m->r.poll = mem_poll;
    m->r.close = mem_close;
    m->r.partitions = mem_partitions;
    m->r.ended = mem_ended;
    m->r.caught_up = mem_ended;
    return &m->r;
}

/* ---- a collecting sink: every document, in the order each writer wrote them -------------- */

typedef struct doc_list {
    char **lines;
    size_t n, cap;
} doc_list;

static doc_list collected[2]; /* [0] results, [1] late records */
static pthread_mutex_t collect_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct collect_writer {
    kp_sink_writer w;
    doc_list *to;
} collect_writer;

static int collect_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                         size_t errlen)
{
    doc_list *l = ((collect_writer *)w)->to;
    char *line = malloc(id.len + doc.len + 2);
    cr_assert(line);
    memcpy(line, id.ptr, id.len);
    line[id.len] = '\t';
    memcpy(line + id.len + 1, doc.ptr, doc.len);
    line[id.len + 1 + doc.len] = 0;
    pthread_mutex_lock(&collect_lock);
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->lines = realloc(l->lines, l->cap * sizeof *l->lines);
    }
    l->lines[l->n++] = line;
    pthread_mutex_unlock(&collect_lock);
    return 0;
}

static int collect_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    return 0;
}

static void collect_close(kp_sink_writer *w)
{
    free(w);
}

static kp_sink_writer *collect_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    collect_writer *c = calloc(1, sizeof *c);
    c->to = &collected[strstr(ep->uri, "late") ? 1 : 0];
    c->w.write = collect_write;
    c->w.flush = collect_flush;
    c->w.close = collect_close;
    return &c->w;
}

static void reset_collected(void)
{
    for (int i = 0; i < 2; i++) {
        for (size_t j = 0; j < collected[i].n; j++)
            free(collected[i].lines[j]);
        collected[i].n = 0;
    }
}

/* ---- the jobs ------------------------------------------------------------------------------ */

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str k = kp_json_str(&j, "k");
    int64_t t = kp_json_int(&j, "t", INT64_MIN);
    if (k.len == 0 || t == INT64_MIN)
        return KP_BAD_INPUT;
    if (cur_case == CASE_PROCESS && k.ptr[0] == 's')
        return KP_SKIP; /* timers are deterministic for keys of one partition */
    kp_event_key(ev, k);
    kp_event_time(ev, t);
    return KP_OK;
}

static void emit_count(kp_doc *doc, const kp_window *w, kp_str key, int64_t count)
{
    kp_doc_id(doc, "%.*s|%" PRId64 "|%" PRId64, KP_STR(key), w->start, w->end);
    kp_doc_int(doc, "c", count);
}

static kp_rc on_event(kp_ctx *ctx, const kp_event *ev)
{
    bool exists;
    int64_t *count = kp_ctx_value(ctx, &exists);
    ++*count;
    kp_ctx_timer_event(ctx, kp_event_get_time(ev) + 1000);
    return KP_OK;
}

static kp_rc on_timer(kp_ctx *ctx, kp_time when, bool event_time)
{
    bool exists;
    int64_t *count = kp_ctx_value(ctx, &exists);
    kp_doc *doc = kp_ctx_emit(ctx);
    kp_str key = kp_ctx_key(ctx);
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), when);
    kp_doc_int(doc, "c", *count);
    kp_ctx_emit_done(ctx, doc);
    return KP_OK;
}

static const kp_time LATENESS[NCASES] = {0, 500, 0, 0};

static int define(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_stream *src = kp_source(job, "in", .decode = decode, .out_of_order = OOO);
    kp_stream *keyed = kp_key_by(src);
    if (cur_case == CASE_PROCESS) {
        kp_sink(kp_process(keyed, .value_size = sizeof(int64_t), .key_in_one_partition = true,
                           .on_event = on_event, .on_timer = on_timer),
                "out");
        return 0;
    }
    kp_window_spec spec = cur_case == CASE_TUMBLING  ? kp_tumbling(1000)
                          : cur_case == CASE_SLIDING ? kp_sliding(3000, 1000)
                                                     : kp_session(700);
    kp_windowed *w = kp_window(keyed, spec, .allowed_lateness = LATENESS[cur_case]);
    kp_sink(kp_count(w, .emit = emit_count), "out");
    kp_sink(kp_late_records(w), "late");
    return 0;
}

/* ---- the reference -------------------------------------------------------------------------- */

typedef struct out_set {
    char **lines; /* sorted "id\tjson" (final value per id) */
    size_t n;
    char **late; /* sorted raw lines */
    size_t nlate;
} out_set;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void push(char ***v, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *v = realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = strdup(s);
}

typedef struct wkey {
    char key[16];
    int64_t start, end, count;
} wkey;

static int cmp_wkey(const void *a, const void *b)
{
    const wkey *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* Window (start, end) pairs with count, summed; then "id\tjson" lines. */
static void windows_to_lines(wkey *w, size_t n, out_set *o)
{
    qsort(w, n, sizeof *w, cmp_wkey);
    size_t cap = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int64_t c = 0;
        while (j < n && !cmp_wkey(&w[i], &w[j]))
            c += w[j++].count;
        char line[128];
        snprintf(line, sizeof line, "%s|%" PRId64 "|%" PRId64 "\t{\"c\":%" PRId64 "}", w[i].key,
                 w[i].start, w[i].end, c);
        push(&o->lines, &o->n, &cap, line);
        i = j;
    }
    qsort(o->lines, o->n, sizeof *o->lines, cmp_str); /* compared as the engine's: bytes */
}

static void reference_windows(out_set *o)
{
    size_t cap = 0, n = 0, lcap = 0;
    wkey *w = NULL;
    kp_time L = LATENESS[cur_case];
    for (int p = 0; p < NPART; p++)
        for (int i = 0; i < nrec[p]; i++) {
            const rec *r = &input[p][i];
            int64_t size = cur_case == CASE_TUMBLING ? 1000 : 3000, slide = 1000;
            int counted = 0;
            for (int64_t end = floor_div(r->ts, slide) * slide + slide; end - size <= r->ts;
                 end += slide) {
                if (end - 1 + L <= r->cwm)
                    continue;
                if (n == cap)
                    w = realloc(w, (cap = cap ? 2 * cap : 1024) * sizeof *w);
                w[n] = (wkey){.start = end - size, .end = end, .count = 1};
                memcpy(w[n++].key, r->key, sizeof r->key);
                counted = 1;
            }
            if (!counted)
                push(&o->late, &o->nlate, &lcap, r->line);
        }
    windows_to_lines(w, n, o);
    free(w);
}

static void reference_sessions(out_set *o)
{
    size_t cap = 0, n = 0, lcap = 0;
    wkey *acc = NULL; /* accepted records as (key, ts) */
    for (int p = 0; p < NPART; p++)
        for (int i = 0; i < nrec[p]; i++) {
            const rec *r = &input[p][i];
            if (r->ts - 1 + LATENESS[cur_case] <= r->cwm) {
                push(&o->late, &o->nlate, &lcap, r->line);
                continue;
            }
            if (n == cap)
                acc = realloc(acc, (cap = cap ? 2 * cap : 1024) * sizeof *acc);
            acc[n] = (wkey){.start = r->ts, .end = r->ts};
            memcpy(acc[n++].key, r->key, sizeof r->key);
        }
    qsort(acc, n, sizeof *acc, cmp_wkey);
    wkey *s = calloc(n + 1, sizeof *s);
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        wkey *last = ns ? &s[ns - 1] : NULL;
        if (last && !strcmp(last->key, acc[i].key) && acc[i].start <= last->end) {
            last->end = acc[i].start + 700 > last->end ? acc[i].start + 700 : last->end;
            last->count++;
        } else {
            s[ns] = (wkey){.start = acc[i].start, .end = acc[i].start + 700, .count = 1};
            memcpy(s[ns++].key, acc[i].key, sizeof acc->key);
        }
    }
    windows_to_lines(s, ns, o);
    free(s);
    free(acc);
}

/* Per key (records of one partition, in order): a timer at t fires before the first record
 * whose carried watermark is >= t, and at the end of input; each firing reports the count so
 * far. */
static void reference_process(out_set *o)
{
    size_t cap = 0;
    for (int p = 0; p < NPART; p++)
        for (int k = 0; k < 5; k++) {
            char key[16];
            snprintf(key, sizeof key, "k%d_%d", p, k);
            int64_t timers[PERPART], count = 0;
            int nt = 0;
            for (int i = 0; i <= nrec[p]; i++) {
                const rec *r = i < nrec[p] ? &input[p][i] : NULL;
                if (r && strcmp(r->key, key))
                    continue;
                int64_t upto = r ? r->cwm : INT64_MAX;
                for (;;) { /* the earliest due timer, one at a time */
                    int best = -1;
                    for (int t = 0; t < nt; t++)
                        if (timers[t] <= upto && (best < 0 || timers[t] < timers[best]))
                            best = t;
                    if (best < 0)
                        break;
                    char line[128];
                    snprintf(line, sizeof line, "%s|%" PRId64 "\t{\"c\":%" PRId64 "}", key,
                             timers[best], count);
                    push(&o->lines, &o->n, &cap, line);
                    timers[best] = timers[--nt];
                }
                if (!r)
                    break;
                count++;
                int dup = 0;
                for (int t = 0; t < nt; t++)
                    dup |= timers[t] == r->ts + 1000;
                if (!dup)
                    timers[nt++] = r->ts + 1000;
            }
        }
    qsort(o->lines, o->n, sizeof *o->lines, cmp_str);
}

/* ---- running and comparing --------------------------------------------------------------- */

static void free_set(out_set *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->lines[i]);
    for (size_t i = 0; i < o->nlate; i++)
        free(o->late[i]);
    free(o->lines);
    free(o->late);
    memset(o, 0, sizeof *o);
}

/* The final document per id (the last one written for it), sorted; the late lines, sorted.
 * With allowed lateness 0 every id must have been written exactly once. */
static void result_of(out_set *o, int once, const char *what)
{
    doc_list *l = &collected[0];
    size_t cap = 0, lcap = 0;
    char **last = calloc(l->n + 1, sizeof *last);
    size_t n = 0;
    for (size_t i = l->n; i-- > 0;) { /* newest first: keep the first seen per id */
        const char *tab = strchr(l->lines[i], '\t');
        size_t idlen = (size_t)(tab - l->lines[i]);
        int seen = 0;
        for (size_t j = 0; j < n && !seen; j++)
            seen = !strncmp(last[j], l->lines[i], idlen + 1);
        if (seen)
            cr_assert(!once, "%s: id %.*s emitted more than once with allowed lateness 0", what,
                      (int)idlen, l->lines[i]);
        else
            last[n++] = l->lines[i];
    }
    for (size_t i = 0; i < n; i++)
        push(&o->lines, &o->n, &cap, last[i]);
    free(last);
    qsort(o->lines, o->n, sizeof *o->lines, cmp_str);
    for (size_t i = 0; i < collected[1].n; i++) /* late records: the raw line after the key */
        push(&o->late, &o->nlate, &lcap, strchr(collected[1].lines[i], '\t') + 1);
    if (o->nlate)
        qsort(o->late, o->nlate, sizeof *o->late, cmp_str);
}

static void expect_equal(const out_set *want, const out_set *got, const char *what)
{
    for (size_t i = 0; i < want->n || i < got->n; i++) {
        const char *a = i < want->n ? want->lines[i] : "(none)";
        const char *b = i < got->n ? got->lines[i] : "(none)";
        cr_assert(!strcmp(a, b), "%s: result %zu differs: want %s, got %s (%zu vs %zu results)",
                  what, i, a, b, want->n, got->n);
    }
    for (size_t i = 0; i < want->nlate || i < got->nlate; i++) {
        const char *a = i < want->nlate ? want->late[i] : "(none)";
        const char *b = i < got->nlate ? got->late[i] : "(none)";
        cr_assert(!strcmp(a, b), "%s: late record %zu differs: want %s, got %s", what, i, a, b);
    }
}

static void run(int p, uint64_t seed, int threaded, out_set *out)
{
    char what[160];
    snprintf(what, sizeof what, "%s p=%d %s seed=%" PRIu64, case_names[cur_case], p,
             threaded ? "threads" : "scheduler", seed);
    static int registered;
    if (!registered) {
        static const kp_connector mem = {"mem", mem_open, NULL};
        static const kp_connector col = {"collect", NULL, collect_open};
        kp_connector_register(&mem);
        kp_connector_register(&col);
        registered = 1;
    }
    reset_collected();
    if (getenv("KAPPA_TEST_VERBOSE"))
        fprintf(stderr, "run %s\n", what);
    kp_job *job = kp_job_new("determinism");
    job->parallelism_override = p;
    char err[1024] = "", src[64];
    cr_assert_eq(kp_job_define(job, define, err, sizeof err), 0, "%s: %s", what, err);
    snprintf(src, sizeof src, "mem:x?seed=%" PRIu64, seed);
    kp_binding bind[] = {{.name = "in", .uri = src},
                         {.name = "out", .uri = "collect:out"},
                         {.name = "late", .uri = "collect:late"}};
    kp_exec_config cfg = {.bindings = bind,
                          .nbindings = 3,
                          .state_dir = "/tmp",
                          .watermark_every = 1 + (int)(seed % 5),
                          .step_seed = threaded ? 0 : seed};
    kp_exec_stats st;
    int rc = kp_exec_run(job, &cfg, &st, err, sizeof err);
    kp_job_free(job);
    cr_assert_eq(rc, 0, "%s: run failed: %s", what, err);
    result_of(out, LATENESS[cur_case] == 0, what);
    if (cur_case != CASE_PROCESS)
        cr_assert_eq((size_t)st.late_records, out->nlate, "%s: %lld late counted, %zu sent", what,
                     st.late_records, out->nlate);
}

static uint64_t extra_seed(void)
{
    const char *e = getenv("KAPPA_TEST_SEED");
    if (e)
        return strtoull(e, NULL, 10);
    static uint64_t s;
    if (!s) {
        FILE *f = fopen("/dev/urandom", "rb");
        if (!f || fread(&s, sizeof s, 1, f) != 1)
            s = 12345;
        if (f)
            fclose(f);
        s = s % 1000000000 + 1;
    }
    return s;
}

static void check_case(int c)
{
    cur_case = c;
    make_input();
    out_set want = {0};
    if (c == CASE_SESSION)
        reference_sessions(&want);
    else if (c == CASE_PROCESS)
        reference_process(&want);
    else
        reference_windows(&want);
    if (want.nlate)
        qsort(want.late, want.nlate, sizeof *want.late, cmp_str);
    cr_assert_gt(want.n, 10, "the reference has too few results");
    if (c != CASE_PROCESS)
        cr_assert_gt(want.nlate, 5, "the input has too few late records");
    uint64_t fresh = extra_seed();
    fprintf(stderr, "determinism %s: fixed seeds 1..50 and fresh seed %" PRIu64 "..+3\n",
            case_names[c], fresh);
    for (int p = 1; p <= 4; p++) {
        for (uint64_t s = 1; s <= 54; s++) { /* 50 fixed seeds, 4 fresh ones: 216 per case */
            uint64_t seed = s <= 50 ? s * 7919 : fresh + s - 51;
            out_set got = {0};
            run(p, seed, 0, &got);
            char what[160];
            snprintf(what, sizeof what,
                     "%s p=%d seed=%" PRIu64 " (rerun: KAPPA_TEST_SEED=%" PRIu64 ")", case_names[c],
                     p, seed, seed);
            expect_equal(&want, &got, what);
            free_set(&got);
        }
        out_set got = {0};
        run(p, 1, 1, &got);
        char what[64];
        snprintf(what, sizeof what, "%s p=%d threads", case_names[c], p);
        expect_equal(&want, &got, what);
        free_set(&got);
    }
    free_set(&want);
    reset_collected();
}

Test(determinism, tumbling_windows)
{
    check_case(CASE_TUMBLING);
}

Test(determinism, sliding_windows_with_lateness)
{
    check_case(CASE_SLIDING);
}

Test(determinism, session_windows)
{
    check_case(CASE_SESSION);
}

Test(determinism, process_function_timers)
{
    check_case(CASE_PROCESS);
}
