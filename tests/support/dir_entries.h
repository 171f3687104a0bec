/* Counting directory entries in the checkpoint storage tests (what an upload, a commit or a
 * garbage collection left behind). */
#ifndef KP_TEST_DIR_ENTRIES_H
#define KP_TEST_DIR_ENTRIES_H

/* Entries of dir other than those starting with '.' whose name contains `part` (NULL: all);
 * 0 if dir does not exist. */
int kp_test_dir_entries(const char *dir, const char *part);

#endif
