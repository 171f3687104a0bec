/* A connection's channels by id: open addressing with linear probing over entry pointers
 * (every entry begins with its kp_net_chan_id), grown at half full, deletion by backward
 * shift. The reader looks a channel up for every batch, so this is a hash, not a list. */
#include <stdlib.h>

#include "net_int.h"

static size_t home(const net_map *m, const kp_net_chan_id *id)
{
    return (size_t)kp_net_chan_hash(id) & (m->cap - 1);
}

void *kp_net_map_get(const net_map *m, const kp_net_chan_id *id)
{
    if (!m->cap)
        return NULL;
    for (size_t i = home(m, id);; i = (i + 1) & (m->cap - 1)) {
        void *e = m->slots[i];
        if (!e || kp_net_chan_eq(e, id))
            return e;
    }
}

static void insert(net_map *m, void *e)
{
    size_t i = home(m, e);
    while (m->slots[i])
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = e;
    m->count++;
}

int kp_net_map_put(net_map *m, void *entry)
{
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        void **slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        net_map old = *m;
        *m = (net_map){.slots = slots, .cap = cap};
        for (size_t i = 0; i < old.cap; i++)
            if (old.slots[i])
                insert(m, old.slots[i]);
        free(old.slots);
    }
    insert(m, entry);
    return 0;
}

void kp_net_map_del(net_map *m, const void *entry)
{
    if (!m->cap)
        return;
    size_t mask = m->cap - 1, i = home(m, entry);
    while (m->slots[i] && m->slots[i] != entry)
        i = (i + 1) & mask;
    if (!m->slots[i])
        return;
    m->slots[i] = NULL;
    m->count--;
    /* move later members of the probe run back so every entry stays reachable */
    for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        size_t h = home(m, m->slots[j]);
        if (((j - h) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            m->slots[j] = NULL;
            i = j;
        }
    }
}

void kp_net_map_free(net_map *m)
{
    free(m->slots);
    *m = (net_map){0};
}
