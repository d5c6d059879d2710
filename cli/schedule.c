/*
 * cairn schedule: list, show, set, pause, resume and delete the cron
 * schedules kept in cairn.schedules, through cairn_schedule_list(),
 * cairn_schedule_set(), cairn_schedule_pause() and cairn_schedule_delete().
 *
 * `schedule set` replaces the whole definition, as cairn_schedule_set()
 * does: options left out take their defaults. (Unlike `queue set`, it does
 * not merge with the current definition: the input is JSON text that
 * cannot be read back through a JSON library and written again byte for
 * byte, and a schedule's input must not change behind its owner's back.)
 * Without --paused, an existing schedule keeps its paused or running
 * state; `schedule resume` resumes it.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define SCHEDULE_USAGE "cairn schedule list|show|set|pause|resume|delete [ARGS...]"
#define SCHEDULE_LIST_USAGE "cairn schedule list [--json] [--db URL]"
#define SCHEDULE_SHOW_USAGE "cairn schedule show NAME [--json] [--db URL]"
#define SCHEDULE_SET_USAGE                                                                           \
    "cairn schedule set NAME --workflow NAME --cron EXPR [--timezone ZONE] [--input JSON]\n"      \
    "                          [--queue QUEUE] [--backfill] [--paused] [--db URL]"
#define SCHEDULE_PAUSE_USAGE "cairn schedule pause NAME [--db URL]"
#define SCHEDULE_RESUME_USAGE "cairn schedule resume NAME [--db URL]"
#define SCHEDULE_DELETE_USAGE "cairn schedule delete NAME [--db URL]"

#define DB_HELP "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n"

static void schedule_help(void)
{
    printf("usage: %s\n\n"
           "Cron schedules, stored in cairn.schedules. At each tick of a running schedule\n"
           "one run of its workflow is enqueued, exactly once across every executor, with\n"
           "ID NAME@TICK (the tick in UTC, e.g. nightly@2024-05-01T03:00:00Z). Ticks are\n"
           "fired by the dispatchers of live executors.\n\n"
           "Commands:\n"
           "  list         every schedule, with its last and next tick\n"
           "  show NAME    one schedule\n"
           "  set NAME     create a schedule or replace its definition\n"
           "  pause NAME   stop firing ticks until resumed\n"
           "  resume NAME  fire again from the next tick on (ticks missed while paused are not fired)\n"
           "  delete NAME  delete a schedule; the runs it enqueued stay\n\n"
           "Run 'cairn schedule COMMAND --help' for a command's options.\n",
           SCHEDULE_USAGE);
}

static void schedule_list_help(void)
{
    printf("usage: %s\n\n"
           "List every schedule by name: its workflow, cron expression, time zone, queue,\n"
           "whether it backfills and is paused, the last tick it fired and the next one\n"
           "(ticks in UTC; \"-\": none).\n\n"
           "Options:\n"
           "  --json     print the JSON array instead of a table\n" DB_HELP,
           SCHEDULE_LIST_USAGE);
}

static void schedule_show_help(void)
{
    printf("usage: %s\n\n"
           "Show one schedule, with its input and the last error that made it skip ticks.\n\n"
           "Options:\n"
           "  --json     print the JSON object instead of text\n" DB_HELP,
           SCHEDULE_SHOW_USAGE);
}

static void schedule_set_help(void)
{
    printf("usage: %s\n\n"
           "Create a schedule, or replace its whole definition: options left out take\n"
           "their defaults. Changing the expression or the zone counts the next tick from\n"
           "now; setting the same ones again keeps it. A paused schedule stays paused\n"
           "unless resumed.\n\n"
           "EXPR has 5 fields, \"minute hour day-of-month month day-of-week\", or 6 with a\n"
           "leading second; each a list of *, N, A-B, */STEP or A-B/STEP, with names for\n"
           "months and weekdays (jan, mon); or a macro: @yearly, @monthly, @weekly,\n"
           "@daily, @hourly. When both day fields are restricted, a day matches if either\n"
           "does.\n\n"
           "Options:\n"
           "  --workflow NAME  the workflow each tick starts (required)\n"
           "  --cron EXPR      when (required), e.g. '0 3 * * *' or '*/10 * * * * *'\n"
           "  --timezone ZONE  the zone EXPR is read in, e.g. Europe/Paris (default UTC)\n"
           "  --input JSON     passed to every run as \"input\" (default null)\n"
           "  --queue QUEUE    the queue runs are enqueued on (default \"default\")\n"
           "  --backfill       after downtime, start every missed tick (at most 1000);\n"
           "                   without it missed ticks are skipped\n"
           "  --paused         create the schedule paused, or pause it\n" DB_HELP,
           SCHEDULE_SET_USAGE);
}

