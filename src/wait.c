/*
 * Durable waits inside a workflow: sleeping, receiving messages and
 * awaiting another workflow, and the suspension that lets a long wait give
 * its thread back.
 *
 * A wait records what it needs to be replayed: a sleep its wake-up time
 * (step "cairn.sleep", output {"until": epoch ms on the database clock}),
 * a receive with a timeout its deadline ("cairn.deadline", the same
 * output) at its first position and the message it consumed ("cairn.recv")
 * at the next; an await likewise records the deadline and then the awaited
 * workflow's outcome ("cairn.await", {"status", "result"}). A wait with little time left keeps its thread; a longer one
 * suspends the workflow (SUSPEND through group commit, with the deadline's
 * checkpoint in the same commit) and returns CAIRN_ESUSPENDED, and the
 * workflow's code returns. Dispatchers resume it by replay when it is due:
 * at its wake-up time, or at once when a message or a finished child
 * leaves a wake-up request for it (see sql/004_waits.sql).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"

#define SLEEP_STEP "cairn.sleep"
#define DEADLINE_STEP "cairn.deadline"
#define RECV_STEP "cairn.recv"
#define AWAIT_STEP "cairn.await"
#define TIMEOUT_ERROR "{\"message\":\"timed out\",\"timeout\":true}"

/* The recorded checkpoint at position number, or NULL. */
static const cairn__ckpt *recorded(const cairn_ctx *ctx, int number)
{
    return number <= ctx->nrec && ctx->rec[number].name ? &ctx->rec[number] : NULL;
}

/* Reads {"until": N} from a recorded wait; -1 if the recording has none. */
static long long recorded_until(const char *output)
{
    json_t *j = output ? json_loads(output, JSON_DECODE_ANY, NULL) : NULL;
    json_t *u = json_object_get(j, "until");
    long long v = json_is_integer(u) ? (long long)json_integer_value(u) : -1;
    json_decref(j);
    return v;
}

/* Lowers h->next_wake_ms to the monotonic time at which db_ms (database clock) arrives. */
static void note_wake(cairn *h, long long db_ms)
{
    long long mono = cairn__now_ms() + (db_ms - cairn__db_now_ms(h));
    long long cur = atomic_load(&h->next_wake_ms);
    while ((cur == 0 || mono < cur) && !atomic_compare_exchange_weak(&h->next_wake_ms, &cur, mono))
        ;
}

/*
 * Suspends the workflow: no executor owns it until wake_ms (database
 * clock; -1: until a wake-up request), and the checkpoint at ckpt_step
 * (0: none) is written with it. Returns CAIRN_ESUSPENDED, or the code that
 * stopped the suspension.
 */
static int suspend(cairn_ctx *ctx, int ckpt_step, const char *ckpt_name, const char *ckpt_output, long long wake_ms,
                   const char *waiting)
{
    cairn *h = ctx->h;
    cairn__item it;
    memset(&it, 0, sizeof it);
    it.kind = CAIRN__SUSPEND_ITEM;
    it.id = ctx->run->id;
    it.step = ckpt_step;
    it.name = ckpt_name;
    it.output = ckpt_output;
    it.wake_ms = wake_ms;
    it.waiting = waiting;
    int rc = cairn__commit(h, &it);
    if (rc != CAIRN_OK) {
        ctx->abandoned = 1;
        return rc == CAIRN_ESHUTDOWN ? rc : cairn__fail(rc, "suspending workflow %s: %s", ctx->run->id, cairn_errmsg(h));
    }
    if (!it.applied) {
        /* Another executor owns it now (this one was presumed dead). */
        ctx->abandoned = 1;
        return cairn__fail(CAIRN_ESHUTDOWN, "workflow %s is no longer owned by this executor; stop here",
                           ctx->run->id);
    }
    ctx->suspended = 1;
    if (wake_ms >= 0)
        note_wake(h, wake_ms);
    if (strcmp(waiting, "sleep") != 0)
        atomic_store(&h->look, 1); /* a wake-up request may have come while it was suspending */
    cairn__log(h, CAIRN_LOG_DEBUG, "workflow %s suspended (%s)", ctx->run->id, waiting);
    return cairn__fail(CAIRN_ESUSPENDED, "workflow %s waits (%s); it resumes by replay", ctx->run->id, waiting);
}

