/* Named failpoints for crash and error tests: off by default, enabled by the environment
 * variable KAPPA_FAILPOINTS=name[=action][@N],... where action is `crash` (the default:
 * _exit(137) at once, like kill -9 — no atexit handlers, no flushing) or `error` (the call
 * site fails as if the operation had failed), and `@N` lets the first N-1 hits of the point in
 * this process pass: it fires from the Nth on (e.g. `coord.after_complete_before_notify@3`:
 * after the third completed checkpoint). A failpoint is a cheap check when the variable
 * is not set: one load of a flag after the first call.
 *
 * Names in use (docs/checkpoints.md): store.before_metadata_rename,
 * store.after_metadata_write, snapshot.after_rocksdb_checkpoint,
 * coord.after_complete_before_notify, es.mid_flush, kafka.mid_commit.
 * @locality any thread; the variable is read once per process (kp_failpoint_reload re-reads
 * it, for tests) */
#ifndef KP_FAILPOINT_H
#define KP_FAILPOINT_H

/* 0 if `name` is not enabled (or not set at all); crashes the process if its action is crash;
 * returns -1 if its action is error — the caller then fails the operation. */
int kp_failpoint(const char *name);

/* Re-reads KAPPA_FAILPOINTS (tests that setenv between cases). Not thread-safe against
 * concurrent kp_failpoint calls. */
void kp_failpoint_reload(void);

#endif