static void schedule_pause_help(void)
{
    printf("usage: %s\n\n"
           "Pause a schedule: no tick fires until it is resumed.\n\n"
           "Options:\n" DB_HELP,
           SCHEDULE_PAUSE_USAGE);
}

static void schedule_resume_help(void)
{
    printf("usage: %s\n\n"
           "Resume a paused schedule from its next tick after now. The ticks that passed\n"
           "while it was paused are not fired, even with backfill.\n\n"
           "Options:\n" DB_HELP,
           SCHEDULE_RESUME_USAGE);
}

static void schedule_delete_help(void)
{
    printf("usage: %s\n\n"
           "Delete a schedule. The runs it already enqueued stay.\n\n"
           "Options:\n" DB_HELP,
           SCHEDULE_DELETE_USAGE);
}


/* Columns of the list, and the fields of show in the same order plus two. */
enum { SC_NAME, SC_WORKFLOW, SC_CRON, SC_TZ, SC_QUEUE, SC_BACKFILL, SC_PAUSED, SC_LAST, SC_NEXT, SC_LIST,
       SC_INPUT = SC_LIST, SC_ERROR, SC_ALL };
static const char *const sched_fields[SC_ALL] = {"name",   "workflow",  "cron",      "timezone", "queue", "backfill",
                                                 "paused", "last_tick", "next_tick", "input",    "last_error"};

/* The cells of one schedule (malloc'd text, NULL for none); returns -1 when out of memory. */
static int sched_cells(const json_t *s, char *cells[SC_ALL])
{
    int failed = 0;

    for (size_t c = 0; c < SC_ALL; c++) {
        const json_t *v = json_object_get(s, sched_fields[c]);
        if (c == SC_BACKFILL || c == SC_PAUSED)
            cells[c] = strdup(json_is_true(v) ? "yes" : "no");
        else
            cells[c] = cli_json_text(v, &failed);
        if ((c == SC_BACKFILL || c == SC_PAUSED) && cells[c] == NULL)
            failed = 1;
    }
    return failed ? -1 : 0;
}

static void free_cells(char *cells[SC_ALL])
{
    for (size_t c = 0; c < SC_ALL; c++)
        free(cells[c]);
}

static int add_sched_row(cli_table *t, const json_t *s)
{
    char *cells[SC_ALL];
    int rc = sched_cells(s, cells);

    if (rc == 0)
        rc = cli_table_add(t, (const char *const *)cells);
    free_cells(cells);
    return rc;
}

/*
 * Find schedule `name` in the library's list (JSON text) and return where
 * its object's text starts and how long it is, so that --json can print it
 * as the library wrote it. Returns 0, -1 when there is no such schedule,
 * -2 when the list cannot be read.
 */
static int find_schedule(const char *list, const char *name, const char **start, size_t *len)
{
    const char *p = list;
    int depth = 0, in_string = 0;
    const char *obj = NULL;

    for (; *p; p++) {
        if (in_string) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                in_string = 0;
            continue;
        }
        if (*p == '"') {
            in_string = 1;
        } else if (*p == '[' || *p == '{') {
            if (depth == 1 && *p == '{')
                obj = p;
            depth++;
        } else if (*p == ']' || *p == '}') {
            depth--;
            if (depth == 1 && *p == '}' && obj != NULL) {
                json_error_t err;
                json_t *o = json_loadb(obj, (size_t)(p + 1 - obj), 0, &err);
                const json_t *n = json_object_get(o, "name");
                int match = json_is_string(n) && strcmp(json_string_value(n), name) == 0;
                json_decref(o);
                if (o == NULL)
                    return -2;
                if (match) {
                    *start = obj;
                    *len = (size_t)(p + 1 - obj);
                    return 0;
                }
                obj = NULL;
            }
        }
    }
    return -1;
}

/* Opens the database and reads the list; returns 0, or the exit status after reporting. */
static int read_list(const char *db, cairn **h, char **json)
{
    int rc = cli_open_db(db, CAIRN_NO_MIGRATE, h);

    *json = NULL;
    if (rc == CAIRN_OK)
        rc = cairn_schedule_list(*h, json);
    if (rc != CAIRN_OK) {
        cli_report(*h, rc);
        cairn_close(*h);
        *h = NULL;
        return CLI_EXIT_FAIL;
    }
    return 0;
}

