//! The device filter: golden programs, an interpreter for the handful of opcodes the compiler
//! emits (checked against a plain reference reading of the rules on many inputs), a verifier-like
//! structural check, and, as root, the real kernel: its verifier, and a child process that gets
//! EPERM from a device the filter denies.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder};

use super::*;

// ---- helpers: disassembler, structure check, interpreter, reference -----------------------------

/// The inverse of Insn::encode.
fn decode(raw: u64) -> Insn {
    let b = raw.to_ne_bytes();
    let (dst, src) = if cfg!(target_endian = "little") {
        (b[1] & 0xf, b[1] >> 4)
    } else {
        (b[1] >> 4, b[1] & 0xf)
    };
    Insn {
        code: b[0],
        dst,
        src,
        off: i16::from_ne_bytes([b[2], b[3]]),
        imm: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    }
}

/// Whether `rule` names this device (`kind` is BPF_DEVCG_DEV_*).
fn names(rule: &DeviceRule, kind: u32, major: u32, minor: u32) -> bool {
    let kind_ok = match rule.kind {
        DeviceKind::All => true,
        DeviceKind::Block => kind == DEV_BLOCK,
        DeviceKind::Char => kind == DEV_CHAR,
    };
    kind_ok && rule.major.is_none_or(|m| m == major) && rule.minor.is_none_or(|m| m == minor)
}

fn dis(i: &Insn) -> String {
    match i.code {
        LDX_MEM_W => format!("r{} = *(u32 *)(r{} + {})", i.dst, i.src, i.off),
        ALU32_AND_K => format!("w{} &= {:#x}", i.dst, i.imm as u32),
        ALU32_RSH_K => format!("w{} >>= {}", i.dst, i.imm),
        ALU32_MOV_K => format!("w{} = {}", i.dst, i.imm),
        ALU32_MOV_X => format!("w{} = w{}", i.dst, i.src),
        JEQ_K => format!("if r{} == {} goto +{}", i.dst, i.imm, i.off),
        JNE_K => format!("if r{} != {} goto +{}", i.dst, i.imm, i.off),
        JNE_X => format!("if r{} != r{} goto +{}", i.dst, i.src, i.off),
        EXIT => "exit".to_string(),
        c => panic!("unexpected opcode {c:#x}"),
    }
}

fn listing(prog: &[Insn]) -> Vec<String> {
    prog.iter().map(dis).collect()
}

fn is_jump(code: u8) -> bool {
    matches!(code, JEQ_K | JNE_K | JNE_X)
}

/// What the kernel's check_cfg refuses: jumps out of the program (or backwards), code that falls
/// off the end, unreachable instructions.
fn check_structure(prog: &[Insn]) -> Result<(), String> {
    let n = prog.len();
    let mut reachable = vec![false; n];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        if pc >= n {
            return Err(format!("control falls off the end at {pc}"));
        }
        if std::mem::replace(&mut reachable[pc], true) {
            continue;
        }
        let i = &prog[pc];
        if i.code == EXIT {
            continue;
        }
        if is_jump(i.code) {
            if i.off < 0 {
                return Err(format!("backward jump at {pc}"));
            }
            let target = pc + 1 + i.off as usize;
            if target >= n {
                return Err(format!("jump at {pc} to {target}, past the end ({n})"));
            }
            todo.push(target);
        }
        todo.push(pc + 1);
    }
    match reachable.iter().position(|r| !r) {
        Some(pc) => Err(format!("unreachable instruction {pc}: {}", dis(&prog[pc]))),
        None => Ok(()),
    }
}

const CTX: u64 = 0xc0de_0000;

