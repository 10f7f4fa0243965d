//! Pure parsers for the /proc files the dumper reads: status, stat, smaps, fdinfo, auxv. Each
//! takes the file's text (or bytes) so unit tests can feed captured samples.

use std::collections::BTreeMap;

/// The fields of /proc/<pid>/status that the dump needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub state: char,
    pub ppid: i32,
    pub tracer_pid: i32,
    /// Outermost (the reader's procfs namespace) first.
    pub nspid: Vec<i32>,
    pub nspgid: Vec<i32>,
    pub nssid: Vec<i32>,
    pub threads: u32,
    pub umask: u32,
    /// real, effective, saved, fs.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    pub seccomp: u32,
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    /// `x86_Thread_features:` (shadow stack, WRSS); empty when absent.
    pub x86_thread_features: String,
}

fn ints<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split_whitespace().filter_map(|x| x.parse().ok()).collect()
}

fn four(v: &str) -> [u32; 4] {
    let n: Vec<u32> = ints(v);
    let mut out = [0; 4];
    for (o, x) in out.iter_mut().zip(n) {
        *o = x;
    }
    out
}

fn hex(v: &str) -> u64 {
    u64::from_str_radix(v.trim(), 16).unwrap_or(0)
}

pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        match k {
            "State" => s.state = v.chars().next().unwrap_or('?'),
            "PPid" => s.ppid = v.parse().unwrap_or(0),
            "TracerPid" => s.tracer_pid = v.parse().unwrap_or(0),
            "NSpid" => s.nspid = ints(v),
            "NSpgid" => s.nspgid = ints(v),
            "NSsid" => s.nssid = ints(v),
            "Threads" => s.threads = v.parse().unwrap_or(0),
            "Umask" => s.umask = u32::from_str_radix(v, 8).unwrap_or(0o022),
            "Uid" => s.uid = four(v),
            "Gid" => s.gid = four(v),
            "Groups" => s.groups = ints(v),
            "CapInh" => s.cap_inh = hex(v),
            "CapPrm" => s.cap_prm = hex(v),
            "CapEff" => s.cap_eff = hex(v),
            "CapBnd" => s.cap_bnd = hex(v),
            "CapAmb" => s.cap_amb = hex(v),
            "NoNewPrivs" => s.no_new_privs = v == "1",
            "Seccomp" => s.seccomp = v.parse().unwrap_or(0),
            "SigPnd" => s.sig_pnd = hex(v),
            "ShdPnd" => s.shd_pnd = hex(v),
            "x86_Thread_features" => s.x86_thread_features = v.to_string(),
            _ => {}
        }
    }
    s
}

/// The mm fields of /proc/<pid>/stat (zero unless the reader may ptrace-attach).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatMm {
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Field 19: the nice value (-20..19).
    pub nice: i32,
}

/// Parse /proc/<pid>/stat; comm (field 2) may contain spaces and parentheses, so fields are
/// counted from the last ')'.
pub fn parse_stat_mm(text: &str) -> Option<StatMm> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state).
    let f: Vec<i64> = rest.split_whitespace().map(|x| x.parse::<i64>().unwrap_or(0)).collect();
    let field = |n: usize| f.get(n - 3).copied().unwrap_or(0) as u64;
    Some(StatMm {
        start_code: field(26),
        end_code: field(27),
        start_stack: field(28),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
        nice: f.get(19 - 3).copied().unwrap_or(0) as i32,
    })
}

/// Field 52 of /proc/<pid>/stat, exit_code: a zombie's wait status.
pub fn parse_stat_exit_code(text: &str) -> Option<i32> {
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(52 - 3)?.parse().ok()
}

/// One VMA of /proc/<pid>/smaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmapsVma {
    pub start: u64,
    pub end: u64,
    /// "rwxp" / "r--s" ...
    pub perms: String,
    pub offset: u64,
    pub dev: String,
    pub inode: u64,
    /// Path or pseudo name ("[heap]"), empty for anonymous memory.
    pub name: String,
    /// The two-letter `VmFlags:` mnemonics.
    pub vmflags: Vec<String>,
    /// Other "Key: value" lines (kB values as text), e.g. ProtectionKey.
    pub fields: BTreeMap<String, String>,
}

impl SmapsVma {
    pub fn shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vmflags.iter().any(|f| f == flag)
    }
}

fn parse_vma_header(line: &str) -> Option<SmapsVma> {
    let mut rest = line;
    let mut next = || -> Option<&str> {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (tok, r) = t.split_at(end);
        rest = r;
        (!tok.is_empty()).then_some(tok)
    };
    let range = next()?;
    let perms = next()?.to_string();
    let offset = u64::from_str_radix(next()?, 16).ok()?;
    let dev = next()?.to_string();
    let inode = next()?.parse().ok()?;
    let (s, e) = range.split_once('-')?;
    Some(SmapsVma {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        perms,
        offset,
        dev,
        inode,
        name: rest.trim().to_string(),
        ..Default::default()
    })
}

