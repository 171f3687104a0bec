/*
 * Integration test for kappa-gen against a REAL Kafka broker (KAPPA_BROKERS, set by
 * tests/integration/with-services).
 *
 * Every end-to-end test of kappa assumes the generator put exactly the events it claims into
 * the topic, each in the partition it chose, in order, with no loss and no duplicates, and
 * that its truth is the engine's per-partition lateness rule applied to what the topic holds.
 * This test proves it with an independent librdkafka consumer: it creates fresh topics with
 * the Admin API, runs kappa-gen, reads every partition back to its high watermark and checks
 *   - hash: 1,000,000 events with malformed and late ones; every message is in the partition
 *     librdkafka's murmur2_random gives its key; the multiset of values equals the same run
 *     written to a file;
 *   - round-robin and range: the messages of each partition, in offset order, are exactly the
 *     events the documented rule assigns it, in the generator's order (event i of the same
 *     seed written to a file); with range, partition 0 ends after the first fifth;
 *   - the truth (late events, malformed, jitter beyond the watermark bound) equals the rule
 *     recomputed here per partition from the consumed messages;
 *   - --partitions that disagrees with the topic fails with a clear message.
 * Topics are deleted at the end. A missing KAPPA_BROKERS is a failure, never a skip.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "../support/kafka_wait.h"

#define T_PARTITIONS  8 /* the most any test here uses */
#define T_BIG_COUNT   1000000
#define T_SMALL_COUNT 100000
#define T_TIMEOUT_MS  60000

static char t_dir[256];
static char t_topics[4][128];
static int t_topic_cnt;

static const char *t_brokers(void)
{
    const char *b = getenv("KAPPA_BROKERS");
    cr_assert(b != NULL && *b != '\0',
              "KAPPA_BROKERS is not set: run through tests/integration/with-services "
              "(meson test --suite integration) or point it at a running broker");
    return b;
}

static const char *t_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", t_dir, name);
    return b;
}

/* ---- admin ---- */

static rd_kafka_t *t_admin_new(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", t_brokers(), err, sizeof(err)),
                 RD_KAFKA_CONF_OK, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    cr_assert_not_null(rk, "rd_kafka_new: %s", err);
    return rk;
}

/* Wait for the admin result event and return the error of its single topic. */
static rd_kafka_resp_err_t t_admin_wait(rd_kafka_queue_t *q, bool create, char *why,
                                        size_t why_size)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, T_TIMEOUT_MS + 5000);
    if (ev == NULL) {
        snprintf(why, why_size, "no admin result in time");
        return RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    snprintf(why, why_size, "%s", rd_kafka_event_error_string(ev));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            create
                ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n)
                : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
        err = n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
        if (n == 1 && rd_kafka_topic_result_error_string(res[0]) != NULL)
            snprintf(why, why_size, "%s", rd_kafka_topic_result_error_string(res[0]));
    }
    rd_kafka_event_destroy(ev);
    return err;
}

/* Wait until the broker reports `partitions` partitions with leaders for the topic. */
static void t_wait_topic_ready(rd_kafka_t *rk, const char *name, int partitions)
{
    kp_test_kafka_wait_partitions(rk, name, partitions, 100);
}

/* Create a fresh, uniquely named topic with `partitions` partitions; deleted in fini. */
static const char *t_topic_create(const char *what, int partitions)
{
    cr_assert_lt(t_topic_cnt, 4);
    char *name = t_topics[t_topic_cnt];
    snprintf(name, sizeof(t_topics[0]), "kappa-gen-test-%s-%ld-%ld", what, (long)getpid(),
             (long)time(NULL));
    rd_kafka_t *rk = t_admin_new();
    char why[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, why, sizeof(why));
    cr_assert_not_null(nt, "NewTopic: %s", why);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_resp_err_t err = t_admin_wait(q, true, why, sizeof(why));
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics %s on %s: %s (%s)", name,
                 t_brokers(), rd_kafka_err2str(err), why);
    t_topic_cnt++;
    t_wait_topic_ready(rk, name, partitions);
    rd_kafka_destroy(rk);
    return name;
}

