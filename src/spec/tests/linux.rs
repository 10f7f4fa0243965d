//! The `linux` section's rules, one test per rule with passing and failing cases.

use serde_json::{json, Value};

use super::{accepts, decode_error, parse_with, refuses};
use crate::spec::*;

fn namespaces(v: &mut Value) -> &mut Vec<Value> {
    v["linux"]["namespaces"].as_array_mut().unwrap()
}

fn without_namespace(v: &mut Value, typ: &str) {
    namespaces(v).retain(|n| n["type"] != typ);
}

fn with_user_ns(v: &mut Value) {
    namespaces(v).push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

// ---- namespaces -----------------------------------------------------------------------------

#[test]
fn namespace_types_are_known() {
    accepts(|v| {
        namespaces(v).push(json!({"type": "cgroup"}));
        namespaces(v).push(json!({"type": "time"}));
    });
    let (field, reason) = decode_error(|v| namespaces(v)[2] = json!({"type": "bogus"}));
    assert_eq!(field, "linux.namespaces[2].type");
    assert!(reason.contains("unknown variant `bogus`"), "{reason}");
}

#[test]
fn namespaces_are_unique() {
    let (field, violation) = refuses(|v| namespaces(v).push(json!({"type": "pid", "path": "/proc/1/ns/pid"})));
    assert_eq!(field, "linux.namespaces[5].type");
    assert_eq!(
        violation,
        Violation::DuplicateNamespace {
            namespace: "pid",
            first: 0
        }
    );
}

#[test]
fn namespace_path_is_absolute() {
    accepts(|v| namespaces(v)[1] = json!({"type": "network", "path": "/var/run/netns/x"}));
    let (field, violation) = refuses(|v| namespaces(v)[1] = json!({"type": "network", "path": "netns/x"}));
    assert_eq!(field, "linux.namespaces[1].path");
    assert_eq!(violation, Violation::NotAbsolute { path: "netns/x".into() });
    let (field, _) = refuses(|v| namespaces(v)[1] = json!({"type": "network", "path": ""}));
    assert_eq!(field, "linux.namespaces[1].path");
}

#[test]
fn no_linux_section_at_all() {
    accepts(|v| {
        v.as_object_mut().unwrap().remove("linux");
        v.as_object_mut().unwrap().remove("hostname");
    });
}

// ---- user namespace and id mappings ---------------------------------------------------------

#[test]
fn new_user_namespace_needs_mappings() {
    accepts(with_user_ns);
    for missing in ["uidMappings", "gidMappings"] {
        let (field, violation) = refuses(|v| {
            with_user_ns(v);
            v["linux"].as_object_mut().unwrap().remove(missing);
        });
        assert_eq!(field, format!("linux.{missing}"));
        assert_eq!(violation, Violation::MappingsRequired { index: 5 });
    }
    let (field, _) = refuses(|v| {
        with_user_ns(v);
        v["linux"]["uidMappings"] = json!([]);
    });
    assert_eq!(field, "linux.uidMappings");
}

#[test]
fn joined_user_namespace_needs_no_mappings() {
    accepts(|v| namespaces(v).push(json!({"type": "user", "path": "/proc/42/ns/user"})));
}

#[test]
fn mappings_need_a_user_namespace() {
    let (field, violation) = refuses(|v| {
        v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    });
    assert_eq!(field, "linux.gidMappings");
    assert_eq!(violation, Violation::RequiresNamespace { namespace: "user" });
    accepts(|v| v["linux"]["uidMappings"] = json!([]));
}

fn with_uid_maps(maps: Value) -> impl FnOnce(&mut Value) {
    move |v| {
        with_user_ns(v);
        v["linux"]["uidMappings"] = maps;
    }
}

#[test]
fn mapping_size_is_positive() {
    let (field, violation) = refuses(with_uid_maps(json!([{"containerID": 0, "hostID": 1000, "size": 0}])));
    assert_eq!(
        (field.as_str(), violation),
        ("linux.uidMappings[0].size", Violation::MappingZeroSize)
    );
}

#[test]
fn mappings_do_not_overflow_u32() {
    accepts(with_uid_maps(
        json!([{"containerID": 0, "hostID": 4_294_967_294u32, "size": 1}]),
    ));
    let (field, violation) = refuses(with_uid_maps(
        json!([{"containerID": 4_294_967_295u32, "hostID": 0, "size": 1}]),
    ));
    assert_eq!(field, "linux.uidMappings[0]");
    assert_eq!(
        violation,
        Violation::MappingOverflow {
            side: "containerID",
            start: u32::MAX,
            size: 1
        }
    );
    let (_, violation) = refuses(with_uid_maps(
        json!([{"containerID": 0, "hostID": 4_000_000_000u32, "size": 300_000_000}]),
    ));
    assert!(matches!(violation, Violation::MappingOverflow { side: "hostID", .. }));
}

#[test]
fn mappings_do_not_overlap() {
    accepts(with_uid_maps(json!([
        {"containerID": 0, "hostID": 1000, "size": 1},
        {"containerID": 1, "hostID": 100000, "size": 65535},
    ])));
    let (field, violation) = refuses(with_uid_maps(json!([
        {"containerID": 0, "hostID": 1000, "size": 10},
        {"containerID": 100, "hostID": 2000, "size": 10},
        {"containerID": 9, "hostID": 3000, "size": 1},
    ])));
    assert_eq!(field, "linux.uidMappings[2]");
    assert_eq!(
        violation,
        Violation::MappingOverlap {
            side: "containerID",
            other: 0
        }
    );
    let (_, violation) = refuses(with_uid_maps(json!([
        {"containerID": 0, "hostID": 1000, "size": 10},
        {"containerID": 10, "hostID": 1005, "size": 10},
    ])));
    assert_eq!(
        violation,
        Violation::MappingOverlap {
            side: "hostID",
            other: 0
        }
    );
}

#[test]
fn mapping_count_is_bounded() {
    let maps = |n: u32| -> Value {
        (0..n)
            .map(|i| json!({"containerID": i, "hostID": 1000 + i, "size": 1}))
            .collect()
    };
    accepts(with_uid_maps(maps(340)));
    let (_, violation) = refuses(with_uid_maps(maps(341)));
    assert_eq!(violation, Violation::TooManyMappings { count: 341, max: 340 });
}

// ---- time offsets ---------------------------------------------------------------------------

#[test]
fn time_offsets_need_a_new_time_namespace() {
    let offsets = json!({"monotonic": {"secs": 1}, "boottime": {"secs": 2, "nanosecs": 5}});
    let o = offsets.clone();
    accepts(move |v| {
        namespaces(v).push(json!({"type": "time"}));
        v["linux"]["timeOffsets"] = o;
    });
    let o = offsets.clone();
    let (field, violation) = refuses(move |v| v["linux"]["timeOffsets"] = o);
    assert_eq!(field, "linux.timeOffsets");
    assert_eq!(violation, Violation::RequiresNamespace { namespace: "time" });
    let (_, violation) = refuses(move |v| {
        namespaces(v).push(json!({"type": "time", "path": "/proc/1/ns/time"}));
        v["linux"]["timeOffsets"] = offsets;
    });
    assert_eq!(violation, Violation::TimeOffsetsOnJoinedNamespace { index: 5 });
    let (field, _) = refuses(|v| {
        namespaces(v).push(json!({"type": "time"}));
        v["linux"]["timeOffsets"] = json!({"realtime": {"secs": 1}});
    });
    assert_eq!(field, "linux.timeOffsets.realtime");
    accepts(|v| v["linux"]["timeOffsets"] = json!({}));
}

// ---- sysctl ---------------------------------------------------------------------------------

fn with_sysctl(key: &str) -> impl FnOnce(&mut Value) + '_ {
    move |v| v["linux"]["sysctl"] = json!({ key: "1" })
}

