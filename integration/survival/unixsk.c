/* Step 13 (part): unix sockets survive checkpoint/restore (zdtm sockets00, sockets_spair,
 * socket_queues, sk-unix-rel): a stream pair between parent and child with unread data both
 * ways, a datagram pair with three queued datagrams, a seqpacket pair shut down for writing
 * with a message left, a pair whose other end was closed (data, then EOF), a listening socket
 * bound to a path (new clients connect and are accepted), a listening abstract socket, a bound
 * datagram socket, an unbound one, SO_PASSCRED and O_NONBLOCK; connections made with connect +
 * accept, with data queued both ways and their names (one whose listener was closed before the
 * checkpoint), a datagram socket connected to the bound one, and a pipe end in flight (sent
 * with SCM_RIGHTS, not received yet) that comes back as the same open file description. */
#include "survival.h"

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#define NAME "unixsk"

enum {
    FD_TOCHILD = 10, /* parent's end of the stream pair with the child */
    FD_DG_A = 11,
    FD_DG_B = 12,
    FD_SP_A = 13, /* seqpacket: A shut down for writing after sending one message */
    FD_SP_B = 14,
    FD_ORPHAN = 15, /* its peer is closed */
    FD_LISTEN = 16,
    FD_ABSTRACT = 17,
    FD_DGRAM_BOUND = 18,
    FD_UNBOUND = 19,
    FD_CLIENT = 20, /* connected to FD_LISTEN, accepted as FD_ACCEPTED */
    FD_ACCEPTED = 21,
    FD_CLIENT2 = 22, /* connected to a listener closed since, accepted as FD_ACCEPTED2 */
    FD_ACCEPTED2 = 23,
    FD_DG_CONN = 24, /* datagram socket connected to FD_DGRAM_BOUND */
    FD_PASS_A = 25,  /* datagram pair: A sent "x" with FD_PIPE_R in flight, then "y" */
    FD_PASS_B = 26,
    FD_PIPE_R = 27,
    FD_PIPE_W = 28,
};

static int send_fd(int sock, const char *data, int fd)
{
    char c[CMSG_SPACE(sizeof(int))];
    memset(c, 0, sizeof c);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = strlen(data)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    return sendmsg(sock, &m, 0);
}

/* Receive one message; its data into buf, the descriptor in flight (or -1) returned. */
static int recv_fd(int sock, char *buf, size_t size, ssize_t *n)
{
    char c[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
    *n = recvmsg(sock, &m, MSG_DONTWAIT);
    struct cmsghdr *h = *n >= 0 ? CMSG_FIRSTHDR(&m) : NULL;
    int fd = -1;
    if (h && h->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(h), sizeof fd);
    return fd;
}

#define die(what) sv_die(NAME, what)
#define place(fd, want) sv_place(NAME, fd, want, "create")

static socklen_t addr_of(struct sockaddr_un *a, const char *path, int abstract)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (abstract) {
        snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "%s", path);
        return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
    }
    snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
    return sizeof *a;
}

