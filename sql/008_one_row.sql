-- cairn schema version 8: one row per workflow.
--
-- Until version 7 a workflow's input, output and error lived in a second
-- table, cairn.workflow_payloads, so that the few updates of the status
-- row rewrote a short tuple. Measured (bench/README.md), the second row
-- cost more than the short tuple saved: every start and every enqueue
-- wrote two rows and two primary-key entries, and every finish updated
-- two rows. Now the payloads are columns of cairn.workflow_status. A value
-- too large to keep inline (about 2 kB) is moved out of line by
-- PostgreSQL's TOAST, and an update that does not change it copies only
-- its pointer, so large inputs do not make the status updates heavier.
--
-- The functions that wrote or read cairn.workflow_payloads are replaced
-- below with the same signatures and behaviour; only the table they use
-- changes. Upgrading copies every workflow's payloads into its status
-- row, which rewrites the table once.
--
-- This is the first migration that is not only additive: a library that
-- knows an older schema writes the dropped table and cannot run against
-- this one. Stop the workers of older versions before it is applied. The
-- line below records that in cairn.migrations.oldest_library, so that from
-- now on a library meeting a schema newer than it knows refuses it with a
-- clear error when the schema says so, instead of failing statement by
-- statement (see src/schema.c).
--
-- oldest library: 8

ALTER TABLE cairn.migrations ADD COLUMN IF NOT EXISTS oldest_library integer;

ALTER TABLE cairn.workflow_status
    ADD COLUMN input  json,
    ADD COLUMN output json,
    ADD COLUMN error  json;

UPDATE cairn.workflow_status s SET input = p.input, output = p.output, error = p.error
  FROM cairn.workflow_payloads p WHERE p.id = s.id;

-- The same columns as before, now from the one table (views built on
-- this one keep working).
CREATE OR REPLACE VIEW cairn.workflows AS
SELECT s.id, s.name, s.status, s.queue, s.input, s.output, s.error,
       s.executor_id, s.attempts, s.created_at, s.updated_at,
       s.wake_at, s.waiting, s.parent_id, s.forked_from
  FROM cairn.workflow_status s;

DROP TABLE cairn.workflow_payloads;

