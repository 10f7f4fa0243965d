//! Plans are checked exhaustively in-process. Filters that get loaded run in a child: the test
//! binary re-executes itself for one test with `CHILD_ENV` set, sets no_new_privs (so no root
//! is needed) and loads there, while the parent checks how the child ended.

use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

const CHILD_ENV: &str = "AMBER_SECCOMP_TEST_CHILD";
const DIR_ENV: &str = "AMBER_SECCOMP_TEST_DIR";

const HAVE_254: LibSupport = LibSupport {
    version: ScmpVersion {
        major: 2,
        minor: 5,
        micro: 4,
    },
    api: 6,
};
const HAVE_260: LibSupport = LibSupport {
    version: ScmpVersion {
        major: 2,
        minor: 6,
        micro: 0,
    },
    api: 7,
};
const HAVE_OLD: LibSupport = LibSupport {
    version: ScmpVersion {
        major: 2,
        minor: 3,
        micro: 3,
    },
    api: 2,
};

fn spec(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("a valid linux.seccomp")
}

fn plan_of(v: Value) -> SeccompPlan {
    plan_with(&spec(v), HAVE_254).expect("plan")
}

fn plan_err(v: Value) -> SeccompError {
    plan_with(&spec(v), HAVE_254).expect_err("plan should be refused")
}

/// The field an error names, and its message.
fn field_of(e: &SeccompError) -> String {
    match e {
        SeccompError::ReturnValueRange { field, .. }
        | SeccompError::ArgIndex { field, .. }
        | SeccompError::UnknownArch { field, .. }
        | SeccompError::NotifyWithoutListener { field }
        | SeccompError::NotifyForbiddenSyscall { field, .. }
        | SeccompError::Unsupported { field, .. } => field.clone(),
        SeccompError::NotifyDefault { field } | SeccompError::ListenerNotAbsolute { field, .. } => field.to_string(),
        other => panic!("no field in {other:?}"),
    }
}

fn one_rule(action: &str, errno_ret: Option<u32>) -> Value {
    let mut rule = json!({"names": ["getcwd"], "action": action});
    if let Some(ret) = errno_ret {
        rule["errnoRet"] = json!(ret);
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
           "syscalls": [rule]})
}

#[test]
fn every_action() {
    let cases = [
        ("SCMP_ACT_KILL", None, ScmpAction::KillThread),
        ("SCMP_ACT_KILL_THREAD", None, ScmpAction::KillThread),
        ("SCMP_ACT_KILL_PROCESS", None, ScmpAction::KillProcess),
        ("SCMP_ACT_TRAP", None, ScmpAction::Trap),
        ("SCMP_ACT_ERRNO", None, ScmpAction::Errno(1)),
        ("SCMP_ACT_ERRNO", Some(38), ScmpAction::Errno(38)),
        ("SCMP_ACT_ERRNO", Some(0), ScmpAction::Errno(0)),
        ("SCMP_ACT_TRACE", None, ScmpAction::Trace(1)),
        ("SCMP_ACT_TRACE", Some(7), ScmpAction::Trace(7)),
        ("SCMP_ACT_LOG", None, ScmpAction::Log),
        ("SCMP_ACT_NOTIFY", None, ScmpAction::Notify),
        // errnoRet means nothing to the other actions; runc ignores it too.
        ("SCMP_ACT_TRAP", Some(5), ScmpAction::Trap),
    ];
    for (name, ret, want) in cases {
        let plan = plan_of(one_rule(name, ret));
        assert_eq!(plan.rules.len(), 1, "{name}");
        assert_eq!(plan.rules[0].action, want, "{name} {ret:?}");
        assert_eq!(plan.rules[0].syscall, "getcwd");
        assert_eq!(plan.uses_notify(), want == ScmpAction::Notify);
    }
    // ALLOW on an ALLOW default is the default: no rule.
    assert!(plan_of(one_rule("SCMP_ACT_ALLOW", None)).rules.is_empty());
}