static void t_topic_delete(const char *name)
{
    rd_kafka_t *rk = t_admin_new();
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(name);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
    char why[512];
    rd_kafka_resp_err_t err = t_admin_wait(q, false, why, sizeof(why));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        cr_log_warn("could not delete topic %s: %s (%s)", name, rd_kafka_err2str(err), why);
    rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void t_setup(void)
{
    snprintf(t_dir, sizeof(t_dir), "/tmp/kp-gen-kafka-XXXXXX");
    cr_assert_not_null(mkdtemp(t_dir), "mkdtemp: %s", strerror(errno));
}

static void t_teardown(void)
{
    for (int i = 0; i < t_topic_cnt; i++)
        t_topic_delete(t_topics[i]);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", t_dir);
}

/* ---- the generator ---- */

static char *t_slurp(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    if (len_out != NULL)
        *len_out = (size_t)len;
    return buf;
}

/* Run kappa-gen with args; stderr is saved to t_path(err_name) and returned (caller frees);
 * *rc gets the exit status. */
static char *t_gen_rc(const char *args, const char *err_name, int *rc)
{
    const char *gen = getenv("KAPPA_GEN");
    cr_assert(gen != NULL && *gen != '\0', "KAPPA_GEN is not set: run this through meson test");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s' %s 2>'%s'", gen, args, t_path(err_name));
    int st = system(cmd);
    cr_assert(st != -1 && WIFEXITED(st), "could not run %s", cmd);
    *rc = WEXITSTATUS(st);
    return t_slurp(t_path(err_name), NULL);
}

/* The same, and the run must succeed. */
static char *t_gen(const char *args, const char *err_name)
{
    int rc;
    char *err = t_gen_rc(args, err_name, &rc);
    cr_assert_eq(rc, 0, "kappa-gen %s failed (%d): %s", args, rc, err);
    return err;
}

/* The per-partition counts kappa-gen reports in its summary ("partitions=N counts=...");
 * the line also carries late counts per partition. */
static void t_gen_partition_counts(const char *err, int nparts, uint64_t *counts)
{
    char head[64];
    snprintf(head, sizeof(head), "partitions=%d counts=", nparts);
    const char *p = strstr(err, head);
    cr_assert_not_null(p, "no partition stats in: %s", err);
    p += strlen(head);
    for (int i = 0; i < nparts; i++) {
        char *end;
        counts[i] = strtoull(p, &end, 10);
        cr_assert(end != p, "bad partition stats: %s", err);
        p = end + 1;
    }
}

/* ---- truth ---- */

typedef struct t_totals_s {
    uint64_t events, valid, malformed, late, counted, sum;
    uint64_t part_msgs[T_PARTITIONS], part_late[T_PARTITIONS];
    int nparts;
} t_totals_t;

/* Read the truth file's totals, its per-partition lines, and sum its click_count column. */
static t_totals_t t_truth_totals(const char *path)
{
    t_totals_t t = {.events = UINT64_MAX};
    char *buf = t_slurp(path, NULL);
    for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        int p;
        uint64_t msgs, late;
        if (strncmp(line, "# events=", 9) == 0) {
            cr_assert_eq(sscanf(line,
                                "# events=%" SCNu64 " valid=%" SCNu64 " malformed=%" SCNu64
                                " late=%" SCNu64,
                                &t.events, &t.valid, &t.malformed, &t.late),
                         4);
        } else if (strncmp(line, "# counted=", 10) == 0) {
            cr_assert_eq(sscanf(line, "# counted=%" SCNu64, &t.counted), 1);
        } else if (strncmp(line, "# rule: ", 8) == 0) {
            cr_assert_eq(sscanf(line, "# rule: partitions=%d", &t.nparts), 1);
        } else if (sscanf(line, "# partition=%d messages=%" SCNu64 " late=%" SCNu64, &p, &msgs,
                          &late) == 3) {
            cr_assert(p >= 0 && p < T_PARTITIONS);
            t.part_msgs[p] = msgs;
            t.part_late[p] = late;
        } else if (line[0] != '#') {
            const char *tab = strrchr(line, '\t');
            cr_assert_not_null(tab, "bad truth row: %s", line);
            t.sum += strtoull(tab + 1, NULL, 10);
        }
    }
    free(buf);
    cr_assert_neq(t.events, UINT64_MAX, "no totals line in %s", path);
    return t;
}

