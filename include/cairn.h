/*
 * cairn: durable workflows whose state lives in the application's own
 * PostgreSQL database.
 *
 * A workflow is an ordinary C function made of steps. Each completed step
 * leaves a checkpoint row in Postgres; after a crash the workflow runs again
 * from the top and every step that already has a checkpoint returns its
 * recorded result instead of running again.
 *
 * Conventions used throughout this header:
 *   - Functions return an int: CAIRN_OK (0) on success, a negative CAIRN_E*
 *     code on failure. cairn_strerror() names a code; cairn_errmsg() gives
 *     the detailed message of the last failure on a handle.
 *   - Payloads (inputs, outputs, errors) are UTF-8 JSON text.
 *   - Every pointer the library returns through an out-parameter is owned by
 *     the caller and is released with cairn_free(), unless the declaration
 *     says "borrowed".
 *
 * Thread safety: a cairn handle may be used by any number of threads at
 * once, except that cairn_close() must not race any other call on the same
 * handle. A cairn_ctx or cairn_step_ctx belongs to the thread running the
 * workflow or step it was passed to and must not be used elsewhere or after
 * that function returns.
 */
#ifndef CAIRN_H
#define CAIRN_H

#include <stddef.h>

#include <libpq-fe.h> /* PGconn and PGresult, for transactional steps and enqueue */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CAIRN_API __attribute__((visibility("default")))
#define CAIRN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CAIRN_API
#define CAIRN_PRINTF(f, a)
#endif

#define CAIRN_VERSION_MAJOR 0
#define CAIRN_VERSION_MINOR 1
#define CAIRN_VERSION_PATCH 0
#define CAIRN_VERSION_STRING "0.1.0"

/* Result codes. */
enum {
    CAIRN_OK = 0,
    CAIRN_EINVAL = -1,     /* an argument is malformed (NULL, empty, too long, control characters) */
    CAIRN_EJSON = -2,      /* a payload is not valid UTF-8 JSON text */
    CAIRN_ETOOBIG = -3,    /* a payload is larger than the handle's max_payload */
    CAIRN_ENOTFOUND = -4,  /* no such workflow (unregistered name or unknown ID) */
    CAIRN_ECONFLICT = -5,  /* the ID already names a workflow of another name */
    CAIRN_EDB = -6,        /* the database refused a statement; see cairn_sqlstate() */
    CAIRN_ECONN = -7,      /* the database could not be reached in time */
    CAIRN_ETIMEDOUT = -8,  /* the wait ended before the workflow did */
    CAIRN_ESTEP = -9,      /* a step failed after all its attempts; the failure is recorded */
    CAIRN_ENONDET = -10,   /* replay diverged from the recorded steps */
    CAIRN_ESHUTDOWN = -11, /* the handle is closing; the workflow will resume later */
    CAIRN_ENOMEM = -12,    /* out of memory */
    CAIRN_EMISUSE = -13,   /* the call is not allowed in the handle's current state */
    CAIRN_ESCHEMA = -14,   /* the database schema cannot be used by this library */
    CAIRN_EFAIL = -15,     /* generic failure reported by workflow or step code */
    CAIRN_ESUSPENDED = -16, /* the workflow waits without a thread: return from the workflow function at once;
                               it resumes by replay when the wait ends */
    CAIRN_ECANCELLED = -17  /* the workflow was cancelled: return from the workflow function at once */
};

/* Workflow status, as stored in cairn.workflows.status. */
typedef enum cairn_status {
    CAIRN_STATUS_UNKNOWN = 0,
    CAIRN_STATUS_ENQUEUED,    /* waiting in a queue for an executor */
    CAIRN_STATUS_PENDING,     /* owned by an executor: running or to be resumed */
    CAIRN_STATUS_SUCCESS,     /* finished; output recorded */
    CAIRN_STATUS_ERROR,       /* finished with an error; error recorded */
    CAIRN_STATUS_CANCELLED,   /* stopped by a cancel request */
    CAIRN_STATUS_DEAD_LETTER  /* crashed its executor too many times; left for an operator */
} cairn_status;

typedef struct cairn cairn;                 /* a connection to one database plus its executors */
typedef struct cairn_ctx cairn_ctx;         /* the running workflow, passed to workflow code */
typedef struct cairn_step_ctx cairn_step_ctx; /* the running step, passed to step code */

/*
 * Log levels and the logger callback. The message is borrowed for the
 * duration of the call. The callback may be called from any thread.
 */
enum { CAIRN_LOG_DEBUG = 0, CAIRN_LOG_INFO = 1, CAIRN_LOG_WARN = 2, CAIRN_LOG_ERROR = 3 };
typedef void (*cairn_log_fn)(void *udata, int level, const char *message);

/* Flags for cairn_options.flags. */
#define CAIRN_NO_MIGRATE 0x1u  /* do not apply migrations in cairn_open(); fail if the schema is missing */
#define CAIRN_NO_EAGER 0x2u    /* queued starts always wait in the queue for a claim (no eager start, see
                                  cairn_start_options.queue) */

/*
 * Options for cairn_open(). Zero-initialise, set size to sizeof(cairn_options),
 * then set what you need; every zero field takes its default. New fields are
 * only ever appended, so old callers keep working.
 */
