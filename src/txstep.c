/*
 * Transactional steps: the step's SQL and its checkpoint commit in one
 * transaction, so the step's writes happen exactly once.
 *
 * One attempt is BEGIN, the step function on the open transaction, then
 * the checkpoint INSERT and COMMIT pipelined in one round trip. The
 * checkpoint INSERT has no ON CONFLICT: if another execution (a replaced
 * worker waking up late, or its replacement) already recorded this step,
 * the primary key makes the INSERT fail, the whole transaction rolls back
 * with the step's writes, and the recorded result is used instead. A
 * concurrent execution's uncommitted checkpoint makes the INSERT wait for
 * it, so the two can never both commit. Serialization failures and
 * deadlocks are rolled back and retried; a connection lost around COMMIT is
 * settled by reading whether the checkpoint row exists.
 *
 * A SQL step (cairn_register_sql_step) is the same contract in one round
 * trip: its statement and the checkpoint INSERT are one statement, so the
 * library never holds a transaction open while application code runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const begin_sql[] = {
    [CAIRN_READ_COMMITTED] = "BEGIN ISOLATION LEVEL READ COMMITTED",
    [CAIRN_REPEATABLE_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ",
    [CAIRN_SERIALIZABLE] = "BEGIN ISOLATION LEVEL SERIALIZABLE",
};

static int is_conflict(const char *sqlstate)
{
    return sqlstate && (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0);
}

/* Abandons whatever transaction is open; a dead connection is dropped instead. */
static void rollback(cairn__conn *c)
{
    if (!c->pg)
        return;
    if (PQstatus(c->pg) != CONNECTION_OK) {
        cairn__conn_drop(c);
        return;
    }
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        PGresult *r = PQexec(c->pg, "ROLLBACK");
        PQclear(r);
        if (PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            cairn__conn_drop(c);
    }
}

/* Does the checkpoint for this step exist? 1 yes, 0 no, -1 the database is unreachable. */
static int checkpoint_exists(cairn *h, const cairn_step_ctx *s)
{
    char num[16];
    snprintf(num, sizeof num, "%d", s->number);
    const char *vals[2] = {s->workflow_id, num};
    PGresult *res = NULL;
    if (cairn__query(h, CAIRN__Q_STEP_GET, 2, vals, &res) != CAIRN_OK)
        return -1;
    int n = PQntuples(res);
    PQclear(res);
    return n > 0;
}

/*
 * Sends the checkpoint and COMMIT in one round trip. Returns COMMITTED,
 * RECORDED (the checkpoint key was taken), FAILED with s->sqlstate set to a
 * conflict code, or -1 when the connection died and the outcome is unknown.
 */
static int commit_with_checkpoint(cairn__conn *c, const cairn_step_ctx *s, const char *name, const char *output,
                                  char *sqlstate, char *msg, size_t msglen)
{
    PGconn *pg = c->pg;
    char num[16];
    snprintf(num, sizeof num, "%d", s->number);
    const char *vals[4] = {s->workflow_id, num, name, output};
    sqlstate[0] = '\0';
    msg[0] = '\0';
    if (!PQenterPipelineMode(pg))
        return -1;
    int ok = PQsendQueryPrepared(pg, cairn__stmt_name(CAIRN__Q_STEP_TX), 4, vals, NULL, NULL, 0) &&
             PQsendQueryParams(pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) && PQpipelineSync(pg);
    if (!ok) {
        cairn__conn_drop(c);
        return -1;
    }
    int outcome = CAIRN__TX_COMMITTED;
    int insert_failed = 0;
    for (int q = 0; q < 2; q++) {
        PGresult *r;
        int first = 1;
        while ((r = PQgetResult(pg)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (first && st == PGRES_FATAL_ERROR) {
                const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                snprintf(sqlstate, 6, "%s", code ? code : "");
                snprintf(msg, msglen, "%s", PQresultErrorMessage(r));
                if (q == 0)
                    insert_failed = 1;
            }
            first = 0;
            PQclear(r);
        }
        if (PQstatus(pg) != CONNECTION_OK)
            break;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        cairn__conn_drop(c);
        return -1;
    }
    PGresult *r = PQgetResult(pg); /* the sync */
    PQclear(r);
    PQexitPipelineMode(pg);
    if (!sqlstate[0])
        return outcome;
    if (insert_failed && strcmp(sqlstate, "23505") == 0)
        return CAIRN__TX_RECORDED;
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P0", 4) == 0) {
        cairn__conn_drop(c);
        return -1;
    }
    return CAIRN__TX_FAILED;
}

#define RETRY (-2) /* nothing ran (BEGIN was refused): reconnect and try again */
#define LOST (-1)  /* the connection died; whether the step committed is unknown */

