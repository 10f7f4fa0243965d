//! start, state, kill, delete, list, pause, resume, and the foreground half of `run`.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::hooks::{self, HookState};
use super::state::{self, State, StateDir, Status, OCI_VERSION};
use super::{Error, Global, StatusError};
use crate::cgroups::Manager;
use crate::sys;

const KILL_WAIT: Duration = Duration::from_secs(10);

fn hook_state(st: &State, status: Status) -> HookState {
    HookState {
        oci_version: OCI_VERSION.into(),
        id: st.id.clone(),
        status: status.to_string(),
        pid: (status != Status::Stopped).then_some(st.init_pid),
        bundle: st.bundle.clone(),
        annotations: st.annotations.clone(),
    }
}

/// A pidfd for the init, only if the pid still names the process we created.
fn init_pidfd(st: &State) -> Option<OwnedFd> {
    let fd = sys::pidfd_open(st.init_pid).ok()?;
    // Checked after opening: if the start time still matches now, the fd names our init for good.
    state::process_alive(st.init_pid, st.init_start_time).then_some(fd)
}

pub fn start(g: &Global, id: &str) -> Result<(), Error> {
    let dir = StateDir::open(&g.root, id)?;
    let st = dir.load()?;
    match st.status(&dir.path) {
        Status::Created => {}
        Status::Stopped => return Err(Error::Status(StatusError::StartStopped)),
        Status::Running | Status::Paused => return Err(Error::Status(StatusError::StartRunning)),
    }
    release_init(&dir.path, &st)?;
    // Poststart failures are warnings: the container is already running (runtime-spec).
    if let Err(e) = hooks::run_all("poststart", &st.poststart, &hook_state(&st, Status::Running)) {
        crate::logging::warn(&e.to_string());
    }
    Ok(())
}

/// Open the exec fifo for reading: the init, blocked opening it for writing, goes on to execve.
fn release_init(dir: &Path, st: &State) -> Result<(), Error> {
    let path = dir.join(state::FIFO);
    // The pidfd first: once the fifo is open the process may run and exit at any moment.
    let pidfd = init_pidfd(st).ok_or(Error::Status(StatusError::StartStopped))?;
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io("opening exec fifo", &path, e))?;
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let exited = {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN))
        };
        let mut buf = [0u8; 1];
        if let Ok(1) = fifo.read(&mut buf) {
            break;
        }
        if exited || Instant::now() > deadline {
            return Err(Error::Status(StatusError::StartStopped));
        }
    }
    std::fs::remove_file(&path).map_err(|e| Error::io("removing exec fifo", &path, e))?;
    match wait_for_exec(&mut fifo, &pidfd) {
        Some(why) => Err(Error::StartFailed(why)),
        None => Ok(()),
    }
}

/// The init keeps its (close-on-exec) end of the fifo open until execve: end of file means the
/// user process is running, so poststart hooks run after it started. Anything the init writes
/// after its first byte is why it failed (a startContainer hook, seccomp, execve).
fn wait_for_exec(fifo: &mut std::fs::File, pidfd: &OwnedFd) -> Option<String> {
    let deadline = Instant::now() + KILL_WAIT;
    let mut why = Vec::new();
    let done = |why: Vec<u8>| (!why.is_empty()).then(|| String::from_utf8_lossy(&why).into_owned());
    loop {
        let mut buf = [0u8; 4096];
        match fifo.read(&mut buf) {
            Ok(0) => return done(why),
            Ok(n) => {
                why.extend_from_slice(&buf[..n]);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return done(why),
        }
        if Instant::now() > deadline {
            return done(why);
        }
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        if fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
            // The init died: collect whatever it wrote before it went.
            while let Ok(n) = fifo.read(&mut buf) {
                if n == 0 {
                    break;
                }
                why.extend_from_slice(&buf[..n]);
            }
            // Nothing written: it exec'd (and the program already ended), which is a success.
            return done(why);
        }
    }
}

pub fn state_json(g: &Global, id: &str) -> Result<String, Error> {
    let dir = StateDir::open(&g.root, id)?;
    let st = dir.load()?;
    let status = st.status(&dir.path);
    Ok(serde_json::to_string_pretty(&st.public(status)).unwrap_or_default())
}

pub fn kill(g: &Global, id: &str, sig: i32, all: bool) -> Result<(), Error> {
    let dir = StateDir::open(&g.root, id)?;
    let st = dir.load()?;
    let status = st.status(&dir.path);
    if status == Status::Stopped {
        return Err(Error::Status(StatusError::NotRunning));
    }
    if all {
        return signal_all(&st, sig);
    }
    let pidfd = init_pidfd(&st).ok_or(Error::Status(StatusError::NotRunning))?;
    sys::pidfd_send_signal(pidfd.as_fd(), sig).map_err(|source| Error::Signal {
        id: id.into(),
        sig,
        source,
    })?;
    // A frozen v1 task only dies once thawed (v2 delivers SIGKILL to frozen tasks itself).
    if sig == libc::SIGKILL && status == Status::Paused {
        let cg = Manager::from_state(&st.cgroup);
        if !cg.is_v2() {
            cg.thaw()?;
        }
    }
    Ok(())
}

