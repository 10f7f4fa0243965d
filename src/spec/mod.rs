//! Loading and validating an OCI bundle's `config.json` and `exec --process` files.
//!
//! Everything here is checked before any side effect (ARCHITECTURE.md, clone path step 1), and
//! every error names the file and the field, in the config's JSON spelling:
//! `config.json: linux.namespaces[2].path: "ns/net" is not an absolute path`.
//!
//! Three layers, each usable alone:
//! - reading: regular files only, at most [`CONFIG_MAX_BYTES`] ([`load_bundle`], [`load_process`]);
//! - decoding: JSON syntax errors carry line and column, schema errors (wrong type, unknown
//!   capability or rlimit name, missing required field) carry the field path
//!   ([`parse_config`], [`parse_process`]);
//! - semantic rules, after runc's `libcontainer/configs/validate` and the runtime-spec
//!   ([`validate`], [`validate_process`]); the first broken rule wins.

#![deny(unsafe_code)]

mod error;
mod linux;
mod load;
mod process;
#[cfg(test)]
mod tests;

use std::path::Path;

use oci_spec::runtime::{Hook, Hooks, LinuxNamespaceType, Mount, Process, Spec};

pub use error::{FileKind, IoOp, SpecError, SpecWarning, Violation, WarningKind};

/// The largest config or process file amber reads. runc has no limit; real configs are a few
/// kilobytes, and a bound keeps a hostile bundle from making the runtime allocate without end.
pub const CONFIG_MAX_BYTES: u64 = 4 << 20;

/// The kernel's HOST_NAME_MAX (and the domainname limit): sethostname(2) answers EINVAL above.
const HOST_NAME_MAX: usize = 64;

/// Reads `<bundle>/config.json`, decodes it and checks every rule. Messages name the config
/// file by its full path.
pub fn load_bundle(bundle: &Path) -> Result<Spec, SpecError> {
    let file = bundle.join("config.json");
    let text = load::read_limited(&file)?;
    parse_config(&text, &file)
}

/// Reads an OCI process JSON (`exec --process FILE`), decodes it and checks it as a process.
pub fn load_process(file: &Path) -> Result<Process, SpecError> {
    let text = load::read_limited(file)?;
    parse_process(&text, file)
}

/// Decodes and validates a config held in memory; `file` only names it in errors. What
/// [`load_bundle`] uses after reading, and the entry point for unit tests and fuzzing.
pub fn parse_config(text: &[u8], file: &Path) -> Result<Spec, SpecError> {
    let (spec, raw) = load::decode::<Spec>(text, file)?;
    linux::check_device_numbers(&raw, file)?;
    validate(&spec, file)?;
    Ok(spec)
}

/// Decodes and validates a process JSON held in memory.
pub fn parse_process(text: &[u8], file: &Path) -> Result<Process, SpecError> {
    let (process, _raw) = load::decode::<Process>(text, file)?;
    validate_process(&process, file)?;
    Ok(process)
}

/// Checks the semantic rules on a decoded config. The first broken rule wins, naming its field.
pub fn validate(spec: &Spec, file: &Path) -> Result<(), SpecError> {
    check_version(spec.version(), file)?;
    check_root(spec, file)?;
    if let Some(p) = spec.process() {
        process::validate_process(p, file, "process.")?;
    }
    let ns = linux::check_namespaces(spec.linux().as_ref(), file)?;
    // runc: "unable to set hostname without a private UTS namespace". A joined uts namespace
    // counts: setting its name is what the caller asked for.
    let hostname_set = is_set(spec.hostname());
    if hostname_set {
        check_uts_name(spec.hostname().as_deref(), "hostname", &ns, file)?;
    }
    if is_set(spec.domainname()) {
        check_uts_name(spec.domainname().as_deref(), "domainname", &ns, file)?;
    }
    if let Some(l) = spec.linux() {
        linux::check_linux(l, &ns, hostname_set, file)?;
    }
    for (i, m) in spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        check_mount(m, i, file)?;
    }
    if let Some(hooks) = spec.hooks() {
        check_hooks(hooks, file)?;
    }
    Ok(())
}

/// Checks a decoded process file; fields are named from the file's top (`args`, `cwd`).
pub fn validate_process(process: &Process, file: &Path) -> Result<(), SpecError> {
    process::validate_process(process, file, "")
}

/// What the config asks for that amber accepts but does not do as written. Never fails; the
/// caller logs these (once, in main.rs).
pub fn warnings(spec: &Spec, file: &Path) -> Vec<SpecWarning> {
    let mut out = Vec::new();
    let mut warn = |field: String, kind: WarningKind| {
        out.push(SpecWarning {
            file: file.to_path_buf(),
            field,
            kind,
        })
    };
    for (i, m) in spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        let dest = m.destination();
        if !dest.as_os_str().is_empty() && !dest.is_absolute() {
            warn(
                format!("mounts[{i}].destination"),
                WarningKind::RelativeMountDestination { path: dest.clone() },
            );
        }
    }
    if let Some(p) = spec.process() {
        if is_set(p.apparmor_profile()) {
            warn("process.apparmorProfile".into(), WarningKind::LabelIgnored);
        }
        if is_set(p.selinux_label()) {
            warn("process.selinuxLabel".into(), WarningKind::LabelIgnored);
        }
    }
    if spec.linux().as_ref().is_some_and(|l| is_set(l.mount_label())) {
        warn("linux.mountLabel".into(), WarningKind::LabelIgnored);
    }
    out
}

