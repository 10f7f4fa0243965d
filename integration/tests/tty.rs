//! Terminals: the pty master handed over `--console-socket` (create/start and
//! `exec -t -d`), and `run`/`exec` with a terminal in the foreground, where the
//! runtime proxies its own terminal.

use amber_integration::*;
use serde_json::json;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// The engine's side of --console-socket

/// A listening console socket, as conmon or containerd's shim sets up.
struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("amber-it-console.").tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        ConsoleSocket {
            _dir: dir,
            path,
            listener,
        }
    }

    fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Accept ONE connection (bounded wait) and receive the pty master from it.
    fn recv_master(&self) -> Result<OwnedFd, String> {
        self.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no connection on the console socket".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT_TIMEOUT)).unwrap();
        let (fds, _data) = recv_fds(&stream)?;
        if fds.len() != 1 {
            return Err(format!("expected exactly one fd, got {}", fds.len()));
        }
        // Nothing else may follow: further reads give EOF (or time out), never more fds.
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        if let Ok((more, _)) = recv_fds(&stream) {
            if !more.is_empty() {
                return Err(format!("{} more fds arrived on the console socket", more.len()));
            }
        }
        Ok(fds.into_iter().next().unwrap())
    }
}

/// One recvmsg: the SCM_RIGHTS fds and the data bytes. Room for 8 fds, so a sender
/// passing more than one is seen (and a truncated control message is an error).
fn recv_fds(stream: &UnixStream) -> Result<(Vec<OwnedFd>, Vec<u8>), String> {
    let mut data = [0u8; 4096];
    // u64 storage keeps the control buffer aligned for cmsghdr
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(8 * std::mem::size_of::<RawFd>() as u32) } as usize;
    assert!(msg.msg_controllen <= std::mem::size_of_val(&control));
    // SAFETY: msg describes valid buffers owned by this frame.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!("recvmsg: {}", io::Error::last_os_error()));
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control buffer the kernel filled, with the CMSG_* macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(p.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(format!(
            "control message truncated (more than 8 fds?), got {}",
            fds.len()
        ));
    }
    if n == 0 && fds.is_empty() {
        return Err("EOF before any fd".into());
    }
    Ok((fds, data[..n as usize].to_vec()))
}

// ---------------------------------------------------------------------------------
// A pty master

struct Pty {
    fd: OwnedFd,
    seen: String,
}

impl Pty {
    fn new(fd: OwnedFd) -> Self {
        Pty {
            fd,
            seen: String::new(),
        }
    }

    /// Read until the accumulated output contains `needle` (bounded); returns all of it.
    #[track_caller]
    fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while !self.seen.contains(needle) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?} on the pty; got {:?}",
                self.seen
            );
            self.poll_read(100);
        }
        self.seen.clone()
    }

    /// Read until `n` complete lines arrived.
    #[track_caller]
    fn read_lines(&mut self, n: usize) -> String {
        while self.seen.matches("\r\n").count() < n {
            let have = self.seen.len();
            self.read_until_more(have);
        }
        self.seen.clone()
    }

    #[track_caller]
    fn read_until_more(&mut self, have: usize) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while self.seen.len() == have {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for output on the pty; got {:?}",
                self.seen
            );
            self.poll_read(100);
        }
    }

    /// One poll (up to `ms`) and read; panics on EOF.
    fn poll_read(&mut self, ms: i32) {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a local buffer from an fd we own.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        // EIO: every slave fd is closed (the process exited)
        assert!(n > 0, "pty closed; got {:?}", self.seen);
        self.seen.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
    }

    fn write(&self, s: &str) {
        // SAFETY: writing a local buffer to an fd we own.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), s.as_ptr().cast(), s.len()) };
        assert_eq!(n, s.len() as isize, "write to pty: {}", io::Error::last_os_error());
    }
}

/// Is `fd` a pty master (ptmx)? TIOCGPTN only works on a master.
fn is_pty_master(fd: &OwnedFd) -> bool {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) == 0 }
}

/// Allocate a pty with the given size: (master, slave).
fn openpty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds; the name pointer may be null.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty: {}", io::Error::last_os_error());
    // SAFETY: fresh fds we own; make them close-on-exec.
    unsafe {
        libc::fcntl(m, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(s, libc::F_SETFD, libc::FD_CLOEXEC);
        (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s))
    }
}

/// A runtime command running on a pty we own (as in an interactive shell): its stdio
/// is the slave, it leads its own session with the slave as controlling terminal.
/// Dropping it SIGKILLs the session's process group.
struct OnPty {
    child: std::process::Child,
    pty: Pty,
}

impl OnPty {
    fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Self {
        let (master, slave) = openpty(rows, cols);
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a pty");
        drop(cmd); // closes our copies of the slave
        drop(slave);
        OnPty {
            child,
            pty: Pty::new(master),
        }
    }

