/* The in-memory key table (runtime/keytable.c) against a brute-force model: random upserts,
 * finds and removals, checking after every step that each key the model holds is found with
 * its value, each removed key is absent, the count is right and iteration visits exactly the
 * live keys once. Hashes come from a tiny pool in some cases so that probe runs are long and
 * wrap around the end of the slot array, which is where backward-shift deletion can go wrong.
 * Memory: removing most keys shrinks the table and its key arena (kp_keytable_bytes).
 *
 * Seeds: a fixed list that always runs, plus one fresh seed per run, printed
 * (KAPPA_TEST_SEED=N runs only N). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../runtime/keygroup.h"
#include "../../runtime/keytable.h"
#include "../../runtime/rng.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    return kp_rng_next(&rng_state);
}

/* ---- the model: key i is "k<i>" padded to a length that depends on i ------------------ */

#define MAX_KEYS 3000

typedef struct model {
    int present[MAX_KEYS];
    uint64_t value[MAX_KEYS];
    uint64_t hash[MAX_KEYS];
    char key[MAX_KEYS][40];
    size_t n;
} model;

static kp_bytes key_of(const model *m, int i)
{
    return (kp_bytes){m->key[i], strlen(m->key[i])};
}

/* pool == 0: real hashes; otherwise hashes from a pool of `pool` values, some of which sit
 * at the very end of the slot array (all high and low bits set). */
static void model_init(model *m, int pool)
{
    memset(m, 0, sizeof *m);
    uint64_t pool_hash[8];
    for (int j = 0; j < 8; j++)
        pool_hash[j] = j < 3 ? ~(uint64_t)j : rnd();
    for (int i = 0; i < MAX_KEYS; i++) {
        snprintf(m->key[i], sizeof m->key[i], "k%d%.*s", i, i % 23, "______________________");
        kp_bytes k = key_of(m, i);
        m->hash[i] = pool ? pool_hash[rnd() % (uint64_t)pool] : kp_hash64(k.ptr, k.len);
    }
}

static void check(const kp_keytable *t, const model *m, int nkeys, uint64_t seed, long step)
{
    cr_assert_eq(t->n, m->n, "seed %" PRIu64 " step %ld: n %zu, model %zu", seed, step, t->n, m->n);
    for (int i = 0; i < nkeys; i++) {
        kp_keyentry *e = kp_keytable_find(t, m->hash[i], key_of(m, i));
        if (!m->present[i]) {
            cr_assert_null(e, "seed %" PRIu64 " step %ld: removed key %s found", seed, step,
                           m->key[i]);
            continue;
        }
        cr_assert_not_null(e, "seed %" PRIu64 " step %ld: key %s lost", seed, step, m->key[i]);
        kp_bytes k = kp_keytable_key(t, e);
        cr_assert(k.len == strlen(m->key[i]) && !memcmp(k.ptr, m->key[i], k.len),
                  "seed %" PRIu64 " step %ld: key bytes of %s wrong", seed, step, m->key[i]);
        uint64_t v;
        memcpy(&v, kp_keyentry_value(e), sizeof v);
        cr_assert_eq(v, m->value[i], "seed %" PRIu64 " step %ld: value of %s", seed, step,
                     m->key[i]);
    }
    size_t seen = 0, i = 0;
    kp_keyentry *e;
    while ((e = kp_keytable_next(t, &i))) {
        kp_bytes k = kp_keytable_key(t, e);
        char text[40] = {0};
        memcpy(text, k.ptr, k.len < sizeof text - 1 ? k.len : sizeof text - 1);
        int id = atoi(text + 1);
        cr_assert(id >= 0 && id < MAX_KEYS && m->present[id],
                  "seed %" PRIu64 " step %ld: iteration visits a dead key", seed, step);
        seen++;
    }
    cr_assert_eq(seen, m->n, "seed %" PRIu64 " step %ld: iteration saw %zu of %zu", seed, step,
                 seen, m->n);
}

