/* The REST API (Flink's paths where they fit; the contract is docs/cluster.md, every route in
 * docs/rest.md):
 *   POST /jobs                  multipart: manifest (JSON) + plugin (.so bytes) → 202
 *   GET  /jobs, /jobs/:id       id or unique name
 *   PATCH /jobs/:id?mode=cancel → 202
 *   GET  /taskmanagers, /overview, and the read-only routes of the route table below
 *   GET  /, /web/...            the dashboard (rest_static.c)
 * served by libmicrohttpd in its own polling thread. Errors are {"errors":["message"]} with a
 * 4xx/5xx. With a token, every mutating request needs "Authorization: Bearer <token>" — checked
 * before any byte of the body is looked at. Uploads are streamed to uploads.c and refused
 * with 413 as soon as they pass --max-upload-mb. Paths are decoded once by our own unescaper
 * (a %00 stays "%00"), and any decoded path holding "..", "%", "\\", "//" or a control
 * character is refused with 400 before routing. */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <arpa/inet.h>

#include "bluegreen.h"
#include "jm.h"
#include "rest_int.h"

#define MANIFEST_MAX (1u << 20)

struct kp_rest_t {
    struct MHD_Daemon *d;
    kp_jm_t *jm;
};

typedef struct req_t {
    int status; /* != 0: an error was decided; the message is in error */
    char error[512];
    struct MHD_PostProcessor *pp;
    char *manifest;
    size_t manifest_len;
    int manifest_parts, plugin_parts;
    kp_upload_t *upload;
    uint64_t body_bytes;
} req_t;

/* What the multipart parser calls back with, and what MHD keeps per request. */
typedef struct post_ctx_t {
    kp_jm_t *jm;
    req_t *req;
} post_ctx_t;

typedef struct req_box_t {
    req_t req;
    post_ctx_t ctx;
} req_box_t;

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    return send_json(conn, status, json_pack("{s:[s]}", "errors", msg));
}

enum MHD_Result kp_rest_send_json(struct MHD_Connection *conn, unsigned status, json_t *body)
{
    return send_json(conn, status, body);
}

enum MHD_Result kp_rest_send_error(struct MHD_Connection *conn, unsigned status, const char *fmt,
                                   ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_error(conn, status, msg);
}

enum MHD_Result kp_rest_send_text(struct MHD_Connection *conn, unsigned status, const char *ctype,
                                  char *text, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

long kp_rest_arg_long(struct MHD_Connection *conn, const char *key, long dflt, long min, long max)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
    char *end;
    long n = v ? strtol(v, &end, 10) : dflt;
    if (!v || end == v || *end)
        return dflt;
    return n < min ? min : n > max ? max : n;
}

/* Records the first error of a request; MHD_NO, which stops the multipart parser. */
static enum MHD_Result req_fail(req_t *req, int status, const char *msg)
{
    if (!req->status) {
        req->status = status;
        snprintf(req->error, sizeof req->error, "%s", msg);
    }
    return MHD_NO;
}

/* Constant-time comparison of the presented bearer token with ours. */
static bool authorized(const kp_jm_t *jm, struct MHD_Connection *conn)
{
    if (!jm->cfg.token[0])
        return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7))
        return false;
    h += 7;
    size_t n = strlen(jm->cfg.token), m = strlen(h);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(jm->cfg.token[i] ^ (i < m ? h[i] : 0));
    return diff == 0;
}

/* --- POST /jobs --- */

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    post_ctx_t *ctx = cls;
    req_t *req = ctx->req;
    char err[256];
    if (!strcmp(key, "manifest")) {
        if (off == 0 && ++req->manifest_parts > 1)
            return req_fail(req, 400, "two manifest parts");
        if (req->manifest_len + size > MANIFEST_MAX)
            return req_fail(req, 413, "the manifest is larger than 1 MiB");
        char *m = realloc(req->manifest, req->manifest_len + size + 1);
        if (!m)
            return req_fail(req, 500, "out of memory");
        memcpy(m + req->manifest_len, data, size);
        req->manifest = m;
        req->manifest_len += size;
        m[req->manifest_len] = '\0';
        return MHD_YES;
    }
    if (!strcmp(key, "plugin")) {
        if (off == 0 && ++req->plugin_parts > 1)
            return req_fail(req, 400, "two plugin parts");
        if (!req->upload &&
            !(req->upload = kp_upload_begin(ctx->jm->cfg.state_dir, err, sizeof err)))
            return req_fail(req, 500, err);
        if (kp_upload_size(req->upload) + size > ctx->jm->cfg.max_upload_bytes)
            return req_fail(req, 413, "the plugin is larger than --max-upload-mb");
        if (size && kp_upload_write(req->upload, data, size))
            return req_fail(req, 500, "cannot write the upload");
        return MHD_YES;
    }
    snprintf(err, sizeof err, "unknown form part '%.64s' (expected manifest and plugin)", key);
    return req_fail(req, 400, err);
}

