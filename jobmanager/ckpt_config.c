/* A job's checkpoint settings, resolved once at submission (and again when a restarted
 * jobmanager reads its job list): each setting comes from the manifest's "checkpoint" object
 * (kappa submit --checkpoint-interval ...) if it names it, else — the interval only — from the
 * job's own graph (checkpoint_interval_ms, set by the job's code), else from the jobmanager's
 * flags (the cluster defaults). Every value is checked here so that what reaches the
 * coordinator and the taskmanagers is in range. See docs/cluster.md, "Checkpoints". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jm.h"

#define DURATION_MAX ((kp_time)7 * 24 * 3600 * 1000) /* a week: anything longer is a typo */

int kp_jm_parse_duration(const char *s, kp_time *out)
{
    char *end;
    errno = 0;
    long long n = s ? strtoll(s, &end, 10) : -1;
    if (!s || errno || end == s || n < 0)
        return -1;
    long long unit = !*end || !strcmp(end, "ms") ? 1
                     : !strcmp(end, "s")         ? 1000
                     : !strcmp(end, "m")         ? 60000
                     : !strcmp(end, "h")         ? 3600000
                                                 : -1;
    if (unit < 0 || n > DURATION_MAX / unit)
        return -1;
    *out = (kp_time)(n * unit);
    return 0;
}

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* An optional integer member in [lo, hi]: left as it is when absent. */
static int int_field(json_t *o, const char *name, long long lo, long long hi, long long *v,
                     char *err, size_t errlen)
{
    json_t *f = json_object_get(o, name);
    if (!f || json_is_null(f))
        return 0;
    if (!json_is_integer(f) || json_integer_value(f) < lo || json_integer_value(f) > hi) {
        snprintf(err, errlen, "manifest: checkpoint.%s must be an integer in %lld..%lld", name, lo,
                 hi);
        return -1;
    }
    *v = json_integer_value(f);
    return 0;
}

/* The manifest's "checkpoint" object over the defaults in *c. */
static int from_manifest(json_t *o, kp_ckpt_config *c, char *err, size_t errlen)
{
    if (!o || json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return fail(err, errlen, "manifest: checkpoint must be an object");
    long long interval = c->interval_ms, timeout = c->timeout_ms, pause = c->min_pause_ms;
    long long conc = c->max_concurrent, tol = c->tolerable_failures, retain = c->retain;
    if (int_field(o, "interval_ms", 0, DURATION_MAX, &interval, err, errlen) ||
        int_field(o, "timeout_ms", 0, DURATION_MAX, &timeout, err, errlen) ||
        int_field(o, "min_pause_ms", 0, DURATION_MAX, &pause, err, errlen) ||
        int_field(o, "max_concurrent", 0, 64, &conc, err, errlen) ||
        int_field(o, "tolerable_failures", 0, 1000000, &tol, err, errlen) ||
        int_field(o, "retain", 0, 1000, &retain, err, errlen))
        return -1;
    json_t *mode = json_object_get(o, "mode"), *dir = json_object_get(o, "dir");
    if (mode && !json_is_null(mode)) {
        const char *m = json_string_value(mode);
        if (m && !strcmp(m, "exactly_once"))
            c->mode = KP_CKPT_EXACTLY_ONCE;
        else if (m && !strcmp(m, "at_least_once"))
            c->mode = KP_CKPT_AT_LEAST_ONCE;
        else
            return fail(err, errlen,
                        "manifest: checkpoint.mode must be exactly_once or at_least_once");
    }
    if (dir && !json_is_null(dir)) {
        const char *d = json_string_value(dir);
        if (!d || d[0] != '/' || strlen(d) > 3000)
            return fail(err, errlen,
                        "manifest: checkpoint.dir must be an absolute path (a directory every "
                        "taskmanager and the jobmanager share), at most 3000 characters");
        c->dir = d;
    }
    c->interval_ms = interval;
    c->timeout_ms = timeout;
    c->min_pause_ms = pause;
    c->max_concurrent = (int)conc;
    c->tolerable_failures = (int)tol;
    c->retain = (int)retain;
    return 0;
}

/* "from_checkpoint": a checkpoint's _metadata, its chk-N (or a savepoint's) directory, or a
 * job's checkpoint directory (its latest valid checkpoint) — resolved to one _metadata file
 * at each deploy (checkpoints.c), so that every taskmanager restores the same checkpoint.
 * Whether it exists and verifies is said then: the same manifest is read again when a
 * restarted jobmanager loads its job list, when the path may long be gone and a newer
 * checkpoint of the job is used instead. */
static int restore_from(kp_jm_job_t *job, json_t *m, char *err, size_t errlen)
{
    json_t *f = json_object_get(m, "from_checkpoint");
    if (!f || json_is_null(f))
        return 0;
    const char *p = json_string_value(f);
    if (!p || p[0] != '/' || strlen(p) > 3000)
        return fail(err, errlen,
                    "manifest: from_checkpoint must be the absolute path of a checkpoint (its "
                    "_metadata file or chk-N directory), a savepoint or a job's checkpoint "
                    "directory");
    snprintf(job->restore_path, sizeof job->restore_path, "%s", p);
    return 0;
}

int kp_jm_ckpt_config(const kp_jm_config_t *cfg, kp_jm_job_t *job, json_t *m, char *err,
                      size_t errlen)
{
    job->ckpt = cfg->ckpt;
    json_t *gi = json_object_get(json_object_get(m, "graph"), "checkpoint_interval_ms");
    if (json_is_integer(gi) && json_integer_value(gi) > 0 && json_integer_value(gi) <= DURATION_MAX)
        job->ckpt.interval_ms = json_integer_value(gi);
    if (from_manifest(json_object_get(m, "checkpoint"), &job->ckpt, err, errlen))
        return -1;
    return restore_from(job, m, err, errlen);
}
