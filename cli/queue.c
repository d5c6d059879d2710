/*
 * cairn queue: list, show, set and delete the queue configuration kept in
 * cairn.queues, through cairn_queue_list(), cairn_queue_get(),
 * cairn_queue_set() and cairn_queue_delete().
 *
 * cairn_queue_set() replaces a queue's whole configuration, while
 * `cairn queue set` changes only the limits it is given: it reads the
 * current configuration first and writes it back with those limits changed.
 */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_USAGE "cairn queue list|show|set|delete [ARGS...]"
#define QUEUE_LIST_USAGE "cairn queue list [--json] [--db URL]"
#define QUEUE_SHOW_USAGE "cairn queue show NAME [--json] [--db URL]"
#define QUEUE_SET_USAGE                                                                             \
    "cairn queue set NAME [--concurrency N|none] [--worker-concurrency N|none]\n"                  \
    "                       [--rate N/DURATION|none] [--partition-concurrency N|none] [--db URL]"
#define QUEUE_DELETE_USAGE "cairn queue delete NAME [--db URL]"

/*
 * Parse the value of a limit option: "none" stores 0 (the API's "no
 * limit"), a whole number from 1 to INT_MAX stores itself. Returns 0, or
 * the usage status after saying what is wrong.
 */
static int parse_limit_value(const char *option, const char *text, int *out)
{
    if (strcmp(text, "none") == 0) {
        *out = 0;
        return 0;
    }
    if (cli_parse_positive(text, out) == 0)
        return 0;
    return cli_usage_error(QUEUE_SET_USAGE, "%s needs a whole number from 1 to %d, or 'none'; not '%s'", option,
                           INT_MAX, text);
}

/* Parse the n digits at text as a number from 1 to INT_MAX. Returns 0, or -1 when they are not one. */
static int parse_count(const char *text, size_t n, int *out)
{
    long long v = 0;

    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (text[i] - '0');
        if (v > INT_MAX)
            return -1;
    }
    if (v < 1)
        return -1;
    *out = (int)v;
    return 0;
}

/*
 * Parse the value of --rate: "none", or COUNT/DURATION such as 100/1s.
 * Stores the count and the period in milliseconds (both 0 for none).
 * Returns 0, or the usage status after saying what is wrong.
 */
static int parse_rate_value(const char *text, int *limit, int *period_ms)
{
    const char *slash = strchr(text, '/');
    size_t n;
    int rc;

    if (strcmp(text, "none") == 0) {
        *limit = 0;
        *period_ms = 0;
        return 0;
    }
    if (slash == NULL || slash == text)
        return cli_usage_error(QUEUE_SET_USAGE,
                               "--rate needs COUNT/DURATION such as 100/1s or 5/500ms (units ms, s, m, h, d), "
                               "or 'none'; not '%s'",
                               text);
    n = (size_t)(slash - text);
    if (parse_count(text, n, limit) < 0)
        return cli_usage_error(QUEUE_SET_USAGE, "--rate: the count must be a whole number from 1 to %d; not '%.*s'",
                               INT_MAX, (int)n, text);
    rc = cli_parse_duration(slash + 1, period_ms);
    if (rc == -2)
        return cli_usage_error(QUEUE_SET_USAGE, "--rate: the period must be from 1ms to %dms (about 24 days); not '%s'",
                               INT_MAX, slash + 1);
    if (rc < 0)
        return cli_usage_error(QUEUE_SET_USAGE,
                               "--rate: the period must be a duration such as 500ms, 1s, 2m or 1h; not '%s'",
                               slash + 1);
    return 0;
}

/* Text for a count or a limit in the human forms: the number, or NULL (shown as "-") for null. */
static const char *int_text(const json_t *v, char *buf, size_t len)
{
    if (!json_is_integer(v))
        return NULL;
    snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    return buf;
}

