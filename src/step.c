/*
 * Executing one workflow: load what was recorded (unless the run is
 * fresh), call the workflow function, serve each cairn_step() from the
 * recording or by running the step with its retry policy and writing its
 * checkpoint, then record the workflow's output or error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"


cairn *cairn__ctx_handle(cairn_ctx *ctx) { return ctx->h; }
const char *cairn_ctx_id(const cairn_ctx *ctx) { return ctx->run->id; }
const char *cairn_ctx_name(const cairn_ctx *ctx) { return ctx->run->name; }
int cairn_ctx_attempt(const cairn_ctx *ctx) { return ctx->run->attempt; }
const char *cairn_ctx_errmsg(const cairn_ctx *ctx) { return ctx->errmsg; }
int cairn_ctx_replaying(const cairn_ctx *ctx) { return ctx->next <= ctx->nrec; }

const char *cairn_step_key(const cairn_step_ctx *s) { return s->key; }
const char *cairn_step_workflow_id(const cairn_step_ctx *s) { return s->workflow_id; }
int cairn_step_number(const cairn_step_ctx *s) { return s->number; }
int cairn_step_attempt(const cairn_step_ctx *s) { return s->attempt; }

/* printf into a fresh malloc'd string, replacing *slot. */
static void set_message(char **slot, const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    free(*slot);
    *slot = cairn__strdup(buf);
}

int cairn_fail(cairn_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(&ctx->fail_msg, fmt, ap);
    va_end(ap);
    return CAIRN_EFAIL;
}

int cairn_step_fail_pg(cairn_step_ctx *s, const PGresult *res)
{
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    size_t n = msg ? strlen(msg) : 0;
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    free(s->fail_msg);
    s->fail_msg = malloc(n + 1);
    if (s->fail_msg) {
        memcpy(s->fail_msg, msg ? msg : "", n);
        s->fail_msg[n] = '\0';
    }
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", st ? st : "");
    return CAIRN_EDB;
}

int cairn_step_fail(cairn_step_ctx *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(&s->fail_msg, fmt, ap);
    va_end(ap);
    return CAIRN_EFAIL;
}

/* Pulls "message" out of a recorded error JSON for cairn_ctx_errmsg(). */
static void error_message(const char *error_json, char *out, size_t outlen)
{
    json_t *j = json_loads(error_json, JSON_DECODE_ANY, NULL);
    const char *m = json_string_value(json_object_get(j, "message"));
    snprintf(out, outlen, "%s", m ? m : error_json);
    json_decref(j);
}

void cairn__recording_free(cairn__ckpt *rec, int nrec)
{
    for (int i = 0; rec && i <= nrec; i++) {
        free(rec[i].name);
        free(rec[i].output);
        free(rec[i].error);
    }
    free(rec);
}

/*
 * Builds a recording from rows [from, to) of res, whose columns from c0 on
 * are (step, name, output, error); step 0 is the workflow's input, which
 * replaces *input. Returns CAIRN_OK or CAIRN_ENOMEM.
 */
static int recording_from_rows(const PGresult *res, int c0, int from, int to, cairn__ckpt **rec, int *nrec,
                               char **input)
{
    int maxstep = 0;
    for (int i = from; i < to; i++) {
        int step = atoi(PQgetvalue(res, i, c0));
        if (step > maxstep)
            maxstep = step;
    }
    *rec = calloc((size_t)maxstep + 1, sizeof **rec);
    if (!*rec)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    *nrec = maxstep;
    int oom = 0;
    for (int i = from; i < to; i++) {
        int step = atoi(PQgetvalue(res, i, c0));
        const char *out = PQgetisnull(res, i, c0 + 2) ? NULL : PQgetvalue(res, i, c0 + 2);
        if (step == 0) {
            free(*input);
            *input = cairn__strdup(out ? out : "null");
            oom |= !*input;
            continue;
        }
        cairn__ckpt *c = &(*rec)[step];
        c->step = step;
        c->name = cairn__strdup(PQgetvalue(res, i, c0 + 1));
        c->output = cairn__strdup(out);
        c->error = PQgetisnull(res, i, c0 + 3) ? NULL : cairn__strdup(PQgetvalue(res, i, c0 + 3));
        oom |= !c->name || (out && !c->output) || (!PQgetisnull(res, i, c0 + 3) && !c->error);
    }
    if (!*input)
        oom |= !(*input = cairn__strdup("null"));
    return oom ? cairn__fail(CAIRN_ENOMEM, "out of memory") : CAIRN_OK;
}

