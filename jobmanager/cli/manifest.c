/* Building the submit manifest (manifest.h) from the parsed job flags and the job's hashes. */
#include "manifest.h"

static const char *policy_name(kp_error_policy p)
{
    switch (p) {
    case KP_POLICY_FAIL:
        return "fail";
    case KP_POLICY_SKIP:
        return "skip";
    case KP_POLICY_DEAD_LETTER:
        return "dead-letter";
    default:
        return "default";
    }
}

static json_t *binding_item(const void *opts, int i)
{
    const kp_binding *b = &((const kp_job_opts *)opts)->b[i];
    return json_pack("{s:s, s:s, s:s, s:o}", "name", b->name, "uri", b->uri, "on_error",
                     policy_name(b->on_error), "dead_letter",
                     b->dead_letter ? json_string(b->dead_letter) : json_null());
}

static json_t *conf_item(const void *opts, int i)
{
    return json_string(((const kp_job_opts *)opts)->conf[i]);
}

/* The "checkpoint" object: only the settings whose flags were given (the jobmanager fills the
 * rest from the job's graph and its own defaults, docs/cluster.md "Checkpoints"); null when
 * none was. */
static json_t *checkpoint_object(const kp_job_opts *o)
{
    const kp_ckpt_config *c = &o->ckpt;
    const struct {
        int opt;
        const char *key;
        json_int_t v;
    } nums[] = {{KP_OPT_CKPT_INTERVAL, "interval_ms", c->interval_ms},
                {KP_OPT_CKPT_TIMEOUT, "timeout_ms", c->timeout_ms},
                {KP_OPT_MIN_PAUSE, "min_pause_ms", c->min_pause_ms},
                {KP_OPT_MAX_CONCURRENT, "max_concurrent", c->max_concurrent},
                {KP_OPT_TOLERABLE_FAILURES, "tolerable_failures", c->tolerable_failures},
                {KP_OPT_RETAINED, "retain", c->retain}};
    json_t *ck = json_object();
    for (size_t i = 0; ck && i < sizeof nums / sizeof nums[0]; i++)
        if (kp_job_opts_has(o, nums[i].opt))
            json_object_set_new(ck, nums[i].key, json_integer(nums[i].v));
    if (ck && kp_job_opts_has(o, KP_OPT_CKPT_MODE))
        json_object_set_new(
            ck, "mode",
            json_string(c->mode == KP_CKPT_AT_LEAST_ONCE ? "at_least_once" : "exactly_once"));
    if (ck && kp_job_opts_has(o, KP_OPT_CKPT_DIR) && c->dir)
        json_object_set_new(ck, "dir", json_string(c->dir));
    if (ck && json_object_size(ck) == 0) {
        json_decref(ck);
        return json_null();
    }
    return ck;
}

json_t *kp_manifest_build(const kp_manifest_in *in)
{
    const kp_job_opts *o = in->opts;
    json_t *bindings = kp_json_array_of(o->nb, binding_item, o);
    json_t *conf = kp_json_array_of(o->nconf, conf_item, o);
    json_t *ckpt = checkpoint_object(o);
    if (!bindings || !conf || !ckpt) {
        json_decref(bindings);
        json_decref(conf);
        json_decref(ckpt);
        return NULL;
    }
    return json_pack(
        "{s:s, s:s, s:O, s:s, s:i, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:b, s:b}", "name", in->name,
        "plugin_sha256", in->plugin_sha256, "graph", in->graph, "graph_hash", in->graph_hash,
        "parallelism", o->parallelism, "start", kp_start_mode_name(o->start), "start_timestamp_ms",
        (json_int_t)o->start_ts, "bindings", bindings, "conf", conf, "replace",
        in->replace ? json_string(in->replace) : json_null(), "checkpoint", ckpt, "from_checkpoint",
        o->from_checkpoint ? json_string(o->from_checkpoint) : json_null(),
        "allow_non_restored_state", o->allow_non_restored, "from_savepoint_of_old",
        in->from_savepoint_of_old);
}
