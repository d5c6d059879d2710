/*
 * The handle: opening and closing it, registration, starting workflows,
 * and the static texts of the API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

const char *cairn_version(void)
{
    return CAIRN_VERSION_STRING;
}

void cairn_free(void *p)
{
    free(p);
}

const char *cairn_strerror(int code)
{
    switch (code) {
    case CAIRN_OK: return "success";
    case CAIRN_EINVAL: return "invalid argument";
    case CAIRN_EJSON: return "invalid JSON";
    case CAIRN_ETOOBIG: return "payload too large";
    case CAIRN_ENOTFOUND: return "not found";
    case CAIRN_ECONFLICT: return "conflicting workflow ID";
    case CAIRN_EDB: return "database error";
    case CAIRN_ECONN: return "database unreachable";
    case CAIRN_ETIMEDOUT: return "timed out";
    case CAIRN_ESTEP: return "step failed";
    case CAIRN_ENONDET: return "non-deterministic workflow";
    case CAIRN_ESHUTDOWN: return "shutting down";
    case CAIRN_ESUSPENDED: return "suspended until its wait ends";
    case CAIRN_ECANCELLED: return "cancelled";
    case CAIRN_ENOMEM: return "out of memory";
    case CAIRN_EMISUSE: return "API misuse";
    case CAIRN_ESCHEMA: return "schema error";
    case CAIRN_EFAIL: return "failed";
    default: return "unknown error";
    }
}

const char *cairn_status_name(cairn_status status)
{
    switch (status) {
    case CAIRN_STATUS_ENQUEUED: return "ENQUEUED";
    case CAIRN_STATUS_PENDING: return "PENDING";
    case CAIRN_STATUS_SUCCESS: return "SUCCESS";
    case CAIRN_STATUS_ERROR: return "ERROR";
    case CAIRN_STATUS_CANCELLED: return "CANCELLED";
    case CAIRN_STATUS_DEAD_LETTER: return "DEAD_LETTER";
    default: return "UNKNOWN";
    }
}

cairn_status cairn__status_parse(const char *s)
{
    for (int i = CAIRN_STATUS_ENQUEUED; i <= CAIRN_STATUS_DEAD_LETTER; i++)
        if (strcmp(s, cairn_status_name((cairn_status)i)) == 0)
            return (cairn_status)i;
    return CAIRN_STATUS_UNKNOWN;
}

const char *cairn_executor_id(const cairn *h)
{
    return h ? h->executor_id : NULL;
}

/* Reads a field of the caller's options only if their struct is big enough to have it. */
#define OPT(o, field, dflt) \
    ((o) && (o)->size >= offsetof(cairn_options, field) + sizeof((o)->field) && (o)->field ? (o)->field : (dflt))

/*
 * Copies a NULL-terminated list of names into a Postgres array literal
 * (*out stays NULL for a NULL list). An empty list is refused: it would
 * mean "nothing", which is never what the caller wants.
 */
