/* The checkpoint I/O worker (ckpt_io.h): a FIFO of items, one thread that runs them without
 * jm->lock, and a list of finished items whose `done` the control thread calls. The worker
 * wakes the control thread (kp_jm_wake) after each item. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ckpt_io.h"

typedef struct item {
    kp_ckpt_io_run_fn run;
    kp_ckpt_io_done_fn done;
    void *arg;
    struct item *next;
} item;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static item *todo, **todo_tail = &todo; /* queued, oldest first */
static item *finished, **finished_tail = &finished;
static bool started, stopping;
static pthread_t thread;
static kp_jm_t *jm_; /* for the wake-up only */

static void *worker(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!todo && !stopping)
            pthread_cond_wait(&cv, &mu);
        if (!todo)
            break;
        item *it = todo;
        if (!(todo = it->next))
            todo_tail = &todo;
        pthread_mutex_unlock(&mu);
        it->run(it->arg);
        pthread_mutex_lock(&mu);
        if (it->done) {
            it->next = NULL;
            *finished_tail = it;
            finished_tail = &it->next;
        } else {
            free(it);
        }
        if (!stopping)
            kp_jm_wake(jm_);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int kp_ckpt_io_submit(kp_jm_t *jm, kp_ckpt_io_run_fn run, kp_ckpt_io_done_fn done, void *arg)
{
    item *it = calloc(1, sizeof *it);
    if (!it)
        return -1;
    it->run = run;
    it->done = done;
    it->arg = arg;
    pthread_mutex_lock(&mu);
    if (!started) {
        jm_ = jm;
        if (pthread_create(&thread, NULL, worker, NULL) != 0) {
            pthread_mutex_unlock(&mu);
            free(it);
            return -1;
        }
        started = true;
    }
    *todo_tail = it;
    todo_tail = &it->next;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    return 0;
}

void kp_ckpt_io_drain(kp_jm_t *jm)
{
    pthread_mutex_lock(&mu);
    item *list = finished;
    finished = NULL;
    finished_tail = &finished;
    pthread_mutex_unlock(&mu);
    while (list) {
        item *it = list;
        list = it->next;
        it->done(jm, it->arg);
        free(it);
    }
}

void kp_ckpt_io_stop(void)
{
    pthread_mutex_lock(&mu);
    bool join = started;
    stopping = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    if (join)
        pthread_join(thread, NULL);
    for (item *it = finished, *next; it; it = next) {
        next = it->next;
        free(it->arg); /* done not called: its arg is plain memory by convention */
        free(it);
    }
    finished = NULL;
    finished_tail = &finished;
}