/// Builds a rule error. Shared by the submodules.
fn invalid(file: &Path, field: impl Into<String>, violation: Violation) -> SpecError {
    SpecError::Invalid {
        file: file.to_path_buf(),
        field: field.into(),
        violation,
    }
}

/// An optional string that says something: runc treats "" like absent for these fields.
fn is_set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.is_empty())
}

/// `ociVersion` must be semver with major 1: 0.x predates the 1.0 schema, and a 2.x config may
/// mean things amber does not know.
fn check_version(version: &str, file: &Path) -> Result<(), SpecError> {
    const FIELD: &str = "ociVersion";
    if version.is_empty() {
        return Err(invalid(file, FIELD, Violation::Missing));
    }
    let malformed = || {
        invalid(
            file,
            FIELD,
            Violation::MalformedVersion {
                version: version.to_string(),
            },
        )
    };
    // MAJOR.MINOR.PATCH, then an optional -prerelease or +build ("1.0.2-dev").
    let core_end = version.find(['-', '+']).unwrap_or(version.len());
    let parts: Vec<&str> = version[..core_end].split('.').collect();
    let numeric = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(numeric) || core_end + 1 == version.len() {
        return Err(malformed());
    }
    let major: u64 = parts[0].parse().map_err(|_| malformed())?;
    if major != 1 {
        return Err(invalid(
            file,
            FIELD,
            Violation::UnsupportedVersion {
                version: version.to_string(),
                major,
            },
        ));
    }
    Ok(())
}

fn check_root(spec: &Spec, file: &Path) -> Result<(), SpecError> {
    match spec.root() {
        None => Err(invalid(file, "root", Violation::Missing)),
        // A relative root.path is relative to the bundle; only an empty one is meaningless.
        Some(root) if root.path().as_os_str().is_empty() => Err(invalid(file, "root.path", Violation::Empty)),
        Some(_) => Ok(()),
    }
}

fn check_uts_name(name: Option<&str>, field: &str, ns: &linux::Namespaces<'_>, file: &Path) -> Result<(), SpecError> {
    ns.require(LinuxNamespaceType::Uts, file, field)?;
    let len = name.map_or(0, str::len);
    if len > HOST_NAME_MAX {
        return Err(invalid(
            file,
            field,
            Violation::TooLong {
                len,
                max: HOST_NAME_MAX,
            },
        ));
    }
    Ok(())
}

/// A mount is a bind mount when its type says so or its options do (runc's rule; rootless
/// configs use `"type": "none"` with `rbind`).
fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|o| o == "bind" || o == "rbind")
}

/// A destination must be given; a relative one is accepted like runc does for old configs and
/// resolved against `/` (see [`warnings`]). A bind mount needs a source; anything else needs a
/// filesystem type (its source may be any label, as for proc or tmpfs).
fn check_mount(m: &Mount, i: usize, file: &Path) -> Result<(), SpecError> {
    let at = format!("mounts[{i}]");
    if m.destination().as_os_str().is_empty() {
        return Err(invalid(file, format!("{at}.destination"), Violation::Empty));
    }
    if m.typ().as_deref() == Some("") {
        return Err(invalid(file, format!("{at}.type"), Violation::Empty));
    }
    if is_bind(m) {
        let has_source = m.source().as_ref().is_some_and(|s| !s.as_os_str().is_empty());
        if !has_source {
            return Err(invalid(file, format!("{at}.source"), Violation::BindWithoutSource));
        }
    } else if m.typ().is_none() {
        return Err(invalid(file, format!("{at}.type"), Violation::MountWithoutType));
    }
    Ok(())
}

fn check_hooks(hooks: &Hooks, file: &Path) -> Result<(), SpecError> {
    // prestart is deprecated in the runtime-spec but still run by runc, so still checked.
    #[allow(deprecated)]
    let prestart = hooks.prestart();
    let lists = [
        ("prestart", prestart),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (name, list) in lists {
        for (i, hook) in list.as_deref().unwrap_or_default().iter().enumerate() {
            check_hook(hook, &format!("hooks.{name}[{i}]"), file)?;
        }
    }
    Ok(())
}

fn check_hook(hook: &Hook, at: &str, file: &Path) -> Result<(), SpecError> {
    if !hook.path().is_absolute() {
        return Err(invalid(
            file,
            format!("{at}.path"),
            Violation::NotAbsolute {
                path: hook.path().clone(),
            },
        ));
    }
    if let Some(env) = hook.env() {
        process::check_env(env, file, &format!("{at}.env"))?;
    }
    match hook.timeout() {
        Some(timeout) if timeout <= 0 => Err(invalid(
            file,
            format!("{at}.timeout"),
            Violation::NonPositiveTimeout { timeout },
        )),
        _ => Ok(()),
    }
}
