-- cairn schema version 12: a claim tells a resumed workflow from its row.
--
-- A claim answers, for each workflow it takes, whether it has a recording
-- to load (steps recorded by an earlier run) or starts afresh with the
-- input in hand. Until version 11 it asked cairn.steps for every claimed
-- workflow, one probe of the steps index each (or, when cairn.steps was
-- small, a hashed subplan over all of it). The claim already reads each
-- row it takes, under the row lock: a workflow has steps only if it ran
-- before, and every run starts by setting started_at (the first claim, a
-- direct start, an eager enqueue), or if it was forked from another's
-- checkpoints (forked_from). A resume keeps started_at, so a resumed
-- workflow reports its recording. The flag may now say "resumed" for a
-- workflow that ran before but recorded nothing; that costs it one read of
-- its (empty) recording, never a step run twice.
--
-- Rows of workflows started before version 3 (which added started_at) and
-- still unfinished have steps and no started_at; they get one here.
--
-- The drain's speed did not measurably change (bench/README.md,
-- 2026-12-06, late evening): the probe was a few microseconds of a claimed
-- row's cost, within the machine's noise. The claim no longer depends on
-- how the planner judges cairn.steps, and reads nothing outside the rows
-- it takes.
--
-- cairn.claim keeps its signature and its answers' meaning, so libraries
-- of version 8 and later run against it unchanged: no oldest-library line.

UPDATE cairn.workflow_status s SET started_at = s.created_at
 WHERE s.status IN ('ENQUEUED', 'PENDING') AND s.started_at IS NULL AND s.forked_from IS NULL
   AND EXISTS (SELECT 1 FROM cairn.steps st WHERE st.workflow_id = s.id);

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
                    SELECT k.id, k.partition_key, k.priority, k.available_at, k.ran FROM unnest(p_names) AS n(nm)
                     CROSS JOIN LATERAL (
                        SELECT x.id, x.partition_key, x.priority, x.available_at,
                               x.started_at IS NOT NULL OR x.forked_from IS NOT NULL AS ran
                          FROM cairn.workflow_status x
                         WHERE x.status = 'ENQUEUED' AND x.queue = q AND x.name = n.nm AND x.available_at <= now()
                           AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
                           AND (x.partition_key IS NULL OR x.partition_key <> ALL (sat))
                         ORDER BY x.priority, x.available_at
                         LIMIT greatest(cap * 4, 100) FOR UPDATE SKIP LOCKED) k
                     ORDER BY k.priority, k.available_at
                     LIMIT greatest(cap * 4, 100)),
                run AS (
                    SELECT s.partition_key, count(*) AS n FROM cairn.workflow_status s
                     WHERE s.status = 'PENDING' AND s.queue = q
                       AND s.partition_key IN (SELECT cand.partition_key FROM cand)
                     GROUP BY s.partition_key),
                pick AS (
                    SELECT k.id, k.ran FROM (
                        SELECT cand.*, row_number() OVER (PARTITION BY cand.partition_key
                                                          ORDER BY cand.priority, cand.available_at) AS rn
                          FROM cand) k
                      LEFT JOIN run ON run.partition_key = k.partition_key
                     WHERE k.partition_key IS NULL OR k.rn + coalesce(run.n, 0) <= cfg.partition_concurrency
                     ORDER BY k.priority, k.available_at
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
                       pick.ran, NULL::integer
                  FROM c JOIN pick ON pick.id = c.id;
            ELSE
                RETURN QUERY
                WITH pick AS (
                    SELECT k.id, k.ran FROM unnest(p_names) AS n(nm)
                     CROSS JOIN LATERAL (
                        SELECT x.id, x.priority, x.available_at,
                               x.started_at IS NOT NULL OR x.forked_from IS NOT NULL AS ran
                          FROM cairn.workflow_status x
                         WHERE x.status = 'ENQUEUED' AND x.queue = q AND x.name = n.nm
                           AND x.available_at <= now()
                           AND (p_versions IS NULL OR x.app_version IS NULL OR x.app_version = ANY (p_versions))
                         ORDER BY x.priority, x.available_at
                         LIMIT cap FOR UPDATE SKIP LOCKED) k
                     ORDER BY k.priority, k.available_at
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
                SELECT c.id, c.name, c.attempts, c.status, c.input, pick.ran, NULL::integer
                  FROM c JOIN pick ON pick.id = c.id;
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
