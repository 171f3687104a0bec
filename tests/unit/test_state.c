/* Keyed state on RocksDB: point and batch operations, bounded ordered iteration, range
 * deletes, column families surviving a close/reopen, `fresh`, error reporting for an unusable
 * directory, bounded memtable memory, and checkpoints that open as databases. Each test works
 * in its own mkdtemp directory under /tmp, removed afterwards. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../runtime/state.h"

static char tmp[64];
static char dbdir[128];
static char err[512];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(tmp, "/tmp/kp-state-test-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(dbdir, sizeof(dbdir), "%s/db", tmp);
    err[0] = '\0';
}

static void teardown(void)
{
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static kp_state *open_db(const char *dir, int fresh)
{
    kp_state_config cfg = {.dir = dir, .fresh = fresh};
    kp_state *st = kp_state_open(&cfg, err, sizeof(err));
    cr_assert_not_null(st, "open %s: %s", dir, err);
    return st;
}

static int cf_of(kp_state *st, const char *name)
{
    int cf = kp_state_cf(st, name, err, sizeof(err));
    cr_assert_geq(cf, 0, "cf %s: %s", name, err);
    return cf;
}

static void put_str(kp_state *st, int cf, const char *k, const char *v)
{
    cr_assert_eq(kp_state_put(st, cf, k, strlen(k), v, strlen(v), err, sizeof(err)), 0, "%s", err);
}

/* Asserts key k holds v (v == NULL: absent). */
static void expect(kp_state *st, int cf, const char *k, const char *v)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = kp_state_get(st, cf, k, strlen(k), &val, &vlen, err, sizeof(err));
    if (!v) {
        cr_assert_eq(rc, 0, "key %s should be absent (rc %d, %s)", k, rc, err);
        return;
    }
    cr_assert_eq(rc, 1, "key %s should be present (rc %d, %s)", k, rc, err);
    cr_assert_eq(vlen, strlen(v));
    cr_assert_eq(memcmp(val, v, vlen), 0);
    free(val);
}

/* Keys in [lo, hi) as "k1,k2,...". */
static void scan(kp_state *st, int cf, const char *lo, const char *hi, char *out, size_t outlen)
{
    kp_state_iter *it =
        kp_state_iter_open(st, cf, lo, lo ? strlen(lo) : 0, hi, hi ? strlen(hi) : 0);
    cr_assert_not_null(it);
    out[0] = '\0';
    size_t used = 0;
    for (; kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t klen, vlen;
        const char *k = kp_state_iter_key(it, &klen);
        kp_state_iter_value(it, &vlen);
        int n = snprintf(out + used, outlen - used, "%s%.*s", used ? "," : "", (int)klen, k);
        cr_assert(n > 0 && (size_t)n < outlen - used);
        used += (size_t)n;
    }
    cr_assert_eq(kp_state_iter_close(it, err, sizeof(err)), 0, "%s", err);
}

TestSuite(state, .init = setup, .fini = teardown);

Test(state, put_get_del)
{
    kp_state *st = open_db(dbdir, 0);
    int cf = cf_of(st, "values");
    cr_assert_eq(cf_of(st, "values"), cf, "same name, same id");
    expect(st, cf, "a", NULL);
    put_str(st, cf, "a", "1");
    put_str(st, cf, "b", "");
    expect(st, cf, "a", "1");
    expect(st, cf, "b", "");
    put_str(st, cf, "a", "one");
    expect(st, cf, "a", "one");
    cr_assert_eq(kp_state_del(st, cf, "a", 1, err, sizeof(err)), 0, "%s", err);
    expect(st, cf, "a", NULL);
    cr_assert_eq(kp_state_del(st, cf, "never", 5, err, sizeof(err)), 0, "%s", err);

    /* binary keys and values, embedded NULs */
    const unsigned char k[] = {0, 1, 0, 0xff}, v[] = {0, 0, 7};
    cr_assert_eq(kp_state_put(st, cf, k, sizeof(k), v, sizeof(v), err, sizeof(err)), 0);
    void *got;
    size_t glen;
    cr_assert_eq(kp_state_get(st, cf, k, sizeof(k), &got, &glen, err, sizeof(err)), 1);
    cr_assert_eq(glen, sizeof(v));
    cr_assert_eq(memcmp(got, v, glen), 0);
    free(got);

    /* a bad column-family id is an error with a message, not a crash */
    err[0] = '\0';
    cr_assert_eq(kp_state_put(st, 99, "x", 1, "y", 1, err, sizeof(err)), -1);
    cr_assert_neq(err[0], '\0');
    cr_assert_null(kp_state_iter_open(st, -1, NULL, 0, NULL, 0));
    kp_state_close(st);
}

