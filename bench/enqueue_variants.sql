-- Other ways cairn.enqueue could be written, for bench_enqueue --variant.
-- They live in their own schema, cairn_bench_variants (this file drops and
-- recreates it; drop it when done), write the same row as cairn.enqueue
-- (schema version 8) and behave the same on the common path: a new
-- workflow without dedup key. Anything unusual (a taken ID, a dedup key,
-- a bad argument) is handed to cairn.enqueue itself, so errors keep their
-- messages. bench/README.md shows how to run them and what they measured.
--
--   uuid_inline   cairn.enqueue unchanged, except that it calls a UUIDv7
--                 function without a SET clause, whose body qualifies every
--                 function and operator, so the planner inlines it.
--   flat          one PL/pgSQL function with one SET search_path: the name
--                 and payload checks, the UUIDv7 and the read of the wake-up
--                 flag inline, no nested calls on the common path (the flag
--                 down; an armed flag calls cairn.wake()).
--   flat_noset    flat without the SET clause: every name it uses is
--                 schema-qualified instead.
--   lean          flat with the common path in one statement: the UUIDv7,
--                 the row and the read of the wake-up flag in one
--                 data-modifying query.
--   lean_plain    lean with a plain INSERT instead of INSERT ... ON CONFLICT
--                 DO NOTHING on the common path.
--   trigger       not a variant of the function: the application's INSERT
--                 into a table whose AFTER INSERT trigger is the library's own
--                 cairn.enqueue_row, so the transaction has A's three
--                 statements and the enqueue costs no round trip.

DROP SCHEMA IF EXISTS cairn_bench_variants CASCADE;
CREATE SCHEMA cairn_bench_variants;

