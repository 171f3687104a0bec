/* NDJSON files, stdin and stdout as sources and sinks: what tests and local runs bind a job's
 * endpoints to.
 *
 * Source `file:PATH[?partitions=N]`: one record per line, the file split into N partitions
 * (default 1, at most 65535) the way a Kafka topic is: line k (0-based; every line counts,
 * empty and malformed ones too) belongs to partition k mod N, and subtask i of p owns the
 * partitions j with j mod p == i (a subtask that owns none reads nothing and ends at once).
 * Records carry their partition, so the engine keeps a watermark per partition and a job
 * replayed from the same file gives the same result at any parallelism: which partition a
 * line is in depends on the file and N only. Each subtask scans the whole file for newlines
 * (memchr, 4 MiB reads, no syscall and no clock read per record) but hands out only its
 * partitions' lines; records point into the read buffer. Every owned partition is caught up
 * and ended once the reader reached EOF (a file does not grow while it is read). Empty lines
 * are counted but not handed out. `stdin:` is one partition, read by subtask 0 only.
 *
 * Checkpoints: a partition's position (offsets()) is the byte offset in the file from which
 * its lines have not been handed out yet — the reader scans in file order, so between two
 * polls that is where the scan stands, for every owned partition. A restored reader
 * (kp_endpoint.restore_offsets) scans from the start as always, to count lines into
 * partitions, and skips each partition's lines that start before its position: exactly the
 * lines after the checkpoint, whatever parallelism wrote it. stdin has no positions.
 *
 * Sink `file:PATH` / `stdout:`: one document (its JSON) per line. All subtasks of a job that
 * name the same path share one file: each writer fills a private 256 KiB buffer and appends it
 * whole under the file's lock, so lines never interleave; the clock's tick (every ~100 ms)
 * appends what the buffer holds, so a live job's results show without waiting for 256 KiB.
 * The file is truncated when the first writer opens it.
 *
 * @locality a reader or writer belongs to its subtask's thread; shared files have their lock. */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/connector.h"
#include "connectors.h"

#define READ_BUF       (4u << 20)
#define WRITE_BUF      (256u << 10)
#define MAX_PARTITIONS 65535

/* ---- source ------------------------------------------------------------------------------ */

typedef struct file_reader {
    kp_source_reader r;
    int fd;
    int owns_fd;
    int32_t nparts;  /* N: line k is in partition k mod N */
    int32_t part;    /* partition of the next line */
    int32_t mine, p; /* this subtask owns partitions j with j mod p == mine */
    int32_t nowned;
    uint8_t *owned; /* [nparts]: 1 if this reader owns the partition */
    int64_t *skip;  /* restored: [nparts] lines starting before skip[j] were read; or NULL */
    char *buf;
    size_t len, off; /* bytes in buf; first unconsumed byte */
    off_t buf_pos;   /* file offset of buf[0] */
    int eof;         /* read() returned 0 */
    char path[512];
} file_reader;

/* Reads more into the buffer. 0, 1 if nothing arrived within timeout_ms (a pipe or
 * terminal: a live stdin must not block the subtask, which has to tick and notice
 * cancellation), -1 with errstr. */
static int fill(file_reader *f, int timeout_ms, char *errstr, size_t errlen)
{
    if (f->off > 0) {
        memmove(f->buf, f->buf + f->off, f->len - f->off);
        f->buf_pos += (off_t)f->off;
        f->len -= f->off;
        f->off = 0;
    }
    if (f->len == READ_BUF) {
        snprintf(errstr, errlen, "%s: a line at byte %lld is longer than %u bytes", f->path,
                 (long long)f->buf_pos, READ_BUF);
        return -1;
    }
    struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready == 0 || (ready < 0 && errno == EINTR))
        return 1;
    ssize_t n;
    do
        n = read(f->fd, f->buf + f->len, READ_BUF - f->len);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        snprintf(errstr, errlen, "%s: read failed: %s", f->path, strerror(errno));
        return -1;
    }
    if (n == 0)
        f->eof = 1;
    f->len += (size_t)n;
    return 0;
}

