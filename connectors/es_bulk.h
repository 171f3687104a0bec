/* Elasticsearch _bulk bodies and responses: the part of the es: sink (es_sink.c) that needs no
 * network. A bulk is one NDJSON body plus, per document, where its two lines start, so that
 * the documents a response asks us to retry can be copied into a new body byte for byte —
 * with the same versions — and a rejected document can be handed to a dead-letter sink.
 *
 * @locality the owning writer's (subtask's) thread; nothing here is shared. */
#ifndef KP_ES_BULK_H
#define KP_ES_BULK_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/connector.h"
#include "../runtime/engine.h"

/* One document in a body: action line at [start, doc), document line at [doc, end). */
typedef struct es_item {
    uint32_t start, doc, end;
} es_item;

typedef struct es_bulk {
    kp_buf body; /* the NDJSON request body (runtime/engine.h buffer) */
    es_item *items;
    size_t n, cap;
    int attempt;      /* requests sent for these documents so far */
    int64_t born_ms;  /* when its oldest document was first sent: retry_timeout_ms */
    int64_t due_ms;   /* not to be sent before (backoff) */
    int64_t first_ms; /* when the first document was added (flush_ms) */
    struct es_bulk *next;
} es_bulk;

/* How action lines look for one index: built once at open. */
typedef struct es_action {
    char head[1600]; /* {"index":{"_index":"IDX","_id":" */
    size_t head_len;
    size_t index_len; /* head up to the end of "IDX" */
    int versioned;    /* 0: no version (version_type=none) */
    char vtype[48];   /* ,"version_type":"external"}}\n */
    size_t vtype_len;
} es_action;

/* Fills `a` for index `index` (JSON-escaped here) and version_type ("external",
 * "external_gte" or "none"). Returns 0 or -1 if the index name is too long. */
int es_action_init(es_action *a, const char *index, const char *version_type);

/* Appends an index action for (id, doc) with `version`. An empty id lets Elasticsearch choose
 * one (and sends no version). Newlines inside doc are turned into spaces (they can only be
 * whitespace between JSON tokens) so a document can never split the NDJSON. Returns 0 or -1
 * (out of memory). */
int es_bulk_add(es_bulk *b, const es_action *a, kp_bytes id, kp_bytes doc, uint64_t version);

/* Appends item i of src to dst unchanged. Returns 0 or -1 (out of memory). */
int es_bulk_copy_item(es_bulk *dst, const es_bulk *src, size_t i);

/* Empties a bulk, keeping its buffers. */
void es_bulk_reset(es_bulk *b);
void es_bulk_free(es_bulk *b);

/* The document line of item i (without its newline). */
kp_bytes es_bulk_doc(const es_bulk *b, size_t i);

typedef enum es_outcome {
    ES_ITEM_OK,     /* 2xx */
    ES_ITEM_DUP,    /* 409, current version == ours: our own earlier write already applied */
    ES_ITEM_STALE,  /* 409, current version > ours: a later firing or attempt wins */
    ES_ITEM_RETRY,  /* 429, 5xx, 403 cluster_block_exception: transient, send again */
    ES_ITEM_REJECT, /* other 4xx (mapping errors, ...): the on_error policy decides */
} es_outcome;

/* Called for every item that is not ES_ITEM_OK, in order. `id` and `reason` are valid only
 * during the call. Returns 0, or -1 to stop parsing (the error is the callback's). */
typedef int (*es_item_fn)(void *arg, size_t i, es_outcome what, int status, const char *id,
                          const char *reason);

/* Reads a _bulk response for a bulk of n items (filter_path may have trimmed it to errors,
 * items.*.status, items.*.error, items.*._id). Counts outcomes into counts[] (indexed by
 * es_outcome) and calls fn for every item that is not OK. Returns 0, or -1 with errstr when
 * the response is not a bulk response for n items, or fn returned -1. */
int es_bulk_parse(const char *resp, size_t len, size_t n, size_t counts[5], es_item_fn fn,
                  void *arg, char *errstr, size_t errlen);

/* A latency histogram in milliseconds: exact below 16 ms, then 16 buckets per power of two
 * (about 4 % wide). */
#define ES_HIST_BUCKETS (16 + 16 * 28)
typedef struct es_hist {
    uint64_t count[ES_HIST_BUCKETS];
    uint64_t total;
} es_hist;

void es_hist_add(es_hist *h, uint64_t ms);
/* The q-quantile (0..1), in ms; 0 when empty. */
double es_hist_quantile(const es_hist *h, double q);

#endif
