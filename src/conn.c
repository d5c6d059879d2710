/*
 * Connections: opening them with the handle's conninfo, preparing the
 * library's statements on each, telling a lost connection from a refused
 * statement, and the small pool that API calls and reads borrow from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct stmt {
    const char *name;
    const char *sql;
} stmt;

/*
 * Every statement the library runs. The write statements take arrays so
 * that one execution (and one commit) covers a whole batch of workflows.
 */
static const stmt statements[CAIRN__Q_COUNT] = {
    [CAIRN__Q_START] = {"cairn_start",
        "WITH v AS ("
        "  SELECT DISTINCT ON (id) id, name, queue, input"
        "    FROM unnest($1::text[], $2::text[], $3::text[], $4::json[]) WITH ORDINALITY"
        "         AS v(id, name, queue, input, ord)"
        "   ORDER BY id, ord),"
        " ins AS ("
        "  INSERT INTO cairn.workflow_status (id, name, status, queue, executor_id, attempts)"
        "  SELECT id, name, 'PENDING', queue, $5, 1 FROM v"
        "  ON CONFLICT (id) DO NOTHING"
        "  RETURNING id),"
        " pay AS ("
        "  INSERT INTO cairn.workflow_payloads (id, input)"
        "  SELECT v.id, v.input FROM v JOIN ins ON ins.id = v.id)"
        "SELECT id FROM ins"},
    [CAIRN__Q_STEP] = {"cairn_step",
        "INSERT INTO cairn.steps (workflow_id, step, name, output, error)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::json[], $5::json[])"
        " ON CONFLICT (workflow_id, step) DO NOTHING"
        " RETURNING workflow_id, step"},
    [CAIRN__Q_FINISH] = {"cairn_finish",
        "WITH v AS ("
        "  SELECT * FROM unnest($1::text[], $2::text[], $3::json[], $4::json[])"
        "         AS v(id, status, output, error)),"
        " upd AS ("
        "  UPDATE cairn.workflow_status s SET status = v.status, updated_at = now()"
        "    FROM v WHERE s.id = v.id AND s.status = 'PENDING' AND s.executor_id = $5"
        "  RETURNING s.id),"
        " pay AS ("
        "  UPDATE cairn.workflow_payloads p SET output = v.output, error = v.error"
        "    FROM v JOIN upd ON upd.id = v.id WHERE p.id = v.id)"
        "SELECT id FROM upd"},
    /* The same three writes for a batch of one: plain VALUES, no arrays to parse. */
    [CAIRN__Q_START1] = {"cairn_start1",
        "WITH ins AS ("
        "  INSERT INTO cairn.workflow_status (id, name, status, queue, executor_id, attempts)"
        "  VALUES ($1, $2, 'PENDING', $3, $5, 1)"
        "  ON CONFLICT (id) DO NOTHING"
        "  RETURNING id),"
        " pay AS ("
        "  INSERT INTO cairn.workflow_payloads (id, input) SELECT id, $4::json FROM ins)"
        "SELECT id FROM ins"},
    [CAIRN__Q_STEP1] = {"cairn_step1",
        "INSERT INTO cairn.steps (workflow_id, step, name, output, error)"
        " VALUES ($1, $2::int, $3, $4::json, $5::json)"
        " ON CONFLICT (workflow_id, step) DO NOTHING"
        " RETURNING workflow_id, step"},
    [CAIRN__Q_FINISH1] = {"cairn_finish1",
        "WITH upd AS ("
        "  UPDATE cairn.workflow_status SET status = $2, updated_at = now()"
        "   WHERE id = $1 AND status = 'PENDING' AND executor_id = $5"
        "  RETURNING id),"
        " pay AS ("
        "  UPDATE cairn.workflow_payloads p SET output = $3::json, error = $4::json"
        "    FROM upd WHERE p.id = upd.id)"
        "SELECT id FROM upd"},
    /*
     * Take up this executor's unfinished workflows for another execution,
     * or dead-letter those that already used up their executions.
     */
    [CAIRN__Q_CLAIM] = {"cairn_claim",
        "WITH c AS ("
        "  UPDATE cairn.workflow_status"
        "     SET attempts = attempts + 1, updated_at = now(),"
        "         status = CASE WHEN attempts + 1 > $2::int THEN 'DEAD_LETTER' ELSE status END"
        "   WHERE executor_id = $1 AND status = 'PENDING' AND name = ANY($3::text[])"
        "     AND ($4::text IS NULL OR id = $4::text)"
        "  RETURNING id, name, status, attempts),"
        " dead AS ("
        "  UPDATE cairn.workflow_payloads p"
        "     SET error = json_build_object('message', format("
        "         'workflow was interrupted %s times (its executor died during each run); moved to DEAD_LETTER',"
        "         c.attempts - 1), 'attempts', c.attempts - 1)"
        "    FROM c WHERE p.id = c.id AND c.status = 'DEAD_LETTER')"
        "SELECT id, name, status, attempts FROM c"},
    [CAIRN__Q_LOAD] = {"cairn_load",
        "SELECT 0, NULL::text, input, NULL::json FROM cairn.workflow_payloads WHERE id = $1"
        " UNION ALL"
        " SELECT step, name, output, error FROM cairn.steps WHERE workflow_id = $1"
        " ORDER BY 1"},
    [CAIRN__Q_STATUS] = {"cairn_status",
        "SELECT status FROM cairn.workflow_status WHERE id = $1"},
    [CAIRN__Q_RESULT] = {"cairn_result",
        "SELECT s.name, s.status, s.executor_id, p.output, p.error"
        "  FROM cairn.workflow_status s LEFT JOIN cairn.workflow_payloads p ON p.id = s.id"
        " WHERE s.id = $1"},
    [CAIRN__Q_STEP_GET] = {"cairn_step_get",
        "SELECT name, output, error FROM cairn.steps WHERE workflow_id = $1 AND step = $2"},
    [CAIRN__Q_DESCRIBE] = {"cairn_describe",
        "SELECT json_build_object("
        "  'id', w.id, 'name', w.name, 'status', w.status, 'queue', w.queue,"
        "  'executor_id', w.executor_id, 'attempts', w.attempts,"
        "  'input', w.input, 'output', w.output, 'error', w.error,"
        "  'created_at', w.created_at, 'updated_at', w.updated_at,"
        "  'steps', CASE WHEN $2::bool THEN (SELECT coalesce(json_agg(json_build_object("
        "       'step', st.step, 'name', st.name, 'output', st.output, 'error', st.error,"
        "       'created_at', st.created_at) ORDER BY st.step), '[]'::json)"
        "     FROM cairn.steps st WHERE st.workflow_id = w.id) END)"
        "  FROM cairn.workflows w WHERE w.id = $1"},
    [CAIRN__Q_LIST] = {"cairn_list",
        "SELECT coalesce(json_agg(json_build_object("
        "  'id', s.id, 'name', s.name, 'status', s.status, 'queue', s.queue,"
        "  'executor_id', s.executor_id, 'attempts', s.attempts,"
        "  'created_at', s.created_at, 'updated_at', s.updated_at)"
        "  ORDER BY s.created_at DESC, s.id DESC), '[]'::json)"
        "  FROM (SELECT * FROM cairn.workflow_status"
        "         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR name = $2)"
        "         ORDER BY created_at DESC, id DESC LIMIT $3::int) s"},
    /*
     * Executions interrupted by a graceful close are not crashes: take the
     * attempt back and return the workflow to the queue, where any worker
     * that knows it (this one after a restart included) picks it up.
     */
    [CAIRN__Q_RELEASE] = {"cairn_release",
        "UPDATE cairn.workflow_status"
        "   SET attempts = greatest(attempts - 1, 0), status = 'ENQUEUED', executor_id = NULL, updated_at = now()"
        " WHERE id = ANY($1::text[]) AND executor_id = $2 AND status = 'PENDING'"
        " RETURNING id"},
    /*
     * Take the next runnable enqueued workflows this executor knows, skipping
     * rows others are taking. The IDs are collected first (ARRAY(...)) so the
     * update itself is a primary-key lookup in any plan, cached or not; the
     * input and whether anything was recorded come back with the claim, so a
     * workflow that never ran starts without another query.
     */
    [CAIRN__Q_CLAIM_QUEUED] = {"cairn_claim_queued",
        "UPDATE cairn.workflow_status s"
        "   SET status = 'PENDING', executor_id = $1, attempts = s.attempts + 1, updated_at = now()"
        " WHERE s.status = 'ENQUEUED' AND s.id = ANY (ARRAY("
        "   SELECT id FROM cairn.workflow_status"
        "    WHERE status = 'ENQUEUED' AND available_at <= now() AND name = ANY($2::text[])"
        "    ORDER BY priority, created_at"
        "    LIMIT $3::int FOR UPDATE SKIP LOCKED))"
        " RETURNING s.id, s.name, s.attempts,"
        "   (SELECT p.input FROM cairn.workflow_payloads p WHERE p.id = s.id),"
        "   EXISTS (SELECT 1 FROM cairn.steps st WHERE st.workflow_id = s.id)"},
    /* An idle dispatcher asks the next enqueue to NOTIFY (see sql/002_enqueue.sql). */
    /* A transactional step's checkpoint: no ON CONFLICT, so a checkpoint
     * another execution already holds aborts the step's whole transaction. */
    [CAIRN__Q_STEP_TX] = {"cairn_step_tx",
        "INSERT INTO cairn.steps (workflow_id, step, name, output) VALUES ($1, $2::int, $3, $4::json)"},
    /* It writes only when the flag is down, and recreates the row an unlogged table lost in a crash. */
    [CAIRN__Q_ARM] = {"cairn_arm",
        "WITH u AS (UPDATE cairn.wakeup SET armed = true WHERE NOT armed RETURNING armed),"
        " i AS (INSERT INTO cairn.wakeup (armed) SELECT true WHERE NOT EXISTS (SELECT 1 FROM cairn.wakeup)"
        "       ON CONFLICT DO NOTHING RETURNING armed)"
        "SELECT armed FROM u UNION ALL SELECT armed FROM i"},
};

