//! Survival programs for step 4 (memory maps), step 8 (files and descriptors) and part of step 9
//! (eventfd, signalfd, timerfd, epoll, inotify) 13 (unix sockets) and 14 (TCP/UDP sockets that are not connections) of
//! CHECKPOINT.md §6, each as the container's init and deep in its tree (see
//! `amber_integration::survival` and `integration/survival/{maps,files}.c`); `_clone`: checkpoint
//! with --leave-running (the original must pass: pipe data is read without being consumed) and
//! restore into a fresh container; `_twice`: the restored tree is checkpointed and restored
//! again (restored pipes, ghost files, shmem and memfds dump like the originals). The refusal
//! tests check that what is not restored yet stops the checkpoint and leaves the container
//! running.

use amber_integration::survival::{survive, survive_with, Opts, Place, Variant};

fn clone() -> Opts<'static> {
    Opts {
        variant: Variant::LeaveRunningClone,
        ..Opts::default()
    }
}

fn twice() -> Opts<'static> {
    Opts {
        variant: Variant::KillTwice,
        ..Opts::default()
    }
}

#[test]
fn events_as_init() {
    survive("events", Place::Init);
}

#[test]
fn events_as_init_clone() {
    survive_with("events", Place::Init, &clone());
}

#[test]
fn events_deep_twice() {
    survive_with("events", Place::Deep, &twice());
}

#[test]
fn files_deep_clone() {
    survive_with("files", Place::Deep, &clone());
}

#[test]
fn files_as_init_twice() {
    survive_with("files", Place::Init, &twice());
}

#[test]
fn maps_as_init_clone() {
    survive_with("maps", Place::Init, &clone());
}

#[test]
fn maps_deep_twice() {
    survive_with("maps", Place::Deep, &twice());
}

#[test]
fn files_as_init() {
    survive("files", Place::Init);
}

#[test]
fn files_deep() {
    survive("files", Place::Deep);
}

#[test]
fn maps_as_init() {
    survive("maps", Place::Init);
}

#[test]
fn maps_deep() {
    survive("maps", Place::Deep);
}

/// What is not restored yet (`kind`, see `integration/survival/refusals.c`) is refused at
/// checkpoint with a message naming the process and `expect`; the container keeps running with
/// its state intact (the program checks it after the failed checkpoint).
fn refused(kind: &str, expect: &str) {
    use amber_integration::*;
    use std::time::{Duration, Instant};
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's (runc needs CRIU)");
        return;
    }
    amber_integration::survival::build("refusals");
    let tmp = |p: &str| tempfile::Builder::new().prefix(p).tempdir_in("/tmp").unwrap();
    let out = tmp("amber-it-sv-out.");
    let images = tmp("amber-it-sv-img.");
    std::fs::set_permissions(out.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut bundle = Bundle::new();
    bundle.args(&["/t/refusals", "/out", kind]);
    bundle.bind(&amber_integration::survival::build_dir(), "/t", &["ro"]);
    bundle.bind(out.path(), "/out", &["rw"]);
    let c = Container::new(&format!("sv-refuse-{kind}"), bundle);
    c.bundle.write();
    let bundle_s = c.bundle.path_str();
    c.run_console(c.command(&["run", "-d", "--bundle", &bundle_s, &c.id]), &[])
        .assert_ok();
    let ready = out.path().join("refusals.ready");
    wait_for_timeout("the program to be ready", Duration::from_secs(20), || {
        std::fs::read_to_string(&ready).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid = c.pid();
    let img = images.path().join("img");
    let cp = c.rt(&["checkpoint", "--image-path", &img.to_string_lossy(), &c.id]);
    cp.assert_fail();
    assert!(
        cp.stderr.contains(&format!("pid {pid}")) && cp.stderr.contains(expect),
        "the refusal names pid {pid} and {expect:?}: {cp}"
    );
    assert!(!img.join("manifest.json").exists(), "no image after a refusal");
    assert_eq!(c.state_json()["status"], "running", "the container keeps running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "detached: {status}");
    // SAFETY: kill(2) of this test's container init.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR2) }, 0);
    let result = out.path().join("refusals.result");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !result.exists() {
        assert!(Instant::now() < deadline, "no result after SIGUSR2: {}", c.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&result).unwrap();
    assert_eq!(
        text.trim_end(),
        "PASS",
        "{kind}: state after the refused checkpoint: {text}"
    );
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
fn inet_sockets_as_init() {
    survive("inet", Place::Init);
}

#[test]
fn inet_sockets_deep_twice() {
    survive_with("inet", Place::Deep, &twice());
}

#[test]
fn unix_sockets_as_init() {
    survive("unixsk", Place::Init);
}

#[test]
fn unix_sockets_deep_clone() {
    survive_with("unixsk", Place::Deep, &clone());
}

#[test]
fn unix_sockets_deep_twice() {
    survive_with("unixsk", Place::Deep, &twice());
}

#[test]
fn packet_pipes_with_data_are_refused_and_the_container_keeps_running() {
    refused("packet", "packet-mode (O_DIRECT) pipe with data");
}
