/*
 * `cairn dev`: a throwaway local PostgreSQL cluster for development, tests
 * and benchmarks. DIR/data holds the cluster, DIR itself is the unix socket
 * directory (the server listens on no TCP address) and DIR/postgres.log is
 * the server's log. Server programs are spawned with an argv array, never
 * through a shell (see spawn.c); as root they run as the postgres OS user,
 * because initdb and postgres refuse to run as root.
 */
#define _XOPEN_SOURCE 700 /* nftw() */

#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define DEV_USAGE "cairn dev start|stop|status|url|psql [--dir DIR] [--durable] [--destroy] [-- PSQL-ARGS...]"

/* The socket postgres creates in DIR for port 5432; a unix socket path has at most 107 bytes. */
#define DEV_SOCKET ".s.PGSQL.5432"
#define DEV_SUN_PATH 108

/* The file of settings that every start rewrites, included from postgresql.conf. */
#define DEV_DURABILITY_CONF "cairn_dev.conf"

/* Where Debian and Ubuntu install each major version's server programs. */
#define DEV_DEBIAN_PGLIB "/usr/lib/postgresql"

enum { DEV_NOT_CREATED, DEV_STOPPED, DEV_RUNNING };

typedef struct dev_env {
    char dir[PATH_MAX];    /* absolute, without a trailing slash */
    char data[PATH_MAX];   /* DIR/data */
    char log[PATH_MAX];    /* DIR/postgres.log */
    char bindir[PATH_MAX]; /* the server programs; "" until looked up */
    int as_postgres;       /* running as root: run server programs as the postgres user */
    uid_t pg_uid;
    gid_t pg_gid;
} dev_env;

static void dev_help(void)
{
    printf("usage: %s\n\n"
           "Run a throwaway local PostgreSQL cluster that listens only on a unix socket in DIR.\n\n"
           "  start    create the cluster if needed, start it and print its URL\n"
           "  stop     stop the server (--destroy also removes DIR)\n"
           "  status   print running, stopped or not created; exit 0 only when running\n"
           "  url      print the connection URL\n"
           "  psql     run psql on the cluster with any further arguments\n\n"
           "Options:\n"
           "  --dir DIR    where the cluster lives (default $CAIRN_DEV_DIR, else /tmp/cairn-dev-UID)\n"
           "  --durable    start with fsync and synchronous_commit at their defaults\n"
           "               (without it they are off, for speed)\n"
           "  --destroy    with stop: remove DIR and everything in it\n",
           DEV_USAGE);
}

/* Write "a/b" into out. Returns 0, or -1 (after saying why) when it does not fit. */
static int path_join(char *out, size_t len, const char *a, const char *b)
{
    int n = snprintf(out, len, "%s/%s", a, b);

    if (n < 0 || (size_t)n >= len) {
        cli_warn("path too long: %s/%s", a, b);
        return -1;
    }
    return 0;
}

/*
 * Work out DIR (the --dir value, else $CAIRN_DEV_DIR, else /tmp/cairn-dev-UID)
 * as an absolute path, and the paths inside it.
 */
