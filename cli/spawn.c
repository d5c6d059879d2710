/*
 * Running other programs (initdb, pg_ctl, pg_config) with fork() and an
 * argv array. Nothing is ever passed through a shell, so no path or
 * argument needs quoting.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Wait for a child and turn its end into an exit status (128 + signal when killed). */
static int wait_child(pid_t pid)
{
    int st;

    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            cli_warn("waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* In a child: point fd at /dev/null. */
static void to_dev_null(int fd)
{
    int null = open("/dev/null", O_WRONLY);

    if (null >= 0) {
        dup2(null, fd);
        close(null);
    }
}

int cli_spawn_wait(char *const argv[], int quiet)
{
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        cli_warn("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (quiet)
            to_dev_null(STDOUT_FILENO);
        if (chdir("/") != 0)
            _exit(127);
        execvp(argv[0], argv);
        fprintf(stderr, "cairn: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return wait_child(pid);
}

int cli_capture_line(char *const argv[], char *out, size_t len)
{
    int fds[2];
    size_t used = 0;
    pid_t pid;

    if (len == 0 || pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[1]);
        to_dev_null(STDERR_FILENO);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        ssize_t n = read(fds[0], out + used, len - 1 - used);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == len - 1) {
            /* Drain the rest so the child never blocks on a full pipe. */
            char sink[256];

            while ((n = read(fds[0], sink, sizeof(sink))) > 0 || (n < 0 && errno == EINTR))
                ;
            break;
        }
    }
    close(fds[0]);
    out[used] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return wait_child(pid) == 0 && out[0] != '\0' ? 0 : -1;
}
