//! Error reporting: JSON logs, broken configs, failed creates leave nothing behind,
//! and the probes engines make (--version, features).

use amber_integration::*;
use serde_json::{json, Value};
use std::fs;

/// A failed create must leave no state dir, pid file or cgroup.
#[track_caller]
fn assert_nothing_left(c: &Container) {
    assert!(
        !c.state_dir().exists(),
        "failed create left {}",
        c.state_dir().display()
    );
    assert!(!c.pid_file().exists(), "failed create wrote a pid file");
    let mut names = vec![c.id.clone()];
    if let Some(p) = c.bundle.cgroups_path() {
        names.push(p.trim_start_matches('/').to_string());
    }
    let left = find_cgroup_dirs(&names);
    assert!(left.is_empty(), "failed create left cgroups: {left:?}");
    let st = c.state();
    st.assert_fail();
}

fn check_json_log(c: &Container, log_format_args: &[&str]) {
    let log = c.work_dir().join("log.json");
    let log_s = log.to_string_lossy().into_owned();
    let mut global = vec!["--log", log_s.as_str()];
    global.extend_from_slice(log_format_args);
    let out = c.create_with(&global, &[]);
    out.assert_fail();
    assert!(
        out.stderr.contains("executable file not found in $PATH"),
        "error on stderr: {out}"
    );

    let text = fs::read_to_string(&log).expect("log file written");
    let lines: Vec<&str> = text.lines().collect();
    // podman json.Unmarshals the whole file: exactly one object
    assert_eq!(lines.len(), 1, "exactly one log line: {text:?}");
    assert!(text.ends_with('\n'), "{text:?}");
    let v: Value = serde_json::from_str(lines[0]).expect("log line is JSON");
    let obj = v.as_object().expect("log line is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["level", "msg", "time"], "{text}");
    assert_eq!(v["level"], "error");
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains("executable file not found in $PATH") && msg.contains("nonexistent-cmd"),
        "{msg}"
    );
    assert!(v["time"].as_str().is_some_and(is_rfc3339), "time is RFC3339: {text}");
    assert_nothing_left(c);
}

#[test]
fn json_log_on_failed_create() {
    let mut b = Bundle::new();
    b.args(&["nonexistent-cmd"]);
    let c = Container::new("log-json", b);
    check_json_log(&c, &["--log-format", "json"]);
}

#[test]
fn json_log_format_with_equals() {
    // conmon passes `--log-format=json` as one token
    let mut b = Bundle::new();
    b.args(&["nonexistent-cmd"]);
    let c = Container::new("log-json-eq", b);
    check_json_log(&c, &["--log-format=json"]);
}

#[test]
fn log_is_appended_not_truncated() {
    // The runtime opens --log with O_APPEND; engines reuse the path.
    let mut b = Bundle::new();
    b.args(&["nonexistent-cmd"]);
    let c = Container::new("log-append", b);
    let log = c.work_dir().join("log.json");
    fs::write(
        &log,
        "{\"level\":\"info\",\"msg\":\"earlier\",\"time\":\"2020-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let log_s = log.to_string_lossy().into_owned();
    c.create_with(&["--log", &log_s, "--log-format", "json"], &[])
        .assert_fail();
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("{\"level\":\"info\",\"msg\":\"earlier\""), "{text}");
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
}

#[test]
fn error_without_log_goes_to_stderr() {
    let c = Container::new("stderr-error", Bundle::new());
    let out = c.start();
    out.assert_fail();
    assert!(out.stderr.contains("does not exist"), "{out}");
    assert_eq!(out.stdout, "", "errors do not go to stdout");
}

#[test]
fn config_syntax_error_fails_create() {
    let mut b = Bundle::new();
    b.set_raw_config("{\"ociVersion\": \"1.0.2\", \"process\": {");
    let c = Container::new("config-syntax", b);
    let out = c.create();
    out.assert_fail();
    if is_amber() {
        // ARCHITECTURE.md: every config error names the file (and the field)
        assert!(out.stderr.contains("config.json"), "{out}");
    }
    assert_nothing_left(&c);
}

#[test]
fn config_wrong_type_fails_create() {
    let mut b = Bundle::sh("true");
    b.set("/hostname", json!(42));
    let c = Container::new("config-type", b);
    let out = c.create();
    out.assert_fail();
    // runc: "json: cannot unmarshal number into Go struct field Spec.hostname of type
    // string"; amber names the file and the field.
    assert!(out.stderr.contains("hostname"), "{out}");
    if is_amber() {
        assert!(out.stderr.contains("config.json"), "{out}");
    }
    assert_nothing_left(&c);
}

#[test]
fn config_wrong_type_nested_field() {
    let mut b = Bundle::new();
    b.set("/process/args", json!("sh -c true"));
    let c = Container::new("config-args-type", b);
    let out = c.create();
    out.assert_fail();
    if is_amber() {
        assert!(out.stderr.contains("config.json"), "{out}");
        assert!(out.stderr.contains("args"), "{out}");
    }
    assert_nothing_left(&c);
}

#[test]
fn missing_config_fails_create() {
    let c = Container::new("config-missing", Bundle::new());
    // no config.json written: call create directly
    let out = c.rt(&["create", "--bundle", &c.bundle.path_str(), &c.id]);
    out.assert_fail();
    assert!(out.stderr.contains("config.json"), "{out}");
    assert!(!c.state_dir().exists());
}

#[test]
fn failed_create_leaves_no_cgroup() {
    let mut b = Bundle::new();
    b.args(&["nonexistent-cmd"]);
    let cg = format!("/{}", unique_id("failed-cg"));
    b.set("/linux/cgroupsPath", json!(cg));
    let c = Container::new("failed-cg", b);
    c.create().assert_fail();
    for dir in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = dir.path().join(cg.trim_start_matches('/'));
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert_nothing_left(&c);
}

#[test]
fn version_output() {
    let out = rt(&["--version"]);
    out.assert_ok();
    let first = out.stdout.lines().next().unwrap_or("");
    // go-runc parses "<name> version X", "commit: ...", "spec: ..."
    assert!(first.contains(" version "), "{out}");
    assert!(out.stdout.lines().any(|l| l.starts_with("spec: ")), "{out}");
}

#[test]
fn features_output() {
    let out = rt(&["features"]);
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("features is JSON");
    assert!(v["ociVersionMin"].is_string() && v["ociVersionMax"].is_string(), "{v}");
    let hooks: Vec<&str> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "{h} missing: {v}");
    }
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&n), "{n} missing: {v}");
    }
}

#[test]
fn unknown_command_fails() {
    let out = rt(&["no-such-subcommand"]);
    out.assert_fail();
}
