/* Helpers for tests that drive kappa's programs as a user would: required environment
 * variables (set by meson), shell commands with printf-style formatting, capturing a
 * command's first output line, and removing a directory tree. Criterion asserts on misuse. */
#ifndef KP_TEST_SHELL_H
#define KP_TEST_SHELL_H

#include <stddef.h>

/* The value of a variable meson sets for the test; fails the test when it is missing. */
const char *kp_test_env(const char *name);

/* Runs a shell command; returns its exit status (-1 if it did not exit normally). */
int kp_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The first line of a command's output, without the newline, into buf ("" if none). */
void kp_test_capture(char *buf, size_t len, const char *cmd);

/* Removes a directory tree without a shell (nftw, symbolic links not followed); asserts that
 * everything went. */
void kp_test_rmtree(const char *path);

#endif
