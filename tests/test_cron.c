/*
 * Cron schedules, checked from the database.
 *
 * The promise is one run per tick across the whole fleet, so the tests
 * that matter fire one schedule from several connections and threads at
 * once, tick after tick, and count: every tick has exactly one run, and the
 * firing calls together report exactly as many runs enqueued as there are
 * ticks (a tick fired twice would show there even though the run IDs make
 * the second run a no-op). Downtime is simulated by calling
 * cairn.cron_fire() with a later "now", so backfill is checked over
 * minutes and days without waiting for them.
 *
 * The C parser and the SQL parser must accept the same expressions with
 * the same messages: a table of cases and a few thousand generated
 * expressions go through both.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"
#include "internal.h"

static PGconn *db; /* the test's own connection to the test database */
static cairn *h;   /* a handle without workers, for the API calls */

/* ---- queries ------------------------------------------------------------ */

/* Runs sql with n text parameters; fails the test if the statement fails. */
static PGresult *query(const char *sql, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    return r;
}

/* The first column of the first row as a long long; 0 for no row or NULL. */
static long long q_ll(const char *sql, int n, const char *const *vals)
{
    PGresult *r = query(sql, n, vals);
    long long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

static long long q_ll1(const char *sql, const char *p1)
{
    const char *vals[1] = {p1};
    return q_ll(sql, p1 ? 1 : 0, vals);
}

/* The first column of the first row as text into buf; "<none>" for no row, "<null>" for NULL. */
static const char *q_text(const char *sql, int n, const char *const *vals, char *buf, size_t len)
{
    PGresult *r = query(sql, n, vals);
    if (PQntuples(r) == 0)
        snprintf(buf, len, "%s", "<none>");
    else
        snprintf(buf, len, "%s", PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

static const char *q_text1(const char *sql, const char *p1, char *buf, size_t len)
{
    const char *vals[1] = {p1};
    return q_text(sql, p1 ? 1 : 0, vals, buf, len);
}

/* Runs sql expecting it to fail; returns the server's primary message (without "cairn: ") and SQLSTATE. */
static const char *q_error(const char *sql, int n, const char *const *vals, char *buf, size_t len, char state[6])
{
    PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK) {
        snprintf(buf, len, "%s", "<succeeded>");
        snprintf(state, 6, "%s", "00000");
    } else {
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        m = m ? m : "<no message>";
        snprintf(buf, len, "%s", strncmp(m, "cairn: ", 7) == 0 ? m + 7 : m);
        snprintf(state, 6, "%s", st ? st : "?????");
    }
    PQclear(r);
    return buf;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Fresh options for cairn_schedule_set(). */
static cairn_schedule_options sopts(const char *workflow, const char *cron)
{
    cairn_schedule_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.workflow = workflow;
    o.cron = cron;
    return o;
}

static void set_schedule(const char *name, const char *workflow, const char *cron, int backfill)
{
    cairn_schedule_options o = sopts(workflow, cron);
    o.backfill = backfill;
    T_OK(h, cairn_schedule_set(h, name, &o));
}

/* How many runs schedule `name` has (workflows whose ID is name@...). */
static long long runs_of(const char *name)
{
    return q_ll1("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE $1 || '@%'", name);
}

/*
 * Fails unless the runs of schedule `name` are exactly one per tick of a
 * schedule firing every `every` seconds, from the first run to the last
 * with none missing. Returns how many there are.
 */
static long long expect_every_tick(const char *name, int every)
{
    char buf[256], step[16];
    snprintf(step, sizeof step, "%d", every);
    const char *vals[2] = {name, step};
    long long n = runs_of(name);
    long long span = q_ll("SELECT extract(epoch FROM max(t) - min(t))::bigint / $2::int + 1"
                          "  FROM (SELECT split_part(id, '@', 2)::timestamptz AS t FROM cairn.workflow_status"
                          "         WHERE id LIKE $1 || '@%') x",
                          2, vals);
    long long off = q_ll("SELECT count(*) FROM cairn.workflow_status"
                         " WHERE id LIKE $1 || '@%'"
                         "   AND extract(epoch FROM split_part(id, '@', 2)::timestamptz)::bigint % $2::int <> 0",
                         2, vals);
    if (n != span || off != 0)
        fail_msg("schedule %s: %lld runs for %lld ticks from the first to the last, %lld off the %ds grid; runs: %s",
                 name, n, span, off, every,
                 q_text1("SELECT string_agg(split_part(id, '@', 2), ' ' ORDER BY id) FROM cairn.workflow_status"
                         " WHERE id LIKE $1 || '@%'",
                         name, buf, sizeof buf));
    return n;
}

/* ---- parsing: the C and SQL parsers agree ------------------------------- */

/* The bits lo, lo+step, ..., up to hi. */
static unsigned long long bits(int lo, int hi, int step)
{
    unsigned long long m = 0;
    for (int v = lo; v <= hi; v += step)
        m |= 1ULL << v;
    return m;
}

/*
 * Runs cron through both parsers. The C one is reached through
 * cairn_schedule_set() with an empty time zone, which it refuses right
 * after the expression, before anything reaches the database: a good
 * expression comes back as "time zone is empty", a bad one with its own
 * message. Returns the SQL parser's message ("" when it accepted the
 * expression) in sqlmsg after checking that the C parser said the same.
 */
static void both_parsers(const char *cron, char *sqlmsg, size_t len)
{
    char state[6], want[1200];
    const char *vals[1] = {cron};
    q_error("SELECT cairn.parse_cron($1)", 1, vals, sqlmsg, len, state);
    int ok = strcmp(state, "00000") == 0;
    if (ok)
        sqlmsg[0] = '\0';
    else if (strcmp(state, "22023") != 0)
        fail_msg("cairn.parse_cron('%s') failed with SQLSTATE %s: %s", cron, state, sqlmsg);

    cairn_schedule_options o = sopts("w", cron);
    o.timezone = "";
    int rc = cairn_schedule_set(h, "parse", &o);
    snprintf(want, sizeof want, "schedule 'parse': %s", ok ? "time zone is empty" : sqlmsg);
    if (rc != CAIRN_EINVAL || strcmp(cairn_errmsg(h), want) != 0 || cairn_sqlstate(h)[0] != '\0')
        fail_msg("cron '%s': the SQL parser says \"%s\"; cairn_schedule_set returned %d with \"%s\" (SQLSTATE '%s')",
                 cron, ok ? "accepted" : sqlmsg, rc, cairn_errmsg(h), cairn_sqlstate(h));
}

static void test_parse_cases(void **state)
{
    (void)state;
    const unsigned long long all_days = bits(1, 31, 1), all_months = bits(1, 12, 1), all_dow = bits(0, 6, 1);
    const struct {
        const char *cron;
        unsigned long long sec, min, hour, dom, mon, dow;
        int dom_star, dow_star;
    } good[] = {
        {"* * * * *", 1, bits(0, 59, 1), bits(0, 23, 1), all_days, all_months, all_dow, 1, 1},
        {"*/15 9-17 * * mon-fri", 1, bits(0, 59, 15), bits(9, 17, 1), all_days, all_months, bits(1, 5, 1), 1, 0},
        {"  0   3 * * *\t", 1, 1, 1ULL << 3, all_days, all_months, all_dow, 1, 1},
        {"*/10 * * * * *", bits(0, 59, 10), bits(0, 59, 1), bits(0, 23, 1), all_days, all_months, all_dow, 1, 1},
        {"5,10-20/5,59 0 1,15 JAN,jul-Sep sun", bits(0, 0, 1) | 0, (1ULL << 5) | bits(10, 20, 5) | (1ULL << 59), 1,
         (1ULL << 1) | (1ULL << 15), (1ULL << 1) | bits(7, 9, 1), 1, 0, 0},
        {"0 0 * * 7", 1, 1, 1, all_days, all_months, 1, 1, 0},
        {"0 0 * * fri-sun", 1, 1, 1, all_days, all_months, 1 | bits(5, 6, 1), 1, 0},
        {"0 0 * * 5-7", 1, 1, 1, all_days, all_months, 1 | bits(5, 6, 1), 1, 0},
        {"0 0 * * */2", 1, 1, 1, all_days, all_months, bits(0, 6, 2), 1, 1},
        {"0 0 */2 * mon", 1, 1, 1, bits(1, 31, 2), all_months, 1ULL << 1, 1, 0},
        {"0 0 29 2 *", 1, 1, 1, 1ULL << 29, 1ULL << 2, all_dow, 0, 1},
        {"0 0 31 2 mon", 1, 1, 1, 1ULL << 31, 1ULL << 2, 1ULL << 1, 0, 0},
        {"@hourly", 1, 1, bits(0, 23, 1), all_days, all_months, all_dow, 1, 1},
        {"@Daily", 1, 1, 1, all_days, all_months, all_dow, 1, 1},
        {"@weekly", 1, 1, 1, all_days, all_months, 1, 1, 0},
        {"@monthly", 1, 1, 1, 1ULL << 1, all_months, all_dow, 0, 1},
        {"@yearly", 1, 1, 1, 1ULL << 1, 1ULL << 1, all_dow, 0, 1},
        {"59 59 23 31 12 6", 1ULL << 59, 1ULL << 59, 1ULL << 23, 1ULL << 31, 1ULL << 12, 1ULL << 6, 0, 0},
    };
    const struct {
        const char *cron, *message;
    } bad[] = {
        {"", "cron expression \"\" has 0 fields; it needs 5 (minute hour day-of-month month day-of-week) or 6 "
             "(second minute hour day-of-month month day-of-week)"},
        {"* * * *", "cron expression \"* * * *\" has 4 fields; it needs 5 (minute hour day-of-month month "
                    "day-of-week) or 6 (second minute hour day-of-month month day-of-week)"},
        {"* * * * * * *", "cron expression \"* * * * * * *\" has 7 fields; it needs 5 (minute hour day-of-month "
                          "month day-of-week) or 6 (second minute hour day-of-month month day-of-week)"},
        {"61 * * * *", "cron minute field \"61\": \"61\" is out of range 0-59"},
        {"* 24 * * *", "cron hour field \"24\": \"24\" is out of range 0-23"},
        {"* * 0 * *", "cron day-of-month field \"0\": \"0\" is out of range 1-31"},
        {"* * * 13 *", "cron month field \"13\": \"13\" is out of range 1-12"},
        {"* * * * 8", "cron day-of-week field \"8\": \"8\" is out of range 0-7"},
        {"60 * * * * *", "cron second field \"60\": \"60\" is out of range 0-59"},
        {"1,99999 * * * *", "cron minute field \"1,99999\": \"99999\" is out of range 0-59"},
        {"* * * foo *", "cron month field \"foo\": unknown name \"foo\""},
        {"* * * * monday", "cron day-of-week field \"monday\": unknown name \"monday\""},
        {"mon * * * *", "cron minute field \"mon\": \"mon\" is not a number"},
        {"* * * jan1 *", "cron month field \"jan1\": \"jan1\" is not a number"},
        {"*/0 * * * *", "cron minute field \"*/0\": step \"0\" is out of range 1-60"},
        {"* */25 * * *", "cron hour field \"*/25\": step \"25\" is out of range 1-24"},
        {"*/x * * * *", "cron minute field \"*/x\": bad step \"x\""},
        {"*/ * * * *", "cron minute field \"*/\": bad step \"\""},
        {"1-5/2/3 * * * *", "cron minute field \"1-5/2/3\": bad step \"2/3\""},
        {"5/15 * * * *", "cron minute field \"5/15\": \"5/15\": a step needs a range or * before it"},
        {"/5 * * * *", "cron minute field \"/5\": \"/5\": a step needs a range or * before it"},
        {"5-2 * * * *", "cron minute field \"5-2\": range \"5-2\" runs backwards"},
        {"* * * * sat-mon", "cron day-of-week field \"sat-mon\": range \"sat-mon\" runs backwards"},
        {"1-2-3 * * * *", "cron minute field \"1-2-3\": \"1-2-3\" is not a value or a range"},
        {"-5 * * * *", "cron minute field \"-5\": \"-5\" is not a value or a range"},
        {"5- * * * *", "cron minute field \"5-\": \"5-\" is not a value or a range"},
        {"1,,2 * * * *", "cron minute field \"1,,2\": empty list element"},
        {"1, * * * *", "cron minute field \"1,\": empty list element"},
        {"@reboot", "cron expression \"@reboot\": unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, "
                    "@midnight or @hourly)"},
        {"@daily *", "cron expression \"@daily *\": unknown macro (use @yearly, @annually, @monthly, @weekly, "
                     "@daily, @midnight or @hourly)"},
        {"0 0 31 2,4 *", "cron expression \"0 0 31 2,4 *\" never matches: no chosen month has any of the chosen "
                         "days of the month"},
        {"0 0 30 feb *", "cron expression \"0 0 30 feb *\" never matches: no chosen month has any of the chosen "
                         "days of the month"},
    };
    char msg[1200], want[600], buf[600];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        both_parsers(good[i].cron, msg, sizeof msg);
        if (msg[0])
            fail_msg("cron '%s' refused: %s", good[i].cron, msg);
        snprintf(want, sizeof want, "(%llu,%llu,%llu,%llu,%llu,%llu,%c,%c)", good[i].sec, good[i].min, good[i].hour,
                 good[i].dom, good[i].mon, good[i].dow, good[i].dom_star ? 't' : 'f', good[i].dow_star ? 't' : 'f');
        const char *got = q_text1("SELECT cairn.parse_cron($1)::text", good[i].cron, buf, sizeof buf);
        if (strcmp(got, want) != 0)
            fail_msg("cron '%s' parsed as %s, expected %s", good[i].cron, got, want);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        both_parsers(bad[i].cron, msg, sizeof msg);
        if (strcmp(msg, bad[i].message) != 0)
            fail_msg("cron '%s': message \"%s\", expected \"%s\"", bad[i].cron, msg, bad[i].message);
    }
    /* Too long, and NULL. */
    char longcron[1100];
    memset(longcron, ' ', 1001);
    longcron[1001] = '\0';
    memcpy(longcron, "* * * * *", 9);
    both_parsers(longcron, msg, sizeof msg);
    assert_string_equal(msg, "cron expression is 1001 bytes long; the limit is 1000");
    cairn_schedule_options o = sopts("w", NULL);
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, "parse", &o));
    assert_string_equal(cairn_errmsg(h), "schedule 'parse': cron is required");
    assert_int_equal(q_ll("SELECT count(*) FROM cairn.schedules", 0, NULL), 0);
}

