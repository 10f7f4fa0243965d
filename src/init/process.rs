//! Process attributes applied by the init after the rootfs is in place: sysctl, oom score,
//! rlimits, cwd, the executable lookup, user and groups, capabilities, no_new_privs, umask, the
//! console, and finally execve.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use caps::CapSet;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process, Spec};

use super::{at, cstring, InitError, Never};
use crate::sys;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn wants_terminal(process: &Process) -> bool {
    process.terminal().unwrap_or(false)
}

/// linux.sysctl, written in the container's /proc after pivot_root.
pub fn apply_sysctl(spec: &Spec) -> Result<(), InitError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value.as_bytes()).map_err(at(format!("setting sysctl {key}={value}")))?;
    }
    Ok(())
}

/// In a new user namespace: take uid/gid 0 there (mapped by the parent before Go).
pub fn become_root() -> nix::Result<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
}

/// The process to exec, with everything resolved up front so that late failures are rare.
pub struct Prepared<'a> {
    process: &'a Process,
    argv: Vec<CString>,
    envp: Vec<CString>,
    exe: PathBuf,
    preserve_fds: u32,
    _console: Option<OwnedFd>,
}

impl<'a> Prepared<'a> {
    pub fn new(process: &'a Process, preserve_fds: u32, console: Option<OwnedFd>) -> Result<Self, InitError> {
        let args = process.args().clone().unwrap_or_default();
        let first = args
            .first()
            .ok_or_else(|| InitError::step("process.args", "must not be empty"))?;
        let env = process.env().clone().unwrap_or_default();
        let argv = args
            .iter()
            .map(|a| cstring(a, "process.args"))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|e| cstring(e, "process.env"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared {
            process,
            argv,
            envp,
            exe: PathBuf::from(first),
            preserve_fds,
            _console: console,
        })
    }

    /// Everything that still needs root in the container: oom score, rlimits, cwd, lookup.
    pub fn apply_before_user(&mut self) -> Result<(), InitError> {
        if let Some(adj) = self.process.oom_score_adj() {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(at(format!("setting oom_score_adj to {adj}")))?;
        }
        for rl in self.process.rlimits().clone().unwrap_or_default() {
            let num = rlimit_number(rl.typ());
            sys::setrlimit(num, rl.soft(), rl.hard()).map_err(|e| {
                InitError::step(
                    "error setting rlimits for ready process",
                    format!("error setting rlimit type {num} ({}): {}", rl.typ(), errno_text(&e)),
                )
            })?;
        }
        if !self.envp.iter().any(|e| e.to_bytes().starts_with(b"HOME=")) {
            // runc's rule: HOME from the user's passwd entry in the container, else "/".
            let home = passwd_home(self.process.user().uid()).unwrap_or_else(|| "/".into());
            self.envp.push(cstring(&format!("HOME={home}"), "HOME")?);
        }
        apply_scheduling(self.process)?;
        let cwd = self.process.cwd();
        nix::unistd::chdir(cwd).map_err(|e| {
            InitError::step(
                format!("chdir to cwd ({:?}) set in config.json", cwd),
                e.desc().to_lowercase(),
            )
        })?;
        self.exe = lookup_executable(&self.exe, &self.envp)?;
        Ok(())
    }

