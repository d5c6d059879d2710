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
/* The database clock in epoch milliseconds, so that the library can time durable waits by it. */
#define DB_CLOCK_MS "(extract(epoch FROM clock_timestamp()) * 1000)::int8"

/*
 * A finished child leaves a wake-up request for its parent, which may be
 * waiting for it, and wakes an idle dispatcher (see sql/004_waits.sql).
 */
#define FINISH_POKE \
    " pk AS (" \
    "  INSERT INTO cairn.pokes (workflow_id) SELECT parent_id FROM upd WHERE parent_id IS NOT NULL RETURNING 1)," \
    " wk AS (" \
    "  SELECT cairn.wake() WHERE EXISTS (SELECT 1 FROM pk) AND (SELECT armed FROM cairn.wakeup))"

/*
 * Whether a queued start may be taken by the executor that makes it ($10)
 * at once, as PENDING, instead of waiting for a claim: it asked to (it can
 * run the workflow and has a thread free), nothing delays it, the queue
 * has no limits (whose accounting only a claim does), nothing runnable
 * waits in the queue ahead of it, and the executor is live. The result is
 * the one a claim by this executor would give, a round trip sooner.
 *
 * The backlog test is a scalar subquery in the queued index's order with
 * LIMIT 1, not an EXISTS: the planner drops ORDER BY and LIMIT from an
 * EXISTS, and for a queue named by a parameter or another column (a
 * generic plan, a batch) it then bet on finding a row early and scanned
 * the whole table whenever any queue had work waiting. In the queued
 * index's order the only cheap plan is the index. The statements keep the
 * result in a MATERIALIZED CTE, read several times, so that it is
 * computed once per row.
 */
#define EAGER_OK(queue, delay) \
    "(" delay " <= 0" \
    " AND NOT EXISTS (SELECT 1 FROM cairn.queues c WHERE c.name = " queue \
    "                  AND (c.concurrency IS NOT NULL OR c.worker_concurrency IS NOT NULL" \
    "                       OR c.rate_limit IS NOT NULL OR c.partition_concurrency IS NOT NULL))" \
    " AND (SELECT 1 FROM cairn.workflow_status x" \
    "       WHERE x.status = 'ENQUEUED' AND x.queue = " queue " AND x.available_at <= now()" \
    "       ORDER BY x.name, x.priority, x.available_at LIMIT 1) IS NULL" \
    " AND EXISTS (SELECT 1 FROM cairn.executors x WHERE x.id = $10 AND x.state = 'LIVE'))"

/*
 * The enqueue statements' wake-up, per returned row: a row left ENQUEUED
 * (not taken eagerly) calls cairn.wake() while an idle dispatcher has the
 * flag up. The flag is read once per statement; cairn.wake() reads it
 * again, so a batch notifies once. An expression in the select list rather
 * than a CTE of its own: the statement's plan is smaller, and it is set up
 * for every batch (see bench/README.md, 2026-12-07).
 */
#define ENQUEUE_WAKE \
    "CASE WHEN status = 'ENQUEUED' AND (SELECT armed FROM cairn.wakeup) THEN cairn.wake() END IS NOT NULL"

