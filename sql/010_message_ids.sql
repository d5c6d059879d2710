-- cairn schema version 10: a message ID is remembered after its message
-- is consumed.
--
-- Until version 9 an idempotent send (cairn.send with message_id) was
-- refused as a repeat by a unique index on cairn.messages. But a receive
-- deletes the message it consumes, and with it the index entry: a repeat
-- sent after the workflow had read the first copy was stored again and
-- read a second time. A sender that retries after a lost connection, as
-- cairn_send_message() tells it to, is exactly the sender that can be
-- late. The IDs now live in their own table, which receives never touch,
-- for as long as the workflow exists.
--
-- Message IDs of messages already consumed before this migration are not
-- known any more; the IDs of messages still waiting are carried over.

CREATE TABLE cairn.message_ids (
    workflow_id text COLLATE "C" NOT NULL,
    message_id  text COLLATE "C" NOT NULL,
    PRIMARY KEY (workflow_id, message_id)
);

INSERT INTO cairn.message_ids (workflow_id, message_id)
SELECT workflow_id, message_id FROM cairn.messages WHERE message_id IS NOT NULL
ON CONFLICT DO NOTHING;

-- The table above is now the one place a repeat is detected.
DROP INDEX cairn.messages_message_id;

-- As in version 4, except that the message ID is claimed in
-- cairn.message_ids first: a concurrent send of the same ID waits there
-- for this transaction and then stores nothing if it commits.
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
    INSERT INTO cairn.pokes (workflow_id) VALUES (send.workflow_id);
    PERFORM cairn.wake();
    RETURN true;
END
$$;

COMMENT ON TABLE cairn.message_ids IS
    'Message IDs of idempotent sends, kept after the message is consumed.';
