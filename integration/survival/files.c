/* Step 8: files and descriptors survive checkpoint/restore (zdtm fd_offset, file_shared,
 * write_read00, unlink_fstat00, pipe00/01/02, fifo): offsets, one open file description shared
 * by parent and child (an offset moved by one is seen by the other), O_APPEND, a file unlinked
 * while open, a directory fd, /dev/zero and /dev/full, a pipe with unread data from a child, a
 * pipe whose both ends the process holds (non-blocking, resized), a FIFO with data, fd flags
 * (FD_CLOEXEC) and status flags, descriptors at high numbers, and locks: flock (on a shared
 * description), POSIX (one owned by the parent, one by the child) and OFD.
 *
 * Files live in the output dir (a rw bind). After SIGUSR2 the parent checks its own state,
 * then wakes the child (SIGUSR1), which checks the shared offset, writes more into its pipe,
 * moves the shared offset and exits: the parent must read the pipe to EOF (no write end may
 * have leaked into another process) and see the child's offset. */
#include "survival.h"

#include <dirent.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define NAME "files"

enum {
    FD_DATA = 10,   /* regular file, offset 4 */
    FD_APPEND = 11, /* O_WRONLY|O_APPEND */
    FD_SHARED = 12, /* shared with the child */
    FD_GHOST = 13,  /* unlinked while open */
    FD_DIR = 14,    /* the output dir */
    FD_ZERO = 15,   /* /dev/zero */
    FD_FULL = 16,   /* /dev/full */
    FD_CHILD = 17,  /* read end of the pipe the child writes into */
    FD_SELF_R = 18, /* both ends of a pipe with data, read end O_NONBLOCK */
    FD_SELF_W = 19,
    FD_FIFO = 20,    /* FIFO O_RDWR with data */
    FD_FIFO_RO = 21, /* the same FIFO again, O_RDONLY|O_NONBLOCK: another description */
    FD_OPATH = 22,   /* O_PATH of files.data */
    FD_MEMFD = 23,   /* a memfd with data, offset 3, sealed against shrinking */
    FD_DUP = 200,    /* dup of FD_DATA: one description, CLOEXEC set on this one only */
    FD_LAST = 201,
};

static const char GHOST[] = "ghost-data-0123456789";
static const char CHILD1[] = "pipe-from-child;";
static const char CHILD2[] = "more-after-restore;";
static const char SELFDATA[] = "self-pipe-data";
static const char FIFODATA[] = "fifo-data";
static char path[4096];

static const char *at(const char *file)
{
    snprintf(path, sizeof path, "%s/%s", sv_out, file);
    return path;
}

#define die(what) sv_die(NAME, what)
#define place(fd, want) sv_place(NAME, fd, want, "open")

static struct {
    int snapped, fl, fd;
} flags_before[FD_LAST];

static off_t pos(int fd)
{
    return lseek(fd, 0, SEEK_CUR);
}

/* The lock another description of `path` runs into when asking for a write lock on
 * [0, 100): "type start len pid" or "none". */
static void conflict(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDWR); /* never closed: that would drop our POSIX locks on it */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
    if (fd < 0 || fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        snprintf(out, size, "error %s", strerror(errno));
        return;
    }
    if (fl.l_type == F_UNLCK)
        snprintf(out, size, "none");
    else
        snprintf(out, size, "%s %ld %ld %d", fl.l_type == F_WRLCK ? "W" : "R", (long)fl.l_start, (long)fl.l_len,
                 (int)fl.l_pid);
}

static char lock_shared[64], lock_append[64], lock_ghost[64];

static void snap_locks(char *shared, char *append, char *ghost)
{
    conflict(at("files.shared"), shared, 64);
    conflict(at("files.append"), append, 64);
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", FD_GHOST);
    conflict(self, ghost, 64);
}

/* The child: writer of the FD_CHILD pipe, sharer of FD_SHARED. Exit code: 0 ok, else which
 * check failed. */
static int child_main(int wfd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(FD_APPEND, F_SETLK, &fl) < 0)
        return 9;
    if (write(wfd, CHILD1, strlen(CHILD1)) != (ssize_t)strlen(CHILD1))
        return 10;
    /* Tell the parent the data is in (a byte on the shared file would move the offset). */
    kill(getppid(), SIGUSR1);
    sv_turn_wait();
    /* The parent read 2 bytes through the shared description: 2 -> 4. */
    if (pos(FD_SHARED) != 4)
        return 11;
    if (write(wfd, CHILD2, strlen(CHILD2)) != (ssize_t)strlen(CHILD2))
        return 12;
    close(wfd);
    if (lseek(FD_SHARED, 7, SEEK_SET) != 7)
        return 13;
    return 0;
}

