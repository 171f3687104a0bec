/* The taskmanager's verified plugin cache: <state-dir>/plugins/<sha256>.so. A file gets there
 * only after its bytes hashed to its name, and is hashed again before each use, so what a
 * deployment loads is exactly what the job was submitted with. Downloads (PluginData chunks)
 * are written to a temporary file and renamed into place once verified. */
#ifndef KP_TM_PLUGIN_CACHE_H
#define KP_TM_PLUGIN_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* Largest plugin a taskmanager accepts. */
#define KP_TM_PLUGIN_MAX (1024ull * 1024 * 1024)

/* True for 64 lowercase hex digits — the only names the cache builds paths from.
 * @locality any thread */
int kp_tm_sha256_valid(const char *hex);

/* The cache path of `sha256` into path. 1 when that file exists and still hashes to its name,
 * 0 when it is not there (a file that does not match is removed and logged), -1 on an I/O
 * error (reason in err). @locality the session thread */
int kp_tm_plugin_cached(const char *dir, const char *sha256, char *path, size_t pathlen, char *err,
                        size_t errlen);

typedef struct kp_tm_fetch kp_tm_fetch;

/* Starts a download of `size` bytes into the cache dir (created if needed). NULL with the
 * reason in err. @locality the session thread, as the rest of a fetch */
kp_tm_fetch *kp_tm_fetch_begin(const char *dir, const char *sha256, uint64_t size, char *err,
                               size_t errlen);

/* Adds one chunk. Chunks come in order: `offset` must equal the bytes received so far and
 * `total` the announced size. Returns 0 when more is expected, 1 when the plugin is complete,
 * hashed to its sha256 and in the cache, -1 when it must be refused (reason in err; the
 * partial file is gone). */
int kp_tm_fetch_add(kp_tm_fetch *f, uint64_t offset, uint64_t total, const void *bytes, size_t len,
                    char *err, size_t errlen);

/* The sha256 the fetch is for. */
const char *kp_tm_fetch_sha256(const kp_tm_fetch *f);

/* Drops the download and its partial file. Accepts NULL. */
void kp_tm_fetch_free(kp_tm_fetch *f);

#endif
