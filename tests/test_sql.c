/*
 * Atomic enqueue and the SQL surface against a real Postgres: a workflow
 * enqueued from C on the application's own connection, through
 * cairn.enqueue() or by the cairn.enqueue_row() trigger exists, and wakes
 * the workers, if and only if its transaction commits, and then runs;
 * enqueue and send are idempotent; the wake-up flag never blocks or fails
 * an application's transaction; bad input of every kind is refused with
 * a clear error and writes nothing; the grant script of docs/sql.md is
 * enough for an application role and none of it is surplus; and nothing in
 * a caller's search_path can redirect the functions.
 *
 * Wake-ups are counted exactly, not by waiting and hoping: after the
 * transactions under test, a sentinel NOTIFY is committed, and since
 * notifications reach a listener in commit order, every wake-up that was
 * committed before it has arrived by the time the sentinel does.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#define APP_ROLE "cairn_app"
#define PAYLOAD_LIMIT 16777216 /* bytes of JSON text the SQL functions accept */

static PGconn *db; /* superuser connection for setup and for checking from outside */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- statements ---------------------------------------------------------- */

/* Runs sql with text parameters; fails the test unless it succeeds. */
static void run(PGconn *c, const char *sql, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("%s: %s", sql, msg);
    }
    PQclear(r);
}

#define RUN(c, sql) run((c), (sql), 0, NULL)

/* Runs sql and returns the first value of its first row (malloc'd), or NULL for SQL NULL or no row. */
static char *value(PGconn *c, const char *sql, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("%s: %s", sql, msg);
    }
    char *v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return v;
}

/* Like value(), as a number (0 for NULL or no row). */
static long number(PGconn *c, const char *sql, int n, const char *const *vals)
{
    char *v = value(c, sql, n, vals);
    long x = v ? atol(v) : 0;
    free(v);
    return x;
}

/* Like value(), and the value must equal want. */
static void expect_first(PGconn *c, const char *sql, int n, const char *const *vals, const char *want)
{
    char *v = value(c, sql, n, vals);
    if (!v || strcmp(v, want) != 0) {
        char got[512];
        snprintf(got, sizeof got, "%s", v ? v : "(null)");
        free(v);
        fail_msg("%s returned \"%s\", expected \"%s\"", sql, got, want);
    }
    free(v);
}

/*
 * Runs sql, which must fail with SQLSTATE state and a primary message
 * containing needle. Returns the primary message (malloc'd) for further
 * checks.
 */
static char *refused(PGconn *c, const char *sql, int n, const char *const *vals, const char *state,
                     const char *needle)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_FATAL_ERROR) {
        PQclear(r);
        fail_msg("%s succeeded; expected SQLSTATE %s (%s)", sql, state, needle);
    }
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char got_st[8], got_msg[1024];
    snprintf(got_st, sizeof got_st, "%s", st ? st : "");
    snprintf(got_msg, sizeof got_msg, "%s", msg ? msg : "");
    PQclear(r);
    if (strcmp(got_st, state) != 0 || !strstr(got_msg, needle))
        fail_msg("%s failed with %s \"%s\"; expected %s and a message containing \"%s\"", sql, got_st, got_msg,
                 state, needle);
    return strdup(got_msg);
}

static void refused_free(PGconn *c, const char *sql, int n, const char *const *vals, const char *state,
                         const char *needle)
{
    free(refused(c, sql, n, vals, state, needle));
}

/* Rows with this workflow ID, as connection c sees them. */
static long id_rows(PGconn *c, const char *id)
{
    const char *v[1] = {id};
    return number(c, "SELECT count(*) FROM cairn.workflow_status WHERE id = $1", 1, v);
}

/* The transaction status must be idle-in-transaction: no statement failed (or was sent and failed). */
static void assert_in_clean_transaction(PGconn *c, const char *after)
{
    if (PQtransactionStatus(c) != PQTRANS_INTRANS)
        fail_msg("after %s the transaction is not clean (status %d): a statement reached the server and failed",
                 after, (int)PQtransactionStatus(c));
}

/* ---- what is stored -------------------------------------------------------- */

typedef struct rows {
    long status, messages;
} rows;

static rows count_rows(void)
{
    PGresult *r = PQexec(db, "SELECT (SELECT count(*) FROM cairn.workflow_status), (SELECT count(*) FROM cairn.messages)");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        fail_msg("counting rows: %s", PQerrorMessage(db));
    }
    rows n = {atol(PQgetvalue(r, 0, 0)), atol(PQgetvalue(r, 0, 1))};
    PQclear(r);
    return n;
}

static void assert_rows_unchanged(rows before, const char *what)
{
    rows after = count_rows();
    if (after.status != before.status || after.messages != before.messages)
        fail_msg("%s wrote rows: workflow_status %ld -> %ld, messages %ld -> %ld", what, before.status, after.status,
                 before.messages, after.messages);
}

/* ---- wake-ups -------------------------------------------------------------- */

static PGconn *listen_wakeups(void)
{
    PGconn *l = t_pg();
    RUN(l, "LISTEN cairn_wakeup");
    RUN(l, "LISTEN cairn_test_sentinel");
    return l;
}

static void set_armed(int on)
{
    RUN(db, on ? "UPDATE cairn.wakeup SET armed = true" : "UPDATE cairn.wakeup SET armed = false");
}

/* The wake-up flag as committed, seen from outside. */
static long armed(void)
{
    return number(db, "SELECT armed::int FROM cairn.wakeup", 0, NULL);
}

/* How many cairn_wakeup notifications reached l since the last call. */
static int wakeups(PGconn *l)
{
    RUN(db, "NOTIFY cairn_test_sentinel");
    int n = 0;
    long long deadline = now_ms() + 10000;
    for (;;) {
        if (!PQconsumeInput(l))
            fail_msg("listener: %s", PQerrorMessage(l));
        int sentinel = 0;
        PGnotify *note;
        while ((note = PQnotifies(l)) != NULL) {
            if (strcmp(note->relname, "cairn_wakeup") == 0)
                n++;
            else if (strcmp(note->relname, "cairn_test_sentinel") == 0)
                sentinel = 1;
            PQfreemem(note);
        }
        if (sentinel)
            return n;
        long long left = deadline - now_ms();
        if (left <= 0)
            fail_msg("the sentinel notification did not arrive within 10 s");
        struct pollfd p = {.fd = PQsocket(l), .events = POLLIN};
        poll(&p, 1, (int)left);
    }
}

/* ---- the grant script in docs/sql.md ------------------------------------------ */

