/* One REST request to the jobmanager with libcurl, and what its outcome means for the exit
 * code (rest.h). The answer is read into memory up to a bound (the jobmanager's answers are
 * small JSON documents); a transport failure is told apart from an HTTP error, since "the
 * jobmanager is not there" and "the jobmanager said no" ask the user for different things. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rest.h"

#define DEFAULT_URL "http://127.0.0.1:8081"
#define MAX_ANSWER  (16 << 20)

int kp_rest_opts_parse(kp_rest *r, int opt, const char *arg)
{
    switch (opt) {
    case KP_OPT_JOBMANAGER:
        r->url_flag = arg;
        return 1;
    case KP_OPT_TOKEN_FILE:
        r->token_file = arg;
        return 1;
    case KP_OPT_JSON:
        r->json = 1;
        return 1;
    case KP_OPT_HELP:
        r->help = 1;
        return 1;
    default:
        return 0;
    }
}

void kp_rest_usage(FILE *out)
{
    fprintf(out, "  --jobmanager URL         the jobmanager's REST address\n"
                 "                           (default: $KAPPA_JOBMANAGER, else " DEFAULT_URL ")\n"
                 "  --token-file F           bearer token for a jobmanager started with "
                 "--token-file\n"
                 "                           (default: $KAPPA_TOKEN)\n"
                 "  --json                   print the jobmanager's JSON instead of a table\n"
                 "  --help                   this text\n");
}

/* The token: the file's content without surrounding whitespace. */
static int read_token(kp_rest *r, char *tok, size_t len)
{
    FILE *f = fopen(r->token_file, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot read --token-file %s: %s\n", r->verb, r->token_file,
                strerror(errno));
        return -1;
    }
    size_t n = fread(tok, 1, len - 1, f);
    fclose(f);
    tok[n] = 0;
    while (n > 0 && isspace((unsigned char)tok[n - 1]))
        tok[--n] = 0;
    size_t skip = strspn(tok, " \t\r\n");
    memmove(tok, tok + skip, n - skip + 1);
    if (!*tok || strpbrk(tok, "\r\n")) {
        fprintf(stderr, "%s: --token-file %s must hold one token on one line\n", r->verb,
                r->token_file);
        return -1;
    }
    return 0;
}

int kp_rest_resolve(kp_rest *r)
{
    const char *env = getenv("KAPPA_JOBMANAGER");
    const char *url = r->url_flag ? r->url_flag : env && *env ? env : DEFAULT_URL;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        fprintf(stderr, "%s: the jobmanager address must be http://HOST:PORT, got '%s'\n", r->verb,
                url);
        return KP_EXIT_USAGE;
    }
    snprintf(r->url, sizeof r->url, "%s", url);
    size_t n = strlen(r->url);
    while (n > 0 && r->url[n - 1] == '/')
        r->url[--n] = 0;
    char tok[1024] = "";
    const char *etok = getenv("KAPPA_TOKEN");
    if (r->token_file) {
        if (read_token(r, tok, sizeof tok) != 0)
            return KP_EXIT_USAGE;
    } else if (etok && *etok) {
        snprintf(tok, sizeof tok, "%s", etok);
    }
    r->auth[0] = 0;
    if (*tok)
        snprintf(r->auth, sizeof r->auth, "Authorization: Bearer %s", tok);
    return KP_EXIT_OK;
}

typedef struct answer {
    char *buf;
    size_t len, cap;
} answer;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    size_t add = size * n;
    if (a->len + add + 1 > MAX_ANSWER)
        return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
    if (a->len + add + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + add + 1)
            cap *= 2;
        char *b = realloc(a->buf, cap);
        if (!b)
            return 0;
        a->buf = b;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, p, add);
    a->len += add;
    a->buf[a->len] = 0;
    return add;
}

/* Prints the jobmanager's {"errors":[...]} (or the status line when the body is not that),
 * and how to give a token after a 401 unless the jobmanager said so itself. */
