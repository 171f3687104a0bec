/*
 * The file source's partitions (connectors/file.c): `file:PATH?partitions=N` puts line k
 * (0-based, empty and malformed lines counted) in partition k mod N; subtask i of p reads the
 * partitions j with j mod p == i. Checked against a brute-force reference on generated files
 * (fixed seeds that always run, plus one fresh seed that is printed): every non-empty line is
 * read exactly once over all subtasks, with the right partition and byte offset, for
 * N = 1..7 and p = 1..5 — including subtasks that own no partition (they end at once) and
 * files larger than the reader's 4 MiB buffer. Also: partitions(), caught_up() and ended()
 * (0 before EOF, 1 after, 0 for partitions not owned), the option's validation, and stdin.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../runtime/connector.h"
#include "connectors.h"

static char t_path[256];

static void t_setup(void)
{
    kp_connectors_register_builtin();
    snprintf(t_path, sizeof t_path, "/tmp/kappa-file-source-%d.ndjson", (int)getpid());
}

static void t_teardown(void)
{
    unlink(t_path);
}

TestSuite(file_source, .init = t_setup, .fini = t_teardown, .timeout = 120);

static uint64_t t_rng;

static uint64_t t_next(void)
{
    t_rng ^= t_rng << 13;
    t_rng ^= t_rng >> 7;
    t_rng ^= t_rng << 17;
    return t_rng;
}

/* A line of the reference: where it starts, its text, its partition. */
typedef struct t_line {
    long long off;
    char text[64];
    int empty;
} t_line;

/* Writes `n` lines (some empty, some with \r\n, the last maybe without a newline) and fills
 * the reference. */
static void t_write(t_line *ref, int n, uint64_t seed)
{
    t_rng = seed * 0x9E3779B97F4A7C15ull + 1;
    FILE *f = fopen(t_path, "w");
    cr_assert_not_null(f);
    long long off = 0;
    for (int k = 0; k < n; k++) {
        int kind = (int)(t_next() % 10);
        ref[k].off = off;
        ref[k].empty = kind == 0;
        if (ref[k].empty)
            ref[k].text[0] = 0;
        else if (kind == 1)
            snprintf(ref[k].text, sizeof ref[k].text, "not json %d", k);
        else
            snprintf(ref[k].text, sizeof ref[k].text, "{\"k\":%d,\"pad\":\"%.*s\"}", k,
                     (int)(t_next() % 20), "xxxxxxxxxxxxxxxxxxxx");
        const char *eol = k == n - 1 && (seed & 1) ? "" : kind == 2 ? "\r\n" : "\n";
        if (k == n - 1 && !*eol && ref[k].empty)
            eol = "\n";
        off += fprintf(f, "%s%s", ref[k].text, eol);
    }
    fclose(f);
}

static kp_source_reader *t_open(const char *query, int subtask, int p, char *err, size_t errlen)
{
    static char uri[512];
    snprintf(uri, sizeof uri, "file:%s%s", t_path, query);
    kp_endpoint ep = {.name = "in", .uri = uri, .subtask = subtask, .parallelism = p};
    return kp_connector_find(uri)->open_source(&ep, err, errlen);
}

/* Reads subtask `i` of `p` over N partitions to EOF, checking each record against ref and
 * marking it seen. Returns the number of records. */
static int t_read_subtask(const t_line *ref, int n, int *seen, int N, int i, int p)
{
    char q[64], err[512] = "";
    snprintf(q, sizeof q, "?partitions=%d", N);
    kp_source_reader *r = t_open(N == 1 ? "" : q, i, p, err, sizeof err);
    cr_assert_not_null(r, "open: %s", err);
    int32_t parts[64];
    int np = r->partitions(r, parts, 64);
    int owned = 0;
    for (int j = 0; j < N; j++)
        owned += j % p == i;
    cr_assert_eq(np, owned, "subtask %d/%d of %d partitions owns %d, reported %d", i, p, N, owned,
                 np);
    for (int x = 0; x < np; x++) {
        cr_assert_eq(parts[x] % p, i);
        cr_assert_eq(r->ended(r, parts[x]), 0, "partition %d ended before EOF", parts[x]);
    }
    kp_raw raws[100];
    int got = 0, rc, nrec;
    /* line index of a record: search forward from the last one (records come in file order) */
    int k = 0;
    while ((rc = r->poll(r, raws, 100, &nrec, 10, err, sizeof err)) == KP_POLL_RECORDS) {
        for (int x = 0; x < nrec; x++) {
            while (k < n && ref[k].off != raws[x].offset)
                k++;
            cr_assert_lt(k, n, "record at offset %lld is no line start", (long long)raws[x].offset);
            cr_assert_eq(raws[x].partition, k % N, "line %d: partition %d, want %d", k,
                         raws[x].partition, k % N);
            cr_assert_eq(raws[x].partition % p, i);
            cr_assert_eq(ref[k].empty, 0, "empty line %d handed out", k);
            cr_assert_eq(raws[x].value.len, strlen(ref[k].text), "line %d", k);
            cr_assert_eq(memcmp(raws[x].value.ptr, ref[k].text, raws[x].value.len), 0);
            seen[k]++;
            got++;
        }
    }
    cr_assert_eq(rc, KP_POLL_EOF, "poll: %s", err);
    for (int x = 0; x < np; x++) {
        cr_assert_eq(r->ended(r, parts[x]), 1, "partition %d not ended at EOF", parts[x]);
        cr_assert_eq(r->caught_up(r, parts[x]), 1);
    }
    r->close(r);
    return got;
}

