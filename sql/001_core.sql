-- cairn schema version 1: workflows and their step checkpoints.
--
-- The hot row of a workflow (cairn.workflow_status) holds only small
-- columns so that the few updates in a workflow's life rewrite a short
-- tuple; its payloads live in cairn.workflow_payloads, written once at
-- start and once at finish. Checkpoints (cairn.steps) are insert-only.
-- Users read cairn.workflows, a view that joins the two.
--
-- Keys and names use the "C" collation: byte order is all cairn needs, and
-- it keeps B-tree comparisons cheap whatever the database's locale is.

CREATE TABLE cairn.workflow_status (
    id          text        COLLATE "C" PRIMARY KEY,
    name        text        COLLATE "C" NOT NULL,
    status      text        COLLATE "C" NOT NULL
                CHECK (status IN ('ENQUEUED', 'PENDING', 'SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER')),
    queue       text        COLLATE "C" NOT NULL DEFAULT 'default',
    executor_id text        COLLATE "C",
    attempts    integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 85);

-- Recovery asks "which unfinished workflows does executor X own?". Only
-- PENDING rows are indexed, so finished workflows (almost all rows on a
-- busy system) cost this index nothing.
CREATE INDEX workflow_status_owner ON cairn.workflow_status (executor_id) WHERE status = 'PENDING';

CREATE TABLE cairn.workflow_payloads (
    id     text COLLATE "C" PRIMARY KEY,
    input  json,
    output json,
    error  json
) WITH (fillfactor = 85);

CREATE TABLE cairn.steps (
    workflow_id text        COLLATE "C" NOT NULL,
    step        integer     NOT NULL CHECK (step > 0),
    name        text        COLLATE "C" NOT NULL,
    output      json,
    error       json,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, step)
);

CREATE VIEW cairn.workflows AS
SELECT s.id, s.name, s.status, s.queue, p.input, p.output, p.error,
       s.executor_id, s.attempts, s.created_at, s.updated_at
  FROM cairn.workflow_status s
  LEFT JOIN cairn.workflow_payloads p ON p.id = s.id;

COMMENT ON VIEW cairn.workflows IS 'One row per workflow: identity, status, payloads and timestamps. Safe to query and join with application tables.';
COMMENT ON TABLE cairn.steps IS 'One checkpoint per completed step (output or recorded error), keyed by workflow and position.';
