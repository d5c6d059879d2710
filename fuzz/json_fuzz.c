/*
 * libFuzzer target for cairn_json_check().
 *
 * Every input is checked twice: by the library's single-pass scanner and by
 * the small recursive-descent checker below, written for obviousness rather
 * than speed (it decodes each UTF-8 sequence into a code point and tests the
 * number, where the library compares byte ranges). Any disagreement aborts.
 * The error message contract is checked too: its prefix, that the byte
 * offset lies within the input, and that a short errbuf is never overrun.
 * Each input is also checked wrapped in arrays near the nesting limit.
 */
#include "cairn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_MAX_DEPTH 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference checker's cursor. */
typedef struct ref {
    const unsigned char *s;
    size_t n;
    size_t i;
} ref;

static int ref_peek(const ref *r)
{
    return r->i < r->n ? r->s[r->i] : -1;
}

/* Consume c if it is next. */
static int ref_eat(ref *r, int c)
{
    if (ref_peek(r) != c)
        return 0;
    r->i++;
    return 1;
}

static void ref_ws(ref *r)
{
    while (ref_eat(r, ' ') || ref_eat(r, '\t') || ref_eat(r, '\n') || ref_eat(r, '\r'))
        ;
}

/* Consume one or more decimal digits. */
static int ref_digits(ref *r)
{
    size_t from = r->i;

    while (ref_peek(r) >= '0' && ref_peek(r) <= '9')
        r->i++;
    return r->i > from;
}

/* Consume a literal word. */
static int ref_word(ref *r, const char *word)
{
    for (; *word != '\0'; word++)
        if (!ref_eat(r, (unsigned char)*word))
            return 0;
    return 1;
}

