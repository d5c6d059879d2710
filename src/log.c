/*
 * The calling thread's last error (like errno, so a handle shared by many
 * threads never mixes their messages) and the library's logger.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_msg[1024];
static _Thread_local char last_state[6];

int cairn__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    last_state[0] = '\0';
    return code;
}

/* Describe a failed statement: our context, libpq's message and the SQLSTATE. */
int cairn__fail_pg(int code, const PGresult *res, PGconn *conn, const char *what)
{
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = conn ? PQerrorMessage(conn) : "no connection";
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    snprintf(last_msg, sizeof last_msg, "%s: %.*s", what, (int)n, msg);
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(last_state, sizeof last_state, "%s", st ? st : "");
    return code;
}

int cairn__fail_state(int code, const char *sqlstate, const char *message)
{
    snprintf(last_msg, sizeof last_msg, "%s", message);
    snprintf(last_state, sizeof last_state, "%s", sqlstate ? sqlstate : "");
    return code;
}

void cairn__clear_error(void)
{
    last_msg[0] = '\0';
    last_state[0] = '\0';
}

const char *cairn_errmsg(const cairn *h)
{
    (void)h;
    return last_msg;
}

const char *cairn_sqlstate(const cairn *h)
{
    (void)h;
    return last_state;
}

void cairn__log(const cairn *h, int level, const char *fmt, ...)
{
    if (!h || level < h->log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (h->log) {
        h->log(h->log_udata, level, msg);
        return;
    }
    static const char *const names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "cairn %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}
