/* The taskmanager's log lines on their way to the jobmanager (GET /taskmanagers/:id/logs):
 * kp_tm_log keeps each line here as well as writing it to stderr, and every heartbeat takes
 * what is new (docs/rest.md). Bounded: when the jobmanager is away, the oldest lines go.
 * @locality any thread (its own mutex) */
#ifndef KP_TM_LOG_TAIL_H
#define KP_TM_LOG_TAIL_H

#include <stddef.h>

/* Keeps one line (without its newline). */
void kp_tm_log_keep(const char *line, size_t len);

/* Moves up to max - 1 bytes of whole lines not taken yet into out, NUL-terminated; returns
 * their length (0: nothing new). */
size_t kp_tm_log_take(char *out, size_t max);

#endif