/* Appends one generated list element for field f: mostly valid, sometimes not. */
static size_t gen_element(char *out, size_t len, int f, unsigned *seed)
{
    static const int hi[6] = {59, 59, 23, 31, 12, 7};
    static const char *const junk[] = {"*", "-", "/", ",", "", "x", "foo", "mon", "jan", "Sun", "DEC", "99999",
                                       "007", "60", "32", "24", "8", "13", "0", "@daily", "*/", "1-", "-1"};
    static const char *const names[2][4] = {{"jan", "Feb", "jul", "DEC"}, {"sun", "MON", "fri", "sat"}};
    size_t n = 0;
    int kind = (int)(rand_r(seed) % 10);
    int a = (int)(rand_r(seed) % (unsigned)(hi[f] + 2)), b = (int)(rand_r(seed) % (unsigned)(hi[f] + 2));
    if (kind == 0) {
        n += (size_t)snprintf(out, len, "%s", junk[rand_r(seed) % (sizeof junk / sizeof junk[0])]);
    } else if (kind <= 2) {
        n += (size_t)snprintf(out, len, "*");
    } else if (kind <= 5) {
        n += (size_t)snprintf(out, len, "%d", a);
    } else if (kind <= 7) {
        n += (size_t)snprintf(out, len, "%d-%d", a < b ? a : b, a < b ? b : a);
    } else if (f >= 4) {
        n += (size_t)snprintf(out, len, "%s", names[f - 4][rand_r(seed) % 4]);
    } else {
        n += (size_t)snprintf(out, len, "%d-%d", b, a);
    }
    if (rand_r(seed) % 4 == 0)
        n += (size_t)snprintf(out + n, len - n, "/%d", (int)(rand_r(seed) % (unsigned)(hi[f] + 3)));
    return n;
}

