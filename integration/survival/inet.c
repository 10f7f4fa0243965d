/* Step 14 (part): TCP and UDP sockets that are not connections survive checkpoint/restore
 * (zdtm socket_listen, socket_listen6, socket_udp, sock_opts00): a listening TCP socket on an
 * ephemeral port (backlog, SO_REUSEADDR, O_NONBLOCK), an IPv6-only listener, an unbound and a
 * bound-but-idle TCP socket, a bound UDP socket with SO_BROADCAST and a UDP socket connected to
 * it. Addresses, ports and options must be the same after the restore and, when the container
 * has a loopback interface up, new connections and datagrams must get through. */
#include "survival.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define NAME "inet"

enum {
    FD_LISTEN = 10,
    FD_LISTEN6 = 11,
    FD_TCP_UNBOUND = 12,
    FD_TCP_BOUND = 13,
    FD_UDP = 14,
    FD_UDP_CONN = 15,
};

#define die(what) sv_die(NAME, what)
#define place(fd, want) sv_place(NAME, fd, want, "socket")

static int opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    getsockopt(fd, level, name, &v, &l);
    return v;
}

static void setopt(int fd, int level, int name, int v)
{
    if (setsockopt(fd, level, name, &v, sizeof v) < 0)
        die("setsockopt");
}

static void name_of(int fd, char *out, size_t size)
{
    struct sockaddr_storage st;
    socklen_t l = sizeof st;
    char ip[64] = "?";
    int port = -1;
    if (getsockname(fd, (struct sockaddr *)&st, &l) == 0) {
        if (st.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&st;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
            port = ntohs(a->sin_port);
        } else if (st.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&st;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(out, size, "%s:%d", ip, port);
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    return ntohs(a.sin_port);
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    struct sockaddr_in any = {.sin_family = AF_INET};
    place(socket(AF_INET, SOCK_STREAM, 0), FD_LISTEN);
    setopt(FD_LISTEN, SOL_SOCKET, SO_REUSEADDR, 1);
    if (bind(FD_LISTEN, (struct sockaddr *)&any, sizeof any) < 0 || listen(FD_LISTEN, 5) < 0)
        die("listen");
    fcntl(FD_LISTEN, F_SETFL, O_NONBLOCK);
    int have6 = 0;
    int s6 = socket(AF_INET6, SOCK_STREAM, 0);
    if (s6 >= 0) {
        place(s6, FD_LISTEN6);
        setopt(FD_LISTEN6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
        have6 = bind(FD_LISTEN6, (struct sockaddr *)&any6, sizeof any6) == 0 && listen(FD_LISTEN6, 3) == 0;
        if (!have6)
            close(FD_LISTEN6);
    }
    place(socket(AF_INET, SOCK_STREAM, 0), FD_TCP_UNBOUND);
    setopt(FD_TCP_UNBOUND, IPPROTO_TCP, TCP_NODELAY, 1);
    place(socket(AF_INET, SOCK_STREAM, 0), FD_TCP_BOUND);
    if (bind(FD_TCP_BOUND, (struct sockaddr *)&any, sizeof any) < 0)
        die("bind tcp");
    place(socket(AF_INET, SOCK_DGRAM, 0), FD_UDP);
    setopt(FD_UDP, SOL_SOCKET, SO_BROADCAST, 1);
    if (bind(FD_UDP, (struct sockaddr *)&any, sizeof any) < 0)
        die("bind udp");
    place(socket(AF_INET, SOCK_DGRAM, 0), FD_UDP_CONN);
    struct sockaddr_in to = loopback(port_of(FD_UDP));
    int lo = connect(FD_UDP_CONN, (struct sockaddr *)&to, sizeof to) == 0;

    char before[6][128] = {{0}}, after[6][128] = {{0}};
    for (int i = 0; i < 6; i++)
        name_of(FD_LISTEN + i, before[i], sizeof before[i]);
    sv_log("loopback %s, IPv6 %s", lo ? "up" : "down", have6 ? "yes" : "no");
    sv_ready(NAME);
    sv_wait_go();

    for (int i = 0; i < 6; i++) {
        name_of(FD_LISTEN + i, after[i], sizeof after[i]);
        if (i == 1 && !have6)
            continue;
        SV_CHECK(!strcmp(before[i], after[i]), "fd %d: %s, was %s", FD_LISTEN + i, after[i], before[i]);
    }
    SV_CHECK(opt(FD_LISTEN, SOL_SOCKET, SO_ACCEPTCONN) == 1, "the listener does not listen");
    SV_CHECK(opt(FD_LISTEN, SOL_SOCKET, SO_REUSEADDR) == 1, "SO_REUSEADDR lost");
    SV_CHECK(fcntl(FD_LISTEN, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
    SV_CHECK(accept(FD_LISTEN, NULL, NULL) < 0 && errno == EAGAIN, "a connection was waiting");
    SV_CHECK(opt(FD_TCP_BOUND, SOL_SOCKET, SO_ACCEPTCONN) == 0, "the bound TCP socket listens");
    SV_CHECK(opt(FD_TCP_BOUND, SOL_SOCKET, SO_REUSEADDR) == 0, "SO_REUSEADDR appeared");
    SV_CHECK(opt(FD_TCP_UNBOUND, IPPROTO_TCP, TCP_NODELAY) == 1, "TCP_NODELAY lost");
    SV_CHECK(opt(FD_UDP, SOL_SOCKET, SO_BROADCAST) == 1, "SO_BROADCAST lost");
    SV_CHECK(opt(FD_UDP, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM, "UDP type");
    if (have6) {
        SV_CHECK(opt(FD_LISTEN6, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "IPV6_V6ONLY lost");
        SV_CHECK(opt(FD_LISTEN6, SOL_SOCKET, SO_ACCEPTCONN) == 1, "the IPv6 listener does not listen");
    }
    if (lo) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = loopback(port_of(FD_LISTEN));
        SV_CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "connect to the listener: %s", strerror(errno));
        int acc = -1;
        for (int tries = 0; tries < 100 && acc < 0; tries++) {
            acc = accept(FD_LISTEN, NULL, NULL);
            if (acc < 0)
                usleep(10000);
        }
        SV_CHECK(acc >= 0 && write(c, "x", 1) == 1 && read(acc, &a, 1) == 1, "accepted connection");
        char b[8];
        SV_CHECK(send(FD_UDP_CONN, "dg", 2, 0) == 2, "send on the connected UDP socket: %s", strerror(errno));
        int got = -1;
        for (int tries = 0; tries < 100 && got < 0; tries++) {
            got = recv(FD_UDP, b, sizeof b, MSG_DONTWAIT);
            if (got < 0)
                usleep(10000);
        }
        SV_CHECK(got == 2, "the datagram did not arrive");
    }
    return sv_finish(NAME);
}