/* Every line has been read: nothing more will come. */
static int drained(const file_reader *f)
{
    return f->nowned == 0 || (f->eof && f->off >= f->len);
}

static kp_poll_rc file_poll(kp_source_reader *r, kp_raw *out, int max, int *n, int timeout_ms,
                            char *errstr, size_t errlen)
{
    file_reader *f = (file_reader *)r;
    /* records handed out by the previous poll are consumed now */
    *n = 0;
    if (f->nowned == 0)
        return KP_POLL_EOF;
    while (*n < max) {
        off_t line_pos = f->buf_pos + (off_t)f->off;
        char *start = f->buf + f->off;
        char *nl = memchr(start, '\n', f->len - f->off);
        if (!nl && !f->eof) {
            if (*n > 0)
                break; /* hand out what we have: the buffer moves on refill */
            int rc = fill(f, timeout_ms, errstr, errlen);
            if (rc < 0)
                return KP_POLL_ERROR;
            if (rc > 0)
                return KP_POLL_EMPTY;
            continue;
        }
        size_t len = nl ? (size_t)(nl - start) : f->len - f->off;
        if (!nl && len == 0)
            break; /* EOF, and no last line without a newline */
        f->off += len + (nl ? 1 : 0);
        int32_t part = f->part;
        if (++f->part == f->nparts)
            f->part = 0;
        if (len && start[len - 1] == '\r')
            len--;
        if (len == 0 || !f->owned[part] || (f->skip && (int64_t)line_pos < f->skip[part]))
            continue;
        out[(*n)++] = (kp_raw){.key = {"", 0},
                               .value = {start, len},
                               .ts = KP_TIME_MIN,
                               .partition = part,
                               .offset = (int64_t)line_pos};
    }
    if (*n > 0)
        return KP_POLL_RECORDS;
    return KP_POLL_EOF;
}

static int file_partitions(kp_source_reader *r, int32_t *out, int max)
{
    file_reader *f = (file_reader *)r;
    int n = 0;
    for (int32_t j = f->mine; j < f->nparts && n < max; j += f->p)
        out[n++] = j;
    return n;
}

/* Every owned partition's position: where the scan stands, or its restored position if the
 * scan has not reached that yet. */
static int file_offsets(kp_source_reader *r, kp_offset *out, int max)
{
    file_reader *f = (file_reader *)r;
    int64_t pos = (int64_t)f->buf_pos + (int64_t)f->off;
    int n = 0;
    for (int32_t j = f->mine; j < f->nparts && n < max; j += f->p) {
        int64_t at = f->skip && f->skip[j] > pos ? f->skip[j] : pos;
        out[n++] = (kp_offset){j, at};
    }
    return n;
}

/* The positions a restored reader starts from (partitions it does not own are ignored). */
static int restore_positions(file_reader *f, const kp_endpoint *ep)
{
    if (!ep->nrestore_offsets)
        return 0;
    if (!(f->skip = calloc((size_t)f->nparts, sizeof *f->skip)))
        return -1;
    for (int i = 0; i < ep->nrestore_offsets; i++) {
        const kp_offset *o = &ep->restore_offsets[i];
        if (o->partition >= 0 && o->partition < f->nparts)
            f->skip[o->partition] = o->offset;
    }
    return 0;
}

static int owns(const file_reader *f, int32_t partition)
{
    return partition >= 0 && partition < f->nparts && f->owned[partition];
}

/* A file is caught up with its end, and has ended, only at EOF: before that, any owned
 * partition may have lines still to come. */
static int file_caught_up(kp_source_reader *r, int32_t partition)
{
    file_reader *f = (file_reader *)r;
    return owns(f, partition) && drained(f);
}

static void file_reader_close(kp_source_reader *r)
{
    file_reader *f = (file_reader *)r;
    if (f->owns_fd)
        close(f->fd);
    free(f->owned);
    free(f->skip);
    free(f->buf);
    free(f);
}

