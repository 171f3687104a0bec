/* The snapshot of one subtask for one checkpoint (kp_snapshot_* of checkpoint.h): an in-memory
 * list of entries that operators append to during the synchronous part and the uploader reads
 * (kp_snapshot_entry_at, checkpoint_store.h). Blobs are copied; directories are taken over and
 * removed when the snapshot is freed, uploaded or not. */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "checkpoint_store.h"
#include "ckpt_fs.h"

struct kp_snapshot {
    int64_t id;
    int task, subtask, parallelism;
    double align_ms, sync_ms;
    int end_of_input; /* -1: unset */
    kp_snapshot_entry *e;
    size_t n, cap;
};

kp_snapshot *kp_snapshot_new(int64_t checkpoint_id, int task_id, int subtask, int parallelism)
{
    kp_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->id = checkpoint_id;
    s->task = task_id;
    s->subtask = subtask;
    s->parallelism = parallelism;
    s->end_of_input = -1;
    return s;
}

void kp_snapshot_free(kp_snapshot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        kp_snapshot_entry *e = &s->e[i];
        if (e->dir)
            kp_fs_rmtree(e->dir);
        free((char *)e->uid);
        free((char *)e->name);
        free((char *)e->dir);
        free((void *)e->data);
    }
    free(s->e);
    free(s);
}

int64_t kp_snapshot_id(const kp_snapshot *s)
{
    return s->id;
}

/* A new entry with copies of uid and name, or NULL if out of memory. */
static kp_snapshot_entry *add(kp_snapshot *s, const char *uid, const char *name, int kg_lo,
                              int kg_hi)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        kp_snapshot_entry *e = realloc(s->e, cap * sizeof *e);
        if (!e)
            return NULL;
        s->e = e;
        s->cap = cap;
    }
    char *u = strdup(uid), *nm = strdup(name);
    if (!u || !nm) {
        free(u);
        free(nm);
        return NULL;
    }
    kp_snapshot_entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->uid = u;
    e->name = nm;
    e->kg_lo = kg_lo;
    e->kg_hi = kg_hi;
    return e;
}

int kp_snapshot_blob(kp_snapshot *s, const char *uid, const char *name, int kg_lo, int kg_hi,
                     const void *data, size_t len)
{
    void *copy = malloc(len ? len : 1);
    kp_snapshot_entry *e = copy ? add(s, uid, name, kg_lo, kg_hi) : NULL;
    if (!e) {
        free(copy);
        return -1;
    }
    if (len)
        memcpy(copy, data, len);
    e->data = copy;
    e->len = len;
    s->n++;
    return 0;
}

int kp_snapshot_dir(kp_snapshot *s, const char *uid, const char *name, int kg_lo, int kg_hi,
                    const char *local_dir)
{
    char *dir = strdup(local_dir);
    kp_snapshot_entry *e = dir ? add(s, uid, name, kg_lo, kg_hi) : NULL;
    if (!e) {
        free(dir);
        return -1;
    }
    e->is_dir = 1;
    e->dir = dir;
    s->n++;
    return 0;
}

void kp_snapshot_set_times(kp_snapshot *s, double align_ms, double sync_ms)
{
    s->align_ms = align_ms;
    s->sync_ms = sync_ms;
}

void kp_snapshot_set_end_of_input(kp_snapshot *s, int at_end)
{
    s->end_of_input = at_end != 0;
}

int kp_snapshot_end_of_input(const kp_snapshot *s)
{
    return s->end_of_input;
}

int kp_snapshot_task(const kp_snapshot *s)
{
    return s->task;
}

int kp_snapshot_subtask(const kp_snapshot *s)
{
    return s->subtask;
}

int kp_snapshot_parallelism(const kp_snapshot *s)
{
    return s->parallelism;
}

void kp_snapshot_times(const kp_snapshot *s, double *align_ms, double *sync_ms)
{
    *align_ms = s->align_ms;
    *sync_ms = s->sync_ms;
}

size_t kp_snapshot_count(const kp_snapshot *s)
{
    return s->n;
}

const kp_snapshot_entry *kp_snapshot_entry_at(const kp_snapshot *s, size_t i)
{
    return i < s->n ? &s->e[i] : NULL;
}