Test(state, batches)
{
    kp_state *st = open_db(dbdir, 0);
    int a = cf_of(st, "a"), b = cf_of(st, "b");
    put_str(st, a, "gone", "x");
    kp_state_batch *wb = kp_state_batch_new();
    cr_assert_not_null(wb);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++) {
            char k[32], v[32];
            snprintf(k, sizeof(k), "k%03d", i);
            snprintf(v, sizeof(v), "r%d-%d", round, i);
            kp_state_batch_put(wb, st, i % 2 ? a : b, k, strlen(k), v, strlen(v));
        }
        kp_state_batch_del(wb, st, a, "gone", 4);
        cr_assert_eq(kp_state_batch_count(wb), 101);
        cr_assert_eq(kp_state_write(st, wb, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(kp_state_batch_count(wb), 0, "write clears the batch");
    }
    expect(st, a, "k001", "r2-1");
    expect(st, b, "k000", "r2-0");
    expect(st, b, "k001", NULL);
    expect(st, a, "gone", NULL);

    /* a batch naming an unknown column family writes nothing and says so */
    kp_state_batch_put(wb, st, a, "new", 3, "v", 1);
    kp_state_batch_put(wb, st, 42, "bad", 3, "v", 1);
    err[0] = '\0';
    cr_assert_eq(kp_state_write(st, wb, err, sizeof(err)), -1);
    cr_assert_neq(err[0], '\0');
    expect(st, a, "new", NULL);
    cr_assert_eq(kp_state_batch_count(wb), 0);
    kp_state_batch_put(wb, st, a, "new", 3, "v", 1);
    cr_assert_eq(kp_state_write(st, wb, err, sizeof(err)), 0, "batch reusable after an error");
    expect(st, a, "new", "v");

    kp_state_batch_free(wb);
    kp_state_batch_free(NULL);
    kp_state_close(st);
}

