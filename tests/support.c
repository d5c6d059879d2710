/* Test helpers; see support.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static char server[1024];
static char current[1200];

/* The maintenance conninfo of the server the suite runs against. */
static const char *server_conninfo(void)
{
    if (server[0])
        return server;
    const char *url = getenv("CAIRN_DATABASE_URL");
    const char *dir = getenv("CAIRN_TEST_DEV_DIR");
    if (url && *url)
        snprintf(server, sizeof server, "%s", url);
    else if (dir && *dir)
        snprintf(server, sizeof server, "host=%s port=5432 user=postgres dbname=postgres", dir);
    else
        snprintf(server, sizeof server, "dbname=postgres");
    return server;
}

const char *t_fresh_db(const char *name)
{
    PGconn *pg = PQconnectdb(server_conninfo());
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "cannot reach the test server (%s): %s", server_conninfo(), PQerrorMessage(pg));
        exit(1);
    }
    char sql[512];
    char *ident = PQescapeIdentifier(pg, name, strlen(name));
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
    PQclear(PQexec(pg, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", ident);
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "cannot create database %s: %s", name, PQerrorMessage(pg));
        exit(1);
    }
    PQclear(r);
    PQfreemem(ident);
    PQfinish(pg);
    /* Rebuild the server's conninfo (keyword or URL form) with the new dbname. */
    PQconninfoOption *opts = PQconninfoParse(server_conninfo(), NULL);
    size_t n = 0;
    current[0] = '\0';
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || strcmp(o->keyword, "dbname") == 0)
            continue;
        n += (size_t)snprintf(current + n, sizeof current - n, "%s='%s' ", o->keyword, o->val);
    }
    snprintf(current + n, sizeof current - n, "dbname='%s'", name);
    PQconninfoFree(opts);
    return current;
}

const char *t_db(void)
{
    return current;
}

PGconn *t_pg(void)
{
    PGconn *pg = PQconnectdb(current);
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("cannot connect to %s: %s", current, PQerrorMessage(pg));
    return pg;
}

long t_scalar(const char *sql)
{
    PGconn *pg = t_pg();
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(pg));
    long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(pg);
    return v;
}

void t_exec(const char *sql)
{
    PGconn *pg = t_pg();
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    PQfinish(pg);
}

cairn *t_open(const char *executor_id, int workers)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = current;
    o.executor_id = executor_id;
    o.workers = workers;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc != CAIRN_OK)
        fail_msg("cairn_open(%s): %s", current, cairn_errmsg(h));
    return h;
}
