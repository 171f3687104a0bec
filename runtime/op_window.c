/* Tumbling and sliding event-time windows, aggregated per pane.
 *
 * Time is cut into panes of gcd(size, slide); each record updates exactly one pane
 * accumulator for its key, so the cost per record does not grow with size/slide (Flink
 * assigns a sliding-window record to size/slide windows; this does not). Window ends lie on
 * the grid offset + n * slide; a window [end - size, end) fires when the operator's watermark
 * W reaches end - 1 and merges the panes it covers. Tumbling windows are the case
 * pane == window.
 *
 * Lateness (docs/semantics.md): a record is late for a window when
 * end - 1 + allowed_lateness <= its carried watermark cwm — the watermark of its own source
 * partition, never this operator's. It is dropped (counted, sent to the late side output) when
 * it is late for ALL its windows. Since W <= the cwm of every record still to arrive, a record
 * that is not late for a window finds the window not purged yet, so what each window holds is
 * a function of the log alone. A record for a window that already fired (end - 1 <= W) but
 * is not late for it updates the window and fires it again at once, for that key, with the
 * same document id; with allowed lateness 0 that cannot happen (end - 1 > cwm >= W), so every
 * window fires exactly once.
 *
 * Sub-panes: a pane is shared by several sliding windows, and a record may be late for the
 * earlier of them but not for the later ones. Added to its pane, it would show up in an
 * earlier window that has not fired yet here (timing-dependent) and in that window's
 * refires. So a pane is keyed by (end, from): `from` is the first window end its records
 * count for. Records normally go to the main pane, from = the first window containing it;
 * the rare partly-late record goes to a sub-pane with a later `from`. A window ending at E
 * covers the panes with end in (E - size, E] and from <= E — when it fires, refires, runs
 * incrementally, spills and loads.
 *
 * State: panes live in memory (keytable.c) as a write-back cache over RocksDB. When the
 * cache passes its byte budget the largest pane is swept (second chance, spill_pane): its
 * entries not hit since the last sweep are written to RocksDB as partial accumulators (blind
 * writes: no read per record, ever) in key order and dropped; when a spilled pane is needed,
 * its partials are read back and merged. RocksDB keys are
 *   key group (2, BE) | pane end (8) | pane from (8) | spill sequence (4, BE) | kind (1) | ...
 * (times big-endian with the sign flipped) — the pane before the key, so a pane is one range
 * per key group (docs/architecture.md). A sweep writes one RocksDB value per key group, a
 * run of its entries (kind 1, then a part number); a checkpoint's flush writes each entry
 * under its own key (kind 0, then the key), so that a later flush can overwrite it
 * (docs/state.md has the measurements).
 *
 * Extreme times: event times are any int64 and sizes, slides and lateness are validated only
 * to be positive, so all arithmetic here is overflow-free: the offset is reduced modulo the
 * slide, sums with the lateness saturate (kp_past_lateness), and a record whose windows would
 * end past KP_TIME_MAX is assigned as if its time were t_hi, the last time whose windows all
 * end by KP_TIME_MAX (it lands in the last representable windows). A window start before
 * KP_TIME_MIN is reported as KP_TIME_MIN. */
#include <stdlib.h>

#include "exec_live.h"
#include "keyed_db.h"
#include "keygroup.h"
#include "keytable.h"
#include "ops.h"
#include "op_window.h"
#include "rng.h"
#include "state.h"
#include "state_peak.h"
#include "window_agg.h"

typedef struct pane {
    kp_time end;  /* the pane is [end - gran, end) */
    kp_time from; /* the first window end its records count for */
    kp_keytable t;
    int spilled;    /* RocksDB holds partials of this pane that the cache does not include */
    int flushed;    /* some cached entries have a copy in RocksDB (their slot, see entry_slot) */
    size_t written; /* entries written to RocksDB since delete_on_disk emptied its range */
} pane;

/* One cached entry of a spill, a flush or a fire (spill_collect, collected). */
typedef struct spill_ent {
    kp_keyentry *e; /* in the pane's table, unchanged until the entries are written */
    uint32_t seq;   /* its spill sequence */
    uint32_t kg;    /* its key group */
} spill_ent;

typedef struct window_op {
    kp_op op;
    kp_op *late[KP_MAX_OUTPUTS];
    int nlate;
    kp_agg agg;
    kp_time size, slide, gran, lateness;
    kp_time off_slide, off_gran; /* the offset modulo slide and gran */
    kp_time t_hi;                /* the last event time whose windows all end by KP_TIME_MAX */
    int tumbling;
    kp_time wm;   /* the operator's watermark: every window ending by wm + 1 has fired */
    pane **panes; /* sorted by (end, from) */
    int npanes, cap;
    pane *hot;          /* the pane the last record went to */
    kp_keytable merged; /* sliding: scratch for merging panes */
    /* sliding counts: a running window, the sum of the panes in the window ending at run_hi;
     * run_hi == KP_TIME_MIN when it must be rebuilt */
    int incremental;
    kp_keytable running;
    kp_time run_hi;
    kp_doc doc;
    uint8_t *acc_tmp;
    uint8_t *spill_tmp; /* an aligned copy of a spilled accumulator (RocksDB values are not) */
    /* spill */
    size_t cache_limit;
    size_t cache_bytes;   /* sum of the panes' kp_keytable_bytes, kept up to date */
    size_t cache_peak;    /* the most the panes plus the spill scratch (scratch_bytes) held */
    size_t scratch_bytes; /* kbuf, runbuf, sorted: kept between spills, so always held */
    kp_state *state;
    int cf;
    kp_state_batch *batch;
    uint32_t spill_seq;
    kp_buf kbuf;      /* the RocksDB key of one entry (entry_key) */
    kp_buf runbuf;    /* the value of one run (spill_runs) */
    uint32_t *sorted; /* the entries of one spill: slots of the pane's table, 4 bytes each */
    size_t nsorted, sorted_cap;
    uint32_t collect_seq; /* the sequence of the collected entries that have no copy */
    size_t *group_runs;   /* sort_spill: 2 per key group of the subtask */
    size_t hits_off;      /* a pane entry's value: the accumulator, then a uint32_t hit count, */
    size_t slot_off;      /* then a uint32_t slot (entry_slot) */
    int kg_first, kg_end;
    uint64_t flush_rng;                   /* kp_op_window_flush_randomly (tests) */
    long long state_reported, state_next; /* kp_live_state */
    /* RocksDB's memory, sampled on the tick */
    kp_state_peak rocks;
} window_op;

