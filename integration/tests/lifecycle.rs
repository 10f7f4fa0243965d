//! create / start / state / kill / delete / run / list / spec, and the exec fifo.

use amber_integration::*;
use serde_json::Value;
use std::fs;

/// A process that runs until told to stop: it traps SIGTERM (an init in a pid
/// namespace ignores signals it has no handler for).
// Prints "ready" once its TERM trap is set: a pid namespace's init ignores signals it has no
// handler for, so a TERM sent before the trap exists would be lost.
const SERVE: &str = "trap 'exit 0' TERM; echo ready; sleep 1000 & wait";

#[test]
fn create_start_kill_delete() {
    let c = Container::new("lifecycle", Bundle::sh(SERVE));
    c.create_ok();

    // created, with the init pid in the pid file: bare decimal, no newline.
    let st = c.state_json();
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().expect("pid");
    assert!(pid > 0, "{st}");
    let pid_text = fs::read_to_string(c.pid_file()).expect("pid file");
    assert_eq!(pid_text, pid.to_string(), "pid file must be the bare pid");
    assert!(fs::metadata(format!("/proc/{pid}")).is_ok(), "init {pid} not alive");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["bundle"], c.bundle.path_str().as_str());

    c.start_ok();
    assert_eq!(c.state_json()["status"], "running");
    assert_eq!(c.pid() as i64, pid, "pid changed across start");

    // default signal is SIGTERM
    wait_for_content(&c.stdout_path(), "ready");
    c.rt(&["kill", &c.id]).assert_ok();
    c.wait_status("stopped");
    let st = c.state_json();
    assert_eq!(st["pid"], 0, "a stopped container reports pid 0: {st}");

    c.delete(false).assert_ok();
    let out = c.state();
    out.assert_fail();
    assert!(out.all().contains("does not exist"), "{out}");
    assert!(!c.state_dir().exists(), "state dir left after delete");
}

#[test]
fn kill_signal_forms() {
    // Signals by name, with or without SIG, and by number.
    let cases = [
        ("KILL", "sleep 1000"),
        ("SIGKILL", "sleep 1000"),
        ("9", "sleep 1000"),
        ("TERM", SERVE),
        ("SIGTERM", SERVE),
        ("15", SERVE),
    ];
    for (sig, script) in cases {
        let c = Container::new("kill-forms", Bundle::sh(script));
        c.create_ok();
        c.start_ok();
        if script == SERVE {
            wait_for_content(&c.stdout_path(), "ready");
        }
        c.kill(sig).assert_ok();
        c.wait_status("stopped");
        assert_eq!(c.state_json()["pid"], 0, "after kill {sig}");
        c.delete(false).assert_ok();
    }
}

#[test]
fn kill_unknown_signal_fails() {
    let c = Container::new("kill-bad-signal", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.start_ok();
    c.kill("NOTASIGNAL").assert_fail();
    assert_eq!(c.status().as_deref(), Some("running"));
}

#[test]
fn kill_created_container() {
    // kill is allowed on a created container: it signals the waiting init.
    let c = Container::new("kill-created", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.kill("KILL").assert_ok();
    c.wait_status("stopped");
}

#[test]
fn start_twice_fails() {
    let c = Container::new("start-twice", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.start_ok();
    let out = c.start();
    out.assert_fail();
    assert_eq!(c.status().as_deref(), Some("running"));
    c.kill("KILL").assert_ok();
    c.wait_status("stopped");
    // and a stopped container cannot be started either
    c.start().assert_fail();
}

#[test]
fn delete_running_needs_force() {
    let c = Container::new("delete-running", Bundle::sh("sleep 1000"));
    c.create_ok();
    c.start_ok();
    let pid = c.pid();
    let out = c.delete(false);
    out.assert_fail();
    assert!(out.all().contains("not stopped"), "{out}");
    assert_eq!(c.status().as_deref(), Some("running"));

    c.delete(true).assert_ok();
    assert!(c.state().code != Some(0), "state must fail after delete");
    assert!(!c.state_dir().exists());
    wait_for("init to be gone after delete --force", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z") || s.contains(") X"))
                .unwrap_or(true)
    });
}

#[test]
fn delete_force_nonexistent_ok() {
    let c = Container::new("delete-missing", Bundle::new());
    c.delete(true).assert_ok();
    // without --force it is an error naming the problem
    let out = c.delete(false);
    out.assert_fail();
    assert!(out.all().contains("does not exist"), "{out}");
}

#[test]
fn delete_created_kills_it() {
    let c = Container::new("delete-created", Bundle::sh("sleep 1000"));
    c.create_ok();
    let pid = c.pid();
    c.delete(false).assert_ok();
    assert!(!c.state_dir().exists());
    wait_for("created init to be killed by delete", || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z") || s.contains(") X"))
            .unwrap_or(true)
    });
}

