//! Operations on a running container's cgroups: `update`, `pause`/`resume`, `ps`,
//! `kill --all`, `delete --force` of a paused container, `events --stats`, and a
//! memory limit that OOM-kills.
//!
//! Values are read back from the container's cgroup files (the harness sets
//! cgroupsPath=/<id>): on cgroup v1 (incl. hybrid) /sys/fs/cgroup/<controller>/<cgroupsPath>,
//! on a pure v2 host /sys/fs/cgroup/<cgroupsPath>, each v1 file mapped to its v2 equivalent.

use amber_integration::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Is /sys/fs/cgroup itself a cgroup2 mount (a pure v2 host)? A hybrid host's
/// /sys/fs/cgroup/unified does not count: its controllers are on v1.
fn is_v2() -> bool {
    static V2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V2.get_or_init(|| {
        fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|f| f.len() > 2 && f[1] == "/sys/fs/cgroup" && f[2] == "cgroup2")
    })
}

/// The container's cgroup directory: on v1 the `ctrl` controller's, on v2 the one
/// unified directory (`ctrl` is ignored).
fn cg_dir(c: &Container, ctrl: &str) -> PathBuf {
    let base = if is_v2() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(ctrl)
    };
    assert!(
        base.is_dir(),
        "neither cgroup v2 at /sys/fs/cgroup nor v1 /sys/fs/cgroup/{ctrl}"
    );
    let cgp = c.bundle.cgroups_path().expect("cgroupsPath");
    base.join(cgp.trim_start_matches('/'))
}

/// A cgroup file's value, trimmed. `ctrl` picks the v1 hierarchy; `file` must be the
/// name on the running cgroup version.
#[track_caller]
fn cg_read(c: &Container, ctrl: &str, file: &str) -> String {
    let p = cg_dir(c, ctrl).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The pids in the container's cgroup (v1: the pids controller's), sorted.
fn cg_procs(c: &Container) -> Vec<i32> {
    let mut v: Vec<i32> = cg_read(c, "pids", "cgroup.procs")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    v.sort();
    v
}

/// The memory limit: v1 memory.limit_in_bytes, v2 memory.max.
#[track_caller]
fn mem_limit(c: &Container) -> String {
    cg_read(
        c,
        "memory",
        if is_v2() { "memory.max" } else { "memory.limit_in_bytes" },
    )
}

/// The memory reservation: v1 memory.soft_limit_in_bytes, v2 memory.low.
#[track_caller]
fn mem_reservation(c: &Container) -> String {
    cg_read(
        c,
        "memory",
        if is_v2() {
            "memory.low"
        } else {
            "memory.soft_limit_in_bytes"
        },
    )
}

/// pids.max (the same file on v1 and v2).
#[track_caller]
fn pids_max(c: &Container) -> String {
    cg_read(c, "pids", "pids.max")
}

/// cpu.shares on v1; on v2 the cpu.weight the runtime derives from it. amber uses the
/// runc >= 1.3.2 / crun >= 1.23 curve (1024 -> 100); runc 1.1.5 the old linear map
/// 1 + (shares - 2) * 9999 / 262142.
#[track_caller]
fn assert_cpu_shares(c: &Container, shares: u64) {
    if !is_v2() {
        assert_eq!(cg_read(c, "cpu", "cpu.shares"), shares.to_string());
        return;
    }
    let want = if is_amber() {
        match shares {
            256 => 35,
            512 => 59,
            _ => panic!("no amber cpu.weight known for cpu.shares {shares}"),
        }
    } else {
        1 + (shares - 2) * 9999 / 262_142
    };
    assert_eq!(
        cg_read(c, "cpu", "cpu.weight"),
        want.to_string(),
        "cpu.weight for cpu.shares {shares}"
    );
}

/// The CFS quota and period: v1 cpu.cfs_quota_us (-1: unlimited) and cpu.cfs_period_us,
/// v2 cpu.max "<quota|max> <period>".
#[track_caller]
fn assert_cpu_max(c: &Container, quota: i64, period: u64) {
    if is_v2() {
        let q = if quota < 0 {
            "max".to_string()
        } else {
            quota.to_string()
        };
        assert_eq!(cg_read(c, "cpu", "cpu.max"), format!("{q} {period}"));
    } else {
        assert_eq!(cg_read(c, "cpu", "cpu.cfs_quota_us"), quota.to_string());
        assert_eq!(cg_read(c, "cpu", "cpu.cfs_period_us"), period.to_string());
    }
}