/* Consume one unescaped character of a string: printable ASCII or a well-formed UTF-8 sequence. */
static int ref_char(ref *r)
{
    unsigned c = r->s[r->i++];
    unsigned cp, min;
    int more;

    if (c < 0x80)
        return c >= 0x20;
    if ((c & 0xE0) == 0xC0) {
        cp = c & 0x1F;
        more = 1;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        cp = c & 0x0F;
        more = 2;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        cp = c & 0x07;
        more = 3;
        min = 0x10000;
    } else {
        return 0;
    }
    while (more-- > 0) {
        if (r->i >= r->n || (r->s[r->i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (r->s[r->i++] & 0x3Fu);
    }
    return cp >= min && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
}

/* Consume a string, quotes included. Any \uXXXX is accepted, as PostgreSQL's json type does. */
static int ref_string(ref *r)
{
    if (!ref_eat(r, '"'))
        return 0;
    for (;;) {
        int c = ref_peek(r);

        if (c < 0)
            return 0;
        if (c == '"') {
            r->i++;
            return 1;
        }
        if (c == '\\') {
            r->i++;
            c = ref_peek(r);
            if (c <= 0)
                return 0;
            r->i++;
            if (c == 'u') {
                int k;

                for (k = 0; k < 4; k++) {
                    c = ref_peek(r);
                    if (c <= 0 || strchr("0123456789abcdefABCDEF", c) == NULL)
                        return 0;
                    r->i++;
                }
            } else if (strchr("\"\\/bfnrt", c) == NULL) {
                return 0;
            }
        } else if (!ref_char(r)) {
            return 0;
        }
    }
}

/* Consume a number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int ref_number(ref *r)
{
    ref_eat(r, '-');
    if (!ref_eat(r, '0') && !ref_digits(r))
        return 0;
    if (ref_eat(r, '.') && !ref_digits(r))
        return 0;
    if (ref_eat(r, 'e') || ref_eat(r, 'E')) {
        if (!ref_eat(r, '+'))
            ref_eat(r, '-');
        if (!ref_digits(r))
            return 0;
    }
    return 1;
}

/* Consume one value with the whitespace before it; depth counts the containers already open. */
static int ref_value(ref *r, int depth)
{
    int c;

    ref_ws(r);
    c = ref_peek(r);
    if (c == '[' || c == '{') {
        int close = c == '[' ? ']' : '}';

        if (depth == REF_MAX_DEPTH)
            return 0;
        r->i++;
        ref_ws(r);
        if (ref_eat(r, close))
            return 1;
        for (;;) {
            if (c == '{') {
                ref_ws(r);
                if (!ref_string(r))
                    return 0;
                ref_ws(r);
                if (!ref_eat(r, ':'))
                    return 0;
            }
            if (!ref_value(r, depth + 1))
                return 0;
            ref_ws(r);
            if (ref_eat(r, close))
                return 1;
            if (!ref_eat(r, ','))
                return 0;
        }
    }
    if (c == '"')
        return ref_string(r);
    if (c == 't')
        return ref_word(r, "true");
    if (c == 'f')
        return ref_word(r, "false");
    if (c == 'n')
        return ref_word(r, "null");
    if (c == '-' || (c >= '0' && c <= '9'))
        return ref_number(r);
    return 0;
}

/* The reference verdict: one value, then only whitespace. */
static int ref_check(const unsigned char *s, size_t n)
{
    ref r = {s, n, 0};

    if (!ref_value(&r, 0))
        return 0;
    ref_ws(&r);
    return r.i == r.n;
}

/* Print the input and both verdicts, then stop the fuzzer. */
static _Noreturn void disagree(const uint8_t *data, size_t size, const char *why, const char *err)
{
    size_t i;

    fprintf(stderr, "json_fuzz: %s (errbuf: \"%s\")\ninput (%zu bytes):", why, err, size);
    for (i = 0; i < size; i++)
        fprintf(stderr, " %02X", data[i]);
    fputc('\n', stderr);
    abort();
}

/*
 * Check the input again inside k arrays, k from 990 to 1000, so that a
 * shallow input lands on both sides of the nesting limit: random mutation
 * alone almost never builds a balanced document 1000 levels deep. Only
 * short inputs get this, since it costs a 1000-deep descent each time.
 */
static void check_wrapped(const uint8_t *data, size_t size)
{
    size_t k = 990 + (size > 0 ? data[size - 1] % 11u : 0);
    size_t n = size + 2 * k;
    unsigned char *buf = malloc(n);
    int want, got;

    if (buf == NULL)
        abort();
    memset(buf, '[', k);
    if (size > 0)
        memcpy(buf + k, data, size);
    memset(buf + k + size, ']', k);
    want = ref_check(buf, n) ? CAIRN_OK : CAIRN_EJSON;
    got = cairn_json_check((const char *)buf, n, NULL, 0);
    if (got != want)
        disagree(buf, n, got == CAIRN_OK ? "wrapped: library accepts, reference refuses"
                                         : "wrapped: library refuses, reference accepts", "");
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    char small[24];
    size_t smalllen = size > 0 ? 1 + data[0] % 16 : 1;
    const char *text = (const char *)data;
    int want = ref_check(data, size) ? CAIRN_OK : CAIRN_EJSON;
    int got;

    memset(err, 0x55, sizeof err);
    got = cairn_json_check(text, size, err, sizeof err);
    if (got != want)
        disagree(data, size, got == CAIRN_OK ? "library accepts, reference refuses" : "library refuses, reference accepts",
                 got == CAIRN_OK ? "" : err);

    if (got == CAIRN_OK) {
        if ((unsigned char)err[0] != 0x55)
            disagree(data, size, "errbuf written on success", "");
    } else {
        const char *prefix = "invalid JSON at byte ";
        char *after;
        unsigned long long at;

        if (memchr(err, '\0', sizeof err) == NULL || strncmp(err, prefix, strlen(prefix)) != 0)
            disagree(data, size, "malformed message", "");
        at = strtoull(err + strlen(prefix), &after, 10);
        if (after == err + strlen(prefix) || at > size || strncmp(after, ": ", 2) != 0)
            disagree(data, size, "bad offset in message", err);
    }

    if (cairn_json_check(text, size, NULL, sizeof err) != got)
        disagree(data, size, "result depends on errbuf", "");

    memset(small, 0x55, sizeof small);
    if (cairn_json_check(text, size, small, smalllen) != got)
        disagree(data, size, "result depends on errlen", "");
    if (got != CAIRN_OK && (strlen(small) != smalllen - 1 || strncmp(small, err, smalllen - 1) != 0))
        disagree(data, size, "short errbuf not truncated as expected", small);
    if ((unsigned char)small[smalllen] != 0x55)
        disagree(data, size, "short errbuf overrun", "");
    if (size <= 128)
        check_wrapped(data, size);
    return 0;
}
