-- cairn schema version 6: cron schedules stored in the database.
--
-- A schedule starts workflow runs at the ticks of a cron expression read in
-- a time zone. Every live executor's dispatcher calls cairn.cron_fire();
-- whichever locks a due schedule first enqueues its runs, with IDs made
-- from the schedule's name and the tick ("nightly@2024-05-01T03:00:00Z"),
-- so one tick is one run across the whole fleet however many executors
-- race for it, and a repeated fire finds the run already there.
--
-- As in the earlier versions, every function is SECURITY INVOKER with a
-- pinned search_path.

-- A parsed cron expression: one bit per allowed value of each field (bit
-- n set: value n matches), so that testing a candidate time is a shift and
-- a mask. weekdays has bits 0-6 (Sunday is 0; a 7 in the expression is
-- folded into 0). days_star and weekdays_star record that the field was
-- written starting with '*', which decides how the two day fields combine
-- (see cairn.cron_wall_next).
CREATE TYPE cairn.cron_spec AS (
    seconds       bigint,
    minutes       bigint,
    hours         bigint,
    days          bigint,
    months        bigint,
    weekdays      bigint,
    days_star     boolean,
    weekdays_star boolean
);

-- One row per schedule. next_tick is the earliest tick not yet fired (NULL
-- while paused); it is due once the database clock passes it. last_tick
-- is the latest tick a run was enqueued for. The expression is kept as
-- written (cron) and parsed (spec); the functions below keep the two in
-- step, so change schedules through them rather than by UPDATE.
CREATE TABLE cairn.schedules (
    name       text        COLLATE "C" PRIMARY KEY
               CHECK (name <> '' AND octet_length(name) <= 179 AND name !~ '[\x01-\x1f\x7f]'),
    workflow   text        COLLATE "C" NOT NULL
               CHECK (workflow <> '' AND octet_length(workflow) <= 200 AND workflow !~ '[\x01-\x1f\x7f]'),
    cron       text        NOT NULL,
    spec       cairn.cron_spec NOT NULL,
    timezone   text        NOT NULL,
    input      json,
    queue      text        COLLATE "C" NOT NULL DEFAULT 'default'
               CHECK (queue <> '' AND octet_length(queue) <= 200 AND queue !~ '[\x01-\x1f\x7f]'),
    backfill   boolean     NOT NULL DEFAULT false,
    paused     boolean     NOT NULL DEFAULT false,
    last_tick  timestamptz,
    next_tick  timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT paused OR next_tick IS NULL)
);

-- Every dispatcher asks, every few seconds, "is a tick due, and when is the
-- next one?". Only running schedules are indexed, by their next tick, so
-- both questions are one index probe however many schedules there are.
CREATE INDEX schedules_due ON cairn.schedules (next_tick) WHERE NOT paused;

