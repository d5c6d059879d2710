-- cairn schema version 14: a cheaper enqueue (and send) inside the application's
-- transaction.
--
-- cairn.enqueue runs inside application transactions, so every
-- microsecond of server time it spends is taken from the application's
-- own rate (bench/README.md, "2026-12-07, evening"). Measured with
-- bench_enqueue's variants, the parts of the old body that cost most
-- beyond the row itself were:
--
-- * its PL/pgSQL expressions: PL/pgSQL prepares each simple expression
--   (an IF's condition, an assignment) again in every transaction that
--   evaluates it, about 1.8 us each here, and the old body evaluated a
--   dozen on every call (one per argument check). Timed in a loop inside
--   one transaction they look free, which is how they were missed;
-- * INSERT ... ON CONFLICT (a speculative insertion, with its own WAL
--   record) where nothing can conflict, and a second statement to read
--   the wake-up flag;
-- * in the trigger, a nested call of cairn.enqueue, whose SET clause saves
--   and restores the search path a second time.
--
-- So the common case, a workflow without an ID or dedup key given, is now
-- one condition (every argument check at once) and one plain INSERT of a
-- fresh UUIDv7 (it cannot collide: 48 bits of milliseconds and 74 random
-- bits; if it ever did, the primary key would raise unique_violation and
-- nothing would be written), whose RETURNING clause also wakes an idle
-- dispatcher if the flag is up, as the library's own enqueue statements
-- do. An argument that fails the condition is checked again one check at
-- a time, for the precise error; an ID or a dedup key takes the path of
-- version 8: look-ups, ON CONFLICT, and the retry loop. cairn.enqueue_row
-- writes its row itself the same way instead of calling cairn.enqueue.
--
-- Same signatures and behaviour; libraries of any version run against
-- this schema: no oldest-library line.

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
    wid   text;
    other text;
    got   text;
    woke  boolean;
BEGIN
    -- The common case: one condition, one statement (see the top of this
    -- file). The UUIDv7 is the text form of cairn.uuid7(): 48 bits of Unix
    -- milliseconds, version 7, then the random bits and variant of a
    -- version 4 UUID. A NULL anywhere in the condition makes it not TRUE,
    -- and the checks below raise the error.
    IF (id IS NULL AND dedup_key IS NULL
        AND workflow_name <> '' AND octet_length(workflow_name) <= 200 AND workflow_name !~ '[\x01-\x1f\x7f]'
        AND queue <> '' AND octet_length(queue) <= 200 AND queue !~ '[\x01-\x1f\x7f]'
        AND (partition_key IS NULL OR (partition_key <> '' AND octet_length(partition_key) <= 200
                                       AND partition_key !~ '[\x01-\x1f\x7f]'))
        AND (app_version IS NULL OR (app_version <> '' AND octet_length(app_version) <= 200
                                     AND app_version !~ '[\x01-\x1f\x7f]'))
        AND priority IS NOT NULL AND dedup_error IS NOT NULL
        AND (delay IS NULL OR delay >= interval '0')
        AND (input IS NULL OR octet_length(input::text) <= 16777216)) IS TRUE THEN
        INSERT INTO cairn.workflow_status AS s
               (id, name, status, queue, priority, available_at, partition_key, app_version, input)
        VALUES (overlay(lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000)::bigint), 12, '0')
                        PLACING '-' FROM 9 FOR 0)
                || '-7' || substr(gen_random_uuid()::text, 16),
                workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'),
                partition_key, app_version, enqueue.input)
        RETURNING s.id, CASE WHEN (SELECT w.armed FROM cairn.wakeup w) THEN cairn.wake() END IS NOT NULL
        INTO wid, woke;
        RETURN wid;
    END IF;

    -- Everything else: each check on its own, so that an argument that
    -- fails goes to cairn.check_name or cairn.check_payload for the precise
    -- error (each call of a function with a SET clause costs as much as a
    -- statement, so they are not called for arguments that pass).
    wid := id;
    IF workflow_name IS NULL OR workflow_name = '' OR octet_length(workflow_name) > 200
       OR workflow_name ~ '[\x01-\x1f\x7f]' THEN
        PERFORM cairn.check_name('workflow name', workflow_name);
    END IF;
    IF queue IS NULL OR queue = '' OR octet_length(queue) > 200 OR queue ~ '[\x01-\x1f\x7f]' THEN
        PERFORM cairn.check_name('queue name', queue);
    END IF;
    IF wid IS NOT NULL AND (wid = '' OR octet_length(wid) > 200 OR wid ~ '[\x01-\x1f\x7f]') THEN
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

    IF wid IS NULL THEN
        -- The same UUIDv7 (cairn.uuid7() is not among the grants an
        -- application role needs).
        wid := overlay(lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000)::bigint), 12, '0')
                       PLACING '-' FROM 9 FOR 0)
               || '-7' || substr(gen_random_uuid()::text, 16);
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

    IF (SELECT w.armed FROM cairn.wakeup w) THEN
        PERFORM cairn.wake();
    END IF;
    RETURN wid;
