/* Step 9 (part): event descriptors survive checkpoint/restore (zdtm eventfs00, signalfd00,
 * timerfd, epoll, epoll01): an eventfd with a count (semaphore, non-blocking), a signalfd's
 * mask, timerfds (periodic, long, disarmed, with unread expirations), and an epoll instance
 * shared with a child, with registrations made by the parent (eventfd edge-triggered, a pipe,
 * the periodic timerfd) and one made by the child through a descriptor only the child has.
 * After the restore the registrations must still be known under their descriptor numbers
 * (EPOLL_CTL_MOD/DEL succeed) and report events with their data. An inotify instance watches
 * the output dir and a file in it: the watches come back with their descriptors and masks. */
#include "survival.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <stdint.h>

#define NAME "events"

enum {
    FD_EVENT = 10,
    FD_SIG = 11,
    FD_TPERIOD = 12,
    FD_TLONG = 13,
    FD_TOFF = 14,
    FD_TFIRED = 15,
    FD_EPOLL = 16,
    FD_PIPE_R = 17,
    FD_PIPE_W = 18,
    FD_INOTIFY = 19,
    FD_CHILD_EV = 30, /* the child's eventfd, registered by the child */
};

#define die(what) sv_die(NAME, what)
#define place(fd, want) sv_place(NAME, fd, want, "create")

