/* Named failpoints (failpoint.h). The variable is parsed once into a small fixed table; the
 * common case, no failpoints at all, costs one relaxed atomic load. `@N` counts the hits of
 * a failpoint (atomically: any thread) and lets the first N-1 pass. */
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
    long from; /* fires from this hit on (1: every hit) */
    atomic_long hits;
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
        long from = 1;
        char *at = strchr(item, '@');
        if (at) {
            char *end;
            *at = 0;
            from = strtol(at + 1, &end, 10);
            if (end == at + 1 || *end || from < 1) {
                fprintf(stderr,
                        "kappa: KAPPA_FAILPOINTS: '@%s' after %s is not a count >= 1; "
                        "using @1\n",
                        at + 1, item);
                from = 1;
            }
        }
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
            fps[nfps].from = from;
            atomic_store(&fps[nfps].hits, 0);
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
        if (atomic_fetch_add(&fps[i].hits, 1) + 1 < fps[i].from)
            return 0;
        if (fps[i].action == FP_CRASH) {
            fprintf(stderr, "kappa: failpoint %s: crash (hit %ld)\n", name,
                    atomic_load(&fps[i].hits));
            _exit(137);
        }
        return -1;
    }
    return 0;
}