static int schedule_list(int argc, char **argv, const cli_global *g)
{
    static const char *const header[SC_LIST] = {"NAME",   "WORKFLOW", "CRON",      "TIMEZONE", "QUEUE",
                                                "BACKFILL", "PAUSED", "LAST_TICK", "NEXT_TICK"};
    static const size_t limits[SC_LIST] = {40, 40, 40};
    cli_named_args a = {SCHEDULE_LIST_USAGE, schedule_list_help, 1, g->db, 0, NULL};
    char *json;
    cairn *h;
    int rc;

    if ((rc = cli_parse_named_args(argc, argv, &a, "schedule", 0, NULL, NULL)) >= 0)
        return rc;
    if ((rc = read_list(a.db, &h, &json)) != 0)
        return rc;
    cairn_close(h);
    if (a.as_json) {
        cli_put_json(json);
        rc = CLI_EXIT_OK;
    } else {
        rc = cli_print_json_table(json, "schedules", SC_LIST, header, limits, add_sched_row);
    }
    cairn_free(json);
    return rc;
}

/* Print one schedule as "field value" lines, like `cairn queue show`. */
static int print_schedule(const char *text, size_t len)
{
    json_error_t err;
    json_t *s = json_loadb(text, len, 0, &err);
    char *cells[SC_ALL];

    if (s == NULL) {
        fprintf(stderr, "cairn: cannot read the library's JSON: %s\n", err.text);
        return CLI_EXIT_FAIL;
    }
    if (sched_cells(s, cells) < 0) {
        free_cells(cells);
        json_decref(s);
        fprintf(stderr, "cairn: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    for (size_t c = 0; c < SC_ALL; c++) {
        printf("%-11s ", sched_fields[c]);
        cli_put_text(stdout, cells[c] != NULL ? cells[c] : "-", 0);
        fputc('\n', stdout);
    }
    free_cells(cells);
    json_decref(s);
    return CLI_EXIT_OK;
}

static int schedule_show(int argc, char **argv, const cli_global *g)
{
    cli_named_args a = {SCHEDULE_SHOW_USAGE, schedule_show_help, 1, g->db, 0, NULL};
    const char *obj = NULL;
    size_t len = 0;
    char *json;
    cairn *h;
    int rc;

    if ((rc = cli_parse_named_args(argc, argv, &a, "schedule", 1, NULL, NULL)) >= 0)
        return rc;
    if ((rc = read_list(a.db, &h, &json)) != 0)
        return rc;
    cairn_close(h);
    rc = find_schedule(json, a.name, &obj, &len);
    if (rc == -1) {
        fprintf(stderr, "cairn: not found: no schedule is named %s\n", a.name);
        rc = CLI_EXIT_FAIL;
    } else if (rc < 0) {
        fprintf(stderr, "cairn: cannot read the library's list of schedules\n");
        rc = CLI_EXIT_FAIL;
    } else if (a.as_json) {
        printf("%.*s\n", (int)len, obj);
        rc = CLI_EXIT_OK;
    } else {
        rc = print_schedule(obj, len);
    }
    cairn_free(json);
    return rc;
}

/* The options of `schedule set`. */
typedef struct set_state {
    cairn_schedule_options o;
} set_state;

static int set_option(int argc, char **argv, int *i, void *state)
{
    set_state *s = state;
    const struct {
        const char *name;
        const char **value;
    } valued[] = {
        {"--workflow", &s->o.workflow}, {"--cron", &s->o.cron},   {"--timezone", &s->o.timezone},
        {"--input", &s->o.input},       {"--queue", &s->o.queue},
    };
    const char *arg = argv[*i];
    int got;

    for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
        if ((got = cli_opt_value(argc, argv, i, valued[k].name, valued[k].value)) == 0)
            continue;
        if (got < 0) {
            cli_usage_error(SCHEDULE_SET_USAGE, "%s needs a value", arg);
            return -1;
        }
        return 1;
    }
    if (strcmp(arg, "--backfill") == 0) {
        s->o.backfill = 1;
        return 1;
    }
    if (strcmp(arg, "--paused") == 0) {
        s->o.paused = 1;
        return 1;
    }
    return 0;
}

