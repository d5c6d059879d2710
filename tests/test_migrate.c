/*
 * Migrations: applied once even when many processes start at the same
 * moment, a no-op when current, refused when the caller opted out, and
 * an upgrade keeps what older versions wrote usable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static void test_concurrent_processes(void **state)
{
    t_fresh_db("cairn_test_migrate");
    enum { P = 8 };
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t kids[P];
    for (int i = 0; i < P; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(go[1]);
            char b;
            if (read(go[0], &b, 1) != 0) /* all released at once when the parent closes the pipe */
                _exit(11);
            cairn_options o = {.size = sizeof o, .conninfo = t_db()};
            cairn *h = NULL;
            int rc = cairn_open(&h, &o);
            if (rc != CAIRN_OK)
                fprintf(stderr, "child %d: %s\n", i, cairn_errmsg(h));
            cairn_close(h);
            _exit(rc == CAIRN_OK ? 0 : 12);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < P; i++) {
        int status;
        waitpid(kids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child %d exited with status 0x%x", i, status);
    }
    /* Each migration recorded once; the schema is at the latest version. */
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.migrations"), cairn_schema_latest());
    assert_int_equal(t_scalar("SELECT max(version) FROM cairn.migrations"), cairn_schema_latest());
    assert_int_equal(t_scalar("SELECT count(*) FROM pg_class WHERE relname = 'workflow_status'"), 1);
}

static void test_migrate_is_idempotent(void **state)
{
    cairn *h = t_open("m", 1);
    int version = -1;
    T_OK(h, cairn_migrate(h, &version));
    assert_int_equal(version, cairn_schema_latest());
    T_OK(h, cairn_migrate(h, &version));
    assert_int_equal(version, cairn_schema_latest());
    cairn_close(h);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.migrations"), cairn_schema_latest());
}

static void test_no_migrate_on_empty_database(void **state)
{
    t_fresh_db("cairn_test_migrate_empty");
    cairn_options o = {.size = sizeof o, .conninfo = t_db(), .flags = CAIRN_NO_MIGRATE};
    cairn *h = NULL;
    T_RC(h, CAIRN_ESCHEMA, cairn_open(&h, &o));
    assert_non_null(strstr(cairn_errmsg(h), "cairn migrate"));
    cairn_close(h);
    assert_int_equal(t_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'cairn'"), 0);
    /* Opting back in creates it. */
    o.flags = 0;
    T_OK(h, cairn_open(&h, &o));
    cairn_close(h);
    assert_int_equal(t_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'cairn'"), 1);
}

/*
 * A schema newer than the library: accepted with a warning while its
 * migrations only add; refused, with a message that says what to do, once
 * one of them records that libraries this old cannot use it.
 */
static void test_newer_schema(void **state)
{
    t_fresh_db("cairn_test_migrate_newer");
    cairn_options o = {.size = sizeof o, .conninfo = t_db()};
    cairn *h = NULL;
    T_OK(h, cairn_open(&h, &o));
    cairn_close(h);
    int latest = cairn_schema_latest();
    /* This library's own schema records the floor its one-row change set. */
    assert_int_equal(t_scalar("SELECT max(oldest_library) FROM cairn.migrations"), 8);

    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO cairn.migrations (version, name) VALUES (%d, 'future_additive')",
             latest + 1);
    t_exec(sql);
    int version = -1;
    T_OK(h, cairn_open(&h, &o));
    T_OK(h, cairn_migrate(h, &version));
    assert_int_equal(version, latest + 1);
    cairn_close(h);

    snprintf(sql, sizeof sql,
             "INSERT INTO cairn.migrations (version, name, oldest_library) VALUES (%d, 'future_breaking', %d)",
             latest + 2, latest + 2);
    t_exec(sql);
    T_RC(h, CAIRN_ESCHEMA, cairn_open(&h, &o));
    assert_non_null(strstr(cairn_errmsg(h), "upgrade it"));
    cairn_close(h);

    /* Nothing was written: the newer schema's record stands as it was. */
    assert_int_equal(t_scalar("SELECT max(version) FROM cairn.migrations"), latest + 2);
}

/*
 * Schema 12 tells a claim whether a workflow has a recording from its row
 * (started_at or forked_from) instead of looking in cairn.steps. A workflow
 * a library older than schema 3 ran (steps recorded, no started_at) must
 * still be claimed as resumed after the upgrade, or its steps would run
 * again; one that never ran must still start afresh.
 */
static void test_upgrade_keeps_recordings(void **state)
{
    t_fresh_db("cairn_test_migrate_recorded");
    cairn_options o = {.size = sizeof o, .conninfo = t_db()};
    cairn *h = NULL;
    T_OK(h, cairn_open(&h, &o));
    cairn_close(h);
    /* The database as it stood before version 12, holding what an old library left. */
    t_exec("DELETE FROM cairn.migrations WHERE version >= 12");
    t_exec("INSERT INTO cairn.workflow_status (id, name, status, input) VALUES"
           " ('ran-before', 'upgraded', 'ENQUEUED', '1'), ('never-ran', 'upgraded', 'ENQUEUED', '2')");
    t_exec("INSERT INTO cairn.steps (workflow_id, step, name, output) VALUES ('ran-before', 1, 'add', '2')");
    T_OK(h, cairn_open(&h, &o));
    cairn_close(h);
    assert_int_equal(t_scalar("SELECT max(version) FROM cairn.migrations"), cairn_schema_latest());
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status WHERE id = 'ran-before'"
                              " AND started_at = created_at"),
                     1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status WHERE id = 'never-ran'"
                              " AND started_at IS NULL"),
                     1);
    t_exec("INSERT INTO cairn.executors (id, instance, state, lease) VALUES ('m-old', 'i', 'LIVE', '1 hour')");
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.claim('m-old', '{upgraded}', 10, 5)"
                              " WHERE (id = 'ran-before' AND resumed) OR (id = 'never-ran' AND NOT resumed)"),
                     2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_processes),
        cmocka_unit_test(test_migrate_is_idempotent),
        cmocka_unit_test(test_no_migrate_on_empty_database),
        cmocka_unit_test(test_newer_schema),
        cmocka_unit_test(test_upgrade_keeps_recordings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
