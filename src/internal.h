/*
 * Declarations shared by the library's source files. Nothing here is part
 * of the public API; names that cross files carry the cairn__ prefix.
 */
#ifndef CAIRN_INTERNAL_H
#define CAIRN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>
#include <libpq-fe.h>

#include "cairn.h"

#define CAIRN__NAME_MAX 200          /* longest workflow/step name or ID, in bytes */
#define CAIRN__DEFAULT_WORKERS 16
#define CAIRN__DEFAULT_COMMIT_CONNS 2
#define CAIRN__DEFAULT_POOL_CONNS 4
#define CAIRN__DEFAULT_MAX_ATTEMPTS 20
#define CAIRN__DEFAULT_MAX_PAYLOAD (16u * 1024u * 1024u)
#define CAIRN__DEFAULT_CONNECT_TIMEOUT_MS 10000
#define CAIRN__DEFAULT_LEASE_MS 15000
#define CAIRN__MAX_BATCH 256         /* most checkpoints sharing one commit */

/* ---- text.c: growable buffers, validation, IDs ------------------------ */

typedef struct cairn__buf {
    char *data;
    size_t len;
    size_t cap;
    int oom; /* set once an append failed; later appends are ignored */
} cairn__buf;

void cairn__buf_init(cairn__buf *b);
void cairn__buf_free(cairn__buf *b);
void cairn__buf_append(cairn__buf *b, const char *s, size_t n);
void cairn__buf_puts(cairn__buf *b, const char *s);
/* Append one element of a Postgres array literal: quoted and escaped, or NULL. */
void cairn__buf_array_elem(cairn__buf *b, const char *s);

char *cairn__strdup(const char *s);
/* Checks a name or ID: 1..200 bytes of valid UTF-8 without control characters. */
int cairn__check_name(const char *what, const char *s, char *err, size_t errlen);
/* Writes a new UUIDv7 (time-ordered, so B-tree inserts stay local) into out[37]. */
void cairn__uuid7(char out[37]);
/* Milliseconds on the monotonic clock. */
long long cairn__now_ms(void);
/* Milliseconds since 1970 on this host's clock (see cairn__db_now_ms() for the database's). */
long long cairn__wall_ms(void);
/* The CLOCK_REALTIME instant ms milliseconds from now, for pthread_cond_timedwait(). */
void cairn__abstime(long long ms, struct timespec *ts);
/* A JSON object {"message": msg, <extra members>} built with jansson; malloc'd. */
char *cairn__error_json(const char *message, const char *step, int attempts);

/* ---- log.c: error messages and logging ------------------------------- */

/* Record the calling thread's last failure; returns code for tail calls. */
int cairn__fail(int code, const char *fmt, ...) CAIRN_PRINTF(2, 3);
int cairn__fail_pg(int code, const PGresult *res, PGconn *conn, const char *what);
void cairn__clear_error(void);
int cairn__fail_state(int code, const char *sqlstate, const char *message);
void cairn__log(const cairn *h, int level, const char *fmt, ...) CAIRN_PRINTF(3, 4);

/* ---- conn.c: connections, prepared statements, pool ------------------- */

