/*
 * The cairn bank: accounts and transfers, where money must never be created
 * or destroyed, whatever crashes.
 *
 * Each transfer request is a row the application inserts; in the same
 * transaction it enqueues a workflow "transfer-<request id>" with
 * cairn_enqueue(), so the workflow exists if and only if the request
 * committed. The workflow runs three transactional steps, each of which
 * commits its writes together with its checkpoint:
 *
 *   debit     take the amount off the payer's balance and put it in the
 *             payee's `incoming` column (money in transit), or decline the
 *             transfer when the payer lacks the funds;
 *   credit    move the amount from the payee's `incoming` to its balance
 *             (skipped for a declined transfer);
 *   complete  mark the request completed or declined.
 *
 * Every step also writes one row to bank.journal. The journal deliberately
 * has no unique constraint on (request, kind): if a step's writes were ever
 * applied twice, the journal would show two rows and `bank check` would
 * report it, instead of the database quietly refusing the second one.
 *
 * A declined transfer is a business outcome, not a failure: its workflow
 * ends SUCCESS with {"outcome": "declined"}. A transfer workflow that ends
 * ERROR, CANCELLED or DEAD_LETTER is a problem `bank check` reports.
 *
 * Subcommands (all take --db CONNINFO; without it $CAIRN_DATABASE_URL,
 * else libpq's PG* variables):
 *
 *   bank setup --accounts N --balance B [--reset]
 *   bank request --count N [--seed S] [--rate R [--burst B]] [--hot PCT]
 *                [--rollback-every K] [--reject-every J]
 *   bank worker [--executor ID] [--workers N] [--isolation LEVEL] [--max-attempts N]
 *   bank check [--wait SECONDS]
 *
 * See README.md next to this file for what each does and how to run them.
 */
#include <cairn.h>

#include <jansson.h>
#include <libpq-fe.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKFLOW "transfer"

/* Requests between two of the first HOT_ACCOUNTS accounts collide on purpose. */
#define HOT_ACCOUNTS 3

/* A transfer must never give up on contention: a debited transfer has to be credited. */
#define CONFLICT_RETRIES 100000

/* How long a starting worker keeps trying to reach the database. */
#define START_PATIENCE_MS 60000

/* ------------------------------------------------------------------------
 * Small helpers.
 * ------------------------------------------------------------------------ */

static const char *db_conninfo; /* --db; NULL: $CAIRN_DATABASE_URL, else libpq's environment */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* splitmix64: a small seeded generator, so that a run can be repeated with --seed. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A number in [lo, hi]. */
static long long rng_range(uint64_t *state, long long lo, long long hi)
{
    return lo + (long long)(rng_next(state) % (uint64_t)(hi - lo + 1));
}

/* Parse a whole decimal argument in [lo, hi]; returns 0 and complains otherwise. */
static int parse_ll(const char *opt, const char *text, long long lo, long long hi, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "bank: %s needs a whole number from %lld to %lld, not '%s'\n", opt, lo, hi, text);
        return 0;
    }
    *out = v;
    return 1;
}

/* The database the program works on, as a libpq connection of its own. NULL (said on stderr) on failure. */
static PGconn *connect_db(const char *application_name)
{
    const char *url = db_conninfo ? db_conninfo : getenv("CAIRN_DATABASE_URL");
    /* application_name first, so that a conninfo which sets its own wins. */
    const char *keys[] = {"application_name", url && *url ? "dbname" : NULL, NULL};
    const char *vals[] = {application_name, url, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);

    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "bank: cannot connect to the database: %s", pg ? PQerrorMessage(pg) : "out of memory\n");
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/*
 * Run one statement with text parameters. Returns the result when it
 * succeeded; otherwise says why on stderr (prefixed by what) and returns
 * NULL.
 */
static PGresult *run(PGconn *pg, const char *what, const char *sql, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    fprintf(stderr, "bank: %s: %s", what, PQerrorMessage(pg));
    PQclear(r);
    return NULL;
}

