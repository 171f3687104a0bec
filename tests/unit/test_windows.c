/* Event-time windows against a brute-force reference.
 *
 * Each case generates random out-of-order NDJSON input ({"k":"key_17","t":12345,"v":-3,
 * "i":42}), runs a job built in-process (source with parallelism 1, key_by with parallelism 1,
 * window + aggregate at the job parallelism P in 1..4) through kp_exec_run with file bindings,
 * and compares the sink's documents and the late side output with a reference that applies
 * Flink's semantics record by record:
 *
 *   - window [start, end); a window fires when the watermark reaches end - 1;
 *   - watermark = max_ts - out_of_order - 1, emitted after every record (watermark_every = 1),
 *     so a record is judged against the watermark from before it;
 *   - a record is late (counted, sent to the late side output) when every window containing
 *     it has end - 1 + allowed_lateness <= watermark; otherwise it is added to the windows
 *     that are not past their lateness, and each of those whose end - 1 <= watermark fires
 *     again at once with the updated value;
 *   - sessions [ts, ts + gap) merge when they touch or overlap; a merged session fires when
 *     the watermark reaches its (new) end - 1;
 *   - at the end of input the watermark goes to +inf and everything fires.
 *
 * Outputs are compared as sequences of (key, window_start, window_end, value) per document
 * id ("key|window_end"): both the last value per id and every firing. Seeds are random per
 * run (KAPPA_TEST_SEED=N reproduces one) and every assertion message names the seed. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "connectors.h"
#include "exec.h"
#include "graph.h"

/* ---- random numbers ------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi] */
static int64_t rnd_in(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static uint64_t base_seed(void)
{
    const char *s = getenv("KAPPA_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) % 1000000007u;
}

/* ---- the case under test ----------------------------------------------------------------- */

enum { AGG_COUNT, AGG_SUM, AGG_MIN, AGG_MAX, AGG_CUSTOM };
static const char *agg_names[] = {"count", "sum", "min", "max", "custom"};

typedef struct case_cfg {
    kp_window_spec spec;
    int agg;
    kp_time lateness, ooo;
    int parallelism;
    size_t cache_bytes; /* 0 = default; small = window panes spill to RocksDB */
    int nrec, nkeys;
    kp_time step_max, disorder, jump; /* input shape */
} case_cfg;

static case_cfg g; /* the define function has no user pointer: the case is global */
static const struct rec *fixed_recs; /* set: run these records instead of random ones */

typedef struct rec {
    int key;
    int64_t t, v;
} rec;

typedef struct custom_acc {
    int64_t count, sum, min_t, max_t;
} custom_acc;

static int64_t parse_key(kp_str s)
{
    if (s.len < 5 || memcmp(s.ptr, "key_", 4) != 0)
        return -1;
    int64_t k = 0;
    for (size_t i = 4; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -1;
        k = k * 10 + (s.ptr[i] - '0');
    }
    return k;
}

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str k = kp_json_str(&j, "k");
    int64_t t = kp_json_int(&j, "t", INT64_MIN);
    if (k.len == 0 || t == INT64_MIN)
        return KP_BAD_INPUT;
    kp_event_key(ev, k);
    kp_event_time(ev, t);
    return KP_OK; /* the value stays the raw line: the late output writes it back */
}

static int64_t value_of(const kp_event *ev)
{
    kp_json j;
    if (kp_json_parse(&j, kp_event_get_value(ev)) != 0)
        return 0;
    return kp_json_int(&j, "v", 0);
}

static void c_init(void *acc)
{
    custom_acc *a = acc;
    *a = (custom_acc){0, 0, INT64_MAX, INT64_MIN};
}

static void c_add(void *acc, const kp_event *ev)
{
    custom_acc *a = acc;
    kp_time t = kp_event_get_time(ev);
    a->count++;
    a->sum += value_of(ev);
    a->min_t = t < a->min_t ? t : a->min_t;
    a->max_t = t > a->max_t ? t : a->max_t;
}

static void c_merge(void *acc, const void *other)
{
    custom_acc *a = acc;
    const custom_acc *b = other;
    a->count += b->count;
    a->sum += b->sum;
    a->min_t = b->min_t < a->min_t ? b->min_t : a->min_t;
    a->max_t = b->max_t > a->max_t ? b->max_t : a->max_t;
}

static void c_emit(kp_doc *doc, const kp_window *w, kp_str key, const void *acc)
{
    const custom_acc *a = acc;
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), w->end);
    kp_doc_str(doc, "key", key);
    kp_doc_int(doc, "window_start", w->start);
    kp_doc_int(doc, "window_end", w->end);
    kp_doc_int(doc, "count", a->count);
    kp_doc_int(doc, "sum", a->sum);
    kp_doc_int(doc, "min_t", a->min_t);
    kp_doc_int(doc, "max_t", a->max_t);
}

