/*
 * Streams: ordered values a workflow appends while it runs (tokens as a
 * model produces them, progress lines), read in order from any offset by
 * anyone, while the workflow runs and after.
 *
 * cairn_stream_write() and cairn_stream_close() are steps of the workflow
 * ("cairn.stream_write", "cairn.stream_close") whose writes commit with
 * their checkpoint: exactly once however often the workflow is replayed.
 * cairn_step_stream_write() appends from inside a running step in its own
 * short transaction on a pool connection: at once, at least once.
 *
 * An append takes the row of its stream in cairn.streams (creating it on
 * the first write) with INSERT ... ON CONFLICT DO UPDATE, which hands out
 * the next offset and holds the row lock until commit, then inserts the
 * value at that offset, all in one statement. Concurrent appenders to one
 * stream therefore queue on that lock, offsets have no gaps (a rolled-back
 * append rolls its increment back) and become visible in offset order. A
 * closed stream's row is not updated, so the append inserts nothing and
 * reports the stream closed. Readers poll (see event.c for why), with the
 * in-process wake-up event.c provides.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"


/* ---- statements ------------------------------------------------------- */

/* Append $3 to stream $2 of workflow $1; returns its offset, or no row if the stream is closed. */
static const char append_sql[] =
    "WITH s AS ("
    "  INSERT INTO cairn.streams AS s (workflow_id, name, next_offset) VALUES ($1, $2, 1)"
    "  ON CONFLICT (workflow_id, name) DO UPDATE SET next_offset = s.next_offset + 1"
    "   WHERE s.closed_at IS NULL"
    "  RETURNING s.next_offset - 1 AS pos)"
    "INSERT INTO cairn.stream_values (workflow_id, stream, \"offset\", value)"
    " SELECT $1, $2, s.pos, $3::json FROM s"
    " RETURNING \"offset\"";

/* Close stream $2 of workflow $1; closing a closed stream changes nothing. */
static const char close_sql[] =
    "INSERT INTO cairn.streams AS s (workflow_id, name, closed_at) VALUES ($1, $2, now())"
    " ON CONFLICT (workflow_id, name) DO UPDATE SET closed_at = now() WHERE s.closed_at IS NULL";

/*
 * Read stream $2 of workflow $1 from offset $3: at most $4 values, and no
 * more values once the ones before them add up to $5 bytes (so a read of
 * large values stays near the payload limit; the first value always
 * comes). One snapshot gives the workflow's status, the stream's length
 * and closed flag, and the values as one JSON array built from their
 * stored text, byte for byte.
 */
static const char read_sql[] =
    "SELECT w.status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER'),"
    "       coalesce(s.next_offset, 0), s.closed_at IS NOT NULL, v.n, v.vals"
    "  FROM cairn.workflow_status w"
    "  LEFT JOIN cairn.streams s ON s.workflow_id = w.id AND s.name = $2"
    " CROSS JOIN LATERAL ("
    "   SELECT count(*) AS n, '[' || string_agg(x.value::text, ',' ORDER BY x.\"offset\") || ']' AS vals"
    "     FROM (SELECT y.value, y.\"offset\","
    "                  sum(octet_length(y.value::text)) OVER (ORDER BY y.\"offset\")"
    "                    - octet_length(y.value::text) AS before"
    "             FROM (SELECT t.value, t.\"offset\" FROM cairn.stream_values t"
    "                    WHERE t.workflow_id = $1 AND t.stream = $2 AND t.\"offset\" >= $3::bigint"
    "                    ORDER BY t.\"offset\" LIMIT $4::int) y) x"
    "    WHERE x.before < $5::bigint) v"
    " WHERE w.id = $1";

/* ---- writing ---------------------------------------------------------- */

