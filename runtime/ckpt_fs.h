/* File-system steps of checkpoint storage (checkpoint_store.c, checkpoint_restore.c,
 * snapshot.c): durable copies that hash what they copy, atomic small-file writes (temp file,
 * fsync, rename, directory fsync), recursive removal. Errors are values with a message in
 * errstr naming the path and the cause (a full disk says "No space left on device").
 * @locality any thread; no shared state */
#ifndef KP_CKPT_FS_H
#define KP_CKPT_FS_H

#include <stddef.h>
#include <stdint.h>

#define KP_SHA256_HEX_LEN 65 /* 64 hex digits + NUL */

/* mkdir -p; 0 or -1 with errstr. */
int kp_fs_mkdirs(const char *path, char *errstr, size_t errlen);

/* rm -rf; a missing path is fine. 0 or -1 (errno kept). */
int kp_fs_rmtree(const char *path);

/* fsync of a directory (after a rename or a create in it). 0 or -1 with errstr. */
int kp_fs_fsync_dir(const char *dir, char *errstr, size_t errlen);

/* Copies src to dst through dst.tmp-<pid>-<n> (written, fsynced, renamed; the directory is not
 * fsynced: the caller does it once per directory). hex: the sha256 of the bytes, size: their
 * count. On failure nothing is left at dst or at the temp name. 0 or -1 with errstr. */
int kp_fs_copy_file(const char *src, const char *dst, char hex[KP_SHA256_HEX_LEN], uint64_t *size,
                    char *errstr, size_t errlen);

/* Like kp_fs_copy_file but hard-links src to dst (through a temp name) when both are on one
 * filesystem (hashed and fsynced through the link; its modification time set to now, as a
 * copy's would be): for immutable files only (RocksDB's SST files).
 * 0 linked; 1 not possible here (another filesystem, no permission: copy instead, nothing
 * left behind); -1 with errstr. */
int kp_fs_link_file(const char *src, const char *dst, char hex[KP_SHA256_HEX_LEN], uint64_t *size,
                    char *errstr, size_t errlen);

/* The sha256 and size of a file. 0 or -1 with errstr. */
int kp_fs_hash_file(const char *path, char hex[KP_SHA256_HEX_LEN], uint64_t *size, char *errstr,
                    size_t errlen);

/* The sha256 of a buffer. */
void kp_fs_hash_buf(const void *data, size_t len, char hex[KP_SHA256_HEX_LEN]);

/* Writes data to path atomically and durably: path.tmp-<pid>-<n>, fsync, rename, fsync of the
 * directory. On failure the old file (if any) is intact and no temp file remains.
 * 0 or -1 with errstr. */
int kp_fs_write_atomic(const char *path, const void *data, size_t len, char *errstr, size_t errlen);

/* The two halves of kp_fs_write_atomic, for a caller that acts between them (a failpoint):
 * write_temp leaves the fsynced temp file (its name in tmp, >= 4200 bytes); commit_temp renames
 * it over path and fsyncs the directory (on a failed rename the temp file is removed). */
int kp_fs_write_temp(const char *path, const void *data, size_t len, char *tmp, size_t tmplen,
                     char *errstr, size_t errlen);
int kp_fs_commit_temp(const char *tmp, const char *path, char *errstr, size_t errlen);

/* Reads a whole file into a malloc'd, NUL-terminated buffer. 0 or -1 with errstr. */
int kp_fs_read_file(const char *path, char **data, size_t *len, char *errstr, size_t errlen);

#endif
