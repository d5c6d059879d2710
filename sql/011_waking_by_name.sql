-- cairn schema version 11: the suspended workflows are looked up by name.
--
-- Until version 10 the waking index was (wake_at), and cairn.dispatch read
-- it in wake-up order, testing each row's name: "when is the next sleeper
-- I run due?" and "which of mine are due?" read past every suspended
-- workflow of the names it does not run. With 100,000 workflows of another
-- service asleep in the same database, each look (every claim, idle polls
-- included) read 2,199 buffers and took 27 ms to find that none was its
-- own (EXPLAIN ANALYZE, 2026-12-06). As version 9 did for the queued index,
-- the index now leads with the name, and the dispatcher asks for each name
-- it runs, so other services' sleepers, however many, cost it nothing.
--
-- The new index is built before the old one is dropped, for the reason
-- given in version 9 (the build's SHARE lock lets reads go on; the drop's
-- ACCESS EXCLUSIVE lock is then held only until COMMIT). Only suspended
-- workflows are in either index.
--
-- cairn.dispatch keeps its signature and its answers, so libraries of
-- version 8 and later run against it unchanged: no oldest-library line.

CREATE INDEX workflow_status_waking_by_name ON cairn.workflow_status (name, wake_at)
    WHERE wake_at IS NOT NULL;
DROP INDEX cairn.workflow_status_waking;
ALTER INDEX cairn.workflow_status_waking_by_name RENAME TO workflow_status_waking;

-- As in version 8, except that the three looks at suspended workflows go
-- name by name through the waking index: whether one is due (the first
-- entry of each name), which are due (the first few of each name, merged
-- in wake-up order; as in cairn.claim, rows locked past the merged limit
-- stay locked only until this call commits), and when the next is due.
--
-- The two scans test only what the waking index holds (name, wake_at) and
-- the served queues and versions, not status or owner: a row has a
-- wake_at only while it is suspended (PENDING, no owner), and naming
-- status or owner lets the planner take the owner index (executor_id IS
-- NULL) instead, which holds every suspended workflow of every name. With
-- statistics taken while the table was empty it did: 3,905 buffers and
-- 72 ms for a look beside 100,000 sleepers of another name. The UPDATE
-- checks status and owner again on the row it locked.
CREATE OR REPLACE FUNCTION cairn.dispatch(
    p_executor     text,
    p_names        text[],
    p_want         integer,
    p_max_attempts integer,
    p_queues       text[] DEFAULT NULL,
    p_versions     text[] DEFAULT NULL,
    p_app_version  text   DEFAULT NULL)
RETURNS TABLE (id text, name text, attempts integer, status text, input json, resumed boolean, retry_ms integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    remaining integer := p_want;
    got       integer;
    next_wake timestamptz;
BEGIN
    IF p_want <= 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM cairn.executors e WHERE e.id = p_executor AND e.state = 'LIVE';
    IF NOT FOUND THEN
        RETURN;
    END IF;

    -- Wake-up requests. Target rows are taken SKIP LOCKED: a workflow busy
    -- suspending or finishing right now keeps its request for the next look.
    IF EXISTS (SELECT 1 FROM cairn.pokes) THEN
        WITH p AS (
            SELECT k.ctid AS row_id, k.workflow_id FROM cairn.pokes k LIMIT 1000 FOR UPDATE SKIP LOCKED),
        t AS (
            SELECT s.id, s.status, s.executor_id, s.wake_at FROM cairn.workflow_status s
             WHERE s.id IN (SELECT p.workflow_id FROM p) FOR NO KEY UPDATE SKIP LOCKED),
        w AS (
            UPDATE cairn.workflow_status s SET wake_at = now()
              FROM t WHERE s.id = t.id AND t.status = 'PENDING' AND t.executor_id IS NULL AND t.wake_at > now()
            RETURNING s.id)
        DELETE FROM cairn.pokes k USING p
         WHERE k.ctid = p.row_id
           AND (p.workflow_id IN (SELECT t.id FROM t
                                   WHERE (t.status = 'PENDING' AND t.executor_id IS NULL AND t.wake_at IS NOT NULL)
                                      OR t.status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER'))
                OR NOT EXISTS (SELECT 1 FROM cairn.workflow_status s WHERE s.id = p.workflow_id));
    END IF;

    -- Due suspended workflows. The executor's row is share-locked first, as
    -- in cairn.claim(), so that an adoption cannot miss what this resumes.
    -- The test reads the first entry of each name (min() over an index
    -- scan with the name fixed).
    IF EXISTS (SELECT 1 FROM unnest(p_names) AS n(nm)
                WHERE (SELECT min(x.wake_at) FROM cairn.workflow_status x
                        WHERE x.name = n.nm AND x.wake_at IS NOT NULL) <= now()) THEN
        PERFORM 1 FROM cairn.executors e WHERE e.id = p_executor AND e.state = 'LIVE' FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY
        WITH c AS (
            UPDATE cairn.workflow_status s
               SET executor_id = p_executor, wake_at = NULL, waiting = NULL, updated_at = now()
             WHERE s.status = 'PENDING' AND s.executor_id IS NULL AND s.wake_at <= now()
               AND s.id = ANY (ARRAY(
                SELECT k.id FROM unnest(p_names) AS n(nm)
                 CROSS JOIN LATERAL (
                    SELECT x.id, x.wake_at FROM cairn.workflow_status x
                     WHERE x.name = n.nm AND x.wake_at <= now()
                       AND (p_queues IS NULL OR x.queue = ANY (p_queues))
                       AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
                     ORDER BY x.wake_at
                     LIMIT remaining FOR UPDATE SKIP LOCKED) k
                 ORDER BY k.wake_at
                 LIMIT remaining))
            RETURNING s.id, s.name, s.attempts)
        SELECT c.id, c.name, c.attempts, 'PENDING'::text, NULL::json, true, NULL::integer FROM c;
        GET DIAGNOSTICS got = ROW_COUNT;
        remaining := remaining - got;
    END IF;

    IF remaining > 0 THEN
        RETURN QUERY SELECT * FROM cairn.claim(p_executor, p_names, remaining, p_max_attempts,
                                               p_queues, p_versions, p_app_version);
        SELECT min(k.wake_at) INTO next_wake FROM unnest(p_names) AS n(nm)
         CROSS JOIN LATERAL (
            SELECT x.wake_at FROM cairn.workflow_status x
             WHERE x.name = n.nm AND x.wake_at > now() AND x.wake_at < 'infinity'
               AND (p_queues IS NULL OR x.queue = ANY (p_queues))
               AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
             ORDER BY x.wake_at LIMIT 1) k;
        IF next_wake IS NOT NULL THEN
            RETURN QUERY SELECT NULL::text, NULL::text, NULL::integer, 'WAKE'::text, NULL::json, NULL::boolean,
                                least(3600000, greatest(1, ceil(extract(epoch FROM (next_wake - now())) * 1000)))::integer;
        END IF;
    END IF;
END
$$;