static kp_time gcd64(kp_time a, kp_time b)
{
    while (b) {
        kp_time t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* a mod m in [0, m), for m > 0 */
static kp_time mod_pos(kp_time a, kp_time m)
{
    kp_time r = a % m;
    return r < 0 ? r + m : r;
}

/* End of the pane holding ts (ts <= t_hi, so it exists). */
static kp_time pane_end_of(const window_op *w, kp_time ts)
{
    kp_time m = mod_pos(mod_pos(ts, w->gran) - w->off_gran, w->gran);
    return ts + (w->gran - m);
}

/* The largest window end <= x; one exists wherever it is used. */
static kp_time grid_floor(const window_op *w, kp_time x)
{
    return x - mod_pos(mod_pos(x, w->slide) - w->off_slide, w->slide);
}

/* The smallest window end > x, or KP_TIME_MIN if there is none before KP_TIME_MAX. */
static kp_time grid_after(const window_op *w, kp_time x)
{
    kp_time e, m = mod_pos(mod_pos(x, w->slide) - w->off_slide, w->slide);
    if (__builtin_add_overflow(x, w->slide - m, &e))
        return KP_TIME_MIN;
    return e;
}

/* First and last window ends whose windows contain the pane ending at pe. */
static kp_time first_window(const window_op *w, kp_time pe)
{
    return w->tumbling ? pe : grid_after(w, pe - 1);
}

static kp_time last_window(const window_op *w, kp_time pe)
{
    if (w->tumbling)
        return pe;
    /* the largest window end <= pe - gran + size, from the first one so nothing overflows */
    kp_time first = first_window(w, pe);
    kp_time d = (w->size - w->gran) - (first - pe); /* >= 0: first - pe <= slide - gran */
    return first + d / w->slide * w->slide;
}

/* Does the window ending at end cover pane p? */
static int covers(const window_op *w, kp_time end, const pane *p)
{
    return p->end <= end && (uint64_t)end - (uint64_t)p->end < (uint64_t)w->size && p->from <= end;
}

static kp_window window_at(const window_op *w, kp_time end)
{
    return (kp_window){kp_time_add_sat(end, -w->size), end};
}

/* ---- panes ----------------------------------------------------------------------------- */

static int pane_before(const pane *p, kp_time end, kp_time from)
{
    return p->end < end || (p->end == end && p->from < from);
}

static pane *find_pane(window_op *w, kp_time end, kp_time from, int *pos)
{
    int lo = 0, hi = w->npanes;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (pane_before(w->panes[mid], end, from))
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    pane *p = lo < w->npanes ? w->panes[lo] : NULL;
    return p && p->end == end && p->from == from ? p : NULL;
}

/* The index of the first pane with end > t. */
static int first_pane_after(const window_op *w, kp_time t)
{
    int lo = 0, hi = w->npanes;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (w->panes[mid]->end <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static pane *get_pane(window_op *w, kp_time end, kp_time from)
{
    if (w->hot && w->hot->end == end && w->hot->from == from)
        return w->hot;
    int pos;
    pane *p = find_pane(w, end, from, &pos);
    if (p)
        return w->hot = p;
    if (w->npanes == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        pane **a = realloc(w->panes, (size_t)cap * sizeof *a);
        if (!a)
            return NULL;
        w->panes = a;
        w->cap = cap;
    }
    p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->end = end;
    p->from = from;
    kp_keytable_init(&p->t, w->slot_off + sizeof(uint32_t));
    memmove(w->panes + pos + 1, w->panes + pos, (size_t)(w->npanes - pos) * sizeof *w->panes);
    w->panes[pos] = p;
    w->npanes++;
    return w->hot = p;
}

/* Upsert into a pane, keeping the cache byte count current. */
static kp_keyentry *pane_upsert(window_op *w, pane *p, uint64_t hash, kp_bytes key, int *created)
{
    size_t before = kp_keytable_bytes(&p->t);
    kp_keyentry *e = kp_keytable_upsert(&p->t, hash, key, created);
    w->cache_bytes += kp_keytable_bytes(&p->t) - before;
    if (w->cache_bytes + w->scratch_bytes > w->cache_peak)
        w->cache_peak = w->cache_bytes + w->scratch_bytes;
    return e;
}

/* ---- spilling to RocksDB --------------------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

#define PREFIX     18           /* key group, pane end, pane from */
#define SPILL_HEAD (PREFIX + 4) /* and the spill sequence, then a kind: */
#define KIND_ENTRY 0            /* one entry: its key follows, the value is its accumulator */
#define KIND_RUN   1            /* a run of entries (a part number follows, 4 BE; spill_runs) */
#define ENTRY_HEAD (SPILL_HEAD + 1)
#define RUN_KEY    (SPILL_HEAD + 1 + 4)
#define RUN_BYTES  (64u << 10) /* a run's value is cut into parts of about this size */

static size_t spill_prefix(uint8_t *p, int kg, const pane *pn)
{
    put_be(p, (uint64_t)kg, 2);
    put_be(p + 2, (uint64_t)pn->end ^ (1ull << 63), 8);
    put_be(p + 10, (uint64_t)pn->from ^ (1ull << 63), 8);
    return PREFIX;
}

/* The range [lo, hi) of one pane's spilled entries in key group kg. */
static void spill_range(uint8_t *lo, uint8_t *hi, int kg, const pane *pn)
{
    spill_prefix(lo, kg, pn);
    memcpy(hi, lo, PREFIX);
    for (int i = PREFIX - 1; i >= 0 && ++hi[i] == 0; i--)
        ; /* the next prefix: +1 with carry */
}

static const kp_keyed_cf window_cfs[] = {{"window", kp_state_cf_scan}};

/* Opens the operator's database (keyed_db.h): fresh, or restored from the checkpoint. */
static int open_state(window_op *w, int *restored)
{
    char err[512];
    kp_subtask *st = w->op.st;
    w->state = kp_keyed_db_open(st, w->op.node, w->kg_first, w->kg_end, window_cfs, 1, restored);
    if (!w->state)
        return -1;
    w->cf = kp_state_cf_scan(w->state, "window", err, sizeof err);
    w->batch = kp_state_batch_new();
    if (w->cf < 0 || !w->batch)
        return kp_subtask_fail(st, "%s: window state: %s", w->op.node->name,
                               w->cf < 0 ? err : "out of memory");
    return 0;
}

static int ensure_state(window_op *w)
{
    int restored;
    return w->state ? 0 : open_state(w, &restored);
}

/* Big-endian bytes [from, from + n) of s (len bytes), zero past its end. */
static uint64_t be_bytes(const uint8_t *s, size_t len, size_t from, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | (from + (size_t)i < len ? s[from + (size_t)i] : 0);
    return v;
}

static uint32_t *entry_hits(const window_op *w, kp_keyentry *e)
{
    return (uint32_t *)((char *)kp_keyentry_value(e) + w->hits_off);
}

/* A cached entry's slot: the spill sequence under which RocksDB holds a copy that its value
 * includes (written by a flush), 0 if none, with SLOT_DIRTY set once a record changed the
 * value after that copy was written. Clean = a copy that is current: a spill drops the entry
 * without writing it, a flush skips it. A dirty entry with a slot overwrites its copy (the
 * same RocksDB key), one without gets the new sequence. Read-backs skip the copy of an entry
 * still cached (its value includes it). */
#define SLOT_DIRTY (1u << 31)

static uint32_t *entry_slot(const window_op *w, kp_keyentry *e)
{
    return (uint32_t *)((char *)kp_keyentry_value(e) + w->slot_off);
}

static int slot_clean(uint32_t slot)
{
    return slot != 0 && !(slot & SLOT_DIRTY);
}

/* Collected entry j of pane p: the cached entry, its key group (from the hash the table keeps,
 * which is kp_hash64 of the key unless that was 0), its sequence (its copy's, else the new). */
static spill_ent collected(const window_op *w, const pane *p, size_t j)
{
    kp_keyentry *e = kp_keytable_at(&p->t, w->sorted[j]);
    uint64_t h = e->hash;
    if (h == 1) { /* the table's stand-in for a hash of 0, or a real 1 */
        kp_bytes key = kp_keytable_key(&p->t, e);
        h = kp_hash64(key.ptr, key.len);
    }
    uint32_t slot = *entry_slot(w, e) & ~SLOT_DIRTY;
    return (spill_ent){.e = e,
                       .seq = slot ? slot : w->collect_seq,
                       .kg = (uint32_t)kp_key_group(h, w->op.st->job->max_parallelism)};
}

/* The operator and pane while qsort runs on this thread (each subtask thread has its own) */
static _Thread_local const window_op *sort_w;
static _Thread_local const pane *sort_p;

/* RocksDB key order within a key group: sequence, then key. */
static int spill_ent_cmp(const void *a, const void *b)
{
    const uint32_t *base = sort_w->sorted;
    spill_ent x = collected(sort_w, sort_p, (size_t)((const uint32_t *)a - base)),
              y = collected(sort_w, sort_p, (size_t)((const uint32_t *)b - base));
    if (x.kg != y.kg)
        return x.kg < y.kg ? -1 : 1;
    if (x.seq != y.seq)
        return x.seq < y.seq ? -1 : 1;
    kp_bytes kx = kp_keytable_key(&sort_p->t, x.e), ky = kp_keytable_key(&sort_p->t, y.e);
    int c = memcmp(kx.ptr, ky.ptr, kx.len < ky.len ? kx.len : ky.len);
    return c ? c : (kx.len > ky.len) - (kx.len < ky.len);
}

/* Which entries spill_collect takes: the cold ones only (else all), the ones whose value
 * RocksDB does not hold yet only (else clean ones too). */
enum { COLLECT_COLD = 1, COLLECT_WRITES = 2, COLLECT_GROUPED = 4 };

/* Sorts w->sorted[0, n) in RocksDB key order: first into one run per key group, in place (a
 * pass to count, one to move each entry once), then each run by spill_ent_cmp. A spill spreads
 * over all of the subtask's key groups, so a run is 1/128 of it at p=1: qsort compares half as
 * often as over the whole spill (log2 of ~100 entries instead of ~12k). Without by_key the
 * runs stay unsorted (grouped by key group only). A key outside the subtask's groups (reported
 * by the read-back) leaves one plain qsort. */
static void sort_spill(window_op *w, const pane *p, size_t n, int by_key)
{
    int ng = w->kg_end - w->kg_first;
    size_t *next = w->group_runs, *end = w->group_runs + ng;
    sort_w = w;
    sort_p = p;
    memset(end, 0, (size_t)ng * sizeof *end);
    for (size_t i = 0; i < n; i++) {
        int g = (int)collected(w, p, i).kg - w->kg_first;
        if (g < 0 || g >= ng) {
            qsort(w->sorted, n, sizeof *w->sorted, spill_ent_cmp);
            return;
        }
        end[g]++;
    }
    for (size_t g = 0, at = 0; g < (size_t)ng; g++) {
        next[g] = at;
        at += end[g];
        end[g] = at;
    }
    for (int g = 0; g < ng; g++) /* each swap puts one entry into its run for good */
        while (next[g] < end[g]) {
            int to = (int)collected(w, p, next[g]).kg - w->kg_first;
            if (to == g) {
                next[g]++;
                continue;
            }
            uint32_t tmp = w->sorted[next[g]];
            w->sorted[next[g]] = w->sorted[next[to]];
            w->sorted[next[to]++] = tmp;
        }
    for (int g = 0; g < ng && by_key; g++) {
        size_t from = g ? end[g - 1] : 0;
        if (end[g] - from > 1)
            qsort(w->sorted + from, end[g] - from, sizeof *w->sorted, spill_ent_cmp);
    }
}

static int spill_collect(window_op *w, pane *p, uint32_t new_seq, int which)
{
    if (!w->group_runs) {
        size_t runs = 2 * (size_t)(w->kg_end - w->kg_first) + 2; /* never malloc(0) */
        w->group_runs = malloc(runs * sizeof *w->group_runs);
        if (!w->group_runs)
            return -1;
    }
    if (p->t.n > w->sorted_cap) {
        uint32_t *a = realloc(w->sorted, p->t.n * sizeof *a);
        if (!a)
            return -1;
        w->sorted = a;
        w->sorted_cap = p->t.n;
    }
    size_t i = 0, n = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->t, &i))) {
        if ((which & COLLECT_COLD) && *entry_hits(w, e) != 0)
            continue;
        uint32_t slot = *entry_slot(w, e);
        if ((which & COLLECT_WRITES) && slot_clean(slot))
            continue;
        w->sorted[n++] = (uint32_t)(i - 1); /* kp_keytable_next left i after e's slot */
    }
    w->collect_seq = new_seq;
    if (n > 0) /* w->sorted is still NULL when no pane had an entry */
        sort_spill(w, p, n, !(which & COLLECT_GROUPED));
    w->nsorted = n;
    /* the spill's scratch stays allocated for the next one: it counts in the state's peak */
    w->scratch_bytes = w->kbuf.cap + w->runbuf.cap + w->sorted_cap * sizeof *w->sorted +
                       (2 * (size_t)(w->kg_end - w->kg_first) + 2) * sizeof *w->group_runs;
    if (w->cache_bytes + w->scratch_bytes > w->cache_peak)
        w->cache_peak = w->cache_bytes + w->scratch_bytes;
    return 0;
}

/* How many of pane p's entries were not hit since the last sweep. */
static size_t cold_entries(window_op *w, pane *p)
{
    size_t i = 0, n = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->t, &i)))
        n += *entry_hits(w, e) == 0;
    return n;
}

