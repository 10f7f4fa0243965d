//! The helper's JSON report and the accessors the checks use.

use serde_json::Value;

/// Linux capability names in bit order (CAP_CHOWN is bit 0).
pub const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit mask of a list of capability names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| {
            let i = CAPS
                .iter()
                .position(|c| c == n)
                .unwrap_or_else(|| panic!("unknown capability {n}"));
            1u64 << i
        })
        .fold(0, |a, b| a | b)
}

/// Names of the bits set in a mask (for messages).
pub fn cap_names(mask: u64) -> String {
    let v: Vec<&str> = CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("[{}]", v.join(" "))
}

#[derive(Debug, Clone)]
pub struct Report(pub Value);

impl Report {
    pub fn parse(line: &str) -> Result<Report, String> {
        serde_json::from_str(line)
            .map(Report)
            .map_err(|e| format!("the helper's report is not JSON ({e}): {line}"))
    }

    pub fn get(&self, pointer: &str) -> &Value {
        self.0.pointer(pointer).unwrap_or(&Value::Null)
    }

    pub fn i64(&self, pointer: &str) -> Option<i64> {
        self.get(pointer).as_i64()
    }

    pub fn u64(&self, pointer: &str) -> Option<u64> {
        self.get(pointer).as_u64()
    }

    pub fn str(&self, pointer: &str) -> Option<&str> {
        self.get(pointer).as_str()
    }

    pub fn ints(&self, pointer: &str) -> Vec<i64> {
        self.get(pointer)
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    }

    pub fn strings(&self, pointer: &str) -> Vec<String> {
        self.get(pointer)
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// A capability set (`inh`, `prm`, `eff`, `bnd`, `amb`) as a mask.
    pub fn caps(&self, set: &str) -> u64 {
        self.str(&format!("/caps/{set}"))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(u64::MAX)
    }

    pub fn ns(&self, t: &str) -> u64 {
        self.u64(&format!("/ns/{t}")).unwrap_or(0)
    }

    /// The topmost mount at `mountpoint` (the last mountinfo entry for it).
    pub fn mount(&self, mountpoint: &str) -> Option<&Value> {
        self.get("/mounts")
            .as_array()?
            .iter()
            .rev()
            .find(|m| m["mountpoint"] == mountpoint)
    }

    /// Per-mount options of the topmost mount at `mountpoint`.
    pub fn mount_opts(&self, mountpoint: &str) -> Vec<String> {
        self.mount(mountpoint)
            .and_then(|m| m["opts"].as_str())
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    }

    pub fn super_opts(&self, mountpoint: &str) -> Vec<String> {
        self.mount(mountpoint)
            .and_then(|m| m["super"].as_str())
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    }

    pub fn fstype(&self, mountpoint: &str) -> Option<&str> {
        self.mount(mountpoint).and_then(|m| m["fstype"].as_str())
    }

    /// `--path P` result.
    pub fn path(&self, p: &str) -> &Value {
        self.0.get("paths").and_then(|v| v.get(p)).unwrap_or(&Value::Null)
    }

    /// `--read P` result: contents, or the errno.
    pub fn read(&self, p: &str) -> Result<String, i64> {
        let v = self.0.get("reads").and_then(|v| v.get(p));
        match v {
            Some(v) if v["errno"] == 0 => Ok(v["data"].as_str().unwrap_or("").to_string()),
            Some(v) => Err(v["errno"].as_i64().unwrap_or(-1)),
            None => Err(-1),
        }
    }

    /// `--ls D` result.
    pub fn ls(&self, d: &str) -> Result<Vec<String>, i64> {
        let v = self.0.get("ls").and_then(|v| v.get(d));
        match v {
            Some(v) if v["errno"] == 0 => Ok(v["entries"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
                .unwrap_or_default()),
            Some(v) => Err(v["errno"].as_i64().unwrap_or(-1)),
            None => Err(-1),
        }
    }

    /// errno of `--open SPEC` (0 = opened), -1 when not probed.
    pub fn open_errno(&self, spec: &str) -> i64 {
        self.0
            .get("open")
            .and_then(|v| v.get(spec))
            .and_then(|v| v["errno"].as_i64())
            .unwrap_or(-1)
    }

    /// errno of `--create DIR` (0 = created), -1 when not probed.
    pub fn create_errno(&self, dir: &str) -> i64 {
        self.0
            .get("create")
            .and_then(|v| v.get(dir))
            .and_then(|v| v["errno"].as_i64())
            .unwrap_or(-1)
    }

    /// (return value, errno) of `--syscall SPEC`.
    pub fn syscall(&self, spec: &str) -> (i64, i64) {
        let v = self.0.get("syscalls").and_then(|v| v.get(spec));
        match v {
            Some(v) => (v["ret"].as_i64().unwrap_or(-1), v["errno"].as_i64().unwrap_or(-1)),
            None => (-1, -1),
        }
    }

    /// (soft, hard) of an rlimit.
    pub fn rlimit(&self, name: &str) -> Option<(u64, u64)> {
        let a = self.0.get("rlimits")?.get(name)?.as_array()?;
        Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?))
    }
}

/// errno names for messages.
pub fn errno_name(e: i64) -> String {
    let n = match e {
        0 => "ok",
        1 => "EPERM",
        2 => "ENOENT",
        9 => "EBADF",
        13 => "EACCES",
        17 => "EEXIST",
        20 => "ENOTDIR",
        22 => "EINVAL",
        30 => "EROFS",
        38 => "ENOSYS",
        _ => "",
    };
    if n.is_empty() {
        format!("errno {e}")
    } else {
        n.to_string()
    }
}