/* Loads the input and every checkpoint of a resumed workflow in one query, unless the dispatcher did. */
static int load_recording(cairn *h, cairn_ctx *ctx)
{
    cairn__run *r = ctx->run;
    if (r->preloaded) {
        ctx->rec = r->pre_rec;
        ctx->nrec = r->pre_nrec;
        r->pre_rec = NULL;
        r->pre_nrec = 0;
        r->preloaded = 0;
        return CAIRN_OK;
    }
    const char *vals[1] = {r->id};
    PGresult *res = NULL;
    int rc;
    while ((rc = cairn__query(h, CAIRN__Q_LOAD, 1, vals, &res)) == CAIRN_ECONN)
        cairn__log(h, CAIRN_LOG_WARN, "loading workflow %s: %s; retrying", r->id, cairn_errmsg(h));
    if (rc != CAIRN_OK)
        return rc;
    rc = recording_from_rows(res, 0, 0, PQntuples(res), &ctx->rec, &ctx->nrec, &r->input);
    PQclear(res);
    return rc;
}

int cairn__preload(cairn *h, PGconn *pg, cairn__run *const *runs, int n)
{
    cairn__buf ids;
    cairn__buf_init(&ids);
    cairn__buf_puts(&ids, "{");
    for (int i = 0; i < n; i++)
        cairn__buf_array_elem(&ids, runs[i]->id);
    cairn__buf_puts(&ids, "}");
    if (ids.oom) {
        cairn__buf_free(&ids);
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    const char *vals[1] = {ids.data};
    PGresult *res = PQexecPrepared(pg, cairn__stmt_name(CAIRN__Q_LOAD_MANY), 1, vals, NULL, NULL, 0);
    cairn__buf_free(&ids);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, res) ? CAIRN_ECONN : CAIRN_EDB, res, pg, "loading recordings");
        PQclear(res);
        return rc;
    }
    /* Rows come grouped by ID; each group goes to its run. */
    int rows = PQntuples(res);
    for (int from = 0, to; from < rows; from = to) {
        const char *id = PQgetvalue(res, from, 0);
        for (to = from + 1; to < rows && strcmp(PQgetvalue(res, to, 0), id) == 0; to++)
            ;
        for (int i = 0; i < n; i++) {
            cairn__run *r = runs[i];
            if (r->preloaded || strcmp(r->id, id) != 0)
                continue;
            if (recording_from_rows(res, 1, from, to, &r->pre_rec, &r->pre_nrec, &r->input) == CAIRN_OK) {
                r->preloaded = 1;
            } else {
                cairn__recording_free(r->pre_rec, r->pre_nrec);
                r->pre_rec = NULL;
                r->pre_nrec = 0;
            }
            break;
        }
    }
    PQclear(res);
    (void)h;
    return CAIRN_OK;
}

/* Returns a recorded checkpoint to the workflow as cairn_step() would. */
int cairn__replay_name(cairn_ctx *ctx, int number, const char *recorded, const char *called)
{
    if (strcmp(recorded, called) == 0)
        return CAIRN_OK;
    ctx->nondet = 1;
    snprintf(ctx->errmsg, sizeof ctx->errmsg,
             "non-deterministic workflow: step %d was recorded as '%s' but this execution called '%s'", number,
             recorded, called);
    return cairn__fail(CAIRN_ENONDET, "%s", ctx->errmsg);
}

