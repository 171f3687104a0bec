/* Checking a submitted manifest (the JSON part of POST /jobs, see docs/cluster.md) and building
 * the job it describes. The jobmanager never loads job code: everything it knows about the
 * job's shape comes from the graph JSON the CLI built, whose hash it checks here so that what
 * it schedules is exactly what the taskmanagers will verify. Every field is checked for type,
 * range and size; a name that could be a path is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "jm.h"

#define MAX_TASKS    1024
#define MAX_SUBTASKS 65536

bool kp_jm_is_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool kp_manifest_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= KP_JM_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool sha_ok(const char *s)
{
    return s && strlen(s) == 64 && kp_jm_is_hex(s, 64);
}

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* The tasks of the graph: ids unique, parallelism in range. */
static int parse_tasks(kp_jm_job_t *job, json_t *graph, char *err, size_t errlen)
{
    json_t *tasks = json_object_get(graph, "tasks");
    size_t n = json_array_size(tasks);
    if (!json_is_array(tasks) || n == 0 || n > MAX_TASKS)
        return fail(err, errlen, "manifest: graph.tasks must be a non-empty array (at most 1024)");
    job->tasks = calloc(n, sizeof *job->tasks);
    if (!job->tasks)
        return fail(err, errlen, "out of memory");
    size_t nsubs = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tasks, i);
        json_t *id = json_object_get(t, "id"), *par = json_object_get(t, "parallelism");
        const char *name = json_string_value(json_object_get(t, "name"));
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > 1000000 || !json_is_integer(par) ||
            json_integer_value(par) < 1 || json_integer_value(par) > KP_JM_PAR_MAX || !name)
            return fail(err, errlen,
                        "manifest: every graph task needs an integer id >= 0, a name and a "
                        "parallelism in 1..1024");
        kp_jm_task_t *task = &job->tasks[i];
        task->id = (int)json_integer_value(id);
        task->parallelism = (uint32_t)json_integer_value(par);
        json_t *up = json_object_get(t, "upstream"); /* absent: a task without an input */
        task->source = !json_is_integer(up) || json_integer_value(up) < 0;
        snprintf(task->name, sizeof task->name, "%s", name);
        for (size_t k = 0; k < i; k++)
            if (job->tasks[k].id == task->id)
                return fail(err, errlen, "manifest: two graph tasks with the same id");
        if (task->parallelism > job->slots)
            job->slots = task->parallelism;
        nsubs += task->parallelism;
    }
    if (nsubs > MAX_SUBTASKS)
        return fail(err, errlen, "manifest: more than 65536 subtasks");
    job->ntasks = n;
    job->subs = calloc(nsubs, sizeof *job->subs);
    if (!job->subs)
        return fail(err, errlen, "out of memory");
    job->nsubs = nsubs;
    kp_jm_sub_t *sub = job->subs;
    for (size_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < job->tasks[t].parallelism; i++, sub++)
            *sub = (kp_jm_sub_t){.task_id = job->tasks[t].id, .subtask = i, .tm = -1};
    return 0;
}

/* The graph hash must be the sha256 of the canonical graph text (docs/cluster.md). */
static int check_graph_hash(json_t *graph, const char *hash, char *err, size_t errlen)
{
    char *text = json_dumps(graph, JSON_SORT_KEYS | JSON_COMPACT);
    if (!text)
        return fail(err, errlen, "manifest: graph cannot be serialized");
    char hex[KP_JM_SHA_LEN];
    kp_jm_sha256_hex(text, strlen(text), hex);
    free(text);
    if (strcmp(hex, hash))
        return fail(err, errlen,
                    "manifest: graph_hash is not the sha256 of the canonical graph JSON");
    return 0;
}

static int parse_bindings(json_t *bindings, char *err, size_t errlen)
{
    static const char *const on_error[] = {"fail", "skip", "dead-letter", "default"};
    size_t i;
    json_t *b;
    if (!bindings || json_is_null(bindings))
        return 0;
    if (!json_is_array(bindings) || json_array_size(bindings) > 256)
        return fail(err, errlen, "manifest: bindings must be an array (at most 256)");
    json_array_foreach(bindings, i, b)
    {
        json_t *oe = json_object_get(b, "on_error"), *dl = json_object_get(b, "dead_letter");
        if (!json_is_string(json_object_get(b, "name")) ||
            !json_is_string(json_object_get(b, "uri")) || (oe && !json_is_string(oe)) ||
            (dl && !json_is_string(dl) && !json_is_null(dl)))
            return fail(err, errlen,
                        "manifest: each binding needs string name and uri, optional on_error "
                        "and dead_letter");
        bool known = !oe;
        for (size_t k = 0; oe && k < 4; k++)
            known |= !strcmp(json_string_value(oe), on_error[k]);
        if (!known)
            return fail(err, errlen,
                        "manifest: on_error must be fail, skip, dead-letter or default");
    }
    return 0;
}

/* conf entries restart-strategy=fixed-delay|exponential-delay|none, restart-strategy.attempts=N,
 * restart-strategy.delay-ms=N, restart-strategy.max-delay-ms=N override the defaults. As for
 * connectors, the first entry of a key wins (the CLI puts later flags first): applied from the
 * last entry to the first. */