END
$$;

-- The trigger writes the row itself, as cairn.enqueue's common path does:
-- one condition, one statement. Its arguments are the trigger's, fixed
-- when the trigger was created, but are still checked on every row, since
-- CREATE TRIGGER does not check them.
CREATE OR REPLACE FUNCTION cairn.enqueue_row() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc  json;
    woke boolean;
BEGIN
    doc := row_to_json(NEW);
    IF (TG_WHEN = 'AFTER' AND TG_LEVEL = 'ROW' AND TG_OP IN ('INSERT', 'UPDATE') AND TG_NARGS BETWEEN 1 AND 2
        AND TG_ARGV[0] <> '' AND octet_length(TG_ARGV[0]) <= 200 AND TG_ARGV[0] !~ '[\x01-\x1f\x7f]'
        AND (TG_NARGS = 1 OR (TG_ARGV[1] <> '' AND octet_length(TG_ARGV[1]) <= 200
                              AND TG_ARGV[1] !~ '[\x01-\x1f\x7f]'))
        AND octet_length(doc::text) <= 16777216) IS NOT TRUE THEN
        IF TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' OR TG_OP NOT IN ('INSERT', 'UPDATE') THEN
            RAISE EXCEPTION 'cairn.enqueue_row must be an AFTER INSERT or UPDATE trigger FOR EACH ROW, not % % FOR EACH %',
                TG_WHEN, TG_OP, TG_LEVEL
                USING ERRCODE = 'feature_not_supported';
        END IF;
        IF TG_NARGS < 1 OR TG_NARGS > 2 THEN
            RAISE EXCEPTION 'cairn.enqueue_row takes a workflow name and optionally a queue, not % arguments', TG_NARGS
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM cairn.check_name('workflow name', TG_ARGV[0]);
        IF TG_NARGS = 2 THEN
            PERFORM cairn.check_name('queue name', TG_ARGV[1]);
        END IF;
        PERFORM cairn.check_payload('workflow input', doc);
    END IF;
    INSERT INTO cairn.workflow_status AS s (id, name, status, queue, input)
    VALUES (overlay(lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000)::bigint), 12, '0')
                    PLACING '-' FROM 9 FOR 0)
            || '-7' || substr(gen_random_uuid()::text, 16),
            TG_ARGV[0], 'ENQUEUED', CASE WHEN TG_NARGS = 2 THEN TG_ARGV[1] ELSE 'default' END, doc)
    RETURNING CASE WHEN (SELECT w.armed FROM cairn.wakeup w) THEN cairn.wake() END IS NOT NULL INTO woke;
    RETURN NULL;
END
$$;

-- cairn.send, as in version 10, with its checks made the same way: one
-- condition for all of them, and the check functions (each a call with a
-- SET clause) only for an argument that fails it; and the wake-up flag
-- read in the statement that records the poke, so that cairn.wake() (a
-- call with a SET clause too) runs only while the flag is up.
CREATE OR REPLACE FUNCTION cairn.send(
    workflow_id text,
    topic       text,
    message     json,
    message_id  text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    woke boolean;
BEGIN
    IF (workflow_id <> '' AND octet_length(workflow_id) <= 200 AND workflow_id !~ '[\x01-\x1f\x7f]'
        AND topic <> '' AND octet_length(topic) <= 200 AND topic !~ '[\x01-\x1f\x7f]'
        AND (message_id IS NULL OR (message_id <> '' AND octet_length(message_id) <= 200
                                    AND message_id !~ '[\x01-\x1f\x7f]'))
        AND (message IS NULL OR octet_length(message::text) <= 16777216)) IS NOT TRUE THEN
        PERFORM cairn.check_name('workflow ID', workflow_id);
        PERFORM cairn.check_name('topic', topic);
        IF message_id IS NOT NULL THEN
            PERFORM cairn.check_name('message ID', message_id);
        END IF;
        PERFORM cairn.check_payload('message', message);
    END IF;
    PERFORM 1 FROM cairn.workflow_status s WHERE s.id = send.workflow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cairn: no workflow has ID ''%''', workflow_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF message_id IS NOT NULL THEN
        INSERT INTO cairn.message_ids (workflow_id, message_id)
        VALUES (send.workflow_id, send.message_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    INSERT INTO cairn.messages (workflow_id, topic, message_id, message)
    VALUES (send.workflow_id, send.topic, send.message_id, send.message);
    INSERT INTO cairn.pokes (workflow_id) VALUES (send.workflow_id)
    RETURNING CASE WHEN (SELECT w.armed FROM cairn.wakeup w) THEN cairn.wake() END IS NOT NULL INTO woke;
    RETURN true;
END
$$;
