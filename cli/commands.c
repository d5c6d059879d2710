/*
 * The database subcommands: migrate, list and show. Each opens a handle
 * with cairn_open(), makes one API call and prints its result, either as
 * the library's JSON text (--json) or as text for people.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define MIGRATE_USAGE "cairn migrate [--db URL]"
#define LIST_USAGE "cairn list [--status STATUS] [--name NAME] [--limit N] [--json] [--db URL]"
#define SHOW_USAGE "cairn show ID [--json] [--db URL]"

/* Longest value in the human form of show, and longest step result; --json prints them whole. */
#define SHOW_FIELD_MAX 300
#define SHOW_STEP_MAX 60

/*
 * Text for a payload (input, output): its compact JSON, so that a string
 * keeps its quotes and null shows as null. NULL when the field is absent.
 */
static char *payload_text(const json_t *v, int *failed)
{
    char *s;

    if (v == NULL)
        return NULL;
    s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL)
        *failed = 1;
    return s;
}

/*
 * Text for a recorded error: a string as it is, an object's "message" when
 * it has one, else compact JSON. NULL when there is no error.
 */
static char *error_text(const json_t *v, int *failed)
{
    const json_t *msg = json_is_object(v) ? json_object_get(v, "message") : NULL;

    return cli_json_text(json_is_string(msg) ? msg : v, failed);
}

static void migrate_help(void)
{
    printf("usage: %s\n\n"
           "Apply the schema migrations the database lacks and print the schema version.\n"
           "Safe to run from several processes at once.\n\n"
           "Options:\n"
           "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           MIGRATE_USAGE);
}

int cli_migrate(int argc, char **argv, const cli_global *g)
{
    const char *db = g->db;
    cairn *h;
    int rc, version = 0;

    for (int i = 1; i < argc; i++) {
        int got;

        if (cli_is_help(argv[i])) {
            migrate_help();
            return CLI_EXIT_OK;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &db)) < 0)
            return cli_usage_error(MIGRATE_USAGE, "--db needs a URL");
        if (got == 0)
            return cli_usage_error(MIGRATE_USAGE, "unexpected argument %s", argv[i]);
    }

    rc = cli_open_db(db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_ESCHEMA) {
        /*
         * A database without the schema cannot be opened with
         * CAIRN_NO_MIGRATE. Opening it without the flag applies the
         * migrations; cairn_migrate() below then reports the version.
         */
        cairn_close(h);
        rc = cli_open_db(db, 0, &h);
    }
    if (rc == CAIRN_OK)
        rc = cairn_migrate(h, &version);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    printf("schema at version %d\n", version);
    cairn_close(h);
    return CLI_EXIT_OK;
}

static void list_help(void)
{
    printf("usage: %s\n\n"
           "List workflows, newest first.\n\n"
           "Options:\n"
           "  --status STATUS  only workflows in this status (ENQUEUED, PENDING, SUCCESS, ERROR,\n"
           "                   CANCELLED, DEAD_LETTER)\n"
           "  --name NAME      only workflows of this name\n"
           "  --limit N        at most N workflows (default 100)\n"
           "  --json           print the JSON array instead of a table\n"
           "  --db URL         the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           LIST_USAGE);
}

static const char *const workflow_fields[] = {"id", "name", "status", "attempts", "created_at", "updated_at"};
enum { WORKFLOW_COLS = sizeof(workflow_fields) / sizeof(workflow_fields[0]) };

/* One workflow of the list as a table row. */
static int add_workflow_row(cli_table *t, const json_t *row)
{
    char *cells[WORKFLOW_COLS];
    int failed = 0;

    for (size_t c = 0; c < WORKFLOW_COLS; c++)
        cells[c] = cli_json_text(json_object_get(row, workflow_fields[c]), &failed);
    if (!failed && cli_table_add(t, (const char *const *)cells) < 0)
        failed = 1;
    for (size_t c = 0; c < WORKFLOW_COLS; c++)
        free(cells[c]);
    return failed ? -1 : 0;
}

/* Print a JSON array of workflows as an aligned table. Returns an exit status. */
static int print_workflow_table(const char *text)
{
    static const char *const header[WORKFLOW_COLS] = {"ID", "NAME", "STATUS", "ATTEMPTS", "CREATED_AT", "UPDATED_AT"};
    static const size_t limits[WORKFLOW_COLS] = {40, 40, 0, 0, 0, 0};

    return cli_print_json_table(text, "workflows", WORKFLOW_COLS, header, limits, add_workflow_row);
}

/* Copy status with ASCII letters upper-cased, so --status success works too. */
static char *upper_copy(const char *status)
{
    char *s = strdup(status);

    if (s != NULL)
        for (char *p = s; *p != '\0'; p++)
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
    return s;
}

int cli_list(int argc, char **argv, const cli_global *g)
{
    const char *db = g->db;
    const char *status = NULL, *name = NULL, *limit = NULL;
    cairn_list_options lo;
    char *json = NULL;
    char *status_upper = NULL;
    int as_json = 0;
    cairn *h;
    int rc;

    memset(&lo, 0, sizeof(lo));
    lo.size = sizeof(lo);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            list_help();
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            as_json = 1;
            continue;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &db)) == 0 &&
            (got = cli_opt_value(argc, argv, &i, "--status", &status)) == 0 &&
            (got = cli_opt_value(argc, argv, &i, "--name", &name)) == 0 &&
            (got = cli_opt_value(argc, argv, &i, "--limit", &limit)) == 0)
            return cli_usage_error(LIST_USAGE, "unexpected argument %s", arg);
        if (got < 0)
            return cli_usage_error(LIST_USAGE, "%s needs a value", arg);
    }
    if (limit != NULL && cli_parse_positive(limit, &lo.limit) < 0)
        return cli_usage_error(LIST_USAGE, "--limit needs a positive number, not '%s'", limit);
    if (status != NULL) {
        status_upper = upper_copy(status);
        if (status_upper == NULL) {
            fprintf(stderr, "cairn: out of memory\n");
            return CLI_EXIT_FAIL;
        }
        lo.status = status_upper;
    }
    lo.name = name;

    rc = cli_open_db(db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_list(h, &lo, &json);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        free(status_upper);
        return CLI_EXIT_FAIL;
    }
    cairn_close(h);
    free(status_upper);

    if (as_json) {
        cli_put_json(json);
        rc = CLI_EXIT_OK;
    } else {
        rc = print_workflow_table(json);
    }
    cairn_free(json);
    return rc;
}