/* ---- consuming everything back ---- */

typedef struct t_consumed_s {
    int nparts;
    bool check_hash;  /* every message must be where murmur2_random puts its key */
    uint64_t *hashes; /* FNV-1a of each message value */
    uint64_t n;
    uint64_t per_part[T_PARTITIONS];
    int64_t high[T_PARTITIONS];
    FILE *values; /* when set, every message as "partition<TAB>value\n", offset order */
} t_consumed_t;

static uint64_t t_fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static rd_kafka_t *t_consumer_new(void)
{
    char err[512], group[128];
    snprintf(group, sizeof(group), "kappa-gen-test-%ld", (long)getpid());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", t_brokers()}, {"group.id", group},
        {"enable.auto.commit", "false"},    {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        cr_assert_eq(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)),
                     RD_KAFKA_CONF_OK, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    cr_assert_not_null(rk, "consumer: %s", err);
    return rk;
}

/* A valid event's key must be its user_id. */
static void t_check_key(const rd_kafka_message_t *m)
{
    static const char prefix[] = "{\"user_id\":\"";
    const char *v = m->payload;
    if (m->len < sizeof(prefix) || memcmp(v, prefix, sizeof(prefix) - 1) != 0)
        return;
    const char *id = v + sizeof(prefix) - 1;
    const char *q = memchr(id, '"', m->len - (size_t)(id - v));
    if (q == NULL)
        return; /* a truncated one */
    cr_assert(m->key_len == (size_t)(q - id) && memcmp(m->key, id, m->key_len) == 0,
              "partition %d offset %" PRId64 ": key does not match user_id", m->partition,
              m->offset);
}

static void t_take(t_consumed_t *c, const rd_kafka_message_t *m, int64_t *next)
{
    int p = m->partition;
    cr_assert(p >= 0 && p < c->nparts);
    cr_assert_eq(m->offset, next[p], "partition %d: offset %" PRId64 " after %" PRId64, p,
                 m->offset, next[p] - 1);
    next[p] = m->offset + 1;
    c->per_part[p]++;
    cr_assert_lt(c->n, T_BIG_COUNT + 1, "more messages than were produced");
    c->hashes[c->n++] = t_fnv1a(m->payload, m->len);
    t_check_key(m);
    if (c->check_hash) {
        int32_t want = rd_kafka_msg_partitioner_murmur2_random(NULL, m->key, m->key_len, c->nparts,
                                                               NULL, NULL);
        cr_assert_eq(p, want, "offset %" PRId64 " key %.*s: in partition %d, murmur2 says %d",
                     m->offset, (int)m->key_len, (const char *)m->key, p, want);
    }
    if (c->values != NULL) {
        fprintf(c->values, "%d\t", p);
        fwrite(m->payload, 1, m->len, c->values);
        fputc('\n', c->values);
    }
}

