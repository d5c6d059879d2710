/*
 * cairn send, cairn event and cairn stream: talking to running workflows
 * from a shell. send delivers a message through cairn_send_message();
 * event reads (or waits for) a workflow's event with cairn_get_event();
 * stream prints a workflow's stream, one value per line, through
 * cairn_stream_read(), and with --follow keeps printing until the stream
 * ends.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define SEND_USAGE "cairn send ID TOPIC JSON [--message-id ID] [--db URL]"
#define EVENT_USAGE "cairn event ID KEY [--wait DURATION|forever] [--db URL]"
#define STREAM_USAGE "cairn stream ID NAME [--from OFFSET] [--follow] [--db URL]"

static void send_help(void)
{
    printf("usage: %s\n\n"
           "Send the JSON message to workflow ID on TOPIC; the workflow receives it with\n"
           "cairn_recv(). The message is stored in the database at once, whether or not\n"
           "the workflow is waiting for it yet.\n\n"
           "Options:\n"
           "  --message-id ID  make the send idempotent: a second send with the same ID to the\n"
           "                   same workflow stores nothing (so a retried send is safe)\n"
           "  --db URL         the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           SEND_USAGE);
}

int cli_send(int argc, char **argv, const cli_global *g)
{
    const char *db = g->db, *message_id = NULL;
    const char *pos[3];
    int npos = 0;
    cairn *h;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            send_help();
            return CLI_EXIT_OK;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &db)) == 0 &&
            (got = cli_opt_value(argc, argv, &i, "--message-id", &message_id)) == 0) {
            if (arg[0] == '-' && arg[1] == '-')
                return cli_usage_error(SEND_USAGE, "unknown option %s", arg);
            if (npos == 3)
                return cli_usage_error(SEND_USAGE, "unexpected argument %s", arg);
            pos[npos++] = arg;
            continue;
        }
        if (got < 0)
            return cli_usage_error(SEND_USAGE, "%s needs a value", arg);
    }
    if (npos < 3)
        return cli_usage_error(SEND_USAGE, "send needs a workflow ID, a topic and a JSON message");
    if (cairn_json_check(pos[2], strlen(pos[2]), NULL, 0) != CAIRN_OK) {
        char err[256];
        cairn_json_check(pos[2], strlen(pos[2]), err, sizeof(err));
        return cli_usage_error(SEND_USAGE, "the message is not JSON: %s (a string needs its quotes: '\"text\"')",
                               err);
    }

    rc = cli_open_db(db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_send_message(h, pos[0], pos[1], pos[2], message_id);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    printf("message sent to %s on topic %s\n", pos[0], pos[1]);
    cairn_close(h);
    return CLI_EXIT_OK;
}

static void event_help(void)
{
    printf("usage: %s\n\n"
           "Print the latest value of event KEY of workflow ID, as JSON on one line.\n"
           "Fails if the workflow has not published it (at once if the workflow has\n"
           "finished without publishing it).\n\n"
           "Options:\n"
           "  --wait DURATION  wait this long for the event to be published: milliseconds\n"
           "                   (5000) or a duration (500ms, 5s, 2m, 1h), or 'forever'\n"
           "  --db URL         the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           EVENT_USAGE);
}

/* Parse --wait: whole milliseconds, a duration, or "forever" (-1). Returns 0, or -1 when it is none of those. */
static int parse_wait(const char *text, int *ms)
{
    if (strcmp(text, "forever") == 0) {
        *ms = -1;
        return 0;
    }
    if (strcmp(text, "0") == 0) {
        *ms = 0;
        return 0;
    }
    if (cli_parse_positive(text, ms) == 0)
        return 0;
    return cli_parse_duration(text, ms) == 0 ? 0 : -1;
}

int cli_event(int argc, char **argv, const cli_global *g)
{
    const char *db = g->db, *wait = NULL;
    const char *pos[2];
    int npos = 0, wait_ms = 0;
    char *value = NULL;
    cairn *h;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            event_help();
            return CLI_EXIT_OK;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &db)) == 0 &&
            (got = cli_opt_value(argc, argv, &i, "--wait", &wait)) == 0) {
            if (arg[0] == '-' && arg[1] == '-')
                return cli_usage_error(EVENT_USAGE, "unknown option %s", arg);
            if (npos == 2)
                return cli_usage_error(EVENT_USAGE, "unexpected argument %s", arg);
            pos[npos++] = arg;
            continue;
        }
        if (got < 0)
            return cli_usage_error(EVENT_USAGE, "%s needs a value", arg);
    }
    if (npos < 2)
        return cli_usage_error(EVENT_USAGE, "event needs a workflow ID and an event key");
    if (wait != NULL && parse_wait(wait, &wait_ms) < 0)
        return cli_usage_error(EVENT_USAGE,
                               "--wait needs milliseconds, a duration such as 500ms, 5s or 2m, or 'forever'; not '%s'",
                               wait);

    rc = cli_open_db(db, CAIRN_NO_MIGRATE, &h);
    if (rc == CAIRN_OK)
        rc = cairn_get_event(h, pos[0], pos[1], wait_ms, &value);
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cli_put_json(value);
    cairn_free(value);
    cairn_close(h);
    return CLI_EXIT_OK;
}