typedef struct cairn_options {
    size_t size;               /* sizeof(cairn_options) */
    const char *conninfo;      /* libpq conninfo or URL; NULL: $CAIRN_DATABASE_URL, else libpq's PG* environment */
    const char *executor_id;   /* this process's identity; NULL: $CAIRN_EXECUTOR_ID, else "local" */
    int workers;               /* executor threads; 0: 16 */
    int commit_connections;    /* connections that write checkpoints, each commit shared by many workflows; 0: 2 */
    int pool_connections;      /* connections for reads, recovery and API calls; 0: 4 */
    int max_attempts;          /* executions of one workflow cut short by crashes before it is dead-lettered
                                  (interruptions by cairn_close() do not count); 0: 20 */
    size_t max_payload;        /* largest accepted payload in bytes; 0: 16 MiB */
    int connect_timeout_ms;    /* how long API calls wait for an unreachable database; 0: 10000 */
    unsigned flags;            /* CAIRN_NO_MIGRATE, CAIRN_NO_EAGER */
    cairn_log_fn log;          /* NULL: warnings and errors to stderr */
    void *log_udata;           /* passed to log */
    int log_level;             /* lowest level passed to log; 0 means CAIRN_LOG_DEBUG only if log is set, else WARN */
    int poll_interval_ms;      /* how often an idle dispatcher looks for enqueued work without a wake-up; 0: 1000 */
    int lease_ms;              /* an executor whose heartbeat is older than this is presumed dead, and live
                                  executors adopt its workflows; heartbeats go out every lease_ms / 5; 0: 15000 */
    const char *app_version;   /* this code's version, recorded on the workflows it starts or first claims; NULL: none */
    const char *const *accept_versions; /* NULL-terminated list of the versions this handle runs (see
                                           cairn_start_workers()); NULL: any. Copied by cairn_open(). */
    const char *const *queues; /* NULL-terminated list of the queues this handle claims from; NULL: every queue.
                                  Copied by cairn_open(). */
    int suspend_after_ms;      /* a wait (cairn_sleep(), cairn_recv(), ...) with more than this left releases its
                                  thread: the workflow is suspended and resumed by replay, on any executor that
                                  can run it, when the wait ends; shorter waits keep the thread; 0: 1000;
                                  negative: suspend every wait that cannot end at once */
} cairn_options;

/*
 * Retry policy for a step. Attempt n (n >= 2) starts after
 * min(base_ms * factor^(n-2), cap_ms) milliseconds.
 */
typedef struct cairn_retry {
    int max_attempts;  /* total attempts including the first; 0 or 1: no retries */
    int base_ms;       /* delay before the second attempt; 0: 100 */
    double factor;     /* growth per attempt; 0: 2.0 */
    int cap_ms;        /* largest delay; 0: 30000 */
} cairn_retry;

/*
 * Workflow code. input is borrowed JSON text. On success set *output to a
 * malloc'd JSON text (or leave it NULL for JSON null) and return CAIRN_OK;
 * the library takes ownership of *output. Any other return value records the
 * workflow as ERROR; call cairn_fail() first to give it a message.
 */
typedef int (*cairn_workflow_fn)(cairn_ctx *ctx, const char *input, char **output, void *udata);

/*
 * Step code, with the same contract as workflow code: input is borrowed,
 * *output is a malloc'd JSON text the library takes over. A non-zero return
 * fails this attempt (call cairn_step_fail() to give a message); the step is
 * retried according to its policy and its final failure is recorded.
 */
typedef int (*cairn_step_fn)(cairn_step_ctx *step, const char *input, char **output, void *udata);

/*
 * Transactional step code. conn is a connection to the workflow database
 * with a transaction already open (at the step's isolation level); run the
 * step's SQL on it and do not COMMIT or ROLLBACK. When the function
 * returns CAIRN_OK the library writes the step's checkpoint in the same
 * transaction and commits both, or neither. conn is borrowed: valid only
 * during the call; do not keep it or change session state (SET, LISTEN,
 * PREPARE) on it. Report a failed statement with cairn_step_fail_pg() so a
 * serialization failure or deadlock is retried automatically.
 */
typedef int (*cairn_tx_step_fn)(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata);

/* Isolation level of a transactional step's transaction. */
typedef enum cairn_isolation {
    CAIRN_READ_COMMITTED = 0, /* the default, as in Postgres */
    CAIRN_REPEATABLE_READ,
    CAIRN_SERIALIZABLE
} cairn_isolation;

/* Options for cairn_register_tx_step(); zero-initialise and set size. */
typedef struct cairn_tx_options {
    size_t size;               /* sizeof(cairn_tx_options) */
    cairn_isolation isolation; /* default CAIRN_READ_COMMITTED */
    cairn_retry retry;         /* attempts for failures other than conflicts; zero: no retries */
    int max_conflict_retries;  /* retries after serialization failures and deadlocks; 0: 20 */
} cairn_tx_options;

/* Static text naming a result code. Never NULL. */
CAIRN_API const char *cairn_strerror(int code);

/* Static text naming a status ("SUCCESS", ...). Never NULL. */
CAIRN_API const char *cairn_status_name(cairn_status status);

/* The library version, e.g. "0.1.0". Static text. */
CAIRN_API const char *cairn_version(void);

/* Release anything the library returned to the caller. NULL is a no-op. */
CAIRN_API void cairn_free(void *p);

/*
 * Connect to the database, apply migrations unless CAIRN_NO_MIGRATE, and
 * return a handle in *out. opts may be NULL for all defaults. On failure
 * *out still receives a handle (or NULL when out of memory) whose
 * cairn_errmsg() explains why; close it with cairn_close().
 */
CAIRN_API int cairn_open(cairn **out, const cairn_options *opts);

