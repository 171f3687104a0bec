/* The blue/green side of the CLI (docs/bluegreen.md): `kappa rollback NAME|ID`
 * (PATCH /jobs/:id?mode=rollback: the alias goes back to v1's kept index, v1 runs again, v2 is
 * cancelled), the part of `kappa status` that shows a procedure (both versions, v2's lag and
 * watermark against v1's, the estimate to the cut-over, the transitions with their times), and
 * submit's two flags --in-place and --keep-old DURATION, which go into the manifest's
 * "bluegreen" object. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rest.h"

int kp_cli_rollback(int argc, char **argv)
{
    kp_rest r = {.verb = "kappa rollback"};
    int rc = kp_rest_simple_args(&r, argc, argv, 1,
                                 "kappa rollback NAME|ID [options]  (a blue/green reprocessing "
                                 "back to the old version, while its index is kept)");
    if (rc >= 0)
        return rc;
    char esc[1024], path[1100];
    long status;
    json_t *body = NULL;
    kp_rest_escape(argv[optind], esc, sizeof esc);
    snprintf(path, sizeof path, "/jobs/%s?mode=rollback", esc);
    rc = kp_rest_call(&r, "PATCH", path, NULL, &status, &body);
    if (rc == KP_EXIT_OK) {
        if (r.json) {
            json_t *o = json_pack("{s:s,s:b}", "job", argv[optind], "rollback_requested", 1);
            json_dumpf(o, stdout, JSON_SORT_KEYS);
            putchar('\n');
            json_decref(o);
        } else {
            printf("rolling back %s: the alias returns to the old version's index, which runs "
                   "again (kappa status %s)\n",
                   argv[optind], argv[optind]);
        }
    }
    json_decref(body);
    return rc;
}

static void version_row(const char *label, json_t *v)
{
    char id[64], name[256], state[32], in[32], wm[32];
    if (!json_is_object(v))
        return;
    printf("  %-3s %-32s  %-20s  %-10s  %12s  %16s\n", label, kp_rest_str(v, "id", id, sizeof id),
           kp_rest_str(v, "name", name, sizeof name), kp_rest_str(v, "state", state, sizeof state),
           kp_rest_str(v, "records_in", in, sizeof in),
           kp_rest_str(v, "watermark_ms", wm, sizeof wm));
}

void kp_cli_print_bluegreen(json_t *job)
{
    json_t *bg = json_object_get(job, "bluegreen"), *s, *t;
    char buf[1024], a[256], b[256], c[256];
    size_t i;
    if (!json_is_object(bg))
        return;
    const char *mode = json_string_value(json_object_get(bg, "mode"));
    json_array_foreach(json_object_get(bg, "sinks"), i, s)
    {
        kp_rest_str(s, "alias", a, sizeof a);
        kp_rest_str(s, "new_index", b, sizeof b);
        kp_rest_str(s, "old_index", c, sizeof c);
        printf("index: es:%s -> %s%s%s%s\n", a, b, *c ? " (v1: " : "", c, *c ? ")" : "");
    }
    if (!mode || strcmp(mode, "bluegreen"))
        return;
    printf("blue/green (this job is %s): %s\n", kp_rest_str(bg, "role", a, sizeof a),
           kp_rest_str(bg, "phase", b, sizeof b));
    printf("  %-3s %-32s  %-20s  %-10s  %12s  %16s\n", "", "JOB", "NAME", "STATE", "RECORDS IN",
           "WATERMARK MS");
    version_row("v1", json_object_get(bg, "v1"));
    version_row("v2", json_object_get(bg, "v2"));
    json_t *v1 = json_object_get(bg, "v1"), *v2 = json_object_get(bg, "v2");
    json_t *i1 = json_object_get(v1, "records_in"), *i2 = json_object_get(v2, "records_in");
    json_t *w1 = json_object_get(v1, "watermark_ms"), *w2 = json_object_get(v2, "watermark_ms");
    if (json_is_integer(i1) && json_is_integer(i2) && json_is_integer(w1) && json_is_integer(w2)) {
        json_int_t lag = json_integer_value(i1) - json_integer_value(i2);
        printf("  v2 behind v1: %lld records, watermark %lld ms\n", (long long)(lag > 0 ? lag : 0),
               (long long)(json_integer_value(w1) - json_integer_value(w2)));
    }
    json_t *kl = json_object_get(v2, "kafka_lag");
    if (json_is_integer(kl))
        printf("  v2's Kafka lag: %lld records\n", (long long)json_integer_value(kl));
    json_t *eta = json_object_get(bg, "eta_ms");
    if (json_is_integer(eta))
        printf("  estimated time to cut-over: %lld s\n", (long long)json_integer_value(eta) / 1000);
    json_t *st = json_object_get(bg, "storage");
    if (json_integer_value(json_object_get(st, "new_bytes")) > 0)
        printf("  at the switch: old index %lld docs %lld bytes, new %lld docs %lld bytes\n",
               (long long)json_integer_value(json_object_get(st, "old_docs")),
               (long long)json_integer_value(json_object_get(st, "old_bytes")),
               (long long)json_integer_value(json_object_get(st, "new_docs")),
               (long long)json_integer_value(json_object_get(st, "new_bytes")));
    if (*kp_rest_str(bg, "v2_checkpoint_request", buf, sizeof buf) && strcmp(buf, "-"))
        printf("  waiting for v2's checkpoint before the switch (request %s)\n", buf);
    if (*kp_rest_str(bg, "v1_savepoint_request", buf, sizeof buf) && strcmp(buf, "-"))
        printf("  v1 stopping with a savepoint (request %s)\n", buf);
    if (*kp_rest_str(bg, "v1_savepoint", buf, sizeof buf) && strcmp(buf, "-"))
        printf("  v1's savepoint: %s\n", buf);
    if (*kp_rest_str(bg, "error", buf, sizeof buf) && strcmp(buf, "-"))
        printf("  last error (retried): %s\n", buf);
    printf("  transitions:\n");
    json_array_foreach(json_object_get(bg, "transitions"), i, t)
    {
        kp_rest_time(t, "time", a, sizeof a);
        printf("    %s  %s -> %s: %s\n", a, kp_rest_str(t, "from", b, sizeof b),
               kp_rest_str(t, "to", c, sizeof c), kp_rest_str(t, "message", buf, sizeof buf));
    }
}

int kp_cli_bluegreen_flag(json_t **flags, int in_place, const char *keep_old)
{
    json_t *o = json_object();
    if (in_place)
        json_object_set_new(o, "in_place", json_true());
    if (keep_old) {
        char *end;
        long long v = strtoll(keep_old, &end, 10);
        long long unit = !*end || !strcmp(end, "ms") ? 1
                         : !strcmp(end, "s")         ? 1000
                         : !strcmp(end, "m")         ? 60000
                         : !strcmp(end, "h")         ? 3600000
                         : !strcmp(end, "d")         ? 86400000
                                                     : 0;
        if (end == keep_old || v < 0 || !unit || v > (1LL << 50) / unit) {
            fprintf(stderr,
                    "kappa submit: --keep-old takes a duration: N (ms), Ns, Nm, Nh or Nd, not "
                    "'%s'\n",
                    keep_old);
            json_decref(o);
            return -1;
        }
        json_object_set_new(o, "keep_old_ms", json_integer(v * unit));
    }
    *flags = o;
    return 0;
}