/* The schedule's next tick from the list, for the confirmation; "-" when there is none. */
static void next_tick_of(cairn *h, const char *name, char *out, size_t len)
{
    char *json = NULL;
    const char *obj;
    size_t n;

    snprintf(out, len, "-");
    if (cairn_schedule_list(h, &json) == CAIRN_OK && find_schedule(json, name, &obj, &n) == 0) {
        json_error_t err;
        json_t *s = json_loadb(obj, n, 0, &err);
        const json_t *t = json_object_get(s, "next_tick");
        if (json_is_string(t))
            snprintf(out, len, "%s", json_string_value(t));
        json_decref(s);
    }
    cairn_free(json);
}

static int schedule_set(int argc, char **argv, const cli_global *g)
{
    cli_named_args a = {SCHEDULE_SET_USAGE, schedule_set_help, 0, g->db, 0, NULL};
    set_state s;
    const char *obj;
    size_t len;
    char *json;
    char next[64];
    cairn *h;
    int rc, existed;

    memset(&s, 0, sizeof(s));
    s.o.size = sizeof(s.o);
    if ((rc = cli_parse_named_args(argc, argv, &a, "schedule", 1, set_option, &s)) >= 0)
        return rc;
    if (s.o.workflow == NULL)
        return cli_usage_error(SCHEDULE_SET_USAGE, "schedule set needs --workflow");
    if (s.o.cron == NULL)
        return cli_usage_error(SCHEDULE_SET_USAGE, "schedule set needs --cron");
    if ((rc = read_list(a.db, &h, &json)) != 0)
        return rc;
    existed = find_schedule(json, a.name, &obj, &len) == 0;
    cairn_free(json);
    rc = cairn_schedule_set(h, a.name, &s.o);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    next_tick_of(h, a.name, next, sizeof(next));
    cairn_close(h);
    printf("schedule %s %s: workflow %s, cron '%s' in %s", a.name, existed ? "updated" : "created", s.o.workflow,
           s.o.cron, s.o.timezone != NULL ? s.o.timezone : "UTC");
    if (strcmp(next, "-") == 0)
        printf(", paused\n");
    else
        printf(", next tick %s\n", next);
    return CLI_EXIT_OK;
}

/* pause, resume and delete: one name, one call. */
static int schedule_simple(int argc, char **argv, const cli_global *g, const char *usage, void (*help)(void),
                           int op)
{
    cli_named_args a = {usage, help, 0, g->db, 0, NULL};
    char next[64];
    cairn *h;
    int rc;

    if ((rc = cli_parse_named_args(argc, argv, &a, "schedule", 1, NULL, NULL)) >= 0)
        return rc;
    rc = cli_open_db(a.db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = op == 2 ? cairn_schedule_delete(h, a.name) : cairn_schedule_pause(h, a.name, op == 0);
    if (rc == CAIRN_ENOTFOUND) {
        fprintf(stderr, "cairn: not found: no schedule is named %s\n", a.name);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    if (op == 1)
        next_tick_of(h, a.name, next, sizeof(next));
    cairn_close(h);
    if (op == 0)
        printf("schedule %s paused\n", a.name);
    else if (op == 1)
        printf("schedule %s resumed, next tick %s\n", a.name, next);
    else
        printf("schedule %s deleted; the runs it enqueued stay\n", a.name);
    return CLI_EXIT_OK;
}

static int schedule_pause(int argc, char **argv, const cli_global *g)
{
    return schedule_simple(argc, argv, g, SCHEDULE_PAUSE_USAGE, schedule_pause_help, 0);
}

static int schedule_resume(int argc, char **argv, const cli_global *g)
{
    return schedule_simple(argc, argv, g, SCHEDULE_RESUME_USAGE, schedule_resume_help, 1);
}

static int schedule_delete(int argc, char **argv, const cli_global *g)
{
    return schedule_simple(argc, argv, g, SCHEDULE_DELETE_USAGE, schedule_delete_help, 2);
}

int cli_schedule(int argc, char **argv, const cli_global *g)
{
    static const struct {
        const char *name;
        cli_command_fn run;
    } subs[] = {{"list", schedule_list},     {"show", schedule_show},     {"get", schedule_show},
                {"set", schedule_set},       {"pause", schedule_pause},   {"resume", schedule_resume},
                {"delete", schedule_delete}};

    if (argc < 2)
        return cli_usage_error(SCHEDULE_USAGE, "schedule needs a command; try 'cairn help schedule'");
    if (cli_is_help(argv[1])) {
        schedule_help();
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1, g);
    return cli_usage_error(SCHEDULE_USAGE, "unknown schedule command %s; try 'cairn help schedule'", argv[1]);
}