static int define_case(const kp_api *api, kp_job *job)
{
    (void)api; /* the host's kp__api is already bound */
    kp_stream *src =
        kp_source(job, "clicks", .decode = decode, .out_of_order = g.ooo, .parallelism = 1);
    kp_windowed *w =
        kp_window(kp_key_by(src, .parallelism = 1), g.spec, .allowed_lateness = g.lateness);
    kp_stream *out = NULL;
    switch (g.agg) {
    case AGG_COUNT:
        out = kp_count(w);
        break;
    case AGG_SUM:
        out = kp_sum(w, .value = value_of);
        break;
    case AGG_MIN:
        out = kp_min(w, .value = value_of);
        break;
    case AGG_MAX:
        out = kp_max(w, .value = value_of);
        break;
    default:
        out = kp_aggregate(w, .acc_size = sizeof(custom_acc), .init = c_init, .add = c_add,
                           .merge = c_merge, .emit_acc = c_emit);
    }
    kp_sink(out, "out");
    kp_sink(kp_late_records(w), "late");
    return 0;
}

/* ---- emissions ----------------------------------------------------------------------------- */

typedef struct emission {
    int64_t key, start, end;
    int64_t val[4];
    int ord; /* firing number of this id (key, end), in emission order */
} emission;

typedef struct emissions {
    emission *e;
    size_t n, cap;
} emissions;

static void em_push(emissions *es, int64_t key, int64_t start, int64_t end, const int64_t *val)
{
    if (es->n == es->cap) {
        es->cap = es->cap ? es->cap * 2 : 1024;
        es->e = realloc(es->e, es->cap * sizeof *es->e);
        cr_assert(es->e);
    }
    emission *x = &es->e[es->n++];
    *x = (emission){key, start, end, {0, 0, 0, 0}, 0};
    memcpy(x->val, val, sizeof x->val);
}

static int cmp_id_seq(const void *a, const void *b)
{
    const emission *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->ord > y->ord) - (x->ord < y->ord);
}

/* Sorts by id keeping emission order within an id (stable: ord is set from the input order
 * first), and numbers the firings of each id. */
static void em_canon(emissions *es)
{
    for (size_t i = 0; i < es->n; i++)
        es->e[i].ord = (int)i;
    qsort(es->e, es->n, sizeof *es->e, cmp_id_seq);
    for (size_t i = 0; i < es->n; i++)
        es->e[i].ord = i && es->e[i - 1].key == es->e[i].key && es->e[i - 1].end == es->e[i].end
                           ? es->e[i - 1].ord + 1
                           : 0;
}

/* The last firing of each id, in place. */
static void em_last(emissions *es, emissions *out)
{
    out->n = 0;
    for (size_t i = 0; i < es->n; i++)
        if (i + 1 == es->n || es->e[i + 1].key != es->e[i].key || es->e[i + 1].end != es->e[i].end)
            em_push(out, es->e[i].key, es->e[i].start, es->e[i].end, es->e[i].val);
}

static int em_eq(const emission *a, const emission *b, int nval)
{
    return a->key == b->key && a->start == b->start && a->end == b->end &&
           !memcmp(a->val, b->val, (size_t)nval * sizeof a->val[0]);
}

static const char *em_show(const emission *x, int nval, char *buf, size_t len)
{
    if (!x)
        return "(none)";
    int o = snprintf(buf, len, "key_%" PRId64 " [%" PRId64 ",%" PRId64 ") #%d value", x->key,
                     x->start, x->end, x->ord);
    for (int i = 0; i < nval; i++)
        o += snprintf(buf + o, len - (size_t)o, " %" PRId64, x->val[i]);
    return buf;
}