-- cairn.enqueue (version 3's arguments): the input goes into the status row.
CREATE OR REPLACE FUNCTION cairn.enqueue(
    workflow_name text,
    input         json     DEFAULT NULL,
    queue         text     DEFAULT 'default',
    id            text     DEFAULT NULL,
    priority      integer  DEFAULT 0,
    delay         interval DEFAULT NULL,
    dedup_key     text     DEFAULT NULL,
    partition_key text     DEFAULT NULL,
    dedup_error   boolean  DEFAULT false,
    app_version   text     DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wid   text := id;
    other text;
    got   text;
    b     bytea;
BEGIN
    -- This runs inside application transactions, so its own cost counts:
    -- the checks are made inline, and only an argument that fails one goes
    -- to cairn.check_name or cairn.check_payload for the precise error
    -- (each call of a function with a SET clause costs as much as a
    -- statement).
    IF workflow_name IS NULL OR workflow_name = '' OR octet_length(workflow_name) > 200
       OR workflow_name ~ '[\x01-\x1f\x7f]' THEN
        PERFORM cairn.check_name('workflow name', workflow_name);
    END IF;
    IF queue IS NULL OR queue = '' OR octet_length(queue) > 200 OR queue ~ '[\x01-\x1f\x7f]' THEN
        PERFORM cairn.check_name('queue name', queue);
    END IF;
    IF wid IS NULL THEN
        -- cairn.uuid7(), inline.
        b := overlay(uuid_send(gen_random_uuid())
                     PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                     FROM 1 FOR 6);
        b := set_byte(b, 6, (get_byte(b, 6) & 15) | 112);
        wid := encode(set_byte(b, 8, (get_byte(b, 8) & 63) | 128), 'hex')::uuid::text;
    ELSIF wid = '' OR octet_length(wid) > 200 OR wid ~ '[\x01-\x1f\x7f]' THEN
        PERFORM cairn.check_name('workflow ID', wid);
    END IF;
    IF dedup_key IS NOT NULL AND (dedup_key = '' OR octet_length(dedup_key) > 200
                                  OR dedup_key ~ '[\x01-\x1f\x7f]') THEN
        PERFORM cairn.check_name('dedup key', dedup_key);
    END IF;
    IF partition_key IS NOT NULL AND (partition_key = '' OR octet_length(partition_key) > 200
                                      OR partition_key ~ '[\x01-\x1f\x7f]') THEN
        PERFORM cairn.check_name('partition key', partition_key);
    END IF;
    IF app_version IS NOT NULL AND (app_version = '' OR octet_length(app_version) > 200
                                    OR app_version ~ '[\x01-\x1f\x7f]') THEN
        PERFORM cairn.check_name('application version', app_version);
    END IF;
    IF priority IS NULL THEN
        RAISE EXCEPTION 'cairn: priority is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF dedup_error IS NULL THEN
        RAISE EXCEPTION 'cairn: dedup_error is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF delay < interval '0' THEN
        RAISE EXCEPTION 'cairn: delay is negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(input::text) > 16777216 THEN
        PERFORM cairn.check_payload('workflow input', input);
    END IF;

    -- Each round either inserts or finds the workflow that holds the ID or
    -- the dedup key. It goes round again only when the row the insert ran
    -- into was gone by the time of the lookup (a concurrent transaction's
    -- dedup workflow that finished meanwhile, an ID deleted meanwhile): the
    -- ID or key is free again, so the next round inserts. A few rounds are
    -- plenty; after them the caller is told to retry, as after any
    -- serialization failure.
    FOR tries IN 1..3 LOOP
        IF dedup_key IS NOT NULL THEN
            SELECT s.id INTO other FROM cairn.workflow_status s
             WHERE s.queue = enqueue.queue AND s.dedup_key = enqueue.dedup_key
               AND s.status IN ('ENQUEUED', 'PENDING');
            IF FOUND THEN
                IF dedup_error THEN
                    RAISE EXCEPTION 'cairn: dedup key ''%'' is held by live workflow ''%'' in queue ''%''',
                        dedup_key, other, queue USING ERRCODE = 'unique_violation';
                END IF;
                RETURN other;
            END IF;
        END IF;

        INSERT INTO cairn.workflow_status AS s
               (id, name, status, queue, priority, available_at, dedup_key, partition_key, app_version, input)
        VALUES (wid, workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'),
                dedup_key, partition_key, app_version, enqueue.input)
        ON CONFLICT DO NOTHING
        RETURNING s.id INTO got;
        EXIT WHEN got IS NOT NULL;

        -- The ID exists, or a concurrent transaction took the dedup key.
        SELECT s.name INTO other FROM cairn.workflow_status s WHERE s.id = wid;
        IF FOUND THEN
            IF other <> workflow_name THEN
                RAISE EXCEPTION 'cairn: workflow ID ''%'' already belongs to a ''%'' workflow, not ''%''',
                    wid, other, workflow_name USING ERRCODE = 'unique_violation';
            END IF;
            RETURN wid;
        END IF;
    END LOOP;
    IF got IS NULL THEN
        RAISE EXCEPTION 'cairn: the workflow holding ID ''%'' or its dedup key kept changing; retry the transaction',
            wid USING ERRCODE = 'serialization_failure';
    END IF;

    -- cairn.wake() reads the flag first; the call is needed only while it is up.
    IF (SELECT w.armed FROM cairn.wakeup w) THEN
        PERFORM cairn.wake();
    END IF;
    RETURN wid;
END
$$;

-- cairn.claim: the input comes back from the status row it updates, and a
-- workflow moved to DEAD_LETTER gets its error in the same update. The
-- update finds its rows by primary key only: the IDs are those the scan
-- locked, and a locked row is still ENQUEUED (FOR UPDATE rechecks the
-- condition on the newest version). Version 3 also tested status there,
-- and with statistics taken while nothing was queued the planner then
-- read the rows through the queued index, scanning every queued entry on
-- each claim: a drain of 20,000 workflows ran at a third of its speed.
CREATE OR REPLACE FUNCTION cairn.claim(
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
    qs        text[];
    more      text[];
    nq        integer;
    base      integer;
    q         text;
    cfg       cairn.queues%ROWTYPE;
    has_cfg   boolean;
    remaining integer := p_want;
    quota     integer;
    cap       integer;
    got       integer;
    ran       integer;
    hint      integer;
    t         timestamptz;
    oldest    timestamptz;
    sat         text[];
    live_locked boolean := false;
BEGIN
    IF p_want <= 0 THEN
        RETURN;
    END IF;
    -- Only a LIVE executor claims (see the lock taken before the first
    -- claim below); a plain read first, so that an idle poll writes nothing.
    PERFORM 1 FROM cairn.executors e WHERE e.id = p_executor AND e.state = 'LIVE';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_queues IS NOT NULL THEN
        qs := p_queues;
    ELSE
        WITH RECURSIVE w(queue) AS (
            (SELECT s.queue FROM cairn.workflow_status s WHERE s.status = 'ENQUEUED' ORDER BY s.queue LIMIT 1)
            UNION ALL
            SELECT (SELECT s.queue FROM cairn.workflow_status s
                     WHERE s.status = 'ENQUEUED' AND s.queue > w.queue ORDER BY s.queue LIMIT 1)
              FROM w WHERE w.queue IS NOT NULL)
        SELECT array_agg(w.queue) INTO qs FROM w WHERE w.queue IS NOT NULL;
    END IF;
    nq := coalesce(array_length(qs, 1), 0);
    IF nq = 0 THEN
        RETURN;
    END IF;

    FOR pass IN 1..2 LOOP
        EXIT WHEN remaining <= 0 OR nq = 0;
        quota := greatest(1, (remaining + nq - 1) / nq);
        base := floor(random() * nq)::integer;
        more := '{}';
        FOR i IN 0..nq - 1 LOOP
            EXIT WHEN remaining <= 0;
            q := qs[1 + (base + i) % nq];
            cap := least(quota, remaining);
            t := now();

            SELECT * INTO cfg FROM cairn.queues c WHERE c.name = q;
            has_cfg := FOUND;
            IF has_cfg AND cfg.worker_concurrency IS NOT NULL THEN
                SELECT count(*) INTO ran FROM cairn.workflow_status s
                 WHERE s.status = 'PENDING' AND s.executor_id = p_executor AND s.queue = q;
                cap := least(cap, cfg.worker_concurrency - ran);
                IF cap <= 0 THEN
                    -- This executor's own finishes free it. The hint keeps its
                    -- dispatcher from taking the queue for empty and ignoring them.
                    hint := least(coalesce(hint, 100), 100);
                    CONTINUE;
                END IF;
            END IF;
            IF has_cfg AND (cfg.concurrency IS NOT NULL OR cfg.rate_limit IS NOT NULL
                            OR cfg.partition_concurrency IS NOT NULL) THEN
                PERFORM 1 FROM cairn.queues c WHERE c.name = q FOR UPDATE SKIP LOCKED;
                IF NOT FOUND THEN
                    hint := least(coalesce(hint, 20), 20); -- another executor is claiming from it
                    CONTINUE;
                END IF;
                t := clock_timestamp();
                IF cfg.concurrency IS NOT NULL THEN
                    SELECT count(*) INTO ran FROM cairn.workflow_status s
                     WHERE s.status = 'PENDING' AND s.queue = q;
                    IF ran >= cfg.concurrency THEN
                        hint := least(coalesce(hint, 100), 100);
                        CONTINUE;
                    END IF;
                    cap := least(cap, cfg.concurrency - ran);
                END IF;
                IF cfg.rate_limit IS NOT NULL THEN
                    DELETE FROM cairn.queue_starts r WHERE r.queue = q AND r.started_at <= t - cfg.rate_period;
                    SELECT count(*), min(r.started_at) INTO ran, oldest FROM cairn.queue_starts r WHERE r.queue = q;
                    IF ran >= cfg.rate_limit THEN
                        hint := least(coalesce(hint, 60000),
                                      greatest(1, ceil(extract(epoch FROM (oldest + cfg.rate_period - t)) * 1000)::integer));
                        CONTINUE;
                    END IF;
                    cap := least(cap, cfg.rate_limit - ran);
                END IF;
            END IF;

            IF NOT live_locked THEN
                -- The executor's row stays share-locked until this claim
                -- commits, so an adoption (which takes executor rows FOR
                -- UPDATE SKIP LOCKED) cannot mark it DEAD in between and miss
                -- what it claims here; a heartbeat updates no key column and
                -- does not conflict. Taken only when there is work to claim:
                -- a row lock is a write.
                PERFORM 1 FROM cairn.executors e WHERE e.id = p_executor AND e.state = 'LIVE' FOR KEY SHARE;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
                live_locked := true;
            END IF;
            IF has_cfg AND cfg.partition_concurrency IS NOT NULL THEN
                -- Partitions already at their limit are left out of the scan;
                -- the candidates are then cut to what each partition has left.
                sat := ARRAY(SELECT s.partition_key FROM cairn.workflow_status s
                              WHERE s.status = 'PENDING' AND s.queue = q AND s.partition_key IS NOT NULL
                              GROUP BY s.partition_key HAVING count(*) >= cfg.partition_concurrency);
                RETURN QUERY
                WITH cand AS (
                    SELECT x.id, x.partition_key, x.priority, x.created_at FROM cairn.workflow_status x
                     WHERE x.status = 'ENQUEUED' AND x.queue = q AND x.available_at <= now()
                       AND x.name = ANY (p_names)
                       AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
                       AND (x.partition_key IS NULL OR x.partition_key <> ALL (sat))
                     ORDER BY x.priority, x.created_at
                     LIMIT greatest(cap * 4, 100) FOR UPDATE SKIP LOCKED),
                run AS (
                    SELECT s.partition_key, count(*) AS n FROM cairn.workflow_status s
                     WHERE s.status = 'PENDING' AND s.queue = q
                       AND s.partition_key IN (SELECT cand.partition_key FROM cand)
                     GROUP BY s.partition_key),
                pick AS (
                    SELECT k.id FROM (
                        SELECT cand.*, row_number() OVER (PARTITION BY cand.partition_key
                                                          ORDER BY cand.priority, cand.created_at) AS rn
                          FROM cand) k
                      LEFT JOIN run ON run.partition_key = k.partition_key
                     WHERE k.partition_key IS NULL OR k.rn + coalesce(run.n, 0) <= cfg.partition_concurrency
                     ORDER BY k.priority, k.created_at
                     LIMIT cap),
                c AS (
                    UPDATE cairn.workflow_status s
                       SET status = CASE WHEN s.attempts + 1 > p_max_attempts THEN 'DEAD_LETTER' ELSE 'PENDING' END,
                           executor_id = p_executor, attempts = s.attempts + 1, updated_at = now(),
                           started_at = coalesce(s.started_at, t),
                           app_version = coalesce(s.app_version, p_app_version),
                           error = CASE WHEN s.attempts + 1 > p_max_attempts THEN json_build_object('message', format(
                               'workflow was interrupted %s times (its executor died during each run); moved to DEAD_LETTER',
                               s.attempts), 'attempts', s.attempts) ELSE s.error END
                     WHERE s.id = ANY (ARRAY(SELECT pick.id FROM pick))
                    RETURNING s.id, s.name, s.attempts, s.status, s.input)
                SELECT c.id, c.name, c.attempts, c.status, c.input,
                       EXISTS (SELECT 1 FROM cairn.steps st WHERE st.workflow_id = c.id), NULL::integer
                  FROM c;
            ELSE
                RETURN QUERY
                WITH c AS (
                    UPDATE cairn.workflow_status s
                       SET status = CASE WHEN s.attempts + 1 > p_max_attempts THEN 'DEAD_LETTER' ELSE 'PENDING' END,
                           executor_id = p_executor, attempts = s.attempts + 1, updated_at = now(),
                           started_at = coalesce(s.started_at, t),
                           app_version = coalesce(s.app_version, p_app_version),
                           error = CASE WHEN s.attempts + 1 > p_max_attempts THEN json_build_object('message', format(
                               'workflow was interrupted %s times (its executor died during each run); moved to DEAD_LETTER',
                               s.attempts), 'attempts', s.attempts) ELSE s.error END
                     WHERE s.id = ANY (ARRAY(
                        SELECT x.id FROM cairn.workflow_status x
                         WHERE x.status = 'ENQUEUED' AND x.queue = q AND x.available_at <= now()
                           AND x.name = ANY (p_names)
                           AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
                         ORDER BY x.priority, x.created_at
                         LIMIT cap FOR UPDATE SKIP LOCKED))
                    RETURNING s.id, s.name, s.attempts, s.status, s.input)
                SELECT c.id, c.name, c.attempts, c.status, c.input,
                       EXISTS (SELECT 1 FROM cairn.steps st WHERE st.workflow_id = c.id), NULL::integer
                  FROM c;
            END IF;
            GET DIAGNOSTICS got = ROW_COUNT;
            remaining := remaining - got;
            IF got > 0 AND has_cfg AND cfg.rate_limit IS NOT NULL THEN
                INSERT INTO cairn.queue_starts (queue, started_at) SELECT q, t FROM generate_series(1, got);
            END IF;
            IF got >= cap THEN
                more := more || q; -- it may have more for a second pass
            ELSIF has_cfg AND cfg.partition_concurrency IS NOT NULL AND (got > 0 OR cardinality(sat) > 0) THEN
                hint := least(coalesce(hint, 100), 100); -- partitions at their limit may hold more
            END IF;
        END LOOP;
        qs := more;
        nq := coalesce(array_length(qs, 1), 0);
    END LOOP;
    IF hint IS NOT NULL THEN
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::integer, NULL::text, NULL::json, NULL::boolean, hint;
    END IF;
END
$$;

-- cairn.await_result: the awaited workflow's result from its status row.
CREATE OR REPLACE FUNCTION cairn.await_result(p_id text, p_step integer, p_target text)
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
    SELECT w.status, CASE WHEN w.status = 'SUCCESS' THEN w.output ELSE w.error END, w.parent_id IS NOT DISTINCT FROM p_id
      INTO st, res, child
      FROM cairn.workflow_status w
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

-- cairn.stop_workflows: status and error in one update.
CREATE OR REPLACE FUNCTION cairn.stop_workflows(ids text[], error json)
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
           SET status = 'CANCELLED', wake_at = NULL, waiting = NULL, updated_at = now(),
               output = NULL, error = stop_workflows.error
         WHERE s.id = ANY (ids) AND s.status IN ('ENQUEUED', 'PENDING')
        RETURNING s.id, s.parent_id, s.executor_id),
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

-- cairn.resume: status and cleared result in one update.
CREATE OR REPLACE FUNCTION cairn.resume(workflow_id text)
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
           available_at = now(), updated_at = now(), output = NULL, error = NULL
     WHERE s.id = resume.workflow_id;
    DELETE FROM cairn.deadlines d WHERE d.workflow_id = resume.workflow_id; -- a resumed workflow starts afresh
    PERFORM cairn.wake();
    RETURN true;
END
$$;

-- cairn.fork: the copy takes its input with it in its status row.
CREATE OR REPLACE FUNCTION cairn.fork(workflow_id text, from_step integer, new_id text DEFAULT NULL, queue text DEFAULT NULL)
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
    INSERT INTO cairn.workflow_status (id, name, status, queue, priority, app_version, forked_from, input)
    VALUES (fid, src.name, 'ENQUEUED', coalesce(fork.queue, src.queue), src.priority, src.app_version, src.id, src.input)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        PERFORM 1 FROM cairn.workflow_status s WHERE s.id = fid AND s.forked_from = fork.workflow_id;
        IF FOUND THEN
            RETURN fid;
        END IF;
        RAISE EXCEPTION 'cairn: a workflow with ID ''%'' exists already', fid USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO cairn.steps (workflow_id, step, name, output, error)
    SELECT fid, k.step, k.name, k.output, k.error FROM cairn.steps k
     WHERE k.workflow_id = fork.workflow_id AND k.step < from_step;
    PERFORM cairn.wake();
    RETURN fid;
END
$$;

-- cairn.dispatch: as in version 4, except that the resume finds its rows by
-- primary key only, for the reason given for cairn.claim above (here the
-- owner index, which holds every suspended workflow, was the risk), and
-- that the look for due sleepers cannot be planned as a table scan.
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
    -- min() is always read from the end of the waking index (an EXISTS was
    -- planned as a sequential scan while the statistics did not yet know
    -- wake_at is nearly always NULL, and then read the whole table).
    IF (SELECT min(x.wake_at) FROM cairn.workflow_status x) <= now() THEN
        PERFORM 1 FROM cairn.executors e WHERE e.id = p_executor AND e.state = 'LIVE' FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY
        WITH c AS (
            UPDATE cairn.workflow_status s
               SET executor_id = p_executor, wake_at = NULL, waiting = NULL, updated_at = now()
             WHERE s.id = ANY (ARRAY(
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
