//! The top-level, process, mount and hook rules.

use std::path::Path;

use serde_json::{json, Value};

use super::{accepts, base, parse_with, refuses, FILE};
use crate::spec::*;

// ---- ociVersion, root -----------------------------------------------------------------------

#[test]
fn oci_version_rules() {
    for ok in ["1.0.0", "1.2.1", "1.0.2-dev", "1.0.0-rc5+dev", "1.10.100"] {
        accepts(|v| v["ociVersion"] = json!(ok));
    }
    let (field, violation) = refuses(|v| {
        v.as_object_mut().unwrap().remove("ociVersion");
    });
    assert_eq!((field.as_str(), violation), ("ociVersion", Violation::Missing));
    for major in [0u64, 2] {
        let version = format!("{major}.1.0");
        let (_, violation) = refuses(|v| v["ociVersion"] = json!(version));
        assert_eq!(violation, Violation::UnsupportedVersion { version, major });
    }
    for bad in ["1", "1.0", "v1.0.0", "1.0.x", "1..0", "1.0.0-", "latest"] {
        let (_, violation) = refuses(|v| v["ociVersion"] = json!(bad));
        assert!(
            matches!(violation, Violation::MalformedVersion { .. }),
            "{bad}: {violation:?}"
        );
    }
}

#[test]
fn root_rules() {
    accepts(|v| v["root"] = json!({"path": "/var/lib/rootfs"}));
    let (field, violation) = refuses(|v| {
        v.as_object_mut().unwrap().remove("root");
    });
    assert_eq!((field.as_str(), violation), ("root", Violation::Missing));
    let (field, violation) = refuses(|v| v["root"] = json!({"path": ""}));
    assert_eq!((field.as_str(), violation), ("root.path", Violation::Empty));
    let (field, _) = refuses(|v| v["root"] = json!({"readonly": true}));
    assert_eq!(field, "root.path");
}

// ---- process --------------------------------------------------------------------------------

fn process_json() -> Value {
    base()["process"].clone()
}

fn process_refuses(edit: impl FnOnce(&mut Value)) -> (String, Violation) {
    let mut p = process_json();
    edit(&mut p);
    let text = serde_json::to_vec(&p).unwrap();
    match parse_process(&text, Path::new("/tmp/p.json")) {
        Err(SpecError::Invalid { field, violation, .. }) => (field, violation),
        other => panic!("{other:?}"),
    }
}

#[test]
fn process_is_optional_in_a_config() {
    accepts(|v| {
        v.as_object_mut().unwrap().remove("process");
    });
}

#[test]
fn args_rules() {
    accepts(|v| v["process"]["args"] = json!(["/bin/echo", "", "x"]));
    for args in [json!([]), Value::Null] {
        let (field, violation) = refuses(|v| v["process"]["args"] = args);
        assert_eq!((field.as_str(), violation), ("process.args", Violation::Empty));
    }
    let (field, _) = refuses(|v| v["process"]["args"] = json!(["", "x"]));
    assert_eq!(field, "process.args[0]");
    let (field, violation) = refuses(|v| v["process"]["args"] = json!(["sh", "a\u{0}b"]));
    assert_eq!(field, "process.args[1]");
    assert!(matches!(violation, Violation::NulByte { .. }));
    // In a process file the same fields are named from its top.
    let (field, _) = process_refuses(|p| p["args"] = json!([]));
    assert_eq!(field, "args");
}

#[test]
fn cwd_rules() {
    accepts(|v| v["process"]["cwd"] = json!("/home/user"));
    let (field, violation) = refuses(|v| v["process"]["cwd"] = json!("home"));
    assert_eq!(field, "process.cwd");
    assert_eq!(violation, Violation::NotAbsolute { path: "home".into() });
    let (_, violation) = refuses(|v| v["process"]["cwd"] = json!(""));
    assert_eq!(violation, Violation::Empty);
    let (field, _) = process_refuses(|p| p["cwd"] = json!("."));
    assert_eq!(field, "cwd");
}