/*
 * Stop the executors (running workflows are abandoned at their next step and
 * resumed by the next process with this executor ID), close every
 * connection and free the handle. NULL is a no-op.
 */
CAIRN_API void cairn_close(cairn *h);

/* The detailed message of the last failure on this thread's last call. Borrowed: valid until the next call on h. */
CAIRN_API const char *cairn_errmsg(const cairn *h);

/* The SQLSTATE of the last database failure, or "" when there was none. Borrowed, like cairn_errmsg(). */
CAIRN_API const char *cairn_sqlstate(const cairn *h);

/* This handle's executor ID. Borrowed: valid until cairn_close(). */
CAIRN_API const char *cairn_executor_id(const cairn *h);

/*
 * Apply any migrations the database lacks. Safe to run from many processes
 * at once (they serialize on an advisory lock). *version, when not NULL,
 * receives the schema version afterwards.
 */
CAIRN_API int cairn_migrate(cairn *h, int *version);

/* The newest schema version this library knows. */
CAIRN_API int cairn_schema_latest(void);

/*
 * Register workflow code under a name (at most 200 bytes, printable UTF-8).
 * Must happen before cairn_start_workers(). name is copied; udata is
 * borrowed for the handle's lifetime.
 */
CAIRN_API int cairn_register_workflow(cairn *h, const char *name, cairn_workflow_fn fn, void *udata);

/*
 * Register step code under a name. retry may be NULL (no retries); it is
 * copied. Must happen before cairn_start_workers().
 */
CAIRN_API int cairn_register_step(cairn *h, const char *name, cairn_step_fn fn, void *udata,
                                  const cairn_retry *retry);

/*
 * Register transactional step code under a name; cairn_step() calls it like
 * any step. opts may be NULL for the defaults; it is copied. Must happen
 * before cairn_start_workers().
 */
CAIRN_API int cairn_register_tx_step(cairn *h, const char *name, cairn_tx_step_fn fn, void *udata,
                                     const cairn_tx_options *opts);

/*
 * Register a SQL step: one statement of yours that commits with the step's
 * checkpoint, exactly once, like a transactional step, but sent together
 * with the checkpoint as a single statement in one round trip (a
 * transactional step callback costs three). cairn_step() calls it like any
 * step. The statement receives the step's input as its only parameter, $1,
 * of type json (a statement that refers to $2 or more fails). Its output
 * is its rows as a JSON array of objects, one per row, keyed by column
 * name: a SELECT, VALUES, or INSERT / UPDATE / DELETE ... RETURNING. A
 * data-modifying statement without RETURNING is run too, and its output is
 * null. For example:
 *
 *     cairn_register_sql_step(h, "debit",
 *         "UPDATE accounts SET balance = balance - ($1->>'amount')::bigint"
 *         " WHERE id = ($1->>'account')::bigint AND balance >= ($1->>'amount')::bigint"
 *         " RETURNING balance", NULL);
 *
 * One statement only (a trailing semicolon is ignored); it runs inside a
 * WITH clause, so utility statements (SET, LOCK, CREATE ...) and a WITH of
 * its own that writes are refused. A step that writes several tables can
 * call a function that does: "SELECT * FROM app.ship($1)".
 * A statement that fails fails the attempt, with its SQLSTATE in the
 * step's error message; serialization failures and deadlocks are retried
 * as for transactional steps. The statement is prepared once per
 * connection. opts as for cairn_register_tx_step(): at READ COMMITTED (the
 * default) the statement runs on its own, as an implicit transaction;
 * otherwise inside BEGIN ISOLATION LEVEL ... and COMMIT, still in one
 * round trip. sql is copied (at most 1 MiB). Must happen before
 * cairn_start_workers().
 */
CAIRN_API int cairn_register_sql_step(cairn *h, const char *name, const char *sql, const cairn_tx_options *opts);

/*
 * Start the executor threads, register this executor in cairn.executors
 * (taking the ID over from any earlier process that used it), resume the
 * unfinished workflows this executor ID owned, and start claiming enqueued
 * workflows. Registration is closed afterwards.
 *
 * What a handle claims: ENQUEUED workflows whose name it has registered, in
 * the queues it serves (cairn_options.queues), whose recorded version it
 * accepts: a workflow with no recorded version is accepted by every handle
 * and records the claiming handle's app_version; one with a version is
 * accepted when accept_versions is NULL or lists that version. A workflow
 * that no live handle can run stays ENQUEUED, visibly, until one can.
 *
 * Liveness: the handle heartbeats every lease_ms / 5. A handle that finds
 * another executor's heartbeat older than lease_ms returns that executor's
 * workflows to their queues, where any live handle that can run them claims
 * them and resumes them by replay. A handle that learns it lost its own
 * workflows that way (it was paused past its lease) stops each of them at
 * its next step (cairn_step() returns CAIRN_ESHUTDOWN) and goes on serving.
 */
CAIRN_API int cairn_start_workers(cairn *h);

/*
 * Graceful stop: stop claiming, let running workflows finish for up to
 * timeout_ms (negative: no limit), then interrupt the rest at their next
 * step and hand them back to their queues, where other executors pick them
 * up (the interrupted execution does not count toward max_attempts). When
 * this returns, this executor owns no workflow and is marked STOPPED in
 * cairn.executors. Returns CAIRN_OK if every run finished, CAIRN_ETIMEDOUT
 * if some were handed back. A step function already running is waited for:
 * the deadline takes effect at step boundaries. After cairn_stop() the
 * handle still serves reads (await, describe, list, queues); cairn_close()
 * calls it with a deadline of 0 if it was not called.
 */
