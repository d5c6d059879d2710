/*
 * Unit tests for cairn_json_check(): every kind of valid value, each class
 * of rejection, the nesting limit, UTF-8 edges and the error message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn.h"

/* One input; len comes from sizeof so that cases may contain NUL bytes. */
typedef struct jcase {
    const char *text;
    size_t len;
} jcase;

#define C(s) { (s), sizeof(s) - 1 }
#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

/* Render text for a failure message: printable ASCII as is, the rest as \xNN. */
static const char *show(const char *text, size_t len)
{
    static char out[512];
    size_t o = 0, i;

    for (i = 0; i < len && o + 8 < sizeof out; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c >= 0x20 && c < 0x7F && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02X", c);
    }
    if (i < len)
        o += (size_t)snprintf(out + o, sizeof out - o, "...");
    out[o] = '\0';
    return out;
}

/*
 * Check a copy of text in a heap block of exactly len bytes, so that a
 * sanitizer build catches any read past the end.
 */
static int check_exact(const char *text, size_t len, char *err, size_t errlen)
{
    char *copy = malloc(len > 0 ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, text, len);
    rc = cairn_json_check(copy, len, err, errlen);
    free(copy);
    return rc;
}

/* Check each case and fail, naming the case, if any result differs from want. */
static void expect_all(const jcase *cases, size_t n, int want)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char err[256] = "";
        int rc = check_exact(cases[i].text, cases[i].len, err, sizeof err);

        if (rc != want) {
            print_error("case %zu \"%s\": got %d, want %d (%s)\n", i, show(cases[i].text, cases[i].len), rc, want,
                        err);
            fail();
        }
        if (want == CAIRN_EJSON && strncmp(err, "invalid JSON at byte ", 21) != 0) {
            print_error("case %zu \"%s\": bad message \"%s\"\n", i, show(cases[i].text, cases[i].len), err);
            fail();
        }
    }
}

/* Check that text is refused at byte `at` with a message containing `what`. */
static void expect_error(const char *text, size_t len, size_t at, const char *what)
{
    char err[256] = "";
    char prefix[64];
    int rc = check_exact(text, len, err, sizeof err);

    snprintf(prefix, sizeof prefix, "invalid JSON at byte %zu: ", at);
    if (rc != CAIRN_EJSON || strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, what) == NULL) {
        print_error("\"%s\": got %d \"%s\", want \"%s...%s...\"\n", show(text, len), rc, err, prefix, what);
        fail();
    }
}

#define EXPECT_ERROR(s, at, what) expect_error((s), sizeof(s) - 1, (at), (what))

static void test_valid_scalars(void **state)
{
    static const jcase cases[] = {
        C("null"), C("true"), C("false"), C("0"), C("\"\""), C("\"abc\""),
        C(" null "), C("\t\n\r true \r\n\t"), C("[]"), C("{}"), C(" [ ] "), C(" { } "),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_OK);
}

static void test_valid_numbers(void **state)
{
    static const jcase cases[] = {
        C("0"), C("-0"), C("1"), C("-1"), C("9"), C("10"), C("1234567890"), C("0.0"), C("-0.0"),
        C("0.5"), C("3.14159"), C("1e0"), C("1E0"), C("1e+2"), C("1E-2"), C("1e-0"), C("0e0"),
        C("-0.5e-10"), C("123.456e789"), C("1e400"), C("-1e-400"), C("1e0000000000000000000099"),
        C("1234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890"),
        C("-0.000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"),
        C("[0,-0,1.5,2e3]"), C("{\"n\":-12.5E+3}"),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_OK);
}

