/* REST: savepoints in Flink's shapes (savepoints.h does the work):
 *   POST /jobs/:id/savepoints {"target-directory":DIR,"cancel-job":bool}  → 202
 *        {"request-id":RID}; DIR absolute, missing or empty (omitted: under the job's
 *        checkpoint directory, savepoints/<name>-<rid>); cancel-job: stop the job once the
 *        savepoint is on disk (`kappa stop --savepoint`); with "drain" (and cancel-job) the
 *        sources end first, the final watermark fires every window, the savepoint is taken
 *        after that and the job ends FINISHED (`kappa stop --drain`).
 *   GET  /jobs/:id/savepoints/:rid  → {"status":{"id":"IN_PROGRESS"|"COMPLETED"},
 *        "operation":{"location":DIR} | {"failure-cause":{...}} | null, "checkpoint", ...}
 * rest.c routes the POST here before its own body handling: the body (JSON, at most 64 KiB)
 * is collected into the request's buffer and answered on the last call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rest_int.h"
#include "savepoints.h"

#define BODY_MAX 65536

/* "/jobs/<seg>/savepoints": the job segment into id; false for any other path. */
static bool post_path(const char *url, char *id, size_t idlen)
{
    if (strncmp(url, "/jobs/", 6))
        return false;
    const char *seg = url + 6, *slash = strchr(seg, '/');
    if (!slash || slash == seg || strcmp(slash, "/savepoints") || (size_t)(slash - seg) >= idlen)
        return false;
    memcpy(id, seg, (size_t)(slash - seg));
    id[slash - seg] = '\0';
    return true;
}

bool kp_rest_savepoints_url(const char *url)
{
    char id[KP_JM_NAME_MAX];
    return post_path(url, id, sizeof id);
}

/* The parsed body's fields; -1 after answering 400. */
static int read_body(const char *body, size_t len, const char **dir, bool *cancel, bool *drain,
                     json_t **root, char *err, size_t errlen)
{
    json_error_t jerr;
    *root = len ? json_loadb(body, len, 0, &jerr) : json_object();
    json_t *d = json_object_get(*root, "target-directory"),
           *c = json_object_get(*root, "cancel-job"), *dr = json_object_get(*root, "drain");
    if (!json_is_object(*root))
        snprintf(err, errlen, "the body must be a JSON object: %s", len ? jerr.text : "");
    else if (d && !json_is_null(d) && !json_is_string(d))
        snprintf(err, errlen, "target-directory must be a string (an absolute path)");
    else if ((c && !json_is_boolean(c)) || (dr && !json_is_boolean(dr)))
        snprintf(err, errlen, "cancel-job and drain must be true or false");
    else if (json_is_true(dr) && !json_is_true(c))
        snprintf(err, errlen,
                 "drain goes with cancel-job (kappa stop --drain): a drained job "
                 "cannot go on");
    else {
        *dir = json_is_string(d) ? json_string_value(d) : "";
        *cancel = json_is_true(c);
        *drain = json_is_true(dr);
        return 0;
    }
    return -1;
}

enum MHD_Result kp_rest_savepoint_post(kp_jm_t *jm, struct MHD_Connection *conn, const char *url,
                                       const char *data, size_t *size, char **buf, size_t *len)
{
    if (*size) { /* a piece of the body */
        if (*len + *size > BODY_MAX)
            return MHD_NO;
        char *b = realloc(*buf, *len + *size + 1);
        if (!b)
            return MHD_NO;
        memcpy(b + *len, data, *size);
        *len += *size;
        b[*len] = '\0';
        *buf = b;
        *size = 0;
        return MHD_YES;
    }
    char id[KP_JM_NAME_MAX], err[600], rid[KP_JM_ID_LEN];
    if (!post_path(url, id, sizeof id) || !kp_manifest_name_ok(id))
        return kp_rest_send_error(conn, 400,
                                  "a job id or name is 1-127 characters of A-Z a-z 0-9 . _ -");
    const char *dir = "";
    bool cancel = false, drain = false;
    json_t *root = NULL;
    if (read_body(*buf, *len, &dir, &cancel, &drain, &root, err, sizeof err) != 0) {
        json_decref(root);
        return kp_rest_send_error(conn, 400, "%s", err);
    }
    unsigned http = 404;
    pthread_mutex_lock(&jm->lock);
    kp_jm_job_t *job = kp_registry_find(jm, id);
    int rc =
        job ? (drain ? kp_jm_savepoint_drain(jm, job, dir, rid, &http, err, sizeof err)
                     : kp_jm_savepoint_request(jm, job, dir, cancel, rid, &http, err, sizeof err))
            : -1;
    pthread_mutex_unlock(&jm->lock);
    json_decref(root);
    if (!job)
        return kp_rest_send_error(conn, 404, "no job with the id or name '%s'", id);
    if (rc != 0)
        return kp_rest_send_error(conn, http, "%s", err);
    return kp_rest_send_json(conn, 202, json_pack("{s:s}", "request-id", rid));
}

enum MHD_Result kp_rest_savepoint_get(kp_jm_t *jm, struct MHD_Connection *conn,
                                      const kp_rest_args_t *args)
{
    char id[KP_JM_NAME_MAX], rid[KP_JM_ID_LEN];
    if (!kp_rest_seg(args->v[0], id, sizeof id) || !kp_manifest_name_ok(id))
        return kp_rest_send_error(conn, 400,
                                  "a job id or name is 1-127 characters of A-Z a-z 0-9 . _ -");
    if (!kp_rest_seg(args->v[1], rid, sizeof rid) || strlen(rid) != 32 || !kp_jm_is_hex(rid, 32))
        return kp_rest_send_error(conn, 400, "a savepoint request id is 32 hex digits");
    pthread_mutex_lock(&jm->lock);
    kp_jm_job_t *job = kp_registry_find(jm, id);
    json_t *st = job ? kp_jm_savepoint_status(jm, job, rid) : NULL;
    pthread_mutex_unlock(&jm->lock);
    if (!job)
        return kp_rest_send_error(conn, 404, "no job with the id or name '%s'", id);
    if (!st)
        return kp_rest_send_error(conn, 404, "job '%s' has no savepoint request %s", id, rid);
    return kp_rest_send_json(conn, 200, st);
}