/* Generated expressions, mostly near-valid, through both parsers. */
static void test_parse_generated(void **state)
{
    (void)state;
    char cron[512], msg[1200];
    unsigned seed = 12345;
    int accepted = 0, refused = 0;

    for (int i = 0; i < 3000; i++) {
        size_t n = 0;
        int r = (int)(rand_r(&seed) % 20);
        int nfields = r == 0 ? 4 : r == 1 ? 7 : r < 8 ? 6 : 5;
        for (int f = 0; f < nfields; f++) {
            int field = nfields == 6 ? f : f + 1;
            if (field > 5)
                field = 5;
            if (f > 0)
                n += (size_t)snprintf(cron + n, sizeof cron - n, "%s", rand_r(&seed) % 8 ? " " : " \t ");
            int nel = rand_r(&seed) % 4 ? 1 : 1 + (int)(rand_r(&seed) % 3);
            for (int e = 0; e < nel; e++) {
                if (e > 0)
                    n += (size_t)snprintf(cron + n, sizeof cron - n, ",");
                n += gen_element(cron + n, sizeof cron - n, field, &seed);
            }
        }
        both_parsers(cron, msg, sizeof msg);
        if (msg[0])
            refused++;
        else
            accepted++;
    }
    printf("# generated expressions: %d accepted, %d refused, every one alike by both parsers\n", accepted,
           refused);
    assert_true(accepted > 300 && refused > 300);
}

/* ---- ticks ---------------------------------------------------------------- */

static void test_next_ticks(void **state)
{
    (void)state;
    const struct {
        const char *cron, *tz, *after, *want; /* want: the next ticks after `after`, UTC, space-separated */
    } cases[] = {
        {"0 3 * * *", "UTC", "2024-05-01 12:00Z", "2024-05-02T03:00:00Z 2024-05-03T03:00:00Z"},
        {"*/20 * * * * *", "UTC", "2024-05-01 12:00:59.5Z", "2024-05-01T12:01:00Z 2024-05-01T12:01:20Z"},
        {"*/15 9-17 * * mon-fri", "UTC", "2024-05-03 17:40Z", "2024-05-03T17:45:00Z 2024-05-06T09:00:00Z"},
        /* Both day fields restricted: either matches (the 1st, the 15th, and Mondays). */
        {"0 0 1,15 * mon", "UTC", "2024-04-30 12:00Z", "2024-05-01T00:00:00Z 2024-05-06T00:00:00Z"},
        /* A day field starting with '*' restricts with the other (Vixie cron): odd days that are Mondays. */
        {"0 0 */2 * mon", "UTC", "2024-05-01 12:00Z", "2024-05-13T00:00:00Z 2024-05-27T00:00:00Z"},
        {"0 0 29 2 *", "UTC", "2097-01-01Z", "2104-02-29T00:00:00Z 2108-02-29T00:00:00Z"},
        {"0 12 * * *", "Asia/Kolkata", "2024-05-01 00:00Z", "2024-05-01T06:30:00Z 2024-05-02T06:30:00Z"},
        /* Paris springs forward at 02:00 local on 2024-03-31: 02:30 does not exist and fires at 03:30. */
        {"30 2 * * *", "Europe/Paris", "2024-03-30 12:00Z",
         "2024-03-31T01:30:00Z 2024-04-01T00:30:00Z"},
        {"0 * * * *", "Europe/Paris", "2024-03-30 23:30Z",
         "2024-03-31T00:00:00Z 2024-03-31T01:00:00Z 2024-03-31T02:00:00Z"},
        /* Paris falls back at 03:00 local on 2024-10-27: 02:30 happens twice and fires the first time. */
        {"30 2 * * *", "Europe/Paris", "2024-10-26 12:00Z", "2024-10-27T00:30:00Z 2024-10-28T01:30:00Z"},
        {"0 * * * *", "Europe/Paris", "2024-10-26 23:30Z",
         "2024-10-27T00:00:00Z 2024-10-27T02:00:00Z 2024-10-27T03:00:00Z"},
        /* From inside the second pass of the overlap, the repeated wall times are over. */
        {"*/10 * * * *", "Europe/Paris", "2024-10-27 01:05Z", "2024-10-27T02:00:00Z 2024-10-27T02:10:00Z"},
        {"*/30 * * * *", "America/New_York", "2024-03-10 06:45Z",
         "2024-03-10T07:00:00Z 2024-03-10T07:30:00Z 2024-03-10T08:00:00Z"},
        {"30 1 * * *", "America/New_York", "2024-11-02 12:00Z", "2024-11-03T05:30:00Z 2024-11-04T06:30:00Z"},
    };
    char buf[512];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int count = 1;
        for (const char *p = cases[i].want; *p; p++)
            count += *p == ' ';
        char cnt[8];
        snprintf(cnt, sizeof cnt, "%d", count);
        const char *vals[4] = {cases[i].cron, cases[i].tz, cases[i].after, cnt};
        const char *got = q_text(
            "WITH RECURSIVE t(n, tick) AS ("
            "  SELECT 1, cairn.cron_next_tick(cairn.parse_cron($1), $2, $3::timestamptz)"
            "  UNION ALL SELECT n + 1, cairn.cron_next_tick(cairn.parse_cron($1), $2, tick) FROM t WHERE n < $4::int)"
            "SELECT string_agg(cairn.cron_tick_text(tick), ' ' ORDER BY n) FROM t",
            4, vals, buf, sizeof buf);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("'%s' in %s after %s: %s, expected %s", cases[i].cron, cases[i].tz, cases[i].after, got,
                     cases[i].want);
    }
}