static void show_help(void)
{
    printf("usage: %s\n\n"
           "Show one workflow and the steps it has recorded.\n\n"
           "Options:\n"
           "  --json     print the JSON object instead of text\n"
           "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           SHOW_USAGE);
}

/* Print "label:" padded, then text (or "-"), cut to SHOW_FIELD_MAX. */
static void put_field(const char *label, const char *text)
{
    printf("%-12s ", label);
    cli_put_text(stdout, text != NULL ? text : "-", SHOW_FIELD_MAX);
    fputc('\n', stdout);
}

/* Print the steps array as a table of step number, name and output or error. */
static int print_steps(const json_t *steps)
{
    static const char *const header[] = {"STEP", "NAME", "RESULT"};
    static const size_t limits[] = {0, 40, SHOW_STEP_MAX};
    cli_table *t;
    int failed = 0;
    size_t i;
    json_t *step;

    if (!json_is_array(steps) || json_array_size(steps) == 0) {
        printf("\nno steps recorded\n");
        return 0;
    }
    t = cli_table_new(3, limits);
    if (t == NULL || cli_table_add(t, header) < 0)
        failed = 1;
    json_array_foreach(steps, i, step) {
        char *number, *name, *error, *result = NULL;
        const char *cells[3];

        if (failed)
            break;
        number = cli_json_text(json_object_get(step, "step"), &failed);
        name = cli_json_text(json_object_get(step, "name"), &failed);
        error = error_text(json_object_get(step, "error"), &failed);
        if (error != NULL) {
            size_t len = strlen(error) + sizeof("error: ");

            result = malloc(len);
            if (result != NULL)
                snprintf(result, len, "error: %s", error);
            else
                failed = 1;
        } else {
            result = payload_text(json_object_get(step, "output"), &failed);
        }
        cells[0] = number;
        cells[1] = name;
        cells[2] = result;
        if (!failed && cli_table_add(t, cells) < 0)
            failed = 1;
        free(number);
        free(name);
        free(error);
        free(result);
    }
    if (!failed) {
        fputc('\n', stdout);
        cli_table_print(t, stdout);
    }
    cli_table_free(t);
    return failed ? -1 : 0;
}

/* Print a workflow described by the library as text. Returns an exit status. */
static int print_workflow(const char *text)
{
    static const char *const plain[] = {"id", "name", "status", "queue", "executor_id", "attempts",
                                        "created_at", "updated_at"};
    json_t *root = cli_parse_json(text);
    int failed = 0;
    char *s;

    if (root == NULL)
        return CLI_EXIT_FAIL;
    if (!json_is_object(root)) {
        fprintf(stderr, "cairn: the library's description is not a JSON object\n");
        json_decref(root);
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]) && !failed; i++) {
        s = cli_json_text(json_object_get(root, plain[i]), &failed);
        put_field(plain[i], s);
        free(s);
    }
    if (!failed) {
        s = payload_text(json_object_get(root, "input"), &failed);
        put_field("input", s);
        free(s);
    }
    if (!failed) {
        s = payload_text(json_object_get(root, "output"), &failed);
        put_field("output", s);
        free(s);
    }
    if (!failed) {
        s = error_text(json_object_get(root, "error"), &failed);
        put_field("error", s);
        free(s);
    }
    if (!failed && print_steps(json_object_get(root, "steps")) < 0)
        failed = 1;
    if (failed)
        fprintf(stderr, "cairn: out of memory\n");
    json_decref(root);
    return failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_show(int argc, char **argv, const cli_global *g)
{
    const char *db = g->db;
    const char *id = NULL;
    char *json = NULL;
    int as_json = 0;
    cairn *h;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            show_help();
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            as_json = 1;
            continue;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &db)) < 0)
            return cli_usage_error(SHOW_USAGE, "--db needs a URL");
        if (got > 0)
            continue;
        if (strcmp(arg, "--") == 0 && i + 1 < argc && id == NULL) {
            id = argv[++i];
            continue;
        }
        if (arg[0] == '-')
            return cli_usage_error(SHOW_USAGE, "unknown option %s", arg);
        if (id != NULL)
            return cli_usage_error(SHOW_USAGE, "unexpected argument %s", arg);
        id = arg;
    }
    if (id == NULL)
        return cli_usage_error(SHOW_USAGE, "show needs a workflow ID");

    rc = cli_open_db(db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_describe(h, id, 1, &json);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cairn_close(h);

    if (as_json) {
        cli_put_json(json);
        rc = CLI_EXIT_OK;
    } else {
        rc = print_workflow(json);
    }
    cairn_free(json);
    return rc;
}