CAIRN_API int cairn_stop(cairn *h, int timeout_ms);

/* Options for cairn_start(); zero-initialise and set size, like cairn_options. */
typedef struct cairn_start_options {
    size_t size;       /* sizeof(cairn_start_options) */
    const char *id;    /* workflow ID (at most 200 bytes, printable UTF-8); NULL: a new UUIDv7 */
    const char *queue; /* NULL: run at once on this handle (recorded in queue "default"; no queue limit
                          applies, not even those configured for "default"). A queue name:
                          enqueue it there, to be claimed under the queue's limits by any executor that
                          serves the queue (this one included), like cairn_enqueue().
                          Eager start: if this handle serves the queue, runs the workflow's name and
                          version and has a thread free, and the queue has no limits configured and
                          nothing runnable waiting, the workflow is written as already claimed by
                          this handle and runs at once, as the next claim here would have done
                          (CAIRN_NO_EAGER turns this off). */
    /* The fields below apply to queued starts only (queue not NULL); see cairn_enqueue_options. */
    int priority;
    int delay_ms;
    const char *dedup_key;
    int dedup_error;
    const char *partition_key;
    int timeout_ms;    /* > 0: the workflow is cancelled (CANCELLED, error {"message": "timed out: ..."}) if it
                          has not finished this long after the start, wherever it runs or waits; children it
                          starts inherit the deadline (theirs is the earlier of it and their own timeout).
                          0: no timeout. Applies to direct, queued and child starts alike. */
} cairn_start_options;

/*
 * Start the registered workflow `workflow` with JSON `input` (NULL means
 * JSON null) and run it on this handle's executors. The start is durable
 * when this returns. Starting an ID that already exists creates nothing: it
 * returns CAIRN_OK for the existing workflow (CAIRN_ECONFLICT if that ID
 * belongs to a different workflow name). opts may be NULL. When id_out is
 * not NULL it receives the workflow ID; free it with cairn_free().
 * On CAIRN_ECONN the start may or may not have committed: retry with the
 * same ID.
 */
CAIRN_API int cairn_start(cairn *h, const char *workflow, const char *input,
                          const cairn_start_options *opts, char **id_out);

/*
 * Wait up to timeout_ms (negative: forever) for workflow `id` to reach a
 * final status. On CAIRN_OK, *status receives it and, when result is not
 * NULL, *result receives the output JSON (SUCCESS) or the error JSON
 * (otherwise); free it with cairn_free(). Returns CAIRN_ETIMEDOUT if the
 * workflow is still running and CAIRN_ENOTFOUND if no such ID exists.
 */
CAIRN_API int cairn_await(cairn *h, const char *id, int timeout_ms, cairn_status *status, char **result);

/* Read the current status of workflow `id` without waiting. */
CAIRN_API int cairn_get_status(cairn *h, const char *id, cairn_status *status);

/*
 * Describe one workflow as a JSON object (id, name, status, queue,
 * executor_id, attempts, input, output, error, created_at, updated_at and,
 * when with_steps is non-zero, "steps": [{step, name, output, error,
 * created_at}, ...]). Free *json with cairn_free().
 */
CAIRN_API int cairn_describe(cairn *h, const char *id, int with_steps, char **json);

/* Filter for cairn_list(); zero-initialise and set size. */
typedef struct cairn_list_options {
    size_t size;        /* sizeof(cairn_list_options) */
    const char *status; /* only this status name; NULL: all */
    const char *name;   /* only this workflow name; NULL: all */
    int limit;          /* most rows; 0: 100 */
} cairn_list_options;

/*
 * List workflows, newest first, as a JSON array of objects with the fields
 * of cairn_describe() but without input, output and steps. opts may be NULL.
 * Free *json with cairn_free().
 */
CAIRN_API int cairn_list(cairn *h, const cairn_list_options *opts, char **json);

/*
 * Run step `step` (registered with cairn_register_step) inside a workflow,
 * or return its recorded result when the workflow is being replayed. input
 * may be NULL (JSON null). On CAIRN_OK *output (if output is not NULL)
 * receives the step's JSON output; free it with cairn_free(). On CAIRN_ESTEP
 * the step's recorded failure is in cairn_ctx_errmsg(). CAIRN_ENONDET means
 * replay called a different step than the one recorded at this position;
 * the workflow will be failed with that message whatever it returns.
 * CAIRN_ESHUTDOWN means the handle is closing: return from the workflow
 * promptly; it resumes later.
 */
CAIRN_API int cairn_step(cairn_ctx *ctx, const char *step, const char *input, char **output);

/* One step of a parallel group (cairn_parallel()). */
typedef struct cairn_call {
    const char *step;  /* the registered step to run */
    const char *input; /* its JSON input; NULL: null. Borrowed for the call. */
    char *output;      /* out: the step's JSON output when rc is CAIRN_OK, else NULL; free it with cairn_free()
                          whatever cairn_parallel() returned */
    int rc;            /* out: CAIRN_OK, CAIRN_ESTEP (its failure is recorded), or the group's code */
} cairn_call;

