/* Fast reading of top-level fields of one JSON object (a source event).
 *
 * kp_json_scan validates the whole text (RFC 8259: a single object; nested values are
 * validated and skipped) and records where each top-level member's key and value lie, without
 * allocating. Lookups then compare keys linearly, which beats hashing for the handful of
 * fields an event has. String values with escapes are decoded into the caller's scratch
 * space on demand. This is the engine side of kp_json_* in <kappa/kappa.h>. */
#ifndef KP_JSON_H
#define KP_JSON_H

#include <stddef.h>
#include <stdint.h>

#define KP_JSON_MAX_FIELDS 32

typedef enum kp_json_type {
    KP_JSON_NULL = 0,
    KP_JSON_FALSE,
    KP_JSON_TRUE,
    KP_JSON_NUMBER,
    KP_JSON_STRING,
    KP_JSON_OBJECT,
    KP_JSON_ARRAY,
} kp_json_type;

typedef struct kp_json_field {
    uint32_t key_off, key_len; /* key without quotes, raw (may contain escapes) */
    uint32_t val_off, val_len; /* strings: without quotes, raw; others: the whole token */
    uint8_t type;              /* kp_json_type */
    uint8_t key_escaped;       /* key contains backslash escapes */
    uint8_t val_escaped;       /* string value contains backslash escapes */
} kp_json_field;

typedef struct kp_json_doc {
    const char *src;
    uint32_t len;
    uint32_t nfields; /* members beyond KP_JSON_MAX_FIELDS are validated but not indexed */
    kp_json_field f[KP_JSON_MAX_FIELDS];
    char scratch[512]; /* decoded escaped strings */
    uint32_t scratch_used;
} kp_json_doc;

/* Returns 0 if `src` is one valid JSON object (surrounding whitespace allowed), else -1 and a
 * static message in *err. Thread-safe; `doc` must outlive uses of returned strings. */
int kp_json_scan(kp_json_doc *doc, const char *src, size_t len, const char **err);

/* The field named `name` (unescaped comparison), or NULL. */
const kp_json_field *kp_json_find(const kp_json_doc *doc, const char *name, size_t name_len);

/* A string field's decoded value. Returns 0 and sets *out and *out_len, or -1 if absent, not a
 * string, or its decoded form does not fit the scratch space. */
int kp_json_get_str(kp_json_doc *doc, const char *name, size_t name_len, const char **out,
                    size_t *out_len);

/* An integer field (JSON number without fraction/exponent that fits int64). Returns 0 or -1. */
int kp_json_get_int(const kp_json_doc *doc, const char *name, size_t name_len, int64_t *out);

/* A number field as double (any JSON number). Returns 0 or -1. */
int kp_json_get_double(const kp_json_doc *doc, const char *name, size_t name_len, double *out);

/* A boolean field. Returns 0 or -1. */
int kp_json_get_bool(const kp_json_doc *doc, const char *name, size_t name_len, int *out);

/* The one JSON string escaper of the engine and its connectors (documents, bulk action
 * lines): writes s[0..n) escaped into `out`, which has room for 6n bytes, without quotes;
 * returns the length written. '"' and '\\' get a backslash, control characters become
 * \u00XX, everything else (UTF-8 included) is copied. */
size_t kp_json_escape(char *out, const char *s, size_t n);

#endif
