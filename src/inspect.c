/*
 * Read-only views for tools: one workflow with its steps, and lists. The
 * JSON is assembled by Postgres (json_build_object), so the text matches
 * what a user would get from SQL on cairn.workflows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int cairn_describe(cairn *h, const char *id, int with_steps, char **json)
{
    cairn__clear_error();
    char err[256];
    if (!h || !json)
        return cairn__fail(CAIRN_EINVAL, "handle or json is NULL");
    *json = NULL;
    if (cairn__check_name("workflow ID", id, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    const char *vals[2] = {id, with_steps ? "true" : "false"};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_DESCRIBE, 2, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return cairn__fail(CAIRN_ENOTFOUND, "no workflow has ID '%s'", id);
    }
    *json = cairn__strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return *json ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
}

#define LOPT(o, field) \
    ((o) && (o)->size >= offsetof(cairn_list_options, field) + sizeof((o)->field) ? (o)->field : 0)

int cairn_list(cairn *h, const cairn_list_options *opts, char **json)
{
    cairn__clear_error();
    char err[256];
    if (!h || !json)
        return cairn__fail(CAIRN_EINVAL, "handle or json is NULL");
    *json = NULL;
    const char *status = LOPT(opts, status);
    const char *name = LOPT(opts, name);
    int limit = LOPT(opts, limit);
    if (limit < 0)
        return cairn__fail(CAIRN_EINVAL, "limit is negative");
    if (status && cairn__status_parse(status) == CAIRN_STATUS_UNKNOWN)
        return cairn__fail(CAIRN_EINVAL, "unknown status '%s'", status);
    if (name && cairn__check_name("workflow name", name, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit ? limit : 100);
    const char *vals[3] = {status, name, lim};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_LIST, 3, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    *json = cairn__strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return *json ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
}
