//! `<root>/<id>/`: state.json (written atomically), the lock, the exec fifo. Status is derived
//! from the init's liveness (pid + start time, never the bare pid), the fifo, and the freezer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Hook;
use serde::{Deserialize, Serialize};

use super::Error;
use crate::cgroups::{CgroupState, Manager};

pub const OCI_VERSION: &str = "1.2.0";
pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
pub const LOCK_FILE: &str = "lock";
const STATE_MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What amber keeps about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub id: String,
    pub init_pid: i32,
    /// Field 22 of /proc/<pid>/stat when the init was created: tells a recycled pid apart.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: CgroupState,
    /// The init has its own pid namespace: killing it kills everything in the container.
    pub own_pid_ns: bool,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

/// runc's `state` output, field for field and in runc's order.
#[derive(Debug, Serialize)]
pub struct PublicState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
    pub owner: &'a str,
}

impl State {
    pub fn status(&self, dir: &Path) -> Status {
        if !process_alive(self.init_pid, self.init_start_time) {
            return Status::Stopped;
        }
        // Frozen wins over created, as in runc: a created container can be paused, and is
        // created again once resumed.
        if Manager::from_state(&self.cgroup).is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        if dir.join(FIFO).exists() {
            return Status::Created;
        }
        Status::Running
    }

    pub fn public<'a>(&'a self, status: Status) -> PublicState<'a> {
        PublicState {
            oci_version: OCI_VERSION,
            id: &self.id,
            pid: if status == Status::Stopped { 0 } else { self.init_pid },
            status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            annotations: &self.annotations,
            owner: &self.owner,
        }
    }
}

/// (state, start time) of a process from /proc/<pid>/stat; None when it is gone.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn process_alive(pid: i32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Some((s, t)) if t == start_time && s != 'Z' && s != 'X')
}

/// A locked state directory.
pub struct StateDir {
    pub path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Create `<root>/<id>` exclusively: an existing id is an error, never a reuse.
    pub fn create(root: &Path, id: &str) -> Result<StateDir, Error> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("creating state root", root, e))?;
        let path = root.join(id);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists(id.to_string())),
            Err(e) => return Err(Error::io("creating state directory", &path, e)),
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o711));
        Self::lock(path)
    }

    pub fn open(root: &Path, id: &str) -> Result<StateDir, Error> {
        let path = root.join(id);
        if !path.join(STATE_FILE).exists() {
            return Err(Error::NotExist(id.to_string()));
        }
        let dir = Self::lock(path)?;
        // A delete that held the lock before us may have removed everything meanwhile.
        if !dir.path.join(STATE_FILE).exists() {
            return Err(Error::NotExist(id.to_string()));
        }
        Ok(dir)
    }

    /// Commands on one id serialise on this lock (create/start/kill/delete racing each other).
    /// A POSIX record lock, not flock(2): record locks are not inherited by the container init
    /// that create forks, so the lock ends with the amber process that took it.
    fn lock(path: PathBuf) -> Result<StateDir, Error> {
        let file = path.join(LOCK_FILE);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)
            .map_err(|e| Error::io("opening lock file", &file, e))?;
        let lk = libc::flock {
            l_type: libc::F_WRLCK as i16,
            l_whence: libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        loop {
            match nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLKW(&lk)) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("locking state directory", &file, e.into())),
            }
        }
        Ok(StateDir { path, _lock: f })
    }

    pub fn load(&self) -> Result<State, Error> {
        let file = self.path.join(STATE_FILE);
        let f = File::open(&file).map_err(|e| Error::io("reading state", &file, e))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > STATE_MAX_BYTES {
            return Err(Error::CorruptState {
                path: file,
                reason: format!("{len} bytes is too large"),
            });
        }
        parse_state(std::io::BufReader::new(f)).map_err(|reason| Error::CorruptState { path: file, reason })
    }

    /// Write state.json atomically: a temp file in the same directory, then rename. No fsync:
    /// the state root is a tmpfs (/run) in practice, and after a crash the container processes
    /// are gone anyway; an fsync here cost up to a second on a busy disk.
    pub fn save(&self, state: &State) -> Result<(), Error> {
        let file = self.path.join(STATE_FILE);
        let tmp = self.path.join(".state.json.tmp");
        let bytes = serde_json::to_vec(state).map_err(|e| Error::io("encoding state", &file, e.into()))?;
        let mut f = File::create(&tmp).map_err(|e| Error::io("writing state", &tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io("writing state", &tmp, e))?;
        std::fs::rename(&tmp, &file).map_err(|e| Error::io("renaming state", &file, e))
    }

    pub fn remove(self) -> Result<(), Error> {
        std::fs::remove_dir_all(&self.path).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(Error::io("removing state directory", &self.path, e))
            }
        })
    }
}

/// Parse state.json strictly (unknown fields refused): also the fuzzing entry point.
pub fn parse_state(r: impl std::io::Read) -> Result<State, String> {
    serde_json::from_reader(r).map_err(|e| e.to_string())
}

/// Write `pid` to `path` atomically, as a bare decimal with no newline (containerd parses it
/// with strconv.Atoi; conmon reads it right after we exit).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("writing pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("writing pid file", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_start_time_matters() {
        let me = std::process::id() as i32;
        let (_, start) = proc_stat(me).unwrap();
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(i32::MAX, start));
    }

    #[test]
    fn public_state_matches_runc_field_order() {
        let s = State {
            id: "c1".into(),
            init_pid: 42,
            init_start_time: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-01-01T00:00:00Z".into(),
            owner: "".into(),
            annotations: BTreeMap::new(),
            cgroup: CgroupState {
                mode: crate::cgroups::CgroupMode::V2,
                path: "/c1".into(),
                v1: BTreeMap::new(),
                v2: None,
            },
            own_pid_ns: true,
            poststart: vec![],
            poststop: vec![],
        };
        let out = serde_json::to_string(&s.public(Status::Stopped)).unwrap();
        assert_eq!(
            out,
            r#"{"ociVersion":"1.2.0","id":"c1","pid":0,"status":"stopped","bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z","owner":""}"#
        );
        let running = serde_json::to_string(&s.public(Status::Running)).unwrap();
        assert!(running.contains(r#""pid":42,"status":"running""#));
    }

    #[test]
    fn state_parser_refuses_garbage() {
        assert!(parse_state(&b"{"[..]).is_err());
        assert!(parse_state(&br#"{"id":"x","unknown":1}"#[..]).is_err());
    }

    #[test]
    fn pid_file_is_bare_decimal() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pid");
        write_pid_file(&p, 1234).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1234");
    }
}