/* Keeps only the entries hit since the last sweep (their hit counts reset: a second chance),
 * in a fresh table so the memory of the others is returned. */
static int keep_hot(window_op *w, pane *p)
{
    kp_keytable t;
    kp_keytable_init(&t, p->t.value_size);
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->t, &i))) {
        if (*entry_hits(w, e) == 0)
            continue;
        int created;
        kp_keyentry *n = kp_keytable_upsert(&t, e->hash, kp_keytable_key(&p->t, e), &created);
        if (!n) {
            kp_keytable_free(&t);
            return -1;
        }
        memcpy(kp_keyentry_value(n), kp_keyentry_value(e), w->hits_off);
        *entry_slot(w, n) = *entry_slot(w, e);
    }
    w->cache_bytes = w->cache_bytes - kp_keytable_bytes(&p->t) + kp_keytable_bytes(&t);
    kp_keytable_free(&p->t);
    p->t = t;
    return 0;
}

/* Appends a run entry: the key's length (LEB128), the key, the accumulator. */
static int run_append(window_op *w, kp_bytes key, const void *acc)
{
    if (kp_buf_reserve(&w->runbuf, 5 + key.len + w->agg.acc_size) != 0)
        return -1;
    uint8_t *o = (uint8_t *)w->runbuf.ptr + w->runbuf.len;
    size_t n = 0;
    for (size_t l = key.len; n == 0 || l; l >>= 7)
        o[n++] = (uint8_t)((l & 0x7f) | (l >> 7 ? 0x80 : 0));
    memcpy(o + n, key.ptr, key.len);
    memcpy(o + n + key.len, acc, w->agg.acc_size);
    w->runbuf.len += n + key.len + w->agg.acc_size;
    return 0;
}

/* The RocksDB key of a collected entry of pane p (kind KIND_ENTRY), in w->kbuf; NULL when out
 * of memory. */
static const char *entry_key(window_op *w, const pane *p, const spill_ent s, size_t *len)
{
    kp_bytes key = kp_keytable_key(&p->t, s.e);
    if (kp_buf_reserve(&w->kbuf, ENTRY_HEAD + key.len) != 0)
        return NULL;
    uint8_t *k = (uint8_t *)w->kbuf.ptr;
    spill_prefix(k, (int)s.kg, p);
    put_be(k + PREFIX, s.seq, 4);
    k[SPILL_HEAD] = KIND_ENTRY;
    memcpy(k + ENTRY_HEAD, key.ptr, key.len);
    *len = ENTRY_HEAD + key.len;
    return w->kbuf.ptr;
}

/* Puts w->runbuf as part `part` of the run of (key group kg, pane p, sequence seq). */
static void run_put(window_op *w, int kg, const pane *p, uint32_t seq, uint32_t part)
{
    uint8_t k[RUN_KEY];
    spill_prefix(k, kg, p);
    put_be(k + PREFIX, seq, 4);
    k[SPILL_HEAD] = KIND_RUN;
    put_be(k + ENTRY_HEAD, part, 4);
    kp_state_batch_put(w->batch, w->state, w->cf, k, RUN_KEY, w->runbuf.ptr, w->runbuf.len);
    w->runbuf.len = 0;
}

/* Puts the collected entries of pane p (w->sorted, grouped by key group) into the write
 * batch: those new to RocksDB (sequence seq) as one run per key group — a single RocksDB
 * value holding all of them, cut into parts of RUN_BYTES — and those overwriting a copy a
 * flush wrote (their own sequence) one by one. A RocksDB entry costs its memtable insert, its
 * share of the flush and compaction and an iterator step: ~30 comparisons per insert even in
 * key order (docs/state.md); per run that is shared by ~100 entries at p=1. The number of
 * RocksDB entries written, or -1 when out of memory. */
static long spill_runs(window_op *w, pane *p, uint32_t seq)
{
    long records = 0;
    spill_ent s = {0};
    for (size_t i = 0; i < w->nsorted;) {
        uint32_t kg = collected(w, p, i).kg, part = 0;
        for (; i < w->nsorted && (s = collected(w, p, i)).kg == kg; i++) {
            if (s.seq != seq) { /* overwrites its copy */
                size_t klen;
                const char *k = entry_key(w, p, s, &klen);
                if (!k)
                    return -1;
                kp_state_batch_put(w->batch, w->state, w->cf, k, klen, kp_keyentry_value(s.e),
                                   w->agg.acc_size);
                records++;
                continue;
            }
            if (run_append(w, kp_keytable_key(&p->t, s.e), kp_keyentry_value(s.e)) != 0)
                return -1;
            if (w->runbuf.len >= RUN_BYTES) {
                run_put(w, (int)kg, p, seq, part++);
                records++;
            }
        }
        if (w->runbuf.len > 0) {
            run_put(w, (int)kg, p, seq, part);
            records++;
        }
    }
    return records;
}