#[test]
fn default_action_and_errno() {
    let plan = |v: Value| plan_of(v).default_action;
    assert_eq!(plan(json!({"defaultAction": "SCMP_ACT_ERRNO"})), ScmpAction::Errno(1));
    assert_eq!(
        plan(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})),
        ScmpAction::Errno(38)
    );
    assert_eq!(
        plan(json!({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 3})),
        ScmpAction::Trace(3)
    );
    assert_eq!(plan(json!({"defaultAction": "SCMP_ACT_KILL"})), ScmpAction::KillThread);
    assert_eq!(plan(json!({"defaultAction": "SCMP_ACT_LOG"})), ScmpAction::Log);
    let e = plan_err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536}));
    assert_eq!(field_of(&e), "linux.seccomp.defaultErrnoRet");
    assert!(e.to_string().contains("65536"), "{e}");
    let e = plan_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_KILL"},
        {"names": ["mkdir"], "action": "SCMP_ACT_TRACE", "errnoRet": 70000}]}));
    assert_eq!(field_of(&e), "linux.seccomp.syscalls[1].errnoRet");
    let e = plan_err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}));
    assert_eq!(field_of(&e), "linux.seccomp.defaultAction");
    assert!(e.to_string().starts_with("linux.seccomp.defaultAction: "), "{e}");
}

#[test]
fn every_operator() {
    let cases = [
        ("SCMP_CMP_NE", ScmpCompareOp::NotEqual),
        ("SCMP_CMP_LT", ScmpCompareOp::Less),
        ("SCMP_CMP_LE", ScmpCompareOp::LessOrEqual),
        ("SCMP_CMP_EQ", ScmpCompareOp::Equal),
        ("SCMP_CMP_GE", ScmpCompareOp::GreaterEqual),
        ("SCMP_CMP_GT", ScmpCompareOp::Greater),
    ];
    for (op, want) in cases {
        let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "valueTwo": 99, "op": op}]}]}));
        let want = ArgCmp {
            index: 0,
            op: want,
            value: 8,
        };
        assert_eq!(plan.rules[0].args, vec![want], "{op}");
    }
    // MASKED_EQ: `value` is the mask, `valueTwo` what the masked argument must equal.
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 1, "value": 255, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    let masked = |index, mask, value| ArgCmp {
        index,
        op: ScmpCompareOp::MaskedEqual(mask),
        value,
    };
    assert_eq!(plan.rules[0].args, vec![masked(0, 2114060288, 0)]);
    assert_eq!(plan.rules[1].args, vec![masked(1, 255, 0)], "valueTwo defaults to 0");
    assert_eq!(
        masked(0, 0xf0, 0x20).to_scmp(),
        ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0xf0), 0x20)
    );
}

#[test]
fn args_distinct_indexes_and_repeated_index() {
    let eq = |index, value| ArgCmp {
        index,
        op: ScmpCompareOp::Equal,
        value,
    };
    // Distinct indexes: one rule, all comparisons must hold.
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["socket", "kill"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 2, "value": 3, "op": "SCMP_CMP_EQ"}]}]}));
    let got: Vec<_> = plan
        .rules
        .iter()
        .map(|r| (r.syscall.as_str(), r.args.clone()))
        .collect();
    assert_eq!(
        got,
        vec![("socket", vec![eq(0, 1), eq(2, 3)]), ("kill", vec![eq(0, 1), eq(2, 3)])]
    );
    // A repeated index: one rule per comparison, so any one matches.
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}));
    let got: Vec<_> = plan.rules.iter().map(|r| r.args.clone()).collect();
    assert_eq!(got, vec![vec![eq(0, 1)], vec![eq(1, 9)], vec![eq(0, 2)]]);
    assert!(plan.rules.iter().all(|r| r.entry == 0));
    let e = plan_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_KILL"},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 5, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(field_of(&e), "linux.seccomp.syscalls[1].args[1].index");
    assert!(e.to_string().contains("index 6"), "{e}");
}