static const stmt statements[CAIRN__Q_COUNT] = {
    [CAIRN__Q_START] = {"cairn_start",
        "WITH v AS ("
        "  SELECT DISTINCT ON (id) id, name, queue, input"
        "    FROM unnest($1::text[], $2::text[], $3::text[], $4::json[]) WITH ORDINALITY"
        "         AS v(id, name, queue, input, ord)"
        "   ORDER BY id, ord)"
        "INSERT INTO cairn.workflow_status (id, name, status, queue, executor_id, attempts, app_version, started_at, input)"
        " SELECT id, name, 'PENDING', queue, $5, 1, $6, now(), input FROM v"
        " ON CONFLICT (id) DO NOTHING"
        " RETURNING id"},
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
        "  UPDATE cairn.workflow_status s"
        "     SET status = v.status, output = v.output, error = v.error, updated_at = now()"
        "    FROM v WHERE s.id = v.id AND s.status = 'PENDING' AND s.executor_id = $5"
        "  RETURNING s.id, s.parent_id),"
        FINISH_POKE
        "SELECT id, (SELECT count(*) FROM wk) FROM upd"},
    /* The same writes for a batch of one: plain VALUES, no arrays to parse. */
    [CAIRN__Q_START1] = {"cairn_start1",
        "INSERT INTO cairn.workflow_status (id, name, status, queue, executor_id, attempts, app_version, started_at, input)"
        " VALUES ($1, $2, 'PENDING', $3, $5, 1, $6, now(), $4::json)"
        " ON CONFLICT (id) DO NOTHING"
        " RETURNING id"},
    [CAIRN__Q_STEP1] = {"cairn_step1",
        "INSERT INTO cairn.steps (workflow_id, step, name, output, error)"
        " VALUES ($1, $2::int, $3, $4::json, $5::json)"
        " ON CONFLICT (workflow_id, step) DO NOTHING"
        " RETURNING workflow_id, step"},
    [CAIRN__Q_FINISH1] = {"cairn_finish1",
        "WITH upd AS ("
        "  UPDATE cairn.workflow_status SET status = $2, output = $3::json, error = $4::json, updated_at = now()"
        "   WHERE id = $1 AND status = 'PENDING' AND executor_id = $5"
        "  RETURNING id, parent_id),"
        FINISH_POKE
        "SELECT id, (SELECT count(*) FROM wk) FROM upd"},
    /*
     * Take up this executor's unfinished workflows for another execution,
     * or dead-letter those that already used up their executions.
     */
    [CAIRN__Q_CLAIM] = {"cairn_claim",
        "UPDATE cairn.workflow_status"
        "   SET attempts = attempts + 1, updated_at = now(),"
        "       status = CASE WHEN attempts + 1 > $2::int THEN 'DEAD_LETTER' ELSE status END,"
        "       error = CASE WHEN attempts + 1 > $2::int THEN json_build_object('message', format("
        "         'workflow was interrupted %s times (its executor died during each run); moved to DEAD_LETTER',"
        "         attempts), 'attempts', attempts) ELSE error END"
        " WHERE executor_id = $1 AND status = 'PENDING' AND name = ANY($3::text[])"
        "   AND ($4::text IS NULL OR id = $4::text)"
        " RETURNING id, name, status, attempts"},
    [CAIRN__Q_LOAD] = {"cairn_load",
        "SELECT 0, NULL::text, input, NULL::json FROM cairn.workflow_status WHERE id = $1"
        " UNION ALL"
        " SELECT step, name, output, error FROM cairn.steps WHERE workflow_id = $1"
        " ORDER BY 1"},
    /* The recordings of many workflows, each one's rows together, input (step 0) first. */
    [CAIRN__Q_LOAD_MANY] = {"cairn_load_many",
        "SELECT id, 0, NULL::text, input, NULL::json FROM cairn.workflow_status WHERE id = ANY ($1::text[])"
        " UNION ALL"
        " SELECT workflow_id, step, name, output, error FROM cairn.steps WHERE workflow_id = ANY ($1::text[])"
        " ORDER BY 1, 2"},
    /*
     * The PENDING workflows this executor owns, of names it runs, that are
     * not among the runs active here ($3): what a claim took whose answer
     * was lost (see cairn__fleet_reclaim).
     */
    [CAIRN__Q_RECLAIM] = {"cairn_reclaim",
        "UPDATE cairn.workflow_status SET updated_at = now()"
        " WHERE executor_id = $1 AND status = 'PENDING' AND name = ANY ($2::text[])"
        "   AND id <> ALL ($3::text[])"
        " RETURNING id, name, attempts"},
    [CAIRN__Q_STATUS] = {"cairn_status",
        "SELECT status FROM cairn.workflow_status WHERE id = $1"},
    [CAIRN__Q_RESULT] = {"cairn_result",
        "SELECT name, status, executor_id, output, error FROM cairn.workflow_status WHERE id = $1"},
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
     * Take the next runnable enqueued workflows this executor can run, fairly
     * across queues and within their limits (sql/003_queues.sql). The input
     * and whether anything was recorded come back with the claim, so a
     * workflow that never ran starts without another query.
     */
    [CAIRN__Q_CLAIM_QUEUED] = {"cairn_claim_queued",
        "SELECT id, name, attempts, status, input, resumed, retry_ms"
        "  FROM cairn.dispatch($1, $2::text[], $3::int, $4::int, $5::text[], $6::text[], $7)"},
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
    /* A process starting under an executor ID takes the ID over with a new instance. */
    [CAIRN__Q_REGISTER] = {"cairn_register",
        "INSERT INTO cairn.executors AS e (id, instance, state, lease, heartbeat_at, started_at, hostname, pid, app_version)"
        " VALUES ($1, $2, 'LIVE', $3::int * interval '1 millisecond', now(), now(), $4, $5::int, $6)"
        " ON CONFLICT (id) DO UPDATE SET instance = EXCLUDED.instance, state = 'LIVE', lease = EXCLUDED.lease,"
        "   heartbeat_at = now(), started_at = now(), stopped_at = NULL, adopted_by = NULL,"
        "   hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, app_version = EXCLUDED.app_version"
        " RETURNING e.id, " DB_CLOCK_MS},
    [CAIRN__Q_HEARTBEAT] = {"cairn_heartbeat",
        "SELECT standing, adopted, " DB_CLOCK_MS " FROM cairn.heartbeat($1, $2)"},
    /*
     * A graceful stop hands every workflow this executor owns back to its
     * queue without counting the interrupted execution as a crash; only
     * while this process still holds the ID, so that a process that lost
     * it cannot hand back its successor's work.
     */
    [CAIRN__Q_STOP] = {"cairn_stop",
        "WITH me AS ("
        "  UPDATE cairn.executors SET state = 'STOPPED', stopped_at = now()"
        "   WHERE id = $1 AND instance = $2 AND state = 'LIVE' RETURNING id)"
        "UPDATE cairn.workflow_status s"
        "   SET attempts = greatest(s.attempts - 1, 0), status = 'ENQUEUED', executor_id = NULL, updated_at = now()"
        " WHERE s.status = 'PENDING' AND s.executor_id = (SELECT id FROM me)"
        " RETURNING s.id"},
    /* A run abandoned because it was presumed lost goes back to its queue if it was ours after all. */
    [CAIRN__Q_RELEASE_ONE] = {"cairn_release_one",
        "UPDATE cairn.workflow_status"
        "   SET attempts = greatest(attempts - 1, 0), status = 'ENQUEUED', executor_id = NULL, updated_at = now()"
        " WHERE id = $1 AND executor_id = $2 AND status = 'PENDING'"
        " RETURNING id"},
    /* cairn_start() with a queue: the same function the application's SQL calls. */
    [CAIRN__Q_ENQUEUE] = {"cairn_enqueue",
        "SELECT cairn.enqueue($1, $2::json, queue => $3, id => $4, priority => $5::int,"
        " delay => $6::int * interval '1 millisecond', dedup_key => $7, partition_key => $8,"
        " dedup_error => $9::bool, app_version => $10)"},
    /*
     * cairn_start() to a queue without a dedup key, through group commit:
     * the rows cairn.enqueue() writes, checked in C beforehand, and the same
     * wake-up (cairn.wake() only while an idle dispatcher has the flag up).
     */
    [CAIRN__Q_ENQUEUE1] = {"cairn_enqueue1",
        "WITH e AS MATERIALIZED (SELECT $8::bool AND " EAGER_OK("$3", "$6::int") " AS eager),"
        " ins AS ("
        "  INSERT INTO cairn.workflow_status (id, name, status, queue, priority, available_at, partition_key, app_version,"
        "                                    executor_id, attempts, started_at, input)"
        "  SELECT $1, $2, CASE WHEN e.eager THEN 'PENDING' ELSE 'ENQUEUED' END, $3, $5::int,"
        "         now() + $6::int * interval '1 millisecond', $7, $9,"
        "         CASE WHEN e.eager THEN $10 END, CASE WHEN e.eager THEN 1 ELSE 0 END, CASE WHEN e.eager THEN now() END,"
        "         $4::json"
        "    FROM e"
        "  ON CONFLICT (id) DO NOTHING"
        "  RETURNING id, status)"
        "SELECT id, " ENQUEUE_WAKE ", status = 'PENDING' FROM ins"},
    [CAIRN__Q_ENQUEUE_BATCH] = {"cairn_enqueue_batch",
        "WITH v AS ("
        "  SELECT DISTINCT ON (id) id, name, queue, input, prio, delay, part, eager"
        "    FROM unnest($1::text[], $2::text[], $3::text[], $4::json[], $5::int[], $6::int[], $7::text[], $8::bool[])"
        "         WITH ORDINALITY AS v(id, name, queue, input, prio, delay, part, eager, ord)"
        "   ORDER BY id, ord),"
        " e AS MATERIALIZED ("
        "  SELECT v.*, v.eager AND " EAGER_OK("v.queue", "v.delay") " AS take FROM v),"
        " ins AS ("
        "  INSERT INTO cairn.workflow_status (id, name, status, queue, priority, available_at, partition_key, app_version,"
        "                                    executor_id, attempts, started_at, input)"
        "  SELECT id, name, CASE WHEN take THEN 'PENDING' ELSE 'ENQUEUED' END, queue, prio,"
        "         now() + delay * interval '1 millisecond', part, $9,"
        "         CASE WHEN take THEN $10 END, CASE WHEN take THEN 1 ELSE 0 END, CASE WHEN take THEN now() END, input"
        "    FROM e"
        "  ON CONFLICT (id) DO NOTHING"
        "  RETURNING id, status)"
        "SELECT id, " ENQUEUE_WAKE ", status = 'PENDING' FROM ins"},
    /*
     * A batch whose items share queue, priority, delay, partition key and
     * eagerness (the common case: one application's threads starting one
     * kind of work): those as plain parameters, so that the eager checks
     * run once per batch instead of once per row. A batch's rows cannot
     * see each other, so each would get the same answer.
     */
    [CAIRN__Q_ENQUEUE_SAME] = {"cairn_enqueue_same",
        "WITH e AS MATERIALIZED (SELECT $8::bool AND " EAGER_OK("$3", "$6::int") " AS take),"
        " v AS ("
        "  SELECT DISTINCT ON (id) id, name, input"
        "    FROM unnest($1::text[], $2::text[], $4::json[]) WITH ORDINALITY AS v(id, name, input, ord)"
        "   ORDER BY id, ord),"
        " ins AS ("
        "  INSERT INTO cairn.workflow_status (id, name, status, queue, priority, available_at, partition_key, app_version,"
        "                                    executor_id, attempts, started_at, input)"
        "  SELECT v.id, v.name, CASE WHEN e.take THEN 'PENDING' ELSE 'ENQUEUED' END, $3, $5::int,"
        "         now() + $6::int * interval '1 millisecond', $7, $9,"
        "         CASE WHEN e.take THEN $10 END, CASE WHEN e.take THEN 1 ELSE 0 END, CASE WHEN e.take THEN now() END,"
        "         v.input"
        "    FROM v, e"
        "  ON CONFLICT (id) DO NOTHING"
        "  RETURNING id, status)"
        "SELECT id, " ENQUEUE_WAKE ", status = 'PENDING' FROM ins"},
    [CAIRN__Q_QUEUE_SET] = {"cairn_queue_set",
        "SELECT cairn.set_queue($1, $2::int, $3::int, $4::int, $5::int * interval '1 millisecond', $6::int)"},
    /*
     * Every configured queue and every queue with live work, or just $1. The
     * counts read the ENQUEUED and PENDING rows only (both partial indexes).
     */
    [CAIRN__Q_QUEUE_LIST] = {"cairn_queue_list",
        "SELECT coalesce(json_agg(json_build_object("
        "  'name', n.name, 'concurrency', q.concurrency, 'worker_concurrency', q.worker_concurrency,"
        "  'rate_limit', q.rate_limit, 'rate_period_ms', (extract(epoch FROM q.rate_period) * 1000)::bigint,"
        "  'partition_concurrency', q.partition_concurrency, 'configured', q.name IS NOT NULL,"
        "  'enqueued', coalesce(c.enqueued, 0), 'running', coalesce(c.running, 0)) ORDER BY n.name), '[]'::json)"
        "  FROM (SELECT name FROM cairn.queues UNION"
        "        SELECT queue FROM cairn.workflow_status WHERE status IN ('ENQUEUED', 'PENDING')) n"
        "  LEFT JOIN cairn.queues q ON q.name = n.name"
        "  LEFT JOIN (SELECT queue, count(*) FILTER (WHERE status = 'ENQUEUED') AS enqueued,"
        "                    count(*) FILTER (WHERE status = 'PENDING') AS running"
        "               FROM cairn.workflow_status WHERE status IN ('ENQUEUED', 'PENDING') GROUP BY queue) c"
        "    ON c.queue = n.name"
        " WHERE $1::text IS NULL OR n.name = $1"},
    [CAIRN__Q_QUEUE_DELETE] = {"cairn_queue_delete",
        "SELECT cairn.delete_queue($1)"},
    /*
     * A waiting workflow lets go of its executor (see sql/004_waits.sql):
     * with the checkpoint of its wait's deadline when there is one, in the
     * same commit. A wake-up request already waiting for it makes it due at
     * once; one that commits meanwhile is the dispatcher's to see.
     */
    [CAIRN__Q_SUSPEND1] = {"cairn_suspend1",
        "WITH ins AS ("
        "  INSERT INTO cairn.steps (workflow_id, step, name, output)"
        "  SELECT $1, $2::int, $3, $4::json WHERE $2::int IS NOT NULL"
        "  ON CONFLICT (workflow_id, step) DO NOTHING RETURNING 1)"
        "UPDATE cairn.workflow_status"
        "   SET executor_id = NULL, waiting = $6, updated_at = now(),"
        "       wake_at = CASE WHEN EXISTS (SELECT 1 FROM cairn.pokes k WHERE k.workflow_id = $1) THEN now()"
        "                      ELSE coalesce(to_timestamp($5::float8 / 1000), 'infinity') END"
        " WHERE id = $1 AND status = 'PENDING' AND executor_id = $7"
        " RETURNING id, (SELECT count(*) FROM ins)"},
    [CAIRN__Q_SUSPEND] = {"cairn_suspend",
        "WITH v AS ("
        "  SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::json[], $5::float8[], $6::text[])"
        "         AS v(id, step, name, output, wake, waiting)),"
        " ins AS ("
        "  INSERT INTO cairn.steps (workflow_id, step, name, output)"
        "  SELECT id, step, name, output FROM v WHERE step IS NOT NULL"
        "  ON CONFLICT (workflow_id, step) DO NOTHING RETURNING 1)"
        "UPDATE cairn.workflow_status s"
        "   SET executor_id = NULL, waiting = v.waiting, updated_at = now(),"
        "       wake_at = CASE WHEN EXISTS (SELECT 1 FROM cairn.pokes k WHERE k.workflow_id = v.id) THEN now()"
        "                      ELSE coalesce(to_timestamp(v.wake / 1000), 'infinity') END"
        "  FROM v WHERE s.id = v.id AND s.status = 'PENDING' AND s.executor_id = $7"
        " RETURNING s.id, (SELECT count(*) FROM ins)"},
    [CAIRN__Q_RECEIVE] = {"cairn_receive",
        "SELECT output, error, recorded FROM cairn.receive($1, $2::int, $3)"},
    [CAIRN__Q_AWAIT_RESULT] = {"cairn_await_result",
        "SELECT output, error, state FROM cairn.await_result($1, $2::int, $3)"},
    [CAIRN__Q_CANCEL] = {"cairn_cancel", "SELECT cairn.cancel($1, $2::boolean)"},
    [CAIRN__Q_RESUME] = {"cairn_resume", "SELECT cairn.resume($1)"},
    [CAIRN__Q_FORK] = {"cairn_fork", "SELECT cairn.fork($1, $2::int, $3)"},
    /* Which of the runs active here were cancelled (for notifications a lost connection dropped). */
    [CAIRN__Q_CANCELLED] = {"cairn_cancelled",
        "SELECT id FROM cairn.workflow_status WHERE id = ANY ($1::text[]) AND status = 'CANCELLED'"},
    [CAIRN__Q_DEADLINE_FIRST] = {"cairn_deadline_first",
        "INSERT INTO cairn.deadlines (workflow_id, deadline_at)"
        " SELECT $1, now() + $2::int * interval '1 millisecond'"
        "  WHERE NOT EXISTS (SELECT 1 FROM cairn.workflow_status WHERE id = $1)"
        " ON CONFLICT (workflow_id) DO UPDATE SET deadline_at = excluded.deadline_at"},
    [CAIRN__Q_EXPIRE] = {"cairn_expire", "SELECT cairn.expire()"},
    [CAIRN__Q_EXECUTORS] = {"cairn_executors",
        "SELECT coalesce(json_agg(json_build_object("
        "  'id', e.id, 'state', e.state, 'heartbeat_at', e.heartbeat_at,"
        "  'heartbeat_age_ms', (extract(epoch FROM now() - e.heartbeat_at) * 1000)::bigint,"
        "  'lease_ms', (extract(epoch FROM e.lease) * 1000)::bigint, 'started_at', e.started_at,"
        "  'stopped_at', e.stopped_at, 'hostname', e.hostname, 'pid', e.pid, 'app_version', e.app_version,"
        "  'running', (SELECT count(*) FROM cairn.workflow_status s"
        "               WHERE s.status = 'PENDING' AND s.executor_id = e.id),"
        "  'adopted_by', e.adopted_by) ORDER BY e.id), '[]'::json)"
        "  FROM cairn.executors e"},
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
    free(c->sql_ready);
    c->sql_ready = NULL;
    c->sql_ready_n = 0;
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