/* Prepared statements, prepared on every connection the library opens. */
enum {
    CAIRN__Q_START,
    CAIRN__Q_STEP,
    CAIRN__Q_FINISH,
    CAIRN__Q_START1,
    CAIRN__Q_STEP1,
    CAIRN__Q_FINISH1,
    CAIRN__Q_CLAIM,
    CAIRN__Q_LOAD,
    CAIRN__Q_STATUS,
    CAIRN__Q_RESULT,
    CAIRN__Q_STEP_GET,
    CAIRN__Q_DESCRIBE,
    CAIRN__Q_LIST,
    CAIRN__Q_CLAIM_QUEUED,
    CAIRN__Q_ARM,
    CAIRN__Q_STEP_TX,
    CAIRN__Q_REGISTER,
    CAIRN__Q_HEARTBEAT,
    CAIRN__Q_STOP,
    CAIRN__Q_RELEASE_ONE,
    CAIRN__Q_ENQUEUE,
    CAIRN__Q_ENQUEUE1,
    CAIRN__Q_ENQUEUE_BATCH,
    CAIRN__Q_ENQUEUE_SAME,
    CAIRN__Q_QUEUE_SET,
    CAIRN__Q_QUEUE_LIST,
    CAIRN__Q_QUEUE_DELETE,
    CAIRN__Q_EXECUTORS,
    CAIRN__Q_SUSPEND,
    CAIRN__Q_SUSPEND1,
    CAIRN__Q_RECEIVE,
    CAIRN__Q_AWAIT_RESULT,
    CAIRN__Q_CANCEL,
    CAIRN__Q_RESUME,
    CAIRN__Q_FORK,
    CAIRN__Q_CANCELLED,
    CAIRN__Q_DEADLINE_FIRST,
    CAIRN__Q_EXPIRE,
    CAIRN__Q_LOAD_MANY,
    CAIRN__Q_RECLAIM,
    CAIRN__Q_COUNT
};

typedef struct cairn__conn {
    PGconn *pg;
    int prepared; /* statements are prepared on pg */
    int in_use;
    int retrying; /* commit connections: its batch is retrying a lost connection */
    int generic;  /* runs only the library's statements: always their generic plans (see cairn__conn_open) */
    unsigned char *sql_ready; /* which SQL steps are prepared on pg, by sql_slot (see txstep.c) */
    int sql_ready_n;
} cairn__conn;

/* Opens c->pg and prepares the statements; fills err on failure. */
int cairn__conn_open(cairn *h, cairn__conn *c, int prepare);
/* Closes and forgets the connection (it is reopened on next use). */
void cairn__conn_drop(cairn__conn *c);
/* Reconnects if the connection is missing or broken. */
int cairn__conn_ensure(cairn *h, cairn__conn *c);
/* Non-zero if the error means the connection is gone (SQLSTATE class 08, shutdown). */
int cairn__conn_lost(PGconn *pg, const PGresult *res);

/*
 * Run a prepared read-only statement on a pool connection, reconnecting
 * and retrying until connect_timeout_ms has passed. On CAIRN_OK *res holds
 * a PGRES_TUPLES_OK result the caller clears.
 */
int cairn__query(cairn *h, int stmt, int nparams, const char *const *values, PGresult **res);
int cairn__pool_get(cairn *h, cairn__conn **out);
/*
 * Run one statement with text parameters on a pool connection (an unnamed
 * statement, so the pool's prepared set stays as conn.c defines it),
 * reconnecting and retrying after a lost connection until
 * connect_timeout_ms has passed (so a write whose commit was lost with
 * the connection may be applied twice: callers use it for reads and for
 * at-least-once appends only). On CAIRN_OK *res holds a TUPLES_OK or
 * COMMAND_OK result the caller clears. `what` names the statement in
 * error messages.
 */
int cairn__pool_exec(cairn *h, const char *sql, int nparams, const char *const *values, const char *what,
                     PGresult **res);
const char *cairn__stmt_name(int stmt_id);
void cairn__pool_put(cairn *h, cairn__conn *c);

/* ---- schema.c: migrations -------------------------------------------- */

int cairn__migrate(cairn *h, PGconn *pg, int *version);

/* ---- registry.c ---------------------------------------------------------- */

typedef struct cairn__entry {
    char *name;
    cairn_workflow_fn wf;
    cairn_step_fn step;
    cairn_tx_step_fn tx;
    char *sql;    /* a SQL step's statement (owned), or NULL */
    int sql_slot; /* a SQL step's number among the handle's, naming its prepared statements */
    void *udata;
    cairn_retry retry;
    cairn_isolation isolation;
    int max_conflict_retries;
} cairn__entry;

typedef struct cairn__registry {
    cairn__entry *items;
    size_t count, cap;
} cairn__registry;