/* ---- the reference --------------------------------------------------------------------- */

static int nval_of(int agg)
{
    return agg == AGG_CUSTOM ? 4 : 1;
}

static void acc_init(int64_t *a)
{
    switch (g.agg) {
    case AGG_MIN:
        a[0] = INT64_MAX;
        break;
    case AGG_MAX:
        a[0] = INT64_MIN;
        break;
    case AGG_CUSTOM:
        a[0] = a[1] = 0;
        a[2] = INT64_MAX;
        a[3] = INT64_MIN;
        break;
    default:
        a[0] = 0;
    }
}

static void acc_add(int64_t *a, const rec *r)
{
    switch (g.agg) {
    case AGG_COUNT:
        a[0]++;
        break;
    case AGG_SUM:
        a[0] += r->v;
        break;
    case AGG_MIN:
        a[0] = r->v < a[0] ? r->v : a[0];
        break;
    case AGG_MAX:
        a[0] = r->v > a[0] ? r->v : a[0];
        break;
    default:
        a[0]++;
        a[1] += r->v;
        a[2] = r->t < a[2] ? r->t : a[2];
        a[3] = r->t > a[3] ? r->t : a[3];
    }
}

static void acc_merge(int64_t *a, const int64_t *b)
{
    switch (g.agg) {
    case AGG_COUNT:
    case AGG_SUM:
        a[0] += b[0];
        break;
    case AGG_MIN:
        a[0] = b[0] < a[0] ? b[0] : a[0];
        break;
    case AGG_MAX:
        a[0] = b[0] > a[0] ? b[0] : a[0];
        break;
    default:
        a[0] += b[0];
        a[1] += b[1];
        a[2] = b[2] < a[2] ? b[2] : a[2];
        a[3] = b[3] > a[3] ? b[3] : a[3];
    }
}

/* A (key, window) of the reference, in an open-addressing table; sessions reuse it keyed by
 * (key, end) with start, alive and pending flags. */
typedef struct rwin {
    int64_t key, start, end;
    int64_t acc[4];
    int used, alive, pending;
} rwin;

typedef struct rtable {
    rwin *w;
    size_t cap;
} rtable;

