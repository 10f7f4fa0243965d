//! Rules for the `linux` section: namespaces, id mappings, time offsets, sysctls, devices,
//! masked and read-only paths, seccomp, rootfs propagation.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{Linux, LinuxDeviceType, LinuxIdMapping, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction};
use serde_json::Value;

use super::error::{SpecError, Violation};
use super::invalid;
use super::process::check_range;

/// The kernel keeps at most this many extents in a uid_map or gid_map (since 4.15).
const MAX_ID_MAPPINGS: usize = 340;
/// seccomp filters see six syscall arguments.
const SECCOMP_ARGS: usize = 6;
/// mknod(2) takes the 32-bit `new_encode_dev` form: 12 bits of major, 20 of minor.
const DEVICE_MAJOR: (i64, i64) = (0, 0xfff);
const DEVICE_MINOR: (i64, i64) = (0, 0xf_ffff);
const PROPAGATIONS: [&str; 8] = [
    "shared",
    "slave",
    "private",
    "unbindable",
    "rshared",
    "rslave",
    "rprivate",
    "runbindable",
];
/// IPC sysctls namespaced by CLONE_NEWIPC (besides the fs.mqueue.* prefix), as runc lists them.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The runtime-spec's name for a namespace type (oci-spec's Display says "mnt" and "net").
pub(crate) fn namespace_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The namespaces a config lists: for each type, its index in `linux.namespaces` and whether it
/// joins an existing namespace by path.
#[derive(Debug, Default)]
pub(crate) struct Namespaces<'a> {
    entries: HashMap<LinuxNamespaceType, (usize, Option<&'a Path>)>,
}

impl<'a> Namespaces<'a> {
    pub(crate) fn has(&self, typ: LinuxNamespaceType) -> bool {
        self.entries.contains_key(&typ)
    }

    fn get(&self, typ: LinuxNamespaceType) -> Option<(usize, Option<&'a Path>)> {
        self.entries.get(&typ).copied()
    }

    /// Fails with "needs a private <type> namespace" unless the config lists one (created or
    /// joined: a joined namespace is the caller's choice, as in runc).
    pub(crate) fn require(
        &self,
        typ: LinuxNamespaceType,
        file: &Path,
        field: impl Into<String>,
    ) -> Result<(), SpecError> {
        if self.has(typ) {
            return Ok(());
        }
        Err(invalid(
            file,
            field,
            Violation::RequiresNamespace {
                namespace: namespace_name(typ),
            },
        ))
    }
}

/// Checks `linux.namespaces` (unknown types are already decode errors): no type twice, and a
/// `path`, when given, absolute.
pub(crate) fn check_namespaces<'a>(linux: Option<&'a Linux>, file: &Path) -> Result<Namespaces<'a>, SpecError> {
    let mut set = Namespaces::default();
    let Some(list) = linux.and_then(|l| l.namespaces().as_ref()) else {
        return Ok(set);
    };
    for (i, ns) in list.iter().enumerate() {
        if let Some((first, _)) = set.get(ns.typ()) {
            return Err(invalid(
                file,
                format!("linux.namespaces[{i}].type"),
                Violation::DuplicateNamespace {
                    namespace: namespace_name(ns.typ()),
                    first,
                },
            ));
        }
        let path = ns.path().as_deref();
        if let Some(p) = path {
            if !p.is_absolute() {
                return Err(invalid(
                    file,
                    format!("linux.namespaces[{i}].path"),
                    Violation::NotAbsolute { path: p.to_path_buf() },
                ));
            }
        }
        set.entries.insert(ns.typ(), (i, path));
    }
    Ok(set)
}

/// Every rule of the `linux` section but the namespace list itself.
pub(crate) fn check_linux(
    linux: &Linux,
    ns: &Namespaces<'_>,
    hostname_set: bool,
    file: &Path,
) -> Result<(), SpecError> {
    check_user_mappings(linux, ns, file)?;
    check_time_offsets(linux, ns, file)?;
    check_sysctls(linux, ns, hostname_set, file)?;
    check_devices(linux, file)?;
    check_container_paths(linux, ns, file)?;
    if let Some(seccomp) = linux.seccomp() {
        check_seccomp(seccomp, file)?;
    }
    if let Some(prop) = linux.rootfs_propagation() {
        // An empty string means "the default", as in runc's propagation table.
        if !prop.is_empty() && !PROPAGATIONS.contains(&prop.as_str()) {
            return Err(invalid(
                file,
                "linux.rootfsPropagation",
                Violation::UnknownPropagation { value: prop.clone() },
            ));
        }
    }
    Ok(())
}

