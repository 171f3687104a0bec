/* kp_proc_usage (proc_usage.h): /proc/self/stat's utime and stime, /proc/self/statm's
 * resident pages. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proc_usage.h"

void kp_proc_usage(double *cpu_seconds, long long *rss_bytes)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long ut = 0, st = 0;
    long rss = 0;
    FILE *p = fopen("/proc/self/stat", "r");
    if (p) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, p);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
        if (rp &&
            sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
            ut = st = 0;
        fclose(p);
    }
    p = fopen("/proc/self/statm", "r");
    if (p) {
        if (fscanf(p, "%*s %ld", &rss) != 1)
            rss = 0;
        fclose(p);
    }
    *cpu_seconds = tick > 0 ? (double)(ut + st) / (double)tick : 0;
    *rss_bytes = (long long)rss * page;
}
