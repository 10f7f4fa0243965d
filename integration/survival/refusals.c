/* What the engine does not restore yet must be refused at checkpoint, naming the process and
 * the object, and leave the container running untouched. argv[2] picks the object: "socket"
 * (a netlink socket at fd 10), "unixconn" (a connection waiting to be accepted on a listener), "sysvshm" (an attached SysV segment), "lease" (a read lease on fd 10),
 * "procfile" (/proc/self/stat at fd 10), "packet" (a packet-mode pipe with data), "async" (a pipe with O_ASYNC at fd 10),
 * "clonefiles" (a child sharing the descriptor table, clone(CLONE_FILES)). After SIGUSR2
 * (sent once the checkpoint failed) the program checks the object still works. */
#include "survival.h"

#include <sched.h>
#include <sys/file.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>

#define NAME "refusals"

#define die(what) sv_die(NAME, what)

static char child_stack[65536] __attribute__((aligned(16)));

static int sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

static void at10(int fd)
{
    sv_place(NAME, fd, 10, "creating the object");
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    const char *kind = argc > 2 ? argv[2] : "socket";
    int sp[2] = {-1, -1};
    char *shm = NULL;
    char path[4096];
    if (!strcmp(kind, "socket")) {
        at10(socket(AF_NETLINK, SOCK_RAW, 0));
    } else if (!strcmp(kind, "unixconn")) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s/refusals.sock", sv_out);
        unlink(a.sun_path);
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0)
            die("listen");
        sp[1] = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(sp[1], (struct sockaddr *)&a, sizeof a) < 0)
            die("connect");
        at10(l);
    } else if (!strcmp(kind, "sysvshm")) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id < 0 || (shm = shmat(id, NULL, 0)) == (void *)-1)
            die("shmget/shmat");
        shmctl(id, IPC_RMID, NULL);
        strcpy(shm, "sysv");
    } else if (!strcmp(kind, "lease")) {
        snprintf(path, sizeof path, "%s/refusals.lease", sv_out);
        close(open(path, O_RDWR | O_CREAT, 0644));
        at10(open(path, O_RDONLY));
        if (fcntl(10, F_SETLEASE, F_RDLCK) < 0)
            die("F_SETLEASE");
    } else if (!strcmp(kind, "procfile")) {
        at10(open("/proc/self/stat", O_RDONLY));
    } else if (!strcmp(kind, "packet")) {
        if (pipe2(sp, O_DIRECT) < 0 || write(sp[1], "ab", 2) != 2 || write(sp[1], "c", 1) != 1)
            die("packet pipe");
        at10(sp[0]);
    } else if (!strcmp(kind, "async")) {
        if (pipe(sp) < 0)
            die("pipe");
        at10(sp[0]);
        if (fcntl(10, F_SETFL, O_ASYNC) < 0)
            die("O_ASYNC");
    } else if (!strcmp(kind, "clonefiles")) {
        if (clone(sleeper, child_stack + sizeof child_stack, CLONE_FILES | SIGCHLD, NULL) < 0)
            die("clone");
    } else {
        sv_fail(NAME, "unknown kind %s", kind);
        return 1;
    }
    sv_ready(NAME);
    sv_wait_go();
    char buf[16] = "";
    if (!strcmp(kind, "socket")) {
        int t = 0;
        socklen_t l = sizeof t;
        SV_CHECK(getsockopt(10, SOL_SOCKET, SO_TYPE, &t, &l) == 0 && t == SOCK_RAW, "netlink socket");
    } else if (!strcmp(kind, "unixconn")) {
        int c = accept(10, NULL, NULL);
        SV_CHECK(c >= 0 && write(sp[1], "x", 1) == 1 && read(c, buf, 1) == 1 && buf[0] == 'x', "unix connection");
    } else if (!strcmp(kind, "sysvshm")) {
        SV_CHECK(!strcmp(shm, "sysv"), "sysv segment");
    } else if (!strcmp(kind, "procfile")) {
        SV_CHECK(pread(10, buf, 8, 0) > 0, "/proc/self/stat");
    } else if (!strcmp(kind, "packet")) {
        SV_CHECK(read(10, buf, 16) == 2 && read(10, buf, 16) == 1, "packets");
    } else if (!strcmp(kind, "async")) {
        SV_CHECK(fcntl(10, F_GETFL) & O_ASYNC, "O_ASYNC");
    } else if (!strcmp(kind, "clonefiles")) {
        SV_CHECK(1, "alive");
    } else {
        SV_CHECK(fcntl(10, F_GETLEASE) == F_RDLCK, "the lease is gone");
    }
    return sv_finish(NAME);
}