/* Random operations over `nkeys` keys; checks the whole table every `every` steps. */
static void run_random(uint64_t seed, int pool, int nkeys, long steps, long every)
{
    static model m;
    rng_state = seed ? seed : 1;
    model_init(&m, pool);
    kp_keytable t;
    kp_keytable_init(&t, sizeof(uint64_t));
    for (long s = 0; s < steps; s++) {
        int i = (int)(rnd() % (uint64_t)nkeys);
        /* phases: mostly inserting, then mostly removing, so the table grows and shrinks */
        int remove_pct = (s / (steps / 6 + 1)) % 2 ? 70 : 30;
        if ((int)(rnd() % 100) < remove_pct) {
            kp_keyentry *e = kp_keytable_find(&t, m.hash[i], key_of(&m, i));
            cr_assert_eq(e != NULL, m.present[i], "seed %" PRIu64 " step %ld: find %s", seed, s,
                         m.key[i]);
            if (e) {
                kp_keytable_remove(&t, e);
                m.present[i] = 0;
                m.n--;
            }
        } else {
            int created;
            kp_keyentry *e = kp_keytable_upsert(&t, m.hash[i], key_of(&m, i), &created);
            cr_assert_not_null(e);
            cr_assert_eq(created, !m.present[i], "seed %" PRIu64 " step %ld: created", seed, s);
            if (created) {
                uint64_t zero;
                memcpy(&zero, kp_keyentry_value(e), sizeof zero);
                cr_assert_eq(zero, 0, "seed %" PRIu64 ": new value not zero-filled", seed);
                m.present[i] = 1;
                m.n++;
            }
            m.value[i] = rnd();
            memcpy(kp_keyentry_value(e), &m.value[i], sizeof m.value[i]);
        }
        if (s % every == 0)
            check(&t, &m, nkeys, seed, s);
    }
    check(&t, &m, nkeys, seed, steps);
    kp_keytable_free(&t);
}

static const uint64_t fixed_seeds[] = {1, 2, 3, 42, 1234567, 0xdeadbeef, 987654321987ull};

static void run_seeds(int pool, int nkeys, long steps, long every)
{
    const char *env = getenv("KAPPA_TEST_SEED");
    if (env) {
        run_random(strtoull(env, NULL, 10), pool, nkeys, steps, every);
        return;
    }
    for (size_t i = 0; i < sizeof fixed_seeds / sizeof *fixed_seeds; i++)
        run_random(fixed_seeds[i], pool, nkeys, steps, every);
    uint64_t fresh = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    printf("keytable: fresh seed %" PRIu64 " (pool %d; rerun with KAPPA_TEST_SEED=%" PRIu64 ")\n",
           fresh, pool, fresh);
    fflush(stdout);
    run_random(fresh, pool, nkeys, steps, every);
}

Test(keytable, random_ops_real_hashes)
{
    run_seeds(0, MAX_KEYS, 40000, 97);
}

Test(keytable, random_ops_colliding_hashes)
{
    run_seeds(3, 100, 5000, 1);
    run_seeds(8, 400, 10000, 13);
}

