/* Counting directory entries (dir_entries.h). */
#include <dirent.h>
#include <string.h>

#include "dir_entries.h"

int kp_test_dir_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.' && (!part || strstr(de->d_name, part));
    if (d)
        closedir(d);
    return n;
}