/* Read every partition of topic from the beginning up to its high watermark. */
static void t_consume_all(const char *topic, t_consumed_t *c)
{
    rd_kafka_t *rk = t_consumer_new();
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(c->nparts);
    int64_t next[T_PARTITIONS] = {0};
    int open = 0;
    for (int p = 0; p < c->nparts; p++) {
        int64_t lo = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &c->high[p], 10000);
        cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks: %s", rd_kafka_err2str(err));
        cr_assert_eq(lo, 0);
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        open += c->high[p] > 0;
    }
    cr_assert_eq(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    time_t deadline = time(NULL) + 180;
    while (open > 0) {
        cr_assert_lt(time(NULL), deadline, "consuming %s took more than 180 s", topic);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (m == NULL)
            continue;
        cr_assert_eq(m->err, RD_KAFKA_RESP_ERR_NO_ERROR, "consume: %s", rd_kafka_message_errstr(m));
        t_take(c, m, next);
        open -= next[m->partition] == c->high[m->partition];
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static int t_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* FNV-1a of every line of an NDJSON file, sorted. */
static uint64_t *t_file_hashes(const char *path, uint64_t *n_out)
{
    size_t len;
    char *buf = t_slurp(path, &len);
    uint64_t *h = malloc((T_BIG_COUNT + 1) * sizeof(*h));
    uint64_t n = 0;
    for (char *p = buf; p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        cr_assert_not_null(nl);
        cr_assert_lt(n, T_BIG_COUNT + 1);
        h[n++] = t_fnv1a(p, (size_t)(nl - p));
        p = nl + 1;
    }
    free(buf);
    qsort(h, n, sizeof(*h), t_u64_cmp);
    *n_out = n;
    return h;
}

/* Split a buffer into its lines in place; returns the count. */
static size_t t_split_lines(char *buf, char ***out)
{
    size_t n = 0, cap = 1024;
    char **lines = malloc(cap * sizeof(*lines));
    for (char *p = buf; *p != '\0';) {
        char *nl = strchr(p, '\n');
        cr_assert_not_null(nl, "unterminated line");
        *nl = '\0';
        if (n == cap)
            lines = realloc(lines, (cap *= 2) * sizeof(*lines));
        lines[n++] = p;
        p = nl + 1;
    }
    *out = lines;
    return n;
}

TestSuite(gen_kafka, .init = t_setup, .fini = t_teardown, .timeout = 900);

/* 1,000,000 events with malformed and late ones: all arrive, once, where murmur2 says. */
Test(gen_kafka, million_events_arrive_once_each)
{
    const char *topic = t_topic_create("big", T_PARTITIONS);
    const char *model = "--count 1000000 --malformed 0.01 --late-fraction 0.001 "
                        "--out-of-order-ms 5000 --seed 42";
    char args[1024];
    snprintf(args, sizeof(args), "--brokers '%s' --topic '%s' --truth '%s' %s", t_brokers(), topic,
             t_path("big.truth"), model);
    char *err = t_gen(args, "gen.err");
    cr_log_info("%s", err);
    uint64_t predicted[T_PARTITIONS];
    t_gen_partition_counts(err, T_PARTITIONS, predicted);
    cr_assert_not_null(strstr(err, "delivered=1000000 failed=0"), "%s", err);
    cr_assert_not_null(strstr(err, "partitioner=hash"), "hash is the Kafka default: %s", err);
    free(err);

    t_consumed_t c = {.nparts = T_PARTITIONS,
                      .check_hash = true,
                      .hashes = malloc((T_BIG_COUNT + 1) * sizeof(uint64_t))};
    t_consume_all(topic, &c);
    cr_assert_eq(c.n, T_BIG_COUNT, "consumed %" PRIu64 " messages", c.n);
    t_totals_t t = t_truth_totals(t_path("big.truth"));
    uint64_t sum = 0;
    for (int p = 0; p < T_PARTITIONS; p++) {
        cr_assert_eq((int64_t)c.per_part[p], c.high[p], "partition %d", p);
        cr_assert_eq(c.per_part[p], predicted[p],
                     "partition %d: kappa-gen predicted %" PRIu64 ", broker has %" PRIu64, p,
                     predicted[p], c.per_part[p]);
        cr_assert_eq(c.per_part[p], t.part_msgs[p], "partition %d: truth file", p);
        sum += c.per_part[p];
    }
    cr_assert_eq(sum, T_BIG_COUNT);

    /* Same seed and options to a file: the multisets of values must be equal. */
    snprintf(args, sizeof(args), "--output '%s' --quiet %s", t_path("big.ndjson"), model);
    free(t_gen(args, "file.err"));
    uint64_t nf;
    uint64_t *fh = t_file_hashes(t_path("big.ndjson"), &nf);
    cr_assert_eq(nf, T_BIG_COUNT);
    qsort(c.hashes, c.n, sizeof(uint64_t), t_u64_cmp);
    for (uint64_t i = 0; i < nf; i++)
        cr_assert_eq(c.hashes[i], fh[i], "topic and file differ (loss or duplicate) at %" PRIu64,
                     i);
    free(fh);
    free(c.hashes);

    cr_assert_eq(t.events, T_BIG_COUNT);
    cr_assert_eq(t.nparts, T_PARTITIONS, "the truth takes the topic's partition count");
    cr_assert_eq(t.valid + t.malformed, T_BIG_COUNT);
    cr_assert_gt(t.malformed, 0);
    cr_assert_gt(t.late, 0);
    cr_assert_eq(t.sum, t.valid - t.late);
    cr_assert_eq(t.counted, t.sum);
}

/* ---- the rule, recomputed from the consumed messages ---- */

typedef struct t_cell_s {
    char item[32];
    int64_t ws;
    uint64_t count;
} t_cell_t;

static int t_cell_cmp(const void *pa, const void *pb)
{
    const t_cell_t *a = pa, *b = pb;
    int c = strcmp(a->item, b->item);
    return c != 0 ? c : (a->ws > b->ws) - (a->ws < b->ws);
}

/* A valid event (a JSON object with string user_id and item_id and an integer timestamp):
 * its item and timestamp; false if invalid. */
static bool t_event_of(const char *value, char item[32], int64_t *ts)
{
    json_error_t jerr;
    json_t *j = json_loads(value, 0, &jerr);
    if (j == NULL)
        return false;
    json_t *it = json_object_get(j, "item_id"), *t = json_object_get(j, "timestamp");
    bool ok = json_is_object(j) && json_is_string(json_object_get(j, "user_id")) &&
              json_is_string(it) && json_is_integer(t) && strlen(json_string_value(it)) < 32;
    if (ok) {
        snprintf(item, 32, "%s", json_string_value(it));
        *ts = (int64_t)json_integer_value(t);
    }
    json_decref(j);
    return ok;
}

typedef struct t_recount_s {
    char *rows; /* the truth file's row format, one per line */
    uint64_t late, part_late[T_PARTITIONS];
} t_recount_t;

/* Kappa's rule over the consumed "partition<TAB>value" lines (offset order per partition):
 * per partition, cwm = max timestamp of its earlier valid events - 10000 - 1 (none before
 * the first); a valid event is late iff window_end - 1 <= cwm. Non-late valid events are
 * aggregated per (item, window) into the truth file's row format. */
static t_recount_t t_recount(const char *values_path, int64_t w, size_t cap)
{
    t_recount_t r = {0};
    size_t len;
    char *buf = t_slurp(values_path, &len);
    t_cell_t *cells = calloc(cap + 1, sizeof(*cells));
    int64_t max_ts[T_PARTITIONS];
    bool seen[T_PARTITIONS] = {0};
    size_t n = 0;
    for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        cr_assert_not_null(tab);
        int p = atoi(line);
        cr_assert(p >= 0 && p < T_PARTITIONS);
        t_cell_t *cell = &cells[n];
        int64_t ts;
        if (!t_event_of(tab + 1, cell->item, &ts))
            continue;
        int64_t ws = ts - ((ts % w) + w) % w;
        bool late = seen[p] && ws + w - 1 <= max_ts[p] - 10000 - 1;
        if (!seen[p] || ts > max_ts[p])
            max_ts[p] = ts;
        seen[p] = true;
        if (late) {
            r.late++;
            r.part_late[p]++;
            continue;
        }
        cr_assert_lt(n, cap);
        cell->ws = ws;
        cell->count = 1;
        n++;
    }
    free(buf);
    qsort(cells, n, sizeof(*cells), t_cell_cmp);
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (out > 0 && t_cell_cmp(&cells[out - 1], &cells[i]) == 0)
            cells[out - 1].count++;
        else
            cells[out++] = cells[i];
    }
    r.rows = malloc(out * 96 + 1);
    size_t used = 0;
    r.rows[0] = '\0';
    for (size_t i = 0; i < out; i++)
        used += (size_t)sprintf(r.rows + used, "%s\t%" PRId64 "\t%" PRId64 "\t%" PRIu64 "\n",
                                cells[i].item, cells[i].ws, cells[i].ws + w, cells[i].count);
    free(cells);
    return r;
}