int cairn__registry_add(cairn__registry *r, const cairn__entry *e);
const cairn__entry *cairn__registry_find(const cairn__registry *r, const char *name);
void cairn__registry_free(cairn__registry *r);

/* ---- commit.c: checkpoint writes sharing commits ----------------------- */

/*
 * The kinds, in the order a batch writes them. ENQUEUE is a cairn_start()
 * to a queue; SUSPEND releases a waiting workflow (with the checkpoint of
 * its wait's deadline, when the wait records one).
 */
enum { CAIRN__START_ITEM, CAIRN__STEP_ITEM, CAIRN__FINISH_ITEM, CAIRN__ENQUEUE_ITEM, CAIRN__SUSPEND_ITEM };

typedef struct cairn__item {
    int kind;
    const char *id;     /* workflow ID */
    const char *name;   /* workflow name (START) or step name (STEP) */
    const char *queue;  /* START, ENQUEUE */
    const char *input;  /* START, ENQUEUE */
    int priority;       /* ENQUEUE */
    int delay_ms;       /* ENQUEUE */
    const char *partition_key; /* ENQUEUE */
    int eager;          /* ENQUEUE: this executor may take it at once (see cairn_start()) */
    int step;           /* STEP; SUSPEND (0: no checkpoint) */
    long long wake_ms;  /* SUSPEND: epoch ms on the database clock, or -1 for a wait without a deadline */
    const char *waiting; /* SUSPEND: what the workflow waits for */
    const char *status; /* FINISH */
    const char *output; /* STEP, FINISH, SUSPEND: JSON or NULL */
    const char *error;  /* STEP, FINISH: JSON or NULL */
    long long give_up_at; /* monotonic ms after which a lost database fails the item; 0: never */
    /* Results, valid once wake is ITEM_DONE (see commit.c). */
    int rc;
    int applied;        /* the row was written (not already there) */
    int taken;          /* ENQUEUE: written as PENDING, owned by this executor (an eager start) */
    char errmsg[256];
    char sqlstate[6];
    struct cairn__item *next;
    atomic_int wake;    /* ITEM_IDLE, ITEM_LEAD or ITEM_DONE: what the waiting thread is woken for */
    /*
     * An item queued with cairn__commit_async(): no thread waits for it;
     * done(h, it) runs on the thread that wrote its batch, once, and owns
     * the item from then on.
     */
    void (*done_fn)(cairn *h, struct cairn__item *it);
} cairn__item;

/* Queue the item, help commit batches until it is done, return item->rc. */
int cairn__commit(cairn *h, cairn__item *item);
/*
 * Queue item (heap-allocated, with done_fn set) without waiting for it:
 * this thread writes a batch only if a commit connection is free now;
 * otherwise the thread writing the batch in flight takes it next.
 */
void cairn__commit_async(cairn *h, cairn__item *item);
/* Writes every queued item and waits for those in flight; for cairn_stop(), once no thread adds more. */
void cairn__commit_drain(cairn *h);
int cairn__commit_init(cairn *h);
/*
 * Opens the first commit connection before work arrives, so that the first
 * checkpoints after a start (recovered workflows above all) do not wait for
 * a connection and its prepared statements. A failure is only logged: the
 * first batch connects again.
 */
void cairn__commit_warm(cairn *h);
void cairn__commit_free(cairn *h);

/* ---- executor.c: runs and the thread pool ------------------------------ */

typedef struct cairn__ckpt {
    int step;
    char *name;
    char *output;
    char *error;
} cairn__ckpt;

/* An await of a workflow not active here, woken when a run for it is reserved. */
typedef struct cairn__waiter {
    const char *id;
    int woken;
    pthread_cond_t cond;
    struct cairn__waiter *next;
} cairn__waiter;

