-- cairn schema version 5: events (a workflow's latest key/value
-- announcements) and streams (ordered values a workflow appends while it
-- runs).
--
-- Both are written by the library inside the transaction of the workflow
-- step that publishes them (cairn_set_event, cairn_stream_write,
-- cairn_stream_close), together with that step's checkpoint, so a value is
-- written exactly once however often the workflow is replayed. Readers
-- (cairn_get_event, cairn_stream_read, or plain SQL) only read these tables;
-- a reader waiting for a value polls (see docs/architecture.md for why not
-- NOTIFY). Like the payloads, these rows carry no foreign key to
-- cairn.workflow_status: the check would cost a lookup and a share lock on
-- the hot status row at every write. They belong to their workflow and are
-- to be deleted with it.

-- One row per (workflow, key): the latest value. Publishing replaces the
-- value in place; the table never holds history. A frequently updated key
-- (progress) rewrites one row, and since no indexed column changes, the
-- update can be heap-only when the page has room, hence the fillfactor.
CREATE TABLE cairn.events (
    workflow_id text        COLLATE "C" NOT NULL,
    key         text        COLLATE "C" NOT NULL,
    value       json        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, key)
) WITH (fillfactor = 80);

-- One row per (workflow, stream) that was written or closed: how many
-- values it holds and whether it is closed. An append takes this row's lock
-- (INSERT ... ON CONFLICT DO UPDATE), which assigns the next offset and
-- serializes concurrent appenders to one stream (a paused "zombie"
-- execution and its replacement, or step code appending while its
-- workflow's earlier write is being committed) until commit, so offsets
-- are gapless and become visible in order. A rolled-back append rolls the
-- counter back with it. The update touches no indexed column, so it can be
-- heap-only; the fillfactor leaves room for that.
CREATE TABLE cairn.streams (
    workflow_id text        COLLATE "C" NOT NULL,
    name        text        COLLATE "C" NOT NULL,
    next_offset bigint      NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    closed_at   timestamptz,
    PRIMARY KEY (workflow_id, name)
) WITH (fillfactor = 70);

-- The values, insert-only. The primary key is the only index: a read "from
-- offset N" is a range scan of it, and it would refuse a second value at an
-- offset if the counter above were ever bypassed.
CREATE TABLE cairn.stream_values (
    workflow_id text        COLLATE "C" NOT NULL,
    stream      text        COLLATE "C" NOT NULL,
    "offset"    bigint      NOT NULL CHECK ("offset" >= 0),
    value       json        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, stream, "offset")
);

COMMENT ON TABLE cairn.events IS 'The latest value of each event key a workflow published (cairn_set_event).';
COMMENT ON TABLE cairn.streams IS 'Each stream a workflow wrote or closed: its length (next_offset) and when it was closed.';
COMMENT ON TABLE cairn.stream_values IS 'The values of workflow streams, by offset from 0 (cairn_stream_write).';
