/* `kappa submit JOB.so`: the jobmanager never loads job code, so the client does — it loads
 * the plugin here, validates it (with the -p given), builds the graph and its hash
 * (graph_codec.h), hashes the plugin bytes, and POSTs both as multipart/form-data to /jobs.
 * It prints the job id once the jobmanager accepted the job and returns once the job is deployed
 * (or waits for slots, said on stderr; at most DEPLOY_WAIT_MS), as `flink run -d`; with --wait
 * it stays until the job ends and exits with its outcome (status.c). */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "manifest.h"
#include "plugin.h"
#include "rest.h"

#define MAX_PLUGIN_BYTES (1024L << 20) /* far above any upload limit; refuses a wrong path */
#define DEPLOY_WAIT_MS   60000         /* then submit returns with the state it sees */

typedef struct submit_opts {
    kp_job_opts job;
    kp_rest rest;
    const char *path, *name, *replace, *keep_old;
    int wait, dry_run, in_place, from_old;
} submit_opts;

enum {
    OPT_NAME = 3000,
    OPT_REPLACE,
    OPT_WAIT,
    OPT_DRY_RUN,
    OPT_IN_PLACE,
    OPT_KEEP_OLD,
    OPT_FROM_OLD
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kappa submit JOB.so [options]\n"
            "  --name NAME              the job's name on the cluster (default: the job's own)\n"
            "  --replace NAME|ID        replace that job (reprocessing): from reset offsets a\n"
            "                           blue/green: this job writes a new index beside the old\n"
            "                           one and the alias moves once it has caught up\n"
            "  --in-place               with --replace: no blue/green, write the alias's index\n"
            "                           and cancel the old job once this one runs\n"
            "  --from-savepoint-of-old  with --replace: stop the old job with a savepoint and\n"
            "                           start this one from it (a logic change keeping state)\n"
            "  --keep-old DURATION      blue/green: keep the old index this long after the\n"
            "                           switch, for kappa rollback (N ms, Ns, Nm, Nh, Nd; 1h)\n"
            "  --wait                   stay until the job ends; exit with its outcome\n"
            "  --dry-run                print the manifest (with the graph and both hashes) and\n"
            "                           exit without contacting the jobmanager\n");
    kp_job_opts_usage(out);
    kp_rest_usage(out);
}

/* Flags; KP_EXIT_OK to go on, else the exit code (after --help or a usage error). */
static int parse(submit_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, OPT_NAME},
        {"replace", required_argument, NULL, OPT_REPLACE},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"in-place", no_argument, NULL, OPT_IN_PLACE},
        {"keep-old", required_argument, NULL, OPT_KEEP_OLD},
        {"from-savepoint-of-old", no_argument, NULL, OPT_FROM_OLD},
        KP_JOB_LONGOPTS,
        KP_REST_LONGOPTS,
        {0},
    };
    int c, shared;
    while ((c = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        if ((shared = kp_job_opts_parse(&o->job, c, optarg)) != 0 ||
            kp_rest_opts_parse(&o->rest, c, optarg)) {
            if (shared < 0)
                return KP_EXIT_USAGE;
        } else if (c == OPT_NAME && *optarg) {
            o->name = optarg;
        } else if (c == OPT_REPLACE && *optarg) {
            o->replace = optarg;
        } else if (c == OPT_WAIT) {
            o->wait = 1;
        } else if (c == OPT_DRY_RUN) {
            o->dry_run = 1;
        } else if (c == OPT_IN_PLACE) {
            o->in_place = 1;
        } else if (c == OPT_FROM_OLD) {
            o->from_old = 1;
        } else if (c == OPT_KEEP_OLD) {
            o->keep_old = optarg;
        } else if (c == 'h') {
            o->rest.help = 1;
        } else {
            if (c == OPT_NAME || c == OPT_REPLACE)
                fprintf(stderr, "kappa submit: --%s must not be empty\n",
                        c == OPT_NAME ? "name" : "replace");
            return KP_EXIT_USAGE;
        }
    }
    if (o->rest.help) {
        usage(stdout);
        return -1;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "kappa submit: expected exactly one JOB.so\n");
        return KP_EXIT_USAGE;
    }
    o->path = argv[optind];
    if ((o->in_place || o->keep_old) && !o->replace) {
        fprintf(stderr, "kappa submit: --in-place and --keep-old go with --replace\n");
        return KP_EXIT_USAGE;
    }
    if (o->from_old && (!o->replace || o->keep_old || o->job.from_checkpoint)) {
        fprintf(stderr, "kappa submit: --from-savepoint-of-old goes with --replace, and not with "
                        "--keep-old, --from-checkpoint or --from-savepoint\n");
        return KP_EXIT_USAGE;
    }
    o->in_place |= o->from_old; /* the state goes on: no blue/green beside the old job */
    if (o->in_place && o->keep_old) {
        fprintf(stderr, "kappa submit: --keep-old is for blue/green, not --in-place\n");
        return KP_EXIT_USAGE;
    }
    json_t *bg = NULL;
    if (o->keep_old && kp_cli_bluegreen_flag(&bg, 0, o->keep_old) != 0)
        return KP_EXIT_USAGE;
    json_decref(bg);
    if (kp_job_opts_check(&o->job) != 0)
        return KP_EXIT_USAGE;
    return kp_rest_resolve(&o->rest);
}