/* Writes pane p's entries to RocksDB as partial accumulators (blind writes, spill_runs). A
 * sweep of a clock (second chance): the entries not hit since the last sweep go, the others
 * stay with their hit counts reset — unless fewer than a quarter would go (the pane would be
 * over budget again at once); then they all go. So hot keys stay cached under skewed input,
 * and a sweep's cost, which is one pass over the pane, is at most 4 passes per entry moved. */
static int spill_pane(window_op *w, pane *p)
{
    if (ensure_state(w) != 0)
        return -1;
    int all = cold_entries(w, p) * 4 < p->t.n;
    uint32_t seq = ++w->spill_seq;
    long records = -1;
    if (spill_collect(w, p, seq, COLLECT_GROUPED | COLLECT_WRITES | (all ? 0 : COLLECT_COLD)) == 0)
        records = spill_runs(w, p, seq);
    if (records < 0)
        return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
    p->written += (size_t)records;
    char err[512];
    if (kp_state_write(w->state, w->batch, err, sizeof err) != 0)
        return kp_subtask_fail(w->op.st, "%s: spilling window state: %s", w->op.node->name, err);
    if (all) {
        w->cache_bytes -= kp_keytable_bytes(&p->t);
        kp_keytable_free(&p->t);
    } else if (keep_hot(w, p) != 0) {
        return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
    }
    p->spilled = 1;
    atomic_fetch_add_explicit(&w->op.st->metrics->state_spills, 1, memory_order_relaxed);
    return 0;
}

/* Sweeps the largest pane, if it holds anything: 1 if it did, 0 if not, -1 on failure. */
static int sweep_largest(window_op *w)
{
    pane *largest = NULL;
    for (int i = 0; i < w->npanes; i++)
        if (!largest || kp_keytable_bytes(&w->panes[i]->t) > kp_keytable_bytes(&largest->t))
            largest = w->panes[i];
    if (!largest || largest->t.n == 0)
        return 0;
    return spill_pane(w, largest) != 0 ? -1 : 1;
}

/* The budget covers the panes and the scratch kept for spilling them (4 bytes per entry of
 * the largest collection, a run's value, the key-group table): sweeps while they are over. */
static int make_room(window_op *w)
{
    int rc = 1;
    while (rc == 1 && w->cache_bytes + w->scratch_bytes > w->cache_limit)
        rc = sweep_largest(w);
    return rc < 0 ? -1 : 0;
}

/* Before a record's key goes into pane p: when it is new and p's table would grow for it (its
 * slots double at 3/4 full, its key arena when full), sweeps first while the grown table would
 * not fit, so the cache stays within its budget instead of passing it by a whole table. */
static int room_for_key(window_op *w, pane *p, uint64_t hash, kp_bytes key)
{
    for (;;) {
        size_t now = kp_keytable_bytes(&p->t),
               after = kp_keytable_bytes_after_insert(&p->t, key.len);
        if (after == now || w->cache_bytes + w->scratch_bytes + (after - now) <= w->cache_limit ||
            kp_keytable_find(&p->t, hash, key))
            return 0;
        int rc = sweep_largest(w);
        if (rc <= 0)
            return rc; /* failed, or nothing left to sweep */
    }
}

/* Is this spilled entry (RocksDB key k) the copy of a cached entry of pane p that includes
 * it (entry_slot)? Then a read-back skips it. */
static int copy_of_cached(window_op *w, pane *p, const uint8_t *k, kp_bytes key, uint64_t hash)
{
    if (!p->flushed)
        return 0;
    kp_keyentry *e = kp_keytable_find(&p->t, hash, key);
    return e && (*entry_slot(w, e) & ~SLOT_DIRTY) == (uint32_t)be_bytes(k + PREFIX, 4, 0, 4);
}

/* Merges one spilled partial accumulator (v: unaligned, acc_size bytes) into the pane's table
 * (counted in the cache), or into scratch table t when t is not NULL. */
static int merge_partial(window_op *w, pane *p, kp_keytable *t, kp_bytes key, uint64_t hash,
                         const void *v)
{
    int created;
    kp_keyentry *e =
        t ? kp_keytable_upsert(t, hash, key, &created) : pane_upsert(w, p, hash, key, &created);
    if (!e)
        return -1;
    if (created) {
        memcpy(kp_keyentry_value(e), v, w->agg.acc_size);
    } else {
        /* merge functions may read the accumulator as its struct type */
        memcpy(w->spill_tmp, v, w->agg.acc_size);
        kp_agg_merge(&w->agg, kp_keyentry_value(e), w->spill_tmp);
    }
    return 0;
}

/* Merges the entries of one run (run_append's format). -1 if it is malformed. */
static int load_run(window_op *w, pane *p, kp_keytable *t, const uint8_t *v, size_t vlen)
{
    for (size_t at = 0; at < vlen;) {
        size_t klen = 0;
        for (int shift = 0;; shift += 7) {
            if (at >= vlen || shift > 28)
                return -1;
            klen |= (size_t)(v[at] & 0x7f) << shift;
            if (!(v[at++] & 0x80))
                break;
        }
        if (klen > vlen - at || vlen - at - klen < w->agg.acc_size)
            return -1;
        kp_bytes key = {(const char *)v + at, klen};
        if (merge_partial(w, p, t, key, kp_hash64(key.ptr, key.len), v + at + klen) != 0)
            return -1;
        at += klen + w->agg.acc_size;
    }
    return 0;
}

/* Merges the partials of pane p in the key group where `it` has been positioned (prefix lo)
 * into the pane's table, or into scratch table t when t is not NULL, skipping the copies of
 * cached entries (a run never holds one: flushes write entries one by one). 0, or -1 on
 * corrupt or unloadable state. */
static int load_group(window_op *w, pane *p, kp_keytable *t, kp_state_iter *it,
                      const uint8_t lo[PREFIX])
{
    for (; kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t klen, vlen;
        const char *k = kp_state_iter_key(it, &klen);
        if (klen < PREFIX || memcmp(k, lo, PREFIX) != 0)
            return 0; /* the next key group's (or pane's) entries */
        const void *v = kp_state_iter_value(it, &vlen);
        if (klen == RUN_KEY && k[SPILL_HEAD] == KIND_RUN) {
            if (load_run(w, p, t, v, vlen) != 0)
                return -1;
            continue;
        }
        if (klen < ENTRY_HEAD || k[SPILL_HEAD] != KIND_ENTRY || vlen != w->agg.acc_size)
            return -1;
        kp_bytes key = {k + ENTRY_HEAD, klen - ENTRY_HEAD};
        uint64_t hash = kp_hash64(key.ptr, key.len);
        if (!copy_of_cached(w, p, (const uint8_t *)k, key, hash) &&
            merge_partial(w, p, t, key, hash, v) != 0)
            return -1;
    }
    return 0;
}

/* Brings a spilled pane's partial accumulators back into memory and deletes them on disk:
 * one iterator over the subtask's key groups, a seek per key group (an iterator per key
 * group cost more than reading the entries, docs/state.md). */
static int read_spilled(window_op *w, pane *p, kp_keytable *t);

/* One iterator over pane p's entries in all of this subtask's key groups (seek per group);
 * NULL after kp_subtask_fail. */
static kp_state_iter *open_pane_iter(window_op *w, pane *p)
{
    uint8_t first[PREFIX], end[PREFIX], lo[PREFIX], hi[PREFIX];
    spill_range(first, hi, w->kg_first, p);
    spill_range(lo, end, w->kg_end - 1, p);
    kp_state_iter *it = kp_state_iter_open(w->state, w->cf, first, PREFIX, end, PREFIX);
    if (!it)
        kp_subtask_fail(w->op.st, "%s: reading window state: out of memory", w->op.node->name);
    return it;
}

