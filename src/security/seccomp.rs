//! seccomp from `linux.seccomp`, with libseccomp.
//!
//! [`plan`] turns the OCI section into a [`SeccompPlan`]: pure data, refusing everything amber
//! or the linked libseccomp cannot do, so `create` fails before anything is cloned. [`build`]
//! compiles a plan into a libseccomp context without loading it; [`load`] installs it in the
//! calling thread (the init's last step before execve) and returns the user-notification fd
//! when a rule uses SCMP_ACT_NOTIFY; [`NotifySocket`] hands that fd to the seccomp agent.
//!
//! The semantics are runc's (`libcontainer/seccomp/seccomp_linux.go`), since engines and
//! profiles are written against it:
//! - SCMP_ACT_KILL is KILL_THREAD; ERRNO and TRACE without `errnoRet` return EPERM.
//! - A syscall name libseccomp does not know is skipped (a profile lists syscalls newer than
//!   the host); the names are kept in [`SeccompPlan::skipped`] for a debug log line.
//! - A rule whose action equals the default action is skipped: libseccomp refuses it.
//! - Arguments with distinct indexes make one rule that ANDs them; if an index repeats, each
//!   argument makes its own rule, so the rules OR.
//! - MASKED_EQ matches `(arg & value) == valueTwo`.
//!
//! Not done (runc does it): patching the BPF so that syscalls newer than the profile return
//! ENOSYS instead of the default action.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use libseccomp::error::SeccompError as ScmpError;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall, ScmpVersion};
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

/// Seccomp filters see six syscall arguments.
const SYSCALL_ARGS: usize = 6;
/// What ERRNO and TRACE return when the config gives no `errnoRet` (runc's choice).
const DEFAULT_ERRNO: u16 = libc::EPERM as u16;
/// The name of the notify fd in the message to the agent (runtime-spec `SeccompFdName`).
const SECCOMP_FD_NAME: &str = "seccompFd";
/// Syscalls the init makes after the filter is loaded and before the agent holds the notify
/// fd. A NOTIFY rule on one of them would park the init forever on a notification that no one
/// can read yet. runc refuses `write` for the same reason; amber sends the fd with `sendmsg`
/// on a socket connected before the load (see [`NotifySocket`]).
const NOTIFY_FORBIDDEN: [&str; 2] = ["write", "sendmsg"];

/// The flags amber knows, for `amber features` (`linux.seccomp.knownFlags`).
pub const KNOWN_FLAGS: [&str; 4] = [FLAGS[0].0, FLAGS[1].0, FLAGS[2].0, FLAGS[3].0];

/// A `ScmpFilterContext::set_ctl_*` setter.
type SetFlag = for<'a> fn(&'a mut ScmpFilterContext, bool) -> Result<&'a mut ScmpFilterContext, ScmpError>;

/// A filter flag: its OCI name, the libseccomp setter, and the API level and library version it
/// needs.
type Flag = (&'static str, SetFlag, u32, Version);
/// A libseccomp version as (major, minor, micro).
type Version = (u32, u32, u32);
/// What a plan needs from libseccomp: the field that asks, what it is, the API level and version.
type Need = (String, &'static str, u32, Version);

/// In the order of [`FilterFlags::set`].
#[rustfmt::skip]
const FLAGS: [Flag; 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", ScmpFilterContext::set_ctl_tsync, 2, (2, 2, 0)),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", ScmpFilterContext::set_ctl_ssb, 4, (2, 5, 0)),
    ("SECCOMP_FILTER_FLAG_LOG", ScmpFilterContext::set_ctl_log, 3, (2, 4, 0)),
    ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", ScmpFilterContext::set_ctl_waitkill, 7, (2, 6, 0)),
];

/// One argument comparison: `arg[index] op value`; MASKED_EQ carries the mask in `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArgCmp {
    pub index: u32,
    pub op: ScmpCompareOp,
    pub value: u64,
}

/// One `seccomp_rule_add` call. All comparisons of a rule must hold for it to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Index of the entry in `linux.seccomp.syscalls`, for error messages.
    pub entry: usize,
    pub syscall: String,
    /// ERRNO and TRACE carry their return value, resolved from `errnoRet`.
    pub action: ScmpAction,
    pub args: Vec<ArgCmp>,
}

