/* A fault-injecting HTTP/1.1 proxy for tests: sits on a free 127.0.0.1 port between a client
 * (the es: sink) and a real Elasticsearch node and breaks things on purpose —
 *  - rewrites a fraction of the items of _bulk responses into 429 (inside an HTTP 200), after
 *    the node has applied them, so a retry meets its own earlier write;
 *  - drops connections: before forwarding a request (mid-request), or after the node answered
 *    but before the client hears it;
 *  - "node down": for a while, closes every connection at once (reset) or holds it unanswered;
 *  - answers every request with a fixed status (e.g. 401) instead of forwarding;
 *  - slows the node down: waits a fixed delay before forwarding each request.
 * One thread accepts, one thread per client connection forwards (each with its own keep-alive
 * connection to the node). All setters may be called from any thread while it runs. */
#ifndef KP_FAULT_PROXY_H
#define KP_FAULT_PROXY_H

#include <stdint.h>

typedef struct fault_proxy fault_proxy;

typedef struct fault_proxy_stats {
    uint64_t requests;        /* requests read from clients */
    uint64_t items_rewritten; /* _bulk items turned into 429 */
    uint64_t dropped_before;  /* connections closed before forwarding a request */
    uint64_t dropped_after;   /* connections closed after the node answered */
    uint64_t refused;         /* connections closed while "down" */
} fault_proxy_stats;

/* Starts a proxy to `upstream` ("http://127.0.0.1:PORT"). Returns NULL (with a message on
 * stderr) on failure. */
fault_proxy *fault_proxy_start(const char *upstream);

/* "http://127.0.0.1:PORT" of the proxy; valid until fault_proxy_stop. */
const char *fault_proxy_url(const fault_proxy *p);

/* Fraction (0..1) of _bulk response items rewritten to 429. */
void fault_proxy_set_item_429(fault_proxy *p, double fraction);

/* Per-request probabilities of dropping the connection before forwarding the request and
 * after the node answered it. */
void fault_proxy_set_drops(fault_proxy *p, double before, double after);

/* 0: forward (default); otherwise answer every request with this HTTP status. */
void fault_proxy_set_status(fault_proxy *p, int status);

/* For the next `ms` milliseconds the node is "down": new and kept-alive connections are reset
 * (hold=0) or accepted and left unanswered until the end of the period, then reset (hold=1). */
void fault_proxy_down(fault_proxy *p, int ms, int hold);

/* Milliseconds to wait before forwarding each request (0, the default: none); takes effect
 * from the next request on. */
void fault_proxy_set_delay(fault_proxy *p, int ms);

fault_proxy_stats fault_proxy_get_stats(fault_proxy *p);

/* Stops accepting, closes every connection, waits for the threads, frees. NULL is fine. */
void fault_proxy_stop(fault_proxy *p);

#endif
