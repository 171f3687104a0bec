/* The checkpoint uploader (exec_upload.h): a queue of finished snapshots and one thread per
 * process that uploads them one after the other — the asynchronous part of a checkpoint runs
 * here, never on a subtask's thread. One thread is enough: uploads are bounded by the disk
 * (or the shared filesystem), and incremental RocksDB checkpoints copy only new SST files.
 * The queue is a linked list of small nodes; a subtask blocks on nothing but its lock. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "exec_upload.h"
#include "failpoint.h"

typedef struct job_node {
    kp_snapshot *snap;
    struct job_node *next;
} job_node;

struct kp_uploader {
    kp_ckpt_store *store;
    const kp_ckpt_hooks *hooks;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    job_node *head, *tail;
    int stopping, discard, threaded;
    pthread_t thread;
};

/* Uploads one snapshot, then acknowledges or declines it, then frees it. */
static void upload(kp_uploader *u, kp_snapshot *snap)
{
    char err[512];
    char *ack = kp_ckpt_store_upload(u->store, snap, err, sizeof err);
    int64_t id = kp_snapshot_id(snap);
    int task = kp_snapshot_task(snap), subtask = kp_snapshot_subtask(snap);
    /* failpoint: the snapshot (its RocksDB checkpoint included) is in storage, unacknowledged */
    if (ack && kp_failpoint("snapshot.after_rocksdb_checkpoint") != 0) {
        free(ack);
        ack = NULL;
        snprintf(err, sizeof err, "failpoint snapshot.after_rocksdb_checkpoint");
    }
    if (ack) {
        u->hooks->ack(u->hooks->ctx, id, task, subtask, ack);
        free(ack);
    } else {
        char why[600];
        snprintf(why, sizeof why, "upload failed: %s", err);
        u->hooks->decline(u->hooks->ctx, id, task, subtask, why);
    }
    kp_snapshot_free(snap);
}

static void *uploader_main(void *arg)
{
    kp_uploader *u = arg;
    pthread_setname_np(pthread_self(), "kp upload");
    pthread_mutex_lock(&u->lock);
    for (;;) {
        while (!u->head && !u->stopping)
            pthread_cond_wait(&u->ready, &u->lock);
        job_node *n = u->head;
        if (!n)
            break; /* stopping, and nothing left */
        u->head = n->next;
        if (!u->head)
            u->tail = NULL;
        int discard = u->discard;
        pthread_mutex_unlock(&u->lock);
        if (discard)
            kp_snapshot_free(n->snap);
        else
            upload(u, n->snap);
        free(n);
        pthread_mutex_lock(&u->lock);
    }
    pthread_mutex_unlock(&u->lock);
    return NULL;
}

kp_uploader *kp_uploader_new(kp_ckpt_store *store, const kp_ckpt_hooks *hooks, int threaded)
{
    kp_uploader *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->store = store;
    u->hooks = hooks;
    u->threaded = threaded;
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->ready, NULL);
    if (threaded && pthread_create(&u->thread, NULL, uploader_main, u) != 0) {
        pthread_mutex_destroy(&u->lock);
        pthread_cond_destroy(&u->ready);
        free(u);
        return NULL;
    }
    return u;
}

void kp_uploader_push(kp_uploader *u, kp_snapshot *snap)
{
    if (!u->threaded) {
        upload(u, snap);
        return;
    }
    job_node *n = malloc(sizeof *n);
    if (!n) {
        u->hooks->decline(u->hooks->ctx, kp_snapshot_id(snap), kp_snapshot_task(snap),
                          kp_snapshot_subtask(snap), "out of memory queueing the upload");
        kp_snapshot_free(snap);
        return;
    }
    *n = (job_node){snap, NULL};
    pthread_mutex_lock(&u->lock);
    if (u->tail)
        u->tail->next = n;
    else
        u->head = n;
    u->tail = n;
    pthread_cond_signal(&u->ready);
    pthread_mutex_unlock(&u->lock);
}

void kp_uploader_free(kp_uploader *u, int discard)
{
    if (!u)
        return;
    if (u->threaded) {
        pthread_mutex_lock(&u->lock);
        u->stopping = 1;
        u->discard = discard;
        pthread_cond_signal(&u->ready);
        pthread_mutex_unlock(&u->lock);
        pthread_join(u->thread, NULL);
    }
    pthread_mutex_destroy(&u->lock);
    pthread_cond_destroy(&u->ready);
    free(u);
}