/* The SQL between <!-- marker:begin --> and <!-- marker:end --> in docs/sql.md, without fences. */
static char *doc_block(const char *marker)
{
    char path[1024];
    const char *src = __FILE__;
    const char *t = strstr(src, "tests/test_sql.c");
    if (!t)
        fail_msg("cannot locate the source tree from %s", src);
    snprintf(path, sizeof path, "%.*sdocs/sql.md", (int)(t - src), src);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    static char doc[65536];
    size_t len = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[len] = '\0';
    char begin[128], end[128];
    snprintf(begin, sizeof begin, "<!-- %s:begin -->", marker);
    snprintf(end, sizeof end, "<!-- %s:end -->", marker);
    char *b = strstr(doc, begin), *e = b ? strstr(b, end) : NULL;
    if (!b || !e)
        fail_msg("%s has no %s ... %s block", path, begin, end);
    b += strlen(begin);
    char *out = calloc(1, (size_t)(e - b) + 1);
    size_t n = 0;
    /* Keep every line but the code fences and SQL comments. */
    for (char *line = b; line < e;) {
        char *nl = memchr(line, '\n', (size_t)(e - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(e - line);
        if (l > 0 && strncmp(line, "```", 3) != 0 && strncmp(line, "--", 2) != 0) {
            memcpy(out + n, line, l);
            out[n + l] = ' ';
            n += l + 1;
        }
        line += l + 1;
    }
    out[n] = '\0';
    return out;
}

/* Splits sql at semicolons into trimmed statements (pointers into sql); returns how many. */
static int split_statements(char *sql, char **out, int max)
{
    int n = 0;
    for (char *s = strtok(sql, ";"); s; s = strtok(NULL, ";")) {
        while (*s == ' ' || *s == '\n')
            s++;
        size_t l = strlen(s);
        while (l > 0 && (s[l - 1] == ' ' || s[l - 1] == '\n'))
            s[--l] = '\0';
        if (l > 0 && n < max)
            out[n++] = s;
    }
    return n;
}

static void run_doc_block(const char *marker)
{
    char *sql = doc_block(marker);
    char *stmts[64];
    int n = split_statements(sql, stmts, 64);
    if (n == 0)
        fail_msg("the %s block of docs/sql.md is empty", marker);
    for (int i = 0; i < n; i++)
        RUN(db, stmts[i]);
    free(sql);
}

/* The role, the application table with the trigger, and the documented grants (idempotent). */
static void ensure_app_role(int with_grants)
{
    RUN(db, "DO $$BEGIN"
            "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" APP_ROLE "') THEN"
            "    CREATE ROLE " APP_ROLE " LOGIN;"
            "  END IF;"
            " END$$");
    RUN(db, "ALTER ROLE " APP_ROLE " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS");
    /* Whatever PUBLIC may do cannot hide a missing grant. */
    RUN(db, "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA cairn FROM PUBLIC");
    RUN(db, "CREATE TABLE IF NOT EXISTS public.app_orders (id integer PRIMARY KEY, item text NOT NULL)");
    RUN(db, "CREATE OR REPLACE TRIGGER app_orders_enqueue AFTER INSERT ON public.app_orders"
            " FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('process_order', 'orders')");
    RUN(db, "GRANT SELECT, INSERT ON public.app_orders TO " APP_ROLE);
    if (with_grants)
        run_doc_block("cairn-grants");
}

/* A connection as the application role, or the test fails. */
static PGconn *connect_app(void)
{
    char conninfo[1400];
    snprintf(conninfo, sizeof conninfo, "%s user=" APP_ROLE, t_db());
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("cannot connect as " APP_ROLE " (the test server must trust local connections): %s", msg);
    }
    return c;
}

/* ---- workflows that the runner test runs ---------------------------------------- */

/* Committed workflows of registered names, and the output each must end with. */
static struct {
    char id[64];
    char *output;
} to_run[32];
static int n_to_run;

static void expect_run(const char *id, const char *output)
{
    assert_true(n_to_run < 32);
    snprintf(to_run[n_to_run].id, sizeof to_run[n_to_run].id, "%s", id);
    to_run[n_to_run].output = strdup(output);
    n_to_run++;
}

/* The stored input of a workflow as text, which an echo workflow returns. */
static char *stored_input(const char *id)
{
    const char *v[1] = {id};
    return value(db, "SELECT coalesce(input::text, 'null') FROM cairn.workflows WHERE id = $1", 1, v);
}

static int wf_echo(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    *out = strdup(in);
    return *out ? CAIRN_OK : cairn_fail(ctx, "out of memory");
}

static atomic_int gate_open;

/* Holds its executor thread until the test opens the gate, so that it stays PENDING. */
static int wf_gated(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    for (int i = 0; i < 30000 && !atomic_load(&gate_open); i++)
        usleep(1000);
    *out = strdup(in);
    return *out ? CAIRN_OK : cairn_fail(ctx, "out of memory");
}

/*
 * The IDs the SQL functions make are UUIDv7 in text form: a valid UUID,
 * version 7, RFC 4122 variant, its first 48 bits the current Unix time in
 * milliseconds, so that later IDs sort after earlier ones. Each path that
 * makes one is checked: cairn.enqueue without an ID (one INSERT), with a
 * dedup key and no ID (the look-up path), and the trigger.
 */
static void test_generated_ids(void **state)
{
    (void)state;
    RUN(db, "DROP TABLE IF EXISTS public.idgen_rows");
    RUN(db, "CREATE TABLE public.idgen_rows (k int)");
    RUN(db, "CREATE TRIGGER idgen AFTER INSERT ON public.idgen_rows"
            " FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('idgen_trig')");
    RUN(db, "INSERT INTO public.idgen_rows VALUES (1)");
    char *got = value(db,
                      "WITH ids(id) AS ("
                      "  SELECT cairn.enqueue('idgen_wf')"
                      "  UNION ALL SELECT cairn.enqueue('idgen_wf', dedup_key => 'idgen-key')"
                      "  UNION ALL SELECT s.id FROM cairn.workflow_status s WHERE s.name = 'idgen_trig')"
                      " SELECT count(*) FILTER (WHERE id::uuid::text = id AND substr(id, 15, 1) = '7'"
                      "   AND substr(id, 20, 1) IN ('8', '9', 'a', 'b')"
                      "   AND abs(('x' || replace(substr(id, 1, 13), '-', ''))::bit(48)::bigint"
                      "           - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 60000)"
                      "   || '/' || count(*) FROM ids",
                      0, NULL);
    char *a = value(db, "SELECT cairn.enqueue('idgen_wf')", 0, NULL);
    usleep(3000);
    char *b = value(db, "SELECT cairn.enqueue('idgen_wf')", 0, NULL);
    int ordered = strcmp(a, b) < 0;
    free(a);
    free(b);
    /* Removed before the assertions, so that a failure leaves nothing for the later tests to trip on. */
    RUN(db, "DROP TABLE public.idgen_rows");
    RUN(db, "DELETE FROM cairn.workflow_status WHERE name IN ('idgen_wf', 'idgen_trig')");
    assert_string_equal(got, "3/3");
    assert_true(ordered);
    free(got);
}

/* ---- 1. C enqueue on the application's connection --------------------------------- */

static void test_c_enqueue_atomic(void **state)
{
    PGconn *l = listen_wakeups();
    PGconn *app = t_pg();
    set_armed(1);
    assert_int_equal(wakeups(l), 0);

    /* Rolled back: no workflow, no payload, no wake-up, and the flag is still up. */
    RUN(app, "BEGIN");
    char *id = NULL;
    T_OK(NULL, cairn_enqueue(app, "sql_wf", "{\"via\":\"c\",\"n\":1}", NULL, &id));
    assert_non_null(id);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[14], '7'); /* a UUIDv7 */
    assert_int_equal(id_rows(app, id), 1); /* the enqueuing transaction sees it ... */
    assert_int_equal(id_rows(db, id), 0);  /* ... nobody else does before commit */
    RUN(app, "ROLLBACK");
    assert_int_equal(id_rows(db, id), 0);
    assert_int_equal(wakeups(l), 0);
    assert_int_equal(armed(), 1);
    cairn_free(id);

    /* Committed: one ENQUEUED workflow, exactly one wake-up, and the flag is down. */
    RUN(app, "BEGIN");
    T_OK(NULL, cairn_enqueue(app, "sql_wf", "{\"via\":\"c\",\"n\":2}", NULL, &id));
    assert_int_equal(id_rows(db, id), 0);
    RUN(app, "COMMIT");
    const char *v[1] = {id};
    expect_first(db, "SELECT concat_ws('|', w.name, w.status, w.queue, s.priority, w.input::text, s.dedup_key IS NULL)"
                     "  FROM cairn.workflows w JOIN cairn.workflow_status s USING (id) WHERE id = $1",
                 1, v, "sql_wf|ENQUEUED|default|0|{\"via\":\"c\",\"n\":2}|t");
    assert_int_equal(wakeups(l), 1);
    assert_int_equal(armed(), 0);
    expect_run(id, "{\"via\":\"c\",\"n\":2}");
    cairn_free(id);

    /* The flag is down: a committed enqueue (here outside any transaction) wakes nobody. */
    T_OK(NULL, cairn_enqueue(app, "sql_wf", "{\"via\":\"c\",\"n\":3}", NULL, &id));
    assert_int_equal(id_rows(db, id), 1);
    assert_int_equal(wakeups(l), 0);
    expect_run(id, "{\"via\":\"c\",\"n\":3}");
    cairn_free(id);

    /* Armed, two enqueues in one transaction: one wake-up. */
    set_armed(1);
    RUN(app, "BEGIN");
    T_OK(NULL, cairn_enqueue(app, "sql_wf", "[4]", NULL, &id));
    expect_run(id, "[4]");
    cairn_free(id);
    T_OK(NULL, cairn_enqueue(app, "sql_wf", "[5]", NULL, &id));
    expect_run(id, "[5]");
    cairn_free(id);
    RUN(app, "COMMIT");
    assert_int_equal(wakeups(l), 1);

    /* Every option reaches its column; a NULL input is JSON null. */
    cairn_enqueue_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.id = "c-opts-1";
    o.queue = "c_queue";
    o.priority = 7;
    o.delay_ms = 3600 * 1000;
    o.dedup_key = "c-dedup-1";
    T_OK(NULL, cairn_enqueue(app, "delayed_wf", NULL, &o, &id));
    assert_string_equal(id, "c-opts-1");
    cairn_free(id);
    expect_first(db, "SELECT concat_ws('|', name, queue, priority, dedup_key, input::text,"
                     "  available_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes')"
                     "  FROM cairn.workflow_status WHERE id = 'c-opts-1'",
                 0, NULL, "delayed_wf|c_queue|7|c-dedup-1|null|t");
    /* id_out may be NULL. */
    T_OK(NULL, cairn_enqueue(app, "delayed_wf", "1", &o, NULL));
    PQfinish(app);
    PQfinish(l);
}

/* ---- 2. the same through SQL and through the trigger ---------------------------------- */

static void test_sql_enqueue_atomic(void **state)
{
    PGconn *l = listen_wakeups();
    PGconn *app = t_pg();
    set_armed(1);
    assert_int_equal(wakeups(l), 0);
    const char *in[1] = {"{\"via\":\"sql\"}"};

    RUN(app, "BEGIN");
    char *id = value(app, "SELECT cairn.enqueue('sql_wf', $1::json)", 1, in);
    assert_non_null(id);
    assert_int_equal(id_rows(app, id), 1);
    assert_int_equal(id_rows(db, id), 0);
    RUN(app, "ROLLBACK");
    assert_int_equal(id_rows(db, id), 0);
    assert_int_equal(wakeups(l), 0);
    assert_int_equal(armed(), 1);
    free(id);

    RUN(app, "BEGIN");
    id = value(app, "SELECT cairn.enqueue('sql_wf', $1::json)", 1, in);
    RUN(app, "COMMIT");
    const char *v[1] = {id};
    expect_first(db, "SELECT concat_ws('|', name, status, queue, input::text) FROM cairn.workflows WHERE id = $1", 1, v,
                 "sql_wf|ENQUEUED|default|{\"via\":\"sql\"}");
    assert_int_equal(wakeups(l), 1);
    assert_int_equal(armed(), 0);
    expect_run(id, "{\"via\":\"sql\"}");
    free(id);

    /* Named arguments reach their columns. */
    expect_first(app, "SELECT cairn.enqueue('delayed_wf', '[1,2]', queue => 'sql_queue', id => 'sql-opts-1',"
                      " priority => -3, delay => '2 hours', dedup_key => 'sql-dk')",
                 0, NULL, "sql-opts-1");
    expect_first(db, "SELECT concat_ws('|', name, status, queue, priority, dedup_key, input::text,"
                     "  available_at BETWEEN now() + interval '119 minutes' AND now() + interval '121 minutes')"
                     "  FROM cairn.workflow_status WHERE id = 'sql-opts-1'",
                 0, NULL, "delayed_wf|ENQUEUED|sql_queue|-3|sql-dk|[1,2]|t");

    /* Without an input: SQL NULL, which the workflow receives as JSON null. */
    id = value(app, "SELECT cairn.enqueue('sql_wf')", 0, NULL);
    v[0] = id;
    assert_int_equal(number(db, "SELECT (input IS NULL)::int FROM cairn.workflows WHERE id = $1", 1, v), 1);
    expect_run(id, "null");

    /* A message, rolled back and committed. */
    const char *sv[1] = {id};
    RUN(app, "BEGIN");
    expect_first(app, "SELECT cairn.send($1, 'topic', '{\"m\":1}')", 1, sv, "t");
    RUN(app, "ROLLBACK");
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.messages WHERE workflow_id = $1", 1, sv), 0);
    RUN(app, "BEGIN");
    expect_first(app, "SELECT cairn.send($1, 'topic', '{\"m\":1}')", 1, sv, "t");
    RUN(app, "COMMIT");
    expect_first(db, "SELECT topic || ' ' || message::text FROM cairn.messages WHERE workflow_id = $1", 1, sv,
                 "topic {\"m\":1}");
    free(id);
    PQfinish(app);
    PQfinish(l);
}

