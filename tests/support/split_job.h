/* The job the executor-split tests share (test_exec_part, test_net_exec): a keyed tumbling count
 * with a late side output over random out-of-order NDJSON, a "collect" sink that gathers every
 * document as "id\tjson", and the helpers to compare runs. Test support only. */
#ifndef KP_TEST_SPLIT_JOB_H
#define KP_TEST_SPLIT_JOB_H

#include <stddef.h>

#include "../../runtime/connector.h"
#include "../../runtime/graph.h"

typedef struct doc_list {
    char **lines;
    size_t n, cap;
} doc_list;

extern int job_parallelism, sink_parallelism; /* read by the job's define function */

/* The "collect" sink connector's open function (register it as {"collect", NULL, collect_open}). */
kp_sink_writer *collect_open(const kp_endpoint *ep, char *errstr, size_t errlen);

/* Takes what was collected, sorted; the collector starts empty again. */
doc_list take_sorted(void);
void free_list(doc_list *l);

/* Writes `nrec` random out-of-order records drawn from `seed`; returns the path (static). */
const char *write_input(uint64_t seed, int nrec);

/* Defines and validates the job at job_parallelism / sink_parallelism. */
kp_job *new_job(void);

#endif
