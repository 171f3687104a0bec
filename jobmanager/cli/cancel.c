/* `kappa cancel NAME|ID`: PATCH /jobs/:id?mode=cancel. Returns once the jobmanager accepted the
 * request (the job goes CANCELLING, then CANCELED; `kappa status` shows it). */
#include <stdio.h>

#include "cli.h"
#include "rest.h"

int kp_cli_cancel(int argc, char **argv)
{
    kp_rest r = {.verb = "kappa cancel"};
    int rc = kp_rest_simple_args(&r, argc, argv, 1, "kappa cancel NAME|ID [options]");
    if (rc >= 0)
        return rc;
    char esc[1024], path[1100];
    long status;
    json_t *body = NULL;
    kp_rest_escape(argv[optind], esc, sizeof esc);
    snprintf(path, sizeof path, "/jobs/%s?mode=cancel", esc);
    rc = kp_rest_call(&r, "PATCH", path, NULL, &status, &body);
    if (rc == KP_EXIT_OK) {
        if (r.json) {
            json_t *o = json_pack("{s:s, s:b}", "job", argv[optind], "cancel_requested", 1);
            json_dumpf(o, stdout, JSON_SORT_KEYS);
            putchar('\n');
            json_decref(o);
        } else
            printf("cancelling %s\n", argv[optind]);
    }
    json_decref(body);
    return rc;
}
