-- cairn schema version 4: workflows that wait without a thread (durable
-- sleep, receiving messages, awaiting other workflows), and child workflows.
--
-- A waiting workflow is suspended: it stays PENDING (so it keeps its place
-- under its queue's concurrency and partition limits, like any workflow
-- that has started and not finished), but no executor owns it and
-- wake_at says when it is to be resumed. Resuming is claiming it again:
-- any live executor that serves its queue and runs its name takes it and
-- replays it from its checkpoints. So a suspended workflow is exactly a
-- row with status PENDING, executor_id NULL and wake_at set.

ALTER TABLE cairn.workflow_status
    -- When a suspended workflow is due: the end of its sleep or of its
    -- wait's timeout, 'infinity' for a wait without one. A message or a
    -- finished child brings it forward to now() (see cairn.pokes). NULL
    -- while the workflow is not suspended.
    ADD COLUMN wake_at   timestamptz,
    -- What a suspended workflow waits for, for people and tools:
    -- 'sleep', 'message:<topic>' or 'workflow:<id>'.
    ADD COLUMN waiting   text COLLATE "C",
    -- The workflow that started this one with cairn_start_child().
    ADD COLUMN parent_id text COLLATE "C";

-- Dispatchers ask "which suspended workflows are due?" and "when is the
-- next one due?". Only suspended rows are indexed, in wake-up order, so the
-- index holds just the waiting workflows and both questions read its start.
CREATE INDEX workflow_status_waking ON cairn.workflow_status (wake_at) WHERE wake_at IS NOT NULL;