static int dev_resolve(dev_env *e, const char *given)
{
    char fallback[64];
    char cwd[PATH_MAX];
    const char *dir = given;
    size_t len;

    memset(e, 0, sizeof(*e));
    if (dir == NULL || *dir == '\0')
        dir = getenv("CAIRN_DEV_DIR");
    if (dir == NULL || *dir == '\0') {
        snprintf(fallback, sizeof(fallback), "/tmp/cairn-dev-%lu", (unsigned long)getuid());
        dir = fallback;
    }

    if (dir[0] == '/') {
        len = strlen(dir);
        if (len >= sizeof(e->dir)) {
            cli_warn("directory name too long: %s", dir);
            return -1;
        }
        memcpy(e->dir, dir, len + 1);
    } else {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            cli_warn("cannot read the current directory: %s", strerror(errno));
            return -1;
        }
        if (path_join(e->dir, sizeof(e->dir), strcmp(cwd, "/") == 0 ? "" : cwd, dir) < 0)
            return -1;
    }

    len = strlen(e->dir);
    while (len > 1 && e->dir[len - 1] == '/')
        e->dir[--len] = '\0';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)e->dir[i];

        if (c < 0x20u || c == 0x7Fu) {
            cli_warn("directory name has a control character");
            return -1;
        }
    }
    if (len <= 1) {
        cli_warn("refusing to use / as the dev directory");
        return -1;
    }
    /* The socket lives in DIR, so DIR must leave room for its name. */
    if (len + 1 + strlen(DEV_SOCKET) >= DEV_SUN_PATH) {
        cli_warn("%s is too long for a unix socket directory (at most %zu bytes); choose a shorter --dir",
                 e->dir, (size_t)DEV_SUN_PATH - 2 - strlen(DEV_SOCKET));
        return -1;
    }

    if (path_join(e->data, sizeof(e->data), e->dir, "data") < 0 ||
        path_join(e->log, sizeof(e->log), e->dir, "postgres.log") < 0)
        return -1;
    e->as_postgres = geteuid() == 0;
    return 0;
}

/* As root, find the postgres OS user that will own and run the cluster. */
static int dev_find_user(dev_env *e)
{
    struct passwd *pw;

    if (!e->as_postgres)
        return 0;
    errno = 0;
    pw = getpwnam("postgres");
    if (pw == NULL) {
        cli_warn("running as root, but there is no 'postgres' user to run the server as");
        return -1;
    }
    e->pg_uid = pw->pw_uid;
    e->pg_gid = pw->pw_gid;
    return 0;
}

/* Non-zero when dir holds an executable initdb and pg_ctl. */
static int has_server_programs(const char *dir)
{
    char path[PATH_MAX];

    return snprintf(path, sizeof(path), "%s/initdb", dir) < (int)sizeof(path) && access(path, X_OK) == 0 &&
           snprintf(path, sizeof(path), "%s/pg_ctl", dir) < (int)sizeof(path) && access(path, X_OK) == 0;
}

/*
 * Find the server programs: `pg_config --bindir` when it names a directory
 * that has them, else the highest version under /usr/lib/postgresql.
 */
static int dev_find_bindir(dev_env *e)
{
    char *pg_config[] = {"pg_config", "--bindir", NULL};
    char line[PATH_MAX];
    DIR *d;
    struct dirent *ent;
    long best = -1;

    if (e->bindir[0] != '\0')
        return 0;
    if (cli_capture_line(pg_config, line, sizeof(line)) == 0 && has_server_programs(line)) {
        memcpy(e->bindir, line, strlen(line) + 1);
        return 0;
    }

    d = opendir(DEV_DEBIAN_PGLIB);
    if (d != NULL) {
        while ((ent = readdir(d)) != NULL) {
            char bin[PATH_MAX];
            char *end;
            long version;

            errno = 0;
            version = strtol(ent->d_name, &end, 10);
            if (errno != 0 || end == ent->d_name || *end != '\0' || version <= best)
                continue;
            if (snprintf(bin, sizeof(bin), "%s/%s/bin", DEV_DEBIAN_PGLIB, ent->d_name) >= (int)sizeof(bin))
                continue;
            if (has_server_programs(bin)) {
                best = version;
                memcpy(e->bindir, bin, strlen(bin) + 1);
            }
        }
        closedir(d);
    }
    if (best >= 0)
        return 0;
    cli_warn("cannot find the PostgreSQL server programs (initdb, pg_ctl): "
             "install postgresql-15 or put its pg_config on PATH");
    return -1;
}

/*
 * Run the server program prog (initdb, pg_ctl) from the server's bindir with
 * the NULL-terminated args, as the postgres user when we are root. Returns
 * its exit status, or -1 when it could not be run.
 */
