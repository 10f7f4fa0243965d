//! As root, end to end: nested pid namespaces (CHECKPOINT.md §2.4). A busybox shell, pid 1 of
//! its own pid namespace (the "container"), starts `unshare -p -f` subtrees two and three
//! levels deep and a child that `nsenter -p` placed in the first nested namespace; the tree is
//! dumped, killed and restored, and every process must be back with the very same NSpid vector
//! (all levels below the host's), the namespaces' pid_for_children as they were, and running.
//! A nested user namespace is refused at dump, naming the pid, and the tree keeps running.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::dump::{dump_tree, DumpOptions};
use super::image;
use super::restore::{restore, PidNamespace};
use super::tests_root::{
    count, keeps_running_untraced, restore_opts, skipped, spawn_with, tempdir, term_runs_the_trap, wait_counted,
    wait_counting_on, wait_for, Killer, Launch, BUSYBOX, SCRIPT,
};

/// Pid 1 of the first nested namespace (N1): a second-level subtree and a plain member.
const L1: &str = "unshare -p -f setsid sh l2.sh & sleep 1000 & wait";
/// Pid 1 of N2 (three levels: container, N1, N2) and leader of its own session, with one
/// member.
const L2: &str = "sleep 1000 & echo > l2ready; wait";
/// The container's init: a sleep that unshared a pid namespace it has no child in yet, the
/// subtrees, a setns'ed member of N1 (nsenter -p through N1's init), then it counts. /proc is this namespace's own (see spawn).
const TOP: &str = "unshare -p sleep 1000 & unshare -p -f sh l1.sh & u=$!; \
    while [ ! -s l2ready ]; do sleep 0.05; done; \
    init1=$(cat /proc/$u/task/$u/children); \
    nsenter -p -t $init1 sh -c 'exec sleep 1000' & \
    while [ -z \"$(cat /proc/$!/task/$!/children)\" ]; do sleep 0.05; done; \
    echo > ready; ";

/// `script` as pid 1 of a new pid namespace, session leader, stdio on /dev/null, cwd = `dir`;
/// with `own_proc` in a new mount namespace with a /proc of its own pid namespace (so that
/// pids in the script resolve there). Returns its host pid.
fn spawn_container(dir: &Path, own_proc: bool, script: &str) -> i32 {
    let how = Launch {
        new_pidns: true,
        own_proc,
        fd5: None,
    };
    spawn_with(dir, &[BUSYBOX, "sh", "-c", script], &how)
}

/// Every process under `root` (host view): host pid -> NSpid from the root's level down.
fn tree_vectors(root: i32) -> BTreeMap<i32, Vec<i32>> {
    tree_status(root, |s| s.nspid)
}

/// Every process under `root`: host pid -> (NSsid, NSpgid) from the root's level down.
fn tree_sessions(root: i32) -> BTreeMap<i32, Vec<i32>> {
    tree_status(root, |s| [s.nssid, s.nspgid].concat())
}

fn tree_status(root: i32, field: impl Fn(super::procfs::Status) -> Vec<i32>) -> BTreeMap<i32, Vec<i32>> {
    let level = super::tests_root::nspid(root).len() - 1;
    let mut out = BTreeMap::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let status = super::procfs::parse_status(&text);
        let n = status.nspid.len();
        let v = field(status);
        // NSsid and NSpgid concatenated: cut each half at the root's level.
        let cut: Vec<i32> = v
            .chunks(n.max(1))
            .flat_map(|c| c.get(level..).unwrap_or_default().to_vec())
            .collect();
        if n > level {
            out.insert(pid, cut);
        }
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        queue.extend(super::procfs::parse_children(&children));
    }
    out
}