-- Wake-up requests for waiting workflows: a message sent to a workflow, or
-- a child that finished, leaves a row naming the workflow that may be
-- waiting for it. A dispatcher makes a suspended workflow named here due
-- at once and deletes the row; a row for a workflow that is running stays
-- until the workflow suspends (it may be about to wait for exactly this)
-- or finishes. The sender never reads or locks the waiting workflow's
-- row, which is what makes this safe at any isolation level: whatever the
-- order of a send's commit and a workflow's suspension, the row is there
-- when the dispatcher next looks after both. No key: senders only insert,
-- and never wait on one another.
CREATE TABLE cairn.pokes (
    workflow_id text        COLLATE "C" NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW cairn.workflows AS
SELECT s.id, s.name, s.status, s.queue, p.input, p.output, p.error,
       s.executor_id, s.attempts, s.created_at, s.updated_at,
       s.wake_at, s.waiting, s.parent_id
  FROM cairn.workflow_status s
  LEFT JOIN cairn.workflow_payloads p ON p.id = s.id;

-- Messages now leave a wake-up request for their workflow and wake idle
-- dispatchers (cairn.wake() notifies only when one is waiting, at commit).
CREATE OR REPLACE FUNCTION cairn.send(
    workflow_id text,
    topic       text,
    message     json,
    message_id  text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM cairn.check_name('workflow ID', workflow_id);
    PERFORM cairn.check_name('topic', topic);
    IF message_id IS NOT NULL THEN
        PERFORM cairn.check_name('message ID', message_id);
    END IF;
    PERFORM cairn.check_payload('message', message);
    PERFORM 1 FROM cairn.workflow_status s WHERE s.id = send.workflow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cairn: no workflow has ID ''%''', workflow_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO cairn.messages (workflow_id, topic, message_id, message)
    VALUES (send.workflow_id, send.topic, send.message_id, send.message)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO cairn.pokes (workflow_id) VALUES (send.workflow_id);
    PERFORM cairn.wake();
    RETURN true;
END
$$;

-- Consume the oldest message on a topic into step p_step of workflow p_id:
-- the message is deleted and recorded as the step's output in one
-- transaction, so it is consumed exactly once. If the step is already
-- recorded (a replay, or another execution of the same workflow got there
-- first) nothing is consumed and the recording is returned. Returns no row
-- when there is no message. The message row is taken FOR UPDATE SKIP
-- LOCKED: two executions racing for the same step cannot both take one.
CREATE FUNCTION cairn.receive(p_id text, p_step integer, p_topic text)
RETURNS TABLE (output json, error json, recorded boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    m_seq bigint;
    m_msg json;
BEGIN
    RETURN QUERY SELECT st.output, st.error, true FROM cairn.steps st
                  WHERE st.workflow_id = p_id AND st.step = p_step;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT m.seq, m.message INTO m_seq, m_msg FROM cairn.messages m
     WHERE m.workflow_id = p_id AND m.topic = p_topic
     ORDER BY m.seq LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO cairn.steps (workflow_id, step, name, output)
    VALUES (p_id, p_step, 'cairn.recv', coalesce(m_msg, 'null'::json))
    ON CONFLICT (workflow_id, step) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT st.output, st.error, true FROM cairn.steps st
                      WHERE st.workflow_id = p_id AND st.step = p_step;
        RETURN;
    END IF;
    DELETE FROM cairn.messages m WHERE m.workflow_id = p_id AND m.topic = p_topic AND m.seq = m_seq;
    RETURN QUERY SELECT coalesce(m_msg, 'null'::json), NULL::json, false;
END
$$;

-- Record the outcome of workflow p_target as step p_step of workflow p_id,
-- if it has finished: {"status": ..., "result": output or error}. state is
-- 'RECORDED' when the step was already recorded (replay, or another
-- execution), 'DONE' when this call recorded it, 'RUNNING_CHILD' or
-- 'RUNNING' when the target, a child of p_id or not, has not finished (a
-- finished child wakes its parent; any other workflow is looked at again
-- periodically) and 'MISSING' when no workflow has that ID.
CREATE FUNCTION cairn.await_result(p_id text, p_step integer, p_target text)
RETURNS TABLE (output json, error json, state text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    st    text;
    res   json;
    child boolean;
BEGIN
    RETURN QUERY SELECT s.output, s.error, 'RECORDED'::text FROM cairn.steps s
                  WHERE s.workflow_id = p_id AND s.step = p_step;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT w.status, CASE WHEN w.status = 'SUCCESS' THEN p.output ELSE p.error END, w.parent_id IS NOT DISTINCT FROM p_id
      INTO st, res, child
      FROM cairn.workflow_status w LEFT JOIN cairn.workflow_payloads p ON p.id = w.id
     WHERE w.id = p_target;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::json, NULL::json, 'MISSING'::text;
        RETURN;
    END IF;
    IF st NOT IN ('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER') THEN
        RETURN QUERY SELECT NULL::json, NULL::json, CASE WHEN child THEN 'RUNNING_CHILD' ELSE 'RUNNING' END;
        RETURN;
    END IF;
    INSERT INTO cairn.steps (workflow_id, step, name, output)
    VALUES (p_id, p_step, 'cairn.await', json_build_object('status', st, 'result', res))
    ON CONFLICT (workflow_id, step) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT s.output, s.error, 'RECORDED'::text FROM cairn.steps s
                      WHERE s.workflow_id = p_id AND s.step = p_step;
        RETURN;
    END IF;
    RETURN QUERY SELECT json_build_object('status', st, 'result', res), NULL::json, 'DONE'::text;
END
$$;

-- What a dispatcher takes in one round trip: first the suspended workflows
-- that are due (after making due those with a wake-up request), oldest
-- wake-up first, then enqueued workflows through cairn.claim() for what
-- capacity is left. Resuming does not count as an execution toward
-- max_attempts: only crashes do. When capacity is left over, a last row
-- (id NULL, status 'WAKE') tells the dispatcher in how many milliseconds
-- the next suspended workflow it could run is due, so it can sleep until
-- then instead of polling.
CREATE FUNCTION cairn.dispatch(
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
    IF EXISTS (SELECT 1 FROM cairn.workflow_status x WHERE x.wake_at <= now()) THEN
        PERFORM 1 FROM cairn.executors e WHERE e.id = p_executor AND e.state = 'LIVE' FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY
        WITH c AS (
            UPDATE cairn.workflow_status s
               SET executor_id = p_executor, wake_at = NULL, waiting = NULL, updated_at = now()
             WHERE s.status = 'PENDING' AND s.executor_id IS NULL AND s.id = ANY (ARRAY(
                SELECT x.id FROM cairn.workflow_status x
                 WHERE x.wake_at <= now() AND x.status = 'PENDING' AND x.executor_id IS NULL
                   AND x.name = ANY (p_names)
                   AND (p_queues IS NULL OR x.queue = ANY (p_queues))
                   AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
                 ORDER BY x.wake_at
                 LIMIT remaining FOR UPDATE SKIP LOCKED))
            RETURNING s.id, s.name, s.attempts)
        SELECT c.id, c.name, c.attempts, 'PENDING'::text, NULL::json, true, NULL::integer FROM c;
        GET DIAGNOSTICS got = ROW_COUNT;
        remaining := remaining - got;
    END IF;

    IF remaining > 0 THEN
        RETURN QUERY SELECT * FROM cairn.claim(p_executor, p_names, remaining, p_max_attempts,
                                               p_queues, p_versions, p_app_version);
        SELECT x.wake_at INTO next_wake FROM cairn.workflow_status x
         WHERE x.wake_at > now() AND x.wake_at < 'infinity' AND x.status = 'PENDING' AND x.executor_id IS NULL
           AND x.name = ANY (p_names)
           AND (p_queues IS NULL OR x.queue = ANY (p_queues))
           AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
         ORDER BY x.wake_at LIMIT 1;
        IF FOUND THEN
            RETURN QUERY SELECT NULL::text, NULL::text, NULL::integer, 'WAKE'::text, NULL::json, NULL::boolean,
                                least(3600000, greatest(1, ceil(extract(epoch FROM (next_wake - now())) * 1000)))::integer;
        END IF;
    END IF;
END
$$;

COMMENT ON TABLE cairn.pokes IS 'Wake-up requests for workflows that may be waiting (a message sent, a child finished).';
COMMENT ON FUNCTION cairn.receive(text, integer, text) IS
    'Consume the oldest message on a topic into a workflow step, exactly once.';
COMMENT ON FUNCTION cairn.await_result(text, integer, text) IS
    'Record the outcome of a finished workflow as a step of the workflow awaiting it.';
COMMENT ON FUNCTION cairn.dispatch(text, text[], integer, integer, text[], text[], text) IS
    'Claim work for an executor: due suspended workflows first, then enqueued ones.';
