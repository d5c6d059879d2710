/*
 * json.c: the validating scanner that every payload passes before it is
 * stored.
 *
 * cairn_json_check() accepts exactly one RFC 8259 JSON value in UTF-8 and
 * builds nothing: it reads the text once, from left to right, keeping only
 * a bit per open array or object. It follows what PostgreSQL's json type
 * accepts, so a payload that passes here is never refused by the server:
 * numbers of any size and precision, \u0000, and \uD800-style surrogate
 * escapes that do not form a pair (json keeps the escape as text and only
 * complains when a function de-escapes it; jsonb refuses both). It is
 * stricter than the server in one respect: nesting is limited to
 * JSON_MAX_DEPTH levels, so no caller can be made to hold an unbounded
 * structure.
 */
#include "cairn.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define JSON_MAX_DEPTH 1000

/* What the scanner expects at the next non-whitespace byte. */
enum json_state {
    ST_VALUE,        /* a value: at the start, after ':' and after ',' in an array */
    ST_ARRAY_FIRST,  /* a value or ']': just after '[' */
    ST_KEY,          /* a string key: after ',' in an object */
    ST_OBJECT_FIRST, /* a string key or '}': just after '{' */
    ST_COLON,        /* ':' after a key */
    ST_AFTER         /* ',' or the closing bracket after a value; nothing at depth 0 */
};

/* Where and why the text was refused. */
typedef struct json_fail {
    const unsigned char *at; /* the offending byte, or the end of the text */
    const char *what;        /* static description */
    int found;               /* non-zero: name the byte at `at` in the message */
} json_fail;

/* Record a failure and return NULL, so scanners can `return fail(...)`. */
static const unsigned char *fail(json_fail *f, const unsigned char *at, const char *what, int found)
{
    f->at = at;
    f->what = what;
    f->found = found;
    return NULL;
}

/* ASCII digit test that ignores the locale, unlike isdigit(). */
static int is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

/* ASCII hex digit test for \uXXXX escapes, independent of the locale. */
static int is_hex(unsigned c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Non-zero when one of the eight bytes in w needs a closer look inside a
 * string: a control character, a byte with the high bit set, '"' or '\\'.
 * Each test works on the low seven bits of every byte, where adding 0x7F
 * or 0x60 cannot carry into the next byte, and leaves its answer in the
 * byte's high bit; so the result is exact and nothing ever wraps.
 */
static int needs_attention(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u;
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7Fu;
    const uint64_t highs = 0x8080808080808080u;
    uint64_t quote = w ^ (ones * '"');
    uint64_t bslash = w ^ (ones * '\\');
    uint64_t is_quote = ~(((quote & low7) + low7) | quote);
    uint64_t is_bslash = ~(((bslash & low7) + low7) | bslash);
    uint64_t is_control = ~((w & low7) + ones * 0x60u);

    return ((is_quote | is_bslash | is_control | w) & highs) != 0;
}

/*
 * Check one UTF-8 sequence starting at p (whose first byte is >= 0x80) and
 * return the byte after it. The ranges are those of Unicode's table of
 * well-formed sequences, which leaves out overlong forms, UTF-16
 * surrogates (ED A0..BF) and code points above U+10FFFF.
 */
static const unsigned char *scan_utf8(const unsigned char *p, const unsigned char *end, json_fail *f)
{
    unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t n, i;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return fail(f, p, "invalid UTF-8 byte", 1);
    }
    if ((size_t)(end - p) <= n)
        return fail(f, p, "truncated UTF-8 sequence", 1);
    if (p[1] < lo || p[1] > hi)
        return fail(f, p, "invalid UTF-8 sequence", 1);
    for (i = 2; i <= n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return fail(f, p, "invalid UTF-8 sequence", 1);
    return p + n + 1;
}

/*
 * Scan a string whose opening quote is just before p and return the byte
 * after the closing quote. Plain ASCII is skipped eight bytes at a time;
 * escapes, control characters and multi-byte UTF-8 are checked one by one.
 */
static const unsigned char *scan_string(const unsigned char *p, const unsigned char *end, json_fail *f)
{
    for (;;) {
        unsigned c;

        while (end - p >= 8) {
            uint64_t w;

            memcpy(&w, p, sizeof w);
            if (needs_attention(w))
                break;
            p += 8;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p == end)
            return fail(f, p, "unterminated string", 0);
        c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            size_t i;

            if (end - p < 2)
                return fail(f, end, "unterminated string", 0);
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                for (i = 2; i < 6; i++) {
                    if (p + i == end)
                        return fail(f, end, "unterminated string", 0);
                    if (!is_hex(p[i]))
                        return fail(f, p + i, "\\u must be followed by four hexadecimal digits", 1);
                }
                p += 6;
                break;
            default:
                return fail(f, p + 1, "invalid escape in string", 1);
            }
        } else if (c == 0) {
            return fail(f, p, "NUL byte in string", 0);
        } else if (c < 0x20) {
            return fail(f, p, "control character in string must be escaped", 1);
        } else {
            p = scan_utf8(p, end, f);
            if (p == NULL)
                return NULL;
        }
    }
}

