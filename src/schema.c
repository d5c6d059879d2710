/*
 * Migrations: bring the cairn schema up to the version this library
 * knows. Each migration runs once, in its own transaction together with
 * the row that records it, and all of it happens under a transaction-level
 * advisory lock so that many processes starting at once apply each
 * migration exactly once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "schema.h"

/* An arbitrary constant shared by every cairn process: "cairn" in ASCII. */
#define MIGRATION_LOCK "6361697266"

int cairn_schema_latest(void)
{
    return cairn__migration_count ? cairn__migrations[cairn__migration_count - 1].version : 0;
}

static int exec_simple(PGconn *pg, const char *sql, const char *what)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_ESCHEMA, r, pg, what);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    return CAIRN_OK;
}

/* Reads the applied version; 0 when the schema does not exist yet. */
static int current_version(PGconn *pg, int *version)
{
    PGresult *r = PQexec(pg, "SELECT to_regclass('cairn.migrations') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, pg, "reading the schema version");
        PQclear(r);
        return rc;
    }
    int exists = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    *version = 0;
    if (!exists)
        return CAIRN_OK;
    r = PQexec(pg, "SELECT coalesce(max(version), 0) FROM cairn.migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, pg, "reading the schema version");
        PQclear(r);
        return rc;
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return CAIRN_OK;
}

/*
 * The oldest schema version a library must know to run against this
 * database: the largest oldest_library recorded (the column exists from
 * version 8 on; only asked of a schema newer than this library's).
 */
static int oldest_library(PGconn *pg, int *oldest)
{
    PGresult *r = PQexec(pg, "SELECT coalesce(max(oldest_library), 0) FROM cairn.migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_ESCHEMA, r, pg,
                                "reading which libraries the schema accepts");
        PQclear(r);
        return rc;
    }
    *oldest = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return CAIRN_OK;
}

static int apply_one(PGconn *pg, const cairn__migration *m)
{
    int rc = exec_simple(pg, m->sql, m->name);
    if (rc != CAIRN_OK)
        return rc;
    char ver[16], oldest[16];
    snprintf(ver, sizeof ver, "%d", m->version);
    snprintf(oldest, sizeof oldest, "%d", m->oldest_library);
    const char *vals[3] = {ver, m->name, oldest};
    /* The column exists from the first migration that sets it (version 8) on. */
    PGresult *r = m->oldest_library
                      ? PQexecParams(pg,
                                     "INSERT INTO cairn.migrations (version, name, oldest_library)"
                                     " VALUES ($1::int, $2, $3::int)",
                                     3, NULL, vals, NULL, NULL, 0)
                      : PQexecParams(pg, "INSERT INTO cairn.migrations (version, name) VALUES ($1::int, $2)", 2, NULL,
                                     vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = cairn__fail_pg(CAIRN_ESCHEMA, r, pg, "recording a migration");
        PQclear(r);
        return rc;
    }
    PQclear(r);
    return CAIRN_OK;
}

int cairn__migrate(cairn *h, PGconn *pg, int *version)
{
    int latest = cairn_schema_latest();
    int cur = 0;
    int rc = current_version(pg, &cur);
    if (rc != CAIRN_OK)
        return rc;
    if (cur >= latest) {
        /*
         * A newer schema is expected during a rolling upgrade, and most
         * migrations only add; one that a library this old cannot use
         * says so in cairn.migrations.
         */
        if (cur > latest) {
            int oldest = 0;
            if ((rc = oldest_library(pg, &oldest)) != CAIRN_OK)
                return rc;
            if (oldest > latest)
                return cairn__fail(CAIRN_ESCHEMA,
                                   "database schema is at version %d, which needs a library that knows version %d or"
                                   " later; this library knows version %d: upgrade it",
                                   cur, oldest, latest);
            cairn__log(h, CAIRN_LOG_WARN, "database schema is at version %d, newer than this library's %d", cur,
                       latest);
        }
        if (version)
            *version = cur;
        return CAIRN_OK;
    }
    if ((rc = exec_simple(pg, "BEGIN", "starting the migration")) != CAIRN_OK)
        return rc;
    rc = exec_simple(pg, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", "taking the migration lock");
    if (rc == CAIRN_OK)
        rc = exec_simple(pg,
                         "CREATE SCHEMA IF NOT EXISTS cairn;"
                         "CREATE TABLE IF NOT EXISTS cairn.migrations ("
                         "  version integer PRIMARY KEY,"
                         "  name text NOT NULL,"
                         "  applied_at timestamptz NOT NULL DEFAULT now())",
                         "creating the cairn schema");
    /* Another process may have migrated while we waited for the lock. */
    if (rc == CAIRN_OK)
        rc = current_version(pg, &cur);
    for (int i = 0; rc == CAIRN_OK && i < cairn__migration_count; i++) {
        if (cairn__migrations[i].version <= cur)
            continue;
        cairn__log(h, CAIRN_LOG_INFO, "applying migration %s", cairn__migrations[i].name);
        rc = apply_one(pg, &cairn__migrations[i]);
        if (rc == CAIRN_OK)
            cur = cairn__migrations[i].version;
    }
    if (rc != CAIRN_OK) {
        PQclear(PQexec(pg, "ROLLBACK"));
        return rc;
    }
    if ((rc = exec_simple(pg, "COMMIT", "committing the migration")) != CAIRN_OK)
        return rc;
    if (version)
        *version = cur;
    return CAIRN_OK;
}
