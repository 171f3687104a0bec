/* Building and validating the logical graph: the graph half of the kp_api table.
 *
 * Every builder copies the caller's options (only the bytes the caller's struct_size says it
 * has, so an older plugin's shorter structs read as zero-filled newer ones), derives names and
 * uids, and records the first error in the job instead of returning failure codes through the
 * fluent API. */
#include "graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kp_job_errorf(kp_job *job, const char *fmt, ...)
{
    if (job->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof job->error, fmt, ap);
    va_end(ap);
}

kp_job *kp_job_new(const char *name)
{
    kp_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    snprintf(job->name, sizeof job->name, "%s", name ? name : "job");
    job->parallelism = 1;
    job->max_parallelism = KP_DEFAULT_MAX_PARALLELISM;
    return job;
}

void kp_job_free(kp_job *job)
{
    if (!job)
        return;
    for (int i = 0; i < job->nnodes; i++)
        free(job->nodes[i]);
    free(job);
}

const char *kp_node_kind_name(kp_node_kind kind)
{
    static const char *const names[] = {
        [KP_NODE_SOURCE] = "source",       [KP_NODE_MAP] = "map",
        [KP_NODE_FILTER] = "filter",       [KP_NODE_FLAT_MAP] = "flat_map",
        [KP_NODE_KEY_BY] = "key_by",       [KP_NODE_WINDOW] = "window",
        [KP_NODE_AGGREGATE] = "aggregate", [KP_NODE_LATE] = "late",
        [KP_NODE_PROCESS] = "process",     [KP_NODE_SINK] = "sink",
    };
    if ((unsigned)kind < sizeof names / sizeof names[0] && names[kind])
        return names[kind];
    return "?";
}

/* Copies a caller's options struct of a possibly older, shorter layout. */
static void copy_opts(kp_job *job, void *dst, size_t dst_size, const void *src)
{
    memset(dst, 0, dst_size);
    if (!src)
        return;
    uint32_t n = *(const uint32_t *)src;
    if (n < sizeof(uint32_t) || n > 1u << 16) {
        kp_job_errorf(job, "options struct with invalid struct_size %u", n);
        return;
    }
    memcpy(dst, src, n < dst_size ? n : dst_size);
}

/* The common option fields, at the same offset in every options struct. */
typedef struct common_opts {
    KP_OP_COMMON;
} common_opts;

/* "input->kind"; when that is too long, the tail of it plus a hash of the whole, so derived
 * names (and the uids derived from them) stay unique and stable. */
static void derive_name(char out[KP_NAME_MAX], const char *input, const char *kind)
{
    char full[KP_NAME_MAX * 2 + 16];
    int n = snprintf(full, sizeof full, "%s->%s", input, kind);
    if (n < KP_NAME_MAX) {
        memcpy(out, full, (size_t)n + 1);
        return;
    }
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++)
        h = (h ^ (uint8_t)full[i]) * 16777619u;
    snprintf(out, KP_NAME_MAX, "~%08x%s", h, full + n - (KP_NAME_MAX - 10));
}