/// Run the encoded program on one context with the kernel's semantics for these opcodes: 32-bit
/// ALU results are zero-extended, jumps compare all 64 bits with imm sign-extended. Reading a
/// register nothing wrote is an error, as for the verifier.
fn run(prog: &[u64], access_type: u32, major: u32, minor: u32) -> Result<u64, String> {
    let mut reg: [Option<u64>; 11] = [None; 11];
    reg[1] = Some(CTX);
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let raw = *prog.get(pc).ok_or(format!("pc {pc} out of the program"))?;
        let i = decode(raw);
        let (d, s) = (i.dst as usize, i.src as usize);
        let read = |reg: &[Option<u64>; 11], r: usize| {
            reg.get(r)
                .copied()
                .flatten()
                .ok_or(format!("pc {pc}: r{r} read before written"))
        };
        let value = match i.code {
            LDX_MEM_W => {
                if read(&reg, s)? != CTX {
                    return Err(format!("pc {pc}: load from r{s}, which is not the context"));
                }
                match i.off {
                    0 => access_type,
                    4 => major,
                    8 => minor,
                    off => return Err(format!("pc {pc}: context offset {off}")),
                }
            }
            ALU32_AND_K => read(&reg, d)? as u32 & i.imm as u32,
            ALU32_RSH_K => (read(&reg, d)? as u32) >> (i.imm as u32 & 31),
            ALU32_MOV_K => i.imm as u32,
            ALU32_MOV_X => read(&reg, s)? as u32,
            JEQ_K | JNE_K | JNE_X => {
                let rhs = if i.code == JNE_X {
                    read(&reg, s)?
                } else {
                    i.imm as i64 as u64
                };
                let equal = read(&reg, d)? == rhs;
                pc += 1;
                if equal == (i.code == JEQ_K) {
                    pc += i.off as usize;
                }
                continue;
            }
            EXIT => return read(&reg, 0),
            c => return Err(format!("pc {pc}: unexpected opcode {c:#x}")),
        };
        // Loads and 32-bit ALU results are zero-extended into the 64-bit register.
        reg[d] = Some(u64::from(value));
        pc += 1;
    }
    Err("did not finish".to_string())
}

/// The rules read literally, as the module doc describes them.
fn reference(rules: &[DeviceRule], kind: u32, major: u32, minor: u32, access: u32) -> bool {
    let start = rules.iter().rposition(|r| r.kind == DeviceKind::All);
    let default = start.is_some_and(|i| rules[i].allow);
    let live = &rules[start.map_or(0, |i| i + 1)..];
    let names = |r: &&DeviceRule| names(r, kind, major, minor);
    if access == 0 {
        return default || live.iter().filter(names).any(|r| r.allow);
    }
    (0..16).filter(|b| access & (1 << b) != 0).all(|b| {
        live.iter()
            .rev()
            .filter(names)
            .find(|r| r.access & (1 << b) != 0)
            .map_or(default, |r| r.allow)
    })
}

/// Every (type, major, minor, access) built from the numbers the rules use, their neighbours and
/// a few extremes, checked against the reference.
fn check_against_reference(rules: &[DeviceRule]) {
    let prog = build_program(rules);
    check_structure(&prog).unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", rules, listing(&prog).join("\n")));
    let raw: Vec<u64> = prog.iter().map(Insn::encode).collect();
    let mut numbers = BTreeSet::from([0u32, 1, 3, 0x7fff_ffff, 0x8000_0000, u32::MAX]);
    for r in rules {
        for n in [r.major, r.minor].into_iter().flatten() {
            numbers.extend([n, n.wrapping_add(1), n.wrapping_sub(1)]);
        }
    }
    for kind in 0..4 {
        for &major in &numbers {
            for &minor in &numbers {
                for access in 0..16 {
                    let got = run(&raw, (access << 16) | kind, major, minor).unwrap();
                    let want = reference(rules, kind, major, minor, access);
                    assert_eq!(
                        got,
                        u64::from(want),
                        "type {kind} {major}:{minor} access {access:#b}\nrules {rules:#?}\nprogram:\n{}",
                        listing(&prog).join("\n")
                    );
                }
            }
        }
    }
}

fn rule(text: &str, allow: bool) -> DeviceRule {
    parse_rule(text, allow).unwrap()
}