static uint64_t hash2(int64_t a, int64_t b)
{
    uint64_t h = (uint64_t)a * 0x9E3779B97F4A7C15ull ^ ((uint64_t)b + 0x632BE59BD9B4E019ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static rwin *rt_get(rtable *t, int64_t key, int64_t end, int create)
{
    size_t i = hash2(key, end) & (t->cap - 1);
    while (t->w[i].used) {
        if (t->w[i].key == key && t->w[i].end == end)
            return &t->w[i];
        i = (i + 1) & (t->cap - 1);
    }
    if (!create)
        return NULL;
    t->w[i] = (rwin){.key = key, .end = end, .used = 1};
    return &t->w[i];
}

/* timers: (end, key) min-heap by end */
typedef struct rtimer {
    int64_t end, key;
} rtimer;

typedef struct rheap {
    rtimer *h;
    size_t n, cap;
} rheap;

static void rh_push(rheap *h, int64_t end, int64_t key)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->h = realloc(h->h, h->cap * sizeof *h->h);
        cr_assert(h->h);
    }
    size_t i = h->n++;
    while (i > 0 && h->h[(i - 1) / 2].end > end) {
        h->h[i] = h->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->h[i] = (rtimer){end, key};
}

static rtimer rh_pop(rheap *h)
{
    rtimer top = h->h[0], last = h->h[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->h[c + 1].end < h->h[c].end)
            c++;
        if (last.end <= h->h[c].end)
            break;
        h->h[i] = h->h[c];
        i = c;
    }
    if (h->n)
        h->h[i] = last;
    return top;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* late: 1 for each late record (indexes into recs) */
static void reference(const rec *recs, int n, emissions *out, char *late, long long *nlate)
{
    const int nval = nval_of(g.agg);
    rtable t = {calloc(1u << 15, sizeof(rwin)), 1u << 15};
    cr_assert(t.w);
    rheap h = {0};
    int64_t wm = INT64_MIN, max_ts = INT64_MIN;
    *nlate = 0;
    /* sessions: per key, the ends of its live sessions (few per key) */
    int64_t **sess = NULL;
    int *nsess = NULL;
    if (g.spec.kind == KP_WINDOW_SESSION) {
        sess = calloc((size_t)g.nkeys, sizeof *sess);
        nsess = calloc((size_t)g.nkeys, sizeof *nsess);
    }
    for (int i = 0; i <= n; i++) {
        int64_t newwm;
        if (i < n) {
            const rec *r = &recs[i];
            late[i] = 0;
            if (g.spec.kind != KP_WINDOW_SESSION) {
                int64_t size = g.spec.size;
                int64_t slide = g.spec.kind == KP_WINDOW_TUMBLING ? size : g.spec.slide;
                int64_t first = floor_div(r->t, slide) * slide + slide;
                int any = 0;
                for (int64_t e = first; e - size <= r->t; e += slide)
                    any |= e - 1 + g.lateness > wm;
                if (!any) {
                    late[i] = 1;
                    ++*nlate;
                } else {
                    for (int64_t e = first; e - size <= r->t; e += slide) {
                        if (e - 1 + g.lateness <= wm)
                            continue; /* this window is past its lateness */
                        rwin *w = rt_get(&t, r->key, e, 1);
                        if (!w->alive) {
                            *w = (rwin){
                                .key = r->key, .start = e - size, .end = e, .used = 1, .alive = 1};
                            acc_init(w->acc);
                            if (e - 1 > wm) {
                                w->pending = 1;
                                rh_push(&h, e, r->key);
                            }
                        }
                        acc_add(w->acc, r);
                        if (e - 1 <= wm) /* already fired: fire again */
                            em_push(out, r->key, w->start, w->end, w->acc);
                    }
                }
            } else {
                int64_t start = r->t, end = r->t + g.spec.gap;
                int64_t *ends = sess[r->key];
                int ns = nsess[r->key];
                /* drop sessions past their lateness (fired by now) */
                for (int s = 0; s < ns;) {
                    if (ends[s] - 1 + g.lateness <= wm) {
                        rt_get(&t, r->key, ends[s], 0)->alive = 0;
                        ends[s] = ends[--ns];
                    } else {
                        s++;
                    }
                }
                for (int s = 0; s < ns; s++) {
                    rwin *x = rt_get(&t, r->key, ends[s], 0);
                    if (x->start <= end && x->end >= start) {
                        start = x->start < start ? x->start : start;
                        end = x->end > end ? x->end : end;
                    }
                }
                if (end - 1 + g.lateness <= wm) {
                    late[i] = 1;
                    ++*nlate;
                } else {
                    int64_t acc[4];
                    acc_init(acc);
                    acc_add(acc, r);
                    for (int s = 0; s < ns;) {
                        rwin *x = rt_get(&t, r->key, ends[s], 0);
                        if (x->start <= end && x->end >= start) {
                            acc_merge(acc, x->acc);
                            x->alive = 0;
                            ends[s] = ends[--ns];
                        } else {
                            s++;
                        }
                    }
                    rwin *m = rt_get(&t, r->key, end, 1);
                    *m = (rwin){.key = r->key, .start = start, .end = end, .used = 1, .alive = 1};
                    memcpy(m->acc, acc, sizeof acc);
                    ends = realloc(ends, (size_t)(ns + 1) * sizeof *ends);
                    ends[ns++] = end;
                    sess[r->key] = ends;
                    if (end - 1 <= wm) {
                        em_push(out, r->key, start, end, m->acc);
                    } else {
                        m->pending = 1;
                        rh_push(&h, end, r->key);
                    }
                }
                nsess[r->key] = ns;
            }
            max_ts = r->t > max_ts ? r->t : max_ts;
            newwm = max_ts - g.ooo - 1;
        } else {
            newwm = INT64_MAX;
        }
        if (newwm <= wm)
            continue;
        wm = newwm;
        while (h.n && h.h[0].end - 1 <= wm) {
            rtimer tm = rh_pop(&h);
            rwin *w = rt_get(&t, tm.key, tm.end, 0);
            if (w && w->alive && w->pending) {
                w->pending = 0;
                em_push(out, w->key, w->start, w->end, w->acc);
            }
        }
    }
    (void)nval;
    if (sess) {
        for (int k = 0; k < g.nkeys; k++)
            free(sess[k]);
        free(sess);
        free(nsess);
    }
    free(t.w);
    free(h.h);
}

/* ---- running the engine ------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static char tmpdir[256];

static void make_tmpdir(void)
{
    if (tmpdir[0])
        return;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kappa-test-windows-XXXXXX");
    cr_assert(mkdtemp(tmpdir), "mkdtemp failed");
}

static void rm_tmpdir(void)
{
    if (!tmpdir[0])
        return;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    tmpdir[0] = '\0';
}

static const char *describe(uint64_t seed, char *buf, size_t len)
{
    const kp_window_spec *s = &g.spec;
    char w[64];
    if (s->kind == KP_WINDOW_TUMBLING)
        snprintf(w, sizeof w, "tumbling(%" PRId64 ")", s->size);
    else if (s->kind == KP_WINDOW_SLIDING)
        snprintf(w, sizeof w, "sliding(%" PRId64 ",%" PRId64 ")", s->size, s->slide);
    else
        snprintf(w, sizeof w, "session(%" PRId64 ")", s->gap);
    snprintf(buf, len,
             "seed %" PRIu64 " (rerun with KAPPA_TEST_SEED=%" PRIu64 "): %s %s lateness=%" PRId64
             " ooo=%" PRId64 " P=%d nrec=%d nkeys=%d cache=%zu step<=%" PRId64 " disorder<=%" PRId64
             " jump=%" PRId64,
             seed, seed, w, agg_names[g.agg], g.lateness, g.ooo, g.parallelism, g.nrec, g.nkeys,
             g.cache_bytes, g.step_max, g.disorder, g.jump);
    return buf;
}

/* Generates the input, runs the engine and the reference, compares. */
static void run_case(uint64_t seed)
{
    char what[512], a[256], b[256];
    describe(seed, what, sizeof what);
    make_tmpdir();
    char in_path[512], out_path[512], late_path[512], state_dir[512];
    snprintf(in_path, sizeof in_path, "%s/input.ndjson", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/out.ndjson", tmpdir);
    snprintf(late_path, sizeof late_path, "%s/late.ndjson", tmpdir);
    snprintf(state_dir, sizeof state_dir, "%s/state", tmpdir);
    mkdir(state_dir, 0755);

    /* input: time moves forward by up to step_max per record, now and then jumps ahead by
     * `jump`; each record's time lags the front by up to `disorder` */
    rec *recs = calloc((size_t)g.nrec, sizeof *recs);
    char *late = calloc((size_t)g.nrec + 1, 1);
    cr_assert(recs && late);
    FILE *f = fopen(in_path, "w");
    cr_assert(f, "%s: cannot write %s", what, in_path);
    int64_t front = 1000000 + rnd_in(0, 999);
    for (int i = 0; i < g.nrec; i++) {
        if (fixed_recs) { /* a hand-written case */
            recs[i] = fixed_recs[i];
        } else {
            front += rnd_in(0, g.step_max);
            if (g.jump && rnd() % 100 == 0)
                front += g.jump;
            int64_t t = front - (rnd() % 4 == 0 ? rnd_in(0, g.disorder) : rnd_in(0, g.ooo));
            /* skewed keys: half the records on a few hot keys */
            int key = rnd() % 2 ? (int)rnd_in(0, g.nkeys - 1) : (int)rnd_in(0, (g.nkeys - 1) / 50);
            recs[i] = (rec){key, t, rnd_in(-1000, 1000)};
        }
        int64_t t = recs[i].t;
        int key = recs[i].key;
        fprintf(f, "{\"k\":\"key_%d\",\"t\":%" PRId64 ",\"v\":%" PRId64 ",\"i\":%d}\n", key, t,
                recs[i].v, i);
        if (rnd() % 97 == 0)
            fputc('\n', f); /* empty lines are skipped */
    }
    fclose(f);

    /* the engine */
    kp_job *job = kp_job_new("windows");
    cr_assert(job);
    job->parallelism_override = g.parallelism;
    char err[1024] = "";
    cr_assert_eq(kp_job_define(job, define_case, err, sizeof err), 0, "%s: define: %s", what, err);
    kp_connectors_register_builtin();
    char in_uri[600], out_uri[600], late_uri[600];
    snprintf(in_uri, sizeof in_uri, "file:%s", in_path);
    snprintf(out_uri, sizeof out_uri, "file:%s", out_path);
    snprintf(late_uri, sizeof late_uri, "file:%s", late_path);
    kp_binding bind[] = {{.name = "clicks", .uri = in_uri},
                         {.name = "out", .uri = out_uri},
                         {.name = "late", .uri = late_uri}};
    kp_exec_config cfg = {.bindings = bind,
                          .nbindings = 3,
                          .state_dir = state_dir,
                          .state_cache_bytes = g.cache_bytes,
                          .watermark_every = 1};
    kp_exec_stats stats = {0};
    int rc = kp_exec_run(job, &cfg, &stats, err, sizeof err);
    kp_job_free(job);
    cr_assert_eq(rc, 0, "%s: run failed: %s", what, err);
    cr_assert_eq(stats.records_in, g.nrec, "%s: records_in %lld, expected %d", what,
                 stats.records_in, g.nrec);
    if (g.cache_bytes)
        cr_assert_gt(stats.state_spills, 0, "%s: the tiny state cache never spilled", what);
    if (getenv("KAPPA_TEST_VERBOSE"))
        fprintf(stderr, "%s: %lld windows fired, %lld late, %lld spills, %.3f s\n", what,
                stats.windows_fired, stats.late_records, stats.state_spills, stats.seconds);

    /* the reference */
    emissions want = {0}, got = {0};
    long long want_late;
    reference(recs, g.nrec, &want, late, &want_late);
    const int nval = nval_of(g.agg);

    /* the engine's documents */
    size_t len;
    char *text = slurp(out_path, &len);
    cr_assert(text, "%s: no output file", what);
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert(nl, "%s: unterminated output line", what);
        kp_json j;
        cr_assert_eq(kp_json_parse(&j, (kp_bytes){line, (size_t)(nl - line)}), 0,
                     "%s: output line is not JSON: %.*s", what, (int)(nl - line), line);
        int64_t key = parse_key(kp_json_str(&j, "key"));
        cr_assert(key >= 0, "%s: bad key in %.*s", what, (int)(nl - line), line);
        int64_t val[4] = {0, 0, 0, 0};
        if (g.agg == AGG_CUSTOM) {
            val[0] = kp_json_int(&j, "count", -1);
            val[1] = kp_json_int(&j, "sum", -1);
            val[2] = kp_json_int(&j, "min_t", -1);
            val[3] = kp_json_int(&j, "max_t", -1);
        } else {
            val[0] = kp_json_int(&j, "value", -1);
        }
        em_push(&got, key, kp_json_int(&j, "window_start", -1), kp_json_int(&j, "window_end", -1),
                val);
    }
    free(text);

    em_canon(&want);
    em_canon(&got);
    emissions want_last = {0}, got_last = {0};
    em_last(&want, &want_last);
    em_last(&got, &got_last);

    /* 1. the final value of every document id */
    for (size_t i = 0; i < want_last.n || i < got_last.n; i++) {
        const emission *x = i < want_last.n ? &want_last.e[i] : NULL;
        const emission *y = i < got_last.n ? &got_last.e[i] : NULL;
        cr_assert(x && y && em_eq(x, y, nval),
                  "%s: final documents differ at #%zu (of %zu expected, %zu got): expected %s, "
                  "got %s",
                  what, i, want_last.n, got_last.n, em_show(x, nval, a, sizeof a),
                  em_show(y, nval, b, sizeof b));
    }
    /* 2. every firing, in order per id (re-firings within allowed lateness) */
    for (size_t i = 0; i < want.n || i < got.n; i++) {
        const emission *x = i < want.n ? &want.e[i] : NULL;
        const emission *y = i < got.n ? &got.e[i] : NULL;
        cr_assert(x && y && em_eq(x, y, nval) && x->ord == y->ord,
                  "%s: firings differ at #%zu (of %zu expected, %zu got): expected %s, got %s",
                  what, i, want.n, got.n, em_show(x, nval, a, sizeof a),
                  em_show(y, nval, b, sizeof b));
    }

    /* 3. late records: the count and the side output's records */
    cr_assert_eq(stats.late_records, want_late, "%s: late_records %lld, expected %lld", what,
                 stats.late_records, want_late);
    text = slurp(late_path, &len);
    cr_assert(text, "%s: no late output file", what);
    char *seen = calloc((size_t)g.nrec, 1);
    long long nlate_out = 0;
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert(nl, "%s: unterminated late line", what);
        kp_json j;
        cr_assert_eq(kp_json_parse(&j, (kp_bytes){line, (size_t)(nl - line)}), 0,
                     "%s: late line is not the input record: %.*s", what, (int)(nl - line), line);
        int64_t i = kp_json_int(&j, "i", -1);
        cr_assert(i >= 0 && i < g.nrec && !seen[i], "%s: bad or repeated late record %.*s", what,
                  (int)(nl - line), line);
        seen[i] = 1;
        nlate_out++;
        cr_assert(late[i],
                  "%s: record %" PRId64 " (key_%d t=%" PRId64 ") went to the late "
                  "output but is not late",
                  what, i, recs[i].key, recs[i].t);
    }
    cr_assert_eq(nlate_out, want_late, "%s: %lld records on the late output, expected %lld", what,
                 nlate_out, want_late);
    free(text);
    free(seen);
    free(recs);
    free(late);
    free(want.e);
    free(got.e);
    free(want_last.e);
    free(got_last.e);
}

