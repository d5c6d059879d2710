/*
 * The cairn orders example: an order pipeline fed by a trigger.
 *
 * The shop's own code (or anyone with psql) places an order with a plain
 * INSERT INTO shop.orders. A trigger on that table calls
 * cairn.enqueue_row(), which enqueues one process_order workflow per
 * inserted row, with the row as the workflow's input, inside the inserting
 * transaction: the workflow exists if and only if the order commits.
 * Workers claim the workflows and run them:
 *
 *   1. reserve_stock  transactional step: takes the stock and marks the
 *                     order 'reserved' in the step's own transaction, or
 *                     marks it 'rejected' when there is not enough stock
 *   2. charge         plain step: "calls the payment provider" with the
 *                     step's idempotency key
 *   3. ship           transactional step: inserts the shipment and marks
 *                     the order 'shipped'
 *
 *   orders setup
 *       Create cairn's schema (if missing) and the shop's: shop.inventory,
 *       shop.orders with its order_placed trigger, shop.shipments.
 *
 *   orders worker [--poll-ms MS] [--workers N] [--until-idle]
 *       Serve process_order workflows until SIGINT or SIGTERM, or with
 *       --until-idle until no order workflow is left waiting or running.
 *
 *   orders status
 *       Every order next to its workflow: one join of shop.orders with
 *       cairn.workflows.
 *
 * The database is $CAIRN_DATABASE_URL, else libpq's PG* variables.
 */
#include <cairn.h>

#include <jansson.h>
#include <libpq-fe.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKFLOW "process_order"

/*
 * The shop's schema. The trigger is the whole integration: the application
 * inserts orders as it always did and never calls cairn itself.
 *
 * The item's reference to the inventory is checked at commit (DEFERRABLE
 * INITIALLY DEFERRED), after the trigger has already enqueued the workflow,
 * so an order for an unknown item shows that a transaction failing at its
 * very end takes its workflow with it.
 */
static const char SHOP_SCHEMA[] =
    "CREATE SCHEMA IF NOT EXISTS shop;\n"
    "CREATE TABLE IF NOT EXISTS shop.inventory (\n"
    "    item        text    PRIMARY KEY,\n"
    "    stock       integer NOT NULL CHECK (stock >= 0),\n"
    "    price_cents integer NOT NULL CHECK (price_cents >= 0)\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS shop.orders (\n"
    "    id         bigserial   PRIMARY KEY,\n"
    "    customer   text        NOT NULL,\n"
    "    item       text        NOT NULL REFERENCES shop.inventory (item) DEFERRABLE INITIALLY DEFERRED,\n"
    "    quantity   integer     NOT NULL CHECK (quantity > 0),\n"
    "    status     text        NOT NULL DEFAULT 'new'\n"
    "               CHECK (status IN ('new', 'reserved', 'shipped', 'rejected')),\n"
    "    created_at timestamptz NOT NULL DEFAULT now(),\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS shop.shipments (\n"
    "    order_id    bigint      NOT NULL UNIQUE REFERENCES shop.orders (id),\n"
    "    tracking    text        NOT NULL,\n"
    "    payment_key text        NOT NULL,\n"
    "    shipped_at  timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE OR REPLACE TRIGGER order_placed AFTER INSERT ON shop.orders\n"
    "    FOR EACH ROW EXECUTE FUNCTION cairn.enqueue_row('" WORKFLOW "', 'orders');\n"
    "INSERT INTO shop.inventory (item, stock, price_cents) VALUES\n"
    "    ('espresso machine', 10, 24900), ('grinder', 5, 8900), ('descaler', 100, 990)\n"
    "    ON CONFLICT (item) DO NOTHING;\n";

/* Each order next to the workflow the trigger enqueued for it, and its shipment if any. */
static const char STATUS_QUERY[] =
    "SELECT o.id, o.customer, o.quantity || ' x ' || o.item, o.status,\n"
    "       coalesce(w.status, '-'), coalesce(w.id, '-'), coalesce(s.tracking, '')\n"
    "  FROM shop.orders o\n"
    "  LEFT JOIN cairn.workflows w ON w.name = '" WORKFLOW "' AND w.input->>'id' = o.id::text\n"
    "  LEFT JOIN shop.shipments s ON s.order_id = o.id\n"
    " ORDER BY o.id";

/* Order workflows not finished yet: `worker --until-idle` stops when there are none. */
static const char UNFINISHED_QUERY[] =
    "SELECT count(*) FROM cairn.workflows WHERE name = '" WORKFLOW "' AND status IN ('ENQUEUED', 'PENDING')";

