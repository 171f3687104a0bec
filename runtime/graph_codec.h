/* The job graph as canonical JSON, and its hash: what `kappa submit` sends next to the plugin
 * and what a taskmanager recomputes after loading that plugin (with the same -p) before it runs
 * anything — the proof that the code it loaded builds the graph the jobmanager scheduled.
 *
 * Canonical = jansson with JSON_SORT_KEYS | JSON_COMPACT, so the same job gives the same bytes
 * on every machine; the hash is the lowercase sha256 hex of exactly those bytes. Shape (see
 * docs/cli.md, "Graph JSON"):
 *   {"checkpoint_interval_ms", "max_parallelism", "name", "parallelism",
 *    "nodes":[{"endpoint":str|null, "id", "input":id|-1, "keyed", "kind", "name", "parallelism",
 *              "uid"}],
 *    "tasks":[{"id":head node id, "name", "nodes":[ids], "parallelism",
 *              "partitioning":"forward|hash|rebalance", "upstream":task id|-1}]}
 * Tasks are the physical plan (plan.h): the chains of nodes the executor runs as one subtask. */
#ifndef KP_GRAPH_CODEC_H
#define KP_GRAPH_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "graph.h"

#define KP_SHA256_HEX 65 /* 64 hex digits and the terminating NUL */

/* The graph of a validated job as a jansson object (new reference), or NULL with the reason
 * in errstr. @locality any thread; the job is only read */
json_t *kp_graph_to_json(const kp_job *job, char *errstr, size_t errlen);

/* The canonical JSON text (malloc'd, the caller frees it), or NULL with the reason. */
char *kp_graph_json(const kp_job *job, char *errstr, size_t errlen);

/* The graph hash: sha256 hex of kp_graph_json(). 0, or -1 with the reason. */
int kp_graph_hash(const kp_job *job, char hex[KP_SHA256_HEX], char *errstr, size_t errlen);

/* A JSON array of n items, item(ctx, i) giving each (a new reference, NULL = failure). NULL if
 * any item or the array failed; nothing leaks. @locality any thread */
json_t *kp_json_array_of(int n, json_t *(*item)(const void *ctx, int i), const void *ctx);

/* Lowercase sha256 hex of len bytes (libcrypto). @locality any thread */
void kp_sha256_hex(const void *data, size_t len, char hex[KP_SHA256_HEX]);

#endif