/* ---- properties -------------------------------------------------------------------------- */

#define SEEDS       20
#define SPILL_SEEDS 3 /* spilling every pane to RocksDB is slow */

/* Runs `SEEDS` random cases of one window/aggregate shape; `lateness` < 0 picks one per seed. */
static void property_ex(kp_window_spec spec, int agg, kp_time lateness, int spill)
{
    uint64_t base = base_seed();
    int nseeds = getenv("KAPPA_TEST_SEED") ? 1 : spill ? SPILL_SEEDS : SEEDS;
    for (int s = 0; s < nseeds; s++) {
        uint64_t seed = base + (uint64_t)s;
        rng_state = seed;
        g = (case_cfg){0};
        g.spec = spec;
        g.agg = agg;
        g.lateness = lateness >= 0 ? lateness : (rnd() % 3 == 0 ? 0 : rnd_in(1, 150));
        g.ooo = rnd_in(0, 40);
        g.parallelism = (int)rnd_in(1, 4);
        g.cache_bytes = spill ? 4096 : 0;
        static const int keys[] = {1, 3, 20, 200, 2000};
        g.nkeys = keys[rnd() % 5];
        g.nrec = spill ? (int)rnd_in(40, 120) : (int)rnd_in(200, 1500);
        g.step_max = rnd_in(1, 8);
        g.disorder = rnd_in(g.ooo, g.ooo + 300);
        g.jump = rnd() % 2 ? rnd_in(100, 2000) : 0;
        run_case(seed);
    }
    rm_tmpdir();
}