/*
 * Scan a number starting at p ('-' or a digit) and return the byte after
 * it. Only the RFC 8259 syntax is checked; the value is never converted,
 * so there is no limit on digits or exponent.
 */
static const unsigned char *scan_number(const unsigned char *p, const unsigned char *end, json_fail *f)
{
    if (*p == '-') {
        p++;
        if (p == end || !is_digit(*p))
            return fail(f, p, "expected a digit after '-'", 1);
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return fail(f, p - 1, "leading zero in number", 0);
    } else {
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p))
            return fail(f, p, "expected a digit after '.'", 1);
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return fail(f, p, "expected a digit in exponent", 1);
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

/* Match the literal word (true, false or null) at p and return the byte after it. */
static const unsigned char *scan_literal(const unsigned char *p, const unsigned char *end, const char *word,
                                         const char *what, json_fail *f)
{
    for (; *word != '\0'; word++, p++)
        if (p == end || *p != (unsigned char)*word)
            return fail(f, p, what, 1);
    return p;
}

/*
 * Write "invalid JSON at byte N: what[, found X]" into errbuf (if there is
 * room for anything at all) and return CAIRN_EJSON. N counts from 0.
 */
static int report(const unsigned char *start, const unsigned char *end, const json_fail *f, char *errbuf,
                  size_t errlen)
{
    size_t off = (size_t)(f->at - start);

    if (errbuf == NULL || errlen == 0)
        return CAIRN_EJSON;
    if (!f->found || f->at >= end) {
        snprintf(errbuf, errlen, "invalid JSON at byte %zu: %s", off, f->what);
    } else if (*f->at >= 0x20 && *f->at < 0x7F && *f->at != '\'') {
        snprintf(errbuf, errlen, "invalid JSON at byte %zu: %s, found '%c'", off, f->what, *f->at);
    } else {
        snprintf(errbuf, errlen, "invalid JSON at byte %zu: %s, found byte 0x%02X", off, f->what,
                 (unsigned)*f->at);
    }
    return CAIRN_EJSON;
}

/*
 * Check that text[0..len) is one JSON value with optional whitespace around
 * it. A table-free state machine: each turn of the loop skips whitespace
 * and consumes one token; open arrays and objects are a stack of bits
 * (set for an object), so deep input costs no recursion and no allocation.
 */