/* One attempt of a step callback on its own transaction: BEGIN, the callback, checkpoint and COMMIT. */
static int run_callback(cairn *h, cairn__conn *c, const cairn__entry *e, cairn_step_ctx *s, const char *input,
                        char **out)
{
    char err[256];
    PGresult *r = PQexec(c->pg, begin_sql[e->isolation]);
    int began = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!began) {
        cairn__conn_drop(c);
        return RETRY;
    }
    int rc = e->tx(s, c->pg, input, out, e->udata);
    /* A shutdown or connection error the step saw means the session is gone, whatever libpq says yet. */
    int lost = PQstatus(c->pg) != CONNECTION_OK ||
               (rc != CAIRN_OK && (strncmp(s->sqlstate, "08", 2) == 0 || strncmp(s->sqlstate, "57P0", 4) == 0));
    if (lost)
        return LOST;
    if (rc == CAIRN_OK) {
        size_t len = *out ? strlen(*out) : 4;
        PGTransactionStatusType ts = PQtransactionStatus(c->pg);
        if (ts == PQTRANS_INERROR)
            rc = cairn_step_fail(s, "the step returned success but a statement in its transaction failed");
        else if (ts != PQTRANS_INTRANS)
            rc = cairn_step_fail(s, "the step ended its transaction itself (COMMIT or ROLLBACK); "
                                    "transactional steps must leave it open");
        else if (len > h->max_payload)
            rc = cairn_step_fail(s, "step output is %zu bytes; the limit is %zu", len, h->max_payload);
        else if (*out && cairn_json_check(*out, len, err, sizeof err) != CAIRN_OK)
            rc = cairn_step_fail(s, "step returned invalid JSON: %s", err);
    }
    if (rc != CAIRN_OK) {
        rollback(c);
        return CAIRN__TX_FAILED; /* a conflict (s->sqlstate) is retried by the caller */
    }
    char msg[512];
    int outcome = commit_with_checkpoint(c, s, s->name, *out ? *out : "null", s->sqlstate, msg, sizeof msg);
    if (outcome == CAIRN__TX_COMMITTED || outcome == LOST)
        return outcome;
    rollback(c);
    if (outcome == CAIRN__TX_FAILED && !is_conflict(s->sqlstate))
        cairn_step_fail(s, "committing the step: %s", msg);
    return outcome;
}

/* ---- SQL steps ------------------------------------------------------------ */

/*
 * A SQL step's statement runs inside the statement that writes its
 * checkpoint: the checkpoint INSERT reads the step's rows from the WITH
 * clause and records them as its output, so both commit in one statement.
 * The newline before the closing parenthesis ends a trailing comment in
 * the step's SQL. (A statement with a data-modifying WITH of its own cannot
 * be nested so; PostgreSQL refuses it, and the step fails saying why.)
 * $2..$5 are the workflow ID, step number, step name and the payload
 * limit; an output over the limit aborts the statement (see
 * sql/013_sql_steps.sql).
 */
#define SQL_ROWS \
    "\n) INSERT INTO cairn.steps (workflow_id, step, name, output)" \
    " SELECT $2, $3, $4, CASE WHEN octet_length(o::text) > $5" \
    "   THEN cairn.output_too_big('the SQL step''s output', octet_length(o::text), $5) ELSE o END" \
    "  FROM (SELECT coalesce(json_agg(cairn_step_rows), '[]'::json) AS o FROM cairn_step_rows) a" \
    " RETURNING output"
/* A data-modifying statement without RETURNING: it runs all the same, and its output is null. */
#define SQL_NO_ROWS \
    "\n) INSERT INTO cairn.steps (workflow_id, step, name, output) VALUES ($2, $3, $4, 'null'::json)" \
    " RETURNING output"

#define JSON_OID 114
#define INT8_OID 20
#define INT4_OID 23
#define TEXT_OID 25

/* The name a SQL step's statement is prepared under on each connection. */
static void sql_stmt_name(const cairn__entry *e, char name[32])
{
    snprintf(name, 32, "cairn_sql_%d", e->sql_slot);
}

/* Records why the statement failed, with its SQLSTATE; returns LOST when the connection went with it. */
static int sql_failed(cairn__conn *c, cairn_step_ctx *s, const PGresult *r, const char *what)
{
    if (PQstatus(c->pg) != CONNECTION_OK || cairn__conn_lost(c->pg, r)) {
        cairn__conn_drop(c);
        return LOST;
    }
    cairn_step_fail_pg(s, r); /* the SQLSTATE, so that conflicts are retried */
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    cairn_step_fail(s, "%s: %s (SQLSTATE %s)", what, m ? m : PQerrorMessage(c->pg),
                    s->sqlstate[0] ? s->sqlstate : "none");
    return CAIRN__TX_FAILED;
}

