/*
 * test_yaml_json.c -- mg_lua_yaml_to_json (core/conf/mg_yaml_json.c), the
 * YAML/JSON -> JSON converter the Lua declarative parser and POST /config
 * use: scalar typing (YAML 1.2 core schema, the C loader's rules), JSON
 * input passing through unchanged (surrogate pairs included, as the C
 * loader reads them), string escapes, keys, alias bombs and deep nesting
 * refused within a time bound, invalid UTF-8 and syntax errors reported
 * with their line and column, and the argument edge cases.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "conf/mg_yaml_json.c"
#include "tap.h"

static char err[512];

/* JSON of text, or NULL with the error in err (the result is static) */
static const char *
j(const char *text)
{
    static char buf[4096];
    char       *out = NULL;
    size_t      outlen = 0;

    err[0] = '\0';
    if (mg_lua_yaml_to_json(text, strlen(text), &out, &outlen, err,
                            sizeof(err)) != MG_OK)
    {
        return NULL;
    }
    snprintf(buf, sizeof(buf), "%.*s", (int) outlen, out);
    free(out);
    return buf;
}

#define conv(text, want, name) is_str(j(text), want, name)

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
test_typing(void)
{
    conv("a: 1", "{\"a\":1}", "plain 1 is a number");
    conv("a: \"1\"", "{\"a\":\"1\"}", "double-quoted 1 is a string");
    conv("a: '1'", "{\"a\":\"1\"}", "single-quoted 1 is a string");
    conv("a: -12", "{\"a\":-12}", "a negative integer");
    conv("a: +5", "{\"a\":5}", "+5 is written JSON's way");
    conv("a: 007", "{\"a\":7}", "007 is 7");
    conv("a: 1.5", "{\"a\":1.5}", "a float");
    conv("a: 1e3", "{\"a\":1e3}", "an exponent");
    conv("a: 123456789012345678901234567890",
         "{\"a\":123456789012345678901234567890}",
         "a huge integer stays a JSON number, digits unchanged");
    conv("a: +123456789012345678901234567890",
         "{\"a\":\"+123456789012345678901234567890\"}",
         "a huge +integer that does not fit stays a string");
    conv("a: .inf", "{\"a\":\".inf\"}", ".inf is a string");
    conv("a: 0x1F", "{\"a\":\"0x1F\"}", "hex is a string (core schema)");
    conv("a: 1.", "{\"a\":\"1.\"}", "1. is a string");
    conv("a: true\nb: False\nc: TRUE", "{\"a\":true,\"b\":false,\"c\":true}",
         "booleans in three spellings");
    conv("a: yes\nb: on\nc: y", "{\"a\":\"yes\",\"b\":\"on\",\"c\":\"y\"}",
         "YAML 1.1 booleans are strings");
    conv("a: null\nb: ~\nc:\nd: NULL", "{\"a\":null,\"b\":null,\"c\":null,"
         "\"d\":null}", "nulls");
    conv("a: \"null\"\nb: 'true'", "{\"a\":\"null\",\"b\":\"true\"}",
         "quoted null and true are strings");
    conv("a: \"\"", "{\"a\":\"\"}", "the empty string");
    conv("1: a\ntrue: b\n~: c", "{\"1\":\"a\",\"true\":\"b\",\"~\":\"c\"}",
         "scalar keys of every kind become strings");
    conv("- 1\n- [2, \"3\"]\n- {x: y}", "[1,[2,\"3\"],{\"x\":\"y\"}]",
         "sequences and flow collections");
    conv("a: |\n  l1\n  l2\n", "{\"a\":\"l1\\nl2\\n\"}", "a literal block");
}