/* ---- the API ----------------------------------------------------------------- */

static void test_set_list_pause_delete(void **state)
{
    (void)state;
    char buf[1024];
    cairn_schedule_options o = sopts("report", "0 3 * * *");
    o.timezone = "europe/paris";
    o.input = "{\"kind\": \"daily\"}";
    o.queue = "reports";
    o.backfill = 1;
    T_OK(h, cairn_schedule_set(h, "nightly", &o));
    assert_string_equal(q_text1("SELECT concat_ws('|', workflow, cron, timezone, input::text, queue, backfill, paused,"
                                "                 next_tick > now(), last_tick IS NULL)"
                                "  FROM cairn.schedules WHERE name = $1",
                                "nightly", buf, sizeof buf),
                        "report|0 3 * * *|Europe/Paris|{\"kind\": \"daily\"}|reports|t|f|t|t");
    /* The next tick is 03:00 in Paris. */
    assert_string_equal(q_text1("SELECT to_char(next_tick AT TIME ZONE 'Europe/Paris', 'HH24:MI:SS')"
                                "  FROM cairn.schedules WHERE name = $1",
                                "nightly", buf, sizeof buf),
                        "03:00:00");

    /* The list, as JSON, with the fields cairn.h names. */
    char *json = NULL;
    T_OK(h, cairn_schedule_list(h, &json));
    const char *jv[1] = {json};
    assert_string_equal(q_text("SELECT concat_ws('|', e->>'name', e->>'workflow', e->>'cron', e->>'timezone',"
                               "  e->'input'->>'kind', e->>'queue', e->>'backfill', e->>'paused',"
                               "  coalesce(e->>'last_tick', 'null'),"
                               "  e->>'next_tick' = cairn.cron_tick_text(s.next_tick),"
                               "  coalesce(e->>'last_error', 'null'))"
                               "  FROM json_array_elements($1::json) e JOIN cairn.schedules s ON s.name = e->>'name'",
                               1, jv, buf, sizeof buf),
                        "nightly|report|0 3 * * *|Europe/Paris|daily|reports|true|false|null|t|null");
    cairn_free(json);

    /* Pausing clears the next tick; setting again without paused leaves it paused; resuming counts from now. */
    T_OK(h, cairn_schedule_pause(h, "nightly", 1));
    assert_string_equal(q_text1("SELECT concat_ws('|', paused, next_tick IS NULL) FROM cairn.schedules WHERE name = $1",
                                "nightly", buf, sizeof buf),
                        "t|t");
    T_OK(h, cairn_schedule_set(h, "nightly", &o));
    assert_string_equal(q_text1("SELECT concat_ws('|', paused, next_tick IS NULL) FROM cairn.schedules WHERE name = $1",
                                "nightly", buf, sizeof buf),
                        "t|t");
    T_OK(h, cairn_schedule_pause(h, "nightly", 0));
    assert_string_equal(q_text1("SELECT concat_ws('|', paused, next_tick > now()) FROM cairn.schedules WHERE name = $1",
                                "nightly", buf, sizeof buf),
                        "f|t");
    o.paused = 1;
    T_OK(h, cairn_schedule_set(h, "nightly", &o));
    assert_string_equal(q_text1("SELECT concat_ws('|', paused, next_tick IS NULL) FROM cairn.schedules WHERE name = $1",
                                "nightly", buf, sizeof buf),
                        "t|t");
    o.paused = 0;
    T_OK(h, cairn_schedule_pause(h, "nightly", 0));

    /*
     * Setting the same expression again keeps the next tick, so that an
     * application that sets its schedules at every start does not lose the
     * ticks its downtime left to backfill; a new expression counts from now.
     */
    t_exec("UPDATE cairn.schedules SET next_tick = '2000-01-01 02:00Z' WHERE name = 'nightly'");
    o.input = "{\"kind\": \"nightly\"}";
    T_OK(h, cairn_schedule_set(h, "nightly", &o));
    assert_int_equal(q_ll1("SELECT count(*) FROM cairn.schedules WHERE name = $1"
                           "   AND next_tick = '2000-01-01 02:00Z'"
                           "   AND input->>'kind' = 'nightly'",
                           "nightly"),
                     1);
    o.cron = "0 4 * * *";
    T_OK(h, cairn_schedule_set(h, "nightly", &o));
    assert_int_equal(q_ll1("SELECT count(*) FROM cairn.schedules WHERE name = $1 AND next_tick > now()"
                           "   AND to_char(next_tick AT TIME ZONE 'Europe/Paris', 'HH24:MI') = '04:00'",
                           "nightly"),
                     1);

    /* Refusals write nothing. */
    long long before = q_ll("SELECT count(*) FROM cairn.schedules", 0, NULL);
    cairn_schedule_options bad = sopts("report", "0 3 * * *");
    bad.timezone = "Mars/Olympus";
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, "tz", &bad));
    assert_string_equal(cairn_errmsg(h), "schedule 'tz': unknown time zone \"Mars/Olympus\" (use a name from "
                                         "pg_timezone_names, e.g. \"Europe/Paris\")");
    assert_string_equal(cairn_sqlstate(h), "22023");
    bad.timezone = "CEST"; /* an abbreviation: a fixed offset that would ignore daylight saving time */
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, "tz", &bad));
    bad.timezone = NULL;
    bad.input = "{\"a\": ";
    T_RC(h, CAIRN_EJSON, cairn_schedule_set(h, "json", &bad));
    bad.input = NULL;
    bad.queue = "";
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, "queue", &bad));
    bad.queue = NULL;
    bad.workflow = NULL;
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, "noworkflow", &bad));
    assert_string_equal(cairn_errmsg(h), "schedule 'noworkflow': workflow is required");
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, "noopts", NULL));
    bad.workflow = "report";
    bad.size = 0;
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, "nosize", &bad));
    bad.size = sizeof bad;
    char longname[200];
    memset(longname, 'n', 179);
    longname[179] = '\0';
    T_OK(h, cairn_schedule_set(h, longname, &bad)); /* 179 bytes: the run IDs are 200 */
    T_OK(h, cairn_schedule_delete(h, longname));
    longname[179] = 'n';
    longname[180] = '\0';
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(h, longname, &bad));
    T_RC(h, CAIRN_EINVAL, cairn_schedule_set(NULL, "x", &bad));
    T_RC(h, CAIRN_EINVAL, cairn_schedule_list(h, NULL));
    assert_int_equal(q_ll("SELECT count(*) FROM cairn.schedules", 0, NULL), before);

    /* A size from an older caller: the fields past it read as zero. */
    cairn_schedule_options old = sopts("report", "0 5 * * *");
    old.timezone = "Asia/Tokyo";
    old.size = offsetof(cairn_schedule_options, timezone);
    T_OK(h, cairn_schedule_set(h, "oldcaller", &old));
    assert_string_equal(q_text1("SELECT timezone FROM cairn.schedules WHERE name = $1", "oldcaller", buf, sizeof buf),
                        "UTC");
    T_OK(h, cairn_schedule_delete(h, "oldcaller"));

    /* From SQL: the same checks, the same messages. */
    char state6[6];
    const char *sv[3] = {"sqlbad", "w", "*/0 * * * *"};
    q_error("SELECT cairn.set_schedule($1, $2, $3)", 3, sv, buf, sizeof buf, state6);
    assert_string_equal(state6, "22023");
    assert_string_equal(buf, "cron minute field \"*/0\": step \"0\" is out of range 1-60");
    sv[2] = "0 * * * *";
    assert_string_equal(q_text("SELECT cairn.set_schedule($1, $2, $3) > now()", 3, sv, buf, sizeof buf), "t");
    assert_string_equal(q_text1("SELECT cairn.pause_schedule($1)", "sqlbad", buf, sizeof buf), "t");
    assert_string_equal(q_text1("SELECT cairn.resume_schedule($1)", "sqlbad", buf, sizeof buf), "t");
    assert_string_equal(q_text1("SELECT cairn.delete_schedule($1)", "sqlbad", buf, sizeof buf), "t");
    assert_string_equal(q_text1("SELECT cairn.resume_schedule($1)", "sqlbad", buf, sizeof buf), "f");

    /* Pause, resume and delete of what is not there. */
    T_RC(h, CAIRN_ENOTFOUND, cairn_schedule_pause(h, "nosuch", 1));
    T_RC(h, CAIRN_ENOTFOUND, cairn_schedule_pause(h, "nosuch", 0));
    T_OK(h, cairn_schedule_delete(h, "nightly"));
    T_RC(h, CAIRN_ENOTFOUND, cairn_schedule_delete(h, "nightly"));
    T_OK(h, cairn_schedule_list(h, &json));
    assert_string_equal(json, "[]");
    cairn_free(json);
}

