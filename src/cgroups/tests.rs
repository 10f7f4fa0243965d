//! Manager tests on a fake cgroup filesystem in a tempdir (no root needed). A tmpfs directory is
//! not cgroupfs: control files the kernel would create are created here by hand where a test
//! needs them.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::mountinfo::fixtures::{HYBRID_COMOUNTED, HYBRID_THIS_MACHINE, PURE_V2};
use super::*;

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

fn touch(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn pids_limit(n: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(n).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn hybrid_state_and_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    assert!(!m.is_v2());
    let st = m.state();
    assert_eq!(st.mode, CgroupMode::Hybrid);
    assert_eq!(st.path, "/ctr");
    assert_eq!(st.v1.len(), 9);
    assert_eq!(st.v1["memory"], tmp.path().join("sys/fs/cgroup/memory/ctr"));
    assert_eq!(st.v1["name=systemd"], tmp.path().join("sys/fs/cgroup/systemd/ctr"));
    assert_eq!(st.v2, Some(tmp.path().join("sys/fs/cgroup/unified/ctr")));
    let json = serde_json::to_string(&st).unwrap();
    assert!(json.contains("\"mode\":\"hybrid\""), "{json}");
    let back: CgroupState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, st);
    assert_eq!(Manager::from_state(&back).state(), st);
}

#[test]
fn cgroups_path_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |p: Option<&str>| {
        let m = Manager::with_root(tmp.path(), PURE_V2, p, "ctr").unwrap();
        assert!(m.is_v2());
        m.state().v2.unwrap()
    };
    let root = tmp.path().join("sys/fs/cgroup");
    assert_eq!(dir(None), root.join("ctr"));
    assert_eq!(dir(Some("/kubepods/pod1/ctr")), root.join("kubepods/pod1/ctr"));
    assert_eq!(dir(Some("machine/ctr")), root.join("machine/ctr"));
    assert_eq!(dir(Some("/../../../etc")), root.join("etc"));
}

#[test]
fn systemd_needs_systemd() {
    let tmp = tempfile::tempdir().unwrap();
    let open = || Manager::open(tmp.path(), PURE_V2, Some("system.slice:crio:abc"), "abc", true);
    let err = open().unwrap_err();
    assert!(matches!(err, CgroupError::SystemdNotRunning { .. }));
    let msg = err.to_string();
    assert!(msg.contains("--systemd-cgroup") && msg.contains("systemd"), "{msg}");

    fs::create_dir_all(tmp.path().join("run/systemd/system")).unwrap();
    let m = open().unwrap();
    assert_eq!(m.state().path, "/system.slice/crio-abc.scope");
    let bad = Manager::open(tmp.path(), PURE_V2, Some("/not/systemd"), "abc", true).unwrap_err();
    assert!(matches!(bad, CgroupError::InvalidPath { .. }), "{bad}");
}

#[test]
fn container_mounts_and_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_COMOUNTED, Some("/a/b"), "x").unwrap();
    let mounts = m.v1_container_mounts();
    let names: Vec<&str> = mounts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu,cpuacct",
            "cpuset",
            "freezer",
            "memory",
            "systemd",
            "net_cls,net_prio"
        ],
    );
    assert_eq!(
        mounts[0].1,
        tmp.path().join("sys/fs/cgroup/cpu,cpuacct/a/b"),
        "host dir is the container's cgroup, not the hierarchy root"
    );
    let links = m.v1_symlinks();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        links,
        [
            s("cpu", "cpu,cpuacct"),
            s("cpuacct", "cpu,cpuacct"),
            s("net_cls", "net_cls,net_prio"),
            s("net_prio", "net_cls,net_prio"),
        ]
    );
    let this = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "x").unwrap();
    assert!(
        this.v1_symlinks().is_empty(),
        "separate cpu and cpuacct mounts need no links"
    );
    assert_eq!(this.v1_container_mounts().len(), 9);
    let v2 = Manager::with_root(tmp.path(), PURE_V2, None, "x").unwrap();
    assert!(v2.v1_container_mounts().is_empty());
}

/// The kernel's side of a v1 cpuset hierarchy: values at the root, empty files in new cgroups.
fn fake_cpuset(root: &Path, levels: &[&str]) {
    touch(&root.join("cpuset.cpus"), "0-3\n");
    touch(&root.join("cpuset.mems"), "0\n");
    let mut dir = root.to_path_buf();
    for l in levels {
        dir.push(l);
        touch(&dir.join("cpuset.cpus"), "\n");
        touch(&dir.join("cpuset.mems"), "\n");
    }
}

