/* The graph codec (runtime/graph_codec.h): the same job gives the same JSON and hash however
 * often it is loaded; a -p override changes them; two different jobs differ; the JSON parses,
 * is canonical (sorted keys, no whitespace) and lists the nodes and the tasks of the plan.
 * The jobs come from $KAPPA_JOBS (set by meson). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_codec.h"
#include "plugin.h"

static void job_path(char *buf, size_t len, const char *name)
{
    const char *dir = getenv("KAPPA_JOBS");
    cr_assert(dir && *dir, "KAPPA_JOBS is not set (meson sets it)");
    snprintf(buf, len, "%s/%s.so", dir, name);
}

/* Loads a job at parallelism p (0 = its default) and returns its canonical JSON. */
static char *json_of(const char *name, int p)
{
    char path[1024], err[512];
    job_path(path, sizeof path, name);
    kp_plugin_handle *h = kp_plugin_load(path, p, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    char *s = kp_graph_json(kp_plugin_job(h), err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    kp_plugin_close(h);
    return s;
}

static void hash_of(const char *name, int p, char hex[KP_SHA256_HEX])
{
    char *s = json_of(name, p);
    kp_sha256_hex(s, strlen(s), hex);
    free(s);
}

Test(graph_codec, sha256_of_known_bytes)
{
    char hex[KP_SHA256_HEX];
    kp_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    kp_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(graph_codec, same_job_same_json_and_hash)
{
    char *a = json_of("hourly_clicks", 0), *b = json_of("hourly_clicks", 0);
    cr_assert_str_eq(a, b);
    char path[1024], err[512], h1[KP_SHA256_HEX], h2[KP_SHA256_HEX];
    job_path(path, sizeof path, "hourly_clicks");
    kp_plugin_handle *h = kp_plugin_load(path, 0, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    cr_assert_eq(kp_graph_hash(kp_plugin_job(h), h1, err, sizeof err), 0, "%s", err);
    kp_plugin_close(h);
    kp_sha256_hex(a, strlen(a), h2);
    cr_assert_str_eq(h1, h2, "kp_graph_hash is the sha256 of kp_graph_json");
    cr_assert_eq(strlen(h1), 64);
    free(a);
    free(b);
}

Test(graph_codec, parallelism_override_changes_the_hash)
{
    char d[KP_SHA256_HEX], p3[KP_SHA256_HEX], p3b[KP_SHA256_HEX], p4[KP_SHA256_HEX];
    hash_of("hourly_clicks", 0, d);
    hash_of("hourly_clicks", 3, p3);
    hash_of("hourly_clicks", 3, p3b);
    hash_of("hourly_clicks", 4, p4);
    cr_assert_str_eq(p3, p3b);
    cr_assert_str_neq(p3, p4);
    cr_assert_str_neq(d, p3);
}

Test(graph_codec, different_jobs_differ)
{
    const char *names[] = {"hourly_clicks", "hourly_clicks_v2", "user_sessions"};
    char h[3][KP_SHA256_HEX];
    for (int i = 0; i < 3; i++)
        hash_of(names[i], 2, h[i]);
    cr_assert_str_neq(h[0], h[1]);
    cr_assert_str_neq(h[0], h[2]);
    cr_assert_str_neq(h[1], h[2]);
}

/* Every node of the graph appears in exactly one task. */
static void assert_tasks_cover_nodes(json_t *g)
{
    json_t *nodes = json_object_get(g, "nodes"), *tasks = json_object_get(g, "tasks");
    cr_assert(json_is_array(tasks) && json_array_size(tasks) > 0, "the graph lists its tasks");
    int seen[KP_MAX_NODES] = {0};
    size_t i, j;
    json_t *t, *id;
    json_array_foreach(tasks, i, t)
    {
        json_t *ids = json_object_get(t, "nodes");
        cr_assert(json_is_array(ids) && json_array_size(ids) > 0);
        cr_assert_eq(json_integer_value(json_object_get(t, "id")),
                     json_integer_value(json_array_get(ids, 0)), "a task's id is its head node");
        cr_assert(json_is_string(json_object_get(t, "name")));
        cr_assert_geq(json_integer_value(json_object_get(t, "parallelism")), 1);
        cr_assert(json_is_integer(json_object_get(t, "upstream")));
        const char *part = json_string_value(json_object_get(t, "partitioning"));
        cr_assert(part && (!strcmp(part, "forward") || !strcmp(part, "hash") ||
                           !strcmp(part, "rebalance")),
                  "partitioning %s", part ? part : "(none)");
        json_array_foreach(ids, j, id)
        {
            json_int_t n = json_integer_value(id);
            cr_assert(n >= 0 && n < (json_int_t)json_array_size(nodes));
            seen[n]++;
        }
    }
    for (size_t n = 0; n < json_array_size(nodes); n++)
        cr_assert_eq(seen[n], 1, "node %zu is in exactly one task", n);
}

Test(graph_codec, json_parses_is_canonical_and_lists_nodes_and_tasks)
{
    char *s = json_of("hourly_clicks", 2);
    cr_assert_null(strchr(s, '\n'));
    cr_assert_eq(strncmp(s, "{\"checkpoint_interval_ms\":", 26), 0, "keys sorted: %.60s", s);
    json_error_t e;
    json_t *g = json_loads(s, 0, &e);
    cr_assert_not_null(g, "%s", e.text);
    char *again = json_dumps(g, JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert_str_eq(again, s, "parsing and writing again gives the same bytes");
    cr_assert_str_eq(json_string_value(json_object_get(g, "name")), "hourly_clicks");
    cr_assert_eq(json_integer_value(json_object_get(g, "parallelism")), 2);
    json_t *nodes = json_object_get(g, "nodes");
    cr_assert(json_array_size(nodes) >= 3);
    json_t *src = json_array_get(nodes, 0);
    cr_assert_str_eq(json_string_value(json_object_get(src, "kind")), "source");
    cr_assert_eq(json_integer_value(json_object_get(src, "input")), -1);
    cr_assert(json_is_string(json_object_get(src, "endpoint")));
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        cr_assert_eq(json_integer_value(json_object_get(n, "id")), (json_int_t)i);
        cr_assert(json_is_string(json_object_get(n, "uid")));
        cr_assert(json_is_boolean(json_object_get(n, "keyed")));
    }
    assert_tasks_cover_nodes(g);
    free(again);
    json_decref(g);
    free(s);
}