int cairn__conn_lost(PGconn *pg, const PGresult *res)
{
    if (!pg || PQstatus(pg) != CONNECTION_OK)
        return 1;
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!st)
        return res == NULL || PQresultStatus(res) == PGRES_FATAL_ERROR;
    /* Class 08 is connection trouble; 57P01-57P03 are shutdowns and restarts. */
    return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
           strcmp(st, "57P03") == 0;
}

void cairn__conn_drop(cairn__conn *c)
{
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->prepared = 0;
}

/* Route server notices through the library's logger instead of stderr. */
static void notice_to_log(void *arg, const char *message)
{
    const cairn *h = arg;
    size_t n = strlen(message);
    while (n > 0 && message[n - 1] == '\n')
        n--;
    cairn__log(h, CAIRN_LOG_DEBUG, "server notice: %.*s", (int)n, message);
}

static int prepare_all(cairn__conn *c)
{
    for (int i = 0; i < CAIRN__Q_COUNT; i++) {
        PGresult *r = PQprepare(c->pg, statements[i].name, statements[i].sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            int rc = cairn__fail_pg(cairn__conn_lost(c->pg, r) ? CAIRN_ECONN : CAIRN_ESCHEMA, r, c->pg,
                                    "preparing statements");
            PQclear(r);
            return rc;
        }
        PQclear(r);
    }
    c->prepared = 1;
    return CAIRN_OK;
}

