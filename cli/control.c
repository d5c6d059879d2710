/*
 * cairn cancel, cairn resume and cairn fork: an operator's control over
 * one workflow, through cairn_cancel(), cairn_resume() and cairn_fork().
 * Each prints what it did, or with --json the workflow's description after
 * it (cairn_describe()), so scripts see the status it left.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define CANCEL_USAGE "cairn cancel ID [--children] [--json] [--db URL]"
#define RESUME_USAGE "cairn resume ID [--json] [--db URL]"
#define FORK_USAGE "cairn fork ID --from-step N [--id NEW_ID] [--json] [--db URL]"

static const char db_help[] = "  --db URL     the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n";

/* The options the three commands share, and the ones only some take. */
typedef struct control_args {
    const char *usage;
    const char *db;
    const char *id;
    int as_json;
    int children;         /* cancel: --children */
    const char *from_step; /* fork: --from-step */
    const char *new_id;    /* fork: --id */
} control_args;

/* Parses argv into a; returns -1 to go on, or an exit status (after --help or a usage error). */
static int parse_control(int argc, char **argv, control_args *a, void (*help)(void))
{
    int is_cancel = strcmp(argv[0], "cancel") == 0, is_fork = strcmp(argv[0], "fork") == 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;
        if (cli_is_help(arg)) {
            help();
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            a->as_json = 1;
            continue;
        }
        if (is_cancel && strcmp(arg, "--children") == 0) {
            a->children = 1;
            continue;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &a->db)) == 0 && is_fork &&
            (got = cli_opt_value(argc, argv, &i, "--from-step", &a->from_step)) == 0)
            got = cli_opt_value(argc, argv, &i, "--id", &a->new_id);
        if (got < 0)
            return cli_usage_error(a->usage, "%s needs a value", arg);
        if (got > 0)
            continue;
        if (strcmp(arg, "--") == 0 && i + 1 < argc && !a->id) {
            a->id = argv[++i];
            continue;
        }
        if (arg[0] == '-')
            return cli_usage_error(a->usage, "unknown option %s", arg);
        if (a->id)
            return cli_usage_error(a->usage, "unexpected argument %s", arg);
        a->id = arg;
    }
    if (!a->id)
        return cli_usage_error(a->usage, "%s needs a workflow ID", argv[0]);
    return -1;
}

/* Prints the workflow's description for --json; returns the exit status. */
static int put_description(cairn *h, const char *id)
{
    char *json = NULL;
    int rc = cairn_describe(h, id, 0, &json);
    if (rc != CAIRN_OK)
        return cli_report(h, rc);
    cli_put_json(json);
    cairn_free(json);
    return CLI_EXIT_OK;
}

/* Opens the database, runs the action, reports a failure; returns the exit status, or -1 to go on. */
static int run_control(control_args *a, cairn **h, int (*action)(cairn *, control_args *, char **), char **out)
{
    int rc = cli_open_db(a->db, CAIRN_NO_MIGRATE, h);
    if (rc == CAIRN_OK)
        rc = action(*h, a, out);
    if (rc != CAIRN_OK) {
        cli_report(*h, rc);
        cairn_close(*h);
        return CLI_EXIT_FAIL;
    }
    return -1;
}

static void cancel_help(void)
{
    printf("usage: %s\n\n"
           "Cancel workflow ID if it has not finished. It becomes CANCELLED at once: an\n"
           "enqueued or waiting workflow never runs again, and a running one stops at its\n"
           "next step on whichever worker runs it. Cancelling a cancelled workflow does\n"
           "nothing; one that finished otherwise cannot be cancelled.\n\n"
           "Options:\n"
           "  --children   also cancel every unfinished workflow it started as a child, and theirs\n"
           "  --json       print the workflow afterwards as JSON\n"
           "%s",
           CANCEL_USAGE, db_help);
}

