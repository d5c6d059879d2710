/*
 * Option parsing helpers. The subcommands parse their few options by hand
 * so that "--name VALUE" and "--name=VALUE" both work everywhere and the
 * arguments after "dev psql" reach psql untouched.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t len = strlen(name);

    if (strncmp(arg, name, len) != 0)
        return 0;
    if (arg[len] == '=') {
        *value = arg + len + 1;
        return 1;
    }
    if (arg[len] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *i += 1;
    *value = argv[*i];
    return 1;
}

int cli_parse_positive(const char *text, int *out)
{
    char *end;
    long v;

    /* strtol() would accept leading blanks and a sign; a count is digits only. */
    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

/* The units a duration may be written in, largest first, for parsing and printing. */
static const struct unit {
    const char *name;
    long long ms;
} units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

int cli_parse_duration(const char *text, int *ms)
{
    const char *p = text;
    long long n = 0;

    if (*p < '0' || *p > '9')
        n = 1;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > INT_MAX)
            return -2;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        if (n == 0)
            return -2;
        if (n > INT_MAX / units[i].ms)
            return -2;
        *ms = (int)(n * units[i].ms);
        return 0;
    }
    return -1;
}

void cli_format_duration(char *out, size_t len, long long ms)
{
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(out, len, "%lld%s", ms / units[i].ms, units[i].name);
            return;
        }
    }
    snprintf(out, len, "%lldms", ms);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;

    fputs("cairn: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;

    fputs("cairn: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fprintf(stderr, "usage: %s\n", usage);
    return CLI_EXIT_USAGE;
}

int cli_parse_named_args(int argc, char **argv, cli_named_args *a, const char *what, int want_name, cli_opt_fn extra,
                         void *state)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            a->help();
            return CLI_EXIT_OK;
        }
        if (a->allow_json && strcmp(arg, "--json") == 0) {
            a->as_json = 1;
            continue;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &a->db)) < 0)
            return cli_usage_error(a->usage, "--db needs a URL");
        if (got > 0)
            continue;
        if (extra != NULL && (got = extra(argc, argv, &i, state)) != 0) {
            if (got < 0)
                return CLI_EXIT_USAGE;
            continue;
        }
        if (want_name && strcmp(arg, "--") == 0 && i + 1 < argc && a->name == NULL) {
            a->name = argv[++i];
            continue;
        }
        if (arg[0] == '-')
            return cli_usage_error(a->usage, "unknown option %s", arg);
        if (!want_name || a->name != NULL)
            return cli_usage_error(a->usage, "unexpected argument %s", arg);
        a->name = arg;
    }
    if (want_name && a->name == NULL)
        return cli_usage_error(a->usage, "%s %s needs a %s name", what, argv[0], what);
    return -1;
}