#[test]
fn every_arch() {
    // Every architecture oci-spec decodes, and its libseccomp version when above the baseline.
    let cases = [
        ("SCMP_ARCH_NATIVE", ScmpArch::Native, None),
        ("SCMP_ARCH_X86", ScmpArch::X86, None),
        ("SCMP_ARCH_X86_64", ScmpArch::X8664, None),
        ("SCMP_ARCH_X32", ScmpArch::X32, None),
        ("SCMP_ARCH_ARM", ScmpArch::Arm, None),
        ("SCMP_ARCH_AARCH64", ScmpArch::Aarch64, None),
        ("SCMP_ARCH_MIPS", ScmpArch::Mips, None),
        ("SCMP_ARCH_MIPS64", ScmpArch::Mips64, None),
        ("SCMP_ARCH_MIPS64N32", ScmpArch::Mips64N32, None),
        ("SCMP_ARCH_MIPSEL", ScmpArch::Mipsel, None),
        ("SCMP_ARCH_MIPSEL64", ScmpArch::Mipsel64, None),
        ("SCMP_ARCH_MIPSEL64N32", ScmpArch::Mipsel64N32, None),
        ("SCMP_ARCH_PPC", ScmpArch::Ppc, None),
        ("SCMP_ARCH_PPC64", ScmpArch::Ppc64, None),
        ("SCMP_ARCH_PPC64LE", ScmpArch::Ppc64Le, None),
        ("SCMP_ARCH_S390", ScmpArch::S390, None),
        ("SCMP_ARCH_S390X", ScmpArch::S390X, None),
        ("SCMP_ARCH_PARISC", ScmpArch::Parisc, Some("2.4.0")),
        ("SCMP_ARCH_PARISC64", ScmpArch::Parisc64, Some("2.4.0")),
        ("SCMP_ARCH_RISCV64", ScmpArch::Riscv64, Some("2.5.0")),
        ("SCMP_ARCH_LOONGARCH64", ScmpArch::Loongarch64, Some("2.6.0")),
        ("SCMP_ARCH_M68K", ScmpArch::M68k, Some("2.6.0")),
        ("SCMP_ARCH_SH", ScmpArch::Sh, Some("2.6.0")),
        ("SCMP_ARCH_SHEB", ScmpArch::Sheb, Some("2.6.0")),
    ];
    for (name, want, needs) in cases {
        let arch: Arch = serde_json::from_value(json!(name)).unwrap();
        let got = plan_arches(&[arch], HAVE_260).unwrap();
        let native = want == ScmpArch::Native || want == ScmpArch::native();
        assert_eq!(got, if native { vec![] } else { vec![want] }, "{name}");
        match (needs, plan_arches(&[arch], HAVE_OLD)) {
            (None, Ok(_)) => {}
            (Some(version), Err(e)) => {
                assert_eq!(field_of(&e), "linux.seccomp.architectures[0]");
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains(version), "{msg}");
            }
            (needs, got) => panic!("{name}: needs {needs:?}, got {got:?}"),
        }
    }
    // Native, and the native arch by name, are in every filter already; duplicates go.
    let names: Vec<_> = cases.iter().map(|c| c.0).collect();
    let plan = plan_with(
        &spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": names})),
        HAVE_260,
    );
    let plan = plan.unwrap();
    assert!(!plan.arches.contains(&ScmpArch::Native));
    assert!(!plan.arches.contains(&ScmpArch::native()));
    assert_eq!(plan.arches.len(), names.len() - 2);
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X32", "SCMP_ARCH_X32", "SCMP_ARCH_NATIVE"]}));
    let want: Vec<_> = [ScmpArch::X32]
        .into_iter()
        .filter(|a| *a != ScmpArch::native())
        .collect();
    assert_eq!(plan.arches, want);
    // The second entry is the one a 2.5 library does not know.
    let e = plan_err(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"]}));
    assert_eq!(field_of(&e), "linux.seccomp.architectures[1]");
}

