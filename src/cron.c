/*
 * Cron schedules: the API over cairn.schedules (the rows cairn.set_schedule()
 * writes from SQL and the CLI writes through this file), a parser that
 * refuses a bad cron expression before it reaches the database, and the
 * dispatcher's call that fires due ticks.
 *
 * The database owns the schedule: it parses the expression again (its
 * parser, cairn.parse_cron in sql/006_cron.sql, accepts exactly what the
 * one here accepts, with the same messages), computes the ticks in the
 * schedule's time zone, and fires them in cairn.cron_fire(), which every
 * live dispatcher calls. Exactly one run per tick comes from the run IDs,
 * "<name>@<tick>", and from cairn.enqueue() creating nothing for an ID that
 * exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SOPT(o, field) \
    ((o) && (o)->size >= offsetof(cairn_schedule_options, field) + sizeof((o)->field) ? (o)->field : 0)

/* Schedule names leave room in the run IDs (200 bytes) for "@2024-05-01T03:00:00Z". */
#define SCHEDULE_NAME_MAX (CAIRN__NAME_MAX - 21)
#define CRON_MAX 1000

/* ---- parsing cron expressions ------------------------------------------- */

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW, F_COUNT };

static const char *const field_names[F_COUNT] = {"second", "minute", "hour", "day-of-month", "month", "day-of-week"};
static const int field_lo[F_COUNT] = {0, 0, 0, 1, 1, 0};
static const int field_hi[F_COUNT] = {59, 59, 23, 31, 12, 7};
static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
static const char *const month_names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct {
    const char *name, *expansion;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

/* One bit per allowed value of each field, as in the database's cairn.cron_spec. */
typedef struct cron_spec {
    unsigned long long mask[F_COUNT];
    int dom_star, dow_star;
} cron_spec;

/* A piece of the expression: not NUL-terminated. */
typedef struct span {
    const char *p;
    size_t n;
} span;

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Non-zero if s is one or more ASCII digits. */
static int all_digits(span s)
{
    if (s.n == 0)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] < '0' || s.p[i] > '9')
            return 0;
    return 1;
}

/* Non-zero if s is one or more ASCII letters. */
static int all_letters(span s)
{
    if (s.n == 0)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (ascii_lower((unsigned char)s.p[i]) < 'a' || ascii_lower((unsigned char)s.p[i]) > 'z')
            return 0;
    return 1;
}

/* Non-zero if s equals the lower-case word w, ignoring ASCII case. */
static int same_word(span s, const char *w)
{
    size_t n = strlen(w);
    if (s.n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)s.p[i]) != w[i])
            return 0;
    return 1;
}

/* The position of s among count names, or -1. */
static int name_index(span s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (same_word(s, names[i]))
            return i;
    return -1;
}

/* The value of a span of at most four digits. */
static int digits_value(span s)
{
    int v = 0;
    for (size_t i = 0; i < s.n; i++)
        v = v * 10 + (s.p[i] - '0');
    return v;
}

/*
 * Read one value of field f: a number in the field's range, or a month or
 * weekday name ("sun" as the end of a range is 7). Returns the value, or -1
 * after writing the problem into bad.
 */
static int parse_value(int f, span tok, int range_end, char *bad, size_t badlen)
{
    int v;
    if (all_digits(tok)) {
        if (tok.n > 4 || (v = digits_value(tok)) < field_lo[f] || v > field_hi[f]) {
            snprintf(bad, badlen, "\"%.*s\" is out of range %d-%d", (int)tok.n, tok.p, field_lo[f], field_hi[f]);
            return -1;
        }
        return v;
    }
    if (f == F_MON && (v = name_index(tok, month_names, 12)) >= 0)
        return v + 1;
    if (f == F_DOW && (v = name_index(tok, day_names, 7)) >= 0)
        return range_end && v == 0 ? 7 : v;
    if ((f == F_MON || f == F_DOW) && all_letters(tok))
        snprintf(bad, badlen, "unknown name \"%.*s\"", (int)tok.n, tok.p);
    else
        snprintf(bad, badlen, "\"%.*s\" is not a number", (int)tok.n, tok.p);
    return -1;
}

