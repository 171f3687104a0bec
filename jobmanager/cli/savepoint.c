/* `kappa savepoint NAME|ID [DIR]` and `kappa stop NAME|ID [--savepoint DIR] [--drain]`: POST
 * /jobs/:id/savepoints (with cancel-job for stop), then GET /jobs/:id/savepoints/:rid until the
 * savepoint is on disk; stop then waits for the job to end. DIR is made absolute here (the
 * jobmanager writes it); without it the jobmanager picks <checkpoint dir>/savepoints/<name>-<id>.
 * Prints the savepoint's directory on stdout (--json: {"job","location","request-id"}); what
 * happens on stderr. Exit codes as every verb (docs/cli.md): 1 when the savepoint failed. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rest.h"

#define POLL_MS 200

enum { OPT_SAVEPOINT = 3100, OPT_DRAIN };

typedef struct sp_opts {
    kp_rest rest;
    const char *job, *dir;
    int stop, drain;
    char abs[PATH_MAX];
} sp_opts;

static void usage(FILE *out, int stop)
{
    if (stop)
        fprintf(out, "usage: kappa stop NAME|ID [--savepoint DIR] [--drain] [options]\n"
                     "  --savepoint DIR  where the savepoint goes (missing or empty; default:\n"
                     "                   the job's checkpoint dir, savepoints/NAME-ID)\n"
                     "  --drain          end the sources first: the final watermark fires every\n"
                     "                   window, then the savepoint; the job ends FINISHED (for\n"
                     "                   a job that is not resumed: its windows have fired)\n");
    else
        fprintf(out, "usage: kappa savepoint NAME|ID [DIR] [options]\n"
                     "  DIR  where the savepoint goes (missing or empty; default: the job's\n"
                     "       checkpoint dir, savepoints/NAME-ID)\n");
    kp_rest_usage(out);
}

/* Flags and arguments; -1 to go on, else the exit code. */
static int parse(sp_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"savepoint", required_argument, NULL, OPT_SAVEPOINT},
        {"drain", no_argument, NULL, OPT_DRAIN},
        KP_REST_LONGOPTS,
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h')
            o->rest.help = 1;
        else if (o->stop && c == OPT_SAVEPOINT && *optarg)
            o->dir = optarg;
        else if (o->stop && c == OPT_DRAIN)
            o->drain = 1;
        else if (!kp_rest_opts_parse(&o->rest, c, optarg))
            goto usage;
    }
    if (o->rest.help) {
        usage(stdout, o->stop);
        return KP_EXIT_OK;
    }
    int npos = argc - optind;
    if (npos < 1 || npos > (o->stop ? 1 : 2))
        goto usage;
    o->job = argv[optind];
    if (npos == 2)
        o->dir = argv[optind + 1];
    if (o->dir && o->dir[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) ||
            snprintf(o->abs, sizeof o->abs, "%s/%s", cwd, o->dir) >= (int)sizeof o->abs) {
            fprintf(stderr, "%s: cannot make %s absolute\n", o->rest.verb, o->dir);
            return KP_EXIT_USAGE;
        }
        o->dir = o->abs;
    }
    return kp_rest_resolve(&o->rest) == KP_EXIT_OK ? -1 : KP_EXIT_USAGE;
usage:
    usage(stderr, o->stop);
    return KP_EXIT_USAGE;
}