Test(state, iteration_bounds_and_order)
{
    kp_state *st = open_db(dbdir, 0);
    int cf = cf_of(st, "win");
    int other = cf_of(st, "other");
    const char *keys[] = {"b2", "a", "c", "b", "b1", "b10", "d", "bz"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        put_str(st, cf, keys[i], "v");
    put_str(st, other, "b5", "v");
    char out[256];
    scan(st, cf, "b", "c", out, sizeof(out));
    cr_assert_str_eq(out, "b,b1,b10,b2,bz");
    scan(st, cf, NULL, NULL, out, sizeof(out));
    cr_assert_str_eq(out, "a,b,b1,b10,b2,bz,c,d");
    scan(st, cf, "b1", "b2", out, sizeof(out));
    cr_assert_str_eq(out, "b1,b10");
    scan(st, cf, "x", NULL, out, sizeof(out));
    cr_assert_str_eq(out, "");
    scan(st, cf, "c", "c", out, sizeof(out));
    cr_assert_str_eq(out, "");

    /* big-endian key groups sort numerically, and a key-group range is one scan */
    int kg = cf_of(st, "kg");
    for (unsigned g = 0; g < 300; g++) {
        unsigned char k[3] = {(unsigned char)(g >> 8), (unsigned char)g, 'x'};
        cr_assert_eq(kp_state_put(st, kg, k, 3, "v", 1, err, sizeof(err)), 0);
    }
    unsigned char lo[2] = {0, 250}, hi[2] = {1, 4}; /* groups 250..259 */
    kp_state_iter *it = kp_state_iter_open(st, kg, lo, 2, hi, 2);
    unsigned expect_g = 250;
    for (; kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t klen;
        const unsigned char *k = kp_state_iter_key(it, &klen);
        cr_assert_eq(klen, 3);
        cr_assert_eq((unsigned)(k[0] << 8 | k[1]), expect_g);
        expect_g++;
    }
    cr_assert_eq(expect_g, 260);
    cr_assert_eq(kp_state_iter_close(it, err, sizeof(err)), 0);
    cr_assert_eq(kp_state_iter_close(NULL, err, sizeof(err)), 0);
    kp_state_close(st);
}

/* A scan-only column family (window panes) holds and scans like any other; one iterator reads
 * several ranges by seeking; the byte counters count what went in and came out. */
Test(state, scan_cf_seek_and_io_counters)
{
    kp_state *st = open_db(dbdir, 1);
    int cf = kp_state_cf_scan(st, "window", err, sizeof(err));
    cr_assert_geq(cf, 0, "%s", err);
    cr_assert_eq(kp_state_cf_scan(st, "window", err, sizeof(err)), cf, "found again by name");
    cr_assert_eq(kp_state_cf(st, "window", err, sizeof(err)), cf);
    kp_state_io io0, io1;
    kp_state_io_totals(&io0);
    kp_state_batch *b = kp_state_batch_new();
    static const char *const keys[] = {"a1", "a2", "b1", "c1", "c2", "d1"};
    for (int i = 0; i < 6; i++)
        kp_state_batch_put(b, st, cf, keys[i], 2, "vv", 2);
    cr_assert_eq(kp_state_write(st, b, err, sizeof(err)), 0, "%s", err);
    kp_state_batch_free(b);
    kp_state_io_totals(&io1);
    cr_assert_eq(io1.bytes_written - io0.bytes_written, 6 * 4, "keys and values written");
    cr_assert_geq(io1.writes - io0.writes, 1);

    /* ranges "a" and "c" of [a, d) with one iterator: seek to each, stop at its end */
    kp_state_iter *it = kp_state_iter_open(st, cf, "a", 1, "d", 1);
    cr_assert_not_null(it);
    char got[64] = "";
    static const char *const ranges[] = {"a", "c"};
    for (int r = 0; r < 2; r++) {
        kp_state_iter_seek(it, ranges[r], 1);
        for (; kp_state_iter_valid(it); kp_state_iter_next(it)) {
            size_t klen, vlen;
            const char *k = kp_state_iter_key(it, &klen);
            kp_state_iter_value(it, &vlen);
            if (k[0] != ranges[r][0])
                break;
            strncat(got, k, klen);
            strcat(got, ",");
        }
    }
    cr_assert_eq(kp_state_iter_close(it, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(got, "a1,a2,c1,c2,");
    kp_state_io_totals(&io0);
    /* a1, a2, b1 (read, then the loop stops), c1, c2; d1 is past the bound. Criterion runs
     * each test in its own process, so the process-wide totals are this test's. */
    cr_assert_eq(io0.bytes_read - io1.bytes_read, 5 * 4, "keys and values read");
    kp_state_close(st);
}

Test(state, del_range)
{
    kp_state *st = open_db(dbdir, 0);
    int cf = cf_of(st, "win");
    const char *keys[] = {"a", "b", "b1", "b2", "c", "c1"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        put_str(st, cf, keys[i], "v");
    cr_assert_eq(kp_state_del_range(st, cf, "b", 1, "c", 1, err, sizeof(err)), 0, "%s", err);
    char out[128];
    scan(st, cf, NULL, NULL, out, sizeof(out));
    cr_assert_str_eq(out, "a,c,c1", "hi is exclusive");
    expect(st, cf, "b1", NULL);
    put_str(st, cf, "b1", "again");
    expect(st, cf, "b1", "again");
    kp_state_close(st);

    /* the range delete survives a flush and reopen */
    st = open_db(dbdir, 0);
    cf = cf_of(st, "win");
    scan(st, cf, NULL, NULL, out, sizeof(out));
    cr_assert_str_eq(out, "a,b1,c,c1");
    kp_state_close(st);
}

Test(state, column_families_are_separate)
{
    kp_state *st = open_db(dbdir, 0);
    int ids[5];
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "cf%d", i);
        ids[i] = cf_of(st, name);
        for (int j = 0; j < i; j++)
            cr_assert_neq(ids[i], ids[j]);
    }
    for (int i = 0; i < 5; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        put_str(st, ids[i], "k", v);
    }
    for (int i = 0; i < 5; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i);
        expect(st, ids[i], "k", v);
    }
    cr_assert_eq(kp_state_del(st, ids[2], "k", 1, err, sizeof(err)), 0);
    expect(st, ids[2], "k", NULL);
    expect(st, ids[3], "k", "3");
    cr_assert_eq(kp_state_cf(st, "", err, sizeof(err)), -1);
    kp_state_close(st);
}

Test(state, reopen_sees_everything)
{
    kp_state *st = open_db(dbdir, 0);
    int a = cf_of(st, "alpha"), b = cf_of(st, "beta");
    kp_state_batch *wb = kp_state_batch_new();
    for (int i = 0; i < 5000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "%06d", i);
        kp_state_batch_put(wb, st, i % 2 ? a : b, k, strlen(k), k, strlen(k));
    }
    cr_assert_eq(kp_state_write(st, wb, err, sizeof(err)), 0, "%s", err);
    kp_state_batch_free(wb);
    put_str(st, a, "single", "put");
    kp_state_close(st);

    /* CFs from the previous run are opened; ids are looked up by name again */
    st = open_db(dbdir, 0);
    b = cf_of(st, "beta");
    a = cf_of(st, "alpha");
    expect(st, a, "single", "put");
    expect(st, a, "000001", "000001");
    expect(st, b, "000000", "000000");
    expect(st, b, "000001", NULL);
    int n = 0;
    kp_state_iter *it = kp_state_iter_open(st, b, NULL, 0, NULL, 0);
    for (; kp_state_iter_valid(it); kp_state_iter_next(it))
        n++;
    cr_assert_eq(kp_state_iter_close(it, err, sizeof(err)), 0);
    cr_assert_eq(n, 2500);
    int c = cf_of(st, "gamma");
    put_str(st, c, "g", "3");
    kp_state_close(st);

    st = open_db(dbdir, 0);
    expect(st, cf_of(st, "gamma"), "g", "3");
    expect(st, cf_of(st, "alpha"), "single", "put");
    kp_state_close(st);
}