/* The first column of the first row as a number; *ok is cleared on failure. */
static long long run_ll(PGconn *pg, const char *what, const char *sql, int n, const char *const *vals, int *ok)
{
    PGresult *r = run(pg, what, sql, n, vals);
    long long v = 0;

    if (!r) {
        *ok = 0;
        return 0;
    }
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* ------------------------------------------------------------------------
 * bank setup: the application's tables.
 * ------------------------------------------------------------------------ */

static const char schema_sql[] =
    "CREATE SCHEMA bank;"
    /* One row: how the bank was set up, for `bank check`. */
    "CREATE TABLE bank.config ("
    "  one            boolean PRIMARY KEY DEFAULT true CHECK (one),"
    "  accounts       integer NOT NULL,"
    "  initial_balance bigint NOT NULL,"
    "  total          bigint  NOT NULL,"   /* the money in the bank, forever */
    "  max_transfer   bigint  NOT NULL,"   /* larger requests are rejected by the application */
    "  first_request  bigint  NOT NULL);"  /* request IDs of this setup start here */
    /* incoming is money debited from a payer and not yet credited to this account. */
    "CREATE TABLE bank.accounts ("
    "  id       integer PRIMARY KEY,"
    "  balance  bigint NOT NULL CHECK (balance >= 0),"
    "  incoming bigint NOT NULL DEFAULT 0 CHECK (incoming >= 0));"
    "CREATE SEQUENCE bank.request_ids;"
    "CREATE TABLE bank.transfer_requests ("
    "  id           bigint PRIMARY KEY DEFAULT nextval('bank.request_ids'),"
    "  from_account integer NOT NULL REFERENCES bank.accounts,"
    "  to_account   integer NOT NULL REFERENCES bank.accounts,"
    "  amount       bigint  NOT NULL CHECK (amount > 0),"
    "  status       text    NOT NULL CHECK (status IN ('requested', 'rejected', 'completed', 'declined')),"
    "  reason       text,"
    "  created_at   timestamptz NOT NULL DEFAULT now(),"
    "  finished_at  timestamptz,"
    "  CHECK (from_account <> to_account));"
    /* Requests whose transaction the requester rolled back on purpose, written after the rollback. */
    "CREATE TABLE bank.rolled_back ("
    "  request_id bigint PRIMARY KEY,"
    "  at         timestamptz NOT NULL DEFAULT now());"
    /*
     * One row per step that committed. No unique key on (request_id, kind):
     * a step applied twice must show up here as two rows.
     */
    "CREATE TABLE bank.journal ("
    "  seq          bigserial PRIMARY KEY,"
    "  request_id   bigint  NOT NULL REFERENCES bank.transfer_requests,"
    "  kind         text    NOT NULL CHECK (kind IN ('debit', 'credit', 'decline', 'complete')),"
    "  account      integer,"
    "  amount       bigint  NOT NULL,"
    "  tries        integer NOT NULL,"  /* transactions this step began in the execution that committed */
    "  serialization_failures integer NOT NULL," /* of those, how many its statements saw fail with 40001 */
    "  deadlocks    integer NOT NULL,"  /* ... and with 40P01 */
    "  executor     text    NOT NULL,"
    "  pid          integer NOT NULL,"
    "  at           timestamptz NOT NULL DEFAULT clock_timestamp());"
    "CREATE INDEX journal_request ON bank.journal (request_id);";

static int cmd_setup(long long accounts, long long balance, int reset)
{
    cairn_options opts = {.size = sizeof opts, .conninfo = db_conninfo};
    char a[24], b[24], next[24];
    const char *vals[3];
    long long first;
    PGresult *r;
    PGconn *pg;
    cairn *h = NULL;
    int rc, ok = 1;

    /* Opening a handle creates cairn's own schema, so that requests can be enqueued before any worker ran. */
    rc = cairn_open(&h, &opts);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "bank: cairn_open: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
        cairn_close(h);
        return 1;
    }
    cairn_close(h);

    pg = connect_db("bank");
    if (!pg)
        return 1;
    r = run(pg, "BEGIN", "BEGIN", 0, NULL);
    if (!r)
        goto fail;
    PQclear(r);
    if (reset) {
        r = run(pg, "dropping schema bank", "DROP SCHEMA IF EXISTS bank CASCADE", 0, NULL);
        if (!r)
            goto fail;
        PQclear(r);
    }
    r = PQexec(pg, schema_sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bank: creating schema bank: %s%s", PQerrorMessage(pg),
                reset ? "" : "(use --reset to replace an existing bank)\n");
        PQclear(r);
        goto fail;
    }
    PQclear(r);

    /*
     * cairn never reuses a workflow ID, so a bank set up again in the same
     * database numbers its requests after the transfers of earlier setups.
     */
    first = run_ll(pg, "reading earlier transfers",
                   "SELECT coalesce(max(substr(id, 10)::bigint), 0) + 1 FROM cairn.workflows"
                   " WHERE name = 'transfer' AND id ~ '^transfer-[0-9]{1,18}$'",
                   0, NULL, &ok);
    snprintf(a, sizeof a, "%lld", accounts);
    snprintf(b, sizeof b, "%lld", balance);
    snprintf(next, sizeof next, "%lld", first);
    vals[0] = a;
    vals[1] = b;
    vals[2] = next;
    if (ok) {
        r = run(pg, "creating the accounts",
                "WITH c AS (INSERT INTO bank.config (accounts, initial_balance, total, max_transfer, first_request)"
                "           VALUES ($1::int, $2::bigint, $1::int * $2::bigint, $2::bigint, $3::bigint))"
                "INSERT INTO bank.accounts (id, balance) SELECT i, $2::bigint FROM generate_series(1, $1::int) i",
                3, vals);
        ok = r != NULL;
        PQclear(r);
    }
    if (ok) {
        r = run(pg, "numbering requests", "SELECT setval('bank.request_ids', $1::bigint, false)", 1, vals + 2);
        ok = r != NULL;
        PQclear(r);
    }
    if (ok) {
        r = run(pg, "COMMIT", "COMMIT", 0, NULL);
        ok = r != NULL;
        PQclear(r);
    }
    if (!ok)
        goto fail;
    printf("bank: %lld accounts of %lld each (total %lld); request IDs start at %lld\n", accounts, balance,
           accounts * balance, first);
    PQfinish(pg);
    return 0;

fail:
    PQfinish(pg);
    return 1;
}

/* ------------------------------------------------------------------------
 * bank request: the application taking transfer requests.
 * ------------------------------------------------------------------------ */

typedef struct request_opts {
    long long count, seed, rate, burst, hot, rollback_every, reject_every;
} request_opts;

enum { REQ_COMMITTED, REQ_REJECTED, REQ_ROLLED_BACK, REQ_RETRY, REQ_FAILED };

/* Is this SQLSTATE a serialization failure or a deadlock, worth running the transaction again? */
static int retryable(const char *sqlstate)
{
    return sqlstate && (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0);
}

/* Roll back after a failed statement; says whether the transaction may be tried again. */
static int abandon(PGconn *pg, PGresult *failed, const char *what)
{
    const char *st = PQresultErrorField(failed, PG_DIAG_SQLSTATE);
    int again = retryable(st);

    if (!again)
        fprintf(stderr, "bank: %s: %s", what, PQerrorMessage(pg));
    PQclear(failed);
    PQclear(PQexec(pg, "ROLLBACK"));
    return again ? REQ_RETRY : REQ_FAILED;
}

/*
 * One request, in one transaction of the application: record it and enqueue
 * its workflow, then COMMIT; or record it as rejected without a workflow;
 * or, for a rollback request, enqueue and then ROLL BACK, so that neither
 * the request nor its workflow ever exists. *id receives the request ID.
 */