/* From this many entries written per key group on, a pane's entries on disk are deleted with
 * one RocksDB range tombstone per key group instead of key by key: deleting key by key reads
 * every entry once more and writes a tombstone for each, which nearly doubled the CPU per
 * spilled entry at 100k keys (docs/state.md, "Deleting"); range tombstones cost every
 * iterator of RocksDB 7.8 a pass over those in the memtable, so panes that wrote little
 * (many small spills, tiny caches) keep the key-by-key delete. */
#define RANGE_TOMBSTONE_MIN 64

/* Deletes pane p's entries on disk (spilled and flushed), key group by key group. */
static int delete_on_disk(window_op *w, pane *p, char *err, size_t errlen)
{
    size_t groups = (size_t)(w->kg_end - w->kg_first);
    int ranges = p->written >= RANGE_TOMBSTONE_MIN * groups;
    uint8_t lo[PREFIX], hi[PREFIX];
    for (int kg = w->kg_first; kg < w->kg_end; kg++) {
        spill_range(lo, hi, kg, p);
        if ((ranges ? kp_state_del_range_tombstone : kp_state_del_range)(
                w->state, w->cf, lo, PREFIX, hi, PREFIX, err, errlen) != 0)
            return -1;
    }
    p->written = 0;
    return 0;
}

static int load_pane(window_op *w, pane *p)
{
    if (!p->spilled)
        return 0;
    if (read_spilled(w, p, NULL) != 0)
        return -1;
    char err[512];
    if (delete_on_disk(w, p, err, sizeof err) != 0)
        return kp_subtask_fail(w->op.st, "%s: deleting read-back window state: %s",
                               w->op.node->name, err);
    size_t i = 0; /* the copies are gone: every entry holds its value alone */
    kp_keyentry *e;
    while (p->flushed && (e = kp_keytable_next(&p->t, &i)))
        *entry_slot(w, e) = SLOT_DIRTY;
    p->spilled = p->flushed = 0;
    return 0;
}

/* ---- firing ---------------------------------------------------------------------------- */

/* The accumulator of `key` over the window ending at `end`, into acc. 0 if the key has no
 * data there. */
static int window_value(window_op *w, kp_time end, uint64_t hash, kp_bytes key, void *acc)
{
    int found = 0;
    kp_agg_init(&w->agg, acc);
    for (int i = first_pane_after(w, kp_time_add_sat(end, -w->size));
         i < w->npanes && w->panes[i]->end <= end; i++) {
        pane *p = w->panes[i];
        if (!covers(w, end, p))
            continue;
        if (load_pane(w, p) != 0)
            return -1;
        kp_keyentry *e = kp_keytable_find(&p->t, hash, key);
        if (e) {
            kp_agg_merge(&w->agg, acc, kp_keyentry_value(e));
            found = 1;
        }
    }
    return found;
}

static int emit_table(window_op *w, kp_keytable *t, kp_time end, kp_time cwm)
{
    kp_window win = window_at(w, end);
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(t, &i)))
        if (kp_agg_emit(&w->agg, &w->op, &w->doc, &win, kp_keytable_key(t, e), kp_keyentry_value(e),
                        cwm) != 0)
            return -1;
    return 0;
}

static int fire_running(window_op *w, kp_time end, kp_time cwm);

/* Fires a spilled tumbling pane one key group at a time: the group's cached entries and its
 * partials on disk are merged in a scratch table, emitted, and the table cleared — so firing
 * holds one key group of the pane (1/128 of it at p=1 with the default max parallelism), not
 * the whole pane. The pane stays spilled until it is purged (a re-firing reads it whole). */
static int fire_spilled(window_op *w, pane *p, kp_time end, kp_time cwm)
{
    if (spill_collect(w, p, 0, COLLECT_GROUPED) != 0) /* the cached entries by key group */
        return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
    char err[512];
    uint8_t lo[PREFIX], hi[PREFIX];
    kp_state_iter *it = open_pane_iter(w, p);
    if (!it)
        return -1;
    int rc = 0;
    size_t i = 0;
    for (int kg = w->kg_first; kg < w->kg_end && rc == 0; kg++) {
        kp_keytable_clear(&w->merged);
        spill_ent s;
        for (; i < w->nsorted && (int)(s = collected(w, p, i)).kg == kg && rc == 0; i++) {
            kp_bytes key = kp_keytable_key(&p->t, s.e);
            int created;
            kp_keyentry *e =
                kp_keytable_upsert(&w->merged, kp_hash64(key.ptr, key.len), key, &created);
            if (e)
                memcpy(kp_keyentry_value(e), kp_keyentry_value(s.e), w->agg.acc_size);
            else
                rc = -1;
        }
        spill_range(lo, hi, kg, p);
        kp_state_iter_seek(it, lo, PREFIX);
        if (rc == 0)
            rc = load_group(w, p, &w->merged, it, lo);
        if (rc == 0 && emit_table(w, &w->merged, end, cwm) != 0)
            rc = -2; /* the subtask has failed already */
    }
    kp_keytable_clear(&w->merged);
    if (rc == 0 && i != w->nsorted)
        rc = -1; /* a cached key outside this subtask's key groups: never emitted */
    if (kp_state_iter_close(it, err, sizeof err) != 0)
        return kp_subtask_fail(w->op.st, "%s: reading window state: %s", w->op.node->name, err);
    if (rc == -1)
        return kp_subtask_fail(w->op.st, "%s: corrupt or unloadable window state",
                               w->op.node->name);
    return rc;
}

/* Fires the window ending at `end` for every key with data in it; results carry cwm. */
static int fire_window(window_op *w, kp_time end, kp_time cwm)
{
    atomic_fetch_add_explicit(&w->op.st->metrics->windows_fired, 1, memory_order_relaxed);
    if (w->tumbling) { /* the pane is the window, and it has no sub-panes */
        int pos;
        pane *p = find_pane(w, end, end, &pos);
        if (!p)
            return 0;
        if (p->spilled)
            return fire_spilled(w, p, end, cwm);
        return emit_table(w, &p->t, end, cwm);
    }
    if (w->incremental)
        return fire_running(w, end, cwm);
    kp_keytable_clear(&w->merged);
    for (int i = first_pane_after(w, kp_time_add_sat(end, -w->size));
         i < w->npanes && w->panes[i]->end <= end; i++) {
        pane *p = w->panes[i];
        if (!covers(w, end, p))
            continue;
        if (load_pane(w, p) != 0)
            return -1;
        size_t j = 0;
        kp_keyentry *e;
        while ((e = kp_keytable_next(&p->t, &j))) {
            int created;
            kp_keyentry *m =
                kp_keytable_upsert(&w->merged, e->hash, kp_keytable_key(&p->t, e), &created);
            if (!m)
                return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
            if (created)
                memcpy(kp_keyentry_value(m), kp_keyentry_value(e), w->agg.acc_size);
            else
                kp_agg_merge(&w->agg, kp_keyentry_value(m), kp_keyentry_value(e));
        }
    }
    return emit_table(w, &w->merged, end, cwm);
}

/* ---- sliding counts as a running window ------------------------------------------------- */

/* Adds (sign 1) or subtracts (sign -1) a pane's counts to the running window. */
static int run_apply(window_op *w, pane *p, int64_t sign)
{
    size_t j = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->t, &j))) {
        int created;
        kp_keyentry *r =
            kp_keytable_upsert(&w->running, e->hash, kp_keytable_key(&p->t, e), &created);
        if (!r)
            return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
        int64_t d, *v = kp_keyentry_value(r);
        memcpy(&d, kp_keyentry_value(e), sizeof d);
        *v += sign * d;
    }
    return 0;
}

/* Fires a sliding count window by moving the running window to end: add the panes that
 * entered, subtract those that left (panes already purged were subtracted then; sub-panes
 * enter when the window reaches their `from`) — about two panes per slide instead of
 * size/slide of them. Keys whose count fell to zero are skipped, and the table is rebuilt once
 * they are the majority. */
