//! Survival programs for step 4 (memory maps), step 8 (files and descriptors) and part of step 9
//! (eventfd, signalfd, timerfd, epoll, inotify) 13 (unix sockets) and 14 (TCP/UDP sockets that are not connections) of
//! CHECKPOINT.md §6, each as the container's init and deep in its tree (see
//! `amber_integration::survival` and `integration/survival/{maps,files}.c`); `_clone`: checkpoint
//! with --leave-running (the original must pass: pipe data is read without being consumed) and
//! restore into a fresh container; `_twice`: the restored tree is checkpointed and restored
//! again (restored pipes, ghost files, shmem and memfds dump like the originals). The refusal
//! tests check that what is not restored yet stops the checkpoint and leaves the container
//! running.

use amber_integration::survival::{native_cr, Refusal};
use amber_integration::survival_tests;

survival_tests! {
    events_as_init: "events", Init;
    events_as_init_clone: "events", Init + LeaveRunningClone;
    events_deep_twice: "events", Deep + KillTwice;

    files_as_init: "files", Init;
    files_deep: "files", Deep;
    files_deep_clone: "files", Deep + LeaveRunningClone;
    files_as_init_twice: "files", Init + KillTwice;

    maps_as_init: "maps", Init;
    maps_deep: "maps", Deep;
    maps_as_init_clone: "maps", Init + LeaveRunningClone;
    maps_deep_twice: "maps", Deep + KillTwice;

    inet_sockets_as_init: "inet", Init;
    inet_sockets_deep_twice: "inet", Deep + KillTwice;

    unix_sockets_as_init: "unixsk", Init;
    unix_sockets_deep_clone: "unixsk", Deep + LeaveRunningClone;
    unix_sockets_deep_twice: "unixsk", Deep + KillTwice;
}

/// What is not restored yet (`kind`, see `integration/survival/refusals.c`) is refused at
/// checkpoint with a message naming the process and `expect`; the container keeps running with
/// its state intact (the program checks it after the failed checkpoint).
fn refused(kind: &str, expect: &str) {
    if !native_cr() {
        return;
    }
    let (r, _) = Refusal::program(&format!("sv-refuse-{kind}"), "refusals", &[kind]);
    let pid = r.c.pid();
    let cp = r.checkpoint_refused();
    assert!(
        cp.stderr.contains(&format!("pid {pid}")) && cp.stderr.contains(expect),
        "the refusal names pid {pid} and {expect:?}: {cp}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "detached: {status}");
    r.pass_after("refusals", pid);
}

#[test]
fn netlink_sockets_are_refused_and_the_container_keeps_running() {
    refused("socket", "sockets of family 16 are not supported yet");
}

#[test]
fn pending_unix_connections_are_refused_and_the_container_keeps_running() {
    refused("unixconn", "connections wait to be accepted");
}

#[test]
fn sysv_shm_is_refused_and_the_container_keeps_running() {
    refused("sysvshm", "SysV shared memory");
}

#[test]
fn leases_are_refused_and_the_container_keeps_running() {
    refused("lease", "LEASE locks");
}

#[test]
fn signal_driven_io_is_refused_and_the_container_keeps_running() {
    refused("async", "fd 10 -> pipe:[");
}

#[test]
fn shared_descriptor_tables_are_refused_and_the_container_keeps_running() {
    refused("clonefiles", "CLONE_FILES");
}

#[test]
fn proc_files_are_refused_and_the_container_keeps_running() {
    refused("procfile", "files in /proc are not supported yet");
}

#[test]
fn packet_pipes_with_data_are_refused_and_the_container_keeps_running() {
    refused("packet", "packet-mode (O_DIRECT) pipe with data");
}