static int parse_conf(kp_jm_job_t *job, json_t *conf, char *err, size_t errlen)
{
    if (!conf || json_is_null(conf))
        return 0;
    if (!json_is_array(conf) || json_array_size(conf) > 1024)
        return fail(err, errlen, "manifest: conf must be an array of \"key=value\" strings");
    for (size_t i = json_array_size(conf); i-- > 0;) {
        const char *kv = json_string_value(json_array_get(conf, i));
        const char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv)
            return fail(err, errlen, "manifest: conf entries are \"key=value\" strings");
        const char *v = eq + 1;
        size_t klen = (size_t)(eq - kv);
        char *end;
        unsigned long num = strtoul(v, &end, 10);
        bool is_num = *v && !*end && num <= 100000000ul;
#define KEY(k) (klen == strlen(k) && !strncmp(kv, k, klen))
        if (KEY("restart-strategy")) {
            if (!strcmp(v, "fixed-delay"))
                job->restart.kind = KP_RESTART_FIXED;
            else if (!strcmp(v, "exponential-delay"))
                job->restart.kind = KP_RESTART_EXPONENTIAL;
            else if (!strcmp(v, "none"))
                job->restart.kind = KP_RESTART_NONE;
            else
                return fail(err, errlen,
                            "manifest: restart-strategy must be fixed-delay, exponential-delay "
                            "or none");
        } else if (KEY("restart-strategy.attempts") || KEY("restart-strategy.delay-ms") ||
                   KEY("restart-strategy.max-delay-ms")) {
            if (!is_num)
                return fail(err, errlen, "manifest: restart-strategy.* values are integers");
            if (KEY("restart-strategy.attempts"))
                job->restart.attempts = (uint32_t)num;
            else if (KEY("restart-strategy.delay-ms"))
                job->restart.delay_ms = (uint32_t)num;
            else
                job->restart.max_delay_ms = (uint32_t)num;
        }
#undef KEY
    }
    return 0;
}

static int parse_start(json_t *m, char *err, size_t errlen)
{
    json_t *start = json_object_get(m, "start"), *ts = json_object_get(m, "start_timestamp_ms");
    if (start && !json_is_null(start)) {
        const char *s = json_string_value(start);
        if (!s || (strcmp(s, "earliest") && strcmp(s, "latest") && strcmp(s, "timestamp") &&
                   strcmp(s, "group-offsets")))
            return fail(err, errlen,
                        "manifest: start must be earliest, latest, timestamp or group-offsets");
    }
    if (ts && !json_is_null(ts) && !json_is_integer(ts))
        return fail(err, errlen, "manifest: start_timestamp_ms must be an integer");
    return 0;
}

static int new_job_id(char id[KP_JM_ID_LEN])
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return -1;
    for (int i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

static int fill_job(const kp_jm_config_t *cfg, kp_jm_job_t *job, json_t *m, char *err,
                    size_t errlen)
{
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *sha = json_string_value(json_object_get(m, "plugin_sha256"));
    const char *hash = json_string_value(json_object_get(m, "graph_hash"));
    json_t *graph = json_object_get(m, "graph"), *par = json_object_get(m, "parallelism");
    json_t *replace = json_object_get(m, "replace");
    if (!name || !kp_manifest_name_ok(name))
        return fail(err, errlen,
                    "manifest: name must be 1-127 characters of A-Z a-z 0-9 . _ - and not start "
                    "with a dot");
    if (!sha_ok(sha) || !sha_ok(hash))
        return fail(err, errlen,
                    "manifest: plugin_sha256 and graph_hash must be 64 lowercase hex digits");
    if (!json_is_object(graph))
        return fail(err, errlen, "manifest: graph must be an object");
    if (par && !json_is_null(par) &&
        (!json_is_integer(par) || json_integer_value(par) < 0 ||
         json_integer_value(par) > KP_JM_PAR_MAX))
        return fail(err, errlen, "manifest: parallelism must be an integer in 0..1024");
    if (replace && !json_is_null(replace) &&
        (!json_is_string(replace) || !kp_manifest_name_ok(json_string_value(replace))))
        return fail(err, errlen, "manifest: replace must be a job name or id, or null");
    snprintf(job->name, sizeof job->name, "%s", name);
    memcpy(job->plugin_sha256, sha, 65);
    memcpy(job->graph_hash, hash, 65);
    job->parallelism = par ? (uint32_t)json_integer_value(par) : 0;
    job->restart = cfg->restart;
    if (parse_tasks(job, graph, err, errlen) || check_graph_hash(graph, hash, err, errlen) ||
        parse_bindings(json_object_get(m, "bindings"), err, errlen) ||
        parse_conf(job, json_object_get(m, "conf"), err, errlen) || parse_start(m, err, errlen) ||
        kp_jm_ckpt_config(cfg, job, m, err, errlen))
        return -1;
    if (new_job_id(job->id))
        return fail(err, errlen, "no randomness for a job id");
    return 0;
}

kp_jm_job_t *kp_manifest_parse(const kp_jm_config_t *cfg, const char *text, size_t len, char *err,
                               size_t errlen)
{
    json_error_t jerr;
    json_t *m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(m)) {
        snprintf(err, errlen, "manifest: not a JSON object (%s at line %d)",
                 m ? "wrong type" : jerr.text, jerr.line);
        json_decref(m);
        return NULL;
    }
    kp_jm_job_t *job = calloc(1, sizeof *job);
    if (!job) {
        json_decref(m);
        fail(err, errlen, "out of memory");
        return NULL;
    }
    job->manifest = m;
    job->exceptions = json_array();
    job->end_time = -1;
    job->start_time = kp_wall_ms();
    job->timestamps[KP_JOB_CREATED] = job->start_time;
    snprintf(job->waiting_reason, sizeof job->waiting_reason, "waiting for the scheduler");
    if (fill_job(cfg, job, m, err, errlen)) {
        kp_job_free(job);
        return NULL;
    }
    return job;
}