Test(state, fresh_wipes)
{
    kp_state *st = open_db(dbdir, 0);
    put_str(st, cf_of(st, "old"), "k", "v");
    put_str(st, cf_of(st, "default"), "d", "v");
    kp_state_close(st);

    st = open_db(dbdir, 1);
    expect(st, cf_of(st, "default"), "d", NULL);
    expect(st, cf_of(st, "old"), "k", NULL);
    kp_state_close(st);

    /* fresh on a directory that does not exist yet, with missing parents */
    char deep[192];
    snprintf(deep, sizeof(deep), "%s/x/y/db", tmp);
    st = open_db(deep, 1);
    put_str(st, 0, "k", "v");
    kp_state_close(st);
}

Test(state, unusable_dir_is_an_error)
{
    char file[128], under[192];
    snprintf(file, sizeof(file), "%s/plain-file", tmp);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("not a directory\n", f);
    fclose(f);
    snprintf(under, sizeof(under), "%s/db", file);

    for (int fresh = 0; fresh < 2; fresh++) {
        kp_state_config cfg = {.dir = under, .fresh = fresh};
        err[0] = '\0';
        cr_assert_null(kp_state_open(&cfg, err, sizeof(err)));
        cr_assert_neq(err[0], '\0');
        cr_assert_not_null(strstr(err, under), "message names the directory: %s", err);
    }
    kp_state_config file_as_dir = {.dir = file};
    err[0] = '\0';
    cr_assert_null(kp_state_open(&file_as_dir, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');

    /* a RocksDB error (the lock held by another open) comes back with its context */
    kp_state *st = open_db(dbdir, 0);
    kp_state_config again = {.dir = dbdir};
    err[0] = '\0';
    cr_assert_null(kp_state_open(&again, err, sizeof(err)));
    cr_assert_not_null(strstr(err, dbdir), "message names the directory: %s", err);
    cr_assert_not_null(strstr(err, "lock"), "message carries RocksDB's reason: %s", err);
    kp_state_close(st);

    kp_state_config none = {0};
    cr_assert_null(kp_state_open(&none, err, sizeof(err)));
    cr_assert_null(kp_state_open(NULL, NULL, 0), "NULL errstr tolerated");
    kp_state_close(NULL);
}

/* kg (2 bytes BE) | pane end (8 bytes BE) | 9-digit key: 19 bytes (+ NUL). */
static void window_key(unsigned char k[20], int i)
{
    unsigned kg = (unsigned)i % 128;
    uint64_t pane = (uint64_t)(i / 1000);
    k[0] = (unsigned char)(kg >> 8);
    k[1] = (unsigned char)kg;
    for (int j = 0; j < 8; j++)
        k[2 + j] = (unsigned char)(pane >> (56 - 8 * j));
    snprintf((char *)k + 10, 10, "%09d", i * 7919 % 200000);
}

Test(state, memory_reported_and_bounded)
{
    const size_t memtable = 256 << 10;
    const int max_memtables = 3;
    kp_state_config cfg = {.dir = dbdir,
                           .block_cache_bytes = 4 << 20,
                           .memtable_bytes = memtable,
                           .max_memtables = max_memtables};
    kp_state *st = kp_state_open(&cfg, err, sizeof(err));
    cr_assert_not_null(st, "%s", err);
    int cfs[2] = {cf_of(st, "one"), cf_of(st, "two")};
    const size_t ncf = 3; /* with "default" */
    const size_t bound = memtable * (size_t)max_memtables * ncf;
    const size_t slack = bound / 4;

    kp_state_batch *wb = kp_state_batch_new();
    size_t peak = 0;
    for (int i = 0; i < 200000; i++) {
        unsigned char k[20];
        window_key(k, i);
        uint64_t v = (uint64_t)i;
        kp_state_batch_put(wb, st, cfs[i % 2], k, 19, &v, sizeof(v));
        if (kp_state_batch_count(wb) == 1000) {
            cr_assert_eq(kp_state_write(st, wb, err, sizeof(err)), 0, "%s", err);
            kp_state_memory m;
            kp_state_memory_usage(st, &m);
            if (m.memtables > peak)
                peak = m.memtables;
            cr_assert_leq(m.memtables, bound + slack, "memtables %zu > bound %zu", m.memtables,
                          bound);
        }
    }
    kp_state_batch_free(wb);
    cr_assert_gt(peak, memtable / 2, "memtables reported (peak %zu)", peak);

    /* reads go through the block cache, which stays near its capacity */
    for (int i = 0; i < 200000; i += 97) {
        unsigned char k[20];
        window_key(k, i);
        void *val;
        size_t vlen;
        cr_assert_eq(kp_state_get(st, cfs[i % 2], k, 19, &val, &vlen, err, sizeof(err)), 1,
                     "key %d: %s", i, err);
        cr_assert_eq(vlen, 8);
        uint64_t v;
        memcpy(&v, val, 8);
        cr_assert_eq(v, (uint64_t)i);
        free(val);
    }
    kp_state_memory m;
    kp_state_memory_usage(st, &m);
    cr_assert_gt(m.block_cache, 0);
    cr_assert_leq(m.block_cache, (size_t)(4 << 20) + (1 << 20), "block cache %zu", m.block_cache);
    cr_assert_leq(m.memtables, bound + slack);
    cr_log_info("memtables peak %zu (bound %zu), block cache %zu, table readers %zu", peak, bound,
                m.block_cache, m.table_readers);
    kp_state_close(st);
}

Test(state, checkpoint_opens_as_db)
{
    kp_state *st = open_db(dbdir, 0);
    int a = cf_of(st, "a"), b = cf_of(st, "b");
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "%04d", i);
        put_str(st, i % 2 ? a : b, k, k);
    }
    char cp[192];
    snprintf(cp, sizeof(cp), "%s/chk-1", tmp);
    cr_assert_eq(kp_state_checkpoint(st, cp, err, sizeof(err)), 0, "%s", err);
    /* writes after the checkpoint are not in it */
    put_str(st, a, "late", "x");
    /* a checkpoint into an existing directory is an error with a message */
    err[0] = '\0';
    cr_assert_eq(kp_state_checkpoint(st, cp, err, sizeof(err)), -1);
    cr_assert_neq(err[0], '\0');
    kp_state_close(st);

    struct stat sb;
    cr_assert_eq(stat(cp, &sb), 0);
    cr_assert(S_ISDIR(sb.st_mode));
    st = open_db(cp, 0);
    a = cf_of(st, "a");
    b = cf_of(st, "b");
    expect(st, a, "0001", "0001");
    expect(st, a, "0999", "0999");
    expect(st, b, "0998", "0998");
    expect(st, a, "late", NULL);
    int n = 0;
    kp_state_iter *it = kp_state_iter_open(st, a, NULL, 0, NULL, 0);
    for (; kp_state_iter_valid(it); kp_state_iter_next(it))
        n++;
    cr_assert_eq(kp_state_iter_close(it, err, sizeof(err)), 0);
    cr_assert_eq(n, 500);
    kp_state_close(st);
}
