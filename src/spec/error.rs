//! The errors of the `spec` boundary: reading a file, decoding its JSON, and the semantic rules.
//!
//! Every variant names the file; decode and rule errors also name the field, as a JSON path in
//! the config's own spelling (`process.args`, `linux.namespaces[2].type`).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a config or process file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file does not exist (checked apart from other open errors: it is the common mistake of
    /// a wrong `--bundle`).
    #[error("{}: not found", file.display())]
    NotFound { file: PathBuf },

    /// `stat`, `open` or `read` failed.
    #[error("{}: cannot {op}: {source}", file.display())]
    Io {
        file: PathBuf,
        op: IoOp,
        #[source]
        source: io::Error,
    },

    /// The path names a directory, fifo, socket or device: reading those could block forever or
    /// never end.
    #[error("{}: is a {kind}, not a regular file", file.display())]
    NotRegular { file: PathBuf, kind: FileKind },

    /// The file is larger than [`super::CONFIG_MAX_BYTES`].
    #[error("{}: {size} bytes is larger than the limit of {limit} bytes", file.display())]
    TooLarge { file: PathBuf, size: u64, limit: u64 },

    /// The text is not JSON. `reason` is serde_json's message without its position suffix.
    #[error("{}: invalid JSON at line {line}, column {column}: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },

    /// The JSON does not fit the runtime-spec schema: a wrong type, a missing required field, an
    /// unknown enum name (capability, rlimit, namespace type, seccomp action, ...).
    /// `reason` is serde's message.
    #[error("{}: {field}: {reason}", file.display())]
    Decode {
        file: PathBuf,
        field: String,
        reason: String,
    },

    /// The config decodes but breaks one of the semantic rules.
    #[error("{}: {field}: {violation}", file.display())]
    Invalid {
        file: PathBuf,
        field: String,
        violation: Violation,
    },
}

impl SpecError {
    /// The violated rule, for callers (and tests) that match on it.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            SpecError::Invalid { violation, .. } => Some(violation),
            _ => None,
        }
    }

    /// The JSON path of the offending field, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Decode { field, .. } | SpecError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// The file operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Stat,
    Open,
    Read,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Stat => "stat",
            IoOp::Open => "open",
            IoOp::Read => "read",
        })
    }
}

/// What a non-regular path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Symlink,
    Unknown,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "directory",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Symlink => "symlink",
            FileKind::Unknown => "special file",
        })
    }
}

/// One semantic rule, with the values that broke it. The field it applies to is carried by
/// [`SpecError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("missing")]
    Missing,
    #[error("must not be empty")]
    Empty,
    #[error("{value:?} contains a NUL byte")]
    NulByte { value: String },
    #[error("{path:?} is not an absolute path")]
    NotAbsolute { path: PathBuf },
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange { value: i64, min: i64, max: i64 },

    #[error("{version:?} is not a semantic version (MAJOR.MINOR.PATCH)")]
    MalformedVersion { version: String },
    #[error("{version:?}: runtime-spec major version {major} is not supported (amber implements 1.x)")]
    UnsupportedVersion { version: String, major: u64 },

    #[error("{entry:?} is not KEY=VALUE")]
    EnvWithoutEquals { entry: String },
    #[error("{entry:?} has an empty variable name")]
    EnvEmptyName { entry: String },
    #[error("{rlimit} is set twice (first at index {first})")]
    DuplicateRlimit { rlimit: String, first: usize },
    #[error("soft limit {soft} is above hard limit {hard}")]
    RlimitSoftAboveHard { soft: u64, hard: u64 },
    #[error("only allowed with scheduler policy {allowed}")]
    SchedulerPolicy { allowed: &'static str },

    #[error("needs a private {namespace} namespace, but linux.namespaces has no {namespace} entry")]
    RequiresNamespace { namespace: &'static str },
    #[error("{len} bytes is longer than the kernel's limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("the {namespace} namespace is listed twice (first at linux.namespaces[{first}])")]
    DuplicateNamespace { namespace: &'static str, first: usize },

    #[error("required when a new user namespace is created (no path in linux.namespaces[{index}])")]
    MappingsRequired { index: usize },
    #[error("size must be greater than 0")]
    MappingZeroSize,
    #[error("{side} range {start}..{start}+{size} does not fit in 32-bit ids")]
    MappingOverflow { side: &'static str, start: u32, size: u32 },
    #[error("{side} range overlaps mapping [{other}]")]
    MappingOverlap { side: &'static str, other: usize },
    #[error("{count} mappings is more than the kernel's limit of {max}")]
    TooManyMappings { count: usize, max: usize },

    #[error("unknown clock {clock:?} (expected monotonic or boottime)")]
    UnknownClock { clock: String },
    #[error("offsets can only be set on a new time namespace, not one joined by path (linux.namespaces[{index}])")]
    TimeOffsetsOnJoinedNamespace { index: usize },

    #[error("sysctl {key:?} is not in a separate kernel namespace")]
    SysctlNotNamespaced { key: String },
    #[error("sysctl {key:?} conflicts with the hostname field")]
    SysctlConflictsWithHostname { key: String },

    #[error("a bind mount needs a source")]
    BindWithoutSource,
    #[error("a type is required unless the mount is a bind mount")]
    MountWithoutType,

    #[error("type \"a\" is only valid in cgroup device rules (linux.resources.devices)")]
    DeviceTypeAll,
    #[error("required for device type {typ:?}")]
    DeviceNumberRequired { typ: &'static str },

    #[error("timeout must be greater than zero, got {timeout}")]
    NonPositiveTimeout { timeout: i64 },

    #[error("argument index {index} is beyond the 6 syscall arguments")]
    SeccompArgIndex { index: usize },
    #[error("SCMP_ACT_NOTIFY cannot be the default action")]
    SeccompNotifyDefault,
    #[error("SCMP_ACT_NOTIFY is used but linux.seccomp.listenerPath is not set")]
    SeccompNotifyWithoutListener,

    #[error("unknown propagation {value:?} (expected shared, slave, private, unbindable, rshared, rslave, rprivate or runbindable)")]
    UnknownPropagation { value: String },
}

/// Something accepted for compatibility but worth a log line. `validate` never fails on these;
/// the caller decides whether to log them (see [`super::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecWarning {
    pub file: PathBuf,
    pub field: String,
    pub kind: WarningKind,
}

/// The kinds of [`SpecWarning`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// runc accepts relative mount destinations from old configs and resolves them against `/`.
    RelativeMountDestination { path: PathBuf },
    /// An LSM label that amber does not apply yet.
    LabelIgnored,
}

impl fmt::Display for SpecWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.file.display(), self.field)?;
        match &self.kind {
            WarningKind::RelativeMountDestination { path } => write!(
                f,
                "relative destination {path:?} is deprecated; it is resolved relative to /"
            ),
            WarningKind::LabelIgnored => f.write_str("ignored (amber does not apply LSM labels)"),
        }
    }
}