static int fire_running(window_op *w, kp_time end, kp_time cwm)
{
    int valid = w->run_hi != KP_TIME_MIN && end >= w->run_hi;
    if (!valid)
        kp_keytable_clear(&w->running);
    kp_time lo = valid ? w->run_hi : end; /* panes of either window end after lo - size */
    for (int i = first_pane_after(w, kp_time_add_sat(lo, -w->size));
         i < w->npanes && w->panes[i]->end <= end; i++) {
        pane *p = w->panes[i];
        int was = valid && covers(w, w->run_hi, p), now = covers(w, end, p);
        if (was != now && (load_pane(w, p) != 0 || run_apply(w, p, now - was) != 0))
            return -1;
    }
    w->run_hi = end;
    kp_window win = window_at(w, end);
    size_t i = 0, zeros = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&w->running, &i))) {
        if (*(int64_t *)kp_keyentry_value(e) == 0) {
            zeros++;
            continue;
        }
        if (kp_agg_emit(&w->agg, &w->op, &w->doc, &win, kp_keytable_key(&w->running, e),
                        kp_keyentry_value(e), cwm) != 0)
            return -1;
    }
    if (zeros > 1024 && zeros > w->running.n / 2)
        w->run_hi = KP_TIME_MIN; /* mostly zeros: rebuild at the next firing */
    return 0;
}

/* A pane is about to be purged: take it out of the running window first. */
static void run_forget(window_op *w, pane *p)
{
    if (!w->incremental || w->run_hi == KP_TIME_MIN || !covers(w, w->run_hi, p))
        return;
    if (p->spilled || run_apply(w, p, -1) != 0)
        w->run_hi = KP_TIME_MIN;
}

/* The smallest window end E with E - 1 > after that covers some pane, into *end; 0 if none. */
static int next_window(const window_op *w, kp_time after, kp_time *end)
{
    if (after == KP_TIME_MAX)
        return 0;
    kp_time lowest = grid_after(w, after + 1); /* E > after + 1 */
    if (lowest == KP_TIME_MIN)
        return 0;
    int found = 0;
    /* last_window grows with the pane end: skip the panes whose windows all fired */
    int lo = 0, hi = w->npanes;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (last_window(w, w->panes[mid]->end) < lowest)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int i = lo; i < w->npanes; i++) {
        const pane *p = w->panes[i];
        kp_time first = first_window(w, p->end);
        if (found && first >= *end)
            break; /* first_window grows with the pane end too */
        kp_time e = first > p->from ? first : p->from;
        e = e > lowest ? e : lowest;
        if (e <= last_window(w, p->end) && (!found || e < *end)) {
            *end = e;
            found = 1;
        }
    }
    return found;
}

/* Frees a pane that no window can update any more (deleting its spilled partials when
 * `delete_spilled`); the caller takes it out of the array. */
static int free_pane(window_op *w, pane *p, int delete_spilled)
{
    int rc = 0;
    run_forget(w, p);
    char err[256];
    if (delete_spilled && (p->spilled || p->flushed) && w->state &&
        delete_on_disk(w, p, err, sizeof err) != 0)
        rc = kp_subtask_fail(w->op.st, "%s: deleting spilled window state: %s", w->op.node->name,
                             err);
    if (w->hot == p)
        w->hot = NULL;
    w->cache_bytes -= kp_keytable_bytes(&p->t);
    kp_keytable_free(&p->t);
    free(p);
    return rc;
}

static int window_watermark(kp_op *op, kp_time wm)
{
    window_op *w = (window_op *)op;
    if (wm <= w->wm)
        return 0;
    kp_time before = w->wm;
    w->wm = wm;
    /* windows ending in (before + 1, wm + 1]: those ending earlier fired at an earlier advance,
     * or at once when a record reached them (refire) */
    kp_time end = KP_TIME_MIN;
    for (kp_time after = before; next_window(w, after, &end) && end - 1 <= wm; after = end - 1)
        if (fire_window(w, end, KP_EMIT_FIRED) != 0)
            return -1;
    /* purge the panes no window can update any more: their last window is past its lateness
     * (and so has fired). last_window grows with the pane end, so they are a prefix. */
    int n = 0, rc = 0;
    while (n < w->npanes && kp_past_lateness(last_window(w, w->panes[n]->end) - 1, w->lateness, wm))
        rc |= free_pane(w, w->panes[n++], 1);
    if (n > 0) {
        memmove(w->panes, w->panes + n, (size_t)(w->npanes - n) * sizeof *w->panes);
        w->npanes -= n;
    }
    return rc != 0 ? -1 : kp_op_emit_watermark(op, wm);
}

/* ---- whole-cache flush (checkpoint barriers) -------------------------------------------- */

/* Pane p's collected entries (w->sorted, in key order) into the write batch (sst NULL) or
 * into SST file sst. */