fn allow(text: &str) -> DeviceRule {
    rule(text, true)
}

fn deny(text: &str) -> DeviceRule {
    rule(text, false)
}

/// xorshift64*: reproducible pseudo-random rule sets without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_rules(rng: &mut Rng) -> Vec<DeviceRule> {
    let len = rng.below(9) as usize;
    (0..len)
        .map(|_| {
            let number = |rng: &mut Rng| match rng.below(5) {
                0 => None,
                1 => Some(0x8000_0000 + rng.below(2) as u32),
                _ => Some(rng.below(3) as u32 + 1),
            };
            let kind = match rng.below(9) {
                0 => DeviceKind::All,
                1..=4 => DeviceKind::Char,
                _ => DeviceKind::Block,
            };
            let r = DeviceRule {
                allow: rng.below(2) == 0,
                kind,
                major: number(rng),
                minor: number(rng),
                access: rng.below(7) as u32 + 1,
            };
            if kind == DeviceKind::All {
                // What parse_rule makes of any `a` rule.
                DeviceRule {
                    major: None,
                    minor: None,
                    access: ACC_ALL,
                    ..r
                }
            } else {
                r
            }
        })
        .collect()
}

// ---- encoding and parsing ------------------------------------------------------------------------

#[test]
#[cfg(target_endian = "little")]
fn encoding_is_the_kernels() {
    // r2 = *(u32 *)(r1 + 0): code 0x61, src 1 in the high nibble, dst 2 in the low one.
    let ld = insn(LDX_MEM_W, 2, 1, 0, 0);
    assert_eq!(ld.encode(), 0x0000_0000_0000_1261);
    // if r4 != 1 goto +5
    let jne = insn(JNE_K, 4, 0, 5, 1);
    assert_eq!(
        jne.encode().to_le_bytes(),
        [0x55, 0x04, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00]
    );
    // w3 &= ~4
    let and = insn(ALU32_AND_K, 3, 0, 0, !4);
    assert_eq!(and.encode().to_le_bytes(), [0x54, 0x03, 0, 0, 0xfb, 0xff, 0xff, 0xff]);
    for i in [ld, jne, and, insn(JNE_X, 5, 1, -3, 0)] {
        assert_eq!(decode(i.encode()), i);
    }
}