static int do_cancel(cairn *h, control_args *a, char **out)
{
    (void)out;
    return cairn_cancel(h, a->id, a->children ? CAIRN_CANCEL_CHILDREN : 0);
}

int cli_cancel(int argc, char **argv, const cli_global *g)
{
    control_args a = {.usage = CANCEL_USAGE, .db = g->db};
    cairn *h;
    int rc = parse_control(argc, argv, &a, cancel_help);
    if (rc >= 0 || (rc = run_control(&a, &h, do_cancel, NULL)) >= 0)
        return rc;
    if (a.as_json)
        rc = put_description(h, a.id);
    else
        printf("workflow %s is cancelled%s\n", a.id, a.children ? ", with its children" : "");
    cairn_close(h);
    return a.as_json ? rc : CLI_EXIT_OK;
}

static void resume_help(void)
{
    printf("usage: %s\n\n"
           "Run a CANCELLED, ERROR or DEAD_LETTER workflow again. It goes back to its\n"
           "queue and the worker that claims it replays it from its checkpoints: steps\n"
           "that completed are not run again. If it ended on a step's failure, that\n"
           "step runs again. A SUCCESS cannot be resumed: fork it instead.\n\n"
           "Options:\n"
           "  --json       print the workflow afterwards as JSON\n"
           "%s",
           RESUME_USAGE, db_help);
}

static int do_resume(cairn *h, control_args *a, char **out)
{
    (void)out;
    return cairn_resume(h, a->id);
}

int cli_resume(int argc, char **argv, const cli_global *g)
{
    control_args a = {.usage = RESUME_USAGE, .db = g->db};
    cairn *h;
    int rc = parse_control(argc, argv, &a, resume_help);
    if (rc >= 0 || (rc = run_control(&a, &h, do_resume, NULL)) >= 0)
        return rc;
    if (a.as_json)
        rc = put_description(h, a.id);
    else
        printf("workflow %s is enqueued to resume\n", a.id);
    cairn_close(h);
    return a.as_json ? rc : CLI_EXIT_OK;
}

static void fork_help(void)
{
    printf("usage: %s\n\n"
           "Start a new workflow from workflow ID: the same name, input and queue, with\n"
           "the recorded results of steps 1 to N-1 copied, so it runs from step N on.\n"
           "Only the records are copied: what those steps did (rows they wrote, messages,\n"
           "events, children) is not done again. Steps from N on run again, under the\n"
           "new ID. Prints the new workflow's ID.\n\n"
           "Options:\n"
           "  --from-step N  the first step to run again (1: run everything again)\n"
           "  --id NEW_ID    the new workflow's ID (default: a new UUIDv7); repeating a fork\n"
           "                 with the same NEW_ID returns the first\n"
           "  --json         print the new workflow as JSON\n"
           "%s",
           FORK_USAGE, db_help);
}

static int do_fork(cairn *h, control_args *a, char **out)
{
    return cairn_fork(h, a->id, atoi(a->from_step), a->new_id, out);
}

int cli_fork(int argc, char **argv, const cli_global *g)
{
    control_args a = {.usage = FORK_USAGE, .db = g->db};
    cairn *h;
    char *new_id = NULL;
    int step;
    int rc = parse_control(argc, argv, &a, fork_help);
    if (rc >= 0)
        return rc;
    if (!a.from_step)
        return cli_usage_error(FORK_USAGE, "fork needs --from-step N");
    if (cli_parse_positive(a.from_step, &step) != 0)
        return cli_usage_error(FORK_USAGE, "--from-step must be a whole number from 1, not '%s'", a.from_step);
    if ((rc = run_control(&a, &h, do_fork, &new_id)) >= 0)
        return rc;
    if (a.as_json)
        rc = put_description(h, new_id);
    else
        printf("%s\n", new_id);
    cairn_free(new_id);
    cairn_close(h);
    return a.as_json ? rc : CLI_EXIT_OK;
}
