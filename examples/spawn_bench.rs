//! Micro-benchmark (not a test): spawning N processes that exit at once, three ways:
//! plain fork(2), amber's clone3 path with the kernel choosing pids, and amber's clone3 path at
//! exact pids (set_tid). Run as root: `cargo run --release --example spawn_bench [N]`.

use std::time::Instant;

use amber::spawn::{self, SpawnPlan};

fn free_pids(n: usize) -> Vec<i32> {
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    // /proc/<tid> resolves for threads too, which readdir does not list.
    (pid_max / 2..pid_max)
        .filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .take(n)
        .collect()
}

fn reap(pid: i32) {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let plain = {
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY-free: nix's fork is unsafe only for multi-threaded callers; this is single-threaded.
            #[allow(unsafe_code)]
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => amber::sys::exit_now(0),
                nix::unistd::ForkResult::Parent { child } => reap(child.as_raw()),
            }
        }
        t.elapsed()
    };
    let kernel_pids = {
        let plan = SpawnPlan {
            new_namespaces: 0,
            set_tid: vec![],
            cgroup_fd: None,
            joins: vec![],
            time_offsets: None,
        };
        let t = Instant::now();
        for _ in 0..n {
            let s = spawn::spawn(&plan, || 0).expect("clone3");
            reap(s.pid);
        }
        t.elapsed()
    };
    let pids = free_pids(n);
    assert_eq!(pids.len(), n, "not enough free pids below pid_max");
    let mut skipped = 0;
    let exact = {
        let t = Instant::now();
        for &pid in &pids {
            let plan = SpawnPlan {
                new_namespaces: 0,
                set_tid: vec![pid],
                cgroup_fd: None,
                joins: vec![],
                time_offsets: None,
            };
            // Another process on the machine may take a pid between the scan and the clone.
            match spawn::spawn(&plan, || 0) {
                Ok(s) => {
                    assert_eq!(s.pid, pid, "the kernel did not honour set_tid");
                    reap(s.pid);
                }
                Err(_) => skipped += 1,
            }
        }
        t.elapsed()
    };
    let exact_checked = {
        let pids = free_pids(n);
        let t = Instant::now();
        for &pid in &pids {
            let set_tid = vec![pid];
            let levels = spawn::tid::levels_for_child(false);
            if spawn::check_set_tid(&set_tid, false, &levels).is_err() {
                continue;
            }
            let plan = SpawnPlan {
                new_namespaces: 0,
                set_tid,
                cgroup_fd: None,
                joins: vec![],
                time_offsets: None,
            };
            if let Ok(s) = spawn::spawn(&plan, || 0) {
                reap(s.pid);
            }
        }
        t.elapsed()
    };
    if skipped > 0 {
        println!("({skipped} pids were taken by other processes between the scan and the clone)");
    }
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("spawn {n} processes that exit at once (per process, µs):");
    println!("  fork(2)                              {:8.1}", per(plain));
    println!(
        "  amber clone3 + pidfd                 {:8.1}  ({:.2}x fork)",
        per(kernel_pids),
        per(kernel_pids) / per(plain)
    );
    println!(
        "  amber clone3 + pidfd + set_tid       {:8.1}  ({:.2}x fork)",
        per(exact),
        per(exact) / per(plain)
    );
    println!(
        "  ... + pre-clone checks (scan /proc)  {:8.1}  ({:.2}x fork)",
        per(exact_checked),
        per(exact_checked) / per(plain)
    );
}
