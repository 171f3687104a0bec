/* `kappa`: the command-line client. Subcommands dispatch to one file each: `run --local`
 * (run_local.c) runs a job in this process; submit, list, status, cancel and taskmanagers talk
 * REST to the jobmanager (submit.c, list.c, status.c, cancel.c over rest.c). Exit codes
 * (docs/cli.md): 0 ok, 1 the job failed or the jobmanager refused, 2 bad usage, 3 the
 * jobmanager is unreachable, 4 the job was cancelled (--wait); `run --local` 128+signal. */
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
            "  submit JOB.so [options]        run a job on the cluster (see kappa submit --help)\n"
            "  list                           the cluster's jobs\n"
            "  status NAME|ID                 one job: state, placement, exceptions\n"
            "  cancel NAME|ID                 cancel a job\n"
            "  savepoint NAME|ID [DIR]        take a savepoint of a running job\n"
            "  stop NAME|ID [--savepoint DIR] a savepoint, then the job stops\n"
            "  rollback NAME|ID               a blue/green reprocessing back to the old version\n"
            "  taskmanagers                   the registered taskmanagers and their slots\n"
            "  version                        print the version and job ABI\n"
            "  help                           this text\n"
            "\n"
            "exit codes: 0 ok; 1 the job failed or the jobmanager refused; 2 usage error (nothing\n"
            "sent); 3 jobmanager unreachable; 4 the job was cancelled (--wait); see docs/cli.md\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    static const struct {
        const char *name;
        int (*fn)(int argc, char **argv);
    } verbs[] = {{"run", kp_cli_run},           {"submit", kp_cli_submit},
                 {"list", kp_cli_list},         {"status", kp_cli_status},
                 {"cancel", kp_cli_cancel},     {"taskmanagers", kp_cli_taskmanagers},
                 {"rollback", kp_cli_rollback}, {"savepoint", kp_cli_savepoint},
                 {"stop", kp_cli_stop}};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (!strcmp(argv[1], verbs[i].name))
            return verbs[i].fn(argc - 1, argv + 1);
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
