//! OCI hooks: order, the state on stdin, env, failure and timeout.

use amber_integration::*;
use serde_json::{json, Value};
use std::fs;
use std::path::Path;

const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that appends one line `NAME <state json>` to `log`.
fn logging_hook(name: &str, log: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("printf '%s ' {name} >> {0}; cat >> {0}; echo >> {0}", log.display())],
    })
}

/// Lines of the hook log: (hook name, state JSON).
fn read_log(log: &Path) -> Vec<(String, Value)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (name, state) = l.split_once(' ').expect("NAME STATE");
            let v = serde_json::from_str(state).unwrap_or_else(|e| panic!("hook stdin is not JSON ({e}): {l}"));
            (name.to_string(), v)
        })
        .collect()
}

/// A host directory under /tmp that the container sees at the same path (hooks
/// that run inside the container, startContainer, write there too).
fn shared_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("amber-it-hooks.")
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn hooks_order_and_state() {
    let dir = shared_dir();
    let log = dir.path().join("hooks.log");
    let mut b = Bundle::sh("echo user-process");
    b.share_host_dir(dir.path());
    for h in HOOKS {
        b.set(&format!("/hooks/{h}"), json!([logging_hook(h, &log)]));
    }
    let c = Container::new("hooks", b);
    c.create_ok();
    let pid = c.pid();
    let names = |entries: &[(String, Value)]| -> Vec<String> { entries.iter().map(|(n, _)| n.clone()).collect() };

    // runc 1.1 runs poststart at the end of create, once the init waits on the exec fifo
    // (runc@v1.1.5 libcontainer/container_linux.go:358-372). The runtime-spec says poststart
    // runs after the user process started, before `start` returns: amber does that.
    let amber = is_amber();
    let after_create = read_log(&log);
    let want_create: &[&str] = if amber {
        &["prestart", "createRuntime", "createContainer"]
    } else {
        &["prestart", "createRuntime", "createContainer", "poststart"]
    };
    assert_eq!(names(&after_create), want_create, "{after_create:?}");
    assert_eq!(c.stdout(), "", "user process ran before start");

    c.start_ok();
    wait_for_content(&c.stdout_path(), "user-process");
    c.wait_status("stopped");
    let after_start = read_log(&log);
    let want_start: &[&str] = if amber {
        &["startContainer", "poststart"]
    } else {
        &["startContainer"]
    };
    assert_eq!(
        names(&after_start)[3 + usize::from(!amber)..],
        *want_start,
        "{after_start:?}"
    );

    c.delete(false).assert_ok();
    let all = read_log(&log);
    assert_eq!(names(&all)[5..], ["poststop"], "{all:?}");

    // The state each hook got on stdin. Hooks that run in the runtime's namespaces
    // see the host pid; createContainer and startContainer run inside the container's
    // pid namespace, where runc reports the init as pid 1.
    let expect: [(&str, &str, Option<i64>); 6] = if amber {
        [
            ("prestart", "creating", Some(pid as i64)),
            ("createRuntime", "creating", Some(pid as i64)),
            // The runtime-spec says the pid "as seen by the host", also for hooks that run in
            // the container; runc 1.1 passes the init's own view (1).
            ("createContainer", "creating", Some(pid as i64)),
            ("startContainer", "created", Some(pid as i64)),
            ("poststart", "running", Some(pid as i64)),
            ("poststop", "stopped", None),
        ]
    } else {
        [
            ("prestart", "creating", Some(pid as i64)),
            ("createRuntime", "creating", Some(pid as i64)),
            ("createContainer", "creating", Some(1)),
            ("poststart", "created", Some(pid as i64)),
            ("startContainer", "created", Some(1)),
            ("poststop", "stopped", None),
        ]
    };
    for ((name, state), (want_name, status, want_pid)) in all.iter().zip(expect) {
        assert_eq!(name, want_name);
        assert_eq!(state["id"], c.id.as_str(), "{name}: {state}");
        assert_eq!(state["status"], status, "{name}: {state}");
        assert_eq!(state["bundle"], c.bundle.path_str().as_str(), "{name}: {state}");
        assert!(state["ociVersion"].is_string(), "{name}: {state}");
        match want_pid {
            Some(p) => assert_eq!(state["pid"], p, "{name}: {state}"),
            None => assert!(state["pid"].is_null() || state["pid"] == 0, "{name}: {state}"),
        }
    }
}

#[test]
fn hook_env_and_args() {
    let dir = shared_dir();
    let out = dir.path().join("env.out");
    let mut b = Bundle::sh("true");
    b.set(
        "/hooks/createRuntime",
        json!([{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo \"$0 $1 HOOKV=$HOOKV LEAK=$AMBER_IT_LEAK\" > {}", out.display()), "arg-zero", "arg-one"],
            "env": ["HOOKV=from-config"]
        }]),
    );
    let c = Container::new("hook-env", b);
    c.bundle.write();
    let mut cmd = c.command(&[
        "create",
        "--bundle",
        &c.bundle.path_str(),
        "--pid-file",
        &c.pid_file().to_string_lossy(),
        &c.id,
    ]);
    // the runtime's own environment must not reach the hook: it gets exactly `env`
    cmd.env("AMBER_IT_LEAK", "leaked");
    c.run_console(cmd, &[]).assert_ok();
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "arg-zero arg-one HOOKV=from-config LEAK=\n"
    );
}

#[test]
fn failing_hook_fails_create() {
    let mut b = Bundle::sh("true");
    b.set(
        "/hooks/createRuntime",
        json!([{ "path": "/bin/sh", "args": ["sh", "-c", "echo hook-broke >&2; exit 7"] }]),
    );
    let c = Container::new("hook-fail", b);
    let out = c.create();
    out.assert_fail();
    assert!(!c.state_dir().exists(), "failed create left its state dir");
    assert!(!c.pid_file().exists());
    assert!(
        find_cgroup_dirs(std::slice::from_ref(&c.id)).is_empty(),
        "failed create left a cgroup"
    );
}

#[test]
fn hook_timeout_fails_create() {
    let dir = shared_dir();
    let marker = dir.path().join("finished");
    let mut b = Bundle::sh("true");
    b.set(
        "/hooks/prestart",
        json!([{
            "path": "/bin/sh",
            // sleep must not hold the hook's stdio, or the runtime may wait for it
            "args": ["sh", "-c", format!("sleep 2 </dev/null >/dev/null 2>&1; touch {}", marker.display())],
            "timeout": 1
        }]),
    );
    let c = Container::new("hook-timeout", b);
    let out = c.create();
    out.assert_fail();
    assert!(out.stderr.contains("timeout"), "{out}");
    assert!(!c.state_dir().exists(), "failed create left its state dir");
    // the hook was killed, not waited for
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!marker.exists(), "timed-out hook kept running");
}

#[test]
fn poststop_runs_on_delete_of_created_container() {
    let dir = shared_dir();
    let log = dir.path().join("hooks.log");
    let mut b = Bundle::sh("sleep 1000");
    b.set("/hooks/poststop", json!([logging_hook("poststop", &log)]));
    let c = Container::new("hook-poststop", b);
    c.create_ok();
    assert!(read_log(&log).is_empty());
    c.delete(false).assert_ok();
    let entries = read_log(&log);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].0, "poststop");
    assert_eq!(entries[0].1["id"], c.id.as_str());
}
