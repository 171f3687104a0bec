/* Lets Criterion start under ThreadSanitizer. Linked into the test binaries of
 * -Db_sanitize=thread builds only (tests/unit/meson.build).
 *
 * Criterion (through BoxFort) maps its inheritable arena with MAP_FIXED at an address
 * 0x200000000000 + (rand_r() & 0x3fffff) * 16 MiB. ThreadSanitizer lets a program map only its
 * application ranges, and of those only 0x550000000000..0x568000000000 lies in that window, so
 * most picks fail and Criterion aborts with "Could not initialize inheritable arena: Resource
 * temporarily unavailable" (Snaipe/Criterion#274). This rand_r keeps Criterion's picks inside
 * that range; every other caller gets the C library's rand_r. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

int rand_r(unsigned int *seed)
{
    Dl_info info;
    if (dladdr(__builtin_return_address(0), &info) && info.dli_fname &&
        strstr(info.dli_fname, "libcriterion")) {
        /* 16 MiB slots 0x350000..0x367fff above 0x200000000000: 0x550000000000..0x568000000000 */
        *seed = *seed * 1103515245u + 12345u;
        return (int)(0x350000u + (*seed >> 8) % 0x18000u);
    }
    static int (*libc_rand_r)(unsigned int *);
    if (!libc_rand_r)
        *(void **)&libc_rand_r = dlsym(RTLD_NEXT, "rand_r");
    return libc_rand_r(seed);
}
