/* Validating single-pass indexer for the JSON object that every source event is.
 *
 * A job's decode function calls kp_json_scan once per event and then looks up two or three
 * top-level fields, so this file is the hot path of every source. It is built for that shape:
 *
 * - One forward pass validates the whole text strictly (RFC 8259) and records, for each of the
 *   first KP_JSON_MAX_FIELDS top-level members, where its key and value lie. Nothing is
 *   allocated and nothing is copied; nested objects and arrays are validated with an explicit
 *   bit stack (no recursion) and skipped.
 * - String bodies are skipped eight bytes at a time (SWAR): one 64-bit load answers "is there a
 *   quote, a backslash, a control character or a non-ASCII byte in here?". Only those bytes
 *   leave the fast loop. Runs of digits are skipped the same way.
 * - Decoding happens only on demand: kp_json_get_str returns a pointer into the source unless
 *   the value has escapes, which are then decoded into doc->scratch.
 *
 * Strictness (all rejected with a static message):
 * - the top level must be one object, optionally surrounded by space, tab, CR or LF; anything
 *   after it is an error; no BOM, no comments, no trailing commas, no single quotes;
 * - numbers follow the RFC grammar exactly: no leading zeros, no '+', no bare '.', no "1.",
 *   no "1e"; NaN/Infinity are not literals. Numbers of any size are accepted by the scan (the
 *   grammar has no limit); kp_json_get_int/get_double reject what they cannot represent;
 * - strings must be valid UTF-8 (no overlongs, no UTF-8-encoded surrogates, nothing above
 *   U+10FFFF), must not contain raw control characters (< 0x20), and may only use the escapes
 *   \" \\ \/ \b \f \n \r \t \uXXXX;
 * - a \u escape of a surrogate must be a high surrogate immediately followed by a \u escape of
 *   a low surrogate; lone or reversed surrogates are REJECTED (not replaced by U+FFFD), so
 *   every accepted string decodes to valid UTF-8. \u0000 is accepted (RFC-valid) and decodes
 *   to a NUL byte; lengths are always explicit;
 * - nesting deeper than KP_JSON_MAX_DEPTH levels (the top-level object is level 1).
 *
 * Duplicate keys are accepted (RFC 8259 leaves them to the application); lookups return the
 * FIRST occurrence. Members after the first KP_JSON_MAX_FIELDS are validated but not indexed,
 * so lookups cannot see them.
 *
 * @locality any thread; every function works only on the doc it is given.  @locks none */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, newlocale */
#endif

#include "json.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Deepest nesting accepted, counting the top-level object as level 1. Nested containers are
 * tracked in a 64-bit stack, one bit per level below the top, so this cannot exceed 65. */
#define KP_JSON_MAX_DEPTH 64

typedef const unsigned char *ptr_t;

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KP_JSON_SWAR 1
#else
#define KP_JSON_SWAR 0
#endif

#if defined(__GNUC__)
#define LIKELY(x)     __builtin_expect(!!(x), 1)
#define UNLIKELY(x)   __builtin_expect(!!(x), 0)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE      __attribute__((noinline))
#else
#define LIKELY(x)     (x)
#define UNLIKELY(x)   (x)
#define ALWAYS_INLINE inline
#define NOINLINE
#endif

/* ---- character classes ------------------------------------------------------------------ */

static inline int is_ws(unsigned c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int is_digit(unsigned c)
{
    return c - '0' < 10u;
}

static inline ptr_t skip_ws(ptr_t p, ptr_t end)
{
    /* Events are usually compact: one compare decides the common case. */
    while (p < end && *p <= ' ' && is_ws(*p))
        p++;
    return p;
}

/* Value of a hex digit, or -1. */
static inline int hexval(unsigned c)
{
    if (c - '0' < 10u)
        return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6u)
        return (int)(c - 'a' + 10);
    return -1;
}

/* The four hex digits at p (caller checked they are in bounds), or -1. */
static inline long hex4(ptr_t p)
{
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    if ((a | b | c | d) < 0)
        return -1;
    return (long)((a << 12) | (b << 8) | (c << 4) | d);
}

