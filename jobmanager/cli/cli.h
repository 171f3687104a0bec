/* Subcommands of the kappa CLI; each returns the process exit code. */
#ifndef KP_CLI_H
#define KP_CLI_H

#include <kappa/kappa.h>

#define KP_VERSION "0.1.0"

int kp_cli_run(int argc, char **argv);

#endif
