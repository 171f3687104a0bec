/* Keys → key groups → subtasks.
 *
 * A key's group is hash(key) mod max_parallelism; subtask i of p owns the contiguous key
 * group range [i*K/p, (i+1)*K/p). Keyed state is prefixed by its key group, so a savepoint
 * taken at one parallelism can be split by ranges at another. The hash is fixed forever (it
 * decides where state lives): 64-bit FNV-1a with a murmur3 finaliser, over the key bytes. */
#ifndef KP_KEYGROUP_H
#define KP_KEYGROUP_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t kp_hash64(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static inline int kp_key_group(uint64_t hash, int max_parallelism)
{
    return (int)(hash % (uint64_t)max_parallelism);
}

/* The subtask (of `parallelism`) that owns key group `kg`. */
static inline int kp_key_group_owner(int kg, int max_parallelism, int parallelism)
{
    return (int)((int64_t)kg * parallelism / max_parallelism);
}

/* First key group owned by `subtask`: owner(kg) == subtask for kg in [first, first(next)). */
static inline int kp_key_group_first(int subtask, int max_parallelism, int parallelism)
{
    return (int)(((int64_t)subtask * max_parallelism + parallelism - 1) / parallelism);
}

#endif