#if KP_JSON_SWAR
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t load64(ptr_t p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* High bit set in each byte that is '"', '\\', < 0x20 or >= 0x80. Borrows can only set bits
 * ABOVE a byte that really matches, so the lowest set bit is always exact. */
static inline uint64_t string_special(uint64_t x)
{
    uint64_t q = x ^ (ONES * '"');
    uint64_t b = x ^ (ONES * '\\');
    uint64_t t = ((q - ONES) & ~q) | ((b - ONES) & ~b) | (x - ONES * 0x20) | x;
    return t & HIGHS;
}

/* High bit set in each byte that is not an ASCII digit; the lowest set bit is exact. */
static inline uint64_t non_digit(uint64_t x)
{
    uint64_t t = x ^ (ONES * '0'); /* digits become 0..9 */
    return ((t + ONES * 0x76) | t) & HIGHS;
}
#endif

/* First byte at or after p that is '"', '\\', a control character or non-ASCII, or end. */
static inline ptr_t find_string_special(ptr_t p, ptr_t end)
{
#if KP_JSON_SWAR
    while (end - p >= 8) {
        uint64_t m = string_special(load64(p));
        if (m)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80)
        p++;
    return p;
}

static inline ptr_t skip_digits(ptr_t p, ptr_t end)
{
#if KP_JSON_SWAR
    while (end - p >= 8) {
        uint64_t m = non_digit(load64(p));
        if (m)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && is_digit(*p))
        p++;
    return p;
}

/* ---- scanning: each returns the position after what it consumed, or NULL and *err ------- */

/* p is at a backslash inside a string. */
static ptr_t scan_escape(ptr_t p, ptr_t end, const char **err)
{
    if (end - p < 2) {
        *err = "unterminated string";
        return NULL;
    }
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return p + 2;
    case 'u':
        break;
    default:
        *err = "invalid escape in string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)";
        return NULL;
    }
    long cp = end - p >= 6 ? hex4(p + 2) : -1;
    if (cp < 0) {
        *err = "invalid \\u escape: expected four hex digits";
        return NULL;
    }
    if (cp < 0xD800 || cp > 0xDFFF)
        return p + 6;
    if (cp >= 0xDC00) {
        *err = "lone low surrogate in \\u escape (\\uDC00-\\uDFFF must follow a high surrogate)";
        return NULL;
    }
    long lo = end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
    if (lo < 0xDC00 || lo > 0xDFFF) {
        *err = "lone high surrogate in \\u escape (\\uD800-\\uDBFF must be followed by "
               "\\uDC00-\\uDFFF)";
        return NULL;
    }
    return p + 12;
}

/* p is at a byte >= 0x80 inside a string: one well-formed UTF-8 sequence (Unicode 3.9). */
static ptr_t scan_utf8(ptr_t p, ptr_t end, const char **err)
{
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    ptrdiff_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlongs */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80; /* no overlongs */
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        *err = "invalid UTF-8 in string";
        return NULL;
    }
    if (end - p < n || p[1] < lo || p[1] > hi) {
        *err = "invalid UTF-8 in string";
        return NULL;
    }
    for (ptrdiff_t i = 2; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *err = "invalid UTF-8 in string";
            return NULL;
        }
    }
    return p + n;
}

/* Continues a string at p, a byte that is not its closing quote: escapes, non-ASCII and the
 * errors. Kept out of line so the common case below stays small enough to inline. */
static NOINLINE ptr_t scan_string_slow(ptr_t p, ptr_t end, uint8_t *escaped, const char **err)
{
    for (;;) {
        if (p >= end) {
            *err = "unterminated string";
            return NULL;
        }
        if (*p == '\\') {
            *escaped = 1;
            p = scan_escape(p, end, err);
        } else if (*p < 0x20) {
            *err = "raw control character in string (escape it, e.g. \\n or \\u001f)";
            return NULL;
        } else {
            p = scan_utf8(p, end, err);
        }
        if (!p)
            return NULL;
        p = find_string_special(p, end);
        if (p < end && *p == '"')
            return p;
    }
}