static void property(kp_window_spec spec, int agg, kp_time lateness)
{
    property_ex(spec, agg, lateness, 0);
}

Test(windows, tumbling_count)
{
    property(kp_tumbling(100), AGG_COUNT, 0);
}
Test(windows, tumbling_sum)
{
    property(kp_tumbling(70), AGG_SUM, 0);
}
Test(windows, tumbling_min)
{
    property(kp_tumbling(50), AGG_MIN, 0);
}
Test(windows, tumbling_max)
{
    property(kp_tumbling(100), AGG_MAX, 0);
}
Test(windows, tumbling_custom)
{
    property(kp_tumbling(100), AGG_CUSTOM, 0);
}
Test(windows, sliding_60_20_count)
{
    property(kp_sliding(60, 20), AGG_COUNT, 0);
}
Test(windows, sliding_50_20_sum)
{
    property(kp_sliding(50, 20), AGG_SUM, 0);
}
Test(windows, sliding_100_30_max)
{
    property(kp_sliding(100, 30), AGG_MAX, 0);
}
Test(windows, session_count)
{
    property(kp_session(30), AGG_COUNT, 0);
}
Test(windows, session_custom)
{
    property(kp_session(50), AGG_CUSTOM, 0);
}
Test(windows, tumbling_lateness)
{
    property(kp_tumbling(100), AGG_COUNT, -1);
}
Test(windows, tumbling_lateness_custom)
{
    property(kp_tumbling(60), AGG_CUSTOM, -1);
}
Test(windows, sliding_lateness)
{
    property(kp_sliding(60, 20), AGG_SUM, -1);
}
/* sliding counts fire from a running window (op_window.c): cover lateness, odd slides and
 * spills on that path too */
