/* The registry of connector schemes (see connector.h). Written at start-up by the main
 * thread, read-only while jobs run. */
#include "connector.h"

#include <string.h>

#define MAX_CONNECTORS 16

static const kp_connector *registry[MAX_CONNECTORS];
static int nregistered;

int kp_connector_register(const kp_connector *c)
{
    for (int i = 0; i < nregistered; i++)
        if (!strcmp(registry[i]->scheme, c->scheme)) {
            registry[i] = c;
            return 0;
        }
    if (nregistered == MAX_CONNECTORS)
        return -1;
    registry[nregistered++] = c;
    return 0;
}

const kp_connector *kp_connector_find(const char *uri)
{
    const char *colon = strchr(uri, ':');
    size_t n = colon ? (size_t)(colon - uri) : strlen(uri);
    for (int i = 0; i < nregistered; i++)
        if (strlen(registry[i]->scheme) == n && !strncmp(registry[i]->scheme, uri, n))
            return registry[i];
    return NULL;
}