/* The order row as the trigger handed it over (row_to_json of shop.orders). Strings are borrowed from json. */
struct order {
    json_t *json;
    json_int_t id;
    json_int_t quantity;
    const char *customer;
    const char *item;
    char id_text[32];
};

/* Serialise v compactly and release it. The text is malloc'd, as cairn expects of outputs. */
static char *json_text(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;

    json_decref(v);
    return s;
}

/* Read an order row; 0 on success, -1 if text is not one. Release with order_done(). */
static int order_parse(const char *text, struct order *o)
{
    memset(o, 0, sizeof *o);
    o->json = json_loads(text, 0, NULL);
    if (!o->json || json_unpack(o->json, "{s:I, s:s, s:s, s:I}", "id", &o->id, "customer", &o->customer, "item",
                                &o->item, "quantity", &o->quantity) != 0) {
        json_decref(o->json);
        o->json = NULL;
        return -1;
    }
    snprintf(o->id_text, sizeof o->id_text, "%" JSON_INTEGER_FORMAT, o->id);
    return 0;
}

static void order_done(struct order *o)
{
    json_decref(o->json);
    o->json = NULL;
}

/* "178.00 EUR" */
static const char *money(long long cents, char *buf, size_t len)
{
    snprintf(buf, len, "%lld.%02lld EUR", cents / 100, cents % 100);
    return buf;
}

/* Run one statement with text parameters; 0 if it returned `want`, else the step fails with the server's error. */
static int exec_step_sql(cairn_step_ctx *step, PGconn *conn, const char *sql, int nparams, const char *const *params,
                         ExecStatusType want, PGresult **out)
{
    PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != want) {
        int rc = cairn_step_fail_pg(step, r);

        PQclear(r);
        return rc;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return CAIRN_OK;
}

/* ------------------------------------------------------------------------
 * The steps.
 * ------------------------------------------------------------------------ */

/*
 * Step 1, transactional: take the stock and move the order on, in the
 * step's transaction, which commits together with the step's checkpoint.
 * If this worker dies before that commit, none of it happened; if another
 * execution of the same workflow got there first, this one rolls back.
 * So the stock is taken exactly once.
 *
 * Out of stock is not a failure but an outcome: the order is marked
 * 'rejected' in the same transaction and the step says so.
 */
static int reserve_stock(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    struct order o;
    char quantity[32];
    const char *take[2], *mark[2];
    PGresult *r = NULL;
    long long amount = 0;
    int reserved, rc;

    if (order_parse(input, &o) != 0)
        return cairn_step_fail(step, "the input is not an order row: %.200s", input);
    snprintf(quantity, sizeof quantity, "%" JSON_INTEGER_FORMAT, o.quantity);

    take[0] = o.item;
    take[1] = quantity;
    rc = exec_step_sql(step, conn,
                       "UPDATE shop.inventory SET stock = stock - $2::int WHERE item = $1 AND stock >= $2::int"
                       " RETURNING price_cents::bigint * $2::int",
                       2, take, PGRES_TUPLES_OK, &r);
    if (rc != CAIRN_OK)
        goto done;
    reserved = PQntuples(r) == 1;
    if (reserved)
        amount = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);

    mark[0] = o.id_text;
    mark[1] = reserved ? "reserved" : "rejected";
    rc = exec_step_sql(step, conn,
                       "UPDATE shop.orders SET status = $2, updated_at = now()"
                       " WHERE id = $1::bigint AND status = 'new'",
                       2, mark, PGRES_COMMAND_OK, &r);
    if (rc != CAIRN_OK)
        goto done;
    if (strcmp(PQcmdTuples(r), "1") != 0)
        rc = cairn_step_fail(step, "order %s is missing or no longer new", o.id_text);
    PQclear(r);
    if (rc != CAIRN_OK)
        goto done;

    *output = json_text(json_pack("{s:b, s:I}", "reserved", reserved, "amount_cents", (json_int_t)amount));
    rc = *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
done:
    order_done(&o);
    return rc;
}

/*
 * Step 2, an ordinary step standing for a call to a payment provider. It
 * is at-least-once: a worker that dies after the call but before the
 * checkpoint makes the next execution call again. The idempotency key is
 * the same in every execution, so the provider charges once per key.
 */
