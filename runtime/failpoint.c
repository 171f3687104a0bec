/* Named failpoints (failpoint.h). The variable is parsed once into a small fixed table; the
 * common case, no failpoints at all, costs one relaxed atomic load. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failpoint.h"

#define MAX_FP   16
#define MAX_NAME 64

enum { FP_CRASH = 1, FP_ERROR };

static struct {
    char name[MAX_NAME];
    int action;
} fps[MAX_FP];
static int nfps;
static atomic_int state; /* 0 unread, 1 none set, 2 some set */

static void parse(const char *v)
{
    nfps = 0;
    while (v && *v && nfps < MAX_FP) {
        size_t len = strcspn(v, ",");
        char item[MAX_NAME * 2];
        snprintf(item, sizeof item, "%.*s", (int)len, v);
        char *eq = strchr(item, '=');
        int action = FP_CRASH;
        if (eq) {
            *eq = 0;
            if (strcmp(eq + 1, "error") == 0)
                action = FP_ERROR;
            else if (strcmp(eq + 1, "crash") != 0)
                fprintf(stderr,
                        "kappa: KAPPA_FAILPOINTS: unknown action '%s' for %s (crash|error); "
                        "using crash\n",
                        eq + 1, item);
        }
        if (item[0]) {
            snprintf(fps[nfps].name, MAX_NAME, "%.63s", item);
            fps[nfps++].action = action;
        }
        v += len + (v[len] == ',');
    }
}

void kp_failpoint_reload(void)
{
    parse(getenv("KAPPA_FAILPOINTS"));
    atomic_store(&state, nfps ? 2 : 1);
}

int kp_failpoint(const char *name)
{
    int s = atomic_load_explicit(&state, memory_order_acquire);
    if (s == 1)
        return 0;
    if (s == 0) {
        static atomic_flag once = ATOMIC_FLAG_INIT;
        if (!atomic_flag_test_and_set(&once))
            kp_failpoint_reload();
        while ((s = atomic_load_explicit(&state, memory_order_acquire)) == 0)
            ;
        if (s == 1)
            return 0;
    }
    for (int i = 0; i < nfps; i++) {
        if (strcmp(fps[i].name, name) != 0)
            continue;
        if (fps[i].action == FP_CRASH) {
            fprintf(stderr, "kappa: failpoint %s: crash\n", name);
            _exit(137);
        }
        return -1;
    }
    return 0;
}