/// `linux.seccomp.flags`, as filter attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterFlags {
    pub log: bool,
    pub spec_allow: bool,
    pub tsync: bool,
    /// Needs libseccomp 2.6 (API level 7, Linux 5.19).
    pub wait_killable_recv: bool,
}

impl FilterFlags {
    /// The flags that are on.
    fn set(self) -> impl Iterator<Item = &'static Flag> {
        let on = [self.tsync, self.spec_allow, self.log, self.wait_killable_recv];
        on.into_iter().zip(&FLAGS).filter_map(|(on, flag)| on.then_some(flag))
    }
}

/// Where the notify fd goes: `linux.seccomp.listenerPath` and `listenerMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyListener {
    pub path: PathBuf,
    pub metadata: Option<String>,
}

/// The filter to install, built from `linux.seccomp` by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompPlan {
    pub default_action: ScmpAction,
    /// Architectures besides the native one, which every filter has.
    pub arches: Vec<ScmpArch>,
    pub flags: FilterFlags,
    pub rules: Vec<Rule>,
    /// Syscall names libseccomp does not know, skipped as runc does; log them at debug.
    pub skipped: Vec<String>,
    /// Set exactly when a rule that made it into the filter uses SCMP_ACT_NOTIFY.
    pub notify: Option<NotifyListener>,
}

impl SeccompPlan {
    pub fn uses_notify(&self) -> bool {
        self.notify.is_some()
    }
}

/// What the linked libseccomp, and through its API level the kernel, can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibSupport {
    pub version: ScmpVersion,
    /// `seccomp_api_get()`: 3 adds LOG and KILL_PROCESS, 4 SPEC_ALLOW, 6 NOTIFY (with TSYNC),
    /// 7 WAIT_KILLABLE_RECV.
    pub api: u32,
}

/// The libseccomp step that failed in [`build`] or [`load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterStep {
    Create,
    ClearNoNewPrivs,
    AddArch(ScmpArch),
    SetFlag(&'static str),
    AddRule { field: String, syscall: String },
    Load,
    NotifyFd,
}

