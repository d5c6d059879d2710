/*
 * Helpers shared by the test programs: where the test database is, a
 * fresh database per test program, and assertions that print both sides.
 */
#ifndef CAIRN_TEST_SUPPORT_H
#define CAIRN_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include "cairn.h"

/*
 * Creates (dropping any old one) a database named after the test program
 * and returns a conninfo for it. Static storage; valid for the process.
 * The server is $CAIRN_DATABASE_URL when set, else the suite's throwaway
 * cluster in $CAIRN_TEST_DEV_DIR.
 */
const char *t_fresh_db(const char *name);

/* The conninfo t_fresh_db() returned last. */
const char *t_db(void);

/* A direct libpq connection to the test database; fails the test if it cannot connect. */
PGconn *t_pg(void);

/* Runs SQL on a fresh connection and returns the first column of the first row as a long (0 if none). */
long t_scalar(const char *sql);

/* Runs SQL that returns no rows; fails the test on error. */
void t_exec(const char *sql);

/* Opens a handle on the test database with the given executor ID (NULL: "local") and worker count. */
cairn *t_open(const char *executor_id, int workers);

/* Assert that rc is CAIRN_OK, printing cairn_errmsg() if not. */
#define T_OK(h, expr)                                                                                        \
    do {                                                                                                     \
        int t_rc_ = (expr);                                                                                  \
        if (t_rc_ != CAIRN_OK)                                                                               \
            fail_msg("%s returned %d (%s): %s", #expr, t_rc_, cairn_strerror(t_rc_), cairn_errmsg(h));       \
    } while (0)

/* Assert a result code, printing both codes and the message. */
#define T_RC(h, want, expr)                                                                                  \
    do {                                                                                                     \
        int t_rc_ = (expr);                                                                                  \
        if (t_rc_ != (want))                                                                                 \
            fail_msg("%s returned %d (%s), expected %d (%s): %s", #expr, t_rc_, cairn_strerror(t_rc_), (want), \
                     cairn_strerror(want), cairn_errmsg(h));                                                 \
    } while (0)

#endif
