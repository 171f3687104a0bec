/*
 * kappa-gen's truth: how many clicks each item got in each tumbling window that an engine
 * following kappa's lateness rule must count, computed by the generator itself while it
 * emits, so the engine's answer can be checked against numbers the engine had no hand in.
 *
 * The rule (docs/semantics.md), applied per partition exactly as the engine's source does:
 * each partition p keeps max_ts[p], the largest event time of the VALID events emitted to p
 * so far (malformed ones do not advance it). An event's carried watermark is
 *   cwm = max_ts[p] - out_of_order - 1,  or INT64_MIN (KP_TIME_MIN) before p's first valid event,
 * taken before the event itself is accounted. A valid event is late iff, for its tumbling
 * window [start, end),  end - 1 + allowed_lateness <= cwm.
 * With --filter-users-above, events of users numbered at or below it are filtered BEFORE the
 * rule and do not advance max_ts (the corrected job drops them in its decoder, before the
 * source's watermark sees them).
 * Counted: valid, non-late events of users whose number is > --filter-users-above. Not
 * counted: malformed messages and late events. Whether an event is late depends only on the
 * events before it in its own partition, never on timing, so the truth is exact for any
 * interleaving of the partitions an engine may see.
 *
 * Storage is an open-addressing hash table keyed by (item, window_start) with linear probing.
 * Distinct (item, window) pairs are bounded by items x windows-in-span, and the table only
 * grows by doubling, so there is no allocation per event.
 *
 * File format (also in `kappa-gen --help`):
 *   # kappa-gen truth: item_id<TAB>window_start<TAB>window_end<TAB>click_count
 *   # events=N valid=N malformed=N late=N filter_users_above=N window_ms=W
 *   # counted=N filtered=N seed=N
 *   # rule: partitions=N partitioner=P out_of_order_ms=O allowed_lateness_ms=L moved_back=N
 *   # partition=P messages=N late=N max_ts=T          (one line per partition)
 *   item_1<TAB>1699999200000<TAB>1700002800000<TAB>42
 *   ...
 * One line per (item, window) with a count > 0, sorted by item_id in byte order (as
 * LC_ALL=C sort: item_10 before item_2) then by window_start. window_start = ts - (ts mod W)
 * (floored for negative ts), window_end = window_start + W, exclusive as in Flink.
 * counted = sum of click_count = valid - late - filtered. max_ts is empty ("-") for a
 * partition without valid events.
 */
#include "gen.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KP_GEN_TRUTH_INITIAL_CAP 4096

typedef struct kp_gen_cell_s {
    int64_t wstart;
    uint64_t item; /* 0 = empty slot */
    uint64_t count;
} kp_gen_cell_t;

struct kp_gen_truth_s {
    kp_gen_truth_conf_t conf;
    int64_t window_ms;
    uint64_t filter_users_above;
    kp_gen_part_totals_t *parts; /* conf.partitions */
    kp_gen_cell_t *cells;
    size_t cap; /* power of two */
    size_t used;
    kp_gen_totals_t totals;
};

kp_gen_truth_t *kp_gen_truth_create(const kp_gen_truth_conf_t *conf)
{
    kp_gen_truth_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->conf = *conf;
    t->window_ms = conf->window_ms;
    t->filter_users_above = conf->filter_users_above;
    t->cells = calloc(KP_GEN_TRUTH_INITIAL_CAP, sizeof(*t->cells));
    t->parts = calloc((size_t)conf->partitions, sizeof(*t->parts));
    if (t->cells == NULL || t->parts == NULL) {
        kp_gen_truth_destroy(t);
        return NULL;
    }
    for (int32_t p = 0; p < conf->partitions; p++)
        t->parts[p].max_ts = INT64_MIN;
    t->cap = KP_GEN_TRUTH_INITIAL_CAP;
    return t;
}

void kp_gen_truth_destroy(kp_gen_truth_t *t)
{
    if (t == NULL)
        return;
    free(t->parts);
    free(t->cells);
    free(t);
}

static inline size_t kp_gen_cell_hash(uint64_t item, int64_t wstart)
{
    uint64_t z = item * 0x9e3779b97f4a7c15ULL ^ (uint64_t)wstart;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(z ^ (z >> 31));
}

/* The slot holding (item, wstart), or the empty slot where it belongs. */
static kp_gen_cell_t *kp_gen_cell_find(kp_gen_cell_t *cells, size_t cap, uint64_t item,
                                       int64_t wstart)
{
    size_t i = kp_gen_cell_hash(item, wstart) & (cap - 1);
    while (cells[i].item != 0 && (cells[i].item != item || cells[i].wstart != wstart))
        i = (i + 1) & (cap - 1);
    return &cells[i];
}

static bool kp_gen_truth_grow(kp_gen_truth_t *t)
{
    size_t cap = t->cap * 2;
    kp_gen_cell_t *cells = calloc(cap, sizeof(*cells));
    if (cells == NULL)
        return false;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->cells[i].item != 0)
            *kp_gen_cell_find(cells, cap, t->cells[i].item, t->cells[i].wstart) = t->cells[i];
    }
    free(t->cells);
    t->cells = cells;
    t->cap = cap;
    return true;
}

static int64_t kp_gen_window_start(int64_t ts, int64_t w)
{
    int64_t r = ts % w;
    return r < 0 ? ts - r - w : ts - r;
}

static int64_t kp_gen_sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_sub_overflow(a, b, &r) ? (b > 0 ? INT64_MIN : INT64_MAX) : r;
}

static int64_t kp_gen_sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}

/* The rule of the file comment for a valid event with window start ws in partition part;
 * then the event advances the partition's max_ts. */
