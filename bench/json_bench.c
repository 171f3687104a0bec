/* JSON event decoding speed: kappa's scanner next to jansson (and cJSON when built with it).
 *
 * Every source decodes one JSON object per event, so this is the number that bounds a source's
 * throughput per core. The benchmark pre-generates events shaped like the seed event
 *   {"user_id":"user_7","item_id":"item_42","timestamp":1700000000000}
 * in memory, then times "parse + extract item_id (string) + timestamp (int)" per event for each
 * library and prints ns/event and MB/s (best of several runs). It prints figures and asserts
 * nothing, except that every library saw the same data (checksums).
 *
 * Usage: json-bench [events]   (default 1000000) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#ifdef KP_HAVE_CJSON
#include <cjson/cJSON.h>
#endif

#include "../runtime/json.h"

typedef struct corpus {
    char *buf;
    uint32_t *off; /* event i is buf[off[i] .. off[i + 1]) */
    size_t n;
} corpus;

typedef struct result {
    uint64_t sum; /* checksum of what was extracted */
    size_t failed;
} result;

typedef result (*bench_fn)(const corpus *c);

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    /* xorshift64*: fixed seed, so every run measures the same bytes. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int corpus_make(corpus *c, size_t n)
{
    size_t cap = n * 80 + 1;
    c->buf = malloc(cap);
    c->off = malloc((n + 1) * sizeof *c->off);
    c->n = n;
    if (!c->buf || !c->off)
        return -1;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        c->off[i] = (uint32_t)pos;
        int w =
            snprintf(c->buf + pos, cap - pos,
                     "{\"user_id\":\"user_%u\",\"item_id\":\"item_%u\",\"timestamp\":%" PRIu64 "}",
                     (unsigned)(rng() % 100000), (unsigned)(rng() % 10000),
                     (uint64_t)1700000000000ull + i * 7 + rng() % 1000);
        pos += (size_t)w;
    }
    c->off[n] = (uint32_t)pos;
    return 0;
}

static result run_kappa(const corpus *c)
{
    result r = {0, 0};
    kp_json_doc doc;
    for (size_t i = 0; i < c->n; i++) {
        const char *err, *item;
        size_t item_len;
        int64_t ts;
        if (kp_json_scan(&doc, c->buf + c->off[i], c->off[i + 1] - c->off[i], &err) != 0 ||
            kp_json_get_str(&doc, "item_id", 7, &item, &item_len) != 0 ||
            kp_json_get_int(&doc, "timestamp", 9, &ts) != 0) {
            r.failed++;
            continue;
        }
        r.sum += item_len + (unsigned char)item[item_len - 1] + (uint64_t)ts;
    }
    return r;
}

static result run_kappa_scan_only(const corpus *c)
{
    result r = {0, 0};
    kp_json_doc doc;
    for (size_t i = 0; i < c->n; i++) {
        const char *err;
        if (kp_json_scan(&doc, c->buf + c->off[i], c->off[i + 1] - c->off[i], &err) != 0)
            r.failed++;
        else
            r.sum += doc.f[2].val_len;
    }
    return r;
}

static result run_jansson(const corpus *c)
{
    result r = {0, 0};
    for (size_t i = 0; i < c->n; i++) {
        json_error_t jerr;
        json_t *root = json_loadb(c->buf + c->off[i], c->off[i + 1] - c->off[i], 0, &jerr);
        json_t *item = root ? json_object_get(root, "item_id") : NULL;
        json_t *ts = root ? json_object_get(root, "timestamp") : NULL;
        if (!json_is_string(item) || !json_is_integer(ts)) {
            r.failed++;
        } else {
            size_t len = json_string_length(item);
            r.sum += len + (unsigned char)json_string_value(item)[len - 1] +
                     (uint64_t)json_integer_value(ts);
        }
        json_decref(root);
    }
    return r;
}

#ifdef KP_HAVE_CJSON
static result run_cjson(const corpus *c)
{
    result r = {0, 0};
    for (size_t i = 0; i < c->n; i++) {
        cJSON *root = cJSON_ParseWithLength(c->buf + c->off[i], c->off[i + 1] - c->off[i]);
        cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "item_id");
        cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "timestamp");
        if (!cJSON_IsString(item) || !cJSON_IsNumber(ts)) {
            r.failed++;
        } else {
            /* cJSON keeps numbers as double (exact below 2^53) and NUL-terminated strings. */
            size_t len = strlen(item->valuestring);
            r.sum += len + (unsigned char)item->valuestring[len - 1] + (uint64_t)ts->valuedouble;
        }
        cJSON_Delete(root);
    }
    return r;
}
#endif

static result bench(const char *name, bench_fn fn, const corpus *c, int runs)
{
    double best = 1e300;
    result r = {0, 0};
    for (int i = 0; i < runs; i++) {
        double t0 = now_ns();
        r = fn(c);
        double dt = now_ns() - t0;
        if (dt < best)
            best = dt;
    }
    double bytes = (double)c->off[c->n];
    printf("%-34s %8.1f ns/event %9.1f MB/s   (checksum %016" PRIx64 ", %zu failed)\n", name,
           best / (double)c->n, bytes / best * 1e3, r.sum, r.failed);
    return r;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    if (n == 0) {
        fprintf(stderr, "usage: %s [events]  (events > 0)\n", argv[0]);
        return 2;
    }
    corpus c;
    if (corpus_make(&c, n) != 0) {
        fprintf(stderr, "json-bench: out of memory for %zu events; pass a smaller count\n", n);
        return 1;
    }
    printf("%zu events, %.1f bytes/event on average, e.g. %.*s\n", n, (double)c.off[n] / (double)n,
           (int)(c.off[1] - c.off[0]), c.buf);
    printf("each: parse + item_id (string) + timestamp (int64); best of several runs\n");

    result k = bench("kappa kp_json_scan + 2 lookups", run_kappa, &c, 7);
    bench("kappa kp_json_scan only", run_kappa_scan_only, &c, 7);
    result j = bench("jansson json_loadb + object_get", run_jansson, &c, 3);
    int mismatch = k.sum != j.sum;
#ifdef KP_HAVE_CJSON
    result cj = bench("cJSON ParseWithLength + GetItem", run_cjson, &c, 3);
    mismatch |= k.sum != cj.sum;
#else
    printf("cJSON: not built (install libcjson-dev and reconfigure)\n");
#endif
    if (mismatch)
        printf("WARNING: checksums differ: the libraries extracted different values\n");
    free(c.buf);
    free(c.off);
    return mismatch;
}