/// Parse /proc/<pid>/smaps (also accepts /proc/<pid>/maps: headers only).
pub fn parse_smaps(text: &str) -> Vec<SmapsVma> {
    let mut out: Vec<SmapsVma> = Vec::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.ends_with(':') {
            let Some(vma) = out.last_mut() else { continue };
            let key = first.trim_end_matches(':');
            let value = line[first.len()..].trim();
            if key == "VmFlags" {
                vma.vmflags = value.split_whitespace().map(str::to_string).collect();
            } else {
                vma.fields.insert(key.to_string(), value.to_string());
            }
        } else if let Some(vma) = parse_vma_header(line) {
            out.push(vma);
        }
    }
    out
}

/// `pos:` and `flags:` (octal) of /proc/<pid>/fdinfo/<fd>.
pub fn parse_fdinfo(text: &str) -> (u64, u32) {
    let mut pos = 0;
    let mut flags = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("flags:") {
            flags = u32::from_str_radix(v.trim(), 8).unwrap_or(0);
        }
    }
    (pos, flags)
}

/// /proc/<pid>/auxv as u64 words, through the AT_NULL pair.
pub fn parse_auxv(bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    for pair in bytes.chunks_exact(16) {
        let key = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
        let val = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
        out.push(key);
        out.push(val);
        if key == 0 {
            break;
        }
    }
    out
}

/// Children listed in /proc/<pid>/task/<tid>/children.
pub fn parse_children(text: &str) -> Vec<i32> {
    ints(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tbusybox\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t17642\nPid:\t17642\nPPid:\t17639\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t1\t2\t3\nGroups:\t0 10 \nNStgid:\t17642\t1\nNSpid:\t17642\t1\nNSpgid:\t17642\t1\nNSsid:\t17642\t1\nThreads:\t1\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000010000\nSigIgn:\t0000000000000006\nCapEff:\t000001fffeffffff\nNoNewPrivs:\t0\nSeccomp:\t0\n";

    #[test]
    fn status_fields() {
        let s = parse_status(STATUS);
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 17639);
        assert_eq!(s.nspid, vec![17642, 1]);
        assert_eq!(s.nssid, vec![17642, 1]);
        assert_eq!(s.umask, 0o022);
        assert_eq!(s.gid, [0, 1, 2, 3]);
        assert_eq!(s.groups, vec![0, 10]);
        assert_eq!(s.cap_eff, 0x1fffeffffff);
        assert_eq!(s.shd_pnd, 1 << 16);
        assert_eq!(s.threads, 1);
    }

    #[test]
    fn stat_mm_with_odd_comm() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "S".into();
        let text = format!("42 (a) b (c)) {}\n", fields.join(" "));
        let m = parse_stat_mm(&text).unwrap();
        assert_eq!(m.start_code, 26);
        assert_eq!(m.start_stack, 28);
        assert_eq!(m.start_data, 45);
        assert_eq!(m.env_end, 51);
        assert_eq!(m.nice, 19);
    }

    const SMAPS: &str = "00400000-00401000 r--p 00000000 fe:00 10199043                           /usr/bin/busy box\nSize:                  4 kB\nProtectionKey:         0\nVmFlags: rd mr mw me \n005e5000-005ec000 rw-p 00000000 00:00 0 \nSize:                 28 kB\nVmFlags: rd wr mr mw me ac \n7ffc6b5dc000-7ffc6b5fd000 rw-p 00000000 00:00 0                          [stack]\nVmFlags: rd wr mr mw me gd ac \n";

    #[test]
    fn smaps_vmas() {
        let v = parse_smaps(SMAPS);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].start, 0x400000);
        assert_eq!(v[0].name, "/usr/bin/busy box");
        assert_eq!(v[0].inode, 10199043);
        assert_eq!(v[0].fields["ProtectionKey"], "0");
        assert_eq!(v[1].name, "");
        assert!(v[2].has_flag("gd"));
        assert!(!v[2].shared());
        assert_eq!(v[2].end, 0x7ffc6b5fd000);
    }

    #[test]
    fn fdinfo_and_auxv() {
        assert_eq!(
            parse_fdinfo("pos:\t12\nflags:\t02100001\nmnt_id:\t3\n"),
            (12, 0o2100001)
        );
        let mut b = Vec::new();
        for w in [6u64, 4096, 0, 0, 9, 9] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(parse_auxv(&b), vec![6, 4096, 0, 0]);
        assert_eq!(parse_children("12 13 \n"), vec![12, 13]);
    }
}