/* ---- exactly one run per tick ------------------------------------------------ */

#define RACERS 4
#define RACE_MS 6000

typedef struct racer {
    int id;
    long long fired[2]; /* runs each call said it enqueued, for race1 and race2 */
    long long calls;
    char err[512];
} racer;

/* Calls cairn.cron_fire() in a loop on its own connection, as a dispatcher would but far more often. */
static void *race_sql_main(void *arg)
{
    racer *r = arg;
    PGconn *pg = PQconnectdb(t_db());
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(r->err, sizeof r->err, "connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    PQclear(PQexec(pg, "SET synchronous_commit TO off"));
    unsigned seed = (unsigned)r->id * 7919u;
    long long end = now_ms() + RACE_MS;
    while (now_ms() < end && !r->err[0]) {
        PGresult *res = PQexec(pg, "SELECT schedule, fired FROM cairn.cron_fire()");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(r->err, sizeof r->err, "cron_fire: %s", PQerrorMessage(pg));
        } else {
            for (int i = 0; i < PQntuples(res); i++) {
                if (PQgetisnull(res, i, 0))
                    continue;
                const char *s = PQgetvalue(res, i, 0);
                if (strcmp(s, "race1") == 0)
                    r->fired[0] += atoll(PQgetvalue(res, i, 1));
                else if (strcmp(s, "race2") == 0)
                    r->fired[1] += atoll(PQgetvalue(res, i, 1));
            }
        }
        PQclear(res);
        r->calls++;
        sleep_ms(rand_r(&seed) % 5);
    }
    PQfinish(pg);
    return NULL;
}

/*
 * Four connections fire two schedules (every second, every two seconds)
 * as fast as they can for six seconds: every tick has one run, and the
 * calls together enqueued each run once.
 */
