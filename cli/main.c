/*
 * The cairn command-line tool: global options, the table of subcommands
 * and the top-level help. Each subcommand lives in its own file and uses
 * only the public API in cairn.h.
 */
#include "cli.h"

#include <cairn.h>
#include <string.h>

#define MAIN_USAGE "cairn [--db URL] COMMAND [ARGS...]"

static int cli_version(int argc, char **argv, const cli_global *g);
static int cli_help(int argc, char **argv, const cli_global *g);

static const struct command {
    const char *name;
    cli_command_fn run;
    const char *summary;
} commands[] = {
    {"migrate", cli_migrate, "apply the schema migrations the database lacks"},
    {"list", cli_list, "list workflows, newest first"},
    {"show", cli_show, "show one workflow and its steps"},
    {"queue", cli_queue, "list, show, set and delete queue limits"},
    {"executors", cli_executors, "list the executors, their heartbeats and their work"},
    {"cancel", cli_cancel, "cancel a workflow (and, with --children, its children)"},
    {"resume", cli_resume, "run a cancelled or failed workflow again from its checkpoints"},
    {"fork", cli_fork, "start a new workflow from another's checkpoints before a step"},
    {"send", cli_send, "send a message to a workflow"},
    {"event", cli_event, "read (or wait for) a workflow's event"},
    {"stream", cli_stream, "read (or follow) a workflow's stream"},
    {"schedule", cli_schedule, "list, set, pause, resume and delete cron schedules"},
    {"dev", cli_dev, "run a throwaway local PostgreSQL cluster"},
    {"version", cli_version, "print the version of the tool and of its schema"},
    {"help", cli_help, "print this help, or a command's: cairn help COMMAND"},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void main_help(void)
{
    printf("usage: %s\n\n"
           "Durable workflows whose state lives in your PostgreSQL database.\n\n"
           "Commands:\n",
           MAIN_USAGE);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
    printf("\nOptions:\n"
           "  --db URL   the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n"
           "  --help     print this help\n"
           "  --version  print the version\n\n"
           "Run 'cairn COMMAND --help' for a command's options.\n");
}

static int cli_version(int argc, char **argv, const cli_global *g)
{
    if (argc > 1 && cli_is_help(argv[1])) {
        printf("usage: cairn version\n\nPrint the version of the tool and the schema version it knows.\n");
        return CLI_EXIT_OK;
    }
    if (argc > 1)
        return cli_usage_error("cairn version", "unexpected argument %s", argv[1]);
    printf("cairn %s (schema version %d)\n", cairn_version(), cairn_schema_latest());
    return CLI_EXIT_OK;
}

/* "cairn help COMMAND" is "cairn COMMAND --help". */
static int cli_help(int argc, char **argv, const cli_global *g)
{
    const struct command *cmd;
    char help[] = "--help";
    char *sub[3];

    if (argc < 2 || cli_is_help(argv[1])) {
        main_help();
        return CLI_EXIT_OK;
    }
    if (argc > 2)
        return cli_usage_error("cairn help [COMMAND]", "unexpected argument %s", argv[2]);
    cmd = find_command(argv[1]);
    if (cmd == NULL || cmd->run == cli_help)
        return cli_usage_error("cairn help [COMMAND]", "no command named %s", argv[1]);
    sub[0] = argv[1];
    sub[1] = help;
    sub[2] = NULL;
    return cmd->run(2, sub, g);
}

int main(int argc, char **argv)
{
    cli_global g = {NULL};
    const struct command *cmd;
    int i;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        int got;

        if (cli_is_help(argv[i])) {
            main_help();
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0)
            return cli_version(1, argv + i, &g);
        if ((got = cli_opt_value(argc, argv, &i, "--db", &g.db)) < 0)
            return cli_usage_error(MAIN_USAGE, "--db needs a URL");
        if (got == 0)
            return cli_usage_error(MAIN_USAGE, "unknown option %s", argv[i]);
    }
    if (i == argc)
        return cli_usage_error(MAIN_USAGE, "no command given; try 'cairn help'");
    cmd = find_command(argv[i]);
    if (cmd == NULL)
        return cli_usage_error(MAIN_USAGE, "unknown command %s; try 'cairn help'", argv[i]);
    return cmd->run(argc - i, argv + i, &g);
}