/*
 * Run n steps (1 to 64) at once and wait for all of them. They take the
 * workflow's next n step positions in the order of calls[], before any of
 * them runs, so replay finds each result where it was recorded, whatever
 * order they finished in; steps already recorded are replayed, the others
 * run together, each with its retry policy, each checkpointed on its own.
 * Steps other than transactional ones run on threads of their own (their
 * code must be safe to run concurrently); transactional steps run one after
 * another on the workflow's thread and connection while the others run.
 * Returns CAIRN_OK when every step succeeded; CAIRN_ESTEP when one failed
 * (each call's rc says which; cairn_ctx_errmsg() gives the first failure
 * in call order); CAIRN_ENONDET, CAIRN_ESHUTDOWN or CAIRN_ECANCELLED for
 * the group as a whole, as cairn_step() would. Children run in parallel
 * without this: start each with cairn_start_child(), then cairn_ctx_await()
 * each.
 */
CAIRN_API int cairn_parallel(cairn_ctx *ctx, cairn_call *calls, int n);

/* The workflow's ID. Borrowed: valid while the workflow function runs. */
CAIRN_API const char *cairn_ctx_id(const cairn_ctx *ctx);

/* The workflow's registered name. Borrowed, like cairn_ctx_id(). */
CAIRN_API const char *cairn_ctx_name(const cairn_ctx *ctx);

/* Which execution of this workflow this is: 1 on the first run, 2 after the first recovery, ... */
CAIRN_API int cairn_ctx_attempt(const cairn_ctx *ctx);

/* Non-zero while the workflow replays steps that were recorded before this execution. */
CAIRN_API int cairn_ctx_replaying(const cairn_ctx *ctx);

/* The message of the last failed cairn_step() in this workflow, or "". Borrowed until the next cairn_step(). */
CAIRN_API const char *cairn_ctx_errmsg(const cairn_ctx *ctx);

/* Set the workflow's error message (printf-style) and return CAIRN_EFAIL, for `return cairn_fail(ctx, ...)`. */
CAIRN_API int cairn_fail(cairn_ctx *ctx, const char *fmt, ...) CAIRN_PRINTF(2, 3);

/*
 * The step's stable idempotency key, "<workflow id>:<step number>": the same
 * on every attempt and every replay. Pass it to external APIs so a repeated
 * call is recognised. Borrowed: valid while the step function runs.
 */
CAIRN_API const char *cairn_step_key(const cairn_step_ctx *step);

/* The workflow the step belongs to. Borrowed, like cairn_step_key(). */
CAIRN_API const char *cairn_step_workflow_id(const cairn_step_ctx *step);

/* The step's position in its workflow, counting from 1. */
CAIRN_API int cairn_step_number(const cairn_step_ctx *step);

/* Which attempt this is, counting from 1. */
CAIRN_API int cairn_step_attempt(const cairn_step_ctx *step);

/* Set the attempt's error message (printf-style) and return CAIRN_EFAIL, for `return cairn_step_fail(step, ...)`. */
CAIRN_API int cairn_step_fail(cairn_step_ctx *step, const char *fmt, ...) CAIRN_PRINTF(2, 3);

/*
 * Non-zero once the step's workflow has been cancelled (cairn_cancel(),
 * cairn.cancel() or `cairn cancel`), so that a long-running step can stop
 * early: return a failure, which is not recorded, since the workflow stops
 * here. Seen within a moment of the cancel's commit while this process's
 * dispatcher is connected, else at its next heartbeat.
 */
CAIRN_API int cairn_step_cancelled(const cairn_step_ctx *step);

/*
 * Fail a step attempt because of a failed statement: records the server's
 * message and SQLSTATE (borrowed from res; res stays the caller's to clear)
 * and returns CAIRN_EDB. A transactional step failed with SQLSTATE 40001
 * (serialization failure) or 40P01 (deadlock) is rolled back and retried.
 */
CAIRN_API int cairn_step_fail_pg(cairn_step_ctx *step, const PGresult *res);

/*
 * ---- Waiting, messages, events and streams inside a workflow ----------
 *
 * Each call below takes the workflow's next step position, like
 * cairn_step(), and is recorded, so replay returns what the first
 * execution saw. A wait that has more than cairn_options.suspend_after_ms
 * left returns CAIRN_ESUSPENDED: the workflow's thread is released and
 * the workflow, still PENDING but owned by no executor, is resumed by
 * replay when the wait ends (on any executor that serves its queue and
 * runs its name). Workflow code must then return at once, passing the
 * code on; what it returns is ignored. Like CAIRN_ESHUTDOWN, it is the
 * library's request to stop, not a failure.
 */

/*
 * Durable sleep for ms milliseconds (>= 0). The wake-up time is recorded on
 * the database clock when the sleep is first reached, so a replayed or
 * resumed workflow sleeps only what remains. CAIRN_OK once the time has
 * come; CAIRN_ESUSPENDED or CAIRN_ESHUTDOWN as above.
 */
CAIRN_API int cairn_sleep(cairn_ctx *ctx, long long ms);

/* Durable sleep until epoch_ms (milliseconds since 1970, database clock); a past time returns at once. */
CAIRN_API int cairn_sleep_until(cairn_ctx *ctx, long long epoch_ms);

/*
 * Receive the oldest message sent to this workflow on topic, waiting up to
 * timeout_ms (negative: forever; 0: do not wait). Each message is consumed
 * exactly once, in the order the sends committed per topic, and its
 * consumption is recorded with the step, so replay returns the same
 * message. On CAIRN_OK *message receives the message's JSON text; free it
 * with cairn_free(). CAIRN_ETIMEDOUT when the time ran out (and on every
 * replay of this receive after that); CAIRN_ESUSPENDED, CAIRN_ESHUTDOWN.
 */