static void test_trigger_atomic(void **state)
{
    PGconn *l = listen_wakeups();
    PGconn *app = t_pg();
    RUN(db, "CREATE TABLE public.orders (id integer PRIMARY KEY, item text NOT NULL, qty integer NOT NULL)");
    RUN(db, "CREATE TRIGGER orders_enqueue AFTER INSERT ON public.orders"
            " FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('process_order', 'orders')");
    const char *count_sql = "SELECT count(*) FROM cairn.workflows WHERE name = 'process_order'";
    set_armed(1);
    assert_int_equal(wakeups(l), 0);

    RUN(app, "BEGIN");
    RUN(app, "INSERT INTO public.orders VALUES (1, 'book', 2)");
    assert_int_equal(number(app, count_sql, 0, NULL), 1);
    assert_int_equal(number(db, count_sql, 0, NULL), 0);
    RUN(app, "ROLLBACK");
    assert_int_equal(number(db, count_sql, 0, NULL), 0);
    assert_int_equal(number(db, "SELECT count(*) FROM public.orders", 0, NULL), 0);
    assert_int_equal(wakeups(l), 0);
    assert_int_equal(armed(), 1);

    /* Three rows in one transaction (two statements): three workflows, each row as its input. */
    RUN(app, "BEGIN");
    RUN(app, "INSERT INTO public.orders VALUES (1, 'book', 2), (2, 'pen', 10)");
    RUN(app, "INSERT INTO public.orders VALUES (3, 'it''s \"quoted\" \\ here', 1)");
    RUN(app, "COMMIT");
    assert_int_equal(number(db, count_sql, 0, NULL), 3);
    assert_int_equal(number(db,
                            "SELECT count(*) FROM public.orders o JOIN cairn.workflows w"
                            "  ON w.name = 'process_order' AND w.queue = 'orders' AND w.status = 'ENQUEUED'"
                            " AND w.input::jsonb = jsonb_build_object('id', o.id, 'item', o.item, 'qty', o.qty)",
                            0, NULL),
                     3);
    assert_int_equal(wakeups(l), 1);
    assert_int_equal(armed(), 0);
    PGresult *r = PQexec(db, "SELECT id FROM cairn.workflows WHERE name = 'process_order'");
    assert_int_equal(PQntuples(r), 3);
    for (int i = 0; i < 3; i++) {
        char *input = stored_input(PQgetvalue(r, i, 0));
        expect_run(PQgetvalue(r, i, 0), input);
        free(input);
    }
    PQclear(r);

    /* Without a queue argument: queue "default"; an AFTER UPDATE trigger enqueues the new row. */
    RUN(db, "CREATE TABLE public.notes (id integer PRIMARY KEY, body text)");
    RUN(db, "CREATE TRIGGER notes_enqueue AFTER INSERT OR UPDATE ON public.notes"
            " FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('note_wf')");
    RUN(app, "INSERT INTO public.notes VALUES (1, 'first')");
    RUN(app, "UPDATE public.notes SET body = 'second' WHERE id = 1");
    expect_first(db, "SELECT string_agg(queue || ' ' || input::text, ', ' ORDER BY created_at, input::text)"
                     "  FROM cairn.workflows WHERE name = 'note_wf'",
                 0, NULL, "default {\"id\":1,\"body\":\"first\"}, default {\"id\":1,\"body\":\"second\"}");
    PQfinish(app);
    PQfinish(l);
}

/* ---- COMMIT runs it ------------------------------------------------------------------- */

static void test_committed_work_runs(void **state)
{
    assert_true(n_to_run >= 9); /* the tests above registered their committed workflows */
    cairn *h = t_open("sql-runner", 4);
    T_OK(h, cairn_register_workflow(h, "sql_wf", wf_echo, NULL));
    T_OK(h, cairn_register_workflow(h, "process_order", wf_echo, NULL));
    T_OK(h, cairn_register_workflow(h, "gated_wf", wf_gated, NULL));
    T_OK(h, cairn_start_workers(h));
    for (int i = 0; i < n_to_run; i++) {
        cairn_status st = CAIRN_STATUS_UNKNOWN;
        char *res = NULL;
        T_OK(h, cairn_await(h, to_run[i].id, 30000, &st, &res));
        if (st != CAIRN_STATUS_SUCCESS || !res || strcmp(res, to_run[i].output) != 0)
            fail_msg("workflow %s ended %s with %s; expected SUCCESS with %s", to_run[i].id, cairn_status_name(st),
                     res ? res : "(null)", to_run[i].output);
        cairn_free(res);
        free(to_run[i].output);
    }
    n_to_run = 0;
    /* Workflows nobody registered here, or not yet due, are left waiting. */
    assert_int_equal(id_rows(db, "sql-opts-1"), 1);
    expect_first(db, "SELECT status FROM cairn.workflow_status WHERE id = 'sql-opts-1'", 0, NULL, "ENQUEUED");

    /* A dedup key is held while its workflow is live, ENQUEUED or PENDING, and free once it finished. */
    PGconn *app = t_pg();
    char *first = value(app, "SELECT cairn.enqueue('gated_wf', '{\"g\":1}', dedup_key => 'gate-key')", 0, NULL);
    const char *v[1] = {first};
    long long deadline = now_ms() + 20000;
    char *st = NULL;
    while ((st = value(db, "SELECT status FROM cairn.workflow_status WHERE id = $1", 1, v)) != NULL &&
           strcmp(st, "PENDING") != 0 && now_ms() < deadline) {
        free(st);
        usleep(10 * 1000);
    }
    if (!st || strcmp(st, "PENDING") != 0)
        fail_msg("the gated workflow is %s, not PENDING", st ? st : "missing");
    free(st);
    expect_first(app, "SELECT cairn.enqueue('gated_wf', '{\"g\":2}', dedup_key => 'gate-key')", 0, NULL, first);
    cairn_enqueue_options o = {.size = sizeof o, .dedup_key = "gate-key"};
    char *cid = NULL;
    T_OK(NULL, cairn_enqueue(app, "gated_wf", "{\"g\":3}", &o, &cid));
    assert_string_equal(cid, first);
    cairn_free(cid);
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.workflow_status WHERE dedup_key = 'gate-key'", 0, NULL), 1);
    atomic_store(&gate_open, 1);
    cairn_status fst;
    char *res = NULL;
    T_OK(h, cairn_await(h, first, 30000, &fst, &res));
    assert_int_equal(fst, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "{\"g\":1}");
    cairn_free(res);
    char *second = value(app, "SELECT cairn.enqueue('gated_wf', '{\"g\":4}', dedup_key => 'gate-key')", 0, NULL);
    assert_string_not_equal(second, first);
    T_OK(h, cairn_await(h, second, 30000, &fst, &res));
    assert_int_equal(fst, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "{\"g\":4}");
    cairn_free(res);
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.workflow_status WHERE dedup_key = 'gate-key'", 0, NULL), 2);
    free(first);
    free(second);
    PQfinish(app);
    cairn_close(h);
}

/* ---- 3. idempotence ----------------------------------------------------------------------- */