static int replay(cairn_ctx *ctx, const char *name, const char *rname, const char *output, const char *error,
                  int number, char **out)
{
    if (cairn__replay_name(ctx, number, rname, name) != CAIRN_OK)
        return CAIRN_ENONDET;
    if (error) {
        error_message(error, ctx->errmsg, sizeof ctx->errmsg);
        return cairn__fail(CAIRN_ESTEP, "step %d (%s) failed: %s", number, name, ctx->errmsg);
    }
    if (out) {
        *out = cairn__strdup(output ? output : "null");
        if (!*out)
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    return CAIRN_OK;
}

/* Returns the checkpoint another execution recorded at this position. */
static int replay_from_db(cairn_ctx *ctx, const char *name, int number, char **output)
{
    char num[16];
    snprintf(num, sizeof num, "%d", number);
    const char *vals[2] = {ctx->run->id, num};
    PGresult *res = NULL;
    int rc = cairn__query(ctx->h, CAIRN__Q_STEP_GET, 2, vals, &res);
    if (rc != CAIRN_OK) {
        ctx->abandoned = 1;
        return rc;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        ctx->abandoned = 1;
        return cairn__fail(CAIRN_EDB, "step %d of %s vanished after a conflicting write", number, ctx->run->id);
    }
    rc = replay(ctx, name, PQgetvalue(res, 0, 0), PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
                PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2), number, output);
    PQclear(res);
    return rc;
}

static long long backoff_ms(const cairn_retry *p, int attempt)
{
    double base = p->base_ms > 0 ? p->base_ms : 100;
    double factor = p->factor > 0 ? p->factor : 2.0;
    double cap = p->cap_ms > 0 ? p->cap_ms : 30000;
    double d = base;
    for (int i = 2; i < attempt && d < cap; i++)
        d *= factor;
    return (long long)(d < cap ? d : cap);
}

/* Stop the workflow here: the handle is stopping, or the workflow was handed to another executor. */
static int abandon(cairn_ctx *ctx)
{
    ctx->abandoned = 1;
    if (cairn__run_lost(ctx->h, ctx->run))
        return cairn__fail(CAIRN_ESHUTDOWN, "this executor was presumed dead and the workflow was handed to "
                                            "another; stop here");
    return cairn__fail(CAIRN_ESHUTDOWN, "the handle is stopping; the workflow resumes later");
}

/*
 * Stop the workflow here: it was cancelled. Nothing more is recorded for
 * it; the database says CANCELLED already.
 */
static int cancelled(cairn_ctx *ctx)
{
    ctx->cancelled = 1;
    return cairn__fail(CAIRN_ECANCELLED, "workflow %s was cancelled; return from the workflow function",
                       ctx->run->id);
}

int cairn__ctx_usable(cairn_ctx *ctx)
{
    if (ctx->nondet)
        return cairn__fail(CAIRN_ENONDET, "%s", ctx->errmsg);
    if (ctx->suspended)
        return cairn__fail(CAIRN_ESUSPENDED, "the workflow is suspended; return from the workflow function");
    if (ctx->cancelled || atomic_load(&ctx->run->cancelled))
        return cancelled(ctx);
    if (ctx->abandoned || atomic_load(&ctx->h->shutting_down) || cairn__run_lost(ctx->h, ctx->run))
        return abandon(ctx);
    return CAIRN_OK;
}

