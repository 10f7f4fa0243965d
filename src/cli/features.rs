//! `features`: the OCI features document (runtime-spec features.md), fixed at build time. It
//! says what this build implements, so an engine can decide before it asks; no global flag or
//! host probe changes it.

use serde_json::{json, Value};

use crate::container::create::INIT_PID_ANNOTATION;

const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "tmpcopyup",
    "unbindable",
];

pub fn document() -> Value {
    let caps: Vec<String> = caps::all()
        .into_iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::container::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": crate::cli::features_seccomp(),
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            INIT_PID_ANNOTATION: "PID[,PID...]: start the container init at exact pids (amber's pid namespace first, then each ancestor; 0 lets the kernel choose), as --init-pid does",
            "run.amber.checkpoint.enabled": "false"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_fields_engines_read() {
        let d = document();
        assert_eq!(d["ociVersionMin"], "1.0.0");
        assert!(d["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n == "user"));
        assert!(d["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN"));
        assert!(d["annotations"][INIT_PID_ANNOTATION].is_string());
        assert!(d["mountOptions"].as_array().unwrap().iter().any(|o| o == "rbind"));
    }
}
