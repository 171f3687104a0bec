/* The shared job and collecting sink of the executor-split tests (split_job.h). */
#include "split_job.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/json.h"
#include "../../runtime/rng.h"

static doc_list collected;
static pthread_mutex_t collect_lock = PTHREAD_MUTEX_INITIALIZER;

static int collect_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                         size_t errlen)
{
    char *line = malloc(id.len + doc.len + 2);
    cr_assert(line);
    memcpy(line, id.ptr, id.len);
    line[id.len] = '\t';
    memcpy(line + id.len + 1, doc.ptr, doc.len);
    line[id.len + 1 + doc.len] = 0;
    pthread_mutex_lock(&collect_lock);
    if (collected.n == collected.cap) {
        collected.cap = collected.cap ? 2 * collected.cap : 1024;
        collected.lines = realloc(collected.lines, collected.cap * sizeof *collected.lines);
        cr_assert(collected.lines);
    }
    collected.lines[collected.n++] = line;
    pthread_mutex_unlock(&collect_lock);
    return 0;
}

static int collect_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    return 0;
}

static void collect_close(kp_sink_writer *w)
{
    free(w);
}

kp_sink_writer *collect_open(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    kp_sink_writer *w = calloc(1, sizeof *w);
    w->write = collect_write;
    w->flush = collect_flush;
    w->close = collect_close;
    return w;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Takes the collected documents, sorted. */
doc_list take_sorted(void)
{
    doc_list l = collected;
    collected = (doc_list){0};
    qsort(l.lines, l.n, sizeof *l.lines, cmp_str);
    return l;
}

void free_list(doc_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->lines[i]);
    free(l->lines);
}

/* ---- the job ------------------------------------------------------------------------------- */

int job_parallelism, sink_parallelism;

static kp_rc decode(kp_event *ev, kp_bytes raw)
{
    kp_json j;
    if (kp_json_parse(&j, raw) != 0)
        return KP_BAD_INPUT;
    kp_str k = kp_json_str(&j, "k");
    int64_t t = kp_json_int(&j, "t", INT64_MIN);
    if (k.len == 0 || t == INT64_MIN)
        return KP_BAD_INPUT;
    kp_event_key(ev, k);
    kp_event_time(ev, t);
    return KP_OK;
}

static kp_rc pass(kp_event *ev)
{
    return KP_OK;
}

static void emit_count(kp_doc *doc, const kp_window *w, kp_str key, int64_t count)
{
    kp_doc_id(doc, "%.*s|%" PRId64, KP_STR(key), w->end);
    kp_doc_int(doc, "c", count);
}

static int define(const kp_api *api, kp_job *job)
{
    (void)api;
    kp_job_parallelism(job, job_parallelism);
    kp_stream *src = kp_source(job, "in", .decode = decode, .out_of_order = 200);
    kp_stream *keyed = kp_key_by(kp_map(src, pass));
    kp_windowed *w = kp_window(keyed, kp_tumbling(1000));
    kp_sink(kp_count(w, .emit = emit_count), "out", .parallelism = sink_parallelism);
    kp_sink(kp_late_records(w), "late");
    return 0;
}

/* Writes random out-of-order NDJSON input; returns its path (static). */
const char *write_input(uint64_t seed, int nrec)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/kappa-split-job-%d.ndjson", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert(f);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    int64_t front = 1000000;
    for (int i = 0; i < nrec; i++) {
        front += (int64_t)(kp_rng_next(&s) % 20);
        int64_t ts = front - (int64_t)(kp_rng_next(&s) % 300); /* some are late */
        fprintf(f, "{\"k\":\"k%d\",\"t\":%" PRId64 "}\n", (int)(kp_rng_next(&s) % 23), ts);
    }
    fclose(f);
    return path;
}

kp_job *new_job(void)
{
    kp_job *job = kp_job_new("split-job");
    char err[512] = "";
    cr_assert(job);
    cr_assert_eq(kp_job_define(job, define, err, sizeof err), 0, "define: %s", err);
    return job;
}