int cairn__conn_open(cairn *h, cairn__conn *c, int prepare)
{
    cairn__conn_drop(c);
    char timeout[16];
    int secs = (h->connect_timeout_ms + 999) / 1000;
    snprintf(timeout, sizeof timeout, "%d", secs < 2 ? 2 : secs);
    /* Later keywords override earlier ones, so the caller's conninfo (expanded
     * from dbname) can set the timeout but not the encoding we rely on. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", "client_encoding", NULL};
    const char *vals[] = {timeout, "cairn", h->conninfo, "UTF8", NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg)
        return cairn__fail(CAIRN_ENOMEM, "out of memory connecting to the database");
    if (PQstatus(c->pg) != CONNECTION_OK) {
        int rc = cairn__fail_pg(CAIRN_ECONN, NULL, c->pg, "cannot connect to the database");
        cairn__conn_drop(c);
        return rc;
    }
    PQsetNoticeProcessor(c->pg, notice_to_log, h);
    if (prepare) {
        int rc = prepare_all(c);
        if (rc != CAIRN_OK) {
            cairn__conn_drop(c);
            return rc;
        }
    }
    return CAIRN_OK;
}

int cairn__conn_ensure(cairn *h, cairn__conn *c)
{
    if (c->pg && c->prepared && PQstatus(c->pg) == CONNECTION_OK)
        return CAIRN_OK;
    return cairn__conn_open(h, c, 1);
}

int cairn__pool_get(cairn *h, cairn__conn **out)
{
    pthread_mutex_lock(&h->pool_lock);
    for (;;) {
        for (int i = 0; i < h->pool_n; i++) {
            if (!h->pool[i].in_use) {
                h->pool[i].in_use = 1;
                pthread_mutex_unlock(&h->pool_lock);
                *out = &h->pool[i];
                return CAIRN_OK;
            }
        }
        pthread_cond_wait(&h->pool_cond, &h->pool_lock);
    }
}

void cairn__pool_put(cairn *h, cairn__conn *c)
{
    pthread_mutex_lock(&h->pool_lock);
    c->in_use = 0;
    pthread_cond_signal(&h->pool_cond);
    pthread_mutex_unlock(&h->pool_lock);
}

int cairn__query(cairn *h, int stmt_id, int nparams, const char *const *values, PGresult **res)
{
    cairn__conn *c;
    cairn__pool_get(h, &c);
    long long deadline = cairn__now_ms() + h->connect_timeout_ms;
    long long backoff = 50;
    int rc;
    for (;;) {
        rc = cairn__conn_ensure(h, c);
        if (rc == CAIRN_OK) {
            PGresult *r = PQexecPrepared(c->pg, statements[stmt_id].name, nparams, values, NULL, NULL, 0);
            if (PQresultStatus(r) == PGRES_TUPLES_OK) {
                *res = r;
                rc = CAIRN_OK;
                break;
            }
            if (!cairn__conn_lost(c->pg, r)) {
                rc = cairn__fail_pg(CAIRN_EDB, r, c->pg, statements[stmt_id].name);
                PQclear(r);
                break;
            }
            rc = cairn__fail_pg(CAIRN_ECONN, r, c->pg, "lost the database connection");
            PQclear(r);
            cairn__conn_drop(c);
        } else if (rc != CAIRN_ECONN) {
            break;
        }
        if (atomic_load(&h->shutting_down)) {
            rc = cairn__fail(CAIRN_ESHUTDOWN, "the handle is closing");
            break;
        }
        if (cairn__now_ms() + backoff > deadline)
            break; /* rc is CAIRN_ECONN with libpq's message */
        cairn__sleep(h, backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
    cairn__pool_put(h, c);
    return rc;
}

const char *cairn__stmt_name(int stmt_id)
{
    return statements[stmt_id].name;
}
