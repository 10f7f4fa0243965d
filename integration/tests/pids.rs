//! Pid-exact start, amber's own feature (for checkpoint/restore): `--init-pid` and the
//! `run.amber.init-pid` annotation put the container init at exact pids, one per pid
//! namespace level. runc 1.1.5 has neither, so every test here is amber-only and
//! reports a skip against another runtime.

use amber_integration::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Amber-only: runc has no --init-pid. Returns false (after saying so) elsewhere.
fn amber_only(test: &str) -> bool {
    if is_amber() {
        return true;
    }
    eprintln!("skipped {test}: --init-pid / run.amber.init-pid are amber-only");
    false
}

fn pid_max() -> i32 {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A host pid above 10000 that no process or thread uses, away from where the kernel
/// allocates next (ns_last_pid) and never handed out twice by this test binary.
fn free_pid() -> i32 {
    static TAKEN: Mutex<Vec<i32>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    let max = pid_max();
    let last: i32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(300);
    let lo = 10_001;
    let span = max - lo;
    assert!(span > 1000, "pid_max {max} leaves no room above 10000");
    // half the range away from the allocation cursor, spread per test binary
    let start = lo + (last - lo + span / 2 + (std::process::id() as i32 % 500) * 7).rem_euclid(span);
    for i in 0..span {
        let p = lo + (start - lo + i * 13).rem_euclid(span);
        if !taken.contains(&p) && !Path::new(&format!("/proc/{p}")).exists() {
            taken.push(p);
            return p;
        }
    }
    panic!("no free pid above 10000");
}

/// The NSpid vector of a host pid, outermost first.
fn nspid(pid: i32) -> Vec<i32> {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status_field(&st, "NSpid")
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Assert a failed create left nothing: no state dir, no pid file, no cgroup.
#[track_caller]
fn assert_nothing_created(c: &Container) {
    assert!(!c.state_dir().exists(), "refused create left its state dir");
    assert!(!c.pid_file().exists(), "refused create wrote a pid file");
    assert!(
        find_cgroup_dirs(std::slice::from_ref(&c.id)).is_empty(),
        "refused create left a cgroup"
    );
}

/// Create with the init at `pid`, and check every place it shows.
#[track_caller]
fn check_init_at(c: &Container, pid: i32) {
    let st = c.state_json();
    assert_eq!(st["pid"], pid, "{st}");
    assert_eq!(fs::read_to_string(c.pid_file()).unwrap(), pid.to_string());
    assert_eq!(nspid(pid), [pid, 1], "host pid {pid}, pid 1 in the container");
    c.start_ok();
    assert_eq!(c.pid(), pid);
    // the same process runs the user's program (sh execs sleep)
    wait_for("the init to exec sleep", || proc_comm(pid) == "sleep");
    c.kill("KILL").assert_ok();
    c.wait_status("stopped");
    c.delete(false).assert_ok();
}

#[test]
fn init_pid_flag_exact_host_pid() {
    if !amber_only("init_pid_flag_exact_host_pid") {
        return;
    }
    let pid = free_pid();
    let c = Container::new("initpid", Bundle::sh("sleep 1000"));
    c.create_with(&[], &["--init-pid", &pid.to_string()]).assert_ok();
    check_init_at(&c, pid);

    // `run -d` takes it too
    let pid = free_pid();
    let c = Container::new("initpid-run", Bundle::sh("sleep 1000"));
    c.run_with(&["-d", "--init-pid", &pid.to_string()], &[]).assert_ok();
    assert_eq!(c.pid(), pid);
    assert_eq!(nspid(pid), [pid, 1]);
}

#[test]
fn init_pid_zero_leaves_the_level_to_the_kernel() {
    if !amber_only("init_pid_zero_leaves_the_level_to_the_kernel") {
        return;
    }
    // --help: "0 leaves a level to the kernel"
    let c = Container::new("initpid-zero", Bundle::sh("sleep 1000"));
    c.create_with(&[], &["--init-pid", "0"]).assert_ok();
    let pid = c.pid();
    assert_eq!(nspid(pid), [pid, 1]);
    // pid_max itself is not a valid pid either (pids are below pid_max)
    let c = Container::new("initpid-pidmax", Bundle::sh("sleep 1000"));
    let out = c.create_with(&[], &["--init-pid", &pid_max().to_string()]);
    out.assert_fail();
    assert!(out.stderr.contains("pid_max"), "{out}");
    assert_nothing_created(&c);
}

#[test]
fn init_pid_annotation() {
    if !amber_only("init_pid_annotation") {
        return;
    }
    let pid = free_pid();
    let mut b = Bundle::sh("sleep 1000");
    b.set("/annotations", json!({ "run.amber.init-pid": pid.to_string() }));
    let c = Container::new("initpid-annot", b);
    c.create_ok();
    check_init_at(&c, pid);

    // the flag wins over the annotation
    let (annotated, flagged) = (free_pid(), free_pid());
    let mut b = Bundle::sh("sleep 1000");
    b.set("/annotations", json!({ "run.amber.init-pid": annotated.to_string() }));
    let c = Container::new("initpid-both", b);
    c.create_with(&[], &["--init-pid", &flagged.to_string()]).assert_ok();
    check_init_at(&c, flagged);

    // a malformed annotation is refused like a malformed flag
    let mut b = Bundle::sh("sleep 1000");
    b.set("/annotations", json!({ "run.amber.init-pid": "not-a-pid" }));
    let c = Container::new("initpid-annot-bad", b);
    let out = c.create();
    out.assert_fail();
    assert!(out.stderr.contains("not-a-pid"), "{out}");
    assert_nothing_created(&c);
}

#[test]
fn busy_pid_refused() {
    if !amber_only("busy_pid_refused") {
        return;
    }
    let me = std::process::id().to_string();
    let c = Container::new("initpid-busy", Bundle::sh("sleep 1000"));
    let out = c.create_with(&[], &["--init-pid", &me]);
    out.assert_fail();
    for needle in ["level 1", "already in use", me.as_str()] {
        assert!(out.stderr.contains(needle), "message lacks {needle:?}: {out}");
    }
    assert_nothing_created(&c);

    // a thread id is taken too, though /proc does not list it
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        // SAFETY: gettid cannot fail.
        tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = stop_rx.recv();
    });
    let tid = rx.recv().unwrap().to_string();
    let c = Container::new("initpid-busy-tid", Bundle::sh("sleep 1000"));
    let out = c.create_with(&[], &["--init-pid", &tid]);
    stop_tx.send(()).unwrap();
    t.join().unwrap();
    out.assert_fail();
    for needle in ["level 1", "already in use", tid.as_str()] {
        assert!(out.stderr.contains(needle), "message lacks {needle:?}: {out}");
    }
    assert_nothing_created(&c);
}

