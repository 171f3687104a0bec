/* Deploy message → executor arguments (deploy_config.h). The start position travels as its own
 * field (the manifest's "start"); it becomes the same kafka.start entry `kappa run --local
 * --from-...` makes, placed first so it wins over any kafka.start inside conf, as the flag wins
 * locally. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy_config.h"
#include "memory_budget.h"
#include "plugin_cache.h"

/* Ids that become path components: letters, digits, '-' and '_', 1..64 of them. */
static int path_safe(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'z') ||
              (s[n] >= 'A' && s[n] <= 'Z') || s[n] == '-' || s[n] == '_'))
            return 0;
    return n > 0 && n <= 64;
}

int kp_tm_deploy_check(const Kappa__Control__Deploy *d, char *err, size_t errlen)
{
    if (!path_safe(d->job_id))
        snprintf(err, errlen, "job id '%.80s' is not 1..64 letters, digits, '-' or '_'", d->job_id);
    else if (!kp_tm_sha256_valid(d->plugin_sha256))
        snprintf(err, errlen, "plugin sha256 '%.80s' is not 64 lowercase hex digits",
                 d->plugin_sha256);
    else if (d->n_locals == 0)
        snprintf(err, errlen, "the deployment assigns no subtask to this taskmanager");
    else
        return 0;
    return -1;
}

static int parse_policy(const char *s, kp_error_policy *out)
{
    static const struct {
        const char *word;
        kp_error_policy policy;
    } words[] = {{"", KP_POLICY_DEFAULT},
                 {"default", KP_POLICY_DEFAULT},
                 {"fail", KP_POLICY_FAIL},
                 {"skip", KP_POLICY_SKIP},
                 {"dead-letter", KP_POLICY_DEAD_LETTER}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcmp(s, words[i].word)) {
            *out = words[i].policy;
            return 0;
        }
    return -1;
}

/* The kafka.start entry for the Deploy's start position; "" when it names none. */
static int start_conf(const Kappa__Control__Deploy *d, char *out, size_t len)
{
    const char *s = d->start ? d->start : "";
    out[0] = 0;
    if (!strcmp(s, "earliest") || !strcmp(s, "latest"))
        snprintf(out, len, "kafka.start=%s", s);
    else if (!strcmp(s, "group-offsets"))
        snprintf(out, len, "kafka.start=group");
    else if (!strcmp(s, "timestamp") && d->start_timestamp_ms >= 0)
        snprintf(out, len, "kafka.start=timestamp:%lld", (long long)d->start_timestamp_ms);
    else if (*s)
        return -1;
    return 0;
}

int kp_tm_exec_args_build(const Kappa__Control__Deploy *d, kp_tm_exec_args *a, char *err,
                          size_t errlen)
{
    *a = (kp_tm_exec_args){0};
    if (start_conf(d, a->start_conf, sizeof a->start_conf) != 0) {
        snprintf(err, errlen,
                 "unknown start position '%s' (earliest, latest, timestamp or group-offsets)",
                 d->start);
        return -1;
    }
    a->bindings = calloc(d->n_bindings + 1, sizeof *a->bindings);
    a->conf = calloc(d->n_conf + 3, sizeof *a->conf);
    if (!a->bindings || !a->conf) {
        snprintf(err, errlen, "out of memory");
        kp_tm_exec_args_free(a);
        return -1;
    }
    for (size_t i = 0; i < d->n_bindings; i++) {
        const Kappa__Control__Binding *b = d->bindings[i];
        kp_binding *kb = &a->bindings[a->nbindings++];
        *kb = (kp_binding){.name = b->name, .uri = b->uri};
        if (b->dead_letter && *b->dead_letter)
            kb->dead_letter = b->dead_letter;
        if (!*b->name || !*b->uri || parse_policy(b->on_error, &kb->on_error) != 0) {
            snprintf(err, errlen,
                     "binding '%s': needs a name, a URI and on_error fail, skip, dead-letter or "
                     "default (got uri '%s', on_error '%s')",
                     b->name, b->uri, b->on_error);
            kp_tm_exec_args_free(a);
            return -1;
        }
    }
    size_t n = 0;
    if (a->start_conf[0])
        a->conf[n++] = a->start_conf;
    for (size_t i = 0; i < d->n_conf; i++)
        a->conf[n++] = d->conf[i];
    return 0;
}

void kp_tm_exec_args_free(kp_tm_exec_args *a)
{
    free(a->bindings);
    free((void *)a->conf);
    *a = (kp_tm_exec_args){0};
}