static kp_node *node_add(kp_job *job, kp_node_kind kind, kp_node *input, const void *opts)
{
    if (job->error[0])
        return NULL;
    if (job->nnodes == KP_MAX_NODES) {
        kp_job_errorf(job, "more than %d operators", KP_MAX_NODES);
        return NULL;
    }
    if (input && input->noutputs == KP_MAX_OUTPUTS) {
        kp_job_errorf(job, "'%s' feeds more than %d operators", input->name, KP_MAX_OUTPUTS);
        return NULL;
    }
    kp_node *n = calloc(1, sizeof *n);
    if (!n) {
        kp_job_errorf(job, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->job = job;
    n->id = job->nnodes;
    n->input = input;
    n->keyed = input ? input->keyed : false;
    common_opts c;
    copy_opts(job, &c, sizeof c, opts);
    if (c.name && c.name[0])
        snprintf(n->name, sizeof n->name, "%s", c.name);
    else if (input)
        derive_name(n->name, input->name, kp_node_kind_name(kind));
    else
        snprintf(n->name, sizeof n->name, "%s", kp_node_kind_name(kind));
    /* A uid derived from the name is stable as long as the name and the path to the node
     * are; jobs that rename operators should set .uid explicitly. */
    snprintf(n->uid, sizeof n->uid, "%s", c.uid && c.uid[0] ? c.uid : n->name);
    n->parallelism = c.parallelism;
    if (c.parallelism < 0 || c.parallelism > KP_MAX_PARALLELISM)
        kp_job_errorf(job, "'%s': parallelism must be within 1..%d, got %d", n->name,
                      KP_MAX_PARALLELISM, c.parallelism);
    job->nodes[job->nnodes++] = n;
    if (input)
        input->outputs[input->noutputs++] = n;
    return n;
}

/* A stream handle is its node; NULL means an earlier builder call already failed. */
static kp_node *node_of(const void *stream)
{
    return (kp_node *)stream;
}

static void api_job_parallelism(kp_job *job, int p)
{
    if (p < 1 || p > KP_MAX_PARALLELISM)
        kp_job_errorf(job, "job parallelism must be within 1..%d, got %d", KP_MAX_PARALLELISM, p);
    else
        job->parallelism = p;
}

static void api_job_max_parallelism(kp_job *job, int k)
{
    if (k < 1 || k > 32768)
        kp_job_errorf(job, "max parallelism (key groups) must be within 1..32768, got %d", k);
    else
        job->max_parallelism = k;
}

static void api_job_checkpoint_interval(kp_job *job, kp_time t)
{
    if (t < 0)
        kp_job_errorf(job, "checkpoint interval must not be negative");
    else
        job->checkpoint_interval = t;
}

static void api_job_fail(kp_job *job, const char *message)
{
    kp_job_errorf(job, "%s", message && message[0] ? message : "the job's define step failed");
}

static kp_stream *api_source(kp_job *job, const char *name, const kp_source_opts *o)
{
    if (!name || !name[0]) {
        kp_job_errorf(job, "kp_source needs a name (it is bound to a topic or file by config)");
        return NULL;
    }
    kp_node *n = node_add(job, KP_NODE_SOURCE, NULL, o);
    if (!n)
        return NULL;
    copy_opts(job, &n->u.source, sizeof n->u.source, o);
    snprintf(n->endpoint, sizeof n->endpoint, "%s", name);
    if (!(o && o->name && o->name[0]))
        snprintf(n->name, sizeof n->name, "source:%s", name);
    if (!(o && o->uid && o->uid[0]))
        snprintf(n->uid, sizeof n->uid, "%s", n->name);
    if (n->u.source.out_of_order < 0 || n->u.source.idle_timeout < 0)
        kp_job_errorf(job, "source '%s': out_of_order and idle_timeout must not be negative", name);
    return (kp_stream *)n;
}

/* Shared by map, filter and flat_map: a one-input node whose function is mandatory. The
 * three options structs share their layout: common fields, then the function. */
static kp_stream *add_fn_node(kp_stream *in, kp_node_kind kind, const kp_map_opts *o,
                              const char *what)
{
    kp_node *input = node_of(in);
    if (!input)
        return NULL;
    kp_node *n = node_add(input->job, kind, input, o);
    if (!n)
        return NULL;
    copy_opts(input->job, &n->u.map, sizeof n->u.map, o);
    if (!n->u.map.fn)
        kp_job_errorf(input->job, "%s '%s' needs a function", what, n->name);
    return (kp_stream *)n;
}

static kp_stream *api_map(kp_stream *in, const kp_map_opts *o)
{
    return add_fn_node(in, KP_NODE_MAP, o, "map");
}

static kp_stream *api_filter(kp_stream *in, const kp_filter_opts *o)
{
    return add_fn_node(in, KP_NODE_FILTER, (const kp_map_opts *)(const void *)o, "filter");
}

static kp_stream *api_flat_map(kp_stream *in, const kp_flat_map_opts *o)
{
    return add_fn_node(in, KP_NODE_FLAT_MAP, (const kp_map_opts *)(const void *)o, "flat_map");
}

static kp_stream *api_key_by(kp_stream *in, const kp_key_by_opts *o)
{
    kp_node *input = node_of(in);
    if (!input)
        return NULL;
    kp_node *n = node_add(input->job, KP_NODE_KEY_BY, input, o);
    if (!n)
        return NULL;
    copy_opts(input->job, &n->u.key_by, sizeof n->u.key_by, o);
    n->keyed = true;
    return (kp_stream *)n;
}

static int check_window_spec(kp_job *job, const char *name, kp_window_spec s)
{
    switch (s.kind) {
    case KP_WINDOW_TUMBLING:
        if (s.size > 0)
            return 0;
        kp_job_errorf(job, "window '%s': tumbling size must be positive", name);
        return -1;
    case KP_WINDOW_SLIDING:
        if (s.size > 0 && s.slide > 0 && s.slide <= s.size)
            return 0;
        kp_job_errorf(job, "window '%s': sliding windows need 0 < slide <= size", name);
        return -1;
    case KP_WINDOW_SESSION:
        if (s.gap > 0)
            return 0;
        kp_job_errorf(job, "window '%s': session gap must be positive", name);
        return -1;
    }
    kp_job_errorf(job, "window '%s': unknown window kind %d", name, (int)s.kind);
    return -1;
}

static kp_windowed *api_window(kp_stream *keyed, kp_window_spec spec, const kp_window_opts *o)
{
    kp_node *input = node_of(keyed);
    if (!input)
        return NULL;
    if (!input->keyed) {
        kp_job_errorf(input->job, "window on '%s': windows need a keyed stream (kp_key_by)",
                      input->name);
        return NULL;
    }
    kp_node *n = node_add(input->job, KP_NODE_WINDOW, input, o);
    if (!n)
        return NULL;
    n->u.window.spec = spec;
    copy_opts(input->job, &n->u.window.opts, sizeof n->u.window.opts, o);
    check_window_spec(input->job, n->name, spec);
    if (n->u.window.opts.allowed_lateness < 0)
        kp_job_errorf(input->job, "window '%s': allowed lateness must not be negative", n->name);
    return (kp_windowed *)n;
}

static kp_stream *api_late_records(kp_windowed *w)
{
    kp_node *win = node_of(w);
    if (!win)
        return NULL;
    if (win->u.window.late)
        return (kp_stream *)win->u.window.late;
    kp_node *n = node_add(win->job, KP_NODE_LATE, win, NULL);
    if (n)
        win->u.window.late = n;
    return (kp_stream *)n;
}

static kp_stream *api_aggregate(kp_windowed *w, int kind, const kp_agg_opts *o)
{
    kp_node *win = node_of(w);
    if (!win)
        return NULL;
    kp_job *job = win->job;
    if (win->u.window.aggregate) {
        kp_job_errorf(job, "window '%s' already has an aggregate", win->name);
        return NULL;
    }
    kp_node *n = node_add(job, KP_NODE_AGGREGATE, win, o);
    if (!n)
        return NULL;
    n->u.agg.kind = kind;
    copy_opts(job, &n->u.agg.opts, sizeof n->u.agg.opts, o);
    n->keyed = false;
    win->u.window.aggregate = n;
    const kp_agg_opts *a = &n->u.agg.opts;
    if (kind < KP_AGG_COUNT || kind > KP_AGG_CUSTOM)
        kp_job_errorf(job, "'%s': unknown aggregate kind %d", n->name, kind);
    else if ((kind == KP_AGG_SUM || kind == KP_AGG_MIN || kind == KP_AGG_MAX) && !a->value)
        kp_job_errorf(job, "'%s': sum/min/max need .value", n->name);
    else if (kind == KP_AGG_CUSTOM &&
             (!a->acc_size || a->acc_size > 4096 || !a->add || !a->emit_acc))
        kp_job_errorf(job, "'%s': kp_aggregate needs .acc_size (1..4096), .add and .emit_acc",
                      n->name);
    else if (kind == KP_AGG_CUSTOM && win->u.window.spec.kind != KP_WINDOW_TUMBLING && !a->merge)
        kp_job_errorf(job, "'%s': sliding and session windows need .merge", n->name);
    return (kp_stream *)n;
}

static kp_stream *api_process(kp_stream *keyed, const kp_process_opts *o)
{
    kp_node *input = node_of(keyed);
    if (!input)
        return NULL;
    if (!input->keyed) {
        kp_job_errorf(input->job, "process on '%s' needs a keyed stream (kp_key_by)", input->name);
        return NULL;
    }
    kp_node *n = node_add(input->job, KP_NODE_PROCESS, input, o);
    if (!n)
        return NULL;
    copy_opts(input->job, &n->u.process, sizeof n->u.process, o);
    n->keyed = false;
    if (!n->u.process.on_event)
        kp_job_errorf(input->job, "process '%s' needs .on_event", n->name);
    if (n->u.process.value_size > 4096)
        kp_job_errorf(input->job, "process '%s': value_size above 4096 bytes", n->name);
    return (kp_stream *)n;
}

static void api_sink(kp_stream *in, const char *name, const kp_sink_opts *o)
{
    kp_node *input = node_of(in);
    if (!input)
        return;
    if (!name || !name[0]) {
        kp_job_errorf(input->job, "kp_sink needs a name (bound to an index or file by config)");
        return;
    }
    kp_node *n = node_add(input->job, KP_NODE_SINK, input, o);
    if (!n)
        return;
    copy_opts(input->job, &n->u.sink, sizeof n->u.sink, o);
    snprintf(n->endpoint, sizeof n->endpoint, "%s", name);
    if (!(o && o->name && o->name[0]))
        snprintf(n->name, sizeof n->name, "sink:%s", name);
    if (!(o && o->uid && o->uid[0]))
        snprintf(n->uid, sizeof n->uid, "%s", n->name);
}

void kp_graph_api_fill(kp_api *api);
void kp_graph_api_fill(kp_api *api)
{
    api->job_parallelism = api_job_parallelism;
    api->job_max_parallelism = api_job_max_parallelism;
    api->job_checkpoint_interval = api_job_checkpoint_interval;
    api->job_fail = api_job_fail;
    api->source = api_source;
    api->map = api_map;
    api->filter = api_filter;
    api->flat_map = api_flat_map;
    api->key_by = api_key_by;
    api->window = api_window;
    api->late_records = api_late_records;
    api->aggregate = api_aggregate;
    api->process = api_process;
    api->sink = api_sink;
}

/* Defaults, as in Flink: sources and the operators right after a key_by run at the job's
 * parallelism; everything else, key_by included, at its input's — so key_by chains with what
 * feeds it and the hash exchange is its only shuffle. */
static int default_parallelism(const kp_job *job, const kp_node *n)
{
    if (!n->input)
        return job->parallelism;
    if (n->kind != KP_NODE_KEY_BY && n->input->kind == KP_NODE_KEY_BY)
        return job->parallelism;
    return n->input->parallelism;
}

int kp_job_validate(kp_job *job)
{
    if (job->error[0])
        return -1;
    if (job->parallelism_override > KP_MAX_PARALLELISM)
        kp_job_errorf(job, "parallelism %d above the maximum of %d", job->parallelism_override,
                      KP_MAX_PARALLELISM);
    else if (job->parallelism_override > 0)
        job->parallelism = job->parallelism_override;
    int sources = 0;
    for (int i = 0; i < job->nnodes; i++) {
        kp_node *n = job->nodes[i];
        if (!n->parallelism)
            n->parallelism = default_parallelism(job, n);
        if (n->parallelism > job->max_parallelism && n->keyed)
            kp_job_errorf(job, "'%s': parallelism %d above max parallelism %d", n->name,
                          n->parallelism, job->max_parallelism);
        sources += n->kind == KP_NODE_SOURCE;
        if (n->kind == KP_NODE_WINDOW && !n->u.window.aggregate)
            kp_job_errorf(job, "window '%s' has no aggregate (kp_count, kp_sum, ...)", n->name);
        else if (n->kind != KP_NODE_SINK && n->noutputs == 0)
            kp_job_errorf(job, "'%s' leads nowhere: every stream must end in a kp_sink", n->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(job->nodes[j]->uid, n->uid))
                kp_job_errorf(job, "two operators share the uid '%s': set .uid or .name", n->uid);
    }
    if (!sources)
        kp_job_errorf(job, "the job defines no source");
    return job->error[0] ? -1 : 0;
}

void kp_job_describe(const kp_job *job, char *buf, size_t len)
{
    int off = snprintf(buf, len, "job %s (parallelism %d, max parallelism %d)\n", job->name,
                       job->parallelism, job->max_parallelism);
    for (int i = 0; i < job->nnodes && off >= 0 && (size_t)off < len; i++) {
        const kp_node *n = job->nodes[i];
        char from[16] = "";
        if (n->input)
            snprintf(from, sizeof from, "<- #%d", n->input->id);
        off += snprintf(buf + off, len - (size_t)off, "  #%-3d %-9s %-7s p=%-3d %s (uid %s)\n",
                        n->id, kp_node_kind_name(n->kind), from, n->parallelism, n->name, n->uid);
    }
}