#[test]
fn env_rules() {
    accepts(|v| v["process"]["env"] = json!(["A=", "B=c=d", "_X=1"]));
    let (field, violation) = refuses(|v| v["process"]["env"] = json!(["A=1", "NOVALUE"]));
    assert_eq!(field, "process.env[1]");
    assert_eq!(
        violation,
        Violation::EnvWithoutEquals {
            entry: "NOVALUE".into()
        }
    );
    let (_, violation) = refuses(|v| v["process"]["env"] = json!(["=1"]));
    assert!(matches!(violation, Violation::EnvEmptyName { .. }));
    let (_, violation) = refuses(|v| v["process"]["env"] = json!(["A=\u{0}"]));
    assert!(matches!(violation, Violation::NulByte { .. }));
    let (field, _) = process_refuses(|p| p["env"] = json!(["X"]));
    assert_eq!(field, "env[0]");
}

#[test]
fn rlimit_rules() {
    accepts(|v| {
        v["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
            {"type": "RLIMIT_CORE", "hard": 10, "soft": 0},
        ])
    });
    let (field, violation) = refuses(|v| {
        v["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1},
            {"type": "RLIMIT_CORE", "hard": 1, "soft": 1},
            {"type": "RLIMIT_NOFILE", "hard": 2, "soft": 2},
        ])
    });
    assert_eq!(field, "process.rlimits[2].type");
    assert_eq!(
        violation,
        Violation::DuplicateRlimit {
            rlimit: "RLIMIT_NOFILE".into(),
            first: 0
        }
    );
    let (field, violation) =
        refuses(|v| v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}]));
    assert_eq!(field, "process.rlimits[0].soft");
    assert_eq!(violation, Violation::RlimitSoftAboveHard { soft: 2, hard: 1 });
}

#[test]
fn oom_score_adj_rules() {
    for ok in [-1000, 0, 1000] {
        accepts(|v| v["process"]["oomScoreAdj"] = json!(ok));
    }
    for bad in [-1001, 1001] {
        let (field, violation) = refuses(|v| v["process"]["oomScoreAdj"] = json!(bad));
        assert_eq!(field, "process.oomScoreAdj");
        assert_eq!(
            violation,
            Violation::OutOfRange {
                value: bad,
                min: -1000,
                max: 1000
            }
        );
    }
}

