/* Messages deployment threads hand to the session thread, which alone writes to the
 * jobmanager connection: a mutex-protected FIFO of packed frames plus an eventfd the session
 * polls next to its socket. Also carries "a deployment finished" wake-ups. */
#ifndef KP_TM_OUTBOX_H
#define KP_TM_OUTBOX_H

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

typedef struct kp_tm_msg {
    struct kp_tm_msg *next;
    size_t len;
    uint8_t frame[]; /* header + payload */
} kp_tm_msg;

typedef struct kp_tm_outbox {
    pthread_mutex_t lock;
    kp_tm_msg *head, *tail;
    int wake_fd; /* eventfd: readable when something was posted */
} kp_tm_outbox;

/* 0, or -1 with errno set. @locality main thread, before any deployment runs */
int kp_tm_outbox_init(kp_tm_outbox *o);
void kp_tm_outbox_destroy(kp_tm_outbox *o);

/* Packs and queues a message, then wakes the session. 0, or -1 when out of memory (the
 * message is lost: the caller logs). @locality any thread @locks o->lock */
int kp_tm_outbox_post(kp_tm_outbox *o, kp_frame_type type, const ProtobufCMessage *msg);

/* Wakes the session without a message (a deployment thread ended). @locality any thread */
void kp_tm_outbox_wake(kp_tm_outbox *o);

/* Takes the whole queue, oldest first (the caller frees each with free()), and clears the
 * wake-up. @locality the session thread @locks o->lock */
kp_tm_msg *kp_tm_outbox_take(kp_tm_outbox *o);

/* Frees a list returned by kp_tm_outbox_take. */
void kp_tm_outbox_free_list(kp_tm_msg *m);

#endif
