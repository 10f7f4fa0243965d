//! The container's cgroups: find the hierarchies, create the container's directories, put
//! processes in them, apply linux.resources, freeze and thaw, and remove them again.
//!
//! Works on cgroup v1, hybrid (v1 controllers plus a cgroup2 mount) and pure v2 hosts through
//! cgroupfs directly. Everything the later commands need is in [`CgroupState`], which the caller
//! keeps in state.json and hands back to [`Manager::from_state`].
//!
//! Plan, then apply: resource writes are built by pure functions (plan_v1.rs, plan_v2.rs) from
//! linux.resources and a few probed facts, then written by a small loop here.

mod devices_v2;
mod freezer;
mod fs;
mod mountinfo;
mod oom;
mod path;
mod plan;
mod plan_v1;
mod plan_v2;
mod stats;
mod sub;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_root;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use devices_v2::DeviceFilterError;
pub use mountinfo::CgroupMode;
pub use oom::OomWatcher;
pub use path::{expand_slice, systemd_to_cgroupfs};
pub use plan::{cpu_shares_to_weight, default_device_rules, CgroupWrite};
pub use plan_v1::{build_v1_plan, V1Probe};
pub use plan_v2::{build_v2_plan, V2Probe};
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuSet, CpuUsage, Event, Hugetlb, IntelRdt, Memory, MemoryEntry, NetworkInterface, Pids,
    PsiData, PsiStats, Stats, Throttling,
};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("read {path}: {source}")]
    ReadMountinfo { path: PathBuf, source: io::Error },
    #[error("parse mountinfo line {line}: malformed entry {text:?}")]
    ParseMountinfo { line: usize, text: String },
    #[error("no cgroup filesystem is mounted (no cgroup v1 controller or cgroup2 mount in mountinfo)")]
    NoCgroupFs,
    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid systemd slice {slice:?} in cgroupsPath: {reason}")]
    InvalidSlice { slice: String, reason: &'static str },
    #[error("--systemd-cgroup needs a running systemd ({marker} is missing); cannot place cgroupsPath {cgroups_path:?} — run without --systemd-cgroup to use the cgroupfs driver")]
    SystemdNotRunning { marker: PathBuf, cgroups_path: String },
    #[error("create cgroup directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cgroup {path} already exists and has processes in it (pids {pids:?})")]
    InUse { path: PathBuf, pids: Vec<i32> },
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("parse {path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("list cgroup directory {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("add pid {pid} to {path}: {source}")]
    AddTask { pid: i32, path: PathBuf, source: io::Error },
    #[error("open {path} (O_PATH) for CLONE_INTO_CGROUP: {source}")]
    OpenDir { path: PathBuf, source: io::Error },
    #[error("freezer {path} reported unexpected state {state:?}")]
    FreezerState { path: PathBuf, state: String },
    #[error("freeze {path}: still {state:?} after {attempts} attempts; thawed it again")]
    FreezeTimeout {
        path: PathBuf,
        state: String,
        attempts: u32,
    },
    #[error("remove cgroup directory {path} (after {attempts} attempts): {source}")]
    Remove {
        path: PathBuf,
        attempts: u32,
        source: io::Error,
    },
    #[error("no cgroup v1 hierarchy with the {controller} controller is mounted; needed for {needed_for}")]
    MissingController { controller: String, needed_for: String },
    #[error("cgroup v2 controller {controller:?} is not enabled in {path} (needed for {file}); the parent's cgroup.subtree_control lacks it")]
    ControllerUnavailable {
        controller: String,
        path: PathBuf,
        file: String,
    },
    #[error("linux.resources.unified is only supported on cgroup v2, and this host is {mode}")]
    UnifiedOnV1 { mode: CgroupMode },
    #[error("linux.resources.unified key {key:?}: {reason}")]
    UnifiedKey { key: String, reason: &'static str },
    #[error("linux.resources.memory: {reason} (limit {limit}, swap {swap})")]
    MemorySwap {
        limit: i64,
        swap: i64,
        reason: &'static str,
    },
    #[error("linux.resources.memory.swappiness {value} is out of range 0-100")]
    Swappiness { value: u64 },
    #[error("linux.resources.cpu realtimePeriod {period} / realtimeRuntime {runtime}: cgroup v2 has no real-time CPU controller")]
    RealtimeOnV2 { period: u64, runtime: i64 },
    #[error("linux.resources.devices rule {rule}: {reason}")]
    DeviceRule { rule: String, reason: &'static str },
    #[error(transparent)]
    DeviceFilter(#[from] DeviceFilterError),
    #[error("refusing to touch cgroup state whose path {path:?} is not the container's own directory")]
    UnsafeState { path: String },
}

/// Everything needed to reopen the container's cgroups in a later command.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CgroupState {
    pub mode: CgroupMode,
    /// The container's cgroup inside every hierarchy, e.g. "/amber-x".
    pub path: String,
    /// v1 hierarchies by controller list ("cpu,cpuacct", "memory", "name=systemd"): the
    /// container's absolute directory in each.
    pub v1: BTreeMap<String, PathBuf>,
    /// The container's directory in the cgroup2 tree: the only one on v2, the "unified" mount
    /// on hybrid.
    pub v2: Option<PathBuf>,
}

/// The container's cgroups. Cheap to build: nothing is touched until a method is called.
#[derive(Clone, Debug)]
pub struct Manager {
    state: CgroupState,
}

/// Written to cgroup.procs again on EINVAL, which the kernel returns while a freshly cloned task
/// is still TASK_NEW (runc retries the same way).
const ADD_TASK_ATTEMPTS: u32 = 5;
const ADD_TASK_DELAY: Duration = Duration::from_millis(30);

impl Manager {
    /// Resolve linux.cgroupsPath for container `id` against this host's /proc/self/mountinfo.
    pub fn new(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Manager, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|source| CgroupError::ReadMountinfo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::open(Path::new("/"), &text, cgroups_path, id, systemd)
    }

    /// Same as [`Manager::new`] without systemd, with the filesystem rooted at `fs_root` and the
    /// given mountinfo text: the seam for tests.
    pub fn with_root(
        fs_root: &Path,
        mountinfo: &str,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Manager, CgroupError> {
        Self::open(fs_root, mountinfo, cgroups_path, id, false)
    }

    /// The general form of [`Manager::new`]. With `systemd`, cgroupsPath is runc's
    /// "slice:prefix:name" and systemd must be running (fs_root/run/systemd/system exists).
    ///
    /// TODO(systemd driver): a systemd host should get a transient scope over D-Bus
    /// (StartTransientUnit with Delegate=yes) so systemd knows the unit; today the directory is
    /// created directly at the path systemd would give it.
    pub fn open(
        fs_root: &Path,
        mountinfo: &str,
        cgroups_path: Option<&str>,
        id: &str,
        systemd: bool,
    ) -> Result<Manager, CgroupError> {
        let marker = fs_root.join("run/systemd/system");
        if systemd && !marker.is_dir() {
            return Err(CgroupError::SystemdNotRunning {
                marker,
                cgroups_path: cgroups_path.unwrap_or_default().to_string(),
            });
        }
        let path = path::resolve(cgroups_path, id, systemd)?;
        let hierarchies = mountinfo::parse(mountinfo, fs_root)?;
        let rel = path.trim_start_matches('/');
        let v1 = hierarchies
            .v1
            .iter()
            .map(|m| (m.key.clone(), m.mount_point.join(rel)))
            .collect();
        let v2 = hierarchies.v2.map(|p| p.join(rel));
        Ok(Manager {
            state: CgroupState {
                mode: hierarchies.mode,
                path,
                v1,
                v2,
            },
        })
    }

    pub fn from_state(state: &CgroupState) -> Manager {
        Manager { state: state.clone() }
    }

    pub fn state(&self) -> CgroupState {
        self.state.clone()
    }

    pub fn mode(&self) -> CgroupMode {
        self.state.mode
    }

    /// Pure v2 host: the caller clones straight into the cgroup with CLONE_INTO_CGROUP.
    pub fn is_v2(&self) -> bool {
        self.state.mode == CgroupMode::V2
    }

    /// The container's directory in the cgroup2 tree (pure v2, or the unified mount on hybrid).
    pub fn v2_dir(&self) -> Option<&Path> {
        self.state.v2.as_deref()
    }

    /// mkdir -p the container's directory in every hierarchy and make it usable: cpuset values
    /// on v1, controllers delegated down the tree on v2. On failure the caller runs destroy(),
    /// except after [`CgroupError::InUse`]: those directories belong to a live cgroup that is not
    /// ours, and nothing has been created yet.
    pub fn create(&self) -> Result<(), CgroupError> {
        self.check_own_dirs()?;
        // Check every hierarchy before creating anything: a populated cgroup belongs to someone
        // else (or a live container), and nothing should be half-created beside it.
        for dir in self.dirs() {
            let pids = fs::pids_recursive(dir)?;
            if !pids.is_empty() {
                return Err(CgroupError::InUse {
                    path: dir.to_path_buf(),
                    pids,
                });
            }
        }
        for (key, dir) in &self.state.v1 {
            fs::mkdir_p(dir)?;
            if key.split(',').any(|c| c == "cpuset") {
                self.init_cpuset(dir)?;
            }
        }
        if let Some(dir) = &self.state.v2 {
            fs::mkdir_p(dir)?;
            // On hybrid the unified mount is only used for process tracking; its controllers
            // (if any) stay as the host configured them.
            if self.is_v2() {
                self.enable_controllers(dir)?;
            }
        }
        Ok(())
    }

    /// O_PATH|O_DIRECTORY|O_CLOEXEC fd of the container's cgroup for clone3's CLONE_INTO_CGROUP
    /// (pure v2 only; None otherwise).
    pub fn open_v2_dir(&self) -> Result<Option<OwnedFd>, CgroupError> {
        let Some(dir) = self.state.v2.as_ref().filter(|_| self.is_v2()) else {
            return Ok(None);
        };
        // std always adds O_CLOEXEC; read(true) only satisfies std's access-mode check, O_PATH
        // makes the kernel ignore it.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)
            .map_err(|source| CgroupError::OpenDir {
                path: dir.clone(),
                source,
            })?;
        Ok(Some(OwnedFd::from(file)))
    }

    /// Move `pid` (a whole process) into the container's cgroup in every hierarchy, including
    /// the unified one on hybrid hosts.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            let path = dir.join("cgroup.procs");
            let mut attempt = 1;
            loop {
                match fs::write_raw(&path, &pid.to_string()) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) && attempt < ADD_TASK_ATTEMPTS => {
                        sleep(ADD_TASK_DELAY);
                        attempt += 1;
                    }
                    Err(source) => return Err(CgroupError::AddTask { pid, path, source }),
                }
            }
        }
        Ok(())
    }

    /// Every process in the container's cgroups, sub-cgroups included, across all hierarchies (a
    /// process moved out of one hierarchy is still the container's while it sits in another).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            pids.extend(fs::pids_recursive(dir)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer_dir()? {
            Freezer::V1(dir) => freezer::freeze_v1(dir),
            Freezer::V2(dir) => freezer::freeze_v2(dir),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer_dir()? {
            Freezer::V1(dir) => freezer::thaw_v1(dir),
            Freezer::V2(dir) => freezer::thaw_v2(dir),
        }
    }

    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.freezer_dir()? {
            Freezer::V1(dir) => freezer::is_frozen_v1(dir),
            Freezer::V2(dir) => freezer::is_frozen_v2(dir),
        }
    }

    /// Remove the container's directories in every hierarchy, sub-cgroups first. Kill (and on v1
    /// thaw) the processes before: rmdir waits for them only about a second. Every hierarchy is
    /// attempted; the first failure is returned.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.check_own_dirs()?;
        fs::remove_trees(&self.dirs().collect::<Vec<_>>())
    }

    /// For mounting /sys/fs/cgroup inside a container on v1: (directory name under
    /// /sys/fs/cgroup, e.g. "cpu,cpuacct" or "systemd"; the container's host directory).
    pub fn v1_container_mounts(&self) -> Vec<(String, PathBuf)> {
        self.state
            .v1
            .values()
            .filter_map(|dir| Some((self.mount_name(dir)?, dir.clone())))
            .collect()
    }

    /// Symlinks next to co-mounted hierarchies, as hosts have them: ("cpu", "cpu,cpuacct").
    pub fn v1_symlinks(&self) -> Vec<(String, String)> {
        let mut links = Vec::new();
        for (key, dir) in &self.state.v1 {
            let Some(name) = self.mount_name(dir) else {
                continue;
            };
            if !name.contains(',') {
                continue;
            }
            for c in key.split(',').filter(|c| !c.starts_with("name=") && *c != name) {
                links.push((c.to_string(), name.clone()));
            }
        }
        links
    }

    /// Apply linux.resources: probe, plan, write. On v1 `unified` is refused; on v2 the device
    /// rules become an eBPF filter attached to the cgroup (devices_v2.rs).
    pub fn apply_resources(&self, res: &oci_spec::runtime::LinuxResources) -> Result<(), CgroupError> {
        self.write_resources(res, true)
    }

    /// `update`: like `apply_resources` but the device rules are left alone (rewriting them
    /// on a running v1 container would deny every device for a moment; runc's update does not
    /// touch devices either).
    pub fn update_resources(&self, res: &oci_spec::runtime::LinuxResources) -> Result<(), CgroupError> {
        self.write_resources(res, false)
    }

    fn write_resources(&self, res: &oci_spec::runtime::LinuxResources, devices: bool) -> Result<(), CgroupError> {
        if self.is_v2() {
            let dir = self.state.v2.as_deref().ok_or(CgroupError::NoCgroupFs)?;
            let probe = V2Probe {
                io_bfq: dir.join("io.bfq.weight").exists(),
            };
            // Built before any write so that a bad rule fails with nothing changed, as on v1.
            let filter = devices
                .then(|| devices_v2::build_device_filter(res.devices().as_deref().unwrap_or_default()))
                .transpose()?;
            for w in build_v2_plan(res, &probe)? {
                self.write_v2(dir, &w)?;
            }
            if let Some(filter) = filter {
                devices_v2::apply_device_filter(dir, &filter)?;
            }
        } else {
            let memory = self.v1_dir("memory");
            let probe = V1Probe {
                memsw: memory.is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists()),
                blkio_bfq: self
                    .v1_dir("blkio")
                    .is_some_and(|d| d.join("blkio.bfq.weight").exists()),
                memory_limit: memory.and_then(|d| {
                    let text = std::fs::read_to_string(d.join("memory.limit_in_bytes")).ok()?;
                    text.trim().parse().ok()
                }),
            };
            let plan = build_v1_plan(res, &probe, self.state.mode)?;
            for w in plan.iter().filter(|w| devices || w.controller != "devices") {
                let dir = self
                    .v1_dir(&w.controller)
                    .ok_or_else(|| CgroupError::MissingController {
                        controller: w.controller.clone(),
                        needed_for: w.file.clone(),
                    })?;
                fs::write_file(&dir.join(&w.file), &w.value)?;
            }
        }
        Ok(())
    }

    fn write_v2(&self, dir: &Path, w: &CgroupWrite) -> Result<(), CgroupError> {
        let path = dir.join(&w.file);
        let Err(source) = fs::write_raw(&path, &w.value) else {
            return Ok(());
        };
        if source.kind() == io::ErrorKind::NotFound {
            if w.optional {
                return Ok(());
            }
            // A missing file nearly always means the controller is not delegated to this cgroup;
            // say that rather than "no such file".
            let enabled = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            if w.controller != "cgroup" && !enabled.split_whitespace().any(|c| c == w.controller) {
                return Err(CgroupError::ControllerUnavailable {
                    controller: w.controller.clone(),
                    path: dir.to_path_buf(),
                    file: w.file.clone(),
                });
            }
        }
        Err(CgroupError::Write {
            path,
            value: w.value.clone(),
            source,
        })
    }

    /// All of the container's directories: v1 hierarchies, then the cgroup2 one.
    fn dirs(&self) -> impl Iterator<Item = &Path> {
        let v1 = self.state.v1.values().map(PathBuf::as_path);
        v1.chain(self.state.v2.as_deref())
    }

    /// The container's directory in the v1 hierarchy carrying `controller`.
    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.state
            .v1
            .iter()
            .find(|(key, _)| key.split(',').any(|c| c == controller))
            .map(|(_, dir)| dir.as_path())
    }

    fn freezer_dir(&self) -> Result<Freezer<'_>, CgroupError> {
        if self.is_v2() {
            return self.state.v2.as_deref().map(Freezer::V2).ok_or(CgroupError::NoCgroupFs);
        }
        // Hybrid too: runc and CRIU freeze through the v1 freezer there, and status ("paused")
        // must be read from the same place that pause wrote.
        self.v1_dir("freezer")
            .map(Freezer::V1)
            .ok_or_else(|| CgroupError::MissingController {
                controller: "freezer".to_string(),
                needed_for: "pause/resume".to_string(),
            })
    }

    /// Number of components in the container's path ("/a/b" → 2).
    fn depth(&self) -> usize {
        self.state.path.split('/').filter(|c| !c.is_empty()).count()
    }

    /// The mount point of the hierarchy holding `dir` (the container's directory in it).
    fn mount_point<'a>(&self, dir: &'a Path) -> Option<&'a Path> {
        dir.ancestors().nth(self.depth())
    }

    fn mount_name(&self, dir: &Path) -> Option<String> {
        let mp = self.mount_point(dir)?;
        Some(mp.file_name()?.to_string_lossy().into_owned())
    }

    /// A state read back from disk drives rmdir and writes: make sure it names a directory
    /// below a hierarchy root, and that every directory really ends with the container's path.
    fn check_own_dirs(&self) -> Result<(), CgroupError> {
        let unsafe_state = || CgroupError::UnsafeState {
            path: self.state.path.clone(),
        };
        if path::clean(&self.state.path) != self.state.path || self.depth() == 0 {
            return Err(unsafe_state());
        }
        let rel = Path::new(self.state.path.trim_start_matches('/'));
        if self.dirs().any(|d| !d.ends_with(rel)) {
            return Err(unsafe_state());
        }
        Ok(())
    }

    /// A new v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems, and the kernel
    /// refuses to attach tasks to it (ENOSPC) until both are set. Copy them from the parent at
    /// every level we may have just created, top down.
    fn init_cpuset(&self, dir: &Path) -> Result<(), CgroupError> {
        let Some(root) = self.mount_point(dir) else {
            return Ok(());
        };
        let mut levels: Vec<&Path> = dir.ancestors().take_while(|p| *p != root).collect();
        levels.reverse();
        for level in levels {
            let Some(parent) = level.parent() else {
                continue;
            };
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let current = fs::read_file(&level.join(file))?;
                if current.trim().is_empty() {
                    let value = fs::read_file(&parent.join(file))?;
                    fs::write_file(&level.join(file), value.trim())?;
                }
            }
        }
        Ok(())
    }

    /// Enable in every ancestor's cgroup.subtree_control the controllers available there, so the
    /// container's cgroup gets them (what runc does). Failures are ignored on purpose: a parent
    /// with processes of its own cannot delegate domain controllers (no-internal-process rule),
    /// and a resource that needs a missing controller fails later with ControllerUnavailable,
    /// naming the setting, which says more than an error here.
    fn enable_controllers(&self, dir: &Path) -> Result<(), CgroupError> {
        let Some(root) = self.mount_point(dir) else {
            return Ok(());
        };
        let mut parents: Vec<&Path> = dir.ancestors().skip(1).take(self.depth()).collect();
        parents.reverse();
        debug_assert!(parents.first().is_none_or(|p| *p == root));
        for parent in parents {
            let available = fs::read_file(&parent.join("cgroup.controllers"))?;
            let wanted: Vec<String> = available.split_whitespace().map(|c| format!("+{c}")).collect();
            if wanted.is_empty() {
                continue;
            }
            let control = parent.join("cgroup.subtree_control");
            if fs::write_raw(&control, &wanted.join(" ")).is_err() {
                // One failing controller rejects the whole write; enable the others one by one.
                for c in &wanted {
                    let _ = fs::write_raw(&control, c);
                }
            }
        }
        Ok(())
    }
}

enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}