/// The freezer state: v1 freezer.state FROZEN/THAWED; v2 cgroup.freeze 1/0 and the
/// kernel's `frozen` in cgroup.events agreeing (the freeze completed, not just asked for).
#[track_caller]
fn assert_frozen(c: &Container, frozen: bool) {
    if is_v2() {
        let b = if frozen { "1" } else { "0" };
        assert_eq!(cg_read(c, "freezer", "cgroup.freeze"), b, "cgroup.freeze");
        let events = cg_read(c, "freezer", "cgroup.events");
        assert!(
            events.lines().any(|l| l == format!("frozen {b}")),
            "cgroup.events lacks `frozen {b}`: {events:?}"
        );
    } else {
        let want = if frozen { "FROZEN" } else { "THAWED" };
        assert_eq!(cg_read(c, "freezer", "freezer.state"), want);
    }
}

/// Is the process stopped by the freezer? v1 freezes tasks uninterruptibly in the
/// refrigerator (state D); the v2 freezer parks them interruptibly (state S) in
/// do_freezer_trap, which /proc/<pid>/wchan names as itself or, where the compiler
/// inlined it (Debian's 6.1), as get_signal. A running `sleep` waits in a nanosleep
/// function instead.
fn task_frozen(pid: i32) -> (bool, String) {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let state = status_field(&st, "State").unwrap().to_string();
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let frozen = if is_v2() {
        state.starts_with('S') && matches!(wchan.as_str(), "do_freezer_trap" | "get_signal")
    } else {
        state.starts_with('D')
    };
    (frozen, format!("State: {state}, wchan: {wchan}"))
}

fn running(name: &str, bundle: Bundle) -> Container {
    let c = Container::new(name, bundle);
    c.create_ok();
    c.start_ok();
    c
}

const MIB: i64 = 1024 * 1024;

