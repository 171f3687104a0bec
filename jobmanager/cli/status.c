/* `kappa status NAME|ID` (GET /jobs/:id: the job, where each subtask runs, the exceptions that
 * moved it between states) and the waiting behind `kappa submit --wait`: poll the job until it
 * reaches a final state and turn that state into the exit code. */
#include <string.h>
#include <time.h>

#include "cli.h"
#include "rest.h"

#define WAIT_POLL_MS 500

static void print_placement(json_t *job)
{
    json_t *tasks = json_object_get(job, "tasks"), *t, *s;
    size_t i, k;
    char tid[16], tname[256], sub[16], tm[64], addr[128], state[32], in[32], out[32];
    printf("%-5s  %-32s  %7s  %-24s  %-21s  %-10s  %12s  %12s\n", "TASK", "NAME", "SUBTASK",
           "TASKMANAGER", "DATA ADDRESS", "STATE", "RECORDS IN", "RECORDS OUT");
    json_array_foreach(tasks, i, t)
    {
        kp_rest_str(t, "id", tid, sizeof tid);
        kp_rest_str(t, "name", tname, sizeof tname);
        json_array_foreach(json_object_get(t, "subtasks"), k, s)
        {
            json_t *m = json_object_get(s, "metrics"); /* null before the first report */
            printf("%-5s  %-32s  %7s  %-24s  %-21s  %-10s  %12s  %12s\n", tid, tname,
                   kp_rest_str(s, "subtask", sub, sizeof sub),
                   kp_rest_str(s, "taskmanager", tm, sizeof tm),
                   kp_rest_str(s, "data_address", addr, sizeof addr),
                   kp_rest_str(s, "state", state, sizeof state),
                   kp_rest_str(m, "records_in", in, sizeof in),
                   kp_rest_str(m, "records_out", out, sizeof out));
        }
    }
}

static void print_exceptions(json_t *job, FILE *out)
{
    json_t *ex = json_object_get(job, "exceptions"), *e;
    size_t i;
    char t[32], from[32], to[32], msg[1024];
    json_array_foreach(ex, i, e)
    {
        kp_rest_time(e, "time", t, sizeof t);
        fprintf(out, "  %s  %s -> %s: %s\n", t, kp_rest_str(e, "from", from, sizeof from),
                kp_rest_str(e, "to", to, sizeof to), kp_rest_str(e, "message", msg, sizeof msg));
    }
}

static void print_job(json_t *job)
{
    char buf[1024];
    kp_cli_job_header();
    kp_cli_job_row(job);
    printf("plugin sha256 %s\n", kp_rest_str(job, "plugin_sha256", buf, sizeof buf));
    printf("graph hash    %s\n", kp_rest_str(job, "graph_hash", buf, sizeof buf));
    if (json_is_string(json_object_get(job, "waiting_reason")))
        printf("waiting: %s\n", kp_rest_str(job, "waiting_reason", buf, sizeof buf));
    print_placement(job);
    kp_cli_print_bluegreen(job);
    if (json_array_size(json_object_get(job, "exceptions")) > 0) {
        printf("exceptions:\n");
        print_exceptions(job, stdout);
    }
}

/* GET /jobs/:id into *job. */
static int get_job(kp_rest *r, const char *id, json_t **job)
{
    char esc[1024], path[1100];
    long status;
    kp_rest_escape(id, esc, sizeof esc);
    snprintf(path, sizeof path, "/jobs/%s", esc);
    int rc = kp_rest_call(r, "GET", path, NULL, &status, job);
    if (rc == KP_EXIT_OK && !json_is_object(*job)) {
        fprintf(stderr, "%s: the jobmanager's answer to GET %s is not a JSON object\n", r->verb,
                path);
        rc = KP_EXIT_FAILED;
    }
    return rc;
}

int kp_cli_status(int argc, char **argv)
{
    kp_rest r = {.verb = "kappa status"};
    int rc = kp_rest_simple_args(&r, argc, argv, 1,
                                 "kappa status NAME|ID [options]  (one job: state, placement, "
                                 "exceptions)");
    if (rc >= 0)
        return rc;
    json_t *job = NULL;
    rc = get_job(&r, argv[optind], &job);
    if (rc == KP_EXIT_OK) {
        if (r.json) {
            json_dumpf(job, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
            putchar('\n');
        } else {
            print_job(job);
        }
    }
    json_decref(job);
    return rc;
}

/* The exit code of a final state, or -1 while the job is not finished. */
static int final_state(const char *state)
{
    if (!state)
        return -1;
    if (!strcmp(state, "FINISHED"))
        return KP_EXIT_OK;
    if (!strcmp(state, "FAILED"))
        return KP_EXIT_FAILED;
    if (!strcmp(state, "CANCELED"))
        return KP_EXIT_CANCELED;
    return -1;
}

int kp_cli_wait(kp_rest *r, const char *jobid)
{
    const struct timespec pause = {0, WAIT_POLL_MS * 1000000L};
    char last[32] = "";
    for (;;) {
        json_t *job = NULL;
        int rc = get_job(r, jobid, &job);
        if (rc != KP_EXIT_OK) {
            json_decref(job);
            return rc;
        }
        const char *state = json_string_value(json_object_get(job, "state"));
        if (state && strcmp(state, last) != 0 && !r->json) {
            fprintf(stderr, "%s: job %s is %s\n", r->verb, jobid, state);
            snprintf(last, sizeof last, "%s", state);
        }
        int code = final_state(state);
        if (code >= 0) {
            if (r->json) {
                json_dumpf(job, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
                putchar('\n');
            } else if (code != KP_EXIT_OK) {
                print_exceptions(job, stderr);
            }
            json_decref(job);
            return code;
        }
        json_decref(job);
        nanosleep(&pause, NULL);
    }
}

/* True while the jobmanager still works on placing the job (not yet deployed, not waiting for
 * slots that are missing). */
static int being_deployed(json_t *job, const char *state)
{
    const char *why = json_string_value(json_object_get(job, "waiting_reason"));
    return !strcmp(state, "CREATED") && (!why || !strncmp(why, "waiting for the scheduler", 25));
}

int kp_cli_wait_deployed(kp_rest *r, const char *jobid, int timeout_ms)
{
    const struct timespec pause = {0, 100 * 1000000L};
    for (int waited = 0;; waited += 100) {
        json_t *job = NULL;
        if (get_job(r, jobid, &job) != KP_EXIT_OK) {
            json_decref(job);
            fprintf(stderr, "%s: job %s was accepted, but its state could not be read\n", r->verb,
                    jobid);
            return KP_EXIT_OK;
        }
        const char *state = json_string_value(json_object_get(job, "state"));
        const char *why = json_string_value(json_object_get(job, "waiting_reason"));
        int code = final_state(state);
        if (state && (!being_deployed(job, state) || waited >= timeout_ms)) {
            if (!r->json)
                fprintf(stderr, "%s: job %s is %s%s%s\n", r->verb, jobid, state,
                        why && *why ? ": " : "", why && *why ? why : "");
            if (code == KP_EXIT_FAILED)
                print_exceptions(job, stderr);
            json_decref(job);
            return code == KP_EXIT_FAILED ? code : KP_EXIT_OK;
        }
        json_decref(job);
        nanosleep(&pause, NULL);
    }
}
