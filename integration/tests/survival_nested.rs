//! Survival program for step 16 of CHECKPOINT.md §6: pid namespaces nested two levels deep
//! inside the container (unshare + fork), a child forked after setns into a nested namespace
//! and one that stays there like `nsenter -p`; every process must come back with the same NSpid
//! vector, parent and pid_for_children (see `integration/survival/nested_pidns.c`).

use amber_integration::survival::{native_cr, Opts, Refusal};
use amber_integration::{survival_tests, Bundle};

/// unshare(CLONE_NEWPID) and setns need CAP_SYS_ADMIN, which runc's default set lacks.
fn with_sys_admin(b: &mut Bundle) {
    for set in ["bounding", "effective", "permitted"] {
        b.process()["capabilities"][set]
            .as_array_mut()
            .expect("capability list")
            .push("CAP_SYS_ADMIN".into());
    }
}

fn opts() -> Opts<'static> {
    Opts {
        edit_bundle: Some(&with_sys_admin),
        ..Opts::default()
    }
}

// `_clone`: checkpoint --leave-running (the original must pass), then the image as a fresh
// container; `_twice`: the restored tree checkpointed and restored again.
survival_tests! {
    nested_pidns_as_init: "nested_pidns", Init, opts();
    nested_pidns_deep: "nested_pidns", Deep, opts();
    nested_pidns_as_init_clone: "nested_pidns", Init + LeaveRunningClone, opts();
    nested_pidns_deep_clone: "nested_pidns", Deep + LeaveRunningClone, opts();
    nested_pidns_as_init_twice: "nested_pidns", Init + KillTwice, opts();
    nested_pidns_deep_twice: "nested_pidns", Deep + KillTwice, opts();
}

/// A process in a nested user namespace cannot be restored: the checkpoint is refused naming it
/// and the namespace, and the container keeps running, untouched.
#[test]
fn nested_user_namespace_is_refused_and_the_container_keeps_running() {
    use std::time::{Duration, Instant};
    if !native_cr() {
        return;
    }
    let r = Refusal::run(
        "nsu",
        Bundle::sh("unshare -U sleep 100000 & i=0; while :; do i=$((i+1)); echo $i > /out/count; sleep 0.1; done"),
    );
    let (c, out) = (&r.c, &r.out);
    let count = || -> u64 {
        std::fs::read_to_string(out.path().join("count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let init = c.pid();
    let user_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    // The unshared sleep: the container's process whose user namespace is not the init's.
    let deadline = Instant::now() + Duration::from_secs(10);
    let inner = loop {
        let ps = c.rt(&["ps", "--format", "json", &c.id]);
        let pids: Vec<i32> = serde_json::from_str(ps.stdout.trim()).unwrap_or_default();
        if let Some(p) = pids
            .into_iter()
            .find(|&p| user_ns(p).is_some() && user_ns(p) != user_ns(init))
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no process in a nested user namespace: {ps}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let img = r.img().to_string_lossy().into_owned();
    let cp = c.rt(&["checkpoint", "--image-path", &img, &c.id]);
    assert!(!cp.ok(), "a nested user namespace was checkpointed: {cp}");
    assert!(
        cp.stderr.contains(&format!("pid {inner}")) && cp.stderr.contains("nested user namespace"),
        "{cp}"
    );
    assert_eq!(c.state_json()["status"], "running");
    let now = count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() <= now {
        assert!(
            Instant::now() < deadline,
            "the container stopped counting after the refused checkpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in [init, inner] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            status.contains("TracerPid:\t0") && !status.contains("State:\tT"),
            "pid {pid}: {status}"
        );
    }
}
