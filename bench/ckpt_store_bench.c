/* Checkpoint storage figures (docs/checkpoints.md): a RocksDB database of N MiB of keyed state
 * is checkpointed (kp_state_checkpoint) and uploaded in full, then a small change and an
 * incremental checkpoint, then the latest-valid search (every file hashed) and a restore
 * (materialise). Prints times and sizes; asserts nothing.
 *   ckpt-store-bench [state MiB, default 256] [change %, default 1] [storage dir, default /tmp] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_store.h"
#include "ckpt_fs.h"
#include "clock.h"
#include "state.h"

#define VAL 100

static void die(const char *what, const char *err)
{
    fprintf(stderr, "ckpt-store-bench: %s: %s\n", what, err);
    exit(1);
}

/* Random (incompressible) values under keys [from, to). */
static void fill(kp_state *db, int cf, long from, long to, uint64_t seed)
{
    char err[512], v[VAL];
    kp_state_batch *b = kp_state_batch_new();
    uint64_t x = seed;
    for (long i = from; i < to; i++) {
        for (int j = 0; j < VAL; j += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(v + j, &x, VAL - j < 8 ? (size_t)(VAL - j) : 8);
        }
        char k[16];
        int kl = snprintf(k, sizeof k, "%015ld", i);
        kp_state_batch_put(b, db, cf, k, (size_t)kl, v, VAL);
        if ((i + 1) % 10000 == 0 || i + 1 == to) {
            if (kp_state_write(db, b, err, sizeof err) != 0)
                die("write", err); /* applies and clears the batch */
        }
    }
    kp_state_batch_free(b);
}

/* Checkpoint + upload as checkpoint id; prints the figures and returns the ack. */
static char *one(kp_ckpt_store *store, kp_state *db, const char *tmp, int64_t id)
{
    char err[512], dir[600];
    snprintf(dir, sizeof dir, "%s/local-%lld", tmp, (long long)id);
    double t0 = kp_mono_s();
    if (kp_state_checkpoint(db, dir, err, sizeof err) != 0)
        die("checkpoint", err);
    double t1 = kp_mono_s();
    kp_snapshot *s = kp_snapshot_new(id, 0, 0, 1);
    kp_snapshot_dir(s, "win", "rocksdb", 0, 128, dir);
    char *ack = kp_ckpt_store_upload(store, s, err, sizeof err);
    if (!ack)
        die("upload", err);
    kp_snapshot_free(s);
    double t2 = kp_mono_s();
    long long bytes = 0, inc = 0;
    const char *p = strstr(ack, "\"bytes\":"), *q = strstr(ack, "\"incremental_bytes\":");
    if (p)
        bytes = atoll(p + 8);
    if (q)
        inc = atoll(q + 20);
    printf("checkpoint %lld: rocksdb checkpoint %.0f ms, upload %.0f ms, state %.1f MiB, "
           "copied %.1f MiB (%.0f MiB/s)\n",
           (long long)id, (t1 - t0) * 1e3, (t2 - t1) * 1e3, bytes / 1048576.0, inc / 1048576.0,
           inc / 1048576.0 / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    return ack;
}

static char restore_dir[700];

static int materialize(void *ctx, const kp_restore_entry *e)
{
    char err[512];
    if (kp_restore_materialize(ctx, e, restore_dir, err, sizeof err) != 0)
        die("materialise", err);
    return 1;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 256;
    double pct = argc > 2 ? atof(argv[2]) : 1.0;
    const char *base = argc > 3 ? argv[3] : "/tmp";
    char tmp[512], err[512], dbdir[600], path[700];
    snprintf(tmp, sizeof tmp, "%s/kp-ckpt-bench-XXXXXX", base);
    if (!mkdtemp(tmp))
        die("mkdtemp", tmp);
    snprintf(dbdir, sizeof dbdir, "%s/db", tmp);
    kp_state_config cfg = {.dir = dbdir, .fresh = 1};
    kp_state *db = kp_state_open(&cfg, err, sizeof err);
    if (!db)
        die("open", err);
    int cf = kp_state_cf(db, "window", err, sizeof err);
    long n = mib * 1048576L / (VAL + 15);
    double t0 = kp_mono_s();
    fill(db, cf, 0, n, 88172645463325252ULL);
    printf("state: %ld keys, %ld MiB of values written in %.1f s\n", n, mib, kp_mono_s() - t0);
    kp_ckpt_store *store = kp_ckpt_store_open(tmp, "job", err, sizeof err);
    if (!store)
        die("store", err);
    char *a1 = one(store, db, tmp, 1);
    long change = (long)(n * pct / 100.0);
    fill(db, cf, n - change / 2, n + change / 2, 1234567); /* half updates, half new keys */
    char *a2 = one(store, db, tmp, 2);
    for (int id = 1; id <= 2; id++) {
        char *a = id == 1 ? a1 : a2;
        if (kp_ckpt_store_commit(store, id, kp_wall_ms(), KP_CKPT_EXACTLY_ONCE,
                                 (const char *const *)&a, 1, path, sizeof path, err,
                                 sizeof err) != 0)
            die("commit", err);
    }
    t0 = kp_mono_s();
    if (kp_ckpt_store_latest(tmp, "job", path, sizeof path, err, sizeof err) != 1)
        die("latest", err);
    printf("latest valid checkpoint (every file sha256-verified): %.0f ms\n",
           (kp_mono_s() - t0) * 1e3);
    kp_restore *r = kp_restore_open(path, err, sizeof err);
    if (!r)
        die("restore", err);
    snprintf(restore_dir, sizeof restore_dir, "%s/restored", tmp);
    t0 = kp_mono_s();
    if (kp_restore_each(r, "win", "rocksdb", materialize, r) != 1)
        die("materialise", "no rocksdb entry");
    printf("restore: materialise (SSTs hard-linked, all files verified) %.0f ms\n",
           (kp_mono_s() - t0) * 1e3);
    kp_restore_free(r);
    kp_state_close(db);
    kp_ckpt_store_free(store);
    free(a1);
    free(a2);
    double la[3];
    if (getloadavg(la, 3) == 3)
        printf("load average: %.2f %.2f %.2f\n", la[0], la[1], la[2]);
    kp_fs_rmtree(tmp);
    return 0;
}