typedef struct cairn__run {
    char *id;
    char *name;
    char *input;          /* known for fresh runs; loaded with the checkpoints otherwise */
    const cairn__entry *wf;
    int fresh;            /* just started: nothing recorded, nothing to load */
    int released;         /* stopped by cairn_stop(), not by a crash */
    int lost_gen;         /* h->lost_gen when reserved: a change means the database gave it to another executor */
    atomic_int cancelled; /* the workflow was cancelled in the database; it stops at its next step */
    int preloaded;        /* the dispatcher loaded its recording with the claim: pre_rec and input */
    cairn__ckpt *pre_rec; /* by position, 1 .. pre_nrec; taken over by the execution */
    int pre_nrec;
    int attempt;
    /* Completion, guarded by the handle's run lock. */
    int done;
    cairn_status status;
    char *result;
    int refs;             /* the active map holds one, each waiter one */
    pthread_cond_t cond;
    struct cairn__run *next_queued;
    struct cairn__run *next_hash;
} cairn__run;

/* Frees a recording: positions 0 .. nrec of rec, then rec. */
void cairn__recording_free(cairn__ckpt *rec, int nrec);
/*
 * Loads the recordings (input and checkpoints) of the n claimed runs in
 * one query on pg, so that their executions start without a query each.
 * A run it could not load is left as it was: its execution loads it.
 */
int cairn__preload(cairn *h, PGconn *pg, cairn__run *const *runs, int n);
int cairn__executor_init(cairn *h);
int cairn__executor_start(cairn *h);
/* Join the executor threads, then drop the runs still queued (they stay PENDING until released). */
void cairn__executor_shutdown(cairn *h);
void cairn__executor_free(cairn *h);
/* Non-zero if run r was handed to another executor after it was reserved here. */
int cairn__run_lost(cairn *h, const cairn__run *r);
/* Resume workflows owned by this executor: all of them (id NULL) or one. */
int cairn__recover(cairn *h, const char *id);
/* Workflow id was cancelled: if it runs here, it stops at its next step. */
void cairn__run_cancelled(cairn *h, const char *id);
/*
 * Asks the database which of the workflows running here were cancelled and
 * marks them, for cancels whose notification this process missed. Uses pg.
 */
int cairn__check_cancelled(cairn *h, PGconn *pg);
/* Appends the IDs of the runs active here to ids as an array literal; returns how many. */
size_t cairn__run_ids(cairn *h, cairn__buf *ids);
/*
 * Records the deadline of a workflow about to be started (timeout_ms from
 * now), unless a workflow with that ID exists already: written before the
 * start, so that no crash can leave the workflow without it.
 */
int cairn__deadline_first(cairn *h, const char *id, int timeout_ms);
/* A deadline was recorded by this process: have the dispatcher learn when it is due. */
void cairn__deadline_set(cairn *h);
/* Cancels workflows whose deadline passed (cairn.expire); *next_ms: until the next deadline, or -1. Uses pg. */
int cairn__expire(cairn *h, PGconn *pg, long long *next_ms);
/* Look up a run by ID and take a reference; NULL if not active here. */
cairn__run *cairn__run_find(cairn *h, const char *id);
void cairn__run_release(cairn *h, cairn__run *r);
/* Register a placeholder run for id; returns NULL if one is already active. */
cairn__run *cairn__run_reserve(cairn *h, const char *id, const char *name, const cairn__entry *wf);
/* Queue a reserved run for execution. */
void cairn__run_submit(cairn *h, cairn__run *r);
/* Drop a reserved run that will not execute. */
void cairn__run_cancel(cairn *h, cairn__run *r);
/*
 * Sleep up to ms, or until a run for workflow id is reserved in this
 * process (the dispatcher claimed it), so that an await of a queued
 * workflow can switch to the in-memory hand-off. Returns non-zero on shutdown.
 */
int cairn__wait_reserve(cairn *h, const char *id, long long ms);

/*
 * Expected claims: workflows this handle enqueued and can run itself. When
 * the dispatcher claims one, its run is kept here (one reference) so that
 * an await that comes later, even after the run ended, takes the result
 * from memory instead of reading the database. The table has one slot per
 * hash of the ID (of CAIRN__EXPECT_MAX): a newer entry replaces an older
 * one in its slot, whose await then reads the database as for any other.
 */
