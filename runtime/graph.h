/* The logical dataflow graph a job's define function builds through kp_api.
 *
 * Nodes are created in definition order and never removed; each node has at most one input
 * (kappa has no joins yet) and any number of outputs. The graph is validated as it is built:
 * the first error is kept in the job and every later builder call becomes a no-op, so a job's
 * define function needs no error checks of its own. Owned by the thread that loads the job;
 * read-only once kp_job_validate() has passed. */
#ifndef KP_GRAPH_H
#define KP_GRAPH_H

#include <kappa/kappa.h>

#define KP_MAX_NODES               256
#define KP_MAX_OUTPUTS             8
#define KP_NAME_MAX                128
#define KP_DEFAULT_MAX_PARALLELISM 128
/* The most subtasks one operator may have. The executor's per-subtask arrays and the exchange
 * memory (upstream x downstream channels, docs/architecture.md "Exchange memory") are sized
 * from it; every parallelism — job default, -p, per operator — is validated against it. */
#define KP_MAX_PARALLELISM 256

typedef enum kp_node_kind {
    KP_NODE_SOURCE = 1,
    KP_NODE_MAP,
    KP_NODE_FILTER,
    KP_NODE_FLAT_MAP,
    KP_NODE_KEY_BY,
    KP_NODE_WINDOW, /* the windowed stream; its aggregate is a child */
    KP_NODE_AGGREGATE,
    KP_NODE_LATE, /* the late-record side output of a window */
    KP_NODE_PROCESS,
    KP_NODE_SINK,
} kp_node_kind;

typedef struct kp_node {
    kp_node_kind kind;
    struct kp_job *job;     /* back pointer: streams are nodes */
    int id;                 /* position in the job's node array */
    char name[KP_NAME_MAX]; /* user name or derived, e.g. "source:clicks" */
    char uid[KP_NAME_MAX];  /* stable state id: explicit, else derived from the name */
    int parallelism;        /* resolved against the job default in kp_job_validate */
    struct kp_node *input;
    struct kp_node *outputs[KP_MAX_OUTPUTS];
    int noutputs;
    bool keyed; /* records carry a key that decides their key group */
    union {
        kp_source_opts source;
        kp_map_opts map;
        kp_filter_opts filter;
        kp_flat_map_opts flat_map;
        kp_key_by_opts key_by;
        kp_process_opts process;
        kp_sink_opts sink;
        struct {
            kp_window_spec spec;
            kp_window_opts opts;
            struct kp_node *aggregate; /* the one aggregate child */
            struct kp_node *late;      /* optional late side output */
        } window;
        struct {
            int kind; /* KP_AGG_* */
            kp_agg_opts opts;
        } agg;
    } u;
    char endpoint[KP_NAME_MAX]; /* source/sink: the name bound by configuration */
} kp_node;

struct kp_job {
    char name[KP_NAME_MAX];
    int parallelism;
    int parallelism_override; /* set by the runner (-p) before validation; 0 = none */
    int max_parallelism;
    kp_time checkpoint_interval;
    char error[512]; /* first definition error; empty when the job is valid */
    kp_node *nodes[KP_MAX_NODES];
    int nnodes;
};

/* Creates an empty job. Returns NULL on allocation failure. @locality any thread */
kp_job *kp_job_new(const char *name);
void kp_job_free(kp_job *job);

/* Runs a define function (from a plugin or linked in) against the host API (api.c, which
 * sits above the graph: graph.c never calls the table). Returns 0, or -1 with the reason in
 * errstr: the function refused the ABI, or the graph it built is invalid. */
int kp_job_define(kp_job *job, int (*define)(const kp_api *api, kp_job *job), char *errstr,
                  size_t errlen);

/* Checks the whole graph (every stream ends in a sink, windows have aggregates, ...) and
 * resolves defaults. Returns 0 or -1 with job->error set. */
int kp_job_validate(kp_job *job);

/* Records a definition error (the first one wins). printf-style. */
void kp_job_errorf(kp_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The node kind's display word ("source", "window", ...). */
const char *kp_node_kind_name(kp_node_kind kind);

/* A one-line-per-node description of the graph, for `kappa run --plan` and logs. */
void kp_job_describe(const kp_job *job, char *buf, size_t len);

/* The host's function table (api.c). */
const kp_api *kp_host_api(void);

#endif
