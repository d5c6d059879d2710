/*
 * Parallel steps: several steps of one workflow run at once and are
 * awaited together. Positions are handed out in the order of the calls,
 * before anything runs, so replay finds every result at the position it
 * was recorded at, whatever order the steps finished in. Each step that
 * has no checkpoint yet runs through cairn__step_run() on a context of its
 * own (a "shadow" sharing the run but not the recording), on a thread of
 * its own; transactional steps share the workflow thread's connection, so
 * they run one after another on that thread while the others run beside
 * them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PARALLEL_MAX 64 /* steps in one group; a bound on the threads one workflow starts */

typedef struct branch {
    cairn_ctx shadow;       /* the step's own context, at its position */
    const cairn__entry *e;
    cairn_call *call;
    pthread_t thread;
    int threaded;           /* runs on its own thread (joined before the results are read) */
    char errmsg[512];       /* the step's failure, copied from the thread that ran it */
} branch;

/* Runs one branch's step; its result and message go to the branch, read after the join. */
static void run_branch(branch *b)
{
    char *out = NULL;
    b->call->rc = cairn__step_run(&b->shadow, b->call->step, b->e, b->call->input ? b->call->input : "null", &out);
    b->call->output = out;
    if (b->call->rc != CAIRN_OK)
        snprintf(b->errmsg, sizeof b->errmsg, "%s", b->shadow.errmsg[0] ? b->shadow.errmsg : cairn_errmsg(NULL));
}

static void *branch_main(void *arg)
{
    run_branch(arg);
    return NULL;
}

/* Checks the calls before anything runs; CAIRN_OK or the first problem. */
static int check_calls(cairn *h, cairn_call *calls, int n, branch *b)
{
    char err[256];
    for (int i = 0; i < n; i++) {
        const char *in = calls[i].input ? calls[i].input : "null";
        size_t len = strlen(in);
        if (cairn__check_name("step name", calls[i].step, err, sizeof err) != CAIRN_OK)
            return cairn__fail(CAIRN_EINVAL, "call %d: %s", i, err);
        if (len > h->max_payload)
            return cairn__fail(CAIRN_ETOOBIG, "call %d: step input is %zu bytes; the limit is %zu", i, len,
                               h->max_payload);
        if (cairn_json_check(in, len, err, sizeof err) != CAIRN_OK)
            return cairn__fail(CAIRN_EJSON, "call %d: step input: %s", i, err);
        b[i].e = cairn__registry_find(&h->steps, calls[i].step);
        if (!b[i].e)
            return cairn__fail(CAIRN_ENOTFOUND, "call %d: no step is registered as '%s'", i, calls[i].step);
    }
    return CAIRN_OK;
}

int cairn_parallel(cairn_ctx *ctx, cairn_call *calls, int n)
{
    if (!ctx || !calls)
        return cairn__fail(CAIRN_EINVAL, "ctx or calls is NULL");
    if (n < 1 || n > PARALLEL_MAX)
        return cairn__fail(CAIRN_EINVAL, "n is %d; a parallel group has 1 to %d steps", n, PARALLEL_MAX);
    for (int i = 0; i < n; i++) {
        calls[i].output = NULL;
        calls[i].rc = CAIRN_EFAIL;
    }
    cairn *h = ctx->h;
    branch *b = calloc((size_t)n, sizeof *b);
    if (!b)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    int rc = check_calls(h, calls, n, b);
    if (rc == CAIRN_OK)
        rc = cairn__ctx_usable(ctx);
    if (rc != CAIRN_OK) {
        free(b);
        return rc;
    }

    /* Recorded positions replay on this thread, in order, as cairn_step() would. */
    int base = ctx->next, fresh = 0;
    for (int i = 0; i < n && rc == CAIRN_OK; i++) {
        b[i].call = &calls[i];
        int pos = base + i;
        if (pos <= ctx->nrec && ctx->rec[pos].name) {
            ctx->next = pos;
            calls[i].rc = cairn__step_run(ctx, calls[i].step, b[i].e, calls[i].input ? calls[i].input : "null",
                                          &calls[i].output);
            if (calls[i].rc != CAIRN_OK)
                snprintf(b[i].errmsg, sizeof b[i].errmsg, "%s", ctx->errmsg[0] ? ctx->errmsg : cairn_errmsg(NULL));
            if (calls[i].rc == CAIRN_ENONDET)
                rc = CAIRN_ENONDET;
        } else {
            b[i].shadow = (cairn_ctx){
                .h = h, .run = ctx->run, .next = pos, .txc = CAIRN__TRANSACTIONAL(b[i].e) ? ctx->txc : NULL};
            fresh++;
        }
    }
    ctx->next = base + n;
    if (rc != CAIRN_OK || fresh == 0)
        goto done;
    /* About to run new work: not if another executor may own the workflow by now. */
    if (cairn__fleet_fence(h, ctx->run)) {
        ctx->abandoned = 1;
        rc = cairn__fail(CAIRN_ESHUTDOWN, "the workflow stopped here: the handle is stopping or lost it");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!b[i].shadow.h || CAIRN__TRANSACTIONAL(b[i].e))
            continue;
        b[i].threaded = pthread_create(&b[i].thread, NULL, branch_main, &b[i]) == 0;
        if (!b[i].threaded)
            run_branch(&b[i]); /* no thread to be had: run it here */
    }
    for (int i = 0; i < n; i++)
        if (b[i].shadow.h && CAIRN__TRANSACTIONAL(b[i].e))
            run_branch(&b[i]);
    for (int i = 0; i < n; i++)
        if (b[i].threaded)
            pthread_join(b[i].thread, NULL);

    /* What the branches learned about the workflow as a whole, then the failures of single steps. */
    for (int i = 0; i < n; i++) {
        if (!b[i].shadow.h)
            continue;
        ctx->abandoned |= b[i].shadow.abandoned;
        ctx->cancelled |= b[i].shadow.cancelled;
        if (b[i].shadow.nondet && !ctx->nondet) {
            ctx->nondet = 1;
            snprintf(ctx->errmsg, sizeof ctx->errmsg, "%s", b[i].shadow.errmsg);
        }
    }
    if (ctx->nondet)
        rc = cairn__fail(CAIRN_ENONDET, "%s", ctx->errmsg);
    else if (ctx->abandoned)
        rc = cairn__fail(CAIRN_ESHUTDOWN, "the workflow stopped here: the handle is stopping or lost it");
    else if (ctx->cancelled)
        rc = cairn__fail(CAIRN_ECANCELLED, "workflow %s was cancelled; return from the workflow function",
                         ctx->run->id);
done:
    for (int i = 0; i < n && rc == CAIRN_OK; i++) {
        if (calls[i].rc == CAIRN_OK)
            continue;
        /* The first failed step, in call order, speaks for the group. */
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "%s", b[i].errmsg);
        rc = cairn__fail(calls[i].rc == CAIRN_ESTEP ? CAIRN_ESTEP : calls[i].rc, "parallel step %d (%s): %s",
                         base + i, calls[i].step, ctx->errmsg);
    }
    for (int i = 0; i < n; i++)
        free(b[i].shadow.fail_msg);
    free(b);
    return rc;
}
