-- cairn schema version 13: SQL steps.
--
-- A SQL step (cairn_register_sql_step) is one statement of the
-- application's, run with its checkpoint as a single statement:
--
--   WITH r AS (<the step's statement>)
--   INSERT INTO cairn.steps (...) SELECT ..., <its rows as JSON> FROM r
--
-- so that the step's writes and its checkpoint commit together in one
-- round trip, with no transaction block. The step's output is its rows,
-- and the library's payload limit applies to it like to any step's. The
-- statement checks the size itself, since nothing of the result reaches
-- the library before the commit, and calls this function only when the
-- output is too big, to abort the statement (and with it the step's
-- writes) with a clear error.
--
-- Nothing else changes, so libraries of any version run against this
-- schema: no oldest-library line.

CREATE OR REPLACE FUNCTION cairn.output_too_big(what text, bytes bigint, max_bytes bigint) RETURNS json
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'cairn: % is % bytes; the limit is %', what, bytes, max_bytes
        USING ERRCODE = 'program_limit_exceeded';
END
$$;

COMMENT ON FUNCTION cairn.output_too_big(text, bigint, bigint) IS
    'Raises program_limit_exceeded: a SQL step''s statement calls it when its output exceeds the library''s payload limit.';
