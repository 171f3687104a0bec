/* The taskmanager's log lines not yet sent to the jobmanager (log_tail.h). */
#include "log_tail.h"

#include <pthread.h>
#include <string.h>

#define KEEP_MAX (32 * 1024) /* bytes kept while no heartbeat takes them */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char kept[KEEP_MAX];
static size_t nkept;

/* Drops whole lines from the front until `need` more bytes fit. @locks lock */
static void make_room(size_t need)
{
    size_t drop = 0;
    while (nkept - drop + need > KEEP_MAX && drop < nkept) {
        const char *nl = memchr(kept + drop, '\n', nkept - drop);
        drop = nl ? (size_t)(nl - kept) + 1 : nkept;
    }
    memmove(kept, kept + drop, nkept - drop);
    nkept -= drop;
}

void kp_tm_log_keep(const char *line, size_t len)
{
    if (len >= KEEP_MAX)
        len = KEEP_MAX - 1;
    pthread_mutex_lock(&lock);
    make_room(len + 1);
    memcpy(kept + nkept, line, len);
    nkept += len;
    kept[nkept++] = '\n';
    pthread_mutex_unlock(&lock);
}

size_t kp_tm_log_take(char *out, size_t max)
{
    if (max == 0)
        return 0;
    pthread_mutex_lock(&lock);
    size_t n = nkept < max - 1 ? nkept : max - 1;
    if (n < nkept) { /* whole lines only; a line longer than max goes cut */
        const char *nl = NULL;
        for (size_t i = n; i-- > 0;)
            if (kept[i] == '\n') {
                nl = kept + i;
                break;
            }
        if (nl)
            n = (size_t)(nl - kept) + 1;
    }
    memcpy(out, kept, n);
    out[n] = '\0';
    memmove(kept, kept + n, nkept - n);
    nkept -= n;
    pthread_mutex_unlock(&lock);
    return n;
}