static void test_race_sql(void **state)
{
    (void)state;
    set_schedule("race1", "tick_wf", "* * * * * *", 0);
    set_schedule("race2", "tick_wf", "*/2 * * * * *", 0);
    racer rs[RACERS];
    pthread_t th[RACERS];
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < RACERS; i++) {
        rs[i].id = i + 1;
        pthread_create(&th[i], NULL, race_sql_main, &rs[i]);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    long long fired[2] = {0, 0}, calls = 0;
    for (int i = 0; i < RACERS; i++) {
        if (rs[i].err[0])
            fail_msg("racer %d: %s", i + 1, rs[i].err);
        fired[0] += rs[i].fired[0];
        fired[1] += rs[i].fired[1];
        calls += rs[i].calls;
    }
    long long n1 = expect_every_tick("race1", 1), n2 = expect_every_tick("race2", 2);
    printf("# %lld calls of cron_fire from %d connections: race1 %lld runs, race2 %lld runs\n", calls, RACERS, n1,
           n2);
    assert_true(n1 >= RACE_MS / 1000 - 1);
    assert_true(n2 >= RACE_MS / 2000 - 1);
    assert_int_equal(fired[0], n1);
    assert_int_equal(fired[1], n2);
    /* The run input names the schedule and the tick; last_tick is the latest run. */
    char buf[512];
    assert_int_equal(q_ll1("SELECT count(*) FROM cairn.workflows WHERE id LIKE $1 || '@%' AND name = 'tick_wf'"
                           "   AND status = 'ENQUEUED' AND queue = 'default' AND input->>'schedule' = $1"
                           "   AND id = $1 || '@' || (input->>'tick') AND json_typeof(input->'input') = 'null'",
                           "race1"),
                     n1);
    assert_string_equal(q_text1("SELECT max(split_part(id, '@', 2)) = cairn.cron_tick_text(max(s.last_tick))"
                                "  FROM cairn.workflow_status w, cairn.schedules s"
                                " WHERE w.id LIKE $1 || '@%' AND s.name = $1",
                                "race1", buf, sizeof buf),
                        "t");

    /*
     * A fire repeated after it committed (its schedule set back, as if the
     * commit had been lost) enqueues nothing new: the IDs are taken.
     */
    long long before = runs_of("race1");
    t_exec("UPDATE cairn.schedules SET next_tick = next_tick - interval '3 seconds' WHERE name = 'race1'");
    assert_int_equal(q_ll("SELECT fired FROM cairn.cron_fire(p_now => (SELECT next_tick + interval '2 seconds'"
                          "  FROM cairn.schedules WHERE name = 'race1')) WHERE schedule = 'race1'",
                          0, NULL),
                     3);
    assert_int_equal(runs_of("race1"), before);
    T_OK(h, cairn_schedule_delete(h, "race1"));
    T_OK(h, cairn_schedule_delete(h, "race2"));
}

/* ---- downtime and backfill ------------------------------------------------------ */

/*
 * Two schedules ticking every minute, one with backfill, are not fired
 * for ten and a half minutes (simulated): the one with backfill starts all
 * eleven ticks at once, the other only the tick that is still on time.
 */
static void test_backfill(void **state)
{
    (void)state;
    char buf[1024];
    set_schedule("bf_yes", "tick_wf", "* * * * *", 1);
    set_schedule("bf_no", "tick_wf", "* * * * *", 0);
    t_exec("UPDATE cairn.schedules SET next_tick = date_trunc('minute', now()) - interval '1 hour'"
           " WHERE name IN ('bf_yes', 'bf_no')");
    PGresult *r = query("SELECT schedule, fired FROM cairn.cron_fire("
                        "  p_now => date_trunc('minute', now()) - interval '1 hour' + interval '10 minutes 30 seconds')"
                        " WHERE schedule IS NOT NULL ORDER BY schedule",
                        0, NULL);
    assert_int_equal(PQntuples(r), 2);
    assert_string_equal(PQgetvalue(r, 0, 0), "bf_no");
    assert_string_equal(PQgetvalue(r, 0, 1), "1");
    assert_string_equal(PQgetvalue(r, 1, 0), "bf_yes");
    assert_string_equal(PQgetvalue(r, 1, 1), "11");
    PQclear(r);
    const char *expect = "SELECT string_agg(to_char(extract(epoch FROM split_part(id, '@', 2)::timestamptz"
                         "                          - (date_trunc('minute', now()) - interval '1 hour')) / 60, 'FM99'),"
                         "                  ',' ORDER BY id)"
                         "  FROM cairn.workflow_status WHERE id LIKE $1 || '@%'";
    assert_string_equal(q_text1(expect, "bf_yes", buf, sizeof buf), "0,1,2,3,4,5,6,7,8,9,10");
    assert_string_equal(q_text1(expect, "bf_no", buf, sizeof buf), "10");
    assert_int_equal(q_ll("SELECT count(*) FROM cairn.schedules WHERE name IN ('bf_yes', 'bf_no')"
                          "   AND next_tick = date_trunc('minute', now()) - interval '1 hour' + interval '11 minutes'",
                          0, NULL),
                     2);

    /* Thirty days down: backfill starts the latest 1000 ticks, in one call. */
    t_exec("UPDATE cairn.schedules SET next_tick = date_trunc('minute', now()) - interval '30 days'"
           " WHERE name IN ('bf_yes', 'bf_no')");
    long long t0 = now_ms();
    r = query("SELECT schedule, fired"
              "  FROM cairn.cron_fire(p_now => date_trunc('minute', now()) - interval '45 seconds')"
              " WHERE schedule IS NOT NULL ORDER BY schedule",
              0, NULL);
    long long took = now_ms() - t0;
    assert_int_equal(PQntuples(r), 2);
    assert_string_equal(PQgetvalue(r, 0, 1), "1");
    assert_string_equal(PQgetvalue(r, 1, 1), "1000");
    PQclear(r);
    printf("# a 30-day backfill of a per-minute schedule (1000 runs) took %lld ms\n", took);
    assert_int_equal(q_ll1("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE $1 || '@%'"
                           "   AND split_part(id, '@', 2)::timestamptz"
                           "       BETWEEN date_trunc('minute', now()) - interval '1000 minutes'"
                           "           AND date_trunc('minute', now()) - interval '1 minute'",
                           "bf_yes"),
                     1000);
    T_OK(h, cairn_schedule_delete(h, "bf_yes"));
    T_OK(h, cairn_schedule_delete(h, "bf_no"));
}

/*
 * A schedule paused across ticks, with backfill, fires none of them when
 * resumed; the ticks before the pause and after the resume fire.
 */