/* Text for a queue's rate limit, "COUNT/DURATION", or NULL when it has none. */
static const char *rate_text(const json_t *q, char *buf, size_t len)
{
    const json_t *limit = json_object_get(q, "rate_limit");
    const json_t *period = json_object_get(q, "rate_period_ms");
    char dur[32];

    if (!json_is_integer(limit) || !json_is_integer(period))
        return NULL;
    cli_format_duration(dur, sizeof(dur), (long long)json_integer_value(period));
    snprintf(buf, len, "%lld/%s", (long long)json_integer_value(limit), dur);
    return buf;
}

/* Room for a number or a rate written as text. */
#define CELL_MAX 48

/*
 * The cells of one queue, in the order of the list's columns and of the
 * fields of show. Numbers are written into bufs; name points into q.
 */
enum { QCOL_NAME, QCOL_CONC, QCOL_WCONC, QCOL_RATE, QCOL_PCONC, QCOL_ENQUEUED, QCOL_RUNNING, QCOL_CONFIGURED, QCOLS };
static const char *const queue_fields[QCOLS] = {"name", "concurrency", "worker_concurrency", "rate",
                                                "partition_concurrency", "enqueued", "running", "configured"};

static void queue_cells(const json_t *q, const char *cells[QCOLS], char bufs[QCOLS][CELL_MAX])
{
    const json_t *name = json_object_get(q, "name");

    cells[QCOL_NAME] = json_is_string(name) ? json_string_value(name) : NULL;
    cells[QCOL_CONC] = int_text(json_object_get(q, "concurrency"), bufs[QCOL_CONC], CELL_MAX);
    cells[QCOL_WCONC] = int_text(json_object_get(q, "worker_concurrency"), bufs[QCOL_WCONC], CELL_MAX);
    cells[QCOL_RATE] = rate_text(q, bufs[QCOL_RATE], CELL_MAX);
    cells[QCOL_PCONC] = int_text(json_object_get(q, "partition_concurrency"), bufs[QCOL_PCONC], CELL_MAX);
    cells[QCOL_ENQUEUED] = int_text(json_object_get(q, "enqueued"), bufs[QCOL_ENQUEUED], CELL_MAX);
    cells[QCOL_RUNNING] = int_text(json_object_get(q, "running"), bufs[QCOL_RUNNING], CELL_MAX);
    cells[QCOL_CONFIGURED] = json_is_true(json_object_get(q, "configured")) ? "yes" : "no";
}

/* One queue of the list as a table row. */
static int add_queue_row(cli_table *t, const json_t *q)
{
    const char *cells[QCOLS];
    char bufs[QCOLS][CELL_MAX];

    queue_cells(q, cells, bufs);
    return cli_table_add(t, cells);
}

/* Print a JSON array of queues as an aligned table. Returns an exit status. */
static int print_queue_table(const char *text)
{
    static const char *const header[QCOLS] = {"NAME",    "CONCURRENCY", "WORKER_CONCURRENCY", "RATE",
                                              "PARTITION_CONCURRENCY", "ENQUEUED", "RUNNING", "CONFIGURED"};
    static const size_t limits[QCOLS] = {40};

    return cli_print_json_table(text, "queues", QCOLS, header, limits, add_queue_row);
}

/* Print one queue as "field value" lines, like `cairn show` prints a workflow. */
static int print_queue(const char *text)
{
    json_t *root = cli_parse_json(text);
    const char *cells[QCOLS];
    char bufs[QCOLS][CELL_MAX];

    if (root == NULL)
        return CLI_EXIT_FAIL;
    if (!json_is_object(root)) {
        fprintf(stderr, "cairn: the library's queue is not a JSON object\n");
        json_decref(root);
        return CLI_EXIT_FAIL;
    }
    queue_cells(root, cells, bufs);
    for (size_t c = 0; c < QCOLS; c++) {
        printf("%-22s ", queue_fields[c]);
        cli_put_text(stdout, cells[c] != NULL ? cells[c] : "-", 0);
        fputc('\n', stdout);
    }
    json_decref(root);
    return CLI_EXIT_OK;
}