/* Writes one checkpoint through group commit. *applied: it was written (not there already). */
static int record(cairn_ctx *ctx, int number, const char *name, const char *output, const char *error, int *applied)
{
    cairn__item it;
    memset(&it, 0, sizeof it);
    it.kind = CAIRN__STEP_ITEM;
    it.id = ctx->run->id;
    it.step = number;
    it.name = name;
    it.output = output;
    it.error = error;
    int rc = cairn__commit(ctx->h, &it);
    if (rc != CAIRN_OK) {
        ctx->abandoned = 1;
        return rc == CAIRN_ESHUTDOWN ? rc : cairn__fail(rc, "recording step %d: %s", number, cairn_errmsg(ctx->h));
    }
    *applied = it.applied;
    return CAIRN_OK;
}

/* The workflow cannot go on here (the handle is stopping, or it was handed to another executor). */
static int stop_here(cairn_ctx *ctx)
{
    ctx->abandoned = 1;
    return cairn__ctx_usable(ctx);
}

/* Sleeps on this thread for ms; CAIRN_ESHUTDOWN if the handle stops meanwhile. */
static int sleep_here(cairn_ctx *ctx, long long ms)
{
    if (ms > 0 && cairn__sleep(ctx->h, ms)) {
        ctx->abandoned = 1;
        return cairn__fail(CAIRN_ESHUTDOWN, "the handle is stopping; the workflow resumes later");
    }
    return CAIRN_OK;
}

/* Whether a wait with remaining ms left (negative: no end) gives its thread back. */
static int should_suspend(const cairn *h, long long remaining)
{
    return remaining < 0 || h->suspend_after_ms < 0 || remaining > h->suspend_after_ms;
}

/* The sleep behind cairn_sleep() and cairn_sleep_until(): until is used when nothing was recorded. */
static int sleep_to(cairn_ctx *ctx, long long until)
{
    int rc = cairn__ctx_usable(ctx);
    if (rc != CAIRN_OK)
        return rc;
    cairn *h = ctx->h;
    int number = ctx->next;
    const cairn__ckpt *c = recorded(ctx, number);
    if (c) {
        if (cairn__replay_name(ctx, number, c->name, SLEEP_STEP) != CAIRN_OK)
            return CAIRN_ENONDET;
        until = recorded_until(c->output);
    }
    char out[64];
    snprintf(out, sizeof out, "{\"until\":%lld}", until);
    long long remaining = until - cairn__db_now_ms(h);
    if (remaining > 0 && should_suspend(h, remaining)) {
        if (!c && cairn__fleet_fence(h, ctx->run))
            return stop_here(ctx);
        ctx->next++;
        return suspend(ctx, c ? 0 : number, SLEEP_STEP, out, until, "sleep");
    }
    ctx->next++;
    if (!c) {
        int applied = 0;
        rc = record(ctx, number, SLEEP_STEP, out, NULL, &applied);
        if (rc != CAIRN_OK)
            return rc;
    }
    /* Sleeping here, by this host's clock: the uncertainty of the reading is added, never taken off. */
    return remaining > 0 ? sleep_here(ctx, remaining + cairn__db_clock_error_ms(h)) : CAIRN_OK;
}

int cairn_sleep(cairn_ctx *ctx, long long ms)
{
    cairn__clear_error();
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    if (ms < 0)
        return cairn__fail(CAIRN_EINVAL, "sleep of %lld ms: the duration is negative", ms);
    return sleep_to(ctx, cairn__db_now_ms(ctx->h) + ms);
}