static void add(int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(FD_EPOLL, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    place(eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK), FD_EVENT);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGURG);
    sigaddset(&sigs, SIGRTMIN + 3);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    place(signalfd(-1, &sigs, SFD_NONBLOCK), FD_SIG);
    place(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), FD_TPERIOD);
    struct itimerspec period = {{0, 50 * 1000000}, {0, 100 * 1000000}};
    timerfd_settime(FD_TPERIOD, 0, &period, NULL);
    place(timerfd_create(CLOCK_REALTIME, 0), FD_TLONG);
    struct itimerspec longer = {{0, 0}, {1000, 0}};
    timerfd_settime(FD_TLONG, 0, &longer, NULL);
    place(timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK), FD_TOFF);
    /* A one-shot timer that fired and was not read: disarmed, one expiration pending. */
    place(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), FD_TFIRED);
    struct itimerspec once = {{0, 0}, {0, 1000000}};
    timerfd_settime(FD_TFIRED, 0, &once, NULL);
    struct pollfd pf = {.fd = FD_TFIRED, .events = POLLIN};
    if (poll(&pf, 1, 1000) != 1)
        die("one-shot timer");
    /* inotify: the output dir (creations) and a file in it (one modification). */
    char watched[300], created[300];
    snprintf(watched, sizeof watched, "%s/events.watched", sv_out);
    snprintf(created, sizeof created, "%s/events.created", sv_out);
    unlink(created);
    close(open(watched, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    place(inotify_init1(IN_NONBLOCK), FD_INOTIFY);
    int wd_dir = inotify_add_watch(FD_INOTIFY, sv_out, IN_CREATE);
    int wd_file = inotify_add_watch(FD_INOTIFY, watched, IN_MODIFY | IN_ONESHOT);
    inotify_rm_watch(FD_INOTIFY, inotify_add_watch(FD_INOTIFY, "/", IN_ACCESS)); /* a gap in the wds */
    int wd_root = inotify_add_watch(FD_INOTIFY, "/", IN_OPEN);
    if (wd_dir < 0 || wd_file < 0 || wd_root < 0)
        die("inotify_add_watch");
    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    place(p[0], FD_PIPE_R);
    place(p[1], FD_PIPE_W);
    place(epoll_create1(0), FD_EPOLL);
    add(FD_EVENT, EPOLLIN | EPOLLET, 0x1234);
    add(FD_PIPE_R, EPOLLIN, 77);
    add(FD_TPERIOD, EPOLLIN, 88);

    sigset_t old = sv_turn_arm();
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        place(eventfd(0, EFD_NONBLOCK), FD_CHILD_EV);
        add(FD_CHILD_EV, EPOLLIN, 0xc41d);
        kill(getppid(), SIGUSR1);
        sv_turn_wait();
        uint64_t one = 1;
        if (write(FD_CHILD_EV, &one, 8) != 8)
            _exit(3);
        /* Keep the eventfd (and so the registration) alive until the parent has seen it. */
        for (;;)
            pause();
    }
    sv_turn_wait();
    sigprocmask(SIG_SETMASK, &old, NULL);

    int flags_event = fcntl(FD_EVENT, F_GETFL), flags_sig = fcntl(FD_SIG, F_GETFL);
    int flags_long = fcntl(FD_TLONG, F_GETFL);
    sv_ready(NAME);
    sv_wait_go();

    /* eventfd: semaphore reads of 1, five of them, then EAGAIN. */
    SV_CHECK(fcntl(FD_EVENT, F_GETFL) == flags_event, "eventfd flags %#o, were %#o", fcntl(FD_EVENT, F_GETFL),
             flags_event);
    /* epoll first: the eventfd is readable (count 5) and registered edge-triggered. */
    struct epoll_event evs[8];
    int n = epoll_wait(FD_EPOLL, evs, 8, 1000);
    int saw_event = 0, saw_timer = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == 0x1234)
            saw_event = 1;
        if (evs[i].data.u64 == 88)
            saw_timer = 1;
        SV_CHECK(evs[i].data.u64 != 77, "the empty pipe reported readable");
    }
    SV_CHECK(saw_event, "epoll: no event from the eventfd (%d events)", n);
    int reads = 0;
    uint64_t v;
    while (read(FD_EVENT, &v, 8) == 8) {
        SV_CHECK(v == 1, "semaphore read %lu", (unsigned long)v);
        reads++;
    }
    SV_CHECK(reads == 5 && errno == EAGAIN, "eventfd gave %d reads, not 5 (errno %d)", reads, errno);
    /* The registrations are known under their numbers. */
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x5678};
    SV_CHECK(epoll_ctl(FD_EPOLL, EPOLL_CTL_MOD, FD_EVENT, &ev) == 0, "EPOLL_CTL_MOD eventfd: %s", strerror(errno));
    SV_CHECK(epoll_ctl(FD_EPOLL, EPOLL_CTL_DEL, FD_PIPE_R, NULL) == 0, "EPOLL_CTL_DEL pipe: %s", strerror(errno));
    /* signalfd: the mask, and a signal raised now arrives through it. */
    SV_CHECK(fcntl(FD_SIG, F_GETFL) == flags_sig, "signalfd flags");
    raise(SIGRTMIN + 3);
    struct signalfd_siginfo si;
    SV_CHECK(read(FD_SIG, &si, sizeof si) == sizeof si && si.ssi_signo == (unsigned)(SIGRTMIN + 3),
             "signalfd did not deliver SIGRTMIN+3");
    raise(SIGURG);
    SV_CHECK(read(FD_SIG, &si, sizeof si) == sizeof si && si.ssi_signo == SIGURG, "signalfd did not deliver SIGURG");
    /* timerfds. */
    struct itimerspec cur;
    timerfd_gettime(FD_TLONG, &cur);
    SV_CHECK(cur.it_value.tv_sec > 900 && cur.it_value.tv_sec <= 1000, "long timer has %ld s left",
             (long)cur.it_value.tv_sec);
    SV_CHECK(fcntl(FD_TLONG, F_GETFL) == flags_long, "timerfd flags");
    timerfd_gettime(FD_TOFF, &cur);
    SV_CHECK(!cur.it_value.tv_sec && !cur.it_value.tv_nsec, "the disarmed timer is armed");
    timerfd_gettime(FD_TPERIOD, &cur);
    SV_CHECK(cur.it_interval.tv_nsec == 50 * 1000000, "periodic interval %ld ns", cur.it_interval.tv_nsec);
    struct pollfd pt = {.fd = FD_TPERIOD, .events = POLLIN};
    SV_CHECK(poll(&pt, 1, 1000) == 1, "the periodic timer does not fire");
    SV_CHECK(read(FD_TPERIOD, &v, 8) == 8 && v >= 1, "periodic timer ticks");
    (void)saw_timer;
    v = 0;
    SV_CHECK(read(FD_TFIRED, &v, 8) == 8 && v == 1, "the unread expiration of a one-shot timer: %lu",
             (unsigned long)v);
    timerfd_gettime(FD_TFIRED, &cur);
    SV_CHECK(!cur.it_value.tv_sec && !cur.it_value.tv_nsec, "the fired one-shot timer is armed");
    /* inotify: events under the same watch descriptors. */
    char ib[4096] __attribute__((aligned(8)));
    while (read(FD_INOTIFY, ib, sizeof ib) > 0) {
    } /* drop what the restore itself may have caused */
    close(open(created, O_WRONLY | O_CREAT, 0644));
    int fdw = open(watched, O_WRONLY);
    SV_CHECK(write(fdw, "m", 1) == 1, "modify the watched file");
    close(fdw);
    int saw_dir = 0, saw_file = 0;
    n = read(FD_INOTIFY, ib, sizeof ib);
    for (char *q = ib; n > 0 && q < ib + n;) {
        struct inotify_event *e = (struct inotify_event *)q;
        if (e->wd == wd_dir && (e->mask & IN_CREATE) && !strcmp(e->name, "events.created"))
            saw_dir = 1;
        if (e->wd == wd_file && (e->mask & IN_MODIFY))
            saw_file = 1;
        q += sizeof *e + e->len;
    }
    SV_CHECK(saw_dir && saw_file, "inotify events: dir %d (wd %d), file %d (wd %d)", saw_dir, wd_dir, saw_file,
             wd_file);
    SV_CHECK(inotify_rm_watch(FD_INOTIFY, wd_root) == 0, "inotify watch %d on / is gone: %s", wd_root,
             strerror(errno));
    SV_CHECK(inotify_rm_watch(FD_INOTIFY, wd_file) < 0, "the one-shot watch %d is still there after firing",
             wd_file);
    unlink(created);
    unlink(watched);
    /* The child's registration: its eventfd (fd 30 in the child only) reports through ours. */
    kill(child, SIGUSR1);
    int saw_child = 0;
    for (int tries = 0; tries < 20 && !saw_child; tries++) {
        n = epoll_wait(FD_EPOLL, evs, 8, 100);
        for (int i = 0; i < n; i++)
            saw_child |= evs[i].data.u64 == 0xc41d;
    }
    SV_CHECK(saw_child, "no event from the child's eventfd");
    kill(child, SIGKILL);
    int status = -1;
    SV_CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status), "child status %#x (3: write failed)",
             status);
    return sv_finish(NAME);
}