/*
 * Prepares every statement in one round trip: the Parse messages go out in
 * pipeline mode behind one Sync. A new connection is on the path of the
 * first checkpoint after a start or a reconnect, and one round trip per
 * statement made that wait tens of milliseconds on a busy server.
 */
static int prepare_all(cairn__conn *c)
{
    PGconn *pg = c->pg;
    int ok = PQenterPipelineMode(pg);
    for (int i = 0; i < CAIRN__Q_COUNT && ok; i++)
        ok = PQsendPrepare(pg, statements[i].name, statements[i].sql, 0, NULL);
    if (!ok || !PQpipelineSync(pg))
        return cairn__fail_pg(CAIRN_ECONN, NULL, pg, "preparing statements");
    /* Each statement's results end with a NULL; the first failure is kept. */
    int rc = CAIRN_OK;
    for (int i = 0; i < CAIRN__Q_COUNT && PQstatus(pg) == CONNECTION_OK; i++) {
        PGresult *r;
        while ((r = PQgetResult(pg)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (rc == CAIRN_OK && st != PGRES_COMMAND_OK && st != PGRES_PIPELINE_ABORTED)
                rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_ESCHEMA, r, pg,
                                    "preparing statements");
            PQclear(r);
        }
    }
    PGresult *sync = PQstatus(pg) == CONNECTION_OK ? PQgetResult(pg) : NULL;
    int synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    if (rc == CAIRN_OK && (!synced || !PQexitPipelineMode(pg)))
        rc = cairn__fail_pg(CAIRN_ECONN, NULL, pg, "preparing statements");
    if (rc == CAIRN_OK)
        c->prepared = 1;
    return rc;
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
    /*
     * The claim's limits count under a queue lock with a fresh snapshot per
     * statement, which READ COMMITTED gives; a server or role default of a
     * stricter level would make them count from a stale snapshot. Steps that
     * want another level say so in their BEGIN.
     */
    /*
     * A commit connection runs nothing but the statements above, each
     * written to be planned once for any parameters. Left to choose, the
     * server re-plans a statement on every call when its first five custom
     * plans cost less than the generic one: the batch enqueue, whose
     * arrays a custom plan counts exactly, then cost 170 to 390 us of
     * planning per call on a connection that had started with small
     * batches, and nothing on one that had started with large ones. The
     * pool's connections also run applications' transactional steps, whose
     * SQL keeps the server's default.
     */
    PGresult *iso = PQexec(c->pg, c->generic ? "SET default_transaction_isolation TO 'read committed';"
                                               " SET plan_cache_mode TO force_generic_plan"
                                             : "SET default_transaction_isolation TO 'read committed'");
    if (PQresultStatus(iso) != PGRES_COMMAND_OK) {
        int rc = cairn__fail_pg(CAIRN_ECONN, iso, c->pg, "setting the session's defaults");
        PQclear(iso);
        cairn__conn_drop(c);
        return rc;
    }
    PQclear(iso);
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

/*
 * Runs one statement on a pool connection, prepared (sql is its name) or
 * not, reconnecting and retrying after a lost connection until
 * connect_timeout_ms has passed.
 */
static int pool_run(cairn *h, int prepared, const char *sql, int nparams, const char *const *values, const char *what,
                    PGresult **res)
{
    cairn__conn *c;
    cairn__pool_get(h, &c);
    long long deadline = cairn__now_ms() + h->connect_timeout_ms;
    long long backoff = 50;
    int rc;
    *res = NULL;
    for (;;) {
        rc = cairn__conn_ensure(h, c);
        if (rc == CAIRN_OK) {
            PGresult *r = prepared ? PQexecPrepared(c->pg, sql, nparams, values, NULL, NULL, 0)
                                   : PQexecParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0);
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                *res = r;
                break;
            }
            if (!cairn__conn_lost(c->pg, r)) {
                rc = cairn__fail_pg(CAIRN_EDB, r, c->pg, what);
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

int cairn__query(cairn *h, int stmt_id, int nparams, const char *const *values, PGresult **res)
{
    return pool_run(h, 1, statements[stmt_id].name, nparams, values, statements[stmt_id].name, res);
}

int cairn__pool_exec(cairn *h, const char *sql, int nparams, const char *const *values, const char *what,
                     PGresult **res)
{
    return pool_run(h, 0, sql, nparams, values, what, res);
}

const char *cairn__stmt_name(int stmt_id)
{
    return statements[stmt_id].name;
}