static void t_check_seed(uint64_t seed, int n)
{
    t_line *ref = calloc((size_t)n, sizeof *ref);
    int *seen = calloc((size_t)n, sizeof *seen);
    t_write(ref, n, seed);
    for (int N = 1; N <= 7; N++)
        for (int p = 1; p <= 5; p++) {
            memset(seen, 0, (size_t)n * sizeof *seen);
            for (int i = 0; i < p; i++)
                t_read_subtask(ref, n, seen, N, i, p);
            for (int k = 0; k < n; k++)
                cr_assert_eq(seen[k], ref[k].empty ? 0 : 1,
                             "seed %llu N=%d p=%d: line %d read %d times", (unsigned long long)seed,
                             N, p, k, seen[k]);
        }
    free(ref);
    free(seen);
}

Test(file_source, lines_go_to_partition_k_mod_n_and_subtasks_cover_each_once)
{
    static const uint64_t seeds[] = {1, 2, 3, 42, 1000003};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        t_check_seed(seeds[i], 2000);
    uint64_t fresh = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "file_source: fresh seed %llu\n", (unsigned long long)fresh);
    t_check_seed(fresh, 2000);
}

Test(file_source, files_larger_than_the_read_buffer)
{
    /* ~6 MB: lines straddle the 4 MiB buffer's refill */
    int n = 200000;
    t_line *ref = calloc((size_t)n, sizeof *ref);
    int *seen = calloc((size_t)n, sizeof *seen);
    t_write(ref, n, 7);
    for (int i = 0; i < 2; i++)
        t_read_subtask(ref, n, seen, 3, i, 2);
    for (int k = 0; k < n; k++)
        cr_assert_eq(seen[k], ref[k].empty ? 0 : 1, "line %d read %d times", k, seen[k]);
    free(ref);
    free(seen);
}

Test(file_source, empty_lines_count_and_partitions_are_reported)
{
    FILE *f = fopen(t_path, "w");
    fputs("a\n\nb\nc", f); /* lines 0..3: a, (empty), b, c */
    fclose(f);
    char err[512] = "";
    kp_source_reader *r = t_open("?partitions=2", 0, 1, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    int32_t parts[4];
    cr_assert_eq(r->partitions(r, parts, 4), 2);
    cr_assert(parts[0] == 0 && parts[1] == 1);
    cr_assert_eq(r->ended(r, 0), 0, "ended before anything was read");
    cr_assert_eq(r->caught_up(r, 1), 0);
    cr_assert_eq(r->ended(r, 2), 0, "partition 2 does not exist");
    kp_raw raws[8];
    int n, got = 0;
    /* the last line has no newline: it comes once EOF was seen, maybe in a later poll */
    while (got < 3 && r->poll(r, raws + got, 8 - got, &n, 10, err, sizeof err) == KP_POLL_RECORDS)
        got += n;
    cr_assert_eq(got, 3);
    cr_assert(raws[0].partition == 0 && raws[0].offset == 0 && raws[0].value.len == 1);
    cr_assert(raws[1].partition == 0 && raws[1].offset == 3 && raws[1].value.ptr[0] == 'b');
    cr_assert(raws[2].partition == 1 && raws[2].offset == 5 && raws[2].value.ptr[0] == 'c');
    cr_assert_eq(r->poll(r, raws, 8, &n, 10, err, sizeof err), KP_POLL_EOF);
    cr_assert_eq(r->ended(r, 0), 1);
    cr_assert_eq(r->ended(r, 1), 1);
    cr_assert_eq(r->caught_up(r, 1), 1);
    r->close(r);
}

Test(file_source, subtask_without_partitions_ends_at_once)
{
    FILE *f = fopen(t_path, "w");
    fputs("1\n2\n3\n", f);
    fclose(f);
    char err[512] = "";
    kp_source_reader *r = t_open("?partitions=3", 3, 4, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    int32_t parts[4];
    cr_assert_eq(r->partitions(r, parts, 4), 0);
    kp_raw raws[8];
    int n = -1;
    cr_assert_eq(r->poll(r, raws, 8, &n, 10, err, sizeof err), KP_POLL_EOF);
    cr_assert_eq(n, 0);
    r->close(r);
}

Test(file_source, partitions_option_is_validated)
{
    FILE *f = fopen(t_path, "w");
    fputs("1\n", f);
    fclose(f);
    static const char *bad[] = {"?partitions=0", "?partitions=65536", "?partitions=x",
                                "?partitions=",  "?partitions=-2",    "?partitions=3z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[512] = "";
        kp_source_reader *r = t_open(bad[i], 0, 1, err, sizeof err);
        cr_assert_null(r, "%s accepted", bad[i]);
        cr_assert(strstr(err, "partitions") && strstr(err, "1 to 65535"), "%s: '%s'", bad[i], err);
    }
    char err[512] = "";
    kp_source_reader *r = t_open("?partitions=65535", 0, 1, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    r->close(r);
    kp_endpoint ep = {.name = "in", .uri = "stdin:?partitions=2", .parallelism = 1};
    cr_assert_null(kp_connector_find(ep.uri)->open_source(&ep, err, sizeof err));
    cr_assert(strstr(err, "stdin"), "%s", err);
}

Test(file_source, stdin_is_read_by_subtask_zero_only)
{
    kp_endpoint ep = {.name = "in", .uri = "stdin:", .subtask = 1, .parallelism = 2};
    char err[512] = "";
    kp_source_reader *r = kp_connector_find(ep.uri)->open_source(&ep, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    int32_t parts[2];
    cr_assert_eq(r->partitions(r, parts, 2), 0);
    kp_raw raws[2];
    int n;
    cr_assert_eq(r->poll(r, raws, 2, &n, 10, err, sizeof err), KP_POLL_EOF);
    r->close(r);
}
