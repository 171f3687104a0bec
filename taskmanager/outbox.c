/* The deployment threads' way to the jobmanager (outbox.h). Messages are rare (state changes),
 * so one allocation per message is fine here; nothing on a record path posts. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "outbox.h"

int kp_tm_outbox_init(kp_tm_outbox *o)
{
    *o = (kp_tm_outbox){.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    if (o->wake_fd < 0)
        return -1;
    pthread_mutex_init(&o->lock, NULL);
    return 0;
}

void kp_tm_outbox_destroy(kp_tm_outbox *o)
{
    kp_tm_outbox_free_list(kp_tm_outbox_take(o));
    close(o->wake_fd);
    pthread_mutex_destroy(&o->lock);
}

void kp_tm_outbox_wake(kp_tm_outbox *o)
{
    uint64_t one = 1;
    if (write(o->wake_fd, &one, sizeof one) < 0) {
        /* the counter is already nonzero: the session wakes anyway */
    }
}

int kp_tm_outbox_post(kp_tm_outbox *o, kp_frame_type type, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    kp_tm_msg *m = malloc(sizeof *m + KP_FRAME_HEADER_SIZE + n + 1);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = KP_FRAME_HEADER_SIZE + n;
    protobuf_c_message_pack(msg, m->frame + KP_FRAME_HEADER_SIZE);
    kp_frame_header_encode(m->frame, type, m->frame + KP_FRAME_HEADER_SIZE, (uint32_t)n);
    pthread_mutex_lock(&o->lock);
    if (o->tail)
        o->tail->next = m;
    else
        o->head = m;
    o->tail = m;
    pthread_mutex_unlock(&o->lock);
    kp_tm_outbox_wake(o);
    return 0;
}

kp_tm_msg *kp_tm_outbox_take(kp_tm_outbox *o)
{
    uint64_t n;
    if (read(o->wake_fd, &n, sizeof n) < 0) {
        /* nothing was posted since the last take */
    }
    pthread_mutex_lock(&o->lock);
    kp_tm_msg *m = o->head;
    o->head = o->tail = NULL;
    pthread_mutex_unlock(&o->lock);
    return m;
}

void kp_tm_outbox_free_list(kp_tm_msg *m)
{
    while (m) {
        kp_tm_msg *next = m->next;
        free(m);
        m = next;
    }
}