static void test_valid_strings(void **state)
{
    static const jcase cases[] = {
        C("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""),
        C("\"\\u0000\""),                 /* PostgreSQL's json type accepts it */
        C("\"a\\u0000b\""),
        C("\"\\u00e9\\u00E9\\uABCD\\uffff\""),
        C("\"\\uD83D\\uDE00\""),          /* a surrogate pair */
        C("\"\\uD800\""),                 /* lone high surrogate: json accepts it */
        C("\"\\uDC00\""),                 /* lone low surrogate */
        C("\"\\uD800\\u0041\""),          /* high surrogate followed by a non-surrogate */
        C("\"\\uDE00\\uD83D\""),          /* pair in the wrong order */
        C("\"\\uD83D\\uD83D\""),          /* two high surrogates */
        C("\"'single' inside\""),
        C("\"/* not a comment */\""),
        C("\"\x7F\""),                    /* DEL is not a control character in JSON */
        C("\"a long string of plain ASCII that is scanned eight bytes at a time, ok\""),
        C("\"0123456\\\"89abcdef\\\\0123456789\""),
        C("\"abcdef\""), C("\"       \""), C("\"1234567\""), C("\"12345678\""), C("\"123456789\""),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_OK);
}

static void test_valid_structures(void **state)
{
    static const jcase cases[] = {
        C("[1]"), C("[1,2,3]"), C("[[]]"), C("[[],[]]"), C("[{}]"), C("{\"a\":[]}"),
        C("{\"a\":1}"), C("{\"a\":1,\"b\":2}"), C("{\"a\":{\"b\":{\"c\":null}}}"),
        C("{\"a\":1,\"a\":2}"),          /* duplicate keys are allowed, as in json */
        C("{\"\":\"\"}"),
        C("[null,true,false,\"s\",0,{\"k\":[1,{\"x\":[]}]}]"),
        C(" {\r\n\t\"id\" : \"wf-1\" ,\r\n\t\"steps\" : [ 1 , 2 ] ,\n \"ok\" : true\n}\n"),
        C("[\"x\",\n\"y\"]"),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_OK);
}

static void test_invalid_numbers(void **state)
{
    static const jcase cases[] = {
        C("01"), C("00"), C("-01"), C("012.5"), C("+1"), C(".5"), C("-.5"), C("1."), C("1.e5"),
        C("-"), C("--1"), C("- 1"), C("1e"), C("1e+"), C("1E-"), C("1e+-1"), C("1.5.5"), C("0x10"),
        C("1_000"), C("1,000"), C("NaN"), C("-NaN"), C("Infinity"), C("-Infinity"), C("inf"),
        C("[01]"), C("[1.]"), C("{\"a\":.5}"), C("1 2"), C("1e5e5"), C("\xEF\xBC\x91"),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_EJSON);
}

static void test_invalid_literals(void **state)
{
    static const jcase cases[] = {
        C("tru"), C("t"), C("True"), C("TRUE"), C("nul"), C("nulll"), C("Null"), C("fals"), C("falsee"),
        C("undefined"), C("truefalse"), C("[true false]"), C("none"), C("nil"),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_EJSON);
}

static void test_invalid_strings(void **state)
{
    static const jcase cases[] = {
        C("\""), C("\"abc"), C("\"abc\\\""), C("\"\\"), C("'abc'"), C("{'a':1}"), C("[\"a\",'b']"),
        C("\"\\x41\""), C("\"\\a\""), C("\"\\'\""), C("\"\\U0041\""), C("\"\\0\""), C("\"\\ \""),
        C("\"\\u\""), C("\"\\u1\""), C("\"\\u12\""), C("\"\\u123\""), C("\"\\u123G\""), C("\"\\uG123\""),
        C("\"\\u12 4\""), C("\"\\u"), C("\"\\u00"), C("\"\\u0041"),
        C("\"tab\there\""), C("\"new\nline\""), C("\"cr\rhere\""), C("\"\x01\""), C("\"\x1F\""),
        C("\"12345678\x01\""), C("\"1234567\n890\""),
        C("\"\\uD800"), C("abc"), C("\"a\"\"b\""),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_EJSON);
}

static void test_invalid_structures(void **state)
{
    static const jcase cases[] = {
        C("["), C("]"), C("{"), C("}"), C("[1"), C("[1,"), C("[1,]"), C("[,1]"), C("[,]"), C("[1,,2]"),
        C("{\"a\":1,}"), C("{,}"), C("{\"a\"}"), C("{\"a\":}"), C("{\"a\" 1}"), C("{\"a\"::1}"),
        C("{1:2}"), C("{a:1}"), C("{null:1}"), C("{\"a\":1 \"b\":2}"), C("{\"a\":1;\"b\":2}"),
        C("[1 2]"), C("[1}"), C("{\"a\":1]"), C("[{]}"), C("[[]"), C("[]]"), C("{}}"), C("[]["),
        C("[] []"), C("{} {}"), C("1 1"), C("\"a\" \"b\""), C("null null"), C("[]x"), C("{}\""),
        C("[1]/*c*/"), C("/*c*/[1]"), C("// c\n1"), C("[1] // c"), C("# c\n1"),
        C("(1)"), C("<1>"), C("1:"), C("[0:1]"), C("{\"a\":1:}"), C("[1;2]"),
        C("[1]\f"), C("\v1"), C("\f1"), C("\xC2\xA0" "1"), C("\xEF\xBB\xBF" "1"),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_EJSON);
}

static void test_empty(void **state)
{
    static const jcase cases[] = { C(""), C(" "), C("\t"), C("\n\n"), C(" \r\n\t "), };
    char err[128] = "";
    (void)state;

    expect_all(cases, NCASES(cases), CAIRN_EJSON);
    assert_int_equal(cairn_json_check(NULL, 0, err, sizeof err), CAIRN_EJSON);
    assert_string_equal(err, "invalid JSON at byte 0: empty input");
    assert_int_equal(cairn_json_check("", 0, NULL, 0), CAIRN_EJSON);
    assert_int_equal(cairn_json_check(NULL, 0, NULL, 0), CAIRN_EJSON);
    EXPECT_ERROR("", 0, "empty input");
    EXPECT_ERROR("   ", 3, "only whitespace");
    /* A non-empty length with a NULL pointer is refused, not dereferenced. */
    assert_int_equal(cairn_json_check(NULL, 5, err, sizeof err), CAIRN_EJSON);
    assert_non_null(strstr(err, "NULL"));
}

static void test_len_is_respected(void **state)
{
    const char *text = "[1,2]garbage";
    (void)state;

    assert_int_equal(cairn_json_check(text, 5, NULL, 0), CAIRN_OK);
    assert_int_equal(cairn_json_check(text, 6, NULL, 0), CAIRN_EJSON);
    assert_int_equal(cairn_json_check(text, 4, NULL, 0), CAIRN_EJSON);
    assert_int_equal(cairn_json_check("truex", 4, NULL, 0), CAIRN_OK);
    assert_int_equal(cairn_json_check("truex", 3, NULL, 0), CAIRN_EJSON);
    assert_int_equal(cairn_json_check("123", 2, NULL, 0), CAIRN_OK);
    assert_int_equal(cairn_json_check("\"ab\"", 3, NULL, 0), CAIRN_EJSON);
}

static void test_embedded_nul(void **state)
{
    static const jcase cases[] = {
        C("\0"), C("1\0"), C("\0" "1"), C("[1,\0" "2]"), C("\"a\0b\""), C("{\"a\0\":1}"), C("null\0"),
        C("[1]\0"), C(" \0 "), C("\"\0\""), C("\"12345678\0\""),
    };
    (void)state;

    expect_all(cases, NCASES(cases), CAIRN_EJSON);
    EXPECT_ERROR("\"a\0b\"", 2, "NUL byte in string");
    EXPECT_ERROR("[1]\0", 3, "found byte 0x00");
    EXPECT_ERROR("[1,\0" "2]", 3, "expected a value, found byte 0x00");
    assert_int_equal(check_exact("1\0", 2, NULL, 0), CAIRN_EJSON);
    assert_int_equal(check_exact("1\0", 1, NULL, 0), CAIRN_OK);
}

static void test_utf8_valid(void **state)
{
    static const jcase cases[] = {
        C("\"\x7F\""),                       /* U+007F */
        C("\"\xC2\x80\""),                   /* U+0080 */
        C("\"\xC3\xA9t\xC3\xA9\""),          /* "été" */
        C("\"\xDF\xBF\""),                   /* U+07FF */
        C("\"\xE0\xA0\x80\""),               /* U+0800 */
        C("\"\xE2\x82\xAC\""),               /* U+20AC euro sign */
        C("\"\xED\x9F\xBF\""),               /* U+D7FF, just below the surrogates */
        C("\"\xEE\x80\x80\""),               /* U+E000, just above them */
        C("\"\xEF\xBB\xBF\""),               /* U+FEFF inside a string is fine */
        C("\"\xEF\xBF\xBF\""),               /* U+FFFF */
        C("\"\xF0\x90\x80\x80\""),           /* U+10000 */
        C("\"\xF0\x9F\x98\x80\""),           /* U+1F600 */
        C("\"\xF3\xBF\xBF\xBF\""),           /* U+FFFFF */
        C("\"\xF4\x80\x80\x80\""),           /* U+100000 */
        C("\"\xF4\x8F\xBF\xBF\""),           /* U+10FFFF, the last code point */
        C("{\"\xE3\x82\xAD\xE3\x83\xBC\":\"\xE5\x80\xA4\"}"),
        C("\"abcdefg\xC3\xA9" "abcdefgh\xF0\x9F\x98\x80" "abcdefgh\""),
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_OK);
}

static void test_utf8_invalid(void **state)
{
    static const jcase cases[] = {
        C("\"\x80\""), C("\"\xBF\""), C("\"a\x80" "b\""),        /* lone continuation bytes */
        C("\"\xC0\x80\""), C("\"\xC0\xAF\""), C("\"\xC1\xBF\""),   /* overlong two-byte forms */
        C("\"\xE0\x80\x80\""), C("\"\xE0\x9F\xBF\""),             /* overlong three-byte forms */
        C("\"\xF0\x80\x80\x80\""), C("\"\xF0\x8F\xBF\xBF\""),     /* overlong four-byte forms */
        C("\"\xED\xA0\x80\""), C("\"\xED\xAF\xBF\""), C("\"\xED\xB0\x80\""), C("\"\xED\xBF\xBF\""), /* surrogates */
        C("\"\xED\xA0\xBD\xED\xB8\x80\""),                       /* a surrogate pair in CESU-8 */
        C("\"\xF4\x90\x80\x80\""), C("\"\xF7\xBF\xBF\xBF\""),     /* above U+10FFFF */
        C("\"\xF5\x80\x80\x80\""), C("\"\xF8\x88\x80\x80\x80\""), C("\"\xFC\x84\x80\x80\x80\x80\""),
        C("\"\xFE\""), C("\"\xFF\""),
        C("\"\xC2\""), C("\"\xC2" "A\""), C("\"\xE0\xA0\""), C("\"\xE2\x82\""), C("\"\xE2" "A" "\xAC\""),
        C("\"\xF0\x90\x80\""), C("\"\xF0\x9F\x98" "A\""), C("\"\xF0\x9F" "AB\""), /* truncated sequences */
        C("\"\xC2"), C("\"\xE2\x82"), C("\"\xF0\x9F\x98"),       /* truncated at the end of the input */
        C("\"\xC3\xA9\xA9\""),                                  /* one continuation byte too many */
        C("\"12345678\x80\""), C("\"1234567\xC2\""),
        C("\xC3\xA9"), C("[\xC3\xA9]"), C("{\"a\":1}\xC3\xA9"), C("\xF0\x9F\x98\x80"), /* outside strings */
    };
    (void)state;
    expect_all(cases, NCASES(cases), CAIRN_EJSON);
    EXPECT_ERROR("\"ab\xC0\x80\"", 3, "invalid UTF-8 byte, found byte 0xC0");
    EXPECT_ERROR("\"ab\xED\xA0\x80\"", 3, "invalid UTF-8 sequence");
    EXPECT_ERROR("\"ab\xF4\x90\x80\x80\"", 3, "invalid UTF-8 sequence");
    EXPECT_ERROR("\"\xE2\x82", 1, "truncated UTF-8 sequence");
}

/* Build n opening brackets (alternating as given) followed by their closers. */
static char *nest(size_t n, const char *open, const char *close, size_t *len)
{
    size_t olen = strlen(open), clen = strlen(close), i;
    char *buf = malloc(n * (olen + clen) + 2);
    char *p = buf;

    assert_non_null(buf);
    for (i = 0; i < n; i++, p += olen)
        memcpy(p, open, olen);
    *p++ = '1';
    for (i = 0; i < n; i++, p += clen)
        memcpy(p, close, clen);
    *len = (size_t)(p - buf);
    return buf;
}

static void test_nesting_limit(void **state)
{
    char err[128];
    size_t len;
    char *buf;
    (void)state;

    buf = nest(1000, "[", "]", &len);
    assert_int_equal(check_exact(buf, len, err, sizeof err), CAIRN_OK);
    free(buf);

    buf = nest(1001, "[", "]", &len);
    assert_int_equal(check_exact(buf, len, err, sizeof err), CAIRN_EJSON);
    assert_string_equal(err, "invalid JSON at byte 1000: nesting deeper than 1000 levels");
    free(buf);

    buf = nest(1000, "{\"k\":", "}", &len);
    assert_int_equal(check_exact(buf, len, err, sizeof err), CAIRN_OK);
    free(buf);

    buf = nest(1001, "{\"k\":", "}", &len);
    assert_int_equal(check_exact(buf, len, err, sizeof err), CAIRN_EJSON);
    assert_string_equal(err, "invalid JSON at byte 5000: nesting deeper than 1000 levels");
    free(buf);

    buf = nest(500, "[{\"k\":", "}]", &len);
    assert_int_equal(check_exact(buf, len, err, sizeof err), CAIRN_OK);
    free(buf);

    buf = nest(501, "{\"k\":[", "]}", &len);
    assert_int_equal(check_exact(buf, len, err, sizeof err), CAIRN_EJSON);
    free(buf);

    /* The limit is on depth, not on the number of containers. */
    {
        size_t total = 0, i;
        char *big = malloc(3 * 1000 * 2 + 16);
        char *p = big;

        assert_non_null(big);
        *p++ = '[';
        for (i = 0; i < 3; i++) {
            if (i > 0)
                *p++ = ',';
            memset(p, '[', 999);
            p += 999;
            memset(p, ']', 999);
            p += 999;
        }
        *p++ = ']';
        total = (size_t)(p - big);
        assert_int_equal(check_exact(big, total, err, sizeof err), CAIRN_OK);
        /* One more '[' in front makes the first run 1001 deep. */
        memmove(big + 1, big, total);
        big[0] = '[';
        assert_int_equal(check_exact(big, total + 1, err, sizeof err), CAIRN_EJSON);
        assert_string_equal(err, "invalid JSON at byte 1000: nesting deeper than 1000 levels");
        free(big);
    }

    /* Unbalanced at the limit. */
    buf = nest(1000, "[", "]", &len);
    assert_int_equal(check_exact(buf, len - 1, err, sizeof err), CAIRN_EJSON);
    assert_non_null(strstr(err, "unexpected end of input"));
    free(buf);
}

static void test_error_offsets(void **state)
{
    (void)state;
    EXPECT_ERROR("{\"a\":1 x}", 7, "expected ',' or '}', found 'x'");
    EXPECT_ERROR("{\"key\": [1, 2, 3], \"b\" 7}", 23, "expected ':', found '7'");
    EXPECT_ERROR("[1 2]", 3, "expected ',' or ']', found '2'");
    EXPECT_ERROR("[1,]", 3, "trailing comma before ']'");
    EXPECT_ERROR("{\"a\":1,}", 7, "trailing comma before '}'");
    EXPECT_ERROR("{\"a\":]", 5, "expected a value, found ']'");
    EXPECT_ERROR("{1:2}", 1, "expected a string key or '}', found '1'");
    EXPECT_ERROR("{\"a\":1,2}", 7, "expected a string key, found '2'");
    EXPECT_ERROR("[1] x", 4, "unexpected data after the JSON value, found 'x'");
    EXPECT_ERROR("[1", 2, "unexpected end of input");
    EXPECT_ERROR("{\"a\"", 4, "unexpected end of input");
    EXPECT_ERROR("\"abc", 4, "unterminated string");
    EXPECT_ERROR("\"abc\\", 5, "unterminated string");
    EXPECT_ERROR("\"a\\qb\"", 3, "invalid escape in string, found 'q'");
    EXPECT_ERROR("\"\\u12x4\"", 5, "four hexadecimal digits, found 'x'");
    EXPECT_ERROR("\"\x1F\"", 1, "control character in string must be escaped, found byte 0x1F");
    EXPECT_ERROR("\"a\tb\"", 2, "control character in string must be escaped, found byte 0x09");
    EXPECT_ERROR("01", 0, "leading zero");
    EXPECT_ERROR("[-01]", 2, "leading zero");
    EXPECT_ERROR("-x", 1, "expected a digit after '-', found 'x'");
    EXPECT_ERROR("-", 1, "expected a digit after '-'");
    EXPECT_ERROR("1.", 2, "expected a digit after '.'");
    EXPECT_ERROR("1.e3", 2, "expected a digit after '.', found 'e'");
    EXPECT_ERROR("1e+", 3, "expected a digit in exponent");
    EXPECT_ERROR("+1", 0, "expected a value, found '+'");
    EXPECT_ERROR(".5", 0, "expected a value, found '.'");
    EXPECT_ERROR("NaN", 0, "expected a value, found 'N'");
    EXPECT_ERROR("trUe", 2, "expected true, found 'U'");
    EXPECT_ERROR("nul", 3, "expected null");
    EXPECT_ERROR("[fals]", 5, "expected false, found ']'");
    EXPECT_ERROR("'a'", 0, "expected a value, found byte 0x27");
    EXPECT_ERROR("[1]/*c*/", 3, "unexpected data after the JSON value, found '/'");
    EXPECT_ERROR("\xC3\xA9", 0, "expected a value, found byte 0xC3");
    EXPECT_ERROR("\n\n   [1,\n    2,\n    x]", 20, "expected a value, found 'x'");
}

static void test_errbuf_handling(void **state)
{
    char buf[64];
    (void)state;

    /* NULL errbuf: the result alone. */
    assert_int_equal(cairn_json_check("[1,]", 4, NULL, 64), CAIRN_EJSON);
    assert_int_equal(cairn_json_check("[1]", 3, NULL, 64), CAIRN_OK);

    /* errlen 0: nothing is written. */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cairn_json_check("[1,]", 4, buf, 0), CAIRN_EJSON);
    assert_int_equal(buf[0], 'X');

    /* errlen 1: only the terminator fits. */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cairn_json_check("[1,]", 4, buf, 1), CAIRN_EJSON);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'X');

    /* A short buffer receives a truncated, terminated message and nothing past it. */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cairn_json_check("[1,]", 4, buf, 8), CAIRN_EJSON);
    assert_string_equal(buf, "invalid");
    assert_int_equal(buf[8], 'X');

    memset(buf, 'X', sizeof buf);
    assert_int_equal(cairn_json_check("[1,]", 4, buf, 23), CAIRN_EJSON);
    assert_string_equal(buf, "invalid JSON at byte 3");

    /* A message longer than the buffer is cut at errlen - 1. */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cairn_json_check("{\"a\":1 \"b\"}", 11, buf, sizeof buf), CAIRN_EJSON);
    assert_int_equal(strlen(buf), strlen("invalid JSON at byte 7: expected ',' or '}', found '\"'"));
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cairn_json_check("\"a\\u12x4\"", 9, buf, 40), CAIRN_EJSON);
    assert_int_equal(strlen(buf), 39);
    assert_int_equal(buf[40], 'X');

    /* Success leaves errbuf untouched. */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cairn_json_check("{}", 2, buf, sizeof buf), CAIRN_OK);
    assert_int_equal(buf[0], 'X');
}

