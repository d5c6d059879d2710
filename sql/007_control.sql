-- cairn schema version 7: control over workflows: cancel, resume and
-- fork, and deadlines (timeouts), from SQL (and through them from C and
-- the CLI).
--
-- As before, every function is SECURITY INVOKER with a pinned search_path
-- and validates its arguments before it writes anything.

-- The workflow a fork was made from (cairn.fork): lineage for operators,
-- and what makes a repeated fork with the same new ID return the first.
ALTER TABLE cairn.workflow_status ADD COLUMN forked_from text COLLATE "C";

CREATE OR REPLACE VIEW cairn.workflows AS
SELECT s.id, s.name, s.status, s.queue, p.input, p.output, p.error,
       s.executor_id, s.attempts, s.created_at, s.updated_at,
       s.wake_at, s.waiting, s.parent_id, s.forked_from
  FROM cairn.workflow_status s
  LEFT JOIN cairn.workflow_payloads p ON p.id = s.id;

-- Deadlines: a workflow started with a timeout has a row here, and is
-- cancelled (cairn.expire) once deadline_at passes without it finishing.
-- A table apart from the hot status row, so that the many workflows
-- without a timeout pay nothing for it. A row may be written just before
-- its workflow (the library records a direct start's deadline first, so
-- that no crash can leave the workflow without it) and stays until its
-- deadline passes, finished workflow or not: cairn.expire deletes due rows.
CREATE TABLE cairn.deadlines (
    workflow_id text        COLLATE "C" PRIMARY KEY,
    deadline_at timestamptz NOT NULL
);
-- "Which deadlines are due?" and "when is the next?": one probe each.
CREATE INDEX deadlines_due ON cairn.deadlines (deadline_at);

-- Cancels the unfinished workflows among ids with the given error: what
-- cairn.cancel and cairn.expire share. CANCELLED, out of the waking index,
-- a wake-up request for each parent, and a notification (at commit) for
-- each that an executor owns, so that it stops at its next step. Returns
-- how many were cancelled. Internal: applications call cairn.cancel.
CREATE FUNCTION cairn.stop_workflows(ids text[], error json)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stopped integer;
    running text[];
BEGIN
    WITH upd AS (
        UPDATE cairn.workflow_status s
           SET status = 'CANCELLED', wake_at = NULL, waiting = NULL, updated_at = now()
         WHERE s.id = ANY (ids) AND s.status IN ('ENQUEUED', 'PENDING')
        RETURNING s.id, s.parent_id, s.executor_id),
    pay AS (
        UPDATE cairn.workflow_payloads p SET output = NULL, error = stop_workflows.error
          FROM upd WHERE p.id = upd.id),
    pk AS (
        INSERT INTO cairn.pokes (workflow_id) SELECT upd.parent_id FROM upd WHERE upd.parent_id IS NOT NULL)
    SELECT count(*), array_agg(upd.id) FILTER (WHERE upd.executor_id IS NOT NULL) INTO stopped, running FROM upd;
    -- Delivered at commit, like every notification: a rolled-back cancel tells nobody.
    PERFORM pg_notify('cairn_cancel', r) FROM unnest(running) r;
    IF stopped > 0 THEN
        PERFORM cairn.wake(); -- a parent woken by the pokes above is resumed by a dispatcher
    END IF;
    RETURN stopped;
END
$$;

