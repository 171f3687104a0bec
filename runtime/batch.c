/* Allocation of record batches (see batch.h). Batches are created once per channel credit
 * and recycled, so this runs a handful of times per job, never per record. */
#include "batch.h"

#include <stdlib.h>

kp_batch *kp_batch_new(void)
{
    kp_batch *b = malloc(sizeof *b);
    if (b) {
        kp_batch_reset(b);
        b->next = NULL;
        b->channel = 0;
        b->watermark = KP_TIME_MIN;
    }
    return b;
}

void kp_batch_free(kp_batch *b)
{
    free(b);
}