/* p is just after the opening quote. Returns the position of the closing quote. */
static ALWAYS_INLINE ptr_t scan_string(ptr_t p, ptr_t end, uint8_t *escaped, const char **err)
{
    p = find_string_special(p, end);
    if (LIKELY(p < end && *p == '"'))
        return p;
    return scan_string_slow(p, end, escaped, err);
}

/* p is at '-' or a digit. */
static ptr_t scan_number(ptr_t p, ptr_t end, const char **err)
{
    if (*p == '-') {
        p++;
        if (p >= end || !is_digit(*p)) {
            *err = "invalid number: expected a digit after '-'";
            return NULL;
        }
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) {
            *err = "invalid number: leading zeros are not allowed";
            return NULL;
        }
    } else {
        p = skip_digits(p + 1, end);
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) {
            *err = "invalid number: expected a digit after '.'";
            return NULL;
        }
        p = skip_digits(p + 1, end);
    }
    if (p < end && (*p | 0x20) == 'e') {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p)) {
            *err = "invalid number: expected a digit in the exponent";
            return NULL;
        }
        p = skip_digits(p + 1, end);
    }
    return p;
}

/* p is at 't', 'f' or 'n'. */
static ptr_t scan_literal(ptr_t p, ptr_t end, uint8_t *type, const char **err)
{
    ptrdiff_t left = end - p;
    if (*p == 't' && left >= 4 && memcmp(p, "true", 4) == 0) {
        *type = KP_JSON_TRUE;
        return p + 4;
    }
    if (*p == 'f' && left >= 5 && memcmp(p, "false", 5) == 0) {
        *type = KP_JSON_FALSE;
        return p + 5;
    }
    if (*p == 'n' && left >= 4 && memcmp(p, "null", 4) == 0) {
        *type = KP_JSON_NULL;
        return p + 4;
    }
    *err = "invalid literal (expected true, false or null)";
    return NULL;
}

/* A scalar value at p (not a container). Sets *type; for strings, *vstart and *vend exclude the
 * quotes and the return value is past the closing quote. */
static ALWAYS_INLINE ptr_t scan_scalar(ptr_t p, ptr_t end, uint8_t *type, uint8_t *escaped,
                                       ptr_t *vstart, ptr_t *vend, const char **err)
{
    switch (*p) {
    case '"':
        *type = KP_JSON_STRING;
        *vstart = p + 1;
        p = scan_string(p + 1, end, escaped, err);
        if (!p)
            return NULL;
        *vend = p;
        return p + 1;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        *type = KP_JSON_NUMBER;
        *vstart = p;
        p = scan_number(p, end, err);
        *vend = p;
        return p;
    case 't':
    case 'f':
    case 'n':
        *vstart = p;
        p = scan_literal(p, end, type, err);
        *vend = p;
        return p;
    default:
        *err = *p == '\'' ? "single quotes are not JSON: use '\"'"
                          : "expected a value (string, number, object, array, true, false, null)";
        return NULL;
    }
}

/* p is at the '{' or '[' of a value nested in the top-level object; validates the whole value
 * and returns the position after its closing bracket. An explicit bit stack replaces recursion:
 * bit 0 says whether the innermost open container is an object. */
static ptr_t skip_nested(ptr_t p, ptr_t end, const char **err)
{
    uint64_t stack = 0;
    unsigned depth = 0; /* containers open below the top-level object */
    uint8_t type, escaped;
    ptr_t vs, ve;

open: /* p is at '{' or '[' */
    if (depth + 2 > KP_JSON_MAX_DEPTH) {
        *err = "nesting too deep (limit 64 levels)";
        return NULL;
    }
    stack = (stack << 1) | (*p == '{');
    depth++;
    p = skip_ws(p + 1, end);
    if (p < end && *p == ((stack & 1) ? '}' : ']')) {
        p++;
        goto close;
    }
    goto element;

next: /* just after a ',' */
    if (p < end && (*p == '}' || *p == ']')) {
        *err = "trailing comma before a closing bracket";
        return NULL;
    }

element: /* p is at a member name (objects) or a value (arrays), after whitespace */
    if (p >= end) {
        *err = "unexpected end of input inside a nested value";
        return NULL;
    }
    if (stack & 1) {
        if (*p != '"') {
            *err = "expected '\"' to start a member name";
            return NULL;
        }
        p = scan_string(p + 1, end, &escaped, err);
        if (!p)
            return NULL;
        p = skip_ws(p + 1, end);
        if (p >= end || *p != ':') {
            *err = "expected ':' after a member name";
            return NULL;
        }
        p = skip_ws(p + 1, end);
        if (p >= end) {
            *err = "unexpected end of input: expected a value";
            return NULL;
        }
    }
    if (*p == '{' || *p == '[')
        goto open;
    p = scan_scalar(p, end, &type, &escaped, &vs, &ve, err);
    if (!p)
        return NULL;

after_value:
    p = skip_ws(p, end);
    if (p >= end) {
        *err = "unexpected end of input inside a nested value";
        return NULL;
    }
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        goto next;
    }
    if (*p != ((stack & 1) ? '}' : ']')) {
        *err = (stack & 1) ? "expected ',' or '}' in a nested object"
                           : "expected ',' or ']' in an array";
        return NULL;
    }
    p++;

