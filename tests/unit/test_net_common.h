/* What the data-plane tests share: an endpoint on 127.0.0.1 (a free port) whose channel
 * failures are recorded. Header only, included by tests/unit/test_net_*.c. */
#ifndef KP_TEST_NET_COMMON_H
#define KP_TEST_NET_COMMON_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>

#include "../../runtime/net.h"

typedef struct errors {
    pthread_mutex_t lock;
    int count;
    char last[512];
} errors;

static inline void on_error(void *ctx, const kp_net_chan_id *chan, const char *msg)
{
    (void)chan;
    errors *e = ctx;
    pthread_mutex_lock(&e->lock);
    e->count++;
    snprintf(e->last, sizeof e->last, "%s", msg);
    pthread_mutex_unlock(&e->lock);
}

static inline int error_count(errors *e)
{
    pthread_mutex_lock(&e->lock);
    int n = e->count;
    pthread_mutex_unlock(&e->lock);
    return n;
}

/* The last report, copied under the lock into `buf`. */
static inline const char *last_error(errors *e, char *buf, size_t len)
{
    pthread_mutex_lock(&e->lock);
    snprintf(buf, len, "%s", e->last);
    pthread_mutex_unlock(&e->lock);
    return buf;
}

/* An endpoint reporting to `e`; send_credits 0 = the default, timeout in ms. */
static inline kp_net *start_endpoint(errors *e, int send_credits, int connect_timeout_ms)
{
    pthread_mutex_init(&e->lock, NULL);
    kp_net_config cfg = {.bind = "127.0.0.1",
                         .port = 0,
                         .send_credits = send_credits,
                         .connect_timeout_ms = connect_timeout_ms,
                         .on_error = on_error,
                         .ctx = e};
    char err[256];
    kp_net *net = kp_net_start(&cfg, err, sizeof err);
    cr_assert_not_null(net, "%s", err);
    return net;
}

#endif
