/* Migrating a concrete index behind an alias loses no write (connectors/es_alias.c
 * kp_es_migrate, docs/bluegreen.md), against a REAL node (KAPPA_ES_URL from with-services).
 *
 * A job written before kappa managed aliases writes the concrete index NAME by its name; the
 * jobmanager migrates NAME once to NAME-v1 behind an alias NAME while that job keeps writing.
 * Here an es: sink writer on its own thread plays that job — documents one after another, small
 * bulks sent every 10 ms — while the main thread migrates. Asserted: the writer's flush
 * succeeds (the writes the write block refused were retried, not dropped), NAME ends an alias
 * of NAME-v1 holding every document written before and during the migration, and the writer
 * did meet the block (items retried > 0: the test saw the race it is about). */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../connectors/connectors.h"
#include "../../connectors/es_alias.h"
#include "../../runtime/connector.h"

extern const kp_connector kp_es_connector;

static const char *es_url(void)
{
    const char *u = getenv("KAPPA_ES_URL");
    cr_assert(u && *u, "KAPPA_ES_URL is not set: run through tests/integration/with-services");
    return u;
}

static kp_sink_writer *open_sink(const char *uri)
{
    static char conf_url[600];
    static const char *conf[2];
    snprintf(conf_url, sizeof conf_url, "es.url=%s", es_url());
    conf[0] = conf_url;
    conf[1] = NULL;
    kp_endpoint ep = {.name = "out",
                      .uri = uri,
                      .subtask = 0,
                      .parallelism = 1,
                      .conf = conf,
                      .epoch = time(NULL)};
    char err[1024] = "";
    kp_sink_writer *w = kp_es_connector.open_sink(&ep, err, sizeof err);
    cr_assert_not_null(w, "opening %s: %s", uri, err);
    return w;
}

static int write_doc(kp_sink_writer *w, int i, char *err, size_t errlen)
{
    char id[64], doc[160];
    int il = snprintf(id, sizeof id, "item_%d|1700000000000", i);
    int dl = snprintf(doc, sizeof doc, "{\"item_id\":\"item_%d\",\"click_count\":%d}", i, i);
    return w->write(w, (kp_bytes){id, (size_t)il}, (kp_bytes){doc, (size_t)dl}, 1700003599999, err,
                    errlen);
}

typedef struct writer {
    kp_sink_writer *w;
    atomic_int written; /* documents item_0 .. item_written-1 */
    atomic_int stop;
    int rc;
    char err[1024];
    long long items_retried;
} writer;

/* The job that keeps writing NAME: one document every ~0.2 ms until told to stop, then a flush
 * (everything acknowledged, or the error). */
static void *write_on(void *arg)
{
    writer *t = arg;
    int i = atomic_load(&t->written);
    while (!atomic_load(&t->stop) && t->rc == 0) {
        t->rc = write_doc(t->w, i, t->err, sizeof t->err);
        atomic_store(&t->written, ++i);
        usleep(200);
    }
    if (t->rc == 0)
        t->rc = t->w->flush(t->w, t->err, sizeof t->err);
    char s[1024];
    t->w->stats(t->w, s, sizeof s);
    json_t *j = json_loads(s, 0, NULL);
    t->items_retried = json_integer_value(json_object_get(j, "items_retried"));
    json_decref(j);
    return NULL;
}

static long long count(const kp_es_admin *a, const char *name)
{
    char cmd[2400], out[64] = "";
    snprintf(cmd, sizeof cmd,
             "curl -s -XPOST '%s/%s/_refresh' >/dev/null && curl -s '%s/%s/_count' | python3 -c "
             "'import json,sys; print(json.load(sys.stdin)[\"count\"])'",
             a->url, name, a->url, name);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    if (!fgets(out, sizeof out, p))
        out[0] = 0;
    pclose(p);
    return atoll(out);
}

Test(es_migrate, writes_during_the_migration_are_not_lost, .timeout = 300)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char name[128], to[160], uri[256], err[1024];
    snprintf(name, sizeof name, "kappa-migrate-%ld-%d", (long)time(NULL), (int)getpid());
    snprintf(to, sizeof to, "%s-v1", name);
    kp_es_admin a;
    kp_es_admin_init(&a, es_url());

    /* the concrete index, as a job or `kappa run --local` left it: 20,000 documents */
    snprintf(uri, sizeof uri, "es:%s?max_actions=50&flush_ms=10&backoff_ms=50", name);
    writer t = {.w = open_sink(uri)};
    for (int i = 0; i < 20000; i++)
        cr_assert_eq(write_doc(t.w, i, err, sizeof err), 0, "%s", err);
    cr_assert_eq(t.w->flush(t.w, err, sizeof err), 0, "%s", err);
    atomic_store(&t.written, 20000);
    kp_es_kind kind;
    char target[256];
    cr_assert_eq(kp_es_resolve(&a, name, &kind, target, sizeof target, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(kind, KP_ES_INDEX);

    /* it keeps writing while the index is migrated behind an alias */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, write_on, &t), 0);
    while (atomic_load(&t.written) < 20500)
        usleep(10 * 1000);
    int rc =
        kp_es_migrate(&a, name, to, "{\"settings\":{\"number_of_shards\":1}}", err, sizeof err);
    int during = atomic_load(&t.written);
    while (atomic_load(&t.written) < during + 500 && t.rc == 0)
        usleep(10 * 1000);
    atomic_store(&t.stop, 1);
    pthread_join(th, NULL);
    cr_assert_eq(rc, 0, "migration: %s", err);
    cr_assert_eq(t.rc, 0, "the writer lost writes: %s", t.err);

    cr_assert_eq(kp_es_resolve(&a, name, &kind, target, sizeof target, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(kind, KP_ES_ALIAS, "%s is not an alias after the migration", name);
    cr_assert_str_eq(target, to);
    int written = atomic_load(&t.written);
    long long got = count(&a, name);
    fprintf(stderr,
            "es_migrate: %d documents written (%d before the migration ended), %lld in %s, "
            "%lld items retried (write block)\n",
            written, during, got, to, t.items_retried);
    cr_assert_eq(got, written, "%lld documents behind the alias, %d written", got, written);
    cr_assert_gt(t.items_retried, 0, "the writer never met the write block: no race tested");
    t.w->close(t.w);
    kp_es_index_delete(&a, to, err, sizeof err);
    curl_global_cleanup();
}
