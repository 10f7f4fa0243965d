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

/// A dump that fails inside a task, its scratch page mapped and every signal blocked
/// (`AMBER_FAULT=dump-query`), or while putting it back from its last injected syscall
/// (`dump-query-return`), or both: the task is put back as it was. Each process is alive, untraced,
/// not stopped, answers on its pipe, blocks the signals it blocked and has the mappings it had
/// (the program checks that itself); no image directory is left behind.
#[test]
fn a_dump_failing_inside_a_task_puts_it_back() {
    if !native_cr() {
        return;
    }
    let name = "threads_refused";
    let (r, text) = Refusal::program("sv-query-fail", name, &["nothreads"]);
    let target: i32 = text.lines().next().and_then(|l| l.parse().ok()).expect("ready file");
    let pids = container_pids(&r.c);
    let host_of = |inner: i32| pids.iter().find(|(_, v)| v[0] == inner).map(|(h, _)| *h).unwrap();
    let img = r.img();
    for (round, points) in ["dump-query", "dump-query-return", "dump-query,dump-query-return"]
        .into_iter()
        .enumerate()
    {
        let mut cmd =
            r.c.command(&["checkpoint", "--image-path", &img.to_string_lossy(), &r.c.id]);
        cmd.env("AMBER_FAULT", points);
        let cp = r.c.run_console(cmd, &[]);
        cp.assert_fail();
        // The first failure is the one reported.
        let first = points.split(',').next().unwrap();
        assert!(
            cp.stderr.contains(&format!("fault injected at {first} ")),
            "round {round}: {cp}"
        );
        assert!(
            !img.exists(),
            "round {round}: the failed checkpoint left the image directory"
        );
        assert_eq!(r.c.status().as_deref(), Some("running"), "round {round}");
        assert_eq!(container_pids(&r.c), pids, "round {round}: the same processes");
    }
    r.pass_after(name, host_of(target));
}
