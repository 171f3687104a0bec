/* Requests straight to the Elasticsearch-API node of the services (KAPPA_ES_URL, set by
 * tests/integration/with-services), for tests that check what a sink wrote or what the node
 * answers: es_bulk and es_sink each carried a copy. Needs libcurl; Criterion asserts on misuse. */
#ifndef KP_TEST_ES_HTTP_H
#define KP_TEST_ES_HTTP_H

#include <stddef.h>

/* KAPPA_ES_URL; fails the test when it is not set. */
const char *kp_test_es_url(void);

/* METHOD KAPPA_ES_URL+PATH with Content-Type CTYPE and BODY (LEN bytes; none when NULL), a 120 s
 * timeout; asserts that it got an answer. Returns the HTTP status; the body into *out (caller
 * frees, "" when empty), or dropped when out is NULL. */
long kp_test_es_request(const char *method, const char *path, const char *ctype, const char *body,
                        size_t len, char **out);

#endif