#[test]
fn io_priority_rules() {
    accepts(|v| v["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_RT", "priority": 7}));
    let (field, _) = refuses(|v| v["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 8}));
    assert_eq!(field, "process.ioPriority.priority");
}

#[test]
fn scheduler_rules() {
    accepts(|v| v["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": -20}));
    accepts(|v| v["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 50}));
    accepts(|v| {
        v["process"]["scheduler"] = json!({"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3})
    });
    let (field, _) = refuses(|v| v["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": 20}));
    assert_eq!(field, "process.scheduler.nice");
    let (field, violation) = refuses(|v| v["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "priority": 1}));
    assert_eq!(field, "process.scheduler.priority");
    assert_eq!(
        violation,
        Violation::SchedulerPolicy {
            allowed: "SCHED_FIFO or SCHED_RR"
        }
    );
    let (field, _) = refuses(|v| v["process"]["scheduler"] = json!({"policy": "SCHED_RR", "period": 10}));
    assert_eq!(field, "process.scheduler.period");
}

#[test]
fn lsm_labels_are_accepted_and_reported() {
    let spec = parse_with(|v| {
        v["process"]["apparmorProfile"] = json!("docker-default");
        v["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
        v["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    })
    .unwrap();
    let fields: Vec<String> = warnings(&spec, Path::new(FILE)).into_iter().map(|w| w.field).collect();
    assert_eq!(
        fields,
        ["process.apparmorProfile", "process.selinuxLabel", "linux.mountLabel"]
    );
}

// ---- hostname, domainname -------------------------------------------------------------------

fn without_namespace(v: &mut Value, typ: &str) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

#[test]
fn hostname_needs_a_uts_namespace() {
    accepts(|v| v["hostname"] = json!("a".repeat(64)));
    let err = parse_with(|v| without_namespace(v, "uts")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/bundle/config.json: hostname: needs a private uts namespace, but linux.namespaces has no uts entry"
    );
    // A joined uts namespace counts; an empty hostname is no hostname.
    accepts(|v| {
        without_namespace(v, "uts");
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "uts", "path": "/proc/1/ns/uts"}));
    });
    accepts(|v| {
        without_namespace(v, "uts");
        v["hostname"] = json!("");
    });
    let (field, violation) = refuses(|v| v["hostname"] = json!("a".repeat(65)));
    assert_eq!(
        (field.as_str(), violation),
        ("hostname", Violation::TooLong { len: 65, max: 64 })
    );
}

#[test]
fn domainname_needs_a_uts_namespace() {
    accepts(|v| v["domainname"] = json!("example.org"));
    let (field, violation) = refuses(|v| {
        v.as_object_mut().unwrap().remove("hostname");
        v["domainname"] = json!("example.org");
        without_namespace(v, "uts");
    });
    assert_eq!(field, "domainname");
    assert_eq!(violation, Violation::RequiresNamespace { namespace: "uts" });
}

// ---- mounts ---------------------------------------------------------------------------------

fn with_mount(m: Value) -> impl FnOnce(&mut Value) {
    move |v| v["mounts"].as_array_mut().unwrap().push(m)
}

#[test]
fn mount_rules() {
    accepts(with_mount(
        json!({"destination": "/data", "type": "bind", "source": "/srv"}),
    ));
    accepts(with_mount(
        json!({"destination": "/data", "source": "/srv", "options": ["rbind", "ro"]}),
    ));
    accepts(with_mount(json!({"destination": "/tmp", "type": "tmpfs"})));
    let (field, violation) = refuses(with_mount(json!({"destination": "/data", "type": "bind"})));
    assert_eq!(
        (field.as_str(), violation),
        ("mounts[7].source", Violation::BindWithoutSource)
    );
    let (field, _) = refuses(with_mount(
        json!({"destination": "/d", "source": "", "options": ["bind"]}),
    ));
    assert_eq!(field, "mounts[7].source");
    let (field, violation) = refuses(with_mount(json!({"destination": "/data", "source": "/srv"})));
    assert_eq!(
        (field.as_str(), violation),
        ("mounts[7].type", Violation::MountWithoutType)
    );
    let (field, violation) = refuses(with_mount(json!({"destination": "/d", "type": ""})));
    assert_eq!((field.as_str(), violation), ("mounts[7].type", Violation::Empty));
    let (field, violation) = refuses(with_mount(json!({"destination": "", "type": "tmpfs"})));
    assert_eq!((field.as_str(), violation), ("mounts[7].destination", Violation::Empty));
}

#[test]
fn relative_mount_destination_is_accepted_with_a_warning() {
    let spec = parse_with(with_mount(json!({"destination": "data", "type": "tmpfs"}))).unwrap();
    let w = warnings(&spec, Path::new(FILE));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].kind, WarningKind::RelativeMountDestination { path: "data".into() });
    assert_eq!(
        w[0].to_string(),
        "/bundle/config.json: mounts[7].destination: relative destination \"data\" is deprecated; it is resolved relative to /"
    );
}

// ---- hooks ----------------------------------------------------------------------------------

#[test]
fn hook_rules() {
    accepts(|v| {
        v["hooks"] = json!({
            "prestart": [{"path": "/bin/true"}],
            "createRuntime": [{"path": "/usr/bin/hook", "args": ["hook", "x"], "env": ["A=1"], "timeout": 5}],
            "poststop": [{"path": "/bin/true"}],
        })
    });
    let (field, violation) = refuses(|v| v["hooks"] = json!({"createContainer": [{"path": "hook"}]}));
    assert_eq!(field, "hooks.createContainer[0].path");
    assert_eq!(violation, Violation::NotAbsolute { path: "hook".into() });
    for timeout in [0, -3] {
        let (field, violation) =
            refuses(|v| v["hooks"] = json!({"poststart": [{"path": "/a"}, {"path": "/b", "timeout": timeout}]}));
        assert_eq!(field, "hooks.poststart[1].timeout");
        assert_eq!(violation, Violation::NonPositiveTimeout { timeout });
    }
    let (field, _) = refuses(|v| v["hooks"] = json!({"startContainer": [{"path": "/a", "env": ["A"]}]}));
    assert_eq!(field, "hooks.startContainer[0].env[0]");
    let (field, _) = refuses(|v| v["hooks"] = json!({"prestart": [{"path": ""}]}));
    assert_eq!(field, "hooks.prestart[0].path");
}
