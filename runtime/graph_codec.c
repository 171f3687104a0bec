/* Canonical graph JSON and its sha256 (graph_codec.h). The text is built by jansson with sorted
 * keys and no whitespace, so it depends only on the validated job (and the -p it was validated
 * with), never on the machine, the build or the order nodes were hashed in. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_codec.h"
#include "plan.h"

static json_t *node_json(const kp_node *n)
{
    return json_pack("{s:i, s:s, s:s, s:s, s:i, s:i, s:b, s:o}", "id", n->id, "kind",
                     kp_node_kind_name(n->kind), "name", n->name, "uid", n->uid, "parallelism",
                     n->parallelism, "input", n->input ? n->input->id : -1, "keyed", n->keyed,
                     "endpoint", n->endpoint[0] ? json_string(n->endpoint) : json_null());
}

static json_t *node_id_item(const void *task, int i)
{
    return json_integer(((const kp_plan_task *)task)->nodes[i]);
}

/* A task of the physical plan; a source task (no upstream) says "forward". */
static json_t *task_json(const kp_plan_task *t)
{
    json_t *ids = kp_json_array_of(t->nnodes, node_id_item, t);
    return json_pack("{s:i, s:s, s:i, s:o, s:i, s:s}", "id", t->id, "name", t->name, "parallelism",
                     t->parallelism, "nodes", ids, "upstream", t->upstream, "partitioning",
                     kp_partitioning_name(t->upstream < 0 ? KP_PART_FORWARD : t->partitioning));
}

json_t *kp_json_array_of(int n, json_t *(*item)(const void *ctx, int i), const void *ctx)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, item(ctx, i)) != 0) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

static json_t *node_item(const void *job, int i)
{
    return node_json(((const kp_job *)job)->nodes[i]);
}

static json_t *task_item(const void *plan, int i)
{
    return task_json(&((const kp_plan *)plan)->tasks[i]);
}

json_t *kp_graph_to_json(const kp_job *job, char *errstr, size_t errlen)
{
    kp_plan *plan = calloc(1, sizeof *plan);
    if (!plan) {
        snprintf(errstr, errlen, "out of memory planning job '%s'", job->name);
        return NULL;
    }
    if (job->error[0] || kp_plan_build(job, plan) != 0) {
        snprintf(errstr, errlen, "job '%s' is not valid: %s", job->name,
                 job->error[0] ? job->error : "it cannot be planned");
        free(plan);
        return NULL;
    }
    json_t *nodes = kp_json_array_of(job->nnodes, node_item, job);
    json_t *tasks = kp_json_array_of(plan->ntasks, task_item, plan);
    free(plan);
    json_t *g = nodes && tasks
                    ? json_pack("{s:s, s:i, s:i, s:I, s:o, s:o}", "name", job->name, "parallelism",
                                job->parallelism, "max_parallelism", job->max_parallelism,
                                "checkpoint_interval_ms", (json_int_t)job->checkpoint_interval,
                                "nodes", nodes, "tasks", tasks)
                    : (json_decref(nodes), json_decref(tasks), NULL);
    if (!g)
        snprintf(errstr, errlen, "out of memory building the graph of job '%s'", job->name);
    return g;
}

char *kp_graph_json(const kp_job *job, char *errstr, size_t errlen)
{
    json_t *g = kp_graph_to_json(job, errstr, errlen);
    if (!g)
        return NULL;
    char *s = json_dumps(g, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(g);
    if (!s)
        snprintf(errstr, errlen, "out of memory writing the graph of job '%s'", job->name);
    return s;
}

void kp_sha256_hex(const void *data, size_t len, char hex[KP_SHA256_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = 0;
}

int kp_graph_hash(const kp_job *job, char hex[KP_SHA256_HEX], char *errstr, size_t errlen)
{
    char *s = kp_graph_json(job, errstr, errlen);
    if (!s)
        return -1;
    kp_sha256_hex(s, strlen(s), hex);
    free(s);
    return 0;
}