/* The whole body is in: check it and record the job. */
static enum MHD_Result submit_finish(kp_jm_t *jm, struct MHD_Connection *conn, req_t *req)
{
    char err[512];
    if (!req->manifest || !req->upload)
        return send_error(conn, 400,
                          "POST /jobs needs a multipart/form-data body with a 'manifest' and a "
                          "'plugin' part");
    kp_jm_job_t *job =
        kp_manifest_parse(&jm->cfg, req->manifest, req->manifest_len, err, sizeof err);
    if (!job)
        return send_error(conn, 400, err);
    const char *replace = json_string_value(json_object_get(job->manifest, "replace"));
    if (replace) { /* checked before the upload is kept: a refusal stores nothing */
        pthread_mutex_lock(&jm->lock);
        kp_jm_job_t *old = kp_registry_find(jm, replace);
        if (old && !kp_job_state_terminal(old->state))
            memcpy(job->replaces, old->id, sizeof job->replaces);
        pthread_mutex_unlock(&jm->lock);
        if (!job->replaces[0]) {
            snprintf(err, sizeof err, "--replace %s: no active job with that name or id", replace);
            kp_job_free(job);
            return send_error(conn, 404, err);
        }
    }
    job->plugin_size = kp_upload_size(req->upload);
    int rc = kp_upload_commit(req->upload, job->plugin_sha256, err, sizeof err);
    req->upload = NULL;
    if (rc) {
        kp_job_free(job);
        return send_error(conn, 400, err);
    }
    pthread_mutex_lock(&jm->lock);
    if (kp_registry_add(jm, job)) {
        pthread_mutex_unlock(&jm->lock);
        kp_job_free(job);
        return send_error(conn, 500, "out of memory");
    }
    kp_jm_log("job %s (%s) submitted: %u slots, plugin %.12s (%llu bytes)", job->id, job->name,
              job->slots, job->plugin_sha256, (unsigned long long)job->plugin_size);
    kp_registry_save(jm);
    json_t *body = json_pack("{s:s,s:s,s:s}", "jobid", job->id, "name", job->name, "state",
                             kp_job_state_name(job->state));
    pthread_mutex_unlock(&jm->lock);
    kp_jm_wake(jm);
    return send_json(conn, 202, body);
}

/* libmicrohttpd takes a response only before or after the body: after an error the rest of
 * the body is read and dropped, which the Content-Length check in submit_begin bounds; a
 * body without a length that runs past the bound gets its connection closed instead. */
static enum MHD_Result submit(kp_jm_t *jm, struct MHD_Connection *conn, req_t *req,
                              const char *data, size_t *size)
{
    uint64_t bound = jm->cfg.max_upload_bytes + MANIFEST_MAX + 65536;
    if (*size == 0)
        return req->status ? send_error(conn, (unsigned)req->status, req->error)
                           : submit_finish(jm, conn, req);
    req->body_bytes += *size;
    if (req->body_bytes > bound) {
        kp_jm_log("rest: POST /jobs body past %llu bytes: connection closed",
                  (unsigned long long)bound);
        return MHD_NO;
    }
    if (!req->status && MHD_post_process(req->pp, data, *size) != MHD_YES)
        req_fail(req, 400, "the body is not valid multipart/form-data");
    if (req->status && req->upload) { /* keep nothing of a refused upload */
        kp_upload_abort(req->upload);
        req->upload = NULL;
    }
    *size = 0;
    return MHD_YES;
}

/* First call of a POST /jobs: everything that can be refused before the body. */
static enum MHD_Result submit_begin(kp_jm_t *jm, struct MHD_Connection *conn)
{
    const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (len && strtoull(len, NULL, 10) > jm->cfg.max_upload_bytes + MANIFEST_MAX + 65536)
        return send_error(conn, 413, "the request body is larger than --max-upload-mb allows");
    return MHD_YES;
}

/* --- GET and PATCH --- */

static enum MHD_Result list_jobs(kp_jm_t *jm, struct MHD_Connection *conn)
{
    json_t *jobs = json_array();
    pthread_mutex_lock(&jm->lock);
    for (size_t i = 0; i < jm->njobs; i++)
        json_array_append_new(jobs, kp_job_json(jm, jm->jobs[i], false));
    pthread_mutex_unlock(&jm->lock);
    return send_json(conn, 200, json_pack("{s:o}", "jobs", jobs));
}