/*
 * Add the values of one list element of field f ('*', a value or a range,
 * each optionally followed by /step) to *mask. Returns 0, or -1 after
 * writing the problem into bad. The checks and their order follow
 * cairn.parse_cron, so both name the same problem.
 */
static int parse_element(int f, span el, unsigned long long *mask, char *bad, size_t badlen)
{
    span base = el;
    int step = 1, lo, hi;
    const char *slash;

    if (el.n == 0) {
        snprintf(bad, badlen, "empty list element");
        return -1;
    }
    if ((slash = memchr(el.p, '/', el.n)) != NULL) {
        span tok = {slash + 1, (size_t)(el.p + el.n - (slash + 1))};
        base.n = (size_t)(slash - el.p);
        if (!all_digits(tok)) {
            snprintf(bad, badlen, "bad step \"%.*s\"", (int)tok.n, tok.p);
            return -1;
        }
        int range = field_hi[f] - field_lo[f] + 1;
        if (tok.n > 4 || digits_value(tok) < 1 || digits_value(tok) > range) {
            snprintf(bad, badlen, "step \"%.*s\" is out of range 1-%d", (int)tok.n, tok.p, range);
            return -1;
        }
        step = digits_value(tok);
        if (!(base.n == 1 && base.p[0] == '*') && memchr(base.p, '-', base.n) == NULL) {
            snprintf(bad, badlen, "\"%.*s\": a step needs a range or * before it", (int)el.n, el.p);
            return -1;
        }
    }
    if (base.n == 1 && base.p[0] == '*') {
        lo = field_lo[f];
        hi = field_hi[f];
    } else {
        const char *dash = memchr(base.p, '-', base.n);
        span a = base, b = {NULL, 0};
        if (dash) {
            a.n = (size_t)(dash - base.p);
            b.p = dash + 1;
            b.n = (size_t)(base.p + base.n - b.p);
        }
        if (a.n == 0 || (dash && (b.n == 0 || memchr(b.p, '-', b.n) != NULL))) {
            snprintf(bad, badlen, "\"%.*s\" is not a value or a range", (int)base.n, base.p);
            return -1;
        }
        if ((lo = parse_value(f, a, 0, bad, badlen)) < 0)
            return -1;
        hi = lo;
        if (dash && (hi = parse_value(f, b, 1, bad, badlen)) < 0)
            return -1;
        if (lo > hi) {
            snprintf(bad, badlen, "range \"%.*s\" runs backwards", (int)base.n, base.p);
            return -1;
        }
    }
    for (int v = lo; v <= hi; v += step)
        *mask |= 1ULL << v;
    return 0;
}

/*
 * Parse a cron expression as cairn.parse_cron does (see sql/006_cron.sql
 * for the grammar): 5 fields, 6 with a leading second, or a macro. Returns
 * CAIRN_OK, or CAIRN_EINVAL with the problem in err, worded as the
 * database words it.
 */