    /// Drop to the configured user and capabilities.
    pub fn apply_user(&self) -> Result<(), InitError> {
        let user = self.process.user();
        let uid = Uid::from_raw(user.uid());
        let gid = Gid::from_raw(user.gid());
        let groups: Vec<Gid> = user
            .additional_gids()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(Gid::from_raw)
            .collect();
        // Keep permitted caps across the uid change; the sets are re-applied right after.
        nix::sys::prctl::set_keepcaps(true).map_err(at("prctl(PR_SET_KEEPCAPS)"))?;
        if let Some(caps) = self.process.capabilities() {
            let bounding = to_caps(caps.bounding());
            for c in caps::all() {
                if !bounding.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
                    caps::drop(None, CapSet::Bounding, c).map_err(at(format!("dropping {c} from the bounding set")))?;
                }
            }
        }
        if groups_allowed() {
            nix::unistd::setgroups(&groups).map_err(at("setgroups"))?;
        }
        nix::unistd::setresgid(gid, gid, gid).map_err(at(format!("setgid {gid}")))?;
        nix::unistd::setresuid(uid, uid, uid).map_err(at(format!("setuid {uid}")))?;
        nix::sys::prctl::set_keepcaps(false).map_err(at("prctl(PR_SET_KEEPCAPS, 0)"))?;
        match self.process.capabilities() {
            Some(c) => {
                let set = |which: CapSet, list: &Option<oci_spec::runtime::Capabilities>| {
                    caps::set(None, which, &to_caps(list)).map_err(at(format!("setting {which:?} capabilities")))
                };
                // Shrink effective first (it must stay within permitted), then inheritable
                // while permitted still allows it, and permitted last.
                set(CapSet::Effective, c.effective())?;
                set(CapSet::Inheritable, c.inheritable())?;
                set(CapSet::Permitted, c.permitted())?;
                // The kernel raises an ambient cap only if it is permitted and inheritable; like
                // runc, one that is not is left out rather than failing the container.
                let pi: caps::CapsHashSet = to_caps(c.permitted())
                    .intersection(&to_caps(c.inheritable()))
                    .copied()
                    .collect();
                for cap in to_caps(c.ambient()).into_iter().filter(|c| pi.contains(c)) {
                    caps::raise(None, CapSet::Ambient, cap).map_err(at(format!("raising ambient {cap}")))?;
                }
            }
            None => {
                for which in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
                    caps::clear(None, which).map_err(at("clearing capabilities"))?;
                }
            }
        }
        if self.process.no_new_privileges().unwrap_or(false) {
            nix::sys::prctl::set_no_new_privs().map_err(at("prctl(PR_SET_NO_NEW_PRIVS)"))?;
        }
        if let Some(mask) = user.umask() {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        }
        Ok(())
    }

    pub fn exec(&self) -> Result<Never, InitError> {
        // CVE-2024-21626: nothing of the runtime's may survive into the container process. Fds
        // 0-2 and the preserved ones stay; everything else is closed by execve.
        sys::cloexec_from(3 + self.preserve_fds).map_err(at("close_range"))?;
        let path = cstring(&self.exe.to_string_lossy(), "process.args[0]")?;
        let err = nix::unistd::execve(&path, &self.argv, &self.envp).unwrap_err();
        Err(InitError::Exec {
            cmd: self.argv[0].to_string_lossy().into_owned(),
            detail: errno_text(&std::io::Error::from(err)),
        })
    }
}

/// Lowercase errno text, as Go prints it ("operation not permitted"), which engines match on.
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// process.scheduler and process.ioPriority.
fn apply_scheduling(p: &Process) -> Result<(), InitError> {
    use oci_spec::runtime::{IOPriorityClass, LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    if let Some(s) = p.scheduler() {
        let policy = match s.policy() {
            P::SchedOther => 0,
            P::SchedFifo => 1,
            P::SchedRr => 2,
            P::SchedBatch => 3,
            P::SchedIso => 4,
            P::SchedIdle => 5,
            P::SchedDeadline => 6,
        };
        let flags = s.flags().iter().flatten().fold(0u64, |acc, f| {
            acc | match f {
                F::SchedResetOnFork => 0x01,
                F::SchedFlagReclaim => 0x02,
                F::SchedFlagDLOverrun => 0x04,
                F::SchedFlagKeepPolicy => 0x08,
                F::SchedFlagKeepParams => 0x10,
                F::SchedFlagUtilClampMin => 0x20,
                F::SchedFlagUtilClampMax => 0x40,
            }
        });
        let attr = sys::SchedAttr {
            sched_policy: policy,
            sched_flags: flags,
            sched_nice: s.nice().unwrap_or(0),
            sched_priority: s.priority().unwrap_or(0).max(0) as u32,
            sched_runtime: s.runtime().unwrap_or(0),
            sched_deadline: s.deadline().unwrap_or(0),
            sched_period: s.period().unwrap_or(0),
            ..Default::default()
        };
        sys::sched_setattr(&attr).map_err(|e| InitError::step("setting process.scheduler", errno_text(&e)))?;
    }
    if let Some(io) = p.io_priority() {
        let class = match io.class() {
            IOPriorityClass::IoprioClassRt => 1,
            IOPriorityClass::IoprioClassBe => 2,
            IOPriorityClass::IoprioClassIdle => 3,
        };
        sys::ioprio_set(class, io.priority().clamp(0, 7) as u32)
            .map_err(|e| InitError::step("setting process.ioPriority", errno_text(&e)))?;
    }
    Ok(())
}

/// linux.personality: the execution domain (LINUX or LINUX32), kept across execve.
pub fn apply_personality(spec: &Spec) -> Result<(), InitError> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().clone()) else {
        return Ok(());
    };
    let persona = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    sys::personality(persona).map_err(|e| InitError::step("setting linux.personality", errno_text(&e)))
}