#[test]
fn parse_rules() {
    assert_eq!(
        allow("c 1:3 rw"),
        DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major: Some(1),
            minor: Some(3),
            access: ACC_READ | ACC_WRITE,
        }
    );
    assert_eq!(deny("b *:7 m").major, None);
    assert_eq!(deny("b *:7 m").access, ACC_MKNOD);
    assert_eq!(allow("c 4294967295:0 r").major, Some(u32::MAX));
    // `a` is every device with every access, as the v1 kernel reads it.
    assert_eq!(
        deny("a 1:3 r"),
        DeviceRule {
            allow: false,
            kind: DeviceKind::All,
            major: None,
            minor: None,
            access: ACC_ALL,
        }
    );
    for bad in [
        "",
        "x 1:3 r",
        "c 1:3",
        "c 1-3 r",
        "c 1:3 rx",
        "c 4294967296:0 r",
        "c -1:0 r",
        "c 1:3 r w",
    ] {
        let err = parse_rule(bad, true).unwrap_err();
        assert!(matches!(err, CgroupError::DeviceRule { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn rule_list_is_v1s() {
    let fuse = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::U)
        .major(10)
        .minor(229)
        .access("rw")
        .build()
        .unwrap();
    let rules = device_rules(&[fuse]).unwrap();
    assert_eq!(rules[0], deny("a *:* rwm"), "deny-all first");
    assert_eq!(rules[1], allow("c 10:229 rw"), "'u' is a character device");
    let defaults: Vec<_> = default_device_rules().iter().map(|t| allow(t)).collect();
    assert_eq!(rules[2..], defaults[..], "defaults last");

    let bad = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(1i64 << 32)
        .build()
        .unwrap();
    assert!(matches!(device_rules(&[bad]), Err(CgroupError::DeviceRule { .. })));
    let fifo = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::P)
        .build()
        .unwrap();
    assert!(matches!(device_rules(&[fifo]), Err(CgroupError::DeviceRule { .. })));
}

// ---- golden programs -----------------------------------------------------------------------------

const PROLOGUE: [&str; 6] = [
    "r2 = *(u32 *)(r1 + 0)",
    "w2 &= 0xffff",
    "r3 = *(u32 *)(r1 + 0)",
    "w3 >>= 16",
    "r4 = *(u32 *)(r1 + 4)",
    "r5 = *(u32 *)(r1 + 8)",
];

fn golden(prog: &[Insn], body: &[&str]) {
    let want: Vec<String> = PROLOGUE.iter().chain(body).map(|s| s.to_string()).collect();
    assert_eq!(listing(prog), want, "\n{}", listing(prog).join("\n"));
}

#[test]
fn golden_empty_config() {
    // deny-all, then the eleven defaults, last first: the deny-all is the final "w0 = 0".
    let allow_rwm = |kind: u32, major: u32, minor: Option<u32>| {
        let mut block = vec![format!("if r2 != {kind} goto +{}", if minor.is_some() { 6 } else { 5 })];
        block.push(format!(
            "if r4 != {major} goto +{}",
            if minor.is_some() { 5 } else { 4 }
        ));
        if let Some(m) = minor {
            block.push(format!("if r5 != {m} goto +4"));
        }
        block.extend(["w3 &= 0xfffffff8", "if r3 != 0 goto +2", "w0 = 1", "exit"].map(String::from));
        block
    };
    let mut body = Vec::new();
    let numbered = [
        (10, Some(200)),
        (5, Some(2)),
        (136, None),
        (1, Some(9)),
        (1, Some(5)),
        (5, Some(0)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(3)),
    ];
    for (major, minor) in numbered {
        body.extend(allow_rwm(2, major, minor));
    }
    // "b *:* m", then "c *:* m": only the type is tested, and only mknod is cleared.
    for kind in [1, 2] {
        body.extend([
            format!("if r2 != {kind} goto +4"),
            "w3 &= 0xfffffffe".into(),
            "if r3 != 0 goto +2".into(),
            "w0 = 1".into(),
            "exit".into(),
        ]);
    }
    body.extend(["w0 = 0".to_string(), "exit".to_string()]);
    let prog = build_device_filter(&[]).unwrap();
    let body: Vec<&str> = body.iter().map(String::as_str).collect();
    golden(&prog, &body);
}

#[test]
fn golden_allow_all_but_null_writes() {
    let prog = build_program(&[deny("a"), allow("a"), deny("c 1:3 w")]);
    golden(
        &prog,
        &[
            "if r2 != 2 goto +7",
            "if r4 != 1 goto +6",
            "if r5 != 3 goto +5",
            "w1 = w3",
            "w1 &= 0x4",
            "if r1 == 0 goto +2",
            "w0 = 0",
            "exit",
            "w0 = 1",
            "exit",
        ],
    );
}

#[test]
fn golden_big_major_and_dead_rules() {
    // Everything before the last `a` is dead, and so is the deny right after a deny-all.
    let prog = build_program(&[allow("c 1:1 r"), deny("a"), deny("b 8:0 w"), allow("b 2147483648:* rw")]);
    golden(
        &prog,
        &[
            "if r2 != 1 goto +6",
            "w1 = -2147483648",
            "if r4 != r1 goto +4",
            "w3 &= 0xfffffff9",
            "if r3 != 0 goto +2",
            "w0 = 1",
            "exit",
            "w0 = 0",
            "exit",
        ],
    );
    // Only `a` rules: nothing but the verdict.
    golden(&build_program(&[allow("a")]), &["w0 = 1", "exit"]);
    golden(&build_program(&[]), &["w0 = 0", "exit"]);
}

// ---- decisions -----------------------------------------------------------------------------------

#[test]
fn decisions_of_the_default_list() {
    let rules = device_rules(&[]).unwrap();
    let prog: Vec<u64> = build_program(&rules).iter().map(Insn::encode).collect();
    let ask = |kind, major, minor, access| run(&prog, (access << 16) | kind, major, minor).unwrap() == 1;
    let rw = ACC_READ | ACC_WRITE;
    assert!(ask(DEV_CHAR, 1, 3, rw), "/dev/null rw");
    assert!(ask(DEV_CHAR, 136, 7, rw), "/dev/pts/7");
    assert!(ask(DEV_CHAR, 10, 200, ACC_ALL), "/dev/net/tun");
    assert!(ask(DEV_CHAR, 1, 11, ACC_MKNOD), "mknod of any char device");
    assert!(ask(DEV_BLOCK, 8, 0, ACC_MKNOD), "mknod of any block device");
    assert!(!ask(DEV_CHAR, 1, 11, ACC_READ), "/dev/kmsg");
    assert!(!ask(DEV_BLOCK, 8, 0, ACC_READ), "/dev/sda");
    assert!(!ask(DEV_CHAR, 1, 11, ACC_READ | ACC_MKNOD), "mknod+read needs read");
    assert!(!ask(DEV_CHAR, 10, 229, rw), "/dev/fuse");
}

#[test]
fn later_rules_win_per_bit() {
    let rules = [
        deny("a"),
        allow("c 1:3 rwm"),
        deny("c 1:3 w"),
        allow("c 1:* r"),
        allow("c *:5 w"),
    ];
    let prog: Vec<u64> = build_program(&rules).iter().map(Insn::encode).collect();
    let ask = |major, minor, access| run(&prog, (access << 16) | DEV_CHAR, major, minor).unwrap() == 1;
    assert!(ask(1, 3, ACC_READ));
    assert!(!ask(1, 3, ACC_WRITE), "the deny of w after the rwm allow wins");
    assert!(!ask(1, 3, ACC_READ | ACC_WRITE));
    assert!(ask(1, 3, ACC_MKNOD));
    assert!(ask(1, 5, ACC_READ | ACC_WRITE), "r from one rule, w from another");
    assert!(!ask(2, 5, ACC_READ));
    check_against_reference(&rules);
}

#[test]
fn decisions_match_the_reference() {
    let fixed: Vec<Vec<DeviceRule>> = vec![
        vec![],
        device_rules(&[]).unwrap(),
        vec![allow("a")],
        vec![deny("a"), allow("c 1:3 r"), allow("c 1:3 w"), deny("c *:3 r")],
        vec![allow("a"), deny("b *:* rwm"), allow("b 8:0 r")],
        vec![allow("c 4294967295:2147483648 rw"), deny("c 2147483647:* w")],
        vec![
            deny("c 1:3 w"),
            allow("c 1:3 rw"),
            deny("a"),
            allow("c 5:* m"),
            deny("c 5:1 m"),
        ],
    ];
    for rules in &fixed {
        check_against_reference(rules);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        check_against_reference(&random_rules(&mut rng));
    }
}

#[test]
fn structure_of_large_programs() {
    let mut rng = Rng(42);
    let rules: Vec<DeviceRule> = (0..50).flat_map(|_| random_rules(&mut rng)).collect();
    let prog = build_program(&rules);
    check_structure(&prog).unwrap();
    assert_eq!(prog.last().map(|i| i.code), Some(EXIT));
    // Each block is at most 10 instructions: 3 tests, 2 more for numbers from 2^31, 5 for the verdict.
    assert!(prog.len() <= PROLOGUE.len() + 10 * rules.len() + 2);
    for (pc, i) in prog.iter().enumerate() {
        if is_jump(i.code) {
            assert!((1..=9).contains(&i.off), "jump at {pc} by {}", i.off);
        }
    }
}

#[test]
fn only_cgroup2_directories_get_a_filter() {
    // The manager's unit tests run on tempdir trees: nothing to attach to, and no error.
    let tmp = tempfile::tempdir().unwrap();
    apply_device_filter(tmp.path(), &build_device_filter(&[]).unwrap()).unwrap();
    let missing = tmp.path().join("gone");
    let err = apply_device_filter(&missing, &[]).unwrap_err();
    assert!(
        matches!(&err, DeviceFilterError::Open { path, .. } if *path == missing),
        "{err}"
    );
}

// ---- the real kernel (root) ----------------------------------------------------------------------

fn skip_reason() -> Option<&'static str> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root");
    }
    None
}

