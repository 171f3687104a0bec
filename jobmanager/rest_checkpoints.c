/* REST: a job's checkpoints in Flink's shapes, from the statistics its coordinator keeps
 * (runtime/checkpoint_stats.h):
 *   GET /jobs/:id/checkpoints               counts, summary, latest {completed, savepoint,
 *                                           failed, restored}, history (newest first)
 *   GET /jobs/:id/checkpoints/config        the job's resolved checkpoint settings
 *   GET /jobs/:id/checkpoints/details/:cid  one checkpoint, per task and subtask
 * The statistics are those of the job's current (or last) attempt: a restart starts them
 * again, with the checkpoint it restored as "latest.restored". A job without checkpoints
 * answers with zero counts and empty lists. Routed by rest.c's table; the text is built under
 * jm->lock and sent after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_stats.h"
#include "rest_int.h"

typedef enum what { WHOLE, CONFIG, DETAILS } what;

static enum MHD_Result answer(kp_jm_t *jm, struct MHD_Connection *conn, const kp_rest_args_t *args,
                              what w)
{
    static const kp_ckpt_history empty; /* a job that never had a coordinator */
    char id[KP_JM_NAME_MAX], cid_text[32] = "";
    int64_t cid = 0;
    if (!kp_rest_seg(args->v[0], id, sizeof id) || !kp_manifest_name_ok(id))
        return kp_rest_send_error(conn, 400,
                                  "a job id or name is 1-127 characters of A-Z a-z 0-9 . _ -");
    if (w == DETAILS) {
        char *end;
        long long v =
            kp_rest_seg(args->v[1], cid_text, sizeof cid_text) ? strtoll(cid_text, &end, 10) : 0;
        if (v <= 0 || *end)
            return kp_rest_send_error(conn, 400, "a checkpoint id is a positive integer");
        cid = (int64_t)v;
    }
    char *text = NULL;
    unsigned status = 200;
    pthread_mutex_lock(&jm->lock);
    kp_jm_job_t *job = kp_registry_find(jm, id);
    const kp_ckpt_history *h = job ? kp_jm_ckpt_history(job) : NULL;
    if (!job)
        status = 404;
    else if (w == CONFIG)
        text = kp_ckpt_config_json(&job->ckpt);
    else if (w == WHOLE)
        text = kp_ckpt_history_json(h ? h : &empty);
    else if (!(text = kp_ckpt_details_json(h ? h : &empty, cid)))
        status = 404;
    pthread_mutex_unlock(&jm->lock);
    if (status == 404 && !job)
        return kp_rest_send_error(conn, 404, "no job with the id or name '%s'", id);
    if (status == 404)
        return kp_rest_send_error(conn, 404,
                                  "checkpoint %s is not in the job's checkpoint history "
                                  "(its last 100 checkpoints)",
                                  cid_text);
    if (!text)
        return kp_rest_send_error(conn, 500, "out of memory");
    return kp_rest_send_text(conn, 200, "application/json", text, strlen(text));
}

enum MHD_Result kp_rest_checkpoints(kp_jm_t *jm, struct MHD_Connection *conn,
                                    const kp_rest_args_t *args)
{
    return answer(jm, conn, args, WHOLE);
}

enum MHD_Result kp_rest_checkpoints_config(kp_jm_t *jm, struct MHD_Connection *conn,
                                           const kp_rest_args_t *args)
{
    return answer(jm, conn, args, CONFIG);
}

enum MHD_Result kp_rest_checkpoint_details(kp_jm_t *jm, struct MHD_Connection *conn,
                                           const kp_rest_args_t *args)
{
    return answer(jm, conn, args, DETAILS);
}
