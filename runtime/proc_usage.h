/* The calling process' CPU time and resident memory, from /proc/self: what the jobmanager
 * serves on /metrics for itself and what a taskmanager sends in each Heartbeat. */
#ifndef KP_PROC_USAGE_H
#define KP_PROC_USAGE_H

/* CPU seconds (user + system) and RSS in bytes; each 0 when /proc cannot be read.
 * @locality any thread; two small reads of /proc (call it per heartbeat or scrape, not more) */
void kp_proc_usage(double *cpu_seconds, long long *rss_bytes);

#endif
