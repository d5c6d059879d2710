-- cairn schema version 3: queues with limits, a fleet of executors that
-- heartbeat and adopt the work of the dead, and application versions.
--
-- As in version 2, every function is SECURITY INVOKER with a pinned
-- search_path.

ALTER TABLE cairn.workflow_status
    ADD COLUMN partition_key text        COLLATE "C",
    ADD COLUMN app_version   text        COLLATE "C",
    ADD COLUMN started_at    timestamptz;

-- Dispatchers claim per queue (so that one queue's backlog cannot starve
-- another), in the order the work is taken within a queue: lower priority
-- value first, then oldest. Only ENQUEUED rows are indexed. The same index
-- lists the queues that have work: a loose scan walks it one queue at a
-- time (see cairn.claim).
DROP INDEX cairn.workflow_status_queued;
CREATE INDEX workflow_status_queued ON cairn.workflow_status (queue, priority, created_at)
    WHERE status = 'ENQUEUED';

-- Queue limits count what runs now: "how many PENDING in this queue" and
-- "in this partition of it". Only PENDING rows are indexed, so the counts
-- cost as much as the work in flight, whatever the history.
CREATE INDEX workflow_status_running ON cairn.workflow_status (queue, partition_key)
    WHERE status = 'PENDING';

-- Queue configuration. A NULL limit is no limit; a queue without a row
-- has no limits at all.
CREATE TABLE cairn.queues (
    name                  text        COLLATE "C" PRIMARY KEY
                          CHECK (name <> '' AND octet_length(name) <= 200 AND name !~ '[\x01-\x1f\x7f]'),
    concurrency           integer     CHECK (concurrency > 0),
    worker_concurrency    integer     CHECK (worker_concurrency > 0),
    rate_limit            integer     CHECK (rate_limit > 0),
    rate_period           interval    CHECK (rate_period > interval '0'),
    partition_concurrency integer     CHECK (partition_concurrency > 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

-- The starts of rate-limited queues within their current window, so that
-- a claim can count them; older rows are deleted by the next claim.
CREATE TABLE cairn.queue_starts (
    queue      text        COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX queue_starts_queue ON cairn.queue_starts (queue, started_at);

-- One row per executor ID. instance changes each time a process starts
-- under the ID, so a process can tell that another took its ID over.
-- A LIVE row whose heartbeat_at is older than lease is dead: the first
-- live executor to see it marks it DEAD and returns its workflows to their
-- queues. Rows that are no longer LIVE are deleted after a week.
CREATE TABLE cairn.executors (
    id           text        COLLATE "C" PRIMARY KEY,
    instance     text        COLLATE "C" NOT NULL,
    state        text        COLLATE "C" NOT NULL CHECK (state IN ('LIVE', 'STOPPED', 'DEAD')),
    lease        interval    NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    adopted_by   text        COLLATE "C",
    hostname     text,
    pid          integer,
    app_version  text        COLLATE "C"
);

-- Workflows already owned by an executor when this migration runs get an
-- executor row, so that they are adopted if that executor never returns.
INSERT INTO cairn.executors (id, instance, state, lease)
SELECT DISTINCT executor_id, 'migrated', 'LIVE', interval '15 seconds'
  FROM cairn.workflow_status WHERE status = 'PENDING' AND executor_id IS NOT NULL;

-- Create a queue or replace its whole configuration; NULL means no limit.
CREATE FUNCTION cairn.set_queue(
    name                  text,
    concurrency           integer  DEFAULT NULL,
    worker_concurrency    integer  DEFAULT NULL,
    rate_limit            integer  DEFAULT NULL,
    rate_period           interval DEFAULT NULL,
    partition_concurrency integer  DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM cairn.check_name('queue name', name);
    IF concurrency <= 0 OR worker_concurrency <= 0 OR rate_limit <= 0 OR partition_concurrency <= 0 THEN
        RAISE EXCEPTION 'cairn: queue limits must be positive (NULL for no limit)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (rate_limit IS NULL) <> (rate_period IS NULL) THEN
        RAISE EXCEPTION 'cairn: rate_limit and rate_period go together'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rate_period <= interval '0' THEN
        RAISE EXCEPTION 'cairn: rate_period must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO cairn.queues AS q (name, concurrency, worker_concurrency, rate_limit, rate_period, partition_concurrency)
    VALUES (set_queue.name, set_queue.concurrency, set_queue.worker_concurrency, set_queue.rate_limit,
            set_queue.rate_period, set_queue.partition_concurrency)
    ON CONFLICT ON CONSTRAINT queues_pkey DO UPDATE
       SET concurrency = EXCLUDED.concurrency, worker_concurrency = EXCLUDED.worker_concurrency,
           rate_limit = EXCLUDED.rate_limit, rate_period = EXCLUDED.rate_period,
           partition_concurrency = EXCLUDED.partition_concurrency, updated_at = now();
END
$$;

-- Remove a queue's configuration; returns whether it had one.
CREATE FUNCTION cairn.delete_queue(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM cairn.queues q WHERE q.name = delete_queue.name;
    RETURN FOUND;
END
$$;

-- Version 3 of cairn.enqueue: adds partition_key, dedup_error and
-- app_version to version 2's arguments.
DROP FUNCTION cairn.enqueue(text, json, text, text, integer, interval, text);

-- Enqueue a workflow in the caller's transaction: it exists if and only if
-- that transaction commits. Returns the workflow ID. With an id that
-- already exists, nothing is created and the ID is returned (an error if it
-- belongs to another workflow name). With a dedup_key that a live workflow
-- of the same queue holds, nothing is created and that workflow's ID is
-- returned, or, with dedup_error, a unique_violation is raised.
CREATE FUNCTION cairn.enqueue(
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
               (id, name, status, queue, priority, available_at, dedup_key, partition_key, app_version)
        VALUES (wid, workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'),
                dedup_key, partition_key, app_version)
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

    INSERT INTO cairn.workflow_payloads (id, input) VALUES (wid, input);
    -- cairn.wake() reads the flag first; the call is needed only while it is up.
    IF (SELECT w.armed FROM cairn.wakeup w) THEN
        PERFORM cairn.wake();
    END IF;
    RETURN wid;
END
$$;

COMMENT ON FUNCTION cairn.enqueue(text, json, text, text, integer, interval, text, text, boolean, text) IS
    'Enqueue a workflow in the current transaction; returns its ID.';

-- Claim up to want ENQUEUED workflows for executor p_executor: only names
-- in p_names, only queues in p_queues (NULL: all), only versions in
-- p_versions (NULL: all; a workflow without a version is always taken and
-- records p_app_version). Returns the claimed workflows with their input
-- and whether anything was recorded for them (nothing at all unless
-- p_executor is LIVE in cairn.executors); a workflow claimed more than
-- p_max_attempts times is moved to DEAD_LETTER instead (status tells). A
-- last row with a NULL id, when present, carries retry_ms: work is waiting
-- behind a limit, look again within that many milliseconds.
--
-- Fairness: the queues with work are found by a loose scan of the queued
-- index and served round-robin from a random first queue, each getting an
-- equal share of want per pass; a second pass gives what is left to the
-- queues that filled their share.
--
-- Limits: worker_concurrency is counted among this executor's own running
-- workflows (only this executor's dispatcher adds to them). concurrency,
-- rate_limit and partition_concurrency are fleet-wide, so the claim takes
-- the queue's row in cairn.queues FOR UPDATE SKIP LOCKED first: claims of
-- one limited queue are serialized, and each counts, after taking the
-- lock, what the claims before it committed (a VOLATILE PL/pgSQL function
-- takes a new snapshot for each statement). An executor that finds the
-- row taken skips the queue and is told to retry soon. Rate-limited starts
-- are stamped with clock_timestamp() taken under the lock, so their order
-- is the order of the claims and no window of rate_period holds more than
-- rate_limit of them.
CREATE FUNCTION cairn.claim(
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
                           app_version = coalesce(s.app_version, p_app_version)
                     WHERE s.status = 'ENQUEUED' AND s.id IN (SELECT pick.id FROM pick)
                    RETURNING s.id, s.name, s.attempts, s.status),
                dead AS (
                    UPDATE cairn.workflow_payloads p
                       SET error = json_build_object('message', format(
                           'workflow was interrupted %s times (its executor died during each run); moved to DEAD_LETTER',
                           c.attempts - 1), 'attempts', c.attempts - 1)
                      FROM c WHERE p.id = c.id AND c.status = 'DEAD_LETTER')
                SELECT c.id, c.name, c.attempts, c.status,
                       (SELECT p.input FROM cairn.workflow_payloads p WHERE p.id = c.id),
                       EXISTS (SELECT 1 FROM cairn.steps st WHERE st.workflow_id = c.id), NULL::integer
                  FROM c;
            ELSE
                RETURN QUERY
                WITH c AS (
                    UPDATE cairn.workflow_status s
                       SET status = CASE WHEN s.attempts + 1 > p_max_attempts THEN 'DEAD_LETTER' ELSE 'PENDING' END,
                           executor_id = p_executor, attempts = s.attempts + 1, updated_at = now(),
                           started_at = coalesce(s.started_at, t),
                           app_version = coalesce(s.app_version, p_app_version)
                     WHERE s.status = 'ENQUEUED' AND s.id = ANY (ARRAY(
                        SELECT x.id FROM cairn.workflow_status x
                         WHERE x.status = 'ENQUEUED' AND x.queue = q AND x.available_at <= now()
                           AND x.name = ANY (p_names)
                           AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
                         ORDER BY x.priority, x.created_at
                         LIMIT cap FOR UPDATE SKIP LOCKED))
                    RETURNING s.id, s.name, s.attempts, s.status),
                dead AS (
                    UPDATE cairn.workflow_payloads p
                       SET error = json_build_object('message', format(
                           'workflow was interrupted %s times (its executor died during each run); moved to DEAD_LETTER',
                           c.attempts - 1), 'attempts', c.attempts - 1)
                      FROM c WHERE p.id = c.id AND c.status = 'DEAD_LETTER')
                SELECT c.id, c.name, c.attempts, c.status,
                       (SELECT p.input FROM cairn.workflow_payloads p WHERE p.id = c.id),
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

-- An executor's heartbeat, and the adoption of the work of dead executors.
-- Returns this executor's standing: 'LIVE' (the heartbeat was recorded),
-- 'TAKEN' (another process now runs under this ID), 'DEAD' (this executor
-- was presumed dead and its workflows were handed back), 'STOPPED' or
-- 'MISSING'; and how many workflows of dead executors this call returned
-- to their queues. Only a LIVE executor adopts. Dead rows are taken with
-- SKIP LOCKED, so that of several executors seeing one dead at once, one
-- adopts and the others do not wait; an executor waking up late and
-- heartbeating at the same moment either commits first (and is not dead)
-- or finds itself DEAD.
CREATE FUNCTION cairn.heartbeat(p_executor text, p_instance text)
RETURNS TABLE (standing text, adopted integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    st   text;
    inst text;
    n    integer := 0;
BEGIN
    UPDATE cairn.executors e SET heartbeat_at = now()
     WHERE e.id = p_executor AND e.instance = p_instance AND e.state = 'LIVE';
    IF NOT FOUND THEN
        SELECT e.state, e.instance INTO st, inst FROM cairn.executors e WHERE e.id = p_executor;
        IF NOT FOUND THEN
            standing := 'MISSING';
        ELSIF inst <> p_instance THEN
            standing := 'TAKEN';
        ELSE
            standing := st;
        END IF;
        adopted := 0;
        RETURN NEXT;
        RETURN;
    END IF;

    WITH dead AS (
        SELECT e.id FROM cairn.executors e
         WHERE e.state = 'LIVE' AND e.heartbeat_at < now() - e.lease AND e.id <> p_executor
         FOR UPDATE SKIP LOCKED),
    mark AS (
        UPDATE cairn.executors e SET state = 'DEAD', stopped_at = now(), adopted_by = p_executor
          FROM dead WHERE e.id = dead.id
        RETURNING e.id),
    back AS (
        UPDATE cairn.workflow_status s SET status = 'ENQUEUED', executor_id = NULL, updated_at = now()
         WHERE s.status = 'PENDING' AND s.executor_id IN (SELECT mark.id FROM mark)
        RETURNING 1)
    SELECT count(*) INTO n FROM back;

    DELETE FROM cairn.executors e WHERE e.state <> 'LIVE' AND e.stopped_at < now() - interval '7 days';
    standing := 'LIVE';
    adopted := n;
    RETURN NEXT;
END
$$;

COMMENT ON TABLE cairn.queues IS 'Queue limits shared by every executor; a queue without a row has none.';
COMMENT ON TABLE cairn.executors IS 'Executors, their heartbeats and leases; LIVE rows past their lease are adopted.';
COMMENT ON FUNCTION cairn.set_queue(text, integer, integer, integer, interval, integer) IS
    'Create a queue or replace its configuration; NULL limits mean no limit.';