static void test_pause_resume_skips(void **state)
{
    (void)state;
    char buf[512];
    set_schedule("pr", "tick_wf", "* * * * * *", 1);
    long long n = 0;
    for (long long end = now_ms() + 2500; now_ms() < end;) {
        n += q_ll("SELECT coalesce(sum(fired), 0) FROM cairn.cron_fire()", 0, NULL);
        sleep_ms(50);
    }
    T_OK(h, cairn_schedule_pause(h, "pr", 1));
    const char *paused_at = q_text("SELECT now()", 0, NULL, buf, sizeof buf);
    char paused[64];
    snprintf(paused, sizeof paused, "%s", paused_at);
    for (long long end = now_ms() + 2500; now_ms() < end;) {
        assert_int_equal(q_ll("SELECT count(*) FROM cairn.cron_fire() WHERE schedule = 'pr'", 0, NULL), 0);
        sleep_ms(100);
    }
    /*
     * The end of the pause is read before the resume: a tick between the
     * resume's commit and a later reading is after the resume, fires
     * rightly at the next look, and must not count as fired during the
     * pause (CI once saw one: 1 during, 2 after).
     */
    char resumed[64];
    snprintf(resumed, sizeof resumed, "%s", q_text("SELECT now()", 0, NULL, buf, sizeof buf));
    T_OK(h, cairn_schedule_pause(h, "pr", 0));
    for (long long end = now_ms() + 2500; now_ms() < end;) {
        n += q_ll("SELECT coalesce(sum(fired), 0) FROM cairn.cron_fire()", 0, NULL);
        sleep_ms(50);
    }
    const char *vals[3] = {"pr", paused, resumed};
    long long during = q_ll("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE $1 || '@%'"
                            "   AND split_part(id, '@', 2)::timestamptz > $2::timestamptz"
                            "   AND split_part(id, '@', 2)::timestamptz <= $3::timestamptz",
                            3, vals);
    const char *vals2[2] = {"pr", resumed};
    long long after = q_ll("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE $1 || '@%'"
                           "   AND split_part(id, '@', 2)::timestamptz > $2::timestamptz",
                           2, vals2);
    printf("# paused for 2.5 s: %lld runs in all, %lld during the pause, %lld after it\n", runs_of("pr"), during,
           after);
    assert_int_equal(during, 0);
    assert_true(after >= 2);
    assert_int_equal(runs_of("pr"), n);
    T_OK(h, cairn_schedule_delete(h, "pr"));
}

/* ---- daylight saving time, through the firing path ------------------------------ */

static void test_dst_fire(void **state)
{
    (void)state;
    char buf[512];
    cairn_schedule_options o = sopts("tick_wf", "30 2 * * *");
    o.timezone = "Europe/Paris";
    o.backfill = 1;
    T_OK(h, cairn_schedule_set(h, "paris", &o));
    t_exec("UPDATE cairn.schedules SET next_tick = cairn.cron_next_tick(spec, timezone, '2024-03-29 12:00Z')"
           " WHERE name = 'paris'");
    q_ll("SELECT count(*) FROM cairn.cron_fire(p_now => '2024-04-01 12:00Z')", 0, NULL);
    t_exec("UPDATE cairn.schedules SET next_tick = cairn.cron_next_tick(spec, timezone, '2024-10-25 12:00Z')"
           " WHERE name = 'paris'");
    q_ll("SELECT count(*) FROM cairn.cron_fire(p_now => '2024-10-29 12:00Z')", 0, NULL);
    /* One run a day: at 02:30 local, 03:30 on the day 02:30 is skipped, the first 02:30 on the day it repeats. */
    assert_string_equal(q_text1("SELECT string_agg(split_part(id, '@', 2), ' ' ORDER BY id) FROM cairn.workflow_status"
                                " WHERE id LIKE $1 || '@%'",
                                "paris", buf, sizeof buf),
                        "2024-03-30T01:30:00Z 2024-03-31T01:30:00Z 2024-04-01T00:30:00Z "
                        "2024-10-26T00:30:00Z 2024-10-27T00:30:00Z 2024-10-28T01:30:00Z 2024-10-29T01:30:00Z");
    T_OK(h, cairn_schedule_delete(h, "paris"));
}

/* ---- one schedule's failure does not stop the others ------------------------------ */

static char logged[1024];
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void capture_log(void *udata, int level, const char *message)
{
    (void)udata;
    if (level >= CAIRN_LOG_WARN && strstr(message, "schedule")) {
        pthread_mutex_lock(&log_mu);
        snprintf(logged, sizeof logged, "%s", message);
        pthread_mutex_unlock(&log_mu);
    }
}

static void test_failure_is_contained(void **state)
{
    (void)state;
    char buf[1024];
    set_schedule("clash", "tick_wf", "* * * * *", 0);
    set_schedule("fine", "tick_wf", "* * * * *", 0);
    /* Both are due now (this minute's tick), and another workflow already holds the ID of clash's. */
    t_exec("UPDATE cairn.schedules SET next_tick = date_trunc('minute', now()) WHERE name IN ('clash', 'fine')");
    t_exec("SELECT cairn.enqueue('someone_else', NULL, id => 'clash@' || cairn.cron_tick_text(next_tick))"
           "  FROM cairn.schedules WHERE name = 'clash'");

    /* Fired through the library's call, as the dispatcher fires. */
    cairn_options co;
    memset(&co, 0, sizeof co);
    co.size = sizeof co;
    co.conninfo = t_db();
    co.executor_id = "logger";
    co.log = capture_log;
    co.log_level = CAIRN_LOG_WARN;
    cairn *lh = NULL;
    T_OK(lh, cairn_open(&lh, &co));
    PGconn *pg = t_pg();
    long long next = -2;
    T_OK(lh, cairn__cron_fire(lh, pg, &next));
    assert_true(next >= 0 && next <= 60000);
    pthread_mutex_lock(&log_mu);
    snprintf(buf, sizeof buf, "%s", logged);
    pthread_mutex_unlock(&log_mu);
    if (!strstr(buf, "schedule clash: its due ticks were skipped") || !strstr(buf, "already belongs"))
        fail_msg("no warning about schedule clash; the log said: %s", buf);
    assert_int_equal(runs_of("fine"), 1);
    assert_int_equal(q_ll1("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE $1 || '@%' AND name = 'tick_wf'",
                           "clash"),
                     0);
    assert_int_equal(q_ll("SELECT count(*) FROM cairn.schedules WHERE name = 'clash' AND next_tick > now()"
                          "   AND last_error LIKE '%already belongs%'",
                          0, NULL),
                     1);
    char *json = NULL;
    T_OK(h, cairn_schedule_list(h, &json));
    assert_non_null(strstr(json, "already belongs"));
    cairn_free(json);
    T_OK(h, cairn_schedule_delete(h, "clash"));
    T_OK(h, cairn_schedule_delete(h, "fine"));

    /* With nothing scheduled there is nothing to wait for; a paused schedule is nothing either. */
    t_exec("DELETE FROM cairn.schedules"); /* what a failed test before this one may have left */
    T_OK(lh, cairn__cron_fire(lh, pg, &next));
    assert_int_equal(next, -1);
    cairn_schedule_options o = sopts("tick_wf", "0 0 1 1 *");
    o.paused = 1;
    T_OK(h, cairn_schedule_set(h, "yearly", &o));
    T_OK(lh, cairn__cron_fire(lh, pg, &next));
    assert_int_equal(next, -1);
    T_OK(h, cairn_schedule_pause(h, "yearly", 0));
    T_OK(lh, cairn__cron_fire(lh, pg, &next));
    long long want = q_ll("SELECT (extract(epoch FROM next_tick - clock_timestamp()) * 1000)::bigint"
                          "  FROM cairn.schedules WHERE name = 'yearly'",
                          0, NULL);
    assert_true(next > 0 && llabs(next - want) < 5000);
    T_OK(h, cairn_schedule_delete(h, "yearly"));
    PQfinish(pg);
    cairn_close(lh);
}