/* The truth file without its comment lines. */
static char *t_truth_rows(const char *path)
{
    size_t len;
    char *buf = t_slurp(path, &len);
    char *rows = malloc(len + 1), *o = rows;
    for (char *p = buf; *p != '\0';) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (*p != '#') {
            memcpy(o, p, l);
            o += l;
        }
        p += l;
    }
    *o = '\0';
    free(buf);
    return rows;
}

/* The truth file equals the rule recomputed from what the topic holds. */
static void t_assert_truth_is_the_topics(const char *values, const char *truth, int nparts,
                                         uint64_t count)
{
    t_recount_t mine = t_recount(values, 3600000, count);
    t_totals_t t = t_truth_totals(truth);
    cr_assert_eq(t.nparts, nparts);
    cr_assert_eq(t.late, mine.late, "truth late=%" PRIu64 ", rule over the topic %" PRIu64, t.late,
                 mine.late);
    for (int p = 0; p < nparts; p++)
        cr_assert_eq(t.part_late[p], mine.part_late[p], "partition %d late", p);
    char *theirs = t_truth_rows(truth);
    cr_assert(strcmp(mine.rows, theirs) == 0, "the rule over the topic differs from the truth");
    cr_assert_eq(t.sum, t.valid - t.late);
    free(mine.rows);
    free(theirs);
}

