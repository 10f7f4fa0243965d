//! Survival programs, steps 5 (signals and timers) and 6 (process tree) of CHECKPOINT.md §6,
//! each as the container's init and deep in its tree (see `amber_integration::survival` and
//! `integration/survival/`); `_clone`: checkpoint with --leave-running (the original must pass:
//! a stopped child stays stopped, queued signals stay queued) and restore into a fresh container;
//! `_twice`: checkpoint and restore the restored tree again (zombies, stops, queues and timers as
//! restored must dump right). And a tree the engine still refuses, which must stay running.

use amber_integration::survival::{build, build_dir, container_pids, survive, survive_with, Opts, Place, Variant};
use amber_integration::*;
use std::time::{Duration, Instant};

#[test]
fn signals_as_init() {
    survive("signals", Place::Init);
}

#[test]
fn signals_deep() {
    survive("signals", Place::Deep);
}

#[test]
fn pstree_as_init() {
    survive("pstree", Place::Init);
}

#[test]
fn pstree_deep() {
    survive("pstree", Place::Deep);
}

fn variant(variant: Variant) -> Opts<'static> {
    Opts {
        variant,
        ..Opts::default()
    }
}

#[test]
fn signals_deep_clone() {
    survive_with("signals", Place::Deep, &variant(Variant::LeaveRunningClone));
}

#[test]
fn signals_as_init_twice() {
    survive_with("signals", Place::Init, &variant(Variant::KillTwice));
}

#[test]
fn pstree_as_init_clone() {
    survive_with("pstree", Place::Init, &variant(Variant::LeaveRunningClone));
}

#[test]
fn pstree_deep_twice() {
    survive_with("pstree", Place::Deep, &variant(Variant::KillTwice));
}

/// A task reparented to the init while still in the session of a live task elsewhere in the
/// tree: the checkpoint is refused naming that task and the session, and the container keeps
/// running untouched (not frozen, nothing traced or stopped: the program checks that itself).
#[test]
fn unrestorable_session_is_refused_and_the_container_keeps_running() {
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's (runc needs CRIU)");
        return;
    }
    let name = "pstree_refused";
    build(name);
    let out = tempfile::Builder::new()
        .prefix("amber-it-sv-out.")
        .tempdir_in("/tmp")
        .unwrap();
    let images = tempfile::Builder::new()
        .prefix("amber-it-sv-img.")
        .tempdir_in("/tmp")
        .unwrap();
    let mut bundle = Bundle::new();
    bundle.args(&[&format!("/t/{name}"), "/out"]);
    bundle.bind(&build_dir(), "/t", &["ro"]);
    bundle.bind(out.path(), "/out", &["rw"]);
    let c = Container::new("sv-refused", bundle);
    c.bundle.write();
    let bundle_s = c.bundle.path_str();
    c.run_console(c.command(&["run", "-d", "--bundle", &bundle_s, &c.id]), &[])
        .assert_ok();
    let ready = out.path().join(format!("{name}.ready"));
    wait_for_timeout("the program to be ready", Duration::from_secs(20), || ready.exists());
    let text = std::fs::read_to_string(&ready).unwrap();
    let ids: Vec<i32> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [target, child, session] = ids[..] else {
        panic!("ready file: {text:?}")
    };
    let pids = container_pids(&c);
    let host_of = |inner: i32| pids.iter().find(|(_, v)| v[0] == inner).map(|(h, _)| *h).unwrap();
    let child_host = host_of(child);

    let img = images.path().join("img");
    let img_s = img.to_string_lossy().into_owned();
    let cp = c.rt(&["checkpoint", "--image-path", &img_s, &c.id]);
    assert!(!cp.ok(), "the checkpoint should have been refused: {cp}");
    let msg = format!("{}{}", cp.stderr, cp.stdout);
    assert!(
        msg.contains(&format!("pid {child_host}")) && msg.contains(&format!("session {session}")),
        "the refusal must name the task (host pid {child_host}) and session {session}: {msg}"
    );
    assert!(!img.join("manifest.json").exists(), "no image was written");
    assert_eq!(c.status().as_deref(), Some("running"), "the container is still running");
    assert_eq!(container_pids(&c), pids, "the same processes");

    // SAFETY: kill(2) of the program, a process of this test's container.
    let rc = unsafe { libc::kill(host_of(target), libc::SIGUSR2) };
    assert_eq!(rc, 0);
    let result = out.path().join(format!("{name}.result"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !result.exists() {
        assert!(Instant::now() < deadline, "no result after SIGUSR2: {}", c.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let verdict = std::fs::read_to_string(&result).unwrap();
    assert_eq!(
        verdict.trim_end(),
        "PASS",
        "after the refused checkpoint: {}",
        c.stderr()
    );
}