static void
test_json(void)
{
    conv("{\"a\":[1,\"2\",true,null,1.5,-0]}",
         "{\"a\":[1,\"2\",true,null,1.5,-0]}", "JSON passes through");
    conv("{\"a\":\"\\u00e9\"}", "{\"a\":\"\xc3\xa9\"}",
         "a \\u escape becomes UTF-8");
    conv("{\"a\":\"\\ud83d\\ude00\"}", "{\"a\":\"\xf0\x9f\x98\x80\"}",
         "a surrogate pair becomes one code point (as the C loader reads)");
    conv("  [\"\\uD83D\\uDE00\"]", "[\"\xf0\x9f\x98\x80\"]",
         "a surrogate pair after blanks, upper case");
    conv("a: \"\\0\\x01\\t\\\"\\\\\\x7f\"",
         "{\"a\":\"\\u0000\\u0001\\t\\\"\\\\\\u007f\"}",
         "control characters, quote and backslash are escaped");
    conv("", "null", "the empty document is null");
    conv("# only a comment\n", "null", "a comment only is null");
}

static void
test_keys(void)
{
    ok(j("? [a]\n: 1") == NULL && strstr(err, "keys must be strings"),
       "a sequence key is refused");
    ok(j("? {a: 1}\n: 1") == NULL, "a mapping key is refused");
    ok(j("x: &k [1]\n? *k\n: 2") == NULL, "an alias to a sequence as key");
}

static void
test_bombs(void)
{
    char   *big;
    size_t  i, n;
    double  t;
    const char *lol =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\","
        "\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";

    t = now();
    ok(j(lol) == NULL && strstr(err, "too large"),
       "billion laughs is refused");
    t = now() - t;
    ok(t < 10, "... in bounded time (%.2f s)", t);

    conv("a: &a [1, 2]\nb: *a", "{\"a\":[1,2],\"b\":[1,2]}",
         "a small alias is expanded");

    t = now();
    ok(j("a: &a [*a]") == NULL, "a self-referencing sequence is refused");
    ok(j("a: &a {b: *a}") == NULL, "a self-referencing mapping is refused");
    ok(now() - t < 5, "... quickly");

    ok(j("a: *nope") == NULL && strstr(err, "line 1"),
       "an undefined alias is an error with a line");

    /* deep nesting: 64 levels below the root encode, 65 do not */
    n = 65;
    big = malloc(2 * n + 2);
    for (i = 0; i < n; i++) big[i] = '[';
    big[n] = '1';
    for (i = 0; i < n; i++) big[n + 1 + i] = ']';
    big[2 * n + 1] = '\0';
    ok(j(big) == NULL, "65 levels below the root are refused");
    big[0] = ' ';
    big[2 * n] = ' ';
    ok(j(big) != NULL, "64 levels below the root encode");
    free(big);

    /* very deep nesting is refused without exhausting the stack */
    n = 200000;
    big = malloc(n + 1);
    memset(big, '[', n);
    big[n] = '\0';
    t = now();
    ok(j(big) == NULL && strstr(err, "nested deeper"),
       "200000 unclosed [ are refused (%s)", err);
    ok(now() - t < 10, "... in bounded time");
    for (i = 0; i < n; i += 2) {
        big[i] = '-';
        big[i + 1] = ' ';
    }
    ok(j(big) == NULL && strstr(err, "nested deeper"),
       "100000 nested block sequences are refused");
    free(big);
}