#define CAIRN__EXPECT_MAX 512
void cairn__expect_add(cairn *h, const char *id);
/*
 * Takes id's entry out of the table. Returns 1 if there was one, else 0;
 * *run receives the claimed run (a reference the caller releases with
 * cairn__run_release()) or NULL if it was not claimed yet.
 */
int cairn__expect_take(cairn *h, const char *id, cairn__run **run);
/* Sleep up to ms, waking early when the handle shuts down; returns non-zero on shutdown. */
int cairn__sleep(cairn *h, long long ms);

cairn_status cairn__status_parse(const char *s);

/* ---- dispatch.c: claiming enqueued workflows ---------------------------- */

/* Creates the dispatcher's wake-up eventfd (cairn_open). */
int cairn__dispatch_init(cairn *h);
int cairn__dispatch_start(cairn *h);
void cairn__dispatch_stop(cairn *h);
void cairn__dispatch_free(cairn *h);
/* Wake the dispatcher: an executor thread became free, or the handle is closing. */
void cairn__dispatch_poke(cairn *h);

/* ---- fleet.c: this executor's row, heartbeats, handing work back -------- */

/* Register (or take over) this executor ID with a new instance. */
int cairn__fleet_register(cairn *h);
/* Heartbeat on pg; adopts dead executors' work. Returns the number adopted, or a negative code. */
int cairn__fleet_heartbeat(cairn *h, PGconn *pg);
/*
 * The database clock now, in epoch milliseconds: this host's clock plus the
 * offset measured at registration and at each heartbeat (to within half a
 * round trip). Durable waits are timed by it, as the database times them.
 */
long long cairn__db_now_ms(cairn *h);
/* How far cairn__db_now_ms() may be off (half the round trip of its reading, plus 3 ms of rounding); waits add it. */
long long cairn__db_clock_error_ms(cairn *h);
/* Hand every workflow this executor owns back to its queue and mark the executor STOPPED. */
void cairn__fleet_stop(cairn *h);
/* Hand one workflow back to its queue if this executor still owns it. */
void cairn__fleet_release_one(cairn *h, const char *id);
/*
 * Runs the workflows this executor owns in the database but runs nowhere
 * here: what a claim took whose answer was lost with its connection. Called
 * by the dispatcher on pg after it reconnects. Returns how many it resumed,
 * or a negative code.
 */
int cairn__fleet_reclaim(cairn *h, PGconn *pg);
/*
 * Called before a step runs: if no heartbeat has succeeded for a whole
 * lease (the process was paused, or the database unreachable), wait for
 * the dispatcher's next one. Returns non-zero if the run is lost or the
 * handle is stopping.
 */
int cairn__fleet_fence(cairn *h, cairn__run *r);

/* ---- event.c: what event and stream readers share ----------------------- */

#define CAIRN__POLL_MIN_MS 5   /* a waiting reader's first interval between looks */
#define CAIRN__POLL_MAX_MS 100 /* and its longest */

/* CAIRN_OK, or CAIRN_ETOOBIG / CAIRN_EJSON with a message naming `what`. */
int cairn__check_payload(const cairn *h, const char *what, const char *json);
/* The watch generation of a workflow's bucket; read it before looking in the database. */
unsigned long cairn__watch_gen(const char *workflow_id);
/* An event or stream write for workflow_id committed in this process: wake its local readers. */
void cairn__watch_bump(const char *workflow_id);
/* Sleep up to ms, or until the bucket's generation is no longer `seen`. */
void cairn__watch_wait(const char *workflow_id, unsigned long seen, long long ms);
/* The next poll interval after `interval`: doubled, up to CAIRN__POLL_MAX_MS. */
long long cairn__poll_next(long long interval);

/* ---- cron.c: firing the ticks of cron schedules ------------------------- */