static int flush_entries(window_op *w, const pane *p, kp_state_sst *sst, char *err, size_t errlen)
{
    for (size_t j = 0; j < w->nsorted; j++) {
        size_t klen;
        spill_ent s = collected(w, p, j);
        const char *k = entry_key(w, p, s, &klen);
        const void *v = kp_keyentry_value(s.e);
        if (!k)
            return snprintf(err, errlen, "out of memory"), -1;
        if (!sst)
            kp_state_batch_put(w->batch, w->state, w->cf, k, klen, v, w->agg.acc_size);
        else if (kp_state_sst_put(sst, k, klen, v, w->agg.acc_size, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Pane p's collected entries (w->sorted, in key order) as one SST file, ingested. */
static int flush_sst(window_op *w, const pane *p, char *err, size_t errlen)
{
    kp_state_sst *f = kp_state_sst_open(w->state, w->cf, err, errlen);
    if (!f)
        return -1;
    if (flush_entries(w, p, f, err, errlen) != 0) {
        kp_state_sst_abort(f);
        return -1;
    }
    return kp_state_sst_ingest(f, err, errlen);
}

/* From this many dirty entries in a pane on, a flush writes them as an SST file and ingests
 * it instead of a write batch: with the checkpoint that follows (which flushes the memtables)
 * it costs a third of the CPU at 100k entries and more; below, the file's fsyncs make it
 * slower in wall time (docs/state.md, "Whole-cache flush"). */
#define FLUSH_SST_MIN 50000

static int flush_panes(window_op *w, size_t sst_min)
{
    uint32_t seq = ++w->spill_seq; /* for the entries that have no copy in RocksDB yet */
    char err[512];
    for (int i = 0; i < w->npanes; i++) {
        pane *p = w->panes[i];
        if (spill_collect(w, p, seq, COLLECT_WRITES) != 0)
            return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
        if (w->nsorted == 0)
            continue;
        if (ensure_state(w) != 0)
            return -1;
        int rc = w->nsorted < sst_min ? flush_entries(w, p, NULL, err, sizeof err)
                                      : flush_sst(w, p, err, sizeof err);
        if (rc != 0 ||
            (w->nsorted < sst_min && kp_state_write(w->state, w->batch, err, sizeof err)))
            return kp_subtask_fail(w->op.st, "%s: flushing window state: %s", w->op.node->name,
                                   err);
        for (size_t j = 0; j < w->nsorted; j++) { /* clean: RocksDB holds the value */
            spill_ent s = collected(w, p, j);
            *entry_slot(w, s.e) = s.seq;
        }
        p->written += w->nsorted;
        p->flushed = 1;
    }
    return 0;
}

int kp_op_window_flush(kp_op *op)
{
    return flush_panes((window_op *)op, FLUSH_SST_MIN);
}

/* Pane p's entries in RocksDB merged into t, skipping the copies of p's cached entries. */
static int read_spilled(window_op *w, pane *p, kp_keytable *t)
{
    char err[512];
    uint8_t lo[PREFIX], hi[PREFIX];
    kp_state_iter *it = open_pane_iter(w, p);
    if (!it)
        return -1;
    int bad = 0;
    for (int kg = w->kg_first; kg < w->kg_end && !bad; kg++) {
        spill_range(lo, hi, kg, p);
        kp_state_iter_seek(it, lo, PREFIX);
        bad = load_group(w, p, t, it, lo);
    }
    if (kp_state_iter_close(it, err, sizeof err) != 0)
        return kp_subtask_fail(w->op.st, "%s: reading window state: %s", w->op.node->name, err);
    if (bad)
        return kp_subtask_fail(w->op.st, "%s: corrupt or unloadable window state",
                               w->op.node->name);
    return 0;
}

/* Do tables a and b hold the same keys with the same accumulator bytes? */
static int same_content(const window_op *w, kp_keytable *a, kp_keytable *b)
{
    if (a->n != b->n)
        return 0;
    size_t i = 0;
    kp_keyentry *e, *f;
    while ((e = kp_keytable_next(a, &i)))
        if (!(f = kp_keytable_find(b, e->hash, kp_keytable_key(a, e))) ||
            memcmp(kp_keyentry_value(e), kp_keyentry_value(f), w->agg.acc_size) != 0)
            return 0;
    return 1;
}

/* One pane: want = its cached entries plus the partials they do not include; disk = all its
 * entries in RocksDB. */
static int check_pane(window_op *w, pane *p, kp_keytable *want, kp_keytable *disk, char *err,
                      size_t errlen)
{
    kp_keytable_clear(want);
    kp_keytable_clear(disk);
    size_t i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(&p->t, &i))) {
        int created;
        kp_keyentry *c = kp_keytable_upsert(want, e->hash, kp_keytable_key(&p->t, e), &created);
        if (!c)
            return snprintf(err, errlen, "out of memory"), -1;
        memcpy(kp_keyentry_value(c), kp_keyentry_value(e), w->agg.acc_size);
        if (!slot_clean(*entry_slot(w, e)))
            return snprintf(err, errlen, "pane %lld has a dirty entry", (long long)p->end), -1;
    }
    pane bare = {.end = p->end, .from = p->from}; /* no cached entries: every entry counts */
    if (w->state && (read_spilled(w, p, want) != 0 || read_spilled(w, &bare, disk) != 0))
        return snprintf(err, errlen, "reading RocksDB failed"), -1;
    if (!same_content(w, want, disk))
        return snprintf(err, errlen, "pane %lld: RocksDB holds %zu keys, the state has %zu",
                        (long long)p->end, disk->n, want->n),
               -1;
    return 0;
}

int kp_op_window_check_flushed(kp_op *op, char *err, size_t errlen)
{
    window_op *w = (window_op *)op;
    kp_keytable want, disk;
    kp_keytable_init(&want, w->agg.acc_size);
    kp_keytable_init(&disk, w->agg.acc_size);
    int rc = 0;
    for (int i = 0; i < w->npanes && rc == 0; i++)
        rc = check_pane(w, w->panes[i], &want, &disk, err, errlen);
    kp_keytable_free(&want);
    kp_keytable_free(&disk);
    return rc;
}

static _Atomic uint64_t flush_seed;
static _Atomic unsigned flush_one_in;
static _Atomic uint64_t flushes_done;

uint64_t kp_op_window_flush_randomly(uint64_t seed, unsigned one_in)
{
    atomic_store(&flush_seed, seed);
    atomic_store(&flush_one_in, one_in);
    return atomic_exchange(&flushes_done, 0);
}

static int maybe_flush_randomly(window_op *w)
{
    unsigned n = atomic_load_explicit(&flush_one_in, memory_order_relaxed);
    if (!n || kp_rng_next(&w->flush_rng) % n != 0)
        return 0;
    char err[256];
    /* both ways of writing, whatever the size */
    if (flush_panes(w, kp_rng_next(&w->flush_rng) % 2 ? 0 : SIZE_MAX) != 0)
        return -1;
    if (kp_op_window_check_flushed(&w->op, err, sizeof err) != 0)
        return kp_subtask_fail(w->op.st, "%s: after a flush: %s", w->op.node->name, err);
    atomic_fetch_add_explicit(&flushes_done, 1, memory_order_relaxed);
    return 0;
}

/* ---- records ----------------------------------------------------------------------------- */

static int late_record(window_op *w, kp_event *ev)
{
    atomic_fetch_add_explicit(&w->op.st->metrics->late_records, 1, memory_order_relaxed);
    for (int i = 0; i < w->nlate; i++)
        if (w->late[i]->vt->record(w->late[i], ev) != 0)
            return -1;
    return 0;
}

/* A record landed in pane p, counting for the windows ending at p->from .. last: fire again,
 * for this key, those that already fired (end - 1 <= W). They are not purged: the record is
 * not late for them, so end - 1 + lateness > its cwm >= W. */
static int refire(window_op *w, const pane *p, kp_time last, uint64_t hash, kp_bytes key,
                  kp_time cwm)
{
    for (kp_time end = p->from; end - 1 <= w->wm; end += w->slide) {
        int found = window_value(w, end, hash, key, w->acc_tmp);
        if (found < 0)
            return -1;
        kp_window win = window_at(w, end);
        if (found && kp_agg_emit(&w->agg, &w->op, &w->doc, &win, key, w->acc_tmp, cwm) != 0)
            return -1;
        if ((uint64_t)last - (uint64_t)end < (uint64_t)w->slide)
            break; /* end was the last window */
    }
    return 0;
}

/* The first window end from `first` on that a record with carried watermark cwm is not late
 * for; the caller knows there is one (its last window, at most). Rare: only records late for
 * some of their windows get here. */
static kp_time first_not_late(const window_op *w, kp_time cwm)
{
    /* not late: end - 1 + lateness > cwm, i.e. end > cwm - lateness + 1. cwm >= first - 1 +
     * lateness (late for the first window), so the difference does not underflow, and
     * cwm < KP_TIME_MAX (not late for the last window), so the sum does not overflow. */
    return grid_after(w, cwm - w->lateness + 1);
}

static int window_record(kp_op *op, kp_event *ev)
{
    window_op *w = (window_op *)op;
    kp_time pe = pane_end_of(w, ev->ts < w->t_hi ? ev->ts : w->t_hi);
    kp_time last = last_window(w, pe);
    if (kp_past_lateness(last - 1, w->lateness, ev->cwm))
        return late_record(w, ev);
    kp_time from = first_window(w, pe);
    if (kp_past_lateness(from - 1, w->lateness, ev->cwm))
        from = first_not_late(w, ev->cwm); /* a sub-pane */
    pane *p = get_pane(w, pe, from);
    uint64_t hash = kp_event_hash(ev);
    if (p && room_for_key(w, p, hash, ev->key) != 0)
        return -1;
    int created;
    kp_keyentry *e = p ? pane_upsert(w, p, hash, ev->key, &created) : NULL;
    if (!e)
        return kp_subtask_fail(op->st, "%s: out of memory for window state", op->node->name);
    if (created)
        kp_agg_init(&w->agg, kp_keyentry_value(e));
    else if (*entry_hits(w, e) < UINT32_MAX)
        ++*entry_hits(w, e); /* stays cached at the next sweep (spill_pane) */
    *entry_slot(w, e) |= SLOT_DIRTY;
    kp_agg_add(&w->agg, kp_keyentry_value(e), ev);
    if (w->incremental && w->run_hi != KP_TIME_MIN && covers(w, w->run_hi, p)) {
        int fresh;
        kp_keyentry *r = kp_keytable_upsert(&w->running, hash, ev->key, &fresh);
        if (!r)
            return kp_subtask_fail(op->st, "%s: out of memory", op->node->name);
        (*(int64_t *)kp_keyentry_value(r))++; /* a count for windows already fired */
    }
    if (from - 1 <= w->wm && refire(w, p, last, hash, ev->key, ev->cwm) != 0)
        return -1;
    if (created && make_room(w) != 0)
        return -1;
    return maybe_flush_randomly(w);
}

/* Adds this subtask's peak cache and RocksDB memory to the job's metrics. */
static void report_memory(window_op *w)
{
    kp_metrics *m = w->op.st->metrics;
    atomic_fetch_add_explicit(&m->state_cache_peak, (long long)w->cache_peak, memory_order_relaxed);
    kp_state_peak_report(&w->rocks, w->state, m);
}

static int window_finish(kp_op *op)
{
    window_op *w = (window_op *)op;
    if (window_watermark(op, KP_TIME_MAX) != 0)
        return -1;
    report_memory(w);
    for (int i = 0; i < w->nlate; i++)
        if (w->late[i]->vt->finish(w->late[i]) != 0)
            return -1;
    return kp_op_emit_finish(op);
}

static int window_idle(kp_op *op)
{
    window_op *w = (window_op *)op;
    for (int i = 0; i < w->nlate; i++)
        if (w->late[i]->vt->idle(w->late[i]) != 0)
            return -1;
    return kp_op_emit_idle(op);
}

static void window_destroy(kp_op *op)
{
    window_op *w = (window_op *)op;
    for (int i = 0; i < w->npanes; i++)
        free_pane(w, w->panes[i], 0); /* the state is closed below, spilled partials and all */
    free(w->panes);
    kp_keytable_free(&w->merged);
    kp_keytable_free(&w->running);
    kp_doc_free(&w->doc);
    kp_buf_free(&w->kbuf);
    kp_buf_free(&w->runbuf);
    free(w->sorted);
    free(w->group_runs);
    free(w->acc_tmp);
    free(w->spill_tmp);
    if (w->batch)
        kp_state_batch_free(w->batch);
    kp_state_close(w->state);
    free(w);
}

/* ---- checkpoints (keyed_db.h, docs/state.md "Checkpoints and restore") ------------------ */

/* The operator's state outside RocksDB is a kp_keyed_blob: its watermark and the spill
 * sequence (a restored pane's entries keep theirs; new spills must not reuse one). The
 * running window of sliding counts is rebuilt from the panes at the next firing; the cache is
 * only a cache. */
static int window_barrier(kp_op *op, struct kp_snapshot *snap)
{
    window_op *w = (window_op *)op;
    if (kp_op_window_flush(op) != 0)
        return -1;
    /* no database yet: nothing was ever spilled or flushed, so there are no panes either */
    if (w->state &&
        kp_keyed_db_snapshot(op->st, op->node, w->state, w->kg_first, w->kg_end, snap) != 0)
        return -1;
    kp_keyed_blob b = {.spill_seq = w->spill_seq, .wm = w->wm};
    if (kp_keyed_blob_write(op->st, op->node, w->kg_first, w->kg_end, snap, b) != 0)
        return -1;
    return kp_keyed_pass_barrier(op, w->late, w->nlate, snap);
}

/* The panes that have entries in our key groups of the restored database, as spilled panes
 * (their entries are read back when they fire): one seek per (key group, pane). */
static int find_restored_panes(window_op *w)
{
    uint8_t lo[2] = {(uint8_t)(w->kg_first >> 8), (uint8_t)w->kg_first},
            hi[2] = {(uint8_t)(w->kg_end >> 8), (uint8_t)w->kg_end}, first[PREFIX], next[PREFIX];
    kp_state_iter *it = kp_state_iter_open(w->state, w->cf, lo, 2, hi, 2);
    if (!it)
        return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
    int bad = 0;
    while (!bad && kp_state_iter_valid(it)) {
        size_t klen;
        const uint8_t *k = kp_state_iter_key(it, &klen);
        if (klen < ENTRY_HEAD) {
            bad = 1;
            break;
        }
        int kg = k[0] << 8 | k[1];
        kp_time end = (kp_time)(be_bytes(k, klen, 2, 8) ^ (1ull << 63));
        kp_time from = (kp_time)(be_bytes(k, klen, 10, 8) ^ (1ull << 63));
        pane *p = get_pane(w, end, from);
        if (!p) {
            kp_state_iter_close(it, NULL, 0);
            return kp_subtask_fail(w->op.st, "%s: out of memory", w->op.node->name);
        }
        p->spilled = 1;
        spill_range(first, next, kg, p);
        kp_state_iter_seek(it, next, PREFIX);
    }
    char err[512];
    if (kp_state_iter_close(it, err, sizeof err) != 0)
        return kp_subtask_fail(w->op.st, "%s: restore: %s", w->op.node->name, err);
    if (bad)
        return kp_subtask_fail(w->op.st, "%s: restore: a malformed key in the window state",
                               w->op.node->name);
    w->hot = NULL;
    return 0;
}

/* Restores the operator from st->restore: its database, its panes, its watermark. */
static int restore_window(window_op *w)
{
    int restored;
    kp_keyed_blob b;
    if (open_state(w, &restored) != 0 ||
        kp_keyed_blob_read(w->op.st, w->op.node, w->kg_first, w->kg_end, restored, &b) != 0)
        return -1;
    w->wm = b.wm;
    w->spill_seq = b.spill_seq;
    return restored ? find_restored_panes(w) : 0;
}

/* Window and session operators start with the same header (kp_op, late[], nlate): a tick
 * goes to the late side outputs as well as the main ones. */
typedef struct late_header {
    kp_op op;
    kp_op *late[KP_MAX_OUTPUTS];
    int nlate;
} late_header;

int kp_op_window_tick(kp_op *op, kp_time now)
{
    late_header *h = (late_header *)op;
    for (int i = 0; i < h->nlate; i++)
        if (kp_op_tick(h->late[i], now) != 0)
            return -1;
    for (int i = 0; i < op->nout; i++)
        if (kp_op_tick(op->out[i], now) != 0)
            return -1;
    return 0;
}

/* The clock: the state size for the live counters, then the outputs' ticks. */
static int window_tick(kp_op *op, kp_time now)
{
    window_op *w = (window_op *)op;
    kp_live_state(op->st->live, &w->state_reported, &w->state_next, kp_mono_ms(),
                  (long long)(w->cache_bytes + kp_state_disk_bytes(w->state)));
    kp_state_peak_sample(&w->rocks, w->state, kp_mono_ms());
    return kp_op_window_tick(op, now);
}

static int window_complete(kp_op *op, int64_t id)
{
    window_op *w = (window_op *)op;
    return kp_keyed_pass_complete(op, w->late, w->nlate, id);
}

static const kp_op_vt window_vt = {.record = window_record,
                                   .watermark = window_watermark,
                                   .idle = window_idle,
                                   .finish = window_finish,
                                   .destroy = window_destroy,
                                   .tick = window_tick,
                                   .barrier = window_barrier,
                                   .checkpoint_complete = window_complete};

kp_op *kp_op_window_new(kp_subtask *st, const kp_node *n)
{
    const kp_window_spec *s = &n->u.window.spec;
    window_op *w = calloc(1, sizeof *w);
    if (!w) {
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    w->op = (kp_op){.vt = &window_vt, .node = n, .st = st};
    kp_agg_setup(&w->agg, n->u.window.aggregate);
    w->hits_off = (w->agg.acc_size + 3) & ~(size_t)3;
    w->slot_off = w->hits_off + sizeof(uint32_t);
    w->flush_rng =
        (atomic_load(&flush_seed) ^ (uint64_t)(st->index + 1) * 0x9e3779b97f4a7c15ull) | 1;
    w->size = s->size;
    w->slide = s->kind == KP_WINDOW_TUMBLING ? s->size : s->slide;
    w->gran = gcd64(w->size, w->slide);
    w->tumbling = w->size == w->slide;
    w->off_slide = mod_pos(s->offset, w->slide);
    w->off_gran = mod_pos(s->offset, w->gran);
    /* the last window end is grid_floor(KP_TIME_MAX); the last pane all of whose windows end
     * by it ends at that end + slide - size */
    w->t_hi = grid_floor(w, KP_TIME_MAX) - (w->size - w->slide) - 1;
    w->lateness = n->u.window.opts.allowed_lateness;
    w->wm = KP_TIME_MIN;
    w->cache_limit = st->state_cache_bytes ? st->state_cache_bytes : 256u << 20;
    w->kg_first = kp_key_group_first(st->index, st->job->max_parallelism, st->parallelism);
    w->kg_end = kp_key_group_first(st->index + 1, st->job->max_parallelism, st->parallelism);
    kp_keytable_init(&w->merged, w->agg.acc_size);
    kp_keytable_init(&w->running, sizeof(int64_t));
    w->incremental = w->agg.kind == KP_AGG_COUNT && w->size != w->gran;
    w->run_hi = KP_TIME_MIN;
    w->acc_tmp = malloc(w->agg.acc_size);
    w->spill_tmp = malloc(w->agg.acc_size);
    if (!w->acc_tmp || !w->spill_tmp) {
        window_destroy(&w->op);
        kp_subtask_fail(st, "%s: out of memory", n->name);
        return NULL;
    }
    if (kp_keyed_restoring(st, n) && restore_window(w) != 0) {
        window_destroy(&w->op);
        return NULL;
    }
    return &w->op;
}

void kp_op_window_set_late(kp_op *op, kp_op *late)
{
    /* both window kinds start with the same header: kp_op, late[], nlate */
    window_op *w = (window_op *)op;
    if (w->nlate < KP_MAX_OUTPUTS)
        w->late[w->nlate++] = late;
}