static void
test_errors(void)
{
    const char *r;
    char       *out = (char *) 1;
    size_t      outlen = 7;

    r = j("a: 1\nb: [1, 2\nc: 3\n");
    ok(r == NULL && strstr(err, "line 3"), "an unclosed flow sequence: "
       "the line is named (%s)", err);

    r = j("a: 1\n  b: 2\n");
    ok(r == NULL && strstr(err, "line 2, column"),
       "bad indentation: line 2 (%s)", err);

    r = j("a: 1\nb: \"x\xff\"\n");
    ok(r == NULL && strstr(err, "line 2, column 6"),
       "invalid UTF-8: line and column of the byte (%s)", err);

    r = j("a: 1\nb: \"\xc3\"\n");
    ok(r == NULL && strstr(err, "line 2"),
       "a truncated UTF-8 sequence (%s)", err);

    r = j("a: \xed\xa0\x80\n");
    ok(r == NULL && strstr(err, "line 1, column 4"),
       "an encoded surrogate (%s)", err);

    {
        char nul[] = "a: 1\nb: x\0y\n";
        char *o = NULL;
        size_t ol = 0;

        ok(mg_lua_yaml_to_json(nul, sizeof(nul) - 1, &o, &ol, err,
                               sizeof(err)) != MG_OK
           && o == NULL && strstr(err, "line 2, column 5"),
           "a NUL byte is refused where it is (%s)", err);
    }

    ok(mg_lua_yaml_to_json(NULL, 0, &out, &outlen, err, sizeof(err))
       == MG_OK && outlen == 4 && memcmp(out, "null", 4) == 0,
       "no text, length 0: null");
    free(out);

    ok(mg_lua_yaml_to_json(NULL, 3, &out, &outlen, err, sizeof(err))
       == MG_ERROR && out == NULL && outlen == 0, "no text, length 3");

    ok(mg_lua_yaml_to_json("a: [", 4, &out, &outlen, NULL, 0) == MG_ERROR,
       "no error buffer");
    err[0] = 'z';
    ok(mg_lua_yaml_to_json("a: [", 4, &out, &outlen, err, 0) == MG_ERROR
       && err[0] == 'z', "errlen 0 leaves err alone");
    ok(mg_lua_yaml_to_json("a: [", 4, &out, &outlen, err, 5) == MG_ERROR
       && strlen(err) == 4, "a short error buffer is truncated");

    ok(mg_lua_yaml_to_json("x", (size_t) MG_DECL_MAX_FILE + 1, &out,
                           &outlen, err, sizeof(err)) == MG_ERROR
       && strstr(err, "too large"), "over the size limit");

    r = j("a: 1\n---\nb: 2\n");
    ok(r == NULL || strcmp(r, "{\"a\":1}") == 0,
       "two documents: an error or the first one (%s)", r ? r : err);
}

/* repeated keys are refused, as the C loader refuses them */
static void
test_duplicates(void)
{
    const char *r;
    char        big[64 * 1024], *p;
    int         i;

    r = j("a: 1\nb: 2\na: 3\n");
    ok(r == NULL && strstr(err, "duplicate key 'a'")
       && strstr(err, "line 3"), "a repeated key: %s", r ? r : err);
    r = j("services:\n  - name: s\n    url: http://x\n    name: t\n");
    ok(r == NULL && strstr(err, "duplicate key 'name'")
       && strstr(err, "line 4"), "in a nested mapping: %s", r ? r : err);
    r = j("{\"a\": 1, \"a\": 2}");
    ok(r == NULL && strstr(err, "duplicate key 'a'"), "in JSON: %s",
       r ? r : err);
    conv("a: {x: 1}\nb: {x: 1}\n", "{\"a\":{\"x\":1},\"b\":{\"x\":1}}",
         "the same key in two mappings is fine");
    conv("ab: 1\na: 2\nabc: 3\n", "{\"ab\":1,\"a\":2,\"abc\":3}",
         "keys that share a prefix are not duplicates");
    conv("x: &m {k: 1}\ny: *m\n", "{\"x\":{\"k\":1},\"y\":{\"k\":1}}",
         "an alias of a mapping is not a duplicate");

    /* a mapping of 4,000 keys, the last one repeating the first */
    p = big;
    for (i = 0; i < 4000; i++) {
        p += sprintf(p, "k%d: %d\n", i, i);
    }
    sprintf(p, "k0: 0\n");
    r = j(big);
    ok(r == NULL && strstr(err, "duplicate key 'k0'"),
       "a large mapping: %s", r ? "accepted" : err);
}

int
main(void)
{
    test_typing();
    test_duplicates();
    test_json();
    test_keys();
    test_bombs();
    test_errors();
    return done_testing();
}
