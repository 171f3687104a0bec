/*
 * kappa-gen's event model: which user clicked which item when, deterministically for a seed.
 *
 * Why it is built this way:
 * - Reproducible: one xoshiro256** stream seeded through splitmix64, and every event draws
 *   exactly five numbers whatever the options. So two runs that differ only in
 *   --late-fraction or --malformed pick the same users, items and jitter for every event and
 *   differ only in the events that became late or malformed; tests use that to check the
 *   truth event by event.
 * - Event time is a function of the event's index: base(i) = start + i * span / count, so a
 *   run covers exactly the requested span whatever the count, minus the jitter and lateness.
 *   The one exception, --live-timestamps (latency benchmarks), takes the base time from the
 *   wall clock when the event is made (after pacing): event time = production time.
 * - Late events: a --late-fraction of the events is moved back by --late-lag-ms plus up to an
 *   hour, from the very first event on. The model does not decide whether such an event is
 *   late: that depends on the partition it lands in and on the events before it there, so
 *   the truth (gen_truth.c) judges every valid event by the engine's rule for its partition.
 *   The model is therefore stateless apart from its PRNG: event i is a function of (options,
 *   seed, i) and not of the partitioning.
 * - Partitioners are functions of (event index, key), documented in --help, so a reader can
 *   recompute every event's partition from the output alone.
 * - Rendering writes into the event struct with hand-rolled integer formatting: no malloc and
 *   no printf on the per-event path.
 */
#include "gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KP_GEN_MALFORMED_KINDS 5

struct kp_gen_model_s {
    const kp_gen_opts_t *o;
    uint64_t s[4];   /* xoshiro256** state */
    double *cdf;     /* Zipf CDF over items (NULL when --skew 0) */
    uint64_t span_q; /* span / count */
    uint64_t span_r; /* span % count */
    double malformed_below;
    double late_below;
};

/* Milliseconds since the epoch (CLOCK_REALTIME, vDSO: no syscall per event). */
static int64_t kp_gen_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t kp_gen_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t kp_gen_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t kp_gen_rand(kp_gen_model_t *m)
{
    uint64_t *s = m->s;
    uint64_t result = kp_gen_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = kp_gen_rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1). */
static inline double kp_gen_unit(uint64_t r)
{
    return (double)(r >> 11) * 0x1.0p-53;
}

static double *kp_gen_zipf_cdf(uint64_t n, double s)
{
    double *cdf = malloc(n * sizeof(*cdf));
    if (cdf == NULL)
        return NULL;
    double sum = 0;
    for (uint64_t k = 0; k < n; k++) {
        sum += pow((double)(k + 1), -s);
        cdf[k] = sum;
    }
    for (uint64_t k = 0; k < n; k++)
        cdf[k] /= sum;
    cdf[n - 1] = 1.0;
    return cdf;
}

kp_gen_model_t *kp_gen_model_create(const kp_gen_opts_t *opts)
{
    kp_gen_model_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->o = opts;
    uint64_t x = opts->seed;
    for (int k = 0; k < 4; k++)
        m->s[k] = kp_gen_splitmix64(&x);
    if (opts->skew > 0 && opts->items > 1) {
        m->cdf = kp_gen_zipf_cdf(opts->items, opts->skew);
        if (m->cdf == NULL) {
            free(m);
            return NULL;
        }
    }
    m->span_q = (uint64_t)opts->span_ms / opts->count;
    m->span_r = (uint64_t)opts->span_ms % opts->count;
    m->malformed_below = opts->malformed;
    m->late_below = opts->malformed + opts->late_fraction;
    return m;
}

void kp_gen_model_destroy(kp_gen_model_t *m)
{
    if (m == NULL)
        return;
    free(m->cdf);
    free(m);
}