static void snap_flags(int fd)
{
    flags_before[fd].snapped = 1;
    flags_before[fd].fl = fcntl(fd, F_GETFL);
    flags_before[fd].fd = fcntl(fd, F_GETFD);
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    /* Regular file at offset 4. */
    unlink(at("files.data"));
    place(open(at("files.data"), O_RDWR | O_CREAT, 0644), FD_DATA);
    if (write(FD_DATA, "0123456789", 10) != 10 || lseek(FD_DATA, 4, SEEK_SET) != 4)
        die("files.data");
    place(dup(FD_DATA), FD_DUP);
    place(open(at("files.data"), O_PATH), FD_OPATH);
    place(memfd_create("sv-files", MFD_ALLOW_SEALING), FD_MEMFD);
    if (write(FD_MEMFD, "memfd-data", 10) != 10 || lseek(FD_MEMFD, 3, SEEK_SET) != 3 ||
        fcntl(FD_MEMFD, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        die("memfd");
    fcntl(FD_DUP, F_SETFD, FD_CLOEXEC);
    /* O_APPEND. */
    unlink(at("files.append"));
    place(open(at("files.append"), O_WRONLY | O_APPEND | O_CREAT, 0644), FD_APPEND);
    if (write(FD_APPEND, "abc", 3) != 3)
        die("files.append");
    /* Shared with the child, offset 2. */
    unlink(at("files.shared"));
    place(open(at("files.shared"), O_RDWR | O_CREAT, 0644), FD_SHARED);
    if (write(FD_SHARED, "0123456789", 10) != 10 || lseek(FD_SHARED, 2, SEEK_SET) != 2)
        die("files.shared");
    /* Unlinked while open, offset 5, mode 0640. */
    unlink(at("files.ghost"));
    place(open(at("files.ghost"), O_RDWR | O_CREAT, 0600), FD_GHOST);
    if (write(FD_GHOST, GHOST, strlen(GHOST)) != (ssize_t)strlen(GHOST) || lseek(FD_GHOST, 5, SEEK_SET) != 5)
        die("files.ghost");
    if (fchmod(FD_GHOST, 0640) < 0 || unlink(at("files.ghost")) < 0)
        die("ghost unlink");
    struct flock ofd = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 4};
    struct flock posix = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 5};
    if (flock(FD_DATA, LOCK_SH) < 0 || fcntl(FD_GHOST, F_OFD_SETLK, &ofd) < 0 || fcntl(FD_SHARED, F_SETLK, &posix) < 0)
        die("locks");
    /* A directory, part-read. */
    place(open(sv_out, O_RDONLY | O_DIRECTORY), FD_DIR);
    char dents[256];
    if (syscall(SYS_getdents64, FD_DIR, dents, sizeof dents) < 0)
        die("getdents64");
    off_t dir_pos = pos(FD_DIR);
    /* Devices. */
    place(open("/dev/zero", O_RDONLY), FD_ZERO);
    place(open("/dev/full", O_WRONLY | O_CLOEXEC), FD_FULL);
    /* A pipe with both ends here: data, non-blocking read end, 128 KiB. */
    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    place(p[0], FD_SELF_R);
    place(p[1], FD_SELF_W);
    if (fcntl(FD_SELF_W, F_SETPIPE_SZ, 128 * 1024) < 0)
        die("F_SETPIPE_SZ");
    fcntl(FD_SELF_R, F_SETFL, O_NONBLOCK);
    if (write(FD_SELF_W, SELFDATA, strlen(SELFDATA)) != (ssize_t)strlen(SELFDATA))
        die("self pipe");
    /* A FIFO with data, twice. */
    unlink(at("files.fifo"));
    if (mkfifo(at("files.fifo"), 0600) < 0)
        die("mkfifo");
    place(open(at("files.fifo"), O_RDWR), FD_FIFO);
    place(open(at("files.fifo"), O_RDONLY | O_NONBLOCK), FD_FIFO_RO);
    if (write(FD_FIFO, FIFODATA, strlen(FIFODATA)) != (ssize_t)strlen(FIFODATA))
        die("fifo");
    /* The child and its pipe. */
    if (pipe(p) < 0)
        die("pipe");
    sigset_t old = sv_turn_arm();
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(p[0]);
        _exit(child_main(p[1]));
    }
    close(p[1]);
    place(p[0], FD_CHILD);
    sv_turn_wait(); /* the child's data is in the pipe */
    sigprocmask(SIG_SETMASK, &old, NULL);

    for (int fd = FD_DATA; fd <= FD_MEMFD; fd++)
        snap_flags(fd);
    snap_flags(FD_DUP);
    struct stat ghost_st, zero_st;
    fstat(FD_GHOST, &ghost_st);
    fstat(FD_ZERO, &zero_st);
    int self_sz = fcntl(FD_SELF_W, F_GETPIPE_SZ);
    char before_shared[64], before_append[64], before_ghost[64];
    snap_locks(before_shared, before_append, before_ghost);

    sv_ready(NAME);
    sv_wait_go();

    /* Flags of every descriptor. */
    for (int fd = 0; fd < FD_LAST; fd++) {
        if (!flags_before[fd].snapped)
            continue;
        SV_CHECK(fcntl(fd, F_GETFL) == flags_before[fd].fl, "fd %d: status flags %#o, were %#o", fd,
                 fcntl(fd, F_GETFL), flags_before[fd].fl);
        SV_CHECK(fcntl(fd, F_GETFD) == flags_before[fd].fd, "fd %d: fd flags %d, were %d", fd, fcntl(fd, F_GETFD),
                 flags_before[fd].fd);
    }
    /* Regular file: offset, and the dup shares it. */
    SV_CHECK(pos(FD_DATA) == 4, "files.data offset %ld, not 4", (long)pos(FD_DATA));
    char buf[256];
    SV_CHECK(read(FD_DATA, buf, 2) == 2 && !memcmp(buf, "45", 2), "files.data read at 4");
    SV_CHECK(pos(FD_DUP) == 6, "dup of files.data at %ld, not 6 (not one description)", (long)pos(FD_DUP));
    /* O_PATH: the same file, still no I/O. */
    struct stat st, data_st;
    SV_CHECK(fstat(FD_OPATH, &st) == 0 && fstat(FD_DATA, &data_st) == 0 && st.st_ino == data_st.st_ino,
             "O_PATH fd: another file");
    SV_CHECK(read(FD_OPATH, buf, 1) < 0 && errno == EBADF, "O_PATH fd can read");
    /* memfd: contents, offset, seals, name. */
    ssize_t n = pread(FD_MEMFD, buf, sizeof buf, 0);
    SV_CHECK(n == 10 && !memcmp(buf, "memfd-data", 10), "memfd contents %.*s", (int)(n > 0 ? n : 0), buf);
    SV_CHECK(pos(FD_MEMFD) == 3, "memfd offset %ld, not 3", (long)pos(FD_MEMFD));
    SV_CHECK(fcntl(FD_MEMFD, F_GET_SEALS) == F_SEAL_SHRINK, "memfd seals %#x", fcntl(FD_MEMFD, F_GET_SEALS));
    SV_CHECK(ftruncate(FD_MEMFD, 2) < 0 && errno == EPERM, "a sealed memfd shrank");
    char mlink[256] = "";
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", FD_MEMFD);
    SV_CHECK(readlink(buf, mlink, sizeof mlink - 1) > 0 && !strcmp(mlink, "/memfd:sv-files (deleted)"), "memfd link %s",
             mlink);
    /* O_APPEND: a write after seeking to 0 still goes to the end. */
    lseek(FD_APPEND, 0, SEEK_SET);
    SV_CHECK(write(FD_APPEND, "def", 3) == 3, "append write");
    n = sv_read_file(at("files.append"), buf, sizeof buf);
    SV_CHECK(n == 6 && !memcmp(buf, "abcdef", 6), "files.append is %.*s, not abcdef", (int)n, buf);
    /* Ghost file. */
    SV_CHECK(fstat(FD_GHOST, &st) == 0 && st.st_nlink == 0, "ghost: nlink %lu", (unsigned long)st.st_nlink);
    SV_CHECK(st.st_size == ghost_st.st_size && (st.st_mode & 07777) == 0640,
             "ghost: size %ld mode %o, were %ld 0640", (long)st.st_size, st.st_mode & 07777, (long)ghost_st.st_size);
    SV_CHECK(pos(FD_GHOST) == 5, "ghost offset %ld, not 5", (long)pos(FD_GHOST));
    n = pread(FD_GHOST, buf, sizeof buf, 0);
    SV_CHECK(n == (ssize_t)strlen(GHOST) && !memcmp(buf, GHOST, n), "ghost contents %.*s", (int)(n > 0 ? n : 0), buf);
    SV_CHECK(access(at("files.ghost"), F_OK) != 0, "the ghost file is visible again");
    char link[4200];
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", FD_GHOST);
    n = readlink(buf, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    SV_CHECK(n > 10 && strstr(link, " (deleted)"), "ghost link %s", link);
    /* Directory. */
    /* The directory at its path (a restore into another container has a copy there). */
    struct stat out_st;
    SV_CHECK(fstat(FD_DIR, &st) == 0 && stat(sv_out, &out_st) == 0 && st.st_ino == out_st.st_ino &&
                 st.st_dev == out_st.st_dev,
             "dir fd: another directory");
    SV_CHECK(pos(FD_DIR) == dir_pos, "dir offset %ld, was %ld", (long)pos(FD_DIR), (long)dir_pos);
    /* Devices. */
    memset(buf, 1, 16);
    SV_CHECK(read(FD_ZERO, buf, 16) == 16 && !buf[0] && !buf[15], "/dev/zero read");
    SV_CHECK(fstat(FD_ZERO, &st) == 0 && st.st_rdev == zero_st.st_rdev && major(st.st_rdev) == 1 &&
                 minor(st.st_rdev) == 5,
             "/dev/zero rdev %u:%u", major(st.st_rdev), minor(st.st_rdev));
    SV_CHECK(write(FD_FULL, "x", 1) < 0 && errno == ENOSPC, "/dev/full write did not fail with ENOSPC");
    /* The pipe with both ends here. */
    SV_CHECK(fcntl(FD_SELF_W, F_GETPIPE_SZ) == self_sz, "self pipe size %d, was %d", fcntl(FD_SELF_W, F_GETPIPE_SZ),
             self_sz);
    n = read(FD_SELF_R, buf, sizeof buf);
    SV_CHECK(n == (ssize_t)strlen(SELFDATA) && !memcmp(buf, SELFDATA, n), "self pipe data %.*s",
             (int)(n > 0 ? n : 0), buf);
    SV_CHECK(read(FD_SELF_R, buf, 1) < 0 && errno == EAGAIN, "self pipe: second read did not say EAGAIN");
    SV_CHECK(write(FD_SELF_W, "z", 1) == 1 && read(FD_SELF_R, buf, 1) == 1 && buf[0] == 'z', "self pipe round trip");
    /* The FIFO. */
    n = read(FD_FIFO_RO, buf, sizeof buf);
    SV_CHECK(n == (ssize_t)strlen(FIFODATA) && !memcmp(buf, FIFODATA, n), "fifo data %.*s", (int)(n > 0 ? n : 0),
             buf);
    SV_CHECK(write(FD_FIFO, "y", 1) == 1 && read(FD_FIFO, buf, 1) == 1 && buf[0] == 'y', "fifo round trip");

    /* Locks: the same conflicts as before (POSIX ones owned by the same pids), and the flock
     * of the shared description. */
    snap_locks(lock_shared, lock_append, lock_ghost);
    SV_CHECK(!strcmp(lock_shared, before_shared), "POSIX lock on files.shared: %s, was %s", lock_shared,
             before_shared);
    SV_CHECK(!strcmp(lock_append, before_append), "the child's POSIX lock on files.append: %s, was %s", lock_append,
             before_append);
    SV_CHECK(!strcmp(lock_ghost, before_ghost), "OFD lock on the ghost: %s, was %s", lock_ghost, before_ghost);
    SV_CHECK(strcmp(before_shared, "none") && strcmp(before_append, "none") && strcmp(before_ghost, "none"),
             "no locks to compare: %s / %s / %s", before_shared, before_append, before_ghost);
    int other = open(at("files.data"), O_RDONLY);
    SV_CHECK(flock(other, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK, "the flock on files.data is gone");
    SV_CHECK(flock(other, LOCK_SH | LOCK_NB) == 0, "a shared flock next to ours: %s", strerror(errno));
    close(other);
    /* The shared description: 2 -> 4 here, then the child checks and moves it to 7. */
    SV_CHECK(pos(FD_SHARED) == 2, "shared offset %ld, not 2", (long)pos(FD_SHARED));
    SV_CHECK(read(FD_SHARED, buf, 2) == 2, "shared read");
    kill(child, SIGUSR1);
    /* The child's pipe: old data, new data, then EOF once the child closed its end. */
    size_t got = 0;
    char data[256];
    for (;;) {
        struct pollfd pfd = {.fd = FD_CHILD, .events = POLLIN};
        int r = poll(&pfd, 1, 5000);
        if (r <= 0) {
            SV_CHECK(0, "no EOF on the child's pipe after 5 s (got %.*s): a write end leaked", (int)got, data);
            break;
        }
        n = read(FD_CHILD, data + got, sizeof data - 1 - got);
        if (n <= 0)
            break;
        got += n;
    }
    data[got] = 0;
    SV_CHECK(!strcmp(data, "pipe-from-child;more-after-restore;"), "child pipe gave %s", data);
    int status = -1;
    SV_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
    SV_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x (exit code = failed check)", status);
    SV_CHECK(pos(FD_SHARED) == 7, "shared offset %ld after the child moved it to 7", (long)pos(FD_SHARED));
    unlink(at("files.fifo"));
    return sv_finish(NAME);
}