static int cron_parse(const char *cron, cron_spec *spec, char *err, size_t errlen)
{
    char src[CRON_MAX + 1];
    span fields[F_COUNT + 1];
    size_t len = strlen(cron), nf = 0;

    memset(spec, 0, sizeof *spec);
    if (len > CRON_MAX) {
        snprintf(err, errlen, "cron expression is %zu bytes long; the limit is %d", len, CRON_MAX);
        return CAIRN_EINVAL;
    }
    while (len > 0 && is_blank(cron[len - 1]))
        len--;
    while (len > 0 && is_blank(*cron)) {
        cron++;
        len--;
    }
    memcpy(src, cron, len);
    src[len] = '\0';
    if (src[0] == '@') {
        span whole = {src, len};
        size_t i;
        for (i = 0; i < sizeof macros / sizeof macros[0]; i++)
            if (same_word(whole, macros[i].name))
                break;
        if (i == sizeof macros / sizeof macros[0]) {
            snprintf(err, errlen,
                     "cron expression \"%s\": unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, "
                     "@midnight or @hourly)",
                     src);
            return CAIRN_EINVAL;
        }
        snprintf(src, sizeof src, "%s", macros[i].expansion);
        len = strlen(src);
    }

    /* Split on runs of blanks; there are none at either end. */
    for (size_t i = 0; i < len;) {
        size_t start = i;
        while (i < len && !is_blank(src[i]))
            i++;
        if (nf < F_COUNT)
            fields[nf] = (span){src + start, i - start};
        nf++;
        while (i < len && is_blank(src[i]))
            i++;
    }
    if (nf != 5 && nf != 6) {
        snprintf(err, errlen,
                 "cron expression \"%s\" has %zu fields; it needs 5 (minute hour day-of-month month day-of-week) "
                 "or 6 (second minute hour day-of-month month day-of-week)",
                 src, nf);
        return CAIRN_EINVAL;
    }
    if (nf == 5) {
        memmove(fields + 1, fields, 5 * sizeof fields[0]);
        fields[0] = (span){"0", 1};
    }

    for (int f = 0; f < F_COUNT; f++) {
        const char *p = fields[f].p, *end = p + fields[f].n;
        for (;;) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            span el = {p, (size_t)((comma ? comma : end) - p)};
            char bad[128];
            if (parse_element(f, el, &spec->mask[f], bad, sizeof bad) != 0) {
                snprintf(err, errlen, "cron %s field \"%.*s\": %s", field_names[f], (int)fields[f].n, fields[f].p,
                         bad);
                return CAIRN_EINVAL;
            }
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    if (spec->mask[F_DOW] & (1ULL << 7))
        spec->mask[F_DOW] = (spec->mask[F_DOW] & 127) | 1;
    spec->dom_star = fields[F_DOM].p[0] == '*';
    spec->dow_star = fields[F_DOW].p[0] == '*';

    /* With only the day-of-month deciding, some chosen month must have a chosen day. */
    if (!spec->dom_star && spec->dow_star) {
        int possible = 0;
        for (int m = 1; m <= 12 && !possible; m++)
            for (int d = 1; d <= month_days[m - 1] && !possible; d++)
                possible = (spec->mask[F_MON] >> m & 1) && (spec->mask[F_DOM] >> d & 1);
        if (!possible) {
            snprintf(err, errlen,
                     "cron expression \"%s\" never matches: no chosen month has any of the chosen days of the month",
                     src);
            return CAIRN_EINVAL;
        }
    }
    return CAIRN_OK;
}

/* ---- statements on a pool connection ------------------------------------- */

/*
 * Describe a statement the database refused, as the API reports it: an
 * argument it found bad is CAIRN_EINVAL (CAIRN_ETOOBIG for a payload over
 * its limit), a missing schema object CAIRN_ESCHEMA, anything else
 * CAIRN_EDB. The message keeps the server's words, after `what`.
 */
static int fail_refused(const PGresult *res, PGconn *pg, const char *what)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char text[512];

    if (!st || !msg)
        return cairn__fail_pg(CAIRN_EDB, res, pg, what);
    if (strncmp(msg, "cairn: ", 7) == 0)
        msg += 7;
    snprintf(text, sizeof text, "%s: %s", what, msg);
    if (strcmp(st, "22023") == 0 || strcmp(st, "22004") == 0 || strcmp(st, "23514") == 0)
        return cairn__fail_state(CAIRN_EINVAL, st, text);
    if (strcmp(st, "54000") == 0)
        return cairn__fail_state(CAIRN_ETOOBIG, st, text);
    if (strcmp(st, "42883") == 0 || strcmp(st, "42P01") == 0 || strcmp(st, "3F000") == 0) {
        snprintf(text, sizeof text, "%s: the database has no cron schedules (schema version 6); run cairn migrate: %s",
                 what, msg);
        return cairn__fail_state(CAIRN_ESCHEMA, st, text);
    }
    return cairn__fail_pg(CAIRN_EDB, res, pg, what);
}

/*
 * Run sql with n text parameters on a pool connection, reconnecting and
 * retrying for up to connect_timeout_ms when the connection is lost (every
 * statement here may be repeated: the schedule functions are idempotent).
 * On CAIRN_OK *res holds a PGRES_TUPLES_OK result the caller clears.
 */