static void print_errors(const kp_rest *r, long status, json_t *body)
{
    json_t *errs = json_object_get(body, "errors"), *e;
    size_t i;
    int told = 0;
    if (json_array_size(errs) == 0)
        fprintf(stderr, "%s: the jobmanager answered HTTP %ld\n", r->verb, status);
    json_array_foreach(errs, i, e)
    {
        const char *m = json_string_value(e);
        fprintf(stderr, "%s: the jobmanager answered HTTP %ld: %s\n", r->verb, status,
                m ? m : "(no message)");
        told |= m && strstr(m, "token-file");
    }
    if (status == 401 && !told)
        fprintf(stderr, "%s: give the jobmanager's token with --token-file F or $KAPPA_TOKEN\n",
                r->verb);
}

static int call(kp_rest *r, const char *method, const char *path, curl_mime *mime, const char *json,
                long *status, json_t **body)
{
    char url[2048], cerr[CURL_ERROR_SIZE] = "";
    answer a = {0};
    *status = 0;
    *body = NULL;
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "%s: cannot start libcurl\n", r->verb);
        return KP_EXIT_FAILED;
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: application/json");
    if (r->auth[0])
        hdr = curl_slist_append(hdr, r->auth);
    if (json)
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
    snprintf(url, sizeof url, "%s%s", r->url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 300000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (mime)
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    if (json)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    CURLcode rc = curl_easy_perform(c);
    int out;
    if (rc != CURLE_OK) {
        fprintf(stderr,
                "%s: cannot reach the jobmanager at %s: %s\n"
                "%s: is kappa-jobmanager running there? Set the address with --jobmanager URL "
                "or $KAPPA_JOBMANAGER\n",
                r->verb, r->url, cerr[0] ? cerr : curl_easy_strerror(rc), r->verb);
        out = KP_EXIT_UNREACHABLE;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        json_error_t je;
        *body = a.len ? json_loadb(a.buf, a.len, 0, &je) : NULL;
        out = *status >= 200 && *status < 300 ? KP_EXIT_OK : KP_EXIT_FAILED;
        if (out != KP_EXIT_OK)
            print_errors(r, *status, *body);
    }
    free(a.buf);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return out;
}

int kp_rest_call(kp_rest *r, const char *method, const char *path, curl_mime *mime, long *status,
                 json_t **body)
{
    return call(r, method, path, mime, NULL, status, body);
}

int kp_rest_call_json(kp_rest *r, const char *method, const char *path, const char *json,
                      long *status, json_t **body)
{
    return call(r, method, path, NULL, json, status, body);
}

void kp_rest_escape(const char *s, char *buf, size_t len)
{
    char *e = curl_easy_escape(NULL, s, 0);
    snprintf(buf, len, "%s", e ? e : "");
    curl_free(e);
}

int kp_rest_simple_args(kp_rest *r, int argc, char **argv, int npos, const char *synopsis)
{
    static const struct option longopts[] = {KP_REST_LONGOPTS, {0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if (c == 'h')
            r->help = 1;
        else if (!kp_rest_opts_parse(r, c, optarg))
            goto usage;
    if (r->help) {
        printf("usage: %s\n", synopsis);
        kp_rest_usage(stdout);
        return KP_EXIT_OK;
    }
    if (argc - optind != npos) {
        fprintf(stderr, "%s: expected %d argument%s, got %d\n", r->verb, npos, npos == 1 ? "" : "s",
                argc - optind);
        goto usage;
    }
    return kp_rest_resolve(r) == KP_EXIT_OK ? -1 : KP_EXIT_USAGE;
usage:
    fprintf(stderr, "usage: %s\n", synopsis);
    kp_rest_usage(stderr);
    return KP_EXIT_USAGE;
}

const char *kp_rest_str(json_t *obj, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
    else
        snprintf(buf, len, "-");
    return buf;
}

void kp_rest_time(json_t *obj, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(obj, key);
    json_int_t ms = json_is_integer(v) ? json_integer_value(v) : -1;
    if (ms <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}
