/* Keyed-state throughput on RocksDB, for the window-operator key layout
 *   key group (2 bytes BE) | pane end (8 bytes BE) | key (10 bytes)  ->  8-byte value
 * Prints batched put throughput (batches of 10k), full-range scan throughput (right after the
 * writes, and again from SST files after a close and reopen), and memory usage. Default
 * configuration (32 MiB block cache, 2 x 16 MiB memtables). Works in a mkdtemp directory
 * under /tmp (or under the directory given as the second argument), removed at the end.
 *
 *     state_bench [keys=1000000] [parent-dir=/tmp]
 *
 * Flush mode measures the two candidates for the window operator's whole-cache flush at a
 * checkpoint barrier (docs/state.md, "Whole-cache flush"): N dirty entries in the window
 * layout (key group | pane end | pane from | seq | key -> 8-byte accumulator), already sorted,
 * written as one write batch without WAL, or as one SST file written and ingested; then the
 * RocksDB checkpoint a barrier takes next (it flushes the memtables first). Three flushes per
 * size, each a new sequence (new keys), so the state grows as with successive barriers.
 *
 *     state_bench flush [parent-dir=/tmp]    # 10k, 100k, 1M entries */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/state.h"

#define KEY_LEN    20
#define BATCH_SIZE 10000
#define KEY_GROUPS 128
#define PANES      60

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU of the whole process, RocksDB's background threads included. */
static double cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Event i, scattered over key groups and panes as a keyed stream would be. The key part is a
 * bijection of i (odd multiplier mod 2^32), so every key is distinct. */
static void make_key(unsigned char k[KEY_LEN + 1], uint32_t i)
{
    uint32_t h = i * 2654435761u;
    unsigned kg = (h >> 16) % KEY_GROUPS;
    uint64_t pane_end = 1700000000000ull + (uint64_t)(i % PANES) * 60000u;
    k[0] = (unsigned char)(kg >> 8);
    k[1] = (unsigned char)kg;
    for (int j = 0; j < 8; j++)
        k[2 + j] = (unsigned char)(pane_end >> (56 - 8 * j));
    snprintf((char *)k + 10, KEY_LEN - 10 + 1, "%010u", h);
}

static void print_memory(kp_state *st, const char *when)
{
    kp_state_memory m;
    kp_state_memory_usage(st, &m);
    printf("memory %-22s memtables %7.2f MiB  block cache %7.2f MiB  table readers %6.2f "
           "MiB\n",
           when, (double)m.memtables / (1 << 20), (double)m.block_cache / (1 << 20),
           (double)m.table_readers / (1 << 20));
}

static int scan_all(kp_state *st, int cf, const char *what, uint32_t expect)
{
    char err[512];
    double t0 = now(), c0 = cpu();
    kp_state_iter *it = kp_state_iter_open(st, cf, NULL, 0, NULL, 0);
    if (!it) {
        fprintf(stderr, "state_bench: iter_open failed\n");
        return -1;
    }
    uint64_t n = 0, bytes = 0, sum = 0;
    for (; kp_state_iter_valid(it); kp_state_iter_next(it)) {
        size_t klen, vlen;
        kp_state_iter_key(it, &klen);
        const void *v = kp_state_iter_value(it, &vlen);
        uint64_t x;
        memcpy(&x, v, sizeof(x));
        sum += x;
        n++;
        bytes += klen + vlen;
    }
    if (kp_state_iter_close(it, err, sizeof(err)) != 0) {
        fprintf(stderr, "state_bench: %s\n", err);
        return -1;
    }
    double dt = now() - t0, dc = cpu() - c0;
    printf("scan %-24s %8llu keys  %6.3f s (cpu %6.3f s)  %10.0f keys/s  %7.1f MiB/s\n", what,
           (unsigned long long)n, dt, dc, (double)n / dt, (double)bytes / dt / (1 << 20));
    if (n != expect || sum != (uint64_t)expect * (expect - 1) / 2) {
        fprintf(stderr, "state_bench: scan saw %llu keys, expected %u\n", (unsigned long long)n,
                expect);
        return -1;
    }
    return 0;
}

/* The key of flush entry i of n (increasing in i), sequence seq. */
static void flush_key(unsigned char k[32], uint32_t i, uint32_t n, uint32_t seq)
{
    unsigned kg = (unsigned)((uint64_t)i * KEY_GROUPS / n);
    uint64_t end = 1700000000000ull ^ (1ull << 63);
    k[0] = (unsigned char)(kg >> 8);
    k[1] = (unsigned char)kg;
    for (int j = 0; j < 8; j++)
        k[2 + j] = k[10 + j] = (unsigned char)(end >> (56 - 8 * j));
    for (int j = 0; j < 4; j++)
        k[18 + j] = (unsigned char)(seq >> (24 - 8 * j));
    snprintf((char *)k + 22, 11, "%010u", i);
}