static int one_request(PGconn *pg, int from, int to, long long amount, int rollback, long long *id)
{
    char f[16], t[16], amt[24], wid[48], *input;
    const char *vals[4] = {f, t, amt, NULL};
    cairn_enqueue_options eo = {.size = sizeof eo, .id = wid};
    long long limit;
    json_t *in;
    PGresult *r;
    int rc;

    snprintf(f, sizeof f, "%d", from);
    snprintf(t, sizeof t, "%d", to);
    snprintf(amt, sizeof amt, "%lld", amount);
    r = PQexec(pg, "BEGIN");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return abandon(pg, r, "BEGIN");
    PQclear(r);

    /* The application's own rule: a transfer larger than the limit is refused outright. */
    r = PQexec(pg, "SELECT max_transfer FROM bank.config");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return abandon(pg, r, "reading the transfer limit");
    limit = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (amount > limit) {
        r = PQexecParams(pg,
                         "INSERT INTO bank.transfer_requests (from_account, to_account, amount, status, reason)"
                         " VALUES ($1::int, $2::int, $3::bigint, 'rejected', 'over the transfer limit')"
                         " RETURNING id",
                         3, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            return abandon(pg, r, "recording a rejected request");
        *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        r = PQexec(pg, "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return abandon(pg, r, "COMMIT");
        PQclear(r);
        return REQ_REJECTED;
    }

    r = PQexecParams(pg,
                     "INSERT INTO bank.transfer_requests (from_account, to_account, amount, status)"
                     " VALUES ($1::int, $2::int, $3::bigint, 'requested') RETURNING id",
                     3, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return abandon(pg, r, "recording a request");
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);

    /* The workflow's ID names the request, so a repeated enqueue could never start a second transfer. */
    snprintf(wid, sizeof wid, "transfer-%lld", *id);
    in = json_pack("{s:I, s:i, s:i, s:I}", "request", (json_int_t)*id, "from", from, "to", to, "amount",
                   (json_int_t)amount);
    input = in ? json_dumps(in, JSON_COMPACT) : NULL;
    json_decref(in);
    if (!input) {
        PQclear(PQexec(pg, "ROLLBACK"));
        fprintf(stderr, "bank: out of memory\n");
        return REQ_FAILED;
    }
    rc = cairn_enqueue(pg, WORKFLOW, input, &eo, NULL);
    free(input);
    if (rc != CAIRN_OK) {
        int again = rc == CAIRN_EDB && retryable(cairn_sqlstate(NULL));

        if (!again)
            fprintf(stderr, "bank: cairn_enqueue: %s: %s\n", cairn_strerror(rc), cairn_errmsg(NULL));
        PQclear(PQexec(pg, "ROLLBACK"));
        return again ? REQ_RETRY : REQ_FAILED;
    }

    /* Say something went wrong after the enqueue: the rollback takes the request and its workflow with it. */
    r = PQexec(pg, rollback ? "ROLLBACK" : "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return abandon(pg, r, rollback ? "ROLLBACK" : "COMMIT");
    PQclear(r);
    return rollback ? REQ_ROLLED_BACK : REQ_COMMITTED;
}

static int cmd_request(const request_opts *o)
{
    uint64_t rng = (uint64_t)o->seed;
    long long counts[REQ_FAILED] = {0}, retries = 0, accounts, max_transfer, started = now_ms();
    int ok = 1;
    PGconn *pg = connect_db("bank-request");

    if (!pg)
        return 1;
    accounts = run_ll(pg, "reading the bank", "SELECT accounts FROM bank.config", 0, NULL, &ok);
    max_transfer = run_ll(pg, "reading the bank", "SELECT max_transfer FROM bank.config", 0, NULL, &ok);
    if (!ok || accounts < 2) {
        fprintf(stderr, "bank: run `bank setup` first (with at least 2 accounts)\n");
        PQfinish(pg);
        return 1;
    }

    for (long long i = 1; i <= o->count; i++) {
        int hot = accounts > HOT_ACCOUNTS && rng_range(&rng, 1, 100) <= o->hot;
        int n = hot ? HOT_ACCOUNTS : (int)accounts;
        int from = (int)rng_range(&rng, 1, n);
        int to = (int)rng_range(&rng, 1, n - 1);
        long long amount = rng_range(&rng, 1, max_transfer / 5 > 1 ? max_transfer / 5 : 1);
        int rollback = o->rollback_every > 0 && i % o->rollback_every == 0;
        long long id = 0;
        int outcome;

        if (to >= from)
            to++;
        if (o->reject_every > 0 && i % o->reject_every == 0)
            amount = max_transfer + rng_range(&rng, 1, max_transfer);
        while ((outcome = one_request(pg, from, to, amount, rollback, &id)) == REQ_RETRY)
            retries++;
        if (outcome == REQ_FAILED) {
            PQfinish(pg);
            return 1;
        }
        counts[outcome]++;
        if (outcome == REQ_ROLLED_BACK) {
            /* Remember, outside the rolled-back transaction, an ID that must never show up anywhere. */
            char idtext[24];
            const char *vals[1] = {idtext};
            PGresult *r;

            snprintf(idtext, sizeof idtext, "%lld", id);
            r = run(pg, "logging a rolled-back request", "INSERT INTO bank.rolled_back (request_id) VALUES ($1)", 1,
                    vals);
            if (!r) {
                PQfinish(pg);
                return 1;
            }
            PQclear(r);
        }
        /* Requests come in bursts of `burst` back-to-back, at `rate` per second on average. */
        if (o->rate > 0 && i % o->burst == 0) {
            long long due = started + i * 1000 / o->rate;
            long long wait = due - now_ms();

            if (wait > 0)
                sleep_ms((long)wait);
        }
    }
    PQfinish(pg);
    printf("bank: %lld requests in %.1f s: %lld enqueued, %lld rejected, %lld rolled back"
           " (%lld transactions run again after a conflict)\n",
           o->count, (double)(now_ms() - started) / 1000.0, counts[REQ_COMMITTED], counts[REQ_REJECTED],
           counts[REQ_ROLLED_BACK], retries);
    return 0;
}

/* ------------------------------------------------------------------------
 * bank worker: the transfer workflow and its steps.
 * ------------------------------------------------------------------------ */

typedef struct transfer {
    json_int_t request;
    int from, to;
    json_int_t amount;
} transfer;

/*
 * What this worker process saw, printed when it stops. Transfers count
 * when their workflow returns; conflicts when a step's own statement failed
 * with one (a serializable transaction can also fail at COMMIT, which only
 * shows as a retried step).
 */
static struct {
    atomic_long completed, declined, serialization_failures, deadlocks, retried_steps;
} seen;

/*
 * The library retries a step's transaction on the same executor thread, so
 * a thread-local note of the step being tried tells a retry from a new step.
 */
static _Thread_local struct {
    char key[256];
    int tries, serialization_failures, deadlocks;
} tried;

/* Count one more transaction of this step (the first, or a retry after a conflict or a lost connection). */
static void step_began(const cairn_step_ctx *step)
{
    if (strcmp(tried.key, cairn_step_key(step)) != 0) {
        snprintf(tried.key, sizeof tried.key, "%s", cairn_step_key(step));
        tried.tries = tried.serialization_failures = tried.deadlocks = 0;
    }
    if (++tried.tries == 2)
        atomic_fetch_add(&seen.retried_steps, 1);
}

static int parse_transfer(cairn_step_ctx *step, const char *input, transfer *t)
{
    json_t *v = json_loads(input, 0, NULL);
    int ok = v && json_unpack(v, "{s:I, s:i, s:i, s:I}", "request", &t->request, "from", &t->from, "to", &t->to,
                              "amount", &t->amount) == 0;

    json_decref(v);
    return ok ? CAIRN_OK : cairn_step_fail(step, "not a transfer: %s", input);
}

/*
 * Run one statement of a step on its transaction. On failure, note a
 * serialization failure or deadlock and fail the attempt with the server's
 * SQLSTATE, which tells cairn to roll back and run the step again.
 */
static int step_sql(cairn_step_ctx *step, PGconn *conn, const char *sql, int n, const char *const *vals,
                    PGresult **out)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    const char *code;
    int rc;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *out = r;
        return CAIRN_OK;
    }
    *out = NULL;
    if (!r)
        return cairn_step_fail(step, "%s", PQerrorMessage(conn));
    code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (code && strcmp(code, "40001") == 0) {
        tried.serialization_failures++;
        atomic_fetch_add(&seen.serialization_failures, 1);
    } else if (code && strcmp(code, "40P01") == 0) {
        tried.deadlocks++;
        atomic_fetch_add(&seen.deadlocks, 1);
    }
    rc = cairn_step_fail_pg(step, r);
    PQclear(r);
    return rc;
}

/* Run a statement whose result is not needed. */
static int step_exec(cairn_step_ctx *step, PGconn *conn, const char *sql, int n, const char *const *vals,
                     int *rows)
{
    PGresult *r;
    int rc = step_sql(step, conn, sql, n, vals, &r);

    if (rc == CAIRN_OK && rows)
        *rows = atoi(PQcmdTuples(r));
    PQclear(r);
    return rc;
}

/* The step's row in bank.journal, in the step's own transaction. */
static int journal(cairn_step_ctx *step, PGconn *conn, const transfer *t, const char *kind, int account,
                   json_int_t amount, const char *executor)
{
    char req[24], acc[16], amt[24], tries[16], sf[16], dl[16], pid[16];
    const char *vals[9] = {req, kind, account ? acc : NULL, amt, tries, sf, dl, executor, pid};

    snprintf(req, sizeof req, "%" JSON_INTEGER_FORMAT, t->request);
    snprintf(acc, sizeof acc, "%d", account);
    snprintf(amt, sizeof amt, "%" JSON_INTEGER_FORMAT, amount);
    snprintf(tries, sizeof tries, "%d", tried.tries);
    snprintf(sf, sizeof sf, "%d", tried.serialization_failures);
    snprintf(dl, sizeof dl, "%d", tried.deadlocks);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    return step_exec(step, conn,
                     "INSERT INTO bank.journal (request_id, kind, account, amount, tries, serialization_failures,"
                     " deadlocks, executor, pid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                     9, vals, NULL);
}

/* Take the output text of a step out of a JSON value. */
static int step_output(cairn_step_ctx *step, json_t *v, char **output)
{
    *output = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

/*
 * debit: take the money from the payer and put it in transit to the payee.
 * The payer's row is locked first and the payee's second, so two transfers
 * between the same accounts in opposite directions can deadlock; Postgres
 * then aborts one of them (40P01) and cairn runs that step again.
 */
static int debit(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    char from[16], to[16], amt[24];
    const char *vals[2] = {from, amt};
    transfer t;
    int rows, rc;

    step_began(step);
    rc = parse_transfer(step, input, &t);
    if (rc != CAIRN_OK)
        return rc;
    snprintf(from, sizeof from, "%d", t.from);
    snprintf(to, sizeof to, "%d", t.to);
    snprintf(amt, sizeof amt, "%" JSON_INTEGER_FORMAT, t.amount);

    rc = step_exec(step, conn, "UPDATE bank.accounts SET balance = balance - $2 WHERE id = $1 AND balance >= $2", 2,
                   vals, &rows);
    if (rc != CAIRN_OK)
        return rc;
    if (rows == 0) {
        /* Not enough money: the transfer is declined, and that decision is what this step commits. */
        rc = journal(step, conn, &t, "decline", t.from, 0, udata);
        if (rc != CAIRN_OK)
            return rc;
        return step_output(step, json_pack("{s:b, s:s}", "declined", 1, "reason", "insufficient funds"), output);
    }
    vals[0] = to;
    rc = step_exec(step, conn, "UPDATE bank.accounts SET incoming = incoming + $2 WHERE id = $1", 2, vals, NULL);
    if (rc == CAIRN_OK)
        rc = journal(step, conn, &t, "debit", t.from, t.amount, udata);
    if (rc != CAIRN_OK)
        return rc;
    return step_output(step, json_pack("{s:b}", "declined", 0), output);
}

/* credit: the money in transit reaches the payee's balance. */
static int credit(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    char to[16], amt[24];
    const char *vals[2] = {to, amt};
    transfer t;
    int rc;

    step_began(step);
    rc = parse_transfer(step, input, &t);
    if (rc != CAIRN_OK)
        return rc;
    snprintf(to, sizeof to, "%d", t.to);
    snprintf(amt, sizeof amt, "%" JSON_INTEGER_FORMAT, t.amount);
    rc = step_exec(step, conn,
                   "UPDATE bank.accounts SET incoming = incoming - $2, balance = balance + $2 WHERE id = $1", 2,
                   vals, NULL);
    if (rc == CAIRN_OK)
        rc = journal(step, conn, &t, "credit", t.to, t.amount, udata);
    if (rc != CAIRN_OK)
        return rc;
    *output = NULL;
    return CAIRN_OK;
}

/* complete: the request is answered. Its input is the transfer plus "outcome". */
static int complete(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    char req[24];
    const char *outcome, *vals[2] = {req, NULL};
    json_t *v = json_loads(input, 0, NULL);
    transfer t;
    int rows, rc;

    step_began(step);
    rc = parse_transfer(step, input, &t);
    outcome = json_string_value(json_object_get(v, "outcome"));
    if (rc == CAIRN_OK && !outcome)
        rc = cairn_step_fail(step, "no outcome in %s", input);
    if (rc != CAIRN_OK) {
        json_decref(v);
        return rc;
    }
    snprintf(req, sizeof req, "%" JSON_INTEGER_FORMAT, t.request);
    vals[1] = outcome;
    rc = step_exec(step, conn,
                   "UPDATE bank.transfer_requests SET status = $2, finished_at = now()"
                   " WHERE id = $1 AND status = 'requested'",
                   2, vals, &rows);
    if (rc == CAIRN_OK && rows != 1)
        rc = cairn_step_fail(step, "request %s is not waiting for an answer", req);
    if (rc == CAIRN_OK)
        rc = journal(step, conn, &t, "complete", 0, 0, udata);
    json_decref(v);
    if (rc != CAIRN_OK)
        return rc;
    *output = NULL;
    return CAIRN_OK;
}

/*
 * The workflow. After a crash it runs again from the top; the steps that
 * committed return their recorded outputs, so the debit's decision (declined
 * or not) is the one that was committed, never a new one.
 */
static int transfer_workflow(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    char *debited = NULL, *answer;
    json_t *d, *in;
    int declined, rc;

    rc = cairn_step(ctx, "debit", input, &debited);
    if (rc != CAIRN_OK)
        return rc;
    d = json_loads(debited, 0, NULL);
    declined = json_is_true(json_object_get(d, "declined"));
    json_decref(d);
    cairn_free(debited);
    if (!declined) {
        rc = cairn_step(ctx, "credit", input, NULL);
        if (rc != CAIRN_OK)
            return rc;
    }

    in = json_loads(input, 0, NULL);
    if (!in || json_object_set_new(in, "outcome", json_string(declined ? "declined" : "completed")) != 0) {
        json_decref(in);
        return cairn_fail(ctx, "cannot read the transfer %s", input);
    }
    answer = json_dumps(in, JSON_COMPACT);
    json_decref(in);
    if (!answer)
        return cairn_fail(ctx, "out of memory");
    rc = cairn_step(ctx, "complete", answer, NULL);
    if (rc != CAIRN_OK) {
        free(answer);
        return rc;
    }
    atomic_fetch_add(declined ? &seen.declined : &seen.completed, 1);
    *output = answer; /* the transfer and its outcome */
    return CAIRN_OK;
}

static char worker_executor[256] = "local";

/* cairn's warnings and errors, with the executor ID in front, since several workers share a terminal. */
static void worker_log(void *udata, int level, const char *message)
{
    fprintf(stderr, "bank worker %s: cairn: %s\n", worker_executor, message);
}

static int parse_isolation(const char *text, cairn_isolation *out)
{
    if (strcmp(text, "read-committed") == 0)
        *out = CAIRN_READ_COMMITTED;
    else if (strcmp(text, "repeatable-read") == 0)
        *out = CAIRN_REPEATABLE_READ;
    else if (strcmp(text, "serializable") == 0)
        *out = CAIRN_SERIALIZABLE;
    else
        return 0;
    return 1;
}

/* Open a handle, register the transfer workflow and its steps, and start the executors. */
static int start_serving(cairn **out, const cairn_options *opts, const cairn_tx_options *tx)
{
    const char *exec_id;
    int rc = cairn_open(out, opts);

    if (rc != CAIRN_OK)
        return rc;
    exec_id = cairn_executor_id(*out);
    snprintf(worker_executor, sizeof worker_executor, "%s", exec_id);
    rc = cairn_register_workflow(*out, WORKFLOW, transfer_workflow, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(*out, "debit", debit, (void *)exec_id, tx);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(*out, "credit", credit, (void *)exec_id, tx);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(*out, "complete", complete, (void *)exec_id, tx);
    /* Resumes the transfers this executor ID left unfinished, then takes enqueued ones. */
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(*out);
    return rc;
}

static int cmd_worker(const char *executor, long long workers, cairn_isolation isolation, long long max_attempts)
{
    cairn_options opts = {.size = sizeof opts,
                          .conninfo = db_conninfo,
                          .executor_id = executor,
                          .workers = (int)workers,
                          .max_attempts = (int)max_attempts,
                          .log = worker_log,
                          .log_level = CAIRN_LOG_WARN};
    cairn_tx_options tx = {.size = sizeof tx, .isolation = isolation, .max_conflict_retries = CONFLICT_RETRIES};
    long long give_up = now_ms() + START_PATIENCE_MS, backoff = 100;
    sigset_t stop;
    cairn *h = NULL;
    int rc, sig = 0;

    if (executor)
        snprintf(worker_executor, sizeof worker_executor, "%s", executor);
    /* Block the stop signals before any thread exists, so that only sigwait() below sees them. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    /* A database that is restarting, or a connection cut while starting, is worth waiting for. */
    while ((rc = start_serving(&h, &opts, &tx)) == CAIRN_ECONN && now_ms() < give_up) {
        fprintf(stderr, "bank worker %s: %s; trying again\n", worker_executor, cairn_errmsg(h));
        cairn_close(h);
        h = NULL;
        sleep_ms((long)backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    if (rc != CAIRN_OK) {
        fprintf(stderr, "bank worker: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
        cairn_close(h);
        return 1;
    }
    printf("bank worker %s: serving transfers (pid %d)\n", worker_executor, (int)getpid());
    fflush(stdout);
    while (sigwait(&stop, &sig) != 0)
        ;
    /* Transfers still running are handed back to the queue, for this or any other worker. */
    cairn_close(h);
    printf("bank worker %s: stopped by signal %d; this process finished %ld transfers (%ld declined),"
           " retried %ld steps, saw %ld serialization failures and %ld deadlocks\n",
           worker_executor, sig, atomic_load(&seen.completed) + atomic_load(&seen.declined),
           atomic_load(&seen.declined), atomic_load(&seen.retried_steps), atomic_load(&seen.serialization_failures),
           atomic_load(&seen.deadlocks));
    return 0;
}

/* ------------------------------------------------------------------------
 * bank check: the invariants.
 * ------------------------------------------------------------------------ */

/* The transfer workflows of this setup, as a condition on cairn.workflows aliased w. */
#define THIS_SETUP                                                                                               \
    "w.name = 'transfer' AND w.id ~ '^transfer-[0-9]{1,18}$'"                                                    \
    " AND substr(w.id, 10)::bigint >= (SELECT first_request FROM bank.config)"

/* Violations found so far, by all checks. */
static int violations;

/* How many violations of one check are printed; the rest are only counted. */
#define SHOW_VIOLATIONS 5

/* Wait until no transfer workflow is ENQUEUED or PENDING; returns 0 when that happened in time. */
static int wait_all_finished(PGconn *pg, long long seconds)
{
    long long deadline = now_ms() + seconds * 1000, last_said = 0;
    int ok = 1;

    for (;;) {
        long long open = run_ll(pg, "counting unfinished transfers",
                                "SELECT count(*) FROM cairn.workflows w WHERE " THIS_SETUP
                                " AND w.status IN ('ENQUEUED', 'PENDING')",
                                0, NULL, &ok);
        if (!ok)
            return -1;
        if (open == 0)
            return 0;
        if (now_ms() >= deadline) {
            printf("bank check: %lld transfers still unfinished after %lld s\n", open, seconds);
            return -1;
        }
        if (now_ms() - last_said >= 5000) {
            printf("bank check: waiting for %lld unfinished transfers\n", open);
            fflush(stdout);
            last_said = now_ms();
        }
        sleep_ms(250);
    }
}

/*
 * Run a query that finds violations, one line of text per row, and print
 * the first few. Returns how many it found, or -1 if the query failed.
 */
static int report(PGconn *pg, const char *what, const char *sql)
{
    PGresult *r = run(pg, what, sql, 0, NULL);
    int n;

    if (!r)
        return -1;
    n = PQntuples(r);
    for (int i = 0; i < n && i < SHOW_VIOLATIONS; i++)
        printf("  VIOLATION: %s\n", PQgetvalue(r, i, 0));
    if (n > SHOW_VIOLATIONS)
        printf("  ... and %d more like these\n", n - SHOW_VIOLATIONS);
    PQclear(r);
    return n;
}

/*
 * Each check is one query returning one line of text per violation. They
 * read one snapshot (REPEATABLE READ), so they all describe the same moment.
 */
static const struct {
    const char *what;
    const char *sql;
} checks[] = {
    {"money is neither created nor destroyed",
     "SELECT format('the accounts hold %s in balances and %s in transit; the bank holds %s', b, i, c.total)"
     "  FROM (SELECT sum(balance) AS b, sum(incoming) AS i FROM bank.accounts) a, bank.config c"
     " WHERE a.b + a.i <> c.total OR a.i <> 0"},
    {"every account matches its journal",
     "WITH d AS (SELECT account, sum(amount) AS out FROM bank.journal WHERE kind = 'debit' GROUP BY account),"
     "     c AS (SELECT account, sum(amount) AS inc FROM bank.journal WHERE kind = 'credit' GROUP BY account),"
     "     t AS (SELECT r.to_account AS account, sum(r.amount) AS transit FROM bank.transfer_requests r"
     "            WHERE EXISTS (SELECT 1 FROM bank.journal j WHERE j.request_id = r.id AND j.kind = 'debit')"
     "              AND NOT EXISTS (SELECT 1 FROM bank.journal j WHERE j.request_id = r.id AND j.kind = 'credit')"
     "            GROUP BY r.to_account)"
     "SELECT format('account %s has balance %s and %s in transit; its journal says %s and %s',"
     "              a.id, a.balance, a.incoming, cfg.initial_balance - coalesce(d.out, 0) + coalesce(c.inc, 0),"
     "              coalesce(t.transit, 0))"
     "  FROM bank.accounts a CROSS JOIN bank.config cfg"
     "  LEFT JOIN d ON d.account = a.id LEFT JOIN c ON c.account = a.id LEFT JOIN t ON t.account = a.id"
     " WHERE a.balance <> cfg.initial_balance - coalesce(d.out, 0) + coalesce(c.inc, 0)"
     "    OR a.incoming <> coalesce(t.transit, 0)"
     " ORDER BY a.id"},
    {"every transfer workflow finished with SUCCESS",
     "SELECT format('workflow %s is %s: %s', w.id, w.status, coalesce(w.error::text, ''))"
     "  FROM cairn.workflows w WHERE " THIS_SETUP " AND w.status <> 'SUCCESS' ORDER BY w.created_at"},
    {"every committed request was applied exactly once",
     "WITH j AS (SELECT e.request_id,"
     "                  count(*) FILTER (WHERE e.kind = 'debit') AS debits,"
     "                  count(*) FILTER (WHERE e.kind = 'credit') AS credits,"
     "                  count(*) FILTER (WHERE e.kind = 'decline') AS declines,"
     "                  count(*) FILTER (WHERE e.kind = 'complete') AS completes,"
     "                  count(*) FILTER (WHERE e.kind = 'debit' AND e.account IS DISTINCT FROM q.from_account"
     "                                     OR e.kind = 'credit' AND e.account IS DISTINCT FROM q.to_account"
     "                                     OR e.kind IN ('debit', 'credit') AND e.amount <> q.amount) AS wrong"
     "             FROM bank.journal e JOIN bank.transfer_requests q ON q.id = e.request_id"
     "            GROUP BY e.request_id)"
     "SELECT format('request %s (%s, workflow %s, outcome %s): journal has %s debits, %s credits, '"
     "              || '%s declines, %s completions, %s entries with the wrong account or amount',"
     "              r.id, r.status, coalesce(w.status, 'missing'), coalesce(w.output->>'outcome', '-'),"
     "              coalesce(j.debits, 0), coalesce(j.credits, 0), coalesce(j.declines, 0),"
     "              coalesce(j.completes, 0), coalesce(j.wrong, 0))"
     "  FROM bank.transfer_requests r"
     "  LEFT JOIN cairn.workflows w ON w.id = 'transfer-' || r.id"
     "  LEFT JOIN j ON j.request_id = r.id"
     " WHERE r.status <> 'rejected' AND NOT ("
     "       w.status = 'SUCCESS' AND coalesce(j.wrong, 0) = 0 AND coalesce(j.completes, 0) = 1"
     "   AND (r.status = 'completed' AND w.output->>'outcome' = 'completed'"
     "        AND j.debits = 1 AND j.credits = 1 AND j.declines = 0"
     "     OR r.status = 'declined' AND w.output->>'outcome' = 'declined'"
     "        AND j.debits = 0 AND j.credits = 0 AND j.declines = 1))"
     " ORDER BY r.id"},
    {"rejected requests have no workflow and were never applied",
     "SELECT format('rejected request %s has %s', r.id,"
     "              CASE WHEN w.id IS NOT NULL THEN 'workflow ' || w.id || ' (' || w.status || ')'"
     "                   ELSE 'journal entries' END)"
     "  FROM bank.transfer_requests r LEFT JOIN cairn.workflows w ON w.id = 'transfer-' || r.id"
     " WHERE r.status = 'rejected'"
     "   AND (w.id IS NOT NULL OR EXISTS (SELECT 1 FROM bank.journal j WHERE j.request_id = r.id))"
     " ORDER BY r.id"},
    {"rolled-back requests left nothing behind",
     "SELECT format('rolled-back request %s left %s', b.request_id,"
     "              concat_ws(' and ', CASE WHEN r.id IS NOT NULL THEN 'a request row' END,"
     "                                 CASE WHEN w.id IS NOT NULL THEN 'workflow ' || w.id || ' (' || w.status || ')' END))"
     "  FROM bank.rolled_back b"
     "  LEFT JOIN bank.transfer_requests r ON r.id = b.request_id"
     "  LEFT JOIN cairn.workflows w ON w.id = 'transfer-' || b.request_id"
     " WHERE r.id IS NOT NULL OR w.id IS NOT NULL"
     " ORDER BY b.request_id"},
    {"every transfer workflow belongs to a committed request",
     "SELECT format('workflow %s (%s) has no request waiting for it', w.id, w.status)"
     "  FROM cairn.workflows w WHERE " THIS_SETUP
     "   AND NOT EXISTS (SELECT 1 FROM bank.transfer_requests r"
     "                    WHERE 'transfer-' || r.id = w.id AND r.status <> 'rejected')"
     " ORDER BY w.id"},
};

static int cmd_check(long long wait_seconds)
{
    PGconn *pg = connect_db("bank-check");
    PGresult *r;
    int ok = 1;

    if (!pg)
        return 1;
    if (wait_seconds > 0 && wait_all_finished(pg, wait_seconds) != 0) {
        PQfinish(pg);
        return 1;
    }
    r = run(pg, "BEGIN", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
    if (!r) {
        PQfinish(pg);
        return 1;
    }
    PQclear(r);

    r = run(pg, "counting requests",
            "SELECT (SELECT count(*) FROM bank.transfer_requests),"
            "       (SELECT count(*) FROM bank.transfer_requests WHERE status = 'completed'),"
            "       (SELECT count(*) FROM bank.transfer_requests WHERE status = 'declined'),"
            "       (SELECT count(*) FROM bank.transfer_requests WHERE status = 'rejected'),"
            "       (SELECT count(*) FROM bank.transfer_requests WHERE status = 'requested'),"
            "       (SELECT count(*) FROM bank.rolled_back),"
            "       (SELECT total FROM bank.config),"
            "       (SELECT sum(balance) FROM bank.accounts),"
            "       (SELECT count(*) FROM cairn.workflows w WHERE " THIS_SETUP ")",
            0, NULL);
    if (!r) {
        fprintf(stderr, "bank: is the bank set up (`bank setup`)?\n");
        PQfinish(pg);
        return 1;
    }
    printf("bank check: %s requests: %s completed, %s declined (insufficient funds), %s rejected, %s unanswered;"
           " %s rolled back; %s transfer workflows\n"
           "  money: %s in the bank, %s in the accounts\n",
           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
           PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 8), PQgetvalue(r, 0, 6),
           PQgetvalue(r, 0, 7));
    PQclear(r);

    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        int found = report(pg, checks[i].what, checks[i].sql);

        if (found < 0) {
            ok = 0;
            break;
        }
        violations += found;
        printf("  %-60s %s\n", checks[i].what, found == 0 ? "ok" : "VIOLATED");
    }

    /*
     * How hard the transfers fought over the accounts: what the committed
     * steps' journal rows say about the transactions they retried, and how
     * many deadlocks the server itself counted in this database.
     */
    r = ok ? run(pg, "summing retries",
                 "SELECT coalesce(sum(serialization_failures), 0), coalesce(sum(deadlocks), 0),"
                 "       count(*) FILTER (WHERE tries > 1), coalesce(sum(tries - 1), 0),"
                 "       count(*) FILTER (WHERE serialization_failures + deadlocks > 0),"
                 "       (SELECT deadlocks FROM pg_stat_database WHERE datname = current_database())"
                 "  FROM bank.journal",
                 0, NULL)
           : NULL;
    if (r) {
        printf("  retries: serialization_failures=%s deadlocks=%s retried_steps=%s retries=%s"
               " conflicted_steps=%s server_deadlocks=%s\n",
               PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
               PQgetvalue(r, 0, 4), PQgetisnull(r, 0, 5) ? "?" : PQgetvalue(r, 0, 5));
        PQclear(r);
    } else {
        ok = 0;
    }
    PQclear(PQexec(pg, "COMMIT"));
    PQfinish(pg);
    if (!ok)
        return 1;
    if (violations) {
        printf("bank check: FAILED: %d violations\n", violations);
        return 1;
    }
    printf("bank check: OK: every invariant holds\n");
    return 0;
}

/* ------------------------------------------------------------------------
 * Command line.
 * ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bank setup --accounts N --balance B [--reset]\n"
            "       bank request --count N [--seed S] [--rate R [--burst B]] [--hot PCT] [--rollback-every K]\n"
            "                    [--reject-every J]\n"
            "       bank worker [--executor ID] [--workers N] [--isolation LEVEL] [--max-attempts N]\n"
            "       bank check [--wait SECONDS]\n"
            "Every command also takes --db CONNINFO (default $CAIRN_DATABASE_URL).\n\n"
            "setup    create schema bank with N accounts holding B each (--reset replaces an existing one)\n"
            "request  take N transfer requests, each in one transaction that records the request and\n"
            "         enqueues its workflow: R per second on average (0: as fast as possible), in\n"
            "         bursts of B back-to-back (default 1); PCT percent (default 30) between the\n"
            "         first %d accounts; every K-th rolled back after the enqueue; every J-th asks\n"
            "         for more than the transfer limit and is rejected without a workflow\n"
            "worker   run transfers until SIGTERM or SIGINT; LEVEL is read-committed, repeatable-read\n"
            "         (default) or serializable, the isolation of the transfer steps\n"
            "check    verify the invariants once every transfer has finished (waiting up to SECONDS\n"
            "         for that); exit 0 only when all hold\n",
            HOT_ACCOUNTS);
}

int main(int argc, char **argv)
{
    request_opts req = {.count = 0, .seed = 1, .rate = 0, .burst = 1, .hot = 30, .rollback_every = 0, .reject_every = 0};
    long long accounts = 0, balance = 0, workers = 0, max_attempts = 0, wait = 0;
    const char *cmd, *executor = NULL;
    cairn_isolation isolation = CAIRN_REPEATABLE_READ;
    int reset = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;

        if (strcmp(opt, "--reset") == 0) {
            reset = 1;
            continue;
        }
        if (!val) {
            fprintf(stderr, "bank: %s needs a value\n", opt);
            return 2;
        }
        i++;
        if (strcmp(opt, "--db") == 0)
            db_conninfo = val;
        else if (strcmp(opt, "--accounts") == 0)
            ok = parse_ll(opt, val, 2, 1000000, &accounts);
        else if (strcmp(opt, "--balance") == 0)
            ok = parse_ll(opt, val, 1, 1000000000000LL, &balance);
        else if (strcmp(opt, "--count") == 0)
            ok = parse_ll(opt, val, 0, 100000000, &req.count);
        else if (strcmp(opt, "--seed") == 0)
            ok = parse_ll(opt, val, 0, LLONG_MAX, &req.seed);
        else if (strcmp(opt, "--rate") == 0)
            ok = parse_ll(opt, val, 0, 1000000, &req.rate);
        else if (strcmp(opt, "--burst") == 0)
            ok = parse_ll(opt, val, 1, 1000000, &req.burst);
        else if (strcmp(opt, "--hot") == 0)
            ok = parse_ll(opt, val, 0, 100, &req.hot);
        else if (strcmp(opt, "--rollback-every") == 0)
            ok = parse_ll(opt, val, 0, 100000000, &req.rollback_every);
        else if (strcmp(opt, "--reject-every") == 0)
            ok = parse_ll(opt, val, 0, 100000000, &req.reject_every);
        else if (strcmp(opt, "--executor") == 0)
            executor = val;
        else if (strcmp(opt, "--workers") == 0)
            ok = parse_ll(opt, val, 1, 1024, &workers);
        else if (strcmp(opt, "--max-attempts") == 0)
            ok = parse_ll(opt, val, 1, 1000000000, &max_attempts);
        else if (strcmp(opt, "--isolation") == 0)
            ok = parse_isolation(val, &isolation);
        else if (strcmp(opt, "--wait") == 0)
            ok = parse_ll(opt, val, 0, 86400, &wait);
        else {
            fprintf(stderr, "bank: unknown option %s\n", opt);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            if (strcmp(opt, "--isolation") == 0)
                fprintf(stderr, "bank: --isolation is read-committed, repeatable-read or serializable\n");
            return 2;
        }
    }

    if (strcmp(cmd, "setup") == 0) {
        if (!accounts || !balance) {
            fprintf(stderr, "bank: setup needs --accounts and --balance\n");
            return 2;
        }
        return cmd_setup(accounts, balance, reset);
    }
    if (strcmp(cmd, "request") == 0)
        return cmd_request(&req);
    if (strcmp(cmd, "worker") == 0)
        return cmd_worker(executor, workers, isolation, max_attempts);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(wait);
    fprintf(stderr, "bank: unknown command %s\n", cmd);
    usage(stderr);
    return 2;
}