-- Parse a cron expression: 5 fields "minute hour day-of-month month
-- day-of-week" or 6 with a leading "second", or one of the macros @yearly,
-- @annually, @monthly, @weekly, @daily, @midnight, @hourly. A field is a
-- comma-separated list of '*', a value, a range a-b, or either of those
-- followed by /step; months and weekdays may be named by their first three
-- letters (jan, mon), and a range may end at sun to mean 7. Raises
-- invalid_parameter_value naming the field and what is wrong with it. The
-- C library's parser (src/cron.c) accepts exactly the same expressions
-- with the same messages, so that cairn_schedule_set() can refuse a bad
-- one before it reaches the database.
CREATE FUNCTION cairn.parse_cron(cron text) RETURNS cairn.cron_spec
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fname  text[]    := ARRAY['second', 'minute', 'hour', 'day-of-month', 'month', 'day-of-week'];
    lo     integer[] := ARRAY[0, 0, 0, 1, 1, 0];
    hi     integer[] := ARRAY[59, 59, 23, 31, 12, 7];
    mdays  integer[] := ARRAY[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    mnames text[]    := ARRAY['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
    dnames text[]    := ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
    src    text;
    f      text[];
    m      bigint[]  := ARRAY[0, 0, 0, 0, 0, 0];
    el     text;
    base   text;
    toks   text[];
    val    integer[];
    stp    integer;
    tok    text;
    bad    text;
    spec   cairn.cron_spec;
BEGIN
    IF cron IS NULL THEN
        RAISE EXCEPTION 'cairn: cron expression is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF octet_length(cron) > 1000 THEN
        RAISE EXCEPTION 'cairn: cron expression is % bytes long; the limit is 1000', octet_length(cron)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    src := btrim(cron, E' \t');
    IF left(src, 1) = '@' THEN
        src := CASE lower(src)
                   WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
                   WHEN '@monthly' THEN '0 0 1 * *' WHEN '@weekly' THEN '0 0 * * 0'
                   WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
                   WHEN '@hourly' THEN '0 * * * *' END;
        IF src IS NULL THEN
            RAISE EXCEPTION 'cairn: cron expression "%": unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)',
                btrim(cron, E' \t') USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    f := CASE WHEN src = '' THEN '{}'::text[] ELSE regexp_split_to_array(src, E'[ \t]+') END;
    IF cardinality(f) = 5 THEN
        f := '0'::text || f;
    ELSIF cardinality(f) <> 6 THEN
        RAISE EXCEPTION 'cairn: cron expression "%" has % fields; it needs 5 (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week)',
            src, cardinality(f) USING ERRCODE = 'invalid_parameter_value';
    END IF;

    FOR i IN 1..6 LOOP
        FOREACH el IN ARRAY string_to_array(f[i], ',') LOOP
            bad := NULL;
            stp := 1;
            base := el;
            IF el = '' THEN
                bad := 'empty list element';
            ELSIF strpos(el, '/') > 0 THEN
                base := split_part(el, '/', 1);
                tok := substr(el, strpos(el, '/') + 1);
                IF tok !~ '^[0-9]+$' THEN
                    bad := format('bad step "%s"', tok);
                ELSIF length(tok) > 4 OR tok::integer < 1 OR tok::integer > hi[i] - lo[i] + 1 THEN
                    bad := format('step "%s" is out of range 1-%s', tok, hi[i] - lo[i] + 1);
                ELSE
                    stp := tok::integer;
                    IF base <> '*' AND strpos(base, '-') = 0 THEN
                        bad := format('"%s": a step needs a range or * before it', el);
                    END IF;
                END IF;
            END IF;
            IF bad IS NULL THEN
                IF base = '*' THEN
                    val := ARRAY[lo[i], hi[i]];
                ELSE
                    toks := string_to_array(base, '-');
                    IF cardinality(toks) > 2 OR '' = ANY (toks) THEN
                        bad := format('"%s" is not a value or a range', base);
                    END IF;
                    val := '{}';
                    FOR k IN 1..cardinality(toks) LOOP
                        EXIT WHEN bad IS NOT NULL;
                        tok := toks[k];
                        IF tok ~ '^[0-9]+$' THEN
                            IF length(tok) > 4 OR tok::integer < lo[i] OR tok::integer > hi[i] THEN
                                bad := format('"%s" is out of range %s-%s', tok, lo[i], hi[i]);
                            ELSE
                                val := val || tok::integer;
                            END IF;
                        ELSIF i = 5 AND lower(tok) = ANY (mnames) THEN
                            val := val || array_position(mnames, lower(tok));
                        ELSIF i = 6 AND lower(tok) = ANY (dnames) THEN
                            -- "fri-sun": a range that ends at Sunday ends at 7.
                            val := val || CASE WHEN k = 2 AND lower(tok) = 'sun' THEN 7
                                               ELSE array_position(dnames, lower(tok)) - 1 END;
                        ELSIF i IN (5, 6) AND tok ~ '^[A-Za-z]+$' THEN
                            bad := format('unknown name "%s"', tok);
                        ELSE
                            bad := format('"%s" is not a number', tok);
                        END IF;
                    END LOOP;
                    IF bad IS NULL AND cardinality(val) = 1 THEN
                        val := val || val[1];
                    END IF;
                    IF bad IS NULL AND val[1] > val[2] THEN
                        bad := format('range "%s" runs backwards', base);
                    END IF;
                END IF;
            END IF;
            IF bad IS NOT NULL THEN
                RAISE EXCEPTION 'cairn: cron % field "%": %', fname[i], f[i], bad
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            FOR v IN val[1]..val[2] BY stp LOOP
                m[i] := m[i] | (1::bigint << v);
            END LOOP;
        END LOOP;
    END LOOP;
    IF m[6] & 128 <> 0 THEN
        m[6] := (m[6] & 127) | 1;
    END IF;

    spec := ROW(m[1], m[2], m[3], m[4], m[5], m[6], left(f[4], 1) = '*', left(f[6], 1) = '*');
    -- With a restricted day-of-month and an unrestricted day-of-week, only
    -- the day-of-month decides: some chosen month must have a chosen day.
    IF NOT spec.days_star AND spec.weekdays_star
       AND NOT EXISTS (SELECT 1 FROM generate_series(1, 12) mo, generate_series(1, 31) d
                        WHERE (m[5] >> mo) & 1 = 1 AND (m[4] >> d) & 1 = 1 AND d <= mdays[mo]) THEN
        RAISE EXCEPTION 'cairn: cron expression "%" never matches: no chosen month has any of the chosen days of the month',
            src USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN spec;
END
$$;

-- The first wall-clock time after l (a timestamp without time zone) whose
-- fields match spec, in whole seconds, or NULL if there is none within 100
-- years. It moves to the next month, day, hour, minute or second that can
-- match as soon as a field does not, so a search costs a few steps per
-- field, not one per second. Day-of-month and day-of-week combine as in
-- Vixie cron: when both are restricted (neither written starting with
-- '*'), a day matches if either does; otherwise both must.
CREATE FUNCTION cairn.cron_wall_next(spec cairn.cron_spec, l timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c      timestamp := date_trunc('second', l) + interval '1 second';
    stop   timestamp := l + interval '100 years';
    v      integer;
    dom_ok boolean;
    dow_ok boolean;
BEGIN
    LOOP
        IF c > stop THEN
            RETURN NULL;
        END IF;
        IF (spec.months >> extract(month FROM c)::integer) & 1 = 0 THEN
            c := date_trunc('month', c) + interval '1 month';
            CONTINUE;
        END IF;
        dom_ok := (spec.days >> extract(day FROM c)::integer) & 1 = 1;
        dow_ok := (spec.weekdays >> extract(dow FROM c)::integer) & 1 = 1;
        IF NOT (CASE WHEN spec.days_star OR spec.weekdays_star THEN dom_ok AND dow_ok ELSE dom_ok OR dow_ok END) THEN
            c := date_trunc('day', c) + interval '1 day';
            CONTINUE;
        END IF;
        v := extract(hour FROM c)::integer;
        IF (spec.hours >> v) & 1 = 0 THEN
            LOOP
                v := v + 1;
                EXIT WHEN v > 23 OR (spec.hours >> v) & 1 = 1;
            END LOOP;
            c := CASE WHEN v > 23 THEN date_trunc('day', c) + interval '1 day'
                      ELSE date_trunc('day', c) + make_interval(hours => v) END;
            CONTINUE;
        END IF;
        v := extract(minute FROM c)::integer;
        IF (spec.minutes >> v) & 1 = 0 THEN
            LOOP
                v := v + 1;
                EXIT WHEN v > 59 OR (spec.minutes >> v) & 1 = 1;
            END LOOP;
            c := CASE WHEN v > 59 THEN date_trunc('hour', c) + interval '1 hour'
                      ELSE date_trunc('hour', c) + make_interval(mins => v) END;
            CONTINUE;
        END IF;
        v := floor(extract(second FROM c))::integer;
        IF (spec.seconds >> v) & 1 = 0 THEN
            LOOP
                v := v + 1;
                EXIT WHEN v > 59 OR (spec.seconds >> v) & 1 = 1;
            END LOOP;
            c := CASE WHEN v > 59 THEN date_trunc('minute', c) + interval '1 minute'
                      ELSE date_trunc('minute', c) + make_interval(secs => v) END;
            CONTINUE;
        END IF;
        RETURN c;
    END LOOP;
END
$$;

-- The last wall-clock time before l whose fields match spec, or NULL if
-- there is none within 100 years: cairn.cron_wall_next run backwards.
CREATE FUNCTION cairn.cron_wall_prev(spec cairn.cron_spec, l timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c      timestamp := date_trunc('second', l - interval '1 microsecond');
    stop   timestamp := l - interval '100 years';
    v      integer;
    dom_ok boolean;
    dow_ok boolean;
BEGIN
    LOOP
        IF c < stop THEN
            RETURN NULL;
        END IF;
        IF (spec.months >> extract(month FROM c)::integer) & 1 = 0 THEN
            c := date_trunc('month', c) - interval '1 second';
            CONTINUE;
        END IF;
        dom_ok := (spec.days >> extract(day FROM c)::integer) & 1 = 1;
        dow_ok := (spec.weekdays >> extract(dow FROM c)::integer) & 1 = 1;
        IF NOT (CASE WHEN spec.days_star OR spec.weekdays_star THEN dom_ok AND dow_ok ELSE dom_ok OR dow_ok END) THEN
            c := date_trunc('day', c) - interval '1 second';
            CONTINUE;
        END IF;
        v := extract(hour FROM c)::integer;
        IF (spec.hours >> v) & 1 = 0 THEN
            LOOP
                v := v - 1;
                EXIT WHEN v < 0 OR (spec.hours >> v) & 1 = 1;
            END LOOP;
            c := CASE WHEN v < 0 THEN date_trunc('day', c) - interval '1 second'
                      ELSE date_trunc('day', c) + make_interval(hours => v + 1) - interval '1 second' END;
            CONTINUE;
        END IF;
        v := extract(minute FROM c)::integer;
        IF (spec.minutes >> v) & 1 = 0 THEN
            LOOP
                v := v - 1;
                EXIT WHEN v < 0 OR (spec.minutes >> v) & 1 = 1;
            END LOOP;
            c := CASE WHEN v < 0 THEN date_trunc('hour', c) - interval '1 second'
                      ELSE date_trunc('hour', c) + make_interval(mins => v + 1) - interval '1 second' END;
            CONTINUE;
        END IF;
        v := floor(extract(second FROM c))::integer;
        IF (spec.seconds >> v) & 1 = 0 THEN
            LOOP
                v := v - 1;
                EXIT WHEN v < 0 OR (spec.seconds >> v) & 1 = 1;
            END LOOP;
            c := CASE WHEN v < 0 THEN date_trunc('minute', c) - interval '1 second'
                      ELSE date_trunc('minute', c) + make_interval(secs => v) END;
            CONTINUE;
        END IF;
        RETURN c;
    END LOOP;
END
$$;

-- The instant at which wall-clock time l happens in zone tz. Postgres'
-- own reading (l AT TIME ZONE tz) is kept except in a fall-back overlap,
-- where l happens twice and Postgres takes the second time: there the
-- first is taken, found by reading l with the offset in force a day
-- earlier. In a spring-forward gap l does not happen at all, and Postgres
-- reads it with the offset in force before the gap, which puts it as far
-- after the gap's start as l is (02:30 in a gap from 02:00 to 03:00 is
-- 03:30).
CREATE FUNCTION cairn.cron_instant(l timestamp, tz text) RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t1 timestamptz := l AT TIME ZONE tz;
    b  timestamptz := t1 - interval '1 day';
    te timestamptz := (l - ((b AT TIME ZONE tz) - (b AT TIME ZONE 'UTC'))) AT TIME ZONE 'UTC';
BEGIN
    IF te < t1 AND te AT TIME ZONE tz = l THEN
        RETURN te;
    END IF;
    RETURN t1;
END
$$;

-- The first tick of spec in zone tz after instant t, or NULL if there is
-- none within 100 years. Ticks are wall-clock times in tz, each at the
-- instant cairn.cron_instant gives it, so that a wall time fires once
-- whatever daylight saving time does. When t is in the second pass of a
-- fall-back overlap, the wall times whose first pass is over are skipped.
CREATE FUNCTION cairn.cron_next_tick(spec cairn.cron_spec, tz text, t timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l    timestamp := t AT TIME ZONE tz;
    tick timestamptz;
BEGIN
    -- An overlap lasts at most a few hours: a few thousand wall times of a
    -- schedule that ticks every second.
    FOR i IN 1..100000 LOOP
        l := cairn.cron_wall_next(spec, l);
        IF l IS NULL THEN
            RETURN NULL;
        END IF;
        tick := cairn.cron_instant(l, tz);
        IF tick > t THEN
            RETURN tick;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- A tick as it appears in run IDs and inputs: UTC, ISO 8601, whole seconds.
CREATE FUNCTION cairn.cron_tick_text(tick timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_char(tick AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;

-- Create schedule `name` or replace its definition; returns its next tick
-- (NULL while paused). paused: true pauses, false resumes, NULL creates it
-- running or leaves an existing schedule as it is, so that an application
-- that sets its schedules each time it starts does not undo an operator's
-- pause. The next tick is kept when the expression and the zone are
-- unchanged (a restart that sets the same schedule loses no tick and no
-- backfill) and otherwise counted from now, like a new or resumed
-- schedule's: ticks before that are not fired.
CREATE FUNCTION cairn.set_schedule(
    name          text,
    workflow_name text,
    cron          text,
    timezone      text    DEFAULT 'UTC',
    input         json    DEFAULT NULL,
    queue         text    DEFAULT 'default',
    backfill      boolean DEFAULT false,
    paused        boolean DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    spec  cairn.cron_spec;
    tz    text := coalesce(timezone, 'UTC');
    canon text;
    nt    timestamptz;
    res   timestamptz;
BEGIN
    PERFORM cairn.check_name('schedule name', name);
    IF octet_length(name) > 179 THEN
        RAISE EXCEPTION 'cairn: schedule name is % bytes long; the limit is 179 (its runs'' IDs add "@" and the tick)',
            octet_length(name) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM cairn.check_name('workflow name', workflow_name);
    PERFORM cairn.check_name('queue name', queue);
    IF backfill IS NULL THEN
        RAISE EXCEPTION 'cairn: backfill is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    spec := cairn.parse_cron(cron);
    -- Zone names only (not abbreviations or POSIX offsets, which ignore
    -- daylight saving time), spelled as the time zone database spells them.
    IF tz = 'UTC' THEN
        canon := tz;
    ELSE
        SELECT z.name INTO canon FROM pg_timezone_names z WHERE lower(z.name) = lower(tz) ORDER BY z.name = tz DESC LIMIT 1;
        IF canon IS NULL THEN
            RAISE EXCEPTION 'cairn: unknown time zone "%" (use a name from pg_timezone_names, e.g. "Europe/Paris")', tz
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    -- Each run's input wraps this one; it must fit the payload limit too.
    PERFORM cairn.check_payload('schedule input',
        json_build_object('schedule', name, 'tick', '2000-01-01T00:00:00Z', 'input', input));
    nt := cairn.cron_next_tick(spec, canon, now());

    INSERT INTO cairn.schedules AS s (name, workflow, cron, spec, timezone, input, queue, backfill, paused, next_tick)
    VALUES (name, workflow_name, btrim(cron, E' \t'), spec, canon, input, queue, backfill, coalesce(paused, false),
            CASE WHEN coalesce(paused, false) THEN NULL ELSE nt END)
    ON CONFLICT ON CONSTRAINT schedules_pkey DO UPDATE
       SET workflow = EXCLUDED.workflow, cron = EXCLUDED.cron, spec = EXCLUDED.spec, timezone = EXCLUDED.timezone,
           input = EXCLUDED.input, queue = EXCLUDED.queue, backfill = EXCLUDED.backfill,
           paused = coalesce(paused, s.paused),
           next_tick = CASE WHEN coalesce(paused, s.paused) THEN NULL
                            WHEN s.paused OR s.next_tick IS NULL OR s.spec IS DISTINCT FROM EXCLUDED.spec
                                 OR s.timezone <> EXCLUDED.timezone THEN nt
                            ELSE s.next_tick END,
           last_error = NULL, updated_at = now()
    RETURNING s.next_tick INTO res;
    RETURN res;
END
$$;

-- Pause a schedule (no tick fires until it is resumed); returns whether it exists.
CREATE FUNCTION cairn.pause_schedule(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE cairn.schedules s SET paused = true, next_tick = NULL, updated_at = now()
     WHERE s.name = pause_schedule.name;
    RETURN FOUND;
END
$$;

-- Resume a schedule; returns whether it exists. The ticks that passed
-- while it was paused are not fired, with or without backfill: its next
-- tick is the first one after now. Resuming a running schedule changes
-- nothing.
CREATE FUNCTION cairn.resume_schedule(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE cairn.schedules s
       SET paused = false, next_tick = cairn.cron_next_tick(s.spec, s.timezone, now()), updated_at = now()
     WHERE s.name = resume_schedule.name AND s.paused;
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM 1 FROM cairn.schedules s WHERE s.name = resume_schedule.name;
    RETURN FOUND;
END
$$;

-- Delete a schedule; returns whether it existed. Runs already enqueued stay.
CREATE FUNCTION cairn.delete_schedule(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM cairn.schedules s WHERE s.name = delete_schedule.name;
    RETURN FOUND;
END
$$;

-- Fire every due tick of every running schedule, once across the fleet.
-- Called by every live dispatcher whenever its last answer said a tick is
-- due, and at least every few seconds; p_now (default: the clock now) and
-- p_grace are there for tests.
--
-- Due schedules (next_tick <= now) are locked FOR UPDATE SKIP LOCKED, so
-- concurrent callers share them out and never wait for each other. For
-- each, the ticks to fire are enqueued through cairn.enqueue with the ID
-- "<name>@<tick>" (so a tick that was fired before, by anyone, is found and
-- not started again) and next_tick moves past now, all in this one
-- transaction: the runs exist if and only if the schedule moved on.
--
-- Which due ticks fire: a tick counts as on time if it is fired within
-- p_grace (a minute) of its time; a later one was missed, because no
-- executor was live to fire it. Without backfill, missed ticks are skipped
-- and only the on-time ones fire. With backfill, every due tick fires
-- since the last one fired, or the 1000 latest of them when more were
-- missed.
--
-- Returns a row per schedule it fired (schedule, fired: runs enqueued,
-- error: why its ticks were skipped instead, when its runs could not be
-- enqueued), then a last row whose next_ms says when to call again: the
-- milliseconds until the next tick of any running schedule (NULL: there is
-- none), or soon when other callers hold due schedules.
CREATE FUNCTION cairn.cron_fire(p_now timestamptz DEFAULT NULL, p_grace interval DEFAULT interval '1 minute')
RETURNS TABLE (schedule text, fired integer, error text, next_ms bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    t      timestamptz := coalesce(p_now, clock_timestamp());
    s      record;
    ticks  timestamptz[];
    tick   timestamptz;
    lower_ timestamptz;
    l      timestamp;
    lprev  timestamp;
    txt    text;
    err    text;
    st     text;
    nt     timestamptz;
    n      integer := 0;
BEGIN
    FOR s IN SELECT c.name, c.workflow, c.spec, c.timezone, c.input, c.queue, c.backfill, c.next_tick
               FROM cairn.schedules c
              WHERE NOT c.paused AND c.next_tick <= t
              ORDER BY c.next_tick
              LIMIT 100
                FOR UPDATE SKIP LOCKED LOOP
        n := n + 1;
        -- The ticks to fire: from next_tick on with backfill, else those
        -- still on time; in both cases at most the 1000 latest.
        lower_ := CASE WHEN s.backfill THEN s.next_tick ELSE greatest(s.next_tick, t - p_grace) END;
        FOR pass IN 1..2 LOOP
            tick := CASE WHEN s.next_tick >= lower_ THEN s.next_tick
                         ELSE cairn.cron_next_tick(s.spec, s.timezone, lower_ - interval '1 microsecond') END;
            ticks := '{}';
            WHILE tick IS NOT NULL AND tick <= t LOOP
                IF cardinality(ticks) = 1000 THEN
                    EXIT WHEN pass = 1;
                    ticks := ticks[2:];
                END IF;
                ticks := ticks || tick;
                tick := cairn.cron_next_tick(s.spec, s.timezone, tick);
            END LOOP;
            EXIT WHEN tick IS NULL OR tick > t;
            -- More than 1000 are due (a long outage): walk back 1000 ticks
            -- from now in wall-clock time and count from there. Daylight
            -- saving time can make that a few more or less than 1000; the
            -- second pass keeps the latest 1000.
            l := date_trunc('second', t AT TIME ZONE s.timezone) + interval '1 second';
            FOR k IN 1..1000 LOOP
                lprev := cairn.cron_wall_prev(s.spec, l);
                EXIT WHEN lprev IS NULL;
                l := lprev;
            END LOOP;
            lower_ := greatest(lower_, cairn.cron_instant(l, s.timezone));
        END LOOP;
        nt := tick;

        err := NULL;
        BEGIN
            FOREACH tick IN ARRAY ticks LOOP
                txt := to_char(tick AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
                PERFORM cairn.enqueue(s.workflow, json_build_object('schedule', s.name, 'tick', txt, 'input', s.input),
                                      queue => s.queue, id => s.name || '@' || txt);
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, err = MESSAGE_TEXT;
            -- Trouble that a later call may not meet (conflicts, resources,
            -- cancellation, a lost connection) fails the whole call, to be
            -- retried with everything still due. Anything else is this
            -- schedule's own fault: its due ticks are skipped and the error
            -- kept, so that it does not stop the other schedules.
            IF left(st, 2) IN ('40', '53', '55', '57', '58', '08', 'XX') THEN
                RAISE;
            END IF;
        END;
        UPDATE cairn.schedules c
           SET next_tick = nt,
               last_tick = CASE WHEN err IS NULL AND cardinality(ticks) > 0 THEN ticks[cardinality(ticks)]
                                ELSE c.last_tick END,
               last_error = CASE WHEN err IS NULL THEN NULL
                                 ELSE format('%s: %s', cairn.cron_tick_text(ticks[1]), err) END
         WHERE c.name = s.name;
        schedule := s.name;
        fired := CASE WHEN err IS NULL THEN cardinality(ticks) ELSE 0 END;
        error := err;
        next_ms := NULL;
        RETURN NEXT;
    END LOOP;

    schedule := NULL;
    fired := NULL;
    error := NULL;
    IF n >= 100 THEN
        next_ms := 0; -- more may be due
    ELSIF EXISTS (SELECT 1 FROM cairn.schedules c WHERE NOT c.paused AND c.next_tick <= t) THEN
        next_ms := 200; -- another caller is firing them; look again when it should be done
    ELSE
        SELECT min(c.next_tick) INTO nt FROM cairn.schedules c WHERE NOT c.paused AND c.next_tick > t;
        next_ms := CASE WHEN nt IS NOT NULL
                        THEN greatest(0, ceil(extract(epoch FROM nt - coalesce(p_now, clock_timestamp())) * 1000))::bigint
                   END;
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON TABLE cairn.schedules IS
    'Cron schedules: each tick of a running schedule enqueues one run, with ID <name>@<tick>, across the fleet.';
COMMENT ON FUNCTION cairn.set_schedule(text, text, text, text, json, text, boolean, boolean) IS
    'Create a cron schedule or replace its definition; returns its next tick.';
COMMENT ON FUNCTION cairn.cron_fire(timestamptz, interval) IS
    'Enqueue the runs of every due tick of every running schedule, exactly once across the fleet.';