static bool kp_gen_judge_late(const kp_gen_truth_t *t, kp_gen_part_totals_t *part, int64_t ts,
                              int64_t ws)
{
    bool late = false;
    if (part->max_ts != INT64_MIN) {
        int64_t cwm = kp_gen_sat_sub(part->max_ts, kp_gen_sat_add(t->conf.out_of_order_ms, 1));
        int64_t end = kp_gen_sat_add(ws, t->window_ms);
        late = kp_gen_sat_add(end - 1, t->conf.allowed_lateness_ms) <= cwm;
    }
    if (ts > part->max_ts)
        part->max_ts = ts;
    return late;
}

bool kp_gen_truth_add(kp_gen_truth_t *t, const kp_gen_event_t *ev)
{
    kp_gen_part_totals_t *part = &t->parts[ev->partition];
    t->totals.events++;
    part->events++;
    if (ev->kind == KP_GEN_EV_MALFORMED) {
        t->totals.malformed++;
        return true;
    }
    t->totals.moved_back += ev->kind == KP_GEN_EV_LATE;
    /* filtered users are dropped first, as the corrected job drops them in its decoder: they
     * never reach the source's watermark, so they do not advance the partition's either */
    if (ev->user <= t->filter_users_above) {
        t->totals.filtered++;
        return true;
    }
    int64_t ws = kp_gen_window_start(ev->ts_ms, t->window_ms);
    if (kp_gen_judge_late(t, part, ev->ts_ms, ws)) {
        t->totals.late++;
        part->late++;
        return true;
    }
    if (2 * (t->used + 1) > t->cap && !kp_gen_truth_grow(t))
        return false;
    kp_gen_cell_t *c = kp_gen_cell_find(t->cells, t->cap, ev->item, ws);
    if (c->item == 0) {
        c->item = ev->item;
        c->wstart = ws;
        t->used++;
    }
    c->count++;
    t->totals.counted++;
    return true;
}

const kp_gen_totals_t *kp_gen_truth_totals(const kp_gen_truth_t *t)
{
    return &t->totals;
}

const kp_gen_part_totals_t *kp_gen_truth_partition(const kp_gen_truth_t *t, int32_t p)
{
    return &t->parts[p];
}

/* item_id byte order: compare the decimal digits of the item numbers as strings. */
static int kp_gen_cell_cmp(const void *pa, const void *pb)
{
    const kp_gen_cell_t *a = pa, *b = pb;
    if (a->item != b->item) {
        char da[24], db[24];
        snprintf(da, sizeof(da), "%" PRIu64, a->item);
        snprintf(db, sizeof(db), "%" PRIu64, b->item);
        return strcmp(da, db);
    }
    return (a->wstart > b->wstart) - (a->wstart < b->wstart);
}

/* Move the used cells to the front of the table and sort them. The table is no longer
 * usable for lookups afterwards. */
static size_t kp_gen_truth_compact_sort(kp_gen_truth_t *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->cells[i].item != 0)
            t->cells[n++] = t->cells[i];
    }
    qsort(t->cells, n, sizeof(*t->cells), kp_gen_cell_cmp);
    return n;
}

static void kp_gen_truth_header(const kp_gen_truth_t *t, FILE *f, uint64_t seed)
{
    const kp_gen_totals_t *s = &t->totals;
    fprintf(f, "# kappa-gen truth: item_id<TAB>window_start<TAB>window_end<TAB>click_count\n");
    fprintf(f,
            "# events=%" PRIu64 " valid=%" PRIu64 " malformed=%" PRIu64 " late=%" PRIu64
            " filter_users_above=%" PRIu64 " window_ms=%" PRId64 "\n",
            s->events, s->events - s->malformed, s->malformed, s->late, t->filter_users_above,
            t->window_ms);
    fprintf(f, "# counted=%" PRIu64 " filtered=%" PRIu64 " seed=%" PRIu64 "\n", s->counted,
            s->filtered, seed);
    fprintf(f,
            "# rule: partitions=%" PRId32 " partitioner=%s out_of_order_ms=%" PRId64
            " allowed_lateness_ms=%" PRId64 " moved_back=%" PRIu64 "\n",
            t->conf.partitions, kp_gen_partitioner_name(t->conf.partitioner),
            t->conf.out_of_order_ms, t->conf.allowed_lateness_ms, s->moved_back);
    for (int32_t p = 0; p < t->conf.partitions; p++) {
        const kp_gen_part_totals_t *pt = &t->parts[p];
        char max_ts[24] = "-";
        if (pt->max_ts != INT64_MIN)
            snprintf(max_ts, sizeof(max_ts), "%" PRId64, pt->max_ts);
        fprintf(f, "# partition=%" PRId32 " messages=%" PRIu64 " late=%" PRIu64 " max_ts=%s\n", p,
                pt->events, pt->late, max_ts);
    }
}

int kp_gen_truth_write(kp_gen_truth_t *t, const char *path, uint64_t seed, char *errstr,
                       size_t errstr_size)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        snprintf(errstr, errstr_size, "cannot write truth file %s: %s", path, strerror(errno));
        return -1;
    }
    kp_gen_truth_header(t, f, seed);
    size_t n = kp_gen_truth_compact_sort(t);
    t->used = 0; /* the table is consumed */
    for (size_t i = 0; i < n; i++) {
        const kp_gen_cell_t *c = &t->cells[i];
        fprintf(f, "item_%" PRIu64 "\t%" PRId64 "\t%" PRId64 "\t%" PRIu64 "\n", c->item, c->wstart,
                c->wstart + t->window_ms, c->count);
    }
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        snprintf(errstr, errstr_size, "error writing truth file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
