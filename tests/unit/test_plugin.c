/* Loading job plugins: every way a job.so can be wrong gives a message that says what is
 * wrong (and no crash), and the real jobs in jobs/ load and define valid graphs.
 *
 * The broken plugins are built by tests/unit/plugins/meson.build. Their directory comes from
 * $KAPPA_TEST_PLUGINS, else <this binary's dir>/plugins; the real jobs from $KAPPA_JOBS, else
 * <this binary's dir>/../../jobs. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph.h"
#include "plugin.h"

static char plugins_dir[1024], jobs_dir[1024], tmpdir[256];

static void find_dirs(void)
{
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    exe[n] = '\0';
    char *dir = dirname(exe);
    const char *p = getenv("KAPPA_TEST_PLUGINS"), *j = getenv("KAPPA_JOBS");
    if (p && *p)
        snprintf(plugins_dir, sizeof plugins_dir, "%s", p);
    else
        snprintf(plugins_dir, sizeof plugins_dir, "%s/plugins", dir);
    if (j && *j)
        snprintf(jobs_dir, sizeof jobs_dir, "%s", j);
    else
        snprintf(jobs_dir, sizeof jobs_dir, "%s/../../jobs", dir);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kappa-test-plugin-XXXXXX");
    cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) != 0)
        fprintf(stderr, "could not remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* Removes the temporary directory without a shell. */
static void cleanup(void)
{
    if (tmpdir[0])
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(plugin, .init = find_dirs, .fini = cleanup);

static const char *plugin_path(const char *name)
{
    static char path[2048];
    snprintf(path, sizeof path, "%s/%s.so", plugins_dir, name);
    struct stat st;
    cr_assert(stat(path, &st) == 0, "test plugin %s is missing (%s): build with ninja", path,
              strerror(errno));
    return path;
}

static const char *write_tmp(const char *name, const void *data, size_t len)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

/* Loads `path`, expects failure, and checks that the message contains every given
 * substring. */
static void expect_error(const char *path, const char *const *want)
{
    char err[1024] = "";
    kp_plugin_handle *h = kp_plugin_load(path, 0, err, sizeof err);
    if (h)
        kp_plugin_close(h);
    cr_assert_null(h, "loading %s should have failed", path);
    cr_assert(err[0], "loading %s failed without a message", path);
    for (; *want; want++)
        cr_assert(strstr(err, *want), "loading %s: message '%s' lacks '%s'", path, err, *want);
}

#define EXPECT_ERROR(path, ...) expect_error((path), (const char *const[]){__VA_ARGS__, NULL})

/* ---- files that are not job plugins ------------------------------------------------------- */

Test(plugin, missing_file)
{
    char path[600];
    snprintf(path, sizeof path, "%s/does-not-exist.so", tmpdir);
    EXPECT_ERROR(path, "cannot open job plugin", "does-not-exist.so", "No such file");
}

Test(plugin, garbage)
{
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 2654435761u >> 13);
    const char *path = write_tmp("garbage.so", junk, sizeof junk);
    EXPECT_ERROR(path, "is not a job plugin", "not an ELF file", "-shared");
}

Test(plugin, text_file)
{
    const char *src = "KP_JOB(oops) { }\n";
    const char *path = write_tmp("job.c", src, strlen(src));
    EXPECT_ERROR(path, "not an ELF file");
}

Test(plugin, empty_file)
{
    const char *path = write_tmp("empty.so", "", 0);
    EXPECT_ERROR(path, "not an ELF file");
}

Test(plugin, short_elf_magic)
{
    /* the magic, then nothing: shorter than an ELF header */
    const char *path = write_tmp("short.so", ELFMAG "\2\1\1", 7);
    EXPECT_ERROR(path, "not an ELF file");
}

Test(plugin, directory)
{
    char err[1024] = "";
    kp_plugin_handle *h = kp_plugin_load(tmpdir, 0, err, sizeof err);
    cr_assert_null(h);
    cr_assert(err[0] && strstr(err, tmpdir), "message '%s' should name the path", err);
}