#[test]
fn net_sysctls_need_a_network_namespace() {
    accepts(with_sysctl("net.ipv4.ip_forward"));
    accepts(with_sysctl("net/ipv4/conf/eth0.100/rp_filter"));
    let (field, violation) = refuses(|v| {
        with_sysctl("net.ipv4.ip_forward")(v);
        without_namespace(v, "network");
    });
    assert_eq!(field, "linux.sysctl[\"net.ipv4.ip_forward\"]");
    assert_eq!(violation, Violation::RequiresNamespace { namespace: "network" });
}

#[test]
fn ipc_sysctls_need_an_ipc_namespace() {
    for key in [
        "kernel.msgmax",
        "kernel.sem",
        "kernel.shm_rmid_forced",
        "fs.mqueue.queues_max",
    ] {
        accepts(with_sysctl(key));
        let (_, violation) = refuses(|v| {
            with_sysctl(key)(v);
            without_namespace(v, "ipc");
        });
        assert_eq!(violation, Violation::RequiresNamespace { namespace: "ipc" });
    }
}

#[test]
fn uts_sysctls_need_a_uts_namespace() {
    accepts(with_sysctl("kernel.domainname"));
    accepts(|v| {
        with_sysctl("kernel.hostname")(v);
        v.as_object_mut().unwrap().remove("hostname");
    });
    let (_, violation) = refuses(|v| {
        with_sysctl("kernel.domainname")(v);
        v.as_object_mut().unwrap().remove("hostname");
        without_namespace(v, "uts");
    });
    assert_eq!(violation, Violation::RequiresNamespace { namespace: "uts" });
    // Both kernel.hostname and the hostname field: which one wins would be an accident.
    let (_, violation) = refuses(with_sysctl("kernel.hostname"));
    assert!(matches!(violation, Violation::SysctlConflictsWithHostname { .. }));
}

