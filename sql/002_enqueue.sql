-- cairn schema version 2: enqueueing from any transaction (SQL, triggers,
-- C on the application's own connection), messages, and wake-ups.
--
-- Everything here is SECURITY INVOKER with a pinned search_path: the
-- functions run with the caller's rights and cannot be redirected by
-- objects in the caller's schemas.

ALTER TABLE cairn.workflow_status
    ADD COLUMN priority     integer     NOT NULL DEFAULT 0,
    ADD COLUMN available_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN dedup_key    text        COLLATE "C";

-- Dispatchers ask "what is the next runnable workflow?". Only ENQUEUED rows
-- are indexed, in the order they are taken (lower priority value first,
-- then oldest), so the index holds just the backlog.
CREATE INDEX workflow_status_queued ON cairn.workflow_status (priority, created_at)
    WHERE status = 'ENQUEUED';

-- At most one live (ENQUEUED or PENDING) workflow per queue and dedup key.
CREATE UNIQUE INDEX workflow_status_dedup ON cairn.workflow_status (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

-- Messages sent to workflows, consumed in order per topic.
CREATE TABLE cairn.messages (
    workflow_id text        COLLATE "C" NOT NULL,
    topic       text        COLLATE "C" NOT NULL,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    message_id  text        COLLATE "C",
    message     json,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, topic, seq)
);
-- Idempotent send: one message per (workflow, message_id).
CREATE UNIQUE INDEX messages_message_id ON cairn.messages (workflow_id, message_id)
    WHERE message_id IS NOT NULL;

-- Wake-up debouncing. A NOTIFY takes a cluster-wide lock at commit that
-- serializes every notifying transaction, so enqueues notify only when a
-- dispatcher has said it is idle: an idle dispatcher sets armed, and the
-- first enqueue to see it clears it (in its own transaction) and notifies.
-- Under load armed stays false and enqueues never notify; dispatchers that
-- are busy keep claiming without being told. Unlogged: after a crash the
-- row is recreated empty and dispatchers re-arm when they next go idle.
CREATE UNLOGGED TABLE cairn.wakeup (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    armed boolean NOT NULL DEFAULT false
);
INSERT INTO cairn.wakeup DEFAULT VALUES;

-- Raises a clear error unless name is 1-200 bytes without control characters.
CREATE FUNCTION cairn.check_name(what text, name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'cairn: % is NULL', what USING ERRCODE = 'null_value_not_allowed';
    ELSIF name = '' THEN
        RAISE EXCEPTION 'cairn: % is empty', what USING ERRCODE = 'invalid_parameter_value';
    ELSIF octet_length(name) > 200 THEN
        RAISE EXCEPTION 'cairn: % is % bytes long; the limit is 200', what, octet_length(name)
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF name ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'cairn: % contains a control character', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Raises unless payload fits the 16 MiB limit the library applies too.
CREATE FUNCTION cairn.check_payload(what text, payload json) RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF payload IS NOT NULL AND octet_length(payload::text) > 16777216 THEN
        RAISE EXCEPTION 'cairn: % is % bytes; the limit is 16777216', what, octet_length(payload::text)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
END
$$;

-- A time-ordered UUID (version 7) as text, like the IDs the library
-- generates. PL/pgSQL rather than SQL: a SQL function with a SET clause is
-- never inlined and re-plans its body on every call, while PL/pgSQL keeps
-- its plan for the session.
CREATE FUNCTION cairn.uuid7() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b bytea := uuid_send(gen_random_uuid());
BEGIN
    b := overlay(b PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                 FROM 1 FOR 6);
    b := set_byte(b, 6, (get_byte(b, 6) & 15) | 112);
    b := set_byte(b, 8, (get_byte(b, 8) & 63) | 128);
    RETURN encode(b, 'hex')::uuid::text;
END
$$;

-- Wakes idle dispatchers; see cairn.wakeup. An enqueue that sees the flag
-- up notifies (at its commit) and lowers the flag, so the enqueues after it
-- see it down and skip the NOTIFY and its commit-time lock. The flag's row
-- is taken with SKIP LOCKED: while one open transaction holds it, other
-- enqueuers go on without waiting, so an application transaction that
-- enqueued and stays open never blocks, or deadlocks with, another one.
-- Those others notify too: if the holder rolls back, their own NOTIFY still
-- wakes the dispatchers. In a REPEATABLE READ or SERIALIZABLE transaction
-- the flag may have been lowered by a transaction that committed after this
-- one's snapshot; taking the row then fails with a serialization failure,
-- which must not fail the application's transaction, and notifying is
-- still right. All of this runs only while the flag is up, that is while a
-- dispatcher is idle: a busy system pays nothing but the flag's read.
CREATE FUNCTION cairn.wake() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (SELECT armed FROM cairn.wakeup) THEN
        BEGIN
            UPDATE cairn.wakeup SET armed = false
             WHERE id IN (SELECT w.id FROM cairn.wakeup w WHERE w.armed FOR UPDATE SKIP LOCKED);
        EXCEPTION WHEN serialization_failure THEN
            NULL;
        END;
        PERFORM pg_notify('cairn_wakeup', '');
    END IF;
END
$$;

-- Enqueue a workflow in the caller's transaction: it exists if and only if
-- that transaction commits. Returns the workflow ID. With an id that
-- already exists, nothing is created and the ID is returned (an error if it
-- belongs to another workflow name). With a dedup_key that a live workflow
-- of the same queue holds, nothing is created and that workflow's ID is
-- returned.
CREATE FUNCTION cairn.enqueue(
    workflow_name text,
    input         json     DEFAULT NULL,
    queue         text     DEFAULT 'default',
    id            text     DEFAULT NULL,
    priority      integer  DEFAULT 0,
    delay         interval DEFAULT NULL,
    dedup_key     text     DEFAULT NULL)
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
    IF priority IS NULL THEN
        RAISE EXCEPTION 'cairn: priority is NULL' USING ERRCODE = 'null_value_not_allowed';
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
                RETURN other;
            END IF;
        END IF;

        INSERT INTO cairn.workflow_status AS s (id, name, status, queue, priority, available_at, dedup_key)
        VALUES (wid, workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'), dedup_key)
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

-- Send a message to a workflow on a topic, in the caller's transaction. With
-- a message_id, a second send of the same ID to the same workflow is a
-- no-op. Returns true if the message was stored, false if it was a repeat.
CREATE FUNCTION cairn.send(
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
    RETURN FOUND;
END
$$;

-- Trigger function: enqueue one workflow per inserted or updated row, with
-- the row as JSON input. Arguments: workflow name, then optionally the
-- queue. Use it as
--   CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW
--     EXECUTE FUNCTION cairn.enqueue_row('process_order', 'orders');
-- Only AFTER triggers are accepted: a BEFORE (or INSTEAD OF) row trigger
-- that returns NULL silently drops the row, which would enqueue work for a
-- row that was never written, and the row a BEFORE trigger sees may still
-- be changed by the triggers after it.
CREATE FUNCTION cairn.enqueue_row() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'cairn.enqueue_row must be an AFTER INSERT or UPDATE trigger FOR EACH ROW, not % % FOR EACH %',
            TG_WHEN, TG_OP, TG_LEVEL
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF TG_NARGS < 1 OR TG_NARGS > 2 THEN
        RAISE EXCEPTION 'cairn.enqueue_row takes a workflow name and optionally a queue, not % arguments', TG_NARGS
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM cairn.enqueue(TG_ARGV[0], row_to_json(NEW),
                          queue => CASE WHEN TG_NARGS = 2 THEN TG_ARGV[1] ELSE 'default' END);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION cairn.enqueue(text, json, text, text, integer, interval, text) IS
    'Enqueue a workflow in the current transaction; returns its ID.';
COMMENT ON FUNCTION cairn.send(text, text, json, text) IS
    'Send a message to a workflow in the current transaction; idempotent per message_id.';
COMMENT ON FUNCTION cairn.enqueue_row() IS
    'Trigger: enqueue a workflow per row with the row as input. Args: workflow name [, queue].';