/*
 * Prepares the step's statement on c once per connection: first on its
 * own, so that errors in it come back as its author wrote it and its
 * description tells whether it returns rows and how many parameters it
 * takes; then inside the checkpoint's statement, as cairn_sql_<slot>.
 */
static int sql_prepare(cairn *h, cairn__conn *c, const cairn__entry *e, cairn_step_ctx *s)
{
    if (e->sql_slot < c->sql_ready_n && c->sql_ready[e->sql_slot])
        return CAIRN_OK;
    if (c->sql_ready_n < h->sql_steps) {
        unsigned char *ready = realloc(c->sql_ready, (size_t)h->sql_steps);
        if (!ready) {
            cairn_step_fail(s, "out of memory");
            return CAIRN__TX_FAILED;
        }
        memset(ready + c->sql_ready_n, 0, (size_t)(h->sql_steps - c->sql_ready_n));
        c->sql_ready = ready;
        c->sql_ready_n = h->sql_steps;
    }
    const Oid own[1] = {JSON_OID};
    PGresult *r = PQprepare(c->pg, "", e->sql, 1, own);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        int rc = sql_failed(c, s, r, "preparing the SQL step's statement");
        PQclear(r);
        return rc;
    }
    PQclear(r);
    r = PQdescribePrepared(c->pg, "");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        int rc = sql_failed(c, s, r, "describing the SQL step's statement");
        PQclear(r);
        return rc;
    }
    int nparams = PQnparams(r), nfields = PQnfields(r);
    PQclear(r);
    if (nparams > 1) {
        cairn_step_fail(s,
                        "the SQL step's statement refers to $%d; it takes one parameter, $1 (the step's input as json)",
                        nparams);
        return CAIRN__TX_FAILED;
    }
    cairn__buf b;
    cairn__buf_init(&b);
    cairn__buf_puts(&b, "WITH cairn_step_rows AS (\n");
    cairn__buf_puts(&b, e->sql);
    cairn__buf_puts(&b, nfields > 0 ? SQL_ROWS : SQL_NO_ROWS);
    if (b.oom) {
        cairn__buf_free(&b);
        cairn_step_fail(s, "out of memory");
        return CAIRN__TX_FAILED;
    }
    char name[32];
    sql_stmt_name(e, name);
    const Oid types[5] = {JSON_OID, TEXT_OID, INT4_OID, TEXT_OID, INT8_OID};
    r = PQprepare(c->pg, name, b.data, 5, types);
    cairn__buf_free(&b);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        int rc = sql_failed(c, s, r,
                            "preparing the SQL step's statement inside WITH, which takes a SELECT, VALUES, INSERT,"
                            " UPDATE or DELETE");
        PQclear(r);
        return rc;
    }
    PQclear(r);
    c->sql_ready[e->sql_slot] = 1;
    return CAIRN_OK;
}

/* What one result of a SQL step's statement means: COMMITTED (with *out), RECORDED, FAILED or LOST. */
static int sql_result(cairn__conn *c, cairn_step_ctx *s, const PGresult *r, char **out)
{
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *out = cairn__strdup(PQgetvalue(r, 0, 0));
        if (!*out) {
            cairn_step_fail(s, "out of memory");
            return CAIRN__TX_FAILED;
        }
        return CAIRN__TX_COMMITTED;
    }
    const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *schema = r ? PQresultErrorField(r, PG_DIAG_SCHEMA_NAME) : NULL;
    const char *table = r ? PQresultErrorField(r, PG_DIAG_TABLE_NAME) : NULL;
    /* The checkpoint's key, not a unique key of the application's: another execution recorded the step. */
    if (code && strcmp(code, "23505") == 0 && schema && strcmp(schema, "cairn") == 0 && table &&
        strcmp(table, "steps") == 0)
        return CAIRN__TX_RECORDED;
    return sql_failed(c, s, r, "the SQL step's statement");
}

/*
 * One attempt of a SQL step. At READ COMMITTED the statement is its own
 * implicit transaction; at a stricter level it travels between BEGIN and
 * COMMIT in one pipeline. Either way one round trip.
 */