CAIRN_API int cairn_recv(cairn_ctx *ctx, const char *topic, int timeout_ms, char **message);

/*
 * Send a message from a workflow, as a step: it is sent exactly once
 * however often the workflow is replayed (the send commits with the step's
 * checkpoint). A send to an ID that no workflow has fails the step:
 * CAIRN_ESTEP, recorded like any failed step, with the reason in
 * cairn_ctx_errmsg().
 */
CAIRN_API int cairn_ctx_send(cairn_ctx *ctx, const char *workflow_id, const char *topic, const char *message);

/*
 * Send a message from outside any workflow, in its own transaction on one
 * of the handle's connections (cairn_send() sends inside the caller's own
 * transaction). message_id (may be NULL) makes the send idempotent.
 */
CAIRN_API int cairn_send_message(cairn *h, const char *workflow_id, const char *topic, const char *message,
                                 const char *message_id);

/*
 * Start a child workflow from a workflow, as a step: the child's ID is
 * "<parent id>/<step number>" unless opts->id sets one, and replay returns
 * the same ID without starting it again. opts as for cairn_start() (queue,
 * priority, ...; NULL: enqueue on "default"); the child is always enqueued,
 * to be claimed by any executor that runs its name. *id_out (may be NULL)
 * receives the ID; free it with cairn_free().
 */
CAIRN_API int cairn_start_child(cairn_ctx *ctx, const char *workflow, const char *input,
                                const cairn_start_options *opts, char **id_out);

/*
 * Wait, as a durable wait, up to timeout_ms (negative: forever) for
 * workflow workflow_id (a child or any other) to finish. On CAIRN_OK
 * *status receives its final status and *result (may be NULL) its output
 * or error JSON (free with cairn_free()); the outcome is recorded, so
 * replay returns it again. CAIRN_ETIMEDOUT (recorded too),
 * CAIRN_ENOTFOUND, CAIRN_ESUSPENDED, CAIRN_ESHUTDOWN.
 */
CAIRN_API int cairn_ctx_await(cairn_ctx *ctx, const char *workflow_id, int timeout_ms, cairn_status *status,
                              char **result);

/* ---- Changing code under running workflows: patch markers -------------- */

/*
 * Ask whether this execution runs the code of patch `patch` (a name of at
 * most 188 bytes), so that workflow code can change without breaking the
 * replay of workflows started before the change:
 *
 *     if (cairn_patched(ctx, "fraud-check") > 0)
 *         rc = cairn_step(ctx, "fraud_check", order, NULL);   (new code)
 *     rc = cairn_step(ctx, "charge", order, &receipt);           (as before)
 *
 * Returns 1 if the workflow reaches this point for the first time (it then
 * records a marker, taking a step position) or recorded the marker here
 * before: take the new path. Returns 0 if the workflow recorded a different
 * step at this position, that is it ran past this point under the old code:
 * take the old path (no position is taken, so its recorded steps line up).
 * The answer is the same on every replay. Negative on error (CAIRN_EINVAL,
 * and the codes of cairn_step()).
 */
CAIRN_API int cairn_patched(cairn_ctx *ctx, const char *patch);

/*
 * Once no workflow started before patch `patch` can still be running,
 * replace `if (cairn_patched(ctx, p))` by cairn_deprecate_patch(ctx, p)
 * and drop the old path: it steps over the marker in workflows that
 * recorded it and records nothing otherwise. When no workflow that
 * recorded the marker can be running either, remove the call too.
 */
CAIRN_API int cairn_deprecate_patch(cairn_ctx *ctx, const char *patch);

/* ---- Controlling workflows: cancel, resume, fork ------------------------ */

/* Flags for cairn_cancel(). */
#define CAIRN_CANCEL_CHILDREN 0x1u /* also cancel every unfinished descendant started with cairn_start_child() */

/*
 * Cancel workflow `id` if it has not finished: it becomes CANCELLED at
 * once, with error {"message": "cancelled"}. An ENQUEUED or waiting
 * workflow never runs again; one that is running stops at its next step
 * (cairn_step() and the waits return CAIRN_ECANCELLED), on whichever
 * executor runs it; a parent awaiting it sees CANCELLED. Returns CAIRN_OK
 * (also when it was CANCELLED already), CAIRN_ENOTFOUND for an unknown ID,
 * CAIRN_EMISUSE if it finished otherwise (SUCCESS, ERROR, DEAD_LETTER).
 * The same as SELECT cairn.cancel(id, children).
 */
CAIRN_API int cairn_cancel(cairn *h, const char *id, unsigned flags);

/*
 * Run a CANCELLED, ERROR or DEAD_LETTER workflow again: it is enqueued
 * again with its attempts reset and replays from its checkpoints, so its
 * completed steps are not run again; a failure recorded as its last
 * checkpoint (the one that ended it) is dropped, so that step runs again.
 * CAIRN_OK also when it is ENQUEUED or PENDING already; CAIRN_ENOTFOUND;
 * CAIRN_EMISUSE for a SUCCESS (fork it instead).
 */
CAIRN_API int cairn_resume(cairn *h, const char *id);

/*
 * Start a new workflow from workflow `id`: the same name, input and queue,
 * with the checkpoints of steps 1 .. from_step - 1 copied, so it runs from
 * step from_step on. Only checkpoints are copied: the copied steps' effects
 * (rows a transactional step wrote, messages, events, stream values,
 * children) are neither repeated nor duplicated. new_id may be NULL (a new
 * UUIDv7). *id_out (may be NULL) receives the new ID; free it with
 * cairn_free(). CAIRN_ENOTFOUND for an unknown source, CAIRN_ECONFLICT if
 * new_id exists, CAIRN_EINVAL for from_step < 1.
 */