static void stream_help(void)
{
    printf("usage: %s\n\n"
           "Print the values of stream NAME of workflow ID, one JSON value per line, in\n"
           "order. Without --follow, print the values there now and stop.\n\n"
           "Options:\n"
           "  --from OFFSET  start at this offset (default 0, the first value)\n"
           "  --follow       keep printing values as the workflow appends them, until the\n"
           "                 stream is closed or the workflow ends\n"
           "  --db URL       the database (default $CAIRN_DATABASE_URL, else libpq's PG* environment)\n",
           STREAM_USAGE);
}

/* Parse a whole number from 0 to LLONG_MAX. Returns 0, or -1 when text is not one. */
static int parse_offset(const char *text, long long *out)
{
    char *end;
    long long v;

    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/*
 * Print each element of the JSON array text on a line of its own, as the
 * library returned it but without the whitespace between tokens (strings
 * cannot hold a raw line break, so a value spread over lines joins into
 * one). Numbers and strings keep their exact text.
 */
static void put_values(const char *array)
{
    const char *p = array;
    int depth = 0, in_string = 0, escaped = 0, pending = 0;

    while (*p != '\0' && *p != '[')
        p++;
    if (*p == '\0')
        return;
    for (p++; *p != '\0'; p++) {
        char c = *p;

        if (in_string) {
            fputc(c, stdout);
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (depth == 0 && (c == ',' || c == ']')) {
            if (pending)
                fputc('\n', stdout);
            pending = 0;
            if (c == ']')
                break;
            continue;
        }
        if (c == '"')
            in_string = 1;
        else if (c == '[' || c == '{')
            depth++;
        else if (c == ']' || c == '}')
            depth--;
        fputc(c, stdout);
        pending = 1;
    }
}

int cli_stream(int argc, char **argv, const cli_global *g)
{
    const char *db = g->db, *from = NULL;
    const char *pos[2];
    int npos = 0, follow = 0, closed = 0;
    long long offset = 0;
    cairn *h;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            stream_help();
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--follow") == 0 || strcmp(arg, "-f") == 0) {
            follow = 1;
            continue;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--db", &db)) == 0 &&
            (got = cli_opt_value(argc, argv, &i, "--from", &from)) == 0) {
            if (arg[0] == '-' && arg[1] == '-')
                return cli_usage_error(STREAM_USAGE, "unknown option %s", arg);
            if (npos == 2)
                return cli_usage_error(STREAM_USAGE, "unexpected argument %s", arg);
            pos[npos++] = arg;
            continue;
        }
        if (got < 0)
            return cli_usage_error(STREAM_USAGE, "%s needs a value", arg);
    }
    if (npos < 2)
        return cli_usage_error(STREAM_USAGE, "stream needs a workflow ID and a stream name");
    if (from != NULL && parse_offset(from, &offset) < 0)
        return cli_usage_error(STREAM_USAGE, "--from needs a whole number from 0; not '%s'", from);

    rc = cli_open_db(db, CAIRN_NO_MIGRATE, &h);
    while (rc == CAIRN_OK && !closed) {
        char *values = NULL;
        long long next = offset;

        rc = cairn_stream_read(h, pos[0], pos[1], offset, 0, follow ? -1 : 0, &values, &next, &closed);
        if (rc == CAIRN_ETIMEDOUT && !follow) {
            rc = CAIRN_OK; /* every value there now has been printed */
            break;
        }
        if (rc != CAIRN_OK)
            break;
        put_values(values);
        fflush(stdout);
        cairn_free(values);
        offset = next;
    }
    if (rc != CAIRN_OK) {
        cli_report(h, rc);
        cairn_close(h);
        return CLI_EXIT_FAIL;
    }
    cairn_close(h);
    return CLI_EXIT_OK;
}