static int charge(cairn_step_ctx *step, const char *input, char **output, void *udata)
{
    json_t *in = json_loads(input, 0, NULL);
    json_int_t order_id = 0, amount = 0;
    const char *customer = NULL;
    char price[48];

    if (!in || json_unpack(in, "{s:I, s:s, s:I}", "order", &order_id, "customer", &customer, "amount_cents",
                           &amount) != 0) {
        json_decref(in);
        return cairn_step_fail(step, "the input is not a charge: %.200s", input);
    }
    printf("order %" JSON_INTEGER_FORMAT ": charging %s to %s, idempotency key %s\n", order_id,
           money(amount, price, sizeof price), customer, cairn_step_key(step));
    *output = json_text(json_pack("{s:s, s:I}", "payment_key", cairn_step_key(step), "charged_cents", amount));
    json_decref(in);
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

/*
 * Step 3, transactional: record the shipment and mark the order shipped.
 * shop.shipments allows one row per order; since the step's writes happen
 * exactly once, a second row is never attempted.
 */
static int ship(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    json_t *in = json_loads(input, 0, NULL);
    json_int_t order_id = 0;
    const char *payment_key = NULL;
    char id[32], tracking[32];
    uint32_t hash = 2166136261u;
    PGresult *r = NULL;
    int rc;

    if (!in || json_unpack(in, "{s:I, s:s}", "order", &order_id, "payment_key", &payment_key) != 0) {
        json_decref(in);
        return cairn_step_fail(step, "the input is not a shipment: %.200s", input);
    }
    snprintf(id, sizeof id, "%" JSON_INTEGER_FORMAT, order_id);
    /* A tracking number derived from the step's key is the same in every attempt. */
    for (const char *p = cairn_step_key(step); *p; p++)
        hash = (hash ^ (unsigned char)*p) * 16777619u;
    snprintf(tracking, sizeof tracking, "TRK-%06u", (unsigned)(hash % 1000000u));

    const char *shipment[] = {id, tracking, payment_key};
    rc = exec_step_sql(step, conn,
                       "INSERT INTO shop.shipments (order_id, tracking, payment_key) VALUES ($1::bigint, $2, $3)", 3,
                       shipment, PGRES_COMMAND_OK, NULL);
    if (rc == CAIRN_OK)
        rc = exec_step_sql(step, conn,
                           "UPDATE shop.orders SET status = 'shipped', updated_at = now()"
                           " WHERE id = $1::bigint AND status = 'reserved'",
                           1, shipment, PGRES_COMMAND_OK, &r);
    if (rc == CAIRN_OK) {
        if (strcmp(PQcmdTuples(r), "1") != 0)
            rc = cairn_step_fail(step, "order %s is missing or not reserved", id);
        PQclear(r);
    }
    if (rc == CAIRN_OK) {
        *output = json_text(json_pack("{s:s}", "tracking", tracking));
        rc = *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
    }
    json_decref(in);
    return rc;
}

/* ------------------------------------------------------------------------
 * The workflow. Its input is the order row; each step's input is built
 * from the order and from earlier steps' outputs, recorded or fresh alike.
 * ------------------------------------------------------------------------ */

/* Turn a failed cairn_step() into the workflow's return value. */
static int step_failed(cairn_ctx *ctx, const struct order *o, const char *step, int rc)
{
    if (rc == CAIRN_ESTEP)
        return cairn_fail(ctx, "order %s: %s failed: %s", o->id_text, step, cairn_ctx_errmsg(ctx));
    return rc; /* CAIRN_ESHUTDOWN: resumed later; CAIRN_ENONDET: already failed by cairn */
}

static int process_order(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    struct order o;
    char *reservation = NULL, *charged = NULL, *shipped = NULL, *text;
    const char *tracking;
    json_int_t amount;
    json_t *v;
    char price[48];
    int reserved, rc;

    if (order_parse(input, &o) != 0)
        return cairn_fail(ctx, "the input is not a shop.orders row: %.200s", input);
    printf("order %s (%s: %" JSON_INTEGER_FORMAT " x %s): workflow %s %s\n", o.id_text, o.customer, o.quantity,
           o.item, cairn_ctx_id(ctx), cairn_ctx_attempt(ctx) == 1 ? "starts" : "resumes");

    rc = cairn_step(ctx, "reserve_stock", input, &reservation);
    if (rc != CAIRN_OK) {
        rc = step_failed(ctx, &o, "reserve_stock", rc);
        goto done;
    }
    v = json_loads(reservation, 0, NULL);
    reserved = json_is_true(json_object_get(v, "reserved"));
    amount = json_integer_value(json_object_get(v, "amount_cents"));
    json_decref(v);

    if (!reserved) {
        printf("order %s: rejected, not enough %s in stock\n", o.id_text, o.item);
        *output = json_text(json_pack("{s:I, s:s, s:s}", "order", o.id, "outcome", "rejected", "reason",
                                      "out of stock"));
        rc = *output ? CAIRN_OK : cairn_fail(ctx, "out of memory");
        goto done;
    }
    printf("order %s: reserved %" JSON_INTEGER_FORMAT " x %s, %s\n", o.id_text, o.quantity, o.item,
           money(amount, price, sizeof price));

    text = json_text(json_pack("{s:I, s:s, s:I}", "order", o.id, "customer", o.customer, "amount_cents", amount));
    rc = text ? cairn_step(ctx, "charge", text, &charged) : cairn_fail(ctx, "out of memory");
    free(text);
    if (rc != CAIRN_OK) {
        rc = step_failed(ctx, &o, "charge", rc);
        goto done;
    }

    /* The charge's output ({payment_key, charged_cents}) plus the order ID is the shipment's input. */
    v = json_loads(charged, 0, NULL);
    if (v)
        json_object_set_new(v, "order", json_integer(o.id));
    text = json_text(v);
    rc = text ? cairn_step(ctx, "ship", text, &shipped) : cairn_fail(ctx, "the charge's output is unusable");
    free(text);
    if (rc != CAIRN_OK) {
        rc = step_failed(ctx, &o, "ship", rc);
        goto done;
    }

    v = json_loads(shipped, 0, NULL);
    tracking = json_string_value(json_object_get(v, "tracking"));
    printf("order %s: shipped, tracking %s\n", o.id_text, tracking ? tracking : "?");
    *output = json_text(json_pack("{s:I, s:s, s:s, s:I}", "order", o.id, "outcome", "shipped", "tracking",
                                  tracking ? tracking : "?", "charged_cents", amount));
    json_decref(v);
    rc = *output ? CAIRN_OK : cairn_fail(ctx, "out of memory");
done:
    cairn_free(reservation);
    cairn_free(charged);
    cairn_free(shipped);
    order_done(&o);
    return rc;
}

/* ------------------------------------------------------------------------
 * The commands.
 * ------------------------------------------------------------------------ */

/* A connection of the application's own, to the same database cairn uses. */
static PGconn *connect_db(void)
{
    const char *url = getenv("CAIRN_DATABASE_URL");
    PGconn *pg = PQconnectdb(url ? url : "");

    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "orders: cannot connect to the database: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* Run SQL without parameters; 0 on success, else -1 after saying why. */
static int exec_sql(PGconn *pg, const char *sql, const char *what)
{
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "orders: %s: %s", what, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Setup is meant to be run again freely; the "already exists, skipping" notices that brings are dropped. */
static void quiet_notice(void *arg, const char *message)
{
}

static int cmd_setup(void)
{
    cairn *h = NULL;
    PGconn *pg;
    int version = 0;
    int rc = cairn_open(&h, NULL); /* applies cairn's migrations */

    if (rc == CAIRN_OK)
        rc = cairn_migrate(h, &version);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "orders: cannot set up cairn: %s: %s\n", cairn_strerror(rc),
                h ? cairn_errmsg(h) : "out of memory");
        cairn_close(h);
        return 1;
    }
    cairn_close(h);
    pg = connect_db();
    if (!pg)
        return 1;
    PQsetNoticeProcessor(pg, quiet_notice, NULL);
    /* Several statements in one PQexec run as one transaction: all of the schema or none. */
    rc = exec_sql(pg, SHOP_SCHEMA, "creating the shop schema");
    PQfinish(pg);
    if (rc != 0)
        return 1;
    printf("cairn schema version %d; shop schema ready: shop.inventory, shop.orders (trigger order_placed), "
           "shop.shipments\n",
           version);
    return 0;
}

static int cmd_status(void)
{
    PGconn *pg = connect_db();
    PGresult *r;

    if (!pg)
        return 1;
    r = PQexec(pg, STATUS_QUERY);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "orders: reading the orders: %s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(pg);
        return 1;
    }
    printf("%-6s  %-12s  %-22s  %-8s  %-9s  %-36s  %s\n", "order", "customer", "item", "order", "workflow",
           "workflow id", "tracking");
    for (int i = 0; i < PQntuples(r); i++)
        printf("%-6s  %-12s  %-22s  %-8s  %-9s  %-36s  %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
               PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
               PQgetvalue(r, i, 6));
    PQclear(r);
    PQfinish(pg);
    return 0;
}