/// Signal every process in the container's cgroup; on v1 a frozen task only dies once thawed.
fn signal_all(st: &State, sig: i32) -> Result<(), Error> {
    let cg = Manager::from_state(&st.cgroup);
    for pid in cg.pids()? {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::try_from(sig).ok(),
        );
    }
    if sig == libc::SIGKILL && !cg.is_v2() && cg.is_frozen().unwrap_or(false) {
        cg.thaw()?;
    }
    Ok(())
}

pub fn delete(g: &Global, id: &str, force: bool) -> Result<(), Error> {
    let dir = match StateDir::open(&g.root, id) {
        Ok(d) => d,
        Err(Error::NotExist(_)) if force => {
            // A half-made directory without state (a crashed create) is removed too.
            let _ = std::fs::remove_dir_all(g.root.join(id));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let st = dir.load()?;
    match st.status(&dir.path) {
        Status::Stopped | Status::Created => {}
        status if !force => return Err(Error::Status(StatusError::DeleteNotStopped { id: id.into(), status })),
        _ => {}
    }
    kill_and_wait(&st)?;
    destroy(dir, &st)
}

/// SIGKILL the init (and, without a private pid namespace, everything in the cgroup), then wait
/// until the init is really gone.
pub(super) fn kill_and_wait(st: &State) -> Result<(), Error> {
    let pidfd = init_pidfd(st);
    if let Some(fd) = &pidfd {
        let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
    }
    if !st.own_pid_ns || pidfd.is_some() {
        signal_all(st, libc::SIGKILL)?;
    }
    if let Some(fd) = pidfd {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = KILL_WAIT.as_millis() as u16;
        let ready = poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0);
        if ready == 0 && state::process_alive(st.init_pid, st.init_start_time) {
            return Err(Error::KillTimeout {
                id: st.id.clone(),
                pid: st.init_pid,
                secs: KILL_WAIT.as_secs(),
            });
        }
    }
    Ok(())
}

pub(super) fn destroy(dir: StateDir, st: &State) -> Result<(), Error> {
    let cg = Manager::from_state(&st.cgroup);
    // Stragglers (processes that joined the cgroup, or a container without a pid namespace).
    let deadline = Instant::now() + KILL_WAIT;
    while let Ok(pids) = cg.pids() {
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        let _ = signal_all(st, libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(5));
    }
    cg.destroy()?;
    if let Err(e) = hooks::run_all("poststop", &st.poststop, &hook_state(st, Status::Stopped)) {
        crate::logging::warn(&e.to_string());
    }
    dir.remove()
}

pub fn pause(g: &Global, id: &str) -> Result<(), Error> {
    let dir = StateDir::open(&g.root, id)?;
    let st = dir.load()?;
    match st.status(&dir.path) {
        Status::Running | Status::Created => Manager::from_state(&st.cgroup).freeze().map_err(Error::from),
        Status::Paused => Err(Error::Status(StatusError::AlreadyPaused)),
        Status::Stopped => Err(Error::Status(StatusError::NotRunning)),
    }
}

pub fn resume(g: &Global, id: &str) -> Result<(), Error> {
    let dir = StateDir::open(&g.root, id)?;
    let st = dir.load()?;
    match st.status(&dir.path) {
        Status::Paused => Manager::from_state(&st.cgroup).thaw().map_err(Error::from),
        Status::Stopped => Err(Error::Status(StatusError::NotRunning)),
        _ => Err(Error::Status(StatusError::NotPaused)),
    }
}

/// Every container under the root with its status; unreadable entries are skipped with a warning.
pub fn list(g: &Global) -> Vec<(State, Status)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&g.root) else {
        return out;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    names.sort();
    for name in names {
        let path = g.root.join(&name);
        let file = path.join(state::STATE_FILE);
        let Ok(f) = std::fs::File::open(&file) else {
            continue;
        };
        match state::parse_state(std::io::BufReader::new(f)) {
            Ok(st) => {
                let status = st.status(&path);
                out.push((st, status));
            }
            Err(e) => crate::logging::warn(&format!("skipping {}: {e}", file.display())),
        }
    }
    out
}

/// Wait for our child `pid`, forwarding the signals `sfd` receives to it (or proxying the
/// terminal through `master`); returns the exit code the shell would show (128+N for a signal).
pub fn wait_forwarding(pidfd: &OwnedFd, pid: i32, master: Option<OwnedFd>, sfd: &nix::sys::signalfd::SignalFd) -> i32 {
    match master {
        Some(m) => super::tty::proxy(m, pidfd, pid, sfd),
        None => wait_signals(pidfd, pid, sfd),
    }
}

