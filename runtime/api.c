/* The host's kp_api table: events, JSON and documents for job callbacks, plus the graph
 * builders from graph.c and the process-function context from op_process.c.
 *
 * These functions run on subtask threads, once or a few times per record, so none of them
 * allocates except to grow a reused buffer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine.h"
#include "json.h"

_Static_assert(sizeof(kp_json_doc) <= sizeof(kp_json), "kp_json too small for kp_json_doc");

static void ev_set_time(kp_event *ev, kp_time t)
{
    ev->ts = t;
}
static kp_bytes ev_key(const kp_event *ev)
{
    return ev->key;
}
static kp_bytes ev_value(const kp_event *ev)
{
    return ev->value;
}
static kp_time ev_time(const kp_event *ev)
{
    return ev->ts;
}

/* ---- JSON ---------------------------------------------------------------------------- */

static int json_parse(kp_json *j, kp_bytes raw)
{
    const char *err;
    return kp_json_scan((kp_json_doc *)j, raw.ptr, raw.len, &err);
}

static kp_str json_str(kp_json *j, const char *field)
{
    kp_str s = {"", 0};
    if (kp_json_get_str((kp_json_doc *)j, field, strlen(field), &s.ptr, &s.len) != 0)
        return (kp_str){"", 0};
    return s;
}

static int64_t json_int(kp_json *j, const char *field, int64_t dflt)
{
    int64_t v;
    return kp_json_get_int((kp_json_doc *)j, field, strlen(field), &v) == 0 ? v : dflt;
}

static double json_double(kp_json *j, const char *field, double dflt)
{
    double v;
    return kp_json_get_double((kp_json_doc *)j, field, strlen(field), &v) == 0 ? v : dflt;
}

static int json_bool(kp_json *j, const char *field, int dflt)
{
    int v;
    return kp_json_get_bool((kp_json_doc *)j, field, strlen(field), &v) == 0 ? v : dflt;
}

/* ---- documents ----------------------------------------------------------------------- */

/* Appends `s` as a JSON string literal (quotes included); -1 if out of memory. */
static int json_quote(kp_buf *b, const char *s, size_t len)
{
    if (kp_buf_reserve(b, len * 6 + 2) != 0)
        return -1;
    b->ptr[b->len++] = '"';
    b->len += kp_json_escape(b->ptr + b->len, s, len);
    b->ptr[b->len++] = '"';
    return 0;
}

static void doc_field(kp_doc *doc, const char *field)
{
    if (doc->nfields++)
        kp_doc_append(doc, ",", 1);
    if (json_quote(&doc->json, field, strlen(field)) != 0)
        doc->bad = 1;
    kp_doc_append(doc, ":", 1);
}

/* Document ids are formatted once per output record: the common conversions (%s, %.*s,
 * %d, %ld, %lld, %u, %lu, %llu, %%) are handled here without printf, anything else falls back
 * to vsnprintf. Returns 0, or -1 when the format needs the fallback (nothing consumed). */
static int fast_idv(kp_buf *b, const char *fmt, va_list ap)
{
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            if (kp_buf_append(b, f, 1) != 0)
                return -1;
            continue;
        }
        f++;
        int longs = 0;
        if (f[0] == '.' && f[1] == '*' && f[2] == 's') {
            int len = va_arg(ap, int);
            const char *str = va_arg(ap, const char *);
            if (len < 0 || kp_buf_append(b, str, (size_t)len) != 0)
                return -1;
            f += 2;
            continue;
        }
        while (*f == 'l' && longs < 2) {
            longs++;
            f++;
        }
        char num[24];
        size_t n;
        switch (*f) {
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (longs || kp_buf_append(b, str, strlen(str)) != 0)
                return -1;
            continue;
        }
        case 'd':
        case 'i':
            n = kp_fmt_i64(num, longs == 2 ? va_arg(ap, long long)
                                : longs    ? va_arg(ap, long)
                                           : va_arg(ap, int));
            break;
        case 'u':
            n = kp_fmt_u64(num, longs == 2 ? va_arg(ap, unsigned long long)
                                : longs    ? va_arg(ap, unsigned long)
                                           : va_arg(ap, unsigned));
            break;
        case '%':
            n = 1;
            num[0] = '%';
            break;
        default:
            return -1;
        }
        if (kp_buf_append(b, num, n) != 0)
            return -1;
    }
    return 0;
}

