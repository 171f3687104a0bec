/* The CLI's side of the jobmanager's REST API (docs/cli.md): where the jobmanager is
 * (--jobmanager, $KAPPA_JOBMANAGER, http://127.0.0.1:8081), the bearer token (--token-file,
 * $KAPPA_TOKEN), one request with libcurl, its JSON answer, and the exit code each outcome
 * maps to. Every verb that talks to the jobmanager puts KP_REST_LONGOPTS into its getopt
 * table and hands unknown options to kp_rest_opts_parse(). */
#ifndef KP_CLI_REST_H
#define KP_CLI_REST_H

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

/* Exit codes of every verb (docs/cli.md). */
enum {
    KP_EXIT_OK = 0,
    KP_EXIT_FAILED = 1,      /* the job failed, the jobmanager refused, the plugin is invalid */
    KP_EXIT_USAGE = 2,       /* bad flags; nothing was sent */
    KP_EXIT_UNREACHABLE = 3, /* no answer from the jobmanager (refused, timed out, dropped) */
    KP_EXIT_CANCELED = 4,    /* --wait: the job ended CANCELED */
};

enum { KP_OPT_JOBMANAGER = 2000, KP_OPT_TOKEN_FILE, KP_OPT_JSON, KP_OPT_HELP };

#define KP_REST_LONGOPTS                                                                           \
    {"jobmanager", required_argument, NULL, KP_OPT_JOBMANAGER},                                    \
        {"token-file", required_argument, NULL, KP_OPT_TOKEN_FILE},                                \
        {"json", no_argument, NULL, KP_OPT_JSON},                                                  \
    {                                                                                              \
        "help", no_argument, NULL, KP_OPT_HELP                                                     \
    }

typedef struct kp_rest {
    const char *verb;       /* "kappa list": prefixes messages */
    const char *url_flag;   /* --jobmanager, or NULL */
    const char *token_file; /* --token-file, or NULL */
    int json;               /* --json: print the jobmanager's JSON, not tables */
    int help;               /* --help was given */
    char url[1024];         /* resolved base URL, no trailing '/' */
    char auth[1100];        /* "Authorization: Bearer ..." or "" */
} kp_rest;

/* One option from getopt_long: 1 taken, 0 not a REST option. */
int kp_rest_opts_parse(kp_rest *r, int opt, const char *arg);

/* Resolves the URL and reads the token (after parsing). KP_EXIT_OK, or KP_EXIT_USAGE after
 * printing why (an unreadable or empty token file, a URL that is not http(s)://). */
int kp_rest_resolve(kp_rest *r);

/* Parses the flags of a verb that takes only the REST options and npos arguments (left at
 * argv[optind..]), and resolves the address. Returns -1 to go on, else the exit code to end
 * with (after --help, or a usage error already printed with the synopsis). */
int kp_rest_simple_args(kp_rest *r, int argc, char **argv, int npos, const char *synopsis);

/* The help lines of the REST options. */
void kp_rest_usage(FILE *out);

/* One request: method on base URL + path (path already escaped, see kp_rest_escape), with a
 * multipart body or none. On an HTTP answer *status is its code and *body its JSON (NULL if it
 * was not JSON; the caller decrefs). Returns KP_EXIT_OK for 2xx, KP_EXIT_FAILED for any other
 * answer (its {"errors":[...]} printed), KP_EXIT_UNREACHABLE when there was no answer (the
 * reason printed, with what to check). @locality the CLI's thread */
int kp_rest_call(kp_rest *r, const char *method, const char *path, curl_mime *mime, long *status,
                 json_t **body);

/* The same with a JSON text as the body (Content-Type: application/json). */
int kp_rest_call_json(kp_rest *r, const char *method, const char *path, const char *json,
                      long *status, json_t **body);

/* A job name or id as one escaped URL path segment, into buf. */
void kp_rest_escape(const char *s, char *buf, size_t len);

/* The value of key as a string for a table ("-" when missing or null). */
const char *kp_rest_str(json_t *obj, const char *key, char *buf, size_t len);

/* obj[key], a time in ms since the epoch, as "YYYY-MM-DD HH:MM:SS" UTC ("-" when missing or
 * not positive: -1 means "not yet"). */
void kp_rest_time(json_t *obj, const char *key, char *buf, size_t len);

#endif
