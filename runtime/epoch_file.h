/* The fencing epoch of a run kept as a counter in a file (`<dir>/epoch`), for `kappa run
 * --local` (and any runner without a jobmanager). Sinks with external versioning derive their
 * versions from the epoch (es: `version = epoch << 32 | seq`), so every new attempt must get a
 * strictly greater epoch than every earlier one: the wall clock alone gives two attempts in the
 * same second (or after the clock was stepped back) the same or a lower epoch, and the newer
 * attempt's writes are rejected as stale. The next epoch is max(stored + 1, wall seconds): a
 * counter that never repeats, and still above the epochs of runs that kept no file (they used
 * wall seconds). See docs/architecture.md, "Exactly-once into Elasticsearch". */
#ifndef KP_EPOCH_FILE_H
#define KP_EPOCH_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Takes the next epoch from `<dir>/epoch`: creates dir (and its parents) if missing, locks
 * `<dir>/epoch.lock` (flock: concurrent runs with the same dir get distinct epochs), reads
 * the stored epoch (a missing file counts as 0), writes max(stored + 1, now_s) through a
 * temporary file, fsync, rename and a directory fsync, and returns it in *out. A file that is
 * not one decimal integer in [0, 2^62) is corrupt: -1 with errstr naming the file (nothing is
 * written). 0, or -1 with errstr. @locality any thread; @locks flock on dir/epoch.lock */
int kp_epoch_next(const char *dir, int64_t now_s, int64_t *out, char *errstr, size_t errlen);

#endif