static void test_idempotence(void **state)
{
    PGconn *app = t_pg();
    /* The same ID twice: one workflow, the first input stands. */
    expect_first(app, "SELECT cairn.enqueue('idem_wf', '{\"n\":1}', id => 'idem-1')", 0, NULL, "idem-1");
    rows before = count_rows();
    expect_first(app, "SELECT cairn.enqueue('idem_wf', '{\"n\":2}', id => 'idem-1')", 0, NULL, "idem-1");
    assert_rows_unchanged(before, "enqueueing an existing ID");
    expect_first(db, "SELECT input::text FROM cairn.workflows WHERE id = 'idem-1'", 0, NULL, "{\"n\":1}");

    /* The same ID under another name: refused, naming the ID and both names. */
    char *msg = refused(app, "SELECT cairn.enqueue('other_wf', '{}', id => 'idem-1')", 0, NULL, "23505", "idem-1");
    if (!strstr(msg, "'idem_wf'") || !strstr(msg, "'other_wf'"))
        fail_msg("the conflict message does not name both workflows: %s", msg);
    free(msg);
    assert_rows_unchanged(before, "a conflicting enqueue");

    /* The same through C. */
    cairn_enqueue_options o = {.size = sizeof o, .id = "idem-1"};
    char *id = NULL;
    T_OK(NULL, cairn_enqueue(app, "idem_wf", "{\"n\":3}", &o, &id));
    assert_string_equal(id, "idem-1");
    cairn_free(id);
    T_RC(NULL, CAIRN_ECONFLICT, cairn_enqueue(app, "other_wf", "{}", &o, &id));
    assert_null(id);
    assert_string_equal(cairn_sqlstate(NULL), "23505");
    assert_non_null(strstr(cairn_errmsg(NULL), "'other_wf'"));
    assert_non_null(strstr(cairn_errmsg(NULL), "'idem_wf'"));
    assert_rows_unchanged(before, "a conflicting C enqueue");

    /* Percent signs in names reach the message verbatim. */
    expect_first(app, "SELECT cairn.enqueue('pct%s%n', id => 'pct-%d')", 0, NULL, "pct-%d");
    msg = refused(app, "SELECT cairn.enqueue('pct%x%%', id => 'pct-%d')", 0, NULL, "23505", "'pct-%d'");
    if (!strstr(msg, "'pct%s%n'") || !strstr(msg, "'pct%x%%'"))
        fail_msg("the conflict message mangled the names: %s", msg);
    free(msg);

    /* A live dedup key returns the holder and creates nothing, whatever ID is asked for. */
    char *holder = value(app, "SELECT cairn.enqueue('dedup_wf', '{\"v\":1}', dedup_key => 'cust-1')", 0, NULL);
    before = count_rows();
    expect_first(app, "SELECT cairn.enqueue('dedup_wf', '{\"v\":2}', dedup_key => 'cust-1')", 0, NULL, holder);
    expect_first(app, "SELECT cairn.enqueue('dedup_wf', '{\"v\":3}', id => 'fresh-id', dedup_key => 'cust-1')", 0,
                 NULL, holder);
    cairn_enqueue_options d = {.size = sizeof d, .dedup_key = "cust-1"};
    T_OK(NULL, cairn_enqueue(app, "dedup_wf", "{\"v\":4}", &d, &id));
    assert_string_equal(id, holder);
    cairn_free(id);
    assert_rows_unchanged(before, "enqueueing a live dedup key");
    assert_int_equal(id_rows(db, "fresh-id"), 0);
    /* The key is per queue. */
    char *elsewhere =
        value(app, "SELECT cairn.enqueue('dedup_wf', '{\"v\":5}', queue => 'other', dedup_key => 'cust-1')", 0, NULL);
    assert_string_not_equal(elsewhere, holder);
    free(elsewhere);

    /* Two transactions racing for a key: the second waits for the first, then returns its workflow. */
    PGconn *t1 = t_pg(), *t2 = t_pg();
    RUN(t1, "BEGIN");
    char *racer = value(t1, "SELECT cairn.enqueue('dedup_wf', '1', dedup_key => 'race-key')", 0, NULL);
    const char *race_sql = "SELECT cairn.enqueue('dedup_wf', '2', dedup_key => 'race-key')";
    assert_int_equal(PQsendQueryParams(t2, race_sql, 0, NULL, NULL, NULL, NULL, 0), 1);
    usleep(300 * 1000);
    assert_int_equal(PQconsumeInput(t2), 1);
    assert_int_equal(PQisBusy(t2), 1); /* waiting for t1 */
    RUN(t1, "COMMIT");
    PGresult *r = PQgetResult(t2);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), racer);
    PQclear(r);
    assert_null(PQgetResult(t2));
    /* ... and if the first rolls back, the second inserts its own. */
    RUN(t1, "BEGIN");
    char *lost = value(t1, "SELECT cairn.enqueue('dedup_wf', '1', dedup_key => 'race-key-2')", 0, NULL);
    race_sql = "SELECT cairn.enqueue('dedup_wf', '2', dedup_key => 'race-key-2')";
    assert_int_equal(PQsendQueryParams(t2, race_sql, 0, NULL, NULL, NULL, NULL, 0), 1);
    usleep(300 * 1000);
    assert_int_equal(PQconsumeInput(t2), 1);
    assert_int_equal(PQisBusy(t2), 1);
    RUN(t1, "ROLLBACK");
    r = PQgetResult(t2);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_not_equal(PQgetvalue(r, 0, 0), lost);
    assert_int_equal(id_rows(db, PQgetvalue(r, 0, 0)), 1);
    PQclear(r);
    assert_null(PQgetResult(t2));
    assert_int_equal(id_rows(db, lost), 0);
    free(racer);
    free(lost);
    PQfinish(t1);
    PQfinish(t2);

    /* send with a message ID: stored once; the repeat returns false. */
    expect_first(app, "SELECT cairn.send('idem-1', 'payment', '{\"ok\":true}', message_id => 'msg-1')", 0, NULL, "t");
    before = count_rows();
    expect_first(app, "SELECT cairn.send('idem-1', 'payment', '{\"ok\":false}', message_id => 'msg-1')", 0, NULL, "f");
    assert_rows_unchanged(before, "a repeated message ID");
    expect_first(db, "SELECT message::text FROM cairn.messages WHERE workflow_id = 'idem-1' AND message_id = 'msg-1'", 0,
                 NULL, "{\"ok\":true}");
    /* The same message ID for another workflow is another message; without one, every send stores one. */
    expect_first(app, "SELECT cairn.send('pct-%d', 'payment', '1', message_id => 'msg-1')", 0, NULL, "t");
    expect_first(app, "SELECT cairn.send('idem-1', 'payment', '1')", 0, NULL, "t");
    expect_first(app, "SELECT cairn.send('idem-1', 'payment', '1')", 0, NULL, "t");
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.messages WHERE workflow_id = 'idem-1'", 0, NULL), 3);
    /* C: a repeat is accepted and stores nothing. */
    before = count_rows();
    T_OK(NULL, cairn_send(app, "idem-1", "payment", "2", "msg-2"));
    T_OK(NULL, cairn_send(app, "idem-1", "payment", "3", "msg-2"));
    assert_int_equal(count_rows().messages, before.messages + 1);
    /*
     * Once the workflow has read the message, a late repeat (a sender
     * retrying after a lost connection) still stores nothing.
     */
    expect_first(app, "SELECT cairn.send('idem-1', 'late', '\"first\"', message_id => 'msg-late')", 0, NULL, "t");
    expect_first(db, "SELECT output::text FROM cairn.receive('idem-1', 900, 'late')", 0, NULL, "\"first\"");
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.messages WHERE workflow_id = 'idem-1' AND topic = 'late'", 0,
                            NULL),
                     0);
    expect_first(app, "SELECT cairn.send('idem-1', 'late', '\"again\"', message_id => 'msg-late')", 0, NULL, "f");
    T_OK(NULL, cairn_send(app, "idem-1", "late", "\"again\"", "msg-late"));
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.messages WHERE workflow_id = 'idem-1' AND topic = 'late'", 0,
                            NULL),
                     0);
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.receive('idem-1', 901, 'late')", 0, NULL), 0);

    /* An unknown workflow: 23503, nothing stored; C says CAIRN_ENOTFOUND. */
    before = count_rows();
    refused_free(app, "SELECT cairn.send('nope-1', 'topic', '1')", 0, NULL, "23503", "no workflow has ID 'nope-1'");
    refused_free(app, "SELECT cairn.send('nope-1', 'topic', '1', message_id => 'm')", 0, NULL, "23503", "nope-1");
    T_RC(NULL, CAIRN_ENOTFOUND, cairn_send(app, "nope-1", "topic", "1", NULL));
    assert_string_equal(cairn_sqlstate(NULL), "23503");
    assert_non_null(strstr(cairn_errmsg(NULL), "nope-1"));
    /* Inside a transaction the failed statement aborts it, like any failed statement. */
    RUN(app, "BEGIN");
    T_RC(NULL, CAIRN_ENOTFOUND, cairn_send(app, "nope-1", "topic", "1", NULL));
    assert_int_equal(PQtransactionStatus(app), PQTRANS_INERROR);
    RUN(app, "ROLLBACK");
    assert_rows_unchanged(before, "sending to an unknown workflow");
    free(holder);
    PQfinish(app);
}

/* ---- 4. bad input ------------------------------------------------------------------------------ */

/* sql must fail with state and a message containing needle, and write nothing. */
static void bad(PGconn *c, const char *sql, int n, const char *const *vals, const char *state, const char *needle)
{
    rows before = count_rows();
    refused_free(c, sql, n, vals, state, needle);
    assert_rows_unchanged(before, sql);
}

