/* The manifest part of `kappa submit`'s upload (docs/cli.md, cluster contract): what the
 * jobmanager needs to know about a job without loading its code. @locality the CLI's thread */
#ifndef KP_CLI_MANIFEST_H
#define KP_CLI_MANIFEST_H

#include <jansson.h>

#include "graph_codec.h"
#include "job_opts.h"

typedef struct kp_manifest_in {
    const char *name;    /* the job's name on the cluster (--name, else the job's own) */
    const char *replace; /* --replace NAME|ID, or NULL */
    const char *plugin_sha256;
    json_t *graph; /* the graph object (kp_graph_to_json); the manifest takes a reference */
    const char *graph_hash;
    const kp_job_opts *opts;   /* -p, bindings, conf, start position */
    int from_savepoint_of_old; /* --replace with --from-savepoint-of-old */
} kp_manifest_in;

/* {"name","plugin_sha256","graph","graph_hash","parallelism","start","start_timestamp_ms",
 *  "bindings":[{"name","uri","on_error","dead_letter"}],"conf":[...],"replace",
 *  "checkpoint":{the checkpoint flags given}|null,"from_checkpoint":path|null,
 *  "allow_non_restored_state":bool,"from_savepoint_of_old":bool} — a new
 * reference, or NULL when out of memory. conf is in lookup order: the first entry with a key
 * wins (later flags come first, as in `kappa run --local`). */
json_t *kp_manifest_build(const kp_manifest_in *in);

#endif
