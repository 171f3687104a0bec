/* Keyed operators' databases across checkpoints; see keyed_db.h. */
#define _XOPEN_SOURCE 700
#include "keyed_db.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph.h"

#define STATE_ROOT(st) ((st)->state_dir ? (st)->state_dir : "/tmp/kappa-state")

static void safe_name(char *s)
{
    for (; *s; s++)
        if (*s == '/' || *s == ' ' || *s == ':')
            *s = '_';
}

void kp_keyed_db_path(const kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi, char *out,
                      size_t outlen)
{
    const char *root = STATE_ROOT(st);
    size_t at = (size_t)snprintf(out, outlen, "%s/", root);
    if (at >= outlen)
        return;
    snprintf(out + at, outlen - at, "%s-kg%d-%d", node->uid[0] ? node->uid : node->name, kg_lo,
             kg_hi);
    safe_name(out + at);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf; 0 if nothing is left. */
static int remove_tree(const char *dir)
{
    struct stat sb;
    if (lstat(dir, &sb) != 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- which old databases we need ------------------------------------------------------- */

typedef struct pick {
    const kp_subtask *st;
    int lo, hi;
    const kp_restore_entry **v;
    int n, cap;
    int oom;
} pick;

static int overlaps(const kp_restore_entry *e, int lo, int hi)
{
    return e->kg_lo < hi && lo < e->kg_hi;
}

static int pick_dir(void *ctx, const kp_restore_entry *e)
{
    pick *p = ctx;
    if (!e->is_dir || !overlaps(e, p->lo, p->hi))
        return 0;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        const kp_restore_entry **v = realloc(p->v, (size_t)cap * sizeof *v);
        if (!v)
            return p->oom = 1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = e;
    return 0;
}

static kp_state *open_dir(const kp_subtask *st, const char *dir, int fresh, char *err,
                          size_t errlen)
{
    kp_state_config cfg = {.dir = dir,
                           .fresh = fresh,
                           .block_cache_bytes = st->rocksdb_cache_bytes,
                           .memtable_bytes = st->rocksdb_memtable_bytes};
    return kp_state_open(&cfg, err, errlen);
}

/* Copies the keys of key groups [lo, hi) of every column family in cfs from src to dst: in
 * key order into one SST file per column family, ingested (half a million window entries:
 * 0.27 s of CPU instead of 0.41 s with write batches, bench/barrier-bench; the old subtasks'
 * ranges do not overlap, so neither do the files). */
static int copy_groups(kp_state *src, kp_state *dst, const kp_keyed_cf *cfs, int ncfs, int lo,
                       int hi, char *err, size_t errlen)
{
    uint8_t from[2] = {(uint8_t)(lo >> 8), (uint8_t)lo}, to[2] = {(uint8_t)(hi >> 8), (uint8_t)hi};
    for (int c = 0; c < ncfs; c++) {
        int scf = kp_state_cf(src, cfs[c].name, err, errlen);
        int dcf = scf < 0 ? -1 : cfs[c].open(dst, cfs[c].name, err, errlen);
        if (dcf < 0)
            return -1;
        kp_state_iter *it = kp_state_iter_open(src, scf, from, 2, to, 2);
        if (!it)
            return snprintf(err, errlen, "out of memory"), -1;
        kp_state_sst *f = NULL;
        int rc = 0;
        for (; kp_state_iter_valid(it) && rc == 0; kp_state_iter_next(it)) {
            size_t kl, vl;
            const void *k = kp_state_iter_key(it, &kl);
            const void *v = kp_state_iter_value(it, &vl);
            if (!f && !(f = kp_state_sst_open(dst, dcf, err, errlen)))
                rc = -1;
            else
                rc = kp_state_sst_put(f, k, kl, v, vl, err, errlen);
        }
        if (kp_state_iter_close(it, rc ? NULL : err, rc ? 0 : errlen) != 0)
            rc = -1;
        if (rc != 0) {
            kp_state_sst_abort(f);
            return -1;
        }
        if (f && kp_state_sst_ingest(f, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Rescaling: our key groups of every old database in p, copied into the fresh dst. */
static int merge_old(kp_subtask *st, const kp_node *node, pick *p, kp_state *dst, const char *dir,
                     const kp_keyed_cf *cfs, int ncfs, char *err, size_t errlen)
{
    char tmp[1200];
    for (int i = 0; i < p->n; i++) {
        const kp_restore_entry *e = p->v[i];
        snprintf(tmp, sizeof tmp, "%s.restore-%d", dir, e->subtask);
        if (remove_tree(tmp) != 0)
            return snprintf(err, errlen, "cannot delete %.700s: %s", tmp, strerror(errno)), -1;
        char why[512];
        if (kp_restore_materialize(st->restore, e, tmp, why, sizeof why) != 0) {
            snprintf(err, errlen,
                     "materialising the state of old subtask %d (key groups %d-%d): %s", e->subtask,
                     e->kg_lo, e->kg_hi, why);
            remove_tree(tmp);
            return -1;
        }
        kp_state *src = open_dir(st, tmp, 0, why, sizeof why);
        int lo = e->kg_lo > p->lo ? e->kg_lo : p->lo, hi = e->kg_hi < p->hi ? e->kg_hi : p->hi;
        int rc = src ? copy_groups(src, dst, cfs, ncfs, lo, hi, why, sizeof why) : -1;
        kp_state_close(src);
        remove_tree(tmp);
        if (rc != 0)
            return snprintf(err, errlen, "old subtask %d (key groups %d-%d): %s", e->subtask,
                            e->kg_lo, e->kg_hi, why),
                   -1;
    }
    (void)node;
    return 0;
}

static int widest(void *ctx, const kp_restore_entry *e)
{
    int *hi = ctx;
    *hi = e->kg_hi > *hi ? e->kg_hi : *hi;
    return 0;
}

/* The key groups of the checkpoint's state of this uid end where ours do: a key's group is its
 * hash modulo the max parallelism, so state taken under another one would land in the wrong
 * subtasks. 0, or -1 after kp_subtask_fail. */
static int same_key_groups(kp_subtask *st, const kp_node *node)
{
    int hi = -1;
    kp_restore_each(st->restore, node->uid, NULL, widest, &hi);
    if (hi < 0 || !st->job || hi == st->job->max_parallelism)
        return 0;
    return kp_subtask_fail(st,
                           "%s: cannot restore keyed state: the checkpoint was taken with max "
                           "parallelism %d and the job has %d (key groups are the hash modulo "
                           "it); restore with max parallelism %d",
                           node->name, hi, st->job->max_parallelism, hi);
}

kp_state *kp_keyed_db_open(kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi,
                           const kp_keyed_cf *cfs, int ncfs, int *restored)
{
    char dir[1100], err[1024];
    *restored = 0;
    if (st->restore && same_key_groups(st, node) != 0)
        return NULL;
    kp_keyed_db_path(st, node, kg_lo, kg_hi, dir, sizeof dir);
    pick p = {st, kg_lo, kg_hi, NULL, 0, 0, 0};
    if (st->restore)
        kp_restore_each(st->restore, node->uid, KP_KEYED_DB_ENTRY, pick_dir, &p);
    *restored = p.n > 0;
    if (p.oom) {
        free(p.v);
        kp_subtask_fail(st, "%s: out of memory restoring state", node->name);
        return NULL;
    }
    kp_state *db = NULL;
    if (p.n == 1 && p.v[0]->kg_lo == kg_lo && p.v[0]->kg_hi == kg_hi) {
        /* same key groups as the writer: its files are our database */
        if (remove_tree(dir) != 0) {
            snprintf(err, sizeof err, "cannot delete %.700s: %s", dir, strerror(errno));
        } else if (kp_restore_materialize(st->restore, p.v[0], dir, err, sizeof err) == 0) {
            db = open_dir(st, dir, 0, err, sizeof err);
        }
    } else {
        db = open_dir(st, dir, 1, err, sizeof err);
        if (db && p.n > 0 && merge_old(st, node, &p, db, dir, cfs, ncfs, err, sizeof err) != 0) {
            kp_state_close(db);
            db = NULL;
        }
    }
    free(p.v);
    if (!db)
        kp_subtask_fail(st, "%s: cannot %s keyed state for key groups %d-%d in %s: %s", node->name,
                        *restored ? "restore" : "open", kg_lo, kg_hi, dir, err);
    return db;
}

int kp_keyed_db_snapshot(kp_subtask *st, const kp_node *node, kp_state *db, int kg_lo, int kg_hi,
                         struct kp_snapshot *snap)
{
    char dir[1200], base[1100], err[1024];
    kp_keyed_db_path(st, node, kg_lo, kg_hi, base, sizeof base);
    snprintf(dir, sizeof dir, "%s.chk-%lld", base, (long long)kp_snapshot_id(snap));
    if (remove_tree(dir) != 0) /* left behind by a checkpoint that failed in between */
        return kp_subtask_fail(st, "%s: checkpoint: cannot delete %s: %s", node->name, dir,
                               strerror(errno));
    if (kp_state_checkpoint(db, dir, err, sizeof err) != 0)
        return kp_subtask_fail(st, "%s: checkpoint: %s", node->name, err);
    if (kp_snapshot_dir(snap, node->uid, KP_KEYED_DB_ENTRY, kg_lo, kg_hi, dir) != 0) {
        remove_tree(dir);
        return kp_subtask_fail(st, "%s: checkpoint: out of memory", node->name);
    }
    return 0;
}

typedef struct blob_filter {
    int lo, hi;
    int (*fn)(void *ctx, const kp_restore_entry *e);
    void *ctx;
} blob_filter;

static int filter_blob(void *ctx, const kp_restore_entry *e)
{
    blob_filter *f = ctx;
    return !e->is_dir && overlaps(e, f->lo, f->hi) ? f->fn(f->ctx, e) : 0;
}

int kp_keyed_blobs(const kp_subtask *st, const kp_node *node, const char *name, int kg_lo,
                   int kg_hi, int (*fn)(void *ctx, const kp_restore_entry *e), void *ctx)
{
    if (!st->restore)
        return 0;
    blob_filter f = {kg_lo, kg_hi, fn, ctx};
    return kp_restore_each(st->restore, node->uid, name, filter_blob, &f);
}

static int any_entry(void *ctx, const kp_restore_entry *e)
{
    (void)ctx;
    (void)e;
    return 1;
}

int kp_keyed_restoring(const kp_subtask *st, const kp_node *node)
{
    return st->restore && kp_restore_each(st->restore, node->uid, NULL, any_entry, NULL) != 0;
}

int kp_keyed_blob_write(kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi,
                        struct kp_snapshot *snap, kp_keyed_blob b)
{
    b.version = KP_KEYED_BLOB_VERSION;
    if (kp_snapshot_blob(snap, node->uid, KP_KEYED_BLOB, kg_lo, kg_hi, &b, sizeof b) != 0)
        return kp_subtask_fail(st, "%s: checkpoint: out of memory", node->name);
    return 0;
}

typedef struct blob_acc {
    kp_subtask *st;
    const kp_node *node;
    kp_keyed_blob *out;
    int n;
} blob_acc;

static int read_blob(void *ctx, const kp_restore_entry *e)
{
    blob_acc *a = ctx;
    kp_keyed_blob b;
    if (e->len != sizeof b || (memcpy(&b, e->data, sizeof b), b.version != KP_KEYED_BLOB_VERSION))
        return kp_subtask_fail(a->st,
                               "%s: restore: the operator state of old subtask %d is not a "
                               "version-%d keyed operator blob (%zu bytes)",
                               a->node->name, e->subtask, KP_KEYED_BLOB_VERSION, e->len);
    kp_keyed_blob *o = a->out;
    o->wm = a->n++ == 0 || b.wm < o->wm ? b.wm : o->wm;
    o->spill_seq = b.spill_seq > o->spill_seq ? b.spill_seq : o->spill_seq;
    o->next_id = b.next_id > o->next_id ? b.next_id : o->next_id;
    return 0;
}

int kp_keyed_blob_read(kp_subtask *st, const kp_node *node, int kg_lo, int kg_hi, int db_restored,
                       kp_keyed_blob *out)
{
    *out = (kp_keyed_blob){.version = KP_KEYED_BLOB_VERSION, .wm = KP_TIME_MIN};
    blob_acc a = {st, node, out, 0};
    if (kp_keyed_blobs(st, node, KP_KEYED_BLOB, kg_lo, kg_hi, read_blob, &a) != 0)
        return -1;
    if (db_restored && a.n == 0)
        return kp_subtask_fail(st,
                               "%s: restore: the checkpoint holds keyed state for key groups "
                               "%d-%d but no operator state ('%s') for them",
                               node->name, kg_lo, kg_hi, KP_KEYED_BLOB);
    return 0;
}

int kp_keyed_pass_barrier(kp_op *op, kp_op *const *late, int nlate, struct kp_snapshot *snap)
{
    for (int i = 0; i < nlate; i++)
        if (kp_op_barrier(late[i], snap) != 0)
            return -1;
    return kp_op_emit_barrier(op, snap);
}

int kp_keyed_pass_complete(kp_op *op, kp_op *const *late, int nlate, int64_t id)
{
    for (int i = 0; i < nlate; i++)
        if (kp_op_checkpoint_complete(late[i], id) != 0)
            return -1;
    return kp_op_emit_checkpoint_complete(op, id);
}
