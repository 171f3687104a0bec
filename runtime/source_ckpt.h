/* A source subtask's positions in a checkpoint (source_ckpt.c): what it writes at a trigger
 * and what a restored subtask reads back. */
#ifndef KP_SOURCE_CKPT_H
#define KP_SOURCE_CKPT_H

#include "checkpoint.h"
#include "connector.h"
#include "watermarks.h"

/* One partition's position: the offset of the next record to read, and the watermark state
 * that makes the records after it carry the same watermarks as in an uninterrupted run. */
typedef struct kp_src_pos {
    int32_t partition;
    int32_t ended; /* it had delivered everything */
    int64_t offset;
    kp_time max_ts; /* KP_TIME_MIN before its first record */
} kp_src_pos;

/* The most partitions one source subtask records. */
#define KP_SRC_CKPT_MAX 4096

/* Writes the blob (uid, "source") of every partition the reader reports an offset for, with
 * the tracker's state; the offsets also go to offs (up to max; *n = how many), for the commit
 * when the checkpoint completes. 0, -1 when out of memory, -2 when the reader cannot say
 * where it is (no offsets callback). @locality the source subtask's thread */
int kp_src_ckpt_write(kp_snapshot *snap, const char *uid, kp_source_reader *r,
                      const kp_wm_tracker *wm, kp_offset *offs, int max, int *n);

/* Every partition any old subtask of source `uid` recorded in checkpoint r, as a malloc'd
 * array in *out (NULL if none) of *n. 0, or -1 with errstr (a malformed blob).
 * @locality any thread */
int kp_src_ckpt_read(const kp_restore *r, const char *uid, kp_src_pos **out, int *n, char *errstr,
                     size_t errlen);

#endif
