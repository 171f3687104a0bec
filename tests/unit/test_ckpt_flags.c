/* The checkpoint flags of `kappa run --local` and `kappa submit` (jobmanager/cli/job_opts.c):
 * durations with units, modes, counts and paths are parsed into kp_job_opts.ckpt, and every
 * malformed value is a usage error naming the flag. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>

#include "job_opts.h"

static int parse(kp_job_opts *o, int opt, const char *arg)
{
    static char buf[16][64];
    static int n;
    char *a = buf[n++ % 16];
    snprintf(a, 64, "%s", arg);
    return kp_job_opts_parse(o, opt, a);
}

Test(ckpt_flags, durations)
{
    kp_time ms;
    cr_assert_eq(kp_parse_duration("500ms", &ms), 0);
    cr_assert_eq(ms, 500);
    cr_assert_eq(kp_parse_duration("1s", &ms), 0);
    cr_assert_eq(ms, 1000);
    cr_assert_eq(kp_parse_duration("2m", &ms), 0);
    cr_assert_eq(ms, 120000);
    cr_assert_eq(kp_parse_duration("1h", &ms), 0);
    cr_assert_eq(ms, 3600000);
    const char *bad[] = {"", "5", "5x", "-1s", "+1s", "s", "1.5s", "1 s", "99999999999999999h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(kp_parse_duration(bad[i], &ms), -1, "'%s' was taken", bad[i]);
}

Test(ckpt_flags, all_flags_fill_the_config)
{
    kp_job_opts o = {.verb = "kappa run"};
    cr_assert_eq(parse(&o, KP_OPT_CKPT_INTERVAL, "250ms"), 1);
    cr_assert_eq(parse(&o, KP_OPT_CKPT_MODE, "at_least_once"), 1);
    cr_assert_eq(parse(&o, KP_OPT_CKPT_DIR, "/tmp/ck"), 1);
    cr_assert_eq(parse(&o, KP_OPT_CKPT_TIMEOUT, "2m"), 1);
    cr_assert_eq(parse(&o, KP_OPT_MIN_PAUSE, "0ms"), 1);
    cr_assert_eq(parse(&o, KP_OPT_MAX_CONCURRENT, "3"), 1);
    cr_assert_eq(parse(&o, KP_OPT_TOLERABLE_FAILURES, "0"), 1);
    cr_assert_eq(parse(&o, KP_OPT_RETAINED, "5"), 1);
    cr_assert_eq(parse(&o, KP_OPT_FROM_CHECKPOINT, "/tmp/ck/job/chk-3"), 1);
    cr_assert_eq(o.ckpt.interval_ms, 250);
    cr_assert_eq(o.ckpt.mode, KP_CKPT_AT_LEAST_ONCE);
    cr_assert_str_eq(o.ckpt.dir, "/tmp/ck");
    cr_assert_eq(o.ckpt.timeout_ms, 120000);
    cr_assert_eq(o.ckpt.min_pause_ms, 0);
    cr_assert_eq(o.ckpt.max_concurrent, 3);
    cr_assert_eq(o.ckpt.tolerable_failures, 0);
    cr_assert_eq(o.ckpt.retain, 5);
    cr_assert_str_eq(o.from_checkpoint, "/tmp/ck/job/chk-3");
    cr_assert(kp_job_opts_has(&o, KP_OPT_MIN_PAUSE));
    cr_assert(kp_job_opts_has(&o, KP_OPT_FROM_CHECKPOINT));
    kp_job_opts none = {.verb = "kappa run"};
    cr_assert_not(kp_job_opts_has(&none, KP_OPT_CKPT_INTERVAL));
}

Test(ckpt_flags, bad_values_are_usage_errors, .init = cr_redirect_stderr)
{
    struct {
        int opt;
        const char *arg, *says;
    } bad[] = {
        {KP_OPT_CKPT_INTERVAL, "0s", "--checkpoint-interval"},
        {KP_OPT_CKPT_INTERVAL, "10", "unit"},
        {KP_OPT_CKPT_TIMEOUT, "soon", "--checkpoint-timeout"},
        {KP_OPT_MIN_PAUSE, "-1s", "--min-pause"},
        {KP_OPT_CKPT_MODE, "exactly-once", "exactly_once or at_least_once"},
        {KP_OPT_MAX_CONCURRENT, "0", "--max-concurrent-checkpoints"},
        {KP_OPT_TOLERABLE_FAILURES, "-1", "--tolerable-checkpoint-failures"},
        {KP_OPT_RETAINED, "x", "--retained-checkpoints"},
        {KP_OPT_CKPT_DIR, "", "--checkpoint-dir"},
        {KP_OPT_FROM_CHECKPOINT, "", "--from-checkpoint"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kp_job_opts o = {.verb = "kappa run"};
        cr_assert_eq(parse(&o, bad[i].opt, bad[i].arg), -1, "'%s' was taken", bad[i].arg);
    }
    fflush(stderr);
    char all[4096] = "";
    fread(all, 1, sizeof all - 1, cr_get_redirected_stderr());
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(strstr(all, bad[i].says), "no '%s' in: %s", bad[i].says, all);
}