static int dev_run(dev_env *e, const char *prog, const char *const *args, int quiet)
{
    const char *argv[24];
    char path[PATH_MAX];
    size_t n = 0;

    if (dev_find_bindir(e) < 0 || path_join(path, sizeof(path), e->bindir, prog) < 0)
        return -1;
    if (e->as_postgres) {
        if (access("/usr/sbin/runuser", X_OK) == 0)
            argv[n++] = "/usr/sbin/runuser";
        else if (access("/sbin/runuser", X_OK) == 0)
            argv[n++] = "/sbin/runuser";
        else
            argv[n++] = "runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    argv[n++] = path;
    for (; *args != NULL; args++) {
        if (n + 1 >= sizeof(argv) / sizeof(argv[0])) {
            cli_warn("too many arguments for %s", prog);
            return -1;
        }
        argv[n++] = *args;
    }
    argv[n] = NULL;
    return cli_spawn_wait((char *const *)argv, quiet);
}

/* Non-zero when DIR/data holds an initialised cluster. */
static int dev_created(const dev_env *e)
{
    char path[PATH_MAX];
    struct stat st;

    return snprintf(path, sizeof(path), "%s/PG_VERSION", e->data) < (int)sizeof(path) && stat(path, &st) == 0;
}

/* DEV_NOT_CREATED, DEV_STOPPED or DEV_RUNNING, or -1 after saying why it is unknown. */
static int dev_state(dev_env *e)
{
    const char *args[] = {"status", "-D", e->data, NULL};
    int rc;

    if (!dev_created(e))
        return DEV_NOT_CREATED;
    if (dev_find_user(e) < 0)
        return -1;
    rc = dev_run(e, "pg_ctl", args, 1);
    if (rc == 0)
        return DEV_RUNNING;
    if (rc == 3)
        return DEV_STOPPED;
    if (rc >= 0)
        cli_warn("pg_ctl status failed (exit %d) for %s", rc, e->data);
    return -1;
}

/* Create dir and any missing parents (like mkdir -p); parents get mode 0755, dir itself mode. */
static int make_dirs(const char *dir, mode_t mode)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);

    if (len >= sizeof(path))
        return -1;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            cli_warn("cannot create %s: %s", path, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        cli_warn("cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Make sure DIR exists (mode 0700) and belongs to whoever runs the server.
 * A shared directory such as /tmp itself is refused, since it would be
 * handed to the postgres user.
 */
static int dev_prepare_dir(dev_env *e)
{
    struct stat st;

    if (make_dirs(e->dir, 0700) < 0)
        return -1;
    if (stat(e->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_warn("%s is not a directory", e->dir);
        return -1;
    }
    if ((st.st_mode & S_IWOTH) != 0 || (st.st_mode & S_ISVTX) != 0) {
        cli_warn("%s is a shared directory; give the dev cluster a directory of its own", e->dir);
        return -1;
    }
    if (e->as_postgres && (st.st_uid != e->pg_uid || st.st_gid != e->pg_gid)) {
        if (chown(e->dir, e->pg_uid, e->pg_gid) != 0) {
            cli_warn("cannot hand %s to the postgres user: %s", e->dir, strerror(errno));
            return -1;
        }
    }
    if ((st.st_mode & S_IRWXU) != S_IRWXU && chmod(e->dir, st.st_mode | S_IRWXU) != 0) {
        cli_warn("cannot chmod %s: %s", e->dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Write s as the body of a single-quoted postgresql.conf value. */
static void put_conf_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s != '\0'; s++) {
        if (*s == '\'' || *s == '\\')
            fputc(*s, f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/*
 * The settings a new cluster gets once, appended to its postgresql.conf.
 * The durability settings live apart in cairn_dev.conf, included last, so
 * that every start can rewrite them.
 */
static int dev_configure(const dev_env *e)
{
    char path[PATH_MAX];
    FILE *f;
    int bad;

    if (path_join(path, sizeof(path), e->data, "postgresql.conf") < 0)
        return -1;
    f = fopen(path, "a");
    if (f == NULL) {
        cli_warn("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    fputs("\n# cairn dev: a throwaway cluster reached only through the unix socket in its directory.\n"
          "listen_addresses = ''\n"
          "unix_socket_directories = ",
          f);
    put_conf_quoted(f, e->dir);
    fputs("\nport = 5432\n"
          "max_connections = 200\n"
          "shared_buffers = 256MB\n"
          "include_if_exists = '" DEV_DURABILITY_CONF "'\n",
          f);
    bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        cli_warn("cannot write %s", path);
        return -1;
    }
    return 0;
}

/* Create the cluster with initdb and configure it. */
static int dev_initdb(dev_env *e)
{
    const char *args[] = {"-D", e->data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync",
                          NULL};
    int rc = dev_run(e, "initdb", args, 1);

    if (rc != 0) {
        if (rc > 0)
            cli_warn("initdb failed (exit %d) for %s", rc, e->data);
        return -1;
    }
    return dev_configure(e);
}

/* Read a small file whole into buf; "" when it does not exist. */
static void read_small(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

/*
 * Rewrite DIR/data/cairn_dev.conf for the durability asked for. Without
 * --durable, fsync, synchronous_commit and full_page_writes are off: a
 * crash of the machine may lose the cluster, which is fine for a throwaway
 * one. With --durable they keep their defaults. Returns 1 when the file
 * changed, 0 when it already said this, -1 on failure.
 */
static int dev_write_durability(const dev_env *e, int durable)
{
    static const char fast[] = "# Rewritten by every `cairn dev start`: durability off, for speed.\n"
                               "fsync = off\n"
                               "synchronous_commit = off\n"
                               "full_page_writes = off\n";
    static const char safe[] = "# Rewritten by every `cairn dev start`: started with --durable,\n"
                               "# so fsync and synchronous_commit keep their defaults.\n";
    const char *want = durable ? safe : fast;
    char path[PATH_MAX];
    char tmp[PATH_MAX];
    char have[512];
    int fd;
    size_t len = strlen(want);

    if (path_join(path, sizeof(path), e->data, DEV_DURABILITY_CONF) < 0 ||
        path_join(tmp, sizeof(tmp), e->data, DEV_DURABILITY_CONF ".tmp") < 0)
        return -1;
    read_small(path, have, sizeof(have));
    if (strcmp(have, want) == 0)
        return 0;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        cli_warn("cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write(fd, want, len) != (ssize_t)len || (e->as_postgres && fchown(fd, e->pg_uid, e->pg_gid) != 0)) {
        cli_warn("cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        cli_warn("cannot rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 1;
}

/* Print the last lines of the server log to stderr, to explain a failed start. */
static void dev_show_log_tail(const dev_env *e)
{
    char buf[4096];
    FILE *f = fopen(e->log, "r");
    long size;
    size_t n;
    const char *start;
    int lines = 0;

    if (f == NULL)
        return;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > (long)sizeof(buf) - 1)
        fseek(f, size - (long)(sizeof(buf) - 1), SEEK_SET);
    else
        fseek(f, 0, SEEK_SET);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';

    start = buf + n;
    while (start > buf) {
        if (start[-1] == '\n' && start != buf + n && ++lines > 15)
            break;
        start--;
    }
    fprintf(stderr, "cairn: the end of %s:\n%s", e->log, start);
    if (n > 0 && buf[n - 1] != '\n')
        fputc('\n', stderr);
}

/* Write the connection URL of the cluster to f: the socket directory goes in the host parameter. */
static void dev_put_url(const dev_env *e, FILE *f)
{
    static const char hex[] = "0123456789ABCDEF";

    fputs("postgresql:///postgres?host=", f);
    for (const char *p = e->dir; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~' || c == '/') {
            fputc(c, f);
        } else {
            fputc('%', f);
            fputc(hex[c >> 4], f);
            fputc(hex[c & 15], f);
        }
    }
    fputs("&user=postgres", f);
}

static int dev_start(dev_env *e, int durable)
{
    const char *start_args[] = {"-D", e->data, "-l", e->log, "-w", "-t", "60", "start", NULL};
    const char *restart_args[] = {"-D", e->data, "-l", e->log, "-w", "-t", "60", "-m", "fast", "restart", NULL};
    int changed, state, rc;

    if (dev_find_user(e) < 0 || dev_find_bindir(e) < 0 || dev_prepare_dir(e) < 0)
        return CLI_EXIT_FAIL;
    if (!dev_created(e)) {
        if (dev_initdb(e) < 0)
            return CLI_EXIT_FAIL;
        cli_warn("created a cluster in %s", e->data);
    }
    changed = dev_write_durability(e, durable);
    if (changed < 0 || (state = dev_state(e)) < 0)
        return CLI_EXIT_FAIL;

    if (state == DEV_RUNNING && !changed) {
        cli_warn("server already running");
    } else {
        rc = dev_run(e, "pg_ctl", state == DEV_RUNNING ? restart_args : start_args, 1);
        if (rc != 0) {
            if (rc > 0)
                cli_warn("pg_ctl %s failed (exit %d)", state == DEV_RUNNING ? "restart" : "start", rc);
            dev_show_log_tail(e);
            return CLI_EXIT_FAIL;
        }
        cli_warn(state == DEV_RUNNING ? "server restarted (%s)" : "server started (%s)",
                 durable ? "durable" : "fsync off");
    }
    dev_put_url(e, stdout);
    fputc('\n', stdout);
    return CLI_EXIT_OK;
}

/*
 * nftw() callback that removes each entry, children before their directory.
 * An entry that vanished meanwhile (an interrupted initdb cleaning up after
 * itself) is already what we wanted.
 */
static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    if (remove(path) != 0 && errno != ENOENT) {
        cli_warn("cannot remove %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Check that DIR holds nothing besides what `cairn dev` puts there, so that
 * --destroy with a mistyped --dir cannot wipe other files. Returns 0 when
 * it may be removed (or does not exist), else -1 after saying why.
 */
static int dev_may_destroy(const dev_env *e)
{
    static const char *const ours[] = {"data", "postgres.log", DEV_SOCKET, DEV_SOCKET ".lock"};
    DIR *d = opendir(e->dir);
    struct dirent *ent;
    int foreign = 0;

    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        cli_warn("cannot open %s: %s", e->dir, strerror(errno));
        return -1;
    }
    while ((ent = readdir(d)) != NULL && !foreign) {
        int known = strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0;

        for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]) && !known; i++)
            known = strcmp(ent->d_name, ours[i]) == 0;
        if (!known) {
            cli_warn("%s holds %s, which cairn dev did not create; not removing it", e->dir, ent->d_name);
            foreign = 1;
        }
    }
    closedir(d);
    return foreign ? -1 : 0;
}

/* Remove DIR and everything in it; a missing DIR is fine. */
static int dev_destroy(const dev_env *e)
{
    struct stat st;

    if (lstat(e->dir, &st) != 0 && errno == ENOENT)
        return 0;
    if (nftw(e->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return -1;
    cli_warn("removed %s", e->dir);
    return 0;
}

static int dev_stop(dev_env *e, int destroy)
{
    const char *args[] = {"-D", e->data, "-m", "fast", "-w", "-t", "60", "stop", NULL};
    int state, rc;

    if (destroy && dev_may_destroy(e) < 0)
        return CLI_EXIT_FAIL;
    state = dev_state(e);
    if (state < 0)
        return CLI_EXIT_FAIL;
    if (state == DEV_RUNNING) {
        rc = dev_run(e, "pg_ctl", args, 1);
        if (rc != 0) {
            if (rc > 0)
                cli_warn("pg_ctl stop failed (exit %d)", rc);
            return CLI_EXIT_FAIL;
        }
        cli_warn("server stopped");
    } else if (state == DEV_STOPPED) {
        cli_warn("server not running");
    } else {
        cli_warn("no cluster in %s", e->dir);
    }
    if (destroy && dev_destroy(e) < 0)
        return CLI_EXIT_FAIL;
    return CLI_EXIT_OK;
}

static int dev_status(dev_env *e)
{
    static const char *const names[] = {"not created", "stopped", "running"};
    int state = dev_state(e);

    if (state < 0)
        return CLI_EXIT_FAIL;
    puts(names[state]);
    return state == DEV_RUNNING ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static int dev_url(const dev_env *e)
{
    if (!dev_created(e)) {
        cli_warn("no cluster in %s; run `cairn dev start` first", e->dir);
        return CLI_EXIT_FAIL;
    }
    dev_put_url(e, stdout);
    fputc('\n', stdout);
    return CLI_EXIT_OK;
}

/* Replace this process with psql connected to the cluster, passing extra on. */
static int dev_psql(dev_env *e, int nextra, char **extra)
{
    char url[PATH_MAX * 3 + 64];
    char **argv;
    FILE *f;
    int rc;

    if (!dev_created(e)) {
        cli_warn("no cluster in %s; run `cairn dev start` first", e->dir);
        return CLI_EXIT_FAIL;
    }
    f = fmemopen(url, sizeof(url), "w");
    if (f == NULL) {
        cli_warn("fmemopen: %s", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    dev_put_url(e, f);
    fclose(f);

    argv = calloc((size_t)nextra + 3, sizeof(*argv));
    if (argv == NULL) {
        cli_warn("out of memory");
        return CLI_EXIT_FAIL;
    }
    argv[0] = "psql";
    argv[1] = url;
    for (int i = 0; i < nextra; i++)
        argv[i + 2] = extra[i];

    fflush(stdout);
    fflush(stderr);
    execvp(argv[0], argv);
    rc = errno;
    /* No psql on PATH: the server's own bindir usually has one. */
    if (rc == ENOENT && dev_find_bindir(e) == 0) {
        char path[PATH_MAX];

        if (path_join(path, sizeof(path), e->bindir, "psql") == 0) {
            argv[0] = path;
            execv(path, argv);
            rc = errno;
        }
    }
    cli_warn("cannot run psql: %s", strerror(rc));
    free(argv);
    return CLI_EXIT_FAIL;
}

int cli_dev(int argc, char **argv, const cli_global *g)
{
    const char *action = NULL;
    const char *dir = NULL;
    int durable = 0, destroy = 0;
    int i, psql = 0;
    dev_env *e;
    int rc;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int got;

        if (cli_is_help(arg)) {
            dev_help();
            return CLI_EXIT_OK;
        }
        if ((got = cli_opt_value(argc, argv, &i, "--dir", &dir)) != 0) {
            if (got < 0)
                return cli_usage_error(DEV_USAGE, "--dir needs a directory");
            continue;
        }
        if (strcmp(arg, "--durable") == 0) {
            durable = 1;
        } else if (strcmp(arg, "--destroy") == 0) {
            destroy = 1;
        } else if (psql) {
            /* Everything psql-bound from here on, after an optional "--". */
            if (strcmp(arg, "--") == 0)
                i++;
            break;
        } else if (arg[0] == '-') {
            return cli_usage_error(DEV_USAGE, "unknown option %s", arg);
        } else if (action == NULL) {
            action = arg;
            psql = strcmp(action, "psql") == 0;
        } else {
            return cli_usage_error(DEV_USAGE, "unexpected argument %s", arg);
        }
    }

    if (action == NULL)
        return cli_usage_error(DEV_USAGE, "dev needs an action");
    if (strcmp(action, "start") != 0 && strcmp(action, "stop") != 0 && strcmp(action, "status") != 0 &&
        strcmp(action, "url") != 0 && !psql)
        return cli_usage_error(DEV_USAGE, "unknown dev action %s", action);
    if (durable && strcmp(action, "start") != 0)
        return cli_usage_error(DEV_USAGE, "--durable goes with start");
    if (destroy && strcmp(action, "stop") != 0)
        return cli_usage_error(DEV_USAGE, "--destroy goes with stop");

    e = malloc(sizeof(*e));
    if (e == NULL) {
        cli_warn("out of memory");
        return CLI_EXIT_FAIL;
    }
    if (dev_resolve(e, dir) < 0)
        rc = CLI_EXIT_FAIL;
    else if (strcmp(action, "start") == 0)
        rc = dev_start(e, durable);
    else if (strcmp(action, "stop") == 0)
        rc = dev_stop(e, destroy);
    else if (strcmp(action, "status") == 0)
        rc = dev_status(e);
    else if (strcmp(action, "url") == 0)
        rc = dev_url(e);
    else
        rc = dev_psql(e, argc - i, argv + i);
    free(e);
    return rc;
}