#[test]
fn flags_and_library_support() {
    let flags = |names: &[&str]| spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": names}));
    let all = flags(&KNOWN_FLAGS);
    let want = FilterFlags {
        log: true,
        spec_allow: true,
        tsync: true,
        wait_killable_recv: true,
    };
    assert_eq!(plan_with(&all, HAVE_260).unwrap().flags, want);
    assert_eq!(
        plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW"})).flags,
        FilterFlags::default()
    );
    // A flag the library cannot apply is refused, never dropped: the container would run with
    // less than it asked for.
    let e = plan_with(&all, HAVE_254).unwrap_err();
    assert_eq!(field_of(&e), "linux.seccomp.flags");
    let msg = e.to_string();
    assert!(
        msg.contains("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV") && msg.contains(">= 2.6.0"),
        "{msg}"
    );
    assert!(msg.contains("this host has libseccomp 2.5.4 at API level 6"), "{msg}");
    assert!(plan_with(&flags(&["SECCOMP_FILTER_FLAG_TSYNC"]), HAVE_OLD).is_ok());
    let e = plan_with(
        &flags(&["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]),
        HAVE_OLD,
    )
    .unwrap_err();
    assert!(e.to_string().contains("SECCOMP_FILTER_FLAG_LOG"), "{e}");
    let e = plan_with(&flags(&["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]), HAVE_OLD).unwrap_err();
    assert!(e.to_string().contains("SECCOMP_FILTER_FLAG_SPEC_ALLOW"), "{e}");
    // The real library decides for plan() and build(): on 2.5 both refuse WAIT_KILLABLE_RECV.
    let have = LibSupport::probe();
    let waitkill = flags(&["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
    assert_eq!(plan(&waitkill).is_ok(), have.has(7, (2, 6, 0)));
    if !have.has(7, (2, 6, 0)) {
        let plan = plan_with(&waitkill, HAVE_260).unwrap();
        assert!(matches!(build(&plan), Err(SeccompError::Unsupported { .. })));
    }
    // Actions beyond the baseline are checked the same way.
    let e = plan_with(&spec(one_rule("SCMP_ACT_KILL_PROCESS", None)), HAVE_OLD).unwrap_err();
    assert_eq!(field_of(&e), "linux.seccomp.syscalls[0].action");
    let e = plan_with(&spec(json!({"defaultAction": "SCMP_ACT_LOG"})), HAVE_OLD).unwrap_err();
    assert_eq!(field_of(&e), "linux.seccomp.defaultAction");
    let notify = LibSupport { api: 5, ..HAVE_254 };
    let e = plan_with(&spec(one_rule("SCMP_ACT_NOTIFY", None)), notify).unwrap_err();
    assert!(e.to_string().contains("SCMP_ACT_NOTIFY"), "{e}");
    assert_eq!(HAVE_OLD.supported_flags(), vec!["SECCOMP_FILTER_FLAG_TSYNC"]);
    assert_eq!(HAVE_254.supported_flags(), KNOWN_FLAGS[..3].to_vec());
    assert_eq!(HAVE_260.supported_flags(), KNOWN_FLAGS.to_vec());
}

#[test]
fn skip_unknown_names_and_default_action_rules() {
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "no_such_syscall", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["no_such_syscall", "also_unknown"], "action": "SCMP_ACT_ALLOW"},
        // The default action (ERRNO with EPERM): skipped; with another errno it is a rule.
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}));
    assert_eq!(plan.skipped, vec!["no_such_syscall", "also_unknown"]);
    let got: Vec<_> = plan.rules.iter().map(|r| (r.entry, r.syscall.as_str())).collect();
    assert_eq!(got, vec![(0, "read"), (0, "write"), (4, "chdir")]);
    // SCMP_ACT_KILL is KILL_THREAD, so it equals a KILL_THREAD default.
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_KILL_THREAD", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_KILL"}]}));
    assert!(plan.rules.is_empty());
    // A name that exists only on other arches resolves to a pseudo-syscall: kept, as in runc.
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["socketcall", "ipc"], "action": "SCMP_ACT_ERRNO"}]}));
    assert!(plan.skipped.is_empty());
    assert!(build(&plan).is_ok());
}