/* ---- two executors, each firing like a dispatcher ---------------------------------- */

static int tick_wf(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)ctx;
    (void)udata;
    *output = strdup(input);
    return *output ? CAIRN_OK : CAIRN_ENOMEM;
}

typedef struct firer {
    cairn *h;
    long long calls;
    int rc;
    char err[512];
} firer;

/*
 * Fires through cairn__cron_fire() on its own connection the way the
 * dispatcher does: at the time the last call said the next tick is due,
 * and at least every second. Two of these wake at the same moments, so
 * they race for every tick.
 */
static void *firer_main(void *arg)
{
    firer *f = arg;
    PGconn *pg = PQconnectdb(t_db());
    PQclear(PQexec(pg, "SET synchronous_commit TO off"));
    long long end = now_ms() + 7000;
    while (now_ms() < end) {
        long long next = -1;
        int rc = cairn__cron_fire(f->h, pg, &next);
        f->calls++;
        if (rc != CAIRN_OK) {
            f->rc = rc;
            snprintf(f->err, sizeof f->err, "%s", cairn_errmsg(f->h));
            break;
        }
        sleep_ms(next < 0 || next > 1000 ? 1000 : next);
    }
    PQfinish(pg);
    return NULL;
}

static void test_two_executors(void **state)
{
    (void)state;
    cairn *a = t_open("a", 4), *b = t_open("b", 4);
    T_OK(a, cairn_register_workflow(a, "tick_wf", tick_wf, NULL));
    T_OK(b, cairn_register_workflow(b, "tick_wf", tick_wf, NULL));
    T_OK(a, cairn_start_workers(a));
    T_OK(b, cairn_start_workers(b));
    cairn_schedule_options o = sopts("tick_wf", "*/2 * * * * *");
    o.input = "{\"n\": 7}";
    T_OK(h, cairn_schedule_set(h, "duo2", &o));
    o.cron = "* * * * * *";
    T_OK(h, cairn_schedule_set(h, "duo1", &o));

    firer fa = {a, 0, 0, ""}, fb = {b, 0, 0, ""};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, firer_main, &fa);
    pthread_create(&tb, NULL, firer_main, &fb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (fa.rc != CAIRN_OK || fb.rc != CAIRN_OK)
        fail_msg("cairn__cron_fire failed: a: %s; b: %s", fa.err, fb.err);
    T_OK(h, cairn_schedule_pause(h, "duo1", 1));
    T_OK(h, cairn_schedule_pause(h, "duo2", 1));

    long long n1 = expect_every_tick("duo1", 1), n2 = expect_every_tick("duo2", 2);
    printf("# executors a and b: %lld and %lld calls; duo1 %lld runs, duo2 %lld runs\n", fa.calls, fb.calls, n1, n2);
    assert_true(n1 >= 5);
    assert_true(n2 >= 2);
    /* Every run executes, on a or b, with its tick in its input. */
    long long deadline = now_ms() + 60000;
    while (q_ll("SELECT count(*) FROM cairn.workflow_status WHERE (id LIKE 'duo1@%' OR id LIKE 'duo2@%')"
                "   AND status <> 'SUCCESS'",
                0, NULL) > 0 &&
           now_ms() < deadline)
        sleep_ms(50);
    assert_int_equal(q_ll("SELECT count(*) FROM cairn.workflows WHERE (id LIKE 'duo1@%' OR id LIKE 'duo2@%')"
                          "   AND status = 'SUCCESS' AND executor_id IN ('a', 'b')"
                          "   AND output->>'schedule' = split_part(id, '@', 1)"
                          "   AND output->>'tick' = split_part(id, '@', 2) AND (output->'input'->>'n')::int = 7",
                          0, NULL),
                     n1 + n2);
    cairn_close(a);
    cairn_close(b);
    T_OK(h, cairn_schedule_delete(h, "duo1"));
    T_OK(h, cairn_schedule_delete(h, "duo2"));
}

/*
 * No manual firing: the dispatchers of two running handles fire a
 * per-second schedule set by another handle on their own, one run per tick,
 * and the runs execute.
 */
static void test_dispatchers_fire(void **state)
{
    (void)state;
    cairn *a = t_open("auto-a", 2), *b = t_open("auto-b", 2);
    T_OK(a, cairn_register_workflow(a, "tick_wf", tick_wf, NULL));
    T_OK(b, cairn_register_workflow(b, "tick_wf", tick_wf, NULL));
    T_OK(a, cairn_start_workers(a));
    T_OK(b, cairn_start_workers(b));
    cairn_schedule_options o = sopts("tick_wf", "* * * * * *");
    T_OK(h, cairn_schedule_set(h, "auto", &o));
    /* Schedules set elsewhere are seen within a heartbeat interval (3 s by default). */
    long long deadline = now_ms() + 20000;
    while (runs_of("auto") < 4 && now_ms() < deadline)
        sleep_ms(100);
    T_OK(h, cairn_schedule_pause(h, "auto", 1));
    sleep_ms(300); /* a fire that read the schedule before the pause commits its tick */
    long long n = expect_every_tick("auto", 1);
    assert_true(n >= 4);
    deadline = now_ms() + 30000;
    while (q_ll("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE 'auto@%' AND status <> 'SUCCESS'", 0, NULL) >
               0 &&
           now_ms() < deadline)
        sleep_ms(50);
    assert_int_equal(q_ll("SELECT count(*) FROM cairn.workflows WHERE id LIKE 'auto@%' AND status = 'SUCCESS'"
                          "   AND executor_id IN ('auto-a', 'auto-b')",
                          0, NULL),
                     n);
    cairn_close(a);
    cairn_close(b);
    T_OK(h, cairn_schedule_delete(h, "auto"));
}

/* ---- setup ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    t_fresh_db("cairn_test_cron");
    h = t_open("cron-api", 1);
    db = PQconnectdb(t_db());
    return PQstatus(db) == CONNECTION_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    PQfinish(db);
    cairn_close(h);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_cases),
        cmocka_unit_test(test_parse_generated),
        cmocka_unit_test(test_next_ticks),
        cmocka_unit_test(test_set_list_pause_delete),
        cmocka_unit_test(test_race_sql),
        cmocka_unit_test(test_backfill),
        cmocka_unit_test(test_pause_resume_skips),
        cmocka_unit_test(test_dst_fire),
        cmocka_unit_test(test_failure_is_contained),
        cmocka_unit_test(test_two_executors),
        cmocka_unit_test(test_dispatchers_fire),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