static enum MHD_Result job_get_or_cancel(kp_jm_t *jm, struct MHD_Connection *conn, const char *id,
                                         bool cancel)
{
    char err[256];
    if (!kp_manifest_name_ok(id))
        return send_error(conn, 400, "a job id or name is 1-127 characters of A-Z a-z 0-9 . _ -");
    pthread_mutex_lock(&jm->lock);
    kp_jm_job_t *job = kp_registry_find(jm, id);
    json_t *body = NULL;
    int status = 200;
    if (!job) {
        snprintf(err, sizeof err, "no job with the id or name '%s'", id);
        status = 404;
    } else if (!cancel) {
        body = kp_job_json(jm, job, true);
        json_t *bg = kp_bg_job_json(jm, job); /* the blue/green it takes part in */
        json_object_set_new(body, "bluegreen", bg ? bg : json_null());
    } else if (kp_life_cancel(jm, job, "cancelled through the REST API")) {
        snprintf(err, sizeof err, "job %s is already %s", job->id, kp_job_state_name(job->state));
        status = 409;
    } else {
        body = json_object();
        status = 202;
    }
    pthread_mutex_unlock(&jm->lock);
    return body ? send_json(conn, (unsigned)status, body) : send_error(conn, (unsigned)status, err);
}

/* PATCH /jobs/:id?mode=rollback: the blue/green the job took part in goes back to v1. */
static enum MHD_Result job_rollback(kp_jm_t *jm, struct MHD_Connection *conn, const char *id)
{
    char err[512];
    if (!kp_manifest_name_ok(id))
        return send_error(conn, 400, "a job id or name is 1-127 characters of A-Z a-z 0-9 . _ -");
    pthread_mutex_lock(&jm->lock);
    kp_jm_job_t *job = kp_registry_find(jm, id);
    int status = 202;
    if (!job) {
        snprintf(err, sizeof err, "no job with the id or name '%s'", id);
        status = 404;
    } else if (kp_bg_rollback(jm, job, err, sizeof err)) {
        status = 409;
    }
    pthread_mutex_unlock(&jm->lock);
    return status == 202 ? send_json(conn, 202, json_object()) : send_error(conn, status, err);
}

static enum MHD_Result taskmanagers(kp_jm_t *jm, struct MHD_Connection *conn)
{
    json_t *tms = json_array();
    pthread_mutex_lock(&jm->lock);
    for (size_t t = 0; t < jm->ntms; t++) {
        const kp_jm_tm_t *tm = &jm->tms[t];
        if (tm->alive) /* RSS and CPU from its heartbeats: null when it does not send them */
            json_array_append_new(
                tms,
                json_pack("{s:s,s:s,s:i,s:i,s:I,s:s,s:o,s:o}", "id", tm->id, "data_address",
                          tm->data_address, "slots_total", (int)tm->slots, "slots_free",
                          (int)kp_sched_free_slots(jm, (int)t), "last_heartbeat_ms",
                          (json_int_t)tm->last_heartbeat_ms, "build", tm->build, "rss_bytes",
                          tm->rss_bytes ? json_integer((json_int_t)tm->rss_bytes) : json_null(),
                          "cpu_seconds", tm->rss_bytes ? json_real(tm->cpu_seconds) : json_null()));
    }
    pthread_mutex_unlock(&jm->lock);
    return send_json(conn, 200, json_pack("{s:o}", "taskmanagers", tms));
}

static enum MHD_Result overview(kp_jm_t *jm, struct MHD_Connection *conn)
{
    int live = 0, total = 0, free_slots = 0, by_state[KP_JOB_STATE_N_] = {0};
    pthread_mutex_lock(&jm->lock);
    for (size_t t = 0; t < jm->ntms; t++)
        if (jm->tms[t].alive) {
            live++;
            total += (int)jm->tms[t].slots;
            free_slots += (int)kp_sched_free_slots(jm, (int)t);
        }
    for (size_t j = 0; j < jm->njobs; j++)
        by_state[jm->jobs[j]->state]++;
    pthread_mutex_unlock(&jm->lock);
    return send_json(conn, 200,
                     json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s}", "taskmanagers", live,
                               "slots-total", total, "slots-available", free_slots, "jobs-running",
                               by_state[KP_JOB_RUNNING], "jobs-finished", by_state[KP_JOB_FINISHED],
                               "jobs-cancelled", by_state[KP_JOB_CANCELED], "jobs-failed",
                               by_state[KP_JOB_FAILED], "kappa-version", KP_JM_VERSION));
}