#[test]
fn create_v1_copies_cpuset_down_every_level() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = tmp.path().join("sys/fs/cgroup");
    fake_cpuset(&cg.join("cpuset"), &["parent", "ctr"]);
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, Some("/parent/ctr"), "x").unwrap();
    m.create().unwrap();
    for dir in m.state().v1.values().chain(m.state().v2.iter()) {
        assert!(dir.is_dir(), "{}", dir.display());
    }
    assert_eq!(read(&cg.join("cpuset/parent/cpuset.cpus")).trim(), "0-3");
    assert_eq!(read(&cg.join("cpuset/parent/ctr/cpuset.mems")).trim(), "0");
    assert!(m.open_v2_dir().unwrap().is_none(), "no CLONE_INTO_CGROUP on hybrid");
}

#[test]
fn create_refuses_populated_existing_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = tmp.path().join("sys/fs/cgroup");
    fake_cpuset(&cg.join("cpuset"), &["ctr"]);
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    // Existing and empty: fine.
    touch(&cg.join("pids/ctr/cgroup.procs"), "");
    m.create().unwrap();
    // Existing with a process in a sub-cgroup: refused, and named.
    touch(&cg.join("memory/ctr/sub/cgroup.procs"), "4242\n");
    let err = m.create().unwrap_err();
    assert!(
        matches!(&err, CgroupError::InUse { pids, .. } if pids == &[4242]),
        "{err}"
    );
    assert!(err.to_string().contains("memory/ctr"), "{err}");
}

#[test]
fn create_v2_enables_controllers_in_ancestors() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = tmp.path().join("sys/fs/cgroup");
    for (dir, ctrl) in [
        (cg.clone(), "cpuset cpu io memory pids"),
        (cg.join("pod"), "cpu memory"),
    ] {
        touch(&dir.join("cgroup.controllers"), ctrl);
        touch(&dir.join("cgroup.subtree_control"), "");
    }
    let m = Manager::with_root(tmp.path(), PURE_V2, Some("/pod/ctr"), "x").unwrap();
    m.create().unwrap();
    assert!(cg.join("pod/ctr").is_dir());
    assert_eq!(
        read(&cg.join("cgroup.subtree_control")),
        "+cpuset +cpu +io +memory +pids"
    );
    assert_eq!(read(&cg.join("pod/cgroup.subtree_control")), "+cpu +memory");
    let fd = m.open_v2_dir().unwrap();
    assert!(fd.is_some(), "O_PATH fd for CLONE_INTO_CGROUP");
}

#[test]
fn apply_v2_writes_and_names_missing_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sys/fs/cgroup/ctr");
    touch(&dir.join("cgroup.controllers"), "cpu memory pids");
    for f in ["memory.max", "memory.swap.max", "pids.max"] {
        touch(&dir.join(f), "max\n");
    }
    let m = Manager::with_root(tmp.path(), PURE_V2, None, "ctr").unwrap();
    let mem = LinuxMemoryBuilder::default()
        .limit(1 << 20)
        .swap(2 << 20)
        .build()
        .unwrap();
    let res = LinuxResourcesBuilder::default()
        .memory(mem)
        .pids(LinuxPidsBuilder::default().limit(7).build().unwrap())
        .build()
        .unwrap();
    m.apply_resources(&res).unwrap();
    assert_eq!(read(&dir.join("memory.max")), "1048576");
    assert_eq!(read(&dir.join("memory.swap.max")), "1048576");
    assert!(read(&dir.join("pids.max")).starts_with('7'));

    let io = LinuxBlockIoBuilder::default().weight(100u16).build().unwrap();
    let res = LinuxResourcesBuilder::default().block_io(io).build().unwrap();
    let err = m.apply_resources(&res).unwrap_err();
    assert!(
        matches!(&err, CgroupError::ControllerUnavailable { controller, .. } if controller == "io"),
        "{err}"
    );
    // Enabled but the file is still missing: a plain write error with path and value.
    fs::remove_file(dir.join("pids.max")).unwrap();
    let err = m.apply_resources(&pids_limit(9)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pids.max") && msg.contains("\"9\""), "{msg}");
    assert!(!dir.join("pids.max").exists(), "never created");
}

#[test]
fn apply_v2_swap_max_optional_without_swap_accounting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sys/fs/cgroup/ctr");
    touch(&dir.join("cgroup.controllers"), "memory");
    touch(&dir.join("memory.max"), "max\n");
    let m = Manager::with_root(tmp.path(), PURE_V2, None, "ctr").unwrap();
    let res = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    m.apply_resources(&res).unwrap();
    assert!(!dir.join("memory.swap.max").exists());
}

