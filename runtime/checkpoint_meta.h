/* Reading checkpoint metadata and acknowledgements (docs/checkpoints.md) for the store, the
 * restore reader and savepoints: load a _metadata file with its checksum checked, walk the
 * files it names, verify them. Internal to checkpoint_*.c. @locality any thread */
#ifndef KP_CHECKPOINT_META_H
#define KP_CHECKPOINT_META_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Loads path (a _metadata file), checks it against path.sha256 and the format (version 1, an
 * object with "checkpoint" and "subtasks"). A new reference, or NULL with errstr. */
json_t *kp_ckpt_meta_load(const char *path, char *errstr, size_t errlen);

/* The directory the metadata's relative paths start from: the savepoint directory, or the
 * job directory (the parent of chk-<N>). */
void kp_ckpt_meta_base(const char *path, const json_t *meta, char *out, size_t len);

/* Calls fn for every file object ({"path","size","sha256",...}) of one acknowledgement
 * (blob files and directory files); stops at fn's first non-zero and returns it. */
int kp_ckpt_ack_each_file(json_t *ack, int (*fn)(void *ctx, json_t *file), void *ctx);
/* The same over every subtask of a metadata object. */
int kp_ckpt_meta_each_file(json_t *meta, int (*fn)(void *ctx, json_t *file), void *ctx);

/* Checks that the file exists under base with its size, and (full) its sha256.
 * 0, or -1 with errstr. */
int kp_ckpt_file_check(const json_t *file, const char *base, int full, char *errstr, size_t errlen);

/* kp_ckpt_file_check of every file of the metadata. 0, or -1 with errstr for the first bad. */
int kp_ckpt_meta_verify(json_t *meta, const char *base, int full, char *errstr, size_t errlen);

/* The ids of the chk-<N> directories of a job directory, newest first; how many (up to max). */
int kp_ckpt_list_ids(const char *job_dir, int64_t *ids, int max);

#endif