#[test]
fn update_resources_file() {
    let c = running("update-file", Bundle::sh("sleep 1000"));
    let res = json!({
        "memory": { "limit": 64 * MIB, "reservation": 32 * MIB },
        "pids": { "limit": 20 },
        "cpu": { "shares": 256, "quota": 20000, "period": 100000 }
    });
    let file = c.work_dir().join("resources.json");
    fs::write(&file, res.to_string()).unwrap();
    c.rt(&["update", "--resources", &file.to_string_lossy(), &c.id])
        .assert_ok();
    assert_eq!(mem_limit(&c), (64 * MIB).to_string());
    assert_eq!(mem_reservation(&c), (32 * MIB).to_string());
    assert_eq!(pids_max(&c), "20");
    assert_cpu_shares(&c, 256);
    assert_cpu_max(&c, 20000, 100000);

    // a later update touching only pids leaves the rest alone
    fs::write(&file, json!({ "pids": { "limit": 30 } }).to_string()).unwrap();
    c.rt(&["update", "-r", &file.to_string_lossy(), &c.id]).assert_ok();
    assert_eq!(pids_max(&c), "30");
    assert_eq!(mem_limit(&c), (64 * MIB).to_string());
    assert_cpu_shares(&c, 256);
    assert_cpu_max(&c, 20000, 100000);
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn update_resources_stdin() {
    let c = running("update-stdin", Bundle::sh("sleep 1000"));
    let res = json!({ "memory": { "limit": 48 * MIB }, "pids": { "limit": 15 } });
    let out = run_captured_input(
        c.command(&["update", "--resources", "-", &c.id]),
        res.to_string().as_bytes(),
    );
    out.assert_ok();
    assert_eq!(mem_limit(&c), (48 * MIB).to_string());
    assert_eq!(pids_max(&c), "15");
}

#[test]
fn update_bad_resources_fail() {
    let c = running("update-bad", Bundle::sh("sleep 1000"));
    let out = run_captured_input(c.command(&["update", "-r", "-", &c.id]), b"{ not json");
    out.assert_fail();
    let out = c.rt(&["update", "-r", "/no/such/resources.json", &c.id]);
    out.assert_fail();
    // and on a container that does not exist
    let missing = Container::new("update-missing", Bundle::new());
    missing.rt(&["update", "--pids-limit", "10", &missing.id]).assert_fail();
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn update_flags() {
    let c = running("update-flags", Bundle::sh("sleep 1000"));
    c.rt(&[
        "update",
        "--memory",
        "64m",
        "--pids-limit",
        "10",
        "--cpu-share",
        "512",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "200000",
        &c.id,
    ])
    .assert_ok();
    assert_eq!(mem_limit(&c), (64 * MIB).to_string());
    assert_eq!(pids_max(&c), "10");
    assert_cpu_shares(&c, 512);
    assert_cpu_max(&c, 50000, 200000);
    // -1: unlimited
    c.rt(&["update", "--cpu-quota", "-1", &c.id]).assert_ok();
    assert_cpu_max(&c, -1, 200000);
}

#[test]
fn update_memory_and_swap_both_directions() {
    // v1: memory.memsw.limit_in_bytes must stay >= memory.limit_in_bytes at every step,
    // so the runtime has to order the two writes: swap first when growing, memory first
    // when shrinking. v2 has no such constraint, but the values must still come out right.
    let c = running("update-swap", Bundle::sh("sleep 1000"));
    // v1: memory.memsw.limit_in_bytes is memory + swap; v2: memory.swap.max is the swap
    // alone (memsw - memory), independent of memory.max.
    let swap_file = if is_v2() {
        "memory.swap.max"
    } else {
        "memory.memsw.limit_in_bytes"
    };
    if !cg_dir(&c, "memory").join(swap_file).exists() {
        eprintln!("skipped: no swap accounting ({swap_file}) on this host");
        return;
    }
    let step = |mem: &str, swap: &str, want_mem: i64, want_swap: i64| {
        c.rt(&["update", "--memory", mem, "--memory-swap", swap, &c.id])
            .assert_ok();
        assert_eq!(
            mem_limit(&c),
            want_mem.to_string(),
            "after --memory {mem} --memory-swap {swap}"
        );
        let want = if is_v2() { want_swap - want_mem } else { want_swap };
        assert_eq!(
            cg_read(&c, "memory", swap_file),
            want.to_string(),
            "{swap_file} after --memory {mem} --memory-swap {swap}"
        );
    };
    step("64m", "128m", 64 * MIB, 128 * MIB);
    step("16m", "32m", 16 * MIB, 32 * MIB); // shrink
    step("256m", "512m", 256 * MIB, 512 * MIB); // grow past the old swap limit
}

#[test]
fn pids_limit_stops_forks() {
    // The init waits for a go file, then an inner shell starts 20 sleeps; once the
    // cgroup holds 10 tasks fork fails. (Driven from the init, not from an exec: runc
    // 1.1.5's foreground exec does not return once the pids limit is reached.)
    let work = tempfile::Builder::new().prefix("amber-it-pids.").tempdir().unwrap();
    let w = work.path().to_string_lossy().into_owned();
    let mut b = Bundle::sh(&format!(
        "while [ ! -e {w}/go ]; do sleep 0.05; done; \
         sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 100 & done' \
           2>{w}/err; \
         set -- /proc/[0-9]*; echo $# >{w}/count; exec sleep 1000"
    ));
    b.share_host_dir(work.path());
    let c = running("update-pids", b);
    c.rt(&["update", "--pids-limit", "10", &c.id]).assert_ok();
    assert_eq!(pids_max(&c), "10");
    fs::write(work.path().join("go"), "").unwrap();
    let count_file = work.path().join("count");
    let count = wait_for_content(&count_file, "\n");
    let err = fs::read_to_string(work.path().join("err")).unwrap_or_default();
    assert!(err.contains("fork"), "no fork failed under pids.max=10: {err:?}");
    let n: u32 = count.trim().parse().unwrap();
    assert!(n <= 10, "{n} processes in the container");
    let current: u32 = cg_read(&c, "pids", "pids.current").parse().unwrap();
    assert!(current <= 10, "pids.current {current} above the limit");
    assert!(
        current >= 9,
        "pids.current {current}: the limit stopped forks too early"
    );
}

#[test]
fn pause_and_resume() {
    let c = running("pause", Bundle::sh("sleep 1000 & sleep 1000"));
    wait_for("init's background sleep", || !child_pids(c.pid()).is_empty());
    let procs = cg_procs(&c);
    assert_eq!(procs.len(), 2, "{procs:?}");

    c.rt(&["pause", &c.id]).assert_ok();
    assert_eq!(c.status().as_deref(), Some("paused"));
    assert_frozen(&c, true);
    for &p in &procs {
        let (frozen, st) = task_frozen(p);
        assert!(frozen, "process {p} not frozen: {st}");
    }
    // pausing again fails and changes nothing
    c.rt(&["pause", &c.id]).assert_fail();
    assert_eq!(c.status().as_deref(), Some("paused"));
    assert_frozen(&c, true);

    c.rt(&["resume", &c.id]).assert_ok();
    assert_eq!(c.status().as_deref(), Some("running"));
    assert_frozen(&c, false);
    for &p in &procs {
        let (frozen, st) = task_frozen(p);
        assert!(!frozen && st.starts_with("State: S"), "process {p} not thawed: {st}");
    }
    let out = c.rt(&["resume", &c.id]);
    out.assert_fail();
    assert!(out.stderr.contains("not paused"), "{out}");
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn pause_created_container() {
    // A created container can be paused (its init waits in the cgroup) and resumed
    // back to created, then started.
    let c = Container::new("pause-created", Bundle::sh("echo hello; sleep 1000"));
    c.create_ok();
    c.rt(&["pause", &c.id]).assert_ok();
    assert_eq!(c.status().as_deref(), Some("paused"));
    assert_frozen(&c, true);
    c.rt(&["resume", &c.id]).assert_ok();
    assert_eq!(c.status().as_deref(), Some("created"));
    assert_frozen(&c, false);
    c.start_ok();
    assert_eq!(c.status().as_deref(), Some("running"));
    wait_for_content(&c.stdout_path(), "hello");
}

#[test]
fn pause_stopped_fails() {
    let c = Container::new("pause-stopped", Bundle::sh("true"));
    c.create_ok();
    c.start_ok();
    c.wait_status("stopped");
    c.rt(&["pause", &c.id]).assert_fail();
    c.rt(&["resume", &c.id]).assert_fail();
    assert_eq!(c.status().as_deref(), Some("stopped"));
}

#[test]
fn ps_json_lists_exactly_the_containers_pids() {
    let c = running("ps-json", Bundle::sh("sleep 1000 & sleep 1000"));
    let init = c.pid();
    wait_for("init's background sleep", || !child_pids(init).is_empty());
    let child = child_pids(init)[0];
    let out = c.rt(&["ps", "--format", "json", &c.id]);
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let got: BTreeSet<i64> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {out}"))
        .iter()
        .map(|p| p.as_i64().unwrap_or_else(|| panic!("not a pid: {out}")))
        .collect();
    assert_eq!(got, BTreeSet::from([init as i64, child as i64]), "{out}");
    let cg: BTreeSet<i64> = cg_procs(&c).into_iter().map(i64::from).collect();
    assert_eq!(got, cg);
    // -f json is the short form
    let out = c.rt(&["ps", "-f", "json", &c.id]);
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{out}");
}

#[test]
fn ps_table() {
    let c = running("ps-table", Bundle::sh("sleep 1000"));
    let init = c.pid();
    let out = c.rt(&["ps", &c.id]);
    out.assert_ok();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let col = header
        .iter()
        .position(|h| *h == "PID")
        .unwrap_or_else(|| panic!("no PID column: {out}"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "one process, one row: {out}");
    assert_eq!(rows[0][col], init.to_string(), "{out}");
    assert!(out.stdout.contains("sleep 1000"), "{out}");

    // arguments after the id go to ps(1); the PID column is still found
    let out = c.rt(&["ps", &c.id, "-o", "pid,comm"]);
    out.assert_ok();
    let rows: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0], ["PID", "COMMAND"], "{out}");
    assert_eq!(rows[1], [init.to_string().as_str(), "sleep"], "{out}");
}

#[test]
fn kill_all_without_pid_namespace() {
    // Without its own pid namespace the init's death does not take its children
    // along: `kill --all` signals every process in the cgroup.
    let mut b = Bundle::sh("sleep 1000 & sleep 1000");
    b.remove_namespace("pid");
    let c = running("kill-all", b);
    let init = c.pid();
    wait_for("init's background sleep", || !child_pids(init).is_empty());
    let procs = cg_procs(&c);
    assert_eq!(procs.len(), 2, "{procs:?}");
    for &p in &procs {
        c.note_pid(p);
    }
    c.rt(&["kill", "--all", &c.id, "KILL"]).assert_ok();
    wait_for("every process to die", || procs.iter().all(|&p| !pid_alive(p)));
    c.wait_status("stopped");
    c.delete(false).assert_ok();
}

#[test]
fn delete_force_paused() {
    let c = running("delete-paused", Bundle::sh("sleep 1000 & sleep 1000"));
    wait_for("init's background sleep", || !child_pids(c.pid()).is_empty());
    let procs = cg_procs(&c);
    c.rt(&["pause", &c.id]).assert_ok();
    assert_eq!(c.status().as_deref(), Some("paused"));
    c.delete(true).assert_ok();
    assert!(!c.state_dir().exists());
    assert_eq!(
        find_cgroup_dirs(std::slice::from_ref(&c.id)),
        Vec::<PathBuf>::new(),
        "delete --force left cgroups"
    );
    wait_for("the paused processes to die", || procs.iter().all(|&p| !pid_alive(p)));
}

#[test]
fn events_stats() {
    if !events_supported() {
        return;
    }
    let mut b = Bundle::sh("sleep 1000 & sleep 1000");
    b.set("/linux/resources/memory", json!({ "limit": 64 * MIB }));
    b.set("/linux/resources/pids", json!({ "limit": 50 }));
    let c = running("events", b);
    wait_for("init's background sleep", || !child_pids(c.pid()).is_empty());
    let out = c.rt(&["events", "--stats", &c.id]);
    out.assert_ok();
    let objects: Vec<Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(objects.len(), 1, "one JSON object: {out}");
    let ev = &objects[0];
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], c.id.as_str(), "{ev}");
    let data = &ev["data"];
    assert_eq!(data["pids"]["current"], 2, "init + its sleep: {ev}");
    assert_eq!(data["pids"]["limit"], 50, "{ev}");
    let mem = data["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(mem > 0, "data.memory.usage.usage: {ev}");
    assert_eq!(data["memory"]["usage"]["limit"], 64 * MIB, "{ev}");
    assert!(data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{ev}");
    // of a container that does not exist: an error
    let missing = Container::new("events-missing", Bundle::new());
    missing.rt(&["events", "--stats", &missing.id]).assert_fail();
}

#[test]
fn events_stream_reports_oom() {
    if !events_supported() {
        return;
    }
    let bin_dir = tempfile::Builder::new().prefix("amber-it-eat.").tempdir().unwrap();
    compile_static_c(bin_dir.path(), "eat", EAT_C);
    let mut b = Bundle::sh("sleep 1000");
    b.bind(bin_dir.path(), "/root", &["ro"]);
    b.set(
        "/linux/resources/memory",
        json!({ "limit": 32 * MIB, "swap": 32 * MIB }),
    );
    let c = running("events-oom", b);
    let mut events = Background::spawn(c.command(&["events", "--interval", "1s", &c.id]));
    // the stream is up once it printed something (runc: the first stats after 1 s)
    wait_for("the first event", || {
        events.stdout().contains("\n") || events.try_finish().is_some()
    });
    let out = c.rt(&["exec", &c.id, "/root/eat"]);
    assert_eq!(out.code, Some(137), "the allocator was not OOM-killed: {out}");
    wait_for("an oom event", || {
        events.stdout().contains(r#""type":"oom""#) || events.try_finish().is_some()
    });
    let text = events.stdout();
    let oom: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "oom")
        .collect();
    assert!(!oom.is_empty(), "no oom event: {text}");
    assert_eq!(oom[0]["id"], c.id.as_str(), "{text}");
    events.kill();
}

/// Does the runtime have an `events` command? (Says why not when it lacks one.)
fn events_supported() -> bool {
    if c_events_supported() {
        return true;
    }
    eprintln!(
        "SKIPPED: `{} events --help` fails: the runtime has no events command",
        runtime().display()
    );
    false
}

fn c_events_supported() -> bool {
    rt(&["events", "--help"]).ok()
}

const EAT_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    size_t chunk = 1 << 20;
    for (int i = 0; i < 200; i++) {
        char *p = malloc(chunk);
        if (!p) { printf("malloc failed\n"); return 2; }
        memset(p, 1, chunk);
    }
    printf("survived\n");
    return 0;
}
"#;

#[test]
fn memory_limit_oom_kills() {
    let bin_dir = tempfile::Builder::new().prefix("amber-it-eat.").tempdir().unwrap();
    compile_static_c(bin_dir.path(), "eat", EAT_C);
    let mut b = Bundle::sh("/root/eat; echo \"rc=$?\"");
    b.bind(bin_dir.path(), "/root", &["ro"]);
    b.set(
        "/linux/resources/memory",
        json!({ "limit": 32 * MIB, "swap": 32 * MIB }),
    );
    let c = Container::new("oom", b);
    let out = c.run_foreground();
    out.assert_ok();
    assert!(
        !out.stdout.contains("survived"),
        "200 MiB allocated under a 32 MiB limit: {out}"
    );
    assert!(out.stdout.contains("rc=137"), "the allocator was not SIGKILLed: {out}");
}