/// The home directory of `uid` in the container's /etc/passwd.
fn passwd_home(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    home_from_passwd(&text, uid)
}

pub fn home_from_passwd(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// setgroups is refused in a user namespace whose /proc/self/setgroups says "deny".
fn groups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}

fn to_caps(list: &Option<oci_spec::runtime::Capabilities>) -> caps::CapsHashSet {
    let supported = caps::runtime::thread_all_supported();
    list.iter()
        .flatten()
        .filter_map(|c| format!("CAP_{c}").parse::<caps::Capability>().ok())
        // Capabilities newer than this kernel are skipped, as runc does.
        .filter(|c| supported.contains(c))
        .collect()
}

pub fn rlimit_number(t: PosixRlimitType) -> i32 {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as i32
}

/// Go's exec.LookPath inside the container: a name with a slash is used as is, otherwise each
/// PATH entry (from the process env) is tried. The error text is runc's, which podman maps to 127.
pub fn lookup_executable(exe: &Path, envp: &[CString]) -> Result<PathBuf, InitError> {
    let name = exe.to_string_lossy().into_owned();
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        return match std::fs::metadata(exe) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(exe.to_path_buf()),
            Ok(_) => Err(InitError::Exec {
                cmd: name,
                detail: "permission denied".into(),
            }),
            Err(e) => Err(InitError::Exec {
                cmd: name,
                detail: errno_text(&e),
            }),
        };
    }
    let path = envp
        .iter()
        .filter_map(|e| e.to_str().ok())
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(&name);
        if is_exec(&candidate) {
            return Ok(candidate);
        }
    }
    Err(InitError::NotFound(name))
}

/// Open a pty in the container's devpts, send the master to the console socket in one sendmsg
/// with exactly one fd, and make the slave our controlling terminal and stdio.
pub fn setup_console(sock: &UnixStream, bind_console: bool, process: &Process) -> Result<OwnedFd, InitError> {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(at("opening /dev/ptmx"))?;
    grantpt(&master).map_err(at("grantpt"))?;
    unlockpt(&master).map_err(at("unlockpt"))?;
    let name = ptsname_r(&master).map_err(at("ptsname"))?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .map_err(at(format!("opening pty slave {name}")))?
        .into();
    // process.consoleSize is the terminal's initial size (a foreground proxy later copies the
    // caller's own size over it).
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        sys::set_winsize(slave.as_fd(), &ws).map_err(at("setting process.consoleSize"))?;
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(at("sending the pty master to the console socket"))?;
    // /dev/console is the container's terminal, as runc and crun provide it.
    // (Only for the init: an exec'd process must not take over the container's console.)
    if bind_console {
        let console = Path::new("/dev/console");
        if !console.exists() {
            let _ = std::fs::File::create(console);
        }
        nix::mount::mount(
            Some(name.as_str()),
            console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(at("bind-mounting the pty on /dev/console"))?;
    }
    sys::set_controlling_tty(slave.as_fd()).map_err(at("making the pty the controlling terminal"))?;
    for target in 0..=2 {
        nix::unistd::dup2(slave.as_raw_fd(), target).map_err(at("dup2 of the pty onto stdio"))?;
    }
    Ok(slave)
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_lookup() {
        let pw = "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000::/home/tester:/bin/sh\nbad line\n";
        assert_eq!(home_from_passwd(pw, 0).as_deref(), Some("/root"));
        assert_eq!(home_from_passwd(pw, 1000).as_deref(), Some("/home/tester"));
        assert_eq!(home_from_passwd(pw, 5), None);
    }

    #[test]
    fn rlimit_numbers_match_the_kernel() {
        assert_eq!(rlimit_number(PosixRlimitType::RlimitNofile), 7);
        assert_eq!(rlimit_number(PosixRlimitType::RlimitCpu), 0);
        assert_eq!(rlimit_number(PosixRlimitType::RlimitRttime), 15);
    }

    #[test]
    fn lookup_reports_runc_wording() {
        let env = [CString::new("PATH=/nonexistent-dir").unwrap()];
        let e = lookup_executable(Path::new("nosuchcmd"), &env).unwrap_err();
        assert_eq!(e.to_string(), "exec: \"nosuchcmd\": executable file not found in $PATH");
        let found = lookup_executable(Path::new("sh"), &[CString::new("PATH=/bin").unwrap()]).unwrap();
        assert_eq!(found, PathBuf::from("/bin/sh"));
        let e = lookup_executable(Path::new("/no/such"), &env).unwrap_err();
        assert!(e.to_string().contains("no such file or directory"), "{e}");
    }
}