#[test]
fn other_sysctls_are_refused() {
    for key in [
        "kernel.pid_max",
        "vm.swappiness",
        "user.max_user_namespaces",
        "kernel/pid_max",
    ] {
        let (field, violation) = refuses(with_sysctl(key));
        assert_eq!(field, format!("linux.sysctl[{key:?}]"));
        assert!(matches!(violation, Violation::SysctlNotNamespaced { .. }), "{key}");
    }
    let err = parse_with(with_sysctl("vm.swappiness")).unwrap_err();
    assert!(err
        .to_string()
        .ends_with("sysctl \"vm.swappiness\" is not in a separate kernel namespace"));
}

#[test]
fn sysctl_slash_form_is_converted() {
    assert_eq!(
        linux::sysctl_dotted("net/ipv4/conf/eno2.100/rp_filter"),
        "net.ipv4.conf.eno2/100.rp_filter"
    );
    assert_eq!(linux::sysctl_dotted("net.ipv4.ip_forward"), "net.ipv4.ip_forward");
    assert_eq!(linux::sysctl_dotted("kernel"), "kernel");
    assert_eq!(linux::sysctl_dotted(""), "");
}

#[test]
fn first_sysctl_error_is_stable() {
    let (field, _) = refuses(|v| v["linux"]["sysctl"] = json!({"vm.b": "1", "vm.a": "1", "vm.c": "1"}));
    assert_eq!(field, "linux.sysctl[\"vm.a\"]");
}

// ---- devices --------------------------------------------------------------------------------

fn with_device(d: Value) -> impl FnOnce(&mut Value) {
    move |v| v["linux"]["devices"] = json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}, d])
}