/// Block the signals we forward and read them from a signalfd instead (no handler races).
/// Called before the child is cloned, so a signal that arrives meanwhile waits to be forwarded
/// instead of killing amber (the child resets its mask).
pub fn forwarding_signalfd() -> nix::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        mask.add(s);
    }
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

fn wait_signals(pidfd: &OwnedFd, pid: i32, sfd: &nix::sys::signalfd::SignalFd) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::NONE);
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig != libc::SIGCHLD {
                let _ = sys::pidfd_send_signal(pidfd.as_fd(), sig);
            }
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => {}
            Err(_) => return 255,
        }
    }
}

/// The foreground half of `run`: start, forward signals to the init, wait for it (it is our
/// child), delete, and return the exit code the shell would show.
pub fn run_foreground(
    g: &Global,
    created: super::create::Created,
    sfd: &nix::sys::signalfd::SignalFd,
) -> Result<i32, Error> {
    let id = created.state.id.clone();
    let st = created.state.clone();
    drop(created.dir);
    if let Err(e) = start(g, &id) {
        // A run that cannot start leaves nothing behind (runc destroys it too).
        let _ = delete(g, &id, true);
        return Err(e);
    }
    let code = match created.console_master {
        Some(master) => super::tty::proxy(master, &created.pidfd, st.init_pid, sfd),
        None => wait_signals(&created.pidfd, st.init_pid, sfd),
    };
    delete(g, &id, true)?;
    Ok(code)
}

/// The foreground half of `restore`: wait for the restored init (our child now that the
/// restorer is gone and we are a subreaper), forwarding signals, then delete the container.
pub fn wait_restored(
    g: &Global,
    created: super::create::Created,
    sfd: &nix::sys::signalfd::SignalFd,
) -> Result<i32, Error> {
    let id = created.state.id.clone();
    let pid = created.state.init_pid;
    drop(created.dir);
    let code = wait_signals(&created.pidfd, pid, sfd);
    delete(g, &id, true)?;
    Ok(code)
}

/// `ps`: the container's pids as a JSON array, or ps(1)'s table restricted to them.
pub fn ps(g: &Global, id: &str, format: &str, ps_args: &[String]) -> Result<i32, Error> {
    let dir = StateDir::open(&g.root, id)?;
    let st = dir.load()?;
    let mut pids = Manager::from_state(&st.cgroup).pids()?;
    pids.sort_unstable();
    if format == "json" {
        println!("{}", serde_json::to_string(&pids).unwrap_or_else(|_| "[]".into()));
        return Ok(0);
    }
    if format == "nspid" {
        println!(
            "{}",
            serde_json::to_string(&nspid_report(&st, &pids)).unwrap_or_default()
        );
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::io("running ps", Path::new("ps"), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header.split_whitespace().position(|h| h == "PID").unwrap_or(1);
    println!("{header}");
    for l in lines {
        let pid = l.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.binary_search(&p).is_ok()) {
            println!("{l}");
        }
    }
    Ok(0)
}

/// One process of `ps --format nspid`.
#[derive(Debug, serde::Serialize, PartialEq, Eq)]
pub struct NsPids {
    /// The pid as amber sees it.
    pub pid: i32,
    /// Its pid in the container's pid namespace, then in each namespace nested below it.
    pub nspid: Vec<i32>,
}

/// NSpid vectors relative to the container: the container's level is the init's innermost.
fn nspid_report(st: &State, pids: &[i32]) -> Vec<NsPids> {
    let init_levels = read_nspid(st.init_pid).map(|v| v.len()).unwrap_or(1);
    pids.iter()
        .filter_map(|&pid| {
            let v = read_nspid(pid)?;
            Some(NsPids {
                pid,
                nspid: relative_nspid(&v, init_levels),
            })
        })
        .collect()
}

/// `NSpid:` of /proc/<pid>/status, outermost level (as seen from our /proc) first.
fn read_nspid(pid: i32) -> Option<Vec<i32>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().skip(1).map(|p| p.parse().ok()).collect()
}

/// Drop the levels above the container's: the init's vector has `init_levels` entries and its
/// last one is the container's level.
pub fn relative_nspid(nspid: &[i32], init_levels: usize) -> Vec<i32> {
    nspid.iter().skip(init_levels.saturating_sub(1)).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::relative_nspid;

    #[test]
    fn nspid_relative_to_the_container() {
        // init: host 4444, amber's ns 50, container 1
        assert_eq!(relative_nspid(&[4444, 50, 1], 3), vec![1]);
        // a process nested one level deeper than the container
        assert_eq!(relative_nspid(&[30221, 6, 3, 1], 3), vec![3, 1]);
        // no pid namespace of its own: the container level is amber's
        assert_eq!(relative_nspid(&[77], 1), vec![77]);
    }
}
