/* `kappa list` and `kappa taskmanagers`: the two overviews, GET /jobs and GET /taskmanagers, as
 * tables for people or the jobmanager's JSON for scripts (--json). */
#include <stdio.h>

#include "cli.h"
#include "rest.h"

/* GET path into *body; prints it as JSON with --json. -1 to go on (a table is wanted), else the
 * exit code. */
static int fetch(kp_rest *r, const char *path, json_t **body)
{
    long status;
    int rc = kp_rest_call(r, "GET", path, NULL, &status, body);
    if (rc != KP_EXIT_OK)
        return rc;
    if (!*body) {
        fprintf(stderr, "%s: the jobmanager's answer to GET %s is not JSON\n", r->verb, path);
        return KP_EXIT_FAILED;
    }
    if (!r->json)
        return -1;
    json_dumpf(*body, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
    return KP_EXIT_OK;
}

/* The verb's flags and GET path. -1 to go on with a table in *body, else the exit code. */
static int get_list(kp_rest *r, int argc, char **argv, const char *synopsis, const char *path,
                    json_t **body)
{
    int rc = kp_rest_simple_args(r, argc, argv, 0, synopsis);
    if (rc >= 0 || (rc = fetch(r, path, body)) >= 0) {
        json_decref(*body);
        *body = NULL;
    }
    return rc;
}

#define JOB_ROW "%-32s  %-24s  %-11s  %3s  %7s  %-19s  %-19s\n"

void kp_cli_job_header(void)
{
    printf(JOB_ROW, "JOB ID", "NAME", "STATE", "P", "ATTEMPT", "STARTED (UTC)", "ENDED (UTC)");
}

void kp_cli_job_row(json_t *j)
{
    char id[64], name[256], state[32], p[16], att[16], start[32], end[32];
    kp_rest_time(j, "start-time", start, sizeof start);
    kp_rest_time(j, "end-time", end, sizeof end);
    printf(JOB_ROW, kp_rest_str(j, "jid", id, sizeof id), kp_rest_str(j, "name", name, sizeof name),
           kp_rest_str(j, "state", state, sizeof state), kp_rest_str(j, "parallelism", p, sizeof p),
           kp_rest_str(j, "attempt", att, sizeof att), start, end);
}

int kp_cli_list(int argc, char **argv)
{
    kp_rest r = {.verb = "kappa list"};
    json_t *body = NULL, *j;
    int rc = get_list(&r, argc, argv, "kappa list [options]  (every job)", "/jobs", &body);
    if (rc >= 0)
        return rc;
    json_t *jobs = json_object_get(body, "jobs");
    size_t i;
    kp_cli_job_header();
    json_array_foreach(jobs, i, j) kp_cli_job_row(j);
    if (json_array_size(jobs) == 0)
        printf("(no jobs)\n");
    json_decref(body);
    return KP_EXIT_OK;
}

int kp_cli_taskmanagers(int argc, char **argv)
{
    kp_rest r = {.verb = "kappa taskmanagers"};
    json_t *body = NULL;
    int rc = get_list(&r, argc, argv, "kappa taskmanagers [options]  (registered taskmanagers)",
                      "/taskmanagers", &body);
    if (rc >= 0)
        return rc;
    json_t *tms = json_object_get(body, "taskmanagers"), *t;
    size_t i;
    char id[64], addr[128], total[16], free_[16], hb[32], build[64];
    printf("%-24s  %-21s  %5s  %4s  %-19s  %s\n", "ID", "DATA ADDRESS", "SLOTS", "FREE",
           "LAST HEARTBEAT", "BUILD");
    json_array_foreach(tms, i, t)
    {
        kp_rest_time(t, "last_heartbeat_ms", hb, sizeof hb);
        printf("%-24s  %-21s  %5s  %4s  %-19s  %s\n", kp_rest_str(t, "id", id, sizeof id),
               kp_rest_str(t, "data_address", addr, sizeof addr),
               kp_rest_str(t, "slots_total", total, sizeof total),
               kp_rest_str(t, "slots_free", free_, sizeof free_), hb,
               kp_rest_str(t, "build", build, sizeof build));
    }
    if (json_array_size(tms) == 0)
        printf("(no taskmanager has registered)\n");
    json_decref(body);
    return KP_EXIT_OK;
}
