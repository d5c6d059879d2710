/*
 * cairn executors: the executors the database knows, from
 * cairn_executors(), with how long ago each last heartbeat and what it runs.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define EXECUTORS_USAGE "cairn executors [--json] [--db URL]"

static void executors_help(void)
{
    printf("usage: %s\n\n"
           "List the executors (worker processes) the database knows: LIVE ones, and\n"
           "STOPPED or DEAD ones for a week after they ended. A LIVE executor whose\n"
           "heartbeat is older than its lease is presumed dead; the next live executor\n"
           "to notice marks it DEAD, returns its workflows to their queues and is named\n"
           "in ADOPTED_BY. RUNNING counts the workflows it owns now.\n\n"
           "Options:\n"
           "  --json     print the JSON array instead of a table\n"
           "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           EXECUTORS_USAGE);
}

/* A JSON integer as a long long, or -1 when v is not one. */
static long long int_value(const json_t *v)
{
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* Write an age in milliseconds briefly: "0.4s", "12s", "5m", "3h", "2d". NULL when unknown. */
static const char *age_text(long long ms, char *buf, size_t len)
{
    if (ms < 0)
        return NULL;
    if (ms < 10000)
        snprintf(buf, len, "%lld.%llds", ms / 1000, ms % 1000 / 100);
    else if (ms < 120000LL)
        snprintf(buf, len, "%llds", ms / 1000);
    else if (ms < 2 * 3600000LL)
        snprintf(buf, len, "%lldm", ms / 60000);
    else if (ms < 2 * 86400000LL)
        snprintf(buf, len, "%lldh", ms / 3600000);
    else
        snprintf(buf, len, "%lldd", ms / 86400000);
    return buf;
}

enum { EXECUTOR_COLS = 9 };

/* One executor of the list as a table row. */
static int add_executor_row(cli_table *t, const json_t *e)
{
    static const char *const plain[] = {"id", "state", "running", "hostname", "pid", "app_version", "adopted_by"};
    enum { NPLAIN = sizeof(plain) / sizeof(plain[0]) };
    char *text_of[NPLAIN];
    char age[32], lease[32];
    const char *cells[EXECUTOR_COLS];
    int failed = 0;

    for (size_t k = 0; k < NPLAIN; k++)
        text_of[k] = cli_json_text(json_object_get(e, plain[k]), &failed);
    cells[0] = text_of[0];
    cells[1] = text_of[1];
    cells[2] = age_text(int_value(json_object_get(e, "heartbeat_age_ms")), age, sizeof(age));
    cells[3] = NULL;
    if (json_is_integer(json_object_get(e, "lease_ms"))) {
        cli_format_duration(lease, sizeof(lease), (long long)json_integer_value(json_object_get(e, "lease_ms")));
        cells[3] = lease;
    }
    for (size_t k = 2; k < NPLAIN; k++)
        cells[k + 2] = text_of[k];
    if (!failed && cli_table_add(t, cells) < 0)
        failed = 1;
    for (size_t k = 0; k < NPLAIN; k++)
        free(text_of[k]);
    return failed ? -1 : 0;
}

/* Print a JSON array of executors as an aligned table. Returns an exit status. */
static int print_executor_table(const char *text)
{
    static const char *const header[EXECUTOR_COLS] = {"ID",       "STATE", "HEARTBEAT_AGE", "LEASE",     "RUNNING",
                                                      "HOSTNAME", "PID",   "APP_VERSION",   "ADOPTED_BY"};
    static const size_t limits[EXECUTOR_COLS] = {40, 0, 0, 0, 0, 30, 0, 30, 40};

    return cli_print_json_table(text, "executors", EXECUTOR_COLS, header, limits, add_executor_row);
}

int cli_executors(int argc, char **argv, const cli_global *g)
{
    const char *db = g->db;
    char *json = NULL;
    int as_json = 0;
    cairn *h;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            executors_help();
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            as_json = 1;
            continue;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &db)) < 0)
            return cli_usage_error(EXECUTORS_USAGE, "--db needs a URL");
        if (got == 0)
            return cli_usage_error(EXECUTORS_USAGE, "unexpected argument %s", arg);
    }

    rc = cli_open_db(db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_executors(h, &json);
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
        rc = print_executor_table(json);
    }
    cairn_free(json);
    return rc;
}