fn ns_ino(pid: i32, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}")).unwrap().ino()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn nested_pid_namespaces_keep_every_level() {
    if skipped("nested_pid_namespaces_keep_every_level") {
        return;
    }
    let (_t, work, img) = tempdir("nested");
    std::fs::write(work.join("l1.sh"), L1).unwrap();
    std::fs::write(work.join("l2.sh"), L2).unwrap();
    let root = spawn_container(&work, true, &format!("{TOP}{SCRIPT}"));
    let guard = Killer(root);
    wait_for("the nested subtrees", Duration::from_secs(20), || {
        work.join("ready").exists()
    });
    wait_counted(&work, 2);

    let before = tree_vectors(root);
    let sessions_before = tree_sessions(root);
    // The N2 init leads its own session: NSsid [container pid, N1 pid, 1].
    assert!(
        sessions_before
            .iter()
            .any(|(h, s)| before[h].len() == 3 && before[h][2] == 1 && s[..3] == before[h][..]),
        "no session leader in N2: {sessions_before:?}"
    );
    let mut shapes: Vec<(usize, i32)> = before.values().map(|v| (v.len(), *v.last().unwrap())).collect();
    shapes.sort();
    for want in [(2, 1), (2, 2), (3, 1), (3, 2)] {
        assert!(
            shapes.contains(&want),
            "(levels, innermost pid) {want:?} missing: {before:?}"
        );
    }
    // The nsenter'ed sleep: in N1, its parent (nsenter) in the container's namespace.
    let entered = before
        .iter()
        .find(|(h, v)| {
            let ppid = super::procfs::parse_status(&std::fs::read_to_string(format!("/proc/{h}/status")).unwrap()).ppid;
            v.len() == 2 && comm(ppid) == "nsenter"
        })
        .map(|(h, v)| (*h, v.clone()))
        .unwrap_or_else(|| panic!("no setns'ed child: {before:?}"));

    let summary = dump_tree(root, &img, &DumpOptions { leave_running: false }).expect("dump");
    std::mem::forget(guard);
    assert!(!Path::new(&format!("/proc/{root}")).exists(), "the dumped tree is gone");
    let dumped = image::load_for_inspect(&img).unwrap();
    assert_eq!(dumped.manifest.format.minor, image::FORMAT_MINOR);
    assert_eq!(summary.tasks.len(), dumped.tree.tasks.len());
    for t in &dumped.tree.tasks {
        if let Some(v) = before.get(&t.host_pid) {
            assert_eq!(&t.nspid, v, "image vector of host pid {}", t.host_pid);
        }
    }
    // The container's, N1, N2, and the empty one of `unshare -p sleep`.
    assert_eq!(dumped.tree.pid_namespaces.len(), 4, "{:?}", dumped.tree.pid_namespaces);
    assert_eq!(
        dumped.tree.pid_namespaces.iter().filter(|s| s.init.is_none()).count(),
        1
    );
    let json = image::inspect_json(&img).unwrap();
    assert!(json["tree"]["pid_namespaces"].as_array().is_some_and(|a| a.len() == 4));
    let at_dump = count(&work);

    let restored = restore(&img, &restore_opts(PidNamespace::New)).expect("restore");
    let guard = Killer(restored.root_pid);
    let after = tree_vectors(restored.root_pid);
    eprintln!(
        "NSpid vectors before the dump: {:?}",
        before.values().collect::<Vec<_>>()
    );
    eprintln!("after the restore: {:?}", after.values().collect::<Vec<_>>());
    let mut seen = Vec::new();
    for t in &dumped.tree.tasks {
        let host = restored.pids[&t.pid];
        match after.get(&host) {
            Some(v) => {
                assert_eq!(v, &t.nspid, "pid {} (host {host}) restored with another NSpid", t.pid);
                seen.push(v.clone());
            }
            // Only the counter's short sleep may be gone already.
            None => assert_eq!(t.nspid.len(), 1, "pid {} {:?} is not running", t.pid, t.nspid),
        }
    }
    assert!(seen.contains(&entered.1), "the setns'ed child {entered:?} is back");
    // Sessions and groups at every level (0 where the leader is not visible).
    let sessions_after = tree_sessions(restored.root_pid);
    for t in &dumped.tree.tasks {
        let (Some(b), Some(a)) = (
            sessions_before.get(&t.host_pid),
            sessions_after.get(&restored.pids[&t.pid]),
        ) else {
            continue;
        };
        assert_eq!(a, b, "NSsid+NSpgid of pid {} {:?}", t.pid, t.nspid);
        assert_eq!(a[..t.nssid.len()], t.nssid[..], "image NSsid of pid {}", t.pid);
    }
    assert!(seen.iter().any(|v| v.len() == 3), "the third level is back: {seen:?}");
    // pid_for_children as dumped: unshare and nsenter keep theirs (their next child would be
    // born in the nested namespace).
    let mut checked = 0;
    for t in dumped.tree.tasks.iter().filter(|t| t.pid_ns_for_children.is_some()) {
        let target = dumped
            .tree
            .pid_namespaces
            .iter()
            .find(|s| Some(s.id) == t.pid_ns_for_children)
            .unwrap();
        let host = restored.pids[&t.pid];
        match target.init {
            Some(init) => assert_eq!(
                ns_ino(host, "pid_for_children"),
                ns_ino(restored.pids[&init], "pid"),
                "pid_for_children of pid {}",
                t.pid
            ),
            // unshared again: a namespace with no init yet, which the kernel does not show
            None => {
                let err = std::fs::metadata(format!("/proc/{host}/ns/pid_for_children")).unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "pid {}", t.pid);
            }
        }
        checked += 1;
    }
    assert!(checked >= 4, "three unshare and one nsenter: {checked}");

    // A second dump of the restored tree (left running) sees the same tree: every vector, and
    // the same tasks with a pid_for_children of their own.
    let img2 = _t.path().join("image2");
    dump_tree(restored.root_pid, &img2, &DumpOptions { leave_running: true }).expect("second dump");
    let again = image::load_for_inspect(&img2).unwrap();
    let shape = |t: &image::Tree| -> Vec<(Vec<i32>, bool)> {
        t.tasks
            .iter()
            .filter(|e| e.nspid.len() > 1 || e.pid_ns_for_children.is_some())
            .map(|e| (e.nspid.clone(), e.pid_ns_for_children.is_some()))
            .collect()
    };
    assert_eq!(shape(&again.tree), shape(&dumped.tree));
    assert_eq!(again.tree.pid_namespaces.len(), dumped.tree.pid_namespaces.len());
    wait_counting_on(&work, at_dump);
    // The nested ones still run (sleeping, not dead or stopped).
    for t in dumped.tree.tasks.iter().filter(|t| t.nspid.len() > 1) {
        let host = restored.pids[&t.pid];
        let state =
            super::procfs::parse_status(&std::fs::read_to_string(format!("/proc/{host}/status")).unwrap()).state;
        assert_eq!(state, 'S', "pid {} {:?}", t.pid, t.nspid);
    }
    term_runs_the_trap(guard);
}

#[test]
fn a_nested_user_namespace_is_refused_and_the_tree_keeps_running() {
    if skipped("a_nested_user_namespace_is_refused_and_the_tree_keeps_running") {
        return;
    }
    let (_t, work, img) = tempdir("nested-user");
    let script = format!("unshare -U sh -c 'echo > inner; exec sleep 1000' & {SCRIPT}");
    let root = spawn_container(&work, false, &script);
    let _guard = Killer(root);
    wait_for("the counter to reach 2", Duration::from_secs(10), || {
        count(&work) >= 2 && work.join("inner").exists()
    });
    let inner = *tree_vectors(root)
        .keys()
        .find(|h| ns_ino(**h, "user") != ns_ino(root, "user"))
        .expect("a task in a nested user namespace");
    let err = dump_tree(root, &img, &DumpOptions { leave_running: false }).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {inner}")) && text.contains("nested user namespace"),
        "{text}"
    );
    assert!(!img.join(image::MANIFEST).exists(), "no image is written");
    keeps_running_untraced(&work, || tree_vectors(root).into_keys());
    assert!(Path::new(&format!("/proc/{inner}")).exists());
}