bool kp_rest_seg(const char *arg, char *out, size_t outlen)
{
    size_t n = strcspn(arg, "/");
    if (n >= outlen)
        return false;
    memcpy(out, arg, n);
    out[n] = '\0';
    return true;
}

/* The request's *con_cls when its path was cut short by a NUL byte: answered 400. */
static char nul_cut;

/* MHD_OPTION_URI_LOG_CALLBACK: sees the raw path before it is split and unescaped. MHD ended it
 * with a NUL where the space before "HTTP/" was; if the string ends earlier, the client sent a
 * NUL byte in the path, which every later step would silently cut at. Its return value is the
 * request's first *con_cls. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls, (void)conn;
    return strncmp(uri + strlen(uri) + 1, "HTTP/", 5) ? &nul_cut : NULL;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* --- dispatch --- */

/* The read-only routes (GET/HEAD). A pattern's ':' segment captures one path segment, which
 * is_segment_ok has already checked. */
static const struct route_t {
    const char *pattern;
    kp_rest_fn fn;
} routes[] = {
    {"/config", kp_rest_config},
    {"/metrics", kp_rest_prometheus},
    {"/jobmanager/config", kp_rest_jm_config},
    {"/jobmanager/logs", kp_rest_jm_logs},
    {"/jobs/overview", kp_rest_jobs_overview},
    {"/jobs/:/plan", kp_rest_job_plan},
    {"/jobs/:/exceptions", kp_rest_job_exceptions},
    {"/jobs/:/vertices/:", kp_rest_vertex},
    {"/jobs/:/vertices/:/subtasks/metrics", kp_rest_vertex_metrics},
    {"/jobs/:/vertices/:/backpressure", kp_rest_vertex_backpressure},
    {"/jobs/:/vertices/:/watermarks", kp_rest_vertex_watermarks},
    {"/jobs/:/results", kp_rest_job_results},
    {"/jobs/:/checkpoints", kp_rest_checkpoints},
    {"/jobs/:/checkpoints/config", kp_rest_checkpoints_config},
    {"/jobs/:/checkpoints/details/:", kp_rest_checkpoint_details},
    {"/jobs/:/savepoints/:", kp_rest_savepoint_get},
    {"/taskmanagers/:", kp_rest_tm},
    {"/taskmanagers/:/metrics", kp_rest_tm_metrics},
    {"/taskmanagers/:/logs", kp_rest_tm_logs},
};

/* Matches url against pattern segment by segment; the ':' captures into args. */
static bool route_match(const char *pattern, const char *url, kp_rest_args_t *args)
{
    args->n = 0;
    while (*pattern && *url) {
        if (*pattern != '/' || *url != '/')
            return false;
        pattern++, url++;
        size_t pl = strcspn(pattern, "/"), ul = strcspn(url, "/");
        if (ul == 0)
            return false;
        if (pl == 1 && *pattern == ':') {
            if (args->n == KP_REST_ARGS_MAX)
                return false;
            args->v[args->n++] = url; /* ends at the next '/': handlers copy it, see seg_copy */
        } else if (pl != ul || memcmp(pattern, url, pl)) {
            return false;
        }
        pattern += pl, url += ul;
    }
    return !*pattern && !*url;
}

/* A decoded path the router accepts: no "..", no '%' (what is left of a double encoding or
 * of a %00), no backslash, no empty segment, printable ASCII only. */