/* hash, with late events, malformed ones and jitter beyond the watermark bound: the truth is
 * the rule applied per partition to what the broker holds. */
Test(gen_kafka, truth_equals_rule_over_the_topic)
{
    const char *topic = t_topic_create("truth", T_PARTITIONS);
    char args[1024];
    snprintf(args, sizeof(args),
             "--brokers '%s' --topic '%s' --truth '%s' --count %d --malformed 0.02 "
             "--late-fraction 0.01 --late-lag-ms 1800000 --out-of-order-ms 20000 --skew 1.1 "
             "--seed 7 --quiet",
             t_brokers(), topic, t_path("small.truth"), T_SMALL_COUNT);
    free(t_gen(args, "gen.err"));

    t_consumed_t c = {.nparts = T_PARTITIONS,
                      .check_hash = true,
                      .hashes = malloc((T_BIG_COUNT + 1) * sizeof(uint64_t))};
    c.values = fopen(t_path("small.values"), "w");
    cr_assert_not_null(c.values);
    t_consume_all(topic, &c);
    fclose(c.values);
    free(c.hashes);
    cr_assert_eq(c.n, T_SMALL_COUNT);
    t_totals_t t = t_truth_totals(t_path("small.truth"));
    cr_assert_gt(t.late, 0);
    for (int p = 0; p < T_PARTITIONS; p++)
        cr_assert_eq(c.per_part[p], t.part_msgs[p], "partition %d", p);
    t_assert_truth_is_the_topics(t_path("small.values"), t_path("small.truth"), T_PARTITIONS,
                                 T_SMALL_COUNT);
}

/* The partition the documented rule gives event i of count (round-robin or range). */
static int t_rule_partition(bool range, size_t i, size_t count, int nparts)
{
    if (!range || i * 5 < count)
        return (int)(i % (size_t)nparts);
    return 1 + (int)(i % (size_t)(nparts - 1));
}