static void test_bad_input_sql(void **state)
{
    PGconn *c = t_pg();
    char name201[202], mb201[202], name200[201];
    memset(name201, 'a', 201);
    name201[201] = '\0';
    memset(name200, 'b', 200);
    name200[200] = '\0';
    for (int i = 0; i < 67; i++)
        memcpy(mb201 + 3 * i, "\xe2\x9c\x93", 3); /* 67 check marks, 201 bytes */
    mb201[201] = '\0';
    const char *enq1 = "SELECT cairn.enqueue($1, '{}')";
    const char *p[1];

    /* Names. */
    bad(c, "SELECT cairn.enqueue(NULL, '{}')", 0, NULL, "22004", "cairn: workflow name is NULL");
    bad(c, "SELECT cairn.enqueue('', '{}')", 0, NULL, "22023", "cairn: workflow name is empty");
    p[0] = name201;
    bad(c, enq1, 1, p, "22023", "workflow name is 201 bytes long; the limit is 200");
    p[0] = mb201;
    bad(c, enq1, 1, p, "22023", "workflow name is 201 bytes long; the limit is 200");
    static const char *const controls[] = {"line\nbreak", "tab\there", "soh\x01", "del\x7f", "\r", "esc\x1b[0m"};
    for (size_t i = 0; i < sizeof controls / sizeof controls[0]; i++) {
        p[0] = controls[i];
        bad(c, enq1, 1, p, "22023", "cairn: workflow name contains a control character");
    }
    p[0] = "bad\xff\xfe";
    bad(c, enq1, 1, p, "22021", "invalid byte sequence");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', queue => NULL)", 0, NULL, "22004", "cairn: queue name is NULL");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', queue => '')", 0, NULL, "22023", "cairn: queue name is empty");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', id => '')", 0, NULL, "22023", "cairn: workflow ID is empty");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', id => E'a\\nb')", 0, NULL, "22023",
        "cairn: workflow ID contains a control character");
    p[0] = name201;
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', id => $1)", 1, p, "22023", "workflow ID is 201 bytes long");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', dedup_key => '')", 0, NULL, "22023", "cairn: dedup key is empty");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', dedup_key => E'\\t')", 0, NULL, "22023",
        "cairn: dedup key contains a control character");

    /* JSON. */
    bad(c, "SELECT cairn.enqueue('ok_wf', '{\"a\":')", 0, NULL, "22P02", "invalid input syntax for type json");
    p[0] = "{bad}";
    bad(c, "SELECT cairn.enqueue('ok_wf', $1::json)", 1, p, "22P02", "invalid input syntax for type json");
    p[0] = "[1, 2";
    bad(c, "SELECT cairn.enqueue('ok_wf', $1)", 1, p, "22P02", "invalid input syntax for type json");
    bad(c, "SELECT cairn.enqueue('ok_wf', json_build_object('x', repeat('a', 16777217)))", 0, NULL, "54000",
        "cairn: workflow input is 16777227 bytes; the limit is 16777216");

    /* Types and values. */
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', priority => 'abc')", 0, NULL, "22P02",
        "invalid input syntax for type integer");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', priority => '2147483648')", 0, NULL, "22003", "out of range");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', priority => NULL)", 0, NULL, "22004", "cairn: priority is NULL");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', delay => 'soon')", 0, NULL, "22007",
        "invalid input syntax for type interval");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', delay => '-1 second')", 0, NULL, "22023", "cairn: delay is negative");
    bad(c, "SELECT cairn.enqueue(123, '{}')", 0, NULL, "42883", "does not exist");
    bad(c, "SELECT cairn.enqueue('ok_wf', input => 42)", 0, NULL, "42883", "does not exist");
    bad(c, "SELECT cairn.enqueue('ok_wf', '{}', colour => 'red')", 0, NULL, "42883", "does not exist");

    /* send. */
    expect_first(c, "SELECT cairn.enqueue('ok_wf', '{}', id => 'bad-target')", 0, NULL, "bad-target");
    bad(c, "SELECT cairn.send(NULL, 'topic', '1')", 0, NULL, "22004", "cairn: workflow ID is NULL");
    bad(c, "SELECT cairn.send('bad-target', NULL, '1')", 0, NULL, "22004", "cairn: topic is NULL");
    bad(c, "SELECT cairn.send('bad-target', '', '1')", 0, NULL, "22023", "cairn: topic is empty");
    bad(c, "SELECT cairn.send('bad-target', 'topic', '{')", 0, NULL, "22P02", "invalid input syntax for type json");
    bad(c, "SELECT cairn.send('bad-target', 'topic', '1', message_id => E'm\\x01')", 0, NULL, "22023",
        "cairn: message ID contains a control character");
    bad(c, "SELECT cairn.send('bad-target', 'topic', to_json(repeat('a', 16777217)))", 0, NULL, "54000",
        "cairn: message is 16777219 bytes; the limit is 16777216");
    p[0] = name201;
    bad(c, "SELECT cairn.send('bad-target', $1, '1')", 1, p, "22023", "topic is 201 bytes long");

    /* Just inside the limits is accepted (in a transaction that is rolled back). */
    RUN(c, "BEGIN");
    p[0] = name200;
    char *id = value(c, enq1, 1, p);
    assert_non_null(id);
    free(id);
    id = value(c, "SELECT cairn.enqueue('big_wf', json_build_object('x', repeat('a', 16777206)))", 0, NULL);
    const char *v[1] = {id};
    assert_int_equal(number(c, "SELECT octet_length(input::text) FROM cairn.workflow_status WHERE id = $1", 1, v),
                     PAYLOAD_LIMIT);
    free(id);
    RUN(c, "ROLLBACK");

    /*
     * Hostile text is data: as names, IDs, queues, keys, topics and message
     * IDs, through SQL parameters and through C, each is stored byte for
     * byte and none is ever executed.
     */
    static const char *const hostile[] = {
        "x'); DROP TABLE cairn.steps; --",
        "\"; SELECT pg_sleep(10); --",
        "'; DROP SCHEMA cairn CASCADE; --",
        "$$; DROP TABLE cairn.steps; $$",
        "Robert'); DELETE FROM cairn.workflow_status WHERE ('1'='1",
        "' OR '1'='1",
        "O'Reilly \"quoted\"",
        "back\\slash\\' \\\" \\\\ \\x01",
        "%s%n%x%% %1$s",
        "\xd0\xb7\xd0\xb0\xd0\xba\xd0\xb0\xd0\xb7 \xe2\x84\x96 7 \xe2\x9c\x93 \xf0\x9f\x9a\x80",
        " leading and trailing spaces ",
        "E'\\x01' || chr(0)",
    };
    long long t0 = now_ms();
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        const char *s = hostile[i];
        char sid[256], cid[256];
        snprintf(sid, sizeof sid, "sql:%s", s);
        snprintf(cid, sizeof cid, "c:%s", s);
        const char *sv[2] = {s, sid};
        expect_first(c,
                     "SELECT cairn.enqueue($1, json_build_object('s', $1::text), id => $2, queue => $1,"
                     " dedup_key => $1)",
                     2, sv, sid);
        expect_first(c, "SELECT cairn.send($2, $1, to_json($1::text), message_id => $1)", 2, sv, "t");
        cairn_enqueue_options o = {.size = sizeof o, .id = cid, .queue = s, .dedup_key = "c"};
        char *got = NULL;
        T_OK(NULL, cairn_enqueue(c, s, "{\"s\":1}", &o, &got));
        assert_string_equal(got, cid);
        cairn_free(got);
        T_OK(NULL, cairn_send(c, cid, s, "1", s));
        const char *check[3] = {s, sid, cid};
        assert_int_equal(number(db,
                                "SELECT count(*) FROM cairn.workflows w JOIN cairn.workflow_status s USING (id)"
                                " WHERE w.name = $1 AND w.queue = $1 AND ((w.id = $2 AND w.input->>'s' = $1"
                                "   AND s.dedup_key = $1) OR (w.id = $3 AND s.dedup_key = 'c'))",
                                3, check),
                         2);
        assert_int_equal(number(db,
                                "SELECT count(*) FROM cairn.messages WHERE topic = $1 AND message_id = $1"
                                " AND ((workflow_id = $2 AND message #>> '{}' = $1)"
                                "   OR (workflow_id = $3 AND message::text = '1'))",
                                3, check),
                         2);
    }
    if (now_ms() - t0 > 8000)
        fail_msg("the hostile names took %lld ms: was pg_sleep run?", now_ms() - t0);
    /* A hostile value in a row reaches the workflow's input verbatim. */
    RUN(db, "CREATE TABLE public.hostile_rows (id integer PRIMARY KEY, item text)");
    RUN(db, "CREATE TRIGGER hostile_enqueue AFTER INSERT ON public.hostile_rows"
            " FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('hostile_wf')");
    p[0] = hostile[0];
    run(c, "INSERT INTO public.hostile_rows VALUES (1, $1)", 1, p);
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.workflows WHERE name = 'hostile_wf' AND input->>'item' = $1",
                            1, p),
                     1);
    /* Everything is still there. */
    assert_int_equal(number(db,
                            "SELECT (to_regclass('cairn.steps') IS NOT NULL AND to_regclass('cairn.workflow_status')"
                            " IS NOT NULL AND to_regclass('cairn.messages') IS NOT NULL)::int",
                            0, NULL),
                     1);
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.workflow_status WHERE id IN ('idem-1', 'bad-target')", 0,
                            NULL),
                     2);
    PQfinish(c);
}

/* A table whose trigger is created with `trigger`, and an insert into it that must fail. */
static void bad_trigger(int n, const char *trigger, const char *state, const char *needle)
{
    char sql[1024];
    snprintf(sql, sizeof sql, "CREATE TABLE public.misuse_%d (id integer PRIMARY KEY, body text)", n);
    RUN(db, sql);
    snprintf(sql, sizeof sql, "CREATE TRIGGER misuse_%d %s", n, trigger);
    char *on = strstr(sql, "ON TABLE");
    if (on) { /* "ON TABLE" in the pattern stands for the table's name */
        char tail[1024];
        snprintf(tail, sizeof tail, "ON public.misuse_%d%s", n, on + strlen("ON TABLE"));
        snprintf(on, sizeof sql - (size_t)(on - sql), "%s", tail);
    }
    RUN(db, sql);
    rows before = count_rows();
    snprintf(sql, sizeof sql, "INSERT INTO public.misuse_%d VALUES (1, 'x')", n);
    if (strstr(trigger, "DELETE")) {
        RUN(db, sql);
        snprintf(sql, sizeof sql, "DELETE FROM public.misuse_%d", n);
    }
    refused_free(db, sql, 0, NULL, state, needle);
    assert_rows_unchanged(before, sql);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM public.misuse_%d", n);
    assert_int_equal(number(db, sql, 0, NULL), strstr(trigger, "DELETE") ? 1 : 0);
}

static void test_trigger_misuse(void **state)
{
    char long_name[300];
    snprintf(long_name, sizeof long_name,
             "AFTER INSERT ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('%0201d')", 0);
    bad_trigger(1, "AFTER INSERT ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('')", "22023",
                "cairn: workflow name is empty");
    bad_trigger(2, "AFTER INSERT ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('tab\tname')", "22023",
                "cairn: workflow name contains a control character");
    bad_trigger(3, long_name, "22023", "workflow name is 201 bytes long");
    bad_trigger(4, "AFTER INSERT ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row()", "22023",
                "takes a workflow name and optionally a queue, not 0 arguments");
    bad_trigger(5, "AFTER INSERT ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('a', 'b', 'c')", "22023",
                "not 3 arguments");
    bad_trigger(6, "AFTER INSERT ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('ok_wf', '')", "22023",
                "cairn: queue name is empty");
    bad_trigger(7, "AFTER INSERT ON TABLE FOR EACH STATEMENT EXECUTE FUNCTION cairn.enqueue_row('ok_wf')", "0A000",
                "INSERT or UPDATE trigger FOR EACH ROW");
    /* A BEFORE trigger returning NULL would drop the row and still enqueue; it is refused instead. */
    bad_trigger(8, "BEFORE INSERT ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('ok_wf')", "0A000",
                "must be an AFTER INSERT or UPDATE trigger FOR EACH ROW");
    bad_trigger(9, "AFTER DELETE ON TABLE FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('ok_wf')", "0A000",
                "INSERT or UPDATE trigger FOR EACH ROW");
}