/* Item number 1..items for a uniform draw r. */
static uint64_t kp_gen_pick_item(const kp_gen_model_t *m, uint64_t r)
{
    if (m->cdf == NULL)
        return 1 + r % m->o->items;
    double u = kp_gen_unit(r);
    uint64_t lo = 0, hi = m->o->items - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (m->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo + 1;
}

/* ---- rendering: no printf, no malloc ---- */

static char *kp_gen_put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static char *kp_gen_put_i64(char *p, int64_t v)
{
    if (v >= 0)
        return kp_gen_put_u64(p, (uint64_t)v);
    *p++ = '-';
    return kp_gen_put_u64(p, (uint64_t)0 - (uint64_t)v);
}

#define KP_GEN_PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/* Which fields a rendered object has, and how the timestamp is written. */
enum {
    KP_GEN_F_ITEM = 1,
    KP_GEN_F_TS = 2,
    KP_GEN_F_TS_STRING = 4,
};

static size_t kp_gen_render_json(kp_gen_event_t *ev, int fields)
{
    char *p = ev->line;
    p = KP_GEN_PUT_LIT(p, "{\"user_id\":\"user_");
    p = kp_gen_put_u64(p, ev->user);
    *p++ = '"';
    if (fields & KP_GEN_F_ITEM) {
        p = KP_GEN_PUT_LIT(p, ",\"item_id\":\"item_");
        p = kp_gen_put_u64(p, ev->item);
        *p++ = '"';
    }
    if (fields & KP_GEN_F_TS) {
        p = KP_GEN_PUT_LIT(p, ",\"timestamp\":");
        if (fields & KP_GEN_F_TS_STRING)
            *p++ = '"';
        p = kp_gen_put_i64(p, ev->ts_ms);
        if (fields & KP_GEN_F_TS_STRING)
            *p++ = '"';
    }
    *p++ = '}';
    return (size_t)(p - ev->line);
}

static size_t kp_gen_render_garbage(kp_gen_event_t *ev, uint64_t r)
{
    static const char hex[] = "0123456789abcdef";
    char *p = KP_GEN_PUT_LIT(ev->line, "kp-garbage ");
    for (int k = 0; k < 16; k++)
        *p++ = hex[(r >> (60 - 4 * k)) & 0xf];
    return (size_t)(p - ev->line);
}

/* One of five kinds of invalid message, chosen by r. */
static size_t kp_gen_render_malformed(kp_gen_event_t *ev, uint64_t r)
{
    const int all = KP_GEN_F_ITEM | KP_GEN_F_TS;
    switch (r % KP_GEN_MALFORMED_KINDS) {
    case 0: { /* truncated: any proper prefix of an object is not JSON */
        size_t len = kp_gen_render_json(ev, all);
        return 1 + (size_t)((r >> 8) % (len - 1));
    }
    case 1:
        return kp_gen_render_garbage(ev, r);
    case 2:
        return kp_gen_render_json(ev, KP_GEN_F_ITEM);
    case 3:
        return kp_gen_render_json(ev, KP_GEN_F_TS);
    default:
        return kp_gen_render_json(ev, all | KP_GEN_F_TS_STRING);
    }
}

/* Event time moved back by the late lag and a spread of 0..KP_GEN_LATE_SPREAD_MS. */
static int64_t kp_gen_late_ts(const kp_gen_model_t *m, int64_t base, uint64_t r)
{
    return base - m->o->late_lag_ms - (int64_t)(r % (KP_GEN_LATE_SPREAD_MS + 1));
}

void kp_gen_model_next(kp_gen_model_t *m, uint64_t i, kp_gen_event_t *ev)
{
    const kp_gen_opts_t *o = m->o;
    /* Always five draws per event, in this order: see the file comment. */
    uint64_t r_kind = kp_gen_rand(m);
    uint64_t r_user = kp_gen_rand(m);
    uint64_t r_item = kp_gen_rand(m);
    uint64_t r_jitter = kp_gen_rand(m);
    uint64_t r_extra = kp_gen_rand(m);

    int64_t base = o->live_timestamps
                       ? kp_gen_wall_ms()
                       : o->start_time_ms + (int64_t)(i * m->span_q + i * m->span_r / o->count);
    ev->user = 1 + r_user % o->users;
    ev->item = kp_gen_pick_item(m, r_item);
    ev->ts_ms = base;
    if (o->out_of_order_ms > 0)
        ev->ts_ms -= (int64_t)(r_jitter % ((uint64_t)o->out_of_order_ms + 1));

    char *k = KP_GEN_PUT_LIT(ev->key, "user_");
    ev->key_len = (size_t)(kp_gen_put_u64(k, ev->user) - ev->key);

    double u = kp_gen_unit(r_kind);
    if (u < m->malformed_below) {
        ev->kind = KP_GEN_EV_MALFORMED;
        ev->line_len = kp_gen_render_malformed(ev, r_extra);
        return;
    }
    ev->kind = KP_GEN_EV_ONTIME;
    if (u < m->late_below) {
        ev->kind = KP_GEN_EV_LATE;
        ev->ts_ms = kp_gen_late_ts(m, base, r_extra);
    }
    ev->line_len = kp_gen_render_json(ev, KP_GEN_F_ITEM | KP_GEN_F_TS);
}

/* Java's org.apache.kafka.common.utils.Utils.murmur2, which librdkafka's murmur2 partitioners
 * reproduce: the partition a keyed message lands in with partitioner=murmur2_random. */
static uint32_t kp_gen_murmur2(const unsigned char *data, size_t len)
{
    const uint32_t mul = 0x5bd1e995;
    uint32_t h = 0x9747b28cU ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        const unsigned char *d = data + i * 4;
        uint32_t k =
            (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
        k *= mul;
        k ^= k >> 24;
        k *= mul;
        h *= mul;
        h ^= k;
    }
    const unsigned char *tail = data + n4 * 4;
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8; /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= mul;
    }
    h ^= h >> 13;
    h *= mul;
    h ^= h >> 15;
    return h;
}

int32_t kp_gen_partition_of(const char *key, size_t len, int32_t partition_cnt)
{
    uint32_t h = kp_gen_murmur2((const unsigned char *)key, len);
    return (int32_t)((h & 0x7fffffff) % (uint32_t)partition_cnt);
}

int32_t kp_gen_partition_pick(kp_gen_partitioner_t p, uint64_t i, uint64_t count,
                              const kp_gen_event_t *ev, int32_t partition_cnt)
{
    uint64_t n = (uint64_t)partition_cnt;
    switch (p) {
    case KP_GEN_PART_ROUND_ROBIN:
        return (int32_t)(i % n);
    case KP_GEN_PART_RANGE:
        if (n < 2 || i * KP_GEN_RANGE_DIV < count)
            return (int32_t)(i % n);
        return (int32_t)(1 + i % (n - 1));
    case KP_GEN_PART_HASH:
    default:
        return kp_gen_partition_of(ev->key, ev->key_len, partition_cnt);
    }
}

const char *kp_gen_partitioner_name(kp_gen_partitioner_t p)
{
    switch (p) {
    case KP_GEN_PART_ROUND_ROBIN:
        return "round-robin";
    case KP_GEN_PART_RANGE:
        return "range";
    case KP_GEN_PART_HASH:
    default:
        return "hash";
    }
}