static void pause_ms(int ms)
{
    const struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Polls the request until it ends; the location into loc. KP_EXIT_OK or the exit code. */
static int follow(sp_opts *o, const char *esc, const char *rid, char *loc, size_t loclen)
{
    char path[1200];
    snprintf(path, sizeof path, "/jobs/%s/savepoints/%s", esc, rid);
    for (;;) {
        long status;
        json_t *st = NULL;
        int rc = kp_rest_call(&o->rest, "GET", path, NULL, &status, &st);
        const char *id = json_string_value(json_object_get(json_object_get(st, "status"), "id"));
        json_t *op = json_object_get(st, "operation");
        if (rc == KP_EXIT_OK && id && !strcmp(id, "COMPLETED")) {
            const char *l = json_string_value(json_object_get(op, "location"));
            const char *why = json_string_value(
                json_object_get(json_object_get(op, "failure-cause"), "stack-trace"));
            if (l)
                snprintf(loc, loclen, "%s", l);
            else
                fprintf(stderr, "%s: the savepoint of %s failed: %s\n", o->rest.verb, o->job,
                        why ? why : "(no reason given)");
            json_decref(st);
            return l ? KP_EXIT_OK : KP_EXIT_FAILED;
        }
        json_decref(st);
        if (rc != KP_EXIT_OK)
            return rc;
        pause_ms(POLL_MS);
    }
}

/* kappa stop: until the job is in a final state (CANCELED after a stop with a savepoint). */
static int wait_stopped(sp_opts *o, const char *esc)
{
    char path[1100];
    snprintf(path, sizeof path, "/jobs/%s", esc);
    for (;;) {
        long status;
        json_t *job = NULL;
        int rc = kp_rest_call(&o->rest, "GET", path, NULL, &status, &job);
        const char *s = json_string_value(json_object_get(job, "state"));
        int done = s && (!strcmp(s, "CANCELED") || !strcmp(s, "FINISHED") || !strcmp(s, "FAILED"));
        if (done && !o->rest.json)
            fprintf(stderr, "%s: job %s is %s\n", o->rest.verb, o->job, s);
        rc = rc == KP_EXIT_OK && done && !strcmp(s, "FAILED") ? KP_EXIT_FAILED : rc;
        json_decref(job);
        if (rc != KP_EXIT_OK || done)
            return rc;
        pause_ms(POLL_MS);
    }
}

static int run(sp_opts *o)
{
    char esc[1024], path[1100], loc[4200] = "";
    kp_rest_escape(o->job, esc, sizeof esc);
    snprintf(path, sizeof path, "/jobs/%s/savepoints", esc);
    json_t *req =
        json_pack("{s:o, s:b, s:b}", "target-directory", o->dir ? json_string(o->dir) : json_null(),
                  "cancel-job", o->stop, "drain", o->drain);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    long status;
    json_t *reply = NULL;
    int rc =
        text ? kp_rest_call_json(&o->rest, "POST", path, text, &status, &reply) : KP_EXIT_FAILED;
    free(text);
    const char *rid = json_string_value(json_object_get(reply, "request-id"));
    char ridbuf[64] = "";
    if (rc == KP_EXIT_OK && !rid) {
        fprintf(stderr, "%s: the jobmanager sent no request-id\n", o->rest.verb);
        rc = KP_EXIT_FAILED;
    }
    if (rid)
        snprintf(ridbuf, sizeof ridbuf, "%s", rid);
    json_decref(reply);
    if (rc != KP_EXIT_OK)
        return rc;
    if (!o->rest.json)
        fprintf(stderr, "%s: savepoint of %s requested (%s)\n", o->rest.verb, o->job, ridbuf);
    if ((rc = follow(o, esc, ridbuf, loc, sizeof loc)) != KP_EXIT_OK)
        return rc;
    if (o->stop && (rc = wait_stopped(o, esc)) != KP_EXIT_OK)
        return rc;
    if (o->rest.json) {
        json_t *out =
            json_pack("{s:s, s:s, s:s}", "job", o->job, "location", loc, "request-id", ridbuf);
        json_dumpf(out, stdout, JSON_SORT_KEYS);
        putchar('\n');
        json_decref(out);
    } else {
        printf("%s\n", loc);
    }
    return KP_EXIT_OK;
}

int kp_cli_savepoint(int argc, char **argv)
{
    sp_opts o = {.rest.verb = "kappa savepoint"};
    int rc = parse(&o, argc, argv);
    return rc >= 0 ? rc : run(&o);
}

int kp_cli_stop(int argc, char **argv)
{
    sp_opts o = {.rest.verb = "kappa stop", .stop = 1};
    int rc = parse(&o, argc, argv);
    return rc >= 0 ? rc : run(&o);
}