/* One flush of n entries by `sst` (1) or a write batch (0), then a checkpoint; prints one line. */
static int flush_once(kp_state *st, int cf, kp_state_batch *b, const char *tmp, int sst, uint32_t n,
                      uint32_t seq)
{
    char err[512], cp[700];
    unsigned char k[32];
    double t0 = now(), c0 = cpu();
    kp_state_sst *w = sst ? kp_state_sst_open(st, cf, err, sizeof err) : NULL;
    if (sst && !w)
        goto fail;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = i;
        flush_key(k, i, n, seq);
        if (!sst)
            kp_state_batch_put(b, st, cf, k, 32, &v, sizeof v);
        else if (kp_state_sst_put(w, k, 32, &v, sizeof v, err, sizeof err) != 0)
            goto fail;
    }
    if (sst ? kp_state_sst_ingest(w, err, sizeof err) : kp_state_write(st, b, err, sizeof err))
        goto fail;
    double t1 = now(), c1 = cpu();
    snprintf(cp, sizeof cp, "%s/cp-%u-%u", tmp, n, seq);
    if (kp_state_checkpoint(st, cp, err, sizeof err) != 0)
        goto fail;
    double t2 = now(), c2 = cpu();
    printf("flush %-11s %8u entries  %9.0f us (cpu %9.0f us)  %6.0f ns/entry (cpu %6.0f)  "
           "+ checkpoint %7.0f us (cpu %7.0f us)  total cpu %6.0f ns/entry\n",
           sst ? "sst+ingest" : "write-batch", n, (t1 - t0) * 1e6, (c1 - c0) * 1e6,
           (t1 - t0) * 1e9 / n, (c1 - c0) * 1e9 / n, (t2 - t1) * 1e6, (c2 - c1) * 1e6,
           (c2 - c0) * 1e9 / n);
    nftw(cp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
fail:
    fprintf(stderr, "state_bench: flush: %s\n", err);
    return -1;
}

static int flush_mode(const char *parent)
{
    char tmp[512], dir[600], err[512];
    snprintf(tmp, sizeof tmp, "%s/kp-state-bench-XXXXXX", parent);
    if (!mkdtemp(tmp)) {
        perror("state_bench: mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof dir, "%s/db", tmp);
    int rc = 0;
    const uint32_t sizes[] = {10000, 100000, 1000000};
    for (int s = 0; s < 3 && rc == 0; s++)
        for (int sst = 0; sst < 2 && rc == 0; sst++) {
            kp_state_config cfg = {.dir = dir, .fresh = 1};
            kp_state *st = kp_state_open(&cfg, err, sizeof err);
            int cf = st ? kp_state_cf_scan(st, "window", err, sizeof err) : -1;
            kp_state_batch *b = kp_state_batch_new();
            if (!st || cf < 0 || !b) {
                fprintf(stderr, "state_bench: %s\n", err);
                rc = 1;
            }
            for (uint32_t seq = 1; seq <= 3 && rc == 0; seq++)
                rc = flush_once(st, cf, b, tmp, sst, sizes[s], seq) != 0;
            kp_state_batch_free(b);
            kp_state_close(st);
        }
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "flush") == 0)
        return flush_mode(argc > 2 ? argv[2] : "/tmp");
    uint32_t nkeys = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1000000u;
    const char *parent = argc > 2 ? argv[2] : "/tmp";
    char tmp[512], dir[600], err[512];
    snprintf(tmp, sizeof(tmp), "%s/kp-state-bench-XXXXXX", parent);
    if (!mkdtemp(tmp)) {
        perror("state_bench: mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s/db", tmp);
    int rc = 1;

    kp_state_config cfg = {.dir = dir, .fresh = 1};
    kp_state *st = kp_state_open(&cfg, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "state_bench: %s\n", err);
        goto out;
    }
    int cf = kp_state_cf(st, "window", err, sizeof(err));
    kp_state_batch *b = kp_state_batch_new();
    if (cf < 0 || !b) {
        fprintf(stderr, "state_bench: %s\n", cf < 0 ? err : "out of memory");
        kp_state_batch_free(b);
        kp_state_close(st);
        goto out;
    }

    printf("state_bench: %u keys of %d bytes -> 8-byte values, batches of %d, in %s\n", nkeys,
           KEY_LEN, BATCH_SIZE, dir);
    unsigned char k[KEY_LEN + 1];
    double t0 = now(), c0 = cpu();
    for (uint32_t i = 0; i < nkeys; i++) {
        uint64_t v = i;
        make_key(k, i);
        kp_state_batch_put(b, st, cf, k, KEY_LEN, &v, sizeof(v));
        if (kp_state_batch_count(b) == BATCH_SIZE || i + 1 == nkeys) {
            if (kp_state_write(st, b, err, sizeof(err)) != 0) {
                fprintf(stderr, "state_bench: %s\n", err);
                kp_state_batch_free(b);
                kp_state_close(st);
                goto out;
            }
        }
    }
    double dt = now() - t0, dc = cpu() - c0;
    kp_state_batch_free(b);
    printf("put  %-24s %8u keys  %6.3f s (cpu %6.3f s)  %10.0f keys/s  %7.1f MiB/s\n", "batched",
           nkeys, dt, dc, (double)nkeys / dt, (double)nkeys * (KEY_LEN + 8) / dt / (1 << 20));
    print_memory(st, "after puts");

    if (scan_all(st, cf, "after puts", nkeys) != 0) {
        kp_state_close(st);
        goto out;
    }
    print_memory(st, "after scan");

    t0 = now();
    kp_state_close(st); /* flushes the memtables */
    double tclose = now() - t0;
    cfg.fresh = 0;
    st = kp_state_open(&cfg, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "state_bench: reopen: %s\n", err);
        goto out;
    }
    printf("close (flush) %.3f s, reopen %.3f s\n", tclose, now() - t0 - tclose);
    cf = kp_state_cf(st, "window", err, sizeof(err));
    if (cf < 0 || scan_all(st, cf, "after reopen (SSTs)", nkeys) != 0) {
        kp_state_close(st);
        goto out;
    }
    print_memory(st, "after reopen + scan");
    kp_state_close(st);
    rc = 0;

out:
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