impl std::fmt::Display for FilterStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create => write!(f, "creating the seccomp filter"),
            Self::ClearNoNewPrivs => write!(f, "leaving no_new_privs to the init"),
            Self::AddArch(arch) => write!(f, "adding architecture {arch:?} to the seccomp filter"),
            Self::SetFlag(flag) => write!(f, "setting linux.seccomp.flags {flag}"),
            Self::AddRule { field, syscall } => write!(f, "{field}: adding the rule for {syscall}"),
            Self::Load => write!(f, "loading the seccomp filter"),
            Self::NotifyFd => write!(f, "getting the seccomp notify fd"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{field}: {value} does not fit the 16-bit return value of a seccomp action")]
    ReturnValueRange { field: String, value: u32 },
    #[error("{field}: libseccomp does not know the architecture {arch}")]
    UnknownArch { field: String, arch: Arch },
    #[error("{field}: argument index {index} is out of range: syscalls have 6 arguments (0-5)")]
    ArgIndex { field: String, index: usize },
    #[error("{field}: SCMP_ACT_NOTIFY cannot be the default action: it would catch handing the fd to the agent")]
    NotifyDefault { field: &'static str },
    #[error("{field}: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")]
    NotifyWithoutListener { field: String },
    #[error("{field}: SCMP_ACT_NOTIFY cannot be used for {syscall}: the runtime hands the fd to the agent with it")]
    NotifyForbiddenSyscall { field: String, syscall: String },
    #[error("{field}: {path:?} is not an absolute path")]
    ListenerNotAbsolute { field: &'static str, path: PathBuf },
    #[error(
        "{field}: {what} needs libseccomp >= {need_version} at API level {need_api}; this host \
         has libseccomp {have_version} at API level {have_api}"
    )]
    Unsupported {
        field: String,
        what: String,
        need_version: ScmpVersion,
        need_api: u32,
        have_version: ScmpVersion,
        have_api: u32,
    },
    #[error("{step}: {source}")]
    Libseccomp {
        step: FilterStep,
        #[source]
        source: ScmpError,
    },
    #[error("decoding or encoding the container state for the seccomp agent: {source}")]
    StateJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("the container state for the seccomp agent has no {field}")]
    StateField { field: &'static str },
    #[error("connecting to the seccomp agent at {path:?}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sending the seccomp notify fd to the agent at {path:?}: {source}")]
    Send {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

fn lib_err(step: FilterStep) -> impl FnOnce(ScmpError) -> SeccompError {
    move |source| SeccompError::Libseccomp { step, source }
}

/// Resolves an OCI action; `ret_field` names the `errnoRet` it came with.
fn resolve_action(action: LinuxSeccompAction, ret: Option<u32>, ret_field: &str) -> Result<ScmpAction, SeccompError> {
    let ret = || match ret {
        None => Ok(DEFAULT_ERRNO),
        Some(value) => u16::try_from(value).map_err(|_| SeccompError::ReturnValueRange {
            field: ret_field.to_string(),
            value,
        }),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret()?),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// The libseccomp version that first knows an architecture, when above the baseline.
fn arch_needs(arch: ScmpArch) -> Option<Version> {
    match arch {
        ScmpArch::Parisc | ScmpArch::Parisc64 => Some((2, 4, 0)),
        ScmpArch::Riscv64 => Some((2, 5, 0)),
        ScmpArch::Loongarch64 | ScmpArch::M68k | ScmpArch::Sh | ScmpArch::Sheb => Some((2, 6, 0)),
        _ => None,
    }
}

/// The libseccomp API level and version an action needs, when above the baseline.
fn action_needs(action: ScmpAction) -> Option<(&'static str, u32, Version)> {
    match action {
        ScmpAction::KillProcess => Some(("SCMP_ACT_KILL_PROCESS", 3, (2, 4, 0))),
        ScmpAction::Log => Some(("SCMP_ACT_LOG", 3, (2, 4, 0))),
        ScmpAction::Notify => Some(("SCMP_ACT_NOTIFY", 6, (2, 5, 0))),
        _ => None,
    }
}

impl ArgCmp {
    fn from_oci(arg: &LinuxSeccompArg, index: u32) -> Self {
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
            // libseccomp's SCMP_CMP_MASKED_EQ(datum_a = mask, datum_b = value), which runc
            // fills from `value` and `valueTwo` in that order.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                (ScmpCompareOp::MaskedEqual(arg.value()), arg.value_two().unwrap_or(0))
            }
        };
        Self { index, op, value }
    }

    fn to_scmp(self) -> ScmpArgCompare {
        ScmpArgCompare::new(self.index, self.op, self.value)
    }
}

impl LibSupport {
    /// Asks the linked libseccomp; the API level probe also asks the kernel. A library that
    /// cannot tell its version (it always can) counts as 0.0.0, so it can do nothing extra.
    pub fn probe() -> Self {
        Self {
            version: ScmpVersion::current().unwrap_or_else(|_| (0, 0, 0).into()),
            api: libseccomp::get_api(),
        }
    }

    /// The error for a feature this library lacks.
    fn lacks(&self, field: String, what: &str, need_api: u32, need_version: Version) -> SeccompError {
        SeccompError::Unsupported {
            field,
            what: what.to_string(),
            need_version: need_version.into(),
            need_api,
            have_version: self.version,
            have_api: self.api,
        }
    }

    fn has(&self, api: u32, version: Version) -> bool {
        let have = (self.version.major, self.version.minor, self.version.micro);
        self.api >= api && have >= version
    }

    /// The flags this host can apply, for `amber features` (`linux.seccomp.supportedFlags`).
    pub fn supported_flags(&self) -> Vec<&'static str> {
        FLAGS.iter().filter(|f| self.has(f.2, f.3)).map(|f| f.0).collect()
    }
}

/// Builds the plan for `linux.seccomp`, checked against the linked libseccomp.
pub fn plan(seccomp: &LinuxSeccomp) -> Result<SeccompPlan, SeccompError> {
    plan_with(seccomp, LibSupport::probe())
}