static int run(cairn *h, const char *sql, int n, const char *const *vals, const char *what, PGresult **res)
{
    cairn__conn *c;
    long long deadline = cairn__now_ms() + h->connect_timeout_ms;
    long long backoff = 50;
    int rc;

    cairn__pool_get(h, &c);
    for (;;) {
        rc = cairn__conn_ensure(h, c);
        if (rc == CAIRN_OK) {
            PGresult *r = PQexecParams(c->pg, sql, n, NULL, vals, NULL, NULL, 0);
            if (PQresultStatus(r) == PGRES_TUPLES_OK) {
                *res = r;
                break;
            }
            if (!cairn__conn_lost(c->pg, r)) {
                rc = fail_refused(r, c->pg, what);
                PQclear(r);
                break;
            }
            rc = cairn__fail_pg(CAIRN_ECONN, r, c->pg, "lost the database connection");
            PQclear(r);
            cairn__conn_drop(c);
        } else if (rc != CAIRN_ECONN) {
            break;
        }
        if (atomic_load(&h->shutting_down)) {
            rc = cairn__fail(CAIRN_ESHUTDOWN, "the handle is closing");
            break;
        }
        if (cairn__now_ms() + backoff > deadline)
            break; /* rc is CAIRN_ECONN with libpq's message */
        cairn__sleep(h, backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
    cairn__pool_put(h, c);
    return rc;
}

/* Check a schedule name; fills err and returns CAIRN_EINVAL when it cannot be one. */
static int check_schedule_name(const char *name, char *err, size_t errlen)
{
    if (cairn__check_name("schedule name", name, err, errlen) != CAIRN_OK)
        return CAIRN_EINVAL;
    if (strlen(name) > SCHEDULE_NAME_MAX) {
        snprintf(err, errlen, "schedule name is %zu bytes long; the limit is %d (its runs' IDs add \"@\" and the tick)",
                 strlen(name), SCHEDULE_NAME_MAX);
        return CAIRN_EINVAL;
    }
    return CAIRN_OK;
}

/* ---- the API --------------------------------------------------------------- */

int cairn_schedule_set(cairn *h, const char *name, const cairn_schedule_options *opts)
{
    cairn__clear_error();
    char err[512], what[256];
    cron_spec spec;

    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (check_schedule_name(name, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!opts)
        return cairn__fail(CAIRN_EINVAL, "schedule '%s': options are NULL; workflow and cron are required", name);
    if (opts->size == 0)
        return cairn__fail(CAIRN_EINVAL,
                           "cairn_schedule_options.size is 0; set it to sizeof(cairn_schedule_options)");
    const char *workflow = SOPT(opts, workflow), *cron = SOPT(opts, cron), *tz = SOPT(opts, timezone);
    const char *input = SOPT(opts, input), *queue = SOPT(opts, queue);
    if (!workflow)
        return cairn__fail(CAIRN_EINVAL, "schedule '%s': workflow is required", name);
    if (cairn__check_name("workflow name", workflow, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "schedule '%s': %s", name, err);
    if (!cron)
        return cairn__fail(CAIRN_EINVAL, "schedule '%s': cron is required", name);
    if (cron_parse(cron, &spec, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "schedule '%s': %s", name, err);
    if (!tz)
        tz = "UTC";
    else if (cairn__check_name("time zone", tz, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "schedule '%s': %s", name, err);
    if (!queue)
        queue = "default";
    else if (cairn__check_name("queue name", queue, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "schedule '%s': %s", name, err);
    if (input) { /* NULL is stored as SQL NULL, which the runs see as JSON null */
        size_t len = strlen(input);
        if (len > h->max_payload)
            return cairn__fail(CAIRN_ETOOBIG, "schedule '%s': input is %zu bytes; the limit is %zu", name, len,
                               h->max_payload);
        if (cairn_json_check(input, len, err, sizeof err) != CAIRN_OK)
            return cairn__fail(CAIRN_EJSON, "schedule '%s': input: %s", name, err);
    }

    /* paused zero leaves an existing schedule's state alone (NULL in SQL); see cairn.set_schedule. */
    const char *vals[8] = {name, workflow, cron, tz, input, queue, SOPT(opts, backfill) ? "true" : "false",
                           SOPT(opts, paused) ? "true" : NULL};
    PGresult *res = NULL;
    snprintf(what, sizeof what, "schedule '%s'", name);
    int rc = run(h,
                 "SELECT cairn.set_schedule($1, $2, $3, $4, $5::pg_catalog.json, $6, $7::pg_catalog.bool,"
                 " $8::pg_catalog.bool)",
                 8, vals, what, &res);
    if (rc == CAIRN_OK)
        PQclear(res);
    return rc;
}

int cairn_schedule_pause(cairn *h, const char *name, int paused)
{
    cairn__clear_error();
    char err[256], what[256];

    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (check_schedule_name(name, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    const char *vals[2] = {name, paused ? "true" : "false"};
    PGresult *res = NULL;
    snprintf(what, sizeof what, "schedule '%s'", name);
    int rc = run(h,
                 "SELECT CASE WHEN $2::pg_catalog.bool THEN cairn.pause_schedule($1)"
                 " ELSE cairn.resume_schedule($1) END",
                 2, vals, what, &res);
    if (rc != CAIRN_OK)
        return rc;
    int found = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return found ? CAIRN_OK : cairn__fail(CAIRN_ENOTFOUND, "no schedule is named '%s'", name);
}

int cairn_schedule_delete(cairn *h, const char *name)
{
    cairn__clear_error();
    char err[256], what[256];

    if (!h)
        return cairn__fail(CAIRN_EINVAL, "handle is NULL");
    if (check_schedule_name(name, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    const char *vals[1] = {name};
    PGresult *res = NULL;
    snprintf(what, sizeof what, "schedule '%s'", name);
    int rc = run(h, "SELECT cairn.delete_schedule($1)", 1, vals, what, &res);
    if (rc != CAIRN_OK)
        return rc;
    int found = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return found ? CAIRN_OK : cairn__fail(CAIRN_ENOTFOUND, "no schedule is named '%s'", name);
}

int cairn_schedule_list(cairn *h, char **json)
{
    cairn__clear_error();
    if (json)
        *json = NULL;
    if (!h || !json)
        return cairn__fail(CAIRN_EINVAL, "handle or json is NULL");
    /* Ticks are written as in the run IDs: UTC, ISO 8601, whole seconds. */
    PGresult *res = NULL;
    int rc = run(h,
                 "SELECT coalesce(json_agg(json_build_object("
                 "  'name', s.name, 'workflow', s.workflow, 'cron', s.cron, 'timezone', s.timezone,"
                 "  'input', s.input, 'queue', s.queue, 'backfill', s.backfill, 'paused', s.paused,"
                 "  'last_tick', cairn.cron_tick_text(s.last_tick), 'next_tick', cairn.cron_tick_text(s.next_tick),"
                 "  'last_error', s.last_error) ORDER BY s.name), '[]'::pg_catalog.json)"
                 "  FROM cairn.schedules s",
                 0, NULL, "listing schedules", &res);
    if (rc != CAIRN_OK)
        return rc;
    *json = cairn__strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return *json ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
}

/* ---- firing ---------------------------------------------------------------- */

int cairn__cron_fire(cairn *h, PGconn *pg, long long *next_ms)
{
    *next_ms = -1;
    PGresult *r = PQexecParams(pg, "SELECT schedule, fired, error, next_ms FROM cairn.cron_fire()", 0, NULL, NULL,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__conn_lost(pg, r) ? cairn__fail_pg(CAIRN_ECONN, r, pg, "firing cron schedules")
                                         : fail_refused(r, pg, "firing cron schedules");
        PQclear(r);
        return rc;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 0)) {
            if (!PQgetisnull(r, i, 3))
                *next_ms = atoll(PQgetvalue(r, i, 3));
        } else if (!PQgetisnull(r, i, 2)) {
            cairn__log(h, CAIRN_LOG_WARN, "schedule %s: its due ticks were skipped: %s", PQgetvalue(r, i, 0),
                       PQgetvalue(r, i, 2));
        } else {
            cairn__log(h, CAIRN_LOG_DEBUG, "schedule %s: enqueued %s run(s)", PQgetvalue(r, i, 0),
                       PQgetvalue(r, i, 1));
        }
    }
    PQclear(r);
    return CAIRN_OK;
}