Test(windows, sliding_count_lateness)
{
    property(kp_sliding(50, 20), AGG_COUNT, -1);
}
Test(windows, sliding_count_100_30_lateness)
{
    property(kp_sliding(100, 30), AGG_COUNT, -1);
}
Test(windows, sliding_count_spill)
{
    property_ex(kp_sliding(60, 20), AGG_COUNT, -1, 1);
}
Test(windows, sliding_lateness_min)
{
    property(kp_sliding(50, 20), AGG_MIN, -1);
}
Test(windows, session_lateness)
{
    property(kp_session(40), AGG_COUNT, -1);
}
Test(windows, session_lateness_custom)
{
    property(kp_session(25), AGG_CUSTOM, -1);
}

/* A tiny state cache: window panes spill to RocksDB and are read back when they fire. */
Test(windows, tumbling_spill)
{
    property_ex(kp_tumbling(100), AGG_SUM, -1, 1);
}
Test(windows, sliding_spill)
{
    property_ex(kp_sliding(50, 20), AGG_CUSTOM, -1, 1);
}

/* ---- regressions: hand-written inputs for bugs the properties found ---------------------- */

static void fixed(kp_window_spec spec, int agg, kp_time lateness, const rec *recs, int n)
{
    for (int p = 1; p <= 3; p++) {
        g = (case_cfg){.spec = spec,
                       .agg = agg,
                       .lateness = lateness,
                       .ooo = 0,
                       .parallelism = p,
                       .nrec = n,
                       .nkeys = 2};
        fixed_recs = recs;
        run_case(0);
        fixed_recs = NULL;
    }
    rm_tmpdir();
}

