/* The engine's clocks, in one place: wall-clock milliseconds (processing and ingestion time),
 * monotonic time for durations, timeouts and tick intervals (immune to clock steps), and the
 * absolute CLOCK_MONOTONIC deadlines that condition variables created by kp_cond_init wait on.
 * Any thread may call these. */
#ifndef KP_CLOCK_H
#define KP_CLOCK_H

#include <pthread.h>
#include <time.h>

#include <kappa/kappa.h>

/* Milliseconds since the epoch (CLOCK_REALTIME). */
kp_time kp_wall_ms(void);

/* Monotonic milliseconds and seconds (CLOCK_MONOTONIC), for durations only. */
kp_time kp_mono_ms(void);
double kp_mono_s(void);

/* A condition variable whose timed waits use CLOCK_MONOTONIC; 0 or an errno value. */
int kp_cond_init(pthread_cond_t *c);

/* The CLOCK_MONOTONIC deadline `ms` milliseconds from now, for pthread_cond_timedwait on a
 * condition made by kp_cond_init. */
struct timespec kp_deadline_ms(long ms);

#endif