-- Checks a workflow ID and returns the workflow's status, its row locked
-- for the caller's change; raises no_data_found for an unknown ID.
CREATE FUNCTION cairn.lock_status(workflow_id text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    PERFORM cairn.check_name('workflow ID', workflow_id);
    SELECT s.status INTO st FROM cairn.workflow_status s WHERE s.id = lock_status.workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cairn: no workflow has ID ''%''', workflow_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN st;
END
$$;

-- Cancel a workflow that has not finished: it becomes CANCELLED at once,
-- with error {"message": "cancelled"}. An ENQUEUED or suspended workflow
-- never runs again; one that an executor is running stops at its next step
-- (the executor is told by a notification on channel cairn_cancel, and
-- looks again at every heartbeat). A parent waiting for it is woken. With
-- children => true, every unfinished descendant started with
-- cairn_start_child() is cancelled too. Returns true if the workflow was
-- cancelled now, false if it was already CANCELLED. A workflow that
-- finished otherwise (SUCCESS, ERROR, DEAD_LETTER) raises
-- object_not_in_prerequisite_state; an unknown ID raises no_data_found.
CREATE FUNCTION cairn.cancel(workflow_id text, children boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    IF children IS NULL THEN
        RAISE EXCEPTION 'cairn: children is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    st := cairn.lock_status(workflow_id);
    IF st = 'CANCELLED' AND NOT children THEN
        RETURN false;
    ELSIF st NOT IN ('ENQUEUED', 'PENDING', 'CANCELLED') THEN
        RAISE EXCEPTION 'cairn: workflow ''%'' already finished with status %', workflow_id, st
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM cairn.stop_workflows(ARRAY(
        WITH RECURSIVE tree(id) AS (
            SELECT cancel.workflow_id COLLATE "C"
            UNION
            SELECT c.id FROM cairn.workflow_status c JOIN tree ON c.parent_id = tree.id WHERE children)
        SELECT tree.id FROM tree), '{"message": "cancelled"}');
    RETURN st <> 'CANCELLED';
END
$$;

-- Run a CANCELLED, ERROR or DEAD_LETTER workflow again: it goes back to
-- its queue as ENQUEUED with its attempts reset, and the executor that
-- claims it replays it from its checkpoints, so completed steps are not
-- run again. If its last checkpoint recorded a step's failure (the failure
-- that ended it), that checkpoint is removed, so the step runs again;
-- failures the workflow went past stay recorded. Returns true if the
-- workflow was resumed, false if it is ENQUEUED or PENDING already. A
-- SUCCESS raises object_not_in_prerequisite_state (fork it to run it
-- again); an unknown ID raises no_data_found.
CREATE FUNCTION cairn.resume(workflow_id text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    st := cairn.lock_status(workflow_id);
    IF st IN ('ENQUEUED', 'PENDING') THEN
        RETURN false;
    ELSIF st = 'SUCCESS' THEN
        RAISE EXCEPTION 'cairn: workflow ''%'' succeeded; there is nothing to resume (fork it to run it again)',
            workflow_id USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM cairn.steps k
     WHERE k.workflow_id = resume.workflow_id AND k.error IS NOT NULL
       AND k.step = (SELECT max(m.step) FROM cairn.steps m WHERE m.workflow_id = resume.workflow_id);
    UPDATE cairn.workflow_status s
       SET status = 'ENQUEUED', executor_id = NULL, attempts = 0, wake_at = NULL, waiting = NULL,
           available_at = now(), updated_at = now()
     WHERE s.id = resume.workflow_id;
    UPDATE cairn.workflow_payloads p SET output = NULL, error = NULL WHERE p.id = resume.workflow_id;
    DELETE FROM cairn.deadlines d WHERE d.workflow_id = resume.workflow_id; -- a resumed workflow starts afresh
    PERFORM cairn.wake();
    RETURN true;
END
$$;

-- Start a new workflow from an existing one: same name, input and queue
-- (unless queue is given), with the checkpoints of steps 1 .. from_step - 1
-- copied, so those steps return their recorded results and the new
-- workflow runs from step from_step on. The copy is of checkpoints only:
-- what the copied steps did (rows a transactional step wrote, messages it
-- sent, events and stream values, children it started) is not done again
-- and not copied; steps from from_step on run anew, under the new ID.
-- Returns the new workflow's ID (new_id, or a UUIDv7). The source may have
-- any status. Repeating a fork with the same new_id and source returns the
-- fork made first (so a caller may retry after a lost connection); a
-- new_id taken by any other workflow raises unique_violation. An unknown
-- source raises no_data_found.
CREATE FUNCTION cairn.fork(workflow_id text, from_step integer, new_id text DEFAULT NULL, queue text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src cairn.workflow_status%ROWTYPE;
    fid text := coalesce(new_id, cairn.uuid7());
BEGIN
    PERFORM cairn.check_name('workflow ID', workflow_id);
    PERFORM cairn.check_name('new workflow ID', fid);
    IF queue IS NOT NULL THEN
        PERFORM cairn.check_name('queue', queue);
    END IF;
    IF from_step IS NULL OR from_step < 1 THEN
        RAISE EXCEPTION 'cairn: from_step is %; it must be 1 or more', coalesce(from_step::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO src FROM cairn.workflow_status s WHERE s.id = fork.workflow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cairn: no workflow has ID ''%''', workflow_id USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO cairn.workflow_status (id, name, status, queue, priority, app_version, forked_from)
    VALUES (fid, src.name, 'ENQUEUED', coalesce(fork.queue, src.queue), src.priority, src.app_version, src.id)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        PERFORM 1 FROM cairn.workflow_status s WHERE s.id = fid AND s.forked_from = fork.workflow_id;
        IF FOUND THEN
            RETURN fid;
        END IF;
        RAISE EXCEPTION 'cairn: a workflow with ID ''%'' exists already', fid USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO cairn.workflow_payloads (id, input)
    SELECT fid, p.input FROM cairn.workflow_payloads p WHERE p.id = fork.workflow_id;
    INSERT INTO cairn.steps (workflow_id, step, name, output, error)
    SELECT fid, k.step, k.name, k.output, k.error FROM cairn.steps k
     WHERE k.workflow_id = fork.workflow_id AND k.step < from_step;
    PERFORM cairn.wake();
    RETURN fid;
END
$$;

-- Give an unfinished workflow a deadline timeout from now (the start of
-- the calling transaction), replacing any it had; NULL removes it. Call it
-- in the transaction that enqueues the workflow to enqueue it with a
-- timeout. Returns the deadline. Children started afterwards inherit it
-- (theirs is the earlier of it and their own). An unknown ID raises
-- no_data_found, a finished workflow object_not_in_prerequisite_state, a
-- timeout that is not positive invalid_parameter_value.
CREATE FUNCTION cairn.set_timeout(workflow_id text, timeout interval)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    IF timeout IS NOT NULL AND timeout <= interval '0' THEN
        RAISE EXCEPTION 'cairn: timeout is %; it must be positive', timeout USING ERRCODE = 'invalid_parameter_value';
    END IF;
    st := cairn.lock_status(workflow_id);
    IF st NOT IN ('ENQUEUED', 'PENDING') THEN
        RAISE EXCEPTION 'cairn: workflow ''%'' already finished with status %', workflow_id, st
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF timeout IS NULL THEN
        DELETE FROM cairn.deadlines d WHERE d.workflow_id = set_timeout.workflow_id;
        RETURN NULL;
    END IF;
    INSERT INTO cairn.deadlines AS d (workflow_id, deadline_at) VALUES (set_timeout.workflow_id, now() + timeout)
    ON CONFLICT ON CONSTRAINT deadlines_pkey DO UPDATE SET deadline_at = excluded.deadline_at;
    RETURN now() + timeout;
END
$$;

-- The dispatchers' call: cancels the unfinished workflows whose deadline
-- passed, with error {"message": "timed out: ..."}, deleting their
-- deadline rows (and those of workflows that finished in time). Due rows
-- are taken SKIP LOCKED, so concurrent dispatchers share them and never
-- wait. Returns the milliseconds until the next deadline (0: more are
-- due now), or NULL when there is none.
CREATE FUNCTION cairn.expire()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    due  text[];
    nxt  timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM cairn.deadlines d WHERE d.deadline_at <= now()) THEN
        WITH gone AS (
            DELETE FROM cairn.deadlines d
             WHERE d.workflow_id = ANY (ARRAY(
                SELECT x.workflow_id FROM cairn.deadlines x WHERE x.deadline_at <= now()
                 ORDER BY x.deadline_at LIMIT 1000 FOR UPDATE SKIP LOCKED))
            RETURNING d.workflow_id)
        SELECT array_agg(gone.workflow_id) INTO due FROM gone;
        IF due IS NOT NULL THEN
            PERFORM cairn.stop_workflows(due, '{"message": "timed out: the workflow''s deadline passed"}');
            IF cardinality(due) = 1000 THEN
                RETURN 0;
            END IF;
        END IF;
    END IF;
    SELECT min(d.deadline_at) INTO nxt FROM cairn.deadlines d;
    IF nxt IS NULL THEN
        RETURN NULL; -- (greatest() would turn it into 0)
    END IF;
    RETURN greatest(ceil(extract(epoch FROM nxt - now()) * 1000), 0)::bigint;
END
$$;

COMMENT ON FUNCTION cairn.cancel(text, boolean) IS 'Cancel an unfinished workflow (and, with children, its descendants).';
COMMENT ON FUNCTION cairn.resume(text) IS 'Run a cancelled, failed or dead-lettered workflow again from its checkpoints.';
COMMENT ON FUNCTION cairn.fork(text, integer, text, text) IS 'Start a new workflow reusing the checkpoints before a step.';
COMMENT ON FUNCTION cairn.set_timeout(text, interval) IS 'Give an unfinished workflow a deadline (NULL: none).';
COMMENT ON TABLE cairn.deadlines IS 'Deadlines of workflows started with a timeout; cairn.expire cancels those that pass.';