/*
 * Enqueue the runs of every due tick of every unpaused schedule, on pg (the
 * dispatcher's connection), exactly once across the fleet. *next_ms
 * receives the milliseconds until the next tick of any unpaused schedule,
 * or -1 when there is none. Returns CAIRN_OK or a negative code (the
 * dispatcher retries at its next round).
 */
int cairn__cron_fire(cairn *h, PGconn *pg, long long *next_ms);

/* ---- step.c: executing one workflow ----------------------------------- */

struct cairn_step_ctx {
    cairn *h;           /* the handle running the step */
    const cairn__run *run;
    const char *workflow_id;
    const char *name;
    int number;
    int attempt;
    char key[CAIRN__NAME_MAX + 16];
    char *fail_msg;     /* set by cairn_step_fail() and cairn_step_fail_pg() */
    char sqlstate[6];   /* set by cairn_step_fail_pg() */
};

/* A workflow's execution, as its code sees it through cairn_ctx. */
struct cairn_ctx {
    cairn *h;
    cairn__run *run;
    cairn__ckpt *rec;     /* recorded checkpoints, by position */
    int nrec;
    int next;             /* position of the next step, from 1 */
    int nondet;           /* replay diverged; the workflow fails whatever it returns */
    int abandoned;        /* the handle is closing; leave the workflow PENDING */
    int suspended;        /* the workflow waits without a thread; it resumes by replay */
    int cancelled;        /* the workflow was cancelled; it stops here and records nothing more */
    char *fail_msg;       /* set by cairn_fail() */
    char errmsg[512];     /* the last failed step's message */
    cairn__conn *txc;     /* the executor thread's connection for transactional steps */
};

cairn *cairn__ctx_handle(cairn_ctx *ctx);

/*
 * Run e as the workflow's next step, recorded under `name`, or return the
 * recording when the position was recorded before. The library's own
 * operations (events, streams, sends, ...) are steps whose names start
 * with "cairn." (a prefix cairn_register_step() refuses) and whose entry,
 * often built on the caller's stack with its arguments in udata, has a tx
 * function: their writes commit with their checkpoint. input is valid JSON.
 */
int cairn__step_run(cairn_ctx *ctx, const char *name, const cairn__entry *e, const char *input, char **output);

/*
 * Whether the workflow may take another step: CAIRN_OK, or the code to
 * return (CAIRN_ENONDET, CAIRN_ESUSPENDED, CAIRN_ESHUTDOWN when the handle
 * is stopping or the workflow was handed to another executor).
 */
int cairn__ctx_usable(cairn_ctx *ctx);

/*
 * Checks that the operation called at position number is the one recorded
 * there. On a mismatch, marks the workflow non-deterministic (it fails
 * whatever it returns) and returns CAIRN_ENONDET.
 */
int cairn__replay_name(cairn_ctx *ctx, int number, const char *recorded, const char *called);

/*
 * Runs workflow r on the calling executor thread; txc is the thread's
 * connection for transactional steps. Returns 1 when its finish was handed
 * to group commit (the thread was freed first; the run ends when that
 * commits, see cairn__run_done()), 0 when the run ended here.
 */
int cairn__execute(cairn *h, cairn__run *r, cairn__conn *txc);
/* The calling executor thread is done with its run: one more thread is free (see h->busy). */
void cairn__thread_free(cairn *h);
/* The end of a run: publish the result to its waiters and leave the active map. */
void cairn__run_done(cairn *h, cairn__run *r);

/* ---- txstep.c: one attempt of a transactional step -------------------- */

enum { CAIRN__TX_COMMITTED, CAIRN__TX_RECORDED, CAIRN__TX_FAILED, CAIRN__TX_SHUTDOWN };
/*
 * Runs the step in a transaction on c and commits it with its checkpoint.
 * COMMITTED: *result holds the output (malloc'd or NULL for JSON null).
 * RECORDED: another execution holds the checkpoint; read it back.
 * FAILED: rolled back; s->fail_msg says why. SHUTDOWN: the handle is closing.
 */