/* How many order workflows are waiting or running, or -1 on error. */
static long count_unfinished(PGconn *pg)
{
    PGresult *r = PQexec(pg, UNFINISHED_QUERY);
    long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -1;

    if (n < 0)
        fprintf(stderr, "orders: counting unfinished workflows: %s", PQresultErrorMessage(r));
    PQclear(r);
    return n;
}

/* cairn's log messages, marked as such. */
static void print_log(void *udata, int level, const char *message)
{
    fprintf(level >= CAIRN_LOG_WARN ? stderr : stdout, "cairn: %s\n", message);
}

static int cmd_worker(int poll_ms, int workers, int until_idle)
{
    cairn_options opts = {.size = sizeof opts,
                          .workers = workers,
                          .poll_interval_ms = poll_ms,
                          .log = print_log,
                          .log_level = CAIRN_LOG_INFO};
    /* A payment provider that times out is worth a few more tries. */
    cairn_retry charge_retry = {.max_attempts = 3, .base_ms = 200};
    struct timespec tick = {0, 100 * 1000000L};
    PGconn *pg = NULL;
    cairn *h = NULL;
    sigset_t stop;
    int rc, sig = 0, exit_code = 0;

    /*
     * SIGINT and SIGTERM are blocked in every thread (cairn's threads
     * inherit the mask) and taken by sigtimedwait() below, so a stop
     * request is a plain return in the main thread, not an interrupted call.
     */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    rc = cairn_open(&h, &opts);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, WORKFLOW, process_order, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(h, "reserve_stock", reserve_stock, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "charge", charge, NULL, &charge_retry);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(h, "ship", ship, NULL, NULL);
    /* From here on, the dispatcher claims enqueued orders: the backlog at once, new ones when notified. */
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(h);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "orders worker: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
        cairn_close(h);
        return 1;
    }
    if (until_idle && !(pg = connect_db())) {
        cairn_close(h);
        return 1;
    }
    printf("orders worker: serving %s as executor %s (poll interval %d ms)%s\n", WORKFLOW, cairn_executor_id(h),
           poll_ms > 0 ? poll_ms : 1000, until_idle ? " until idle" : "; stop with Ctrl-C");

    for (;;) {
        sig = sigtimedwait(&stop, NULL, &tick);
        if (sig > 0)
            break;
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            perror("orders worker: sigtimedwait");
            exit_code = 1;
            break;
        }
        if (until_idle) {
            long n = count_unfinished(pg);
            if (n == 0)
                break;
            if (n < 0) {
                exit_code = 1;
                break;
            }
        }
    }
    PQfinish(pg);
    /* Workflows still running stop at their next step and resume in the next worker with this executor ID. */
    cairn_close(h);
    if (sig > 0)
        printf("orders worker: stopped by %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    else if (exit_code == 0)
        printf("orders worker: no order left to process; stopped\n");
    return exit_code;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: orders setup\n"
               "       orders worker [--poll-ms MS] [--workers N] [--until-idle]\n"
               "       orders status\n\n"
               "setup   create cairn's schema and the shop's tables, with the trigger that\n"
               "        enqueues a process_order workflow for every order inserted\n"
               "worker  process orders until SIGINT or SIGTERM; --until-idle: until no order\n"
               "        workflow is waiting or running. --poll-ms: how often an idle worker\n"
               "        looks for work it was not woken for (default 1000)\n"
               "status  list the orders with their workflows (a join with cairn.workflows)\n\n"
               "The database is $CAIRN_DATABASE_URL, else libpq's PG* variables.\n");
}

/* A positive int option value, or -1. */
static int positive(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);

    return *s && !*end && v > 0 && v <= 86400000 ? (int)v : -1;
}

int main(int argc, char **argv)
{
    int poll_ms = 0, workers = 0, until_idle = 0;
    const char *cmd = argc > 1 ? argv[1] : "";

    /* Line by line, so the lines of concurrent workflows stay whole and in order. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        int worker_opt = strcmp(cmd, "worker") == 0;

        if (worker_opt && strcmp(argv[i], "--poll-ms") == 0 && i + 1 < argc && (poll_ms = positive(argv[++i])) > 0) {
            continue;
        } else if (worker_opt && strcmp(argv[i], "--workers") == 0 && i + 1 < argc &&
                   (workers = positive(argv[++i])) > 0) {
            continue;
        } else if (worker_opt && strcmp(argv[i], "--until-idle") == 0) {
            until_idle = 1;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(cmd, "setup") == 0)
        return cmd_setup();
    if (strcmp(cmd, "worker") == 0)
        return cmd_worker(poll_ms, workers, until_idle);
    if (strcmp(cmd, "status") == 0)
        return cmd_status();
    usage(stderr);
    return 2;
}