int cairn_step(cairn_ctx *ctx, const char *name, const char *input, char **output)
{
    cairn *h = ctx->h;
    char err[256];
    if (output)
        *output = NULL;
    int urc = cairn__ctx_usable(ctx);
    if (urc != CAIRN_OK)
        return urc;
    if (cairn__check_name("step name", name, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!input)
        input = "null";
    size_t inlen = strlen(input);
    if (inlen > h->max_payload)
        return cairn__fail(CAIRN_ETOOBIG, "step input is %zu bytes; the limit is %zu", inlen, h->max_payload);
    if (cairn_json_check(input, inlen, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EJSON, "step input: %s", err);
    int number = ctx->next;
    if (number <= ctx->nrec && ctx->rec[number].name) {
        ctx->next++;
        cairn__ckpt *c = &ctx->rec[number];
        return replay(ctx, name, c->name, c->output, c->error, number, output);
    }
    const cairn__entry *e = cairn__registry_find(&h->steps, name);
    if (!e)
        return cairn__fail(CAIRN_ENOTFOUND, "no step is registered as '%s'", name);
    return cairn__step_run(ctx, name, e, input, output);
}

int cairn__step_run(cairn_ctx *ctx, const char *name, const cairn__entry *e, const char *input, char **output)
{
    cairn *h = ctx->h;
    char err[256];
    if (output)
        *output = NULL;
    int urc = cairn__ctx_usable(ctx);
    if (urc != CAIRN_OK)
        return urc;
    int number = ctx->next;
    if (number <= ctx->nrec && ctx->rec[number].name) {
        ctx->next++;
        cairn__ckpt *c = &ctx->rec[number];
        return replay(ctx, name, c->name, c->output, c->error, number, output);
    }
    /* About to run new work: not if another executor may own the workflow by now. */
    if (cairn__fleet_fence(h, ctx->run))
        return abandon(ctx);
    ctx->next++;

    cairn_step_ctx s;
    memset(&s, 0, sizeof s);
    s.h = h;
    s.run = ctx->run;
    s.workflow_id = ctx->run->id;
    s.name = name;
    s.number = number;
    snprintf(s.key, sizeof s.key, "%s:%d", ctx->run->id, number);
    int max_attempts = e->retry.max_attempts > 1 ? e->retry.max_attempts : 1;
    char *result = NULL;
    int rc = CAIRN_EFAIL;
    int outcome = CAIRN__TX_FAILED; /* for transactional steps: how the last attempt ended */
    for (s.attempt = 1; s.attempt <= max_attempts; s.attempt++) {
        if (s.attempt > 1 && atomic_load(&ctx->run->cancelled)) {
            free(s.fail_msg);
            return cancelled(ctx); /* no more attempts, and the failure is not recorded */
        }
        if (s.attempt > 1 && cairn__sleep(h, backoff_ms(&e->retry, s.attempt))) {
            ctx->abandoned = 1;
            free(s.fail_msg);
            return cairn__fail(CAIRN_ESHUTDOWN, "the handle is stopping; the workflow resumes later");
        }
        result = NULL;
        free(s.fail_msg);
        s.fail_msg = NULL;
        s.sqlstate[0] = '\0';
        if (CAIRN__TRANSACTIONAL(e)) {
            outcome = cairn__tx_attempt(h, ctx->txc, e, &s, input, &result);
            if (outcome == CAIRN__TX_COMMITTED || outcome == CAIRN__TX_RECORDED)
                break;
            if (outcome == CAIRN__TX_SHUTDOWN) {
                ctx->abandoned = 1;
                free(s.fail_msg);
                return cairn__fail(CAIRN_ESHUTDOWN, "the handle is stopping; the workflow resumes later");
            }
            rc = CAIRN_EFAIL;
        } else {
            rc = e->step(&s, input, &result, e->udata);
            if (rc == CAIRN_OK) {
                size_t len = result ? strlen(result) : 4;
                if (len > h->max_payload) {
                    rc = cairn_step_fail(&s, "step output is %zu bytes; the limit is %zu", len, h->max_payload);
                } else if (result && cairn_json_check(result, len, err, sizeof err) != CAIRN_OK) {
                    rc = cairn_step_fail(&s, "step returned invalid JSON: %s", err);
                } else {
                    break;
                }
            }
        }
        free(result);
        result = NULL;
        if (!s.fail_msg) {
            char m[64];
            snprintf(m, sizeof m, "step returned %d (%s)", rc, cairn_strerror(rc));
            s.fail_msg = cairn__strdup(m);
        }
        cairn__log(h, CAIRN_LOG_DEBUG, "step %s attempt %d failed: %s", s.key, s.attempt,
                   s.fail_msg ? s.fail_msg : "");
    }
    if (CAIRN__TRANSACTIONAL(e) && outcome == CAIRN__TX_RECORDED) {
        free(s.fail_msg);
        return replay_from_db(ctx, name, number, output);
    }
    if (CAIRN__TRANSACTIONAL(e) && outcome == CAIRN__TX_COMMITTED) {
        /* The checkpoint committed with the step's own writes. */
        free(s.fail_msg);
        if (output)
            *output = result ? result : cairn__strdup("null");
        else
            free(result);
        return CAIRN_OK;
    }
    int attempts = s.attempt > max_attempts ? max_attempts : s.attempt;
    if (rc != CAIRN_OK && atomic_load(&ctx->run->cancelled)) {
        /* A step that gave up because its workflow was cancelled: not a failure to record. */
        free(s.fail_msg);
        return cancelled(ctx);
    }

    cairn__item it;
    memset(&it, 0, sizeof it);
    it.kind = CAIRN__STEP_ITEM;
    it.id = ctx->run->id;
    it.step = number;
    it.name = name;
    char *errjson = NULL;
    if (rc == CAIRN_OK) {
        it.output = result ? result : "null";
    } else {
        errjson = cairn__error_json(s.fail_msg ? s.fail_msg : "step failed", name, attempts);
        if (!errjson) {
            free(s.fail_msg);
            return cairn__fail(CAIRN_ENOMEM, "out of memory");
        }
        it.error = errjson;
    }
    int crc = cairn__commit(h, &it);
    if (crc != CAIRN_OK) {
        free(result);
        free(errjson);
        free(s.fail_msg);
        ctx->abandoned = 1;
        return crc == CAIRN_ESHUTDOWN ? crc : cairn__fail(crc, "recording step %d: %s", number, cairn_errmsg(h));
    }
    if (!it.applied) {
        /* Someone else recorded this step first: their result is the result. */
        free(result);
        free(errjson);
        free(s.fail_msg);
        return replay_from_db(ctx, name, number, output);
    }
    if (rc != CAIRN_OK) {
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "%s", s.fail_msg ? s.fail_msg : "step failed");
        free(errjson);
        free(s.fail_msg);
        return cairn__fail(CAIRN_ESTEP, "step %d (%s) failed after %d attempt(s): %s", number, name, attempts,
                           ctx->errmsg);
    }
    free(s.fail_msg);
    if (output)
        *output = result ? result : cairn__strdup("null");
    else
        free(result);
    return CAIRN_OK;
}

static void ctx_free(cairn_ctx *ctx)
{
    cairn__recording_free(ctx->rec, ctx->nrec);
    free(ctx->fail_msg);
}

/* A workflow's finish, handed to group commit without a waiting thread. */
typedef struct finish_item {
    cairn__item it; /* first, so that the item is the struct */
    cairn__run *run;
    char *output;
    char *errjson;
    int success;
} finish_item;

/* Runs on the thread that wrote the finish's batch: publishes the result, ends the run. */
static void finish_done(cairn *h, cairn__item *item)
{
    finish_item *f = (finish_item *)item;
    cairn__run *r = f->run;
    if (item->rc == CAIRN_OK && item->applied) {
        pthread_mutex_lock(&h->run_lock);
        r->status = f->success ? CAIRN_STATUS_SUCCESS : CAIRN_STATUS_ERROR;
        r->result = f->success ? f->output : f->errjson;
        pthread_mutex_unlock(&h->run_lock);
        if (f->success)
            f->output = NULL;
        else
            f->errjson = NULL;
    } else if (item->rc == CAIRN_OK && !atomic_load(&r->cancelled)) {
        cairn__log(h, CAIRN_LOG_WARN, "workflow %s finished here but is no longer owned by this executor", r->id);
    } else if (item->rc != CAIRN_OK && item->rc != CAIRN_ESHUTDOWN) {
        cairn__log(h, CAIRN_LOG_ERROR, "workflow %s: recording its result failed: %s", r->id, item->errmsg);
    }
    free(f->output);
    free(f->errjson);
    free(f);
    cairn__run_done(h, r);
}

int cairn__execute(cairn *h, cairn__run *r, cairn__conn *txc)
{
    cairn_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.h = h;
    ctx.run = r;
    ctx.txc = txc;
    ctx.next = 1;
    if (!r->wf) {
        cairn__log(h, CAIRN_LOG_WARN, "workflow %s: no code registered for '%s'", r->id, r->name);
        return 0;
    }
    if (cairn__run_lost(h, r)) {
        cairn__fleet_release_one(h, r->id); /* a no-op unless it is still ours after all */
        return 0;
    }
    if (!r->fresh && load_recording(h, &ctx) != CAIRN_OK) {
        cairn__log(h, CAIRN_LOG_WARN, "workflow %s not resumed: %s", r->id, cairn_errmsg(h));
        ctx_free(&ctx);
        return 0;
    }
    char *output = NULL;
    int rc = r->wf->wf(&ctx, r->input ? r->input : "null", &output, r->wf->udata);
    if (ctx.suspended && !ctx.abandoned) {
        /* No executor owns it now: it resumes by replay when its wait ends, here or elsewhere. */
        free(output);
        ctx_free(&ctx);
        return 0;
    }
    if (ctx.cancelled || atomic_load(&r->cancelled)) {
        /* The database says CANCELLED already; awaiters read it there. */
        free(output);
        ctx_free(&ctx);
        return 0;
    }
    if (ctx.abandoned || (rc != CAIRN_OK && atomic_load(&h->shutting_down)) || cairn__run_lost(h, r)) {
        r->released = atomic_load(&h->shutting_down);
        if (cairn__run_lost(h, r))
            cairn__fleet_release_one(h, r->id);
        free(output);
        ctx_free(&ctx);
        return 0; /* stays PENDING until cairn_stop() hands it back */
    }

    char *errjson = NULL;
    char err[256];
    if (!ctx.nondet && rc == CAIRN_OK) {
        size_t len = output ? strlen(output) : 4;
        if (len > h->max_payload)
            rc = cairn_fail(&ctx, "workflow output is %zu bytes; the limit is %zu", len, h->max_payload);
        else if (output && cairn_json_check(output, len, err, sizeof err) != CAIRN_OK)
            rc = cairn_fail(&ctx, "workflow returned invalid JSON: %s", err);
    }
    if (ctx.nondet) {
        errjson = cairn__error_json(ctx.errmsg, NULL, 0);
    } else if (rc != CAIRN_OK) {
        const char *msg = ctx.fail_msg;
        char fallback[600];
        if (!msg) {
            if (rc == CAIRN_ESTEP && ctx.errmsg[0])
                snprintf(fallback, sizeof fallback, "%s", ctx.errmsg);
            else
                snprintf(fallback, sizeof fallback, "workflow returned %d (%s)", rc, cairn_strerror(rc));
            msg = fallback;
        }
        errjson = cairn__error_json(msg, NULL, 0);
    }
    int success = !ctx.nondet && rc == CAIRN_OK;
    ctx_free(&ctx);
    finish_item *f = calloc(1, sizeof *f);
    if (!f || (!success && !errjson)) {
        cairn__log(h, CAIRN_LOG_ERROR, "workflow %s: out of memory recording its %s", r->id,
                   success ? "result" : "error");
        free(f);
        free(output);
        free(errjson);
        return 0; /* stays PENDING: resumed by the next recovery */
    }
    /*
     * The outcome is decided; the thread need not wait for it to commit (a
     * crash before it does only replays the workflow to the same end). The
     * thread that writes the finish's batch publishes the result and ends
     * the run (finish_done).
     */
    f->run = r;
    f->output = success ? (output ? output : cairn__strdup("null")) : NULL;
    f->errjson = errjson;
    f->success = success;
    if (success && !f->output) {
        free(f);
        free(errjson);
        return 0;
    }
    if (!success)
        free(output);
    f->it.kind = CAIRN__FINISH_ITEM;
    f->it.id = r->id;
    f->it.status = success ? "SUCCESS" : "ERROR";
    f->it.output = f->output;
    f->it.error = success ? NULL : errjson;
    f->it.done_fn = finish_done;
    cairn__thread_free(h); /* before the finish can commit and wake an await */
    cairn__commit_async(h, &f->it);
    return 1;
}
