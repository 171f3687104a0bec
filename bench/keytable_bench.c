/* The in-memory key table alone (runtime/keytable.c): cost of an upsert with the keys one
 * subtask of p owns, so that a table indexed by the same hash bits as the key groups shows up
 * (defect 2 of issue 7: the home slot taken from the hash's low bits, which kp_key_group also
 * uses, left a subtask of p only 1/p of the home slots).
 *
 * For each key count N and each p in 1, 2, 4: N distinct keys "item_<i>" whose key group
 * (kp_hash64 % 128) is owned by subtask 0 of p are inserted into a table with an 8-byte value
 * (a count, like a tumbling count pane), then `upserts` random upserts over those keys each
 * increment the count. The upserts read a stream of 2^20 records (hash + key bytes, 32 bytes
 * each, cycled), as an operator reads a batch: only the table is timed. Each run is
 * repeated `reps` times (a fresh table each time); the thread's CPU time per upsert is
 * printed as min / median / max over the repetitions, with wall time for comparison, and the
 * mean number of slots a lookup probes (kp_keytable_mean_probes: independent of machine load,
 * so it shows clustering even when the timings are noisy).
 *
 *     keytable_bench [upserts=10000000] [keys=100000,1000000] [reps=3] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/keygroup.h"
#include "../runtime/keytable.h"
#include "../runtime/rng.h"

#define MAX_PARALLELISM 128

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    return kp_rng_next(&rng_state);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct keyset {
    char *text; /* keys back to back */
    uint32_t *off;
    uint64_t *hash;
    long n;
} keyset;

/* The first n keys "item_<i>" that subtask 0 of p owns. */
static int make_keys(keyset *ks, long n, int p)
{
    ks->text = malloc((size_t)n * 24);
    ks->off = malloc(((size_t)n + 1) * sizeof *ks->off);
    ks->hash = malloc((size_t)n * sizeof *ks->hash);
    if (!ks->text || !ks->off || !ks->hash)
        return -1;
    size_t pos = 0;
    ks->n = 0;
    for (long i = 0; ks->n < n; i++) {
        char *k = ks->text + pos;
        int len = snprintf(k, 24, "item_%ld", i);
        uint64_t h = kp_hash64(k, (size_t)len);
        int kg = kp_key_group(h, MAX_PARALLELISM);
        if (kp_key_group_owner(kg, MAX_PARALLELISM, p) != 0)
            continue;
        ks->off[ks->n] = (uint32_t)pos;
        ks->hash[ks->n] = h;
        ks->n++;
        pos += (size_t)len;
    }
    ks->off[n] = (uint32_t)pos;
    return 0;
}

static void free_keys(keyset *ks)
{
    free(ks->text);
    free(ks->off);
    free(ks->hash);
}

/* What an operator sees per record: the key's bytes (just parsed, so in cache) and its hash.
 * The records stream through sequentially, as a batch does. */
typedef struct rec {
    uint64_t hash;
    uint32_t len;
    char key[20];
} rec;

#define STREAM_LEN (1L << 20)

/* One run: insert the keys, then `upserts` upserts taken cyclically from `stream`. Returns
 * CPU ns per upsert (-1 on allocation failure); *wall_ns gets the wall time per upsert. */
static double run(const keyset *ks, const rec *stream, long upserts, double *wall_ns,
                  double *probes)
{
    kp_keytable t;
    kp_keytable_init(&t, sizeof(int64_t));
    int created;
    for (long i = 0; i < ks->n; i++) {
        kp_bytes key = {ks->text + ks->off[i], ks->off[i + 1] - ks->off[i]};
        if (!kp_keytable_upsert(&t, ks->hash[i], key, &created))
            return -1;
    }
    double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
    for (long r = 0; r < upserts; r++) {
        const rec *x = &stream[r & (STREAM_LEN - 1)];
        kp_keyentry *e = kp_keytable_upsert(&t, x->hash, (kp_bytes){x->key, x->len}, &created);
        if (!e)
            return -1;
        (*(int64_t *)kp_keyentry_value(e))++;
    }
    double cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0, wall = clock_s(CLOCK_MONOTONIC) - w0;
    *probes = kp_keytable_mean_probes(&t);
    kp_keytable_free(&t);
    *wall_ns = 1e9 * wall / (double)upserts;
    return 1e9 * cpu / (double)upserts;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long upserts = argc > 1 ? atol(argv[1]) : 10000000;
    const char *sizes = argc > 2 ? argv[2] : "100000,1000000";
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    if (upserts <= 0 || reps <= 0 || reps > 100) {
        fprintf(stderr, "usage: keytable_bench [upserts>0] [keys,keys,...] [reps 1..100]\n");
        return 2;
    }
    rec *stream = malloc(STREAM_LEN * sizeof *stream);
    if (!stream)
        return 1;
    printf("# random upserts into one key table (8-byte value), keys of subtask 0 of p;"
           " CPU ns per upsert min/median/max over %d runs, %ld upserts each\n",
           reps, upserts);
    for (const char *s = sizes; *s;) {
        long n = strtol(s, (char **)&s, 10);
        if (*s == ',')
            s++;
        if (n <= 0)
            break;
        for (int p = 1; p <= 4; p *= 2) {
            keyset ks;
            if (make_keys(&ks, n, p) != 0)
                return 1;
            rng_state = 0x9e3779b97f4a7c15ull;
            for (long r = 0; r < STREAM_LEN; r++) {
                long i = (long)(rng() % (uint64_t)n);
                rec *x = &stream[r];
                x->hash = ks.hash[i];
                x->len = ks.off[i + 1] - ks.off[i];
                memcpy(x->key, ks.text + ks.off[i], x->len);
            }
            double cpu[100], wall[100], probes = 0;
            for (int r = 0; r < reps; r++)
                if ((cpu[r] = run(&ks, stream, upserts, &wall[r], &probes)) < 0)
                    return 1;
            qsort(cpu, (size_t)reps, sizeof *cpu, cmp_double);
            qsort(wall, (size_t)reps, sizeof *wall, cmp_double);
            printf("keys=%-8ld p=%d cpu_ns/upsert=%.1f/%.1f/%.1f wall_ns/upsert=%.1f/%.1f/%.1f "
                   "mean_probes=%.2f\n",
                   n, p, cpu[0], cpu[reps / 2], cpu[reps - 1], wall[0], wall[reps / 2],
                   wall[reps - 1], probes);
            fflush(stdout);
            free_keys(&ks);
        }
    }
    free(stream);
    return 0;
}