static void doc_idv(kp_doc *doc, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    doc->id.len = 0;
    int fast = fast_idv(&doc->id, fmt, ap2);
    va_end(ap2);
    if (fast == 0)
        return;
    doc->id.len = 0;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || kp_buf_reserve(&doc->id, (size_t)n + 1) != 0)
        return;
    vsnprintf(doc->id.ptr, (size_t)n + 1, fmt, ap);
    doc->id.len = (size_t)n;
}

static void doc_str(kp_doc *doc, const char *field, kp_str value)
{
    doc_field(doc, field);
    if (json_quote(&doc->json, value.ptr, value.len) != 0)
        doc->bad = 1;
}

static void doc_int(kp_doc *doc, const char *field, int64_t value)
{
    char num[24];
    size_t n = kp_fmt_i64(num, value);
    doc_field(doc, field);
    kp_doc_append(doc, num, n);
}

static void doc_double(kp_doc *doc, const char *field, double value)
{
    char num[32];
    int n = value == value && value - value == 0 ? snprintf(num, sizeof num, "%.17g", value)
                                                 : snprintf(num, sizeof num, "null");
    doc_field(doc, field);
    kp_doc_append(doc, num, (size_t)n);
}

static void doc_bool(kp_doc *doc, const char *field, bool value)
{
    doc_field(doc, field);
    kp_doc_append(doc, value ? "true" : "false", value ? 4 : 5);
}

/* ---- the table ----------------------------------------------------------------------- */

void kp_graph_api_fill(kp_api *api);
void kp_process_api_fill(kp_api *api);
void kp_collect_api_fill(kp_api *api);

static kp_api host_api;
static pthread_once_t host_api_once = PTHREAD_ONCE_INIT;

static void host_api_init(void)
{
    kp_api *a = &host_api;
    a->abi_version = KP_ABI_VERSION;
    a->struct_size = sizeof *a;
    kp_graph_api_fill(a);
    kp_process_api_fill(a);
    kp_collect_api_fill(a);
    a->event_set_key = kp_event_copy_key;
    a->event_set_value = kp_event_copy_value;
    a->event_set_time = ev_set_time;
    a->event_key = ev_key;
    a->event_value = ev_value;
    a->event_time = ev_time;
    a->json_parse = json_parse;
    a->json_str = json_str;
    a->json_int = json_int;
    a->json_double = json_double;
    a->json_bool = json_bool;
    a->doc_idv = doc_idv;
    a->doc_str = doc_str;
    a->doc_int = doc_int;
    a->doc_double = doc_double;
    a->doc_bool = doc_bool;
}

const kp_api *kp_host_api(void)
{
    pthread_once(&host_api_once, host_api_init);
    return &host_api;
}

int kp_job_define(kp_job *job, int (*define)(const kp_api *api, kp_job *job), char *errstr,
                  size_t errlen)
{
    if (define(kp_host_api(), job) != 0) {
        snprintf(errstr, errlen, "job '%s' refused kappa's ABI version %u", job->name,
                 KP_ABI_VERSION);
        return -1;
    }
    if (kp_job_validate(job) != 0) {
        snprintf(errstr, errlen, "job '%s' is invalid: %s", job->name, job->error);
        return -1;
    }
    return 0;
}

/* The host's own binding of the inline API, for jobs linked into the host (tests). */
__attribute__((visibility("hidden"))) const kp_api *kp__api = &host_api;