/* The partitions option: 1..MAX_PARTITIONS, default 1. */
static int read_partitions(const kp_endpoint *ep, int32_t *out, char *errstr, size_t errlen)
{
    char v[32];
    *out = 1;
    if (!kp_endpoint_get(ep, "partitions", v, sizeof v))
        return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < 1 || x > MAX_PARTITIONS) {
        snprintf(errstr, errlen,
                 "%s: partitions=%s: give the number of partitions, an integer from 1 to %d",
                 ep->uri, v, MAX_PARTITIONS);
        return -1;
    }
    *out = (int32_t)x;
    return 0;
}

static kp_source_reader *open_file_source(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    int is_stdin = !strncmp(ep->uri, "stdin:", 6);
    int32_t nparts;
    char path[512];
    kp_endpoint_target(ep, path, sizeof path);
    if (read_partitions(ep, &nparts, errstr, errlen) != 0)
        return NULL;
    if (is_stdin && nparts != 1) {
        snprintf(errstr, errlen, "%s: stdin is one partition (drop the partitions option)",
                 ep->uri);
        return NULL;
    }
    if (!is_stdin && !*path) {
        snprintf(errstr, errlen, "'%s' names no file: use file:PATH", ep->uri);
        return NULL;
    }
    file_reader *f = calloc(1, sizeof *f);
    char *buf = malloc(READ_BUF);
    uint8_t *owned = calloc((size_t)nparts, 1);
    if (!f || !buf || !owned) {
        free(f);
        free(buf);
        free(owned);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    f->r = (kp_source_reader){.poll = file_poll,
                              .close = file_reader_close,
                              .partitions = file_partitions,
                              .caught_up = file_caught_up,
                              .ended = file_caught_up};
    f->buf = buf;
    f->owned = owned;
    f->nparts = nparts;
    f->p = ep->parallelism > 0 ? ep->parallelism : 1;
    f->mine = ep->subtask;
    for (int32_t j = f->mine; j < nparts; j += f->p) { /* stdin: subtask 0 only */
        f->owned[j] = 1;
        f->nowned++;
    }
    snprintf(f->path, sizeof f->path, "%s", is_stdin ? "stdin" : path);
    if (is_stdin) {
        f->fd = 0;
        return &f->r;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        snprintf(errstr, errlen, "cannot open '%s': %s", path, strerror(errno));
        file_reader_close(&f->r);
        return NULL;
    }
    f->owns_fd = 1;
    f->r.offsets = file_offsets;
    if (restore_positions(f, ep) != 0) {
        snprintf(errstr, errlen, "out of memory");
        file_reader_close(&f->r);
        return NULL;
    }
    return &f->r;
}

/* ---- sink ---------------------------------------------------------------------------------- */

typedef struct shared_file {
    char path[512];
    int fd;
    int refs;
    pthread_mutex_t lock;
    struct shared_file *next;
} shared_file;

static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;
static shared_file *files;

static shared_file *share_open(const char *path, int is_stdout, char *errstr, size_t errlen)
{
    pthread_mutex_lock(&files_lock);
    shared_file *s = files;
    while (s && strcmp(s->path, path))
        s = s->next;
    if (!s && (s = calloc(1, sizeof *s))) {
        snprintf(s->path, sizeof s->path, "%s", path);
        s->fd = is_stdout ? 1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (s->fd < 0) {
            snprintf(errstr, errlen, "cannot create '%s': %s", path, strerror(errno));
            free(s);
            s = NULL;
        } else {
            pthread_mutex_init(&s->lock, NULL);
            s->next = files;
            files = s;
        }
    } else if (!s) {
        snprintf(errstr, errlen, "out of memory");
    }
    if (s)
        s->refs++;
    pthread_mutex_unlock(&files_lock);
    return s;
}

static void share_close(shared_file *s)
{
    pthread_mutex_lock(&files_lock);
    if (--s->refs == 0) {
        shared_file **pp = &files;
        while (*pp != s)
            pp = &(*pp)->next;
        *pp = s->next;
        if (s->fd > 2)
            close(s->fd);
        pthread_mutex_destroy(&s->lock);
        free(s);
    }
    pthread_mutex_unlock(&files_lock);
}

typedef struct file_writer {
    kp_sink_writer w;
    shared_file *file;
    char *buf;
    size_t len;
} file_writer;

static int write_all(int fd, const char *p, size_t len, const char *path, char *errstr,
                     size_t errlen)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(errstr, errlen, "writing '%s' failed: %s", path, strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int drain(file_writer *f, char *errstr, size_t errlen)
{
    if (!f->len)
        return 0;
    pthread_mutex_lock(&f->file->lock);
    int rc = write_all(f->file->fd, f->buf, f->len, f->file->path, errstr, errlen);
    pthread_mutex_unlock(&f->file->lock);
    f->len = 0;
    return rc;
}

static int file_write(kp_sink_writer *w, kp_bytes id, kp_bytes doc, kp_time ts, char *errstr,
                      size_t errlen)
{
    file_writer *f = (file_writer *)w;
    if (f->len + doc.len + 1 > WRITE_BUF && drain(f, errstr, errlen) != 0)
        return -1;
    if (doc.len + 1 > WRITE_BUF) {
        if (drain(f, errstr, errlen) != 0)
            return -1;
        pthread_mutex_lock(&f->file->lock);
        int rc = write_all(f->file->fd, doc.ptr, doc.len, f->file->path, errstr, errlen);
        if (rc == 0)
            rc = write_all(f->file->fd, "\n", 1, f->file->path, errstr, errlen);
        pthread_mutex_unlock(&f->file->lock);
        return rc;
    }
    memcpy(f->buf + f->len, doc.ptr, doc.len);
    f->buf[f->len + doc.len] = '\n';
    f->len += doc.len + 1;
    return 0;
}

static int file_flush(kp_sink_writer *w, char *errstr, size_t errlen)
{
    file_writer *f = (file_writer *)w;
    if (drain(f, errstr, errlen) != 0)
        return -1;
    if (f->file->fd > 2 && fdatasync(f->file->fd) != 0 && errno != EINVAL) {
        snprintf(errstr, errlen, "syncing '%s' failed: %s", f->file->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The clock's turn: what is buffered goes to the file (one write, no sync). */
static int file_tick(kp_sink_writer *w, char *errstr, size_t errlen)
{
    return drain((file_writer *)w, errstr, errlen);
}

static void file_writer_close(kp_sink_writer *w)
{
    file_writer *f = (file_writer *)w;
    char err[256];
    if (f->len && drain(f, err, sizeof err) != 0)
        fprintf(stderr, "kappa: %s\n", err);
    share_close(f->file);
    free(f->buf);
    free(f);
}

static kp_sink_writer *open_file_sink(const kp_endpoint *ep, char *errstr, size_t errlen)
{
    int is_stdout = !strncmp(ep->uri, "stdout:", 7);
    const char *path = is_stdout ? "/dev/stdout" : strchr(ep->uri, ':') + 1;
    if (!*path) {
        snprintf(errstr, errlen, "'%s' names no file: use file:PATH", ep->uri);
        return NULL;
    }
    file_writer *f = calloc(1, sizeof *f);
    char *buf = malloc(WRITE_BUF);
    shared_file *s = f && buf ? share_open(path, is_stdout, errstr, errlen) : NULL;
    if (!s) {
        if (!f || !buf)
            snprintf(errstr, errlen, "out of memory");
        free(f);
        free(buf);
        return NULL;
    }
    f->w = (kp_sink_writer){
        .write = file_write, .flush = file_flush, .close = file_writer_close, .tick = file_tick};
    f->file = s;
    f->buf = buf;
    return &f->w;
}

const kp_connector kp_file_connector = {"file", open_file_source, open_file_sink};
const kp_connector kp_stdin_connector = {"stdin", open_file_source, NULL};
const kp_connector kp_stdout_connector = {"stdout", NULL, open_file_sink};
