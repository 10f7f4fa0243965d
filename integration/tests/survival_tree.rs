//! Survival programs, steps 5 (signals and timers) and 6 (process tree) of CHECKPOINT.md §6,
//! each as the container's init and deep in its tree (see `amber_integration::survival` and
//! `integration/survival/`); `_clone`: checkpoint with --leave-running (the original must pass:
//! a stopped child stays stopped, queued signals stay queued) and restore into a fresh container;
//! `_twice`: checkpoint and restore the restored tree again (zombies, stops, queues and timers as
//! restored must dump right). And a tree the engine still refuses, which must stay running.

use amber_integration::survival::{container_pids, native_cr, Refusal};
use amber_integration::survival_tests;

survival_tests! {
    signals_as_init: "signals", Init;
    signals_deep: "signals", Deep;
    signals_deep_clone: "signals", Deep + LeaveRunningClone;
    signals_as_init_twice: "signals", Init + KillTwice;

    pstree_as_init: "pstree", Init;
    pstree_deep: "pstree", Deep;
    pstree_as_init_clone: "pstree", Init + LeaveRunningClone;
    pstree_deep_twice: "pstree", Deep + KillTwice;
}

/// A task reparented to the init while still in the session of a live task elsewhere in the
/// tree: the checkpoint is refused naming that task and the session, and the container keeps
/// running untouched (not frozen, nothing traced or stopped: the program checks that itself).
#[test]
fn unrestorable_session_is_refused_and_the_container_keeps_running() {
    if !native_cr() {
        return;
    }
    let name = "pstree_refused";
    let (r, text) = Refusal::program("sv-refused", name, &[]);
    let ids: Vec<i32> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [target, child, session] = ids[..] else {
        panic!("ready file: {text:?}")
    };
    let pids = container_pids(&r.c);
    let host_of = |inner: i32| pids.iter().find(|(_, v)| v[0] == inner).map(|(h, _)| *h).unwrap();
    let child_host = host_of(child);

    let cp = r.checkpoint_refused();
    let msg = format!("{}{}", cp.stderr, cp.stdout);
    assert!(
        msg.contains(&format!("pid {child_host}")) && msg.contains(&format!("session {session}")),
        "the refusal must name the task (host pid {child_host}) and session {session}: {msg}"
    );
    assert_eq!(container_pids(&r.c), pids, "the same processes");
    r.pass_after(name, host_of(target));
}

/// A multi-threaded task with the highest pid: the dump seizes and interrupts every other task
/// before it refuses that one. Each refusal must let every seized task go from its interrupt
/// stop (a task left traced is killed when amber exits): after ten refusals in a row, every
/// process is alive, untraced, not stopped and still answers (the program checks that itself),
/// and no image directory is left behind.
#[test]
fn refusal_after_seizing_lets_every_task_go() {
    if !native_cr() {
        return;
    }
    let name = "threads_refused";
    let (r, text) = Refusal::program("sv-thr-refused", name, &[]);
    let ids: Vec<i32> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [target, threaded] = ids[..] else {
        panic!("ready file: {text:?}")
    };
    let pids = container_pids(&r.c);
    let host_of = |inner: i32| pids.iter().find(|(_, v)| v[0] == inner).map(|(h, _)| *h).unwrap();
    let threaded_host = host_of(threaded);
    assert!(
        pids.iter().filter(|(h, _)| *h < threaded_host).count() >= 4,
        "the threaded task must come last: {pids:?}"
    );
    for round in 0..10 {
        let cp = r.checkpoint_refused();
        let msg = format!("{}{}", cp.stderr, cp.stdout);
        assert!(
            msg.contains(&format!("pid {threaded_host}")) && msg.contains("threads"),
            "round {round}: the refusal must name the threaded task (host pid {threaded_host}): {msg}"
        );
        assert!(
            !r.img().exists(),
            "round {round}: a refused checkpoint left the image directory it made"
        );
        assert_eq!(container_pids(&r.c), pids, "round {round}: the same processes");
    }
    r.pass_after(name, host_of(target));
}
