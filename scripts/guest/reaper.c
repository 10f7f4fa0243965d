/*
 * PID 1 of the test guest after switch_root (built static by scripts/guest/build.sh).
 *
 *   reaper PROG [ARGS...]
 *
 * Runs PROG as its child and reaps every process that is reparented to it, so processes
 * that exit in the guest (container inits whose runtime has gone, double-forked daemons) do
 * not stay zombies, as they would under a shell as PID 1: tests check that a killed
 * container's pid is gone. When PROG exits, syncs and powers the machine off.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	sigset_t all, old;
	pid_t child;

	if (argc < 2) {
		fprintf(stderr, "usage: reaper PROG [ARGS...]\n");
		return 2;
	}
	/* PID 1 gets no default signal actions; keep the child's mask clean. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	child = fork();
	if (child < 0) {
		perror("reaper: fork");
	} else if (child == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		setsid();
		execv(argv[1], argv + 1);
		perror("reaper: exec");
		_exit(127);
	} else {
		for (;;) {
			int status;
			pid_t p = wait(&status);
			if (p == child)
				break;
			if (p < 0 && errno == ECHILD)
				break;
		}
	}
	sync();
	reboot(RB_POWER_OFF);
	perror("reaper: reboot");
	for (;;)
		pause();
}