#[test]
fn kill_stopped_fails() {
    let c = Container::new("kill-stopped", Bundle::sh("true"));
    c.create_ok();
    c.start_ok();
    c.wait_status("stopped");
    let out = c.kill("KILL");
    out.assert_fail();
    assert!(out.all().contains("not running"), "{out}");
}

#[test]
fn duplicate_id_fails() {
    let c = Container::new("dup", Bundle::sh("sleep 1000"));
    c.create_ok();
    let pid = c.pid();
    let other = Bundle::sh("sleep 1000");
    other.write();
    let pid_file = c.work_dir().join("dup.pid");
    let out = c.rt(&[
        "create",
        "--bundle",
        &other.path_str(),
        "--pid-file",
        &pid_file.to_string_lossy(),
        &c.id,
    ]);
    out.assert_fail();
    assert!(!pid_file.exists(), "failed create wrote a pid file");
    // the first container is untouched
    let st = c.state_json();
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["bundle"], c.bundle.path_str().as_str());
}

#[test]
fn list_formats() {
    let c = Container::new("list", Bundle::sh("sleep 1000"));
    // empty root
    let out = c.rt(&["list"]);
    out.assert_ok();
    let header: Vec<&str> = out.stdout.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    let out = c.rt(&["list", "-f", "json"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "null", "empty list in json is null: {out}");
    let out = c.rt(&["list", "-q"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "", "{out}");

    c.create_ok();
    let pid = c.pid();
    let out = c.rt(&["list"]);
    out.assert_ok();
    let rows: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[1][0], c.id);
    assert_eq!(rows[1][1], pid.to_string());
    assert_eq!(rows[1][2], "created");
    assert_eq!(rows[1][3], c.bundle.path_str());
    assert_eq!(rows[1][5], "root");

    for args in [&["list", "-f", "json"][..], &["list", "--format=json"][..]] {
        let out = c.rt(args);
        out.assert_ok();
        let v: Value = serde_json::from_str(&out.stdout).expect("list json");
        let arr = v.as_array().expect("list -f json is an array");
        assert_eq!(arr.len(), 1, "{out}");
        assert_eq!(arr[0]["id"], c.id.as_str());
        assert_eq!(arr[0]["pid"], pid);
        assert_eq!(arr[0]["status"], "created");
        assert_eq!(arr[0]["owner"], "root");
    }

    let out = c.rt(&["list", "-q"]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("{}\n", c.id), "{out}");
}

#[test]
fn state_json_shape() {
    let c = Container::new("state-shape", Bundle::sh("sleep 1000"));
    c.create_ok();
    let out = c.state();
    out.assert_ok();
    assert_eq!(
        json_keys_in_order(&out.stdout),
        [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner"
        ],
        "{out}"
    );
    // runc prints json.MarshalIndent with two spaces and no trailing newline.
    assert!(out.stdout.starts_with("{\n  \"ociVersion\": "), "{out}");
    assert!(out.stdout.ends_with('}'), "no trailing newline: {out}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["rootfs"], rootfs().to_string_lossy().as_ref());
    assert_eq!(v["owner"], "");
    assert!(v["ociVersion"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["created"].as_str().is_some_and(is_rfc3339), "created is RFC3339: {v}");
    // the same shape once stopped, pid 0
    c.kill("KILL").assert_ok();
    c.wait_status("stopped");
    let out = c.state();
    assert_eq!(
        json_keys_in_order(&out.stdout),
        [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner"
        ],
        "{out}"
    );
}

#[test]
fn state_of_missing_container_fails() {
    let c = Container::new("state-missing", Bundle::new());
    let out = c.state();
    out.assert_fail();
    assert!(out.all().contains("does not exist"), "{out}");
    assert_eq!(out.stdout, "", "nothing on stdout for a failed state");
}

#[test]
fn run_foreground_exit_code() {
    let c = Container::new("run-exit", Bundle::sh("echo out; echo err >&2; exit 3"));
    let out = c.run_foreground();
    out.assert_code(3);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    // run removes the container when it exits
    assert!(c.state().code != Some(0), "container still exists after run");
    assert!(!c.state_dir().exists());
}

#[test]
fn run_foreground_killed_by_signal() {
    // A foreground `run` whose init dies of SIGKILL exits 128+9.
    let c = Container::new("run-signal", Bundle::sh("sleep 1000"));
    let mut child = c
        .run_command(&[])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    let mut running = false;
    wait_for("run to start the container", || {
        running = c.status().as_deref() == Some("running");
        running || child.try_wait().ok().flatten().is_some()
    });
    assert!(running, "run exited early: {:?}", child.try_wait());
    c.kill("KILL").assert_ok();
    let mut status = None;
    wait_for("run to exit", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(137));
}

#[test]
fn run_detached() {
    let c = Container::new("run-detach", Bundle::sh("echo detached; sleep 1000"));
    let out = c.run_with(&["-d"], &[]);
    out.assert_ok();
    assert_eq!(c.status().as_deref(), Some("running"));
    let pid: i64 = fs::read_to_string(c.pid_file())
        .expect("pid file")
        .parse()
        .expect("bare pid");
    assert_eq!(c.pid() as i64, pid);
    wait_for_content(&c.stdout_path(), "detached");
    c.kill("KILL").assert_ok();
    c.wait_status("stopped");
    c.delete(false).assert_ok();
}

#[test]
fn exec_fifo_blocks_until_start() {
    let c = Container::new("fifo", Bundle::sh("echo started"));
    c.create_ok();
    assert_eq!(c.status().as_deref(), Some("created"));
    // the user process has not run yet
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(c.stdout(), "", "user process ran before start");
    c.start_ok();
    wait_for_content(&c.stdout_path(), "started");
    c.wait_status("stopped");
    assert_eq!(c.stdout(), "started\n");
}

#[test]
fn spec_writes_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    rt(&["spec", "--bundle", &d]).assert_ok();
    let text = fs::read_to_string(dir.path().join("config.json")).expect("config.json written");
    let v: Value = serde_json::from_str(&text).expect("spec output is JSON");
    assert_eq!(v["root"]["path"], "rootfs");
    assert_eq!(v["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(v["process"]["terminal"], true);
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "namespace {want} missing: {ns:?}");
    }

    // refuses to overwrite
    fs::write(dir.path().join("config.json"), "sentinel").unwrap();
    let out = rt(&["spec", "--bundle", &d]);
    out.assert_fail();
    assert!(out.all().contains("config.json"), "{out}");
    assert_eq!(fs::read_to_string(dir.path().join("config.json")).unwrap(), "sentinel");
}

#[test]
fn spec_rootless() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    rt(&["spec", "--rootless", "--bundle", &d]).assert_ok();
    let v: Value = serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user"), "rootless spec has a user namespace: {ns:?}");
    assert!(!ns.contains(&"network"), "rootless spec keeps the host network: {ns:?}");
    let uid_maps = v["linux"]["uidMappings"].as_array().expect("uidMappings");
    assert_eq!(uid_maps.len(), 1);
    assert_eq!(uid_maps[0]["containerID"], 0);
    assert_eq!(uid_maps[0]["size"], 1);
    // SAFETY: geteuid cannot fail.
    assert_eq!(uid_maps[0]["hostID"], unsafe { libc::geteuid() });
    assert!(v["linux"]["gidMappings"].as_array().is_some_and(|m| m.len() == 1));
    assert!(v["linux"]["resources"].is_null(), "no resources when rootless");
}