static int run_sql(cairn *h, cairn__conn *c, const cairn__entry *e, cairn_step_ctx *s, const char *input, char **out)
{
    int rc = sql_prepare(h, c, e, s);
    if (rc != CAIRN_OK)
        return rc;
    char name[32], num[16], limit[24];
    sql_stmt_name(e, name);
    snprintf(num, sizeof num, "%d", s->number);
    snprintf(limit, sizeof limit, "%zu", h->max_payload);
    const char *vals[5] = {input, s->workflow_id, num, s->name, limit};
    PGconn *pg = c->pg;
    if (e->isolation == CAIRN_READ_COMMITTED) {
        PGresult *r = PQexecPrepared(pg, name, 5, vals, NULL, NULL, 0);
        rc = sql_result(c, s, r, out);
        PQclear(r);
        return rc;
    }
    if (!PQenterPipelineMode(pg) || !PQsendQueryParams(pg, begin_sql[e->isolation], 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsendQueryPrepared(pg, name, 5, vals, NULL, NULL, 0) ||
        !PQsendQueryParams(pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(pg)) {
        cairn__conn_drop(c);
        return LOST;
    }
    /* The statement's rows, unless something failed: then the first failure. */
    PGresult *keep = NULL;
    int failed = 0;
    for (int q = 0; q < 3 && PQstatus(pg) == CONNECTION_OK; q++) {
        PGresult *r;
        while ((r = PQgetResult(pg)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (!failed && (st == PGRES_FATAL_ERROR || (q == 1 && st == PGRES_TUPLES_OK))) {
                PQclear(keep);
                keep = r;
                failed = st == PGRES_FATAL_ERROR;
            } else {
                PQclear(r);
            }
        }
    }
    if (PQstatus(pg) == CONNECTION_OK) {
        PQclear(PQgetResult(pg)); /* the sync */
        PQexitPipelineMode(pg);
    }
    rc = PQstatus(pg) != CONNECTION_OK ? LOST : sql_result(c, s, keep, out);
    PQclear(keep);
    if (rc == LOST)
        cairn__conn_drop(c);
    else if (rc != CAIRN__TX_COMMITTED)
        rollback(c); /* an error inside BEGIN leaves the transaction aborted */
    return rc;
}

int cairn__tx_attempt(cairn *h, cairn__conn *c, const cairn__entry *e, cairn_step_ctx *s, const char *input,
                      char **result)
{
    int conflicts = 0;
    int max_conflicts = e->max_conflict_retries > 0 ? e->max_conflict_retries : 20;
    long long backoff = 5;
    *result = NULL;
    for (;;) {
        if (atomic_load(&h->shutting_down))
            return CAIRN__TX_SHUTDOWN;
        /* A lost connection is not the step's failure: reconnect and try again. */
        int outcome = RETRY;
        if (cairn__conn_ensure(h, c) != CAIRN_OK) {
            cairn__log(h, CAIRN_LOG_WARN, "transactional step %s: %s; retrying", s->key, cairn_errmsg(h));
        } else {
            free(s->fail_msg);
            s->fail_msg = NULL;
            s->sqlstate[0] = '\0';
            char *out = NULL;
            outcome = e->sql ? run_sql(h, c, e, s, input, &out) : run_callback(h, c, e, s, input, &out);
            if (outcome == CAIRN__TX_COMMITTED) {
                *result = out;
                return outcome;
            }
            free(out);
        }
        if (outcome == RETRY) {
            if (cairn__sleep(h, backoff))
                return CAIRN__TX_SHUTDOWN;
            backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
            continue;
        }
        if (outcome == CAIRN__TX_RECORDED)
            return outcome;
        if (outcome == CAIRN__TX_FAILED && !is_conflict(s->sqlstate))
            return CAIRN__TX_FAILED;
        if (outcome == LOST) {
            /* The connection died: decide by whether the checkpoint exists. */
            cairn__conn_drop(c);
            int exists;
            while ((exists = checkpoint_exists(h, s)) < 0)
                if (cairn__sleep(h, 200))
                    return CAIRN__TX_SHUTDOWN;
            if (exists)
                return CAIRN__TX_RECORDED;
            cairn__log(h, CAIRN_LOG_WARN, "transactional step %s: connection lost before commit; retrying", s->key);
        } else if (++conflicts > max_conflicts) {
            cairn_step_fail(s, "gave up after %d serialization failures or deadlocks (SQLSTATE %s)", conflicts - 1,
                            s->sqlstate);
            return CAIRN__TX_FAILED;
        } else {
            cairn__log(h, CAIRN_LOG_DEBUG, "transactional step %s: SQLSTATE %s, retrying", s->key, s->sqlstate);
        }
        /* Back off with jitter so that conflicting transactions stop colliding. */
        long long wait = backoff + (cairn__now_ms() % (backoff + 1));
        if (cairn__sleep(h, wait))
            return CAIRN__TX_SHUTDOWN;
        backoff = backoff * 2 > 500 ? 500 : backoff * 2;
    }
}