static void test_large_document(void **state)
{
    /* About 1 MiB of objects and strings, pretty-printed. */
    size_t cap = 1u << 20, n = 0;
    char *buf = malloc(cap + 256);
    char err[128];
    int i = 0;
    (void)state;

    assert_non_null(buf);
    n += (size_t)sprintf(buf + n, "[\n");
    while (n < cap) {
        n += (size_t)sprintf(buf + n, "%s  {\"id\": %d, \"name\": \"step \\\"%d\\\" caf\xC3\xA9 \xF0\x9F\x98\x80\", "
                                      "\"ratio\": -%d.25e-3, \"ok\": %s, \"tags\": [null, \"\\u00e9\"]}",
                             i > 0 ? ",\n" : "", i, i, i, i % 2 ? "true" : "false");
        i++;
    }
    n += (size_t)sprintf(buf + n, "\n]\n");
    assert_int_equal(check_exact(buf, n, err, sizeof err), CAIRN_OK);

    /* One bad byte deep inside is found at its offset. */
    {
        char want[64];
        const char *name = strstr(buf + n / 2, "\"step ");
        size_t at;

        assert_non_null(name);
        at = (size_t)(name - buf);
        buf[at + 1] = '\x01';
        snprintf(want, sizeof want, "invalid JSON at byte %zu: control character", at + 1);
        assert_int_equal(check_exact(buf, n, err, sizeof err), CAIRN_EJSON);
        assert_true(strncmp(err, want, strlen(want)) == 0);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_scalars),
        cmocka_unit_test(test_valid_numbers),
        cmocka_unit_test(test_valid_strings),
        cmocka_unit_test(test_valid_structures),
        cmocka_unit_test(test_invalid_numbers),
        cmocka_unit_test(test_invalid_literals),
        cmocka_unit_test(test_invalid_strings),
        cmocka_unit_test(test_invalid_structures),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_len_is_respected),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_error_offsets),
        cmocka_unit_test(test_errbuf_handling),
        cmocka_unit_test(test_large_document),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