/* round-robin / range on a 4-partition topic: each partition holds, in offset order, exactly
 * the events the rule gives it, in the generator's order; the truth is the rule over it. */
static void t_place_and_check(bool range)
{
    enum { N = 4, COUNT = 50000 };
    const char *name = range ? "range" : "round-robin";
    const char *topic = t_topic_create(range ? "range" : "rr", N);
    const char *model = "--count 50000 --malformed 0.02 --late-fraction 0.01 "
                        "--out-of-order-ms 12000 --seed 17";
    char args[1024];
    snprintf(args, sizeof(args), "--brokers '%s' --topic '%s' --truth '%s' --partitioner %s %s",
             t_brokers(), topic, t_path("p.truth"), name, model);
    char *err = t_gen(args, "gen.err");
    cr_log_info("%s", err);
    free(err);
    snprintf(args, sizeof(args), "--output '%s' --quiet %s", t_path("p.ndjson"), model);
    free(t_gen(args, "file.err"));

    t_consumed_t c = {.nparts = N, .hashes = malloc((COUNT + 1) * sizeof(uint64_t))};
    c.values = fopen(t_path("p.values"), "w");
    cr_assert_not_null(c.values);
    t_consume_all(topic, &c);
    fclose(c.values);
    free(c.hashes);
    cr_assert_eq(c.n, COUNT);

    /* Event i (line i of the file) must be the next message of partition rule(i). */
    char *fbuf = t_slurp(t_path("p.ndjson"), NULL), *cbuf = t_slurp(t_path("p.values"), NULL);
    char **events, **msgs;
    size_t ne = t_split_lines(fbuf, &events), nm = t_split_lines(cbuf, &msgs);
    cr_assert_eq(ne, (size_t)COUNT);
    cr_assert_eq(nm, (size_t)COUNT);
    size_t *by_part[N], fill[N] = {0}, cursor[N] = {0};
    for (int p = 0; p < N; p++)
        by_part[p] = malloc(COUNT * sizeof(size_t));
    for (size_t i = 0; i < ne; i++) {
        int p = t_rule_partition(range, i, COUNT, N);
        by_part[p][fill[p]++] = i;
    }
    for (size_t k = 0; k < nm; k++) {
        int p = atoi(msgs[k]);
        const char *value = strchr(msgs[k], '\t') + 1;
        cr_assert_lt(cursor[p], fill[p], "partition %d holds more than the rule gives it", p);
        size_t i = by_part[p][cursor[p]++];
        cr_assert_str_eq(value, events[i], "%s: partition %d message %zu is not event %zu", name, p,
                         cursor[p] - 1, i);
    }
    for (int p = 0; p < N; p++) {
        cr_assert_eq(cursor[p], fill[p], "partition %d", p);
        free(by_part[p]);
    }
    if (range) {
        cr_assert_eq(fill[0], (size_t)COUNT / 5 / N, "partition 0: the first fifth only");
        cr_assert_gt(fill[1], (size_t)COUNT / 4);
    }
    free(events);
    free(msgs);
    free(fbuf);
    free(cbuf);
    t_assert_truth_is_the_topics(t_path("p.values"), t_path("p.truth"), N, COUNT);
}

Test(gen_kafka, round_robin_places_every_event)
{
    t_place_and_check(false);
}

Test(gen_kafka, range_places_every_event_and_ends_partition_zero_early)
{
    t_place_and_check(true);
}

/* --partitions must agree with the topic: the truth depends on the partition count. */
Test(gen_kafka, partitions_must_match_the_topic)
{
    const char *topic = t_topic_create("mismatch", 2);
    char args[1024];
    snprintf(args, sizeof(args), "--brokers '%s' --topic '%s' --count 10 --partitions 4",
             t_brokers(), topic);
    int rc;
    char *err = t_gen_rc(args, "gen.err", &rc);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
    cr_assert_not_null(strstr(err, "has 2 partitions but --partitions 4"), "%s", err);
    free(err);
}
