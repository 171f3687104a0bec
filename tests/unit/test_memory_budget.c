/* The slot memory budget splits into parts that add up to no more than the slot, keeps floors for
 * small slots, divides keyed parts among keyed subtasks, and refuses a slot below the minimum. */
#include <criterion/criterion.h>
#include <string.h>

#include "memory_budget.h"

#define MIB ((size_t)1 << 20)

static size_t sum(const kp_slot_memory *m, int keyed)
{
    size_t k = (size_t)(keyed > 0 ? keyed : 1);
    return m->source_fetch + m->network +
           k * (m->state_cache + m->rocksdb_cache + 4 * m->memtable) + m->reserved;
}

Test(memory_budget, default_slot_adds_up)
{
    kp_slot_memory m;
    char err[128];
    cr_assert_eq(kp_slot_memory_split(KP_SLOT_MEMORY_DEFAULT, 1, &m, err, sizeof err), 0);
    cr_expect_eq(m.source_fetch, 64 * MIB);
    cr_expect_eq(m.network, 64 * MIB);
    cr_expect_eq(m.state_cache, 192 * MIB);
    cr_expect_eq(m.rocksdb_cache, 32 * MIB);
    cr_expect_eq(m.memtable, 16 * MIB);
    cr_expect_leq(sum(&m, 1), m.total);
}

Test(memory_budget, keyed_parts_are_shared)
{
    kp_slot_memory one, two;
    char err[128];
    cr_assert_eq(kp_slot_memory_split(1024 * MIB, 1, &one, err, sizeof err), 0);
    cr_assert_eq(kp_slot_memory_split(1024 * MIB, 2, &two, err, sizeof err), 0);
    cr_expect_eq(two.state_cache * 2, one.state_cache);
    cr_expect_eq(two.source_fetch, one.source_fetch);
    cr_expect_leq(sum(&two, 2), two.total);
}

Test(memory_budget, every_size_stays_inside_and_whole_mib)
{
    char err[128];
    for (size_t mb = 32; mb <= 65536; mb = mb * 3 / 2 + 1)
        for (int keyed = 0; keyed <= 3; keyed++) {
            kp_slot_memory m;
            if (kp_slot_memory_split(mb * MIB, keyed, &m, err, sizeof err) != 0) {
                cr_expect(mb < 64 && strstr(err, "too small for"), "%zu MiB: %s", mb, err);
                continue;
            }
            cr_expect_leq(sum(&m, keyed), m.total, "%zu MiB, %d keyed", mb, keyed);
            cr_expect_eq(m.state_cache % MIB, 0);
            cr_expect_geq(m.state_cache, MIB);
        }
}

Test(memory_budget, too_small_is_refused)
{
    kp_slot_memory m;
    char err[128] = "";
    cr_expect_eq(kp_slot_memory_split(16 * MIB, 1, &m, err, sizeof err), -1);
    cr_expect(strstr(err, "at least 32 MiB"), "%s", err);
}

Test(memory_budget, describe_names_every_part)
{
    kp_slot_memory m;
    char err[128], line[512];
    cr_assert_eq(kp_slot_memory_split(KP_SLOT_MEMORY_DEFAULT, 1, &m, err, sizeof err), 0);
    kp_slot_memory_describe(&m, line, sizeof line);
    cr_expect(strstr(line, "slot budget 512 MiB: source fetch 64, network 64, state cache 192"),
              "%s", line);
}
