/*
 * Small text utilities: growable buffers, Postgres array literals, name
 * validation, UUIDv7 generation and error JSON.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "internal.h"

void cairn__buf_init(cairn__buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void cairn__buf_free(cairn__buf *b)
{
    free(b->data);
    cairn__buf_init(b);
}

/* Grow geometrically so that building an array literal stays linear. */
static int buf_reserve(cairn__buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void cairn__buf_append(cairn__buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void cairn__buf_puts(cairn__buf *b, const char *s)
{
    cairn__buf_append(b, s, strlen(s));
}

/*
 * Postgres parses array literals itself, so every element is double-quoted
 * with backslash and quote escaped; that is the whole escaping the array
 * input syntax needs, and the literal travels as a bound parameter.
 */
void cairn__buf_array_elem(cairn__buf *b, const char *s)
{
    if (b->len > 0 && b->data[b->len - 1] != '{')
        cairn__buf_append(b, ",", 1);
    if (!s) {
        cairn__buf_append(b, "NULL", 4);
        return;
    }
    size_t n = strlen(s);
    if (buf_reserve(b, 2 * n + 2) != 0)
        return;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *o++ = '\\';
        *o++ = s[i];
    }
    *o++ = '"';
    *o = '\0';
    b->len = (size_t)(o - b->data);
}

char *cairn__strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Length of the UTF-8 sequence at p (at most n bytes), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int cairn__check_name(const char *what, const char *s, char *err, size_t errlen)
{
    if (!s) {
        snprintf(err, errlen, "%s is NULL", what);
        return CAIRN_EINVAL;
    }
    size_t n = strlen(s);
    if (n == 0) {
        snprintf(err, errlen, "%s is empty", what);
        return CAIRN_EINVAL;
    }
    if (n > CAIRN__NAME_MAX) {
        snprintf(err, errlen, "%s is %zu bytes long; the limit is %d", what, n, CAIRN__NAME_MAX);
        return CAIRN_EINVAL;
    }
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x20 || p[i] == 0x7F) {
            snprintf(err, errlen, "%s contains a control character at byte %zu", what, i);
            return CAIRN_EINVAL;
        }
        size_t l = utf8_len(p + i, n - i);
        if (l == 0) {
            snprintf(err, errlen, "%s is not valid UTF-8 at byte %zu", what, i);
            return CAIRN_EINVAL;
        }
        i += l;
    }
    return CAIRN_OK;
}

void cairn__abstime(long long ms, struct timespec *ts)
{
    if (ms < 0)
        ms = 0;
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/*
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. The
 * time prefix keeps new IDs at the right edge of the primary-key B-tree.
 */
void cairn__uuid7(char out[37])
{
    unsigned char b[16];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    size_t got = 0;
    while (got < 10) {
        ssize_t r = getrandom(b + 6 + got, 10 - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* No entropy source: fall back to clock bits so IDs stay unique per process. */
            for (; got < 10; got++)
                b[6 + got] = (unsigned char)(ts.tv_nsec >> (got % 4 * 8)) ^ (unsigned char)rand();
            break;
        }
        got += (size_t)r;
    }
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0F));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3F));
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

long long cairn__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long cairn__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *cairn__error_json(const char *message, const char *step, int attempts)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "message", json_string(message ? message : ""));
    if (!json_object_get(o, "message")) /* not valid UTF-8: keep the error, lose the text */
        json_object_set_new(o, "message", json_string("(message was not valid UTF-8)"));
    if (step)
        json_object_set_new(o, "step", json_string(step));
    if (attempts > 0)
        json_object_set_new(o, "attempts", json_integer(attempts));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
