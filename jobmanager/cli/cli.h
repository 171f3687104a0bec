/* Subcommands of the kappa CLI; each returns the process exit code. */
#ifndef KP_CLI_H
#define KP_CLI_H

#include <jansson.h>
#include <kappa/kappa.h>

#define KP_VERSION "0.1.0"

int kp_cli_run(int argc, char **argv);
int kp_cli_submit(int argc, char **argv);
int kp_cli_list(int argc, char **argv);
int kp_cli_status(int argc, char **argv);
int kp_cli_cancel(int argc, char **argv);
int kp_cli_taskmanagers(int argc, char **argv);
int kp_cli_rollback(int argc, char **argv);
int kp_cli_savepoint(int argc, char **argv); /* savepoint.c */
int kp_cli_stop(int argc, char **argv);

/* Blue/green (bluegreen.c): the procedure a job takes part in, under `kappa status`; submit's
 * --in-place / --keep-old DURATION as the manifest's "bluegreen" object (0, or -1 after saying
 * why). */
void kp_cli_print_bluegreen(json_t *job);
int kp_cli_bluegreen_flag(json_t **flags, int in_place, const char *keep_old);

/* The table of jobs `kappa list` prints, also the first lines of `kappa status` (list.c). */
void kp_cli_job_header(void);
void kp_cli_job_row(json_t *job);

struct kp_rest;
/* Polls the job until it ends: KP_EXIT_OK (FINISHED), KP_EXIT_FAILED (FAILED), KP_EXIT_CANCELED,
 * or KP_EXIT_UNREACHABLE when the jobmanager stops answering (status.c). */
int kp_cli_wait(struct kp_rest *r, const char *jobid);

/* After a submission: polls until the jobmanager has deployed the job (any state past CREATED)
 * or says what it waits for (slots), at most timeout_ms; prints that state on stderr. Returns
 * KP_EXIT_FAILED if the job already failed, else KP_EXIT_OK (status.c). */
int kp_cli_wait_deployed(struct kp_rest *r, const char *jobid, int timeout_ms);

#endif