int kp_tm_locals_check(const Kappa__Control__Deploy *d, const kp_plan *plan, int *whole, char *err,
                       size_t errlen)
{
    int offset[KP_MAX_NODES]; /* first bit of each task in `seen` */
    int total = 0;
    for (int i = 0; i < plan->ntasks; i++) {
        offset[i] = total;
        total += plan->tasks[i].parallelism;
    }
    unsigned char *seen = calloc((size_t)total + 1, 1);
    if (!seen) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < d->n_locals && rc == 0; i++) {
        const Kappa__Control__Local *l = d->locals[i];
        const kp_plan_task *t = kp_plan_task_by_id(plan, l->task_id);
        if (!t || l->subtask >= (uint32_t)t->parallelism) {
            snprintf(err, errlen,
                     "the deployment names subtask %u of task %d, which the job's plan does not "
                     "have",
                     l->subtask, l->task_id);
            rc = -1;
        } else if (seen[offset[t - plan->tasks] + (int)l->subtask]++) {
            snprintf(err, errlen, "the deployment names subtask %u of task %d twice", l->subtask,
                     l->task_id);
            rc = -1;
        }
    }
    free(seen);
    *whole = rc == 0 && d->n_locals == (size_t)total;
    return rc;
}

int kp_tm_memory_apply(const Kappa__Control__Deploy *d, const kp_job *job, size_t slot_bytes,
                       kp_tm_exec_args *a, kp_exec_config *cfg, char *err, size_t errlen)
{
    int keyed = 0, slots = 0;
    for (int i = 0; i < job->nnodes; i++)
        keyed += job->nodes[i]->kind == KP_NODE_WINDOW || job->nodes[i]->kind == KP_NODE_PROCESS;
    for (size_t i = 0; i < d->n_locals; i++)
        if ((int)d->locals[i]->subtask + 1 > slots)
            slots = (int)d->locals[i]->subtask + 1;
    kp_slot_memory m;
    char why[256];
    if (kp_slot_memory_split(slot_bytes, keyed, &m, why, sizeof why) != 0) {
        snprintf(err, errlen, "--slot-memory-mb: %s", why);
        return -1;
    }
    cfg->state_cache_bytes = m.state_cache;
    cfg->rocksdb_cache_bytes = m.rocksdb_cache;
    cfg->rocksdb_memtable_bytes = m.memtable;
    cfg->network_bytes = m.network * (size_t)slots;
    snprintf(a->fetch_conf, sizeof a->fetch_conf, "kafka.memory_mb=%zu", m.source_fetch >> 20);
    size_t n = 0;
    while (a->conf[n])
        n++;
    a->conf[n] = a->fetch_conf; /* room was left for it */
    return 0;
}

const char *kp_tm_placement_peer(void *ctx, int task, int subtask, char *err, size_t errlen)
{
    const Kappa__Control__Deploy *d = ctx;
    for (size_t i = 0; i < d->n_placements; i++) {
        const Kappa__Control__Placement *p = d->placements[i];
        if (p->task_id == task && p->subtask == (uint32_t)subtask && *p->data_address)
            return p->data_address;
    }
    snprintf(err, errlen, "the deployment places subtask %d of task %d nowhere", subtask, task);
    return NULL;
}

int kp_tm_ckpt_config(const Kappa__Control__Deploy *d, kp_ckpt_config *c, char *err, size_t errlen)
{
    const Kappa__Control__CheckpointConfig *cc = d->checkpoint;
    *c = (kp_ckpt_config){0};
    if (!cc || (cc->interval_ms <= 0 && (!cc->dir || !*cc->dir))) /* 0 + a dir: savepoints */
        return 0;
    const char *mode = cc->mode ? cc->mode : "";
    if (strcmp(mode, "exactly_once") && strcmp(mode, "at_least_once") && *mode) {
        snprintf(err, errlen, "unknown checkpoint mode '%.80s' (exactly_once or at_least_once)",
                 mode);
        return -1;
    }
    if (!cc->dir || cc->dir[0] != '/' || cc->timeout_ms < 0 || cc->min_pause_ms < 0 ||
        cc->max_concurrent < 0 || cc->tolerable_failures < 0 || cc->retain < 0) {
        snprintf(err, errlen,
                 "the checkpoint configuration needs an absolute dir and no negative value "
                 "(dir '%.200s')",
                 cc->dir ? cc->dir : "");
        return -1;
    }
    *c = (kp_ckpt_config){.interval_ms = cc->interval_ms,
                          .timeout_ms = cc->timeout_ms,
                          .min_pause_ms = cc->min_pause_ms,
                          .max_concurrent = cc->max_concurrent,
                          .tolerable_failures = cc->tolerable_failures,
                          .retain = cc->retain,
                          .mode = strcmp(mode, "at_least_once") ? KP_CKPT_EXACTLY_ONCE
                                                                : KP_CKPT_AT_LEAST_ONCE,
                          .dir = cc->dir};
    return 0;
}