#[test]
fn notify_rules() {
    let with = |extra: Value| {
        let mut v = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_KILL"},
            {"names": ["mount", "no_such_syscall"], "action": "SCMP_ACT_NOTIFY"}]});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let plan = plan_of(with(
        json!({"listenerPath": "/run/agent.sock", "listenerMetadata": "m1"}),
    ));
    let listener = NotifyListener {
        path: "/run/agent.sock".into(),
        metadata: Some("m1".into()),
    };
    assert_eq!(plan.notify, Some(listener));
    let e = plan_err(with(json!({})));
    assert_eq!(field_of(&e), "linux.seccomp.syscalls[1].action");
    let e = plan_err(with(json!({"listenerPath": "agent.sock"})));
    assert_eq!(field_of(&e), "linux.seccomp.listenerPath");
    for forbidden in NOTIFY_FORBIDDEN {
        let e = plan_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a",
            "syscalls": [{"names": ["mount", forbidden], "action": "SCMP_ACT_NOTIFY"}]}));
        assert_eq!(field_of(&e), "linux.seccomp.syscalls[0].names[1]");
        assert!(e.to_string().contains(forbidden), "{e}");
    }
    // A listener with no NOTIFY rule left (unknown names only, or none at all) is not contacted.
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a",
        "syscalls": [{"names": ["no_such_syscall"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert_eq!(plan.notify, None);
    assert_eq!(
        plan_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a"})).notify,
        None
    );
}

/// The PFC text of a built filter, libseccomp's readable dump of what it would load.
fn pfc(plan: &SeccompPlan) -> String {
    let mut file = tempfile::tempfile().unwrap();
    build(plan).unwrap().export_pfc(&file).unwrap();
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn build_exports_the_planned_filter() {
    let plan = plan_of(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 5, "args": [
                {"index": 1, "value": 9, "op": "SCMP_CMP_GT"}]},
            {"names": ["clone"], "action": "SCMP_ACT_KILL_PROCESS", "args": [
                {"index": 0, "value": 268435456u64, "valueTwo": 268435456u64,
                 "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    let text = pfc(&plan);
    for want in [
        "action ERRNO(38)",
        "action ALLOW",
        "action TRACE(5)",
        "action KILL_PROCESS",
        "# filter for syscall \"read\"",
        "# filter for syscall \"kill\"",
        "# filter for arch x86 (1073741827)",
        "# filter for arch aarch64",
        "# filter for arch x32",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    let mut file = tempfile::tempfile().unwrap();
    build(&plan).unwrap().export_bpf(&file).unwrap();
    let len = file.seek(std::io::SeekFrom::End(0)).unwrap();
    // Whole `struct sock_filter` instructions, of 8 bytes each.
    assert!(len > 0 && len.is_multiple_of(8), "{len} bytes of BPF");
}

#[test]
fn process_state_message_is_runcs() {
    let state = br#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":4242,"bundle":"/b"}"#;
    let msg: Value = serde_json::from_slice(&process_state_message(Some("m1"), state).unwrap()).unwrap();
    let want = json!({"ociVersion": "1.2.0", "fds": ["seccompFd"], "pid": 4242,
        "metadata": "m1", "state": serde_json::from_slice::<Value>(state).unwrap()});
    assert_eq!(msg, want);
    for metadata in [None, Some("")] {
        let msg: Value = serde_json::from_slice(&process_state_message(metadata, state).unwrap()).unwrap();
        assert!(msg.get("metadata").is_none());
    }
    let e = process_state_message(None, br#"{"ociVersion":"1.2.0"}"#).unwrap_err();
    assert!(e.to_string().contains("\"pid\""), "{e}");
    assert!(matches!(
        process_state_message(None, b"{"),
        Err(SeccompError::StateJson { .. })
    ));
}

// ---- loaded filters, in a re-executed child --------------------------------------------------

/// True in the re-executed child that runs `name`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

/// Re-executes this test binary for the single test `name`, with `CHILD_ENV` set.
fn spawn_child(name: &str, dir: &Path) -> Child {
    // Test names leave out the crate: `security::seccomp::tests::NAME`.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{module}::{name}"), "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, name)
        .env(DIR_ENV, dir)
        // Captured: the child's own harness lines ("test result: ...") must not read as this run's.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// How the child ended, and what it printed (for the assertion message).
struct Ended {
    status: ExitStatus,
    output: String,
}

fn finish(child: Child) -> Ended {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    Ended {
        status: out.status,
        output: format!("{stdout}{stderr}"),
    }
}

fn run_child(name: &str) -> Ended {
    let dir = tempfile::tempdir().unwrap();
    finish(spawn_child(name, dir.path()))
}

/// In the child: no core files from SIGSYS, and no_new_privs so that an unprivileged load works.
fn child_setup() -> std::path::PathBuf {
    crate::sys::setrlimit(libc::RLIMIT_CORE as i32, 0, 0).unwrap();
    nix::sys::prctl::set_no_new_privs().unwrap();
    std::env::var_os(DIR_ENV).unwrap().into()
}

fn load_json(v: Value) -> Option<OwnedFd> {
    load(&plan(&spec(v)).unwrap()).unwrap()
}

fn errno_of(r: nix::Result<()>) -> Option<Errno> {
    r.err()
}

#[test]
fn loaded_errno_for_getcwd_and_mkdir() {
    if !is_child("loaded_errno_for_getcwd_and_mkdir") {
        let child = run_child("loaded_errno_for_getcwd_and_mkdir");
        assert!(child.status.success(), "{:?}:\n{}", child.status, child.output);
        return;
    }
    let dir = child_setup();
    // Every flag, and two more arches, load on this host too.
    let fd = load_json(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                  "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["getcwd", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}));
    assert!(fd.is_none());
    let cwd = std::env::current_dir().unwrap_err();
    assert_eq!(cwd.raw_os_error(), Some(libc::ENOSYS));
    let mkdir = std::fs::create_dir(dir.join("d")).unwrap_err();
    assert_eq!(mkdir.raw_os_error(), Some(libc::ENOSYS));
    // Everything else still works.
    std::fs::write(dir.join("f"), b"x").unwrap();
}

#[test]
fn loaded_kill_process_is_sigsys() {
    if !is_child("loaded_kill_process_is_sigsys") {
        let child = run_child("loaded_kill_process_is_sigsys");
        assert_eq!(child.status.signal(), Some(libc::SIGSYS), "{}", child.output);
        return;
    }
    child_setup();
    load_json(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}));
    let _ = nix::unistd::getppid();
    unreachable!("getppid should have killed the process");
}

#[test]
fn loaded_trap_is_sigsys() {
    if !is_child("loaded_trap_is_sigsys") {
        let child = run_child("loaded_trap_is_sigsys");
        assert_eq!(child.status.signal(), Some(libc::SIGSYS), "{}", child.output);
        return;
    }
    child_setup();
    load_json(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]}));
    let _ = nix::unistd::getppid();
    unreachable!("getppid should have raised SIGSYS");
}

#[test]
fn loaded_argument_comparisons() {
    if !is_child("loaded_argument_comparisons") {
        let child = run_child("loaded_argument_comparisons");
        assert!(child.status.success(), "{:?}:\n{}", child.status, child.output);
        return;
    }
    child_setup();
    load_json(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        // (pid & 0xffff0000) == 0x7ff00000
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV, "args": [
            {"index": 0, "value": 0xffff_0000u64, "valueTwo": 0x7ff0_0000u64,
             "op": "SCMP_CMP_MASKED_EQ"}]},
        // pid == 0x7e000001 && sig == 0
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EDOM, "args": [
            {"index": 0, "value": 0x7e00_0001u64, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
        // pid == 0x7d000001 || pid == 0x7d000002
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ERANGE, "args": [
            {"index": 0, "value": 0x7d00_0001u64, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 0x7d00_0002u64, "op": "SCMP_CMP_EQ"}]}]}));
    // No process has such pids, so an unfiltered kill says ESRCH.
    let kill = |pid: i32, sig| errno_of(nix::sys::signal::kill(Pid::from_raw(pid), sig));
    use nix::sys::signal::Signal::SIGCONT;
    use nix::unistd::Pid;
    assert_eq!(kill(0x7ff0_1234, None), Some(Errno::EXDEV));
    assert_eq!(kill(0x7ff0_0000, None), Some(Errno::EXDEV));
    assert_eq!(kill(0x7fe0_1234, None), Some(Errno::ESRCH));
    assert_eq!(kill(0x7e00_0001, None), Some(Errno::EDOM));
    assert_eq!(kill(0x7e00_0001, Some(SIGCONT)), Some(Errno::ESRCH));
    assert_eq!(kill(0x7d00_0001, None), Some(Errno::ERANGE));
    assert_eq!(kill(0x7d00_0002, Some(SIGCONT)), Some(Errno::ERANGE));
    assert_eq!(kill(0x7d00_0003, None), Some(Errno::ESRCH));
}

/// Accepts one connection, failing if the child exits first or nothing comes within 30s.
fn accept(listener: &UnixListener, child: &mut Child) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut output = String::new();
            child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut output).unwrap();
            panic!("child ended before connecting: {status:?}:\n{output}");
        }
        assert!(Instant::now() < deadline, "child never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads the agent's message and the fd that came with it.
fn receive(stream: &mut std::os::unix::net::UnixStream) -> (Value, OwnedFd) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (n, raw) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
        let mut fds = msg.cmsgs().unwrap().filter_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => Some(fds),
            _ => None,
        });
        let raw = fds.next().expect("SCM_RIGHTS").into_iter().next().unwrap();
        (msg.bytes, raw)
    };
    let fd = crate::sys::own_received_fd(raw);
    buf.truncate(n);
    stream.read_to_end(&mut buf).unwrap();
    (serde_json::from_slice(&buf).unwrap(), fd)
}

