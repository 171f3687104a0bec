/* Starting programs from tests without a shell: argv as given (no quoting to get wrong), the
 * test's environment minus chosen variables plus one more, stdout and stderr into files.
 * Criterion asserts on misuse. */
#ifndef KP_TEST_SPAWN_H
#define KP_TEST_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

typedef struct kp_test_proc {
    const char *const *argv; /* argv[0] is the program's path; NULL-terminated */
    const char *const *drop; /* environment variables to leave out ("NAME"), NULL-terminated */
    const char *add;         /* one "NAME=VALUE" to add, or NULL */
    const char *out, *err;   /* files for stdout and stderr (created, truncated) */
} kp_test_proc;

/* Starts the program; returns its pid. */
pid_t kp_test_spawn(const kp_test_proc *p);

/* Waits for it; its exit status, or -1 if it did not exit normally. */
int kp_test_wait(pid_t pid);

/* A file's content (at most len - 1 bytes) into buf. */
void kp_test_slurp(const char *path, char *buf, size_t len);

#endif