/// [`plan`] against a given libseccomp, so that tests can pretend to run on another host.
pub fn plan_with(seccomp: &LinuxSeccomp, have: LibSupport) -> Result<SeccompPlan, SeccompError> {
    let default_action = resolve_action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default_action == ScmpAction::Notify {
        return Err(SeccompError::NotifyDefault {
            field: "linux.seccomp.defaultAction",
        });
    }
    let listener = plan_listener(seccomp)?;
    let mut plan = SeccompPlan {
        default_action,
        arches: plan_arches(seccomp.architectures().as_deref().unwrap_or_default(), have)?,
        flags: plan_flags(seccomp.flags().as_deref().unwrap_or_default()),
        rules: Vec::new(),
        skipped: Vec::new(),
        notify: None,
    };
    let entries = seccomp.syscalls().as_deref().unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        plan_entry(&mut plan, listener.is_some(), i, entry)?;
    }
    if plan.rules.iter().any(|r| r.action == ScmpAction::Notify) {
        plan.notify = listener;
    }
    check_support(&plan, have)?;
    Ok(plan)
}

fn plan_listener(seccomp: &LinuxSeccomp) -> Result<Option<NotifyListener>, SeccompError> {
    let Some(path) = seccomp.listener_path() else {
        return Ok(None);
    };
    if !path.is_absolute() {
        return Err(SeccompError::ListenerNotAbsolute {
            field: "linux.seccomp.listenerPath",
            path: path.clone(),
        });
    }
    Ok(Some(NotifyListener {
        path: path.clone(),
        metadata: seccomp.listener_metadata().clone(),
    }))
}

fn plan_arches(arches: &[Arch], have: LibSupport) -> Result<Vec<ScmpArch>, SeccompError> {
    let mut out = Vec::new();
    for (i, arch) in arches.iter().enumerate() {
        let (field, name) = (format!("linux.seccomp.architectures[{i}]"), arch.to_string());
        // Both crates spell the names SCMP_ARCH_*, so the name maps one to the other.
        let Ok(scmp) = name.parse::<ScmpArch>() else {
            return Err(SeccompError::UnknownArch { field, arch: *arch });
        };
        if let Some(version) = arch_needs(scmp).filter(|v| !have.has(1, *v)) {
            return Err(have.lacks(field, &name, 1, version));
        }
        // The native architecture is in every filter from the start.
        if scmp != ScmpArch::Native && scmp != ScmpArch::native() && !out.contains(&scmp) {
            out.push(scmp);
        }
    }
    Ok(out)
}

fn plan_flags(flags: &[LinuxSeccompFilterFlag]) -> FilterFlags {
    let mut out = FilterFlags::default();
    for flag in flags {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => out.log = true,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => out.tsync = true,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => out.spec_allow = true,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => out.wait_killable_recv = true,
        }
    }
    out
}

fn plan_entry(plan: &mut SeccompPlan, has_listener: bool, i: usize, entry: &LinuxSyscall) -> Result<(), SeccompError> {
    let field = format!("linux.seccomp.syscalls[{i}]");
    let action = resolve_action(entry.action(), entry.errno_ret(), &format!("{field}.errnoRet"))?;
    if action == ScmpAction::Notify {
        if !has_listener {
            return Err(SeccompError::NotifyWithoutListener {
                field: format!("{field}.action"),
            });
        }
        let mut names = entry.names().iter().enumerate();
        if let Some((j, name)) = names.find(|(_, n)| NOTIFY_FORBIDDEN.contains(&n.as_str())) {
            return Err(SeccompError::NotifyForbiddenSyscall {
                field: format!("{field}.names[{j}]"),
                syscall: name.clone(),
            });
        }
    }
    let groups = plan_args(&field, entry.args().as_deref().unwrap_or_default())?;
    for name in entry.names() {
        if ScmpSyscall::from_name(name).is_err() {
            if !plan.skipped.contains(name) {
                plan.skipped.push(name.clone());
            }
            continue;
        }
        if action == plan.default_action {
            continue;
        }
        for args in &groups {
            plan.rules.push(Rule {
                entry: i,
                syscall: name.clone(),
                action,
                args: args.clone(),
            });
        }
    }
    Ok(())
}