CREATE FUNCTION cairn_bench_variants.uuid7() RETURNS text
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_catalog.encode(
        pg_catalog.set_byte(pg_catalog.set_byte(
            pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
                pg_catalog.substr(pg_catalog.int8send(
                    (EXTRACT(epoch FROM pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8), 3),
                1, 6),
            6, (pg_catalog.get_byte(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 6)
                OPERATOR(pg_catalog.&) 15) OPERATOR(pg_catalog.|) 112),
            8, (pg_catalog.get_byte(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 8)
                OPERATOR(pg_catalog.&) 63) OPERATOR(pg_catalog.|) 128),
        'hex')::pg_catalog.uuid::pg_catalog.text
$$;

-- cairn.enqueue as in sql/002_enqueue.sql, calling the inlinable uuid7().
CREATE FUNCTION cairn_bench_variants.enqueue_uuid_inline(
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
    wid text := id;
    got text;
BEGIN
    IF dedup_key IS NOT NULL OR id IS NOT NULL THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    PERFORM cairn.check_name('workflow name', workflow_name);
    PERFORM cairn.check_name('queue name', queue);
    wid := cairn_bench_variants.uuid7();
    IF priority IS NULL THEN
        RAISE EXCEPTION 'cairn: priority is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF delay < interval '0' THEN
        RAISE EXCEPTION 'cairn: delay is negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM cairn.check_payload('workflow input', input);
    INSERT INTO cairn.workflow_status AS s (id, name, status, queue, priority, available_at, dedup_key, input)
    VALUES (wid, workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'), dedup_key, input)
    ON CONFLICT DO NOTHING
    RETURNING s.id INTO got;
    IF got IS NULL THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    PERFORM cairn.wake();
    RETURN wid;
END
$$;

-- One function, one SET, nothing nested on the common path.
CREATE FUNCTION cairn_bench_variants.enqueue_flat(
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
    wid text;
    got text;
    b   bytea;
BEGIN
    -- The checks of cairn.check_name and cairn.check_payload, inline; a
    -- failing argument goes to cairn.enqueue for its error message.
    IF dedup_key IS NOT NULL OR id IS NOT NULL OR priority IS NULL OR delay < interval '0'
       OR workflow_name IS NULL OR workflow_name = '' OR octet_length(workflow_name) > 200
       OR workflow_name ~ '[\x01-\x1f\x7f]'
       OR queue IS NULL OR queue = '' OR octet_length(queue) > 200 OR queue ~ '[\x01-\x1f\x7f]'
       OR octet_length(input::text) > 16777216 THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    -- A UUIDv7: 48 bits of Unix milliseconds over a random (version 4) UUID, version set to 7.
    b := overlay(uuid_send(gen_random_uuid())
                 PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                 FROM 1 FOR 6);
    wid := encode(set_byte(b, 6, (get_byte(b, 6) & 15) | 112), 'hex')::uuid::text;

    INSERT INTO cairn.workflow_status AS s (id, name, status, queue, priority, available_at, input)
    VALUES (wid, workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'), input)
    ON CONFLICT DO NOTHING
    RETURNING s.id INTO got;
    IF got IS NULL THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    -- cairn.wake() reads the flag first; only an armed flag needs the call.
    IF (SELECT armed FROM cairn.wakeup) THEN
        PERFORM cairn.wake();
    END IF;
    RETURN wid;
END
$$;

-- flat without SET search_path: every function, operator and type qualified.
CREATE FUNCTION cairn_bench_variants.enqueue_flat_noset(
    workflow_name text,
    input         json     DEFAULT NULL,
    queue         text     DEFAULT 'default',
    id            text     DEFAULT NULL,
    priority      integer  DEFAULT 0,
    delay         interval DEFAULT NULL,
    dedup_key     text     DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
DECLARE
    wid pg_catalog.text;
    got pg_catalog.text;
    b   pg_catalog.bytea;
BEGIN
    IF dedup_key IS NOT NULL OR id IS NOT NULL OR priority IS NULL
       OR delay OPERATOR(pg_catalog.<) '0'::pg_catalog.interval
       OR workflow_name IS NULL OR workflow_name OPERATOR(pg_catalog.=) ''
       OR pg_catalog.octet_length(workflow_name) OPERATOR(pg_catalog.>) 200
       OR workflow_name OPERATOR(pg_catalog.~) '[\x01-\x1f\x7f]'
       OR queue IS NULL OR queue OPERATOR(pg_catalog.=) ''
       OR pg_catalog.octet_length(queue) OPERATOR(pg_catalog.>) 200
       OR queue OPERATOR(pg_catalog.~) '[\x01-\x1f\x7f]'
       OR pg_catalog.octet_length(input::pg_catalog.text) OPERATOR(pg_catalog.>) 16777216 THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    b := pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
             pg_catalog.substr(pg_catalog.int8send(
                 (EXTRACT(epoch FROM pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8), 3),
             1, 6);
    wid := pg_catalog.encode(pg_catalog.set_byte(b, 6,
               (pg_catalog.get_byte(b, 6) OPERATOR(pg_catalog.&) 15) OPERATOR(pg_catalog.|) 112),
               'hex')::pg_catalog.uuid::pg_catalog.text;

    INSERT INTO cairn.workflow_status AS s (id, name, status, queue, priority, available_at, input)
    VALUES (wid, workflow_name, 'ENQUEUED', queue, priority,
            pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE(delay, '0'::pg_catalog.interval), input)
    ON CONFLICT DO NOTHING
    RETURNING s.id INTO got;
    IF got IS NULL THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    IF (SELECT w.armed FROM cairn.wakeup w) THEN
        PERFORM cairn.wake();
    END IF;
    RETURN wid;
END
$$;

-- flat with the common path in one statement: both rows and the wake-up
-- flag in one data-modifying query, so one plan and one executor start.
CREATE FUNCTION cairn_bench_variants.enqueue_lean(
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
    got   text;
    armed boolean;
BEGIN
    IF dedup_key IS NOT NULL OR id IS NOT NULL OR priority IS NULL OR delay < interval '0'
       OR workflow_name IS NULL OR workflow_name = '' OR octet_length(workflow_name) > 200
       OR workflow_name ~ '[\x01-\x1f\x7f]'
       OR queue IS NULL OR queue = '' OR octet_length(queue) > 200 OR queue ~ '[\x01-\x1f\x7f]'
       OR octet_length(input::text) > 16777216 THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    WITH v AS (
        SELECT encode(set_byte(b, 6, (get_byte(b, 6) & 15) | 112), 'hex')::uuid::text AS wid
          FROM (SELECT overlay(uuid_send(gen_random_uuid())
                               PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                               FROM 1 FOR 6) AS b) r),
    s AS (
        INSERT INTO cairn.workflow_status AS s (id, name, status, queue, priority, available_at, input)
        SELECT v.wid, workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'), input FROM v
        ON CONFLICT DO NOTHING
        RETURNING s.id)
    SELECT s.id, w.armed INTO got, armed FROM s LEFT JOIN cairn.wakeup w ON true;
    IF got IS NULL THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    IF armed THEN
        PERFORM cairn.wake();
    END IF;
    RETURN got;
END
$$;

-- lean with a plain INSERT: a generated UUIDv7 cannot collide in practice
-- and there is no dedup key on this path, so ON CONFLICT (a speculative
-- insertion: an index probe first, one more WAL record after) is not needed.
CREATE FUNCTION cairn_bench_variants.enqueue_lean_plain(
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
    got   text;
    armed boolean;
BEGIN
    IF dedup_key IS NOT NULL OR id IS NOT NULL OR priority IS NULL OR delay < interval '0'
       OR workflow_name IS NULL OR workflow_name = '' OR octet_length(workflow_name) > 200
       OR workflow_name ~ '[\x01-\x1f\x7f]'
       OR queue IS NULL OR queue = '' OR octet_length(queue) > 200 OR queue ~ '[\x01-\x1f\x7f]'
       OR octet_length(input::text) > 16777216 THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    WITH v AS (
        SELECT encode(set_byte(b, 6, (get_byte(b, 6) & 15) | 112), 'hex')::uuid::text AS wid
          FROM (SELECT overlay(uuid_send(gen_random_uuid())
                               PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                               FROM 1 FOR 6) AS b) r),
    s AS (
        INSERT INTO cairn.workflow_status AS s (id, name, status, queue, priority, available_at, input)
        SELECT v.wid, workflow_name, 'ENQUEUED', queue, priority, now() + coalesce(delay, interval '0'), input FROM v
        RETURNING s.id)
    SELECT s.id, w.armed INTO got, armed FROM s LEFT JOIN cairn.wakeup w ON true;
    IF got IS NULL THEN
        RETURN cairn.enqueue(workflow_name, input, queue, id, priority, delay, dedup_key);
    END IF;
    IF armed THEN
        PERFORM cairn.wake();
    END IF;
    RETURN got;
END
$$;

CREATE TABLE cairn_bench_variants.app_trig (id bigserial PRIMARY KEY, v int);
CREATE TRIGGER enqueue AFTER INSERT ON cairn_bench_variants.app_trig
    FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('bench_noop');
