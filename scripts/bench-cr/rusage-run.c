/* rusage-run OUT CMD [ARG...]: run CMD, wait for it with wait4() and append
 * "<exit status> <wall seconds> <peak RSS KiB> <user s> <sys s>" to OUT; exit with CMD's status.
 * A small static launcher, so that the peak RSS wait4() reports is CMD's own: a child's peak
 * RSS includes what it had before execve (here a fork of this tiny program, not of Python). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rusage-run OUT CMD [ARG...]\n");
        return 2;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) {
        perror("wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double wall = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *f = fopen(argv[1], "a");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fprintf(f, "%d %.6f %ld %.6f %.6f\n", code, wall, ru.ru_maxrss, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    fclose(f);
    return code;
}