Test(keytable, remove_reclaims_memory)
{
    kp_keytable t;
    kp_keytable_init(&t, 16);
    char key[32];
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        int len = snprintf(key, sizeof key, "user_%08d", i);
        int created;
        cr_assert_not_null(kp_keytable_upsert(&t, kp_hash64(key, (size_t)len),
                                              (kp_bytes){key, (size_t)len}, &created));
    }
    size_t full = kp_keytable_bytes(&t);
    for (int i = 0; i < n - 10; i++) {
        int len = snprintf(key, sizeof key, "user_%08d", i);
        kp_keyentry *e =
            kp_keytable_find(&t, kp_hash64(key, (size_t)len), (kp_bytes){key, (size_t)len});
        cr_assert_not_null(e, "key %d", i);
        kp_keytable_remove(&t, e);
    }
    cr_assert_eq(t.n, 10);
    size_t small = kp_keytable_bytes(&t);
    cr_assert_lt(small * 100, full, "bytes after removing all but 10 of %d keys: %zu of %zu", n,
                 small, full);
    cr_assert_leq(t.arena_len - t.arena_dead, 10 * 13);
    for (int i = n - 10; i < n; i++) {
        int len = snprintf(key, sizeof key, "user_%08d", i);
        cr_assert_not_null(
            kp_keytable_find(&t, kp_hash64(key, (size_t)len), (kp_bytes){key, (size_t)len}));
    }

    /* Rotating keys: as many insertions as removals, the size stays put. */
    size_t before = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 5000; i++) {
            int len = snprintf(key, sizeof key, "rot_%d_%d", round, i);
            int created;
            cr_assert_not_null(kp_keytable_upsert(&t, kp_hash64(key, (size_t)len),
                                                  (kp_bytes){key, (size_t)len}, &created));
        }
        if (round > 0)
            for (int i = 0; i < 5000; i++) {
                int len = snprintf(key, sizeof key, "rot_%d_%d", round - 1, i);
                kp_keyentry *e =
                    kp_keytable_find(&t, kp_hash64(key, (size_t)len), (kp_bytes){key, (size_t)len});
                cr_assert_not_null(e);
                kp_keytable_remove(&t, e);
            }
        if (round == 2)
            before = kp_keytable_bytes(&t);
        if (round > 2)
            cr_assert_leq(kp_keytable_bytes(&t), before * 2, "round %d: %zu bytes, was %zu", round,
                          kp_keytable_bytes(&t), before);
    }
    cr_assert_eq(t.n, 5010);
    kp_keytable_free(&t);
}

Test(keytable, remove_to_empty_and_reuse)
{
    kp_keytable t;
    kp_keytable_init(&t, 0);
    int created;
    kp_keyentry *e = kp_keytable_upsert(&t, 7, (kp_bytes){"", 0}, &created);
    cr_assert_not_null(e);
    cr_assert(created);
    kp_keytable_remove(&t, e);
    cr_assert_eq(t.n, 0);
    cr_assert_null(kp_keytable_find(&t, 7, (kp_bytes){"", 0}));
    e = kp_keytable_upsert(&t, 7, (kp_bytes){"a", 1}, &created);
    cr_assert(created);
    kp_keytable_remove(&t, e);
    cr_assert_eq(t.arena_len, 0, "arena compacted when its only key is removed");
    cr_assert_null(kp_keytable_find(&t, 7, (kp_bytes){"a", 1}));
    kp_keytable_free(&t);
}

/* kp_keytable_bytes_after_insert says what an insert of a new key will cost (a cache makes
 * room by it), and an existing key at the growth threshold does not grow the table. */
Test(keytable, growth_is_predicted_and_only_for_new_keys)
{
    kp_keytable t;
    kp_keytable_init(&t, 8);
    char buf[32];
    int grew = 0;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(buf, sizeof buf, "key-%d", i), created;
        kp_bytes k = {buf, (size_t)n};
        uint64_t h = kp_hash64(buf, (size_t)n);
        size_t before = kp_keytable_bytes(&t),
               predicted = kp_keytable_bytes_after_insert(&t, k.len);
        if (i > 0) { /* the previous key again: never a resize, even at 3/4 full */
            char prev[32];
            int m = snprintf(prev, sizeof prev, "key-%d", i - 1);
            cr_assert(kp_keytable_upsert(&t, kp_hash64(prev, (size_t)m),
                                         (kp_bytes){prev, (size_t)m}, &created));
            cr_assert_eq(created, 0);
            cr_assert_eq(kp_keytable_bytes(&t), before, "an existing key grew the table at %d", i);
        }
        cr_assert(kp_keytable_upsert(&t, h, k, &created));
        cr_assert_eq(created, 1);
        cr_assert_eq(kp_keytable_bytes(&t), predicted, "insert %d: %zu bytes, predicted %zu", i,
                     kp_keytable_bytes(&t), predicted);
        grew += predicted != before;
    }
    cr_assert_gt(grew, 8, "the table never grew");
    kp_keytable_free(&t);
}