close: /* just after the closing bracket of the innermost container */
    stack >>= 1;
    if (--depth == 0)
        return p;
    goto after_value;
}

int kp_json_scan(kp_json_doc *doc, const char *src, size_t len, const char **err)
{
    const char *e = NULL;
    doc->src = src;
    doc->len = 0;
    doc->nfields = 0;
    doc->scratch_used = 0;
    if (len > UINT32_MAX) {
        e = "document too large (limit 4 GiB)";
        goto fail;
    }
    if (!src)
        len = 0;
    doc->len = (uint32_t)len;

    const ptr_t base = (ptr_t)src, end = base + len;
    ptr_t p = skip_ws(base, end);
    if (p >= end) {
        e = "empty document: expected a JSON object";
        goto fail;
    }
    if (*p != '{') {
        e = "top-level value is not an object: expected '{'";
        goto fail;
    }
    p = skip_ws(p + 1, end);
    uint32_t n = 0;
    if (p < end && *p == '}') {
        p++;
        goto done;
    }
    kp_json_field spill; /* where members beyond KP_JSON_MAX_FIELDS are recorded */
    for (;;) {
        /* Fields are written in place: building one on the stack and copying it costs a
         * store-forwarding stall per member. */
        kp_json_field *f = LIKELY(n < KP_JSON_MAX_FIELDS) ? &doc->f[n] : &spill;
        f->key_escaped = 0;
        f->val_escaped = 0;
        if (UNLIKELY(p >= end || *p != '"')) {
            e = p >= end    ? "unexpected end of input: expected a member name"
                : *p == '}' ? "trailing comma before '}'"
                            : "expected '\"' to start a member name";
            goto fail;
        }
        ptr_t ks = p + 1;
        p = scan_string(ks, end, &f->key_escaped, &e);
        if (!p)
            goto fail;
        f->key_off = (uint32_t)(ks - base);
        f->key_len = (uint32_t)(p - ks);
        p = skip_ws(p + 1, end);
        if (UNLIKELY(p >= end || *p != ':')) {
            e = "expected ':' after a member name";
            goto fail;
        }
        p = skip_ws(p + 1, end);
        if (UNLIKELY(p >= end)) {
            e = "unexpected end of input: expected a value";
            goto fail;
        }
        ptr_t vs = p, ve;
        if (*p == '{' || *p == '[') {
            f->type = *p == '{' ? KP_JSON_OBJECT : KP_JSON_ARRAY;
            p = ve = skip_nested(p, end, &e);
        } else {
            p = scan_scalar(p, end, &f->type, &f->val_escaped, &vs, &ve, &e);
        }
        if (!p)
            goto fail;
        f->val_off = (uint32_t)(vs - base);
        f->val_len = (uint32_t)(ve - vs);
        n++;
        p = skip_ws(p, end);
        if (LIKELY(p < end && *p == ',')) {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (LIKELY(p < end && *p == '}')) {
            p++;
            break;
        }
        e = p >= end ? "unexpected end of input: expected ',' or '}'"
                     : "expected ',' or '}' after a member";
        goto fail;
    }
done:
    if (UNLIKELY(skip_ws(p, end) != end)) {
        e = "trailing characters after the top-level object";
        goto fail;
    }
    doc->nfields = n < KP_JSON_MAX_FIELDS ? n : KP_JSON_MAX_FIELDS;
    return 0;
fail:
    doc->nfields = 0;
    if (err)
        *err = e;
    return -1;
}

/* ---- decoding --------------------------------------------------------------------------- */

/* Decodes the escape at *sp (already validated by the scan) into out[0..4) and advances *sp. */
static size_t decode_escape(ptr_t *sp, unsigned char out[4])
{
    ptr_t s = *sp;
    unsigned long cp;
    *sp = s + 2;
    switch (s[1]) {
    case 'b':
        out[0] = '\b';
        return 1;
    case 'f':
        out[0] = '\f';
        return 1;
    case 'n':
        out[0] = '\n';
        return 1;
    case 'r':
        out[0] = '\r';
        return 1;
    case 't':
        out[0] = '\t';
        return 1;
    case 'u':
        break;
    default: /* '"', '\\', '/' */
        out[0] = s[1];
        return 1;
    }
    cp = (unsigned long)hex4(s + 2);
    *sp = s + 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) { /* the scan guaranteed a low surrogate follows */
        cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)hex4(s + 8) - 0xDC00);
        *sp = s + 12;
    }
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Whether the raw (escaped) string s[0..n) decodes to name[0..name_len). */
static int escaped_equals(ptr_t s, size_t n, const char *name, size_t name_len)
{
    ptr_t end = s + n;
    const unsigned char *q = (const unsigned char *)name, *qend = q + name_len;
    while (s < end) {
        if (*s != '\\') {
            if (q == qend || *q != *s)
                return 0;
            q++;
            s++;
            continue;
        }
        unsigned char buf[4];
        size_t k = decode_escape(&s, buf);
        if ((size_t)(qend - q) < k || memcmp(q, buf, k) != 0)
            return 0;
        q += k;
    }
    return q == qend;
}