static bool path_ok(const char *url)
{
    if (url[0] != '/' || strstr(url, "..") || strstr(url, "//"))
        return false;
    for (const char *p = url; *p; p++)
        if (*p == '%' || *p == '\\' || (unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return false;
    return true;
}

/* Our unescaper (MHD_OPTION_UNESCAPE_CALLBACK) for paths and query values: %XX is decoded
 * except %00, which stays as the three characters "%00" so that no NUL can cut a string
 * short (the path check then refuses it). Returns the new length. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls, (void)conn;
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi, lo;
        if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 && (hi | lo)) {
            *w++ = (char)(hi << 4 | lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *size, void **con_cls)
{
    kp_jm_t *jm = ((kp_rest_t *)cls)->jm;
    bool post = !strcmp(method, "POST"), patch = !strcmp(method, "PATCH");
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool jobs_root = !strcmp(url, "/jobs") || !strcmp(url, "/jobs/");
    const char *job_id =
        !strncmp(url, "/jobs/", 6) && url[6] && !strchr(url + 6, '/') ? url + 6 : NULL;

    if (*con_cls == &nul_cut)
        return send_error(conn, 400, "a NUL byte in the path");
    if (!*con_cls) { /* first call: headers only */
        req_box_t *box = calloc(1, sizeof *box);
        if (!box)
            return MHD_NO;
        box->ctx = (post_ctx_t){jm, &box->req};
        *con_cls = box;
        if ((post || patch || !strcmp(method, "DELETE") || !strcmp(method, "PUT")) &&
            !authorized(jm, conn))
            return send_error(conn, 401,
                              "this jobmanager needs 'Authorization: Bearer <token>' "
                              "(kappa --token-file F or $KAPPA_TOKEN)");
        if (post && jobs_root) {
            box->req.pp = MHD_create_post_processor(conn, 65536, on_part, &box->ctx);
            if (!box->req.pp)
                return send_error(conn, 400,
                                  "POST /jobs needs Content-Type: multipart/form-data with a "
                                  "'manifest' and a 'plugin' part");
            return submit_begin(jm, conn);
        }
        return MHD_YES; /* answered on the next call, once any body is consumed */
    }
    req_box_t *box = *con_cls;
    if (post && jobs_root)
        return submit(jm, conn, &box->req, data, size);
    if (post && kp_rest_savepoints_url(url)) /* rest_savepoints.c: it takes a JSON body */
        return kp_rest_savepoint_post(jm, conn, url, data, size, &box->req.manifest,
                                      &box->req.manifest_len);
    if (*size) { /* a body where none is expected: ignored, up to 64 KiB */
        box->req.body_bytes += *size;
        *size = 0;
        return box->req.body_bytes > 65536 ? MHD_NO : MHD_YES;
    }
    if (strcmp(version, MHD_HTTP_VERSION_1_1) && strcmp(version, MHD_HTTP_VERSION_1_0))
        return send_error(conn, 400, "HTTP/1.0 or HTTP/1.1 only"); /* also: a NUL cut the line */
    if (!path_ok(url))
        return send_error(conn, 400, "a path is printable ASCII without '..', '%', '\\' or '//'");
    if (!strcmp(url, "/") || !strncmp(url, "/web/", 5))
        return get ? kp_rest_static(conn, url) : send_error(conn, 405, "use GET");
    kp_rest_args_t args;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (route_match(routes[i].pattern, url, &args))
            return get ? routes[i].fn(jm, conn, &args) : send_error(conn, 405, "use GET");
    if (jobs_root)
        return get ? list_jobs(jm, conn) : send_error(conn, 405, "use GET or POST on /jobs");
    if (job_id) {
        if (get)
            return job_get_or_cancel(jm, conn, job_id, false);
        if (!patch)
            return send_error(conn, 405, "use GET or PATCH on /jobs/:id");
        const char *mode = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "mode");
        if (mode && !strcmp(mode, "rollback"))
            return job_rollback(jm, conn, job_id);
        if (!mode || strcmp(mode, "cancel"))
            return send_error(conn, 400, "PATCH /jobs/:id needs ?mode=cancel or ?mode=rollback");
        return job_get_or_cancel(jm, conn, job_id, true);
    }
    if (!strcmp(url, "/taskmanagers"))
        return get ? taskmanagers(jm, conn) : send_error(conn, 405, "use GET");
    if (!strcmp(url, "/overview"))
        return get ? overview(jm, conn) : send_error(conn, 405, "use GET");
    return send_error(conn, 404, "no such resource");
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    req_box_t *box = *con_cls;
    if (!box || *con_cls == &nul_cut)
        return;
    if (box->req.pp)
        MHD_destroy_post_processor(box->req.pp);
    kp_upload_abort(box->req.upload);
    free(box->req.manifest);
    free(box);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    kp_jm_log("rest: %s", msg);
}

kp_rest_t *kp_rest_start(kp_jm_t *jm, int *port, char *err, size_t errlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    if (inet_pton(AF_INET, jm->cfg.bind, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "--bind %s is not an IPv4 address", jm->cfg.bind);
        return NULL;
    }
    kp_rest_t *rest = calloc(1, sizeof *rest);
    if (!rest) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rest->jm = jm;
    rest->d = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, handler, rest,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, completed, rest, MHD_OPTION_CONNECTION_LIMIT, 64u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, 32u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_STRICT_FOR_CLIENT, 1,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log, NULL, MHD_OPTION_END);
    if (!rest->d) {
        snprintf(err, errlen, "cannot serve REST on %s:%d (port in use?)", jm->cfg.bind, *port);
        free(rest);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(rest->d, MHD_DAEMON_INFO_BIND_PORT);
    if (info)
        *port = info->port;
    return rest;
}

void kp_rest_stop(kp_rest_t *rest)
{
    if (!rest)
        return;
    MHD_stop_daemon(rest->d);
    free(rest);
}