static void queue_help(void)
{
    printf("usage: %s\n\n"
           "Queue configuration, shared by every executor through cairn.queues. A queue\n"
           "needs none to be used: one without a configuration has no limits.\n\n"
           "Commands:\n"
           "  list         every configured queue and every queue with work waiting or running\n"
           "  show NAME    one queue: its limits and how many workflows wait and run (also: get)\n"
           "  set NAME     create a queue or change the limits given, keeping the others\n"
           "  delete NAME  remove a queue's configuration; its workflows stay, without limits\n\n"
           "Run 'cairn queue COMMAND --help' for a command's options.\n",
           QUEUE_USAGE);
}

static void queue_list_help(void)
{
    printf("usage: %s\n\n"
           "List every configured queue and every queue holding ENQUEUED or PENDING\n"
           "workflows, by name, with its limits (\"-\": none), the workflows waiting\n"
           "(ENQUEUED) and running (PENDING) in it now, and whether it is configured.\n\n"
           "Options:\n"
           "  --json     print the JSON array instead of a table\n"
           "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           QUEUE_LIST_USAGE);
}

static void queue_show_help(void)
{
    printf("usage: %s\n\n"
           "Show one queue: its limits (\"-\": none), the workflows waiting and running in\n"
           "it now, and whether it is configured. Fails for a queue with neither a\n"
           "configuration nor live workflows.\n\n"
           "Options:\n"
           "  --json     print the JSON object instead of text\n"
           "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           QUEUE_SHOW_USAGE);
}

static void queue_set_help(void)
{
    printf("usage: %s\n\n"
           "Create a queue, or change the limits given and keep the others. 'none'\n"
           "removes a limit. Every executor applies the change at its next claim.\n\n"
           "Options:\n"
           "  --concurrency N            most workflows of the queue running at once, fleet-wide\n"
           "  --worker-concurrency N     most running at once on any one executor\n"
           "  --rate N/DURATION          most starts in any window of DURATION, e.g. 100/1s,\n"
           "                             5/500ms, 1000/1h (units ms, s, m, h, d; 100/s is 100/1s)\n"
           "  --partition-concurrency N  most running at once per partition key\n"
           "  --db URL                   the database (default $CAIRN_DATABASE_URL, else libpq's PG*\n"
           "                             environment)\n",
           QUEUE_SET_USAGE);
}

static void queue_delete_help(void)
{
    printf("usage: %s\n\n"
           "Remove a queue's configuration. Its workflows stay where they are and run\n"
           "without limits. Fails when the queue has no configuration.\n\n"
           "Options:\n"
           "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           QUEUE_DELETE_USAGE);
}


static int queue_list(int argc, char **argv, const cli_global *g)
{
    cli_named_args a = {QUEUE_LIST_USAGE, queue_list_help, 1, g->db, 0, NULL};
    char *json = NULL;
    cairn *h;
    int rc;

    if ((rc = cli_parse_named_args(argc, argv, &a, "queue", 0, NULL, NULL)) >= 0)
        return rc;
    rc = cli_open_db(a.db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_queue_list(h, &json);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cairn_close(h);
    if (a.as_json) {
        cli_put_json(json);
        rc = CLI_EXIT_OK;
    } else {
        rc = print_queue_table(json);
    }
    cairn_free(json);
    return rc;
}

static int queue_show(int argc, char **argv, const cli_global *g)
{
    cli_named_args a = {QUEUE_SHOW_USAGE, queue_show_help, 1, g->db, 0, NULL};
    char *json = NULL;
    cairn *h;
    int rc;

    if ((rc = cli_parse_named_args(argc, argv, &a, "queue", 1, NULL, NULL)) >= 0)
        return rc;
    rc = cli_open_db(a.db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_queue_get(h, a.name, &json);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cairn_close(h);
    if (a.as_json) {
        cli_put_json(json);
        rc = CLI_EXIT_OK;
    } else {
        rc = print_queue(json);
    }
    cairn_free(json);
    return rc;
}

/* The limits `queue set` was given; a limit not given keeps its current value. */
typedef struct set_state {
    int has_conc, conc;
    int has_wconc, wconc;
    int has_rate, rate, period_ms;
    int has_pconc, pconc;
} set_state;

/* Match the options of `queue set` (see cli_opt_fn). */
static int set_option(int argc, char **argv, int *i, void *state)
{
    set_state *s = state;
    const struct {
        const char *name;
        int *given, *value;
    } limits[] = {
        {"--concurrency", &s->has_conc, &s->conc},
        {"--worker-concurrency", &s->has_wconc, &s->wconc},
        {"--partition-concurrency", &s->has_pconc, &s->pconc},
    };
    const char *arg = argv[*i], *value;
    int got;

    for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
        if ((got = cli_opt_value(argc, argv, i, limits[k].name, &value)) == 0)
            continue;
        if (got < 0) {
            cli_usage_error(QUEUE_SET_USAGE, "%s needs a value (a number or 'none')", arg);
            return -1;
        }
        if (parse_limit_value(limits[k].name, value, limits[k].value) != 0)
            return -1;
        *limits[k].given = 1;
        return 1;
    }
    if ((got = cli_opt_value(argc, argv, i, "--rate", &value)) == 0)
        return 0;
    if (got < 0) {
        cli_usage_error(QUEUE_SET_USAGE, "--rate needs a value (N/DURATION or 'none')");
        return -1;
    }
    if (parse_rate_value(value, &s->rate, &s->period_ms) != 0)
        return -1;
    s->has_rate = 1;
    return 1;
}

/*
 * Read one of the queue's current limits from its JSON into *out (0 for
 * none). Returns 0, or -1 when the value cannot be given back to
 * cairn_queue_set() as it is.
 */
static int current_limit(const json_t *q, const char *field, int *out)
{
    const json_t *v = json_object_get(q, field);
    json_int_t n;

    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return -1;
    n = json_integer_value(v);
    if (n < 1 || n > INT_MAX)
        return -1;
    *out = (int)n;
    return 0;
}

/*
 * Fill o with the queue's current configuration from cairn_queue_get()'s
 * JSON, for the limits not given on the command line. Returns 0, or -1
 * after saying why a limit that is to be kept cannot be.
 */
static int merge_current(const char *name, const char *text, const set_state *s, cairn_queue_options *o,
                         int *configured)
{
    json_t *q = cli_parse_json(text);
    int bad = 0;

    if (q == NULL)
        return -1;
    if (!json_is_object(q)) {
        fprintf(stderr, "cairn: the library's queue is not a JSON object\n");
        json_decref(q);
        return -1;
    }
    *configured = json_is_true(json_object_get(q, "configured"));
    if (!s->has_conc && current_limit(q, "concurrency", &o->concurrency) < 0)
        bad = 1;
    if (!s->has_wconc && current_limit(q, "worker_concurrency", &o->worker_concurrency) < 0)
        bad = 1;
    if (!s->has_pconc && current_limit(q, "partition_concurrency", &o->partition_concurrency) < 0)
        bad = 1;
    if (!s->has_rate) {
        /*
         * A period written in SQL may be longer than an int of milliseconds
         * or shorter than one millisecond; writing it back would change it,
         * so the user is asked to give --rate instead.
         */
        if (current_limit(q, "rate_limit", &o->rate_limit) < 0 ||
            current_limit(q, "rate_period_ms", &o->rate_period_ms) < 0 ||
            (o->rate_limit == 0) != (o->rate_period_ms == 0)) {
            const json_t *period = json_object_get(q, "rate_period_ms");

            fprintf(stderr,
                    "cairn: queue %s: its current rate period (%lldms) cannot be kept: the API takes 1ms to %dms; "
                    "give --rate to replace it\n",
                    name, json_is_integer(period) ? (long long)json_integer_value(period) : -1LL, INT_MAX);
            json_decref(q);
            return -1;
        }
    }
    json_decref(q);
    if (bad) {
        fprintf(stderr, "cairn: queue %s: the library returned a limit that is not a positive int\n", name);
        return -1;
    }
    return 0;
}

/* Print a limit for the confirmation of `queue set`, after sep: "concurrency 5" or "concurrency none". */
static void put_limit(const char *sep, const char *label, int v)
{
    if (v != 0)
        printf("%s%s %d", sep, label, v);
    else
        printf("%s%s none", sep, label);
}

static int queue_set(int argc, char **argv, const cli_global *g)
{
    cli_named_args a = {QUEUE_SET_USAGE, queue_set_help, 0, g->db, 0, NULL};
    set_state s;
    cairn_queue_options o;
    char *json = NULL;
    int configured = 0;
    cairn *h;
    int rc;

    memset(&s, 0, sizeof(s));
    if ((rc = cli_parse_named_args(argc, argv, &a, "queue", 1, set_option, &s)) >= 0)
        return rc;

    /*
     * The read and the write are two statements: the API offers no
     * transaction around them, so a `queue set` of the same queue that runs
     * in between loses its changes to the limits this one keeps. Operators
     * change queues rarely and by hand, which makes that acceptable.
     */
    memset(&o, 0, sizeof(o));
    o.size = sizeof(o);
    rc = cli_open_db(a.db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK) {
        rc = cairn_queue_get(h, a.name, &json);
        if (rc == CAIRN_ENOTFOUND)
            rc = CAIRN_OK; /* a new queue: nothing to keep */
    }
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    if (json != NULL && merge_current(a.name, json, &s, &o, &configured) < 0) {
        cairn_free(json);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cairn_free(json);
    if (s.has_conc)
        o.concurrency = s.conc;
    if (s.has_wconc)
        o.worker_concurrency = s.wconc;
    if (s.has_pconc)
        o.partition_concurrency = s.pconc;
    if (s.has_rate) {
        o.rate_limit = s.rate;
        o.rate_period_ms = s.period_ms;
    }

    rc = cairn_queue_set(h, a.name, &o);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cairn_close(h);

    printf("queue %s %s", a.name, configured ? "updated" : "created");
    put_limit(": ", "concurrency", o.concurrency);
    put_limit(", ", "worker_concurrency", o.worker_concurrency);
    if (o.rate_limit != 0) {
        char dur[32];

        cli_format_duration(dur, sizeof(dur), o.rate_period_ms);
        printf(", rate %d/%s", o.rate_limit, dur);
    } else {
        printf(", rate none");
    }
    put_limit(", ", "partition_concurrency", o.partition_concurrency);
    fputc('\n', stdout);
    return CLI_EXIT_OK;
}

static int queue_delete(int argc, char **argv, const cli_global *g)
{
    cli_named_args a = {QUEUE_DELETE_USAGE, queue_delete_help, 0, g->db, 0, NULL};
    cairn *h;
    int rc;

    if ((rc = cli_parse_named_args(argc, argv, &a, "queue", 1, NULL, NULL)) >= 0)
        return rc;
    rc = cli_open_db(a.db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_queue_delete(h, a.name);
    if (rc == CAIRN_ENOTFOUND) {
        fprintf(stderr, "cairn: queue %s has no configuration to delete\n", a.name);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cairn_close(h);
    printf("queue %s: configuration deleted; it has no limits now\n", a.name);
    return CLI_EXIT_OK;
}

int cli_queue(int argc, char **argv, const cli_global *g)
{
    static const struct {
        const char *name;
        cli_command_fn run;
    } subs[] = {{"list", queue_list}, {"show", queue_show}, {"get", queue_show},
                {"set", queue_set},   {"delete", queue_delete}};

    if (argc < 2)
        return cli_usage_error(QUEUE_USAGE, "queue needs a command; try 'cairn help queue'");
    if (cli_is_help(argv[1])) {
        queue_help();
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1, g);
    return cli_usage_error(QUEUE_USAGE, "unknown queue command %s; try 'cairn help queue'", argv[1]);
}
