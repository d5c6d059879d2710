/*
 * Declarations shared by the files of the cairn command-line tool. The tool
 * is built only on the public API in cairn.h; nothing here reaches into the
 * library's internals.
 */
#ifndef CAIRN_CLI_H
#define CAIRN_CLI_H

#include <cairn.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* Exit statuses: success, a failure that was reported, and bad usage. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* Options given before the subcommand, which every subcommand may consult. */
typedef struct cli_global {
    const char *db; /* --db URL given before the subcommand, or NULL */
} cli_global;

/*
 * A subcommand. argv[0] is the subcommand's own name and argv[argc] is NULL,
 * as for main(). Returns the process exit status.
 */
typedef int (*cli_command_fn)(int argc, char **argv, const cli_global *g);

int cli_dev(int argc, char **argv, const cli_global *g);
int cli_migrate(int argc, char **argv, const cli_global *g);
int cli_list(int argc, char **argv, const cli_global *g);
int cli_show(int argc, char **argv, const cli_global *g);
int cli_queue(int argc, char **argv, const cli_global *g);
int cli_executors(int argc, char **argv, const cli_global *g);
int cli_cancel(int argc, char **argv, const cli_global *g);
int cli_resume(int argc, char **argv, const cli_global *g);
int cli_fork(int argc, char **argv, const cli_global *g);
int cli_send(int argc, char **argv, const cli_global *g);
int cli_event(int argc, char **argv, const cli_global *g);
int cli_stream(int argc, char **argv, const cli_global *g);
int cli_schedule(int argc, char **argv, const cli_global *g);

/* db.c: the database, for the subcommands that use one. */

/*
 * Open a handle on the database named by db (--db), else
 * $CAIRN_DATABASE_URL, else libpq's PG* environment, with the given
 * cairn_options flags. The tool runs no workflows and needs one
 * connection; it uses its own executor ID so it is never mistaken for a
 * worker. *out receives the handle even on failure (see cairn_open()); the
 * caller closes it.
 */
int cli_open_db(const char *db, unsigned flags, cairn **out);

/* Print "cairn: <what rc means>: <the handle's message>" to stderr and return CLI_EXIT_FAIL. */
int cli_report(const cairn *h, int rc);

/* json.c: the library's JSON text. */

/* Print the library's JSON text as it is, on a line of its own. */
void cli_put_json(const char *text);

/* Parse the library's JSON text for the human forms. Returns NULL after reporting why. */
json_t *cli_parse_json(const char *text);

/*
 * Text for one JSON value in a table cell or field: strings as they are,
 * other values as compact JSON, and NULL for a missing value or JSON null
 * (shown as "-"). The result is malloc'd; *failed is set when out of memory.
 */
char *cli_json_text(const json_t *v, int *failed);

/* args.c: small helpers for hand-parsed options. */

/* Non-zero when arg is "-h" or "--help". */
int cli_is_help(const char *arg);

/*
 * Match argv[*i] against an option that takes a value, written either as
 * "--name VALUE" or "--name=VALUE". Returns 1 and stores the value (borrowed
 * from argv) after advancing *i past the value's own argument when there is
 * one, 0 when argv[*i] is a different argument, and -1 when the value is
 * missing (the caller reports it).
 */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/*
 * The arguments of a subcommand that acts on one named object (a queue, a
 * schedule): --help, --json where allowed, --db, its own options and the
 * object's name.
 */
typedef struct cli_named_args {
    const char *usage;
    void (*help)(void);
    int allow_json;
    const char *db;
    int as_json;
    const char *name;
} cli_named_args;

/*
 * Match a command's own options at argv[*i]: returns 1 when it took the
 * argument (and its value), 0 when argv[*i] is not one of them, and -1
 * after a usage error was reported.
 */
typedef int (*cli_opt_fn)(int argc, char **argv, int *i, void *state);

/*
 * Parse a command's arguments into a: its options, those matched by extra
 * (may be NULL), and one name of a `what` ("queue", "schedule") when
 * want_name is set (required then; "--" lets a name start with a dash).
 * Returns -1 to go on, or an exit status to return at once (after --help
 * or a usage error).
 */
int cli_parse_named_args(int argc, char **argv, cli_named_args *a, const char *what, int want_name, cli_opt_fn extra,
                         void *state);

/* Parse text as a whole decimal number from 1 to INT_MAX. Returns 0, or -1 when it is not one. */
int cli_parse_positive(const char *text, int *out);

/*
 * Parse a duration: an optional whole number (1 when left out, so that
 * "100/s" reads as 100 per second) and a unit, ms, s, m, h or d: 500ms,
 * 1s, 2m, 1h. Returns 0 and stores milliseconds from 1 to INT_MAX, -1 when
 * text is not a duration, and -2 when it is one outside that range.
 */
int cli_parse_duration(const char *text, int *ms);

/* Write ms in the largest unit that divides it exactly: 90000 is "90s", 60000 is "1m", 1500 is "1500ms". */
void cli_format_duration(char *out, size_t len, long long ms);

/* Print "cairn: MESSAGE" to stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Report bad usage: print "cairn: MESSAGE" and the usage line to stderr,
 * and return CLI_EXIT_USAGE.
 */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* spawn.c: running programs from an argv array, never through a shell. */

/*
 * Run argv (argv[0] is searched in PATH unless it contains a slash) and wait
 * for it. Its stdout goes to /dev/null when quiet, else to ours; its stderr
 * is ours. It starts in "/", so a program run as another user never needs
 * to reach our working directory. Returns its exit status (128 + signal when
 * killed), or -1 after saying why it could not be run.
 */
int cli_spawn_wait(char *const argv[], int quiet);

/*
 * Run argv and keep the first line it prints in out (len bytes), without
 * the line end; its stderr is discarded. Returns 0 when it exited 0 and
 * printed something, else -1.
 */
int cli_capture_line(char *const argv[], char *out, size_t len);

/* table.c: aligned plain-text output. */

/*
 * A table of text cells, printed with every column padded to its widest
 * cell. Cells are copied; control characters are shown as '?' and cells
 * longer than their column's limit are cut with "...".
 */
typedef struct cli_table cli_table;

/* A new table with ncols columns; limits[c] caps column c (0: no cap). NULL when out of memory. */
cli_table *cli_table_new(size_t ncols, const size_t *limits);

/* Append one row of ncols cells (NULL cells print as "-"). Returns 0, or -1 when out of memory. */
int cli_table_add(cli_table *t, const char *const *cells);

/* Print the table to f, two spaces between columns. */
void cli_table_print(const cli_table *t, FILE *f);

/* Free the table and its cells. NULL is a no-op. */
void cli_table_free(cli_table *t);

/* json.c: adds the row for one object of a JSON array to t; returns 0, or -1 when out of memory. */
typedef int (*cli_row_fn)(cli_table *t, const json_t *obj);

/*
 * Print the JSON array text (a list the library returned) as a table with
 * the given header, one row per element through add_row; "no <what>" when
 * it is empty. Returns an exit status, having said what went wrong.
 */
int cli_print_json_table(const char *text, const char *what, size_t ncols, const char *const *header,
                         const size_t *limits, cli_row_fn add_row);

/*
 * Write text to f with control characters shown as '?', cut to at most max
 * characters (counting UTF-8 code points) with "..." when longer; max 0
 * means no limit.
 */
void cli_put_text(FILE *f, const char *text, size_t max);

#endif /* CAIRN_CLI_H */
