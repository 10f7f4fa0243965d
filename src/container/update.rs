//! `update`: change a running container's resources, from `--resources FILE` (`-` is stdin, as
//! containerd sends it) and/or runc's individual flags, which win over the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde_json::{Map, Value};

use super::state::{StateDir, Status};
use super::{Error, Global, StatusError};
use crate::cgroups::Manager;

#[derive(Debug, Clone, Default)]
pub struct UpdateOpts {
    pub id: String,
    pub resources: Option<PathBuf>,
    pub blkio_weight: Option<u16>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_share: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub cpu_idle: Option<i64>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub kernel_memory: Option<String>,
    pub kernel_memory_tcp: Option<String>,
    pub pids_limit: Option<i64>,
}

const RESOURCES_MAX_BYTES: u64 = 1 << 20;

pub fn update(g: &Global, opts: &UpdateOpts) -> Result<(), Error> {
    let dir = StateDir::open(&g.root, &opts.id)?;
    let st = dir.load()?;
    if st.status(&dir.path) == Status::Stopped {
        return Err(Error::Status(StatusError::NotRunning));
    }
    let res = resources(opts)?;
    Manager::from_state(&st.cgroup).update_resources(&res)?;
    Ok(())
}

/// The resources to apply: the file's (if any) with the flags laid over it.
pub fn resources(opts: &UpdateOpts) -> Result<LinuxResources, Error> {
    let mut v = match &opts.resources {
        Some(p) => read_resources(p)?,
        None => Value::Object(Map::new()),
    };
    let bad = |flag: &str, text: &str| Error::BadUpdate(format!("--{flag} {text:?}: expected a size like 512m or -1"));
    let mut set = |section: &str, key: &str, val: Value| {
        let obj = v.as_object_mut().expect("resources is an object");
        let sec = obj.entry(section).or_insert_with(|| Value::Object(Map::new()));
        if let Some(s) = sec.as_object_mut() {
            s.insert(key.into(), val);
        }
    };
    if let Some(w) = opts.blkio_weight {
        set("blockIO", "weight", w.into());
    }
    let cpu_u = [
        ("period", opts.cpu_period),
        ("shares", opts.cpu_share),
        ("realtimePeriod", opts.cpu_rt_period),
    ];
    for (k, val) in cpu_u {
        if let Some(x) = val {
            set("cpu", k, x.into());
        }
    }
    let cpu_i = [
        ("quota", opts.cpu_quota),
        ("realtimeRuntime", opts.cpu_rt_runtime),
        ("idle", opts.cpu_idle),
    ];
    for (k, val) in cpu_i {
        if let Some(x) = val {
            set("cpu", k, x.into());
        }
    }
    if let Some(c) = &opts.cpuset_cpus {
        set("cpu", "cpus", c.clone().into());
    }
    if let Some(m) = &opts.cpuset_mems {
        set("cpu", "mems", m.clone().into());
    }
    let mem = [
        ("memory", "limit", &opts.memory),
        ("memory-reservation", "reservation", &opts.memory_reservation),
        ("memory-swap", "swap", &opts.memory_swap),
        ("kernel-memory", "kernel", &opts.kernel_memory),
        ("kernel-memory-tcp", "kernelTCP", &opts.kernel_memory_tcp),
    ];
    for (flag, key, val) in mem {
        if let Some(text) = val {
            let n = parse_bytes(text).ok_or_else(|| bad(flag, text))?;
            set("memory", key, n.into());
        }
    }
    if let Some(p) = opts.pids_limit {
        set("pids", "limit", p.into());
    }
    serde_path_to_error::deserialize(v).map_err(|e| Error::BadUpdate(format!("resources: {}: {}", e.path(), e.inner())))
}

fn read_resources(p: &Path) -> Result<Value, Error> {
    let mut text = Vec::new();
    let res = if p == Path::new("-") {
        std::io::stdin().take(RESOURCES_MAX_BYTES + 1).read_to_end(&mut text)
    } else {
        std::fs::File::open(p).and_then(|f| f.take(RESOURCES_MAX_BYTES + 1).read_to_end(&mut text))
    };
    res.map_err(|e| Error::io("reading resources", p, e))?;
    if text.len() as u64 > RESOURCES_MAX_BYTES {
        return Err(Error::BadUpdate(format!(
            "{}: larger than {RESOURCES_MAX_BYTES} bytes",
            p.display()
        )));
    }
    let v: Value = serde_json::from_slice(&text).map_err(|e| Error::BadUpdate(format!("{}: {e}", p.display())))?;
    if !v.is_object() {
        return Err(Error::BadUpdate(format!(
            "{}: expected a JSON object of linux.resources",
            p.display()
        )));
    }
    Ok(v)
}

/// Docker's RAMInBytes as runc uses it: "512m", "1g", "100", "1.5G"; "-1" means unlimited.
pub fn parse_bytes(text: &str) -> Option<i64> {
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Some(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        'p' => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    if n.is_nan() || n < 0.0 {
        return None;
    }
    Some((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("10mb"), Some(10 << 20));
        assert_eq!(parse_bytes("-1"), Some(-1));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("-5"), None);
    }

    #[test]
    fn flags_override_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("r.json");
        std::fs::write(&f, r#"{"memory":{"limit":1000},"pids":{"limit":5}}"#).unwrap();
        let opts = UpdateOpts {
            resources: Some(f),
            memory: Some("64m".into()),
            cpu_share: Some(512),
            ..Default::default()
        };
        let r = resources(&opts).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 5);
        assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(512));
    }

    #[test]
    fn bad_file_names_the_field() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("r.json");
        std::fs::write(&f, r#"{"memory":{"limit":"lots"}}"#).unwrap();
        let e = resources(&UpdateOpts {
            resources: Some(f),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("memory.limit"), "{e}");
    }
}
