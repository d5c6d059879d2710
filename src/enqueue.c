/*
 * Enqueue and send on the application's own connection. Both are thin
 * wrappers over the SQL functions cairn.enqueue() and cairn.send(), so a
 * workflow enqueued from C, from SQL or from a trigger goes through the
 * same code and the same checks; the arguments are validated here first so
 * that a bad call fails with a clear message before anything reaches the
 * server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Payloads sent through the application's connection follow the SQL limit. */
#define ENQUEUE_MAX_PAYLOAD (16u * 1024u * 1024u)

static int check_payload(const char *what, const char *json)
{
    char err[256];
    size_t len = strlen(json);
    if (len > ENQUEUE_MAX_PAYLOAD)
        return cairn__fail(CAIRN_ETOOBIG, "%s is %zu bytes; the limit is %u", what, len, ENQUEUE_MAX_PAYLOAD);
    if (cairn_json_check(json, len, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EJSON, "%s: %s", what, err);
    return CAIRN_OK;
}

/*
 * Runs one parameterized statement returning one value; *out gets a copy.
 * The statements name every type with its schema: they run on the
 * application's connection, whose search_path may hold types of the same
 * name (a domain "json" in the application's schema, say).
 */
static int exec_one(PGconn *conn, const char *sql, int n, const char *const *vals, const char *what, char **out)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        int code = cairn__conn_lost(conn, r) ? CAIRN_ECONN : CAIRN_EDB;
        if (st && strcmp(st, "23503") == 0)
            code = CAIRN_ENOTFOUND;
        else if (st && strcmp(st, "23505") == 0)
            code = CAIRN_ECONFLICT;
        else if (st && strcmp(st, "42883") == 0)
            code = CAIRN_ESCHEMA; /* the cairn functions are missing: not migrated */
        int rc = cairn__fail_pg(code, r, conn, what);
        PQclear(r);
        return rc;
    }
    if (out) {
        *out = cairn__strdup(PQgetvalue(r, 0, 0));
        if (!*out) {
            PQclear(r);
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
        }
    }
    PQclear(r);
    return CAIRN_OK;
}

#define EOPT(o, field) \
    ((o) && (o)->size >= offsetof(cairn_enqueue_options, field) + sizeof((o)->field) ? (o)->field : 0)

int cairn_enqueue(PGconn *conn, const char *workflow, const char *input, const cairn_enqueue_options *opts,
                  char **id_out)
{
    cairn__clear_error();
    char err[256];
    if (id_out)
        *id_out = NULL;
    if (!conn)
        return cairn__fail(CAIRN_EINVAL, "conn is NULL");
    if (opts && opts->size == 0)
        return cairn__fail(CAIRN_EINVAL, "cairn_enqueue_options.size is 0; set it to sizeof(cairn_enqueue_options)");
    if (cairn__check_name("workflow name", workflow, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    const char *id = EOPT(opts, id);
    const char *queue = EOPT(opts, queue);
    const char *dedup = EOPT(opts, dedup_key);
    const char *part = EOPT(opts, partition_key);
    int dedup_error = EOPT(opts, dedup_error);
    int priority = EOPT(opts, priority);
    int delay_ms = EOPT(opts, delay_ms);
    int timeout_ms = EOPT(opts, timeout_ms);
    if (id && cairn__check_name("workflow ID", id, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (queue && cairn__check_name("queue name", queue, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (dedup && cairn__check_name("dedup key", dedup, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (part && cairn__check_name("partition key", part, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (delay_ms < 0)
        return cairn__fail(CAIRN_EINVAL, "delay_ms is negative");
    if (timeout_ms < 0)
        return cairn__fail(CAIRN_EINVAL, "timeout_ms is negative");
    if (!input)
        input = "null";
    int rc = check_payload("workflow input", input);
    if (rc != CAIRN_OK)
        return rc;
    char prio[16], delay[32];
    snprintf(prio, sizeof prio, "%d", priority);
    snprintf(delay, sizeof delay, "%d milliseconds", delay_ms);
    const char *vals[9] = {workflow, input, queue ? queue : "default", id, prio, delay, dedup, part,
                           dedup_error ? "true" : "false"};
    char *got = NULL;
    rc = exec_one(conn,
                  "SELECT cairn.enqueue($1, $2::pg_catalog.json, queue => $3, id => $4,"
                  " priority => $5::pg_catalog.int4, delay => $6::pg_catalog.interval, dedup_key => $7,"
                  " partition_key => $8, dedup_error => $9::pg_catalog.bool)",
                  9, vals, "enqueueing a workflow", &got);
    if (rc == CAIRN_OK && timeout_ms > 0) {
        /*
         * The deadline, in the same transaction. An existing workflow the
         * enqueue returned (same ID or dedup key) keeps the deadline it has,
         * and one that finished gets none.
         */
        char ms[16];
        snprintf(ms, sizeof ms, "%d", timeout_ms);
        const char *dv[2] = {got, ms};
        rc = exec_one(conn,
                      "WITH d AS (INSERT INTO cairn.deadlines (workflow_id, deadline_at)"
                      "  SELECT s.id, pg_catalog.now() + $2::pg_catalog.int4 * pg_catalog.interval '1 millisecond'"
                      "    FROM cairn.workflow_status s WHERE s.id = $1 AND s.status IN ('ENQUEUED', 'PENDING')"
                      "  ON CONFLICT (workflow_id) DO NOTHING RETURNING 1)"
                      " SELECT pg_catalog.count(*) FROM d",
                      2, dv, "recording the workflow's deadline", NULL);
    }
    if (rc == CAIRN_OK && id_out)
        *id_out = got;
    else
        free(got);
    return rc;
}

int cairn_send(PGconn *conn, const char *workflow_id, const char *topic, const char *message, const char *message_id)
{
    cairn__clear_error();
    char err[256];
    if (!conn)
        return cairn__fail(CAIRN_EINVAL, "conn is NULL");
    if (cairn__check_name("workflow ID", workflow_id, err, sizeof err) != CAIRN_OK ||
        cairn__check_name("topic", topic, err, sizeof err) != CAIRN_OK ||
        (message_id && cairn__check_name("message ID", message_id, err, sizeof err) != CAIRN_OK))
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!message)
        message = "null";
    int rc = check_payload("message", message);
    if (rc != CAIRN_OK)
        return rc;
    const char *vals[4] = {workflow_id, topic, message, message_id};
    return exec_one(conn, "SELECT cairn.send($1, $2, $3::pg_catalog.json, $4)", 4, vals, "sending a message", NULL);
}
