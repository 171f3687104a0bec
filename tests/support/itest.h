/* The scaffolding the cluster integration tests (cluster, bluegreen, failpoints) each carried a
 * copy of: the test's scratch directory (paths in it; removed at the end unless
 * KAPPA_KEEP_TEST_DIR is set), deleting the Kafka topics and OpenSearch indices it created,
 * starting and stopping a jobmanager with two taskmanagers, waiting for a job's state, and a
 * monotonic clock for its deadlines. Needs ../support/shell.c and ../unit/jm_harness.c;
 * Criterion asserts on misuse.
 *
 * @locality one scratch directory per test process: kp_itest_open records it (Criterion runs
 * each test's .init, body and .fini in one worker process). */
#ifndef KP_TEST_ITEST_H
#define KP_TEST_ITEST_H

#include <sys/types.h>

#include "../unit/jm_harness.h"

/* Creates the scratch directory from a mkdtemp template (rewritten in place, so it must stay
 * alive for the whole test) and makes it the directory of kp_itest_path and kp_itest_close. */
void kp_itest_open(char *dir_template);

/* DIR/NAME in one of 8 rotating buffers: valid until 8 more calls. */
const char *kp_itest_path(const char *name);

/* Removes the scratch directory, or keeps it and says so on stderr ("WHO: kept DIR") when
 * KAPPA_KEEP_TEST_DIR is set. */
void kp_itest_close(const char *who);

/* Deletes a Kafka topic through deploy/dev/kafka (KAPPA_SRC); quiet, a missing topic is fine. */
void kp_itest_topic_delete(const char *brokers, const char *topic);

/* Deletes the OpenSearch indices PREFIX-PID-* of this process; quiet. */
void kp_itest_indices_delete(const char *es, const char *prefix);

/* A jobmanager (--restart-delay-ms 200, state in DIR/jm) and two taskmanagers of 4 slots each
 * (DIR/tm1, DIR/tm2) into tm[0..1]; returns once the jobmanager lists both. */
void kp_itest_start_cluster(jm_proc *jm, pid_t tm[2]);

/* The clean end: the taskmanagers started (tm[i] > 0) stop on SIGTERM and are zeroed, then the
 * jobmanager (it must exit 0). */
void kp_itest_stop_cluster(jm_proc *jm, pid_t tm[2]);

/* Polls the job's state (GET /jobs/:job) every 100 ms until it is `want`; asserts it gets there
 * within `seconds`, else prints the tail of the scratch directory's jm.log. */
void kp_itest_await_state(const jm_proc *jm, const char *job, const char *want, int seconds);

/* Seconds on the monotonic clock. */
double kp_itest_now_s(void);

#endif
