/*
 * Queues and executors as the API shows them: queue configuration in
 * cairn.queues (the same rows cairn.set_queue() writes from SQL and the
 * CLI writes through this file), and the executors' table for operators.
 * Limits are enforced where work is claimed, in cairn.claim().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define QOPT(o, field) \
    ((o) && (o)->size >= offsetof(cairn_queue_options, field) + sizeof((o)->field) ? (o)->field : 0)

/* A limit as a statement parameter: NULL for "no limit". */
static const char *limit_param(int v, char buf[16])
{
    if (v == 0)
        return NULL;
    snprintf(buf, 16, "%d", v);
    return buf;
}

int cairn_queue_set(cairn *h, const char *queue, const cairn_queue_options *opts)
{
    cairn__clear_error();
    char err[256];
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (cairn__check_name("queue name", queue, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (opts && opts->size == 0)
        return cairn__fail(CAIRN_EINVAL, "cairn_queue_options.size is 0; set it to sizeof(cairn_queue_options)");
    int conc = QOPT(opts, concurrency), wconc = QOPT(opts, worker_concurrency);
    int rate = QOPT(opts, rate_limit), period = QOPT(opts, rate_period_ms);
    int pconc = QOPT(opts, partition_concurrency);
    if (conc < 0 || wconc < 0 || rate < 0 || period < 0 || pconc < 0)
        return cairn__fail(CAIRN_EINVAL, "queue '%s': limits must be positive (0 for no limit)", queue);
    if ((rate == 0) != (period == 0))
        return cairn__fail(CAIRN_EINVAL, "queue '%s': rate_limit and rate_period_ms go together", queue);
    char b[5][16];
    const char *vals[6] = {queue, limit_param(conc, b[0]), limit_param(wconc, b[1]), limit_param(rate, b[2]),
                           limit_param(period, b[3]), limit_param(pconc, b[4])};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_QUEUE_SET, 6, vals, &res);
    if (rc == CAIRN_OK)
        PQclear(res);
    return rc;
}

/* Runs the queue list for one queue (or all when queue is NULL). */
static int queue_json(cairn *h, const char *queue, char **json)
{
    const char *vals[1] = {queue};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_QUEUE_LIST, 1, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    *json = cairn__strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return *json ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
}

int cairn_queue_get(cairn *h, const char *queue, char **json)
{
    cairn__clear_error();
    char err[256];
    if (json)
        *json = NULL;
    if (!h || !json)
        return cairn__fail(CAIRN_EINVAL, "handle or json is NULL");
    if (cairn__check_name("queue name", queue, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    char *list = NULL;
    int rc = queue_json(h, queue, &list);
    if (rc != CAIRN_OK)
        return rc;
    /* The list holds at most this one object: strip the brackets. */
    size_t n = strlen(list);
    if (n <= 2 || list[0] != '[' || list[n - 1] != ']') {
        free(list);
        return cairn__fail(CAIRN_ENOTFOUND, "queue '%s' has no configuration and no workflows", queue);
    }
    memmove(list, list + 1, n - 2);
    list[n - 2] = '\0';
    *json = list;
    return CAIRN_OK;
}

int cairn_queue_list(cairn *h, char **json)
{
    cairn__clear_error();
    if (json)
        *json = NULL;
    if (!h || !json)
        return cairn__fail(CAIRN_EINVAL, "handle or json is NULL");
    return queue_json(h, NULL, json);
}

int cairn_queue_delete(cairn *h, const char *queue)
{
    cairn__clear_error();
    char err[256];
    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (cairn__check_name("queue name", queue, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    const char *vals[1] = {queue};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_QUEUE_DELETE, 1, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    int had = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return had ? CAIRN_OK : cairn__fail(CAIRN_ENOTFOUND, "queue '%s' has no configuration", queue);
}

int cairn_executors(cairn *h, char **json)
{
    cairn__clear_error();
    if (json)
        *json = NULL;
    if (!h || !json)
        return cairn__fail(CAIRN_EINVAL, "handle or json is NULL");
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_EXECUTORS, 0, NULL, &res);
    if (rc != CAIRN_OK)
        return rc;
    *json = cairn__strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return *json ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
}