fn fake_v1(tmp: &Path) -> PathBuf {
    let cg = tmp.join("sys/fs/cgroup");
    for f in [
        "memory/ctr/memory.limit_in_bytes",
        "memory/ctr/memory.memsw.limit_in_bytes",
        "pids/ctr/pids.max",
        "devices/ctr/devices.allow",
        "devices/ctr/devices.deny",
    ] {
        touch(&cg.join(f), "");
    }
    fs::write(cg.join("memory/ctr/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
    cg
}

#[test]
fn apply_v1_writes_to_each_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = fake_v1(tmp.path());
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    let mem = LinuxMemoryBuilder::default().limit(64 << 20).swap(-1).build().unwrap();
    let res = LinuxResourcesBuilder::default()
        .memory(mem)
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .build()
        .unwrap();
    m.apply_resources(&res).unwrap();
    assert!(read(&cg.join("memory/ctr/memory.limit_in_bytes")).starts_with("67108864"));
    assert!(read(&cg.join("memory/ctr/memory.memsw.limit_in_bytes")).starts_with("-1"));
    assert_eq!(read(&cg.join("pids/ctr/pids.max")), "10");
    // The last devices.allow write is the last default rule (files are not truncated here).
    assert!(read(&cg.join("devices/ctr/devices.allow")).starts_with("c 10:200 rwm"));
}

#[test]
fn apply_v1_refuses_unified_and_names_missing_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    fake_v1(tmp.path());
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    let res = LinuxResourcesBuilder::default()
        .unified([("memory.high".to_string(), "1".to_string())])
        .build()
        .unwrap();
    let err = m.apply_resources(&res).unwrap_err();
    assert!(err.to_string().contains("only supported on cgroup v2"), "{err}");

    let only_memory = "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let m = Manager::with_root(tmp.path(), only_memory, None, "ctr").unwrap();
    let err = m.apply_resources(&pids_limit(3)).unwrap_err();
    assert!(
        matches!(&err, CgroupError::MissingController { controller, .. } if controller == "pids"),
        "{err}"
    );
}

#[test]
fn pids_union_across_hierarchies() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = tmp.path().join("sys/fs/cgroup");
    touch(&cg.join("memory/ctr/cgroup.procs"), "10\n11\n");
    touch(&cg.join("memory/ctr/sub/cgroup.procs"), "12\n");
    touch(&cg.join("pids/ctr/cgroup.procs"), "10\n11\n12\n");
    touch(&cg.join("unified/ctr/cgroup.procs"), "13\n");
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    assert_eq!(m.pids().unwrap(), [10, 11, 12, 13]);
}

#[test]
fn add_task_writes_every_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_COMOUNTED, None, "ctr").unwrap();
    for dir in m.dirs() {
        touch(&dir.join("cgroup.procs"), "");
    }
    m.add_task(77).unwrap();
    for dir in m.dirs() {
        assert_eq!(read(&dir.join("cgroup.procs")), "77", "{}", dir.display());
    }
    fs::remove_file(m.state().v1["memory"].join("cgroup.procs")).unwrap();
    let err = m.add_task(78).unwrap_err();
    assert!(err.to_string().contains("memory/ctr/cgroup.procs"), "{err}");
}

#[test]
fn freeze_through_manager_uses_v1_freezer_on_hybrid() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    let state = m.state().v1["freezer"].join("freezer.state");
    touch(&state, "THAWED\n");
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    let no_freezer = "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let m = Manager::with_root(tmp.path(), no_freezer, None, "ctr").unwrap();
    assert!(matches!(m.freeze(), Err(CgroupError::MissingController { .. })));
}

#[test]
fn destroy_removes_nested_dirs_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, Some("/parent/ctr"), "x").unwrap();
    for dir in m.dirs() {
        fs::create_dir_all(dir.join("sub/subsub")).unwrap();
        fs::create_dir_all(dir.parent().unwrap().join("ctr2")).unwrap();
    }
    m.destroy().unwrap();
    for dir in m.dirs() {
        assert!(!dir.exists(), "{}", dir.display());
        assert!(dir.parent().unwrap().join("ctr2").is_dir(), "sibling kept");
    }
    m.destroy().unwrap(); // already gone
}

#[test]
fn destroy_refuses_a_state_that_points_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::with_root(tmp.path(), HYBRID_THIS_MACHINE, None, "ctr").unwrap();
    let mut st = m.state();
    st.path = "/".to_string();
    let err = Manager::from_state(&st).destroy().unwrap_err();
    assert!(matches!(err, CgroupError::UnsafeState { .. }), "{err}");
    let mut st = m.state();
    st.v1.insert("memory".into(), tmp.path().join("sys/fs/cgroup/memory"));
    let err = Manager::from_state(&st).destroy().unwrap_err();
    assert!(matches!(err, CgroupError::UnsafeState { .. }), "{err}");
    let mut st = m.state();
    st.path = "/a/../ctr".to_string();
    assert!(Manager::from_state(&st).destroy().is_err());
}