/// The comparisons of each rule an entry makes: one rule with all of them when the indexes are
/// distinct, else one rule per comparison (runc's rule).
fn plan_args(field: &str, args: &[LinuxSeccompArg]) -> Result<Vec<Vec<ArgCmp>>, SeccompError> {
    let mut cmps = Vec::with_capacity(args.len());
    let mut seen = [false; SYSCALL_ARGS];
    let mut repeated = false;
    for (j, arg) in args.iter().enumerate() {
        let index = arg.index();
        let Some(slot) = seen.get_mut(index) else {
            return Err(SeccompError::ArgIndex {
                field: format!("{field}.args[{j}].index"),
                index,
            });
        };
        repeated |= std::mem::replace(slot, true);
        // The index is below SYSCALL_ARGS here, so it fits.
        cmps.push(ArgCmp::from_oci(arg, index as u32));
    }
    Ok(if cmps.is_empty() {
        vec![Vec::new()]
    } else if repeated {
        cmps.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![cmps]
    })
}

/// Refuses a plan that the linked libseccomp cannot apply in full: a requested flag or action is
/// never dropped, and the container never runs with less filtering than it asked for.
pub fn check_support(plan: &SeccompPlan, have: LibSupport) -> Result<(), SeccompError> {
    let mut needs: Vec<Need> = Vec::new();
    for &(name, _, api, version) in plan.flags.set() {
        needs.push(("linux.seccomp.flags".into(), name, api, version));
    }
    if let Some((what, api, version)) = action_needs(plan.default_action) {
        needs.push(("linux.seccomp.defaultAction".into(), what, api, version));
    }
    for rule in &plan.rules {
        if let Some((what, api, version)) = action_needs(rule.action) {
            let field = format!("linux.seccomp.syscalls[{}].action", rule.entry);
            needs.push((field, what, api, version));
        }
    }
    match needs.into_iter().find(|(_, _, api, v)| !have.has(*api, *v)) {
        None => Ok(()),
        Some((field, what, api, version)) => Err(have.lacks(field, what, api, version)),
    }
}

/// Compiles the plan into a libseccomp context, not loaded: the caller can load it or export
/// its BPF.
pub fn build(plan: &SeccompPlan) -> Result<ScmpFilterContext, SeccompError> {
    check_support(plan, LibSupport::probe())?;
    let mut ctx = ScmpFilterContext::new(plan.default_action).map_err(lib_err(FilterStep::Create))?;
    // libseccomp sets no_new_privs itself on load unless told not to. Whether the container gets
    // it is process.noNewPrivileges' call, which the init makes before loading (as runc does).
    ctx.set_ctl_nnp(false).map_err(lib_err(FilterStep::ClearNoNewPrivs))?;
    for &arch in &plan.arches {
        ctx.add_arch(arch).map_err(lib_err(FilterStep::AddArch(arch)))?;
    }
    for &(name, set, _, _) in plan.flags.set() {
        set(&mut ctx, true).map_err(lib_err(FilterStep::SetFlag(name)))?;
    }
    for rule in &plan.rules {
        let step = || FilterStep::AddRule {
            field: format!("linux.seccomp.syscalls[{}]", rule.entry),
            syscall: rule.syscall.clone(),
        };
        let syscall = ScmpSyscall::from_name(&rule.syscall).map_err(lib_err(step()))?;
        let cmps: Vec<ScmpArgCompare> = rule.args.iter().map(|a| a.to_scmp()).collect();
        ctx.add_rule_conditional(rule.action, syscall, &cmps)
            .map_err(lib_err(step()))?;
    }
    Ok(ctx)
}