CAIRN_API int cairn_fork(cairn *h, const char *id, int from_step, const char *new_id, char **id_out);

/* ---- Events: a workflow's latest key/value announcements ---------------- */

/*
 * Publish event key (a name, at most 200 bytes) of this workflow with JSON
 * value (NULL: JSON null), replacing any earlier value of the key. A step:
 * the value is written exactly once, in the same transaction as its
 * checkpoint, however often the workflow is replayed.
 */
CAIRN_API int cairn_set_event(cairn_ctx *ctx, const char *key, const char *value);

/*
 * Read the latest value of event key of workflow workflow_id, waiting up to
 * timeout_ms (0: do not wait; negative: forever) for it to be published.
 * On CAIRN_OK *value receives the JSON text; free it with cairn_free().
 * CAIRN_ETIMEDOUT if it was not published in time (at once if the workflow
 * has finished without publishing it), CAIRN_ENOTFOUND if no workflow has
 * that ID. Any thread; outside workflows.
 */
CAIRN_API int cairn_get_event(cairn *h, const char *workflow_id, const char *key, int timeout_ms, char **value);

/* ---- Streams: ordered values a workflow appends while it runs ----------- */

/*
 * Append JSON value to stream `stream` (a name) of this workflow, as a
 * step: exactly once, however often the workflow is replayed. Values get
 * offsets 0, 1, 2, ... in the order they were appended. CAIRN_EMISUSE if
 * the stream was closed (recorded too, so replay returns it again).
 */
CAIRN_API int cairn_stream_write(cairn_ctx *ctx, const char *stream, const char *value);

/*
 * Append from inside a running step (e.g. tokens as a model produces them),
 * in its own transaction, at once. At-least-once: if the step's attempt is
 * retried or replayed after a crash, what the attempt wrote stays and the
 * new attempt appends again; readers can tell attempts apart by
 * cairn_step_attempt() if the step puts it in the value. CAIRN_EMISUSE if
 * the stream was closed.
 */
CAIRN_API int cairn_step_stream_write(cairn_step_ctx *step, const char *stream, const char *value);

/* Close stream `stream` of this workflow, as a step; readers see the end. A finished workflow's streams read as closed. */
CAIRN_API int cairn_stream_close(cairn_ctx *ctx, const char *stream);

/*
 * Read stream `stream` of workflow workflow_id from offset (0: the first
 * value), waiting up to timeout_ms (0: no wait; negative: forever) until at
 * least one value is there or the stream is closed. On CAIRN_OK *values
 * receives a JSON array of up to max_values values (0: 1000) in order (free
 * with cairn_free(); fewer when they add up to more than max_payload bytes,
 * but never none unless the stream ended), *next_offset the offset to read
 * from next, and *closed (may be NULL) non-zero once the stream is closed
 * and every value has been read. CAIRN_ETIMEDOUT if nothing came in time;
 * CAIRN_ENOTFOUND if no workflow has that ID.
 */
CAIRN_API int cairn_stream_read(cairn *h, const char *workflow_id, const char *stream, long long offset,
                                int max_values, int timeout_ms, char **values, long long *next_offset, int *closed);

/* Options for cairn_enqueue(); zero-initialise and set size. */
typedef struct cairn_enqueue_options {
    size_t size;           /* sizeof(cairn_enqueue_options) */
    const char *id;        /* workflow ID; NULL: a new UUIDv7 */
    const char *queue;     /* NULL: "default" */
    int priority;          /* lower values run first; default 0; within a priority, in the order they became
                              due (the enqueue's time plus delay_ms) */
    int delay_ms;          /* do not start before this many milliseconds after the enqueuing transaction began
                              (database clock) */
    const char *dedup_key; /* at most one live (ENQUEUED or PENDING) workflow per queue and key; a repeat
                              returns the live one's ID, or fails if dedup_error is set */
    int dedup_error;       /* non-zero: a repeat of a live dedup key fails with CAIRN_ECONFLICT (SQLSTATE 23505)
                              instead of returning the live workflow's ID */
    const char *partition_key; /* the queue's partition_concurrency applies per key; NULL: no partition */
    int timeout_ms;        /* > 0: a deadline this long after the enqueuing transaction began, as
                              cairn_start_options.timeout_ms (SQL: cairn.set_timeout()); 0: none */
} cairn_enqueue_options;

/*
 * Enqueue workflow `workflow` with JSON `input` (NULL: JSON null) on the
 * caller's own connection, inside whatever transaction is open there: the
 * workflow exists if and only if that transaction commits, and workers are
 * woken only then. The name need not be registered anywhere yet. Any
 * thread may call this (not on a PGconn another thread is using). On
 * CAIRN_OK, *id_out (if not NULL) receives the workflow ID; free it with
 * cairn_free(). Errors are reported through cairn_errmsg(NULL) and
 * cairn_sqlstate(NULL); after CAIRN_EDB inside a transaction, the
 * transaction is aborted, as with any failed statement.
 */
CAIRN_API int cairn_enqueue(PGconn *conn, const char *workflow, const char *input, const cairn_enqueue_options *opts,
                            char **id_out);

