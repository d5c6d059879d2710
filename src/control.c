/*
 * Operators' control over workflows: cancel, resume and fork (thin calls of
 * cairn.cancel(), cairn.resume() and cairn.fork() in sql/007_control.sql),
 * and how a process learns that a workflow it runs was cancelled: a
 * notification on channel cairn_cancel, with a look at every heartbeat for
 * the notifications a dropped connection lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The result code a refused control statement means, by its SQLSTATE. */
static int control_code(int rc)
{
    const char *st = cairn_sqlstate(NULL);
    if (rc != CAIRN_EDB || !st[0])
        return rc;
    if (strcmp(st, "P0002") == 0)
        return CAIRN_ENOTFOUND; /* no such workflow */
    if (strcmp(st, "55000") == 0)
        return CAIRN_EMISUSE; /* finished, so it cannot be cancelled or resumed */
    if (strcmp(st, "23505") == 0)
        return CAIRN_ECONFLICT; /* the fork's ID is taken */
    if (strcmp(st, "22023") == 0 || strcmp(st, "22004") == 0)
        return CAIRN_EINVAL;
    return rc;
}

/* Checks the handle and the ID every control call takes. */
static int control_args(cairn *h, const char *id)
{
    char err[256];
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (cairn__check_name("workflow ID", id, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    return CAIRN_OK;
}

int cairn_cancel(cairn *h, const char *id, unsigned flags)
{
    cairn__clear_error();
    int rc = control_args(h, id);
    if (rc != CAIRN_OK)
        return rc;
    if (flags & ~CAIRN_CANCEL_CHILDREN)
        return cairn__fail(CAIRN_EINVAL, "unknown cancel flags 0x%x", flags & ~CAIRN_CANCEL_CHILDREN);
    const char *vals[2] = {id, flags & CAIRN_CANCEL_CHILDREN ? "true" : "false"};
    PGresult *res = NULL;
    rc = control_code(cairn__query(h, CAIRN__Q_CANCEL, 2, vals, &res));
    PQclear(res);
    /* Do not wait for our own notification to stop a run of this process. */
    if (rc == CAIRN_OK)
        cairn__run_cancelled(h, id);
    return rc;
}

int cairn_resume(cairn *h, const char *id)
{
    cairn__clear_error();
    int rc = control_args(h, id);
    if (rc != CAIRN_OK)
        return rc;
    const char *vals[1] = {id};
    PGresult *res = NULL;
    rc = control_code(cairn__query(h, CAIRN__Q_RESUME, 1, vals, &res));
    PQclear(res);
    return rc;
}

int cairn_fork(cairn *h, const char *id, int from_step, const char *new_id, char **id_out)
{
    cairn__clear_error();
    char err[256];
    if (id_out)
        *id_out = NULL;
    int rc = control_args(h, id);
    if (rc != CAIRN_OK)
        return rc;
    if (from_step < 1)
        return cairn__fail(CAIRN_EINVAL, "from_step is %d; it must be 1 or more", from_step);
    /* The ID is chosen here, so that a retry after a lost commit finds the fork it made. */
    char fresh[37];
    if (!new_id) {
        cairn__uuid7(fresh);
        new_id = fresh;
    } else if (cairn__check_name("new workflow ID", new_id, err, sizeof err) != CAIRN_OK) {
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    }
    char step[16];
    snprintf(step, sizeof step, "%d", from_step);
    const char *vals[3] = {id, step, new_id};
    PGresult *res = NULL;
    rc = control_code(cairn__query(h, CAIRN__Q_FORK, 3, vals, &res));
    if (rc == CAIRN_OK && id_out) {
        *id_out = cairn__strdup(PQgetvalue(res, 0, 0));
        if (!*id_out)
            rc = cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    PQclear(res);
    return rc;
}

int cairn_step_cancelled(const cairn_step_ctx *s)
{
    return s && s->run && atomic_load(&s->run->cancelled);
}

int cairn__check_cancelled(cairn *h, PGconn *pg)
{
    cairn__buf ids;
    cairn__buf_init(&ids);
    if (cairn__run_ids(h, &ids) == 0) {
        cairn__buf_free(&ids);
        return CAIRN_OK;
    }
    if (ids.oom) {
        cairn__buf_free(&ids);
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    }
    const char *vals[1] = {ids.data};
    PGresult *r = PQexecPrepared(pg, cairn__stmt_name(CAIRN__Q_CANCELLED), 1, vals, NULL, NULL, 0);
    cairn__buf_free(&ids);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, pg,
                                "looking for cancelled workflows");
        PQclear(r);
        return rc;
    }
    for (int i = 0; i < PQntuples(r); i++)
        cairn__run_cancelled(h, PQgetvalue(r, i, 0));
    PQclear(r);
    return CAIRN_OK;
}

int cairn__deadline_first(cairn *h, const char *id, int timeout_ms)
{
    char ms[16];
    snprintf(ms, sizeof ms, "%d", timeout_ms);
    const char *vals[2] = {id, ms};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_DEADLINE_FIRST, 2, vals, &res);
    PQclear(res);
    if (rc == CAIRN_OK)
        cairn__deadline_set(h);
    return rc;
}

void cairn__deadline_set(cairn *h)
{
    atomic_store(&h->timed_look, 1);
    cairn__dispatch_poke(h);
}

int cairn__expire(cairn *h, PGconn *pg, long long *next_ms)
{
    *next_ms = -1;
    PGresult *r = PQexecPrepared(pg, cairn__stmt_name(CAIRN__Q_EXPIRE), 0, NULL, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, pg, "expiring deadlines");
        PQclear(r);
        return rc;
    }
    if (!PQgetisnull(r, 0, 0))
        *next_ms = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    (void)h;
    return CAIRN_OK;
}
