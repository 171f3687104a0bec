/* Job plugin loading; see plugin.h. The checks run before dlopen where they can, because
 * dlopen runs a library's constructors: a file that is not an ELF shared object is refused
 * without being mapped. */
#include "plugin.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kp_plugin_handle {
    void *dl;
    kp_job *job;
};

static int check_elf(const char *path, char *errstr, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(errstr, errlen, "cannot open job plugin '%s': %s", path, strerror(errno));
        return -1;
    }
    Elf64_Ehdr h;
    ssize_t n = read(fd, &h, sizeof h);
    close(fd);
    if (n != (ssize_t)sizeof h || memcmp(h.e_ident, ELFMAG, SELFMAG) != 0) {
        snprintf(errstr, errlen,
                 "'%s' is not a job plugin: not an ELF file (build it with `cc -shared -fPIC "
                 "job.c $(pkg-config --cflags kappa) -o job.so`)",
                 path);
        return -1;
    }
    if (h.e_type != ET_DYN) {
        snprintf(errstr, errlen,
                 "'%s' is an ELF file but not a shared object (link with "
                 "-shared)",
                 path);
        return -1;
    }
    return 0;
}

kp_plugin_handle *kp_plugin_load(const char *path, int parallelism, char *errstr, size_t errlen)
{
    if (check_elf(path, errstr, errlen) != 0)
        return NULL;
    char full[4096];
    if (!strchr(path, '/')) /* dlopen would search the library path for a bare name */
        snprintf(full, sizeof full, "./%s", path);
    else
        snprintf(full, sizeof full, "%s", path);
    void *dl = dlopen(full, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(errstr, errlen, "cannot load job plugin '%s': %s", path, dlerror());
        return NULL;
    }
    const kp_plugin *p = dlsym(dl, KP_PLUGIN_SYMBOL);
    if (!p) {
        snprintf(errstr, errlen,
                 "'%s' is not a kappa job: it has no '%s' symbol (define the "
                 "job with KP_JOB(name) from <kappa/kappa.h>)",
                 path, KP_PLUGIN_SYMBOL);
        goto error_dl;
    }
    if (p->abi_version != KP_ABI_VERSION) {
        snprintf(errstr, errlen,
                 "'%s' was built for job ABI %u, this kappa speaks ABI %u: "
                 "rebuild the job against this kappa's <kappa/kappa.h>",
                 path, p->abi_version, KP_ABI_VERSION);
        goto error_dl;
    }
    if (p->struct_size < sizeof(kp_plugin) || !p->define || !p->name) {
        snprintf(errstr, errlen, "'%s' has a malformed kappa_plugin struct", path);
        goto error_dl;
    }
    kp_plugin_handle *h = calloc(1, sizeof *h);
    kp_job *job = kp_job_new(p->name);
    if (!h || !job) {
        free(h);
        kp_job_free(job);
        snprintf(errstr, errlen, "out of memory");
        goto error_dl;
    }
    job->parallelism_override = parallelism;
    if (kp_job_define(job, p->define, errstr, errlen) != 0) {
        free(h);
        kp_job_free(job);
        goto error_dl;
    }
    h->dl = dl;
    h->job = job;
    return h;
error_dl:
    dlclose(dl);
    return NULL;
}

kp_job *kp_plugin_job(kp_plugin_handle *h)
{
    return h->job;
}

void kp_plugin_close(kp_plugin_handle *h)
{
    if (!h)
        return;
    kp_job_free(h->job);
    dlclose(h->dl);
    free(h);
}