static void test_bad_input_c(void **state)
{
    PGconn *l = listen_wakeups();
    PGconn *app = t_pg();
    set_armed(1);
    assert_int_equal(wakeups(l), 0);
    rows before = count_rows();
    char *id = NULL;

    T_RC(NULL, CAIRN_EINVAL, cairn_enqueue(NULL, "wf", "{}", NULL, &id));
    assert_null(id);
    assert_non_null(strstr(cairn_errmsg(NULL), "conn is NULL"));
    T_RC(NULL, CAIRN_EINVAL, cairn_send(NULL, "wf", "topic", "{}", NULL));

    char *huge = malloc(PAYLOAD_LIMIT + 2);
    assert_non_null(huge);
    memset(huge, 'a', PAYLOAD_LIMIT + 1);
    huge[0] = '"';
    huge[PAYLOAD_LIMIT] = '"'; /* a valid JSON string of PAYLOAD_LIMIT + 1 bytes */
    huge[PAYLOAD_LIMIT + 1] = '\0';
    char name201[202];
    memset(name201, 'a', 201);
    name201[201] = '\0';

    RUN(app, "BEGIN");
    struct {
        const char *name, *input;
        int want;
        const char *needle;
    } cases[] = {
        {NULL, "{}", CAIRN_EINVAL, "workflow name is NULL"},
        {"", "{}", CAIRN_EINVAL, "workflow name is empty"},
        {name201, "{}", CAIRN_EINVAL, "201 bytes long"},
        {"a\nb", "{}", CAIRN_EINVAL, "control character"},
        {"a\x7f", "{}", CAIRN_EINVAL, "control character"},
        {"bad\xff", "{}", CAIRN_EINVAL, "not valid UTF-8"},
        {"x'); DROP TABLE cairn.steps; --\n", "{}", CAIRN_EINVAL, "control character"},
        {"ok_wf", "{\"a\":", CAIRN_EJSON, "workflow input"},
        {"ok_wf", "[1, 2", CAIRN_EJSON, "workflow input"},
        {"ok_wf", "", CAIRN_EJSON, "workflow input"},
        {"ok_wf", "{} {}", CAIRN_EJSON, "workflow input"},
        {"ok_wf", "\"\xff\"", CAIRN_EJSON, "workflow input"},
        {"ok_wf", "{'a': 1}", CAIRN_EJSON, "workflow input"},
        {"ok_wf", huge, CAIRN_ETOOBIG, "the limit is 16777216"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = cairn_enqueue(app, cases[i].name, cases[i].input, NULL, &id);
        if (rc != cases[i].want || id != NULL || !strstr(cairn_errmsg(NULL), cases[i].needle))
            fail_msg("case %zu: cairn_enqueue returned %d (%s) \"%s\"; expected %d and \"%s\"", i, rc,
                     cairn_strerror(rc), cairn_errmsg(NULL), cases[i].want, cases[i].needle);
        assert_string_equal(cairn_sqlstate(NULL), "");
        assert_in_clean_transaction(app, "a refused cairn_enqueue");
    }
    cairn_enqueue_options o;
    memset(&o, 0, sizeof o);
    T_RC(NULL, CAIRN_EINVAL, cairn_enqueue(app, "ok_wf", "{}", &o, &id)); /* size not set */
    assert_non_null(strstr(cairn_errmsg(NULL), "size"));
    struct {
        cairn_enqueue_options o;
        const char *needle;
    } opts[] = {
        {{.size = sizeof o, .id = ""}, "workflow ID is empty"},
        {{.size = sizeof o, .id = name201}, "workflow ID is 201 bytes long"},
        {{.size = sizeof o, .id = "a\tb"}, "workflow ID contains a control character"},
        {{.size = sizeof o, .queue = ""}, "queue name is empty"},
        {{.size = sizeof o, .queue = "q\n"}, "queue name contains a control character"},
        {{.size = sizeof o, .dedup_key = ""}, "dedup key is empty"},
        {{.size = sizeof o, .delay_ms = -1}, "delay_ms is negative"},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        int rc = cairn_enqueue(app, "ok_wf", "{}", &opts[i].o, &id);
        if (rc != CAIRN_EINVAL || !strstr(cairn_errmsg(NULL), opts[i].needle))
            fail_msg("option case %zu: cairn_enqueue returned %d \"%s\"; expected CAIRN_EINVAL and \"%s\"", i, rc,
                     cairn_errmsg(NULL), opts[i].needle);
    }
    T_RC(NULL, CAIRN_EINVAL, cairn_send(app, NULL, "topic", "1", NULL));
    T_RC(NULL, CAIRN_EINVAL, cairn_send(app, "idem-1", "", "1", NULL));
    T_RC(NULL, CAIRN_EINVAL, cairn_send(app, "idem-1", "to\npic", "1", NULL));
    T_RC(NULL, CAIRN_EINVAL, cairn_send(app, "idem-1", "topic", "1", "m\x01"));
    T_RC(NULL, CAIRN_EJSON, cairn_send(app, "idem-1", "topic", "{", NULL));
    T_RC(NULL, CAIRN_ETOOBIG, cairn_send(app, "idem-1", "topic", huge, NULL));
    assert_in_clean_transaction(app, "the refused calls");
    RUN(app, "ROLLBACK");
    free(huge);
    assert_rows_unchanged(before, "refused C calls");
    assert_int_equal(wakeups(l), 0);
    assert_int_equal(armed(), 1);

    /* Valid input just inside the limits goes through. */
    char name200[201];
    memset(name200, 'c', 200);
    name200[200] = '\0';
    RUN(app, "BEGIN");
    T_OK(NULL, cairn_enqueue(app, name200, "{\"emoji\":\"\xf0\x9f\x9a\x80\",\"deep\":[[[[1]]]]}", NULL, &id));
    cairn_free(id);
    RUN(app, "ROLLBACK");
    PQfinish(app);
    PQfinish(l);
}

/* ---- wake-ups and open transactions ------------------------------------------------------- */

/*
 * An application transaction that enqueued and stays open must not make
 * other enqueuers wait for it (they would queue behind its lock on the
 * wake-up flag, and could deadlock with it).
 */
static void test_open_enqueuer_blocks_nobody(void **state)
{
    PGconn *l = listen_wakeups();
    PGconn *a = t_pg(), *b = t_pg();
    set_armed(1);
    assert_int_equal(wakeups(l), 0);

    RUN(a, "BEGIN");
    char *ida = value(a, "SELECT cairn.enqueue('lock_wf', '\"a\"')", 0, NULL);
    RUN(b, "BEGIN");
    assert_int_equal(PQsendQueryParams(b, "SELECT cairn.enqueue('lock_wf', '\"b\"')", 0, NULL, NULL, NULL, NULL, 0), 1);
    long long deadline = now_ms() + 3000;
    while (now_ms() < deadline) {
        assert_int_equal(PQconsumeInput(b), 1);
        if (!PQisBusy(b))
            break;
        struct pollfd p = {.fd = PQsocket(b), .events = POLLIN};
        poll(&p, 1, 50);
    }
    int blocked = PQisBusy(b);
    if (blocked)
        RUN(a, "ROLLBACK"); /* release b before failing */
    PGresult *r = PQgetResult(b);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    char idb[64];
    snprintf(idb, sizeof idb, "%s", ok ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    assert_null(PQgetResult(b));
    if (blocked)
        fail_msg("an enqueue waited more than 3 s for another open transaction that had enqueued");
    assert_true(ok);
    RUN(b, "COMMIT");
    assert_int_equal(id_rows(db, idb), 1);
    /* b saw the flag up but could not take it: it announces its own work. */
    assert_int_equal(wakeups(l), 1);
    RUN(a, "COMMIT");
    assert_int_equal(id_rows(db, ida), 1);
    assert_int_equal(wakeups(l), 1);
    assert_int_equal(armed(), 0);
    free(ida);

    /* If the holder rolls back, the flag stays up for the next enqueue, and the other's work was announced anyway. */
    set_armed(1);
    RUN(a, "BEGIN");
    ida = value(a, "SELECT cairn.enqueue('lock_wf', '\"c\"')", 0, NULL);
    char *idc = value(b, "SELECT cairn.enqueue('lock_wf', '\"d\"')", 0, NULL);
    RUN(a, "ROLLBACK");
    assert_int_equal(id_rows(db, ida), 0);
    assert_int_equal(id_rows(db, idc), 1);
    assert_int_equal(wakeups(l), 1);
    assert_int_equal(armed(), 1);
    free(ida);
    free(idc);
    PQfinish(a);
    PQfinish(b);
    PQfinish(l);
}

/*
 * A REPEATABLE READ or SERIALIZABLE transaction whose snapshot predates
 * another enqueuer's clearing of the wake-up flag still enqueues: the
 * flag is bookkeeping and must not fail the application's transaction.
 */
static void test_enqueue_under_snapshot_isolation(void **state)
{
    static const char *const levels[] = {"BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN ISOLATION LEVEL SERIALIZABLE"};
    PGconn *l = listen_wakeups();
    PGconn *a = t_pg(), *b = t_pg();
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        set_armed(1);
        assert_int_equal(wakeups(l), 0);
        RUN(a, levels[i]);
        RUN(a, "SELECT count(*) FROM cairn.workflow_status"); /* takes the snapshot */
        char *idb = value(b, "SELECT cairn.enqueue('iso_wf', '\"b\"')", 0, NULL); /* clears the flag, commits */
        char *ida = NULL;
        T_OK(NULL, cairn_enqueue(a, "iso_wf", "\"a\"", NULL, &ida));
        char *ids = value(a, "SELECT cairn.enqueue('iso_wf', '\"s\"')", 0, NULL);
        RUN(a, "COMMIT");
        assert_int_equal(id_rows(db, ida), 1);
        assert_int_equal(id_rows(db, ids), 1);
        assert_int_equal(id_rows(db, idb), 1);
        assert_int_equal(wakeups(l), 2); /* b's, and a's: its snapshot still showed the flag up */
        assert_int_equal(armed(), 0);
        cairn_free(ida);
        free(ids);
        free(idb);
    }
    PQfinish(a);
    PQfinish(b);
    PQfinish(l);
}

/* ---- 5. least privilege -------------------------------------------------------------------------- */

/*
 * Everything an application does, as the role, in a transaction that is
 * rolled back: enqueue with a generated ID, priority, delay and dedup key;
 * enqueue an existing ID again; send with a message ID; fire the trigger;
 * then a send with an empty topic and an enqueue of an oversized input,
 * which must fail with their own errors, not with "permission denied".
 * Returns 0, or the SQLSTATE and message of the first failure in state/msg.
 */
static int app_trial(PGconn *app, char state[6], char *msg, size_t msglen)
{
    static const char *const steps[] = {
        "SELECT cairn.enqueue('lp_wf', '{\"t\":1}', priority => 2, delay => '1 second', dedup_key => 'lp-trial-key')",
        "SELECT cairn.enqueue('lp_wf', '{\"t\":2}', id => 'lp-existing')",
        "SELECT cairn.send('lp-existing', 'topic', '{\"m\":1}', message_id => 'lp-trial-msg')",
        "INSERT INTO public.app_orders VALUES (1000, 'trial')",
    };
    set_armed(1);
    RUN(app, "BEGIN");
    int failed = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0] && !failed; i++) {
        PGresult *r = PQexec(app, steps[i]);
        if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(state, 6, "%s", st ? st : "");
            snprintf(msg, msglen, "%s: %s", steps[i], PQresultErrorMessage(r));
            failed = 1;
        }
        PQclear(r);
    }
    RUN(app, "ROLLBACK");
    /*
     * Bad arguments must get their precise errors, which come from the check
     * functions: the calls that succeed above never reach them.
     */
    static const struct {
        const char *sql, *state;
    } refusals[] = {
        {"SELECT cairn.send('lp-existing', '', '{\"m\":1}')", "22023"},
        {"SELECT cairn.enqueue('lp_wf', json_build_object('x', repeat('a', 16777217)))", "54000"},
    };
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0] && !failed; i++) {
        RUN(app, "BEGIN");
        PGresult *r = PQexec(app, refusals[i].sql);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQresultStatus(r) != PGRES_FATAL_ERROR || !st || strcmp(st, refusals[i].state) != 0) {
            snprintf(state, 6, "%s", st ? st : "");
            snprintf(msg, msglen, "%s: %s", refusals[i].sql, PQresultErrorMessage(r));
            failed = 1;
        }
        PQclear(r);
        RUN(app, "ROLLBACK");
    }
    return failed;
}

