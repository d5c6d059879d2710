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

int cairn__tx_attempt(cairn *h, cairn__conn *c, const cairn__entry *e, cairn_step_ctx *s, const char *input,
                      char **result)
{
    int conflicts = 0;
    int max_conflicts = e->max_conflict_retries > 0 ? e->max_conflict_retries : 20;
    long long backoff = 5;
    char err[256];
    *result = NULL;
    for (;;) {
        if (atomic_load(&h->shutting_down))
            return CAIRN__TX_SHUTDOWN;
        /* A lost connection is not the step's failure: reconnect and try again. */
        if (cairn__conn_ensure(h, c) != CAIRN_OK) {
            cairn__log(h, CAIRN_LOG_WARN, "transactional step %s: %s; retrying", s->key, cairn_errmsg(h));
            if (cairn__sleep(h, backoff))
                return CAIRN__TX_SHUTDOWN;
            backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
            continue;
        }
        PGresult *r = PQexec(c->pg, begin_sql[e->isolation]);
        int began = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!began) {
            cairn__conn_drop(c);
            if (cairn__sleep(h, backoff))
                return CAIRN__TX_SHUTDOWN;
            backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
            continue;
        }

        free(s->fail_msg);
        s->fail_msg = NULL;
        s->sqlstate[0] = '\0';
        char *out = NULL;
        int rc = e->tx(s, c->pg, input, &out, e->udata);
        /* A shutdown or connection error the step saw means the session is gone, whatever libpq says yet. */
        int lost = PQstatus(c->pg) != CONNECTION_OK ||
                   (rc != CAIRN_OK && (strncmp(s->sqlstate, "08", 2) == 0 || strncmp(s->sqlstate, "57P0", 4) == 0));
        if (rc == CAIRN_OK && !lost) {
            size_t len = out ? strlen(out) : 4;
            PGTransactionStatusType ts = PQtransactionStatus(c->pg);
            if (ts == PQTRANS_INERROR)
                rc = cairn_step_fail(s, "the step returned success but a statement in its transaction failed");
            else if (ts != PQTRANS_INTRANS)
                rc = cairn_step_fail(s, "the step ended its transaction itself (COMMIT or ROLLBACK); "
                                        "transactional steps must leave it open");
            else if (len > h->max_payload)
                rc = cairn_step_fail(s, "step output is %zu bytes; the limit is %zu", len, h->max_payload);
            else if (out && cairn_json_check(out, len, err, sizeof err) != CAIRN_OK)
                rc = cairn_step_fail(s, "step returned invalid JSON: %s", err);
        }
        int outcome;
        char msg[512];
        if (lost) {
            outcome = -1;
        } else if (rc != CAIRN_OK) {
            rollback(c);
            if (!is_conflict(s->sqlstate)) {
                free(out);
                return CAIRN__TX_FAILED;
            }
            outcome = CAIRN__TX_FAILED; /* a conflict: retried below */
        } else {
            outcome = commit_with_checkpoint(c, s, s->name, out ? out : "null", s->sqlstate, msg, sizeof msg);
            if (outcome == CAIRN__TX_COMMITTED) {
                *result = out;
                return outcome;
            }
            rollback(c);
            if (outcome == CAIRN__TX_RECORDED) {
                free(out);
                return outcome;
            }
            if (outcome == CAIRN__TX_FAILED && !is_conflict(s->sqlstate)) {
                free(out);
                cairn_step_fail(s, "committing the step: %s", msg);
                return CAIRN__TX_FAILED;
            }
        }
        free(out);
        if (outcome == -1) {
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