static int list_literal(const char *what, const char *const *list, char **out)
{
    char err[256];
    *out = NULL;
    if (!list)
        return CAIRN_OK;
    if (!list[0])
        return cairn__fail(CAIRN_EINVAL, "the list of %s is empty; pass NULL for all", what);
    cairn__buf b;
    cairn__buf_init(&b);
    cairn__buf_puts(&b, "{");
    for (size_t i = 0; list[i]; i++) {
        if (i >= 1000) {
            cairn__buf_free(&b);
            return cairn__fail(CAIRN_EINVAL, "the list of %s is longer than 1000 (is it NULL-terminated?)", what);
        }
        if (cairn__check_name(what, list[i], err, sizeof err) != CAIRN_OK) {
            cairn__buf_free(&b);
            return cairn__fail(CAIRN_EINVAL, "%s", err);
        }
        cairn__buf_array_elem(&b, list[i]);
    }
    cairn__buf_puts(&b, "}");
    if (b.oom) {
        cairn__buf_free(&b);
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    *out = b.data;
    return CAIRN_OK;
}

/* Opens the first pool connection, checks or migrates the schema, and prepares the statements. */
static int open_schema(cairn *h)
{
    int rc = cairn__conn_open(h, &h->pool[0], 0);
    if (rc != CAIRN_OK)
        return rc;
    if (h->flags & CAIRN_NO_MIGRATE) {
        PGresult *r = PQexec(h->pool[0].pg, "SELECT to_regclass('cairn.migrations') IS NOT NULL");
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        int present = ok && PQgetvalue(r, 0, 0)[0] == 't';
        if (!ok)
            rc = cairn__fail_pg(cairn__conn_lost(h->pool[0].pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, h->pool[0].pg,
                                "checking the schema");
        PQclear(r);
        if (!ok)
            return rc;
        if (!present)
            return cairn__fail(CAIRN_ESCHEMA, "the cairn schema is missing; run `cairn migrate` first");
    } else if ((rc = cairn__migrate(h, h->pool[0].pg, NULL)) != CAIRN_OK) {
        return rc;
    }
    cairn__conn_drop(&h->pool[0]); /* reopened with its statements prepared */
    return cairn__conn_open(h, &h->pool[0], 1);
}

int cairn_open(cairn **out, const cairn_options *opts)
{
    cairn__clear_error();
    if (!out)
        return cairn__fail(CAIRN_EINVAL, "out is NULL");
    *out = NULL;
    if (opts && opts->size == 0)
        return cairn__fail(CAIRN_EINVAL, "cairn_options.size is 0; set it to sizeof(cairn_options)");
    cairn *h = calloc(1, sizeof *h);
    if (!h)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    *out = h;
    pthread_mutex_init(&h->pool_lock, NULL);
    pthread_cond_init(&h->pool_cond, NULL);
    pthread_mutex_init(&h->commit_lock, NULL);
    pthread_mutex_init(&h->run_lock, NULL);
    pthread_cond_init(&h->run_cond, NULL);
    pthread_cond_init(&h->sleep_cond, NULL);
    atomic_init(&h->shutting_down, 0);
    atomic_init(&h->busy, 0);
    atomic_init(&h->dispatch_idle, 0);
    h->wake_fd = -1;

    const char *conninfo = OPT(opts, conninfo, getenv("CAIRN_DATABASE_URL"));
    const char *exec_id = OPT(opts, executor_id, getenv("CAIRN_EXECUTOR_ID"));
    if (!exec_id || !*exec_id)
        exec_id = "local";
    h->conninfo = conninfo && *conninfo ? cairn__strdup(conninfo) : NULL;
    h->executor_id = cairn__strdup(exec_id);
    h->workers = OPT(opts, workers, CAIRN__DEFAULT_WORKERS);
    h->commit_conns_n = OPT(opts, commit_connections, CAIRN__DEFAULT_COMMIT_CONNS);
    h->pool_n = OPT(opts, pool_connections, CAIRN__DEFAULT_POOL_CONNS);
    h->max_attempts = OPT(opts, max_attempts, CAIRN__DEFAULT_MAX_ATTEMPTS);
    h->max_payload = OPT(opts, max_payload, (size_t)CAIRN__DEFAULT_MAX_PAYLOAD);
    h->connect_timeout_ms = OPT(opts, connect_timeout_ms, CAIRN__DEFAULT_CONNECT_TIMEOUT_MS);
    h->flags = OPT(opts, flags, 0u);
    h->poll_interval_ms = OPT(opts, poll_interval_ms, 1000);
    h->lease_ms = OPT(opts, lease_ms, CAIRN__DEFAULT_LEASE_MS);
    h->suspend_after_ms = OPT(opts, suspend_after_ms, 1000);
    const char *app_version = OPT(opts, app_version, (const char *)NULL);
    h->log = OPT(opts, log, (cairn_log_fn)NULL);
    h->log_udata = OPT(opts, log_udata, (void *)NULL);
    h->log_level = OPT(opts, log_level, h->log ? CAIRN_LOG_DEBUG : CAIRN_LOG_WARN);
    if (!h->executor_id || (conninfo && *conninfo && !h->conninfo))
        return cairn__fail(CAIRN_ENOMEM, "out of memory");

    char err[256];
    if (cairn__check_name("executor ID", h->executor_id, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (app_version) {
        if (cairn__check_name("application version", app_version, err, sizeof err) != CAIRN_OK)
            return cairn__fail(CAIRN_EINVAL, "%s", err);
        if (!(h->app_version = cairn__strdup(app_version)))
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    int lrc = list_literal("accepted version", OPT(opts, accept_versions, (const char *const *)NULL), &h->accept);
    if (lrc == CAIRN_OK)
        lrc = list_literal("queue name", OPT(opts, queues, (const char *const *)NULL), &h->queues);
    if (lrc != CAIRN_OK)
        return lrc;
    if (h->conninfo) {
        /* A malformed conninfo is the caller's mistake, not an outage to wait out. */
        char *perr = NULL;
        PQconninfoOption *parsed = PQconninfoParse(h->conninfo, &perr);
        if (!parsed) {
            size_t n = perr ? strlen(perr) : 0;
            while (n > 0 && perr[n - 1] == '\n')
                n--;
            cairn__fail(CAIRN_EINVAL, "the conninfo is malformed: %.*s", (int)n, perr ? perr : "out of memory");
            PQfreemem(perr);
            return CAIRN_EINVAL;
        }
        PQconninfoFree(parsed);
    }
    if (h->workers < 0 || h->workers > 4096 || h->commit_conns_n < 0 || h->commit_conns_n > 64 || h->pool_n < 0 ||
        h->pool_n > 256 || h->max_attempts < 0 || h->connect_timeout_ms < 0 || h->poll_interval_ms < 0 ||
        h->lease_ms < 0 || (h->lease_ms > 0 && h->lease_ms < 100))
        return cairn__fail(CAIRN_EINVAL, "an option is out of range (workers 1-4096, commit_connections 1-64, "
                                         "pool_connections 1-256, lease_ms >= 100, max_attempts, "
                                         "connect_timeout_ms and poll_interval_ms >= 0)");

    h->pool = calloc((size_t)h->pool_n, sizeof *h->pool);
    if (!h->pool)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    int rc = cairn__commit_init(h);
    if (rc == CAIRN_OK)
        rc = cairn__executor_init(h);
    if (rc == CAIRN_OK)
        rc = cairn__dispatch_init(h);
    if (rc != CAIRN_OK)
        return rc;

    /*
     * Connect, migrate and prepare. A connection lost on the way (a server
     * restarting, a backend terminated) is retried until connect_timeout_ms
     * has passed, like every other API call; other failures are final.
     */
    long long deadline = cairn__now_ms() + h->connect_timeout_ms;
    long long backoff = 50;
    for (;;) {
        rc = open_schema(h);
        if (rc != CAIRN_ECONN || cairn__now_ms() + backoff > deadline)
            return rc;
        cairn__log(h, CAIRN_LOG_INFO, "connecting: %s; retrying", cairn_errmsg(h));
        cairn__sleep(h, backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
}

int cairn_stop(cairn *h, int timeout_ms)
{
    cairn__clear_error();
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (!h->started || h->stopped)
        return CAIRN_OK;
    /* Claim nothing more, but keep heartbeating: the runs we finish are still ours. */
    atomic_store(&h->stopping, 1);
    long long deadline = timeout_ms < 0 ? -1 : cairn__now_ms() + timeout_ms;
    while ((atomic_load(&h->busy) > 0 || atomic_load(&h->async_items) > 0) &&
           (deadline < 0 || cairn__now_ms() < deadline)) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    int unfinished = atomic_load(&h->busy) > 0;
    /* Interrupt the rest at their next step, and join every thread. */
    atomic_store(&h->shutting_down, 1);
    cairn__dispatch_stop(h);
    cairn__executor_shutdown(h);
    /* Finishes handed to group commit are written (or fail) before the workflows are handed back. */
    cairn__commit_drain(h);
    atomic_store(&h->shutting_down, 0); /* from here on the handle only serves reads */
    h->stopped = 1;
    cairn__fleet_stop(h);
    if (unfinished)
        return cairn__fail(CAIRN_ETIMEDOUT, "%d ms passed with workflows still running; they were handed back",
                           timeout_ms);
    return CAIRN_OK;
}

void cairn_close(cairn *h)
{
    if (!h)
        return;
    if (h->started && !h->stopped)
        cairn_stop(h, 0);
    atomic_store(&h->shutting_down, 1);
    if (h->active)
        cairn__executor_free(h);
    cairn__dispatch_free(h);
    cairn__commit_free(h);
    if (h->pool) {
        for (int i = 0; i < h->pool_n; i++)
            cairn__conn_drop(&h->pool[i]);
        free(h->pool);
    }
    cairn__registry_free(&h->workflows);
    cairn__registry_free(&h->steps);
    pthread_mutex_destroy(&h->pool_lock);
    pthread_cond_destroy(&h->pool_cond);
    pthread_mutex_destroy(&h->commit_lock);
    pthread_mutex_destroy(&h->run_lock);
    pthread_cond_destroy(&h->run_cond);
    pthread_cond_destroy(&h->sleep_cond);
    free(h->conninfo);
    free(h->executor_id);
    free(h->app_version);
    free(h->accept);
    free(h->queues);
    free(h);
}

int cairn_migrate(cairn *h, int *version)
{
    cairn__clear_error();
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    cairn__conn *c;
    cairn__pool_get(h, &c);
    int rc = cairn__conn_ensure(h, c);
    if (rc == CAIRN_OK)
        rc = cairn__migrate(h, c->pg, version);
    /* Statements prepared before the schema existed may be stale: start afresh. */
    cairn__conn_drop(c);
    cairn__pool_put(h, c);
    return rc;
}

static int check_registration(cairn *h, const char *name, int has_fn)
{
    char err[256];
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (h->started)
        return cairn__fail(CAIRN_EMISUSE, "registration is closed once the workers have started");
    if (cairn__check_name("name", name, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!has_fn)
        return cairn__fail(CAIRN_EINVAL, "function for '%s' is NULL", name);
    return CAIRN_OK;
}

/* Step names starting with "cairn." are the library's own (waits, sends, events, ...). */
static int check_step_name(const char *name)
{
    if (strncmp(name, "cairn.", 6) == 0)
        return cairn__fail(CAIRN_EINVAL, "step names starting with \"cairn.\" are reserved for the library: '%s'",
                           name);
    return CAIRN_OK;
}

int cairn_register_workflow(cairn *h, const char *name, cairn_workflow_fn fn, void *udata)
{
    cairn__clear_error();
    int rc = check_registration(h, name, fn != NULL);
    if (rc != CAIRN_OK)
        return rc;
    cairn__entry e = {.name = (char *)name, .wf = fn, .udata = udata};
    return cairn__registry_add(&h->workflows, &e);
}

int cairn_register_step(cairn *h, const char *name, cairn_step_fn fn, void *udata, const cairn_retry *retry)
{
    cairn__clear_error();
    int rc = check_registration(h, name, fn != NULL);
    if (rc == CAIRN_OK)
        rc = check_step_name(name);
    if (rc != CAIRN_OK)
        return rc;
    if (retry && (retry->max_attempts < 0 || retry->base_ms < 0 || retry->factor < 0 || retry->cap_ms < 0))
        return cairn__fail(CAIRN_EINVAL, "retry policy for '%s' has a negative field", name);
    cairn__entry e = {.name = (char *)name, .step = fn, .udata = udata};
    if (retry)
        e.retry = *retry;
    return cairn__registry_add(&h->steps, &e);
}

#define TXOPT(o, field) \
    ((o) && (o)->size >= offsetof(cairn_tx_options, field) + sizeof((o)->field) ? (o)->field : 0)

/* Reads a transactional step's options into e; the name is for messages. */
static int tx_options(cairn__entry *e, const char *name, const cairn_tx_options *opts)
{
    if (opts && opts->size == 0)
        return cairn__fail(CAIRN_EINVAL, "cairn_tx_options.size is 0; set it to sizeof(cairn_tx_options)");
    e->isolation = TXOPT(opts, isolation);
    if (opts && opts->size >= offsetof(cairn_tx_options, retry) + sizeof opts->retry)
        e->retry = opts->retry;
    e->max_conflict_retries = TXOPT(opts, max_conflict_retries);
    if (e->isolation < CAIRN_READ_COMMITTED || e->isolation > CAIRN_SERIALIZABLE)
        return cairn__fail(CAIRN_EINVAL, "isolation level %d of '%s' is not a cairn_isolation", (int)e->isolation,
                           name);
    if (e->retry.max_attempts < 0 || e->retry.base_ms < 0 || e->retry.factor < 0 || e->retry.cap_ms < 0 ||
        e->max_conflict_retries < 0)
        return cairn__fail(CAIRN_EINVAL, "options for '%s' have a negative field", name);
    return CAIRN_OK;
}

int cairn_register_tx_step(cairn *h, const char *name, cairn_tx_step_fn fn, void *udata, const cairn_tx_options *opts)
{
    cairn__clear_error();
    int rc = check_registration(h, name, fn != NULL);
    if (rc == CAIRN_OK)
        rc = check_step_name(name);
    if (rc != CAIRN_OK)
        return rc;
    cairn__entry e = {.name = (char *)name, .tx = fn, .udata = udata};
    if ((rc = tx_options(&e, name, opts)) != CAIRN_OK)
        return rc;
    return cairn__registry_add(&h->steps, &e);
}

#define SQL_STEP_MAX (1024 * 1024)

int cairn_register_sql_step(cairn *h, const char *name, const char *sql, const cairn_tx_options *opts)
{
    cairn__clear_error();
    int rc = check_registration(h, name, sql != NULL);
    if (rc == CAIRN_OK)
        rc = check_step_name(name);
    if (rc != CAIRN_OK)
        return rc;
    /* The statement goes inside a WITH clause: a trailing semicolon would end it early. */
    size_t len = strlen(sql);
    while (len > 0 && (sql[len - 1] == ';' || sql[len - 1] == ' ' || sql[len - 1] == '\t' || sql[len - 1] == '\n' ||
                       sql[len - 1] == '\r'))
        len--;
    size_t lead = strspn(sql, " \t\r\n");
    if (lead >= len)
        return cairn__fail(CAIRN_EINVAL, "the statement of SQL step '%s' is empty", name);
    if (len > SQL_STEP_MAX)
        return cairn__fail(CAIRN_EINVAL, "the statement of SQL step '%s' is %zu bytes; the limit is %d", name, len,
                           SQL_STEP_MAX);
    cairn__entry e = {.name = (char *)name};
    if ((rc = tx_options(&e, name, opts)) != CAIRN_OK)
        return rc;
    e.sql = malloc(len - lead + 1);
    if (!e.sql)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    memcpy(e.sql, sql + lead, len - lead);
    e.sql[len - lead] = '\0';
    e.sql_slot = h->sql_steps;
    if ((rc = cairn__registry_add(&h->steps, &e)) != CAIRN_OK) {
        free(e.sql);
        return rc;
    }
    h->sql_steps++;
    return CAIRN_OK;
}

int cairn_start_workers(cairn *h)
{
    cairn__clear_error();
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (h->started)
        return cairn__fail(CAIRN_EMISUSE, "the workers are already running");
    if (!h->pool || !h->pool[0].pg)
        return cairn__fail(CAIRN_EMISUSE, "the handle did not open successfully");
    h->started = 1;
    int rc = cairn__executor_start(h);
    if (rc != CAIRN_OK || h->workflows.count == 0)
        return rc;
    /* The registered names, as the array recovery and every claim pass to the database. */
    cairn__buf_init(&h->names);
    cairn__buf_puts(&h->names, "{");
    for (size_t i = 0; i < h->workflows.count; i++)
        cairn__buf_array_elem(&h->names, h->workflows.items[i].name);
    cairn__buf_puts(&h->names, "}");
    if (h->names.oom)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    rc = cairn__fleet_register(h);
    if (rc == CAIRN_OK) {
        cairn__commit_warm(h);
        rc = cairn__recover(h, NULL);
    }
    if (rc != CAIRN_OK)
        return rc;
    return cairn__dispatch_start(h);
}

/* Reads the status row of an existing workflow for cairn_start's idempotent path. */
static int existing(cairn *h, const char *id, const char *workflow)
{
    const char *vals[1] = {id};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_RESULT, 1, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return cairn__fail(CAIRN_EDB, "workflow %s was reported existing but cannot be read", id);
    }
    if (strcmp(PQgetvalue(res, 0, 0), workflow) != 0) {
        rc = cairn__fail(CAIRN_ECONFLICT, "workflow ID '%s' already belongs to a '%s' workflow, not '%s'", id,
                         PQgetvalue(res, 0, 0), workflow);
        PQclear(res);
        return rc;
    }
    int mine = strcmp(PQgetvalue(res, 0, 1), "PENDING") == 0 && !PQgetisnull(res, 0, 2) &&
               strcmp(PQgetvalue(res, 0, 2), h->executor_id) == 0;
    PQclear(res);
    /* Ours but not running here: a start whose commit looked lost, or a stop before recovery. */
    return mine ? cairn__recover(h, id) : CAIRN_OK;
}

#define SOPT(o, field) \
    ((o) && (o)->size >= offsetof(cairn_start_options, field) + sizeof((o)->field) ? (o)->field : NULL)
#define SOPTI(o, field) \
    ((o) && (o)->size >= offsetof(cairn_start_options, field) + sizeof((o)->field) ? (o)->field : 0)

/* Whether the array literal list (made by list_literal()) holds item. */
static int literal_has(const char *list, const char *item)
{
    cairn__buf b;
    cairn__buf_init(&b);
    cairn__buf_array_elem(&b, item);
    int found = 0;
    if (!b.oom) {
        size_t n = strlen(b.data);
        for (const char *p = strstr(list, b.data); p && !found; p = strstr(p + 1, b.data))
            found = (p[-1] == '{' || p[-1] == ',') && (p[n] == ',' || p[n] == '}');
    }
    cairn__buf_free(&b);
    return found;
}

/*
 * Whether this handle's dispatcher may claim a workflow of this name that
 * it enqueues in this queue: the name is registered, the workers run, the
 * queue is served and the version this handle records is one it runs.
 * (Queue limits may still hold it back.)
 */
static int serves(cairn *h, const char *workflow, const char *queue)
{
    if (!h->started || h->stopped || atomic_load(&h->stopping) || atomic_load(&h->taken) ||
        !cairn__registry_find(&h->workflows, workflow))
        return 0;
    if (h->accept && h->app_version && !literal_has(h->accept, h->app_version))
        return 0;
    return !h->queues || literal_has(h->queues, queue);
}

/*
 * cairn_start() with a queue: through group commit, or with a dedup key
 * through cairn.enqueue() on a pool connection. The ID is chosen here, so a retry after a lost connection
 * finds the workflow its first try created instead of making another.
 * *got receives the ID cairn.enqueue() returned: the live workflow's when
 * the dedup key is taken, else id.
 */
static int start_queued(cairn *h, const char *workflow, const char *input, const char *id, const char *queue,
                        const cairn_start_options *opts, char **got, int local)
{
    char err[256];
    const char *dedup = SOPT(opts, dedup_key);
    const char *part = SOPT(opts, partition_key);
    int delay_ms = SOPTI(opts, delay_ms);
    if (dedup && cairn__check_name("dedup key", dedup, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (part && cairn__check_name("partition key", part, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (delay_ms < 0)
        return cairn__fail(CAIRN_EINVAL, "delay_ms is negative");
    if (!dedup) {
        /*
         * Without a dedup key nothing needs cairn.enqueue()'s lookups: the
         * rows go through group commit like a direct start's, sharing a
         * commit with whatever else is being written.
         */
        cairn__item it;
        memset(&it, 0, sizeof it);
        it.kind = CAIRN__ENQUEUE_ITEM;
        it.id = id;
        it.name = workflow;
        it.queue = queue;
        it.input = input;
        it.priority = SOPTI(opts, priority);
        it.delay_ms = delay_ms;
        it.partition_key = part;
        it.give_up_at = cairn__now_ms() + h->connect_timeout_ms;
        /*
         * An eager start: with a thread free here, the workflow may be
         * written as already claimed by this executor (see EAGER_OK in
         * conn.c for when the database agrees) and run at once, as a claim
         * by this executor would, without the claim's round trip.
         */
        cairn__run *r = NULL;
        if (local && !(h->flags & CAIRN_NO_EAGER) && delay_ms == 0 && atomic_load(&h->busy) < h->workers) {
            r = cairn__run_reserve(h, id, workflow, cairn__registry_find(&h->workflows, workflow));
            if (r && !(r->input = cairn__strdup(input))) {
                cairn__run_cancel(h, r);
                return cairn__fail(CAIRN_ENOMEM, "out of memory");
            }
        }
        it.eager = r != NULL;
        /*
         * Expected before it can be claimed (or, eager, while its run is
         * surely active), so that no claim and end of the run can come
         * between the commit and the entry and leave the await waiting.
         */
        if (local)
            cairn__expect_add(h, id);
        int rc = cairn__commit(h, &it);
        if (r && rc == CAIRN_OK && it.applied && it.taken) {
            r->fresh = 1;
            r->attempt = 1;
            cairn__run_submit(h, r);
        } else if (r) {
            cairn__run_cancel(h, r);
        }
        if (rc == CAIRN_OK && !it.applied)
            rc = existing(h, id, workflow); /* the ID was taken: the same workflow, or a conflict */
        if (rc != CAIRN_OK) {
            cairn__run *kept = NULL;
            if (local && cairn__expect_take(h, id, &kept) && kept)
                cairn__run_release(h, kept);
            return rc;
        }
        *got = cairn__strdup(id);
        return *got ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    char prio[16], delay[32];
    snprintf(prio, sizeof prio, "%d", SOPTI(opts, priority));
    snprintf(delay, sizeof delay, "%d", delay_ms);
    const char *vals[10] = {workflow, input, queue, id, prio, delay, dedup, part,
                            SOPTI(opts, dedup_error) ? "true" : "false", h->app_version};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_ENQUEUE, 10, vals, &res);
    if (rc == CAIRN_EDB && strcmp(cairn_sqlstate(h), "23505") == 0)
        rc = CAIRN_ECONFLICT; /* the ID belongs to another workflow name, or dedup_error */
    if (rc != CAIRN_OK)
        return rc;
    *got = cairn__strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (local && *got)
        cairn__expect_add(h, *got); /* a claim before this is caught too: the entry looks for an active run */
    return *got ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
}

int cairn_start(cairn *h, const char *workflow, const char *input, const cairn_start_options *opts, char **id_out)
{
    cairn__clear_error();
    char err[256];
    char gen[37];
    int rc0;
    if (id_out)
        *id_out = NULL;
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (opts && opts->size == 0)
        return cairn__fail(CAIRN_EINVAL, "cairn_start_options.size is 0; set it to sizeof(cairn_start_options)");
    if (cairn__check_name("workflow name", workflow, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    const char *id = SOPT(opts, id);
    if (id) {
        if (cairn__check_name("workflow ID", id, err, sizeof err) != CAIRN_OK)
            return cairn__fail(CAIRN_EINVAL, "%s", err);
    } else {
        cairn__uuid7(gen);
        id = gen;
    }
    const char *queue = SOPT(opts, queue);
    if (!queue)
        queue = "default";
    else if (cairn__check_name("queue name", queue, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!input)
        input = "null";
    size_t len = strlen(input);
    if (len > h->max_payload)
        return cairn__fail(CAIRN_ETOOBIG, "workflow input is %zu bytes; the limit is %zu", len, h->max_payload);
    if (cairn_json_check(input, len, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EJSON, "workflow input: %s", err);
    int timeout_ms = SOPTI(opts, timeout_ms);
    if (timeout_ms < 0)
        return cairn__fail(CAIRN_EINVAL, "timeout_ms is negative");
    if (SOPT(opts, queue)) {
        if (timeout_ms > 0 && (rc0 = cairn__deadline_first(h, id, timeout_ms)) != CAIRN_OK)
            return rc0;
        /* Any executor that knows the name may run it, so neither registration nor workers are needed here. */
        char *got = NULL;
        int local = serves(h, workflow, queue);
        rc0 = start_queued(h, workflow, input, id, queue, opts, &got, local);
        if (rc0 == CAIRN_OK && id_out)
            *id_out = got;
        else
            free(got);
        return rc0;
    }
    const cairn__entry *wf = cairn__registry_find(&h->workflows, workflow);
    if (!wf)
        return cairn__fail(CAIRN_ENOTFOUND, "no workflow is registered as '%s'", workflow);
    if (!h->started)
        return cairn__fail(CAIRN_EMISUSE, "call cairn_start_workers() before starting workflows");
    if (h->stopped || atomic_load(&h->stopping))
        return cairn__fail(CAIRN_EMISUSE, "the handle is stopped; it starts no more workflows");
    if (atomic_load(&h->taken))
        return cairn__fail(CAIRN_EMISUSE, "another process took over executor ID '%s'", h->executor_id);
    if (timeout_ms > 0 && (rc0 = cairn__deadline_first(h, id, timeout_ms)) != CAIRN_OK)
        return rc0;

    cairn__run *r = cairn__run_reserve(h, id, workflow, wf);
    int rc = CAIRN_OK;
    if (r) {
        r->input = cairn__strdup(input);
        if (!r->input) {
            cairn__run_cancel(h, r);
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
        }
        cairn__item it;
        memset(&it, 0, sizeof it);
        it.kind = CAIRN__START_ITEM;
        it.id = id;
        it.name = workflow;
        it.queue = queue;
        it.input = input;
        it.give_up_at = cairn__now_ms() + h->connect_timeout_ms;
        rc = cairn__commit(h, &it);
        if (rc == CAIRN_OK && it.applied) {
            r->fresh = 1;
            r->attempt = 1;
            cairn__run_submit(h, r);
        } else {
            cairn__run_cancel(h, r);
            if (rc == CAIRN_OK)
                rc = existing(h, id, workflow);
        }
    } else {
        /* Already running in this process; only the name needs checking. */
        cairn__run *a = cairn__run_find(h, id);
        if (a) {
            if (strcmp(a->name, workflow) != 0)
                rc = cairn__fail(CAIRN_ECONFLICT, "workflow ID '%s' already belongs to a '%s' workflow, not '%s'", id,
                                 a->name, workflow);
            cairn__run_release(h, a);
        } else {
            rc = existing(h, id, workflow);
        }
    }
    if (rc == CAIRN_OK && id_out) {
        *id_out = cairn__strdup(id);
        if (!*id_out)
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    return rc;
}