/// The host's cgroup2 mount (/sys/fs/cgroup on v2, /sys/fs/cgroup/unified on hybrid).
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    super::super::mountinfo::parse(&text, Path::new("/")).ok()?.v2
}

fn load_or_log(prog: &[Insn]) -> Result<OwnedFd, String> {
    let raw: Vec<u64> = prog.iter().map(Insn::encode).collect();
    let mut log = vec![0u8; VERIFIER_LOG_BYTES];
    bpf::prog_load(bpf::BPF_PROG_TYPE_CGROUP_DEVICE, &raw, LICENSE, PROG_NAME, &mut log).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(0);
        format!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&log[..end]),
            listing(prog).join("\n")
        )
    })
}

#[test]
fn kernel_verifier_accepts_the_programs() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping kernel_verifier_accepts_the_programs: {why}");
        return;
    }
    let mut sets = vec![
        device_rules(&[]).unwrap(),
        vec![],
        vec![allow("a")],
        vec![allow("a"), deny("c 1:3 w")],
        vec![allow("c 4294967295:2147483648 rw"), deny("c 2147483647:* w")],
    ];
    let mut rng = Rng(7);
    sets.extend((0..30).map(|_| random_rules(&mut rng)));
    sets.push((0..60).flat_map(|_| random_rules(&mut rng)).collect());
    for rules in &sets {
        let fd = load_or_log(&build_program(rules)).unwrap_or_else(|e| panic!("{rules:?}: {e}"));
        let info = bpf::prog_info(fd.as_fd()).unwrap();
        assert_eq!(info.prog_type, bpf::BPF_PROG_TYPE_CGROUP_DEVICE);
        assert_eq!(info.name, PROG_NAME);
    }
}