    /// Wait for the command (bounded); its exit code.
    #[track_caller]
    fn wait(&mut self) -> Option<i32> {
        let mut st = None;
        wait_for_timeout("the runtime on the pty to exit", cmd_timeout(), || {
            st = self.child.try_wait().expect("try_wait");
            // keep draining the pty so the runtime never blocks on a full buffer
            let mut buf = [0u8; 4096];
            let mut pfd = libc::pollfd {
                fd: self.pty.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll/read on an fd we own into a local buffer.
            unsafe {
                if libc::poll(&mut pfd, 1, 0) > 0 {
                    let n = libc::read(self.pty.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
                    if n > 0 {
                        self.pty.seen.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
                    }
                }
            }
            st.is_some()
        });
        st.unwrap().code()
    }
}

impl Drop for OnPty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) of the session/process group our unreaped child leads.
            unsafe {
                libc::kill(-(self.child.id() as i32), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------

/// The script run on the terminal: where its stdio point, the terminal size, then one
/// line of input echoed back.
const TTY_SCRIPT: &str = "tty; readlink /proc/self/fd/1; readlink /proc/self/fd/2; stty size; \
                          read line; echo \"got:$line\"; exit 0";

fn tty_bundle(script: &str) -> Bundle {
    let mut b = Bundle::sh(script);
    b.set("/process/terminal", json!(true));
    b.set("/process/consoleSize", json!({ "height": 33, "width": 111 }));
    b
}

/// Drive TTY_SCRIPT over `pty`: check its output, answer its `read`.
#[track_caller]
fn converse(pty: &mut Pty, size: &str) -> String {
    let first = pty.read_lines(4);
    let lines: Vec<String> = first.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    assert_eq!(lines[..3], ["/dev/pts/0", "/dev/pts/0", "/dev/pts/0"], "{first:?}");
    pty.write("hello tty\n");
    // the line discipline echoes the input, then the shell answers
    let out = pty.read_until("got:hello tty\r\n");
    assert!(out.contains("hello tty\r\n"), "no echo of the input: {out:?}");
    // checked last, so the I/O above is exercised either way
    assert_eq!(
        lines[3], size,
        "`stty size` must show process.consoleSize (rows cols): {first:?}"
    );
    out
}

#[test]
fn create_console_socket() {
    let c = Container::new("tty-create", tty_bundle(TTY_SCRIPT));
    let sock = ConsoleSocket::new();
    let path = sock.path_str();
    // the engine accepts while create runs (as conmon does)
    let acceptor = std::thread::spawn(move || sock.recv_master());
    let out = c.create_with(&[], &["--console-socket", &path]);
    let master = acceptor.join().unwrap();
    out.assert_ok();
    let master = master.unwrap_or_else(|e| panic!("console socket: {e}"));
    assert!(is_pty_master(&master), "the fd received is not a pty master");
    // nothing went to the runtime's own stdio
    assert_eq!(c.stdout(), "", "create wrote to stdout");
    c.start_ok();
    let mut pty = Pty::new(master);
    converse(&mut pty, "33 111");
    c.wait_status("stopped");
    c.delete(false).assert_ok();
}

#[test]
fn console_socket_accepted_after_create_returns() {
    // runc sends the master without waiting for accept(); containerd accepts only
    // after create returns. The connection sits in the listen backlog meanwhile.
    let c = Container::new("tty-late-accept", tty_bundle(TTY_SCRIPT));
    let sock = ConsoleSocket::new();
    c.create_with(&[], &["--console-socket", &sock.path_str()]).assert_ok();
    assert_eq!(c.status().as_deref(), Some("created"));
    let master = sock.recv_master().unwrap_or_else(|e| panic!("console socket: {e}"));
    c.start_ok();
    let mut pty = Pty::new(master);
    converse(&mut pty, "33 111");
    c.wait_status("stopped");
}

#[test]
fn console_socket_not_listening_fails() {
    // A socket path nobody listens on: create fails and leaves nothing behind.
    let c = Container::new("tty-no-listener", tty_bundle("true"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.sock");
    let out = c.create_with(&[], &["--console-socket", &path.to_string_lossy()]);
    out.assert_fail();
    assert!(!c.state_dir().exists(), "failed create left its state dir");
}

#[test]
fn exec_tty_console_socket() {
    // As conmon execs: a process file with terminal: true and a consoleSize, --tty
    // alongside, detached, the master sent over the console socket.
    let c = Container::new("tty-exec", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.start_ok();
    let process = json!({
        "terminal": true,
        "consoleSize": { "height": 33, "width": 111 },
        "user": { "uid": 0, "gid": 0 },
        "args": ["sh", "-c", TTY_SCRIPT],
        "env": ["PATH=/bin:/usr/bin", "TERM=xterm"],
        "cwd": "/"
    });
    let file = c.work_dir().join("process.json");
    fs::write(&file, process.to_string()).unwrap();
    let sock = ConsoleSocket::new();
    let path = sock.path_str();
    let acceptor = std::thread::spawn(move || sock.recv_master());
    let pid_file = c.work_dir().join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    let out = c.rt(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        &path,
        "--pid-file",
        &pf,
        "--process",
        &file.to_string_lossy(),
        &c.id,
    ]);
    let master = acceptor.join().unwrap();
    out.assert_ok();
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    c.note_pid(pid);
    let master = master.unwrap_or_else(|e| panic!("console socket: {e}"));
    assert!(is_pty_master(&master), "the fd received is not a pty master");
    let mut pty = Pty::new(master);
    converse(&mut pty, "33 111");
    wait_for("the exec'd shell to exit", || !pid_alive(pid));
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn exec_tty_console_socket_accepted_late() {
    let c = Container::new("tty-exec-late", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.start_ok();
    let sock = ConsoleSocket::new();
    c.rt(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        &sock.path_str(),
        &c.id,
        "sh",
        "-c",
        "tty; read x; echo \"x=$x\"",
    ])
    .assert_ok();
    let mut pty = Pty::new(sock.recv_master().unwrap_or_else(|e| panic!("{e}")));
    pty.read_until("/dev/pts/0");
    pty.write("late\n");
    pty.read_until("x=late");
}

#[test]
fn run_tty_foreground_without_console_socket() {
    // `run` with terminal: true on an interactive terminal: the runtime allocates the
    // container's pty itself and proxies ours to it: input, output, our terminal's
    // size (runc sets it right after start, so the process waits for it), SIGWINCH,
    // and the exit code.
    let script = "tty; read line; echo \"got:$line\"; \
                  until [ \"$(stty size)\" = '40 120' ]; do sleep 0.05; done; echo sized; \
                  read go; until [ \"$(stty size)\" = '50 150' ]; do sleep 0.05; done; echo resized; \
                  exit 3";
    let c = Container::new("tty-run-fg", tty_bundle(script));
    let mut on = OnPty::spawn(c.run_command(&[]), 40, 120);
    on.pty.read_until("/dev/pts/0\r\n");
    on.pty.write("hello\n");
    on.pty.read_until("got:hello\r\n");
    on.pty.read_until("sized\r\n");
    let ws = libc::winsize {
        ws_row: 50,
        ws_col: 150,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on our pty master; the kernel sends SIGWINCH to the
    // foreground process group (the runtime).
    assert_eq!(unsafe { libc::ioctl(on.pty.fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    on.pty.write("go\n");
    on.pty.read_until("resized\r\n");
    assert_eq!(on.wait(), Some(3), "run's exit code; pty output: {:?}", on.pty.seen);
    assert!(!c.state_dir().exists(), "run left its state dir");
}

#[test]
fn exec_tty_foreground_without_console_socket() {
    let c = Container::new("tty-exec-fg", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.start_ok();
    let cmd = c.command(&["exec", "-t", &c.id, "sh", "-c", "tty; read l; echo \"l=$l\"; exit 4"]);
    let mut on = OnPty::spawn(cmd, 40, 120);
    on.pty.read_until("/dev/pts/0");
    on.pty.write("abc\n");
    on.pty.read_until("l=abc");
    assert_eq!(on.wait(), Some(4), "exec's exit code; pty output: {:?}", on.pty.seen);
}

#[test]
fn detached_tty_without_console_socket_fails() {
    // Detached, nobody could receive the pty: refused with a message saying why.
    let c = Container::new("tty-run-d", tty_bundle("true"));
    let out = c.run_with(&["-d"], &[]);
    out.assert_fail();
    assert!(
        out.stderr.contains("console socket") || out.stderr.contains("console-socket"),
        "{out}"
    );
    assert!(!c.state_dir().exists(), "failed run left its state dir");

    let c = Container::new("tty-create-nosock", tty_bundle("true"));
    let out = c.create();
    out.assert_fail();
    assert!(
        out.stderr.contains("console socket") || out.stderr.contains("console-socket"),
        "{out}"
    );
    assert!(!c.state_dir().exists(), "failed create left its state dir");

    let c = Container::new("tty-exec-d", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.start_ok();
    let out = c.rt(&["exec", "-t", "-d", &c.id, "true"]);
    out.assert_fail();
    assert!(
        out.stderr.contains("console socket") || out.stderr.contains("console-socket"),
        "{out}"
    );
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn console_socket_without_detached_tty_refused() {
    // runc: "cannot use console socket if runc will not detach or allocate tty".
    // A socket peer would otherwise wait for a pty that never comes (terminal: false)
    // or get one for a foreground run.
    let sock = ConsoleSocket::new();
    let c = Container::new("tty-sock-noterm", Bundle::sh("sleep 1000"));
    let out = c.create_with(&[], &["--console-socket", &sock.path_str()]);
    out.assert_fail();
    assert!(out.stderr.contains("console socket"), "{out}");
    assert!(!c.state_dir().exists(), "refused create left its state dir");

    let c = Container::new("tty-sock-fg", tty_bundle("true"));
    let out = c.run_with(&["--console-socket", &sock.path_str()], &[]);
    out.assert_fail();
    assert!(out.stderr.contains("console socket"), "{out}");
    assert!(!c.state_dir().exists(), "refused run left its state dir");
}