#[test]
fn pid_above_pid_max_refused() {
    if !amber_only("pid_above_pid_max_refused") {
        return;
    }
    let too_big = (pid_max() + 1).to_string();
    let c = Container::new("initpid-max", Bundle::sh("sleep 1000"));
    let out = c.create_with(&[], &["--init-pid", &too_big]);
    out.assert_fail();
    for needle in ["pid_max", too_big.as_str()] {
        assert!(out.stderr.contains(needle), "message lacks {needle:?}: {out}");
    }
    assert_nothing_created(&c);
}

#[test]
fn more_pids_than_levels_refused() {
    if !amber_only("more_pids_than_levels_refused") {
        return;
    }
    // from the host there is one level above the container's own pid namespace
    let list = format!("{},{}", free_pid(), free_pid());
    let c = Container::new("initpid-levels", Bundle::sh("sleep 1000"));
    let out = c.create_with(&[], &["--init-pid", &list]);
    out.assert_fail();
    assert!(out.stderr.contains("level"), "{out}");
    assert_nothing_created(&c);

    let c = Container::new("initpid-garbage", Bundle::sh("sleep 1000"));
    let out = c.create_with(&[], &["--init-pid", "12x"]);
    out.assert_fail();
    assert!(out.stderr.contains("12x"), "{out}");
    assert_nothing_created(&c);
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn three_levels_of_pid_namespaces() {
    if !amber_only("three_levels_of_pid_namespaces") {
        return;
    }
    // amber runs in a pid namespace of its own (unshare); the container gets another,
    // and its process a third: the init is at 50 in amber's namespace and at a chosen
    // host pid.
    let host_pid = free_pid();
    let mut b = Bundle::sh("unshare -p -f sh -c 'sleep 100' & sleep 100");
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    let c = Container::new("initpid-nested", b);
    c.bundle.write();
    let rt = sh_quote(&fs::canonicalize(runtime()).unwrap().to_string_lossy());
    let root = sh_quote(&c.root_str());
    let work = c.work_dir().to_string_lossy().into_owned();
    let id = &c.id;
    let script = format!(
        "{rt} --root {root} create --bundle {bundle} --pid-file {pf} --init-pid 50,{host_pid} {id} \
           </dev/null >{work}/create.out 2>&1 || {{ echo create-failed; exit 1; }}; \
         {rt} --root {root} start {id} || {{ echo start-failed; exit 1; }}; \
         echo started; \
         while [ ! -e {work}/go ]; do sleep 0.05; done; \
         {rt} --root {root} ps --format nspid {id} >{work}/nspid.json 2>&1; echo ps-done; \
         while [ ! -e {work}/done ]; do sleep 0.05; done; \
         {rt} --root {root} delete --force {id} && echo deleted",
        bundle = sh_quote(&c.bundle.path_str()),
        pf = sh_quote(&c.pid_file().to_string_lossy()),
    );
    let mut outer_cmd = Command::new("unshare");
    outer_cmd.args(["-pf", "--mount-proc", "sh", "-c", &script]);
    // dropped before `c`: on failure, killing the outer namespace's init kills
    // everything in it, then `c` force-deletes and checks for leftovers
    let mut outer = Background::spawn(outer_cmd);
    wait_for("the outer shell to start the container", || {
        outer.stdout().contains("started") || outer.try_finish().is_some()
    });
    if let Some(out) = outer.try_finish() {
        let create = fs::read_to_string(c.work_dir().join("create.out")).unwrap_or_default();
        panic!("outer shell ended early: {out}\ncreate: {create}");
    }

    // the init, seen from the host: host pid, 50 in amber's namespace, 1 in its own
    assert_eq!(nspid(host_pid), [host_pid, 50, 1]);
    let pf = fs::read_to_string(c.pid_file()).unwrap();
    assert_eq!(pf, "50", "the pid file holds the pid in amber's namespace");

    // every process of the container, from the host's view of its cgroup
    let procs_file = find_cgroup_dirs(std::slice::from_ref(&c.id))
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids") || d.join("pids.max").exists())
        .expect("the container's pids cgroup")
        .join("cgroup.procs");
    let procs = || -> Vec<i32> {
        fs::read_to_string(&procs_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    let mut nested = 0;
    wait_for("the nested sleep (4 pid levels) to run", || {
        nested = procs()
            .into_iter()
            .find(|&p| nspid(p).len() == 4 && proc_comm(p) == "sleep")
            .unwrap_or(0);
        nested != 0
    });
    let v = nspid(nested);
    assert_eq!(v[3], 1, "the nested sleep is pid 1 of the innermost namespace: {v:?}");

    // `ps --format nspid`, run in amber's namespace: each process's vector below
    // amber's level, keyed by its pid in amber's namespace
    fs::write(c.work_dir().join("go"), "").unwrap();
    wait_for("ps to run in the outer namespace", || {
        outer.stdout().contains("ps-done") || outer.try_finish().is_some()
    });
    let ps_text = fs::read_to_string(c.work_dir().join("nspid.json")).unwrap();
    let ps: Value =
        serde_json::from_str(&ps_text).unwrap_or_else(|e| panic!("ps --format nspid is not JSON ({e}): {ps_text}"));
    let got: BTreeSet<(i64, Vec<i64>)> = ps
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {ps_text}"))
        .iter()
        .map(|e| {
            let pid = e["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {ps_text}"));
            let v = e["nspid"].as_array().unwrap_or_else(|| panic!("no nspid: {ps_text}"));
            (pid, v.iter().map(|x| x.as_i64().unwrap()).collect())
        })
        .collect();
    let want: BTreeSet<(i64, Vec<i64>)> = procs()
        .into_iter()
        .map(|p| {
            let v: Vec<i64> = nspid(p).into_iter().map(i64::from).collect();
            (v[1], v[2..].to_vec())
        })
        .collect();
    assert_eq!(got, want, "ps --format nspid vs /proc: {ps_text}");
    assert!(got.contains(&(50, vec![1])), "init → [1]: {ps_text}");
    assert!(
        got.iter().any(|(_, v)| v.len() == 2 && v[1] == 1),
        "nested sleep → [x, 1]: {ps_text}"
    );

    fs::write(c.work_dir().join("done"), "").unwrap();
    let out = outer.wait();
    out.assert_ok();
    assert!(out.stdout.contains("deleted"), "{out}");
    assert!(!Path::new(&format!("/proc/{host_pid}")).exists() || !pid_alive(host_pid));
}

#[test]
fn init_pid_needs_checkpoint_restore_capability() {
    if !amber_only("init_pid_needs_checkpoint_restore_capability") {
        return;
    }
    let pid = free_pid();
    let c = Container::new("initpid-nocap", Bundle::sh("sleep 1000"));
    c.bundle.write();
    let rt = sh_quote(&fs::canonicalize(runtime()).unwrap().to_string_lossy());
    let script = format!(
        "exec {rt} --root {root} create --bundle {bundle} --pid-file {pf} --init-pid {pid} {id}",
        root = sh_quote(&c.root_str()),
        bundle = sh_quote(&c.bundle.path_str()),
        pf = sh_quote(&c.pid_file().to_string_lossy()),
        id = c.id,
    );
    let mut cmd = Command::new("capsh");
    cmd.args(["--drop=cap_sys_admin,cap_checkpoint_restore", "--", "-c", &script]);
    let out = c.run_console(cmd, &[]);
    out.assert_fail();
    assert!(out.stderr.contains("CAP_CHECKPOINT_RESTORE"), "{out}");
    assert!(out.stderr.contains(&pid.to_string()), "{out}");
    assert_nothing_created(&c);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "a process got pid {pid}");
}
