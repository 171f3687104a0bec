/* The split of a slot's memory budget over its parts (memory_budget.h). The shares are what the
 * seed job and the spill benchmarks needed, in 1/64ths of the slot:
 *   source fetch 8, network 8, state caches 24, RocksDB block caches 4, memtables 8, and the
 * rest (12, at least 4) reserved. Keyed parts are per keyed subtask, so a slot with two window
 * operators gives each half. Floors keep tiny slots workable; a slot too small for its floors
 * is refused. */
#include "memory_budget.h"

#include <stdio.h>
#include <sys/resource.h>

#define MIB ((size_t)1 << 20)

static size_t share(size_t total, int sixtyfourths, int ways, size_t floor)
{
    size_t b = total / 64 * (size_t)sixtyfourths / (size_t)(ways > 0 ? ways : 1);
    b &= ~(MIB - 1); /* whole MiB: the knobs below are set in MiB */
    return b < floor ? floor : b;
}

int kp_slot_memory_split(size_t total, int keyed, kp_slot_memory *out, char *errstr, size_t errlen)
{
    if (total < KP_SLOT_MEMORY_MIN) {
        snprintf(errstr, errlen, "a slot needs at least %zu MiB of memory (got %zu MiB)",
                 KP_SLOT_MEMORY_MIN / MIB, total / MIB);
        return -1;
    }
    *out = (kp_slot_memory){
        .total = total,
        .source_fetch = share(total, 8, 1, 4 * MIB),
        .network = share(total, 8, 1, 2 * MIB),
        .state_cache = share(total, 24, keyed, MIB),
        .rocksdb_cache = share(total, 4, keyed, MIB),
        /* 2 column families x 2 memtables per keyed subtask */
        .memtable = share(total, 8, 4 * (keyed > 0 ? keyed : 1), MIB),
    };
    size_t k = (size_t)(keyed > 0 ? keyed : 1);
    size_t parts = out->source_fetch + out->network +
                   k * (out->state_cache + out->rocksdb_cache + 4 * out->memtable);
    if (parts + total / 16 > total) {
        snprintf(errstr, errlen,
                 "a slot of %zu MiB is too small for %d keyed operators (their floors need "
                 "%zu MiB): raise the slot's memory",
                 total / MIB, keyed, (parts + total / 16) / MIB + 1);
        return -1;
    }
    out->reserved = total - parts;
    return 0;
}

void kp_slot_memory_describe(const kp_slot_memory *m, char *buf, size_t len)
{
    snprintf(
        buf, len,
        "slot budget %zu MiB: source fetch %zu, network %zu, state cache %zu per keyed "
        "subtask, RocksDB block cache %zu and memtables 4 x %zu per keyed subtask, reserved %zu",
        m->total / MIB, m->source_fetch / MIB, m->network / MIB, m->state_cache / MIB,
        m->rocksdb_cache / MIB, m->memtable / MIB, m->reserved / MIB);
}

static void row(FILE *f, const char *part, double budget, double used, const char *note)
{
    if (used < 0)
        fprintf(f, "kappa:   %-22s %9.1f %9s  %s\n", part, budget, "-", note);
    else
        fprintf(f, "kappa:   %-22s %9.1f %9.1f  %s\n", part, budget, used, note);
}

void kp_memory_report(FILE *f, const kp_slot_memory *m, const kp_memory_shape *shape,
                      const kp_exec_stats *s)
{
    const double mib = 1048576.0;
    struct rusage ru;
    double rss = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : -1;
    size_t k = (size_t)shape->keyed;
    fprintf(f, "kappa: memory (MiB)              budget      peak\n");
    /* a file source reads no ahead: no figure rather than 0 */
    row(f, "Kafka read-ahead", (double)(m->source_fetch * (size_t)shape->sources) / mib,
        s->readahead_peak > 0 ? (double)s->readahead_peak / mib : -1,
        "Kafka sources only; fetch queues' peak (librdkafka statistics, 1/s)");
    row(f, "exchange batches", (double)shape->network / mib, (double)s->exchange_bytes / mib,
        "batches created x batch size");
    row(f, "state caches", (double)(m->state_cache * k) / mib, (double)s->state_cache_peak / mib,
        "sum of each keyed subtask's peak");
    row(f, "RocksDB cache+memtables", (double)((m->rocksdb_cache + 4 * m->memtable) * k) / mib,
        (double)s->state_rocksdb / mib, "peak, sampled once a second per database");
    row(f, "process (max RSS)", (double)(m->total * (size_t)shape->slots) / mib, rss,
        "sum of the slots' budgets vs getrusage ru_maxrss");
}