/* The plugin file's bytes (malloc'd) — what is hashed is exactly what is uploaded. */
static char *read_plugin(const char *path, size_t *len)
{
    errno = 0;
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "kappa submit: cannot open %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > MAX_PLUGIN_BYTES) {
        fprintf(stderr, "kappa submit: %s is not a job plugin: empty, over 1 GiB or not a file\n",
                path);
        goto out;
    }
    buf = malloc((size_t)st.st_size);
    if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        fprintf(stderr, "kappa submit: cannot read %s\n", path);
        free(buf);
        buf = NULL;
        goto out;
    }
    *len = (size_t)st.st_size;
out:
    if (f)
        fclose(f);
    return buf;
}

/* Every --source/--sink/--on-error/--dead-letter names a source or sink of the job. */
static int check_bindings(const kp_job_opts *o, const kp_job *job)
{
    for (int i = 0; i < o->nb; i++) {
        int found = 0;
        for (int n = 0; n < job->nnodes && !found; n++)
            found = job->nodes[n]->endpoint[0] && !strcmp(job->nodes[n]->endpoint, o->b[i].name);
        if (!found) {
            fprintf(stderr, "kappa submit: job '%s' has no source or sink named '%s'\n", job->name,
                    o->b[i].name);
            return -1;
        }
    }
    return 0;
}

