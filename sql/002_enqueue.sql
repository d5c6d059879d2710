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

-- A time-ordered UUID (version 7) as text, like the IDs the library generates.
CREATE FUNCTION cairn.uuid7() RETURNS text
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(
        set_byte(set_byte(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            6, (get_byte(uuid_send(gen_random_uuid()), 6) & 15) | 112),
            8, (get_byte(uuid_send(gen_random_uuid()), 8) & 63) | 128),
        'hex')::uuid::text
$$;

-- Wakes idle dispatchers, at most once per idle period; see cairn.wakeup.
CREATE FUNCTION cairn.wake() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (SELECT armed FROM cairn.wakeup) THEN
        UPDATE cairn.wakeup SET armed = false WHERE armed;
        IF FOUND THEN
            PERFORM pg_notify('cairn_wakeup', '');
        END IF;
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
BEGIN
    PERFORM cairn.check_name('workflow name', workflow_name);
    PERFORM cairn.check_name('queue name', queue);
    IF wid IS NULL THEN
        wid := cairn.uuid7();
    ELSE
        PERFORM cairn.check_name('workflow ID', wid);
    END IF;
    IF dedup_key IS NOT NULL THEN
        PERFORM cairn.check_name('dedup key', dedup_key);
    END IF;
    IF priority IS NULL THEN
        RAISE EXCEPTION 'cairn: priority is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF delay < interval '0' THEN
        RAISE EXCEPTION 'cairn: delay is negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM cairn.check_payload('workflow input', input);

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

    IF got IS NULL THEN
        -- The ID exists, or a concurrent transaction took the dedup key.
        SELECT s.name INTO other FROM cairn.workflow_status s WHERE s.id = wid;
        IF FOUND THEN
            IF other <> workflow_name THEN
                RAISE EXCEPTION 'cairn: workflow ID ''%'' already belongs to a ''%'' workflow, not ''%''',
                    wid, other, workflow_name USING ERRCODE = 'unique_violation';
            END IF;
            RETURN wid;
        END IF;
        SELECT s.id INTO other FROM cairn.workflow_status s
         WHERE s.queue = enqueue.queue AND s.dedup_key = enqueue.dedup_key
           AND s.status IN ('ENQUEUED', 'PENDING');
        RETURN other;
    END IF;

    INSERT INTO cairn.workflow_payloads (id, input) VALUES (wid, input);
    PERFORM cairn.wake();
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
CREATE FUNCTION cairn.enqueue_row() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
        RAISE EXCEPTION 'cairn.enqueue_row must be an INSERT or UPDATE trigger FOR EACH ROW'
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
