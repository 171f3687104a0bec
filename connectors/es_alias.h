/* Administration of Elasticsearch/OpenSearch indices and aliases for the jobmanager's
 * blue/green reprocessing (jobmanager/bluegreen.c): readers use an alias that kappa manages,
 * every job version writes its own physical index (NAME-vN), and the alias is moved in one
 * atomic `_aliases` call. Blocking libcurl calls, one short-lived handle each: a few requests
 * per procedure, never on a hot path. Every function returns 0, or -1 with a message in err
 * that names the node, the request and what the node answered.
 *
 * @locality any thread (no shared state besides libcurl's global init, done once)
 * @locks none */
#ifndef KP_ES_ALIAS_H
#define KP_ES_ALIAS_H

#include <stddef.h>

#define KP_ES_NAME_MAX 256

typedef struct kp_es_admin {
    char url[512]; /* http://HOST:PORT, no trailing slash */
    char user[128], password[256], api_key[512];
    long timeout_ms;
} kp_es_admin;

typedef enum kp_es_kind {
    KP_ES_MISSING, /* neither an index nor an alias of that name */
    KP_ES_ALIAS,   /* an alias: target holds its (single) index */
    KP_ES_INDEX,   /* a concrete index of that name */
} kp_es_kind;

/* Sets the node's address (a trailing '/' is dropped) and a 30 s timeout. */
void kp_es_admin_init(kp_es_admin *a, const char *url);

/* What `name` is on the node. An alias pointing at several indices is an error (kappa never
 * makes one: it would mix versions). */
int kp_es_resolve(const kp_es_admin *a, const char *name, kp_es_kind *kind, char *target,
                  size_t tlen, char *err, size_t errlen);

/* Creates `index` with `body` (settings/mappings JSON text, or NULL for the node's defaults and
 * any index template that matches). An index that already exists is kept (idempotent: a
 * jobmanager restarted mid-procedure creates again). */
int kp_es_index_create(const kp_es_admin *a, const char *index, const char *body, char *err,
                       size_t errlen);

/* Deletes `index`; one that does not exist is not an error. */
int kp_es_index_delete(const kp_es_admin *a, const char *index, char *err, size_t errlen);

/* One `_aliases` call: removes `alias` from `from` (if not NULL) and adds it to `to`, atomically
 * for readers. Idempotent: an alias already on `to` only, is left so. */
int kp_es_alias_switch(const kp_es_admin *a, const char *alias, const char *from, const char *to,
                       char *err, size_t errlen);

/* The concrete index `name` becomes index `to` behind an alias `name`, losing no write: `to`
 * created with `body`, a write block on `name` (index.blocks.write: writers get 403
 * cluster_block_exception, which the es: sink retries), the documents copied with `_reindex`
 * (versions kept: version_type external), then one `_aliases` call adds the alias (the write
 * index) and removes the old index — the retried writes then land in `to` through the alias.
 * On a failure the block is lifted again. */
int kp_es_migrate(const kp_es_admin *a, const char *name, const char *to, const char *body,
                  char *err, size_t errlen);

/* The next version number for `alias`: 1 + the largest N of existing indices `alias-vN`. */
int kp_es_next_version(const kp_es_admin *a, const char *alias, int *next, char *err,
                       size_t errlen);

/* The HTTP status of this thread's last request (-1: no answer). A failure answered with a
 * 4xx other than 404, 408 or 429 will not go away by asking again. */
long kp_es_last_status(void);

/* N of an index named "ALIAS-vN", else 0. */
int kp_es_version_of(const char *alias, const char *index);

/* Makes what was written to `index` searchable now (POST _refresh). */
int kp_es_refresh(const kp_es_admin *a, const char *index, char *err, size_t errlen);

/* Document count and store size (primaries) of `index`. */
int kp_es_index_stats(const kp_es_admin *a, const char *index, long long *docs, long long *bytes,
                      char *err, size_t errlen);

#endif
