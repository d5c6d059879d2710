/*
 * Waiting for a workflow's result. A workflow running in this process is
 * awaited on its condition variable and its result handed over from
 * memory; any other workflow is polled in the database with growing
 * intervals, and awaited from memory as soon as this process claims it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* A local run that ended without a final status (abandoned): read the database. */
#define CAIRN_EAGAIN_LOCAL 1

/* How long an await waits for this handle to claim a workflow it enqueued before reading the database. */
#define EXPECT_WAIT_MS 200

static int terminal(cairn_status s)
{
    return s == CAIRN_STATUS_SUCCESS || s == CAIRN_STATUS_ERROR || s == CAIRN_STATUS_CANCELLED ||
           s == CAIRN_STATUS_DEAD_LETTER;
}

/*
 * Waits on a local run until it is done or the deadline passes, then lets
 * go of it. CAIRN_EAGAIN_LOCAL: the run ended without a result here (it
 * was abandoned, or finished elsewhere), so the database has the answer.
 */
static int await_run(cairn *h, cairn__run *r, const char *id, int timeout_ms, long long deadline,
                     cairn_status *status, char **result)
{
    struct timespec ts;
    if (deadline >= 0)
        cairn__abstime(deadline - cairn__now_ms(), &ts);
    pthread_mutex_lock(&h->run_lock);
    int timed_out = 0;
    while (!r->done && !timed_out) {
        if (deadline < 0)
            pthread_cond_wait(&r->cond, &h->run_lock);
        else
            timed_out = pthread_cond_timedwait(&r->cond, &h->run_lock, &ts) == ETIMEDOUT;
    }
    int rc = CAIRN_ETIMEDOUT;
    if (r->done && terminal(r->status)) {
        *status = r->status;
        rc = CAIRN_OK;
        if (result) {
            *result = cairn__strdup(r->result);
            if (r->result && !*result)
                rc = CAIRN_ENOMEM;
        }
    } else if (r->done) {
        rc = CAIRN_EAGAIN_LOCAL; /* abandoned or finished elsewhere: ask the database */
    }
    pthread_mutex_unlock(&h->run_lock);
    cairn__run_release(h, r);
    if (rc == CAIRN_ETIMEDOUT)
        return cairn__fail(rc, "workflow %s is still running after %d ms", id, timeout_ms);
    return rc == CAIRN_ENOMEM ? cairn__fail(rc, "out of memory") : rc;
}

int cairn_await(cairn *h, const char *id, int timeout_ms, cairn_status *status, char **result)
{
    cairn__clear_error();
    char err[256];
    if (result)
        *result = NULL;
    if (!h || !status)
        return cairn__fail(CAIRN_EINVAL, "handle or status is NULL");
    if (cairn__check_name("workflow ID", id, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    long long deadline = timeout_ms < 0 ? -1 : cairn__now_ms() + timeout_ms;
    long long interval = 5;
    /*
     * A workflow this handle enqueued and can run itself is usually claimed
     * here: its run (kept even if it has ended), or a short wait for the
     * claim, takes the place of the first database read. If another
     * process claims it, the loop below finds it after EXPECT_WAIT_MS.
     */
    cairn__run *expected = NULL;
    if (cairn__expect_take(h, id, &expected)) {
        if (expected) {
            int rc = await_run(h, expected, id, timeout_ms, deadline, status, result);
            if (rc != CAIRN_EAGAIN_LOCAL)
                return rc;
        } else {
            long long wait = EXPECT_WAIT_MS;
            if (deadline >= 0 && deadline - cairn__now_ms() < wait)
                wait = deadline - cairn__now_ms();
            if (wait > 0 && cairn__wait_reserve(h, id, wait))
                return cairn__fail(CAIRN_ESHUTDOWN, "the handle is closing");
        }
    }
    for (;;) {
        cairn__run *r = cairn__run_find(h, id);
        if (r) {
            int rc = await_run(h, r, id, timeout_ms, deadline, status, result);
            if (rc != CAIRN_EAGAIN_LOCAL)
                return rc;
        }
        const char *vals[1] = {id};
        PGresult *res = NULL;
        int rc = cairn__query(h, CAIRN__Q_RESULT, 1, vals, &res);
        if (rc != CAIRN_OK)
            return rc;
        if (PQntuples(res) == 0) {
            PQclear(res);
            return cairn__fail(CAIRN_ENOTFOUND, "no workflow has ID '%s'", id);
        }
        cairn_status s = cairn__status_parse(PQgetvalue(res, 0, 1));
        if (terminal(s)) {
            *status = s;
            if (result) {
                int col = s == CAIRN_STATUS_SUCCESS ? 3 : 4;
                *result = cairn__strdup(PQgetisnull(res, 0, col) ? "null" : PQgetvalue(res, 0, col));
            }
            PQclear(res);
            if (result && !*result)
                return cairn__fail(CAIRN_ENOMEM, "out of memory");
            return CAIRN_OK;
        }
        PQclear(res);
        long long now = cairn__now_ms();
        if (deadline >= 0 && now >= deadline)
            return cairn__fail(CAIRN_ETIMEDOUT, "workflow %s is still %s after %d ms", id, cairn_status_name(s),
                               timeout_ms);
        long long wait = interval;
        if (deadline >= 0 && now + wait > deadline)
            wait = deadline - now;
        /* A workflow this process claims meanwhile is handed over from memory. */
        if (cairn__wait_reserve(h, id, wait))
            return cairn__fail(CAIRN_ESHUTDOWN, "the handle is closing");
        interval = interval * 2 > 200 ? 200 : interval * 2;
    }
}

int cairn_get_status(cairn *h, const char *id, cairn_status *status)
{
    cairn__clear_error();
    char err[256];
    if (!h || !status)
        return cairn__fail(CAIRN_EINVAL, "handle or status is NULL");
    if (cairn__check_name("workflow ID", id, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    const char *vals[1] = {id};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_STATUS, 1, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return cairn__fail(CAIRN_ENOTFOUND, "no workflow has ID '%s'", id);
    }
    *status = cairn__status_parse(PQgetvalue(res, 0, 0));
    PQclear(res);
    return CAIRN_OK;
}
