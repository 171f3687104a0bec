/* The dashboard's static files, served from the copy compiled into the binary (web_assets.c,
 * generated from jobmanager/web/ by web/embed.py): a path is looked up by exact name in that
 * table, so nothing a client sends ever reaches the file system. rest.c has already refused
 * paths with "..", '%' or control characters; anything not in the table is a 404. Each file
 * is also compiled in gzip'd, sent to clients that accept it (the dashboard: 29 KB -> 10 KB). */
#include <stdbool.h>
#include <string.h>

#include "rest_int.h"

/* The client takes gzip: a "gzip" token in Accept-Encoding, not refused with ";q=0". */
static bool accepts_gzip(struct MHD_Connection *conn)
{
    const char *ae = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding");
    for (const char *g = ae; g && (g = strstr(g, "gzip")); g += 4) {
        const char *after = g + 4;
        bool starts = g == ae || g[-1] == ' ' || g[-1] == ',';
        bool ends = !*after || *after == ',' || *after == ';' || *after == ' ';
        if (starts && ends)
            return !(strncmp(after, ";q=0", 4) == 0 && after[4] != '.');
    }
    return false;
}

enum MHD_Result kp_rest_static(struct MHD_Connection *conn, const char *path)
{
    if (!strcmp(path, "/"))
        path = "/web/index.html";
    for (size_t i = 0; i < kp_web_nassets; i++) {
        const kp_web_asset_t *a = &kp_web_assets[i];
        if (strcmp(a->path, path))
            continue;
        bool gz = accepts_gzip(conn);
        struct MHD_Response *r = MHD_create_response_from_buffer(
            gz ? a->gz_len : a->len, (void *)(gz ? a->gz : a->data), MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "Content-Type", a->ctype);
        MHD_add_response_header(r, "Vary", "Accept-Encoding");
        if (gz)
            MHD_add_response_header(r, "Content-Encoding", "gzip");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'");
        enum MHD_Result rc = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return rc;
    }
    return kp_rest_send_error(conn, 404, "no such file in the dashboard");
}