CAIRN_API int cairn_json_check(const char *text, size_t len, char *errbuf, size_t errlen)
{
    static const unsigned char empty[1] = {0};
    uint64_t objects[(JSON_MAX_DEPTH + 63) / 64] = {0};
    const unsigned char *start, *end, *p;
    enum json_state state = ST_VALUE;
    size_t depth = 0;
    json_fail f;

    if (text == NULL && len > 0) {
        if (errbuf != NULL && errlen > 0)
            snprintf(errbuf, errlen, "invalid JSON: text is NULL but length is %zu", len);
        return CAIRN_EJSON;
    }
    start = len > 0 ? (const unsigned char *)text : empty;
    end = start + len;
    p = start;

    for (;;) {
        unsigned c;

        while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
            p++;
        if (p == end)
            break;
        c = *p;

        switch (state) {
        case ST_VALUE:
        case ST_ARRAY_FIRST:
            switch (c) {
            case '"':
                p = scan_string(p + 1, end, &f);
                state = ST_AFTER;
                break;
            case '-': case '0': case '1': case '2': case '3': case '4':
            case '5': case '6': case '7': case '8': case '9':
                p = scan_number(p, end, &f);
                state = ST_AFTER;
                break;
            case 't':
                p = scan_literal(p, end, "true", "expected true", &f);
                state = ST_AFTER;
                break;
            case 'f':
                p = scan_literal(p, end, "false", "expected false", &f);
                state = ST_AFTER;
                break;
            case 'n':
                p = scan_literal(p, end, "null", "expected null", &f);
                state = ST_AFTER;
                break;
            case '[':
            case '{':
                if (depth == JSON_MAX_DEPTH) {
                    p = fail(&f, p, "nesting deeper than 1000 levels", 0);
                    break;
                }
                if (c == '{')
                    objects[depth / 64] |= (uint64_t)1 << (depth % 64);
                else
                    objects[depth / 64] &= ~((uint64_t)1 << (depth % 64));
                depth++;
                p++;
                state = c == '{' ? ST_OBJECT_FIRST : ST_ARRAY_FIRST;
                break;
            case ']':
                if (state == ST_ARRAY_FIRST) {
                    depth--;
                    p++;
                    state = ST_AFTER;
                } else if (depth > 0 && !(objects[(depth - 1) / 64] & (uint64_t)1 << ((depth - 1) % 64))) {
                    p = fail(&f, p, "trailing comma before ']'", 0);
                } else {
                    p = fail(&f, p, "expected a value", 1);
                }
                break;
            default:
                p = fail(&f, p, "expected a value", 1);
                break;
            }
            break;

        case ST_KEY:
        case ST_OBJECT_FIRST:
            if (c == '"') {
                p = scan_string(p + 1, end, &f);
                state = ST_COLON;
            } else if (c == '}' && state == ST_OBJECT_FIRST) {
                depth--;
                p++;
                state = ST_AFTER;
            } else if (c == '}') {
                p = fail(&f, p, "trailing comma before '}'", 0);
            } else {
                p = fail(&f, p, state == ST_OBJECT_FIRST ? "expected a string key or '}'" : "expected a string key",
                         1);
            }
            break;

        case ST_COLON:
            if (c == ':') {
                p++;
                state = ST_VALUE;
            } else {
                p = fail(&f, p, "expected ':'", 1);
            }
            break;

        case ST_AFTER:
            if (depth == 0) {
                p = fail(&f, p, "unexpected data after the JSON value", 1);
            } else if (objects[(depth - 1) / 64] & (uint64_t)1 << ((depth - 1) % 64)) {
                if (c == ',') {
                    p++;
                    state = ST_KEY;
                } else if (c == '}') {
                    p++;
                    depth--;
                } else {
                    p = fail(&f, p, "expected ',' or '}'", 1);
                }
            } else {
                if (c == ',') {
                    p++;
                    state = ST_VALUE;
                } else if (c == ']') {
                    p++;
                    depth--;
                } else {
                    p = fail(&f, p, "expected ',' or ']'", 1);
                }
            }
            break;
        }
        if (p == NULL)
            return report(start, end, &f, errbuf, errlen);
    }

    if (state == ST_AFTER && depth == 0)
        return CAIRN_OK;
    if (state == ST_VALUE && depth == 0)
        fail(&f, end, len == 0 ? "empty input" : "no value, only whitespace", 0);
    else
        fail(&f, end, "unexpected end of input", 0);
    return report(start, end, &f, errbuf, errlen);
}