/* The ELF header of a real shared object with e_type patched. */
static size_t real_header(unsigned char *buf, size_t cap)
{
    FILE *f = fopen(plugin_path("ok"), "rb");
    cr_assert(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    cr_assert(n >= sizeof(Elf64_Ehdr));
    return n;
}

Test(plugin, elf_not_shared_object)
{
    unsigned char buf[sizeof(Elf64_Ehdr) + 256];
    size_t n = real_header(buf, sizeof buf);
    ((Elf64_Ehdr *)buf)->e_type = ET_REL; /* an object file, not linked with -shared */
    const char *path = write_tmp("object.o", buf, n);
    EXPECT_ERROR(path, "ELF file but not a shared object", "-shared");
}

Test(plugin, truncated_shared_object)
{
    /* a valid ELF header of a shared object, then the file ends: dlopen must refuse it */
    unsigned char buf[sizeof(Elf64_Ehdr) + 256];
    size_t n = real_header(buf, sizeof buf);
    const char *path = write_tmp("truncated.so", buf, n);
    EXPECT_ERROR(path, "cannot load job plugin", "truncated.so");
}

/* ---- shared objects that are not (valid) kappa jobs ---------------------------------------- */

Test(plugin, no_entry_symbol)
{
    EXPECT_ERROR(plugin_path("no_symbol"), "is not a kappa job", "no 'kappa_plugin' symbol",
                 "KP_JOB");
}

Test(plugin, other_abi_version)
{
    EXPECT_ERROR(plugin_path("bad_abi"), "built for job ABI 42", "speaks ABI 1", "rebuild");
}

Test(plugin, malformed_struct)
{
    EXPECT_ERROR(plugin_path("malformed"), "malformed kappa_plugin struct");
}

Test(plugin, define_refuses)
{
    EXPECT_ERROR(plugin_path("refuses"), "job 'refuses'", "refused kappa's ABI version");
}

/* ---- define steps that fail or build invalid graphs ---------------------------------------- */

Test(plugin, job_fail)
{
    EXPECT_ERROR(plugin_path("job_fail"), "job 'job_fail' is invalid",
                 "no configuration for region eu-west-9");
}

Test(plugin, window_without_aggregate)
{
    EXPECT_ERROR(plugin_path("no_aggregate"), "is invalid", "window 'lonely-window'",
                 "has no aggregate");
}

Test(plugin, stream_without_sink)
{
    EXPECT_ERROR(plugin_path("no_sink"), "is invalid", "'dangling-filter' leads nowhere",
                 "kp_sink");
}

Test(plugin, no_source)
{
    EXPECT_ERROR(plugin_path("no_source"), "defines no source");
}

Test(plugin, slide_larger_than_size)
{
    EXPECT_ERROR(plugin_path("bad_window"), "sliding windows need 0 < slide <= size");
}

Test(plugin, window_on_unkeyed_stream)
{
    EXPECT_ERROR(plugin_path("unkeyed_window"), "windows need a keyed stream", "kp_key_by");
}

Test(plugin, two_aggregates_on_one_window)
{
    EXPECT_ERROR(plugin_path("two_aggregates"), "window 'shared' already has an aggregate");
}

Test(plugin, sum_without_value)
{
    EXPECT_ERROR(plugin_path("sum_no_value"), "'bad-sum': sum/min/max need .value");
}

Test(plugin, custom_session_without_merge)
{
    EXPECT_ERROR(plugin_path("custom_no_merge"), "'sessions'", "need .merge");
}

/* Defect 4: an operator asking for more subtasks than KP_MAX_PARALLELISM is refused at load,
 * naming the operator, the bound and the value (it used to overrun the executor's arrays). */
Test(plugin, sink_parallelism_above_maximum)
{
    char bound[64];
    snprintf(bound, sizeof bound, "within 1..%d, got 2000", KP_MAX_PARALLELISM);
    EXPECT_ERROR(plugin_path("huge_parallelism"), "job 'huge_parallelism' is invalid", "->sink'",
                 bound);
}

Test(plugin, parallelism_override_above_maximum)
{
    char err[1024] = "", want[64];
    kp_plugin_handle *h = kp_plugin_load(plugin_path("ok"), 100000, err, sizeof err);
    if (h)
        kp_plugin_close(h);
    cr_assert_null(h, "-p 100000 should be refused");
    snprintf(want, sizeof want, "maximum of %d", KP_MAX_PARALLELISM);
    cr_assert(strstr(err, "100000") && strstr(err, want), "message '%s' lacks the bound", err);
}

/* Failed loads leave nothing behind: loading bad plugins many times and then a good one
 * works (handles and dlopen references are released). */
Test(plugin, repeated_failures_then_success)
{
    static const char *bad[] = {"no_symbol", "bad_abi",      "malformed", "refuses",
                                "job_fail",  "no_aggregate", "no_sink"};
    for (int round = 0; round < 20; round++)
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            char err[1024];
            cr_assert_null(kp_plugin_load(plugin_path(bad[i]), 0, err, sizeof err));
        }
    char err[1024] = "";
    kp_plugin_handle *h = kp_plugin_load(plugin_path("ok"), 0, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    kp_plugin_close(h);
}

Test(plugin, small_error_buffer)
{
    char err[16];
    memset(err, 'x', sizeof err);
    cr_assert_null(kp_plugin_load(plugin_path("no_aggregate"), 0, err, sizeof err));
    cr_assert_eq(strnlen(err, sizeof err), sizeof err - 1, "message not NUL-terminated");
}

/* ---- good plugins -------------------------------------------------------------------------- */

static int count_kind(const kp_job *job, kp_node_kind kind)
{
    int n = 0;
    for (int i = 0; i < job->nnodes; i++)
        n += job->nodes[i]->kind == kind;
    return n;
}

Test(plugin, ok_plugin_defines_its_graph)
{
    char err[1024] = "";
    kp_plugin_handle *h = kp_plugin_load(plugin_path("ok"), 0, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    kp_job *job = kp_plugin_job(h);
    cr_assert_str_eq(job->name, "ok_job");
    cr_assert_eq(job->parallelism, 2);
    cr_assert_eq(count_kind(job, KP_NODE_SOURCE), 1);
    cr_assert_eq(count_kind(job, KP_NODE_WINDOW), 1);
    cr_assert_eq(count_kind(job, KP_NODE_AGGREGATE), 1);
    cr_assert_eq(count_kind(job, KP_NODE_LATE), 1);
    cr_assert_eq(count_kind(job, KP_NODE_SINK), 2);
    kp_plugin_close(h);

    /* the parallelism argument overrides the job's default */
    h = kp_plugin_load(plugin_path("ok"), 3, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    job = kp_plugin_job(h);
    cr_assert_eq(job->parallelism, 3);
    for (int i = 0; i < job->nnodes; i++)
        if (job->nodes[i]->kind == KP_NODE_WINDOW)
            cr_assert_eq(job->nodes[i]->parallelism, 3);
    kp_plugin_close(h);
}

Test(plugin, bare_file_name_is_not_searched_in_library_path)
{
    /* a path without '/' means the current directory, not LD_LIBRARY_PATH */
    char cwd[2048];
    cr_assert(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(plugins_dir), 0);
    char err[1024] = "";
    kp_plugin_handle *h = kp_plugin_load("ok.so", 0, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    kp_plugin_close(h);
    cr_assert_eq(chdir(cwd), 0);
}

Test(plugin, close_accepts_null)
{
    kp_plugin_close(NULL);
}

static void load_real_job(const char *file, const char *name)
{
    char path[2048], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s", jobs_dir, file);
    kp_plugin_handle *h = kp_plugin_load(path, 0, err, sizeof err);
    cr_assert_not_null(h, "%s: %s", path, err);
    kp_job *job = kp_plugin_job(h);
    cr_assert_str_eq(job->name, name);
    cr_assert_eq(job->error[0], '\0', "%s", job->error);
    cr_assert_geq(count_kind(job, KP_NODE_SOURCE), 1, "%s has no source", path);
    cr_assert_geq(count_kind(job, KP_NODE_SINK), 1, "%s has no sink", path);
    for (int i = 0; i < job->nnodes; i++)
        cr_assert_gt(job->nodes[i]->parallelism, 0, "%s: node %s has no parallelism", path,
                     job->nodes[i]->name);
    char plan[8192];
    kp_job_describe(job, plan, sizeof plan);
    cr_assert(strstr(plan, name), "plan does not name the job:\n%s", plan);
    kp_plugin_close(h);
    /* loadable again after unloading, with an override */
    h = kp_plugin_load(path, 4, err, sizeof err);
    cr_assert_not_null(h, "%s (again): %s", path, err);
    cr_assert_eq(kp_plugin_job(h)->parallelism, 4);
    kp_plugin_close(h);
}

Test(plugin, real_job_hourly_clicks)
{
    load_real_job("hourly_clicks.so", "hourly_clicks");
}

Test(plugin, real_job_hourly_clicks_v2)
{
    load_real_job("hourly_clicks_v2.so", "hourly_clicks_v2");
}

Test(plugin, real_job_user_sessions)
{
    load_real_job("user_sessions.so", "user_sessions");
}