/// Builds the filter and loads it into the calling thread. Returns the notify fd when the plan
/// uses SCMP_ACT_NOTIFY; the caller must hand it to the agent ([`NotifySocket::send`]) before
/// execve, with a socket connected before this call.
///
/// Loading needs no_new_privs or CAP_SYS_ADMIN; the init sets no_new_privs first when the
/// config asks for it.
pub fn load(plan: &SeccompPlan) -> Result<Option<OwnedFd>, SeccompError> {
    let ctx = build(plan)?;
    ctx.load().map_err(lib_err(FilterStep::Load))?;
    if !plan.uses_notify() {
        return Ok(None);
    }
    let raw = ctx.get_notify_fd().map_err(lib_err(FilterStep::NotifyFd))?;
    // The kernel just created this close-on-exec descriptor for the load. libseccomp only keeps
    // its number to return it again, and nothing in this process asks for it after this point,
    // so ownership moves to the caller. Taking it needs no syscall, which matters: anything the
    // init runs between load and handing over the fd must not be a NOTIFY target.
    Ok(Some(crate::sys::own_fresh_fd(raw)))
}

/// Wraps the container state JSON (as `amber state` prints it, with the init's pid as seen by
/// the runtime) into the agent's message: `{"ociVersion","fds":["seccompFd"],"pid","metadata",
/// "state"}`, taking the version and pid from the state like runc.
pub fn process_state_message(metadata: Option<&str>, state_json: &[u8]) -> Result<Vec<u8>, SeccompError> {
    let state: serde_json::Value =
        serde_json::from_slice(state_json).map_err(|source| SeccompError::StateJson { source })?;
    let missing = |field| SeccompError::StateField { field };
    let oci_version = state["ociVersion"]
        .as_str()
        .ok_or(missing("string \"ociVersion\""))?
        .to_string();
    let pid = state["pid"].as_i64().ok_or(missing("integer \"pid\""))?;
    // runtime-spec's ContainerProcessState, whose metadata is omitempty.
    let mut message = serde_json::json!({"ociVersion": oci_version, "fds": [SECCOMP_FD_NAME], "pid": pid});
    if let Some(metadata) = metadata.filter(|m| !m.is_empty()) {
        message["metadata"] = metadata.into();
    }
    message["state"] = state;
    serde_json::to_vec(&message).map_err(|source| SeccompError::StateJson { source })
}

/// A connection to the seccomp agent, opened before the filter is loaded so that only
/// `sendmsg` runs between the load and the agent holding the fd.
#[derive(Debug)]
pub struct NotifySocket {
    stream: UnixStream,
    path: PathBuf,
    message: Vec<u8>,
}

impl NotifySocket {
    /// Connects to `listener.path` and prepares the message from the container state JSON.
    pub fn connect(listener: &NotifyListener, state_json: &[u8]) -> Result<Self, SeccompError> {
        let message = process_state_message(listener.metadata.as_deref(), state_json)?;
        let stream = UnixStream::connect(&listener.path).map_err(|source| SeccompError::Connect {
            path: listener.path.clone(),
            source,
        })?;
        Ok(Self {
            stream,
            path: listener.path.clone(),
            message,
        })
    }

    /// Sends the message with `fd` attached (SCM_RIGHTS), then closes the connection.
    pub fn send(self, fd: BorrowedFd<'_>) -> Result<(), SeccompError> {
        let fds = [fd.as_raw_fd()];
        let mut sent = 0;
        while sent < self.message.len() {
            let iov = [std::io::IoSlice::new(&self.message[sent..])];
            // The fd rides with the first bytes; a stream socket may take the rest later.
            let rights = [ControlMessage::ScmRights(&fds)];
            let cmsgs: &[ControlMessage<'_>] = if sent == 0 { &rights } else { &[] };
            // MSG_NOSIGNAL: an agent that hangs up is an error, not a SIGPIPE for the init.
            let send_err = |source| SeccompError::Send {
                path: self.path.clone(),
                source,
            };
            match sendmsg::<()>(self.stream.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
                Err(Errno::EINTR) => {}
                other => sent += other.map_err(send_err)?,
            }
        }
        Ok(())
    }
}

/// Connects to the agent and sends it the fd: [`NotifySocket::connect`] then
/// [`NotifySocket::send`]. For a caller the filter does not apply to (a parent process); the
/// init itself must connect before [`load`].
pub fn send_notify_fd(listener: &NotifyListener, fd: BorrowedFd<'_>, state_json: &[u8]) -> Result<(), SeccompError> {
    NotifySocket::connect(listener, state_json)?.send(fd)
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