/* Validates a stream name and value (NULL: JSON null) before anything is written. */
static int check_write(const cairn *h, const char *stream, const char **value)
{
    char err[256];
    if (cairn__check_name("stream name", stream, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!*value)
        *value = "null";
    return cairn__check_payload(h, "stream value", *value);
}

/*
 * The transactional body of "cairn.stream_write": udata is the stream name,
 * input the value. Its output, recorded with the checkpoint, is
 * {"offset": N}, or {"closed": true} when the stream was closed, so that a
 * replay reports the same.
 */
static int append_tx(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    const char *vals[3] = {cairn_step_workflow_id(step), udata, input};
    PGresult *r = PQexecParams(conn, append_sql, 3, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn_step_fail_pg(step, r);
        PQclear(r);
        return rc;
    }
    char buf[64];
    if (PQntuples(r) == 0)
        snprintf(buf, sizeof buf, "{\"closed\":true}");
    else
        snprintf(buf, sizeof buf, "{\"offset\":%s}", PQgetvalue(r, 0, 0));
    PQclear(r);
    *output = cairn__strdup(buf);
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

int cairn_stream_write(cairn_ctx *ctx, const char *stream, const char *value)
{
    cairn__clear_error();
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    int rc = check_write(cairn__ctx_handle(ctx), stream, &value);
    if (rc != CAIRN_OK)
        return rc;
    cairn__entry e;
    memset(&e, 0, sizeof e);
    e.tx = append_tx;
    e.udata = (void *)stream;
    e.isolation = CAIRN_READ_COMMITTED;
    char *out = NULL;
    rc = cairn__step_run(ctx, "cairn.stream_write", &e, value, &out);
    if (rc != CAIRN_OK)
        return rc;
    int closed = out && strncmp(out, "{\"closed\"", 9) == 0;
    free(out);
    if (closed)
        return cairn__fail(CAIRN_EMISUSE, "stream '%s' of workflow %s is closed", stream, cairn_ctx_id(ctx));
    cairn__watch_bump(cairn_ctx_id(ctx));
    return CAIRN_OK;
}

int cairn_step_stream_write(cairn_step_ctx *step, const char *stream, const char *value)
{
    cairn__clear_error();
    if (!step)
        return cairn__fail(CAIRN_EINVAL, "step is NULL");
    cairn *h = step->h;
    int rc = check_write(h, stream, &value);
    if (rc != CAIRN_OK)
        return rc;
    const char *vals[3] = {step->workflow_id, stream, value};
    PGresult *r = NULL;
    rc = cairn__pool_exec(h, append_sql, 3, vals, "appending to a stream", &r);
    if (rc != CAIRN_OK)
        return rc;
    int closed = PQntuples(r) == 0;
    PQclear(r);
    if (closed)
        return cairn__fail(CAIRN_EMISUSE, "stream '%s' of workflow %s is closed", stream, step->workflow_id);
    cairn__watch_bump(step->workflow_id);
    return CAIRN_OK;
}

/* The transactional body of "cairn.stream_close": udata is the stream name. */
static int close_tx(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    const char *vals[2] = {cairn_step_workflow_id(step), udata};
    PGresult *r = PQexecParams(conn, close_sql, 2, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(step, r);
    PQclear(r);
    return rc;
}

int cairn_stream_close(cairn_ctx *ctx, const char *stream)
{
    cairn__clear_error();
    char err[256];
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    if (cairn__check_name("stream name", stream, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    cairn__entry e;
    memset(&e, 0, sizeof e);
    e.tx = close_tx;
    e.udata = (void *)stream;
    e.isolation = CAIRN_READ_COMMITTED;
    int rc = cairn__step_run(ctx, "cairn.stream_close", &e, "null", NULL);
    if (rc == CAIRN_OK)
        cairn__watch_bump(cairn_ctx_id(ctx));
    return rc;
}

/* ---- reading ---------------------------------------------------------- */

int cairn_stream_read(cairn *h, const char *workflow_id, const char *stream, long long offset, int max_values,
                      int timeout_ms, char **values, long long *next_offset, int *closed)
{
    cairn__clear_error();
    char err[256];
    if (values)
        *values = NULL;
    if (closed)
        *closed = 0;
    if (!h || !values || !next_offset)
        return cairn__fail(CAIRN_EINVAL, "handle, values or next_offset is NULL");
    if (cairn__check_name("workflow ID", workflow_id, err, sizeof err) != CAIRN_OK ||
        cairn__check_name("stream name", stream, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (offset < 0)
        return cairn__fail(CAIRN_EINVAL, "offset is %lld; offsets start at 0", offset);
    if (max_values < 0)
        return cairn__fail(CAIRN_EINVAL, "max_values is %d; use 0 for the default of 1000", max_values);
    char s_offset[24], s_max[16], s_bytes[24];
    snprintf(s_offset, sizeof s_offset, "%lld", offset);
    snprintf(s_max, sizeof s_max, "%d", max_values > 0 ? max_values : 1000);
    snprintf(s_bytes, sizeof s_bytes, "%zu", h->max_payload);
    const char *vals[5] = {workflow_id, stream, s_offset, s_max, s_bytes};
    long long deadline = timeout_ms < 0 ? -1 : cairn__now_ms() + timeout_ms;
    long long interval = CAIRN__POLL_MIN_MS;
    for (;;) {
        unsigned long seen = cairn__watch_gen(workflow_id);
        PGresult *res = NULL;
        int rc = cairn__pool_exec(h, read_sql, 5, vals, "reading a stream", &res);
        if (rc != CAIRN_OK)
            return rc;
        if (PQntuples(res) == 0) {
            PQclear(res);
            return cairn__fail(CAIRN_ENOTFOUND, "no workflow has ID '%s'", workflow_id);
        }
        int ended = PQgetvalue(res, 0, 0)[0] == 't' || PQgetvalue(res, 0, 2)[0] == 't';
        long long length = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        long long n = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        if (n > 0 || ended) {
            *values = cairn__strdup(n > 0 ? PQgetvalue(res, 0, 4) : "[]");
            PQclear(res);
            if (!*values)
                return cairn__fail(CAIRN_ENOMEM, "out of memory");
            *next_offset = offset + n;
            if (closed)
                *closed = ended && offset + n >= length;
            return CAIRN_OK;
        }
        PQclear(res);
        long long now = cairn__now_ms();
        if (deadline >= 0 && now >= deadline)
            return cairn__fail(CAIRN_ETIMEDOUT, "stream '%s' of workflow %s has no value at offset %lld after %d ms",
                               stream, workflow_id, offset, timeout_ms);
        long long wait = interval;
        if (deadline >= 0 && now + wait > deadline)
            wait = deadline - now;
        cairn__watch_wait(workflow_id, seen, wait);
        interval = cairn__poll_next(interval);
    }
}