/* Builds the REVOKE statements that undo one statement of the grant script: one per column where it lists columns. */
static int revokes_for(const char *grant, char out[][512], char regrant[][512], int max)
{
    const char *g = "GRANT ", *to = " TO " APP_ROLE;
    const char *end = strstr(grant, to);
    if (strncmp(grant, g, strlen(g)) != 0 || !end)
        fail_msg("cannot read the grant statement: %s", grant);
    const char *body = grant + strlen(g); /* "PRIV [(cols)] ON object" */
    const char *on = strstr(body, " ON ");
    const char *paren = memchr(body, '(', (size_t)(on - body));
    if (!paren) {
        snprintf(out[0], 512, "REVOKE %.*s FROM " APP_ROLE, (int)(end - body), body);
        snprintf(regrant[0], 512, "%s", grant);
        return 1;
    }
    const char *rparen = memchr(paren, ')', (size_t)(on - paren));
    int n = 0;
    for (const char *c = paren + 1; c < rparen && n < max;) {
        while (*c == ' ' || *c == ',')
            c++;
        const char *e = c;
        while (e < rparen && *e != ',')
            e++;
        snprintf(out[n], 512, "REVOKE %.*s (%.*s)%.*s FROM " APP_ROLE, (int)(paren - body - 1), body, (int)(e - c), c,
                 (int)(end - on), on);
        snprintf(regrant[n], 512, "GRANT %.*s (%.*s)%.*s TO " APP_ROLE, (int)(paren - body - 1), body, (int)(e - c), c,
                 (int)(end - on), on);
        n++;
        c = e;
    }
    return n;
}

static void test_least_privilege(void **state)
{
    ensure_app_role(0);
    RUN(db, "SELECT cairn.enqueue('lp_wf', '{}', id => 'lp-existing')");
    PGconn *app = connect_app();
    char st[6], msg[1024];

    /* Without the grants the role can do nothing with cairn. */
    if (!app_trial(app, st, msg, sizeof msg))
        fail_msg("the role could enqueue before it was granted anything");
    assert_string_equal(st, "42501");

    /* With exactly the documented grants it can do everything an application does. */
    run_doc_block("cairn-grants");
    if (app_trial(app, st, msg, sizeof msg))
        fail_msg("with the documented grants: %s %s", st, msg);

    /* For real, committed, from SQL, C and the trigger, with the wake-up. */
    PGconn *l = listen_wakeups();
    set_armed(1);
    assert_int_equal(wakeups(l), 0);
    RUN(app, "BEGIN");
    char *id = value(app, "SELECT cairn.enqueue('lp_wf', '{\"real\":1}', dedup_key => 'lp-key')", 0, NULL);
    expect_first(app, "SELECT cairn.enqueue('lp_wf', '{\"real\":2}', dedup_key => 'lp-key')", 0, NULL, id);
    expect_first(app, "SELECT armed::text FROM cairn.wakeup", 0, NULL, "false");
    char *cid = NULL;
    cairn_enqueue_options o = {.size = sizeof o, .id = "lp-from-c", .priority = 1};
    T_OK(NULL, cairn_enqueue(app, "lp_wf", "{\"real\":3}", &o, &cid));
    assert_string_equal(cid, "lp-from-c");
    cairn_free(cid);
    T_OK(NULL, cairn_send(app, "lp-from-c", "topic", "{\"m\":2}", "lp-msg"));
    T_OK(NULL, cairn_send(app, "lp-from-c", "topic", "{\"m\":2}", "lp-msg"));
    expect_first(app, "SELECT cairn.send('lp-existing', 'topic', '1', 'lp-msg')", 0, NULL, "t");
    RUN(app, "INSERT INTO public.app_orders VALUES (1, 'granted')");
    RUN(app, "COMMIT");
    const char *v[1] = {id};
    assert_int_equal(id_rows(db, id), 1);
    assert_int_equal(id_rows(db, "lp-from-c"), 1);
    assert_int_equal(number(db, "SELECT count(*) FROM cairn.messages WHERE message_id = 'lp-msg'", 0, NULL), 2);
    assert_int_equal(number(db,
                            "SELECT count(*) FROM cairn.workflows WHERE name = 'process_order' AND queue = 'orders'"
                            " AND input::jsonb = '{\"id\":1,\"item\":\"granted\"}'",
                            0, NULL),
                     1);
    expect_first(db, "SELECT input::text FROM cairn.workflows WHERE id = $1", 1, v, "{\"real\":1}");
    assert_int_equal(wakeups(l), 1);
    assert_int_equal(armed(), 0);
    free(id);

    /* It cannot change, finish, erase or read workflows, checkpoints or messages. */
    static const char *const forbidden[] = {
        "UPDATE cairn.workflow_status SET status = 'SUCCESS' WHERE id = 'lp-existing'",
        "UPDATE cairn.workflow_status SET executor_id = 'me'",
        "DELETE FROM cairn.workflow_status",
        "DELETE FROM cairn.steps",
        "INSERT INTO cairn.steps (workflow_id, step, name) VALUES ('lp-existing', 1, 'forged')",
        "SELECT output FROM cairn.steps",
        "SELECT input FROM cairn.workflow_status",
        "SELECT output, error FROM cairn.workflow_status",
        "UPDATE cairn.workflow_status SET output = '1'",
        "SELECT message FROM cairn.messages",
        "DELETE FROM cairn.messages",
        "TRUNCATE cairn.messages",
        "DELETE FROM cairn.wakeup",
        "SELECT * FROM cairn.workflows",
        "DROP TABLE cairn.steps",
        "SELECT * FROM cairn.migrations",
    };
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
        refused_free(app, forbidden[i], 0, NULL, "42501",
                     strncmp(forbidden[i], "DROP", 4) == 0 ? "must be owner" : "permission denied");
    expect_first(db, "SELECT status || coalesce(executor_id, '-') FROM cairn.workflow_status WHERE id = 'lp-existing'",
                 0, NULL, "ENQUEUED-");
    assert_true(number(db, "SELECT count(*) FROM cairn.messages", 0, NULL) > 0);

    /* None of the grants is surplus: without any one statement, or any one listed column, something fails. */
    char *script = doc_block("cairn-grants");
    char *stmts[64];
    int n = split_statements(script, stmts, 64);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        char revoke[16][512], regrant[16][512];
        int k = revokes_for(stmts[i], revoke, regrant, 16);
        for (int j = 0; j < k; j++) {
            RUN(db, revoke[j]);
            int failed = app_trial(app, st, msg, sizeof msg);
            RUN(db, regrant[j]);
            if (!failed)
                fail_msg("the grant is surplus: everything still works after %s", revoke[j]);
            if (strcmp(st, "42501") != 0)
                fail_msg("after %s: %s %s", revoke[j], st, msg);
            checked++;
        }
    }
    free(script);
    assert_true(checked >= 20);
    if (app_trial(app, st, msg, sizeof msg))
        fail_msg("after re-granting: %s %s", st, msg);

    /* The optional read grant opens the view, and nothing else. */
    run_doc_block("cairn-grants-read");
    expect_first(app, "SELECT status FROM cairn.workflows WHERE id = 'lp-existing'", 0, NULL, "ENQUEUED");
    refused_free(app, "SELECT input FROM cairn.workflow_status", 0, NULL, "42501", "permission denied");
    PQfinish(l);
    PQfinish(app);
}