#[test]
fn device_rules() {
    accepts(with_device(
        json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}),
    ));
    accepts(with_device(
        json!({"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}),
    ));
    accepts(with_device(
        json!({"path": "/dev/u", "type": "u", "major": 4095, "minor": 1_048_575}),
    ));
    accepts(with_device(json!({"path": "/dev/fifo", "type": "p"})));
    let (field, violation) = refuses(with_device(
        json!({"path": "dev/x", "type": "c", "major": 1, "minor": 1}),
    ));
    assert_eq!(field, "linux.devices[1].path");
    assert_eq!(violation, Violation::NotAbsolute { path: "dev/x".into() });
    let (field, violation) = refuses(with_device(json!({"path": "/dev/x", "type": "a"})));
    assert_eq!(
        (field.as_str(), violation),
        ("linux.devices[1].type", Violation::DeviceTypeAll)
    );
    let (field, _) = decode_error(with_device(json!({"path": "/dev/x", "type": "z"})));
    assert_eq!(field, "linux.devices[1].type");
}

#[test]
fn device_numbers_are_required_for_c_b_u() {
    for typ in ["c", "b", "u"] {
        let (field, violation) = refuses(with_device(json!({"path": "/dev/x", "type": typ, "minor": 0})));
        assert_eq!(field, "linux.devices[1].major");
        assert!(matches!(violation, Violation::DeviceNumberRequired { .. }));
        let (field, _) = refuses(with_device(json!({"path": "/dev/x", "type": typ, "major": 0})));
        assert_eq!(field, "linux.devices[1].minor");
    }
}

#[test]
fn device_numbers_fit_mknod() {
    let (field, violation) = refuses(with_device(
        json!({"path": "/dev/x", "type": "c", "major": 4096, "minor": 0}),
    ));
    assert_eq!(field, "linux.devices[1].major");
    assert_eq!(
        violation,
        Violation::OutOfRange {
            value: 4096,
            min: 0,
            max: 4095
        }
    );
    let (field, _) = refuses(with_device(
        json!({"path": "/dev/x", "type": "b", "major": 1, "minor": -1}),
    ));
    assert_eq!(field, "linux.devices[1].minor");
}

// ---- masked and read-only paths -------------------------------------------------------------

#[test]
fn masked_and_readonly_paths_are_absolute() {
    let (field, violation) = refuses(|v| v["linux"]["maskedPaths"][3] = json!("proc/keys"));
    assert_eq!(field, "linux.maskedPaths[3]");
    assert_eq!(
        violation,
        Violation::NotAbsolute {
            path: "proc/keys".into()
        }
    );
    let (field, _) = refuses(|v| v["linux"]["readonlyPaths"][0] = json!(""));
    assert_eq!(field, "linux.readonlyPaths[0]");
}

#[test]
fn masked_paths_need_a_mount_namespace() {
    let (field, violation) = refuses(|v| without_namespace(v, "mount"));
    assert_eq!(field, "linux.maskedPaths");
    assert_eq!(violation, Violation::RequiresNamespace { namespace: "mount" });
    accepts(|v| {
        without_namespace(v, "mount");
        v["linux"]["maskedPaths"] = json!([]);
        v["linux"].as_object_mut().unwrap().remove("readonlyPaths");
    });
}

// ---- seccomp --------------------------------------------------------------------------------

fn with_seccomp(s: Value) -> impl FnOnce(&mut Value) {
    move |v| v["linux"]["seccomp"] = s
}

#[test]
fn seccomp_rules() {
    accepts(with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 5, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ],
    })));
    let (field, reason) = decode_error(with_seccomp(json!({"syscalls": []})));
    assert_eq!(
        (field.as_str(), reason.as_str()),
        ("linux.seccomp", "missing field `defaultAction`")
    );
    let (field, _) = decode_error(with_seccomp(json!({"defaultAction": "SCMP_ACT_MAYBE"})));
    assert_eq!(field, "linux.seccomp.defaultAction");
    let (field, violation) = refuses(with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}],
    })));
    assert_eq!(
        (field.as_str(), violation),
        ("linux.seccomp.syscalls[0].names", Violation::Empty)
    );
    let (field, _) = refuses(with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}],
    })));
    assert_eq!(field, "linux.seccomp.syscalls[0].names[1]");
    let (field, violation) = refuses(with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}],
    })));
    assert_eq!(field, "linux.seccomp.syscalls[0].args[0].index");
    assert_eq!(violation, Violation::SeccompArgIndex { index: 6 });
}

#[test]
fn seccomp_notify_rules() {
    accepts(with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}],
    })));
    let (field, violation) = refuses(with_seccomp(
        json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}),
    ));
    assert_eq!(
        (field.as_str(), violation),
        ("linux.seccomp.defaultAction", Violation::SeccompNotifyDefault)
    );
    let (field, violation) = refuses(with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}],
    })));
    assert_eq!(field, "linux.seccomp.syscalls[0].action");
    assert_eq!(violation, Violation::SeccompNotifyWithoutListener);
    let (field, _) = refuses(with_seccomp(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "agent.sock"}),
    ));
    assert_eq!(field, "linux.seccomp.listenerPath");
}

// ---- propagation, personality, cgroupsPath --------------------------------------------------

#[test]
fn rootfs_propagation_rules() {
    for ok in [
        "",
        "shared",
        "slave",
        "private",
        "unbindable",
        "rshared",
        "rslave",
        "rprivate",
        "runbindable",
    ] {
        accepts(|v| v["linux"]["rootfsPropagation"] = json!(ok));
    }
    let (field, violation) = refuses(|v| v["linux"]["rootfsPropagation"] = json!("rslave,ro"));
    assert_eq!(field, "linux.rootfsPropagation");
    assert_eq!(
        violation,
        Violation::UnknownPropagation {
            value: "rslave,ro".into()
        }
    );
}

#[test]
fn personality_domain_rules() {
    accepts(|v| v["linux"]["personality"] = json!({"domain": "LINUX"}));
    accepts(|v| v["linux"]["personality"] = json!({"domain": "LINUX32"}));
    let (field, reason) = decode_error(|v| v["linux"]["personality"] = json!({"domain": "WIN32"}));
    assert_eq!(field, "linux.personality.domain");
    assert!(reason.contains("unknown variant `WIN32`"), "{reason}");
}

#[test]
fn cgroups_path_is_any_string() {
    for p in ["/amber/c1", "system.slice:amber:c1", "relative/path", ""] {
        accepts(|v| v["linux"]["cgroupsPath"] = json!(p));
    }
}