int cairn_sleep_until(cairn_ctx *ctx, long long epoch_ms)
{
    cairn__clear_error();
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    return sleep_to(ctx, epoch_ms);
}

/*
 * One look for what a wait waits for, at result position number: sets
 * *found when the result is recorded (now or before) and then fills
 * *output and *error (malloc'd or NULL) with the recording. May lower
 * *backstop_ms: the longest a suspension may last without a look.
 */
typedef int (*look_fn)(cairn_ctx *ctx, int number, void *arg, int *found, char **output, char **error,
                       long long *backstop_ms);

/* Copies a result column (NULL stays NULL); CAIRN_ENOMEM if the copy failed. */
static int copy_col(const PGresult *res, int col, char **out)
{
    *out = PQgetisnull(res, 0, col) ? NULL : cairn__strdup(PQgetvalue(res, 0, col));
    return PQgetisnull(res, 0, col) || *out ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
}

/*
 * A durable wait whose result is recorded as step `name` (after a
 * "cairn.deadline" step when it had to wait with a timeout): replays the
 * recording, or looks with `look` until found, records a timeout when the
 * deadline passes, waits on the thread when little time is left and
 * suspends otherwise (`waiting` says what for). On CAIRN_OK *output and
 * *error hold the recording (error TIMEOUT_ERROR for a timeout).
 */
static int durable_wait(cairn_ctx *ctx, const char *name, const char *waiting, int timeout_ms, look_fn look,
                        void *arg, char **output, char **error)
{
    *output = *error = NULL;
    int rc = cairn__ctx_usable(ctx);
    if (rc != CAIRN_OK)
        return rc;
    cairn *h = ctx->h;

    /* A deadline recorded by an earlier execution moves the result one position on. */
    int number = ctx->next;
    long long until = -1;
    const cairn__ckpt *c = recorded(ctx, number);
    if (c && strcmp(c->name, DEADLINE_STEP) == 0) {
        until = recorded_until(c->output);
        c = recorded(ctx, ++number);
    }
    if (c) {
        if (cairn__replay_name(ctx, number, c->name, name) != CAIRN_OK)
            return CAIRN_ENONDET;
        *output = c->output ? cairn__strdup(c->output) : NULL;
        *error = c->error ? cairn__strdup(c->error) : NULL;
        if ((c->output && !*output) || (c->error && !*error))
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
        ctx->next = number + 1;
        return CAIRN_OK;
    }
    if (cairn__fleet_fence(h, ctx->run))
        return stop_here(ctx);

    long long poll = 10;
    for (;;) {
        int found = 0;
        long long backstop = -1;
        rc = look(ctx, number, arg, &found, output, error, &backstop);
        if (rc != CAIRN_OK) {
            free(*output);
            free(*error);
            *output = *error = NULL;
            return rc;
        }
        if (found) {
            ctx->next = number + 1;
            return CAIRN_OK;
        }
        long long now = cairn__db_now_ms(h);
        if (timeout_ms == 0 || (until >= 0 && now >= until)) {
            int applied = 0;
            rc = record(ctx, number, name, NULL, TIMEOUT_ERROR, &applied);
            if (rc != CAIRN_OK)
                return rc;
            if (!applied)
                continue; /* another execution recorded this wait: read what it got */
            ctx->next = number + 1;
            *error = cairn__strdup(TIMEOUT_ERROR);
            return *error ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
        }
        int new_deadline = 0;
        if (until < 0 && timeout_ms > 0) {
            until = now + timeout_ms;
            new_deadline = number++;
        }
        char out[64];
        snprintf(out, sizeof out, "{\"until\":%lld}", until);
        long long remaining = until < 0 ? -1 : until - now;
        if (should_suspend(h, remaining)) {
            long long wake = until;
            if (backstop >= 0 && (wake < 0 || wake > now + backstop))
                wake = now + backstop;
            ctx->next = number; /* the result's position: replay resumes there */
            return suspend(ctx, new_deadline, DEADLINE_STEP, out, wake, waiting);
        }
        if (new_deadline) {
            int applied = 0;
            rc = record(ctx, new_deadline, DEADLINE_STEP, out, NULL, &applied);
            if (rc != CAIRN_OK)
                return rc;
            if (!applied) {
                /* Another execution got to this position first; stop and let replay sort it out. */
                ctx->abandoned = 1;
                return cairn__fail(CAIRN_ESHUTDOWN, "workflow %s is running elsewhere; stop here", ctx->run->id);
            }
        }
        /* A short wait keeps the thread and looks again with growing pauses. */
        long long pause = poll < remaining ? poll : remaining;
        rc = sleep_here(ctx, pause);
        if (rc != CAIRN_OK)
            return rc;
        poll = poll * 2 > 100 ? 100 : poll * 2;
    }
}