fn check_user_mappings(linux: &Linux, ns: &Namespaces<'_>, file: &Path) -> Result<(), SpecError> {
    let lists = [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ];
    for (field, mappings) in lists {
        let mappings = mappings.as_deref().unwrap_or_default();
        match ns.get(LinuxNamespaceType::User) {
            // Without a user namespace there is nothing to write the maps into.
            None if !mappings.is_empty() => {
                return Err(invalid(file, field, Violation::RequiresNamespace { namespace: "user" }));
            }
            // A new user namespace without maps would leave every id unmapped (nobody).
            Some((index, None)) if mappings.is_empty() => {
                return Err(invalid(file, field, Violation::MappingsRequired { index }));
            }
            _ => {}
        }
        check_mapping_list(mappings, file, field)?;
    }
    Ok(())
}

/// The kernel's checks on a uid_map/gid_map write (`new_idmap_permitted` aside): at most 340
/// extents, none empty, none wrapping the 32-bit id space, and no two overlapping on either side.
fn check_mapping_list(maps: &[LinuxIdMapping], file: &Path, field: &str) -> Result<(), SpecError> {
    if maps.len() > MAX_ID_MAPPINGS {
        return Err(invalid(
            file,
            field,
            Violation::TooManyMappings {
                count: maps.len(),
                max: MAX_ID_MAPPINGS,
            },
        ));
    }
    for (i, m) in maps.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if m.size() == 0 {
            return Err(invalid(file, format!("{at}.size"), Violation::MappingZeroSize));
        }
        for (side, start) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
            // The kernel refuses first + count wrapping, and u32::MAX itself (it is the
            // "invalid id" marker), so the exclusive end must stay within u32.
            if u64::from(start) + u64::from(m.size()) > u64::from(u32::MAX) {
                return Err(invalid(
                    file,
                    &at,
                    Violation::MappingOverflow {
                        side,
                        start,
                        size: m.size(),
                    },
                ));
            }
        }
        for (j, other) in maps[..i].iter().enumerate() {
            let sides = [
                ("containerID", m.container_id(), other.container_id()),
                ("hostID", m.host_id(), other.host_id()),
            ];
            for (side, a, b) in sides {
                if ranges_overlap(a, m.size(), b, other.size()) {
                    return Err(invalid(file, &at, Violation::MappingOverlap { side, other: j }));
                }
            }
        }
    }
    Ok(())
}

fn ranges_overlap(a: u32, a_len: u32, b: u32, b_len: u32) -> bool {
    let (a, a_end) = (u64::from(a), u64::from(a) + u64::from(a_len));
    let (b, b_end) = (u64::from(b), u64::from(b) + u64::from(b_len));
    a < b_end && b < a_end
}

fn check_time_offsets(linux: &Linux, ns: &Namespaces<'_>, file: &Path) -> Result<(), SpecError> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) else {
        return Ok(());
    };
    ns.require(LinuxNamespaceType::Time, file, "linux.timeOffsets")?;
    if let Some((index, Some(_))) = ns.get(LinuxNamespaceType::Time) {
        // timens_offsets can only be written before any process enters the namespace.
        return Err(invalid(
            file,
            "linux.timeOffsets",
            Violation::TimeOffsetsOnJoinedNamespace { index },
        ));
    }
    let mut clocks: Vec<&String> = offsets.keys().collect();
    clocks.sort();
    for clock in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(invalid(
                file,
                format!("linux.timeOffsets.{clock}"),
                Violation::UnknownClock { clock: clock.clone() },
            ));
        }
    }
    Ok(())
}

/// sysctl(8) accepts '/' as the separator when the first separator is one; turn such a key into
/// the dotted form (swapping the dots inside a component to '/') so the prefixes below match.
pub(crate) fn sysctl_dotted(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// /proc/sys is only partly namespaced: each sysctl is allowed only when the namespace that
/// owns it is private to the container, otherwise writing it would change the host (runc's
/// `sysctl` check). Keys are checked in sorted order so the first error is stable.
fn check_sysctls(linux: &Linux, ns: &Namespaces<'_>, hostname_set: bool, file: &Path) -> Result<(), SpecError> {
    let Some(sysctls) = linux.sysctl() else {
        return Ok(());
    };
    let mut keys: Vec<&String> = sysctls.keys().collect();
    keys.sort();
    for key in keys {
        let field = format!("linux.sysctl[{key:?}]");
        let dotted = sysctl_dotted(key);
        if IPC_SYSCTLS.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
            ns.require(LinuxNamespaceType::Ipc, file, field)?;
        } else if dotted.starts_with("net.") {
            // A joined network namespace counts: whether its path is the host's is a runtime
            // question (runc stats it), not a config rule.
            ns.require(LinuxNamespaceType::Network, file, field)?;
        } else if dotted == "kernel.domainname" {
            ns.require(LinuxNamespaceType::Uts, file, field)?;
        } else if dotted == "kernel.hostname" {
            ns.require(LinuxNamespaceType::Uts, file, &field)?;
            if hostname_set {
                return Err(invalid(
                    file,
                    field,
                    Violation::SysctlConflictsWithHostname { key: dotted },
                ));
            }
        } else {
            return Err(invalid(file, field, Violation::SysctlNotNamespaced { key: dotted }));
        }
    }
    Ok(())
}