/* Sliding 60/20, no lateness. After t=200 (watermark 199) fired the windows of t=10 only, the
 * record t=170 belongs to [120,180), [140,200) (both past the watermark: late for them) and
 * [160,220). It used to land in a pane whose windows were not marked fired (no data had
 * reached them), so the next watermark fired [120,180) and [140,200) with it. */
Test(windows_regression, sliding_window_past_watermark_without_data)
{
    static const rec r[] = {{0, 10, 1}, {0, 200, 1}, {0, 170, 1}, {0, 300, 1}};
    fixed(kp_sliding(60, 20), AGG_COUNT, 0, r, 4);
}

/* Tumbling 100, lateness 100. t=150 arrives after watermark 249: window [100,200) is past
 * its end but within lateness and must fire at once (1), and again for t=160 (2). It used to
 * wait for the next watermark and fire once (2). */
Test(windows_regression, tumbling_late_window_fires_per_record)
{
    static const rec r[] = {{0, 10, 1}, {0, 250, 1}, {0, 150, 1}, {0, 160, 1}, {0, 400, 1}};
    fixed(kp_tumbling(100), AGG_COUNT, 100, r, 5);
}

/* Session gap 10, lateness 100. key_0's [0,10) fires at watermark 10 (from key_1's t=11);
 * then t=5 grows it to [0,15), whose end - 1 = 14 is ahead of the watermark: it must fire
 * when the watermark passes 14. The merged session used to inherit "fired" and never fire. */
Test(windows_regression, session_grown_after_firing_fires_again)
{
    static const rec r[] = {{0, 0, 1}, {1, 11, 1}, {0, 5, 1}, {1, 100, 1}};
    fixed(kp_session(10), AGG_COUNT, 100, r, 4);
}
