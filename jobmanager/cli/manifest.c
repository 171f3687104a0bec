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

json_t *kp_manifest_build(const kp_manifest_in *in)
{
    const kp_job_opts *o = in->opts;
    json_t *bindings = kp_json_array_of(o->nb, binding_item, o);
    json_t *conf = kp_json_array_of(o->nconf, conf_item, o);
    if (!bindings || !conf) {
        json_decref(bindings);
        json_decref(conf);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:O, s:s, s:i, s:s, s:I, s:o, s:o, s:o}", "name", in->name,
                     "plugin_sha256", in->plugin_sha256, "graph", in->graph, "graph_hash",
                     in->graph_hash, "parallelism", o->parallelism, "start",
                     kp_start_mode_name(o->start), "start_timestamp_ms", (json_int_t)o->start_ts,
                     "bindings", bindings, "conf", conf, "replace",
                     in->replace ? json_string(in->replace) : json_null());
}
