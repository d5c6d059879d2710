/*
 * Opening the database for a subcommand and reporting the library's
 * failures, the same way for every subcommand that talks to Postgres.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int cli_report(const cairn *h, int rc)
{
    const char *msg = h != NULL ? cairn_errmsg(h) : NULL;

    if (msg != NULL && *msg != '\0')
        fprintf(stderr, "cairn: %s: %s\n", cairn_strerror(rc), msg);
    else
        fprintf(stderr, "cairn: %s\n", cairn_strerror(rc));
    return CLI_EXIT_FAIL;
}

int cli_open_db(const char *db, unsigned flags, cairn **out)
{
    cairn_options o;

    memset(&o, 0, sizeof(o));
    o.size = sizeof(o);
    o.conninfo = db != NULL ? db : getenv("CAIRN_DATABASE_URL");
    o.executor_id = "cairn-cli";
    o.workers = 1;
    o.commit_connections = 1;
    o.pool_connections = 1;
    o.flags = flags;
    *out = NULL;
    return cairn_open(out, &o);
}
