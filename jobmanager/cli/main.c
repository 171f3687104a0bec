/* `kappa`: the command-line client. Subcommands dispatch to one file each; today `run`
 * (local execution); the cluster issue adds submit, list, cancel and savepoint, which talk
 * REST to the jobmanager. Exit codes: 0 ok, 1 the job failed, 2 bad usage. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kappa <command> [options]\n"
            "\n"
            "commands:\n"
            "  run --local JOB.so [options]   run a job in this process (see kappa run --help)\n"
            "  version                        print the version and job ABI\n"
            "  help                           this text\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "run"))
        return kp_cli_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("kappa %s (job ABI %u)\n", KP_VERSION, KP_ABI_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "kappa: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