#[test]
fn kernel_verifier_refusal_is_reported() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping kernel_verifier_refusal_is_reported: {why}");
        return;
    }
    // exit without setting r0.
    let err = load(&[insn(EXIT, 0, 0, 0, 0)], Path::new("/sys/fs/cgroup/x")).unwrap_err();
    let DeviceFilterError::Load { log, insns: 1, .. } = &err else {
        panic!("{err}");
    };
    assert!(log.contains("R0"), "{log}");
    assert!(err.to_string().contains("verifier: "), "{err}");
}

/// Removes the test cgroups, killing whatever is left in them, even after a failed assertion.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in &self.0 {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            }
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Start a shell, move it into `dir`, then let it open each (name, redirection); returns the names
/// whose open succeeded and the shell's stderr. Nothing else is opened: stderr is a pipe, since
/// even 2>/dev/null would be a device open under test.
fn opens_in(dir: &Path, opens: &[(&str, &str)]) -> (BTreeSet<String>, String) {
    let mut script = "read go".to_string();
    for (name, redirect) in opens {
        // `true`, not `:`: a failed redirection on a special builtin makes sh exit.
        script.push_str(&format!("; if true {redirect}; then echo {name}; fi"));
    }
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    if let Err(e) = std::fs::write(dir.join("cgroup.procs"), child.id().to_string()) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("move {} into {}: {e}", child.id(), dir.display());
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b"go\n").expect("write to sh");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for sh");
    let ok = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    (ok, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn our_filters(dir: &Path) -> (usize, usize) {
    let cgroup = OwnedFd::from(std::fs::File::open(dir).unwrap());
    let all = bpf::prog_query(cgroup.as_fd(), bpf::BPF_CGROUP_DEVICE).unwrap().len();
    (attached_filters(cgroup.as_fd(), dir).unwrap().len(), all)
}

const OPENS: [(&str, &str); 4] = [
    ("null-r", "</dev/null"),
    ("null-w", ">/dev/null"),
    ("zero-r", "</dev/zero"),
    ("zero-w", ">/dev/zero"),
];

#[test]
fn filter_denies_in_a_real_cgroup_and_is_replaced() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping filter_denies_in_a_real_cgroup_and_is_replaced: {why}");
        return;
    }
    let Some(mount) = cgroup2_mount() else {
        eprintln!("skipping filter_denies_in_a_real_cgroup_and_is_replaced: no cgroup2 mount");
        return;
    };
    let dir = mount.join(format!("amber-bpftest-{}-a", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = Cleanup(vec![dir.clone()]);

    apply_device_filter(&dir, &build_program(&[allow("a"), deny("c 1:3 w")])).unwrap();
    let (ok, stderr) = opens_in(&dir, &OPENS);
    assert_eq!(ok, set(&["null-r", "zero-r", "zero-w"]), "stderr: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "EPERM expected: {stderr}");
    assert_eq!(our_filters(&dir), (1, 1));

    // Re-apply: the new filter replaces the old one instead of adding to it.
    apply_device_filter(&dir, &build_program(&[allow("a"), deny("c 1:5 r")])).unwrap();
    let (ok, stderr) = opens_in(&dir, &OPENS);
    assert_eq!(ok, set(&["null-r", "null-w", "zero-w"]), "stderr: {stderr}");
    assert_eq!(our_filters(&dir), (1, 1), "the old filter is detached");
}

#[test]
fn manager_applies_the_filter_on_v2() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping manager_applies_the_filter_on_v2: {why}");
        return;
    }
    let Some(mount) = cgroup2_mount() else {
        eprintln!("skipping manager_applies_the_filter_on_v2: no cgroup2 mount");
        return;
    };
    if !Path::new("/dev/kmsg").exists() {
        eprintln!("skipping manager_applies_the_filter_on_v2: no /dev/kmsg");
        return;
    }
    // A manager that sees only the cgroup2 mount, as on a pure v2 host (on a hybrid one the v1
    // devices controller would be used instead). The directory is made by hand: create() would
    // also enable controllers in the mount's root.
    let mountinfo = format!("1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n", mount.display());
    let id = format!("amber-bpftest-{}-m", std::process::id());
    let mgr = super::super::Manager::with_root(Path::new("/"), &mountinfo, None, &id).unwrap();
    assert!(mgr.is_v2());
    let dir = mgr.v2_dir().unwrap().to_path_buf();
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = Cleanup(vec![dir.clone()]);

    let opens = [OPENS[0], OPENS[1], ("kmsg-r", "</dev/kmsg"), ("kmsg-w", ">/dev/kmsg")];
    let empty = LinuxResourcesBuilder::default().build().unwrap();
    mgr.apply_resources(&empty).unwrap();
    let (ok, stderr) = opens_in(&dir, &opens);
    assert_eq!(ok, set(&["null-r", "null-w"]), "defaults only; stderr: {stderr}");

    let kmsg_read = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(1)
        .minor(11)
        .access("r")
        .build()
        .unwrap();
    let res = LinuxResourcesBuilder::default()
        .devices(vec![kmsg_read])
        .build()
        .unwrap();
    mgr.apply_resources(&res).unwrap();
    let (ok, stderr) = opens_in(&dir, &opens);
    assert_eq!(ok, set(&["null-r", "null-w", "kmsg-r"]), "stderr: {stderr}");
    assert_eq!(our_filters(&dir), (1, 1));

    // update leaves the devices alone.
    mgr.update_resources(&empty).unwrap();
    assert_eq!(our_filters(&dir), (1, 1));
}