/* a[0..n) == b[0..n) for the short keys events have, without a call into libc: two
 * overlapping loads cover any length from 4 to 16. */
static ALWAYS_INLINE int key_equals(const char *a, const char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&b0, b, 8);
        memcpy(&a1, a + n - 8, 8);
        memcpy(&b1, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&b0, b, 4);
        memcpy(&a1, a + n - 4, 4);
        memcpy(&b1, b + n - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

const kp_json_field *kp_json_find(const kp_json_doc *doc, const char *name, size_t name_len)
{
    for (uint32_t i = 0; i < doc->nfields; i++) {
        const kp_json_field *f = &doc->f[i];
        if (f->key_len == name_len && !f->key_escaped &&
            key_equals(doc->src + f->key_off, name, name_len))
            return f;
        /* Decoding never lengthens a string, so a shorter raw key cannot match. */
        if (UNLIKELY(f->key_escaped) && f->key_len >= name_len &&
            escaped_equals((ptr_t)doc->src + f->key_off, f->key_len, name, name_len))
            return f;
    }
    return NULL;
}

int kp_json_get_str(kp_json_doc *doc, const char *name, size_t name_len, const char **out,
                    size_t *out_len)
{
    const kp_json_field *f = kp_json_find(doc, name, name_len);
    if (!f || f->type != KP_JSON_STRING)
        return -1;
    ptr_t s = (ptr_t)doc->src + f->val_off, end = s + f->val_len;
    if (LIKELY(!f->val_escaped)) {
        *out = (const char *)s;
        *out_len = f->val_len;
        return 0;
    }
    if (doc->scratch_used > sizeof doc->scratch)
        return -1;
    unsigned char *dst = (unsigned char *)doc->scratch + doc->scratch_used;
    size_t room = sizeof doc->scratch - doc->scratch_used, o = 0;
    while (s < end) {
        ptr_t bs = memchr(s, '\\', (size_t)(end - s));
        size_t run = (size_t)((bs ? bs : end) - s);
        if (run > room - o)
            return -1;
        memcpy(dst + o, s, run);
        o += run;
        s += run;
        if (!bs)
            break;
        unsigned char buf[4];
        size_t k = decode_escape(&s, buf);
        if (k > room - o)
            return -1;
        memcpy(dst + o, buf, k);
        o += k;
    }
    doc->scratch_used += (uint32_t)o;
    *out = (const char *)dst;
    *out_len = o;
    return 0;
}

/* The validated number token s[0..n) as int64, or -1 for fractions, exponents, overflow. */
static int parse_int(const char *s, size_t n, int64_t *out)
{
    /* A SWAR eight-digits-per-step version measured ~1 ns faster on a 13-digit timestamp:
     * not worth its complexity. */
    const char *p = s + (s[0] == '-'), *end = s + n;
    if (end - p > 19) /* no leading zeros: 20+ digits is at least 1e19 > INT64_MAX */
        return -1;
    uint64_t v = 0;
    for (; p < end; p++) {
        unsigned d = (unsigned char)*p - '0';
        if (d > 9)
            return -1; /* '.', 'e' or 'E' */
        v = v * 10 + d;
    }
    if (s[0] != '-') {
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    }
    return 0;
}

int kp_json_get_int(const kp_json_doc *doc, const char *name, size_t name_len, int64_t *out)
{
    const kp_json_field *f = kp_json_find(doc, name, name_len);
    if (!f || f->type != KP_JSON_NUMBER)
        return -1;
    return parse_int(doc->src + f->val_off, f->val_len, out);
}

/* strtod depends on LC_NUMERIC; JSON always uses '.', so the slow path uses a "C" locale. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* The validated number token s[0..n) as the nearest double. Short decimals take Clinger's
 * exact fast path (mantissa < 2^53, |power of ten| <= 22: one correctly rounded IEEE
 * operation); everything else goes to strtod_l. */
static int parse_double(const char *s, size_t n, double *out)
{
    static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                         1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                         1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *p = s, *end = s + n;
    int neg = *p == '-';
    p += neg;
    uint64_t m = 0;
    int sig = 0, exp10 = 0, fast = FLT_EVAL_METHOD == 0;
    for (; p < end && is_digit((unsigned char)*p); p++) {
        m = m * 10 + (unsigned)(*p - '0');
        sig += m != 0;
        if (sig > 19)
            fast = 0;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && is_digit((unsigned char)*p); p++) {
            m = m * 10 + (unsigned)(*p - '0');
            sig += m != 0;
            if (sig > 19 || exp10 < -100000)
                fast = 0; /* also keeps exp10 from overflowing on absurd inputs */
            else
                exp10--;
        }
    }
    if (p < end) { /* exponent */
        int eneg = 0, e = 0;
        p++;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        for (; p < end; p++) {
            if (e > 100000) {
                fast = 0;
                break;
            }
            e = e * 10 + (*p - '0');
        }
        exp10 += eneg ? -e : e;
    }
    if (fast && m <= (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
        double d = (double)m;
        d = exp10 < 0 ? d / exact_pow10[-exp10] : d * exact_pow10[exp10];
        *out = neg ? -d : d;
        return 0;
    }
    /* The token is followed by a delimiter inside the document, so strtod stops at its end. */
    char *stop;
    pthread_once(&c_locale_once, c_locale_init);
    double d = c_locale ? strtod_l(s, &stop, c_locale) : strtod(s, &stop);
    if (stop != end || isinf(d))
        return -1; /* overflow: the nearest double would be infinity */
    *out = d;
    return 0;
}

int kp_json_get_double(const kp_json_doc *doc, const char *name, size_t name_len, double *out)
{
    const kp_json_field *f = kp_json_find(doc, name, name_len);
    if (!f || f->type != KP_JSON_NUMBER)
        return -1;
    return parse_double(doc->src + f->val_off, f->val_len, out);
}

int kp_json_get_bool(const kp_json_doc *doc, const char *name, size_t name_len, int *out)
{
    const kp_json_field *f = kp_json_find(doc, name, name_len);
    if (!f || (f->type != KP_JSON_TRUE && f->type != KP_JSON_FALSE))
        return -1;
    *out = f->type == KP_JSON_TRUE;
    return 0;
}

size_t kp_json_escape(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}