static int sock_type(int fd)
{
    int t = -1;
    socklen_t l = sizeof t;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l);
    return t;
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    char path[200], dpath[200], abstract[64];
    snprintf(path, sizeof path, "%s/unixsk.sock", sv_out);
    snprintf(dpath, sizeof dpath, "%s/unixsk.dgram", sv_out);
    snprintf(abstract, sizeof abstract, "amber-sv-unixsk-%d", (int)getpid());
    unlink(path);
    unlink(dpath);
    int sv[2];
    /* Datagram pair: three messages queued for B. */
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        die("socketpair dgram");
    place(sv[0], FD_DG_A);
    place(sv[1], FD_DG_B);
    if (send(FD_DG_A, "one", 3, 0) != 3 || send(FD_DG_A, "second", 6, 0) != 6 || send(FD_DG_A, "3", 1, 0) != 1)
        die("dgram send");
    /* Seqpacket pair: one message for B, then A shut down for writing. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0)
        die("socketpair seqpacket");
    place(sv[0], FD_SP_A);
    place(sv[1], FD_SP_B);
    if (send(FD_SP_A, "packet", 6, 0) != 6 || shutdown(FD_SP_A, SHUT_WR) < 0)
        die("seqpacket");
    /* A pair whose other end is gone, data left. */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        die("socketpair orphan");
    if (write(sv[1], "orphan", 6) != 6)
        die("orphan write");
    close(sv[1]);
    place(sv[0], FD_ORPHAN);
    /* Listeners and bound sockets. */
    struct sockaddr_un a;
    socklen_t al;
    place(socket(AF_UNIX, SOCK_STREAM, 0), FD_LISTEN);
    al = addr_of(&a, path, 0);
    if (bind(FD_LISTEN, (struct sockaddr *)&a, al) < 0 || listen(FD_LISTEN, 7) < 0)
        die("listen path");
    fcntl(FD_LISTEN, F_SETFL, O_NONBLOCK);
    place(socket(AF_UNIX, SOCK_SEQPACKET, 0), FD_ABSTRACT);
    al = addr_of(&a, abstract, 1);
    if (bind(FD_ABSTRACT, (struct sockaddr *)&a, al) < 0 || listen(FD_ABSTRACT, 3) < 0)
        die("listen abstract");
    place(socket(AF_UNIX, SOCK_DGRAM, 0), FD_DGRAM_BOUND);
    al = addr_of(&a, dpath, 0);
    if (bind(FD_DGRAM_BOUND, (struct sockaddr *)&a, al) < 0)
        die("bind dgram");
    int one = 1;
    setsockopt(FD_DGRAM_BOUND, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    place(socket(AF_UNIX, SOCK_DGRAM, 0), FD_UNBOUND);
    /* A pipe read end in flight over a datagram pair (the pipe holds data). */
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        die("socketpair pass");
    place(sv[0], FD_PASS_A);
    place(sv[1], FD_PASS_B);
    int pp[2];
    if (pipe(pp) < 0)
        die("pipe");
    place(pp[0], FD_PIPE_R);
    place(pp[1], FD_PIPE_W);
    if (write(FD_PIPE_W, "through", 7) != 7 || send_fd(FD_PASS_A, "x", FD_PIPE_R) != 1 || send(FD_PASS_A, "y", 1, 0) != 1)
        die("passing a descriptor");
    /* Connections made with connect + accept; data both ways. */
    place(socket(AF_UNIX, SOCK_STREAM, 0), FD_CLIENT);
    al = addr_of(&a, path, 0);
    if (connect(FD_CLIENT, (struct sockaddr *)&a, al) < 0)
        die("connect");
    place(accept(FD_LISTEN, NULL, NULL), FD_ACCEPTED);
    if (write(FD_CLIENT, "c2s", 3) != 3 || write(FD_ACCEPTED, "s2c", 3) != 3)
        die("connection data");
    char path2[200];
    snprintf(path2, sizeof path2, "%s/unixsk.gone", sv_out);
    unlink(path2);
    int gone = socket(AF_UNIX, SOCK_STREAM, 0);
    al = addr_of(&a, path2, 0);
    if (bind(gone, (struct sockaddr *)&a, al) < 0 || listen(gone, 1) < 0)
        die("listen gone");
    place(socket(AF_UNIX, SOCK_STREAM, 0), FD_CLIENT2);
    if (connect(FD_CLIENT2, (struct sockaddr *)&a, al) < 0)
        die("connect gone");
    place(accept(gone, NULL, NULL), FD_ACCEPTED2);
    close(gone);
    if (write(FD_CLIENT2, "late", 4) != 4)
        die("connection 2 data");
    place(socket(AF_UNIX, SOCK_DGRAM, 0), FD_DG_CONN);
    al = addr_of(&a, dpath, 0);
    if (connect(FD_DG_CONN, (struct sockaddr *)&a, al) < 0)
        die("connect dgram");
    /* The child and its stream pair. */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        die("socketpair stream");
    sigset_t old = sv_turn_arm();
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(sv[0]);
        if (write(sv[1], "to-parent", 9) != 9)
            _exit(2);
        kill(getppid(), SIGUSR1);
        sv_turn_wait();
        char b[32] = "";
        if (recv(sv[1], b, sizeof b, MSG_DONTWAIT) != 8 || memcmp(b, "to-child", 8))
            _exit(3);
        if (write(sv[1], "bye", 3) != 3)
            _exit(4);
        _exit(0);
    }
    close(sv[1]);
    place(sv[0], FD_TOCHILD);
    if (write(FD_TOCHILD, "to-child", 8) != 8)
        die("write to child");
    sv_turn_wait();
    sigprocmask(SIG_SETMASK, &old, NULL);

    sv_ready(NAME);
    sv_wait_go();

    char b[64];
    ssize_t n;
    /* Datagrams, in order, with their boundaries. */
    const char *want[] = {"one", "second", "3"};
    for (int i = 0; i < 3; i++) {
        n = recv(FD_DG_B, b, sizeof b, MSG_DONTWAIT);
        SV_CHECK(n == (ssize_t)strlen(want[i]) && !memcmp(b, want[i], n), "datagram %d: %.*s", i, (int)(n > 0 ? n : 0),
                 b);
    }
    SV_CHECK(recv(FD_DG_B, b, sizeof b, MSG_DONTWAIT) < 0 && errno == EAGAIN, "a fourth datagram");
    SV_CHECK(send(FD_DG_B, "back", 4, 0) == 4 && recv(FD_DG_A, b, sizeof b, 0) == 4, "dgram pair round trip");
    /* Seqpacket: the message, then EOF (the writer is shut down). */
    n = recv(FD_SP_B, b, sizeof b, MSG_DONTWAIT);
    SV_CHECK(n == 6 && !memcmp(b, "packet", 6), "seqpacket message %.*s", (int)(n > 0 ? n : 0), b);
    SV_CHECK(recv(FD_SP_B, b, sizeof b, MSG_DONTWAIT) == 0, "seqpacket: no EOF after the shut down writer");
    SV_CHECK(send(FD_SP_A, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "seqpacket: A can write again");
    SV_CHECK(sock_type(FD_SP_A) == SOCK_SEQPACKET, "seqpacket type %d", sock_type(FD_SP_A));
    /* The orphan: data, then EOF. */
    n = recv(FD_ORPHAN, b, sizeof b, MSG_DONTWAIT);
    SV_CHECK(n == 6 && !memcmp(b, "orphan", 6), "orphan data %.*s", (int)(n > 0 ? n : 0), b);
    SV_CHECK(read(FD_ORPHAN, b, sizeof b) == 0, "orphan: no EOF");
    /* The path listener: non-blocking, accepts a new client. */
    SV_CHECK(fcntl(FD_LISTEN, F_GETFL) & O_NONBLOCK, "listener lost O_NONBLOCK");
    SV_CHECK(accept(FD_LISTEN, NULL, NULL) < 0 && errno == EAGAIN, "a connection was pending");
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    al = addr_of(&a, path, 0);
    SV_CHECK(connect(c, (struct sockaddr *)&a, al) == 0, "connect %s: %s", path, strerror(errno));
    int acc = accept(FD_LISTEN, NULL, NULL);
    SV_CHECK(acc >= 0, "accept: %s", strerror(errno));
    SV_CHECK(write(c, "hi", 2) == 2 && read(acc, b, 2) == 2 && !memcmp(b, "hi", 2), "accepted connection");
    struct sockaddr_un got;
    socklen_t gl = sizeof got;
    SV_CHECK(getsockname(FD_LISTEN, (struct sockaddr *)&got, &gl) == 0 && !strcmp(got.sun_path, path),
             "listener name %s", got.sun_path);
    /* The abstract listener. */
    int c2 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    al = addr_of(&a, abstract, 1);
    SV_CHECK(connect(c2, (struct sockaddr *)&a, al) == 0, "connect @%s: %s", abstract, strerror(errno));
    SV_CHECK(accept(FD_ABSTRACT, NULL, NULL) >= 0, "accept abstract: %s", strerror(errno));
    /* The bound datagram socket receives, with SO_PASSCRED. */
    int c3 = socket(AF_UNIX, SOCK_DGRAM, 0);
    al = addr_of(&a, dpath, 0);
    SV_CHECK(sendto(c3, "dg", 2, 0, (struct sockaddr *)&a, al) == 2, "sendto %s: %s", dpath, strerror(errno));
    SV_CHECK(recv(FD_DGRAM_BOUND, b, sizeof b, MSG_DONTWAIT) == 2, "bound dgram receive");
    int pc = 0;
    socklen_t pl = sizeof pc;
    getsockopt(FD_DGRAM_BOUND, SOL_SOCKET, SO_PASSCRED, &pc, &pl);
    SV_CHECK(pc == 1, "SO_PASSCRED lost");
    /* The unbound one. */
    gl = sizeof got;
    SV_CHECK(sock_type(FD_UNBOUND) == SOCK_DGRAM && getsockname(FD_UNBOUND, (struct sockaddr *)&got, &gl) == 0 &&
                 gl == sizeof(sa_family_t),
             "unbound socket: type %d, name length %u", sock_type(FD_UNBOUND), gl);
    /* The connections: queued data, names on both ends, still connected. */
    n = recv(FD_ACCEPTED, b, sizeof b, MSG_DONTWAIT);
    SV_CHECK(n == 3 && !memcmp(b, "c2s", 3), "server end got %.*s", (int)(n > 0 ? n : 0), b);
    n = recv(FD_CLIENT, b, sizeof b, MSG_DONTWAIT);
    SV_CHECK(n == 3 && !memcmp(b, "s2c", 3), "client end got %.*s", (int)(n > 0 ? n : 0), b);
    gl = sizeof got;
    SV_CHECK(getpeername(FD_CLIENT, (struct sockaddr *)&got, &gl) == 0 && !strcmp(got.sun_path, path),
             "client's peer name %s", got.sun_path);
    gl = sizeof got;
    SV_CHECK(getsockname(FD_ACCEPTED, (struct sockaddr *)&got, &gl) == 0 && !strcmp(got.sun_path, path),
             "accepted socket's name %s", got.sun_path);
    SV_CHECK(write(FD_CLIENT, "z", 1) == 1 && recv(FD_ACCEPTED, b, 1, MSG_DONTWAIT) == 1, "connection round trip");
    n = recv(FD_ACCEPTED2, b, sizeof b, MSG_DONTWAIT);
    SV_CHECK(n == 4 && !memcmp(b, "late", 4), "connection to a closed listener: %.*s", (int)(n > 0 ? n : 0), b);
    gl = sizeof got;
    SV_CHECK(getsockname(FD_ACCEPTED2, (struct sockaddr *)&got, &gl) == 0 && !strcmp(got.sun_path, path2),
             "name of the socket accepted by a closed listener: %s", got.sun_path);
    SV_CHECK(send(FD_DG_CONN, "cd", 2, 0) == 2 && recv(FD_DGRAM_BOUND, b, sizeof b, MSG_DONTWAIT) == 2,
             "connected datagram socket: %s", strerror(errno));
    gl = sizeof got;
    SV_CHECK(getpeername(FD_DG_CONN, (struct sockaddr *)&got, &gl) == 0 && !strcmp(got.sun_path, dpath),
             "datagram peer name %s", got.sun_path);
    /* The descriptor in flight: the first message carries it, the same description as ours. */
    int got_fd = recv_fd(FD_PASS_B, b, sizeof b, &n);
    SV_CHECK(n == 1 && b[0] == 'x' && got_fd >= 0, "message with a descriptor: %zd bytes, fd %d", n, got_fd);
    if (got_fd >= 0) {
        SV_CHECK(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, got_fd, FD_PIPE_R) == 0,
                 "the descriptor in flight is not our pipe's read end");
        n = read(got_fd, b, sizeof b);
        SV_CHECK(n == 7 && !memcmp(b, "through", 7), "pipe data through the passed end: %.*s", (int)(n > 0 ? n : 0), b);
    }
    int none = recv_fd(FD_PASS_B, b, sizeof b, &n);
    SV_CHECK(n == 1 && b[0] == 'y' && none < 0, "the message after it: %zd bytes, fd %d", n, none);
    /* The child's pair: data both ways, then EOF when it exits. */
    n = recv(FD_TOCHILD, b, 9, MSG_DONTWAIT);
    SV_CHECK(n == 9 && !memcmp(b, "to-parent", 9), "from the child: %.*s", (int)(n > 0 ? n : 0), b);
    kill(child, SIGUSR1);
    size_t got_n = 0;
    for (;;) {
        struct pollfd p = {.fd = FD_TOCHILD, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0) {
            SV_CHECK(0, "no EOF from the child's socket after 5 s: an end leaked");
            break;
        }
        n = read(FD_TOCHILD, b + got_n, sizeof b - 1 - got_n);
        if (n <= 0)
            break;
        got_n += n;
    }
    SV_CHECK(got_n == 3 && !memcmp(b, "bye", 3), "child's goodbye: %.*s", (int)got_n, b);
    int status = -1;
    SV_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && !WEXITSTATUS(status),
             "child status %#x (3: it did not get to-child)", status);
    unlink(path);
    unlink(dpath);
    unlink(path2);
    return sv_finish(NAME);
}