/*
 * Send JSON `message` to workflow `workflow_id` on `topic` through the
 * caller's connection and transaction, like cairn_enqueue(). message_id
 * (may be NULL) makes the send idempotent: a repeat is accepted and stored
 * nothing. CAIRN_ENOTFOUND if no workflow has that ID.
 */
CAIRN_API int cairn_send(PGconn *conn, const char *workflow_id, const char *topic, const char *message,
                         const char *message_id);

/*
 * Queue configuration, stored in cairn.queues so that every worker, the CLI
 * and SQL see the same. A queue needs no configuration to be used: one
 * without a row has no limits. Zero-initialise and set size; a zero limit
 * means "no limit".
 */
typedef struct cairn_queue_options {
    size_t size;               /* sizeof(cairn_queue_options) */
    int concurrency;           /* most workflows of the queue running (PENDING) at once, across all executors */
    int worker_concurrency;    /* most running at once on any one executor */
    int rate_limit;            /* most starts (claims) in any window of rate_period_ms */
    int rate_period_ms;        /* the rate limit's window; required with rate_limit */
    int partition_concurrency; /* most running at once per partition key */
} cairn_queue_options;

/*
 * Create queue `queue` or replace its whole configuration with *opts (NULL:
 * no limits). Takes effect at the next claim of every executor.
 */
CAIRN_API int cairn_queue_set(cairn *h, const char *queue, const cairn_queue_options *opts);

/*
 * Read one queue as a JSON object: {"name", "concurrency", "worker_concurrency",
 * "rate_limit", "rate_period_ms", "partition_concurrency" (null: no limit),
 * "configured" (false for a queue with work but no row in cairn.queues),
 * "enqueued", "running" (counts now)}. CAIRN_ENOTFOUND if the queue has
 * neither a configuration nor workflows. Free *json with cairn_free().
 */
CAIRN_API int cairn_queue_get(cairn *h, const char *queue, char **json);

/*
 * Every configured queue and every queue holding ENQUEUED or PENDING
 * workflows, as a JSON array of cairn_queue_get() objects, by name.
 */
CAIRN_API int cairn_queue_list(cairn *h, char **json);

/*
 * Remove a queue's configuration (its workflows stay and it has no limits
 * any more). CAIRN_ENOTFOUND if it had none.
 */
CAIRN_API int cairn_queue_delete(cairn *h, const char *queue);

/*
 * The executors known to the database, as a JSON array of objects: {"id",
 * "state" ("LIVE", "STOPPED" or "DEAD"), "heartbeat_at", "heartbeat_age_ms",
 * "lease_ms", "started_at", "stopped_at", "hostname", "pid", "app_version",
 * "running" (workflows it owns now), "adopted_by"}. Free with cairn_free().
 */
CAIRN_API int cairn_executors(cairn *h, char **json);

/* ---- Cron schedules, stored in the database ------------------------------ */

/* A schedule; zero-initialise and set size. */
typedef struct cairn_schedule_options {
    size_t size;          /* sizeof(cairn_schedule_options) */
    const char *workflow; /* the workflow to start at each tick (need not be registered here); required */
    const char *cron;     /* "minute hour day-of-month month day-of-week", or six fields with a leading
                             "second" (5 fields tick at second 0): numbers, '*', ranges a-b, lists a,b, steps
                             a-b/n and '*' followed by /n, month and day names (jan, mon; 0 and 7 are Sunday), or
                             @yearly, @monthly, @weekly, @daily, @hourly. When both day fields are restricted
                             (neither starts with '*'), a day matches if either does. Required */
    const char *timezone; /* IANA zone the cron fields are read in, e.g. "Europe/Paris"; NULL: "UTC" */
    const char *input;    /* JSON passed to every run as "input" (see cairn_schedule_set()); NULL: null */
    const char *queue;    /* queue the runs are enqueued on; NULL: "default" */
    int backfill;         /* non-zero: ticks missed while no executor was live are started late, all of them
                             (at most 1000 per schedule); zero: missed ticks are skipped */
    int paused;           /* non-zero: create or leave the schedule paused */
} cairn_schedule_options;

/*
 * Create schedule `name` or replace its definition. At each tick exactly
 * one run is enqueued across the whole fleet, with ID
 * "<name>@<tick in UTC, ISO 8601>" and input {"schedule": name, "tick":
 * "<tick>", "input": <input>}. Ticks are fired by the dispatchers of live
 * executors (any handle with running workers).
 */
CAIRN_API int cairn_schedule_set(cairn *h, const char *name, const cairn_schedule_options *opts);

/* Pause (paused non-zero) or resume schedule `name`; resuming does not fire the ticks missed while paused. */
CAIRN_API int cairn_schedule_pause(cairn *h, const char *name, int paused);

/* Delete schedule `name`; runs already enqueued stay. CAIRN_ENOTFOUND if there is none. */
CAIRN_API int cairn_schedule_delete(cairn *h, const char *name);

/*
 * Every schedule as a JSON array of {"name", "workflow", "cron", "timezone",
 * "input", "queue", "backfill", "paused", "last_tick", "next_tick"}, by
 * name. Free with cairn_free().
 */
CAIRN_API int cairn_schedule_list(cairn *h, char **json);

/*
 * Check that text is one JSON value in UTF-8 (RFC 8259, nesting at most 1000
 * deep). Returns CAIRN_OK or CAIRN_EJSON; when errbuf is not NULL a
 * description with the byte offset is written there (truncated to errlen).
 */
CAIRN_API int cairn_json_check(const char *text, size_t len, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* CAIRN_H */
