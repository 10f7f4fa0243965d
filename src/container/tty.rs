//! The foreground terminal of `run -t` / `exec -t` without `--console-socket`: amber receives
//! the pty master from the container process itself, puts its own terminal in raw mode, copies
//! bytes both ways, and forwards window-size changes (SIGWINCH) to the pty.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::sys;

/// Receive the pty master the container process sent over `sock` (one SCM_RIGHTS fd).
pub fn recv_master(sock: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                return Ok(sys::own_received_fd(fd));
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "no pty master was received",
    ))
}

/// Our stdin in raw mode for as long as this lives (restored on drop, also on error paths).
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None }; // not a terminal: nothing to change
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(master: std::os::fd::BorrowedFd<'_>) {
    if let Ok(ws) = sys::get_winsize(std::io::stdin().as_fd()) {
        let _ = sys::set_winsize(master, &ws);
    }
}

/// Proxy until the process `pid` (our child) exits; returns its exit code.
pub fn proxy(master: OwnedFd, pidfd: &OwnedFd, pid: i32, sfd: &SignalFd) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let _raw = RawMode::enter();
    copy_winsize(master.as_fd());
    let mut m = std::fs::File::from(master);
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let (stdin_ready, master_ready, master_hup) = {
            let stdin = std::io::stdin();
            let mut fds = vec![
                PollFd::new(m.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            let _ = poll(&mut fds, PollTimeout::NONE);
            let r = |i: usize, f: PollFlags| fds.get(i).and_then(|p| p.revents()).is_some_and(|x| x.intersects(f));
            (
                r(3, PollFlags::POLLIN | PollFlags::POLLHUP),
                r(0, PollFlags::POLLIN),
                r(0, PollFlags::POLLHUP | PollFlags::POLLERR),
            )
        };
        while let Ok(Some(info)) = sfd.read_signal() {
            match info.ssi_signo as i32 {
                libc::SIGWINCH => copy_winsize(m.as_fd()),
                libc::SIGCHLD => {}
                sig => {
                    let _ = sys::pidfd_send_signal(pidfd.as_fd(), sig);
                }
            }
        }
        if master_ready || master_hup {
            match m.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
                _ => {}
            }
        }
        if stdin_ready {
            match std::io::stdin().read(&mut buf) {
                Ok(n) if n > 0 => {
                    let _ = m.write_all(&buf[..n]);
                }
                _ => stdin_open = false,
            }
        }
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return drain(&mut m, c),
            Ok(WaitStatus::Signaled(_, s, _)) => return drain(&mut m, 128 + s as i32),
            Ok(_) => {}
            Err(_) => return 255,
        }
    }
}

/// Copy what the process wrote just before it exited.
fn drain(m: &mut std::fs::File, code: i32) -> i32 {
    let _ = nix::fcntl::fcntl(
        m.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 8192];
    while let Ok(n) = m.read(&mut buf) {
        if n == 0 {
            break;
        }
        let _ = std::io::stdout().write_all(&buf[..n]);
    }
    let _ = std::io::stdout().flush();
    code
}