/* Consumes the oldest message of the topic (arg) into step number, exactly once. */
static int look_message(cairn_ctx *ctx, int number, void *arg, int *found, char **output, char **error,
                        long long *backstop_ms)
{
    (void)backstop_ms;
    char num[16];
    snprintf(num, sizeof num, "%d", number);
    const char *vals[3] = {ctx->run->id, num, arg};
    PGresult *res = NULL;
    *found = 0;
    int rc = cairn__query(ctx->h, CAIRN__Q_RECEIVE, 3, vals, &res);
    if (rc != CAIRN_OK) {
        ctx->abandoned = 1;
        return rc;
    }
    if (PQntuples(res) == 1) {
        *found = 1;
        rc = copy_col(res, 0, output);
        if (rc == CAIRN_OK)
            rc = copy_col(res, 1, error);
    }
    PQclear(res);
    return rc;
}

int cairn_recv(cairn_ctx *ctx, const char *topic, int timeout_ms, char **message)
{
    cairn__clear_error();
    char err[256];
    if (message)
        *message = NULL;
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    if (cairn__check_name("topic", topic, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    char waiting[CAIRN__NAME_MAX + 16];
    snprintf(waiting, sizeof waiting, "message:%s", topic);
    char *output = NULL, *error = NULL;
    int rc = durable_wait(ctx, RECV_STEP, waiting, timeout_ms, look_message, (void *)topic, &output, &error);
    if (rc == CAIRN_OK && error)
        rc = cairn__fail(CAIRN_ETIMEDOUT, "no message on topic '%s' before the receive's timeout", topic);
    else if (rc == CAIRN_OK && message)
        *message = output ? output : cairn__strdup("null"), output = NULL;
    free(output);
    free(error);
    return rc;
}

/*
 * Records the outcome of the awaited workflow (arg) into step number once it
 * has finished. Another workflow than a child is looked at again every 5 s
 * while suspended: only a child's finish wakes its awaiter.
 */
static int look_workflow(cairn_ctx *ctx, int number, void *arg, int *found, char **output, char **error,
                         long long *backstop_ms)
{
    char num[16];
    snprintf(num, sizeof num, "%d", number);
    const char *vals[3] = {ctx->run->id, num, arg};
    PGresult *res = NULL;
    *found = 0;
    int rc = cairn__query(ctx->h, CAIRN__Q_AWAIT_RESULT, 3, vals, &res);
    if (rc != CAIRN_OK) {
        ctx->abandoned = 1;
        return rc;
    }
    const char *state = PQntuples(res) == 1 ? PQgetvalue(res, 0, 2) : "MISSING";
    if (strcmp(state, "MISSING") == 0) {
        rc = cairn__fail(CAIRN_ENOTFOUND, "no workflow has ID '%s'", (const char *)arg);
    } else if (strcmp(state, "RUNNING") == 0) {
        *backstop_ms = 5000;
    } else if (strcmp(state, "RUNNING_CHILD") != 0) {
        *found = 1;
        rc = copy_col(res, 0, output);
        if (rc == CAIRN_OK)
            rc = copy_col(res, 1, error);
    }
    PQclear(res);
    return rc;
}

int cairn_ctx_await(cairn_ctx *ctx, const char *workflow_id, int timeout_ms, cairn_status *status, char **result)
{
    cairn__clear_error();
    char err[256];
    if (result)
        *result = NULL;
    if (!ctx || !status)
        return cairn__fail(CAIRN_EINVAL, "ctx or status is NULL");
    if (cairn__check_name("workflow ID", workflow_id, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (strcmp(workflow_id, ctx->run->id) == 0)
        return cairn__fail(CAIRN_EINVAL, "a workflow cannot await itself");
    char waiting[CAIRN__NAME_MAX + 16];
    snprintf(waiting, sizeof waiting, "workflow:%s", workflow_id);
    char *output = NULL, *error = NULL;
    int rc = durable_wait(ctx, AWAIT_STEP, waiting, timeout_ms, look_workflow, (void *)workflow_id, &output, &error);
    if (rc == CAIRN_OK && error) {
        rc = cairn__fail(CAIRN_ETIMEDOUT, "workflow %s had not finished before the await's timeout", workflow_id);
    } else if (rc == CAIRN_OK) {
        json_t *j = json_loads(output ? output : "", JSON_DECODE_ANY, NULL);
        const char *st = json_string_value(json_object_get(j, "status"));
        json_t *res = json_object_get(j, "result");
        *status = st ? cairn__status_parse(st) : CAIRN_STATUS_UNKNOWN;
        if (*status == CAIRN_STATUS_UNKNOWN)
            rc = cairn__fail(CAIRN_EDB, "the recorded outcome of workflow %s cannot be read", workflow_id);
        else if (result && !(*result = json_dumps(res ? res : json_null(), JSON_COMPACT | JSON_ENCODE_ANY)))
            rc = cairn__fail(CAIRN_ENOMEM, "out of memory");
        json_decref(j);
    }
    free(output);
    free(error);
    return rc;
}

/* A message sent from a workflow: cairn.send() in the transaction that records the step. */
typedef struct send_args {
    const char *to, *topic, *message;
} send_args;

static int send_tx(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    const send_args *a = udata;
    const char *vals[3] = {a->to, a->topic, a->message};
    PGresult *r = PQexecParams(conn, "SELECT cairn.send($1, $2, $3::pg_catalog.json)", 3, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? CAIRN_OK : cairn_step_fail_pg(step, r);
    PQclear(r);
    return rc;
}

int cairn_ctx_send(cairn_ctx *ctx, const char *workflow_id, const char *topic, const char *message)
{
    cairn__clear_error();
    char err[256];
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    if (cairn__check_name("workflow ID", workflow_id, err, sizeof err) != CAIRN_OK ||
        cairn__check_name("topic", topic, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!message)
        message = "null";
    size_t len = strlen(message);
    if (len > ctx->h->max_payload)
        return cairn__fail(CAIRN_ETOOBIG, "message is %zu bytes; the limit is %zu", len, ctx->h->max_payload);
    if (cairn_json_check(message, len, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EJSON, "message: %s", err);
    send_args a = {workflow_id, topic, message};
    cairn__entry e = {.name = "cairn.send", .tx = send_tx, .udata = &a};
    return cairn__step_run(ctx, e.name, &e, "null", NULL);
}

int cairn_send_message(cairn *h, const char *workflow_id, const char *topic, const char *message,
                       const char *message_id)
{
    cairn__clear_error();
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    cairn__conn *c;
    cairn__pool_get(h, &c);
    int rc = cairn__conn_ensure(h, c);
    if (rc == CAIRN_OK) {
        rc = cairn_send(c->pg, workflow_id, topic, message, message_id);
        if (rc != CAIRN_OK && PQstatus(c->pg) != CONNECTION_OK) {
            cairn__conn_drop(c);
            rc = cairn__fail(CAIRN_ECONN, "lost the connection while sending; the message may or may not have been "
                                          "sent (send again with the same message ID)");
        }
    }
    cairn__pool_put(h, c);
    return rc;
}