#[test]
fn loaded_notify_hands_the_fd_to_the_agent() {
    const NAME: &str = "loaded_notify_hands_the_fd_to_the_agent";
    if is_child(NAME) {
        return notify_child();
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join("agent.sock")).unwrap();
    let mut child = spawn_child(NAME, dir.path());
    let mut stream = accept(&listener, &mut child);
    let (msg, fd) = receive(&mut stream);
    assert_eq!(msg["fds"], json!(["seccompFd"]));
    assert_eq!(msg["metadata"], json!("agent-metadata"));
    assert_eq!(msg["pid"], json!(child.id()));
    assert_eq!(msg["ociVersion"], json!("1.2.0"));
    assert_eq!(msg["state"]["id"], json!("notify-test"));

    // The child is (or will be) parked in mkdir until we answer.
    let mut polled = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
    let ready = nix::poll::poll(&mut polled, 30_000u16).unwrap();
    assert_eq!(ready, 1, "no notification within 30s");
    let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
    // The pid in the request is the thread's (the child runs the test in a thread).
    let status = std::fs::read_to_string(format!("/proc/{}/status", req.pid)).unwrap();
    assert!(status.contains(&format!("\nTgid:\t{}\n", child.id())), "{status}");
    assert_eq!(req.data.syscall, ScmpSyscall::from_name("mkdir").unwrap());
    let flags = libseccomp::ScmpNotifRespFlags::empty();
    libseccomp::ScmpNotifResp::new_error(req.id, -libc::ENOMEDIUM, flags)
        .respond(fd.as_raw_fd())
        .unwrap();
    let child = finish(child);
    assert!(child.status.success(), "{:?}:\n{}", child.status, child.output);
}

fn notify_child() {
    let dir = child_setup();
    let socket = dir.join("agent.sock");
    let plan = plan(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket, "listenerMetadata": "agent-metadata",
        // TSYNC with a listener needs TSYNC_ESRCH (API level 6): exercise it.
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})))
    .unwrap();
    let state = json!({"ociVersion": "1.2.0", "id": "notify-test", "status": "creating",
        "pid": std::process::id(), "bundle": "/bundle"});
    // Connect before loading, as the init must.
    let agent = NotifySocket::connect(plan.notify.as_ref().unwrap(), state.to_string().as_bytes()).unwrap();
    let fd = load(&plan).unwrap().expect("a notify fd");
    agent.send(fd.as_fd()).unwrap();
    drop(fd);
    let err = std::fs::create_dir(dir.join("blocked")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOMEDIUM));
    assert!(!dir.join("blocked").exists());
}