fn check_devices(linux: &Linux, file: &Path) -> Result<(), SpecError> {
    let Some(devices) = linux.devices() else {
        return Ok(());
    };
    for (i, dev) in devices.iter().enumerate() {
        let at = format!("linux.devices[{i}]");
        if !dev.path().is_absolute() {
            return Err(invalid(
                file,
                format!("{at}.path"),
                Violation::NotAbsolute {
                    path: dev.path().clone(),
                },
            ));
        }
        match dev.typ() {
            LinuxDeviceType::A => return Err(invalid(file, format!("{at}.type"), Violation::DeviceTypeAll)),
            // A fifo has no device number.
            LinuxDeviceType::P => {}
            LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U => {
                check_range(dev.major(), DEVICE_MAJOR, file, &format!("{at}.major"))?;
                check_range(dev.minor(), DEVICE_MINOR, file, &format!("{at}.minor"))?;
            }
        }
    }
    Ok(())
}

/// oci-spec defaults a missing `major`/`minor` to 0, which would silently create a 0:0 device;
/// the runtime-spec requires both for c, b and u devices. Only the raw JSON can tell "absent"
/// from "0", so this runs on the parsed [`Value`], after decoding succeeded.
pub(crate) fn check_device_numbers(config: &Value, file: &Path) -> Result<(), SpecError> {
    let Some(devices) = config.pointer("/linux/devices").and_then(Value::as_array) else {
        return Ok(());
    };
    for (i, dev) in devices.iter().enumerate() {
        let typ = match dev.get("type").and_then(Value::as_str) {
            Some("c") => "c",
            Some("b") => "b",
            Some("u") => "u",
            _ => continue,
        };
        for key in ["major", "minor"] {
            if dev.get(key).is_none() {
                return Err(invalid(
                    file,
                    format!("linux.devices[{i}].{key}"),
                    Violation::DeviceNumberRequired { typ },
                ));
            }
        }
    }
    Ok(())
}

/// maskedPaths and readonlyPaths: absolute, and (as runc requires) only with a private mount
/// namespace, since masking them in the host's would hide host files.
fn check_container_paths(linux: &Linux, ns: &Namespaces<'_>, file: &Path) -> Result<(), SpecError> {
    let lists = [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ];
    for (field, paths) in lists {
        let paths = paths.as_deref().unwrap_or_default();
        for (i, p) in paths.iter().enumerate() {
            if !Path::new(p).is_absolute() {
                return Err(invalid(
                    file,
                    format!("{field}[{i}]"),
                    Violation::NotAbsolute { path: p.into() },
                ));
            }
        }
        if !paths.is_empty() {
            ns.require(LinuxNamespaceType::Mount, file, field)?;
        }
    }
    Ok(())
}

fn check_seccomp(seccomp: &LinuxSeccomp, file: &Path) -> Result<(), SpecError> {
    // The notify fd is handed to the listener; as the default it would also catch the
    // runtime's own syscalls between loading the filter and execve.
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(invalid(
            file,
            "linux.seccomp.defaultAction",
            Violation::SeccompNotifyDefault,
        ));
    }
    if let Some(listener) = seccomp.listener_path() {
        if !listener.is_absolute() {
            return Err(invalid(
                file,
                "linux.seccomp.listenerPath",
                Violation::NotAbsolute { path: listener.clone() },
            ));
        }
    }
    let syscalls = seccomp.syscalls().as_deref().unwrap_or_default();
    for (i, sc) in syscalls.iter().enumerate() {
        let at = format!("linux.seccomp.syscalls[{i}]");
        if sc.names().is_empty() {
            return Err(invalid(file, format!("{at}.names"), Violation::Empty));
        }
        if let Some(j) = sc.names().iter().position(String::is_empty) {
            return Err(invalid(file, format!("{at}.names[{j}]"), Violation::Empty));
        }
        for (j, arg) in sc.args().as_deref().unwrap_or_default().iter().enumerate() {
            if arg.index() >= SECCOMP_ARGS {
                return Err(invalid(
                    file,
                    format!("{at}.args[{j}].index"),
                    Violation::SeccompArgIndex { index: arg.index() },
                ));
            }
        }
        // Without a listener nobody answers the notifications and the syscall blocks forever.
        if sc.action() == LinuxSeccompAction::ScmpActNotify && seccomp.listener_path().is_none() {
            return Err(invalid(
                file,
                format!("{at}.action"),
                Violation::SeccompNotifyWithoutListener,
            ));
        }
    }
    Ok(())
}