/* ---- 6. search_path ---------------------------------------------------------------------------------- */

static void test_search_path_pinned(void **state)
{
    ensure_app_role(1);
    RUN(db, "DROP SCHEMA IF EXISTS evil CASCADE");
    RUN(db, "CREATE SCHEMA evil AUTHORIZATION " APP_ROLE);
    PGconn *e = connect_app();
    /* The role plants look-alikes of what the functions use, each logging its use. */
    static const char *const plant[] = {
        "CREATE TABLE evil.calls (what text)",
        "CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('pg_notify'); END$$",
        "CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('now'); RETURN '2000-01-01'; END$$",
        "CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('clock_timestamp'); RETURN '2000-01-01'; END$$",
        "CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('gen_random_uuid');"
        "  RETURN '00000000-0000-0000-0000-000000000000'; END$$",
        "CREATE FUNCTION evil.octet_length(text) RETURNS integer LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('octet_length'); RETURN 1; END$$",
        "CREATE FUNCTION evil.row_to_json(record) RETURNS pg_catalog.json LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('row_to_json'); RETURN '{\"evil\":true}'; END$$",
        "CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('='); RETURN false; END$$",
        "CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq)",
        "CREATE FUNCTION evil.text_match(text, text) RETURNS boolean LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('~'); RETURN false; END$$",
        "CREATE OPERATOR evil.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_match)",
        "CREATE FUNCTION evil.check_name(text, text) RETURNS void LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('check_name'); END$$",
        "CREATE FUNCTION evil.wake() RETURNS void LANGUAGE plpgsql"
        "  AS $$BEGIN INSERT INTO evil.calls VALUES ('wake'); END$$",
        "CREATE TABLE evil.workflow_status (id text, name text, status text, queue text)",
        "CREATE TABLE evil.messages (workflow_id text, topic text, message_id text, message text)",
        "CREATE TABLE evil.wakeup (id boolean, armed boolean)",
        "CREATE DOMAIN evil.json AS text",
        "SET search_path = evil, pg_catalog, public",
    };
    for (size_t i = 0; i < sizeof plant / sizeof plant[0]; i++)
        RUN(e, plant[i]);

    /* Control: unpinned SQL in this session does reach the look-alikes. */
    RUN(e, "SELECT pg_notify('cairn_test_control', ''), now(), octet_length('abc'), 'a'::text = 'a'::text,"
           " 'a'::text ~ 'a', row_to_json(ROW(1))");
    assert_int_equal(number(db, "SELECT count(DISTINCT what) FROM evil.calls", 0, NULL), 6);
    RUN(db, "TRUNCATE evil.calls");

    PGconn *l = listen_wakeups();
    set_armed(1);
    assert_int_equal(wakeups(l), 0);
    expect_first(e, "SELECT cairn.enqueue('shadow_wf', '{\"k\":1}', id => 'shadow-1')", 0, NULL, "shadow-1");
    char *gen = value(e, "SELECT cairn.enqueue('shadow_wf', '{\"k\":2}', dedup_key => 'shadow-key')", 0, NULL);
    expect_first(e, "SELECT cairn.enqueue('shadow_wf', '{\"k\":0}', dedup_key => 'shadow-key')", 0, NULL, gen);
    expect_first(e, "SELECT cairn.send('shadow-1', 'topic', '{\"m\":1}', 'shadow-msg')", 0, NULL, "t");
    expect_first(e, "SELECT cairn.send('shadow-1', 'topic', '{\"m\":1}', 'shadow-msg')", 0, NULL, "f");
    RUN(e, "INSERT INTO public.app_orders VALUES (500, 'shadow')");
    cairn_enqueue_options o = {.size = sizeof o, .id = "shadow-c", .delay_ms = 1};
    T_OK(NULL, cairn_enqueue(e, "shadow_wf", "{\"k\":3}", &o, NULL));
    T_OK(NULL, cairn_send(e, "shadow-c", "topic", "2", NULL));
    /* The checks still refuse what a look-alike operator would let through. */
    refused_free(e, "SELECT cairn.enqueue('')", 0, NULL, "22023", "cairn: workflow name is empty");
    refused_free(e, "SELECT cairn.enqueue(E'a\\nb')", 0, NULL, "22023", "control character");
    refused_free(e, "SELECT cairn.enqueue('shadow_other', id => 'shadow-1')", 0, NULL, "23505", "shadow-1");
    /* The helpers are pinned on their own too, not only when called from a pinned function. */
    refused_free(e, "SELECT cairn.check_name('name', '')", 0, NULL, "22023", "cairn: name is empty");
    refused_free(e, "SELECT cairn.check_payload('payload', json_build_object('x', repeat('a', 16777217)))", 0, NULL,
                 "54000", "the limit is 16777216");
    /* cairn.uuid7() is an optional helper for SQL users, outside the minimal grant set. */
    RUN(db, "GRANT EXECUTE ON FUNCTION cairn.uuid7() TO " APP_ROLE);
    char *uuid = value(e, "SELECT cairn.uuid7()", 0, NULL);
    assert_int_equal(strlen(uuid), 36);
    assert_int_equal(uuid[14], '7');
    assert_string_not_equal(uuid + 24, "000000000000");
    free(uuid);
    assert_int_equal(wakeups(l), 1); /* the real pg_notify, once, from the first enqueue */
    set_armed(1);
    RUN(e, "SELECT cairn.wake()");
    RUN(e, "RESET search_path");

    assert_int_equal(number(db, "SELECT count(*) FROM evil.calls", 0, NULL), 0);
    assert_int_equal(number(db,
                            "SELECT (SELECT count(*) FROM evil.workflow_status) + (SELECT count(*) FROM evil.messages)"
                            " + (SELECT count(*) FROM evil.wakeup)",
                            0, NULL),
                     0);
    assert_int_equal(strlen(gen), 36);
    assert_int_equal(gen[14], '7');
    assert_string_not_equal(gen, "00000000-0000-0000-0000-000000000000");
    const char *v[1] = {gen};
    assert_int_equal(number(db,
                            "SELECT count(*) FROM cairn.workflows WHERE name = 'shadow_wf' AND created_at > now() - "
                            "interval '1 hour' AND ((id = 'shadow-1' AND input::text = '{\"k\":1}')"
                            " OR (id = $1 AND input::text = '{\"k\":2}') OR (id = 'shadow-c' AND input::text ="
                            " '{\"k\":3}'))",
                            1, v),
                     3);
    assert_int_equal(number(db,
                            "SELECT count(*) FROM cairn.workflows WHERE name = 'process_order'"
                            " AND input::jsonb = '{\"id\":500,\"item\":\"shadow\"}'",
                            0, NULL),
                     1);
    assert_int_equal(
        number(db, "SELECT count(*) FROM cairn.messages WHERE workflow_id IN ('shadow-1', 'shadow-c')", 0, NULL), 2);
    assert_int_equal(wakeups(l), 1); /* and once more from cairn.wake() */
    assert_int_equal(armed(), 0);
    free(gen);
    PQfinish(e);
    PQfinish(l);
    RUN(db, "DROP SCHEMA evil CASCADE");
}

/* ---- main ---------------------------------------------------------------------------------------------- */

static int setup(void **state)
{
    t_fresh_db("cairn_test_sql");
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    cairn *h = NULL;
    int rc = cairn_open(&h, &o); /* applies the migrations */
    if (rc != CAIRN_OK) {
        fprintf(stderr, "cairn_open: %s\n", cairn_errmsg(h));
        cairn_close(h);
        return -1;
    }
    cairn_close(h);
    db = PQconnectdb(t_db());
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s", PQerrorMessage(db));
        return -1;
    }
    PQclear(PQexec(db, "SET client_min_messages = warning")); /* no notices from IF [NOT] EXISTS and CASCADE */
    /*
     * A test that fails between BEGIN and COMMIT on one of its own connections
     * leaves that transaction open, holding its locks (the wake-up flag's row,
     * say). A bounded wait makes the next test that needs them fail with a
     * lock timeout instead of waiting for ctest's timeout.
     */
    PQclear(PQexec(db, "SET lock_timeout = '20s'"));
    return 0;
}

static int teardown(void **state)
{
    PQfinish(db);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_ids),
        cmocka_unit_test(test_c_enqueue_atomic),
        cmocka_unit_test(test_sql_enqueue_atomic),
        cmocka_unit_test(test_trigger_atomic),
        cmocka_unit_test(test_committed_work_runs),
        cmocka_unit_test(test_idempotence),
        cmocka_unit_test(test_bad_input_sql),
        cmocka_unit_test(test_trigger_misuse),
        cmocka_unit_test(test_bad_input_c),
        cmocka_unit_test(test_open_enqueuer_blocks_nobody),
        cmocka_unit_test(test_enqueue_under_snapshot_isolation),
        cmocka_unit_test(test_least_privilege),
        cmocka_unit_test(test_search_path_pinned),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