int cairn__tx_attempt(cairn *h, cairn__conn *c, const cairn__entry *e, cairn_step_ctx *s, const char *input,
                      char **result);
/* Whether a step entry commits with its checkpoint: a transactional step or a SQL step. */
#define CAIRN__TRANSACTIONAL(e) ((e)->tx != NULL || (e)->sql != NULL)

/* ---- the handle -------------------------------------------------------- */

struct cairn {
    char *conninfo;
    char *executor_id;
    int workers;
    int sql_steps; /* SQL steps registered (cairn_register_sql_step) */
    int commit_conns_n;
    int pool_n;
    int max_attempts;
    size_t max_payload;
    int connect_timeout_ms;
    unsigned flags;
    cairn_log_fn log;
    void *log_udata;
    int log_level;

    cairn__registry workflows;
    cairn__registry steps;
    int started; /* workers running; registration closed */
    atomic_int shutting_down;

    /* Pool connections for reads and API calls. */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    cairn__conn *pool;

    /* Group commit (commit.c). */
    pthread_mutex_t commit_lock;
    cairn__conn *commit_conns;
    cairn__item *pending_head, *pending_tail;
    size_t pending_count;

    /* Runs (executor.c). */
    pthread_mutex_t run_lock;
    pthread_cond_t run_cond;     /* work queued or shutdown */
    pthread_cond_t sleep_cond;   /* broadcast at shutdown to cut sleeps short */
    cairn__run *queue_head, *queue_tail;
    cairn__run **active;         /* hash of runs by ID */
    cairn__waiter *waiters;      /* awaits of workflows not active here */
    struct cairn__expect {
        char *id;                /* NULL: a free slot */
        size_t hash;
        cairn__run *run;         /* the claimed run (a reference), or NULL before the claim */
    } expect[CAIRN__EXPECT_MAX]; /* see cairn__expect_add(); guarded by run_lock */
    size_t active_cap, active_count;
    pthread_t *threads;
    int nthreads;
    atomic_int busy;             /* runs queued or running on the executor threads */
    atomic_int async_items;      /* items queued by cairn__commit_async() and not yet done */
    int poll_interval_ms;
    int suspend_after_ms;        /* waits longer than this suspend; negative: every wait that cannot end at once */
    atomic_llong next_wake_ms;   /* monotonic time of the earliest wake-up of a workflow suspended here; 0: none */
    atomic_int look;             /* a workflow was suspended: the dispatcher looks for due work even if idle */
    atomic_int dispatch_idle;    /* the dispatcher's idle (see dispatcher_main): a freed thread need not poke it */
    atomic_int timed_look;       /* a deadline was set here: the dispatcher runs cairn.expire() at its next turn */

    /* The fleet (fleet.c). */
    int lease_ms;
    char *app_version;           /* NULL: none */
    char *accept;                /* array literal of accepted versions; NULL: any */
    char *queues;                /* array literal of served queues; NULL: all */
    char instance[37];           /* this process's registration of executor_id */
    atomic_int registered;       /* the executor row was written */
    atomic_int lost_gen;         /* bumped each time this executor's workflows were given to others */
    atomic_llong hb_ok_ms;       /* monotonic time of the last heartbeat that found us LIVE */
    atomic_llong clock_offset_ms; /* database clock minus this host's, from the last heartbeat */
    atomic_llong clock_error_ms;  /* how far clock_offset_ms may be off */
    atomic_int stopping;         /* cairn_stop(): claim nothing more */
    atomic_int taken;            /* another process took our executor ID: claim nothing more */
    int stopped;                 /* cairn_stop() completed */

    /* The dispatcher (dispatch.c). */
    pthread_t dispatcher;
    int dispatching;
    int wake_fd;                 /* eventfd: wakes the dispatcher (capacity freed, shutdown) */
    cairn__buf names;            /* array literal of the registered workflow names */
};

#endif /* CAIRN_INTERNAL_H */