/* The manifest of the loaded job (NULL after printing why). */
static json_t *manifest_of(const submit_opts *o, const kp_job *job, const char *plugin_sha)
{
    char err[1024], hash[KP_SHA256_HEX];
    json_t *graph = kp_graph_to_json(job, err, sizeof err);
    char *text = graph ? json_dumps(graph, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    if (!text) {
        fprintf(stderr, "kappa submit: %s\n", graph ? "out of memory" : err);
        json_decref(graph);
        return NULL;
    }
    kp_sha256_hex(text, strlen(text), hash);
    free(text);
    kp_manifest_in in = {.name = o->name ? o->name : job->name,
                         .replace = o->replace,
                         .plugin_sha256 = plugin_sha,
                         .graph = graph,
                         .graph_hash = hash,
                         .opts = &o->job,
                         .from_savepoint_of_old = o->from_old};
    json_t *m = kp_manifest_build(&in), *bg = NULL;
    json_decref(graph);
    if (m && (o->in_place || o->keep_old) &&
        kp_cli_bluegreen_flag(&bg, o->in_place, o->keep_old) == 0)
        json_object_set_new(m, "bluegreen", bg); /* docs/bluegreen.md */
    if (!m)
        fprintf(stderr, "kappa submit: out of memory building the manifest\n");
    return m;
}

/* POST /jobs; prints the job id. KP_EXIT_OK with the id in jobid, else the exit code. */
static int post(submit_opts *o, json_t *manifest, const char *bytes, size_t len, char *jobid,
                size_t idlen)
{
    char *text = json_dumps(manifest, JSON_SORT_KEYS | JSON_COMPACT), base[512];
    snprintf(base, sizeof base, "%s", o->path);
    curl_mime *mime = curl_mime_init(NULL);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "manifest");
    curl_mime_type(part, "application/json");
    curl_mime_data(part, text ? text : "", CURL_ZERO_TERMINATED);
    part = curl_mime_addpart(mime);
    curl_mime_name(part, "plugin");
    curl_mime_type(part, "application/octet-stream");
    curl_mime_filename(part, basename(base));
    curl_mime_data(part, bytes, len);
    long status;
    json_t *reply = NULL;
    int rc = kp_rest_call(&o->rest, "POST", "/jobs", mime, &status, &reply);
    const char *id = json_string_value(json_object_get(reply, "jobid"));
    if (rc == KP_EXIT_OK && !id) {
        fprintf(stderr, "kappa submit: the jobmanager accepted the job but sent no job id\n");
        rc = KP_EXIT_FAILED;
    }
    if (rc == KP_EXIT_OK) {
        snprintf(jobid, idlen, "%s", id);
        if (o->rest.json && !o->wait) {
            json_dumpf(reply, stdout, JSON_SORT_KEYS);
            putchar('\n');
        } else if (!o->rest.json) {
            printf("%s\n", id);
            fflush(stdout);
        }
    }
    json_decref(reply);
    curl_mime_free(mime);
    free(text);
    return rc;
}

/* --dry-run: the manifest, as it would be sent, on stdout. */
static int print_manifest(json_t *manifest)
{
    if (json_dumpf(manifest, stdout, JSON_SORT_KEYS | JSON_COMPACT) != 0 || putchar('\n') == EOF)
        return KP_EXIT_FAILED;
    return KP_EXIT_OK;
}

int kp_cli_submit(int argc, char **argv)
{
    submit_opts o = {.job.verb = "kappa submit", .rest.verb = "kappa submit"};
    int rc = parse(&o, argc, argv);
    if (rc != KP_EXIT_OK) {
        if (rc == KP_EXIT_USAGE)
            usage(stderr);
        return rc < 0 ? KP_EXIT_OK : rc;
    }
    size_t len = 0;
    char *bytes = read_plugin(o.path, &len), err[1024], sha[KP_SHA256_HEX], jobid[128];
    if (!bytes)
        return KP_EXIT_FAILED;
    kp_sha256_hex(bytes, len, sha);
    kp_plugin_handle *h = kp_plugin_load(o.path, o.job.parallelism, err, sizeof err);
    json_t *manifest = NULL;
    rc = KP_EXIT_FAILED;
    if (!h)
        fprintf(stderr, "kappa submit: %s\n", err);
    else if (check_bindings(&o.job, kp_plugin_job(h)) != 0)
        rc = KP_EXIT_USAGE;
    else if ((manifest = manifest_of(&o, kp_plugin_job(h), sha)) && o.dry_run)
        rc = print_manifest(manifest);
    else if (manifest)
        rc = post(&o, manifest, bytes, len, jobid, sizeof jobid);
    kp_plugin_close(h);
    json_decref(manifest);
    free(bytes);
    if (rc == KP_EXIT_OK && o.wait && !o.dry_run)
        rc = kp_cli_wait(&o.rest, jobid);
    else if (rc == KP_EXIT_OK && !o.dry_run)
        rc = kp_cli_wait_deployed(&o.rest, jobid, DEPLOY_WAIT_MS);
    return rc;
}
